"""Sweeping the cold bucket: deleting remote objects that no volume refers to.

A cold object can outlive every record that names it: a tier move that wrote it and then
crashed (or lost a race) before its metadata commit, a delete that failed where nothing
retried it, a metadata store restored from an older backup. Such an object is invisible and
keeps costing money. The sweep runs at the end of every full scrub pass (``scrub.interval``,
and ``stratum scrub``) and deletes an object of the cold bucket only when all of these hold:

1. **No record names it.** First every record of ``volumes`` and ``gc`` is read (short read
   transactions, in an executor) and the remote key of each cold location is entered in a
   Bloom filter of :data:`FILTER_BITS` bits, salted anew for each sweep: the memory used is
   the same for ten volumes or ten million. The filter has no false negatives, so a
   referenced object is never taken for an orphan; a false positive only spares an orphan
   until a later sweep.
2. **It is old.** It was written more than ``min_age`` (:data:`MIN_AGE`) before the sweep
   began: a move in flight writes its cold object before the commit that refers to it, and
   records read before that commit would not name it.
3. **It is ours.** Its header and encrypted metadata are read (``ColdStore.describe``): an
   object encrypted with another key (another Stratum sharing the bucket and prefix) or not
   in the cold format at all is left alone, and counted as foreign.
4. **Still no record names it**, checked again at that moment by the volume it says it was
   moved from: that volume's record and its queued garbage.

The listing goes a page (1,000 keys) at a time; only the current page is held.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from stratum.meta.records import VolumeRecord
from stratum.meta.store import MetaStore, Tx
from stratum.service.objects import MULTI
from stratum.util.clock import Clock

if TYPE_CHECKING:  # the cold tier's module imports botocore and cryptography: only when used
    from stratum.block.cold import ColdStore

log = logging.getLogger("stratum.maintenance")

MIN_AGE = 24 * 3600.0  # seconds: a younger cold object may belong to a move in flight
FILTER_BITS = 1 << 25  # 4 MiB of memory, whatever the number of volumes
FILTER_HASHES = 7  # about 1 false positive in 100,000 with a million cold volumes
SCAN_PAGE = 5000  # records per read transaction


class KeyFilter:
    """A Bloom filter of strings: ``in`` is True for every key added (and rarely for others)."""

    def __init__(self, bits: int = FILTER_BITS, salt: bytes | None = None) -> None:
        if bits < 8 or bits & (bits - 1):
            raise ValueError("the filter's size in bits must be a power of two, at least 8")
        self._bits = bytearray(bits // 8)
        self._mask = bits - 1
        self._salt = os.urandom(16) if salt is None else salt

    def _positions(self, key: str) -> Iterator[int]:
        digest = hashlib.blake2b(
            key.encode("utf-8", "surrogatepass"), digest_size=4 * FILTER_HASHES, salt=self._salt
        )
        raw = digest.digest()
        for i in range(0, len(raw), 4):
            yield int.from_bytes(raw[i : i + 4], "little") & self._mask

    def add(self, key: str) -> None:
        for bit in self._positions(key):
            self._bits[bit >> 3] |= 1 << (bit & 7)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        return all(self._bits[bit >> 3] & (1 << (bit & 7)) for bit in self._positions(key))


def cold_keys(volume: VolumeRecord) -> Iterator[str]:
    """The remote keys of the cold objects a record refers to."""
    if volume.layout == "cold":
        yield str(volume.location.get("key", ""))
    elif volume.layout == MULTI:
        for part in volume.location.get("parts", ()):
            if part.get("layout") == "cold":
                yield str(part["location"].get("key", ""))


def referenced_keys(meta: MetaStore, found: KeyFilter) -> int:
    """Add every cold key ``volumes`` and ``gc`` refer to; how many (blocking)."""
    count = 0
    for db in ("volumes", "gc"):
        after = b""
        while True:

            def page(tx: Tx, db: str = db, after: bytes = after) -> list[tuple[bytes, bytes]]:
                cursor = tx.cursor(db)
                if not cursor.set_range(after):
                    return []
                out: list[tuple[bytes, bytes]] = []
                for key, raw in cursor:
                    if bytes(key) == after:
                        continue
                    out.append((bytes(key), bytes(raw)))
                    if len(out) >= SCAN_PAGE:
                        break
                return out

            records = meta.read(page)
            if not records:
                break
            for _key, raw in records:
                for key in cold_keys(VolumeRecord.decode(raw)):
                    found.add(key)
                    count += 1
            after = records[-1][0]
    return count


def still_referenced(tx: Tx, key: str, moved_from: str) -> bool:
    """Whether the record of volume ``moved_from``, or its queued garbage, names ``key``."""
    if not moved_from:
        return False
    raw = tx.get("volumes", moved_from.encode())
    if raw is not None and key in cold_keys(VolumeRecord.decode(raw)):
        return True
    cursor = tx.cursor("gc")
    prefix = moved_from.encode()
    if not cursor.set_range(prefix):
        return False
    for gc_key, value in cursor:
        if not bytes(gc_key).startswith(prefix):
            break
        if key in cold_keys(VolumeRecord.decode(bytes(value))):
            return True
    return False


@dataclass
class ColdSweep:
    """What one sweep saw and did."""

    listed: int = 0  # objects under the prefix
    referenced: int = 0  # cold locations the records name
    recent: int = 0  # unreferenced, but younger than min_age: left alone
    foreign: int = 0  # not a cold object of this store (another key, another format)
    deleted: int = 0
    deleted_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def sweep_cold(
    meta: MetaStore, cold: ColdStore, clock: Clock, *, min_age: float = MIN_AGE
) -> ColdSweep:
    """Delete the cold objects no record refers to (see the module docstring).

    Raises ``ColdStoreError`` if the bucket cannot be listed or an object deleted; what was
    deleted until then stays deleted, and the next sweep goes on.
    """
    from stratum.block.cold import ColdFormatError, ColdObjectMissing, WrongColdKey

    figures = ColdSweep()
    started = clock.now()
    found = KeyFilter()
    loop = asyncio.get_running_loop()
    figures.referenced = await loop.run_in_executor(None, referenced_keys, meta, found)
    async for info in cold.list_volumes():
        figures.listed += 1
        if info.key in found:
            continue
        if info.last_modified > started - min_age:
            figures.recent += 1
            continue
        try:
            location, described = await cold.describe(info.volume_id)
        except ColdObjectMissing:
            continue  # deleted meanwhile
        except (WrongColdKey, ColdFormatError, ValueError) as exc:
            figures.foreign += 1
            log.warning("cold sweep: leaving %s alone, not one of ours: %s", info.key, exc)
            continue
        moved_from = str(described.get("moved_from", ""))
        check = functools.partial(still_referenced, key=info.key, moved_from=moved_from)
        if meta.read(check):
            continue
        await cold.delete(location)
        figures.deleted += 1
        figures.deleted_bytes += info.stored_size
        log.info(
            "cold sweep: deleted %s (%d bytes), which no volume refers to (moved from %s)",
            info.key,
            info.stored_size,
            moved_from or "?",
        )
    return figures
