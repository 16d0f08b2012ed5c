"""The Stellar adapter: the shared Chain contract, then what is Stellar's own.

The contract runs twice on the local network (native XLM, and a credit asset over
trustlines) and once on a public testnet when SETTLEMENT_HORIZON_URL names one (marked
``testnet``; the tests that need to move ledger time or inject faults skip there).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
import requests
from stellar_sdk import Asset as SdkAsset
from stellar_sdk import Keypair, Network, Server, TransactionBuilder
from stellar_sdk import xdr as x
from stellar_sdk.client.requests_client import RequestsClient
from stellar_sdk.exceptions import BadRequestError, NotFoundError

from adapters.chain import (
    Applied,
    Asset,
    ChainName,
    Expired,
    Leg,
    LockKind,
    LockRef,
    LockTerms,
    Pending,
    Purpose,
    Rejected,
    SignedSubmission,
    Unavailable,
    is_final,
)
from adapters.errors import BreakerOpen, LegInvalid, SigningUnavailable, TransportError
from adapters.localnet.stellar import StellarNode
from adapters.resilience import ChainGuard, ResiliencePolicy
from adapters.signing import InMemoryKeystore
from adapters.stellar import StellarChain
from adapters.stellar.horizon import LedgerHeader
from adapters.stellar.results import Verdict, summarize, verdict
from adapters.stellar.timebounds import EPOCH
from tests.adapters.contract import ChainContract, applied, settle

STROOP = Decimal("0.0000001")
POLICY = ResiliencePolicy(
    fail_max=3, reset_timeout_s=0.3, attempts=2, backoff_initial_s=0.01, backoff_max_s=0.05
)


class CountingSigner:
    """The keystore, counting the signatures it makes."""

    def __init__(self, keystore: InMemoryKeystore) -> None:
        self.keystore = keystore
        self.count = 0

    def sign_stellar(self, account_id: str, tx_hash: bytes) -> bytes:
        self.count += 1
        return self.keystore.sign_stellar(account_id, tx_hash)


class StellarHarness:
    """A Stellar ledger for the contract: a local node, or a testnet (``node`` None)."""

    amount = Decimal("25.1234567")
    too_precise = Decimal("1.00000001")
    policy = POLICY

    def __init__(
        self,
        horizon_url: str,
        passphrase: str,
        fund: Callable[[str], None],
        *,
        node: StellarNode | None = None,
        credit: bool = False,
        submission_window_s: int = 60,
        asynchronous_submit: bool = True,
    ) -> None:
        self.node = node
        self.passphrase = passphrase
        self._fund = fund
        self.keystore = InMemoryKeystore()
        self.signer = CountingSigner(self.keystore)
        self.horizon = Server(horizon_url, client=RequestsClient(num_retries=0))
        self.keys: dict[str, Keypair] = {}
        self.issuer: Keypair | None = None
        self.asset = Asset("XLM")
        if credit:
            self.issuer = Keypair.random()
            fund(self.issuer.public_key)
            self.asset = Asset("USDC", self.issuer.public_key)
        self.agent = self.new_account()
        self.chain = StellarChain(
            horizon_url,
            passphrase,
            agent=self.agent,
            signer=self.signer,
            guard=ChainGuard("stellar", POLICY),
            submission_window_s=submission_window_s,
            asynchronous_submit=asynchronous_submit,
            # these tests close ledgers by hand and look at once: no shared head
            # (test_a_latest_ledger_read_is_shared_for_a_moment covers the default)
            head_fresh_s=0.0,
        )

    def close(self) -> None:
        self.chain.close()
        self.horizon.close()

    # -- accounts and balances ------------------------------------------------------------

    def new_account(self, *, trust: bool = True, issue: Decimal = Decimal(1000)) -> str:
        keypair = Keypair.random()
        self._fund(keypair.public_key)
        self.keys[keypair.public_key] = keypair
        self.keystore.add_stellar(keypair)
        if self.issuer is not None and trust:
            self.trust(keypair.public_key)
            self.issue(keypair.public_key, issue)
        return keypair.public_key

    @property
    def sdk_asset(self) -> SdkAsset:
        if self.asset.is_native:
            return SdkAsset.native()
        return SdkAsset(self.asset.code, self.asset.issuer)

    def trust(self, account: str, limit: str | None = None) -> None:
        self.send(account, lambda b: b.append_change_trust_op(self.sdk_asset, limit))

    def issue(self, account: str, amount: Decimal) -> None:
        assert self.issuer is not None
        self.keys[self.issuer.public_key] = self.issuer
        self.send(
            self.issuer.public_key,
            lambda b: b.append_payment_op(account, self.sdk_asset, f"{amount:f}"),
        )

    def send(self, source: str, add: Callable[[TransactionBuilder], object]) -> dict[str, object]:
        """Build, sign and submit a transaction outside the adapter (test set-up)."""
        builder = TransactionBuilder(
            self.horizon.load_account(source), self.passphrase, base_fee=100
        ).add_time_bounds(0, self.ledger_now_s() + 300)
        add(builder)
        envelope = builder.build()
        envelope.sign(self.keys[source])
        return self.horizon.submit_transaction(envelope, skip_memo_required_check=True)

    def balance(self, account: str) -> Decimal:
        doc = self.horizon.accounts().account_id(account).call()
        for line in doc["balances"]:
            if self.asset.is_native and line["asset_type"] == "native":
                return Decimal(line["balance"])
            if (line.get("asset_code"), line.get("asset_issuer")) == (
                self.asset.code,
                self.asset.issuer,
            ):
                return Decimal(line["balance"])
        return Decimal(0)

    def locked(self, lock: LockRef) -> Decimal:
        assert lock.balance_id is not None
        try:
            doc = self.horizon.claimable_balances().claimable_balance(lock.balance_id).call()
        except NotFoundError:
            return Decimal(0)
        return Decimal(doc["amount"])

    def fee_paid(self, tx_hash: str) -> Decimal:
        if not self.asset.is_native:
            return Decimal(0)
        doc = self.horizon.transactions().transaction(tx_hash).call()
        return Decimal(int(doc["fee_charged"])) * STROOP

    def signatures(self) -> int:
        return self.signer.count

    # -- time --------------------------------------------------------------------------------

    def ledger_now_s(self) -> int:
        """The close time of the latest ledger, in Unix seconds."""
        records = self.horizon.ledgers().order(desc=True).limit(1).call()["_embedded"]["records"]
        return int((datetime.fromisoformat(records[0]["closed_at"]) - EPOCH).total_seconds())

    def terms(self, cancel_in_s: int) -> LockTerms:
        return LockTerms(
            condition_hex="",
            cancel_after=EPOCH + timedelta(seconds=self.ledger_now_s() + cancel_in_s),
        )

    @property
    def fulfillment_hex(self) -> str:
        return ""

    def make_unwindable(self, terms: LockTerms) -> None:
        """The agent may claim a Stellar lock at once: nothing to wait for."""

    def pass_time(self, seconds: int) -> None:
        """Close a ledger ``seconds`` after the latest one (ledger time)."""
        self.pass_time_to(self.ledger_now_s() + seconds)

    def pass_time_to(self, target_s: int) -> None:
        """Close a ledger at ``target_s`` or later. Close times run ahead of the node
        clock when ledgers close faster than one a second, so the clock moves to the
        target, not by a fixed step."""
        if self.node is None:  # a public network: wait for its ledgers
            while self.ledger_now_s() < target_s:
                time.sleep(1)
            return
        self.node.advance_time(max(0, target_s - self.node.clock.now()))
        self.node.close_ledger()
        assert self.ledger_now_s() >= target_s

    def advance_ledger_time(self, seconds: int) -> None:
        if self.node is None:
            pytest.skip("a public ledger's clock cannot be moved")
        self.pass_time(seconds)

    def pass_expiry(self, submission: SignedSubmission) -> None:
        assert submission.expires_at is not None
        self.pass_time_to(int((submission.expires_at - EPOCH).total_seconds()) + 1)

    # -- faults ------------------------------------------------------------------------------

    def _local(self, what: str) -> StellarNode:
        if self.node is None:
            pytest.skip(f"{what} needs the local network")
        return self.node

    def drop_next_response(self) -> None:
        self._local("dropping a response").faults.drop_responses(1)

    def partition(self) -> None:
        self._local("a partition").faults.partition()

    def heal(self) -> None:
        self._local("a partition").faults.heal()


def local_harness(
    node: StellarNode, *, credit: bool, asynchronous_submit: bool = True
) -> StellarHarness:
    def fund(account: str) -> None:
        reply = node.friendbot(account)
        assert reply.status == 200, reply.body

    return StellarHarness(
        node.base_url,
        node.network_passphrase,
        fund,
        node=node,
        credit=credit,
        asynchronous_submit=asynchronous_submit,
    )


class TestStellarContract(ChainContract):
    """The contract on the local network, settling native XLM."""

    @pytest.fixture
    def harness(self, stellar_node: StellarNode) -> Iterator[StellarHarness]:
        h = local_harness(stellar_node, credit=False)
        yield h
        h.close()


class TestStellarSyncContract(ChainContract):
    """The contract with the synchronous route (POST /transactions), native XLM."""

    @pytest.fixture
    def harness(self, stellar_node: StellarNode) -> Iterator[StellarHarness]:
        h = local_harness(stellar_node, credit=False, asynchronous_submit=False)
        yield h
        h.close()


class TestStellarCreditContract(ChainContract):
    """The contract on the local network, settling an issued asset over trustlines."""

    @pytest.fixture
    def harness(self, stellar_node: StellarNode) -> Iterator[StellarHarness]:
        h = local_harness(stellar_node, credit=True)
        yield h
        h.close()


@pytest.mark.testnet
class TestStellarTestnetContract(ChainContract):
    """The contract against SETTLEMENT_HORIZON_URL (a public testnet with friendbot)."""

    @pytest.fixture
    def harness(self) -> Iterator[StellarHarness]:
        url = os.environ.get("SETTLEMENT_HORIZON_URL")
        if not url:
            pytest.skip("SETTLEMENT_HORIZON_URL is not set")
        friendbot = os.environ.get("SETTLEMENT_FRIENDBOT_URL", "https://friendbot.stellar.org")
        passphrase = os.environ.get(
            "SETTLEMENT_STELLAR_PASSPHRASE", Network.TESTNET_NETWORK_PASSPHRASE
        )

        def fund(account: str) -> None:
            response = requests.get(friendbot, {"addr": account}, timeout=30)
            assert response.status_code == 200, response.text

        # Public ledgers close every ~5 s: a 30 s window stays clear of tx_too_late.
        h = StellarHarness(url, passphrase, fund, submission_window_s=30)
        yield h
        h.close()


# -- Stellar's own -------------------------------------------------------------------------


@pytest.fixture
def local(stellar_node: StellarNode) -> Iterator[StellarHarness]:
    h = local_harness(stellar_node, credit=False)
    yield h
    h.close()


@pytest.fixture
def sync_local(stellar_node: StellarNode) -> Iterator[StellarHarness]:
    """The adapter on the synchronous route, POST /transactions."""
    h = local_harness(stellar_node, credit=False, asynchronous_submit=False)
    yield h
    h.close()


@pytest.fixture
def credit(stellar_node: StellarNode) -> Iterator[StellarHarness]:
    h = local_harness(stellar_node, credit=True)
    yield h
    h.close()


def new_leg(h: StellarHarness, amount: Decimal | None = None) -> Leg:
    return Leg(ChainName.STELLAR, h.asset, amount or h.amount, h.new_account(), h.new_account())


def locked_leg(h: StellarHarness, cancel_in_s: int = 3600) -> tuple[Leg, LockRef, LockTerms]:
    leg = new_leg(h)
    terms = h.terms(cancel_in_s)
    submission = h.chain.prepare_lock(leg, terms)
    applied(settle(h, submission))
    assert submission.lock_ref is not None
    return leg, submission.lock_ref, terms


def test_the_lock_on_the_ledger_has_the_agreed_claimants(local: StellarHarness) -> None:
    leg, lock, terms = locked_leg(local)
    assert lock.balance_id is not None and lock.owner == leg.sender
    doc = local.horizon.claimable_balances().claimable_balance(lock.balance_id).call()
    assert doc["amount"] == "25.1234567"
    agent, sender = doc["claimants"]
    assert agent == {"destination": local.agent, "predicate": {"unconditional": True}}
    cancel_s = int((terms.cancel_after - EPOCH).total_seconds())
    assert sender["destination"] == leg.sender
    assert sender["predicate"]["not"]["abs_before_epoch"] == str(cancel_s)


def test_time_bounds_follow_ledger_time_not_this_machine(local: StellarHarness) -> None:
    """The node's ledgers run a day ahead of this machine: bounds from the local clock
    would be refused as tx_too_late."""
    local.pass_time(86_400)
    leg = new_leg(local)
    submission = local.chain.prepare_lock(leg, local.terms(3600))
    assert submission.expires_at is not None
    expires_s = int((submission.expires_at - EPOCH).total_seconds())
    assert expires_s == local.ledger_now_s() + 60
    applied(settle(local, submission))


def test_sender_reclaims_alone_after_t_cancel_but_not_before(local: StellarHarness) -> None:
    leg, lock, _ = locked_leg(local, cancel_in_s=600)
    assert lock.balance_id is not None
    balance_id = lock.balance_id

    def reclaim() -> dict[str, object]:
        return local.send(leg.sender, lambda b: b.append_claim_claimable_balance_op(balance_id))

    with pytest.raises(BadRequestError) as refused:
        reclaim()
    assert refused.value.extras is not None
    codes = refused.value.extras["result_codes"]
    assert codes == {"transaction": "tx_failed", "operations": ["op_cannot_claim"]}
    local.pass_time(601)
    before = local.balance(leg.sender)
    reclaim()
    assert local.locked(lock) == 0
    assert local.balance(leg.sender) == before + leg.amount - 100 * STROOP


def test_unwind_after_the_sender_reclaimed_fails_clearly(local: StellarHarness) -> None:
    leg, lock, _ = locked_leg(local, cancel_in_s=600)
    assert lock.balance_id is not None
    balance_id = lock.balance_id
    local.pass_time(601)
    local.send(leg.sender, lambda b: b.append_claim_claimable_balance_op(balance_id))
    sender = local.balance(leg.sender)

    outcome = settle(local, local.chain.prepare_unwind(leg, lock))

    assert isinstance(outcome, Rejected), outcome
    assert outcome.code == "tx_failed: op_does_not_exist, op_success"
    assert outcome.applied and outcome.ledger_index and outcome.ledger_hash
    assert "no longer exists" in outcome.detail
    assert local.balance(leg.sender) == sender, "the sender is not paid twice"


def test_every_stellar_leg_is_locked_in_a_claimable_balance(
    local: StellarHarness, credit: StellarHarness
) -> None:
    for h in (local, credit):
        assert h.chain.lock_kind(new_leg(h)) is LockKind.CLAIMABLE
    leg = new_leg(local)
    with pytest.raises(LegInvalid, match="xrpl leg"):
        local.chain.lock_kind(dataclasses.replace(leg, chain=ChainName.XRPL))


def test_commit_refuses_a_lock_that_does_not_hold_the_leg(local: StellarHarness) -> None:
    leg, lock, _ = locked_leg(local)
    bigger = Leg(leg.chain, leg.asset, leg.amount + 1, leg.sender, leg.receiver)
    with pytest.raises(LegInvalid, match="amount"):
        local.chain.prepare_commit(bigger, lock, "")
    assert local.signatures() == 1, "nothing signed for a mismatched lock"


def test_a_504_after_apply_is_pending_then_applied(sync_local: StellarHarness) -> None:
    """The SDK's own retry would have resent the POST and read 200: ours reports the
    504 as it is, and status finds the transaction by hash (the synchronous route: the
    asynchronous one never waits for a ledger)."""
    leg = new_leg(sync_local)
    submission = sync_local.chain.prepare_lock(leg, sync_local.terms(3600))
    assert sync_local.node is not None
    sync_local.node.faults.timeout_responses(1)
    first = sync_local.chain.submit(submission)
    assert isinstance(first, Pending), first
    assert "may still apply" in first.detail
    applied(sync_local.chain.status(submission))


@pytest.mark.parametrize("asynchronous", [True, False], ids=["async", "sync"])
def test_a_used_sequence_is_tx_bad_seq_final_and_moves_nothing(
    stellar_node: StellarNode, asynchronous: bool
) -> None:
    """A different transaction on a sequence number already used: ERROR tx_bad_seq
    (POST /transactions_async) or transaction_failed (POST /transactions), final."""
    local = local_harness(stellar_node, credit=False, asynchronous_submit=asynchronous)
    try:
        leg = new_leg(local)
        first = local.chain.prepare_lock(leg, local.terms(3600))
        # On the same sequence number (a different transaction: building the same one
        # again gives the same hash, which is simply the first transaction).
        second = local.chain.prepare_lock(leg, local.terms(3601))
        assert second.tx_hash != first.tx_hash
        applied(settle(local, first))
        before = local.balance(leg.sender)
        outcome = local.chain.submit(second)
        assert isinstance(outcome, Rejected), outcome
        assert (outcome.code, outcome.applied) == ("tx_bad_seq", False)
        assert is_final(outcome)
        assert local.balance(leg.sender) == before
    finally:
        local.close()


def test_a_refusal_that_may_pass_later_is_not_final(local: StellarHarness) -> None:
    """tx_insufficient_fee: the same envelope could still apply if sent again before
    it expires, so no new one may be signed until then."""
    leg = new_leg(local)
    submission = local.chain.prepare_lock(leg, local.terms(3600))
    assert local.node is not None
    local.node.faults.reject_submissions(1, "tx_insufficient_fee")
    outcome = local.chain.submit(submission)
    assert isinstance(outcome, Pending) and "tx_insufficient_fee" in outcome.detail, outcome
    assert isinstance(local.chain.status(submission), Pending)
    local.pass_expiry(submission)
    assert isinstance(local.chain.status(submission), Expired)


def test_server_errors_are_unavailable_and_count_against_the_breaker(
    local: StellarHarness,
) -> None:
    leg = new_leg(local)
    submission = local.chain.prepare_lock(leg, local.terms(3600))
    assert local.node is not None
    local.node.faults.reject_submissions(POLICY.fail_max, 503)
    outcomes = [local.chain.submit(submission) for _ in range(POLICY.fail_max + 1)]
    assert all(isinstance(o, Unavailable) for o in outcomes), outcomes
    last = outcomes[-1]
    assert isinstance(last, Unavailable) and last.breaker_open
    with pytest.raises(BreakerOpen):
        local.chain.lookup(submission.tx_hash)  # reads fail fast too
    time.sleep(POLICY.reset_timeout_s * 1.5)
    applied(settle(local, submission))


def test_a_refused_connection_is_unavailable(local: StellarHarness) -> None:
    """Nothing listens: the request provably never left, so it is Unavailable (not
    Pending), and preparing raises TransportError."""
    leg = new_leg(local)
    submission = local.chain.prepare_lock(leg, local.terms(3600))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nowhere = StellarChain(
        f"http://127.0.0.1:{port}",
        local.passphrase,
        agent=local.agent,
        signer=local.signer,
        guard=ChainGuard("stellar", POLICY),
    )
    try:
        outcome = nowhere.submit(submission)
        assert isinstance(outcome, Unavailable) and not outcome.breaker_open, outcome
        assert isinstance(nowhere.status(submission), Unavailable)
        with pytest.raises(TransportError):
            nowhere.prepare_lock(leg, local.terms(3600))
    finally:
        nowhere.close()


def test_no_key_no_signature(local: StellarHarness) -> None:
    stranger = Keypair.random().public_key
    local._fund(stranger)
    leg = Leg(ChainName.STELLAR, local.asset, Decimal(1), stranger, local.new_account())
    with pytest.raises(SigningUnavailable):
        local.chain.prepare_lock(leg, local.terms(3600))


def test_validate_leg_names_what_is_wrong(local: StellarHarness) -> None:
    leg = new_leg(local)
    missing = Keypair.random().public_key
    cases: list[tuple[Leg, str]] = [
        (Leg(ChainName.STELLAR, leg.asset, leg.amount, leg.sender, missing), "does not exist"),
        (
            Leg(ChainName.STELLAR, leg.asset, leg.amount, leg.sender, "GABC"),
            "not a Stellar account",
        ),
        (Leg(ChainName.XRPL, leg.asset, leg.amount, leg.sender, leg.receiver), "xrpl leg"),
        (Leg(ChainName.STELLAR, leg.asset, leg.amount, leg.sender, leg.sender), "same account"),
        (Leg(ChainName.STELLAR, leg.asset, Decimal("1e12"), leg.sender, leg.receiver), "maximum"),
        (Leg(ChainName.STELLAR, leg.asset, Decimal(-1), leg.sender, leg.receiver), "positive"),
        (
            Leg(ChainName.STELLAR, leg.asset, Decimal(9_999), leg.sender, leg.receiver),
            "above its reserve",
        ),
    ]
    for bad, message in cases:
        with pytest.raises(LegInvalid, match=message):
            local.chain.validate_leg(bad)


def test_validate_leg_checks_trustlines_of_receiver_and_agent(credit: StellarHarness) -> None:
    sender = credit.new_account()
    untrusting = credit.new_account(trust=False)
    with pytest.raises(LegInvalid, match=r"receiver .* no trustline"):
        credit.chain.validate_leg(
            Leg(ChainName.STELLAR, credit.asset, Decimal(5), sender, untrusting)
        )
    small = credit.new_account(trust=False)
    credit.trust(small, limit="3")
    with pytest.raises(LegInvalid, match="can take 3"):
        credit.chain.validate_leg(Leg(ChainName.STELLAR, credit.asset, Decimal(5), sender, small))
    with pytest.raises(LegInvalid, match="holds 1000"):
        credit.chain.validate_leg(
            Leg(ChainName.STELLAR, credit.asset, Decimal(1001), sender, credit.new_account())
        )
    # the issuer receives its own asset without a trustline
    assert credit.issuer is not None
    credit.chain.validate_leg(
        Leg(ChainName.STELLAR, credit.asset, Decimal(5), sender, credit.issuer.public_key)
    )


def test_validate_leg_checks_the_agents_trustline(stellar_node: StellarNode) -> None:
    h = local_harness(stellar_node, credit=True)
    try:
        agent_without_line = h.new_account(trust=False)
        chain = StellarChain(
            stellar_node.base_url,
            stellar_node.network_passphrase,
            agent=agent_without_line,
            signer=h.signer,
            guard=ChainGuard("stellar", POLICY),
        )
        leg = Leg(ChainName.STELLAR, h.asset, Decimal(5), h.new_account(), h.new_account())
        with pytest.raises(LegInvalid, match=r"settlement agent .* no trustline"):
            chain.validate_leg(leg)
        chain.close()
    finally:
        h.close()


# -- result codes ---------------------------------------------------------------------------


def _failed_result(*ops: x.OperationResult) -> str:
    return x.TransactionResult(
        fee_charged=x.Int64(200),
        result=x.TransactionResultResult(code=x.TransactionResultCode.txFAILED, results=list(ops)),
        ext=x.TransactionResultExt(0),
    ).to_xdr()


def test_operation_codes_are_named_by_operation_type() -> None:
    """PAYMENT_UNDERFUNDED and CLAIM_CLAIMABLE_BALANCE_CANNOT_CLAIM are both -2."""
    claim = x.OperationResult(
        code=x.OperationResultCode.opINNER,
        tr=x.OperationResultTr(
            type=x.OperationType.CLAIM_CLAIMABLE_BALANCE,
            claim_claimable_balance_result=x.ClaimClaimableBalanceResult(
                x.ClaimClaimableBalanceResultCode.CLAIM_CLAIMABLE_BALANCE_CANNOT_CLAIM
            ),
        ),
    )
    pay = x.OperationResult(
        code=x.OperationResultCode.opINNER,
        tr=x.OperationResultTr(
            type=x.OperationType.PAYMENT,
            payment_result=x.PaymentResult(x.PaymentResultCode.PAYMENT_UNDERFUNDED),
        ),
    )
    summary = summarize(_failed_result(claim, pay))
    assert summary.text == "tx_failed: op_cannot_claim, op_underfunded"
    assert "not a claimant" in summary.explanation
    assert "agent does not hold" in summary.explanation
    assert summary.verdict == Verdict.FAILED


def test_every_transaction_code_has_a_verdict() -> None:
    verdicts = {code: verdict(code) for code in x.TransactionResultCode}
    T = x.TransactionResultCode
    assert verdicts[T.txSUCCESS] == Verdict.SUCCESS
    assert verdicts[T.txFAILED] == Verdict.FAILED
    assert verdicts[T.txBAD_SEQ] == Verdict.REFUSED
    assert verdicts[T.txTOO_LATE] == Verdict.REFUSED
    assert verdicts[T.txINSUFFICIENT_FEE] == Verdict.NOT_YET
    assert verdicts[T.txINTERNAL_ERROR] == Verdict.NOT_YET


def test_keystore_signs_only_for_accounts_it_holds() -> None:
    keypair = Keypair.random()
    keystore = InMemoryKeystore([keypair])
    digest = bytes(32)
    keypair.verify(digest, keystore.sign_stellar(keypair.public_key, digest))
    with pytest.raises(SigningUnavailable):
        keystore.sign_stellar(Keypair.random().public_key, digest)
    with pytest.raises(ValueError, match="cannot sign"):
        keystore.add_stellar(Keypair.from_public_key(keypair.public_key))


def test_not_expired_while_history_cannot_prove_it_never_applied(
    local: StellarHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Horizon whose retained history starts after the submission's time bounds
    cannot show that it never applied: it stays Pending, never Expired."""
    leg = new_leg(local)
    submission = local.chain.prepare_lock(leg, local.terms(3600))
    local.pass_expiry(submission)
    latest = local.horizon.ledgers().order(desc=True).limit(1).call()["_embedded"]["records"][0]
    horizon = local.chain._horizon
    monkeypatch.setattr(horizon, "history_elder_ledger", lambda: int(latest["sequence"]))
    outcome = local.chain.status(submission)
    assert isinstance(outcome, Pending) and "cannot prove" in outcome.detail, outcome
    monkeypatch.undo()
    assert isinstance(local.chain.status(submission), Expired)


# -- channel accounts ------------------------------------------------------------------------


def _sequence(h: StellarHarness, account: str) -> int:
    return int(h.horizon.accounts().account_id(account).call()["sequence"])


def test_channels_let_one_sender_lock_twice_at_once_and_pay_the_fees(
    credit: StellarHarness, stellar_node: StellarNode
) -> None:
    h = credit
    channels = [h.new_account(trust=False) for _ in range(2)]
    chain = StellarChain(
        stellar_node.base_url,
        stellar_node.network_passphrase,
        agent=h.agent,
        signer=h.signer,
        guard=ChainGuard("stellar", POLICY),
        channels=channels,
    )
    try:
        leg = new_leg(h)
        for purpose in Purpose:
            assert chain.submission_channels(leg, purpose) == tuple(channels)
        sender_seq = _sequence(h, leg.sender)
        receiver_before = h.balance(leg.receiver)
        xlm_before = {a: _xlm(h, a) for a in (leg.sender, h.agent)}
        # both signed before either is sent: without channels they would share the
        # sender's next sequence and the second would be refused tx_bad_seq
        first, second = (chain.prepare_lock(leg, h.terms(3600), channel=c) for c in channels)
        assert (first.channel, second.channel) == tuple(channels)
        locks = []
        for submission in (first, second):
            applied(settle(h, submission))
            assert submission.lock_ref is not None
            assert submission.lock_ref.owner == leg.sender
            locks.append(submission.lock_ref)
            assert h.locked(submission.lock_ref) == leg.amount
        commit = chain.prepare_commit(leg, locks[0], "", channel=channels[0])
        unwind = chain.prepare_unwind(leg, locks[1], channel=channels[1])
        applied(settle(h, commit))
        applied(settle(h, unwind))
        assert h.balance(leg.receiver) == receiver_before + leg.amount
        assert _sequence(h, leg.sender) == sender_seq, "the sender's sequence is untouched"
        assert {a: _xlm(h, a) for a in (leg.sender, h.agent)} == xlm_before, "channels pay fees"
        listed = chain.locks_of(leg.sender)
        assert isinstance(listed, list) and listed == []
        with pytest.raises(ValueError, match="not one of this adapter's channel"):
            chain.prepare_lock(leg, h.terms(3600), channel=h.agent)
        with pytest.raises(ValueError, match="not one of this adapter's channel"):
            h.chain.prepare_lock(leg, h.terms(3600), channel=channels[0])
    finally:
        chain.close()


def _xlm(h: StellarHarness, account: str) -> Decimal:
    doc = h.horizon.accounts().account_id(account).call()
    return next(Decimal(b["balance"]) for b in doc["balances"] if b["asset_type"] == "native")


# -- asynchronous submission (POST /transactions_async) --------------------------------------


@contextlib.contextmanager
def halted(h: StellarHarness) -> Iterator[StellarNode]:
    """The local node with its close timer stopped: ledgers close when the test says."""
    assert h.node is not None
    h.node.faults.halt_ledgers()
    try:
        yield h.node
    finally:
        h.node.faults.resume_ledgers()


def test_an_async_lock_is_pending_at_once_then_applied(local: StellarHarness) -> None:
    leg = new_leg(local)
    submission = local.chain.prepare_lock(leg, local.terms(3600))
    with halted(local) as node:
        outcome = local.chain.submit(submission)
        assert isinstance(outcome, Pending) and "queued" in outcome.detail, outcome
        assert outcome.held, "core holds it: only waiting helps"
        assert node.pending_count == 1
        polled = local.chain.status(submission)
        # Horizon cannot show core's queue: the adapter remembers what core told it
        assert isinstance(polled, Pending) and polled.held, polled
        elsewhere = StellarChain(
            node.base_url,
            local.passphrase,
            agent=local.agent,
            signer=local.signer,
            guard=ChainGuard("stellar", POLICY),
        )
        try:
            told_nothing = elsewhere.status(submission)  # another worker's adapter
            assert isinstance(told_nothing, Pending) and not told_nothing.held, told_nothing
        finally:
            elsewhere.close()
        again = local.chain.submit(submission)  # which sends it again
        assert isinstance(again, Pending) and "already queued" in again.detail, again
        assert again.held
        ledger = node.close_ledger()
    found = applied(local.chain.status(submission))
    assert found.ledger_index == ledger
    assert submission.lock_ref is not None and local.locked(submission.lock_ref) == leg.amount
    assert local.signatures() == 1


def test_what_core_queued_is_trusted_only_for_a_few_closes(
    local: StellarHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the trust window a queued envelope reads as not held, so the coordinator
    sends it again (core may have dropped it)."""
    leg = new_leg(local)
    submission = local.chain.prepare_lock(leg, local.terms(3600))
    with halted(local) as node:
        assert isinstance(local.chain.submit(submission), Pending)
        polled = local.chain.status(submission)
        assert isinstance(polled, Pending) and polled.held
        monkeypatch.setattr("adapters.stellar.chain._QUEUE_TRUST_CLOSES", 0)
        stale = local.chain.status(submission)
        assert isinstance(stale, Pending) and not stale.held, stale
        node.close_ledger()
    applied(local.chain.status(submission))


def test_a_lost_async_answer_resolves_by_hash_and_is_never_signed_twice(
    local: StellarHarness,
) -> None:
    """The queue took it, the answer was lost: Pending. Sent again it is DUPLICATE while
    queued, then tx_bad_seq once applied (core knows only its used sequence number),
    which the lookup by hash turns into Applied, never into a rejection."""
    leg = new_leg(local)
    before = local.balance(leg.sender)
    submission = local.chain.prepare_lock(leg, local.terms(3600))
    with halted(local) as node:
        node.faults.drop_responses(1)
        lost = local.chain.submit(submission)
        assert isinstance(lost, Pending) and "no answer" in lost.detail, lost
        assert node.pending_count == 1
        assert isinstance(local.chain.submit(submission), Pending)
        ledger = node.close_ledger()
        resent = local.chain.submit(submission)
    assert isinstance(resent, Applied) and resent.ledger_index == ledger, resent
    assert local.chain.status(submission) == resent
    fee = local.fee_paid(submission.tx_hash)
    assert local.balance(leg.sender) == before - leg.amount - fee, "applied once"
    assert local.signatures() == 1


def test_bad_seq_is_not_final_while_horizon_has_not_seen_the_sequence_used(
    local: StellarHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """stellar-core answers from its own ledger, which Horizon may not have ingested yet:
    while Horizon's account still shows the sequence number unused, the envelope may be
    the one that used it, and tx_bad_seq is not final."""
    leg = new_leg(local)
    first = local.chain.prepare_lock(leg, local.terms(3600))
    second = local.chain.prepare_lock(leg, local.terms(3601))
    applied(settle(local, first))
    horizon = local.chain._horizon
    seen = horizon.account(leg.sender)
    assert seen is not None
    behind = dataclasses.replace(seen, sequence=seen.sequence - 1)
    monkeypatch.setattr(horizon, "account", lambda account_id: behind)
    outcome = local.chain.submit(second)
    assert isinstance(outcome, Pending) and "ahead of Horizon" in outcome.detail, outcome
    monkeypatch.undo()
    outcome = local.chain.submit(second)
    assert isinstance(outcome, Rejected) and outcome.code == "tx_bad_seq", outcome


def test_bad_seq_is_not_final_while_history_is_pruned_past_the_envelope(
    local: StellarHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Horizon whose retained history starts after the envelope's lower time bound may
    have dropped the ledger that applied it: tx_bad_seq then proves nothing."""
    leg = new_leg(local)
    first = local.chain.prepare_lock(leg, local.terms(3600))
    second = local.chain.prepare_lock(leg, local.terms(3601))
    applied(settle(local, first))
    assert local.node is not None
    local.node.close_ledger()
    horizon = local.chain._horizon
    latest = horizon.latest_ledger()
    monkeypatch.setattr(horizon, "history_elder_ledger", lambda: latest.sequence)
    outcome = local.chain.submit(second)
    assert isinstance(outcome, Pending) and "cannot prove" in outcome.detail, outcome
    monkeypatch.undo()
    outcome = local.chain.submit(second)
    assert isinstance(outcome, Rejected) and outcome.code == "tx_bad_seq", outcome


def test_try_again_later_is_pending_and_nothing_is_queued(local: StellarHarness) -> None:
    """Two transactions of one source account: core queues the first, answers the
    second TRY_AGAIN_LATER and keeps nothing of it. Once the first applied, the second
    (on the same sequence number) is final tx_bad_seq."""
    leg = new_leg(local)
    first = local.chain.prepare_lock(leg, local.terms(3600))
    second = local.chain.prepare_lock(leg, local.terms(3601))
    with halted(local) as node:
        assert isinstance(local.chain.submit(first), Pending)
        later = local.chain.submit(second)
        assert isinstance(later, Pending) and "queued nothing" in later.detail, later
        assert not later.held, "nothing queued: the same envelope must be sent again"
        assert node.pending_count == 1
        node.close_ledger()
        applied(local.chain.status(first))
        assert isinstance(local.chain.status(second), Pending), "not in a ledger, not expired"
        outcome = local.chain.submit(second)
    assert isinstance(outcome, Rejected) and outcome.code == "tx_bad_seq", outcome


def test_a_sender_that_cannot_pay_the_fee_is_an_error_that_may_pass_later(
    local: StellarHarness,
) -> None:
    """ERROR tx_insufficient_balance: refused before a ledger, but the same envelope
    applies once the account is funded, before it expires: Pending, never final."""
    leg = new_leg(local, amount=Decimal(1))
    # leave the sender exactly its reserve (2 x 0.5 XLM): nothing to pay a fee with
    spare = local.balance(leg.sender) - Decimal(1) - 100 * STROOP
    local.send(
        leg.sender,
        lambda b: b.append_payment_op(leg.receiver, SdkAsset.native(), f"{spare:f}"),
    )
    assert local.balance(leg.sender) == Decimal(1)
    submission = local.chain.prepare_lock(leg, local.terms(3600))
    outcome = local.chain.submit(submission)
    assert isinstance(outcome, Pending), outcome
    assert "tx_insufficient_balance" in outcome.detail, outcome
    funder = local.new_account()
    local.send(funder, lambda b: b.append_payment_op(leg.sender, SdkAsset.native(), "10"))
    applied(settle(local, submission))
    assert local.signatures() == 1


def test_a_server_error_on_the_async_route_is_unavailable(local: StellarHarness) -> None:
    """500 (transaction_submission_failed) and a 503 that is no core status are server
    faults; a 503 TRY_AGAIN_LATER is not (see above)."""
    leg = new_leg(local)
    submission = local.chain.prepare_lock(leg, local.terms(3600))
    assert local.node is not None
    for status in (500, 503):
        local.node.faults.reject_submissions(1, status)
        outcome = local.chain.submit(submission)
        assert isinstance(outcome, Unavailable) and not outcome.breaker_open, outcome
        assert str(status) in outcome.reason
    assert local.node.pending_count == 0
    applied(settle(local, submission))


def test_a_partition_on_the_async_route_is_never_final(local: StellarHarness) -> None:
    """The node resets the connection after accepting it: the request may have been
    read, so the answer is lost, Pending; nothing was queued, and the same envelope
    applies once the partition heals."""
    leg = new_leg(local)
    submission = local.chain.prepare_lock(leg, local.terms(3600))
    local.partition()
    try:
        outcome = local.chain.submit(submission)
        assert not is_final(outcome), outcome
    finally:
        local.heal()
    time.sleep(POLICY.reset_timeout_s * 1.5)
    applied(settle(local, submission))
    assert local.signatures() == 1


def test_status_reads_the_ledger_only_when_it_is_not_the_latest(
    local: StellarHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two Horizon reads per poll when the transaction is in the latest ledger: its
    header (read first, for the expiry) gives the ledger hash."""
    leg = new_leg(local)
    submission = local.chain.prepare_lock(leg, local.terms(3600))
    with halted(local) as node:
        local.chain.submit(submission)
        node.close_ledger()
        horizon = local.chain._horizon
        reads: list[int] = []
        real_ledger = horizon.ledger

        def counted(sequence: int) -> LedgerHeader | None:
            reads.append(sequence)
            return real_ledger(sequence)

        monkeypatch.setattr(horizon, "ledger", counted)
        first = applied(local.chain.status(submission))
        assert reads == []
        node.close_ledger()  # now it is in an older ledger
        again = applied(local.chain.status(submission))
        assert reads == [first.ledger_index]
        assert again == first


def test_a_latest_ledger_read_is_shared_for_a_moment_and_teaches_the_cadence(
    local: StellarHarness,
) -> None:
    """With ``head_fresh_s`` the adapter's threads share one read of the latest ledger
    for a moment, and a pending transaction says when to look again."""
    assert local.node is not None
    chain = StellarChain(
        local.node.base_url,
        local.passphrase,
        agent=local.agent,
        signer=local.signer,
        guard=ChainGuard("stellar", POLICY),
        head_fresh_s=0.5,
    )
    try:
        leg, second = new_leg(local), new_leg(local)
        with halted(local) as node:
            submission = chain.prepare_lock(leg, local.terms(3600))
            first = chain.submit(submission)
            assert isinstance(first, Pending) and first.look_again_s is None  # no cadence
            ledger = node.close_ledger()
            # the transaction is looked up by hash whatever latest ledger is shared; the
            # hash of its ledger is then read, since the shared header is an older one
            assert applied(chain.status(submission)).ledger_index == ledger
            for _ in range(3):
                node.close_ledger()
                time.sleep(0.55)
                chain.ledger_time()
            other = chain.prepare_lock(second, local.terms(3600))
            later = chain.submit(other)
            assert isinstance(later, Pending), later
            assert later.look_again_s is not None and 0 < later.look_again_s < 1.5, later
            node.close_ledger()
    finally:
        chain.close()
