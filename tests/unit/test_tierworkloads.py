"""The generated workloads (stratum.tiering.workloads) and the learned policy across seeds."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator

import pytest

from stratum.config import load_config
from stratum.tiering.learned import Learner
from stratum.tiering.offline import OfflineOptimalPolicy
from stratum.tiering.policy import LearnedPolicy, SimulatedStratumPolicy
from stratum.tiering.pricing import DEFAULT_PRICES
from stratum.tiering.simulation_report import Report
from stratum.tiering.simulator import AwsIntelligentTieringPolicy, simulate
from stratum.tiering.traces import DAY, HOUR, HomeLab, TraceRow, parse_trace
from stratum.tiering.workloads import (
    WORKLOADS,
    LogBucket,
    MediaLibrary,
    PhotoLibrary,
    ResticRepo,
    workload,
)

DAYS = 20
SMALL_LAB = HomeLab(working_set=200, reads_per_day=300, heads_per_day=30, backup_files=3)


def rows_of(name: str, seed: int, days: int = DAYS) -> list[TraceRow]:
    return list(workload(name, days, seed, SMALL_LAB if name == "homelab" else None))


def lives(rows: list[TraceRow]) -> Iterator[tuple[TraceRow, TraceRow | None]]:
    """Each row that names an object, with the PUT that made the version it names."""
    alive: dict[tuple[str, str], TraceRow] = {}
    for row in rows:
        name = (row.bucket, row.key)
        if row.op == "PUT":
            alive[name] = row
        yield row, alive.get(name)
        if row.op == "DELETE":
            alive.pop(name, None)


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_each_workload_is_deterministic_per_seed_and_well_formed(name: str) -> None:
    first = rows_of(name, 1)
    assert first == rows_of(name, 1)
    assert first != rows_of(name, 2)
    times = [row.time for row in first]
    assert times == sorted(times) and times[0] >= 0 and times[-1] < DAY * DAYS
    assert {"PUT", "GET"} <= {row.op for row in first}
    # every GET, HEAD and DELETE names an object written earlier and not deleted since
    # (a trace row for an unknown key would stand for an object from before the trace)
    for row, made in lives(first):
        assert made is not None, row
        assert made.time <= row.time


def test_the_command_writes_a_named_workload() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "stratum.tiering.workloads", "--workload", "logs", "--days", "2"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = list(parse_trace(out.splitlines()))
    assert rows == [row._replace(time=round(row.time, 3)) for row in workload("logs", 2, 1)]
    bad = subprocess.run(
        [sys.executable, "-m", "stratum.tiering.workloads", "--workload", "nope"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_photos_come_in_bursts_and_their_views_fade_with_age() -> None:
    lib = PhotoLibrary()
    rows = rows_of("photos", 3, days=60)
    upload_days = Counter(
        int(row.time // DAY) for row in rows if row.op == "PUT" and row.key.endswith(".jpg")
    )
    later = {day: n for day, n in upload_days.items() if day > 0}
    assert 5 <= len(later) <= 25  # about one day in five
    assert all(lib.album_min <= n <= lib.album_max for n in later.values())
    assert upload_days[0] >= lib.old_albums * lib.album_min  # the older library
    ages = [
        (row.time - made.time) / DAY
        for row, made in lives(rows)
        if row.op == "GET" and made is not None and DAY < made.time < 30 * DAY
    ]
    first_week = sum(age < 7 for age in ages) / 7
    weeks_two_to_four = sum(7 <= age < 28 for age in ages) / 21
    assert first_week > 3 * weeks_two_to_four > 0  # views a day
    # a thumbnail is small enough to stay out of cold (cold_min_size 128 KiB)
    assert all(row.size < 128 * 1024 for row in rows if row.key.startswith("thumbs/"))


def test_backups_write_nightly_read_indexes_weekly_check_monthly_and_restore_once() -> None:
    repo = ResticRepo()
    days = 45
    rows = rows_of("backups", 5, days=days)
    by_day: dict[int, Counter[str]] = defaultdict(Counter)
    for row in rows:
        by_day[int(row.time // DAY)][f"{row.op} {row.key.split('/')[0]}"] += 1
    assert all(by_day[day]["PUT snapshots"] == 1 for day in range(days))
    assert by_day[0]["PUT data"] == repo.initial_packs
    assert all(by_day[day]["PUT index"] >= 1 for day in range(days))
    restore = [day for day in range(days) if by_day[day]["GET data"] > 100]
    assert len(restore) == 1 and restore[0] >= days // 2
    for day in range(days):
        sunday = day % 7 == 6
        assert (by_day[day]["GET index"] >= 1) == (sunday or day == restore[0])
        assert (by_day[day]["DELETE index"] >= 1) == sunday  # merged by the prune
    assert by_day[20]["DELETE data"] == 0 < by_day[34]["DELETE data"]  # kept 30 days
    packs = sum(1 for row in rows if row.op == "GET" and row.key.startswith("data/"))
    check = by_day[15]["GET data"]
    assert 15 <= check <= 60  # a tenth of ~340 packs
    assert packs == check + by_day[restore[0]]["GET data"]


def test_media_is_watched_soon_after_it_arrives() -> None:
    lib = MediaLibrary()
    rows = rows_of("media", 4, days=60)
    first_watch: dict[str, float] = {}
    arrived: dict[str, float] = {}
    for row in rows:
        if not row.key.endswith(".mkv"):
            continue
        if row.op == "PUT" and row.time > DAY:
            arrived[row.key] = row.time
        elif row.op == "GET" and row.key in arrived:
            first_watch.setdefault(row.key, row.time - arrived[row.key])
    assert len(arrived) >= 50
    soon = sum(delay < 3 * DAY for delay in first_watch.values())
    assert soon >= 0.6 * len(arrived)
    assert len(first_watch) <= len(arrived)
    # the library from before is hardly read: about once in 300 days each
    old = [r for r, made in lives(rows) if r.op == "GET" and made and made.time < HOUR]
    assert len(old) <= 3 * lib.library_items * 60 / 300 * 3


def test_documents_follow_a_zipf_law() -> None:
    rows = rows_of("documents", 6)
    reads = Counter(row.key for row in rows if row.op == "GET")
    top = sum(n for _, n in reads.most_common(len(reads) // 10))
    assert top > 0.5 * sum(reads.values())
    assert not any(row.bucket == "backups" for row in rows)


def test_logs_are_read_soon_and_deleted_after_retention() -> None:
    spec = LogBucket()
    rows = rows_of("logs", 7, days=30)
    written = {row.key: row.time for row in rows if row.op == "PUT"}
    assert len(written) == 30 * 24 * len(spec.services) - len(spec.services)  # last hour's
    deleted = {row.key: row.time - written[row.key] for row in rows if row.op == "DELETE"}
    assert deleted and all(abs(age - spec.retention_days * DAY) < HOUR for age in deleted.values())
    first_read: dict[str, float] = {}
    for row in rows:
        if row.op == "GET":
            first_read.setdefault(row.key, row.time - written[row.key])
    assert all(delay <= 15 * 60 for delay in first_read.values())
    assert len(first_read) == len(written)


def test_homelab_is_todays_trace() -> None:
    from stratum.tiering.traces import generate

    assert list(workload("homelab", 3, 9, SMALL_LAB)) == list(generate(3, 9, SMALL_LAB))


# --- the learned policy is not tuned to one trace ------------------------------------------

TINY_LAB = HomeLab(
    working_set=40,
    reads_per_day=60,
    heads_per_day=5,
    edits_per_day=2,
    new_files_per_day=1,
    deletes_per_day=1,
    backup_files=1,
)


def learned_on(rows: list[TraceRow], learner: Learner, start: float, end: float) -> Report:
    config = load_config(None).tiering
    fallback = SimulatedStratumPolicy(config, {"hot", "warm", "cold"})
    policy = LearnedPolicy(learner, fallback, config.cold_min_size)
    return simulate(rows, policy, DEFAULT_PRICES, start=start, end=end)


def test_the_learned_policy_trained_on_one_seed_meets_the_criteria_on_others() -> None:
    # Trained on seed 1 of the home lab (70 days: long enough for the backups' "not read
    # within 64 days" to be seen), the learner's state goes on, as a running server's
    # would, into seeds 2 and 3 replayed after it: there it keeps issue 21's criteria
    # (hot hits within 0.5 points of AWS-IT's rules or more, at most half their cost; at
    # most twice the offline bound's cost), and it does better than a fresh learner.
    days = 70
    learner = Learner(DEFAULT_PRICES)
    rows = list(workload("homelab", days, 1, TINY_LAB))
    learned_on(rows, learner, 0.0, days * DAY)
    for seed in (2, 3):
        start = (seed - 1) * days * DAY
        end = start + days * DAY
        rows = [
            row._replace(time=row.time + start) for row in workload("homelab", days, seed, TINY_LAB)
        ]
        learned = learned_on(rows, learner, start, end)
        aws = simulate(rows, AwsIntelligentTieringPolicy(), DEFAULT_PRICES, start=start, end=end)
        plan = OfflineOptimalPolicy.from_trace(rows, DEFAULT_PRICES, start, end)
        bound = simulate(rows, plan, DEFAULT_PRICES, start=start, end=end)
        assert learned.hot_hit_ratio >= aws.hot_hit_ratio - 0.005, seed
        assert learned.total_cost <= 0.5 * aws.total_cost, seed
        assert learned.total_cost <= 2 * bound.total_cost, seed
        if seed == 2:
            fresh = learned_on(rows, Learner(DEFAULT_PRICES), start, end)
            # (a fresh learner learns from the objects not yet read as they age, and from
            # related classes: the head start is smaller than it was, 8 % on this trace)
            assert learned.total_cost < fresh.total_cost
