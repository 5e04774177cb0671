"""What the metadata says about segment records: the walk behind compaction and accounting.

:func:`walk` reads every volume and every queued garbage volume, a page per read transaction
and giving way to requests between pages (no snapshot: see there), and counts, per segment
file, the bytes of the records they point at,
and per disk the bytes of live volumes (segment records and, about, shard files); for the
segments it is asked about it also says which volume points at each record, and where in the
volume's location record (a plain volume's own, a multipart part's, a manifest's). The other
functions answer the point questions compaction asks once it has read a record: does the
volume still point at it (:func:`still_live`), is a record the walk found nobody pointing at
a stray copy of a volume the metadata knows (:func:`known_elsewhere`) that its own volume
does not name either (:func:`names_replica`).
"""

from __future__ import annotations

import functools
import math
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from stratum.block.segments import SegmentKey
from stratum.block.segments_format import RecordHeader, Replica, SegLocation
from stratum.meta import catalog
from stratum.meta.records import VolumeRecord
from stratum.meta.store import MetaStore, Tx
from stratum.service.objects import MULTI
from stratum.util.pacing import Pacer

WALK_YIELD = 256  # volumes a walk decodes between two offers of the GIL
WALK_PAGE = 1000  # volumes per read transaction of a walk, and per stretch of its pacing

Path_ = tuple[Any, ...]  # where a segment location sits in a volume's location record


@dataclass(frozen=True)
class Ref:
    """A place where the metadata points at a record."""

    volume_id: str  # the volume record (or garbage entry) holding the location
    path: Path_  # () its location; ("parts", i): a multipart part's; ("manifest",)
    location: dict[str, Any]  # the segment location record, as walked
    retired: bool  # in the garbage queue: being freed, not moved


@dataclass
class Walk:
    """What one walk of the metadata found."""

    live: Counter[SegmentKey] = field(default_factory=Counter)  # referenced bytes per segment
    stored: Counter[str] = field(default_factory=Counter)  # disk id -> bytes of live volumes
    refs: dict[SegmentKey, dict[int, Ref]] = field(default_factory=dict)  # wanted segments only


def volume_locations(volume: VolumeRecord) -> Iterator[tuple[Path_, str, dict[str, Any]]]:
    """(path, layout, location) of every piece of a volume's data."""
    if volume.layout != MULTI:
        yield (), volume.layout, volume.location
        return
    for index, part in enumerate(volume.location.get("parts", [])):
        yield ("parts", index), part["layout"], part["location"]
    if "manifest" in volume.location:
        yield ("manifest",), "seg", volume.location["manifest"]


def location_at(volume: VolumeRecord, path: Path_) -> dict[str, Any] | None:
    """The segment location at ``path`` in a volume record, or None if there is none."""
    if not path:
        return volume.location if volume.layout == "seg" else None
    if volume.layout != MULTI:
        return None
    if path[0] == "manifest":
        found = volume.location.get("manifest")
        return found if isinstance(found, dict) else None
    parts = volume.location.get("parts", [])
    index = path[1]
    if index >= len(parts) or parts[index].get("layout") != "seg":
        return None
    found = parts[index].get("location")
    return found if isinstance(found, dict) else None


def put_location_at(volume: VolumeRecord, path: Path_, location: dict[str, Any]) -> None:
    if not path:
        volume.location = location
    elif path[0] == "manifest":
        volume.location["manifest"] = location
    else:
        volume.location["parts"][path[1]]["location"] = location


def shard_bytes(location: Mapping[str, Any]) -> int:
    """About what one shard file of an erasure-coded volume takes on its disk."""
    size, k = int(location["size"]), int(location["data_shards"])
    block = int(location["block_size"])
    stripes = math.ceil(size / (k * block)) if size else 0
    last = size - (stripes - 1) * k * block if stripes else 0
    body = (stripes - 1) * (block + 4) + math.ceil(last / k) + 4 if stripes else 0
    return body + 4096  # header (with the object's meta) and footer, one block at least


def walk(
    meta: MetaStore,
    wanted: set[SegmentKey],
    page: int = WALK_PAGE,
    pacer: Pacer | None = None,
) -> Walk:
    """Count what the metadata points at, and where, for the segments in ``wanted``
    (blocking). Live volumes first, then queued garbage, ``page`` records per read
    transaction, pausing between pages as ``pacer`` says (a walk of ten million volumes is
    minutes of a core: it gives way to requests, and one transaction held that long would
    keep LMDB from reusing any page freed meanwhile).

    Not a snapshot, then: a volume retired or moved while the walk runs may be counted
    twice (its segment looks fuller than it is: compacted later) or missed (its record
    looks unreferenced). Nothing is freed on the walk's word alone: a record the walk names
    no holder for is freed only if its own volume, read at that moment, does not name it
    either (:func:`names_replica`), and one it names is moved only if its volume still names
    it when the move commits (:func:`still_live`)."""
    found = Walk(refs={key: {} for key in wanted})
    for table, retired in (("volumes", False), ("gc", True)):
        after = ""
        while batch := meta.read(
            functools.partial(catalog.volume_page, after=after, limit=page, table=table)
        ):
            for count, (db_key, raw) in enumerate(batch):
                if count % WALK_YIELD == WALK_YIELD - 1:
                    time.sleep(0)  # let the event loop's thread have the GIL now and then
                _count(found, db_key, VolumeRecord.decode(raw), retired)
            after = batch[-1][0]
            if pacer is not None:
                pacer.pause_blocking()
    return found


def _count(found: Walk, db_key: str, volume: VolumeRecord, retired: bool) -> None:
    """Add one volume (or queued garbage volume) to a walk's figures."""
    for path, layout, location in volume_locations(volume):
        if layout == "ec" and not retired:
            each = shard_bytes(location)
            for disk_id in location.get("disks", []):
                found.stored[disk_id] += each
        if layout != "seg":
            continue
        loc = SegLocation.from_dict(location)
        for replica in loc.replicas:
            key = (replica.disk_id, replica.segment)
            found.live[key] += loc.record_size
            if not retired:
                found.stored[replica.disk_id] += loc.record_size
            if key in found.refs:
                holder = volume.volume_id if not retired else db_key
                found.refs[key][replica.offset] = Ref(holder, path, location, retired)


def names_replica(
    tx: Tx, header: RecordHeader, meta: Mapping[str, Any] | None, replica: Replica
) -> bool:
    """Whether the record's own volume (live, queued as garbage, or the volume a tier move's
    copy was made for) names ``replica`` as one of its copies now: a point read that a walk
    of the whole metadata, which is no snapshot, cannot stand in for."""
    ids = [header.volume_id]
    moved_from = (meta or {}).get("moved_from")
    if isinstance(moved_from, str):
        ids.append(moved_from)
    for volume_id in ids:
        for table in ("volumes", "gc"):
            raw = tx.get(table, volume_id.encode())
            if raw is None:
                continue
            for _path, layout, location in volume_locations(VolumeRecord.decode(raw)):
                if layout == "seg" and any(
                    tuple(r) == tuple(replica) for r in location.get("replicas", [])
                ):
                    return True
    return False


def known_elsewhere(tx: Tx, header: RecordHeader, meta: Mapping[str, Any] | None) -> bool:
    """Whether the record's volume is one the metadata knows, so that a copy of it the
    metadata does not point at is garbage. Parts absorbed into a multipart object are not
    found this way; their stray copies stay."""
    storage_id = header.volume_id
    if catalog.get_volume(tx, storage_id) is not None or tx.get("gc", storage_id.encode()):
        return True
    moved_from = (meta or {}).get("moved_from")  # a tier move's copy has an id of its own
    if not isinstance(moved_from, str):
        return False
    volume = catalog.get_volume(tx, moved_from)
    return volume is not None and volume.location.get("volume_id") == storage_id


_IDENTITY = ("volume_id", "size", "crc32", "meta_size")


def still_names(current: Mapping[str, Any] | None, ref: Ref, old: Replica) -> bool:
    """Whether a location still names the record that was walked: same record, and the old
    replica still one of its copies (other replicas may have moved meanwhile: another
    segment's compaction, a repair)."""
    if current is None or any(current.get(f) != ref.location.get(f) for f in _IDENTITY):
        return False
    return any(tuple(r) == old for r in current.get("replicas", []))


def still_live(tx: Tx, ref: Ref, old: Replica) -> bool:
    """Whether the volume of ``ref`` still points at replica ``old`` of the walked record."""
    volume = catalog.get_volume(tx, ref.volume_id)
    return volume is not None and still_names(location_at(volume, ref.path), ref, old)
