"""The files the appliance writes, as text: pure functions of the plan and the settings."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import secrets
import string
import tomllib
from collections.abc import Iterable, Mapping
from typing import Any

from appliance.disks import TIERS, Pool, shard_layout
from appliance.settings import Settings

DATA_DIR = "/var/lib/stratum"
DEFAULT_LISTEN = "0.0.0.0:9000"
DEFAULT_CONSOLE_LISTEN = "0.0.0.0:9001"  # the web console, on the LAN like S3
CERT_DAYS = 3650  # a self-signed certificate, trusted by pinning: renewing it would only break
CONFIG_HEADER = """\
# /etc/stratum/stratum.toml, written by stratum-appliance from the pools it built and
# /boot/firmware/stratum-appliance.toml. It is written again by `stratum-appliance provision`
# (adding a disk) and `stratum-appliance replace`: put your own settings under [stratum] in the
# appliance file so they stay. Every key: `stratum.pyz config default`.
"""


# --- credentials --------------------------------------------------------------------------


def new_credentials() -> tuple[str, str]:
    """A fresh (access key, secret key): 20 upper-case letters and digits, 40 letters and
    digits (238 bits), like AWS's, and safe in an environment file without quoting."""
    upper = string.ascii_uppercase + string.digits
    mixed = string.ascii_letters + string.digits
    access = "".join(secrets.choice(upper) for _ in range(20))
    secret = "".join(secrets.choice(mixed) for _ in range(40))
    return access, secret


def parse_env(text: str) -> dict[str, str]:
    """``NAME=value`` lines of a systemd environment file (comments and blanks skipped)."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out[name.strip()] = value
    return out


def render_env(values: Mapping[str, str]) -> str:
    lines = [
        "# Environment of stratum.service, written by stratum-appliance; readable by root only.",
        "# The cold tier's keys (from stratum-appliance.toml, which no longer holds them).",
    ]
    for name in sorted(values):
        value = values[name]
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", name) or not re.fullmatch(r"[\x21-\x7e]*", value):
            raise ValueError(f"{name}: not a safe environment entry")
        lines.append(f"{name}={value}")
    return "\n".join(lines) + "\n"


def credentials_note(
    hostname: str,
    access: str,
    secret: str,
    *,
    port: int,
    region: str,
    fingerprint: str | None = None,
    console: int | None = None,
) -> str:
    """The text shown on the console and left on the boot partition at first boot;
    ``fingerprint``: the server's certificate (HTTPS), None for plain HTTP; ``console``: the
    web console's port (None: it is turned off)."""
    scheme = "http" if fingerprint is None else "https"
    url = f"{scheme}://{hostname}.local:{port}"
    web = (
        f"Web console: {scheme}://{hostname}.local:{console} (log in with the keys below)\n"
        if console
        else ""
    )
    trust = "" if fingerprint is None else " --ca-bundle stratum-cert.pem"
    certificate = (
        ""
        if fingerprint is None
        else f"""
The Pi made its own certificate (self-signed): stratum-cert.pem, on this partition too.
Give it to your clients (aws --ca-bundle, rclone --ca-cert, restic --cacert, boto3 verify=)
after checking that its SHA-256 fingerprint is this one:

sha256_fingerprint = {fingerprint}

  (openssl x509 -noout -fingerprint -sha256 -in stratum-cert.pem)
"""
    )
    return f"""\
Stratum S3 is ready at {url}
(or {scheme}://<the Pi's IP address>:{port}), region {region}.
{web}
access_key = {access}
secret_key = {secret}
{certificate}
  export AWS_ACCESS_KEY_ID={access} AWS_SECRET_ACCESS_KEY={secret}
  aws --endpoint-url {url}{trust} --region {region} s3 mb s3://photos

Keep the secret key somewhere safe, then delete this file from the boot partition: anyone
who reads the card can read it. The keys stay in /etc/stratum/stratum.toml on the Pi.
"""


def parse_fingerprint(text: str) -> str | None:
    """The certificate's fingerprint back from :func:`credentials_note`'s text (or a console
    log), None if it has none (plain HTTP)."""
    found = re.findall(r"\bsha256_fingerprint = ([0-9A-F:]+)[ \t]*$", text, re.M)
    return found[-1] if found else None


# --- the TLS certificate ------------------------------------------------------------------


def certificate_names(hostname: str, addresses: Iterable[str]) -> list[str]:
    """The subjectAltName entries of the appliance's certificate: its mDNS name, its bare
    host name, localhost, and its addresses (those it has at first boot; a later DHCP lease
    may differ, so the note gives the .local name)."""
    names = [f"DNS:{hostname}.local", f"DNS:{hostname}", "DNS:localhost"]
    seen = {"127.0.0.1", "::1"}
    ips = ["127.0.0.1", "::1"]
    for address in addresses:
        address = address.partition("%")[0]  # a link-local address's zone
        if address and address not in seen and re.fullmatch(r"[0-9a-fA-F.:]+", address):
            seen.add(address)
            ips.append(address)
    return names + [f"IP:{ip}" for ip in ips]


def certificate_command(hostname: str, addresses: Iterable[str], cert: str, key: str) -> list[str]:
    """``openssl req`` making the self-signed certificate (ECDSA P-256) and its key."""
    return [
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-sha256", "-days", str(CERT_DAYS), "-subj", f"/CN={hostname}.local",
        "-addext", "subjectAltName=" + ",".join(certificate_names(hostname, addresses)),
        "-keyout", key, "-out", cert,
    ]  # fmt: skip


def fingerprint(pem: str) -> str:
    """SHA-256 of the first certificate in ``pem``, as ``openssl x509 -fingerprint`` shows it
    (``AB:CD:...``). Raises ValueError if there is none."""
    found = re.search(r"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", pem, re.S)
    if found is None:
        raise ValueError("no PEM certificate")
    digest = hashlib.sha256(base64.b64decode("".join(found.group(1).split()))).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2)).upper()


def parse_credentials_note(text: str) -> tuple[str, str]:
    """(access key, secret key) back from :func:`credentials_note`'s text (used by CI), also
    from a console log, where each line has a prefix (the last ones printed win)."""
    found = dict(re.findall(r"\b(access_key|secret_key) = (\S+)[ \t]*$", text, re.M))
    return found["access_key"], found["secret_key"]


# --- stratum.toml -------------------------------------------------------------------------


def stratum_config(
    pools: Iterable[Pool],
    settings: Settings,
    keys: tuple[str, str] | None = None,
    tls: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The configuration as a dict: the S3 root keys, HTTPS with ``tls`` (certificate, key),
    pools as tiers, the cold tier, then ``[stratum]`` over it. The file is readable by root and
    the service only (0640)."""
    pools = list(pools)
    server: dict[str, Any] = {"listen": DEFAULT_LISTEN}
    if keys is not None:
        server["access_key"], server["secret_key"] = keys
    if tls is not None:
        server["tls_cert"], server["tls_key"] = tls
    config: dict[str, Any] = {
        "server": server,
        "storage": {"data_dir": DATA_DIR},
        "tiers": {},
        "console": {"listen": DEFAULT_CONSOLE_LISTEN},
    }
    for tier in TIERS:
        disks = [p.data_dir for p in pools if p.tier == tier]
        if not disks:
            continue
        table: dict[str, Any] = {"disks": disks}
        layout = shard_layout(len(disks))
        if layout is not None:
            table["data_shards"], table["parity_shards"] = layout
        config["tiers"][tier] = table
    cold = settings.cold
    if cold.enabled:
        config["tiers"]["cold"] = {
            "endpoint": cold.endpoint,
            "bucket": cold.bucket,
            "region": cold.region,
            "prefix": cold.prefix,
        }
    if not config["tiers"]:
        del config["tiers"]
    return merge(config, settings.stratum)


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``, tables merged key by key (neither is changed)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def config_keys(text: str) -> tuple[str, str] | None:
    """The S3 root keys in an existing stratum.toml (kept when it is written again)."""
    try:
        server = tomllib.loads(text).get("server", {})
    except tomllib.TOMLDecodeError:
        return None
    access, secret = server.get("access_key"), server.get("secret_key")
    if isinstance(access, str) and isinstance(secret, str) and access and secret:
        return access, secret
    return None


def listen_port(config: Mapping[str, Any]) -> int:
    listen = str(config.get("server", {}).get("listen", DEFAULT_LISTEN))
    port = listen.rsplit(":", 1)[-1]
    return int(port) if port.isdigit() else 9000


def console_port(config: Mapping[str, Any]) -> int | None:
    """The web console's port, None when ``[console] listen`` turns it off."""
    listen = str(config.get("console", {}).get("listen", DEFAULT_CONSOLE_LISTEN))
    port = listen.rsplit(":", 1)[-1]
    return int(port) if listen and port.isdigit() else None


def dump_toml(doc: Mapping[str, Any], header: str = "") -> str:
    """A small TOML writer: tables, strings, booleans, numbers and arrays of them."""
    lines = [header.rstrip("\n")] if header else []

    def table(prefix: str, mapping: Mapping[str, Any]) -> None:
        scalars = [(k, v) for k, v in mapping.items() if not isinstance(v, Mapping)]
        subs = [(k, v) for k, v in mapping.items() if isinstance(v, Mapping)]
        if prefix and (scalars or not subs):
            lines.append("")
            lines.append(f"[{prefix}]")
        for key, value in scalars:
            lines.append(f"{_key(key)} = {_value(value)}")
        for key, value in subs:
            table(f"{prefix}.{_key(key)}" if prefix else _key(key), value)

    table("", doc)
    return "\n".join(lines).lstrip("\n") + "\n"


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("TOML numbers must be finite here")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise ValueError(f"cannot write {type(value).__name__} as TOML")


# --- fstab --------------------------------------------------------------------------------

FSTAB_MARK = "# stratum-appliance"


def fstab_with(text: str, mounts: Mapping[str, str]) -> str:
    """``/etc/fstab`` with one line per ext4 pool (``mount point -> filesystem UUID``).

    Lines this function wrote before are replaced; everything else is kept. ``nofail``: a
    missing disk does not stop the boot (Stratum then reports it offline); 90 s for a USB disk
    to spin up and show up. :func:`service_dropin` makes Stratum wait for these mounts (and
    start them again if they gave up too early: a restart of Stratum retries them).
    """
    kept = [
        line
        for line in text.splitlines()
        if not line.rstrip().endswith(FSTAB_MARK)
        and not any(line.split()[1:2] == [m] for m in mounts)
    ]
    options = "defaults,noatime,nofail,x-systemd.device-timeout=90s"
    for mount, uuid in sorted(mounts.items()):
        kept.append(f"UUID={uuid}\t{mount}\text4\t{options}\t0\t2\t{FSTAB_MARK}")
    return "\n".join(kept) + "\n"


def mount_unit(path: str) -> str:
    """The systemd mount unit of ``path`` (``systemd-escape --path --suffix=mount``)."""
    trimmed = path.strip("/")
    if not trimmed:
        return "-.mount"
    out = []
    for i, ch in enumerate(trimmed):
        if ch == "/":
            out.append("-")
        elif ch.isascii() and (ch.isalnum() or ch in ":_" or (ch == "." and i > 0)):
            out.append(ch)
        else:
            out.extend(f"\\x{b:02x}" for b in ch.encode())
    return "".join(out) + ".mount"


def service_dropin(mounts: Iterable[str]) -> str:
    """``stratum.service.d/pools.conf``: Stratum starts after its ext4 pools are mounted.

    ``nofail`` mounts are not ordered before local-fs.target, so without this Stratum could
    start first and find empty mount points. Wants, not Requires: a missing disk must not keep
    Stratum from serving from parity (it sees that disk offline).
    """
    units = " ".join(mount_unit(m) for m in sorted(mounts))
    lines = ["# Written by stratum-appliance: the pools' mounts, before Stratum.", "[Unit]"]
    if units:
        lines += [f"Wants={units}", f"After={units}"]
    return "\n".join(lines) + "\n"


def report(
    plan_lines: Iterable[str], *, filesystem: str, zfs_note: str = "", console: str = ""
) -> str:
    """``console``: the web console's address, when it is served."""
    lines = [
        "Stratum appliance: disks (written by stratum-appliance at every provisioning run)",
        f"filesystem for new pools: {filesystem}{' (' + zfs_note + ')' if zfs_note else ''}",
        *([f"web console: {console} (log in with the S3 keys)"] if console else []),
        "",
        *plan_lines,
        "",
        "Disks are named by /dev/disk/by-id. To use a disk that was skipped, name it in",
        "stratum-appliance.toml (disks = [...]) and run `stratum-appliance provision`.",
    ]
    return "\n".join(lines) + "\n"
