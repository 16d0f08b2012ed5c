"""The node's clock: wall-clock seconds plus an offset that tests can move forward.

Ledger close times, time bounds and claim predicates all read this clock, so
moving it forward is how a test makes "T_cancel has passed" true without waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class NodeClock:
    """Unix time in whole seconds, shifted by `advance()`; thread-safe."""

    def __init__(self, source: Callable[[], float] = time.time) -> None:
        self._source = source
        self._offset_s = 0
        self._lock = threading.Lock()

    def now(self) -> int:
        with self._lock:
            return int(self._source()) + self._offset_s

    def advance(self, seconds: int) -> None:
        """Move the clock forward; moving it backward is refused (close times only grow)."""
        if seconds < 0:
            raise ValueError("the node clock only moves forward")
        with self._lock:
            self._offset_s += seconds

    @property
    def offset_s(self) -> int:
        with self._lock:
            return self._offset_s

    def restore_offset(self, offset_s: int) -> None:
        """Used when a node reloads a snapshot, so a restart does not move time backward."""
        with self._lock:
            self._offset_s = max(self._offset_s, offset_s)
