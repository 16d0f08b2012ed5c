"""Parties: KYC records and registered ledger accounts.

The compliance desk (``ComplianceService``) lets only an active registered compliance
officer create or change a KYC record or register an account, so those routes are for
compliance officers alone (an admin is refused by the service too). Reading is for
officers, admins and auditors; an allocator may read its own party only.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from settlement.api import problems, schemas
from settlement.api.deps import (
    API_PREFIX,
    READ_ERRORS,
    WRITE_ERRORS,
    EngineDep,
    IdempotencyKey,
    IfMatch,
    Officer,
    Reader,
    Staff,
    etag,
    expected_version,
    own_or_forbidden,
)
from settlement.api.strict import StrictJsonRoute
from settlement.domain import errors

router = APIRouter(route_class=StrictJsonRoute)
PARTY = f"{API_PREFIX}/parties/{{party}}"


def _kyc_or_404(engine: EngineDep, party: str) -> schemas.KycOut:
    """The party's KYC record; ``PartyNotFound`` (404) without one. The service calls a
    party without a record ``UnknownParty``, bad input where a commitment names it;
    here the party is the resource asked for."""
    try:
        return schemas.KycOut.of(engine.compliance.get_kyc(party))
    except errors.UnknownParty as exc:
        raise errors.PartyNotFound(str(exc)) from exc


@router.get(
    f"{API_PREFIX}/parties",
    response_model=list[schemas.KycOut],
    responses=READ_ERRORS,
    tags=["compliance officer"],
)
def list_parties(engine: EngineDep, actor: Staff) -> list[schemas.KycOut]:
    """Every party's KYC record."""
    return [schemas.KycOut.of(r) for r in engine.compliance.kyc_records()]


@router.get(
    PARTY, response_model=schemas.PartyOut, responses=READ_ERRORS, tags=["compliance officer"]
)
def get_party(party: str, engine: EngineDep, actor: Reader, response: Response) -> schemas.PartyOut:
    """A party's KYC record (its ETag is the record's version) and ledger accounts."""
    own_or_forbidden(actor, party, "party")
    kyc = _kyc_or_404(engine, party)
    response.headers["ETag"] = etag(kyc.version)
    accounts = [schemas.AccountOut.of(a) for a in engine.compliance.accounts_of(party)]
    return schemas.PartyOut(kyc=kyc, accounts=accounts)


@router.post(
    f"{PARTY}/kyc",
    status_code=201,
    response_model=schemas.KycOut,
    responses=WRITE_ERRORS,
    tags=["compliance officer"],
)
def create_kyc(
    *,
    party: str,
    body: schemas.KycCreate,
    engine: EngineDep,
    actor: Officer,
    key: IdempotencyKey,
    response: Response,
) -> schemas.KycOut:
    """Create the party's KYC record (409 if it has one)."""
    record = engine.compliance.create_kyc(actor, party=party, **body.model_dump())
    response.headers["ETag"] = etag(record.version)
    response.headers["Location"] = f"{API_PREFIX}/parties/{party}"
    return schemas.KycOut.of(record)


@router.patch(
    f"{PARTY}/kyc",
    response_model=schemas.KycOut,
    responses=WRITE_ERRORS,
    tags=["compliance officer"],
)
def update_kyc(
    *,
    party: str,
    body: schemas.KycUpdate,
    engine: EngineDep,
    actor: Officer,
    key: IdempotencyKey,
    response: Response,
    if_match: IfMatch = None,
) -> schemas.KycOut:
    """Change the fields sent of a record read at the expected version (409 if stale)."""
    version = expected_version(if_match, body)
    changes = body.model_dump(exclude_unset=True, exclude={"expected_version"})
    if not changes:
        raise problems.ApiProblem("validation_failed", "send at least one field to change")
    _kyc_or_404(engine, party)
    record = engine.compliance.update_kyc(actor, party, expected_version=version, **changes)
    response.headers["ETag"] = etag(record.version)
    return schemas.KycOut.of(record)


@router.post(
    f"{PARTY}/accounts",
    status_code=201,
    response_model=schemas.AccountOut,
    responses=WRITE_ERRORS,
    tags=["compliance officer"],
)
def register_account(
    party: str,
    body: schemas.AccountCreate,
    engine: EngineDep,
    actor: Officer,
    key: IdempotencyKey,
) -> schemas.AccountOut:
    """Register a ledger account to the party (409 if the account is anyone's already)."""
    _kyc_or_404(engine, party)
    return schemas.AccountOut.of(
        engine.compliance.register_account(actor, party, body.chain, body.address)
    )
