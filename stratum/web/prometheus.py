"""Prometheus metric families and their text exposition format 0.0.4.

A :class:`Family` is what every part that reports figures builds (the request counters, the
tiers, maintenance, replication); :func:`render` writes families as ``/metrics`` serves them.
It stands apart from :mod:`stratum.web.observe`, which serves the answer, so a module that
only builds families need not import the server side.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

Labels = tuple[tuple[str, str], ...]


@dataclass
class Family:
    """One metric family: its samples are (name suffix, labels, value)."""

    name: str
    kind: str  # "counter" | "gauge" | "histogram"
    help: str
    samples: list[tuple[str, Labels, float]] = field(default_factory=list)

    def add(self, value: float, suffix: str = "", **labels: str) -> Family:
        self.samples.append((suffix, tuple(labels.items()), value))
        return self


class Counter:
    """A monotonically increasing count per label set."""

    def __init__(self, name: str, help: str, labelnames: Sequence[str]) -> None:
        self.name, self.help, self.labelnames = name, help, tuple(labelnames)
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, *labels: str, amount: float = 1) -> None:
        self.values[labels] = self.values.get(labels, 0) + amount

    def family(self) -> Family:
        out = Family(self.name, "counter", self.help)
        for labels, value in sorted(self.values.items()):
            out.samples.append(("", tuple(zip(self.labelnames, labels, strict=True)), value))
        return out


class Histogram:
    """Cumulative buckets, sum and count per label set."""

    def __init__(
        self, name: str, help: str, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> None:
        self.name, self.help, self.labelnames = name, help, tuple(labelnames)
        self.bounds = tuple(sorted(buckets))
        # per label set: [count in each bucket (non-cumulative; last is +Inf), sum]
        self.values: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def observe(self, value: float, *labels: str) -> None:
        slot = self.values.get(labels)
        if slot is None:
            slot = self.values[labels] = ([0] * (len(self.bounds) + 1), [0.0])
        slot[0][bisect.bisect_left(self.bounds, value)] += 1
        slot[1][0] += value

    def family(self) -> Family:
        out = Family(self.name, "histogram", self.help)
        for labels, (counts, total) in sorted(self.values.items()):
            base = tuple(zip(self.labelnames, labels, strict=True))
            running = 0
            for bound, count in zip((*self.bounds, math.inf), counts, strict=True):
                running += count
                out.samples.append(("_bucket", (*base, ("le", _number(bound))), running))
            out.samples.append(("_sum", base, total[0]))
            out.samples.append(("_count", base, running))
        return out


def render(families: Iterable[Family]) -> str:
    """Prometheus text exposition format 0.0.4."""
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for suffix, labels, value in family.samples:
            if labels:
                inner = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels)
                lines.append(f"{family.name}{suffix}{{{inner}}} {_number(value)}")
            else:
                lines.append(f"{family.name}{suffix} {_number(value)}")
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")
