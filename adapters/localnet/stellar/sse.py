"""Horizon's server-sent event streams (`Accept: text/event-stream`).

Framing as Horizon's render/sse writes it: a preamble event `open` with data
`"hello"` and `retry: 1000`; then one event per record, `id: <paging token>` and
`data: <the record's JSON>`; and after `limit` events (default 10, as for a page) a
final event `close` with data `"byebye"` and `retry: 10`, which tells the client to
reconnect from the last id. Between ledgers the stream waits: records are looked up
again only when a ledger closes (Horizon's StreamHandler.ServeStream loop).

A stream holds one server thread. It ends when the node stops (the wait wakes on
stop) and when the client leaves (noticed between ledgers, or on the next write).
"""

from __future__ import annotations

import json
import logging
import select
import socket
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler
from typing import Any

# What Horizon sends for an unexpected failure once the stream has started (errBadStream).
STREAM_ERROR = "Unexpected stream error"
log = logging.getLogger(__name__)

HELLO = 'retry: 1000\nevent: open\ndata: "hello"\n\n'
BYEBYE = 'retry: 10\nevent: close\ndata: "byebye"\n\n'

#: (event id or "", JSON-able record) for each event a look-up found
Events = Iterable[tuple[str, Any]]


class ClientGone(Exception):
    """The client closed the connection."""


class StreamWriter:
    """Writes events as HTTP/1.1 chunks, each flushed at once (Horizon's Flush)."""

    def __init__(self, handler: BaseHTTPRequestHandler) -> None:
        self._handler = handler
        self.started = False

    def start(self) -> None:
        h = self._handler
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream; charset=utf-8")
        h.send_header("Cache-Control", "no-cache")
        h.send_header("Access-Control-Allow-Origin", "*")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        self.started = True
        self._chunk(HELLO)

    def event(self, event_id: str, data: Any) -> None:
        head = f"id: {event_id}\n" if event_id else ""
        self._chunk(f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n")

    def error(self, message: str) -> None:
        self._chunk(f"event: error\ndata: {message}\n\n")

    def close(self) -> None:
        self._chunk(BYEBYE)

    def finish(self) -> None:
        """The zero-length chunk that ends the response."""
        self._write(b"0\r\n\r\n")

    def client_gone(self) -> bool:
        """True once the client has closed its end (a readable socket with no data)."""
        conn = self._handler.connection
        try:
            readable, _, _ = select.select([conn], [], [], 0)
            return bool(readable) and conn.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _chunk(self, text: str) -> None:
        body = text.encode()
        self._write(f"{len(body):x}\r\n".encode() + body + b"\r\n")

    def _write(self, data: bytes) -> None:
        try:
            self._handler.wfile.write(data)
            self._handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError) as exc:
            raise ClientGone from exc


def serve(
    writer: StreamWriter,
    *,
    limit: int,
    generate: Callable[[], Events],
    wait_next: Callable[[int, Callable[[], bool]], int | None],
    latest: int,
) -> None:
    """Send what `generate` finds now and after every ledger close, until `limit` events
    went out (then "byebye"), the node stops or the client leaves. `wait_next(seq,
    gone)` blocks until a ledger after `seq` closes; None when the stream must end."""
    remaining = limit
    try:
        writer.start()
        while True:
            for event_id, data in generate():
                writer.event(event_id, data)
                remaining -= 1
                if remaining <= 0:
                    writer.close()
                    writer.finish()
                    return
            next_ledger = wait_next(latest, writer.client_gone)
            if next_ledger is None:
                writer.close()
                writer.finish()
                return
            latest = next_ledger
    except ClientGone:
        return
    except Exception:  # a bug must not leave a half-written response: say so, end it
        log.exception("event stream failed")
        try:
            writer.error(STREAM_ERROR)
            writer.finish()
        except ClientGone:
            pass
