"""Operations: health, liveness, readiness, Prometheus metrics and the circuit breakers.

``/health``, ``/healthz``, ``/readyz`` and ``/metrics`` are unsigned (probes and
scrapers hold no keys) and reveal no business data; the health routes read the database
through one check (``database_check``). Breakers are signed routes: every process that
talks to ledgers publishes its breakers into the database (``settlement.breakers``);
this process publishes its own whenever they are read here, and a reset request reaches
the other processes on their next publish.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import TypeVar

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from adapters.chain import Chain, Unavailable
from ledger.errors import LedgerError
from settlement import bootstrap
from settlement.api import schemas
from settlement.api.deps import (
    API_PREFIX,
    READ_ERRORS,
    WRITE_ERRORS,
    Admin,
    EngineDep,
    IdempotencyKey,
    Operations,
    OpsDep,
    Verifier,
    problem_responses,
)
from settlement.api.strict import StrictJsonRoute
from settlement.breakers import chain_name
from settlement.domain import errors
from settlement.services.anchors import anchor_ages

T = TypeVar("T")
log = logging.getLogger(__name__)
router = APIRouter(route_class=StrictJsonRoute)


def _publish_quietly(ops: Operations) -> None:
    # reading breakers must not fail because this process could not write its own
    try:
        ops.publish_breakers()
    except errors.SettlementError as exc:
        log.warning("could not publish this process's breakers: %s", exc)


async def publish_forever(ops: Operations, every_s: float) -> None:
    """Publish this process's breakers (and apply reset requests) every ``every_s``
    seconds until cancelled: the serving process's share of ``settlement.breakers``."""
    while True:
        await run_in_threadpool(_publish_quietly, ops)
        await asyncio.sleep(every_s)


def database_check(engine: bootstrap.Services) -> schemas.CheckOut:
    """Whether the database answers one round trip: the one database read of every
    health route. Never raises: a failure is the check's ``detail``."""
    try:
        engine.db.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means not ready; it is reported
        return schemas.CheckOut(ok=False, detail=f"{type(exc).__name__}: {exc}")
    return schemas.CheckOut(ok=True, detail="answered")


@router.get("/health", response_model=schemas.HealthOut, tags=["health"])
def health(engine: EngineDep, response: Response) -> schemas.HealthOut:
    """Liveness and database reachability; unsigned."""
    # the first probe, kept for those who call it; /healthz and /readyz ask the two apart
    if not database_check(engine).ok:
        response.status_code = 503
        return schemas.HealthOut(status="unavailable", database="unreachable")
    return schemas.HealthOut(status="ok", database="ok")


@router.get("/healthz", response_model=schemas.LiveOut, tags=["health"])
def healthz() -> schemas.LiveOut:
    """Liveness: the process answers. No I/O; unsigned."""
    return schemas.LiveOut(status="ok")


async def _bounded(call: Callable[[], T], timeout_s: float) -> T:
    return await asyncio.wait_for(run_in_threadpool(call), timeout=timeout_s)


def _ledger_check(chain: Chain) -> schemas.CheckOut:
    answer = chain.ledger_time()
    if isinstance(answer, Unavailable):
        state = "breaker open" if answer.breaker_open else "unreachable"
        return schemas.CheckOut(ok=False, detail=f"{state}: {answer.reason}")
    assert isinstance(answer, datetime)
    return schemas.CheckOut(ok=True, detail=f"validated ledger closed at {answer.isoformat()}")


@router.get(
    "/readyz",
    response_model=schemas.ReadyOut,
    responses={503: {"model": schemas.ReadyOut, "description": "A check failed"}},
    tags=["health"],
)
async def readyz(engine: EngineDep, ops: OpsDep, response: Response) -> schemas.ReadyOut:
    """Readiness: the database answers and every configured ledger serves a validated
    ledger, each within a short timeout. 200 when all pass, else 503; unsigned.
    ``anchors`` says how old the newest audit anchor is on each ledger: informative
    only (anchoring is delayed, never needed, when a ledger is down)."""
    timeout_s = ops.readiness_timeout_s
    checks: dict[str, schemas.CheckOut] = {}
    try:
        checks["database"] = await _bounded(partial(database_check, engine), timeout_s)
    except TimeoutError:
        checks["database"] = schemas.CheckOut(ok=False, detail=f"no answer in {timeout_s} s")
    if ops.ledgers is not None:
        for name, chain in sorted(ops.ledgers.chains.items()):
            try:
                checks[name.value] = await _bounded(partial(_ledger_check, chain), timeout_s)
            except TimeoutError:
                checks[name.value] = schemas.CheckOut(
                    ok=False, detail=f"no answer in {timeout_s} s"
                )
        if checks["database"].ok:
            await run_in_threadpool(_publish_quietly, ops)
    ready = all(c.ok for c in checks.values())
    if not ready:
        response.status_code = 503
    anchors = None
    if checks["database"].ok:
        anchors = await _anchors_quietly(engine, timeout_s)
    return schemas.ReadyOut(
        status="ready" if ready else "unavailable", checks=checks, anchors=anchors
    )


def _anchor_ages(engine: bootstrap.Services) -> schemas.AnchorsOut:
    accounts = bootstrap.anchor_accounts(engine.settings)
    return schemas.AnchorsOut.of(anchor_ages(engine.db, engine.clock, accounts))


async def _anchors_quietly(
    engine: bootstrap.Services, timeout_s: float
) -> schemas.AnchorsOut | None:
    """How old the anchors are, or None: anchors are not needed to serve, so a failure
    to read them is logged and never fails readiness."""
    try:
        return await _bounded(partial(_anchor_ages, engine), timeout_s)
    except (TimeoutError, errors.SettlementError, LedgerError) as exc:
        log.warning("readiness: anchor ages not read: %s", exc)
        return None


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
    tags=["health"],
)
def metrics(ops: OpsDep) -> Response:
    """Prometheus metrics (text format 0.0.4): requests and latencies of this process;
    transitions, settlements and breakers as the database records them. Unsigned."""
    _publish_quietly(ops)
    return Response(content=ops.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get(
    f"{API_PREFIX}/breakers",
    response_model=schemas.BreakersOut,
    responses=READ_ERRORS,
    tags=["admin"],
)
def breakers(ops: OpsDep, actor: Verifier) -> schemas.BreakersOut:
    """Every process's circuit breaker per chain (closed, open or half_open), with when
    it was last published, and the latest reset requests."""
    _publish_quietly(ops)
    return schemas.BreakersOut(
        breakers=[schemas.BreakerOut.of(r) for r in ops.board.states()],
        recent_resets=[schemas.ResetOut.of(r) for r in ops.board.resets(limit=20)],
    )


@router.post(
    f"{API_PREFIX}/breakers/{{chain}}/reset",
    status_code=202,
    response_model=schemas.ResetAcceptedOut,
    responses={**WRITE_ERRORS, **problem_responses(503)},
    tags=["admin"],
)
def reset_breaker(
    chain: str, engine: EngineDep, ops: OpsDep, actor: Admin, key: IdempotencyKey
) -> schemas.ResetAcceptedOut:
    """Ask every process to close its breaker of ``chain`` (202): this process does at
    once, workers on their next publish. The request is kept with who asked and when."""
    name = chain_name(chain)
    request = ops.board.request_reset(actor, name.value)
    applied = name in ops.publish_breakers()
    return schemas.ResetAcceptedOut(
        **schemas.ResetOut.of(request).model_dump(), applied_here=applied
    )
