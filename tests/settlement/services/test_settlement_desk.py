"""The settlement desk refuses what it cannot do, with the error that names why."""

from __future__ import annotations

from uuid import uuid4

import pytest

from settlement import bootstrap
from settlement.domain import errors
from tests.support import ADMIN, OFFICER


@pytest.mark.parametrize("act", ["retry", "resolve"])
def test_an_unknown_settlement_is_not_found_as_a_settlement(
    engine: bootstrap.Services, act: str
) -> None:
    with pytest.raises(errors.SettlementNotFound):
        getattr(engine.settlements, act)(ADMIN, uuid4(), "looked at the ledgers")


def test_only_an_admin_may_clear_a_flag(engine: bootstrap.Services) -> None:
    with pytest.raises(errors.NotAuthorised):
        engine.settlements.retry(OFFICER, uuid4(), "not mine to do")
