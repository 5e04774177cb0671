"""s3cmd (pip-installed in the venv) against a real server: path style, plain HTTP, SigV4."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.server.clients import (
    MiB,
    S3cmd,
    assert_same_tree,
    make_tree,
    md5_hex,
    read_tree,
    unique_bucket,
    write_random,
)
from tests.server.conftest import RunningServer


@pytest.fixture
def s3cmd(server: RunningServer, tmp_path: Path) -> S3cmd:
    return S3cmd(server, tmp_path / "home")


def listed_urls(output: str) -> list[str]:
    """The ``s3://...`` column of ``s3cmd ls``/``la`` output, ``DIR`` lines included."""
    return [line.split("  s3://", 1)[1] for line in output.splitlines() if "  s3://" in line]


def info_fields(output: str) -> dict[str, str]:
    """``s3cmd info`` lines (``   Name:   value``) as a dict."""
    fields = {}
    for line in output.splitlines()[1:]:
        name, sep, value = line.strip().partition(":")
        if sep:
            fields[name.strip()] = value.strip()
    return fields


def test_s3cmd_mb_ls_info_rb(s3cmd: S3cmd, s3: Any, tmp_path: Path) -> None:
    name = unique_bucket("s3cmd-mb")
    s3cmd("mb", f"s3://{name}")
    assert name in listed_urls(s3cmd("ls").stdout)

    info = info_fields(s3cmd("info", f"s3://{name}").stdout)
    assert info["Location"] == "us-east-1", info
    assert "FULL_CONTROL" in info["ACL"], info

    (tmp_path / "x.txt").write_bytes(b"x")
    s3cmd("put", tmp_path / "x.txt", f"s3://{name}/x.txt")
    refused = s3cmd("rb", f"s3://{name}", check=False)
    assert refused.returncode != 0, refused.describe()
    assert "BucketNotEmpty" in refused.stderr, refused.describe()

    s3cmd("rb", "--recursive", "--force", f"s3://{name}")
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_s3cmd_put_get_ls_la_info_del(s3cmd: S3cmd, bucket: str, s3: Any, tmp_path: Path) -> None:
    up = tmp_path / "up"
    one = write_random(up / "ünï file.bin", 200_000, seed=11)
    two = write_random(up / "second+file (2).txt", 1_000, seed=12)
    s3cmd("put", up / "ünï file.bin", up / "second+file (2).txt", f"s3://{bucket}/docs/")
    s3cmd("put", up / "second+file (2).txt", f"s3://{bucket}/top.txt")

    top = listed_urls(s3cmd("ls", f"s3://{bucket}").stdout)
    assert sorted(top) == [f"{bucket}/docs/", f"{bucket}/top.txt"]
    docs = s3cmd("ls", f"s3://{bucket}/docs/").stdout
    sizes = {line.split("  s3://")[1]: int(line.split()[2]) for line in docs.splitlines()}
    assert sizes == {
        f"{bucket}/docs/second+file (2).txt": len(two),
        f"{bucket}/docs/ünï file.bin": len(one),
    }
    everything = [u for u in listed_urls(s3cmd("la", "--recursive").stdout) if u.startswith(bucket)]
    assert sorted(everything) == sorted(
        [f"{bucket}/docs/ünï file.bin", f"{bucket}/docs/second+file (2).txt", f"{bucket}/top.txt"]
    )

    info = info_fields(s3cmd("info", f"s3://{bucket}/docs/ünï file.bin").stdout)
    assert info["File size"] == str(len(one))
    assert info["MD5 sum"] == md5_hex(one)

    down = tmp_path / "down"
    (down / "docs").mkdir(parents=True)
    s3cmd("get", f"s3://{bucket}/docs/ünï file.bin", down / "one.bin")
    s3cmd("get", "--recursive", f"s3://{bucket}/docs/", f"{down}/docs/")
    assert (down / "one.bin").read_bytes() == one
    assert_same_tree(read_tree(down / "docs"), {"ünï file.bin": one, "second+file (2).txt": two})

    s3cmd("del", f"s3://{bucket}/top.txt", f"s3://{bucket}/docs/second+file (2).txt")
    remaining = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert remaining == ["docs/ünï file.bin"]


def test_s3cmd_sync_tree_round_trip(s3cmd: S3cmd, bucket: str, tmp_path: Path) -> None:
    local = tmp_path / "local"
    files = make_tree(local)
    s3cmd("sync", f"{local}/", f"s3://{bucket}/backup/")
    again = s3cmd("sync", f"{local}/", f"s3://{bucket}/backup/")
    assert "upload:" not in again.stdout, "second sync should upload nothing\n" + again.describe()

    restored = tmp_path / "restored"
    s3cmd("sync", f"s3://{bucket}/backup/", f"{restored}/")
    assert_same_tree(read_tree(restored), files)

    (local / "readme.txt").write_bytes(b"changed, and longer than before\n")
    (local / "dir one" / "file with spaces.txt").unlink()
    s3cmd("sync", "--delete-removed", f"{local}/", f"s3://{bucket}/backup/")
    s3cmd("sync", "--delete-removed", f"s3://{bucket}/backup/", f"{restored}/")
    assert_same_tree(read_tree(restored), read_tree(local))


def test_s3cmd_put_get_multipart(s3cmd: S3cmd, bucket: str, s3: Any, tmp_path: Path) -> None:
    """12 MiB with 5 MiB chunks: s3cmd uploads three parts and checks the result on get."""
    data = write_random(tmp_path / "big.bin", 12 * MiB, seed=13)
    upload = s3cmd(
        "put", "--multipart-chunk-size-mb=5", tmp_path / "big.bin", f"s3://{bucket}/big.bin"
    )
    ops = upload.operations()
    assert ops.count("UploadPart") == 3, ops
    assert "CompleteMultipartUpload" in ops, ops
    assert s3.head_object(Bucket=bucket, Key="big.bin")["ContentLength"] == len(data)

    s3cmd("get", f"s3://{bucket}/big.bin", tmp_path / "back.bin")
    assert md5_hex((tmp_path / "back.bin").read_bytes()) == md5_hex(data)
