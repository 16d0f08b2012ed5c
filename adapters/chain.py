"""The Chain port: what the settlement engine asks of a ledger, and what it gets back.

The engine knows nothing of XRPL or Stellar; an adapter knows nothing of commitments
or the database. A DVP leg moves through three purposes on its ledger:

    lock    XRPL EscrowCreate with a crypto-condition (or, for a custody lock, a payment
            into the agent's account) / Stellar CreateClaimableBalance
    claim   Stellar: the agent claims the balance into its own account (the leg is held)
    commit  XRPL EscrowFinish with the fulfillment / a payment from the agent to the
            receiver of a held leg
    unwind  XRPL EscrowCancel after CancelAfter / a payment from the agent back to the
            sender of a held leg; a Stellar lock not yet held: claim + payment back, in
            one transaction

``lock_kind(leg)`` says which primitive a leg gets (``LockKind``); the engine records it
with the leg when the settlement is instructed, so it never changes under a settlement.

Reliable submission (DESIGN section 4) is split into steps so the engine can persist
between them: ``prepare_*`` builds and signs locally and returns a ``SignedSubmission``
(its hash computed locally, its expiry fixed); the engine records it and commits that
row; ``submit`` sends it and may well answer ``Pending`` (a lost response is not a
failure); ``status`` polls by hash until the transaction is final: ``Applied`` in a
validated ledger, ``Rejected`` with a final code, or ``Expired`` (its expiry passed
without it in any validated ledger, so it can never apply). Only a final outcome
allows a new signature for the same purpose.

Outcomes are values, not exceptions; ``Unavailable`` means the ledger could not be
asked (transport failure, or the circuit breaker is open) and says nothing about the
transaction.

Ledger time: ``ledger_time`` is the close time of the latest validated ledger. The
ledgers judge their time rules (XRPL CancelAfter, Stellar claim predicates and time
bounds) against their own close times, not against the engine's clock, and the two can
differ by any amount (clock skew, fast or slow closes), so the engine checks its
deadlines on both.

Parallel submission: ``submission_channels(leg, purpose)`` lists the channels a
``prepare_*`` of that purpose may be given as ``channel``, so transactions of one
account need not wait for each other's sequence number. On Stellar a channel is a
channel account: the transaction takes its sequence number and fee from it while its
operations keep the sender or the agent as source. On the XRP Ledger it is a Ticket of
the signing account (``ACCOUNT:TICKET``), spent by the one transaction that enters a
ledger with it. A channel must carry one transaction at a time until that one is final;
the caller keeps that rule (the engine records it with the write-ahead row). An empty
list means the signer's own sequence is used; a channel not offered is refused.

Audit anchors: a ledger that implements ``Anchoring`` as well publishes a 32-byte root
(``prepare_anchor``, then ``submit`` and ``status`` as any submission) and reads it
back from a transaction (``anchor_of``). XRPL: an AccountSet with no flags carrying one
Memo, MemoType the hex of ``ANCHOR_MEMO_TYPE``, MemoData the root. Stellar: a
transaction with memo hash = the root and one ManageData operation of the anchor
account (name ``ANCHOR_DATA_NAME``, value the root).

Balances: ``balance(account, asset)`` is what the account holds of the asset in the
latest validated ledger, as the ledger states it: XRP and XLM balances in whole units
(reserves included: the ledger's figure, not what can be spent), an issued token's
balance on the account's trust line. Funds in a lock (an XRPL escrow, a Stellar
claimable balance) have left the account and are not in its balance. An account that
exists without a trust line for the token holds 0 of it (the ledger's truth); an
account that does not exist raises ``AccountNotFound``; a ledger that cannot be asked
raises ``TransportError`` (``BreakerOpen`` while the breaker is open), never 0.

Reconciliation reads locks back: ``lock_state`` says whether a lock still exists in
the latest validated ledger and what it holds (``LockState``); ``locks_of`` lists the
locks an account takes part in, so locks unknown to the engine can be found.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Protocol, runtime_checkable


class ChainName(StrEnum):
    XRPL = "xrpl"
    STELLAR = "stellar"


class Purpose(StrEnum):
    LOCK = "lock"
    #: the settlement agent takes a lock's funds into its own account (Stellar claim)
    CLAIM = "claim"
    COMMIT = "commit"
    UNWIND = "unwind"


class LockKind(StrEnum):
    """How a leg is locked, and so what can happen to it after the decision.

    ``ESCROW``: a hash-locked XRPL escrow. Its payout (EscrowFinish) can be refused for
    good by the receiver's side (deposit authorisation, trust line authorisation or
    freeze, a limit); once the fulfillment is public anyone may finish it before
    CancelAfter, and anyone may cancel it back to the sender after.
    ``CLAIMABLE``: a Stellar claimable balance. The agent may claim it at any time, in a
    transaction of its own that nothing on the payee's side can refuse, and the sender
    from T_cancel on; once claimed (the leg is *held*) only the agent moves it.
    ``CUSTODY``: the lock itself moves the funds into the agent's account (an XRPL token
    where TokenEscrow is not enabled); the leg is held from the lock on.
    """

    ESCROW = "escrow"
    CLAIMABLE = "claimable"
    CUSTODY = "custody"


@dataclass(frozen=True)
class Asset:
    """The native asset (``issuer`` None) or an issued token (code + issuer account)."""

    code: str
    issuer: str | None = None

    @property
    def is_native(self) -> bool:
        return self.issuer is None


@dataclass(frozen=True)
class Leg:
    """One movement of a settlement: ``amount`` of ``asset`` from sender to receiver."""

    chain: ChainName
    asset: Asset
    amount: Decimal
    sender: str
    receiver: str


@dataclass(frozen=True)
class LockTerms:
    """What a lock must guarantee.

    ``condition`` is the PREIMAGE-SHA-256 crypto-condition (hex, DER) of the engine's
    secret, used by hash-locked ledgers; ``cancel_after`` is T_cancel, after which the
    sender can always recover the funds even if the engine is gone.
    """

    condition_hex: str
    cancel_after: datetime


@dataclass(frozen=True)
class LockRef:
    """Where a lock lives on its ledger, as the commit or unwind of it must name it.

    XRPL: the escrow owner and the sequence of the EscrowCreate. Stellar: the
    claimable balance id.
    """

    chain: ChainName
    owner: str
    sequence: int | None = None
    balance_id: str | None = None


@dataclass(frozen=True)
class SignedSubmission:
    """A transaction signed locally, not yet known to be sent.

    ``blob`` is what goes on the wire (XRPL tx_blob hex / Stellar envelope XDR base64);
    ``tx_hash`` was computed locally and equals the ledger's; ``expires`` is the ledger
    sequence (XRPL LastLedgerSequence) or the time (Stellar max time bound) after which
    the transaction can never apply. ``lock_ref`` is set for a lock. ``channel`` is
    the channel the transaction takes its sequence from, if any. ``purpose`` is None
    for account set-up that is no leg's (XRPL TicketCreate).
    """

    chain: ChainName
    purpose: Purpose | None
    tx_hash: str
    blob: str
    expires_ledger: int | None = None
    expires_at: datetime | None = None
    lock_ref: LockRef | None = None
    channel: str | None = None


@dataclass(frozen=True)
class Applied:
    """In a validated ledger with a success result."""

    tx_hash: str
    ledger_index: int
    ledger_hash: str
    code: str


@dataclass(frozen=True)
class Rejected:
    """Final failure: ``applied`` says whether it consumed a fee and sequence (XRPL tec,
    Stellar tx_failed) or never entered a ledger (tem/tef, malformed, bad auth)."""

    tx_hash: str
    code: str
    applied: bool
    ledger_index: int | None = None
    ledger_hash: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class Pending:
    """Not final yet: submitted or in flight, may still apply before its expiry.

    ``held``: the server said it holds the transaction (in its open ledger, its queue,
    or a ledger not yet validated), so sending the same blob again cannot help; only
    waiting can. ``look_again_s``: when the chain expects its next validated ledger,
    before which asking again is wasted; None when it cannot say.
    """

    tx_hash: str
    detail: str = ""
    held: bool = False
    look_again_s: float | None = None


@dataclass(frozen=True)
class Expired:
    """Final: the expiry passed and the transaction is in no validated ledger."""

    tx_hash: str
    detail: str = ""


@dataclass(frozen=True)
class Unavailable:
    """The ledger could not be asked; nothing is known about the transaction."""

    reason: str
    breaker_open: bool = False


Outcome = Applied | Rejected | Pending | Expired | Unavailable


def is_final(outcome: Outcome) -> bool:
    """Whether a new signature for the same purpose is allowed after ``outcome``."""
    match outcome:
        case Applied() | Rejected() | Expired():
            return True
        case Pending() | Unavailable():
            return False


@dataclass(frozen=True)
class LedgerTx:
    """A transaction as a validated ledger holds it: what `audit verify` checks.

    ``extra`` may hold ``delivered`` (a decimal string), ``delivered_to`` and
    ``delivered_asset`` (``CODE:ISSUER`` or ``native``): present only when a validated
    ledger states what the transaction delivered (a payment's delivered amount, an
    escrow's amount when it is finished or cancelled), never guessed."""

    tx_hash: str
    ledger_index: int
    ledger_hash: str
    validated: bool
    successful: bool
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LockClaimant:
    """Who may take a lock's funds, and from when (Stellar claimable balances).

    ``unconditional`` at any time; otherwise from ``not_before`` on when the predicate
    is "not before an absolute time"; any other predicate leaves both unset and is
    kept verbatim in ``predicate``.
    """

    destination: str
    unconditional: bool
    not_before: datetime | None = None
    predicate: str = ""


@dataclass(frozen=True)
class LockState:
    """A lock as the latest validated ledger holds it.

    ``exists`` False (``LockState.absent``) means the ledger no longer holds it:
    finished, cancelled, claimed, or never created; the terms are then None. ``key``
    is the ledger's own name for the object (XRPL escrow ledger index, Stellar
    balance id). ``sender`` is the escrow owner (XRPL) or the balance's sponsor, its
    creator (Stellar); ``receiver`` the escrow destination (XRPL only); ``claimants``
    the balance's claimants (Stellar only). ``cancel_after`` is when the sender can
    take the funds back: XRPL CancelAfter, Stellar the sender's claim predicate.
    ``condition_hex`` is the XRPL crypto-condition. ``ledger_index`` is the validated
    ledger read, when the ledger says.
    """

    lock: LockRef
    exists: bool
    key: str = ""
    asset: Asset | None = None
    amount: Decimal | None = None
    sender: str | None = None
    receiver: str | None = None
    claimants: tuple[LockClaimant, ...] = ()
    cancel_after: datetime | None = None
    condition_hex: str | None = None
    ledger_index: int | None = None

    @classmethod
    def absent(cls, lock: LockRef, *, key: str = "", ledger_index: int | None = None) -> LockState:
        return cls(lock=lock, exists=False, key=key, ledger_index=ledger_index)


@dataclass(frozen=True)
class Released:
    """A lock its ledger no longer holds, and the validated transaction that took it.

    ``to`` is the account that received the funds: the leg's receiver (paid, e.g. the
    receiver finished the escrow with the public fulfillment), its sender (returned: the
    sender cancelled or reclaimed after T_cancel) or the settlement agent (held: the
    agent's own claim). ``delivered`` is the amount that arrived, when the ledger says.
    """

    lock: LockRef
    to: str
    tx_hash: str
    ledger_index: int
    ledger_hash: str
    delivered: Decimal | None = None


#: the MemoType (as text; on the ledger its hex) of an XRPL anchoring transaction
ANCHOR_MEMO_TYPE = "settlement/anchor-v1"
#: the data entry a Stellar anchoring transaction sets on the anchor account
ANCHOR_DATA_NAME = "settlement/anchor"


@dataclass(frozen=True)
class AnchorTx:
    """A transaction as a ledger holds it, read as an anchor.

    ``root`` is the 32-byte root it carries, None when it carries none (not an anchoring
    transaction of this format). ``validated``: in a validated (final) ledger;
    ``successful``: it applied with success. ``account`` is its source account.
    """

    tx_hash: str
    account: str
    root: bytes | None
    ledger_index: int
    ledger_hash: str
    validated: bool
    successful: bool


@runtime_checkable
class Anchoring(Protocol):
    """A ledger that can carry the audit anchors (both adapters implement it)."""

    @property
    def name(self) -> ChainName: ...

    def prepare_anchor(self, account: str, root: bytes) -> SignedSubmission:
        """Sign a transaction of ``account`` (its key in the signer) carrying the
        32-byte ``root``; ``purpose`` None, an expiry as any submission. ``ValueError``
        for a root that is not 32 bytes; ``TransportError`` if the ledger cannot be
        asked for the account's sequence."""
        ...

    def submit(self, submission: SignedSubmission) -> Outcome: ...

    def status(self, submission: SignedSubmission) -> Outcome: ...

    def anchor_of(self, tx_hash: str) -> AnchorTx | None:
        """The transaction ``tx_hash`` read as an anchor; None if the ledger does not
        know it. Raises ``adapters.errors.TransportError`` if it cannot be asked."""
        ...

    def anchor_history(self, account: str) -> list[AnchorTx]:
        """Every successful transaction ``account`` sent that carries a root, as the
        validated ledgers hold them, oldest first (``ledger_hash`` may be empty: a
        history page need not name it). What an auditor compares with the anchors the
        database lists. Raises ``adapters.errors.TransportError`` if it cannot ask."""
        ...


def check_root(root: bytes) -> None:
    if len(root) != 32:
        raise ValueError(f"an anchor root is 32 bytes, not {len(root)}")


@runtime_checkable
class Chain(Protocol):
    """A ledger as the settlement engine sees it."""

    @property
    def name(self) -> ChainName: ...

    def validate_leg(self, leg: Leg, *, kind: LockKind | None = None) -> None:
        """Raise ``adapters.errors.LegInvalid`` if the leg cannot settle as given (locked
        as ``kind``; None: as ``lock_kind(leg)`` offers):
        precision of the amount, accounts that do not exist, missing trust lines, and
        every rule by which the ledger would refuse the leg's payout (deposit
        authorisation, trust line authorisation or freeze, limits, transfer fees the
        receiver would bear). The message names the leg's account and the rule."""
        ...

    def lock_kind(self, leg: Leg) -> LockKind:
        """The lock primitive this ledger offers ``leg`` now (XRPL: from the enabled
        amendments). Raises ``adapters.errors.TransportError`` if it cannot ask."""
        ...

    def submission_channels(self, leg: Leg, purpose: Purpose) -> tuple[str, ...]:
        """The channels ``prepare_*`` of ``purpose`` for ``leg`` accepts now; empty when
        the signer's own sequence is to be used. May ask the ledger (XRPL tickets):
        raises ``adapters.errors.TransportError`` if it cannot."""
        ...

    def prepare_lock(
        self,
        leg: Leg,
        terms: LockTerms,
        *,
        kind: LockKind | None = None,
        channel: str | None = None,
    ) -> SignedSubmission:
        """Sign the lock of ``leg`` as ``kind``, the primitive recorded for the leg (None:
        as ``lock_kind(leg)`` offers); a kind this ledger cannot make is a ``ValueError``."""
        ...

    def prepare_claim(
        self, leg: Leg, lock: LockRef, *, channel: str | None = None
    ) -> SignedSubmission:
        """The agent takes a ``CLAIMABLE`` lock into its own account (``Purpose.CLAIM``);
        raises ``ValueError`` on a ledger without such locks."""
        ...

    def prepare_commit(
        self,
        leg: Leg,
        lock: LockRef,
        fulfillment_hex: str,
        *,
        held: bool = False,
        channel: str | None = None,
    ) -> SignedSubmission:
        """Pay the receiver: finish the escrow, or (``held``: the agent holds the funds,
        a claimed or custody lock) a payment from the agent."""
        ...

    def prepare_unwind(
        self, leg: Leg, lock: LockRef, *, held: bool = False, channel: str | None = None
    ) -> SignedSubmission:
        """Return the funds to the sender: cancel the escrow, claim the balance and pay it
        back, or (``held``) a payment from the agent."""
        ...

    def submit(self, submission: SignedSubmission) -> Outcome:
        """Send a signed transaction; resending the same one is always safe."""
        ...

    def status(self, submission: SignedSubmission) -> Outcome:
        """Where the transaction stands now, by hash and expiry."""
        ...

    def lookup(self, tx_hash: str) -> LedgerTx | None:
        """The transaction in a ledger, or None if the ledger does not know it."""
        ...

    def lock_state(self, lock: LockRef) -> LockState | Unavailable:
        """Whether ``lock`` still exists in the latest validated ledger, and its terms.
        Never raises for a transport failure: that is ``Unavailable``."""
        ...

    def lock_release(self, lock: LockRef) -> Released | Unavailable | None:
        """Who took ``lock`` off the ledger: ``Released`` with the validated transaction
        that removed it, None while the latest validated ledger still holds it. Each
        answer comes from one server's view. Never raises for a failure to ask."""
        ...

    def locks_of(self, account: str) -> list[LockState] | Unavailable:
        """Every lock in the latest validated ledger that ``account`` takes part in:
        XRPL escrows it owns or receives, Stellar balances it may claim."""
        ...

    def ledger_time(self) -> datetime | Unavailable:
        """The close time (aware, UTC) of the latest validated ledger: the time the
        ledger's next transactions are judged against. Never earlier than any time this
        chain answered before. Never raises for a failure to ask: ``Unavailable``."""
        ...

    def balance(self, account: str, asset: Asset) -> Decimal:
        """What ``account`` holds of ``asset`` in the latest validated ledger (see the
        module docstring): 0 without a trust line for a token. Raises
        ``adapters.errors.AccountNotFound`` for an account the ledger does not hold and
        ``adapters.errors.TransportError`` when the ledger cannot be asked (through the
        chain's breaker and retries, as every read)."""
        ...
