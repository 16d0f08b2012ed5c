"""Response bodies of a party's balances and statement, and the statement as CSV.

Amounts are decimal strings, as everywhere in the API; unlike a request's amounts they
may be negative (a net position, a debit) and are null where a ledger did not answer.
The meaning of each figure is ``settlement.services.positions``'s; the descriptions here
repeat what a caller needs.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from decimal import Decimal
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, Field

from adapters.chain import Asset
from settlement.api.schemas import amount_text
from settlement.services import positions as model

Signed = Annotated[str, Field(description="Decimal string; may be negative", examples=["-12.5"])]


def _text(value: Decimal | None) -> str | None:
    return None if value is None else amount_text(value)


class AssetOut(BaseModel):
    code: str
    issuer: Annotated[str | None, Field(description="null for the native asset")]

    @classmethod
    def of(cls, asset: Asset) -> AssetOut:
        return cls(code=asset.code, issuer=asset.issuer)


class LedgerSideOut(BaseModel):
    status: Annotated[
        str,
        Field(
            description="ok; unavailable (the ledger could not be asked: figures null, "
            "never 0); account_not_found (the ledger holds no such account)"
        ),
    ]
    held: Annotated[
        Signed | None,
        Field(description="What the account holds now (locked funds are not in it)"),
    ]
    locked: Annotated[
        Signed | None, Field(description="The account's own locks of the asset on the ledger")
    ]
    detail: str


class PositionOut(BaseModel):
    chain: str
    account: str
    asset: AssetOut
    ledger: LedgerSideOut
    locked: Annotated[
        Signed,
        Field(description="Sent legs of open settlements locked, held by the agent or refused"),
    ]
    committed: Annotated[
        Signed, Field(description="Sent legs of open settlements not locked yet (in held)")
    ]
    available: Annotated[Signed | None, Field(description="held - committed; null if unknown")]
    expected_locked_min: Signed
    expected_locked_max: Signed
    breaks: Annotated[
        list[str], Field(description="Where the ledger disagrees with the engine's records")
    ]

    @classmethod
    def of(cls, p: model.Position) -> PositionOut:
        return cls(
            chain=p.chain.value,
            account=p.account,
            asset=AssetOut.of(p.asset),
            ledger=LedgerSideOut(
                status=p.ledger.status.value,
                held=_text(p.ledger.held),
                locked=_text(p.ledger.locked),
                detail=p.ledger.detail,
            ),
            locked=amount_text(p.locked),
            committed=amount_text(p.committed),
            available=_text(p.available),
            expected_locked_min=amount_text(p.expected_locked_min),
            expected_locked_max=amount_text(p.expected_locked_max),
            breaks=list(p.breaks),
        )


class CurrencyTotalOut(BaseModel):
    currency: str
    held: Signed | None
    locked: Signed
    committed: Annotated[
        Signed, Field(description="Pending legs plus VERIFIED commitments not yet instructed")
    ]
    uninstructed: Signed
    available: Signed | None

    @classmethod
    def of(cls, t: model.CurrencyTotal) -> CurrencyTotalOut:
        return cls(
            currency=t.currency,
            held=_text(t.held),
            locked=amount_text(t.locked),
            committed=amount_text(t.committed),
            uninstructed=amount_text(t.uninstructed),
            available=_text(t.available),
        )


class BalancesOut(BaseModel):
    party: str
    as_of: datetime
    complete: Annotated[bool, Field(description="Every ledger answered")]
    breaks: Annotated[int, Field(description="How many breaks the positions show")]
    positions: list[PositionOut]
    totals: list[CurrencyTotalOut]

    @classmethod
    def of(cls, b: model.Balances) -> BalancesOut:
        return cls(
            party=b.party,
            as_of=b.as_of,
            complete=b.complete,
            breaks=b.breaks,
            positions=[PositionOut.of(p) for p in b.positions],
            totals=[CurrencyTotalOut.of(t) for t in b.totals],
        )


class LegTransactionOut(BaseModel):
    purpose: Annotated[
        str, Field(description="lock, claim, commit, unwind, or release (by someone else)")
    ]
    tx_hash: str
    ledger_index: int | None
    ledger_hash: str | None
    recorded_at: datetime | None


class StatementLineOut(BaseModel):
    settled_at: datetime
    commitment_id: UUID
    settlement_id: UUID
    leg_no: int
    kind: Annotated[str, Field(description="principal, or fee")]
    chain: str
    asset: AssetOut
    direction: Annotated[str, Field(description="debit (the party sent) or credit")]
    amount: Signed
    signed_amount: Signed
    sender: str
    receiver: str
    transactions: list[LegTransactionOut]

    @classmethod
    def of(cls, line: model.StatementLine) -> StatementLineOut:
        return cls(
            settled_at=line.settled_at,
            commitment_id=line.commitment_id,
            settlement_id=line.settlement_id,
            leg_no=line.leg_no,
            kind=line.kind,
            chain=line.chain.value,
            asset=AssetOut.of(line.asset),
            direction=line.direction,
            amount=amount_text(line.amount),
            signed_amount=amount_text(line.signed_amount),
            sender=line.sender,
            receiver=line.receiver,
            transactions=[LegTransactionOut(**vars(t)) for t in line.transactions],
        )


class AssetMovementOut(BaseModel):
    chain: str
    asset: AssetOut
    opening: Signed
    credits: Signed
    debits: Signed
    closing: Signed


class StatementOut(BaseModel):
    party: str
    from_: Annotated[datetime, Field(alias="from", description="Start, inclusive")]
    to: Annotated[datetime, Field(description="End, exclusive")]
    generated_at: datetime
    lines: list[StatementLineOut]
    assets: Annotated[
        list[AssetMovementOut],
        Field(description="Per chain and asset: opening + credits - debits = closing"),
    ]

    @classmethod
    def of(cls, s: model.Statement) -> StatementOut:
        movements = [
            AssetMovementOut(
                chain=m.chain.value,
                asset=AssetOut.of(m.asset),
                opening=amount_text(m.opening),
                credits=amount_text(m.credits),
                debits=amount_text(m.debits),
                closing=amount_text(m.closing),
            )
            for m in s.assets
        ]
        return cls.model_validate(
            {
                "party": s.party,
                "from": s.since,
                "to": s.until,
                "generated_at": s.generated_at,
                "lines": [StatementLineOut.of(line) for line in s.lines],
                "assets": movements,
            }
        )


#: the CSV's columns: ``record`` is opening, leg or closing
CSV_COLUMNS = (
    "record",
    "at",
    "chain",
    "asset_code",
    "asset_issuer",
    "direction",
    "amount",
    "signed_amount",
    "kind",
    "commitment_id",
    "settlement_id",
    "leg_no",
    "sender",
    "receiver",
    "lock_tx_hash",
    "lock_ledger_index",
    "lock_ledger_hash",
    "payout_purpose",
    "payout_tx_hash",
    "payout_ledger_index",
    "payout_ledger_hash",
)
_PAYOUTS = ("commit", "release", "claim")


def statement_csv(s: model.Statement) -> str:
    """The statement as CSV (RFC 4180, a header row): per asset an ``opening`` row at
    ``from``, a ``leg`` row per line, and a ``closing`` row at ``to``; for every asset
    the opening amount plus the legs' signed amounts is the closing amount."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for m in s.assets:
        writer.writerow(_position_row("opening", s.since, m, m.opening))
    for line in s.lines:
        writer.writerow(_leg_row(line))
    for m in s.assets:
        writer.writerow(_position_row("closing", s.until, m, m.closing))
    return out.getvalue()


def _position_row(
    record: str, at: datetime, m: model.AssetMovement, amount: Decimal
) -> dict[str, str]:
    text = amount_text(amount)
    return {
        "record": record,
        "at": at.isoformat(),
        "chain": m.chain.value,
        "asset_code": m.asset.code,
        "asset_issuer": m.asset.issuer or "",
        "amount": text,
        "signed_amount": text,
    }


def _leg_row(line: model.StatementLine) -> dict[str, str]:
    by_purpose = {t.purpose: t for t in line.transactions}
    lock = by_purpose.get("lock")
    payout = next((by_purpose[p] for p in _PAYOUTS if p in by_purpose), None)
    return {
        "record": "leg",
        "at": line.settled_at.isoformat(),
        "chain": line.chain.value,
        "asset_code": line.asset.code,
        "asset_issuer": line.asset.issuer or "",
        "direction": line.direction,
        "amount": amount_text(line.amount),
        "signed_amount": amount_text(line.signed_amount),
        "kind": line.kind,
        "commitment_id": str(line.commitment_id),
        "settlement_id": str(line.settlement_id),
        "leg_no": str(line.leg_no),
        "sender": line.sender,
        "receiver": line.receiver,
        "lock_tx_hash": lock.tx_hash if lock else "",
        "lock_ledger_index": str(lock.ledger_index) if lock and lock.ledger_index else "",
        "lock_ledger_hash": (lock.ledger_hash or "") if lock else "",
        "payout_purpose": payout.purpose if payout else "",
        "payout_tx_hash": payout.tx_hash if payout else "",
        "payout_ledger_index": str(payout.ledger_index) if payout and payout.ledger_index else "",
        "payout_ledger_hash": (payout.ledger_hash or "") if payout else "",
    }
