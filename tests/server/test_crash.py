"""An acknowledged write survives kill -9 at any moment; a body that lies never replaces data.

The crash test runs a concurrent load (small and large PUTs, overwrites, DELETEs, multipart
uploads) against a server on six hot disks, SIGKILLs it at a random moment, restarts it on the
same disks and reads every key back: each must hold what the server last acknowledged for it,
or the outcome of the one operation in flight on it at the kill (see ``faultload.Ledger``).
``STRATUM_FAULT_SEED`` replays a run (the seed is in every failure message).
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.server.conftest import RunningServer, start_server
from tests.server.faultload import (
    KiB,
    Ledger,
    Load,
    MiB,
    check_against,
    client_config,
    content_md5,
    fault_seed,
    kill_during,
    kill_hard,
    print_server_log,
    raw_request,
    read_key,
    stop_cleanly,
    tmp_leftovers,
    unreferenced_ec_volumes,
    version_of,
    wait_for_log,
    write_config,
)

CYCLES = 8
KEYS = 48
BUCKET = "crash"


@pytest.mark.slow
def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    seed = fault_seed()
    rng = random.Random(seed)
    layout = write_config(tmp_path)
    ledger = Ledger([f"key-{i:03d}" for i in range(KEYS)])
    server = start_server(layout.data_dir, config=layout.config)
    server.client().create_bucket(Bucket=BUCKET)
    summary = []
    try:
        for cycle in range(CYCLES):
            delay = rng.uniform(0.5, 3.0)
            load = Load(server, BUCKET, ledger, seed=seed + cycle)
            acked_before = ledger.acked
            exited = kill_during(server, load, delay)
            assert exited is None, (
                f"seed {seed} cycle {cycle}: the server exited by itself (code {exited}) "
                "before the kill:\n" + "".join(server.output[-40:])
            )
            orphans = len(tmp_leftovers(layout.disks))  # what the restart must sweep
            assert not ledger.errors, (
                f"seed {seed} cycle {cycle}: operations failed before the kill: {ledger.errors}\n"
                + "".join(server.output[-40:])
            )
            server = start_server(layout.data_dir, config=layout.config)
            leftovers = tmp_leftovers(layout.disks)
            assert not leftovers, f"seed {seed}: tmp files left after restart: {leftovers}"
            problems, seen = check_against(server.client(**client_config()), BUCKET, ledger)
            assert not problems, (
                f"seed {seed} cycle {cycle} (kill at {delay:.2f} s):\n" + "\n".join(problems)
            )
            summary.append((round(delay, 2), ledger.acked - acked_before, orphans, seen))
        client = server.client(**client_config())
        leaked = unreferenced_ec_volumes(client, BUCKET, ledger, layout.disks)
        stop_cleanly(server)
    except BaseException:
        print_server_log(server)
        raise
    finally:
        if server.process.poll() is None:
            kill_hard(server)
    print(
        f"seed {seed}; writes acknowledged {ledger.acked} {ledger.counts}; concurrent GETs "
        f"checked {ledger.reads}; in flight at kills "
        f"{ledger.unknown}; unreferenced EC volumes left on disk {leaked}; "
        f"per cycle (kill at s, acked, tmp files swept, seen): {summary}"
    )
    assert ledger.acked > 20 * CYCLES, f"the load barely ran: {summary}"


# ---- bodies that lie ------------------------------------------------------------------------


@pytest.fixture
def six_disk_server(tmp_path: Path) -> Any:
    layout = write_config(tmp_path, access_log=True)
    server = start_server(layout.data_dir, config=layout.config)
    yield server, layout
    stop_cleanly(server)


SIZES = {"small": 20 * KiB, "large": 1 * MiB + 123}


def _status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else -1


def _wait_for_empty_tmp(layout: Any, timeout: float = 10.0) -> list[Path]:
    deadline = time.monotonic() + timeout
    while True:
        left = tmp_leftovers(layout.disks)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


@pytest.mark.parametrize("kind", sorted(SIZES))
def test_bad_bodies_leave_the_previous_version(six_disk_server: Any, kind: str) -> None:
    server, layout = six_disk_server
    s3 = server.client(**client_config())
    bucket = f"lies-{kind}"
    s3.create_bucket(Bucket=bucket)
    rng = random.Random(kind)
    size = SIZES[kind]
    v1 = rng.randbytes(size)
    s3.put_object(Bucket=bucket, Key="k", Body=v1)
    expected = version_of(v1, "v1")

    def intact(after: str) -> None:
        found, problems = read_key(s3, bucket, "k")
        assert not problems, problems
        assert found == expected, f"after {after}: {found} instead of v1"

    # Content-MD5 of other bytes: BadDigest, nothing replaced.
    v2 = rng.randbytes(size)
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="k", Body=v2, ContentMD5=content_md5(v1))
    assert err.value.response["Error"]["Code"] == "BadDigest"
    intact("a wrong Content-MD5")

    # A signed payload hash that is not the body's: refused, nothing replaced.
    reply = raw_request(
        server,
        "PUT",
        f"/{bucket}/k",
        {"Content-Length": str(size)},
        v2,
        close_early=False,
        payload_hash="ab" * 32,
    )
    assert _status(reply) == 400, reply[:300]
    intact("a wrong x-amz-content-sha256")

    # Fewer bytes than Content-Length, then the connection closes: nothing replaced.
    request_line = f"PUT PutObject /{bucket}/k "
    before = 3  # v1, the wrong Content-MD5 and the wrong payload hash
    wait_for_log(server, request_line, before)
    for n, sent in enumerate((0, 1, size // 2, size - 1), start=1):
        raw_request(
            server,
            "PUT",
            f"/{bucket}/k",
            {"Content-Length": str(size)},
            v2[:sent],
            close_early=True,
        )
        wait_for_log(server, request_line, before + n)  # the server is done with it
        intact(f"a body cut after {sent} of {size} bytes")
    assert not _wait_for_empty_tmp(layout), "aborted uploads left files in tmp/"
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["Size"], o["ETag"].strip('"')) for o in listed] == [
        ("k", size, expected.etag)
    ]

    # The server is still healthy: an honest PUT replaces v1.
    s3.put_object(Bucket=bucket, Key="k", Body=v2, ContentMD5=content_md5(v2))
    found, _ = read_key(s3, bucket, "k")
    assert found == version_of(v2, "v2")


def test_truncated_body_is_not_visible_after_restart(tmp_path: Path) -> None:
    """The aborted body is not committed later either (restart and look again)."""
    layout = write_config(tmp_path)
    server: RunningServer = start_server(layout.data_dir, config=layout.config)
    s3 = server.client(**client_config())
    s3.create_bucket(Bucket="trunc")
    v1 = random.Random(1).randbytes(700 * KiB)
    s3.put_object(Bucket="trunc", Key="k", Body=v1)
    raw_request(
        server,
        "PUT",
        "/trunc/k",
        {"Content-Length": str(2 * MiB)},
        random.Random(2).randbytes(1 * MiB),
        close_early=True,
    )
    time.sleep(0.3)
    stop_cleanly(server)
    server = start_server(layout.data_dir, config=layout.config)
    try:
        found, problems = read_key(server.client(**client_config()), "trunc", "k")
        assert not problems
        assert found == version_of(v1, "v1")
        assert not tmp_leftovers(layout.disks)
    except BaseException:
        print_server_log(server)
        raise
    finally:
        stop_cleanly(server)
