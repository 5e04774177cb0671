"""Learned placement (stratum.tiering.learned): classes, decayed gap statistics, the ski-rental
decision, and the policy in the simulator against AWS-IT's rules and the offline bound."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stratum.config import load_config
from stratum.tiering.learned import (
    EDGES,
    HALF_LIFE,
    HORIZON,
    NEVER,
    ClassStats,
    LearnedPolicy,
    Learner,
    class_of,
)
from stratum.tiering.offline import OfflineOptimalPolicy
from stratum.tiering.policy import SimulatedStratumPolicy
from stratum.tiering.pricing import DEFAULT_PRICES
from stratum.tiering.simulator import AwsIntelligentTieringPolicy, simulate, simulation_end
from stratum.tiering.traces import DAY, HOUR, HomeLab, TraceRow, generate

GB = 10**9
TIERS = ("hot", "warm", "cold")


def test_class_of_names_bucket_directory_pattern_size_band_and_kind() -> None:
    assert class_of("backups", "night-0042/part-03.tar", 300 * 2**20) == (
        "backups/night-#/ 268435456B+ put"
    )
    assert class_of("backups", "night-0043/part-17.tar", 260 * 2**20) == (
        class_of("backups", "night-0042/part-03.tar", 300 * 2**20)
    )
    assert class_of("files", "a.txt", 0, "copy") == "files/ 1B+ copy"
    assert class_of("f", "x/1/y", 4096) != class_of("f", "x/1/y", 1024)


def test_gap_statistics_decay_and_condition_on_the_idle_age() -> None:
    stats = ClassStats.empty(0.0)
    for _ in range(10):
        stats.observe(30.0, 0.0)  # re-read within a minute
    for _ in range(10):
        stats.observe(None, 0.0)  # never again
    evidence, p_read, held = stats.remaining(0.0)
    assert evidence == pytest.approx(20) and p_read == pytest.approx(0.5)
    assert held == pytest.approx((10 * 30 + 10 * HORIZON) / 20)
    # idle for an hour: only the "never" half is left
    evidence, p_read, held = stats.remaining(HOUR)
    assert evidence == pytest.approx(10) and p_read == 0.0 and held == HORIZON - HOUR
    stats.decay_to(HALF_LIFE)
    assert sum(stats.counts) == pytest.approx(10)
    assert stats.counts[0] == pytest.approx(5) and stats.counts[NEVER] == pytest.approx(5)
    assert EDGES[0] == 60.0 and EDGES[-1] == HORIZON
    assert stats.summary() == {"evidence": 10.0, "reread_ratio": 0.5, "median_gap_below": 60.0}


def _remaining_by_walking_every_bin(stats: ClassStats, age: float) -> tuple[float, ...]:
    """The definition of ClassStats.remaining, bin by bin (its answers come from sums)."""
    mass = reads = expected = 0.0
    low = 0.0
    for index, high in enumerate(EDGES):
        count = stats.counts[index]
        if count and high > age:
            start = max(low, age)
            share = count * (high - start) / (high - low)
            mass += share
            reads += share
            expected += share * ((start + high) / 2 - age)
        low = high
    mass += stats.counts[NEVER]
    if mass <= 0:
        return 0.0, 0.0, HORIZON
    expected += stats.counts[NEVER] * max(0.0, HORIZON - age)
    return mass, reads / mass, expected / mass


@given(
    gaps=st.lists(
        st.tuples(
            st.one_of(st.none(), st.floats(0, 2 * HORIZON)), st.floats(0.01, 5), st.floats(0, DAY)
        ),
        max_size=30,
    ),
    ages=st.lists(st.one_of(st.floats(0, 1.2 * HORIZON), st.sampled_from(EDGES)), max_size=5),
)
def test_remaining_from_sums_equals_the_walk_over_every_bin(
    gaps: list[tuple[float | None, float, float]], ages: list[float]
) -> None:
    stats = ClassStats.empty(0.0)
    now = 0.0
    for gap, weight, later in gaps:
        now += later  # decay between observations: the sums must follow
        stats.observe(gap, now, weight)
        for age in ages:
            got = stats.remaining(age)
            want = _remaining_by_walking_every_bin(stats, age)
            assert got == pytest.approx(want, rel=1e-9, abs=1e-9)


def test_the_decision_weighs_storage_against_reads_and_defers_without_evidence() -> None:
    learner = Learner(DEFAULT_PRICES)
    assert learner.decide("new", GB, "hot", 0.0, TIERS) is None  # no evidence: the rules
    for _ in range(20):
        learner.observe("backup", None, 0.0)
        learner.observe("busy", 600.0, 0.0)
    # 1 GB never read again: warm (0.002 against 0.008 per GB-month; cold costs 0.006)
    target, costs = learner.decide("backup", GB, "hot", 0.0, TIERS) or ("", {})
    assert target == "warm"
    assert costs["warm"] == pytest.approx(0.002 * HORIZON / (30 * DAY) + 0.0002)
    # read every 10 minutes: a slow read each time costs more than hot's storage
    assert (learner.decide("busy", GB, "hot", 0.0, TIERS) or ("",))[0] == "hot"
    # a read from warm brings it back: the move is cheaper than the expected slow reads
    assert (learner.decide("busy", GB, "warm", 0.0, TIERS) or ("",))[0] == "hot"
    # idle for longer than any gap the class has shown: the class says it will not come back
    assert learner.decide("busy", GB, "hot", DAY, TIERS) is None  # (no evidence that far)


def test_class_memory_is_bounded() -> None:
    learner = Learner(DEFAULT_PRICES, max_classes=3)
    for index in range(10):
        learner.observe(f"c{index}", 60.0, float(index))
    learner.observe("c7", 60.0, 11.0)
    assert list(learner.classes) == ["c8", "c9", "c7"]
    assert [row["class"] for row in learner.table()] == ["c7", "c9", "c8"]


def learned_policy() -> LearnedPolicy:
    config = load_config(None).tiering
    fallback = SimulatedStratumPolicy(config, set(TIERS))
    return LearnedPolicy(Learner(DEFAULT_PRICES), fallback, config.cold_min_size)


def test_the_policy_learns_a_class_from_its_reads_and_deletes() -> None:
    # 30 objects of one class, each read 5 minutes after its write, then deleted after a
    # day; then one more: the class says "read once, soon, then never": after its read it
    # goes to warm at the first round, not after 7 idle days
    rows: list[TraceRow] = []
    for index in range(30):
        t = index * 2 * DAY
        rows += [
            TraceRow(t, "PUT", "b", f"d/{index}", GB),
            TraceRow(t + 300, "GET", "b", f"d/{index}", GB),
            TraceRow(t + DAY, "DELETE", "b", f"d/{index}", GB),
        ]
    t = 60 * DAY
    rows += [TraceRow(t, "PUT", "b", "d/new", GB), TraceRow(t + 300, "GET", "b", "d/new", GB)]
    policy = learned_policy()
    report = simulate(rows, policy, DEFAULT_PRICES, end=62 * DAY)
    late = [(m.key, m.time, m.target) for m in report.move_log if m.key == "d/new"]
    assert late == [("d/new", t + HOUR, "warm")]
    early = [(m.time - 0, m.target) for m in report.move_log if m.key == "d/0"]
    assert early == []  # deleted after a day, before the fixed rules' 7 days
    assert policy.learned > 0 and policy.deferred > 0


def test_on_a_generated_trace_cheaper_than_aws_rules_near_the_bound() -> None:
    lab = HomeLab(working_set=300, reads_per_day=400, heads_per_day=30, backup_files=4)
    rows = list(generate(40, seed=2, lab=lab))
    end = simulation_end(rows)
    learned = simulate(rows, learned_policy(), DEFAULT_PRICES, end=end)
    aws = simulate(rows, AwsIntelligentTieringPolicy(), DEFAULT_PRICES, end=end)
    bound_policy = OfflineOptimalPolicy.from_trace(rows, DEFAULT_PRICES, 0.0, end)
    bound = simulate(rows, bound_policy, DEFAULT_PRICES, end=end)
    assert learned.total_cost < 0.7 * aws.total_cost
    assert learned.total_cost < 2 * bound.total_cost
    assert learned.hot_hit_ratio > aws.hot_hit_ratio - 0.02
