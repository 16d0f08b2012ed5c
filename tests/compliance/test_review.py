"""The officers' review: screening stored on submit, segregation of duties, four eyes,
hard fails and overrides, review rounds, and what the database refuses by itself."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from settlement.domain import errors
from settlement.domain.values import Actor, Role
from tests.support import ADMIN, ANNA, BORIS, SENIOR, Desk
from tests.support import C_ALLOCATOR as ALLOCATOR

THRESHOLD = Decimal("1000000")  # config/default.toml four_eyes_threshold


def state(desk: Desk, cid: object) -> tuple[str, int]:
    record = desk.commitments.get(cid)  # type: ignore[arg-type]
    return record.state, record.version


def test_submit_stores_the_screening_with_its_list_versions(desk: Desk) -> None:
    cid = desk.submitted()
    detail = desk.compliance.review_detail(cid)
    current = detail.current_screening
    assert current is not None and current.review_version == 2
    lists = {v.version_id for v in desk.compliance.sanctions_lists()}
    assert set(current.screening.list_versions) == lists
    assert current.screening.outcome == "clear" and current.screening.findings == ()
    submit_entry = detail.audit_trail[-1]
    assert submit_entry.action == "submit" and '"outcome":"clear"' in submit_entry.payload
    [item] = desk.compliance.review_queue()
    assert (item.commitment_id, item.outcome, item.approvals, item.approvals_required) == (
        cid,
        "clear",
        0,
        1,
    )
    desk.clock.advance(timedelta(hours=3))
    assert desk.compliance.review_detail(cid).age == timedelta(hours=3)


def test_nothing_is_auto_approved(desk: Desk) -> None:
    cid = desk.submitted(amount="1")
    assert state(desk, cid) == ("PENDING_REVIEW", 2)


def test_the_submitter_can_never_approve(desk: Desk) -> None:
    cid = desk.submitted()
    desk.compliance.register_officer(ADMIN, ALLOCATOR.id, display_name="dual-hat")
    with pytest.raises(errors.SegregationOfDuties, match="submitted commitment"):
        desk.commitments.approve(Actor(ALLOCATOR.id, Role.COMPLIANCE_OFFICER), cid)
    assert state(desk, cid) == ("PENDING_REVIEW", 2)
    assert desk.compliance.review_detail(cid).approvals == []


@pytest.mark.parametrize(
    ("amount", "approvals_required"),
    [
        (THRESHOLD - Decimal("0.01"), 1),
        (THRESHOLD, 1),
        (THRESHOLD + Decimal("0.000000000000000001"), 2),
        (THRESHOLD * 3, 2),
    ],
)
def test_four_eyes_at_and_around_the_threshold(
    desk: Desk, amount: Decimal, approvals_required: int
) -> None:
    cid = desk.submitted(amount=str(amount))
    first = desk.commitments.approve(ANNA, cid, expected_version=2)
    if approvals_required == 1:
        assert first.to_state == "VERIFIED"
        return
    assert (first.from_state, first.to_state, first.version) == (
        "PENDING_REVIEW",
        "PENDING_REVIEW",
        2,
    )
    assert state(desk, cid) == ("PENDING_REVIEW", 2)
    with pytest.raises(errors.SegregationOfDuties, match="already approved"):
        desk.commitments.approve(ANNA, cid, expected_version=2)
    second = desk.commitments.approve(BORIS, cid, expected_version=2)
    assert (second.to_state, second.version) == ("VERIFIED", 3)
    assert [a.officer_id for a in desk.compliance.review_detail(cid).approvals] == [
        ANNA.id,
        BORIS.id,
    ]


def test_request_info_starts_a_new_round_and_old_approvals_no_longer_count(desk: Desk) -> None:
    cid = desk.submitted(amount="5000000")
    desk.commitments.approve(ANNA, cid)
    desk.commitments.request_info(BORIS, cid, reason="need the subscription agreement")
    assert state(desk, cid) == ("DRAFT", 3)
    desk.commitments.submit(ALLOCATOR, cid)
    assert desk.compliance.review_queue()[0].approvals == 0
    # Anna may approve again in the new round, but her old approval does not count
    assert desk.commitments.approve(ANNA, cid).to_state == "PENDING_REVIEW"
    assert desk.commitments.approve(BORIS, cid).to_state == "VERIFIED"
    detail = desk.compliance.review_detail(cid)
    assert [(a.review_version, a.officer_id) for a in detail.approvals] == [
        (2, ANNA.id),
        (4, ANNA.id),
        (4, BORIS.id),
    ]
    assert [s.review_version for s in detail.screenings] == [2, 4]


def test_hard_fail_needs_a_senior_override(desk: Desk) -> None:
    desk.party("zeta", "Zeta Maritime Holdings Limited", jurisdiction="CY")
    cid = desk.submitted(counterparty="zeta")
    screening = desk.compliance.review_detail(cid).current_screening
    assert screening is not None and screening.screening.outcome == "hard_fail"
    [hit] = [f for f in screening.screening.findings if f.rule == "sanctions"]
    assert (hit.party, hit.list_name, hit.entry_id) == ("zeta", "ofac-sdn", "9000002")
    assert Decimal(hit.score or "0") >= 88
    with pytest.raises(errors.OverrideRequired, match="not senior"):
        desk.commitments.approve(ANNA, cid, override_reason="looks fine to me")
    with pytest.raises(errors.OverrideRequired, match="gave no override reason"):
        desk.commitments.approve(SENIOR, cid)
    assert state(desk, cid) == ("PENDING_REVIEW", 2)
    result = desk.commitments.approve(
        SENIOR, cid, override_reason="false positive: different registration, checked with OFAC"
    )
    assert result.to_state == "VERIFIED"
    entry = desk.commitments.audit_trail(cid)[-1]
    assert entry.actor == SENIOR.id and "false positive" in entry.payload


def test_hard_fail_above_the_threshold_needs_the_override_and_a_second_officer(
    desk: Desk,
) -> None:
    desk.party("zeta", "Zeta Maritime Holdings Limited")
    cid = desk.submitted(amount="2000000", counterparty="zeta")
    with pytest.raises(errors.OverrideRequired):
        desk.commitments.approve(ANNA, cid)
    first = desk.commitments.approve(SENIOR, cid, override_reason="cleared with the MLRO")
    assert first.to_state == "PENDING_REVIEW"
    # after the senior override, a second, distinct officer completes the four eyes
    assert desk.commitments.approve(ANNA, cid).to_state == "VERIFIED"


def test_identifier_match_is_a_hit_whatever_the_name(desk: Desk) -> None:
    desk.party("harmless", "Completely Harmless Name Ltd", lei="969500ZETAMARITIME87")
    cid = desk.submitted(counterparty="harmless")
    screening = desk.compliance.review_detail(cid).current_screening
    assert screening is not None
    assert [(f.rule, f.entry_id, f.score) for f in screening.screening.findings] == [
        ("sanctions", "9000002", "100.0")
    ]


@pytest.mark.parametrize(
    ("overrides", "outcome", "detail"),
    [
        ({"expires_on": date(2026, 11, 21)}, "hard_fail", "KYC expired on 2026-11-21"),
        ({"expires_on": date(2026, 11, 22)}, "clear", None),  # the expiry day still counts
        ({"status": "pending", "expires_on": None}, "hard_fail", "KYC status is pending"),
        ({"jurisdiction": "KP"}, "hard_fail", "jurisdiction KP is blocked"),
        ({"jurisdiction": "MM"}, "flagged", "jurisdiction MM is high-risk"),
        ({"risk_rating": "high"}, "flagged", "rated high risk"),
    ],
)
def test_kyc_and_jurisdiction_rules(
    desk: Desk, overrides: dict[str, object], outcome: str, detail: str | None
) -> None:
    desk.party("other", "Otherside Holdings", **overrides)
    cid = desk.submitted(counterparty="other")
    screening = desk.compliance.review_detail(cid).current_screening
    assert screening is not None
    assert screening.screening.outcome == outcome
    details = [f.detail for f in screening.screening.findings]
    assert (detail is None and not details) or any(detail in d for d in details), details


def test_kyc_expiring_while_under_review_is_caught_at_the_next_round(desk: Desk) -> None:
    desk.party("other", "Otherside Holdings", expires_on=date(2026, 11, 23))
    cid = desk.submitted(counterparty="other")
    desk.commitments.request_info(ANNA, cid, reason="update the deal terms")
    desk.clock.advance(timedelta(days=2))
    desk.commitments.submit(ALLOCATOR, cid)
    assert desk.compliance.review_queue()[0].outcome == "hard_fail"


def test_limits(desk: Desk) -> None:
    too_big = desk.submitted(amount="50000000.01")
    findings = desk.compliance.review_detail(too_big).screenings[-1].screening.findings
    assert [f.rule for f in findings] == ["limits"]
    assert "per-commitment maximum" in findings[0].detail
    # 100,000,000 rolling 24 h: two 45m ones pass, the third crosses it
    for _ in range(2):
        assert desk.compliance.review_detail(desk.submitted(amount="45000000", currency="EUR"))
    third = desk.submitted(amount="45000000", currency="EUR")
    detail = desk.compliance.review_detail(third).screenings[-1].screening.findings[0].detail
    assert "rolling 24 h total of northwind" in detail
    desk.clock.advance(timedelta(hours=25))
    fourth = desk.submitted(amount="45000000", currency="EUR")
    assert desk.compliance.review_detail(fourth).screenings[-1].screening.outcome == "clear"


def test_no_counterparty_is_flagged(desk: Desk) -> None:
    cid = desk.submitted(counterparty=None)
    screening = desk.compliance.review_detail(cid).current_screening
    assert screening is not None and screening.screening.outcome == "flagged"


def test_party_without_kyc_cannot_submit_and_nothing_changes(desk: Desk) -> None:
    created = desk.commitments.create(
        ALLOCATOR, deal_ref="D", amount="10", currency="USD", counterparty="nobody-knows"
    )
    with pytest.raises(errors.UnknownParty, match="nobody-knows"):
        desk.commitments.submit(ALLOCATOR, created.commitment_id)
    assert state(desk, created.commitment_id) == ("DRAFT", 1)
    assert desk.compliance.review_detail(created.commitment_id).screenings == []


def test_officer_errors_change_nothing(desk: Desk) -> None:
    draft = desk.commitments.create(ALLOCATOR, deal_ref="D", amount="10", currency="USD")
    cid = draft.commitment_id
    with pytest.raises(errors.NotUnderReview):
        desk.commitments.approve(ANNA, cid)
    with pytest.raises(errors.NotUnderReview):
        desk.commitments.reject(ANNA, cid, reason="no")
    desk.commitments.submit(ALLOCATOR, cid)
    stranger = Actor("key-not-registered", Role.COMPLIANCE_OFFICER)
    for event in ("approve", "reject", "request_info"):
        with pytest.raises(errors.NotAnOfficer):
            desk.commitments.apply(stranger, cid, event, reason="x")
    for reason, message in ((None, "required"), ("x" * 2001, "at most 2000")):
        with pytest.raises(errors.InvalidText, match=message):
            desk.commitments.reject(ANNA, cid, reason=reason)
        with pytest.raises(errors.InvalidText, match=message):
            desk.commitments.request_info(ANNA, cid, reason=reason)
    with pytest.raises(errors.InvalidText, match="at most 2000"):
        desk.commitments.approve(SENIOR, cid, override_reason="x" * 2001)
    with pytest.raises(errors.InvalidInput, match="only an approval"):
        desk.commitments.reject(SENIOR, cid, reason="r", override_reason="o")
    assert state(desk, cid) == ("PENDING_REVIEW", 2)
    assert desk.compliance.review_detail(cid).approvals == []
    # a withdrawn officer can no longer act
    desk.compliance.register_officer(ADMIN, BORIS.id, display_name="Boris", active=False)
    with pytest.raises(errors.NotAnOfficer):
        desk.commitments.approve(BORIS, cid)
    assert desk.commitments.reject(ANNA, cid, reason="not eligible").to_state == "CANCELLED"


def test_the_database_refuses_to_skip_four_eyes(desk: Desk) -> None:
    """A buggy application calling the plain transition cannot verify without approvals."""
    cid = desk.submitted(amount="2000000")
    desk.commitments.approve(ANNA, cid)
    app = create_engine(desk.engine.urls.app, isolation_level="AUTOCOMMIT")
    try:
        with app.connect() as c, pytest.raises(DBAPIError, match="needs 2 distinct officer"):
            c.execute(
                text(
                    "SELECT * FROM commitment_transition(:id, NULL, 'approve', :actor, NULL,"
                    " NULL, NULL, NULL, NULL, '{}', now(), NULL, NULL, NULL, NULL)"
                ),
                {"id": cid, "actor": BORIS.id},
            )
        draft = desk.commitments.create(ALLOCATOR, deal_ref="D", amount="1", currency="USD")
        with app.connect() as c, pytest.raises(DBAPIError, match="without a screening"):
            c.execute(
                text(
                    "SELECT * FROM commitment_transition(:id, NULL, 'submit', :actor, NULL,"
                    " NULL, NULL, NULL, NULL, '{}', now(), NULL, NULL, NULL, NULL)"
                ),
                {"id": draft.commitment_id, "actor": ALLOCATOR.id},
            )
    finally:
        app.dispose()
    assert state(desk, cid) == ("PENDING_REVIEW", 2)


def test_every_officer_action_is_in_an_audit_chain_with_its_actor(desk: Desk) -> None:
    desk.compliance.update_kyc(BORIS, "meridian", expected_version=1, risk_rating="medium")
    approved = desk.submitted(amount="3000000")
    desk.commitments.approve(ANNA, approved)
    desk.commitments.approve(BORIS, approved)
    rejected = desk.submitted()
    desk.commitments.reject(BORIS, rejected, reason="deal closed")
    sent_back = desk.submitted()
    desk.commitments.request_info(ANNA, sent_back, reason="missing letter")
    desk.party("zeta", "Zeta Shipping")
    overridden = desk.submitted(counterparty="zeta")
    desk.commitments.approve(SENIOR, overridden, override_reason="documented false positive")

    def actions(cid: object) -> list[tuple[str, str]]:
        return [(e.action, e.actor) for e in desk.commitments.audit_trail(cid)]  # type: ignore[arg-type]

    assert actions(approved)[2:] == [("approval_recorded", ANNA.id), ("approve", BORIS.id)]
    assert actions(rejected)[-1] == ("reject", BORIS.id)
    assert actions(sent_back)[-1] == ("request_info", ANNA.id)
    assert actions(overridden)[-1] == ("approve", SENIOR.id)
    assert "documented false positive" in desk.commitments.audit_trail(overridden)[-1].payload
    registry = [(e.action, e.subject, e.actor) for e in desk.compliance.audit_entries()]
    assert ("officer_register", ANNA.id, ADMIN.id) in registry
    assert ("kyc_create", "meridian", ANNA.id) in registry
    assert ("kyc_update", "meridian", BORIS.id) in registry
    assert ("sanctions_load", "ofac-sdn", ADMIN.id) in registry
    assert desk.commitments.verify_audit().ok
    assert desk.compliance.verify_audit().ok


def test_tampering_with_the_compliance_chain_is_detected(desk: Desk) -> None:
    owner = create_engine(desk.engine.urls.owner)
    with owner.begin() as c:
        c.execute(text("ALTER TABLE compliance_audit DISABLE TRIGGER compliance_audit_append_only"))
        c.execute(text("UPDATE compliance_audit SET actor = 'mallory' WHERE seq = 4"))
        c.execute(text("ALTER TABLE compliance_audit ENABLE TRIGGER compliance_audit_append_only"))
    owner.dispose()
    report = desk.compliance.verify_audit()
    assert report.breaks == ["compliance entry 4: entry_hash does not match its contents (edited)"]
