"""The XRPL adapter against the local XRP Ledger (real HTTP, real xrpl-py), and the testnet.

``TestXrplContract`` runs the shared Chain contract on a node that closes ledgers on a
short timer. The XRPL-specific tests use a node that closes only when told, so every
ledger a test depends on is one it closed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from xrpl.models.amounts import IssuedCurrencyAmount
from xrpl.models.transactions import (
    AccountSet,
    AccountSetAsfFlag,
    EscrowFinish,
    Payment,
    Transaction,
    TrustSet,
)
from xrpl.transaction import sign
from xrpl.wallet import Wallet

from adapters.chain import (
    Applied,
    Asset,
    ChainName,
    Expired,
    Leg,
    LockRef,
    LockTerms,
    Outcome,
    Pending,
    Rejected,
    SignedSubmission,
    Unavailable,
    is_final,
)
from adapters.conditions import HashLock, condition_of_fulfillment, preimage_of
from adapters.errors import LegInvalid, SigningUnavailable
from adapters.localnet.xrpl import XrplNode
from adapters.localnet.xrpl.conditions import make_preimage_pair
from adapters.resilience import ChainGuard, ResiliencePolicy
from adapters.signing import InMemoryKeystore
from adapters.xrpl import XrplChain
from adapters.xrpl.amounts import currency_code, token_value, xrp_to_drops
from adapters.xrpl.chain import escrow_finish_fee_units, ripple_seconds
from adapters.xrpl.results import ledger_outcome, submit_outcome
from tests.adapters.contract import ChainContract

XRP = Asset("XRP")
DROPS = Decimal(1_000_000)
RIPPLE_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
POLICY = ResiliencePolicy(fail_max=3, reset_timeout_s=0.3, attempts=2, backoff_initial_s=0.01)


class CountingKeystore(InMemoryKeystore):
    """The keystore, counting the signatures it makes."""

    def __init__(self) -> None:
        super().__init__()
        self.signatures = 0

    def sign_xrpl(self, address: str, message: bytes) -> bytes:
        self.signatures += 1
        return super().sign_xrpl(address, message)


class Ledger:
    """The test's own view of a local node: funding, setup transactions, reads."""

    def __init__(self, node: XrplNode, keystore: CountingKeystore) -> None:
        assert node.url is not None
        self.node = node
        self.keystore = keystore
        self.http = httpx.Client(base_url=node.url)

    def raw(self, method: str, **params: Any) -> dict[str, Any]:
        body = {"method": method, "params": [params | {"api_version": 2}]}
        answer = self.http.post("/", json=body)
        result: dict[str, Any] = answer.json()["result"]
        return result

    def wallet(self, xrp: int = 1_000) -> Wallet:
        wallet = Wallet.create()
        self.node.fund(wallet.classic_address, xrp)
        self.keystore.add_xrpl(wallet)
        return wallet

    def setup(self, tx: Transaction, wallet: Wallet) -> None:
        """Sign, submit and validate a setup transaction; it must succeed."""
        fields = tx.to_dict() | {"sequence": self.next_sequence(wallet), "fee": "10"}
        signed = sign(type(tx).from_dict(fields), wallet)
        result = self.raw("submit", tx_blob=signed.blob())
        assert result["engine_result"] == "tesSUCCESS", result
        self.node.close_ledger()

    def next_sequence(self, wallet: Wallet) -> int:
        info = self.raw("account_info", account=wallet.classic_address, ledger_index="current")
        return int(info["account_data"]["Sequence"])

    def close_time(self) -> int:
        return int(self.raw("ledger", ledger_index="validated")["ledger"]["close_time"])

    def now(self) -> datetime:
        return RIPPLE_EPOCH + timedelta(seconds=self.close_time())

    def xrp(self, address: str) -> Decimal:
        data = self.raw("account_info", account=address, ledger_index="validated")["account_data"]
        return Decimal(data["Balance"]) / DROPS

    def tokens(self, holder: str, issuer: str, currency: str = "USD") -> Decimal:
        lines = self.raw("account_lines", account=holder, peer=issuer, ledger_index="validated")
        return sum(
            (Decimal(x["balance"]) for x in lines.get("lines", []) if x["currency"] == currency),
            Decimal(0),
        )

    def escrow(self, lock: LockRef) -> dict[str, Any] | None:
        entry = self.raw(
            "ledger_entry",
            escrow={"owner": lock.owner, "seq": lock.sequence},
            ledger_index="validated",
        )
        node: dict[str, Any] | None = entry.get("node")
        return node

    def fee(self, tx_hash: str) -> Decimal:
        return Decimal(self.raw("tx", transaction=tx_hash)["tx_json"]["Fee"]) / DROPS

    def pass_expiry(self, submission: SignedSubmission) -> None:
        assert submission.expires_ledger is not None
        while self.node.chain.last_closed.header.sequence <= submission.expires_ledger:
            self.node.close_ledger()


def make_chain(node: XrplNode, keystore: CountingKeystore, agent: str, **options: Any) -> XrplChain:
    assert node.url is not None
    guard = ChainGuard("xrpl", POLICY, sleep=lambda _: None)
    # these tests close ledgers by hand and look at once: no head shared between reads
    # (test_a_head_read_is_shared_for_a_moment covers the default)
    options.setdefault("head_fresh_s", 0.0)
    return XrplChain(node.url, agent=agent, signer=keystore, guard=guard, **options)


# --- the shared contract ----------------------------------------------------------------


@dataclass
class XrplHarness:
    ledger: Ledger
    chain: XrplChain
    agent: str
    asset: Asset = XRP
    amount: Decimal = Decimal("25.5")
    too_precise: Decimal = Decimal("1.0000001")
    policy: ResiliencePolicy = POLICY
    lock_secret: HashLock = field(default_factory=HashLock.generate)

    def new_account(self) -> str:
        return self.ledger.wallet().classic_address

    def balance(self, account: str) -> Decimal:
        return self.ledger.xrp(account)

    def locked(self, lock: LockRef) -> Decimal:
        escrow = self.ledger.escrow(lock)
        return Decimal(escrow["Amount"]) / DROPS if escrow else Decimal(0)

    def fee_paid(self, tx_hash: str) -> Decimal:
        return self.ledger.fee(tx_hash)

    def terms(self, cancel_in_s: int) -> LockTerms:
        return LockTerms(
            self.lock_secret.condition_hex, self.ledger.now() + timedelta(seconds=cancel_in_s)
        )

    @property
    def fulfillment_hex(self) -> str:
        return self.lock_secret.fulfillment_hex

    def make_unwindable(self, terms: LockTerms) -> None:
        behind_s = (terms.cancel_after - self.ledger.now()).total_seconds()
        self.ledger.node.advance_time(max(0, int(behind_s)) + 30)
        self.ledger.node.close_ledger()

    def pass_expiry(self, submission: SignedSubmission) -> None:
        self.ledger.pass_expiry(submission)

    def advance_ledger_time(self, seconds: int) -> None:
        self.ledger.node.advance_time(seconds)
        self.ledger.node.close_ledger()

    def signatures(self) -> int:
        return self.ledger.keystore.signatures

    def drop_next_response(self) -> None:
        self.ledger.node.faults.drop_submit_responses(1)

    def partition(self) -> None:
        self.ledger.node.faults.partition(60)

    def heal(self) -> None:
        self.ledger.node.faults.heal()
        time.sleep(0.05)


class TestXrplContract(ChainContract):
    @pytest.fixture
    def harness(self) -> Iterator[XrplHarness]:
        keystore = CountingKeystore()
        with XrplNode(close_interval_s=0.05) as node:
            ledger = Ledger(node, keystore)
            agent = ledger.wallet().classic_address
            yield XrplHarness(ledger, make_chain(node, keystore, agent), agent)
            ledger.http.close()


# --- XRPL specifics, on a node that closes only when told -------------------------------


@dataclass
class World:
    ledger: Ledger
    chain: XrplChain
    agent: Wallet
    alice: Wallet
    bob: Wallet
    lock_secret: HashLock

    def close(self) -> None:
        self.ledger.node.close_ledger()

    def settle(self, submission: SignedSubmission) -> Outcome:
        """Submit, close a ledger, read the status: final, on a node closing on demand."""
        submitted = self.chain.submit(submission)
        assert isinstance(submitted, Pending), submitted
        self.close()
        return self.chain.status(submission)

    def terms(self, cancel_in_s: int = 600) -> LockTerms:
        return LockTerms(
            self.lock_secret.condition_hex, self.ledger.now() + timedelta(seconds=cancel_in_s)
        )

    def leg(self, amount: str, asset: Asset = XRP, *, to: Wallet | None = None) -> Leg:
        receiver = (to or self.bob).classic_address
        return Leg(ChainName.XRPL, asset, Decimal(amount), self.alice.classic_address, receiver)

    def lock(self, leg: Leg, cancel_in_s: int = 600) -> tuple[LockRef, LockTerms]:
        terms = self.terms(cancel_in_s)
        submission = self.chain.prepare_lock(leg, terms)
        assert isinstance(self.settle(submission), Applied)
        assert submission.lock_ref is not None
        return submission.lock_ref, terms


def world_on(node: XrplNode, **options: Any) -> World:
    """Alice sends, bob receives, the agent commits, on ``node``; ``options`` go to the
    adapter (``make_chain``)."""
    keystore = CountingKeystore()
    ledger = Ledger(node, keystore)
    agent, alice, bob = ledger.wallet(), ledger.wallet(), ledger.wallet()
    chain = make_chain(node, keystore, agent.classic_address, **options)
    return World(ledger, chain, agent, alice, bob, HashLock.generate())


@contextmanager
def xrpl_world(**options: Any) -> Iterator[World]:
    """``world_on`` a node of its own whose ledgers close only when told."""
    with XrplNode(close_interval_s=0) as node:
        world = world_on(node, **options)
        try:
            yield world
        finally:
            world.ledger.http.close()


@pytest.fixture
def world() -> Iterator[World]:
    with xrpl_world() as w:
        yield w


def usd_world(world: World, *, allow_locking: bool = True, bob_limit: str = "1000") -> Asset:
    """An issuer of USD; alice holds 100, bob trusts it up to ``bob_limit``."""
    issuer = world.ledger.wallet()
    flags = [AccountSetAsfFlag.ASF_DEFAULT_RIPPLE]
    if allow_locking:
        flags.append(AccountSetAsfFlag.ASF_ALLOW_TRUSTLINE_LOCKING)
    for flag in flags:
        world.ledger.setup(AccountSet(account=issuer.classic_address, set_flag=flag), issuer)
    for holder, limit in ((world.alice, "1000"), (world.bob, bob_limit)):
        world.ledger.setup(
            TrustSet(
                account=holder.classic_address,
                limit_amount=IssuedCurrencyAmount(
                    currency="USD", issuer=issuer.classic_address, value=limit
                ),
            ),
            holder,
        )
    world.ledger.setup(
        Payment(
            account=issuer.classic_address,
            destination=world.alice.classic_address,
            amount=IssuedCurrencyAmount(currency="USD", issuer=issuer.classic_address, value="100"),
        ),
        issuer,
    )
    return Asset("USD", issuer.classic_address)


def test_xrp_lock_then_commit_moves_exactly_the_amount(world: World) -> None:
    ledger, alice, bob = world.ledger, world.alice.classic_address, world.bob.classic_address
    leg = world.leg("250.000001")
    world.chain.validate_leg(leg)
    alice_before, bob_before = ledger.xrp(alice), ledger.xrp(bob)

    terms = world.terms()
    lock_tx = world.chain.prepare_lock(leg, terms)
    assert lock_tx.lock_ref is not None
    assert lock_tx.lock_ref.owner == alice
    assert lock_tx.lock_ref.sequence == ledger.next_sequence(world.alice), "not yet applied"
    assert isinstance(world.settle(lock_tx), Applied)
    escrow = ledger.escrow(lock_tx.lock_ref)
    assert escrow is not None
    assert escrow["Amount"] == "250000001"
    assert escrow["Condition"] == terms.condition_hex
    assert escrow["CancelAfter"] == ripple_seconds(terms.cancel_after)
    assert escrow["Destination"] == bob
    assert ledger.xrp(alice) == alice_before - leg.amount - ledger.fee(lock_tx.tx_hash)

    commit = world.chain.prepare_commit(leg, lock_tx.lock_ref, world.lock_secret.fulfillment_hex)
    outcome = world.settle(commit)
    assert isinstance(outcome, Applied), outcome
    assert ledger.xrp(bob) == bob_before + leg.amount, "the agent pays the fee, bob gets it all"
    assert ledger.escrow(lock_tx.lock_ref) is None


def test_token_lock_then_commit_moves_exactly_the_amount(world: World) -> None:
    usd = usd_world(world)
    assert usd.issuer is not None
    ledger, alice, bob = world.ledger, world.alice.classic_address, world.bob.classic_address
    leg = world.leg("40.125", usd)
    world.chain.validate_leg(leg)

    lock, _ = world.lock(leg)
    assert ledger.tokens(alice, usd.issuer) == Decimal("59.875")
    escrow = ledger.escrow(lock)
    assert escrow is not None
    assert escrow["Amount"] == {"currency": "USD", "issuer": usd.issuer, "value": "40.125"}

    commit = world.chain.prepare_commit(leg, lock, world.lock_secret.fulfillment_hex)
    assert isinstance(world.settle(commit), Applied)
    assert ledger.tokens(bob, usd.issuer) == Decimal("40.125")
    assert ledger.tokens(alice, usd.issuer) == Decimal("59.875")
    assert ledger.escrow(lock) is None


def test_validate_leg_refuses_what_the_ledger_would(world: World) -> None:
    usd = usd_world(world, bob_limit="30")
    carol = Wallet.create().classic_address  # never funded
    dave = world.ledger.wallet()  # no trust line
    cases = {
        "whole number of drops": world.leg("1.0000001"),
        "positive": world.leg("0"),
        "does not exist": world.leg("1", to=Wallet.create()),
        "same account": Leg(ChainName.XRPL, XRP, Decimal(1), carol, carol),
        "significant digits": world.leg("1.23456789012345678", usd),
        "token range": world.leg("1e-90", usd),
        "no trust line": world.leg("1", usd, to=dave),
        "tecLIMIT_EXCEEDED": world.leg("31", usd),
        "holds less": world.leg("101", usd),
        "above its reserve": world.leg("999.5"),
        "not an XRP Ledger address": world.leg("1", Asset("USD", "GABC")),
        "not the XRP Ledger": Leg(
            ChainName.STELLAR, XRP, Decimal(1), world.alice.classic_address, carol
        ),
    }
    for message, leg in cases.items():
        with pytest.raises(LegInvalid, match=message):
            world.chain.validate_leg(leg)
    world.chain.validate_leg(world.leg("30", usd))
    world.chain.validate_leg(world.leg("998"))

    locked_out = usd_world(world, allow_locking=False)
    with pytest.raises(LegInvalid, match="asfAllowTrustLineLocking"):
        world.chain.validate_leg(world.leg("1", locked_out))


def test_wrong_fulfillment_is_rejected_in_the_ledger(world: World) -> None:
    leg = world.leg("10")
    lock, _ = world.lock(leg)
    wrong = HashLock.generate().fulfillment_hex
    outcome = world.settle(world.chain.prepare_commit(leg, lock, wrong))
    assert isinstance(outcome, Rejected), outcome
    assert (outcome.code, outcome.applied) == ("tecCRYPTOCONDITION_ERROR", True)
    assert outcome.ledger_index is not None and outcome.ledger_hash
    assert world.ledger.escrow(lock) is not None, "the escrow still holds the funds"


def test_unwind_waits_for_cancel_after_then_returns_the_funds(world: World) -> None:
    ledger, alice = world.ledger, world.alice.classic_address
    leg = world.leg("10")
    before = ledger.xrp(alice)
    lock, terms = world.lock(leg, cancel_in_s=60)
    lock_fee = before - leg.amount - ledger.xrp(alice)

    early = world.settle(world.chain.prepare_unwind(leg, lock))
    assert isinstance(early, Rejected), early
    assert (early.code, early.applied) == ("tecNO_PERMISSION", True)

    world.ledger.node.advance_time(90)
    world.close()  # the parent close time is now past CancelAfter
    assert ledger.close_time() > ripple_seconds(terms.cancel_after)
    late_commit = world.chain.prepare_commit(leg, lock, world.lock_secret.fulfillment_hex)
    refused = world.settle(late_commit)
    assert isinstance(refused, Rejected), refused
    assert refused.code == "tecNO_PERMISSION"

    unwind = world.settle(world.chain.prepare_unwind(leg, lock))
    assert isinstance(unwind, Applied), unwind
    assert ledger.escrow(lock) is None
    assert ledger.xrp(alice) == before - lock_fee, "every drop back; the agent paid the fees"


def test_lost_response_is_pending_then_applied_and_signed_once(world: World) -> None:
    ledger, keystore, alice = world.ledger, world.ledger.keystore, world.alice.classic_address
    leg = world.leg("10")
    before = ledger.xrp(alice)
    signed_before = keystore.signatures
    submission = world.chain.prepare_lock(leg, world.terms())
    ledger.node.faults.drop_submit_responses(1)

    lost = world.chain.submit(submission)
    assert isinstance(lost, Pending), lost
    assert "outcome unknown" in lost.detail
    assert isinstance(world.chain.status(submission), Pending), "not validated yet"
    again = world.chain.submit(submission)  # the engine may resend: never applied twice
    assert isinstance(again, Pending), again
    world.close()
    outcome = world.chain.status(submission)
    assert isinstance(outcome, Applied), outcome
    assert world.chain.submit(submission) == outcome, "a resend reads the final status back"

    assert keystore.signatures == signed_before + 1
    assert ledger.xrp(alice) == before - leg.amount - ledger.fee(submission.tx_hash)
    owned = ledger.raw("account_objects", account=alice, type="escrow", ledger_index="validated")
    assert len(owned["account_objects"]) == 1


def test_pending_says_whether_the_server_holds_the_transaction(world: World) -> None:
    """The coordinator resends a pending blob only when the server does not hold it."""
    submission = world.chain.prepare_lock(world.leg("10"), world.terms())
    unsent = world.chain.status(submission)
    assert isinstance(unsent, Pending) and not unsent.held, unsent  # never reached it
    sent = world.chain.submit(submission)
    assert isinstance(sent, Pending) and sent.held, sent  # in the open ledger
    in_open_ledger = world.chain.status(submission)
    assert isinstance(in_open_ledger, Pending) and in_open_ledger.held, in_open_ledger
    world.ledger.node.faults.drop_submit_responses(1)
    other = world.chain.prepare_lock(world.leg("11"), world.terms())
    lost = world.chain.submit(other)
    assert isinstance(lost, Pending) and not lost.held, "an answer lost says nothing held"
    world.close()
    assert isinstance(world.chain.status(submission), Applied)


def test_a_head_read_is_shared_for_a_moment_and_teaches_the_cadence() -> None:
    keystore = CountingKeystore()
    with XrplNode(close_interval_s=0) as node:
        ledger = Ledger(node, keystore)
        agent, alice, bob = ledger.wallet(), ledger.wallet(), ledger.wallet()
        chain = make_chain(node, keystore, agent.classic_address, head_fresh_s=0.5)
        leg = Leg(ChainName.XRPL, XRP, Decimal(5), alice.classic_address, bob.classic_address)
        terms = LockTerms(HashLock.generate().condition_hex, ledger.now() + timedelta(hours=1))
        submission = chain.prepare_lock(leg, terms)
        first = chain.status(submission)
        assert isinstance(first, Pending) and first.look_again_s is None  # no cadence yet
        node.close_ledger()
        shared = chain.status(submission)
        # the head read a moment ago still answers: the new ledger is not seen yet
        assert isinstance(shared, Pending) and f"ledger {_index(first)}" in shared.detail
        time.sleep(0.55)
        for _ in range(3):
            node.close_ledger()
            time.sleep(0.55)
            chain.status(submission)
        later = chain.status(submission)
        assert isinstance(later, Pending), later
        assert later.look_again_s is not None and 0 < later.look_again_s < 1.5, later
        ledger.http.close()


def _index(pending: Pending) -> int:
    return int(pending.detail.rsplit(" ", 1)[-1].rstrip(")"))


def test_a_lock_past_its_last_ledger_sequence_expires(world: World) -> None:
    submission = world.chain.prepare_lock(world.leg("10"), world.terms())
    assert submission.expires_ledger == world.ledger.node.chain.last_closed.header.sequence + 20
    while world.ledger.node.chain.last_closed.header.sequence < submission.expires_ledger - 1:
        world.close()
    assert isinstance(world.chain.status(submission), Pending), "it may enter the next ledger"
    world.close()  # the last ledger it could enter is validated without it
    expired = world.chain.status(submission)
    assert isinstance(expired, Expired), expired
    late = world.chain.submit(submission)  # tefMAX_LEDGER, read back as expired
    assert isinstance(late, Expired), late
    world.close()
    assert isinstance(world.chain.status(submission), Expired)
    assert world.chain.lookup(submission.tx_hash) is None


def test_partition_is_unavailable_opens_the_breaker_and_recovers(world: World) -> None:
    submission = world.chain.prepare_lock(world.leg("10"), world.terms())
    world.ledger.node.faults.partition(60)
    try:
        first = world.chain.submit(submission)
        # a kept-alive connection cut mid-request leaves the outcome unknown (Pending);
        # a refused one says the server was never reached (Unavailable): never final
        assert isinstance(first, Unavailable | Pending), first
        assert not (isinstance(first, Unavailable) and first.breaker_open), first
        outcomes = [world.chain.status(submission) for _ in range(POLICY.fail_max)]
        assert all(isinstance(o, Unavailable) for o in outcomes)
        assert world.chain._guard.state.state == "open"
        tripped = world.chain.status(submission)
        assert isinstance(tripped, Unavailable) and tripped.breaker_open, tripped
    finally:
        world.ledger.node.faults.heal()
    time.sleep(POLICY.reset_timeout_s * 1.5)
    assert isinstance(world.settle(submission), Applied)
    assert world.chain._guard.state.state == "closed"


def commit_sequence(lock: LockRef) -> int:
    assert lock.sequence is not None
    return lock.sequence


def test_escrow_finish_pays_the_fulfillment_surcharge_exactly(world: World) -> None:
    leg = world.leg("10")
    lock, terms = world.lock(leg)
    fulfillment = world.lock_secret.fulfillment_hex
    commit = world.chain.prepare_commit(leg, lock, fulfillment)
    fee_drops = int(world.ledger.raw("fee")["drops"]["base_fee"]) * (33 + 36 // 16)
    assert fee_drops == 350
    assert escrow_finish_fee_units(bytes.fromhex(fulfillment)) == 35

    # The same finish, one drop cheaper: the node refuses it, and the adapter does not
    # call that final (a local refusal); it expires by its LastLedgerSequence.
    cheap = EscrowFinish(
        account=world.agent.classic_address,
        owner=lock.owner,
        offer_sequence=commit_sequence(lock),
        condition=terms.condition_hex,
        fulfillment=fulfillment,
        fee=str(fee_drops - 1),
        sequence=world.ledger.next_sequence(world.agent),
        last_ledger_sequence=commit.expires_ledger,
    )
    cheap_blob = sign(cheap, world.agent).blob()
    assert world.ledger.raw("submit", tx_blob=cheap_blob)["engine_result"] == "telINSUF_FEE_P"

    outcome = world.settle(commit)
    assert isinstance(outcome, Applied), outcome
    assert world.ledger.fee(commit.tx_hash) == Decimal(fee_drops) / DROPS


def test_submit_classifies_forced_answers(world: World) -> None:
    submission = world.chain.prepare_lock(world.leg("10"), world.terms())
    faults = world.ledger.node.faults
    faults.reject_submits(1, "temMALFORMED")
    malformed = world.chain.submit(submission)
    assert malformed == Rejected(
        submission.tx_hash, "temMALFORMED", applied=False, detail="refused before any ledger"
    )
    faults.reject_submits(1, "telCAN_NOT_QUEUE")
    assert isinstance(world.chain.submit(submission), Pending)
    faults.reject_submits(1, "terQUEUED")
    assert isinstance(world.chain.submit(submission), Pending)
    assert isinstance(world.settle(submission), Applied)


def test_lookup_confirms_ledger_references(world: World) -> None:
    submission = world.chain.prepare_lock(world.leg("10"), world.terms())
    outcome = world.settle(submission)
    assert isinstance(outcome, Applied)
    found = world.chain.lookup(submission.tx_hash)
    assert found is not None
    assert found.validated and found.successful
    assert found.extra == {"result": "tesSUCCESS", "type": "EscrowCreate"}
    header = world.ledger.raw("ledger", ledger_index=outcome.ledger_index)
    assert found.ledger_hash == header["ledger_hash"] == outcome.ledger_hash
    assert world.chain.lookup("AB" * 32) is None


def test_prepare_refuses_what_it_cannot_sign(world: World) -> None:
    stranger = world.ledger.wallet()
    world.ledger.keystore._xrpl.pop(stranger.classic_address)
    leg = Leg(ChainName.XRPL, XRP, Decimal(1), stranger.classic_address, world.bob.classic_address)
    with pytest.raises(SigningUnavailable):
        world.chain.prepare_lock(leg, world.terms())
    with pytest.raises(LegInvalid, match="passed in ledger time"):
        world.chain.prepare_lock(world.leg("1"), world.terms(cancel_in_s=-10))
    with pytest.raises(LegInvalid, match="PREIMAGE-SHA-256"):
        world.chain.prepare_lock(world.leg("1"), LockTerms("A0" * 10, world.ledger.now()))
    with pytest.raises(LegInvalid, match="fulfillment"):
        world.chain.prepare_commit(
            world.leg("1"), LockRef(ChainName.XRPL, world.alice.classic_address, 5), "00"
        )


# --- pure functions -----------------------------------------------------------------------


def test_hash_lock_matches_the_ledgers_reading_of_conditions() -> None:
    lock = HashLock(bytes(range(32)))
    condition, fulfillment = make_preimage_pair(bytes(range(32)))
    assert lock.condition_hex == condition.hex().upper()
    assert lock.fulfillment_hex == fulfillment.hex().upper()
    assert condition_of_fulfillment(lock.fulfillment_hex) == lock.condition_hex
    assert preimage_of(fulfillment) == bytes(range(32))
    assert "condition" in repr(lock) and bytes(range(32)).hex() not in repr(lock)
    for bad in ("", "A0", "A0038001", "A0258020" + "00" * 35):
        with pytest.raises(ValueError, match="PREIMAGE-SHA-256"):
            condition_of_fulfillment(bad)


def test_amount_precision() -> None:
    assert xrp_to_drops(Decimal("0.000001")) == 1
    assert xrp_to_drops(Decimal("100000000000")) == 100_000_000_000_000_000
    for bad in ("0.0000001", "-1", "0", "100000000000.000001", "NaN"):
        with pytest.raises(LegInvalid):
            xrp_to_drops(Decimal(bad))
    assert token_value(Decimal("123456789012345")) == "123456789012345"
    assert token_value(Decimal("1.50")) == "1.5"
    assert token_value(Decimal("1e-81")) == "0." + "0" * 80 + "1"
    assert token_value(Decimal("9e95"))  # 9000000000000000e80: the largest exponent
    for bad in ("1234567890123456", "1e-82", "1e96", "0", "-3"):
        with pytest.raises(LegInvalid):
            token_value(Decimal(bad))
    assert currency_code("USD") == "USD"
    assert currency_code("BOND2026") == "424F4E4432303236" + "0" * 24
    for bad in ("XRP", "xrp", "US", "A" * 21):
        with pytest.raises(LegInvalid):
            currency_code(bad)


def test_ripple_time_rounds_up_and_needs_a_zone() -> None:
    assert ripple_seconds(RIPPLE_EPOCH + timedelta(seconds=10)) == 10
    assert ripple_seconds(RIPPLE_EPOCH + timedelta(seconds=10, microseconds=1)) == 11
    with pytest.raises(ValueError, match="aware"):
        ripple_seconds(datetime(2030, 1, 1))


@pytest.mark.parametrize(
    ("code", "final"),
    [
        ("tesSUCCESS", False),
        ("tecUNFUNDED", False),
        ("terPRE_SEQ", False),
        ("terQUEUED", False),
        ("tefPAST_SEQ", False),
        ("tefALREADY", False),
        ("tefMAX_LEDGER", False),
        ("tefNO_TICKET", False),
        ("tefBAD_AUTH", True),
        ("temBAD_AMOUNT", True),
        ("telINSUF_FEE_P", False),
        ("telCAN_NOT_QUEUE", False),
        ("zzzUNKNOWN", False),
    ],
)
def test_only_what_no_server_can_ever_apply_is_final_at_submit(code: str, final: bool) -> None:
    outcome = submit_outcome(code, "H")
    assert is_final(outcome) is final, outcome
    if final:
        assert isinstance(outcome, Rejected) and not outcome.applied


def test_a_validated_result_is_final() -> None:
    assert ledger_outcome("tesSUCCESS", "H", 7, "L") == Applied("H", 7, "L", "tesSUCCESS")
    rejected = ledger_outcome("tecNO_PERMISSION", "H", 7, "L")
    assert isinstance(rejected, Rejected) and rejected.applied and rejected.ledger_hash == "L"
    assert isinstance(ledger_outcome("temMALFORMED", "H", 7, "L"), Pending)


# --- the public testnet -------------------------------------------------------------------


@pytest.mark.testnet
def test_testnet_lock_then_commit() -> None:
    url = os.environ.get("SETTLEMENT_XRPL_URL")
    if not url:
        pytest.skip("SETTLEMENT_XRPL_URL is not set")
    faucet = os.environ.get(
        "SETTLEMENT_XRPL_FAUCET_URL", "https://faucet.altnet.rippletest.net/accounts"
    )
    keystore = CountingKeystore()
    wallets = []
    for _ in range(3):
        wallet = Wallet.create()
        httpx.post(faucet, json={"destination": wallet.classic_address}, timeout=60)
        keystore.add_xrpl(wallet)
        wallets.append(wallet)
    agent, alice, bob = (w.classic_address for w in wallets)
    guard = ChainGuard("xrpl-testnet", ResiliencePolicy(reset_timeout_s=5))
    chain = XrplChain(url, agent=agent, signer=keystore, guard=guard)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the faucet answers before the accounts validate
        try:
            chain.validate_leg(Leg(ChainName.XRPL, XRP, Decimal(5), alice, bob))
            break
        except LegInvalid:
            time.sleep(2)
    leg = Leg(ChainName.XRPL, XRP, Decimal("5"), alice, bob)
    secret = HashLock.generate()
    terms = LockTerms(secret.condition_hex, datetime.now(UTC) + timedelta(minutes=30))

    def final(submission: SignedSubmission) -> Outcome:
        outcome = chain.submit(submission)
        end = time.monotonic() + 90
        while not is_final(outcome) and time.monotonic() < end:
            time.sleep(2)
            outcome = chain.status(submission)
        return outcome

    lock = chain.prepare_lock(leg, terms)
    assert isinstance(final(lock), Applied)
    assert lock.lock_ref is not None
    commit = chain.prepare_commit(leg, lock.lock_ref, secret.fulfillment_hex)
    outcome = final(commit)
    assert isinstance(outcome, Applied), outcome
    found = chain.lookup(commit.tx_hash)
    assert found is not None and found.ledger_hash == outcome.ledger_hash
