"""Prometheus metrics of the API process and of the engine as the database records it.

``ApiMetrics`` owns one ``CollectorRegistry`` (one per app, so several apps in one
process, as in the tests, never share series). It holds:

- ``settlement_http_requests_total`` and ``settlement_http_request_duration_seconds``
  by route template, method and status, observed by ``settlement.api.observe`` in front
  of the signature guard (so refused requests count too);
- what the database says at scrape time (``EngineCollector``): commitment transitions
  by event, commitments by state, settlements by status and decision, settlements
  flagged for review, every published circuit breaker by scope and chain, webhook
  deliveries waiting and dead (``settlement_webhook_deliveries`` by ``status``), and the
  audit anchors (below). Reading these at scrape time means transitions made by workers
  in other processes count, and a restarted API process loses nothing.

The audit anchors, per ledger (``chain``):

- ``settlement_anchor_age_seconds``: seconds since the newest anchor applied on that
  ledger was taken (the audit log is fixed there up to about that long ago); it grows
  while the ledger is down or the worker does not anchor;
- ``settlement_anchor_last_applied_timestamp_seconds``: the Unix time that anchor was
  taken, the same fact in the form Prometheus prefers (``time() - x`` in a query);
- ``settlement_anchors_unpublished``: anchors taken but not yet applied on a ledger the
  settings name an anchor account for;
- ``settlement_anchor_last_taken_timestamp_seconds`` (no label): the newest anchor taken.

Before any anchor has landed on a ledger its age and timestamp have no sample: 0 would
read as "just anchored" and +Inf would break every sum and graph, while an absent series
is what ``absent()`` and ``unless`` are for. ``settlement_anchors_unpublished`` always
has a sample for each configured ledger, so "anchors are not landing" (including "none
ever landed") is one alert on it staying above 0.

A scrape while the database is unreachable still answers: ``settlement_database_up`` is
0 and the database-derived families are absent.

Under ``settle serve --workers N`` each worker is a process of its own and a scrape
reaches one of them, so the request families are kept in prometheus-client's
multiprocess mode (``multiprocess=True``, in the directory ``PROMETHEUS_MULTIPROC_DIR``
named when the worker imported prometheus-client): every worker writes its values to
files there, and a scrape of any worker sums them all.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from ledger import anchors as anchor_records
from ledger import breakers as breaker_records
from ledger import commitments as commitment_records
from ledger import settlements as settlement_records
from ledger import webhooks as webhook_records
from ledger.database import Database
from settlement.breakers import STATES
from settlement.clock import Clock, SystemClock
from settlement.domain import errors
from settlement.domain.states import TRANSITIONS, State
from settlement.services.translate import translated

log = logging.getLogger(__name__)

#: the variable naming prometheus-client's multiprocess directory (read at its import)
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: request latency buckets, seconds: loopback API calls take milliseconds; a call that
#: reaches a ledger may take seconds
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ApiMetrics:
    """``clock`` dates the anchors' ages (default: the system's); ``anchor_chains`` are the
    ledgers the settings name an anchor account for."""

    def __init__(
        self,
        db: Database,
        *,
        multiprocess: bool = False,
        clock: Clock | None = None,
        anchor_chains: Sequence[str] = (),
    ) -> None:
        self._multiprocess_dir: str | None = None
        if multiprocess:
            # the values go where the variable pointed when prometheus-client was
            # imported; without it they live in memory and a scrape would sum nothing
            if not getattr(values.ValueClass, "_multiprocess", False):
                raise ValueError(
                    f"multiprocess metrics need {MULTIPROC_DIR_ENV} set before"
                    " prometheus-client is imported"
                )
            self._multiprocess_dir = os.environ[MULTIPROC_DIR_ENV]
        self._engine = EngineCollector(db, clock=clock, anchor_chains=anchor_chains)
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "settlement_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "settlement_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template, method and status.",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.registry.register(self._engine)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        labels = {"route": route, "method": method, "status": str(status)}
        self.requests.labels(**labels).inc()
        self.latency.labels(**labels).observe(seconds)

    def render(self) -> bytes:
        """The registry in the Prometheus text format (version 0.0.4); in multiprocess
        mode the request families summed over every worker's files instead of this
        process's own."""
        if self._multiprocess_dir is None:
            return generate_latest(self.registry)
        scrape = CollectorRegistry()
        MultiProcessCollector(scrape, path=self._multiprocess_dir)  # type: ignore[no-untyped-call]
        scrape.register(self._engine)
        return generate_latest(scrape)


class EngineCollector(Collector):
    """Families read from the database at each scrape."""

    def __init__(
        self, db: Database, *, clock: Clock | None = None, anchor_chains: Sequence[str] = ()
    ) -> None:
        self._db = db
        self._clock = clock or SystemClock()
        self._anchor_chains = tuple(anchor_chains)

    def describe(self) -> list[Metric]:
        # collected at scrape time only: describing must not touch the database
        return []

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "settlement_database_up", "1 if the database answered this scrape, else 0."
        )
        try:
            read = self._read()
        except errors.SettlementError as exc:
            log.warning("metrics: database not readable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from read

    def _read(self) -> list[Metric]:
        with translated(), self._db.unit_of_work() as uow:
            transitions = commitment_records.count_transitions_by_event(uow)
            states = commitment_records.count_by_state(uow)
            settlements = settlement_records.count_by_status_and_decision(uow)
            flagged = settlement_records.count_flagged(uow)
            breakers = breaker_records.all_rows(uow)
            anchored = anchor_records.anchor_status(uow, self._anchor_chains)
            deliveries = webhook_records.delivery_counts(uow)
        return [
            _transitions(transitions),
            _commitments(states),
            _settlements(settlements),
            _gauge(
                "settlement_settlements_needs_review",
                "Settlements flagged for a person.",
                flagged,
            ),
            *_breakers(breakers),
            *_anchors(anchored, self._clock),
            _webhook_deliveries(deliveries),
        ]


def _webhook_deliveries(counts: dict[str, int]) -> Metric:
    family = GaugeMetricFamily(
        "settlement_webhook_deliveries",
        "Webhook deliveries not delivered: pending (due or retrying) and dead (given up).",
        labels=["status"],
    )
    for status in ("pending", "dead"):
        family.add_metric([status], int(counts.get(status, 0)))
    return family


def _transitions(counts: dict[str, int]) -> Metric:
    family = CounterMetricFamily(
        "settlement_commitment_transitions",
        "Commitment state transitions recorded in the database, by event.",
        labels=["event"],
    )
    # every event of the state table, so a series exists before its first transition
    events = sorted({str(t.event) for t in TRANSITIONS} | {str(e) for e in counts})
    for event in events:
        family.add_metric([event], int(counts.get(event, 0)))
    return family


def _commitments(counts: dict[str, int]) -> Metric:
    family = GaugeMetricFamily(
        "settlement_commitments", "Commitments by current state.", labels=["state"]
    )
    for state in State:
        family.add_metric([state.value], int(counts.get(state.value, 0)))
    return family


def _settlements(rows: list[tuple[str, str, int]]) -> Metric:
    family = GaugeMetricFamily(
        "settlement_settlements",
        "Settlements by status and decision (NONE before a decision).",
        labels=["status", "decision"],
    )
    for status, decision, count in rows:
        family.add_metric([str(status), str(decision)], int(count))
    return family


def _gauge(name: str, documentation: str, value: int) -> Metric:
    family = GaugeMetricFamily(name, documentation)
    family.add_metric([], value)
    return family


def _breakers(rows: list[breaker_records.BreakerRow]) -> list[Metric]:
    state = GaugeMetricFamily(
        "settlement_breaker_state",
        "Circuit breaker state per process scope and chain: 1 for the current state.",
        labels=["scope", "chain", "state"],
    )
    failures = GaugeMetricFamily(
        "settlement_breaker_failures",
        "Consecutive transport failures counted by the breaker, per scope and chain.",
        labels=["scope", "chain"],
    )
    for row in rows:
        for name in STATES:
            state.add_metric([row.scope, row.chain, name], 1 if row.state == name else 0)
        failures.add_metric([row.scope, row.chain], row.failure_count)
    return [state, failures]


def _anchors(status: anchor_records.AnchorStatus, clock: Clock) -> list[Metric]:
    age = GaugeMetricFamily(
        "settlement_anchor_age_seconds",
        "Seconds since the newest audit anchor applied on the ledger was taken.",
        labels=["chain"],
    )
    applied = GaugeMetricFamily(
        "settlement_anchor_last_applied_timestamp_seconds",
        "Unix time at which the newest audit anchor applied on the ledger was taken.",
        labels=["chain"],
    )
    now = clock.now()
    for chain, landed in sorted(status.landed.items()):
        # never negative: another process's clock may run a little ahead of this one
        age.add_metric([chain], max((now - landed.created_at).total_seconds(), 0.0))
        applied.add_metric([chain], landed.created_at.timestamp())
    unpublished = GaugeMetricFamily(
        "settlement_anchors_unpublished",
        "Audit anchors taken but not yet applied on the ledger.",
        labels=["chain"],
    )
    for chain, count in sorted(status.unpublished.items()):
        unpublished.add_metric([chain], count)
    taken = GaugeMetricFamily(
        "settlement_anchor_last_taken_timestamp_seconds",
        "Unix time at which the newest audit anchor was taken.",
    )
    if status.last_taken is not None:
        taken.add_metric([], status.last_taken.created_at.timestamp())
    return [age, applied, unpublished, taken]


__all__ = ["ApiMetrics", "EngineCollector"]
