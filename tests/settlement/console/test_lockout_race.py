"""The lockout holds against sign-in attempts made at once, over real HTTP and a real
database.

A hasher whose check waits at a barrier lets the test decide the interleaving: each
attempt is held inside its password check until all of them are there, so the right
password is checked while the wrong ones are still being checked, as when an attacker
fires them in parallel. Nothing here depends on timing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine, text

from settlement import bootstrap
from settlement.clock import ManualClock
from settlement.console.web import SESSION_COOKIE
from settlement.services.console_accounts import ConsoleAccounts
from tests.support import seed_compliance

from .conftest import (
    LOCKOUT_S,
    MAX_ATTEMPTS,
    TEST_HASHER,
    ConsoleServer,
    Login,
    console_app,
    csrf_of,
    serve,
)

PARALLEL_WRONG = 30
GATE_WAIT_S = 60


class GatedHasher(PasswordHasher):
    """``TEST_HASHER``'s parameters; while ``gate`` is set, each check waits at it."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8192, parallelism=1)
        self.gate: threading.Barrier | None = None
        self.hold_password: str | None = None
        self.held = threading.Event()
        self.release = threading.Event()

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        gate = self.gate
        if gate is not None:
            gate.wait(timeout=GATE_WAIT_S)
        if self.hold_password is not None and password == self.hold_password:
            self.held.set()
            assert self.release.wait(timeout=GATE_WAIT_S), "the held check was never released"
        return super().verify(hash, password)


@pytest.fixture
def gated() -> GatedHasher:
    return GatedHasher()


@pytest.fixture
def console(
    engine: bootstrap.Services, clock: ManualClock, gated: GatedHasher
) -> Iterator[ConsoleServer]:
    seed_compliance(engine.commitments)
    server, thread, url = serve(console_app(engine, clock, password_hasher=gated))
    yield ConsoleServer(
        url=url,
        engine=engine,
        clock=clock,
        accounts=ConsoleAccounts(engine.db, clock, engine.compliance, hasher=TEST_HASHER),
    )
    server.should_exit = True
    thread.join(timeout=10)


def _post_sign_in(client: httpx.Client, login: Login) -> httpx.Response:
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


def _locked_until(app_engine: Engine, username: str) -> object:
    with app_engine.connect() as c:
        return c.execute(
            text("SELECT locked_until FROM console_accounts WHERE username = :u"), {"u": username}
        ).scalar_one()


def _await_waiting(gate: threading.Barrier, count: int) -> None:
    # a wait for a state, not a timing: the bound only turns a hang into a failure
    deadline = time.monotonic() + GATE_WAIT_S
    while gate.n_waiting < count:
        assert time.monotonic() < deadline, f"{gate.n_waiting} of {count} attempts arrived"
        time.sleep(0.01)


def test_parallel_wrong_passwords_then_the_right_one_get_no_session(
    console: ConsoleServer, gated: GatedHasher, app_engine: Engine
) -> None:
    login = console.officer()
    wrong = Login(login.username, "wrong password!", "")
    clients = [console.client() for _ in range(PARALLEL_WRONG + 1)]
    # every form is fetched first: what is raced is the sign-in itself
    forms = [c.get("/console/sign-in") for c in clients]
    assert all(f.status_code == 200 for f in forms)
    gated.gate = threading.Barrier(PARALLEL_WRONG + 1)

    def attempt(client: httpx.Client, form: httpx.Response, who: Login) -> httpx.Response:
        return client.post(
            "/console/sign-in",
            data={
                "username": who.username,
                "password": who.password,
                "csrf_token": csrf_of(form.text),
            },
        )

    with ThreadPoolExecutor(PARALLEL_WRONG + 1) as pool:
        wrongs: list[Future[httpx.Response]] = [
            pool.submit(attempt, clients[n], forms[n], wrong) for n in range(PARALLEL_WRONG)
        ]
        # the right password is sent last, once every wrong one is inside its check
        _await_waiting(gated.gate, PARALLEL_WRONG)
        right = pool.submit(attempt, clients[-1], forms[-1], login).result(timeout=GATE_WAIT_S)
        answers = [w.result(timeout=GATE_WAIT_S) for w in wrongs]
    for client in clients:
        client.close()
    assert all(a.status_code == 401 for a in answers)
    assert right.status_code == 401, "the right password got a session past the lockout"
    assert SESSION_COOKIE not in right.headers.get("set-cookie", "")
    assert _locked_until(app_engine, login.username) == console.clock.now() + timedelta(
        seconds=LOCKOUT_S
    )


def test_sequentially_the_right_password_after_the_limit_is_refused(
    console: ConsoleServer,
) -> None:
    login = console.officer()
    wrong = Login(login.username, "wrong password!", "")
    with console.client() as client:
        for _ in range(MAX_ATTEMPTS):
            assert _post_sign_in(client, wrong).status_code == 401
        assert _post_sign_in(client, login).status_code == 401


def test_a_right_password_does_not_clear_a_lock_set_while_it_was_checked(
    console: ConsoleServer, gated: GatedHasher, app_engine: Engine
) -> None:
    login = console.officer()
    gated.hold_password = login.password
    with ThreadPoolExecutor(1) as pool, console.client() as right_client:
        right = pool.submit(_post_sign_in, right_client, login)
        assert gated.held.wait(timeout=GATE_WAIT_S)
        # while the right password is being checked, wrong ones lock the account
        with console.client() as client:
            for _ in range(MAX_ATTEMPTS):
                wrong = Login(login.username, "wrong password!", "")
                assert _post_sign_in(client, wrong).status_code == 401
        locked = _locked_until(app_engine, login.username)
        assert locked is not None
        gated.release.set()
        answer = right.result(timeout=GATE_WAIT_S)
    assert answer.status_code == 401
    assert _locked_until(app_engine, login.username) == locked


def test_the_right_password_within_the_limit_still_signs_in(console: ConsoleServer) -> None:
    login = console.officer()
    wrong = Login(login.username, "wrong password!", "")
    for _ in range(2):
        # the success clears the count: a full run of failures is needed again
        with console.client() as client:
            for _ in range(MAX_ATTEMPTS - 1):
                assert _post_sign_in(client, wrong).status_code == 401
            assert _post_sign_in(client, login).status_code == 303
