"""The audit logs name the person with the key beside it (migration 0012), and the two
canonical encodings: entries written before the migration keep verifying, new ones
cover the key, and no entry can be relabelled to an encoding that does not."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from uuid import UUID

import pytest
from sqlalchemy import create_engine, text

from compliance import records as compliance_records
from ledger import migrate
from ledger.audit import AuditEntry
from settlement import bootstrap
from settlement.bootstrap import DatabaseUrls, Services
from settlement.clock import ManualClock
from settlement.domain import errors
from settlement.domain.states import State
from settlement.domain.values import Actor, Role
from settlement.services.compliance import ComplianceService
from settlement.services.keys import KeyService, actor_of
from settlement.settings import load_settings
from tests.support import ADMIN, ALLOCATOR, new_commitment


def test_version_2_matches_its_documentation() -> None:
    """Version 2 is version 1 with the key after the actor, under its own first line."""
    entry = AuditEntry(
        commitment_id=UUID("00000000-0000-4000-8000-000000000001"),
        seq=1,
        recorded_at=datetime(2026, 12, 7, 9, 30, 1, 5, tzinfo=UTC),
        actor="northwind/alice",
        key_id="key-a1",
        action="create",
        from_state=None,
        to_state="DRAFT",
        commitment_version=1,
        idempotency_key="k",
        payload="{}",
        chain=None,
        tx_hash=None,
        ledger_index=None,
        ledger_hash=None,
        prev_hash=None,
        entry_hash="",
        encoding_version=2,
    )
    by_hand = (
        b"settlement-audit/v2\n"
        b"36:00000000-0000-4000-8000-000000000001,1:1,27:2026-12-07T09:30:01.000005Z,"
        b"15:northwind/alice,6:key-a1,6:create,~,5:DRAFT,1:1,1:k,2:{},~,~,~,~,~,"
    )
    assert entry.canonical_bytes() == by_hand
    assert entry.computed_hash() == hashlib.sha256(by_hand).hexdigest()
    # the same fields under version 1 hash differently: the version is hashed
    old = AuditEntry(**{**entry.__dict__, "key_id": None, "encoding_version": 1})
    assert old.canonical_bytes().startswith(b"settlement-audit/v1\n")
    assert old.computed_hash() != AuditEntry(**{**entry.__dict__, "key_id": None}).computed_hash()
    with pytest.raises(ValueError, match="unknown canonical encoding version 3"):
        AuditEntry(**{**entry.__dict__, "encoding_version": 3}).canonical_bytes()


def _alice(engine: Services) -> Actor:
    keys = KeyService(engine.db, engine.clock)
    created = keys.create(
        role=Role.ALLOCATOR, party=ALLOCATOR.party, person="alice", created_by="test"
    )
    return actor_of(created.record)


def _tamper(owner_url: str, *statements: str) -> None:
    """As the owner, which may switch the append-only triggers off for a moment."""
    eng = create_engine(owner_url)
    tables = ("audit_log", "compliance_audit")
    try:
        with eng.begin() as c:
            for table in tables:
                c.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only"))
            for statement in statements:
                c.execute(text(statement))
            for table in tables:
                c.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER {table}_append_only"))
    finally:
        eng.dispose()


def test_an_entry_names_the_person_and_the_key_and_covers_the_key(
    fresh_engine: Services,
) -> None:
    alice = _alice(fresh_engine)
    assert (alice.id, alice.key_id) == ("party-northwind/alice", alice.key_id)
    created = fresh_engine.commitments.create(
        alice, deal_ref="D-1", amount="5", currency="USD", idempotency_key="i-1"
    )
    fresh_engine.commitments.withdraw(alice, created.commitment_id, expected_version=1)
    trail = fresh_engine.commitments.audit_trail(created.commitment_id)
    assert [(e.actor, e.key_id, e.encoding_version) for e in trail] == [
        ("party-northwind/alice", alice.key_id, 2)
    ] * 2
    assert all(e.computed_hash() == e.entry_hash for e in trail)
    history = fresh_engine.commitments.history(created.commitment_id)
    assert {h.actor for h in history} == {"party-northwind/alice"}
    record = fresh_engine.commitments.get(created.commitment_id)
    assert record.created_by == "party-northwind/alice"
    # a key written in afterwards breaks the hash: version 2 covers it
    _tamper(
        fresh_engine.urls.owner,
        f"UPDATE audit_log SET key_id = NULL WHERE commitment_id = '{created.commitment_id}'"
        " AND seq = 2",
    )
    (found,) = fresh_engine.commitments.verify_audit().breaks
    assert (found.seq, found.problem) == (2, "entry_hash does not match its contents (edited)")


def test_the_database_refuses_a_key_that_is_not_the_actors(fresh_engine: Services) -> None:
    alice = _alice(fresh_engine)
    mallory = Actor("party-northwind/mallory", Role.ALLOCATOR, "party-northwind", alice.key_id)
    with pytest.raises(errors.InvalidInput, match="is not a key of party-northwind/mallory"):
        fresh_engine.commitments.create(mallory, deal_ref="D-2", amount="5", currency="USD")
    ghost = Actor(alice.id, Role.ALLOCATOR, "party-northwind", "key-never-registered")
    with pytest.raises(errors.InvalidInput, match="key-never-registered is not a key of"):
        fresh_engine.commitments.create(ghost, deal_ref="D-3", amount="5", currency="USD")


def test_an_entry_relabelled_to_version_1_is_a_break(fresh_engine: Services) -> None:
    cid = new_commitment(fresh_engine.commitments, State.VERIFIED)
    where = f"commitment_id = '{cid}'"
    # the first entry: its stored hash is a version 2 hash
    _tamper(
        fresh_engine.urls.owner,
        f"UPDATE audit_log SET encoding_version = 1 WHERE {where} AND seq = 1",
    )
    (found,) = fresh_engine.commitments.verify_audit().breaks
    assert (found.seq, found.problem) == (1, "entry_hash does not match its contents (edited)")
    # a later one, even with its hash recomputed as version 1: the versions went down
    _tamper(
        fresh_engine.urls.owner,
        f"UPDATE audit_log SET encoding_version = 2 WHERE {where} AND seq = 1",
        f"UPDATE audit_log SET encoding_version = 1 WHERE {where} AND seq = 3",
        "UPDATE audit_log SET entry_hash = audit_entry_hash_of(audit_log)"
        f" WHERE {where} AND seq = 3",
    )
    (found,) = fresh_engine.commitments.verify_audit().breaks
    assert (found.seq, found.problem) == (3, "encoding version 1 after version 2 (downgraded)")


def test_a_version_1_entry_may_not_name_a_key(fresh_engine: Services) -> None:
    alice = _alice(fresh_engine)
    cid = fresh_engine.commitments.create(
        alice, deal_ref="D-4", amount="5", currency="USD"
    ).commitment_id
    where = f"commitment_id = '{cid}' AND seq = 1"
    # the database refuses the label outright; an owner who drops the check still fails
    with pytest.raises(Exception, match="audit_log_v1_names_no_key"):
        _tamper(fresh_engine.urls.owner, f"UPDATE audit_log SET encoding_version = 1 WHERE {where}")
    _tamper(
        fresh_engine.urls.owner,
        "ALTER TABLE audit_log DROP CONSTRAINT audit_log_v1_names_no_key",
        f"UPDATE audit_log SET encoding_version = 1 WHERE {where}",
        f"UPDATE audit_log SET entry_hash = audit_entry_hash_of(audit_log) WHERE {where}",
    )
    (found,) = fresh_engine.commitments.verify_audit().breaks
    assert (found.seq, found.problem) == (
        1,
        f"names key {alice.key_id} under encoding version 1, which does not cover it",
    )


def test_compliance_entries_name_the_person_and_a_relabel_breaks_them(
    fresh_engine: Services,
) -> None:
    desk = ComplianceService(fresh_engine.db, fresh_engine.clock)
    desk.register_officer(ADMIN, "officer-ada", display_name="Ada")
    keys = KeyService(fresh_engine.db, fresh_engine.clock)
    ada = actor_of(
        keys.create(
            role=Role.COMPLIANCE_OFFICER, party=None, person="officer-ada", created_by="test"
        ).record
    )
    assert (ada.id, ada.role) == ("officer-ada", Role.COMPLIANCE_OFFICER)
    desk.register_officer(ADMIN, "officer-grace", display_name="Grace")
    entries = desk.audit_entries()
    assert [(e.actor, e.encoding_version) for e in entries] == [(ADMIN.id, 2)] * 2
    assert desk.verify_audit().ok
    _tamper(
        fresh_engine.urls.owner, "UPDATE compliance_audit SET encoding_version = 1 WHERE seq = 2"
    )
    assert desk.verify_audit().breaks == [
        "compliance entry 2: encoding version 1 after version 2 (downgraded)"
    ]


def test_entries_before_the_migration_keep_verifying_and_old_keys_keep_working(
    fresh_urls: DatabaseUrls, clock: ManualClock
) -> None:
    """At 0011 an allocator key and a commitment exist, audited in version 1; after 0012
    the key is its own person, the old entries verify as they did, and the chain goes on
    in version 2 with the key beside, in Python and in SQL alike."""
    assert migrate.downgrade(fresh_urls.owner, "0011") == "0011"
    cid = uuid.uuid4()
    owner = create_engine(fresh_urls.owner)
    with owner.begin() as c:
        c.execute(
            text(
                "INSERT INTO api_keys (key_id, role, party, public_key, created_at, created_by)"
                " VALUES ('key-legacy', 'allocator', 'party-northwind', :pk, now(), 'test')"
            ),
            {"pk": bytes(32)},
        )
        c.execute(
            text(
                "SELECT * FROM commitment_create(:id, 'party-northwind', 'OLD-1', 10, 'USD',"
                " NULL, 'key-legacy', NULL, NULL, '{}', now())"
            ),
            {"id": cid},
        )
        c.execute(
            text(
                "INSERT INTO compliance_audit (seq, recorded_at, actor, action, subject_kind,"
                " subject, subject_version, payload, entry_hash) VALUES (0, now(), 'key-admin',"
                " 'sanctions_load', 'sanctions_list', 'old-list', 1, '{}', '')"
            )
        )
    assert migrate.upgrade(fresh_urls.owner) == migrate.head_revision()
    engine = bootstrap.build(
        load_settings(database_url=fresh_urls.owner),
        clock=clock,
        urls=fresh_urls,
    )
    try:
        record = KeyService(engine.db, engine.clock).get("key-legacy")
        assert record is not None and record.person == "key-legacy"
        legacy = actor_of(record)
        engine.commitments.withdraw(legacy, cid, expected_version=1)
        trail = engine.commitments.audit_trail(cid)
        assert [(e.actor, e.key_id, e.encoding_version) for e in trail] == [
            ("key-legacy", None, 1),
            ("key-legacy", "key-legacy", 2),
        ]
        assert engine.commitments.verify_audit().ok
        ComplianceService(engine.db, engine.clock).register_officer(
            ADMIN, "officer-ada", display_name="Ada"
        )
        assert ComplianceService(engine.db, engine.clock).verify_audit().ok
        with owner.connect() as c:
            sql_hashes = c.execute(
                text(
                    "SELECT audit_entry_hash_of(a) = a.entry_hash FROM audit_log a"
                    " UNION ALL SELECT compliance_audit_hash_of(c) = c.entry_hash"
                    " FROM compliance_audit c"
                )
            ).scalars()
            assert list(sql_hashes) == [True] * 4
            versions = c.execute(
                text("SELECT encoding_version FROM compliance_audit ORDER BY seq")
            ).scalars()
            assert list(versions) == [1, 2]
        with engine.db.unit_of_work() as uow:
            python = compliance_records.read_audit(uow.connection)
        assert [e.computed_hash() == e.entry_hash for e in python] == [True, True]
        # the chain holds version 2 entries now: going back would orphan their hashes
        with pytest.raises(Exception, match="encoding version 2 exist"):
            migrate.downgrade(fresh_urls.owner, "0011")
    finally:
        engine.close()
        owner.dispose()


def test_a_key_belongs_to_a_person_who_may_hold_it(fresh_engine: Services) -> None:
    keys = KeyService(fresh_engine.db, fresh_engine.clock)
    with pytest.raises(errors.NotAnOfficer, match="officer-nobody is not a registered"):
        keys.create(role="compliance_officer", party=None, person="officer-nobody", created_by="t")
    with pytest.raises(errors.InvalidInput, match="engine itself"):
        keys.create(role="admin", party=None, person="system", created_by="t")
    with pytest.raises(errors.InvalidInput, match="user name of its party"):
        keys.create(role="allocator", party="p1", person="bob smith", created_by="t")
    bob = keys.create(role="allocator", party="p1", person="p1/bob", created_by="t")
    assert bob.record.person == "p1/bob"
    # the database holds the same line for a key written by anyone but the key service
    eng = create_engine(fresh_engine.urls.owner)
    with eng.begin() as c, pytest.raises(Exception, match="names a user of its party"):
        c.execute(
            text(
                "INSERT INTO api_keys (key_id, role, party, person, public_key, created_at,"
                " created_by) VALUES ('k-x', 'allocator', 'p1', 'p2/bob', :pk, now(), 't')"
            ),
            {"pk": bytes(range(32))},
        )
    with eng.begin() as c, pytest.raises(Exception, match="only revocation may change a key"):
        c.execute(
            text("UPDATE api_keys SET person = 'p1/eve' WHERE key_id = :k"),
            {"k": bob.record.key_id},
        )
    eng.dispose()
