"""Shared circuit-breaker records (migration 0007): published states and reset requests.

All SQL of ``breaker_states`` and ``breaker_resets`` lives here; ``settlement.breakers``
decides what to write. Functions take a ``UnitOfWork`` so the caller chooses the
transaction (publishing a process's states and applying its resets is one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ledger.database import UnitOfWork


@dataclass(frozen=True)
class BreakerRow:
    scope: str
    chain: str
    #: ``closed``, ``open`` or ``half_open``
    state: str
    failure_count: int
    opened_at: datetime | None
    updated_at: datetime
    applied_reset_id: int
    last_reset_at: datetime | None


@dataclass(frozen=True)
class ResetRequest:
    id: int
    chain: str
    requested_by: str
    requested_at: datetime


_COLUMNS = (
    "scope, chain, state, failure_count, opened_at, updated_at, applied_reset_id, last_reset_at"
)


def latest_resets(uow: UnitOfWork) -> dict[str, ResetRequest]:
    """The newest reset request of each chain that has one."""
    rows = uow.execute(
        "SELECT DISTINCT ON (chain) id, chain, requested_by, requested_at FROM breaker_resets"
        " ORDER BY chain, id DESC"
    )
    out: dict[str, ResetRequest] = {}
    for row in rows:
        request = ResetRequest(*tuple(row))
        out[request.chain] = request
    return out


def rows_of(uow: UnitOfWork, scope: str, *, for_update: bool = False) -> dict[str, BreakerRow]:
    lock = " FOR UPDATE" if for_update else ""
    rows = uow.execute(
        f"SELECT {_COLUMNS} FROM breaker_states WHERE scope = :scope{lock}", {"scope": scope}
    )
    found = [BreakerRow(*tuple(row)) for row in rows]
    return {row.chain: row for row in found}


def upsert(
    uow: UnitOfWork,
    *,
    scope: str,
    chain: str,
    state: str,
    failure_count: int,
    opened_at: datetime | None,
    at: datetime,
    applied_reset_id: int,
    reset_now: bool,
) -> None:
    uow.execute(
        "INSERT INTO breaker_states (scope, chain, state, failure_count, opened_at, updated_at,"
        " applied_reset_id, last_reset_at) VALUES (:scope, :chain, :state, :failures,"
        " :opened_at, :at, :applied, CASE WHEN :reset_now THEN :at END)"
        " ON CONFLICT (scope, chain) DO UPDATE SET state = EXCLUDED.state,"
        " failure_count = EXCLUDED.failure_count, opened_at = EXCLUDED.opened_at,"
        " updated_at = EXCLUDED.updated_at, applied_reset_id = EXCLUDED.applied_reset_id,"
        " last_reset_at = CASE WHEN :reset_now THEN :at ELSE breaker_states.last_reset_at END",
        {
            "scope": scope,
            "chain": chain,
            "state": state,
            "failures": failure_count,
            "opened_at": opened_at,
            "at": at,
            "applied": applied_reset_id,
            "reset_now": reset_now,
        },
    )


def all_rows(uow: UnitOfWork) -> list[BreakerRow]:
    rows = uow.execute(f"SELECT {_COLUMNS} FROM breaker_states ORDER BY scope, chain")
    return [BreakerRow(*tuple(row)) for row in rows]


def insert_reset(uow: UnitOfWork, *, chain: str, requested_by: str, at: datetime) -> ResetRequest:
    row = uow.execute(
        "INSERT INTO breaker_resets (chain, requested_by, requested_at)"
        " VALUES (:chain, :by, :at) RETURNING id, chain, requested_by, requested_at",
        {"chain": chain, "by": requested_by, "at": at},
    ).one()
    return ResetRequest(*tuple(row))


def resets(uow: UnitOfWork, *, limit: int = 100) -> list[ResetRequest]:
    rows = uow.execute(
        "SELECT id, chain, requested_by, requested_at FROM breaker_resets"
        " ORDER BY id DESC LIMIT :limit",
        {"limit": limit},
    )
    return [ResetRequest(*tuple(row)) for row in rows]
