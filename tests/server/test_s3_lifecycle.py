"""Lifecycle configurations against a real server with boto3: AWS's validation and answers,
the configuration read back as given, x-amz-expiration, and a server whose lifecycle day is
two seconds expiring a prefix (and giving its space back) while everything else stays."""

from __future__ import annotations

import datetime
import math
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.server.conftest import RunningServer, start_server
from tests.server.faultload import client_config, stop_cleanly, write_config
from tests.server.test_s3_objects import error_of
from tests.server.test_tiering_e2e import COLD_BUCKET
from tests.server.test_tiering_e2e import cli as tier_cli

DAY_SECONDS = 2


def test_configuration_round_trip(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as caught:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert error_of(caught) == (404, "NoSuchLifecycleConfiguration")
    assert s3.delete_bucket_lifecycle(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    rules = [
        {"ID": "legacy", "Prefix": "logs/", "Status": "Enabled", "Expiration": {"Days": 31}},
        {
            "ID": "filtered",
            "Filter": {
                "And": {
                    "Prefix": "tmp/",
                    "Tags": [{"Key": "k", "Value": "v"}],
                    "ObjectSizeGreaterThan": 10,
                }
            },
            "Status": "Disabled",
            "Expiration": {"Date": datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)},
            "Transitions": [{"Days": 0, "StorageClass": "STANDARD_IA"}],
        },
        {
            "ID": "versions",
            "Filter": {"Prefix": ""},
            "Status": "Enabled",
            "NoncurrentVersionExpiration": {"NoncurrentDays": 3, "NewerNoncurrentVersions": 2},
            "NoncurrentVersionTransitions": [{"NoncurrentDays": 1, "StorageClass": "GLACIER"}],
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2},
        },
        {
            "ID": "markers",
            "Filter": {},
            "Status": "Enabled",
            "Expiration": {"ExpiredObjectDeleteMarker": True},
        },
    ]
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    assert s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"] == rules
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [{"Prefix": "a/", "Status": "Enabled", "Expiration": {"Days": 1}}]
        },
    )
    [generated] = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert generated["ID"] and generated["Prefix"] == "a/"
    assert s3.delete_bucket_lifecycle(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as caught:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert error_of(caught) == (404, "NoSuchLifecycleConfiguration")


def _rule(**fields: Any) -> dict[str, Any]:
    return {"ID": "r", "Prefix": "", "Status": "Enabled", "Expiration": {"Days": 1}, **fields}


@pytest.mark.parametrize(
    ("rules", "code"),
    [
        ([_rule(ID="a" * 256)], "InvalidArgument"),
        ([_rule(), _rule(Prefix="x")], "InvalidArgument"),  # the same ID twice
        ([_rule(Status="enabled")], "MalformedXML"),
        ([_rule(Expiration={"Days": 0})], "InvalidArgument"),
        ([_rule(Expiration={"Date": "20200101"})], "InvalidArgument"),  # not at midnight
        ([_rule(Expiration={"Days": 1, "ExpiredObjectDeleteMarker": True})], "MalformedXML"),
        ([{"ID": "r", "Prefix": "", "Status": "Enabled"}], "InvalidArgument"),  # no action
        (
            [
                _rule(
                    NoncurrentVersionExpiration={
                        "NoncurrentDays": 1,
                        "NewerNoncurrentVersions": 101,
                    }
                )
            ],
            "InvalidArgument",
        ),
        ([_rule(Transitions=[{"Days": 1, "StorageClass": "STANDARD"}])], "InvalidStorageClass"),
        (
            [
                {
                    "ID": "r",
                    "Filter": {"And": {"ObjectSizeGreaterThan": 10, "ObjectSizeLessThan": 5}},
                    "Status": "Enabled",
                    "Expiration": {"Days": 1},
                }
            ],
            "InvalidArgument",
        ),
        ([_rule(ID=f"r{i}") for i in range(1001)], "InvalidArgument"),
    ],
)
def test_invalid_configurations(s3: Any, bucket: str, rules: list[Any], code: str) -> None:
    with pytest.raises(ClientError) as caught:
        s3.put_bucket_lifecycle_configuration(
            Bucket=bucket, LifecycleConfiguration={"Rules": rules}
        )
    assert error_of(caught) == (400, code)
    with pytest.raises(ClientError) as caught:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert error_of(caught) == (404, "NoSuchLifecycleConfiguration")


EXPIRATION = re.compile(r'expiry-date="([^"]+)", rule-id="([^"]+)"')


def _expiration(response: Any) -> tuple[datetime.datetime, str] | None:
    value = response["ResponseMetadata"]["HTTPHeaders"].get("x-amz-expiration")
    if value is None:
        return None
    found = EXPIRATION.fullmatch(value)
    assert found is not None, value
    when = datetime.datetime.strptime(found[1], "%a, %d %b %Y %H:%M:%S GMT")
    return when.replace(tzinfo=datetime.UTC), found[2]


def expire_after(rule_id: str, prefix: str, days: int) -> dict[str, Any]:
    return {
        "ID": rule_id,
        "Filter": {"Prefix": prefix},
        "Status": "Enabled",
        "Expiration": {"Days": days},
    }


def test_expiration_header_on_put_get_head(s3: Any, bucket: str) -> None:
    rules = [expire_after("one day/a", "days1/", 1)]
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    now = datetime.datetime.now(datetime.UTC)
    midnight = (now + datetime.timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)
    put = s3.put_object(Bucket=bucket, Key="days1/foo", Body=b"bar")
    for answer in (
        put,
        s3.head_object(Bucket=bucket, Key="days1/foo"),
        s3.get_object(Bucket=bucket, Key="days1/foo"),
    ):
        assert _expiration(answer) == (midnight, "one%20day%2Fa")
    copied = s3.copy_object(
        Bucket=bucket, Key="days1/copy", CopySource={"Bucket": bucket, "Key": "days1/foo"}
    )
    upload = s3.create_multipart_upload(Bucket=bucket, Key="days1/mp")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="days1/mp", UploadId=upload, PartNumber=1, Body=b"p")[
        "ETag"
    ]
    completed = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="days1/mp",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )
    for answer in (copied, completed):
        assert _expiration(answer) == (midnight, "one%20day%2Fa")
    other = s3.put_object(Bucket=bucket, Key="other", Body=b"bar")
    assert _expiration(other) is None
    assert _expiration(s3.head_object(Bucket=bucket, Key="other")) is None


@pytest.fixture
def fast_server(tmp_path: Path) -> Iterator[RunningServer]:
    layout = write_config(
        tmp_path,
        disks=3,
        extra=f"\n[lifecycle]\nday_seconds = {DAY_SECONDS}\ninterval = 0.5\n",
    )
    server = start_server(layout.data_dir, config=layout.config)
    yield server
    stop_cleanly(server)


def _shard_bytes(root: Path) -> int:
    """Bytes in the erasure-coded shard files (a large object's data) on the disks."""
    return sum(f.stat().st_size for f in root.glob("disk*/**/*") if f.suffix == ".shard")


def test_a_rule_expires_a_prefix_and_frees_its_space(
    fast_server: RunningServer, tmp_path: Path
) -> None:
    s3 = fast_server.client(**client_config())
    s3.create_bucket(Bucket="logs")
    s3.put_bucket_lifecycle_configuration(
        Bucket="logs",
        LifecycleConfiguration={
            "Rules": [
                expire_after("old", "old/", 1),
                {
                    "ID": "uploads",
                    "Filter": {"Prefix": ""},
                    "Status": "Enabled",
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                },
            ]
        },
    )
    before = _shard_bytes(tmp_path)
    for i in range(3):
        s3.put_object(Bucket="logs", Key=f"old/{i}", Body=bytes([i]) * 700_000)
        s3.put_object(Bucket="logs", Key=f"new/{i}", Body=b"n" * 1000)
    s3.put_object(Bucket="logs", Key="older", Body=b"not under old/")
    s3.create_multipart_upload(Bucket="logs", Key="forgotten")
    grown = _shard_bytes(tmp_path) - before
    assert grown > 3 * 700_000
    deadline = time.monotonic() + 8 * DAY_SECONDS + 10
    listed: list[str] = []
    while time.monotonic() < deadline:
        listed = [o["Key"] for o in s3.list_objects_v2(Bucket="logs").get("Contents", [])]
        if not [k for k in listed if k.startswith("old/")]:
            break
        time.sleep(0.5)
    assert listed == ["new/0", "new/1", "new/2", "older"]
    while time.monotonic() < deadline and _shard_bytes(tmp_path) - before > grown / 100:
        time.sleep(0.5)
    assert _shard_bytes(tmp_path) - before < grown / 100
    while time.monotonic() < deadline and s3.list_multipart_uploads(Bucket="logs").get("Uploads"):
        time.sleep(0.5)
    assert not s3.list_multipart_uploads(Bucket="logs").get("Uploads")


def _until(deadline: float, done: Any) -> None:
    """Poll ``done()`` every half second until it holds or ``deadline`` (monotonic) passes."""
    while time.monotonic() < deadline and not done():
        time.sleep(0.5)


def _rule_on(rule_id: str, prefix: str, actions: dict[str, Any]) -> dict[str, Any]:
    """An enabled rule with ``actions`` on the keys under ``prefix``."""
    return {"ID": rule_id, "Filter": {"Prefix": prefix}, "Status": "Enabled", **actions}


def _put_rules(s3: Any, bucket: str, *rules: dict[str, Any]) -> None:
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": list(rules)}
    )


def _versions(s3: Any, bucket: str, key: str) -> list[str]:
    """The version ids of ``key`` that hold data (not delete markers), newest first."""
    listed = s3.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", [])
    return [v["VersionId"] for v in listed if v["Key"] == key]


def test_noncurrent_versions_beyond_the_newest_go(fast_server: RunningServer) -> None:
    s3 = fast_server.client(**client_config())
    s3.create_bucket(Bucket="history")
    s3.put_bucket_versioning(Bucket="history", VersioningConfiguration={"Status": "Enabled"})
    rule = {"NoncurrentVersionExpiration": {"NoncurrentDays": 1, "NewerNoncurrentVersions": 2}}
    _put_rules(s3, "history", _rule_on("keep-two", "", rule))
    written = [
        s3.put_object(Bucket="history", Key="doc", Body=f"v{i}".encode())["VersionId"]
        for i in range(6)
    ]
    short = [
        s3.put_object(Bucket="history", Key="few", Body=f"v{i}".encode())["VersionId"]
        for i in range(3)
    ]
    newest_first = list(reversed(written))
    assert _versions(s3, "history", "doc") == newest_first
    deadline = time.monotonic() + 8 * DAY_SECONDS + 10
    _until(deadline, lambda: len(_versions(s3, "history", "doc")) <= 3)
    # The current version and the two newest noncurrent ones stay; a key with no more
    # noncurrent versions than that keeps them all.
    assert _versions(s3, "history", "doc") == newest_first[:3]
    assert _versions(s3, "history", "few") == list(reversed(short))
    assert s3.get_object(Bucket="history", Key="doc")["Body"].read() == b"v5"
    oldest_kept = newest_first[2]
    got = s3.get_object(Bucket="history", Key="doc", VersionId=oldest_kept)
    assert got["Body"].read() == b"v3"


def test_a_version_locked_through_the_api_survives_the_rules(fast_server: RunningServer) -> None:
    s3 = fast_server.client(**client_config())
    s3.create_bucket(Bucket="vault", ObjectLockEnabledForBucket=True)
    held = s3.put_object(Bucket="vault", Key="k", Body=b"held")["VersionId"]
    retained = s3.put_object(Bucket="vault", Key="k", Body=b"retained")["VersionId"]
    free = s3.put_object(Bucket="vault", Key="k", Body=b"free")["VersionId"]
    s3.put_object_legal_hold(Bucket="vault", Key="k", VersionId=held, LegalHold={"Status": "ON"})
    until = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    s3.put_object_retention(
        Bucket="vault",
        Key="k",
        VersionId=retained,
        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until},
    )
    rule = {"Expiration": {"Days": 1}, "NoncurrentVersionExpiration": {"NoncurrentDays": 1}}
    _put_rules(s3, "vault", _rule_on("everything", "", rule))
    # The unlocked version expires (a delete marker), then goes as a noncurrent version a
    # day later; the locked ones, noncurrent since before that, were due first.
    deadline = time.monotonic() + 8 * DAY_SECONDS + 10
    _until(deadline, lambda: free not in _versions(s3, "vault", "k"))
    assert _versions(s3, "vault", "k") == [retained, held]
    for version, body in ((held, b"held"), (retained, b"retained")):
        got = s3.get_object(Bucket="vault", Key="k", VersionId=version)
        assert got["Body"].read() == body


@pytest.fixture
def tiered_fast_server(tmp_path: Path) -> Iterator[RunningServer]:
    """The fast lifecycle day on a server with a warm tier (three disks) and a cold tier (a
    second Stratum on loopback), whose tier engine moves only when a test runs a pass."""
    remote = start_server(tmp_path / "remote")
    remote.client().create_bucket(Bucket=COLD_BUCKET)
    warm = ", ".join(f'"{tmp_path / f"warm{i}"}"' for i in range(3))
    layout = write_config(
        tmp_path / "tiered",
        disks=3,
        extra=f"""
[tiers.warm]
disks = [{warm}]
data_shards = 2
parity_shards = 1

[tiers.cold]
endpoint = "{remote.endpoint}"
bucket = "{COLD_BUCKET}"

[tiering]
interval = "1h"
# The disks are the host's, whose fill level is not the test's: no watermark moves.
hot_high_watermark = 1.0
hot_low_watermark = 0.99
warm_high_watermark = 1.0
warm_low_watermark = 0.99

[lifecycle]
day_seconds = {DAY_SECONDS}
interval = 0.5
""",
    )
    server = start_server(
        layout.data_dir,
        config=layout.config,
        env={
            "STRATUM_COLD_ACCESS_KEY": remote.access_key,
            "STRATUM_COLD_SECRET_KEY": remote.secret_key,
        },
    )
    server.config = layout.config  # type: ignore[attr-defined]  # for tier_cli
    yield server
    stop_cleanly(server)
    stop_cleanly(remote)


def _tier(s3: Any, key: str) -> tuple[str, str]:
    """(x-stratum-tier, StorageClass) of ``key`` in the bucket "archive", as HEAD gives them."""
    head = s3.head_object(Bucket="archive", Key=key)
    return head["ResponseMetadata"]["HTTPHeaders"]["x-stratum-tier"], head.get("StorageClass", "")


def test_transition_rules_move_objects_to_their_tier_within_one_pass(
    tiered_fast_server: RunningServer,
) -> None:
    s3 = tiered_fast_server.client(**client_config())
    s3.create_bucket(Bucket="archive")
    _put_rules(
        s3,
        "archive",
        _rule_on("to-warm", "ia/", {"Transitions": [{"Days": 1, "StorageClass": "STANDARD_IA"}]}),
        _rule_on("to-cold", "deep/", {"Transitions": [{"Days": 1, "StorageClass": "GLACIER"}]}),
    )
    data = {key: os.urandom(200_000) for key in ("ia/a", "deep/b", "kept/c")}
    for key, body in data.items():
        s3.put_object(Bucket="archive", Key=key, Body=body)
    tier_cli(tiered_fast_server, "tier", "run")  # not due yet: nothing moves
    assert {key: _tier(s3, key)[0] for key in data} == dict.fromkeys(data, "hot")
    # Due at the end of the lifecycle day after the write (two seconds here).
    written = time.time()
    time.sleep(math.ceil((written + DAY_SECONDS) / DAY_SECONDS) * DAY_SECONDS - written + 0.2)
    tier_cli(tiered_fast_server, "tier", "run")
    assert _tier(s3, "ia/a") == ("warm", "STANDARD_IA")
    assert _tier(s3, "deep/b")[0] == "cold"
    assert _tier(s3, "kept/c") == ("hot", "")  # STANDARD is left out of HEAD, as on AWS
    for key, body in data.items():
        assert s3.get_object(Bucket="archive", Key=key)["Body"].read() == body
    explained = tier_cli(tiered_fast_server, "explain", "archive/deep/b")
    assert "tier        cold" in explained and "lifecycle:to-cold" in explained
