"""Reading segment records back: from the page cache on the event loop when possible.

:meth:`SegmentReader.get` reads a whole record (header, meta, payload) with one pread in the
executor, checks header CRC, volume id, sizes and payload CRC, and falls back to the next
replica, reporting the damaged one (log warning plus the ``on_damage`` callback). A record
whose bytes are in the page cache is read on the event loop instead: ``preadv(RWF_NOWAIT)`` on
a segment file kept open fails with EAGAIN rather than wait for a disk, so the loop never
blocks, and a hit saves the hand-off to an executor thread and back, which costs more than the
read itself. Anything but a whole, intact first replica takes the executor path, which reports
damage and tries the other replicas.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from pathlib import Path

from stratum.block.errors import VolumeUnreadable
from stratum.block.segments_format import (
    RecordMismatch,
    Replica,
    SegLocation,
    check_record,
    read_full,
    segment_name,
)
from stratum.util.fsio import pread_cached

log = logging.getLogger("stratum.block.segments")

_READ_FDS = 64  # segment files kept open for reads from the page cache (64 MiB each)

DamageCallback = Callable[[SegLocation, Replica, str], None]
Damage = list[tuple[Replica, str]]  # replicas found missing or corrupt, and why


class _BadReplica(Exception):
    """A replica that cannot be read back intact; the message says why."""


class SegmentReader:
    """Reads and checks replicas of the disks in ``seg_dirs`` (disk id -> segment directory).

    ``executor`` runs the blocking reads; ``on_damage(loc, replica, reason)`` is called on the
    event loop for every replica found missing or corrupt.
    """

    def __init__(
        self,
        seg_dirs: Mapping[str, Path],
        executor: Executor,
        on_damage: DamageCallback | None,
    ) -> None:
        self._seg_dirs = dict(seg_dirs)
        self._executor = executor
        self._on_damage = on_damage
        self._closed = False
        # (disk id, segment) -> read-only fd, for reads from the page cache on the loop; only
        # the event loop's thread touches it, so an fd is never closed under a reader.
        self._read_fds: OrderedDict[tuple[str, int], int] = OrderedDict()

    def close(self) -> None:
        """Close the files kept open for reads (on the event loop's thread)."""
        self._closed = True
        while self._read_fds:
            os.close(self._read_fds.popitem()[1])

    def forget(self, key: tuple[str, int]) -> None:
        """Close the file kept open for a segment about to be removed (on the loop's thread)."""
        fd = self._read_fds.pop(key, None)
        if fd is not None:
            os.close(fd)

    def close_unlinked(self) -> None:
        """Close the kept files another process removed (on the loop's thread): an open file
        keeps its blocks allocated."""
        for key, fd in list(self._read_fds.items()):
            try:
                gone = os.fstat(fd).st_nlink == 0
            except OSError:
                gone = True
            if gone:
                self.forget(key)

    async def get(self, loc: SegLocation) -> bytes:
        """The payload from the first intact replica; damage is reported, not raised.

        Raises :class:`VolumeUnreadable` when no replica is intact.
        """
        cached = self._read_cached(loc)
        if cached is not None:
            return cached
        loop = asyncio.get_running_loop()
        found, damage, kept = await loop.run_in_executor(self._executor, self._read_first, loc)
        self._report(loc, damage)
        if kept is not None:
            self._keep_fd(*kept)
        if found is None:
            raise unreadable(loc, damage)
        return found[1]

    async def read_all(
        self, loc: SegLocation
    ) -> tuple[list[Replica], tuple[bytes, bytes] | None, Damage]:
        """Check every replica: (the intact ones, the (meta, payload) of one of them or None,
        the damage found, already reported)."""
        loop = asyncio.get_running_loop()
        good, intact, damage = await loop.run_in_executor(self._executor, self._read_every, loc)
        self._report(loc, damage)
        return good, intact, damage

    # --- reading from the page cache (on the event loop) -----------------------------------

    def _read_cached(self, loc: SegLocation) -> bytes | None:
        """The payload of ``loc`` if its first replica is intact and in the page cache; else
        None (not cached, no open fd yet, damaged, anything odd: the executor path decides)."""
        if not loc.replicas:
            return None
        first = loc.replicas[0]
        fd = self._read_fds.get((first.disk_id, first.segment))
        if fd is None:
            return None
        self._read_fds.move_to_end((first.disk_id, first.segment))
        raw = pread_cached(fd, loc.record_size, first.offset)
        if raw is None:
            return None
        try:
            return check_record(memoryview(raw), loc, first.offset)[1]
        except RecordMismatch:
            return None

    def _keep_fd(self, key: tuple[str, int], fd: int) -> None:
        """Keep an fd the executor opened for later reads on the loop (LRU, a few dozen)."""
        if key in self._read_fds or self._closed:
            os.close(fd)
            return
        self._read_fds[key] = fd
        if len(self._read_fds) > _READ_FDS:
            os.close(self._read_fds.popitem(last=False)[1])

    # --- reading (in the executor) --------------------------------------------------------

    def _read_replica(
        self, loc: SegLocation, replica: Replica, keep: bool = False
    ) -> tuple[tuple[bytes, bytes], int | None]:
        """(meta bytes, payload) of one replica, checked against ``loc``, and with ``keep``
        the fd the replica was read through, left open; else _BadReplica."""
        seg_dir = self._seg_dirs.get(replica.disk_id)
        if seg_dir is None:
            raise _BadReplica(f"disk {replica.disk_id} is not in this pool")
        path = seg_dir / segment_name(replica.segment)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                raw = read_full(fd, loc.record_size, replica.offset)
            except BaseException:
                os.close(fd)
                raise
        except OSError as exc:
            raise _BadReplica(f"{path}: {exc.strerror or exc}") from exc
        try:
            found = check_record(raw, loc, replica.offset)
        except RecordMismatch as exc:
            os.close(fd)
            raise _BadReplica(f"{path} at offset {replica.offset}: {exc}") from exc
        if keep:
            return found, fd
        os.close(fd)
        return found, None

    def _read_first(
        self, loc: SegLocation
    ) -> tuple[
        tuple[bytes, bytes] | None, list[tuple[Replica, str]], tuple[tuple[str, int], int] | None
    ]:
        """The first intact replica, the damage met on the way, and the first replica's file
        opened for :meth:`_read_cached` when it was read intact."""
        damage: list[tuple[Replica, str]] = []
        for index, replica in enumerate(loc.replicas):
            try:
                found, fd = self._read_replica(loc, replica, keep=index == 0)
            except _BadReplica as exc:
                damage.append((replica, str(exc)))
                continue
            kept = None if fd is None else ((replica.disk_id, replica.segment), fd)
            return found, damage, kept
        return None, damage, None

    def _read_every(
        self, loc: SegLocation
    ) -> tuple[list[Replica], tuple[bytes, bytes] | None, list[tuple[Replica, str]]]:
        good: list[Replica] = []
        intact: tuple[bytes, bytes] | None = None
        damage: list[tuple[Replica, str]] = []
        for replica in loc.replicas:
            try:
                found, _fd = self._read_replica(loc, replica)
            except _BadReplica as exc:
                damage.append((replica, str(exc)))
                continue
            good.append(replica)
            intact = intact or found
        return good, intact, damage

    def _report(self, loc: SegLocation, damage: list[tuple[Replica, str]]) -> None:
        for replica, reason in damage:
            log.warning("volume %s: damaged replica %s: %s", loc.volume_id, replica, reason)
            if self._on_damage is not None:
                self._on_damage(loc, replica, reason)


def unreadable(loc: SegLocation, damage: Damage) -> VolumeUnreadable:
    reasons = "; ".join(reason for _replica, reason in damage) or "no replicas"
    return VolumeUnreadable(f"volume {loc.volume_id}: no intact replica left ({reasons})")
