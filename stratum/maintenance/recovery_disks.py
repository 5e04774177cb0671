"""The pool's disks as recovery finds them (:mod:`stratum.maintenance.recovery`).

Every disk of every local tier named in the configuration, identified by its identity file
(or, failing that, the header of its first segment file); missing disks whose id a backup
remembers; and the locks that keep a running server and a recovery apart.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from stratum.block.disk import IDENTITY_FILE
from stratum.block.segments_format import (
    SEGMENT_HEADER_SIZE,
    SegmentFormatError,
    decode_segment_header,
    list_segments,
    segment_name,
)
from stratum.block.tierstore import DISKS_KEY, tier_layouts
from stratum.config import Config
from stratum.maintenance.backups import BackupView


class RecoveryError(Exception):
    """Recovery cannot run (the message says why)."""


class ServerRunning(RecoveryError):
    """A process holds a disk of the pool: the server must be stopped first."""


@dataclass(frozen=True)
class PoolDisk:
    tier: str
    path: Path
    disk_id: str
    scanned: bool = True  # False: missing now; its id is known from the backup


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
