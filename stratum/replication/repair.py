"""Drift repair: compare this site's versions with a target's and queue what it lacks.

A queue can miss versions: a metadata store restored from a backup, a bucket added to a
target's ``buckets`` after its versions were written, an operator's mistake on either side.
Every ``compare_interval`` the pusher of a target walks, bucket by bucket, this site's
version listing and the target's (ListObjectVersions, a page of 1,000 at a time on each side,
both in S3's order: key, then newest version first) side by side, and queues again
(:func:`stratum.replication.queue.requeue`) every version this site wrote (not a replica it
received) that the target does not list, under the rules of the bucket. Memory is a page
on each side, whatever the bucket's size.

Versions are matched by id, so the comparison only means something on a target that keeps
the ids it is sent (a Stratum granting this site replication rights): it is skipped until
the pusher has seen the target answer with an id it sent. A comparison in progress resumes,
after a restart, at the bucket it had reached: its progress and the last comparison's
figures are kept in the queue's database (format 1)::

    replq  0x01 target  -> 0x01 + JSON {"bucket": ..., "started": ..., "compared": ...,
                                         "resent": ..., "last": {...} | null}

(a queue entry's key starts with the target's name, never with 0x01).
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from stratum.config import ReplicationTarget
from stratum.meta import catalog, versions
from stratum.meta.records import RECORD_VERSION, BucketRecord, ObjectRecord
from stratum.meta.store import MetaStore, Tx
from stratum.meta.version_listing import list_versions
from stratum.replication import queue, rules
from stratum.replication.client import TargetClient
from stratum.service.replicas import ENABLED, REPLICA

PAGE = 1000
_Sort = tuple[bytes, bytes]


def progress_key(target: str) -> bytes:
    return b"\x01" + target.encode()


def read_progress(tx: Tx, target: str) -> dict[str, Any]:
    raw = tx.get(queue.DB, progress_key(target))
    if raw is None or raw[:1] != bytes([RECORD_VERSION]):
        return {}
    value = json.loads(bytes(raw[1:]))
    return value if isinstance(value, dict) else {}


def _write_progress(tx: Tx, target: str, progress: dict[str, Any]) -> None:
    tx.put(queue.DB, progress_key(target), bytes([RECORD_VERSION]) + json.dumps(progress).encode())


def _sort_key(key: str, version_id: str) -> _Sort | None:
    """Where a version sits in S3's listing order; None for a null version (no order)."""
    try:
        order = versions.parse_version_id(version_id)
    except versions.InvalidVersionId:
        return None
    if order is None:
        return None
    return key.encode("utf-8", "surrogateescape"), versions.invert(order)


@dataclass(frozen=True)
class Wanted:
    """Which versions of one bucket the target is to have."""

    whole: bool  # the configuration file's target lists the bucket: every key
    markers: bool
    prefixes: tuple[tuple[str, bool], ...]  # stored rules: (prefix, delete markers)

    def __call__(self, record: ObjectRecord) -> bool:
        if self.whole and (self.markers or not record.delete_marker):
            return True
        return any(
            record.key.startswith(prefix) and (markers or not record.delete_marker)
            for prefix, markers in self.prefixes
        )


def wanted(target: ReplicationTarget, bucket: BucketRecord) -> Wanted | None:
    if bucket.versioning != ENABLED:
        return None
    stored = tuple(
        (prefix, markers)
        for name, prefix, markers in rules.queue_rules(bucket)
        if name == target.name
    )
    whole = target.covers(bucket.name)
    if not whole and not stored:
        return None
    return Wanted(whole, target.delete_markers, stored)


class Comparison:
    """One full comparison of a target with this site, resumable at a bucket."""

    def __init__(
        self,
        meta: MetaStore,
        target: ReplicationTarget,
        client: TargetClient,
        now: Callable[[], float],
    ) -> None:
        self.meta = meta
        self.target = target
        self.client = client
        self.now = now

    async def run(self) -> dict[str, Any]:
        """Compare every bucket of the target (from where an interrupted run stopped);
        return the figures, also kept as the target's last comparison."""
        name = self.target.name
        progress = self.meta.read(functools.partial(read_progress, target=name))
        last = progress.get("last")
        if not progress.get("bucket"):
            progress = {"bucket": "", "started": self.now(), "compared": 0, "resent": 0}
        buckets = sorted(self.meta.read(catalog.list_buckets), key=lambda b: b.name)
        for bucket in buckets:
            if bucket.name < progress["bucket"]:
                continue
            rule = wanted(self.target, bucket)
            if rule is None:
                continue
            progress["bucket"] = bucket.name
            await self._save(progress, last)
            compared, resent = await self._bucket(bucket.name, rule)
            progress["compared"] += compared
            progress["resent"] += resent
        done = {
            "at": self.now(),
            "started": progress["started"],
            "compared": progress["compared"],
            "resent": progress["resent"],
        }
        await self._save({"bucket": ""}, done)
        return done

    async def _save(self, progress: dict[str, Any], last: Any) -> None:
        value = {**progress, "last": last}
        await self.meta.write(
            functools.partial(_write_progress, target=self.target.name, progress=value)
        )

    async def _bucket(self, bucket: str, rule: Wanted) -> tuple[int, int]:
        """Compare one bucket: (local versions compared, versions queued again)."""
        compared = resent = 0
        mine = aiter(self._local(bucket))
        theirs = aiter(self._remote(self.target.target_bucket(bucket)))
        there = await anext(theirs, None)
        async for place, record in mine:
            while there is not None and there < place:
                there = await anext(theirs, None)
            compared += 1
            if there == place:
                there = await anext(theirs, None)
                continue
            if record.replication == REPLICA or not rule(record):
                continue  # a replica the target lacks was removed there for good
            queued = await self.meta.write(
                functools.partial(
                    queue.requeue,
                    target=self.target.name,
                    bucket=bucket,
                    record=record,
                    now=self.now(),
                )
            )
            resent += int(queued)
        return compared, resent

    async def _local(self, bucket: str) -> AsyncIterator[tuple[_Sort, ObjectRecord]]:
        loop = asyncio.get_running_loop()
        key_marker = version_marker = ""
        while True:
            page = await loop.run_in_executor(  # a thousand records decoded: not on the loop
                None,
                self.meta.read,
                functools.partial(
                    list_versions,
                    bucket=bucket,
                    key_marker=key_marker,
                    version_marker=version_marker,
                    max_keys=PAGE,
                ),
            )
            for record, _latest in page.entries:
                place = _sort_key(record.key, record.version_id)
                if place is not None:
                    yield place, record
            if not page.is_truncated:
                return
            key_marker = page.next_key_marker or ""
            version_marker = page.next_version_id_marker or ""

    async def _remote(self, bucket: str) -> AsyncIterator[_Sort]:
        key_marker = version_marker = ""
        while True:
            listed, key_marker, version_marker = await self.client.list_versions(
                bucket, key_marker, version_marker, PAGE
            )
            for entry in listed:
                place = _sort_key(entry.key, entry.version_id)
                if place is not None:
                    yield place
            if not key_marker:
                return
