"""The fake ledger of the DVP simulation keeps the Chain port's contract.

The simulation's verdicts hold for the real adapters only if its fake behaves as they
do, so ``FakeChain`` runs the same contract suite as the XRPL and Stellar adapters, in
both of its flavours: hash-locked escrows expiring by ledger index (XRPL) and claimable
balances expiring by ledger time (Stellar). The fake's ledger has a clock of its own,
closes a ledger whenever a status is read (a real ledger closes on its own timer, faster
than the suite polls), and runs behind a circuit breaker as the adapters do. It settles
an issued asset; its fees are paid in the native asset, so none is counted here.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from adapters.chain import Asset, ChainName, LockRef, LockTerms, SignedSubmission
from adapters.conditions import HashLock
from adapters.resilience import ChainGuard, ResiliencePolicy
from settlement.clock import ManualClock
from tests.adapters.contract import ChainContract
from tests.settlement.dvp.simulation import BOND, USDC, FakeChain, FakeLedger

POLICY = ResiliencePolicy(
    fail_max=3, reset_timeout_s=0.3, attempts=2, backoff_initial_s=0.01, backoff_max_s=0.05
)
#: what every new account holds of the settled asset
FUNDS = Decimal(1000)
#: an amount one place finer than the ledger keeps (6 places on XRPL, 7 on Stellar)
TOO_PRECISE = {ChainName.XRPL: Decimal("1.0000001"), ChainName.STELLAR: Decimal("1.00000001")}


@dataclass
class FakeHarness:
    """A ``FakeLedger`` of one flavour, its ``FakeChain`` and the ledger's own clock."""

    ledger: FakeLedger
    chain: FakeChain
    clock: ManualClock
    asset: Asset
    too_precise: Decimal
    amount: Decimal = Decimal("25.5")
    policy: ResiliencePolicy = POLICY
    lock_secret: HashLock = field(default_factory=HashLock.generate)
    _numbers: Iterator[int] = field(default_factory=itertools.count)

    @property
    def agent(self) -> str:
        return self.ledger.agent

    def new_account(self) -> str:
        # the fake signs for any account: every account's key is the signer's
        prefix = "r" if self.ledger.chain is ChainName.XRPL else "G"
        account = f"{prefix}Account{next(self._numbers)}"
        self.ledger.fund(account, self.asset, FUNDS)
        return account

    def balance(self, account: str) -> Decimal:
        return self.ledger.balance(account, self.asset)

    def locked(self, lock: LockRef) -> Decimal:
        return self.ledger.locked(lock)

    def fee_paid(self, tx_hash: str) -> Decimal:
        return Decimal(0)  # paid in the native asset, never the settled one

    def now(self) -> datetime:
        assert self.ledger.close_time is not None
        return self.ledger.close_time

    def terms(self, cancel_in_s: int) -> LockTerms:
        return LockTerms(
            self.lock_secret.condition_hex, self.now() + timedelta(seconds=cancel_in_s)
        )

    @property
    def fulfillment_hex(self) -> str:
        return self.lock_secret.fulfillment_hex

    def make_unwindable(self, terms: LockTerms) -> None:
        """An escrow cancels only past CancelAfter; the agent claims a balance at once."""
        if self.ledger.chain is ChainName.XRPL:
            self.pass_time_to(terms.cancel_after + timedelta(seconds=1))

    def pass_time_to(self, moment: datetime) -> None:
        """Close a ledger at ``moment`` or later."""
        self.clock.advance(max(timedelta(0), moment - self.clock.now()))
        self.ledger.close()

    def pass_expiry(self, submission: SignedSubmission) -> None:
        if submission.expires_ledger is not None:
            while self.ledger.index <= submission.expires_ledger:
                self.ledger.close()
            return
        assert submission.expires_at is not None
        self.pass_time_to(submission.expires_at + timedelta(seconds=1))

    def advance_ledger_time(self, seconds: int) -> None:
        self.clock.advance(timedelta(seconds=seconds))
        self.ledger.close()

    def signatures(self) -> int:
        return self.ledger.signatures

    def drop_next_response(self) -> None:
        self.ledger.submit_faults.append(("drop", None))

    def partition(self) -> None:
        self.ledger.partitioned = True

    def heal(self) -> None:
        self.ledger.partitioned = False


def fake_harness(chain: ChainName) -> FakeHarness:
    clock = ManualClock(datetime(2030, 1, 1, tzinfo=UTC))
    agent = "rAgent" if chain is ChainName.XRPL else "GAGENT"
    ledger = FakeLedger(chain, clock, agent=agent)
    ledger.on_status_read = ledger.close
    asset = BOND if chain is ChainName.XRPL else USDC
    ledger.fund(agent, asset, Decimal(0))
    fake = FakeChain(ledger, guard=ChainGuard(chain.value, POLICY))
    return FakeHarness(ledger, fake, clock, asset, TOO_PRECISE[chain])


class TestFakeXrplContract(ChainContract):
    """The contract on the fake's XRPL flavour: a token in hash-locked escrows."""

    @pytest.fixture
    def harness(self) -> FakeHarness:
        return fake_harness(ChainName.XRPL)


class TestFakeStellarContract(ChainContract):
    """The contract on the fake's Stellar flavour: claimable balances of a credit asset."""

    @pytest.fixture
    def harness(self) -> FakeHarness:
        return fake_harness(ChainName.STELLAR)
