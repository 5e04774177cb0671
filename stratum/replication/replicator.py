"""Replication for one node: the queueing hook in every process, the pushers in the primary."""

from __future__ import annotations

import asyncio
import functools
import importlib
import logging
import statistics
from typing import TYPE_CHECKING, Any

from stratum.config import Config, replication_credentials
from stratum.replication import queue, repair, rules
from stratum.replication.queue import Enqueuer
from stratum.service.objects import ObjectService
from stratum.util.clock import Clock

if TYPE_CHECKING:
    from stratum.replication.pusher import Pusher

log = logging.getLogger("stratum.replication")


class Replicator:
    def __init__(self, service: ObjectService, config: Config, clock: Clock) -> None:
        self.service = service
        self.config = config
        self.clock = clock
        self.enqueuer = Enqueuer(
            config.replication, clock.now, rules=rules.queue_rules, wake=self._wake
        )
        self.pushers: dict[str, Pusher] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        service.on_version = self.enqueuer
        service.on_amend = self.enqueuer.amended

    async def start(self) -> None:
        """Start pushing (the primary process only; every process queues)."""
        loop = self._loop = asyncio.get_running_loop()
        # botocore (the signer) takes a few hundred ms of CPU to import: not on the loop, and
        # not in processes that never push (imported here rather than at the top).
        await loop.run_in_executor(None, importlib.import_module, "stratum.replication.pusher")
        from stratum.replication.client import TargetClient
        from stratum.replication.pusher import Pusher

        names = [target.name for target in self.config.replication]
        for target in self.config.replication:
            credentials = await loop.run_in_executor(
                None, replication_credentials, self.config, target.name
            )
            client = TargetClient(target, credentials)
            pusher = Pusher(self.service, target, client, self.clock, names)
            await pusher.start()
            self.pushers[target.name] = pusher
        if names:
            log.info("replicating to %s", ", ".join(names))

    async def stop(self) -> None:
        for pusher in self.pushers.values():
            await pusher.stop()
        self.pushers.clear()
        self._loop = None

    def _wake(self) -> None:
        """From the metadata writer's thread: a version was queued."""
        loop = self._loop
        if loop is None:
            return
        for pusher in list(self.pushers.values()):
            loop.call_soon_threadsafe(pusher.wake)

    def status(self) -> list[dict[str, Any]]:
        """Per target: what waits (a walk of its queue: blocking) and what was sent since
        this process started. Ages and times in seconds."""
        now = self.clock.now()
        out = []
        for target in self.config.replication:
            depth = self.service.meta.read(functools.partial(queue.depth, target=target.name))
            progress = self.service.meta.read(
                functools.partial(repair.read_progress, target=target.name)
            )
            entry: dict[str, Any] = {
                "target": target.name,
                "endpoint": target.endpoint,
                "queued": depth.entries,
                "queued_bytes": depth.bytes,
                "oldest_pending_age": 0.0 if depth.oldest is None else max(0.0, now - depth.oldest),
                "failing": depth.failing,
                "last_error": depth.last_error,
                "last_comparison": progress.get("last"),
            }
            pusher = self.pushers.get(target.name)
            if pusher is not None:
                stats = pusher.stats
                lags = sorted(stats.lags)
                entry.update(
                    versions_sent=stats.versions_sent,
                    bytes_sent=stats.bytes_sent,
                    failures=stats.failures,
                    last_error=entry["last_error"] or stats.last_error,
                    lag_p50=statistics.median(lags) if lags else None,
                    lag_p99=lags[min(len(lags) - 1, int(len(lags) * 0.99))] if lags else None,
                    keeps_ids=pusher.keeps_ids,
                )
            out.append(entry)
        return out
