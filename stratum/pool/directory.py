"""Disks that are plain directories: what Stratum did before pools (the default backend)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from stratum.pool.base import ONLINE, UNAVAIL, Capacity, DiskBacking, Pool


class DirectoryPool(Pool):
    """Nothing to prepare (opening the disk creates the directory); capacity is statvfs."""

    backing = "directory"

    def prepare(self, path: Path) -> None:
        return None

    def describe(self, paths: Sequence[Path]) -> dict[Path, DiskBacking]:
        out: dict[Path, DiskBacking] = {}
        for path in paths:
            try:
                usage = shutil.disk_usage(path)
            except OSError:
                # Whether that makes the disk offline is the disk checks' call (a missing
                # directory, a missing identity file): a directory has no health of its own.
                out[path] = DiskBacking(self.backing, path, health=UNAVAIL)
                continue
            out[path] = DiskBacking(
                self.backing,
                path,
                health=ONLINE,
                used_bytes=usage.total - usage.free,
                free_bytes=usage.free,
            )
        return out

    def capacity(self, paths: Sequence[Path]) -> Capacity:
        seen: set[int] = set()
        used = total = 0
        for path in paths:
            try:
                device = os.stat(path).st_dev
                if device in seen:  # several disk directories on one filesystem
                    continue
                usage = shutil.disk_usage(path)
            except OSError:
                continue
            seen.add(device)
            used += usage.total - usage.free
            total += usage.total
        return Capacity(used, total)
