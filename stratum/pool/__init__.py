"""Pools: what backs the disks of a local tier (plain directories, or ZFS datasets).

The storage layer (:mod:`stratum.block.tierstore`) asks a tier's :class:`Pool` to prepare
each disk path before opening it, and for each disk's backing, capacity and health while
running. :func:`tier_pool` picks the implementation the configuration names; the ZFS one
(and libzfs_core with it) is imported only when a tier has ``backend = "zfs"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stratum.config import Config
from stratum.pool.base import Capacity, DiskBacking, Pool, PoolError
from stratum.pool.directory import DirectoryPool

if TYPE_CHECKING:
    from stratum.pool.zfs import ZfsTools

__all__ = ["Capacity", "DirectoryPool", "DiskBacking", "Pool", "PoolError", "tier_pool"]


def tier_pool(config: Config, tier: str, *, tools: ZfsTools | None = None) -> Pool:
    """The pool of the local tier ``tier`` ("hot" or "warm"). ``tools``: the ZFS access to
    use (default: the system's libzfs_core, loaded now). Raises :class:`PoolError`."""
    settings = config.tiers.hot if tier == "hot" else config.tiers.warm
    if settings.backend != "zfs":
        return DirectoryPool()
    from stratum.pool.zfs import ZfsPool, load_tools, recordsize_for

    return ZfsPool(
        tools or load_tools(),
        settings.zfs_parent,
        compression=settings.zfs_compression,
        recordsize=settings.zfs_recordsize or recordsize_for(config.storage.block_size),
    )
