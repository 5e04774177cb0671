"""The composition root: everything a running Stratum is made of, built from a Config.

``Node.open`` is blocking (it opens LMDB and the disks); the server calls it before
serving and ``start``/``stop`` inside the event loop.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from stratum.config import Config, TierConfig
from stratum.meta.store import MetaStore
from stratum.model.multipart import MultipartService
from stratum.model.service import ObjectService
from stratum.model.tierstore import TierLayout, TierStore
from stratum.model.users import RootCredentials, UserDirectory, load_root_credentials
from stratum.util.clock import Clock, SystemClock

log = logging.getLogger("stratum.node")


def tier_layouts(config: Config) -> dict[str, TierLayout]:
    """The local tiers the config asks for (hot always; warm when it has disks)."""
    storage = config.storage
    out: dict[str, TierLayout] = {}
    tiers: dict[str, TierConfig] = {"hot": config.tiers.hot, "warm": config.tiers.warm}
    for name, tier in tiers.items():
        disks = tier.disks
        if not disks:
            if name != "hot":
                continue
            disks = (storage.data_dir / "disks" / "hot",)
        out[name] = TierLayout(
            name=name,
            disks=tuple(disks),
            data_shards=tier.data_shards,
            parity_shards=tier.parity_shards,
            block_size=storage.block_size,
            segment_size=storage.segment_size,
        )
    return out


@dataclass
class Node:
    config: Config
    meta: MetaStore
    tiers: dict[str, TierStore]
    service: ObjectService
    multipart: MultipartService
    users: UserDirectory
    root: RootCredentials
    clock: Clock
    executor: concurrent.futures.ThreadPoolExecutor

    @classmethod
    def open(cls, config: Config, clock: Clock | None = None) -> Node:
        clock = clock or SystemClock()
        data_dir: Path = config.storage.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        # Enough threads that fsyncs on every disk and encodes can overlap.
        executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(8, 2 * (os.cpu_count() or 2)), thread_name_prefix="stratum-io"
        )
        meta = MetaStore(data_dir / "meta")
        meta.open()
        tiers: dict[str, TierStore] = {}
        try:
            for name, layout in tier_layouts(config).items():
                store = TierStore(layout, executor)
                store.open()
                tiers[name] = store
        except BaseException:
            meta.close()
            executor.shutdown(wait=False)
            raise
        root = load_root_credentials(data_dir, config.server.access_key, config.server.secret_key)
        service = ObjectService(
            meta,
            tiers,
            clock,
            small_threshold=config.storage.small_object_threshold,
            max_object_size=config.storage.max_object_size,
        )
        multipart = MultipartService(service, expiry=config.storage.multipart_expiry)
        users = UserDirectory(meta, root.user)
        return cls(config, meta, tiers, service, multipart, users, root, clock, executor)

    async def start(self) -> None:
        await self.service.start()
        await self.multipart.start()

    async def stop(self) -> None:
        await self.multipart.stop()
        await self.service.stop()
        for tier in self.tiers.values():
            await tier.close()

    def close(self) -> None:
        """Blocking: after ``stop``."""
        self.meta.close()
        self.executor.shutdown(wait=True)
