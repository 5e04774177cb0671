"""Stratum's configuration: one TOML file -> one frozen, typed :class:`Config`.

Every key has a default, so no file is needed at all. Values are taken, per key, from the
command-line ``overrides`` if given there, else from the file, else from the default. Each
setting carries its default (as written in TOML), its kind (how a TOML value is converted), an
optional check and its help text beside its field in the schema; the loader walks the schema
generically, and the commented default file and the Markdown reference are rendered from the
same metadata, so they cannot drift.

In the object, durations are float seconds, sizes int bytes and paths absolute. Relative paths
are relative to the config file's directory, or to the current directory when there is no
file or the path is a command-line override. Inherited values are resolved: a tier's
``data_shards`` is always an int, the hot tier always has disks.

Every problem raises :class:`ConfigError`, whose message is one line naming the file, the
dotted key and what is wrong. Secrets never appear in a repr or an error message.

The modules, each importing only those before it:

- :mod:`~stratum.config.errors`: :class:`ConfigError`.
- :mod:`~stratum.config.kinds`: how a TOML value becomes a Python value (integer, size, ...).
- :mod:`~stratum.config.checks`: the rules on single converted values.
- :mod:`~stratum.config.setting`: how a schema field describes a key or a table.
- :mod:`~stratum.config.schema_prices`, :mod:`~stratum.config.schema_lifecycle`,
  :mod:`~stratum.config.schema_replication`: the tables ``[prices]``, ``[lifecycle]`` and
  ``[replication.<name>]``.
- :mod:`~stratum.config.schema`: the dataclasses, one per TOML table, with every key's default
  and help text beside it (those three imported), and the whole :class:`Config`.
- :mod:`~stratum.config.load`: :func:`load_config`, unknown keys and the rules between keys.
- :mod:`~stratum.config.credentials`: the S3 user's and the cold store's keys.
- :mod:`~stratum.config.render`: the commented default file and the Markdown reference (not
  imported here: only ``stratum config`` and ``stratum install`` need it).
"""

from __future__ import annotations

from stratum.config.checks import ZFS_COMPRESSION, split_listen
from stratum.config.credentials import (
    Credentials,
    cold_credentials,
    replication_credentials,
    server_credentials,
)
from stratum.config.errors import ConfigError
from stratum.config.kinds import Kind
from stratum.config.load import load_config
from stratum.config.schema import (
    MAX_SHARDS,
    ColdTierConfig,
    Config,
    ConsoleConfig,
    ScrubConfig,
    ServerConfig,
    StorageConfig,
    TierConfig,
    TiersConfig,
    settings,
    table_help,
)
from stratum.config.schema_lifecycle import LifecycleConfig
from stratum.config.schema_prices import PricesConfig
from stratum.config.schema_replication import ReplicationTarget
from stratum.config.schema_tiering import TieringConfig
from stratum.config.setting import Setting

__all__ = [
    "MAX_SHARDS",
    "ZFS_COMPRESSION",
    "ColdTierConfig",
    "Config",
    "ConfigError",
    "ConsoleConfig",
    "Credentials",
    "Kind",
    "LifecycleConfig",
    "PricesConfig",
    "ReplicationTarget",
    "ScrubConfig",
    "ServerConfig",
    "Setting",
    "StorageConfig",
    "TierConfig",
    "TieringConfig",
    "TiersConfig",
    "cold_credentials",
    "load_config",
    "replication_credentials",
    "server_credentials",
    "settings",
    "split_listen",
    "table_help",
]
