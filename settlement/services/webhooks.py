"""Webhooks: who may register which endpoint, and the worker that delivers the events.

The events themselves are written by the database with the change they report (the
outbox of migration 0016, ``ledger.webhooks``); this module only reads and moves them.

Endpoints (``WebhookDesk``): an allocator registers, lists, disables and replays the
endpoints of its own party; an admin those of any party, and endpoints of every party
(``party`` None). A URL must be an absolute http(s) URL; outside the local network
profile it must be https and may not name a loopback, private, link-local or otherwise
reserved address (nor ``localhost``). Bad input is refused before anything is stored.

Delivery (``DeliveryWorker``), at least once and in order per (endpoint, commitment):

- a round claims the due deliveries (``FOR UPDATE SKIP LOCKED``; the claim is a lease:
  a worker that dies after sending and before recording leaves the delivery due again
  when the lease runs out, and it is sent again with the same event id);
- each is POSTed as JSON, signed per RFC 9421 with the engine's Ed25519 key over
  ``@method``, ``@target-uri``, ``content-digest`` and ``webhook-id`` (the event id,
  also in the body), with ``created``, ``nonce``, ``keyid`` and ``alg``: the API's own
  scheme (``settlement.signing``). Redirects are not followed (a 3xx is a failure);
- within an attempt, timeouts, connection errors and 5xx are retried quickly
  (tenacity, ``webhook_quick_tries``); a failed attempt is due again after a backoff
  doubling from ``webhook_backoff_base_s`` to ``webhook_backoff_max_s``, until
  ``webhook_give_up_after_s`` from its first attempt, when it is dead. A 4xx other
  than 408 and 429 says the receiver refuses the event itself: it is dead after
  ``webhook_client_error_attempts`` attempts;
- a dead delivery holds the later events of its commitment to that endpoint back until
  it is replayed (``ledger.webhooks``, order).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import logging
import os
import socket
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID, uuid4

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from compliance import records as compliance_records
from ledger import webhooks as records
from ledger.database import Database
from ledger.errors import LedgerError
from ledger.webhooks import ClaimedDelivery, DeliveryStatus, EndpointRecord, EventType
from settlement import signing
from settlement.clock import Clock
from settlement.domain import errors
from settlement.domain.values import Actor, Role
from settlement.services.translate import translated

log = logging.getLogger(__name__)

#: the header naming the event id (also the body's ``id``); covered by the signature
EVENT_ID_HEADER = "webhook-id"
COVERED_COMPONENTS = (*signing.COVERED_COMPONENTS, EVENT_ID_HEADER)
USER_AGENT = "settlement-engine-webhooks/1"


# -- the engine's signing key -------------------------------------------------------------


@dataclass(frozen=True)
class WebhookKey:
    """The key the engine signs deliveries with; ``key_id`` names it in ``keyid``."""

    private_key: Ed25519PrivateKey

    @property
    def public_key_raw(self) -> bytes:
        return signing.public_key_bytes(self.private_key)

    @property
    def key_id(self) -> str:
        digest = hashlib.sha256(self.public_key_raw).hexdigest()[:16]
        return f"engine-webhooks-{digest}"

    def public_document(self) -> dict[str, Any]:
        """What ``GET /v1/webhooks/keys`` serves: kid, alg and the raw public key."""
        raw = base64.urlsafe_b64encode(self.public_key_raw).rstrip(b"=").decode()
        return {"keys": [{"kid": self.key_id, "alg": signing.ALGORITHM, "public_key": raw}]}


def key_from_text(encoded: str) -> WebhookKey:
    """A key from base64url of its 32 private bytes; ``ValueError`` for anything else."""
    padded = encoded.strip() + "=" * (-len(encoded.strip()) % 4)
    raw = base64.urlsafe_b64decode(padded)
    if len(raw) != 32:
        raise ValueError("a webhook signing key is 32 bytes, base64url-encoded")
    return WebhookKey(Ed25519PrivateKey.from_private_bytes(raw))


def key_text(key: Ed25519PrivateKey) -> str:
    """base64url of the key's 32 private bytes (what ``key_from_text`` reads)."""
    raw = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def local_key(data_dir: Path) -> WebhookKey:
    """The local network's webhook key (``keys/webhook-signing.key``, mode 0600), made on
    first use."""
    path = data_dir / "keys" / "webhook-signing.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(key_text(signing.new_private_key()))
    return key_from_text(path.read_text())


# -- endpoints ----------------------------------------------------------------------------


def check_url(url: str, *, local_network: bool) -> str:
    """``url`` if an endpoint may have it; ``InvalidWebhookUrl`` saying why not."""
    if not isinstance(url, str) or not url or len(url) > 2048 or url != url.strip():
        raise errors.InvalidWebhookUrl("the URL must be 1-2048 characters without spaces")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises for a port that is not a number in range
    except ValueError as exc:
        raise errors.InvalidWebhookUrl(f"not a URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise errors.InvalidWebhookUrl(f"the scheme must be https (or http locally), not {url!r}")
    host = parts.hostname
    if not host or parts.username is not None or parts.password is not None:
        raise errors.InvalidWebhookUrl("the URL must name a host, and no user or password")
    if parts.fragment:
        raise errors.InvalidWebhookUrl("the URL may not have a fragment")
    if local_network:
        return url
    if parts.scheme != "https":
        raise errors.InvalidWebhookUrl("outside the local network an endpoint must be https")
    if host == "localhost" or host.endswith(".localhost"):
        raise errors.InvalidWebhookUrl("outside the local network an endpoint may not be local")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return url  # a name; where it resolves is checked by the receiver's network
    if not address.is_global:
        raise errors.InvalidWebhookUrl(
            f"outside the local network an endpoint may not be a {_kind(address)} address"
        )
    return url


def resolves_privately(url: str) -> str | None:
    """Why a POST to ``url`` must not go out (its host resolves to an address that is
    not global: a name registered as public that points inside the network), or None.
    Checked just before each POST, outside the local network; a host that does not
    resolve is left to the HTTP client's own error. The address may still change
    between this look-up and the client's own (DNS rebinding): a deployment that needs
    more sends webhooks through an egress proxy."""
    host = urlsplit(url).hostname or ""
    try:
        found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return None
    for *_, sockaddr in found:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if not address.is_global:
            return f"{host} resolves to a {_kind(address)} address ({address}); not sent"
    return None


def _kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_private:
        return "private"
    return "reserved"


def check_event_types(names: Iterable[str]) -> list[str]:
    """The names as given, deduplicated in order; ``UnknownEventType`` naming any that
    is not an event type, ``InvalidInput`` for none."""
    chosen = list(dict.fromkeys(names))
    if not chosen:
        raise errors.InvalidInput("name at least one event type")
    unknown = [n for n in chosen if n not in EventType._value2member_map_]
    if unknown:
        raise errors.UnknownEventType(
            f"unknown event types {unknown}; event types are {', '.join(EventType)}"
        )
    return chosen


class WebhookDesk:
    """Registering, listing, disabling and replaying endpoints, as their party may."""

    def __init__(self, db: Database, clock: Clock, *, local_network: bool) -> None:
        self._db = db
        self._clock = clock
        self._local = local_network

    def register(
        self, actor: Actor, *, url: str, event_types: Iterable[str], party: str | None
    ) -> EndpointRecord:
        """A new active endpoint. An allocator's is its own party's (``party`` None or
        its own); an admin names a party, or None for every party."""
        if actor.role is Role.ALLOCATOR:
            if party is not None and party != actor.party:
                raise errors.NotAuthorised(f"{actor.id} registers endpoints for {actor.party}")
            party = actor.party
        elif actor.role is not Role.ADMIN:
            raise errors.NotAuthorised("only allocators and admins register webhook endpoints")
        elif party is not None:
            self._known_party(party)
        checked_url = check_url(url, local_network=self._local)
        types = check_event_types(event_types)
        now = self._clock.now()
        with translated():
            return self._db.statements(
                lambda uow: records.add_endpoint(
                    uow,
                    endpoint_id=uuid4(),
                    party=party,
                    url=checked_url,
                    event_types=types,
                    created_by=actor.id,
                    key_id=actor.key_id,
                    at=now,
                )
            )

    def _known_party(self, party: str) -> None:
        """``UnknownParty`` for a party with no KYC record: an endpoint for a typo would
        wait, silently, for events that never come."""
        with translated():
            known = self._db.statements(
                lambda uow: compliance_records.party_exists(uow, party), atomic=False
            )
        if not known:
            raise errors.UnknownParty(f"party {party!r} has no KYC record")

    def endpoints(self, actor: Actor, *, party: str | None = None) -> list[EndpointRecord]:
        """An allocator's own party's endpoints; an admin's all (or one party's)."""
        if actor.role is Role.ALLOCATOR:
            if party is not None and party != actor.party:
                raise errors.NotAuthorised(f"{actor.id} lists endpoints of {actor.party} only")
            party = actor.party
        with translated():
            return self._db.statements(
                lambda uow: records.list_endpoints(uow, party=party), atomic=False
            )

    def endpoint(self, actor: Actor, endpoint_id: UUID) -> EndpointRecord:
        """The endpoint if ``actor`` may see it: ``WebhookEndpointNotFound``,
        ``NotAuthorised`` (an allocator and another party's, or every party's)."""
        try:
            with translated():
                found = self._db.statements(
                    lambda uow: records.get_endpoint(uow, endpoint_id), atomic=False
                )
        except errors.CommitmentNotFound as exc:
            raise errors.WebhookEndpointNotFound(str(exc)) from exc
        if actor.role is Role.ALLOCATOR and found.party != actor.party:
            raise errors.NotAuthorised(f"{actor.id} acts for {actor.party}, not this endpoint's")
        return found

    def disable(self, actor: Actor, endpoint_id: UUID) -> EndpointRecord:
        self.endpoint(actor, endpoint_id)
        now = self._clock.now()
        with translated():
            self._db.statements(
                lambda uow: records.disable_endpoint(uow, endpoint_id, by=actor.id, at=now)
            )
        return self.endpoint(actor, endpoint_id)

    def deliveries(
        self,
        actor: Actor,
        endpoint_id: UUID,
        *,
        status: DeliveryStatus | None = None,
        limit: int = 100,
    ) -> list[records.DeliveryRecord]:
        self.endpoint(actor, endpoint_id)
        with translated():
            return self._db.statements(
                lambda uow: records.list_deliveries(uow, endpoint_id, status=status, limit=limit),
                atomic=False,
            )

    def replay(
        self, actor: Actor, endpoint_id: UUID, delivery_ids: list[int] | None = None
    ) -> list[int]:
        """Dead deliveries of the endpoint (those named, else all) pending again, due
        now with fresh attempts; the ids replayed (a named one not dead is left)."""
        self.endpoint(actor, endpoint_id)
        now = self._clock.now()
        with translated():
            return self._db.statements(
                lambda uow: records.replay_dead(uow, endpoint_id, delivery_ids=delivery_ids, at=now)
            )


# -- delivery -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryPolicy:
    timeout_s: float = 5.0
    quick_tries: int = 3
    backoff_base_s: float = 5.0
    backoff_max_s: float = 3_600.0
    give_up_after_s: float = 86_400.0
    client_error_attempts: int = 3
    #: deliveries claimed per round
    batch: int = 50
    #: deliveries of a round sent at once (a round holds at most one event per
    #: commitment and endpoint, so sending them side by side keeps each one's order)
    concurrency: int = 8
    #: how long to wait when nothing was due (the lag of an event when all is quiet)
    idle_s: float = 0.2
    #: after a round that took less than a batch, how long to let events gather before
    #: the next: a trickle of events is then claimed, sent and recorded a few at a time
    #: rather than one round (three statements, a pool hand-off) each, which on a
    #: settlement worker's machine is CPU taken from settling
    gather_s: float = 0.1

    @property
    def lease_s(self) -> float:
        """How long a claim holds: longer than an attempt with its quick retries."""
        return self.timeout_s * self.quick_tries + 2.0 * self.quick_tries + 30.0

    def backoff_s(self, attempts: int) -> float:
        doubled: float = self.backoff_base_s * 2 ** max(attempts - 1, 0)
        return min(doubled, self.backoff_max_s)


def event_body(claim: ClaimedDelivery) -> bytes:
    """The JSON a receiver gets: the event id it deduplicates on, the type, the
    commitment and party, ``sequence`` (the commitment's audit entry: a receiver sees
    them in increasing order), when it happened and ``data``."""
    document = {
        "id": str(claim.event_id),
        "type": claim.event_type,
        "commitment_id": str(claim.commitment_id),
        "party": claim.party,
        "sequence": claim.audit_seq,
        "occurred_at": claim.occurred_at.isoformat().replace("+00:00", "Z"),
        "data": claim.payload,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Attempt:
    """How one attempt went: ``status_code`` None when no response came."""

    status_code: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class _Retryable(Exception):
    def __init__(self, attempt: Attempt) -> None:
        super().__init__(attempt.error)
        self.attempt = attempt


class DeliveryWorker:
    """Claims due deliveries, sends them signed, records each outcome. Safe to run in
    several processes at once; ``start`` runs it in a thread of its own."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        key: WebhookKey,
        *,
        policy: DeliveryPolicy | None = None,
        http: httpx.Client | None = None,
        local_network: bool = True,
    ) -> None:
        self._db = db
        self._clock = clock
        self._key = key
        #: outside the local network, a host is resolved before each POST and refused
        #: when it resolves to a loopback, private or link-local address
        self._local = local_network
        self.policy = policy or DeliveryPolicy()
        self._http = http or httpx.Client(
            timeout=self.policy.timeout_s,
            follow_redirects=False,
            headers={"user-agent": USER_AGENT},
        )
        self._pool = ThreadPoolExecutor(
            max_workers=self.policy.concurrency, thread_name_prefix="webhook-send"
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def claim(self) -> list[ClaimedDelivery]:
        now = self._clock.now()
        lease_until = now + timedelta(seconds=self.policy.lease_s)
        return self._db.statements(
            lambda uow: records.claim_due(
                uow, now=now, lease_until=lease_until, limit=self.policy.batch
            )
        )

    def send(self, claim: ClaimedDelivery) -> Attempt:
        """POST the event, quick retries included; never raises for the receiver's
        failures."""
        try:
            for attempt in Retrying(
                stop=stop_after_attempt(self.policy.quick_tries),
                wait=wait_exponential(multiplier=0.1, max=2.0),
                retry=retry_if_exception_type(_Retryable),
                reraise=True,
            ):
                with attempt:
                    return self._post(claim)
        except _Retryable as exc:
            return exc.attempt
        except RetryError as exc:  # pragma: no cover - reraise=True raises the cause
            return Attempt(None, str(exc))
        raise AssertionError("unreachable: tenacity returns or re-raises")

    def _post(self, claim: ClaimedDelivery) -> Attempt:
        if not self._local:
            refused = resolves_privately(claim.url)
            if refused is not None:
                return Attempt(None, refused)
        request = self._http.build_request(
            "POST",
            claim.url,
            content=event_body(claim),
            headers={"content-type": "application/json", EVENT_ID_HEADER: str(claim.event_id)},
        )
        signing.sign_request(
            request,
            key_id=self._key.key_id,
            private_key=self._key.private_key,
            created=self._clock.now(),
            covered=COVERED_COMPONENTS,
        )
        try:
            response = self._http.send(request, follow_redirects=False)
            response.close()
        except httpx.TimeoutException as exc:
            raise _Retryable(Attempt(None, f"timed out: {exc}")) from exc
        except httpx.HTTPError as exc:
            raise _Retryable(Attempt(None, f"{type(exc).__name__}: {exc}")) from exc
        status = response.status_code
        if status >= 500:
            raise _Retryable(Attempt(status, f"the receiver answered {status}"))
        if 300 <= status < 400:
            return Attempt(status, f"the receiver answered {status}; redirects are not followed")
        if status >= 400:
            return Attempt(status, f"the receiver answered {status}")
        return Attempt(status, None)

    def record(self, claim: ClaimedDelivery, attempt: Attempt) -> None:
        now = self._clock.now()
        if attempt.delivered:
            assert attempt.status_code is not None
            code = attempt.status_code
            self._db.statements(
                lambda uow: records.record_delivered(
                    uow, claim.id, attempts=claim.attempts, status_code=code, at=now
                )
            )
            return
        retry_at = self._retry_at(claim, attempt, now)
        self._db.statements(
            lambda uow: records.record_failed(
                uow,
                claim.id,
                attempts=claim.attempts,
                status_code=attempt.status_code,
                error=attempt.error or "failed",
                retry_at=retry_at,
            )
        )

    def _retry_at(self, claim: ClaimedDelivery, attempt: Attempt, now: datetime) -> datetime | None:
        """When to try again; None: the delivery is dead."""
        p = self.policy
        code = attempt.status_code
        refused = code is not None and 400 <= code < 500 and code not in (408, 429)
        if refused and claim.attempts >= p.client_error_attempts:
            return None
        if (now - claim.first_attempt_at).total_seconds() >= p.give_up_after_s:
            return None
        return now + timedelta(seconds=p.backoff_s(claim.attempts))

    def run_once(self) -> int:
        """One round: claim what is due, send and record each; how many were claimed."""
        claimed = self.claim()
        if len(claimed) > 1 and self.policy.concurrency > 1:
            attempts = list(self._pool.map(self.send, claimed))
        else:
            attempts = [self.send(claim) for claim in claimed]
        delivered = [
            (claim.id, claim.attempts, attempt.status_code or 0)
            for claim, attempt in zip(claimed, attempts, strict=True)
            if attempt.delivered
        ]
        if delivered:
            # one transaction for the round's successes: one WAL flush, not one each
            now = self._clock.now()
            self._db.statements(lambda uow: records.record_delivered_many(uow, delivered, at=now))
        for claim, attempt in zip(claimed, attempts, strict=True):
            if not attempt.delivered:
                self.record(claim, attempt)
        return len(claimed)

    def run(self) -> None:
        """Rounds until ``stop``; a round that fails on the database is logged and
        tried again (its claims come back when their leases run out)."""
        while not self._stop.is_set():
            try:
                busy = self.run_once()
            except LedgerError as exc:
                log.warning("webhook delivery round failed, tried again later: %s", exc)
                busy = 0
            if not busy:
                self._stop.wait(self.policy.idle_s)
            elif busy < self.policy.batch:
                self._stop.wait(self.policy.gather_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="webhook-delivery", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._http.close()

    def counts(self) -> dict[str, int]:
        """Pending and dead deliveries now."""
        return self._db.statements(records.delivery_counts, atomic=False)


__all__ = [
    "COVERED_COMPONENTS",
    "EVENT_ID_HEADER",
    "Attempt",
    "DeliveryPolicy",
    "DeliveryWorker",
    "WebhookDesk",
    "WebhookKey",
    "check_event_types",
    "check_url",
    "event_body",
    "key_from_text",
    "local_key",
]
