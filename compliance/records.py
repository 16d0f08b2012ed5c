"""Compliance records in PostgreSQL: officers, KYC records, sanctions lists, screenings,
approvals, and the compliance audit chain (appended and read here, verified by
``compliance.audit``). All SQL of the compliance tables lives in this module.

Every function takes an open ``UnitOfWork`` (or a connection for reads) and leaves
committing to its caller, so a service composes several of them into one transaction.
SQL errors arrive translated by ``ledger`` (``LedgerError``); nothing here decides who
may do what.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from compliance.audit import ComplianceEntry
from compliance.kyc import KycRecord, KycStatus, RiskRating
from compliance.sanctions import ListRef, ParsedList, SanctionsEntry, SanctionsIndex
from compliance.screening import Finding, Outcome, Screening, Subject
from ledger.audit import payload_text
from ledger.database import Statements, UnitOfWork
from ledger.errors import translate

OPEN_STATES = ("PENDING_REVIEW", "VERIFIED", "ESCROWED")


def _rows(connection: Connection, sql: str, params: Mapping[str, Any]) -> list[Any]:
    try:
        return list(connection.execute(text(sql), dict(params)))
    except SQLAlchemyError as exc:
        raise translate(exc) from exc


# -- the compliance audit chain ---------------------------------------------------------


def append_audit(
    uow: UnitOfWork,
    *,
    actor: str,
    action: str,
    subject_kind: str,
    subject: str,
    subject_version: int,
    payload: Mapping[str, Any],
    at: datetime,
    key_id: str | None = None,
) -> int:
    """Append one entry (the database assigns seq and hashes); returns its seq.

    ``actor`` is the person who acted and ``key_id`` the key that signed their request
    (None when none did); the database refuses a key that is not ``actor``'s.
    """
    row = uow.execute(
        "INSERT INTO compliance_audit (seq, recorded_at, actor, key_id, action, subject_kind,"
        " subject, subject_version, payload, entry_hash) VALUES (0, :at, :actor, :key_id,"
        " :action, :kind, :subject, :version, :payload, '') RETURNING seq",
        {
            "at": at,
            "actor": actor,
            "key_id": key_id,
            "action": action,
            "kind": subject_kind,
            "subject": subject,
            "version": subject_version,
            "payload": payload_text(payload),
        },
    ).one()
    return int(row[0])


def read_audit(
    connection: Connection, *, subject_kind: str | None = None, subject: str | None = None
) -> list[ComplianceEntry]:
    """The chain's entries in ``seq`` order, optionally only those of one subject kind
    and/or one subject (then with gaps in ``seq``: only the whole chain verifies)."""
    rows = _rows(
        connection,
        "SELECT seq, recorded_at, actor, key_id, action, subject_kind, subject,"
        " subject_version, payload, prev_hash, entry_hash, encoding_version"
        " FROM compliance_audit"
        " WHERE (CAST(:kind AS text) IS NULL OR subject_kind = :kind)"
        "   AND (CAST(:subject AS text) IS NULL OR subject = :subject)"
        " ORDER BY seq",
        {"kind": subject_kind, "subject": subject},
    )
    return [ComplianceEntry(*r) for r in rows]


# -- officers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Officer:
    officer_id: str
    display_name: str
    senior: bool
    active: bool
    version: int


def load_officer(connection: Connection, officer_id: str) -> Officer | None:
    rows = _rows(
        connection,
        "SELECT officer_id, display_name, senior, active, version FROM compliance_officers"
        " WHERE officer_id = :id",
        {"id": officer_id},
    )
    return Officer(*rows[0]) if rows else None


def list_officers(connection: Connection) -> list[Officer]:
    rows = _rows(
        connection,
        "SELECT officer_id, display_name, senior, active, version FROM compliance_officers"
        " ORDER BY officer_id",
        {},
    )
    return [Officer(*r) for r in rows]


def save_officer(
    uow: UnitOfWork, officer: Officer, *, actor: str, at: datetime, key_id: str | None = None
) -> Officer:
    """Register (version 0 given) or update (the stored version given) an officer."""
    prior = load_officer(uow.connection, officer.officer_id)
    version = 1 if prior is None else prior.version + 1
    params = {
        "id": officer.officer_id,
        "name": officer.display_name,
        "senior": officer.senior,
        "active": officer.active,
        "version": version,
        "actor": actor,
        "at": at,
    }
    if prior is None:
        uow.execute(
            "INSERT INTO compliance_officers (officer_id, display_name, senior, active, version,"
            " updated_by, updated_at) VALUES (:id, :name, :senior, :active, :version, :actor,"
            " :at)",
            params,
        )
    else:
        uow.execute(
            "UPDATE compliance_officers SET display_name = :name, senior = :senior,"
            " active = :active, version = :version, updated_by = :actor, updated_at = :at"
            " WHERE officer_id = :id",
            params,
        )
    append_audit(
        uow,
        actor=actor,
        action="officer_register" if prior is None else "officer_update",
        subject_kind="officer",
        subject=officer.officer_id,
        subject_version=version,
        payload={
            "display_name": officer.display_name,
            "senior": officer.senior,
            "active": officer.active,
        },
        at=at,
        key_id=key_id,
    )
    return Officer(
        officer.officer_id, officer.display_name, officer.senior, officer.active, version
    )


# -- KYC records ------------------------------------------------------------------------

_KYC_COLUMNS = (
    "party, legal_name, jurisdiction, risk_rating, accredited, status, expires_on, aliases,"
    " lei, registration_number, version"
)


def _kyc(row: Sequence[Any]) -> KycRecord:
    return KycRecord(
        party=row[0],
        legal_name=row[1],
        jurisdiction=row[2],
        risk_rating=RiskRating(row[3]),
        accredited=row[4],
        status=KycStatus(row[5]),
        expires_on=row[6],
        aliases=tuple(row[7]),
        lei=row[8],
        registration_number=row[9],
        version=row[10],
    )


def load_kyc(connection: Connection, parties: Iterable[str]) -> dict[str, KycRecord]:
    rows = _rows(
        connection,
        f"SELECT {_KYC_COLUMNS} FROM kyc_records WHERE party = ANY(:parties)",  # noqa: S608 - constant columns
        {"parties": list(parties)},
    )
    return {row[0]: _kyc(row) for row in rows}


def party_exists(uow: Statements, party: str) -> bool:
    """Whether ``party`` has a KYC record (the one test of "is this a party")."""
    row = uow.execute("SELECT 1 FROM kyc_records WHERE party = :party", {"party": party})
    return row.one_or_none() is not None


def list_kyc(connection: Connection) -> list[KycRecord]:
    rows = _rows(connection, f"SELECT {_KYC_COLUMNS} FROM kyc_records ORDER BY party", {})  # noqa: S608 - constant columns
    return [_kyc(r) for r in rows]


def save_kyc(
    uow: UnitOfWork,
    record: KycRecord,
    *,
    prior_version: int | None,
    actor: str,
    at: datetime,
    key_id: str | None = None,
) -> KycRecord:
    """Insert (``prior_version`` None) or update a record from ``prior_version``.

    Returns the stored record with its new version, or None when the stored version is
    not ``prior_version`` (the caller reports the conflict). The change and its audit
    entry commit together or not at all.
    """
    version = 1 if prior_version is None else prior_version + 1
    params = {
        **record.as_payload(),
        "aliases": list(record.aliases),
        "expires_on": record.expires_on,
        "version": version,
        "prior": prior_version,
        "actor": actor,
        "at": at,
    }
    if prior_version is None:
        uow.execute(
            "INSERT INTO kyc_records (party, legal_name, aliases, lei, registration_number,"
            " jurisdiction, risk_rating, accredited, status, expires_on, version, updated_by,"
            " updated_at) VALUES (:party, :legal_name, :aliases, :lei, :registration_number,"
            " :jurisdiction, :risk_rating, :accredited, :status, :expires_on, :version, :actor,"
            " :at)",
            params,
        )
    else:
        updated = uow.execute(
            "UPDATE kyc_records SET legal_name = :legal_name, aliases = :aliases, lei = :lei,"
            " registration_number = :registration_number, jurisdiction = :jurisdiction,"
            " risk_rating = :risk_rating, accredited = :accredited, status = :status,"
            " expires_on = :expires_on, version = :version, updated_by = :actor,"
            " updated_at = :at WHERE party = :party AND version = :prior RETURNING version",
            params,
        ).first()
        if updated is None:
            raise KycVersionConflict(record.party, prior_version)
    append_audit(
        uow,
        actor=actor,
        action="kyc_create" if prior_version is None else "kyc_update",
        subject_kind="kyc",
        subject=record.party,
        subject_version=version,
        payload=record.as_payload(),
        at=at,
        key_id=key_id,
    )
    return replace(record, version=version)


class KycVersionConflict(Exception):
    """The stored KYC record is not at the version the caller read."""

    def __init__(self, party: str, version: int) -> None:
        super().__init__(f"KYC record of {party} is no longer at version {version}")


# -- sanctions lists --------------------------------------------------------------------


def lists_in_force(connection: Connection) -> list[ListRef]:
    """The latest loaded version of every list name."""
    rows = _rows(
        connection,
        "SELECT DISTINCT ON (list_name) id, list_name, sha256 FROM sanctions_list_versions"
        " ORDER BY list_name, id DESC",
        {},
    )
    return [ListRef(int(r[0]), r[1], r[2]) for r in rows]


def list_entries(connection: Connection, version_id: int) -> list[SanctionsEntry]:
    rows = _rows(
        connection,
        "SELECT entry_id, kind, name, aliases, identifiers, programs FROM sanctions_entries"
        " WHERE list_version_id = :id ORDER BY entry_id",
        {"id": version_id},
    )
    return [SanctionsEntry(r[0], r[1], r[2], tuple(r[3]), tuple(r[4]), r[5]) for r in rows]


@dataclass(frozen=True)
class ListVersion:
    version_id: int
    list_name: str
    format: str
    source_file: str
    sha256: str
    entry_count: int
    loaded_by: str
    loaded_at: datetime


def list_versions(connection: Connection) -> list[ListVersion]:
    rows = _rows(
        connection,
        "SELECT id, list_name, format, source_file, sha256, entry_count, loaded_by, loaded_at"
        " FROM sanctions_list_versions ORDER BY id",
        {},
    )
    return [ListVersion(*r) for r in rows]


def store_list(
    uow: UnitOfWork,
    *,
    list_name: str,
    parsed: ParsedList,
    source_file: str,
    actor: str,
    at: datetime,
    key_id: str | None = None,
) -> ListVersion:
    """Store a new version of ``list_name``: from the commit on, it is the one in force."""
    version_id = int(
        uow.execute(
            "INSERT INTO sanctions_list_versions (list_name, format, source_file, sha256,"
            " entry_count, loaded_by, loaded_at) VALUES (:name, :format, :source, :sha,"
            " :count, :actor, :at) RETURNING id",
            {
                "name": list_name,
                "format": parsed.format,
                "source": source_file,
                "sha": parsed.sha256,
                "count": len(parsed.entries),
                "actor": actor,
                "at": at,
            },
        ).scalar_one()
    )
    _insert_entries(uow, version_id, parsed.entries)
    append_audit(
        uow,
        actor=actor,
        action="sanctions_load",
        subject_kind="sanctions_list",
        subject=list_name,
        subject_version=version_id,
        payload={
            "format": parsed.format,
            "source_file": source_file,
            "sha256": parsed.sha256,
            "entry_count": len(parsed.entries),
        },
        at=at,
        key_id=key_id,
    )
    return ListVersion(
        version_id,
        list_name,
        parsed.format,
        source_file,
        parsed.sha256,
        len(parsed.entries),
        actor,
        at,
    )


def _insert_entries(uow: UnitOfWork, version_id: int, entries: Sequence[SanctionsEntry]) -> None:
    """A list version's entries, as one batched statement (executemany)."""
    uow.connection.execute(
        text(
            "INSERT INTO sanctions_entries (list_version_id, entry_id, kind, name, aliases,"
            " identifiers, programs) VALUES (:v, :entry_id, :kind, :name, :aliases,"
            " :identifiers, :programs)"
        ),
        [
            {
                "v": version_id,
                "entry_id": e.entry_id,
                "kind": e.kind,
                "name": e.name,
                "aliases": list(e.aliases),
                "identifiers": list(e.identifiers),
                "programs": e.programs,
            }
            for e in entries
        ],
    )


# -- commitments: counterparties, screening, approvals ------------------------------------


def record_counterparty(uow: UnitOfWork, commitment_id: UUID, counterparty: str) -> None:
    uow.execute(
        "INSERT INTO commitment_counterparties (commitment_id, counterparty) VALUES (:id, :cp)",
        {"id": commitment_id, "cp": counterparty},
    )


@dataclass(frozen=True)
class SubmitContext:
    """A commitment about to be submitted, read under its row lock."""

    state: str
    version: int
    subject: Subject


def lock_for_submit(uow: UnitOfWork, commitment_id: UUID, *, now: datetime) -> SubmitContext | None:
    """Lock the commitment row and read what screening needs; None if there is no row.

    The limit totals exclude this commitment and are exact at the snapshot read:
    ``party_submitted_24h`` is what the owner's other commitments in the currency,
    submitted after ``now - 24 h`` and now PENDING_REVIEW .. SETTLED, amount to;
    ``asset_open_total`` what the other open commitments in the currency amount to.
    Both are read from counters (``_limit_totals``), at a cost that does not grow with
    the number of commitments.
    """
    row = uow.execute(
        "SELECT c.owner_party, c.amount, c.currency, c.state, c.version,"
        " (SELECT counterparty FROM commitment_counterparties WHERE commitment_id = c.id)"
        " FROM commitments c WHERE c.id = :id FOR UPDATE",
        {"id": commitment_id},
    ).one_or_none()
    if row is None:
        return None
    owner, amount, currency, state, version, counterparty = tuple(row)
    party_24h, open_total = _limit_totals(
        uow, commitment_id, owner, currency, since=now - timedelta(hours=24)
    )
    if state in OPEN_STATES:
        open_total -= Decimal(amount)
    return SubmitContext(
        state=state,
        version=version,
        subject=Subject(
            commitment_id=commitment_id,
            owner_party=owner,
            counterparty=counterparty,
            amount=Decimal(amount),
            currency=currency,
            party_submitted_24h=party_24h,
            asset_open_total=open_total,
        ),
    )


#: the counters of migration 0015. The party's window (since, now]: the buckets that
#: start after the bucket holding ``since`` from the sharded counters, the edge bucket's
#: counted submits after ``since`` from the marks (an index range of one bucket), less
#: this commitment's own mark. The open total includes this commitment if it is open.
_LIMIT_TOTALS = (
    "SELECT"
    " (SELECT coalesce(sum(b.amount), 0) FROM party_submit_buckets b"
    "   WHERE b.owner_party = :owner AND b.currency = :ccy"
    "     AND b.bucket >= limit_bucket_next(:since))"
    " + (SELECT coalesce(sum(m.amount), 0) FROM commitment_submit_marks m"
    "   WHERE m.owner_party = :owner AND m.currency = :ccy AND m.counted"
    "     AND m.submitted_at > :since AND m.submitted_at < limit_bucket_next(:since))"
    " - (SELECT coalesce(sum(m.amount), 0) FROM commitment_submit_marks m"
    "   WHERE m.commitment_id = :id AND m.counted AND m.submitted_at > :since),"
    " (SELECT coalesce(sum(o.amount), 0) FROM open_totals o WHERE o.currency = :ccy)"
)


def _limit_totals(
    uow: UnitOfWork, commitment_id: UUID, owner: str, currency: str, *, since: datetime
) -> tuple[Decimal, Decimal]:
    """(the owner's counted submits after ``since`` in the currency, less this
    commitment's; the currency's open total, this commitment included if it is open)."""
    party, open_total = tuple(
        uow.execute(
            _LIMIT_TOTALS, {"owner": owner, "ccy": currency, "id": commitment_id, "since": since}
        ).one()
    )
    return Decimal(party), Decimal(open_total)


def save_screening(
    uow: UnitOfWork,
    commitment_id: UUID,
    review_version: int,
    screening: Screening,
    *,
    at: datetime,
) -> None:
    uow.execute(
        "INSERT INTO screenings (commitment_id, review_version, screened_at, outcome,"
        " approvals_required, list_versions, findings) VALUES (:id, :rv, :at, :outcome,"
        " :required, :lists, CAST(:findings AS jsonb))",
        {
            "id": commitment_id,
            "rv": review_version,
            "at": at,
            "outcome": screening.outcome.value,
            "required": screening.approvals_required,
            "lists": list(screening.list_versions),
            "findings": json.dumps([f.as_payload() for f in screening.findings]),
        },
    )


@dataclass(frozen=True)
class StoredScreening:
    review_version: int
    screened_at: datetime
    screening: Screening


def screenings_of(connection: Connection, commitment_id: UUID) -> list[StoredScreening]:
    rows = _rows(
        connection,
        "SELECT review_version, screened_at, outcome, approvals_required, list_versions,"
        " findings FROM screenings WHERE commitment_id = :id ORDER BY review_version",
        {"id": commitment_id},
    )
    return [
        StoredScreening(
            r[0],
            r[1],
            Screening(
                outcome=Outcome(r[2]),
                approvals_required=int(r[3]),
                list_versions=tuple(int(v) for v in r[4]),
                findings=tuple(Finding.from_payload(f) for f in r[5]),
            ),
        )
        for r in rows
    ]


@dataclass(frozen=True)
class Approval:
    review_version: int
    officer_id: str
    senior: bool
    override_reason: str | None
    approved_at: datetime


def approvals_of(connection: Connection, commitment_id: UUID) -> list[Approval]:
    rows = _rows(
        connection,
        "SELECT review_version, officer_id, senior, override_reason, approved_at"
        " FROM commitment_approvals WHERE commitment_id = :id"
        " ORDER BY review_version, approved_at, officer_id",
        {"id": commitment_id},
    )
    return [Approval(*r) for r in rows]


@dataclass(frozen=True)
class QueueItem:
    commitment_id: UUID
    owner_party: str
    counterparty: str | None
    deal_ref: str
    amount: Decimal
    currency: str
    version: int
    submitted_by: str | None
    submitted_at: datetime
    outcome: str
    approvals_required: int
    approvals: int


def review_queue(connection: Connection, *, limit: int = 100) -> list[QueueItem]:
    """Commitments under review, oldest submission first."""
    rows = _rows(
        connection,
        "SELECT c.id, c.owner_party, cp.counterparty, c.deal_ref, c.amount, c.currency,"
        " c.version, c.submitted_by, c.updated_at, s.outcome, s.approvals_required,"
        " (SELECT count(*) FROM commitment_approvals a WHERE a.commitment_id = c.id"
        "   AND a.review_version = c.version)"
        " FROM commitments c"
        " JOIN screenings s ON s.commitment_id = c.id AND s.review_version = c.version"
        " LEFT JOIN commitment_counterparties cp ON cp.commitment_id = c.id"
        " WHERE c.state = 'PENDING_REVIEW' ORDER BY c.updated_at, c.id LIMIT :limit",
        {"limit": limit},
    )
    return [
        QueueItem(
            commitment_id=r[0],
            owner_party=r[1],
            counterparty=r[2],
            deal_ref=r[3],
            amount=r[4],
            currency=r[5],
            version=r[6],
            submitted_by=r[7],
            submitted_at=r[8],
            outcome=r[9],
            approvals_required=int(r[10]),
            approvals=int(r[11]),
        )
        for r in (tuple(row) for row in rows)
    ]


def today_of(moment: datetime) -> date:
    """The calendar day (UTC) KYC expiry is judged on."""
    return moment.date()


class SanctionsIndexCache:
    """The matching index of the lists in force, rebuilt only when a list changes.

    ``current`` costs one small query when nothing changed (which list versions are in
    force); a new load anywhere is picked up by the next screening. Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._index = SanctionsIndex()

    def current(self, connection: Connection) -> SanctionsIndex:
        refs = tuple(lists_in_force(connection))
        with self._lock:
            if refs == self._index.lists:
                return self._index
        index = SanctionsIndex.build(
            (ref, list_entries(connection, ref.version_id)) for ref in refs
        )
        with self._lock:
            self._index = index
        return index


# -- ledger accounts of parties ------------------------------------------------------------


@dataclass(frozen=True)
class PartyAccount:
    chain: str
    address: str
    party: str
    registered_by: str
    registered_at: datetime


def register_account(
    uow: UnitOfWork,
    *,
    chain: str,
    address: str,
    party: str,
    actor: str,
    at: datetime,
    key_id: str | None = None,
) -> PartyAccount:
    """Register a ledger account to a party, with its compliance audit entry."""
    uow.execute(
        "INSERT INTO party_accounts (chain, address, party, registered_by, registered_at)"
        " VALUES (:chain, :address, :party, :actor, :at)",
        {"chain": chain, "address": address, "party": party, "actor": actor, "at": at},
    )
    append_audit(
        uow,
        actor=actor,
        action="ledger_account_registered",
        subject_kind="ledger_account",
        subject=f"{chain}:{address}",
        subject_version=1,
        payload={"chain": chain, "address": address, "party": party},
        at=at,
        key_id=key_id,
    )
    return PartyAccount(chain, address, party, actor, at)


def owners_of(
    connection: Connection, accounts: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """The party each (chain, address) is registered to; unregistered ones are absent."""
    wanted = [f"{chain}:{address}" for chain, address in accounts]
    rows = _rows(
        connection,
        "SELECT chain, address, party FROM party_accounts WHERE account = ANY(:wanted)",
        {"wanted": wanted},
    )
    return {(row[0], row[1]): row[2] for row in rows}


def accounts_of(connection: Connection, party: str) -> list[PartyAccount]:
    rows = _rows(
        connection,
        "SELECT chain, address, party, registered_by, registered_at FROM party_accounts"
        " WHERE party = :party ORDER BY chain, address",
        {"party": party},
    )
    return [PartyAccount(*row) for row in rows]


def counterparty_of(connection: Connection, commitment_id: UUID) -> str | None:
    rows = _rows(
        connection,
        "SELECT counterparty FROM commitment_counterparties WHERE commitment_id = :id",
        {"id": commitment_id},
    )
    return str(rows[0][0]) if rows else None
