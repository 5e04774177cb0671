"""Disks that are ZFS datasets, through libzfs_core (Debian's ``python3-pyzfs``).

A tier with ``backend = "zfs"`` and ``zfs_parent = "tank/stratum/hot"`` keeps its disk
``/srv/stratum/hot/d1`` on the dataset ``tank/stratum/hot/d1``, mounted at that path. At
start-up Stratum creates what is missing: the parent datasets (``canmount=off``) and each
disk's dataset with ``compression`` (lz4 by default), ``atime=off``, ``recordsize`` matched to
the shard block size (a shard file is written one block at a time) and ``mountpoint`` = the
disk path, then mounts it. Datasets that already exist are used as they are, provided they
are mounted at the disk path.

libzfs_core creates datasets and snapshots but has no call to mount, to read properties or a
pool's health, so the ``zfs`` and ``zpool`` commands do those (``zfs get -Hp``, ``zpool list
-H -o name,health``). Both libzfs_core and the commands are blocking: everything here runs
at start-up or in an executor. libzfs_core is imported only when a tier uses ZFS or a
snapshot is asked for (:func:`load_tools`).

A pool that is FAULTED, UNAVAIL, SUSPENDED or not imported makes its disks offline (reads go
to the other shards, writes to the other disks); DEGRADED is reported but the disk stays in
use, since ZFS still serves every block. The dataset of a failed pool is not touched further
(I/O on a suspended pool can block).
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stratum.pool.base import (
    FAILED_HEALTH,
    MISSING,
    UNKNOWN,
    Capacity,
    DiskBacking,
    Pool,
    PoolError,
)

log = logging.getLogger("stratum.pool")

COMMAND_TIMEOUT = 60.0
MIN_RECORDSIZE, MAX_RECORDSIZE = 4096, 1 << 20

# libzfs_core takes index properties as numbers (the libzfs behind the `zfs` command
# translates names itself). These are OpenZFS's enum zio_compress values, part of its
# on-disk format and so stable.
COMPRESSION: Mapping[str, int] = {
    "on": 1,
    "off": 2,
    "lzjb": 3,
    **{f"gzip-{level}": 4 + level for level in range(1, 10)},
    "gzip": 10,  # gzip-6
    "zle": 14,
    "lz4": 15,
    "zstd": 16,
}
CANMOUNT_OFF = 0
ATIME_OFF = 0

# what describe() reads of every disk's dataset
_PROPS = ("used", "available", "quota", "mounted", "mountpoint", "compression", "recordsize")

Runner = Callable[[Sequence[str]], str]


def run_command(argv: Sequence[str]) -> str:
    """stdout of ``argv``; raises :class:`PoolError` with its stderr when it fails."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PoolError(f"{' '.join(argv)}: {exc}") from exc
    if done.returncode != 0:
        why = done.stderr.strip() or f"exit code {done.returncode}"
        raise PoolError(f"{' '.join(argv)}: {why}")
    return done.stdout


@dataclass(frozen=True)
class ZfsTools:
    """The libzfs_core module and a runner of the ``zfs``/``zpool`` commands.

    Tests hand in :mod:`tests.fakezfs` instead, a double of both.
    """

    lzc: Any
    run: Runner = run_command

    def exists(self, name: str) -> bool:
        return bool(self.lzc.lzc_exists(name.encode()))

    def create(self, name: str, props: Mapping[str, int | str]) -> None:
        encoded = {
            key.encode(): value.encode() if isinstance(value, str) else value
            for key, value in props.items()
        }
        try:
            self.lzc.lzc_create(name.encode(), ds_type="zfs", props=encoded)
        except self.lzc.exceptions.FilesystemExists:
            pass  # created meanwhile (another start-up): fine
        except self.lzc.exceptions.ZFSError as exc:
            raise PoolError(f"cannot create dataset {name}: {exc}") from exc

    def snapshot(self, names: Sequence[str]) -> None:
        """Atomically: all of ``names`` (one pool, one per dataset) or none."""
        try:
            self.lzc.lzc_snapshot([name.encode() for name in names])
        except self.lzc.exceptions.ZFSError as exc:
            details = "; ".join(str(e) for e in getattr(exc, "errors", []) or [])
            raise PoolError(f"cannot snapshot {', '.join(names)}: {details or exc}") from exc

    def destroy_snapshots(self, names: Sequence[str]) -> None:
        """Destroy ``names`` (one pool); a snapshot with a clone goes when its clone goes."""
        try:
            self.lzc.lzc_destroy_snaps([name.encode() for name in names], defer=True)
        except self.lzc.exceptions.ZFSError as exc:
            raise PoolError(f"cannot destroy {', '.join(names)}: {exc}") from exc

    def pool_health(self) -> dict[str, str]:
        """Imported zpools and their health (ONLINE, DEGRADED, FAULTED, ...)."""
        out: dict[str, str] = {}
        for line in self.run(["zpool", "list", "-H", "-o", "name,health"]).splitlines():
            name, _, health = line.partition("\t")
            if name:
                out[name] = health.strip()
        return out

    def get(self, datasets: Sequence[str], props: Iterable[str]) -> dict[str, dict[str, str]]:
        """Properties of datasets, parsable values (bytes as numbers); a dataset that does
        not exist is left out."""
        props = list(props)
        if not datasets:
            return {}
        argv = ["zfs", "get", "-Hp", "-o", "name,property,value", ",".join(props)]
        try:
            text = self.run([*argv, *datasets])
        except PoolError:
            if len(datasets) == 1:
                return {}
            # one of them is missing: ask one by one
            out: dict[str, dict[str, str]] = {}
            for dataset in datasets:
                out.update(self.get([dataset], props))
            return out
        found: dict[str, dict[str, str]] = {}
        for line in text.splitlines():
            parts = line.split("\t")
            if len(parts) == 3:
                found.setdefault(parts[0], {})[parts[1]] = parts[2]
        return found

    def mount(self, dataset: str) -> None:
        self.run(["zfs", "mount", dataset])

    def dataset_of(self, path: Path) -> str | None:
        """The dataset holding ``path`` (the zfs command resolves paths), None if not ZFS."""
        try:
            out = self.run(["zfs", "list", "-H", "-o", "name", str(path)]).strip()
        except PoolError:
            return None
        return out.splitlines()[0] if out else None

    def snapshots(self, dataset: str) -> list[str]:
        """Snapshots of one dataset, oldest first."""
        argv = ["zfs", "list", "-H", "-o", "name", "-t", "snapshot", "-s", "createtxg"]
        return [n for n in self.run([*argv, "-d", "1", dataset]).splitlines() if n]


def load_tools() -> ZfsTools:
    """The real libzfs_core; raises :class:`PoolError` saying what to install."""
    try:
        import libzfs_core  # type: ignore[import-not-found, unused-ignore]
    except ImportError as exc:
        raise PoolError(
            "ZFS support needs libzfs_core for this Python (Debian, Ubuntu: apt install"
            f" python3-pyzfs; then run Stratum with the system python3): {exc}"
        ) from exc
    except Exception as exc:  # pyzfs initialises libzfs_core on import: /dev/zfs is needed
        raise PoolError(f"libzfs_core cannot start (is the zfs module loaded?): {exc!r}") from exc
    return ZfsTools(libzfs_core)


def recordsize_for(block_size: int) -> int:
    """The ZFS recordsize for shards of ``block_size``: the largest power of two not above
    it, between 4KiB and 1MiB (256KiB for the default block size)."""
    size = 1 << (max(block_size, 1).bit_length() - 1)
    return max(MIN_RECORDSIZE, min(MAX_RECORDSIZE, size))


def pool_of(dataset: str) -> str:
    return dataset.split("/", 1)[0]


def _failure(pool: str, health: str) -> str:
    if health == MISSING:
        return f"zfs pool {pool} is not imported"
    return f"zfs pool {pool} is {health}"


class ZfsPool(Pool):
    """A tier whose disks are the datasets ``<parent>/<disk directory name>``."""

    backing = "zfs"

    def __init__(
        self, tools: ZfsTools, parent: str, *, compression: str = "lz4", recordsize: int
    ) -> None:
        if compression not in COMPRESSION:
            raise PoolError(f"unknown zfs compression {compression!r}")
        self.tools = tools
        self.parent = parent.strip("/")
        self.compression = compression
        self.recordsize = recordsize

    def dataset_for(self, path: Path) -> str:
        return f"{self.parent}/{path.name}"

    # -- start-up ---------------------------------------------------------------------

    def prepare(self, path: Path) -> None:
        dataset = self.dataset_for(path)
        pool = pool_of(dataset)
        health = self.tools.pool_health().get(pool, MISSING)
        if health in FAILED_HEALTH:
            raise PoolError(f"disk {path} (dataset {dataset}): {_failure(pool, health)}")
        if not self.tools.exists(dataset):
            self._create_parents(path)
            self.tools.create(
                dataset,
                {
                    "compression": COMPRESSION[self.compression],
                    "atime": ATIME_OFF,
                    "recordsize": self.recordsize,
                    "mountpoint": str(path),
                },
            )
            log.info(
                "created dataset %s at %s (compression=%s, atime=off, recordsize=%d)",
                dataset,
                path,
                self.compression,
                self.recordsize,
            )
        props = self.tools.get([dataset], ["mountpoint", "mounted"]).get(dataset)
        if props is None:
            raise PoolError(f"disk {path}: dataset {dataset} cannot be read")
        if props.get("mountpoint") != str(path):
            raise PoolError(
                f"disk {path}: dataset {dataset} has mountpoint {props.get('mountpoint')};"
                f" set it with `zfs set mountpoint={path} {dataset}`, or list that path instead"
            )
        if props.get("mounted") != "yes":
            try:
                self.tools.mount(dataset)
            except PoolError as exc:
                raise PoolError(f"disk {path}: cannot mount dataset {dataset}: {exc}") from exc

    def _create_parents(self, path: Path) -> None:
        parts = self.parent.split("/")
        for depth in range(2, len(parts) + 1):  # the pool itself (depth 1) must exist
            name = "/".join(parts[:depth])
            if not self.tools.exists(name):
                # Parents only hold the disks' datasets: never mounted themselves.
                self.tools.create(
                    name,
                    {
                        "canmount": CANMOUNT_OFF,
                        "compression": COMPRESSION[self.compression],
                        "atime": ATIME_OFF,
                    },
                )
                log.info("created dataset %s (canmount=off) for disk %s", name, path)

    # -- while running ----------------------------------------------------------------

    def describe(self, paths: Sequence[Path]) -> dict[Path, DiskBacking]:
        try:
            health = self.tools.pool_health()
        except PoolError as exc:
            # Not knowing is not failing: the disks' own checks still run.
            log.warning("zfs pool health unknown: %s", exc)
            health = {pool_of(self.dataset_for(p)): UNKNOWN for p in paths}
        datasets = {path: self.dataset_for(path) for path in paths}
        failed = {
            p for p in map(pool_of, datasets.values()) if health.get(p, MISSING) in FAILED_HEALTH
        }
        readable = [d for d in datasets.values() if pool_of(d) not in failed]
        try:
            props = self.tools.get(readable, _PROPS)
        except PoolError as exc:
            log.warning("reading dataset properties failed: %s", exc)
            props = {}
        out: dict[Path, DiskBacking] = {}
        for path, dataset in datasets.items():
            pool = pool_of(dataset)
            state = health.get(pool, MISSING)
            found = props.get(dataset, {})
            problem = ""
            if state in FAILED_HEALTH:
                problem = _failure(pool, state)
            elif not found:
                problem = f"dataset {dataset} does not exist"
            elif found.get("mounted") != "yes":
                problem = f"dataset {dataset} is not mounted"
            elif found.get("mountpoint") != str(path):
                problem = f"dataset {dataset} is mounted at {found.get('mountpoint')}"
            out[path] = DiskBacking(
                self.backing,
                path,
                dataset=dataset,
                pool=pool,
                health=state,
                used_bytes=_number(found.get("used")),
                free_bytes=_number(found.get("available")),
                quota_bytes=_number(found.get("quota")),
                problem=problem,
                properties={k: found[k] for k in ("compression", "recordsize") if k in found},
            )
        return out

    def capacity(self, paths: Sequence[Path]) -> Capacity:
        """Used: the disks' datasets; free: what they can still take, which is at most what
        their common parent can (the pool's free space, or the parent's quota)."""
        described = [d for d in self.describe(paths).values() if not d.problem]
        if not described:
            return Capacity(0, 0)
        used = sum(d.used_bytes for d in described)
        free = sum(d.free_bytes for d in described)
        parent = self.tools.get([self.parent], ["available"]).get(self.parent, {})
        if "available" in parent:
            free = min(free, _number(parent["available"]))
        return Capacity(used, used + free)

    def snapshot_datasets(self, paths: Sequence[Path]) -> list[str]:
        return [self.dataset_for(path) for path in paths]


def _number(text: str | None) -> int:
    try:
        return int(text) if text is not None else 0
    except ValueError:  # "-" or "none"
        return 0
