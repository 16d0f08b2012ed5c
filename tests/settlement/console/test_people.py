"""The console names people, not keys: an officer is greeted by the registry's display
name, and a commitment's history and audit trail show each person with the key that
signed beside them (migration 0012)."""

from __future__ import annotations

import uuid

from settlement.domain.values import Role
from settlement.services.keys import KeyService, actor_of
from tests.support import ADMIN

from .conftest import PASSWORD, ConsoleServer, Login


def _greeting(page: str) -> str:
    start = page.index("Signed in as")
    return page[start : page.index("</span>", start)]


def test_an_officer_is_greeted_by_name_and_an_admin_by_id(console: ConsoleServer) -> None:
    tag = uuid.uuid4().hex[:8]
    officer_id = f"officer-ada-{tag}"
    console.engine.compliance.register_officer(ADMIN, officer_id, display_name="Ada Lovelace")
    console.accounts.create(
        username=f"ada-{tag}",
        password=PASSWORD,
        actor_id=officer_id,
        role=Role.COMPLIANCE_OFFICER,
        created_by="test",
    )
    with console.signed_in(Login(f"ada-{tag}", PASSWORD, officer_id)) as client:
        page = client.get("/console/queue").text
    assert _greeting(page) == (
        f"Signed in as <strong>Ada Lovelace</strong> (compliance officer {officer_id})"
    )
    # a renamed officer is greeted by the new name from the next page on
    console.engine.compliance.register_officer(ADMIN, officer_id, display_name="Ada King")
    with console.signed_in(Login(f"ada-{tag}", PASSWORD, officer_id)) as client:
        page = client.get("/console/queue").text
    assert "<strong>Ada King</strong>" in _greeting(page)
    admin = console.admin()
    with console.signed_in(admin) as client:
        page = client.get("/console/queue").text
    assert _greeting(page) == f"Signed in as <strong>{admin.actor_id}</strong> (admin)"


def test_history_and_audit_show_the_person_with_the_signing_key(console: ConsoleServer) -> None:
    keys = KeyService(console.engine.db, console.clock)
    tag = uuid.uuid4().hex[:8]
    created = keys.create(
        role=Role.ALLOCATOR, party="party-northwind", person=f"alice-{tag}", created_by="test"
    )
    alice = actor_of(created.record)
    cid = console.under_review(submitter=alice)
    login = console.officer()
    with console.signed_in(login) as client:
        page = client.get(f"/console/commitments/{cid}").text
    history = page[page.index('id="history-h"') : page.index('id="audit-h"')]
    audit = page[page.index('id="audit-h"') :]
    for section in (history, audit):
        assert f"<td>party-northwind/alice-{tag}</td><td><code>{alice.key_id}</code></td>" in (
            section
        )
    assert created.record.key_id not in _greeting(page)
