"""Loading: a TOML file and command-line overrides -> a validated :class:`Config`.

Values are taken, per key, from the command-line ``overrides`` if given there, else from the
file, else from the default. Each value is converted by its kind and checked on its own, then
inherited values are resolved and the rules between keys checked. Unknown keys and tables are
rejected, with a suggestion when one is close. Every problem raises :class:`ConfigError` naming
the file (none for an override), the dotted key and what is wrong; a secret's value is never
part of the message.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stratum.config.checks import DATASET_COMPONENT, TARGET_NAME
from stratum.config.errors import ConfigError
from stratum.config.kinds import want
from stratum.config.schema import (
    MAX_SHARDS,
    Config,
    is_table,
    named_type,
    schema_fields,
    settings,
    subtable_type,
)
from stratum.config.setting import NAME
from stratum.util.units import format_size


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
        self.named: dict[str, list[str]] = {}  # "replication" -> the names of its tables
        # "replication.offsite." -> "replication.<name>.": where a named table's keys are
        self.schema_keys: dict[str, str] = {}

    def schema_key(self, key: str) -> str:
        """The schema's dotted key for ``key`` (a named table's name replaced by <name>)."""
        prefix, _, name = key.rpartition(".")
        return self.schema_keys.get(prefix + ".", prefix + ".") + name if prefix else key

    def error(self, key: str, why: str) -> ConfigError:
        if key in self.overrides:
            return ConfigError(None, key, f"{why} (set on the command line)")
        return ConfigError(self.path, key, why)

    def load(self, document: Mapping[str, Any], source: Path | None) -> Config:
        known = [key for key in settings() if NAME not in key]
        for key in self.overrides:
            if key not in known:
                raise ConfigError(None, key, f"unknown setting{_suggest(key, known)}")
        self.walk(Config, document, "")
        self.resolve()
        self.check()
        config: Config = self.build(Config, "")
        return dataclasses.replace(config, source=source)

    def walk(self, cls: type, table: Mapping[str, Any], prefix: str) -> None:
        fields = {f.name: f for f in schema_fields(cls)}
        for name, value in table.items():
            if name not in fields:
                what = "table" if isinstance(value, dict) else "key"
                hint = _suggest(name, list(fields))
                if not hint:  # in the wrong table?
                    homes = [key for key in settings() if key.rsplit(".", 1)[-1] == name]
                    hint = f", did you mean {homes[0]}?" if homes else ""
                raise self.error(prefix + name, f"unknown {what}{hint}")
        for name, f in fields.items():
            each = named_type(f)
            if is_table(f) or each is not None:
                sub = table.get(name, {})
                if not isinstance(sub, dict):
                    raise self.error(prefix + name, str(want(f"a table [{prefix}{name}]", sub)))
                if each is None:
                    self.walk(subtable_type(cls, name), sub, f"{prefix}{name}.")
                else:
                    self.walk_named(each, sub, f"{prefix}{name}")
            else:
                self.values[prefix + name] = self.convert(prefix + name, table)

    def walk_named(self, each: type, tables: Mapping[str, Any], where: str) -> None:
        """``[where.<name>]`` tables, each of the dataclass ``each``, in file order."""
        self.named[where] = []
        for name, sub in tables.items():
            if not isinstance(sub, dict):
                raise self.error(f"{where}.{name}", str(want(f"a table [{where}.{name}]", sub)))
            if not TARGET_NAME.fullmatch(name):
                raise self.error(
                    f"{where}.{name}", "a table's name must be 1-64 of A-Z a-z 0-9 _ -"
                )
            self.named[where].append(name)
            self.schema_keys[f"{where}.{name}."] = f"{where}.{NAME}."
            self.walk(each, sub, f"{where}.{name}.")

    def convert(self, key: str, table: Mapping[str, Any]) -> Any:
        setting = settings()[self.schema_key(key)]
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
        self.check_tls()
        if values["tiers.cold.endpoint"] and not values["tiers.cold.bucket"]:
            raise self.error("tiers.cold.bucket", "is required when tiers.cold.endpoint is set")
        self.check_replication()

    def check_replication(self) -> None:
        """Each target names its endpoint and buckets; sites with targets have an id."""
        names = self.named.get("replication", [])
        for name in names:
            for key in ("endpoint", "buckets"):
                if not self.values[f"replication.{name}.{key}"]:
                    raise self.error(f"replication.{name}.{key}", "is required")
        if names and not self.values["server.site_id"]:
            raise self.error(
                "server.site_id",
                "must be set (1-4294967295, distinct on every site) when replication targets"
                " are configured",
            )

    def check_tls(self) -> None:
        """Both files or neither, and they load as a certificate and its key."""
        cert, key = self.values["server.tls_cert"], self.values["server.tls_key"]
        if cert is None and key is None:
            return
        if cert is None or key is None:
            unset, other = ("tls_cert", "tls_key") if cert is None else ("tls_key", "tls_cert")
            raise self.error(f"server.{unset}", f"must be set too when server.{other} is set")
        import ssl  # only for a server that speaks TLS

        from stratum.util.tls import server_context

        for name, path in (("tls_cert", cert), ("tls_key", key)):
            try:
                path.open("rb").close()
            except OSError as exc:
                raise self.error(f"server.{name}", f"cannot read {path}: {exc.strerror}") from None
        try:
            server_context(cert, key)
        except ssl.SSLError as exc:
            why = (
                "the key does not match the certificate"
                if exc.reason == "KEY_VALUES_MISMATCH"
                else f"not a PEM certificate and its unencrypted PEM key ({exc.reason or exc})"
            )
            raise self.error("server.tls_key", f"{cert} and {key}: {why}") from None

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
            if not DATASET_COMPONENT.fullmatch(disk.name):
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
        for f in schema_fields(cls):
            each = named_type(f)
            if each is not None:
                where = prefix + f.name
                kwargs[f.name] = tuple(
                    dataclasses.replace(self.build(each, f"{where}.{name}."), name=name)
                    for name in self.named[where]
                )
            elif is_table(f):
                kwargs[f.name] = self.build(subtable_type(cls, f.name), f"{prefix}{f.name}.")
            else:
                kwargs[f.name] = self.values[prefix + f.name]
        return cls(**kwargs)


def _suggest(name: str, candidates: list[str]) -> str:
    import difflib  # only for a configuration with a mistake: not in every server process

    close = difflib.get_close_matches(name, candidates, n=1)
    return f", did you mean {close[0]}?" if close else ""
