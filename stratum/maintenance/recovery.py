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
  the volume (its header carries bucket, key and created only, and the version's S3
  metadata when the move knew it);
- every version's data, in each of the above: its ``version_id``, ``order`` (hex) and the
  bucket's ``versioning`` state when it was written (none before versioning: a null version);
- a delete marker, as a zero-byte segment record of kind ``marker`` with the same fields;
- a bucket configuration change (versioning state, Object Lock), as a zero-byte segment
  record of kind ``bucket``; the newest of a bucket is its configuration.

The rebuild:

1. Every disk of every local tier is scanned (the server must be stopped: the segment
   store's ``seg/.lock`` is taken for the whole run). A shard counts when its header and
   footer are intact; a volume is readable with ``k`` of them. Shard indices not found are
   placed where the writer would have put them (``place_shards`` over the tier's disks):
   reads degrade and a scrub rebuilds them there. A small volume is readable when one copy
   is intact; its location lists every intact copy.
2. For each (bucket, key) of a bucket never versioned, the volume with the greatest order
   (its id: ids are time-ordered, :mod:`stratum.service.ids`) wins; a key of a versioned
   bucket gets back all its versions and delete markers, its newest null version only, the
   greatest order being current (:mod:`stratum.maintenance.recovery_versions`). A moved copy
   counts as the volume it copies. Of each version's copies (the original, its manifest and
   parts, copies moves made) the newest readable one holds the data; the object record comes
   from the backup, else the manifest, else the richest header (a move's copy alone lacks
   the S3 metadata: reported). Other volumes and copies, parts no manifest lists and volumes
   naming no object are queued in ``gc``, so the collector frees them. A winner that cannot
   be read keeps its key when a location can be built (reads fail until the missing shards
   come back, and the start-up sweep leaves its shards alone); otherwise its key is reported
   lost. Older versions never stand in for it.
3. With a backup (:mod:`stratum.maintenance.backups`, the newest copy on any disk), users
   (their secrets sealed with ``<data_dir>/user-secrets.key``, which stays: the report names
   the users whose secrets need a key the data directory does not hold), buckets,
   in-flight state (``info``) and the object records of unchanged keys come from it; a
   volume the backup had retired, or older than the backup's newest version of its key and
   not one of its versions, is garbage. A *small* volume older than the backup (less
   :data:`SMALL_PUT_MARGIN`, the time such a PUT may take to commit) that the backup does
   not know was deleted before it. Large volumes are never judged by age: a slow upload
   started before the backup may have committed after it, and deleted large volumes are gone
   from the disks anyway. Objects the backup has in a tier without local disks (cold) are
   restored as it has them. Without a backup, buckets are rebuilt (owner from the newest
   volume's header, created at its oldest volume's time) and users other than root
   (``root-credentials.json`` stays) are lost: their owner ids are reported.
4. A multipart object whose erasure-coded parts are all gone (and no part is damaged) was
   deleted: the collector freed its parts but not its manifest, which stays until segment
   compaction. Uploads not completed are not recovered; their parts become garbage.
5. The new store is written to ``<data_dir>/meta.recovered-<ts>``; then ``meta`` (if
   any) becomes ``meta.broken-<ts>`` and the new one takes its place.

Limits (the report repeats those that apply): segment deletes leave the record in place
(no tombstones yet), so small objects (small versions, delete markers) deleted after the
newest backup -- or ever, without one -- come back, as does the body of a small PUT, a
delete marker or a completion refused after its data was stored. Without a backup, the
configuration record a deleted bucket left may stand for a new bucket of the same name that
never had one. Of PUTs of one key that overlapped, the one *started* last wins. Objects
rebuilt from headers lack additional checksums (x-amz-checksum-*) and metadata replaced
later by a copy onto themselves: neither is in the headers.

The pieces: :mod:`~stratum.maintenance.recovery_disks` finds and locks the disks,
:mod:`~stratum.maintenance.recovery_scan` reads them (step 1),
:mod:`~stratum.maintenance.recovery_plan` decides the records (steps 2 to 4) and fills the
:mod:`~stratum.maintenance.recovery_report`; this module writes the store (step 5) and runs
the whole.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from stratum.block.tierstore import tier_layouts
from stratum.config import Config
from stratum.maintenance.backups import BackupView, find_backups
from stratum.maintenance.recovery_disks import RecoveryError, find_disks, known_missing, lock_disks
from stratum.maintenance.recovery_plan import Plan, plan_recovery
from stratum.maintenance.recovery_report import RecoveryReport
from stratum.maintenance.recovery_scan import FirstSeen, assemble, scan_disk
from stratum.meta import catalog, versions
from stratum.meta.records import UserRecord, VolumeRecord
from stratum.meta.store import MetaStore, Tx
from stratum.service.user_secrets import UserSecrets, sealed_key_id
from stratum.service.users import ROOT_FILE
from stratum.util.fsio import fsync_dir
from stratum.util.keyfile import KeyFileError

WRITE_BATCH = 5000


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
    ops += [functools.partial(versions.add, bucket=b, record=r) for b, r in plan.versions]
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


def _check_user_key(users: Sequence[UserRecord], data_dir: Path, report: RecoveryReport) -> None:
    """Whether the users' sealed secrets open with the data directory's key file."""
    secrets = UserSecrets(data_dir)
    try:
        held = secrets.key_id() or ""
    except KeyFileError:
        held = "unreadable"
    needed = {u.access_key: sealed_key_id(u.sealed_secret) for u in users if u.sealed_secret}
    report.users_locked = sorted(k for k, key_id in needed.items() if key_id != held)
    report.users_key_needed = ", ".join(sorted({needed[k] for k in report.users_locked}))
    report.users_key_file = str(secrets.path)
    report.users_key_held = held


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
                scans = list(pool.map(functools.partial(scan_disk, seen=FirstSeen()), disks))
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
        _check_user_key(plan.users, data_dir, report)
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
