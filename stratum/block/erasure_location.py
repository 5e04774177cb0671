"""What describes an erasure-coded volume: coding parameters, its location record, placement.

A volume (``volume_id``: 32 lowercase hex) is cut into stripes of ``k * block_size`` bytes;
each stripe is coded into ``k`` data + ``m`` parity blocks, and block ``i`` of every stripe is
appended to shard file ``i`` (:mod:`stratum.block.shardfile`).

The location record (:meth:`ECLocation.to_dict`, kept by the metadata layer for each volume)
is a JSON-able dict, version 1::

    {"version": 1, "volume_id": str (32 hex), "data_shards": k, "parity_shards": m,
     "block_size": int, "size": int (object bytes), "disks": [disk id of shard i, ...],
     "md5": str (32 hex, of the object bytes)}

Placement: the disks are sorted by id and shard ``i`` goes to disk ``(start + i) mod n``,
``start`` taken from a hash of the volume id (not its leading digits: Stratum's ids begin with
a timestamp, which would send a minute's worth of volumes to the same disks). With
``n >= k + m`` disks that is ``k + m`` distinct disks, and different volumes start at
different disks (load spreads); with fewer disks the same rotation is a round robin, so each
disk holds ``floor`` or ``ceil`` of ``(k + m) / n`` shards.
The placement is recorded as disk *ids* in :class:`ECLocation`.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from stratum.block.shardfile import Expected, Layout, is_volume_id
from stratum.config import MAX_SHARDS

LOCATION_VERSION = 1


@dataclass(frozen=True)
class ECParams:
    """Coding parameters for new volumes (existing ones keep those in their location)."""

    data_shards: int = 4
    parity_shards: int = 2
    block_size: int = 256 * 1024

    def __post_init__(self) -> None:
        _check_params(self.data_shards, self.parity_shards, self.block_size)

    @property
    def stripe_size(self) -> int:
        return self.data_shards * self.block_size


def _check_params(k: int, m: int, block_size: int) -> None:
    if k < 1 or m < 0 or k + m > MAX_SHARDS:
        raise ValueError(f"need k >= 1, m >= 0, k + m <= {MAX_SHARDS}; got k={k} m={m}")
    if not 1 <= block_size < 1 << 32:
        raise ValueError(f"block_size must be in 1 .. 2**32-1, got {block_size}")


@dataclass(frozen=True)
class ECLocation:
    """Where and how a volume is stored: the record metadata keeps for an object."""

    volume_id: str
    data_shards: int
    parity_shards: int
    block_size: int
    size: int
    disks: tuple[str, ...]  # disk id holding shard i
    md5_hex: str

    def __post_init__(self) -> None:
        _check_params(self.data_shards, self.parity_shards, self.block_size)
        if not is_volume_id(self.volume_id):
            raise ValueError(f"volume id must be 32 lowercase hex characters: {self.volume_id!r}")
        if len(self.disks) != self.data_shards + self.parity_shards:
            raise ValueError(f"{len(self.disks)} disks for {self.shard_count} shards")
        if self.size < 0:
            raise ValueError("negative size")
        if len(self.md5_hex) != 32 or self.md5_hex.strip("0123456789abcdef"):
            raise ValueError(f"md5_hex must be 32 lowercase hex characters: {self.md5_hex!r}")

    @property
    def shard_count(self) -> int:
        return self.data_shards + self.parity_shards

    @property
    def layout(self) -> Layout:
        return Layout(self.data_shards, self.block_size, self.size)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": LOCATION_VERSION,
            "volume_id": self.volume_id,
            "data_shards": self.data_shards,
            "parity_shards": self.parity_shards,
            "block_size": self.block_size,
            "size": self.size,
            "disks": list(self.disks),
            "md5": self.md5_hex,
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> ECLocation:
        version = record.get("version")
        if version != LOCATION_VERSION:
            raise ValueError(f"unknown ECLocation record version {version!r}")
        return cls(
            volume_id=str(record["volume_id"]),
            data_shards=int(record["data_shards"]),
            parity_shards=int(record["parity_shards"]),
            block_size=int(record["block_size"]),
            size=int(record["size"]),
            disks=tuple(str(d) for d in record["disks"]),
            md5_hex=str(record["md5"]),
        )


@dataclass(frozen=True)
class DegradedShard:
    """A shard found missing or damaged by a read (for the repair queue)."""

    volume_id: str
    shard_index: int
    disk_id: str
    reason: str


def new_volume_id() -> str:
    return uuid.uuid4().hex


def place_shards(volume_id: str, disk_ids: Iterable[str], shard_count: int) -> tuple[str, ...]:
    """Disk id for each shard: rotate over the sorted ids from a start the volume id picks."""
    ids = sorted(disk_ids)
    if not ids:
        raise ValueError("no disks")
    digest = hashlib.blake2b(volume_id.encode(), digest_size=8).digest()
    start = int.from_bytes(digest, "big") % len(ids)
    return tuple(ids[(start + i) % len(ids)] for i in range(shard_count))


def expected_shard(loc: ECLocation, index: int) -> Expected:
    """What shard ``index`` of ``loc`` must say about itself (checked on open)."""
    return Expected(
        volume_id=loc.volume_id,
        shard_index=index,
        data_shards=loc.data_shards,
        parity_shards=loc.parity_shards,
        block_size=loc.block_size,
        size=loc.size,
        md5=bytes.fromhex(loc.md5_hex),
    )
