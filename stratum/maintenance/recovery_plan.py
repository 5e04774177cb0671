"""Deciding every record of the recovered store from what the disks and a backup hold.

The rules are those of :mod:`stratum.maintenance.recovery` (steps 2 to 4): the newest
volume of each key wins, a backup says what was replaced or deleted before it was taken,
what nothing uses goes to the garbage queue.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stratum.block.shardfile import is_volume_id
from stratum.block.tierstore import DISKS_KEY
from stratum.maintenance.backups import BackupView
from stratum.maintenance.recovery_disks import PoolDisk
from stratum.maintenance.recovery_report import DroppedUpload, Lost, RecoveryReport
from stratum.maintenance.recovery_scan import (
    MANIFEST,
    OBJECT,
    PART,
    FoundVolume,
    carry_access,
    volume_time,
)
from stratum.meta.records import BucketRecord, ObjectRecord, UserRecord, VolumeRecord
from stratum.service.objects import MULTI

SMALL_PUT_MARGIN = 600.0  # seconds a small PUT may take from its volume id to its commit
RECOVERED_KEY = b"recovered"  # info: {"version": 1, "at": ..., "backup_created": ...}


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
        carry_access(volume, self._previous(logical_id))
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
