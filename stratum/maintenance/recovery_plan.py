"""Deciding every record of the recovered store from what the disks and a backup hold.

The rules are those of :mod:`stratum.maintenance.recovery` (steps 2 to 4): a key gets back
its versions (:mod:`stratum.maintenance.recovery_versions`: in a never-versioned bucket, its
newest volume), a backup says what was replaced or deleted before it was taken, what nothing
uses goes to the garbage queue.
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
    AMEND,
    BUCKET,
    MANIFEST,
    MARKER,
    OBJECT,
    PART,
    FoundVolume,
    carry_access,
    volume_time,
)
from stratum.maintenance.recovery_versions import (
    SMALL_PUT_MARGIN,
    Candidate,
    apply_amend,
    apply_config,
    backup_key,
    identify,
    keep,
    marker_version,
    newest_amends,
    newest_configs,
)
from stratum.meta.records import BucketRecord, ObjectRecord, UserRecord, VolumeRecord
from stratum.meta.versions import order_of
from stratum.service import amend
from stratum.service.objects import MULTI

__all__ = ["SMALL_PUT_MARGIN", "Plan", "plan_recovery"]

RECOVERED_KEY = b"recovered"  # info: {"version": 1, "at": ..., "backup_created": ...}


@dataclass
class Plan:
    """The records of the new store, and the report."""

    report: RecoveryReport
    buckets: list[BucketRecord] = field(default_factory=list)
    users: list[UserRecord] = field(default_factory=list)
    objects: list[tuple[str, ObjectRecord]] = field(default_factory=list)
    # every version of the keys of buckets ever versioned (current ones included)
    versions: list[tuple[str, ObjectRecord]] = field(default_factory=list)
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
        self.configs: dict[str, list[FoundVolume]] = {}  # bucket -> config records, newest first
        self.amends: dict[tuple[str, str, str], FoundVolume] = {}  # each version's newest
        self.states: dict[str, str] = {}  # bucket -> versioning state
        self.versioned_buckets: set[str] = set()  # with a key restored as versions
        self.written_states: dict[str, str] = {}  # bucket -> state its newest write recorded

    def run(self) -> Plan:
        by_key: dict[tuple[str, str], dict[str, list[FoundVolume]]] = {}
        for volume in self.found.values():
            kind = volume.kind
            if kind in (OBJECT, MANIFEST, MARKER) and volume.bucket and volume.key:
                logical = by_key.setdefault((volume.bucket, volume.key), {})
                logical.setdefault(volume.logical_id, []).append(volume)
            elif kind == PART and volume.bucket:
                self.parts[volume.volume_id] = volume
            elif kind not in (BUCKET, AMEND):
                self.report.unnamed += 1
        self.configs = newest_configs(self.found)
        self.amends = newest_amends(self.found)
        newest: dict[str, FoundVolume] = {}
        for volume in self.found.values():
            if volume.kind != BUCKET and volume.bucket and "versioning" in volume.meta:
                other = newest.get(volume.bucket)
                if other is None or volume.created > other.created:
                    newest[volume.bucket] = volume
        self.written_states = {name: _written_in(v) for name, v in newest.items()}
        states = {b.name: b.versioning for b in self.backup.buckets()} if self.backup else {}
        for name, records in self.configs.items():
            state = records[0].meta.get("versioning")
            states[name] = state if state in ("Enabled", "Suspended") else ""
        self.states = states
        for (bucket, key), logical in sorted(by_key.items()):
            self._restore_key(bucket, key, logical)
        self._since_backup()
        dropped = self._dropped_uploads()
        self._buckets_and_users(dropped)
        self._garbage()
        return self.plan

    def _restore_key(self, bucket: str, key: str, logical: dict[str, list[FoundVolume]]) -> None:
        """Restore the key's versions (or, never versioned, its newest volume)."""
        known = backup_key(self.backup, bucket, key)
        candidates = [
            identify(lid, copies, self._manifest_record(copies)) for lid, copies in logical.items()
        ]
        versioned = bool(self.states.get(bucket)) or any(
            c.version_id != "null" or c.marker for c in candidates
        )
        if versioned:
            self.versioned_buckets.add(bucket)
        restored: list[tuple[Candidate, ObjectRecord, VolumeRecord]] = []
        for cand in keep(candidates, known, self.backup, versioned):
            if cand.marker:
                if any(c.location is not None for c in cand.copies):
                    restored.append((cand, *marker_version(bucket, key, cand)))
                    self.live |= {c.volume_id for c in cand.copies if c.location is not None}
                    self.report.markers += 1
                continue
            from_backup = known.by_volume.get(cand.logical_id)
            rebuilt = self._restore(bucket, key, cand.logical_id, cand.copies, from_backup)
            if rebuilt is not None:
                record, volume = rebuilt
                if from_backup is None:  # as the disks say (a manifest's record may be older)
                    record.version_id, record.order = cand.version_id, cand.order.hex()
                    volume.order = record.order
                restored.append((cand, record, volume))
        if versioned or not restored:
            restored += self._remote_versions(bucket, known, {c.logical_id for c in candidates})
        if not restored:
            return
        current = max(restored, key=lambda r: r[0].rank)
        for _cand, record, volume in restored:
            applied = apply_amend(bucket, record, self.amends)
            if applied is not None:
                self.live.add(applied)
            self.plan.volumes.append(volume)
            self.restored.add(volume.volume_id)
            if versioned:
                self.plan.versions.append((bucket, record))
        if not current[0].marker:
            self.plan.objects.append((bucket, current[1]))
            self.report.objects += 1
        self.report.versions += len(restored) - 1 if versioned else 0

    def _remote_versions(
        self, bucket: str, known: Any, on_disks: set[str]
    ) -> list[tuple[Candidate, ObjectRecord, VolumeRecord]]:
        """Versions the backup has in a tier without local disks (cold), as it has them."""
        out = []
        for record in known.history:
            if record.volume_id in on_disks or record.delete_marker:
                continue
            volume = self._previous(record.volume_id)
            if volume is not None and volume.tier not in self.local_tiers:
                cand = Candidate(record.volume_id, [], record.version_id, order_of(record), False)
                out.append((cand, record, volume))
                self.report.remote += 1
        return out

    def _manifest_record(self, copies: list[FoundVolume]) -> ObjectRecord | None:
        for copy in copies:
            if copy.kind == MANIFEST:
                manifest, _why = self._manifest(copy)
                if manifest is not None:
                    record: ObjectRecord = manifest["record"]
                    return record
        return None

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
    ) -> tuple[ObjectRecord, VolumeRecord] | None:
        """A version of a key, rebuilt from the copies of its volume (the original, a manifest
        and its parts, copies a tier move made), newest usable copy first; ``current`` is the
        backup's record of it. None (reported) when no copy can serve it."""
        report, name = self.report, f"{bucket}/{key}"
        copies = sorted(copies, key=lambda c: c.volume_id, reverse=True)
        if current is not None and current.volume_id == logical_id:
            previous = self._previous(logical_id)
            if previous is not None and previous.tier not in self.local_tiers:
                remote_copy = str(previous.location.get("key", ""))[-32:]
                if not any(c.volume_id > remote_copy for c in copies):
                    # In a tier without local disks when the backup was taken, and not
                    # moved back since: what lingers here is older than that copy.
                    report.remote += 1
                    return current, previous
        built = [self._build(c, logical_id) for c in copies]
        usable = [b for b in built if b.volume is not None]
        chosen = next((b for b in usable if not b.problems), usable[0] if usable else None)
        manifests = [self._manifest(c)[0] for c in copies if c.kind == MANIFEST]
        manifest = next((m for m in manifests if m is not None), None)
        if chosen is None or chosen.volume is None:
            if all(b.deleted for b in built if b.problems) and any(b.deleted for b in built):
                report.deleted_multipart += 1  # the collector freed its parts, not its manifest
                return None
            why = "; ".join(p for b in built for p in b.problems)
            lost = Lost(name, logical_id, why)
            if manifest is not None or any(c.kind == MANIFEST for c in copies):
                report.missing_parts.append(lost)
            elif any(c.layout == "ec" for c in copies):
                report.unreadable.append(lost)
            else:
                report.damaged.append(lost)
            return None
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
        self.live |= chosen.uses
        if manifest is not None or record.parts:
            report.multipart += 1
        elif volume.layout == "seg":
            report.small += 1
        else:
            report.large += 1
        return record, volume

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
        changed = meta.get("last_modified")  # a tier move's copy names the record's own
        modified = float(changed) if isinstance(changed, int | float) else source.created
        record = ObjectRecord(
            key=source.key,
            volume_id=logical_id,
            size=volume.size,
            etag=f'"{volume.md5}"',
            last_modified=modified,
            content_type=str(meta.get("content_type") or "binary/octet-stream"),
            user_meta=_str_map(meta.get("user_meta")),
            headers=_str_map(meta.get("headers")),
            storage_class=str(meta.get("storage_class") or ""),
            owner_id=str(meta.get("owner_id") or ""),  # "" : the bucket's owner, set later
            tags=_str_map(meta.get("tags")),
            acl=dict(meta.get("acl") or {}),
        )
        amend.apply_fields(record, meta.get(amend.AT_CREATION))
        return record

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
        # A bucket is rebuilt for what it holds: a configuration record alone may be what a
        # deleted bucket left (segment deletes leave records in place).
        needed = {bucket for bucket, _record in plan.objects + plan.versions}
        needed |= {u.bucket for u in dropped}
        seen: dict[str, list[FoundVolume]] = {}
        for volume in self.found.values():
            if volume.bucket in needed and volume.bucket not in buckets:
                seen.setdefault(volume.bucket, []).append(volume)
        rebuilt = set(seen)
        for name, volumes in sorted(seen.items()):
            owned = [v for v in volumes if v.meta.get("owner_id")] or volumes
            newest = max(owned, key=lambda v: v.volume_id)
            buckets[name] = BucketRecord(
                name=name,
                owner_id=str(newest.meta.get("owner_id") or self.root_id),
                created=min(v.created for v in volumes),
                region=self.region,
                versioning=_written_in(newest),
            )
            report.buckets_rebuilt += 1
        for name, records in self.configs.items():
            bucket = buckets.get(name)
            if bucket is not None and apply_config(bucket, records, name in rebuilt):
                self.live.add(bucket.config_record["volume_id"])
                report.bucket_configs += 1
        for name in self.versioned_buckets:
            if not buckets[name].versioning:  # versions on the disks, their record lost
                buckets[name].versioning = self.written_states.get(name) or "Enabled"
        for bucket_name, record in plan.objects + plan.versions:
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

        An object (or version) in a tier without local disks (cold) is restored as the backup
        has it: nothing on the local disks can say it moved or went. Others were deleted or
        replaced since the backup.
        """
        backup = self.backup
        if backup is None:
            return
        restored = {(bucket, r.key) for bucket, r in self.plan.objects + self.plan.versions}
        reported = {lost.name for lost in self._losses()}
        keys = {(bucket, record.key) for bucket, record in backup.objects()}
        if "versions" in backup.tx.dbs:
            for dbkey, raw in backup.items("versions"):
                name = dbkey.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")
                keys.add((name, ObjectRecord.decode(raw).key))
        for bucket, key in sorted(keys - restored):
            if f"{bucket}/{key}" in reported:
                continue
            before = len(self.plan.objects) + len(self.plan.versions)
            self._restore_key(bucket, key, {})
            if len(self.plan.objects) + len(self.plan.versions) == before:
                self.report.gone_since_backup += 1

    def _losses(self) -> list[Lost]:
        return self.report.unreadable + self.report.damaged + self.report.missing_parts


def _written_in(volume: FoundVolume) -> str:
    """The versioning state its header says its bucket was in when it was written."""
    state = volume.meta.get("versioning")
    return state if state in ("Enabled", "Suspended") else ""


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
