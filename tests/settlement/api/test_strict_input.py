"""Input from outside that a lenient parser would read one way and a person another:
a JSON key twice in one object, control characters in a parameter, and the JSON
forms of every optional field (which a strict model must still accept)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from settlement import strict_json
from settlement.api import reads
from settlement.cli.commitments import legs_from
from settlement.client import SettlementClient
from settlement.domain import errors

from .conftest import Api, create_draft, problem_of, serving


def _openapi(api: Api) -> dict[str, Any]:
    document: dict[str, Any] = api.send(None, "GET", "/openapi.json").json()
    return document


def _concrete(path: str) -> str:
    """A path template with every parameter filled by a well-formed value."""
    return (
        path.replace("{commitment_id}", str(uuid.uuid4()))
        .replace("{settlement_id}", str(uuid.uuid4()))
        .replace("{party}", "party-northwind")
        .replace("{chain}", "xrpl")
        .replace("{endpoint_id}", str(uuid.uuid4()))
    )


def _operations(api: Api) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, operations in _openapi(api)["paths"].items()
        for method, operation in operations.items()
    ]


# -- duplicate keys ---------------------------------------------------------------------


def _post_raw(api: Api, path: str, raw: bytes, *, key: Any = None, method: str = "POST") -> Any:
    return api.send(
        key or api.allocator,
        method,
        path,
        content=raw,
        headers={"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())},
    )


def _deal_count(api: Api, deal_ref: str) -> int:
    row = api.engine.db.call_one(
        "SELECT count(*) FROM commitments WHERE deal_ref = %(deal_ref)s", {"deal_ref": deal_ref}
    )
    return int(row[0])


def test_a_key_twice_in_a_body_is_refused_and_creates_nothing(api: Api) -> None:
    deal_ref = f"DEAL-DUP-{uuid.uuid4().hex[:8]}"
    raw = (f'{{"deal_ref":"{deal_ref}","amount":"10","currency":"USD","amount":"999999"}}').encode()
    problem = problem_of(_post_raw(api, "/v1/commitments", raw), 400, "malformed_body")
    assert "amount" in problem["detail"]
    assert _deal_count(api, deal_ref) == 0


def test_a_key_twice_deep_in_a_body_is_refused(api: Api) -> None:
    cid = create_draft(api)
    leg = (
        '{"kind":"principal","chain":"xrpl","asset":{"code":"USD","issuer":null,"code":"EUR"},'
        '"amount":"10","sender":"a","receiver":"b"}'
    )
    raw = f'{{"legs":[{leg},{leg}],"commit_deadline":"2099-01-01T00:00:00Z"}}'.encode()
    response = _post_raw(api, f"/v1/commitments/{cid}/settlement", raw)
    problem = problem_of(response, 400, "malformed_body")
    assert "code" in problem["detail"]


def test_every_route_with_a_body_refuses_a_key_twice(api: Api) -> None:
    """Generated from the OpenAPI document, so a new route is covered."""
    checked = 0
    for method, path, operation in _operations(api):
        if "requestBody" not in operation:
            continue
        raw = b'{"reason":"first","reason":"second","note":"n","note":"m"}'
        response = _post_raw(api, _concrete(path), raw, key=api.admin, method=method.upper())
        problem_of(response, 400, "malformed_body")
        checked += 1
    assert checked >= 10


def test_a_legs_file_with_a_key_twice_is_refused(tmp_path: Path) -> None:
    legs = tmp_path / "legs.json"
    legs.write_text(
        '[{"kind":"principal","chain":"xrpl","asset":{"code":"USD"},"amount":"10",'
        '"amount":"999999","sender":"a","receiver":"b"}]',
        encoding="utf-8",
    )
    with pytest.raises(typer.Exit) as refused:
        legs_from(legs)
    assert refused.value.exit_code == 2


def test_the_client_refuses_an_answer_with_a_key_twice() -> None:
    """The client reads JSON from outside too: a server (or whatever answers in its
    place) sending a key twice is not read as its last value."""

    async def answer(request: Request) -> Response:
        body = b'{"id":"a","state":"DRAFT","amount":"10","amount":"999999"}'
        return Response(body, media_type="application/json")

    server = Starlette(routes=[Route("/v1/commitments/{commitment_id}", answer)])
    with (
        serving(server) as url,  # type: ignore[arg-type]
        SettlementClient(url, "key-x", Ed25519PrivateKey.generate()) as client,
        pytest.raises(strict_json.DuplicateKey, match="amount"),
    ):
        client.get_commitment(uuid.uuid4())


# -- control characters in parameters ---------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/v1/commitments?deal_ref=%00",
        "/v1/commitments?party=%00",
        "/v1/commitments?deal_ref=a%0Ab",
        "/v1/parties/x%00y",
        "/v1/parties/x%1By",
        "/v1/commitments?deal_ref=%C2%85",
    ],
)
def test_a_control_character_in_a_parameter_is_400(api: Api, target: str) -> None:
    problem = problem_of(api.send(api.admin, "GET", target), 400, "invalid_parameter")
    assert "control character" in problem["detail"]


def _string_parameters(operation: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    for parameter in operation.get("parameters", []):
        schema = parameter.get("schema", {})
        types = {schema.get("type")} | {s.get("type") for s in schema.get("anyOf", [])}
        if parameter["in"] in ("path", "query") and "string" in types:
            found.append((parameter["in"], parameter["name"]))
    return found


def test_every_text_parameter_refuses_control_characters(api: Api) -> None:
    """Generated from the OpenAPI document, so a new parameter is covered."""
    checked = 0
    for method, path, operation in _operations(api):
        for where, name in _string_parameters(operation):
            target = _concrete(path)
            if where == "path":
                target = path.replace(f"{{{name}}}", "x%00y")
                target = _concrete(target)
            else:
                target = f"{target}?{name}=x%00y"
            extra = {} if method == "get" else {"Idempotency-Key": str(uuid.uuid4())}
            response = api.send(api.admin, method.upper(), target, json={}, headers=extra)
            problem_of(response, 400, "invalid_parameter")
            checked += 1
    assert checked >= 15


def test_a_database_refusal_of_a_value_is_invalid_input(api: Api) -> None:
    """The translator's line behind the API's: a value PostgreSQL cannot hold is the
    caller's mistake (4xx), not an internal error."""
    with pytest.raises(errors.InvalidInput):
        reads.commitment_page(
            api.engine.db, state=None, party=None, deal_ref="a\x00b", limit=1, cursor=None
        )


# -- the JSON form of every optional field ----------------------------------------------

#: values for strings a pattern constrains, by the field they belong to
TEXT_OF_PATTERN = {"amount": "10.00", "currency": "USD", "status": "SETTLED"}


class _Schemas:
    """Example JSON values for the request schemas of one OpenAPI document."""

    def __init__(self, document: dict[str, Any], now: datetime) -> None:
        self.components = document["components"]["schemas"]
        self.now = now

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self.components[schema["$ref"].rsplit("/", 1)[1]]
        choices = [s for s in schema.get("anyOf", []) if s.get("type") != "null"]
        return self.resolve(choices[0]) if choices else schema

    def value(
        self, schema: dict[str, Any], name: str = "", with_field: tuple[str, ...] = ()
    ) -> Any:
        schema = self.resolve(schema)
        if "enum" in schema:
            return schema["enum"][0]
        kind = schema.get("type")
        if kind == "object":
            return self.object(schema, with_field)
        if kind == "array":
            count = max(schema.get("minItems", 1), 1)
            return [self.value(schema["items"], name, with_field) for _ in range(count)]
        if kind == "integer":
            return max(int(schema.get("minimum", 1)), 1)
        if kind == "boolean":
            return True
        assert kind == "string", (name, schema)
        return self.text(schema, name)

    def text(self, schema: dict[str, Any], name: str) -> str:
        match schema.get("format"):
            case "date-time":
                return (self.now + timedelta(days=1)).isoformat().replace("+00:00", "Z")
            case "date":
                return "2099-12-31"
            case "uuid":
                return str(uuid.uuid4())
        if "pattern" in schema:
            return TEXT_OF_PATTERN.get(name) or schema["examples"][0]
        return schema.get("examples", ["x" * max(schema.get("minLength", 1), 1)])[0]

    def object(self, schema: dict[str, Any], with_field: tuple[str, ...]) -> dict[str, Any]:
        """The required properties; along ``with_field`` (a path of property names,
        through arrays) one optional property too."""
        properties = schema.get("properties", {})
        names = list(schema.get("required", []))
        if with_field and with_field[0] not in names:
            names.append(with_field[0])
        return {
            n: self.value(
                properties[n], n, with_field[1:] if with_field and with_field[0] == n else ()
            )
            for n in names
        }

    def optional_fields(self, schema: dict[str, Any]) -> list[tuple[str, ...]]:
        """Every optional property reachable from ``schema``, as a path of names."""
        schema = self.resolve(schema)
        if schema.get("type") == "array":
            return self.optional_fields(schema["items"])
        found: list[tuple[str, ...]] = []
        required = set(schema.get("required", []))
        for name, inner in schema.get("properties", {}).items():
            if name not in required:
                found.append((name,))
            found += [(name, *deeper) for deeper in self.optional_fields(inner)]
        return found


def _json_body_schema(operation: dict[str, Any]) -> dict[str, Any] | None:
    body = operation.get("requestBody")
    if body is None:
        return None
    schema: dict[str, Any] = body["content"]["application/json"]["schema"]
    return schema


def _send_as_any_role(api: Api, method: str, path: str, body: Any) -> Any:
    """The answer to the first key whose role may call the route (403 to the others)."""
    for key in (api.allocator, api.officer, api.admin, api.auditor):
        response = api.send(
            key, method.upper(), path, json=body, headers={"Idempotency-Key": str(uuid.uuid4())}
        )
        if response.status_code != 403 or response.json()["code"] != "forbidden":
            return response
    raise AssertionError(f"no role may call {method} {path}")


def test_every_optional_field_is_accepted_in_its_json_form(api: Api) -> None:
    """Generated from the OpenAPI document: each optional field of each request body, in
    the JSON form the document gives it, passes validation (whatever the route then
    decides about the request)."""
    examples = _Schemas(_openapi(api), api.clock.now())
    checked = []
    for method, path, operation in _operations(api):
        schema = _json_body_schema(operation)
        if schema is None:
            continue
        for field in examples.optional_fields(schema):
            body = examples.value(schema, with_field=field)
            response = _send_as_any_role(api, method, _concrete(path), body)
            # the schema's refusals list their errors; a route's own checks do not
            assert "errors" not in response.json(), (
                method,
                path,
                field,
                body,
                response.text,
            )
            checked.append((path, field))
    assert ("/v1/commitments", ("expires_at",)) in checked
    assert ("/v1/commitments", ("commitment_id",)) in checked
    assert ("/v1/commitments/{commitment_id}/settlement", ("legs", "asset", "issuer")) in checked


def test_a_commitment_created_with_every_optional_field(api: Api) -> None:
    chosen = uuid.uuid4()
    expires_at = api.clock.now() + timedelta(days=2)
    with api.client(api.allocator) as client:
        created = client.create_commitment(
            deal_ref="DEAL-OPT",
            amount="12.50",
            currency="USD",
            counterparty="party-southbank",
            expires_at=expires_at,
            commitment_id=chosen,
        )
        assert created["commitment_id"] == str(chosen)
        shown = client.get_commitment(chosen)
    assert datetime.fromisoformat(shown["expires_at"]) == expires_at


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("expires_at", 4102444800),  # a number is not a time
        ("expires_at", "2099-01-01T00:00:00"),  # a time without a zone
        ("expires_at", "tomorrow"),
        ("commitment_id", 12345),
        ("commitment_id", "not-a-uuid"),
        ("amount", 10),  # still: money is a decimal string
        ("deal_ref", 7),
    ],
)
def test_the_json_forms_stay_strict(api: Api, field: str, value: Any) -> None:
    body = {"deal_ref": "DEAL-S", "amount": "10.00", "currency": "USD", field: value}
    response = api.send(
        api.allocator, "POST", "/v1/commitments", json=body, headers={"Idempotency-Key": "s"}
    )
    problem = problem_of(response, 422, "validation_failed")
    assert problem["errors"][0]["loc"] == ["body", field]
