"""KYC records of parties (allocators, counterparties), validated on the way in.

A record says who a party is (legal name, aliases, LEI, registration number,
jurisdiction), how risky it is, whether it is accredited, and where its KYC stands:
``pending``, ``verified``, ``rejected`` or ``expired``, with the date it expires.
Screening accepts a party only when its record is ``verified`` and not past its expiry.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from enum import StrEnum
from typing import Any, Final

from compliance.errors import InvalidPartyData

_PARTY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,199}")
_LEI = re.compile(r"[A-Z0-9]{18}[0-9]{2}")
_COUNTRY = re.compile(r"[A-Z]{2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_ALIASES: Final = 50


class KycStatus(StrEnum):
    PENDING = "pending"
    VERIFIED = "verified"
    REJECTED = "rejected"
    EXPIRED = "expired"


class RiskRating(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


@dataclass(frozen=True)
class KycRecord:
    party: str
    legal_name: str
    jurisdiction: str
    risk_rating: RiskRating
    accredited: bool
    status: KycStatus
    expires_on: date | None
    aliases: tuple[str, ...] = ()
    lei: str | None = None
    registration_number: str | None = None
    #: set by the store; 0 for a record not yet written
    version: int = 0

    def is_current(self, today: date) -> bool:
        """Verified and not past its expiry date (the expiry day itself still counts)."""
        return (
            self.status is KycStatus.VERIFIED
            and self.expires_on is not None
            and today <= self.expires_on
        )

    def names(self) -> tuple[str, ...]:
        return (self.legal_name, *self.aliases)

    def identifiers(self) -> tuple[str, ...]:
        return tuple(i for i in (self.lei, self.registration_number) if i)

    def as_payload(self) -> dict[str, Any]:
        """The record as an audit payload (JSON types, no floats)."""
        return {
            "party": self.party,
            "legal_name": self.legal_name,
            "aliases": list(self.aliases),
            "lei": self.lei,
            "registration_number": self.registration_number,
            "jurisdiction": self.jurisdiction,
            "risk_rating": self.risk_rating.value,
            "accredited": self.accredited,
            "status": self.status.value,
            "expires_on": self.expires_on.isoformat() if self.expires_on else None,
        }


def _text(value: object, name: str, max_chars: int, *, required: bool = True) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InvalidPartyData(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise InvalidPartyData(f"{name} must be text, not {type(value).__name__}")
    text = " ".join(value.split())
    if len(text) > max_chars:
        raise InvalidPartyData(f"{name} is {len(text)} characters; at most {max_chars}")
    if _CONTROL.search(text):
        raise InvalidPartyData(f"{name} contains control characters")
    return text


def parse_party_id(value: object) -> str:
    if not isinstance(value, str) or not _PARTY.fullmatch(value):
        raise InvalidPartyData(
            f"party id {value!r} must be 1-200 letters, digits or . _ : @ -, "
            "starting with a letter or digit"
        )
    return value


def _enum(enum: type[KycStatus] | type[RiskRating], value: object, name: str) -> Any:
    try:
        return enum(str(value).strip().lower())
    except ValueError:
        allowed = ", ".join(e.value for e in enum)
        raise InvalidPartyData(f"{name} {value!r} must be one of {allowed}") from None


def parse_record(
    *,
    party: object,
    legal_name: object,
    jurisdiction: object,
    risk_rating: object,
    accredited: object,
    status: object,
    expires_on: object = None,
    aliases: Sequence[object] = (),
    lei: object = None,
    registration_number: object = None,
) -> KycRecord:
    """A validated ``KycRecord``; ``InvalidPartyData`` naming the first bad field.

    ``expires_on`` is a ``date`` or an ISO ``YYYY-MM-DD`` string; a verified record must
    have one. The LEI is checked against ISO 17442 (20 characters, MOD 97-10 check digits).
    """
    party_id = parse_party_id(party)
    name = _text(legal_name, "legal name", 300)
    assert name is not None
    country = _text(jurisdiction, "jurisdiction", 2)
    assert country is not None
    country = country.upper()
    if not _COUNTRY.fullmatch(country):
        raise InvalidPartyData(f"jurisdiction {jurisdiction!r} must be an ISO 3166 alpha-2 code")
    if not isinstance(accredited, bool):
        raise InvalidPartyData("accredited must be true or false")
    if isinstance(aliases, str) or not isinstance(aliases, Sequence):
        raise InvalidPartyData("aliases must be a list of names")
    if len(aliases) > MAX_ALIASES:
        raise InvalidPartyData(f"at most {MAX_ALIASES} aliases")
    alias_texts = tuple(
        dict.fromkeys(t for a in aliases if (t := _text(a, "alias", 300)) is not None)
    )
    lei_text = _text(lei, "LEI", 20, required=False)
    if lei_text is not None:
        lei_text = lei_text.upper().replace(" ", "")
        if not _LEI.fullmatch(lei_text) or not _lei_checksum_ok(lei_text):
            raise InvalidPartyData(f"LEI {lei!r} is not a valid ISO 17442 code")
    registration = _text(registration_number, "registration number", 100, required=False)
    parsed_status: KycStatus = _enum(KycStatus, status, "KYC status")
    expiry = _date(expires_on)
    if parsed_status is KycStatus.VERIFIED and expiry is None:
        raise InvalidPartyData("a verified KYC record needs an expiry date")
    return KycRecord(
        party=party_id,
        legal_name=name,
        jurisdiction=country,
        risk_rating=_enum(RiskRating, risk_rating, "risk rating"),
        accredited=accredited,
        status=parsed_status,
        expires_on=expiry,
        aliases=alias_texts,
        lei=lei_text,
        registration_number=registration,
    )


def updated(record: KycRecord, **changes: Any) -> KycRecord:
    """``record`` with ``changes`` applied and validated again as a whole."""
    fields = record.as_payload()
    unknown = set(changes) - set(fields) - {"party"}
    if unknown:
        raise InvalidPartyData(f"unknown KYC fields: {', '.join(sorted(unknown))}")
    if "party" in changes and changes["party"] != record.party:
        raise InvalidPartyData("a KYC record's party id cannot change")
    fields.update(changes)
    return replace(parse_record(**fields), version=record.version)


def _date(value: object) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise InvalidPartyData(f"expiry date {value!r} must be a date (YYYY-MM-DD)")


def _lei_checksum_ok(lei: str) -> bool:
    digits = "".join(str(int(c, 36)) for c in lei)
    return int(digits) % 97 == 1
