"""Function- and object-level authorisation: every role against every route.

``RULES`` is the expectation table: for each (method, path template) of the app, the
roles that may call it and whether an allocator is confined to its own party there.
The route list is read from the app itself, and a route missing from the table fails
the run, so no route can be added without its authorisation rule.

For each route and each of the four roles a validly signed request (minimal valid body,
fresh Idempotency-Key for mutating routes) is sent over HTTP: a role not allowed gets
403, an allowed one anything but 401/403 (a 404 or 409 from the route's own checks is
fine: authorisation let it through). On party-scoped routes an allocator of another
party gets 403, and list filters on another party are 403 too.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi.routing import iter_route_contexts

from settlement.domain.values import Role

from .conftest import Api, Key, create_draft, problem_of

__all__ = ["RULES", "Role", "Rule"]

ALLOCATOR, OFFICER, ADMIN, AUDITOR = (
    Role.ALLOCATOR,
    Role.COMPLIANCE_OFFICER,
    Role.ADMIN,
    Role.AUDITOR,
)
EVERYONE = frozenset({ALLOCATOR, OFFICER, ADMIN, AUDITOR})
ROLES = (ALLOCATOR, OFFICER, ADMIN, AUDITOR)


@dataclass(frozen=True)
class Rule:
    #: who may call the route (ignored when public)
    roles: frozenset[Role] = frozenset()
    #: an allocator may act here only on its own party's objects
    party_scoped: bool = False
    #: served without a signature
    public: bool = False
    #: a minimal valid JSON body (None: no body)
    body: dict[str, Any] | None = None
    #: query parameters that make a minimal valid request
    query: dict[str, str] = field(default_factory=dict)
    #: name a party of its own in {party} (a write must not change the shared ones)
    fresh_party: bool = False
    #: name a new webhook endpoint of the allocator's party in {endpoint_id}
    endpoint: bool = False


def _rule(*roles: Role, party_scoped: bool = False, **kw: Any) -> Rule:
    return Rule(roles=frozenset(roles), party_scoped=party_scoped, **kw)


PUBLIC = Rule(public=True)
C = "/v1/commitments/{commitment_id}"
R = "/v1/review/{commitment_id}"
P = "/v1/parties/{party}"
S = "/v1/settlements/{settlement_id}"
W = "/v1/webhooks/endpoints/{endpoint_id}"
#: an endpoint nothing is delivered to, for an event the authorisation tests never cause
HOOK = {"url": "http://127.0.0.1:9/authz", "event_types": ["settlement.flagged"]}
LEGS = [
    {
        "kind": "principal",
        "chain": chain,
        "asset": {"code": "USD", "issuer": None},
        "amount": "1.00",
        "sender": "sender-authz",
        "receiver": "receiver-authz",
    }
    for chain in ("xrpl", "stellar")
]
KYC = {
    "legal_name": "Authz Test Holdings",
    "jurisdiction": "GB",
    "risk_rating": "low",
    "accredited": True,
    "status": "pending",
}

#: (method, path template) -> who may call it. Inferred from each route's actor
#: dependency (Allocator, Officer, Admin, Reader, Staff, Verifier, AllocatorOrAdmin in
#: settlement/api) and, for ``party_scoped``, from its ``own_or_forbidden`` call.
RULES: dict[tuple[str, str], Rule] = {
    ("GET", "/health"): PUBLIC,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    # commitments
    ("POST", "/v1/commitments"): _rule(
        ALLOCATOR, body={"deal_ref": "DEAL-AUTHZ", "amount": "1.00", "currency": "USD"}
    ),
    ("GET", "/v1/commitments"): _rule(*EVERYONE, party_scoped=True),
    ("GET", C): _rule(*EVERYONE, party_scoped=True),
    ("POST", f"{C}/submit"): _rule(ALLOCATOR, party_scoped=True, body={"expected_version": 1}),
    ("POST", f"{C}/withdraw"): _rule(ALLOCATOR, party_scoped=True, body={"expected_version": 1}),
    ("GET", f"{C}/audit"): _rule(*EVERYONE, party_scoped=True),
    ("GET", f"{C}/ledger-references"): _rule(*EVERYONE, party_scoped=True),
    ("GET", f"{C}/settlement"): _rule(*EVERYONE, party_scoped=True),
    ("POST", f"{C}/settlement"): _rule(
        ALLOCATOR,
        ADMIN,
        party_scoped=True,
        body={"legs": LEGS, "commit_deadline": "2026-11-23T09:00:00Z"},
    ),
    # review
    ("GET", "/v1/review"): _rule(OFFICER),
    ("GET", R): _rule(OFFICER),
    ("POST", f"{R}/approve"): _rule(OFFICER, body={"expected_version": 1}),
    ("POST", f"{R}/reject"): _rule(OFFICER, body={"expected_version": 1, "reason": "authz"}),
    ("POST", f"{R}/request-info"): _rule(OFFICER, body={"expected_version": 1, "reason": "authz"}),
    # parties and KYC; writes go to a party of their own, so the shared test parties
    # keep their records
    ("GET", "/v1/parties"): _rule(OFFICER, ADMIN, AUDITOR),
    ("GET", P): _rule(*EVERYONE, party_scoped=True),
    ("POST", f"{P}/kyc"): _rule(OFFICER, body=KYC, fresh_party=True),
    ("PATCH", f"{P}/kyc"): _rule(
        OFFICER, body={"expected_version": 1, "risk_rating": "high"}, fresh_party=True
    ),
    ("POST", f"{P}/accounts"): _rule(
        OFFICER, body={"chain": "xrpl", "address": "rAuthzTestAddress"}, fresh_party=True
    ),
    # a party's balances and statement: staff read any party, an allocator its own
    ("GET", f"{P}/balances"): _rule(*EVERYONE, party_scoped=True),
    ("GET", f"{P}/statement"): _rule(
        *EVERYONE, party_scoped=True, query={"from": "2026-01-01", "to": "2026-02-01"}
    ),
    # audit, settlements, breakers
    ("GET", "/v1/audit/verify"): _rule(AUDITOR, ADMIN),
    ("GET", "/v1/settlements"): _rule(AUDITOR, ADMIN),
    ("POST", f"{S}/force-cancel"): _rule(ADMIN, body={"reason": "authz"}),
    ("POST", f"{S}/retry"): _rule(ADMIN, body={"note": "authz"}),
    ("POST", f"{S}/resolve"): _rule(ADMIN, body={"note": "authz"}),
    ("GET", "/v1/breakers"): _rule(AUDITOR, ADMIN),
    ("POST", "/v1/breakers/{chain}/reset"): _rule(ADMIN),
    # webhooks: an allocator's own party's endpoints, an admin's any; the keys are public
    ("GET", "/v1/webhooks/keys"): PUBLIC,
    ("POST", "/v1/webhooks/endpoints"): _rule(ALLOCATOR, ADMIN, body=HOOK),
    ("GET", "/v1/webhooks/endpoints"): _rule(ALLOCATOR, ADMIN, party_scoped=True),
    ("POST", f"{W}/disable"): _rule(ALLOCATOR, ADMIN, party_scoped=True, endpoint=True),
    ("GET", f"{W}/deliveries"): _rule(ALLOCATOR, ADMIN, party_scoped=True, endpoint=True),
    ("POST", f"{W}/replay"): _rule(ALLOCATOR, ADMIN, party_scoped=True, endpoint=True, body={}),
}


def app_routes(api: Api) -> set[tuple[str, str]]:
    """Every (method, path template) the app serves, HEAD and OPTIONS aside."""
    found: set[tuple[str, str]] = set()
    # iter_route_contexts sees through included routers (kept behind one wrapper route)
    for route in iter_route_contexts(api.app.routes):
        for method in route.methods or ():
            if method not in ("HEAD", "OPTIONS") and route.path is not None:
                found.add((method, route.path))
    return found


def test_every_route_has_an_authorisation_rule(api: Api) -> None:
    served = app_routes(api)
    missing = sorted(served - RULES.keys())
    assert not missing, f"routes without an authorisation rule in RULES: {missing}"
    stale = sorted(RULES.keys() - served)
    assert not stale, f"RULES names routes the app does not serve: {stale}"
    # the OpenAPI document describes the same signed routes
    documented = {
        (method.upper(), path)
        for path, operations in api.app.openapi()["paths"].items()
        for method in operations
    }
    signed = {r for r in served if not RULES[r].public}
    assert signed <= documented, sorted(signed - documented)


def _key(api: Api, role: Role) -> Key:
    return {
        ALLOCATOR: api.allocator,
        OFFICER: api.officer,
        ADMIN: api.admin,
        AUDITOR: api.auditor,
    }[role]


def _send(
    api: Api,
    key: Key,
    method: str,
    template: str,
    rule: Rule,
    ids: dict[str, str],
    query: dict[str, str] | None = None,
) -> httpx.Response:
    path = template.format(**ids)
    headers = {"Idempotency-Key": uuid.uuid4().hex} if method != "GET" else {}
    params = {**rule.query, **(query or {})}
    if params:
        path = f"{path}?{httpx.QueryParams(params)}"
    return api.send(key, method, path, json=rule.body, headers=headers)


def _refused(response: httpx.Response) -> None:
    """A 403 problem: ``forbidden`` from the route's role or party check, or
    ``not_authorised`` from the service's own check behind it."""
    code = response.json().get("code")
    assert code in ("forbidden", "not_authorised"), response.text
    problem_of(response, 403, code)


OWN_PARTY = "party-northwind"
ObjectIds = Callable[[Rule], dict[str, str]]


@pytest.fixture
def own_ids(api: Api) -> ObjectIds:
    """Path parameters naming objects of the allocator's own party: a fresh DRAFT per
    call (so one role's successful transition cannot mask another's check), its party,
    and for writes to a party a fresh one; a settlement id that does not exist (only
    admins and auditors reach those routes) and a chain."""
    assert api.keys.active_public_key(api.allocator.key_id)[0].party == OWN_PARTY

    def make(rule: Rule) -> dict[str, str]:
        return {
            "commitment_id": create_draft(api),
            "party": f"party-authz-{uuid.uuid4().hex[:12]}" if rule.fresh_party else OWN_PARTY,
            "settlement_id": str(uuid.uuid4()),
            "chain": "xrpl",
            "endpoint_id": own_endpoint(api) if rule.endpoint else str(uuid.uuid4()),
        }

    return make


def own_endpoint(api: Api, key: Key | None = None) -> str:
    """A new webhook endpoint of ``key``'s party (the allocator's by default)."""
    created = api.send(
        key or api.allocator,
        "POST",
        "/v1/webhooks/endpoints",
        json=HOOK,
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def test_an_allocator_sees_only_its_own_endpoints(api: Api) -> None:
    """Another party's endpoints are neither listed nor reachable; an admin's
    every-party endpoint is not an allocator's either."""
    mine = own_endpoint(api)
    theirs = own_endpoint(api, api.other_allocator)
    admins = api.send(
        api.admin,
        "POST",
        "/v1/webhooks/endpoints",
        json=HOOK,
        headers={"Idempotency-Key": uuid.uuid4().hex},
    ).json()["id"]
    listed = api.send(api.allocator, "GET", "/v1/webhooks/endpoints").json()
    assert mine in {e["id"] for e in listed}
    assert {e["party"] for e in listed} == {OWN_PARTY}
    for other in (theirs, admins):
        for method, path, body in (
            ("GET", f"/v1/webhooks/endpoints/{other}/deliveries", None),
            ("POST", f"/v1/webhooks/endpoints/{other}/replay", {}),
            ("POST", f"/v1/webhooks/endpoints/{other}/disable", None),
        ):
            refused = api.send(
                api.allocator,
                method,
                path,
                json=body,
                headers={"Idempotency-Key": uuid.uuid4().hex} if method == "POST" else {},
            )
            _refused(refused)
    everyone = {e["id"] for e in api.send(api.admin, "GET", "/v1/webhooks/endpoints").json()}
    assert {mine, theirs, admins} <= everyone


@pytest.mark.parametrize("role", ROLES, ids=str)
def test_function_level(api: Api, own_ids: ObjectIds, role: Role) -> None:
    """Each role against every signed route: 403 exactly where the table says."""
    wrong: list[str] = []
    for (method, template), rule in sorted(RULES.items()):
        if rule.public:
            continue
        response = _send(api, _key(api, role), method, template, rule, own_ids(rule))
        allowed = role in rule.roles
        if allowed and response.status_code in (401, 403):
            wrong.append(f"{method} {template}: {role} refused: {response.text}")
        if not allowed:
            if response.status_code != 403:
                wrong.append(f"{method} {template}: {role} got {response.status_code}, not 403")
            else:
                _refused(response)
    assert not wrong, "\n".join(wrong)


PARTY_SCOPED = sorted(
    route
    for route, rule in RULES.items()
    if not rule.public and ALLOCATOR in rule.roles and rule.party_scoped
)
#: routes whose object-level check is known to come too late (see the reason)
#: routes known to check in the wrong order (none now: start_settlement checks the
#: party before asking for the ledgers)
KNOWN_WRONG_ORDER: dict[tuple[str, str], str] = {}


def _party_case(route: tuple[str, str]) -> Any:
    reason = KNOWN_WRONG_ORDER.get(route)
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(*route, id=f"{route[0]} {route[1]}", marks=marks)


@pytest.mark.parametrize(("method", "template"), [_party_case(r) for r in PARTY_SCOPED])
def test_object_level_for_allocators(
    api: Api, own_ids: ObjectIds, method: str, template: str
) -> None:
    """On a party-scoped route an allocator of another party is refused, the owner is
    not; on a list, filtering on another party is refused."""
    rule = RULES[(method, template)]
    ids = own_ids(rule)
    # a route naming no object is a list: the object is the party it filters on
    query = None if "{" in template else {"party": OWN_PARTY}
    other = _send(api, api.other_allocator, method, template, rule, ids, query)
    assert other.status_code == 403, other.text
    _refused(other)
    owner = _send(api, api.allocator, method, template, rule, ids, query)
    assert owner.status_code not in (401, 403), owner.text


def _every_page(api: Api, key: Key, query: dict[str, str]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    params = {**query, "limit": "200"}
    while True:
        response = api.send(key, "GET", f"/v1/commitments?{httpx.QueryParams(params)}")
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["items"])
        if page["next_cursor"] is None:
            return items
        params["cursor"] = page["next_cursor"]


def test_an_allocator_lists_only_its_own_party(api: Api) -> None:
    own = create_draft(api)
    with api.client(api.other_allocator) as client:
        theirs = str(
            client.create_commitment(deal_ref="DEAL-AUTHZ", amount="2.00", currency="USD")[
                "commitment_id"
            ]
        )
    mine = _every_page(api, api.allocator, {})
    assert {c["owner_party"] for c in mine} == {OWN_PARTY}
    assert own in {c["id"] for c in mine}
    assert theirs not in {c["id"] for c in mine}
    assert _every_page(api, api.allocator, {"party": OWN_PARTY}) == mine
    their_list = _every_page(api, api.other_allocator, {})
    assert {c["owner_party"] for c in their_list} == {"party-southbank"}
    assert own not in {c["id"] for c in their_list}
    for party in ("party-southbank", "party-nobody"):
        refused = api.send(api.allocator, "GET", f"/v1/commitments?party={party}")
        problem_of(refused, 403, "forbidden")
    # a role that reads every party sees both
    everyone = {c["id"] for c in _every_page(api, api.auditor, {})}
    assert {own, theirs} <= everyone


def test_public_paths_need_no_signature(api: Api) -> None:
    for (method, template), rule in sorted(RULES.items()):
        if rule.public:
            response = api.send(None, method, template)
            assert response.status_code == 200, (template, response.text)
