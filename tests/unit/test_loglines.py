"""The batching log handler: fewer writes, nothing lost at a flush, warnings at once."""

from __future__ import annotations

import io
import logging
import os
import time

from stratum.util.loglines import BatchingStreamHandler


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def make_logger(
    name: str, delay: float
) -> tuple[logging.Logger, CountingStream, BatchingStreamHandler]:
    stream = CountingStream()
    handler = BatchingStreamHandler(stream, delay=delay)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream, handler


def test_a_burst_is_one_write_and_arrives_after_the_delay() -> None:
    logger, stream, _ = make_logger("t.burst", delay=0.05)
    for i in range(200):
        logger.info("request %d", i)
    assert stream.writes == 0
    deadline = time.monotonic() + 5
    while stream.writes == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stream.writes == 1
    assert stream.getvalue().splitlines() == [f"INFO request {i}" for i in range(200)]


def test_warnings_flush_everything_before_them_at_once() -> None:
    logger, stream, _ = make_logger("t.warn", delay=60)
    logger.info("first")
    logger.warning("trouble")
    assert stream.getvalue() == "INFO first\nWARNING trouble\n"


def test_flush_and_size_limit() -> None:
    logger, stream, handler = make_logger("t.flush", delay=60)
    handler.max_bytes = 1000
    for _ in range(30):
        logger.info("x" * 50)
    assert stream.writes >= 1  # passed max_bytes: written without waiting for the timer
    logger.info("last")
    handler.flush()
    assert stream.getvalue().splitlines()[-1] == "INFO last"
    assert len(stream.getvalue().splitlines()) == 31


def test_a_forked_child_does_not_repeat_its_parents_lines() -> None:
    read, write = os.pipe()
    stream = os.fdopen(write, "w")
    handler = BatchingStreamHandler(stream, delay=60)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("t.fork")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.info("before fork")
    pid = os.fork()
    if pid == 0:  # the child: its own line, flushed at exit
        logger.info("child")
        handler.flush()
        os._exit(0)
    os.waitpid(pid, 0)
    logger.info("parent")
    handler.flush()
    stream.close()
    lines = os.read(read, 10_000).decode().splitlines()
    os.close(read)
    assert sorted(lines) == ["before fork", "child", "parent"]
