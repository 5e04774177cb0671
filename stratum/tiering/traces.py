"""Request traces for the tier simulator (:mod:`stratum.tiering.simulator`): the format,
reading and writing it, and a synthetic home-lab trace.

Trace format: CSV (RFC 4180 quoting), one request per line, in time order; an optional
header line ``time,op,bucket,key,size``; blank lines and lines starting with ``#`` ignored::

    time    seconds since the start of the trace (float, never decreasing)
    op      PUT | GET | HEAD | DELETE
    bucket  bucket name
    key     object key
    size    bytes: of the new object for PUT; of the object as the client saw it otherwise
            (a GET or HEAD of a key the trace has not written yet stands for an object that
            existed before the trace started: it is created, in the first tier, at time 0)

Synthetic traces: ``python -m stratum.tiering.workloads [--workload NAME] --days 180 --seed 1
> trace.csv`` writes one; the same workload, length and seed always give the same trace.
Workloads (:mod:`stratum.tiering.workloads` gives each one's pattern and numbers, and holds
the command, since it builds on this module's format and home lab):

- ``homelab`` (the default; below): nightly backups with retention and restores beside a
  Zipf working set of files;
- ``photos``: a photo library, bursty uploads of albums whose views decay with their age;
- ``backups``: a restic repository, nightly packs, weekly index reads and prunes, a monthly
  partial check and one large restore;
- ``media``: films and episodes watched soon after they arrive, then rarely;
- ``documents``: the home lab's Zipf working set of documents alone;
- ``logs``: hourly log objects read soon after they are written, by a daily report and by
  occasional investigations, deleted after 14 days.

The home lab's pattern (:class:`HomeLab` holds the numbers):

- **Nightly backups**: at 02:00 a backup job writes 20 files of 50-500 MiB (log-uniform) into
  the bucket ``backups`` under ``night-NNNN/``, checking each with a HEAD; at 03:30 the
  retention job deletes the nights older than 30 days, except one night a week (day 6, 13...),
  kept for 26 weeks (restic's ``--keep-daily 30 --keep-weekly 26``). Backups are rarely read:
  about once every two weeks someone restores a whole night (any one still kept), reading its
  files one after the other.
- **A working set** of ~2,000 documents, photos and project files in the bucket ``files``
  (log-normal sizes around 256 KiB: a third under 128 KiB, a few up to 64 MiB), all written on
  day 0. Reads follow a Zipf law (s = 1.3) over a popularity ranking, between 08:00 and 23:00,
  ~1,500 a day (half as many again at weekends), plus HEADs from sync tools: the top files are
  read all day, the bottom half less than once a month. Each day ~20 files
  are edited (rewritten, popular ones more often), ~10 new files appear near the top of the
  ranking, ~5 files from the unpopular half are deleted, and ~20 middling files become popular
  again, so the hot set drifts.
"""

from __future__ import annotations

import bisect
import csv
import io
import itertools
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

__all__ = [
    "DAY",
    "HOUR",
    "OPS",
    "HomeLab",
    "TraceError",
    "TraceRow",
    "format_trace",
    "generate",
    "parse_trace",
    "read_trace",
]

HOUR = 3600.0
DAY = 86400.0
OPS = ("PUT", "GET", "HEAD", "DELETE")
TRACE_HEADER = ("time", "op", "bucket", "key", "size")


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


# --- a home lab's trace -------------------------------------------------------------------

KIB, MIB = 1 << 10, 1 << 20
FILES, BACKUPS = "files", "backups"


@dataclass(frozen=True)
class HomeLab:
    """The numbers of the generated pattern (see the module docstring)."""

    working_set: int = 2000
    reads_per_day: int = 1500
    weekend_factor: float = 1.5
    zipf_s: float = 1.3
    heads_per_day: int = 300
    edits_per_day: int = 20
    new_files_per_day: int = 10
    deletes_per_day: int = 5
    revivals_per_day: int = 20
    median_size: int = 256 * KIB
    size_sigma: float = 1.6  # of the log-normal
    max_size: int = 64 * MIB
    backup_files: int = 20
    backup_min: int = 50 * MIB
    backup_max: int = 500 * MIB
    backup_rate: int = 100 * MIB  # bytes per second the backup and restore jobs move
    retention_days: int = 30
    weekly_retention_days: int = 26 * 7
    restore_every_days: float = 14.0


def generate(days: int, seed: int, lab: HomeLab | None = None) -> Iterator[TraceRow]:
    """The rows of a ``days``-day trace, in time order."""
    lab = lab or HomeLab()
    yield from _Lab(lab, random.Random(seed)).run(days)


class _Lab:
    def __init__(self, lab: HomeLab, rng: random.Random) -> None:
        self.lab = lab
        self.rng = rng
        self.sizes: dict[str, int] = {}  # files bucket: key -> size
        self.ranking: list[str] = []  # most popular first
        self.backups: dict[int, list[tuple[str, int]]] = {}  # night -> [(key, size)]
        self.names = itertools.count()
        self.cum: list[float] = []  # cumulative Zipf weights, grown as needed

    # -- helpers -------------------------------------------------------------------------

    def file_size(self) -> int:
        lab = self.lab
        size = math.exp(self.rng.gauss(math.log(lab.median_size), lab.size_sigma))
        return max(1 * KIB, min(lab.max_size, int(size)))

    def new_key(self) -> str:
        number = next(self.names)
        kind = self.rng.choice(("doc", "jpg", "pdf", "txt", "xlsx", "raw", "md"))
        return f"projects/{number % 97:02d}/file-{number:06d}.{kind}"

    def zipf_rank(self) -> int:
        n = len(self.ranking)
        while len(self.cum) < n:
            previous = self.cum[-1] if self.cum else 0.0
            self.cum.append(previous + (len(self.cum) + 1) ** -self.lab.zipf_s)
        return bisect.bisect_left(self.cum, self.rng.random() * self.cum[n - 1], 0, n - 1)

    def times(self, count: int, start: float, end: float) -> list[float]:
        return [self.rng.uniform(start, end) for _ in range(count)]

    def count(self, mean: float) -> int:
        """A random count around ``mean`` (normal approximation of a Poisson count)."""
        return max(0, round(self.rng.gauss(mean, math.sqrt(mean)))) if mean > 0 else 0

    def expired(self, night: int, day: int) -> bool:
        weekly = night % 7 == 6
        keep = self.lab.weekly_retention_days if weekly else self.lab.retention_days
        return day - night >= keep

    # -- the days ------------------------------------------------------------------------

    def run(self, days: int) -> Iterator[TraceRow]:
        for day in range(days):
            yield from self.day(day)

    def day(self, day: int) -> Iterator[TraceRow]:
        """The day's rows, in time order."""
        lab, rng = self.lab, self.rng
        t0 = day * DAY
        # Intents: (time, sequence, action, argument), resolved in time order against the
        # state as it is then (a read picks its key at its own time, after earlier deletes).
        intents: list[tuple[float, int, str, tuple[int, ...]]] = []
        seq = itertools.count()

        def plan(when: float, action: str, *argument: int) -> None:
            intents.append((when, next(seq), action, argument))

        if day == 0:
            for index, when in enumerate(sorted(self.times(lab.working_set, 0, HOUR))):
                plan(when, "create", index)
        when = t0 + 2 * HOUR
        for index in range(lab.backup_files):
            size = int(math.exp(rng.uniform(math.log(lab.backup_min), math.log(lab.backup_max))))
            plan(when, "backup", day, index, size)
            when += size / lab.backup_rate + 5
        plan(t0 + 3.5 * HOUR, "retention", day)
        weekend = day % 7 in (5, 6)
        reads = self.count(lab.reads_per_day * (lab.weekend_factor if weekend else 1.0))
        daytime = (t0 + 8 * HOUR, t0 + 23 * HOUR)
        for when in self.times(reads, *daytime):
            plan(when, "read")
        for when in self.times(self.count(lab.heads_per_day), *daytime):
            plan(when, "head")
        if day > 0:
            for when in self.times(self.count(lab.edits_per_day), *daytime):
                plan(when, "edit")
            for when in self.times(self.count(lab.new_files_per_day), *daytime):
                plan(when, "new")
            for when in self.times(self.count(lab.deletes_per_day), *daytime):
                plan(when, "delete")
            plan(t0 + 7 * HOUR, "revive")
        nights = [n for n in self.backups if n < day and not self.expired(n, day)]
        if day >= 7 and nights and rng.random() < 1 / lab.restore_every_days:
            plan(rng.uniform(t0 + 9 * HOUR, t0 + 21 * HOUR), "restore", rng.choice(nights))
        intents.sort()
        rows: list[TraceRow] = []
        for when, _, action, argument in intents:
            rows.extend(self.resolve(when, action, argument))
        # A restore and a backup's HEAD come after their intent's time; nothing resolved
        # later touches their keys, so ordering by time keeps the trace consistent.
        rows.sort(key=lambda row: row.time)
        return iter(rows)

    def resolve(self, when: float, action: str, argument: tuple[int, ...]) -> list[TraceRow]:
        rng = self.rng
        if action == "create" or action == "new":
            key = self.new_key()
            self.sizes[key] = self.file_size()
            if action == "create":
                self.ranking.append(key)
            else:
                self.ranking.insert(rng.randrange(min(50, len(self.ranking) + 1)), key)
            return [TraceRow(when, "PUT", FILES, key, self.sizes[key])]
        if action == "backup":
            night, index, size = argument
            key = f"night-{night:04d}/part-{index:02d}.tar.zst"
            self.backups.setdefault(night, []).append((key, size))
            finished = when + size / self.lab.backup_rate
            return [
                TraceRow(when, "PUT", BACKUPS, key, size),
                TraceRow(finished + 1, "HEAD", BACKUPS, key, size),
            ]
        if action == "retention":
            day = argument[0]
            expired = [night for night in self.backups if self.expired(night, day)]
            return [
                TraceRow(when, "DELETE", BACKUPS, key, size)
                for night in sorted(expired)
                for key, size in self.backups.pop(night)
            ]
        if action == "restore":
            rows, at = [], when
            for key, size in self.backups.get(argument[0], []):
                rows.append(TraceRow(at, "GET", BACKUPS, key, size))
                at += size / self.lab.backup_rate
            return rows
        if not self.ranking:
            return []
        if action == "read" or action == "edit":
            key = self.ranking[self.zipf_rank()]
            if action == "edit":
                self.sizes[key] = max(1, int(self.sizes[key] * math.exp(rng.gauss(0, 0.1))))
                return [TraceRow(when, "PUT", FILES, key, self.sizes[key])]
            return [TraceRow(when, "GET", FILES, key, self.sizes[key])]
        if action == "head":
            key = rng.choice(self.ranking)
            return [TraceRow(when, "HEAD", FILES, key, self.sizes[key])]
        if action == "delete":
            half = len(self.ranking) // 2
            key = self.ranking.pop(rng.randrange(half, len(self.ranking)))
            return [TraceRow(when, "DELETE", FILES, key, self.sizes.pop(key))]
        if action == "revive":
            n = len(self.ranking)
            for _ in range(self.lab.revivals_per_day if n > 300 else 0):
                key = self.ranking.pop(rng.randrange(200, n))
                self.ranking.insert(rng.randrange(100), key)
            return []
        raise AssertionError(action)
