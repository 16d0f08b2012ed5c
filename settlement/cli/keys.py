"""`settle keys`: register, rotate, revoke and list the keys that sign API requests.

Operator commands: they act on the database directly (not through the API). The
private key is written once, to a file only its owner can read, and never stored.
Every key belongs to a person (``--person``), and what it signs is recorded as that
person's act with the key beside it; rotating a key gives the person a new one.
"""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path
from typing import Annotated

import typer

from ledger.api_keys import KeyRecord
from settlement import signing
from settlement.cli.common import JsonFlag, engine_for_command, fail
from settlement.services.keys import KEY_ROLES, KeyService, NewKey

keys_app = typer.Typer(help="API keys: Ed25519 keys that sign requests.", no_args_is_help=True)

_ROLE_HELP = "One of " + ", ".join(r.value for r in KEY_ROLES) + "."
_PERSON_HELP = (
    "Whose key it is, as the audit log will name them: a registered officer id for a"
    " compliance_officer key, a user name within --party for an allocator key"
    " (recorded as PARTY/USER), the person's name for an admin or auditor key."
)


def _operator() -> str:
    return f"operator:{getpass.getuser()}"


def _write_private(path: Path, pem: bytes) -> None:
    # O_EXCL: never overwrite an existing key file; 0600 from creation, never widened
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError as exc:
        raise fail(f"{path} exists; refusing to overwrite a key file") from exc
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    os.chmod(path, 0o600)


def _as_dict(record: KeyRecord) -> dict[str, object]:
    return {
        "key_id": record.key_id,
        "role": record.role,
        "party": record.party,
        "person": record.person,
        "public_key": record.public_key.hex(),
        "created_at": record.created_at.isoformat(),
        "created_by": record.created_by,
        "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
        "revoked_by": record.revoked_by,
    }


@keys_app.command("new")
def keys_new(
    *,
    role: Annotated[str, typer.Option("--role", help=_ROLE_HELP)],
    person: Annotated[str, typer.Option("--person", help=_PERSON_HELP)],
    party: Annotated[
        str | None, typer.Option("--party", help="Party the key acts for (allocators).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Private key file (default: KEYID.pem).")
    ] = None,
    key_id: Annotated[
        str | None, typer.Option("--key-id", help="Choose the key id (default: generated).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an Ed25519 key pair for a person, register its public key, write the
    private key (0600)."""
    if out is not None and out.exists():
        raise fail(f"{out} exists; refusing to overwrite a key file")
    with engine_for_command() as engine:
        keys = KeyService(engine.db, engine.clock)
        created = keys.create(
            role=role, party=party, person=person, created_by=_operator(), key_id=key_id
        )
    _written(created, out, as_json=as_json)


def _written(created: NewKey, out: Path | None, *, as_json: bool) -> None:
    path = out or Path(f"{created.record.key_id}.pem")
    _write_private(path, signing.private_key_pem(created.private_key))
    if as_json:
        typer.echo(json.dumps({**_as_dict(created.record), "private_key_file": str(path)}))
    else:
        typer.echo(created.record.key_id)
        typer.echo(
            f"key of {created.record.person}; private key written to {path} (mode 0600)",
            err=True,
        )


@keys_app.command("rotate")
def keys_rotate(
    key_id: Annotated[str, typer.Argument(help="The key to replace.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Private key file (default: NEWKEYID.pem).")
    ] = None,
    new_key_id: Annotated[
        str | None, typer.Option("--key-id", help="Choose the new key id (default: generated).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Give the person of KEY_ID a new key (same role and party) and revoke KEY_ID.

    What the person signed with either key is recorded under the same name."""
    if out is not None and out.exists():
        raise fail(f"{out} exists; refusing to overwrite a key file")
    with engine_for_command() as engine:
        created = KeyService(engine.db, engine.clock).rotate(
            key_id, created_by=_operator(), new_key_id=new_key_id
        )
    _written(created, out, as_json=as_json)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key to revoke.")]) -> None:
    """Revoke a key: every later request it signs is refused (401)."""
    with engine_for_command() as engine:
        changed = KeyService(engine.db, engine.clock).revoke(key_id, revoked_by=_operator())
    typer.echo(f"revoked {key_id}" if changed else f"{key_id} was already revoked")


@keys_app.command("list")
def keys_list(as_json: JsonFlag = False) -> None:
    """Every registered key, active and revoked."""
    with engine_for_command() as engine:
        records = KeyService(engine.db, engine.clock).list()
    if as_json:
        typer.echo(json.dumps([_as_dict(r) for r in records], indent=2))
        return
    if not records:
        typer.echo("no keys")
        return
    typer.echo(f"{'KEY ID':<24} {'ROLE':<20} {'PARTY':<24} {'PERSON':<32} {'CREATED':<26} STATUS")
    for r in records:
        status = f"revoked {r.revoked_at:%Y-%m-%d %H:%M}" if r.revoked_at else "active"
        typer.echo(
            f"{r.key_id:<24} {r.role:<20} {r.party or '-':<24} {r.person:<32}"
            f" {r.created_at:%Y-%m-%d %H:%M:%S%z}  {status}"
        )
