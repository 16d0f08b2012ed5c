"""XRPL Tickets in DVP: the engine signs XRPL locks, commits and unwinds on tickets, one
open transaction per ticket held by the write-ahead row, and settles as before."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from cryptography.fernet import Fernet
from xrpl.core.binarycodec import decode

from adapters.chain import Chain, ChainName, SignedSubmission
from adapters.resilience import ChainGuard
from adapters.xrpl.chain import XrplChain
from ledger import errors as db_errors
from ledger import settlements as records
from ledger.database import UnitOfWork
from settlement.domain.values import SYSTEM
from settlement.dvp import DvpCoordinator, DvpPolicy, Progress
from settlement.sealing import Sealer

from .conftest import FAST, Dvp

TICKETS = 3
WITH_TICKETS = pytest.mark.parametrize("dvp", [{"xrpl_tickets": TICKETS}], indirect=True)


def _instruct(dvp: Dvp, coordinator: DvpCoordinator | None = None) -> UUID:
    cid = dvp.verified_commitment("1000")
    return (coordinator or dvp.coordinator).instruct(
        SYSTEM,
        cid,
        dvp.world.legs(Decimal(10), Decimal(1000)),
        commit_deadline=dvp.world.clock.now() + timedelta(seconds=120),
    )


def _xrpl(dvp: Dvp) -> XrplChain:
    chain = dvp.world.chains[ChainName.XRPL]
    assert isinstance(chain, XrplChain)
    return chain


def _hold(dvp: Dvp, sid: UUID, channel: str, tag: str) -> None:
    """An open (SIGNED) XRPL submission of ``sid`` on ``channel``, as a crash after the
    write-ahead leaves one: it could still apply, so the ticket is taken."""

    def write(uow: UnitOfWork) -> None:
        records.record_submission(
            uow,
            settlement_id=sid,
            leg_no=1,
            purpose="lock",
            chain="xrpl",
            tx_hash=f"{tag:0>64}",
            blob=f"blob-{tag}",
            expires_ledger=10**6,
            expires_at=None,
            at=dvp.world.clock.now(),
            channel=channel,
        )

    dvp.engine.db.transaction(write)


@WITH_TICKETS
def test_settlements_sign_their_xrpl_transactions_on_tickets(dvp: Dvp) -> None:
    seller = dvp.world.seller_xrpl.classic_address
    agent = dvp.world.agent_xrpl.classic_address
    chain = _xrpl(dvp)
    tickets = {a: chain.tickets(a) for a in (seller, agent)}
    assert all(len(t) == TICKETS for t in tickets.values())
    ids = [_instruct(dvp), _instruct(dvp)]
    # stepped side by side: both have an XRPL transaction open at once at some point
    pending = set(ids)
    for _ in range(2_000):
        if not pending:
            break
        for sid in list(pending):
            if dvp.coordinator.step(sid).progress is not Progress.WAITING:
                pending.discard(sid)
    assert not pending
    for sid in ids:
        row, legs, subs = dvp.coordinator.settlement(sid)
        assert row.status == "SETTLED", row.decision_reason
        xrpl = [x for x in subs if x.chain == "xrpl"]
        assert [(x.purpose, x.status) for x in xrpl] == [("lock", "APPLIED"), ("commit", "APPLIED")]
        lock, commit = xrpl
        assert lock.channel is not None and commit.channel is not None
        lock_ticket = int(lock.channel.removeprefix(f"{seller}:"))
        commit_ticket = int(commit.channel.removeprefix(f"{agent}:"))
        assert lock_ticket in tickets[seller] and commit_ticket in tickets[agent]
        for sub, ticket in ((lock, lock_ticket), (commit, commit_ticket)):
            fields = decode(sub.blob)
            assert (fields["Sequence"], fields["TicketSequence"]) == (0, ticket)
        (xrpl_leg,) = [leg for leg in legs if leg.chain == "xrpl"]
        assert xrpl_leg.lock_sequence == lock_ticket, "the escrow is named by its ticket"
        assert decode(commit.blob)["OfferSequence"] == lock_ticket
    assert len(chain.tickets(seller)) == len(chain.tickets(agent)) == TICKETS - 2
    dvp.verify_audit()


@WITH_TICKETS
def test_the_database_refuses_a_second_open_transaction_on_one_ticket(dvp: Dvp) -> None:
    a, b = _instruct(dvp), _instruct(dvp)
    seller = dvp.world.seller_xrpl.classic_address
    ticket = f"{seller}:{_xrpl(dvp).tickets(seller)[0]}"
    _hold(dvp, a, ticket, "a1")
    with pytest.raises(db_errors.ConstraintViolation, match=records.CHANNEL_TAKEN):
        _hold(dvp, b, ticket, "b1")


@WITH_TICKETS
def test_a_lock_waits_while_every_ticket_is_held_then_signs_on_a_freed_one(dvp: Dvp) -> None:
    seller = dvp.world.seller_xrpl.classic_address
    channels = [f"{seller}:{t}" for t in _xrpl(dvp).tickets(seller)]
    for n, channel in enumerate(channels):
        _hold(dvp, _instruct(dvp), channel, f"t{n}")
    waiting = _instruct(dvp)
    # the Stellar leg locks first; then the XRPL lock finds no free ticket
    for _ in range(1_000):
        result = dvp.coordinator.step(waiting)
        if "every xrpl channel carries a transaction" in result.detail:
            break
        time.sleep(0.02)
    assert result.progress is Progress.WAITING, result
    assert "every xrpl channel carries a transaction" in result.detail
    _, _, subs = dvp.coordinator.settlement(waiting)
    assert [x.chain for x in subs if x.purpose == "lock"] == ["stellar"], "XRPL lock not signed"
    dvp.engine.db.transaction(
        lambda uow: records.finalize_submission(
            uow,
            tx_hash=f"{'t1':0>64}",
            status="EXPIRED",
            result_code=None,
            ledger_index=None,
            ledger_hash=None,
            at=dvp.world.clock.now(),
        )
    )
    final = dvp.drive(waiting, timeout_s=30)
    row, _, subs = dvp.coordinator.settlement(waiting)
    assert row.status == "SETTLED", (final, row.decision_reason)
    (lock,) = [x for x in subs if x.chain == "xrpl" and x.purpose == "lock"]
    assert lock.channel == channels[1], "the one ticket set free"
    # the agent's tickets were never held: its commit took one of them
    (commit,) = [x for x in subs if x.chain == "xrpl" and x.purpose == "commit"]
    assert commit.channel is not None
    assert commit.channel.startswith(dvp.world.agent_xrpl.classic_address + ":")


def test_without_tickets_xrpl_transactions_use_the_signers_sequence(dvp: Dvp) -> None:
    sid = _instruct(dvp)
    assert dvp.drive(sid).progress is Progress.DONE
    _, _, subs = dvp.coordinator.settlement(sid)
    xrpl = [x for x in subs if x.chain == "xrpl"]
    assert xrpl and all(x.channel is None for x in xrpl)
    assert all(decode(x.blob)["Sequence"] > 0 for x in xrpl)


class _SignTogether:
    """An XRPL adapter whose next lock waits until the other worker's is signed too: both
    are signed before either is sent, as two workers locking from one seller at once."""

    def __init__(self, inner: Chain, barrier: threading.Barrier) -> None:
        self._inner = inner
        self._barrier = barrier
        self._waited = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def prepare_lock(
        self, leg: Any, terms: Any, *, kind: Any = None, channel: str | None = None
    ) -> SignedSubmission:
        signed = self._inner.prepare_lock(leg, terms, kind=kind, channel=channel)
        if not self._waited:
            # once: both may pick one ticket, and the loser's write-ahead is refused
            # (never sent); it signs again on another ticket without waiting here
            self._waited = True
            self._barrier.wait(20)
        return signed


@WITH_TICKETS
@pytest.mark.timeout(120)
def test_two_workers_locking_from_one_xrpl_account_at_once_both_apply_first_time(
    dvp: Dvp,
) -> None:
    barrier = threading.Barrier(2)
    sealer = Sealer(Fernet.generate_key())
    coordinators = []
    for _ in range(2):
        world = dvp.world
        stellar = world.chains[ChainName.STELLAR]
        xrpl = XrplChain(
            world.xrpl.url,
            agent=world.agent_xrpl.classic_address,
            signer=world.keystore,
            guard=ChainGuard("xrpl", FAST),
        )
        chains: dict[ChainName, Any] = {
            ChainName.XRPL: _SignTogether(xrpl, barrier),
            ChainName.STELLAR: stellar,
        }
        coordinators.append(
            DvpCoordinator(
                dvp.engine.db,
                service=dvp.engine.commitments,
                chains=chains,
                sealer=sealer,
                clock=world.clock,
                policy=DvpPolicy(safety_margin_s=120, min_window_s=5, retry_after_s=0.02),
            )
        )
    ids = [_instruct(dvp, c) for c in coordinators]  # each opens its own sealed secret
    threads = [
        threading.Thread(target=c.run_to_end, args=(sid,), kwargs={"timeout_s": 60})
        for c, sid in zip(coordinators, ids, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    locks = []
    for sid in ids:
        row, _, subs = dvp.coordinator.settlement(sid)
        assert row.status == "SETTLED", row.decision_reason
        xrpl_subs = [x for x in subs if x.chain == "xrpl"]
        # signed once each: neither lost a race for the seller's Sequence
        assert [(x.purpose, x.status) for x in xrpl_subs] == [
            ("lock", "APPLIED"),
            ("commit", "APPLIED"),
        ]
        locks.append(xrpl_subs[0])
    assert barrier.n_waiting == 0 and not barrier.broken, "both locks were signed together"
    assert locks[0].channel != locks[1].channel
    dvp.verify_audit()
