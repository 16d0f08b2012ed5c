"""Who took an escrow off the ledger: reading its removal from one validated transaction.

An escrow leaves the ledger by a successful EscrowFinish (its destination is paid) or
EscrowCancel (its owner is paid back), sent by anyone: the receiver may finish it with
the fulfillment once that is public, anyone may cancel it after CancelAfter. The
transaction that did it names the escrow (Owner, OfferSequence) and its metadata holds
the escrow as a deleted node, with its final fields (Account, Destination, Amount).

What arrived is read from the same metadata. An XRP escrow pays its whole amount. A
token escrow pays its destination the amount less the transfer fee locked in at create
time, and its owner everything on a cancel; rippled's metadata states no
``delivered_amount`` for escrows, so the receiving trust line's change is what arrived.

Every function here reads one ``account_tx`` entry (API v2: ``tx_json``, ``meta``,
``hash``, ``ledger_index``, ``ledger_hash``; v1's ``tx`` is read too): a conclusion
never combines answers of different requests, which could come from different servers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from adapters.xrpl.amounts import DROPS_PER_XRP

_REMOVERS: Final = frozenset({"EscrowFinish", "EscrowCancel"})


@dataclass(frozen=True)
class EscrowRemoval:
    """The validated transaction that removed an escrow, and where the funds went."""

    tx_hash: str
    ledger_index: int
    #: the ledger's hash, when the entry states it (API v2)
    ledger_hash: str | None
    #: the escrow's destination (finished) or owner (cancelled)
    to: str
    delivered: Decimal | None


def escrow_removal(
    entry: Mapping[str, Any], owner: str, sequence: int, key: str
) -> EscrowRemoval | None:
    """The removal of escrow ``key`` (``owner``'s, created with ``sequence``) that
    ``entry`` records, or None if it records none: it must be validated, successful,
    an EscrowFinish or EscrowCancel naming the escrow, and delete it."""
    tx = _tx_of(entry)
    meta = entry.get("meta")
    if entry.get("validated") is not True or not isinstance(meta, Mapping):
        return None
    if tx.get("TransactionType") not in _REMOVERS or meta.get("TransactionResult") != "tesSUCCESS":
        return None
    if tx.get("Owner") != owner or tx.get("OfferSequence") != sequence:
        return None
    escrow = _node(meta, "DeletedNode", key)
    if escrow is None:
        return None
    final = escrow.get("FinalFields", {})
    finished = tx["TransactionType"] == "EscrowFinish"
    to = str(final["Destination"] if finished else final["Account"])
    ledger_hash = entry.get("ledger_hash") or tx.get("ledger_hash")
    return EscrowRemoval(
        tx_hash=str(entry.get("hash") or tx["hash"]),
        ledger_index=int(entry.get("ledger_index") or tx["ledger_index"]),
        ledger_hash=str(ledger_hash) if ledger_hash else None,
        to=to,
        delivered=_arrived(meta, final.get("Amount"), to),
    )


def spends_sequence(entry: Mapping[str, Any], owner: str, sequence: int) -> bool:
    """Whether ``entry`` is the validated transaction of ``owner`` that used
    ``sequence`` (its Sequence, or its TicketSequence): the EscrowCreate of the escrow
    named by it, or a custody lock's payment. In a history read newest first, nothing
    older can have removed the escrow."""
    tx = _tx_of(entry)
    return (
        entry.get("validated") is True
        and tx.get("Account") == owner
        and sequence in (tx.get("Sequence"), tx.get("TicketSequence"))
    )


def _tx_of(entry: Mapping[str, Any]) -> Mapping[str, Any]:
    tx = entry.get("tx_json") or entry.get("tx") or {}
    return tx if isinstance(tx, Mapping) else {}


def _node(meta: Mapping[str, Any], change: str, key: str) -> Mapping[str, Any] | None:
    for affected in meta.get("AffectedNodes", []):
        node = affected.get(change)
        if (
            isinstance(node, Mapping)
            and node.get("LedgerEntryType") == "Escrow"
            and str(node.get("LedgerIndex", "")).upper() == key
        ):
            return node
    return None


def _arrived(meta: Mapping[str, Any], amount: object, to: str) -> Decimal | None:
    """What the escrow's release paid ``to``: an XRP escrow's amount; for a token the
    change of ``to``'s trust line in ``meta``, or the amount itself when ``to`` is the
    issuer (redeemed: no line moves); None when the metadata does not say."""
    if isinstance(amount, str):
        return Decimal(amount) / DROPS_PER_XRP
    if not isinstance(amount, Mapping):
        return None
    issuer, currency = str(amount["issuer"]), str(amount["currency"])
    if to == issuer:
        return Decimal(str(amount["value"]))
    for affected in meta.get("AffectedNodes", []):
        change, node = next(iter(affected.items()))
        if node.get("LedgerEntryType") != "RippleState" or change == "DeletedNode":
            continue
        after = node.get("FinalFields") or node.get("NewFields") or {}
        low, high = after["LowLimit"]["issuer"], after["HighLimit"]["issuer"]
        if {low, high} != {to, issuer} or after["Balance"]["currency"] != currency:
            continue
        # a created line held nothing before; a modified one states a changed balance
        # in PreviousFields, and one not stated there did not change
        previous = node.get("PreviousFields", {}).get("Balance", after["Balance"])
        before = Decimal(0) if change == "CreatedNode" else Decimal(previous["value"])
        moved = Decimal(after["Balance"]["value"]) - before
        return moved if to == low else -moved
    return None
