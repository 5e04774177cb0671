"""The pusher: one background loop per target sending the queue's versions (primary only).

Each pass takes the target's due entries, oldest order first, and pushes them: the versions
of one key one after another in order (a plain S3 target makes the last one it receives
current), different keys several at a time. A version goes with its id, time, metadata,
checksums, tags and lock state:

- an object made by a multipart upload (one part or more) as a multipart upload with the
  same part sizes, so its ETag is the same on the target, and with the same checksum: the
  upload's algorithm and type (COMPOSITE or FULL_OBJECT) on CreateMultipartUpload, each
  part's stored value on its UploadPart and in CompleteMultipartUpload's list, a FULL_OBJECT
  value on CompleteMultipartUpload, so the target verifies every part and computes the
  object's value as the source did (:class:`PartChecksums`);
- any other object with one streamed PUT carrying its Content-MD5 and full-object checksums,
  which the target verifies;
- a delete marker as a DELETE of the key;
- a later change of its tags or Object Lock state as PutObjectTagging, PutObjectRetention
  and PutObjectLegalHold (:mod:`stratum.replication.amendments`).

A version with lock settings, or in a bucket with Object Lock, goes with a digest of every
request's body, as S3 asks of such writes: its Content-MD5 when the ETag is one, else the
MD5 of each part, read once more before it is sent.

Bodies stream from the source's volume: memory is a few chunks per push, whatever the
object's size. On success the entry leaves the queue (:func:`stratum.replication.queue.
finish`); on failure it waits ``min(CAP, FIRST * 2**attempts)`` seconds and the versions
after it of the same key wait with it. A version gone for good before its push (a DELETE
naming it) is dropped: permanent deletes are never replicated.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import logging
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from stratum.config import ReplicationTarget
from stratum.meta import catalog, versions
from stratum.meta.records import ObjectRecord, VolumeRecord
from stratum.meta.store import Tx
from stratum.replication import amendments, queue, repair
from stratum.replication.client import PushError, TargetClient
from stratum.replication.queue import QueueEntry
from stratum.replication.repair import Comparison
from stratum.service.objects import ObjectService
from stratum.util.clock import Clock
from stratum.util.periodic import Periodic

log = logging.getLogger("stratum.replication")

# Seconds between passes when nothing wakes the pusher: worker processes' writes are found
# this way (a pass that finds nothing is one LMDB cursor seek); entries held back by backoff
# make the pause longer, up to IDLE_MAX.
POLL = 0.05
IDLE_MAX = 5.0
PAGE = 256  # entries per pass
KEYS_AT_ONCE = 16  # keys pushed concurrently
FIRST, CAP = 1.0, 300.0  # backoff after a failed push, seconds
REPLICA_VERSION_ID = "x-stratum-replica-version-id"  # see stratum.s3.replica_ops
REPLICA_MTIME = "x-stratum-replica-mtime"


@dataclass
class TargetStats:
    """What /metrics and `stratum replication status` show of a target (this process)."""

    versions_sent: int = 0
    bytes_sent: int = 0
    failures: int = 0
    last_error: str = ""
    last_error_at: float = 0.0
    lags: list[float] = field(default_factory=list)  # seconds from queueing to push, recent


def backoff(attempts: int) -> float:
    return float(min(CAP, FIRST * 2 ** min(attempts, 20)))


def object_headers(record: ObjectRecord, now: float, *, single: bool) -> dict[str, str]:
    """The headers that give the target's copy the version's metadata; ``single``: the
    headers of one PUT (with the digests of the whole body), else of CreateMultipartUpload."""
    headers = {"Content-Type": record.content_type}
    headers.update(record.headers)
    for name, value in record.user_meta.items():
        headers[f"x-amz-meta-{name}"] = value
    if record.tags:
        headers["x-amz-tagging"] = urlencode(record.tags)
    headers.update(amendments.write_headers(record, now))
    if single:
        md5 = record.etag.strip('"')
        if len(md5) == 32 and "-" not in md5:
            headers["Content-MD5"] = base64.b64encode(bytes.fromhex(md5)).decode()
        for alg, value in record.checksums.items():
            if "-" not in value:  # a composite (per-part) checksum is no whole-body digest
                headers[f"x-amz-checksum-{alg}"] = value
    return headers


@dataclass(frozen=True)
class PartChecksums:
    """A multipart object's checksum, as its upload is made again on the target."""

    algorithm: str  # as stored: crc32, crc32c, crc64nvme, sha1, sha256
    value: str  # the object's: "<base64>-<parts>" if COMPOSITE, "<base64>" if FULL_OBJECT
    parts: list[str]  # each part's base64 value, in part order

    @classmethod
    def of(cls, record: ObjectRecord, volume: VolumeRecord) -> PartChecksums | None:
        """None when the version has no checksum, or its parts' values are not stored (a
        volume written before they were): it then goes without one, as any object would."""
        if len(record.checksums) != 1:
            return None
        [(algorithm, value)] = record.checksums.items()
        parts = volume.part_checksums
        if len(parts) != len(volume.part_sizes) or not all(parts):
            return None
        return cls(algorithm, value, list(parts))

    @property
    def kind(self) -> str:
        return "COMPOSITE" if "-" in self.value else "FULL_OBJECT"

    def create_headers(self) -> dict[str, str]:
        return {
            "x-amz-checksum-algorithm": self.algorithm.upper(),
            "x-amz-checksum-type": self.kind,
        }

    def complete_headers(self) -> dict[str, str]:
        """The object's value, which the target checks against the one it computes; only a
        FULL_OBJECT one (a COMPOSITE value follows from the parts', each verified)."""
        if self.kind == "COMPOSITE":
            return {}
        return {f"x-amz-checksum-{self.algorithm}": self.value}


def replica_headers(record: ObjectRecord) -> dict[str, str]:
    return {REPLICA_VERSION_ID: record.version_id, REPLICA_MTIME: repr(record.last_modified)}


class Pusher:
    """Pushes one target's queue."""

    def __init__(
        self,
        service: ObjectService,
        target: ReplicationTarget,
        client: TargetClient,
        clock: Clock,
        all_targets: Sequence[str],
    ) -> None:
        self.service = service
        self.meta = service.meta
        self.target = target
        self.client = client
        self.clock = clock
        self.all_targets = tuple(all_targets)
        self.stats = TargetStats()
        self._pause = POLL
        self._keys = asyncio.Semaphore(KEYS_AT_ONCE)
        # whether the target keeps the version ids it is sent (a Stratum granting us
        # replication rights): learnt from its answers, kept across restarts (see
        # stratum.replication.repair); drift repair needs it
        self.keeps_ids: bool | None = None
        self._compare: Periodic | None = None
        if target.compare_interval > 0:
            self._compare = Periodic(
                f"replication-compare-{target.name}",
                self.compare,
                interval=target.compare_interval,
                log=log,
                what=f"comparison with replication target {target.name}",
            )
        self._loop = Periodic(
            f"replication-{target.name}",
            self.run_pass,
            interval=lambda: self._pause,
            log=log,
            what=f"replication pass to {target.name}",
            first_delay=0,
        )

    async def start(self) -> None:
        progress = self.meta.read(functools.partial(repair.read_progress, target=self.target.name))
        self.keeps_ids = repair.known_keeps_ids(progress, self.target.endpoint)
        await self.client.start()
        self._loop.start()
        if self._compare is not None:
            self._compare.start()

    async def stop(self) -> None:
        if self._compare is not None:
            await self._compare.stop()
        await self._loop.stop()
        await self.client.close()

    def wake(self) -> None:
        self._loop.wake()

    async def compare(self) -> dict[str, Any] | None:
        """A full comparison with the target (drift repair); None if skipped because the
        target is not known to keep version ids."""
        if not self.keeps_ids:
            if self.keeps_ids is None:
                log.info(
                    "comparison with %s skipped: not yet known to keep version ids",
                    self.target.name,
                )
            return None
        comparison = Comparison(self.meta, self.target, self.client, self.clock.now)
        result = await comparison.run()
        if result["resent"]:
            log.warning(
                "comparison with %s: %d versions it lacked queued again",
                self.target.name,
                result["resent"],
            )
            self.wake()
        return result

    async def run_pass(self) -> int:
        """Push what is due, page after page, until nothing is; return how many pushed."""
        pushed = 0
        self._pause = POLL
        while True:
            now = self.clock.now()
            found = self.meta.read(
                functools.partial(queue.due, target=self.target.name, now=now, limit=PAGE)
            )
            page = found.entries
            if found.next_try is not None and not page:
                self._pause = min(IDLE_MAX, max(POLL, found.next_try - now))
            if not page:
                return pushed
            by_key: dict[tuple[str, str], list[tuple[bytes, QueueEntry]]] = {}
            for dbkey, entry in page:
                by_key.setdefault((entry.bucket, entry.key), []).append((dbkey, entry))
            results = await asyncio.gather(*(self._push_key(group) for group in by_key.values()))
            done = sum(results)
            pushed += done
            if done == 0:
                return pushed  # every due entry failed: they wait for their backoff

    async def _push_key(self, group: list[tuple[bytes, QueueEntry]]) -> int:
        """The versions of one key, in order; the first failure holds back the rest."""
        done = 0
        async with self._keys:
            for dbkey, entry in group:
                if not await self._push(dbkey, entry):
                    break
                done += 1
        return done

    async def _push(self, dbkey: bytes, entry: QueueEntry) -> bool:
        order = bytes.fromhex(entry.version_id)

        def look(tx: Tx) -> tuple[ObjectRecord | None, VolumeRecord | None, bool]:
            record = versions.get(tx, entry.bucket, entry.key, order)
            found = catalog.get_bucket(tx, entry.bucket)
            lockable = found is not None and found.object_lock
            if record is None or record.delete_marker:
                return record, None, lockable
            return record, catalog.get_volume(tx, record.volume_id), lockable

        record, volume, lockable = self.meta.read(look)
        if record is None:
            await self.meta.write(functools.partial(queue.drop, dbkey=dbkey))
            return True
        bucket = self.target.target_bucket(entry.bucket)
        started = time.monotonic()
        try:
            if entry.amend and not record.delete_marker:
                await self._send_change(bucket, record, lockable)
                sent = 0
            elif record.delete_marker:
                answer = await self.client.delete(bucket, record.key, replica_headers(record))
                await self._learn(answer.headers.get("x-amz-version-id"), record)
                sent = 0
            elif volume is None:
                raise PushError(f"version {record.version_id} of {record.key} has no volume")
            else:
                digests = lockable or amendments.locked(record)
                sent = await self._send_object(
                    bucket, record, volume, retry=entry.attempts > 0, digests=digests
                )
        except PushError as exc:
            await self._failed(dbkey, entry, str(exc))
            return False
        except Exception as exc:  # reading the source failed (a disk, the cold tier)
            log.exception("replication of %s/%s to %s", entry.bucket, entry.key, self.target.name)
            await self._failed(dbkey, entry, f"{type(exc).__name__}: {exc}")
            return False
        await self.meta.write(
            functools.partial(queue.finish, dbkey=dbkey, entry=entry, targets=self.all_targets)
        )
        stats = self.stats
        stats.versions_sent += 1
        stats.bytes_sent += sent
        stats.lags = [*stats.lags[-999:], max(0.0, self.clock.now() - entry.queued)]
        log.debug(
            "replicated %s/%s %s to %s in %.3fs",
            entry.bucket,
            entry.key,
            entry.version_id,
            self.target.name,
            time.monotonic() - started,
        )
        return True

    async def _send_change(self, bucket: str, record: ObjectRecord, lockable: bool) -> None:
        """A change of the version's tags or lock state; one the target refuses is not
        retried."""
        try:
            now = self.clock.now()
            if await amendments.send_change(self.client, bucket, record, now, lockable=lockable):
                await self._keeps_ids(True)
        except PushError as exc:
            if not exc.permanent:
                raise
            log.warning(
                "%s refused the change of %s %s (not retried): %s",
                self.target.name,
                record.key,
                record.version_id,
                exc,
            )
            self.stats.last_error, self.stats.last_error_at = str(exc), self.clock.now()

    async def _learn(self, version_id: str | None, record: ObjectRecord) -> None:
        """Note whether the target kept the id a push sent."""
        if version_id is not None:
            await self._keeps_ids(version_id == record.version_id)

    async def _keeps_ids(self, value: bool) -> None:
        if value == self.keeps_ids:
            return
        self.keeps_ids = value
        await self.meta.write(
            functools.partial(
                repair.note_keeps_ids,
                target=self.target.name,
                endpoint=self.target.endpoint,
                value=value,
            )
        )

    async def _failed(self, dbkey: bytes, entry: QueueEntry, why: str) -> None:
        now = self.clock.now()
        self.stats.failures += 1
        self.stats.last_error, self.stats.last_error_at = why, now
        if not entry.attempts:
            log.warning("replication to %s failed (will retry): %s", self.target.name, why)
        next_try = now + backoff(entry.attempts)
        await self.meta.write(
            functools.partial(queue.failed, dbkey=dbkey, entry=entry, error=why, next_try=next_try)
        )

    async def _send_object(
        self,
        bucket: str,
        record: ObjectRecord,
        volume: VolumeRecord,
        *,
        retry: bool,
        digests: bool = False,
    ) -> int:
        """Send an object version; return the bytes sent (0 if the target had it).
        ``digests``: every request carries a digest of its body (see the module's notes)."""
        if retry and await self.client.head_version(bucket, record.key, record.version_id):
            await self._keeps_ids(True)
            return 0  # an earlier attempt got there; its answer was lost
        sizes = volume.part_sizes if record.parts else []
        now = self.clock.now()
        if not sizes:
            headers = {**object_headers(record, now, single=True), **replica_headers(record)}
            if digests and "Content-MD5" not in headers:
                headers["Content-MD5"] = await self._md5(volume, 0, record.size)
            body = self._read(volume, 0, record.size)
            async with contextlib.aclosing(body):
                answer = await self.client.put(bucket, record.key, body, record.size, headers)
            await self._learn(answer.headers.get("x-amz-version-id"), record)
            return record.size
        sums = PartChecksums.of(record, volume)
        headers = object_headers(record, now, single=False)
        if sums is not None:
            headers.update(sums.create_headers())
        upload_id = await self.client.create_upload(bucket, record.key, headers)
        try:
            etags = []
            offset = 0
            for number, size in enumerate(sizes, 1):
                md5 = await self._md5(volume, offset, offset + size) if digests else ""
                checksum = None if sums is None else (sums.algorithm, sums.parts[number - 1])
                part = self._read(volume, offset, offset + size)
                async with contextlib.aclosing(part):
                    etag = await self.client.upload_part(
                        bucket, record.key, upload_id, number, part, size, md5, checksum
                    )
                etags.append(etag)
                offset += size
            headers = replica_headers(record)
            listed = None
            if sums is not None:
                headers.update(sums.complete_headers())
                listed = (sums.algorithm, sums.parts)
            answer = await self.client.complete(
                bucket, record.key, upload_id, etags, headers, listed
            )
            await self._learn(answer.headers.get("x-amz-version-id"), record)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.client.abort(bucket, record.key, upload_id)
            raise
        return record.size

    async def _md5(self, volume: VolumeRecord, start: int, end: int) -> str:
        """The Content-MD5 of a range of the volume: read once, hashed off the loop."""
        md5 = hashlib.md5()
        loop = asyncio.get_running_loop()
        chunks = self._read(volume, start, end)
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                await loop.run_in_executor(None, md5.update, chunk)
        return base64.b64encode(md5.digest()).decode()

    async def _read(self, volume: VolumeRecord, start: int, end: int) -> AsyncGenerator[bytes]:
        if start == end:
            return
        async for chunk in self.service.read_volume(volume, start, end):
            yield chunk
