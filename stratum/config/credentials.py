"""Credentials: the S3 user's keys and the cold store's, from the configuration, the
environment or a credentials file. Secrets stay out of every repr and error message."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stratum.config import checks
from stratum.config.errors import ConfigError
from stratum.config.schema import Config


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
        from_file = _read_credentials_file(config, path, "tiers.cold.credentials_file")
    pair = (
        env.get("STRATUM_COLD_ACCESS_KEY") or from_file.get("access_key", ""),
        env.get("STRATUM_COLD_SECRET_KEY") or from_file.get("secret_key", ""),
    )
    return _pair(pair, "the cold access key and secret key", "tiers.cold.credentials_file")


def replication_credentials(config: Config, name: str) -> Credentials | None:
    """The keys of replication target ``name``, from its credentials_file; None: none set
    (the default AWS credential chain). Blocking (reads a file)."""
    path = config.target(name).credentials_file
    if path is None:
        return None
    key = f"replication.{name}.credentials_file"
    found = _read_credentials_file(config, path, key)
    return _pair((found.get("access_key", ""), found.get("secret_key", "")), "the keys", key)


def _pair(pair: tuple[str, str], what: str, key: str) -> Credentials | None:
    access, secret = pair
    if not access and not secret:
        return None
    if not access or not secret:
        raise ConfigError(None, key, f"{what} must be set together")
    try:
        checks.access_key(access)
        checks.secret_key(secret)
    except ValueError:
        raise ConfigError(None, key, f"{what} must be printable ASCII without spaces") from None
    return Credentials(access, secret)


def _read_credentials_file(config: Config, path: Path, key: str) -> dict[str, str]:
    """``access_key`` and ``secret_key`` from a TOML file, or from ``name = value`` lines."""
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
