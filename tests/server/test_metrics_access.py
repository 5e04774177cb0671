"""/metrics costs nothing per scrape, shows no disk paths to strangers, and can be closed.

A scrape is answered from memory (made at most every few seconds) and makes no process write
anything; with ``metrics_token`` only a bearer of it may scrape (and only it sees the disks'
paths); with ``metrics_loopback_only`` only this machine may. The health checks stay open.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.conftest import RunningServer, start_server
from tests.server.faultload import stop_cleanly
from tests.server.test_observe import fetch as observe_fetch
from tests.unit.test_metrics import parse_text

TOKEN = "metrics-token-0123456789"


def fetch(url: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    return observe_fetch(
        url, headers=None if token is None else {"Authorization": f"Bearer {token}"}
    )


def _start(tmp_path: Path, name: str, *extra: str, server_keys: str = "") -> RunningServer:
    config = tmp_path / f"{name}.toml"
    config.write_text(
        f'[server]\nworkers = 3\n{server_keys}[storage]\ndata_dir = "{tmp_path / name}"\n'
    )
    return start_server(tmp_path / name, *extra, config=config)


def _run_files(run: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in run.iterdir()}


@pytest.fixture(scope="module")
def open_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = _start(tmp_path_factory.mktemp("open"), "data")
    yield server
    stop_cleanly(server)


def test_scrapes_write_nothing_and_the_counts_still_add_up(open_metrics: RunningServer) -> None:
    server = open_metrics
    s3 = server.client()
    s3.create_bucket(Bucket="counted")
    for n in range(24):  # a connection each: every process serves some
        server.client().put_object(Bucket="counted", Key=f"k{n}", Body=b"x")
    deadline = time.monotonic() + 20
    while True:  # the workers publish within seconds; an answer is at most seconds old
        parsed = parse_text(fetch(f"{server.endpoint}/metrics")[2].decode())
        labels = (("operation", "PutObject"), ("status", "200"))
        if parsed.get("stratum_s3_requests_total", {}).get(labels) == 24:  # none yet: absent
            break
        assert time.monotonic() < deadline, "the workers' requests never showed up"
        time.sleep(0.5)
    run = server.data_dir / "run"
    before = _run_files(run)
    time.sleep(3)  # nothing left to publish: the files stay as they are...
    assert _run_files(run) == before
    for _ in range(30):  # ... and a burst of scrapes, wherever they land, writes nothing
        assert fetch(f"{server.endpoint}/metrics")[0] == 200
    assert _run_files(run) == before


def test_strangers_see_disk_ids_not_paths(open_metrics: RunningServer) -> None:
    status, _, body = fetch(f"{open_metrics.endpoint}/metrics")
    assert status == 200
    assert b"stratum_disk_state{" in body and b'id="' in body
    assert str(open_metrics.data_dir).encode() not in body
    assert b'disk="' not in body


def test_a_token_closes_the_metrics_and_opens_the_paths(tmp_path: Path) -> None:
    server = _start(tmp_path, "data", server_keys=f'metrics_token = "{TOKEN}"\n')
    try:
        for _ in range(6):  # on whichever process the connection lands
            status, headers, _ = fetch(f"{server.endpoint}/metrics")
            assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
            assert fetch(f"{server.endpoint}/metrics", token="wrong")[0] == 401
            status, _, body = fetch(f"{server.endpoint}/metrics", token=TOKEN)
            assert status == 200 and b"stratum_ready 1" in body
            assert f'disk="{server.data_dir}'.encode() in body
            assert fetch(f"{server.endpoint}/health/live")[0] == 200
            assert fetch(f"{server.endpoint}/health/ready")[0] == 200
        # A bucket called "metrics" is still S3's for signed requests.
        s3 = server.client()
        s3.create_bucket(Bucket="metrics")
        assert s3.list_objects_v2(Bucket="metrics")["KeyCount"] == 0
        s3.delete_bucket(Bucket="metrics")
    finally:
        stop_cleanly(server)


def _lan_address() -> str | None:
    """An address of this machine other than loopback (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 9))
            address: str = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_loopback_only_metrics(tmp_path: Path) -> None:
    lan = _lan_address()
    if lan is None:
        pytest.skip("this machine has no address but loopback")
    server = _start(
        tmp_path, "data", "--listen", "0.0.0.0:0", server_keys="metrics_loopback_only = true\n"
    )
    try:
        port = server.endpoint.rsplit(":", 1)[1]
        for _ in range(6):
            assert fetch(f"http://127.0.0.1:{port}/metrics")[0] == 200
            status, _, body = fetch(f"http://{lan}:{port}/metrics")
            assert status == 403, body
            assert fetch(f"http://{lan}:{port}/health/live")[0] == 200
    finally:
        stop_cleanly(server)
