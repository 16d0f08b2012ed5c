"""`settle demo`: the engine end to end on the embedded defaults.

First the compliance set-up an operator would make: two officers registered, KYC records
for the allocator and its counterparty, and the invented sample sanctions lists loaded
(all skipped when already there, so the demo can run again). Then two commitments walk
the state machine (one is screened and approved by two officers, four eyes, then
withdrawn; the other is sent back for more information and withdrawn), every transition
is printed, and each audit chain is read back and verified independently of the database.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from uuid import UUID

from ledger.commitments import WriteResult
from settlement.bootstrap import Engine
from settlement.domain import Actor, Role

Printer = Callable[[str], None]
SAMPLES = Path(__file__).resolve().parent.parent / "config" / "sanctions"
ADMIN = Actor("key-admin-demo", Role.ADMIN)
PARTIES = (
    ("northwind-capital", "Northwind Capital Partners LLP", "GB", True),
    ("meridian-bond-trust", "Meridian Bond Trust S.A.", "LU", False),
)


def set_up_compliance(engine: Engine, officers: tuple[Actor, ...], echo: Printer) -> None:
    compliance = engine.compliance
    known = {o.officer_id for o in compliance.officers()}
    for officer in officers:
        if officer.id not in known:
            compliance.register_officer(ADMIN, officer.id, display_name=officer.id)
            echo(f"  officer {officer.id} registered by {ADMIN.id}")
    records = {r.party for r in compliance.kyc_records()}
    expiry = (engine.clock.now() + timedelta(days=365)).date()
    for party, name, country, accredited in PARTIES:
        if party not in records:
            compliance.create_kyc(
                officers[0],
                party=party,
                legal_name=name,
                jurisdiction=country,
                risk_rating="low",
                accredited=accredited,
                status="verified",
                expires_on=expiry,
            )
            echo(f"  KYC {party} ({name}) verified until {expiry} by {officers[0].id}")
    for loaded in (
        compliance.load_sanctions(
            ADMIN, SAMPLES / "sample_sdn.csv", aliases_file=SAMPLES / "sample_alt.csv"
        ),
        compliance.load_sanctions(ADMIN, SAMPLES / "sample_targets.simple.csv"),
    ):
        v = loaded.version
        state = "loaded" if loaded.loaded else "already in force"
        echo(f"  sanctions list {v.list_name} v{v.version_id} ({v.entry_count} entries) {state}")


def run(engine: Engine, echo: Printer = print) -> bool:
    """Run the demo; return True when every audit chain verified."""
    service = engine.commitments
    allocator = Actor("key-allocator-northwind", Role.ALLOCATOR, party="northwind-capital")
    officer = Actor("key-officer-ada", Role.COMPLIANCE_OFFICER)
    second_officer = Actor("key-officer-grace", Role.COMPLIANCE_OFFICER)
    echo("Compliance set-up")
    set_up_compliance(engine, (officer, second_officer), echo)

    def show(result: WriteResult, actor: Actor, reason: str | None = None) -> None:
        arrow = f"{result.from_state or '(new)':>14} -> {result.to_state:<14}"
        note = f'  "{reason}"' if reason else ""
        echo(f"  v{result.version}  {arrow} {result.event:<13} by {actor.id}{note}")

    echo("\nCommitment 1: screened, approved by two officers (four eyes), then withdrawn")
    first = service.create(
        allocator,
        deal_ref="BOND-2031-XRPL",
        amount=Decimal("2500000.00"),
        currency="USD",
        counterparty="meridian-bond-trust",
    )
    show(first, allocator)
    c1: UUID = first.commitment_id
    show(service.submit(allocator, c1, expected_version=1), allocator)
    screening = engine.compliance.review_detail(c1).current_screening
    assert screening is not None
    s = screening.screening
    echo(
        f"      screening: {s.outcome}, {len(s.findings)} finding(s), "
        f"{s.approvals_required} approvals required, lists {list(s.list_versions)}"
    )
    first_approval = service.approve(officer, c1, expected_version=2)
    echo(f"      approval 1 of 2 by {officer.id} recorded (audit #{first_approval.audit_seq})")
    show(service.approve(second_officer, c1, expected_version=2), second_officer)
    show(service.withdraw(allocator, c1, expected_version=3), allocator)

    echo("\nCommitment 2: sent back for information, then withdrawn")
    second = service.create(
        allocator,
        deal_ref="FUND-III-CALL-7",
        amount=Decimal("750000.50"),
        currency="EUR",
        counterparty="meridian-bond-trust",
    )
    show(second, allocator)
    c2 = second.commitment_id
    show(service.submit(allocator, c2, expected_version=1), allocator)
    reason = "source-of-funds letter missing"
    show(service.request_info(officer, c2, expected_version=2, reason=reason), officer, reason)
    show(service.withdraw(allocator, c2, expected_version=3), allocator)

    ok = True
    for cid in (c1, c2):
        echo(f"\nAudit chain of {cid}")
        for entry in service.audit_trail(cid):
            prev = (entry.prev_hash or "-" * 12)[:12]
            echo(
                f"  #{entry.seq} {entry.action:<17} {entry.from_state or '':>14} -> "
                f"{entry.to_state or '':<14} {entry.actor:<24} "
                f"prev {prev}  hash {entry.entry_hash[:12]}"
            )
    report = service.verify_audit()
    compliance_report = engine.compliance.verify_audit()
    ok = report.ok and compliance_report.ok
    status = "verified" if ok else "BROKEN"
    echo(f"\nAudit log {status}: {report.chains} chains, {report.entries} entries recomputed")
    for problem in report.breaks:
        echo(f"  {problem}")
    status = "verified" if compliance_report.ok else "BROKEN"
    echo(f"Compliance audit chain {status}: {compliance_report.entries} entries recomputed")
    for text in compliance_report.breaks:
        echo(f"  {text}")
    return ok
