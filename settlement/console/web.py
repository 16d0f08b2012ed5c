"""The web review console: server-rendered pages under ``/console``.

``install_console(app, engine)`` mounts a small application of its own at ``/console``
(its own error pages, no OpenAPI). Routes parse the form, check the session, the CSRF
token and the Origin, and call the same services as the signed API as the signed-in
account's ``Actor``; the services and the database decide. No page needs JavaScript.
A refusal by the engine is answered with the status the API answers it with (the
error's ``http_status``), as an HTML page.

Every POST carries the session's synchronizer token in a hidden field; a missing or
wrong token, or an Origin other than the console's own, is refused with 403 before
anything is read from the form or written. The sign-in form, which has no session yet,
carries a token that this console issued (``settlement.console.form_tokens``) and that
must equal a cookie set with the form.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit
from uuid import UUID, uuid4

from argon2 import PasswordHasher
from fastapi import Depends, FastAPI, Form, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from adapters.chain import Chain, ChainName
from ledger import audit
from settlement import bootstrap
from settlement.breakers import BreakerBoard
from settlement.clock import Clock
from settlement.console import reads, views
from settlement.console.form_tokens import SignInTokens
from settlement.domain import errors
from settlement.domain.states import State
from settlement.domain.values import Role
from settlement.services.anchors import anchor_ages
from settlement.services.console_accounts import (
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_LOCKOUT_S,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_SESSION_TTL_S,
    ConsoleAccounts,
    ConsoleSession,
    SessionEnd,
    SignInFailed,
)

PREFIX = "/console"
SESSION_COOKIE = "console_session"
SIGN_IN_COOKIE = "console_sign_in"
#: how long a sign-in form stays usable
SIGN_IN_FORM_TTL_S = 3600
_STATIC_DIR = Path(__file__).resolve().parent / "static"
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
#: where an explorer URL template takes the hash: the settings' mark, and the older one
_EXPLORER_MARKS = ("{hash}", "{tx_hash}")
_ENDED_MESSAGES = {
    SessionEnd.EXPIRED: "Your session expired. Sign in again.",
    SessionEnd.SIGNED_OUT: "You are signed out.",
    SessionEnd.DISABLED: "This account is disabled.",
}


@dataclass(frozen=True)
class Console:
    engine: bootstrap.Services
    clock: Clock
    accounts: ConsoleAccounts
    sign_in_tokens: SignInTokens
    templates: Environment
    secure_cookies: bool
    #: chain name -> URL template with ``{hash}`` (or ``{tx_hash}``), for links to a
    #: ledger explorer
    explorer_urls: Mapping[str, str]
    #: the ledgers a party's balances are read from (none: every ledger unavailable)
    chains: Mapping[ChainName, Chain] = field(default_factory=dict)


class SignInRequired(Exception):
    def __init__(self, ended: SessionEnd | None) -> None:
        super().__init__("sign in required")
        self.ended = ended


class Refused(Exception):
    """A request the console refuses before calling any service (403 by default)."""

    def __init__(self, message: str, *, status: int = 403, title: str = "Not allowed") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.title = title


def install_console(
    app: FastAPI,
    engine: bootstrap.Services,
    *,
    clock: Clock | None = None,
    session_ttl_s: int = DEFAULT_SESSION_TTL_S,
    idle_timeout_s: int = DEFAULT_IDLE_TIMEOUT_S,
    secure_cookies: bool = True,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    lockout_s: int = DEFAULT_LOCKOUT_S,
    explorer_urls: Mapping[str, str] | None = None,
    password_hasher: PasswordHasher | None = None,
    sign_in_secret: bytes | None = None,
    chains: Mapping[ChainName, Chain] | None = None,
) -> None:
    """Mount the console at ``/console`` on ``app``.

    ``session_ttl_s`` is the absolute lifetime of a session, ``idle_timeout_s`` how
    long it survives without a request. ``secure_cookies`` False drops the Secure flag,
    for plain HTTP on loopback only. ``explorer_urls`` maps a chain name to a URL
    template with ``{hash}`` (as the settings' ``*_explorer_tx_url``; ``{tx_hash}`` is
    taken too) where the hash goes (http or https); without one, hashes show as text.
    ``sign_in_secret`` (32 bytes or more) signs the sign-in forms' tokens; processes
    serving one console together must share it. Without it this process makes one, and
    a form it served is refused by any other (or after a restart): reload and sign in.
    ``chains`` are the ledgers a party's page reads balances from; without them each
    position shows its ledger as unavailable.
    """
    for chain, template in (explorer_urls or {}).items():
        placed = any(mark in template for mark in _EXPLORER_MARKS)
        if not placed or not template.startswith(("https://", "http://")):
            raise ValueError(f"explorer URL for {chain} must be http(s) and contain {{hash}}")
    used_clock = clock or engine.clock
    console = Console(
        engine=engine,
        clock=used_clock,
        accounts=ConsoleAccounts(
            engine.db,
            used_clock,
            engine.compliance,
            hasher=password_hasher,
            session_ttl=timedelta(seconds=session_ttl_s),
            idle_timeout=timedelta(seconds=idle_timeout_s),
            max_attempts=max_attempts,
            lockout=timedelta(seconds=lockout_s),
        ),
        sign_in_tokens=SignInTokens(
            sign_in_secret or secrets.token_bytes(32),
            used_clock,
            ttl=timedelta(seconds=SIGN_IN_FORM_TTL_S),
        ),
        templates=_templates(),
        secure_cookies=secure_cookies,
        chains=dict(chains or {}),
        explorer_urls=dict(explorer_urls or {}),
    )
    app.mount(PREFIX, _console_app(console), name="console")


def _templates() -> Environment:
    env = Environment(
        loader=PackageLoader("settlement.console", "templates"),
        autoescape=select_autoescape(("html",)),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["amount"] = views.format_amount
    env.filters["age"] = views.format_age
    env.filters["when"] = views.format_time
    env.globals["prefix"] = PREFIX
    env.globals["outcome_labels"] = views.OUTCOME_LABELS
    return env


# -- dependencies -----------------------------------------------------------------------


def console_of(request: Request) -> Console:
    console = request.app.state.console
    assert isinstance(console, Console)
    return console


ConsoleDep = Annotated[Console, Depends(console_of)]


def current_session(request: Request, console: ConsoleDep) -> ConsoleSession:
    found = console.accounts.lookup(request.cookies.get(SESSION_COOKIE))
    if found.session is None:
        # a cookie that names no live session is an ended one, whatever the reason
        raise SignInRequired(found.ended if request.cookies.get(SESSION_COOKIE) else None)
    return found.session


SessionDep = Annotated[ConsoleSession, Depends(current_session)]


def _require_role(session: ConsoleSession, *roles: Role) -> None:
    if session.actor.role not in roles:
        names = " or ".join(r.value.replace("_", " ") + "s" for r in roles)
        raise Refused(
            f"This page is for {names}; you are signed in as {session.actor.role}.",
            title="Not for your role",
        )


def _check_origin(request: Request) -> None:
    """Refuse a POST that a browser says came from another site."""
    origin = request.headers.get("origin")
    # host and port only: behind a TLS-terminating proxy the scheme seen here is http
    if origin is not None and urlsplit(origin).netloc != request.url.netloc:
        raise Refused(f"This form was posted from {origin}, not from this console.")
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise Refused("This form was posted from another site.")


def _check_post(request: Request, session: ConsoleSession, csrf_token: str) -> None:
    _check_origin(request)
    if not session.csrf_matches(csrf_token):
        raise Refused(
            "The form's security token is missing or wrong (it may be from an older session). "
            "Nothing was changed; reload the page and try again.",
            title="Form refused",
        )


# -- rendering --------------------------------------------------------------------------


def _render(
    console: Console,
    name: str,
    *,
    title: str,
    session: ConsoleSession | None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    html = console.templates.get_template(name).render(
        title=title,
        session=session,
        signed_in_as=(
            views.signed_in_as(session.actor, console.engine.compliance.officers())
            if session is not None
            else None
        ),
        csrf_token=session.csrf_token if session else "",
        is_admin=session is not None and session.actor.role is Role.ADMIN,
        **context,
    )
    return HTMLResponse(html, status_code=status)


def _cookie(response: Response, console: Console, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        path=PREFIX,
        secure=console.secure_cookies,
        httponly=True,
        samesite="strict",
    )


def _forget_cookie(response: Response, console: Console, name: str) -> None:
    response.delete_cookie(
        name, path=PREFIX, secure=console.secure_cookies, httponly=True, samesite="strict"
    )


def _see_other(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


# -- the application --------------------------------------------------------------------


def _console_app(console: Console) -> FastAPI:
    sub = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    sub.state.console = console
    sub.mount("/static", StaticFiles(directory=_STATIC_DIR), name="static")

    @sub.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for header, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(header, value)
        if not request.url.path.startswith(f"{PREFIX}/static/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    _auth_routes(sub)
    _review_routes(sub)
    _party_routes(sub)
    _admin_routes(sub)
    _error_pages(sub)
    return sub


def _auth_routes(sub: FastAPI) -> None:
    @sub.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return _see_other(f"{PREFIX}/queue")

    @sub.get("/sign-in", response_class=HTMLResponse)
    def sign_in_form(request: Request, console: ConsoleDep, ended: str | None = None) -> Response:
        if console.accounts.lookup(request.cookies.get(SESSION_COOKIE)).session is not None:
            return _see_other(f"{PREFIX}/queue")
        notice = None
        if ended in {e.value for e in SessionEnd}:
            notice = _ENDED_MESSAGES.get(SessionEnd(ended))
        return _sign_in_page(console, notice=notice)

    @sub.post("/sign-in", response_class=HTMLResponse)
    def sign_in(
        request: Request,
        console: ConsoleDep,
        username: Annotated[str, Form()] = "",
        password: Annotated[str, Form()] = "",
        csrf_token: Annotated[str, Form()] = "",
    ) -> Response:
        _check_origin(request)
        if not _sign_in_token_accepted(console, request, csrf_token):
            raise Refused(
                "The sign-in form expired or did not come from this console. "
                "Reload the page and sign in again.",
                title="Form refused",
            )
        try:
            signed_in = console.accounts.sign_in(username.strip().lower(), password)
        except SignInFailed as exc:
            return _sign_in_page(console, error=str(exc), username=username, status=401)
        response = _see_other(f"{PREFIX}/queue")
        _cookie(response, console, SESSION_COOKIE, signed_in.session_id)
        _forget_cookie(response, console, SIGN_IN_COOKIE)
        return response

    @sub.post("/sign-out")
    def sign_out(
        request: Request,
        console: ConsoleDep,
        session: SessionDep,
        csrf_token: Annotated[str, Form()] = "",
    ) -> Response:
        _check_post(request, session, csrf_token)
        console.accounts.sign_out(session)
        response = _see_other(f"{PREFIX}/sign-in?ended={SessionEnd.SIGNED_OUT.value}")
        _forget_cookie(response, console, SESSION_COOKIE)
        return response


def _sign_in_token_accepted(console: Console, request: Request, csrf_token: str) -> bool:
    """The form's token equals its cookie and is one this console issued, recently."""
    expected = request.cookies.get(SIGN_IN_COOKIE, "")
    if not expected or not hmac.compare_digest(expected.encode(), csrf_token.encode()):
        return False
    return console.sign_in_tokens.accepts(csrf_token)


def _sign_in_page(
    console: Console,
    *,
    notice: str | None = None,
    error: str | None = None,
    username: str = "",
    status: int = 200,
) -> HTMLResponse:
    token = console.sign_in_tokens.issue()
    response = _render(
        console,
        "sign_in.html",
        title="Sign in",
        session=None,
        status=status,
        sign_in_token=token,
        notice=notice,
        error=error,
        username=username,
    )
    _cookie(response, console, SIGN_IN_COOKIE, token)
    return response


def _review_routes(sub: FastAPI) -> None:
    @sub.get("/queue", response_class=HTMLResponse)
    def queue(
        *,
        console: ConsoleDep,
        session: SessionDep,
        outcome: str | None = None,
        min_amount: str | None = None,
        party: str | None = None,
        sort: str | None = None,
        order: str | None = None,
    ) -> Response:
        _require_role(session, Role.COMPLIANCE_OFFICER, Role.ADMIN)
        filters = views.parse_filters(
            outcome=outcome, min_amount=min_amount, party=party, sort=sort, order=order
        )
        return _queue_page(console, session, filters, min_amount=min_amount)

    @sub.get("/commitments/{commitment_id}", response_class=HTMLResponse)
    def detail(
        console: ConsoleDep,
        session: SessionDep,
        commitment_id: UUID,
        done: Annotated[str | None, Query()] = None,
    ) -> Response:
        _require_role(session, Role.COMPLIANCE_OFFICER, Role.ADMIN)
        return _detail_page(console, session, commitment_id, done=done)

    @sub.post("/commitments/{commitment_id}/{action}", response_class=HTMLResponse)
    def decide(
        *,
        request: Request,
        console: ConsoleDep,
        session: SessionDep,
        commitment_id: UUID,
        action: str,
        csrf_token: Annotated[str, Form()] = "",
        idempotency_key: Annotated[str, Form()] = "",
        expected_version: Annotated[str, Form()] = "",
        reason: Annotated[str, Form()] = "",
        override_reason: Annotated[str, Form()] = "",
    ) -> Response:
        _check_post(request, session, csrf_token)
        if action not in views.ACTIONS:
            raise Refused(f"There is no action {action!r}.", status=404, title="Not found")
        try:
            version = int(expected_version)
        except ValueError:
            raise Refused(
                "The form did not say which version you reviewed; reload the page.",
                status=422,
                title="Form incomplete",
            ) from None
        form = _Decision(action, version, idempotency_key, reason, override_reason)
        return _decided(console, session, commitment_id, form)


def _queue_page(
    console: Console,
    session: ConsoleSession,
    filters: views.QueueFilters,
    *,
    min_amount: str | None,
) -> HTMLResponse:
    items = console.engine.compliance.review_queue(limit=500)
    rows = views.queue_rows(items, filters, actor=session.actor, now=console.clock.now())
    return _render(
        console,
        "queue.html",
        title="Review queue",
        session=session,
        rows=rows,
        filters=filters,
        total=len(items),
        query={
            "outcome": filters.outcome or "",
            "min_amount": min_amount or "",
            "party": filters.party or "",
        },
    )


@dataclass(frozen=True)
class _Decision:
    """An officer's decision as the detail page's form posted it."""

    action: str
    version: int
    idempotency_key: str
    reason: str
    override_reason: str


def _decided(
    console: Console, session: ConsoleSession, commitment_id: UUID, form: _Decision
) -> Response:
    """Apply the decision as the signed-in officer; the service decides. Done, the
    browser is sent to the detail page with the outcome; refused, the detail page says
    why with the error's status (and keeps what was typed)."""
    try:
        result = console.engine.commitments.apply(
            session.actor,
            commitment_id,
            views.ACTIONS[form.action],
            expected_version=form.version,
            reason=form.reason,
            idempotency_key=form.idempotency_key or None,
            # blank is "none" to the service; set, it is only valid on an approval
            override_reason=form.override_reason,
        )
    except errors.NotFound:
        raise
    except errors.StaleVersion:
        return _detail_page(
            console,
            session,
            commitment_id,
            error=(
                f"This commitment changed since you opened it (you reviewed version "
                f"{form.version}). Nothing was done; review it as it is now and decide again."
            ),
            status=409,
        )
    except errors.SettlementError as exc:
        return _detail_page(
            console,
            session,
            commitment_id,
            error=f"Refused: {exc}",
            status=exc.http_status,
            kept={
                "action": form.action,
                "reason": form.reason,
                "override_reason": form.override_reason,
            },
        )
    done = {
        "approve": "approved" if result.to_state == State.VERIFIED.value else "approval_recorded",
        "reject": "rejected",
        "request-info": "info_requested",
    }[form.action]
    return _see_other(f"{PREFIX}/commitments/{commitment_id}?done={done}")


def _detail_page(
    console: Console,
    session: ConsoleSession,
    commitment_id: UUID,
    *,
    done: str | None = None,
    error: str | None = None,
    status: int = 200,
    kept: Mapping[str, str] | None = None,
) -> HTMLResponse:
    engine = console.engine
    detail = engine.compliance.review_detail(commitment_id)
    record = detail.commitment
    officer = next(
        (o for o in engine.compliance.officers() if o.officer_id == session.actor.id), None
    )
    parties: list[tuple[str, str, Any, Any]] = []
    for label, party in (("Owner", record.owner_party), ("Counterparty", detail.counterparty)):
        if party is None:
            parties.append((label, "(none named)", None, []))
            continue
        try:
            kyc = engine.compliance.get_kyc(party)
        except errors.UnknownParty:
            kyc = None
        parties.append((label, party, kyc, engine.compliance.accounts_of(party)))
    screening = detail.current_screening
    return _render(
        console,
        "detail.html",
        title=f"Commitment {record.deal_ref}",
        session=session,
        status=status,
        detail=detail,
        record=record,
        screening=screening,
        past_screenings=[s for s in detail.screenings if s is not screening],
        parties=parties,
        settlements=reads.settlements_of(engine.db, commitment_id),
        refusals=views.refusals(session.actor, detail, officer),
        history_keys=audit.keys_by_version(detail.audit_trail),
        approvals_needed=views.approvals_needed(detail),
        senior=officer is not None and officer.senior,
        reason_required={name: views.reason_required(ev) for name, ev in views.ACTIONS.items()},
        # one key per rendered form: a double-submitted form replays instead of acting twice
        keys={name: str(uuid4()) for name in views.ACTIONS},
        done=views.DONE_MESSAGES.get(done or ""),
        error=error,
        kept=dict(kept or {}),
    )


def _party_routes(sub: FastAPI) -> None:
    @sub.get("/parties/{party}", response_class=HTMLResponse)
    def party_page(console: ConsoleDep, session: SessionDep, party: str) -> Response:
        """A party's balances beside its ledgers (read-only; officers and admins)."""
        _require_role(session, Role.COMPLIANCE_OFFICER, Role.ADMIN)
        balances = console.engine.positions.balances(session.actor, party, console.chains)
        return _render(
            console, "party.html", title=f"Party {party}", session=session, balances=balances
        )


def _admin_routes(sub: FastAPI) -> None:
    @sub.get("/settlements", response_class=HTMLResponse)
    def settlements(console: ConsoleDep, session: SessionDep) -> Response:
        _require_role(session, Role.ADMIN)
        engine = console.engine
        refs = reads.recent_ledger_refs(engine.db)
        return _render(
            console,
            "settlements.html",
            title="Settlements",
            session=session,
            flagged=engine.settlements.flagged(),
            breakers=BreakerBoard(engine.db, console.clock).states(),
            report=engine.commitments.verify_audit(),
            refs=[(ref, _explorer_link(console, ref.chain, ref.tx_hash)) for ref in refs],
            anchors=_anchor_rows(console),
        )


def _anchor_rows(console: Console) -> views.AnchorsView:
    """How old the newest audit anchor is on each ledger, with explorer links."""
    engine = console.engine
    ages = anchor_ages(engine.db, console.clock, bootstrap.anchor_accounts(engine.settings))
    rows = [
        views.AnchorRowView(
            age,
            None if age.landed is None else _explorer_link(console, age.chain, age.landed.tx_hash),
        )
        for age in ages.ledgers
    ]
    return views.AnchorsView(ages.last_taken, rows)


def _explorer_link(console: Console, chain: str, tx_hash: str) -> str | None:
    template = console.explorer_urls.get(chain)
    if template is None or not tx_hash.isalnum():
        return None
    for mark in _EXPLORER_MARKS:
        template = template.replace(mark, tx_hash)
    return template


def _error_pages(sub: FastAPI) -> None:
    def page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
        console = console_of(request)
        found = console.accounts.lookup(request.cookies.get(SESSION_COOKIE))
        return _render(
            console,
            "error.html",
            title=title,
            session=found.session,
            status=status,
            message=message,
        )

    @sub.exception_handler(SignInRequired)
    def sign_in_required(request: Request, exc: SignInRequired) -> Response:
        suffix = f"?ended={exc.ended.value}" if exc.ended in _ENDED_MESSAGES else ""
        response = _see_other(f"{PREFIX}/sign-in{suffix}")
        if exc.ended is not None:
            _forget_cookie(response, console_of(request), SESSION_COOKIE)
        return response

    @sub.exception_handler(Refused)
    def refused(request: Request, exc: Refused) -> Response:
        return page(request, exc.status, exc.title, exc.message)

    @sub.exception_handler(errors.NotFound)
    def not_found(request: Request, exc: errors.NotFound) -> Response:
        # the pages link only commitments; the engine's message would repeat the id
        message = (
            "There is no such commitment."
            if isinstance(exc, errors.CommitmentNotFound)
            else str(exc)
        )
        return page(request, exc.http_status, "Not found", message)

    @sub.exception_handler(errors.SettlementError)
    def engine_error(request: Request, exc: errors.SettlementError) -> Response:
        return page(request, exc.http_status, "Refused", str(exc))

    @sub.exception_handler(RequestValidationError)
    def invalid(request: Request, exc: RequestValidationError) -> Response:
        return page(request, 404, "Not found", "There is no such page.")

    @sub.exception_handler(StarletteHTTPException)
    def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        titles = {404: "Not found", 405: "Not allowed"}
        return page(request, exc.status_code, titles.get(exc.status_code, "Error"), str(exc.detail))
