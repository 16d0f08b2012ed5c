"""The API's route dependencies run on the event loop, not in the thread pool."""

from __future__ import annotations

import inspect
from collections.abc import Iterator

from fastapi.dependencies.models import Dependant

from settlement.api.app import api_routes
from tests.settlement.api.conftest import Api


def _dependencies(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from _dependencies(sub)


def test_every_dependency_of_a_versioned_route_is_a_coroutine(api: Api) -> None:
    # FastAPI runs a plain ``def`` dependency in its thread pool: for the few attribute
    # reads these do, the hand-off would cost more than the work, on every request
    routes = [r for r in api_routes(api.app.routes) if r.path.startswith("/v1")]
    assert len(routes) > 20
    checked = 0
    for route in routes:
        for dependency in _dependencies(route.dependant):
            if dependency.call is None:
                continue
            assert inspect.iscoroutinefunction(dependency.call), (
                f"{route.path}: {dependency.call.__qualname__} is not a coroutine"
            )
            checked += 1
    assert checked >= 2 * len(routes)  # each route has at least its actor and role check
