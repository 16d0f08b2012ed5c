"""The OpenAPI document as this API serves it: FastAPI's, with the signature scheme
on every signed operation and every error response documented as a problem.

FastAPI's generic validation-error schemas are dropped: this API answers those errors
with problems too (``settlement.api.problems``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from settlement.api import problems

_SIGNATURE_DOC = (
    'RFC 9421 HTTP Message Signature with Ed25519 over ("@method" "@target-uri" '
    '"content-digest") with parameters created, nonce, keyid and alg="ed25519"; send '
    "Signature-Input, Signature and Content-Digest (RFC 9530, sha-256 of the body, also "
    "of an empty one). created must be within 300 s of the server's clock and a nonce "
    "is accepted once per key."
)


def _is_problem(response: dict[str, Any]) -> bool:
    """Whether a documented error response is a problem (every one but readiness's
    503, which answers its checks)."""
    schemas_of = [c.get("schema", {}) for c in response.get("content", {}).values()]
    return not any(
        s.get("$ref", "").endswith("/ReadyOut") for s in schemas_of if isinstance(s, dict)
    )


def _document(app: FastAPI, public_paths: Collection[str]) -> dict[str, Any]:
    document = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {})["httpMessageSignature"] = {
        "type": "apiKey",
        "in": "header",
        "name": "Signature",
        "description": _SIGNATURE_DOC,
    }
    schemas_doc = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas_doc.pop(name, None)
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                if status.isdigit() and int(status) >= 400 and _is_problem(response):
                    response["content"] = {problems.MEDIA_TYPE: {"schema": problem_ref}}
            if path not in public_paths:
                operation["security"] = [{"httpMessageSignature": []}]
    return document


def document_of(app: FastAPI, public_paths: Collection[str]) -> Callable[[], dict[str, Any]]:
    """What ``app.openapi`` should be: builds the document once, on first use, and
    keeps it on the app. Operations on ``public_paths`` carry no security."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document(app, public_paths)
        return app.openapi_schema

    return build
