"""Lost disks, bitrot and unusable disk paths, on a server with six hot disks (4 + 2).

Small objects (at most 128 KiB) live in segment records replicated on three disks; larger
ones are erasure coded into six shard files. Losing any two disks, or damaging up to two
shards / two replicas of every object, must leave every object readable byte for byte.
``STRATUM_FAULT_SEED`` replays a run (the seed is in every failure message).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import (
    ACCESS_KEY,
    SECRET_KEY,
    RunningServer,
    start_server,
    stratum_command,
)
from tests.server.faultload import (
    PART_SIZES,
    SMALL_THRESHOLD,
    KiB,
    Layout,
    MiB,
    client_config,
    fault_seed,
    flip_bytes,
    list_all,
    placement_problems,
    print_server_log,
    segment_records,
    shard_files,
    stop_cleanly,
    wait_for_log,
    write_config,
)

BUCKET = "faults"


@dataclass(frozen=True)
class Stored:
    data: bytes
    etag: str


def _sizes(rng: random.Random) -> list[int]:
    """~40 sizes: edge cases around the small-object threshold and stripes, then random."""
    small = [0, 1, SMALL_THRESHOLD - 1, SMALL_THRESHOLD]
    small += [rng.randint(1, SMALL_THRESHOLD) for _ in range(16)]
    large = [SMALL_THRESHOLD + 1, 1 * MiB, 1 * MiB + 1, 4 * MiB]
    large += [rng.randint(300 * KiB, 4 * MiB) for _ in range(14)]
    return small + large


def populate(s3: Any, rng: random.Random, prefix: str = "obj") -> dict[str, Stored]:
    """Put ~40 objects (a few overwritten once) and one multipart upload; return them."""
    objects: dict[str, Stored] = {}
    for i, size in enumerate(_sizes(rng)):
        key = f"{prefix}-{i:02d}-{size}"
        for _ in range(2 if i % 5 == 0 else 1):  # some keys are overwritten: garbage around
            data = rng.randbytes(size)
            etag = s3.put_object(Bucket=BUCKET, Key=key, Body=data)["ETag"].strip('"')
            assert etag == hashlib.md5(data).hexdigest()
        objects[key] = Stored(data, etag)
    key = f"{prefix}-multipart"
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    parts = [rng.randbytes(size) for size in PART_SIZES]
    done = [
        {
            "PartNumber": n,
            "ETag": s3.upload_part(
                Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=n, Body=part
            )["ETag"],
        }
        for n, part in enumerate(parts, start=1)
    ]
    etag = s3.complete_multipart_upload(
        Bucket=BUCKET, Key=key, UploadId=upload, MultipartUpload={"Parts": done}
    )["ETag"].strip('"')
    objects[key] = Stored(b"".join(parts), etag)
    return objects


def check_all(
    server: RunningServer, objects: dict[str, Stored], rng: random.Random | None = None
) -> list[str]:
    """Read every object (and, with ``rng``, a random range of each); list what is wrong.

    boto3 also checks the CRC32 the server stored at upload (x-amz-checksum-mode).
    """
    s3 = server.client(**client_config())
    problems = []
    listed = list_all(s3, BUCKET)
    for key, want in sorted(objects.items()):
        try:
            resp = s3.get_object(Bucket=BUCKET, Key=key)
            data = resp["Body"].read()
        except Exception as exc:
            problems.append(f"{key} ({len(want.data)} B): GET failed: {exc!r}")
            continue
        if data != want.data:
            problems.append(f"{key}: {len(data)} bytes differ from the {len(want.data)} stored")
        if resp["ETag"].strip('"') != want.etag:
            problems.append(f"{key}: ETag {resp['ETag']} instead of {want.etag}")
        if listed.get(key) != (len(want.data), want.etag):
            problems.append(f"{key}: listed as {listed.get(key)}")
        if rng is not None and len(want.data) > 1:
            a = rng.randrange(len(want.data) - 1)
            b = rng.randrange(a + 1, len(want.data))
            try:
                got = s3.get_object(Bucket=BUCKET, Key=key, Range=f"bytes={a}-{b}")
                got = got["Body"].read()
            except Exception as exc:
                problems.append(f"{key}: GET bytes={a}-{b} failed: {exc!r}")
                continue
            if got != want.data[a : b + 1]:
                problems.append(f"{key}: range {a}-{b} differs")
    extra = sorted(set(listed) - set(objects))
    if extra:
        problems.append(f"listed but never written: {extra}")
    return problems


def _disk_id(disk: Path) -> str | None:
    ident = disk / "stratum-disk.json"
    return json.loads(ident.read_text())["disk_id"] if ident.exists() else None


class _Servers:
    """The servers a test starts on one layout, one after the other. On the way out the last
    one is stopped (and must stop cleanly), or, if the test failed, its log is printed."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.last: RunningServer | None = None

    def start(self) -> RunningServer:
        self.last = start_server(self.layout.data_dir, config=self.layout.config)
        return self.last

    def __enter__(self) -> _Servers:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if self.last is None:
            return
        if kind is None:
            stop_cleanly(self.last)
            return
        print_server_log(self.last)
        self.last.stop()


# ---- losing two disks -----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("how", ["removed", "recreated-empty", "removed-while-running"])
def test_two_lost_disks_lose_no_object(tmp_path: Path, how: str) -> None:
    seed = fault_seed()
    rng = random.Random(seed)
    layout = write_config(tmp_path)
    with _Servers(layout) as servers:
        server = servers.start()
        s3 = server.client(**client_config())
        s3.create_bucket(Bucket=BUCKET)
        objects = populate(s3, rng)
        assert not placement_problems(layout.disks)
        lost = rng.sample(layout.disks, 2)
        old_ids = {d.name: _disk_id(d) for d in lost}
        where = f"seed {seed}, {how}, lost {[d.name for d in lost]}"

        if how == "removed-while-running":
            for disk in lost:
                shutil.rmtree(disk)
            problems = check_all(server, objects, rng)
            assert not problems, f"{where}, before restart:\n" + "\n".join(problems)
            # Writes with two disks gone: whatever is acknowledged must read back.
            acked, refused = _put_some(s3, rng, objects, "while-gone")
            problems = check_all(server, objects)
            assert not problems, f"{where}, after writes:\n" + "\n".join(problems)
            print(f"{where}: {acked} PUTs acknowledged, {refused} refused with two disks gone")
            stop_cleanly(server)
        else:
            stop_cleanly(server)
            for disk in lost:
                shutil.rmtree(disk)
                if how == "recreated-empty":
                    disk.mkdir()
        try:
            server = servers.start()
        except RuntimeError as exc:  # refusing to start is fine if it names the path
            assert how != "recreated-empty", f"{where}: {exc}"
            assert any(str(d) in str(exc) for d in lost), f"{where}: {exc}"
            print(f"{where}: the server refuses to start: {exc}")
            for disk in lost:
                disk.mkdir()
            server = servers.start()
        new_ids = {d.name: _disk_id(d) for d in lost}
        print(f"{where}: started; lost disks now have ids {new_ids} (were {old_ids})")
        s3 = server.client(**client_config())
        problems = check_all(server, objects, rng)
        assert not problems, f"{where}:\n" + "\n".join(problems)
        # New writes land on the fresh disks; all of it survives another restart.
        acked, refused = _put_some(s3, rng, objects, "after")
        assert refused == 0, f"{where}: PUTs failed after the restart"
        stop_cleanly(server)
        server = servers.start()
        problems = check_all(server, objects)
        assert not problems, f"{where}, after a second restart:\n" + "\n".join(problems)
        print(f"{where}: {len(objects)} objects read back, none lost")


def _put_some(
    s3: Any, rng: random.Random, objects: dict[str, Stored], prefix: str
) -> tuple[int, int]:
    acked = refused = 0
    for i, size in enumerate([0, 3 * KiB, SMALL_THRESHOLD, 700 * KiB, 2 * MiB + 5]):
        key = f"{prefix}-{i}"
        data = rng.randbytes(size)
        try:
            etag = s3.put_object(Bucket=BUCKET, Key=key, Body=data)["ETag"].strip('"')
        except Exception:
            refused += 1
            continue
        objects[key] = Stored(data, etag)
        acked += 1
    return acked, refused


def _stratum(layout: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*stratum_command(), *args, "--config", str(layout.config)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "STRATUM_ACCESS_KEY": ACCESS_KEY, "STRATUM_SECRET_KEY": SECRET_KEY},
    )


@pytest.mark.slow
def test_scrub_now_refills_disks_replaced_while_running(tmp_path: Path) -> None:
    seed = fault_seed()
    rng = random.Random(seed)
    layout = write_config(tmp_path)
    # One process: the disk probes this test times itself against are that process's.
    text = layout.config.read_text().replace("[server]\n", "[server]\nworkers = 1\n", 1)
    layout.config.write_text(text)
    with _Servers(layout) as servers:
        server = servers.start()
        s3 = server.client(**client_config())
        s3.create_bucket(Bucket=BUCKET)
        objects = populate(s3, rng)
        lost = rng.sample(layout.disks, 2)
        where = f"seed {seed}, replaced {[d.name for d in lost]}"
        ids = {d: _disk_id(d) for d in lost}
        shards = {d: len(list(d.glob("ec/*/*.shard"))) for d in lost}
        for disk in lost:
            shutil.rmtree(disk)
        # Swapped right after a probe saw them gone: the next probe is seconds away, and the
        # scrub must not depend on it to find the new disks.
        wait_for_log(server, "offline: directory missing", len(lost))
        for disk in lost:
            disk.mkdir()
        done = _stratum(layout, "scrub", "--now")
        assert done.returncode == 0, f"{where}:\n{done.stdout}{done.stderr}"
        assert "0 could not be repaired" in done.stdout, done.stdout
        for disk in lost:
            assert _disk_id(disk) == ids[disk], f"{where}: {disk} took a new identity"
            assert len(list(disk.glob("ec/*/*.shard"))) == shards[disk], f"{where}: {disk}"
        problems = check_all(server, objects, rng)
        assert not problems, f"{where}:\n" + "\n".join(problems)
        # Every shard and replica of every object is back (dead replicas of overwritten
        # objects are not, nor need to be: placement_problems would count them).
        again = _stratum(layout, "scrub", "--now")
        assert again.returncode == 0 and ": 0 damaged," in again.stdout, again.stdout
        status = json.loads(_stratum(layout, "disk", "list", "--json").stdout)
        assert {d["state"] for d in status} == {"online"}, status
        print(f"{where}: {done.stdout.strip()}")


# ---- bitrot ---------------------------------------------------------------------------------


def inject_bitrot(disks: tuple[Path, ...], rng: random.Random) -> dict[str, int]:
    """Damage up to two shard files of every erasure-coded volume (anywhere in the file) and
    up to two of the three replicas of every small object (inside the payload)."""
    counts = dict.fromkeys(
        ["ec volumes", "small volumes", "shard files", "segment replicas", "bytes flipped"], 0
    )
    for _volume, paths in sorted(shard_files(disks).items()):
        counts["ec volumes"] += 1
        for path in rng.sample(paths, min(len(paths), rng.choice([1, 2, 2]))):
            flipped = flip_bytes(path, rng, rng.randint(1, 8))
            counts["shard files"] += flipped > 0
            counts["bytes flipped"] += flipped
    replicas: dict[str, list[Any]] = {}
    for record in segment_records(disks):
        replicas.setdefault(record.volume_id, []).append(record)
    for _volume, records in sorted(replicas.items()):
        records = [r for r in records if r.payload_size]
        if not records:
            continue
        assert len(records) <= 3
        counts["small volumes"] += 1
        for r in rng.sample(records, min(len(records), rng.choice([1, 2, 2]))):
            end = r.payload_offset + r.payload_size
            flipped = flip_bytes(r.path, rng, rng.randint(1, 4), r.payload_offset, end)
            counts["segment replicas"] += flipped > 0
            counts["bytes flipped"] += flipped
    return counts


@pytest.mark.slow
@pytest.mark.parametrize("when", ["stopped", "running"])
def test_bitrot_in_two_shards_or_replicas_is_survived(tmp_path: Path, when: str) -> None:
    seed = fault_seed()
    rng = random.Random(seed)
    layout = write_config(tmp_path)
    with _Servers(layout) as servers:
        server = servers.start()
        s3 = server.client(**client_config())
        s3.create_bucket(Bucket=BUCKET)
        objects = populate(s3, rng)
        assert not placement_problems(layout.disks)
        if when == "stopped":
            stop_cleanly(server)
            counts = inject_bitrot(layout.disks, rng)
            server = servers.start()
        else:
            counts = inject_bitrot(layout.disks, rng)
        where = f"seed {seed}, bitrot while {when}: {counts}"
        problems = check_all(server, objects, rng)
        assert not problems, f"{where}:\n" + "\n".join(problems)
        problems = check_all(server, objects)  # and again: nothing cached a bad state
        assert not problems, f"{where}, second read:\n" + "\n".join(problems)
        assert counts["shard files"] >= 19 and counts["segment replicas"] >= 19, counts
        print(f"{where}: {len(objects)} objects read back, none lost")


# ---- unusable disk paths at start -----------------------------------------------------------


def _file_as_disk(layout: Any) -> Path:
    layout.disks[2].write_text("not a directory\n")
    return layout.disks[2]


def _disk_under_a_file(layout: Any) -> Path:
    blocker = layout.root / "blocker"
    blocker.write_text("a file\n")
    disks = [str(d) for d in layout.disks]
    disks[4] = str(blocker / "disk4")
    text = layout.config.read_text().replace(str(layout.disks[4]), disks[4])
    layout.config.write_text(text)
    return blocker


def _sub_dir_is_a_file(sub: str) -> Any:
    def make(layout: Any) -> Path:
        disk = layout.disks[1]
        disk.mkdir()
        (disk / sub).write_text("a file where a directory is expected\n")
        return disk / sub

    return make


def _bad_identity(layout: Any) -> Path:
    disk = layout.disks[3]
    disk.mkdir()
    (disk / "stratum-disk.json").write_text("{not json")
    return disk  # the message names the disk directory (naming the file would be better)


def _data_dir_is_a_file(layout: Any) -> Path:
    layout.data_dir.write_text("a file\n")
    return layout.data_dir


BROKEN = {
    "disk-is-a-file": _file_as_disk,
    "disk-under-a-file": _disk_under_a_file,
    "tmp-is-a-file": _sub_dir_is_a_file("tmp"),
    "ec-is-a-file": _sub_dir_is_a_file("ec"),
    "seg-is-a-file": _sub_dir_is_a_file("seg"),
    "identity-not-json": _bad_identity,
    "data-dir-is-a-file": _data_dir_is_a_file,
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_unusable_disk_path_stops_start_naming_it(tmp_path: Path, case: str) -> None:
    layout = write_config(tmp_path)
    bad = BROKEN[case](layout)
    proc = subprocess.run(
        [*stratum_command(), "serve", "--listen", "127.0.0.1:0", "--config", str(layout.config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "STRATUM_ACCESS_KEY": ACCESS_KEY,
            "STRATUM_SECRET_KEY": SECRET_KEY,
        },
    )
    output = proc.stdout + proc.stderr
    assert "serving S3" not in output, output
    assert proc.returncode != 0, output
    assert str(bad) in output, f"the message does not name {bad}:\n{output}"
    assert "Traceback" not in output, output
