"""What a recovery found, rebuilt and could not rebuild (``stratum recover-metadata``
prints it: :mod:`stratum.cli.recover`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Lost:
    """An object that could not be recovered whole."""

    name: str  # "bucket/key"
    volume_id: str
    why: str
    restored: bool = False  # the key points at it anyway: reads fail until it is repaired


@dataclass(frozen=True)
class DroppedUpload:
    bucket: str
    key: str
    upload_id: str
    parts: int
    size: int


@dataclass
class RecoveryReport:
    """What a recovery found, rebuilt and could not rebuild."""

    dry_run: bool = False
    disks: list[str] = field(default_factory=list)  # "<path> (<tier>)" of the disks scanned
    disk_problems: list[str] = field(default_factory=list)  # not scanned, or not wholly
    backup: str = ""  # the copy used, if any
    backup_created: float | None = None
    backups_unusable: list[str] = field(default_factory=list)
    objects: int = 0  # keys whose current version is an object
    versions: int = 0  # other versions of keys of versioned buckets (delete markers included)
    markers: int = 0  # delete markers
    bucket_configs: int = 0  # buckets whose configuration (versioning...) came from its record
    small: int = 0
    large: int = 0
    multipart: int = 0
    from_headers: int = 0  # object records rebuilt from disk headers alone
    buckets: int = 0
    buckets_from_backup: int = 0
    buckets_rebuilt: int = 0
    users: int = 0  # besides root
    garbage: int = 0
    unreadable: list[Lost] = field(default_factory=list)  # large: fewer than k shards
    damaged: list[Lost] = field(default_factory=list)  # small: every copy damaged
    missing_parts: list[Lost] = field(default_factory=list)  # multipart
    reduced: list[Lost] = field(default_factory=list)  # restored without their S3 metadata
    deleted_multipart: int = 0  # manifests of deleted objects (their parts were freed)
    unnamed: int = 0  # volumes whose headers name no object
    gone_since_backup: int = 0  # keys of the backup whose data is no longer on the disks
    remote: int = 0  # objects of a tier without local disks (cold), as the backup has them
    cold_tier: bool = False  # configured: its objects are not on the local disks
    uploads_dropped: list[DroppedUpload] = field(default_factory=list)
    lost_owners: dict[str, list[str]] = field(default_factory=dict)  # owner id -> buckets
    root_id: str = ""
    # users whose secrets are sealed with a key the data directory lacks, and what it holds
    users_locked: list[str] = field(default_factory=list)
    users_key_needed: str = ""  # the key id(s) they need
    users_key_file: str = ""
    users_key_held: str = ""  # the id of the key file's key; "" none, "unreadable"
    store: str = ""  # where the new store was written
    moved_aside: str = ""  # where the previous one went

    @property
    def complete(self) -> bool:
        """Everything found was recovered (uploads in progress never are, by design)."""
        return not (
            self.disk_problems
            or self.unreadable
            or self.damaged
            or self.missing_parts
            or self.reduced
            or self.lost_owners
            or self.users_locked
        )
