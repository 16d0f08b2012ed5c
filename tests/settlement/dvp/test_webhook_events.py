"""Settlement events in the webhook outbox, from a real settlement on both local
ledgers: each written with its change, in order, the committed one naming every leg's
ledger transactions."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from ledger import webhooks as records
from settlement.dvp import Progress
from tests.support import ADMIN

from .conftest import Dvp
from .test_dvp import _instruct


def _events(dvp: Dvp, commitment_id: UUID) -> list[tuple[str, dict[str, Any]]]:
    rows = dvp.engine.db.statements(
        lambda uow: uow.execute(
            "SELECT type, payload FROM webhook_events WHERE commitment_id = :id"
            " ORDER BY audit_seq",
            {"id": commitment_id},
        ).all()
    )
    return [(r[0], r[1]) for r in rows]


def test_a_settlement_reports_its_events_with_their_transactions(dvp: Dvp) -> None:
    dvp.engine.webhooks.register(
        ADMIN, url="http://127.0.0.1:9/dvp", event_types=list(records.EventType), party=None
    )
    cid = dvp.verified_commitment()
    sid = _instruct(dvp, cid)
    result = dvp.drive(sid)
    assert (result.progress, result.status) == (Progress.DONE, "SETTLED"), result
    events = _events(dvp, cid)
    assert [t for t, _ in events] == [
        "commitment.created",
        "commitment.submitted",
        "review.approved",
        "settlement.instructed",
        "settlement.locked",
        "settlement.committed",
    ]
    locked, committed = events[-2][1], events[-1][1]
    assert locked["settlement_id"] == committed["settlement_id"] == str(sid)
    assert (committed["from_state"], committed["to_state"]) == ("ESCROWED", "SETTLED")
    _, legs, subs = dvp.coordinator.settlement(sid)
    applied = {(s.leg_no, s.purpose): s.tx_hash for s in subs if s.status == "APPLIED"}
    reported = {
        (leg["leg_no"], tx["purpose"]): tx["tx_hash"]
        for leg in committed["legs"]
        for tx in leg["transactions"]
    }
    assert reported == applied
    assert [leg["state"] for leg in committed["legs"]] == ["COMMITTED"] * len(legs)
    assert all(tx["ledger_index"] for leg in committed["legs"] for tx in leg["transactions"])


def test_a_settlement_aborted_before_it_escrowed_reports_it_unwound(dvp: Dvp) -> None:
    """An admin cancels before every leg locked: the commitment never left VERIFIED, so
    no transition reports the unwind; the close does (``settlement_unwound`` in the
    audit log, ``settlement.unwound`` to the allocator), once."""
    dvp.engine.webhooks.register(
        ADMIN, url="http://127.0.0.1:9/dvp", event_types=list(records.EventType), party=None
    )
    cid = dvp.verified_commitment()
    sid = _instruct(dvp, cid)
    dvp.coordinator.request_force_cancel(ADMIN, sid, "the deal was pulled")
    result = dvp.drive(sid)
    assert (result.progress, result.status) == (Progress.DONE, "UNWOUND"), result
    events = _events(dvp, cid)
    assert [t for t, _ in events][-2:] == ["settlement.instructed", "settlement.unwound"]
    unwound = events[-1][1]
    assert unwound["settlement_id"] == str(sid)
    assert "force-cancel" in unwound["reason"]
    actions = [e.action for e in dvp.engine.commitments.audit_trail(cid)]
    assert actions.count("settlement_unwound") == 1
    assert dvp.coordinator.step(sid).progress is Progress.DONE
    assert [e.action for e in dvp.engine.commitments.audit_trail(cid)] == actions
    assert dvp.engine.commitments.verify_audit().ok  # nothing reached a ledger to check
