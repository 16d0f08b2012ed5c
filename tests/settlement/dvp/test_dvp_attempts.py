"""What counts against a purpose's attempts (``settlement.dvp.submission``): a refusal
inside a ledger stops the purpose at once; one before any ledger counts only when it
says the transaction itself is wrong, except for a lock, where giving up is safe."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast
from uuid import uuid4

import pytest

from adapters.chain import Purpose
from ledger.settlements import LegRow, SettlementRow, SubmissionRow
from settlement.dvp.submission import SubmitPolicy, Submitter, transient_refusal

AT = datetime(2026, 12, 7, tzinfo=UTC)
SID = uuid4()


def _settlement(reset_at: datetime | None = None) -> SettlementRow:
    return SettlementRow(
        SID, uuid4(), "COMMITTING", "COMMIT", "", AT, None, AT, AT + timedelta(minutes=5),
        "", b"", False, None, None, None, reset_at, "system", AT, AT,
    )  # fmt: skip


LEG = LegRow(
    SID, 0, "principal", "stellar", "USDC", "GISSUER", Decimal(1), "GA", "GB", "HELD",
    "GA", None, "B1", "claimable",
)  # fmt: skip


def _refused(purpose: Purpose, code: str, n: int, *, in_ledger: bool = False) -> SubmissionRow:
    return SubmissionRow(
        n, SID, 0, purpose.value, "stellar", f"h{n}", "blob", None, AT, "REJECTED", code,
        7 if in_ledger else None, "L7" if in_ledger else None, AT, AT + timedelta(seconds=n),
    )  # fmt: skip


def _submitter() -> Submitter:
    # ``refused`` reads only what it is given and the policy
    return Submitter(cast(Any, None), {}, cast(Any, None), SubmitPolicy(max_rejected_attempts=3))


@pytest.mark.parametrize(
    ("code", "transient"),
    [
        ("tx_bad_seq", True),
        ("tx_insufficient_fee", True),
        ("tefPAST_SEQ", True),
        ("telINSUF_FEE_P", True),
        ("terPRE_SEQ", True),
        ("tefBAD_AUTH", False),
        ("temMALFORMED", False),
        ("tx_bad_auth", False),
        ("invalidTransaction", False),
    ],
)
def test_which_refusals_before_a_ledger_say_only_that_the_moment_was_wrong(
    code: str, transient: bool
) -> None:
    assert transient_refusal(code) is transient


def test_a_payout_refused_before_any_ledger_for_the_moment_is_never_given_up() -> None:
    subs = [_refused(Purpose.COMMIT, "tx_bad_seq", n) for n in range(20)]
    assert _submitter().refused(_settlement(), LEG, Purpose.COMMIT, subs) is None


def test_a_lock_gives_up_after_the_allowed_attempts_whatever_the_refusal() -> None:
    subs = [_refused(Purpose.LOCK, "tx_bad_seq", n) for n in range(3)]
    stopped = _submitter().refused(_settlement(), LEG, Purpose.LOCK, subs)
    assert stopped is not None and stopped.code == "tx_bad_seq" and not stopped.applied
    assert _submitter().refused(_settlement(), LEG, Purpose.LOCK, subs[:2]) is None


def test_a_malformed_payout_counts_and_one_refused_inside_a_ledger_stops_at_once() -> None:
    malformed = [_refused(Purpose.COMMIT, "tx_bad_auth", n) for n in range(3)]
    assert _submitter().refused(_settlement(), LEG, Purpose.COMMIT, malformed[:2]) is None
    assert _submitter().refused(_settlement(), LEG, Purpose.COMMIT, malformed) is not None
    in_ledger = [_refused(Purpose.COMMIT, "tx_failed", 1, in_ledger=True)]
    stopped = _submitter().refused(_settlement(), LEG, Purpose.COMMIT, in_ledger)
    assert stopped is not None and stopped.applied and stopped.ledger_index == 7


def test_an_admin_reset_gives_fresh_attempts() -> None:
    in_ledger = [_refused(Purpose.COMMIT, "tx_failed", 1, in_ledger=True)]
    after = AT + timedelta(minutes=1)
    assert _submitter().refused(_settlement(reset_at=after), LEG, Purpose.COMMIT, in_ledger) is None
