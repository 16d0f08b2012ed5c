"""HTTP front of the node: JSON-RPC at ``/`` (like rippled's admin port) and a faucet.

Transport behaviour follows rippled where a client can see it: a body that is not JSON
gets HTTP 400 ``Unable to parse request``, a request without a method gets HTTP 400
``Null method``, RPC-level errors are HTTP 200 with ``status: "error"``. Bodies over
``MAX_BODY_BYTES`` are refused with 413 before being read.

Fault injection happens here because it is about the wire: delaying an answer,
applying a submit and then closing the connection without answering, and refusing
connections altogether (the listening socket is closed during a partition).
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from adapters.localnet.xrpl.faults import FaultPlan
from adapters.localnet.xrpl.rpc import RpcService

MAX_BODY_BYTES = 2 * 1024 * 1024
_log = logging.getLogger(__name__)

FaucetHandler = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], rpc: RpcService, faults: FaultPlan, faucet: FaucetHandler
    ) -> None:
        super().__init__(address, _Handler)
        self.rpc = rpc
        self.faults = faults
        self.faucet = faucet


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "rippled-localnet"
    # Headers and body go out in two writes; with Nagle on, a keep-alive client waits
    # for a delayed ACK (~40 ms) on every answer.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._send_text(405, "Method Not Allowed")

    def do_POST(self) -> None:
        if self.server.faults.partition_remaining_s() > 0:
            # the listening socket is closed, but a kept-alive connection outlives it:
            # a partition cuts those too
            self._reset_connection()
            return
        body = self._read_body()
        if body is None:
            return
        delay_s = self.server.faults.take_delay_s()
        if delay_s:
            time.sleep(delay_s)
        if self.path.rstrip("/") == "/accounts":
            self._faucet(body)
            return
        if self.path not in ("/", ""):
            self._send_text(404, "Not Found")
            return
        self._json_rpc(body)

    def _reset_connection(self) -> None:
        """Close with a TCP reset: what a client sees when a server is unreachable mid-way."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.shutdown(socket.SHUT_RDWR)

    def _read_body(self) -> bytes | None:
        length_header = self.headers.get("Content-Length")
        if length_header is None or not length_header.isdigit():
            self._send_text(411, "Length Required")
            return None
        length = int(length_header)
        if length > MAX_BODY_BYTES:
            self._send_text(413, "Request Entity Too Large")
            return None
        return self.rfile.read(length)

    def _json_rpc(self, body: bytes) -> None:
        try:
            request = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self._send_text(400, f"Unable to parse request: {exc}")
            return
        if not isinstance(request, dict) or "method" not in request:
            self._send_text(400, "Null method")
            return
        method = request["method"]
        if not isinstance(method, str):
            self._send_text(400, "method is not string")
            return
        params_list = request.get("params", [{}])
        if (
            not isinstance(params_list, list)
            or len(params_list) > 1
            or (params_list and not isinstance(params_list[0], dict))
        ):
            self._send_text(400, "params unparseable")
            return
        params: dict[str, Any] = params_list[0] if params_list else {}
        result = self.server.rpc.handle(method, params)
        if method == "submit" and self.server.faults.take_drop():
            # The submit was processed; the client just never hears about it.
            self.close_connection = True
            return
        self._send_json(200, {"result": result})

    def _faucet(self, body: bytes) -> None:
        try:
            request = json.loads(body) if body.strip() else {}
        except (UnicodeDecodeError, json.JSONDecodeError):
            self._send_json(400, {"error": "invalid JSON body"})
            return
        if not isinstance(request, dict):
            self._send_json(400, {"error": "body must be a JSON object"})
            return
        status, answer = self.server.faucet(request)
        self._send_json(status, answer)

    def _send_json(self, status: int, document: dict[str, Any]) -> None:
        payload = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _send_text(self, status: int, message: str) -> None:
        payload = message.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)
        self.close_connection = True


class HttpFront:
    """Serves on a background thread; closes and reopens the socket around partitions."""

    def __init__(self, rpc: RpcService, faults: FaultPlan, faucet: FaucetHandler) -> None:
        self._rpc = rpc
        self._faults = faults
        self._faucet = faucet
        self._server: _Server | None = None
        self._server_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.host = "127.0.0.1"
        self.port = 0
        faults.on_partition_change(self._on_partition_change)

    def start(self, host: str, port: int) -> str:
        first = self._bind(host, port)
        self.host, self.port = host, first.server_address[1]
        self._thread = threading.Thread(
            target=self._serve, args=(first,), name="xrpl-localnet-http", daemon=True
        )
        self._thread.start()
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self._stopping.set()
        self._shutdown_current()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _bind(self, host: str, port: int) -> _Server:
        server = _Server((host, port), self._rpc, self._faults, self._faucet)
        with self._server_lock:
            self._server = server
        return server

    def _serve(self, first: _Server) -> None:
        server: _Server | None = first
        while not self._stopping.is_set():
            if server is None:
                remaining = self._faults.partition_remaining_s()
                if remaining > 0:
                    self._stopping.wait(min(remaining, 0.02))
                    continue
                server = self._bind(self.host, self.port)
            server.serve_forever(poll_interval=0.02)
            server.server_close()
            server = None

    def _on_partition_change(self) -> None:
        if self._faults.partition_remaining_s() > 0:
            # shutdown() waits for serve_forever to return, so never on a request thread
            # that the loop might be waiting for.
            threading.Thread(target=self._shutdown_current, daemon=True).start()

    def _shutdown_current(self) -> None:
        with self._server_lock:
            server = self._server
            self._server = None
        if server is not None:
            server.shutdown()
