"""A small webhook receiver: verifies each delivery and prints its event, once.

What a receiver must do, in order (``WebhookReceiver.receive``):

1. verify the RFC 9421 signature with the engine's public key (fetched from the API's
   unsigned ``GET /v1/webhooks/keys``; the ``keyid`` names which key), the
   Content-Digest against the body, and that the signature is recent; the signed
   ``@target-uri`` is the URL the endpoint was registered with;
2. check the ``webhook-id`` header (covered by the signature) names the body's ``id``;
3. deduplicate on the event id: delivery is at least once, so the same event may come
   again (a retry after a lost answer, a replay); answer 2xx to a duplicate too.

Run it::

    python -m settlement.webhook_receiver --api http://127.0.0.1:8080 --port 8099

and register ``http://127.0.0.1:8099/`` (the local network profile allows http and
loopback) with ``settle webhooks add http://127.0.0.1:8099/ --event review.approved``.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from http_message_signatures import InvalidSignature

from settlement import signing
from settlement.clock import SystemClock

KEYS_PATH = "/v1/webhooks/keys"
EVENT_ID_HEADER = "webhook-id"


def fetch_keys(api_url: str, *, timeout_s: float = 10.0) -> dict[str, Ed25519PublicKey]:
    """The engine's webhook public keys by key id, from ``GET /v1/webhooks/keys``."""
    response = httpx.get(api_url.rstrip("/") + KEYS_PATH, timeout=timeout_s)
    response.raise_for_status()
    return parse_keys(response.json())


def parse_keys(document: dict[str, Any]) -> dict[str, Ed25519PublicKey]:
    keys: dict[str, Ed25519PublicKey] = {}
    for entry in document["keys"]:
        raw = base64.urlsafe_b64decode(entry["public_key"] + "=" * (-len(entry["public_key"]) % 4))
        keys[entry["kid"]] = Ed25519PublicKey.from_public_bytes(raw)
    return keys


class Refused(Exception):
    """The delivery is not the engine's, or not intact; answered 401."""


@dataclass
class WebhookReceiver:
    """Verifies deliveries and remembers the event ids seen (in memory: a real receiver
    keeps them with whatever it does with the event, in one transaction)."""

    keys: dict[str, Ed25519PublicKey]
    now: Callable[[], datetime] = field(default=SystemClock().now)
    seen: set[str] = field(default_factory=set)
    events: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _lookup(self, key_id: str) -> Ed25519PublicKey:
        try:
            return self.keys[key_id]
        except KeyError:
            raise signing.KeyUnknown(f"no engine webhook key {key_id!r}") from None

    def receive(
        self, method: str, url: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[dict[str, Any], bool]:
        """The verified event and whether it was seen before; ``Refused`` if it does not
        verify."""
        request = signing.IncomingRequest(method=method, url=url, header_pairs=headers)
        try:
            signing.verify_request(request, body, lookup=self._lookup, now=self.now())
        except InvalidSignature as exc:
            raise Refused(str(exc)) from exc
        if f'"{EVENT_ID_HEADER}"' not in dict((n.lower(), v) for n, v in headers).get(
            "signature-input", ""
        ):
            raise Refused(f"the signature does not cover {EVENT_ID_HEADER}")
        event = json.loads(body)
        named = [v for n, v in headers if n.lower() == EVENT_ID_HEADER]
        if named != [event["id"]]:
            raise Refused(f"{EVENT_ID_HEADER} does not name the body's event")
        with self._lock:
            duplicate = event["id"] in self.seen
            if duplicate:
                self.duplicates.append(event["id"])
            else:
                self.seen.add(event["id"])
                self.events.append(event)
        return event, duplicate


def handler_for(
    receiver: WebhookReceiver,
    *,
    public_url: Callable[[str], str],
    on_event: Callable[[dict[str, Any], bool], None] | None = None,
) -> type[BaseHTTPRequestHandler]:
    """A request handler class: verify, deduplicate, call ``on_event``, answer 204 (401
    for a delivery that does not verify). ``public_url(path)`` is the absolute URL the
    engine signed: the one the endpoint was registered with."""

    class Handler(BaseHTTPRequestHandler):
        # keep-alive: the engine sends many events over one connection
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            try:
                event, duplicate = receiver.receive(
                    "POST", public_url(self.path), list(self.headers.items()), body
                )
            except Refused as exc:
                refusal = str(exc).encode()
                self.send_response(401)
                self.send_header("content-type", "text/plain")
                self.send_header("content-length", str(len(refusal)))
                self.end_headers()
                self.wfile.write(refusal)
                return
            if on_event is not None:
                on_event(event, duplicate)
            self.send_response(204)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def _print_event(event: dict[str, Any], duplicate: bool) -> None:
    mark = " (duplicate)" if duplicate else ""
    print(
        f"{event['occurred_at']} {event['type']:<28} commitment {event['commitment_id']}"
        f" #{event['sequence']}{mark} {json.dumps(event['data'], sort_keys=True)}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api", required=True, help="the engine's API URL (for its keys)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument(
        "--public-url", default=None, help="the URL registered, if not http://HOST:PORT"
    )
    args = parser.parse_args(argv)
    receiver = WebhookReceiver(fetch_keys(args.api))
    base = (args.public_url or f"http://{args.host}:{args.port}").rstrip("/")
    server = ThreadingHTTPServer(
        (args.host, args.port),
        handler_for(receiver, public_url=lambda path: base + path, on_event=_print_event),
    )
    print(f"receiving webhooks at {base}/ (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
