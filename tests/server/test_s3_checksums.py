"""Checksums of multipart objects and GetObjectAttributes against a real server, with boto3:
COMPOSITE and FULL_OBJECT checksums as AWS computes them, their ChecksumType, a part's own
value on a partNumber read, BadDigest and InvalidPart where AWS answers them."""

from __future__ import annotations

import base64
import hashlib
import zlib
from typing import Any

import pytest
from botocore.exceptions import ClientError

from stratum.s3.checksums import checksum_of
from tests.server.test_s3_objects import error_of

MIB = 1024 * 1024


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def crc32(data: bytes) -> str:
    return b64(zlib.crc32(data).to_bytes(4, "big"))


def upload(
    s3: Any, bucket: str, key: str, parts: list[bytes], algorithm: str, kind: str | None = None
) -> tuple[str, list[dict[str, Any]]]:
    extra = {"ChecksumType": kind} if kind else {}
    upload_id = s3.create_multipart_upload(
        Bucket=bucket, Key=key, ChecksumAlgorithm=algorithm, **extra
    )["UploadId"]
    done = []
    for number, data in enumerate(parts, start=1):
        answer = s3.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=data,
            ChecksumAlgorithm=algorithm,
        )
        element = "Checksum" + algorithm
        done.append({"PartNumber": number, "ETag": answer["ETag"], element: answer[element]})
    return upload_id, done


def test_composite_sha256(s3: Any, bucket: str) -> None:
    parts = [b"a" * (5 * MIB), b"b" * 1000]
    upload_id, done = upload(s3, bucket, "mp", parts, "SHA256")
    digests = [hashlib.sha256(p).digest() for p in parts]
    want = b64(hashlib.sha256(b"".join(digests)).digest()) + "-2"
    with pytest.raises(ClientError) as caught:  # a value the object does not have
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="mp",
            UploadId=upload_id,
            ChecksumSHA256=b64(hashlib.sha256(b"other").digest()) + "-2",
            MultipartUpload={"Parts": done},
        )
    assert error_of(caught) == (400, "BadDigest")
    wrong_part = [dict(done[0], ChecksumSHA256=b64(hashlib.sha256(b"x").digest())), done[1]]
    with pytest.raises(ClientError) as caught:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="mp", UploadId=upload_id, MultipartUpload={"Parts": wrong_part}
        )
    assert error_of(caught) == (400, "InvalidPart")
    answer = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="mp",
        UploadId=upload_id,
        ChecksumSHA256=want,
        MultipartUpload={"Parts": done},
    )
    assert (answer["ChecksumSHA256"], answer["ChecksumType"]) == (want, "COMPOSITE")
    head = s3.head_object(Bucket=bucket, Key="mp", ChecksumMode="ENABLED")
    assert (head["ChecksumSHA256"], head["ChecksumType"]) == (want, "COMPOSITE")
    assert "ChecksumSHA256" not in s3.head_object(Bucket=bucket, Key="mp")
    for number, data in enumerate(parts, start=1):
        got = s3.get_object(Bucket=bucket, Key="mp", PartNumber=number, ChecksumMode="ENABLED")
        assert got["Body"].read() == data
        assert got["ChecksumSHA256"] == b64(hashlib.sha256(data).digest())
        assert got["ChecksumType"] == "COMPOSITE"
    attrs = s3.get_object_attributes(
        Bucket=bucket, Key="mp", ObjectAttributes=["Checksum", "ObjectParts", "ObjectSize"]
    )
    assert attrs["Checksum"] == {"ChecksumSHA256": want, "ChecksumType": "COMPOSITE"}
    assert attrs["ObjectSize"] == sum(map(len, parts))
    listed = attrs["ObjectParts"]
    assert (listed["TotalPartsCount"], listed["IsTruncated"]) == (2, False)
    assert [(p["PartNumber"], p["Size"], p["ChecksumSHA256"]) for p in listed["Parts"]] == [
        (n, len(d), b64(hashlib.sha256(d).digest())) for n, d in enumerate(parts, start=1)
    ]


def test_full_object_crc32(s3: Any, bucket: str) -> None:
    parts = [b"x" * (5 * MIB), b"y" * 12345]
    upload_id, done = upload(s3, bucket, "full", parts, "CRC32", "FULL_OBJECT")
    want = crc32(b"".join(parts))
    answer = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="full",
        UploadId=upload_id,
        ChecksumCRC32=want,
        ChecksumType="FULL_OBJECT",
        MultipartUpload={"Parts": done},
    )
    assert (answer["ChecksumCRC32"], answer["ChecksumType"]) == (want, "FULL_OBJECT")
    head = s3.head_object(Bucket=bucket, Key="full", ChecksumMode="ENABLED")
    assert (head["ChecksumCRC32"], head["ChecksumType"]) == (want, "FULL_OBJECT")


def test_crc64nvme_multipart_defaults_to_full_object(s3: Any, bucket: str) -> None:
    data = b"crc64 nvme part" * 70
    upload_id = s3.create_multipart_upload(
        Bucket=bucket, Key="nvme", ChecksumAlgorithm="CRC64NVME"
    )["UploadId"]
    part_value = checksum_of("crc64nvme", data)
    etag = s3.upload_part(
        Bucket=bucket,
        Key="nvme",
        UploadId=upload_id,
        PartNumber=1,
        Body=data,
        ChecksumCRC64NVME=part_value,
    )["ETag"]
    answer = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="nvme",
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )
    assert (answer["ChecksumCRC64NVME"], answer["ChecksumType"]) == (part_value, "FULL_OBJECT")


def test_mismatched_checksum_type_is_refused(s3: Any, bucket: str) -> None:
    upload_id, done = upload(s3, bucket, "t", [b"z" * 10], "CRC32")  # COMPOSITE by default
    with pytest.raises(ClientError) as caught:
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="t",
            UploadId=upload_id,
            ChecksumType="FULL_OBJECT",
            MultipartUpload={"Parts": done},
        )
    assert error_of(caught) == (400, "InvalidRequest")


def test_malformed_checksum_on_put_is_bad_digest(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as caught:
        s3.put_object(Bucket=bucket, Key="k", Body=b"data", ChecksumSHA256="bad")
    assert error_of(caught) == (400, "BadDigest")
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"data", ChecksumAlgorithm="SHA1")
    assert put["ChecksumType"] == "FULL_OBJECT"


def test_object_attributes_of_plain_and_versioned_objects(s3: Any, bucket: str) -> None:
    put = s3.put_object(Bucket=bucket, Key="plain", Body=b"foo")
    every = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]
    attrs = s3.get_object_attributes(Bucket=bucket, Key="plain", ObjectAttributes=every)
    assert attrs["ETag"] == put["ETag"].strip('"')
    assert (attrs["ObjectSize"], attrs["StorageClass"]) == (3, "STANDARD")
    assert "ObjectParts" not in attrs and "VersionId" not in attrs
    only_size = s3.get_object_attributes(
        Bucket=bucket, Key="plain", ObjectAttributes=["ObjectSize"]
    )
    assert "ETag" not in only_size and only_size["ObjectSize"] == 3
    with pytest.raises(ClientError) as caught:
        s3.get_object_attributes(Bucket=bucket, Key="plain", ObjectAttributes=["Colour"])
    assert error_of(caught) == (400, "InvalidArgument")
    with pytest.raises(ClientError) as caught:
        s3.get_object_attributes(Bucket=bucket, Key="missing", ObjectAttributes=every)
    assert error_of(caught) == (404, "NoSuchKey")

    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket=bucket, Key="v", Body=b"one")["VersionId"]
    s3.put_object(Bucket=bucket, Key="v", Body=b"second")
    old = s3.get_object_attributes(
        Bucket=bucket, Key="v", VersionId=first, ObjectAttributes=["ObjectSize"]
    )
    assert (old["VersionId"], old["ObjectSize"]) == (first, 3)
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
            s3.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])


def test_object_parts_are_paged(s3: Any, bucket: str) -> None:
    parts = [b"p" * (5 * MIB)] * 3 + [b"last"]
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="paged")["UploadId"]
    done = [
        {
            "PartNumber": n,
            "ETag": s3.upload_part(
                Bucket=bucket, Key="paged", UploadId=upload_id, PartNumber=n, Body=data
            )["ETag"],
        }
        for n, data in enumerate(parts, start=1)
    ]
    s3.complete_multipart_upload(
        Bucket=bucket, Key="paged", UploadId=upload_id, MultipartUpload={"Parts": done}
    )
    page = s3.get_object_attributes(
        Bucket=bucket, Key="paged", ObjectAttributes=["ObjectParts"], MaxParts=2, PartNumberMarker=1
    )["ObjectParts"]
    assert (page["TotalPartsCount"], page["PartNumberMarker"], page["MaxParts"]) == (4, 1, 2)
    assert (page["IsTruncated"], page["NextPartNumberMarker"]) == (True, 3)
    assert [(p["PartNumber"], p["Size"]) for p in page["Parts"]] == [(2, 5 * MIB), (3, 5 * MIB)]
    rest = s3.get_object_attributes(
        Bucket=bucket, Key="paged", ObjectAttributes=["ObjectParts"], PartNumberMarker=3
    )["ObjectParts"]
    assert rest["IsTruncated"] is False
    assert [(p["PartNumber"], p["Size"]) for p in rest["Parts"]] == [(4, 4)]
