"""stratum-appliance.toml: parsing, validation, and keeping keys off the boot partition."""

from __future__ import annotations

import re

import pytest

from appliance.settings import (
    EXAMPLE,
    ColdSettings,
    Settings,
    SettingsError,
    parse_settings,
    redact_keys,
)


def test_no_keys_means_the_defaults() -> None:
    assert parse_settings("") == Settings()
    assert Settings().hostname == "stratum"
    assert Settings().filesystem == "auto"
    assert Settings().auto_usb is True


def test_the_shipped_example_is_all_comments_and_parses_to_the_defaults() -> None:
    assert parse_settings(EXAMPLE) == Settings()
    # and every example in it is valid once uncommented
    uncommented = re.sub(r"^#(?=[^ #\n])", "", EXAMPLE, flags=re.M)
    settings = parse_settings(uncommented)
    assert settings.cold.bucket == "my-stratum-cold"
    assert settings.disks == ("usb-Samsung_Portable_SSD_T7_S5SXNG0R123456A-0:0",)
    assert settings.stratum == {"server": {"listen": "0.0.0.0:9000"}}


def test_a_full_file() -> None:
    settings = parse_settings(
        """
hostname = "Vault"
filesystem = "ext4"
auto_usb = false
disks = ["usb-A-0:0"]
hot = ["/dev/disk/by-id/ata-SSD_1"]
warm = ["usb-B-0:0"]
ssh_authorized_keys = ["ssh-ed25519 AAAA me"]

[cold]
endpoint = "https://s3.example.com"
bucket = "cold-bucket"
access_key = "AK"
secret_key = "SK"

[stratum.server]
listen = "0.0.0.0:9100"
"""
    )
    assert settings.hostname == "vault"
    assert settings.filesystem == "ext4"
    assert settings.auto_usb is False
    assert settings.named == ("usb-A-0:0", "/dev/disk/by-id/ata-SSD_1", "usb-B-0:0")
    assert settings.cold == ColdSettings(
        endpoint="https://s3.example.com", bucket="cold-bucket", access_key="AK", secret_key="SK"
    )
    assert settings.cold.enabled
    assert settings.stratum == {"server": {"listen": "0.0.0.0:9100"}}
    assert "SK" not in repr(settings)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hostnam = 'x'", "unknown key hostnam"),
        ("hostname = 'a_b'", "hostname"),
        ("hostname = '-a'", "hostname"),
        ("filesystem = 'btrfs'", "filesystem"),
        ("auto_usb = 'yes'", "auto_usb"),
        ("disks = 'usb-A'", "disks"),
        ("disks = ['']", "disks"),
        ("hot = ['usb-A']\nwarm = ['usb-A']", "both hot and warm"),
        ("disks = ['usb-A-0:0-part1']", "partition"),
        ("disks = ['/dev/sda1']", "partition"),
        ("[cold]\nendpoint = 'ftp://x'\nbucket = 'b'", "cold.endpoint"),
        ("[cold]\nendpoint = 'https://x'", "cold.bucket"),
        ("[cold]\naccess_key = 'a'", "set both"),
        ("[cold]\nacces_key = 'a'", "cold.acces_key"),
        ("stratum = 1", "stratum"),
        ("disks = [", "not valid TOML"),
    ],
)
def test_mistakes_are_refused_with_the_key(text: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        parse_settings(text)


def test_keys_are_redacted_and_the_rest_kept() -> None:
    text = (
        'hostname = "x"\r\n[cold]\nendpoint = "https://s3"\nbucket = "b-1"\naccess_key = "AK"\n'
        "  secret_key = 'S/K+'  # mine\n[stratum.tiers.cold]\nsecret_key = \"\"\n"
    )
    out = redact_keys(text)
    assert "AK" not in out and "S/K+" not in out
    assert out.startswith('hostname = "x"\r\n[cold]\nendpoint = "https://s3"\nbucket = "b-1"\n')
    assert '  secret_key = ""  # moved to /etc/stratum/stratum.env' in out
    assert out.endswith('cold]\nsecret_key = ""\n')  # an empty value stays as it was
    parsed = parse_settings(out)
    assert parsed.cold.access_key == "" and parsed.cold.secret_key == ""
    assert redact_keys(out) == out
