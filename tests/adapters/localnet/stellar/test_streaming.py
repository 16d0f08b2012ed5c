"""Horizon's server-sent event streams, read by stellar-sdk's own streaming iterator.

Checked against Horizon (stellar/stellar-horizon) internal/render/sse/main.go (the
"hello" preamble with retry 1000, `id:` + `data:` per record, the "byebye" close
event with retry 10), sse/stream_handler.go (records again after each ledger, at
most `limit` events), httpx/handler.go (page and object streams, 406 for the rest)
and actions/helpers.go getCursor (`now` = toid.AfterLedger(latest), Last-Event-ID
wins over cursor).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from stellar_sdk import Asset, Keypair, Server

from adapters.localnet.stellar import StellarNode
from tests.adapters.localnet.stellar.helpers import build, sign_all

Fund = Callable[[], Keypair]
STREAM = {"Accept": "text/event-stream"}


def events(response: requests.Response) -> Iterator[dict[str, str]]:
    """Parse an event stream into {"id", "event", "data", "retry"} dicts."""
    current: dict[str, str] = {}
    for line in response.iter_lines(decode_unicode=True):
        if not line:
            if current:
                yield current
            current = {}
            continue
        name, _, value = line.partition(": ")
        current[name] = value


def open_stream(node: StellarNode, path: str, **params: str) -> requests.Response:
    return requests.get(
        f"{node.base_url}{path}", params=params, headers=STREAM, stream=True, timeout=10
    )


def pay(server: Server, node: StellarNode, source: Keypair, dest: Keypair) -> None:
    envelope = sign_all(
        build(server, node, source).append_payment_op(dest.public_key, Asset.native(), "3").build(),
        source,
    )
    server.submit_transaction(envelope)


def test_a_stream_is_framed_as_horizon_frames_it(node: StellarNode) -> None:
    node.faults.halt_ledgers()
    response = open_stream(node, "/ledgers", cursor="0", limit="2")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    got = list(events(response))  # the stream ends after `limit` events
    assert got[0] == {"retry": "1000", "event": "open", "data": '"hello"'}
    assert [e["id"] for e in got[1:3]] == [str(1 << 32), str(2 << 32)]
    assert '"sequence":1' in got[1]["data"] and '"sequence":2' in got[2]["data"]
    assert got[3] == {"retry": "10", "event": "close", "data": '"byebye"'}
    assert len(got) == 4


def test_cursor_now_sends_only_later_ledgers(node: StellarNode) -> None:
    node.faults.halt_ledgers()
    latest = node.latest_ledger
    response = open_stream(node, "/ledgers", cursor="now", limit="1")
    stream = events(response)
    assert next(stream)["event"] == "open"  # connected: now is fixed
    node.close_ledger()
    record = next(stream)
    assert record["id"] == str((latest + 1) << 32)
    assert next(stream)["event"] == "close"


def test_the_sdk_streams_ledgers_from_now(server: Server, node: StellarNode) -> None:
    node.faults.halt_ledgers()
    start = node.latest_ledger
    stop = threading.Event()

    def keep_closing() -> None:
        while not stop.wait(0.05):
            node.close_ledger()

    closer = threading.Thread(target=keep_closing, daemon=True)
    closer.start()
    try:
        got = list(itertools.islice(server.ledgers().cursor("now").stream(), 3))
    finally:
        stop.set()
        closer.join()
    sequences = [g["sequence"] for g in got]
    assert sequences[0] > start
    assert sequences == list(range(sequences[0], sequences[0] + 3))


def test_the_sdk_streams_an_accounts_transactions_across_reconnections(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, bob = fund(), fund()
    created = server.transactions().for_account(alice.public_key).call()
    cursor = created["_embedded"]["records"][-1]["paging_token"]
    for _ in range(3):
        pay(server, node, alice, bob)
    # limit=2: Horizon closes after two events; the SDK reconnects from the last id.
    stream = server.transactions().for_account(alice.public_key).cursor(cursor).limit(2)
    got = list(itertools.islice(stream.stream(), 3))
    assert len({g["hash"] for g in got}) == 3
    assert all(g["source_account"] == alice.public_key for g in got)
    assert [g["paging_token"] for g in got] == sorted(g["paging_token"] for g in got)


def test_last_event_id_resumes_after_that_record(node: StellarNode) -> None:
    node.faults.halt_ledgers()
    response = requests.get(
        f"{node.base_url}/ledgers",
        params={"cursor": "0", "limit": "1"},
        headers={**STREAM, "Last-Event-ID": str(1 << 32)},
        stream=True,
        timeout=10,
    )
    got = list(events(response))
    assert got[1]["id"] == str(2 << 32)


def test_an_account_streams_its_new_state_only_when_it_changes(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, bob = fund(), fund()
    response = open_stream(node, f"/accounts/{alice.public_key}", limit="2")
    stream = events(response)
    assert next(stream)["event"] == "open"
    first = next(stream)
    assert "id" not in first and alice.public_key in first["data"]
    node.close_ledger()  # nothing changed for alice: no event
    pay(server, node, alice, bob)
    second = next(stream)
    assert second["data"] != first["data"]
    assert server.accounts().account_id(alice.public_key).call()["sequence"] in second["data"]


def test_stopping_the_node_ends_an_open_stream(node: StellarNode) -> None:
    node.faults.halt_ledgers()
    response = open_stream(node, "/transactions", cursor="now")
    stream = events(response)
    assert next(stream)["event"] == "open"
    node.stop()
    rest = list(stream)  # returns: the stream ended
    assert rest == [{"retry": "10", "event": "close", "data": '"byebye"'}]


def _stream_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("Thread-"))


def test_a_client_leaving_frees_the_streams_thread(node: StellarNode) -> None:
    node.faults.halt_ledgers()
    before = _stream_threads()
    response = open_stream(node, "/ledgers", cursor="now")
    assert next(events(response))["event"] == "open"
    assert _stream_threads() == before + 1
    response.close()
    for _ in range(200):  # the server notices between ledgers
        if _stream_threads() == before:
            break
        time.sleep(0.02)
    assert _stream_threads() == before


# -- malformed requests: Horizon's problem, before any stream starts ---------------------


@pytest.mark.parametrize(
    ("path", "params", "status", "field"),
    [
        ("/ledgers", {"cursor": "abc"}, 400, "cursor"),
        ("/ledgers", {"cursor": "-5"}, 400, "cursor"),
        ("/transactions", {"limit": "0"}, 400, "limit"),
        ("/transactions", {"limit": "201"}, 400, "limit"),
        ("/transactions", {"order": "sideways"}, 400, "order"),
        ("/accounts/GBAD/transactions", {}, 400, "account_id"),
        ("/fee_stats", {}, 406, None),
        ("/transactions/" + "ab" * 32, {}, 406, None),
        ("/no/such/stream", {}, 404, None),
    ],
)
def test_a_refused_stream_is_a_problem_not_an_event(
    node: StellarNode, path: str, params: dict[str, str], status: int, field: str | None
) -> None:
    reply = requests.get(f"{node.base_url}{path}", params=params, headers=STREAM, timeout=5)
    assert reply.status_code == status
    assert reply.headers["Content-Type"].startswith("application/problem+json")
    body: dict[str, Any] = reply.json()
    if field is not None:
        assert body["extras"]["invalid_field"] == field
    # The server is still there and unchanged.
    assert requests.get(f"{node.base_url}/", timeout=5).status_code == 200


def test_a_failure_after_the_stream_started_is_an_error_event(
    node: StellarNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Horizon's Stream.Err once the preamble is out: `event: error`, then the end."""
    node.faults.halt_ledgers()
    response = open_stream(node, "/ledgers", cursor="now")
    stream = events(response)
    assert next(stream)["event"] == "open"

    def broken(*args: object) -> None:
        raise RuntimeError("rendering failed")

    monkeypatch.setattr("adapters.localnet.stellar.horizon.ledger_resource", broken)
    node.close_ledger()
    assert list(stream) == [{"event": "error", "data": "Unexpected stream error"}]
    monkeypatch.undo()
    assert requests.get(f"{node.base_url}/ledgers", timeout=5).status_code == 200
