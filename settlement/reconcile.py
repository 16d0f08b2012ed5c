"""Reconciliation: the engine's settlement records against the ledgers they name.

``Reconciler(db, chains).run()`` reads every settlement, leg and ledger submission and
asks each ledger whether it agrees:

- every LOCKED leg's escrow / claimable balance exists, holding the leg's asset and
  amount from its sender, on the settlement's terms (XRPL: destination, condition,
  CancelAfter; Stellar: the agent claims at once, the sender only from T_cancel);
- every COMMITTED / UNWOUND leg has an applied commit / unwind submission, and its lock
  is gone; a NOT_LOCKED leg has no lock on the ledger;
- a SETTLED settlement has every leg COMMITTED, an UNWOUND one every leg UNWOUND or
  NOT_LOCKED (no partial settlement at rest);
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

The engine may be running meanwhile: a break about a leg of an open settlement is
confirmed by reading the leg again after the ledger was read, and dropped if the leg
moved; a lock found on a ledger is called unknown only if it is still unknown to the
database after the listing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol
from uuid import UUID

from adapters.chain import (
    Asset,
    Chain,
    ChainName,
    LedgerTx,
    LockRef,
    LockState,
    Purpose,
    Unavailable,
)
from adapters.errors import AdapterError, TransportError
from ledger import settlements as records
from ledger.database import Database, UnitOfWork
from ledger.settlements import LegRow, SettlementRow, SubmissionRow


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
    #: a submission recorded in a ledger that the ledger does not hold
    TX_NOT_FOUND = "tx_not_found"
    TX_NOT_VALIDATED = "tx_not_validated"
    #: in a validated ledger, but not the recorded one (index or hash)
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


#: reads an account's balance of an asset on a chain (the caller's, e.g. a provisioner)
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
            "breaks": [plain(b) for b in self.breaks],
            "unreachable": [plain(u) for u in self.unreachable],
            "unverified": [plain(u) for u in self.unverified],
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


class _ChainDown(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Reconciler:
    """Compares the records in ``db`` with the ledgers in ``chains``; read-only.

    ``agents`` names each chain's settlement agent (defaults to the adapter's
    ``agent``): on Stellar, a claimable balance the agent may claim is "ours".
    ``balance_of`` reads balances for ``run(expected_balances=...)``.
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
        self._balance_of = balance_of

    def run(self, expected_balances: Sequence[ExpectedBalance] = ()) -> ReconcileReport:
        if expected_balances and self._balance_of is None:
            raise ValueError("expected balances need a balance reader (balance_of)")
        run = _Run(self, self._load())
        run.check_settlements()
        run.check_unknown_locks()
        run.check_balances(expected_balances)
        return run.finish()

    # -- records --------------------------------------------------------------------

    def _load(self) -> list[_Snapshot]:
        def read(uow: UnitOfWork) -> list[_Snapshot]:
            ids = records.all_settlement_ids(uow)
            return [
                _Snapshot(
                    records.load_settlement(uow, sid),
                    records.load_legs(uow, sid),
                    records.submissions(uow, sid),
                )
                for sid in ids
            ]

        return self._db.transaction(read)

    def _reload(self, settlement_id: UUID) -> _Snapshot:
        return self._db.transaction(
            lambda uow: _Snapshot(
                records.load_settlement(uow, settlement_id),
                records.load_legs(uow, settlement_id),
                records.submissions(uow, settlement_id),
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
        allowed = {"SETTLED": {"COMMITTED"}, "UNWOUND": {"UNWOUND", "NOT_LOCKED"}}
        wanted = allowed.get(snap.settlement.status)
        if wanted is None:
            return
        for leg in snap.legs:
            if leg.state not in wanted:
                self._break(
                    BreakKind.PARTIAL_SETTLEMENT,
                    ChainName(leg.chain),
                    f"settlement {snap.settlement.status}: leg {' or '.join(sorted(wanted))}",
                    f"leg {leg.state}",
                    snap=snap,
                    leg_no=leg.leg_no,
                )

    def _check_submission(self, snap: _Snapshot, sub: SubmissionRow) -> None:
        chain = ChainName(sub.chain)
        in_ledger = sub.status == "APPLIED" or (
            sub.status == "REJECTED" and sub.ledger_hash is not None
        )
        if not in_ledger and sub.status != "EXPIRED":
            return  # SIGNED: still in flight; REJECTED before any ledger: nothing to find
        found = self._lookup(chain, sub.tx_hash)
        if isinstance(found, _ChainDown):
            return
        self.report.submissions_checked += 1
        what = f"{sub.purpose} of leg {sub.leg_no}"
        if sub.status == "EXPIRED":
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
        recorded = f"validated in ledger {sub.ledger_index} {sub.ledger_hash}"

        def broke(kind: BreakKind, expected: str, found_text: str) -> None:
            self._break(kind, chain, expected, found_text, snap=snap, leg_no=sub.leg_no,
                        tx_hash=sub.tx_hash, detail=what)  # fmt: skip

        if found is None:
            broke(BreakKind.TX_NOT_FOUND, recorded, "unknown to the ledger")
            return
        if not found.validated:
            broke(BreakKind.TX_NOT_VALIDATED, recorded, "not in a validated ledger")
            return
        if (found.ledger_index, found.ledger_hash.upper()) != (
            sub.ledger_index,
            (sub.ledger_hash or "").upper(),
        ):
            broke(
                BreakKind.LEDGER_REF_MISMATCH,
                recorded,
                f"validated in ledger {found.ledger_index} {found.ledger_hash}",
            )
        if found.successful != (sub.status == "APPLIED"):
            broke(
                BreakKind.TX_RESULT_DIFFERS,
                f"{sub.status} {sub.result_code or ''}".strip(),
                f"successful={found.successful} {found.extra.get('result', '')}".strip(),
            )

    def _check_leg(self, snap: _Snapshot, leg: LegRow) -> None:
        chain = ChainName(leg.chain)
        purpose = {"LOCKED": Purpose.LOCK, "COMMITTED": Purpose.COMMIT, "UNWOUND": Purpose.UNWIND}
        if leg.state in purpose:
            wanted = purpose[leg.state].value
            if not any(
                s.leg_no == leg.leg_no and s.purpose == wanted and s.status == "APPLIED"
                for s in snap.submissions
            ):
                self._break(
                    BreakKind.NO_APPLIED_SUBMISSION,
                    chain,
                    f"an applied {wanted} submission (leg is {leg.state})",
                    "none recorded",
                    snap=snap,
                    leg_no=leg.leg_no,
                )
        if leg.state == "PENDING" or leg.lock_owner is None:
            if leg.state == "LOCKED":
                self._break(
                    BreakKind.LOCK_MISSING,
                    chain,
                    "a recorded lock reference",
                    "the LOCKED leg names no lock",
                    snap=snap,
                    leg_no=leg.leg_no,
                )
            return  # PENDING: a lock may be in flight; the engine resolves it
        ref = LockRef(chain, leg.lock_owner, leg.lock_sequence, leg.lock_balance_id)
        state = self._lock_state(chain, ref)
        if state is None:
            return
        self.report.legs_checked += 1
        if leg.state == "LOCKED":
            if not state.exists:
                self._confirm(
                    snap,
                    leg,
                    BreakKind.LOCK_MISSING,
                    f"lock {_ref_text(ref)} holding {_amount(leg)}",
                    "no such lock on the ledger (released or claimed)",
                )
                return
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
        if snap.settlement.status not in ("SETTLED", "UNWOUND"):
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
                for chain, owner, sequence, balance_id in records.known_lock_refs(uow)
            ]

        return self.owner._db.transaction(read)

    # -- balances --------------------------------------------------------------------

    def check_balances(self, expected: Sequence[ExpectedBalance]) -> None:
        reader = self.owner._balance_of
        for item in expected:
            assert reader is not None
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
    return f"{leg.amount} {_asset_text(Asset(leg.asset_code, leg.asset_issuer))}"


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
