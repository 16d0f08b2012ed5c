"""Bad input gets rippled-style errors and never changes or breaks the node."""

from __future__ import annotations

import httpx
import pytest
from xrpl.wallet import Wallet

GENESIS = "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh"


@pytest.fixture
def http(node):
    with httpx.Client(base_url=node.url) as client:
        yield client


def _rpc(http, method, **params):
    return http.post("/", json={"method": method, "params": [params]}).json()["result"]


def test_transport_level_garbage(http) -> None:
    bad_json = http.post("/", content=b"{not json", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400
    assert bad_json.text.startswith("Unable to parse request")
    no_method = http.post("/", json={"params": [{}]})
    assert no_method.status_code == 400
    bad_params = http.post("/", json={"method": "ping", "params": {"a": 1}})
    assert bad_params.status_code == 400
    huge = http.post("/", content=b"x" * (3 * 1024 * 1024))
    assert huge.status_code == 413
    assert http.post("/nowhere", json={"method": "ping"}).status_code == 404


def test_rpc_level_errors(http) -> None:
    unknown = _rpc(http, "rm_rf")
    assert (unknown["error"], unknown["error_code"], unknown["status"]) == (
        "unknownCmd",
        32,
        "error",
    )
    assert unknown["request"]["command"] == "rm_rf"
    assert _rpc(http, "account_info", account="not-an-address")["error"] == "actMalformed"
    missing = _rpc(http, "account_info", account=Wallet.create().classic_address)
    assert missing["error"] == "actNotFound" and missing["validated"] is False
    assert _rpc(http, "tx", transaction="AB" * 32)["error"] == "txnNotFound"
    assert _rpc(http, "ledger", ledger_index="yesterday")["error"] == "invalidParams"
    assert _rpc(http, "account_objects", account=GENESIS, type="nft")["error"] == "invalidParams"
    assert _rpc(http, "submit")["error"] == "invalidParams"


@pytest.mark.parametrize("blob", ["", "zz", "00", "12000022" * 40, "DEADBEEF" * 100])
def test_garbage_blobs_are_invalid_transactions(http, node, blob) -> None:
    before = node.chain.last_closed.header.hash
    result = _rpc(http, "submit", tx_blob=blob)
    assert result["status"] == "error"
    assert result["error"] in ("invalidTransaction", "invalidParams")
    assert _rpc(http, "ledger_accept")["status"] == "success"
    assert node.chain.last_closed.header.parent_hash == before
    assert node.chain.last_closed.header.transaction_hash == "0" * 64
