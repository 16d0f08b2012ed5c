"""A party's positions: balances beside the ledgers, and statements of a period.

**Balances** (``PositionService.balances``): one ``Position`` per registered ledger
account of the party and asset it settles (every asset a leg of that account ever
moved), with the ledger's side and the engine's side:

- ``ledger.held``: what the account holds, as the ledger states it now
  (``Chain.balance``). Funds in an XRPL escrow or a Stellar claimable balance have left
  the account and are not in it; nor are funds the settlement agent holds (a claimed
  balance, a custody lock). A ledger that cannot be asked is ``UNAVAILABLE`` (held
  None), never 0; a registered account the ledger does not hold is
  ``ACCOUNT_NOT_FOUND``.
- ``ledger.locked``: the locks of this asset in the latest validated ledger that the
  account created and takes part in (``Chain.locks_of``): XRPL escrows it owns,
  Stellar claimable balances it sponsors and may itself claim (every lock of the
  engine's lets its sender reclaim after T_cancel).
- ``locked``: what the engine records as locked in the party's open settlements, the
  account sending: legs LOCKED, HELD (with the agent) or REFUSED (payout refused, funds
  still locked or held). These funds are no longer in ``held``.
- ``committed``: legs of open settlements the account sends that are not locked yet
  (PENDING). Still in ``held``.
- ``available`` = held − committed: what the account can commit to something new.
  Locked funds are not subtracted, since they have already left ``held``. None when
  ``held`` is unknown.

``totals`` add the positions up per currency code (the commitments' own unit) and
subtract, besides, the VERIFIED commitments of the party that no open settlement funds
yet (``uninstructed``): those name a currency but no ledger account until their
settlement is instructed, so they are committed against the currency as a whole.

**Breaks** (the reconcile question for this party): the engine expects the ledger to
hold, among the account's own locks of the asset, at least every escrow and claimable
lock it records LOCKED with no claim, commit or unwind signed for it, and at most those
plus every lock that may be in flight (a lock signed for a PENDING leg, a release
signed for a LOCKED one, a REFUSED leg's lock). A ledger figure outside those bounds
is a break, as is a registered account the ledger does not hold. Nothing else can be
known: deposits and withdrawals outside the engine change ``held`` freely, so ``held``
is never compared with a figure of the engine's. A custody lock leaves no object on
its ledger (the funds are in the agent's account) and is not compared here.

**Statements** (``PositionService.statement``): each leg of a SETTLED settlement that
touches the party's accounts and settled in ``[from, to)``, settled meaning the
commitment's ESCROWED -> SETTLED transition, one audited instant per settlement; a leg
the party both sends and receives gives two lines. Each line carries the applied
transactions the engine recorded for the leg (lock, claim, commit, each with its
ledger index and hash) and a release by someone else when the ledger showed one.
Fees are the settlements' fee legs (``kind`` fee); ledger transaction fees are not
recorded by the engine and do not appear. Per chain and asset, ``opening`` is the net
(received − sent) of the party's legs settled before ``from`` and ``closing`` that of
those settled before ``to``, in the engine's books: opening + credits − debits =
closing, always. A period is bounded on both sides and covers at most
``max_period_days``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import TypeVar
from uuid import UUID

from adapters.chain import Asset, Chain, ChainName, LockState
from adapters.errors import AccountNotFound, AdapterError
from compliance import records as compliance_records
from ledger import positions as records
from ledger.database import Database, UnitOfWork
from settlement.clock import Clock
from settlement.domain import errors
from settlement.domain.values import Actor, Role
from settlement.services.translate import translated

T = TypeVar("T")
ZERO = Decimal(0)
#: the longest period one statement covers (a year, a leap day included)
MAX_PERIOD_DAYS = 366
_LOCKED_STATES = frozenset({"LOCKED", "HELD", "REFUSED"})
#: lock primitives that leave an object on the ledger (a custody lock is a payment)
_LEDGER_LOCKS = frozenset({"escrow", "claimable"})
_READERS = frozenset({Role.ALLOCATOR, Role.COMPLIANCE_OFFICER, Role.ADMIN, Role.AUDITOR})


class LedgerStatus(StrEnum):
    OK = "ok"
    UNAVAILABLE = "unavailable"
    ACCOUNT_NOT_FOUND = "account_not_found"


@dataclass(frozen=True)
class LedgerSide:
    """What the ledger said of one account and asset; figures None when not known."""

    status: LedgerStatus
    held: Decimal | None = None
    locked: Decimal | None = None
    detail: str = ""


@dataclass(frozen=True)
class Position:
    chain: ChainName
    account: str
    asset: Asset
    ledger: LedgerSide
    locked: Decimal
    committed: Decimal
    available: Decimal | None
    #: the ledger locks the engine expects: at least ``expected_min``, at most ``_max``
    expected_locked_min: Decimal
    expected_locked_max: Decimal
    breaks: tuple[str, ...]


@dataclass(frozen=True)
class CurrencyTotal:
    currency: str
    held: Decimal | None
    locked: Decimal
    committed: Decimal
    #: VERIFIED commitments in this currency that no open settlement funds yet
    uninstructed: Decimal
    available: Decimal | None


@dataclass(frozen=True)
class Balances:
    party: str
    as_of: datetime
    positions: tuple[Position, ...]
    totals: tuple[CurrencyTotal, ...]

    @property
    def complete(self) -> bool:
        """Every ledger answered for every position."""
        return all(p.ledger.status is not LedgerStatus.UNAVAILABLE for p in self.positions)

    @property
    def breaks(self) -> int:
        return sum(len(p.breaks) for p in self.positions)


@dataclass(frozen=True)
class LegTransaction:
    """A transaction of a leg in a validated ledger: the engine's own (``lock``,
    ``claim``, ``commit``) or a ``release`` by someone else the ledger showed."""

    purpose: str
    tx_hash: str
    ledger_index: int | None
    ledger_hash: str | None
    recorded_at: datetime | None


@dataclass(frozen=True)
class StatementLine:
    settled_at: datetime
    commitment_id: UUID
    settlement_id: UUID
    leg_no: int
    kind: str
    chain: ChainName
    asset: Asset
    #: ``debit``: an account of the party sent the leg; ``credit``: one received it
    direction: str
    amount: Decimal
    sender: str
    receiver: str
    transactions: tuple[LegTransaction, ...]

    @property
    def signed_amount(self) -> Decimal:
        return self.amount if self.direction == "credit" else -self.amount


@dataclass(frozen=True)
class AssetMovement:
    chain: ChainName
    asset: Asset
    opening: Decimal
    credits: Decimal
    debits: Decimal
    closing: Decimal


@dataclass(frozen=True)
class Statement:
    party: str
    since: datetime
    until: datetime
    generated_at: datetime
    lines: tuple[StatementLine, ...]
    assets: tuple[AssetMovement, ...]


def parse_period(
    since: str | None, until: str | None, *, max_days: int = MAX_PERIOD_DAYS
) -> tuple[datetime, datetime]:
    """``[since, until)`` from two ISO-8601 texts: aware times, or dates (midnight
    UTC). Raises ``InvalidPeriod`` for a missing bound, a malformed or naive time, a
    reversed or empty period, or one longer than ``max_days``."""
    start = _instant(since, "from")
    end = _instant(until, "to")
    if end <= start:
        raise errors.InvalidPeriod(
            f"from ({start.isoformat()}) must be before to ({end.isoformat()})"
        )
    if end - start > timedelta(days=max_days):
        raise errors.InvalidPeriod(f"a statement covers at most {max_days} days")
    return start, end


def _instant(text: str | None, name: str) -> datetime:
    if text is None or not text.strip():
        raise errors.InvalidPeriod(f"{name} is required: a statement period has two bounds")
    text = text.strip()
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0), tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise errors.InvalidPeriod(
            f"{name}: {text[:40]!r} is not an ISO-8601 date or time with a zone"
        ) from exc
    if moment.tzinfo is None:
        raise errors.InvalidPeriod(f"{name}: give a time zone (e.g. {text}Z)")
    return moment.astimezone(UTC)


def may_read(actor: Actor, party: str) -> None:
    """Staff read any party's positions; an allocator its own party's alone."""
    if actor.role not in _READERS:
        raise errors.NotAuthorised(f"{actor.role} may not read a party's positions")
    if actor.role is Role.ALLOCATOR and actor.party != party:
        raise errors.NotAuthorised(f"{actor.id} acts for {actor.party}, not for {party}")


class PositionService:
    """Balances and statements of a party (read-only; see the module docstring)."""

    def __init__(self, db: Database, clock: Clock, *, max_period_days: int = MAX_PERIOD_DAYS):
        self._db = db
        self._clock = clock
        self._max_period_days = max_period_days

    def balances(self, actor: Actor, party: str, chains: Mapping[ChainName, Chain]) -> Balances:
        """The party's positions now. ``chains`` are the ledgers this process reaches; a
        chain not among them shows as ``UNAVAILABLE``. Raises ``NotAuthorised``,
        ``PartyNotFound`` (no KYC record) and ``EngineUnavailable``; never raises for a
        ledger's failure."""
        may_read(actor, party)
        book = self._read(lambda uow: _Book.read(uow, party))
        ledger = {
            (chain, account): _read_ledger(chains.get(chain), chain, account, assets)
            for (chain, account), assets in book.assets.items()
        }
        positions = [
            _position(chain, account, asset, ledger[(chain, account)][asset], book.legs)
            for (chain, account), assets in book.assets.items()
            for asset in assets
        ]
        return Balances(
            party=party,
            as_of=self._clock.now(),
            positions=tuple(positions),
            totals=_totals(positions, book.uninstructed),
        )

    def statement(
        self, actor: Actor, party: str, since: str | None, until: str | None
    ) -> Statement:
        """The party's statement of ``[since, until)`` (texts as ``parse_period`` reads
        them). Raises ``InvalidPeriod``, ``NotAuthorised``, ``PartyNotFound``,
        ``EngineUnavailable``."""
        may_read(actor, party)
        start, end = parse_period(since, until, max_days=self._max_period_days)

        def read(uow: UnitOfWork) -> Statement:
            _require_party(uow, party)
            legs = records.settled_legs(uow, party, since=start, until=end)
            ids = sorted({leg.settlement_id for leg in legs})
            applied = records.applied_submissions(uow, ids)
            opening = records.net_positions(uow, party, before=start)
            lines = _lines(legs, applied)
            return Statement(
                party, start, end, self._clock.now(), lines, _movements(opening, lines)
            )

        return self._read(read)

    def _read(self, work: Callable[[UnitOfWork], T]) -> T:
        with translated():
            return self._db.transaction(work)


def _require_party(uow: UnitOfWork, party: str) -> None:
    if not compliance_records.party_exists(uow, party):
        raise errors.PartyNotFound(f"party {party} has no KYC record")


# -- balances ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Book:
    """The engine's side of a party's balances, read in one transaction."""

    assets: dict[tuple[ChainName, str], list[Asset]]
    legs: list[records.OpenLeg]
    uninstructed: list[records.UninstructedCommitments]

    @classmethod
    def read(cls, uow: UnitOfWork, party: str) -> _Book:
        _require_party(uow, party)
        assets: dict[tuple[ChainName, str], list[Asset]] = {}
        for row in records.account_assets(uow, party):
            held = assets.setdefault((ChainName(row.chain), row.address), [])
            if row.asset_code is not None:
                held.append(Asset(row.asset_code, row.asset_issuer))
        return cls(
            assets, records.open_sent_legs(uow, party), records.uninstructed_commitments(uow, party)
        )


def _read_ledger(
    chain: Chain | None, name: ChainName, account: str, assets: list[Asset]
) -> dict[Asset, LedgerSide]:
    """The ledger's side of each asset of ``account``: one balance read per asset and
    one listing of its locks."""
    if chain is None:
        down = LedgerSide(LedgerStatus.UNAVAILABLE, detail=f"no {name} ledger in this process")
        return dict.fromkeys(assets, down)
    if not assets:
        return {}
    locks = chain.locks_of(account)
    out: dict[Asset, LedgerSide] = {}
    for asset in assets:
        try:
            held = chain.balance(account, asset)
        except AccountNotFound as exc:
            out[asset] = LedgerSide(LedgerStatus.ACCOUNT_NOT_FOUND, detail=str(exc))
            continue
        except AdapterError as exc:  # a transport failure, or an answer that says nothing
            out[asset] = LedgerSide(LedgerStatus.UNAVAILABLE, detail=str(exc))
            continue
        if not isinstance(locks, list):
            out[asset] = LedgerSide(LedgerStatus.UNAVAILABLE, held=held, detail=locks.reason)
            continue
        out[asset] = LedgerSide(LedgerStatus.OK, held, _own_locks(locks, account, asset))
    return out


def _own_locks(locks: Iterable[LockState], account: str, asset: Asset) -> Decimal:
    return sum(
        (s.amount or ZERO for s in locks if s.exists and s.sender == account and s.asset == asset),
        ZERO,
    )


def _position(
    chain: ChainName,
    account: str,
    asset: Asset,
    ledger: LedgerSide,
    legs: list[records.OpenLeg],
) -> Position:
    mine = [
        leg
        for leg in legs
        if (leg.chain, leg.sender, leg.asset_code, leg.asset_issuer)
        == (chain.value, account, asset.code, asset.issuer)
    ]
    locked = sum((leg.amount for leg in mine if leg.state in _LOCKED_STATES), ZERO)
    committed = sum((leg.amount for leg in mine if leg.state == "PENDING"), ZERO)
    low, high = _expected_locks(mine)
    breaks: list[str] = []
    if ledger.status is LedgerStatus.ACCOUNT_NOT_FOUND:
        breaks.append(f"the registered account {account} does not exist on the {chain} ledger")
    if ledger.locked is not None and not low <= ledger.locked <= high:
        expected = _plain(low) if low == high else f"between {_plain(low)} and {_plain(high)}"
        breaks.append(
            f"the ledger holds {_plain(ledger.locked)} {asset.code} in locks of {account}; "
            f"the engine's open settlements account for {expected}"
        )
    return Position(
        chain=chain,
        account=account,
        asset=asset,
        ledger=ledger,
        locked=locked,
        committed=committed,
        available=None if ledger.held is None else ledger.held - committed,
        expected_locked_min=low,
        expected_locked_max=high,
        breaks=tuple(breaks),
    )


def _plain(amount: Decimal) -> str:
    return format(amount.normalize(), "f")


def _expected_locks(legs: Iterable[records.OpenLeg]) -> tuple[Decimal, Decimal]:
    """What the account's ledger locks of the asset must add up to, at least and at
    most, from the engine's records (see the module docstring)."""
    low = high = ZERO
    for leg in legs:
        if leg.lock_kind not in _LEDGER_LOCKS:
            continue
        certain = leg.state == "LOCKED" and not leg.release_signed
        maybe = (
            (leg.state == "PENDING" and leg.lock_signed)
            or (leg.state == "LOCKED" and leg.release_signed)
            or leg.state == "REFUSED"
        )
        low += leg.amount if certain else ZERO
        high += leg.amount if certain or maybe else ZERO
    return low, high


def _totals(
    positions: list[Position], uninstructed: list[records.UninstructedCommitments]
) -> tuple[CurrencyTotal, ...]:
    by_currency: dict[str, list[Position]] = defaultdict(list)
    for position in positions:
        by_currency[position.asset.code].append(position)
    waiting = {u.currency: u.amount for u in uninstructed}
    totals = []
    for currency in sorted(by_currency.keys() | waiting.keys()):
        group = by_currency.get(currency, [])
        helds = [p.ledger.held for p in group]
        held = None if any(h is None for h in helds) else sum((h or ZERO for h in helds), ZERO)
        committed = sum((p.committed for p in group), ZERO) + waiting.get(currency, ZERO)
        totals.append(
            CurrencyTotal(
                currency=currency,
                held=held,
                locked=sum((p.locked for p in group), ZERO),
                committed=committed,
                uninstructed=waiting.get(currency, ZERO),
                available=None if held is None else held - committed,
            )
        )
    return tuple(totals)


# -- statements -------------------------------------------------------------------------


def _lines(
    legs: list[records.SettledLeg], applied: list[records.AppliedSubmission]
) -> tuple[StatementLine, ...]:
    txs: dict[tuple[UUID, int], list[LegTransaction]] = defaultdict(list)
    for sub in applied:
        txs[(sub.settlement_id, sub.leg_no)].append(
            LegTransaction(
                sub.purpose, sub.tx_hash, sub.ledger_index, sub.ledger_hash, sub.finalized_at
            )
        )
    lines: list[StatementLine] = []
    for leg in legs:
        found = list(txs.get((leg.settlement_id, leg.leg_no), []))
        if leg.released_tx_hash is not None:
            found.append(
                LegTransaction(
                    "release",
                    leg.released_tx_hash,
                    leg.released_ledger_index,
                    leg.released_ledger_hash,
                    None,
                )
            )
        sides = [("debit", leg.party_sends), ("credit", leg.party_receives)]
        lines.extend(
            StatementLine(
                settled_at=leg.settled_at,
                commitment_id=leg.commitment_id,
                settlement_id=leg.settlement_id,
                leg_no=leg.leg_no,
                kind=leg.kind,
                chain=ChainName(leg.chain),
                asset=Asset(leg.asset_code, leg.asset_issuer),
                direction=direction,
                amount=leg.amount,
                sender=leg.sender,
                receiver=leg.receiver,
                transactions=tuple(found),
            )
            for direction, applies in sides
            if applies
        )
    return tuple(lines)


def _movements(
    opening: list[records.NetPosition], lines: tuple[StatementLine, ...]
) -> tuple[AssetMovement, ...]:
    keys: dict[tuple[ChainName, Asset], Decimal] = {
        (ChainName(o.chain), Asset(o.asset_code, o.asset_issuer)): o.net for o in opening
    }
    credits: dict[tuple[ChainName, Asset], Decimal] = defaultdict(Decimal)
    debits: dict[tuple[ChainName, Asset], Decimal] = defaultdict(Decimal)
    for line in lines:
        key = (line.chain, line.asset)
        keys.setdefault(key, ZERO)
        (credits if line.direction == "credit" else debits)[key] += line.amount
    return tuple(
        AssetMovement(
            chain=chain,
            asset=asset,
            opening=keys[(chain, asset)],
            credits=credits[(chain, asset)],
            debits=debits[(chain, asset)],
            closing=keys[(chain, asset)] + credits[(chain, asset)] - debits[(chain, asset)],
        )
        for chain, asset in sorted(keys, key=lambda k: (k[0].value, k[1].code, k[1].issuer or ""))
    )
