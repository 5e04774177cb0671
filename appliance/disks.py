"""Which attached disks become pools, in which tier: pure decisions over probed facts.

The rules, in order, for every whole disk the kernel shows:

1. A disk that holds the running system (root or boot partition) is never used.
2. A disk that already is a Stratum pool (a ZFS pool or a GPT partition named
   ``stratum-<tier>-<id>``) is kept as it is, in its tier: never formatted.
3. A disk the user named in ``stratum-appliance.toml`` (``disks``, ``hot`` or ``warm``, by its
   /dev/disk/by-id name or its /dev path) is used, and formatted EVEN IF IT HOLDS DATA.
4. Otherwise only USB disks are considered (``auto_usb``), and only if they hold no data: no
   partition, no partition table, no filesystem or other signature (``wipefs -n``/``blkid``),
   nothing mounted, and at least :data:`MIN_SIZE` bytes.

Tiers: named in ``hot``/``warm``, else SSDs (rotational flag 0) go hot and HDDs warm. With no
SSD at all, the HDDs that were placed by their flag go hot: Stratum writes to the hot tier.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from appliance.settings import Settings

MIN_SIZE = 1 << 30  # smaller disks are used only when named
POOL_PREFIX = "stratum-"
TIERS = ("hot", "warm")
# /dev/disk/by-id names, most telling first; wwn-/nvme-eui. names are the least readable.
_ID_ORDER = ("usb-", "ata-", "nvme-", "scsi-", "virtio-", "mmc-", "ieee1394-", "")
_POOL_NAME = re.compile(r"stratum-(hot|warm)-[0-9a-f]{6}")


@dataclass(frozen=True)
class Partition:
    name: str
    fstype: str = ""
    label: str = ""
    partlabel: str = ""
    mountpoints: tuple[str, ...] = ()


@dataclass(frozen=True)
class BlockDevice:
    """A whole disk, as probed (lsblk, /dev/disk/by-id, wipefs)."""

    name: str  # kernel name: sda
    size: int
    rotational: bool
    transport: str = ""  # usb, sata, nvme, ... ("" for virtio)
    ids: tuple[str, ...] = ()  # /dev/disk/by-id names, best first
    model: str = ""
    serial: str = ""
    readonly: bool = False
    fstype: str = ""  # a filesystem or signature on the whole disk
    label: str = ""
    pttype: str = ""  # gpt, dos: a partition table
    signatures: tuple[str, ...] = ()  # wipefs -n on the disk itself
    mountpoints: tuple[str, ...] = ()
    partitions: tuple[Partition, ...] = ()

    @property
    def path(self) -> str:
        return f"/dev/{self.name}"

    @property
    def by_id(self) -> str:
        """The name the appliance uses for this disk: its best by-id name, else its path."""
        return self.ids[0] if self.ids else self.path

    @property
    def is_usb(self) -> bool:
        return self.transport == "usb" or any(i.startswith("usb-") for i in self.ids)

    @property
    def stratum_pool(self) -> tuple[str, str] | None:
        """(filesystem, pool name) when this disk already is a Stratum pool."""
        for part in self.partitions:
            if part.fstype == "zfs_member" and _POOL_NAME.fullmatch(part.label):
                return "zfs", part.label
            if part.fstype == "ext4" and _POOL_NAME.fullmatch(part.partlabel):
                return "ext4", part.partlabel
        if self.fstype == "zfs_member" and _POOL_NAME.fullmatch(self.label):
            return "zfs", self.label
        return None

    @property
    def data(self) -> list[str]:
        """What says this disk holds data (empty: it is blank)."""
        found = []
        if self.pttype:
            found.append(f"{self.pttype} partition table")
        if self.fstype:
            found.append(f"{self.fstype} signature")
        found += [
            f"{s} signature"
            for s in dict.fromkeys(self.signatures)
            if s not in (self.pttype, self.fstype)
        ]
        found += [f"partition {p.name} ({p.fstype or 'no filesystem'})" for p in self.partitions]
        return found

    @property
    def mounted(self) -> list[str]:
        return [*self.mountpoints, *(m for p in self.partitions for m in p.mountpoints)]

    def matches(self, name: str) -> bool:
        """Is ``name`` (by-id name or path, as the user wrote it) this disk?"""
        if name.startswith("/dev/disk/by-id/"):
            name = name[len("/dev/disk/by-id/") :]
        return name in self.ids or name in (self.path, self.name)

    def describe(self) -> str:
        kind = "HDD" if self.rotational else "SSD"
        what = " ".join(filter(None, [self.model.strip(), self.serial.strip()]))
        extra = f", {what}" if what else ""
        return f"{self.by_id} ({self.path}, {human_size(self.size)} {kind}{extra})"


@dataclass(frozen=True)
class Use:
    """A disk that becomes (or stays) a pool."""

    device: BlockDevice
    tier: str
    pool: str  # stratum-<tier>-<6 hex>
    create: bool  # False: an existing Stratum pool, kept as it is
    filesystem: str  # zfs or ext4
    wipe: bool = False  # it holds data and the user named it: erase it first
    note: str = ""

    @property
    def mount(self) -> str:
        return mount_point(self.pool)

    @property
    def data_dir(self) -> str:
        return data_dir(self.pool)

    def as_pool(self, uuid: str = "") -> Pool:
        return Pool(self.pool, self.tier, self.filesystem, self.device.by_id, uuid)


@dataclass(frozen=True)
class Pool:
    """A pool the appliance runs (its state file, /etc/stratum/appliance.json, lists them)."""

    pool: str
    tier: str
    filesystem: str
    disk: str  # by-id name when it was built
    uuid: str = ""  # ext4: the filesystem's UUID (for fstab)

    @property
    def mount(self) -> str:
        return mount_point(self.pool)

    @property
    def data_dir(self) -> str:
        return data_dir(self.pool)


def mount_point(pool: str) -> str:
    return f"/srv/stratum/{pool[len(POOL_PREFIX) :]}"


def data_dir(pool: str) -> str:
    """Stratum's disk directory: inside the mounted filesystem, never the bare mount point
    (which is made immutable, so nothing lands on the boot medium when a disk is missing)."""
    return f"{mount_point(pool)}/data"


@dataclass(frozen=True)
class Skip:
    device: BlockDevice
    reason: str


@dataclass
class Plan:
    use: list[Use] = field(default_factory=list)
    skip: list[Skip] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # nothing may be formatted when non-empty
    notes: list[str] = field(default_factory=list)

    def tier(self, tier: str) -> list[Use]:
        return [u for u in self.use if u.tier == tier]

    def lines(self) -> list[str]:
        """The plan as a human reads it (console and stratum-report.txt)."""
        out = [f"error: {e}" for e in self.errors]
        for u in self.use:
            action = "keep existing pool" if not u.create else "create"
            if u.create and u.wipe:
                action = "ERASE (named in stratum-appliance.toml) and create"
            note = f"; {u.note}" if u.note else ""
            out.append(
                f"{u.tier:<4} {u.pool} ({u.filesystem}, {action}) on {u.device.describe()}{note}"
            )
        out += [f"skip {s.device.describe()}: {s.reason}" for s in self.skip]
        out += [f"note: {n}" for n in self.notes]
        return out or ["no disks attached: Stratum keeps its data on the boot medium"]


def human_size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return str(n)


def pool_name(tier: str, device: BlockDevice) -> str:
    """``stratum-<tier>-<6 hex>``: stable for a disk (from its by-id name), short enough for
    a path, a ZFS pool and a GPT partition name."""
    digest = hashlib.sha1(device.by_id.encode()).hexdigest()[:6]
    return f"{POOL_PREFIX}{tier}-{digest}"


def plan_disks(
    devices: Iterable[BlockDevice],
    settings: Settings,
    *,
    filesystem: str,
    system_disks: Iterable[str] = (),
    known_pools: Mapping[str, str] | None = None,
    zfs_available: bool = True,
) -> Plan:
    """Decide, for every whole disk, whether it becomes a pool (see the module's rules).

    ``filesystem`` is what new pools get (``zfs`` or ``ext4``, already resolved against the
    settings and the ZFS module); ``system_disks`` are the kernel names of the disks holding
    the running system; ``known_pools`` maps pool names the appliance already runs to their
    tier (from its state file), so a disk that is now missing is reported.
    """
    if filesystem not in ("zfs", "ext4"):
        raise ValueError(f"filesystem must be zfs or ext4, not {filesystem!r}")
    devices = list(devices)
    system = set(system_disks)
    plan = Plan()
    named_left = list(settings.named)
    auto_tier: list[int] = []  # indexes into plan.use of new pools placed by rotational flag
    for dev in devices:
        named = [n for n in settings.named if dev.matches(n)]
        for n in named:
            if n in named_left:
                named_left.remove(n)
        forced = next((t for t in TIERS for n in named if n in getattr(settings, t)), None)
        if dev.name in system:
            if named:
                plan.errors.append(f"{named[0]} holds the running system: it cannot be a pool")
            continue  # the boot medium is not worth a line in the report
        existing = dev.stratum_pool
        if existing is not None:
            fs, pool = existing
            tier = pool.split("-")[1]
            note = ""
            if forced and forced != tier:
                note = f"listed as {forced} but it is a {tier} pool with data: it stays {tier}"
            if fs == "zfs" and not zfs_available:
                plan.errors.append(
                    f"{dev.describe()} is the Stratum ZFS pool {pool}, but ZFS is not available:"
                    " it cannot be imported (Stratum is not started without it)"
                )
                continue
            plan.use.append(Use(dev, tier, pool, create=False, filesystem=fs, note=note))
            continue
        if dev.readonly:
            plan.skip.append(Skip(dev, "read-only"))
            continue
        if dev.mounted:
            why = f"mounted at {', '.join(dev.mounted)}"
            if named:
                plan.errors.append(f"{named[0]} is {why}: unmount it first")
            else:
                plan.skip.append(Skip(dev, why))
            continue
        if not named:
            if not settings.auto_usb:
                plan.skip.append(Skip(dev, "not named in stratum-appliance.toml (auto_usb off)"))
                continue
            if not dev.is_usb:
                plan.skip.append(
                    Skip(dev, "not a USB disk: name it in stratum-appliance.toml to use it")
                )
                continue
            if dev.data:
                plan.skip.append(
                    Skip(
                        dev,
                        f"holds data ({', '.join(dev.data)}): left alone; name it in"
                        " stratum-appliance.toml to erase it and use it",
                    )
                )
                continue
            if dev.size < MIN_SIZE:
                plan.skip.append(Skip(dev, f"smaller than {human_size(MIN_SIZE)}"))
                continue
        tier = forced or ("warm" if dev.rotational else "hot")
        if forced is None:
            auto_tier.append(len(plan.use))
        wipe = bool(dev.data)
        plan.use.append(Use(dev, tier, pool_name(tier, dev), True, filesystem, wipe=wipe))
    for name in named_left:
        plan.errors.append(f"{name} (named in stratum-appliance.toml) is not attached")
    if not plan.tier("hot") and plan.tier("warm"):
        moved = [i for i in auto_tier if plan.use[i].tier == "warm"]
        for i in moved:
            u = plan.use[i]
            plan.use[i] = Use(
                u.device,
                "hot",
                pool_name("hot", u.device),
                True,
                u.filesystem,
                wipe=u.wipe,
                note="no SSD attached: this HDD serves the hot tier",
            )
        if not moved:
            plan.notes.append(
                "every disk is warm: new objects are written to the hot tier on the boot medium"
            )
    pools = {u.pool for u in plan.use}
    for pool, tier in (known_pools or {}).items():
        if pool not in pools:
            plan.notes.append(
                f"the {tier} pool {pool} is missing (disk detached or failed): attach it, or"
                f" replace it with `stratum-appliance replace {pool} NEW-DISK`"
            )
    return plan


def shard_layout(disks: int) -> tuple[int, int] | None:
    """(data_shards, parity_shards) for a tier of ``disks`` disks; None: Stratum's default.

    Every shard of a stripe on its own disk: the layout survives the loss of one disk from two
    disks on (1+1 is a mirror), of two from five on. One disk keeps Stratum's 4+2: it cannot
    survive losing the disk, but the parity repairs damaged blocks.
    """
    table = {2: (1, 1), 3: (2, 1), 4: (3, 1), 5: (3, 2)}
    if disks <= 1:
        return None
    return table.get(disks, (4, 2))


# --- probing results -> BlockDevice (pure) ------------------------------------------------


def _id_rank(name: str) -> tuple[int, str]:
    for rank, prefix in enumerate(_ID_ORDER):
        if name.startswith(prefix):
            return rank, name
    return len(_ID_ORDER), name


def devices_from_lsblk(
    lsblk: Mapping[str, Any],
    by_id: Mapping[str, str],
    signatures: Mapping[str, Iterable[str]] | None = None,
) -> list[BlockDevice]:
    """Whole disks from ``lsblk -J -b -o NAME,TYPE,SIZE,ROTA,RO,TRAN,MODEL,SERIAL,FSTYPE,LABEL,
    PARTLABEL,PTTYPE,MOUNTPOINTS``, ``by_id`` (by-id name -> kernel name, partitions
    excluded) and ``signatures`` (kernel name -> types ``wipefs -n`` found on the disk).
    """
    ids: dict[str, list[str]] = {}
    for link, kname in by_id.items():
        if re.search(r"-part[0-9]+$", link):
            continue
        ids.setdefault(kname, []).append(link)
    out = []
    for node in lsblk.get("blockdevices", []):
        if node.get("type") != "disk":
            continue
        name = str(node["name"])
        parts = tuple(
            Partition(
                name=str(c["name"]),
                fstype=c.get("fstype") or "",
                label=c.get("label") or "",
                partlabel=c.get("partlabel") or "",
                mountpoints=_mounts(c),
            )
            for c in node.get("children", []) or []
            if c.get("type") == "part"
        )
        out.append(
            BlockDevice(
                name=name,
                size=int(node.get("size") or 0),
                rotational=_flag(node.get("rota")),
                transport=(node.get("tran") or "").lower(),
                ids=tuple(sorted(ids.get(name, []), key=_id_rank)),
                model=(node.get("model") or "").strip(),
                serial=(node.get("serial") or "").strip(),
                readonly=_flag(node.get("ro")),
                fstype=node.get("fstype") or "",
                label=node.get("label") or "",
                pttype=node.get("pttype") or "",
                signatures=tuple((signatures or {}).get(name, ())),
                mountpoints=_mounts(node),
                partitions=parts,
            )
        )
    return out


def _flag(value: object) -> bool:
    return value in (True, 1, "1", "true")


def _mounts(node: Mapping[str, Any]) -> tuple[str, ...]:
    points = node.get("mountpoints")
    if points is None:
        points = [node.get("mountpoint")]
    return tuple(p for p in points if p)
