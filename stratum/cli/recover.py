"""``stratum recover-metadata``: rebuild the metadata store from the disks.

Exit codes: 0 when everything found on the disks was recovered, 1 when something could
not be (the report says what), 2 when the server is running or the config is wrong.
Uploads in progress are never recovered and do not change the exit code.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TextIO

from stratum.config import Config
from stratum.maintenance.recovery import recover
from stratum.maintenance.recovery_disks import RecoveryError, ServerRunning
from stratum.maintenance.recovery_plan import SMALL_PUT_MARGIN
from stratum.maintenance.recovery_report import Lost, RecoveryReport
from stratum.util.units import format_size

MAX_LISTED = 50


def recover_metadata(config: Config, *, dry_run: bool = False, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    started = time.time()
    try:
        report = recover(config, dry_run=dry_run, now=started)
    except ServerRunning as exc:
        print(f"stratum: {exc}", file=sys.stderr)
        return 2
    except RecoveryError as exc:
        print(f"stratum: {exc}", file=sys.stderr)
        return 1
    out.write(render(report, now=started))
    return 0 if report.complete else 1


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _listed(lines: list[str], items: Sequence[str], indent: str = "    ") -> None:
    lines += [indent + item for item in items[:MAX_LISTED]]
    if len(items) > MAX_LISTED:
        lines.append(f"{indent}... and {len(items) - MAX_LISTED} more")


def _losses(lines: list[str], title: str, losses: Sequence[Lost], kept: str) -> None:
    if not losses:
        return
    lines.append(f"  {title} ({len(losses)}):")
    _listed(
        lines,
        [
            f"{x.name}: {x.why}" + (f" ({kept})" if x.restored else " (not restored)")
            for x in losses
        ],
    )


def render(report: RecoveryReport, *, now: float) -> str:
    """The report, human readable."""
    r = report
    lines = [f"stratum recover-metadata: scanned {len(r.disks)} disk(s)"]
    _listed(lines, r.disks, "  ")
    if r.backup_created is not None:
        lines.append(
            f"Backup used: {r.backup}, taken {_when(r.backup_created)} "
            f"({_age(now - r.backup_created)} ago): users and buckets come from it."
        )
    else:
        lines.append(
            "No metadata backup found: buckets are rebuilt from the disks and users other "
            "than root cannot be recovered."
        )
    lines += [f"  unusable backup skipped: {problem}" for problem in r.backups_unusable]

    lines += ["", "Recovered"]
    lines.append(
        f"  objects  {r.objects:>8}  ({r.small} small, {r.large} large, {r.multipart} multipart;"
        f" {r.from_headers} rebuilt from disk headers alone)"
    )
    if r.versions:
        lines.append(
            f"  versions {r.versions:>8}  noncurrent versions of versioned buckets' keys "
            f"({r.markers} delete markers in all)"
        )
    lines.append(
        f"  buckets  {r.buckets:>8}  ({r.buckets_from_backup} from the backup, "
        f"{r.buckets_rebuilt} rebuilt from the disks)"
    )
    root = f"root keeps id {r.root_id[:16]}..." if r.root_id else "no root-credentials.json!"
    if r.backup_created is not None:
        lines.append(f"  users    {r.users:>8}  from the backup, besides root ({root})")
    else:
        lines.append(f"  users    {'root':>8}  only, without a backup ({root})")
    lines.append(
        f"  garbage  {r.garbage:>8}  volumes queued for the collector (older versions, deleted"
        " objects, parts of unfinished uploads)"
    )

    lines += ["", "Not recovered"]
    before = len(lines)
    if r.disk_problems:
        lines.append(f"  disks or files that could not be read ({len(r.disk_problems)}):")
        _listed(lines, r.disk_problems)
    _losses(
        lines,
        "large objects with fewer shards than needed",
        r.unreadable,
        "key kept: reads fail until the missing shards come back",
    )
    _losses(lines, "small objects with every copy damaged", r.damaged, "key kept")
    _losses(
        lines,
        "objects restored without their content type and user metadata",
        r.reduced,
        "data restored",
    )
    _losses(
        lines,
        "multipart objects missing parts",
        r.missing_parts,
        "key kept: reads of the missing parts fail",
    )
    if r.lost_owners:
        lines.append(
            f"  users lost ({len(r.lost_owners)}): their keys are not on the disks. Re-add each "
            "with `stratum user add ACCESS_KEY SECRET_KEY --id OWNER_ID`: it owns its buckets "
            "again."
        )
        _listed(lines, [f"owner {o} owns {', '.join(b)}" for o, b in r.lost_owners.items()])
    if r.users_locked:
        held = {"": "is missing", "unreadable": "cannot be read"}.get(
            r.users_key_held, f"holds key {r.users_key_held}"
        )
        lines.append(
            f"  users who cannot sign in ({len(r.users_locked)}): their secrets are sealed with "
            f"key {r.users_key_needed} and {r.users_key_file} {held}. Put that file back (from a "
            "backup of the data directory) before starting the server; if it is lost for good, "
            "give each a new secret: `stratum user secret ACCESS_KEY NEW_SECRET --new-key`."
        )
        _listed(lines, r.users_locked)
    if len(lines) == before:
        lines.append("  nothing")
    if r.uploads_dropped:
        lines += ["", "Not recovered, by design"]
        lines.append(
            f"  multipart uploads in progress (or aborted) dropped ({len(r.uploads_dropped)}):"
            " their parts are queued for deletion; clients must upload again"
        )
        dropped = [
            f"{u.bucket}/{u.key} upload {u.upload_id}: {u.parts} part(s), {format_size(u.size)}"
            for u in r.uploads_dropped
        ]
        _listed(lines, dropped)

    notes: list[str] = []
    if not r.root_id:
        notes.append(
            "root-credentials.json is missing from the data directory: put it back before "
            "starting the server, or a new root is generated that owns none of these buckets."
        )
    if r.disk_problems or r.unreadable:
        notes.append(
            "If a disk is missing or unmounted, fix that and run recover-metadata again before "
            "starting the server: volumes the new store does not name are removed at start."
        )
    if r.gone_since_backup:
        notes.append(
            f"{r.gone_since_backup} key(s) of the backup have no data on the disks any more: "
            "deleted (or replaced) since the backup was taken."
        )
    if r.backup_created is not None:
        notes.append(
            "Users come from the backup: users added since are missing (those owning buckets "
            "or objects are listed above), users removed since are back."
        )
    if r.remote:
        notes.append(
            f"{r.remote} object(s) of a tier without local disks (cold) were restored as the "
            "backup recorded them."
        )
    if r.cold_tier:
        notes.append(
            "The cold tier is not scanned (its provider sees no names): objects moved there "
            + ("after the backup" if r.backup_created is not None else "at any time")
            + " are not recovered."
        )
    if r.deleted_multipart:
        notes.append(
            f"{r.deleted_multipart} multipart object(s) whose parts were freed (deleted objects) "
            "left a manifest behind: not restored."
        )
    if r.unnamed:
        notes.append(f"{r.unnamed} volume(s) name no object in their headers: left for removal.")
    since = "after the backup" if r.backup_created is not None else "at any time"
    notes.append(
        f"Small objects (and refused small PUTs) deleted {since} may have reappeared: the segment"
        " store has no delete tombstones yet."
        + (
            f" The backup settles deletes older than {SMALL_PUT_MARGIN / 60:.0f} min before it."
            if r.backup_created is not None
            else ""
        )
    )
    if r.from_headers:
        notes.append(
            f"{r.from_headers} object(s) were rebuilt from disk headers: additional checksums "
            "(x-amz-checksum-*) and metadata later replaced by a copy onto the object itself are "
            "not in the headers and are not restored."
        )
    lines += ["", "Notes"]
    lines += [f"  - {note}" for note in notes]

    lines.append("")
    if r.dry_run:
        lines.append("Dry run: nothing was written.")
    else:
        moved = f" (the previous one is kept as {r.moved_aside})" if r.moved_aside else ""
        lines.append(f"Wrote the new metadata store to {r.store}{moved}.")
    if r.complete and r.uploads_dropped:
        lines.append(
            "Result: everything found on the disks was recovered, except uploads in progress "
            "(never recovered)."
        )
    elif r.complete:
        lines.append("Result: everything found on the disks was recovered.")
    else:
        lines.append("Result: some data or users could not be recovered (see above).")
    return "\n".join(lines) + "\n"
