"""A "never applied" status only from one server's answer covering the whole window.

Behind a public endpoint's load balancer one read may come from a server some ledgers
behind the last one. A status built from several reads (the validated head from one
server, the transaction lookup from another, the ledger range held from a third) can
make an applied transaction look expired, and the engine would sign it again. These
tests run the local node's lagging-server fault, on a node that closes when told.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import pytest

from adapters.chain import Applied, Expired, Pending, SignedSubmission
from tests.adapters.xrpl.test_xrpl_adapter import (
    World,
    xrpl_world,
)

POLLS = 40


@pytest.fixture
def world() -> Iterator[World]:
    with xrpl_world() as w:
        yield w


def newest(world: World) -> int:
    return world.ledger.node.chain.last_closed.header.sequence


def close_past(world: World, submission: SignedSubmission, ledgers: int) -> None:
    assert submission.expires_ledger is not None
    while newest(world) < submission.expires_ledger + ledgers:
        world.close()


def test_an_applied_transaction_is_never_reported_expired(world: World) -> None:
    submission = world.chain.prepare_lock(world.leg("10"), world.terms(cancel_in_s=3600))
    applied = world.settle(submission)
    assert isinstance(applied, Applied), applied
    close_past(world, submission, 3)
    # the other server has not seen the ledger that applied it, nor any after
    behind = newest(world) - applied.ledger_index + 1
    world.ledger.node.faults.lagging_server(ledgers_behind=behind, share=Fraction(1, 2))

    seen = [world.chain.status(submission) for _ in range(POLLS)]
    assert not [o for o in seen if isinstance(o, Expired)], seen
    assert {type(o) for o in seen} == {Applied, Pending}, "both servers answered"
    world.ledger.node.faults.clear()
    assert world.chain.status(submission) == applied


def test_an_expired_transaction_is_found_expired_behind_a_lagging_server(world: World) -> None:
    submission = world.chain.prepare_lock(world.leg("10"), world.terms(cancel_in_s=3600))
    assert submission.expires_ledger is not None
    close_past(world, submission, 2)
    faults = world.ledger.node.faults
    # a server that has not validated the last ledger the transaction could enter
    faults.lagging_server(ledgers_behind=3, share=1)
    for _ in range(5):
        outcome = world.chain.status(submission)
        assert isinstance(outcome, Pending) and not outcome.held, outcome
    faults.lagging_server(ledgers_behind=3, share=Fraction(1, 2))
    seen = [world.chain.status(submission) for _ in range(POLLS)]
    assert any(isinstance(o, Expired) for o in seen), seen
    assert all(isinstance(o, Expired | Pending) for o in seen), seen


def test_expired_as_soon_as_the_last_ledger_it_could_enter_is_validated(world: World) -> None:
    submission = world.chain.prepare_lock(world.leg("10"), world.terms(cancel_in_s=3600))
    assert submission.expires_ledger is not None
    while newest(world) < submission.expires_ledger - 1:
        world.close()
    assert isinstance(world.chain.status(submission), Pending)
    world.close()
    assert newest(world) == submission.expires_ledger
    assert isinstance(world.chain.status(submission), Expired)


def test_one_request_decides(world: World) -> None:
    submission = world.chain.prepare_lock(world.leg("10"), world.terms(cancel_in_s=3600))
    close_past(world, submission, 1)
    calls = world.ledger.node.rpc.calls
    before = dict(calls)
    assert isinstance(world.chain.status(submission), Expired)
    asked = {method: n - before.get(method, 0) for method, n in calls.items()}
    assert {m: n for m, n in asked.items() if n} == {"tx": 1}
