"""The tier simulator: replay a request trace through a placement policy and price the result.

``stratum tier simulate --trace FILE`` answers "what would tiering do with my workload, and
what would it cost?" before any byte moves. The simulator keeps no data, only per-object
signals, and is pure: it reads a trace (:func:`read_trace`) and returns a :class:`Report`.

Trace format: CSV (RFC 4180 quoting), one request per line, in time order; an optional
header line ``time,op,bucket,key,size``; blank lines and lines starting with ``#`` ignored::

    time    seconds since the start of the trace (float, never decreasing)
    op      PUT | GET | HEAD | DELETE
    bucket  bucket name
    key     object key
    size    bytes: of the new object for PUT; of the object as the client saw it otherwise
            (a GET or HEAD of a key the trace has not written yet stands for an object that
            existed before the trace started: it is created, in the first tier, at time 0)

Simulation rules:

- A PUT creates the object in the first tier of the price list ("hot"), replacing any previous
  object of that key, with ``last_access`` = creation time (as the object service does).
- A GET is served from the tier the object is in at that moment; it counts as an access:
  ``last_access``, ``access_count`` and ``access_rate`` change. HEAD never touches data and
  is not an access. DELETE removes the object. Requests for deleted keys are counted as
  missing and otherwise ignored.
- Once every ``interval`` (an hour) of simulated time the policy is asked, for every object,
  where it should be (:class:`Policy`); an answer other than its tier moves it at once.
- ``access_rate`` is in reads per day and decays exponentially with a half-life of 7 days:
  each read adds ``ln 2 / 7``, so a steady r reads per day converges to r. The simulator keeps
  it current: when the policy is asked it holds the rate at that instant.

Costs (:class:`Prices`, GB = 10^9 bytes, a month = 30 days): storage is the exact integral of
the bytes in each tier over time times the tier's price per GB-month; reading from a tier
(client GETs, and moves out of it) costs its egress price per GB and its GET request price;
moving into a tier costs its PUT request price (one request per object). Local tiers cost
their disks' amortisation and electricity; see :data:`DEFAULT_PRICES` for the figures.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

__all__ = [
    "ACCESS_HALF_LIFE",
    "DAY",
    "DEFAULT_PRICES",
    "GB",
    "HOUR",
    "MONTH",
    "OPS",
    "AwsIntelligentTieringPolicy",
    "DaySample",
    "MonthCost",
    "Move",
    "Policy",
    "Prices",
    "Report",
    "SimObject",
    "StaticPolicy",
    "TraceError",
    "TraceRow",
    "compare_text",
    "decayed_rate",
    "format_trace",
    "parse_trace",
    "read_trace",
    "simulate",
]

HOUR = 3600.0
DAY = 86400.0
MONTH = 30 * DAY
GB = 1e9
ACCESS_HALF_LIFE = 7 * DAY
RATE_PER_READ = math.log(2) / (ACCESS_HALF_LIFE / DAY)  # reads/day a single read adds
_DECAY = math.log(2) / ACCESS_HALF_LIFE  # per second
OPS = ("PUT", "GET", "HEAD", "DELETE")
TRACE_HEADER = ("time", "op", "bucket", "key", "size")


# --- traces ---------------------------------------------------------------------------------


class TraceRow(NamedTuple):
    time: float
    op: str
    bucket: str
    key: str
    size: int


class TraceError(ValueError):
    """A trace line is malformed; the message names the line."""


def parse_trace(lines: Iterable[str], source: str = "trace") -> Iterator[TraceRow]:
    """The rows of a CSV trace, checked (``TraceError`` names the first bad line)."""
    last = -math.inf
    for number, fields in enumerate(csv.reader(lines), 1):
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        if fields[0].startswith("#") or (number == 1 and tuple(fields) == TRACE_HEADER):
            continue
        where = f"{source}:{number}"
        if len(fields) != 5:
            raise TraceError(f"{where}: expected time,op,bucket,key,size, got {len(fields)} fields")
        time_text, op, bucket, key, size_text = fields
        try:
            time, size = float(time_text), int(size_text)
        except ValueError:
            raise TraceError(f"{where}: time must be a number and size an integer") from None
        if not math.isfinite(time) or time < 0 or size < 0:
            raise TraceError(f"{where}: time and size must be finite and not negative")
        if op not in OPS:
            raise TraceError(f"{where}: op must be one of {', '.join(OPS)}, got {op!r}")
        if time < last:
            raise TraceError(f"{where}: time {time} is before the previous line's {last}")
        last = time
        yield TraceRow(time, op, bucket, key, size)


def read_trace(path: Path) -> Iterator[TraceRow]:
    """The rows of a trace file, read lazily."""
    with open(path, encoding="utf-8", newline="") as file:
        yield from parse_trace(file, str(path))


def format_trace(rows: Iterable[TraceRow], header: bool = True) -> Iterator[str]:
    """CSV lines (with line ends) of ``rows``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        yield ",".join(TRACE_HEADER) + "\n"
    for row in rows:
        writer.writerow((f"{row.time:.3f}", row.op, row.bucket, row.key, row.size))
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


# --- objects and policies -------------------------------------------------------------------


def decayed_rate(rate: float, elapsed: float) -> float:
    """``rate`` (reads per day) after ``elapsed`` seconds of decay with a 7-day half-life."""
    return rate * math.exp(-_DECAY * elapsed)


class _Now:
    """The simulator's current time, shared by its objects (their rates decay lazily)."""

    __slots__ = ("time",)

    def __init__(self, time: float) -> None:
        self.time = time


class SimObject:
    """One simulated object: what a policy sees (the signals of a VolumeRecord).

    ``last_access`` is the creation time until the first GET; ``access_count`` counts GETs;
    ``access_rate`` is in reads per day, decaying with a 7-day half-life, as of the
    simulator's current time (when a policy is asked: ``now``).
    """

    __slots__ = (
        "_clock",
        "_rate",
        "_rated_at",
        "access_count",
        "bucket",
        "created",
        "key",
        "last_access",
        "size",
        "tier",
    )

    def __init__(
        self,
        bucket: str,
        key: str,
        size: int,
        created: float,
        tier: str,
        last_access: float | None = None,
        access_count: int = 0,
        access_rate: float = 0.0,
        clock: _Now | None = None,
    ) -> None:
        self.bucket = bucket
        self.key = key
        self.size = size
        self.created = created
        self.tier = tier
        self.last_access = created if last_access is None else last_access
        self.access_count = access_count
        self._clock = clock or _Now(created)
        self._rate = access_rate
        self._rated_at = self._clock.time

    @property
    def access_rate(self) -> float:
        return decayed_rate(self._rate, self._clock.time - self._rated_at)

    def read(self, now: float) -> None:
        """Count a GET at ``now``."""
        self._rate = decayed_rate(self._rate, now - self._rated_at) + RATE_PER_READ
        self._rated_at = now
        self.last_access = now
        self.access_count += 1

    def __repr__(self) -> str:
        return (
            f"SimObject({self.bucket}/{self.key}, size={self.size}, tier={self.tier},"
            f" created={self.created}, last_access={self.last_access},"
            f" access_count={self.access_count}, access_rate={self.access_rate:.4g})"
        )


class Policy(Protocol):
    """Where an object should be now: a tier name of the price list. Answering the object's
    current tier means "leave it". Called once per simulated interval for every object.

    A policy that needs the whole picture (fill levels for watermarks, the least recently used
    objects) may also define ``begin_round(now, tier_bytes, objects)``: it is called before
    each round of ``place`` calls with the bytes in each tier and every object (read only).
    """

    def place(self, obj: SimObject, now: float) -> str: ...


@dataclass(frozen=True)
class StaticPolicy:
    """Everything stays in one tier: the baseline ("all on SSD", "all on HDD")."""

    tier: str = "hot"

    @property
    def name(self) -> str:
        return f"all-{self.tier}"

    def place(self, obj: SimObject, now: float) -> str:
        return self.tier


@dataclass(frozen=True)
class AwsIntelligentTieringPolicy:
    """AWS S3 Intelligent-Tiering's automatic access tiers, mapped onto Stratum's tiers.

    Frequent Access (``frequent``) -> Infrequent Access (``infrequent``) after 30 days without
    access -> Archive Instant Access (``archive``) after 90 days; any access moves the object
    back to Frequent; objects smaller than 128 KiB are never monitored and stay Frequent.
    "Without access" counts from the last GET, or from the upload.
    """

    frequent: str = "hot"
    infrequent: str = "warm"
    archive: str = "cold"
    infrequent_after: float = 30 * DAY
    archive_after: float = 90 * DAY
    min_size: int = 128 * 1024
    name: str = "aws-intelligent-tiering"

    def place(self, obj: SimObject, now: float) -> str:
        if obj.size < self.min_size:
            return self.frequent
        idle = now - max(obj.created, obj.last_access)
        if idle >= self.archive_after:
            return self.archive
        if idle >= self.infrequent_after:
            return self.infrequent
        return self.frequent


# --- prices ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prices:
    """What storing and moving bytes costs, per tier. The tiers are the keys of ``storage``,
    fastest first; the first one receives new objects and is "hot" for the hit ratio."""

    storage: Mapping[str, float]  # per GB-month
    egress: Mapping[str, float] = field(default_factory=dict)  # per GB read out of the tier
    get_requests: Mapping[str, float] = field(default_factory=dict)  # per 1000 GETs to it
    put_requests: Mapping[str, float] = field(default_factory=dict)  # per 1000 PUTs to it
    currency: str = "EUR"

    def __post_init__(self) -> None:
        if not self.storage:
            raise ValueError("prices: storage must name at least one tier")
        for table in ("storage", "egress", "get_requests", "put_requests"):
            for tier, price in getattr(self, table).items():
                if tier not in self.storage:
                    raise ValueError(f"prices: {table}.{tier}: not a tier of storage")
                if not isinstance(price, int | float) or not price >= 0:
                    raise ValueError(f"prices: {table}.{tier} must be a number >= 0")

    @property
    def tiers(self) -> tuple[str, ...]:
        return tuple(self.storage)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Prices:
        """From a JSON/TOML-style table: {"storage": {"hot": 0.008, ...}, "egress": {...},
        "get_requests": {...}, "put_requests": {...}, "currency": "EUR"}."""
        known = {"storage", "egress", "get_requests", "put_requests", "currency"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"prices: unknown key {sorted(unknown)[0]!r}")
        tables = {name: dict(data[name]) for name in known - {"currency"} if name in data}
        return cls(**tables, currency=str(data.get("currency", "EUR")))

    def to_dict(self) -> dict[str, Any]:
        return {
            "storage": dict(self.storage),
            "egress": dict(self.egress),
            "get_requests": dict(self.get_requests),
            "put_requests": dict(self.put_requests),
            "currency": self.currency,
        }


#: A home lab's costs, per GB of object data (erasure coding 4+2 stores 1.5 bytes per byte):
#: hot: NVMe SSDs at ~60 EUR/TB worn out in 3 years, half full on average, x1.5: ~0.005, plus
#: power and spare capacity: 0.008 EUR/GB-month. warm: HDDs at ~20 EUR/TB over 5 years, half
#: full, x1.5 (0.001), plus ~6 W per disk at 0.30 EUR/kWh: 0.002 EUR/GB-month. cold: Backblaze
#: B2's list prices (USD taken at par): 0.006 per GB-month, 0.01 per GB downloaded, 0.004 per
#: 10,000 GETs, uploads free. Reads from local disks cost nothing extra.
DEFAULT_PRICES = Prices(
    storage={"hot": 0.008, "warm": 0.002, "cold": 0.006},
    egress={"cold": 0.01},
    get_requests={"cold": 0.0004},
    put_requests={"cold": 0.0},
)


# --- the report -----------------------------------------------------------------------------


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
    move_log: list[Move]  # the first ``max_logged_moves`` moves

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
        head += ["Storage", "Egress", "Requests", f"Total {cur}"]
        rows = [head, ["---:"] * len(head)]
        rows += [
            [str(month.month), f"{month.days:g}"]
            + [f"{month.average_gb.get(tier, 0.0):,.1f}" for tier in self.tiers]
            + [
                f"{sum(month.storage.values()):.2f}",
                f"{month.egress:.2f}",
                f"{month.requests:.2f}",
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


def compare_text(reports: Sequence[Report]) -> str:
    """One line per report: the policies side by side (Markdown table)."""
    if not reports:
        return ""
    cur = reports[0].prices.currency
    tiers = reports[0].tiers
    head = ["Policy", "Hot hits", "Hot bytes", "Moves", "GB moved"]
    head += [f"{tier} GB at end" for tier in tiers] + [f"{cur}/month"]
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
            + [f"{report.cost_per_month:.2f}"]
        )
    return "\n".join(_table(rows, left=1)) + "\n"


# --- the simulation -------------------------------------------------------------------------


def simulate(
    trace: Iterable[TraceRow],
    policy: Policy,
    prices: Prices = DEFAULT_PRICES,
    *,
    start: float = 0.0,
    end: float | None = None,
    interval: float = HOUR,
    max_logged_moves: int = 10_000,
) -> Report:
    """Replay ``trace`` (rows in time order) through ``policy``; see the module docstring.

    The simulation runs from ``start`` to ``end``, by default the end of the day of the last
    request (whole days, so the last daily sample is taken).
    """
    if interval <= 0:
        raise ValueError("interval must be positive")
    sim = _Simulation(policy, prices, start, interval, max_logged_moves)
    last = start
    for row in trace:
        if row.time < last:
            raise TraceError(f"trace goes back in time at {row.time} (after {last})")
        last = row.time
        sim.advance(row.time)
        sim.apply(row)
    if end is None:
        end = start + math.ceil((last - start) / DAY) * DAY
    if end < last:
        raise ValueError(f"end {end} is before the last request ({last})")
    sim.advance(end)
    return sim.report(policy, end)


class _Simulation:
    def __init__(
        self, policy: Policy, prices: Prices, start: float, interval: float, max_logged: int
    ) -> None:
        self.policy = policy
        self.prices = prices
        self.tiers = prices.tiers
        self.first = self.tiers[0]
        self.start = start
        self.interval = interval
        self.max_logged = max_logged
        self.objects: dict[tuple[str, str], SimObject] = {}
        self.deleted: set[tuple[str, str]] = set()
        self.tier_bytes = dict.fromkeys(self.tiers, 0)
        self.tier_objects = dict.fromkeys(self.tiers, 0)
        self.now = start
        self.clock = _Now(start)
        self.ticks = self.days = self.month_index = 0
        self.next_tick = start + interval
        self.next_day = start + DAY
        self.next_month = start + MONTH
        self.requests = dict.fromkeys(OPS, 0)
        self.missing = 0
        self.gets_by_tier = dict.fromkeys(self.tiers, 0)
        self.get_bytes_by_tier = dict.fromkeys(self.tiers, 0)
        self.moves = self.bytes_moved = 0
        self.moves_by_path: dict[str, dict[str, int]] = {}
        self.move_log: list[Move] = []
        self.samples: list[DaySample] = []
        self.months: list[MonthCost] = []
        self._open_month(start)

    # -- time ----------------------------------------------------------------------------

    def _open_month(self, when: float) -> None:
        self.month_start = when
        self.byte_seconds = dict.fromkeys(self.tiers, 0.0)
        self.egress_cost = 0.0
        self.egress_bytes = 0
        self.get_count = dict.fromkeys(self.tiers, 0)
        self.put_count = dict.fromkeys(self.tiers, 0)

    def _close_month(self, when: float) -> None:
        prices = self.prices
        seconds = when - self.month_start
        storage = {
            tier: self.byte_seconds[tier] / GB / MONTH * prices.storage[tier] for tier in self.tiers
        }
        request_cost = sum(
            self.get_count[t] / 1000 * prices.get_requests.get(t, 0.0)
            + self.put_count[t] / 1000 * prices.put_requests.get(t, 0.0)
            for t in self.tiers
        )
        total = sum(storage.values()) + self.egress_cost + request_cost
        self.month_index += 1
        self.months.append(
            MonthCost(
                month=self.month_index,
                days=round(seconds / DAY, 6),
                average_gb={
                    t: (self.byte_seconds[t] / seconds / GB if seconds else 0.0) for t in self.tiers
                },
                storage=storage,
                egress_gb=self.egress_bytes / GB,
                egress=self.egress_cost,
                get_requests=sum(self.get_count[t] for t in prices.get_requests),
                put_requests=sum(self.put_count[t] for t in prices.put_requests),
                requests=request_cost,
                total=total,
            )
        )
        self._open_month(when)

    def _integrate(self, when: float) -> None:
        elapsed = when - self.now
        if elapsed > 0:
            for tier, size in self.tier_bytes.items():
                self.byte_seconds[tier] += size * elapsed
            self.now = self.clock.time = when

    def advance(self, when: float) -> None:
        """Run the ticks, samples and month ends up to ``when`` (those at ``when`` too)."""
        while True:
            step = min(self.next_tick, self.next_day, self.next_month)
            if step > when:
                break
            self._integrate(step)
            if step == self.next_month:
                self._close_month(step)
                self.next_month = self.start + (self.month_index + 1) * MONTH
            if step == self.next_tick:
                self._tick(step)
                self.ticks += 1
                self.next_tick = self.start + (self.ticks + 1) * self.interval
            if step == self.next_day:
                self.days += 1
                self.samples.append(
                    DaySample(self.days, dict(self.tier_bytes), dict(self.tier_objects))
                )
                self.next_day = self.start + (self.days + 1) * DAY
        self._integrate(when)

    def _tick(self, now: float) -> None:
        begin = getattr(self.policy, "begin_round", None)
        if begin is not None:
            begin(now, MappingProxyType(self.tier_bytes), self.objects.values())
        place = self.policy.place
        for obj in self.objects.values():
            target = place(obj, now)
            if target != obj.tier:
                self._move(obj, target, now)

    # -- events --------------------------------------------------------------------------

    def _move(self, obj: SimObject, target: str, now: float) -> None:
        if target not in self.tier_bytes:
            raise ValueError(f"policy placed {obj.bucket}/{obj.key} in unknown tier {target!r}")
        source = obj.tier
        self._read_cost(source, obj.size)
        self.put_count[target] += 1
        self.tier_bytes[source] -= obj.size
        self.tier_objects[source] -= 1
        self.tier_bytes[target] += obj.size
        self.tier_objects[target] += 1
        obj.tier = target
        self.moves += 1
        self.bytes_moved += obj.size
        path = self.moves_by_path.setdefault(f"{source}->{target}", {"count": 0, "bytes": 0})
        path["count"] += 1
        path["bytes"] += obj.size
        if len(self.move_log) < self.max_logged:
            self.move_log.append(Move(now, obj.bucket, obj.key, obj.size, source, target))

    def _read_cost(self, tier: str, size: int) -> None:
        self.get_count[tier] += 1
        egress = self.prices.egress.get(tier, 0.0)
        if egress:
            self.egress_bytes += size
            self.egress_cost += size / GB * egress

    def _create(self, row: TraceRow, created: float) -> SimObject:
        obj = SimObject(row.bucket, row.key, row.size, created, self.first, clock=self.clock)
        self.objects[(row.bucket, row.key)] = obj
        self.tier_bytes[self.first] += obj.size
        self.tier_objects[self.first] += 1
        return obj

    def _remove(self, obj: SimObject) -> None:
        del self.objects[(obj.bucket, obj.key)]
        self.tier_bytes[obj.tier] -= obj.size
        self.tier_objects[obj.tier] -= 1

    def apply(self, row: TraceRow) -> None:
        self.requests[row.op] += 1
        name = (row.bucket, row.key)
        obj = self.objects.get(name)
        if row.op == "PUT":
            if obj is not None:
                self._remove(obj)
            self.deleted.discard(name)
            self._create(row, row.time)
            self.put_count[self.first] += 1
            return
        if obj is None and name not in self.deleted and row.op != "DELETE":
            # An object from before the trace; it has been in the first tier since the start.
            # Its bytes count from now on: the trace did not say how long it was there.
            obj = self._create(row, self.start)
        if obj is None:
            self.missing += 1
            return
        if row.op == "GET":
            self.gets_by_tier[obj.tier] += 1
            self.get_bytes_by_tier[obj.tier] += obj.size
            self._read_cost(obj.tier, obj.size)
            obj.read(row.time)
        elif row.op == "DELETE":
            self._remove(obj)
            self.deleted.add(name)

    def report(self, policy: Policy, end: float) -> Report:
        if end > self.month_start or not self.months:
            self._close_month(end)
        return Report(
            policy=str(getattr(policy, "name", type(policy).__name__)),
            prices=self.prices,
            start=self.start,
            end=end,
            tiers=self.tiers,
            requests=self.requests,
            missing=self.missing,
            gets_by_tier=self.gets_by_tier,
            get_bytes_by_tier=self.get_bytes_by_tier,
            moves=self.moves,
            bytes_moved=self.bytes_moved,
            moves_by_path=self.moves_by_path,
            samples=self.samples,
            months=self.months,
            move_log=self.move_log,
        )
