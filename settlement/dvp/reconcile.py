"""Reconciliation: the engine's settlement records against the ledgers they name.

``Reconciler(db, chains).run()`` reads every settlement, leg and ledger submission and
asks each ledger whether it agrees:

- a leg's recorded state has the applied submissions to show for it: a lock for every
  leg that was ever locked, the agent's claim for a HELD claimable balance, a commit /
  unwind for a COMMITTED / UNWOUND leg. A leg whose lock someone else took (the
  receiver finished the escrow with the public fulfillment; the sender reclaimed after
  T_cancel) has no commit or unwind of the engine's own: the release recorded with it
  must be that validated transaction, in the recorded ledger;
- a lock that should still be on its ledger (LOCKED; REFUSED before the agent claimed
  it) is there, holding the leg's asset and amount from its sender, on the settlement's
  terms (XRPL: destination, condition, CancelAfter; Stellar: the agent claims at once,
  the sender only from T_cancel); when it is gone, the ledger is asked who took it. A
  lock that should be gone (claimed into the agent, COMMITTED, UNWOUND, NOT_LOCKED) is
  gone. A custody lock has no object on its ledger (the lock was a payment into the
  agent's account): its applied lock submission is what shows it;
- what arrived: for every COMMITTED / UNWOUND leg, the engine's own payout (its applied
  commit / unwind: a payment from the agent's account, an escrow's finish or cancel)
  delivered exactly the leg's amount and asset to the leg's receiver / sender, as the
  ledger states it (``LedgerTx.extra["delivered"]``, ``delivered_to``,
  ``delivered_asset``); and the validated release of its lock (``Chain.lock_release``:
  the escrow's finish or cancel, the balance's claim) is the transaction recorded for
  it. A release by someone else is compared by what it states arrived; a balance the
  agent claimed, by what the agent took in;
- no partial settlement: a SETTLED settlement has every leg COMMITTED, an UNWOUND one
  every leg UNWOUND or NOT_LOCKED (a settlement that decided COMMIT may end UNWOUND,
  every leg returned); an open one (LOCKING, COMMITTING, UNWINDING) never has a leg
  paid while another is back with its sender, whether the records say so already or
  only the ledgers do (a lock still recorded LOCKED that went to its receiver or its
  sender);
- every submission recorded in a ledger (APPLIED, or REJECTED with a fee spent) is in a
  validated ledger with the recorded index and hash and the recorded success; an
  EXPIRED one is in no validated ledger;
- no lock "of ours" that the engine does not know: an XRPL escrow owned by a sender of
  the engine's legs, a Stellar claimable balance the settlement agent may claim;
- optionally, balances expected by the caller equal the ledgers'.

What it finds is a value: ``ReconcileReport`` with one typed ``Break`` per disagreement
(kind, chain, settlement, leg, expected, found), the ledgers that could not be reached
(``Unreachable``: their checks were not made, which is neither a break nor "ok"), and
items the ledger answered about in a way that proves nothing (``Unverified``). It
writes nothing.

Where no ledger answer states what arrived, the report says so apart
(``delivered_not_stated``) rather than as unverified: an adapter that does not read
delivered amounts (the fault simulation's fake ledger), or a Horizon server that had
not ingested the payout's operations yet, leaves nothing to compare, which is no
disagreement, and listing it as unverified would make every run on such an adapter
incomplete. Both ledger adapters state what each payout of the engine's delivered, so
a clean run on them lists nothing there. An escrow's payout that states nothing is
compared by what its release states instead.

The engine may be running meanwhile: a break about a leg of an open settlement is
confirmed by reading the leg again after the ledger was read, and dropped if the leg
moved; a lock found on a ledger is called unknown only if it is still unknown to the
database after the listing. A partial settlement is never dropped that way: a leg
paid or returned stays so, on the ledger and in the settlement_records.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Protocol
from uuid import UUID

from adapters.chain import (
    Asset,
    Chain,
    ChainName,
    LedgerTx,
    LockKind,
    LockRef,
    LockState,
    Purpose,
    Released,
    Unavailable,
)
from adapters.errors import AdapterError, TransportError
from ledger import settlements as settlement_records
from ledger.database import Database, UnitOfWork
from ledger.settlements import LegRow, SettlementRow, SubmissionRow
from settlement.domain.settlements import (
    SETTLEMENTS,
    LegState,
    SettlementStatus,
    SubmissionStatus,
)
from settlement.dvp.protocol import LegFacts, at_rest_partial


class BreakKind(StrEnum):
    #: a LOCKED leg's lock is not on its ledger
    LOCK_MISSING = "lock_missing"
    #: a LOCKED leg's lock is on the ledger with other terms than recorded
    LOCK_TERMS_DIFFER = "lock_terms_differ"
    #: a leg recorded released (committed, unwound, never locked) whose lock is on chain
    LOCK_NOT_RELEASED = "lock_not_released"
    #: a leg's recorded state has no applied submission to show for it
    NO_APPLIED_SUBMISSION = "no_applied_submission"
    #: a closed settlement whose legs are not all committed or all unwound
    PARTIAL_SETTLEMENT = "partial_settlement"
    #: an open settlement with a leg paid and another back with its sender, in the
    #: records or on the ledgers
    PARTIAL_OPEN = "partial_open"
    #: a committed / unwound leg whose lock's release paid another amount than the
    #: leg's, or paid someone other than its receiver / sender
    DELIVERED_AMOUNT = "delivered_amount"
    #: a submission recorded in a ledger that the ledger does not hold
    TX_NOT_FOUND = "tx_not_found"
    TX_NOT_VALIDATED = "tx_not_validated"
    #: in a validated ledger, but not the recorded one (index or hash); or a lock
    #: released by another transaction than the one recorded for the leg
    LEDGER_REF_MISMATCH = "ledger_ref_mismatch"
    #: recorded applied but failed on the ledger, or recorded rejected but succeeded
    TX_RESULT_DIFFERS = "tx_result_differs"
    #: recorded expired (so a new signature was allowed) but it is in a validated ledger
    EXPIRED_BUT_IN_LEDGER = "expired_but_in_ledger"
    #: a lock of ours on a ledger that no leg of the engine names
    UNKNOWN_LOCK = "unknown_lock"
    BALANCE_MISMATCH = "balance_mismatch"


@dataclass(frozen=True)
class Break:
    """One disagreement between the records and a ledger."""

    kind: BreakKind
    chain: ChainName
    expected: str
    found: str
    settlement_id: UUID | None = None
    leg_no: int | None = None
    tx_hash: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class Unreachable:
    """A ledger that could not be asked; ``unchecked`` checks were skipped for it."""

    chain: ChainName
    reason: str
    unchecked: int = 0


@dataclass(frozen=True)
class Unverified:
    """One item the ledger answered about without settling the question."""

    chain: ChainName
    item: str
    reason: str
    settlement_id: UUID | None = None
    leg_no: int | None = None


@dataclass(frozen=True)
class ExpectedBalance:
    chain: ChainName
    account: str
    asset: Asset
    amount: Decimal


#: reads an account's balance of an asset on a chain; by default the chain's own
#: ``Chain.balance`` (raising ``TransportError`` / ``AccountNotFound`` as it does)
BalanceReader = Callable[[ChainName, str, Asset], Decimal]


@dataclass
class ReconcileReport:
    breaks: list[Break] = field(default_factory=list)
    unreachable: list[Unreachable] = field(default_factory=list)
    unverified: list[Unverified] = field(default_factory=list)
    settlements: int = 0
    legs_checked: int = 0
    #: submissions looked up on their ledger (an unreachable ledger's are not counted)
    submissions_checked: int = 0
    locks_listed: int = 0
    #: breaks dropped because the leg moved while it was being checked
    in_motion: int = 0
    #: committed / unwound legs whose delivered amount the ledger stated and matched
    delivered_checked: int = 0
    #: committed / unwound legs whose delivered amount no ledger answer states (a
    #: payout whose lookup carries none); not counted against ``ok``
    delivered_not_stated: list[Unverified] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True only if everything was checked and nothing disagrees."""
        return not (self.breaks or self.unreachable or self.unverified)

    @property
    def status(self) -> str:
        if self.breaks:
            return "breaks"
        if self.unreachable or self.unverified:
            return "incomplete"
        return "ok"

    @property
    def exit_code(self) -> int:
        """For ``settle reconcile``: 0 ok, 1 breaks found, 2 nothing wrong found but
        some ledger could not be checked."""
        return {"ok": 0, "breaks": 1, "incomplete": 2}[self.status]

    def to_json(self) -> dict[str, Any]:
        def plain(obj: object) -> dict[str, Any]:
            assert hasattr(obj, "__dataclass_fields__")
            return {k: _text(v) for k, v in asdict(obj).items()}  # type: ignore[call-overload]

        return {
            "status": self.status,
            "ok": self.ok,
            "settlements": self.settlements,
            "legs_checked": self.legs_checked,
            "submissions_checked": self.submissions_checked,
            "locks_listed": self.locks_listed,
            "in_motion": self.in_motion,
            "delivered_checked": self.delivered_checked,
            "breaks": [plain(b) for b in self.breaks],
            "unreachable": [plain(u) for u in self.unreachable],
            "unverified": [plain(u) for u in self.unverified],
            "delivered_not_stated": [plain(u) for u in self.delivered_not_stated],
        }


def _text(value: object) -> object:
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


class _HasAgent(Protocol):
    agent: str


@dataclass(frozen=True)
class _Snapshot:
    settlement: SettlementRow
    legs: list[LegRow]
    submissions: list[SubmissionRow]


@dataclass(frozen=True)
class _Delivery:
    """What one transaction delivered, as its ledger's answer states it."""

    tx_hash: str
    amount: Decimal
    to: str
    #: ``native`` or ``CODE:ISSUER``
    asset: str


@dataclass(frozen=True)
class _Payouts:
    """What the ledger said of the engine's own payout of a leg."""

    #: its statement of what it delivered was compared with the leg
    compared: bool
    #: why it states nothing, when its ledger's answer carries no delivered amount
    unstated: str | None = None


@dataclass(frozen=True)
class _Recorded:
    """A transaction as the records place it in a validated ledger."""

    tx_hash: str
    ledger_index: int | None
    ledger_hash: str | None
    successful: bool
    result: str


class _ChainDown(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Reconciler:
    """Compares the records in ``db`` with the ledgers in ``chains``; read-only.

    ``agents`` names each chain's settlement agent (defaults to the adapter's
    ``agent``): on Stellar, a claimable balance the agent may claim is "ours".
    ``balance_of`` reads balances for ``run(expected_balances=...)``; by default each
    chain's ``balance``.
    """

    def __init__(
        self,
        db: Database,
        chains: Mapping[ChainName, Chain],
        *,
        agents: Mapping[ChainName, str] | None = None,
        balance_of: BalanceReader | None = None,
    ) -> None:
        self._db = db
        self._chains = dict(chains)
        self._agents = dict(agents or {})
        for name, chain in self._chains.items():
            agent = getattr(chain, "agent", None)
            if name not in self._agents and isinstance(agent, str):
                self._agents[name] = agent
        self._balance_of: BalanceReader = balance_of or self._ledger_balance

    def _ledger_balance(self, chain: ChainName, account: str, asset: Asset) -> Decimal:
        return self._chains[chain].balance(account, asset)

    def run(self, expected_balances: Sequence[ExpectedBalance] = ()) -> ReconcileReport:
        run = _Run(self, self._load())
        run.check_settlements()
        run.check_unknown_locks()
        run.check_balances(expected_balances)
        return run.finish()

    # -- records --------------------------------------------------------------------

    def _load(self) -> list[_Snapshot]:
        def read(uow: UnitOfWork) -> list[_Snapshot]:
            ids = settlement_records.all_settlement_ids(uow)
            return [
                _Snapshot(
                    settlement_records.load_settlement(uow, sid),
                    settlement_records.load_legs(uow, sid),
                    settlement_records.submissions(uow, sid),
                )
                for sid in ids
            ]

        return self._db.transaction(read)

    def _reload(self, settlement_id: UUID) -> _Snapshot:
        return self._db.transaction(
            lambda uow: _Snapshot(
                settlement_records.load_settlement(uow, settlement_id),
                settlement_records.load_legs(uow, settlement_id),
                settlement_records.submissions(uow, settlement_id),
            )
        )


class _Run:
    """One reconciliation pass (kept apart so the Reconciler holds no run state)."""

    def __init__(self, owner: Reconciler, snapshots: list[_Snapshot]) -> None:
        self.owner = owner
        self.snapshots = snapshots
        self.report = ReconcileReport(settlements=len(snapshots))
        self.down: dict[ChainName, str] = {}
        self.unchecked: dict[ChainName, int] = {}
        #: who took a lock the records still call on the ledger, by (settlement, leg)
        self.taken: dict[tuple[UUID, int], Released] = {}
        #: the ledgers' answers to the submissions looked up, by hash (upper case)
        self.found: dict[str, LedgerTx | None] = {}

    def finish(self) -> ReconcileReport:
        self.report.unreachable = [
            Unreachable(chain, reason, self.unchecked.get(chain, 0))
            for chain, reason in self.down.items()
        ]
        return self.report

    # -- talking to a ledger ---------------------------------------------------------

    def _chain(self, name: ChainName) -> Chain | None:
        """The adapter, or None (the check is counted unchecked) if it is down."""
        chain = self.owner._chains.get(name)
        if chain is None:
            self.down.setdefault(name, "no adapter configured for this chain")
        if name in self.down:
            self.unchecked[name] = self.unchecked.get(name, 0) + 1
            return None
        return chain

    def _mark_down(self, name: ChainName, reason: str) -> None:
        self.down.setdefault(name, reason)
        self.unchecked[name] = self.unchecked.get(name, 0) + 1

    def _lock_state(self, name: ChainName, ref: LockRef) -> LockState | None:
        chain = self._chain(name)
        if chain is None:
            return None
        try:
            state = chain.lock_state(ref)
        except TransportError as exc:
            self._mark_down(name, str(exc))
            return None
        except (AdapterError, ValueError) as exc:
            self.report.unverified.append(Unverified(name, f"lock {_ref_text(ref)}", str(exc)))
            return None
        if isinstance(state, Unavailable):
            self._mark_down(name, state.reason)
            return None
        return state

    def _lock_release(
        self, name: ChainName, ref: LockRef, *, snap: _Snapshot, leg_no: int
    ) -> Released | None:
        """Who took ``ref`` off its ledger, or None when that is not known: the lock is
        still there (or, on a lagging server, its removal not found yet), or the ledger
        could not say. An open breaker marks the chain down; any other answer that
        says nothing (a history pruned, a server behind) leaves the item unverified.
        The caller judges a plain None, which may be true of a lock still held."""
        chain = self._chain(name)
        if chain is None:
            return None
        try:
            released = chain.lock_release(ref)
        except TransportError as exc:
            self._mark_down(name, str(exc))
            return None
        except (AdapterError, ValueError) as exc:
            released = Unavailable(str(exc))
        if isinstance(released, Unavailable):
            if released.breaker_open:
                self._mark_down(name, released.reason)
            else:
                self.report.unverified.append(
                    Unverified(
                        name,
                        f"who took lock {_ref_text(ref)}",
                        released.reason,
                        snap.settlement.id,
                        leg_no,
                    )
                )
            return None
        return released

    def _lookup(self, name: ChainName, tx_hash: str) -> LedgerTx | _ChainDown | None:
        chain = self._chain(name)
        if chain is None:
            return _ChainDown(self.down[name])
        try:
            return chain.lookup(tx_hash)
        except TransportError as exc:
            self._mark_down(name, str(exc))
            return _ChainDown(str(exc))
        except AdapterError as exc:
            self.report.unverified.append(Unverified(name, f"transaction {tx_hash}", str(exc)))
            return _ChainDown(str(exc))

    # -- settlements, legs, submissions ----------------------------------------------

    def check_settlements(self) -> None:
        for snap in self.snapshots:
            self._check_closed(snap)
            for sub in snap.submissions:
                self._check_submission(snap, sub)
            for leg in snap.legs:
                self._check_leg(snap, leg)
            self._check_open(snap)

    def _break(
        self,
        kind: BreakKind,
        chain: ChainName,
        expected: str,
        found: str,
        *,
        snap: _Snapshot | None = None,
        leg_no: int | None = None,
        tx_hash: str | None = None,
        detail: str = "",
    ) -> None:
        settlement_id = snap.settlement.id if snap else None
        self.report.breaks.append(
            Break(kind, chain, expected, found, settlement_id, leg_no, tx_hash, detail)
        )

    def _check_closed(self, snap: _Snapshot) -> None:
        wanted = _AT_REST.get(SettlementStatus(snap.settlement.status))
        if wanted is None:
            return
        for leg in snap.legs:
            if LegState(leg.state) not in wanted:
                self._break(
                    BreakKind.PARTIAL_SETTLEMENT,
                    ChainName(leg.chain),
                    f"settlement {snap.settlement.status}: leg {' or '.join(sorted(wanted))}",
                    f"leg {leg.state}",
                    snap=snap,
                    leg_no=leg.leg_no,
                )

    def _check_open(self, snap: _Snapshot) -> None:
        """An open settlement with a leg paid and another back with its sender. Both
        are for good (a paid leg is never unpaid), so the engine moving meanwhile cannot
        make this a false alarm, and the ledgers' word counts before the records catch
        up: a lock still recorded LOCKED or REFUSED that went to its receiver is paid,
        one that went to its sender is returned."""
        if SettlementStatus(snap.settlement.status) not in _OPEN:
            return
        facts: list[LegFacts] = []
        paid: dict[int, str] = {}
        returned: list[tuple[LegRow, str]] = []
        for leg in snap.legs:
            state = LegState(leg.state)
            why = f"is {state}"
            taken = self.taken.get((leg.settlement_id, leg.leg_no))
            if taken is not None and state in (LegState.LOCKED, LegState.REFUSED):
                if taken.to == leg.receiver:
                    state, why = LegState.COMMITTED, f"went to its receiver in {taken.tx_hash}"
                elif taken.to == leg.sender:
                    state, why = LegState.UNWOUND, f"went back to its sender in {taken.tx_hash}"
            facts.append(LegFacts(leg.leg_no, LockKind(leg.lock_kind), state))
            if state is LegState.COMMITTED:
                paid[leg.leg_no] = why
            elif state in (LegState.UNWOUND, LegState.NOT_LOCKED):
                returned.append((leg, why))
        if not at_rest_partial(facts):
            return
        paid_text = "; ".join(f"leg {n} {why}" for n, why in sorted(paid.items()))
        for leg, why in returned:
            self._break(
                BreakKind.PARTIAL_OPEN,
                ChainName(leg.chain),
                f"settlement {snap.settlement.status}: no leg back with its sender while "
                "another is paid",
                f"leg {leg.leg_no} {why}; paid: {paid_text}",
                snap=snap,
                leg_no=leg.leg_no,
            )

    def _check_submission(self, snap: _Snapshot, sub: SubmissionRow) -> None:
        chain = ChainName(sub.chain)
        in_ledger = sub.status == SubmissionStatus.APPLIED or (
            sub.status == SubmissionStatus.REJECTED and sub.ledger_hash is not None
        )
        if not in_ledger and sub.status != SubmissionStatus.EXPIRED:
            return  # SIGNED: still in flight; REJECTED before any ledger: nothing to find
        found = self._lookup(chain, sub.tx_hash)
        if isinstance(found, _ChainDown):
            return
        self.found[sub.tx_hash.upper()] = found
        self.report.submissions_checked += 1
        what = f"{sub.purpose} of leg {sub.leg_no}"
        if sub.status == SubmissionStatus.EXPIRED:
            if found is not None and found.validated:
                self._break(
                    BreakKind.EXPIRED_BUT_IN_LEDGER,
                    chain,
                    f"{what} in no validated ledger (recorded EXPIRED)",
                    f"in validated ledger {found.ledger_index} {found.ledger_hash}",
                    snap=snap,
                    leg_no=sub.leg_no,
                    tx_hash=sub.tx_hash,
                )
            return
        recorded = _Recorded(
            sub.tx_hash,
            sub.ledger_index,
            sub.ledger_hash,
            sub.status == SubmissionStatus.APPLIED,
            f"{sub.status} {sub.result_code or ''}".strip(),
        )
        self._compare_tx(snap, recorded, found, chain=chain, leg_no=sub.leg_no, what=what)

    def _compare_tx(
        self,
        snap: _Snapshot,
        recorded: _Recorded,
        found: LedgerTx | None,
        *,
        chain: ChainName,
        leg_no: int,
        what: str,
    ) -> None:
        """A transaction recorded in a validated ledger against the ledger's copy."""
        expected = f"validated in ledger {recorded.ledger_index} {recorded.ledger_hash}"

        def broke(kind: BreakKind, expected: str, found_text: str) -> None:
            self._break(kind, chain, expected, found_text, snap=snap, leg_no=leg_no,
                        tx_hash=recorded.tx_hash, detail=what)  # fmt: skip

        if found is None:
            broke(BreakKind.TX_NOT_FOUND, expected, "unknown to the ledger")
            return
        if not found.validated:
            broke(BreakKind.TX_NOT_VALIDATED, expected, "not in a validated ledger")
            return
        if (found.ledger_index, found.ledger_hash.upper()) != (
            recorded.ledger_index,
            (recorded.ledger_hash or "").upper(),
        ):
            broke(
                BreakKind.LEDGER_REF_MISMATCH,
                expected,
                f"validated in ledger {found.ledger_index} {found.ledger_hash}",
            )
        if found.successful != recorded.successful:
            broke(
                BreakKind.TX_RESULT_DIFFERS,
                recorded.result,
                f"successful={found.successful} {found.extra.get('result', '')}".strip(),
            )

    def _check_leg(self, snap: _Snapshot, leg: LegRow) -> None:
        chain = ChainName(leg.chain)
        state = LegState(leg.state)
        applied = _applied(snap, leg)
        for purpose in _required(leg):
            if not applied.get(purpose):
                self._break(
                    BreakKind.NO_APPLIED_SUBMISSION,
                    chain,
                    f"an applied {purpose} submission (leg is {leg.state})",
                    "none recorded",
                    snap=snap,
                    leg_no=leg.leg_no,
                )
        if leg.released_tx_hash is not None:
            self._check_release_record(snap, leg)
        if leg.lock_owner is None:
            if state in _WAS_LOCKED:
                self._break(
                    BreakKind.LOCK_MISSING,
                    chain,
                    "a recorded lock reference",
                    f"the {leg.state} leg names no lock",
                    snap=snap,
                    leg_no=leg.leg_no,
                )
            return
        expected = _lock_expected(leg, applied)
        lock = None if expected is None else self._check_lock(snap, leg, on_ledger=expected)
        if state in (LegState.COMMITTED, LegState.UNWOUND):
            gone = lock is not None and not lock.exists
            self._check_delivered(snap, leg, applied, lock_gone=gone)

    def _check_release_record(self, snap: _Snapshot, leg: LegRow) -> None:
        """The transaction recorded as someone else's release of the leg's lock is in
        the recorded validated ledger, and succeeded."""
        assert leg.released_tx_hash is not None
        chain = ChainName(leg.chain)
        found = self._lookup(chain, leg.released_tx_hash)
        if isinstance(found, _ChainDown):
            return
        recorded = _Recorded(
            leg.released_tx_hash,
            leg.released_ledger_index,
            leg.released_ledger_hash,
            True,
            f"released to {leg.released_to}",
        )
        what = f"release of leg {leg.leg_no}'s lock by someone else"
        self._compare_tx(snap, recorded, found, chain=chain, leg_no=leg.leg_no, what=what)

    def _check_lock(self, snap: _Snapshot, leg: LegRow, *, on_ledger: bool) -> LockState | None:
        """The lock object is on its ledger with the recorded terms (``on_ledger``), or
        gone. A lock that should be there and is not: the ledger says who took it.
        Returns what the ledger holds, None if it could not be read."""
        chain = ChainName(leg.chain)
        ref = _leg_ref(leg)
        state = self._lock_state(chain, ref)
        if state is None:
            return None
        self.report.legs_checked += 1
        if on_ledger:
            if not state.exists:
                taken = self._lock_release(chain, ref, snap=snap, leg_no=leg.leg_no)
                if taken is not None:
                    self.taken[(leg.settlement_id, leg.leg_no)] = taken
                self._confirm(
                    snap,
                    leg,
                    BreakKind.LOCK_MISSING,
                    f"lock {_ref_text(ref)} holding {_amount(leg)}",
                    "no such lock on the ledger: " + _taken_text(taken),
                )
                return state
            differences = self._differences(snap.settlement, leg, state)
            if differences:
                self._confirm(
                    snap,
                    leg,
                    BreakKind.LOCK_TERMS_DIFFER,
                    "; ".join(e for e, _ in differences),
                    "; ".join(f for _, f in differences),
                )
        elif state.exists:
            self._confirm(
                snap,
                leg,
                BreakKind.LOCK_NOT_RELEASED,
                f"no lock {_ref_text(ref)} (leg is {leg.state})",
                f"lock on the ledger holding {state.amount} {_asset_text(state.asset)}",
            )
        return state

    def _check_delivered(
        self,
        snap: _Snapshot,
        leg: LegRow,
        applied: Mapping[Purpose, set[str]],
        *,
        lock_gone: bool,
    ) -> None:
        """What arrived: the leg's amount and asset, at its receiver (COMMITTED) or its
        sender (UNWOUND). The engine's own payout says it (``_check_payouts``). The
        lock's validated release must be the transaction recorded for it; a release by
        someone else is compared by what it states arrived, and so is an escrow's
        payout whose answer states nothing; a balance the agent claimed is compared by
        what the agent took in, before it paid on from its own account."""
        chain = ChainName(leg.chain)
        party = leg.receiver if leg.state == LegState.COMMITTED else leg.sender
        kind = LockKind(leg.lock_kind)
        payouts = self._check_payouts(snap, leg, party)
        if kind is LockKind.CUSTODY:
            # no lock object to read: the agent's payout is all the ledger can say
            if payouts.unstated is not None:
                self._not_stated(
                    snap, leg, f"paid from the agent's account (custody lock): {payouts.unstated}"
                )
            return
        released = self._release_of(snap, leg, lock_gone=lock_gone)
        if released is None:
            return
        self._check_released_by(snap, leg, released, applied)
        agent = self.owner._agents.get(chain)
        if kind is LockKind.CLAIMABLE and released.to == agent and leg.released_tx_hash is None:
            if released.delivered is not None:
                self._delivered_as_instructed(snap, leg, released, released.to)
            if payouts.unstated is not None:
                self._not_stated(
                    snap,
                    leg,
                    f"paid on from the agent's account, which took the balance in "
                    f"{released.tx_hash}: {payouts.unstated}",
                )
        elif released.to != party:
            self._break(
                BreakKind.DELIVERED_AMOUNT,
                chain,
                f"{_amount(leg)} delivered to {party} (leg is {leg.state})",
                f"{_number(released.delivered)} delivered to {released.to} in {released.tx_hash}",
                snap=snap,
                leg_no=leg.leg_no,
                tx_hash=released.tx_hash,
            )
        elif payouts.compared:
            return  # the payout's own statement was compared; the release is that payout
        elif released.delivered is None:
            self._not_stated(snap, leg, f"the release {released.tx_hash} states no amount")
        elif self._delivered_as_instructed(snap, leg, released, party):
            self.report.delivered_checked += 1

    def _check_payouts(self, snap: _Snapshot, leg: LegRow, party: str) -> _Payouts:
        """The engine's own applied payout of the leg (the commit of a COMMITTED leg,
        the unwind of an UNWOUND one) delivered the leg's amount and asset to ``party``,
        as its ledger states it; a difference is a ``DELIVERED_AMOUNT`` break. A lock
        released by someone else has no payout of ours. A payout its ledger could not
        be asked about, or does not hold as recorded, is the submission checks' to
        report: it is neither compared nor called unstated."""
        if leg.released_tx_hash is not None:
            return _Payouts(compared=False)
        purpose = Purpose.COMMIT if leg.state == LegState.COMMITTED else Purpose.UNWIND
        payouts = [
            sub
            for sub in snap.submissions
            if sub.leg_no == leg.leg_no
            and sub.purpose == purpose
            and sub.status == SubmissionStatus.APPLIED
        ]
        compared, matched, unstated = bool(payouts), True, None
        for sub in payouts:
            found = self._found(ChainName(leg.chain), sub.tx_hash)
            if found is None or not (found.validated and found.successful):
                compared = False
                continue
            delivery = _delivery(found)
            if delivery is None:
                compared = False
                unstated = f"the ledger's answer for {sub.tx_hash} states no delivered amount"
                continue
            matched = self._delivery_as_instructed(snap, leg, delivery, party) and matched
        if compared and matched:
            self.report.delivered_checked += 1
        return _Payouts(compared, unstated)

    def _found(self, chain: ChainName, tx_hash: str) -> LedgerTx | None:
        """The ledger's answer for a submission, as the submission checks read it (read
        now if they could not); None if it is not there or could not be read."""
        key = tx_hash.upper()
        if key not in self.found:
            found = self._lookup(chain, tx_hash)
            self.found[key] = None if isinstance(found, _ChainDown) else found
        return self.found[key]

    def _delivery_as_instructed(
        self, snap: _Snapshot, leg: LegRow, delivery: _Delivery, party: str
    ) -> bool:
        expected_asset = _asset_key(Asset(leg.asset_code, leg.asset_issuer))
        if (delivery.amount, delivery.asset, delivery.to) == (leg.amount, expected_asset, party):
            return True
        asset = "" if delivery.asset == expected_asset else f" {delivery.asset}"
        self._break(
            BreakKind.DELIVERED_AMOUNT,
            ChainName(leg.chain),
            f"{_amount(leg)} delivered to {party} (leg is {leg.state})",
            f"{_number(delivery.amount)}{asset} delivered to {delivery.to} in {delivery.tx_hash}",
            snap=snap,
            leg_no=leg.leg_no,
            tx_hash=delivery.tx_hash,
        )
        return False

    def _release_of(self, snap: _Snapshot, leg: LegRow, *, lock_gone: bool) -> Released | None:
        """The validated release of the leg's lock, or None (then noted, unless the lock
        is still there: the lock check reports that)."""
        chain, ref = ChainName(leg.chain), _leg_ref(leg)
        released = self._lock_release(chain, ref, snap=snap, leg_no=leg.leg_no)
        if released is None and lock_gone:
            # gone from the ledger, yet no release of it found: a server behind
            self.report.unverified.append(
                Unverified(
                    chain,
                    f"what leg {leg.leg_no} delivered",
                    f"lock {_ref_text(ref)} is gone but no release of it was found",
                    snap.settlement.id,
                    leg.leg_no,
                )
            )
        return released

    def _check_released_by(
        self,
        snap: _Snapshot,
        leg: LegRow,
        released: Released,
        applied: Mapping[Purpose, set[str]],
    ) -> None:
        """The release is the transaction recorded for it: the release by someone else
        recorded with the leg, or one of the engine's own applied claim, commit or
        unwind of the leg."""
        ours = (
            {leg.released_tx_hash.upper()}
            if leg.released_tx_hash is not None
            else set().union(*(applied.get(p, set()) for p in _RELEASING))
        )
        if released.tx_hash.upper() not in ours:
            self._break(
                BreakKind.LEDGER_REF_MISMATCH,
                ChainName(leg.chain),
                f"lock released by {' or '.join(sorted(ours)) or 'a recorded transaction'}",
                f"released by {released.tx_hash} in ledger {released.ledger_index}",
                snap=snap,
                leg_no=leg.leg_no,
                tx_hash=released.tx_hash,
            )

    def _delivered_as_instructed(
        self, snap: _Snapshot, leg: LegRow, released: Released, to: str
    ) -> bool:
        if released.delivered == leg.amount:
            return True
        self._break(
            BreakKind.DELIVERED_AMOUNT,
            ChainName(leg.chain),
            f"{_amount(leg)} delivered to {to}",
            f"{_number(released.delivered)} delivered in {released.tx_hash}",
            snap=snap,
            leg_no=leg.leg_no,
            tx_hash=released.tx_hash,
        )
        return False

    def _not_stated(self, snap: _Snapshot, leg: LegRow, reason: str) -> None:
        self.report.delivered_not_stated.append(
            Unverified(
                ChainName(leg.chain),
                f"what leg {leg.leg_no} delivered",
                reason,
                snap.settlement.id,
                leg.leg_no,
            )
        )

    def _differences(
        self, s: SettlementRow, leg: LegRow, state: LockState
    ) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        expected_asset = Asset(leg.asset_code, leg.asset_issuer)
        if state.asset is None or not _same_asset(state.asset, expected_asset):
            found_asset = _asset_text(state.asset)
            out.append((f"asset {_asset_text(expected_asset)}", f"asset {found_asset}"))
        if state.amount != leg.amount:
            out.append((f"amount {leg.amount}", f"amount {state.amount}"))
        if state.sender != leg.sender:
            out.append((f"sender {leg.sender}", f"sender {state.sender}"))
        cancel_after = _whole_seconds_up(s.cancel_after)
        if state.cancel_after != cancel_after:
            out.append((f"cancel after {cancel_after}", f"cancel after {state.cancel_after}"))
        if state.receiver is not None and state.receiver != leg.receiver:
            out.append((f"receiver {leg.receiver}", f"receiver {state.receiver}"))
        if state.condition_hex is not None and state.condition_hex != s.condition_hex.upper():
            out.append((f"condition {s.condition_hex.upper()}", f"condition {state.condition_hex}"))
        if ChainName(leg.chain) is ChainName.STELLAR:
            agent = self.owner._agents.get(ChainName.STELLAR)
            others = [
                c
                for c in state.claimants
                if not (c.destination == agent and c.unconditional)
                and not (c.destination == leg.sender and c.not_before == cancel_after)
            ]
            if not any(c.destination == agent and c.unconditional for c in state.claimants):
                out.append((f"agent {agent} claims at once", "the agent cannot claim at once"))
            if others:
                out.append(("no other claimant", f"claimants {[c.destination for c in others]}"))
        return out

    def _confirm(
        self, snap: _Snapshot, leg: LegRow, kind: BreakKind, expected: str, found: str
    ) -> None:
        """Record a lock break, unless the settlement is open and the leg moved since
        it was read (the engine acted between our two reads)."""
        if SettlementStatus(snap.settlement.status) in _OPEN:
            again = self.owner._reload(snap.settlement.id)
            now = next(x for x in again.legs if x.leg_no == leg.leg_no)
            if now != leg or len(again.submissions) != len(snap.submissions):
                self.report.in_motion += 1
                return
        self._break(kind, ChainName(leg.chain), expected, found, snap=snap, leg_no=leg.leg_no)

    # -- locks the engine does not know ----------------------------------------------

    def check_unknown_locks(self) -> None:
        watched: dict[ChainName, set[str]] = {}
        for snap in self.snapshots:
            for leg in snap.legs:
                if ChainName(leg.chain) is ChainName.XRPL:
                    watched.setdefault(ChainName.XRPL, set()).add(leg.sender)
        stellar_agent = self.owner._agents.get(ChainName.STELLAR)
        if stellar_agent and ChainName.STELLAR in self.owner._chains:
            watched.setdefault(ChainName.STELLAR, set()).add(stellar_agent)
        candidates: list[LockState] = []
        for name, accounts in sorted(watched.items()):
            for account in sorted(accounts):
                listed = self._locks_of(name, account)
                self.report.locks_listed += len(listed)
                candidates.extend(s for s in listed if _ours(name, account, s))
        if not candidates:
            return
        # read what the engine knows after the listing: a lock signed meanwhile is known
        known = {_ref_key(ref) for ref in self._known_refs()}
        seen: set[str] = set()
        for state in candidates:
            if state.key in seen:
                continue
            seen.add(state.key)
            if _ref_key(state.lock) in known:
                continue
            self._break(
                BreakKind.UNKNOWN_LOCK,
                state.lock.chain,
                "no lock of ours unknown to the engine",
                f"lock {_ref_text(state.lock)} (key {state.key}) holding {state.amount} "
                f"{_asset_text(state.asset)} from {state.sender}"
                + (f" to {state.receiver}" if state.receiver else ""),
            )

    def _locks_of(self, name: ChainName, account: str) -> list[LockState]:
        chain = self._chain(name)
        if chain is None:
            return []
        try:
            listed = chain.locks_of(account)
        except TransportError as exc:
            self._mark_down(name, str(exc))
            return []
        if isinstance(listed, Unavailable):
            self._mark_down(name, listed.reason)
            return []
        return listed

    def _known_refs(self) -> list[LockRef]:
        def read(uow: UnitOfWork) -> list[LockRef]:
            return [
                LockRef(ChainName(chain), owner, sequence, balance_id)
                for chain, owner, sequence, balance_id in settlement_records.known_lock_refs(uow)
            ]

        return self.owner._db.transaction(read)

    # -- balances --------------------------------------------------------------------

    def check_balances(self, expected: Sequence[ExpectedBalance]) -> None:
        reader = self.owner._balance_of
        for item in expected:
            if self._chain(item.chain) is None:
                continue
            try:
                actual = reader(item.chain, item.account, item.asset)
            except TransportError as exc:
                self._mark_down(item.chain, str(exc))
                continue
            except AdapterError as exc:
                self.report.unverified.append(
                    Unverified(item.chain, f"balance of {item.account}", str(exc))
                )
                continue
            if actual != item.amount:
                self._break(
                    BreakKind.BALANCE_MISMATCH,
                    item.chain,
                    f"{item.account} holds {item.amount} {_asset_text(item.asset)}",
                    f"holds {actual}",
                )


#: settlement statuses that are not at rest
_OPEN = SETTLEMENTS.open
#: the leg states a settlement closed with each status may have
_AT_REST = {
    SettlementStatus.SETTLED: frozenset({LegState.COMMITTED}),
    SettlementStatus.UNWOUND: frozenset({LegState.UNWOUND, LegState.NOT_LOCKED}),
}
#: leg states reached only through an applied lock
_WAS_LOCKED = frozenset(
    {LegState.LOCKED, LegState.HELD, LegState.REFUSED, LegState.COMMITTED, LegState.UNWOUND}
)
#: purposes whose applied transaction takes a lock off its ledger (a claim into the
#: agent; a finish, cancel, or claim-and-pay of a lock never claimed)
_RELEASING = (Purpose.CLAIM, Purpose.COMMIT, Purpose.UNWIND)


def _applied(snap: _Snapshot, leg: LegRow) -> dict[Purpose, set[str]]:
    """The leg's applied submissions: their hashes (upper case) by purpose."""
    out: dict[Purpose, set[str]] = {}
    for sub in snap.submissions:
        if sub.leg_no == leg.leg_no and sub.status == SubmissionStatus.APPLIED:
            out.setdefault(Purpose(sub.purpose), set()).add(sub.tx_hash.upper())
    return out


def _required(leg: LegRow) -> list[Purpose]:
    """The purposes a leg's recorded state needs an applied submission of. A lock
    released by someone else needs no commit or unwind of the engine's own."""
    state = LegState(leg.state)
    if state not in _WAS_LOCKED:
        return []
    needed = [Purpose.LOCK]
    if state is LegState.HELD and leg.lock_kind == LockKind.CLAIMABLE:
        needed.append(Purpose.CLAIM)
    if leg.released_tx_hash is None:
        if state is LegState.COMMITTED:
            needed.append(Purpose.COMMIT)
        elif state is LegState.UNWOUND:
            needed.append(Purpose.UNWIND)
    return needed


def _lock_expected(leg: LegRow, applied: Mapping[Purpose, set[str]]) -> bool | None:
    """Whether the leg's lock object must be on its ledger (True) or gone (False); None
    when there is nothing to read: a PENDING leg's lock may be in flight, and a custody
    lock is a payment into the agent, with no object of its own."""
    state = LegState(leg.state)
    if leg.lock_kind == LockKind.CUSTODY or state is LegState.PENDING:
        return None
    if state is LegState.LOCKED:
        return True
    if state is LegState.REFUSED:
        # refused at the claim: the balance is still there; at the payout: claimed
        return not applied.get(Purpose.CLAIM)
    return False


def _delivery(found: LedgerTx) -> _Delivery | None:
    """What ``found`` delivered, if its ledger's answer states it (every key, and an
    amount that is a number); None otherwise."""
    extra = found.extra
    try:
        amount = Decimal(extra["delivered"])
        return _Delivery(found.tx_hash, amount, extra["delivered_to"], extra["delivered_asset"])
    except (KeyError, InvalidOperation):
        return None


def _asset_key(asset: Asset) -> str:
    """An asset as a ledger's delivered amount names it: ``native`` or ``CODE:ISSUER``."""
    return "native" if asset.is_native else f"{asset.code}:{asset.issuer}"


def _leg_ref(leg: LegRow) -> LockRef:
    assert leg.lock_owner is not None
    return LockRef(ChainName(leg.chain), leg.lock_owner, leg.lock_sequence, leg.lock_balance_id)


def _taken_text(taken: Released | None) -> str:
    if taken is None:
        return "who took it is not known (released, claimed, or a server behind)"
    delivered = "" if taken.delivered is None else f" {_number(taken.delivered)}"
    return f"taken by {taken.tx_hash} in ledger {taken.ledger_index},{delivered} to {taken.to}"


def _ours(chain: ChainName, account: str, state: LockState) -> bool:
    """XRPL: an escrow the watched sender owns (not one it merely receives). Stellar:
    a balance the watched agent may claim (the listing already says so)."""
    if chain is ChainName.XRPL:
        return state.sender == account
    return any(c.destination == account for c in state.claimants)


def _ref_key(ref: LockRef) -> tuple[str, ...]:
    if ref.balance_id is not None:
        return (ref.chain.value, ref.balance_id.lower())
    return (ref.chain.value, ref.owner, str(ref.sequence))


def _ref_text(ref: LockRef) -> str:
    if ref.balance_id is not None:
        return f"balance {ref.balance_id}"
    return f"escrow {ref.owner}/{ref.sequence}"


def _same_asset(a: Asset, b: Asset) -> bool:
    if a.is_native or b.is_native:
        return a.is_native and b.is_native
    return (a.code, a.issuer) == (b.code, b.issuer)


def _asset_text(asset: Asset | None) -> str:
    if asset is None:
        return "none"
    return asset.code if asset.is_native else f"{asset.code}:{asset.issuer}"


def _amount(leg: LegRow) -> str:
    return f"{_number(leg.amount)} {_asset_text(Asset(leg.asset_code, leg.asset_issuer))}"


def _number(amount: Decimal | None) -> str:
    """An amount as a person reads it: no exponent, no trailing zeros of the column's
    scale (the database keeps 18 decimal places, Stellar answers with 7)."""
    if amount is None:
        return "an amount not stated"
    text = format(amount, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _whole_seconds_up(moment: datetime) -> datetime:
    """Ledgers keep T_cancel in whole seconds, rounded up when the lock was signed."""
    if moment.microsecond:
        return moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment


__all__ = [
    "Break",
    "BreakKind",
    "ExpectedBalance",
    "ReconcileReport",
    "Reconciler",
    "Unreachable",
    "Unverified",
]
