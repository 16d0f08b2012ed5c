"""Group commit for the guard's database calls.

Every signed request needs a database decision before its route runs (is its key
still registered and not revoked, is its nonce new, and for a mutating request: may it
claim its Idempotency-Key?), and a mutating one a second after it (store the
response). Made one request at a time, each is a statement and a commit per
request. A ``GroupCall`` lets concurrent requests share
them: a request queues its item and waits for its own answer. A request that finds
fewer than ``MAX_RUNNING`` statements running starts one, which takes every item queued
by then (a lone request waits for no timer); otherwise it waits, and when a running
statement finishes, everything queued meanwhile goes together in the next. Under load
the statements carry many items each; a slow one holds up only the items it carries.

Under load a statement may also linger before it starts, as PostgreSQL's
``commit_delay`` does when at least ``commit_siblings`` transactions are active: if
``busy()`` says enough other requests are in progress, it waits ``linger_s`` once, so
the requests those are about to queue go in the same statement. A request then waits
a few milliseconds more, far less than it already queues for under such load, and each
statement carries more items (fewer statements, less CPU per request in the server and
in PostgreSQL). When ``busy()`` is false (light load, a lone request) nothing lingers.

The statements (``ledger.api_keys``) answer each item as if the items of a batch had
run one after another in their order, so batching changes no verdict:

- replay: a nonce is recorded at most once per key. Within a statement the first item
  carrying a (key, nonce) pair decides and every other is refused as a replay; across
  statements (running at once here or in other processes) the primary key decides:
  the second to insert a pair waits for the first's transaction and finds the pair
  taken. Of any number of requests with one nonce, exactly one is accepted;
- revocation: an item is decided by a statement that starts after the item was
  queued, so it sees every revocation committed before its request arrived: a revoked
  key is refused from its next request, as with a statement per request;
- failure: if a statement fails, every item it carried gets that error (a 5xx problem
  for its request) and, the statement being one transaction, nothing is recorded for
  any of them; the items queued behind it go in the next statement as usual. Items are
  validated before they are queued (signature parameters, Idempotency-Key), so no one
  request's content can make a statement fail for the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")

#: items one statement carries at most; more wait for the next
MAX_BATCH = 128
#: statements one ``GroupCall`` runs at once: a second may start while the first runs,
#: so one slow statement does not hold up every request behind it
MAX_RUNNING = 2


@dataclass
class _Waiting(Generic[In, Out]):
    item: In
    answer: asyncio.Future[Out]


@dataclass
class _Lane(Generic[In, Out]):
    """The items of one event loop (a future belongs to the loop that made it)."""

    pending: list[_Waiting[In, Out]] = field(default_factory=list)
    drainers: set[asyncio.Task[None]] = field(default_factory=set)


@dataclass(frozen=True)
class BatchStats:
    statements: int
    items: int
    #: items of the last statement started
    last: int
    #: items waiting for a statement to start
    queued: int
    #: statements that lingered before they started
    lingered: int = 0


class GroupCall(Generic[In, Out]):
    """Runs ``decide`` (a coroutine function, awaited on the caller's event loop) on
    batches of queued items, at most ``max_running`` batches at once; ``decide``
    answers every item of its batch, in order, or raises. With ``linger_s``, a batch
    that is not full waits that long before it starts whenever ``busy()`` is true
    (called on the loop, so it must be quick)."""

    def __init__(
        self,
        decide: Callable[[Sequence[In]], Awaitable[Sequence[Out]]],
        *,
        max_batch: int = MAX_BATCH,
        max_running: int = MAX_RUNNING,
        linger_s: float = 0.0,
        busy: Callable[[], bool] | None = None,
    ) -> None:
        if max_batch < 1 or max_running < 1:
            raise ValueError("max_batch and max_running must be at least 1")
        if linger_s < 0 or (linger_s > 0 and busy is None):
            raise ValueError("linger_s must not be negative, and lingering needs busy")
        self._decide = decide
        self._max_batch = max_batch
        self.max_running = max_running
        self._linger_s = linger_s
        self._busy = busy
        # a lane exists while it has items queued or a statement running
        self._lanes: dict[asyncio.AbstractEventLoop, _Lane[In, Out]] = {}
        self._statements = 0
        self._items = 0
        self._last = 0
        self._lingered = 0

    @property
    def stats(self) -> BatchStats:
        queued = sum(len(lane.pending) for lane in list(self._lanes.values()))
        return BatchStats(self._statements, self._items, self._last, queued, self._lingered)

    async def __call__(self, item: In) -> Out:
        """``item``'s answer; raises what deciding its batch raised."""
        loop = asyncio.get_running_loop()
        lane = self._lanes.get(loop)
        if lane is None:
            lane = self._lanes[loop] = _Lane()
        answer: asyncio.Future[Out] = loop.create_future()
        lane.pending.append(_Waiting(item, answer))
        if len(lane.drainers) < self.max_running:
            lane.drainers.add(loop.create_task(self._drain(loop, lane)))
        return await answer

    async def _drain(self, loop: asyncio.AbstractEventLoop, lane: _Lane[In, Out]) -> None:
        """Run batches until nothing is queued. Each takes what is queued when it starts,
        so it starts after every item it carries was queued."""
        batch: list[_Waiting[In, Out]] = []
        try:
            while lane.pending:
                if self._lingers(lane):
                    await asyncio.sleep(self._linger_s)
                batch = lane.pending[: self._max_batch]
                del lane.pending[: self._max_batch]
                await self._run(batch)
                batch = []
        except BaseException:
            # cancelled (the loop is shutting down): nobody may wait forever
            for waiting in batch:
                waiting.answer.cancel()
            if len(lane.drainers) == 1:
                for waiting in lane.pending:
                    waiting.answer.cancel()
                lane.pending.clear()
            raise
        finally:
            # this runs on the loop, as every ``__call__`` does: no item can be queued
            # between the loop's last look at ``pending`` and here
            current = asyncio.current_task()
            if current is not None:
                lane.drainers.discard(current)
            if not lane.drainers and not lane.pending:
                del self._lanes[loop]

    def _lingers(self, lane: _Lane[In, Out]) -> bool:
        if not self._linger_s or len(lane.pending) >= self._max_batch:
            return False
        assert self._busy is not None
        if not self._busy():
            return False
        self._lingered += 1
        return True

    async def _run(self, batch: list[_Waiting[In, Out]]) -> None:
        """One statement: every item of ``batch`` gets its answer, or the error."""
        self._statements += 1
        self._items += len(batch)
        self._last = len(batch)
        try:
            answers = await self._decide([w.item for w in batch])
            if len(answers) != len(batch):
                raise RuntimeError("a batch was not given one answer per item")
        except Exception as exc:  # noqa: BLE001 - handed to each waiting request
            for waiting in batch:
                if not waiting.answer.done():
                    waiting.answer.set_exception(exc)
            return
        for waiting, answer in zip(batch, answers, strict=True):
            if not waiting.answer.done():  # its request may have been cancelled
                waiting.answer.set_result(answer)
