"""When garbage whose delete failed is tried again (stratum.service.gc_retries)."""

from __future__ import annotations

from stratum.service.gc_retries import OUTAGE_AFTER, RETRY_FIRST, DeleteRetries
from stratum.util.clock import ManualClock

BOOM = OSError("endpoint unreachable")


def test_a_failed_entry_waits_and_the_others_go_on() -> None:
    clock = ManualClock(0.0)
    retries = DeleteRetries(clock)
    retries.failed("a", "cold", BOOM)
    retries.succeeded("b", "cold")
    retries.end_pass()
    assert not retries.may_try("a", "cold") and retries.may_try("c", "cold")
    clock.advance(RETRY_FIRST)
    assert retries.may_try("a", "cold")


def test_a_tier_where_every_delete_fails_waits_as_a_whole() -> None:
    clock = ManualClock(0.0)
    retries = DeleteRetries(clock)
    for n in range(OUTAGE_AFTER):
        assert retries.may_try(f"k{n}", "cold")
        retries.failed(f"k{n}", "cold", BOOM)
    assert not retries.may_try("untried", "cold"), "the rest of the queue is not attempted"
    assert retries.may_try("untried", "hot"), "other tiers go on"
    assert len(retries.entries) == OUTAGE_AFTER, "an outage remembers a few entries only"
    retries.end_pass()
    clock.advance(RETRY_FIRST)
    assert retries.may_try("untried", "cold")
    retries.succeeded("untried", "cold")
    assert retries.may_try("other", "cold") and len(retries.tiers) == 0


def test_failures_among_successes_are_per_entry() -> None:
    clock = ManualClock(0.0)
    retries = DeleteRetries(clock)
    retries.succeeded("ok", "cold")
    for n in range(OUTAGE_AFTER + 2):
        retries.failed(f"bad{n}", "cold", BOOM)
    assert retries.may_try("next", "cold"), "deletes work there: one bad entry is not an outage"
