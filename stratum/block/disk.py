"""A disk of a pool: one directory, with an identity file.

Layout of a disk directory (format version 1)::

    <disk>/stratum-disk.json   {"format": "stratum-disk", "version": 1, "disk_id": "<32 hex>",
                                "created": <unix seconds>}
    <disk>/tmp/                files being written; anything here at start is an orphan
    <disk>/ec/                 erasure-coded shard files   (see stratum.block.shardfile)
    <disk>/seg/                packed small-object segments (see stratum.block.segments)

The identity file lets metadata name a disk by id rather than by path, so a pool's
disks can be listed in any order, and a disk replaced at the same mount point (an empty
directory, so a new id) is recognised as needing a rebuild.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from stratum.util.fsio import write_file_durably

IDENTITY_FILE = "stratum-disk.json"
DISK_FORMAT_VERSION = 1


class DiskError(Exception):
    """A disk directory that cannot be used; the message names the path."""


@dataclass(frozen=True)
class Disk:
    """An opened disk directory with a stable id."""

    path: Path
    disk_id: str

    @property
    def tmp_dir(self) -> Path:
        return self.path / "tmp"

    @property
    def ec_dir(self) -> Path:
        return self.path / "ec"

    @property
    def seg_dir(self) -> Path:
        return self.path / "seg"

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.path).free

    def total_bytes(self) -> int:
        return shutil.disk_usage(self.path).total


def open_disk(path: Path, create: bool = True, expected_id: str | None = None) -> Disk:
    """Open (and on first use initialise) a disk directory.

    ``expected_id`` is the id metadata already knows for this path: a directory without an
    identity file (a replaced disk mounted at the same place) takes that id, so the volumes
    that had shards there are rebuilt onto it. Blocking: call at start-up or from an
    executor. Raises :class:`DiskError` naming the path when the directory is missing (and
    ``create`` is false), not a directory, or not writable.
    """
    path = path.absolute()
    try:
        if not path.exists():
            if not create:
                raise DiskError(f"disk directory {path} does not exist")
            path.mkdir(parents=True, exist_ok=True)
        if not path.is_dir():
            raise DiskError(f"disk path {path} is not a directory")
        ident = path / IDENTITY_FILE
        if ident.exists():
            record = json.loads(ident.read_text())
            if record.get("format") != "stratum-disk" or not isinstance(record.get("disk_id"), str):
                raise DiskError(f"{ident} is not a Stratum disk identity file")
            if int(record.get("version", 0)) > DISK_FORMAT_VERSION:
                raise DiskError(f"{ident} has a newer format version than this Stratum knows")
            disk_id = record["disk_id"]
        else:
            disk_id = expected_id or uuid.uuid4().hex
            record = {
                "format": "stratum-disk",
                "version": DISK_FORMAT_VERSION,
                "disk_id": disk_id,
                "created": int(time.time()),
            }
            write_file_durably(ident, json.dumps(record).encode())
        for sub in ("tmp", "ec", "seg"):
            (path / sub).mkdir(exist_ok=True)
        probe = path / "tmp" / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except DiskError:
        raise
    except (OSError, ValueError) as exc:
        raise DiskError(f"disk directory {path} is not usable: {exc}") from exc
    return Disk(path=path, disk_id=disk_id)
