"""Stellar channel accounts: one transaction per channel at a time, held by the
write-ahead row, whatever the application does."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from uuid import UUID

import pytest

from ledger import errors as db_errors
from ledger import settlements as records
from ledger.database import UnitOfWork
from settlement.domain.values import SYSTEM
from settlement.dvp import Progress

from .conftest import Dvp


def _instruct(dvp: Dvp) -> UUID:
    cid = dvp.verified_commitment("1000")
    return dvp.coordinator.instruct(
        SYSTEM,
        cid,
        dvp.world.legs(Decimal(10), Decimal(1000)),
        commit_deadline=dvp.world.clock.now() + timedelta(seconds=120),
    )


def _hold(dvp: Dvp, sid: UUID, channel: str, tag: str) -> None:
    """An open (SIGNED) submission of ``sid`` on ``channel``, as a crash after the
    write-ahead leaves one: it could still apply, so the channel is taken."""

    def write(uow: UnitOfWork) -> None:
        records.record_submission(
            uow,
            settlement_id=sid,
            leg_no=0,
            purpose="lock",
            chain="stellar",
            tx_hash=f"{tag:0>64}",
            blob=f"blob-{tag}",
            expires_ledger=None,
            expires_at=dvp.world.clock.now() + timedelta(seconds=60),
            at=dvp.world.clock.now(),
            channel=channel,
        )

    dvp.engine.db.transaction(write)


def _expire(dvp: Dvp, tag: str) -> None:
    dvp.engine.db.transaction(
        lambda uow: records.finalize_submission(
            uow,
            tx_hash=f"{tag:0>64}",
            status="EXPIRED",
            result_code=None,
            ledger_index=None,
            ledger_hash=None,
            at=dvp.world.clock.now(),
        )
    )


def test_the_database_refuses_a_second_open_transaction_on_one_channel(dvp: Dvp) -> None:
    a, b = _instruct(dvp), _instruct(dvp)
    channel = dvp.world.channels_stellar[0].public_key
    _hold(dvp, a, channel, "a1")
    with pytest.raises(db_errors.ConstraintViolation, match=records.CHANNEL_TAKEN):
        _hold(dvp, b, channel, "b1")
    _expire(dvp, "a1")  # final: the channel is free again
    _hold(dvp, b, channel, "b1")


def test_a_settlement_waits_while_every_channel_is_busy_then_signs_on_a_free_one(
    dvp: Dvp,
) -> None:
    busy, waiting = _instruct(dvp), _instruct(dvp)
    channels = [c.public_key for c in dvp.world.channels_stellar]
    assert len(channels) == len(dvp.world.channels_stellar) > 1
    for n, channel in enumerate(channels):
        # one open submission per leg and purpose: spread the holds over fresh settlements
        _hold(dvp, busy if n == 0 else _instruct(dvp), channel, f"h{n}")
    result = dvp.coordinator.step(waiting)
    assert result.progress is Progress.WAITING
    assert "every stellar channel carries a transaction" in result.detail
    assert dvp.coordinator.settlement(waiting)[2] == [], "nothing signed while none is free"
    _expire(dvp, "h2")
    dvp.coordinator.step(waiting)
    _, _, subs = dvp.coordinator.settlement(waiting)
    assert [(s.purpose, s.chain, s.channel) for s in subs][:1] == [("lock", "stellar", channels[2])]
