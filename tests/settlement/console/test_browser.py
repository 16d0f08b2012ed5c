"""The console in a real headless Chromium (Debian's package, driven by Playwright).

Skipped with a reason when /usr/bin/chromium is missing, unless
SETTLEMENT_REQUIRE_BROWSER=1 (then it fails): CI installs the browser with
``.ci/install-browser`` and sets that variable. Screenshots of the queue and detail
pages are written to test-output/console/.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import Engine, text

from settlement.domain.values import Actor, Role
from tests.support import snapshot

from .conftest import IDLE_TIMEOUT_S, ConsoleServer, Login, console_app, serve

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUTPUT = Path(__file__).resolve().parents[3] / "test-output" / "console"


def _unavailable(reason: str) -> None:
    if os.environ.get("SETTLEMENT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}, and SETTLEMENT_REQUIRE_BROWSER=1 requires the browser tests")
    pytest.skip(f"{reason}; run .ci/install-browser to install it")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing (Debian package chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, console: ConsoleServer) -> Iterator[Any]:
    # the production default, Secure cookies: browsers keep and send them to loopback
    # over plain HTTP, since they count 127.0.0.1 as a secure context
    server, thread, url = serve(console_app(console.engine, console.clock, secure_cookies=True))
    context = browser.new_context(base_url=url)
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    yield opened
    context.close()
    server.should_exit = True
    thread.join(timeout=10)


def _sign_in(page: Any, login: Login) -> None:
    page.goto("/console/queue")
    assert page.url.endswith("/console/sign-in")
    page.get_by_label("Username").fill(login.username)
    page.get_by_label("Password").fill(login.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/console/queue$"))


def _sign_out(page: Any) -> None:
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/console/sign-in\?ended=signed_out$"))
    assert "You are signed out." in page.content()


def _state(app_engine: Engine, cid: UUID) -> tuple[str, int]:
    with app_engine.connect() as c:
        row = c.execute(
            text("SELECT state, version FROM commitments WHERE id = :id"), {"id": cid}
        ).one()
    return (row[0], row[1])


def _deal_ref(console: ConsoleServer, cid: UUID) -> str:
    return console.engine.commitments.get(cid).deal_ref


def test_two_officers_approve_in_the_browser_and_the_submitter_may_not(
    page: Any, console: ConsoleServer, app_engine: Engine
) -> None:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    cid = console.under_review(amount="2500000")
    console.under_review(amount="4200", counterparty=console.sanctioned_party())
    first, second = console.officer(), console.officer()
    dual = Actor(f"key-dual-{uuid.uuid4().hex[:8]}", Role.ALLOCATOR, party="party-northwind")
    own = console.under_review(submitter=dual)
    dual_login = console.officer(actor_id=dual.id)

    _sign_in(page, first)
    assert page.title().startswith("Review queue")
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "console_session"]
    assert (cookie["secure"], cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (
        True,
        True,
        "Strict",
        "/console",
    )
    row = page.get_by_role("row").filter(has_text=_deal_ref(console, cid))
    assert "2 of 2" in row.inner_text()
    assert page.locator("tr.hard-fail").first.is_visible()
    assert "HARD FAIL" in page.locator("tr.hard-fail").first.inner_text()
    page.screenshot(path=str(OUTPUT / "queue.png"), full_page=True)

    row.get_by_role("link").click()
    page.wait_for_url(re.compile(rf"/console/commitments/{cid}$"))
    assert "Approvals still needed: 2" in page.locator("#approvals-needed").inner_text()
    page.get_by_label("Note (optional)").fill("Documents checked against the term sheet.")
    page.get_by_role("button", name="Approve").click()
    page.wait_for_url(re.compile(r"done=approval_recorded$"))
    assert "another officer's approval is still needed" in page.get_by_role("status").inner_text()
    assert "Approvals still needed: 1" in page.locator("#approvals-needed").inner_text()
    assert "You already approved" in page.locator("#decision-approve").inner_text()
    page.screenshot(path=str(OUTPUT / "detail.png"), full_page=True)
    assert _state(app_engine, cid) == ("PENDING_REVIEW", 2)
    _sign_out(page)

    _sign_in(page, second)
    page.goto(f"/console/commitments/{cid}")
    page.get_by_role("button", name="Approve").click()
    page.wait_for_url(re.compile(r"done=approved$"))
    assert page.locator("#state").inner_text() == "VERIFIED"
    page.screenshot(path=str(OUTPUT / "detail-verified.png"), full_page=True)
    assert _state(app_engine, cid) == ("VERIFIED", 3)
    _sign_out(page)

    _sign_in(page, dual_login)
    page.goto(f"/console/commitments/{own}")
    refusal = page.locator("#decision-approve").inner_text()
    assert "You submitted this commitment" in refusal
    assert page.get_by_role("button", name="Approve").count() == 0
    assert _state(app_engine, own) == ("PENDING_REVIEW", 2)


def test_the_browser_sees_csrf_refusals_and_session_expiry(
    page: Any, console: ConsoleServer, app_engine: Engine
) -> None:
    cid = console.under_review()
    _sign_in(page, console.officer())
    # keyboard first: the skip link is the first stop and lands on the main content
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to main content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"

    page.goto(f"/console/commitments/{cid}")
    frozen = snapshot(app_engine, cid)
    page.locator("#decision-reject input[name=csrf_token]").evaluate("e => e.value = 'forged'")
    page.get_by_label("Reason (required)").first.fill("Counterparty withdrew.")
    with page.expect_response(re.compile(r"/reject$")) as posted:
        page.locator("#decision-reject").get_by_role("button", name="Reject").click()
    assert posted.value.status == 403
    assert "security token is missing or wrong" in page.get_by_role("alert").inner_text()
    assert snapshot(app_engine, cid) == frozen

    page.goto(f"/console/commitments/{cid}")
    console.clock.advance(timedelta(seconds=IDLE_TIMEOUT_S + 1))
    page.locator("#decision-reject").get_by_label("Reason (required)").fill("Too late.")
    page.locator("#decision-reject").get_by_role("button", name="Reject").click()
    page.wait_for_url(re.compile(r"/console/sign-in\?ended=expired$"))
    assert "Your session expired" in page.get_by_role("status").inner_text()
    assert snapshot(app_engine, cid) == frozen
    page.goto("/console/queue")
    assert page.url.endswith("/console/sign-in")
