"""What a simulation found: hits, moves, bytes per tier by day and costs by month, as data,
JSON or a Markdown table (:class:`Report`), and several policies side by side
(:func:`compare_text`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from stratum.tiering.pricing import GB, MONTH, Prices
from stratum.tiering.traces import DAY, OPS


@dataclass(frozen=True)
class Move:
    time: float
    bucket: str
    key: str
    size: int
    source: str
    target: str


@dataclass(frozen=True)
class DaySample:
    day: int  # the sample is taken at the end of this day (1 = after the first 24 hours)
    bytes: dict[str, int]  # per tier
    objects: dict[str, int]  # per tier


@dataclass(frozen=True)
class MonthCost:
    month: int  # 1-based; months are 30-day windows from the start of the trace
    days: float  # length (the last month may be partial)
    average_gb: dict[str, float]  # mean GB stored per tier over the month
    storage: dict[str, float]  # cost per tier
    egress_gb: float
    egress: float
    get_requests: int  # billable GETs (to tiers with a GET price)
    put_requests: int
    requests: float  # cost
    total: float
    moves: float = 0.0  # cost of moving (the ``move`` price per GB), included in total


@dataclass
class Report:
    policy: str
    prices: Prices
    start: float
    end: float
    tiers: tuple[str, ...]
    requests: dict[str, int]  # per op
    missing: int  # requests for keys that did not exist
    gets_by_tier: dict[str, int]
    get_bytes_by_tier: dict[str, int]
    moves: int
    bytes_moved: int
    moves_by_path: dict[str, dict[str, int]]  # "hot->warm": {"count": n, "bytes": b}
    samples: list[DaySample]
    months: list[MonthCost]
    move_log: list[Move]  # the first ``max_logged_moves`` moves (all by default)

    @property
    def days(self) -> float:
        return (self.end - self.start) / DAY

    @property
    def hot_hit_ratio(self) -> float:
        """GETs served from the first tier / all GETs of existing objects (1.0 if none)."""
        gets = sum(self.gets_by_tier.values())
        return self.gets_by_tier.get(self.tiers[0], 0) / gets if gets else 1.0

    @property
    def hot_byte_hit_ratio(self) -> float:
        """Bytes of GETs served from the first tier / all bytes read (1.0 if none)."""
        read = sum(self.get_bytes_by_tier.values())
        return self.get_bytes_by_tier.get(self.tiers[0], 0) / read if read else 1.0

    @property
    def total_cost(self) -> float:
        return sum(month.total for month in self.months)

    @property
    def slow_reads(self) -> int:
        """GETs not served from the first tier."""
        return sum(self.gets_by_tier.values()) - self.gets_by_tier.get(self.tiers[0], 0)

    @property
    def slow_read_cost(self) -> float:
        """What the slow reads are worth avoiding at the ``slow_read`` price, over the whole
        trace: a weight beside the cost, not part of it."""
        return self.slow_reads / 1000 * self.prices.slow_read

    @property
    def cost_per_month(self) -> float:
        """The average over the whole trace, per 30 days."""
        span = (self.end - self.start) / MONTH
        return self.total_cost / span if span > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["prices"] = self.prices.to_dict()
        data["tiers"] = list(self.tiers)
        data.update(
            days=self.days,
            hot_hit_ratio=self.hot_hit_ratio,
            hot_byte_hit_ratio=self.hot_byte_hit_ratio,
            total_cost=self.total_cost,
            cost_per_month=self.cost_per_month,
            slow_reads=self.slow_reads,
            slow_read_cost=self.slow_read_cost,
        )
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_text(self) -> str:
        """A readable summary and a month-by-month table (Markdown-compatible)."""
        cur = self.prices.currency
        gets = sum(self.gets_by_tier.values())
        ops = ", ".join(f"{op} {self.requests.get(op, 0):,}" for op in OPS)
        lines = [
            f"Policy {self.policy}: {self.days:.1f} days, {sum(self.requests.values()):,}"
            f" requests ({ops}; {self.missing:,} for missing keys)",
        ]
        served = ", ".join(
            f"{tier} {_percent(self.gets_by_tier.get(tier, 0), gets)}" for tier in self.tiers
        )
        lines.append(
            f"GETs served from {served}; hot-hit ratio {self.hot_hit_ratio:.1%}"
            f" of GETs, {self.hot_byte_hit_ratio:.1%} of bytes read"
        )
        paths = "; ".join(
            f"{path} {move['count']:,} ({_gb(move['bytes'])})"
            for path, move in sorted(self.moves_by_path.items())
        )
        lines.append(
            f"Moves: {self.moves:,} ({_gb(self.bytes_moved)})" + (f": {paths}" if paths else "")
        )
        lines.append("")
        head = ["Month", "Days"] + [f"{tier} GB" for tier in self.tiers]
        head += ["Storage", "Egress", "Requests", "Moves", f"Total {cur}"]
        rows = [head, ["---:"] * len(head)]
        rows += [
            [str(month.month), f"{month.days:g}"]
            + [f"{month.average_gb.get(tier, 0.0):,.1f}" for tier in self.tiers]
            + [
                f"{sum(month.storage.values()):.2f}",
                f"{month.egress:.2f}",
                f"{month.requests:.2f}",
                f"{month.moves:.2f}",
                f"{month.total:.2f}",
            ]
            for month in self.months
        ]
        lines += _table(rows)
        lines.append("")
        lines.append(
            f"Average cost per month: {self.cost_per_month:.2f} {cur}"
            f" (total {self.total_cost:.2f} {cur} over {self.days:.0f} days)"
        )
        return "\n".join(lines) + "\n"


def _ratio(cost: float, bound: float) -> str:
    return f"{cost / bound:.2f}" if bound > 0 else "-"


def _percent(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def _gb(size: float) -> str:
    return f"{size / GB:,.1f} GB"


def _table(rows: list[list[str]], left: int = 0) -> list[str]:
    """A Markdown table, padded; the first ``left`` columns left-aligned, the others right.
    A row of ``---:`` cells is the rule under the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for row in rows:
        if row[0] == "---:":
            cells = [
                ":" + "-" * (w - 1) if i < left else "-" * (w - 1) + ":"
                for i, w in enumerate(widths)
            ]
        else:
            cells = [
                cell.ljust(w) if i < left else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            ]
        out.append("| " + " | ".join(cells) + " |")
    return out


def compare_text(reports: Sequence[Report], bound: Report | None = None) -> str:
    """One line per report: the policies side by side (Markdown table). With ``bound`` (one
    of the reports, the offline optimum), each cost also as a multiple of the bound's."""
    if not reports:
        return ""
    cur = reports[0].prices.currency
    tiers = reports[0].tiers
    head = ["Policy", "Hot hits", "Hot bytes", "Moves", "GB moved"]
    head += [f"{tier} GB at end" for tier in tiers] + [f"{cur}/month", f"Slow reads {cur}"]
    if bound is not None:
        head.append("x bound")
    rows = [head, ["---:"] * len(head)]
    for report in reports:
        last = report.samples[-1].bytes if report.samples else {}
        rows.append(
            [
                report.policy,
                f"{report.hot_hit_ratio:.1%}",
                f"{report.hot_byte_hit_ratio:.1%}",
                f"{report.moves:,}",
                f"{report.bytes_moved / GB:,.1f}",
            ]
            + [f"{last.get(tier, 0) / GB:,.1f}" for tier in tiers]
            + [f"{report.cost_per_month:.2f}", f"{report.slow_read_cost:.2f}"]
            + ([_ratio(report.total_cost, bound.total_cost)] if bound is not None else [])
        )
    return "\n".join(_table(rows, left=1)) + "\n"
