""" "Never applied", concluded from one server's view: the Stellar adapter behind a load
balancer one of whose servers lags (the local network's lagging_server fault).

Behind a public Horizon endpoint each read may come from another server. A lookup by
hash that a lagging server answers 404 says nothing about the ledgers it has not
ingested: the adapter concludes only from a 404 whose own Latest-Ledger covers every
ledger that could have included the transaction.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters.chain import Applied, Expired, Pending, Rejected
from adapters.localnet.stellar import StellarNode
from tests.adapters.contract import applied, settle
from tests.adapters.stellar.test_stellar_adapter import (
    StellarHarness,
    halted,
    local_harness,
    new_leg,
)

POLLS = 60


@pytest.fixture
def local(stellar_node: StellarNode) -> Iterator[StellarHarness]:
    h = local_harness(stellar_node, credit=False)
    yield h
    h.close()


def test_an_applied_transaction_is_never_reported_expired_behind_a_lagging_server(
    local: StellarHarness,
) -> None:
    """Once a ledger past the upper time bound is known, a server that has not seen the
    transaction's ledger answers 404: it must not read as Expired (the engine would
    sign a second lock)."""
    h = local
    submission = h.chain.prepare_lock(new_leg(h), h.terms(3600))
    applied_in = applied(settle(h, submission)).ledger_index
    with halted(h) as node:
        h.pass_expiry(submission)
        node.faults.lagging_server(node.latest_ledger - applied_in + 1, share=0.5, seed=11)
        outcomes = [h.chain.status(submission) for _ in range(POLLS)]
    assert not [o for o in outcomes if isinstance(o, Expired)], outcomes
    assert any(isinstance(o, Applied) for o in outcomes)
    stale = [o for o in outcomes if isinstance(o, Pending)]
    assert stale, "the lagging server answered some lookups"
    assert all("behind ledger" in o.detail or "not ingested" in o.detail for o in stale), stale


def test_an_expired_transaction_still_ends_expired_behind_a_lagging_server(
    local: StellarHarness,
) -> None:
    h = local
    submission = h.chain.prepare_lock(new_leg(h), h.terms(3600))  # never sent
    with halted(h) as node:
        h.pass_expiry(submission)
        node.close_ledger()
        node.faults.lagging_server(2, share=0.5, seed=5)
        outcomes = []
        for _ in range(POLLS):
            outcomes.append(h.chain.status(submission))
            if isinstance(outcomes[-1], Expired):
                break
    assert isinstance(outcomes[-1], Expired), outcomes
    assert all(isinstance(o, Pending) for o in outcomes[:-1]), outcomes
    assert outcomes[-1].detail.startswith("in no ledger up to")


def test_a_resent_applied_envelope_is_never_rejected_behind_a_lagging_server(
    local: StellarHarness,
) -> None:
    """Sent again after it applied, the envelope is refused tx_bad_seq. The account
    read that shows its sequence used and the lookup by hash that does not find it may
    come from different servers: only a lookup at least as new as the account proves
    it is another envelope that used the number."""
    h = local
    submission = h.chain.prepare_lock(new_leg(h), h.terms(3600))
    applied_in = applied(settle(h, submission)).ledger_index
    with halted(h) as node:
        node.close_ledger()
        node.faults.lagging_server(node.latest_ledger - applied_in + 1, share=0.5, seed=23)
        outcomes = [h.chain.submit(submission) for _ in range(POLLS)]
    assert not [o for o in outcomes if isinstance(o, Rejected)], outcomes
    assert any(isinstance(o, Applied) for o in outcomes)
    assert any(isinstance(o, Pending) for o in outcomes)
