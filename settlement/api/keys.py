"""The key registry: who may sign API requests, in which role, for which party.

Keys are created by operators (``settle keys new``, straight on the database); the API
only reads them. A registered key's public key, role and party never change, so they
may be kept in memory; whether it is revoked is read on every request, in the statement
that records the nonce, so a revoked key is refused from the next request on.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger import api_keys
from ledger.api_keys import KeyRecord
from ledger.database import Database
from settlement import errors
from settlement.api import signing
from settlement.clock import Clock
from settlement.domain import Actor, Role, parse_text
from settlement.translate import translated

#: roles a key may be registered with (``system`` is the engine itself, never a key)
KEY_ROLES = (Role.ALLOCATOR, Role.COMPLIANCE_OFFICER, Role.ADMIN, Role.AUDITOR)
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: public keys kept per process for verifying signatures
_VERIFYING_CACHE_MAX = 10_000


class KeyNotFound(errors.SettlementError):
    code = "key_not_found"


@dataclass(frozen=True)
class NewKey:
    record: KeyRecord
    private_key: Ed25519PrivateKey


def actor_of(record: KeyRecord) -> Actor:
    """The engine's actor for a registered key: its id, role and party."""
    return Actor(record.key_id, Role(record.role), record.party)


class KeyService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._verifying: dict[str, tuple[KeyRecord, Ed25519PublicKey]] = {}

    def create(
        self,
        *,
        role: Role | str,
        party: str | None,
        created_by: str,
        key_id: str | None = None,
    ) -> NewKey:
        """Generate an Ed25519 key pair and register its public key.

        Raises ``InvalidInput`` for a role that cannot hold a key, an allocator without
        a party, or a malformed key id; ``Conflict`` if the key id is taken.
        """
        try:
            parsed = Role(role)
        except ValueError:
            raise errors.InvalidInput(
                f"role must be one of {', '.join(r.value for r in KEY_ROLES)}"
            ) from None
        if parsed not in KEY_ROLES:
            raise errors.InvalidInput(f"a key cannot act as {parsed}")
        owner = parse_text(party, name="party", max_chars=200, required=parsed is Role.ALLOCATOR)
        ident = key_id or f"key-{secrets.token_hex(8)}"
        if not _KEY_ID.fullmatch(ident):
            raise errors.InvalidInput("key id must be 1-64 of A-Z a-z 0-9 . _ -")
        private = signing.new_private_key()
        at = self._clock.now()
        with translated():
            api_keys.insert_key(
                self._db,
                key_id=ident,
                role=parsed.value,
                party=owner,
                public_key=signing.public_key_bytes(private),
                at=at,
                created_by=created_by,
            )
        record = KeyRecord(
            ident,
            parsed.value,
            owner,
            signing.public_key_bytes(private),
            at,
            created_by,
            None,
            None,
        )
        return NewKey(record, private)

    def revoke(self, key_id: str, *, revoked_by: str) -> bool:
        """Revoke a key; False if it was already revoked. ``KeyNotFound`` if unknown."""
        with translated():
            outcome = api_keys.revoke_key(
                self._db, key_id, at=self._clock.now(), revoked_by=revoked_by
            )
        if outcome is None:
            raise KeyNotFound(f"no key {key_id!r}")
        return outcome

    def list(self) -> list[KeyRecord]:
        with translated():
            return api_keys.list_keys(self._db)

    def get(self, key_id: str) -> KeyRecord | None:
        with translated():
            return api_keys.load_key(self._db, key_id)

    # -- what request verification needs ----------------------------------------------

    def active_public_key(self, key_id: str) -> tuple[KeyRecord, Ed25519PublicKey]:
        """The key's record and public key; ``KeyUnknown`` / ``KeyRevoked`` otherwise."""
        if not _KEY_ID.fullmatch(key_id):
            raise signing.KeyUnknown("the keyid is not a registered key")
        record = self.get(key_id)
        if record is None:
            raise signing.KeyUnknown(f"no registered key {key_id!r}")
        if record.revoked:
            raise signing.KeyRevoked(f"key {key_id!r} was revoked")
        return record, Ed25519PublicKey.from_public_bytes(record.public_key)

    def public_key(self, key_id: str) -> tuple[KeyRecord, Ed25519PublicKey]:
        """The key's record and public key, to verify a signature with, from this
        process's cache when it is there: a registered key's public key, role and party
        never change. Revocation is not read here: ``accept_nonces`` checks it in the
        same round trip that records the nonce. ``KeyUnknown`` / ``KeyRevoked`` when the
        database is read and says so."""
        cached = self._verifying.get(key_id)
        if cached is not None:
            return cached
        record, public = self.active_public_key(key_id)
        if len(self._verifying) >= _VERIFYING_CACHE_MAX:
            self._verifying.clear()  # keys are few; a flood of new ones only costs reads
        self._verifying[key_id] = (record, public)
        return record, public

    def accept_nonces(
        self, checks: Sequence[api_keys.NonceCheck]
    ) -> Sequence[api_keys.NonceOutcome]:
        """Check that each key is still registered and not revoked and record each
        nonce, for many requests in one statement (``api_keys.accept_nonces``): each
        one's outcome, in order (``refusal`` says what it means). Engine errors only."""
        with translated():
            return api_keys.accept_nonces(self._db, checks)

    async def accept_nonces_async(
        self, checks: Sequence[api_keys.NonceCheck]
    ) -> Sequence[api_keys.NonceOutcome]:
        """``accept_nonces`` on the running event loop, without a worker thread."""
        with translated():
            return await api_keys.accept_nonces_async(self._db, checks)

    def refusal(
        self, outcome: api_keys.NonceOutcome, key_id: str, nonce: str
    ) -> signing.SignatureRejected | None:
        """Why a request with this nonce check outcome is refused; None if accepted."""
        match outcome:
            case "accepted":
                return None
            case "replayed":
                return signing.NonceReused(f"nonce {nonce!r} was already used by {key_id}")
            case "revoked":
                self._verifying.pop(key_id, None)
                return signing.KeyRevoked(f"key {key_id!r} was revoked")
            case "unknown":
                self._verifying.pop(key_id, None)
                return signing.KeyUnknown(f"no registered key {key_id!r}")

    def prune_nonces(self, *, window_s: int = signing.WINDOW_S) -> int:
        """Forget nonces no replay could still use: a signature recorded more than two
        windows ago (plus a second) has a ``created`` outside the window by now."""
        before = self._clock.now() - timedelta(seconds=2 * window_s + 1)
        with translated():
            return api_keys.prune_nonces(self._db, before=before)

    def now(self) -> datetime:
        return self._clock.now()
