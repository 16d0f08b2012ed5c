"""The console served by the API app itself, as `settle serve` runs it: its pages pass
the signature guard (they sign users in with their own sessions) while everything else
stays signed, and the console adds nothing to the OpenAPI document."""

from __future__ import annotations

import httpx

from settlement import bootstrap
from settlement.api.app import ConsoleOptions, create_app
from settlement.clock import ManualClock

from .conftest import serving


def test_console_pages_pass_the_guard_and_the_api_stays_signed(
    engine: bootstrap.Services, clock: ManualClock
) -> None:
    app = create_app(engine, console=ConsoleOptions())
    with serving(app) as url, httpx.Client(base_url=url, timeout=10) as http:
        page = http.get("/console/sign-in")
        assert page.status_code == 200, page.text
        assert "<form" in page.text and 'name="username"' in page.text
        # by default the console's cookies are Secure (a browser still sends them to
        # localhost); the sign-in page sets its CSRF cookie
        assert all("Secure" in c for c in page.headers.get_list("set-cookie")), page.headers
        # a protected console page without a session goes to sign-in, not to a 401
        queue = http.get("/console/queue", follow_redirects=False)
        assert queue.status_code in (302, 303), queue.status_code
        assert "/console/sign-in" in queue.headers["location"]
        # the prefix is exact: a look-alike path is still behind the signature guard
        assert http.get("/console-admin").status_code == 401
        assert http.get("/v1/commitments").status_code == 401
        paths = http.get("/openapi.json").json()["paths"]
        assert not [p for p in paths if p.startswith("/console")]
        # the console's parameters are refused with control characters as the API's are
        for target in ("/console/queue?sort=%00", "/console/commitments/x%00y"):
            refused = http.get(target)
            assert refused.status_code == 400, refused.text
            assert refused.json()["code"] == "invalid_parameter"


def test_without_the_console_its_paths_are_signed_routes_like_any_other(
    engine: bootstrap.Services,
) -> None:
    with serving(create_app(engine)) as url, httpx.Client(base_url=url, timeout=10) as http:
        assert http.get("/console/sign-in").status_code == 401
