"""awscli (v1, pip-installed in the venv) against a real server: ``aws s3`` and ``aws s3api``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.server.clients import (
    TREE_NAMES,
    AwsCli,
    MiB,
    assert_same_tree,
    make_tree,
    md5_hex,
    read_tree,
    tree_content,
    unique_bucket,
    write_random,
)
from tests.server.conftest import RunningServer


@pytest.fixture
def aws(server: RunningServer, tmp_path: Path) -> AwsCli:
    return AwsCli(server, tmp_path / "home")


def all_keys(s3: Any, bucket: str) -> dict[str, int]:
    """Key -> size of every object in ``bucket`` (via boto3, independent of the tool)."""
    keys: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
    return keys


# ---- aws s3 ---------------------------------------------------------------------------------


def test_awscli_mb_ls_rb(aws: AwsCli, s3: Any) -> None:
    name = unique_bucket("awscli-mb")
    assert f"make_bucket: {name}" in aws("s3", "mb", f"s3://{name}").stdout
    listed = [line.split(maxsplit=2)[2] for line in aws("s3", "ls").stdout.splitlines() if line]
    assert name in listed

    s3.put_object(Bucket=name, Key="keep me.txt", Body=b"keep me")
    refused = aws("s3", "rb", f"s3://{name}", check=False)
    assert refused.returncode != 0, "rb of a non-empty bucket must fail\n" + refused.describe()
    assert "BucketNotEmpty" in refused.stderr, refused.describe()
    assert s3.get_object(Bucket=name, Key="keep me.txt")["Body"].read() == b"keep me"

    assert f"remove_bucket: {name}" in aws("s3", "rb", f"s3://{name}", "--force").stdout
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_awscli_cp_small_up_down_and_server_side(
    aws: AwsCli, bucket: str, s3: Any, tmp_path: Path
) -> None:
    src = tmp_path / "in" / "small file ü.bin"
    data = write_random(src, 300_000, seed=1)
    aws("s3", "cp", src, f"s3://{bucket}/docs/small file ü.bin")
    head = s3.head_object(Bucket=bucket, Key="docs/small file ü.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"] == f'"{md5_hex(data)}"'

    aws("s3", "cp", f"s3://{bucket}/docs/small file ü.bin", f"s3://{bucket}/copy/of it.bin")
    dest = tmp_path / "out" / "copy.bin"
    aws("s3", "cp", f"s3://{bucket}/copy/of it.bin", dest)
    assert dest.read_bytes() == data


def test_awscli_cp_large_download_ranged(aws: AwsCli, bucket: str, s3: Any, tmp_path: Path) -> None:
    """A 12 MiB object (one PutObject) comes down through awscli's parallel ranged GETs."""
    data = write_random(tmp_path / "src.bin", 12 * MiB, seed=2)
    s3.put_object(Bucket=bucket, Key="large.bin", Body=data)
    dest = tmp_path / "large.bin"
    result = aws("s3", "cp", f"s3://{bucket}/large.bin", dest)
    assert dest.read_bytes() == data, result.describe()
    ranged = [line for line in result.server_log if "GetObject" in line and " 206 " in line]
    assert len(ranged) >= 2, "expected ranged GETs (206):\n" + "".join(result.server_log)


def test_awscli_cp_multipart_upload_round_trip(
    aws: AwsCli, bucket: str, s3: Any, tmp_path: Path
) -> None:
    """12 MiB is above awscli's 8 MiB threshold: CreateMultipartUpload, 2 parts, Complete."""
    src = tmp_path / "twelve.bin"
    data = write_random(src, 12 * MiB, seed=3)
    upload = aws("s3", "cp", src, f"s3://{bucket}/big/twelve.bin")
    ops = upload.operations()
    assert ops.count("UploadPart") == 2, ops
    assert "CompleteMultipartUpload" in ops, ops
    head = s3.head_object(Bucket=bucket, Key="big/twelve.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].strip('"').endswith("-2"), head["ETag"]

    dest = tmp_path / "back.bin"
    aws("s3", "cp", f"s3://{bucket}/big/twelve.bin", dest)
    assert md5_hex(dest.read_bytes()) == md5_hex(data)


def test_awscli_sync_tree_round_trip(aws: AwsCli, bucket: str, s3: Any, tmp_path: Path) -> None:
    local = tmp_path / "local"
    files = make_tree(local)
    aws("s3", "sync", local, f"s3://{bucket}/backup")
    assert all_keys(s3, bucket) == {f"backup/{k}": len(v) for k, v in files.items()}

    again = aws("s3", "sync", local, f"s3://{bucket}/backup")
    assert again.stdout.strip() == "", "second sync should have nothing to do\n" + again.describe()

    restored = tmp_path / "restored"
    aws("s3", "sync", f"s3://{bucket}/backup", restored)
    assert_same_tree(read_tree(restored), files)

    # Change the source, sync --delete, restore into the same folder, compare again.
    (local / "readme.txt").write_bytes(b"rewritten, and of another size\n")
    (local / "ünïcödé" / "emoji 🎉 party.txt").unlink()
    (local / "new dir" / "nested").mkdir(parents=True)
    (local / "new dir" / "nested" / "née.txt").write_bytes(b"new")
    aws("s3", "sync", "--delete", local, f"s3://{bucket}/backup")
    aws("s3", "sync", "--delete", f"s3://{bucket}/backup", restored)
    assert_same_tree(read_tree(restored), read_tree(local))


def put_tree(s3: Any, bucket: str, files: dict[str, bytes]) -> None:
    for key, data in files.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)


def test_awscli_ls_recursive_and_not(aws: AwsCli, bucket: str, s3: Any) -> None:
    files = {name: tree_content(name) for name in TREE_NAMES}
    put_tree(s3, bucket, files)

    top = aws("s3", "ls", f"s3://{bucket}").stdout.splitlines()
    # "                           PRE dir one/" and "2024-01-01 00:00:00  123 readme.txt"
    prefixes = sorted(line.split("PRE ", 1)[1] for line in top if " PRE " in line)
    top_files = sorted(line.split(maxsplit=3)[3] for line in top if " PRE " not in line)
    assert prefixes == sorted({k.split("/")[0] + "/" for k in files if "/" in k}), top
    assert top_files == sorted(k for k in files if "/" not in k), top

    listed = {}
    for line in aws("s3", "ls", "--recursive", f"s3://{bucket}").stdout.splitlines():
        _date, _time, size, key = line.split(maxsplit=3)
        listed[key] = int(size)
    assert listed == {k: len(v) for k, v in files.items()}


def test_awscli_rm_recursive(aws: AwsCli, bucket: str, s3: Any) -> None:
    files = {name: tree_content(name) for name in TREE_NAMES}
    put_tree(s3, bucket, files)
    aws("s3", "rm", "--recursive", f"s3://{bucket}/dir one/")
    assert set(all_keys(s3, bucket)) == {k for k in files if not k.startswith("dir one/")}
    aws("s3", "rm", "--recursive", f"s3://{bucket}")
    assert all_keys(s3, bucket) == {}


# ---- aws s3api ------------------------------------------------------------------------------


def test_awscli_s3api_put_head_get_object(aws: AwsCli, bucket: str, tmp_path: Path) -> None:
    body = write_random(tmp_path / "body.bin", 70_000, seed=4)
    put = aws.api(
        "put-object",
        "--bucket",
        bucket,
        "--key",
        "ä/obj.json",
        "--body",
        tmp_path / "body.bin",
        "--content-type",
        "application/json",
        "--cache-control",
        "max-age=60",
        "--metadata",
        "colour=blue,owner=stratum",
    )
    assert put["ETag"] == f'"{md5_hex(body)}"'

    head = aws.api("head-object", "--bucket", bucket, "--key", "ä/obj.json")
    assert head["ContentLength"] == len(body)
    assert head["ETag"] == put["ETag"]
    assert head["ContentType"] == "application/json"
    assert head["CacheControl"] == "max-age=60"
    assert head["Metadata"] == {"colour": "blue", "owner": "stratum"}
    assert head["LastModified"]

    out = tmp_path / "got.bin"
    got = aws.api("get-object", "--bucket", bucket, "--key", "ä/obj.json", out)
    assert out.read_bytes() == body
    assert got["ContentLength"] == len(body)
    assert got["Metadata"] == {"colour": "blue", "owner": "stratum"}

    part = tmp_path / "range.bin"
    got = aws.api(
        "get-object", "--bucket", bucket, "--key", "ä/obj.json", "--range", "bytes=10-19", part
    )
    assert part.read_bytes() == body[10:20]
    assert got["ContentRange"] == f"bytes 10-19/{len(body)}"


LIST_KEYS = ("a/1", "a/2", "a/b/3", "b/1", "c", "d e", "ü/1", "z")


def _put_keys(s3: Any, bucket: str) -> None:
    for key in LIST_KEYS:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())


def test_awscli_s3api_list_objects_v1(aws: AwsCli, bucket: str, s3: Any) -> None:
    _put_keys(s3, bucket)
    # --page-size 2 makes awscli follow NextMarker (set because of the delimiter) page by page.
    grouped = aws.api("list-objects", "--bucket", bucket, "--delimiter", "/", "--page-size", "2")
    assert [p["Prefix"] for p in grouped["CommonPrefixes"]] == ["a/", "b/", "ü/"]
    assert [o["Key"] for o in grouped["Contents"]] == ["c", "d e", "z"]

    # Without a delimiter, the next Marker is the last key of the page.
    flat = aws.api("list-objects", "--bucket", bucket, "--page-size", "3")
    assert [o["Key"] for o in flat["Contents"]] == sorted(LIST_KEYS)
    assert all(o["Size"] == len(o["Key"].encode()) for o in flat["Contents"])
    assert all(o["ETag"] == f'"{md5_hex(o["Key"].encode())}"' for o in flat["Contents"])


def test_awscli_s3api_list_objects_v2(aws: AwsCli, bucket: str, s3: Any) -> None:
    _put_keys(s3, bucket)
    first = aws.api("list-objects-v2", "--bucket", bucket, "--max-items", "5", "--page-size", "2")
    assert [o["Key"] for o in first["Contents"]] == sorted(LIST_KEYS)[:5]
    rest = aws.api("list-objects-v2", "--bucket", bucket, "--starting-token", first["NextToken"])
    assert [o["Key"] for o in rest["Contents"]] == sorted(LIST_KEYS)[5:]

    # One raw response (no client-side pagination) to see KeyCount and StartAfter at work.
    grouped = aws.api(
        "list-objects-v2",
        "--bucket",
        bucket,
        "--prefix",
        "a/",
        "--delimiter",
        "/",
        "--start-after",
        "a/1",
        "--no-paginate",
    )
    assert [o["Key"] for o in grouped["Contents"]] == ["a/2"]
    assert [p["Prefix"] for p in grouped["CommonPrefixes"]] == ["a/b/"]
    assert grouped["KeyCount"] == 2
    assert grouped["IsTruncated"] is False


def test_awscli_s3api_delete_objects(aws: AwsCli, bucket: str, s3: Any, tmp_path: Path) -> None:
    _put_keys(s3, bucket)
    request = {
        "Objects": [{"Key": "a/1"}, {"Key": "d e"}, {"Key": "ü/1"}, {"Key": "never-existed"}],
        "Quiet": False,
    }
    spec = tmp_path / "delete.json"
    spec.write_text(json.dumps(request))
    result = aws.api("delete-objects", "--bucket", bucket, "--delete", f"file://{spec}")
    # AWS reports a key that did not exist as deleted too.
    assert sorted(d["Key"] for d in result["Deleted"]) == sorted(
        ["a/1", "d e", "ü/1", "never-existed"]
    )
    assert not result.get("Errors")
    assert sorted(all_keys(s3, bucket)) == sorted(set(LIST_KEYS) - {"a/1", "d e", "ü/1"})


def test_awscli_s3api_copy_object(aws: AwsCli, bucket: str, s3: Any) -> None:
    s3.put_object(
        Bucket=bucket,
        Key="src dir/ünï source.txt",
        Body=b"copy me",
        ContentType="text/plain",
        Metadata={"origin": "here"},
    )
    copied = aws.api(
        "copy-object",
        "--bucket",
        bucket,
        "--key",
        "dst/kept.txt",
        "--copy-source",
        f"{bucket}/src dir/ünï source.txt",
    )
    assert copied["CopyObjectResult"]["ETag"] == f'"{md5_hex(b"copy me")}"'
    kept = s3.head_object(Bucket=bucket, Key="dst/kept.txt")
    assert kept["Metadata"] == {"origin": "here"}
    assert kept["ContentType"] == "text/plain"

    aws.api(
        "copy-object",
        "--bucket",
        bucket,
        "--key",
        "dst/replaced.txt",
        "--copy-source",
        f"{bucket}/src dir/ünï source.txt",
        "--metadata-directive",
        "REPLACE",
        "--metadata",
        "origin=elsewhere",
        "--content-type",
        "application/x-test",
    )
    replaced = s3.head_object(Bucket=bucket, Key="dst/replaced.txt")
    assert replaced["Metadata"] == {"origin": "elsewhere"}
    assert replaced["ContentType"] == "application/x-test"
    body = s3.get_object(Bucket=bucket, Key="dst/replaced.txt")["Body"].read()
    assert body == b"copy me"


def test_awscli_s3api_get_bucket_location(aws: AwsCli, bucket: str) -> None:
    location = aws.api("get-bucket-location", "--bucket", bucket)
    # AWS answers an empty LocationConstraint for us-east-1, which awscli shows as null.
    assert location == {"LocationConstraint": None} or location == {
        "LocationConstraint": "us-east-1"
    }, location
