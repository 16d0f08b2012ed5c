"""`settle audit anchor`, `settle audit verify --anchors`, `settle audit proof`: the audit
anchors on the ledgers (``settlement.services.anchors``), on the database host."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer

from adapters.chain import Anchoring, Chain, ChainName
from adapters.errors import AdapterError
from ledger.audit import VerifyReport
from ledger.errors import LedgerError
from settlement import bootstrap
from settlement.cli.common import JsonFlag, engine_or_exit, fail
from settlement.domain.errors import SettlementError
from settlement.dvp.ledger_refs import ledger_ref_checker
from settlement.services.anchors import (
    Anchorer,
    AnchorNotFound,
    AnchorReport,
    ChainProgress,
    proof_of_commitment,
    verify_anchors,
)
from settlement.settings import SettingsError


def _anchoring(chains: Mapping[ChainName, Chain]) -> dict[ChainName, Anchoring]:
    """The ledgers among ``chains`` that carry anchors (both adapters do)."""
    return {name: chain for name, chain in chains.items() if isinstance(chain, Anchoring)}


def _anchor_accounts(engine: bootstrap.Services) -> dict[ChainName, str]:
    """The anchor accounts the settings name, whose ledger history the verifier reads."""
    return bootstrap.anchor_accounts(engine.settings)


def audit_anchor(
    *,
    wait_s: Annotated[
        float,
        typer.Option("--wait", min=0, help="Seconds to wait for the anchors to land."),
    ] = 60.0,
    as_json: JsonFlag = False,
) -> None:
    """Take an audit anchor (the Merkle root of every chain's head) and publish it, and any
    earlier one not yet landed, on each ledger that has an anchor account.

    Nothing is taken when no entry was added since the last anchor. A ledger that is
    down delays its anchor: run the command again (each root lands once per ledger).

    Exit codes: 0 every anchor landed; 1 an anchor is still on its way (or failed); 2
    settings error (no anchor account, a ledger that cannot be configured).
    """
    engine = engine_or_exit()
    try:
        try:
            anchorer = bootstrap.build_anchorer(engine)
        except (SettingsError, AdapterError, ValueError) as exc:
            raise fail(str(exc), 2) from exc
        if anchorer is None:
            raise fail("no anchor account: set xrpl_anchor_account or stellar_anchor_account", 2)
        taken = anchorer.anchor()
        progress = _publish(anchorer, wait_s)
    except (LedgerError, SettlementError) as exc:
        raise fail(str(exc)) from exc
    finally:
        engine.close()
    pending = [p for p in progress if p.pending is not None]
    if as_json:
        seq = None if taken is None else taken.seq
        typer.echo(json.dumps(_progress_json(seq, progress), indent=2))
    else:
        if taken is None:
            typer.echo("no new audit entries since the last anchor: none taken")
        else:
            typer.echo(f"anchor {taken.seq}: root {taken.root} over {taken.chain_count} chains")
        for p in progress:
            typer.echo(_progress_line(p))
    if pending:
        raise typer.Exit(1)


def _publish(anchorer: Anchorer, wait_s: float) -> list[ChainProgress]:
    """Publish steps until nothing is in flight, or ``wait_s`` passed."""
    deadline = time.monotonic() + wait_s
    landed: dict[ChainName, list[int]] = {}
    while True:
        progress = anchorer.publish()
        for p in progress:
            landed.setdefault(p.chain, []).extend(p.landed)
        if all(p.pending is None for p in progress) or time.monotonic() >= deadline:
            return [
                ChainProgress(p.chain, landed[p.chain], p.pending, p.unavailable, p.refused)
                for p in progress
            ]
        time.sleep(0.25)


def _progress_line(p: ChainProgress) -> str:
    landed = ", ".join(str(s) for s in p.landed) or "none"
    line = f"  {p.chain.value}: landed now: {landed}"
    if p.pending is not None:
        line += f"; anchor {p.pending} on its way"
        if p.unavailable:
            line += f" (ledger unavailable: {p.unavailable})"
        if p.refused:
            line += f" (last signature {p.refused}; signed again on the next run)"
    return line


def _progress_json(taken: int | None, progress: list[ChainProgress]) -> dict[str, Any]:
    return {
        "taken": taken,
        "chains": {
            p.chain.value: {
                "landed": p.landed,
                "pending": p.pending,
                "unavailable": p.unavailable,
                "refused": p.refused,
            }
            for p in progress
        },
        "ok": all(p.pending is None for p in progress),
    }


def audit_verify_with_anchors(*, as_json: bool, ledgers: bool) -> None:
    """``settle audit verify --anchors``: every chain recomputed, then every anchor. The
    ledgers are needed only when there is something to check on them: with no anchor
    and no --ledgers, a database without ledger settings verifies."""
    engine = engine_or_exit()
    try:
        try:
            chains: Mapping[ChainName, Chain] = bootstrap.reading_chains(engine.settings)
            unconfigured = None
        except (SettingsError, AdapterError, ValueError) as exc:
            chains, unconfigured = {}, str(exc)
        if unconfigured is not None and ledgers:
            raise fail(unconfigured, 2)
        check = ledger_ref_checker(chains) if ledgers else None
        audit = engine.commitments.verify_audit(check_ledger_ref=check)
        anchors = verify_anchors(engine.db, _anchoring(chains), _anchor_accounts(engine))
    except (LedgerError, SettlementError) as exc:
        raise fail(str(exc)) from exc
    finally:
        engine.close()
    if unconfigured is not None and anchors.anchors:
        raise fail(f"the anchors cannot be checked on their ledgers: {unconfigured}", 2)
    _echo_verify(audit, anchors, as_json=as_json)


def _echo_verify(audit: VerifyReport, anchors: AnchorReport, *, as_json: bool) -> None:
    report = {
        "ok": audit.ok and anchors.ok,
        "audit": audit.as_dict(),
        "anchors": anchors.as_dict(),
    }
    echo_anchor_verify(report, as_json=as_json)


def anchor_verify_of_api(answer: Mapping[str, Any]) -> dict[str, Any]:
    """The API's ``audit/verify?anchors=true`` answer in the shape ``--json`` writes on
    the database host: ``ok``, the chains' report under ``audit``, ``anchors``."""
    audit = {name: answer[name] for name in ("chains", "entries", "ledger_refs_checked")}
    audit = {"ok": not answer["breaks"], **audit, "breaks": answer["breaks"]}
    return {"ok": answer["ok"], "audit": audit, "anchors": answer["anchors"]}


def echo_anchor_verify(report: Mapping[str, Any], *, as_json: bool) -> None:
    """Print a verification with anchors (as JSON, or as lines naming the first broken
    chain and the first anchor that no longer matches); exit 1 unless it is ok."""
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        audit = report["audit"]
        if audit["ok"]:
            typer.echo(f"ok: {audit['chains']} chains, {audit['entries']} entries verified")
        else:
            typer.echo(f"BROKEN: {len(audit['breaks'])} of {audit['chains']} chains")
            for b in audit["breaks"]:
                where = f"entry {b['seq']}" if b.get("seq") is not None else "chain"
                typer.echo(f"  commitment {b['commitment_id']} {where}: {b['problem']}")
        for line in _anchor_lines(report["anchors"]):
            typer.echo(line)
    if not report["ok"]:
        raise typer.Exit(1)


def _anchor_lines(report: Mapping[str, Any]) -> list[str]:
    first = report["first_mismatch"]
    lines = []
    if report["ok"]:
        lines.append(f"ok: {report['anchors']} anchors recomputed and matched")
    elif first is not None:
        lines.append(f"ANCHOR MISMATCH: first at anchor {first['seq']} (root {first['root']})")
    elif report["unlisted"]:
        lines.append("ANCHOR MISMATCH: the ledgers carry anchors the database does not list")
    else:
        lines.append("ANCHOR CHAIN BROKEN")
    lines.extend(
        f"  anchor chain: anchor {p['seq']}: {p['problem']}"
        for p in report["anchor_chain_problems"]
    )
    for check in report["checks"]:
        lines.extend(f"  anchor {check['seq']}: {p}" for p in check["problems"])
    lines.extend(f"  not in the database: {problem}" for problem in report["unlisted"])
    if report["unconfirmed"]:
        seqs = ", ".join(str(s) for s in report["unconfirmed"])
        lines.append(f"not confirmed on any ledger yet: anchor {seqs}")
    return lines


def audit_proof(
    commitment_id: UUID,
    out: Annotated[Path | None, typer.Option("--out", help="Write the proof to this file.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Write the self-contained proof of one commitment's audit chain: its entries, the
    Merkle path to the latest anchored root covering it, and the ledger transactions that
    carry that root. Check it with `python -m ledger.proof_verifier FILE --xrpl URL
    --horizon URL`.

    Without --out the proof is printed (as with --json). Exit codes: 0 written; 1 no
    anchor published on a ledger covers the commitment yet.
    """
    engine = engine_or_exit()
    try:
        proof = proof_of_commitment(engine.db, commitment_id)
    except AnchorNotFound as exc:
        raise fail(f"{exc}: run `settle audit anchor` first") from exc
    except (LedgerError, SettlementError) as exc:
        raise fail(str(exc)) from exc
    finally:
        engine.close()
    text = json.dumps(proof, indent=2)
    if out is None or as_json:
        typer.echo(text)
    if out is not None:
        out.write_text(text + "\n", encoding="utf-8")
        if not as_json:
            chains = ", ".join(ref["chain"] for ref in proof["ledgers"])
            typer.echo(
                f"proof of commitment {commitment_id}: {len(proof['entries'])} entries, "
                f"anchor {proof['anchor']['seq']}, root {proof['root']} on {chains}: {out}"
            )
