"""``stratum-appliance``: the commands.

stratum-appliance firstboot          run once by stratum-firstboot.service
stratum-appliance provision [--dry-run]   add newly attached disks (and re-read the file)
stratum-appliance replace OLD NEW    a new disk NEW takes the place of the pool OLD
stratum-appliance plan               what provision would do, changing nothing
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from appliance import render, system
from appliance.disks import Plan, Pool, Use, plan_disks
from appliance.settings import EXAMPLE, Settings, SettingsError, parse_settings, redact_keys
from appliance.system import BOOT, CONFIG, ENV_FILE, CommandError, say

SETTINGS_FILE = BOOT / "stratum-appliance.toml"
CREDENTIALS_FILE = BOOT / "stratum-credentials.txt"
REPORT_FILE = BOOT / "stratum-report.txt"
CERT_FILE = BOOT / "stratum-cert.pem"
MARKER = Path("/var/lib/stratum-appliance/firstboot-done")
ISSUE = Path("/etc/issue.d/stratum.issue")
DROPIN = Path("/etc/systemd/system/stratum.service.d/pools.conf")


class Failed(Exception):
    """Provisioning stops: the message says why; nothing further is changed."""


def load_settings() -> tuple[Settings, str]:
    try:
        text = SETTINGS_FILE.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return Settings(), ""
    try:
        return parse_settings(text), text
    except SettingsError as exc:
        raise Failed(f"{SETTINGS_FILE}: {exc}") from None


def choose_filesystem(settings: Settings, needs_zfs: bool) -> tuple[str, str]:
    """(filesystem for new pools, why) given the settings and what this kernel can do."""
    if settings.filesystem == "ext4":
        return "ext4", "filesystem = ext4 in stratum-appliance.toml"
    if not needs_zfs:
        return ("zfs", "") if system.zfs_loaded() else ("ext4", "no disk to build a pool on")
    if system.zfs_loaded():
        return "zfs", ""
    why = system.zfs_build_possible()
    if not why:
        if system.build_zfs(say):
            return "zfs", "module built with DKMS on this machine"
        why = "the DKMS build of the ZFS module failed"
    if settings.filesystem == "zfs":
        raise Failed(f"filesystem = zfs, but ZFS is not available: {why}")
    return "ext4", f"ZFS unavailable: {why}"


def make_plan(settings: Settings, known: list[Pool], wait: float) -> tuple[Plan, str, str]:
    devices = system.probe_disks(wait=wait)
    sys_disks = system.system_disks()
    known_map = {p.pool: p.tier for p in known}
    trial = plan_disks(
        devices, settings, filesystem="ext4", system_disks=sys_disks, known_pools=known_map
    )
    needs_zfs = any(u.create or u.filesystem == "zfs" for u in trial.use) and not trial.errors
    filesystem, why = choose_filesystem(settings, needs_zfs)
    plan = plan_disks(
        devices,
        settings,
        filesystem=filesystem,
        system_disks=sys_disks,
        known_pools=known_map,
        zfs_available=filesystem == "zfs" or system.zfs_loaded(),
    )
    return plan, filesystem, why


def provision(
    settings: Settings, keys: tuple[str, str], *, wait: float, dry_run: bool = False
) -> list[Pool]:
    """Pools for the attached disks (existing ones kept), config and fstab written.

    Returns every pool the appliance runs. Raises :class:`Failed` before touching any disk
    when the plan has errors.
    """
    known = system.load_state()
    plan, filesystem, why = make_plan(settings, known, wait)
    port = render.console_port(render.stratum_config([], settings))
    scheme = "https" if system.TLS_CERT.exists() else "http"
    console = f"{scheme}://{settings.hostname}.local:{port}" if port else ""
    text = render.report(plan.lines(), filesystem=filesystem, zfs_note=why, console=console)
    for line in plan.lines():
        say(line)
    if dry_run:
        return known
    _write_boot_file(REPORT_FILE, text)
    if plan.errors:
        raise Failed("; ".join(plan.errors))
    pools = list(known)
    by_name = {p.pool: i for i, p in enumerate(pools)}
    for use in plan.use:
        pool = _build(use)
        if pool.pool in by_name:
            pools[by_name[pool.pool]] = pool
        else:
            by_name[pool.pool] = len(pools)
            pools.append(pool)
        system.save_state(pools)  # after each disk: a crash never forgets a built pool
    write_fstab(pools)
    for pool in pools:
        if any(u.pool == pool.pool for u in plan.use):
            system.mount_pool(pool)
    write_config(pools, settings, keys)
    return pools


def _build(use: Use) -> Pool:
    if not use.create:
        say(f"keeping the existing {use.tier} pool {use.pool} on {use.device.by_id}")
        return system.adopt_pool(use)
    what = "erasing and formatting" if use.wipe else "formatting"
    say(f"{what} {use.device.describe()} as the {use.tier} pool {use.pool} ({use.filesystem})")
    started = time.monotonic()
    pool = system.create_pool(use)
    say(f"{use.pool} ready in {time.monotonic() - started:.0f} s")
    return pool


def write_fstab(pools: list[Pool]) -> None:
    fstab = Path("/etc/fstab")
    mounts = {p.mount: p.uuid for p in pools if p.filesystem == "ext4" and p.uuid}
    system.write_file(fstab, render.fstab_with(fstab.read_text(), mounts))
    system.write_file(DROPIN, render.service_dropin(mounts))
    system.run(["systemctl", "daemon-reload"], check=False)


def write_config(pools: list[Pool], settings: Settings, keys: tuple[str, str]) -> None:
    tls = None
    if system.TLS_CERT.exists() and system.TLS_KEY.exists():
        tls = (str(system.TLS_CERT), str(system.TLS_KEY))
    config = render.stratum_config(pools, settings, keys, tls)
    system.write_file(CONFIG, render.dump_toml(config, render.CONFIG_HEADER), 0o640, "stratum")
    checked = system.stratum("config", "check", str(CONFIG), check=False)
    if checked.returncode != 0:
        raise Failed(f"{CONFIG} is not valid: {(checked.stderr or checked.stdout).strip()}")


def certificate(settings: Settings) -> str | None:
    """The fingerprint of the appliance's TLS certificate, made on the first boot (for its
    name and the addresses it has then) and kept; None, and plain HTTP, if it cannot be."""
    try:
        if not (system.TLS_CERT.exists() and system.TLS_KEY.exists()):
            command = render.certificate_command(
                settings.hostname, system.addresses(), str(system.TLS_CERT), str(system.TLS_KEY)
            )
            system.make_certificate(command)
            say(f"made a TLS certificate for {settings.hostname}.local: {system.TLS_CERT}")
        text = system.TLS_CERT.read_text()
        fingerprint = render.fingerprint(text)
    except (CommandError, OSError, ValueError) as exc:
        say(f"no TLS certificate ({exc}): Stratum serves plain HTTP")
        return None
    _write_boot_file(CERT_FILE, text)
    return fingerprint


def s3_keys() -> tuple[str, str]:
    """The S3 root keys: those in the current stratum.toml, else new ones."""
    existing = render.config_keys(CONFIG.read_text()) if CONFIG.exists() else None
    return existing or render.new_credentials()


def cold_keys(settings: Settings) -> None:
    """The cold tier's keys go to the environment file (root only), not the boot partition."""
    if not settings.cold.access_key:
        return
    env = render.parse_env(ENV_FILE.read_text()) if ENV_FILE.exists() else {}
    env["STRATUM_COLD_ACCESS_KEY"] = settings.cold.access_key
    env["STRATUM_COLD_SECRET_KEY"] = settings.cold.secret_key
    system.write_file(ENV_FILE, render.render_env(env), 0o600)


def _write_boot_file(path: Path, text: str) -> None:
    try:
        system.write_file(path, text, 0o600)
    except OSError as exc:
        say(f"could not write {path}: {exc}")


def recover_metadata_if_needed(pools: list[Pool]) -> None:
    """Disks that hold Stratum data but no metadata store (a fresh card on old disks): the
    store is rebuilt from them before Stratum starts, which would otherwise free their shard
    files as orphans."""
    meta = Path(render.DATA_DIR) / "meta"
    has_data = [p for p in pools if (Path(p.data_dir) / "stratum-disk.json").exists()]
    if meta.exists() or not has_data:
        return
    say(f"{len(has_data)} pools hold Stratum data: rebuilding the metadata store from them")
    result = system.stratum("recover-metadata", "--config", str(CONFIG), check=False)
    for line in (result.stdout + result.stderr).strip().splitlines()[-10:]:
        say(f"  {line}")
    system.own_data_dir()
    if result.returncode != 0:
        raise Failed("recover-metadata failed: Stratum is not started (see above)")


def start_service() -> None:
    system.run(["systemctl", "enable", "stratum.service"])
    # --no-block: this runs inside stratum-firstboot.service, which stratum.service waits for
    system.run(["systemctl", "restart", "--no-block", "stratum.service"])


def cmd_firstboot() -> int:
    say("first boot of the Stratum appliance")
    try:
        settings, text = load_settings()
    except Failed as exc:
        say(f"error: {exc}")
        _write_boot_file(REPORT_FILE, f"error: {exc}\nFix the file and reboot.\n")
        return 1
    if not text:
        _write_boot_file(SETTINGS_FILE, EXAMPLE)
    elif redact_keys(text) != text:
        _write_boot_file(SETTINGS_FILE, redact_keys(text))
    try:
        say(system.grow_root())
    except (CommandError, OSError) as exc:
        say(f"root filesystem not grown: {exc}")
    system.set_hostname(settings.hostname)
    system.ssh_setup(settings.ssh_authorized_keys)
    system.ensure_hostid()
    fingerprint = certificate(settings)
    keys = s3_keys()
    cold_keys(settings)
    try:
        pools = provision(settings, keys, wait=15)
        recover_metadata_if_needed(pools)
    except (Failed, CommandError, OSError) as exc:
        say(f"error: {exc}")
        say("nothing more is done; fix it and reboot (or run `stratum-appliance firstboot`)")
        return 1
    config = render.stratum_config(pools, settings, keys)
    server = config["server"]
    access, secret = server["access_key"], server["secret_key"]
    port, region = render.listen_port({"server": server}), server.get("region", "us-east-1")
    console = render.console_port(config)
    note = render.credentials_note(
        settings.hostname,
        access,
        secret,
        port=port,
        region=region,
        fingerprint=fingerprint,
        console=console,
    )
    _write_boot_file(CREDENTIALS_FILE, note)
    scheme = "http" if fingerprint is None else "https"
    certified = "" if fingerprint is None else f"certificate SHA-256 {fingerprint}\n"
    web = f"Web console: {scheme}://\\n.local:{console}\n" if console else ""
    system.write_file(
        ISSUE,
        f"Stratum S3: {scheme}://\\n.local:{port} or {scheme}://\\4:{port}  access key {access}\n"
        f"{web}{certified}(secret key: {CREDENTIALS_FILE} or {CONFIG})\n\n",
    )
    start_service()
    MARKER.parent.mkdir(parents=True, exist_ok=True)
    MARKER.write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
    banner = "=" * 72
    print(f"\n{banner}\n{note}{banner}\n", flush=True)
    say("first boot done: stratum.service is starting")
    return 0


def cmd_provision(dry_run: bool) -> int:
    try:
        settings, _ = load_settings()
        keys = s3_keys()
        if dry_run:
            provision(settings, keys, wait=0, dry_run=True)
            return 0
        cold_keys(settings)
        was_active = system.service_active()
        pools = provision(settings, keys, wait=0)
        if was_active:
            system.run(["systemctl", "restart", "stratum.service"])
        recover_metadata_if_needed(pools)
    except (Failed, CommandError, OSError) as exc:
        say(f"error: {exc}")
        return 1
    say(f"{len(pools)} pools; configuration in {CONFIG}")
    return 0


def cmd_replace(old: str, new: str) -> int:
    """The pool ``old`` (its name, ``hot-1a2b3c`` or ``stratum-hot-1a2b3c``) is gone; the disk
    ``new`` (by-id name or path; erased even if it holds data) takes its place."""
    try:
        settings, _ = load_settings()
        pools = system.load_state()
        wanted = old if old.startswith("stratum-") else f"stratum-{old}"
        index = next((i for i, p in enumerate(pools) if p.pool == wanted), None)
        if index is None:
            raise Failed(f"no pool {wanted}; the pools are {', '.join(p.pool for p in pools)}")
        gone = pools[index]
        replacement = Settings(
            filesystem=gone.filesystem,
            auto_usb=False,
            **{gone.tier: (new,)},  # type: ignore[arg-type]
        )
        plan, _, _ = make_plan(replacement, [], wait=0)
        use = next((u for u in plan.use if u.create), None)
        if plan.errors or use is None:
            raise Failed("; ".join(plan.errors) or f"{new}: not a disk that can be used")
        if system.service_active():
            system.run(["systemctl", "stop", "stratum.service"])
        pool = _build(use)
        pools[index] = pool
        system.save_state(pools)
        write_fstab(pools)
        system.mount_pool(pool)  # an empty data directory: what stratum disk replace wants
        result = system.stratum(
            "disk", "replace", gone.data_dir, pool.data_dir, "--config", str(CONFIG), check=False
        )
        if result.returncode != 0:
            raise Failed(f"stratum disk replace: {(result.stderr or result.stdout).strip()}")
        system.mount_pool(pool)  # ownership of the new directory
        write_config(pools, settings, s3_keys())
        start_service()
    except (Failed, CommandError, OSError) as exc:
        say(f"error: {exc}")
        return 1
    say(f"{pool.pool} replaces {gone.pool}: Stratum rebuilds its shards from parity")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stratum-appliance", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("firstboot", help="first-boot provisioning (stratum-firstboot.service)")
    prov = sub.add_parser("provision", help="build pools on newly attached disks")
    prov.add_argument("--dry-run", action="store_true", help="only say what would be done")
    sub.add_parser("plan", help="what provision would do (changes nothing)")
    rep = sub.add_parser("replace", help="a new disk takes the place of a failed pool")
    rep.add_argument("old", help="the pool, e.g. hot-1a2b3c (see stratum-appliance plan)")
    rep.add_argument("new", help="the new disk: /dev/disk/by-id name or /dev path")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("stratum-appliance: run it as root", file=sys.stderr)
        return 2
    if args.command == "firstboot":
        return cmd_firstboot()
    if args.command in ("provision", "plan"):
        return cmd_provision(dry_run=args.command == "plan" or args.dry_run)
    return cmd_replace(args.old, args.new)
