"""Request bodies parsed strictly: every route of the API is a ``StrictJsonRoute``.

FastAPI parses a JSON body with ``Request.json()`` (Python's ``json``, where the last
of a repeated key wins). The route class here hands the route a request whose
``json()`` is ``settlement.strict_json.loads``, so a body with a key twice at any
depth is refused as malformed JSON (400 ``malformed_body``) before any field of it is
read.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from settlement import strict_json


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
