"""S3 versioning against a real server, driven by boto3: bucket versioning states, versions
made by PUT, copy and multipart completion, delete markers, deleting versions for good,
reads and copies by version id, DeleteObjects with versions and ListObjectVersions."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.server.conftest import RunningServer
from tests.server.test_s3_objects import error_of, headers_of, signed
from tests.server.versionload import every_version

MIB = 1024 * 1024
VERSION_ID = re.compile(r"[0-9a-f]{32}")
_count = 0


def nuke(s3: Any, bucket: str) -> None:
    """Remove every version and delete marker, then the bucket."""
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        doomed = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        if doomed:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed, "Quiet": True})
    s3.delete_bucket(Bucket=bucket)


def _new_bucket(s3: Any, stem: str) -> str:
    global _count
    _count += 1
    name = f"{stem}-{_count}-{id(s3) % 10000}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def vbucket(s3: Any) -> Iterator[str]:
    """A fresh bucket with versioning enabled, emptied of every version afterwards."""
    name = _new_bucket(s3, "ver")
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    yield name
    nuke(s3, name)


@pytest.fixture
def plain(s3: Any) -> Iterator[str]:
    """A fresh bucket never versioned (the tests may set it), emptied afterwards."""
    name = _new_bucket(s3, "plain")
    yield name
    nuke(s3, name)


def body(s3: Any, bucket: str, key: str, **kw: Any) -> bytes:
    return bytes(s3.get_object(Bucket=bucket, Key=key, **kw)["Body"].read())


def versions_of(
    server: RunningServer, bucket: str, page: int = 300
) -> list[tuple[str, str, bool, bool]]:
    """(key, version id, is latest, is a delete marker) of every version, in listed order
    (boto3 parses versions and delete markers into two lists: read them from the XML)."""
    return [
        (k, v, latest, marker)
        for k, v, latest, marker, _e, _s in every_version(server, bucket, page)
    ]


# --- bucket versioning ----------------------------------------------------------------------


def test_versioning_states(s3: Any, plain: str, server: RunningServer) -> None:
    assert "Status" not in s3.get_bucket_versioning(Bucket=plain)
    for status in ("Suspended", "Enabled", "Enabled", "Suspended"):
        s3.put_bucket_versioning(Bucket=plain, VersioningConfiguration={"Status": status})
        assert s3.get_bucket_versioning(Bucket=plain)["Status"] == status
    # MFA delete asked "Disabled" is what every bucket is; "Enabled" is refused, never ignored
    s3.put_bucket_versioning(
        Bucket=plain, VersioningConfiguration={"Status": "Enabled", "MFADelete": "Disabled"}
    )
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_versioning(
            Bucket=plain, VersioningConfiguration={"Status": "Enabled", "MFADelete": "Enabled"}
        )
    assert error_of(exc) == (403, "AccessDenied")
    assert "Mfa" in exc.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_versioning(
            Bucket=plain,
            VersioningConfiguration={"Status": "Enabled", "MFADelete": "Enabled"},
            MFA="123456 654321",
        )
    assert error_of(exc) == (501, "NotImplemented")
    assert s3.get_bucket_versioning(Bucket=plain)["Status"] == "Enabled"
    assert "MFADelete" not in s3.get_bucket_versioning(Bucket=plain)
    document = b"<VersioningConfiguration><Status>Off</Status></VersioningConfiguration>"
    response = signed(server, "PUT", f"/{plain}?versioning", document)
    assert response.status_code == 400 and "<Code>MalformedXML</Code>" in response.text
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_versioning(
            Bucket="no-such-bkt-v", VersioningConfiguration={"Status": "Enabled"}
        )
    assert error_of(exc) == (404, "NoSuchBucket")


# --- versions and reads by id ---------------------------------------------------------------


def test_each_put_is_a_version(s3: Any, vbucket: str, server: RunningServer) -> None:
    ids = []
    for n in range(3):
        response = s3.put_object(Bucket=vbucket, Key="k", Body=f"v{n}".encode())
        assert VERSION_ID.fullmatch(response["VersionId"])
        ids.append(response["VersionId"])
    assert len(set(ids)) == 3
    got = s3.get_object(Bucket=vbucket, Key="k")
    assert got["Body"].read() == b"v2" and got["VersionId"] == ids[2]
    for n, vid in enumerate(ids):
        assert body(s3, vbucket, "k", VersionId=vid) == f"v{n}".encode()
        assert s3.head_object(Bucket=vbucket, Key="k", VersionId=vid)["VersionId"] == vid
    assert versions_of(server, vbucket) == [
        ("k", ids[2], True, False),
        ("k", ids[1], False, False),
        ("k", ids[0], False, False),
    ]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=vbucket)["Contents"]] == ["k"]
    # an id of the right shape that names nothing, and one of a shape never given
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=vbucket, Key="k", VersionId="0" * 32)
    assert error_of(exc) == (404, "NoSuchVersion")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=vbucket, Key="k", VersionId="3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY")
    assert error_of(exc) == (400, "InvalidArgument")


def test_delete_markers(s3: Any, vbucket: str, server: RunningServer) -> None:
    first = s3.put_object(Bucket=vbucket, Key="k", Body=b"data")["VersionId"]
    deleted = s3.delete_object(Bucket=vbucket, Key="k")
    assert deleted["DeleteMarker"] is True
    marker = deleted["VersionId"]
    assert VERSION_ID.fullmatch(marker) and marker != first
    for read in (s3.get_object, s3.head_object):
        with pytest.raises(ClientError) as exc:
            read(Bucket=vbucket, Key="k")
        assert error_of(exc)[0] == 404
        headers = exc.value.response["ResponseMetadata"]["HTTPHeaders"]
        assert headers["x-amz-delete-marker"] == "true"
        assert headers["x-amz-version-id"] == marker
    for read in (s3.get_object, s3.head_object):
        with pytest.raises(ClientError) as exc:
            read(Bucket=vbucket, Key="k", VersionId=marker)
        assert error_of(exc)[0] == 405
        headers = exc.value.response["ResponseMetadata"]["HTTPHeaders"]
        assert headers["x-amz-delete-marker"] == "true"
        assert headers["x-amz-version-id"] == marker
        assert "last-modified" in headers
    assert "Contents" not in s3.list_objects_v2(Bucket=vbucket)
    assert body(s3, vbucket, "k", VersionId=first) == b"data"
    # a second DELETE stacks another marker; the bucket is not empty
    second = s3.delete_object(Bucket=vbucket, Key="k")["VersionId"]
    assert versions_of(server, vbucket) == [
        ("k", second, True, True),
        ("k", marker, False, True),
        ("k", first, False, False),
    ]
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=vbucket)
    assert error_of(exc) == (409, "BucketNotEmpty")
    # removing the markers by id brings the object back
    for vid in (second, marker):
        gone = s3.delete_object(Bucket=vbucket, Key="k", VersionId=vid)
        assert gone["DeleteMarker"] is True and gone["VersionId"] == vid
    assert body(s3, vbucket, "k") == b"data"
    # a DELETE of a key that never existed still makes a marker
    assert s3.delete_object(Bucket=vbucket, Key="never")["DeleteMarker"] is True


def test_deleting_a_version_for_good(s3: Any, vbucket: str, server: RunningServer) -> None:
    ids = [
        s3.put_object(Bucket=vbucket, Key="k", Body=bytes([n]) * 10)["VersionId"] for n in range(3)
    ]
    response = s3.delete_object(Bucket=vbucket, Key="k", VersionId=ids[1])
    assert response["VersionId"] == ids[1] and "DeleteMarker" not in response
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=vbucket, Key="k", VersionId=ids[1])
    assert error_of(exc) == (404, "NoSuchVersion")
    s3.delete_object(Bucket=vbucket, Key="k", VersionId=ids[2])  # the current one
    assert body(s3, vbucket, "k") == bytes([0]) * 10
    # deleting again, or an id that names nothing: S3 answers 204 all the same
    assert s3.delete_object(Bucket=vbucket, Key="k", VersionId=ids[2])["VersionId"] == ids[2]
    with pytest.raises(ClientError) as exc:
        s3.delete_object(Bucket=vbucket, Key="k", VersionId="not-an-id")
    assert error_of(exc) == (400, "InvalidArgument")
    s3.delete_object(Bucket=vbucket, Key="k", VersionId=ids[0])
    assert versions_of(server, vbucket) == []
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=vbucket, Key="k")
    assert error_of(exc) == (404, "NoSuchKey")


def test_objects_from_before_versioning_are_null_versions(
    s3: Any, plain: str, server: RunningServer
) -> None:
    s3.put_object(Bucket=plain, Key="old", Body=b"before")
    assert "VersionId" not in s3.get_object(Bucket=plain, Key="old")
    s3.put_bucket_versioning(Bucket=plain, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_object(Bucket=plain, Key="old")["VersionId"] == "null"
    new = s3.put_object(Bucket=plain, Key="old", Body=b"after")["VersionId"]
    assert versions_of(server, plain) == [("old", new, True, False), ("old", "null", False, False)]
    assert body(s3, plain, "old", VersionId="null") == b"before"
    s3.delete_object(Bucket=plain, Key="old", VersionId=new)
    assert body(s3, plain, "old") == b"before"
    s3.delete_object(Bucket=plain, Key="old", VersionId="null")
    assert versions_of(server, plain) == []


def test_suspended_versioning_replaces_the_null_version(
    s3: Any, vbucket: str, server: RunningServer
) -> None:
    kept = s3.put_object(Bucket=vbucket, Key="k", Body=b"kept")["VersionId"]
    s3.put_bucket_versioning(Bucket=vbucket, VersioningConfiguration={"Status": "Suspended"})
    response = s3.put_object(Bucket=vbucket, Key="k", Body=b"null 1")
    assert "VersionId" not in response  # a null version is not named
    s3.put_object(Bucket=vbucket, Key="k", Body=b"null 2")
    assert body(s3, vbucket, "k") == b"null 2"
    assert versions_of(server, vbucket) == [("k", "null", True, False), ("k", kept, False, False)]
    # a DELETE makes a null delete marker, replacing the null version
    assert s3.delete_object(Bucket=vbucket, Key="k")["DeleteMarker"] is True
    assert versions_of(server, vbucket) == [("k", "null", True, True), ("k", kept, False, False)]
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=vbucket, Key="k")
    assert exc.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"] == "true"
    s3.put_object(Bucket=vbucket, Key="k", Body=b"null 3")  # replaces the null marker
    assert versions_of(server, vbucket) == [("k", "null", True, False), ("k", kept, False, False)]
    s3.put_bucket_versioning(Bucket=vbucket, VersioningConfiguration={"Status": "Enabled"})
    again = s3.put_object(Bucket=vbucket, Key="k", Body=b"again")["VersionId"]
    assert [v[1] for v in versions_of(server, vbucket)] == [again, "null", kept]
    assert body(s3, vbucket, "k", VersionId="null") == b"null 3"


def test_a_plain_bucket_answers_about_markers_too(
    s3: Any, plain: str, server: RunningServer
) -> None:
    s3.put_object(Bucket=plain, Key="k", Body=b"x")
    response = s3.delete_object(Bucket=plain, Key="k")
    assert "DeleteMarker" not in response and "VersionId" not in response
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=plain, Key="k")
    assert exc.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"] == "false"
    assert versions_of(server, plain) == []


# --- copies and multipart uploads -----------------------------------------------------------


def test_copy_by_version(s3: Any, vbucket: str, plain: str) -> None:
    ids = [
        s3.put_object(Bucket=vbucket, Key="src", Body=f"c{n}".encode())["VersionId"]
        for n in range(2)
    ]
    for n, vid in enumerate(ids):
        copied = s3.copy_object(
            Bucket=plain,
            Key=f"to{n}",
            CopySource={"Bucket": vbucket, "Key": "src", "VersionId": vid},
        )
        assert copied["CopySourceVersionId"] == vid
        assert "VersionId" not in copied  # into a never-versioned bucket
        assert body(s3, plain, f"to{n}") == f"c{n}".encode()
    # copying an old version onto its own key restores it as a new version
    restored = s3.copy_object(
        Bucket=vbucket, Key="src", CopySource={"Bucket": vbucket, "Key": "src", "VersionId": ids[0]}
    )
    assert VERSION_ID.fullmatch(restored["VersionId"]) and restored["VersionId"] not in ids
    assert body(s3, vbucket, "src") == b"c0"
    # the same metadata copied onto itself in place stays illegal without a version id
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=vbucket, Key="src", CopySource={"Bucket": vbucket, "Key": "src"})
    assert error_of(exc) == (400, "InvalidRequest")
    marker = s3.delete_object(Bucket=vbucket, Key="src")["VersionId"]
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=plain, Key="x", CopySource={"Bucket": vbucket, "Key": "src"})
    assert error_of(exc) == (404, "NoSuchKey")
    with pytest.raises(ClientError) as exc:
        s3.copy_object(
            Bucket=plain, Key="x", CopySource={"Bucket": vbucket, "Key": "src", "VersionId": marker}
        )
    assert error_of(exc) == (400, "InvalidRequest")
    with pytest.raises(ClientError) as exc:
        s3.copy_object(
            Bucket=plain,
            Key="x",
            CopySource={"Bucket": vbucket, "Key": "src", "VersionId": "0" * 32},
        )
    assert error_of(exc) == (404, "NoSuchVersion")


def test_multipart_completion_and_part_copy_by_version(s3: Any, vbucket: str) -> None:
    old = s3.put_object(Bucket=vbucket, Key="src", Body=b"A" * (5 * MIB))["VersionId"]
    s3.put_object(Bucket=vbucket, Key="src", Body=b"B" * (5 * MIB))
    upload = s3.create_multipart_upload(Bucket=vbucket, Key="mp")["UploadId"]
    part = s3.upload_part_copy(
        Bucket=vbucket,
        Key="mp",
        UploadId=upload,
        PartNumber=1,
        CopySource={"Bucket": vbucket, "Key": "src", "VersionId": old},
    )
    assert part["CopySourceVersionId"] == old
    tail = s3.upload_part(Bucket=vbucket, Key="mp", UploadId=upload, PartNumber=2, Body=b"end")
    done = s3.complete_multipart_upload(
        Bucket=vbucket,
        Key="mp",
        UploadId=upload,
        MultipartUpload={
            "Parts": [
                {"PartNumber": 1, "ETag": part["CopyPartResult"]["ETag"]},
                {"PartNumber": 2, "ETag": tail["ETag"]},
            ]
        },
    )
    assert VERSION_ID.fullmatch(done["VersionId"])
    got = body(s3, vbucket, "mp", VersionId=done["VersionId"])
    assert got == b"A" * (5 * MIB) + b"end"


# --- DeleteObjects ----------------------------------------------------------------------------


def test_delete_objects_with_versions(s3: Any, vbucket: str, server: RunningServer) -> None:
    a = [s3.put_object(Bucket=vbucket, Key="a", Body=b"a")["VersionId"] for _ in range(2)]
    response = s3.delete_objects(
        Bucket=vbucket,
        Delete={
            "Objects": [
                {"Key": "a", "VersionId": a[0]},
                {"Key": "b"},  # never written: a marker all the same
                {"Key": "a"},
                {"Key": "c", "VersionId": "bogus"},
            ]
        },
    )
    deleted = {(d["Key"], d.get("VersionId")): d for d in response["Deleted"]}
    assert "DeleteMarker" not in deleted[("a", a[0])]
    marker_b = deleted[("b", None)]
    assert marker_b["DeleteMarker"] is True and VERSION_ID.fullmatch(
        marker_b["DeleteMarkerVersionId"]
    )
    marker_a = deleted[("a", None)]["DeleteMarkerVersionId"]
    assert [(e["Key"], e["Code"], e["VersionId"]) for e in response["Errors"]] == [
        ("c", "NoSuchVersion", "bogus")
    ]
    removed = s3.delete_objects(
        Bucket=vbucket, Delete={"Objects": [{"Key": "a", "VersionId": marker_a}]}
    )["Deleted"][0]
    assert removed["DeleteMarker"] is True and removed["DeleteMarkerVersionId"] == marker_a
    assert body(s3, vbucket, "a") == b"a"
    assert versions_of(server, vbucket) == [
        ("a", a[1], True, False),
        ("b", marker_b["DeleteMarkerVersionId"], True, True),
    ]


# --- ListObjectVersions -----------------------------------------------------------------------


def test_list_object_versions_pages_prefixes_and_encoding(
    s3: Any, vbucket: str, server: RunningServer
) -> None:
    made: dict[str, list[str]] = {}
    for key in ("a", "dir/x", "dir/y", "é b", "z"):
        for _ in range(3):
            made.setdefault(key, []).append(
                s3.put_object(Bucket=vbucket, Key=key, Body=b"x")["VersionId"]
            )
    made["z"].append(s3.delete_object(Bucket=vbucket, Key="z")["VersionId"])
    every = versions_of(server, vbucket, 2)
    assert every == [
        (key, vid, n == 0, key == "z" and n == 0)
        for key in sorted(made, key=lambda k: k.encode())
        for n, vid in enumerate(reversed(made[key]))
    ]
    rolled = s3.list_object_versions(Bucket=vbucket, Delimiter="/", MaxKeys=4)
    assert [v["Key"] for v in rolled["Versions"]] == ["a"] * 3
    assert rolled["CommonPrefixes"] == [{"Prefix": "dir/"}]
    assert rolled["IsTruncated"] is True and rolled["NextKeyMarker"] == "dir/"
    rest = s3.list_object_versions(Bucket=vbucket, Delimiter="/", KeyMarker="dir/")
    assert [v["Key"] for v in rest["Versions"]] == ["z"] * 3 + ["é b"] * 3  # UTF-8 order
    under = s3.list_object_versions(Bucket=vbucket, Prefix="dir/", EncodingType="url")
    assert {v["Key"] for v in under["Versions"]} == {"dir/x", "dir/y"}
    middle = s3.list_object_versions(
        Bucket=vbucket, KeyMarker="dir/x", VersionIdMarker=made["dir/x"][2], MaxKeys=3
    )
    assert [(v["Key"], v["VersionId"], v["IsLatest"]) for v in middle["Versions"]] == [
        ("dir/x", made["dir/x"][1], False),
        ("dir/x", made["dir/x"][0], False),
        ("dir/y", made["dir/y"][2], True),
    ]
    with pytest.raises(ClientError) as exc:
        s3.list_object_versions(Bucket=vbucket, KeyMarker="a", VersionIdMarker="nope")
    assert error_of(exc) == (400, "InvalidArgument")


def test_versions_survive_a_restart(tmp_path: Any) -> None:
    from tests.server.conftest import start_server

    server = start_server(tmp_path / "data")
    try:
        s3 = server.client()
        s3.create_bucket(Bucket="keep")
        s3.put_bucket_versioning(Bucket="keep", VersioningConfiguration={"Status": "Enabled"})
        ids = [
            s3.put_object(Bucket="keep", Key="k", Body=f"{n}".encode())["VersionId"]
            for n in range(3)
        ]
        marker = s3.delete_object(Bucket="keep", Key="k")["VersionId"]
        assert server.stop() == 0
        server = start_server(tmp_path / "data")
        s3 = server.client()
        assert s3.get_bucket_versioning(Bucket="keep")["Status"] == "Enabled"
        assert [v[1] for v in versions_of(server, "keep")] == [marker, *reversed(ids)]
        assert (
            headers_of(s3.head_object(Bucket="keep", Key="k", VersionId=ids[0]))["x-amz-version-id"]
            == ids[0]
        )
    finally:
        server.stop()
