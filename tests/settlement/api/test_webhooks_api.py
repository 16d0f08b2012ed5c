"""Webhook endpoints through the signed API: registration and its bad input (a 422
problem, nothing stored), the unsigned public keys, and a delivery end to end: the
receiver example fetches the keys from the API and verifies what the worker sends."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest

from settlement import bootstrap
from settlement.client import ApiError
from settlement.domain import errors
from settlement.services.webhooks import DeliveryPolicy, check_url
from settlement.settings import SettingsError
from settlement.webhook_receiver import WebhookReceiver, fetch_keys, handler_for

from .conftest import Api, create_draft, problem_of
from .test_cli_api import Cli, live, settle

__all__ = ["live", "settle"]  # fixtures

HOOK = "http://127.0.0.1:9/api-test"


def _register(api: Api, body: dict[str, object]) -> object:
    return api.send(
        api.allocator,
        "POST",
        "/v1/webhooks/endpoints",
        json=body,
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"url": "not a url", "event_types": ["review.approved"]}, "invalid_webhook_url"),
        ({"url": "ftp://example.com/x", "event_types": ["review.approved"]}, "invalid_webhook_url"),
        ({"url": "https://user:pw@example.com/", "event_types": ["review.approved"]},
         "invalid_webhook_url"),
        ({"url": "https://example.com:99999/", "event_types": ["review.approved"]},
         "invalid_webhook_url"),
        ({"url": "https://example.com/", "event_types": ["review.nope"]}, "unknown_event_type"),
        ({"url": "https://example.com/", "event_types": []}, None),
        ({"url": "https://example.com/", "event_types": ["review.approved"], "x": 1}, None),
    ],
)  # fmt: skip
def test_bad_input_is_refused_and_nothing_stored(
    api: Api, body: dict[str, object], code: str | None
) -> None:
    with api.client(api.allocator) as client:
        before = client.webhooks()
    response = _register(api, body)
    assert response.status_code == 422, response.text  # type: ignore[attr-defined]
    if code is not None:
        problem_of(response, 422, code)  # type: ignore[arg-type]
    with api.client(api.allocator) as client:
        assert client.webhooks() == before


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",
        "https://127.0.0.1/hook",
        "https://10.1.2.3/hook",
        "https://192.168.0.5/hook",
        "https://169.254.169.254/latest",
        "https://[::1]/hook",
        "https://localhost/hook",
    ],
)
def test_outside_the_local_network_only_public_https(url: str) -> None:
    assert check_url(url, local_network=True) == url
    with pytest.raises(errors.InvalidWebhookUrl):
        check_url(url, local_network=False)
    assert check_url("https://hooks.example.com/x", local_network=False)


def test_an_allocator_registers_for_its_own_party_only(api: Api) -> None:
    with api.client(api.allocator) as client:
        mine = client.add_webhook(HOOK, ["settlement.flagged"])
        assert mine["party"] == "party-northwind" and mine["active"]
        with pytest.raises(ApiError) as refused:
            client.add_webhook(HOOK, ["settlement.flagged"], party="party-southbank")
        assert refused.value.status == 403
        disabled = client.disable_webhook(mine["id"])
        assert disabled["active"] is False
    with api.client(api.admin) as admin:
        every = admin.add_webhook(HOOK, ["settlement.flagged"])
        assert every["party"] is None
        admin.disable_webhook(every["id"])


def test_an_admin_names_a_party_that_exists(api: Api) -> None:
    """An endpoint for a party with no KYC record (a typo) would wait for events that
    never come: 422 ``unknown_party``, nothing stored."""
    with api.client(api.admin) as admin:
        before = admin.webhooks()
        with pytest.raises(ApiError) as refused:
            admin.add_webhook(HOOK, ["settlement.flagged"], party="party-nowhere")
        assert (refused.value.status, refused.value.code) == (422, "unknown_party")
        assert admin.webhooks() == before


def test_without_a_signing_key_the_keys_are_a_503_problem(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside the local network the key must be configured; until it is, the keys
    route says the engine cannot serve them (503 problem), not a server error."""
    testnet = api.engine.settings.model_copy(
        update={"network": "testnet", "webhook_signing_key": None}
    )
    with pytest.raises(SettingsError):
        bootstrap.webhook_key(testnet)
    monkeypatch.setattr(api.engine, "settings", testnet)
    problem_of(api.send(None, "GET", "/v1/webhooks/keys"), 503, "engine_unavailable")


def test_the_keys_are_served_unsigned(api: Api) -> None:
    response = api.send(None, "GET", "/v1/webhooks/keys")
    assert response.status_code == 200
    (key,) = response.json()["keys"]
    assert key["alg"] == "ed25519" and key["kid"].startswith("engine-webhooks-")


@pytest.fixture
def receiver(api: Api) -> Iterator[tuple[str, WebhookReceiver]]:
    hook = WebhookReceiver(fetch_keys(api.url), now=api.clock.now)
    base: list[str] = []
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), handler_for(hook, public_url=lambda path: base[0] + path)
    )
    base.append(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base[0] + "/events", hook
    server.shutdown()
    server.server_close()


def test_a_delivery_verifies_with_the_published_key(
    api: Api, receiver: tuple[str, WebhookReceiver]
) -> None:
    url, hook = receiver
    with api.client(api.allocator) as client:
        endpoint = client.add_webhook(url, ["commitment.created"])
    try:
        commitment = create_draft(api)
        worker = bootstrap.build_delivery_worker(api.engine, policy=DeliveryPolicy(timeout_s=2))
        try:
            while worker.run_once():
                pass
        finally:
            worker.close()
        with api.client(api.allocator) as client:
            (delivery,) = client.webhook_deliveries(endpoint["id"])
    finally:
        with api.client(api.allocator) as client:
            client.disable_webhook(endpoint["id"])
    assert delivery["status"] == "delivered"
    assert [e["commitment_id"] for e in hook.events] == [commitment]
    assert hook.events[0]["id"] == delivery["event_id"]


def test_the_cli_adds_lists_replays_and_disables(settle: Cli, live: Api) -> None:
    alloc = live.allocator
    added = settle.json(
        alloc, "webhooks", "add", HOOK, "--event", "review.approved", "--event", "settlement.locked"
    )
    assert added["party"] == "party-northwind"
    assert added["event_types"] == ["review.approved", "settlement.locked"]
    code, out = settle(alloc, "webhooks", "list")
    assert code == 0 and added["id"] in out and "review.approved,settlement.locked" in out
    code, out = settle(alloc, "webhooks", "deliveries", added["id"], "--status", "dead")
    assert (code, out.strip()) == (0, "no deliveries")
    code, out = settle(alloc, "webhooks", "replay", added["id"])
    assert (code, out.strip()) == (0, "replayed 0 dead deliveries")
    code, out = settle(alloc, "webhooks", "disable", added["id"])
    assert (code, out.strip()) == (0, f"{added['id']}: disabled")
    # bad input is the API's 422, exit 1, nothing stored
    code, out = settle(alloc, "webhooks", "add", "ftp://example.com/", "--event", "review.approved")
    assert code == 1 and "invalid_webhook_url" in out
    code, out = settle(live.other_allocator, "webhooks", "disable", added["id"])
    assert code == 1 and "not_authorised" in out
    assert [e["id"] for e in settle.json(alloc, "webhooks", "list")] == [added["id"]]


def test_metrics_count_pending_and_dead_deliveries(api: Api) -> None:
    text = api.send(None, "GET", "/metrics").text
    assert 'settlement_webhook_deliveries{status="pending"}' in text
    assert 'settlement_webhook_deliveries{status="dead"}' in text
