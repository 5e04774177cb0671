"""Several server processes on one port (``server.workers``), as a user runs them.

The shared ``server`` fixture already runs on the default (one process per core, up to 4);
these tests pin the count at 3 so that they test several processes on any machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import RunningServer, start_server
from tests.server.faultload import stop_cleanly

WORKERS = 3


def _start(tmp_path: Path) -> RunningServer:
    config = tmp_path / "stratum.toml"
    config.write_text(
        f'[server]\nworkers = {WORKERS}\n[storage]\ndata_dir = "{tmp_path / "data"}"\n'
    )
    server = start_server(tmp_path / "data", config=config)
    server.config = config  # type: ignore[attr-defined]
    return server


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


def _wait(check: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return bool(check())


def _requests(server: RunningServer, operation: str) -> float:
    import urllib.request

    with urllib.request.urlopen(f"{server.endpoint}/metrics", timeout=10) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(f'stratum_s3_requests_total{{operation="{operation}",status="200"}}'):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _put_and_get(server: RunningServer, bucket: str, clients: int, each: int) -> None:
    def one(n: int) -> None:
        s3 = server.client()  # a connection of its own: the kernel picks its process
        for i in range(each):
            body = f"{n}-{i}-".encode() * (1 + i * 50)
            s3.put_object(Bucket=bucket, Key=f"c{n}/o{i}", Body=body)
            assert s3.get_object(Bucket=bucket, Key=f"c{n}/o{i}")["Body"].read() == body

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(clients)))


def test_processes_share_the_load_and_the_metrics_add_up(tmp_path: Path) -> None:
    server = _start(tmp_path)
    try:
        assert "(3 processes)" in server.output[0]
        workers = _children(server.process.pid)
        assert len(workers) == WORKERS - 1
        s3 = server.client()
        s3.create_bucket(Bucket="spread")
        _put_and_get(server, "spread", clients=24, each=8)
        listed = s3.list_objects_v2(Bucket="spread")["KeyCount"]
        assert listed == 24 * 8
        # /metrics, wherever it lands, counts the requests of every process (as each
        # published them, within seconds)...
        assert _wait(lambda: _requests(server, "PutObject") == 24 * 8)
        assert _requests(server, "GetObject") == 24 * 8
        # ... and every process served some of the 24 connections.
        published = list((tmp_path / "data" / "run").glob("metrics-*.json"))
        assert len(published) == WORKERS - 1
        for path in published:
            assert "PutObject" in path.read_text(), path.read_text()
    finally:
        stop_cleanly(server)
    assert not any(_alive(pid) for pid in workers)
    assert not (tmp_path / "data" / "server.json").exists()


def _stratum(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = server.env() | {
        "STRATUM_ACCESS_KEY": server.access_key,
        "STRATUM_SECRET_KEY": server.secret_key,
    }
    config = str(server.config)  # type: ignore[attr-defined]
    return subprocess.run(
        [sys.executable, "-m", "stratum", *args, "--config", config],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_admin_commands_answer_from_any_process(tmp_path: Path) -> None:
    server = _start(tmp_path)
    try:
        for _ in range(8):  # a new connection each time: every process gets some
            done = _stratum(server, "scrub", "--status")
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["last_pass"]["finished"] > 0
        s3 = server.client()
        s3.create_bucket(Bucket="deep")
        s3.put_object(Bucket="deep", Key="a", Body=os.urandom(200_000))
        done = _stratum(server, "scrub", "--now")
        assert done.returncode == 0, done.stderr + done.stdout
    finally:
        stop_cleanly(server)


def test_the_reads_of_every_process_reach_the_learner(tmp_path: Path) -> None:
    """Each process learns the re-read gaps of the GETs it serves; the workers hand theirs
    to the primary before a pass, so ``stratum tier classes`` counts every read."""
    server = _start(tmp_path)
    try:
        s3 = server.client()
        s3.create_bucket(Bucket="learn")
        s3.put_object(Bucket="learn", Key="docs/a.txt", Body=b"x" * 1000)

        def read(_: int) -> None:  # a connection of its own: the kernel picks its process
            assert server.client().get_object(Bucket="learn", Key="docs/a.txt")["Body"].read()

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(read, range(24)))
        run = tmp_path / "data" / "run"  # a worker served some (its published metrics say)
        assert _wait(lambda: any("GetObject" in p.read_text() for p in run.glob("metrics-*")))
        done = _stratum(server, "tier", "run")
        assert done.returncode == 0, done.stderr
        done = _stratum(server, "tier", "classes", "--json")
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        assert answer["policy"] == "rules" and answer["count"] == 1
        [learned] = answer["classes"]
        assert learned["class"] == "learn/docs/ 256B+ put"
        assert learned["evidence"] == pytest.approx(24, abs=0.01)  # every read, once
        assert learned["reread_ratio"] == 1.0
        text = _stratum(server, "tier", "classes").stdout
        assert "learn/docs/ 256B+ put" in text and "policy rules: 1 classes" in text
    finally:
        stop_cleanly(server)


@pytest.mark.parametrize("killed", ["a worker", "the primary"])
def test_a_killed_process_takes_the_server_down_and_nothing_is_lost(
    tmp_path: Path, killed: str
) -> None:
    server = _start(tmp_path)
    s3 = server.client()
    s3.create_bucket(Bucket="keep")
    _put_and_get(server, "keep", clients=6, each=5)
    workers = _children(server.process.pid)
    assert len(workers) == WORKERS - 1
    if killed == "a worker":
        os.kill(workers[0], signal.SIGKILL)
        assert server.process.wait(30) == 1  # the primary stops the others and says why
        assert any("ended (killed by signal 9): stopping" in line for line in server.output)
    else:
        server.stop(signal.SIGKILL)  # the kernel takes the workers along
    assert _wait(lambda: not any(_alive(pid) for pid in workers), timeout=10)
    again = _start(tmp_path)  # at once: the disks are free again
    try:
        s3 = again.client()
        assert s3.list_objects_v2(Bucket="keep")["KeyCount"] == 30
        body = s3.get_object(Bucket="keep", Key="c5/o4")["Body"].read()
        assert body == b"5-4-" * 201
    finally:
        stop_cleanly(again)


def test_a_reload_sent_while_workers_start_reaches_every_process(tmp_path: Path) -> None:
    server = _start(tmp_path)  # returns once the primary serves; its workers may be starting
    try:
        server.process.send_signal(signal.SIGHUP)  # passed on at once, started or not
        assert _wait(
            lambda: sum("configuration reloaded" in x for x in list(server.output)) == WORKERS
        ), "".join(server.output)
        assert server.client().list_buckets()["Buckets"] == []
    finally:
        stop_cleanly(server)


def _closes_over(endpoint: str, requests: int) -> int:
    """GET /health/live ``requests`` times over one keep-alive connection (reopened when the
    server closes it): how many responses said Connection: close."""
    import http.client
    from urllib.parse import urlsplit

    url = urlsplit(endpoint)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    closes = 0
    try:
        for _ in range(requests):
            connection.request("GET", "/health/live")
            response = connection.getresponse()
            response.read()
            assert response.status == 200
            closes += response.getheader("Connection", "").lower() == "close"
    finally:
        connection.close()
    return closes


def test_connections_are_closed_now_and_then_so_that_they_spread(tmp_path: Path) -> None:
    """Several processes share one socket, and a keep-alive connection stays with the one
    that accepted it: every 100th response closes its connection, so that a client's next
    lands on whichever process waits for work; one process alone never closes them."""
    server = _start(tmp_path)
    try:
        assert _closes_over(server.endpoint, 250) == 2  # the 100th and the 200th
        s3 = server.client()  # boto3 reconnects by itself
        s3.create_bucket(Bucket="spread")
        for i in range(120):
            s3.put_object(Bucket="spread", Key=f"k{i}", Body=b"x")
        assert s3.list_objects_v2(Bucket="spread")["KeyCount"] == 120
    finally:
        stop_cleanly(server)
    config = tmp_path / "alone.toml"
    config.write_text(f'[server]\nworkers = 1\n[storage]\ndata_dir = "{tmp_path / "alone"}"\n')
    alone = start_server(tmp_path / "alone", config=config)
    try:
        assert _closes_over(alone.endpoint, 250) == 0
    finally:
        stop_cleanly(alone)
