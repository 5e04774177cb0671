"""What each tier held over time, for the console's charts: a small ring of samples in LMDB.

The primary process takes a sample every ``[console] history_interval`` (a
:class:`~stratum.util.periodic.Periodic`): for each tier the objects, the object bytes
("logical"), the bytes they take on disk with their parity or copies ("raw", from each
volume's layout), and the tier's used and total capacity; plus the running count of tier
moves in each direction, read from the decision log since the previous sample. Each sample
goes into up to three rings, so the history stays small whatever the uptime:

=====  ======================  ==========  ==============================
ring   one sample per          kept        covers
=====  ======================  ==========  ==============================
``m``  ``history_interval``    576         2 days at the default 5 minutes
``h``  hour                    2,160       90 days
``d``  day                     1,100       3 years
=====  ======================  ==========  ==============================

Stored in LMDB's ``console`` database (format version 1)::

    key    b"h" + <ring, 1 byte: m|h|d> + <sample time in ms, 8 bytes big-endian>
    value  JSON {"v": 1, "at": <clock seconds>,
                 "tiers": {<tier>: {"objects", "bytes", "raw", "used", "total"}},
                 "moves": {"<from>-><to>": <moves since the history began>},
                 "cursor": <hex of the last decision-log key counted>}

The census also counts objects and bytes per bucket; that is kept in memory only (the
buckets page shows the last count).

The census walks every volume record, about 10 s of a core a million objects, so it gives
way to requests between pages (:mod:`stratum.util.pacing`: a tenth of the time while they
arrive) and is spaced as segment compaction's walk is: a sample's walk waits at least
:data:`WALK_SHARE` times as long as the last walk worked (samples in between keep their
cadence, with fresh capacities and the last walk's counts), and a store of more than
:data:`QUICK_WALK` volumes is first walked :data:`FIRST_WALK_DELAY` seconds after start, not
while clients reconnect (the tiers' figures meanwhile are the last stored sample's).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stratum.meta import catalog
from stratum.meta.records import VolumeRecord
from stratum.meta.store import MetaStore, Tx
from stratum.node import Node
from stratum.tiering.decisions import decisions_after
from stratum.util.pacing import Pacer
from stratum.util.periodic import Periodic

log = logging.getLogger("stratum.console")

HISTORY_VERSION = 1
PREFIX = b"h"
RINGS: dict[str, tuple[float, int]] = {  # ring -> (seconds per sample, samples kept)
    "m": (0.0, 576),  # every sample (history_interval)
    "h": (3600.0, 24 * 90),
    "d": (86400.0, 1100),
}
CENSUS_PAGE = 1000  # volumes per read transaction, and per stretch of a paced walk
WALK_SHARE = 20  # a census walk waits at least this many times as long as the last one took
QUICK_WALK = 100_000  # volumes a store may hold for its first census to run at start
FIRST_WALK_DELAY = 60.0  # seconds after start of a larger store's first census
MULTIPART = "multi"  # a completed multipart upload's layout: its parts are volumes of their own


@dataclass
class TierFigures:
    objects: int = 0
    bytes: int = 0  # object bytes
    raw: int = 0  # on disk, with parity shards or copies
    used: int = 0  # the tier's filesystems
    total: int = 0

    @property
    def free(self) -> int:
        return max(0, self.total - self.used)


@dataclass
class Census:
    """Objects and bytes per tier and per bucket, as counted from the volume records."""

    tiers: dict[str, TierFigures] = field(default_factory=dict)
    buckets: dict[str, tuple[int, int]] = field(default_factory=dict)  # (objects, bytes)


def raw_bytes(volume: VolumeRecord) -> int:
    """Bytes a volume takes on its tier's disks: erasure-coded stripes with their parity, or
    each copy of a small object; a cold object once (remotely); a multipart object nothing
    (its parts are counted as volumes of their own)."""
    loc = volume.location
    if volume.layout == "ec":
        k, m = int(loc.get("data_shards", 1)), int(loc.get("parity_shards", 0))
        block = int(loc.get("block_size", 1)) or 1
        full, rest = divmod(volume.size, k * block)  # the last stripe's blocks are shorter
        return (full * block + math.ceil(rest / k)) * (k + m)
    if volume.layout == "seg":
        return volume.size * len(loc.get("replicas", [])) or volume.size
    if volume.layout == MULTIPART:
        return 0
    return volume.size


class CensusStopped(Exception):
    """The census was asked to stop before it had walked every volume."""


def count(
    meta: MetaStore,
    page: int = CENSUS_PAGE,
    stop: Callable[[], bool] = lambda: False,
    pacer: Pacer | None = None,
) -> Census:
    """Walk every volume record (blocking: run it in an executor; short transactions).

    Objects per tier: volumes, less the parts of completed multipart uploads (each upload is
    one object); parts of uploads still in progress count until they complete. ``stop`` is
    asked every page: when it says so the walk raises :class:`CensusStopped` (cancelling the
    task that waits for it does not stop its thread, and a server stopping waits for that).
    ``pacer`` paces the walk between pages (:mod:`stratum.util.pacing`)."""
    census = Census()
    for n, volume in enumerate(catalog.each_volume(meta, page, pacer)):
        if n % page == 0 and stop():
            raise CensusStopped
        tier = census.tiers.setdefault(volume.tier, TierFigures())
        objects, size = census.buckets.get(volume.bucket, (0, 0))
        if volume.layout == MULTIPART:
            parts = len(volume.location.get("parts", []))
            tier.objects += 1 - parts
            census.buckets[volume.bucket] = (objects + 1 - parts, size)
        else:
            tier.objects += 1
            tier.bytes += volume.size
            tier.raw += raw_bytes(volume)
            census.buckets[volume.bucket] = (objects + 1, size + volume.size)
    census.buckets.pop("", None)
    return census


# -- the rings --------------------------------------------------------------------------


def _key(ring: str, at: float) -> bytes:
    return PREFIX + ring.encode() + struct.pack(">Q", int(at * 1000))


def read_ring(tx: Tx, ring: str, since: float = 0.0) -> list[dict[str, Any]]:
    """The samples of one ring from ``since`` on, oldest first."""
    cur = tx.cursor("console")
    start = _key(ring, max(0.0, since))
    end = PREFIX + ring.encode() + b"\xff" * 8
    out: list[dict[str, Any]] = []
    if not cur.set_range(start):
        return out
    for key, raw in cur:
        if bytes(key) > end:
            break
        out.append(json.loads(bytes(raw)))
    return out


def _last_in_ring(tx: Tx, ring: str) -> tuple[bytes, bytes] | None:
    """The newest (key, value) of a ring."""
    head = PREFIX + ring.encode()
    cur = tx.cursor("console")
    found = cur.prev() if cur.set_range(head + b"\xff" * 8 + b"\x00") else cur.last()
    if not found or not bytes(cur.key()).startswith(head):
        return None
    return bytes(cur.key()), bytes(cur.value())


def last_sample(tx: Tx) -> dict[str, Any] | None:
    """The newest sample of all."""
    found = _last_in_ring(tx, "m")
    if found is None:
        return None
    value: dict[str, Any] = json.loads(found[1])
    return value


def _moves_since(tx: Tx, cursor: bytes) -> tuple[dict[str, int], bytes]:
    """Moves done per direction in the decision log after ``cursor``; the new cursor."""
    moves: dict[str, int] = {}
    for key, record in decisions_after(tx, cursor):
        if record.get("outcome") == "moved":
            path = f"{record['from']}->{record['to']}"
            moves[path] = moves.get(path, 0) + 1
        cursor = key
    return moves, cursor


def store_sample(tx: Tx, at: float, tiers: Mapping[str, TierFigures]) -> dict[str, Any]:
    """Add a sample at ``at`` to the rings it belongs in (one write transaction)."""
    previous = last_sample(tx)
    totals: dict[str, int] = dict(previous["moves"]) if previous else {}
    cursor = bytes.fromhex(previous["cursor"]) if previous else b""
    new, cursor = _moves_since(tx, cursor)
    for path, n in new.items():
        totals[path] = totals.get(path, 0) + n
    sample = {
        "v": HISTORY_VERSION,
        "at": at,
        "tiers": {name: _figures(t) for name, t in sorted(tiers.items())},
        "moves": totals,
        "cursor": cursor.hex(),
    }
    encoded = json.dumps(sample, separators=(",", ":")).encode()
    for ring, (step, keep) in RINGS.items():
        newest = _newest(tx, ring)
        if step and newest is not None and int(newest // step) == int(at // step):
            continue
        tx.put("console", _key(ring, at), encoded)
        _prune(tx, ring, keep)
    return sample


def _figures(t: TierFigures) -> dict[str, int]:
    return {"objects": t.objects, "bytes": t.bytes, "raw": t.raw, "used": t.used, "total": t.total}


def _newest(tx: Tx, ring: str) -> float | None:
    found = _last_in_ring(tx, ring)
    return None if found is None else float(struct.unpack(">Q", found[0][2:])[0]) / 1000


def _prune(tx: Tx, ring: str, keep: int) -> None:
    cur = tx.cursor("console")
    head = PREFIX + ring.encode()
    keys: list[bytes] = []
    if cur.set_range(head):
        for key in cur.iternext(values=False):
            if not bytes(key).startswith(head):
                break
            keys.append(bytes(key))
    for key in keys[: max(0, len(keys) - keep)]:
        tx.delete("console", key)


# -- the sampler ------------------------------------------------------------------------


class History:
    """Takes the samples (the primary process) and keeps the last census for the pages."""

    def __init__(self, node: Node, interval: float) -> None:
        self.node = node
        self.meta = node.meta
        self.clock = node.clock
        self.census = Census()
        self.counted_at = 0.0
        self._stopping = threading.Event()
        self._walk_took = 0.0  # seconds the last census walk took
        self._next_walk = -math.inf  # time.monotonic() before which no walk starts
        self._periodic = Periodic(
            "console-history",
            self.sample,
            interval=interval,
            first_delay=0,
            log=log,
            what="console history sample",
        )

    def start(self) -> None:
        """Sample every interval; a large store's first census waits (module docstring),
        its tiers' figures meanwhile the last stored sample's."""
        volumes, last = self.meta.read(_volumes_and_last_sample)
        if volumes > QUICK_WALK:
            self._next_walk = time.monotonic() + FIRST_WALK_DELAY
            if last is not None:
                self.census.tiers = {
                    name: TierFigures(**{k: int(v) for k, v in figures.items()})
                    for name, figures in last.get("tiers", {}).items()
                }
                self.counted_at = float(last.get("at", 0.0))
        self._periodic.start()

    async def stop(self) -> None:
        self._stopping.set()
        await self._periodic.stop()

    async def sample(self, *, force: bool = False) -> dict[str, Any]:
        """Store a sample; walk the volumes for it unless the last walk was too recent
        (module docstring) and not ``force``."""
        loop = asyncio.get_running_loop()
        if force or time.monotonic() >= self._next_walk:
            pacer = Pacer()
            walk = functools.partial(count, self.meta, stop=self._stopping.is_set, pacer=pacer)
            census = await loop.run_in_executor(None, walk)
            self._walk_took = pacer.worked  # its work, not its pauses for requests
            self._next_walk = time.monotonic() + WALK_SHARE * self._walk_took
            self.counted_at = self.clock.now()
        else:
            census = self.census
        for name, store in self.node.tiers.items():
            capacity = await loop.run_in_executor(None, store.capacity)
            figures = census.tiers.setdefault(name, TierFigures())
            figures.used, figures.total = capacity.used, capacity.total
        self.census = census
        return await self.meta.write(
            functools.partial(store_sample, at=self.clock.now(), tiers=census.tiers)
        )

    def ring(self, ring: str, since: float = 0.0) -> list[dict[str, Any]]:
        return self.meta.read(functools.partial(read_ring, ring=ring, since=since))


def _volumes_and_last_sample(tx: Tx) -> tuple[int, dict[str, Any] | None]:
    """How many volume records the store holds (LMDB's count, no walk), and the newest
    sample stored."""
    return int(tx.txn.stat(tx.dbs["volumes"])["entries"]), last_sample(tx)
