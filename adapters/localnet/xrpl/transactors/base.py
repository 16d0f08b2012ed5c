"""The transactor framework: preflight, preclaim and apply, as rippled splits them.

- ``preflight`` looks at the transaction alone (malformed -> ``tem``).
- ``preclaim`` reads the ledger without writing (``ter``/``tef``/``tel``, or a ``tec``
  that still claims the fee).
- ``do_apply`` changes the ledger through an ``ApplyView``; a ``tec`` result rolls its
  changes back but keeps the fee and the consumed sequence or ticket.

Results are rippled's tokens (``codes.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapters.localnet.xrpl.amounts import Amount, AmountError, parse_amount, parse_drops
from adapters.localnet.xrpl.state import ApplyView, JsonObject

TES = "tesSUCCESS"


@dataclass(frozen=True)
class FeeSchedule:
    """Fees and reserves in drops (mainnet defaults: 10, 1 XRP, 0.2 XRP)."""

    base_fee_drops: int = 10
    reserve_base_drops: int = 1_000_000
    reserve_inc_drops: int = 200_000

    def account_reserve(self, owner_count: int) -> int:
        return self.reserve_base_drops + owner_count * self.reserve_inc_drops


@dataclass(frozen=True)
class LedgerContext:
    """What a transaction sees of the (open) ledger it is applied to."""

    sequence: int
    parent_close_time: int  # Ripple-epoch seconds; every time rule compares with this
    fees: FeeSchedule
    network_id: int
    # Names of the enabled amendments (``amendments.py``); rules check membership.
    amendments: frozenset[str] = frozenset()


class Tx:
    """A decoded transaction with typed access to the common fields."""

    def __init__(self, tx_json: JsonObject, tx_hash: str) -> None:
        self.json = tx_json
        self.hash = tx_hash
        # Set by a successful Payment: what reached the destination (delivered_amount).
        self.delivered: Amount | None = None

    def __contains__(self, field: str) -> bool:
        return field in self.json

    def __getitem__(self, field: str) -> Any:
        return self.json[field]

    def get(self, field: str, default: Any = None) -> Any:
        return self.json.get(field, default)

    @property
    def type(self) -> str:
        return str(self.json.get("TransactionType", ""))

    @property
    def account(self) -> str:
        return str(self.json["Account"])

    @property
    def flags(self) -> int:
        return int(self.json.get("Flags", 0))

    @property
    def sequence(self) -> int:
        return int(self.json.get("Sequence", 0))

    @property
    def ticket_sequence(self) -> int | None:
        ticket = self.json.get("TicketSequence")
        return int(ticket) if ticket is not None else None

    @property
    def uses_ticket(self) -> bool:
        return self.sequence == 0 and self.ticket_sequence is not None

    @property
    def sequence_value(self) -> int:
        """The sequence or ticket this transaction consumes (names escrows it creates)."""
        ticket = self.ticket_sequence
        return ticket if self.uses_ticket and ticket is not None else self.sequence

    @property
    def fee_drops(self) -> int:
        return parse_drops(self.json.get("Fee"))

    def amount(self, field: str) -> Amount:
        return parse_amount(self.json[field])

    def optional_amount(self, field: str) -> Amount | None:
        return parse_amount(self.json[field]) if field in self.json else None


@dataclass
class ApplyContext:
    """Per-application facts ``do_apply`` needs beyond the transaction and the ledger."""

    ctx: LedgerContext
    # The source's XRP balance before the fee was taken (rippled's mPriorBalance).
    prior_balance_drops: int


class Transactor:
    """One transaction type. Subclasses override what their type checks."""

    # Type-specific flag bits this type accepts (tfUniversal is always allowed).
    allowed_flags: int = 0

    def preflight(self, tx: Tx) -> str:
        return TES

    def base_fee_drops(self, tx: Tx, ctx: LedgerContext) -> int:
        return ctx.fees.base_fee_drops

    def preclaim(self, tx: Tx, view: ApplyView, ctx: LedgerContext) -> str:
        return TES

    def do_apply(self, tx: Tx, view: ApplyView, actx: ApplyContext) -> str:
        raise NotImplementedError


def safe_amount(tx: Tx, field: str) -> Amount | None:
    """The amount in ``field`` or None if absent or malformed (preflight reports it)."""
    try:
        return tx.optional_amount(field)
    except AmountError:
        return None
