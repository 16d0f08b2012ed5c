"""`settle demo`: the engine end to end, every act through the signed HTTP API.

The demo runs what a deployment runs, in one process so it needs nothing installed:
the API server (uvicorn, on a free loopback port), and for the settlement half
(``settlement.demo.settlements``) both local ledger networks and a settlement worker. People
act only through ``SettlementClient`` with their own Ed25519 keys: an allocator, two
compliance officers, an admin and an auditor. Each key belongs to its person, so the
audit log names the person (an officer by officer id, the allocator as
``northwind-capital/alice``) with the key that signed beside them.

What an operator does on the database host stays an operator's act here too, because
the API offers no route for it: registering the officers (as ``settle officers add``
does), then the people's keys (as ``settle keys new --person`` does), and loading the
invented sample sanctions lists (as ``settle sanctions load`` does). The keys are
revoked when the demo ends, so every run registers fresh keys for the same people and
can run again on the same database.

This half: KYC records of both parties created through the API (skipped when there),
then a commitment screened, sent back for information and withdrawn, its audit chain
read back and every chain recomputed by the server.
"""

from __future__ import annotations

import getpass
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import uvicorn

from settlement import signing
from settlement.api.app import create_app
from settlement.bootstrap import Ledgers, Services
from settlement.cli.remote import col, short_time, table
from settlement.client import ApiError, SettlementClient
from settlement.domain import errors
from settlement.domain.values import Actor, Role
from settlement.services.keys import KeyService

Printer = Callable[[str], None]
#: the invented sample lists beside the settings files (config/ at the top of the project)
SAMPLES = Path(__file__).resolve().parents[2] / "config" / "sanctions"
ALLOCATOR_PARTY = "northwind-capital"
COUNTERPARTY = "meridian-bond-trust"
PARTIES = (
    (ALLOCATOR_PARTY, "Northwind Capital Partners LLP", "GB", True),
    (COUNTERPARTY, "Meridian Bond Trust S.A.", "LU", False),
)


@dataclass(frozen=True)
class Person:
    """One of the story's people: the name the demo calls them by (``client(handle)``),
    the role their key is registered with, who they are (the person the key belongs to:
    an officer id, a user of the allocator's party, a name), and an officer's display
    name in the registry."""

    handle: str
    role: Role
    person: str
    party: str | None = None
    display_name: str | None = None


#: the people of the story
PEOPLE = (
    Person("allocator", Role.ALLOCATOR, "alice", ALLOCATOR_PARTY),
    Person("officer-ada", Role.COMPLIANCE_OFFICER, "officer-ada", display_name="Ada Lovelace"),
    Person("officer-grace", Role.COMPLIANCE_OFFICER, "officer-grace", display_name="Grace Hopper"),
    Person("admin", Role.ADMIN, "admin-morgan"),
    Person("auditor", Role.AUDITOR, "auditor-quinn"),
)
SERVER_START_S = 15.0


class DemoFailed(errors.SettlementError):
    """The demo could not go on (a server that did not start, a state never reached)."""

    code = "demo_failed"


@dataclass(frozen=True)
class DemoKey:
    key_id: str
    path: Path
    #: whose key it is, as the audit log names them
    person: str


@dataclass
class ApiStack:
    """A running API server with the demo's people's keys; ``client(name)`` signs as
    one of them. ``ledgers`` is set when the server can settle."""

    engine: Services
    url: str
    keys: dict[str, DemoKey]
    ledgers: Ledgers | None = None
    _clients: dict[str, SettlementClient] = field(default_factory=dict)

    def person(self, name: str) -> str:
        """Who ``name`` of the story is, as the history and the audit log name them."""
        return self.keys[name].person

    def client(self, name: str) -> SettlementClient:
        if name not in self._clients:
            key = self.keys[name]
            self._clients[name] = SettlementClient.from_key_file(self.url, key.key_id, key.path)
        return self._clients[name]

    def close_clients(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()


def _operator() -> str:
    return f"operator:{getpass.getuser()}:demo"


@contextmanager
def _serving(engine: Services, ledgers: Ledgers | None) -> Iterator[str]:
    """The API on uvicorn in a thread, on a free loopback port; its base URL."""
    app = create_app(engine, ledgers=ledgers, scope=f"demo:{os.getpid()}")
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="demo-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_S
    try:
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise DemoFailed("the API server did not start")
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=SERVER_START_S)


def _register_people(engine: Services, key_dir: Path, echo: Printer) -> dict[str, DemoKey]:
    """The officers registered (once per database), then one key per person (written
    0600 as ``settle keys new`` writes it), the sample sanctions lists loaded: the
    operator's set-up."""
    operator = Actor(_operator(), Role.ADMIN)
    registered = {o.officer_id: o for o in engine.compliance.officers()}
    for p in PEOPLE:
        if p.role is not Role.COMPLIANCE_OFFICER:
            continue
        assert p.display_name is not None
        known = registered.get(p.person)
        if known is not None and known.active and known.display_name == p.display_name:
            echo(f"  officer {p.person} ({p.display_name}) already registered")
            continue
        engine.compliance.register_officer(operator, p.person, display_name=p.display_name)
        echo(f"  officer {p.person} ({p.display_name}) registered by {operator.id}")
    service = KeyService(engine.db, engine.clock)
    keys: dict[str, DemoKey] = {}
    for p in PEOPLE:
        created = service.create(
            role=p.role, party=p.party, person=p.person, created_by=_operator()
        )
        record = created.record
        path = key_dir / f"{record.key_id}.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(signing.private_key_pem(created.private_key))
        keys[p.handle] = DemoKey(record.key_id, path, record.person)
        echo(f"  key {record.key_id} of {record.person} (the {p.handle}, {p.role})")
    for loaded in (
        engine.compliance.load_sanctions(
            operator, SAMPLES / "sample_sdn.csv", aliases_file=SAMPLES / "sample_alt.csv"
        ),
        engine.compliance.load_sanctions(operator, SAMPLES / "sample_targets.simple.csv"),
    ):
        v = loaded.version
        state = "loaded" if loaded.loaded else "already in force"
        echo(f"  sanctions list {v.list_name} v{v.version_id} ({v.entry_count} entries) {state}")
    return keys


def _revoke(engine: Services, keys: dict[str, DemoKey]) -> None:
    service = KeyService(engine.db, engine.clock)
    for key in keys.values():
        service.revoke(key.key_id, revoked_by=_operator())


@contextmanager
def api_stack(
    engine: Services, echo: Printer = print, *, ledgers: Ledgers | None = None
) -> Iterator[ApiStack]:
    """Register the people's keys, start the API server over ``engine`` (and
    ``ledgers``); on the way out stop the server and revoke the keys."""
    with tempfile.TemporaryDirectory(prefix="settle-demo-keys-") as key_dir:
        echo("Operator set-up (on the database host)")
        keys = _register_people(engine, Path(key_dir), echo)
        try:
            with _serving(engine, ledgers) as url:
                echo(f"  API server listening at {url}")
                stack = ApiStack(engine=engine, url=url, keys=keys, ledgers=ledgers)
                try:
                    yield stack
                finally:
                    stack.close_clients()
        finally:
            _revoke(engine, keys)


def ensure_parties(stack: ApiStack, echo: Printer) -> None:
    """KYC records of both parties, created through the API by an officer unless the
    party has one already."""
    officer = stack.client("officer-ada")
    expiry = (stack.engine.clock.now() + timedelta(days=365)).date()
    for party, name, country, accredited in PARTIES:
        try:
            known = officer.party(party)["kyc"]
        except ApiError as exc:
            if exc.code != "party_not_found":
                raise
        else:
            echo(f"  KYC {party}: {known['status']} (v{known['version']}), already on file")
            continue
        record = officer.create_kyc(
            party,
            legal_name=name,
            jurisdiction=country,
            risk_rating="low",
            accredited=accredited,
            status="verified",
            expires_on=expiry.isoformat(),
        )
        echo(f"  KYC {party} ({name}) {record['status']} until {record['expires_on']}")


def echo_transition(echo: Printer, result: dict[str, Any], who: str, note: str = "") -> None:
    arrow = f"{result['from_state'] or '(new)':>14} -> {result['to_state']:<14}"
    echo(f"  v{result['version']}  {arrow} {result['event']:<13} by {who}{note}")


def echo_audit(echo: Printer, entries: list[dict[str, Any]]) -> None:
    columns = [
        ("SEQ", col("seq")),
        ("ACTION", col("action")),
        ("FROM", col("from_state")),
        ("TO", col("to_state")),
        ("ACTOR", col("actor")),
        ("KEY", col("key_id")),
        ("RECORDED", lambda r: short_time(r.get("recorded_at"))),
        ("PREV", lambda r: (r.get("prev_hash") or "")[:12] or None),
        ("HASH", lambda r: str(r["entry_hash"])[:12]),
        (
            "LEDGER REF",
            lambda r: f"{r['chain']} tx {r['tx_hash']}" if r["chain"] else None,
        ),
    ]
    for line in table(entries, columns):
        echo(f"  {line}")


def verify_chains(stack: ApiStack, echo: Printer) -> bool:
    """The auditor asks the server to recompute every audit chain."""
    report = stack.client("auditor").verify_audit()
    status = "verified" if report["ok"] else "BROKEN"
    echo(
        f"\nAudit log {status} by the server: {report['chains']} chains, "
        f"{report['entries']} entries recomputed"
    )
    for problem in report["breaks"]:
        echo(
            f"  commitment {problem['commitment_id']} entry {problem['seq']}: {problem['problem']}"
        )
    return bool(report["ok"])


def run(engine: Services, echo: Printer = print) -> bool:
    """The review half: return True when the commitment ended as described and every
    audit chain verified."""
    with api_stack(engine, echo) as stack:
        ensure_parties(stack, echo)
        allocator, officer = stack.client("allocator"), stack.client("officer-ada")
        echo("\nA commitment sent back for information, then withdrawn")
        created = allocator.create_commitment(
            deal_ref="FUND-III-CALL-7",
            amount="750000.50",
            currency="EUR",
            counterparty=COUNTERPARTY,
        )
        alice, ada = stack.person("allocator"), stack.person("officer-ada")
        echo_transition(echo, created, alice)
        cid = created["commitment_id"]
        echo_transition(echo, allocator.submit(cid, expected_version=1), alice)
        screening = officer.review_detail(cid)["screenings"][-1]["screening"]
        echo(
            f"      screening: {screening['outcome']}, {len(screening['findings'])} finding(s), "
            f"{screening['approvals_required']} approval(s) required"
        )
        reason = "source-of-funds letter missing"
        sent_back = officer.request_info(cid, expected_version=2, reason=reason)
        echo_transition(echo, sent_back, ada, f'  "{reason}"')
        withdrawn = allocator.withdraw(cid, expected_version=sent_back["version"])
        echo_transition(echo, withdrawn, alice)
        echo(f"\nAudit chain of {cid}, read through the API")
        echo_audit(echo, allocator.audit_trail(cid))
        return verify_chains(stack, echo) and withdrawn["to_state"] == "CANCELLED"
