"""The composition root: everything a running Stratum is made of, built from a Config.

``Node.open`` is blocking (it opens LMDB and the disks); the server calls it before
serving and ``start``/``stop`` inside the event loop.

Several server processes can share one data directory (``server.workers``, see
:mod:`stratum.cli.workers`). The primary opens it as a single server would (it recovers:
cuts torn segment tails, sweeps orphans) and runs every background task (garbage collection,
segment compaction, scrub, tiering, multipart expiry, lifecycle rules, metadata backups,
snapshots), then :meth:`Node.share` lets the workers in. A worker opens with ``worker=True``
and runs only what serves its own requests: access-signal batches, disk probes and the
healing of damage its reads met.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from stratum.block.disk import DiskError
from stratum.block.tierstore import DISKS_KEY, TierStore, tier_layouts
from stratum.config import Config, cold_credentials
from stratum.maintenance.compaction import Compactor
from stratum.maintenance.lifecycle import LifecycleWorker
from stratum.maintenance.scrub import Maintenance
from stratum.meta import uploads
from stratum.meta.store import MetaStore
from stratum.meta.versions import OrderClock
from stratum.pool import PoolError, tier_pool
from stratum.service.multipart import MultipartService
from stratum.service.objects import ObjectService
from stratum.service.readers import ReadingTable, clear_tables, table_path, volumes_being_read
from stratum.service.user_secrets import UserSecrets
from stratum.service.users import (
    RootCredentials,
    UserDirectory,
    load_root_credentials,
    record_root_in_use,
)
from stratum.tiering.engine import TierEngine
from stratum.tiering.pricing import Prices
from stratum.util.clock import Clock, SystemClock
from stratum.util.imports import import_off_loop

if TYPE_CHECKING:
    from stratum.maintenance.backups import MetaBackup
    from stratum.pool.snapshot import SnapshotSchedule
    from stratum.replication.replicator import Replicator

log = logging.getLogger("stratum.node")

# Seconds the primary waits before freeing a retired volume when workers share the disks:
# a worker may have found it in LMDB just before it was retired and not yet entered it in its
# table of reads in flight (stratum.service.readers), a matter of milliseconds.
SHARED_GC_GRACE = 5.0
RUN_DIR = "run"  # <data_dir>/run: what the server processes share while they run


class _DamageRelay:
    """Storage reports damage before maintenance exists; this forwards once it does."""

    def __init__(self) -> None:
        self.target: Callable[[str, str], None] | None = None

    def __call__(self, volume_id: str, disk_id: str) -> None:
        if self.target is not None:
            self.target(volume_id, disk_id)


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
    maintenance: Maintenance
    tiering: TierEngine
    compaction: Compactor
    lifecycle: LifecycleWorker
    backup: MetaBackup | None = None  # copies of the metadata store, made while started
    snapshots: SnapshotSchedule | None = None  # ZFS snapshots, when scheduled
    replicator: Replicator | None = None  # replication targets, when configured
    primary: bool = False  # started with the background tasks (the primary process)

    @classmethod
    def open(cls, config: Config, clock: Clock | None = None, *, worker: bool = False) -> Node:
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
        relay = _DamageRelay()
        known = meta.read(lambda tx: tx.get("info", DISKS_KEY))
        known_ids: dict[str, str] = json.loads(known) if known else {}
        try:
            if not worker and meta.write_sync(uploads.index_uploads):
                log.info("indexed the multipart uploads by key")
            for name, layout in tier_layouts(config).items():
                try:
                    pool = tier_pool(config, name)  # directories, or ZFS datasets
                except PoolError as exc:
                    raise DiskError(f"tier {name}: {exc}") from exc
                store = TierStore(layout, executor, on_damage=relay, pool=pool)
                store.open(known_ids, shared=worker)
                tiers[name] = store
            seen = {path: disk_id for t in tiers.values() for path, disk_id in t.disk_ids().items()}
            if seen != known_ids and not worker:
                encoded = json.dumps({**known_ids, **seen}).encode()
                meta.write_sync(lambda tx: tx.put("info", DISKS_KEY, encoded))
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
        service.orders = OrderClock(config.server.site_id)  # version ids name their site
        multipart = MultipartService(service, expiry=config.storage.multipart_expiry)
        users = UserDirectory(meta, root.user, UserSecrets(data_dir))
        if not worker:
            users.seal_plaintext()
        maintenance = Maintenance(
            service, clock, interval=config.scrub.interval, rate=config.scrub.rate
        )
        relay.target = maintenance.report_damage
        cold = None
        if config.tiers.cold.enabled:
            # Imported only here: boto3's botocore and cryptography cost every process of
            # every server several MiB, and most servers have no cold tier.
            from stratum.block.cold import ColdStore, load_or_create_key

            key = load_or_create_key(config.tiers.cold.encryption_key_file)
            cold = ColdStore(config.tiers.cold, cold_credentials(config), key, executor)
            maintenance.cold = cold
        prices = Prices.from_config(config.prices)
        tiering = TierEngine(service, config.tiering, clock, cold=cold, prices=prices)
        service.on_pinned = tiering.nudge
        tiering.lifecycle_day = config.lifecycle.day_seconds
        replicator = None
        if config.replication:  # every process queues what it writes; the primary pushes
            from stratum.replication.replicator import Replicator

            replicator = Replicator(service, config, clock)
        return cls(
            config,
            meta,
            tiers,
            service,
            multipart,
            users,
            root,
            clock,
            executor,
            maintenance,
            tiering,
            Compactor(service, clock),
            LifecycleWorker(service, multipart, config.lifecycle, clock),
            replicator=replicator,
        )

    @property
    def run_dir(self) -> Path:
        return self.config.storage.data_dir / RUN_DIR

    def share(self) -> None:
        """Primary, blocking, after ``open``: let worker processes open the disks too; free
        nothing they are reading."""
        for tier in self.tiers.values():
            tier.share()
        self.run_dir.mkdir(exist_ok=True)
        clear_tables(self.run_dir)
        self.service.garbage.gc_grace = SHARED_GC_GRACE
        self.service.garbage.peers_reading = functools.partial(volumes_being_read, self.run_dir)

    def join(self, index: int) -> None:
        """Worker ``index``, blocking, after ``open(worker=True)``: publish its reads."""
        self.service.reading_table = ReadingTable(table_path(self.run_dir, index))

    async def start(self, *, background: bool = True) -> None:
        """Start serving; ``background``: also run the background tasks (a worker doesn't)."""
        self.primary = background
        await self.service.start(background=background)
        await self.maintenance.start(scheduled=background)
        if not background:
            await self.tiering.start_worker()
            return
        loop = asyncio.get_running_loop()
        data_dir = self.config.storage.data_dir
        await loop.run_in_executor(self.executor, record_root_in_use, data_dir, self.root)
        await self.multipart.start()
        await self.compaction.start()
        await self.tiering.start()
        self.lifecycle.start()
        if self.replicator is not None:
            await self.replicator.start()
        # Imported here (off the loop), as snapshots below: only the primary runs them, and
        # modules a process never uses only add to its memory.
        await import_off_loop("stratum.maintenance.backups")
        from stratum.maintenance.backups import MetaBackup, backup_copies

        disk_ids = {disk.path: disk.disk_id for tier in self.tiers.values() for disk in tier.disks}
        parity = [tier.layout.parity_shards for tier in self.tiers.values()]
        self.backup = MetaBackup(
            self.meta,
            list(disk_ids),
            self.clock,
            interval=self.config.storage.metadata_backup_interval,
            executor=self.executor,
            copies=backup_copies(self.config.storage.metadata_backup_copies, parity, len(disk_ids)),
            tier_of={disk.path: name for name, tier in self.tiers.items() for disk in tier.disks},
            # as the disk probes last saw it: a failed disk gets no copy (I/O there may hang)
            disk_state=lambda path: self.maintenance.disk_states.get(disk_ids[path], "online"),
        )
        await self.backup.start()
        if self.config.storage.snapshot_interval > 0:
            await import_off_loop("stratum.pool.snapshot")
            from stratum.pool.snapshot import snapshot_schedule

            make = functools.partial(snapshot_schedule, self.config, self.clock, self.executor)
            try:
                self.snapshots = await asyncio.get_running_loop().run_in_executor(None, make)
            except PoolError as exc:
                log.error("no scheduled snapshots: %s", exc)
            else:
                await self.snapshots.start()

    async def flush_for_primary(self) -> None:
        """A worker, asked by the primary (before a tiering pass): record its batched reads
        and hand what its learner learned from them over."""
        await self.service.flush_access()
        await self.tiering.hand_over_learning()

    async def stop(self, *, clean: bool = False) -> None:
        """Stop everything; ``clean``: every process of this store stopped as asked (no
        worker ended unasked or was killed), so the next start need not look for what a
        crash leaves (:meth:`GarbageCollector.mark_clean_stop`)."""
        if self.snapshots is not None:
            await self.snapshots.stop()
        if self.backup is not None:
            await self.backup.stop()
        if self.replicator is not None:
            await self.replicator.stop()
        await self.lifecycle.stop()
        await self.tiering.stop()
        await self.compaction.stop()
        await self.maintenance.stop()
        await self.multipart.stop()
        await self.service.stop()
        if clean and self.primary:
            await self.service.garbage.mark_clean_stop()
        for tier in self.tiers.values():
            await tier.close()

    def close(self) -> None:
        """Blocking: after ``stop``."""
        if self.service.reading_table is not None:
            self.service.reading_table.close()
        self.meta.close()
        self.executor.shutdown(wait=True)
