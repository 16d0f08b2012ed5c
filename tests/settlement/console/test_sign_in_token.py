"""The sign-in form's token is one this console issued, not any cookie and field that
match: a pair planted in the browser (cookie tossing from a sibling host, or a
network attacker on plain HTTP) with no Origin header to betray it signs no one in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import httpx

from settlement import bootstrap
from settlement.clock import ManualClock
from settlement.console.web import SESSION_COOKIE, SIGN_IN_COOKIE, SIGN_IN_FORM_TTL_S
from settlement.services.console_accounts import ConsoleAccounts
from tests.support import seed_compliance

from .conftest import TEST_HASHER, ConsoleServer, Login, console_app, csrf_of, serve


def _post(client: httpx.Client, login: Login, token: str) -> httpx.Response:
    # no Origin header, as a form posted by a script or an old browser may have none
    return client.post(
        "/console/sign-in",
        data={"username": login.username, "password": login.password, "csrf_token": token},
    )


def _planted(client: httpx.Client, token: str) -> None:
    client.cookies.set(SIGN_IN_COOKIE, token, domain="127.0.0.1", path="/console")


def test_a_matching_pair_the_console_did_not_issue_is_refused(console: ConsoleServer) -> None:
    login = console.officer()
    with console.client() as client:
        _planted(client, "chosen-by-the-attacker")
        refused = _post(client, login, "chosen-by-the-attacker")
    assert refused.status_code == 403, refused.text
    assert SESSION_COOKIE not in refused.headers.get("set-cookie", "")


def test_an_altered_token_is_refused(console: ConsoleServer) -> None:
    login = console.officer()
    with console.client() as client:
        issued = csrf_of(client.get("/console/sign-in").text)
        altered = issued[:-2] + ("AA" if issued[-2:] != "AA" else "BB")
        _planted(client, altered)
        assert _post(client, login, altered).status_code == 403


def test_a_token_expires(console: ConsoleServer) -> None:
    login = console.officer()
    with console.client() as client:
        token = csrf_of(client.get("/console/sign-in").text)
        console.clock.advance(timedelta(seconds=SIGN_IN_FORM_TTL_S + 1))
        assert _post(client, login, token).status_code == 403


@contextmanager
def _second_console(
    engine: bootstrap.Services, clock: ManualClock, **options: object
) -> Iterator[str]:
    seed_compliance(engine.commitments)
    server, thread, url = serve(console_app(engine, clock, **options))
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_token_another_console_issued_is_refused(
    console: ConsoleServer, engine: bootstrap.Services, clock: ManualClock
) -> None:
    login = console.officer()
    with _second_console(engine, clock) as other, httpx.Client(base_url=other) as elsewhere:
        token = csrf_of(elsewhere.get("/console/sign-in").text)
    with console.client() as client:
        _planted(client, token)
        assert _post(client, login, token).status_code == 403


def test_processes_given_one_secret_accept_each_others_forms(
    engine: bootstrap.Services, clock: ManualClock
) -> None:
    """As the workers of ``settle serve --workers N`` are: the form may come from one
    process and the post go to another."""
    secret = b"s" * 32
    accounts = ConsoleAccounts(engine.db, clock, engine.compliance, hasher=TEST_HASHER)
    with (
        _second_console(engine, clock, sign_in_secret=secret) as first,
        _second_console(engine, clock, sign_in_secret=secret) as second,
    ):
        login = ConsoleServer(url=second, engine=engine, clock=clock, accounts=accounts).officer()
        with httpx.Client(base_url=first) as one:
            token = csrf_of(one.get("/console/sign-in").text)
        with httpx.Client(base_url=second) as two:
            _planted(two, token)
            assert _post(two, login, token).status_code == 303
