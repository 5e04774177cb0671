"""The object service: buckets and objects over metadata and tier storage.

This is the layer the S3 API calls. It knows objects, buckets, owners and
volumes; it does not know HTTP (the S3 layer translates) nor shard files (the
storage layer's business).

Write path of a PUT (crash-safe at every step):

1. The body streams into the hot tier's storage: small objects (at most
   ``small_threshold`` bytes) into replicated segment records, larger ones through an
   erasure writer, stripe by stripe. The data is durable (fsynced) but no key
   points at it.
2. Digests the client declared are checked; a mismatch deletes the data.
3. One metadata transaction checks conditions, records the volume and makes it a version
   of the key (:mod:`stratum.service.versioning`: in a never-versioned bucket the key's
   one object), and moves the volumes of the versions it replaced (if any) to the garbage
   queue.
4. A background collector frees garbage volumes once no read in flight uses them.

A crash before 3 leaves only unreferenced data, swept at the next start; a crash
after 3 leaves the new object, its predecessor queued for collection.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import logging
from collections import Counter
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from typing import Any, TypeVar

from stratum.block.errors import StorageFull
from stratum.block.tierstore import Hasher, TierStore
from stratum.meta import catalog, uploads, versions
from stratum.meta.catalog import ListPage
from stratum.meta.records import RECENT_READS, BucketRecord, ObjectRecord, VolumeRecord
from stratum.meta.store import MetaStore, Tx
from stratum.meta.version_listing import VersionPage, list_versions
from stratum.service import amend, deletes, errors, locks, replicas, versioning
from stratum.service.deletes import DeleteOutcome
from stratum.service.garbage import MULTI as MULTI
from stratum.service.garbage import GarbageCollector, VolumeStorage
from stratum.service.ids import new_volume_id
from stratum.service.readers import ReadingTable
from stratum.util.clock import Clock
from stratum.util.periodic import Periodic

log = logging.getLogger("stratum.objects")

T = TypeVar("T")

RATE_HALF_LIFE = 7 * 86400.0
ACCESS_FLUSH_INTERVAL = 5.0


@dataclass(frozen=True)
class PutOptions:
    """What a PUT declares beyond its body."""

    owner_id: str
    content_type: str = "binary/octet-stream"
    user_meta: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    storage_class: str = ""
    size_hint: int | None = None  # Content-Length (decoded), when known
    expected_md5: bytes | None = None  # Content-MD5, raw 16 bytes
    # extra digests to compute over the body (off the event loop for large bodies)
    hashers: Sequence[Hasher] = ()
    # called after the body is stored and before it becomes visible; raises to refuse it
    verify: Callable[[], None] | None = None
    # evaluated inside the commit transaction against the key's current record
    condition: Callable[[ObjectRecord | None], None] | None = None
    checksums: Mapping[str, str] = field(default_factory=dict)
    # extra fields for the on-disk header (multipart parts say which upload they belong to)
    header_meta: Mapping[str, Any] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)  # the new version's tag set
    # the new version's access control list, stored form (stratum.access.acl; {} = private)
    acl: Mapping[str, Any] = field(default_factory=dict)
    # the Object Lock fields the write asks for (retention, legal hold; its tags and ACL are
    # the two fields above); the bucket's default retention applies when it names none
    # (stratum.service.locks)
    amendable: Mapping[str, Any] = field(default_factory=dict)
    # a version another site made, written with its order and time (stratum.service.replicas)
    replica: replicas.Replica | None = None


@dataclass(frozen=True)
class ObjectView:
    """An object as a reader sees it at one instant."""

    record: ObjectRecord
    volume: VolumeRecord
    versioned: bool = False  # its bucket's versioning was ever set: its version id is shown
    bucket: BucketRecord | None = None  # as read with it (its settings decide some headers)


def decayed_rate(rate: float, since: float, now: float) -> float:
    """An access rate (reads per day) decayed with a half-life of RATE_HALF_LIFE."""
    if now <= since:
        return rate
    return float(rate * 0.5 ** ((now - since) / RATE_HALF_LIFE))


def apply_reads(volume: VolumeRecord, count: int, last: float) -> None:
    """Fold ``count`` reads, the last at ``last``, into a volume's access signals."""
    since = volume.last_access or volume.created
    volume.access_rate = decayed_rate(volume.access_rate, since, last) + count
    volume.access_count += count
    volume.last_access = max(volume.last_access, last)
    volume.recent = (volume.recent + [last] * min(count, RECENT_READS))[-RECENT_READS:]


class ObjectService:
    def __init__(
        self,
        meta: MetaStore,
        tiers: Mapping[str, TierStore],
        clock: Clock,
        *,
        small_threshold: int,
        max_object_size: int,
    ) -> None:
        self.meta = meta
        self.tiers = dict(tiers)
        self.clock = clock
        self.small_threshold = small_threshold
        self.max_object_size = max_object_size
        self._reading: Counter[str] = Counter()
        # part volume id -> the multipart volume being read that contains it (damage reports)
        self.parent_of: dict[str, str] = {}
        # tiers outside this machine (the cold tier), set up by the node
        self.remote: dict[str, VolumeStorage] = {}
        # called when a write pins an object to a tier, so the move happens within seconds
        self.on_pinned: Callable[[], None] | None = None
        self.garbage = GarbageCollector(meta, clock, self.tiers, self.storage, self._reading)
        self._access_flusher = Periodic(
            "access",
            self.flush_access,
            interval=ACCESS_FLUSH_INTERVAL,
            log=log,
            what="recording access signals",
        )
        # volume id -> (reads, last read): flushed to LMDB in one transaction per interval
        self._pending_access: dict[str, tuple[int, float]] = {}
        # told of each batch of reads once recorded, on the loop: (volume as recorded, its
        # previous read or write time, reads, last read); the tier engine learns the gaps
        self.on_reads: Callable[[list[tuple[VolumeRecord, float, int, float]]], None] | None = None
        # A worker process publishes its own reads (see stratum.service.readers).
        self.reading_table: ReadingTable | None = None
        self.flush_peers: Callable[[], Awaitable[None]] | None = None  # the workers' batches
        self.orders = versions.OrderClock()
        # called in the transaction that writes a new version or delete marker, before it
        # is written: replication queues it there (set up by the node)
        self.on_version: Callable[[Tx, BucketRecord, ObjectRecord], None] | None = None
        # called in the transaction that changes a version's amendable fields (see
        # stratum.service.amend), after the change: replication queues it too
        self.on_amend: Callable[[Tx, BucketRecord, ObjectRecord], None] | None = None

    # -- life cycle -------------------------------------------------------------------

    async def start(self, *, background: bool = True) -> None:
        """``background``: also collect garbage and sweep orphans (one process does)."""
        self._access_flusher.start()
        if background:
            await self.garbage.start(new_volume_id(self.clock.now())[:12])

    async def stop(self) -> None:
        await self._access_flusher.stop()
        await self.flush_access()
        await self.garbage.stop()

    # -- access signals ---------------------------------------------------------------

    def record_access(self, volume_id: str) -> None:
        """Count a read (GET or copy source); recorded in batches, not per request."""
        count, _last = self._pending_access.get(volume_id, (0, 0.0))
        self._pending_access[volume_id] = (count + 1, self.clock.now())

    async def flush_access(self) -> None:
        if not self._pending_access:
            return
        pending, self._pending_access = self._pending_access, {}

        def apply(tx: Tx) -> list[tuple[VolumeRecord, float, int, float]]:
            applied = []
            for volume_id, (count, last) in pending.items():
                volume = catalog.get_volume(tx, volume_id)
                if volume is None:
                    continue
                previous = max(volume.last_access, volume.created)
                apply_reads(volume, count, last)
                catalog.put_volume(tx, volume)
                applied.append((volume, previous, count, last))
            return applied

        applied = await self.meta.write(apply)
        if self.on_reads is not None:
            self.on_reads(applied)

    async def flush_access_everywhere(self) -> None:
        """Record the reads every server process counted so far (before a tiering pass)."""
        await self.flush_access()
        if self.flush_peers is not None:
            await self.flush_peers()

    @property
    def hot(self) -> TierStore:
        return self.tiers["hot"]

    def storage(self, tier: str) -> VolumeStorage:
        """Where a tier's volumes are read and freed: a local tier or a remote (cold) one."""
        local = self.tiers.get(tier)
        if local is not None:
            return local
        return self.remote[tier]

    # -- buckets ----------------------------------------------------------------------

    async def list_buckets(
        self,
        owner_id: str,
        *,
        prefix: str = "",
        after: str = "",
        region: str = "",
        limit: int = 10_000,
    ) -> tuple[list[BucketRecord], bool]:
        """A page of the owner's buckets by name (see :func:`catalog.bucket_page`), and
        whether more follow. Read in a thread: the walk passes other owners' buckets, and a
        page holds up to 10,000."""
        page = functools.partial(
            catalog.bucket_page,
            owner_id=owner_id,
            prefix=prefix,
            after=after,
            region=region,
            limit=limit,
        )
        return await asyncio.get_running_loop().run_in_executor(None, self.meta.read, page)

    def find_bucket(self, name: str) -> BucketRecord | None:
        """A bucket's record whoever owns it: for access control and CORS, decided above the
        service."""
        return self.meta.read(lambda tx: catalog.get_bucket(tx, name))

    def get_bucket(self, name: str, owner_id: str) -> BucketRecord:
        bucket = self.meta.read(lambda tx: catalog.get_bucket(tx, name))
        return self._owned(bucket, name, owner_id)

    @staticmethod
    def _owned(bucket: BucketRecord | None, name: str, owner_id: str) -> BucketRecord:
        if bucket is None:
            raise errors.NoSuchBucket(bucket=name)
        if bucket.owner_id != owner_id:
            raise errors.AccessDenied(bucket=name)
        return bucket

    async def create_bucket(
        self, name: str, owner_id: str, region: str, *, object_lock: bool = False
    ) -> BucketRecord:
        """``object_lock``: with Object Lock, and so versioning Enabled, for good (the
        configuration is on disk before the bucket exists, so recovery cannot lose it)."""
        record = BucketRecord(name=name, owner_id=owner_id, created=self.clock.now(), region=region)
        if object_lock:
            record.object_lock, record.versioning = True, versioning.ENABLED
            record.config_record = await versioning.write_config(self, record)

        def create(tx: Tx) -> BucketRecord:
            existing = catalog.get_bucket(tx, name)
            if existing is not None:
                if existing.owner_id != owner_id:
                    raise errors.BucketAlreadyExists(bucket=name)
                if region == "us-east-1":
                    return existing  # AWS's legacy us-east-1 answer: 200, nothing changed
                raise errors.BucketAlreadyOwnedByYou(bucket=name)
            catalog.put_bucket(tx, record)
            return record

        if not object_lock:
            return await self.meta.write(create)
        free = functools.partial(self.hot.delete, "seg")
        created = await self.commit_or_free(create, free, record.config_record["location"])
        if created is not record:  # it existed: its record is not the one just written
            await free(record.config_record["location"])
        return created

    async def configure_bucket(
        self, name: str, owner_id: str, change: Callable[[BucketRecord], bool]
    ) -> BucketRecord:
        """Change a bucket's configuration: see :func:`stratum.service.versioning.configure`."""
        return await versioning.configure(self, name, owner_id, change)

    async def set_bucket_setting(
        self, name: str, owner_id: str, setting: str, value: Any | None
    ) -> BucketRecord:
        """Store one of a bucket's sub-resource configurations (``None`` removes it)."""

        def change(record: BucketRecord) -> bool:
            if record.settings.get(setting) == value:
                return False
            settings = dict(record.settings)  # a new dict: the record may be shared
            if value is None:
                settings.pop(setting, None)
            else:
                settings[setting] = value
            record.settings = settings
            return True

        return await self.configure_bucket(name, owner_id, change)

    async def delete_bucket(self, name: str, owner_id: str) -> None:
        def delete(tx: Tx) -> None:
            record = self._owned(catalog.get_bucket(tx, name), name, owner_id)
            if not catalog.bucket_is_empty(tx, name):
                raise errors.BucketNotEmpty(bucket=name)  # locked versions included
            versioning.retire_config_record(tx, record)
            # Unfinished multipart uploads don't keep a bucket alive (as AWS): abort them.
            for upload in uploads.uploads_in_bucket(tx, name):
                for part in uploads.delete_upload(tx, name, upload.upload_id):
                    catalog.retire_volume(tx, part.volume_id)
            catalog.delete_bucket(tx, name)

        await self.meta.write(delete)
        self.garbage.wake()

    # -- reading ----------------------------------------------------------------------

    def head_object(
        self, bucket: str, key: str, owner_id: str, version_id: str | None = None
    ) -> ObjectView:
        """The current object of ``key``, or the version ``version_id`` (or ``null``) of it.

        Raises NoSuchKey, :class:`~stratum.service.versioning.NoSuchVersion` or
        :class:`~stratum.service.versioning.DeleteMarkerFound`."""

        def look(tx: Tx) -> ObjectView:
            record = self._owned(catalog.get_bucket(tx, bucket), bucket, owner_id)
            found = versioning.lookup(tx, record, key, version_id)
            volume = catalog.get_volume(tx, found.volume_id)
            if volume is None:  # a record always has its volume; guard anyway
                raise errors.NoSuchKey(bucket=bucket, key=key)
            return ObjectView(found, volume, bool(record.versioning), record)

        return self.meta.read(look)

    @contextlib.contextmanager
    def reading(self, volume: VolumeRecord) -> Iterator[None]:
        """Keep ``volume`` from being freed while the block runs: a GET, a copy, a scrub's or
        the healer's check. The collector skips the volumes counted here; in a worker process
        the read is also entered in its table, which the primary's collector consults."""
        vid = volume.volume_id
        self._reading[vid] += 1
        slot = self.reading_table.enter(vid) if self.reading_table is not None else -1
        try:
            yield
        finally:
            if self.reading_table is not None:
                self.reading_table.leave(slot)
            self._reading[vid] -= 1
            if not self._reading[vid]:
                del self._reading[vid]
                if volume.layout == MULTI:
                    for part in volume.location["parts"]:
                        self.parent_of.pop(part["volume_id"], None)

    async def read_volume(self, volume: VolumeRecord, start: int, end: int) -> AsyncIterator[bytes]:
        """Stream bytes ``[start, end)`` of a volume; the volume is not freed meanwhile."""
        with self.reading(volume):
            tier = self.storage(volume.tier)
            if volume.layout != MULTI:
                async for chunk in tier.read(volume.layout, volume.location, start, end):
                    yield chunk
                return
            # A completed multipart upload: its parts' volumes, end to end.
            offset = 0
            for part in volume.location["parts"]:
                self.parent_of[part["volume_id"]] = volume.volume_id
                size = int(part["size"])
                lo, hi = max(start, offset), min(end, offset + size)
                if lo < hi:
                    async for chunk in tier.read(
                        part["layout"], part["location"], lo - offset, hi - offset
                    ):
                        yield chunk
                offset += size
                if offset >= end:
                    break

    def list_objects(self, bucket: str, owner_id: str, **params: Any) -> ListPage:
        """A page of current objects: ``params`` as :func:`stratum.meta.catalog.list_objects`."""
        walk = functools.partial(catalog.list_objects, bucket=bucket, **params)
        return self._read_owned(bucket, owner_id, walk)

    def list_versions(self, bucket: str, owner_id: str, **params: Any) -> VersionPage:
        """A page of versions: ``params`` as :func:`stratum.meta.version_listing.list_versions`."""
        walk = functools.partial(list_versions, bucket=bucket, **params)
        return self._read_owned(bucket, owner_id, walk)

    def _read_owned(self, bucket: str, owner_id: str, fn: Callable[[Tx], T]) -> T:
        """``fn`` in a read transaction, once the bucket is known to be the owner's."""

        def read(tx: Tx) -> T:
            self._owned(catalog.get_bucket(tx, bucket), bucket, owner_id)
            return fn(tx)

        return self.meta.read(read)

    # -- writing ----------------------------------------------------------------------

    def new_version(
        self, bucket: BucketRecord, key: str, tx: Tx, now: float
    ) -> versioning.NewVersion:
        """The version a write of ``key`` now makes: in a bucket that was ever versioned its
        order is above the key's newest version, whatever the clock says."""
        above = versions.newest_order(tx, bucket.name, key) if bucket.versioning else None
        order = self.orders.next(now, above)
        return versioning.NewVersion(
            order, versioning.version_id_for(bucket.versioning, order), bucket.versioning
        )

    def plan_write(
        self,
        bucket: str,
        key: str,
        owner_id: str,
        now: float,
        condition: Callable[[ObjectRecord | None], None] | None = None,
        requested: Mapping[str, Any] | None = None,
        replica: replicas.Replica | None = None,
    ) -> versioning.NewVersion:
        """Check the bucket (and fail fast on a write condition) before a body is stored;
        ``requested``: the amendable fields the write asks for (see PutOptions); a replica
        keeps the order its source gave it."""

        def look(tx: Tx) -> versioning.NewVersion:
            record = self._owned(catalog.get_bucket(tx, bucket), bucket, owner_id)
            if condition is not None:  # checked again at commit
                condition(catalog.get_object(tx, bucket, key))
            if replica is not None:
                replicas.check_bucket(record)
                new = versioning.NewVersion(replica.order, replica.version_id, record.versioning)
            else:
                new = self.new_version(record, key, tx, now)
            new.fields.update(locks.creation_fields(requested or {}, record, now))
            return new

        return self.meta.read(look)

    def note_version(self, tx: Tx, bucket: BucketRecord, record: ObjectRecord) -> None:
        """A new version or delete marker is about to be written in ``tx`` (see on_version)."""
        if self.on_version is not None:
            self.on_version(tx, bucket, record)

    def note_amend(self, tx: Tx, bucket: str, record: ObjectRecord) -> None:
        """A version's amendable fields changed in ``tx`` (see on_amend)."""
        if self.on_amend is not None:
            found = catalog.get_bucket(tx, bucket)
            if found is not None:
                self.on_amend(tx, found, record)

    async def put_object(
        self, bucket: str, key: str, body: AsyncIterable[bytes], opts: PutOptions
    ) -> ObjectRecord:
        if opts.size_hint is not None and opts.size_hint > self.max_object_size:
            self.get_bucket(bucket, opts.owner_id)
            raise errors.EntityTooLarge()
        now = self.clock.now()
        plan = self.plan_write(
            bucket, key, opts.owner_id, now, opts.condition, opts.amendable, opts.replica
        )
        opts = dataclasses.replace(opts, header_meta={**opts.header_meta, **plan.header()})
        volume = await self.store_body(bucket, key, body, opts, now)
        volume.order = plan.order.hex()
        record = plan.stamp(
            ObjectRecord(
                key=key,
                volume_id=volume.volume_id,
                size=volume.size,
                etag=f'"{volume.md5}"',
                last_modified=now,
                content_type=opts.content_type,
                user_meta=dict(opts.user_meta),
                headers=dict(opts.headers),
                storage_class=opts.storage_class,
                checksums=dict(opts.checksums),
                owner_id=opts.owner_id,
                tags=dict(opts.tags),
                acl=dict(opts.acl),
            )
        )
        if opts.replica is not None:
            opts.replica.stamp(record)
        await self.commit_or_free(
            self._commit_fn(bucket, record, volume, opts), self.free_volume, volume
        )
        if opts.storage_class and self.on_pinned is not None:
            self.on_pinned()
        return record

    async def commit_or_free(
        self,
        commit: Callable[[Tx], T],
        free: Callable[[Any], Awaitable[None]],
        stored: Any,
    ) -> T:
        """Commit the metadata that makes ``stored`` data visible, or free the data.

        If the caller is cancelled the commit's outcome is not ours to know (the writer
        thread runs it regardless, and MetaStore.write waits for it): the data is then
        left alone, since a committed object may point at it; an uncommitted one is an
        orphan for the start-up sweep.
        """
        try:
            result = await self.meta.write(commit)
        except asyncio.CancelledError:
            raise
        except BaseException:
            await free(stored)
            raise
        self.garbage.wake()
        return result

    def _commit_fn(
        self, bucket: str, record: ObjectRecord, volume: VolumeRecord, opts: PutOptions
    ) -> Callable[[Tx], None]:
        def commit(tx: Tx) -> None:
            found = self._owned(catalog.get_bucket(tx, bucket), bucket, opts.owner_id)
            if opts.condition is not None:
                opts.condition(catalog.get_object(tx, bucket, record.key))
            if opts.replica is not None:
                replicas.check_new(tx, found, record.key, opts.replica)
            catalog.put_volume(tx, volume)
            self.note_version(tx, found, record)
            versioning.retire(tx, versioning.write_version(tx, found, record, self.clock.now()))

        return commit

    async def store_body(
        self, bucket: str, key: str, body: AsyncIterable[bytes], opts: PutOptions, now: float
    ) -> VolumeRecord:
        """Stream the body into the hot tier; return its (not yet committed) volume.

        Meanwhile the metadata writer knows a commit is coming (:meth:`MetaStore.coming`):
        every caller commits the volume next, so others' commits may wait a moment for it.
        """
        with self.meta.coming():
            return await self._store_body(bucket, key, body, opts, now)

    async def _store_body(
        self, bucket: str, key: str, body: AsyncIterable[bytes], opts: PutOptions, now: float
    ) -> VolumeRecord:
        tier = self.hot
        if tier.online_count() < tier.min_disks_for_writes():
            raise errors.TierUnavailable(
                f"only {tier.online_count()} of {len(tier.disks)} disks of the "
                f"{tier.layout.name} tier are online"
            )
        volume_id = new_volume_id(now)
        # Written into the shard/segment headers so a lost metadata store can be rebuilt
        # from the disks (see stratum.maintenance.recovery).
        header_meta: dict[str, Any] = {
            "kind": "object",
            "bucket": bucket,
            "key": key,
            "created": now,
            "owner_id": opts.owner_id,
            "content_type": opts.content_type,
            "user_meta": dict(opts.user_meta),
            "headers": dict(opts.headers),
            "storage_class": opts.storage_class,
            **({"tags": dict(opts.tags)} if opts.tags else {}),
            **opts.header_meta,
        }
        if opts.acl:  # most objects have none: their owner's private ACL
            header_meta["acl"] = dict(opts.acl)
        buffered: list[bytes] = []
        size = 0
        it = aiter(body)
        writer: Any = None
        try:
            async for chunk in it:
                size += len(chunk)
                if size > self.max_object_size:
                    raise errors.EntityTooLarge()
                buffered.append(chunk)
                if size > self.small_threshold:
                    break
            if size > self.small_threshold:
                writer = tier.ec_writer(volume_id, header_meta, opts.hashers)
                for chunk in buffered:
                    await writer.write(chunk)
                buffered.clear()
                async for chunk in it:
                    size += len(chunk)
                    if size > self.max_object_size:
                        raise errors.EntityTooLarge()
                    await writer.write(chunk)
                self._check_size(size, opts)
                ec_loc = await writer.finish()
                writer = None
                location: dict[str, Any] = ec_loc.to_dict()
                md5_hex: str = ec_loc.md5_hex
                layout = "ec"
            else:
                self._check_size(size, opts)
                data = b"".join(buffered)
                md5_hex = hashlib.md5(data).hexdigest()
                for h in opts.hashers:
                    h.update(data)
                location = await tier.put_small(volume_id, data, header_meta)
                layout = "seg"
        except StorageFull as exc:
            if writer is not None:
                await writer.abort()
            raise errors.InsufficientStorage(str(exc)) from exc
        except BaseException:
            if writer is not None:
                await writer.abort()
            raise
        volume = VolumeRecord(
            volume_id=volume_id,
            tier=tier.layout.name,
            layout=layout,
            location=location,
            size=size,
            md5=md5_hex,
            created=now,
            last_access=now,
            bucket=bucket,
            key=key,
        )
        try:
            if opts.expected_md5 is not None and opts.expected_md5 != bytes.fromhex(md5_hex):
                raise errors.BadDigest()
            if opts.verify is not None:
                opts.verify()
        except BaseException:
            await self.free_volume(volume)
            raise
        return volume

    @staticmethod
    def _check_size(size: int, opts: PutOptions) -> None:
        if opts.size_hint is not None and size != opts.size_hint:
            raise errors.IncompleteBody(f"expected {opts.size_hint} bytes, got {size}")

    async def delete_object(
        self,
        bucket: str,
        key: str,
        owner_id: str,
        version_id: str | None = None,
        *,
        bypass_governance: bool = False,
        replica: replicas.Replica | None = None,
    ) -> DeleteOutcome:
        """Delete the key (a delete marker in a versioned bucket) or one version of it;
        ``replica``: a delete marker another site made (stratum.service.replicas)."""
        [outcome] = await deletes.delete(
            self,
            bucket,
            [(key, version_id)],
            owner_id,
            bypass_governance=bypass_governance,
            replica=replica,
        )
        if outcome.error is not None:
            raise outcome.error
        return outcome

    async def delete_objects(
        self,
        bucket: str,
        targets: Sequence[tuple[str, str | None]],
        owner_id: str,
        *,
        bypass_governance: bool = False,
    ) -> list[DeleteOutcome]:
        """Delete many keys or versions in one transaction; each target's outcome."""
        return await deletes.delete(
            self, bucket, targets, owner_id, bypass_governance=bypass_governance
        )

    # Change a version's lock fields, legal hold, tags or ACL after it was written, durably
    # on disk too: amend_version(bucket, key, version_id, owner_id, change), see
    # stratum.service.amend.amend_version.
    amend_version = amend.amend_version

    async def replace_metadata(
        self, bucket: str, key: str, opts: PutOptions, expect_volume: str
    ) -> ObjectRecord:
        """Copy an object onto itself with new metadata: the data stays where it is, and so
        does its place in the key's history (its order, which the data's header and the
        records of later changes name). Its tags and ACL become those of ``opts`` as
        PutObjectTagging and PutObjectAcl would set them (:func:`amend.amend_version`), and
        that amend record carries the new metadata too, so recovery from the disks finds
        them all; the record of an earlier change is freed."""

        def replace(tx: Tx) -> ObjectRecord:
            found = self._owned(catalog.get_bucket(tx, bucket), bucket, opts.owner_id)
            if found.versioning:  # there every version has a volume of its own: copy instead
                raise errors.ObjectServiceError("metadata replaced in place in a versioned bucket")
            current = catalog.get_object(tx, bucket, key)
            if current is None or current.volume_id != expect_volume:
                raise errors.NoSuchKey(bucket=bucket, key=key)
            if opts.condition is not None:
                opts.condition(current)
            record = dataclasses.replace(
                current,
                last_modified=self.clock.now(),
                content_type=opts.content_type,
                user_meta=dict(opts.user_meta),
                headers=dict(opts.headers),
                storage_class=opts.storage_class,
                owner_id=opts.owner_id,
                order=versions.order_of(current).hex(),
            )
            catalog.put_object(tx, bucket, record)
            return record

        record = await self.meta.write(replace)
        if opts.storage_class and self.on_pinned is not None:
            self.on_pinned()
        setting = amend.setting(tags=dict(opts.tags), acl=dict(opts.acl))

        def change(now_stored: ObjectRecord) -> bool:  # not an object written since
            if now_stored.volume_id != expect_volume:
                return False
            setting(now_stored)
            return True  # always recorded: the amend record carries the new metadata too

        return await self.amend_version(bucket, key, record.version_id, opts.owner_id, change)

    # -- garbage (see stratum.service.garbage) ----------------------------------------

    async def sweep_orphans(self) -> int:
        return await self.garbage.sweep_orphans()

    def wake_gc(self) -> None:
        """Something was retired: let the collector run now rather than at its next tick."""
        self.garbage.wake()

    async def free_volume(self, volume: VolumeRecord) -> None:
        await self.garbage.free_volume(volume)

    async def collect_garbage(self) -> int:
        return await self.garbage.collect()
