"""The server's event-loop watchdog (STRATUM_LOOP_WATCHDOG_MS): on in every real-server test
(tests/server/conftest.py fails a test whose server logs a stall), logging what held the loop
(with a threshold low enough that ordinary steps count), quiet when the operating system, not
the server, holds the process up."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from stratum.util.loopwatch import ENV
from tests.server.conftest import start_server


def test_a_server_the_system_stops_for_a_while_is_not_blocked(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", env={ENV: "50"})
    try:
        s3 = server.client()
        s3.create_bucket(Bucket="bucket-a")
        for _ in range(3):  # the process, all its threads, gets no CPU for 300 ms
            os.kill(server.process.pid, signal.SIGSTOP)
            time.sleep(0.3)
            os.kill(server.process.pid, signal.SIGCONT)
            s3.put_object(Bucket="bucket-a", Key="k", Body=b"x" * 100_000)
            assert s3.get_object(Bucket="bucket-a", Key="k")["Body"].read() == b"x" * 100_000
    finally:
        assert server.stop() == 0
    assert not [line for line in server.output if "event loop blocked" in line]


@pytest.mark.blocks_loop
def test_the_server_names_what_held_its_loop(tmp_path: Path) -> None:
    """With a 0.2 ms threshold, ordinary steps (starting up, answering) count as stalls:
    each is logged as an ERROR with its time and, when a sample caught it, the code (the
    naming itself is tested on uvloop in tests/unit/test_loopwatch.py)."""
    server = start_server(tmp_path / "data", env={ENV: "0.2"})
    try:
        s3 = server.client()
        for i in range(20):
            s3.create_bucket(Bucket=f"bucket-{i}")
        for i in range(300):
            s3.put_object(Bucket="bucket-0", Key=f"key-{i:04d}", Body=b"")
        # Rendering a page of 300 keys takes milliseconds of CPU on the loop whatever the
        # machine: a stall to name even when every request above happened to take less.
        for _ in range(3):
            assert s3.list_objects_v2(Bucket="bucket-0")["KeyCount"] == 300
    finally:
        assert server.stop() == 0
    stalls = [line for line in server.output if "event loop blocked" in line]
    assert stalls, "".join(server.output)
    logged = r" ERROR stratum\.loop: event loop blocked \d+ ms \(\d+ ms on the CPU.*\) in "
    pattern = re.compile(logged)
    assert all(pattern.search(line) for line in stalls), stalls
