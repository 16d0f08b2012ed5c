"""The allocator -> officer -> auditor story through ``SettlementClient``, and the
shapes of what the API returns (amounts as strings, ETags, problem+json)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import text

from settlement.client import ApiError
from settlement.domain import errors
from settlement.domain.values import Role
from settlement.services.compliance import ComplianceService
from tests.support import ADMIN

from .conftest import Api, create_draft, problem_of, register


def test_allocator_submits_officer_approves_auditor_verifies(api: Api) -> None:
    with (
        api.client(api.allocator) as allocator,
        api.client(api.officer) as officer,
        api.client(api.auditor) as auditor,
    ):
        created = allocator.create_commitment(
            deal_ref="DEAL-FLOW", amount="1234.5600", currency="usd"
        )
        cid = created["commitment_id"]
        assert created["version"] == 1
        commitment = allocator.get_commitment(cid)
        assert commitment["amount"] == "1234.56"
        assert commitment["currency"] == "USD"
        assert commitment["owner_party"] == "party-northwind"
        assert commitment["created_by"] == api.allocator.person

        submitted = allocator.submit(cid, expected_version=1)
        assert (submitted["from_state"], submitted["to_state"]) == ("DRAFT", "PENDING_REVIEW")

        queue = officer.review_queue()
        item = next(i for i in queue if i["commitment_id"] == cid)
        assert item["amount"] == "1234.56"
        detail = officer.review_detail(cid)
        assert detail["commitment"]["state"] == "PENDING_REVIEW"
        assert detail["screenings"][0]["screening"]["outcome"]

        approved = officer.approve(cid, expected_version=submitted["version"])
        assert approved["to_state"] == "VERIFIED"
        assert allocator.get_commitment(cid)["state"] == "VERIFIED"

        trail = auditor.audit_trail(cid)
        assert [e["action"] for e in trail] == ["create", "submit", "approve"]
        # the person acted; the key that signed stands beside them
        assert [(e["actor"], e["key_id"]) for e in trail] == [
            (api.allocator.person, api.allocator.key_id),
            (api.allocator.person, api.allocator.key_id),
            (api.officer.person, api.officer.key_id),
        ]
        assert {e["encoding_version"] for e in trail} == {2}
        history = officer.review_detail(cid)["history"]
        assert [(h["event"], h["actor"], h["key_id"]) for h in history] == [
            ("create", api.allocator.person, api.allocator.key_id),
            ("submit", api.allocator.person, api.allocator.key_id),
            ("approve", api.officer.person, api.officer.key_id),
        ]
        assert trail[1]["prev_hash"] == trail[0]["entry_hash"]
        report = auditor.verify_audit()
        assert report["ok"] is True
        assert report["breaks"] == []


def test_request_info_then_resubmit_then_reject(api: Api) -> None:
    cid = create_draft(api)
    with api.client(api.allocator) as allocator, api.client(api.officer) as officer:
        v = allocator.submit(cid, expected_version=1)["version"]
        back = officer.request_info(cid, expected_version=v, reason="need the term sheet")
        assert back["to_state"] == "DRAFT"
        v = allocator.submit(cid, expected_version=back["version"])["version"]
        rejected = officer.reject(cid, expected_version=v, reason="outside mandate")
        assert rejected["to_state"] == "CANCELLED"
        with pytest.raises(ApiError) as refused:
            allocator.withdraw(cid, expected_version=rejected["version"])
        assert refused.value.status == 409
        assert refused.value.code == "transition_not_allowed"


def test_the_submitter_cannot_be_the_approver_and_officers_need_registration(api: Api) -> None:
    cid = create_draft(api)
    with api.client(api.allocator) as allocator:
        v = allocator.submit(cid, expected_version=1)["version"]
    # a key is only ever given to a registered officer ...
    with pytest.raises(errors.NotAnOfficer):
        api.keys.create(
            role="compliance_officer", party=None, person="officer-unknown", created_by="test"
        )
    # ... and one withdrawn from the registry keeps a key that no longer decides
    desk = ComplianceService(api.engine.db, api.clock)
    gone = f"{api.officer.person}-withdrawn"
    desk.register_officer(ADMIN, gone, display_name="Withdrawn")
    withdrawn = register(api.keys, Role.COMPLIANCE_OFFICER, gone)
    desk.register_officer(ADMIN, gone, display_name="Withdrawn", active=False)
    response = api.send(
        withdrawn,
        "POST",
        f"/v1/review/{cid}/approve",
        json={"expected_version": v},
        headers={"Idempotency-Key": "k1"},
    )
    problem_of(response, 403, "not_an_officer")


def test_withdraw_with_if_match_and_etags(api: Api) -> None:
    cid = create_draft(api)
    got = api.send(api.allocator, "GET", f"/v1/commitments/{cid}")
    assert got.headers["etag"] == '"1"'
    response = api.send(
        api.allocator,
        "POST",
        f"/v1/commitments/{cid}/withdraw",
        headers={"Idempotency-Key": "w1", "If-Match": got.headers["etag"]},
    )
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"2"'
    assert response.json()["to_state"] == "CANCELLED"


def test_a_stale_version_is_409_and_changes_nothing(api: Api) -> None:
    cid = create_draft(api)
    stale = api.send(
        api.allocator,
        "POST",
        f"/v1/commitments/{cid}/submit",
        json={"expected_version": 7},
        headers={"Idempotency-Key": "s1"},
    )
    problem_of(stale, 409, "stale_version")
    with api.client(api.allocator) as client:
        assert client.get_commitment(cid)["version"] == 1


def test_a_missing_commitment_is_404(api: Api) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    problem_of(
        api.send(api.auditor, "GET", f"/v1/commitments/{missing}"), 404, "commitment_not_found"
    )
    problem_of(api.send(api.auditor, "GET", "/v1/nothing-here"), 404, "not_found")


def test_money_never_travels_as_a_json_number(api: Api) -> None:
    cid = create_draft(api, amount="0.000000000000000001")
    with api.client(api.auditor) as auditor:
        assert auditor.get_commitment(cid)["amount"] == "0.000000000000000001"

    def numbers(value: Any) -> list[Any]:
        if isinstance(value, dict):
            return [n for v in value.values() for n in numbers(v)]
        if isinstance(value, list):
            return [n for v in value for n in numbers(v)]
        return [value] if isinstance(value, float) else []

    body = api.send(api.auditor, "GET", f"/v1/commitments/{cid}").json()
    assert numbers(body) == []
    assert re.fullmatch(r"[0-9]+(\.[0-9]+)?", body["amount"])


def test_every_state_change_made_through_the_api_has_its_audit_entry(api: Api) -> None:
    cid = create_draft(api)
    with api.client(api.allocator) as allocator:
        allocator.submit(cid, expected_version=1)
    with api.engine.db.engine.connect() as c:
        versions = (
            c.execute(
                text(
                    "SELECT commitment_version FROM audit_log"
                    " WHERE commitment_id = :id ORDER BY seq"
                ),
                {"id": cid},
            )
            .scalars()
            .all()
        )
    assert versions == [1, 2]
