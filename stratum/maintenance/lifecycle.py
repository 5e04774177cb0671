"""The lifecycle worker: applies buckets' lifecycle rules in the background.

Every ``[lifecycle] interval`` the primary walks each bucket that has rules
(:mod:`stratum.service.lifecycle`), a page of versions at a time in ListObjectVersions
order (only the keys under the rules' prefixes: :func:`scopes`), and

- expires current versions an ``Expiration`` makes due: in a bucket whose versioning was
  ever set a delete marker is added (the version stays, noncurrent), in any other the object
  is removed;
- removes noncurrent versions ``NoncurrentVersionExpiration`` makes due (beyond the
  ``NewerNoncurrentVersions`` newest), and delete markers left as their key's only version
  (``ExpiredObjectDeleteMarker``, or when an ``Expiration`` would be due);
- aborts multipart uploads ``AbortIncompleteMultipartUpload`` makes due.

A version is removed only if it is still the one examined (a write meanwhile keeps the key
as written) and only if :func:`stratum.service.versioning.removal_refused` allows it: a
locked version survives every rule, and is counted. Removed versions' volumes go to the
garbage queue as any deleted object's do, so their space is free after the collector's
next pass.

Paced: at most ``rate`` versions are examined per second, a page (:data:`PAGE`) per read
transaction, so a pass over millions of objects holds neither the event loop nor memory
beyond a page. Resumable: where the pass stands (its start, bucket and markers) is written
to the ``info`` database after each page, format 1::

    info["lifecycle-pass"] = JSON {"v": 1, "started": epoch, "bucket": name,
                                   "key_marker": str, "version_marker": str}

and a pass interrupted by a restart resumes there; a finished pass deletes it. Due times
come from the injected clock (a test shortens the day with ``[lifecycle] day_seconds``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from stratum.config import LifecycleConfig
from stratum.meta import catalog, uploads, versions
from stratum.meta.records import BucketRecord, ObjectRecord
from stratum.meta.store import Tx
from stratum.service import lifecycle, versioning
from stratum.service.lifecycle import Rule
from stratum.service.multipart import MultipartService, NoSuchUpload
from stratum.service.objects import ObjectService
from stratum.util.clock import Clock
from stratum.util.periodic import Periodic

log = logging.getLogger("stratum.lifecycle")

PAGE = 200
CURSOR_KEY = b"lifecycle-pass"
CURSOR_FORMAT = 1

Sleep = Callable[[float], Awaitable[None]]


@dataclass
class PassReport:
    """What one pass did."""

    examined: int = 0
    expired: int = 0  # current versions given a delete marker or removed
    removed: int = 0  # noncurrent versions and delete markers removed for good
    aborted: int = 0  # multipart uploads
    locked: int = 0  # versions a rule made due that Object Lock kept
    buckets: list[str] = field(default_factory=list)


@dataclass
class _KeyState:
    """The key being walked (its versions may span pages): the newer version's write time
    and how many noncurrent versions of it were seen."""

    key: str | None = None
    newer_time: float = 0.0
    noncurrent_seen: int = 0
    marker: ObjectRecord | None = None  # the key's current version, if a delete marker


@dataclass
class _Plan:
    marks: list[str] = field(default_factory=list)  # keys to give a delete marker
    removals: list[tuple[str, str, str, str]] = field(default_factory=list)
    current_removals: int = 0  # of the removals, current versions of never-versioned keys


class LifecycleWorker:
    def __init__(
        self,
        service: ObjectService,
        multipart: MultipartService,
        config: LifecycleConfig,
        clock: Clock,
        *,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.service = service
        self.multipart = multipart
        self.config = config
        self.clock = clock
        self.day = config.day_seconds
        self._sleep = sleep
        self.page = PAGE  # versions per read transaction
        self.last: PassReport | None = None
        self._periodic = Periodic(
            "lifecycle",
            self.run_pass,
            interval=config.interval,
            first_delay=min(config.interval, 60.0),
            log=log,
            what="lifecycle pass",
        )

    def start(self) -> None:
        if self.config.enabled:
            self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    def wake(self) -> None:
        self._periodic.wake()

    # -- the pass -------------------------------------------------------------------------

    async def run_pass(self) -> PassReport:
        """One pass over every bucket with rules (resuming an interrupted one)."""
        meta = self.service.meta
        started = time.monotonic()
        cursor = meta.read(lambda tx: tx.get("info", CURSOR_KEY))
        state: dict[str, Any] = json.loads(cursor) if cursor else {}
        if state.get("v") != CURSOR_FORMAT:
            state = {"v": CURSOR_FORMAT, "started": self.clock.now(), "bucket": ""}
        report = PassReport()
        with_rules = functools.partial(catalog.buckets_with, setting=lifecycle.SETTING)
        buckets = await asyncio.get_running_loop().run_in_executor(None, meta.read, with_rules)
        for bucket in buckets:
            if bucket.name < state["bucket"]:
                continue
            if bucket.name > state["bucket"]:
                state.update(bucket=bucket.name, key_marker="", version_marker="")
            rules = lifecycle.compile_rules(bucket.settings[lifecycle.SETTING])
            report.buckets.append(bucket.name)
            if any(r.abort_days is not None for r in rules):
                await self._abort_uploads(bucket, rules, report)
            if any(_walks(r) for r in rules):
                await self._walk(bucket, rules, state, report)
        await meta.write(lambda tx: tx.delete("info", CURSOR_KEY))
        if report.buckets:
            log.info(
                "lifecycle pass done in %.1f s: %d versions examined, %d expired, %d removed,"
                " %d uploads aborted, %d kept by Object Lock",
                time.monotonic() - started,
                report.examined,
                report.expired,
                report.removed,
                report.aborted,
                report.locked,
            )
        self.last = report
        return report

    async def _walk(
        self, bucket: BucketRecord, rules: Sequence[Rule], state: dict[str, Any], report: PassReport
    ) -> None:
        for scope in scopes([r.filter.prefix for r in rules if _walks(r)]):
            await self._walk_scope(bucket, rules, scope, state, report)

    async def _walk_scope(
        self,
        bucket: BucketRecord,
        rules: Sequence[Rule],
        scope: str,
        state: dict[str, Any],
        report: PassReport,
    ) -> None:
        """The versions of keys under ``scope``, from the saved markers if they are in it."""
        key_state = _KeyState()
        while True:
            marker = state.get("key_marker", "")
            resume = marker >= scope  # a marker short of the scope is an earlier scope's
            look = functools.partial(
                self.service.list_versions,
                bucket.name,
                bucket.owner_id,
                prefix=scope,
                key_marker=marker if resume else "",
                version_marker=state.get("version_marker", "") if resume else "",
                max_keys=self.page,
            )
            # Off the loop: a page of versions read and decoded takes milliseconds.
            page = await asyncio.get_running_loop().run_in_executor(None, look)
            now = self.clock.now()
            plan = _Plan()
            for record, latest in page.entries:
                self._examine(bucket, rules, record, latest, key_state, plan, now)
            if not page.is_truncated:
                self._settle_marker(rules, key_state, plan, now)
            report.examined += len(page.entries)
            await self._apply(bucket, plan, report)
            if not page.is_truncated:
                return
            state.update(
                key_marker=page.next_key_marker or "",
                version_marker=page.next_version_id_marker or "",
            )
            save = functools.partial(_save_cursor, encoded=json.dumps(state).encode())
            await self.service.meta.write(save)
            await self._sleep(len(page.entries) / self.config.rate)

    def _examine(
        self,
        bucket: BucketRecord,
        rules: Sequence[Rule],
        record: ObjectRecord,
        latest: bool,
        state: _KeyState,
        plan: _Plan,
        now: float,
    ) -> None:
        if record.key != state.key:
            self._settle_marker(rules, state, plan, now)
            state.key, state.noncurrent_seen, state.marker = record.key, 0, None
        elif state.marker is not None:
            state.marker = None  # the marker has older versions: not an expired one yet
        written = versions.order_time(versions.order_of(record))
        if latest:
            if record.delete_marker:
                state.marker = record
            else:
                when, _rule = lifecycle.expiry_of(rules, record, self.day)
                if when <= now:
                    if bucket.versioning:
                        plan.marks.append(record.key)
                    else:
                        plan.removals.append(_target(record))
                        plan.current_removals += 1
        else:
            rule = lifecycle.noncurrent_expires(
                rules, record, state.newer_time, state.noncurrent_seen, now, self.day
            )
            if rule is not None:
                plan.removals.append(_target(record))
            state.noncurrent_seen += 1
        state.newer_time = written

    def _settle_marker(
        self, rules: Sequence[Rule], state: _KeyState, plan: _Plan, now: float
    ) -> None:
        """A current delete marker with no older version: removed once its rule is due."""
        marker, state.marker = state.marker, None
        if marker is not None and lifecycle.marker_expiry(rules, marker, self.day) <= now:
            plan.removals.append(_target(marker))

    async def _apply(self, bucket: BucketRecord, plan: _Plan, report: PassReport) -> None:
        if plan.marks:
            outcomes = await self.service.delete_objects(
                bucket.name, [(key, None) for key in plan.marks], bucket.owner_id
            )
            report.expired += sum(1 for o in outcomes if o.error is None)
        if plan.removals:
            now = self.clock.now()
            removed, refused = await self.service.meta.write(
                functools.partial(_remove, bucket=bucket.name, doomed=plan.removals, now=now)
            )
            self.service.wake_gc()
            current = min(plan.current_removals, len(removed))
            report.expired += current
            report.removed += len(removed) - current
            report.locked += refused

    async def _abort_uploads(
        self, bucket: BucketRecord, rules: Sequence[Rule], report: PassReport
    ) -> None:
        """Abort the uploads a rule says are due: a page of them at a time, read off the loop
        (a bucket may hold any number of uploads never completed)."""
        now = self.clock.now()
        loop = asyncio.get_running_loop()
        key_marker = id_marker = ""
        while True:
            look = functools.partial(
                uploads.list_uploads,
                bucket=bucket.name,
                key_marker=key_marker,
                upload_id_marker=id_marker,
                limit=self.page,
            )
            page = await loop.run_in_executor(None, self.service.meta.read, look)
            for upload in page.uploads:
                if lifecycle.abort_due(rules, upload.key, upload.initiated, self.day) > now:
                    continue
                try:
                    await self.multipart.abort(
                        bucket.name, upload.key, upload.upload_id, bucket.owner_id
                    )
                except NoSuchUpload:
                    continue
                report.aborted += 1
            if not page.is_truncated:
                return
            key_marker = page.next_key_marker or ""
            id_marker = page.next_upload_id_marker or ""


def scopes(prefixes: Sequence[str]) -> list[str]:
    """The fewest prefixes whose keys include every key under ``prefixes``, in order: each
    the shortest of those it begins (``[""]`` when a rule covers the whole bucket). Being
    none of them another's beginning, all keys under one sort before all under the next."""
    out: list[str] = []
    for prefix in sorted(set(prefixes)):
        if not out or not prefix.startswith(out[-1]):
            out.append(prefix)
    return out


def _walks(rule: Rule) -> bool:
    """Whether a rule needs the versions walked (not only the uploads)."""
    return (
        rule.expire_days is not None
        or rule.expire_date is not None
        or rule.expired_marker
        or rule.noncurrent_days is not None
    )


def _save_cursor(tx: Tx, encoded: bytes) -> None:
    tx.put("info", CURSOR_KEY, encoded)


def _target(record: ObjectRecord) -> tuple[str, str, str, str]:
    return record.key, record.version_id, record.order, record.volume_id


def _remove(
    tx: Tx, *, bucket: str, doomed: Sequence[tuple[str, str, str, str]], now: float
) -> tuple[list[ObjectRecord], int]:
    """Remove each version still as examined and not locked; (removed, kept by a lock)."""
    found = catalog.get_bucket(tx, bucket)
    if found is None:
        return [], 0
    removed: list[ObjectRecord] = []
    refused = 0
    for key, version_id, order, volume_id in doomed:
        target = versions.find(tx, bucket, key, version_id)
        if target is None or (target.order, target.volume_id) != (order, volume_id):
            continue  # written or removed meanwhile: what is there now was not examined
        if versioning.removal_refused(target, now) is not None:
            refused += 1
            continue
        gone = versioning.remove_version(tx, found, key, version_id, now)
        if gone is not None:
            versioning.retire(tx, [gone])
            removed.append(gone)
    return removed, refused
