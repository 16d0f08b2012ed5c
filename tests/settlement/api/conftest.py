"""The API on a real uvicorn server (port 0, a thread) over a real database.

Officers are registered through the compliance desk, then each person's key through the
key service; every request goes over loopback HTTP, signed as a client from outside
would sign it. The people of each running API are new (a random tag in their names), so
tests sharing a database never share a person's idempotency keys.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI

from settlement import bootstrap, signing
from settlement.api.app import create_app
from settlement.client import SettlementClient
from settlement.clock import Clock, ManualClock
from settlement.domain.values import Role
from settlement.services.compliance import ComplianceService
from settlement.services.keys import KeyService
from tests.support import ADMIN, seed_compliance

#: small, so the oversize test needs no large payload
MAX_BODY_BYTES = 4096


@dataclass(frozen=True)
class Key:
    key_id: str
    private_key: Ed25519PrivateKey
    #: whose key it is: what the history and audit log name as the actor
    person: str = ""


@dataclass
class Api:
    url: str
    app: FastAPI
    engine: bootstrap.Services
    clock: Clock
    keys: KeyService
    allocator: Key
    other_allocator: Key
    officer: Key
    officer_2: Key
    admin: Key
    auditor: Key

    def keys_by_role(self) -> dict[str, Key]:
        """One key of each role, the allocator of party-northwind as "allocator"."""
        return {
            "allocator": self.allocator,
            "compliance_officer": self.officer,
            "admin": self.admin,
            "auditor": self.auditor,
        }

    def client(self, key: Key, **kw: Any) -> SettlementClient:
        return SettlementClient(self.url, key.key_id, key.private_key, now=self.clock.now, **kw)

    def send(
        self,
        key: Key | None,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        created: datetime | None = None,
        nonce: str | None = None,
        covered: tuple[str, ...] = signing.COVERED_COMPONENTS,
        tamper: Any = None,
    ) -> httpx.Response:
        """One raw request, signed by ``key`` (unsigned if None); ``tamper`` may change
        the signed request before it is sent."""
        with httpx.Client(base_url=self.url, timeout=10) as http:
            request = http.build_request(
                method, path, json=json, content=content, headers=headers or {}
            )
            if key is not None:
                signing.sign_request(
                    request,
                    key_id=key.key_id,
                    private_key=key.private_key,
                    created=created or self.clock.now(),
                    nonce=nonce,
                    covered=covered,
                )
            if tamper is not None:
                request = tamper(request)
            return http.send(request)


def register(keys: KeyService, role: Role, person: str, party: str | None = None) -> Key:
    """A new key of ``person`` (for an officer: a registered officer id)."""
    created = keys.create(role=role, party=party, person=person, created_by="test")
    return Key(created.record.key_id, created.private_key, created.record.person)


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """``app`` on a real uvicorn server on a free loopback port, in a thread; its URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def running_api(
    engine: bootstrap.Services,
    clock: Clock,
    *,
    ledgers: bootstrap.Ledgers | None = None,
    scope: str | None = None,
) -> Iterator[Api]:
    """The API over ``engine`` (and ``ledgers``, if given) with one key per role."""
    seed_compliance(engine.commitments)
    keys = KeyService(engine.db, clock)
    tag = secrets.token_hex(4)
    desk = ComplianceService(engine.db, clock)
    for name in ("ada", "grace"):
        desk.register_officer(ADMIN, f"officer-{name}-{tag}", display_name=name.title())
    officer = register(keys, Role.COMPLIANCE_OFFICER, f"officer-ada-{tag}")
    officer_2 = register(keys, Role.COMPLIANCE_OFFICER, f"officer-grace-{tag}")
    app = create_app(
        engine,
        max_body_bytes=MAX_BODY_BYTES,
        ledgers=ledgers,
        scope=scope or f"api-test-{uuid.uuid4()}",
    )
    with serving(app) as url:
        yield Api(
            url=url,
            app=app,
            engine=engine,
            clock=clock,
            keys=keys,
            allocator=register(keys, Role.ALLOCATOR, f"alice-{tag}", "party-northwind"),
            other_allocator=register(keys, Role.ALLOCATOR, f"sam-{tag}", "party-southbank"),
            officer=officer,
            officer_2=officer_2,
            admin=register(keys, Role.ADMIN, f"admin-{tag}"),
            auditor=register(keys, Role.AUDITOR, f"auditor-{tag}"),
        )


@pytest.fixture
def api(engine: bootstrap.Services, clock: ManualClock) -> Iterator[Api]:
    with running_api(engine, clock) as running:
        yield running


def problem_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert an RFC 9457 problem with this status and code; return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == f"urn:settlement:problem:{code}"
    assert body["code"] == code
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def create_draft(api: Api, amount: str = "1000.00") -> str:
    """A DRAFT commitment of the allocator's party, created through the client."""
    with api.client(api.allocator) as client:
        created = client.create_commitment(deal_ref="DEAL-API", amount=amount, currency="USD")
    assert created["to_state"] == "DRAFT"
    return str(created["commitment_id"])
