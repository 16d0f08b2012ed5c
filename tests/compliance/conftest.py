"""A database of its own per test, with officers, KYC records and the sample lists."""

from __future__ import annotations

import pytest

from settlement import bootstrap
from settlement.clock import ManualClock
from tests.support import ADMIN, ANNA, BORIS, SAMPLES, SENIOR, Desk


@pytest.fixture
def desk(fresh_engine: bootstrap.Services, clock: ManualClock) -> Desk:
    compliance = fresh_engine.compliance
    compliance.register_officer(ADMIN, ANNA.id, display_name="Anna")
    compliance.register_officer(ADMIN, BORIS.id, display_name="Boris")
    compliance.register_officer(ADMIN, SENIOR.id, display_name="Senior", senior=True)
    desk = Desk(fresh_engine, clock)
    desk.party("northwind", "Northwind Capital Partners LLP")
    desk.party("meridian", "Meridian Bond Trust S.A.", jurisdiction="LU")
    compliance.load_sanctions(
        ADMIN, SAMPLES / "sample_sdn.csv", aliases_file=SAMPLES / "sample_alt.csv"
    )
    compliance.load_sanctions(ADMIN, SAMPLES / "sample_targets.simple.csv")
    return desk
