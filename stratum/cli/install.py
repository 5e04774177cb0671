"""``stratum install``: put the zipapp in service under systemd.

Run from ``stratum.pyz`` (``sudo python3 stratum.pyz install``) it installs, under ``--root``
(``/`` by default):

- ``/usr/local/bin/stratum.pyz``: the zipapp (the running one, or ``--pyz PATH``);
- ``/etc/stratum/stratum.toml``: the commented default configuration with
  ``data_dir = "/var/lib/stratum"`` (an existing one is kept);
- ``/etc/stratum/stratum.env``: the root user's keys, commented out (an existing one is kept);
- ``/etc/systemd/system/stratum.service``: the unit (:data:`UNIT`, ``systemd/stratum.service``);
- ``/etc/sysusers.d/stratum.conf``: the system user ``stratum``;
- ``/etc/tmpfiles.d/stratum.conf``: ``/var/lib/stratum`` owned by it, the configuration
  readable by it;
- ``/var/lib/stratum``: the data directory.

On the running system (``--root /``, as root) it also creates the user and gives it the data
directory, then runs ``systemctl daemon-reload`` and ``systemctl enable --now stratum``, unless
``--no-start`` (which runs no systemctl at all). Into a staging root (an image being built)
nothing is run: the unit is enabled with the symlink ``systemctl enable`` would make (not with
``--no-start``), and systemd creates the user and fixes ownership at first boot from the
sysusers.d and tmpfiles.d files.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from stratum.config.render import render_default_toml

USER = "stratum"
BIN = Path("/usr/local/bin/stratum.pyz")
CONFIG = Path("/etc/stratum/stratum.toml")
ENV_FILE = Path("/etc/stratum/stratum.env")
UNIT_PATH = Path("/etc/systemd/system/stratum.service")
WANTS_LINK = Path("/etc/systemd/system/multi-user.target.wants/stratum.service")
SYSUSERS = Path("/etc/sysusers.d/stratum.conf")
TMPFILES = Path("/etc/tmpfiles.d/stratum.conf")
DATA_DIR = Path("/var/lib/stratum")

# The unit; systemd/stratum.service in the source tree is this text (a test keeps them equal).
UNIT = """\
# Stratum, the self-hosted S3-compatible object store, as a systemd service.
#
# `stratum.pyz install` puts this file at /etc/systemd/system/stratum.service, the zipapp at
# /usr/local/bin/stratum.pyz, the configuration at /etc/stratum/stratum.toml and keys (optional)
# in /etc/stratum/stratum.env. Reload the configuration with `systemctl reload stratum`.
#
# The service may write only to /var/lib/stratum (and its cache, /var/cache/stratum). Disks
# elsewhere must be allowed with a drop-in (`systemctl edit stratum`):
#
#   [Service]
#   ReadWritePaths=/srv/disk1 /srv/disk2
#
# A port below 1024 needs AmbientCapabilities=CAP_NET_BIND_SERVICE and the same in
# CapabilityBoundingSet= (empty here: no capabilities at all).

[Unit]
Description=Stratum S3-compatible object store
After=network-online.target local-fs.target
Wants=network-online.target

[Service]
# Stratum sends READY=1 when it serves, RELOADING=1/READY=1 around a reload, STOPPING=1.
Type=notify
NotifyAccess=main
User=stratum
Group=stratum
ExecStart=/usr/local/bin/stratum.pyz serve --config /etc/stratum/stratum.toml
ExecReload=/bin/kill -HUP $MAINPID
EnvironmentFile=-/etc/stratum/stratum.env
# The zipapp unpacks its packages here once per version (first start), not into a home.
Environment=SHIV_ROOT=/var/cache/stratum
StateDirectory=stratum
StateDirectoryMode=0700
CacheDirectory=stratum
CacheDirectoryMode=0700
WorkingDirectory=/var/lib/stratum
UMask=0077
LimitNOFILE=65536
Restart=on-failure
RestartSec=5s
# Opening the metadata store and the disks, and the first unpacking, take a moment.
TimeoutStartSec=120s
# SIGTERM: requests in flight get 30 s to finish, then the metadata store is closed cleanly.
TimeoutStopSec=90s
KillMode=mixed

# Hardening: nothing but its own directories, the network and its own processes.
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
ProtectSystem=strict
ReadWritePaths=/var/lib/stratum
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
ProcSubset=pid
PrivateMounts=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
# CPython, uvloop, LMDB (read-only map) and the compiled codecs never need memory that is
# writable and executable at once.
MemoryDenyWriteExecute=yes
RemoveIPC=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
"""

SYSUSERS_TEXT = f"""\
# The user Stratum runs as (systemd-sysusers; see stratum.service).
u {USER} - "Stratum object store" {DATA_DIR} -
"""

TMPFILES_TEXT = f"""\
# Stratum's data directory, and its configuration readable by the service (systemd-tmpfiles).
d {DATA_DIR} 0700 {USER} {USER} -
z {CONFIG} 0640 root {USER} -
"""

ENV_TEXT = """\
# Environment of stratum.service; readable by root only.
#
# Keys of the root S3 user. Unset: the keys in stratum.toml, else the ones generated on the
# first start (kept in /var/lib/stratum/root-credentials.json; `journalctl -u stratum` shows
# the secret key once).
#STRATUM_ACCESS_KEY=
#STRATUM_SECRET_KEY=
#
# Keys of the cold tier's S3 bucket (else [tiers.cold] credentials_file).
#STRATUM_COLD_ACCESS_KEY=
#STRATUM_COLD_SECRET_KEY=
"""


class InstallError(Exception):
    pass


def default_config() -> str:
    """The commented default configuration, with the data in /var/lib/stratum."""
    text, count = re.subn(
        r'^data_dir = ".*"$', f'data_dir = "{DATA_DIR}"', render_default_toml(), flags=re.M
    )
    if count != 1:
        raise InstallError("the default configuration has no data_dir line to set")
    return text


def running_pyz() -> Path | None:
    """The zipapp this process runs from (shiv puts its path in ``sys.argv[0]``)."""
    path = Path(sys.argv[0])
    try:
        if path.is_file() and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                if "environment.json" in archive.namelist():
                    return path.resolve()
    except OSError:
        pass
    return None


class Installer:
    def __init__(self, root: Path, *, start: bool) -> None:
        self.root = root
        self.live = root.resolve() == Path("/")
        self.start = start

    def at(self, path: Path) -> Path:
        return self.root / path.relative_to("/")

    def say(self, what: str, path: Path) -> None:
        print(f"{what:<10} {self.at(path)}")

    def write(self, path: Path, text: bytes | str, mode: int, *, keep: bool = False) -> None:
        """Write atomically; with ``keep``, an existing file is left as it is."""
        dest = self.at(path)
        if keep and dest.exists():
            self.say("kept", path)
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp")
        tmp.write_bytes(text.encode() if isinstance(text, str) else text)
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
        self.say("installed", path)

    def install_pyz(self, source: Path) -> None:
        dest = self.at(BIN)
        if dest.exists() and dest.resolve() == source.resolve():
            self.say("in place", BIN)
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp")
        shutil.copyfile(source, tmp)
        os.chmod(tmp, 0o755)
        os.replace(tmp, dest)  # a running server keeps its (now unlinked) file
        self.say("installed", BIN)

    def run(self, source: Path) -> None:
        self.install_pyz(source)
        self.write(CONFIG, default_config(), 0o640, keep=True)
        self.write(ENV_FILE, ENV_TEXT, 0o600, keep=True)
        self.write(UNIT_PATH, UNIT, 0o644)
        self.write(SYSUSERS, SYSUSERS_TEXT, 0o644)
        self.write(TMPFILES, TMPFILES_TEXT, 0o644)
        data = self.at(DATA_DIR)
        data.mkdir(parents=True, exist_ok=True)
        os.chmod(data, 0o700)
        if self.live:
            self.create_user()
            self.give_to_user()
            if self.start:
                systemctl("daemon-reload")
                systemctl("enable", "--now", "stratum.service")
                print("started    stratum.service (systemctl status stratum)")
            else:
                print("next:      systemctl daemon-reload && systemctl enable --now stratum")
        elif self.start:
            link = self.at(WANTS_LINK)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.unlink(missing_ok=True)
            link.symlink_to(UNIT_PATH)
            self.say("enabled", WANTS_LINK)

    def create_user(self) -> None:
        if _user_exists(USER):
            return
        if shutil.which("systemd-sysusers"):
            _run(["systemd-sysusers", str(SYSUSERS)])
        else:
            shell = "/usr/sbin/nologin" if Path("/usr/sbin/nologin").exists() else "/bin/false"
            useradd = ["useradd", "--system", "--user-group", "--no-create-home"]
            _run([*useradd, "--home-dir", str(DATA_DIR), "--shell", shell, USER])
        print(f"created    user {USER}")

    def give_to_user(self) -> None:
        uid, gid = pwd.getpwnam(USER).pw_uid, grp.getgrnam(USER).gr_gid
        os.chown(DATA_DIR, uid, gid)
        os.chown(CONFIG, 0, gid)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        raise InstallError(f"{' '.join(cmd)} failed: {result.stderr.strip() or result.stdout}")


def systemctl(*args: str) -> None:
    _run(["systemctl", *args])


def install(pyz: Path | None, root: Path, *, start: bool) -> int:
    """``stratum install``; exit code 0, 1 (failed) or 2 (bad usage)."""
    source = pyz or running_pyz()
    if source is None:
        print(
            "stratum: install needs the zipapp: run it as `python3 stratum.pyz install`, "
            "or pass --pyz PATH (build one with ./dev pyz)",
            file=sys.stderr,
        )
        return 2
    if not source.is_file():
        print(f"stratum: {source}: no such file", file=sys.stderr)
        return 2
    installer = Installer(root, start=start)
    if installer.live and os.geteuid() != 0:
        print("stratum: install into / needs root (sudo), or --root DIR", file=sys.stderr)
        return 2
    try:
        installer.run(source)
    except (InstallError, OSError) as exc:
        print(f"stratum: install failed: {exc}", file=sys.stderr)
        return 1
    return 0
