"""The one exception every configuration problem raises."""

from __future__ import annotations

from pathlib import Path


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
