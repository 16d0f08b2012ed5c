"""``XrplChain``: the Chain port on the XRP Ledger, over rippled's JSON-RPC with xrpl-py.

A leg is locked by an ``EscrowCreate`` from the sender to the receiver, held by the
settlement's PREIMAGE-SHA-256 condition and cancellable after T_cancel; it is committed
by an ``EscrowFinish`` carrying the fulfillment, and unwound by an ``EscrowCancel``;
the settlement agent signs (and pays for) both.

A token on a ledger without the TokenEscrow amendment cannot be escrowed; it gets a
custody lock (``LockKind.CUSTODY``): the sender's Payment of the amount into the agent's
account, then a Payment from the agent to the receiver (commit) or back to the sender
(unwind). The agent pays every transfer fee the issuer charges on the way, so the
sender parts with exactly the amount and the receiver gets exactly the amount, or the
sender gets it all back. Nothing on the ledger ties the funds to the settlement once
they are in: the engine's records do, and only the agent can move them.

Every transaction is built explicitly (Sequence from ``account_info``, Fee from
``fee``, LastLedgerSequence = the validated ledger + ``ledger_window``), signed through
the Signer port, and hashed locally, so the engine can persist it before it is sent.

Tickets: an account that holds Tickets (created by ``prepare_ticket_create``) can have
many transactions in flight at once, each consuming its own ticket instead of the next
Sequence, so concurrent settlements stop racing for one Sequence. ``submission_channels``
offers the signing account's tickets in the validated ledger as channels named
``ACCOUNT:TICKET``; a transaction prepared on one carries Sequence 0 and that
TicketSequence, and an escrow it creates is named by the ticket. A ticket is spent only
when a transaction using it enters a ledger (tes or tec); one that expired or was
refused before any ledger leaves it to be used again. With no ticket offered the
account's own Sequence is used, as before.

Every call to the server goes through the chain's ``ChainGuard`` (breaker and retries),
and every xrpl-py / httpx failure is translated in ``_transport``. A submission is final
only as ``status`` reports it: in a validated ledger, or refused for good, or expired
(one server's ``tx`` answer saying it searched every ledger the transaction could have
entered, up to its LastLedgerSequence, all validated, and found it in none).
"""

from __future__ import annotations

import hashlib
import string
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import httpx
from xrpl.asyncio.clients.client import REQUEST_TIMEOUT
from xrpl.asyncio.clients.exceptions import XRPLRequestFailureException
from xrpl.asyncio.clients.utils import request_to_json_rpc
from xrpl.core.addresscodec import decode_classic_address, is_valid_classic_address
from xrpl.core.binarycodec import encode, encode_for_signing
from xrpl.core.keypairs import derive_classic_address
from xrpl.models.amounts import IssuedCurrencyAmount
from xrpl.models.requests import (
    AccountInfo,
    AccountLines,
    AccountObjects,
    AccountObjectType,
    AccountTx,
    DepositAuthorized,
    Feature,
    Fee,
    Ledger,
    LedgerEntry,
    Request,
    ServerState,
    SubmitOnly,
    Tx,
)
from xrpl.models.transactions import (
    AccountSet,
    EscrowCancel,
    EscrowCreate,
    EscrowFinish,
    Memo,
    Payment,
    PaymentFlag,
    TicketCreate,
    Transaction,
)

from adapters.cadence import HeadWatch
from adapters.chain import (
    ANCHOR_MEMO_TYPE,
    AnchorTx,
    Asset,
    ChainName,
    Expired,
    LedgerTx,
    Leg,
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
from adapters.conditions import condition_of_fulfillment
from adapters.errors import (
    AccountNotFound,
    AdapterError,
    BreakerOpen,
    LegInvalid,
    SigningUnavailable,
    TransportError,
)
from adapters.resilience import ChainGuard
from adapters.signing import Signer
from adapters.xrpl.amounts import (
    DROPS_PER_XRP,
    TRANSFER_RATE_PARITY,
    after_transfer_fee,
    currency_code,
    issued_amount,
    token_value,
    transfer_rate,
    with_transfer_fee,
    xrp_to_drops,
)
from adapters.xrpl.checks import (
    Issuer,
    Line,
    check_escrowable,
    check_line,
    check_receiver_room,
)
from adapters.xrpl.releases import escrow_removal, spends_sequence
from adapters.xrpl.results import MAYBE_APPLIED, ledger_outcome, submit_outcome
from adapters.xrpl_signatures import sha512_half
from adapters.xrpl_signatures import verify as signature_verifies

RIPPLE_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)
#: rippled charges an EscrowFinish with a fulfillment this many reference fees, plus one
#: more per 16 bytes of fulfillment (``Escrow.cpp``, EscrowFinish::calculateBaseFee)
ESCROW_FINISH_BASE_UNITS: Final = 33
#: rippled lets an account hold at most this many tickets (``Ticket.h``, maxTicketThreshold)
MAX_TICKETS_PER_ACCOUNT: Final = 250
#: ledgers one ``tx`` request may search (``Tx.cpp``: a wider range is excessiveLgrRange);
#: ``status`` searches a submission's whole window in one request
MAX_TX_SEARCH_LEDGERS: Final = 1000
#: transactions per page of an account's history (rippled serves at most 200 to a
#: client that is not an admin)
HISTORY_PAGE: Final = 200
#: the amendment that lets a trust-line token be held in an escrow (rippled 2.5.0)
TOKEN_ESCROW: Final = "TokenEscrow"  # noqa: S105 - an amendment name, not a secret
#: server states in which rippled cannot serve a request: a fault of the server, counted
#: by the breaker like a refused connection, and retried
_NOT_READY: Final = frozenset(
    {"tooBusy", "noNetwork", "notSynced", "noCurrent", "noClosed", "slowDown", "notReady"}
)


class _MaybeDelivered(TransportError):
    """The request may have reached the server (a timeout after sending, a lost or
    unreadable answer): for a submit, the outcome is unknown, not a failure."""


@contextmanager
def _transport(url: str) -> Iterator[None]:
    """The one place where xrpl-py and httpx failures become ``TransportError``."""
    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise TransportError(f"XRPL server {url} not reached: {exc!r}") from exc
    except (httpx.HTTPError, XRPLRequestFailureException, KeyError, TypeError) as exc:
        raise _MaybeDelivered(f"XRPL server {url}: no usable answer: {exc!r}") from exc


@dataclass(frozen=True)
class _LedgerHead:
    index: int
    hash: str
    close_time_ripple_s: int


def _head_index(head: _LedgerHead) -> int:
    return head.index


def _fees_ledger(drops: dict[str, Any]) -> int:
    return int(drops["ledger_current_index"])


def transaction_hash(blob_hex: str) -> str:
    """The hash of a signed transaction blob: SHA-512Half of ``TXN\0`` + the blob."""
    return sha512_half(_TXN_PREFIX + bytes.fromhex(blob_hex)).hex().upper()


#: the hash prefix of a signed transaction ("TXN\0")
_TXN_PREFIX = bytes.fromhex("54584E00")
# requests that never change: built (and validated by xrpl-py) once
_VALIDATED_LEDGER = Ledger(ledger_index="validated")
_FEE = Fee()


def ripple_seconds(moment: datetime) -> int:
    """``moment`` in whole seconds since the Ripple epoch, rounded up: a CancelAfter is
    never earlier than the time the engine asked for."""
    if moment.tzinfo is None:
        raise ValueError("ledger times need an aware datetime")
    delta = moment - RIPPLE_EPOCH
    return delta.days * 86_400 + delta.seconds + (1 if delta.microseconds else 0)


def escrow_finish_fee_units(fulfillment: bytes) -> int:
    """Reference fees an EscrowFinish carrying ``fulfillment`` costs at least."""
    return ESCROW_FINISH_BASE_UNITS + len(fulfillment) // 16


class XrplChain:
    """The XRP Ledger as the settlement engine sees it.

    ``agent`` is the settlement agent account that signs and pays for every commit and
    unwind; ``ledger_window`` is how many ledgers past the validated one a transaction
    may still apply (its LastLedgerSequence; ``status`` also uses it to bound the ledgers
    a submission could be in, so it must not shrink while submissions are outstanding);
    ``max_fee_drops_per_unit`` caps what the
    engine pays per reference fee when the open ledger's fee escalates (above it the
    transaction waits in the queue, or expires). ``use_tickets`` False never offers
    tickets as channels (the accounts' tickets are then left to other uses).
    ``amendments_fresh_s`` is how long an answer of ``feature`` is taken as still true:
    an amendment changes at most once in weeks, and every instruction asks.
    """

    def __init__(
        self,
        url: str,
        *,
        agent: str,
        signer: Signer,
        guard: ChainGuard,
        ledger_window: int = 20,
        max_fee_drops_per_unit: int = 1_000,
        use_tickets: bool = True,
        head_fresh_s: float = 0.05,
        amendments_fresh_s: float = 60.0,
    ) -> None:
        if not 1 <= ledger_window <= MAX_TX_SEARCH_LEDGERS:
            raise ValueError(f"ledger_window must be from 1 to {MAX_TX_SEARCH_LEDGERS}")
        self.url = url
        self.agent = agent
        # xrpl-py's JsonRpcClient opens a new HTTP client, with a new TLS context (about
        # 20 ms of CPU), for every request; one kept-alive client, shared by the threads
        # of a worker, speaks the same JSON-RPC through xrpl-py's own request encoding
        # and response model
        self._http = httpx.Client(timeout=REQUEST_TIMEOUT)
        # an adapter dropped without close() still closes its connections
        weakref.finalize(self, self._http.close)
        self._signer = signer
        self._guard = guard
        self.ledger_window = ledger_window
        self._max_fee_drops_per_unit = max_fee_drops_per_unit
        self.use_tickets = use_tickets
        # the threads of a worker share the validated head they read, for ``head_fresh_s``
        self._head = HeadWatch(self._read_validated_head, _head_index, fresh_s=head_fresh_s)
        # and the open ledger's fee levels, which change per ledger at most
        self._fees = HeadWatch(self._read_fees, _fees_ledger, fresh_s=head_fresh_s)
        self._tickets_lock = threading.Lock()
        #: account -> (validated ledger index, its tickets there)
        self._tickets_seen: dict[str, tuple[int, list[int]]] = {}
        self._amendments_fresh_s = amendments_fresh_s
        self._amendments_lock = threading.Lock()
        #: amendment name -> (enabled, monotonic time of the answer)
        self._amendments_seen: dict[str, tuple[bool, float]] = {}

    @property
    def name(self) -> ChainName:
        return ChainName.XRPL

    # --- legs -----------------------------------------------------------------------

    def lock_kind(self, leg: Leg) -> LockKind:
        """``ESCROW`` for XRP, and for a token while the ledger has TokenEscrow enabled
        (without it a token EscrowCreate is temBAD_AMOUNT); ``CUSTODY`` for a token
        otherwise. Raises ``TransportError`` (``BreakerOpen``) if the ledger cannot be
        asked, ``AdapterError`` if its answer says nothing about the amendment."""
        if leg.asset.is_native:
            return LockKind.ESCROW
        return LockKind.ESCROW if self._amendment_enabled(TOKEN_ESCROW) else LockKind.CUSTODY

    def _amendment_enabled(self, name: str) -> bool:
        """Whether the server's ledger has ``name`` enabled (``feature``), as answered
        within ``amendments_fresh_s``. A server that does not know the amendment
        (badFeature) is on a network that has not enabled it: rippled stops serving
        ledgers whose enabled amendments it does not know (amendment blocked)."""
        with self._amendments_lock:
            seen = self._amendments_seen.get(name)
        if seen is not None and time.monotonic() - seen[1] < self._amendments_fresh_s:
            return seen[0]
        answer = self._rpc(Feature(feature=name))
        if answer.get("error") == "badFeature":
            enabled = False
        elif "error" in answer:
            raise AdapterError(f"feature {name} answered {answer['error']}")
        else:
            enabled = _feature_enabled(answer, name)
        with self._amendments_lock:
            self._amendments_seen[name] = (enabled, time.monotonic())
        return enabled

    def validate_leg(self, leg: Leg, *, kind: LockKind | None = None) -> None:
        """Raise ``LegInvalid``, before anything is signed, unless the leg can lock and
        pay out as given (``adapters.xrpl.checks``): precision, accounts, the sender's
        funds; the receiver's deposit authorisation of the agent, who sends the payout;
        for a token, the issuer's authorisation and freezes of every line the leg
        uses, the receiver's line and limit, an escrow's transfer fee (the receiver
        would get less) or, for a custody lock, the agent's line and the fees it pays.
        ``kind`` is the lock the leg is to get (the engine may give an XRPL leg a
        custody lock where an escrow is offered); None: ``lock_kind(leg)``. The message
        names the account and the rule. Raises ``TransportError`` if the ledger cannot
        be asked."""
        amount = self._ledger_amount(leg)
        if leg.sender == leg.receiver:
            raise LegInvalid(f"sender and receiver are the same account {leg.sender}")
        sender = self._account(leg.sender, "sender")
        self._account(leg.receiver, "receiver")
        kind = kind or self.lock_kind(leg)
        payout = "the agent's " + ("EscrowFinish" if kind is LockKind.ESCROW else "payment")
        self._check_deposit_auth(self.agent, "settlement agent", leg.receiver, "receiver", payout)
        if kind is LockKind.CUSTODY:
            self._check_custody_parties(leg)
        if isinstance(amount, str):
            self._check_spendable_xrp(sender, int(amount))
            return
        issuer = Issuer.of(self._account(amount.issuer, "issuer"))
        code = leg.asset.code
        if kind is LockKind.ESCROW:
            check_escrowable(leg, issuer)
        else:
            self._check_custody_line(leg, amount, issuer)
        if leg.sender != issuer.address:  # an issuer issues what it sends
            held = self._line(leg.sender, amount)
            if held is None or held.balance < leg.amount:
                raise LegInvalid(f"sender {leg.sender} holds less than {leg.amount} {code}")
            check_line("sender", held, issuer, kind, code)
        if leg.receiver == issuer.address:
            return  # delivered to its issuer the token is redeemed; no line needed
        line = self._line(leg.receiver, amount)
        if line is None:
            refusal = "tecNO_LINE" if kind is LockKind.ESCROW else "tecPATH_DRY"
            raise LegInvalid(
                f"receiver {leg.receiver} has no trust line for {code} of {issuer.address}; "
                f"{payout} cannot create it ({refusal})"
            )
        check_line("receiver", line, issuer, kind, code)
        check_receiver_room(leg, line, kind)

    def _check_custody_parties(self, leg: Leg) -> None:
        """A custody lock pays the agent and the agent pays out: the agent is neither
        party, the sender may pay it and it may pay the sender back (deposit
        authorisation)."""
        if self.agent in (leg.sender, leg.receiver):
            raise LegInvalid(
                f"the settlement agent {self.agent} cannot be a party of a custody-locked leg"
            )
        self._check_deposit_auth(
            leg.sender, "sender", self.agent, "settlement agent", "the custody lock"
        )
        self._check_deposit_auth(
            self.agent, "settlement agent", leg.sender, "sender", "the agent's payment back"
        )

    def _check_custody_line(self, leg: Leg, amount: IssuedCurrencyAmount, issuer: Issuer) -> None:
        """The agent's line for a custody-locked token: usable, with room for what the
        lock pays in; and, through an issuer with a TransferRate, enough of its own
        tokens for the fees it pays: what its payout costs beyond what the lock brought
        in. (Its balance also holds other settlements' custody legs: the check says the
        fee is covered now, not that it is set aside.)"""
        code = leg.asset.code
        line = self._line(self.agent, amount)
        if line is None:
            raise LegInvalid(
                f"settlement agent {self.agent} has no trust line for {code} of "
                f"{amount.issuer}; the custody lock cannot pay into it (tecPATH_DRY)"
            )
        check_line("settlement agent", line, issuer, LockKind.CUSTODY, code)
        received, spent = _custody_flows(leg, self.agent, issuer.transfer_rate)
        if line.balance + received > line.limit:
            raise LegInvalid(
                f"settlement agent {self.agent}'s trust line limit {line.limit} cannot "
                f"take {received} more {code} (tecPATH_PARTIAL at the custody lock)"
            )
        if line.balance < spent - received:
            raise LegInvalid(
                f"settlement agent {self.agent} holds {line.balance} {code}, less than the "
                f"{spent - received} of issuer {amount.issuer}'s transfer fees it pays on "
                "this custody-locked leg"
            )

    def _check_deposit_auth(
        self, source: str, source_role: str, destination: str, role: str, payment: str
    ) -> None:
        """``destination`` takes ``source``'s payments (``deposit_authorized``: no
        lsfDepositAuth, or a DepositPreauth of ``source``)."""
        answer = self._rpc(
            DepositAuthorized(
                source_account=source, destination_account=destination, ledger_index="validated"
            )
        )
        missing = {"srcActNotFound": (source_role, source), "dstActNotFound": (role, destination)}
        if answer.get("error") in missing:
            who, address = missing[answer["error"]]
            raise LegInvalid(f"{who} {address} does not exist on the XRP Ledger")
        if "error" in answer:
            raise AdapterError(f"deposit_authorized answered {answer['error']}")
        if answer.get("deposit_authorized") is not True:
            raise LegInvalid(
                f"{role} {destination} requires deposit authorisation and has not "
                f"preauthorised the {source_role} {source} (tecNO_PERMISSION at {payment})"
            )

    def submission_channels(self, leg: Leg, purpose: Purpose) -> tuple[str, ...]:
        """The tickets the account that signs ``purpose`` of ``leg`` holds in the validated
        ledger (the sender for a lock, the agent otherwise), as ``ACCOUNT:TICKET``; empty
        when it holds none or tickets are not used. A ticket in use by a transaction not
        yet validated is still listed: the caller's own record of open submissions says
        it is taken. Raises ``TransportError`` (``BreakerOpen``) if the ledger cannot be
        asked."""
        if not self.use_tickets:
            return ()
        account = leg.sender if purpose is Purpose.LOCK else self.agent
        return tuple(f"{account}:{ticket}" for ticket in self._tickets_now(account))

    def _tickets_now(self, account: str) -> list[int]:
        """``tickets(account)`` as of the latest validated ledger, read afresh: the caller
        has just read which tickets its own open transactions hold, and a ticket spent
        by one that became final before that read is gone from this ledger. The list is
        kept per account and ledger: while no new ledger has validated, asking again
        (a ``ledger`` call) is cheaper than listing every ticket again."""
        head = self._head.observe(self._read_validated_head())
        with self._tickets_lock:
            kept = self._tickets_seen.get(account)
        if kept is not None and kept[0] == head.index:
            return kept[1]
        listed = list(self._objects(account, AccountObjectType.TICKET, "Ticket"))
        tickets = sorted(int(node["TicketSequence"]) for node, _ in listed)
        read_at = {index for _, index in listed}
        if len(read_at) == 1 and (index := read_at.pop()) is not None and index >= head.index:
            # kept only when every page came from one ledger, the head's or a later one
            with self._tickets_lock:
                self._tickets_seen[account] = (index, tickets)
        return tickets

    def tickets(self, account: str) -> list[int]:
        """The TicketSequence of every ticket ``account`` holds in the validated ledger,
        ascending; empty for an account that does not exist."""
        return sorted(
            int(node["TicketSequence"])
            for node, _ in self._objects(account, AccountObjectType.TICKET, "Ticket")
        )

    def prepare_ticket_create(self, account: str, count: int) -> SignedSubmission:
        """Sign a TicketCreate of ``count`` tickets for ``account`` on its own Sequence.
        Account set-up, not a leg: ``purpose`` is None. Each ticket adds one owned object
        to the account's reserve. Raises ``ValueError`` for a count the ledger refuses
        (temINVALID_COUNT) or one that would pass 250 tickets (tecDIR_FULL)."""
        held = len(self.tickets(account))
        if not 1 <= count <= MAX_TICKETS_PER_ACCOUNT - held:
            raise ValueError(
                f"{account} holds {held} tickets; it can take 1 to "
                f"{MAX_TICKETS_PER_ACCOUNT - held} more, not {count}"
            )
        head = self._validated_head()
        tx = TicketCreate(
            account=account,
            ticket_count=count,
            sequence=self._next_sequence(account),
            fee=str(self._fee_drops(units=1)),
            last_ledger_sequence=head.index + self.ledger_window,
        )
        return self._signed(None, account, tx)

    # --- audit anchors ----------------------------------------------------------------

    def prepare_anchor(self, account: str, root: bytes) -> SignedSubmission:
        """Sign an AccountSet of ``account`` with no flags and one Memo: MemoType the hex
        of ``ANCHOR_MEMO_TYPE``, MemoData the root (uppercase hex). It changes nothing
        of the account but its Sequence; ``purpose`` None."""
        check_root(root)
        head = self._validated_head()
        tx = AccountSet(
            account=account,
            sequence=self._next_sequence(account),
            fee=str(self._fee_drops(units=1)),
            last_ledger_sequence=head.index + self.ledger_window,
            memos=[
                Memo(
                    memo_type=ANCHOR_MEMO_TYPE.encode().hex().upper(),
                    memo_data=root.hex().upper(),
                )
            ],
        )
        return self._signed(None, account, tx)

    def anchor_of(self, tx_hash: str) -> AnchorTx | None:
        """The transaction read as an anchor: its root is the MemoData of its first Memo
        whose MemoType is ``ANCHOR_MEMO_TYPE``, if the transaction is an AccountSet and
        the data is 32 bytes; None when the server does not know the hash."""
        found = self._rpc(Tx(transaction=tx_hash))
        if found.get("error") == "txnNotFound":
            return None
        if "error" in found:
            raise AdapterError(f"tx {tx_hash} answered {found['error']}")
        tx_json = found.get("tx_json", found)
        index = int(found.get("ledger_index", 0))
        validated = found.get("validated") is True
        return AnchorTx(
            tx_hash=str(found.get("hash", tx_hash)),
            account=str(tx_json.get("Account", "")),
            root=_anchor_memo(tx_json),
            ledger_index=index,
            ledger_hash=self._ledger_hash(found, index) if index and validated else "",
            validated=validated,
            successful=str(found.get("meta", {}).get("TransactionResult", "")) == "tesSUCCESS",
        )

    def anchor_history(self, account: str) -> list[AnchorTx]:
        """The anchoring AccountSets ``account`` sent, from its validated history."""
        found = []
        for item in self._history(account):
            tx_json = item.get("tx_json") or item.get("tx") or {}
            root = _anchor_memo(tx_json)
            result = str(item.get("meta", {}).get("TransactionResult", ""))
            if root is None or tx_json.get("Account") != account or result != "tesSUCCESS":
                continue
            found.append(
                AnchorTx(
                    tx_hash=str(item.get("hash") or tx_json.get("hash", "")),
                    account=account,
                    root=root,
                    ledger_index=int(item.get("ledger_index") or tx_json.get("ledger_index", 0)),
                    ledger_hash=str(item.get("ledger_hash", "")),
                    validated=item.get("validated") is True,
                    successful=True,
                )
            )
        return found[::-1]

    def prepare_lock(
        self,
        leg: Leg,
        terms: LockTerms,
        *,
        channel: str | None = None,
        kind: LockKind | None = None,
    ) -> SignedSubmission:
        """Sign the lock of ``leg``: the EscrowCreate of an ``ESCROW`` leg (``lock_ref``
        names the escrow: the sender and the transaction's Sequence or ticket), or the
        sender's Payment into the agent's account of a ``CUSTODY`` leg (``lock_ref``
        names that payment the same way). ``kind`` is the kind recorded for the leg
        when it was instructed; without it ``lock_kind`` decides now. Raises
        ``LegInvalid`` for an amount the ledger cannot hold, a T_cancel already passed
        in ledger time, or a token escrow the issuer no longer allows as checked
        (``check_escrowable``: a transfer fee set since the instruction)."""
        ticket = _ticket(channel, leg.sender)
        amount = self._ledger_amount(leg)
        cancel_after = ripple_seconds(terms.cancel_after)
        condition = _condition(terms.condition_hex)
        head = self._validated_head()
        if cancel_after <= head.close_time_ripple_s:
            raise LegInvalid(
                f"CancelAfter {cancel_after} has passed in ledger time ({head.close_time_ripple_s})"
            )
        kind = kind or self.lock_kind(leg)
        if kind is LockKind.ESCROW and isinstance(amount, IssuedCurrencyAmount):
            # a transfer fee set since the instruction check would be locked into the
            # escrow and taken out of what the receiver gets
            check_escrowable(leg, Issuer.of(self._account(amount.issuer, "issuer")))
        sequence = 0 if ticket is not None else self._next_sequence(leg.sender)
        # rippled names the escrow by the ticket when the EscrowCreate used one
        named_by = ticket if ticket is not None else sequence
        lock = LockRef(ChainName.XRPL, owner=leg.sender, sequence=named_by)
        if kind is LockKind.CUSTODY:
            payment = self._custody_lock(leg, amount, sequence, ticket, head)
            return self._signed(Purpose.LOCK, leg.sender, payment, lock_ref=lock, channel=channel)
        tx = EscrowCreate(
            account=leg.sender,
            destination=leg.receiver,
            amount=amount,
            condition=condition,
            cancel_after=cancel_after,
            sequence=sequence,
            ticket_sequence=ticket,
            fee=str(self._fee_drops(units=1)),
            last_ledger_sequence=head.index + self.ledger_window,
        )
        return self._signed(Purpose.LOCK, leg.sender, tx, lock_ref=lock, channel=channel)

    def _custody_lock(
        self,
        leg: Leg,
        amount: str | IssuedCurrencyAmount,
        sequence: int,
        ticket: int | None,
        head: _LedgerHead,
    ) -> Payment:
        """The sender's Payment into the agent's account. Through an issuer with a
        TransferRate it is a partial payment of SendMax = the amount, so the sender
        spends exactly the amount and the agent takes in the rest after the fee
        (DeliverMin: at least amount / rate, else tecPATH_PARTIAL and nothing moves)."""
        rate = self._transfer_rate(amount, leg.sender, self.agent)
        fee = str(self._fee_drops(units=1))
        last = head.index + self.ledger_window
        if rate == TRANSFER_RATE_PARITY:
            return Payment(
                account=leg.sender,
                destination=self.agent,
                amount=amount,
                sequence=sequence,
                ticket_sequence=ticket,
                fee=fee,
                last_ledger_sequence=last,
            )
        arrives = issued_amount(leg.asset, after_transfer_fee(leg.amount, rate))
        return Payment(
            account=leg.sender,
            destination=self.agent,
            amount=amount,
            send_max=amount,
            deliver_min=arrives,
            flags=PaymentFlag.TF_PARTIAL_PAYMENT,
            sequence=sequence,
            ticket_sequence=ticket,
            fee=fee,
            last_ledger_sequence=last,
        )

    def prepare_claim(
        self, leg: Leg, lock: LockRef, *, channel: str | None = None
    ) -> SignedSubmission:
        """The XRP Ledger has no lock the agent claims: a custody lock is held from the
        lock on, an escrow pays its receiver directly. Always raises ``ValueError``."""
        raise ValueError(
            "the XRP Ledger has no claimable locks: an escrow is finished, a custody "
            "lock is held from the lock on"
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
        """Sign the agent's EscrowFinish of ``lock`` with the fulfillment, paying the
        fulfillment surcharge rippled requires; or, ``held`` (a custody lock: the agent
        holds the funds), the agent's Payment of exactly the amount to the receiver.
        Through an issuer with a TransferRate that payment's SendMax is amount x rate
        (rounded up): the agent pays the fee out of its own tokens and the receiver
        gets exactly the amount, or nothing (tecPATH_PARTIAL) if the issuer raised its
        rate in between."""
        if held:
            return self._payout(leg, lock, Purpose.COMMIT, leg.receiver, channel)
        ticket = _ticket(channel, self.agent)
        sequence = _escrow_sequence(lock)
        try:
            condition = condition_of_fulfillment(fulfillment_hex)
        except ValueError as exc:
            raise LegInvalid(f"fulfillment: {exc}") from exc
        units = escrow_finish_fee_units(bytes.fromhex(fulfillment_hex))
        head = self._validated_head()
        tx = EscrowFinish(
            account=self.agent,
            owner=lock.owner,
            offer_sequence=sequence,
            condition=condition,
            fulfillment=fulfillment_hex.upper(),
            sequence=0 if ticket is not None else self._next_sequence(self.agent),
            ticket_sequence=ticket,
            fee=str(self._fee_drops(units=units)),
            last_ledger_sequence=head.index + self.ledger_window,
        )
        return self._signed(Purpose.COMMIT, self.agent, tx, channel=channel)

    def prepare_unwind(
        self, leg: Leg, lock: LockRef, *, held: bool = False, channel: str | None = None
    ) -> SignedSubmission:
        """Sign the agent's EscrowCancel of ``lock``. It applies only once a validated
        ledger's close time is past CancelAfter; before that the ledger answers
        tecNO_PERMISSION (fee spent), so the engine waits for T_cancel first. ``held``
        (a custody lock): the agent's Payment of exactly the amount back to the sender,
        at any time, the agent paying any transfer fee as for a commit."""
        if held:
            return self._payout(leg, lock, Purpose.UNWIND, leg.sender, channel)
        ticket = _ticket(channel, self.agent)
        sequence = _escrow_sequence(lock)
        head = self._validated_head()
        tx = EscrowCancel(
            account=self.agent,
            owner=lock.owner,
            offer_sequence=sequence,
            sequence=0 if ticket is not None else self._next_sequence(self.agent),
            ticket_sequence=ticket,
            fee=str(self._fee_drops(units=1)),
            last_ledger_sequence=head.index + self.ledger_window,
        )
        return self._signed(Purpose.UNWIND, self.agent, tx, channel=channel)

    def _payout(
        self, leg: Leg, lock: LockRef, purpose: Purpose, to: str, channel: str | None
    ) -> SignedSubmission:
        """The agent's Payment of exactly the leg's amount to ``to``, SendMax covering
        the issuer's transfer fee (read now: the rate when it is signed)."""
        if lock.chain is not ChainName.XRPL:
            raise LegInvalid(f"{lock} is not an XRPL lock")
        ticket = _ticket(channel, self.agent)
        amount = self._ledger_amount(leg)
        rate = self._transfer_rate(amount, self.agent, to)
        send_max = None
        if rate != TRANSFER_RATE_PARITY:
            send_max = issued_amount(leg.asset, with_transfer_fee(leg.amount, rate))
        head = self._validated_head()
        tx = Payment(
            account=self.agent,
            destination=to,
            amount=amount,
            send_max=send_max,
            sequence=0 if ticket is not None else self._next_sequence(self.agent),
            ticket_sequence=ticket,
            fee=str(self._fee_drops(units=1)),
            last_ledger_sequence=head.index + self.ledger_window,
        )
        return self._signed(purpose, self.agent, tx, channel=channel)

    def _transfer_rate(self, amount: str | IssuedCurrencyAmount, source: str, to: str) -> int:
        """The rate at which a payment of ``amount`` from ``source`` to ``to`` pays a
        transfer fee: the issuer's, when the token goes from one holder to another
        through it; parity for XRP and for a payment from or to the issuer itself."""
        if isinstance(amount, str) or amount.issuer in (source, to):
            return TRANSFER_RATE_PARITY
        return transfer_rate(self._account(amount.issuer, "issuer"))

    # --- submission -----------------------------------------------------------------

    def submit(self, submission: SignedSubmission) -> Outcome:
        """Send the signed blob (again, if need be: the ledger never applies it twice).
        A lost answer is ``Pending`` and an unreachable server ``Unavailable``; a blob the
        ledger already holds (tefPAST_SEQ, tefALREADY, tefMAX_LEDGER) is read back by
        hash, so resending an applied or expired transaction answers its final status.

        Sent once, not retried: the engine polls ``status`` and sends again itself."""
        try:
            answer = self._guard.call_once(self._rpc_once, SubmitOnly(tx_blob=submission.blob))
        except BreakerOpen as exc:
            return Unavailable(str(exc), breaker_open=True)
        except _MaybeDelivered as exc:
            return Pending(submission.tx_hash, f"outcome unknown: {exc}")
        except TransportError as exc:
            return Unavailable(str(exc))
        if "engine_result" not in answer:
            error = str(answer.get("error", "no engine_result"))
            if error == "invalidTransaction":  # a bad signature or encoding: never applies
                detail = str(answer.get("error_exception", ""))
                return Rejected(submission.tx_hash, error, applied=False, detail=detail)
            return Unavailable(f"submit answered {error}")
        server_hash = answer.get("tx_json", {}).get("hash")
        # The engine polls by the hash it computed; if the ledger's differed, the
        # transaction could apply unseen and look expired. That is a bug, not an outcome.
        assert server_hash in (None, submission.tx_hash), (server_hash, submission.tx_hash)
        code = str(answer["engine_result"])
        if code in MAYBE_APPLIED:
            return self.status(submission)
        outcome = submit_outcome(code, submission.tx_hash)
        if isinstance(outcome, Pending):
            return replace(outcome, look_again_s=self._look_again_s())
        return outcome

    def status(self, submission: SignedSubmission) -> Outcome:
        """Where the submission stands: final once a validated ledger holds it or has
        passed its LastLedgerSequence without it."""
        try:
            return self._status(submission)
        except BreakerOpen as exc:
            return Unavailable(str(exc), breaker_open=True)
        except TransportError as exc:
            return Unavailable(str(exc))

    def _status(self, submission: SignedSubmission) -> Outcome:
        """One ``tx`` answer decides, so it comes from one server's view: behind a load
        balancer, a lookup from a lagging server put together with a ledger range from
        a fresh one would make an applied transaction look expired.

        The request names the ledgers the transaction could have entered (from the
        validated ledger it was signed after to its LastLedgerSequence). ``Expired``
        only if the answer is txnNotFound with ``searched_all``: rippled sets it only
        when the server holds every one of those ledgers as validated, so the last
        ledger the transaction could enter is validated without it. Otherwise, found in
        no validated ledger, it is ``Pending``."""
        assert submission.expires_ledger is not None, "an XRPL submission has an expiry"
        last = submission.expires_ledger
        first = max(1, last - self.ledger_window)
        found = self._rpc(Tx(transaction=submission.tx_hash, min_ledger=first, max_ledger=last))
        if found.get("validated") is True:
            index = int(found["ledger_index"])
            return ledger_outcome(
                str(found["meta"]["TransactionResult"]),
                submission.tx_hash,
                index,
                self._ledger_hash(found, index),
            )
        error = found.get("error")
        if error == "txnNotFound" and found.get("searched_all") is True:
            return Expired(
                submission.tx_hash,
                f"in none of ledgers {first}..{last} (LastLedgerSequence), every one of "
                "them validated on the server that answered",
            )
        # Not final. The validated head only paces the next look; it decides nothing.
        head = self._validated_head()
        if error is None:  # in its open ledger or one not yet validated
            detail = f"not validated yet (ledger {head.index})"
        elif error == "txnNotFound":
            detail = (
                f"in no validated ledger of {first}..{last} the server holds (ledger {head.index})"
            )
        else:
            detail = f"tx answered {error} (ledger {head.index})"
        return Pending(
            submission.tx_hash, detail, held=error is None, look_again_s=self._look_again_s()
        )

    def lookup(self, tx_hash: str) -> LedgerTx | None:
        """The transaction as the server holds it, or None if unknown. Raises
        ``TransportError`` (``BreakerOpen``) if the server cannot be asked.

        ``extra`` holds the result code and the transaction type and, for a validated
        successful Payment, EscrowFinish or EscrowCancel, what it delivered, read from
        the same answer (``_delivered_of``). Nothing is said of a transaction whose
        answer does not state it."""
        found = self._rpc(Tx(transaction=tx_hash))
        if found.get("error") == "txnNotFound":
            return None
        if "error" in found:
            raise AdapterError(f"tx {tx_hash} answered {found['error']}")
        code = str(found.get("meta", {}).get("TransactionResult", ""))
        tx_json = found.get("tx_json", {})
        index = int(found.get("ledger_index", 0))
        return LedgerTx(
            tx_hash=str(found.get("hash", tx_hash)),
            ledger_index=index,
            ledger_hash=self._ledger_hash(found, index) if index else "",
            validated=found.get("validated") is True,
            successful=code == "tesSUCCESS",
            extra={"result": code, "type": str(tx_json.get("TransactionType", ""))}
            | _delivered_of(found),
        )

    # --- locks as the ledger holds them ------------------------------------------------

    def lock_state(self, lock: LockRef) -> LockState | Unavailable:
        """The escrow ``lock`` names (owner + EscrowCreate sequence) in the validated
        ledger, or ``LockState.absent`` once it is finished or cancelled.

        A custody lock leaves no object on the ledger: its funds are part of the
        agent's balance, and its ``LockRef`` names the lock payment's sequence (or
        ticket), which no escrow of the sender can have. It therefore always reads
        ``absent``; whether it is held is the engine's record of the lock payment, and
        reconciliation compares the agent's balance with the custody legs it holds."""
        sequence = _escrow_sequence(lock)
        key = escrow_index(lock.owner, sequence)
        try:
            answer = self._rpc(LedgerEntry(index=key, ledger_index="validated"))
        except BreakerOpen as exc:
            return Unavailable(str(exc), breaker_open=True)
        except TransportError as exc:
            return Unavailable(str(exc))
        index = int(answer["ledger_index"]) if "ledger_index" in answer else None
        if answer.get("error") == "entryNotFound":
            return LockState.absent(lock, key=key, ledger_index=index)
        if "error" in answer:
            raise AdapterError(f"ledger_entry escrow {key} answered {answer['error']}")
        node: dict[str, Any] = answer["node"]
        if node.get("LedgerEntryType") != "Escrow" or node.get("Account") != lock.owner:
            raise AdapterError(f"ledger entry {key} is not an escrow of {lock.owner}: {node}")
        return _escrow_state(lock, node, index)

    def lock_release(self, lock: LockRef) -> Released | Unavailable | None:
        """The validated EscrowFinish (funds ``to`` the destination) or EscrowCancel
        (``to`` the owner) that removed the escrow ``lock`` names, whoever sent it; None
        while the validated ledger holds the escrow, or while the removal is not found.

        ``Released`` is concluded from one ``account_tx`` entry alone: a validated,
        successful transaction naming the escrow whose metadata deletes it. "Absent"
        (``ledger_entry``) and "no removal in the history" (``account_tx``) come from two
        requests, perhaps two servers, one lagging: together they conclude nothing but
        "not found yet" (None), and the caller asks again. The owner's history is read
        newest first, page by page, down to the transaction that used the lock's
        sequence (the EscrowCreate): nothing older can have removed it. A custody lock
        (no escrow; the agent holds the funds) is therefore always None. A transport
        failure, an open breaker or an answer that says nothing is ``Unavailable``."""
        sequence = _escrow_sequence(lock)
        try:
            return self._lock_release(lock, sequence)
        except BreakerOpen as exc:
            return Unavailable(str(exc), breaker_open=True)
        except AdapterError as exc:
            return Unavailable(str(exc))

    def _lock_release(self, lock: LockRef, sequence: int) -> Released | None:
        key = escrow_index(lock.owner, sequence)
        answer = self._rpc(LedgerEntry(index=key, ledger_index="validated"))
        if "error" not in answer:
            return None  # the escrow is still there
        if answer["error"] != "entryNotFound":
            raise AdapterError(f"ledger_entry escrow {key} answered {answer['error']}")
        for entry in self._history(lock.owner):
            removal = escrow_removal(entry, lock.owner, sequence, key)
            if removal is not None:
                ledger_hash = removal.ledger_hash or self._ledger_hash({}, removal.ledger_index)
                return Released(
                    lock=lock,
                    to=removal.to,
                    tx_hash=removal.tx_hash,
                    ledger_index=removal.ledger_index,
                    ledger_hash=ledger_hash,
                    delivered=removal.delivered,
                )
            if spends_sequence(entry, lock.owner, sequence):
                return None
        return None

    def _history(self, account: str) -> Iterator[dict[str, Any]]:
        """``account``'s transactions in validated ledgers, newest first, a page per
        request (the marker carries on where the last page stopped)."""
        marker: Any = None
        while True:
            answer = self._rpc(
                AccountTx(
                    account=account,
                    ledger_index_min=-1,
                    ledger_index_max=-1,
                    forward=False,
                    limit=HISTORY_PAGE,
                    marker=marker,
                )
            )
            if "error" in answer:
                raise AdapterError(f"account_tx {account} answered {answer['error']}")
            yield from answer.get("transactions", [])
            marker = answer.get("marker")
            if marker is None:
                return

    def locks_of(self, account: str) -> list[LockState] | Unavailable:
        """Every escrow in ``account``'s owner directory in the validated ledger (those
        it owns and those it receives). The escrow object does not keep its creating
        Sequence; it is read from the EscrowCreate the object names (PreviousTxnID)
        and checked against the object's index, else left None."""
        try:
            return self._locks_of(account)
        except BreakerOpen as exc:
            return Unavailable(str(exc), breaker_open=True)
        except TransportError as exc:
            return Unavailable(str(exc))

    def balance(self, account: str, asset: Asset) -> Decimal:
        """XRP: the AccountRoot's Balance in the validated ledger (reserve included),
        drops as XRP. A token: the balance of ``account``'s trust line to the issuer
        (``account_lines`` filtered by the issuer as peer), 0 with no such line; an
        escrowed amount is not on the line. ``AccountNotFound`` when rippled answers
        ``actNotFound`` (or ``actMalformed``: no account can have that address)."""
        if asset.is_native:
            answer = self._rpc(AccountInfo(account=account, ledger_index="validated"))
            _account_answer(answer, account, "account_info")
            return Decimal(int(answer["account_data"]["Balance"])) / DROPS_PER_XRP
        code = currency_code(asset.code)
        answer = self._rpc(
            AccountLines(account=account, peer=asset.issuer, ledger_index="validated")
        )
        _account_answer(answer, account, "account_lines")
        # one line per (account, issuer, currency); several answers would be a bug of
        # the server, and summing them would hide it
        found = [line for line in answer.get("lines", []) if line["currency"] == code]
        if len(found) > 1:
            raise AdapterError(f"account_lines {account} answered {len(found)} {code} lines")
        return Decimal(str(found[0]["balance"])) if found else Decimal(0)

    def ledger_time(self) -> datetime | Unavailable:
        """The close time of the latest validated ledger (``ledger`` method). rippled
        judges CancelAfter / FinishAfter against the parent ledger's close time, which
        for the next ledger is exactly this one's. A server that cannot answer, or
        answers with an error, is ``Unavailable``. Read afresh, not from the head the
        adapter's threads share: a deadline is judged on it, and a server that cannot be
        asked now must say so now."""
        try:
            head = self._head.observe(self._read_validated_head())
        except BreakerOpen as exc:
            return Unavailable(str(exc), breaker_open=True)
        except AdapterError as exc:
            return Unavailable(str(exc))
        return RIPPLE_EPOCH + timedelta(seconds=head.close_time_ripple_s)

    def _locks_of(self, account: str) -> list[LockState]:
        found: list[LockState] = []
        for node, index in self._objects(account, AccountObjectType.ESCROW, "Escrow"):
            owner = str(node["Account"])
            sequence = self._escrow_create_sequence(owner, node)
            lock = LockRef(ChainName.XRPL, owner=owner, sequence=sequence)
            found.append(_escrow_state(lock, node, index))
        return found

    def _objects(
        self, account: str, kind: AccountObjectType, entry_type: str
    ) -> Iterator[tuple[dict[str, Any], int | None]]:
        """Every ``entry_type`` object in ``account``'s owner directory in the validated
        ledger, page by page, each with the ledger index read; none for an account that
        does not exist."""
        marker: Any = None
        while True:
            answer = self._rpc(
                AccountObjects(
                    account=account,
                    type=kind,
                    ledger_index="validated",
                    limit=400,
                    marker=marker,
                )
            )
            if answer.get("error") == "actNotFound":
                return
            if "error" in answer:
                raise AdapterError(f"account_objects {account} answered {answer['error']}")
            index = int(answer["ledger_index"]) if "ledger_index" in answer else None
            for node in answer.get("account_objects", []):
                if node.get("LedgerEntryType") == entry_type:
                    yield node, index
            marker = answer.get("marker")
            if marker is None:
                return

    def _escrow_create_sequence(self, owner: str, node: dict[str, Any]) -> int | None:
        previous = node.get("PreviousTxnID")
        if not previous:
            return None
        found = self._rpc(Tx(transaction=str(previous)))
        tx_json = found.get("tx_json", {})
        if "error" in found or tx_json.get("TransactionType") != "EscrowCreate":
            return None
        sequence = int(tx_json.get("Sequence") or tx_json.get("TicketSequence") or 0)
        if sequence and escrow_index(owner, sequence) == str(node.get("index", "")).upper():
            return sequence
        return None

    # --- building and signing ---------------------------------------------------------

    def _ledger_amount(self, leg: Leg) -> str | IssuedCurrencyAmount:
        if leg.chain is not ChainName.XRPL:
            raise LegInvalid(f"leg is on {leg.chain}, not the XRP Ledger")
        for role, address in (("sender", leg.sender), ("receiver", leg.receiver)):
            if not is_valid_classic_address(address):
                raise LegInvalid(f"{role} {address!r} is not an XRP Ledger address")
        if leg.asset.is_native:
            if leg.asset.code != "XRP":
                raise LegInvalid(f"the native asset is XRP, not {leg.asset.code}")
            return str(xrp_to_drops(leg.amount))
        assert leg.asset.issuer is not None
        if not is_valid_classic_address(leg.asset.issuer):
            raise LegInvalid(f"issuer {leg.asset.issuer!r} is not an XRP Ledger address")
        token_value(leg.amount)
        return issued_amount(leg.asset, leg.amount)

    def _signed(
        self,
        purpose: Purpose | None,
        account: str,
        tx: Transaction,
        lock_ref: LockRef | None = None,
        channel: str | None = None,
    ) -> SignedSubmission:
        """Sign ``tx`` for ``account`` through the Signer port and hash it locally."""
        public_key = self._signer.xrpl_public_key(account)
        if derive_classic_address(public_key) != account:
            raise SigningUnavailable(f"the key held for {account} is not its master key")
        fields = tx.to_xrpl() | {"SigningPubKey": public_key}
        message = bytes.fromhex(encode_for_signing(fields))
        signature = self._signer.sign_xrpl(account, message)
        if not signature_verifies(message, signature, public_key):
            raise SigningUnavailable(f"the signer's signature for {account} does not verify")
        fields["TxnSignature"] = signature.hex().upper()
        assert tx.last_ledger_sequence is not None
        blob = encode(fields)
        return SignedSubmission(
            chain=ChainName.XRPL,
            purpose=purpose,
            # what xrpl-py's Transaction.get_hash computes, from the blob already encoded
            # (rebuilding the model to ask it would validate and encode it all again)
            tx_hash=transaction_hash(blob),
            blob=blob,
            expires_ledger=tx.last_ledger_sequence,
            lock_ref=lock_ref,
            channel=channel,
        )

    def _fee_drops(self, units: int) -> int:
        """``units`` reference fees at the open ledger's current level, within the cap;
        never below the reference fee (less is refused: telINSUF_FEE_P)."""
        drops = self._fees.get()
        reference = int(drops["base_fee"])
        per_unit = max(reference, min(int(drops["open_ledger_fee"]), self._max_fee_drops_per_unit))
        return per_unit * units

    # --- reading the ledger -----------------------------------------------------------

    def _rpc(self, request: Request) -> dict[str, Any]:
        """One JSON-RPC call through the guard: the ``result`` object (which may hold an
        ``error`` the caller reads). Raises ``TransportError`` / ``BreakerOpen``."""
        return self._guard.call(self._rpc_once, request)

    def close(self) -> None:
        self._http.close()

    def _rpc_once(self, request: Request) -> dict[str, Any]:
        with _transport(self.url):
            answer = self._http.post(self.url, json=request_to_json_rpc(request))
            try:
                body = answer.json()
            except ValueError as exc:  # not JSON: an HTTP error page, a proxy's answer
                raise XRPLRequestFailureException(
                    {"error": answer.status_code, "error_message": answer.text[:200]}
                ) from exc
            result = body.get("result") if isinstance(body, dict) else None
            if not isinstance(result, dict) or "status" not in result:
                raise XRPLRequestFailureException(
                    {"error": answer.status_code, "error_message": "no JSON-RPC result"}
                )
            # what xrpl-py's json_to_response keeps of it (the result, without its
            # status), without building and validating a Response model per call
            del result["status"]
        if result.get("error") in _NOT_READY:
            raise TransportError(f"XRPL server {self.url} not ready: {result['error']}")
        return result

    def _account(self, address: str, role: str) -> dict[str, Any]:
        answer = self._rpc(AccountInfo(account=address, ledger_index="validated"))
        if answer.get("error") == "actNotFound":
            raise LegInvalid(f"{role} {address} does not exist on the XRP Ledger")
        if "error" in answer:
            raise AdapterError(f"account_info {address} answered {answer['error']}")
        data: dict[str, Any] = answer["account_data"]
        return data

    def _next_sequence(self, address: str) -> int:
        # "current" counts transactions already in the open ledger. Two preparations
        # racing for one account get the same Sequence: at most one can ever apply, the
        # other ends tefPAST_SEQ and expires. Never a double application.
        answer = self._rpc(AccountInfo(account=address, ledger_index="current"))
        if "error" in answer:
            raise LegInvalid(f"{address} cannot sign: account_info answered {answer['error']}")
        return int(answer["account_data"]["Sequence"])

    def _check_spendable_xrp(self, sender: dict[str, Any], amount_drops: int) -> None:
        ledger = self._rpc(ServerState())["state"]["validated_ledger"]
        # the escrow itself adds one owned object to the sender's reserve
        reserve = int(ledger["reserve_base"]) + int(ledger["reserve_inc"]) * (
            int(sender.get("OwnerCount", 0)) + 1
        )
        spendable = int(sender["Balance"]) - reserve - int(ledger["base_fee"])
        if spendable < amount_drops:
            raise LegInvalid(
                f"sender {sender['Account']} can spend {spendable} drops above its reserve, "
                f"less than {amount_drops}"
            )

    def _line(self, holder: str, amount: IssuedCurrencyAmount) -> Line | None:
        """``holder``'s trust line for ``amount``'s token in the validated ledger."""
        answer = self._rpc(
            AccountLines(account=holder, peer=amount.issuer, ledger_index="validated")
        )
        if "error" in answer:
            raise AdapterError(f"account_lines {holder} answered {answer['error']}")
        for line in answer["lines"]:
            if line["currency"] == amount.currency:
                return Line.of(holder, line)
        return None

    def _validated_head(self) -> _LedgerHead:
        """The latest validated ledger, as read within ``head_fresh_s`` (adapters.cadence:
        every caller compares it with what it reads afterwards, so an older one is
        sound). Raises ``TransportError`` / ``AdapterError``."""
        return self._head.get()

    def _look_again_s(self) -> float | None:
        return self._head.next_ledger_in_s()

    def _read_fees(self) -> dict[str, Any]:
        answer = self._rpc(_FEE)
        drops: dict[str, Any] = answer["drops"]
        return drops | {"ledger_current_index": int(answer.get("ledger_current_index", 0))}

    def _read_validated_head(self) -> _LedgerHead:
        answer = self._rpc(_VALIDATED_LEDGER)
        if "error" in answer:
            raise AdapterError(f"ledger answered {answer['error']}")
        return _LedgerHead(
            index=int(answer["ledger_index"]),
            hash=str(answer["ledger_hash"]),
            close_time_ripple_s=int(answer["ledger"]["close_time"]),
        )

    def _ledger_hash(self, found: dict[str, Any], index: int) -> str:
        """The hash of the ledger holding ``found`` (a ``tx`` answer): API v2 states it;
        otherwise it is read from that ledger's header."""
        if "ledger_hash" in found:
            return str(found["ledger_hash"])
        answer = self._rpc(Ledger(ledger_index=index))
        if "error" in answer:
            raise AdapterError(f"ledger {index} answered {answer['error']}")
        return str(answer["ledger_hash"])


def _delivered_of(found: Mapping[str, Any]) -> dict[str, str]:
    """What a validated, successful transaction delivered, as one ``tx`` answer (API
    v2) states it: ``delivered`` (a decimal string, in XRP or the token's units),
    ``delivered_to`` and ``delivered_asset`` (``CODE:ISSUER``, or ``native`` for XRP).
    Empty when the answer does not state it: any other transaction type, a result not
    final or not a success, an answer without the figure.

    A Payment's is rippled's ``delivered_amount``: what reached the destination, which
    is neither the SendMax its sender was ready to spend (a transfer fee comes out of
    that) nor, for a partial payment, its Amount. An escrow has no
    ``delivered_amount``: an EscrowFinish or EscrowCancel delivers the escrow the
    metadata deletes, to its destination or its owner, and how much arrived is read as
    ``lock_release`` reads it (``releases.escrow_removal``: an XRP escrow's amount, a
    token's change on the payee's trust line after the transfer fee)."""
    tx, meta = found.get("tx_json"), found.get("meta")
    if not isinstance(tx, Mapping) or not isinstance(meta, Mapping):
        return {}
    if found.get("validated") is not True or meta.get("TransactionResult") != "tesSUCCESS":
        return {}
    kind = tx.get("TransactionType")
    if kind == "Payment":
        amount = meta.get("delivered_amount")
        asset = _asset_text(amount)
        to = tx.get("Destination")
        if asset is None or not isinstance(to, str):
            return {}  # "unavailable": a ledger from before rippled kept the figure
        delivered = _amount_value(amount)
    elif kind in ("EscrowFinish", "EscrowCancel"):
        owner, sequence = tx.get("Owner"), tx.get("OfferSequence")
        if not isinstance(owner, str) or not isinstance(sequence, int):
            return {}
        key = escrow_index(owner, sequence)
        removal = escrow_removal(found, owner, sequence, key)
        asset = _asset_text(_deleted_escrow_amount(meta, key))
        if removal is None or removal.delivered is None or asset is None:
            return {}
        delivered, to = removal.delivered, removal.to
    else:
        return {}
    return {"delivered": format(delivered, "f"), "delivered_to": to, "delivered_asset": asset}


def _asset_text(amount: object) -> str | None:
    """``native`` for XRP (a string of drops), ``CODE:ISSUER`` for a token amount, with
    the code as the engine names it; None for anything else (``unavailable``)."""
    if isinstance(amount, str):
        return "native" if amount.isdigit() else None
    if isinstance(amount, Mapping) and {"currency", "issuer", "value"} <= amount.keys():
        return f"{_currency_name(str(amount['currency']))}:{amount['issuer']}"
    return None


def _amount_value(amount: object) -> Decimal:
    """An amount ``_asset_text`` named: drops as XRP, a token's value as written."""
    if isinstance(amount, str):
        return Decimal(amount) / DROPS_PER_XRP
    assert isinstance(amount, Mapping)
    return Decimal(str(amount["value"]))


def _deleted_escrow_amount(meta: Mapping[str, Any], key: str) -> object:
    """The Amount of escrow ``key`` as ``meta`` deletes it, or None."""
    for affected in meta.get("AffectedNodes", []):
        node = affected.get("DeletedNode") if isinstance(affected, Mapping) else None
        if (
            isinstance(node, Mapping)
            and node.get("LedgerEntryType") == "Escrow"
            and str(node.get("LedgerIndex", "")).upper() == key
        ):
            return node.get("FinalFields", {}).get("Amount")
    return None


def _custody_flows(leg: Leg, agent: str, rate: int) -> tuple[Decimal, Decimal]:
    """What a custody lock of ``leg`` brings into the agent's account, and the most
    its payout (to the receiver, or back to the sender) can cost it, at ``rate``."""
    issuer = leg.asset.issuer

    def through_issuer(source: str, to: str) -> bool:
        return rate != TRANSFER_RATE_PARITY and issuer not in (source, to)

    received = (
        after_transfer_fee(leg.amount, rate) if through_issuer(leg.sender, agent) else leg.amount
    )
    spent = max(
        with_transfer_fee(leg.amount, rate) if through_issuer(agent, to) else leg.amount
        for to in (leg.receiver, leg.sender)
    )
    return received, spent


def _anchor_memo(tx_json: Mapping[str, Any]) -> bytes | None:
    """The root an AccountSet carries in its anchor Memo; None for anything else."""
    if tx_json.get("TransactionType") != "AccountSet":
        return None
    wanted = ANCHOR_MEMO_TYPE.encode().hex().upper()
    for wrapper in tx_json.get("Memos") or []:
        memo = wrapper.get("Memo", {}) if isinstance(wrapper, Mapping) else {}
        if str(memo.get("MemoType", "")).upper() != wanted:
            continue
        try:
            data = bytes.fromhex(str(memo.get("MemoData", "")))
        except ValueError:
            return None
        return data if len(data) == 32 else None
    return None


def _feature_enabled(answer: dict[str, Any], name: str) -> bool:
    """``enabled`` of amendment ``name`` in a ``feature`` answer (``{id: {name,
    enabled, ...}}``). Raises ``AdapterError`` if the answer does not list it."""
    for entry in answer.values():
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry.get("enabled") is True
    raise AdapterError(f"feature {name} answered without it: {answer}")


def _ticket(channel: str | None, signer: str) -> int | None:
    """The TicketSequence a channel ``ACCOUNT:TICKET`` names, which must be ``signer``'s;
    None for no channel. Raises ``ValueError`` for any other channel."""
    if channel is None:
        return None
    account, _, number = channel.partition(":")
    if account != signer or not number.isdigit() or int(number) < 1:
        raise ValueError(f"channel {channel!r} is not a ticket of {signer}")
    return int(number)


def escrow_index(owner: str, sequence: int) -> str:
    """The ledger index of the escrow ``owner`` created with ``sequence``: SHA-512Half
    of the escrow space key ``u`` (0x0075), the owner's AccountID and the sequence."""
    preimage = b"\x00\x75" + decode_classic_address(owner) + sequence.to_bytes(4, "big")
    return hashlib.sha512(preimage).digest()[:32].hex().upper()


def _currency_name(code: str) -> str:
    """A ledger currency code as the engine names it: 40-hex codes that spell a
    printable ASCII name (how longer names are written) become that name."""
    if len(code) != 40:
        return code
    try:
        text = bytes.fromhex(code).rstrip(b"\x00").decode("ascii")
    except (ValueError, UnicodeDecodeError):
        return code.upper()
    if 3 < len(text) <= 20 and all(c in string.printable and not c.isspace() for c in text):
        return text
    return code.upper()


def _account_answer(answer: Mapping[str, Any], account: str, method: str) -> None:
    """Raise for an ``answer`` that is an error: ``AccountNotFound`` for an account the
    validated ledger does not hold, ``AdapterError`` for any other."""
    error = answer.get("error")
    if error in ("actNotFound", "actMalformed"):
        raise AccountNotFound(f"{account} does not exist on the XRP Ledger ({error})")
    if error is not None:
        raise AdapterError(f"{method} {account} answered {error}")


def _escrow_state(lock: LockRef, node: dict[str, Any], ledger_index: int | None) -> LockState:
    raw = node["Amount"]
    if isinstance(raw, str):
        asset = Asset("XRP")
        amount = Decimal(raw) / 1_000_000
    else:
        asset = Asset(_currency_name(str(raw["currency"])), str(raw["issuer"]))
        amount = Decimal(str(raw["value"]))
    cancel_after = node.get("CancelAfter")
    return LockState(
        lock=lock,
        exists=True,
        key=str(node.get("index", "")).upper() or escrow_index(lock.owner, lock.sequence or 0),
        asset=asset,
        amount=amount,
        sender=str(node["Account"]),
        receiver=str(node["Destination"]),
        cancel_after=(
            None if cancel_after is None else RIPPLE_EPOCH + timedelta(seconds=int(cancel_after))
        ),
        condition_hex=str(node["Condition"]).upper() if "Condition" in node else None,
        ledger_index=ledger_index,
    )


def _condition(condition_hex: str) -> str:
    try:
        blob = bytes.fromhex(condition_hex)
    except ValueError as exc:
        raise LegInvalid(f"condition is not hex: {exc}") from exc
    if len(blob) != 39 or blob[:4] != bytes.fromhex("A0258020") or blob[36:38] != b"\x81\x01":
        raise LegInvalid("condition is not a PREIMAGE-SHA-256 condition")
    return blob.hex().upper()


def _escrow_sequence(lock: LockRef) -> int:
    if lock.chain is not ChainName.XRPL or lock.sequence is None:
        raise LegInvalid(f"{lock} does not name an XRPL escrow")
    return lock.sequence
