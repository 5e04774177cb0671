"""Group-aware promotion's bookkeeping (stratum.tiering.prefetch): when a pattern is seen,
what a promotion may take, and how a scope whose promotions go unread stops promoting."""

from __future__ import annotations

import dataclasses

from stratum.config import load_config
from stratum.tiering.learned import Learner
from stratum.tiering.policy import LearnedPolicy, SimulatedStratumPolicy
from stratum.tiering.prefetch import (
    MIN_TRIED,
    RULE,
    Prefetcher,
    directory_of,
    following_keys,
    held,
    scope_of,
)
from stratum.tiering.pricing import DEFAULT_PRICES
from stratum.tiering.simulator import simulate
from stratum.tiering.traces import DAY, TraceRow

MB = 1_000_000


def _prefetcher(**kw: int | float) -> Prefetcher:
    settings: dict[str, int | float] = {"after": 2, "window": 3600.0, "count": 3, "budget": 10 * MB}
    return Prefetcher(**{**settings, **kw})  # type: ignore[arg-type]


def test_scopes_and_directories() -> None:
    assert scope_of("photos", "library/2024/album/IMG_1.jpg") == "photos/library/"
    assert scope_of("b", "root-file") == "b/"
    assert directory_of("library/2024/album/IMG_1.jpg") == "library/2024/album/"
    assert following_keys("data/3f/3fabc") == ("data/3f/", "data/")
    assert following_keys("top") == ("", "")


def test_a_pattern_needs_enough_slow_reads_within_the_window() -> None:
    p = _prefetcher()
    assert not p.read("b", "a/1", True, 0.0)  # one slow read is not a pattern
    assert not p.read("b", "a/2", False, 10.0)  # a hot read does not count
    assert not p.read("b", "x/1", True, 20.0)  # another scope
    assert p.read("b", "a/3", True, 30.0)  # the second slow read of a/ within the hour
    assert not p.read("b", "a/4", True, 30.0 + 2 * 3600)  # the window has passed since
    assert not _prefetcher(budget=0).read("b", "a/1", True, 0.0)  # off


def test_a_promotion_takes_at_most_count_objects_within_the_budget() -> None:
    p = _prefetcher()
    candidates = [("a/2", 4 * MB), ("a/3", 4 * MB), ("a/4", 4 * MB), ("a/5", 1 * MB)]
    chosen = p.take("b", "a/1", candidates, 0.0)
    assert chosen == [("a/2", 4 * MB), ("a/3", 4 * MB), ("a/5", 1 * MB)]  # a/4: over budget
    # the budget is the scope's per window: 1 MB left, and what is in flight is not taken again
    assert p.take("b", "a/1", [("a/3", 4 * MB), ("a/6", 1 * MB)], 60.0) == [("a/6", 1 * MB)]
    assert p.take("b", "a/1", [("a/7", 1 * MB)], 60.0) == []
    assert p.take("b", "a/1", [("a/7", 1 * MB)], 3700.0) == [("a/7", 1 * MB)]  # a new window


def test_a_scope_whose_promotions_go_unread_stops_promoting() -> None:
    p, control = _prefetcher(count=1, budget=10**12), _prefetcher(count=1, budget=10**12)
    for i in range(int(MIN_TRIED) + 2):
        assert p.take("b", f"a/{i}", [(f"a/x{i}", 10)], i * 60.0)
    assert p.summary()["promoted"] == MIN_TRIED + 2
    for prefetcher in (p, control):
        prefetcher.read("b", "a/y", True, 1200.0)
    assert not p.read("b", "a/z", True, 1201.0)  # none of them was read: no more
    assert control.read("b", "a/z", True, 1201.0)  # the same reads, no history: a pattern
    scope = next(p.scopes())
    assert scope["scope"] == "b/a/" and not scope["promoting"]
    # a scope whose promotions are read keeps promoting
    q = _prefetcher(count=1, budget=10**12)
    for i in range(40):
        q.read("b", f"a/{i}", True, i * 60.0)
        for name, _ in q.take("b", f"a/{i}", [(f"a/{i}-next", 10)], i * 60.0):
            q.read("b", name, False, i * 60.0 + 5)
    assert q.read("b", "a/last", True, 41 * 60.0)
    assert q.summary()["used"] == q.summary()["promoted"] > MIN_TRIED


def test_promotions_never_read_expire_as_unused() -> None:
    p = _prefetcher()
    p.take("b", "a/1", [("a/2", 10)], 0.0)
    p.read("b", "z/1", False, 3 * 3600.0)  # any later call expires what is two windows old
    assert p.summary()["unused"] == 1 and p.summary()["in_flight"] == 0
    p.read("b", "a/2", False, 3 * 3600.0 + 1)
    assert p.summary()["used"] == 0  # too late to count


def test_a_promoted_object_is_held_until_its_read_or_the_window() -> None:
    placed = {"rule": RULE, "at": 1000.0}
    assert held(placed, last_read=0.0, now=1000.0 + 3599, window=3600)
    assert not held(placed, last_read=0.0, now=1000.0 + 3600, window=3600)
    assert not held(placed, last_read=1500.0, now=1600.0, window=3600)  # its read came
    assert not held({"rule": "learned", "at": 1000.0}, last_read=0.0, now=1001.0, window=3600)


def _album_trace() -> list[TraceRow]:
    """An album of 40 photos written on day 0 and left unread for 10 days (the fixed rules
    move it to warm after 7), then opened: its photos read one after another, 20 s apart."""
    keys = [f"library/album/IMG_{i:04d}.jpg" for i in range(40)]
    rows = [TraceRow(i * 1.0, "PUT", "photos", key, 2 * MB) for i, key in enumerate(keys)]
    start = 10 * DAY + 3600.0
    rows += [TraceRow(start + 20 * i, "GET", "photos", key, 2 * MB) for i, key in enumerate(keys)]
    return rows


def _learned(budget: int) -> LearnedPolicy:
    config = dataclasses.replace(load_config(None).tiering, prefetch_budget=budget)
    fallback = SimulatedStratumPolicy(config, {"hot", "warm"})
    return LearnedPolicy(Learner(DEFAULT_PRICES), fallback, config.cold_min_size)


def test_the_simulator_promotes_an_album_ahead_of_its_reads() -> None:
    rows = _album_trace()
    off = simulate(rows, _learned(0), DEFAULT_PRICES, end=11 * DAY)
    policy = _learned(1 << 30)
    on = simulate(rows, policy, DEFAULT_PRICES, end=11 * DAY)
    assert off.gets_by_tier == {"hot": 0, "warm": 40, "cold": 0}
    # the first two reads make the pattern and promote the next 8, each 2 MB landing 40 ms
    # after the other at 50 MiB/s, long before its read 20 s on; each read of a promoted
    # photo promotes further
    assert on.gets_by_tier == {"hot": 38, "warm": 2, "cold": 0}
    assert policy.prefetcher.summary()["promoted"] == policy.prefetcher.summary()["used"] == 38
