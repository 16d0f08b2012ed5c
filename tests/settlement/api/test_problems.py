"""The one map from engine error to HTTP status, which the API's problems and the
console's error pages both answer with; and the problem document of an engine error."""

from __future__ import annotations

import json

import pytest

from settlement.api import problems
from settlement.domain import errors
from settlement.services.console_accounts import AccountNotFound, SignInFailed
from settlement.services.keys import KeyNotFound


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.InvalidAmount, 422),
        (errors.UnknownParty, 422),
        (errors.IdempotencyKeyReused, 422),
        (errors.NotAuthorised, 403),
        (errors.OverrideRequired, 403),
        (SignInFailed, 403),
        (errors.CommitmentNotFound, 404),
        (errors.SettlementNotFound, 404),
        (errors.PartyNotFound, 404),
        (KeyNotFound, 404),
        (AccountNotFound, 404),
        (errors.StaleVersion, 409),
        (errors.RequestInFlight, 409),
        (errors.NotUnderReview, 409),
        (errors.EngineUnavailable, 503),
        # an error no family claims is one the engine did not expect to raise
        (errors.SettlementError, 500),
    ],
)
def test_each_family_of_errors_has_one_status(
    error: type[errors.SettlementError], status: int
) -> None:
    assert error("x").http_status == status


def test_every_not_found_is_one_family_with_its_own_code() -> None:
    found = [errors.CommitmentNotFound, errors.SettlementNotFound, errors.PartyNotFound]
    found += [KeyNotFound, AccountNotFound]
    assert all(issubclass(e, errors.NotFound) for e in found)
    assert len({e.code for e in found}) == len(found)
    # the codes API clients switch on, and the titles they read, are the ones they were
    assert errors.SettlementNotFound.code == "settlement_not_found"
    assert errors.PartyNotFound.code == "party_not_found"
    assert problems.title_of("settlement_not_found") == "No such settlement"
    assert problems.title_of("party_not_found") == "No such party"


def test_a_problem_document_names_its_code_twice() -> None:
    document = json.loads(problems.body("party_not_found", 404, "no KYC record", instance="/x"))
    assert document == {
        "type": "urn:settlement:problem:party_not_found",
        "title": "No such party",
        "status": 404,
        "detail": "no KYC record",
        "code": "party_not_found",
        "instance": "/x",
    }
