"""Input refused before a route reads it: bodies with a key twice, parameters with
control characters.

Every route of the API is a ``StrictJsonRoute``. FastAPI parses a JSON body with
``Request.json()`` (Python's ``json``, where the last of a repeated key wins). The
route class here hands the route a request whose ``json()`` is
``settlement.strict_json.loads``, so a body with a key twice at any depth is refused
as malformed JSON (400 ``malformed_body``) before any field of it is read.

``RefuseControlCharacters`` answers 400 ``invalid_parameter`` to a request whose path
or query holds a control character (Unicode category Cc: C0, DEL, C1), whatever route
it names. No identifier, reference or filter of this engine contains one; PostgreSQL
cannot store NUL at all (psycopg refuses it as a ``DataError``), and the others would
reach logs and the console as line breaks and terminal escapes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from settlement import strict_json
from settlement.api import problems

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_json.loads(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handle(StrictJsonRequest(request.scope, request.receive))

        return strict


def control_character_in(scope: Scope) -> str | None:
    """Which part of the request (the path, or a query parameter by name) holds a
    control character once percent-decoded; None if none does."""
    if _CONTROL.search(scope["path"]):
        return "the path"
    query = scope.get("query_string", b"").decode("latin-1")
    for name, value in parse_qsl(query, keep_blank_values=True):
        if _CONTROL.search(name) or _CONTROL.search(value):
            return f"query parameter {name!r}"
    return None


class RefuseControlCharacters:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        where = control_character_in(scope) if scope["type"] == "http" else None
        if where is None:
            await self.app(scope, receive, send)
            return
        status = problems.API_CODES["invalid_parameter"][0]
        body = problems.body(
            "invalid_parameter",
            status,
            f"{where} contains a control character",
            instance=scope["path"],
        )
        headers = [
            (b"content-type", problems.MEDIA_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
