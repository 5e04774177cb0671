"""A multipart object keeps its checksum (algorithm, COMPOSITE or FULL_OBJECT type, value and
each part's value) when it replicates, to a second Stratum and to a plain S3 store (moto)."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig

from tests.server.replication_sites import (
    Site,
    moto_server,
    one_way_source,
    running_sites,
    versioned_bucket,
    wait_for,
)
from tests.server.test_s3_checksums import upload

MIB = 1 << 20
PART = os.urandom(5 * MIB)  # S3's smallest part but the last
ATTRIBUTES = ["ETag", "Checksum", "ObjectParts", "ObjectSize"]


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Site, Site]]:
    yield from running_sites(tmp_path_factory.mktemp("sites"))


def upload_by_transfer(s3: Any, bucket: str, key: str, algorithm: str) -> str:
    """A two-part upload as boto3's upload_fileobj makes it (parts carry their checksums in
    a trailer); the version id."""
    config = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
    body = io.BytesIO(PART + b"tail of " + key.encode())
    extra = {"ChecksumAlgorithm": algorithm}
    s3.upload_fileobj(body, bucket, key, ExtraArgs=extra, Config=config)
    return str(s3.head_object(Bucket=bucket, Key=key)["VersionId"])


def upload_by_parts(s3: Any, bucket: str, key: str, algorithm: str, kind: str, count: int) -> str:
    """An upload of ``count`` parts (the last a small one) with CreateMultipartUpload's
    ChecksumType ``kind``; the version id."""
    bodies = [PART] * (count - 1) + [b"last part of " + key.encode()]
    upload_id, parts = upload(s3, bucket, key, bodies, algorithm, kind)
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
    )
    return str(done["VersionId"])


def shown(s3: Any, bucket: str, key: str, version: str, *, parts: bool = True) -> dict[str, Any]:
    """What a client sees of a version's checksums: HEAD with ChecksumMode ENABLED (of the
    object and of its first part), GetObjectAttributes (with ObjectParts if ``parts``)."""
    head = s3.head_object(Bucket=bucket, Key=key, VersionId=version, ChecksumMode="ENABLED")
    first = s3.head_object(
        Bucket=bucket, Key=key, VersionId=version, ChecksumMode="ENABLED", PartNumber=1
    )
    wanted = ATTRIBUTES if parts else [a for a in ATTRIBUTES if a != "ObjectParts"]
    attributes = s3.get_object_attributes(
        Bucket=bucket, Key=key, VersionId=version, ObjectAttributes=wanted
    )
    out = {
        "head": {k: v for k, v in head.items() if k.startswith("Checksum") or k == "ETag"},
        "part 1": {k: v for k, v in first.items() if k.startswith("Checksum")},
    }
    out["attributes"] = {k: v for k, v in attributes.items() if k in ATTRIBUTES}
    return out


CASES = [
    ("transfer", "CRC32", "COMPOSITE", 2),
    ("transfer", "SHA256", "COMPOSITE", 2),
    ("parts", "CRC32", "FULL_OBJECT", 2),
    ("parts", "CRC64NVME", "FULL_OBJECT", 2),
    ("parts", "CRC32C", "COMPOSITE", 1),
]


def _upload(s3: Any, bucket: str, key: str, how: str, algorithm: str, kind: str, n: int) -> str:
    if how == "transfer":
        return upload_by_transfer(s3, bucket, key, algorithm)
    return upload_by_parts(s3, bucket, key, algorithm, kind, n)


@pytest.mark.parametrize(("how", "algorithm", "kind", "count"), CASES)
def test_a_multipart_object_keeps_its_checksums_on_the_other_site(
    sites: tuple[Site, Site], how: str, algorithm: str, kind: str, count: int
) -> None:
    a, b = sites
    s3a, s3b = a.client(), b.client()
    bucket = f"sums-{algorithm.lower()}-{kind.lower().replace('_', '')}-{count}"
    versioned_bucket(bucket, s3a, s3b)
    version = _upload(s3a, bucket, "disk.img", how, algorithm, kind, count)
    source = shown(s3a, bucket, "disk.img", version)
    head = source["head"]
    assert head[f"Checksum{algorithm}"] and head["ChecksumType"] == kind, source
    assert source["attributes"]["ObjectParts"]["TotalPartsCount"] == count
    wait_for(
        lambda: s3b.head_object(Bucket=bucket, Key="disk.img", VersionId=version),
        what="the copy on b",
    )
    assert shown(s3b, bucket, "disk.img", version) == source


def test_multipart_checksums_replicate_to_a_plain_s3_store(tmp_path: Path) -> None:
    """moto computes the object's checksum itself from the upload's algorithm and type."""
    with moto_server() as (port, remote):
        versioned_bucket("sums", remote)
        with one_way_source(tmp_path, f"http://127.0.0.1:{port}") as source:
            s3 = source.client()
            versioned_bucket("sums", s3)
            keys = {}
            for how, algorithm, kind, count in CASES[:3]:
                key = f"{algorithm}-{kind}"
                version = _upload(s3, "sums", key, how, algorithm, kind, count)
                keys[key] = shown(s3, "sums", key, version)["head"]
            for key, head in keys.items():
                # GET: moto's HEAD leaves the "-<parts>" off a COMPOSITE value
                copy = wait_for(
                    lambda key=key: remote.get_object(
                        Bucket="sums", Key=key, ChecksumMode="ENABLED"
                    ),
                    what=f"{key} on moto",
                )
                copy["Body"].close()
                got = {k: v for k, v in copy.items() if k.startswith("Checksum") or k == "ETag"}
                assert got == head, key
