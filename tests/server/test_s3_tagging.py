"""Tagging against a real server, driven by boto3: x-amz-tagging on PUT, CopyObject (with
its directive) and CreateMultipartUpload, Get/Put/DeleteObjectTagging per version,
x-amz-tagging-count, bucket tag sets, AWS's limits and errors, and tags (as written and as
changed later) brought back by recover-metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.server.conftest import RunningServer, start_server
from tests.server.faultload import Layout, client_config, stop_cleanly, write_config
from tests.server.test_recover_metadata import lose_metadata, run_recover
from tests.server.test_s3_objects import error_of

MIB = 1024 * 1024


def rebuilt_from_disks(layout: Layout) -> RunningServer:
    """The metadata store and its backups lost, ``stratum recover-metadata`` run, and the
    server started again on what it rebuilt from the disks."""
    lose_metadata(layout)
    result = run_recover(layout.config)
    assert result.returncode == 0, result.stdout + result.stderr
    return start_server(layout.data_dir, config=layout.config)


def tag_set(s3: Any, bucket: str, key: str, **kw: Any) -> dict[str, str]:
    return {
        t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key=key, **kw)["TagSet"]
    }


def test_put_with_tagging_header_and_count(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="foo=bar&bar&sp%20ace=a%2Bb")
    assert tag_set(s3, bucket, "k") == {"bar": "", "foo": "bar", "sp ace": "a+b"}
    listed = s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"]
    assert [t["Key"] for t in listed] == ["bar", "foo", "sp ace"]  # sorted, as AWS answers
    head = s3.head_object(Bucket=bucket, Key="k")
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-tagging-count"] == "3"
    assert s3.get_object(Bucket=bucket, Key="k")["TagCount"] == 3
    s3.put_object(Bucket=bucket, Key="plain", Body=b"x")
    assert (
        "x-amz-tagging-count"
        not in s3.head_object(Bucket=bucket, Key="plain")["ResponseMetadata"]["HTTPHeaders"]
    )
    assert tag_set(s3, bucket, "plain") == {}


@pytest.mark.parametrize(
    "header",
    [
        "&".join(f"k{i}=v" for i in range(11)),  # 11 tags
        "k=1&k=2",  # a key twice
        "k" * 129 + "=v",
        "k=" + "v" * 257,
        "aws%3Aname=v",  # reserved prefix
    ],
)
def test_put_with_invalid_tags(s3: Any, bucket: str, header: str) -> None:
    with pytest.raises(ClientError) as caught:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging=header)
    assert error_of(caught) == (400, "InvalidTag")
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="k")


def test_copy_tagging_directive(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"data", Tagging="a=1&b=2")
    source = {"Bucket": bucket, "Key": "src"}
    s3.copy_object(Bucket=bucket, Key="copied", CopySource=source)
    assert tag_set(s3, bucket, "copied") == {"a": "1", "b": "2"}
    s3.copy_object(
        Bucket=bucket, Key="replaced", CopySource=source, TaggingDirective="REPLACE", Tagging="c=3"
    )
    assert tag_set(s3, bucket, "replaced") == {"c": "3"}
    s3.copy_object(Bucket=bucket, Key="none", CopySource=source, TaggingDirective="REPLACE")
    assert tag_set(s3, bucket, "none") == {}
    # onto itself with new metadata: the tags follow the directive too
    s3.copy_object(
        Bucket=bucket,
        Key="src",
        CopySource=source,
        MetadataDirective="REPLACE",
        Metadata={"m": "1"},
    )
    assert tag_set(s3, bucket, "src") == {"a": "1", "b": "2"}
    with pytest.raises(ClientError) as caught:
        s3.copy_object(Bucket=bucket, Key="bad", CopySource=source, TaggingDirective="MOVE")
    assert error_of(caught) == (400, "InvalidArgument")


def test_multipart_upload_tagging(s3: Any, bucket: str) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp", Tagging="kind=video")
    etag = s3.upload_part(
        Bucket=bucket, Key="mp", UploadId=upload["UploadId"], PartNumber=1, Body=b"p" * 100
    )["ETag"]
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="mp",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )
    assert tag_set(s3, bucket, "mp") == {"kind": "video"}
    with pytest.raises(ClientError) as caught:
        s3.create_multipart_upload(Bucket=bucket, Key="mp2", Tagging="k=1&k=2")
    assert error_of(caught) == (400, "InvalidTag")


def test_tags_per_version(s3: Any, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket=bucket, Key="k", Body=b"1", Tagging="v=1")["VersionId"]
    s3.put_object(Bucket=bucket, Key="k", Body=b"2", Tagging="v=2")
    assert tag_set(s3, bucket, "k") == {"v": "2"}
    answer = s3.get_object_tagging(Bucket=bucket, Key="k", VersionId=first)
    assert answer["VersionId"] == first
    assert {t["Key"]: t["Value"] for t in answer["TagSet"]} == {"v": "1"}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
            s3.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])


def test_put_and_delete_object_tagging_per_version(s3: Any, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket=bucket, Key="k", Body=b"1", Tagging="v=1")["VersionId"]
    s3.put_object(Bucket=bucket, Key="k", Body=b"2")
    answer = s3.put_object_tagging(
        Bucket=bucket,
        Key="k",
        Tagging={"TagSet": [{"Key": "b", "Value": "2"}, {"Key": "a", "Value": ""}]},
    )
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert tag_set(s3, bucket, "k") == {"a": "", "b": "2"}
    assert tag_set(s3, bucket, "k", VersionId=first) == {"v": "1"}
    s3.put_object_tagging(
        Bucket=bucket, Key="k", VersionId=first, Tagging={"TagSet": [{"Key": "old", "Value": "y"}]}
    )
    assert tag_set(s3, bucket, "k", VersionId=first) == {"old": "y"}
    head = s3.head_object(Bucket=bucket, Key="k", VersionId=first)
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-tagging-count"] == "1"
    with pytest.raises(ClientError) as caught:
        s3.put_object_tagging(
            Bucket=bucket,
            Key="k",
            Tagging={"TagSet": [{"Key": f"k{i}", "Value": ""} for i in range(11)]},
        )
    assert error_of(caught) == (400, "InvalidTag")
    assert tag_set(s3, bucket, "k") == {"a": "", "b": "2"}
    deleted = s3.delete_object_tagging(Bucket=bucket, Key="k")
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert tag_set(s3, bucket, "k") == {}
    assert tag_set(s3, bucket, "k", VersionId=first) == {"old": "y"}
    with pytest.raises(ClientError) as caught:
        s3.put_object_tagging(Bucket=bucket, Key="missing", Tagging={"TagSet": []})
    assert error_of(caught) == (404, "NoSuchKey")
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
            s3.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])


def _tag_list(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    return {"TagSet": [{"Key": k, "Value": v} for k, v in pairs]}


def test_object_tagging_limits_and_count(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="w=1")
    most = [("k" * 128, "v" * 256), *((f"t{i}", "") for i in range(9))]  # 10 at the limits
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging=_tag_list(most))
    assert tag_set(s3, bucket, "k") == dict(most)
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["TagCount"] == 10
    s3.delete_object_tagging(Bucket=bucket, Key="k")
    headers = s3.get_object(Bucket=bucket, Key="k")["ResponseMetadata"]["HTTPHeaders"]
    assert "x-amz-tagging-count" not in headers
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging=_tag_list([("one", "1")]))
    head = s3.head_object(Bucket=bucket, Key="k")
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-tagging-count"] == "1"


@pytest.mark.parametrize(
    "pairs",
    [
        [(f"k{i}", "v") for i in range(11)],  # 11 tags
        [("k", "1"), ("k", "2")],  # a key twice
        [("k" * 129, "v")],
        [("k", "v" * 257)],
        [("aws:name", "v")],  # reserved prefix
    ],
)
def test_put_object_tagging_refuses_invalid_tags(
    s3: Any, bucket: str, pairs: list[tuple[str, str]]
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="kept=yes")
    with pytest.raises(ClientError) as caught:
        s3.put_object_tagging(Bucket=bucket, Key="k", Tagging=_tag_list(pairs))
    assert error_of(caught) == (400, "InvalidTag")
    assert tag_set(s3, bucket, "k") == {"kept": "yes"}


def test_object_tagging_of_a_missing_version(s3: Any, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    version = s3.put_object(Bucket=bucket, Key="k", Body=b"x")["VersionId"]
    missing = "0" * (len(version) - 1) + "1"
    for call in (
        lambda: s3.put_object_tagging(
            Bucket=bucket, Key="k", VersionId=missing, Tagging=_tag_list([("a", "b")])
        ),
        lambda: s3.delete_object_tagging(Bucket=bucket, Key="k", VersionId=missing),
    ):
        with pytest.raises(ClientError) as caught:
            call()
        assert error_of(caught) == (404, "NoSuchVersion")
    # a delete marker has no tags to change, as AWS answers
    s3.delete_object(Bucket=bucket, Key="k")
    with pytest.raises(ClientError) as caught:
        s3.put_object_tagging(Bucket=bucket, Key="k", Tagging=_tag_list([("a", "b")]))
    assert error_of(caught) == (404, "NoSuchKey")
    assert tag_set(s3, bucket, "k", VersionId=version) == {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
            s3.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])


def test_bucket_tagging(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as caught:
        s3.get_bucket_tagging(Bucket=bucket)
    assert error_of(caught) == (404, "NoSuchTagSet")
    tags = [{"Key": f"k{i:02d}", "Value": f"v{i}"} for i in range(50)]
    answer = s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": list(reversed(tags))})
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == tags
    too_many = [*tags, {"Key": "k50", "Value": ""}]
    with pytest.raises(ClientError) as caught:
        s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": too_many})
    assert error_of(caught) == (400, "InvalidTag")
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == tags
    answer = s3.delete_bucket_tagging(Bucket=bucket)
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as caught:
        s3.get_bucket_tagging(Bucket=bucket)
    assert error_of(caught) == (404, "NoSuchTagSet")


def test_tags_survive_recover_metadata(tmp_path: Path) -> None:
    """Tags written with a version are in its on-disk header (or multipart manifest), and a
    bucket's tag set in its configuration record: recovery from the disks brings them back."""
    layout = write_config(tmp_path)
    server = start_server(layout.data_dir, config=layout.config)
    try:
        s3 = server.client(**client_config())
        s3.create_bucket(Bucket="tagged")
        s3.put_bucket_tagging(
            Bucket="tagged", Tagging={"TagSet": [{"Key": "team", "Value": "ops"}]}
        )
        s3.put_object(Bucket="tagged", Key="small", Body=b"s" * 100, Tagging="size=small")
        s3.put_object(Bucket="tagged", Key="large", Body=b"l" * MIB, Tagging="size=large")
        upload = s3.create_multipart_upload(Bucket="tagged", Key="mp", Tagging="size=multi")
        etag = s3.upload_part(
            Bucket="tagged", Key="mp", UploadId=upload["UploadId"], PartNumber=1, Body=b"m"
        )["ETag"]
        s3.complete_multipart_upload(
            Bucket="tagged",
            Key="mp",
            UploadId=upload["UploadId"],
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
        )
        s3.put_object(Bucket="tagged", Key="changed", Body=b"c", Tagging="at=write")
        s3.put_object_tagging(
            Bucket="tagged", Key="changed", Tagging={"TagSet": [{"Key": "at", "Value": "change"}]}
        )
        s3.put_object(Bucket="tagged", Key="cleared", Body=b"c", Tagging="at=write")
        s3.delete_object_tagging(Bucket="tagged", Key="cleared")
    finally:
        stop_cleanly(server)
    server = rebuilt_from_disks(layout)
    try:
        s3 = server.client(**client_config())
        assert tag_set(s3, "tagged", "small") == {"size": "small"}
        assert tag_set(s3, "tagged", "large") == {"size": "large"}
        assert tag_set(s3, "tagged", "mp") == {"size": "multi"}
        assert tag_set(s3, "tagged", "changed") == {"at": "change"}
        assert tag_set(s3, "tagged", "cleared") == {}
        assert s3.get_bucket_tagging(Bucket="tagged")["TagSet"] == [{"Key": "team", "Value": "ops"}]
    finally:
        stop_cleanly(server)
