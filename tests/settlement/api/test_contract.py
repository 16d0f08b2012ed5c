"""Strict bodies (unknown fields, JSON numbers for money, size limit), preconditions,
and the OpenAPI document against the routes that exist."""

from __future__ import annotations

import re
from typing import Any

import pytest

from settlement.api.app import api_routes

from .conftest import MAX_BODY_BYTES, Api, create_draft, problem_of

BODY = {"deal_ref": "DEAL-C", "amount": "10.00", "currency": "USD"}


def post(api: Api, body: Any = None, *, path: str = "/v1/commitments", **kw: Any) -> Any:
    headers = {"Idempotency-Key": f"k-{id(body)}-{path}", **kw.pop("headers", {})}
    return api.send(api.allocator, "POST", path, json=body, headers=headers, **kw)


def test_unknown_fields_are_refused(api: Api) -> None:
    problem = problem_of(post(api, {**BODY, "priority": "high"}), 422, "validation_failed")
    assert problem["errors"][0]["type"] == "extra_forbidden"
    assert problem["errors"][0]["loc"] == ["body", "priority"]


@pytest.mark.parametrize("amount", [10, 10.5, 1e3, True])
def test_an_amount_must_be_a_decimal_string(api: Api, amount: Any) -> None:
    problem_of(post(api, {**BODY, "amount": amount}), 422, "validation_failed")


@pytest.mark.parametrize("amount", ["-1", "1e3", "0.0000000000000000001", "1,000", "NaN"])
def test_a_malformed_amount_string_is_refused(api: Api, amount: str) -> None:
    problem_of(post(api, {**BODY, "amount": amount}), 422, "validation_failed")


def test_a_zero_amount_is_refused_by_the_service(api: Api) -> None:
    problem_of(post(api, {**BODY, "amount": "0"}), 422, "invalid_amount")


def test_malformed_json_is_400(api: Api) -> None:
    response = post(
        api, None, content=b'{"deal_ref": ', headers={"Content-Type": "application/json"}
    )
    problem_of(response, 400, "malformed_body")


def test_a_body_over_the_limit_is_413(api: Api) -> None:
    response = post(api, {**BODY, "deal_ref": "x" * (MAX_BODY_BYTES + 1)})
    problem_of(response, 413, "payload_too_large")


def test_an_event_needs_the_expected_version(api: Api) -> None:
    cid = create_draft(api)
    path = f"/v1/commitments/{cid}/submit"
    problem_of(post(api, None, path=path), 428, "precondition_required")
    problem_of(post(api, None, path=path, headers={"If-Match": "1"}), 400, "invalid_header")
    disagree = post(api, {"expected_version": 1}, path=path, headers={"If-Match": '"2"'})
    problem_of(disagree, 400, "invalid_header")
    problem_of(post(api, {"expected_version": "1"}, path=path), 422, "validation_failed")


def test_reject_needs_a_reason(api: Api) -> None:
    cid = create_draft(api)
    response = api.send(
        api.officer,
        "POST",
        f"/v1/review/{cid}/reject",
        json={"expected_version": 1},
        headers={"Idempotency-Key": "r1"},
    )
    problem_of(response, 422, "validation_failed")


#: every operation, by method and path, with the name of its route: its operationId is
#: that name, the path and the method, and clients generated from the document name
#: their methods after it (it must not change when a route moves between modules)
EXPECTED_OPERATIONS = {
    ("get", "/health"): "health",
    ("post", "/v1/commitments"): "create_commitment",
    ("get", "/v1/commitments"): "list_commitments",
    ("get", "/v1/commitments/{commitment_id}"): "get_commitment",
    ("post", "/v1/commitments/{commitment_id}/submit"): "submit",
    ("post", "/v1/commitments/{commitment_id}/withdraw"): "withdraw",
    ("get", "/v1/review"): "review_queue",
    ("get", "/v1/review/{commitment_id}"): "review_detail",
    ("post", "/v1/review/{commitment_id}/approve"): "approve",
    ("post", "/v1/review/{commitment_id}/reject"): "reject",
    ("post", "/v1/review/{commitment_id}/request-info"): "request_info",
    ("get", "/v1/commitments/{commitment_id}/audit"): "commitment_audit",
    ("get", "/v1/audit/verify"): "audit_verify",
    ("post", "/v1/commitments/{commitment_id}/settlement"): "start_settlement",
    ("get", "/v1/commitments/{commitment_id}/settlement"): "get_settlement",
    ("get", "/v1/settlements"): "list_settlements",
    ("post", "/v1/settlements/{settlement_id}/force-cancel"): "force_cancel",
    ("post", "/v1/settlements/{settlement_id}/retry"): "retry_settlement",
    ("post", "/v1/settlements/{settlement_id}/resolve"): "resolve_settlement",
    ("get", "/v1/commitments/{commitment_id}/ledger-references"): "ledger_references",
    ("get", "/v1/parties"): "list_parties",
    ("get", "/v1/parties/{party}"): "get_party",
    ("post", "/v1/parties/{party}/kyc"): "create_kyc",
    ("patch", "/v1/parties/{party}/kyc"): "update_kyc",
    ("post", "/v1/parties/{party}/accounts"): "register_account",
    ("get", "/v1/parties/{party}/balances"): "balances",
    ("get", "/v1/parties/{party}/statement"): "statement",
    ("get", "/v1/webhooks/keys"): "webhook_keys",
    ("post", "/v1/webhooks/endpoints"): "register_endpoint",
    ("get", "/v1/webhooks/endpoints"): "list_endpoints",
    ("post", "/v1/webhooks/endpoints/{endpoint_id}/disable"): "disable_endpoint",
    ("get", "/v1/webhooks/endpoints/{endpoint_id}/deliveries"): "list_deliveries",
    ("post", "/v1/webhooks/endpoints/{endpoint_id}/replay"): "replay_dead_letters",
    ("get", "/healthz"): "healthz",
    ("get", "/readyz"): "readyz",
    ("get", "/metrics"): "metrics",
    ("get", "/v1/breakers"): "breakers",
    ("post", "/v1/breakers/{chain}/reset"): "reset_breaker",
}
EXPECTED_ROUTES = set(EXPECTED_OPERATIONS)
UNSIGNED = {"/health", "/healthz", "/readyz", "/metrics", "/v1/webhooks/keys"}


def _operation_id(name: str, path: str, method: str) -> str:
    return name + re.sub(r"\W", "_", path) + "_" + method


def test_openapi_describes_every_route_and_only_those(api: Api) -> None:
    document = api.send(None, "GET", "/openapi.json").json()
    listed = {
        (m, p): op["operationId"] for p, ops in document["paths"].items() for m, op in ops.items()
    }
    assert listed == {
        (m, p): _operation_id(name, p, m) for (m, p), name in EXPECTED_OPERATIONS.items()
    }
    served = {
        (m.lower(), route.path) for route in api_routes(api.app.routes) for m in route.methods
    }
    assert served == EXPECTED_ROUTES


def test_openapi_describes_signatures_problems_and_money(api: Api) -> None:
    document = api.send(None, "GET", "/openapi.json").json()
    create = document["paths"]["/v1/commitments"]["post"]
    assert create["security"] == [{"httpMessageSignature": []}]
    assert "security" not in document["paths"]["/health"]["get"]
    params = {p["name"] for p in create["parameters"]}
    assert "Idempotency-Key" in params
    for status in ("401", "403", "409", "413", "422"):
        content = create["responses"][status]["content"]
        assert list(content) == ["application/problem+json"]
    schemas = document["components"]["schemas"]
    assert schemas["CommitmentCreate"]["additionalProperties"] is False
    assert schemas["CommitmentCreate"]["properties"]["amount"]["type"] == "string"
    assert schemas["CommitmentOut"]["properties"]["amount"]["type"] == "string"
    assert "HTTPValidationError" not in schemas
    submit = document["paths"]["/v1/commitments/{commitment_id}/submit"]["post"]
    assert "If-Match" in {p["name"] for p in submit["parameters"]}
    assert "428" in submit["responses"]


def test_openapi_marks_every_signed_route_and_documents_its_problems(api: Api) -> None:
    document = api.send(None, "GET", "/openapi.json").json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if path in UNSIGNED:
                assert "security" not in operation, (method, path)
                continue
            assert operation["security"] == [{"httpMessageSignature": []}], (method, path)
            for status in ("401", "403", "422"):
                content = operation["responses"][status]["content"]
                assert list(content) == ["application/problem+json"], (method, path, status)
            assert any(s.startswith("2") for s in operation["responses"]), (method, path)
    fund = document["paths"]["/v1/commitments/{commitment_id}/settlement"]["post"]
    assert "202" in fund["responses"] and "503" in fund["responses"]
    leg = document["components"]["schemas"]["LegIn"]
    assert leg["properties"]["kind"]["enum"] == ["principal", "fee"]
    assert leg["additionalProperties"] is False
    unready = document["paths"]["/readyz"]["get"]["responses"]["503"]["content"]
    assert unready["application/json"]["schema"]["$ref"].endswith("/ReadyOut")
    metrics = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert any(m.startswith("text/plain") for m in metrics)
    statement = document["paths"]["/v1/parties/{party}/statement"]["get"]
    assert set(statement["responses"]["200"]["content"]) == {"application/json", "text/csv"}
    assert {p["name"] for p in statement["parameters"]} >= {"from", "to", "format"}


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/oauth2-redirect"])
def test_the_documentation_pages_cannot_be_framed(api: Api, path: str) -> None:
    """As the console's pages cannot: a page of another site must not show them in a
    frame (clickjacking)."""
    response = api.send(None, "GET", path)
    assert response.status_code == 200, response.text
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
