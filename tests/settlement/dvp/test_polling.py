"""How the coordinator waits on a pending transaction: when it looks again, and when it
sends the same blob again. A chain wrapper scripts what ``status`` answers."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

from cryptography.fernet import Fernet

from adapters.chain import Chain, ChainName, Outcome, Pending, SignedSubmission
from settlement.domain.values import SYSTEM
from settlement.dvp import DvpCoordinator, DvpPolicy, Progress
from settlement.sealing import Sealer

from .conftest import Dvp

POLICY = DvpPolicy(
    safety_margin_s=120, min_window_s=5, retry_after_s=0.02, min_poll_s=0.05, max_poll_s=10.0
)


class ScriptedStatus:
    """The inner chain, but while ``script`` is set ``status`` and ``submit`` answer it
    (for the transaction asked about): a submit still sends the blob, and is counted,
    but its real answer (the lock applied by now, say) does not race the script."""

    def __init__(self, inner: Chain) -> None:
        self._inner = inner
        self.script: Pending | None = None
        self.submits = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def status(self, submission: SignedSubmission) -> Outcome:
        if self.script is not None:
            return replace(self.script, tx_hash=submission.tx_hash)
        return self._inner.status(submission)

    def submit(self, submission: SignedSubmission) -> Outcome:
        self.submits += 1
        answer = self._inner.submit(submission)
        if self.script is not None:
            return replace(self.script, tx_hash=submission.tx_hash)
        return answer


def test_a_held_transaction_is_not_resent_and_is_looked_at_when_its_ledger_is_due(
    dvp: Dvp,
) -> None:
    chains = dict(dvp.world.chains)
    stellar = ScriptedStatus(chains[ChainName.STELLAR])
    chains[ChainName.STELLAR] = stellar  # type: ignore[assignment]
    coordinator = DvpCoordinator(
        dvp.engine.db,
        service=dvp.engine.commitments,
        chains=chains,
        sealer=Sealer(Fernet.generate_key()),
        clock=dvp.world.clock,
        policy=POLICY,
    )
    cid = dvp.verified_commitment("1000")
    sid = coordinator.instruct(
        SYSTEM,
        cid,
        dvp.world.legs(Decimal(10), Decimal(1000)),
        commit_deadline=dvp.world.clock.now() + timedelta(seconds=60),
    )
    stellar.script = Pending("", "scripted")  # the lock, once sent, stays pending
    assert coordinator.step(sid).progress is Progress.WAITING
    assert stellar.submits == 1, "the Stellar lock is signed and sent"

    stellar.script = Pending("", "in the queue", held=True, look_again_s=0.3)
    waited = coordinator.step(sid)
    assert stellar.submits == 1, "a transaction the server holds is not sent again"
    assert waited.retry_after_s == 0.3, "looked at again when the ledger expects to move"

    stellar.script = Pending("", "lost", held=False)
    coordinator.step(sid)  # the answer to the resend is what the step goes on
    assert stellar.submits == 2, "one the server does not hold is sent again, the same blob"

    stellar.script = Pending("", "a slow network", held=True, look_again_s=100.0)
    assert coordinator.step(sid).retry_after_s == POLICY.max_poll_s
    stellar.script = Pending("", "due at once", held=True, look_again_s=0.001)
    assert coordinator.step(sid).retry_after_s == POLICY.min_poll_s
    stellar.script = Pending("", "no cadence yet", held=True)
    assert coordinator.step(sid).retry_after_s == POLICY.retry_after_s

    stellar.script = None
    assert coordinator.run_to_end(sid, timeout_s=30).status == "SETTLED"
    _, _, subs = coordinator.settlement(sid)
    # two locks, the claim of the USDC into the agent, two payouts
    assert len(subs) == 5, "one transaction per leg and purpose: resending signed nothing"
