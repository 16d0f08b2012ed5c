"""The console on a real uvicorn server (port 0, a thread) over a real database.

The app is a plain FastAPI application with only the console installed (no API
signature guard), served over loopback HTTP, so cookies are not marked Secure here;
a test checks that they are by default. Officers are registered through the
compliance desk and accounts through ``ConsoleAccounts``, as ``settle officers`` does.
"""

from __future__ import annotations

import html
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

import httpx
import pytest
import uvicorn
from argon2 import PasswordHasher
from fastapi import FastAPI

from settlement import bootstrap
from settlement.clock import ManualClock
from settlement.console import install_console
from settlement.domain.values import Actor, Role
from settlement.services.console_accounts import ConsoleAccounts
from tests.support import ADMIN, ALLOCATOR, OFFICER, seed_compliance

#: cheap parameters keep the many sign-ins of the suite fast; a test proves that an
#: account hashed with the library defaults is rehashed to these on sign-in
TEST_HASHER = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
SESSION_TTL_S = 8 * 3600
IDLE_TIMEOUT_S = 30 * 60
MAX_ATTEMPTS = 5
LOCKOUT_S = 15 * 60
PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_KEY = re.compile(r'name="idempotency_key" value="([^"]+)"')


@dataclass(frozen=True)
class Login:
    username: str
    password: str
    actor_id: str


@dataclass
class ConsoleServer:
    url: str
    engine: bootstrap.Services
    clock: ManualClock
    accounts: ConsoleAccounts

    def officer(self, *, senior: bool = False, actor_id: str | None = None) -> Login:
        """A newly registered officer with a console account."""
        suffix = uuid.uuid4().hex[:8]
        ident = actor_id or f"key-officer-{suffix}"
        self.engine.compliance.register_officer(
            ADMIN, ident, display_name=f"Officer {suffix}", senior=senior
        )
        return self._account(f"officer-{suffix}", ident, Role.COMPLIANCE_OFFICER)

    def admin(self) -> Login:
        suffix = uuid.uuid4().hex[:8]
        return self._account(f"admin-{suffix}", f"key-admin-{suffix}", Role.ADMIN)

    def _account(self, username: str, actor_id: str, role: Role) -> Login:
        self.accounts.create(
            username=username,
            password=PASSWORD,
            actor_id=actor_id,
            role=role,
            created_by="test",
        )
        return Login(username, PASSWORD, actor_id)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, follow_redirects=False)

    def sign_in(self, client: httpx.Client, login: Login) -> httpx.Response:
        form = client.get("/console/sign-in")
        assert form.status_code == 200, form.text
        return client.post(
            "/console/sign-in",
            data={
                "username": login.username,
                "password": login.password,
                "csrf_token": csrf_of(form.text),
            },
        )

    @contextmanager
    def signed_in(self, login: Login) -> Iterator[httpx.Client]:
        with self.client() as client:
            response = self.sign_in(client, login)
            assert response.status_code == 303, response.text
            yield client

    def under_review(
        self,
        *,
        amount: str = "1000",
        counterparty: str | None = "party-southbank",
        submitter: Actor = ALLOCATOR,
    ) -> UUID:
        """A commitment of ``submitter``'s party, submitted (PENDING_REVIEW, version 2)."""
        service = self.engine.commitments
        created = service.create(
            submitter,
            deal_ref=f"DEAL-{uuid.uuid4().hex[:6].upper()}",
            amount=amount,
            currency="USD",
            counterparty=counterparty,
        )
        service.submit(submitter, created.commitment_id, expected_version=1)
        return created.commitment_id

    def sanctioned_party(self) -> str:
        """A party whose legal name is on the invented sample list (a hard fail)."""
        party = f"party-boreal-{uuid.uuid4().hex[:6]}"
        self.engine.compliance.create_kyc(
            OFFICER,
            party=party,
            legal_name="Borealis Nordfjord Commodities AS",
            jurisdiction="GB",
            risk_rating="low",
            accredited=True,
            status="verified",
            expires_on=date(2099, 12, 31),
        )
        return party


def csrf_of(page: str) -> str:
    found = _CSRF.search(page)
    assert found is not None, "no CSRF token on the page"
    return html.unescape(found.group(1))


def form_fields(page: str, action: str) -> dict[str, str]:
    """The hidden fields of the form that posts to ``.../{action}`` on a detail page."""
    start = page.index(f'/{action}" class="stacked">')
    form = page[start : page.index("</form>", start)]
    fields = dict(re.findall(r'type="hidden" name="([a-z_]+)" value="([^"]*)"', form))
    return {k: html.unescape(v) for k, v in fields.items()}


def serve(app: FastAPI) -> tuple[uvicorn.Server, threading.Thread, str]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, f"http://127.0.0.1:{port}"


def console_app(engine: bootstrap.Services, clock: ManualClock, **options: Any) -> FastAPI:
    app = FastAPI()
    install_console(
        app,
        engine,
        clock=clock,
        session_ttl_s=SESSION_TTL_S,
        idle_timeout_s=IDLE_TIMEOUT_S,
        max_attempts=MAX_ATTEMPTS,
        lockout_s=LOCKOUT_S,
        **{"secure_cookies": False, "password_hasher": TEST_HASHER, **options},
    )
    return app


@pytest.fixture
def console(engine: bootstrap.Services, clock: ManualClock) -> Iterator[ConsoleServer]:
    seed_compliance(engine.commitments)
    server, thread, url = serve(console_app(engine, clock))
    yield ConsoleServer(
        url=url,
        engine=engine,
        clock=clock,
        accounts=ConsoleAccounts(engine.db, clock, engine.compliance, hasher=TEST_HASHER),
    )
    server.should_exit = True
    thread.join(timeout=10)
