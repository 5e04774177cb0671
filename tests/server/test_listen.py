"""Where a server listens, and what a second server on the same address or data dir meets."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from tests.server.conftest import (
    ACCESS_KEY,
    SECRET_KEY,
    RunningServer,
    start_server,
    stratum_command,
)
from tests.server.faultload import stop_cleanly


def _config(tmp_path: Path, name: str, *, workers: int = 1, extra: str = "") -> Path:
    config = tmp_path / f"{name}.toml"
    config.write_text(
        f'[server]\nworkers = {workers}\n{extra}[storage]\ndata_dir = "{tmp_path / name}"\n'
    )
    return config


def _second(config: Path, listen: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, STRATUM_ACCESS_KEY=ACCESS_KEY, STRATUM_SECRET_KEY=SECRET_KEY)
    return subprocess.run(
        [*stratum_command(), "serve", "--config", str(config), "--listen", listen],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def _listen_of(server: RunningServer) -> str:
    return server.endpoint.removeprefix("http://")


def test_the_banner_shows_the_address_it_listens_on(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", "--listen", "0.0.0.0:0")
    try:
        banner = server.output[0]
        assert " serving S3 at http://0.0.0.0:" in banner, banner
        assert server.client().list_buckets()["Buckets"] == []
    finally:
        stop_cleanly(server)


def _ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]"])
def test_a_second_server_on_the_same_address_is_refused(tmp_path: Path, host: str) -> None:
    if host == "[::1]" and not _ipv6():
        pytest.skip("no IPv6 loopback here")
    # Several processes each: they share the socket among themselves, and no one else may.
    first = start_server(
        tmp_path / "a", "--listen", f"{host}:0", config=_config(tmp_path, "a", workers=2)
    )
    try:
        listen = _listen_of(first)
        done = _second(_config(tmp_path, "b", workers=2), listen)
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.splitlines() == [
            f"stratum: cannot listen on {listen}: the address is in use (another server "
            "listens there)"
        ], done.stderr
        # Every connection still reaches the first server: its buckets, not an empty store.
        s3 = first.client()
        s3.create_bucket(Bucket="first")
        for _ in range(12):  # a new connection each time
            assert [b["Name"] for b in first.client().list_buckets()["Buckets"]] == ["first"]
    finally:
        stop_cleanly(first)


def test_a_second_server_on_the_same_data_directory_touches_nothing(tmp_path: Path) -> None:
    config = _config(tmp_path, "data", workers=2)
    first = start_server(tmp_path / "data", config=config)
    try:
        s3 = first.client()
        s3.create_bucket(Bucket="kept")
        # What a running server's upload in progress looks like on a disk: a file in tmp/.
        in_flight = tmp_path / "data" / "disks" / "hot" / "tmp" / "upload-in-progress"
        in_flight.write_bytes(b"half a shard")
        done = _second(config, "127.0.0.1:0")
        assert done.returncode == 2, done.stdout + done.stderr
        lines = done.stderr.splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith(f"stratum: cannot start: data directory {tmp_path / 'data'}")
        assert f"is in use by another Stratum server (pid {first.process.pid})" in lines[0]
        assert in_flight.read_bytes() == b"half a shard"
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["kept"]
    finally:
        stop_cleanly(first)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_what_the_server_creates_is_for_its_user_alone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)  # made by the operator (or by systemd's StateDirectory=)
    data.chmod(0o755)
    disk = tmp_path / "disk1"  # a mount point the operator made
    disk.mkdir()
    disk.chmod(0o755)
    extra = f'[tiers.hot]\ndisks = ["{disk}"]\ndata_shards = 1\nparity_shards = 0\n'
    config = tmp_path / "stratum.toml"
    config.write_text(f'[server]\nworkers = 2\n[storage]\ndata_dir = "{data}"\n{extra}')
    server = start_server(data, config=config)
    try:
        s3 = server.client()
        s3.create_bucket(Bucket="private")
        s3.put_object(Bucket="private", Key="small", Body=b"x" * 100)
        s3.put_object(Bucket="private", Key="large", Body=os.urandom(300_000))
    finally:
        stop_cleanly(server)
    assert _mode(data) == 0o700
    assert _mode(disk) == 0o755  # the operator's directory keeps its mode
    created = [p for p in [*data.rglob("*"), *disk.rglob("*")] if not p.is_symlink()]
    assert any(p.name == "data.mdb" for p in created)
    assert any(p.parent.name == "ec" for p in created) and any(
        p.parent.name == "seg" for p in created
    )
    loose = {str(p): oct(_mode(p)) for p in created if _mode(p) & 0o077}
    assert not loose, loose


def test_a_data_directory_shared_with_other_files_keeps_its_mode(tmp_path: Path) -> None:
    data = tmp_path / "shared"
    data.mkdir()
    data.chmod(0o755)
    (data / "notes.txt").write_text("the operator's")
    server = start_server(data)
    try:
        assert server.client().list_buckets()["Buckets"] == []
    finally:
        stop_cleanly(server)
    assert _mode(data) == 0o755
    assert any("holds more than Stratum's files" in line for line in server.output)
    assert _mode(data / "meta") == 0o700 and _mode(data / "meta" / "data.mdb") & 0o077 == 0
