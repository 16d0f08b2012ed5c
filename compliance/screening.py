"""Automatic screening of a commitment on submit: pure rules, no database.

Four rules run over both parties (the owning allocator and the counterparty):

- ``kyc``: the record is verified and not past its expiry (else a hard fail); a high
  risk rating, or an allocator that is not accredited, is flagged;
- ``sanctions``: every name and alias is fuzzy-matched against the lists in force, and
  every identifier (LEI, registration number) matched exactly; a hit is a hard fail;
  no list in force is a hard fail too (screening fails closed);
- ``jurisdiction``: blocked is a hard fail, high-risk is flagged;
- ``limits``: the per-commitment maximum, the allocator's rolling 24 h total and the
  asset's open cap; exceeding one is a hard fail.

A commitment with no counterparty named is flagged (``parties``). The outcome is
``hard_fail`` if any finding is, else ``flagged`` if any finding is, else ``clear``.
Nothing is approved automatically whatever the outcome: an officer always decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Any
from uuid import UUID

from compliance.kyc import KycRecord, KycStatus, RiskRating
from compliance.policy import ScreeningPolicy
from compliance.sanctions import Match, SanctionsIndex


class Severity(StrEnum):
    HARD_FAIL = "hard_fail"
    FLAG = "flag"


class Outcome(StrEnum):
    CLEAR = "clear"
    FLAGGED = "flagged"
    HARD_FAIL = "hard_fail"


class Rule(StrEnum):
    KYC = "kyc"
    SANCTIONS = "sanctions"
    JURISDICTION = "jurisdiction"
    LIMITS = "limits"
    PARTIES = "parties"


@dataclass(frozen=True)
class Finding:
    rule: Rule
    severity: Severity
    party: str | None
    detail: str
    list_version: int | None = None
    list_name: str | None = None
    entry_id: str | None = None
    matched_name: str | None = None
    #: 0-100 with one decimal, as text (audit payloads carry no floats)
    score: str | None = None

    def as_payload(self) -> dict[str, Any]:
        return {k: v for k, v in _fields(self).items() if v is not None}

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> Finding:
        return cls(
            rule=Rule(data["rule"]),
            severity=Severity(data["severity"]),
            party=data.get("party"),
            detail=data["detail"],
            list_version=data.get("list_version"),
            list_name=data.get("list_name"),
            entry_id=data.get("entry_id"),
            matched_name=data.get("matched_name"),
            score=data.get("score"),
        )


def _fields(finding: Finding) -> dict[str, Any]:
    return {
        "rule": finding.rule.value,
        "severity": finding.severity.value,
        "party": finding.party,
        "detail": finding.detail,
        "list_version": finding.list_version,
        "list_name": finding.list_name,
        "entry_id": finding.entry_id,
        "matched_name": finding.matched_name,
        "score": finding.score,
    }


@dataclass(frozen=True)
class Subject:
    """What screening needs to know about the commitment being submitted."""

    commitment_id: UUID
    owner_party: str
    counterparty: str | None
    amount: Decimal
    currency: str
    #: the allocator's other commitments submitted in the last 24 h, same currency
    party_submitted_24h: Decimal
    #: every other open commitment in this currency
    asset_open_total: Decimal


@dataclass(frozen=True)
class Screening:
    outcome: Outcome
    approvals_required: int
    list_versions: tuple[int, ...]
    findings: tuple[Finding, ...]

    def as_payload(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "approvals_required": self.approvals_required,
            "list_versions": list(self.list_versions),
            "findings": [f.as_payload() for f in self.findings],
        }


def screen(
    subject: Subject,
    parties: Mapping[str, KycRecord],
    index: SanctionsIndex,
    policy: ScreeningPolicy,
    today: date,
) -> Screening:
    """Screen ``subject``. ``parties`` must hold a record for the owner and for the
    counterparty when one is named (the caller raises ``UnknownParty`` otherwise)."""
    findings: list[Finding] = []
    roles = [(subject.owner_party, "allocator")]
    if subject.counterparty is None:
        findings.append(
            Finding(
                Rule.PARTIES,
                Severity.FLAG,
                None,
                "no counterparty named: only the allocator was screened",
            )
        )
    else:
        roles.append((subject.counterparty, "counterparty"))
    for party, role in roles:
        record = parties[party]
        findings += _kyc(record, role, today)
        findings += _jurisdiction(record, policy)
        findings += _sanctions(record, index, policy.match_threshold)
    if not index.lists:
        findings.append(
            Finding(
                Rule.SANCTIONS,
                Severity.HARD_FAIL,
                None,
                "no sanctions list is in force: screening cannot clear anyone",
            )
        )
    findings += _limits(subject, policy)
    if any(f.severity is Severity.HARD_FAIL for f in findings):
        outcome = Outcome.HARD_FAIL
    elif findings:
        outcome = Outcome.FLAGGED
    else:
        outcome = Outcome.CLEAR
    return Screening(
        outcome=outcome,
        approvals_required=policy.approvals_required(subject.amount),
        list_versions=tuple(ref.version_id for ref in index.lists),
        findings=tuple(findings),
    )


def _kyc(record: KycRecord, role: str, today: date) -> list[Finding]:
    found: list[Finding] = []
    party = record.party
    if record.status is not KycStatus.VERIFIED:
        found.append(
            Finding(
                Rule.KYC,
                Severity.HARD_FAIL,
                party,
                f"{role} KYC status is {record.status}, not verified",
            )
        )
    elif not record.is_current(today):
        found.append(
            Finding(
                Rule.KYC, Severity.HARD_FAIL, party, f"{role} KYC expired on {record.expires_on}"
            )
        )
    if record.risk_rating is RiskRating.HIGH:
        found.append(Finding(Rule.KYC, Severity.FLAG, party, f"{role} is rated high risk"))
    if role == "allocator" and not record.accredited:
        found.append(Finding(Rule.KYC, Severity.FLAG, party, "allocator is not accredited"))
    return found


def _jurisdiction(record: KycRecord, policy: ScreeningPolicy) -> list[Finding]:
    if record.jurisdiction in policy.blocked_jurisdictions:
        return [
            Finding(
                Rule.JURISDICTION,
                Severity.HARD_FAIL,
                record.party,
                f"jurisdiction {record.jurisdiction} is blocked",
            )
        ]
    if record.jurisdiction in policy.high_risk_jurisdictions:
        return [
            Finding(
                Rule.JURISDICTION,
                Severity.FLAG,
                record.party,
                f"jurisdiction {record.jurisdiction} is high-risk",
            )
        ]
    return []


def _sanctions(record: KycRecord, index: SanctionsIndex, threshold: int) -> list[Finding]:
    matches = [
        *index.match_identifiers(record.identifiers()),
        *index.match_names(record.names(), threshold),
    ]
    seen: set[tuple[int, str]] = set()
    found: list[Finding] = []
    for match in matches:
        key = (match.list_ref.version_id, match.entry.entry_id)
        if key in seen:
            continue
        seen.add(key)
        found.append(_sanctions_finding(record.party, match))
    return found


def _sanctions_finding(party: str, match: Match) -> Finding:
    if match.by == "identifier":
        detail = (
            f"identifier {match.queried!r} equals an identifier of "
            f"{match.entry.name!r} on {match.list_ref.list_name}"
        )
    else:
        detail = (
            f"name {match.queried!r} matches {match.matched_name!r} "
            f"({match.entry.name}) on {match.list_ref.list_name}"
        )
    return Finding(
        Rule.SANCTIONS,
        Severity.HARD_FAIL,
        party,
        detail,
        list_version=match.list_ref.version_id,
        list_name=match.list_ref.list_name,
        entry_id=match.entry.entry_id,
        matched_name=match.matched_name,
        score=str(Decimal(match.score_tenths).scaleb(-1)),
    )


def _limits(subject: Subject, policy: ScreeningPolicy) -> list[Finding]:
    found: list[Finding] = []
    ccy, amount = subject.currency, subject.amount
    checks = (
        (policy.max_commitment.for_currency(ccy), amount, "the per-commitment maximum"),
        (
            policy.party_rolling_24h.for_currency(ccy),
            subject.party_submitted_24h + amount,
            f"the rolling 24 h total of {subject.owner_party}",
        ),
        (
            policy.asset_open_cap.for_currency(ccy),
            subject.asset_open_total + amount,
            f"the open cap of {ccy}",
        ),
    )
    for limit, total, what in checks:
        if limit is not None and total > limit:
            found.append(
                Finding(
                    Rule.LIMITS,
                    Severity.HARD_FAIL,
                    subject.owner_party,
                    f"{total} {ccy} exceeds {what} ({limit} {ccy})",
                )
            )
    return found
