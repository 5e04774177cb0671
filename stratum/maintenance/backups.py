"""Consistent copies of the metadata store on a few disks, on a schedule.

LMDB's own hot copy (``env.copy(compact=True)``, :meth:`MetaStore.copy_to`) reads one
snapshot inside a read transaction, so it is consistent while the server keeps writing.
Every ``storage.metadata_backup_interval`` (and once shortly after start) the store is
copied once and that copy is written to ``storage.metadata_backup_copies`` disks of the
local tiers, not to all of them: the store measured 1.6 GB at a million objects
(docs/benchmarks.md), so about 16 GB at ten million, and a copy on each of six disks every
hour wrote six times that. Automatic (0): the largest ``parity_shards`` of the tiers plus
one, so that losing as many disks as erasure coding survives still leaves a copy
(:func:`backup_copies`). Losses in several tiers at once, each within its parity, can exceed
that; a larger ``metadata_backup_copies`` covers them.

Which disks (:func:`choose_disks`): first those holding the newest copy, so that each run
refreshes the same disks; then the others spread over the tiers, in the disks' order. A disk
the disk probes report offline (``disk_state``; e.g. its zpool FAULTED or SUSPENDED, where
I/O may block) is passed over without touching it, and so is a disk directory without its
identity file (a removed or unmounted disk, never created): the next disk in that order
takes its place, as does one for a disk whose copy fails. Once a run has written every copy
it wanted, the copies on the other online disks are removed (old ones would pile up as disks
come and go); a run that wrote fewer removes nothing. So a complete copy is removed only
once newer ones are in place on as many disks as wanted: never the last.

Layout on a disk (format version 1)::

    <disk>/meta-backup/data.mdb     the LMDB copy; open it read-only with lock=False
    <disk>/meta-backup/stamp.json   {"format": "stratum-meta-backup", "version": 1,
                                     "created": <clock seconds, taken before the copy>,
                                     "txn": <LMDB transaction id the copy includes at least>,
                                     "volumes": n, "objects": n, "buckets": n, "users": n}

``created`` is on the server's clock, the clock volume ids are made from
(:mod:`stratum.service.ids`): whatever the copy lacks was committed after ``created``, or
was deleted before the copy was taken. Counts are LMDB entries of the copy (a list
record of long keys counts once).

Replacing a copy never leaves a disk without a complete one:

1. the copy goes to ``<disk>/meta-backup.tmp-<ms>/``: ``data.mdb`` and then ``stamp.json``,
   each fsynced, then the directory;
2. ``meta-backup/`` is renamed to ``meta-backup.prev/``, the new directory to
   ``meta-backup/``, and the disk directory is fsynced;
3. ``meta-backup.prev/`` is removed.

A crash between the renames leaves ``meta-backup.prev/``: the next run renames it back
first. A directory holding ``stamp.json`` is complete (the stamp is written last), so
:func:`find_backups` considers every ``meta-backup*`` directory that has one; a copy is
removed stamp first, so a crash halfway leaves no half copy that looks complete.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lmdb

from stratum.block.disk import IDENTITY_FILE
from stratum.meta import catalog
from stratum.meta.records import (
    BucketRecord,
    ObjectRecord,
    UserRecord,
    VolumeRecord,
    decode_objects,
)
from stratum.meta.store import DB_NAMES, MetaStore, Tx
from stratum.util.clock import Clock
from stratum.util.fsio import fsync_dir, write_file_durably
from stratum.util.pacing import Pacer
from stratum.util.periodic import Periodic

log = logging.getLogger("stratum.backup")

BACKUP_DIR = "meta-backup"
PREV_DIR = BACKUP_DIR + ".prev"
TMP_PREFIX = BACKUP_DIR + ".tmp-"
DATA_FILE = "data.mdb"
STAMP_FILE = "stamp.json"
STAMP_FORMAT = "stratum-meta-backup"
STAMP_VERSION = 1
FIRST_DELAY = 10.0  # seconds after start: a copy soon, without slowing the start itself
_COUNTED = ("volumes", "objects", "buckets", "users")


@dataclass(frozen=True)
class BackupResult:
    """What one backup run did."""

    created: float
    txn: int
    written: tuple[Path, ...] = ()  # disks that now hold this copy
    failed: dict[str, str] = field(default_factory=dict)  # disk path -> why
    offline: dict[str, str] = field(default_factory=dict)  # disk path -> state: not tried
    skipped: bool = False  # nothing was written since the last copy
    counts: dict[str, int] = field(default_factory=dict)
    removed: tuple[Path, ...] = ()  # disks whose copies (no longer wanted there) were removed


# -- writing ---------------------------------------------------------------------------------


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


COPY_CHUNK = 1 << 20
SYNC_EVERY = 16 << 20  # bytes written between two fdatasyncs of a copy
COPY_IDLE_SHARE = 0.5  # of the disk's time a copy takes while no request arrives
COPY_BUSY_SHARE = 0.1  # ... while requests arrive


def paced_copy(
    source: Path,
    dest: Path,
    sleep: Callable[[float], None] = time.sleep,
    pacer: Pacer | None = None,
) -> None:
    """Copy ``source`` to ``dest`` durably, at most half of the disk's time, a tenth while
    requests arrive (blocking).

    A store of a million objects is gigabytes, copied to several disks. Copied at once and
    then fsynced, its dirty pages sat in front of every fsync the S3 requests made on those
    disks for as long as the flush took (PUTs at a million objects ran at a quarter of their
    rate while it did). Here every ``SYNC_EVERY`` bytes are written and fdatasynced, and the
    copy then pauses: as long as that took while no request arrives (on a fast disk it runs
    nearly at its speed, on a slow one, a USB disk, it leaves it free half of the time), nine
    times as long while they do (:mod:`stratum.util.pacing`)."""
    if pacer is None:
        # At most 10 s: a server stopping waits for the copy's thread.
        pacer = Pacer(busy_share=COPY_BUSY_SHARE, idle_share=COPY_IDLE_SHARE, longest=10.0)
    with source.open("rb") as src, dest.open("wb") as out:
        while True:
            pacer.begin()
            written = 0
            while written < SYNC_EVERY and (chunk := src.read(COPY_CHUNK)):
                out.write(chunk)
                written += len(chunk)
            out.flush()
            os.fdatasync(out.fileno())
            if written < SYNC_EVERY:
                return
            sleep(pacer.due())


def _count(path: Path) -> dict[str, int]:
    """Entries per counted sub-database of a copy; opening it also proves it is usable."""
    env = lmdb.open(str(path), readonly=True, lock=False, max_dbs=len(DB_NAMES) + 4)
    try:
        counts: dict[str, int] = {}
        with env.begin() as txn:
            for name in _COUNTED:
                try:
                    db = env.open_db(name.encode(), txn=txn, create=False)
                except lmdb.NotFoundError:
                    counts[name] = 0
                    continue
                counts[name] = int(txn.stat(db)["entries"])
        return counts
    finally:
        env.close()


def _settle(disk: Path) -> None:
    """Undo what a crash in an earlier run left on ``disk``."""
    final, prev = disk / BACKUP_DIR, disk / PREV_DIR
    if prev.exists():
        if final.exists():
            shutil.rmtree(prev)
        else:  # crashed between the two renames: the previous copy is the good one
            os.rename(prev, final)
            fsync_dir(disk)
    for entry in disk.glob(TMP_PREFIX + "*"):
        shutil.rmtree(entry, ignore_errors=True)


def _swap_in(disk: Path, tmp: Path) -> None:
    final, prev = disk / BACKUP_DIR, disk / PREV_DIR
    if final.exists():
        os.rename(final, prev)
    os.rename(tmp, final)
    fsync_dir(disk)
    shutil.rmtree(prev, ignore_errors=True)


def write_backups(
    meta: MetaStore,
    disks: Sequence[Path],
    created: float,
    txn: int,
    offline: Mapping[Path, str] | None = None,
    *,
    copies: int | None = None,
) -> BackupResult:
    """Copy the store once and install the copy on ``copies`` usable disks, the first in the
    order of ``disks`` (None: on every usable disk) (blocking).

    Each disk is handled on its own: one that fails is logged in the result, keeps its
    previous copy, and the next disk in order is tried in its place. Disks in ``offline``
    (path -> state) are not touched at all, not even looked at: I/O on a failed zpool can
    block.
    """
    token = f"{int(created * 1000)}"
    offline = offline or {}
    wanted = len(disks) if copies is None else copies
    failed: dict[str, str] = {}
    staged: list[tuple[Path, Path]] = []
    source: Path | None = None
    counts: dict[str, int] = {}
    for disk in disks:
        if len(staged) >= wanted:
            break
        if disk in offline:
            continue
        if not (disk / IDENTITY_FILE).is_file():
            failed[str(disk)] = "not a usable disk (no identity file)"
            continue
        tmp = disk / f"{TMP_PREFIX}{token}"
        try:
            _settle(disk)
            tmp.mkdir()
            if source is None:
                meta.copy_to(tmp)
                counts = _count(tmp)
                _fsync_file(tmp / DATA_FILE)
            else:
                paced_copy(source / DATA_FILE, tmp / DATA_FILE)
            stamp = {
                "format": STAMP_FORMAT,
                "version": STAMP_VERSION,
                "created": created,
                "txn": txn,
                **counts,
            }
            write_file_durably(tmp / STAMP_FILE, json.dumps(stamp).encode())
            fsync_dir(tmp)
        except (OSError, lmdb.Error) as exc:
            failed[str(disk)] = str(exc)
            shutil.rmtree(tmp, ignore_errors=True)
            continue
        source = source or tmp
        staged.append((disk, tmp))
    written: list[Path] = []
    for disk, tmp in staged:  # every copy is complete before any old one goes
        try:
            _swap_in(disk, tmp)
        except OSError as exc:
            failed[str(disk)] = str(exc)
            shutil.rmtree(tmp, ignore_errors=True)
            continue
        written.append(disk)
    skipped_offline = {str(d): offline[d] for d in disks if d in offline}
    return BackupResult(created, txn, tuple(written), failed, skipped_offline, counts=counts)


def backup_copies(configured: int, parity_shards: Iterable[int], disks: int) -> int:
    """How many disks get a copy: ``configured``, or when 0 the largest ``parity_shards`` of
    the tiers plus one (so the loss of as many disks as erasure coding survives leaves one);
    at least 1, at most ``disks``."""
    wanted = configured or max(parity_shards, default=0) + 1
    return max(1, min(wanted, disks))


def choose_disks(
    disks: Sequence[Path],
    holders: Collection[Path] = (),
    tier_of: Mapping[Path, str] | None = None,
) -> list[Path]:
    """``disks`` in the order they should get a copy: first the ``holders`` (the disks that
    hold the newest copy: each run refreshes the same disks), then the others; within each,
    the disk of the tier that has the fewest before it, then the disks' order."""
    tier_of = tier_of or {}
    left = list(disks)
    per_tier: dict[str, int] = {}
    order: list[Path] = []
    while left:
        best = min(
            left,
            key=lambda d: (d not in holders, per_tier.get(tier_of.get(d, ""), 0), disks.index(d)),
        )
        left.remove(best)
        order.append(best)
        tier = tier_of.get(best, "")
        per_tier[tier] = per_tier.get(tier, 0) + 1
    return order


def newest_holders(copies: Sequence[BackupCopy]) -> set[Path]:
    """The disks that hold the newest of ``copies`` (as :func:`find_backups` lists them)."""
    if not copies:
        return set()
    newest = max(copy.created for copy in copies)
    return {copy.path.parent for copy in copies if copy.created == newest}


def remove_copies(disk: Path) -> bool:
    """Remove every copy on ``disk``, each stamp first: a crash halfway leaves nothing that
    looks complete (blocking). True when there was one."""
    found = False
    for path in sorted(disk.glob(BACKUP_DIR + "*")):
        found = True
        if not path.is_dir():  # not ours to have made, but in the way of a copy's name
            path.unlink()
            continue
        with contextlib.suppress(FileNotFoundError):
            (path / STAMP_FILE).unlink()
        fsync_dir(path)
        shutil.rmtree(path)
    if found:
        fsync_dir(disk)
    return found


def refresh_backups(
    meta: MetaStore,
    disks: Sequence[Path],
    created: float,
    txn: int,
    offline: Mapping[Path, str],
    *,
    copies: int,
    tier_of: Mapping[Path, str] | None = None,
) -> BackupResult:
    """One run of the schedule (blocking): choose the disks (:func:`choose_disks`), write the
    copy to ``copies`` of them, and when all of those were written remove the copies on the
    other online disks."""
    online = [d for d in disks if d not in offline]
    order = choose_disks(online, newest_holders(find_backups(online)), tier_of)
    result = write_backups(
        meta, [*order, *(d for d in disks if d in offline)], created, txn, offline, copies=copies
    )
    if not result.written or len(result.written) < min(copies, len(online)):
        return result  # the old copies may be all there is of some disks' worth: keep them
    removed: list[Path] = []
    for disk in online:
        if disk in result.written or not (disk / IDENTITY_FILE).is_file():
            continue  # without its identity file it may be an empty mount point: leave it
        try:
            if remove_copies(disk):
                removed.append(disk)
        except OSError as exc:
            result.failed[str(disk)] = f"removing its old copy: {exc}"
    return dataclasses.replace(result, removed=tuple(removed))


class MetaBackup:
    """Runs :func:`refresh_backups` on a schedule (see the module docstring).

    ``copies``: how many disks get a copy (:func:`backup_copies`); None: every disk.
    ``tier_of`` names each disk's tier, so the copies spread over the tiers.
    ``disk_state(path)`` says what the disk probes last found for a disk: "online", or
    "offline: <why>"; offline disks are left out of the copy. Without it every disk is
    tried."""

    def __init__(
        self,
        meta: MetaStore,
        disks: Sequence[Path],
        clock: Clock,
        *,
        interval: float,
        executor: concurrent.futures.Executor,
        copies: int | None = None,
        tier_of: Mapping[Path, str] | None = None,
        first_delay: float = FIRST_DELAY,
        disk_state: Callable[[Path], str] | None = None,
    ) -> None:
        self.meta = meta
        self.disks = tuple(disks)
        self.copies = len(self.disks) if copies is None else copies
        self.tier_of = dict(tier_of or {})
        self.disk_state = disk_state
        self.clock = clock
        self.interval = interval
        self.executor = executor
        self.last: BackupResult | None = None
        self._due = -math.inf  # clock time of the next scheduled copy
        self._schedule = Periodic(
            "meta-backup",
            self._scheduled,
            interval=max(1.0, min(60.0, interval / 10)),  # how often to look whether one is due
            first_delay=first_delay,
            log=log,
            what="metadata backup",
        )
        self._inflight: asyncio.Future[BackupResult] | None = None
        self._lock = asyncio.Lock()

    def _offline(self) -> dict[Path, str]:
        """Disks the probes last found offline; read on the loop, where the probes write."""
        if self.disk_state is None:
            return {}
        states = {d: self.disk_state(d) for d in self.disks}
        return {d: state for d, state in states.items() if state != "online"}

    async def start(self) -> None:
        """A copy ``first_delay`` seconds from now, then one every ``interval``; but when
        the disks a run would write already hold complete copies younger than ``interval`` (a
        restart), the first is due an interval after the oldest of them, as if the server had
        run on: a restart of a large store must not copy it all again (1.6 GB a disk at a
        million objects) while it serves."""
        offline = self._offline()
        online = [d for d in self.disks if d not in offline]
        loop = asyncio.get_running_loop()
        copies = await loop.run_in_executor(self.executor, find_backups, online)
        newest: dict[Path, float] = {}
        for copy in copies:  # newest first
            newest.setdefault(copy.path.parent, copy.created)
        chosen = choose_disks(online, newest_holders(copies), self.tier_of)[: self.copies]
        if chosen and all(disk in newest for disk in chosen):
            due = min(newest[disk] for disk in chosen) + self.interval
            if due > self.clock.now():
                self._due = due
                log.info("the disks for metadata backups have a recent one: the next in %.0f s",
                         due - self.clock.now())  # fmt: skip
        self._schedule.start()

    async def stop(self) -> None:
        await self._schedule.stop()
        if self._inflight is not None:  # the store must not close under a copy
            await asyncio.wait([self._inflight])

    async def backup_now(self, *, force: bool = False) -> BackupResult:
        """Copy the store to ``copies`` online disks now, unless nothing was written since the
        last copy and the disks that got it are still online and as many as wanted (a disk back
        online gets the copy it missed when copies are wanted on more disks than had one)."""
        async with self._lock:
            created = self.clock.now()
            txn = int(self.meta.read(lambda tx: tx.txn.id()))
            offline = self._offline()
            wanted = min(self.copies, len(self.disks) - len(offline))
            last = self.last
            if (
                not force
                and last is not None
                and last.txn == txn
                and len(last.written) >= wanted
                and not any(d in offline for d in last.written)
            ):
                return BackupResult(created, txn, skipped=True)
            loop = asyncio.get_running_loop()
            self._inflight = loop.run_in_executor(
                self.executor,
                functools.partial(
                    refresh_backups,
                    self.meta,
                    self.disks,
                    created,
                    txn,
                    offline,
                    copies=self.copies,
                    tier_of=self.tier_of,
                ),
            )
            try:
                # Shielded: the copy runs on in its thread anyway; stop() waits for it.
                result = await asyncio.shield(self._inflight)
            finally:
                if self._inflight.done():
                    self._inflight = None
            self.last = result
        if result.failed:
            for disk, why in result.failed.items():
                log.warning("metadata backup to %s failed: %s", disk, why)
        for disk, state in result.offline.items():
            log.info("metadata backup skips %s (%s)", disk, state)
        if result.removed:
            log.info("metadata backup removed the copies no longer wanted on %s",
                     ", ".join(map(str, result.removed)))  # fmt: skip
        if result.written:
            log.info("metadata backup written to %d disk(s)", len(result.written))
        else:
            log.error("metadata backup could not be written to any disk")
        return result

    async def _scheduled(self) -> None:
        if self.clock.now() < self._due:
            return
        try:
            await self.backup_now()
        finally:  # a failed copy is tried again an interval later, as a good one would be
            self._due = self.clock.now() + self.interval


# -- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupCopy:
    """A complete copy found on a disk."""

    path: Path
    created: float
    stamp: dict[str, Any]


def find_backups(disks: Sequence[Path]) -> list[BackupCopy]:
    """Every complete copy on ``disks``, newest first (blocking)."""
    found: list[BackupCopy] = []
    for disk in disks:
        try:
            candidates = sorted(disk.glob(BACKUP_DIR + "*"))
        except OSError:
            continue
        for path in candidates:
            try:
                stamp = json.loads((path / STAMP_FILE).read_text())
                if stamp.get("format") != STAMP_FORMAT or int(stamp["version"]) > STAMP_VERSION:
                    continue
                if not (path / DATA_FILE).is_file():
                    continue
                found.append(BackupCopy(path, float(stamp["created"]), stamp))
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue
    found.sort(key=lambda c: c.created, reverse=True)
    return found


class BackupView:
    """A copy opened read-only, for recovery. Use as a context manager (blocking)."""

    def __init__(self, copy: BackupCopy) -> None:
        self.copy = copy
        self.created = copy.created
        self._env: Any = lmdb.open(
            str(copy.path), readonly=True, lock=False, max_dbs=len(DB_NAMES) + 4
        )
        try:
            self._txn: Any = self._env.begin()
            dbs: dict[str, Any] = {}
            for name in DB_NAMES:
                with contextlib.suppress(lmdb.NotFoundError):
                    dbs[name] = self._env.open_db(name.encode(), txn=self._txn, create=False)
            self.tx = Tx(self._txn, dbs)
        except BaseException:
            self._env.close()
            raise

    def __enter__(self) -> BackupView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._env is not None:
            self._txn.abort()
            self._env.close()
            self._env = None

    def _has(self, db: str) -> bool:
        return db in self.tx.dbs

    def get(self, db: str, key: bytes) -> bytes | None:
        return self.tx.get(db, key) if self._has(db) else None

    def items(self, db: str) -> Iterator[tuple[bytes, bytes]]:
        if not self._has(db):
            return
        for key, value in self.tx.cursor(db):
            yield bytes(key), bytes(value)

    def buckets(self) -> list[BucketRecord]:
        return [BucketRecord.decode(v) for _k, v in self.items("buckets")]

    def users(self) -> list[UserRecord]:
        return [UserRecord.decode(v) for _k, v in self.items("users")]

    def volume(self, volume_id: str) -> VolumeRecord | None:
        raw = self.get("volumes", volume_id.encode())
        return None if raw is None else VolumeRecord.decode(raw)

    def in_gc(self, volume_id: str) -> bool:
        return self.get("gc", volume_id.encode()) is not None

    def object(self, bucket: str, key: str) -> ObjectRecord | None:
        return catalog.get_object(self.tx, bucket, key) if self._has("objects") else None

    def objects(self) -> Iterator[tuple[str, ObjectRecord]]:
        """Every (bucket, object record) of the copy."""
        for dbkey, raw in self.items("objects"):
            bucket = dbkey.split(catalog.SEP, 1)[0].decode("utf-8", "surrogateescape")
            for record in decode_objects(raw):
                yield bucket, record

    def upload_ids(self) -> set[str]:
        """Ids of the multipart uploads in progress when the copy was taken."""
        return {k.split(b"\x00", 1)[-1].decode() for k, _v in self.items("uploads")}
