"""Stratum's configuration: one TOML file -> one frozen, typed :class:`Config`.

Every key has a default, so no file is needed at all. Values are taken, per key, from the
command-line ``overrides`` if given there, else from the file, else from the default. The
loader walks the dataclasses below generically: each setting carries its default (as written
in TOML), its kind (how a TOML value is converted), an optional check and its help text in
``field(metadata=...)``. The commented default file and the Markdown reference are rendered
from the same metadata (:mod:`stratum.config_render`), so they cannot drift.

In the object, durations are float seconds, sizes int bytes and paths absolute. Relative paths
are relative to the config file's directory, or to the current directory when there is no
file or the path is a command-line override. Inherited values are resolved: a tier's
``data_shards`` is always an int, the hot tier always has disks.

Every problem raises :class:`ConfigError`, whose message is one line naming the file, the
dotted key and what is wrong. Secrets never appear in a repr or an error message.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import math
import os
import re
import tomllib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from stratum.util.units import format_size, parse_duration, parse_size

__all__ = [
    "MAX_SHARDS",
    "ColdTierConfig",
    "Config",
    "ConfigError",
    "Credentials",
    "Kind",
    "ScrubConfig",
    "ServerConfig",
    "Setting",
    "StorageConfig",
    "TierConfig",
    "TieringConfig",
    "TiersConfig",
    "cold_credentials",
    "load_config",
    "server_credentials",
    "settings",
    "split_listen",
    "table_help",
]

MAX_SHARDS = 256  # zfec's limit on data + parity shards
_SETTING = "stratum.setting"
_TABLE = "stratum.table"


class ConfigError(Exception):
    """A configuration problem: ``stratum: config error in <path>: <key>: <why>`` (one line).

    ``path`` is None when the value came from the command line; ``key`` is the dotted key,
    empty when the problem is the whole file (unreadable, not TOML).
    """

    def __init__(self, path: Path | None, key: str, why: str) -> None:
        self.path = path
        self.key = key
        self.why = why.replace("\r", " ").replace("\n", " ")
        where = f" in {path}" if path is not None else ""
        what = f"{key}: " if key else ""
        super().__init__(f"stratum: config error{where}: {what}{self.why}")


@dataclass(frozen=True)
class Kind:
    """How a TOML value becomes a Python value."""

    name: str  # as shown to users: "integer", "size", "duration", ...
    convert: Callable[[object, Path], object]  # (TOML value, base dir) -> value; ValueError


@dataclass(frozen=True)
class Setting:
    """One key of the schema (see :func:`settings`)."""

    default: object  # as written in TOML; None: absent, meaning the value of ``inherits``
    kind: Kind
    help: str
    check: Callable[[Any], None] | None = None  # on the converted value; raises ValueError
    inherits: str | None = None  # dotted key
    secret: bool = False  # never shown in a repr or an error message


def _key(
    default: object,
    kind: Kind,
    help: str,
    check: Callable[[Any], None] | None = None,
    *,
    inherits: str | None = None,
    secret: bool = False,
) -> dict[str, object]:
    """The metadata of a setting; ``default`` is as written in TOML."""
    return {_SETTING: Setting(default, kind, help, check, inherits, secret)}


def _table(help: str, **key_help: str) -> dict[str, object]:
    """The metadata of a sub-table; ``key_help`` replaces the help of some of its keys."""
    return {_TABLE: (help, key_help)}


# --- kinds: TOML value -> Python value ---------------------------------------------------


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, str):
        return f'string "{value}"'
    if isinstance(value, int | float):
        return f"{'integer' if isinstance(value, int) else 'float'} {value}"
    if isinstance(value, list | tuple):
        return "array"
    return "table" if isinstance(value, dict) else type(value).__name__


def _want(expected: str, value: object) -> ValueError:
    return ValueError(f"must be {expected}, got {_describe(value)}")


def _str(value: object, base: Path) -> str:
    if not isinstance(value, str):
        raise _want("a string", value)
    return value


def _bool(value: object, base: Path) -> bool:
    if not isinstance(value, bool):
        raise _want("true or false", value)
    return value


def _int(value: object, base: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _want("an integer", value)
    return value


def _float(value: object, base: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _want("a number", value)
    return float(value)


def _duration(value: object, base: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _want('a duration like "30d" or a number of seconds', value)
    return parse_duration(value)


def _size(value: object, base: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _want('a size like "128KiB" or a whole number of bytes', value)
    return parse_size(value)


def _path(value: object, base: Path) -> Path:
    if not isinstance(value, str | os.PathLike):
        raise _want("a path (string)", value)
    text = os.fspath(value)
    if not isinstance(text, str) or not text:
        raise ValueError("must be a non-empty path")
    return Path(os.path.abspath(base / Path(text).expanduser()))


def _optional_path(value: object, base: Path) -> Path | None:
    return None if value == "" else _path(value, base)


def _optional_size(value: object, base: Path) -> int:
    return 0 if value == "" else _size(value, base)


def _path_list(value: object, base: Path) -> tuple[Path, ...]:
    if not isinstance(value, list | tuple):
        raise _want('an array of paths, e.g. ["/mnt/disk1", "/mnt/disk2"]', value)
    paths = []
    for index, item in enumerate(value):
        try:
            paths.append(_path(item, base))
        except ValueError as exc:
            raise ValueError(f"element {index}: {exc}") from None
    return tuple(paths)


STRING, BOOL, INT, FLOAT = (
    Kind("string", _str),
    Kind("boolean", _bool),
    Kind("integer", _int),
    Kind("float", _float),
)
DURATION, SIZE = Kind("duration", _duration), Kind("size", _size)
OPTIONAL_SIZE = Kind("size", _optional_size)  # "" -> 0
PATH, OPTIONAL_PATH, PATHS = (
    Kind("path", _path),
    Kind("path", _optional_path),
    Kind("array of paths", _path_list),
)


# --- checks on converted values -----------------------------------------------------------


def _between(low: int, high: int) -> Callable[[Any], None]:
    def check(value: int) -> None:
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}, got {value}")

    return check


def _positive(value: float) -> None:
    if value <= 0:
        raise ValueError(f"must be greater than 0, got {value}")


def _fraction(value: float) -> None:
    if not 0 < value <= 1:
        raise ValueError(f"must be a fraction greater than 0 and at most 1, got {value}")


def _one_of(*choices: str) -> Callable[[Any], None]:
    def check(value: str) -> None:
        if value not in choices:
            allowed = " or ".join(f'"{choice}"' for choice in choices)
            raise ValueError(f'must be {allowed}, got "{value}"')

    return check


def _block_size(value: int) -> None:
    if value <= 0 or value % 4096:
        raise ValueError(f"must be a positive multiple of 4096 bytes (4KiB), got {value} bytes")


# compression values Stratum can set through libzfs_core (stratum.pool.zfs.COMPRESSION)
ZFS_COMPRESSION: tuple[str, ...] = (
    *("lz4", "zstd", "gzip"),
    *(f"gzip-{n}" for n in range(1, 10)),
    *("zle", "lzjb", "on", "off"),
)
_DATASET = re.compile(r"[A-Za-z][A-Za-z0-9_.:-]*(?:/[A-Za-z0-9_.:-]+)*", re.A)
_DATASET_COMPONENT = re.compile(r"[A-Za-z0-9_.:-]+", re.A)


def _dataset(value: str) -> None:
    if value and not _DATASET.fullmatch(value):
        raise ValueError(
            f'must be empty or a ZFS dataset name like "tank/stratum/hot" (pool first,'
            f' no leading or trailing "/"), got "{value}"'
        )


def _recordsize(value: int) -> None:
    if value and (value & (value - 1) or not 4096 <= value <= 1 << 20):
        raise ValueError(f"must be empty or a power of two from 4KiB to 1MiB, got {value} bytes")


_HOSTNAME = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)(?:\.(?!-)[a-z0-9-]{1,63}(?<!-))*", re.I | re.A)
_REGION = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*", re.A)
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", re.A)
_PRINTABLE = re.compile(r"[\x21-\x7e]*", re.A)


def split_listen(listen: str) -> tuple[str, int]:
    """(host, port) of a ``HOST:PORT`` listen address; an IPv6 host comes back unbracketed."""
    usage = f'must be HOST:PORT, e.g. "0.0.0.0:9000" or "[::1]:9000", got "{listen}"'
    if listen.startswith("["):
        host, sep, port = listen[1:].partition("]:")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(usage) from None
    else:
        host, sep, port = listen.rpartition(":")
        if ":" in host:
            raise ValueError(f'{usage} (an IPv6 host goes in brackets: "[{host}]:{port}")')
        valid = _HOSTNAME.fullmatch(host) is not None
        if valid and re.fullmatch(r"[0-9.]+", host):
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                valid = False
        if not valid:
            raise ValueError(usage)
    if not sep or not re.fullmatch(r"[0-9]{1,5}", port) or int(port) > 65535:
        raise ValueError(f"{usage} (port 0-65535)" if sep else usage)
    return host, int(port)


def _listen(value: str) -> None:
    split_listen(value)


def _region(value: str) -> None:
    if not _REGION.fullmatch(value):
        raise ValueError(
            f'must look like "us-east-1" (lowercase letters, digits, dashes), got "{value}"'
        )


def _domain(value: str) -> None:
    if value and (not _HOSTNAME.fullmatch(value) or value != value.lower()):
        raise ValueError(
            f'must be empty or a lowercase DNS name like "s3.home.lan" (no port), got "{value}"'
        )


def _access_key(value: str) -> None:
    if not _PRINTABLE.fullmatch(value) or "/" in value:
        raise ValueError(f'must be printable ASCII without spaces or "/", got "{value}"')


def _secret_key(value: str) -> None:
    if not _PRINTABLE.fullmatch(value):
        raise ValueError("must be printable ASCII without spaces")


def _endpoint(value: str) -> None:
    if not value:
        return
    try:
        url = urlsplit(value)
        valid = url.scheme in ("http", "https") and bool(url.hostname) and url.port != -1
    except ValueError:
        valid = False
    if not valid or url.query or url.fragment:
        raise ValueError(f'must be empty or a URL like "https://s3.example.com", got "{value}"')


def _bucket(value: str) -> None:
    if value and not _BUCKET.fullmatch(value):
        raise ValueError(f'must be an S3 bucket name (3-63 of a-z 0-9 . -), got "{value}"')


def _prefix(value: str) -> None:
    if value.startswith("/"):
        raise ValueError(f'must not start with "/", got "{value}"')


# --- the schema ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """``[server]``: the S3 endpoint."""

    listen: str = field(
        metadata=_key(
            "0.0.0.0:9000",
            STRING,
            "Address the S3 endpoint listens on, HOST:PORT; an IPv6 host goes in brackets"
            ' ("[::1]:9000"). Port 0 picks a free port.',
            _listen,
        )
    )
    region: str = field(
        metadata=_key(
            "us-east-1",
            STRING,
            "Region the server reports and expects in request signatures"
            " (lowercase letters, digits and dashes).",
            _region,
        )
    )
    domain: str = field(
        metadata=_key(
            "",
            STRING,
            'Base domain for virtual-host-style addressing: with "s3.home.lan", a request to'
            ' photos.s3.home.lan addresses the bucket "photos". Empty: path-style addressing only'
            " (http://host:port/bucket/key).",
            _domain,
        )
    )
    access_key: str = field(
        metadata=_key(
            "",
            STRING,
            "Access key of the S3 user. Empty: taken from the environment variables"
            " STRATUM_ACCESS_KEY and STRATUM_SECRET_KEY, else generated. Set both keys or neither.",
            _access_key,
        )
    )
    secret_key: str = field(
        repr=False,
        metadata=_key(
            "",
            STRING,
            "Secret key that goes with access_key. If you set it here, make this file readable by"
            " the service user only.",
            _secret_key,
            secret=True,
        ),
    )
    log_format: str = field(
        metadata=_key(
            "text",
            STRING,
            '"text" (human-readable lines) or "json" (one JSON object per line).',
            _one_of("text", "json"),
        )
    )
    access_log: bool = field(
        metadata=_key(
            True,
            BOOL,
            "Log one line per S3 request (written in batches, at most 50 ms late; warnings and"
            " errors at once).",
        )
    )
    workers: int = field(
        metadata=_key(
            0,
            INT,
            "Server processes sharing the port and the data (each uses one core for its "
            "Python code); 0 = one per CPU core, up to 4.",
            _between(0, 1024),
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
        metadata=_key(
            "./stratum-data",
            PATH,
            "Directory of the metadata, and of the hot tier's disk when [tiers.hot] lists none"
            " (<data_dir>/disks/hot).",
        )
    )
    data_shards: int = field(
        metadata=_key(
            4,
            INT,
            "Data shards per erasure-coded stripe (1-255), for tiers that do not set their own.",
            _between(1, MAX_SHARDS - 1),
        )
    )
    parity_shards: int = field(
        metadata=_key(
            2,
            INT,
            "Parity shards per stripe: how many shards (disks) may be lost without losing data."
            " Less than data_shards, or 0-2 with data_shards = 1 (plain copies);"
            f" data_shards + parity_shards <= {MAX_SHARDS}.",
            _between(0, MAX_SHARDS - 1),
        )
    )
    block_size: int = field(
        metadata=_key(
            "256KiB",
            SIZE,
            "Large objects are erasure coded in blocks of this size, each cut into"
            " data_shards + parity_shards shards. A positive multiple of 4KiB.",
            _block_size,
        )
    )
    small_object_threshold: int = field(
        metadata=_key(
            "128KiB",
            SIZE,
            "Objects of this size or smaller are packed into replicated segment files instead of"
            " being erasure coded. At most segment_size.",
        )
    )
    segment_size: int = field(
        metadata=_key(
            "64MiB",
            SIZE,
            "Size at which a segment file of packed small objects is closed and a new one started.",
            _positive,
        )
    )
    max_object_size: int = field(
        metadata=_key(
            "5GiB",
            SIZE,
            "Largest object a single PUT accepts; larger objects need a multipart upload.",
            _positive,
        )
    )
    multipart_expiry: float = field(
        metadata=_key(
            "7d",
            DURATION,
            "Multipart uploads neither completed nor aborted within this time are aborted and"
            " their parts deleted.",
            _positive,
        )
    )
    metadata_backup_interval: float = field(
        metadata=_key(
            "1h",
            DURATION,
            "Consistent copies of the metadata store are written this often (and shortly after"
            " start) to every disk of every tier, under meta-backup/. `stratum recover-metadata`"
            " takes users and buckets from the newest one if the store is lost.",
            _positive,
        )
    )
    snapshot_interval: float = field(
        metadata=_key(
            0,
            DURATION,
            "When data_dir is on a ZFS dataset, a ZFS snapshot of the metadata (and with"
            ' snapshot_data of the tiers\' ZFS datasets) is taken this often, e.g. "1d".'
            " 0: only on demand (`stratum snapshot`).",
        )
    )
    snapshot_data: bool = field(
        metadata=_key(
            False,
            BOOL,
            'Scheduled snapshots also take the datasets of the tiers with backend = "zfs"'
            " (all in the same instant when they share the metadata's pool).",
        )
    )
    snapshot_keep: int = field(
        metadata=_key(
            7,
            INT,
            "How many of Stratum's snapshots (named stratum-<time>) of each dataset are kept;"
            " older ones are destroyed after each new snapshot.",
            _between(1, 100_000),
        )
    )


@dataclass(frozen=True, kw_only=True)
class TierConfig:
    """``[tiers.hot]`` or ``[tiers.warm]``: an erasure-coded tier on local disks."""

    disks: tuple[Path, ...] = field(
        metadata=_key([], PATHS, "Directories of this tier, one per disk.")
    )
    data_shards: int = field(
        metadata=_key(
            None,
            INT,
            "Data shards per stripe in this tier.",
            _between(1, MAX_SHARDS - 1),
            inherits="storage.data_shards",
        )
    )
    parity_shards: int = field(
        metadata=_key(
            None,
            INT,
            "Parity shards per stripe in this tier.",
            _between(0, MAX_SHARDS - 1),
            inherits="storage.parity_shards",
        )
    )
    backend: str = field(
        metadata=_key(
            "directory",
            STRING,
            '"directory": each disk is a plain directory. "zfs": each disk is the ZFS dataset'
            " <zfs_parent>/<name of the disk directory>, mounted at the disk path; Stratum"
            " creates missing datasets and treats a FAULTED or missing zpool as a failed disk."
            " Needs libzfs_core (Debian: python3-pyzfs).",
            _one_of("directory", "zfs"),
        )
    )
    zfs_parent: str = field(
        metadata=_key(
            "",
            STRING,
            'Parent dataset of this tier\'s disks with backend = "zfs", e.g. "tank/stratum/hot";'
            " created (canmount=off) if missing, in a zpool that must exist.",
            _dataset,
        )
    )
    zfs_compression: str = field(
        metadata=_key(
            "lz4",
            STRING,
            "compression of the datasets Stratum creates (atime is always off): lz4, zstd,"
            " gzip, gzip-1 to gzip-9, zle, lzjb, on or off.",
            _one_of(*ZFS_COMPRESSION),
        )
    )
    zfs_recordsize: int = field(
        metadata=_key(
            "",
            OPTIONAL_SIZE,
            "recordsize of the datasets Stratum creates, a power of two from 4KiB to 1MiB."
            " Empty: storage.block_size rounded down to a power of two (256KiB by default),"
            " since shard files are written a block at a time.",
            _recordsize,
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
        metadata=_key(
            "",
            STRING,
            "URL of an S3-compatible store that receives idle objects, encrypted, e.g."
            ' "https://s3.eu-central-003.backblazeb2.com". Empty: no cold tier.',
            _endpoint,
        )
    )
    region: str = field(metadata=_key("us-east-1", STRING, "Region of the cold bucket.", _region))
    bucket: str = field(
        metadata=_key(
            "",
            STRING,
            "Bucket that receives cold objects; required when endpoint is set.",
            _bucket,
        )
    )
    prefix: str = field(
        metadata=_key(
            "stratum/", STRING, "Key prefix of everything Stratum writes to the bucket.", _prefix
        )
    )
    credentials_file: Path | None = field(
        metadata=_key(
            "",
            OPTIONAL_PATH,
            "File with the cold store's keys, as TOML (or plain lines without quotes):"
            ' access_key = "..." and secret_key = "...". The environment variables'
            " STRATUM_COLD_ACCESS_KEY and STRATUM_COLD_SECRET_KEY take precedence. Empty and no"
            " environment: the default AWS credential chain (~/.aws/credentials, instance role).",
        )
    )
    encryption_key_file: Path = field(
        metadata=_key(
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
        metadata=_table(
            "The hot tier: new objects are written here (fast disks).", disks=_HOT_DISKS
        )
    )
    warm: TierConfig = field(
        metadata=_table(
            "The warm tier: objects idle in hot move here (large, slow disks).", disks=_WARM_DISKS
        )
    )
    cold: ColdTierConfig = field(
        metadata=_table(
            "The cold tier: an S3-compatible bucket elsewhere (Backblaze B2, AWS S3, a remote"
            " MinIO) that receives objects idle in warm."
        )
    )


@dataclass(frozen=True, kw_only=True)
class TieringConfig:
    """``[tiering]``: automatic movement of objects between tiers."""

    enabled: bool = field(metadata=_key(True, BOOL, "Move objects between tiers automatically."))
    interval: float = field(
        metadata=_key(
            "1m", DURATION, "How often the tiering engine looks for objects to move.", _positive
        )
    )
    hot_idle_before_warm: float = field(
        metadata=_key("7d", DURATION, "An object not read for this long moves from hot to warm.")
    )
    warm_idle_before_cold: float = field(
        metadata=_key("30d", DURATION, "An object not read for this long moves from warm to cold.")
    )
    cold_min_size: int = field(
        metadata=_key(
            "128KiB",
            SIZE,
            "Smaller objects never go to cold (per-request cost and latency would dominate).",
        )
    )
    promote_reads: int = field(
        metadata=_key(
            3,
            INT,
            "An object read this many times within promote_window moves back to hot; 0 = never.",
            _between(0, 1_000_000),
        )
    )
    promote_window: float = field(
        metadata=_key(
            "1d", DURATION, "Window in which promote_reads reads promote an object.", _positive
        )
    )
    hot_high_watermark: float = field(
        metadata=_key(
            0.85,
            FLOAT,
            "When the hot tier is fuller than this fraction of its capacity, the least recently"
            " used objects move down, idle or not, until it is below hot_low_watermark.",
            _fraction,
        )
    )
    hot_low_watermark: float = field(
        metadata=_key(
            0.70,
            FLOAT,
            "Fill level that hot_high_watermark moves bring hot back down to.",
            _fraction,
        )
    )
    warm_high_watermark: float = field(
        metadata=_key(
            0.90,
            FLOAT,
            "When the warm tier is fuller than this fraction, the least recently used objects move"
            " to cold until it is below warm_low_watermark.",
            _fraction,
        )
    )
    warm_low_watermark: float = field(
        metadata=_key(
            0.80,
            FLOAT,
            "Fill level that warm_high_watermark moves bring warm back down to.",
            _fraction,
        )
    )
    move_rate: int = field(
        metadata=_key(
            "50MiB",
            SIZE,
            "Bytes per second that tier moves may transfer, so clients keep their bandwidth.",
            _positive,
        )
    )
    decision_log_keep: float = field(
        metadata=_key(
            "90d",
            DURATION,
            "How long the log of tiering decisions (what moved, when and why) is kept.",
            _positive,
        )
    )


@dataclass(frozen=True, kw_only=True)
class ScrubConfig:
    """``[scrub]``: background verification of stored data."""

    interval: float = field(
        metadata=_key(
            "30d",
            DURATION,
            "Every stored shard is read and its checksum verified once per this period; damaged"
            " shards are rebuilt from parity.",
            _positive,
        )
    )
    rate: int = field(
        metadata=_key("20MiB", SIZE, "Bytes per second the scrubber may read.", _positive)
    )


@dataclass(frozen=True, kw_only=True)
class Config:
    """The whole configuration; build it with :func:`load_config`."""

    server: ServerConfig = field(metadata=_table("The S3 endpoint."))
    storage: StorageConfig = field(
        metadata=_table("Where data and metadata live, and how objects are stored.")
    )
    tiers: TiersConfig = field(metadata=_table("Storage tiers."))
    tiering: TieringConfig = field(metadata=_table("Automatic movement of objects between tiers."))
    scrub: ScrubConfig = field(metadata=_table("Background verification of stored data."))
    source: Path | None = None  # the file this was loaded from (absolute); None: no file


# --- walking the schema -------------------------------------------------------------------


def _schema_fields(cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if _SETTING in f.metadata or _TABLE in f.metadata]


@functools.cache
def _subtable_type(cls: type, name: str) -> type:
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
        for f in _schema_fields(cls):
            if _TABLE in f.metadata:
                help, sub_key_help = f.metadata[_TABLE]
                tables[prefix + f.name] = help
                walk(_subtable_type(cls, f.name), f"{prefix}{f.name}.", sub_key_help)
            else:
                setting = f.metadata[_SETTING]
                help = key_help.get(f.name, setting.help)
                keys[prefix + f.name] = dataclasses.replace(setting, help=help)

    walk(Config, "", {})
    return MappingProxyType(keys), MappingProxyType(tables)


def _suggest(name: str, candidates: list[str]) -> str:
    import difflib  # only for a configuration with a mistake: not in every server process

    close = difflib.get_close_matches(name, candidates, n=1)
    return f", did you mean {close[0]}?" if close else ""


# --- loading ------------------------------------------------------------------------------


def load_config(path: Path | None = None, *, overrides: Mapping[str, Any] | None = None) -> Config:
    """Read ``path`` (None: no file, all defaults), apply ``overrides`` and validate.

    ``overrides`` maps dotted keys to values of the TOML type (a Path is fine for paths), e.g.
    ``{"storage.data_dir": Path("/srv/s3"), "server.listen": "[::]:9000"}``; None values are
    ignored, so unset command-line options can be passed as they are. Relative override paths
    are relative to the current directory. Raises :class:`ConfigError`.
    """
    document: dict[str, Any] = {}
    source = None
    if path is not None:
        path = Path(path)
        source = Path(os.path.abspath(path))
        try:
            document = tomllib.loads(path.read_bytes().decode("utf-8-sig"))
        except OSError as exc:
            raise ConfigError(path, "", f"cannot read the file: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(path, "", f"not UTF-8 text (byte {exc.start})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(path, "", f"not valid TOML: {exc}") from None
    loader = _Loader(path, source.parent if source else Path.cwd(), overrides or {})
    return loader.load(document, source)


class _Loader:
    def __init__(self, path: Path | None, base: Path, overrides: Mapping[str, Any]) -> None:
        self.path = path
        self.base = base  # relative paths in the file (and defaults) start here
        self.overrides = {key: value for key, value in overrides.items() if value is not None}
        self.values: dict[str, Any] = {}
        self.explicit: set[str] = set(self.overrides)  # keys set by the file or the command line
        self.inherited: set[str] = set()

    def error(self, key: str, why: str) -> ConfigError:
        if key in self.overrides:
            return ConfigError(None, key, f"{why} (set on the command line)")
        return ConfigError(self.path, key, why)

    def load(self, document: Mapping[str, Any], source: Path | None) -> Config:
        known = list(settings())
        for key in self.overrides:
            if key not in known:
                raise ConfigError(None, key, f"unknown setting{_suggest(key, known)}")
        self.walk(Config, document, "")
        self.resolve()
        self.check()
        config: Config = self.build(Config, "")
        return dataclasses.replace(config, source=source)

    def walk(self, cls: type, table: Mapping[str, Any], prefix: str) -> None:
        fields = {f.name: f for f in _schema_fields(cls)}
        for name, value in table.items():
            if name not in fields:
                what = "table" if isinstance(value, dict) else "key"
                hint = _suggest(name, list(fields))
                if not hint:  # in the wrong table?
                    homes = [key for key in settings() if key.rsplit(".", 1)[-1] == name]
                    hint = f", did you mean {homes[0]}?" if homes else ""
                raise self.error(prefix + name, f"unknown {what}{hint}")
        for name, f in fields.items():
            if _TABLE in f.metadata:
                sub = table.get(name, {})
                if not isinstance(sub, dict):
                    raise self.error(prefix + name, str(_want(f"a table [{prefix}{name}]", sub)))
                self.walk(_subtable_type(cls, name), sub, f"{prefix}{name}.")
            else:
                self.values[prefix + name] = self.convert(prefix + name, table)

    def convert(self, key: str, table: Mapping[str, Any]) -> Any:
        setting = settings()[key]
        name = key.rsplit(".", 1)[-1]
        if key in self.overrides:
            raw, base = self.overrides[key], Path.cwd()
        elif name in table:
            raw, base = table[name], self.base
            self.explicit.add(key)
        elif setting.default is None:
            return None  # resolved from setting.inherits
        else:
            raw, base = setting.default, self.base
        try:
            value = setting.kind.convert(raw, base)
            if setting.check is not None and value is not None:
                setting.check(value)
        except (ValueError, TypeError) as exc:
            why = str(exc)
            if setting.secret:
                why = "must be a string of printable ASCII without spaces (value not shown)"
            raise self.error(key, why) from None
        return value

    def resolve(self) -> None:
        values = self.values
        for key, setting in settings().items():
            if setting.inherits is not None and values[key] is None:
                values[key] = values[setting.inherits]
                self.inherited.add(key)
        data_dir: Path = values["storage.data_dir"]
        if not values["tiers.hot.disks"]:
            values["tiers.hot.disks"] = (data_dir / "disks" / "hot",)
        if values["tiers.cold.encryption_key_file"] is None:
            values["tiers.cold.encryption_key_file"] = data_dir / "cold.key"

    def check(self) -> None:
        """The rules between keys; the rules on single keys ran in convert."""
        values = self.values
        for prefix in ("storage.", "tiers.hot.", "tiers.warm."):
            self.check_shards(prefix)
        self.check_disks()
        for tier in ("hot", "warm"):
            self.check_zfs(f"tiers.{tier}.")
        for tier in ("hot", "warm"):
            self.check_order(f"tiering.{tier}_low_watermark", f"tiering.{tier}_high_watermark")
        self.check_order("storage.small_object_threshold", "storage.segment_size", strict=False)
        if bool(values["server.access_key"]) != bool(values["server.secret_key"]):
            unset, other = ("secret_key", "access_key")
            if values["server.secret_key"]:
                unset, other = other, unset
            raise self.error(f"server.{unset}", f"must be set too when server.{other} is set")
        if values["tiers.cold.endpoint"] and not values["tiers.cold.bucket"]:
            raise self.error("tiers.cold.bucket", "is required when tiers.cold.endpoint is set")

    def check_shards(self, prefix: str) -> None:
        data, parity = self.values[f"{prefix}data_shards"], self.values[f"{prefix}parity_shards"]
        key = f"{prefix}parity_shards"
        if data == 1:
            rule = "at most 2 when data_shards is 1 (plain copies)" if parity > 2 else ""
        else:
            rule = f"less than data_shards ({data})" if parity >= data else ""
        if not rule and data + parity > MAX_SHARDS:
            rule = f"at most {MAX_SHARDS} - data_shards ({MAX_SHARDS - data})"
        if rule:
            how = " (inherited from storage.parity_shards)" if key in self.inherited else ""
            raise self.error(key, f"must be {rule}, got {parity}{how}")

    def check_disks(self) -> None:
        seen: dict[Path, str] = {}
        for key in ("tiers.hot.disks", "tiers.warm.disks"):
            for disk in self.values[key]:
                try:
                    real = disk.resolve()
                except (OSError, RuntimeError):  # a symlink loop: the path will fail later
                    real = disk
                if real in seen:
                    other = seen[real]
                    where = "" if other == key else f" (also in {other})"
                    if other == "tiers.hot.disks" and other not in self.explicit:
                        where = " (it is the hot tier's default disk)"
                    raise self.error(key, f"{disk} is listed twice{where}")
                seen[real] = key

    def check_zfs(self, prefix: str) -> None:
        """A ZFS tier names its parent dataset, and its disks name distinct datasets."""
        if self.values[f"{prefix}backend"] != "zfs":
            return
        if not self.values[f"{prefix}zfs_parent"]:
            raise self.error(f"{prefix}zfs_parent", 'must be set when backend = "zfs"')
        names: dict[str, Path] = {}
        for disk in self.values[f"{prefix}disks"]:
            if not _DATASET_COMPONENT.fullmatch(disk.name):
                raise self.error(
                    f"{prefix}disks",
                    f"{disk}: with backend = \"zfs\" a disk's directory name is its dataset's"
                    " name (letters, digits, _ . : -)",
                )
            if disk.name in names:
                raise self.error(
                    f"{prefix}disks",
                    f"{disk} and {names[disk.name]} would be the same dataset"
                    f" {self.values[f'{prefix}zfs_parent']}/{disk.name}: name them differently",
                )
            names[disk.name] = disk

    def check_order(self, low: str, high: str, *, strict: bool = True) -> None:
        """``low`` < ``high`` (<= if not strict), blaming the one that was set explicitly."""
        a, b = self.values[low], self.values[high]
        if a < b or (not strict and a == b):
            return
        show = format_size if isinstance(a, int) else str
        if high in self.explicit and low not in self.explicit:
            word = "above" if strict else "at least"
            raise self.error(high, f"must be {word} {low} ({show(a)}), got {show(b)}")
        word = "below" if strict else "at most"
        raise self.error(low, f"must be {word} {high} ({show(b)}), got {show(a)}")

    def build(self, cls: type, prefix: str) -> Any:
        kwargs: dict[str, Any] = {}
        for f in _schema_fields(cls):
            if _TABLE in f.metadata:
                kwargs[f.name] = self.build(_subtable_type(cls, f.name), f"{prefix}{f.name}.")
            else:
                kwargs[f.name] = self.values[prefix + f.name]
        return cls(**kwargs)


# --- credentials --------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """An access key and its secret; the secret stays out of the repr."""

    access_key: str
    secret_key: str = field(repr=False)


def server_credentials(
    config: Config, environ: Mapping[str, str] | None = None
) -> Credentials | None:
    """The S3 user's keys: from [server], else from STRATUM_ACCESS_KEY and STRATUM_SECRET_KEY.

    None: neither is set; the caller generates a pair (and keeps it).
    """
    if config.server.access_key:
        return Credentials(config.server.access_key, config.server.secret_key)
    env = os.environ if environ is None else environ
    pair = env.get("STRATUM_ACCESS_KEY", ""), env.get("STRATUM_SECRET_KEY", "")
    return _pair(pair, "STRATUM_ACCESS_KEY and STRATUM_SECRET_KEY", "server.access_key")


def cold_credentials(
    config: Config, environ: Mapping[str, str] | None = None
) -> Credentials | None:
    """The cold store's keys: each from its environment variable (STRATUM_COLD_ACCESS_KEY,
    STRATUM_COLD_SECRET_KEY), else from [tiers.cold] credentials_file.

    None: neither is set; use the default AWS credential chain. Blocking (reads a file).
    """
    env = os.environ if environ is None else environ
    from_file: dict[str, str] = {}
    path = config.tiers.cold.credentials_file
    if path is not None:
        from_file = _read_credentials_file(config, path)
    pair = (
        env.get("STRATUM_COLD_ACCESS_KEY") or from_file.get("access_key", ""),
        env.get("STRATUM_COLD_SECRET_KEY") or from_file.get("secret_key", ""),
    )
    return _pair(pair, "the cold access key and secret key", "tiers.cold.credentials_file")


def _pair(pair: tuple[str, str], what: str, key: str) -> Credentials | None:
    access, secret = pair
    if not access and not secret:
        return None
    if not access or not secret:
        raise ConfigError(None, key, f"{what} must be set together")
    try:
        _access_key(access)
        _secret_key(secret)
    except ValueError:
        raise ConfigError(None, key, f"{what} must be printable ASCII without spaces") from None
    return Credentials(access, secret)


def _read_credentials_file(config: Config, path: Path) -> dict[str, str]:
    """``access_key`` and ``secret_key`` from a TOML file, or from ``name = value`` lines."""
    key = "tiers.cold.credentials_file"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise ConfigError(config.source, key, f"cannot read {path}: {why}") from None

    def fail(why: str) -> ConfigError:
        return ConfigError(config.source, key, f"{path}: {why}")

    try:
        document: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        document = {}
        for number, line in enumerate(text.splitlines(), 1):
            name, sep, value = line.partition("=")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if not sep:
                raise fail(f"line {number} is not: name = value") from None
            document[name.strip()] = value.strip().strip("'\"")
    found: dict[str, str] = {}
    for name, value in document.items():
        if name not in ("access_key", "secret_key") or not isinstance(value, str):
            raise fail("may only hold access_key and secret_key (strings)")
        found[name] = value
    if not found:
        raise fail("holds neither access_key nor secret_key")
    return found
