"""The compliance desk: KYC records, the officer registry, sanctions lists and the
review queue, as officers and admins use them (the CLI and, later, the API and console).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from compliance import audit as compliance_audit
from compliance import errors as compliance_errors
from compliance import kyc
from compliance import records as compliance_records
from compliance.records import (
    Approval,
    KycVersionConflict,
    ListVersion,
    Officer,
    PartyAccount,
    QueueItem,
    StoredScreening,
)
from compliance.sanctions import DEFAULT_LIST_NAME, FORMATS, ListFormat, read_list
from ledger import audit
from ledger import commitments as commitment_records
from ledger.commitments import CommitmentRecord, HistoryRow
from ledger.database import Database, UnitOfWork
from settlement.clock import Clock
from settlement.domain import errors
from settlement.domain.states import State
from settlement.domain.values import (
    Actor,
    Role,
    parse_text,
)
from settlement.services.translate import translated

T = TypeVar("T")
_ACCOUNT_PATTERNS = {
    "xrpl": re.compile(r"r[1-9A-HJ-NP-Za-km-z]{24,34}"),
    "stellar": re.compile(r"G[A-Z2-7]{55}"),
}


@dataclass(frozen=True)
class ReviewDetail:
    """What an officer sees of one commitment: terms, every screening round, every
    approval, the history (who decided what) and the audit trail."""

    commitment: CommitmentRecord
    counterparty: str | None
    #: when the current review round started; None unless under review
    under_review_since: datetime | None
    age: timedelta | None
    screenings: list[StoredScreening]
    approvals: list[Approval]
    history: list[HistoryRow]
    audit_trail: list[audit.AuditEntry]

    @property
    def current_screening(self) -> StoredScreening | None:
        if self.commitment.state != State.PENDING_REVIEW.value:
            return None
        for stored in self.screenings:
            if stored.review_version == self.commitment.version:
                return stored
        return None

    @property
    def current_approvals(self) -> list[Approval]:
        if self.commitment.state != State.PENDING_REVIEW.value:
            return []
        return [a for a in self.approvals if a.review_version == self.commitment.version]


@dataclass(frozen=True)
class SanctionsLoad:
    version: ListVersion
    #: False when the file equals the version already in force (nothing was stored)
    loaded: bool


class ComplianceService:
    """KYC records, the officer registry, sanctions lists and the review queue.

    Every change is made with its entry in the compliance audit chain, in one
    transaction (the database refuses a KYC or officer change without one).
    """

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    # -- officers -----------------------------------------------------------------

    def register_officer(
        self,
        actor: Actor,
        officer_id: str,
        *,
        display_name: str,
        senior: bool = False,
        active: bool = True,
    ) -> Officer:
        """Register an officer key, or change its name, senior flag or active flag.

        Only an admin may; an officer can never grant itself the senior flag.
        """
        if actor.role is not Role.ADMIN:
            raise errors.NotAuthorised(f"only an admin registers officers; {actor.id} is not")
        ident = parse_text(officer_id, name="officer id", max_chars=200, required=True)
        name = parse_text(display_name, name="display name", max_chars=200, required=True)
        assert ident is not None
        assert name is not None
        officer = Officer(ident, name, bool(senior), bool(active), 0)
        return self._write(
            lambda uow: compliance_records.save_officer(
                uow, officer, actor=actor.id, key_id=actor.key_id, at=self._clock.now()
            )
        )

    def officers(self) -> list[Officer]:
        return self._read(compliance_records.list_officers)

    # -- KYC ----------------------------------------------------------------------

    def create_kyc(self, actor: Actor, **fields: Any) -> kyc.KycRecord:
        """Create a party's KYC record (fields of ``compliance.kyc.parse_record``).

        Raises ``InvalidPartyData`` for a missing or malformed field, ``Conflict`` if
        the party already has a record, ``NotAnOfficer`` unless an active officer acts.
        """
        with translated():
            record = kyc.parse_record(**fields)

        def work(uow: UnitOfWork) -> kyc.KycRecord:
            self._require_officer(uow, actor)
            return compliance_records.save_kyc(
                uow,
                record,
                prior_version=None,
                actor=actor.id,
                key_id=actor.key_id,
                at=self._clock.now(),
            )

        return self._write(work)

    def update_kyc(
        self, actor: Actor, party: str, *, expected_version: int, **changes: Any
    ) -> kyc.KycRecord:
        """Change fields of a party's record read at ``expected_version``.

        Raises ``StaleVersion`` if it changed since, ``UnknownParty`` if there is none.
        """

        def work(uow: UnitOfWork) -> kyc.KycRecord:
            self._require_officer(uow, actor)
            current = compliance_records.load_kyc(uow.connection, [party]).get(party)
            if current is None:
                raise compliance_errors.UnknownParty(f"party {party!r} has no KYC record")
            if current.version != expected_version:
                raise KycVersionConflict(party, expected_version)
            record = kyc.updated(current, **changes)
            return compliance_records.save_kyc(
                uow,
                record,
                prior_version=current.version,
                actor=actor.id,
                key_id=actor.key_id,
                at=self._clock.now(),
            )

        return self._write(work)

    def get_kyc(self, party: str) -> kyc.KycRecord:
        found = self._read(lambda c: compliance_records.load_kyc(c, [party]))
        if party not in found:
            raise errors.UnknownParty(f"party {party!r} has no KYC record")
        return found[party]

    def kyc_records(self) -> list[kyc.KycRecord]:
        return self._read(compliance_records.list_kyc)

    # -- sanctions lists ----------------------------------------------------------

    def load_sanctions(
        self,
        actor: Actor,
        path: Path,
        *,
        list_name: str | None = None,
        list_format: str | None = None,
        aliases_file: Path | None = None,
    ) -> SanctionsLoad:
        """Load a list file as the new version of ``list_name`` (default: by format).

        The file is read and validated completely before anything is written; on any
        problem ``InvalidSanctionsList`` is raised and the version in force stays.
        A file identical to the version in force stores nothing (``loaded`` False).
        """
        if actor.role not in (Role.ADMIN, Role.COMPLIANCE_OFFICER):
            raise errors.NotAuthorised("only an admin or an officer loads sanctions lists")
        if list_format is not None and list_format not in FORMATS:
            raise errors.InvalidInput(f"list format must be one of {', '.join(FORMATS)}")
        fmt: ListFormat | None = list_format
        with translated():
            parsed = read_list(path, list_format=fmt, aliases_file=aliases_file)
        name = list_name or DEFAULT_LIST_NAME[parsed.format]
        if not _LIST_NAME.fullmatch(name):
            raise errors.InvalidInput(f"list name {name!r} must be 1-63 of a-z 0-9 . _ -")

        def work(uow: UnitOfWork) -> SanctionsLoad:
            if actor.role is Role.COMPLIANCE_OFFICER:
                self._require_officer(uow, actor)
            for current in compliance_records.list_versions(uow.connection)[::-1]:
                if current.list_name == name:
                    if current.sha256 == parsed.sha256:
                        return SanctionsLoad(current, loaded=False)
                    break
            stored = compliance_records.store_list(
                uow,
                list_name=name,
                parsed=parsed,
                source_file=path.name,
                actor=actor.id,
                key_id=actor.key_id,
                at=self._clock.now(),
            )
            return SanctionsLoad(stored, loaded=True)

        return self._write(work)

    def sanctions_lists(self) -> list[ListVersion]:
        return self._read(compliance_records.list_versions)

    # -- the review queue ---------------------------------------------------------

    def review_queue(self, *, limit: int = 100) -> list[QueueItem]:
        return self._read(lambda c: compliance_records.review_queue(c, limit=limit))

    def register_account(self, actor: Actor, party: str, chain: str, address: str) -> PartyAccount:
        """Register a ledger account to a party with a KYC record (an officer's act).

        Raises ``InvalidPartyData`` for an unknown chain or a malformed address,
        ``UnknownParty`` when the party has no KYC record, ``Conflict`` when the account
        is already registered (to anyone), ``NotAnOfficer`` unless an officer acts.
        """
        chain = chain.strip().lower()
        address = address.strip()
        pattern = _ACCOUNT_PATTERNS.get(chain)
        if pattern is None:
            raise errors.InvalidPartyData(f"chain must be xrpl or stellar, not {chain!r}")
        if not pattern.fullmatch(address):
            raise errors.InvalidPartyData(f"{address!r} is not a {chain} account address")

        def work(uow: UnitOfWork) -> PartyAccount:
            self._require_officer(uow, actor)
            if not compliance_records.load_kyc(uow.connection, [party]):
                raise errors.UnknownParty(f"party {party} has no KYC record")
            return compliance_records.register_account(
                uow,
                chain=chain,
                address=address,
                party=party,
                actor=actor.id,
                key_id=actor.key_id,
                at=self._clock.now(),
            )

        return self._write(work)

    def accounts_of(self, party: str) -> list[PartyAccount]:
        return self._read(lambda c: compliance_records.accounts_of(c, party))

    def owners_of(self, accounts: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        return self._read(lambda c: compliance_records.owners_of(c, accounts))

    def counterparty_of(self, commitment_id: UUID) -> str | None:
        return self._read(lambda c: compliance_records.counterparty_of(c, commitment_id))

    def review_detail(self, commitment_id: UUID) -> ReviewDetail:
        def query(connection: Any) -> ReviewDetail:
            record = commitment_records.load(connection, commitment_id)
            history = commitment_records.history(connection, commitment_id)
            since = history[-1].at if record.state == State.PENDING_REVIEW.value else None
            return ReviewDetail(
                commitment=record,
                counterparty=compliance_records.counterparty_of(connection, commitment_id),
                under_review_since=since,
                age=self._clock.now() - since if since is not None else None,
                screenings=compliance_records.screenings_of(connection, commitment_id),
                approvals=compliance_records.approvals_of(connection, commitment_id),
                history=history,
                audit_trail=audit.read_chain(connection, commitment_id),
            )

        return self._read(query)

    def verify_audit(self) -> compliance_audit.ComplianceVerifyReport:
        return self._read(lambda c: compliance_audit.verify(compliance_records.read_audit(c)))

    def audit_entries(
        self, *, subject_kind: str | None = None, subject: str | None = None
    ) -> list[compliance_audit.ComplianceEntry]:
        return self._read(
            lambda c: compliance_records.read_audit(c, subject_kind=subject_kind, subject=subject)
        )

    # -- helpers ------------------------------------------------------------------

    @staticmethod
    def _require_officer(uow: UnitOfWork, actor: Actor) -> Officer:
        if actor.role is not Role.COMPLIANCE_OFFICER:
            raise errors.NotAuthorised(f"{actor.id} acts as {actor.role}, not as an officer")
        officer = compliance_records.load_officer(uow.connection, actor.id)
        if officer is None or not officer.active:
            raise compliance_errors.UnknownOfficer(
                f"{actor.id} is not an active registered compliance officer"
            )
        return officer

    def _write(self, work: Callable[[UnitOfWork], T]) -> T:
        with translated():
            return self._db.transaction(work)

    def _read(self, query: Callable[[Any], T]) -> T:
        with translated(), self._db.unit_of_work() as uow:
            return query(uow.connection)


_LIST_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
