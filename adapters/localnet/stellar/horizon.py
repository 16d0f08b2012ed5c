"""Horizon resources: the JSON documents the node serves, shaped as Horizon's.

Field names and string encodings follow github.com/stellar/go protocols/horizon:
amounts are 7-decimal strings, int64 values (sequence, fees) are strings, times are
RFC 3339 in UTC, collections are HAL pages with `_links` and `_embedded.records`.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlencode

from stellar_sdk import xdr as x

from adapters.localnet.stellar.amounts import format_stroops
from adapters.localnet.stellar.horizon_format import predicate_json, timestamp
from adapters.localnet.stellar.ledger import PROTOCOL_VERSION, LocalLedger
from adapters.localnet.stellar.state import (
    AUTH_CLAWBACK_ENABLED_FLAG,
    AUTH_IMMUTABLE_FLAG,
    AUTH_REQUIRED_FLAG,
    AUTH_REVOCABLE_FLAG,
    CLAIMABLE_BALANCE_CLAWBACK_ENABLED_FLAG,
    TRUSTLINE_AUTHORIZED_FLAG,
    TRUSTLINE_AUTHORIZED_TO_MAINTAIN_LIABILITIES_FLAG,
    TRUSTLINE_CLAWBACK_ENABLED_FLAG,
    Account,
    ClaimableBalance,
    LedgerRecord,
    TrustLine,
    TxRecord,
    toid,
)
from adapters.localnet.stellar.xdrutil import asset_canonical, signer_type_name

Json = dict[str, Any]
T = TypeVar("T")
HORIZON_VERSION = "localnet-stellar (Horizon API shape 23)"
CORE_VERSION = "localnet-stellar (in-process, stellar-core semantics)"
DEFAULT_LIMIT = 10
MAX_LIMIT = 200


class QueryError(ValueError):
    """A bad query parameter; rendered as Horizon's bad_request with invalid_field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def link(base_url: str, path: str, *, templated: bool = False) -> Json:
    doc: Json = {"href": base_url + path}
    if templated:
        doc["templated"] = True
    return doc


def root(base_url: str, ledger: LocalLedger) -> Json:
    lcl = ledger.last_closed
    paged = "{?cursor,limit,order}"
    return {
        "_links": {
            "account": link(base_url, "/accounts/{account_id}", templated=True),
            "accounts": link(
                base_url,
                "/accounts{?signer,sponsor,asset,liquidity_pool,cursor,limit,order}",
                templated=True,
            ),
            "account_transactions": link(
                base_url, "/accounts/{account_id}/transactions" + paged, templated=True
            ),
            "claimable_balances": link(
                base_url,
                "/claimable_balances{?asset,sponsor,claimant,cursor,limit,order}",
                templated=True,
            ),
            "fee_stats": link(base_url, "/fee_stats"),
            "friendbot": link(base_url, "/friendbot{?addr}", templated=True),
            "ledger": link(base_url, "/ledgers/{sequence}", templated=True),
            "ledgers": link(base_url, "/ledgers" + paged, templated=True),
            "operation": link(base_url, "/operations/{id}", templated=True),
            "operations": link(
                base_url, "/operations{?cursor,limit,order,include_failed}", templated=True
            ),
            "payments": link(
                base_url, "/payments{?cursor,limit,order,include_failed}", templated=True
            ),
            "self": link(base_url, "/"),
            "transaction": link(base_url, "/transactions/{hash}", templated=True),
            "transactions": link(base_url, "/transactions" + paged, templated=True),
        },
        "horizon_version": HORIZON_VERSION,
        "core_version": CORE_VERSION,
        "ingest_latest_ledger": lcl.sequence,
        "history_latest_ledger": lcl.sequence,
        "history_latest_ledger_closed_at": timestamp(lcl.closed_at),
        "history_elder_ledger": 1,
        "core_latest_ledger": lcl.sequence,
        "network_passphrase": ledger.passphrase,
        "current_protocol_version": PROTOCOL_VERSION,
        "supported_protocol_version": PROTOCOL_VERSION,
        "core_supported_protocol_version": PROTOCOL_VERSION,
    }


def account(base_url: str, ledger: LocalLedger, account_id: str) -> Json | None:
    """Horizon's account resource, or None for an account the ledger does not hold."""
    entry = ledger.entries.accounts.get(account_id)
    if entry is None:
        return None
    data = {
        name: base64.b64encode(d.value).decode()
        for (owner, name), d in sorted(ledger.entries.data.items())
        if owner == account_id
    }
    last_modified = ledger.ledgers[entry.last_modified_ledger - 1]
    doc: Json = {
        "_links": _account_links(base_url, account_id),
        "id": account_id,
        "account_id": account_id,
        "sequence": str(entry.seq_num),
        "subentry_count": entry.num_subentries,
        "last_modified_ledger": entry.last_modified_ledger,
        "last_modified_time": timestamp(last_modified.closed_at),
        "thresholds": {
            "low_threshold": entry.low_threshold,
            "med_threshold": entry.med_threshold,
            "high_threshold": entry.high_threshold,
        },
        "flags": {
            "auth_required": bool(entry.flags & AUTH_REQUIRED_FLAG),
            "auth_revocable": bool(entry.flags & AUTH_REVOCABLE_FLAG),
            "auth_immutable": bool(entry.flags & AUTH_IMMUTABLE_FLAG),
            "auth_clawback_enabled": bool(entry.flags & AUTH_CLAWBACK_ENABLED_FLAG),
        },
        "balances": _account_balances(ledger, account_id, entry),
        "signers": _account_signers(account_id, entry),
        "data": data,
        "num_sponsoring": entry.num_sponsoring,
        "num_sponsored": entry.num_sponsored,
        "paging_token": account_id,
    }
    if entry.seq_ledger:
        doc["sequence_ledger"] = entry.seq_ledger
        doc["sequence_time"] = str(entry.seq_time)
    if entry.home_domain:
        doc["home_domain"] = entry.home_domain
    return doc


def _account_links(base_url: str, account_id: str) -> Json:
    def paged(kind: str) -> Json:
        path = f"/accounts/{account_id}/{kind}{{?cursor,limit,order}}"
        return link(base_url, path, templated=True)

    return {
        "self": link(base_url, f"/accounts/{account_id}"),
        "transactions": paged("transactions"),
        "operations": paged("operations"),
        "payments": paged("payments"),
        "effects": paged("effects"),
        "offers": paged("offers"),
        "trades": paged("trades"),
        "data": link(base_url, f"/accounts/{account_id}/data/{{key}}", templated=True),
    }


def _account_balances(ledger: LocalLedger, account_id: str, entry: Account) -> list[Json]:
    """The account's trustlines by asset code and issuer, then its lumens (Horizon's order)."""
    lines = sorted(
        (line for (owner, _), line in ledger.entries.trustlines.items() if owner == account_id),
        key=lambda line: (line.asset.code, line.asset.issuer),
    )
    native: Json = {
        "balance": format_stroops(entry.balance),
        "buying_liabilities": format_stroops(0),
        "selling_liabilities": format_stroops(0),
        "asset_type": "native",
    }
    return [*(_trustline_balance(line) for line in lines), native]


def _trustline_balance(line: TrustLine) -> Json:
    maintain = TRUSTLINE_AUTHORIZED_FLAG | TRUSTLINE_AUTHORIZED_TO_MAINTAIN_LIABILITIES_FLAG
    return {
        "balance": format_stroops(line.balance),
        "limit": format_stroops(line.limit),
        "buying_liabilities": format_stroops(0),
        "selling_liabilities": format_stroops(0),
        "last_modified_ledger": line.last_modified_ledger,
        "is_authorized": bool(line.flags & TRUSTLINE_AUTHORIZED_FLAG),
        "is_authorized_to_maintain_liabilities": bool(line.flags & maintain),
        "is_clawback_enabled": bool(line.flags & TRUSTLINE_CLAWBACK_ENABLED_FLAG),
        "asset_type": line.asset.asset_type,
        "asset_code": line.asset.code,
        "asset_issuer": line.asset.issuer,
    }


def _account_signers(account_id: str, entry: Account) -> list[Json]:
    signers = [
        {"weight": s.weight, "key": s.key, "type": signer_type_name(s.key)} for s in entry.signers
    ]
    # Horizon lists the master key last, with its weight even when that is zero.
    signers.append({"weight": entry.master_weight, "key": account_id, "type": "ed25519_public_key"})
    return signers


def _tx_envelope(envelope: x.TransactionEnvelope) -> x.TransactionEnvelope:
    """The envelope of the transaction itself: a fee bump's inner one, as a v1 envelope."""
    if envelope.fee_bump is not None:
        inner = envelope.fee_bump.tx.inner_tx.v1
        return x.TransactionEnvelope(x.EnvelopeType.ENVELOPE_TYPE_TX, v1=inner)
    return envelope


def _signatures(envelope: x.TransactionEnvelope) -> list[str]:
    held = envelope.v1 or envelope.v0 or envelope.fee_bump
    assert held is not None
    return [base64.b64encode(s.signature.signature).decode() for s in held.signatures]


def _memo_fields(envelope: x.TransactionEnvelope) -> Json:
    """Horizon's memo fields of the transaction itself (`_tx_envelope`'s)."""
    memo = envelope.v1.tx.memo if envelope.v1 is not None else envelope.v0.tx.memo  # type: ignore[union-attr]
    kind = memo.type
    if kind == x.MemoType.MEMO_NONE:
        return {"memo_type": "none"}
    if kind == x.MemoType.MEMO_TEXT:
        assert memo.text is not None
        return {
            "memo_type": "text",
            "memo": memo.text.decode("utf-8", errors="replace"),
            "memo_bytes": base64.b64encode(memo.text).decode(),
        }
    if kind == x.MemoType.MEMO_ID:
        assert memo.id is not None
        return {"memo_type": "id", "memo": str(memo.id.uint64)}
    raw = memo.hash if kind == x.MemoType.MEMO_HASH else memo.ret_hash
    assert raw is not None
    name = "hash" if kind == x.MemoType.MEMO_HASH else "return"
    return {"memo_type": name, "memo": base64.b64encode(raw.hash).decode()}


def _preconditions(envelope: x.TransactionEnvelope) -> Json | None:
    """Horizon's preconditions of the transaction itself (`_tx_envelope`'s)."""
    if envelope.v0 is not None:
        bounds = envelope.v0.tx.time_bounds
        v2 = None
    else:
        assert envelope.v1 is not None
        cond = envelope.v1.tx.cond
        v2 = cond.v2
        bounds = cond.time_bounds if v2 is None else v2.time_bounds
    doc: Json = {}
    if bounds is not None:
        timebounds: Json = {"min_time": str(bounds.min_time.time_point.uint64)}
        if bounds.max_time.time_point.uint64:
            timebounds["max_time"] = str(bounds.max_time.time_point.uint64)
        doc["timebounds"] = timebounds
    if v2 is not None and v2.ledger_bounds is not None:
        ledgerbounds: Json = {"min_ledger": v2.ledger_bounds.min_ledger.uint32}
        if v2.ledger_bounds.max_ledger.uint32:
            ledgerbounds["max_ledger"] = v2.ledger_bounds.max_ledger.uint32
        doc["ledgerbounds"] = ledgerbounds
    if v2 is not None and v2.min_seq_num is not None:
        doc["min_account_sequence"] = str(v2.min_seq_num.sequence_number.int64)
    return doc or None


def transaction(base_url: str, tx: TxRecord, requested_hash: str | None = None) -> Json:
    """A transaction resource. A fee bump asked for by its inner hash is shown under
    that hash with the inner signatures (Horizon's PopulateTransaction)."""
    envelope = x.TransactionEnvelope.from_xdr(tx.envelope_xdr)
    own = _tx_envelope(envelope)  # decoded once: every field below reads it
    signatures = _signatures(envelope)
    shown_hash = requested_hash or tx.hash
    doc: Json = {
        "_links": {
            "self": link(base_url, f"/transactions/{shown_hash}"),
            "account": link(base_url, f"/accounts/{tx.source_account}"),
            "ledger": link(base_url, f"/ledgers/{tx.ledger}"),
            "operations": link(
                base_url,
                f"/transactions/{shown_hash}/operations{{?cursor,limit,order}}",
                templated=True,
            ),
            "effects": link(
                base_url,
                f"/transactions/{shown_hash}/effects{{?cursor,limit,order}}",
                templated=True,
            ),
            "precedes": link(base_url, f"/transactions?order=asc&cursor={tx.paging_token}"),
            "succeeds": link(base_url, f"/transactions?order=desc&cursor={tx.paging_token}"),
            "transaction": link(base_url, f"/transactions/{shown_hash}"),
        },
        "id": shown_hash,
        "paging_token": tx.paging_token,
        "successful": tx.successful,
        "hash": shown_hash,
        "ledger": tx.ledger,
        "created_at": timestamp(tx.closed_at),
        "source_account": tx.source_account,
        "source_account_sequence": str(tx.source_account_sequence),
        "fee_account": tx.fee_account,
        "fee_charged": str(tx.fee_charged),
        "max_fee": str(tx.max_fee),
        "operation_count": tx.operation_count,
        "envelope_xdr": tx.envelope_xdr,
        "result_xdr": tx.result_xdr,
        "result_meta_xdr": tx.result_meta_xdr,
        "fee_meta_xdr": tx.fee_meta_xdr,
        "signatures": signatures,
        **_memo_fields(own),
    }
    if tx.inner_hash:
        inner = own
        assert inner.v1 is not None
        doc["fee_bump_transaction"] = {"hash": tx.hash, "signatures": signatures}
        doc["inner_transaction"] = {
            "hash": tx.inner_hash,
            "signatures": _signatures(inner),
            "max_fee": str(inner.v1.tx.fee.uint32),
        }
        if shown_hash != tx.hash:
            doc["signatures"] = doc["inner_transaction"]["signatures"]
    preconditions = _preconditions(own)
    if preconditions is not None:
        doc["preconditions"] = preconditions
    return doc


def ledger_resource(base_url: str, record: LedgerRecord) -> Json:
    doc: Json = {
        "_links": {
            "self": link(base_url, f"/ledgers/{record.sequence}"),
            "transactions": link(
                base_url,
                f"/ledgers/{record.sequence}/transactions{{?cursor,limit,order}}",
                templated=True,
            ),
            "operations": link(
                base_url,
                f"/ledgers/{record.sequence}/operations{{?cursor,limit,order}}",
                templated=True,
            ),
            "payments": link(
                base_url,
                f"/ledgers/{record.sequence}/payments{{?cursor,limit,order}}",
                templated=True,
            ),
            "effects": link(
                base_url,
                f"/ledgers/{record.sequence}/effects{{?cursor,limit,order}}",
                templated=True,
            ),
        },
        "id": record.hash,
        "paging_token": str(toid(record.sequence, 0, 0)),
        "hash": record.hash,
        "sequence": record.sequence,
        "successful_transaction_count": record.successful_transaction_count,
        "failed_transaction_count": record.failed_transaction_count,
        "operation_count": record.operation_count,
        "tx_set_operation_count": record.tx_set_operation_count,
        "closed_at": timestamp(record.closed_at),
        "total_coins": format_stroops(record.total_coins),
        "fee_pool": format_stroops(record.fee_pool),
        "base_fee_in_stroops": record.base_fee,
        "base_reserve_in_stroops": record.base_reserve,
        "max_tx_set_size": record.max_tx_set_size,
        "protocol_version": record.protocol_version,
        "header_xdr": record.header_xdr,
    }
    if record.sequence > 1:
        doc["prev_hash"] = record.prev_hash
    return doc


def claimable_balance(base_url: str, ledger: LocalLedger, cb: ClaimableBalance) -> Json:
    modified = ledger.ledgers[cb.last_modified_ledger - 1]
    path = f"/claimable_balances/{cb.balance_id}"
    return {
        "_links": {
            "self": link(base_url, path),
            "transactions": link(
                base_url, path + "/transactions{?cursor,limit,order}", templated=True
            ),
            "operations": link(base_url, path + "/operations{?cursor,limit,order}", templated=True),
        },
        "id": cb.balance_id,
        "asset": asset_canonical(cb.asset),
        "amount": format_stroops(cb.amount),
        "sponsor": cb.sponsor,
        "last_modified_ledger": cb.last_modified_ledger,
        "last_modified_time": timestamp(modified.closed_at),
        "claimants": [
            {
                "destination": c.destination,
                "predicate": predicate_json(x.ClaimPredicate.from_xdr(c.predicate_xdr)),
            }
            for c in cb.claimants
        ],
        "flags": {"clawback_enabled": bool(cb.flags & CLAIMABLE_BALANCE_CLAWBACK_ENABLED_FLAG)},
        "paging_token": f"{cb.last_modified_ledger}-{cb.balance_id}",
    }


def fee_stats(ledger: LocalLedger) -> Json:
    """Fee statistics over the last ledgers' transactions (Horizon uses the last 5)."""
    recent = {r.sequence for r in ledger.ledgers[-5:]}
    charged: list[int] = []
    max_fee: list[int] = []
    for tx_hash in reversed(ledger.tx_hashes):
        tx = ledger.transactions[tx_hash]
        if tx.ledger not in recent:
            break
        # A fee bump's bid covers one more operation (Horizon divides by ops + 1).
        per_op = max(1, tx.operation_count + (1 if tx.inner_hash else 0))
        charged.append(tx.fee_charged // per_op)
        max_fee.append(tx.max_fee // per_op)
    # Horizon: the last ledger's operations in its tx set over the ledger's capacity.
    lcl = ledger.last_closed
    usage = Decimal(lcl.tx_set_operation_count) / lcl.max_tx_set_size
    return {
        "last_ledger": str(ledger.last_closed.sequence),
        "last_ledger_base_fee": str(ledger.base_fee),
        "ledger_capacity_usage": f"{min(Decimal(1), usage):.2f}",
        "fee_charged": _distribution(charged, ledger.base_fee),
        "max_fee": _distribution(max_fee, ledger.base_fee),
    }


def _distribution(values: list[int], floor: int) -> Json:
    ordered = sorted(values) or [floor]

    def percentile(p: int) -> str:
        index = max(0, -(-p * len(ordered) // 100) - 1)  # nearest-rank
        return str(ordered[min(index, len(ordered) - 1)])

    mode = max(set(ordered), key=ordered.count)
    doc: Json = {"max": str(ordered[-1]), "min": str(ordered[0]), "mode": str(mode)}
    for p in (10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99):
        doc[f"p{p}"] = percentile(p)
    return doc


# -- paging ------------------------------------------------------------------------


ACCOUNT_ID_REASON = "Account ID must start with `G` and contain 56 alphanum characters"
TX_HASH_REASON = "Transaction hash must be a hex-encoded, lowercase SHA-256 hash"
LEDGER_ID_REASON = "Ledger ID must be an integer higher than 0"
OP_ID_REASON = "Operation ID must be an integer higher than 0"
BALANCE_ID_REASON = (
    "Claimable Balance ID must be the hex-encoded XDR representation of a Claimable Balance ID"
)


def page_params(query: dict[str, str]) -> tuple[str, int, bool]:
    """Parse cursor, limit and order as Horizon does (actions/helpers.go getCursor,
    getLimit; db2 NewPageQuery), with its reasons; raises QueryError."""
    cursor = query.get("cursor", "")
    if cursor.lstrip("-").isdigit() and int(cursor) < 0:
        raise QueryError("cursor", f"the cursor {int(cursor)} is a negative number: ")
    raw_limit = query.get("limit", "")
    if raw_limit == "":
        limit = DEFAULT_LIMIT
    else:
        try:
            limit = int(raw_limit)
        except ValueError:
            raise QueryError("limit", "unparseable value") from None
        if limit <= 0:
            raise QueryError("limit", "invalid limit: non-positive value provided")
        if limit > MAX_LIMIT:
            raise QueryError(
                "limit", f"invalid limit: value provided that is over limit max of {MAX_LIMIT}"
            )
    order = query.get("order", "") or "asc"
    if order not in ("asc", "desc"):
        raise QueryError("order", "order: invalid value")
    return cursor, limit, order == "desc"


def page(
    base_url: str,
    path: str,
    query: dict[str, str],
    items: Sequence[T],
    *,
    sort_key: Callable[[T], Any],
    cursor_key: Callable[[str], Any],
    render: Callable[[T], Json],
    token: Callable[[T], str],
) -> Json:
    """One HAL page of `items`, ordered by `sort_key`, after the position `cursor_key(cursor)`."""
    cursor, limit, descending = page_params(query)
    ordered = sorted(items, key=sort_key, reverse=descending)
    if cursor and cursor != "now":
        try:
            position = cursor_key(cursor)
        except (ValueError, IndexError):
            raise QueryError("cursor", "cursor: invalid value") from None
        ordered = [
            item
            for item in ordered
            if (sort_key(item) < position if descending else sort_key(item) > position)
        ]
    elif cursor == "now":
        ordered = [] if not descending else ordered
    chosen = ordered[:limit]
    records = [render(item) for item in chosen]
    extra = {k: v for k, v in query.items() if k not in ("cursor", "limit", "order")}
    order = "desc" if descending else "asc"
    reverse = "asc" if descending else "desc"

    def href(cur: str, direction: str) -> Json:
        params = {**extra, "cursor": cur, "limit": str(limit), "order": direction}
        return {"href": f"{base_url}{path}?{urlencode(params)}"}

    next_cursor = token(chosen[-1]) if chosen else cursor
    prev_cursor = token(chosen[0]) if chosen else cursor
    return {
        "_links": {
            "self": href(cursor, order),
            "next": href(next_cursor, order),
            "prev": href(prev_cursor, reverse),
        },
        "_embedded": {"records": records},
    }
