"""The schema: one frozen dataclass per TOML table, each key's default and help beside it.

Each key is a dataclass field whose ``metadata`` holds a :class:`Setting`: its default as
written in TOML, its kind (:mod:`stratum.config.kinds`), an optional check
(:mod:`stratum.config.checks`) and its help text (:mod:`stratum.config.setting`). A sub-table
is a field whose type is another of these dataclasses, with its own help. :func:`settings` and
:func:`table_help` flatten the tree in file order for the loader and the renderings.

The tables of the endpoint, storage, tiers, scrubbing and console are here; ``[prices]``,
``[lifecycle]`` and ``[replication.<name>]`` have modules of their own
(:mod:`stratum.config.schema_prices`, :mod:`~stratum.config.schema_lifecycle`,
:mod:`~stratum.config.schema_replication`).
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from stratum.config import checks
from stratum.config.checks import ZFS_COMPRESSION, split_listen
from stratum.config.kinds import (
    BOOL,
    DURATION,
    INT,
    OPTIONAL_PATH,
    OPTIONAL_SIZE,
    PATH,
    PATHS,
    SIZE,
    STRING,
    STRINGS,
)
from stratum.config.schema_lifecycle import LifecycleConfig
from stratum.config.schema_prices import PricesConfig
from stratum.config.schema_replication import ReplicationTarget
from stratum.config.schema_tiering import TieringConfig
from stratum.config.setting import NAME, NAMED, SETTING, TABLE, Setting, key, named, table

MAX_SHARDS = 256  # zfec's limit on data + parity shards

# --- the schema ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """``[server]``: the S3 endpoint."""

    listen: str = field(
        metadata=key(
            "127.0.0.1:9000",
            STRING,
            "Address the S3 endpoint listens on, HOST:PORT; an IPv6 host goes in brackets"
            ' ("[::1]:9000"). The default answers this machine only: "0.0.0.0:9000" (every IPv4'
            ' address) or "[::]:9000" (every address) serves the network. Port 0 picks a free'
            " port.",
            checks.listen,
        )
    )
    tls_cert: Path | None = field(
        metadata=key(
            "",
            OPTIONAL_PATH,
            "PEM file of the certificate (followed by its chain) the server presents: with"
            " tls_key, the port speaks HTTPS only. Set both or neither. SIGHUP loads the files"
            " again (a renewed certificate) without dropping a connection; a file that does"
            " not load leaves the certificate in use serving.",
        )
    )
    tls_key: Path | None = field(
        metadata=key(
            "",
            OPTIONAL_PATH,
            "PEM file of the certificate's private key, not encrypted; readable by the service"
            " user only.",
        )
    )
    region: str = field(
        metadata=key(
            "us-east-1",
            STRING,
            "Region the server reports and expects in request signatures"
            " (lowercase letters, digits and dashes).",
            checks.region,
        )
    )
    domain: str = field(
        metadata=key(
            "",
            STRING,
            'Base domain for virtual-host-style addressing: with "s3.home.lan", a request to'
            ' photos.s3.home.lan addresses the bucket "photos". Empty: path-style addressing only'
            " (http://host:port/bucket/key).",
            checks.domain,
        )
    )
    access_key: str = field(
        metadata=key(
            "",
            STRING,
            "Access key of the S3 user. Empty: taken from the environment variables"
            " STRATUM_ACCESS_KEY and STRATUM_SECRET_KEY, else generated. Set both keys or neither.",
            checks.access_key,
        )
    )
    secret_key: str = field(
        repr=False,
        metadata=key(
            "",
            STRING,
            "Secret key that goes with access_key. If you set it here, make this file readable by"
            " the service user only.",
            checks.secret_key,
            secret=True,
        ),
    )
    sigv2: bool = field(
        metadata=key(
            True,
            BOOL,
            "Accept AWS Signature Version 2 (the Authorization: AWS header and AWSAccessKeyId"
            " presigned URLs, whose Expires may be at most a week ahead). false: refuse it"
            " (400 InvalidRequest, as AWS regions without SigV2 answer); clients must sign with"
            " SigV4 (boto3 presigns with SigV2 in us-east-1 unless told signature_version=s3v4).",
        )
    )
    log_format: str = field(
        metadata=key(
            "text",
            STRING,
            '"text" (human-readable lines) or "json" (one JSON object per line).',
            checks.one_of("text", "json"),
        )
    )
    access_log: bool = field(
        metadata=key(
            True,
            BOOL,
            "Log one line per S3 request (written in batches, at most 50 ms late; warnings and"
            " errors at once).",
        )
    )
    workers: int = field(
        metadata=key(
            0,
            INT,
            "Server processes sharing the port and the data (each uses one core for its "
            "Python code); 0 = one per CPU core, up to 4.",
            checks.between(0, 1024),
        )
    )
    metrics_token: str = field(
        repr=False,
        metadata=key(
            "",
            STRING,
            "When set, GET /metrics answers only requests carrying Authorization: Bearer <this"
            " token> (Prometheus: authorization: {credentials: ...}), others get 401, and only"
            " they see the disks' paths (label disk; every scrape gets each disk's id). Empty:"
            " anyone who reaches the port may scrape. /health/* stays open.",
            checks.secret_key,
            secret=True,
        ),
    )
    metrics_loopback_only: bool = field(
        metadata=key(
            False,
            BOOL,
            "Answer GET /metrics only to clients on this machine (127.0.0.1, ::1); others get"
            " 403. With metrics_token set too, a scrape needs both.",
        )
    )
    idle_timeout: float = field(
        metadata=key(
            "30s",
            DURATION,
            "A connection waiting for a request (just opened, or kept open after a response) is"
            " closed if no request has arrived in full, headers and all, within this time: idle"
            " keep-alive connections and clients that send headers slowly alike. Clients reopen"
            " connections as they need them.",
            checks.positive,
        )
    )
    body_timeout: float = field(
        metadata=key(
            "30s",
            DURATION,
            "A request body from which nothing arrives for this long is refused with 400"
            " RequestTimeout, as S3 does, and its connection closed. It bounds each pause"
            " between two reads, not the whole body: a slow but steady upload is never cut.",
            checks.positive,
        )
    )
    site_id: int = field(
        metadata=key(
            0,
            INT,
            "This site's id (1-4294967295), written into every version id it makes, so that"
            " of two versions written in the same microsecond on two sites the one of the"
            " higher site id is current on both. Required, and distinct on every site, when"
            " [replication.<name>] tables are set.",
            checks.between(0, 2**32 - 1),
        )
    )
    replication_keys: tuple[str, ...] = field(
        metadata=key(
            [],
            STRINGS,
            "Access keys granted replication rights: only requests signed with one of them may"
            " write replicas (a version with the id, order and time another site gave it);"
            " the other site's [replication.<name>] credentials_file holds one of these keys.",
            checks.access_keys,
        )
    )

    @property
    def host(self) -> str:
        """Host part of ``listen`` (an IPv6 address without brackets)."""
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]


@dataclass(frozen=True, kw_only=True)
class StorageConfig:
    """``[storage]``: where data and metadata live, and how objects are stored."""

    data_dir: Path = field(
        metadata=key(
            "./stratum-data",
            PATH,
            "Directory of the metadata, and of the hot tier's disk when [tiers.hot] lists none"
            " (<data_dir>/disks/hot).",
        )
    )
    data_shards: int = field(
        metadata=key(
            4,
            INT,
            "Data shards per erasure-coded stripe (1-255), for tiers that do not set their own.",
            checks.between(1, MAX_SHARDS - 1),
        )
    )
    parity_shards: int = field(
        metadata=key(
            2,
            INT,
            "Parity shards per stripe: how many shards (disks) may be lost without losing data."
            " Less than data_shards, or 0-2 with data_shards = 1 (plain copies);"
            f" data_shards + parity_shards <= {MAX_SHARDS}.",
            checks.between(0, MAX_SHARDS - 1),
        )
    )
    block_size: int = field(
        metadata=key(
            "256KiB",
            SIZE,
            "Large objects are erasure coded in blocks of this size, each cut into"
            " data_shards + parity_shards shards. A positive multiple of 4KiB.",
            checks.block_size,
        )
    )
    small_object_threshold: int = field(
        metadata=key(
            "128KiB",
            SIZE,
            "Objects of this size or smaller are packed into replicated segment files instead of"
            " being erasure coded. At most segment_size.",
        )
    )
    segment_size: int = field(
        metadata=key(
            "64MiB",
            SIZE,
            "Size at which a segment file of packed small objects is closed and a new one started.",
            checks.positive,
        )
    )
    max_object_size: int = field(
        metadata=key(
            "5GiB",
            SIZE,
            "Largest object a single PUT accepts; larger objects need a multipart upload.",
            checks.positive,
        )
    )
    multipart_expiry: float = field(
        metadata=key(
            "7d",
            DURATION,
            "Multipart uploads neither completed nor aborted within this time are aborted and"
            " their parts deleted.",
            checks.positive,
        )
    )
    metadata_backup_interval: float = field(
        metadata=key(
            "1h",
            DURATION,
            "Consistent copies of the metadata store are written this often (and shortly after"
            " start) to metadata_backup_copies disks, under meta-backup/. `stratum"
            " recover-metadata` takes users and buckets from the newest one if the store is lost.",
            checks.positive,
        )
    )
    metadata_backup_copies: int = field(
        metadata=key(
            0,
            INT,
            "On how many disks each metadata backup is kept: the disks that hold the last one"
            " while they are online, else others, spread over the tiers; copies on the other"
            " disks are removed. 0: the largest parity_shards of the local tiers plus one, so"
            " that losing as many disks as erasure coding survives still leaves a copy. At most"
            " the number of disks.",
            checks.between(0, 10_000),
        )
    )
    snapshot_interval: float = field(
        metadata=key(
            0,
            DURATION,
            "When data_dir is on a ZFS dataset, a ZFS snapshot of the metadata (and with"
            ' snapshot_data of the tiers\' ZFS datasets) is taken this often, e.g. "1d".'
            " 0: only on demand (`stratum snapshot`).",
        )
    )
    snapshot_data: bool = field(
        metadata=key(
            False,
            BOOL,
            'Scheduled snapshots also take the datasets of the tiers with backend = "zfs"'
            " (all in the same instant when they share the metadata's pool).",
        )
    )
    snapshot_keep: int = field(
        metadata=key(
            7,
            INT,
            "How many of Stratum's snapshots (named stratum-<time>) of each dataset are kept;"
            " older ones are destroyed after each new snapshot.",
            checks.between(1, 100_000),
        )
    )


def _like_storage(name: str, help: str) -> dict[str, object]:
    """The metadata of a tier's key that is absent by default, meaning the value of the
    [storage] key of the same name, with that key's kind and check."""
    (setting,) = [f.metadata[SETTING] for f in dataclasses.fields(StorageConfig) if f.name == name]
    return key(None, setting.kind, help, setting.check, inherits=f"storage.{name}")


@dataclass(frozen=True, kw_only=True)
class TierConfig:
    """``[tiers.hot]`` or ``[tiers.warm]``: an erasure-coded tier on local disks."""

    disks: tuple[Path, ...] = field(
        metadata=key([], PATHS, "Directories of this tier, one per disk.")
    )
    data_shards: int = field(
        metadata=_like_storage("data_shards", "Data shards per stripe in this tier.")
    )
    parity_shards: int = field(
        metadata=_like_storage("parity_shards", "Parity shards per stripe in this tier.")
    )
    backend: str = field(
        metadata=key(
            "directory",
            STRING,
            '"directory": each disk is a plain directory. "zfs": each disk is the ZFS dataset'
            " <zfs_parent>/<name of the disk directory>, mounted at the disk path; Stratum"
            " creates missing datasets and treats a FAULTED or missing zpool as a failed disk."
            " Needs libzfs_core (Debian: python3-pyzfs).",
            checks.one_of("directory", "zfs"),
        )
    )
    zfs_parent: str = field(
        metadata=key(
            "",
            STRING,
            'Parent dataset of this tier\'s disks with backend = "zfs", e.g. "tank/stratum/hot";'
            " created (canmount=off) if missing, in a zpool that must exist.",
            checks.dataset,
        )
    )
    zfs_compression: str = field(
        metadata=key(
            "lz4",
            STRING,
            "compression of the datasets Stratum creates (atime is always off): lz4, zstd,"
            " gzip, gzip-1 to gzip-9, zle, lzjb, on or off.",
            checks.one_of(*ZFS_COMPRESSION),
        )
    )
    zfs_recordsize: int = field(
        metadata=key(
            "",
            OPTIONAL_SIZE,
            "recordsize of the datasets Stratum creates, a power of two from 4KiB to 1MiB."
            " Empty: storage.block_size rounded down to a power of two (256KiB by default),"
            " since shard files are written a block at a time.",
            checks.recordsize,
        )
    )

    @property
    def enabled(self) -> bool:
        return bool(self.disks)


_DISKS = "Directories of this tier, normally one per physical disk (relative: to this file)."
_HOT_DISKS = (
    f"{_DISKS} Empty: a single disk at <data_dir>/disks/hot. A stripe's shards are spread over"
    " the disks, so up to parity_shards disks can fail without losing data. A directory may be"
    " listed only once across all tiers."
)
_WARM_DISKS = f"{_DISKS} Empty: no warm tier."


@dataclass(frozen=True, kw_only=True)
class ColdTierConfig:
    """``[tiers.cold]``: an S3-compatible bucket elsewhere."""

    endpoint: str = field(
        metadata=key(
            "",
            STRING,
            "URL of an S3-compatible store that receives idle objects, encrypted, e.g."
            ' "https://s3.eu-central-003.backblazeb2.com". Empty: no cold tier.',
            checks.endpoint,
        )
    )
    region: str = field(
        metadata=key("us-east-1", STRING, "Region of the cold bucket.", checks.region)
    )
    bucket: str = field(
        metadata=key(
            "",
            STRING,
            "Bucket that receives cold objects; required when endpoint is set.",
            checks.bucket,
        )
    )
    prefix: str = field(
        metadata=key(
            "stratum/",
            STRING,
            "Key prefix of everything Stratum writes to the bucket.",
            checks.prefix,
        )
    )
    credentials_file: Path | None = field(
        metadata=key(
            "",
            OPTIONAL_PATH,
            "File with the cold store's keys, as TOML (or plain lines without quotes):"
            ' access_key = "..." and secret_key = "...". The environment variables'
            " STRATUM_COLD_ACCESS_KEY and STRATUM_COLD_SECRET_KEY take precedence. Empty and no"
            " environment: the default AWS credential chain (~/.aws/credentials, instance role).",
        )
    )
    encryption_key_file: Path = field(
        metadata=key(
            "",
            OPTIONAL_PATH,
            "File holding the key that encrypts objects before they go to the cold tier. Empty:"
            " <data_dir>/cold.key. Back it up: without it cold objects cannot be read.",
        )
    )

    @property
    def enabled(self) -> bool:
        return bool(self.endpoint)


@dataclass(frozen=True, kw_only=True)
class TiersConfig:
    hot: TierConfig = field(
        metadata=table("The hot tier: new objects are written here (fast disks).", disks=_HOT_DISKS)
    )
    warm: TierConfig = field(
        metadata=table(
            "The warm tier: objects idle in hot move here (large, slow disks).", disks=_WARM_DISKS
        )
    )
    cold: ColdTierConfig = field(
        metadata=table(
            "The cold tier: an S3-compatible bucket elsewhere (Backblaze B2, AWS S3, a remote"
            " MinIO) that receives objects idle in warm."
        )
    )


@dataclass(frozen=True, kw_only=True)
class ScrubConfig:
    """``[scrub]``: background verification of stored data."""

    interval: float = field(
        metadata=key(
            "30d",
            DURATION,
            "Every stored shard is read and its checksum verified once per this period; damaged"
            " shards are rebuilt from parity.",
            checks.positive,
        )
    )
    rate: int = field(
        metadata=key("20MiB", SIZE, "Bytes per second the scrubber may read.", checks.positive)
    )


@dataclass(frozen=True, kw_only=True)
class ConsoleConfig:
    """``[console]``: the web console, on a port of its own."""

    listen: str = field(
        metadata=key(
            "127.0.0.1:9001",
            STRING,
            "Address the web console listens on, HOST:PORT (its own port: no S3 path or bucket"
            ' name is taken). Empty: no console. "0.0.0.0:9001" serves it on the network;'
            " with [server] tls_cert set it is served over TLS with the same certificate.",
            checks.optional_listen,
        )
    )
    session_lifetime: float = field(
        metadata=key(
            "12h",
            DURATION,
            "How long a console login lasts; then the user logs in again.",
            checks.positive,
        )
    )
    history_interval: float = field(
        metadata=key(
            "5m",
            DURATION,
            "How often the primary process records each tier's objects and bytes for the"
            " console's charts (kept: 2 days of these, 90 days hourly, 3 years daily).",
            checks.positive,
        )
    )
    access_history: int = field(
        metadata=key(
            100000,
            INT,
            "Object requests (PUT, GET, HEAD, DELETE: time, key, size) kept for the console's"
            " tiering what-if, oldest forgotten first; 0 records none.",
            checks.between(0, 10_000_000),
        )
    )


@dataclass(frozen=True, kw_only=True)
class Config:
    """The whole configuration; build it with :func:`load_config`."""

    server: ServerConfig = field(metadata=table("The S3 endpoint."))
    storage: StorageConfig = field(
        metadata=table("Where data and metadata live, and how objects are stored.")
    )
    tiers: TiersConfig = field(metadata=table("Storage tiers."))
    tiering: TieringConfig = field(metadata=table("Automatic movement of objects between tiers."))
    prices: PricesConfig = field(
        metadata=table("What storage costs: the tier simulator's and placement's prices.")
    )
    scrub: ScrubConfig = field(metadata=table("Background verification of stored data."))
    console: ConsoleConfig = field(metadata=table("The web console."))
    lifecycle: LifecycleConfig = field(
        metadata=table("Lifecycle rules: expiring objects and versions, aborting uploads.")
    )
    replication: tuple[ReplicationTarget, ...] = field(
        default=(),
        metadata=named(
            "A replication target: every new version and delete marker of the buckets listed"
            " is queued (in the transaction that writes it) and copied there with its version"
            " id, time, metadata and checksums. One table per target, named as you like"
            " ([replication.offsite]); none by default.",
            ReplicationTarget,
        ),
    )
    source: Path | None = None  # the file this was loaded from (absolute); None: no file

    def target(self, name: str) -> ReplicationTarget:
        """The replication target ``[replication.<name>]``; KeyError if there is none."""
        for target in self.replication:
            if target.name == name:
                return target
        raise KeyError(name)


# --- walking the schema -------------------------------------------------------------------


def schema_fields(cls: type) -> list[dataclasses.Field[Any]]:
    """The fields of one table that are keys or sub-tables (not ``Config.source``)."""
    return [
        f
        for f in dataclasses.fields(cls)
        if SETTING in f.metadata or TABLE in f.metadata or NAMED in f.metadata
    ]


def is_table(f: dataclasses.Field[Any]) -> bool:
    return TABLE in f.metadata


def named_type(f: dataclasses.Field[Any]) -> type | None:
    """The dataclass of each table of a table of named tables; None for other fields."""
    named = f.metadata.get(NAMED)
    return None if named is None else named[1]


@functools.cache
def subtable_type(cls: type, name: str) -> type:
    hint = typing.get_type_hints(cls)[name]
    assert isinstance(hint, type) and dataclasses.is_dataclass(hint)
    return hint


def settings() -> Mapping[str, Setting]:
    """The schema, flattened: dotted key -> :class:`Setting` (help as shown), in file order."""
    return _schema()[0]


def table_help() -> Mapping[str, str]:
    """Dotted table name -> its description, in file order ("tiers" before "tiers.hot")."""
    return _schema()[1]


@functools.cache
def _schema() -> tuple[Mapping[str, Setting], Mapping[str, str]]:
    keys: dict[str, Setting] = {}
    tables: dict[str, str] = {}

    def walk(cls: type, prefix: str, key_help: Mapping[str, str]) -> None:
        for f in schema_fields(cls):
            if is_table(f):
                help, sub_key_help = f.metadata[TABLE]
                tables[prefix + f.name] = help
                walk(subtable_type(cls, f.name), f"{prefix}{f.name}.", sub_key_help)
            elif NAMED in f.metadata:
                help, each = f.metadata[NAMED]
                tables[f"{prefix}{f.name}.{NAME}"] = help
                walk(each, f"{prefix}{f.name}.{NAME}.", {})
            else:
                setting = f.metadata[SETTING]
                help = key_help.get(f.name, setting.help)
                keys[prefix + f.name] = dataclasses.replace(setting, help=help)

    walk(Config, "", {})
    return MappingProxyType(keys), MappingProxyType(tables)
