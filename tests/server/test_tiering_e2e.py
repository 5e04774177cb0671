"""Tiering end to end: a Stratum whose cold tier is a second, real Stratum on loopback.

Objects go cold and come back by access; the remote only ever holds ciphertext under
opaque names; GET and range GET stream through; deletes and overwrites clean up the
remote; ``stratum explain`` and the decision log say why.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.server.conftest import RunningServer, start_server

COLD_BUCKET = "stratum-cold"


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_server(tmp_path_factory.mktemp("remote-data"))
    srv.client().create_bucket(Bucket=COLD_BUCKET)
    yield srv
    assert srv.stop() == 0


@pytest.fixture(scope="module")
def tiered(
    tmp_path_factory: pytest.TempPathFactory, remote: RunningServer
) -> Iterator[RunningServer]:
    base = tmp_path_factory.mktemp("tiered")
    config = base / "stratum.toml"
    config.write_text(
        f"""
[storage]
data_dir = "{base / "data"}"

[tiers.cold]
endpoint = "{remote.endpoint}"
bucket = "{COLD_BUCKET}"
prefix = "site-a/"

[tiering]
interval = "1h"            # the tests run passes themselves
hot_idle_before_warm = "1s"
warm_idle_before_cold = "1s"
cold_min_size = "1KiB"
promote_reads = 3
promote_window = "1h"
# The tiers are directories on the host's filesystem, whose fill level is the machine's, not
# the test's: watermarks at 100 % keep this test's moves to the idle and read rules.
hot_high_watermark = 1.0
hot_low_watermark = 0.99
warm_high_watermark = 1.0
warm_low_watermark = 0.99
"""
    )
    srv = start_server(
        base / "data",
        config=config,
        env={
            "STRATUM_COLD_ACCESS_KEY": remote.access_key,
            "STRATUM_COLD_SECRET_KEY": remote.secret_key,
        },
    )
    srv.config = config  # type: ignore[attr-defined]
    yield srv
    assert srv.stop() == 0, "".join(srv.output[-40:])


def cli(srv: RunningServer, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "stratum", *args, "--config", str(srv.config)],  # type: ignore[attr-defined]
        capture_output=True,
        text=True,
        env=srv.env()
        | {"STRATUM_ACCESS_KEY": srv.access_key, "STRATUM_SECRET_KEY": srv.secret_key},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def remote_objects(remote: RunningServer) -> dict[str, bytes]:
    """What the cold bucket holds now (an object the tiered server removes between the
    listing and its GET is gone: left out)."""
    s3 = remote.client()
    listed = s3.list_objects_v2(Bucket=COLD_BUCKET).get("Contents", [])
    out = {}
    for entry in listed:
        try:
            out[entry["Key"]] = s3.get_object(Bucket=COLD_BUCKET, Key=entry["Key"])["Body"].read()
        except s3.exceptions.NoSuchKey:
            continue
    return out


def test_objects_go_cold_and_reads_stream_through(
    tiered: RunningServer, remote: RunningServer
) -> None:
    s3 = tiered.client()
    s3.create_bucket(Bucket="photos")
    marker = b"PLAINTEXT-MARKER-" * 64
    big = marker + os.urandom(3_000_000)
    small = marker + b"small"
    s3.put_object(Bucket="photos", Key="holiday/beach.raw", Body=big)
    s3.put_object(Bucket="photos", Key="notes.txt", Body=small)
    time.sleep(1.5)
    cli(tiered, "tier", "run")
    head = s3.head_object(Bucket="photos", Key="holiday/beach.raw")
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-stratum-tier"] == "cold"
    assert head["StorageClass"] == "GLACIER_IR"
    stored = remote_objects(remote)
    assert len(stored) == 2
    for name, blob in stored.items():
        assert name.startswith("site-a/") and "beach" not in name and "photos" not in name
        assert b"PLAINTEXT-MARKER" not in blob, "the provider must only hold ciphertext"
    got = s3.get_object(Bucket="photos", Key="holiday/beach.raw")["Body"].read()
    assert hashlib.md5(got).digest() == hashlib.md5(big).digest()
    part = s3.get_object(Bucket="photos", Key="holiday/beach.raw", Range="bytes=1500000-1600000")
    assert part["Body"].read() == big[1_500_000:1_600_001]
    assert s3.get_object(Bucket="photos", Key="notes.txt")["Body"].read() == small
    explained = cli(tiered, "explain", "photos/holiday/beach.raw")
    assert "tier        cold" in explained and "placed by   idle" in explained


def test_reads_promote_and_deletes_clean_the_remote(
    tiered: RunningServer, remote: RunningServer
) -> None:
    s3 = tiered.client()
    s3.create_bucket(Bucket="docs")
    earlier = set(remote_objects(remote))
    data = os.urandom(200_000)
    s3.put_object(Bucket="docs", Key="report.pdf", Body=data)
    s3.put_object(Bucket="docs", Key="old.pdf", Body=os.urandom(50_000))
    time.sleep(1.5)
    cli(tiered, "tier", "run")
    before = set(remote_objects(remote)) - earlier
    assert len(before) == 2
    assert s3.head_object(Bucket="docs", Key="report.pdf")["StorageClass"] == "GLACIER_IR"
    for _ in range(3):
        assert s3.get_object(Bucket="docs", Key="report.pdf")["Body"].read() == data
    cli(tiered, "tier", "run")
    head = s3.head_object(Bucket="docs", Key="report.pdf")
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-stratum-tier"] == "hot"
    log = json.loads(
        cli(tiered, "tier", "log", "--bucket", "docs", "--key", "report.pdf", "--json")
    )
    assert [r["rule"] for r in log][:2] == ["promote", "idle"]
    s3.delete_object(Bucket="docs", Key="old.pdf")
    s3.put_object(Bucket="docs", Key="report.pdf", Body=b"rewritten")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        left = before & set(remote_objects(remote))
        if not left:
            break
        time.sleep(0.5)
    assert not left, "deleted, overwritten and promoted objects leave the remote"


def test_bucket_pin_moves_within_seconds(tiered: RunningServer) -> None:
    s3 = tiered.client()
    s3.create_bucket(Bucket="archive")
    s3.put_object(Bucket="archive", Key="a.tar", Body=os.urandom(100_000))
    cli(tiered, "tier", "pin", "archive", "cold")
    deadline = time.monotonic() + 10
    tier: Any = None
    while time.monotonic() < deadline:
        tier = s3.head_object(Bucket="archive", Key="a.tar").get("StorageClass")
        if tier == "GLACIER_IR":
            break
        time.sleep(0.3)
    assert tier == "GLACIER_IR"
    explained = cli(tiered, "explain", "archive/a.tar")
    assert "pinned to   cold" in explained


def test_put_with_storage_class_goes_there(tiered: RunningServer) -> None:
    s3 = tiered.client()
    s3.create_bucket(Bucket="direct")
    s3.put_object(Bucket="direct", Key="x", Body=os.urandom(5000), StorageClass="GLACIER_IR")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        head = s3.head_object(Bucket="direct", Key="x")
        if head["ResponseMetadata"]["HTTPHeaders"]["x-stratum-tier"] == "cold":
            break
        time.sleep(0.3)
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-stratum-tier"] == "cold"
