"""The tiering what-if: the recorded access history replayed with other settings.

The rows of :mod:`stratum.console.accesses` go through the tier simulator
(:mod:`stratum.tiering.simulator`) twice, with the tiering settings in force and with the
ones the operator typed, through the same policy code the engine runs
(:class:`~stratum.tiering.policy.SimulatedStratumPolicy`), priced with the configuration's
``[prices]`` (:class:`~stratum.tiering.pricing.Prices`). The page shows the two side by side: the
share of reads served from the hot tier, the moves, and the cost per month.

So that a history of many objects replays in about a second (on a thread of the server
process), it is sampled by key: with more than :data:`SAMPLE_OBJECTS` objects, only the keys
whose hash falls in one of ``n`` equal slices are replayed (every request of those keys, so
each sampled object's story is whole), and moves and costs are multiplied by ``n``; the
share of reads from hot is the sample's. The simulator asks the policy about every object
once per simulated interval, an hour, or longer for a long history: objects x intervals
stays under :data:`MAX_QUESTIONS`. The replay ends with the history (not at the end of its
last day), and costs are scaled to a 30-day month.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stratum.config import TieringConfig
from stratum.tiering.policy import SimulatedStratumPolicy
from stratum.tiering.pricing import MONTH, Prices
from stratum.tiering.simulation_report import Report
from stratum.tiering.simulator import simulate
from stratum.tiering.traces import HOUR, TraceRow
from stratum.util.units import format_duration, format_size, parse_duration, parse_size

SAMPLE_OBJECTS = 5_000
MAX_QUESTIONS = 200_000
# What the form may change, and how each value is read and written back.
FIELDS: dict[str, tuple[str, Any, Any]] = {
    "hot_idle_before_warm": ("Hot to warm after idle", parse_duration, format_duration),
    "warm_idle_before_cold": ("To cold after idle", parse_duration, format_duration),
    "cold_min_size": ("Smallest object sent to cold", parse_size, format_size),
    "promote_reads": ("Reads that bring an object back to hot", int, str),
    "promote_window": ("... within", parse_duration, format_duration),
}


@dataclass
class Outcome:
    label: str
    settings: dict[str, str]
    hot_hit_ratio: float
    moves: int
    moves_by_path: dict[str, int]
    cost_per_month: float
    currency: str
    sampled: int = 1  # one key in this many was replayed


def form_values(config: TieringConfig) -> dict[str, str]:
    return {name: write(getattr(config, name)) for name, (_l, _r, write) in FIELDS.items()}


def changed_config(config: TieringConfig, form: Mapping[str, str]) -> TieringConfig:
    """``config`` with the form's values; ValueError naming the field that is wrong."""
    changes: dict[str, Any] = {}
    for name, (label, read, _write) in FIELDS.items():
        text = form.get(name, "").strip()
        if not text:
            continue
        try:
            value = read(text)
        except ValueError as exc:
            raise ValueError(f"{label}: {exc}") from None
        if value < 0:
            raise ValueError(f"{label}: must not be negative")
        changes[name] = value
    return dataclasses.replace(config, **changes)


def relative(rows: Sequence[TraceRow]) -> list[TraceRow]:
    """The rows with times from 0 (the simulator's clock starts there)."""
    if not rows:
        return []
    first = rows[0].time
    return [row._replace(time=max(0.0, row.time - first)) for row in rows]


def sample(rows: Sequence[TraceRow]) -> tuple[list[TraceRow], int]:
    """The rows of one key in ``n`` (by a hash of bucket and key), and ``n``."""
    objects = len({(r.bucket, r.key) for r in rows})
    n = max(1, math.ceil(objects / SAMPLE_OBJECTS))
    if n == 1:
        return list(rows), 1
    kept = [r for r in rows if zlib.crc32(f"{r.bucket}/{r.key}".encode()) % n == 0]
    return kept, n


def interval_for(rows: Sequence[TraceRow]) -> float:
    """An hour, or more: objects x (span / interval) stays under MAX_QUESTIONS."""
    if not rows:
        return HOUR
    objects = len({(r.bucket, r.key) for r in rows})
    span = rows[-1].time - rows[0].time
    return max(HOUR, span * objects / MAX_QUESTIONS)


def replay(
    rows: Sequence[TraceRow],
    config: TieringConfig,
    tiers: set[str],
    prices: Prices,
    label: str,
    scale: int = 1,
) -> Outcome:
    """Blocking (an executor's work): one run of the simulator over the rows, which stand for
    ``scale`` times as many (:func:`sample`)."""
    trace = relative(rows)
    interval = interval_for(trace)
    report = simulate(
        trace,
        SimulatedStratumPolicy(config, tiers),
        prices,
        interval=interval,
        # the history's own span (at least one round of questions), not whole days
        end=max(trace[-1].time if trace else 0.0, interval),
        max_logged_moves=0,
    )
    return Outcome(
        label=label,
        settings=form_values(config),
        hot_hit_ratio=report.hot_hit_ratio,
        moves=report.moves * scale,
        moves_by_path={p: v["count"] * scale for p, v in sorted(report.moves_by_path.items())},
        cost_per_month=cost_per_month(report) * scale,
        currency=prices.currency,
        sampled=scale,
    )


def cost_per_month(report: Report) -> float:
    """The simulated cost over the whole history, scaled to 30 days."""
    seconds = report.end - report.start
    total = sum(month.total for month in report.months)
    return total * MONTH / seconds if seconds > 0 and not math.isnan(total) else 0.0


def compare(
    rows: Sequence[TraceRow],
    current: TieringConfig,
    proposed: TieringConfig,
    tiers: set[str],
    prices: Prices,
) -> list[Outcome]:
    kept, n = sample(rows)
    return [
        replay(kept, current, tiers, prices, "Now", n),
        replay(kept, proposed, tiers, prices, "What if", n),
    ]
