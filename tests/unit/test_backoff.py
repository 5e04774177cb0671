"""Per-key retry times (stratum.util.backoff) on a clock the test moves."""

from __future__ import annotations

import math

import pytest

from stratum.util.backoff import Backoff
from stratum.util.clock import ManualClock


def test_the_wait_doubles_up_to_its_cap() -> None:
    clock = ManualClock(0.0)
    backoff = Backoff(clock, first=30, cap=100)
    waits = []
    for attempt in range(1, 6):
        failure = backoff.failed("v", f"broken {attempt}")
        assert (failure.attempts, failure.since, failure.why) == (attempt, 0.0, f"broken {attempt}")
        waits.append(failure.retry_at - clock.now())
        assert backoff.waiting("v") and backoff.due() == []
        clock.advance(waits[-1])
        assert not backoff.waiting("v") and backoff.due() == ["v"]
    assert waits == [30, 60, 100, 100, 100]


def test_keys_wait_apart_and_a_success_ends_the_wait() -> None:
    clock = ManualClock(0.0)
    backoff = Backoff(clock, first=10, cap=1000)
    assert backoff.next_due_in() == math.inf and not backoff.waiting("a")
    backoff.failed("a", "x")
    clock.advance(5)
    backoff.failed("b", "y")
    assert backoff.next_due_in() == 5 and len(backoff) == 2 and "b" in backoff
    clock.advance(5)
    assert backoff.due() == ["a"] and backoff.waiting("b")
    backoff.failed("a", "x")  # second failure: 20 s
    backoff.retry_all_now()
    assert sorted(backoff.due()) == ["a", "b"] and backoff.next_due_in() == 0
    again = backoff.failed("a", "x")
    assert again.attempts == 3 and again.retry_at == clock.now() + 40, "counts survive"
    failure = backoff.succeeded("a")
    assert failure is not None and failure.attempts == 3
    assert backoff.succeeded("a") is None and [k for k, _ in backoff.items()] == ["b"]
    backoff.forget("b")
    assert len(backoff) == 0


def test_the_first_wait_must_be_positive_and_within_the_cap() -> None:
    with pytest.raises(ValueError):
        Backoff(ManualClock(), first=0, cap=10)
    with pytest.raises(ValueError):
        Backoff(ManualClock(), first=20, cap=10)
