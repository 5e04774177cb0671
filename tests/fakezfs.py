"""A test double of ZFS: the few libzfs_core calls and ``zfs``/``zpool`` commands Stratum uses.

Not used by Stratum itself: the normal test suite runs the ZFS pool logic against it on
machines without ZFS (the real thing is tested in a VM, ``tests/zfs``). It keeps pools,
datasets with their properties, snapshots and mounts in memory; a mount creates the
mount-point directory for real, so files written there land in the test's directory.

It enforces what the real ones would refuse and a careless caller could get wrong: names
and property keys as bytes, index properties (compression, atime, canmount) and recordsize
as numbers, a missing parent, one pool per ``lzc_snapshot`` call and one snapshot per
dataset in it, mounting on a non-empty directory. Every call made from a thread that runs
an asyncio event loop is recorded in ``loop_calls`` (ZFS calls must not block the loop).
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from stratum.pool.base import PoolError
from stratum.pool.zfs import ZfsTools

_COMPRESSION_NAMES = {1: "on", 2: "off", 3: "lzjb", 10: "gzip", 14: "zle", 15: "lz4", 16: "zstd"}
_COMPRESSION_NAMES.update({4 + n: f"gzip-{n}" for n in range(1, 10) if n != 6})
_INDEX_VALUES = {
    "compression": set(_COMPRESSION_NAMES),
    "atime": {0, 1},
    "canmount": {0, 1, 2},
}
_CANMOUNT_NAMES = {0: "off", 1: "on", 2: "noauto"}
_INHERITED_DEFAULTS: dict[str, int] = {"compression": 2, "atime": 1, "recordsize": 128 * 1024}


class ZFSError(Exception):
    errno = 0

    def __init__(self, name: bytes | str = b"") -> None:
        super().__init__(name)
        self.name = name


class FilesystemExists(ZFSError):
    errno = errno.EEXIST


class FilesystemNotFound(ZFSError):
    errno = errno.ENOENT


class ParentNotFound(ZFSError):
    errno = errno.ENOENT


class PropertyInvalid(ZFSError):
    errno = errno.EINVAL


class SnapshotExists(ZFSError):
    errno = errno.EEXIST


class DuplicateSnapshots(ZFSError):
    errno = errno.EXDEV


class PoolsDiffer(ZFSError):
    errno = errno.EXDEV


class PoolUnavailable(ZFSError):
    errno = errno.EIO


class MultipleOperationsFailure(ZFSError):
    def __init__(self, errors: list[ZFSError]) -> None:
        super().__init__()
        self.errors = errors
        self.errno = errors[0].errno


class SnapshotFailure(MultipleOperationsFailure):
    pass


class SnapshotDestructionFailure(MultipleOperationsFailure):
    pass


exceptions = SimpleNamespace(
    ZFSError=ZFSError,
    FilesystemExists=FilesystemExists,
    FilesystemNotFound=FilesystemNotFound,
    ParentNotFound=ParentNotFound,
    PropertyInvalid=PropertyInvalid,
    SnapshotExists=SnapshotExists,
    DuplicateSnapshots=DuplicateSnapshots,
    PoolsDiffer=PoolsDiffer,
    SnapshotFailure=SnapshotFailure,
    SnapshotDestructionFailure=SnapshotDestructionFailure,
)


@dataclass
class _Dataset:
    props: dict[str, int | str] = field(default_factory=dict)  # set locally
    used: int = 0  # own bytes (children add theirs)
    mounted: bool = False


def _pool(name: str) -> str:
    return name.split("@", 1)[0].split("/", 1)[0]


def _text(name: object) -> str:
    if not isinstance(name, bytes):
        raise TypeError(f"libzfs_core takes names as bytes, got {name!r}")
    return name.decode()


class FakeZfs:
    """Pools, datasets and snapshots in memory; ``tools()`` is what Stratum is handed."""

    def __init__(self) -> None:
        self.health: dict[str, str] = {}  # imported pools
        self.free: dict[str, int] = {}  # bytes free per pool
        self.datasets: dict[str, _Dataset] = {}
        self.snapshots: list[str] = []  # in creation order
        self.loop_calls: list[str] = []
        self.commands: list[list[str]] = []
        self.lzc = SimpleNamespace(
            exceptions=exceptions,
            lzc_exists=self.lzc_exists,
            lzc_create=self.lzc_create,
            lzc_snapshot=self.lzc_snapshot,
            lzc_destroy_snaps=self.lzc_destroy_snaps,
        )

    def tools(self) -> ZfsTools:
        return ZfsTools(self.lzc, self.run)

    # -- setting the scene ------------------------------------------------------------

    def add_pool(self, name: str, *, free: int = 10 << 30, mountpoint: str = "") -> None:
        self.health[name] = "ONLINE"
        self.free[name] = free
        self.datasets[name] = _Dataset({"mountpoint": mountpoint or f"/{name}"})

    def add_dataset(self, name: str, *, mountpoint: str = "", mounted: bool = True) -> None:
        """A dataset made by someone else (``zfs create``), mounted where it says."""
        props: dict[str, int | str] = {"mountpoint": mountpoint} if mountpoint else {}
        self.datasets[name] = _Dataset(props)
        if mounted:
            self._mount(name)

    def set_used(self, name: str, used: int) -> None:
        self.datasets[name].used = used

    def unmount(self, name: str) -> None:
        self.datasets[name].mounted = False

    # -- properties -------------------------------------------------------------------

    def _prop(self, name: str, prop: str) -> int | str:
        """A property's value as ``zfs get -p`` prints it."""
        ds = self.datasets[name]
        if prop == "used":
            return ds.used + sum(
                self._int(c, "used") for c in self.datasets if c.startswith(name + "/")
            )
        if prop == "available":
            return self._available(name)
        if prop == "mounted":
            return "yes" if ds.mounted else "no"
        if prop == "quota":  # not inherited
            return ds.props.get("quota", 0)
        if prop == "canmount":  # not inherited either
            return _CANMOUNT_NAMES[int(ds.props.get("canmount", 1))]
        if prop == "mountpoint":
            if "mountpoint" in ds.props:
                return ds.props["mountpoint"]
            parent, _, last = name.rpartition("/")
            return f"{self._prop(parent, 'mountpoint')}/{last}"
        if prop in ds.props:
            value = ds.props[prop]
        elif "/" in name:
            value = self._prop(name.rpartition("/")[0], prop)
        else:
            value = _INHERITED_DEFAULTS.get(prop, "-")
        if prop == "compression" and isinstance(value, int):
            return _COMPRESSION_NAMES[value]
        return value

    def _int(self, name: str, prop: str) -> int:
        value = self._prop(name, prop)
        assert isinstance(value, int)
        return value

    def _available(self, name: str) -> int:
        free = self.free[_pool(name)]
        quota = self.datasets[name].props.get("quota", 0)
        if isinstance(quota, int) and quota:
            free = min(free, max(0, quota - self._int(name, "used")))
        if "/" in name:
            free = min(free, self._available(name.rpartition("/")[0]))
        return free

    def _check_props(self, name: str, props: dict[Any, Any]) -> dict[str, int | str]:
        out: dict[str, int | str] = {}
        for key, value in props.items():
            prop = _text(key)
            if prop in _INDEX_VALUES or prop in ("recordsize", "quota"):
                # libzfs_core passes values to the kernel as they are: numbers here
                if isinstance(value, bool) or not isinstance(value, int):
                    raise PropertyInvalid(name.encode())
                if prop in _INDEX_VALUES and value not in _INDEX_VALUES[prop]:
                    raise PropertyInvalid(name.encode())
                if prop == "recordsize" and (value & (value - 1) or not 512 <= value <= 1 << 20):
                    raise PropertyInvalid(name.encode())
                out[prop] = value
            elif prop == "mountpoint":
                if not isinstance(value, bytes) or not value.startswith(b"/"):
                    raise PropertyInvalid(name.encode())
                out[prop] = value.decode()
            else:
                raise PropertyInvalid(name.encode())
        return out

    # -- libzfs_core ------------------------------------------------------------------

    def _note_thread(self, call: str) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self.loop_calls.append(call)

    def lzc_exists(self, name: bytes) -> bool:
        self._note_thread("lzc_exists")
        text = _text(name)
        return text in self.datasets or text in self.snapshots

    def lzc_create(
        self, name: bytes, ds_type: str = "zfs", props: dict[bytes, Any] | None = None
    ) -> None:
        self._note_thread("lzc_create")
        text = _text(name)
        if ds_type != "zfs":
            raise ZFSError(name)
        if text in self.datasets:
            raise FilesystemExists(name)
        parent = text.rpartition("/")[0]
        if not parent or parent not in self.datasets:
            raise ParentNotFound(name)
        self.datasets[text] = _Dataset(self._check_props(text, props or {}))

    def lzc_snapshot(self, snaps: list[bytes], props: dict[bytes, Any] | None = None) -> None:
        self._note_thread("lzc_snapshot")
        names = [_text(s) for s in snaps]
        pools = {_pool(n) for n in names}
        errors: list[ZFSError] = []
        filesystems = [n.partition("@")[0] for n in names]
        if len(pools) > 1:
            errors.append(PoolsDiffer(snaps[0]))
        elif len(set(filesystems)) < len(filesystems):
            errors.append(DuplicateSnapshots(snaps[0]))
        else:
            for snap, fs in zip(snaps, filesystems, strict=True):
                if fs not in self.datasets:
                    errors.append(FilesystemNotFound(snap))
                elif snap.decode() in self.snapshots:
                    errors.append(SnapshotExists(snap))
                elif self.health.get(_pool(fs)) not in ("ONLINE", "DEGRADED"):
                    errors.append(PoolUnavailable(snap))
        if errors:
            raise SnapshotFailure(errors)
        self.snapshots += names

    def lzc_destroy_snaps(self, snaps: list[bytes], defer: bool) -> None:
        self._note_thread("lzc_destroy_snaps")
        names = [_text(s) for s in snaps]
        if len({_pool(n) for n in names}) > 1:
            raise SnapshotDestructionFailure([PoolsDiffer(snaps[0])])
        self.snapshots = [s for s in self.snapshots if s not in names]

    # -- the zfs and zpool commands ---------------------------------------------------

    def run(self, argv: Sequence[str]) -> str:
        """What ``zfs``/``zpool`` print for the command lines Stratum uses; PoolError (as
        :func:`stratum.pool.zfs.run_command` raises) when they would fail."""
        self._note_thread(" ".join(argv[:2]))
        args = list(argv)
        self.commands.append(args)
        if args == ["zpool", "list", "-H", "-o", "name,health"]:
            return "".join(f"{n}\t{h}\n" for n, h in self.health.items())
        if args[:5] == ["zfs", "get", "-Hp", "-o", "name,property,value"]:
            props, names = args[5].split(","), args[6:]
            missing = [n for n in names if n not in self.datasets]
            lines = [
                f"{n}\t{p}\t{self._prop(n, p)}\n" for n in names if n not in missing for p in props
            ]
            if missing:
                raise PoolError(f"cannot open '{missing[0]}': dataset does not exist")
            return "".join(lines)
        if args[:2] == ["zfs", "mount"] and len(args) == 3:
            self._mount(args[2])
            return ""
        if args[:5] == ["zfs", "list", "-H", "-o", "name"] and len(args) == 6:
            return self._dataset_of(args[5]) + "\n"
        snapshots = ["zfs", "list", "-H", "-o", "name", "-t", "snapshot", "-s", "createtxg"]
        if args[:11] == [*snapshots, "-d", "1"] and len(args) == 12:
            if args[11] not in self.datasets:
                raise PoolError(f"cannot open '{args[11]}': dataset does not exist")
            return "".join(s + "\n" for s in self.snapshots if s.startswith(args[11] + "@"))
        raise PoolError(f"fakezfs: command not understood: {' '.join(args)}")

    def _mount(self, name: str) -> None:
        if name not in self.datasets:
            raise PoolError(f"cannot open '{name}': dataset does not exist")
        if self.health.get(_pool(name)) not in ("ONLINE", "DEGRADED"):
            raise PoolError(f"cannot mount '{name}': pool I/O is currently suspended")
        if self._prop(name, "canmount") == "off":
            raise PoolError(f"cannot mount '{name}': 'canmount' property is set to 'off'")
        where = Path(str(self._prop(name, "mountpoint")))
        if where.exists() and any(where.iterdir()):
            raise PoolError(f"cannot mount '{where}': directory is not empty")
        where.mkdir(parents=True, exist_ok=True)
        self.datasets[name].mounted = True

    def _dataset_of(self, path: str) -> str:
        if not os.path.exists(path):
            raise PoolError(f"cannot open '{path}': No such file or directory")
        best, longest = "", -1
        for name, ds in self.datasets.items():
            where = str(self._prop(name, "mountpoint"))
            inside = path == where or path.startswith(where.rstrip("/") + "/")
            if ds.mounted and inside and len(where) > longest:
                best, longest = name, len(where)
        if not best:
            raise PoolError(f"cannot open '{path}': not a ZFS filesystem")
        return best
