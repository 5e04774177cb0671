"""The tier simulator (stratum.tiering.simulator) and the traces (stratum.tiering.traces)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stratum.config import load_config
from stratum.tiering.policy import SimulatedStratumPolicy
from stratum.tiering.pricing import DEFAULT_PRICES, MONTH, Prices
from stratum.tiering.simulation_report import Move, compare_text
from stratum.tiering.simulator import AwsIntelligentTieringPolicy, SimObject, StaticPolicy, simulate
from stratum.tiering.traces import (
    DAY,
    HOUR,
    HomeLab,
    TraceError,
    TraceRow,
    format_trace,
    generate,
    parse_trace,
    read_trace,
)

GB = 10**9
MIB = 1 << 20
SMALL_LAB = HomeLab(working_set=200, reads_per_day=300, heads_per_day=30, backup_files=3)


def put(time: float, key: str, size: int) -> TraceRow:
    return TraceRow(time, "PUT", "b", key, size)


def get(time: float, key: str, size: int = 0) -> TraceRow:
    return TraceRow(time, "GET", "b", key, size)


# --- traces ---------------------------------------------------------------------------------


def test_generator_is_deterministic_and_well_formed() -> None:
    first = list(generate(5, seed=7, lab=SMALL_LAB))
    assert first == list(generate(5, seed=7, lab=SMALL_LAB))
    assert first != list(generate(5, seed=8, lab=SMALL_LAB))
    times = [row.time for row in first]
    assert times == sorted(times) and times[-1] < 5 * DAY
    assert {"PUT", "GET", "HEAD"} <= {row.op for row in first}
    assert sum(1 for row in first if row.op == "PUT" and row.bucket == "files") >= 200
    backups = [row for row in first if row.bucket == "backups" and row.op == "PUT"]
    assert len(backups) == 5 * 3
    assert all(50 * MIB <= row.size <= 500 * MIB for row in backups)
    assert all(row.time % DAY >= 2 * HOUR for row in backups)
    # every GET/HEAD/DELETE names an object that exists at that moment
    live: dict[tuple[str, str], int] = {}
    for row in first:
        name = (row.bucket, row.key)
        if row.op == "PUT":
            live[name] = row.size
        else:
            assert live.get(name) == row.size, row
            if row.op == "DELETE":
                del live[name]


def test_backup_retention_and_restores() -> None:
    lab = HomeLab(working_set=50, reads_per_day=20, heads_per_day=2, backup_files=2)
    rows = list(generate(60, seed=3, lab=lab))
    deletes = [row for row in rows if row.op == "DELETE" and row.bucket == "backups"]
    nights = {int(row.key[6:10]) for row in deletes}
    assert nights == {n for n in range(60 - 30) if n % 7 != 6}  # weekly nights kept longer
    for row in deletes:
        night = int(row.key[6:10])
        assert row.time == (night + 30) * DAY + 3.5 * HOUR
    restores = [row for row in rows if row.op == "GET" and row.bucket == "backups"]
    assert restores and len(restores) % 2 == 0  # whole nights


def test_trace_csv_round_trip_and_errors(tmp_path: Path) -> None:
    rows = [
        TraceRow(0.0, "PUT", "b", 'a "quoted", key', 10),
        TraceRow(1.5, "GET", "b", 'a "quoted", key', 10),
        TraceRow(1.5, "HEAD", "b", "x", 0),
        TraceRow(2.0, "DELETE", "b", "x", 0),
    ]
    path = tmp_path / "trace.csv"
    path.write_text("".join(format_trace(rows)))
    assert list(read_trace(path)) == rows
    assert list(parse_trace(["# comment\n", "\n", "3,GET,b,k,5\n"])) == [get(3, "k", 5)]
    for bad, why in [
        ("1,COPY,b,k,1", "op must be"),
        ("1,GET,b,k", "5 fields|expected"),
        ("x,GET,b,k,1", "number"),
        ("1,GET,b,k,-1", "negative"),
    ]:
        with pytest.raises(TraceError, match=why):
            list(parse_trace(["time,op,bucket,key,size", bad], "t.csv"))
    with pytest.raises(TraceError, match=r"t.csv:2: time 1.0 is before"):
        list(parse_trace(["2,GET,b,k,1", "1,GET,b,k,1"], "t.csv"))


def test_tracegen_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "stratum.tiering.workloads", "--days", "1", "--seed", "1"],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = list(parse_trace(done.stdout.splitlines(keepends=True)))
    assert done.stdout.startswith("time,op,bucket,key,size\n")
    assert rows == [row._replace(time=round(row.time, 3)) for row in generate(1, seed=1)]


# --- the AWS policy -------------------------------------------------------------------------


def moves_of(log: list[Move], key: str) -> list[tuple[float, str, str]]:
    return [(m.time, m.source, m.target) for m in log if m.key == key]


def test_aws_policy_moves_an_unread_object_after_exactly_30_and_90_days() -> None:
    trace = [
        put(0, "big", 1 * MIB),
        put(0, "small", 100 * 1024),
        put(0, "headed", 1 * MIB),
        *[TraceRow(day * DAY + 5, "HEAD", "b", "headed", MIB) for day in range(1, 99)],
    ]
    report = simulate(trace, AwsIntelligentTieringPolicy(), end=100 * DAY)
    for key in ("big", "headed"):  # HEAD is not an access
        assert moves_of(report.move_log, key) == [
            (30 * DAY, "hot", "warm"),
            (90 * DAY, "warm", "cold"),
        ]
    assert moves_of(report.move_log, "small") == []
    assert report.samples[28].bytes == {"hot": 2 * MIB + 100 * 1024, "warm": 0, "cold": 0}
    assert report.samples[29].bytes == {"hot": 100 * 1024, "warm": 2 * MIB, "cold": 0}
    assert report.samples[89].bytes == {"hot": 100 * 1024, "warm": 0, "cold": 2 * MIB}
    assert len(report.samples) == 100


def test_aws_policy_brings_a_read_object_back_and_restarts_the_clock() -> None:
    read_at = 40 * DAY + 1234
    trace = [put(0, "k", 4 * MIB), get(read_at, "k"), get(read_at + 10, "k")]
    report = simulate(trace, AwsIntelligentTieringPolicy(), end=200 * DAY)
    back = 40 * DAY + HOUR  # the first hourly decision after the read
    assert moves_of(report.move_log, "k") == [
        (30 * DAY, "hot", "warm"),
        (back, "warm", "hot"),
        (back + 30 * DAY, "hot", "warm"),  # 30 days after the last read, on the hour
        (back + 90 * DAY, "warm", "cold"),
    ]
    assert report.gets_by_tier == {"hot": 0, "warm": 2, "cold": 0}
    assert report.hot_hit_ratio == 0.0


# --- Stratum's policy -----------------------------------------------------------------------


def test_the_simulator_asks_the_engines_own_rules() -> None:
    """Idle rules with the [tiering] defaults (7 days to warm, 30 to cold from 128 KiB up),
    then promotion after 3 reads within a day: the rules the engine applies, here on the
    simulator's clock."""
    config = load_config(overrides={"storage.data_dir": Path("/nonexistent")}).tiering
    policy = SimulatedStratumPolicy(config, {"hot", "warm", "cold"})
    read_at = 40 * DAY + 600
    trace = [
        put(0, "big", 4 * MIB),
        put(0, "small", 100 * 1024),
        *[get(read_at + i, "big") for i in range(3)],
    ]
    report = simulate(trace, policy, end=50 * DAY)
    assert moves_of(report.move_log, "big") == [
        (7 * DAY, "hot", "warm"),
        (30 * DAY, "warm", "cold"),
        (40 * DAY + HOUR, "cold", "hot"),  # the first hourly decision after the reads
        (47 * DAY + HOUR, "hot", "warm"),  # 7 days after the last read, on the hour
    ]
    assert moves_of(report.move_log, "small") == [(7 * DAY, "hot", "warm")]  # never cold


def test_promote_reads_zero_never_promotes() -> None:
    """``promote_reads = 0`` is documented as "never": reads, however many, bring nothing
    back to hot (``reads >= 0`` would hold for every volume, read or not)."""
    overrides = {"storage.data_dir": Path("/nonexistent"), "tiering.promote_reads": 0}
    config = load_config(overrides=overrides).tiering
    policy = SimulatedStratumPolicy(config, {"hot", "warm", "cold"})
    trace = [
        put(0, "read", 4 * MIB),
        put(0, "unread", 4 * MIB),
        *[get(10 * DAY + i, "read") for i in range(20)],
        *[get(35 * DAY + i, "read") for i in range(20)],
    ]
    report = simulate(trace, policy, end=50 * DAY)
    assert moves_of(report.move_log, "read") == [(7 * DAY, "hot", "warm")]
    assert moves_of(report.move_log, "unread") == [
        (7 * DAY, "hot", "warm"),
        (30 * DAY, "warm", "cold"),
    ]


# --- costs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColdAfter:
    """Moves everything to cold at a given time."""

    when: float
    name: str = "cold-after"

    def place(self, obj: SimObject, now: float) -> str:
        return "cold" if now >= self.when else obj.tier


def test_cost_arithmetic_by_hand() -> None:
    prices = Prices(
        storage={"hot": 1.0, "cold": 2.0},
        egress={"cold": 0.5},
        get_requests={"cold": 10.0},
        put_requests={"cold": 20.0},
        currency="X",
    )
    trace = [put(0, "k", 3 * GB), get(20 * DAY, "k"), TraceRow(20 * DAY, "HEAD", "b", "k", 0)]
    report = simulate(trace, ColdAfter(10 * DAY), prices, end=45 * DAY)
    first, second = report.months
    # month 1: 3 GB hot for 10 of 30 days (1.0), cold for 20 days at 2.0 (4.0); the move
    # costs one cold PUT (20/1000); the GET from cold 3 GB of egress (1.5) and one GET (0.01)
    assert first.days == 30 and second.days == 15
    assert first.storage == pytest.approx({"hot": 1.0, "cold": 4.0})
    assert first.average_gb == pytest.approx({"hot": 1.0, "cold": 2.0})
    assert (first.egress_gb, first.egress) == pytest.approx((3.0, 1.5))
    assert (first.get_requests, first.put_requests) == (1, 1)
    assert first.requests == pytest.approx(0.03)
    assert first.total == pytest.approx(6.53)
    # month 2: 15 days of 3 GB in cold
    assert second.storage == pytest.approx({"hot": 0.0, "cold": 3.0})
    assert second.total == pytest.approx(3.0)
    assert report.total_cost == pytest.approx(9.53)
    assert report.cost_per_month == pytest.approx(9.53 / 1.5)
    assert report.moves == 1 and report.bytes_moved == 3 * GB
    assert report.moves_by_path == {"hot->cold": {"count": 1, "bytes": 3 * GB}}
    assert report.gets_by_tier == {"hot": 0, "cold": 1}
    assert report.requests == {"PUT": 1, "GET": 1, "HEAD": 1, "DELETE": 0}


def test_default_prices_and_from_dict() -> None:
    assert DEFAULT_PRICES.tiers == ("hot", "warm", "cold")
    assert DEFAULT_PRICES.storage["cold"] == 0.006 and DEFAULT_PRICES.egress["cold"] == 0.01
    custom = Prices.from_dict(
        {"storage": {"ssd": 0.01, "b2": 0.006}, "egress": {"b2": 0.01}, "currency": "USD"}
    )
    assert custom.tiers == ("ssd", "b2") and custom.currency == "USD"
    assert Prices.from_dict(custom.to_dict()) == custom
    with pytest.raises(ValueError, match="not a tier"):
        Prices.from_dict({"storage": {"hot": 1}, "egress": {"cold": 1}})
    with pytest.raises(ValueError, match="unknown key"):
        Prices.from_dict({"storage": {"hot": 1}, "storge": {}})
    with pytest.raises(ValueError, match=">= 0"):
        Prices(storage={"hot": -1.0})


@dataclass
class Watermark:
    """Moves the biggest objects to warm while hot holds more than ``limit`` bytes."""

    limit: int
    demote: set[str]
    rounds: int = 0
    name: str = "watermark"

    def begin_round(self, now: float, tier_bytes: Any, objects: Any) -> None:
        self.rounds += 1
        excess = tier_bytes["hot"] - self.limit
        for obj in sorted(objects, key=lambda o: -o.size):
            if excess <= 0:
                break
            if obj.tier == "hot":
                self.demote.add(obj.key)
                excess -= obj.size

    def place(self, obj: SimObject, now: float) -> str:
        return "warm" if obj.key in self.demote else obj.tier


def test_a_policy_may_see_fill_levels_before_each_round() -> None:
    policy = Watermark(limit=25, demote=set())
    trace = [put(0, "a", 10), put(0, "b", 20), put(0, "c", 5)]
    report = simulate(trace, policy, end=DAY)
    assert policy.rounds == 24
    assert [(m.key, m.time) for m in report.move_log] == [("b", HOUR)]
    assert report.samples[0].bytes == {"hot": 15, "warm": 20, "cold": 0}


def test_unknown_tier_from_a_policy_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown tier 'tape'"):
        simulate([put(0, "k", 1)], StaticPolicy("tape"), end=DAY)


# --- signals --------------------------------------------------------------------------------


@dataclass
class Recorder:
    """Leaves everything where it is and records the rate it saw."""

    seen: list[tuple[float, float, int, float]]

    def place(self, obj: SimObject, now: float) -> str:
        self.seen.append((now, obj.access_rate, obj.access_count, obj.last_access))
        return obj.tier


def test_access_rate_decays_with_a_7_day_half_life_and_converges() -> None:
    recorder = Recorder([])
    trace = [put(0, "k", 10), *[get(day * DAY + 600, "k") for day in range(60)]]
    simulate(trace, recorder, end=74 * DAY)
    by_time = {now: (rate, count, last) for now, rate, count, last in recorder.seen}
    rate, count, last = by_time[60 * DAY]
    assert count == 60 and last == 59 * DAY + 600
    # one read a day -> a sawtooth around 1 read per day: its mean over a week is 1
    week = [rate for now, rate, _, _ in recorder.seen if 53 * DAY <= now < 60 * DAY]
    assert sum(week) / len(week) == pytest.approx(1.0, rel=0.02)
    assert 0.9 < rate < 1.0  # just before the next read would have come
    later, *_ = by_time[67 * DAY]
    assert later == pytest.approx(rate / 2)  # a week without reads halves it
    assert by_time[74 * DAY][0] == pytest.approx(rate / 4)
    single = SimObject("b", "k", 1, created=0.0, tier="hot")
    single.read(0.0)
    assert single.access_rate == pytest.approx(math.log(2) / 7)


def test_objects_from_before_the_trace_and_missing_keys() -> None:
    trace = [
        get(HOUR, "old", 5 * GB),  # exists from before the trace
        TraceRow(2 * HOUR, "DELETE", "b", "old", 5 * GB),
        get(3 * HOUR, "old", 5 * GB),  # gone
        TraceRow(3 * HOUR, "HEAD", "b", "never", 1),
    ]
    report = simulate(trace, StaticPolicy("hot"), end=DAY)
    assert report.gets_by_tier["hot"] == 1
    assert report.missing == 1
    assert report.samples[-1].bytes["hot"] == 1  # "never" is assumed to exist since the start


# --- reports --------------------------------------------------------------------------------


def test_policies_on_a_generated_trace() -> None:
    rows = list(generate(40, seed=2, lab=SMALL_LAB))
    flat = simulate(rows, StaticPolicy("hot"))
    aws = simulate(rows, AwsIntelligentTieringPolicy())
    assert flat.days == aws.days == 40 and len(flat.samples) == len(aws.samples) == 40
    assert flat.moves == 0 and flat.hot_hit_ratio == 1.0
    assert aws.moves > 0
    for a, b in zip(flat.samples, aws.samples, strict=True):  # moves neither add nor drop bytes
        assert sum(a.bytes.values()) == sum(b.bytes.values())
        assert sum(a.objects.values()) == sum(b.objects.values())
    assert [m.month for m in aws.months] == [1, 2] and aws.months[1].days == pytest.approx(10)
    assert aws.end == 40 * DAY and MONTH == 30 * DAY

    text = aws.to_text()
    assert "Policy aws-intelligent-tiering: 40.0 days" in text
    assert "| Month | Days | hot GB | warm GB | cold GB |" in text
    assert "Average cost per month" in text
    data = json.loads(aws.to_json())
    assert data["policy"] == "aws-intelligent-tiering" and len(data["samples"]) == 40
    assert data["hot_hit_ratio"] == aws.hot_hit_ratio and data["prices"]["currency"] == "EUR"
    table = compare_text([flat, aws]).splitlines()
    assert table[0].startswith("| Policy ") and table[1].startswith("| :---")
    assert table[2].startswith("| all-hot ") and len(table) == 4
