"""A set of volume ids in 8 bytes each, for the orphan sweep's view of every id in use.

The sweep asks, for each shard file on the disks, whether some metadata still names its
volume. A Python ``set`` of the id strings costs about 100 bytes per id: a gigabyte at ten
million volumes, on a machine that may have two. :class:`IdSet` keeps a 64-bit hash of each
id instead, in sorted ``array('Q')`` buckets (by the hash's top bits, so that sorting one
bucket at a time never holds more than a bucket's worth of Python ints), and answers
membership with a binary search.

A hash collision can only make an id *look* used: an orphan is then kept until a later
sweep, never live data freed.
"""

from __future__ import annotations

import bisect
import hashlib
from array import array
from collections.abc import Iterable

BUCKET_BITS = 12  # 4,096 buckets: ~2,400 hashes each at ten million ids


def id_hash(volume_id: str) -> int:
    """The id's 64-bit hash (stable across processes, unlike ``hash``)."""
    digest = hashlib.blake2b(volume_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class IdSet:
    """Add ids with :meth:`add` (or the constructor), then :meth:`freeze` before asking."""

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._buckets = [array("Q") for _ in range(1 << BUCKET_BITS)]
        self._frozen = False
        for volume_id in ids:
            self.add(volume_id)

    def add(self, volume_id: str) -> None:
        if self._frozen:
            raise RuntimeError("IdSet.add after freeze")
        if volume_id:
            value = id_hash(volume_id)
            self._buckets[value >> (64 - BUCKET_BITS)].append(value)

    def freeze(self) -> IdSet:
        """Sort each bucket (and drop repeats); the set answers :meth:`__contains__` after."""
        for n, bucket in enumerate(self._buckets):
            self._buckets[n] = array("Q", sorted(set(bucket)))
        self._frozen = True
        return self

    def __contains__(self, volume_id: object) -> bool:
        if not self._frozen:
            raise RuntimeError("IdSet asked before freeze")
        if not isinstance(volume_id, str) or not volume_id:
            return False
        value = id_hash(volume_id)
        bucket = self._buckets[value >> (64 - BUCKET_BITS)]
        at = bisect.bisect_left(bucket, value)
        return at < len(bucket) and bucket[at] == value

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self._buckets)

    def nbytes(self) -> int:
        """The hashes' memory (the arrays' headers and spare room not counted)."""
        return sum(bucket.itemsize * len(bucket) for bucket in self._buckets)
