"""The ASGI layer in front of every route except the public ones (health, OpenAPI).

In order, for each request:

0. a request with neither a Signature nor a Signature-Input header is 401
   ``signature_missing`` at once, its body unread;
1. body size: a Content-Length or a streamed body over the limit is 413, before the
   body is read further;
2. signature (RFC 9421, ``settlement.signing``): any failure is 401 with the reason
   as the problem type. The signature is verified on the event loop with the public key
   held in memory (read from the database, in a worker thread, the first time this
   guard sees a key id). Then the database checks that the key is still registered and
   not revoked and records the nonce (a revoked key, or a reused nonce, is 401 from
   that very request on): for a read, one statement that decides the checks of all
   the reads arriving meanwhile; for a mutating request with a well-formed
   Idempotency-Key, the same check in the statement that claims the key (step 3),
   shared likewise with the other mutating requests (``settlement.api.batching``; under
   load a statement lingers a few milliseconds to carry more of them). These
   statements run on the event loop itself (``Database.call_one_async``), not in worker
   threads: a thread hand-off per statement cost more CPU than the statement. The
   key's registration becomes the request's ``Actor`` (``scope["state"]["actor"]``). At
   most every ``PRUNE_EVERY_S`` an accepted request starts a prune of nonces too old to
   replay, in the background: no request waits for it;
3. idempotency for mutating methods (DESIGN 6 at the HTTP level): the Idempotency-Key
   header is required (400, after the nonce check: a replay is a 401 whatever else is
   wrong); the fingerprint is SHA-256 over key id, method, target
   (path and query) and body, the body preceded by the If-Match value as a netstring
   (the expected version is part of what was asked); a completed record with the same
   fingerprint replays its stored status, body, ETag and Location with
   ``Idempotent-Replayed: true``; another fingerprint is 422; a live claim is 409.
   Only a 2xx response is stored (in one statement with the responses of the other
   requests completing meanwhile); any other outcome releases the claim, so a request
   that failed leaves its key unused (as the service does). Routes also pass the key
   to the service, so a claim taken over after a crash replays the service's result
   rather than acting twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from urllib.parse import quote

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger import api_keys
from ledger.api_keys import Claim, StoredResponse
from ledger.database import Database
from ledger.idempotency import fingerprint
from settlement import signing
from settlement.api import problems
from settlement.api.batching import GroupCall
from settlement.clock import Clock
from settlement.domain import errors
from settlement.domain.values import Actor, parse_idempotency_key
from settlement.services.keys import KeyService, actor_of
from settlement.services.translate import translated

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: how long a claimed idempotency key counts as in flight before another request may
#: take it over (its holder is presumed dead)
LEASE_S = 60
#: how often (at most) seen nonces past any replay window are deleted
PRUNE_EVERY_S = 60
#: under load (more than ``LINGER_SIBLINGS`` signed requests in progress in this
#: process) a guard statement waits ``LINGER_S`` before it starts, so it carries the
#: checks of the requests right behind (``settlement.api.batching``): in a closed loop
#: of 50 clients sending signed GETs, a statement carried 5 checks instead of 3, for
#: 3 ms more on latencies of over 100 ms
LINGER_S = 0.003
LINGER_SIBLINGS = 8
#: public keys a guard holds for verifying; beyond it the map starts over (keys are
#: few: a flood of new key ids costs database reads, not memory)
KEYS_HELD_MAX = 10_000


class Guard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: KeyService,
        db: Database,
        clock: Clock,
        max_body_bytes: int,
        public_paths: Iterable[str],
        public_prefixes: Iterable[str] = (),
        window_s: int = signing.WINDOW_S,
    ) -> None:
        self.app = app
        self._keys = keys
        self._db = db
        self._clock = clock
        self._max_body = max_body_bytes
        self._public = frozenset(public_paths)
        # a prefix covers itself and everything below it ("/console", "/console/...");
        # what lives there authenticates on its own (the console's sessions)
        self._public_prefixes = tuple(p.rstrip("/") for p in public_prefixes)
        self._window_s = window_s
        self._last_prune: datetime | None = None
        self._pruning: asyncio.Task[None] | None = None
        # key id -> its actor (registration) and public key, touched only on the loop. A
        # registered key's public key, role and party never change (migration 0004's
        # trigger refuses it), so what is held stays right; revocation is not held: the
        # nonce statement reads it on every request.
        self._held: dict[str, tuple[Actor, Ed25519PublicKey]] = {}
        # the guard's database calls, each shared by the requests arriving together
        # (settlement.api.batching)
        self._in_progress = 0
        self.nonces = GroupCall(keys.accept_nonces_async, linger_s=LINGER_S, busy=self._busy)
        self.claims = GroupCall(self._claim_requests, linger_s=LINGER_S, busy=self._busy)
        self.completions = GroupCall(self._complete_many, linger_s=LINGER_S, busy=self._busy)

    def _busy(self) -> bool:
        return self._in_progress > LINGER_SIBLINGS

    def _is_public(self, path: str) -> bool:
        if path in self._public:
            return True
        return any(path == p or path.startswith(p + "/") for p in self._public_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        self._in_progress += 1
        try:
            await self._guarded(scope, receive, send)
        finally:
            self._in_progress -= 1

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        instance = scope["path"]
        headers = _header_pairs(scope)
        fields = _fields(headers)
        if "signature" not in fields and "signature-input" not in fields:
            # an unsigned request is refused as unsigned whatever its size, unread
            await _send_problem(
                send,
                problems.ApiProblem(
                    "signature_missing", "the request has no Signature and no Signature-Input"
                ),
                instance,
            )
            return
        try:
            body = await self._read_body(fields, receive)
        except problems.ApiProblem as problem:
            await _send_problem(send, problem, instance)
            return
        request = signing.IncomingRequest(
            method=scope["method"], url=_target_uri(scope, fields), header_pairs=headers
        )
        now = self._clock.now()
        try:
            verified, actor = await self._verified(request, body, now)
            if scope["method"] in SAFE_METHODS:
                await self._accept_nonce(verified, now)
        except signing.SignatureRejected as exc:
            await _send_problem(send, problems.ApiProblem(exc.code, str(exc)), instance)
            return
        except errors.SettlementError as exc:
            await _send_engine_error(send, exc, instance)
            return
        scope.setdefault("state", {})["actor"] = actor
        replay_receive = _replaying(body, receive)
        if scope["method"] in SAFE_METHODS:
            self._prune_when_due(now)
            await self.app(scope, replay_receive, send)
            return
        await self._keyed(
            scope,
            replay_receive,
            send,
            verified=verified,
            actor=actor,
            fields=fields,
            body=body,
            now=now,
        )

    async def _read_body(self, fields: dict[str, str], receive: Receive) -> bytes:
        declared = fields.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise problems.ApiProblem("invalid_header", "Content-Length is not a number")
            if int(declared) > self._max_body:
                raise problems.ApiProblem(
                    "payload_too_large", f"the body limit is {self._max_body} bytes"
                )
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                raise problems.ApiProblem(
                    "payload_too_large", f"the body limit is {self._max_body} bytes"
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _verified(
        self, request: signing.IncomingRequest, body: bytes, now: datetime
    ) -> tuple[signing.Verified, Actor]:
        # Verification is CPU only (Ed25519 even releases the GIL), so it runs here on
        # the loop: in a worker thread the same check cost about 0.4 ms more CPU per
        # request (GIL hand-offs; bench/api.py). Only the first read of a key goes to one.
        try:
            return self._verify(request, body, now)
        except signing.KeyNotLoaded as missing:
            record, public = await run_in_threadpool(self._keys.public_key, missing.key_id)
            if len(self._held) >= KEYS_HELD_MAX:
                self._held.clear()
            self._held[record.key_id] = (actor_of(record), public)
            return self._verify(request, body, now)

    async def _accept_nonce(self, verified: signing.Verified, now: datetime) -> None:
        """The key and nonce check, in one statement with those of the requests arriving
        meanwhile (``settlement.api.batching``); a ``SignatureRejected`` if refused."""
        outcome = await self.nonces((verified.key_id, verified.nonce, now))
        self._refuse_unless_accepted(outcome, verified)

    def _refuse_unless_accepted(
        self, outcome: api_keys.NonceOutcome, verified: signing.Verified
    ) -> None:
        refused = self._keys.refusal(outcome, verified.key_id, verified.nonce)
        if refused is None:
            return
        if isinstance(refused, signing.KeyRevoked | signing.KeyUnknown):
            # a revoked key is refused by the database on each request anyway; not
            # holding it only saves memory
            self._held.pop(verified.key_id, None)
        raise refused

    def _verify(
        self, request: signing.IncomingRequest, body: bytes, now: datetime
    ) -> tuple[signing.Verified, Actor]:
        """Verify with held keys only; ``KeyNotLoaded`` for a key id not held."""
        found: list[Actor] = []

        def held(key_id: str) -> Ed25519PublicKey:
            entry = self._held.get(key_id)
            if entry is None:
                raise signing.KeyNotLoaded(key_id)
            found.append(entry[0])
            return entry[1]

        verified = signing.verify_request(
            request, body, lookup=held, now=now, window_s=self._window_s
        )
        assert len(found) == 1
        assert found[0].key_id == verified.key_id
        return verified, found[0]

    def _prune_when_due(self, now: datetime) -> None:
        # runs on the event loop, so the check and the update of ``_last_prune`` cannot
        # interleave: one prune at a time per process
        if self._pruning is not None and not self._pruning.done():
            return
        if self._last_prune is not None and now - self._last_prune <= timedelta(
            seconds=PRUNE_EVERY_S
        ):
            return
        self._last_prune = now
        self._pruning = asyncio.get_running_loop().create_task(self._prune())

    async def _prune(self) -> None:
        try:
            await run_in_threadpool(self._keys.prune_nonces, window_s=self._window_s)
        except errors.SettlementError as exc:
            # nothing depends on it being done now: the rows go at the next prune
            log.warning("pruning seen nonces failed: %s", exc)

    async def _keyed(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        verified: signing.Verified,
        actor: Actor,
        fields: dict[str, str],
        body: bytes,
        now: datetime,
    ) -> None:
        instance = scope["path"]
        key = fields.get("idempotency-key")
        claim_id = uuid.uuid4()
        try:
            refusal = _idempotency_key_refusal(key)
            if refusal is not None:
                # authenticated (its nonce spent) first, as every request is: a bad
                # signature or a replay is a 401 whatever else is wrong
                await self._accept_nonce(verified, now)
                await _send_problem(send, refusal, instance)
                return
            assert key is not None
            claimed = await self._claim(
                scope,
                verified,
                key=key,
                if_match=fields.get("if-match", ""),
                body=body,
                now=now,
                claim_id=claim_id,
            )
        except signing.SignatureRejected as exc:
            await _send_problem(send, problems.ApiProblem(exc.code, str(exc)), instance)
            return
        except errors.SettlementError as exc:
            await _send_engine_error(send, exc, instance)
            return
        self._prune_when_due(now)
        if await _answered_by_claim(send, claimed, key, instance):
            return
        await self._act_and_store(scope, receive, send, actor=actor, key=key, claim_id=claim_id)

    async def _claim(
        self,
        scope: Scope,
        verified: signing.Verified,
        *,
        key: str,
        if_match: str,
        body: bytes,
        now: datetime,
        claim_id: uuid.UUID,
    ) -> Claim:
        """Check the key, spend the nonce and claim ``key`` in one statement with those
        of the mutating requests arriving meanwhile (migration 0010). Raises
        ``SignatureRejected`` if the key or the nonce is refused."""
        fingerprinted = f"{len(if_match.encode())}:{if_match},".encode() + body
        outcome, claimed = await self.claims(
            api_keys.ClaimRequest(
                key_id=verified.key_id,
                nonce=verified.nonce,
                idempotency_key=key,
                fingerprint=fingerprint(
                    verified.key_id, scope["method"], _target(scope), fingerprinted
                ),
                claim_id=claim_id,
                at=now,
                lease_until=now + timedelta(seconds=LEASE_S),
            )
        )
        self._refuse_unless_accepted(outcome, verified)
        assert claimed is not None
        return claimed

    async def _act_and_store(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        actor: Actor,
        key: str,
        claim_id: uuid.UUID,
    ) -> None:
        # the HTTP-level record is the signing key's (the actor is the key's person)
        key_id = actor.key_id
        assert key_id is not None, "a signed request's actor names its key"
        captured = _Captured()
        try:
            await self.app(scope, receive, captured.send)
        except BaseException:
            await self._release(key_id, key, claim_id)
            raise
        response = captured.stored()
        if 200 <= response.status < 300:
            try:
                await self.completions(
                    api_keys.Completion(
                        key_id=key_id,
                        idempotency_key=key,
                        claim_id=claim_id,
                        response=response,
                        at=self._clock.now(),
                    )
                )
            except errors.SettlementError:
                # the change is made; the service replays it for a retry with this key
                await self._release(key_id, key, claim_id)
        else:
            await self._release(key_id, key, claim_id)
        await captured.forward(send)

    async def _release(self, key_id: str, key: str, claim_id: uuid.UUID) -> None:
        # on failure the lease runs out and a retry takes the claim over
        with contextlib.suppress(errors.SettlementError), translated():
            await api_keys.release_async(
                self._db, key_id=key_id, idempotency_key=key, claim_id=claim_id
            )

    async def _claim_requests(
        self, requests: Sequence[api_keys.ClaimRequest]
    ) -> list[tuple[api_keys.NonceOutcome, Claim | None]]:
        with translated():
            return await api_keys.claim_requests_async(self._db, requests)

    async def _complete_many(self, completions: Sequence[api_keys.Completion]) -> list[bool]:
        with translated():
            return await api_keys.complete_many_async(self._db, completions)


class _Captured:
    """A response held back until its idempotency record is written."""

    def __init__(self) -> None:
        self.start: Message | None = None
        self.chunks: list[bytes] = []

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.start = message
        elif message["type"] == "http.response.body":
            self.chunks.append(message.get("body", b""))

    def stored(self) -> StoredResponse:
        assert self.start is not None, "the route sent no response"
        raw = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self.start["headers"]}
        return StoredResponse(
            status=int(self.start["status"]),
            content_type=raw.get("content-type"),
            etag=raw.get("etag"),
            location=raw.get("location"),
            body=b"".join(self.chunks),
        )

    async def forward(self, send: Send) -> None:
        assert self.start is not None
        await send(self.start)
        await send({"type": "http.response.body", "body": b"".join(self.chunks)})


def _idempotency_key_refusal(key: str | None) -> problems.ApiProblem | None:
    """Why a mutating request's Idempotency-Key header is refused; None if it is not."""
    if key is None:
        return problems.ApiProblem(
            "idempotency_key_required", "a mutating request needs an Idempotency-Key header"
        )
    try:
        parse_idempotency_key(key)
    except errors.InvalidInput as exc:
        return problems.ApiProblem("invalid_header", str(exc))
    return None


def _header_pairs(scope: Scope) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]


def _fields(headers: list[tuple[str, str]]) -> dict[str, str]:
    """Each field by its lowercase name, field lines of one name joined with ", "."""
    fields: dict[str, str] = {}
    for name, value in headers:
        lowered = name.lower()
        fields[lowered] = f"{fields[lowered]}, {value}" if lowered in fields else value
    return fields


def _target(scope: Scope) -> str:
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else quote(scope["path"])
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query else path


def _target_uri(scope: Scope, fields: dict[str, str]) -> str:
    host = fields.get("host")
    if host is None:
        server = scope.get("server") or ("localhost", None)
        host = f"{server[0]}:{server[1]}" if server[1] else str(server[0])
    return f"{scope['scheme']}://{host}{_target(scope)}"


def _replaying(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _send_problem(send: Send, problem: problems.ApiProblem, instance: str) -> None:
    body = problems.body(problem.code, problem.status, problem.detail, instance=instance)
    headers = [("content-type", problems.MEDIA_TYPE), *problem.headers.items()]
    await _send(send, problem.status, body, headers)


async def _send_engine_error(
    send: Send,
    exc: errors.SettlementError,
    instance: str,
    headers: dict[str, str] | None = None,
) -> None:
    await _send_problem(
        send,
        problems.ApiProblem(exc.code, str(exc), status=exc.http_status, headers=headers),
        instance,
    )


async def _answered_by_claim(send: Send, claimed: Claim, key: str, instance: str) -> bool:
    """Answer a request whose key another request holds (a replay of its stored
    response, 422 for another request under the key, 409 while it is in flight); False
    when this request claimed the key and is to be acted on."""
    match claimed.outcome:
        case "replay":
            assert claimed.response is not None
            await _send_stored(send, claimed.response, replayed=True)
            return True
        case "mismatch":
            await _send_engine_error(
                send,
                errors.IdempotencyKeyReused(
                    f"idempotency key {key!r} was already used for a different request"
                ),
                instance,
            )
            return True
        case "in_flight":
            await _send_engine_error(
                send,
                errors.RequestInFlight(f"a request with idempotency key {key!r} is in flight"),
                instance,
                headers={"retry-after": "1"},
            )
            return True
        case "claimed":
            return False


async def _send_stored(send: Send, stored: StoredResponse, *, replayed: bool) -> None:
    headers: list[tuple[str, str]] = []
    if stored.content_type:
        headers.append(("content-type", stored.content_type))
    if stored.etag:
        headers.append(("etag", stored.etag))
    if stored.location:
        headers.append(("location", stored.location))
    if replayed:
        headers.append(("idempotent-replayed", "true"))
    await _send(send, stored.status, stored.body, headers)
