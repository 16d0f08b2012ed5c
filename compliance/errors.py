"""Errors of the compliance package::

    ComplianceError
    ├── InvalidPartyData           a KYC record field is missing or malformed
    ├── UnknownParty               a party has no KYC record (screening cannot run)
    ├── UnknownOfficer             the actor is not a registered officer
    ├── SanctionsListError         a sanctions list file cannot be used; nothing was loaded
    │   ├── SanctionsListUnreadable    missing, unreadable, not UTF-8
    │   └── SanctionsListMalformed     wrong format, bad row, no entries
    └── PolicyError                a compliance policy file (jurisdictions, limits) is bad

``settlement.services.translate`` turns these into ``settlement.domain.errors``, in one
place.
"""

from __future__ import annotations


class ComplianceError(Exception):
    """Base of the compliance errors."""


class InvalidPartyData(ComplianceError, ValueError):
    pass


class UnknownParty(ComplianceError, LookupError):
    pass


class UnknownOfficer(ComplianceError, LookupError):
    pass


class SanctionsListError(ComplianceError):
    pass


class SanctionsListUnreadable(SanctionsListError):
    pass


class SanctionsListMalformed(SanctionsListError):
    pass


class PolicyError(ComplianceError):
    pass
