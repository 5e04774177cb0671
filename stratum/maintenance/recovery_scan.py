"""Scanning the disks for what recovery can rebuild from (:mod:`stratum.maintenance.recovery`).

Each disk is read for shard files (``ec/<fan>/<volume>.<i>.shard``: the header names the
object, the footer gives size and MD5) and segment records (``seg/``: each copy carries its
object's meta and a payload CRC). Records the garbage collector freed are not found: their
bytes were deallocated and read as zeros; one whose header outlived its hole (a crash in
between) is skipped as freed, not reported as damage. :func:`assemble` groups what the disks
hold into one :class:`FoundVolume` per volume id, with the location a reader would use and
whether it can be read.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from stratum.block.erasure import ECLocation, place_shards
from stratum.block.errors import ShardFormatError
from stratum.block.segments import Replica, SegLocation
from stratum.block.segments_format import (
    SegmentFormatError,
    list_segments,
    scan_segment,
    segment_name,
)
from stratum.block.shardfile import (
    HEADER_FIXED_LEN,
    MAX_INFO_LEN,
    ShardFooter,
    ShardHeader,
    is_volume_id,
    parse_header,
    read_shard_info,
)
from stratum.maintenance.recovery_disks import PoolDisk
from stratum.meta import versions
from stratum.meta.records import VolumeRecord
from stratum.service.amend import AMEND as AMEND

OBJECT, PART, MANIFEST = "object", "part", "manifest"
MARKER, BUCKET = "marker", "bucket"  # a delete marker's record, a bucket configuration record
# records whose body recovery keeps: manifests, bucket configurations (their settings), and
# amend records (the fields they change)
KEEP_PAYLOAD = (MANIFEST, BUCKET, AMEND)


def volume_time(volume_id: str) -> float:
    """The creation time encoded in a volume (or upload) id."""
    return int(volume_id[:12], 16) / 1000.0


@dataclass
class FoundVolume:
    """A volume as found on the disks; ``location`` is None when none can be built."""

    volume_id: str
    tier: str
    layout: str  # "ec" | "seg"
    meta: dict[str, Any]
    size: int = 0
    md5: str = ""
    location: dict[str, Any] | None = None
    readable: bool = False
    problem: str = ""  # why it is not readable
    payload: bytes | None = None  # a manifest's, bucket configuration's or amend record's JSON

    @property
    def kind(self) -> str:
        kind = self.meta.get("kind")
        if isinstance(kind, str):
            return kind
        return OBJECT if "bucket" in self.meta else ""  # headers from before "kind"

    @property
    def bucket(self) -> str:
        return str(self.meta.get("bucket") or "")

    @property
    def key(self) -> str:
        return str(self.meta.get("key") or "")

    @property
    def logical_id(self) -> str:
        """The volume this is a copy of: a tier move writes the data under a storage id of
        its own and names the volume in ``moved_from``."""
        moved = self.meta.get("moved_from")
        return moved if isinstance(moved, str) and is_volume_id(moved) else self.volume_id

    @property
    def version(self) -> tuple[str, bytes] | None:
        """(version id, order) the header gives, if it is that of a versioning writer."""
        version_id, order = self.meta.get("version_id"), self.meta.get("order")
        if not isinstance(version_id, str) or not isinstance(order, str):
            return None
        try:
            raw = bytes.fromhex(order)
            versions.parse_version_id(version_id)
        except (ValueError, versions.InvalidVersionId):
            return None
        return (version_id, raw) if len(raw) == versions.ORDER_BYTES else None

    @property
    def created(self) -> float:
        created = self.meta.get("created")
        if isinstance(created, int | float) and not isinstance(created, bool):
            return float(created)
        return volume_time(self.volume_id)

    def volume_record(self, previous: VolumeRecord | None = None) -> VolumeRecord:
        assert self.location is not None
        record = VolumeRecord(
            volume_id=self.volume_id,
            tier=self.tier,
            layout=self.layout,
            location=self.location,
            size=self.size,
            md5=self.md5,
            created=self.created,
            last_access=self.created,
            bucket=self.bucket,
            key=self.key,
        )
        carry_access(record, previous)
        return record


def carry_access(record: VolumeRecord, previous: VolumeRecord | None) -> None:
    if previous is not None:
        record.last_access = max(record.last_access, previous.last_access)
        record.access_count = previous.access_count
        record.access_rate = previous.access_rate
        record.recent = list(previous.recent)


@dataclass(frozen=True)
class _Shard:
    volume_id: str
    index: int
    disk_id: str
    header: ShardHeader | None  # its meta emptied: see ``meta``
    footer: ShardFooter | None
    meta: Mapping[str, Any] | None  # kept for the first shard of a volume seen only


class FirstSeen:
    """Which volumes already have their meta kept: one copy in memory, not one per shard."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: set[str] = set()

    def first(self, volume_id: str) -> bool:
        with self._lock:
            if volume_id in self._seen:
                return False
            self._seen.add(volume_id)
            return True


@dataclass(frozen=True)
class _Copy:
    """One segment record copy."""

    volume_id: str
    replica: Replica
    size: int
    crc32: int
    meta_size: int
    meta: dict[str, Any] | None
    md5: str  # "" when the copy is damaged
    payload: bytes | None  # kept for manifests only


@dataclass
class DiskScan:
    disk: PoolDisk
    shards: list[_Shard] = field(default_factory=list)
    copies: list[_Copy] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _header_only(path: Path) -> ShardHeader | None:
    """The header of a shard whose footer or length is bad: it still names the object."""
    try:
        with open(path, "rb") as f:
            return parse_header(f.read(HEADER_FIXED_LEN + MAX_INFO_LEN), str(path))[0]
    except (OSError, ShardFormatError):
        return None


def _read_shard(path: Path, index: int, disk_id: str, seen: FirstSeen) -> _Shard | None:
    volume_id = path.name.split(".", 1)[0]
    footer: ShardFooter | None = None
    try:
        header: ShardHeader | None
        header, footer = read_shard_info(path)
    except (OSError, ShardFormatError, ValueError, ArithmeticError):
        header = _header_only(path)
    if header is None:
        return _Shard(volume_id, index, disk_id, None, None, None)
    if (header.volume_id, header.shard_index) != (volume_id, index):
        return None  # misnamed: no reader would find it where it is
    meta = dict(header.meta) if seen.first(volume_id) else None
    return _Shard(volume_id, index, disk_id, replace(header, meta={}), footer, meta)


def scan_disk(disk: PoolDisk, seen: FirstSeen | None = None) -> DiskScan:
    """Every shard file and segment record of one disk (blocking).

    Disks are scanned in parallel sharing ``seen``, so that only one copy of each volume's
    meta is kept in memory.
    """
    seen = seen or FirstSeen()
    scan = DiskScan(disk)
    ec_dir = disk.path / "ec"
    try:
        fans = sorted(p for p in ec_dir.iterdir() if p.is_dir()) if ec_dir.is_dir() else []
        for fan in fans:
            for entry in sorted(fan.iterdir()):
                parts = entry.name.split(".")
                if len(parts) != 3 or parts[2] != "shard" or not parts[1].isdigit():
                    continue
                if is_volume_id(parts[0]):
                    shard = _read_shard(entry, int(parts[1]), disk.disk_id, seen)
                    if shard is not None:
                        scan.shards.append(shard)
    except OSError as exc:
        scan.problems.append(f"{ec_dir}: {exc}")
    seg_dir = disk.path / "seg"
    try:
        numbers = list_segments(seg_dir) if seg_dir.is_dir() else []
    except OSError as exc:
        scan.problems.append(f"{seg_dir}: {exc}")
        numbers = []
    for number in numbers:
        path = seg_dir / segment_name(number)
        try:
            for record in scan_segment(path):
                if record.freed:
                    continue
                header, meta = record.header, record.meta
                manifest = record.intact and meta is not None and meta.get("kind") in KEEP_PAYLOAD
                if meta is not None and not seen.first(header.volume_id):
                    meta = None
                scan.copies.append(
                    _Copy(
                        volume_id=header.volume_id,
                        replica=Replica(disk.disk_id, number, header.offset),
                        size=header.payload_size,
                        crc32=header.payload_crc32,
                        meta_size=header.meta_size,
                        meta=meta,
                        md5=hashlib.md5(record.payload).hexdigest() if record.intact else "",
                        payload=record.payload if manifest else None,
                    )
                )
        except (OSError, SegmentFormatError) as exc:
            scan.problems.append(f"{path}: {exc}")
    return scan


def _ec_volume(tier: str, volume_id: str, shards: list[_Shard], pool: list[str]) -> FoundVolume:
    meta = next((dict(s.meta) for s in shards if s.meta is not None), {})
    whole = [s for s in shards if s.header is not None and s.footer is not None]
    volume = FoundVolume(volume_id, tier, "ec", meta)
    if not whole:
        volume.problem = f"{len(shards)} shard file(s), none with an intact header and footer"
        return volume

    def shape(s: _Shard) -> tuple[int, int, int, int, bytes]:
        assert s.header is not None and s.footer is not None
        h, f = s.header, s.footer
        return h.data_shards, h.parity_shards, h.block_size, f.size, f.md5

    shapes = [shape(s) for s in whole]
    k, m, block_size, size, md5 = max(shapes, key=shapes.count)  # shards agree; else majority
    holder: dict[int, str] = {}
    for s in whole:
        if shape(s) == (k, m, block_size, size, md5) and s.index < k + m:
            holder.setdefault(s.index, s.disk_id)
    placement = place_shards(volume_id, pool, k + m)
    try:
        loc = ECLocation(
            volume_id=volume_id,
            data_shards=k,
            parity_shards=m,
            block_size=block_size,
            size=size,
            disks=tuple(holder.get(i, placement[i]) for i in range(k + m)),
            md5_hex=md5.hex(),
        )
    except ValueError as exc:
        volume.problem = f"shard headers describe no valid volume: {exc}"
        return volume
    volume.size, volume.md5, volume.location = size, md5.hex(), loc.to_dict()
    volume.readable = len(holder) >= k
    if not volume.readable:
        volume.problem = f"{len(holder)} of {k + m} shards intact, {k} needed"
    return volume


def _seg_volume(tier: str, volume_id: str, copies: list[_Copy]) -> FoundVolume:
    intact = [c for c in copies if c.md5]
    meta = next((c.meta for c in intact + copies if c.meta is not None), None) or {}
    volume = FoundVolume(volume_id, tier, "seg", dict(meta))
    if not intact:
        volume.problem = f"all {len(copies)} cop{'y' if len(copies) == 1 else 'ies'} damaged"
        return volume
    ref = intact[0]
    same = [
        c for c in intact if (c.size, c.crc32, c.meta_size) == (ref.size, ref.crc32, ref.meta_size)
    ]
    replicas = tuple(dict.fromkeys(c.replica for c in same))
    loc = SegLocation(volume_id, ref.size, ref.crc32, ref.meta_size, replicas)
    volume.size, volume.md5, volume.location = ref.size, ref.md5, loc.to_dict()
    volume.readable, volume.payload = True, ref.payload
    return volume


def assemble(scans: Sequence[DiskScan], absent: Sequence[PoolDisk] = ()) -> dict[str, FoundVolume]:
    """Group what the scans found into volumes, by volume id.

    ``absent``: disks of the pool that could not be scanned, for shard placement.
    """
    pools: dict[str, list[str]] = {}
    for disk in absent:
        pools.setdefault(disk.tier, []).append(disk.disk_id)
    shards: dict[tuple[str, str], list[_Shard]] = {}
    copies: dict[tuple[str, str], list[_Copy]] = {}
    for scan in scans:
        tier = scan.disk.tier
        pools.setdefault(tier, []).append(scan.disk.disk_id)
        for shard in scan.shards:
            shards.setdefault((tier, shard.volume_id), []).append(shard)
        for copy in scan.copies:
            copies.setdefault((tier, copy.volume_id), []).append(copy)
    found: dict[str, FoundVolume] = {}
    volumes = [_ec_volume(t, v, group, sorted(pools[t])) for (t, v), group in shards.items()]
    volumes += [_seg_volume(t, v, group) for (t, v), group in copies.items()]
    for volume in volumes:  # one volume in two tiers (a move cut short): the readable one
        other = found.get(volume.volume_id)
        rank = (volume.readable, volume.location is not None, volume.tier == "hot")
        if other is None or rank > (
            other.readable,
            other.location is not None,
            other.tier == "hot",
        ):
            found[volume.volume_id] = volume
    return found
