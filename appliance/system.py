"""What the appliance does to the machine: probing disks, building pools, files, services.

Every command goes through :func:`run`, which logs it. Nothing here decides which disk to use:
:mod:`appliance.disks` does, and :mod:`appliance.cli` calls these with its plan.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from appliance.disks import BlockDevice, Pool, Use, devices_from_lsblk

BOOT = Path("/boot/firmware")
ETC = Path("/etc/stratum")
CONFIG = ETC / "stratum.toml"
ENV_FILE = ETC / "stratum.env"
STATE = ETC / "appliance.json"
TLS_DIR = ETC / "tls"
TLS_CERT = TLS_DIR / "cert.pem"
TLS_KEY = TLS_DIR / "key.pem"
PYZ = Path("/usr/local/bin/stratum.pyz")
LOG = Path("/var/log/stratum-appliance.log")
USER = "stratum"
LSBLK_COLUMNS = "NAME,TYPE,SIZE,ROTA,RO,TRAN,MODEL,SERIAL,FSTYPE,LABEL,PARTLABEL,PTTYPE,MOUNTPOINTS"


class CommandError(Exception):
    pass


def say(message: str) -> None:
    """A line for the person at the console (stdout goes to the console and the journal)."""
    print(f"stratum-appliance: {message}", flush=True)
    try:
        with LOG.open("a") as log:
            log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
    except OSError:
        pass


def run(
    cmd: Sequence[str], *, check: bool = True, input: str | None = None, quiet: bool = False
) -> subprocess.CompletedProcess[str]:
    if not quiet:
        try:
            with LOG.open("a") as log:
                log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} $ {' '.join(cmd)}\n")
        except OSError:
            pass
    result = subprocess.run(
        list(cmd), input=input, capture_output=True, text=True, check=False, env=_env()
    )
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise CommandError(f"{' '.join(cmd)} failed ({result.returncode}): {' '.join(detail)}")
    return result


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env["LC_ALL"] = "C.UTF-8"
    env["SHIV_ROOT"] = "/var/cache/stratum"
    return env


def write_file(path: Path, text: str, mode: int = 0o644, group: str | None = None) -> None:
    """Atomically (temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    if group is not None:
        try:
            shutil.chown(tmp, "root", group)
        except (LookupError, OSError):
            pass
    os.replace(tmp, path)


# --- probing ------------------------------------------------------------------------------


def probe_disks(wait: float = 0.0) -> list[BlockDevice]:
    """Whole disks now; with ``wait``, until the set has not changed for 3 s (USB disks spin
    up and appear a few seconds after boot), at most ``wait`` seconds."""
    run(["udevadm", "settle", "--timeout=30"], check=False, quiet=True)
    deadline = time.monotonic() + wait
    last: list[str] = []
    stable_since = time.monotonic()
    while True:
        names = sorted(d.name for d in _probe())
        if names != last:
            last, stable_since = names, time.monotonic()
        if time.monotonic() >= deadline or time.monotonic() - stable_since >= 3:
            break
        time.sleep(1)
    return _probe()


def _probe() -> list[BlockDevice]:
    out = run(["lsblk", "-J", "-b", "-o", LSBLK_COLUMNS], quiet=True).stdout
    lsblk = json.loads(out)
    by_id: dict[str, str] = {}
    base = Path("/dev/disk/by-id")
    if base.is_dir():
        for link in base.iterdir():
            by_id[link.name] = Path(os.path.realpath(link)).name
    signatures: dict[str, list[str]] = {}
    for node in lsblk.get("blockdevices", []):
        if node.get("type") != "disk":
            continue
        found = run(["wipefs", "-n", "-J", f"/dev/{node['name']}"], check=False, quiet=True)
        if found.returncode != 0:
            signatures[node["name"]] = ["unreadable"]  # when in doubt, it holds data
            continue
        if found.stdout.strip():
            doc = json.loads(found.stdout)
            signatures[node["name"]] = [s.get("type", "?") for s in doc.get("signatures", [])]
    return devices_from_lsblk(lsblk, by_id, signatures)


def system_disks() -> set[str]:
    """Kernel names of the disks that hold / and /boot/firmware."""
    names = set()
    for mount in ("/", str(BOOT)):
        source = run(["findmnt", "-n", "-o", "SOURCE", mount], check=False, quiet=True)
        dev = source.stdout.strip()
        if not dev.startswith("/dev/"):
            continue
        parent = run(["lsblk", "-n", "-d", "-o", "PKNAME", dev], check=False, quiet=True)
        names.add(parent.stdout.strip() or Path(dev).name)
    return names


# --- first-boot system steps --------------------------------------------------------------


def grow_root() -> str:
    """Grow the root partition and filesystem to the whole card (or USB boot disk)."""
    dev = run(["findmnt", "-n", "-o", "SOURCE", "/"]).stdout.strip()
    parent = run(["lsblk", "-n", "-d", "-o", "PKNAME", dev]).stdout.strip()
    number = Path(f"/sys/class/block/{Path(dev).name}/partition").read_text().strip()
    grown = run(["growpart", f"/dev/{parent}", number], check=False)
    if grown.returncode not in (0, 1):  # 1: NOCHANGE (already the whole disk)
        raise CommandError(f"growpart: {(grown.stderr or grown.stdout).strip()}")
    run(["resize2fs", dev])
    size = shutil.disk_usage("/").total
    return f"root filesystem {dev}: {size / 1e9:.1f} GB"


def set_hostname(name: str) -> None:
    write_file(Path("/etc/hostname"), name + "\n")
    hosts = Path("/etc/hosts")
    lines = [ln for ln in hosts.read_text().splitlines() if not ln.startswith("127.0.1.1")]
    lines.insert(1, f"127.0.1.1\t{name}")
    write_file(hosts, "\n".join(lines) + "\n")
    run(["hostname", name], check=False)
    run(["systemctl", "try-restart", "avahi-daemon.service"], check=False)


def ssh_setup(keys: Sequence[str]) -> None:
    run(["ssh-keygen", "-A"], check=False)
    if keys:
        ssh = Path("/root/.ssh")
        ssh.mkdir(mode=0o700, exist_ok=True)
        write_file(ssh / "authorized_keys", "".join(k.strip() + "\n" for k in keys), 0o600)


def addresses() -> list[str]:
    """The machine's addresses now (``hostname -I``; none if the network is not up yet)."""
    return run(["hostname", "-I"], check=False, quiet=True).stdout.split()


def make_certificate(command: Sequence[str]) -> None:
    """Run the ``openssl req`` that writes :data:`TLS_CERT` and :data:`TLS_KEY`; the key
    readable by root and the service (group), the certificate by anyone."""
    TLS_DIR.mkdir(parents=True, exist_ok=True)
    os.chmod(TLS_DIR, 0o750)
    old = os.umask(0o077)  # the key is never readable by others, not even for a moment
    try:
        run(command)
    finally:
        os.umask(old)
    os.chmod(TLS_KEY, 0o640)
    os.chmod(TLS_CERT, 0o644)
    for path in (TLS_DIR, TLS_KEY):
        try:
            shutil.chown(path, "root", USER)
        except (LookupError, OSError):
            pass


# --- ZFS ----------------------------------------------------------------------------------


def zfs_loaded() -> bool:
    if Path("/sys/module/zfs").is_dir():
        return True
    return run(["modprobe", "zfs"], check=False).returncode == 0


def zfs_build_possible() -> str:
    """Empty if DKMS can build the ZFS module for the running kernel, else why not."""
    kernel = os.uname().release
    if not shutil.which("dkms"):
        return "dkms is not installed"
    if not list(Path("/usr/src").glob("zfs-*")):
        return "the ZFS source (zfs-dkms) is not installed"
    if not Path(f"/lib/modules/{kernel}/build").exists():
        return f"no kernel headers for Linux {kernel} (apt install linux-headers-{kernel})"
    return ""


def build_zfs(progress: Callable[[str], None], every: float = 30.0) -> bool:
    """Compile and install the ZFS module with DKMS for the running kernel, telling how far it
    got every ``every`` seconds. On a Raspberry Pi 4 this takes about half an hour."""
    kernel = os.uname().release
    source = sorted(Path("/usr/src").glob("zfs-*"))[-1]
    version = source.name[len("zfs-") :]
    c_files = (source / "module").rglob("*.c")
    total = sum(1 for c in c_files if "freebsd" not in c.parts) or 1
    build = Path(f"/var/lib/dkms/zfs/{version}/build")
    log = Path("/var/log/stratum-appliance-zfs-build.log")
    progress(
        f"building the ZFS {version} module for Linux {kernel} with DKMS: this takes a while"
        f" (about 30 minutes on a Pi 4); log: {log}"
    )
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["dkms", "install", "-m", "zfs", "-v", version, "-k", kernel],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_env(),
        )
        last = started
        while proc.poll() is None:
            time.sleep(1)
            if time.monotonic() - last >= every:
                last = time.monotonic()
                done = sum(1 for _ in build.rglob("*.o")) if build.is_dir() else 0
                minutes = (last - started) / 60
                progress(
                    f"ZFS module: {minutes:.0f} min, {done} of ~{total} files compiled"
                    f" ({min(99, 100 * done // total)}%)"
                )
    elapsed = (time.monotonic() - started) / 60
    if proc.returncode != 0:
        progress(f"ZFS module build failed after {elapsed:.0f} min (see {log})")
        return False
    progress(f"ZFS module built in {elapsed:.0f} min")
    return run(["modprobe", "zfs"], check=False).returncode == 0


def ensure_hostid() -> None:
    if not Path("/etc/hostid").exists() and shutil.which("zgenhostid"):
        run(["zgenhostid"], check=False)


# --- pools --------------------------------------------------------------------------------


def _disk_path(device: BlockDevice) -> str:
    return f"/dev/disk/by-id/{device.ids[0]}" if device.ids else device.path


def _mount_dir(mount: str) -> None:
    """An empty, immutable mount point: if the pool is not mounted, nothing can be written
    there (Stratum then sees the disk offline instead of filling the boot medium)."""
    path = Path(mount)
    if os.path.ismount(path):
        return
    path.mkdir(parents=True, exist_ok=True)
    run(["chattr", "+i", str(path)], check=False)


def _wipe(device: BlockDevice) -> None:
    for part in device.partitions:
        run(["wipefs", "-a", f"/dev/{part.name}"], check=False)
    run(["wipefs", "-a", device.path])
    run(["udevadm", "settle"], check=False)


def create_pool(use: Use) -> Pool:
    """Build the pool ``use`` describes (the disk is erased first when it holds data)."""
    if use.wipe or use.device.data:
        _wipe(use.device)
    _mount_dir(use.mount)
    if use.filesystem == "zfs":
        run(
            [
                "zpool", "create", "-f", "-o", "ashift=12",
                "-O", "compression=lz4", "-O", "atime=off", "-O", "xattr=sa",
                "-O", f"mountpoint={use.mount}", use.pool, _disk_path(use.device),
            ]
        )  # fmt: skip
        pool = use.as_pool()
    else:
        script = f'label: gpt\nsize=+, type=L, name="{use.pool}"\n'
        run(["sfdisk", "-q", "-W", "always", use.device.path], input=script)
        run(["udevadm", "settle"], check=False)
        part = _wait_for(Path(f"/dev/disk/by-partlabel/{use.pool}"))
        label = use.pool[len("stratum-") :][:16]
        run(["mkfs.ext4", "-q", "-F", "-L", label, "-m", "1", "-T", "big", str(part)])
        uuid = run(["blkid", "-s", "UUID", "-o", "value", str(part)]).stdout.strip()
        pool = use.as_pool(uuid)
    return pool


def _wait_for(path: Path, seconds: float = 30) -> Path:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            raise CommandError(f"{path} did not appear")
        run(["udevadm", "settle"], check=False, quiet=True)
        time.sleep(0.5)
    return path


def adopt_pool(use: Use) -> Pool:
    """An existing Stratum pool: import (ZFS) or look up (ext4), never format."""
    if use.filesystem == "zfs":
        imported = run(["zpool", "list", "-H", "-o", "name"], check=False).stdout.split()
        if use.pool not in imported:
            _mount_dir(use.mount)
            run(["zpool", "import", "-f", "-d", "/dev/disk/by-id", use.pool])
        return use.as_pool()
    part = _wait_for(Path(f"/dev/disk/by-partlabel/{use.pool}"))
    uuid = run(["blkid", "-s", "UUID", "-o", "value", str(part)]).stdout.strip()
    return use.as_pool(uuid)


def mount_pool(pool: Pool) -> None:
    """Mounted (ext4 through fstab, ZFS by the pool), with Stratum's directory inside."""
    if pool.filesystem == "ext4" and not os.path.ismount(pool.mount):
        _mount_dir(pool.mount)
        run(["systemctl", "daemon-reload"], check=False)
        run(["mount", pool.mount])
    if pool.filesystem == "zfs" and not os.path.ismount(pool.mount):
        run(["zfs", "mount", pool.pool], check=False)
    if not os.path.ismount(pool.mount):
        raise CommandError(f"{pool.pool} is not mounted at {pool.mount}")
    data = Path(pool.data_dir)
    data.mkdir(exist_ok=True)
    os.chmod(data, 0o750)
    shutil.chown(data, USER, USER)


def load_state() -> list[Pool]:
    try:
        doc = json.loads(STATE.read_text())
    except FileNotFoundError:
        return []
    return [Pool(**p) for p in doc.get("pools", [])]


def save_state(pools: Sequence[Pool]) -> None:
    doc = {"version": 1, "pools": [p.__dict__ for p in pools]}
    write_file(STATE, json.dumps(doc, indent=2) + "\n", 0o644)


# --- the service --------------------------------------------------------------------------


def stratum(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, str(PYZ), *args], check=check)


def service_active() -> bool:
    active = run(["systemctl", "is-active", "--quiet", "stratum.service"], check=False)
    return active.returncode == 0


def own_data_dir() -> None:
    run(["chown", "-R", f"{USER}:{USER}", "/var/lib/stratum"], check=False)
