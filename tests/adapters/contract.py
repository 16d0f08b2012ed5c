"""The Chain port's contract, stated once and run against every adapter.

A backend subclasses ``ChainContract`` and provides one fixture, ``harness``: an object
satisfying ``Harness`` that wires the adapter under test to a ledger the test controls
(funded accounts whose keys the signer holds, ledger time, faults). Everything chain
specific lives in the harness; the tests below only use the port and the harness.

What the contract says (DESIGN.md sections 4 and 8):
- lock then commit moves exactly the amount to the receiver, and lock then unwind
  returns it to the sender; the total over the accounts and the lock is conserved,
  fees apart;
- an applied transaction carries a ledger index and hash that ``lookup`` confirms;
- sending the same submission again never applies it twice;
- a lock the ledger refuses (underfunded) is a final ``Rejected`` and moves nothing;
- ``submit``, ``status`` and ``lookup`` never sign: only ``prepare_*`` does;
- a lost response is ``Pending``, then ``status`` finds it ``Applied`` by hash;
- an unreachable ledger is ``Unavailable``, the breaker opens, and the adapter recovers
  when the ledger is back;
- ``Expired`` only once the ledger is past the expiry, never before;
- ``ledger_time`` is the latest validated close time, aware, following the ledger's own
  clock (not the engine's), never going back; an unreachable ledger is ``Unavailable``;
- ``lock_state`` reads a lock back with its terms while it exists and absent once it
  is released; ``locks_of`` lists it for its sender; an unreachable ledger is
  ``Unavailable`` for both, never "absent";
- ``balance`` is what the ledger holds (a lock's amount has left the sender's balance
  and, once committed, is in the receiver's); a token the account has no trust line for
  is 0; an account the ledger does not hold is ``AccountNotFound``, never 0; an
  unreachable ledger raises ``TransportError``, never 0.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

import pytest
from stellar_sdk import Keypair
from xrpl.wallet import Wallet

from adapters.chain import (
    Applied,
    Asset,
    Chain,
    ChainName,
    Expired,
    Leg,
    LockRef,
    LockState,
    LockTerms,
    Outcome,
    Pending,
    Rejected,
    SignedSubmission,
    Unavailable,
    is_final,
)
from adapters.errors import AccountNotFound, LegInvalid, TransportError
from adapters.resilience import ResiliencePolicy

SETTLE_TIMEOUT_S = 15.0
POLL_S = 0.05


class Harness(Protocol):
    """What a backend gives the contract tests."""

    @property
    def chain(self) -> Chain:
        """The adapter under test."""
        ...

    #: the asset the tests settle, and an amount of it every new account can lock
    asset: Asset
    amount: Decimal
    #: an amount finer than the ledger's precision
    too_precise: Decimal
    #: the guard policy the chain runs with (small timeouts, so breakers move fast)
    policy: ResiliencePolicy
    agent: str

    def new_account(self) -> str:
        """A funded account holding ``asset``, whose key the adapter's signer holds."""
        ...

    def balance(self, account: str) -> Decimal:
        """The account's balance of ``asset``, as the ledger holds it now."""
        ...

    def locked(self, lock: LockRef) -> Decimal:
        """What the lock still holds (0 once it is released)."""
        ...

    def fee_paid(self, tx_hash: str) -> Decimal:
        """The fee the transaction cost in ``asset`` (0 if fees are paid in another)."""
        ...

    def terms(self, cancel_in_s: int) -> LockTerms:
        """Lock terms with T_cancel ``cancel_in_s`` seconds after the ledger's now."""
        ...

    @property
    def fulfillment_hex(self) -> str:
        """The fulfillment matching ``terms().condition_hex``."""
        ...

    def make_unwindable(self, terms: LockTerms) -> None:
        """Bring the ledger to where an unwind of a lock with ``terms`` may apply."""
        ...

    def pass_expiry(self, submission: SignedSubmission) -> None:
        """Move the ledger past the submission's expiry and close a ledger."""
        ...

    def advance_ledger_time(self, seconds: int) -> None:
        """Move the ledger's own clock (not the engine's) forward and close a ledger;
        skips the test on a ledger whose clock cannot be moved."""
        ...

    def signatures(self) -> int:
        """How many signatures the adapter's signer has made."""
        ...

    def drop_next_response(self) -> None:
        """The next submission is applied and its answer lost."""
        ...

    def partition(self) -> None:
        """The ledger stops answering."""
        ...

    def heal(self) -> None: ...


@dataclass
class Books:
    """Holdings of the accounts of a leg plus its lock, with the fees paid added back."""

    harness: Harness
    leg: Leg
    fees: Decimal = Decimal(0)

    def total(self, lock: LockRef | None) -> Decimal:
        accounts = (self.leg.sender, self.leg.receiver, self.harness.agent)
        held = sum((self.harness.balance(a) for a in accounts), Decimal(0))
        return held + (self.harness.locked(lock) if lock else Decimal(0)) + self.fees

    def paid(self, outcome: Outcome) -> None:
        """Count the fee of a transaction that is in a ledger."""
        if isinstance(outcome, Applied) or (isinstance(outcome, Rejected) and outcome.applied):
            self.fees += self.harness.fee_paid(outcome.tx_hash)


def settle(harness: Harness, submission: SignedSubmission) -> Outcome:
    """Submit, then poll by hash until the outcome is final (never re-signing)."""
    outcome = harness.chain.submit(submission)
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while not is_final(outcome) and time.monotonic() < deadline:
        time.sleep(POLL_S)
        outcome = harness.chain.status(submission)
    return outcome


def applied(outcome: Outcome) -> Applied:
    assert isinstance(outcome, Applied), outcome
    assert outcome.ledger_index > 0 and outcome.ledger_hash
    return outcome


class ChainContract:
    """Subclass once per backend and provide the ``harness`` fixture."""

    @pytest.fixture
    def harness(self) -> Harness:
        raise NotImplementedError("a backend provides the harness fixture")

    @pytest.fixture
    def leg(self, harness: Harness) -> Leg:
        return Leg(
            chain=harness.chain.name,
            asset=harness.asset,
            amount=harness.amount,
            sender=harness.new_account(),
            receiver=harness.new_account(),
        )

    def lock(self, harness: Harness, leg: Leg) -> tuple[LockRef, LockTerms, Books]:
        books = Books(harness, leg)
        terms = harness.terms(cancel_in_s=3600)
        harness.chain.validate_leg(leg)
        submission = harness.chain.prepare_lock(leg, terms)
        assert submission.lock_ref is not None
        outcome = applied(settle(harness, submission))
        books.paid(outcome)
        return submission.lock_ref, terms, books

    # -- moving money --------------------------------------------------------------------

    def test_lock_then_commit_moves_exactly_the_amount(self, harness: Harness, leg: Leg) -> None:
        before = {a: harness.balance(a) for a in (leg.sender, leg.receiver)}
        total = Books(harness, leg).total(None)
        lock, _, books = self.lock(harness, leg)
        assert harness.locked(lock) == leg.amount
        assert books.total(lock) == total

        commit = harness.chain.prepare_commit(leg, lock, harness.fulfillment_hex)
        outcome = applied(settle(harness, commit))
        books.paid(outcome)

        assert harness.locked(lock) == 0
        assert harness.balance(leg.receiver) == before[leg.receiver] + leg.amount
        lock_fee = books.fees - harness.fee_paid(outcome.tx_hash)
        assert harness.balance(leg.sender) == before[leg.sender] - leg.amount - lock_fee
        assert books.total(lock) == total, "conservation: nothing created or lost but fees"

    def test_lock_then_unwind_returns_the_amount(self, harness: Harness, leg: Leg) -> None:
        before = {a: harness.balance(a) for a in (leg.sender, leg.receiver)}
        total = Books(harness, leg).total(None)
        lock, terms, books = self.lock(harness, leg)
        lock_fee = books.fees
        harness.make_unwindable(terms)

        outcome = applied(settle(harness, harness.chain.prepare_unwind(leg, lock)))
        books.paid(outcome)

        assert harness.locked(lock) == 0
        assert harness.balance(leg.receiver) == before[leg.receiver]
        assert harness.balance(leg.sender) == before[leg.sender] - lock_fee
        assert books.total(lock) == total

    def test_applied_carries_ledger_refs_that_lookup_confirms(
        self, harness: Harness, leg: Leg
    ) -> None:
        submission = harness.chain.prepare_lock(leg, harness.terms(cancel_in_s=3600))
        outcome = applied(settle(harness, submission))
        assert outcome.tx_hash == submission.tx_hash
        found = harness.chain.lookup(submission.tx_hash)
        assert found is not None
        assert (found.ledger_index, found.ledger_hash) == (
            outcome.ledger_index,
            outcome.ledger_hash,
        )
        assert found.validated and found.successful
        assert harness.chain.status(submission) == outcome, "status is stable once final"
        assert harness.chain.lookup("0" * 64) is None

    def test_resubmitting_never_applies_twice(self, harness: Harness, leg: Leg) -> None:
        before = harness.balance(leg.sender)
        submission = harness.chain.prepare_lock(leg, harness.terms(cancel_in_s=3600))
        first = applied(settle(harness, submission))
        again = harness.chain.submit(submission)
        assert isinstance(again, Applied | Rejected), again
        assert is_final(again)
        if isinstance(again, Applied):
            assert (again.ledger_index, again.ledger_hash) == (
                first.ledger_index,
                first.ledger_hash,
            )
        assert submission.lock_ref is not None
        assert harness.locked(submission.lock_ref) == leg.amount
        fee = harness.fee_paid(submission.tx_hash)
        assert harness.balance(leg.sender) == before - leg.amount - fee

    def test_release_happens_once(self, harness: Harness, leg: Leg) -> None:
        """A lock is released once: after a commit, an unwind of it fails and moves nothing."""
        lock, _, _ = self.lock(harness, leg)
        applied(settle(harness, harness.chain.prepare_commit(leg, lock, harness.fulfillment_hex)))
        sender, receiver = harness.balance(leg.sender), harness.balance(leg.receiver)
        try:
            unwind = harness.chain.prepare_unwind(leg, lock)
        except LegInvalid:
            return  # refusing to sign is as good
        outcome = settle(harness, unwind)
        assert isinstance(outcome, Rejected) and is_final(outcome), outcome
        assert harness.balance(leg.receiver) == receiver
        assert harness.balance(leg.sender) == sender

    # -- reading locks back (reconciliation) ------------------------------------------------

    def test_lock_state_reads_the_lock_back_until_it_is_released(
        self, harness: Harness, leg: Leg
    ) -> None:
        lock, terms, _ = self.lock(harness, leg)
        state = harness.chain.lock_state(lock)
        assert isinstance(state, LockState) and state.exists, state
        assert (state.asset, state.amount, state.sender) == (leg.asset, leg.amount, leg.sender)
        assert state.key and state.lock == lock
        assert state.cancel_after is not None
        assert terms.cancel_after <= state.cancel_after < terms.cancel_after + timedelta(seconds=1)
        assert state.receiver == leg.receiver or any(
            c.destination == harness.agent and c.unconditional for c in state.claimants
        ), "the receiver (hash-locked) or the agent (at once) can take the lock"
        listed = harness.chain.locks_of(leg.sender)
        assert isinstance(listed, list), listed
        # read in a later validated ledger, perhaps: the same lock all but the ledger
        same = [replace(s, ledger_index=state.ledger_index) for s in listed if s.key == state.key]
        assert same == [state]

        applied(settle(harness, harness.chain.prepare_commit(leg, lock, harness.fulfillment_hex)))
        gone = harness.chain.lock_state(lock)
        assert isinstance(gone, LockState) and not gone.exists, gone
        assert gone.amount is None and gone.key == state.key
        listed = harness.chain.locks_of(leg.sender)
        assert isinstance(listed, list) and all(s.key != state.key for s in listed)

    def test_lock_state_of_an_unreachable_ledger_is_unavailable(
        self, harness: Harness, leg: Leg
    ) -> None:
        lock, _, _ = self.lock(harness, leg)
        harness.partition()
        try:
            assert isinstance(harness.chain.lock_state(lock), Unavailable)
            assert isinstance(harness.chain.locks_of(leg.sender), Unavailable)
        finally:
            harness.heal()
        time.sleep(harness.policy.reset_timeout_s * 1.5)
        state = harness.chain.lock_state(lock)
        assert isinstance(state, LockState) and state.exists, state

    def test_ledger_time_follows_the_ledgers_own_clock(self, harness: Harness) -> None:
        before = harness.chain.ledger_time()
        assert isinstance(before, datetime) and before.tzinfo is not None, before
        harness.advance_ledger_time(3600)
        after = harness.chain.ledger_time()
        assert isinstance(after, datetime), after
        # XRPL rounds close times to its resolution (10 s): allow for it, not for more
        assert after >= before + timedelta(seconds=3600 - 30), (before, after)
        harness.partition()
        try:
            assert isinstance(harness.chain.ledger_time(), Unavailable)
        finally:
            harness.heal()
        time.sleep(harness.policy.reset_timeout_s * 1.5)
        again = harness.chain.ledger_time()
        assert isinstance(again, datetime) and again >= after, again

    # -- balances ---------------------------------------------------------------------------

    def test_balance_is_what_the_ledger_holds(self, harness: Harness, leg: Leg) -> None:
        chain = harness.chain
        before = chain.balance(leg.sender, leg.asset)
        assert before == harness.balance(leg.sender) and before >= leg.amount
        receiver = chain.balance(leg.receiver, leg.asset)
        lock, _, books = self.lock(harness, leg)
        # the lock's funds left the sender's balance: they are in the lock, not held
        assert chain.balance(leg.sender, leg.asset) == before - leg.amount - books.fees
        assert chain.balance(leg.sender, leg.asset) == harness.balance(leg.sender)
        applied(settle(harness, chain.prepare_commit(leg, lock, harness.fulfillment_hex)))
        assert chain.balance(leg.receiver, leg.asset) == harness.balance(leg.receiver)
        assert chain.balance(leg.receiver, leg.asset) == receiver + leg.amount
        if not leg.asset.is_native:
            # a token of another issuer: no trust line, so the ledger holds none of it
            stranger = Asset(leg.asset.code, _unfunded_address(chain.name))
            assert chain.balance(leg.sender, stranger) == 0

    def test_balance_of_an_account_the_ledger_does_not_hold(self, harness: Harness) -> None:
        with pytest.raises(AccountNotFound):
            harness.chain.balance(_unfunded_address(harness.chain.name), harness.asset)

    def test_balance_of_an_unreachable_ledger_raises(self, harness: Harness, leg: Leg) -> None:
        harness.partition()
        try:
            with pytest.raises(TransportError):
                harness.chain.balance(leg.sender, leg.asset)
        finally:
            harness.heal()
        time.sleep(harness.policy.reset_timeout_s * 1.5)
        assert harness.chain.balance(leg.sender, leg.asset) == harness.balance(leg.sender)

    # -- refusals --------------------------------------------------------------------------

    def test_validate_leg_refuses_what_cannot_settle(self, harness: Harness, leg: Leg) -> None:
        harness.chain.validate_leg(leg)
        with pytest.raises(LegInvalid, match=r"decimal|precision|digits"):
            harness.chain.validate_leg(_with(leg, amount=harness.too_precise))
        with pytest.raises(LegInvalid, match="positive"):
            harness.chain.validate_leg(_with(leg, amount=Decimal(0)))
        with pytest.raises(LegInvalid):
            harness.chain.validate_leg(_with(leg, amount=harness.balance(leg.sender) + 1))

    def test_underfunded_lock_is_rejected_and_moves_nothing(
        self, harness: Harness, leg: Leg
    ) -> None:
        too_much = _with(leg, amount=harness.balance(leg.sender) + 1)
        before = {a: harness.balance(a) for a in (leg.sender, leg.receiver)}
        submission = harness.chain.prepare_lock(too_much, harness.terms(cancel_in_s=3600))
        outcome = settle(harness, submission)
        assert isinstance(outcome, Rejected), outcome
        assert is_final(outcome)
        assert submission.lock_ref is not None
        assert harness.locked(submission.lock_ref) == 0
        fee = harness.fee_paid(submission.tx_hash) if outcome.applied else Decimal(0)
        assert harness.balance(leg.sender) == before[leg.sender] - fee
        assert harness.balance(leg.receiver) == before[leg.receiver]

    # -- reliable submission ---------------------------------------------------------------

    def test_only_prepare_signs(self, harness: Harness, leg: Leg) -> None:
        signed = harness.signatures()
        submission = harness.chain.prepare_lock(leg, harness.terms(cancel_in_s=3600))
        assert harness.signatures() == signed + 1
        harness.drop_next_response()
        harness.chain.submit(submission)
        settle(harness, submission)
        harness.chain.submit(submission)
        harness.chain.status(submission)
        harness.chain.lookup(submission.tx_hash)
        assert harness.signatures() == signed + 1, "submit, status and lookup never sign"

    def test_lost_response_is_pending_then_applied_by_hash(
        self, harness: Harness, leg: Leg
    ) -> None:
        before = harness.balance(leg.sender)
        submission = harness.chain.prepare_lock(leg, harness.terms(cancel_in_s=3600))
        harness.drop_next_response()
        first = harness.chain.submit(submission)
        assert isinstance(first, Pending), first
        assert first.tx_hash == submission.tx_hash
        outcome = harness.chain.status(submission)
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while isinstance(outcome, Pending) and time.monotonic() < deadline:
            time.sleep(POLL_S)
            outcome = harness.chain.status(submission)
        applied(outcome)
        fee = harness.fee_paid(submission.tx_hash)
        assert harness.balance(leg.sender) == before - leg.amount - fee, "applied once"

    def test_unreachable_ledger_opens_the_breaker_then_recovers(
        self, harness: Harness, leg: Leg
    ) -> None:
        submission = harness.chain.prepare_lock(leg, harness.terms(cancel_in_s=3600))
        harness.partition()
        try:
            during = harness.chain.submit(submission)
            assert not is_final(during), during
            outcomes = [harness.chain.status(submission) for _ in range(harness.policy.fail_max)]
            assert all(isinstance(o, Unavailable) for o in outcomes), outcomes
            last = harness.chain.status(submission)
            assert isinstance(last, Unavailable) and last.breaker_open, last
        finally:
            harness.heal()
        time.sleep(harness.policy.reset_timeout_s * 1.5)
        outcome = settle(harness, submission)
        applied(outcome)

    def test_expired_only_after_the_expiry_has_passed_on_the_ledger(
        self, harness: Harness, leg: Leg
    ) -> None:
        submission = harness.chain.prepare_lock(leg, harness.terms(cancel_in_s=3600))
        # Never sent: it can only expire. Until the ledger passes the expiry, it could apply.
        assert isinstance(harness.chain.status(submission), Pending)
        harness.pass_expiry(submission)
        outcome = harness.chain.status(submission)
        assert isinstance(outcome, Expired), outcome
        late = harness.chain.submit(submission)
        assert is_final(late) and not isinstance(late, Applied), late
        assert submission.lock_ref is not None
        assert harness.locked(submission.lock_ref) == 0


def _unfunded_address(chain: ChainName) -> str:
    """A well-formed address no one funded, on ``chain``."""
    if chain is ChainName.XRPL:
        return str(Wallet.create().classic_address)
    return Keypair.random().public_key


def _with(leg: Leg, *, amount: Decimal) -> Leg:
    return Leg(leg.chain, leg.asset, amount, leg.sender, leg.receiver)
