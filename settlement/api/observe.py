"""Request metrics, recorded outside the signature guard so refused requests count.

The route label is the matched route's template (``/v1/commitments/{commitment_id}``),
never the raw path, so ids do not explode the number of series; a path no route
matches is ``unmatched``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from settlement.api.metrics import ApiMetrics

UNMATCHED = "unmatched"


class RequestMetrics:
    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self._metrics = metrics
        self._routes = tuple(routes)

    def _template(self, scope: Scope) -> str:
        partial: str | None = None
        for route in self._routes:
            match, _ = route.matches(scope)
            path = getattr(route, "path", None)
            if not isinstance(path, str):
                continue
            if match is Match.FULL:
                return path
            if match is Match.PARTIAL and partial is None:
                partial = path  # the path matches, the method does not (405)
        return partial or UNMATCHED

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self._metrics.observe(
                self._template(scope), scope["method"], status, time.perf_counter() - started
            )
