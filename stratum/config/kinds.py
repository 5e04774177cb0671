"""Kinds of setting: how a TOML value becomes a Python value.

A kind's ``convert`` takes the TOML value (or a default as written in TOML, or a command-line
override) and the directory that relative paths start from, and returns the value the
:class:`~stratum.config.Config` holds: durations as float seconds, sizes as int bytes, paths
absolute. It raises ValueError with the end of a message, e.g. ``must be an integer, got
string "4"``; the loader adds the file and the key.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stratum.util.units import parse_duration, parse_size


@dataclass(frozen=True)
class Kind:
    """How a TOML value becomes a Python value."""

    name: str  # as shown to users: "integer", "size", "duration", ...
    convert: Callable[[object, Path], object]  # (TOML value, base dir) -> value; ValueError


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


def want(expected: str, value: object) -> ValueError:
    return ValueError(f"must be {expected}, got {_describe(value)}")


def _str(value: object, base: Path) -> str:
    if not isinstance(value, str):
        raise want("a string", value)
    return value


def _bool(value: object, base: Path) -> bool:
    if not isinstance(value, bool):
        raise want("true or false", value)
    return value


def _int(value: object, base: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise want("an integer", value)
    return value


def _float(value: object, base: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise want("a number", value)
    return float(value)


def _duration(value: object, base: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise want('a duration like "30d" or a number of seconds', value)
    return parse_duration(value)


def _size(value: object, base: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise want('a size like "128KiB" or a whole number of bytes', value)
    return parse_size(value)


def _path(value: object, base: Path) -> Path:
    if not isinstance(value, str | os.PathLike):
        raise want("a path (string)", value)
    text = os.fspath(value)
    if not isinstance(text, str) or not text:
        raise ValueError("must be a non-empty path")
    return Path(os.path.abspath(base / Path(text).expanduser()))


def _optional_path(value: object, base: Path) -> Path | None:
    return None if value == "" else _path(value, base)


def _optional_size(value: object, base: Path) -> int:
    return 0 if value == "" else _size(value, base)


def _string_list(value: object, base: Path) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        raise want('an array of strings, e.g. ["photos", "backup"]', value)
    return tuple(value)


def _path_list(value: object, base: Path) -> tuple[Path, ...]:
    if not isinstance(value, list | tuple):
        raise want('an array of paths, e.g. ["/mnt/disk1", "/mnt/disk2"]', value)
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
STRINGS = Kind("array of strings", _string_list)
PATH, OPTIONAL_PATH, PATHS = (
    Kind("path", _path),
    Kind("path", _optional_path),
    Kind("array of paths", _path_list),
)
