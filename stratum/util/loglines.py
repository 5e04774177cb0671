"""A log handler that writes lines in batches: one ``write`` per burst, not per request.

Every request logs an access line; written one at a time to stderr that is a syscall per
request (a few per cent of a small GET or PUT). :class:`BatchingStreamHandler` keeps lines in
memory and writes them together, at most ``delay`` seconds after the first one of a batch, at
once for WARNING and above, and whenever a batch passes ``max_bytes``; ``flush()`` (called by
``logging.shutdown`` at exit) writes what is left. A process killed with SIGKILL can lose up to
``delay`` seconds of INFO lines, never a warning or an error: the access log's nginx
``buffer=`` trade. A flusher thread exists only while lines wait, so an idle server has no
wake-ups.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import TextIO

_handlers: weakref.WeakSet[BatchingStreamHandler] = weakref.WeakSet()


def _flush_all() -> None:
    for handler in list(_handlers):
        handler.flush()


# A forked worker must not inherit lines its parent still holds (they would be written twice).
os.register_at_fork(before=_flush_all)


class BatchingStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that batches its writes (see the module docstring)."""

    def __init__(self, stream: TextIO, delay: float = 0.05, max_bytes: int = 64 << 10) -> None:
        super().__init__(stream)
        self.delay = delay
        self.max_bytes = max_bytes
        self._lines: list[str] = []
        self._size = 0
        self._timer: threading.Timer | None = None
        _handlers.add(self)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            self._lines.append(line)
            self._size += len(line)
            if record.levelno >= logging.WARNING or self._size >= self.max_bytes:
                self._write_locked()
            elif self._timer is None:
                self._timer = threading.Timer(self.delay, self.flush)
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write_locked()

    def close(self) -> None:
        self.flush()
        super().close()

    def _write_locked(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._lines:
            text = "".join(self._lines)
            self._lines.clear()
            self._size = 0
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, ValueError):
                pass  # stderr closed (journald restarting): lines lost, serving goes on
