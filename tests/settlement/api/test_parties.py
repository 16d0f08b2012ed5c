"""Parties and KYC through the API: who may read and change what, strict bodies,
versions, idempotent retries."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from settlement.client import ApiError

from .conftest import Api, problem_of

KYC = {
    "legal_name": "Harbour Test Holdings",
    "jurisdiction": "GB",
    "risk_rating": "low",
    "accredited": True,
    "status": "verified",
    "expires_on": "2099-12-31",
}
XRPL_ACCOUNT = "rPEPPER7kfTD9w2To4CQk6UCfuHM9c6GDY"


def _party() -> str:
    return f"party-{uuid.uuid4().hex[:12]}"


def _write(api: Api, key: Any, method: str, path: str, body: Any) -> Any:
    return api.send(key, method, path, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})


def test_an_officer_creates_updates_and_registers_accounts(api: Api) -> None:
    party = _party()
    with api.client(api.officer) as officer, api.client(api.auditor) as auditor:
        created = officer.create_kyc(party, **KYC)
        assert created["party"] == party
        assert created["version"] == 1
        assert created["expires_on"] == "2099-12-31"
        updated = officer.update_kyc(party, expected_version=1, risk_rating="medium")
        assert (updated["risk_rating"], updated["version"]) == ("medium", 2)
        account = officer.register_account(party, chain="xrpl", address=XRPL_ACCOUNT)
        assert account["party"] == party
        assert account["registered_by"] == api.officer.person
        shown = auditor.party(party)
        assert shown["kyc"]["risk_rating"] == "medium"
        assert [(a["chain"], a["address"]) for a in shown["accounts"]] == [("xrpl", XRPL_ACCOUNT)]
        assert party in {p["party"] for p in auditor.parties()}
        with pytest.raises(ApiError) as stale:
            officer.update_kyc(party, expected_version=1, risk_rating="high")
        assert (stale.value.status, stale.value.code) == (409, "stale_version")
        with pytest.raises(ApiError) as again:
            officer.create_kyc(party, **KYC)
        assert again.value.status == 409
        with pytest.raises(ApiError) as taken:
            officer.register_account(party, chain="xrpl", address=XRPL_ACCOUNT)
        assert taken.value.status == 409
    etag = api.send(api.admin, "GET", f"/v1/parties/{party}").headers["ETag"]
    assert etag == '"2"'


def test_only_officers_change_parties(api: Api) -> None:
    """The compliance desk lets only an active officer change KYC and accounts, so
    the API refuses every other role, admins included."""
    party = _party()
    with api.client(api.officer) as officer:
        officer.create_kyc(party, **KYC)
    for key in (api.allocator, api.admin, api.auditor):
        problem_of(_write(api, key, "POST", f"/v1/parties/{_party()}/kyc", KYC), 403, "forbidden")
        patch = {"expected_version": 1, "status": "rejected"}
        problem_of(_write(api, key, "PATCH", f"/v1/parties/{party}/kyc", patch), 403, "forbidden")
        account = {"chain": "xrpl", "address": XRPL_ACCOUNT}
        problem_of(
            _write(api, key, "POST", f"/v1/parties/{party}/accounts", account), 403, "forbidden"
        )
    with api.client(api.auditor) as auditor:
        assert auditor.party(party)["kyc"]["version"] == 1
        assert auditor.party(party)["accounts"] == []


def test_who_reads_parties(api: Api) -> None:
    problem_of(api.send(api.allocator, "GET", "/v1/parties"), 403, "forbidden")
    for key in (api.officer, api.admin, api.auditor):
        assert api.send(key, "GET", "/v1/parties").status_code == 200
    own = api.send(api.allocator, "GET", "/v1/parties/party-northwind")
    assert own.status_code == 200
    assert own.json()["kyc"]["party"] == "party-northwind"
    problem_of(api.send(api.allocator, "GET", "/v1/parties/party-southbank"), 403, "forbidden")
    problem_of(api.send(api.auditor, "GET", f"/v1/parties/{_party()}"), 404, "party_not_found")


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"jurisdiction": "Britain"}, 422, "invalid_party_data"),
        ({"risk_rating": "none"}, 422, "validation_failed"),
        ({"accredited": "yes"}, 422, "validation_failed"),
        ({"nickname": "x"}, 422, "validation_failed"),
        ({"lei": "NOT-A-VALID-LEI-CODE"}, 422, "invalid_party_data"),
    ],
)
def test_bad_kyc_is_refused_and_nothing_is_stored(
    api: Api, change: dict[str, Any], status: int, code: str
) -> None:
    party = _party()
    response = _write(api, api.officer, "POST", f"/v1/parties/{party}/kyc", {**KYC, **change})
    problem_of(response, status, code)
    problem_of(api.send(api.auditor, "GET", f"/v1/parties/{party}"), 404, "party_not_found")


def test_bad_updates_and_accounts_change_nothing(api: Api) -> None:
    party = _party()
    with api.client(api.officer) as officer:
        officer.create_kyc(party, **KYC)
    path = f"/v1/parties/{party}/kyc"
    problem_of(
        _write(api, api.officer, "PATCH", path, {"status": "pending"}), 428, "precondition_required"
    )
    problem_of(
        _write(api, api.officer, "PATCH", path, {"expected_version": 1}), 422, "validation_failed"
    )
    problem_of(
        _write(
            api,
            api.officer,
            "PATCH",
            f"/v1/parties/{_party()}/kyc",
            {"expected_version": 1, "status": "pending"},
        ),
        404,
        "party_not_found",
    )
    bad = {"chain": "xrpl", "address": "not-an-address"}
    problem_of(
        _write(api, api.officer, "POST", f"/v1/parties/{party}/accounts", bad),
        422,
        "invalid_party_data",
    )
    problem_of(
        _write(
            api,
            api.officer,
            "POST",
            f"/v1/parties/{party}/accounts",
            {"chain": "bitcoin", "address": XRPL_ACCOUNT},
        ),
        422,
        "validation_failed",
    )
    with api.client(api.auditor) as auditor:
        shown = auditor.party(party)
    assert shown["kyc"]["version"] == 1
    assert shown["accounts"] == []


def test_a_retried_create_replays(api: Api) -> None:
    party = _party()
    headers = {"Idempotency-Key": f"kyc-{party}"}
    first = api.send(api.officer, "POST", f"/v1/parties/{party}/kyc", json=KYC, headers=headers)
    again = api.send(api.officer, "POST", f"/v1/parties/{party}/kyc", json=KYC, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    other = api.send(
        api.officer,
        "POST",
        f"/v1/parties/{party}/kyc",
        json={**KYC, "status": "pending"},
        headers=headers,
    )
    problem_of(other, 422, "idempotency_key_reused")
