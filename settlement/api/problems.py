"""RFC 9457 problem details: every error the API returns, one stable ``type`` per code.

``type`` is ``urn:settlement:problem:<code>``; ``code`` repeats the last part for
clients that switch on a plain string. Engine errors (``settlement.domain.errors``) carry
their code and their HTTP status (``http_status``, the one map the console's error pages
use too); the API's own (signatures, idempotency, limits) are listed in ``API_CODES``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

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
