"""A 64 MiB object replicates with bounded memory: neither the sending nor the receiving
site's processes grow by more than a fraction of the object while it goes across."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from tests.server.replication_sites import two_sites, versioned_bucket, wait_for

SIZE = 64 << 20
GROWTH_LIMIT = 24 << 20  # far less than the object: a few chunks in flight, not the body


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the server's worker processes)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        for task in Path(f"/proc/{current}/task").iterdir():
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except FileNotFoundError:  # a thread that ended meanwhile
                continue
    return out


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def reset_peaks(pids: list[int]) -> dict[int, int]:
    """Reset each process's peak RSS to its RSS now (Linux clear_refs 5); RSS now, bytes."""
    for pid in pids:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    return {pid: status_kib(pid, "VmRSS") << 10 for pid in pids}


def growth(base: dict[int, int]) -> dict[int, int]:
    """Each process's peak RSS since its reset, less its RSS then, bytes."""
    return {pid: (status_kib(pid, "VmHWM") << 10) - rss for pid, rss in base.items()}


def test_a_64_mib_object_replicates_in_bounded_memory(tmp_path: Path) -> None:
    try:
        reset_peaks([os.getpid()])
    except OSError as exc:
        pytest.skip(f"this kernel cannot reset a process's peak RSS: {exc}")
    a, b = two_sites(tmp_path)
    a.start()
    b.start()
    try:
        s3a, s3b = a.client(), b.client()
        versioned_bucket("big", s3a, s3b)
        assert b.server is not None
        assert b.server.stop() == 0  # A's push waits for it: A's peak is reset first
        body = os.urandom(SIZE)
        put = s3a.put_object(Bucket="big", Key="disk.img", Body=body)
        assert a.server is not None
        sender = reset_peaks(process_tree(a.server.process.pid))
        receiver_server = b.start()
        receiver = reset_peaks(process_tree(receiver_server.process.pid))
        started = time.monotonic()
        wait_for(
            lambda: (
                s3a.head_object(Bucket="big", Key="disk.img")["ReplicationStatus"] == "COMPLETED"
            ),
            timeout=120,
            what="the 64 MiB object on the target",
        )
        took = time.monotonic() - started
        grown = {"sender": growth(sender), "receiver": growth(receiver)}
        copy = s3b.get_object(Bucket="big", Key="disk.img", VersionId=put["VersionId"])
        assert hashlib.sha256(copy["Body"].read()).digest() == hashlib.sha256(body).digest()
        for side, by_pid in grown.items():
            assert max(by_pid.values()) < GROWTH_LIMIT, (side, by_pid, took)
    finally:
        for site in (a, b):
            if site.server is not None and site.server.process.poll() is None:
                site.server.stop()
