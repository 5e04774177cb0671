"""Start and stop the servers the benchmark compares: Stratum, moto, Ceph radosgw.

Each runs on loopback, in its own session, with its output in a log file under the run's
work directory; ``stop()`` ends only the processes started here (by PID). Only one server is
up at a time, so they never compete for the machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from bench.procstat import process_tree

ACCESS_KEY = "STRATUMBENCHKEY00001"
SECRET_KEY = "stratum-bench-secret-key-000000000000001"
HOT_DISKS = 6  # a 4+2 pool: every shard on its own disk directory


class StartError(RuntimeError):
    """A server did not come up; the message ends with the tail of its log."""


@dataclass
class Server:
    name: str
    endpoint: str
    access_key: str
    secret_key: str
    version: str
    setup: str  # one line: how it runs (storage, processes)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    on_stop: Callable[[], None] | None = None
    after_delete: Callable[[], None] | None = None  # e.g. radosgw: collect garbage now
    console: str = ""  # Stratum's web console, on a free port

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.poll() is None]

    def alive(self) -> bool:
        return bool(self.processes) and all(p.poll() is None for p in self.processes)

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM the processes, newest first (each after the previous exited), then KILL."""
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)  # its own session: only its group
                    process.wait()
        if self.on_stop is not None:
            self.on_stop()


def _spawn(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )


def _tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _wait_for_line(
    process: subprocess.Popen[bytes], log: Path, pattern: re.Pattern[str], timeout: float
) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = pattern.search(log.read_text(errors="replace"))
        if found:
            return found
        if process.poll() is not None:
            raise StartError(f"{log.name}: exited with {process.returncode}\n{_tail(log)}")
        time.sleep(0.05)
    process.kill()
    raise StartError(f"{log.name}: not ready in {timeout:.0f} s\n{_tail(log)}")


def _http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def _wait_http(url: str, ok: Callable[[int | None], bool], alive: Callable[[], bool],
               timeout: float, what: str) -> None:  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ok(_http_status(url)):
            return
        if not alive():
            raise StartError(f"{what} died while starting")
        time.sleep(0.1)
    raise StartError(f"{what}: {url} did not answer in {timeout:.0f} s")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


# ---------------------------------------------------------------------------- Stratum


def stratum_command() -> list[str]:
    """This checkout's ``python -m stratum`` (the interpreter running the benchmark)."""
    return [sys.executable, "-m", "stratum"]


def start_stratum(
    workdir: Path,
    disks: int = HOT_DISKS,
    workers: int | None = None,
    console: str = "",
    extra: str = "",
    storage: str = "",
) -> Server:
    """``stratum serve`` on 127.0.0.1:0 with ``disks`` hot disk directories under ``workdir``;
    ``workers`` sets ``server.workers`` (else the server's default); ``console`` and
    ``storage``: more ``[console]`` and ``[storage]`` keys, one per line; ``extra`` is appended
    to the configuration (more tables). A server that refuses the setting exits:
    ``StartError`` with its log's tail."""
    data = workdir / "data"
    disk_dirs = [workdir / f"disk{i}" for i in range(disks)]
    for path in (data, *disk_dirs):
        path.mkdir(parents=True, exist_ok=True)
    config = workdir / "stratum.toml"
    server_table = f"[server]\nworkers = {workers}\n" if workers is not None else ""
    config.write_text(
        "# written by python -m bench\n"
        f"{server_table}"
        "[storage]\n"
        f"data_dir = {json.dumps(str(data))}\n"
        f"{storage}"
        "[tiers.hot]\n"
        f"disks = [{', '.join(json.dumps(str(d)) for d in disk_dirs)}]\n"
        '[console]\nlisten = "127.0.0.1:0"\n'  # on, as by default, on a port of its own
        f"{console}"
        f"{extra}"
    )
    env = dict(os.environ, STRATUM_ACCESS_KEY=ACCESS_KEY, STRATUM_SECRET_KEY=SECRET_KEY)
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    log = workdir / "stratum.log"
    cmd = [*stratum_command(), "serve", "--config", str(config), "--data-dir", str(data)]
    process = _spawn([*cmd, "--listen", "127.0.0.1:0"], log, env)
    found = _wait_for_line(process, log, re.compile(r"serving S3 at (http://\S+)"), 60)
    console = _wait_for_line(process, log, re.compile(r"web console at (http://\S+)"), 10)
    import stratum

    processes = len(process_tree([process.pid]))
    shown = "default" if workers is None else str(workers)
    return Server(
        name="Stratum",
        endpoint=found.group(1),
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        version=stratum.__version__,
        setup=f"server.workers {shown} ({processes} process{'es' if processes > 1 else ''} "
        f"when ready), 4+2 erasure code over {disks} hot disk directories on one device",
        processes=[process],
        console=console.group(1),
    )


# ---------------------------------------------------------------------------- moto


def moto_command() -> list[str] | None:
    """``moto_server`` next to this interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).parent / "moto_server"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("moto_server")
    return [found] if found else None


def start_moto(workdir: Path) -> Server:
    """moto's server on 127.0.0.1:0; it keeps everything in memory and checks no signatures."""
    cmd = moto_command()
    if cmd is None:
        raise StartError("moto_server is not installed (pip install 'moto[server]')")
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "moto.log"
    # moto spills object bodies above this buffer size to temporary files; keep its default.
    process = _spawn([*cmd, "-H", "127.0.0.1", "-p", "0"], log)
    found = _wait_for_line(process, log, re.compile(r"Running on (http://127\.0\.0\.1:\d+)"), 60)
    endpoint = found.group(1)
    _wait_http(
        f"{endpoint}/moto-api/",
        lambda status: status == 200,
        lambda: process.poll() is None,
        30,
        "moto",
    )
    return Server(
        name="moto",
        endpoint=endpoint,
        access_key="testing",
        secret_key="testing",
        version=_version("moto"),
        setup="moto_server (Werkzeug, threaded, 1 process), objects in memory",
        processes=[process],
    )


# ---------------------------------------------------------------------------- Ceph radosgw

RGW_TOOLS = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph", "monmaptool")


def radosgw_missing() -> list[str]:
    return [tool for tool in RGW_TOOLS if shutil.which(tool) is None]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_radosgw(workdir: Path, osd_size_gb: int = 20) -> Server:
    """A throwaway single-host Ceph: 1 mon, 1 BlueStore OSD on a sparse file, radosgw.

    Loopback only, cephx off inside the cluster (S3 signatures are still checked), pools of
    size 1, no mgr (radosgw does not need it). The mon takes Ceph's ports 3300 and 6789, the
    OSD ports from 6800; radosgw a free port.
    """
    missing = radosgw_missing()
    if missing:
        raise StartError(f"not installed: {' '.join(missing)}")
    host = "127.0.0.1"
    for taken in (3300, 6789):
        with socket.socket() as sock:
            if sock.connect_ex((host, taken)) == 0:
                raise StartError(
                    f"port {taken} is in use (another Ceph mon, e.g. ../shared/peers' radosgw?)"
                )
    port = _free_port()
    data = workdir / "ceph"
    logs = data / "log"
    for sub in ("mon", "osd/ceph-0", "rgw/ceph-rgw.a", "run", "log", "crash"):
        (data / sub).mkdir(parents=True, exist_ok=True)
    fsid = str(uuid.uuid4())
    conf = data / "ceph.conf"
    conf.write_text(
        f"""[global]
fsid = {fsid}
mon_initial_members = a
mon_host = [v2:{host}:3300,v1:{host}:6789]
public_addr = {host}
cluster_addr = {host}
ms_bind_ipv6 = false
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
run_dir = {data}/run
admin_socket = {data}/run/$name.asok
log_file = {logs}/$name.log
pid_file = {data}/run/$name.pid
crash_dir = {data}/crash
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_allow_pool_delete = true
mon_max_pg_per_osd = 1000
mon_warn_on_pool_no_redundancy = false
mon_data_avail_warn = 5

[mon]
mon_data = {data}/mon/$cluster-$id

[osd]
osd_data = {data}/osd/$cluster-$id
osd_objectstore = bluestore
# not <osd_data>/block: mkfs makes a symlink of that name
bluestore_block_path = {data}/osd/$cluster-$id.block
bluestore_block_create = true
bluestore_block_size = {osd_size_gb * 1024**3}
bluestore_block_db_create = false
bluestore_block_wal_create = false
osd_memory_target = 2147483648

[client.rgw.a]
# tcp_nodelay: beast's default Nagle stalls small GETs on the client's delayed ACK (40 ms)
rgw_frontends = beast endpoint={host}:{port} tcp_nodelay=1
rgw_data = {data}/rgw/$cluster-$id
# radosgw defaults to 'secure', which cannot work with cephx off
ms_mon_client_mode = crc secure
debug_rgw = 0/0
"""
    )
    server = Server(
        name="radosgw",
        endpoint=f"http://{host}:{port}",
        access_key="STRATUMBENCHRGWKEY01",
        secret_key="stratum-bench-rgw-secret-0000000000000001",
        version=_radosgw_version(),
        setup="Ceph: 1 mon, 1 BlueStore OSD (sparse file), radosgw beast (tcp_nodelay=1); "
        "pools of size 1",
    )

    def ceph(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ceph", "-c", str(conf), "--connect-timeout", "15", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def wait(what: str, check: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except subprocess.TimeoutExpired:
                pass
            if not server.alive():
                raise StartError(f"radosgw: a daemon died waiting for {what}; logs in {logs}")
            time.sleep(0.5)
        raise StartError(f"radosgw: timed out waiting for {what}; logs in {logs}")

    try:
        subprocess.run(
            ["monmaptool", "--create", "--clobber", "--fsid", fsid, "--addv", "a",
             f"[v2:{host}:3300,v1:{host}:6789]", str(data / "monmap")],
            check=True, capture_output=True,
        )  # fmt: skip
        subprocess.run(
            ["ceph-mon", "-c", str(conf), "--mkfs", "-i", "a", "--monmap", str(data / "monmap")],
            check=True,
            capture_output=True,
        )
        server.processes.append(
            _spawn(["ceph-mon", "-c", str(conf), "-i", "a", "-f"], logs / "mon.a.stdout")
        )
        wait("mon quorum", lambda: ceph("mon", "stat").returncode == 0, 60)
        osd_uuid = str(uuid.uuid4())
        osd_id = ceph("osd", "new", osd_uuid).stdout.strip()
        if osd_id != "0":
            raise StartError(f"radosgw: expected osd id 0, got {osd_id!r}")
        subprocess.run(
            ["ceph-osd", "-c", str(conf), "-i", "0", "--mkfs", "--osd-uuid", osd_uuid],
            check=True,
            capture_output=True,
        )
        server.processes.append(
            _spawn(["ceph-osd", "-c", str(conf), "-i", "0", "-f"], logs / "osd.0.stdout")
        )
        wait(
            "osd.0 up",
            lambda: '"num_up_osds":1' in ceph("osd", "stat", "-f", "json").stdout.replace(" ", ""),
            180,
        )
        server.processes.append(
            _spawn(["radosgw", "-c", str(conf), "-n", "client.rgw.a", "-f"], logs / "rgw.stdout")
        )
        wait("radosgw on its port", lambda: _http_status(server.endpoint) == 200, 180)
        subprocess.run(
            ["radosgw-admin", "-c", str(conf), "user", "create", "--uid=bench",
             "--display-name=bench", f"--access-key={server.access_key}",
             f"--secret-key={server.secret_key}"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, StartError) as exc:
        server.stop()
        if isinstance(exc, StartError):
            raise
        raise StartError(f"radosgw: {exc}; logs in {logs}") from exc

    def collect_garbage() -> None:
        """Deleted objects' data waits for RGW's GC (hours): free it between workloads."""
        subprocess.run(
            ["radosgw-admin", "-c", str(conf), "gc", "process", "--include-all"],
            capture_output=True, timeout=300, check=False,
        )  # fmt: skip

    server.after_delete = collect_garbage
    return server


def _radosgw_version() -> str:
    try:
        out = subprocess.run(
            ["radosgw", "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    found = re.search(r"version (\S+)", out)
    return found.group(1) if found else out.strip()[:40] or "?"


PEERS: dict[str, Callable[[Path], Server]] = {"moto": start_moto, "radosgw": start_radosgw}


def peer_unavailable(name: str) -> str | None:
    """Why peer ``name`` cannot run on this machine, or None."""
    if name == "moto" and moto_command() is None:
        return "moto_server is not installed (pip install 'moto[server]')"
    if name == "radosgw":
        missing = radosgw_missing()
        if missing:
            return (
                f"Ceph radosgw is not installed (missing {', '.join(missing)}); skipped. "
                "Debian: apt-get install radosgw ceph-mon ceph-osd ceph-common"
            )
    return None
