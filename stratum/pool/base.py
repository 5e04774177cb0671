"""What a tier's disks are made of: the small interface the storage layer uses.

A tier's disks are directories. What backs each directory is a *pool* implementation:

- :class:`~stratum.pool.directory.DirectoryPool`: the directory is all there is (a disk
  mounted there, or just a folder);
- :class:`~stratum.pool.zfs.ZfsPool`: the directory is the mount point of a ZFS dataset
  ``<zfs_parent>/<name of the directory>``, which Stratum creates when it is missing.

Every method here is blocking (statvfs, libzfs_core, ``zfs``/``zpool`` commands): call them
at start-up or from an executor, never on the event loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Pool health as ``zpool list -o health`` spells it. A directory is "ONLINE" while it can be
# reached (statvfs works) and "UNAVAIL" when not.
ONLINE = "ONLINE"
DEGRADED = "DEGRADED"
UNAVAIL = "UNAVAIL"
MISSING = "MISSING"  # a pool that is not imported: not one of zpool's own states
UNKNOWN = "UNKNOWN"  # `zpool list` failed: the disks' own checks decide
# States in which a pool cannot serve data: its disks are treated as offline. DEGRADED is
# not one of them (a mirror or raidz lost a device, but every block can still be read).
FAILED_HEALTH = frozenset({"FAULTED", UNAVAIL, "SUSPENDED", "REMOVED", "OFFLINE", MISSING})


class PoolError(Exception):
    """A disk's backing cannot be prepared or inspected; the message names path and dataset."""


@dataclass(frozen=True)
class DiskBacking:
    """What backs one disk directory, its capacity and health (a snapshot in time).

    ``problem`` is empty while the backing can serve data, else why not (the disk is then
    offline, whatever its directory looks like).
    """

    backing: str  # "directory" or "zfs"
    path: Path
    dataset: str = ""  # the ZFS dataset mounted at path ("" for a directory)
    pool: str = ""  # the zpool of the dataset
    health: str = ONLINE
    used_bytes: int = 0
    free_bytes: int = 0
    quota_bytes: int = 0  # 0: no quota
    problem: str = ""
    properties: dict[str, str] = field(default_factory=dict)  # zfs: compression, recordsize...

    def to_dict(self) -> dict[str, object]:
        """The fields ``stratum disk list`` and the admin status show."""
        return {
            "backing": self.backing,
            "dataset": self.dataset,
            "zpool": self.pool,
            "health": self.health,
            "used_bytes": self.used_bytes,
            "free_bytes": self.free_bytes,
            "quota_bytes": self.quota_bytes,
        }


@dataclass(frozen=True)
class Capacity:
    """Bytes used and the total a tier can hold (used + what can still be written)."""

    used: int
    total: int


class Pool(ABC):
    """The backing of one tier's disks."""

    backing: str

    @abstractmethod
    def prepare(self, path: Path) -> None:
        """Make ``path`` ready to be opened as a disk (create and mount what is missing).

        Raises :class:`PoolError` naming the path when it cannot be.
        """

    @abstractmethod
    def describe(self, paths: Sequence[Path]) -> dict[Path, DiskBacking]:
        """Backing, capacity and health of each path, now. Never raises for one bad path:
        its :class:`DiskBacking` carries the ``problem``."""

    @abstractmethod
    def capacity(self, paths: Sequence[Path]) -> Capacity:
        """What the tier on ``paths`` holds and can hold, space shared by several disks
        (one filesystem, one zpool) counted once."""

    def snapshot_datasets(self, paths: Sequence[Path]) -> list[str]:
        """The datasets a ``stratum snapshot --data`` takes of these disks (none: not ZFS)."""
        return []
