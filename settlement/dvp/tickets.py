"""Keeping XRPL accounts supplied with Tickets, so their transactions submit side by side.

An account the engine signs for (the settlement agent, a sender of XRPL legs) that
holds Tickets can have one transaction in flight per ticket instead of one per Sequence
(``adapters.xrpl.chain``). Each transaction the engine signs on a ticket spends it; a
top-up creates the missing ones with one TicketCreate on the account's own Sequence.

Account set-up, not settlement: the TicketCreate belongs to no leg, so it is not in the
settlements' write-ahead log. It is signed once and then followed by hash until final,
like any submission. A top-up interrupted and run again may sign a second TicketCreate
while the first could still apply; the worst case is more tickets than asked for (each
costs the owner reserve), or ``tecDIR_FULL`` past 250, never money moved.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from adapters.chain import (
    Applied,
    Expired,
    Outcome,
    Pending,
    Rejected,
    SignedSubmission,
    Unavailable,
    is_final,
)
from adapters.xrpl.chain import MAX_TICKETS_PER_ACCOUNT, XrplChain


@dataclass(frozen=True)
class TicketTopUp:
    """What a top-up found and did: ``before`` and ``after`` are the tickets held in the
    validated ledger; ``outcome`` is the TicketCreate's final (or last) outcome, None
    when the account already held enough."""

    account: str
    before: int
    after: int
    outcome: Outcome | None

    @property
    def ok(self) -> bool:
        return self.outcome is None or isinstance(self.outcome, Applied)


def top_up_tickets(
    chain: XrplChain,
    account: str,
    target: int,
    *,
    timeout_s: float = 60.0,
    poll_s: float = 0.25,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> TicketTopUp:
    """Bring ``account`` to at least ``target`` tickets (1..250) and wait until the
    TicketCreate is final or ``timeout_s`` passes (then its last outcome is ``Pending``
    or ``Unavailable`` and it may still apply). Raises ``ValueError`` for a target out of
    range and ``adapters.errors.AdapterError`` if the ledger cannot be asked or the key
    is not held."""
    if not 1 <= target <= MAX_TICKETS_PER_ACCOUNT:
        raise ValueError(f"a ticket target is 1 to {MAX_TICKETS_PER_ACCOUNT}, not {target}")
    before = len(chain.tickets(account))
    if before >= target:
        return TicketTopUp(account, before, before, None)
    signed = chain.prepare_ticket_create(account, target - before)
    outcome = chain.submit(signed)
    deadline = monotonic() + timeout_s
    while not is_final(outcome) and monotonic() < deadline:
        sleep(poll_s)
        outcome = chain.status(signed)
        if isinstance(outcome, Pending):
            resent = chain.submit(signed)  # the same blob: applied at most once
            outcome = resent if not isinstance(resent, Unavailable) else outcome
    after = len(chain.tickets(account))
    return TicketTopUp(account, before, after, outcome)


def describe(outcome: Outcome | None) -> str:
    match outcome:
        case None:
            return "enough tickets already"
        case Applied(tx_hash=h, ledger_index=i, ledger_hash=lh):
            return f"TicketCreate {h} in ledger {i} ({lh})"
        case Rejected(tx_hash=h, code=code):
            return f"TicketCreate {h} rejected: {code}"
        case Expired(tx_hash=h):
            return f"TicketCreate {h} expired without applying"
        case Pending(tx_hash=h, detail=d):
            return f"TicketCreate {h} not final yet: {d}"
        case Unavailable(reason=r):
            return f"ledger unavailable: {r}"


class TicketKeeper:
    """Keeps each of ``accounts`` at ``target`` tickets without blocking its caller: the
    worker calls ``tend`` from its housekeeping. An account below half the target gets a
    TicketCreate for the difference; while that one is not final, ``tend`` only polls it
    (never a second one for the account). Several workers may each top up an account at
    once: the account then holds more than the target, never more than 250."""

    def __init__(self, chain: XrplChain, accounts: list[str], target: int) -> None:
        if not 1 <= target <= MAX_TICKETS_PER_ACCOUNT:
            raise ValueError(f"a ticket target is 1 to {MAX_TICKETS_PER_ACCOUNT}, not {target}")
        self._chain = chain
        self.accounts = list(dict.fromkeys(accounts))
        self.target = target
        self.low_water = max(1, target // 2)
        self._open: dict[str, SignedSubmission] = {}
        #: the last final outcome per account, for logs and tests
        self.last: dict[str, Outcome] = {}

    def tend(self) -> None:
        """One pass: poll open TicketCreates, start one for each account that is low.
        Raises ``adapters.errors.AdapterError`` when the ledger cannot be asked (the
        worker logs it and tends again later)."""
        for account in self.accounts:
            signed = self._open.get(account)
            if signed is not None:
                outcome = self._chain.status(signed)
                if isinstance(outcome, Pending):
                    self._chain.submit(signed)  # the same blob: applied at most once
                if not is_final(outcome):
                    continue
                self.last[account] = outcome
                del self._open[account]
            held = len(self._chain.tickets(account))
            if held >= self.low_water:
                continue
            count = min(self.target, MAX_TICKETS_PER_ACCOUNT) - held
            try:
                signed = self._chain.prepare_ticket_create(account, count)
            except ValueError:
                # another worker's TicketCreate applied since the count was read: the
                # account has no room for this many now, and likely needs none
                continue
            self._open[account] = signed
            self._chain.submit(signed)
