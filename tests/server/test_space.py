"""Disk space of deleted small objects comes back, on a real server (workers included).

- 100 objects of 100 KB, overwritten three times, then all deleted: the disks hold next to
  nothing once the collector has run.
- What the docs promise about when: a deleted small object's blocks are freed by the same
  collection pass that frees a large object's files (with several server processes, at least
  5 s after the delete and within the next pass).
- A soak (marked slow): mixed PUT/overwrite/DELETE load on small objects with a tier pass
  every 10 s, a scrub and a replaced disk midway; at the end the segment files take at most
  twice the bytes of the live small objects' records, no GET took over 250 ms
  (``STRATUM_SOAK_STALL_MS``; 100 on a quiet machine), nothing was
  lost. ``STRATUM_SOAK_SECONDS`` sets how long the load runs (120 by default).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stratum.block.segments_format import SegLocation
from stratum.maintenance.compaction import PASS_INTERVAL
from stratum.meta.records import VolumeRecord
from stratum.meta.store import MetaStore
from stratum.service.objects import MULTI
from tests.server.conftest import ACCESS_KEY, SECRET_KEY, start_server, stratum_command
from tests.server.faultload import Ledger, Load, check_against, client_config, stop_cleanly

KiB = 1 << 10
REPO = Path(__file__).resolve().parents[2]


def allocated(paths: list[Path], pattern: str = "*") -> int:
    """Bytes the files under ``paths`` take on the disk (what du counts)."""
    return sum(
        p.stat().st_blocks * 512 for root in paths for p in root.rglob(pattern) if p.is_file()
    )


def write_config(root: Path, hot: int, extra: str = "") -> tuple[Path, list[Path]]:
    disks = [root / f"hot{i}" for i in range(hot)]
    config = root / "stratum.toml"
    config.write_text(
        f"""
[server]
access_log = false
workers = 2

[storage]
data_dir = {json.dumps(str(root / "data"))}
{extra}
[tiers.hot]
disks = {json.dumps([str(d) for d in disks])}
"""
    )
    return config, disks


def wait_until(predicate: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"not within {timeout} s: {what}"
        time.sleep(0.1)
    return time.monotonic() - started


@contextlib.contextmanager
def serving(root: Path, hot: int, bucket: str) -> Iterator[tuple[Any, list[Path]]]:
    """A server with ``hot`` disks and an empty bucket: (its client, its disks)."""
    config, disks = write_config(root, hot=hot)
    server = start_server(root / "data", config=config)
    try:
        s3 = server.client(**client_config())
        s3.create_bucket(Bucket=bucket)
        yield s3, disks
    finally:
        stop_cleanly(server)


def test_overwritten_then_deleted_small_objects_leave_next_to_nothing(tmp_path: Path) -> None:
    with serving(tmp_path, 6, "space") as (s3, disks):
        rng = random.Random(1)
        for _version in range(4):  # written, then overwritten three times
            for i in range(100):
                s3.put_object(Bucket="space", Key=f"k{i}", Body=rng.randbytes(100_000))
        peak = allocated(disks)
        assert peak >= 100 * 100_000 * 3  # three copies of the current versions at least
        for start in range(0, 100, 50):
            keys = [{"Key": f"k{i}"} for i in range(start, start + 50)]
            s3.delete_objects(Bucket="space", Delete={"Objects": keys, "Quiet": True})
        # Each disk keeps its identity file and, per segment file, the block of its header
        # and the block its end falls in; and a copy of the metadata store (hourly).
        bound = len(disks) * 32 * KiB

        def data() -> int:
            return allocated(disks) - allocated([d / "meta-backup" for d in disks])

        took = wait_until(lambda: data() <= bound, 60, "space given back")
        print(
            f"peak {peak} bytes on the disks; {allocated(disks)} after {took:.1f} s, "
            f"{data()} of them not the metadata copies"
        )
    # With no server running, disk list counts what each disk stores and could reclaim.
    listed = disk_list(tmp_path / "stratum.toml")
    assert len(listed) == 6
    assert all(d["stored_bytes"] == 0 and d["reclaimable_bytes"] < 32 * KiB for d in listed)


def test_a_deleted_small_object_is_freed_by_the_next_collection(tmp_path: Path) -> None:
    """With several server processes the collector frees a volume at least 5 s after it
    was retired (a worker may still be about to read it) and at its next pass (every 2 s):
    the blocks of a deleted 100 KB object come back 5 to about 9 s after the DELETE."""
    with serving(tmp_path, 3, "timing") as (s3, disks):
        rng = random.Random(2)
        for i in range(30):  # deleted ones between live neighbours
            s3.put_object(Bucket="timing", Key=f"gone{i}", Body=rng.randbytes(100_000))
            s3.put_object(Bucket="timing", Key=f"kept{i}", Body=rng.randbytes(2000))
        time.sleep(2.5)  # a collection pass with nothing to do, so the next one is regular
        before = allocated(disks)
        keys = [{"Key": f"gone{i}"} for i in range(30)]
        s3.delete_objects(Bucket="timing", Delete={"Objects": keys, "Quiet": True})
        deleted = time.monotonic()
        freed = 30 * 100_000 * 3 * 0.9  # all but the blocks shared with live neighbours
        took = wait_until(lambda: before - allocated(disks) >= freed, 30, "space of deleted")
        print(f"freed {before - allocated(disks)} bytes {took:.1f} s after the DELETE")
        assert 4.5 <= time.monotonic() - deleted <= 12
        for i in range(30):
            assert len(s3.get_object(Bucket="timing", Key=f"kept{i}")["Body"].read()) == 2000


def _stable(i: int) -> bytes:
    return random.Random(i).randbytes(4 * KiB)


_TRACER = """
import json, sys, threading, time
from tests.server.conftest import RunningServer
from tests.server.test_space import _stable

endpoint, keys = sys.argv[1], json.loads(sys.argv[2])
client = RunningServer(endpoint, None, None).client(connect_timeout=5, read_timeout=60)
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
starved = []  # (end, how late) of the probe's 5 ms sleeps: when the machine had no CPU to give

def probe():
    while not stop.is_set():
        before = time.perf_counter()
        time.sleep(0.005)
        after = time.perf_counter()
        if after - before > 0.025:
            starved.append((after, after - before - 0.005))

threading.Thread(target=probe, daemon=True).start()
gets, errors, n = [], [], 0
while not stop.is_set():
    key = keys[n % len(keys)]
    n += 1
    started = time.perf_counter()
    try:
        body = client.get_object(Bucket="trace", Key=key)["Body"].read()
    except Exception as exc:
        errors.append(f"GET {key}: {exc!r}")
        continue
    gets.append((started, time.perf_counter()))
    if body != _stable(int(key[1:])):
        errors.append(f"GET {key}: wrong content")
    time.sleep(0.01)
print(json.dumps({"gets": gets, "starved": starved, "errors": errors}))
"""


class SmallLoad(Load):
    """The fault tests' load, mostly small objects (1-64 KiB), overwritten and deleted; each
    worker pauses between operations, so that the load leaves the server CPU time to serve
    the traced GETs on a small machine (the trace measures Stratum, not the client)."""

    WEIGHTS = (("small", 55), ("delete", 25), ("get", 14), ("large", 5), ("multipart", 1))
    PAUSE = 0.02

    def _run(self, client: Any, rng: random.Random, op: str, key: str) -> None:
        super()._run(client, rng, op, key)
        time.sleep(self.PAUSE)


class RetryingLedger(Ledger):
    """A 503 (a disk pulled during the write) is an answer clients retry: the operation's
    outcome is unknown, which the ledger allows for; it is not an error."""

    def unknown_outcome(self, key: str, op: str, exc: BaseException, expected: bool) -> None:
        super().unknown_outcome(key, op, exc, expected or "ServiceUnavailable" in repr(exc))


def scrub(config: Path) -> None:
    """``stratum scrub`` of the running server: a full pass, which must repair everything."""
    done = subprocess.run(
        [*stratum_command(), "scrub", "--config", str(config)],
        capture_output=True,
        text=True,
        env={**os.environ, "STRATUM_ACCESS_KEY": ACCESS_KEY, "STRATUM_SECRET_KEY": SECRET_KEY},
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    print(done.stdout.strip())


# A GET slower than this is a stall... The aim is 100 ms (STRATUM_SOAK_STALL_MS=100), met by
# a 30-minute run on the quiet 2-core VM (2026-12-07: 144,999 traced GETs, p99 6 ms, the
# slowest 29 ms). The shared suite, where another test process competes for the same two
# cores, holds 250 ms: there the server's loop thread at times waits over 100 ms for a CPU
# (its schedstat says so) while the tracer's own sleeps run on time.
STALL = float(os.environ.get("STRATUM_SOAK_STALL_MS", "250")) / 1000
STARVED = 0.02  # ... unless the tracer's own 5 ms sleeps ran this late
NEAR = 0.25  # ... within this many seconds of it


def stalls_of(gets: list[list[float]], starved: list[list[float]]) -> list[int]:
    """The GETs (their milliseconds) over :data:`STALL` that the machine does not explain:
    on a busy machine (fewer cores than runnable threads) every process waits for a CPU now
    and then, Stratum's included, and the tracer's own sleeps then run late too. On a quiet
    machine nothing is excused: a GET held up by Stratum itself is a stall."""
    out = []
    for start, end in gets:
        if end - start <= STALL:
            continue
        near = (late for at, late in starved if start - NEAR <= at <= end + NEAR)
        if not any(late >= STARVED for late in near):
            out.append(round((end - start) * 1000))
    return out


def disk_list(config: Path) -> list[dict[str, Any]]:
    """``stratum disk list --json`` (through the server if one runs, else offline)."""
    done = subprocess.run(
        [*stratum_command(), "disk", "list", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        env={**os.environ, "STRATUM_ACCESS_KEY": ACCESS_KEY, "STRATUM_SECRET_KEY": SECRET_KEY},
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    listed: list[dict[str, Any]] = json.loads(done.stdout)
    return listed


def live_small_record_bytes(data_dir: Path) -> int:
    """Bytes of the records of every live small volume, copies included (server stopped)."""
    meta = MetaStore(data_dir / "meta")
    meta.open()
    total = 0
    try:
        with meta.reader() as tx:
            for _key, raw in tx.cursor("volumes"):
                volume = VolumeRecord.decode(bytes(raw))
                locations = [volume.location] if volume.layout == "seg" else []
                if volume.layout == MULTI:
                    locations = [p["location"] for p in volume.location["parts"]]
                    locations = [loc for loc in locations if "replicas" in loc]
                    locations.append(volume.location["manifest"])
                for loc in locations:
                    seg = SegLocation.from_dict(loc)
                    total += seg.record_size * len(seg.replicas)
    finally:
        meta.close()
    return total


SOAK_SECONDS = float(os.environ.get("STRATUM_SOAK_SECONDS", "120"))


@pytest.mark.slow
@pytest.mark.timeout(SOAK_SECONDS + 900)
def test_soak_small_objects_with_tiering_scrub_and_a_replaced_disk(tmp_path: Path) -> None:
    seconds = SOAK_SECONDS
    warm = [tmp_path / f"warm{i}" for i in range(3)]
    config, disks = write_config(
        tmp_path,
        hot=6,
        extra=f"""segment_size = "1MiB"

[tiers.warm]
disks = {json.dumps([str(d) for d in warm])}
data_shards = 2
parity_shards = 1

[tiering]
interval = "10s"
hot_idle_before_warm = "40s"
""",
    )
    server = start_server(tmp_path / "data", config=config)
    seed = random.randrange(1 << 30)
    ledger = RetryingLedger([f"key{i:03d}" for i in range(300)])
    load = SmallLoad(server, "soak", ledger, seed, workers=3)
    latencies: list[float] = []
    stalls: list[int] = []
    listed: list[dict[str, Any]] = []
    tracer: subprocess.Popen[str] | None = None
    try:
        s3 = server.client(**client_config())
        s3.create_bucket(Bucket="soak")
        s3.create_bucket(Bucket="trace")
        stable = {f"t{i}": _stable(i) for i in range(20)}
        for key, data in stable.items():
            s3.put_object(Bucket="trace", Key=key, Body=data)
        # GETs of objects nobody touches, timed by a process of their own (in this one, the
        # load's threads would hold the GIL and the trace would time them too).
        tracer = subprocess.Popen(
            [sys.executable, "-c", _TRACER, server.endpoint, json.dumps(list(stable))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        load.start()
        started = time.monotonic()
        time.sleep(seconds / 3)
        scrub(config)  # a full pass at full speed under the load
        time.sleep(max(0.0, started + seconds / 2 - time.monotonic()))
        replaced = disks[-1]  # swapped for an empty disk at the same path, while running
        replaced.rename(tmp_path / "pulled")
        replaced.mkdir()
        shutil.rmtree(tmp_path / "pulled", ignore_errors=True)
        time.sleep(max(0.0, started + seconds - time.monotonic()))
        load.join()
        trace_out, _ = tracer.communicate("stop\n", timeout=60)
        traced = json.loads(trace_out)
        trace_errors = traced["errors"]
        latencies = sorted(end - start for start, end in traced["gets"])
        stalls = stalls_of(traced["gets"], traced["starved"])
        scrub(config)  # waits for the rebuild of the replaced disk, then finds nothing wrong
        assert not ledger.errors, ledger.errors[:20]
        assert not trace_errors, trace_errors[:20]
        problems, seen = check_against(s3, "soak", ledger)
        assert not problems, f"seed {seed}: " + "\n".join(problems[:20])
        # What the load left: the collector's last frees and a compaction pass or two.
        settle_started = time.monotonic()
        time.sleep(2 * PASS_INTERVAL + 10)
        seg_bytes = allocated([*disks, *warm], "*.seg")
        listed = disk_list(config)  # counted by the server's own accounting by now
    finally:
        load.stop.set()
        if tracer is not None and tracer.poll() is None:
            tracer.kill()
        stop_cleanly(server)
    live = live_small_record_bytes(tmp_path / "data")
    worst = latencies[-1] if latencies else 0.0
    p99 = latencies[int(len(latencies) * 0.99)] if latencies else 0.0
    print(
        f"soak {seconds:.0f} s, seed {seed}: {ledger.acked} operations acknowledged, "
        f"{len(latencies)} traced GETs (p99 {p99 * 1000:.1f} ms, worst {worst * 1000:.1f} ms, "
        f"{len(stalls)} stalls), "
        f"end: {seen}; segment files {seg_bytes} bytes for {live} bytes of live records "
        f"({time.monotonic() - settle_started:.0f} s after the load)"
    )
    assert seg_bytes <= 2 * live, (seg_bytes, live)
    stored = sum(d["stored_bytes"] for d in listed)  # shards of the large objects too
    assert live <= stored and all(d["reclaimable_bytes"] is not None for d in listed)
    assert latencies and not stalls, f"GETs stalled: {stalls[:10]} (ms)"
    server = start_server(tmp_path / "data", config=config)  # all of it survives a restart
    try:
        problems, _seen = check_against(server.client(**client_config()), "soak", ledger)
        assert not problems, f"seed {seed}, after a restart: " + "\n".join(problems[:20])
    finally:
        stop_cleanly(server)
