"""Moving one volume to another tier: copy, verify, switch, free.

The mover copies the volume to its new home under a storage id of its own, checks the
copy's MD5 against the volume's, switches the volume's location in one metadata
transaction and queues the old copy for collection. A crash at any step leaves one
readable copy: before the switch the old location is intact (the new copy is an orphan),
after it the new one is. A volume overwritten, deleted or moved meanwhile keeps what the
metadata says, and the copy is freed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from stratum.meta import catalog, versions
from stratum.meta.records import VolumeRecord
from stratum.meta.store import Tx
from stratum.service.ids import new_volume_id
from stratum.service.objects import MULTI, ObjectService
from stratum.service.versioning import AT_CREATION
from stratum.tiering.decisions import append_decision
from stratum.tiering.policy import Decision
from stratum.util.clock import Clock

if TYPE_CHECKING:  # the cold tier's module imports botocore and cryptography: only when used
    from stratum.block.cold import ColdStore

log = logging.getLogger("stratum.tiering")


class ColdTierStorage:
    """The cold tier as the object service reads and frees volumes (layout "cold")."""

    def __init__(self, store: ColdStore) -> None:
        self.store = store

    async def read(
        self, layout: str, location: Mapping[str, Any], start: int, end: int
    ) -> AsyncIterator[bytes]:
        async for chunk in self.store.read(location, start, end):
            yield chunk

    async def delete(self, layout: str, location: Mapping[str, Any]) -> None:
        await self.store.delete(location)


class Mover:
    def __init__(self, service: ObjectService, clock: Clock, cold: ColdStore | None) -> None:
        self.service = service
        self.meta = service.meta
        self.clock = clock
        self.cold = cold

    async def move(self, volume: VolumeRecord, decision: Decision) -> bool:
        """Copy, verify, switch, free: True if the volume now lives in the target tier."""
        target = decision.target
        source_tier = volume.tier
        storage_id = new_volume_id(self.clock.now())
        record = self.meta.read(functools.partial(versions.version_of_volume, volume=volume))
        # The moved copy's header carries the object's metadata like a fresh PUT's does, so a
        # store rebuilt from the disks alone (recover-metadata) gets it back.
        meta: dict[str, Any] = {
            "kind": "object",
            "bucket": volume.bucket,
            "key": volume.key,
            "created": volume.created,
            "moved_from": volume.volume_id,
        }
        if record is not None:
            meta.update(
                owner_id=record.owner_id,
                content_type=record.content_type,
                user_meta=record.user_meta,
                headers=record.headers,
                storage_class=record.storage_class,
                version_id=record.version_id,
                order=record.order,
                tags=record.tags,
                acl=record.acl,
                last_modified=record.last_modified,  # a copy onto itself may have changed it
            )
            # its Object Lock state as it is now, where a PUT's header puts it: a locked
            # version rebuilt from a moved copy must stay locked
            meta[AT_CREATION] = {
                name: getattr(record, name) for name in ("lock_mode", "lock_until", "legal_hold")
            }
        md5 = hashlib.md5()
        sha_needed = volume.layout != MULTI
        data = self._verified(volume, md5 if sha_needed else None)
        try:
            layout, location = await self._write(target, storage_id, data, volume.size, meta)
        except Exception as exc:
            log.warning("moving %s to %s failed: %s", volume.volume_id, target, exc)
            await self._log(volume, decision, f"failed: {exc}")
            return False
        if sha_needed and md5.hexdigest() != volume.md5:
            await self._free(target, layout, location)
            await self._log(volume, decision, "failed: checksum mismatch while copying")
            return False
        now = self.clock.now()
        placed = {"rule": decision.rule, "at": now, "from": source_tier, "inputs": decision.inputs}

        def switch(tx: Tx) -> bool:
            current = catalog.get_volume(tx, volume.volume_id)
            if current is None or current.location != volume.location:
                return False  # overwritten, deleted or moved meanwhile: keep what is there
            old = dataclasses.replace(current)
            current.tier, current.layout, current.location = target, layout, location
            current.placed = placed
            catalog.put_volume(tx, current)
            catalog.retire_location(tx, f"{volume.volume_id}.{storage_id}", old)
            append_decision(tx, now, volume, decision, "moved")
            return True

        switched = await self.meta.write(switch)
        if not switched:
            await self._free(target, layout, location)
            return False
        self.service.wake_gc()
        log.info(
            "moved %s/%s (%d bytes) %s -> %s: %s",
            volume.bucket,
            volume.key,
            volume.size,
            source_tier,
            target,
            decision.rule,
        )
        return True

    async def _verified(self, volume: VolumeRecord, md5: Any | None) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        async for chunk in self.service.read_volume(volume, 0, volume.size):
            if md5 is not None:
                if len(chunk) > 65536:
                    await loop.run_in_executor(None, md5.update, chunk)
                else:
                    md5.update(chunk)
            yield chunk

    async def _write(
        self,
        target: str,
        storage_id: str,
        data: AsyncIterator[bytes],
        size: int,
        meta: dict[str, Any],
    ) -> tuple[str, dict[str, Any]]:
        if target == "cold":
            assert self.cold is not None, "no cold tier configured"
            location = await self.cold.put(storage_id, data, size, meta)
            return "cold", dict(location)
        store = self.service.tiers[target]
        if size <= self.service.small_threshold:
            blob = b"".join([c async for c in data])
            return "seg", await store.put_small(storage_id, blob, meta)
        writer = store.ec_writer(storage_id, meta, ())
        try:
            async for chunk in data:
                await writer.write(chunk)
            loc = await writer.finish()
        except BaseException:
            await writer.abort()
            raise
        return "ec", loc.to_dict()

    async def _free(self, tier: str, layout: str, location: Mapping[str, Any]) -> None:
        with contextlib.suppress(Exception):
            await self.service.storage(tier).delete(layout, location)

    async def _log(self, volume: VolumeRecord, decision: Decision, outcome: str) -> None:
        now = self.clock.now()
        await self.meta.write(lambda tx: append_decision(tx, now, volume, decision, outcome))
