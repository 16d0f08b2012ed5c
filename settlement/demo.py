"""`settle demo`: the engine end to end on the embedded defaults.

Two commitments walk the state machine (one is approved and then withdrawn, the other
is sent back for more information and withdrawn), every transition is printed, and
then each audit chain is read back and verified independently of the database.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from uuid import UUID

from ledger.commitments import WriteResult
from settlement.bootstrap import Engine
from settlement.domain import Actor, Role

Printer = Callable[[str], None]


def run(engine: Engine, echo: Printer = print) -> bool:
    """Run the demo; return True when every audit chain verified."""
    service = engine.commitments
    allocator = Actor("key-allocator-northwind", Role.ALLOCATOR, party="northwind-capital")
    officer = Actor("key-officer-ada", Role.COMPLIANCE_OFFICER)

    def show(result: WriteResult, actor: Actor, reason: str | None = None) -> None:
        arrow = f"{result.from_state or '(new)':>14} -> {result.to_state:<14}"
        note = f'  "{reason}"' if reason else ""
        echo(f"  v{result.version}  {arrow} {result.event:<13} by {actor.id}{note}")

    echo("Commitment 1: submitted, approved, then withdrawn by its allocator")
    first = service.create(
        allocator, deal_ref="BOND-2031-XRPL", amount=Decimal("2500000.00"), currency="USD"
    )
    show(first, allocator)
    c1: UUID = first.commitment_id
    show(service.submit(allocator, c1, expected_version=1), allocator)
    show(service.approve(officer, c1, expected_version=2), officer)
    show(service.withdraw(allocator, c1, expected_version=3), allocator)

    echo("\nCommitment 2: sent back for information, then withdrawn")
    second = service.create(
        allocator, deal_ref="FUND-III-CALL-7", amount=Decimal("750000.50"), currency="EUR"
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
                f"  #{entry.seq} {entry.action:<13} {entry.from_state or '':>14} -> "
                f"{entry.to_state or '':<14} {entry.actor:<24} "
                f"prev {prev}  hash {entry.entry_hash[:12]}"
            )
    report = service.verify_audit()
    ok = report.ok
    status = "verified" if ok else "BROKEN"
    echo(f"\nAudit log {status}: {report.chains} chains, {report.entries} entries recomputed")
    for problem in report.breaks:
        echo(f"  {problem}")
    return ok
