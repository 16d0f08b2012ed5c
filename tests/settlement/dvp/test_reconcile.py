"""Reconciliation of the engine's records with the local XRP Ledger and Stellar.

Real ledgers, a real database: a clean run after a settled and an aborted settlement
finds nothing; then each test breaks one thing behind the engine's back (a lock made
outside it, a lock claimed by its sender, a ledger hash changed in the database, a
payout recorded as another payment, a ledger cut off) and the reconciler must name
exactly that.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import cast
from uuid import UUID

import pytest
from sqlalchemy import create_engine, text
from stellar_sdk import Asset as SdkAsset
from stellar_sdk import TransactionBuilder
from typer.testing import CliRunner
from xrpl.models.transactions import AccountSet, AccountSetAsfFlag, EscrowCreate

from adapters.chain import Asset, Chain, ChainName, LedgerTx
from adapters.conditions import HashLock
from adapters.localnet.xrpl.amendments import enabled_set
from adapters.xrpl.chain import ripple_seconds
from ledger.settlements import LegRow
from settlement.bootstrap import DatabaseUrls
from settlement.cli.main import app
from settlement.domain.values import SYSTEM
from settlement.dvp import Progress
from settlement.dvp.reconcile import (
    BreakKind,
    ExpectedBalance,
    Reconciler,
    ReconcileReport,
)
from tests.support import ADMIN

from .conftest import Dvp

BOND = Decimal(10)
PRICE = Decimal(1000)


def _instruct(dvp: Dvp, *, deadline_s: int = 60, settle_in_s: int | None = None) -> UUID:
    cid = dvp.verified_commitment(str(PRICE))
    now = dvp.world.clock.now()
    return dvp.coordinator.instruct(
        SYSTEM,
        cid,
        dvp.world.legs(BOND, PRICE),
        commit_deadline=now + timedelta(seconds=deadline_s),
        settle_not_before=None if settle_in_s is None else now + timedelta(seconds=settle_in_s),
    )


def _settled(dvp: Dvp) -> UUID:
    sid = _instruct(dvp)
    assert dvp.drive(sid).status == "SETTLED"
    return sid


def _escrowed(dvp: Dvp, sid: UUID, states: tuple[str, ...] = ("LOCKED", "LOCKED")) -> None:
    """Step until every leg is locked (the settlement then waits for its date); a
    custody lock leaves its leg HELD."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        dvp.coordinator.step(sid)
        _, legs, _ = dvp.coordinator.settlement(sid)
        if tuple(leg.state for leg in legs) == states:
            return
        time.sleep(0.02)
    raise AssertionError(f"settlement {sid} did not lock: {legs}")


def _balance(dvp: Dvp, chain: ChainName, account: str, asset: Asset) -> Decimal:
    if chain is ChainName.XRPL:
        return dvp.world.xrpl.token_balance(account, asset)
    return dvp.world.stellar.balance(account, asset)


def _reconcile(dvp: Dvp, expected: list[ExpectedBalance] | None = None) -> ReconcileReport:
    reconciler = Reconciler(
        dvp.engine.db, dvp.world.chains, balance_of=lambda c, a, s: _balance(dvp, c, a, s)
    )
    return reconciler.run(expected or [])


def test_clean_after_a_settled_and_an_aborted_settlement(dvp: Dvp) -> None:
    settled = _settled(dvp)
    aborted = _instruct(dvp, deadline_s=600, settle_in_s=300)
    _escrowed(dvp, aborted)
    dvp.coordinator.request_force_cancel(ADMIN, aborted, "reconcile test")
    dvp.world.advance_time(600 + 120 + 30)  # the XRPL escrow cancels after CancelAfter
    assert dvp.drive(aborted).status == "UNWOUND"
    world = dvp.world
    expected = [
        ExpectedBalance(ChainName.XRPL, world.buyer_xrpl.classic_address, world.bond, BOND),
        ExpectedBalance(ChainName.STELLAR, world.seller_stellar.public_key, world.usdc, PRICE),
    ]

    report = _reconcile(dvp, expected)

    assert report.ok and report.status == "ok" and report.exit_code == 0, report.to_json()
    assert report.settlements == 2
    # settled: 2 locks, the agent's claim, 2 commits; aborted: 2 locks + 2 unwinds
    assert report.submissions_checked == 9
    assert report.legs_checked == 4
    assert report.to_json()["breaks"] == []
    # every payout states what it delivered: the escrow's finish and its cancel, the
    # agent's payment of the USDC to the seller and its claim-and-pay back to the buyer
    assert report.delivered_checked == 4
    assert report.delivered_not_stated == [], report.to_json()
    assert settled != aborted

    wrong = [expected[0], replace(expected[1], amount=PRICE + 1)]
    report = _reconcile(dvp, wrong)
    assert [b.kind for b in report.breaks] == [BreakKind.BALANCE_MISMATCH]
    assert report.exit_code == 1


def test_an_escrow_of_a_sender_unknown_to_the_engine_is_a_break(dvp: Dvp) -> None:
    _settled(dvp)
    seller = dvp.world.seller_xrpl
    condition = HashLock.generate().condition_hex
    dvp.world.xrpl.send(
        EscrowCreate(
            account=seller.classic_address,
            destination=dvp.world.buyer_xrpl.classic_address,
            amount="1000000",
            condition=condition.upper(),
            cancel_after=ripple_seconds(dvp.world.clock.now() + timedelta(hours=1)),
        ),
        seller,
    )

    report = _reconcile(dvp)

    assert [(b.kind, b.chain) for b in report.breaks] == [
        (BreakKind.UNKNOWN_LOCK, ChainName.XRPL)
    ], report.to_json()
    found = report.breaks[0].found
    assert seller.classic_address in found and "1 XRP" in found
    assert report.exit_code == 1


def test_a_locked_balance_claimed_by_its_sender_is_a_break(dvp: Dvp) -> None:
    sid = _instruct(dvp, deadline_s=600, settle_in_s=300)
    _escrowed(dvp, sid)
    _, legs, _ = dvp.coordinator.settlement(sid)
    assert [leg.state for leg in legs] == ["LOCKED", "LOCKED"]
    assert _reconcile(dvp).ok, "both locks on chain with the recorded terms"

    # past T_cancel the buyer takes its USDC back, without the engine
    dvp.world.advance_time(600 + 120 + 30)
    buyer, stellar = dvp.world.buyer_stellar, dvp.world.stellar
    assert legs[0].lock_balance_id is not None
    envelope = (
        TransactionBuilder(stellar.server.load_account(buyer.public_key), stellar.passphrase)
        .add_time_bounds(0, 0)
        .append_claim_claimable_balance_op(legs[0].lock_balance_id)
        .build()
    )
    envelope.sign(buyer)
    assert stellar.server.submit_transaction(envelope)["successful"]

    report = _reconcile(dvp)

    assert [(b.kind, b.chain, b.settlement_id, b.leg_no) for b in report.breaks] == [
        (BreakKind.LOCK_MISSING, ChainName.STELLAR, sid, 0)
    ], report.to_json()
    assert legs[0].lock_balance_id in report.breaks[0].expected


def test_a_tampered_ledger_hash_is_a_break(dvp: Dvp, fresh_urls: DatabaseUrls) -> None:
    sid = _settled(dvp)
    _, _, subs = dvp.coordinator.settlement(sid)
    target = next(s for s in subs if s.chain == "xrpl" and s.purpose == "commit")
    owner = create_engine(fresh_urls.owner)
    try:
        with owner.begin() as c:
            c.execute(text("ALTER TABLE ledger_submissions DISABLE TRIGGER USER"))
            c.execute(
                text("UPDATE ledger_submissions SET ledger_hash = :h WHERE tx_hash = :t"),
                {"h": "AB" * 32, "t": target.tx_hash},
            )
            c.execute(text("ALTER TABLE ledger_submissions ENABLE TRIGGER USER"))
    finally:
        owner.dispose()

    report = _reconcile(dvp)

    assert [(b.kind, b.tx_hash) for b in report.breaks] == [
        (BreakKind.LEDGER_REF_MISMATCH, target.tx_hash)
    ], report.to_json()
    assert "AB" * 32 in report.breaks[0].expected
    assert (target.ledger_hash or "") in report.breaks[0].found


def test_a_partitioned_ledger_is_unreachable_not_ok(dvp: Dvp) -> None:
    _settled(dvp)
    dvp.world.xrpl_node.faults.partition(30)
    try:
        report = _reconcile(dvp)
    finally:
        dvp.world.xrpl_node.faults.heal()

    assert report.breaks == [], report.to_json()
    assert not report.ok
    assert (report.status, report.exit_code) == ("incomplete", 2)
    assert [u.chain for u in report.unreachable] == [ChainName.XRPL]
    assert report.unreachable[0].unchecked > 0
    assert (report.submissions_checked, report.legs_checked) == (3, 1), "Stellar still checked"


def _legs(dvp: Dvp, sid: UUID) -> list[LegRow]:
    return dvp.coordinator.settlement(sid)[1]


def _tamper(urls: DatabaseUrls, sql: str, **params: object) -> None:
    """Write to the settlement tables behind the engine's back (their guards off)."""
    owner = create_engine(urls.owner)
    try:
        with owner.begin() as c:
            c.execute(text("ALTER TABLE settlement_legs DISABLE TRIGGER USER"))
            c.execute(text(sql), params)
            c.execute(text("ALTER TABLE settlement_legs ENABLE TRIGGER USER"))
    finally:
        owner.dispose()


def test_a_refused_payout_reconciles_clean_while_it_waits_and_once_returned(dvp: Dvp) -> None:
    """After COMMIT the buyer sets deposit authorisation: the agent's finish is refused
    for good. The USDC, claimed into the agent, waits HELD; the bond's escrow, REFUSED,
    is still on the ledger. Nothing disagrees: a REFUSED escrow is a lock on the ledger,
    a HELD balance is its applied claim. Past CancelAfter every leg returns (a
    settlement that decided COMMIT ends UNWOUND) and that reconciles clean too, the
    escrow's cancel stating what went back."""
    world = dvp.world
    sid = _instruct(dvp, deadline_s=600)
    result = dvp.drive(sid, until=lambda: _legs(dvp, sid)[0].state == "HELD")
    assert result.progress is Progress.WAITING, result
    world.xrpl.send(
        AccountSet(
            account=world.buyer_xrpl.classic_address, set_flag=AccountSetAsfFlag.ASF_DEPOSIT_AUTH
        ),
        world.buyer_xrpl,
    )
    assert dvp.drive(sid, timeout_s=20).progress is Progress.NEEDS_REVIEW
    assert [leg.state for leg in _legs(dvp, sid)] == ["HELD", "REFUSED"]

    waiting = _reconcile(dvp)

    assert waiting.ok, waiting.to_json()
    assert waiting.legs_checked == 2, "the refused escrow read with its terms, the claim gone"

    dvp.past_cancel_after(sid)
    result = dvp.to_rest(sid)
    assert (result.progress, result.status) == (Progress.DONE, "UNWOUND"), result
    assert dvp.coordinator.settlement(sid)[0].decision == "COMMIT"

    returned = _reconcile(dvp)

    assert returned.ok, returned.to_json()
    # the escrow's cancel: the bond back with the seller; the agent's payment: the
    # USDC it held back with the buyer
    assert returned.delivered_checked == 2
    assert returned.delivered_not_stated == []


def test_a_custody_leg_is_checked_by_its_lock_payment(dvp: Dvp, fresh_urls: DatabaseUrls) -> None:
    """Without TokenEscrow the bond is locked in custody: the seller pays it into the
    agent's account, and the leg is HELD from the lock on, with no lock object on the
    ledger to read. Its applied lock payment is what shows it: recorded refused, the
    HELD leg has nothing to show for itself. Settled, its payout is a payment from the
    agent, which states what it delivered."""
    world = dvp.world
    assert world.xrpl_node is not None
    world.xrpl_node.chain.amendments = enabled_set({"TokenEscrow": False})
    world.xrpl.trust(world.agent_xrpl, world.bond, Decimal(1_000_000))
    settled = _settled(dvp)
    sid = _instruct(dvp, deadline_s=600, settle_in_s=300)
    _escrowed(dvp, sid, ("LOCKED", "HELD"))
    assert [leg.lock_kind for leg in _legs(dvp, sid)] == ["claimable", "custody"]

    report = _reconcile(dvp)

    assert report.ok, report.to_json()
    assert report.legs_checked == 2, "the two USDC balances; a custody lock has no object"
    assert report.delivered_not_stated == [], report.to_json()
    assert report.delivered_checked == 2, f"both legs of {settled}: the agent's payments"

    owner = create_engine(fresh_urls.owner)
    try:
        with owner.begin() as c:
            c.execute(text("ALTER TABLE ledger_submissions DISABLE TRIGGER USER"))
            c.execute(
                text(
                    "UPDATE ledger_submissions SET status = 'REJECTED', result_code = 'tecPATH_DRY'"
                    " WHERE settlement_id = :sid AND leg_no = 1 AND purpose = 'lock'"
                ),
                {"sid": sid},
            )
            c.execute(text("ALTER TABLE ledger_submissions ENABLE TRIGGER USER"))
    finally:
        owner.dispose()

    report = _reconcile(dvp)

    assert sorted((b.kind, b.settlement_id, b.leg_no) for b in report.breaks) == [
        (BreakKind.NO_APPLIED_SUBMISSION, sid, 1),
        (BreakKind.TX_RESULT_DIFFERS, sid, 1),
    ], report.to_json()


def test_a_delivered_amount_other_than_the_legs_is_a_break(
    dvp: Dvp, fresh_urls: DatabaseUrls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The records say 12 bonds and 1001 USDC; the escrow's finish delivered 10, the
    agent's claim took in 1000 and its payment delivered 1000: each is a break naming
    both amounts and its transaction, and `settle reconcile` names the settlement and
    leg of each."""
    sid = _settled(dvp)
    assert _reconcile(dvp).ok
    _tamper(
        fresh_urls,
        "UPDATE settlement_legs SET amount = amount + CASE leg_no WHEN 1 THEN 2 ELSE 1 END"
        " WHERE settlement_id = :sid",
        sid=sid,
    )

    report = _reconcile(dvp)

    _, _, subs = dvp.coordinator.settlement(sid)
    applied = {(s.leg_no, s.purpose): s.tx_hash for s in subs if s.status == "APPLIED"}
    assert sorted((b.kind, b.chain, b.leg_no, b.tx_hash) for b in report.breaks) == sorted(
        [
            (BreakKind.DELIVERED_AMOUNT, ChainName.STELLAR, 0, applied[(0, "claim")]),
            (BreakKind.DELIVERED_AMOUNT, ChainName.STELLAR, 0, applied[(0, "commit")]),
            (BreakKind.DELIVERED_AMOUNT, ChainName.XRPL, 1, applied[(1, "commit")]),
        ]
    ), report.to_json()
    assert {b.settlement_id for b in report.breaks} == {sid}
    xrpl = next(b for b in report.breaks if b.leg_no == 1)
    assert str(BOND + 2) in xrpl.expected and f"{BOND} delivered" in xrpl.found
    assert dvp.world.buyer_xrpl.classic_address in xrpl.expected
    for stellar in (b for b in report.breaks if b.leg_no == 0):
        assert str(PRICE + 1) in stellar.expected and f"{PRICE} delivered" in stellar.found
    assert report.exit_code == 1

    world = dvp.world
    for name, value in {
        "SETTLEMENT_DATABASE_URL": fresh_urls.owner,
        "SETTLEMENT_DATA_DIR": str(tmp_path),
        "SETTLEMENT_XRPL_URL": world.xrpl.url,
        "SETTLEMENT_HORIZON_URL": world.stellar.url,
        "SETTLEMENT_XRPL_AGENT": world.agent_xrpl.classic_address,
        "SETTLEMENT_STELLAR_AGENT": world.agent_stellar.public_key,
    }.items():
        monkeypatch.setenv(name, value)
    printed = CliRunner().invoke(app, ["reconcile"])
    assert printed.exit_code == 1, printed.output
    lines = printed.output.splitlines()
    assert lines[0] == "reconcile: breaks"
    assert sorted(line.split(" expected ")[0] for line in lines[1:]) == [
        f"  break delivered_amount [stellar] settlement {sid} leg 0",
        f"  break delivered_amount [stellar] settlement {sid} leg 0",
        f"  break delivered_amount [xrpl] settlement {sid} leg 1",
    ], printed.output


def _repoint_payout(urls: DatabaseUrls, sid: UUID, leg_no: int, tx_hash: str, dvp: Dvp) -> None:
    """Record ``tx_hash`` (a validated Stellar transaction) as the leg's applied commit,
    in the ledger that holds it, behind the engine's back."""
    server = dvp.world.stellar.server
    index = int(server.transactions().transaction(tx_hash).call()["ledger"])
    ledger_hash = str(server.ledgers().ledger(index).call()["hash"])
    owner = create_engine(urls.owner)
    try:
        with owner.begin() as c:
            c.execute(text("ALTER TABLE ledger_submissions DISABLE TRIGGER USER"))
            c.execute(
                text(
                    "UPDATE ledger_submissions SET tx_hash = :t, ledger_index = :i,"
                    " ledger_hash = :h WHERE settlement_id = :sid AND leg_no = :leg"
                    " AND purpose = 'commit'"
                ),
                {"t": tx_hash, "i": index, "h": ledger_hash, "sid": sid, "leg": leg_no},
            )
            c.execute(text("ALTER TABLE ledger_submissions ENABLE TRIGGER USER"))
    finally:
        owner.dispose()


def test_a_held_legs_payout_that_delivered_otherwise_is_a_break(
    dvp: Dvp, fresh_urls: DatabaseUrls
) -> None:
    """The USDC leg is held: the agent claimed exactly the 1000 the records say, then
    paid on. Its recorded payout is replaced by a validated payment of 999 to the
    seller, then by one of 1000 to another account: the claim still matches, the
    submission is where the records say, and only what the payout delivered differs."""
    sid = _settled(dvp)
    world = dvp.world
    seller, other = world.seller_stellar.public_key, world.fee_stellar.public_key
    usdc = SdkAsset(world.usdc.code, world.usdc.issuer)

    def pay(to: str, amount: Decimal) -> str:
        return world.stellar.send(
            world.buyer_stellar, lambda b: b.append_payment_op(to, usdc, f"{amount:f}")
        )

    short = pay(seller, PRICE - 1)
    _repoint_payout(fresh_urls, sid, 0, short, dvp)

    report = _reconcile(dvp)

    assert [(b.kind, b.chain, b.settlement_id, b.leg_no, b.tx_hash) for b in report.breaks] == [
        (BreakKind.DELIVERED_AMOUNT, ChainName.STELLAR, sid, 0, short)
    ], report.to_json()
    assert report.breaks[0].expected == f"{PRICE} USDC:{world.usdc.issuer} delivered to " + (
        f"{seller} (leg is COMMITTED)"
    )
    assert report.breaks[0].found == f"{PRICE - 1} delivered to {seller} in {short}"
    assert report.delivered_not_stated == []

    elsewhere = pay(other, PRICE)
    _repoint_payout(fresh_urls, sid, 0, elsewhere, dvp)

    report = _reconcile(dvp)

    assert [(b.kind, b.leg_no, b.tx_hash) for b in report.breaks] == [
        (BreakKind.DELIVERED_AMOUNT, 0, elsewhere)
    ], report.to_json()
    assert report.breaks[0].found == f"{PRICE} delivered to {other} in {elsewhere}"


class _Unstating:
    """A chain whose lookup states no delivered amount, as an adapter that does not
    read it (the fault simulation's fake ledger)."""

    def __init__(self, chain: Chain) -> None:
        self._chain = chain

    def __getattr__(self, name: str) -> object:
        return getattr(self._chain, name)

    def lookup(self, tx_hash: str) -> LedgerTx | None:
        found = self._chain.lookup(tx_hash)
        if found is None:
            return None
        kept = {k: v for k, v in found.extra.items() if not k.startswith("delivered")}
        return replace(found, extra=kept)


def test_payouts_that_state_nothing_are_listed_not_broken(dvp: Dvp) -> None:
    """Where no lookup states a delivered amount, reconcile works as before: the
    escrow's finish is compared by what its release states arrived, and the agent's
    payment of the held USDC is listed as not stated, not as a break."""
    sid = _settled(dvp)
    chains = {name: cast(Chain, _Unstating(chain)) for name, chain in dvp.world.chains.items()}

    report = Reconciler(dvp.engine.db, chains).run()

    assert report.ok, report.to_json()
    assert report.delivered_checked == 1, "the escrow's finish, by its release"
    assert [(u.settlement_id, u.leg_no) for u in report.delivered_not_stated] == [(sid, 0)]
    assert "states no delivered amount" in report.delivered_not_stated[0].reason


def test_a_partial_settlement_is_found_while_it_is_still_open(dvp: Dvp) -> None:
    """Both legs locked, the settlement waiting for its date, and the fulfillment out: the
    buyer finishes the bond's escrow itself, and past T_cancel also takes its USDC
    back. The records still say LOCKED, LOCKED; the ledgers say one leg paid and the
    other returned, and that is a partial settlement while it is still open. Once the
    engine has read both releases (and stopped for a person, still UNWINDING), the
    records say it too, and the releases themselves reconcile: neither leg needs a
    commit or unwind of the engine's own."""
    world = dvp.world
    sid = _instruct(dvp, deadline_s=600, settle_in_s=300)
    _escrowed(dvp, sid)
    settlement, legs, _ = dvp.coordinator.settlement(sid)
    # the engine's secret, as if it had leaked
    fulfillment = HashLock(dvp.coordinator._sealer.open(settlement.secret_sealed)).fulfillment_hex
    finished = dvp.finish_as_receiver(legs[1], fulfillment)
    dvp.past_cancel_after(sid)
    assert legs[0].lock_balance_id is not None
    reclaimed = dvp.reclaim(legs[0].lock_balance_id)
    assert [leg.state for leg in _legs(dvp, sid)] == ["LOCKED", "LOCKED"]

    report = _reconcile(dvp)

    kinds = sorted((b.kind, b.chain, b.leg_no) for b in report.breaks)
    assert kinds == [
        (BreakKind.LOCK_MISSING, ChainName.STELLAR, 0),
        (BreakKind.LOCK_MISSING, ChainName.XRPL, 1),
        (BreakKind.PARTIAL_OPEN, ChainName.STELLAR, 0),
    ], report.to_json()
    partial = next(b for b in report.breaks if b.kind is BreakKind.PARTIAL_OPEN)
    assert partial.settlement_id == sid
    assert reclaimed in partial.found and finished in partial.found
    missing = next(b for b in report.breaks if b.leg_no == 1)
    assert finished in missing.found and world.buyer_xrpl.classic_address in missing.found

    result = dvp.drive(sid, timeout_s=20)
    assert result.progress is Progress.NEEDS_REVIEW, result
    settlement, legs, _ = dvp.coordinator.settlement(sid)
    assert settlement.status == "UNWINDING"
    assert [(leg.state, leg.released_tx_hash) for leg in legs] == [
        ("UNWOUND", reclaimed),
        ("COMMITTED", finished),
    ]

    report = _reconcile(dvp)

    assert [(b.kind, b.settlement_id, b.leg_no) for b in report.breaks] == [
        (BreakKind.PARTIAL_OPEN, sid, 0)
    ], report.to_json()
    assert "is UNWOUND" in report.breaks[0].found and "leg 1 is COMMITTED" in report.breaks[0].found
    assert report.delivered_checked == 2, "each release states what arrived, and it matches"
