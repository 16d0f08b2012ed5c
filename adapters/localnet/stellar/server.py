"""The HTTP face of the node: Horizon's routes over http.server.

Handlers only translate: parse the request, ask the node or render a resource under
the node's read lock, and write JSON. Anything unexpected becomes a 500 problem; the
ledger is never changed here, so a bad request cannot corrupt state.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from stellar_sdk import StrKey

from adapters.localnet.stellar import effect_records, horizon, problems, sse
from adapters.localnet.stellar import operation_records as op_records
from adapters.localnet.stellar.clock import NodeClock
from adapters.localnet.stellar.faults import Faults
from adapters.localnet.stellar.horizon_format import timestamp
from adapters.localnet.stellar.ledger import LocalLedger
from adapters.localnet.stellar.replies import Reply
from adapters.localnet.stellar.state import ClaimableBalance, TxRecord, toid
from adapters.localnet.stellar.xdrutil import normalize_balance_id, parse_asset_param

MAX_BODY_BYTES = 200 * 1024  # Horizon's default max-http-request-size
log = logging.getLogger(__name__)

Route = tuple[str, re.Pattern[str], Callable[..., Reply]]


class Node(Protocol):
    """What the HTTP front asks of the node it serves (``StellarNode``, which starts it):
    the routes' work minus the HTTP, a consistent view of the ledger, faults, time."""

    faults: Faults
    clock: NodeClock
    base_url: str

    @property
    def latest_ledger(self) -> int: ...

    def read(self, ledgers_behind: int | None = None) -> AbstractContextManager[LocalLedger]:
        """A consistent view of the ledger; with ``ledgers_behind``, a lagging server's."""
        ...

    def wait_next_ledger(self, after: int, gone: Callable[[], bool]) -> int | None: ...

    def submit(self, envelope_b64: str) -> Reply: ...

    def submit_async(self, envelope_b64: str) -> Reply: ...

    def friendbot(self, address: str) -> Reply: ...

    def close_ledger(self) -> int: ...

    def advance_time(self, seconds: int) -> None: ...


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], node: Node) -> None:
        self.node = node
        super().__init__(address, _Handler)


def make_server(node: Node, host: str, port: int) -> ThreadingHTTPServer:
    """An HTTP server answering Horizon's routes from ``node``, bound, not yet serving."""
    return _Server((host, port), node)


class _Handler(BaseHTTPRequestHandler):
    # Headers and body go out in two writes; with Nagle on, a keep-alive client waits
    # for a delayed ACK (~40 ms) on every answer.
    disable_nagle_algorithm = True
    server: _Server
    _lag: int | None = None  # ledgers behind, when the lagging server answers this request
    #: the ledger the answer was read at: its Latest-Ledger header (Horizon's promise is
    #: that the data is consistent with it, so it is the view's, not a later one's)
    _answered_at: int | None = None
    protocol_version = "HTTP/1.1"
    server_version = "stellar-localnet"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    # -- dispatch ----------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        node = self.server.node
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        self._lag = self._lag_for(method, path)
        self._answered_at = None
        if node.faults.partitioned and not path.startswith("/_admin"):
            self._reset_connection()
            return
        delay_s = 0.0 if path.startswith("/_admin") else node.faults.take_delay()
        if delay_s:
            time.sleep(delay_s)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        try:
            if method == "GET" and "text/event-stream" in (self.headers.get("Accept") or ""):
                streamed = self._stream(path, query)
                if streamed is None:
                    self.close_connection = True
                    return
                reply = streamed
            else:
                reply = self._route(method, path, query)
        except horizon.QueryError as exc:
            reply = Reply.of(problems.bad_request(exc.field, exc.reason))
        except Exception:  # a bug must not kill the server thread or leak a traceback
            log.exception("error handling %s %s", method, self.path)
            reply = Reply.of(problems.server_error())
        if reply.drop:
            self._reset_connection()
            return
        self._write(reply)

    def _lag_for(self, method: str, path: str) -> int | None:
        """Which server behind the URL answers: the lagging one takes only plain reads."""
        streaming = "text/event-stream" in (self.headers.get("Accept") or "")
        if method != "GET" or streaming or path.startswith(("/_admin", "/friendbot")):
            return None
        return self.server.node.faults.take_lagging_read()

    @contextlib.contextmanager
    def _read(self) -> Iterator[LocalLedger]:
        """The ledger as the server answering this request sees it; the first view read
        is the one the Latest-Ledger header names."""
        with self.server.node.read(self._lag) as ledger:
            if self._answered_at is None:
                self._answered_at = ledger.last_closed.sequence
            yield ledger

    def _route(self, method: str, path: str, query: dict[str, str]) -> Reply:
        found = _find_route(method, path)
        if found is None:
            return Reply.of(problems.not_found())
        handler, args = found
        return handler(self, query, *args)

    # -- I/O -------------------------------------------------------------------------------

    def _write(self, reply: Reply) -> None:
        body = json.dumps(reply.body, indent=2).encode()
        is_problem = reply.status >= 400 and reply.problem
        self.send_response(reply.status)
        self.send_header(
            "Content-Type",
            "application/problem+json; charset=utf-8"
            if is_problem
            else "application/hal+json; charset=utf-8",
        )
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Latest-Ledger", str(self._latest_ledger()))
        self.end_headers()
        self.wfile.write(body)

    def _latest_ledger(self) -> int:
        if self._answered_at is not None:
            return self._answered_at
        if self._lag is None:
            return self.server.node.latest_ledger
        with self.server.node.read() as ledger:  # one number: no stale view to build
            return ledger.stale_sequence(self._lag)

    def _reset_connection(self) -> None:
        """Close with a TCP reset: what a client sees when a server is unreachable mid-way."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _read_form(self) -> dict[str, str] | Reply:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            # Horizon caps bodies; the form then reads as empty, so "tx" is malformed.
            self.close_connection = True
            return Reply.of(problems.transaction_malformed(""))
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type not in ("", "application/x-www-form-urlencoded"):
            self.rfile.read(length)
            return Reply.of(problems.unsupported_media_type())
        raw = self.rfile.read(length).decode("utf-8", errors="replace")
        return dict(parse_qsl(raw, keep_blank_values=True))

    # -- event streams ---------------------------------------------------------------------

    def _stream(self, path: str, query: dict[str, str]) -> Reply | None:
        """Serve an event stream; a Reply instead when the request is refused before
        the stream starts (Horizon renders a problem then, not an error event)."""
        found = _find_route("GET", path)
        if found is None:
            return Reply.of(problems.not_found())
        handler, args = found
        kind = STREAMABLE.get(handler)
        if kind is None:
            return Reply.of(problems.not_acceptable())
        node = self.server.node
        _, limit, _ = horizon.page_params(query)
        cursor = self.headers.get("Last-Event-ID") or query.get("cursor", "")
        if cursor == "now":
            # Horizon getCursor: toid.AfterLedger(latest), the last id the ledger could hold.
            cursor = str(toid(node.latest_ledger, TOID_TX_MASK, TOID_OP_MASK))
        latest = node.latest_ledger  # before the first look-up: nothing closed after is missed
        state: dict[str, Any] = {"cursor": cursor, "last": None}

        def look_up() -> Reply:
            return handler(self, {**query, "cursor": state["cursor"]}, *args)

        first = look_up()  # refuses a bad cursor, account id... before the preamble
        if first.status != 200:
            return first
        state["first"] = first  # the first look-up is also the first batch of events
        generate = self._page_events if kind == "page" else self._object_events
        sse.serve(
            sse.StreamWriter(self),
            limit=limit,
            generate=lambda: generate(look_up, state),
            wait_next=node.wait_next_ledger,
            latest=latest,
        )
        return None

    @staticmethod
    def _page_events(look_up: Callable[[], Reply], state: dict[str, Any]) -> sse.Events:
        reply = state.pop("first", None) or look_up()
        for record in reply.body.get("_embedded", {}).get("records", []):
            state["cursor"] = record["paging_token"]
            yield record["paging_token"], record

    @staticmethod
    def _object_events(look_up: Callable[[], Reply], state: dict[str, Any]) -> sse.Events:
        """An object stream sends the resource again only when it changed."""
        reply = state.pop("first", None) or look_up()
        if reply.status == 200 and reply.body != state["last"]:
            state["last"] = reply.body
            yield "", reply.body

    # -- handlers --------------------------------------------------------------------------

    def _submit(self, query: dict[str, str]) -> Reply:
        envelope = self._envelope()
        return envelope if isinstance(envelope, Reply) else self.server.node.submit(envelope)

    def _submit_async(self, query: dict[str, str]) -> Reply:
        envelope = self._envelope()
        return envelope if isinstance(envelope, Reply) else self.server.node.submit_async(envelope)

    def _envelope(self) -> str | Reply:
        """The form field `tx` of a submission, or the problem Horizon answers without it."""
        form = self._read_form()
        if isinstance(form, Reply):
            return form
        envelope = form.get("tx", "")
        if not envelope:
            return Reply.of(problems.transaction_malformed(""))
        return envelope

    def _root(self, query: dict[str, str]) -> Reply:
        with self._read() as ledger:
            return Reply(200, horizon.root(self._base, ledger))

    @property
    def _base(self) -> str:
        host = self.headers.get("Host")
        return f"http://{host}" if host else self.server.node.base_url

    def _account(self, query: dict[str, str], account_id: str) -> Reply:
        _check_account_id(account_id)
        with self._read() as ledger:
            doc = horizon.account(self._base, ledger, account_id)
        return Reply(200, doc) if doc is not None else Reply.of(problems.not_found())

    def _account_data(self, query: dict[str, str], account_id: str, key: str) -> Reply:
        from urllib.parse import unquote

        _check_account_id(account_id)
        with self._read() as ledger:
            entry = ledger.entries.data.get((account_id, unquote(key)))
        if entry is None:
            return Reply.of(problems.not_found())
        import base64

        return Reply(200, {"value": base64.b64encode(entry.value).decode()})

    def _tx_page(
        self, ledger: LocalLedger, path: str, query: dict[str, str], txs: list[TxRecord]
    ) -> Reply:
        return Reply(
            200,
            horizon.page(
                self._base,
                path,
                query,
                txs,
                sort_key=lambda t: toid(t.ledger, t.application_order, 0),
                cursor_key=int,
                render=lambda t: horizon.transaction(self._base, t),
                token=lambda t: t.paging_token,
            ),
        )

    def _account_transactions(self, query: dict[str, str], account_id: str) -> Reply:
        _check_account_id(account_id)
        with self._read() as ledger:
            txs = [
                t
                for h in ledger.tx_hashes
                if account_id in (t := ledger.transactions[h]).participants
            ]
            if query.get("include_failed", "false") != "true":
                txs = [t for t in txs if t.successful]
            return self._tx_page(ledger, f"/accounts/{account_id}/transactions", query, txs)

    def _transactions(self, query: dict[str, str]) -> Reply:
        with self._read() as ledger:
            txs = [ledger.transactions[h] for h in ledger.tx_hashes]
            if query.get("include_failed", "false") != "true":
                txs = [t for t in txs if t.successful]
            return self._tx_page(ledger, "/transactions", query, txs)

    def _ledger_transactions(self, query: dict[str, str], sequence: str) -> Reply:
        seq = _ledger_id(sequence)
        with self._read() as ledger:
            txs = [t for h in ledger.tx_hashes if (t := ledger.transactions[h]).ledger == seq]
            if query.get("include_failed", "false") != "true":
                txs = [t for t in txs if t.successful]
            return self._tx_page(ledger, f"/ledgers/{seq}/transactions", query, txs)

    def _transaction(self, query: dict[str, str], tx_hash: str) -> Reply:
        _check_tx_hash(tx_hash)
        with self._read() as ledger:
            record = ledger.find_transaction(tx_hash)
            if record is None:
                return Reply.of(problems.not_found())
            return Reply(200, horizon.transaction(self._base, record, tx_hash))

    # -- operations and payments ---------------------------------------------------------

    def _op_page(
        self,
        query: dict[str, str],
        path: str,
        txs: Callable[[LocalLedger], list[TxRecord]],
        *,
        payments: bool,
        account: str | None = None,
        all_results: bool = False,
    ) -> Reply:
        """A page of operations (or payments) of the transactions `txs` picks; failed
        transactions' only with include_failed=true (or for one given transaction)."""
        include_failed = all_results or query.get("include_failed", "false") == "true"
        with self._read() as ledger:
            rows = [
                row
                for tx in txs(ledger)
                if include_failed or tx.successful
                for row in ledger.operation_rows(tx)
                if (not payments or row.type in op_records.PAYMENT_TYPES)
                and (account is None or account in op_records.participants(row))
            ]
            return Reply(
                200,
                horizon.page(
                    self._base,
                    path,
                    query,
                    rows,
                    sort_key=lambda r: r.id,
                    cursor_key=int,
                    render=lambda r: op_records.render(self._base, r),
                    token=lambda r: str(r.id),
                ),
            )

    @staticmethod
    def _all_txs(ledger: LocalLedger) -> list[TxRecord]:
        return [ledger.transactions[h] for h in ledger.tx_hashes]

    def _operations(self, query: dict[str, str]) -> Reply:
        return self._op_page(query, "/operations", self._all_txs, payments=False)

    def _payments(self, query: dict[str, str]) -> Reply:
        return self._op_page(query, "/payments", self._all_txs, payments=True)

    def _account_ops(self, query: dict[str, str], account_id: str, kind: str) -> Reply:
        _check_account_id(account_id)
        return self._op_page(
            query,
            f"/accounts/{account_id}/{kind}",
            lambda ledger: [t for t in self._all_txs(ledger) if account_id in t.participants],
            payments=kind == "payments",
            account=account_id,
        )

    def _tx_ops(self, query: dict[str, str], tx_hash: str, kind: str) -> Reply:
        _check_tx_hash(tx_hash)
        return self._op_page(
            query,
            f"/transactions/{tx_hash}/{kind}",
            _one_transaction(tx_hash),
            payments=kind == "payments",
            all_results=True,
        )

    def _ledger_ops(self, query: dict[str, str], sequence: str, kind: str) -> Reply:
        seq = _ledger_id(sequence)
        return self._op_page(
            query,
            f"/ledgers/{seq}/{kind}",
            lambda ledger: [t for t in self._all_txs(ledger) if t.ledger == seq],
            payments=kind == "payments",
        )

    def _operation(self, query: dict[str, str], raw_id: str) -> Reply:
        op_id = _op_id(raw_id)
        ledger_seq, order, index = op_id >> 32, (op_id >> 12) & TOID_TX_MASK, op_id & TOID_OP_MASK
        with self._read() as ledger:
            tx = ledger.transaction_at(ledger_seq, order)
            rows = [] if tx is None else ledger.operation_rows(tx)
            if 1 <= index <= len(rows):
                return Reply(200, op_records.render(self._base, rows[index - 1]))
            return Reply.of(problems.not_found())

    # -- effects --------------------------------------------------------------------------

    def _effect_page(
        self,
        query: dict[str, str],
        path: str,
        txs: Callable[[LocalLedger], list[TxRecord]],
        wanted: Callable[[int, effect_records.Effect], bool] = lambda op_id, effect: True,
    ) -> Reply:
        """A page of the effects of the transactions `txs` picks (failed ones have none)."""
        with self._read() as ledger:
            rows = [row for row in _effect_rows(ledger, txs(ledger)) if wanted(row[0], row[3])]
            return Reply(
                200,
                horizon.page(
                    self._base,
                    path,
                    query,
                    rows,
                    sort_key=lambda r: (r[0], r[1]),
                    cursor_key=_effect_cursor,
                    render=lambda r: effect_records.render(
                        self._base, r[0], r[1], timestamp(r[2]), r[3]
                    ),
                    token=lambda r: effect_records.effect_id(r[0], r[1]),
                ),
            )

    def _effects(self, query: dict[str, str]) -> Reply:
        return self._effect_page(query, "/effects", self._all_txs)

    def _account_effects(self, query: dict[str, str], account_id: str) -> Reply:
        _check_account_id(account_id)
        return self._effect_page(
            query,
            f"/accounts/{account_id}/effects",
            lambda ledger: [t for t in self._all_txs(ledger) if account_id in t.participants],
            lambda op_id, effect: effect.account == account_id,
        )

    def _tx_effects(self, query: dict[str, str], tx_hash: str) -> Reply:
        _check_tx_hash(tx_hash)
        return self._effect_page(
            query, f"/transactions/{tx_hash}/effects", _one_transaction(tx_hash)
        )

    def _ledger_effects(self, query: dict[str, str], sequence: str) -> Reply:
        seq = _ledger_id(sequence)
        return self._effect_page(
            query,
            f"/ledgers/{seq}/effects",
            lambda ledger: [t for t in self._all_txs(ledger) if t.ledger == seq],
        )

    def _operation_effects(self, query: dict[str, str], raw_id: str) -> Reply:
        op_id = _op_id(raw_id)
        return self._effect_page(
            query,
            f"/operations/{op_id}/effects",
            lambda ledger: [t for t in self._all_txs(ledger) if t.ledger == op_id >> 32],
            lambda found_id, effect: found_id == op_id,
        )

    def _ledgers(self, query: dict[str, str]) -> Reply:
        with self._read() as ledger:
            return Reply(
                200,
                horizon.page(
                    self._base,
                    "/ledgers",
                    query,
                    ledger.ledgers,
                    sort_key=lambda r: r.sequence,
                    cursor_key=lambda c: int(c) >> 32,
                    render=lambda r: horizon.ledger_resource(self._base, r),
                    token=lambda r: str(toid(r.sequence, 0, 0)),
                ),
            )

    def _ledger(self, query: dict[str, str], sequence: str) -> Reply:
        seq = _ledger_id(sequence)
        if seq < 1:  # older than the oldest ledger this Horizon has
            return Reply.of(problems.before_history())
        with self._read() as ledger:
            if seq > ledger.last_closed.sequence:
                return Reply.of(problems.not_found())
            return Reply(200, horizon.ledger_resource(self._base, ledger.ledgers[seq - 1]))

    def _fee_stats(self, query: dict[str, str]) -> Reply:
        with self._read() as ledger:
            return Reply(200, horizon.fee_stats(ledger))

    def _claimable_balances(self, query: dict[str, str]) -> Reply:
        claimant = query.get("claimant")
        sponsor = query.get("sponsor")
        for name, value in (("claimant", claimant), ("sponsor", sponsor)):
            if value is not None and not StrKey.is_valid_ed25519_public_key(value):
                raise horizon.QueryError(
                    name, "Account ID must start with `G` and contain 56 alphanum characters"
                )
        asset_filter = query.get("asset")
        asset = None
        if asset_filter is not None:
            try:
                asset = parse_asset_param(asset_filter)
            except ValueError:
                raise horizon.QueryError("asset", "invalid asset") from None

        def wanted(cb: ClaimableBalance) -> bool:
            return (
                (claimant is None or any(c.destination == claimant for c in cb.claimants))
                and (sponsor is None or cb.sponsor == sponsor)
                and (asset_filter is None or cb.asset == asset)
            )

        def cursor_key(cursor: str) -> tuple[int, str]:
            ledger_part, _, balance_id = cursor.partition("-")
            return int(ledger_part), balance_id

        with self._read() as ledger:
            balances = [cb for cb in ledger.entries.claimable_balances.values() if wanted(cb)]
            return Reply(
                200,
                horizon.page(
                    self._base,
                    "/claimable_balances",
                    query,
                    balances,
                    sort_key=lambda cb: (cb.last_modified_ledger, cb.balance_id),
                    cursor_key=cursor_key,
                    render=lambda cb: horizon.claimable_balance(self._base, ledger, cb),
                    token=lambda cb: f"{cb.last_modified_ledger}-{cb.balance_id}",
                ),
            )

    def _claimable_balance(self, query: dict[str, str], raw_id: str) -> Reply:
        balance_id = normalize_balance_id(raw_id)
        if balance_id is None:
            return Reply.of(problems.bad_request("id", horizon.BALANCE_ID_REASON))
        with self._read() as ledger:
            cb = ledger.entries.claimable_balances.get(balance_id)
            if cb is None:
                return Reply.of(problems.not_found())
            return Reply(200, horizon.claimable_balance(self._base, ledger, cb))

    def _balance_history(self, query: dict[str, str], raw_id: str, kind: str) -> Reply:
        """The operations (or transactions) that changed a claimable balance: its
        creation, its claim or clawback, as Horizon links them when it ingests the
        ledger-entry changes of each operation (history_operation_claimable_balances);
        failed transactions change no entry, so include_failed finds nothing more. A
        balance this server's history never saw is 404, as Horizon's lookup of its
        history row; one claimed long ago is still served."""
        balance_id = normalize_balance_id(raw_id)
        if balance_id is None:
            raise horizon.QueryError("claimable_balance_id", horizon.BALANCE_ID_REASON)
        path = f"/claimable_balances/{balance_id}/{kind}"
        with self._read() as ledger:
            touched = _balance_operations(ledger, balance_id)
            if not touched:
                return Reply.of(problems.not_found())
            if kind == "transactions":
                seen = {row.tx.hash for row in touched}
                txs = [t for h in ledger.tx_hashes if (t := ledger.transactions[h]).hash in seen]
                return self._tx_page(ledger, path, query, txs)
            return Reply(
                200,
                horizon.page(
                    self._base,
                    path,
                    query,
                    touched,
                    sort_key=lambda r: r.id,
                    cursor_key=int,
                    render=lambda r: op_records.render(self._base, r),
                    token=lambda r: str(r.id),
                ),
            )

    def _friendbot(self, query: dict[str, str]) -> Reply:
        address = query.get("addr", "")
        if not address and self.command == "POST":
            form = self._read_form()
            if isinstance(form, Reply):
                return form
            address = form.get("addr", "")
        return self.server.node.friendbot(address)

    # -- admin (not part of Horizon) ------------------------------------------------------

    def _read_json(self) -> dict[str, Any] | Reply:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            return Reply.of(problems.bad_request("body", "too large"))
        try:
            doc = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return Reply.of(problems.bad_request("body", "not JSON"))
        if not isinstance(doc, dict):
            return Reply.of(problems.bad_request("body", "expected a JSON object"))
        return doc

    def _admin_faults_get(self, query: dict[str, str]) -> Reply:
        return Reply(200, self.server.node.faults.snapshot())

    def _admin_faults_post(self, query: dict[str, str]) -> Reply:
        doc = self._read_json()
        if isinstance(doc, Reply):
            return doc
        try:
            self.server.node.faults.configure(doc)
        except (ValueError, TypeError) as exc:
            return Reply.of(problems.bad_request("action", str(exc)))
        return Reply(200, self.server.node.faults.snapshot())

    def _admin_close(self, query: dict[str, str]) -> Reply:
        sequence = self.server.node.close_ledger()
        return Reply(200, {"sequence": sequence})

    def _admin_advance(self, query: dict[str, str]) -> Reply:
        doc = self._read_json()
        if isinstance(doc, Reply):
            return doc
        try:
            seconds = int(doc.get("seconds", 0))
            self.server.node.advance_time(seconds)
        except (ValueError, TypeError) as exc:
            return Reply.of(problems.bad_request("seconds", str(exc)))
        return Reply(200, {"now": self.server.node.clock.now()})


def _check_account_id(account_id: str) -> None:
    """Horizon's accountID validator on the `account_id` path parameter."""
    if not StrKey.is_valid_ed25519_public_key(account_id):
        raise horizon.QueryError("account_id", horizon.ACCOUNT_ID_REASON)


def _check_tx_hash(tx_hash: str) -> None:
    """Horizon's GetTransactionID: 64 lowercase hex digits, else 400 on `tx_id`."""
    if not re.fullmatch(r"[0-9a-f]{64}", tx_hash):
        raise horizon.QueryError("tx_id", horizon.TX_HASH_REASON)


def _one_transaction(tx_hash: str) -> Callable[[LocalLedger], list[TxRecord]]:
    """Picks the transaction of that hash (or inner hash) from a ledger, if it holds it."""

    def of_tx(ledger: LocalLedger) -> list[TxRecord]:
        record = ledger.find_transaction(tx_hash)
        return [] if record is None else [record]

    return of_tx


def _balance_operations(ledger: LocalLedger, balance_id: str) -> list[op_records.OpRow]:
    """The operations of successful transactions whose changes touched the balance: an
    operation's effects name every claimable balance it created, claimed or clawed
    back, and are derived from the entries before and after it."""
    rows = []
    for tx_hash in ledger.tx_hashes:
        per_op = ledger.effects.get(tx_hash)
        if not per_op:
            continue
        for index, effects in enumerate(per_op):
            if any(e.details.get("balance_id") == balance_id for e in effects):
                rows.append(ledger.operation_rows(ledger.transactions[tx_hash])[index])
    return rows


def _op_id(raw: str) -> int:
    """The `op_id` path parameter: a positive TOID, else 400 on `op_id`."""
    if not raw.isdigit() or int(raw) == 0:
        raise horizon.QueryError("op_id", horizon.OP_ID_REASON)
    return int(raw)


def _ledger_id(raw: str) -> int:
    """The `ledger_id` path parameter: a uint32, as Horizon's schema decoder reads it."""
    if not raw.isdigit() or int(raw) >= 1 << 32:
        raise horizon.QueryError("ledger_id", horizon.LEDGER_ID_REASON)
    return int(raw)


EffectRow = tuple[int, int, int, effect_records.Effect]  # op id, order, close time, effect


def _effect_rows(ledger: LocalLedger, txs: list[TxRecord]) -> list[EffectRow]:
    rows = []
    for tx in txs:
        for index, effects in enumerate(ledger.effects.get(tx.hash, [])):
            op_id = toid(tx.ledger, tx.application_order, index + 1)
            for order, effect in enumerate(effects, start=1):
                rows.append((op_id, order, tx.closed_at, effect))
    return rows


def _effect_cursor(cursor: str) -> tuple[int, int]:
    """An effect's paging token "<operation id>-<order>", or a bare id (order 0)."""
    op_part, _, order_part = cursor.partition("-")
    return int(op_part), int(order_part or 0)


def _find_route(method: str, path: str) -> tuple[Callable[..., Reply], tuple[str, ...]] | None:
    for route_method, pattern, handler in ROUTES:
        match = pattern.fullmatch(path)
        if match and route_method == method:
            return handler, match.groups()
    return None


TOID_TX_MASK = (1 << 20) - 1
TOID_OP_MASK = (1 << 12) - 1

ROUTES: list[Route] = [
    ("GET", re.compile(r"/"), _Handler._root),
    ("GET", re.compile(r"/accounts/([^/]+)"), _Handler._account),
    ("GET", re.compile(r"/accounts/([^/]+)/transactions"), _Handler._account_transactions),
    ("GET", re.compile(r"/accounts/([^/]+)/data/([^/]+)"), _Handler._account_data),
    ("GET", re.compile(r"/transactions"), _Handler._transactions),
    ("POST", re.compile(r"/transactions"), _Handler._submit),
    ("POST", re.compile(r"/transactions_async"), _Handler._submit_async),
    ("GET", re.compile(r"/transactions/([^/]+)"), _Handler._transaction),
    ("GET", re.compile(r"/ledgers"), _Handler._ledgers),
    ("GET", re.compile(r"/ledgers/([^/]+)"), _Handler._ledger),
    ("GET", re.compile(r"/ledgers/([^/]+)/transactions"), _Handler._ledger_transactions),
    ("GET", re.compile(r"/fee_stats"), _Handler._fee_stats),
    ("GET", re.compile(r"/operations"), _Handler._operations),
    ("GET", re.compile(r"/payments"), _Handler._payments),
    ("GET", re.compile(r"/operations/([^/]+)"), _Handler._operation),
    ("GET", re.compile(r"/accounts/([^/]+)/(operations|payments)"), _Handler._account_ops),
    ("GET", re.compile(r"/transactions/([^/]+)/(operations|payments)"), _Handler._tx_ops),
    ("GET", re.compile(r"/ledgers/([^/]+)/(operations|payments)"), _Handler._ledger_ops),
    ("GET", re.compile(r"/effects"), _Handler._effects),
    ("GET", re.compile(r"/accounts/([^/]+)/effects"), _Handler._account_effects),
    ("GET", re.compile(r"/transactions/([^/]+)/effects"), _Handler._tx_effects),
    ("GET", re.compile(r"/ledgers/([^/]+)/effects"), _Handler._ledger_effects),
    ("GET", re.compile(r"/operations/([^/]+)/effects"), _Handler._operation_effects),
    ("GET", re.compile(r"/claimable_balances"), _Handler._claimable_balances),
    ("GET", re.compile(r"/claimable_balances/([^/]+)"), _Handler._claimable_balance),
    (
        "GET",
        re.compile(r"/claimable_balances/([^/]+)/(operations|transactions)"),
        _Handler._balance_history,
    ),
    ("GET", re.compile(r"/friendbot"), _Handler._friendbot),
    ("POST", re.compile(r"/friendbot"), _Handler._friendbot),
    ("GET", re.compile(r"/_admin/faults"), _Handler._admin_faults_get),
    ("POST", re.compile(r"/_admin/faults"), _Handler._admin_faults_post),
    ("POST", re.compile(r"/_admin/close_ledger"), _Handler._admin_close),
    ("POST", re.compile(r"/_admin/advance_time"), _Handler._admin_advance),
]

#: Routes Horizon also serves as event streams: pages stream their new records, an
#: object its new state (httpx/router.go: streamable page and object handlers).
STREAMABLE: dict[Callable[..., Reply], str] = {
    _Handler._ledgers: "page",
    _Handler._transactions: "page",
    _Handler._account_transactions: "page",
    _Handler._ledger_transactions: "page",
    _Handler._account: "object",
    _Handler._operations: "page",
    _Handler._payments: "page",
    _Handler._account_ops: "page",
    _Handler._tx_ops: "page",
    _Handler._ledger_ops: "page",
    _Handler._effects: "page",
    _Handler._account_effects: "page",
    _Handler._tx_effects: "page",
    _Handler._ledger_effects: "page",
    _Handler._operation_effects: "page",
    _Handler._balance_history: "page",
}
