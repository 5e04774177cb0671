"""Multipart uploads over the object service.

Each part is stored like a small or large object (a volume of its own in the hot
tier) and recorded under its upload. Completing an upload does not copy data: one
metadata transaction creates the object's volume with layout ``multi``, whose
location lists the part volumes in order, points the key at it, and drops the
upload. Parts uploaded but left out of the completion, and parts replaced by a
re-upload, go to the garbage queue like any replaced volume.

The ETag of a completed upload is the MD5 of the concatenated binary part MD5s,
then ``-N`` (what rclone and awscli verify).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
from collections.abc import AsyncIterable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from stratum.meta import catalog, uploads
from stratum.meta.records import (
    BucketRecord,
    ObjectRecord,
    PartRecord,
    UploadRecord,
    VolumeRecord,
)
from stratum.meta.store import Tx
from stratum.service import errors, replicas, versioning
from stratum.service.ids import new_volume_id
from stratum.service.objects import MULTI, ObjectService, PutOptions
from stratum.util.periodic import Periodic

log = logging.getLogger("stratum.multipart")

MIN_PART_SIZE = 5 << 20
MAX_PARTS = 10_000
EXPIRY_CHECK_INTERVAL = 3600.0


class NoSuchUpload(errors.ObjectServiceError):
    pass


class InvalidPart(errors.ObjectServiceError):
    pass


class EntityTooSmall(errors.ObjectServiceError):
    pass


@dataclass(frozen=True)
class CompletedPart:
    part_number: int
    etag: str  # as the client sent it (quotes optional)
    checksums: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PartsPage:
    upload: UploadRecord
    parts: list[PartRecord]
    is_truncated: bool
    next_marker: int | None


def _unquote(etag: str) -> str:
    return etag.strip().strip('"')


def _part_checksums(upload: UploadRecord, parts: Sequence[PartRecord]) -> list[str]:
    """Each part's value of the upload's checksum, when it has one and every part has it."""
    alg = upload.checksum_algorithm
    values = [p.checksums.get(alg, "") for p in parts] if alg else []
    return values if all(values) else []


def multipart_etag(part_etags: Sequence[str], count: int) -> str:
    digest = hashlib.md5(b"".join(bytes.fromhex(_unquote(e)) for e in part_etags))
    return f'"{digest.hexdigest()}-{count}"'


class MultipartService:
    def __init__(self, objects: ObjectService, *, expiry: float) -> None:
        self.objects = objects
        self.meta = objects.meta
        self.clock = objects.clock
        self.expiry = expiry
        self._expirer = Periodic(
            "multipart-expiry",
            self.expire,
            interval=min(EXPIRY_CHECK_INTERVAL, max(expiry / 4, 1.0)),
            first_delay=0,
            log=log,
            what="expiring stale uploads",
        )

    async def start(self) -> None:
        """Abort stale uploads now, then every quarter of the expiry (at most hourly)."""
        self._expirer.start()

    async def stop(self) -> None:
        await self._expirer.stop()

    # -- uploads ----------------------------------------------------------------------

    async def create(
        self,
        bucket: str,
        key: str,
        opts: PutOptions,
        *,
        checksum: str = "",
        checksum_type: str = "",
    ) -> UploadRecord:
        record = UploadRecord(
            upload_id=new_volume_id(self.clock.now()),
            bucket=bucket,
            key=key,
            owner_id=opts.owner_id,
            initiated=self.clock.now(),
            content_type=opts.content_type,
            user_meta=dict(opts.user_meta),
            headers=dict(opts.headers),
            storage_class=opts.storage_class,
            checksum_algorithm=checksum,
            checksum_type=checksum_type,
            tags=dict(opts.tags),
            acl=dict(opts.acl),
            amendable=dict(opts.amendable),
        )

        def create(tx: Tx) -> None:
            self.objects._owned(catalog.get_bucket(tx, bucket), bucket, opts.owner_id)
            uploads.put_upload(tx, record)

        await self.meta.write(create)
        return record

    def get(self, bucket: str, key: str, upload_id: str, owner_id: str) -> UploadRecord:
        def look(tx: Tx) -> UploadRecord:
            return self._upload(tx, bucket, key, upload_id, owner_id)

        return self.meta.read(look)

    def _upload(self, tx: Tx, bucket: str, key: str, upload_id: str, owner_id: str) -> UploadRecord:
        return self._upload_in(tx, bucket, key, upload_id, owner_id)[0]

    def _upload_in(
        self, tx: Tx, bucket: str, key: str, upload_id: str, owner_id: str
    ) -> tuple[UploadRecord, BucketRecord]:
        """The upload in progress for ``key``, and its bucket."""
        found = self.objects._owned(catalog.get_bucket(tx, bucket), bucket, owner_id)
        upload = uploads.get_upload(tx, bucket, upload_id)
        if upload is None or upload.key != key:
            raise NoSuchUpload(upload_id=upload_id)
        return upload, found

    async def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        body: AsyncIterable[bytes],
        opts: PutOptions,
    ) -> PartRecord:
        self.get(bucket, key, upload_id, opts.owner_id)  # fail before reading the body
        now = self.clock.now()
        opts = dataclasses.replace(
            opts,
            header_meta={"kind": "part", "upload_id": upload_id, "part_number": part_number},
        )
        volume = await self.objects.store_body(bucket, key, body, opts, now)
        part = PartRecord(
            part_number=part_number,
            volume_id=volume.volume_id,
            size=volume.size,
            etag=f'"{volume.md5}"',
            last_modified=now,
            checksums=dict(opts.checksums),
        )

        def commit(tx: Tx) -> None:
            self._upload(tx, bucket, key, upload_id, opts.owner_id)
            catalog.put_volume(tx, volume)
            previous = uploads.put_part(tx, upload_id, part)
            if previous is not None:
                catalog.retire_volume(tx, previous.volume_id)

        await self.objects.commit_or_free(commit, self.objects.free_volume, volume)
        return part

    async def abort(self, bucket: str, key: str, upload_id: str, owner_id: str) -> None:
        def abort(tx: Tx) -> None:
            self._upload(tx, bucket, key, upload_id, owner_id)
            for part in uploads.delete_upload(tx, bucket, upload_id):
                catalog.retire_volume(tx, part.volume_id)

        await self.meta.write(abort)
        self.objects.wake_gc()

    def list_parts(
        self, bucket: str, key: str, upload_id: str, owner_id: str, *, after: int, limit: int
    ) -> PartsPage:
        def look(tx: Tx) -> PartsPage:
            upload = self._upload(tx, bucket, key, upload_id, owner_id)
            parts = uploads.list_parts(tx, upload_id, after, limit + 1)
            truncated = len(parts) > limit
            parts = parts[:limit]
            return PartsPage(
                upload, parts, truncated, parts[-1].part_number if truncated and parts else None
            )

        return self.meta.read(look)

    async def list_uploads(
        self,
        bucket: str,
        owner_id: str,
        *,
        prefix: str = "",
        delimiter: str = "",
        key_marker: str = "",
        upload_id_marker: str = "",
        limit: int = 1000,
    ) -> uploads.UploadsPage:
        """A page of the uploads in progress in the bucket, by key (UTF-8 bytes) then
        initiation, after the markers (see :func:`stratum.meta.uploads.list_uploads`). Read
        in a thread: a delimiter's common prefixes may pass many uploads."""

        def look(tx: Tx) -> uploads.UploadsPage:
            self.objects._owned(catalog.get_bucket(tx, bucket), bucket, owner_id)
            return uploads.list_uploads(
                tx,
                bucket,
                prefix=prefix,
                delimiter=delimiter,
                key_marker=key_marker,
                upload_id_marker=upload_id_marker,
                limit=limit,
            )

        return await asyncio.get_running_loop().run_in_executor(None, self.meta.read, look)

    # -- completion -------------------------------------------------------------------

    async def complete(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        wanted: Sequence[CompletedPart],
        owner_id: str,
        *,
        checksum_of: Callable[[UploadRecord, list[PartRecord]], dict[str, str]] | None = None,
        condition: Callable[[ObjectRecord | None], None] | None = None,
        replica: replicas.Replica | None = None,
    ) -> ObjectRecord:
        """Make the object from the listed parts without copying their data (a replica:
        with the order and time its source gave it, see stratum.service.replicas).

        A small manifest (the part list and the object's metadata) is written to the
        segment store first, so a lost metadata store can be rebuilt from the disks;
        then one metadata transaction re-checks the parts, points the key at the new
        volume and drops the upload.
        """
        if not wanted:
            raise errors.ObjectServiceError("no parts")
        now = self.clock.now()
        volume_id = new_volume_id(now)

        def choose(tx: Tx) -> tuple[UploadRecord, list[PartRecord], list[dict[str, Any]]]:
            upload = self._upload(tx, bucket, key, upload_id, owner_id)
            stored = {p.part_number: p for p in uploads.list_parts(tx, upload_id)}
            chosen: list[PartRecord] = []
            for want in wanted:  # every part must exist first, then sizes are judged
                part = stored.get(want.part_number)
                if part is None or _unquote(part.etag) != _unquote(want.etag):
                    raise InvalidPart(part=str(want.part_number))
                chosen.append(part)
            for part in chosen[:-1]:
                if part.size < MIN_PART_SIZE:
                    raise EntityTooSmall(part=str(part.part_number), size=str(part.size))
            entries = []
            for part in chosen:
                vol = catalog.get_volume(tx, part.volume_id)
                if vol is None:
                    raise InvalidPart(part=str(part.part_number))
                entries.append(
                    {
                        "volume_id": vol.volume_id,
                        "layout": vol.layout,
                        "location": vol.location,
                        "size": vol.size,
                        "md5": vol.md5,
                    }
                )
            return upload, chosen, entries

        try:
            upload, chosen, entries = self.meta.read(choose)
        except NoSuchUpload:
            # Completing an upload again (a client retrying after a lost response) answers
            # with the object it made, as long as the key still holds that object.
            done = self.meta.read(lambda tx: catalog.get_object(tx, bucket, key))
            if done is not None and done.upload_id == upload_id:
                return done
            raise
        if condition is not None:
            condition(self.meta.read(lambda tx: catalog.get_object(tx, bucket, key)))
        checksums = checksum_of(upload, chosen) if checksum_of is not None else {}
        etag = multipart_etag([p.etag for p in chosen], len(chosen))
        plan = self.objects.plan_write(
            bucket, key, owner_id, now, requested=upload.amendable, replica=replica
        )
        record = ObjectRecord(
            key=key,
            volume_id=volume_id,
            size=sum(p.size for p in chosen),
            etag=etag,
            last_modified=now,
            content_type=upload.content_type,
            user_meta=upload.user_meta,
            headers=upload.headers,
            storage_class=upload.storage_class,
            checksums=checksums,
            parts=len(chosen),
            owner_id=owner_id,
            upload_id=upload_id,
            tags=upload.tags,
            acl=dict(upload.acl),
        )
        plan.stamp(record)
        if replica is not None:
            replica.stamp(record)
        manifest = {
            "kind": "manifest",
            "bucket": bucket,
            "key": key,
            "created": now,
            "owner_id": owner_id,
            "object": dataclasses.asdict(record),
            "parts": [{k: e[k] for k in ("volume_id", "size", "md5")} for e in entries],
        }
        hot = self.objects.hot
        manifest_location = await hot.put_small(
            volume_id,
            json.dumps(manifest, separators=(",", ":")).encode(),
            {"kind": "manifest", "bucket": bucket, "key": key, "created": now, **plan.header()},
        )
        volume = VolumeRecord(
            volume_id=volume_id,
            tier=hot.layout.name,
            layout=MULTI,
            location={"parts": entries, "manifest": manifest_location},
            size=record.size,
            md5=_unquote(etag),
            created=now,
            last_access=now,
            part_sizes=[p.size for p in chosen],
            part_checksums=_part_checksums(upload, chosen),
            bucket=bucket,
            key=key,
            order=record.order,
        )

        def commit(tx: Tx) -> None:
            _upload, found = self._upload_in(tx, bucket, key, upload_id, owner_id)
            if condition is not None:
                condition(catalog.get_object(tx, bucket, key))
            current = {p.part_number: p.volume_id for p in uploads.list_parts(tx, upload_id)}
            for part in chosen:  # a part re-uploaded meanwhile would change the object
                if current.get(part.part_number) != part.volume_id:
                    raise InvalidPart(part=str(part.part_number))
            used = {p.volume_id for p in chosen}
            for part in uploads.delete_upload(tx, bucket, upload_id):
                if part.volume_id in used:
                    tx.delete("volumes", part.volume_id.encode())  # absorbed, not freed
                else:
                    catalog.retire_volume(tx, part.volume_id)
            if replica is not None:
                replicas.check_new(tx, found, key, replica)
            catalog.put_volume(tx, volume)
            self.objects.note_version(tx, found, record)
            versioning.retire(tx, versioning.write_version(tx, found, record, self.clock.now()))

        await self.objects.commit_or_free(
            commit, functools.partial(hot.delete, "seg"), manifest_location
        )
        return record

    # -- expiry -----------------------------------------------------------------------

    async def expire(self) -> int:
        """Abort uploads older than the configured expiry; return how many. The uploads are
        read a page at a time off the event loop (there may be many: clients that never
        complete nor abort)."""
        cutoff = self.clock.now() - self.expiry
        loop = asyncio.get_running_loop()
        found = uploads.each_upload(self.meta)
        aborted = 0
        while page := await loop.run_in_executor(None, _next_stale, found, cutoff):
            for upload in page:
                with contextlib.suppress(NoSuchUpload):
                    await self.abort(upload.bucket, upload.key, upload.upload_id, upload.owner_id)
                    log.info(
                        "aborted stale upload %s of %s/%s",
                        upload.upload_id,
                        upload.bucket,
                        upload.key,
                    )
                aborted += 1
        return aborted


def _next_stale(
    found: Iterator[UploadRecord], cutoff: float, size: int = 100
) -> list[UploadRecord]:
    """Up to ``size`` of the next uploads initiated before ``cutoff``; [] at the end."""
    page: list[UploadRecord] = []
    for upload in found:
        if upload.initiated < cutoff:
            page.append(upload)
            if len(page) >= size:
                break
    return page
