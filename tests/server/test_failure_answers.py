"""Failures a client can meet get the answer that tells it what to do, and the log stays calm.

- the admin API refuses bad input with 400 (and a missing bucket with 404), not 500;
- a full metadata disk answers ``InsufficientStorage`` (507), not ``InternalError``;
- a cold tier that cannot be reached during CopyObject answers ``ServiceUnavailable`` (503),
  which SDKs retry;
- a client that stops reading a GET leaves one access line (status 499), no traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.server.conftest import RunningServer, start_server
from tests.server.faultload import stop_cleanly, wait_for_log


def admin(server: RunningServer, method: str, path: str) -> tuple[int, str]:
    """A root-signed admin API request: (status, body)."""
    request = AWSRequest(method=method, url=f"{server.endpoint}{path}", data=b"")
    credentials = Credentials(server.access_key, server.secret_key)
    S3SigV4Auth(credentials, "s3", "us-east-1").add_auth(request)
    prepared = request.prepare()
    http = urllib.request.Request(prepared.url, method=method, headers=dict(prepared.headers))
    try:
        with urllib.request.urlopen(http, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(tmp_path_factory.mktemp("answers"))
    yield server
    stop_cleanly(server)


@pytest.mark.parametrize(
    ("method", "path", "status", "code", "says"),
    [
        ("GET", "/_stratum/tier/log?limit=abc", 400, "InvalidArgument", "limit must be"),
        ("GET", "/_stratum/tier/log?limit=0", 400, "InvalidArgument", "limit must be"),
        ("GET", "/_stratum/tier/log?limit=-5", 400, "InvalidArgument", "limit must be"),
        ("PUT", "/_stratum/tier/pin?bucket=nowhere&tier=cold", 404, "NoSuchBucket", "nowhere"),
        ("PUT", "/_stratum/tier/pin?tier=cold", 400, "InvalidArgument", "bucket is required"),
        ("PUT", "/_stratum/tier/pin?bucket=b&tier=lukewarm", 400, "InvalidArgument", "tier"),
    ],
)
def test_admin_input_errors_are_the_clients(
    running: RunningServer, method: str, path: str, status: int, code: str, says: str
) -> None:
    got, body = admin(running, method, path)
    assert got == status, body
    assert f"<Code>{code}</Code>" in body and says in body, body


def test_admin_good_input_still_works(running: RunningServer) -> None:
    running.client().create_bucket(Bucket="pinned")
    assert admin(running, "GET", "/_stratum/tier/log?limit=5") == (200, "[]")
    status, body = admin(running, "PUT", "/_stratum/tier/pin?bucket=pinned&tier=warm")
    assert status == 200 and json.loads(body) == {"bucket": "pinned", "pin": "warm"}


def test_a_client_that_stops_reading_leaves_one_calm_line(running: RunningServer) -> None:
    s3 = running.client()
    s3.create_bucket(Bucket="early")
    s3.put_object(Bucket="early", Key="big", Body=os.urandom(24 << 20))
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "early", "Key": "big"})
    before = len(running.output)
    with urllib.request.urlopen(url, timeout=30) as response:
        assert len(response.read(256 * 1024)) == 256 * 1024
    wait_for_log(running, "GetObject /early/big 499 ", 1)
    time.sleep(0.5)  # anything else it would log comes at once
    lines = running.output[before:]
    assert not any("Traceback" in line or " ERROR " in line for line in lines), lines
    (line,) = [line for line in lines if "GetObject /early/big" in line]
    assert " INFO stratum.access: GET GetObject /early/big 499 " in line


# --- a full metadata disk -------------------------------------------------------------------


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (root only; skipped elsewhere)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_metadata_disk_is_insufficient_storage(
    tmp_path: Path, small_filesystem: Path
) -> None:
    config = tmp_path / "stratum.toml"
    config.write_text(
        f'[server]\nworkers = 1\n[storage]\ndata_dir = "{small_filesystem}"\n'
        f'[tiers.hot]\ndisks = ["{tmp_path / "disk"}"]\ndata_shards = 1\nparity_shards = 0\n'
    )
    server = start_server(small_filesystem, config=config)
    try:
        s3 = server.client()
        s3.create_bucket(Bucket="full")
        meta = {"note": "m" * 1500}
        stored: list[str] = []
        refused: ClientError | None = None
        for n in range(2000):
            key = f"{n:05d}-" + "k" * 900
            try:
                s3.put_object(Bucket="full", Key=key, Body=b"x", Metadata=meta)
            except ClientError as exc:
                refused = exc
                break
            stored.append(key)
        assert refused is not None, "the metadata filesystem never filled up"
        assert refused.response["Error"]["Code"] == "InsufficientStorage", refused.response
        assert refused.response["ResponseMetadata"]["HTTPStatusCode"] == 507
        assert stored, "nothing fitted at all"
        # What was acknowledged is there; the server goes on answering.
        assert s3.get_object(Bucket="full", Key=stored[-1])["Body"].read() == b"x"
        with pytest.raises(ClientError, match="InsufficientStorage"):
            s3.put_object(Bucket="full", Key="one-more-" + "k" * 900, Body=b"x", Metadata=meta)
        wait_for_log(server, "metadata commit failed, no space left for", 1)
        text = "".join(server.output)
        assert "Traceback" not in text, text[-3000:]
    finally:
        stop_cleanly(server)


# --- an unreachable cold tier --------------------------------------------------------------


def test_copying_from_an_unreachable_cold_tier_is_503(tmp_path: Path) -> None:
    remote = start_server(tmp_path / "remote")
    remote.client().create_bucket(Bucket="cold-store")
    config = tmp_path / "stratum.toml"
    config.write_text(
        f"""
[storage]
data_dir = "{tmp_path / "data"}"
[tiers.cold]
endpoint = "{remote.endpoint}"
bucket = "cold-store"
[tiering]
interval = "1h"
cold_min_size = "1KiB"
"""
    )
    env = {"STRATUM_COLD_ACCESS_KEY": remote.access_key, "STRATUM_COLD_SECRET_KEY": ""}
    env["STRATUM_COLD_SECRET_KEY"] = remote.secret_key
    tiered = start_server(tmp_path / "data", config=config, env=env)
    try:
        s3: Any = tiered.client()
        s3.create_bucket(Bucket="src")
        s3.put_object(Bucket="src", Key="x", Body=os.urandom(50_000), StorageClass="GLACIER_IR")
        deadline = time.monotonic() + 20
        while (
            s3.head_object(Bucket="src", Key="x")["ResponseMetadata"]["HTTPHeaders"].get(
                "x-stratum-tier"
            )
            != "cold"
        ):
            assert time.monotonic() < deadline, "the object never went cold"
            time.sleep(0.3)
        stop_cleanly(remote)  # the cold store is gone (a network or provider outage)
        with pytest.raises(ClientError) as refused:
            s3.copy_object(Bucket="src", Key="y", CopySource={"Bucket": "src", "Key": "x"})
        assert refused.value.response["Error"]["Code"] == "ServiceUnavailable"
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        with pytest.raises(ClientError, match="404"):
            s3.head_object(Bucket="src", Key="y")
    finally:
        stop_cleanly(tiered)
        remote.stop()
