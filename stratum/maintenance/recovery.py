"""Rebuilding the metadata store from the disks (``stratum recover-metadata``).

Every volume carries on disk what its metadata said (see ``ObjectService.store_body`` and
``MultipartService.complete``):

- an erasure-coded volume, in the header of each shard file: ``meta`` with ``kind``,
  bucket, key, created, owner id, content type, user metadata, headers and storage class;
  in each footer the size and MD5; its placement is the set of disks holding
  ``<volume>.<i>.shard``;
- a small volume, in the meta of each segment record copy, with the payload's size and CRC;
- a completed multipart upload, in a *manifest* record of the segment store under the
  object's volume id: ``{"object": <ObjectRecord>, "parts": [{volume_id, size, md5}...]}``;
  its parts are volumes of kind ``part`` (with their upload id and part number);
- a volume a tier move copied, under a storage id of its own, with ``moved_from`` naming
  the volume (its header carries bucket, key and created only).

The rebuild:

1. Every disk of every local tier is scanned (the server must be stopped: the segment
   store's ``seg/.lock`` is taken for the whole run). A shard counts when its header and
   footer are intact; a volume is readable with ``k`` of them. Shard indices not found are
   placed where the writer would have put them (``place_shards`` over the tier's disks):
   reads degrade and a scrub rebuilds them there. A small volume is readable when one copy
   is intact; its location lists every intact copy.
2. For each (bucket, key) the volume with the greatest id wins: ids are time-ordered
   (:mod:`stratum.service.ids`); a moved copy counts as the volume it copies. Of the
   winner's copies (the original, its manifest and parts, copies moves made) the newest
   readable one holds the data; the object record comes from the backup, else the
   manifest, else the richest header (a move's copy alone lacks the S3 metadata:
   reported). Other volumes and copies, parts no manifest lists and volumes naming no
   object are queued in ``gc``, so the collector frees them.
   A winner that cannot be read keeps its key when a location can be built (reads fail
   until the missing shards come back, and the start-up sweep leaves its shards alone);
   otherwise its key is reported lost. Older versions never stand in for it.
3. With a backup (:mod:`stratum.maintenance.backups`, the newest copy on any disk), users,
   buckets, in-flight state (``info``) and the object records of unchanged keys come from
   it; a volume the backup had retired, or older than the backup's version of its key, is
   garbage. A *small* volume older than the backup (less :data:`SMALL_PUT_MARGIN`, the
   time such a PUT may take to commit) that the backup does not know was deleted before
   it. Large volumes are never judged by age: a slow upload started before the backup may
   have committed after it, and deleted large volumes are gone from the disks anyway.
   Objects the backup has in a tier without local disks (cold) are restored as it has them.
   Without a backup, buckets are rebuilt (owner from the newest volume's header, created
   at its oldest volume's time) and users other than root (``root-credentials.json``
   stays) are lost: their owner ids are reported.
4. A multipart object whose erasure-coded parts are all gone (and no part is damaged) was
   deleted: the collector freed its parts but not its manifest, which stays until segment
   compaction. Uploads not completed are not recovered; their parts become garbage.
5. The new store is written to ``<data_dir>/meta.recovered-<ts>``; then ``meta`` (if
   any) becomes ``meta.broken-<ts>`` and the new one takes its place.

Limits (the report repeats those that apply): segment deletes leave the record in place
(no tombstones yet), so small objects deleted after the newest backup -- or ever, without
one -- come back, as does the body of a small PUT or a completion refused after its data
was stored. Of PUTs of one key that overlapped, the one *started* last wins. Objects
rebuilt from headers lack additional checksums (x-amz-checksum-*) and metadata replaced
later by a copy onto themselves: neither is in the headers.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from stratum.block.disk import IDENTITY_FILE
from stratum.block.erasure import ECLocation, place_shards
from stratum.block.errors import ShardFormatError
from stratum.block.segments import Replica, SegLocation
from stratum.block.segments_format import (
    SEGMENT_HEADER_SIZE,
    SegmentFormatError,
    decode_segment_header,
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
from stratum.block.tierstore import DISKS_KEY, tier_layouts
from stratum.config import Config
from stratum.maintenance.backups import BackupView, find_backups
from stratum.meta import catalog
from stratum.meta.records import BucketRecord, ObjectRecord, UserRecord, VolumeRecord
from stratum.meta.store import MetaStore, Tx
from stratum.service.objects import MULTI
from stratum.service.users import ROOT_FILE
from stratum.util.fsio import fsync_dir

SMALL_PUT_MARGIN = 600.0  # seconds a small PUT may take from its volume id to its commit
RECOVERED_KEY = b"recovered"  # info: {"version": 1, "at": ..., "backup_created": ...}
WRITE_BATCH = 5000
OBJECT, PART, MANIFEST = "object", "part", "manifest"


class RecoveryError(Exception):
    """Recovery cannot run (the message says why)."""


class ServerRunning(RecoveryError):
    """A process holds a disk of the pool: the server must be stopped first."""


def volume_time(volume_id: str) -> float:
    """The creation time encoded in a volume (or upload) id."""
    return int(volume_id[:12], 16) / 1000.0


# -- what the disks hold -------------------------------------------------------------------


@dataclass(frozen=True)
class PoolDisk:
    tier: str
    path: Path
    disk_id: str
    scanned: bool = True  # False: missing now; its id is known from the backup


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
    payload: bytes | None = None  # a manifest's JSON

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
        _carry_access(record, previous)
        return record


def _carry_access(record: VolumeRecord, previous: VolumeRecord | None) -> None:
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


class _FirstSeen:
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


def _disk_id(path: Path) -> str | None:
    """The id in the identity file, else the one in the first segment file's header."""
    try:
        record = json.loads((path / IDENTITY_FILE).read_text())
        disk_id = record.get("disk_id") if record.get("format") == "stratum-disk" else None
        if isinstance(disk_id, str) and disk_id:
            return disk_id
    except (OSError, ValueError, AttributeError):
        pass
    try:
        numbers = list_segments(path / "seg")
        if numbers:
            with open(path / "seg" / segment_name(numbers[0]), "rb") as f:
                return decode_segment_header(f.read(SEGMENT_HEADER_SIZE), f.name).disk_id
    except (OSError, SegmentFormatError):
        pass
    return None


def find_disks(config: Config) -> tuple[list[PoolDisk], list[str], list[tuple[str, Path]]]:
    """The disks of every local tier, why some cannot be scanned, and the missing ones."""
    disks: list[PoolDisk] = []
    problems: list[str] = []
    missing: list[tuple[str, Path]] = []
    seen: dict[str, Path] = {}
    for tier, layout in tier_layouts(config).items():
        for configured in layout.disks:
            path = configured.absolute()
            if not path.is_dir():
                problems.append(f"{path} ({tier} tier): not found; not scanned")
                missing.append((tier, path))
                continue
            disk_id = _disk_id(path)
            if disk_id is None:
                problems.append(f"{path} ({tier} tier): not a Stratum disk (no identity file)")
                continue
            if disk_id in seen:
                problems.append(f"{path}: has the id of {seen[disk_id]} (a copy?); not scanned")
                continue
            seen[disk_id] = path
            disks.append(PoolDisk(tier, path, disk_id))
    return disks, problems, missing


def known_missing(
    missing: Sequence[tuple[str, Path]], disks: Sequence[PoolDisk], backup: BackupView | None
) -> list[PoolDisk]:
    """Missing disks whose id the backup knows (``info`` ``disks``: path -> id).

    With them in the pool, shards that were on them keep their place in the rebuilt
    locations, and an empty directory mounted there is refilled as a replaced disk.
    """
    raw = backup.get("info", DISKS_KEY) if backup is not None else None
    try:
        known = json.loads(raw) if raw else {}
    except ValueError:
        return []
    taken = {d.disk_id for d in disks}
    out: list[PoolDisk] = []
    for tier, path in missing:
        disk_id = known.get(str(path)) if isinstance(known, dict) else None
        if isinstance(disk_id, str) and disk_id not in taken:
            taken.add(disk_id)
            out.append(PoolDisk(tier, path, disk_id, scanned=False))
    return out


@contextlib.contextmanager
def lock_disks(disks: Sequence[PoolDisk]) -> Iterator[None]:
    """Hold every disk's ``seg/.lock`` (what a running server holds) for the duration."""
    fds: list[int] = []
    try:
        for disk in disks:
            seg = disk.path / "seg"
            if not seg.is_dir():
                continue
            lock = seg / ".lock"
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise RecoveryError(f"cannot open {lock}: {exc}") from exc
            fds.append(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise ServerRunning(
                    f"{disk.path} is in use: another process (a running Stratum server?) "
                    f"holds {lock}. Stop the server first."
                ) from None
        yield
    finally:
        for fd in fds:
            os.close(fd)


def _header_only(path: Path) -> ShardHeader | None:
    """The header of a shard whose footer or length is bad: it still names the object."""
    try:
        with open(path, "rb") as f:
            return parse_header(f.read(HEADER_FIXED_LEN + MAX_INFO_LEN), str(path))[0]
    except (OSError, ShardFormatError):
        return None


def _read_shard(path: Path, index: int, disk_id: str, seen: _FirstSeen) -> _Shard | None:
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


def scan_disk(disk: PoolDisk, seen: _FirstSeen | None = None) -> DiskScan:
    """Every shard file and segment record of one disk (blocking).

    Disks are scanned in parallel sharing ``seen``, so that only one copy of each volume's
    meta is kept in memory.
    """
    seen = seen or _FirstSeen()
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
                header, meta = record.header, record.meta
                manifest = record.intact and meta is not None and meta.get("kind") == MANIFEST
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


# -- deciding what the store says -----------------------------------------------------------


@dataclass(frozen=True)
class Lost:
    """An object that could not be recovered whole."""

    name: str  # "bucket/key"
    volume_id: str
    why: str
    restored: bool = False  # the key points at it anyway: reads fail until it is repaired


@dataclass(frozen=True)
class DroppedUpload:
    bucket: str
    key: str
    upload_id: str
    parts: int
    size: int


@dataclass
class RecoveryReport:
    """What a recovery found, rebuilt and could not rebuild."""

    dry_run: bool = False
    disks: list[str] = field(default_factory=list)  # "<path> (<tier>)" of the disks scanned
    disk_problems: list[str] = field(default_factory=list)  # not scanned, or not wholly
    backup: str = ""  # the copy used, if any
    backup_created: float | None = None
    backups_unusable: list[str] = field(default_factory=list)
    objects: int = 0
    small: int = 0
    large: int = 0
    multipart: int = 0
    from_headers: int = 0  # object records rebuilt from disk headers alone
    buckets: int = 0
    buckets_from_backup: int = 0
    buckets_rebuilt: int = 0
    users: int = 0  # besides root
    garbage: int = 0
    unreadable: list[Lost] = field(default_factory=list)  # large: fewer than k shards
    damaged: list[Lost] = field(default_factory=list)  # small: every copy damaged
    missing_parts: list[Lost] = field(default_factory=list)  # multipart
    reduced: list[Lost] = field(default_factory=list)  # restored without their S3 metadata
    deleted_multipart: int = 0  # manifests of deleted objects (their parts were freed)
    unnamed: int = 0  # volumes whose headers name no object
    gone_since_backup: int = 0  # keys of the backup whose data is no longer on the disks
    remote: int = 0  # objects of a tier without local disks (cold), as the backup has them
    cold_tier: bool = False  # configured: its objects are not on the local disks
    uploads_dropped: list[DroppedUpload] = field(default_factory=list)
    lost_owners: dict[str, list[str]] = field(default_factory=dict)  # owner id -> buckets
    root_id: str = ""
    store: str = ""  # where the new store was written
    moved_aside: str = ""  # where the previous one went

    @property
    def complete(self) -> bool:
        """Everything found was recovered (uploads in progress never are, by design)."""
        return not (
            self.disk_problems
            or self.unreadable
            or self.damaged
            or self.missing_parts
            or self.reduced
            or self.lost_owners
        )


@dataclass
class Plan:
    """The records of the new store, and the report."""

    report: RecoveryReport
    buckets: list[BucketRecord] = field(default_factory=list)
    users: list[UserRecord] = field(default_factory=list)
    objects: list[tuple[str, ObjectRecord]] = field(default_factory=list)
    volumes: list[VolumeRecord] = field(default_factory=list)
    garbage: list[tuple[str, VolumeRecord]] = field(default_factory=list)  # (gc key, record)
    info: dict[bytes, bytes] = field(default_factory=dict)


def _str_map(value: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


@dataclass
class _Built:
    """One physical copy of a logical volume, made into the volume record a key can use."""

    volume: VolumeRecord | None  # None: this copy cannot serve the object
    problems: list[str]
    uses: set[str]  # physical volume ids it needs (the copy, a manifest's parts)
    deleted: bool = False  # a manifest whose erasure-coded parts were all freed


class _Planner:
    def __init__(
        self,
        found: Mapping[str, FoundVolume],
        backup: BackupView | None,
        root_id: str,
        region: str,
        local_tiers: set[str],
    ) -> None:
        self.found = found
        self.backup = backup
        self.local_tiers = local_tiers
        self.root_id = root_id
        self.region = region
        self.report = RecoveryReport(root_id=root_id)
        self.plan = Plan(self.report)
        self.live: set[str] = set()  # physical volume ids the new store uses
        self.restored: set[str] = set()  # logical volume ids (keys of ``volumes``)
        self.parts: dict[str, FoundVolume] = {}
        self._manifests: dict[str, tuple[dict[str, Any] | None, str]] = {}

    def run(self) -> Plan:
        by_key: dict[tuple[str, str], dict[str, list[FoundVolume]]] = {}
        for volume in self.found.values():
            kind = volume.kind
            if kind in (OBJECT, MANIFEST) and volume.bucket and volume.key:
                logical = by_key.setdefault((volume.bucket, volume.key), {})
                logical.setdefault(volume.logical_id, []).append(volume)
            elif kind == PART and volume.bucket:
                self.parts[volume.volume_id] = volume
            else:
                self.report.unnamed += 1
        for (bucket, key), logical in sorted(by_key.items()):
            current = self.backup.object(bucket, key) if self.backup is not None else None
            kept = [
                lid for lid, copies in logical.items() if not self._superseded(lid, copies, current)
            ]
            if kept:
                winner = max(kept)
                self._restore(bucket, key, winner, logical[winner], current)
        self._since_backup()
        dropped = self._dropped_uploads()
        self._buckets_and_users(dropped)
        self._garbage()
        return self.plan

    def _superseded(
        self, logical_id: str, copies: list[FoundVolume], current: ObjectRecord | None
    ) -> bool:
        """Whether the backup shows a volume was replaced or deleted before it was taken."""
        backup = self.backup
        if backup is None:
            return False
        if backup.in_gc(logical_id):
            return True
        if current is not None:
            if current.volume_id == logical_id:
                return False
            if logical_id < current.volume_id:
                return True
        # Deleted small volumes linger in their segments; deleted large ones are gone. A
        # large one still here that the backup lacks may be a slow upload that committed
        # after the copy was taken: keep it.
        lingering = all(c.layout == "seg" for c in copies)
        return lingering and volume_time(logical_id) < backup.created - SMALL_PUT_MARGIN

    def _previous(self, volume_id: str) -> VolumeRecord | None:
        return self.backup.volume(volume_id) if self.backup is not None else None

    def _manifest(self, copy: FoundVolume) -> tuple[dict[str, Any] | None, str]:
        """A manifest copy's parsed payload, or None and why it is unusable."""
        if copy.volume_id not in self._manifests:
            parsed: dict[str, Any] | None = None
            why = ""
            try:
                if copy.payload is None:
                    raise ValueError(copy.problem or "not readable")
                manifest = json.loads(copy.payload)
                record = ObjectRecord.from_dict(manifest["object"])
                parts = [
                    (str(p["volume_id"]), int(p["size"]), str(p["md5"])) for p in manifest["parts"]
                ]
                if (record.volume_id, record.key) != (copy.volume_id, copy.key):
                    raise ValueError("it names another object")
                parsed = {"record": record, "parts": parts}
            except (ValueError, KeyError, TypeError) as exc:
                why = f"manifest unusable: {exc}"
            self._manifests[copy.volume_id] = (parsed, why)
        return self._manifests[copy.volume_id]

    def _build(self, copy: FoundVolume, logical_id: str) -> _Built:
        if copy.kind != MANIFEST:
            if copy.location is None:
                return _Built(None, [copy.problem], set())
            volume = copy.volume_record()
            volume.volume_id = logical_id
            return _Built(volume, [] if copy.readable else [copy.problem], {copy.volume_id})
        manifest, why = self._manifest(copy)
        if manifest is None or copy.location is None:
            return _Built(None, [why or copy.problem], set())
        entries: list[dict[str, Any]] = []
        problems: list[str] = []
        absent = 0
        erasure_coded = False
        for number, (part_id, size, md5) in enumerate(manifest["parts"], 1):
            part = self.found.get(part_id)
            if part is None:
                absent += 1
                problems.append(f"part {number} is gone")
                continue
            erasure_coded = erasure_coded or part.layout == "ec"
            if part.location is None:
                problems.append(f"part {number}: {part.problem}")
            elif part.tier != copy.tier:
                problems.append(f"part {number} is in the {part.tier} tier")
            elif (part.size, part.md5) != (size, md5):
                problems.append(f"part {number} differs from what the manifest lists")
            else:
                if not part.readable:
                    problems.append(f"part {number}: {part.problem}")
                entries.append(
                    {
                        "volume_id": part_id,
                        "layout": part.layout,
                        "location": part.location,
                        "size": size,
                        "md5": md5,
                    }
                )
        if len(entries) < len(manifest["parts"]):
            deleted = absent == len(problems) and not erasure_coded
            return _Built(None, problems, set(), deleted)
        volume = VolumeRecord(
            volume_id=logical_id,
            tier=copy.tier,
            layout=MULTI,
            location={"parts": entries, "manifest": copy.location},
            size=sum(int(e["size"]) for e in entries),
            md5="",
            created=copy.created,
            last_access=copy.created,
            bucket=copy.bucket,
            key=copy.key,
        )
        uses = {copy.volume_id} | {str(e["volume_id"]) for e in entries}
        return _Built(volume, problems, uses)

    def _restore(
        self,
        bucket: str,
        key: str,
        logical_id: str,
        copies: list[FoundVolume],
        current: ObjectRecord | None,
    ) -> None:
        """Restore a key from the copies of its newest volume (the original, a manifest
        and its parts, copies a tier move made), newest usable copy first."""
        report, name = self.report, f"{bucket}/{key}"
        copies = sorted(copies, key=lambda c: c.volume_id, reverse=True)
        if current is not None and current.volume_id == logical_id:
            previous = self._previous(logical_id)
            if previous is not None and previous.tier not in self.local_tiers:
                remote_copy = str(previous.location.get("key", ""))[-32:]
                if not any(c.volume_id > remote_copy for c in copies):
                    # In a tier without local disks when the backup was taken, and not
                    # moved back since: what lingers here is older than that copy.
                    self._add(bucket, current, previous)
                    report.remote += 1
                    return
        built = [self._build(c, logical_id) for c in copies]
        usable = [b for b in built if b.volume is not None]
        chosen = next((b for b in usable if not b.problems), usable[0] if usable else None)
        manifests = [self._manifest(c)[0] for c in copies if c.kind == MANIFEST]
        manifest = next((m for m in manifests if m is not None), None)
        if chosen is None or chosen.volume is None:
            if all(b.deleted for b in built if b.problems) and any(b.deleted for b in built):
                report.deleted_multipart += 1  # the collector freed its parts, not its manifest
                return
            why = "; ".join(p for b in built for p in b.problems)
            lost = Lost(name, logical_id, why)
            if manifest is not None or any(c.kind == MANIFEST for c in copies):
                report.missing_parts.append(lost)
            elif any(c.layout == "ec" for c in copies):
                report.unreadable.append(lost)
            else:
                report.damaged.append(lost)
            return
        volume = chosen.volume
        if chosen.problems:
            lost = Lost(name, logical_id, "; ".join(chosen.problems), restored=True)
            (report.missing_parts if volume.layout == MULTI else report.unreadable).append(lost)
        if current is not None and current.volume_id == logical_id:
            record = current
        elif manifest is not None:
            record = manifest["record"]
        else:
            record = self._record_from_headers(name, logical_id, copies, volume)
        if manifest is not None:
            volume.md5 = record.etag.strip().strip('"')
            volume.part_sizes = [size for _id, size, _md5 in manifest["parts"]]
        _carry_access(volume, self._previous(logical_id))
        self._add(bucket, record, volume)
        self.live |= chosen.uses
        if manifest is not None or record.parts:
            report.multipart += 1
        elif volume.layout == "seg":
            report.small += 1
        else:
            report.large += 1

    def _record_from_headers(
        self, name: str, logical_id: str, copies: list[FoundVolume], volume: VolumeRecord
    ) -> ObjectRecord:
        """The object record as written in the headers: the original's if it is still
        there, else a tier move's copy, whose header may lack the S3 metadata."""
        self.report.from_headers += 1
        full = [c for c in copies if "content_type" in c.meta]
        source = next((c for c in full if c.volume_id == logical_id), None)
        source = source or (full[0] if full else copies[0])
        if source not in full:
            why = "only a copy made by a tier move is left, whose header lacks them"
            self.report.reduced.append(Lost(name, logical_id, why, restored=True))
        meta = source.meta
        return ObjectRecord(
            key=source.key,
            volume_id=logical_id,
            size=volume.size,
            etag=f'"{volume.md5}"',
            last_modified=source.created,
            content_type=str(meta.get("content_type") or "binary/octet-stream"),
            user_meta=_str_map(meta.get("user_meta")),
            headers=_str_map(meta.get("headers")),
            storage_class=str(meta.get("storage_class") or ""),
            owner_id=str(meta.get("owner_id") or ""),  # "" : the bucket's owner, set later
        )

    def _add(self, bucket: str, record: ObjectRecord, volume: VolumeRecord) -> None:
        self.plan.objects.append((bucket, record))
        self.plan.volumes.append(volume)
        self.restored.add(volume.volume_id)
        self.report.objects += 1

    def _dropped_uploads(self) -> list[DroppedUpload]:
        """Uploads none of whose parts a manifest lists: in progress, or aborted."""
        listed: set[str] = set()
        for volume in self.found.values():
            if volume.kind == MANIFEST:
                manifest, _why = self._manifest(volume)
                if manifest is not None:
                    listed.update(part_id for part_id, _size, _md5 in manifest["parts"])
        completed = {str(p.meta.get("upload_id")) for i, p in self.parts.items() if i in listed}
        groups: dict[str, list[FoundVolume]] = {}
        for part in self.parts.values():
            upload = str(part.meta.get("upload_id") or "")
            if part.volume_id not in self.live and upload not in completed:
                groups.setdefault(upload, []).append(part)
        backup = self.backup
        in_backup = backup.upload_ids() if backup is not None else set()
        cutoff = backup.created - SMALL_PUT_MARGIN if backup is not None else None
        dropped: list[DroppedUpload] = []
        for upload, parts in sorted(groups.items()):
            ended = upload not in in_backup and is_volume_id(upload)  # not in progress then
            if cutoff is not None and ended and volume_time(upload) < cutoff:
                continue  # completed or aborted before the backup: leftovers
            first = parts[0]
            size = sum(p.size for p in parts)
            dropped.append(DroppedUpload(first.bucket, first.key, upload, len(parts), size))
        self.report.uploads_dropped = dropped
        return dropped

    def _garbage(self) -> None:
        for volume in self.found.values():
            if volume.volume_id in self.live or volume.location is None:
                continue
            gc_key = volume.volume_id
            if gc_key in self.restored:  # an older copy of a restored volume (a tier move's)
                gc_key += ".recovered"
            self.plan.garbage.append((gc_key, volume.volume_record()))
        self.report.garbage = len(self.plan.garbage)

    def _buckets_and_users(self, dropped: list[DroppedUpload]) -> None:
        report, plan = self.report, self.plan
        buckets: dict[str, BucketRecord] = {}
        if self.backup is not None:
            buckets = {b.name: b for b in self.backup.buckets()}
            plan.users = self.backup.users()
        report.buckets_from_backup = len(buckets)
        needed = {bucket for bucket, _record in plan.objects} | {u.bucket for u in dropped}
        seen: dict[str, list[FoundVolume]] = {}
        for volume in self.found.values():
            if volume.bucket in needed and volume.bucket not in buckets:
                seen.setdefault(volume.bucket, []).append(volume)
        for name, volumes in sorted(seen.items()):
            owned = [v for v in volumes if v.meta.get("owner_id")] or volumes
            newest = max(owned, key=lambda v: v.volume_id)
            buckets[name] = BucketRecord(
                name=name,
                owner_id=str(newest.meta.get("owner_id") or self.root_id),
                created=min(v.created for v in volumes),
                region=self.region,
            )
            report.buckets_rebuilt += 1
        for bucket_name, record in plan.objects:
            if not record.owner_id:
                record.owner_id = buckets[bucket_name].owner_id
        plan.buckets = sorted(buckets.values(), key=lambda b: b.name)
        report.buckets = len(plan.buckets)
        report.users = len(plan.users)
        known = {self.root_id} | {u.canonical_id for u in plan.users}
        lost: dict[str, set[str]] = {}
        for bucket in plan.buckets:
            if bucket.owner_id not in known:
                lost.setdefault(bucket.owner_id, set()).add(bucket.name)
        for bucket_name, record in plan.objects:
            if record.owner_id not in known:
                lost.setdefault(record.owner_id, set()).add(bucket_name)
        report.lost_owners = {owner: sorted(names) for owner, names in sorted(lost.items())}

    def _since_backup(self) -> None:
        """Keys of the backup that the disks do not give back, nor are reported as lost.

        An object in a tier without local disks (cold) is restored as the backup has it:
        nothing on the local disks can say it moved or went. Others were deleted or
        replaced since the backup.
        """
        if self.backup is None:
            return
        restored = {(bucket, record.key) for bucket, record in self.plan.objects}
        reported = {lost.name for lost in self._losses()}
        for bucket, record in self.backup.objects():
            if (bucket, record.key) in restored or f"{bucket}/{record.key}" in reported:
                continue
            volume = self.backup.volume(record.volume_id)
            if volume is not None and volume.tier not in self.local_tiers:
                self._add(bucket, record, volume)
                self.report.remote += 1
            else:
                self.report.gone_since_backup += 1

    def _losses(self) -> list[Lost]:
        return self.report.unreadable + self.report.damaged + self.report.missing_parts


def plan_recovery(
    found: Mapping[str, FoundVolume],
    backup: BackupView | None,
    *,
    root_id: str,
    region: str,
    now: float,
    disks: Sequence[PoolDisk] = (),
    local_tiers: set[str] | None = None,
) -> Plan:
    """Decide every record of the new store from what the disks (and a backup) hold.

    ``local_tiers``: tiers with disks (default: those of ``disks``, else "hot").
    """
    local = local_tiers or {d.tier for d in disks} or {"hot"}
    plan = _Planner(found, backup, root_id, region, local).run()
    if backup is not None:
        plan.report.backup = str(backup.copy.path)
        plan.report.backup_created = backup.created
        for key, value in backup.items("info"):
            if key not in (DISKS_KEY, RECOVERED_KEY):
                plan.info[key] = value
    plan.info[DISKS_KEY] = json.dumps({str(d.path): d.disk_id for d in disks}).encode()
    recovered = {
        "version": 1,
        "at": now,
        "backup_created": backup.created if backup is not None else None,
    }
    plan.info[RECOVERED_KEY] = json.dumps(recovered).encode()
    return plan


# -- writing the new store --------------------------------------------------------------------


def _put_gc(tx: Tx, gc_key: str, record: VolumeRecord) -> None:
    tx.put("gc", gc_key.encode(), record.encode())


def _put_info(tx: Tx, key: bytes, value: bytes) -> None:
    tx.put("info", key, value)


def _run_all(ops: Sequence[Callable[[Tx], object]]) -> Callable[[Tx], None]:
    def run(tx: Tx) -> None:
        for op in ops:
            op(tx)

    return run


def write_store(plan: Plan, data_dir: Path, suffix: str) -> tuple[Path, Path | None]:
    """Write the plan to a new store and swap it in as ``<data_dir>/meta`` (blocking).

    Returns the store's path and where the previous one was moved, if there was one.
    """
    target = data_dir / f"meta.recovered-{suffix}"
    if target.exists():
        raise RecoveryError(f"{target} exists already")
    ops: list[Callable[[Tx], object]] = []
    ops += [functools.partial(catalog.put_bucket, record=b) for b in plan.buckets]
    ops += [functools.partial(catalog.put_user, record=u) for u in plan.users]
    ops += [functools.partial(catalog.put_volume, record=v) for v in plan.volumes]
    ops += [functools.partial(catalog.put_object, bucket=b, record=r) for b, r in plan.objects]
    ops += [functools.partial(_put_gc, gc_key=k, record=v) for k, v in plan.garbage]
    ops += [functools.partial(_put_info, key=k, value=v) for k, v in plan.info.items()]
    store = MetaStore(target)
    store.open()
    try:
        for start in range(0, len(ops), WRITE_BATCH):
            store.write_sync(_run_all(ops[start : start + WRITE_BATCH]))
    finally:
        store.close()
    current = data_dir / "meta"
    moved: Path | None = None
    if current.exists():
        moved = data_dir / f"meta.broken-{suffix}"
        os.rename(current, moved)
    os.rename(target, current)
    fsync_dir(data_dir)
    return current, moved


# -- the whole run ----------------------------------------------------------------------------


def _root_id(data_dir: Path) -> str:
    try:
        return str(json.loads((data_dir / ROOT_FILE).read_text())["canonical_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def _open_backup(paths: Sequence[Path], report: RecoveryReport) -> BackupView | None:
    for copy in find_backups(paths):
        try:
            return BackupView(copy)
        except Exception as exc:  # a damaged copy: try the next one
            report.backups_unusable.append(f"{copy.path}: {exc}")
    return None


def recover(config: Config, *, dry_run: bool = False, now: float | None = None) -> RecoveryReport:
    """Rebuild ``<data_dir>/meta`` from the disks (blocking; the server must be stopped).

    Raises :class:`ServerRunning` when a disk is in use, :class:`RecoveryError` when the
    store cannot be written.
    """
    now = time.time() if now is None else now
    data_dir = config.storage.data_dir
    disks, problems, missing = find_disks(config)
    with lock_disks(disks):
        scratch = RecoveryReport()
        backup = _open_backup([d.path for d in disks], scratch)
        try:
            absent = known_missing(missing, disks, backup)
            workers = max(1, min(16, len(disks)))
            with concurrent.futures.ThreadPoolExecutor(workers, "recover-scan") as pool:
                scans = list(pool.map(functools.partial(scan_disk, seen=_FirstSeen()), disks))
            plan = plan_recovery(
                assemble(scans, absent),
                backup,
                root_id=_root_id(data_dir),
                region=config.server.region,
                now=now,
                disks=[*disks, *absent],
                local_tiers=set(tier_layouts(config)),
            )
        finally:
            if backup is not None:
                backup.close()
        report = plan.report
        report.dry_run = dry_run
        report.disks = [f"{d.path} ({d.tier})" for d in disks]
        report.disk_problems = problems + [
            f"{d.path}: its id {d.disk_id} (from the backup) is kept for the shards it held"
            for d in absent
        ]
        report.disk_problems += [p for scan in scans for p in scan.problems]
        report.backups_unusable = scratch.backups_unusable
        report.cold_tier = config.tiers.cold.enabled
        if not dry_run:
            suffix = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
            try:
                store, moved = write_store(plan, data_dir, suffix)
            except OSError as exc:
                raise RecoveryError(f"cannot write the new metadata store: {exc}") from exc
            report.store = str(store)
            report.moved_aside = str(moved) if moved is not None else ""
    return report
