"""Circuit breakers shared through the database: one board for every process.

Each process that talks to ledgers (the API process, each ``settle worker``) holds one
``ChainGuard`` per chain in memory. ``BreakerBoard.publish(scope, guards)`` writes their
states into ``breaker_states`` under the process's scope and, in the same transaction,
applies the reset requests made for those chains since the process last published: so
``request_reset`` (an admin's act, kept in the append-only ``breaker_resets`` with who
and when) reaches every process within one publish interval, and ``states()`` shows
every process's breakers, each with when it was last published (a stale ``updated_at``
means a process that stopped publishing, most likely gone).

A process that publishes for the first time applies a request made after its board
was created (a breaker in a process that started after a request is fresh anyway).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from adapters.chain import ChainName
from adapters.resilience import ChainGuard
from ledger import breakers as breaker_records
from ledger.breakers import BreakerRow, ResetRequest
from ledger.database import Database, UnitOfWork
from settlement.clock import Clock
from settlement.domain import errors
from settlement.domain.values import Actor, Role
from settlement.services.translate import translated

log = logging.getLogger(__name__)

#: pybreaker's state names as the table (and the API) spell them
STATE_NAMES = {"closed": "closed", "open": "open", "half-open": "half_open"}
STATES = ("closed", "open", "half_open")


def chain_name(chain: str) -> ChainName:
    """The chain named by ``chain``; ``InvalidInput`` for anything else."""
    try:
        return ChainName(chain)
    except ValueError as exc:
        known = ", ".join(c.value for c in ChainName)
        raise errors.InvalidInput(f"chain must be one of {known}, not {chain!r}") from exc


class BreakerBoard:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._created_at = clock.now()

    def publish(self, scope: str, guards: Mapping[ChainName, ChainGuard]) -> list[ChainName]:
        """Write the states of ``guards`` under ``scope``, first resetting each guard
        that has a reset request it has not applied. Returns the chains it reset.

        Raises ``EngineUnavailable`` when the database cannot be reached (the guards
        then keep their states; call again later).
        """
        if not 1 <= len(scope) <= 200:
            raise errors.InvalidInput("a breaker scope has 1 to 200 characters")
        now = self._clock.now()

        def work(uow: UnitOfWork) -> list[ChainName]:
            latest = breaker_records.latest_resets(uow)
            published = breaker_records.rows_of(uow, scope, for_update=True)
            reset: list[ChainName] = []
            for chain, guard in sorted(guards.items()):
                request = latest.get(chain.value)
                row = published.get(chain.value)
                applied = row.applied_reset_id if row is not None else 0
                due = request is not None and (
                    request.id > applied
                    if row is not None
                    else request.requested_at > self._created_at
                )
                if request is not None and (due or row is None):
                    applied = request.id
                if due:
                    assert request is not None
                    guard.reset()
                    reset.append(chain)
                    log.warning(
                        "circuit breaker %s reset in %s on request %d of %s (%s)",
                        chain.value,
                        scope,
                        request.id,
                        request.requested_by,
                        request.requested_at.isoformat(),
                    )
                state = guard.state
                breaker_records.upsert(
                    uow,
                    scope=scope,
                    chain=chain.value,
                    state=STATE_NAMES.get(state.state, state.state),
                    failure_count=state.consecutive_failures,
                    opened_at=state.opened_at,
                    at=now,
                    applied_reset_id=applied,
                    reset_now=due,
                )
            return reset

        with translated():
            return self._db.transaction(work)

    def states(self) -> list[BreakerRow]:
        """Every published breaker, by scope then chain."""
        with translated(), self._db.unit_of_work() as uow:
            return breaker_records.all_rows(uow)

    def resets(self, *, limit: int = 100) -> list[ResetRequest]:
        """The latest reset requests, newest first."""
        with translated(), self._db.unit_of_work() as uow:
            return breaker_records.resets(uow, limit=limit)

    def request_reset(self, actor: Actor, chain: str) -> ResetRequest:
        """Ask every process to close its breaker of ``chain`` on its next publish.

        Only an admin may (``NotAuthorised``); ``InvalidInput`` for an unknown chain.
        The request is kept for good: it is the audit trace of the reset.
        """
        if actor.role is not Role.ADMIN:
            raise errors.NotAuthorised(f"only an admin resets breakers; {actor.id} is {actor.role}")
        name = chain_name(chain)
        now = self._clock.now()

        def work(uow: UnitOfWork) -> ResetRequest:
            return breaker_records.insert_reset(
                uow, chain=name.value, requested_by=actor.id, at=now
            )

        with translated():
            request = self._db.transaction(work)
        log.warning(
            "circuit breaker reset of %s requested by %s (request %d)",
            name.value,
            actor.id,
            request.id,
        )
        return request
