"""The key registry: who may sign API requests, in which role, for which party, as whom.

Keys are created by operators (``settle keys new``, straight on the database); the API
only reads them. Each key belongs to a person, named when it is registered: an officer
key to a registered officer id, an allocator key to a user of its party
(``<party>/<user>``), an admin or auditor key to the person's name. What a key signs is
done, and audited, as that person, with the key beside; a person may hold several keys
over time (``rotate``: a new key, the old one revoked) and stays who they are.

A registered key's public key, role, party and person never change, so they may be
kept in memory; whether it is revoked is read on every request, in the statement that
records the nonce, so a revoked key is refused from the next request on.
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
from settlement import signing
from settlement.clock import Clock
from settlement.domain import errors
from settlement.domain.values import KEY_ID, SYSTEM, Actor, Role, parse_text
from settlement.services.translate import translated

#: roles a key may be registered with (``system`` is the engine itself, never a key)
KEY_ROLES = (Role.ALLOCATOR, Role.COMPLIANCE_OFFICER, Role.ADMIN, Role.AUDITOR)
_KEY_ID = KEY_ID
#: an allocator's user name within its party, an admin's or an auditor's name
PERSON_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,99}")
#: public keys kept per process for verifying signatures
_VERIFYING_CACHE_MAX = 10_000


class KeyNotFound(errors.NotFound):
    code = "key_not_found"


@dataclass(frozen=True)
class NewKey:
    record: KeyRecord
    private_key: Ed25519PrivateKey


def actor_of(record: KeyRecord) -> Actor:
    """The engine's actor for a registered key: its person, role and party, and the key."""
    return Actor(record.person, Role(record.role), record.party, key_id=record.key_id)


def person_for(role: Role, party: str | None, person: str | None) -> str:
    """The person a new key of ``role`` (for ``party``) belongs to, as the audit logs will
    name them: an officer key's officer id as given (the database checks the registry),
    ``<party>/<user>`` for an allocator (``user`` alone or already prefixed), a name for
    an admin or auditor. ``InvalidInput`` when it is missing or malformed."""
    name = parse_text(person, name="person", max_chars=200, required=True)
    assert name is not None
    if name == SYSTEM.id:
        raise errors.InvalidInput(f"{SYSTEM.id!r} is the engine itself, not a person")
    if role is Role.COMPLIANCE_OFFICER:
        return name
    if role is Role.ALLOCATOR:
        assert party is not None
        user = name.removeprefix(f"{party}/")
        if not PERSON_NAME.fullmatch(user):
            raise errors.InvalidInput(
                "an allocator's person is a user name of its party: 1-100 of "
                "A-Z a-z 0-9 . _ @ -, starting with a letter or digit"
            )
        qualified = f"{party}/{user}"
        if len(qualified) > 200:
            raise errors.InvalidInput("party and user name together exceed 200 characters")
        return qualified
    if not PERSON_NAME.fullmatch(name):
        raise errors.InvalidInput(
            "a person's name is 1-100 of A-Z a-z 0-9 . _ @ -, starting with a letter or digit"
        )
    return name


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
        person: str,
        created_by: str,
        key_id: str | None = None,
    ) -> NewKey:
        """Generate an Ed25519 key pair and register its public key as ``person``'s
        (``person_for`` says what a person is in each role).

        Raises ``InvalidInput`` for a role that cannot hold a key, an allocator without
        a party, a malformed person or key id; ``NotAnOfficer`` for an officer key of
        an officer the registry does not know; ``Conflict`` if the key id is taken.
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
        whom = person_for(parsed, owner, person)
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
                person=whom,
                public_key=signing.public_key_bytes(private),
                at=at,
                created_by=created_by,
            )
        record = KeyRecord(
            ident,
            parsed.value,
            owner,
            whom,
            signing.public_key_bytes(private),
            at,
            created_by,
            None,
            None,
        )
        return NewKey(record, private)

    def rotate(self, key_id: str, *, created_by: str, new_key_id: str | None = None) -> NewKey:
        """A new key for the person, role and party of ``key_id``, which is then revoked
        (if it was not already): from now on the person signs with the new key, and what
        they did with either is recorded under the same name. ``KeyNotFound`` if unknown.

        The new key is registered before the old one is revoked, so the person is never
        left without a key; a failure between the two leaves both active, and rotating
        the old key again finishes the job.
        """
        old = self.get(key_id)
        if old is None:
            raise KeyNotFound(f"no key {key_id!r}")
        if person_for(Role(old.role), old.party, old.person) != old.person:
            # a key registered before keys named people (migration 0012) is its own person
            raise errors.InvalidInput(
                f"key {key_id} belongs to no person of its party ({old.person!r}); register "
                "a key for the person (settle keys new --person) and revoke this one"
            )
        created = self.create(
            role=old.role,
            party=old.party,
            person=old.person,
            created_by=created_by,
            key_id=new_key_id,
        )
        self.revoke(key_id, revoked_by=created_by)
        return created

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
