"""GET /v1/commitments: filters, object-level authorisation, keyset pagination."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from settlement.client import ApiError

from .conftest import Api, problem_of


def _drafts(api: Api, deal_ref: str, count: int, *, key: Any = None) -> list[str]:
    with api.client(key or api.allocator) as client:
        return [
            str(
                client.create_commitment(deal_ref=deal_ref, amount="10.00", currency="USD")[
                    "commitment_id"
                ]
            )
            for _ in range(count)
        ]


def test_pages_walk_every_item_once_while_new_ones_arrive(api: Api) -> None:
    deal = f"PAGE-{uuid.uuid4()}"
    original = _drafts(api, deal, 7)
    seen: list[str] = []
    added: list[str] = []
    with api.client(api.allocator) as client:
        cursor: str | None = None
        while True:
            page = client.list_commitments(deal_ref=deal, limit=3, cursor=cursor)
            assert len(page["items"]) <= 3
            seen += [item["id"] for item in page["items"]]
            # rows inserted between pages must neither repeat nor hide older rows
            added += _drafts(api, deal, 1)
            cursor = page["next_cursor"]
            if cursor is None or len(added) > 10:
                break
    assert len(seen) == len(set(seen)), "a commitment was listed twice"
    assert set(original) <= set(seen)
    assert set(seen) <= set(original) | set(added)
    with api.client(api.allocator) as client:
        walked = [c["id"] for c in client.iter_commitments(deal_ref=deal, limit=4)]
    assert sorted(walked) == sorted(original + added)


def test_filters_by_state_and_deal(api: Api) -> None:
    deal = f"FILTER-{uuid.uuid4()}"
    first, second = _drafts(api, deal, 2)
    with api.client(api.allocator) as client:
        client.submit(second, expected_version=1)
        drafts = client.list_commitments(deal_ref=deal, state="DRAFT")["items"]
        pending = client.list_commitments(deal_ref=deal, state="PENDING_REVIEW")["items"]
    assert [c["id"] for c in drafts] == [first]
    assert [c["id"] for c in pending] == [second]
    assert pending[0]["amount"] == "10"


def test_an_allocator_lists_only_its_own_party(api: Api) -> None:
    deal = f"OWN-{uuid.uuid4()}"
    mine = _drafts(api, deal, 2)
    theirs = _drafts(api, deal, 1, key=api.other_allocator)
    with api.client(api.allocator) as client:
        listed = [c["id"] for c in client.list_commitments(deal_ref=deal)["items"]]
        same = client.list_commitments(deal_ref=deal, party="party-northwind")["items"]
        with pytest.raises(ApiError) as refused:
            client.list_commitments(deal_ref=deal, party="party-southbank")
    assert sorted(listed) == sorted(mine)
    assert sorted(c["id"] for c in same) == sorted(mine)
    assert refused.value.status == 403
    assert refused.value.code == "forbidden"
    for key in (api.officer, api.admin, api.auditor):
        with api.client(key) as client:
            everyone = {c["id"] for c in client.list_commitments(deal_ref=deal)["items"]}
            southbank = client.list_commitments(deal_ref=deal, party="party-southbank")
        assert everyone == set(mine) | set(theirs)
        assert [c["id"] for c in southbank["items"]] == theirs


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("limit=0", 422, "validation_failed"),
        ("limit=201", 422, "validation_failed"),
        ("state=SOMEWHERE", 422, "validation_failed"),
        ("cursor=not-a-cursor", 400, "invalid_cursor"),
        ("cursor=WyJ4IiwieSJd", 400, "invalid_cursor"),
    ],
)
def test_bad_queries_are_clear_problems(api: Api, query: str, status: int, code: str) -> None:
    problem_of(api.send(api.auditor, "GET", f"/v1/commitments?{query}"), status, code)


def test_unsigned_listing_is_401(api: Api) -> None:
    problem_of(api.send(None, "GET", "/v1/commitments"), 401, "signature_missing")
