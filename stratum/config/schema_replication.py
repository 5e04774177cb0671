"""The schema of ``[replication.<name>]``: one table per site that keeps a copy."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from stratum.config import checks
from stratum.config.kinds import BOOL, DURATION, OPTIONAL_PATH, STRING, STRINGS
from stratum.config.setting import key


@dataclass(frozen=True, kw_only=True)
class ReplicationTarget:
    """``[replication.<name>]``: another site (a Stratum, or any S3) that keeps a copy."""

    buckets: tuple[str, ...] = field(
        metadata=key(
            [],
            STRINGS,
            'Buckets replicated to this target, or ["*"] for every bucket. Only versions'
            " written while a bucket's versioning is Enabled are replicated.",
            checks.replication_buckets,
        )
    )
    endpoint: str = field(
        metadata=key(
            "",
            STRING,
            'URL of the target\'s S3 endpoint, e.g. "https://stratum.parents.example:9000";'
            " required.",
            checks.endpoint,
        )
    )
    region: str = field(
        metadata=key("us-east-1", STRING, "Region the target expects.", checks.region)
    )
    bucket: str = field(
        metadata=key(
            "{bucket}",
            STRING,
            "Name of the target bucket; {bucket} stands for the source bucket's name. The"
            " target bucket must exist with versioning Enabled.",
            checks.target_bucket,
        )
    )
    prefix: str = field(
        metadata=key(
            "", STRING, "Key prefix of the copies on the target (empty: none).", checks.prefix
        )
    )
    credentials_file: Path | None = field(
        metadata=key(
            "",
            OPTIONAL_PATH,
            "File with the target's keys, as the cold tier's: access_key = \"...\" and"
            ' secret_key = "..." (TOML, or plain lines). On a Stratum target, list that'
            " access key in the target's [server] replication_keys so that it keeps version"
            " ids and times; without them every copy is a new version there.",
        )
    )
    delete_markers: bool = field(
        metadata=key(
            True,
            BOOL,
            "Replicate delete markers. Versions removed for good (a DELETE naming a version)"
            " are never replicated.",
        )
    )

    compare_interval: float = field(
        metadata=key(
            "6h",
            DURATION,
            "How often this site's versions of the target's buckets are compared with the"
            " target's listing, and what it lacks is sent again (a lost queue, a restored"
            " backup); 0: never. Only on a target that keeps version ids (a Stratum that"
            " lists this site's key in its replication_keys).",
        )
    )
    name: str = ""  # the table's name: [replication.<name>]

    def covers(self, bucket: str) -> bool:
        return "*" in self.buckets or bucket in self.buckets

    def target_bucket(self, bucket: str) -> str:
        return self.bucket.replace("{bucket}", bucket)
