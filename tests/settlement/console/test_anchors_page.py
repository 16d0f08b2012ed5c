"""The admin's settlements page says how old the newest audit anchor is on each ledger,
with a link to the anchoring transaction where the settings name an explorer."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest

from ledger import anchors
from settlement import bootstrap
from settlement.api.app import ConsoleOptions, create_app
from settlement.bootstrap import DatabaseUrls
from settlement.clock import ManualClock
from settlement.domain.states import State
from settlement.services.console_accounts import ConsoleAccounts
from settlement.settings import load_settings
from tests.support import new_commitment, seed_compliance

from .conftest import TEST_HASHER, ConsoleServer, serve

XRPL_EXPLORER = "https://testnet.xrpl.org/transactions/{hash}"


@pytest.fixture
def anchored_console(fresh_urls: DatabaseUrls, clock: ManualClock) -> Iterator[ConsoleServer]:
    """The API with its console, as `settle serve` builds it, over settings that name an
    anchor account on both ledgers and an explorer for XRPL only."""
    settings = load_settings(
        database_url=fresh_urls.owner,
        xrpl_anchor_account="rAnchor",
        stellar_anchor_account="GA",
        xrpl_explorer_tx_url=XRPL_EXPLORER,
    )
    engine = bootstrap.build(settings, clock=clock, urls=fresh_urls)
    seed_compliance(engine.commitments)
    server, thread, url = serve(create_app(engine, console=ConsoleOptions(secure_cookies=False)))
    try:
        yield ConsoleServer(
            url,
            engine,
            clock,
            ConsoleAccounts(engine.db, clock, engine.compliance, hasher=TEST_HASHER),
        )
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        engine.close()


def _land(console: ConsoleServer, landed: dict[str, str]) -> anchors.AnchorRow:
    """Take an anchor now and record it applied on each ledger of ``landed`` (chain ->
    transaction hash)."""
    new_commitment(console.engine.commitments, State.DRAFT)
    now = console.clock.now()
    with console.engine.db.unit_of_work() as uow:
        row = anchors.insert_anchor(uow, heads=anchors.chain_heads(uow, now), cutoff=now, at=now)
        for chain, tx_hash in landed.items():
            anchors.record_publication(
                uow,
                anchor_seq=row.seq,
                chain=chain,
                account="anchor",
                tx_hash=tx_hash,
                blob="blob",
                expires_ledger=100,
                expires_at=None,
                at=now,
            )
            anchors.finalize_publication(
                uow,
                tx_hash=tx_hash,
                status="APPLIED",
                result_code="tesSUCCESS",
                ledger_index=70 + row.seq,
                ledger_hash="LH",
                at=now,
            )
        uow.commit()
    return row


def _anchor_table(page: str) -> str:
    found = re.search(r'<table id="anchors">.*?</table>', page, re.S)
    assert found is not None, "no anchors table on the page"
    return found.group(0)


def test_the_admin_sees_each_ledgers_anchor_age_with_explorer_links(
    anchored_console: ConsoleServer,
) -> None:
    console = anchored_console
    admin = console.admin()
    with console.signed_in(admin) as client:
        before = _anchor_table(client.get("/console/settlements").text)
    assert before.count("none landed yet") == 2

    xrpl_hash = "AB" * 32
    stellar_hash = "cd" * 32
    _land(console, {"xrpl": xrpl_hash, "stellar": "ef" * 32})
    console.clock.advance(timedelta(minutes=30))
    _land(console, {"stellar": stellar_hash})  # the XRP Ledger is down: not there yet
    console.clock.advance(timedelta(hours=2))
    with console.signed_in(admin) as client:
        page = client.get("/console/settlements").text
    table = _anchor_table(page)
    rows = {
        m.group(1): m.group(0)
        for m in re.finditer(r'<tr><th scope="row">(\w+)</th>.*?</tr>', table, re.S)
    }
    assert rows.keys() == {"xrpl", "stellar"}
    assert '<td class="anchor-age">2 h 30 min</td>' in rows["xrpl"]
    link = XRPL_EXPLORER.replace("{hash}", xrpl_hash)
    assert (
        f'<a href="{link}" rel="noopener noreferrer"><code>{xrpl_hash}</code></a>' in rows["xrpl"]
    )
    assert "<td>71</td>" in rows["xrpl"]
    # no explorer for Stellar in these settings: the hash is plain text
    assert '<td class="anchor-age">2 h 0 min</td>' in rows["stellar"]
    assert f"<td><code>{stellar_hash}</code></td>" in rows["stellar"]
    assert "<td>72</td>" in rows["stellar"]
    assert '<td class="num">1</td></tr>' in rows["xrpl"], "anchor 2 waits to land there"
    assert '<td class="num">0</td></tr>' in rows["stellar"]
    assert "Newest anchor taken: 2 at" in page
