"""A real server that stops on SIGTERM tells its next start that no crash left shard files
behind (no orphan sweep then); one killed with SIGKILL does not."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.server.conftest import RunningServer, start_server

CLEAN = "the last stop was clean"
UNCLEAN = "the last stop was not known to be clean"


def _said(server: RunningServer, words: str) -> bool:
    """Whether the server says ``words`` or the other answer (both come soon after start)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for line in list(server.output):
            if CLEAN in line or UNCLEAN in line:
                return words in line
        time.sleep(0.05)
    raise AssertionError("the server said nothing of its last stop:\n" + "".join(server.output))


def test_only_a_clean_stop_spares_the_next_start_its_sweep(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = start_server(data_dir)
    try:
        first.client().create_bucket(Bucket="bkt")
        first.client().put_object(Bucket="bkt", Key="k", Body=b"x" * 300_000)
        assert _said(first, UNCLEAN)  # a new store: never stopped
    finally:
        assert first.stop() == 0
    second = start_server(data_dir)
    try:
        assert _said(second, CLEAN)
    finally:
        second.stop(signal.SIGKILL)
    third = start_server(data_dir)
    try:
        assert _said(third, UNCLEAN)
        assert third.client().get_object(Bucket="bkt", Key="k")["Body"].read() == b"x" * 300_000
    finally:
        assert third.stop() == 0
    fourth = start_server(data_dir)
    try:
        assert _said(fourth, CLEAN)
    finally:
        fourth.stop()
