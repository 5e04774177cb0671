"""The filesystem choice and the plan as stratum-appliance makes them (system calls faked)."""

from __future__ import annotations

import pytest

from appliance import cli, system
from appliance.disks import BlockDevice
from appliance.settings import Settings

BLANK = BlockDevice(name="sda", size=1 << 40, rotational=False, ids=("usb-A-0:0",))


class FakeZfs:
    def __init__(self, loaded: bool, buildable: str = "", builds: bool = True) -> None:
        self.loaded, self.buildable, self.builds = loaded, buildable, builds
        self.built = False

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeZfs:
        monkeypatch.setattr(system, "zfs_loaded", lambda: self.loaded or self.built)
        monkeypatch.setattr(system, "zfs_build_possible", lambda: self.buildable)

        def build(progress: object) -> bool:
            self.built = self.builds
            return self.builds

        monkeypatch.setattr(system, "build_zfs", build)
        monkeypatch.setattr(cli, "say", lambda message: None)
        return self


def test_ext4_when_asked_and_zfs_is_never_built(monkeypatch: pytest.MonkeyPatch) -> None:
    zfs = FakeZfs(loaded=False).install(monkeypatch)
    assert cli.choose_filesystem(Settings(filesystem="ext4"), needs_zfs=True)[0] == "ext4"
    assert not zfs.built


def test_auto_uses_a_loaded_module(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeZfs(loaded=True).install(monkeypatch)
    assert cli.choose_filesystem(Settings(), needs_zfs=True) == ("zfs", "")


def test_auto_builds_the_module_only_when_a_pool_needs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    zfs = FakeZfs(loaded=False).install(monkeypatch)
    assert cli.choose_filesystem(Settings(), needs_zfs=False) == (
        "ext4",
        "no disk to build a pool on",
    )
    assert not zfs.built
    fs, why = cli.choose_filesystem(Settings(), needs_zfs=True)
    assert (fs, zfs.built) == ("zfs", True) and "DKMS" in why


def test_auto_falls_back_to_ext4_and_zfs_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeZfs(loaded=False, buildable="no kernel headers for Linux 6.1").install(monkeypatch)
    fs, why = cli.choose_filesystem(Settings(), needs_zfs=True)
    assert fs == "ext4" and "no kernel headers" in why
    with pytest.raises(cli.Failed, match="no kernel headers"):
        cli.choose_filesystem(Settings(filesystem="zfs"), needs_zfs=True)
    FakeZfs(loaded=False, builds=False).install(monkeypatch)
    fs, why = cli.choose_filesystem(Settings(), needs_zfs=True)
    assert fs == "ext4" and "build of the ZFS module failed" in why


def test_make_plan_resolves_the_filesystem_of_new_pools(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeZfs(loaded=False, buildable="no dkms").install(monkeypatch)
    monkeypatch.setattr(system, "probe_disks", lambda wait: [BLANK])
    monkeypatch.setattr(system, "system_disks", lambda: {"mmcblk0"})
    plan, fs, why = cli.make_plan(Settings(), [], wait=0)
    assert fs == "ext4" and "no dkms" in why
    assert [(u.device.name, u.tier, u.filesystem, u.create) for u in plan.use] == [
        ("sda", "hot", "ext4", True)
    ]
    FakeZfs(loaded=True).install(monkeypatch)
    plan, fs, _ = cli.make_plan(Settings(), [], wait=0)
    assert fs == "zfs" and plan.use[0].filesystem == "zfs"


def test_commands_need_root(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli.os, "geteuid", lambda: 1000)
    assert cli.main(["plan"]) == 2
    assert "root" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["replace", "hot-1"])  # NEW missing
