"""Which disks become pools, in which tier: and never a disk with data unless named."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.disks import (
    MIN_SIZE,
    BlockDevice,
    Partition,
    Plan,
    devices_from_lsblk,
    plan_disks,
    pool_name,
    shard_layout,
)
from appliance.settings import Settings
from stratum.config import load_config

TB = 1_000_000_000_000

# `lsblk -J -b -o NAME,TYPE,SIZE,ROTA,RO,TRAN,MODEL,SERIAL,FSTYPE,LABEL,PARTLABEL,PTTYPE,
# MOUNTPOINTS` on a Pi 4 booted from its SD card, with four USB disks attached.
LSBLK = {
    "blockdevices": [
        {"name": "sda", "type": "disk", "size": 2 * TB, "rota": True, "ro": False,
         "tran": "usb", "model": "Portable SSD T7", "serial": "S5SX1", "fstype": None,
         "label": None, "partlabel": None, "pttype": None, "mountpoints": [None]},
        {"name": "sdb", "type": "disk", "size": 4 * TB, "rota": True, "ro": False,
         "tran": "usb", "model": "Elements 25A3", "serial": "WX12", "fstype": None,
         "label": None, "partlabel": None, "pttype": "gpt", "mountpoints": [None],
         "children": [
             {"name": "sdb1", "type": "part", "size": 4 * TB, "fstype": "ntfs",
              "label": "Photos", "partlabel": "Basic data partition", "mountpoints": [None]}]},
        {"name": "sdc", "type": "disk", "size": 8 * TB, "rota": True, "ro": False,
         "tran": "usb", "model": "Expansion", "serial": "ZA9", "fstype": None,
         "label": None, "partlabel": None, "pttype": "gpt", "mountpoints": [None],
         "children": [
             {"name": "sdc1", "type": "part", "size": 8 * TB, "fstype": "zfs_member",
              "label": "stratum-warm-0a1b2c", "partlabel": "zfs-5d1e", "mountpoints": [None]},
             {"name": "sdc9", "type": "part", "size": 8 << 20, "fstype": None,
              "label": None, "partlabel": None, "mountpoints": [None]}]},
        {"name": "sdd", "type": "disk", "size": 16 << 30, "rota": False, "ro": False,
         "tran": "usb", "model": "Flash Drive", "serial": "0401", "fstype": "vfat",
         "label": "STICK", "partlabel": None, "pttype": None, "mountpoints": [None]},
        {"name": "mmcblk0", "type": "disk", "size": 32 << 30, "rota": False, "ro": False,
         "tran": None, "model": None, "serial": "0x1234", "fstype": None, "label": None,
         "partlabel": None, "pttype": "dos", "mountpoints": [None],
         "children": [
             {"name": "mmcblk0p1", "type": "part", "size": 256 << 20, "fstype": "vfat",
              "label": "RASPIFIRM", "partlabel": None, "mountpoints": ["/boot/firmware"]},
             {"name": "mmcblk0p2", "type": "part", "size": 31 << 30, "fstype": "ext4",
              "label": "RASPIROOT", "partlabel": None, "mountpoints": ["/"]}]},
        {"name": "zram0", "type": "disk", "size": 1 << 30, "rota": False, "ro": False,
         "tran": None, "mountpoints": ["[SWAP]"]},
        {"name": "loop0", "type": "loop", "size": 1 << 20, "rota": False, "ro": True},
    ]
}  # fmt: skip
BY_ID = {
    "usb-Samsung_PSSD_T7_S5SX1-0:0": "sda",
    "wwn-0x5002538e00000001": "sda",
    "usb-WD_Elements_25A3_WX12-0:0": "sdb",
    "usb-WD_Elements_25A3_WX12-0:0-part1": "sdb1",
    "usb-Seagate_Expansion_ZA9-0:0": "sdc",
    "usb-Seagate_Expansion_ZA9-0:0-part1": "sdc1",
    "usb-SanDisk_Flash_0401-0:0": "sdd",
    "mmc-SC32G_0x1234": "mmcblk0",
    "mmc-SC32G_0x1234-part2": "mmcblk0p2",
}
WIPEFS = {"sdb": ["gpt", "PMBR"], "sdc": ["gpt", "PMBR"], "sdd": ["vfat"]}


def probed() -> dict[str, BlockDevice]:
    return {d.name: d for d in devices_from_lsblk(LSBLK, BY_ID, WIPEFS)}


def plan(settings: Settings | None = None, **kwargs: object) -> Plan:
    settings = settings or Settings()
    kwargs.setdefault("filesystem", "zfs")
    kwargs.setdefault("system_disks", {"mmcblk0"})
    return plan_disks(probed().values(), settings, **kwargs)  # type: ignore[arg-type]


def by_disk(p: Plan) -> dict[str, str]:
    """kernel name -> "tier create|keep|ERASE" or "skip: reason"."""
    out = {}
    for u in p.use:
        out[u.device.name] = f"{u.tier} {'keep' if not u.create else 'ERASE' if u.wipe else 'new'}"
    for s in p.skip:
        out[s.device.name] = f"skip: {s.reason}"
    return out


def test_lsblk_is_read_into_whole_disks() -> None:
    disks = probed()
    assert sorted(disks) == ["mmcblk0", "sda", "sdb", "sdc", "sdd", "zram0"]
    sda = disks["sda"]
    assert sda.ids == ("usb-Samsung_PSSD_T7_S5SX1-0:0", "wwn-0x5002538e00000001")
    assert sda.by_id == "usb-Samsung_PSSD_T7_S5SX1-0:0"
    assert sda.is_usb and sda.rotational and sda.data == [] and sda.mounted == []
    assert disks["sdb"].data == [
        "gpt partition table",
        "PMBR signature",
        "partition sdb1 (ntfs)",
    ]
    assert disks["sdc"].stratum_pool == ("zfs", "stratum-warm-0a1b2c")
    assert disks["sdd"].data == ["vfat signature"]
    assert disks["mmcblk0"].mounted == ["/boot/firmware", "/"]
    assert disks["zram0"].mounted == ["[SWAP]"]
    assert disks["sda"].matches("/dev/disk/by-id/wwn-0x5002538e00000001")
    assert disks["sda"].matches("/dev/sda") and not disks["sda"].matches("/dev/sdb")


def test_blank_usb_disks_are_used_and_disks_with_data_are_left_alone() -> None:
    p = plan()
    assert p.errors == []
    assert by_disk(p) == {
        # the T7 claims to be rotational (many USB bridges do): warm, unless told
        "sda": "hot new",  # ... but with no SSD at all, it serves the hot tier
        "sdb": "skip: holds data (gpt partition table, PMBR signature, partition sdb1 (ntfs)):"
        " left alone; name it in stratum-appliance.toml to erase it and use it",
        "sdc": "warm keep",
        "sdd": "skip: holds data (vfat signature): left alone; name it in"
        " stratum-appliance.toml to erase it and use it",
        "zram0": "skip: mounted at [SWAP]",
    }
    assert "mmcblk0" not in by_disk(p)  # the running system is not even mentioned
    sda = p.use[0]
    assert sda.pool == pool_name("hot", sda.device) and sda.note.startswith("no SSD")
    assert sda.mount == f"/srv/stratum/{sda.pool.removeprefix('stratum-')}"
    assert sda.data_dir == sda.mount + "/data"


def test_ssds_go_hot_and_hdds_warm_by_the_rotational_flag() -> None:
    devices = probed()
    ssd = dataclasses.replace(devices["sda"], rotational=False)
    hdd = dataclasses.replace(devices["sda"], name="sde", ids=("usb-HDD-0:0",), rotational=True)
    p = plan_disks([ssd, hdd], Settings(), filesystem="ext4")
    assert [(u.device.name, u.tier, u.filesystem) for u in p.use] == [
        ("sda", "hot", "ext4"),
        ("sde", "warm", "ext4"),
    ]
    assert p.use[1].note == ""


def test_named_disks_are_erased_even_with_data_and_tiers_can_be_forced() -> None:
    settings = Settings(
        disks=("/dev/disk/by-id/usb-SanDisk_Flash_0401-0:0",), warm=("/dev/sdb",), hot=("sda",)
    )
    p = plan(settings)
    assert p.errors == []
    got = by_disk(p)
    assert got["sdb"] == "warm ERASE"
    assert got["sda"] == "hot new"
    assert got["sdd"] == "hot ERASE"  # an SSD, placed by its flag
    assert got["sdc"] == "warm keep"
    assert any("ERASE" in line and "sdb" in line for line in p.lines())


def test_an_existing_stratum_pool_is_never_formatted_whatever_the_file_says() -> None:
    p = plan(Settings(hot=("usb-Seagate_Expansion_ZA9-0:0",)))
    [kept] = [u for u in p.use if u.device.name == "sdc"]
    assert (kept.create, kept.tier, kept.pool) == (False, "warm", "stratum-warm-0a1b2c")
    assert "stays warm" in kept.note
    # and without ZFS it cannot be imported: an error, nothing is built
    p = plan(filesystem="ext4", zfs_available=False)
    assert any("stratum-warm-0a1b2c" in e and "ZFS is not available" in e for e in p.errors)


def test_ext4_pools_are_recognised_by_their_partition_name() -> None:
    disk = BlockDevice(
        name="sdf",
        size=TB,
        rotational=False,
        ids=("usb-X-0:0",),
        pttype="gpt",
        partitions=(Partition("sdf1", fstype="ext4", partlabel="stratum-hot-abcdef"),),
    )
    p = plan_disks([disk], Settings(), filesystem="zfs", zfs_available=False)
    assert [(u.pool, u.create, u.filesystem) for u in p.use] == [
        ("stratum-hot-abcdef", False, "ext4")
    ]
    # a look-alike name is just data
    fake = dataclasses.replace(
        disk, partitions=(Partition("sdf1", fstype="ext4", partlabel="stratum-hot-xyz"),)
    )
    assert "holds data" in by_disk(plan_disks([fake], Settings(), filesystem="zfs"))["sdf"]


def test_the_running_system_is_never_used_even_when_named() -> None:
    p = plan(Settings(disks=("mmc-SC32G_0x1234",)))
    assert p.errors == ["mmc-SC32G_0x1234 holds the running system: it cannot be a pool"]


def test_non_usb_disks_only_when_named() -> None:
    virtio = BlockDevice(name="vdb", size=4 << 30, rotational=True, ids=("virtio-hdd1",))
    scsi = BlockDevice(
        name="sdb", size=4 << 30, rotational=False, transport="", ids=("scsi-0QEMU_ssd1",)
    )
    p = plan_disks([virtio, scsi], Settings(), filesystem="ext4")
    assert [s.reason for s in p.skip] == [
        "not a USB disk: name it in stratum-appliance.toml to use it"
    ] * 2
    p = plan_disks(
        [virtio, scsi], Settings(disks=("virtio-hdd1", "scsi-0QEMU_ssd1")), filesystem="ext4"
    )
    assert by_disk(p) == {"vdb": "warm new", "sdb": "hot new"}


def test_small_mounted_read_only_and_missing_disks() -> None:
    small = BlockDevice(name="sdx", size=MIN_SIZE - 1, rotational=False, transport="usb")
    mounted = dataclasses.replace(small, name="sdy", size=TB, mountpoints=("/mnt",))
    ro = dataclasses.replace(small, name="sdz", size=TB, readonly=True)
    p = plan_disks([small, mounted, ro], Settings(disks=("usb-gone",)), filesystem="ext4")
    assert by_disk(p) == {
        "sdx": "skip: smaller than 1.1 GB",
        "sdy": "skip: mounted at /mnt",
        "sdz": "skip: read-only",
    }
    assert p.errors == ["usb-gone (named in stratum-appliance.toml) is not attached"]
    # named, the small one is used; a mounted one is refused
    p = plan_disks([small, mounted], Settings(disks=("/dev/sdx", "sdy")), filesystem="ext4")
    assert by_disk(p) == {"sdx": "hot new"}
    assert p.errors == ["sdy is mounted at /mnt: unmount it first"]


def test_auto_usb_off_uses_only_named_disks() -> None:
    p = plan(Settings(auto_usb=False))
    assert by_disk(p)["sda"].startswith("skip: not named")
    assert by_disk(p)["sdc"] == "warm keep"  # an existing pool is still ours


def test_a_known_pool_that_is_missing_is_reported() -> None:
    p = plan(known_pools={"stratum-warm-0a1b2c": "warm", "stratum-hot-999999": "hot"})
    assert p.errors == []
    assert any("stratum-hot-999999 is missing" in n for n in p.notes)


def test_every_disk_forced_warm_leaves_hot_on_the_boot_medium() -> None:
    p = plan(Settings(warm=("sda",)))
    assert by_disk(p)["sda"] == "warm new"
    assert any("every disk is warm" in n for n in p.notes)


def test_pool_names_are_stable_and_fit_everywhere() -> None:
    d = probed()["sda"]
    assert pool_name("hot", d) == pool_name("hot", dataclasses.replace(d, size=1))
    assert pool_name("hot", d) != pool_name("hot", probed()["sdb"])
    assert len(pool_name("warm", d)) <= 36  # a GPT partition name


def test_plan_lines_for_the_console() -> None:
    lines = plan().lines()
    assert lines[0].startswith("hot  stratum-hot-") and "(zfs, create)" in lines[0]
    assert any(line.startswith("skip usb-WD_Elements") for line in lines)
    assert plan_disks([], Settings(), filesystem="zfs").lines() == [
        "no disks attached: Stratum keeps its data on the boot medium"
    ]


def test_bad_filesystem_argument() -> None:
    with pytest.raises(ValueError):
        plan_disks([], Settings(), filesystem="auto")


@pytest.mark.parametrize("disks", range(1, 10))
def test_shard_layouts_are_valid_for_stratum_and_survive_a_disk(disks: int) -> None:
    layout = shard_layout(disks)
    if disks == 1:
        assert layout is None
        return
    assert layout is not None
    data, parity = layout
    load_config(overrides={"storage.data_shards": data, "storage.parity_shards": parity})
    assert parity >= 1
    # every shard on its own disk: losing `parity` disks loses at most `parity` shards
    assert data + parity <= disks
    if disks >= 5:
        assert parity == 2


# --- the safety property, for any disks and any settings ------------------------------------

_names = st.sampled_from(["sda", "sdb", "sdc", "sdd", "vda", "nvme0n1"])
_partitions = st.lists(
    st.builds(
        Partition,
        name=st.sampled_from(["p1", "p2"]),
        fstype=st.sampled_from(["", "ext4", "ntfs", "zfs_member", "swap"]),
        label=st.sampled_from(["", "stratum-hot-abcdef", "data"]),
        partlabel=st.sampled_from(["", "stratum-warm-123456", "x"]),
        mountpoints=st.sampled_from([(), ("/mnt",)]),
    ),
    max_size=2,
)
_devices = st.builds(
    BlockDevice,
    name=_names,
    size=st.sampled_from([1 << 20, MIN_SIZE, TB]),
    rotational=st.booleans(),
    transport=st.sampled_from(["usb", "sata", ""]),
    ids=st.lists(st.sampled_from(["usb-A-0:0", "ata-B", "virtio-c"]), max_size=1).map(tuple),
    readonly=st.booleans(),
    fstype=st.sampled_from(["", "ext4", "LVM2_member"]),
    pttype=st.sampled_from(["", "gpt", "dos"]),
    signatures=st.lists(st.sampled_from(["gpt", "unreadable"]), max_size=1).map(tuple),
    mountpoints=st.sampled_from([(), ("/",)]),
    partitions=_partitions.map(tuple),
)
_settings = st.builds(
    Settings,
    auto_usb=st.booleans(),
    disks=st.lists(st.sampled_from(["usb-A-0:0", "/dev/sdb", "virtio-c"]), max_size=2).map(tuple),
    hot=st.lists(st.sampled_from(["ata-B"]), max_size=1).map(tuple),
)


@settings(max_examples=300, deadline=None)
@given(
    devices=st.lists(_devices, max_size=4, unique_by=lambda d: d.name),
    settings=_settings,
    system=st.sets(_names, max_size=1),
    filesystem=st.sampled_from(["zfs", "ext4"]),
)
def test_never_formats_data_unless_named_nor_the_system(
    devices: list[BlockDevice], settings: Settings, system: set[str], filesystem: str
) -> None:
    p = plan_disks(devices, settings, filesystem=filesystem, system_disks=system)
    for use in p.use:
        assert use.device.name not in system
        if not use.create:
            assert use.device.stratum_pool == (use.filesystem, use.pool)
            continue
        assert use.device.stratum_pool is None
        named = any(use.device.matches(n) for n in settings.named)
        if use.device.data or use.device.readonly:
            assert named, f"{use.device} holds data and was not named"
        assert use.wipe == bool(use.device.data)
        assert not use.device.mounted
        assert use.tier in ("hot", "warm") and use.pool.startswith(f"stratum-{use.tier}-")
    seen = [u.device.name for u in p.use] + [s.device.name for s in p.skip]
    assert len(seen) == len(set(seen))
