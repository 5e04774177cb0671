"""DELETE and DeleteObjects: objects removed, versions removed for good, delete markers made.

In a bucket that was never versioned a DELETE removes the key's object. In a versioned
bucket a DELETE without a version id makes a delete marker: its zero-byte segment record is
written (and fsynced) first, so that the disks know it (``stratum recover-metadata``), then
one metadata transaction makes it the key's newest version. A DELETE naming a version
removes that version for good (:func:`stratum.service.versioning.remove_version`).
DeleteObjects writes the markers it needs together and commits every key in one
transaction; a key whose version may not be removed (Object Lock) is reported on its own.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stratum.meta import catalog
from stratum.meta.records import BucketRecord, ObjectRecord, VolumeRecord
from stratum.meta.store import Tx
from stratum.meta.versions import NULL
from stratum.service import errors, replicas, versioning
from stratum.service.ids import new_volume_id

if TYPE_CHECKING:
    from stratum.service.objects import ObjectService

ATTEMPTS = 3  # a bucket's versioning set between planning and commit: plan again


@dataclass(frozen=True)
class DeleteOutcome:
    """What a DELETE (of a key, or of one version of it) did."""

    key: str
    version_id: str | None = None  # the version asked for, if any
    removed: ObjectRecord | None = None  # the version removed for good, if any
    marker: ObjectRecord | None = None  # the delete marker made, if any
    error: Exception | None = None


class _Replan(Exception):
    """The bucket's versioning was set after the deletes were planned."""


async def delete(
    service: ObjectService,
    bucket: str,
    targets: Sequence[tuple[str, str | None]],
    owner_id: str,
    *,
    bypass_governance: bool = False,
    replica: replicas.Replica | None = None,
) -> list[DeleteOutcome]:
    """Delete ``targets`` (key, well-formed version id or None) in one transaction.

    ``replica``: the one target is a delete marker another site made, with its order and
    time (:mod:`stratum.service.replicas`)."""
    for attempt in range(ATTEMPTS):
        record = service.get_bucket(bucket, owner_id)
        if replica is not None:
            replicas.check_bucket(record)
        markers = (
            await _write_markers(service, record, targets, replica) if record.versioning else {}
        )
        committed: set[int] = set()
        try:
            commit = functools.partial(
                _commit,
                service,
                bucket=bucket,
                owner_id=owner_id,
                targets=targets,
                markers=markers,
                committed=committed,
                bypass=bypass_governance,
                replica=replica,
            )
            outcomes = await service.meta.write(commit)
        except _Replan:
            await _free_markers(service, markers, committed)
            if attempt + 1 == ATTEMPTS:
                raise errors.ObjectServiceError("bucket versioning kept changing") from None
            continue
        except asyncio.CancelledError:
            raise  # the commit's outcome is not ours to know: orphans for recovery's sweep
        except BaseException:
            await _free_markers(service, markers, set())
            raise
        await _free_markers(service, markers, committed)
        service.wake_gc()
        return outcomes
    raise AssertionError("unreachable")


async def _write_markers(
    service: ObjectService,
    bucket: BucketRecord,
    targets: Sequence[tuple[str, str | None]],
    replica: replicas.Replica | None = None,
) -> dict[int, tuple[ObjectRecord, VolumeRecord]]:
    """The delete markers the targets without a version id need, written to the hot tier."""
    now = service.clock.now()
    wanted = [(i, key) for i, (key, version_id) in enumerate(targets) if version_id is None]
    if not wanted:
        return {}

    def plan(tx: Tx) -> list[ObjectRecord]:
        out = []
        for _i, key in wanted:
            if replica is not None:
                out.append(
                    replica.stamp(
                        versioning.marker_record(
                            key,
                            new_volume_id(now),
                            replica.order,
                            bucket.versioning,
                            bucket.owner_id,
                            replica.mtime,
                        )
                    )
                )
                continue
            new = service.new_version(bucket, key, tx, now)
            out.append(
                versioning.marker_record(
                    key, new_volume_id(now), new.order, bucket.versioning, bucket.owner_id, now
                )
            )
        return out

    records = service.meta.read(plan)
    hot = service.hot
    locations = await asyncio.gather(
        *(
            hot.put_small(
                m.volume_id, b"", versioning.marker_header(bucket.name, m, bucket.versioning)
            )
            for m in records
        ),
        return_exceptions=True,
    )
    failed = [loc for loc in locations if isinstance(loc, BaseException)]
    done = {
        i: (m, versioning.marker_volume(bucket.name, m, hot.layout.name, loc))
        for (i, _key), m, loc in zip(wanted, records, locations, strict=True)
        if not isinstance(loc, BaseException)
    }
    if failed:
        await _free_markers(service, done, set())
        raise failed[0]
    return done


async def _free_markers(
    service: ObjectService,
    markers: dict[int, tuple[ObjectRecord, VolumeRecord]],
    committed: set[int],
) -> None:
    for i, (_marker, volume) in markers.items():
        if i not in committed:
            await service.free_volume(volume)


def _commit(
    service: ObjectService,
    tx: Tx,
    *,
    bucket: str,
    owner_id: str,
    targets: Sequence[tuple[str, str | None]],
    markers: dict[int, tuple[ObjectRecord, VolumeRecord]],
    committed: set[int],
    bypass: bool,
    replica: replicas.Replica | None = None,
) -> list[DeleteOutcome]:
    found = service._owned(catalog.get_bucket(tx, bucket), bucket, owner_id)
    now = service.clock.now()
    committed.clear()  # the writer may run this again (a map resize)
    out: list[DeleteOutcome] = []
    for i, (key, version_id) in enumerate(targets):
        try:
            if version_id is not None:
                removed = versioning.remove_version(tx, found, key, version_id, now, bypass=bypass)
                if removed is not None:
                    versioning.retire(tx, [removed])
                out.append(DeleteOutcome(key, version_id, removed=removed))
            elif found.versioning:
                if i not in markers:
                    raise _Replan
                marker, volume = markers[i]
                if replica is not None:
                    replicas.check_new(tx, found, key, replica)
                service.note_version(tx, found, marker)
                replaced = versioning.write_version(tx, found, marker, now, bypass=bypass)
                catalog.put_volume(tx, volume)  # after the check that may refuse the key
                versioning.retire(tx, replaced)
                committed.add(i)
                out.append(DeleteOutcome(key, marker=marker))
            else:
                removed = versioning.remove_version(tx, found, key, NULL, now, bypass=bypass)
                if removed is not None:
                    versioning.retire(tx, [removed])
                out.append(DeleteOutcome(key, removed=removed))
        except errors.AccessDenied as exc:
            out.append(DeleteOutcome(key, version_id, error=exc))
    return out
