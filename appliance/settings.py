"""``stratum-appliance.toml``: what the user may say on the boot partition before first boot.

Every key is optional; without the file the appliance is called ``stratum`` (``stratum.local``),
uses every attached USB disk that holds no data, ZFS where it can, and no cold tier.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

FILESYSTEMS = ("auto", "zfs", "ext4")

EXAMPLE = """\
# stratum-appliance.toml: read once, at the first boot of the Stratum Raspberry Pi image.
# Every key is optional. Edit it on the boot partition (the FAT one, readable from any computer)
# before the first boot; later, change it and run `stratum-appliance provision` on the Pi.

# Name on the LAN: the appliance answers as <hostname>.local (mDNS).
#hostname = "stratum"

# Filesystem of the data disks: "auto" = ZFS (one pool per disk; the ZFS module is compiled on
# the first boot, which takes a while and shows its progress), else ext4; "zfs"; "ext4".
#filesystem = "auto"

# Attached USB disks that hold no data (no partition table, no filesystem) are used by
# themselves. false: only the disks named below.
#auto_usb = true

# Disks to use, by their name in /dev/disk/by-id (`ls -l /dev/disk/by-id` on any Linux, or
# the report in stratum-report.txt after a boot). A disk named here is FORMATTED EVEN IF IT
# HOLDS DATA (a disk that already is a Stratum pool is kept as it is).
#disks = ["usb-Samsung_Portable_SSD_T7_S5SXNG0R123456A-0:0"]

# Tiers: SSDs go to the hot tier and HDDs to the warm tier (by the kernel's rotational flag),
# unless listed here. Disks listed here count as named (see above).
#hot = []
#warm = []

# SSH public keys allowed to log in as root (there is no password login over SSH).
#ssh_authorized_keys = ["ssh-ed25519 AAAA... me@laptop"]

# A cold tier: an S3 bucket elsewhere that receives objects idle in the warm tier (encrypted).
# The keys are moved to /etc/stratum/stratum.env and removed from this file at first boot.
#[cold]
#endpoint = "https://s3.eu-central-003.backblazeb2.com"
#bucket = "my-stratum-cold"
#region = "eu-central-003"
#access_key = ""
#secret_key = ""

# Anything under [stratum] goes into /etc/stratum/stratum.toml as it is, over what the
# appliance generates (see `stratum config default` for every key), e.g.:
#[stratum.server]
#listen = "0.0.0.0:9000"
"""

_HOSTNAME = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)", re.A)
_KEY = re.compile(r"[\x21-\x7e]*", re.A)


class SettingsError(Exception):
    """The appliance file is wrong: the message names the key and why."""


@dataclass(frozen=True)
class ColdSettings:
    endpoint: str = ""
    bucket: str = ""
    region: str = "us-east-1"
    prefix: str = "stratum/"
    access_key: str = field(default="", repr=False)
    secret_key: str = field(default="", repr=False)

    @property
    def enabled(self) -> bool:
        return bool(self.endpoint)


@dataclass(frozen=True)
class Settings:
    hostname: str = "stratum"
    filesystem: str = "auto"
    auto_usb: bool = True
    disks: tuple[str, ...] = ()
    hot: tuple[str, ...] = ()
    warm: tuple[str, ...] = ()
    ssh_authorized_keys: tuple[str, ...] = ()
    cold: ColdSettings = ColdSettings()
    stratum: dict[str, Any] = field(default_factory=dict)

    @property
    def named(self) -> tuple[str, ...]:
        """Every disk the user named (``disks``, ``hot`` and ``warm``), in that order."""
        out: list[str] = []
        for name in (*self.disks, *self.hot, *self.warm):
            if name not in out:
                out.append(name)
        return tuple(out)


def _string(table: dict[str, Any], key: str, where: str, default: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str):
        raise SettingsError(f"{where}{key}: must be a string")
    return value


def _strings(table: dict[str, Any], key: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise SettingsError(f'{key}: must be a list of strings, e.g. ["usb-..."]')
    return tuple(value)


def parse_settings(text: str) -> Settings:
    """Settings from the text of ``stratum-appliance.toml``; raises :class:`SettingsError`."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"not valid TOML: {exc}") from None
    known = {f for f in Settings.__dataclass_fields__}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise SettingsError(f"unknown key {unknown[0]} (known: {', '.join(sorted(known))})")
    hostname = _string(doc, "hostname", "", "stratum").lower()
    if not _HOSTNAME.fullmatch(hostname):
        raise SettingsError(
            f'hostname: must be letters, digits and dashes (one DNS label), got "{hostname}"'
        )
    filesystem = _string(doc, "filesystem", "", "auto")
    if filesystem not in FILESYSTEMS:
        raise SettingsError(f"filesystem: must be one of {', '.join(FILESYSTEMS)}")
    auto_usb = doc.get("auto_usb", True)
    if not isinstance(auto_usb, bool):
        raise SettingsError("auto_usb: must be true or false")
    disks, hot, warm = _strings(doc, "disks"), _strings(doc, "hot"), _strings(doc, "warm")
    both = sorted(set(hot) & set(warm))
    if both:
        raise SettingsError(f"{both[0]} is listed in both hot and warm")
    for name in (*disks, *hot, *warm):
        if re.search(r"-part[0-9]+$|^/dev/(sd[a-z]+|vd[a-z]+|nvme[0-9]+n[0-9]+p)[0-9]+$", name):
            raise SettingsError(f"{name}: is a partition; name the whole disk")
    keys = _strings(doc, "ssh_authorized_keys")
    stratum = doc.get("stratum", {})
    if not isinstance(stratum, dict):
        raise SettingsError("stratum: must be a table ([stratum.server], ...)")
    return Settings(
        hostname=hostname,
        filesystem=filesystem,
        auto_usb=auto_usb,
        disks=disks,
        hot=hot,
        warm=warm,
        ssh_authorized_keys=keys,
        cold=_parse_cold(doc.get("cold", {})),
        stratum=stratum,
    )


def _parse_cold(table: object) -> ColdSettings:
    if not isinstance(table, dict):
        raise SettingsError("cold: must be a table [cold]")
    known = set(ColdSettings.__dataclass_fields__)
    unknown = sorted(set(table) - known)
    if unknown:
        raise SettingsError(f"cold.{unknown[0]}: unknown key (known: {', '.join(sorted(known))})")
    defaults = ColdSettings()
    values = {k: _string(table, k, "cold.", getattr(defaults, k)) for k in known}
    cold = ColdSettings(**values)
    if cold.endpoint and not re.match(r"https?://[^/\s]+", cold.endpoint):
        raise SettingsError('cold.endpoint: must be a URL like "https://s3.example.com"')
    if cold.endpoint and not cold.bucket:
        raise SettingsError("cold.bucket: is required when cold.endpoint is set")
    if bool(cold.access_key) != bool(cold.secret_key):
        raise SettingsError("cold.access_key and cold.secret_key: set both or neither")
    for key in ("access_key", "secret_key"):
        if not _KEY.fullmatch(getattr(cold, key)):
            raise SettingsError(f"cold.{key}: must be printable ASCII without spaces")
    return cold


_SECRET_LINE = re.compile(r'^(\s*)(secret_key|access_key)\s*=\s*(["\']).+\3\s*(#.*)?$')


def redact_keys(text: str) -> str:
    """The appliance file with the values of ``access_key``/``secret_key`` lines removed.

    The keys go to /etc/stratum/stratum.env (readable by root only); the boot partition is
    readable by anyone who holds the card.
    """
    out = []
    for line in text.splitlines(keepends=True):
        match = _SECRET_LINE.match(line.rstrip("\r\n"))
        if match:
            ending = line[len(line.rstrip("\r\n")) :]
            line = (
                f'{match.group(1)}{match.group(2)} = ""  '
                f"# moved to /etc/stratum/stratum.env at first boot{ending}"
            )
        out.append(line)
    return "".join(out)
