"""Replication between two real Stratum servers on loopback, each a target of the other."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.server.conftest import RunningServer, stratum_command
from tests.server.replication_sites import (
    RefusingProxy,
    Site,
    converged,
    free_port,
    moto_server,
    one_way_source,
    replication_status,
    running_sites,
    site_config,
    two_sites,
    version_listing,
    versioned_bucket,
    wait_for,
)


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Site, Site]]:
    yield from running_sites(tmp_path_factory.mktemp("sites"))


def _metric(server: RunningServer, name: str, target: str) -> float:
    """A replication metric of ``target`` from the server's /metrics."""
    with urllib.request.urlopen(f"{server.endpoint}/metrics") as response:
        metrics = response.read().decode()
    found = re.search(rf'stratum_replication_{name}\{{target="{target}"\}} (\S+)', metrics)
    assert found is not None, metrics
    return float(found.group(1))


def test_a_put_on_one_site_is_readable_on_the_other(sites: tuple[Site, Site]) -> None:
    a, b = sites
    s3a, s3b = a.client(), b.client()
    versioned_bucket("photos", s3a, s3b)
    put = s3a.put_object(
        Bucket="photos",
        Key="2026/beach.jpg",
        Body=b"sand" * 1000,
        ContentType="image/jpeg",
        Metadata={"camera": "x100"},
        ChecksumAlgorithm="SHA256",
        Tagging="album=summer&people=2",
    )
    version = put["VersionId"]
    # within seconds (well under one on a quiet machine; the bound leaves room for a busy one)
    copy = wait_for(lambda: s3b.get_object(Bucket="photos", Key="2026/beach.jpg"), what="copy")
    assert copy["Body"].read() == b"sand" * 1000
    assert copy["VersionId"] == version
    assert copy["ContentType"] == "image/jpeg" and copy["Metadata"] == {"camera": "x100"}
    assert copy["ETag"] == put["ETag"]
    tags = s3b.get_object_tagging(Bucket="photos", Key="2026/beach.jpg", VersionId=version)
    assert {t["Key"]: t["Value"] for t in tags["TagSet"]} == {"album": "summer", "people": "2"}
    assert copy["ResponseMetadata"]["HTTPHeaders"]["x-amz-replication-status"] == "REPLICA"
    source = s3a.head_object(Bucket="photos", Key="2026/beach.jpg", ChecksumMode="ENABLED")
    assert copy["LastModified"] == source["LastModified"]
    head_b = s3b.head_object(Bucket="photos", Key="2026/beach.jpg", ChecksumMode="ENABLED")
    assert head_b["ChecksumSHA256"] == source["ChecksumSHA256"]
    status = wait_for(
        lambda: (
            s3a.head_object(Bucket="photos", Key="2026/beach.jpg")["ReplicationStatus"]
            == "COMPLETED"
        ),
        what="COMPLETED on the source",
    )
    assert status
    # The replica is not sent back: the source holds one version, not two.
    time.sleep(1.5)
    assert [v[1] for v in version_listing(s3a, "photos")] == [version]


def test_tag_changes_follow_the_version(sites: tuple[Site, Site]) -> None:
    a, b = sites
    s3a, s3b = a.client(), b.client()
    versioned_bucket("albums", s3a, s3b)
    put = s3a.put_object(Bucket="albums", Key="cover.png", Body=b"png", Tagging="year=2025")
    version = put["VersionId"]

    def tags(s3: Any) -> dict[str, str]:
        found = s3.get_object_tagging(Bucket="albums", Key="cover.png", VersionId=version)
        return {t["Key"]: t["Value"] for t in found["TagSet"]}

    wait_for(lambda: tags(s3b) == {"year": "2025"}, what="the copy with its tags")
    tag_set = [{"Key": "year", "Value": "2026"}, {"Key": "note", "Value": "<a & b>"}]
    s3a.put_object_tagging(
        Bucket="albums", Key="cover.png", VersionId=version, Tagging={"TagSet": tag_set}
    )
    wanted = {"year": "2026", "note": "<a & b>"}
    wait_for(lambda: tags(s3b) == wanted, what="the changed tags on the target")
    s3a.delete_object_tagging(Bucket="albums", Key="cover.png", VersionId=version)
    wait_for(lambda: tags(s3b) == {}, what="the tags removed on the target")
    # a change made to the replica is not sent back to its source
    s3b.put_object_tagging(
        Bucket="albums", Key="cover.png", VersionId=version, Tagging={"TagSet": tag_set}
    )
    time.sleep(1.5)
    assert tags(s3a) == {}


def test_delete_markers_and_multipart_objects_replicate(sites: tuple[Site, Site]) -> None:
    a, b = sites
    s3a, s3b = a.client(), b.client()
    versioned_bucket("backup", s3a, s3b)
    part = os.urandom(5 << 20)
    upload = s3b.create_multipart_upload(Bucket="backup", Key="big.tar")["UploadId"]
    etags = [
        s3b.upload_part(Bucket="backup", Key="big.tar", UploadId=upload, PartNumber=n, Body=body)[
            "ETag"
        ]
        for n, body in ((1, part), (2, b"tail"))
    ]
    done = s3b.complete_multipart_upload(
        Bucket="backup",
        Key="big.tar",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]},
    )
    copy = wait_for(lambda: s3a.head_object(Bucket="backup", Key="big.tar"), what="multipart")
    assert copy["ETag"] == done["ETag"] and copy["VersionId"] == done["VersionId"]
    assert copy["ContentLength"] == len(part) + 4
    body = s3a.get_object(Bucket="backup", Key="big.tar")["Body"].read()
    assert body == part + b"tail"
    marker = s3b.delete_object(Bucket="backup", Key="big.tar")
    assert marker["DeleteMarker"]

    def gone_on_a() -> bool:
        try:
            s3a.head_object(Bucket="backup", Key="big.tar")
        except ClientError as exc:
            return bool(exc.response["Error"]["Code"] == "404")
        return False

    wait_for(gone_on_a, what="the delete marker on a")
    assert wait_for(lambda: version_listing(s3a, "backup") == version_listing(s3b, "backup"))
    markers = [v for v in version_listing(s3a, "backup") if v[2]]
    assert [m[1] for m in markers] == [marker["VersionId"]]


def test_replica_headers_need_replication_rights(server: RunningServer, bucket: str) -> None:
    s3 = server.client()
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})

    def add_headers(request: Any, **_: Any) -> None:
        request.headers["x-stratum-replica-version-id"] = "00" * 16
        request.headers["x-stratum-replica-mtime"] = "1700000000.5"

    s3.meta.events.register("before-sign.s3.PutObject", add_headers)
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket=bucket, Key="forged", Body=b"x")
    assert info.value.response["Error"]["Code"] == "AccessDenied"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_concurrent_mixed_writes_on_both_sites_converge(sites: tuple[Site, Site]) -> None:
    import concurrent.futures
    import random

    a, b = sites
    s3a, s3b = a.client(), b.client()
    versioned_bucket("mixed", s3a, s3b)
    keys = [f"k{i}" for i in range(20)]

    def writer(s3: Any, seed: int, count: int) -> None:
        rng = random.Random(seed)
        for i in range(count):
            key = rng.choice(keys)
            if rng.random() < 0.2:
                s3.delete_object(Bucket="mixed", Key=key)
            else:
                s3.put_object(Bucket="mixed", Key=key, Body=f"{seed}-{i}".encode())

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        jobs = [
            pool.submit(writer, s3, seed, 250)
            for s3, seed in ((s3a, 1), (s3a, 2), (s3b, 3), (s3b, 4))
        ]
        for job in jobs:
            job.result()

    listing = converged(s3a, s3b, "mixed", timeout=120)
    assert len(listing) == 1000  # every acknowledged write, on both sites
    for key in keys:
        latest_a = [v for v in listing if v[0] == key and v[4]]
        try:
            body_a = s3a.get_object(Bucket="mixed", Key=key)["Body"].read()
            body_b = s3b.get_object(Bucket="mixed", Key=key)["Body"].read()
        except ClientError:
            assert latest_a and latest_a[0][2], key  # the current version is a delete marker
            continue
        assert body_a == body_b, key


def test_the_site_id_is_in_every_version_id(sites: tuple[Site, Site]) -> None:
    a, b = sites
    s3a = a.client()
    versioned_bucket("ids", s3a, b.client())
    version = s3a.put_object(Bucket="ids", Key="k", Body=b"")["VersionId"]
    assert bytes.fromhex(version)[8:12] == (1).to_bytes(4, "big")


def test_status_and_metrics_show_each_target(sites: tuple[Site, Site]) -> None:
    a, b = sites
    s3a = a.client()
    versioned_bucket("status", s3a, b.client())
    s3a.put_object(Bucket="status", Key="k", Body=b"12345")
    wait_for(lambda: s3a.head_object(Bucket="status", Key="k")["ReplicationStatus"] == "COMPLETED")
    assert a.server is not None
    status = replication_status(a)
    assert status.startswith(f"b  http://127.0.0.1:{b.port}\n")
    assert "  queued: 0 versions, 0B; oldest pending -\n" in status
    assert "failures 0" in status and "last error: -" in status
    assert _metric(a.server, "queue_versions", "b") == 0
    assert _metric(a.server, "lag_seconds", "b") == 0
    assert _metric(a.server, "sent_bytes_total", "b") >= 5
    assert _metric(a.server, "failures_total", "b") == 0  # counted: test_a_partition_heals


def test_bucket_replication_answers_the_configured_rules(sites: tuple[Site, Site]) -> None:
    a, b = sites
    s3a = a.client()
    versioned_bucket("rules", s3a, b.client())
    config = s3a.get_bucket_replication(Bucket="rules")["ReplicationConfiguration"]
    [rule] = config["Rules"]
    assert rule["ID"] == "b" and rule["Status"] == "Enabled"
    assert rule["Destination"]["Bucket"] == "arn:aws:s3:::rules"
    assert rule["DeleteMarkerReplication"] == {"Status": "Enabled"}

    def put(rule_id: str, destination: str) -> None:
        s3a.put_bucket_replication(
            Bucket="rules",
            ReplicationConfiguration={
                "Role": "arn:aws:iam::000000000000:role/replication",
                "Rules": [
                    {
                        "ID": rule_id,
                        "Priority": 1,
                        "Status": "Enabled",
                        "Filter": {"Prefix": "logs/"},
                        "DeleteMarkerReplication": {"Status": "Disabled"},
                        "Destination": {"Bucket": destination},
                    }
                ],
            },
        )

    for rule_id, destination in (("nowhere", "arn:aws:s3:::rules"), ("b", "arn:aws:s3:::x")):
        with pytest.raises(ClientError) as info:
            put(rule_id, destination)
        assert info.value.response["Error"]["Code"] == "InvalidRequest"
    put("b", "arn:aws:s3:::rules")
    config = s3a.get_bucket_replication(Bucket="rules")["ReplicationConfiguration"]
    assert config["Role"] == "arn:aws:iam::000000000000:role/replication"
    assert [(r["ID"], r["Filter"]["Prefix"]) for r in config["Rules"]] == [
        ("b", ""),
        ("b", "logs/"),
    ]
    s3a.delete_bucket_replication(Bucket="rules")
    assert len(s3a.get_bucket_replication(Bucket="rules")["ReplicationConfiguration"]["Rules"]) == 1


def test_bucket_replication_needs_versioning(server: RunningServer, bucket: str) -> None:
    s3 = server.client()
    with pytest.raises(ClientError) as info:
        s3.get_bucket_replication(Bucket=bucket)
    assert info.value.response["Error"]["Code"] == "ReplicationConfigurationNotFoundError"
    with pytest.raises(ClientError) as info:
        s3.put_bucket_replication(
            Bucket=bucket,
            ReplicationConfiguration={
                "Role": "",
                "Rules": [
                    {"ID": "x", "Status": "Enabled", "Prefix": "", "Destination": {"Bucket": "a"}}
                ],
            },
        )
    assert info.value.response["Error"]["Code"] == "InvalidRequest"


def test_one_way_to_a_plain_s3_store(tmp_path: Path) -> None:
    """moto server as the target: it ignores the replica headers and gives each push an id
    of its own, in the source's order per key, so its current object is the source's, even
    when the first version's push fails once (the later ones wait for its retry)."""
    with moto_server() as (port, remote):
        refusing = RefusingProxy(port, "PUT", "/oneway/doc.txt")
        refusing.start()
        try:
            versioned_bucket("oneway", remote)
            with one_way_source(tmp_path, f"http://127.0.0.1:{refusing.port}") as source:
                s3 = source.client()
                versioned_bucket("oneway", s3)
                for body in (b"first", b"second", b"third"):
                    s3.put_object(Bucket="oneway", Key="doc.txt", Body=body, Metadata={"n": "1"})
                s3.put_object(Bucket="oneway", Key="gone.txt", Body=b"x")
                s3.delete_object(Bucket="oneway", Key="gone.txt")
                wait_for(
                    lambda: len(version_listing(remote, "oneway")) == 5,
                    what="five versions on moto",
                )
                assert len(refusing.refused) == 1  # the first version's first push
                got = remote.get_object(Bucket="oneway", Key="doc.txt")
                assert got["Body"].read() == b"third" and got["Metadata"] == {"n": "1"}
                with pytest.raises(ClientError):
                    remote.head_object(Bucket="oneway", Key="gone.txt")
                wait_for(
                    lambda: (
                        s3.head_object(Bucket="oneway", Key="doc.txt")["ReplicationStatus"]
                        == "COMPLETED"
                    )
                )
        finally:
            refusing.stop()


@pytest.fixture
def fresh_sites(tmp_path: Path) -> Iterator[tuple[Site, Site]]:
    """Two sites of the test's own, which it may stop and start."""
    a, b = two_sites(tmp_path)
    a.start()
    b.start()
    yield a, b
    for site in (a, b):
        if site.server is not None and site.server.process.poll() is None:
            site.server.stop()


def _write(s3: Any, prefix: str, count: int) -> set[str]:
    """Mixed writes; the version ids acknowledged."""
    acked = set()
    for i in range(count):
        key = f"{prefix}{i % 7}"
        if i % 5 == 4:
            acked.add(s3.delete_object(Bucket="pp1", Key=key)["VersionId"])
        else:
            acked.add(s3.put_object(Bucket="pp1", Key=key, Body=os.urandom(i * 100))["VersionId"])
    return acked


def test_a_partition_heals(fresh_sites: tuple[Site, Site]) -> None:
    a, b = fresh_sites
    versioned_bucket("pp1", a.client(), b.client())
    acked = _write(b.client(), "k", 30)  # B's, partly not pushed when it stops
    assert b.server is not None
    assert b.server.stop() == 0
    acked |= _write(a.client(), "k", 30)  # A's, while B is away
    s3a = a.client()
    waiting = s3a.put_object(Bucket="pp1", Key="waiting", Body=b"w")["VersionId"]
    acked.add(waiting)
    # PENDING until B has it (FAILED only after three failed attempts: 1 + 2 s of backoff)
    head = s3a.head_object(Bucket="pp1", Key="waiting", VersionId=waiting)
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-replication-status"] == "PENDING"
    assert a.server is not None
    wait_for(lambda: _metric(a.server, "failures_total", "b") > 0, what="failures counted")
    time.sleep(2)  # A's pushes fail and back off meanwhile
    b.start()
    listing = converged(a.client(), b.client(), "pp1")
    assert {v[1] for v in listing} == acked
    head = s3a.head_object(Bucket="pp1", Key="waiting", VersionId=waiting)
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-replication-status"] == "COMPLETED"


def test_kill_9_during_replication_loses_nothing(fresh_sites: tuple[Site, Site]) -> None:
    a, b = fresh_sites
    versioned_bucket("pp1", a.client(), b.client())
    acked: set[str] = set()
    for round_no in range(3):
        acked |= _write(a.client(), f"r{round_no}-", 40)
        assert a.server is not None
        a.server.stop(signal.SIGKILL)
        a.start()
    listing = converged(a.client(), b.client(), "pp1")
    assert {v[1] for v in listing} == acked


def test_drift_repair_sends_what_the_queue_missed(tmp_path: Path) -> None:
    """Versions written while the target did not list the bucket (as after a lost queue)
    reach it through the periodic comparison of both listings, after a restart that writes
    nothing (what the pusher learnt of the target before it is kept)."""
    port_a, port_b = free_port(), free_port()
    b = Site("b", site_config(tmp_path, "b", 2, port_b, {}), port_b)
    endpoint = {"b": f"http://127.0.0.1:{port_b}"}
    a = Site("a", site_config(tmp_path, "a", 1, port_a, endpoint, '["other"]'), port_a)
    b.start()
    a.start()
    try:
        check = [*stratum_command(), "config", "check", str(a.config), "--targets"]
        done = subprocess.run(check, capture_output=True, text=True, timeout=60)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "b: endpoint and keys: OK\n" in done.stdout
        assert "b: bucket other: FAILED: GET" in done.stdout and "NoSuchBucket" in done.stdout
        b.client().create_bucket(Bucket="other")
        done = subprocess.run(check, capture_output=True, text=True, timeout=60)
        assert "b: bucket other: versioning is never enabled, not Enabled" in done.stdout
        versioned_bucket("other", a.client())
        b.client().put_bucket_versioning(
            Bucket="other", VersioningConfiguration={"Status": "Enabled"}
        )
        # a push the target answers with the id it was sent: it keeps ids
        sent = a.client().put_object(Bucket="other", Key="k", Body=b"z")["VersionId"]
        wait_for(
            lambda: b.client().head_object(Bucket="other", Key="k")["VersionId"] == sent,
            what="the first push",
        )
        versioned_bucket("drift", a.client(), b.client())
        missed = {
            a.client().put_object(Bucket="drift", Key=f"old{i}", Body=b"x")["VersionId"]
            for i in range(5)
        }
        missed.add(a.client().delete_object(Bucket="drift", Key="old0")["VersionId"])
        assert a.server is not None
        a.server.stop()
        site_config(tmp_path, "a", 1, port_a, endpoint, '["*"]', 'compare_interval = "1s"\n')
        a.start()
        s3a, s3b = a.client(), b.client()
        wait_for(
            lambda: {v[1] for v in version_listing(s3b, "drift")} == missed,
            timeout=30,
            what="the missed versions on the target",
        )
        assert version_listing(s3a, "drift") == version_listing(s3b, "drift")
        status = replication_status(a)
        assert re.search(
            r"last full comparison: .*, \d+ versions compared, \d+ sent again", status
        ), status
    finally:
        for site in (a, b):
            if site.server is not None and site.server.process.poll() is None:
                site.server.stop()
