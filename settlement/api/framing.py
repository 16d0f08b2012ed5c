"""The API's HTML pages (Swagger UI at /docs, ReDoc at /redoc) refuse to be framed.

A page of another site that shows them in a frame could lead a user into clicks on
them (clickjacking), as it could the console's, which already forbids framing. Their
scripts and styles come from a CDN, so only the framing part of a Content Security
Policy is set here, with X-Frame-Options for browsers that predate it. The JSON routes
need neither.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_HEADERS = (
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
)


class NotFramed:
    def __init__(self, app: ASGIApp, *, paths: Iterable[str]) -> None:
        self.app = app
        self._paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self._paths:
            await self.app(scope, receive, send)
            return

        async def framed_not(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in _HEADERS if n not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, framed_not)
