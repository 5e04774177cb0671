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
the pusher has seen the target answer with an id it sent. What the pusher learnt is kept,
with the endpoint it learnt it from, so a restart that writes nothing still compares (an
endpoint changed in the configuration is not known again until it answers). A comparison
in progress resumes, after a restart, after the last page of versions it had compared.
Both, and the last comparison's figures, are kept in the queue's database (format 2)::

    replq  0x01 target  -> 0x02 + JSON {"bucket": ..., "key": ..., "version": ...,
                                         "started": ..., "compared": ..., "resent": ...,
                                         "last": {...} | null,
                                         "keeps_ids": {"endpoint": ..., "value": bool}}

``bucket``, ``key`` and ``version``: the bucket being compared ("" when none is) and the
listing's marker after its last page compared; ``keeps_ids`` absent: not known. Format 1
(first byte 0x01, still read) had neither the marker (a comparison resumed at the start of
its bucket) nor ``keeps_ids``. A queue entry's key starts with the target's name, never with
0x01.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from stratum.config import ReplicationTarget
from stratum.meta import catalog, versions
from stratum.meta.records import BucketRecord, ObjectRecord
from stratum.meta.store import MetaStore, Tx
from stratum.meta.version_listing import VersionPage, list_versions
from stratum.replication import queue, rules
from stratum.replication.client import TargetClient
from stratum.service.replicas import ENABLED, REPLICA

PAGE = 1000
PROGRESS_FORMAT = 2
_READ_FORMATS = (b"\x01", b"\x02")
_COMPARISON = ("bucket", "key", "version", "started", "compared", "resent")
_Sort = tuple[bytes, bytes]


def progress_key(target: str) -> bytes:
    return b"\x01" + target.encode()


def read_progress(tx: Tx, target: str) -> dict[str, Any]:
    raw = tx.get(queue.DB, progress_key(target))
    if raw is None or bytes(raw[:1]) not in _READ_FORMATS:
        return {}
    value = json.loads(bytes(raw[1:]))
    return value if isinstance(value, dict) else {}


def update_progress(tx: Tx, target: str, changes: Mapping[str, Any]) -> None:
    """Change some fields of the target's record (the pusher and a comparison each write
    their own)."""
    value = {**read_progress(tx, target), **changes}
    tx.put(queue.DB, progress_key(target), bytes([PROGRESS_FORMAT]) + json.dumps(value).encode())


def known_keeps_ids(progress: Mapping[str, Any], endpoint: str) -> bool | None:
    """Whether the target at ``endpoint`` was seen to keep the version ids it is sent;
    None: not known (never learnt, or learnt from another endpoint)."""
    known = progress.get("keeps_ids")
    if isinstance(known, dict) and known.get("endpoint") == endpoint:
        return bool(known.get("value"))
    return None


def note_keeps_ids(tx: Tx, target: str, endpoint: str, value: bool) -> None:
    update_progress(tx, target, {"keeps_ids": {"endpoint": endpoint, "value": value}})


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
    """One full comparison of a target with this site, resumable after its last page."""

    def __init__(
        self,
        meta: MetaStore,
        target: ReplicationTarget,
        client: TargetClient,
        now: Callable[[], float],
        page: int = PAGE,
    ) -> None:
        self.meta = meta
        self.target = target
        self.client = client
        self.now = now
        self.page = page  # versions per listing request, on each side

    async def run(self) -> dict[str, Any]:
        """Compare every bucket of the target (from where an interrupted run stopped);
        return the figures, also kept as the target's last comparison."""
        name = self.target.name
        progress = self.meta.read(functools.partial(read_progress, target=name))
        if not progress.get("bucket"):
            progress = {"bucket": "", "started": self.now(), "compared": 0, "resent": 0}
        progress.setdefault("key", "")  # format 1: from the start of its bucket
        progress.setdefault("version", "")
        buckets = sorted(self.meta.read(catalog.list_buckets), key=lambda b: b.name)
        for bucket in buckets:
            if bucket.name < progress["bucket"]:
                continue
            rule = wanted(self.target, bucket)
            if rule is None:
                continue
            if bucket.name != progress["bucket"]:
                progress.update(bucket=bucket.name, key="", version="")
                await self._save(progress)
            await self._bucket(bucket.name, rule, progress)
        done = {
            "at": self.now(),
            "started": progress["started"],
            "compared": progress["compared"],
            "resent": progress["resent"],
        }
        await self._save({"bucket": "", "key": "", "version": "", "last": done})
        return done

    async def _save(self, progress: Mapping[str, Any]) -> None:
        changes = {name: progress[name] for name in (*_COMPARISON, "last") if name in progress}
        await self.meta.write(
            functools.partial(update_progress, target=self.target.name, changes=changes)
        )

    async def _bucket(self, bucket: str, rule: Wanted, progress: dict[str, Any]) -> None:
        """Compare one bucket from the marker in ``progress`` on, counting there the local
        versions compared and those queued again; saved after every page."""
        key_marker, version_marker = progress["key"], progress["version"]
        remote = self._remote(self.target.target_bucket(bucket), key_marker, version_marker)
        theirs = aiter(remote)
        there = await anext(theirs, None)
        while True:
            page = await self._local_page(bucket, key_marker, version_marker)
            for record, _latest in page.entries:
                place = _sort_key(record.key, record.version_id)
                if place is None:
                    continue
                while there is not None and there < place:
                    there = await anext(theirs, None)
                progress["compared"] += 1
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
                progress["resent"] += int(queued)
            if not page.is_truncated:
                return
            key_marker = page.next_key_marker or ""
            version_marker = page.next_version_id_marker or ""
            progress.update(key=key_marker, version=version_marker)
            await self._save(progress)

    async def _local_page(self, bucket: str, key_marker: str, version_marker: str) -> VersionPage:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(  # a thousand records decoded: not on the loop
            None,
            self.meta.read,
            functools.partial(
                list_versions,
                bucket=bucket,
                key_marker=key_marker,
                version_marker=version_marker,
                max_keys=self.page,
            ),
        )

    async def _remote(
        self, bucket: str, key_marker: str, version_marker: str
    ) -> AsyncIterator[_Sort]:
        """The target's versions after the marker (a Stratum's listing resumes at a
        version's place in the order even when it lacks that version)."""
        while True:
            listed, key_marker, version_marker = await self.client.list_versions(
                bucket, key_marker, version_marker, self.page
            )
            for entry in listed:
                place = _sort_key(entry.key, entry.version_id)
                if place is not None:
                    yield place
            if not key_marker:
                return
