"""Injected time.

Everything whose behaviour depends on time (tiering, expiry, upload timeouts,
request skew checks) takes a :class:`Clock` rather than calling ``time.time()``,
so tests can run months of activity in milliseconds with :class:`ManualClock`.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Wall-clock seconds since the epoch, as a float."""

    def now(self) -> float: ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that only moves when told to (tests, the tier simulator)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a ManualClock never goes backwards")
        self._now += seconds

    def set(self, when: float) -> None:
        self._now = when
