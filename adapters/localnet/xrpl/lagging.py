"""A second server behind the same URL, some ledgers behind the first.

Public endpoints (s.altnet.rippletest.net, xrplcluster.com) are several rippled servers
behind a load balancer, and they are not all at the same ledger: one read can come
from a server that has validated ledger n and the next from one still at n - 3. A
client that takes a read for the truth (a ``tx`` miss, an account's balance, "the
validated ledger is n") must survive that. ``LaggingView`` is that slower server: it
answers reads from the ledger ``ledgers_behind`` before the newest validated one, as
if it had validated nothing since; submits still go to the fresh server.

What it shows, as a lagging rippled would: its validated ledger (and ``current``
open ledger, which starts from it and holds nothing); transactions validated in its
ledgers only; ``complete_ledgers`` ending at its ledger, so a ``tx`` range past it is
never ``searched_all``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from adapters.localnet.xrpl.clock import NodeClock
from adapters.localnet.xrpl.ledger import ClosedLedger, TxRecord
from adapters.localnet.xrpl.state import LedgerState
from adapters.localnet.xrpl.transactors.base import FeeSchedule


class ChainReader(Protocol):
    """What a read-only RPC method needs of a server's ledgers."""

    @property
    def fees(self) -> FeeSchedule: ...
    @property
    def clock(self) -> NodeClock: ...
    @property
    def network_id(self) -> int: ...
    @property
    def amendments(self) -> frozenset[str]: ...
    @property
    def last_closed(self) -> ClosedLedger: ...
    @property
    def open_sequence(self) -> int: ...
    @property
    def open_state(self) -> LedgerState: ...
    @property
    def open_records(self) -> list[TxRecord]: ...
    @property
    def first_sequence(self) -> int: ...

    def ledger(self, sequence: int) -> ClosedLedger | None: ...

    def ledger_by_hash(self, ledger_hash: str) -> ClosedLedger | None: ...

    def transaction(self, tx_hash: str) -> TxRecord | None: ...

    def is_closed(self, record: TxRecord) -> bool: ...

    def account_transactions(self, account: str) -> list[TxRecord]: ...

    def ledger_transactions(self, ledger: ClosedLedger) -> list[TxRecord]: ...


@dataclass(frozen=True)
class LaggingView:
    """The fresh chain as seen by a server whose newest validated ledger is ``sequence``."""

    fresh: ChainReader
    sequence: int

    @classmethod
    def behind(cls, fresh: ChainReader, ledgers_behind: int) -> LaggingView:
        newest = fresh.last_closed.header.sequence
        sequence = max(fresh.first_sequence, newest - ledgers_behind)
        # After a restart only the newest state is kept: a server cannot lag into
        # ledgers whose state this node no longer has, so it lags less.
        while sequence < newest and _state_missing(fresh.ledger(sequence)):
            sequence += 1
        return cls(fresh, sequence)

    @property
    def fees(self) -> FeeSchedule:
        return self.fresh.fees

    @property
    def clock(self) -> NodeClock:
        return self.fresh.clock

    @property
    def network_id(self) -> int:
        return self.fresh.network_id

    @property
    def amendments(self) -> frozenset[str]:
        return self.fresh.amendments

    @property
    def last_closed(self) -> ClosedLedger:
        ledger = self.fresh.ledger(self.sequence)
        assert ledger is not None, "a lagging server's ledger is one the fresh one has"
        return ledger

    @property
    def open_sequence(self) -> int:
        return self.sequence + 1

    @property
    def open_state(self) -> LedgerState:
        state = self.last_closed.state
        assert state is not None, "a lagging server keeps its own ledger's state"
        return state

    @property
    def open_records(self) -> list[TxRecord]:
        return []  # its open ledger has seen none of the fresh server's submits

    @property
    def first_sequence(self) -> int:
        return self.fresh.first_sequence

    def ledger(self, sequence: int) -> ClosedLedger | None:
        return self.fresh.ledger(sequence) if sequence <= self.sequence else None

    def ledger_by_hash(self, ledger_hash: str) -> ClosedLedger | None:
        ledger = self.fresh.ledger_by_hash(ledger_hash)
        return ledger if ledger is not None and ledger.header.sequence <= self.sequence else None

    def transaction(self, tx_hash: str) -> TxRecord | None:
        record = self.fresh.transaction(tx_hash)
        return record if record is not None and self.is_closed(record) else None

    def is_closed(self, record: TxRecord) -> bool:
        return self.fresh.is_closed(record) and record.ledger_sequence <= self.sequence

    def account_transactions(self, account: str) -> list[TxRecord]:
        return list(self._known(self.fresh.account_transactions(account)))

    def ledger_transactions(self, ledger: ClosedLedger) -> list[TxRecord]:
        return self.fresh.ledger_transactions(ledger)

    def _known(self, records: list[TxRecord]) -> Iterator[TxRecord]:
        return (r for r in records if r.ledger_sequence <= self.sequence)


def _state_missing(ledger: ClosedLedger | None) -> bool:
    return ledger is None or ledger.state is None
