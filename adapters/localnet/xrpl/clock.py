"""The node's clock: wall time plus an offset that tests and operators can move forward.

Ledger close times follow this clock, in seconds since the Ripple epoch
(2000-01-01T00:00:00Z). Moving it forward is how escrow time rules are exercised
without waiting; it never moves backwards.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from adapters.localnet.xrpl.protocol import RIPPLE_EPOCH_UNIX_S


class NodeClock:
    def __init__(self, wall_s: Callable[[], float] = time.time, offset_s: int = 0) -> None:
        self._wall_s = wall_s
        self._offset_s = offset_s
        self._lock = threading.Lock()

    def advance(self, seconds: int) -> None:
        """Move the clock forward by a whole number of seconds (ledger time resolution)."""
        if seconds < 0:
            raise ValueError("the node clock never moves backwards")
        with self._lock:
            self._offset_s += seconds

    @property
    def offset_s(self) -> int:
        with self._lock:
            return self._offset_s

    def unix_now_s(self) -> int:
        with self._lock:
            return int(self._wall_s()) + self._offset_s

    def ripple_now_s(self) -> int:
        return self.unix_now_s() - RIPPLE_EPOCH_UNIX_S
