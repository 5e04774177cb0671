"""Which volumes the server's worker processes are reading, for the garbage collector.

In one process, :class:`~stratum.service.objects.ObjectService` counts its reads in flight and
never frees a volume being read. With several server processes (``server.workers``) the
primary frees what every process retires, so each worker publishes its reads in flight in a
table the primary reads before freeing anything.

File ``<data_dir>/run/reading-<worker index>.v1`` (the format version is in the name: the
table is not data, lives only as long as the processes, and is recreated at every start):
:data:`SLOTS` slots of 16 bytes; a slot holds the 16 raw bytes of a volume id being read, or
zeros. Each worker writes only its own file, through ``mmap`` (a read costs two 16-byte memory
writes, no system call); a reader of the tables may see a torn slot, which at worst keeps some
other volume a little longer.

The race this leaves: a worker finds a volume in LMDB, the primary retires and frees it, and
only then the worker enters it here. The primary therefore also waits a grace period after
it first sees a volume retired (``GarbageCollector.gc_grace``), far longer than the moment
between a lookup and the start of its read.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

FORMAT = 1
SLOTS = 4096  # reads in flight per worker that are tracked; more are covered by the grace
SLOT = 16
_EMPTY = bytes(SLOT)


def table_path(run_dir: Path, index: int) -> Path:
    return run_dir / f"reading-{index}.v{FORMAT}"


class ReadingTable:
    """One worker's table of volumes being read (see the module docstring)."""

    def __init__(self, path: Path, slots: int = SLOTS) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, slots * SLOT)
            self._map = mmap.mmap(fd, slots * SLOT)
        finally:
            os.close(fd)
        self.path = path
        self._free = list(range(slots - 1, -1, -1))

    def enter(self, volume_id: str) -> int:
        """Mark ``volume_id`` as being read; returns the slot for :meth:`leave` (-1: full)."""
        if not self._free:
            return -1
        slot = self._free.pop()
        self._map[slot * SLOT : (slot + 1) * SLOT] = bytes.fromhex(volume_id)
        return slot

    def leave(self, slot: int) -> None:
        if slot < 0:
            return
        self._map[slot * SLOT : (slot + 1) * SLOT] = _EMPTY
        self._free.append(slot)

    def close(self) -> None:
        self._map.close()
        self.path.unlink(missing_ok=True)


def volumes_being_read(run_dir: Path) -> set[str]:
    """Blocking: every volume id in the workers' tables."""
    out: set[str] = set()
    for path in run_dir.glob(f"reading-*.v{FORMAT}"):
        try:
            raw = path.read_bytes()
        except OSError:
            continue
        if not raw.strip(b"\0"):
            continue
        view = memoryview(raw)
        for offset in range(0, len(raw) - SLOT + 1, SLOT):
            chunk = view[offset : offset + SLOT]
            if chunk != _EMPTY:
                out.add(chunk.hex())
    return out


def clear_tables(run_dir: Path) -> None:
    """At the primary's start: tables of processes of an earlier run are stale."""
    for path in run_dir.glob("reading-*"):
        path.unlink(missing_ok=True)
