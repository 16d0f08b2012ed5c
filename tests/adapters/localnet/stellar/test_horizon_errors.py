"""Horizon's own error documents: types, titles, statuses, details and reasons.

Checked against Horizon (stellar/stellar-horizon): internal/actions/validators.go
(customTagsErrorMessages: account_id, tx_id, ledger_id, id), actions/helpers.go
(getLimit, getCursor), db2/page_query.go (NewPageQuery: "<field>: invalid value"),
render/problem/problem.go (not_acceptable, before_history) and
actions/submit_transaction.go (transaction_malformed).
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from stellar_sdk import Keypair, Server
from stellar_sdk.exceptions import BadRequestError

from adapters.localnet.stellar import StellarNode

PREFIX = "https://stellar.org/horizon-errors/"


def get(node: StellarNode, path: str, **params: str) -> tuple[int, dict[str, Any]]:
    reply = requests.get(f"{node.base_url}{path}", params=params, timeout=5)
    assert reply.headers["Content-Type"].startswith("application/problem+json"), reply.text
    return reply.status_code, reply.json()


def assert_bad_request(body: dict[str, Any], field: str, reason: str) -> None:
    assert body["type"] == PREFIX + "bad_request"
    assert body["title"] == "Bad Request"
    assert body["status"] == 400
    assert body["detail"] == "The request you sent was invalid in some way."
    assert body["extras"] == {"invalid_field": field, "reason": reason}


ACCOUNT_REASON = "Account ID must start with `G` and contain 56 alphanum characters"


@pytest.mark.parametrize(
    "path",
    [
        "/accounts/GABC",
        "/accounts/" + Keypair.random().secret,  # a secret seed is not an account id
        "/accounts/notanaccount/transactions",
        "/accounts/GABC/data/name",
    ],
)
def test_a_malformed_account_id(node: StellarNode, path: str) -> None:
    status, body = get(node, path)
    assert status == 400
    assert_bad_request(body, "account_id", ACCOUNT_REASON)


def test_the_sdk_raises_bad_request_with_horizons_extras(server: Server) -> None:
    with pytest.raises(BadRequestError) as caught:
        server.accounts().account_id("GABC").call()
    assert caught.value.extras == {"invalid_field": "account_id", "reason": ACCOUNT_REASON}


@pytest.mark.parametrize(
    "tx_id",
    ["abc", "AB" * 32, "zz" * 32, "ab" * 33],  # short, upper case, not hex, too long
)
def test_a_malformed_transaction_hash(node: StellarNode, tx_id: str) -> None:
    status, body = get(node, f"/transactions/{tx_id}")
    assert status == 400
    assert_bad_request(
        body, "tx_id", "Transaction hash must be a hex-encoded, lowercase SHA-256 hash"
    )


@pytest.mark.parametrize(
    ("params", "field", "reason"),
    [
        ({"limit": "ten"}, "limit", "unparseable value"),
        ({"limit": "0"}, "limit", "invalid limit: non-positive value provided"),
        ({"limit": "-3"}, "limit", "invalid limit: non-positive value provided"),
        ({"limit": "201"}, "limit", "invalid limit: value provided that is over limit max of 200"),
        ({"order": "up"}, "order", "order: invalid value"),
        ({"cursor": "abc"}, "cursor", "cursor: invalid value"),
        ({"cursor": "-1"}, "cursor", "the cursor -1 is a negative number: "),
    ],
)
def test_bad_paging_parameters(
    node: StellarNode, params: dict[str, str], field: str, reason: str
) -> None:
    for path in ("/transactions", "/ledgers"):
        status, body = get(node, path, **params)
        assert status == 400
        assert_bad_request(body, field, reason)


@pytest.mark.parametrize("ledger_id", ["abc", "-1", "4294967296", "1.5"])
def test_a_malformed_ledger_id(node: StellarNode, ledger_id: str) -> None:
    for path in (f"/ledgers/{ledger_id}", f"/ledgers/{ledger_id}/transactions"):
        status, body = get(node, path)
        assert status == 400
        assert_bad_request(body, "ledger_id", "Ledger ID must be an integer higher than 0")


def test_ledger_zero_is_before_history(node: StellarNode) -> None:
    status, body = get(node, "/ledgers/0")
    assert status == 410
    assert body["type"] == PREFIX + "before_history"
    assert body["title"] == "Data Requested Is Before Recorded History"


def test_a_ledger_not_yet_closed_is_not_found(node: StellarNode) -> None:
    status, body = get(node, f"/ledgers/{node.latest_ledger + 1000}")
    assert status == 404
    assert body["type"] == PREFIX + "not_found"
    assert body["title"] == "Resource Missing"
    assert body["detail"].startswith("The resource at the url requested was not found.")


def test_a_malformed_claimable_balance_id(node: StellarNode) -> None:
    status, body = get(node, "/claimable_balances/xyz")
    assert status == 400
    assert_bad_request(
        body,
        "id",
        "Claimable Balance ID must be the hex-encoded XDR representation of a Claimable Balance ID",
    )


def test_a_malformed_envelope_is_echoed(node: StellarNode) -> None:
    reply = requests.post(f"{node.base_url}/transactions", data={"tx": "bm90IHhkcg=="}, timeout=5)
    body = reply.json()
    assert reply.status_code == 400
    assert body["type"] == PREFIX + "transaction_malformed"
    assert body["title"] == "Transaction Malformed"
    assert body["detail"].endswith(
        "The envelope read from this request is echoed in the `extras.envelope_xdr` "
        "field of this response for your convenience."
    )
    assert body["extras"] == {"envelope_xdr": "bm90IHhkcg=="}
    assert node.pending_count == 0


def test_an_unstreamable_resource_asked_as_a_stream_is_not_acceptable(node: StellarNode) -> None:
    reply = requests.get(
        f"{node.base_url}/fee_stats", headers={"Accept": "text/event-stream"}, timeout=5
    )
    assert reply.status_code == 406
    assert reply.json() == {
        "type": PREFIX + "not_acceptable",
        "title": "An acceptable response content-type could not be provided for this request",
        "status": 406,
    }
