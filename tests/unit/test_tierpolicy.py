"""Rule 4 in bounded memory (stratum.tiering.policy.WatermarkCandidates) against the rule
written the obvious way, over every volume at once; and ``promote_reads = 0``."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from stratum.config import TieringConfig, load_config
from stratum.meta.records import VolumeRecord
from stratum.tiering.policy import HeuristicPolicy, Usage, WatermarkCandidates

CONFIG = load_config(overrides={"storage.data_dir": Path("/nonexistent")}).tiering
KIB = 1024


def volume(i: int, tier: str, size: int, seen: float) -> VolumeRecord:
    return VolumeRecord(f"v{i:06d}", tier, "seg", {}, size, "", seen, last_access=seen)


def rule_4_over_everything(
    policy: HeuristicPolicy,
    offered: list[VolumeRecord],
    leaving: list[VolumeRecord],
    usage: dict[str, Usage],
) -> list[tuple[str, str]]:
    """Each pool above its high watermark sheds its least recently read volumes (walk order
    among equals) until under its low one, the moves of rules 1 to 3 counted as gone."""
    out = []
    for tier, (high, low) in policy.watermarks().items():
        u = usage.get(tier)
        if u is None or not u.capacity or u.used / u.capacity <= high:
            continue
        used = u.used - sum(v.size for v in leaving if v.tier == tier)
        pool = sorted((v for v in offered if v.tier == tier), key=lambda v: v.last_access)
        for v in pool:
            target = policy.demotion_target(tier, v.size)
            if target is None or used / u.capacity <= low:
                break
            out.append((v.volume_id, target))
            used -= v.size
    return out


walks = st.lists(
    st.tuples(
        st.sampled_from(["hot", "warm"]),
        st.integers(1, 400 * KIB),
        st.integers(0, 30),  # few distinct read times: ties must break by walk order
        st.booleans(),  # True: rules 1 to 3 move it (it leaves its pool)
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(
    walk=walks,
    tiers=st.sampled_from([{"hot", "warm", "cold"}, {"hot", "warm"}, {"hot", "cold"}]),
    hot_fill=st.floats(0.5, 1.2),
    warm_fill=st.floats(0.5, 1.2),
    capacity=st.integers(1, 4000 * KIB),
)
def test_the_candidates_pick_what_rule_4_over_every_volume_picks(
    walk: list[tuple[str, int, int, bool]],
    tiers: set[str],
    hot_fill: float,
    warm_fill: float,
    capacity: int,
) -> None:
    policy = HeuristicPolicy(CONFIG, tiers)
    usage = {
        "hot": Usage(int(capacity * hot_fill), capacity),
        "warm": Usage(int(capacity * warm_fill), capacity),
    }
    candidates = WatermarkCandidates(policy, usage, limit=10_000)
    offered, leaving = [], []
    for i, (tier, size, seen, leaves) in enumerate(walk):
        v = volume(i, tier, size, float(seen))
        if leaves:
            leaving.append(v)
            candidates.leaving(v)
        else:
            offered.append(v)
            candidates.offer(v)
    picks = [(p.volume_id, p.target) for p in candidates.picks()]
    assert picks == rule_4_over_everything(policy, offered, leaving, usage)


def test_the_candidates_are_bounded_by_the_limit_whatever_the_pool() -> None:
    """A pool whose excess would take every volume keeps the ``limit`` least recently read
    (the next pass takes the rest), in memory that does not grow with the pool."""
    policy = HeuristicPolicy(CONFIG, {"hot", "warm"})
    count = 30_000
    usage = {"hot": Usage(count * KIB, count * KIB)}
    candidates = WatermarkCandidates(policy, usage, limit=1000)
    tracemalloc.start()
    try:
        for i in range(count):
            # read times decreasing then increasing: the coldest are in the middle of the walk
            candidates.offer(volume(i, "hot", KIB, float(abs(i - count // 2))))
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    picks = candidates.picks()
    assert len(picks) == 1000
    coldest = sorted(range(count), key=lambda i: (abs(i - count // 2), i))[:1000]
    assert [p.volume_id for p in picks] == [f"v{i:06d}" for i in coldest]
    assert held < 1 << 20, f"{held} bytes held for 1000 candidates"


def test_promote_reads_zero_never_promotes_nor_promises_to() -> None:
    config = load_config(
        overrides={"storage.data_dir": Path("/nonexistent"), "tiering.promote_reads": 0}
    ).tiering
    assert isinstance(config, TieringConfig)
    policy = HeuristicPolicy(config, {"hot", "warm"})
    now = 1_800_000_000.0
    read_often = VolumeRecord(
        "v",
        "warm",
        "seg",
        {},
        1,
        "",
        now - 100,
        last_access=now,
        recent=[now - i for i in range(9)],
    )
    never_read = VolumeRecord("w", "warm", "seg", {}, 1, "", now - 100)
    for v in (read_often, never_read):
        assert policy.decide(v, ("", ""), now, {}) is None
        assert policy.next_move(v, ("", "")) is None
    default = HeuristicPolicy(CONFIG, {"hot", "warm"})
    decision = default.decide(read_often, ("", ""), now, {})
    assert decision is not None and decision.rule == "promote"
