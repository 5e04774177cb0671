"""Real-server fixtures: ``stratum serve`` as a subprocess on port 0, driven by real clients.

``STRATUM_TEST_COMMAND`` can name another way to start Stratum (the built zipapp, for
example ``python3 stratum.pyz``); by default it is this checkout's ``python -m stratum``.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig

from stratum.util import loopwatch
from tests import loopcheck

ACCESS_KEY = "STRATUMTESTKEY000001"
SECRET_KEY = "stratum-test-secret-key-0000000000000001"
READY = re.compile(r"serving S3 at (https?://\S+)")


def stratum_command() -> list[str]:
    custom = os.environ.get("STRATUM_TEST_COMMAND")
    if custom:
        return shlex.split(custom)
    return [sys.executable, "-m", "stratum"]


@dataclass
class RunningServer:
    endpoint: str
    data_dir: Path
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY

    def client(self, verify: str | bool = True, **config: Any) -> Any:
        """A boto3 client; ``verify``: the certificate file an HTTPS server is trusted by."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            verify=verify,
            config=BotoConfig(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 1, "mode": "standard"},
                **config,
            ),
        )

    def env(self) -> dict[str, str]:
        """Environment for CLI clients (awscli, s3cmd) pointing at this server."""
        env = dict(os.environ)
        env.update(
            AWS_ACCESS_KEY_ID=self.access_key,
            AWS_SECRET_ACCESS_KEY=self.secret_key,
            AWS_DEFAULT_REGION="us-east-1",
            AWS_EC2_METADATA_DISABLED="true",
        )
        env.pop("AWS_CA_BUNDLE", None)
        env.pop("AWS_PROFILE", None)
        return env

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)


def start_server(
    data_dir: Path,
    *extra: str,
    config: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 30,
) -> RunningServer:
    cmd = [*stratum_command(), "serve", "--listen", "127.0.0.1:0"]
    if config is not None:
        cmd += ["--config", str(config)]
    else:
        cmd += ["--data-dir", str(data_dir)]
    cmd += list(extra)
    proc_env = dict(os.environ)
    proc_env.update(STRATUM_ACCESS_KEY=ACCESS_KEY, STRATUM_SECRET_KEY=SECRET_KEY)
    limit = loopcheck.threshold()  # the server logs its event-loop stalls (see below)
    proc_env[loopwatch.ENV] = f"{limit * 1000:.0f}" if limit else "0"
    proc_env.update(env or {})
    process = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=proc_env,
        start_new_session=True,
    )
    output: list[str] = []
    deadline = time.monotonic() + timeout
    endpoint = None
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        output.append(line)
        found = READY.search(line)
        if found:
            endpoint = found.group(1)
            break
    if endpoint is None:
        process.kill()
        raise RuntimeError("stratum did not start:\n" + "".join(output))
    server = RunningServer(endpoint, data_dir, process, output)

    def drain() -> None:
        assert process.stdout is not None
        output.extend(process.stdout)

    threading.Thread(target=drain, daemon=True).start()
    _started.append(server)
    return server


_started: list[RunningServer] = []


@pytest.fixture(autouse=True)
def server_loop_watchdog(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test during which a server logged an event-loop stall (its
    STRATUM_LOOP_WATCHDOG_MS watchdog, as tests/conftest.py runs in process)."""
    seen = {id(server): len(server.output) for server in _started}
    yield
    if request.node.get_closest_marker("blocks_loop") is not None:
        return
    blocked = []
    for server in list(_started):
        lines = server.output[seen.get(id(server), 0) :]
        blocked += [ln.strip() for ln in lines if loopcheck.BLOCKED in ln]
        if server.process.poll() is not None and id(server) in seen:
            _started.remove(server)  # ended before this test's check: nothing more to come
    blocked = [line for line in blocked if not loopcheck.forgiven(line)]
    if blocked:
        pytest.fail("the server's event loop was blocked:\n" + "\n".join(blocked), pytrace=False)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server shared by the tests of a session (each test uses its own buckets)."""
    srv = start_server(tmp_path_factory.mktemp("stratum-data"))
    yield srv
    code = srv.stop()
    assert code == 0, "".join(srv.output[-50:])


@pytest.fixture
def s3(server: RunningServer) -> Any:
    return server.client()


_counter = 0


@pytest.fixture
def bucket(s3: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh bucket, emptied and removed afterwards."""
    global _counter
    _counter += 1
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    name = f"t{_counter}-{name}"[:63].rstrip("-")
    s3.create_bucket(Bucket=name)
    yield name
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=name):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
    s3.delete_bucket(Bucket=name)
