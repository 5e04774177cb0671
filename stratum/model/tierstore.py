"""The storage of one tier: small objects in replicated segments, large ones erasure coded.

The object service sees one interface per tier; which layout holds a volume is
recorded in its :class:`~stratum.meta.records.VolumeRecord` (``layout`` "seg" or "ec").
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stratum.block.disk import Disk, open_disk
from stratum.block.erasure import ECLocation, ECParams, ErasureStore, Hasher
from stratum.block.segments import SegLocation, SegmentStore

log = logging.getLogger("stratum.storage")

__all__ = ["Hasher", "TierLayout", "TierStore"]


@dataclass(frozen=True)
class TierLayout:
    name: str
    disks: tuple[Path, ...]
    data_shards: int
    parity_shards: int
    block_size: int
    segment_size: int


class TierStore:
    """Both storage layouts over one tier's disks."""

    def __init__(self, layout: TierLayout, executor: concurrent.futures.Executor) -> None:
        self.layout = layout
        self._executor = executor
        self.disks: list[Disk] = []
        self.erasure: ErasureStore | None = None
        self.segments: SegmentStore | None = None

    def open(self) -> None:
        """Open the disks (blocking; raises DiskError naming a bad path) and sweep orphans."""
        self.disks = [open_disk(p) for p in self.layout.disks]
        params = ECParams(
            data_shards=self.layout.data_shards,
            parity_shards=self.layout.parity_shards,
            block_size=self.layout.block_size,
        )
        self.erasure = ErasureStore(self.disks, params, self._executor)
        self.erasure.sweep_tmp()
        self.segments = SegmentStore(
            self.disks,
            copies=self.layout.parity_shards + 1,
            executor=self._executor,
            segment_size=self.layout.segment_size,
        )
        self.segments.start()

    async def close(self) -> None:
        if self.segments is not None:
            await self.segments.close()

    def _ec(self) -> ErasureStore:
        assert self.erasure is not None, "TierStore.open() first"
        return self.erasure

    def _seg(self) -> SegmentStore:
        assert self.segments is not None, "TierStore.open() first"
        return self.segments

    async def put_small(
        self, volume_id: str, data: bytes, meta: Mapping[str, Any]
    ) -> dict[str, Any]:
        loc = await self._seg().put(volume_id, data, meta)
        return loc.to_dict()

    def ec_writer(self, volume_id: str, meta: Mapping[str, Any], hashers: Sequence[Hasher]) -> Any:
        return self._ec().writer(volume_id, meta, hashers)

    async def read(
        self, layout: str, location: Mapping[str, Any], start: int, end: int
    ) -> AsyncIterator[bytes]:
        if layout == "seg":
            data = await self._seg().get(SegLocation.from_dict(dict(location)))
            if end > start:
                yield data[start:end]
            return
        async for chunk in self._ec().read(ECLocation.from_dict(dict(location)), start, end):
            yield chunk

    async def delete(self, layout: str, location: Mapping[str, Any]) -> None:
        if layout == "seg":
            await self._seg().delete(SegLocation.from_dict(dict(location)))
        else:
            await self._ec().delete(ECLocation.from_dict(dict(location)))
