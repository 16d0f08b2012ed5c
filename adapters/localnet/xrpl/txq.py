"""Open-ledger fee escalation and the transaction queue, after rippled's ``TxQ``.

rippled measures fees in *fee levels*: what a transaction pays relative to its own base
fee, scaled so the reference fee is level 256 (``TxQ.cpp``, ``toFeeLevel``). While the
open ledger holds no more than the expected number of transactions, level 256 is
enough. Past that, a transaction must pay (``FeeMetrics::scaleFeeLevel``)::

    required_level = multiplier * current_size**2 / expected_size**2

where ``multiplier`` is the median fee level of the last closed ledger, never below
``256 * 500`` (``minimum_escalation_multiplier``). A transaction that pays at least
the reference fee but less than that is queued (``terQUEUED``) if the queue has room,
and applied when a later ledger opens, highest fee level first, while each still pays
that ledger's open-ledger level (``TxQ::accept``).

Simplifications, documented in the node's README: the expected ledger size is fixed
by configuration (rippled grows and shrinks it with consensus speed); an account may
queue up to ``MAX_PER_ACCOUNT`` transactions in consecutive sequences or on tickets; a
queued transaction is replaced only by one with the same sequence (or ticket) paying
25 % more; queued balance checks (``telCAN_NOT_QUEUE_BALANCE``) and blocker rules are not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from adapters.localnet.xrpl.state import JsonObject
from adapters.localnet.xrpl.transactors.base import Tx

REFERENCE_LEVEL: Final = 256  # the fee level of a transaction paying its base fee
MIN_ESCALATION_MULTIPLIER: Final = REFERENCE_LEVEL * 500
LEDGERS_IN_QUEUE: Final = 20  # max queue = expected ledger size * this (ledgers_in_queue)
MIN_QUEUE_SIZE: Final = 2000  # minimum_queue_size
MAX_PER_ACCOUNT: Final = 10  # maximum_txn_per_account
RETRY_PERCENT: Final = 25  # retry_sequence_percent: a replacement pays this much more
LAST_LEDGER_BUFFER: Final = 2  # minimum_last_ledger_buffer
STANDALONE_EXPECTED_SIZE: Final = 1000  # minimum_txn_in_ledger_standalone


@dataclass(frozen=True)
class EscalationSetup:
    """How the open ledger prices transactions.

    The default is a standalone rippled's: escalation on, 1000 transactions expected
    per ledger, so everyday use (and the engine's tens per ledger) pays the reference
    fee; tests choose a small ``expected_ledger_size`` to see a fee surge.
    """

    enabled: bool = True
    expected_ledger_size: int = STANDALONE_EXPECTED_SIZE
    max_queue_size: int | None = None  # default: max(2000, expected * 20)

    def __post_init__(self) -> None:
        if self.expected_ledger_size < 1:
            raise ValueError("expected_ledger_size must be at least 1")
        if self.max_queue_size is not None and self.max_queue_size < 0:
            raise ValueError("max_queue_size must be >= 0")

    @property
    def queue_capacity(self) -> int:
        if self.max_queue_size is not None:
            return self.max_queue_size
        return max(MIN_QUEUE_SIZE, self.expected_ledger_size * LEDGERS_IN_QUEUE)


@dataclass
class Queued:
    tx_json: JsonObject
    blob: str
    tx_hash: str
    fee_level: int
    arrival: int

    @property
    def account(self) -> str:
        return str(self.tx_json["Account"])

    @property
    def key(self) -> tuple[bool, int]:
        """rippled's SeqProxy: the sequence or ticket consumed; sequences sort first."""
        tx = Tx(self.tx_json, self.tx_hash)
        return (tx.uses_ticket, tx.sequence_value)

    @property
    def uses_ticket(self) -> bool:
        return self.key[0]


def fee_level(fee_drops: int, base_fee_drops: int) -> int:
    """A fee as a level: the reference fee is 256 (``toFeeLevel``)."""
    if base_fee_drops <= 0:
        return REFERENCE_LEVEL
    return fee_drops * REFERENCE_LEVEL // base_fee_drops


def level_to_drops(level: int, base_fee_drops: int) -> int:
    """The least fee in drops whose level reaches ``level`` (``TxQ::doRPC``)."""
    drops = level * base_fee_drops // REFERENCE_LEVEL
    if fee_level(drops, base_fee_drops) < level:
        drops += 1
    return drops


@dataclass
class TxQueue:
    setup: EscalationSetup = field(default_factory=EscalationSetup)
    multiplier: int = MIN_ESCALATION_MULTIPLIER  # median level of the last closed ledger
    _entries: dict[str, Queued] = field(default_factory=dict)
    _arrivals: int = 0

    # --- metrics --------------------------------------------------------------------

    def required_level(self, open_ledger_size: int) -> int:
        """The level the next transaction into the open ledger must pay."""
        target = self.setup.expected_ledger_size
        if not self.setup.enabled or open_ledger_size <= target:
            return REFERENCE_LEVEL
        return self.multiplier * open_ledger_size**2 // target**2

    def minimum_level(self) -> int:
        """The least level the queue takes: above its lowest entry once it is full."""
        if self.is_full() and self._entries:
            return min(e.fee_level for e in self._entries.values()) + 1
        return REFERENCE_LEVEL

    def on_ledger_closed(self, levels_in_ledger: list[int]) -> None:
        """FeeMetrics::update: the multiplier is the closed ledger's median level."""
        if not levels_in_ledger:
            self.multiplier = MIN_ESCALATION_MULTIPLIER
            return
        ordered = sorted(levels_in_ledger)
        middle = len(ordered) // 2
        median = (
            ordered[middle]
            if len(ordered) % 2
            else (ordered[middle - 1] + ordered[middle] + 1) // 2
        )
        self.multiplier = max(MIN_ESCALATION_MULTIPLIER, median)

    # --- the queue ------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def is_full(self) -> bool:
        return len(self._entries) >= self.setup.queue_capacity

    def of_account(self, account: str) -> list[Queued]:
        return sorted(
            (e for e in self._entries.values() if e.account == account), key=lambda e: e.key
        )

    def next_sequence(self, account: str, account_sequence: int) -> int:
        """The sequence after this account's queued run (its own next if none).

        Ticketed entries consume no sequence, so they are not part of the run.
        """
        expected = account_sequence
        for entry in self.of_account(account):
            if entry.key == (False, expected):
                expected += 1
        return expected

    def admit(self, entry: Queued, open_sequence: int) -> str:
        """Queue ``entry`` or say why not: terQUEUED, or a telCAN_NOT_QUEUE* code."""
        last_ledger = entry.tx_json.get("LastLedgerSequence")
        if last_ledger is not None and int(last_ledger) < open_sequence + LAST_LEDGER_BUFFER:
            return "telCAN_NOT_QUEUE"
        same = next((e for e in self.of_account(entry.account) if e.key == entry.key), None)
        if same is not None:
            if entry.fee_level * 100 < same.fee_level * (100 + RETRY_PERCENT):
                return "telCAN_NOT_QUEUE_FEE"
            del self._entries[same.tx_hash]
        elif len(self.of_account(entry.account)) >= MAX_PER_ACCOUNT:
            return "telCAN_NOT_QUEUE_FULL"
        if self.is_full():
            cheapest = min(self._entries.values(), key=lambda e: (e.fee_level, -e.arrival))
            if entry.fee_level <= cheapest.fee_level:
                return "telCAN_NOT_QUEUE_FULL"
            del self._entries[cheapest.tx_hash]  # the new one outbids the cheapest
        self._arrivals += 1
        entry.arrival = self._arrivals
        self._entries[entry.tx_hash] = entry
        return "terQUEUED"

    def contains(self, tx_hash: str) -> bool:
        return tx_hash in self._entries

    def remove(self, tx_hash: str) -> None:
        self._entries.pop(tx_hash, None)

    def by_fee(self) -> list[Queued]:
        """Highest level first; equal levels in arrival order (TxQ's byFee_)."""
        return sorted(self._entries.values(), key=lambda e: (-e.fee_level, e.arrival))
