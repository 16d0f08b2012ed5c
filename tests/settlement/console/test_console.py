"""The console over real HTTP and a real database: sign-in, sessions, CSRF, and the
review decisions going through the same services (and rules) as the signed API."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from decimal import Decimal
from uuid import UUID

import httpx
from sqlalchemy import Engine, text

from ledger import breakers as breaker_records
from ledger import settlements as settlement_records
from ledger.database import UnitOfWork
from settlement.console.web import SESSION_COOKIE
from settlement.domain.values import Actor, Role
from settlement.services.console_accounts import SIGN_IN_FAILED, hash_session_id
from tests.support import ALLOCATOR, OFFICER, snapshot

from .conftest import (
    IDLE_TIMEOUT_S,
    LOCKOUT_S,
    MAX_ATTEMPTS,
    SESSION_TTL_S,
    ConsoleServer,
    Login,
    console_app,
    csrf_of,
    form_fields,
    serve,
)


def _set_cookies(response: httpx.Response) -> dict[str, str]:
    """Set-Cookie headers of a response by cookie name."""
    out = {}
    for header in response.headers.get_list("set-cookie"):
        out[header.split("=", 1)[0]] = header
    return out


def _state(app_engine: Engine, cid: UUID) -> tuple[str, int]:
    with app_engine.connect() as c:
        row = c.execute(
            text("SELECT state, version FROM commitments WHERE id = :id"), {"id": cid}
        ).one()
    return (row[0], row[1])


def _detail(client: httpx.Client, cid: UUID) -> str:
    page = client.get(f"/console/commitments/{cid}")
    assert page.status_code == 200, page.text
    return page.text


def _decide(
    client: httpx.Client, cid: UUID, action: str, page: str, **fields: str
) -> httpx.Response:
    return client.post(
        f"/console/commitments/{cid}/{action}", data={**form_fields(page, action), **fields}
    )


# -- signing in and out -------------------------------------------------------------------


def test_sign_in_sets_a_strict_http_only_session_cookie_scoped_to_the_console(
    console: ConsoleServer,
) -> None:
    login = console.officer()
    with console.client() as client:
        assert client.get("/console/queue").headers["location"] == "/console/sign-in"
        response = console.sign_in(client, login)
        assert response.status_code == 303
        assert response.headers["location"] == "/console/queue"
        cookie = _set_cookies(response)[SESSION_COOKIE].lower()
        assert "httponly" in cookie
        assert "samesite=strict" in cookie
        assert "path=/console" in cookie
        assert "secure" not in cookie  # turned off for this plain-HTTP test server
        page = client.get("/console/queue")
    assert page.status_code == 200
    assert "<title>Review queue" in page.text
    assert login.actor_id in page.text


def test_cookies_are_secure_unless_turned_off(console: ConsoleServer) -> None:
    server, thread, url = serve(console_app(console.engine, console.clock, secure_cookies=True))
    login = console.officer()
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            form = client.get("/console/sign-in")
            assert "secure" in form.headers["set-cookie"].lower()
            token = csrf_of(form.text)
            # a browser would not send a Secure cookie over plain HTTP; send it by hand
            response = client.post(
                "/console/sign-in",
                data={"username": login.username, "password": login.password, "csrf_token": token},
                headers={"cookie": f"console_sign_in={token}"},
            )
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert response.status_code == 303
    cookie = _set_cookies(response)[SESSION_COOKIE].lower()
    assert "; secure" in cookie
    assert "httponly" in cookie
    assert "samesite=strict" in cookie


def test_unknown_user_and_wrong_password_get_the_same_answer(console: ConsoleServer) -> None:
    login = console.officer()
    with console.client() as client:
        wrong = console.sign_in(client, Login(login.username, "not the password!", ""))
        unknown = console.sign_in(
            client, Login("nobody-" + uuid.uuid4().hex[:6], "whatever12345", "")
        )
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert SIGN_IN_FAILED in response.text.replace("&#39;", "'")
        assert SESSION_COOKIE not in _set_cookies(response)


def test_the_fifth_failure_locks_the_account_for_the_lockout_period(
    console: ConsoleServer, app_engine: Engine
) -> None:
    login = console.officer()
    with console.client() as client:
        for _ in range(MAX_ATTEMPTS):
            assert (
                console.sign_in(client, Login(login.username, "wrong password!", "")).status_code
                == 401
            )
        locked = console.sign_in(client, login)
        assert locked.status_code == 401
        assert SESSION_COOKIE not in _set_cookies(locked)
        with app_engine.connect() as c:
            until = c.execute(
                text("SELECT locked_until FROM console_accounts WHERE username = :u"),
                {"u": login.username},
            ).scalar_one()
        assert until == console.clock.now() + timedelta(seconds=LOCKOUT_S)
        console.clock.advance(timedelta(seconds=LOCKOUT_S - 1))
        assert console.sign_in(client, login).status_code == 401
        console.clock.advance(timedelta(seconds=1))
        assert console.sign_in(client, login).status_code == 303


def test_a_session_ends_after_the_idle_timeout(console: ConsoleServer) -> None:
    with console.signed_in(console.officer()) as client:
        console.clock.advance(timedelta(seconds=IDLE_TIMEOUT_S - 60))
        assert client.get("/console/queue").status_code == 200  # a request resets idleness
        console.clock.advance(timedelta(seconds=IDLE_TIMEOUT_S - 60))
        assert client.get("/console/queue").status_code == 200
        console.clock.advance(timedelta(seconds=IDLE_TIMEOUT_S))
        expired = client.get("/console/queue")
        assert expired.status_code == 303
        assert expired.headers["location"] == "/console/sign-in?ended=expired"
        notice = client.get(expired.headers["location"])
    assert "Your session expired" in notice.text


def test_a_session_ends_at_its_absolute_lifetime_however_busy(console: ConsoleServer) -> None:
    step = timedelta(seconds=IDLE_TIMEOUT_S // 2)
    with console.signed_in(console.officer()) as client:
        elapsed = timedelta(0)
        while elapsed + step < timedelta(seconds=SESSION_TTL_S):
            console.clock.advance(step)
            elapsed += step
            assert client.get("/console/queue").status_code == 200
        console.clock.advance(step)
        assert client.get("/console/queue").headers["location"].endswith("ended=expired")


def test_sign_out_ends_the_session_on_the_server(
    console: ConsoleServer, app_engine: Engine
) -> None:
    with console.signed_in(console.officer()) as client:
        session_id = client.cookies[SESSION_COOKIE]
        page = client.get("/console/queue").text
        out = client.post("/console/sign-out", data={"csrf_token": csrf_of(page)})
    assert out.status_code == 303
    assert out.headers["location"] == "/console/sign-in?ended=signed_out"
    with app_engine.connect() as c:
        signed_out = c.execute(
            text("SELECT signed_out_at FROM console_sessions WHERE id_hash = :h"),
            {"h": hash_session_id(session_id)},
        ).scalar_one()
    assert signed_out == console.clock.now()
    # the old cookie, presented again (as a thief who copied it would), signs no one in
    with httpx.Client(base_url=console.url, cookies={SESSION_COOKIE: session_id}) as thief:
        again = thief.get("/console/queue")
    assert again.status_code == 303
    assert again.headers["location"].startswith("/console/sign-in")


# -- CSRF ---------------------------------------------------------------------------------


def test_a_post_without_the_right_csrf_token_or_from_another_origin_changes_nothing(
    console: ConsoleServer, app_engine: Engine
) -> None:
    cid = console.under_review()
    officer = console.officer()
    frozen = snapshot(app_engine, cid)
    with console.signed_in(console.officer()) as other:
        foreign_token = csrf_of(other.get("/console/queue").text)
    with console.signed_in(officer) as client:
        page = _detail(client, cid)
        fields = form_fields(page, "approve")
        attempts = [
            {k: v for k, v in fields.items() if k != "csrf_token"},
            {**fields, "csrf_token": "x" * 43},
            {**fields, "csrf_token": foreign_token},
        ]
        for data in attempts:
            refused = client.post(f"/console/commitments/{cid}/approve", data=data)
            assert refused.status_code == 403, refused.text
            assert "security token" in refused.text
        cross_site = client.post(
            f"/console/commitments/{cid}/approve",
            data=fields,
            headers={"origin": "https://evil.example"},
        )
        assert cross_site.status_code == 403
        assert "evil.example" in cross_site.text
        assert snapshot(app_engine, cid) == frozen
        no_token_sign_out = client.post("/console/sign-out", data={})
        assert no_token_sign_out.status_code == 403
        assert client.get("/console/queue").status_code == 200  # still signed in
        # the same form with its own token goes through
        done = client.post(f"/console/commitments/{cid}/approve", data=fields)
    assert done.status_code == 303
    assert _state(app_engine, cid) == ("VERIFIED", 3)


def test_the_sign_in_form_needs_its_own_token(console: ConsoleServer) -> None:
    login = console.officer()
    with console.client() as client:
        response = client.post(
            "/console/sign-in",
            data={"username": login.username, "password": login.password, "csrf_token": "forged"},
        )
    assert response.status_code == 403
    assert SESSION_COOKIE not in _set_cookies(response)


# -- decisions ----------------------------------------------------------------------------


def test_four_eyes_two_officers_approve_in_turn(console: ConsoleServer, app_engine: Engine) -> None:
    cid = console.under_review(amount="2500000")
    first, second = console.officer(), console.officer()
    with console.signed_in(first) as client:
        page = _detail(client, cid)
        assert "Approvals still needed: 2" in page
        approved = _decide(client, cid, "approve", page, reason="documents in order")
        assert approved.status_code == 303
        assert approved.headers["location"].endswith("?done=approval_recorded")
        page = client.get(approved.headers["location"]).text
        assert "another officer&#39;s approval is still needed" in page
        assert "Approvals still needed: 1" in page
        assert "You already approved this review round" in page
        assert 'action="/console/commitments/' + str(cid) + '/approve"' not in page
    assert _state(app_engine, cid) == ("PENDING_REVIEW", 2)
    with console.signed_in(second) as client:
        page = _detail(client, cid)
        approved = _decide(client, cid, "approve", page)
        assert approved.headers["location"].endswith("?done=approved")
        page = client.get(approved.headers["location"]).text
    assert 'id="state">VERIFIED</strong>' in page
    assert _state(app_engine, cid) == ("VERIFIED", 3)


def test_a_double_submitted_form_acts_once(console: ConsoleServer, app_engine: Engine) -> None:
    cid = console.under_review()
    with console.signed_in(console.officer()) as client:
        page = _detail(client, cid)
        responses = [
            _decide(client, cid, "reject", page, reason="counterparty withdrew") for _ in range(2)
        ]
    assert [r.status_code for r in responses] == [303, 303]
    assert all(r.headers["location"].endswith("?done=rejected") for r in responses)
    with app_engine.connect() as c:
        rejects = c.execute(
            text(
                "SELECT count(*) FROM state_transitions WHERE commitment_id = :id"
                " AND event = 'reject'"
            ),
            {"id": cid},
        ).scalar_one()
    assert rejects == 1
    assert _state(app_engine, cid) == ("CANCELLED", 3)


def test_a_stale_page_is_told_the_commitment_changed(
    console: ConsoleServer, app_engine: Engine
) -> None:
    cid = console.under_review()
    with console.signed_in(console.officer()) as slow:
        stale = _detail(slow, cid)
        with console.signed_in(console.officer()) as quick:
            page = _detail(quick, cid)
            asked = _decide(quick, cid, "request-info", page, reason="need the term sheet")
            assert asked.status_code == 303
        console.engine.commitments.submit(ALLOCATOR, cid, expected_version=3)
        frozen = snapshot(app_engine, cid)
        response = _decide(slow, cid, "approve", stale)
    assert response.status_code == 409
    assert "changed since you opened it (you reviewed version 2)" in response.text
    assert 'id="state">PENDING_REVIEW</strong> (version 4)' in response.text
    assert snapshot(app_engine, cid) == frozen


def test_reject_and_request_info_need_a_reason(console: ConsoleServer, app_engine: Engine) -> None:
    cid = console.under_review()
    frozen = snapshot(app_engine, cid)
    with console.signed_in(console.officer()) as client:
        page = _detail(client, cid)
        for action in ("reject", "request-info"):
            response = _decide(client, cid, action, page, reason="   ")
            assert response.status_code == 422
            assert "reason is required" in response.text
    assert snapshot(app_engine, cid) == frozen


def test_the_submitter_holding_an_officer_account_cannot_approve(
    console: ConsoleServer, app_engine: Engine
) -> None:
    dual = Actor(f"key-dual-{uuid.uuid4().hex[:8]}", Role.ALLOCATOR, party="party-northwind")
    cid = console.under_review(submitter=dual)
    login = console.officer(actor_id=dual.id)
    frozen = snapshot(app_engine, cid)
    with console.signed_in(login) as client:
        page = _detail(client, cid)
        assert "You submitted this commitment" in page
        assert f'/commitments/{cid}/approve"' not in page  # no approve form offered
        # the service is the authority: a hand-made approval is refused and says why
        forged = client.post(
            f"/console/commitments/{cid}/approve",
            data={
                "csrf_token": csrf_of(page),
                "idempotency_key": str(uuid.uuid4()),
                "expected_version": "2",
            },
        )
    assert forged.status_code == 403
    assert "submitted commitment" in forged.text
    assert snapshot(app_engine, cid) == frozen


def test_an_admin_cannot_decide_and_an_officer_cannot_see_the_settlements_page(
    console: ConsoleServer, app_engine: Engine
) -> None:
    cid = console.under_review()
    with console.signed_in(console.officer()) as client:
        refused = client.get("/console/settlements")
    assert refused.status_code == 403
    assert "This page is for admins" in refused.text
    with console.signed_in(console.admin()) as client:
        page = client.get("/console/settlements")
        assert page.status_code == 200
        assert "Audit chain verification" in page.text
        assert 'id="audit-result"><strong>Verified:</strong>' in page.text
        detail = _detail(client, cid)
        assert "Only compliance officers decide reviews" in detail
        forged = client.post(
            f"/console/commitments/{cid}/approve",
            data={"csrf_token": csrf_of(detail), "idempotency_key": "k1", "expected_version": "2"},
        )
    assert forged.status_code == 403
    assert _state(app_engine, cid) == ("PENDING_REVIEW", 2)


# -- what the pages show ------------------------------------------------------------------


def test_the_queue_marks_hard_fails_in_text_and_filters_and_sorts(console: ConsoleServer) -> None:
    sanctioned = console.sanctioned_party()
    hard = console.under_review(amount="5000", counterparty=sanctioned)
    small = console.under_review(amount="700", counterparty=sanctioned)
    with console.signed_in(console.officer()) as client:
        page = client.get("/console/queue", params={"party": sanctioned}).text
        rows = re.findall(
            r'<tr class="([^"]*)">\s*<th scope="row"><a href="/console/commitments/([^"]+)"',
            page,
        )
        assert {UUID(r[1]) for r in rows} == {hard, small}
        assert all(r[0] == "hard-fail" for r in rows)
        assert "HARD FAIL" in page
        ascending = client.get(
            "/console/queue", params={"party": sanctioned, "sort": "amount", "order": "asc"}
        ).text
        assert ascending.index(str(small)) < ascending.index(str(hard))
        descending = client.get(
            "/console/queue", params={"party": sanctioned, "sort": "amount", "order": "desc"}
        ).text
        assert descending.index(str(hard)) < descending.index(str(small))
        big_only = client.get(
            "/console/queue", params={"party": sanctioned, "min_amount": "1000"}
        ).text
        assert str(hard) in big_only
        assert str(small) not in big_only
        clear_only = client.get(
            "/console/queue", params={"party": sanctioned, "outcome": "clear"}
        ).text
        assert str(hard) not in clear_only
        assert "Nothing to review with these filters" in clear_only
        bad = client.get("/console/queue", params={"min_amount": "lots"}).text
        assert "is not a number; ignored" in bad


def test_the_detail_page_shows_the_match_the_kyc_of_both_parties_and_the_trail(
    console: ConsoleServer,
) -> None:
    sanctioned = console.sanctioned_party()
    cid = console.under_review(amount="5000", counterparty=sanctioned)
    with console.signed_in(console.officer()) as client:
        page = _detail(client, cid)
    assert "HARD FAIL" in page
    assert "invented-0002" in page  # the list entry that matched
    assert "Borealis Nordfjord Commodities AS" in page
    assert re.search(r'<td class="num">\d{2,3}\.\d</td>', page)  # its score
    assert "Northwind Test Capital" in page  # the owner's KYC record
    assert f"Counterparty: {sanctioned}" in page
    assert "only a senior officer may approve it" in page
    assert "<caption>Audit entries of this commitment, oldest first</caption>" in page
    assert "No settlement yet." in page
    with console.signed_in(console.officer(senior=True)) as client:
        page = _detail(client, cid)
    assert "Override reason for the hard fail" in page


def test_an_unknown_commitment_is_a_404_page(console: ConsoleServer) -> None:
    with console.signed_in(console.officer()) as client:
        missing = client.get(f"/console/commitments/{uuid.uuid4()}")
        malformed = client.get("/console/commitments/not-a-uuid")
    assert missing.status_code == 404
    assert "no such commitment" in missing.text
    assert malformed.status_code == 404
    assert missing.headers["content-type"].startswith("text/html")


def _flagged_settlement(console: ConsoleServer, tx_hash: str) -> tuple[UUID, UUID]:
    """A VERIFIED commitment with a two-leg settlement flagged for review and an audit
    entry naming a ledger transaction, written with the ledger's own functions."""
    cid = console.under_review()
    console.engine.commitments.approve(OFFICER, cid, expected_version=2)
    settlement_id = uuid.uuid4()
    now = console.clock.now()
    legs = [
        {"leg_no": 0, "kind": "principal", "chain": "xrpl", "asset_code": "BOND",
         "asset_issuer": "rIssuerAddressForTheConsoleTest1", "amount": Decimal("10"),
         "sender": "rSenderAddressForTheConsoleTest11",
         "receiver": "rReceiverAddressForConsoleTest1"},
        {"leg_no": 1, "kind": "principal", "chain": "stellar", "asset_code": "USDC",
         "asset_issuer": None, "amount": Decimal("1000"),
         "sender": "GSENDER", "receiver": "GRECEIVER"},
    ]  # fmt: skip

    def write(uow: UnitOfWork) -> None:
        settlement_records.insert_settlement(
            uow,
            settlement_id=settlement_id,
            commitment_id=cid,
            settle_not_before=None,
            commit_deadline=now + timedelta(hours=1),
            cancel_after=now + timedelta(hours=2),
            condition_hex="ab" * 39,
            secret_sealed=b"sealed",
            created_by="system",
            at=now,
            legs=legs,
        )
        settlement_records.flag_for_review(uow, settlement_id, "stellar unreachable", now)
        settlement_records.append_audit(
            uow,
            commitment_id=cid,
            actor="system",
            action="leg_locked",
            payload="{}",
            at=now,
            chain="xrpl",
            tx_hash=tx_hash,
            ledger_index=12345,
            ledger_hash="CD" * 32,
        )
        breaker_records.upsert(
            uow,
            scope=f"worker-{settlement_id}",
            chain="stellar",
            state="open",
            failure_count=7,
            opened_at=now,
            at=now,
            applied_reset_id=0,
            reset_now=False,
        )

    console.engine.db.transaction(write)
    return cid, settlement_id


def test_the_settlements_page_shows_flags_breakers_audit_and_linked_ledger_refs(
    console: ConsoleServer,
) -> None:
    tx_hash = uuid.uuid4().hex.upper() * 2
    cid, settlement_id = _flagged_settlement(console, tx_hash)
    explorer = "https://explorer.example/tx/{tx_hash}"
    server, thread, url = serve(
        console_app(console.engine, console.clock, explorer_urls={"xrpl": explorer})
    )
    admin = console.admin()
    try:
        with httpx.Client(base_url=url, timeout=30, follow_redirects=False) as client:
            assert console.sign_in(client, admin).status_code == 303
            page = client.get("/console/settlements").text
            detail = client.get(f"/console/commitments/{cid}").text
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert str(settlement_id) in page
    assert "stellar unreachable" in page
    breaker = re.search(rf"<tr class=\"breaker-tripped\"><th scope=\"row\">worker-{settlement_id}"
                        r"</th><td>stellar</td><td><span[^>]*>OPEN</span></td><td class=\"num\">7<",
                        page)  # fmt: skip
    assert breaker is not None
    assert 'id="audit-result"><strong>Verified:</strong>' in page
    assert f'<a href="https://explorer.example/tx/{tx_hash}" rel="noopener noreferrer">' in page
    # without an explorer configured the hash is plain text
    with console.signed_in(console.admin()) as client:
        plain = client.get("/console/settlements").text
    assert f"<code>{tx_hash}</code>" in plain
    assert "explorer.example" not in plain
    assert "flagged for manual review" in detail
    assert "rReceiverAddressForConsoleTest1" in detail
    assert "<td>USDC</td>" in detail


def test_a_hard_fail_needs_a_senior_officers_override_reason(
    console: ConsoleServer, app_engine: Engine
) -> None:
    cid = console.under_review(amount="5000", counterparty=console.sanctioned_party())
    with console.signed_in(console.officer()) as client:
        page = _detail(client, cid)
        forged = client.post(
            f"/console/commitments/{cid}/approve",
            data={
                "csrf_token": csrf_of(page),
                "idempotency_key": str(uuid.uuid4()),
                "expected_version": "2",
            },
        )
    assert forged.status_code == 403
    assert _state(app_engine, cid) == ("PENDING_REVIEW", 2)
    with console.signed_in(console.officer(senior=True)) as client:
        page = _detail(client, cid)
        without = _decide(client, cid, "approve", page, override_reason="")
        assert without.status_code == 403
        assert "Refused:" in without.text
        page = _detail(client, cid)
        done = _decide(
            client, cid, "approve", page, override_reason="name match is a different entity"
        )
    assert done.status_code == 303
    assert _state(app_engine, cid) == ("VERIFIED", 3)
    with app_engine.connect() as c:
        override = c.execute(
            text("SELECT override_reason FROM commitment_approvals WHERE commitment_id = :id"),
            {"id": cid},
        ).scalar_one()
    assert override == "name match is a different entity"
