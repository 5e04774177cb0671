"""``stratum recover-metadata`` on a real server with six hot disks: lose the LMDB store and
every backup of it, rebuild from the shard headers and segment records alone, and read every
object back byte for byte with its metadata."""

from __future__ import annotations

import hashlib
import random
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.server.conftest import RunningServer, start_server, stratum_command
from tests.server.faultload import (
    KiB,
    Layout,
    MiB,
    client_config,
    list_all,
    stop_cleanly,
    write_config,
)


@dataclass(frozen=True)
class Stored:
    data: bytes
    etag: str
    content_type: str
    metadata: dict[str, str]
    parts: int = 0


def lose_metadata(layout: Layout) -> None:
    """Remove the metadata store and every backup of it: only the disks are left."""
    shutil.rmtree(layout.data_dir / "meta")
    for disk in layout.disks:
        for backup in disk.glob("meta-backup*"):
            shutil.rmtree(backup)


def run_recover(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*stratum_command(), "recover-metadata", "--config", str(config), *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _populate(s3: Any, rng: random.Random) -> tuple[dict[tuple[str, str], Stored], list[str]]:
    """Objects of both layouts (some overwritten, some deleted), a multipart upload and one
    left in progress; returns what must read back and the keys that must stay deleted."""
    stored: dict[tuple[str, str], Stored] = {}
    sizes = [0, 1, 4 * KiB, 128 * KiB, 128 * KiB + 1, 700 * KiB, 3 * MiB + 5]
    for bucket in ("media", "notes"):
        s3.create_bucket(Bucket=bucket)
        for i, size in enumerate(sizes):
            key = f"dir/{i:02d}-{size}"
            for version in range(2 if i % 3 == 0 else 1):  # overwritten ones leave garbage
                data = rng.randbytes(size)
                meta = {"index": str(i), "version": str(version)}
                ctype = f"application/x-test-{i}"
                etag = s3.put_object(
                    Bucket=bucket, Key=key, Body=data, ContentType=ctype, Metadata=meta
                )["ETag"].strip('"')
            stored[bucket, key] = Stored(data, etag, ctype, meta)
    gone = []
    for key in ("large-deleted", "small-deleted"):
        size = 600 * KiB if key.startswith("large") else 2 * KiB
        s3.put_object(Bucket="media", Key=key, Body=rng.randbytes(size))
        s3.delete_object(Bucket="media", Key=key)
        gone.append(key)
    parts = [rng.randbytes(5 * MiB), rng.randbytes(300 * KiB)]
    upload = s3.create_multipart_upload(
        Bucket="media", Key="movie.mp4", ContentType="video/mp4", Metadata={"take": "3"}
    )["UploadId"]
    done = [
        {
            "PartNumber": n,
            "ETag": s3.upload_part(
                Bucket="media", Key="movie.mp4", UploadId=upload, PartNumber=n, Body=part
            )["ETag"],
        }
        for n, part in enumerate(parts, start=1)
    ]
    etag = s3.complete_multipart_upload(
        Bucket="media", Key="movie.mp4", UploadId=upload, MultipartUpload={"Parts": done}
    )["ETag"].strip('"')
    stored["media", "movie.mp4"] = Stored(b"".join(parts), etag, "video/mp4", {"take": "3"}, 2)
    # ACLs: the bucket's (its configuration record), a PUT's and an upload's (their headers)
    s3.put_bucket_acl(Bucket="notes", ACL="public-read")
    s3.put_object(Bucket="notes", Key="public", Body=b"for all", ACL="public-read")
    stored["notes", "public"] = Stored(
        b"for all", hashlib.md5(b"for all").hexdigest(), "binary/octet-stream", {}
    )
    shared = s3.create_multipart_upload(Bucket="media", Key="shared", ACL="authenticated-read")
    tag = s3.upload_part(
        Bucket="media", Key="shared", UploadId=shared["UploadId"], PartNumber=1, Body=b"s" * 10
    )["ETag"]
    etag = s3.complete_multipart_upload(
        Bucket="media",
        Key="shared",
        UploadId=shared["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": tag}]},
    )["ETag"].strip('"')
    stored["media", "shared"] = Stored(b"s" * 10, etag, "binary/octet-stream", {})
    pending = s3.create_multipart_upload(Bucket="notes", Key="pending")["UploadId"]
    s3.upload_part(Bucket="notes", Key="pending", UploadId=pending, PartNumber=1, Body=b"p" * 99)
    return stored, gone


def _check(server: RunningServer, stored: dict[tuple[str, str], Stored]) -> list[str]:
    s3 = server.client(**client_config())
    problems = []
    listed = {(b, k): v for b in ("media", "notes") for k, v in list_all(s3, b).items()}
    for (bucket, key), want in sorted(stored.items()):
        resp = s3.get_object(Bucket=bucket, Key=key)
        data = resp["Body"].read()
        if data != want.data:
            problems.append(f"{bucket}/{key}: {len(data)} bytes differ from {len(want.data)}")
        got = (resp["ETag"].strip('"'), resp["ContentType"], resp["Metadata"])
        if got != (want.etag, want.content_type, want.metadata):
            problems.append(f"{bucket}/{key}: {got} != {want}")
        if listed.get((bucket, key)) != (len(want.data), want.etag):
            problems.append(f"{bucket}/{key}: listed as {listed.get((bucket, key))}")
        if want.parts:
            head = s3.head_object(Bucket=bucket, Key=key, PartNumber=2)
            if head.get("PartsCount") != want.parts:
                problems.append(f"{bucket}/{key}: PartsCount {head.get('PartsCount')}")
    acls = {
        "bucket notes": s3.get_bucket_acl(Bucket="notes")["Grants"],
        "notes/public": s3.get_object_acl(Bucket="notes", Key="public")["Grants"],
        "media/shared": s3.get_object_acl(Bucket="media", Key="shared")["Grants"],
    }
    groups = {
        name: [g["Grantee"].get("URI", "").rpartition("/")[2] for g in grants]
        for name, grants in acls.items()
    }
    if groups != {
        "bucket notes": ["AllUsers", ""],
        "notes/public": ["AllUsers", ""],
        "media/shared": ["AuthenticatedUsers", ""],
    }:
        problems.append(f"ACLs not as set: {groups}")
    extra = sorted(set(listed) - set(stored))
    if extra:
        problems.append(f"listed but not expected: {extra}")
    return problems


def test_recover_metadata_from_the_disks_alone(tmp_path: Path) -> None:
    rng = random.Random(2026)
    layout = write_config(tmp_path)
    server = start_server(layout.data_dir, config=layout.config)
    try:
        s3 = server.client(**client_config())
        stored, gone = _populate(s3, rng)
        refused = run_recover(layout.config, "--dry-run")
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "seg/.lock" in refused.stderr and "Stop the server" in refused.stderr
    finally:
        stop_cleanly(server)

    lose_metadata(layout)
    result = run_recover(layout.config)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No metadata backup found" in result.stdout
    assert "uploads in progress (or aborted) dropped (1)" in result.stdout
    assert "except uploads in progress" in result.stdout
    moved = sorted(p.name for p in layout.data_dir.iterdir() if p.name.startswith("meta"))
    assert moved == ["meta"], moved

    server = start_server(layout.data_dir, config=layout.config)
    try:
        s3 = server.client(**client_config())
        problems = _check(server, stored)
        assert not problems, "\n".join(problems)
        # Deleted objects stay deleted: a large one's shard files are gone, a small one's
        # records were freed in place (their bytes read as zeros).
        assert gone == ["large-deleted", "small-deleted"]
        assert not set(gone) & set(list_all(s3, "media"))
        print(f"{len(stored)} objects read back byte for byte after recovery")
    finally:
        stop_cleanly(server)
