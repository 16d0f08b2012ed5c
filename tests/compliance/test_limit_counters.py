"""The limit totals screening reads on submit, from counters, equal the sums they replace.

The oracle is the query ``lock_for_submit`` ran before migration 0015: a sum over the
commitments and their history. Every step of a seeded random run of lifecycles (submit,
request_info and resubmit, approve, reject, withdraw, expire, lock, release, settle,
force_cancel), with the clock moving across the 24 h edge, compares both for every
commitment; so does a burst of concurrent submits by one party.
"""

from __future__ import annotations

import random
import threading
from datetime import datetime, timedelta
from decimal import Decimal
from uuid import UUID

from compliance import records
from ledger import migrate
from settlement.bootstrap import DatabaseUrls
from settlement.domain.states import State
from settlement.domain.values import Actor, Role
from tests.support import ADMIN, ANNA, C_ALLOCATOR, SYSTEM, Desk

M_ALLOCATOR = Actor("key-alloc-m", Role.ALLOCATOR, party="meridian")
COUNTERPARTY = {"northwind": "meridian", "meridian": "northwind"}

ORACLE = (
    "SELECT"
    " (SELECT coalesce(sum(o.amount), 0) FROM commitments o"
    "   WHERE o.owner_party = :owner AND o.currency = :ccy AND o.id <> :id"
    "     AND o.state IN ('PENDING_REVIEW', 'VERIFIED', 'ESCROWED', 'SETTLED')"
    "     AND EXISTS (SELECT 1 FROM state_transitions t WHERE t.commitment_id = o.id"
    "                 AND t.event = 'submit' AND t.at > :since)),"
    " (SELECT coalesce(sum(o.amount), 0) FROM commitments o"
    "   WHERE o.currency = :ccy AND o.id <> :id"
    "     AND o.state IN ('PENDING_REVIEW', 'VERIFIED', 'ESCROWED'))"
)


def both_totals(desk: Desk, commitment_id: UUID, now: datetime) -> tuple[object, object]:
    """(what ``lock_for_submit`` reads, what the oracle sums) for one commitment."""

    def work(uow):  # type: ignore[no-untyped-def]
        context = records.lock_for_submit(uow, commitment_id, now=now)
        assert context is not None
        subject = context.subject
        old = uow.execute(
            ORACLE,
            {
                "owner": subject.owner_party,
                "ccy": subject.currency,
                "id": commitment_id,
                "since": now - timedelta(hours=24),
            },
        ).one()
        return (
            (subject.party_submitted_24h, subject.asset_open_total),
            (Decimal(old[0]), Decimal(old[1])),
        )

    return desk.commitments.database.transaction(work)  # type: ignore[no-any-return]


def assert_exact(desk: Desk, ids: list[UUID], now: datetime | None = None) -> None:
    at = now or desk.clock.now()
    for cid in ids:
        counted, summed = both_totals(desk, cid, at)
        assert counted == summed, (cid, at)


class Lifecycles:
    """Random legal events on a pool of commitments of two parties in two currencies."""

    def __init__(self, desk: Desk, rng: random.Random) -> None:
        self.desk, self.rng = desk, rng
        self.ids: list[UUID] = []
        self.events: set[str] = set()
        self.ended: set[UUID] = set()

    def create(self) -> None:
        allocator = self.rng.choice((C_ALLOCATOR, M_ALLOCATOR))
        assert allocator.party is not None
        expires = self.desk.clock.now() + timedelta(hours=self.rng.randint(1, 12))
        created = self.desk.commitments.create(
            allocator,
            deal_ref="DEAL-L",
            amount=f"{self.rng.randint(1, 900_000)}.{self.rng.randint(0, 99):02d}",
            currency=self.rng.choice(("USD", "EUR")),
            counterparty=COUNTERPARTY[allocator.party],
            expires_at=expires if self.rng.random() < 0.5 else None,
        )
        self.ids.append(created.commitment_id)

    def step(self) -> None:
        """One legal event on a random commitment (or a new one, or expiry, or time)."""
        roll = self.rng.random()
        if roll < 0.15 or not self.ids:
            self.create()
            return
        if roll < 0.25:
            self.desk.clock.advance(timedelta(minutes=self.rng.choice((1, 7, 59, 300, 1400))))
            return
        if roll < 0.28:
            if self.desk.commitments.expire_due():
                self.events.add("expire")
            return
        live = [cid for cid in self.ids if cid not in self.ended]
        if not live:
            return
        cid = self.rng.choice(live)
        service = self.desk.commitments
        owner = service.get(cid).owner_party
        allocator = C_ALLOCATOR if owner == "northwind" else M_ALLOCATOR
        state = service.state_of(cid)
        choices = {
            State.DRAFT: (("submit", allocator), ("submit", allocator), ("withdraw", allocator)),
            State.PENDING_REVIEW: (("approve", ANNA), ("reject", ANNA), ("request_info", ANNA)),
            State.VERIFIED: (("lock", SYSTEM), ("lock", SYSTEM), ("withdraw", allocator)),
            State.ESCROWED: (("settle", SYSTEM), ("release", SYSTEM), ("force_cancel", ADMIN)),
        }.get(state)
        if choices is None:
            self.ended.add(cid)  # terminal: events on it only fail
            return
        event, actor = self.rng.choice(choices)
        reason = "test reason" if event in ("reject", "request_info", "force_cancel") else None
        service.apply(actor, cid, event, reason=reason)
        self.events.add(event)


def test_counters_equal_the_sums_through_random_lifecycles(desk: Desk) -> None:
    rng = random.Random(20261207)
    run = Lifecycles(desk, rng)
    for n in range(400):
        run.step()
        # a counter once wrong stays wrong (it is a running sum), so a look every few
        # steps catches what a look after each would, at a quarter of the reads
        if n % 4 == 3:
            assert_exact(desk, run.ids)
    assert run.events == {
        "submit",
        "withdraw",
        "approve",
        "reject",
        "request_info",
        "lock",
        "settle",
        "release",
        "force_cancel",
        "expire",
    }


def test_the_window_is_exact_to_the_instant_at_its_edge(desk: Desk) -> None:
    """A submit inside the edge bucket counts until exactly 24 h after it, not after."""
    first = desk.submitted("100")
    desk.clock.advance(timedelta(minutes=3, microseconds=17))
    second = desk.submitted("20")
    probe = desk.commitments.create(
        C_ALLOCATOR, deal_ref="DEAL-P", amount="1", currency="USD", counterparty="meridian"
    ).commitment_id
    first_at = desk.commitments.history(first)[-1].at
    second_at = desk.commitments.history(second)[-1].at
    for at, expected in (
        (first_at + timedelta(hours=24) - timedelta(microseconds=1), Decimal("120")),
        (first_at + timedelta(hours=24), Decimal("20")),
        (second_at + timedelta(hours=24) - timedelta(microseconds=1), Decimal("20")),
        (second_at + timedelta(hours=24), Decimal("0")),
    ):
        counted, summed = both_totals(desk, probe, at)
        assert counted == summed
        assert counted[0] == expected, at  # type: ignore[index]
    # every instant of the bucket around the edge, microsecond steps at the boundaries
    for seconds in range(0, 3 * 600, 37):
        assert_exact(desk, [probe, first, second], first_at + timedelta(hours=23, seconds=seconds))


def test_a_resubmit_moves_the_amount_to_its_new_instant(desk: Desk) -> None:
    cid = desk.submitted("500")
    probe = desk.commitments.create(
        C_ALLOCATOR, deal_ref="DEAL-P", amount="1", currency="USD", counterparty="meridian"
    ).commitment_id
    desk.commitments.request_info(ANNA, cid, reason="need more")
    desk.clock.advance(timedelta(hours=20))
    desk.commitments.submit(C_ALLOCATOR, cid)
    later = desk.clock.now() + timedelta(hours=10)
    counted, summed = both_totals(desk, probe, later)
    assert counted == summed == (Decimal("500"), Decimal("500"))


def test_concurrent_submits_of_one_party_keep_the_totals_exact(desk: Desk) -> None:
    service = desk.commitments
    ids = [
        service.create(
            C_ALLOCATOR,
            deal_ref="DEAL-T",
            amount=f"{n + 1}.25",
            currency="USD",
            counterparty="meridian",
        ).commitment_id
        for n in range(48)
    ]
    failures: list[BaseException] = []
    start = threading.Barrier(16)

    def submit_share(share: list[UUID]) -> None:
        try:
            start.wait()
            for cid in share:
                service.submit(C_ALLOCATOR, cid, expected_version=1)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            failures.append(exc)

    threads = [threading.Thread(target=submit_share, args=(ids[n::16],)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    assert_exact(desk, ids)
    counted, _ = both_totals(desk, ids[0], desk.clock.now())
    assert counted == (sum(Decimal(f"{n + 1}.25") for n in range(1, 48)),) * 2


def test_the_upgrade_backfills_the_counters_of_an_existing_database(
    desk: Desk, fresh_urls: DatabaseUrls
) -> None:
    run = Lifecycles(desk, random.Random(7))
    for _ in range(120):
        run.step()
    assert migrate.downgrade(fresh_urls.owner, "0014") == "0014"
    assert migrate.upgrade(fresh_urls.owner) == migrate.head_revision()
    assert_exact(desk, run.ids)
    for hours in (1, 6, 23, 25):
        assert_exact(desk, run.ids, desk.clock.now() + timedelta(hours=hours))
