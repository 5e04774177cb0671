"""The offline-optimal bound (stratum.tiering.offline), the placement log
(stratum.tiering.placements) and `stratum tier simulate` with [prices] from a file."""

from __future__ import annotations

import csv
import itertools
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stratum.config import ConfigError, load_config
from stratum.tiering.offline import OfflineOptimalPolicy, cheapest_tiers
from stratum.tiering.placements import PlacementLog
from stratum.tiering.pricing import DEFAULT_PRICES, MONTH, Prices
from stratum.tiering.simulator import (
    AwsIntelligentTieringPolicy,
    SimObject,
    StaticPolicy,
    simulate,
    simulation_end,
)
from stratum.tiering.traces import DAY, HOUR, HomeLab, TraceRow, format_trace, generate

GB = 10**9
SMALL_LAB = HomeLab(working_set=200, reads_per_day=300, heads_per_day=30, backup_files=3)


def put(time: float, key: str, size: int) -> TraceRow:
    return TraceRow(time, "PUT", "b", key, size)


def get(time: float, key: str, size: int = 0) -> TraceRow:
    return TraceRow(time, "GET", "b", key, size)


def path_cost(
    prices: Prices, size: int, opened: list[float], end: float, path: tuple[str, ...]
) -> float:
    """The bound's cost of one given sequence of tiers, added up the plain way."""
    gb, first = size / GB, prices.tiers[0]

    def out(tier: str) -> float:
        return gb * prices.egress.get(tier, 0.0) + prices.get_requests.get(tier, 0.0) / 1000

    total, tier = 0.0, first
    for i, target in enumerate(path):
        if target != tier:
            total += out(tier) + prices.put_requests.get(target, 0.0) / 1000 + gb * prices.move
            tier = target
        closes = opened[i + 1] if i + 1 < len(opened) else end
        total += gb * prices.storage[tier] / MONTH * (closes - opened[i])
        if i + 1 < len(opened):
            total += out(tier) + (prices.slow_read / 1000 if tier != first else 0.0)
    return total


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(1, 50 * GB),
    gaps=st.lists(st.floats(0, 400 * DAY), min_size=1, max_size=5),
    slow=st.sampled_from([0.0, 0.05, 5.0]),
    move=st.sampled_from([0.0, 0.0002, 0.05]),
)
def test_the_bound_is_the_cheapest_sequence_of_tiers(
    size: int, gaps: list[float], slow: float, move: float
) -> None:
    prices = Prices.from_dict({**DEFAULT_PRICES.to_dict(), "slow_read": slow, "move": move})
    opened = list(itertools.accumulate(gaps[:-1], initial=0.0))
    end = opened[-1] + gaps[-1]
    path, cost = cheapest_tiers(prices, size, opened, end)
    assert len(path) == len(opened)
    assert cost == pytest.approx(path_cost(prices, size, opened, end, tuple(path)), abs=1e-12)
    every = [
        path_cost(prices, size, opened, end, p)
        for p in itertools.product(prices.tiers, repeat=len(opened))
    ]
    assert cost == pytest.approx(min(every), abs=1e-12)


def test_the_bound_by_hand() -> None:
    prices = DEFAULT_PRICES
    # 10 GB read every hour for a day: never worth leaving hot
    hourly = [i * HOUR for i in range(25)]
    assert cheapest_tiers(prices, 10 * GB, hourly, 25 * HOUR)[0] == ["hot"] * 25
    # 10 GB never read again: warm at once (0.002 against 0.008 per GB-month; cold costs 0.006)
    path, cost = cheapest_tiers(prices, 10 * GB, [0.0], 300 * DAY)
    assert path == ["warm"]
    assert cost == pytest.approx(10 * 0.002 * 10 + 10 * 0.0002)
    # read once after 100 days, then deleted: warm for the gap, the read is slow
    path, cost = cheapest_tiers(prices, 10 * GB, [0.0, 100 * DAY], 100 * DAY)
    assert path == ["warm", "warm"]
    assert cost == pytest.approx(10 * 0.002 * 100 / 30 + 10 * 0.0002 + 0.05 / 1000)
    # a slow read priced above the storage saved keeps a small object hot
    tiny = Prices.from_dict({**prices.to_dict(), "slow_read": 1000.0})
    assert cheapest_tiers(tiny, 1000, [0.0, 100 * DAY], 100 * DAY)[0] == ["hot", "hot"]


def test_the_offline_policy_replays_its_plan_through_the_simulator() -> None:
    # a slow read worth more than an hour of 10 GB in hot: keep what is read hourly hot
    prices = Prices.from_dict({**DEFAULT_PRICES.to_dict(), "slow_read": 5.0})
    trace = [
        put(0, "idle", 10 * GB),  # never read: warm at the first round
        put(0, "busy", 10 * GB),
        *[get(h * HOUR + 1, "busy") for h in range(48)],
        get(10 * DAY, "idle"),  # read once, served from warm, then warm again
        TraceRow(11 * DAY, "DELETE", "b", "busy", 0),
    ]
    end = 20 * DAY
    policy = OfflineOptimalPolicy.from_trace(trace, prices, 0.0, end)
    report = simulate(trace, policy, prices, end=end)
    assert [(m.key, m.time, m.source, m.target) for m in report.move_log] == [
        ("idle", HOUR, "hot", "warm"),
        ("busy", 48 * HOUR, "hot", "warm"),  # after its last read, until its delete
    ]
    assert report.gets_by_tier == {"hot": 48, "warm": 1, "cold": 0}
    # the simulator's price of the plan is the programme's, plus the hour each move waits
    waited = 2 * 10 * (0.008 - 0.002) * HOUR / MONTH
    # (the programme's sum weighs the slow read too)
    assert report.total_cost + report.slow_read_cost == pytest.approx(policy.bound_cost + waited)


def test_the_bound_beats_every_policy_on_a_generated_trace() -> None:
    rows = list(generate(20, seed=3, lab=SMALL_LAB))
    end = simulation_end(rows)
    bound = simulate(rows, OfflineOptimalPolicy.from_trace(rows, DEFAULT_PRICES, 0.0, end))
    for policy in (StaticPolicy("hot"), StaticPolicy("warm"), AwsIntelligentTieringPolicy()):
        other = simulate(rows, policy)
        assert bound.total_cost + bound.slow_read_cost < other.total_cost + other.slow_read_cost
    assert bound.total_cost < simulate(rows, StaticPolicy("hot")).total_cost / 2


# --- the placement log and moves ------------------------------------------------------------


class Flip:
    """Moves every object to the other local tier at every round."""

    name = "flip"

    def place(self, obj: SimObject, now: float) -> str:
        return "warm" if obj.tier == "hot" else "hot"


def test_every_move_is_logged_and_priced(tmp_path: Path) -> None:
    keys = [f"k{i}" for i in range(20)]
    trace = [put(0, key, GB) for key in keys] + [TraceRow(10 * DAY, "DELETE", "b", "k0", GB)]
    prices = Prices.from_dict({**DEFAULT_PRICES.to_dict(), "move": 0.5})
    path = tmp_path / "placements.csv"
    with open(path, "w", encoding="utf-8") as file:
        report = simulate(trace, Flip(), prices, end=30 * DAY, placements=PlacementLog(file))
    assert report.moves == 19 * 30 * 24 + 10 * 24 > 10_000  # k0's last round is at its DELETE
    assert len(report.move_log) == report.moves
    assert sum(m.moves for m in report.months) == pytest.approx(report.moves * 0.5)
    lines = path.read_text().splitlines()
    assert lines[0] == "# stratum placements 1"
    rows = list(csv.DictReader(lines[1:]))
    events = [row["event"] for row in rows]
    assert events.count("MOVE") == report.moves
    assert events.count("PUT") == 20 and events.count("DELETE") == 1
    assert {row["policy"] for row in rows} == {"flip"}
    first_move = next(row for row in rows if row["event"] == "MOVE")
    assert first_move == {
        "policy": "flip",
        "time": "3600.000",
        "event": "MOVE",
        "bucket": "b",
        "key": "k0",
        "size": str(GB),
        "from": "hot",
        "to": "warm",
    }
    assert rows[-1]["event"] == "MOVE"  # DELETE's line sits at its time among the moves
    deleted = next(row for row in rows if row["event"] == "DELETE")
    assert (deleted["time"], deleted["from"], deleted["to"]) == ("864000.000", "hot", "")


# --- [prices] in the configuration and the command line -------------------------------------


def test_prices_table_in_the_configuration(tmp_path: Path) -> None:
    config = load_config(None)
    assert Prices.from_config(config.prices) == DEFAULT_PRICES
    assert DEFAULT_PRICES.to_dict() == {
        "storage": {"hot": 0.008, "warm": 0.002, "cold": 0.006},
        "egress": {"cold": 0.01},
        "get_requests": {"cold": 0.0004},
        "put_requests": {"cold": 0.0004},
        "currency": "EUR",
        "move": 0.0002,
        "slow_read": 0.05,
    }
    path = tmp_path / "stratum.toml"
    path.write_text('[prices]\nhot = 1\ncold_read = 0.09\nslow_read = 0\ncurrency = "USD"\n')
    prices = Prices.from_config(load_config(path).prices)
    assert prices.storage == {"hot": 1.0, "warm": 0.002, "cold": 0.006}
    assert prices.egress == {"cold": 0.09} and prices.slow_read == 0.0
    assert prices.currency == "USD"
    for bad, why in [("hot = -1", "prices.hot: must be 0 or more"), ("mve = 1", "mve")]:
        path.write_text(f"[prices]\n{bad}\n")
        with pytest.raises(ConfigError, match=why):
            load_config(path)


def test_tier_simulate_command_prices_from_the_file(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    rows = [put(0, "a", 3 * GB), put(0, "b", GB), get(40 * DAY, "a"), get(50 * DAY, "b")]
    trace.write_text("".join(format_trace(rows)))
    config = tmp_path / "stratum.toml"
    config.write_text(
        '[prices]\nhot = 3\nwarm = 1\ncold = 1\ncurrency = "USD"\n'
        '[tiering]\nhot_idle_before_warm = "45d"\nwarm_idle_before_cold = "60d"\n'
    )
    placements = tmp_path / "placements.csv"
    argv = ["--trace", str(trace), "--config", str(config), "--placements", str(placements)]
    done = subprocess.run(
        [sys.executable, "-m", "stratum", "tier", "simulate", *argv],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    head = [cell.strip() for cell in table[-7].strip("|").split("|")]
    assert head[-3:] == ["USD/month", "Slow reads USD", "x bound"]
    body = {
        cells[0]: cells
        for cells in ([c.strip() for c in line.strip("|").split("|")] for line in table[-5:])
    }
    names = {"stratum", "learned", "aws-intelligent-tiering", "all-hot", "offline-optimal"}
    assert set(body) == names
    # all-hot: 4 GB at 3 USD for 50 days; "b" goes warm after 45 idle days under the file's
    # [tiering], not the default 7
    assert body["all-hot"][-3] == "12.00"
    assert body["offline-optimal"][-1] == "1.00"
    assert float(body["stratum"][-1]) > 1
    logged = list(csv.DictReader(placements.read_text().splitlines()[1:]))
    stratum_moves = [
        (r["key"], r["time"]) for r in logged if r["policy"] == "stratum" and r["event"] == "MOVE"
    ]
    assert stratum_moves == [("b", f"{45 * DAY:.3f}")]
    assert {r["policy"] for r in logged if r["event"] == "PUT"} == set(body)
