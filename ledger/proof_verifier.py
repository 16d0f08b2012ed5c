"""Check an audit proof against its entries and a public ledger server, without the engine.

Run it alone (it imports nothing but the Python standard library)::

    python -m ledger.proof_verifier PROOF.json [--xrpl URL] [--horizon URL] [--offline]

Exit status: 0 the proof holds (and was confirmed on every ledger given); 1 it does not
(the message names what failed); 2 the file is not a proof this verifier reads.

The proof (``settle audit proof COMMITMENT``) is a JSON object::

    {"version": 1, "kind": "settlement-audit-proof", "commitment_id": "<uuid>",
     "entries": [<entry>, ...], "head": {"seq": n, "entry_hash": "<hex>"},
     "path": [["L" | "R", "<hex>"], ...], "root": "<hex>",
     "anchor": {"seq": k, "cutoff": "<time>"},
     "ledgers": [{"chain": "xrpl" | "stellar", "account": "...", "tx_hash": "...",
                  "ledger_index": n, "ledger_hash": "..."}, ...]}

An entry holds the audit log's columns: commitment_id, seq, recorded_at (UTC,
``YYYY-MM-DDTHH:MM:SS.ffffffZ``), actor, key_id, action, from_state, to_state,
commitment_version, idempotency_key, payload (canonical JSON text), chain, tx_hash,
ledger_index, ledger_hash, prev_hash, entry_hash, encoding_version (1 or 2).

The algorithm, enough to write it again in another language:

1. Entries. ``field(None) = "~,"``; ``field(v) = len(b) ":" b ","`` with ``b`` the UTF-8
   bytes of the text of ``v`` (integers in decimal). The bytes of an entry are
   ``"settlement-audit/v<version>\\n"`` followed by the fields commitment_id, seq,
   recorded_at, actor, [key_id: version 2 only], action, from_state, to_state,
   commitment_version, idempotency_key, payload, chain, tx_hash, ledger_index,
   ledger_hash, prev_hash; ``entry_hash`` is the lowercase hex SHA-256 of them. The
   entries are seq 1, 2, ... n; the first has no prev_hash, each next one's prev_hash is
   the entry_hash before it; a version 1 entry names no key_id; versions never go down.
2. Head. ``head`` is the last entry (seq n, its entry_hash). Its bytes are
   ``"settlement-anchor-head/v1\\n" + field(commitment_id) + field(n) + field(entry_hash)``.
3. Merkle path. ``leaf = SHA-256(0x00 || head bytes)``; for each step ``[side, h]`` of
   ``path`` in order: ``"L"``: ``x = SHA-256(0x01 || h || x)``, ``"R"``:
   ``x = SHA-256(0x01 || x || h)``. The result must equal ``root`` (32 bytes, hex).
   The tree has a leaf per commitment chain, in commitment id order (the 16 bytes of
   the UUID), and, in anchors taken since the compliance chain is covered, one more
   leaf after them for that chain, ``SHA-256(0x00 || compliance head bytes)`` with
   ``"settlement-anchor-compliance-head/v1\\n" + field(seq) + field(entry_hash)`` (seq 0
   and ``""`` while that chain is empty). On a level with an odd count the last hash is
   carried up unpaired (no step). A commitment's path may hold the compliance leaf, or a
   node above it, as a sibling hash like any other: checking a proof needs nothing more
   about it.
4. Ledgers. XRP Ledger (JSON-RPC ``tx``): validated, result ``tesSUCCESS``, an
   ``AccountSet`` whose Memos hold one with MemoType = hex of ``settlement/anchor-v1``
   and MemoData = the root, in ledger ``ledger_index`` whose hash is ``ledger_hash``.
   Stellar (Horizon ``/transactions/<hash>``): successful, ``memo_type`` ``hash`` whose
   base64 ``memo`` is the root, in ledger ``ledger_index`` (``/ledgers/<n>`` has hash
   ``ledger_hash``). Horizon serves only closed ledgers, which are final on Stellar.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

PROOF_VERSION = 1
PROOF_KIND = "settlement-audit-proof"
ANCHOR_MEMO_TYPE = "settlement/anchor-v1"
HEAD_TAG = b"settlement-anchor-head/v1\n"
ENTRY_TAGS = {1: b"settlement-audit/v1\n", 2: b"settlement-audit/v2\n"}
TIMEOUT_S = 20

_ENTRY_FIELDS = (
    "commitment_id",
    "seq",
    "recorded_at",
    "actor",
    "key_id",
    "action",
    "from_state",
    "to_state",
    "commitment_version",
    "idempotency_key",
    "payload",
    "chain",
    "tx_hash",
    "ledger_index",
    "ledger_hash",
    "prev_hash",
)
_INT_FIELDS = ("seq", "commitment_version", "ledger_index")


class ProofFormatError(Exception):
    """The file is not a proof this verifier reads (exit status 2)."""


class ProofFailed(Exception):
    """The proof does not hold (exit status 1)."""


#: fetches a URL (GET, or POST of a JSON body): the parsed JSON answer
Fetch = Callable[[str, "dict[str, Any] | None"], Any]


def field(value: str | int | None) -> bytes:
    if value is None:
        return b"~,"
    encoded = str(value).encode("utf-8")
    return str(len(encoded)).encode("ascii") + b":" + encoded + b","


def entry_hash(entry: dict[str, Any]) -> str:
    version = entry["encoding_version"]
    names = [n for n in _ENTRY_FIELDS if n != "key_id" or version >= 2]
    data = ENTRY_TAGS[version] + b"".join(field(entry[n]) for n in names)
    return hashlib.sha256(data).hexdigest()


def head_leaf(commitment_id: str, seq: int, last_hash: str) -> bytes:
    data = HEAD_TAG + field(commitment_id) + field(seq) + field(last_hash)
    return hashlib.sha256(b"\x00" + data).digest()


def fold(leaf: bytes, path: Sequence[tuple[str, bytes]]) -> bytes:
    current = leaf
    for side, sibling in path:
        pair = sibling + current if side == "L" else current + sibling
        current = hashlib.sha256(b"\x01" + pair).digest()
    return current


# --- reading the file ----------------------------------------------------------------


def load(text: str) -> dict[str, Any]:
    """The proof in ``text``, its shape checked; ``ProofFormatError`` otherwise."""
    try:
        proof = json.loads(text)
    except ValueError as exc:
        raise ProofFormatError(f"not JSON (truncated or damaged?): {exc}") from exc
    if not isinstance(proof, dict):
        raise ProofFormatError("not a proof: the top level is not a JSON object")
    if proof.get("kind") != PROOF_KIND:
        raise ProofFormatError(f"not a proof: kind is {proof.get('kind')!r}, not {PROOF_KIND!r}")
    if proof.get("version") != PROOF_VERSION:
        raise ProofFormatError(
            f"proof version {proof.get('version')!r}: this verifier reads version {PROOF_VERSION}"
        )
    _require(proof, "commitment_id", str)
    _require(proof, "root", str)
    for name in ("entries", "path", "ledgers"):
        _require(proof, name, list)
    for name in ("head", "anchor"):
        _require(proof, name, dict)
    _require(proof["head"], "seq", int, "head")
    _require(proof["head"], "entry_hash", str, "head")
    for index, entry in enumerate(proof["entries"]):
        _check_entry(entry, f"entries[{index}]")
    for index, step in enumerate(proof["path"]):
        if not (isinstance(step, list) and len(step) == 2 and step[0] in ("L", "R")):
            raise ProofFormatError(f'path[{index}] is not ["L" or "R", hex]')
        _hex32(step[1], f"path[{index}]")
    _hex32(proof["root"], "root")
    for index, ref in enumerate(proof["ledgers"]):
        where = f"ledgers[{index}]"
        if not isinstance(ref, dict):
            raise ProofFormatError(f"{where} is not an object")
        for name, kind in (("chain", str), ("tx_hash", str), ("ledger_index", int)):
            _require(ref, name, kind, where)
        _require(ref, "ledger_hash", str, where)
    return proof


def _require(obj: dict[str, Any], name: str, kind: type, where: str = "proof") -> None:
    value = obj.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProofFormatError(f"{where}.{name} is missing or not a {kind.__name__}")


def _check_entry(entry: Any, where: str) -> None:
    if not isinstance(entry, dict):
        raise ProofFormatError(f"{where} is not an object")
    for name in (*_ENTRY_FIELDS, "entry_hash", "encoding_version"):
        if name not in entry:
            raise ProofFormatError(f"{where} has no {name}")
        value = entry[name]
        numeric = name in _INT_FIELDS or name == "encoding_version"
        allowed = (int,) if numeric else (str,)
        if value is None and name not in ("seq", "entry_hash", "encoding_version"):
            continue
        if not isinstance(value, allowed) or isinstance(value, bool):
            raise ProofFormatError(f"{where}.{name} is not a {allowed[0].__name__}")
    if entry["encoding_version"] not in ENTRY_TAGS:
        raise ProofFormatError(f"{where}: unknown encoding version {entry['encoding_version']}")


def _hex32(value: Any, where: str) -> bytes:
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ProofFormatError(f"{where} is not 32 bytes of hex")
    return raw


# --- checking -------------------------------------------------------------------------


def check_entries(proof: dict[str, Any]) -> None:
    """Steps 1 and 2: the chain of entries and its head; ``ProofFailed`` otherwise."""
    entries = proof["entries"]
    if not entries:
        raise ProofFailed("the proof holds no entries")
    prev_hash: str | None = None
    prior_version = 1
    for expected, entry in enumerate(entries, start=1):
        where = f"entry {entry['seq']}"
        if entry["commitment_id"] != proof["commitment_id"]:
            raise ProofFailed(f"{where} belongs to commitment {entry['commitment_id']}")
        if entry["seq"] != expected:
            raise ProofFailed(f"{where}: expected seq {expected} (an entry is missing or moved)")
        if entry["prev_hash"] != prev_hash:
            raise ProofFailed(f"{where}: prev_hash is not the previous entry's hash")
        version = entry["encoding_version"]
        if version < prior_version or (version < 2 and entry["key_id"] is not None):
            raise ProofFailed(f"{where}: encoding version {version} is not allowed here")
        if entry_hash(entry) != entry["entry_hash"]:
            raise ProofFailed(f"{where}: entry_hash does not match its contents (edited)")
        prev_hash = entry["entry_hash"]
        prior_version = version
    head = proof["head"]
    if (head["seq"], head["entry_hash"]) != (entries[-1]["seq"], prev_hash):
        raise ProofFailed("the head is not the last entry of the chain")


def check_path(proof: dict[str, Any]) -> None:
    """Step 3: the head leads to the root along the path; ``ProofFailed`` otherwise."""
    head = proof["head"]
    leaf = head_leaf(proof["commitment_id"], head["seq"], head["entry_hash"])
    path = [(side, bytes.fromhex(sibling)) for side, sibling in proof["path"]]
    reached = fold(leaf, path)
    if reached != bytes.fromhex(proof["root"]):
        raise ProofFailed(
            f"the Merkle path leads to {reached.hex()}, not to the anchored root {proof['root']}"
        )


def http_json(url: str, body: dict[str, Any] | None = None) -> Any:
    """GET ``url`` (or POST ``body`` as JSON) and parse the answer; ``ProofFailed`` when
    the server cannot be reached or answers no JSON (a 404 answers None)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - the auditor names the server
        url, data=data, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:  # noqa: S310
            return json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise ProofFailed(f"{url} answered HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ProofFailed(f"{url} could not be read: {exc}") from exc


def check_xrpl(url: str, ref: dict[str, Any], root: bytes, fetch: Fetch = http_json) -> None:
    answer = fetch(url, {"method": "tx", "params": [{"transaction": ref["tx_hash"]}]})
    result = (answer or {}).get("result", {})
    where = f"xrpl {ref['tx_hash']}"
    if result.get("error"):
        raise ProofFailed(f"{where}: the server answered {result['error']}")
    tx = result.get("tx_json", result)
    if result.get("validated") is not True:
        raise ProofFailed(f"{where}: not in a validated ledger")
    if result.get("meta", {}).get("TransactionResult") != "tesSUCCESS":
        raise ProofFailed(f"{where}: did not succeed")
    wanted = ANCHOR_MEMO_TYPE.encode().hex().upper()
    carried = [
        str(m.get("Memo", {}).get("MemoData", "")).upper()
        for m in tx.get("Memos") or []
        if str(m.get("Memo", {}).get("MemoType", "")).upper() == wanted
    ]
    if tx.get("TransactionType") != "AccountSet" or root.hex().upper() not in carried:
        raise ProofFailed(f"{where}: does not carry root {root.hex()}")
    index = int(result.get("ledger_index", 0))
    ledger_hash = result.get("ledger_hash")
    if ledger_hash is None:
        header = fetch(url, {"method": "ledger", "params": [{"ledger_index": index}]})
        ledger_hash = (header or {}).get("result", {}).get("ledger_hash")
    _same_ledger(where, index, str(ledger_hash), ref)


def check_stellar(url: str, ref: dict[str, Any], root: bytes, fetch: Fetch = http_json) -> None:
    base = url.rstrip("/")
    where = f"stellar {ref['tx_hash']}"
    tx = fetch(f"{base}/transactions/{ref['tx_hash']}", None)
    if tx is None:
        raise ProofFailed(f"{where}: Horizon does not know this transaction")
    if tx.get("successful") is not True:
        raise ProofFailed(f"{where}: did not succeed")
    try:
        memo = base64.b64decode(str(tx.get("memo", "")), validate=True)
    except (binascii.Error, ValueError):
        memo = b""
    if tx.get("memo_type") != "hash" or memo != root:
        raise ProofFailed(f"{where}: does not carry root {root.hex()} as its memo hash")
    index = int(tx.get("ledger", 0))
    header = fetch(f"{base}/ledgers/{index}", None) or {}
    _same_ledger(where, index, str(header.get("hash")), ref)


def _same_ledger(where: str, index: int, ledger_hash: str, ref: dict[str, Any]) -> None:
    if (index, ledger_hash.upper()) != (ref["ledger_index"], ref["ledger_hash"].upper()):
        raise ProofFailed(
            f"{where}: in ledger {index} {ledger_hash}, not the proof's "
            f"{ref['ledger_index']} {ref['ledger_hash']}"
        )


def verify(
    proof: dict[str, Any],
    *,
    xrpl_url: str | None = None,
    horizon_url: str | None = None,
    fetch: Fetch = http_json,
) -> list[str]:
    """Check the proof; the ledgers it was confirmed on (``chain tx_hash``). Raises
    ``ProofFailed`` with what does not hold."""
    check_entries(proof)
    check_path(proof)
    root = bytes.fromhex(proof["root"])
    confirmed = []
    for ref in proof["ledgers"]:
        try:
            if ref["chain"] == "xrpl" and xrpl_url:
                check_xrpl(xrpl_url, ref, root, fetch)
            elif ref["chain"] == "stellar" and horizon_url:
                check_stellar(horizon_url, ref, root, fetch)
            else:
                continue
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ProofFailed(
                f"{ref['chain']} {ref['tx_hash']}: unexpected answer ({exc})"
            ) from exc
        confirmed.append(f"{ref['chain']} {ref['tx_hash']}")
    return confirmed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ledger.proof_verifier",
        description="Check an audit proof against its entries and a public ledger server.",
    )
    parser.add_argument("proof", help="the proof file (settle audit proof ... --out FILE)")
    parser.add_argument("--xrpl", help="an XRP Ledger JSON-RPC URL")
    parser.add_argument("--horizon", help="a Stellar Horizon URL")
    parser.add_argument(
        "--offline", action="store_true", help="check entries and path only, no ledger"
    )
    args = parser.parse_args(argv)
    try:
        with open(args.proof, encoding="utf-8") as handle:
            proof = load(handle.read())
        confirmed = verify(proof, xrpl_url=args.xrpl, horizon_url=args.horizon)
        if not confirmed and not args.offline:
            raise ProofFailed(
                "no ledger confirmed the root: give --xrpl or --horizon for a ledger the "
                "proof names (or --offline to check only the entries and the path)"
            )
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: cannot read {args.proof}: {exc}", file=sys.stderr)
        return 2
    except ProofFormatError as exc:
        print(f"error: {args.proof}: {exc}", file=sys.stderr)
        return 2
    except ProofFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    where = ", ".join(confirmed) if confirmed else "no ledger (offline)"
    print(
        f"OK: commitment {proof['commitment_id']}, {len(proof['entries'])} entries, "
        f"root {proof['root']} (anchor {proof['anchor'].get('seq')}), confirmed on {where}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
