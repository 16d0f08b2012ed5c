"""StellarChain: the Chain port over Horizon, with stellar-sdk.

The purposes of a leg (DESIGN.md section 4):

    lock    the sender creates a claimable balance of the amount, claimable by the
            settlement agent at once and by the sender only from T_cancel on
    claim   the agent claims it into its own account, alone in its transaction:
            nothing on the payee's side can refuse it; the leg is then *held*
    commit  a held leg: the agent pays the receiver from its own account. (Not held:
            claim and payment in one transaction, which fails as a whole when the
            receiver's trustline refuses the payment; kept valid, unused for commits.)
    unwind  a held leg: the agent pays the sender back; a lock never claimed: the
            agent claims it and pays the sender back in one transaction (if that
            fails the balance stays, and the sender reclaims it after T_cancel)

After the decision the coordinator claims before it pays: a payout the receiver's side
refuses (a trustline de-authorised, removed or its limit lowered after the lock) then
leaves the funds with the agent, where only the agent moves them, instead of undoing
the claim with it and leaving the balance to the sender.

Time: every rule that depends on time reads ledger time, the close time of the latest
ledger Horizon has ingested, never this machine's clock. A transaction's time bounds
are [that close time, that close time + ``submission_window_s``]: stellar-core refuses
(``tx_too_late``) an upper bound within about two close intervals of the last close, so
the window must be well above that. The upper bound is the submission's expiry; the
lower bound fences the window in which the transaction could have applied, which
``status`` needs to prove it never did.

Reliable submission: ``prepare_*`` signs exactly one transaction; ``submit`` sends that
envelope and nothing else (sending it again is safe: a used sequence number cannot
apply twice); ``status`` and ``lookup`` only read. Nothing in this adapter signs a
second transaction for a purpose: that is the engine's decision after a final outcome.

``submit`` uses Horizon's POST /transactions_async by default (``asynchronous_submit``):
Horizon relays stellar-core's verdict on queueing the envelope without waiting for the
ledger, so a submission no longer holds a request (and a worker) for a ledger close.
Its answers become outcomes as follows; ``status`` then finds the transaction by hash.

    PENDING, DUPLICATE     Pending (held: core has it queued); poll by hash; sending
                           the same envelope again is answered DUPLICATE while queued
    TRY_AGAIN_LATER        Pending: core took nothing now (the source account has a
                           transaction queued); the same envelope is sent again at the
                           next step and expires by its time bounds if it never gets in
    ERROR                  the result code, read as the synchronous route's
                           transaction_failed is: by hash first (an envelope that
                           already applied is answered tx_bad_seq), then by verdict
    transaction_malformed  Rejected, never applied
    403 (disabled), 404    Unavailable: this Horizon does not submit
    5xx, 429, refused      Unavailable (counted against the breaker)
    no answer              Pending: it may be queued

With ``asynchronous_submit=False`` the synchronous POST /transactions is used: 200 is
the transaction in a ledger, 504 Pending, 400 transaction_failed as ERROR above.

A tx_bad_seq is final only once Horizon's own view of the source account shows the
sequence number used, read before the transaction is looked up: stellar-core answers
from ledgers Horizon may not have ingested yet, and an envelope that applied in one of
them must not be taken for one that never will.

Errors: ``validate_leg`` and ``prepare_*`` raise ``LegInvalid`` when the leg cannot
settle, ``SigningUnavailable`` when no key is held, ``TransportError`` (``BreakerOpen``)
when Horizon cannot be asked. ``submit`` and ``status`` never raise for a ledger or
transport condition: they return an ``Outcome``. ``lookup`` raises ``TransportError``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from stellar_sdk import Account as SdkAccount
from stellar_sdk import (
    Claimant,
    ClaimPredicate,
    DecoratedSignature,
    Keypair,
    StrKey,
    TransactionBuilder,
    TransactionEnvelope,
)
from stellar_sdk import xdr as sdk_xdr
from stellar_sdk.exceptions import BadSignatureError

from adapters.cadence import HeadWatch
from adapters.chain import (
    ANCHOR_DATA_NAME,
    AnchorTx,
    Applied,
    Asset,
    ChainName,
    Expired,
    LedgerTx,
    Leg,
    LockClaimant,
    LockKind,
    LockRef,
    LockState,
    LockTerms,
    Outcome,
    Pending,
    Purpose,
    Rejected,
    Released,
    SignedSubmission,
    Unavailable,
    check_root,
)
from adapters.errors import (
    AccountNotFound,
    AdapterError,
    BreakerOpen,
    LegInvalid,
    SigningUnavailable,
    TransportError,
)
from adapters.resilience import ChainGuard
from adapters.signing import StellarSigner
from adapters.stellar.fees import bid_per_op
from adapters.stellar.horizon import (
    TIMEOUT_TYPES,
    AccountView,
    BalanceView,
    FeeStats,
    Horizon,
    LedgerHeader,
    Reply,
    ResponseLost,
    TxView,
    tx_view,
)
from adapters.stellar.legs import (
    STROOPS_PER_UNIT,
    amount_text,
    available_native,
    canonical,
    check_can_receive,
    check_holds_credit,
    check_shape,
)
from adapters.stellar.results import Verdict, summarize
from adapters.stellar.timebounds import Window, ceil_seconds, time_window, to_datetime

TRANSACTION_FAILED = "https://stellar.org/horizon-errors/transaction_failed"
#: claimants the lock creates; each is a base reserve the sender sponsors until claimed
LOCK_CLAIMANTS = 2
log = logging.getLogger(__name__)


class StellarChain:
    """The Chain port for Stellar, against one Horizon server.

    ``agent`` is the settlement agent account: it claims every lock, pays out commits
    and unwinds and their fees, and holds a trustline for every credit asset it
    settles. ``signer`` must hold the agent's key and the senders' keys, and the keys
    of the ``channels``: channel accounts the engine holds, each funded with enough XLM
    for fees. A transaction prepared with a channel has the channel as its source (its
    sequence number and fee) and the sender or the agent as the source of every
    operation, and is signed by both; the claimable balance it creates is still the
    sender's (sponsored by the operation's source), its id derived from the channel's
    sequence.

    Fees: each transaction bids per operation what ``adapters.stellar.fees`` derives
    from Horizon's fee statistics when it is signed (a surge raises it, and an expired
    transaction signed again is priced anew), at most ``max_fee_per_op_stroops`` (raised
    to the network's base fee if that is ever higher, or nothing could apply);
    ``fee_per_op_stroops`` fixes the bid instead.
    """

    def __init__(
        self,
        horizon_url: str,
        network_passphrase: str,
        *,
        agent: str,
        signer: StellarSigner,
        guard: ChainGuard,
        submission_window_s: int = 60,
        fee_per_op_stroops: int | None = None,
        max_fee_per_op_stroops: int = 10_000,
        get_timeout_s: int = 11,
        post_timeout_s: float = 35.0,
        channels: Sequence[str] = (),
        asynchronous_submit: bool = True,
        head_fresh_s: float = 0.05,
    ) -> None:
        if not StrKey.is_valid_ed25519_public_key(agent):
            raise ValueError(f"settlement agent {agent!r} is not a Stellar account id")
        for channel in channels:
            if not StrKey.is_valid_ed25519_public_key(channel) or channel == agent:
                raise ValueError(f"channel {channel!r} is not a Stellar account id of its own")
        self.channels = tuple(dict.fromkeys(channels))
        if submission_window_s < 10:
            raise ValueError(
                "submission_window_s below 10 s is refused as too late by stellar-core"
            )
        self.agent = agent
        self.network_passphrase = network_passphrase
        self.submission_window_s = submission_window_s
        if fee_per_op_stroops is not None and fee_per_op_stroops < 1:
            raise ValueError("fee_per_op_stroops must be a positive number of stroops")
        if max_fee_per_op_stroops < 100:
            raise ValueError("max_fee_per_op_stroops below 100 is below Stellar's base fee")
        self.fee_per_op_stroops = fee_per_op_stroops
        self.max_fee_per_op_stroops = max_fee_per_op_stroops
        self.asynchronous_submit = asynchronous_submit
        self._queued_lock = threading.Lock()
        #: tx hash -> when stellar-core last answered PENDING or DUPLICATE for it
        self._queued: dict[str, float] = {}
        self._signer = signer
        self._horizon = Horizon(
            horizon_url, guard, get_timeout_s=get_timeout_s, post_timeout_s=post_timeout_s
        )
        # the threads of a worker share the latest ledger they read, for ``head_fresh_s``
        # (adapters.cadence: each use compares it with what is read afterwards)
        self._head = HeadWatch(self._horizon.latest_ledger, _header_sequence, fresh_s=head_fresh_s)
        # fee statistics, shared until a newer ledger is priced (``_fee_stats``)
        self._fee_stats_lock = threading.Lock()
        self._fee_stats_seen: FeeStats | None = None

    @property
    def name(self) -> ChainName:
        return ChainName.STELLAR

    def close(self) -> None:
        self._horizon.close()

    # -- validation --------------------------------------------------------------------

    def validate_leg(self, leg: Leg, *, kind: LockKind | None = None) -> None:
        """Raise ``LegInvalid`` unless the leg can be locked and paid out as given,
        naming the account and the ledger's rule (the result code it would answer, and
        the operation): precision (7 decimal places), accounts that exist, and for a
        credit asset trustlines that each operation of the commit protocol needs:

        - the sender's line fully authorised, holding the amount (the lock);
        - the agent's line fully authorised with room for the amount (its claim, and
          its payment out);
        - the receiver's line fully authorised with room for the amount (the payout).
          A line authorised only to maintain liabilities cannot receive.

        An issuer needs no line for its own asset. The sender must also hold the XLM
        for the fee and the lock's reserve.

        What this cannot promise: the lines are read now, and an issuer may revoke
        authorisation, or a holder lower its limit or remove its line, after the lock;
        the commit protocol keeps that from stranding one side (the claim never needs
        the receiver). The agent's room is checked for this leg alone, not for other
        settlements of the asset claimed at the same time. Clawback-enabled assets are
        allowed and not reported: their issuer can claw back the locked balance
        (``lock_release`` then names the issuer) or the funds from the agent or the
        receiver at any time, even after the settlement is paid, which no check here
        can exclude.
        """
        _claimable_only(kind)
        check_shape(leg)
        sender = self._existing(leg.sender, "sender")
        receiver = self._existing(leg.receiver, "receiver")
        agent = self._existing(self.agent, "settlement agent")
        header = self._head.get()
        asset = leg.asset
        if not asset.is_native:
            check_holds_credit(sender, asset, leg.amount)
            check_can_receive(
                agent, "settlement agent", asset, leg.amount, refused_at="claim_claimable_balance"
            )
            check_can_receive(receiver, "receiver", asset, leg.amount, refused_at="payment")
        fee = Decimal(self._fee_per_op(header)) / STROOPS_PER_UNIT
        needed = fee + LOCK_CLAIMANTS * Decimal(header.base_reserve_stroops) / STROOPS_PER_UNIT
        if asset.is_native:
            needed += leg.amount
        available = available_native(sender, header)
        if available < needed:
            raise LegInvalid(
                f"sender {leg.sender} can spend {available} XLM above its reserve; the lock "
                f"needs {needed} XLM (amount, fee and the lock's reserve)"
            )

    def _existing(self, account_id: str, role: str) -> AccountView:
        account = self._horizon.account(account_id)
        if account is None:
            raise LegInvalid(f"{role} account {account_id} does not exist")
        return account

    # -- prepare: build and sign locally -----------------------------------------------

    def lock_kind(self, leg: Leg) -> LockKind:
        """Always a claimable balance: every Stellar asset, native or issued, can be
        locked in one, and the agent can take it into its own account at any time.
        Asks nothing of the ledger."""
        if leg.chain != ChainName.STELLAR:
            raise LegInvalid(f"a {leg.chain} leg given to the Stellar adapter")
        return LockKind.CLAIMABLE

    def submission_channels(self, leg: Leg, purpose: Purpose) -> tuple[str, ...]:
        """Every channel account, whatever the leg: the channel is only the transaction's
        source, never an operation's."""
        return self.channels

    def prepare_lock(
        self,
        leg: Leg,
        terms: LockTerms,
        *,
        kind: LockKind | None = None,
        channel: str | None = None,
    ) -> SignedSubmission:
        """The sender's CreateClaimableBalance: the agent may claim at once, the sender
        only from ``terms.cancel_after`` (rounded up to a whole second) on. Stellar locks
        are only ever claimable balances (``kind`` must be that or None)."""
        _claimable_only(kind)
        sdk_asset = check_shape(leg)
        if terms.cancel_after.tzinfo is None:
            raise ValueError("cancel_after must be an aware datetime")
        cancel_after_s = ceil_seconds(terms.cancel_after)
        header = self._head.get()
        window = self._window(header)
        if cancel_after_s <= window.max_time:
            raise LegInvalid(
                f"T_cancel {terms.cancel_after.isoformat()} is not after the lock's expiry "
                f"{to_datetime(window.max_time).isoformat()}: the sender could reclaim at once"
            )
        claimants = [
            Claimant(self.agent, ClaimPredicate.predicate_unconditional()),
            Claimant(
                leg.sender,
                ClaimPredicate.predicate_not(
                    ClaimPredicate.predicate_before_absolute_time(cancel_after_s)
                ),
            ),
        ]
        source = self._source(channel, leg.sender)
        builder = self._builder(source or leg.sender, header, window)
        builder.append_create_claimable_balance_op(
            sdk_asset, amount_text(leg.amount), claimants, source=source and leg.sender
        )
        envelope = builder.build()
        self._sign(envelope, leg.sender)
        if source is not None:
            self._sign(envelope, source)
        # the id hashes the transaction's source and sequence: the channel's, if any
        balance_id = envelope.transaction.get_claimable_balance_id(0)
        return self._signed(
            envelope,
            Purpose.LOCK,
            window,
            lock_ref=LockRef(ChainName.STELLAR, owner=leg.sender, balance_id=balance_id),
            channel=source,
        )

    def prepare_claim(
        self, leg: Leg, lock: LockRef, *, channel: str | None = None
    ) -> SignedSubmission:
        """The agent claims the lock into its own account, alone in its transaction
        (``Purpose.CLAIM``). Nothing on the receiver's side can make it fail: it needs
        only the agent's own trustline, which ``validate_leg`` checked. Once it applied
        the leg is *held*: only the agent moves the funds, with ``held=True`` below."""
        check_shape(leg)
        balance_id = self._check_lock(leg, lock)
        return self._prepare_agent(
            leg,
            Purpose.CLAIM,
            channel,
            lambda builder, op_source: builder.append_claim_claimable_balance_op(
                balance_id, source=op_source
            ),
        )

    def prepare_commit(
        self,
        leg: Leg,
        lock: LockRef,
        fulfillment_hex: str,
        *,
        held: bool = False,
        channel: str | None = None,
    ) -> SignedSubmission:
        """Pay the receiver. ``held``: a payment of exactly ``leg.amount`` from the agent,
        whose claim of the lock has applied; the caller keeps that rule, since the agent
        pays from an account that holds other legs' funds too. Not ``held``: the agent
        claims the lock and pays in one transaction, which fails as a whole (and leaves
        the balance for the sender to reclaim after T_cancel) if the receiver's line
        refuses the payment. The fulfillment is XRPL's hash-lock secret; a Stellar lock
        needs none and it is ignored."""
        del fulfillment_hex
        return self._prepare_payout(
            leg, lock, leg.receiver, Purpose.COMMIT, held=held, channel=channel
        )

    def prepare_unwind(
        self, leg: Leg, lock: LockRef, *, held: bool = False, channel: str | None = None
    ) -> SignedSubmission:
        """Pay the sender back: a payment from the agent (``held``), or the agent's claim
        and the payment in one transaction, for a lock never claimed. If that one fails
        the balance stays, and the sender can reclaim it after T_cancel: a return too."""
        return self._prepare_payout(
            leg, lock, leg.sender, Purpose.UNWIND, held=held, channel=channel
        )

    def _prepare_payout(
        self,
        leg: Leg,
        lock: LockRef,
        payee: str,
        purpose: Purpose,
        *,
        held: bool,
        channel: str | None,
    ) -> SignedSubmission:
        sdk_asset = check_shape(leg)
        amount = amount_text(leg.amount)
        balance_id = _check_ref(leg, lock) if held else self._check_lock(leg, lock)

        def operations(builder: TransactionBuilder, op_source: str | None) -> None:
            if not held:
                builder.append_claim_claimable_balance_op(balance_id, source=op_source)
            builder.append_payment_op(payee, sdk_asset, amount, source=op_source)

        return self._prepare_agent(leg, purpose, channel, operations)

    def _prepare_agent(
        self,
        leg: Leg,
        purpose: Purpose,
        channel: str | None,
        operations: Callable[[TransactionBuilder, str | None], object],
    ) -> SignedSubmission:
        """A transaction whose operations are the agent's: on a channel, the channel is
        its source and the agent each operation's; signed by both."""
        source = self._source(channel, self.agent)
        header = self._head.get()
        window = self._window(header)
        builder = self._builder(source or self.agent, header, window)
        operations(builder, source and self.agent)
        envelope = builder.build()
        self._sign(envelope, self.agent)
        if source is not None:
            self._sign(envelope, source)
        return self._signed(envelope, purpose, window, channel=source)

    # -- audit anchors -------------------------------------------------------------------

    def prepare_anchor(self, account: str, root: bytes) -> SignedSubmission:
        """Sign a transaction of ``account`` with memo hash = ``root`` and one ManageData
        operation setting ``ANCHOR_DATA_NAME`` to the root (the account's latest anchor
        also reads from its data entry); ``purpose`` None, expiring as any submission."""
        check_root(root)
        header = self._head.get()
        window = self._window(header)
        envelope = (
            self._builder(account, header, window)
            .add_hash_memo(root)
            .append_manage_data_op(ANCHOR_DATA_NAME, root)
            .build()
        )
        self._sign(envelope, account)
        return SignedSubmission(
            chain=ChainName.STELLAR,
            purpose=None,
            tx_hash=envelope.hash_hex(),
            blob=envelope.to_xdr(),
            expires_at=to_datetime(window.max_time),
        )

    def anchor_of(self, tx_hash: str) -> AnchorTx | None:
        """The transaction read as an anchor: its root is its hash memo (Horizon renders
        it in base64); None when Horizon does not know the hash. Horizon holds only
        ledgers the network externalised, final on Stellar: found is validated."""
        found = self._horizon.transaction(tx_hash)
        if found is None:
            return None
        root = _hash_memo(found)
        header = self._horizon.ledger(found.ledger)
        if header is None:
            raise TransportError(
                f"Horizon has {found.hash} in ledger {found.ledger}, but the server asked "
                "for that ledger has not ingested it yet"
            )
        return AnchorTx(
            tx_hash=found.hash,
            account=found.source_account,
            root=root,
            ledger_index=found.ledger,
            ledger_hash=header.hash,
            validated=True,
            successful=found.successful,
        )

    def anchor_history(self, account: str) -> list[AnchorTx]:
        """The transactions ``account`` sent with a 32-byte memo hash, from Horizon's
        history of the account (ledger hashes not read: empty)."""
        found = []
        for view in self._horizon.account_transactions(account):
            root = _hash_memo(view)
            if root is None or view.source_account != account or not view.successful:
                continue
            found.append(AnchorTx(view.hash, account, root, view.ledger, "", True, True))
        return found

    def _source(self, channel: str | None, signer: str) -> str | None:
        """The channel to use as transaction source, or None to use ``signer``'s own."""
        if channel is None:
            return None
        if channel not in self.channels:
            raise ValueError(f"{channel} is not one of this adapter's channel accounts")
        if channel == signer:
            raise ValueError(f"channel {channel} is the operations' own source")
        return channel

    def _check_lock(self, leg: Leg, lock: LockRef) -> str:
        """The lock's balance id, after checking that the balance, while it exists,
        holds exactly this leg: the agent pays out ``leg.amount`` from what it claims,
        and must never make up a difference from its own funds. A balance already gone
        is left to the ledger to refuse (``op_does_not_exist``)."""
        balance_id = _check_ref(leg, lock)
        balance = self._horizon.claimable_balance(balance_id)
        if balance is None:
            return balance_id
        problems = []
        if balance.asset != canonical(leg.asset):
            problems.append(f"asset {balance.asset}, not {canonical(leg.asset)}")
        if balance.amount != leg.amount:
            problems.append(f"amount {balance.amount}, not {leg.amount}")
        if not any(
            c.destination == self.agent and c.predicate == {"unconditional": True}
            for c in balance.claimants
        ):
            problems.append(f"the agent {self.agent} is not an unconditional claimant")
        if problems:
            raise LegInvalid(
                f"claimable balance {balance_id} is not this leg's lock: " + "; ".join(problems)
            )
        return balance_id

    def _window(self, header: LedgerHeader) -> Window:
        now_s = ceil_seconds(header.closed_at)
        return Window(min_time=now_s, max_time=now_s + self.submission_window_s)

    def _fee_per_op(self, header: LedgerHeader) -> int:
        """The bid per operation: ``fee_per_op_stroops`` when set, else priced from
        Horizon's fee statistics (``adapters.stellar.fees``). Raises ``TransportError``
        when they cannot be read."""
        if self.fee_per_op_stroops is not None:
            return self.fee_per_op_stroops
        return bid_per_op(
            self._fee_stats(header),
            base_fee_stroops=header.base_fee_stroops,
            max_fee_per_op_stroops=max(self.max_fee_per_op_stroops, header.base_fee_stroops),
        )

    def _fee_stats(self, header: LedgerHeader) -> FeeStats:
        """Horizon's fee statistics, read once per ledger: statistics that already cover
        ``header``'s ledger (their ``last_ledger`` is at or past it) are what a read
        now would say about it, so the threads of a worker share them until a newer
        header is priced. Raises ``TransportError`` when they cannot be read."""
        with self._fee_stats_lock:
            known = self._fee_stats_seen
        if known is not None and known.last_ledger >= header.sequence:
            return known
        stats = self._horizon.fee_stats()
        with self._fee_stats_lock:
            if self._fee_stats_seen is None or stats.last_ledger > self._fee_stats_seen.last_ledger:
                self._fee_stats_seen = stats
        return stats

    def _builder(self, source: str, header: LedgerHeader, window: Window) -> TransactionBuilder:
        account = self._horizon.account(source)
        if account is None:
            raise LegInvalid(f"source account {source} does not exist")
        return TransactionBuilder(
            SdkAccount(source, account.sequence),
            self.network_passphrase,
            base_fee=self._fee_per_op(header),
        ).add_time_bounds(window.min_time, window.max_time)

    def _sign(self, envelope: TransactionEnvelope, account_id: str) -> None:
        """Sign with the signer's key for ``account_id``, checked before it is used."""
        tx_hash = envelope.hash()
        signature = self._signer.sign_stellar(account_id, tx_hash)
        public = Keypair.from_public_key(account_id)
        try:
            public.verify(tx_hash, signature)
        except BadSignatureError as exc:
            raise SigningUnavailable(f"the key held for {account_id} does not sign for it") from exc
        envelope.signatures.append(DecoratedSignature(public.signature_hint(), signature))

    def _signed(
        self,
        envelope: TransactionEnvelope,
        purpose: Purpose,
        window: Window,
        lock_ref: LockRef | None = None,
        channel: str | None = None,
    ) -> SignedSubmission:
        return SignedSubmission(
            chain=ChainName.STELLAR,
            purpose=purpose,
            tx_hash=envelope.hash_hex(),
            blob=envelope.to_xdr(),
            expires_at=to_datetime(window.max_time),
            lock_ref=lock_ref,
            channel=channel,
        )

    # -- locks as the ledger holds them --------------------------------------------------

    def lock_state(self, lock: LockRef) -> LockState | Unavailable:
        """The claimable balance ``lock`` names, as Horizon holds it now (Horizon serves
        only externalised, final ledgers), or ``LockState.absent`` once claimed."""
        if lock.chain != ChainName.STELLAR or not lock.balance_id:
            raise ValueError(f"not a Stellar lock: {lock}")
        try:
            balance = self._horizon.claimable_balance(lock.balance_id)
        except BreakerOpen as exc:
            return Unavailable(str(exc), breaker_open=True)
        except TransportError as exc:
            return Unavailable(str(exc))
        if balance is None:
            return LockState.absent(lock, key=lock.balance_id)
        return _balance_state(balance, owner=lock.owner)

    def lock_release(self, lock: LockRef) -> Released | Unavailable | None:
        """Who took the lock's claimable balance, read from its history
        (/claimable_balances/{id}/operations): the claimant of the claim that removed
        it, the agent's own claim or the sender's reclaim after T_cancel (or, for a
        clawback, the issuer that took it). The conclusion comes from that one answer,
        consistent with its Latest-Ledger: a balance whose history shows no release
        was still held at that ledger (None). A server whose history has no such
        balance (one behind its creation, or pruned) proves nothing: ``Unavailable``,
        as is a failure to ask. The ledger's hash is read after, by its sequence."""
        if lock.chain != ChainName.STELLAR or not lock.balance_id:
            raise ValueError(f"not a Stellar lock: {lock}")
        try:
            history = self._horizon.balance_history(lock.balance_id)
            if history is None:
                return Unavailable(
                    f"Horizon's history has no claimable balance {lock.balance_id}: a server "
                    "behind its creation, or history pruned"
                )
            release = next((op for op in history.operations if op.kind in _RELEASES), None)
            if release is None:
                return None
            header = self._horizon.ledger(release.ledger)
        except BreakerOpen as exc:
            return Unavailable(str(exc), breaker_open=True)
        except AdapterError as exc:
            return Unavailable(str(exc))
        if header is None:
            return Unavailable(
                f"Horizon's history has a release in ledger {release.ledger}, but the server "
                "asked for that ledger has not ingested it yet"
            )
        created = next((op for op in history.operations if op.amount is not None), None)
        return Released(
            lock=lock,
            # a claim credits its claimant; a clawback burns the funds at the issuer
            to=release.claimant or release.source_account,
            tx_hash=release.transaction_hash,
            ledger_index=release.ledger,
            ledger_hash=header.hash,
            delivered=None if created is None else created.amount,
        )

    def locks_of(self, account: str) -> list[LockState] | Unavailable:
        """Every claimable balance ``account`` is a claimant of; the lock's owner is the
        balance's sponsor (its creator)."""
        try:
            balances = self._horizon.claimable_balances_for(account)
        except BreakerOpen as exc:
            return Unavailable(str(exc), breaker_open=True)
        except TransportError as exc:
            return Unavailable(str(exc))
        return [_balance_state(b, owner=b.sponsor) for b in balances]

    def balance(self, account: str, asset: Asset) -> Decimal:
        """The account's balance of ``asset`` as Horizon's ``/accounts/{id}`` states it
        (Horizon serves only final ledgers): the native balance in XLM (reserves
        included), or the trust line's balance for a credit asset, 0 with no such line;
        a claimable balance the account created is not part of it. ``AccountNotFound``
        for an address Horizon does not know (404) or one that is no account ID."""
        if not StrKey.is_valid_ed25519_public_key(account):
            raise AccountNotFound(f"{account} is not a Stellar account ID")
        view = self._horizon.account(account)
        if view is None:
            raise AccountNotFound(f"{account} does not exist on the Stellar network")
        if asset.is_native:
            return view.native_balance
        line = view.lines.get((asset.code, asset.issuer or ""))
        return line.balance if line is not None else Decimal(0)

    def ledger_time(self) -> datetime | Unavailable:
        """``closed_at`` of the last ledger Horizon has ingested: the close time claim
        predicates and time bounds of the next ledger are judged against (Horizon
        serves only final ledgers). A Horizon that cannot answer is ``Unavailable``."""
        try:
            # read afresh: a deadline is judged on it, and a Horizon that cannot be
            # asked now must say so now
            return self._head.observe(self._horizon.latest_ledger()).closed_at
        except BreakerOpen as exc:
            return Unavailable(str(exc), breaker_open=True)
        except AdapterError as exc:
            return Unavailable(str(exc))

    # -- submit, status, lookup --------------------------------------------------------

    def submit(self, submission: SignedSubmission) -> Outcome:
        """POST the signed envelope once; see the module docstring for the outcomes."""
        return self._timed(self._submit(submission))

    def _queued_now(self, tx_hash: str) -> None:
        with self._queued_lock:
            if len(self._queued) >= _QUEUED_KEPT_MAX:
                self._queued.clear()  # only costs a resend each: DUPLICATE answers
            self._queued[tx_hash] = time.monotonic()

    def _queued_recently(self, tx_hash: str) -> bool:
        """Whether stellar-core said it queued ``tx_hash`` (PENDING or DUPLICATE, to this
        adapter) recently enough that it still holds it: core keeps a queued transaction
        for a few ledgers, then drops it. Horizon cannot show the queue, so this is what
        lets ``status`` say ``held`` and spare a resend per poll; after it, or for one
        another process sent, the same envelope is sent again, as always safe."""
        interval = self._head.interval_s or _ASSUMED_CLOSE_S
        with self._queued_lock:
            at = self._queued.get(tx_hash)
        return at is not None and time.monotonic() - at < _QUEUE_TRUST_CLOSES * interval

    def _timed(self, outcome: Outcome) -> Outcome:
        """A Pending outcome says when the next ledger is due (``Pending.look_again_s``)."""
        if isinstance(outcome, Pending) and outcome.look_again_s is None:
            return replace(outcome, look_again_s=self._head.next_ledger_in_s())
        return outcome

    def _submit(self, submission: SignedSubmission) -> Outcome:
        _check_submission(submission)
        envelope = TransactionEnvelope.from_xdr(submission.blob, self.network_passphrase)
        # stellar-sdk re-encodes the envelope it is given: it must be the bytes we keep
        assert envelope.to_xdr() == submission.blob
        assert envelope.hash_hex() == submission.tx_hash
        try:
            if self.asynchronous_submit:
                reply = self._horizon.submit_async(envelope)
            else:
                reply = self._horizon.submit(envelope)
        except BreakerOpen as exc:
            return Unavailable(str(exc), breaker_open=True)
        except ResponseLost as exc:
            return Pending(submission.tx_hash, f"submitted, no answer: {exc}")
        except TransportError as exc:
            return Unavailable(str(exc))
        if self.asynchronous_submit:
            return self._core_answer(submission, reply)
        return self._answer(submission, reply)

    def _core_answer(self, submission: SignedSubmission, reply: Reply) -> Outcome:
        """POST /transactions_async: stellar-core's status, or a problem."""
        tx_hash = submission.tx_hash
        status = reply.tx_status
        if status is None and reply.status < 400:  # not Horizon's shape: nothing is final
            return Pending(tx_hash, f"Horizon answered {reply.status} without a core status")
        if status is None:
            return self._problem(submission, reply)
        answered = str(reply.body.get("hash", "")).lower()
        if answered != tx_hash:
            return Unavailable(f"Horizon answered {status} for {answered!r}, not for {tx_hash}")
        if status in ("PENDING", "DUPLICATE"):
            self._queued_now(tx_hash)
        match status:
            case "PENDING":
                return Pending(
                    tx_hash, "queued by stellar-core; in a ledger once it closes", held=True
                )
            case "DUPLICATE":
                return Pending(tx_hash, "already queued by stellar-core", held=True)
            case "TRY_AGAIN_LATER":
                return Pending(
                    tx_hash,
                    "stellar-core queued nothing now (its source account has a transaction "
                    "queued); the same envelope is sent again, and expires if never taken",
                )
        result_xdr = reply.body.get("error_result_xdr") or reply.body.get("errorResultXdr")
        if not isinstance(result_xdr, str) or not result_xdr:
            return Unavailable(f"Horizon answered ERROR for {tx_hash} without a result")
        return self._refused(submission, result_xdr)

    def _answer(self, submission: SignedSubmission, reply: Reply) -> Outcome:
        """POST /transactions: the transaction in a ledger, or a problem."""
        if reply.status == 200:
            return self._found(submission.tx_hash, tx_view(reply.body))
        if reply.problem_type == TRANSACTION_FAILED:
            return self._refused(submission, str(reply.body["extras"]["result_xdr"]))
        return self._problem(submission, reply)

    def _problem(self, submission: SignedSubmission, reply: Reply) -> Outcome:
        """A problem document about a submission, on either route."""
        tx_hash = submission.tx_hash
        if reply.status == 504 or reply.problem_type in TIMEOUT_TYPES:
            return Pending(tx_hash, "Horizon stopped waiting for a ledger; it may still apply")
        if reply.status == 404:
            return Unavailable(f"Horizon has no submission endpoint at {self._horizon.url}")
        if reply.status == 403:
            return Unavailable(f"Horizon at {self._horizon.url} does not accept submissions")
        # transaction_malformed, a body too large: this envelope is refused as it is
        kind = reply.problem_type.rsplit("/", 1)[-1] or f"http_{reply.status}"
        detail = str(reply.body.get("detail", ""))
        return Rejected(tx_hash, kind, applied=False, detail=detail)

    def _refused(self, submission: SignedSubmission, result_xdr: str) -> Outcome:
        """A result refusing the envelope: 400 transaction_failed (synchronous route) or
        ERROR (asynchronous). Whether the transaction is in a ledger is read from the
        ledger by hash, not inferred from the code: an applied failure is in history,
        and a resubmission of an envelope that already applied is answered
        ``tx_bad_seq``. That code is final only when Horizon's account, read before the
        lookup, shows the sequence number used, the lookup's answer is consistent with
        a ledger at least as new as the account's (its Latest-Ledger: behind a balancer
        the two may come from different servers), and Horizon's history still reaches
        back to the envelope's lower time bound: the ledger that used the number is then
        covered by the lookup, which would have found this transaction there."""
        tx_hash = submission.tx_hash
        summary = summarize(result_xdr)
        bad_seq = summary.code == sdk_xdr.TransactionResultCode.txBAD_SEQ
        tx = TransactionEnvelope.from_xdr(submission.blob, self.network_passphrase).transaction
        source = tx.source.account_id
        try:
            account = self._horizon.account(source) if bad_seq else None
            lookup = self._horizon.transaction_lookup(tx_hash)
            if lookup.found is not None:
                return self._found(tx_hash, lookup.found)
            # a pruned history could have dropped the ledger holding this very envelope
            reaches = not bad_seq or self._history_reaches(
                time_window(submission.blob, self.network_passphrase).min_time
            )
        except TransportError as exc:
            return Pending(
                tx_hash, f"refused ({summary.text}); the ledger could not be read: {exc}"
            )
        if bad_seq and (account is None or account.sequence < tx.sequence):
            seen = "no account" if account is None else f"sequence {account.sequence}"
            return Pending(
                tx_hash,
                f"refused (tx_bad_seq) but Horizon shows {seen} for {source}, not "
                f"{tx.sequence} used: stellar-core may be ahead of Horizon's history",
            )
        used_by = None if account is None else account.latest_ledger
        if bad_seq and not _covers(lookup.latest_ledger, used_by):
            # the sequence was used in a ledger up to the account's; the lookup must cover it
            return Pending(
                tx_hash,
                f"refused (tx_bad_seq); the lookup by hash came from a server at ledger "
                f"{lookup.latest_ledger}, behind the one showing the sequence used "
                f"({used_by}): it may have applied in between",
            )
        if not reaches:
            log.warning("%s: tx_bad_seq but history is pruned past it", tx_hash)
            return Pending(
                tx_hash,
                "refused (tx_bad_seq), but Horizon's history no longer reaches the ledgers "
                "that could have included it: cannot prove it never applied",
            )
        match summary.verdict:
            case Verdict.FAILED | Verdict.REFUSED:
                detail = summary.explanation or "refused before a ledger: no fee, no sequence used"
                return Rejected(tx_hash, summary.text, applied=False, detail=detail)
            case Verdict.NOT_YET:
                return Pending(tx_hash, f"refused for now ({summary.text}); final when it expires")
            case Verdict.SUCCESS:
                return Pending(tx_hash, "Horizon answered success but has no such transaction yet")

    def status(self, submission: SignedSubmission) -> Outcome:
        """Where the transaction stands, by hash and by ledger time.

        ``Expired`` only from one answer that covers the whole window in which the
        transaction could have applied: the lookup by hash answered 404, and its own
        Latest-Ledger (the ledger that answer is consistent with) is at least a ledger
        known to have closed after the transaction's upper time bound, so no ledger
        that could include it is missing from that answer. And Horizon's history
        reaches back to the lower bound (no such ledger pruned). Behind a load balancer
        the latest ledger and the lookup may come from different servers; a lookup from
        one behind that ledger proves nothing, and the answer is ``Pending``.

        The latest ledger is read before the transaction, and found in memory when
        another thread read it within ``head_fresh_s``: any ledger read is a ledger
        that did close, whichever server served it. Two reads per poll, three only
        when the transaction is found in a ledger other than that latest one: the
        latest ledger's header gives the hash of the ledger holding it when it is the
        same (a closed ledger's hash never changes).
        """
        return self._timed(self._status(submission))

    def _status(self, submission: SignedSubmission) -> Outcome:
        _check_submission(submission)
        tx_hash = submission.tx_hash
        try:
            latest = self._head.get()
            lookup = self._horizon.transaction_lookup(tx_hash)
            if lookup.found is not None:
                return self._found(tx_hash, lookup.found, known=latest)
            window = time_window(submission.blob, self.network_passphrase)
            if window.max_time == 0 or ceil_seconds(latest.closed_at) <= window.max_time:
                return Pending(tx_hash, "in no ledger yet", held=self._queued_recently(tx_hash))
            if not _covers(lookup.latest_ledger, latest.sequence):
                return Pending(
                    tx_hash,
                    f"not found by a server at ledger {lookup.latest_ledger}, behind ledger "
                    f"{latest.sequence}, which closed after the upper time bound: it may "
                    "have applied in between",
                )
            if not self._history_reaches(window.min_time):
                log.warning("%s: expired but history is pruned past it", tx_hash)
                return Pending(
                    tx_hash,
                    "expired by ledger time, but Horizon's history no longer reaches the "
                    "ledgers that could have included it: cannot prove it never applied",
                )
            return Expired(
                tx_hash,
                f"in no ledger up to {lookup.latest_ledger}, and ledger {latest.sequence} "
                f"closed at {latest.closed_at.isoformat()}, after the upper time bound "
                f"{to_datetime(window.max_time).isoformat()}",
            )
        except BreakerOpen as exc:
            return Unavailable(str(exc), breaker_open=True)
        except TransportError as exc:
            return Unavailable(str(exc))

    def _history_reaches(self, since_s: int) -> bool:
        elder = self._horizon.history_elder_ledger()
        if elder <= 1:
            return True
        header = self._horizon.ledger(elder)
        return header is not None and ceil_seconds(header.closed_at) <= since_s

    def _found(self, tx_hash: str, view: TxView, *, known: LedgerHeader | None = None) -> Outcome:
        """The outcome of a transaction Horizon has in a ledger; Pending while that
        ledger cannot be read (the outcome is known to Horizon but not yet to us).
        ``known`` is a ledger header already read, used if it is the ledger's."""
        if view.hash != tx_hash:
            raise AdapterError(f"Horizon answered for {view.hash}, not for {tx_hash}")
        try:
            found = self._ledger_tx(view, known=known)
        except TransportError as exc:
            return Pending(tx_hash, f"in ledger {view.ledger}, which could not be read: {exc}")
        if found.successful:
            return Applied(tx_hash, found.ledger_index, found.ledger_hash, found.extra["code"])
        return Rejected(
            tx_hash,
            found.extra["result"],
            applied=True,
            ledger_index=found.ledger_index,
            ledger_hash=found.ledger_hash,
            detail=found.extra["explanation"],
        )

    def lookup(self, tx_hash: str) -> LedgerTx | None:
        """The transaction as Horizon's history holds it. Horizon ingests only ledgers
        the network has externalised, which are final on Stellar: ``validated`` is true
        for anything found. Raises ``TransportError`` when Horizon cannot be asked.

        ``extra`` also states what a successful transaction with one payment operation
        delivered (``_delivered``): a payout from the agent, alone or after its claim
        in the same transaction. A claim states nothing: its operation names no amount
        (what a balance held is ``lock_release``'s to say)."""
        found = self._horizon.transaction(tx_hash)
        if found is None:
            return None
        ledger_tx = self._ledger_tx(found)
        if not found.successful:
            return ledger_tx
        return replace(ledger_tx, extra=ledger_tx.extra | self._delivered(found))

    def _delivered(self, found: TxView) -> dict[str, str]:
        """What the one payment operation of ``found`` delivered: ``delivered`` (its
        amount; a plain payment delivers exactly that, or fails with its transaction),
        ``delivered_to`` and ``delivered_asset`` (``native`` or ``CODE:ISSUER``).
        Empty unless the result names exactly one payment, and the operations answer
        lists the transaction's operations as the result does, in the same order: the
        operations are a second request, perhaps to a server that has not ingested the
        ledger yet, and that one's empty answer states nothing."""
        kinds = _operation_types(found.result_xdr)
        if kinds.count(sdk_xdr.OperationType.PAYMENT) != 1:
            return {}
        operations = self._horizon.transaction_operations(found.hash)
        if operations is None or len(operations) != len(kinds):
            return {}
        for operation, kind in zip(operations, kinds, strict=True):
            if kind is not sdk_xdr.OperationType.PAYMENT:
                continue
            if operation.kind != "payment" or not operation.transaction_successful:
                return {}
            assert operation.amount is not None
            return {
                "delivered": format(operation.amount, "f"),
                "delivered_to": operation.to,
                "delivered_asset": operation.asset,
            }
        return {}

    def _ledger_tx(self, found: TxView, *, known: LedgerHeader | None = None) -> LedgerTx:
        if known is not None and known.sequence == found.ledger:
            header: LedgerHeader | None = known
        else:
            header = self._horizon.ledger(found.ledger)
        if header is None:
            # behind a balancer, a server that has not ingested that ledger yet: it
            # could not be read now, as if unreachable (raised outside the breaker)
            raise TransportError(
                f"Horizon has {found.hash} in ledger {found.ledger}, but the server asked "
                "for that ledger has not ingested it yet"
            )
        summary = summarize(found.result_xdr)
        if found.successful != (summary.verdict == Verdict.SUCCESS):
            raise AdapterError(f"{found.hash}: successful={found.successful} but {summary.text}")
        return LedgerTx(
            tx_hash=found.hash,
            ledger_index=found.ledger,
            ledger_hash=header.hash,
            validated=True,
            successful=found.successful,
            extra={
                "code": summary.tx_name,
                "result": summary.text,
                "explanation": summary.explanation,
                "fee_charged_stroops": str(found.fee_charged_stroops),
                "source_account": found.source_account,
            },
        )


#: the operations that remove a claimable balance: a claimant's claim, an issuer's
#: clawback (a sponsorship revocation only moves the reserve)
_RELEASES = ("claim_claimable_balance", "clawback_claimable_balance")
#: stellar-core drops a queued transaction that no ledger took within a few ledgers
#: (TRANSACTION_QUEUE_TIMEOUT_LEDGERS, 4); trust a PENDING for fewer than that
_QUEUE_TRUST_CLOSES = 3
_ASSUMED_CLOSE_S = 5.0
_QUEUED_KEPT_MAX = 100_000


def _operation_types(result_xdr: str) -> list[sdk_xdr.OperationType]:
    """The types of a transaction's operations, in order, as its result lists them (a
    fee bump's, its inner transaction's). An operation refused as a whole (a code
    other than opINNER) carries no type and is left out; a successful result has none."""
    outer = sdk_xdr.TransactionResult.from_xdr(result_xdr).result
    pair = outer.inner_result_pair
    results = outer.results if pair is None else pair.result.result.results
    return [op.tr.type for op in results or [] if op.tr is not None]


def _header_sequence(header: LedgerHeader) -> int:
    return header.sequence


def _balance_state(balance: BalanceView, *, owner: str) -> LockState:
    claimants = tuple(_claimant(c.destination, c.predicate) for c in balance.claimants)
    sender = balance.sponsor or owner
    reclaim = [c for c in claimants if c.destination == sender and c.not_before is not None]
    return LockState(
        lock=LockRef(ChainName.STELLAR, owner=owner, balance_id=balance.balance_id),
        exists=True,
        key=balance.balance_id,
        asset=_asset(balance.asset),
        amount=balance.amount,
        sender=sender,
        claimants=claimants,
        cancel_after=reclaim[0].not_before if reclaim else None,
    )


def _asset(canonical_name: str) -> Asset:
    if canonical_name == "native":
        return Asset("XLM")
    code, _, issuer = canonical_name.partition(":")
    return Asset(code, issuer)


def _claimant(destination: str, predicate: dict[str, object]) -> LockClaimant:
    """Horizon's predicate JSON: unconditional, "not before an absolute time" (the
    sender's reclaim from T_cancel on), or anything else, kept as text."""
    text = json.dumps(predicate, sort_keys=True)
    if predicate == {"unconditional": True}:
        return LockClaimant(destination, unconditional=True, predicate=text)
    inner = predicate.get("not")
    if isinstance(inner, dict) and set(inner) <= {"abs_before", "abs_before_epoch"}:
        epoch = inner.get("abs_before_epoch")
        if epoch is not None:
            moment = datetime.fromtimestamp(int(str(epoch)), tz=UTC)
        else:
            moment = datetime.fromisoformat(str(inner["abs_before"]).replace("Z", "+00:00"))
        return LockClaimant(destination, unconditional=False, not_before=moment, predicate=text)
    return LockClaimant(destination, unconditional=False, predicate=text)


def _check_ref(leg: Leg, lock: LockRef) -> str:
    """The balance id of ``lock``, a Stellar lock of ``leg``'s sender."""
    if lock.chain != ChainName.STELLAR or not lock.balance_id:
        raise ValueError(f"not a Stellar lock: {lock}")
    if lock.owner != leg.sender:
        raise LegInvalid(f"the lock belongs to {lock.owner}, not to the sender {leg.sender}")
    return lock.balance_id


def _hash_memo(view: TxView) -> bytes | None:
    """The 32 bytes of a transaction's memo hash (Horizon renders it in base64)."""
    if view.memo_type != "hash":
        return None
    try:
        root = base64.b64decode(view.memo, validate=True)
    except (binascii.Error, ValueError):
        return None
    return root if len(root) == 32 else None


def _covers(answered_at: int | None, needed: int | None) -> bool:
    """Whether an answer consistent with ledger ``answered_at`` (its Latest-Ledger)
    covers every ledger up to ``needed``; an answer without the header covers none."""
    return answered_at is not None and needed is not None and answered_at >= needed


def _check_submission(submission: SignedSubmission) -> None:
    if submission.chain != ChainName.STELLAR:
        raise ValueError(f"a {submission.chain} submission given to the Stellar adapter")


def _claimable_only(kind: LockKind | None) -> None:
    if kind not in (None, LockKind.CLAIMABLE):
        raise ValueError(f"a Stellar lock is a claimable balance, not a {kind} lock")
