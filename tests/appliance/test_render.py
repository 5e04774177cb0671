"""The files the appliance writes: stratum.toml (valid for Stratum), keys, fstab, the note."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from appliance import render
from appliance.disks import Pool
from appliance.settings import ColdSettings, Settings
from stratum.config import load_config

HOT = [
    Pool("stratum-hot-aaaaaa", "hot", "zfs", "usb-A"),
    Pool("stratum-hot-bbbbbb", "hot", "zfs", "usb-B"),
]
WARM = [Pool("stratum-warm-cccccc", "warm", "ext4", "usb-C", uuid="1234-abcd")]


def load(text: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "stratum.toml"
    path.write_text(text)
    return load_config(path)


def test_pools_become_tiers_that_stratum_accepts(tmp_path: Path) -> None:
    text = render.dump_toml(render.stratum_config(HOT + WARM, Settings()), render.CONFIG_HEADER)
    assert text.startswith("# /etc/stratum/stratum.toml, written by stratum-appliance")
    config = load(text, tmp_path)
    assert config.storage.data_dir == Path("/var/lib/stratum")
    assert config.server.listen == "0.0.0.0:9000"
    assert config.tiers.hot.disks == (
        Path("/srv/stratum/hot-aaaaaa/data"),
        Path("/srv/stratum/hot-bbbbbb/data"),
    )
    assert (config.tiers.hot.data_shards, config.tiers.hot.parity_shards) == (1, 1)
    assert config.tiers.warm.disks == (Path("/srv/stratum/warm-cccccc/data"),)
    assert (config.tiers.warm.data_shards, config.tiers.warm.parity_shards) == (4, 2)
    assert not config.tiers.cold.enabled


def test_no_pools_is_stratums_default_on_the_boot_medium(tmp_path: Path) -> None:
    config = load(render.dump_toml(render.stratum_config([], Settings())), tmp_path)
    assert config.tiers.hot.disks == (Path("/var/lib/stratum/disks/hot"),)
    assert not config.tiers.warm.enabled


def test_cold_tier_and_overrides_from_the_appliance_file(tmp_path: Path) -> None:
    settings = Settings(
        cold=ColdSettings(
            endpoint="https://s3.example.com", bucket="cold-1", region="eu-1", secret_key="x"
        ),
        stratum={
            "server": {"listen": "[::]:9100", "region": "home-1"},
            "tiers": {"hot": {"data_shards": 2, "parity_shards": 0}},
            "tiering": {"hot_idle_before_warm": "2d"},
        },
    )
    config_dict = render.stratum_config(HOT + WARM, settings)
    assert render.listen_port(config_dict) == 9100
    text = render.dump_toml(config_dict)
    assert "x" not in re.findall(r'"(\w)"', text)  # the cold secret never goes to the file
    config = load(text, tmp_path)
    assert config.tiers.cold.endpoint == "https://s3.example.com"
    assert (config.tiers.cold.bucket, config.tiers.cold.region) == ("cold-1", "eu-1")
    assert config.server.listen == "[::]:9100" and config.server.region == "home-1"
    assert (config.tiers.hot.data_shards, config.tiers.hot.parity_shards) == (2, 0)
    assert len(config.tiers.hot.disks) == 2  # merged, not replaced
    assert config.tiering.hot_idle_before_warm == 2 * 86400


def test_merge_leaves_its_inputs_alone() -> None:
    base = {"a": {"b": 1, "c": 2}, "d": 3}
    over = {"a": {"b": 9}, "e": {"f": True}}
    assert render.merge(base, over) == {"a": {"b": 9, "c": 2}, "d": 3, "e": {"f": True}}
    assert base == {"a": {"b": 1, "c": 2}, "d": 3}


def test_toml_writer_round_trips() -> None:
    doc = {
        "top": "v",
        "quote": 'a "b" \\ c\n\té',
        "n": 3,
        "x": 0.5,
        "flag": False,
        "list": ["a", "b"],
        "empty": [],
        "t": {"k": 1, "sub": {"weird key": "z"}},
        "only": {"sub": {"k": 2}},
    }
    assert tomllib.loads(render.dump_toml(doc)) == doc
    with pytest.raises(ValueError):
        render.dump_toml({"bad": float("nan")})
    with pytest.raises(ValueError):
        render.dump_toml({"bad": object()})


def test_credentials_are_fresh_strong_and_safe_unquoted() -> None:
    pairs = {render.new_credentials() for _ in range(20)}
    assert len(pairs) == 20
    for access, secret in pairs:
        assert re.fullmatch(r"[A-Z0-9]{20}", access)
        assert re.fullmatch(r"[A-Za-z0-9]{40}", secret)


def test_environment_file_round_trip_and_refusals() -> None:
    values = {"STRATUM_ACCESS_KEY": "AK", "STRATUM_SECRET_KEY": "s/k+="}
    text = render.render_env(values)
    assert text.startswith("# Environment of stratum.service")
    assert render.parse_env(text) == values
    assert render.parse_env('# c\n\nA="quoted value"\nB = b\nnonsense\n') == {
        "A": "quoted value",
        "B": "b",
    }
    with pytest.raises(ValueError):
        render.render_env({"A": "with space"})
    with pytest.raises(ValueError):
        render.render_env({"a-b": "x"})


def test_the_appliance_serves_the_console_on_the_lan_and_names_it() -> None:
    config = render.stratum_config(HOT, Settings())
    assert config["console"] == {"listen": "0.0.0.0:9001"}
    assert render.console_port(config) == 9001
    note = render.credentials_note("vault", "AK", "SK", port=9000, region="r", console=9001)
    assert "Web console: http://vault.local:9001" in note
    assert render.parse_credentials_note(note) == ("AK", "SK")
    tls = render.credentials_note(
        "vault", "AK", "SK", port=9000, region="r", fingerprint="AB:CD", console=9001
    )
    assert "Web console: https://vault.local:9001" in tls  # the same certificate as S3
    report = render.report(["hot x"], filesystem="ext4", console="http://vault.local:9001")
    assert "web console: http://vault.local:9001" in report
    # turned off in stratum-appliance.toml's [stratum]: no address named
    off = render.stratum_config(HOT, Settings(stratum={"console": {"listen": ""}}))
    assert render.console_port(off) is None
    assert "console" not in render.credentials_note("v", "AK", "SK", port=9000, region="r")


def test_the_credentials_note_reads_back() -> None:
    note = render.credentials_note("vault", "AKIA1", "sEcReT2", port=9000, region="us-east-1")
    assert "http://vault.local:9000" in note
    assert render.parse_credentials_note(note) == ("AKIA1", "sEcReT2")
    console = "".join(f"[  185.6] stratum-appliance[330]: {line}\r\n" for line in note.splitlines())
    assert render.parse_credentials_note(console.replace("\r", "")) == ("AKIA1", "sEcReT2")


def test_fstab_lines_are_added_replaced_and_the_rest_kept() -> None:
    base = "LABEL=RASPIROOT\t/\text4\trw\t0\t1\n# a comment\n"
    one = render.fstab_with(base, {"/srv/stratum/warm-cccccc": "1234-abcd"})
    assert one.startswith(base)
    assert one.count(render.FSTAB_MARK) == 1
    assert "UUID=1234-abcd\t/srv/stratum/warm-cccccc\text4\t" in one
    assert "nofail" in one
    again = render.fstab_with(one, {"/srv/stratum/warm-cccccc": "9999"})
    assert "1234-abcd" not in again and again.count(render.FSTAB_MARK) == 1
    assert render.fstab_with(again, {}) == base
    # a line the user wrote for the same mount point gives way
    user = base + "/dev/sdb1 /srv/stratum/warm-cccccc ext4 defaults 0 2\n"
    assert "/dev/sdb1" not in render.fstab_with(user, {"/srv/stratum/warm-cccccc": "1"})


def test_report_text() -> None:
    text = render.report(["hot x"], filesystem="ext4", zfs_note="ZFS unavailable: no headers")
    assert "filesystem for new pools: ext4 (ZFS unavailable: no headers)" in text
    assert "\nhot x\n" in text


def test_root_keys_go_into_the_config_and_are_read_back(tmp_path: Path) -> None:
    keys = render.new_credentials()
    text = render.dump_toml(render.stratum_config(HOT, Settings(), keys))
    assert render.config_keys(text) == keys
    config = load(text, tmp_path)
    assert (config.server.access_key, config.server.secret_key) == keys
    assert "secret_key" not in repr(config) or keys[1] not in repr(config)
    assert render.config_keys("[server]\nlisten = '0.0.0.0:9000'\n") is None
    assert render.config_keys("not toml [") is None


@pytest.mark.parametrize(
    ("path", "unit"),
    [
        ("/srv/stratum/hot-ef8d5c", "srv-stratum-hot\\x2def8d5c.mount"),
        ("/", "-.mount"),
        ("/mnt/a b/.x/", "mnt-a\\x20b-.x.mount"),
        ("/.hidden", "\\x2ehidden.mount"),
        ("/srv/é", "srv-\\xc3\\xa9.mount"),
    ],
)
def test_mount_unit_names_are_systemd_escape(path: str, unit: str) -> None:
    assert render.mount_unit(path) == unit


def test_the_service_waits_for_its_ext4_pools_but_does_not_require_them() -> None:
    text = render.service_dropin(["/srv/stratum/warm-cccccc", "/srv/stratum/hot-aaaaaa"])
    assert "Requires" not in text
    units = "srv-stratum-hot\\x2daaaaaa.mount srv-stratum-warm\\x2dcccccc.mount"
    assert f"Wants={units}\n" in text and f"After={units}\n" in text
    assert render.service_dropin([]).endswith("[Unit]\n")
