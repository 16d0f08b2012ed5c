"""Input from outside that a lenient parser would read one way and a person another:
a JSON key twice in one object, control characters in a parameter, and the JSON
forms of every optional field (which a strict model must still accept)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import typer

from settlement import errors
from settlement.api import reads
from settlement.cli_commitments import legs_from

from .conftest import Api, create_draft, problem_of


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
