"""Errors of the storage (block) layer.

Everything the block layer raises on purpose is a :class:`StorageError`, so the layers above
can translate it at their boundary (the S3 layer maps :class:`StorageFull` to a 507-style
``InsufficientStorage`` / ``ServiceUnavailable`` and the rest to ``InternalError``). Messages
name the volume, shard, disk or path involved: they end up in logs read by a person.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base of every error the storage layer raises on purpose."""


class VolumeUnreadable(StorageError):
    """Fewer than ``k`` good blocks remain for some stripe of a volume: its data is lost."""


class StorageFull(StorageError):
    """A disk ran out of space (ENOSPC/EDQUOT) while writing; the write was aborted."""


class DiskWriteError(StorageError):
    """A disk could not be written (read-only, I/O error, missing directory...); aborted."""


class ShardFormatError(StorageError):
    """A shard file's header or footer is malformed, of an unknown version, or fails its CRC."""
