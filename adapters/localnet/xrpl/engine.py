"""The ledger chain: one open ledger, the closed (and, standalone, validated) ones.

Transactions apply to the open ledger when submitted, in arrival order, and that order
is kept when the ledger closes (rippled re-applies them in a canonical, salted order; a
single node has nothing to agree on, so arrival order is kept and documented). A
standalone server validates every ledger it closes, so "closed" and "validated" are the
same ledger here.

``terPRE_SEQ`` transactions are held, as rippled holds them, and retried each time a new
open ledger starts; one whose LastLedgerSequence has passed is dropped.

Not thread-safe: the node serialises every call with one lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from xrpl.core.binarycodec import decode, encode

from adapters.localnet.xrpl import codes, hashing, protocol
from adapters.localnet.xrpl.amendments import enabled_set
from adapters.localnet.xrpl.amounts import amount_to_json
from adapters.localnet.xrpl.apply import apply_transaction, signature_failure
from adapters.localnet.xrpl.clock import NodeClock
from adapters.localnet.xrpl.ledger import ClosedLedger, LedgerHeader, TxRecord
from adapters.localnet.xrpl.state import JsonObject, LedgerState
from adapters.localnet.xrpl.transactors import TRANSACTORS
from adapters.localnet.xrpl.transactors.base import FeeSchedule, LedgerContext, Tx
from adapters.localnet.xrpl.tx_formats import TemplateError, template_for
from adapters.localnet.xrpl.txq import EscalationSetup, Queued, TxQueue, fee_level, level_to_drops

CLOSE_TIME_RESOLUTION_S = 10
MAX_BLOB_BYTES = 1_000_000  # rippled refuses transactions larger than 1 MB


class InvalidTransaction(ValueError):
    """A blob that is not a well-formed, correctly signed transaction (never applied)."""


@dataclass(frozen=True)
class SubmitResult:
    engine_result: str
    tx_json: JsonObject
    tx_hash: str
    applied: bool
    kept: bool  # held for a later ledger (terPRE_SEQ, or queued)
    queued: bool = False  # in the transaction queue (terQUEUED)


@dataclass
class _Held:
    tx_json: JsonObject
    blob: str
    tx_hash: str


def round_close_time(ripple_s: int, resolution_s: int) -> int:
    """rippled's roundCloseTime: to the nearest multiple of the resolution."""
    shifted = ripple_s + resolution_s // 2
    return shifted - shifted % resolution_s


class LedgerChain:
    def __init__(
        self,
        *,
        fees: FeeSchedule,
        clock: NodeClock,
        network_id: int = 0,
        retained_states: int = 256,
        amendments: frozenset[str] | None = None,
        escalation: EscalationSetup | None = None,
    ) -> None:
        self.fees = fees
        self.queue = TxQueue(escalation or EscalationSetup())
        self.network_id = network_id
        self.amendments = amendments if amendments is not None else enabled_set()
        self.clock = clock
        self._retained_states = retained_states
        self._closed: list[ClosedLedger] = []
        self._by_hash: dict[str, int] = {}
        self._txs: dict[str, TxRecord] = {}
        self._account_txs: dict[str, list[str]] = {}
        self._open_state = LedgerState()
        self._open_records: list[TxRecord] = []
        # The fee level each open record paid, in the same order (computed once, when
        # it applied; the close's median reads them).
        self._open_levels: list[int] = []
        self._held: dict[str, _Held] = {}

    # --- construction -------------------------------------------------------------

    def start_genesis(self) -> None:
        """Ledger 1 holds every drop in the genesis account; ledger 2 closes at once.

        As a fresh rippled standalone server: validated ledger 2, open ledger 3.
        """
        state = LedgerState()
        state.put(
            hashing.account_index(protocol.GENESIS_ACCOUNT),
            {
                "LedgerEntryType": "AccountRoot",
                "Account": protocol.GENESIS_ACCOUNT,
                "Balance": str(protocol.TOTAL_SUPPLY_DROPS),
                "Flags": 0,
                "OwnerCount": 0,
                "Sequence": 1,
            },
        )
        state.put(
            hashing.fee_settings_index(),
            {
                "LedgerEntryType": "FeeSettings",
                "Flags": 0,
                "BaseFeeDrops": str(self.fees.base_fee_drops),
                "ReserveBaseDrops": str(self.fees.reserve_base_drops),
                "ReserveIncrementDrops": str(self.fees.reserve_inc_drops),
            },
        )
        genesis = LedgerHeader.build(
            sequence=1,
            parent_hash=protocol.ZERO_HASH,
            account_hash=state.account_hash(),
            transaction_hash=protocol.ZERO_HASH,
            close_time=0,
            parent_close_time=0,
            close_time_resolution=CLOSE_TIME_RESOLUTION_S,
            total_drops=protocol.TOTAL_SUPPLY_DROPS,
        )
        self._append(ClosedLedger(genesis, [], state))
        self._open_state = state.copy()
        self.close()

    def restore(self, headers: list[LedgerHeader], txs: list[TxRecord], state: LedgerState) -> None:
        """Rebuild from a snapshot: every header and transaction, the last state."""
        assert headers, "a snapshot holds at least the genesis ledger"
        for header in headers[:-1]:
            self._append(ClosedLedger(header, [], None))
        self._append(ClosedLedger(headers[-1], [], state))
        for record in txs:
            self._record(record)
            self._closed[record.ledger_sequence - 1].tx_hashes.append(record.hash)
        self._open_state = state.copy()

    # --- reading --------------------------------------------------------------------

    @property
    def last_closed(self) -> ClosedLedger:
        return self._closed[-1]

    @property
    def open_sequence(self) -> int:
        return self.last_closed.header.sequence + 1

    @property
    def open_state(self) -> LedgerState:
        return self._open_state

    @property
    def open_records(self) -> list[TxRecord]:
        return list(self._open_records)

    @property
    def first_sequence(self) -> int:
        return self._closed[0].header.sequence

    def ledger(self, sequence: int) -> ClosedLedger | None:
        if 1 <= sequence <= len(self._closed):
            return self._closed[sequence - 1]
        return None

    def ledger_by_hash(self, ledger_hash: str) -> ClosedLedger | None:
        sequence = self._by_hash.get(ledger_hash.upper())
        return self.ledger(sequence) if sequence is not None else None

    def transaction(self, tx_hash: str) -> TxRecord | None:
        """A transaction in a closed ledger, or applied to the open one."""
        key = tx_hash.upper()
        if key in self._txs:
            return self._txs[key]
        return next((r for r in self._open_records if r.hash == key), None)

    def is_closed(self, record: TxRecord) -> bool:
        return record.hash in self._txs

    def account_transactions(self, account: str) -> list[TxRecord]:
        """Validated transactions that affected ``account``, oldest first."""
        return [self._txs[h] for h in self._account_txs.get(account, [])]

    def ledger_transactions(self, ledger: ClosedLedger) -> list[TxRecord]:
        return [self._txs[h] for h in ledger.tx_hashes]

    def held_count(self) -> int:
        return len(self._held)

    def context(self) -> LedgerContext:
        return LedgerContext(
            sequence=self.open_sequence,
            parent_close_time=self.last_closed.header.close_time,
            fees=self.fees,
            network_id=self.network_id,
            amendments=self.amendments,
        )

    # --- writing --------------------------------------------------------------------

    @staticmethod
    def decode_blob(blob_hex: str) -> tuple[JsonObject, bytes]:
        """Decode and check a signed blob; InvalidTransaction if it cannot be applied."""
        try:
            blob = bytes.fromhex(blob_hex)
        except ValueError as exc:
            raise InvalidTransaction("tx_blob is not hex") from exc
        if not blob or len(blob) > MAX_BLOB_BYTES:
            raise InvalidTransaction("tx_blob is empty or too large")
        try:
            tx_json = decode(blob.hex())
            canonical = bytes.fromhex(encode(tx_json))
        # The codec raises many exception types on garbage input; all mean "not a
        # transaction", which is the answer rippled gives too.
        except Exception as exc:
            raise InvalidTransaction(f"Failed to deserialize transaction: {exc}") from exc
        if canonical != blob:
            raise InvalidTransaction("Transaction is not in canonical binary form.")
        if "TransactionType" not in tx_json or "Account" not in tx_json:
            raise InvalidTransaction("Field 'TransactionType' or 'Account' is required.")
        template = template_for(str(tx_json["TransactionType"]))
        if template is not None:
            try:
                template.check(tx_json)
            except TemplateError as exc:
                # rippled's submit answers the STTx constructor's exception text as is
                raise InvalidTransaction(str(exc)) from exc
        reason = signature_failure(tx_json)
        if reason is not None:
            raise InvalidTransaction(f"fails local checks: {reason}")
        return tx_json, blob

    def submit(self, blob_hex: str) -> SubmitResult:
        """Apply a signed blob to the open ledger (or hold it); InvalidTransaction if bad."""
        tx_json, blob = self.decode_blob(blob_hex)
        tx_hash = hashing.transaction_id(blob)
        if tx_hash in self._txs:
            # Already in a closed ledger: its sequence (or ticket) is spent, so rippled
            # answers from the ledger's view of the account; never applied twice.
            result = self._try_apply(Tx(tx_json, tx_hash), blob, dry=True)
            return SubmitResult(result, tx_json, tx_hash, applied=False, kept=False)
        if self.queue.contains(tx_hash):
            return SubmitResult(
                "terQUEUED", tx_json, tx_hash, applied=False, kept=True, queued=True
            )
        tx = Tx(tx_json, tx_hash)
        level = self.fee_level_of(tx)
        if self._must_queue(tx, level):
            verdict = self._try_queue(tx, blob, level)
            if verdict is not None:
                return verdict
        result = self._try_apply(tx, blob)
        kept = result in ("terPRE_SEQ", "terPRE_TICKET")
        if kept:
            self._held[tx_hash] = _Held(tx_json, blob.hex().upper(), tx_hash)
        return SubmitResult(result, tx_json, tx_hash, applied=codes.is_applied(result), kept=kept)

    # --- fee escalation (txq.py) ------------------------------------------------------

    def fee_level_of(self, tx: Tx) -> int:
        transactor = TRANSACTORS.get(tx.type)
        base = (
            transactor.base_fee_drops(tx, self.context())
            if transactor is not None
            else self.fees.base_fee_drops
        )
        try:
            return fee_level(tx.fee_drops, base)
        except ValueError:  # an unreadable Fee: the engine refuses it (temBAD_FEE)
            return 0

    def open_ledger_level(self) -> int:
        return self.queue.required_level(len(self._open_records))

    def open_ledger_fee_drops(self) -> int:
        """What a reference transaction must pay to enter the open ledger now."""
        return level_to_drops(self.open_ledger_level(), self.fees.base_fee_drops)

    def _must_queue(self, tx: Tx, level: int) -> bool:
        if not self.queue.setup.enabled or "Account" not in tx:
            return False
        if not tx.uses_ticket and any(not e.uses_ticket for e in self.queue.of_account(tx.account)):
            # Behind its own queued sequences, as TxQ keeps them in order; tickets are
            # taken in any order, so a queued ticket holds nothing back (tryDirectApply).
            return True
        return level < self.open_ledger_level()

    def _try_queue(self, tx: Tx, blob: bytes, level: int) -> SubmitResult | None:
        """TxQ::apply for a transaction that may not enter the open ledger now.

        None: not a queue matter (a sequence gap is held as terPRE_SEQ, as before).
        """
        dry = self._try_apply(tx, blob, dry=True)
        root = self._open_state.read(hashing.account_index(tx.account))
        account_sequence = int(root["Sequence"]) if root is not None else 0
        follows_queue = (
            dry == "terPRE_SEQ"
            and not tx.uses_ticket
            and tx.sequence == self.queue.next_sequence(tx.account, account_sequence)
        )
        if not (codes.is_applied(dry) or follows_queue):
            if codes.is_retry(dry):
                return None
            return SubmitResult(dry, tx.json, tx.hash, applied=False, kept=False)
        entry = Queued(tx.json, blob.hex().upper(), tx.hash, level, 0)
        result = self.queue.admit(entry, self.open_sequence)
        queued = result == "terQUEUED"
        return SubmitResult(result, tx.json, tx.hash, applied=False, kept=queued, queued=queued)

    def _accept_queued(self) -> None:
        """TxQ::accept: queued transactions enter the new open ledger, best fee first."""
        progress = True
        while progress and len(self.queue):
            progress = False
            for entry in self.queue.by_fee():
                if entry.fee_level < self.open_ledger_level():
                    return
                last_ledger = entry.tx_json.get("LastLedgerSequence")
                if last_ledger is not None and int(last_ledger) < self.open_sequence:
                    self.queue.remove(entry.tx_hash)
                    continue
                if not self._is_next(entry):
                    continue
                result = self._try_apply(
                    Tx(entry.tx_json, entry.tx_hash), bytes.fromhex(entry.blob)
                )
                if codes.is_applied(result) or not codes.is_retry(result):
                    self.queue.remove(entry.tx_hash)
                    progress = True

    def _is_next(self, entry: Queued) -> bool:
        """Whether a queued entry may be tried now (TxQ::accept's skip rule).

        A sequence waits until it is its account's next. A ticket is tried in any order:
        it applies if its ticket exists, is dropped if the ticket was used (tefNO_TICKET)
        and stays queued if the ticket is yet to be created (terPRE_TICKET).
        """
        tx = Tx(entry.tx_json, entry.tx_hash)
        if tx.uses_ticket:
            return True
        root = self._open_state.read(hashing.account_index(tx.account))
        return root is not None and int(root["Sequence"]) == tx.sequence

    def _try_apply(self, tx: Tx, blob: bytes, *, dry: bool = False) -> str:
        open_hashes = {r.hash for r in self._open_records}
        state = self._open_state.copy() if dry else self._open_state
        outcome = apply_transaction(
            tx,
            state,
            self.context(),
            open_hashes=open_hashes,
            tx_index=len(self._open_records),
        )
        if outcome.meta is not None and not dry:
            self._open_records.append(
                TxRecord(
                    hash=tx.hash,
                    blob=blob.hex().upper(),
                    tx_json=tx.json,
                    meta=outcome.meta,
                    ledger_sequence=self.open_sequence,
                    delivered=_delivered_json(tx),
                    accounts=_affected_accounts(tx.json, outcome.meta),
                )
            )
            self._open_levels.append(self.fee_level_of(tx))
            self._held.pop(tx.hash, None)
        return outcome.result

    def close(self) -> ClosedLedger:
        """Close the open ledger (validating it) and open the next one."""
        parent = self.last_closed.header
        rounded = round_close_time(self.clock.ripple_now_s(), CLOSE_TIME_RESOLUTION_S)
        # A close time never repeats or goes back: at least one second after the parent.
        close_time = max(rounded, parent.close_time + 1)
        burned = sum(int(r.tx_json["Fee"]) for r in self._open_records)
        header = LedgerHeader.build(
            sequence=self.open_sequence,
            parent_hash=parent.hash,
            account_hash=self._open_state.account_hash(),
            transaction_hash=hashing.shamap_root(
                {r.hash: r.leaf_hash() for r in self._open_records}
            ),
            close_time=close_time,
            parent_close_time=parent.close_time,
            close_time_resolution=CLOSE_TIME_RESOLUTION_S,
            total_drops=parent.total_drops - burned,
        )
        closed = ClosedLedger(header, [r.hash for r in self._open_records], self._open_state)
        self._append(closed)
        for record in self._open_records:
            self._record(record)
        self.queue.on_ledger_closed(self._open_levels)
        self._open_records = []
        self._open_levels = []
        self._open_state = self._open_state.copy()
        self._retry_held()
        self._accept_queued()
        return closed

    def _append(self, ledger: ClosedLedger) -> None:
        assert ledger.header.sequence == len(self._closed) + 1, "ledgers close in order"
        self._closed.append(ledger)
        self._by_hash[ledger.header.hash] = ledger.header.sequence
        stale = len(self._closed) - self._retained_states - 1
        if stale >= 0:
            self._closed[stale].state = None

    def _record(self, record: TxRecord) -> None:
        self._txs[record.hash] = record
        for account in record.accounts:
            self._account_txs.setdefault(account, []).append(record.hash)

    def _retry_held(self) -> None:
        progress = True
        while progress and self._held:
            progress = False
            for held in sorted(self._held.values(), key=_held_order):
                last_ledger = held.tx_json.get("LastLedgerSequence")
                if last_ledger is not None and int(last_ledger) < self.open_sequence:
                    # Its gap may never fill, but it can no longer apply either way.
                    del self._held[held.tx_hash]
                    continue
                tx = Tx(held.tx_json, held.tx_hash)
                result = self._try_apply(tx, bytes.fromhex(held.blob))
                if codes.is_applied(result):
                    progress = True
                elif not codes.is_retry(result):
                    del self._held[held.tx_hash]  # can never apply (tefPAST_SEQ, tefMAX_LEDGER...)

    # --- snapshots --------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything closed: headers, transactions, and the last closed state."""
        state = self.last_closed.state
        assert state is not None
        return {
            "network_id": self.network_id,
            "amendments": sorted(self.amendments),
            "headers": [c.header.to_snapshot() for c in self._closed],
            "transactions": [self._txs[h].to_snapshot() for c in self._closed for h in c.tx_hashes],
            "state": {index: state[index].data for index in state},
        }


def _held_order(held: _Held) -> tuple[str, int, int]:
    tx = held.tx_json
    return (str(tx["Account"]), int(tx.get("Sequence", 0)), int(tx.get("TicketSequence", 0)))


def _delivered_json(tx: Tx) -> Any:
    return amount_to_json(tx.delivered) if tx.delivered is not None else None


def _affected_accounts(tx_json: JsonObject, meta: JsonObject) -> list[str]:
    """Accounts whose history lists the transaction: its parties and touched owners."""
    found: list[str] = []

    def add(address: object) -> None:
        if (
            isinstance(address, str)
            and address.startswith("r")
            and address not in found
            and address != protocol.NO_ACCOUNT
        ):
            found.append(address)

    for field in ("Account", "Destination", "Owner"):
        add(tx_json.get(field))
    for node in meta["AffectedNodes"]:
        body = next(iter(node.values()))
        fields = body.get("FinalFields") or body.get("NewFields") or {}
        for field in ("Account", "Destination", "Owner"):
            add(fields.get(field))
        for field in ("LowLimit", "HighLimit"):
            if isinstance(fields.get(field), dict):
                add(fields[field].get("issuer"))
    return found
