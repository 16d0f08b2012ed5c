"""RFC 9457 problem details: every error the API returns, one stable ``type`` per code.

``type`` is ``urn:settlement:problem:<code>``; ``code`` repeats the last part for
clients that switch on a plain string. Engine errors (``settlement.domain.errors``) carry
their code and their HTTP status (``http_status``, the one map the console's error pages
use too); the API's own (signatures, idempotency, limits) are listed in ``API_CODES``.
``install_handlers(app)`` makes every error a route raises, and every error FastAPI
itself answers, one of these documents.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from settlement.domain import errors

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:settlement:problem:"

#: the API's own problem codes: status and title
API_CODES: Mapping[str, tuple[int, str]] = {
    "signature_missing": (401, "Request is not signed"),
    "signature_invalid": (401, "Signature is not valid"),
    "signature_expired": (401, "Signature created outside the accepted window"),
    "digest_mismatch": (401, "Content-Digest does not match the body"),
    "nonce_reused": (401, "Nonce was already used by this key"),
    "key_unknown": (401, "Unknown key"),
    "key_revoked": (401, "Key is revoked"),
    "forbidden": (403, "The key's role or party may not do this"),
    "not_found": (404, "No such resource"),
    "settlement_not_found": (404, "No such settlement"),
    "party_not_found": (404, "No such party"),
    "invalid_cursor": (400, "The pagination cursor is not one this API issued"),
    "ledgers_unavailable": (503, "No ledgers are configured or reachable"),
    "method_not_allowed": (405, "Method not allowed"),
    "idempotency_key_required": (400, "Idempotency-Key header is required"),
    "invalid_header": (400, "A request header is malformed"),
    "invalid_parameter": (400, "A path or query parameter is malformed"),
    "malformed_body": (400, "The body is not valid JSON"),
    "payload_too_large": (413, "The body is larger than the limit"),
    "validation_failed": (422, "The request does not match the schema"),
    "precondition_required": (428, "The expected version is required (If-Match or body)"),
    "internal_error": (500, "Internal error"),
}


def title_of(code: str) -> str:
    if code in API_CODES:
        return API_CODES[code][1]
    return code.replace("_", " ").capitalize()


def body(
    code: str,
    status: int,
    detail: str,
    *,
    instance: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> bytes:
    problem: dict[str, Any] = {
        "type": TYPE_PREFIX + code,
        "title": title_of(code),
        "status": status,
        "detail": detail,
        "code": code,
    }
    if instance is not None:
        problem["instance"] = instance
    if extra:
        problem.update(extra)
    return json.dumps(problem, ensure_ascii=False, separators=(",", ":")).encode()


class ApiProblem(Exception):
    """An API-level refusal raised inside a route or dependency."""

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.status = status if status is not None else API_CODES[code][0]
        self.detail = detail
        self.headers = dict(headers or {})


#: the codes of the HTTP errors FastAPI answers itself (no route was reached)
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def _problem(
    code: str,
    status: int,
    detail: str,
    request: Request,
    *,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    return Response(
        content=body(code, status, detail, instance=request.url.path, extra=extra),
        status_code=status,
        media_type=MEDIA_TYPE,
        headers=headers,
    )


def _invalid(request: Request, exc: RequestValidationError) -> Response:
    """A body that is not JSON is 400 ``malformed_body``; anything else the schema
    refuses is 422 ``validation_failed`` with every error listed."""
    unparsed = [e for e in exc.errors() if e.get("type") == "json_invalid"]
    if unparsed:
        why = unparsed[0].get("ctx", {}).get("error", "")
        detail = f"the body is not valid JSON: {why}" if why else "the body is not valid JSON"
        return _problem("malformed_body", 400, detail, request)
    found = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
        for e in exc.errors()
    ]
    detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in found)
    return _problem("validation_failed", 422, detail, request, extra={"errors": found})


def install_handlers(app: FastAPI) -> None:
    """Answer every error with a problem document: ``ApiProblem`` with its own status,
    an engine error with its ``http_status`` (a request in flight also with
    ``Retry-After: 1``), FastAPI's own refusals with theirs, anything else 500
    ``internal_error`` with no detail."""

    @app.exception_handler(ApiProblem)
    async def api_problem(request: Request, exc: ApiProblem) -> Response:
        return _problem(exc.code, exc.status, exc.detail, request, headers=exc.headers)

    @app.exception_handler(errors.SettlementError)
    async def engine_error(request: Request, exc: errors.SettlementError) -> Response:
        headers = {"Retry-After": "1"} if isinstance(exc, errors.RequestInFlight) else None
        return _problem(exc.code, exc.http_status, str(exc), request, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        return _invalid(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code) or f"http_{exc.status_code}"
        return _problem(code, exc.status_code, str(exc.detail), request)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> Response:
        return _problem("internal_error", 500, "internal error", request)
