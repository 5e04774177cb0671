"""Learned placement (stratum.tiering.learned): classes, decayed gap statistics, the ski-rental
decision, and the policy in the simulator against AWS-IT's rules and the offline bound."""

from __future__ import annotations

import dataclasses
import json
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stratum.config import load_config
from stratum.tiering.learned import (
    EDGES,
    HALF_LIFE,
    HORIZON,
    MAX_CLASSES,
    NEVER,
    REACHED,
    ClassStats,
    Learner,
    class_of,
    encode_snapshot,
    related_classes,
)
from stratum.tiering.offline import OfflineOptimalPolicy
from stratum.tiering.policy import LearnedPolicy, SimulatedStratumPolicy
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
    assert sum(stats.counts[: NEVER + 1]) == pytest.approx(10)
    assert stats.counts[0] == pytest.approx(5) and stats.counts[NEVER] == pytest.approx(5)
    assert EDGES[0] == 60.0 and EDGES[-1] == HORIZON
    assert stats.summary() == {
        "evidence": 10.0,
        "unread_now": 0.0,
        "reread_ratio": 0.5,
        "median_gap_below": 60.0,
    }


def _remaining_by_walking_every_bin(stats: ClassStats, age: float) -> tuple[float, ...]:
    """What ClassStats.remaining must give when every gap was seen whole (no object still
    unread): the gaps longer than ``age``, bin by bin."""
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
            # (counts are single-precision floats)
            assert got == pytest.approx(want, rel=1e-6, abs=1e-6)


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


def test_objects_not_yet_read_are_evidence_as_they_age() -> None:
    # 20 objects written at 0, none read, a round a day: by day 10 the class knows that
    # its objects stay unread for 10 days at least, long before the horizon (64 days)
    learner = Learner(DEFAULT_PRICES)
    for day in range(11):
        learner.begin_round(day * DAY)
        for _ in range(20):
            learner.idle("c", 0.0, day * DAY)
    evidence, p_read, _ = learner.classes["c"].remaining(10 * DAY)
    assert evidence == pytest.approx(20, rel=1e-3) and p_read == 0.0
    assert (learner.decide("c", GB, "hot", 10 * DAY, TIERS) or ("",))[0] == "warm"
    # each bin is reached once per object, however many rounds see it there
    assert max(learner.classes["c"].counts[REACHED:]) == pytest.approx(20, rel=1e-3)
    # censored: half of 20 objects read after an hour, the others unread at 2 days: the
    # chance of a read is a half (not 1, as the reads alone would say), and past the
    # oldest age seen no read is expected
    learner = Learner(DEFAULT_PRICES)
    learner.begin_round(0.0)
    for index in range(20):
        learner.idle("d", 0.0, 0.0)
        if index % 2:
            learner.reads("d", 0.0, 1, HOUR)
    learner.begin_round(2 * DAY)
    for _ in range(10):
        learner.idle("d", 0.0, 2 * DAY)
    # (counts decayed over the 2 days: a half-life is 30)
    evidence, p_read, _ = learner.classes["d"].remaining(0.0)
    assert evidence == pytest.approx(20, rel=0.05) and p_read == pytest.approx(0.5, rel=0.05)
    evidence, p_read, held = learner.classes["d"].remaining(DAY)
    assert evidence == pytest.approx(10, rel=0.05) and p_read == 0.0
    assert held == pytest.approx(HORIZON - DAY)


def test_a_class_without_evidence_falls_back_on_its_relatives_before_the_rules() -> None:
    # new shows in one bucket (a class each) of one size band: the bucket's other shows,
    # watched once and then never, decide for a new one, at the price of a slow read
    learner = Learner(DEFAULT_PRICES)
    shows = [class_of("media", f"show-{name}/e1.mkv", GB) for name in "abcdefghij"]
    assert related_classes(shows[0]) == ("media/*", f"media/* {4**14}B+")
    for show in shows[:-1]:
        learner.observe(show, None, 0.0)
    new = shows[-1]
    assert learner.evidence_class(new, 0.0) == f"media/* {4**14}B+"
    assert (learner.decide(new, GB, "hot", 0.0, TIERS) or ("",))[0] == "warm"
    # another size band of the bucket: the bucket's statistics decide
    small = class_of("media", "show-k/cover.jpg", 2**20)
    assert learner.evidence_class(small, 0.0) == "media/*"
    # the relatives respond to the knob as a class does: at a high price per slow read,
    # a bucket read again now and then keeps a new show hot
    busy = Learner(dataclasses.replace(DEFAULT_PRICES, slow_read=50.0))
    for show in shows[:-1]:
        busy.observe(show, DAY, 0.0)
    assert (busy.decide(new, GB, "hot", 0.0, TIERS) or ("",))[0] == "hot"
    assert (learner.decide("elsewhere", GB, "hot", 0.0, TIERS)) is None  # none: the rules
    # the relatives are sums made while a pass asks, not kept between passes
    learner.forget_answers()
    assert not learner._relatives and set(learner.classes) == set(shows[:-1])


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


def _counts(learner: Learner, name: str) -> list[float]:
    return [round(c, 6) for c in learner.classes[name].counts[: NEVER + 1]]


def test_each_gap_is_counted_once_whichever_event_ends_it() -> None:
    learner, name = Learner(DEFAULT_PRICES), "c"
    # three reads recorded together, the last 100 s after the write: one gap of 100 s, two
    # under a minute
    learner.reads(name, 0.0, 3, 100.0)
    want = [0.0] * (NEVER + 1)
    want[0], want[1] = 2.0, 1.0  # bins: under 60 s, 60 to 120 s
    assert _counts(learner, name) == want
    # an object last read at 100 crosses the horizon: the first round after counts it
    # "not read again", the next one does not, nor its later read, nor its delete
    learner.begin_round(100.0 + HORIZON - 1)
    learner.idle(name, 100.0, 100.0 + HORIZON - 1)
    assert learner.classes[name].counts[NEVER] == 0
    learner.begin_round(100.0 + HORIZON + 59)
    learner.idle(name, 100.0, 100.0 + HORIZON + 59)
    learner.begin_round(100.0 + HORIZON + 119)
    learner.idle(name, 100.0, 100.0 + HORIZON + 119)
    learner.reads(name, 100.0, 1, 100.0 + HORIZON + 200)
    learner.ended(name, 100.0, 100.0 + HORIZON + 300)
    assert learner.classes[name].counts[NEVER] == pytest.approx(1, rel=1e-3)
    # deleted before the horizon: "not read again" at its end
    learner.ended(name, learner.last_round or 0.0, (learner.last_round or 0.0) + DAY)
    assert learner.classes[name].counts[NEVER] == pytest.approx(1 + 0.5 ** (1 / 30), rel=1e-4)
    # read past the horizon with no round between the crossing and the read: counted then
    stats, last_round = learner.classes[name], learner.last_round or 0.0
    read_at = last_round - 10 + HORIZON + 5
    decayed = stats.counts[NEVER] * 0.5 ** ((read_at - stats.updated) / HALF_LIFE)
    learner.reads(name, last_round - 10, 1, read_at)
    assert stats.counts[NEVER] == pytest.approx(decayed + 1, rel=1e-6)


def test_the_stored_form_round_trips_and_other_formats_are_ignored() -> None:
    learner = Learner(DEFAULT_PRICES)
    for index in range(30):
        learner.observe(f"c{index % 3}", 60.0 * index, float(index))
        learner.observe("c1", None, float(index))
    learner.begin_round(50.0)
    learner.begin_round(110.0)
    raw = encode_snapshot(learner.snapshot())
    again = Learner(DEFAULT_PRICES)
    assert again.load(raw)
    assert again.table() == learner.table()
    assert (again.last_round, again.previous_round) == (110.0, 50.0)
    assert again.decide("c1", GB, "hot", 0.0, TIERS) == learner.decide("c1", GB, "hot", 0.0, TIERS)
    data = json.loads(raw)
    for other in ({**data, "format": 1}, {**data, "bins": len(EDGES) + 1}):
        assert not Learner(DEFAULT_PRICES).load(json.dumps(other).encode())
    assert not Learner(DEFAULT_PRICES).load(b"not json") and not Learner(DEFAULT_PRICES).load(None)


def test_a_worker_record_adds_to_the_primary() -> None:
    primary, worker = Learner(DEFAULT_PRICES), Learner(DEFAULT_PRICES, defer_long=True)
    primary.observe("c", 30.0, 0.0, weight=4)
    # a worker runs no rounds: which bins of a gap a round counted only the primary knows,
    # so its reads and ends go to the primary as they came
    worker.reads("c", 0.0, 2, 100.0)  # a gap of 100 s and one under a minute
    worker.reads("c", 0.0, 1, HORIZON + 10)  # past the horizon
    worker.ended("c", 200.0, 300.0)
    assert worker.deferred == [
        ("c", 0.0, 2, 100.0),
        ("c", 0.0, 1, HORIZON + 10),
        ("c", 200.0, 0, 300.0),
    ]
    record = encode_snapshot(worker.take())
    assert not worker.classes and not worker.deferred
    primary.begin_round(HORIZON + 5)  # a round saw it idle past the horizon and counted it
    primary.idle("c", 0.0, HORIZON + 5)
    assert primary.merge(record)
    counts = primary.classes["c"].counts
    decay = 0.5 ** ((HORIZON + 5) / HALF_LIFE)
    assert counts[0] == pytest.approx(5 * decay, rel=1e-3)  # 4 of its own, 1 from the worker
    assert counts[1] == pytest.approx(decay, rel=1e-3)
    # the round's and the end's (decayed from its time); the worker's late read adds none
    assert counts[NEVER] == pytest.approx(1 + decay, rel=1e-3)


def test_ten_thousand_classes_take_a_few_megabytes_between_passes() -> None:
    tracemalloc.start()
    try:
        learner = Learner(DEFAULT_PRICES)
        for index in range(MAX_CLASSES + 100):  # more than kept: the oldest go
            # a class per bucket: names of 48 characters ("bucket-00042/photos/#-#/ ...")
            name = class_of(f"bucket-{index:05d}", "photos/2026-07/x.jpg", 3 * 2**20)
            for gap in (30.0, 600.0, 7200.0, 3 * DAY, None):
                learner.observe(name, gap, float(index))
            learner.expected_costs(name, GB, "hot", 0.0, TIERS)
        learner.forget_answers()  # as the engine does after a pass
        used, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(learner.classes) == MAX_CLASSES
    assert used < 6_000_000, used
