"""ZFS snapshots of Stratum's datasets: on demand (``stratum snapshot``) and on a schedule.

What is snapshotted: the dataset holding ``<data_dir>/meta`` (the LMDB metadata store), if it
is on ZFS, and with ``data`` the datasets of the tiers with ``backend = "zfs"``. Snapshots are
named ``<dataset>@stratum-<UTC time, %Y%m%dT%H%M%SZ>``; after each new set, all but the newest
``keep`` snapshots of that name form are destroyed on each dataset (others, yours, are left
alone).

Consistency. A ZFS snapshot is atomic, and LMDB is crash-safe, so a snapshot of the
metadata taken while the server runs is a consistent store (as after a power cut). The
datasets of one zpool are snapshotted in one ``lzc_snapshot`` call, which is atomic across
them: metadata and shards of the same instant. Datasets on other pools follow, metadata
first: an object written in between is only an unreferenced shard in the later snapshot,
which a start from the restored copy sweeps away.
"""

from __future__ import annotations

import asyncio
import calendar
import concurrent.futures
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from stratum.config import Config
from stratum.pool import tier_pool
from stratum.pool.base import PoolError
from stratum.pool.zfs import ZfsTools, pool_of
from stratum.util.clock import Clock
from stratum.util.periodic import Periodic

log = logging.getLogger("stratum.snapshot")

PREFIX = "stratum-"
TIME_FORMAT = "%Y%m%dT%H%M%SZ"
MAX_WAIT = 300.0  # re-read the newest snapshot at least this often while waiting


def snapshot_name(when: float) -> str:
    return PREFIX + time.strftime(TIME_FORMAT, time.gmtime(when))


def taken_at(snapshot: str) -> float | None:
    """When a snapshot of ours was taken (from its name); None for others' snapshots."""
    _, _, short = snapshot.partition("@")
    if not short.startswith(PREFIX):
        return None
    try:
        return float(calendar.timegm(time.strptime(short[len(PREFIX) :], TIME_FORMAT)))
    except ValueError:
        return None


@dataclass
class SnapshotReport:
    created: list[str] = field(default_factory=list)
    destroyed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was not snapshotted, and why


@dataclass(frozen=True)
class Target:
    what: str  # "metadata" or "<tier> disk <path>"
    dataset: str


def metadata_dataset(tools: ZfsTools, config: Config) -> str | None:
    """The dataset holding the metadata store, None when it is not on ZFS."""
    return tools.dataset_of(config.storage.data_dir / "meta")


def targets(tools: ZfsTools, config: Config, *, data: bool) -> tuple[list[Target], list[str]]:
    """What a snapshot covers (metadata first) and notes on what it cannot cover."""
    found: list[Target] = []
    notes: list[str] = []
    meta = metadata_dataset(tools, config)
    if meta is None:
        notes.append(f"metadata: {config.storage.data_dir / 'meta'} is not on a ZFS dataset")
    else:
        found.append(Target("metadata", meta))
    if data:
        tiers = {"hot": config.tiers.hot, "warm": config.tiers.warm}
        for name, tier in tiers.items():
            if not tier.disks:
                continue
            if tier.backend != "zfs":
                notes.append(f"{name}: backend is {tier.backend}, not zfs")
                continue
            pool = tier_pool(config, name, tools=tools)
            for path, dataset in zip(tier.disks, pool.snapshot_datasets(tier.disks), strict=True):
                found.append(Target(f"{name} disk {path}", dataset))
    unique: dict[str, Target] = {}
    for target in found:  # data_dir's dataset may also hold a disk: one snapshot each
        unique.setdefault(target.dataset, target)
    return list(unique.values()), notes


def take(tools: ZfsTools, datasets: Sequence[str], when: float, keep: int) -> SnapshotReport:
    """Snapshot ``datasets`` (one atomic call per zpool, in the order of their first dataset),
    then prune each to its newest ``keep`` snapshots of ours. Blocking."""
    report = SnapshotReport()
    name = snapshot_name(when)
    by_pool: dict[str, list[str]] = {}
    for dataset in datasets:
        by_pool.setdefault(pool_of(dataset), []).append(f"{dataset}@{name}")
    for snaps in by_pool.values():
        tools.snapshot(snaps)
        report.created += snaps
        log.info("snapshot %s", ", ".join(snaps))
    report.destroyed = prune(tools, datasets, keep)
    return report


def prune(tools: ZfsTools, datasets: Sequence[str], keep: int) -> list[str]:
    """Destroy all but the newest ``keep`` of our snapshots of each dataset."""
    doomed: dict[str, list[str]] = {}
    for dataset in datasets:
        ours = [s for s in tools.snapshots(dataset) if taken_at(s) is not None]
        ours.sort(key=lambda s: s.partition("@")[2])  # by time (the names sort by time)
        for snapshot in ours[: max(0, len(ours) - keep)]:
            doomed.setdefault(pool_of(dataset), []).append(snapshot)
    destroyed: list[str] = []
    for snaps in doomed.values():
        tools.destroy_snapshots(snaps)
        destroyed += snaps
    return destroyed


def newest(tools: ZfsTools, datasets: Sequence[str]) -> float:
    """When the newest snapshot of ours of the first dataset was taken (0: none)."""
    if not datasets:
        return 0.0
    times = [t for s in tools.snapshots(datasets[0]) if (t := taken_at(s)) is not None]
    return max(times, default=0.0)


class SnapshotSchedule:
    """Takes a snapshot set every ``interval`` seconds, counted from the newest one that
    exists (so a restart neither skips one nor takes an extra one)."""

    def __init__(
        self,
        tools: ZfsTools,
        datasets: Callable[[], Sequence[str]],
        *,
        interval: float,
        keep: int,
        clock: Clock,
        executor: concurrent.futures.Executor,
    ) -> None:
        self.tools = tools
        self.datasets = datasets  # blocking: runs in the executor
        self.interval = interval
        self.keep = keep
        self.clock = clock
        self.executor = executor
        self.last: SnapshotReport | None = None
        self._wait = MAX_WAIT  # until the next look, set by each one
        self._schedule = Periodic(
            "snapshots",
            self._scheduled,
            interval=lambda: self._wait,
            first_delay=0,
            expected=(PoolError,),  # ZFS said no: its message says why
            log=log,
            what="scheduled snapshot",
        )

    async def start(self) -> None:
        self._schedule.start()

    async def stop(self) -> None:
        await self._schedule.stop()

    def _due_in(self) -> tuple[float, Sequence[str]]:
        datasets = self.datasets()
        if not datasets:
            return float("inf"), datasets
        return newest(self.tools, datasets) + self.interval - self.clock.now(), datasets

    def _take(self, datasets: Sequence[str]) -> SnapshotReport:
        return take(self.tools, datasets, self.clock.now(), self.keep)

    async def _scheduled(self) -> None:
        """A snapshot set if one is due; then wait until the next is, or MAX_WAIT at most
        (at least a second; MAX_WAIT after a failure)."""
        self._wait = MAX_WAIT
        loop = asyncio.get_running_loop()
        due_in, datasets = await loop.run_in_executor(self.executor, self._due_in)
        if due_in <= 0:
            self.last = await loop.run_in_executor(self.executor, self._take, datasets)
            due_in = self.interval
        self._wait = max(1.0, min(MAX_WAIT, due_in))


def schedule_datasets(tools: ZfsTools, config: Config) -> Callable[[], list[str]]:
    """The datasets of a scheduled snapshot, found once (blocking, on first call)."""
    found: list[str] | None = None

    def datasets() -> list[str]:
        nonlocal found
        if found is None:
            chosen, notes = targets(tools, config, data=config.storage.snapshot_data)
            for note in notes:
                log.warning("scheduled snapshots: %s", note)
            found = [t.dataset for t in chosen]
        return found

    return datasets


def snapshot_now(
    config: Config, *, data: bool, when: float, tools: ZfsTools | None = None
) -> SnapshotReport:
    """``stratum snapshot [--data]``: one set taken at ``when``, then pruning. Blocking;
    raises PoolError (nothing on ZFS, or ZFS refused)."""
    from stratum.pool.zfs import load_tools

    tools = tools or load_tools()
    chosen, notes = targets(tools, config, data=data)
    if not chosen:
        raise PoolError("nothing to snapshot: " + "; ".join(notes))
    report = take(tools, [t.dataset for t in chosen], when, config.storage.snapshot_keep)
    report.notes = notes
    return report


def snapshot_schedule(
    config: Config, clock: Clock, executor: concurrent.futures.Executor
) -> SnapshotSchedule:
    """The schedule ``[storage] snapshot_interval`` asks for (blocking: loads libzfs_core;
    raises PoolError when it is missing)."""
    from stratum.pool.zfs import load_tools

    tools = load_tools()
    return SnapshotSchedule(
        tools,
        schedule_datasets(tools, config),
        interval=config.storage.snapshot_interval,
        keep=config.storage.snapshot_keep,
        clock=clock,
        executor=executor,
    )
