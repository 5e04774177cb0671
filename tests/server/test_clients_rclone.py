"""rclone (Debian's package) against a real server, as an ``s3`` remote with ``provider = Other``.

Tests that list run against each remote of :class:`tests.server.clients.Rclone`: ListObjects v1
(rclone's default for generic S3), ListObjectsV2, and ListObjectsV2 with ``encoding-type=url``.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest

from tests.server.clients import (
    RCLONE_V1,
    RCLONE_V2,
    RCLONE_V2_URL,
    TREE_NAMES,
    MiB,
    Rclone,
    assert_same_tree,
    make_tree,
    md5_hex,
    read_tree,
    unique_bucket,
    write_random,
)
from tests.server.conftest import RunningServer


@pytest.fixture
def rclone(server: RunningServer, tmp_path: Path) -> Rclone:
    return Rclone(server, tmp_path / "home")


@pytest.fixture(
    params=[RCLONE_V1, RCLONE_V2, RCLONE_V2_URL], ids=["listv1", "listv2", "listv2-urlencode"]
)
def remote(request: pytest.FixtureRequest) -> str:
    return str(request.param)


LIST_OPERATION = {
    RCLONE_V1: "ListObjects",
    RCLONE_V2: "ListObjectsV2",
    RCLONE_V2_URL: "ListObjectsV2",
}


def md5sums(output: str) -> dict[str, str]:
    """``rclone md5sum`` output (``HASH  PATH`` lines) as path -> hash."""
    sums = {}
    for line in output.splitlines():
        digest, path = line.split("  ", 1)
        sums[path] = digest
    return sums


def test_rclone_copy_lsf_check_md5sum(
    rclone: Rclone, remote: str, bucket: str, tmp_path: Path
) -> None:
    local = tmp_path / "local"
    files = make_tree(local)
    dest = f"{remote}:{bucket}/copied"
    rclone("copy", local, dest)

    listing = rclone("lsf", "-R", dest)
    assert LIST_OPERATION[remote] in listing.operations(), listing.operations()
    everything = listing.stdout.splitlines()
    dirs = {parent.as_posix() + "/" for name in files for parent in Path(name).parents[:-1]}
    assert sorted(everything) == sorted(set(files) | dirs)

    top = rclone("lsf", dest).stdout.splitlines()  # one level: a delimiter listing
    assert sorted(top) == sorted({n.split("/", 1)[0] + ("/" if "/" in n else "") for n in files})

    rclone("check", local, dest)
    sums = md5sums(rclone("md5sum", dest).stdout)
    assert sums == {name: md5_hex(data) for name, data in files.items()}


def test_rclone_sync_delete_rmdir_purge(
    rclone: Rclone, remote: str, s3: Any, tmp_path: Path
) -> None:
    name = unique_bucket("rclone-sync")
    local = tmp_path / "local"
    make_tree(local)
    rclone("sync", local, f"{remote}:{name}/tree")  # creates the bucket too
    rclone("check", local, f"{remote}:{name}/tree")

    (local / "readme.txt").write_bytes(b"a new readme, of another length\n")
    (local / "symbols" / "plus+sign & amp=equals.txt").unlink()
    (local / "added dir").mkdir()
    (local / "added dir" / "ça va.txt").write_bytes(b"oui")
    rclone("sync", local, f"{remote}:{name}/tree")
    rclone("check", local, f"{remote}:{name}/tree")
    listed = rclone("lsf", "-R", "--files-only", f"{remote}:{name}/tree").stdout.splitlines()
    assert sorted(listed) == sorted(read_tree(local))

    rclone("delete", f"{remote}:{name}/tree/dir one")
    listed = rclone("lsf", "-R", "--files-only", f"{remote}:{name}").stdout.splitlines()
    assert sorted(listed) == sorted(f"tree/{k}" for k in read_tree(local) if "dir one" not in k)

    # rmdir refuses a bucket that still holds objects, purge removes objects and bucket.
    refused = rclone("rmdir", f"{remote}:{name}", check=False)
    assert refused.returncode != 0, refused.describe()
    rclone("purge", f"{remote}:{name}")
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]

    empty = unique_bucket("rclone-rmdir")
    rclone("mkdir", f"{remote}:{empty}")
    assert f"{empty}/" in rclone("lsf", f"{remote}:").stdout.splitlines()
    rclone("rmdir", f"{remote}:{empty}")
    assert empty not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_rclone_copyto_multipart_check_md5sum(
    rclone: Rclone, bucket: str, s3: Any, tmp_path: Path
) -> None:
    """12 MiB with a 5 MiB cutoff and chunk size: three parts, then check and md5sum."""
    local = tmp_path / "up"
    data = write_random(local / "big file.bin", 12 * MiB, seed=7)
    dest = f"{RCLONE_V1}:{bucket}/big/big file.bin"
    upload = rclone(
        "copyto", "--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M", local / "big file.bin", dest
    )
    ops = upload.operations()
    assert "CreateMultipartUpload" in ops, ops
    assert ops.count("UploadPart") == 3, ops
    assert "CompleteMultipartUpload" in ops, ops
    head = s3.head_object(Bucket=bucket, Key="big/big file.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].strip('"').endswith("-3"), head["ETag"]

    rclone("check", local, f"{RCLONE_V1}:{bucket}/big")
    sums = md5sums(rclone("md5sum", f"{RCLONE_V1}:{bucket}/big").stdout)
    assert sums == {"big file.bin": md5_hex(data)}

    back = tmp_path / "down" / "big file.bin"
    rclone("copyto", dest, back)
    assert md5_hex(back.read_bytes()) == md5_hex(data)


def _remote_mtime(rclone: Rclone, path: str) -> dt.datetime:
    """Modification time of one object as rclone sees it (``lsf --format t``)."""
    out = rclone("lsf", "--format", "t", "--files-only", path).stdout.strip()
    return dt.datetime.strptime(out, "%Y-%m-%d %H:%M:%S")


def test_rclone_modtime_update_by_copy_object(
    rclone: Rclone, bucket: str, s3: Any, tmp_path: Path
) -> None:
    """Same content, new mtime: rclone rewrites the metadata with CopyObject onto itself."""
    local = tmp_path / "local"
    local.mkdir()
    (local / "note.txt").write_bytes(b"unchanged content\n")
    first = dt.datetime(2021, 3, 4, 5, 6, 7, tzinfo=dt.UTC).timestamp()
    os.utime(local / "note.txt", (first, first))
    remote_dir = f"{RCLONE_V1}:{bucket}/notes"
    rclone("sync", local, remote_dir)
    assert _remote_mtime(rclone, f"{remote_dir}/note.txt") == dt.datetime(2021, 3, 4, 5, 6, 7)
    etag = s3.head_object(Bucket=bucket, Key="notes/note.txt")["ETag"]

    later = dt.datetime(2022, 8, 9, 10, 11, 12, tzinfo=dt.UTC).timestamp()
    os.utime(local / "note.txt", (later, later))
    update = rclone("sync", local, remote_dir)
    ops = update.operations()
    assert "CopyObject" in ops, ops
    assert "PutObject" not in ops, ops
    assert _remote_mtime(rclone, f"{remote_dir}/note.txt") == dt.datetime(2022, 8, 9, 10, 11, 12)
    head = s3.head_object(Bucket=bucket, Key="notes/note.txt")
    assert float(head["Metadata"]["mtime"]) == pytest.approx(later)
    assert head["ETag"] == etag
    assert s3.get_object(Bucket=bucket, Key="notes/note.txt")["Body"].read() == (
        b"unchanged content\n"
    )

    rclone("touch", "-t", "2020-01-02T03:04:05", f"{remote_dir}/note.txt")
    assert _remote_mtime(rclone, f"{remote_dir}/note.txt") == dt.datetime(2020, 1, 2, 3, 4, 5)
    rclone("sync", f"{remote_dir}", tmp_path / "back")
    restored = (tmp_path / "back" / "note.txt").stat().st_mtime
    assert restored == dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.UTC).timestamp()


def test_new_user_backup_restore(rclone: Rclone, s3: Any, tmp_path: Path) -> None:
    """What someone trying Stratum does first: back a folder up, restore it elsewhere."""
    documents = tmp_path / "Documents"
    files = make_tree(documents, TREE_NAMES, seed="backup")
    mtimes = {name: int((documents / name).stat().st_mtime) for name in files}
    name = unique_bucket("backups")
    rclone("sync", documents, f"{RCLONE_V1}:{name}/documents")
    assert name + "/" in rclone("lsf", f"{RCLONE_V1}:").stdout.splitlines()
    rclone("check", documents, f"{RCLONE_V1}:{name}/documents")

    restored = tmp_path / "Restored"
    rclone("sync", f"{RCLONE_V1}:{name}/documents", restored)
    assert_same_tree(read_tree(restored), files)
    assert {n: int((restored / n).stat().st_mtime) for n in files} == mtimes

    rclone("purge", f"{RCLONE_V1}:{name}")
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
