"""The replication queue: what each target still has to receive, kept in LMDB.

An entry is written in the same metadata transaction as the version or delete marker it
replicates (:func:`Enqueuer.__call__`, the object service's ``on_version`` hook), so a
version acknowledged to a client always has its entries: a crash loses none. An entry
leaves the queue in the transaction that records its push (:func:`finish`).

Database (format 1)::

    replq  target NUL order (16 bytes) bucket
           -> 0x01 + JSON QueueEntry (stratum.meta.records' record encoding)

A change of a version's tags, ACL or Object Lock state after it was written
(:mod:`stratum.service.amend`) is queued the same way (:meth:`Enqueuer.amended`): as an
*amend* entry if the version has none waiting, else by counting the change in the entry
waiting (``amended``), whose push then sends the state as it is by then.

Entries of a target sort by order, so a target receives the versions of one key, and
roughly all versions, oldest first; an entry waiting out its backoff after a failure holds
back the later entries of its key (:func:`due`). The key itself is in the value (a key may
be too long for an LMDB key next to the rest). Two versions never share an order in one
bucket (an order is a microsecond of one process's strictly increasing clock, a site id and
32 random bits), so the LMDB key names one version for one target.

The version's own record says where replication stands (``ObjectRecord.replication``,
``x-amz-replication-status``): PENDING from the transaction that queues it, COMPLETED when
the last target has it, FAILED while a target keeps refusing it (retried all the same,
later and later); REPLICA on the site that received it, which never queues it again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from stratum.config import ReplicationTarget
from stratum.meta import catalog, versions
from stratum.meta.records import BucketRecord, ObjectRecord, Record
from stratum.meta.store import Tx
from stratum.service.replicas import COMPLETED, ENABLED, FAILED, PENDING, REPLICA

DB = "replq"
SEP = b"\x00"
ORDER = versions.ORDER_BYTES
FAILED_AFTER = 3  # failed attempts after which a version's status is FAILED


@dataclass
class QueueEntry(Record):
    """One version (or delete marker) one target has yet to receive."""

    bucket: str
    key: str
    version_id: str  # 32 hex: the order
    marker: bool  # a delete marker
    size: int
    queued: float  # when it was queued (the clock of the writing site)
    attempts: int = 0
    next_try: float = 0.0  # not before (backoff after a failure)
    error: str = ""  # the last failure, for `stratum replication status`
    # only the version's tags and Object Lock state are to be sent: the target has the
    # version (stratum.replication.amendments)
    amend: bool = False
    # changes made while the entry waited: a push under way may have read the version
    # before them, so its finish leaves an amend entry instead of none
    amended: int = 0


def entry_key(target: str, order: bytes, bucket: str) -> bytes:
    return target.encode() + SEP + order + bucket.encode("utf-8", "surrogateescape")


def target_of(dbkey: bytes) -> str:
    return dbkey.split(SEP, 1)[0].decode()


# -- queueing, in the writing transaction -----------------------------------------------------


class Enqueuer:
    """The object service's ``on_version`` hook: queue a new version for every target that
    replicates its bucket (those of the configuration, and ``rules`` of the bucket's own
    replication configuration, see :mod:`stratum.replication.rules`)."""

    def __init__(
        self,
        targets: Sequence[ReplicationTarget],
        now: Callable[[], float],
        rules: Callable[[BucketRecord], Sequence[tuple[str, str, bool]]] | None = None,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.targets = tuple(targets)
        self.now = now
        self.rules = rules  # bucket -> (target name, key prefix, delete markers) per rule
        self.wake = wake  # called from the writer thread: must be thread-safe

    def targets_for(self, bucket: BucketRecord, record: ObjectRecord) -> list[str]:
        names = [
            t.name
            for t in self.targets
            if t.covers(bucket.name) and (t.delete_markers or not record.delete_marker)
        ]
        if self.rules is not None:
            for name, prefix, markers in self.rules(bucket):
                wanted = record.key.startswith(prefix) and (markers or not record.delete_marker)
                if wanted and name not in names:
                    names.append(name)
        return names

    def __call__(self, tx: Tx, bucket: BucketRecord, record: ObjectRecord) -> None:
        if record.replication == REPLICA or bucket.versioning != ENABLED:
            return
        if record.version_id == versions.NULL or not record.order:
            return
        names = self.targets_for(bucket, record)
        if not names:
            return
        record.replication = PENDING
        entry = QueueEntry(
            bucket=bucket.name,
            key=record.key,
            version_id=record.version_id,
            marker=record.delete_marker,
            size=record.size,
            queued=self.now(),
        ).encode()
        order = bytes.fromhex(record.order)
        for name in names:
            tx.put(DB, entry_key(name, order, bucket.name), entry)
        if self.wake is not None:
            self.wake()

    def amended(self, tx: Tx, bucket: BucketRecord, record: ObjectRecord) -> None:
        """The object service's ``on_amend`` hook: the tags, ACL or Object Lock state of a
        version written on this site changed (changes made to a replica are the other
        site's to send)."""
        if record.replication == REPLICA or record.delete_marker:
            return
        if bucket.versioning != ENABLED or record.version_id == versions.NULL:
            return
        names = self.targets_for(bucket, record)
        order = versions.order_of(record)
        for name in names:
            dbkey = entry_key(name, order, bucket.name)
            raw = tx.get(DB, dbkey)
            if raw is None:
                entry = QueueEntry(
                    bucket.name, record.key, order.hex(), False, 0, self.now(), amend=True
                )
            else:
                entry = QueueEntry.decode(raw)
                entry.amended += 1
            tx.put(DB, dbkey, entry.encode())
        if names and self.wake is not None:
            self.wake()


def requeue(tx: Tx, target: str, bucket: str, record: ObjectRecord, now: float) -> bool:
    """Queue an existing version for ``target`` again (drift repair); False if queued."""
    order = versions.order_of(record)
    dbkey = entry_key(target, order, bucket)
    if tx.get(DB, dbkey) is not None:
        return False
    entry = QueueEntry(
        bucket, record.key, order.hex(), record.delete_marker, record.size, queued=now
    )
    tx.put(DB, dbkey, entry.encode())
    return True


# -- reading --------------------------------------------------------------------------------


def entries(tx: Tx, target: str, after: bytes = b"") -> Iterator[tuple[bytes, QueueEntry]]:
    """The target's entries, oldest order first, from just after ``after`` (an LMDB key)."""
    base = target.encode() + SEP
    cur = tx.cursor(DB)
    start = after + b"\x00" if after else base
    if not cur.set_range(start):
        return
    for dbkey, raw in cur:
        if not dbkey.startswith(base):
            return
        yield bytes(dbkey), QueueEntry.decode(bytes(raw))


@dataclass
class Due:
    """What a pass may push now, and when the first entry held back by backoff is due."""

    entries: list[tuple[bytes, QueueEntry]]
    next_try: float | None  # None: nothing seen is waiting for its backoff


def due(tx: Tx, target: str, now: float, limit: int, scan: int = 2_000) -> Due:
    """Up to ``limit`` entries whose time has come, oldest first, among the first ``scan``
    entries (a queue held back by an unreachable target is not walked whole every pass).

    An entry waiting out its backoff holds back the later entries of its key: a plain S3
    target makes the last version it receives current, so a later version pushed first
    would leave the older one current there once it is retried."""
    out: list[tuple[bytes, QueueEntry]] = []
    later: float | None = None
    held: set[tuple[str, str]] = set()  # (bucket, key) with an earlier entry waiting
    for seen, (dbkey, entry) in enumerate(entries(tx, target)):
        if entry.next_try > now:
            held.add((entry.bucket, entry.key))
            later = entry.next_try if later is None else min(later, entry.next_try)
        elif (entry.bucket, entry.key) not in held:
            out.append((dbkey, entry))
            if len(out) >= limit:
                break
        if seen >= scan:
            break
    return Due(out, later)


@dataclass
class Depth:
    """How much a target has yet to receive."""

    entries: int = 0
    bytes: int = 0
    oldest: float | None = None  # when the oldest entry was queued
    failing: int = 0  # entries that failed at least once
    last_error: str = ""


def depth(tx: Tx, target: str) -> Depth:
    """A walk of the target's entries (the status command and the metrics)."""
    out = Depth()
    for _dbkey, entry in entries(tx, target):
        out.entries += 1
        out.bytes += entry.size
        out.oldest = entry.queued if out.oldest is None else min(out.oldest, entry.queued)
        if entry.attempts:
            out.failing += 1
            out.last_error = out.last_error or entry.error
    return out


# -- settling, in the pusher's transactions ----------------------------------------------------


def _set_status(tx: Tx, entry: QueueEntry, status: str) -> None:
    """Record where replication stands on the version itself (both copies of it)."""
    order = bytes.fromhex(entry.version_id)
    record = versions.get(tx, entry.bucket, entry.key, order)
    if record is None or record.replication == status:
        return
    record.replication = status
    encoded = record.encode()
    tx.put("versions", versions.version_key(entry.bucket, entry.key, order), encoded)
    current = catalog.get_object(tx, entry.bucket, entry.key)
    if current is not None and current.order == record.order:
        catalog.set_object(tx, entry.bucket, record, encoded)


def finish(tx: Tx, dbkey: bytes, entry: QueueEntry, targets: Sequence[str]) -> None:
    """The entry's target has the version: forget the entry; once no target of ``targets``
    still waits for it, the version's status becomes COMPLETED."""
    raw = tx.get(DB, dbkey)
    if raw is None:
        return  # settled already (a transaction run twice)
    stored = QueueEntry.decode(raw)
    if stored.amended != entry.amended:  # changed after this push read the version
        stored.amend, stored.amended = True, 0
        stored.attempts, stored.next_try, stored.error = 0, 0.0, ""
        tx.put(DB, dbkey, stored.encode())
        return
    tx.delete(DB, dbkey)
    order = bytes.fromhex(entry.version_id)
    others = (entry_key(name, order, entry.bucket) for name in targets)
    waiting = [
        QueueEntry.decode(raw) for raw in (tx.get(DB, key) for key in others) if raw is not None
    ]
    if not waiting:
        _set_status(tx, entry, COMPLETED)
    elif not any(w.attempts for w in waiting):
        _set_status(tx, entry, PENDING)


def failed(tx: Tx, dbkey: bytes, entry: QueueEntry, error: str, next_try: float) -> None:
    """A push failed: try again at ``next_try``; after FAILED_AFTER attempts the version's
    status is FAILED (until a later attempt succeeds)."""
    raw = tx.get(DB, dbkey)
    if raw is None:
        return
    stored = QueueEntry.decode(raw)  # with the changes counted since the push read it
    stored.attempts += 1
    stored.error = error[:500]
    stored.next_try = next_try
    tx.put(DB, dbkey, stored.encode())
    if stored.attempts >= FAILED_AFTER:
        _set_status(tx, stored, FAILED)


def drop(tx: Tx, dbkey: bytes) -> None:
    """An entry whose version is gone for good (removed before it was pushed)."""
    tx.delete(DB, dbkey)
