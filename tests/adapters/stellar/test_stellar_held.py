"""The Stellar adapter's commit protocol: the agent claims a lock into its own account in
a transaction of its own, and only then pays the receiver (or the sender back).

On the local network, with an issued asset whose issuer can revoke authorisation, so a
payee's trust line can be de-authorised between the claim and the payout.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from decimal import Decimal

import pytest
from stellar_sdk import (
    AuthorizationFlag,
    ClaimClaimableBalance,
    TransactionEnvelope,
    TrustLineFlags,
)

from adapters.chain import Purpose, Rejected, Released, Unavailable
from adapters.errors import LegInvalid
from adapters.localnet.stellar import StellarNode
from adapters.resilience import ChainGuard
from adapters.stellar import StellarChain
from tests.adapters.contract import applied, settle
from tests.adapters.stellar.test_stellar_adapter import (
    POLICY,
    StellarHarness,
    halted,
    local_harness,
    locked_leg,
)


@pytest.fixture
def credit(stellar_node: StellarNode) -> Iterator[StellarHarness]:
    h = local_harness(stellar_node, credit=True)
    assert h.issuer is not None
    # the issuer may revoke authorisation, as regulated stablecoin issuers do
    h.send(
        h.issuer.public_key,
        lambda b: b.append_set_options_op(set_flags=AuthorizationFlag.AUTHORIZATION_REVOCABLE),
    )
    yield h
    h.close()


def deauthorize(h: StellarHarness, account: str) -> None:
    assert h.issuer is not None
    h.send(
        h.issuer.public_key,
        lambda b: b.append_set_trust_line_flags_op(
            account, h.sdk_asset, clear_flags=TrustLineFlags.AUTHORIZED_FLAG
        ),
    )


def test_the_claim_is_alone_in_its_transaction_then_the_agent_pays_the_receiver(
    credit: StellarHarness,
) -> None:
    h = credit
    leg, lock, _ = locked_leg(h)
    agent = h.balance(h.agent)
    receiver = h.balance(leg.receiver)

    claim = h.chain.prepare_claim(leg, lock)

    assert claim.purpose is Purpose.CLAIM
    operations = TransactionEnvelope.from_xdr(claim.blob, h.passphrase).transaction.operations
    assert [type(op) for op in operations] == [ClaimClaimableBalance]
    applied(settle(h, claim))
    assert h.locked(lock) == 0
    assert h.balance(h.agent) == agent + leg.amount, "the leg is held by the agent"
    assert h.balance(leg.receiver) == receiver

    commit = h.chain.prepare_commit(leg, lock, "", held=True)

    assert commit.purpose is Purpose.COMMIT
    applied(settle(h, commit))
    assert h.balance(leg.receiver) == receiver + leg.amount
    assert h.balance(h.agent) == agent


def test_a_held_leg_is_paid_back_to_the_sender_from_the_agent(credit: StellarHarness) -> None:
    h = credit
    leg, lock, _ = locked_leg(h)
    sender = h.balance(leg.sender)
    agent = h.balance(h.agent)
    applied(settle(h, h.chain.prepare_claim(leg, lock)))

    unwind = h.chain.prepare_unwind(leg, lock, held=True)

    assert unwind.purpose is Purpose.UNWIND
    applied(settle(h, unwind))
    assert h.balance(leg.sender) == sender + leg.amount
    assert h.balance(h.agent) == agent


def test_a_payee_deauthorised_after_the_claim_leaves_the_funds_with_the_agent(
    credit: StellarHarness,
) -> None:
    """The payout fails for good, but the claim stands: the funds wait with the agent,
    which can still pay them back to the sender (or, once the line is authorised again,
    to the receiver)."""
    h = credit
    leg, lock, _ = locked_leg(h)
    agent = h.balance(h.agent)
    applied(settle(h, h.chain.prepare_claim(leg, lock)))
    deauthorize(h, leg.receiver)

    outcome = settle(h, h.chain.prepare_commit(leg, lock, "", held=True))

    assert isinstance(outcome, Rejected), outcome
    assert (outcome.code, outcome.applied) == ("tx_failed: op_not_authorized", True)
    assert "payee's trustline is not authorised" in outcome.detail
    assert h.locked(lock) == 0, "the claim is not undone"
    assert h.balance(h.agent) == agent + leg.amount, "the funds wait with the agent"
    sender = h.balance(leg.sender)
    applied(settle(h, h.chain.prepare_unwind(leg, lock, held=True)))
    assert h.balance(leg.sender) == sender + leg.amount


def test_the_atomic_claim_and_pay_fails_as_a_whole_for_a_deauthorised_payee(
    credit: StellarHarness,
) -> None:
    """Why the claim comes first: claimed and paid in one transaction, the payee's
    refusal undoes the claim too, and the balance is left for the sender to reclaim
    after T_cancel while the other legs may already be paid."""
    h = credit
    leg, lock, _ = locked_leg(h)
    deauthorize(h, leg.receiver)

    outcome = settle(h, h.chain.prepare_commit(leg, lock, ""))

    assert isinstance(outcome, Rejected), outcome
    assert outcome.code == "tx_failed: op_success, op_not_authorized"
    assert h.locked(lock) == leg.amount, "the balance is still there, the claim undone"


def test_a_claim_checks_the_lock_holds_the_leg(credit: StellarHarness) -> None:
    h = credit
    leg, lock, _ = locked_leg(h)
    bigger = dataclasses.replace(leg, amount=leg.amount + Decimal(1))
    signed = h.signatures()
    with pytest.raises(LegInvalid, match="amount"):
        h.chain.prepare_claim(bigger, lock)
    assert h.signatures() == signed, "nothing signed for a mismatched lock"


def test_claims_and_held_payouts_go_out_on_channels(
    credit: StellarHarness, stellar_node: StellarNode
) -> None:
    """On a channel the agent stays each operation's source: the balance is claimed by
    and paid from the agent, while the channel pays the fee and takes the sequence."""
    h = credit
    channel = h.new_account(trust=False)
    chain = StellarChain(
        stellar_node.base_url,
        stellar_node.network_passphrase,
        agent=h.agent,
        signer=h.signer,
        guard=ChainGuard("stellar", POLICY),
        channels=[channel],
    )
    try:
        leg, lock, _ = locked_leg(h)
        receiver = h.balance(leg.receiver)
        claim = chain.prepare_claim(leg, lock, channel=channel)
        assert claim.channel == channel
        applied(settle(h, claim))
        applied(settle(h, chain.prepare_commit(leg, lock, "", held=True, channel=channel)))
        assert h.balance(leg.receiver) == receiver + leg.amount
        with pytest.raises(ValueError, match="not one of this adapter's channel"):
            chain.prepare_claim(leg, lock, channel=h.agent)
    finally:
        chain.close()


# -- who took a lock off the ledger ---------------------------------------------------------


def test_lock_release_names_the_agent_after_its_claim(credit: StellarHarness) -> None:
    h = credit
    leg, lock, _ = locked_leg(h)
    assert h.chain.lock_release(lock) is None, "still held"

    claimed = applied(settle(h, h.chain.prepare_claim(leg, lock)))

    assert h.chain.lock_release(lock) == Released(
        lock=lock,
        to=h.agent,
        tx_hash=claimed.tx_hash,
        ledger_index=claimed.ledger_index,
        ledger_hash=claimed.ledger_hash,
        delivered=leg.amount,
    )


def test_lock_release_names_the_sender_that_reclaimed_after_t_cancel(
    credit: StellarHarness,
) -> None:
    h = credit
    leg, lock, _ = locked_leg(h, cancel_in_s=600)
    assert lock.balance_id is not None
    balance_id = lock.balance_id
    h.pass_time(601)

    reclaimed = h.send(leg.sender, lambda b: b.append_claim_claimable_balance_op(balance_id))

    released = h.chain.lock_release(lock)
    assert isinstance(released, Released), released
    assert (released.to, released.tx_hash) == (leg.sender, reclaimed["hash"])
    assert released.ledger_index == reclaimed["ledger"]
    assert released.delivered == leg.amount
    header = h.horizon.ledgers().ledger(released.ledger_index).call()
    assert released.ledger_hash == header["hash"]
    # the agent's unwind now fails, and the release still says who took the funds
    assert isinstance(settle(h, h.chain.prepare_unwind(leg, lock)), Rejected)
    assert h.chain.lock_release(lock) == released


def test_lock_release_proves_nothing_it_cannot_read(credit: StellarHarness) -> None:
    h = credit
    _, lock, _ = locked_leg(h)
    never = dataclasses.replace(lock, balance_id="00000000" + "cd" * 32)
    unknown = h.chain.lock_release(never)
    assert isinstance(unknown, Unavailable) and "no claimable balance" in unknown.reason
    h.partition()
    try:
        cut_off = h.chain.lock_release(lock)
    finally:
        h.heal()
    assert isinstance(cut_off, Unavailable), cut_off
    with pytest.raises(ValueError, match="not a Stellar lock"):
        h.chain.lock_release(dataclasses.replace(lock, balance_id=None))


def test_lock_release_behind_a_lagging_server_is_never_a_wrong_answer(
    credit: StellarHarness,
) -> None:
    """A stale server has not seen the claim: its answer is None (held at its ledger),
    never a release to someone else. (The ledger's hash, read after, may come from the
    stale server too, which does not have that ledger yet: Unavailable, ask again.)"""
    h = credit
    leg, lock, _ = locked_leg(h)
    claimed = applied(settle(h, h.chain.prepare_claim(leg, lock)))
    assert h.node is not None
    with halted(h) as node:
        node.faults.lagging_server(node.latest_ledger - claimed.ledger_index + 1, share=0.5, seed=3)
        answers = [h.chain.lock_release(lock) for _ in range(30)]
    fresh = [a for a in answers if isinstance(a, Released)]
    assert fresh and all(a.to == h.agent and a.tx_hash == claimed.tx_hash for a in fresh)
    assert None in answers, "the stale server was asked too"
    assert all(a is None or isinstance(a, Released | Unavailable) for a in answers), answers
