"""The recorded access history: the last object requests, for the tiering what-if.

Every server process notes its successful object requests as they finish (the S3 server's
``on_finished``): PutObject, CompleteMultipartUpload (with the size of its parts), GetObject,
HeadObject and DeleteObject, as the tier simulator's trace rows
(:mod:`stratum.tiering.traces`: time, op, bucket, key, size). It writes them to LMDB in
batches, every :data:`FLUSH_INTERVAL` seconds or :data:`FLUSH_ROWS` rows, through the
metadata writer; the history keeps the newest ``[console] access_history`` rows, forgetting
the oldest first. The console replays them through the simulator with other settings.

Stored in LMDB's ``console`` database (format version 1)::

    key    b"a" + <time in µs, 8 bytes big-endian> + <process id, 4 bytes> + <sequence, 4 bytes>
    value  JSON [1, <op>, <bucket>, <key>, <size>]
    key    b"c"   value <rows kept, 8 bytes big-endian>
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import struct
from collections.abc import Callable, Iterator

from stratum.meta.store import MetaStore, Tx
from stratum.s3.server import FinishedRequest
from stratum.tiering.traces import TraceRow
from stratum.util.clock import Clock
from stratum.util.periodic import Periodic

log = logging.getLogger("stratum.console")

ACCESS_VERSION = 1
PREFIX = b"a"
COUNT_KEY = b"c"
FLUSH_INTERVAL = 10.0
FLUSH_ROWS = 2000
MAX_PENDING = 20000  # rows held while the store is slow; more are dropped (and counted)
MAX_OPEN_UPLOADS = 1000  # multipart uploads whose part sizes are being added up
OPS = {
    "PutObject": "PUT",
    "CompleteMultipartUpload": "PUT",
    "GetObject": "GET",
    "HeadObject": "HEAD",
    "DeleteObject": "DELETE",
}
_COUNT = struct.Struct(">Q")


def append_rows(tx: Tx, rows: list[tuple[bytes, bytes]], keep: int) -> None:
    """Add rows and forget the oldest beyond ``keep`` (one write transaction)."""
    raw = tx.get("console", COUNT_KEY)
    kept = _COUNT.unpack(raw)[0] if raw else 0
    for key, value in rows:
        tx.put("console", key, value)
    kept += len(rows)
    if kept > keep:
        cur = tx.cursor("console")
        stale: list[bytes] = []
        if cur.set_range(PREFIX):
            for key in cur.iternext(values=False):
                if len(stale) >= kept - keep or not bytes(key).startswith(PREFIX):
                    break
                stale.append(bytes(key))
        for key in stale:
            tx.delete("console", key)
        kept -= len(stale)
    tx.put("console", COUNT_KEY, _COUNT.pack(kept))


def read_rows(tx: Tx) -> Iterator[TraceRow]:
    """Every recorded row, oldest first, times in clock seconds."""
    cur = tx.cursor("console")
    if not cur.set_range(PREFIX):
        return
    for key, raw in cur:
        key = bytes(key)
        if not key.startswith(PREFIX):
            break
        version, op, bucket, name, size = json.loads(bytes(raw))
        if version != ACCESS_VERSION:
            continue
        at = struct.unpack(">Q", key[1:9])[0] / 1e6
        yield TraceRow(at, op, bucket, name, int(size))


class AccessRecorder:
    """Notes one process's object requests and writes them in batches."""

    def __init__(self, meta: MetaStore, clock: Clock, keep: int) -> None:
        self.meta = meta
        self.clock = clock
        self.keep = keep
        self.dropped = 0
        self._pending: list[tuple[bytes, bytes]] = []
        self._uploads: dict[tuple[str, str], int] = {}  # part bytes of open multipart uploads
        self._pid = os.getpid() & 0xFFFFFFFF
        self._sequence = itertools.count()
        self._flusher = Periodic(
            "console-accesses",
            self.flush,
            interval=FLUSH_INTERVAL,
            log=log,
            what="recording the access history",
        )

    def attach(
        self, previous: Callable[[FinishedRequest], None] | None
    ) -> Callable[[FinishedRequest], None]:
        """An ``on_finished`` that calls ``previous`` and notes the request."""

        def both(done: FinishedRequest) -> None:
            if previous is not None:
                previous(done)
            self.note(done)

        return both

    def start(self) -> None:
        if self.keep > 0:
            self._flusher.start()

    async def stop(self) -> None:
        await self._flusher.stop()
        try:
            await self.flush()
        except Exception as exc:  # a full metadata disk, say: the history is not worth an exit
            log.warning("access history: %d row(s) not recorded: %s", self.dropped, exc)

    def note(self, done: FinishedRequest) -> None:
        if self.keep <= 0 or not 200 <= done.status < 300 or not done.key:
            return
        if done.operation == "UploadPart":
            ident = (done.bucket, done.key)
            if ident in self._uploads or len(self._uploads) < MAX_OPEN_UPLOADS:
                self._uploads[ident] = self._uploads.get(ident, 0) + done.bytes_in
            return
        op = OPS.get(done.operation)
        if op is None:
            return
        if done.operation == "CompleteMultipartUpload":
            size = self._uploads.pop((done.bucket, done.key), 0)
        elif op == "PUT":
            size = done.bytes_in
        elif op == "DELETE":
            size = 0
        else:
            size = done.bytes_out
        if len(self._pending) >= MAX_PENDING:
            self.dropped += 1
            return
        micros = int(self.clock.now() * 1e6)
        key = PREFIX + struct.pack(">QII", micros, self._pid, next(self._sequence) & 0xFFFFFFFF)
        value = json.dumps([ACCESS_VERSION, op, done.bucket, done.key, size]).encode()
        self._pending.append((key, value))
        if len(self._pending) >= FLUSH_ROWS:
            self._flusher.wake()

    async def flush(self) -> None:
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        try:
            await self.meta.write(functools.partial(append_rows, rows=rows, keep=self.keep))
        except BaseException:
            self.dropped += len(rows)  # never written, never retried: a history, not data
            raise


def extent(tx: Tx) -> dict[str, float]:
    """Rows kept, and the times of the first and the last (cheap: no row is decoded)."""
    raw = tx.get("console", COUNT_KEY)
    out = {"rows": float(_COUNT.unpack(raw)[0] if raw else 0), "first": 0.0, "last": 0.0}
    cur = tx.cursor("console")
    if cur.set_range(PREFIX) and bytes(cur.key()).startswith(PREFIX):
        out["first"] = struct.unpack(">Q", bytes(cur.key())[1:9])[0] / 1e6
        if (cur.set_range(COUNT_KEY) and cur.prev()) or cur.last():
            key = bytes(cur.key())
            if key.startswith(PREFIX):
                out["last"] = struct.unpack(">Q", key[1:9])[0] / 1e6
    out["span"] = out["last"] - out["first"]
    return out


def recorded(meta: MetaStore) -> list[TraceRow]:
    """The whole recorded history (blocking: an executor's work)."""
    return meta.read(lambda tx: list(read_rows(tx)))
