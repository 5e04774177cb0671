"""Synthetic workloads for the tier simulator beyond the home lab of :mod:`stratum.tiering.traces`.

``python -m stratum.tiering.workloads --workload NAME --days D --seed S`` writes one; the same
name, length and seed always give the same trace. :data:`WORKLOADS` maps each name to its
generator; every generator takes the number of days, the seed and optionally its dataclass of
numbers (the defaults below, sized so that 90 days replay in seconds to a minute per policy).

- ``homelab``: today's mixed home-lab trace (:class:`~stratum.tiering.traces.HomeLab`):
  nightly backups with retention and a restore every two weeks beside a Zipf working set.
- ``photos`` (:class:`PhotoLibrary`): a photo library, Immich-like. A library of older albums
  is uploaded on day 0 (8 albums, each given an age of 2 months to 4 years); on about one day
  in five an upload burst of 10-80 photos (3-12 MiB originals, each with a 20-80 KiB thumbnail
  under ``thumbs/``) arrives within half an hour in the evening. An album is opened
  ``peak`` times a day (2) when new, halving every ``half_life_days`` (4) of its age, never
  less than ``floor`` (0.01) times a day; an opening reads up to 30 of its thumbnails and a
  short run of consecutive originals (1 plus an exponential count, about 2.5 on average).
- ``backups`` (:class:`ResticRepo`): a restic repository. Day 0 holds an initial backup of
  ~250 pack files (``data/XX/<hex>``, 4-16 MiB) with its index and snapshot; every night at
  02:00 a backup takes a lock, writes ~6 new packs, an index file and a snapshot, and drops
  the lock. Every Sunday ``restic check`` reads every index and snapshot file; on day 15 of
  every 30 ``check --read-data-subset 1/10`` reads a tenth of the packs; every Sunday after
  the check ``forget --prune`` deletes snapshots older than 30 days, the packs of nights
  older than 30 days with probability 1/2 (their data no longer referenced), and merges the
  index files into one. Once per trace (a random day in its second half) a large restore
  reads the latest snapshot's packs: 60-100 % of all packs, one after another.
- ``media`` (:class:`MediaLibrary`): a Jellyfin-like media library. On day 0 a library of
  ~120 films and episodes (0.3-4 GiB, each with a ``.nfo`` and a poster), each watched about
  once in 300 days. New episodes arrive ~1.2 a day and films ~0.15 a day (a scanner HEADs
  each an hour after it arrives); 85 % are watched, most within a day or two (log-normal
  delay, median 18 h), 30 % of those again within weeks, then about once in 300 days.
  A watch reads the ``.nfo``, the poster and the video. Episodes watched are deleted 30-60
  days after they arrive, with probability 1/2.
- ``documents`` (:func:`documents`): a Zipf working set of ~800 documents (s = 1.1) with
  edits, new files, deletes and revivals: the home lab's ``files`` bucket alone.
- ``logs`` (:class:`LogBucket`): three services each write an hourly compressed log object
  (``<service>/YYYY/MM/DD/HH.log.zst``, log-normal sizes around 2 MiB) five minutes after the
  hour; a shipper reads each once ten minutes after it is written; at 06:00 a report reads
  yesterday's 24 objects of the web service; ~0.3 times a day an investigation reads 2-12
  consecutive hours of one service, starting a few days back (exponential, mean 2 days); at
  01:00 the retention job deletes the objects older than 14 days.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from stratum.tiering.traces import DAY, HOUR, HomeLab, TraceRow, format_trace, generate

__all__ = [
    "WORKLOADS",
    "LogBucket",
    "MediaLibrary",
    "PhotoLibrary",
    "ResticRepo",
    "backups",
    "documents",
    "logs",
    "media",
    "photos",
    "workload",
]

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
MINUTE = 60.0


class _Rows:
    """A workload's rows, gathered in any order and returned in time order (rows of one
    instant keep the order they were added in). Each generator plans every object's life
    whole, so no request names an object outside its life."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.rows: list[TraceRow] = []

    def add(self, time: float, op: str, bucket: str, key: str, size: int) -> None:
        self.rows.append(TraceRow(time, op, bucket, key, size))

    def poisson(self, mean: float) -> int:
        """A Poisson count (Knuth's method; the means here are small)."""
        if mean <= 0:
            return 0
        if mean > 50:
            return max(0, round(self.rng.gauss(mean, math.sqrt(mean))))
        limit, count, product = math.exp(-mean), 0, self.rng.random()
        while product > limit:
            count += 1
            product *= self.rng.random()
        return count

    def log_uniform(self, low: float, high: float) -> int:
        return int(math.exp(self.rng.uniform(math.log(low), math.log(high))))

    def hexname(self, length: int) -> str:
        return f"{self.rng.getrandbits(4 * length):0{length}x}"

    def sorted(self, days: int) -> Iterator[TraceRow]:
        rows = [row for row in self.rows if row.time < days * DAY]
        rows.sort(key=lambda row: row.time)
        return iter(rows)


def _date(day: int) -> str:
    """A calendar path for trace day ``day`` (day 0 = 2026-01-01), months of 30 days."""
    return f"2026/{day // 30 % 12 + 1:02d}/{day % 30 + 1:02d}"


# --- photos -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhotoLibrary:
    old_albums: int = 8
    upload_probability: float = 0.2  # per day
    album_min: int = 10
    album_max: int = 80
    photo_min: int = 3 * MIB
    photo_max: int = 12 * MIB
    thumb_min: int = 20 * KIB
    thumb_max: int = 80 * KIB
    peak: float = 2.0  # openings a day of a new album
    half_life_days: float = 4.0
    floor: float = 0.01
    thumbs_per_open: int = 30
    run_mean: float = 3.0


def photos(days: int, seed: int, lib: PhotoLibrary | None = None) -> Iterator[TraceRow]:
    lib = lib or PhotoLibrary()
    out = _Rows(seed)
    rng = out.rng
    albums: list[tuple[float, float, list[tuple[str, int, str, int]]]] = []  # (made, age0, photos)

    def upload(start: float, age: float, label: str) -> None:
        count = out.log_uniform(lib.album_min, lib.album_max + 1)
        items, when = [], start
        for index in range(count):
            key = f"library/alice/{label}/IMG_{index:04d}"
            size = out.log_uniform(lib.photo_min, lib.photo_max)
            thumb = out.log_uniform(lib.thumb_min, lib.thumb_max)
            out.add(when, "PUT", "photos", f"{key}.jpg", size)
            out.add(when + 2, "PUT", "photos", f"thumbs/{key}.webp", thumb)
            items.append((f"{key}.jpg", size, f"thumbs/{key}.webp", thumb))
            when += rng.uniform(5, 25)
        albums.append((when, age, items))

    for index in range(lib.old_albums):
        upload(index * 200.0, rng.uniform(60, 1500) * DAY, f"{2022 + index % 4}/old-{index:03d}")
    for day in range(days):
        if day > 0 and rng.random() < lib.upload_probability:
            upload(day * DAY + rng.uniform(18, 22) * HOUR, 0.0, _date(day))
    for made, age0, items in albums:
        # openings: a Poisson process whose rate decays with the album's age, day by day
        for day in range(int(made // DAY), days):
            start = max(made + 600, day * DAY + 8 * HOUR)
            end = day * DAY + 23 * HOUR
            if start >= end:
                continue
            age = age0 + (start - made)
            rate = max(lib.floor, lib.peak * 0.5 ** (age / DAY / lib.half_life_days))
            for _ in range(out.poisson(rate)):
                when = rng.uniform(start, end)
                for _, _, thumb, thumb_size in items[: lib.thumbs_per_open]:
                    out.add(when, "GET", "photos", thumb, thumb_size)
                    when += 0.2
                first = rng.randrange(len(items))
                run = min(len(items) - first, 1 + int(rng.expovariate(1 / (lib.run_mean - 1))))
                for key, size, _, _ in items[first : first + run]:
                    when += rng.uniform(3, 40)
                    out.add(when, "GET", "photos", key, size)
    return out.sorted(days)


# --- backups ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResticRepo:
    initial_packs: int = 250
    packs_per_night: float = 6.0
    pack_min: int = 4 * MIB
    pack_max: int = 16 * MIB
    keep_days: int = 30
    prune_probability: float = 0.5
    check_subset: float = 0.1
    rate: int = 100 * MIB  # bytes per second of a backup, check or restore


def backups(days: int, seed: int, repo: ResticRepo | None = None) -> Iterator[TraceRow]:
    repo = repo or ResticRepo()
    out = _Rows(seed)
    rng = out.rng
    bucket = "restic"
    packs: dict[str, tuple[int, int]] = {}  # key -> (size, night written)
    indexes: dict[str, int] = {}
    snapshots: dict[str, tuple[int, int]] = {}  # key -> (size, night)
    restore_day = rng.randrange(days // 2, days) if days >= 14 else -1

    def put(when: float, key: str, size: int) -> float:
        out.add(when, "PUT", bucket, key, size)
        return when + size / repo.rate + 0.5

    def read(when: float, keys: list[tuple[str, int]]) -> float:
        for key, size in keys:
            out.add(when, "GET", bucket, key, size)
            when += size / repo.rate + 0.2
        return when

    for day in range(days):
        t0 = day * DAY
        when = t0 + 2 * HOUR
        lock = f"locks/{out.hexname(64)}"
        when = put(when, lock, 200)
        count = repo.initial_packs if day == 0 else out.poisson(repo.packs_per_night)
        for _ in range(count):
            name = out.hexname(64)
            size = out.log_uniform(repo.pack_min, repo.pack_max)
            packs[f"data/{name[:2]}/{name}"] = (size, day)
            when = put(when, f"data/{name[:2]}/{name}", size)
        index = f"index/{out.hexname(64)}"
        indexes[index] = 2 * KIB + 300 * count
        when = put(when, index, indexes[index])
        snapshot = f"snapshots/{out.hexname(64)}"
        snapshots[snapshot] = (rng.randint(400, 900), day)
        when = put(when, snapshot, snapshots[snapshot][0])
        out.add(when, "DELETE", bucket, lock, 200)
        if day % 7 == 6:  # Sunday: check, then forget --prune
            when = t0 + 4 * HOUR
            meta = sorted(indexes.items()) + sorted((k, v[0]) for k, v in snapshots.items())
            when = read(when, meta)
            for key in [k for k, (_, night) in snapshots.items() if day - night > repo.keep_days]:
                out.add(when, "DELETE", bucket, key, snapshots.pop(key)[0])
            old = [k for k, (_, night) in sorted(packs.items()) if day - night > repo.keep_days]
            for key in old:
                if rng.random() < repo.prune_probability:
                    out.add(when, "DELETE", bucket, key, packs.pop(key)[0])
            merged = f"index/{out.hexname(64)}"
            when = put(when + 1, merged, sum(indexes.values()))
            for key, size in sorted(indexes.items()):
                out.add(when, "DELETE", bucket, key, size)
            indexes = {merged: sum(indexes.values())}
        if day % 30 == 15:  # check --read-data-subset 1/10
            chosen = sorted(k for k in packs if rng.random() < repo.check_subset)
            read(t0 + 5 * HOUR, [(k, packs[k][0]) for k in chosen])
        if day == restore_day:
            share = rng.uniform(0.6, 1.0)
            when = t0 + rng.uniform(10, 20) * HOUR
            when = read(when, sorted(indexes.items()))
            latest = max(snapshots, key=lambda k: snapshots[k][1])
            when = read(when, [(latest, snapshots[latest][0])])
            chosen = [k for k in packs if rng.random() < share]
            rng.shuffle(chosen)
            read(when, [(k, packs[k][0]) for k in chosen])
    return out.sorted(days)


# --- media ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MediaLibrary:
    library_items: int = 120
    episodes_per_day: float = 1.2
    films_per_day: float = 0.15
    episode_min: int = 300 * MIB
    episode_max: int = 2 * GIB
    film_min: int = 1 * GIB
    film_max: int = 4 * GIB
    watched: float = 0.85
    delay_median_hours: float = 18.0
    rewatch: float = 0.3
    rewatch_mean_days: float = 12.0
    later_per_day: float = 1 / 300
    delete_probability: float = 0.5


def media(days: int, seed: int, lib: MediaLibrary | None = None) -> Iterator[TraceRow]:
    lib = lib or MediaLibrary()
    out = _Rows(seed)
    rng = out.rng
    end = days * DAY
    shows = [f"show-{chr(97 + i)}" for i in range(8)]
    episodes: dict[str, int] = {}

    def arrive(when: float, film: bool, new: bool) -> None:
        if film:
            folder = f"films/film-{out.hexname(6)}"
            size = out.log_uniform(lib.film_min, lib.film_max)
        else:
            show = rng.choice(shows)
            episodes[show] = episodes.get(show, 0) + 1
            number = episodes[show]
            folder = f"tv/{show}/season-{number // 10 + 1:02d}/e{number:03d}"
            size = out.log_uniform(lib.episode_min, lib.episode_max)
        files = [
            (f"{folder}/video.mkv", size),
            (f"{folder}/info.nfo", rng.randint(2 * KIB, 8 * KIB)),
            (f"{folder}/poster.jpg", rng.randint(100 * KIB, 400 * KIB)),
        ]
        for key, bytes_ in files:
            out.add(when, "PUT", "media", key, bytes_)
            when += bytes_ / (100 * MIB) + 1
        if new:
            out.add(when + HOUR, "HEAD", "media", files[0][0], size)
        gone = end
        if new and not film and rng.random() < lib.delete_probability:
            gone = when + rng.uniform(30, 60) * DAY
        watches: list[float] = []
        if new and rng.random() < lib.watched:
            delay = rng.lognormvariate(math.log(lib.delay_median_hours * HOUR), 0.8)
            watches.append(when + delay)
            if rng.random() < lib.rewatch:
                watches.append(watches[0] + rng.expovariate(1 / (lib.rewatch_mean_days * DAY)))
        at = max([when, *watches])
        while True:  # the rare later watch
            at += rng.expovariate(lib.later_per_day / DAY)
            if at >= gone:
                break
            watches.append(at)
        for watch in watches:
            if watch + 10 >= gone:
                continue
            for offset, (key, bytes_) in zip((0.0, 0.5, 2.0), reversed(files), strict=True):
                out.add(watch + offset, "GET", "media", key, bytes_)
        if gone < end:
            for key, bytes_ in files:
                out.add(gone, "DELETE", "media", key, bytes_)

    for index in range(lib.library_items):
        arrive(index * 30.0, rng.random() < 0.3, new=False)
    for day in range(1, days):
        for _ in range(out.poisson(lib.episodes_per_day)):
            arrive(day * DAY + rng.uniform(0, 24) * HOUR, False, new=True)
        for _ in range(out.poisson(lib.films_per_day)):
            arrive(day * DAY + rng.uniform(0, 24) * HOUR, True, new=True)
    return out.sorted(days)


# --- documents --------------------------------------------------------------------------------

DOCUMENTS = HomeLab(
    working_set=800,
    reads_per_day=600,
    zipf_s=1.1,
    heads_per_day=100,
    edits_per_day=10,
    new_files_per_day=5,
    deletes_per_day=3,
    revivals_per_day=8,
    backup_files=0,
)


def documents(days: int, seed: int, lab: HomeLab | None = None) -> Iterator[TraceRow]:
    """The home lab's working set alone (no backups), at :data:`DOCUMENTS`' numbers."""
    return generate(days, seed, lab or DOCUMENTS)


# --- logs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogBucket:
    services: tuple[str, ...] = ("web", "app", "db")
    median_size: int = 2 * MIB
    size_sigma: float = 0.8
    investigations_per_day: float = 0.3
    investigation_age_days: float = 2.0
    retention_days: int = 14


def logs(days: int, seed: int, bucket: LogBucket | None = None) -> Iterator[TraceRow]:
    spec = bucket or LogBucket()
    out = _Rows(seed)
    rng = out.rng
    written: dict[tuple[str, int], tuple[str, int]] = {}  # (service, hour) -> (key, size)

    def size() -> int:
        return max(KIB, int(rng.lognormvariate(math.log(spec.median_size), spec.size_sigma)))

    hours = days * 24
    for hour in range(hours):
        day = hour // 24
        for service in spec.services:
            key = f"{service}/{_date(day)}/{hour % 24:02d}.log.zst"
            item = written[(service, hour)] = (key, size())
            when = (hour + 1) * HOUR + 5 * MINUTE + rng.uniform(0, 30)
            out.add(when, "PUT", "logs", *item)
            out.add(when + 10 * MINUTE, "GET", "logs", *item)
            out.add(when + spec.retention_days * DAY - 5 * MINUTE, "DELETE", "logs", *item)
    for day in range(days):
        t0 = day * DAY
        if day >= 2:  # the daily report: yesterday's web logs
            when = t0 + 6 * HOUR
            for hour in range((day - 1) * 24, day * 24):
                out.add(when, "GET", "logs", *written[(spec.services[0], hour)])
                when += 2
        for _ in range(out.poisson(spec.investigations_per_day)):
            when = t0 + rng.uniform(9, 18) * HOUR
            back = rng.expovariate(1 / (spec.investigation_age_days * DAY))
            first = int((when - back) // HOUR) - rng.randint(0, 6)
            length = rng.randint(2, 12)
            service = rng.choice(spec.services)
            for hour in range(first, first + length):
                found = written.get((service, hour))
                # written (an hour's object appears just after the hour) and not yet deleted
                ready = (hour + 1) * HOUR + HOUR
                if found is not None and ready < when < (hour + spec.retention_days * 24) * HOUR:
                    out.add(when, "GET", "logs", *found)
                    when += 1
    return out.sorted(days)


# --- the registry -----------------------------------------------------------------------------

WORKLOADS: dict[str, Callable[..., Iterator[TraceRow]]] = {
    "homelab": generate,
    "photos": photos,
    "backups": backups,
    "media": media,
    "documents": documents,
    "logs": logs,
}


def workload(name: str, days: int, seed: int, params: Any = None) -> Iterator[TraceRow]:
    """The rows of workload ``name`` (a key of :data:`WORKLOADS`), in time order."""
    try:
        generator = WORKLOADS[name]
    except KeyError:
        raise ValueError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}") from None
    return generator(days, seed, params)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stratum.tiering.workloads",
        description="Write a synthetic request trace (CSV) for `stratum tier simulate`.",
    )
    parser.add_argument("--days", type=int, default=180, help="length of the trace (180)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (1)")
    parser.add_argument(
        "--workload",
        default="homelab",
        choices=list(WORKLOADS),
        help="which pattern (homelab; stratum/tiering/workloads.py describes the others)",
    )
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be at least 1")
    sys.stdout.writelines(format_trace(workload(args.workload, args.days, args.seed)))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
