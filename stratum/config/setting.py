"""How the schema describes a key or a table: the metadata of a dataclass field.

A key is a field whose ``metadata`` holds a :class:`Setting` (:func:`key`); a sub-table, a
field whose type is another schema dataclass (:func:`table`); a table of tables the user
names, such as ``[replication.offsite]``, a tuple of them (:func:`named`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stratum.config.kinds import Kind

SETTING = "stratum.setting"
TABLE = "stratum.table"
NAMED = "stratum.named"  # tables the user names: [replication.<name>]
NAME = "<name>"  # stands for the user's name of a named table in dotted keys


@dataclass(frozen=True)
class Setting:
    """One key of the schema (see :func:`stratum.config.schema.settings`)."""

    default: object  # as written in TOML; None: absent, meaning the value of ``inherits``
    kind: Kind
    help: str
    check: Callable[[Any], None] | None = None  # on the converted value; raises ValueError
    inherits: str | None = None  # dotted key
    secret: bool = False  # never shown in a repr or an error message


def key(
    default: object,
    kind: Kind,
    help: str,
    check: Callable[[Any], None] | None = None,
    *,
    inherits: str | None = None,
    secret: bool = False,
) -> dict[str, object]:
    """The metadata of a setting; ``default`` is as written in TOML."""
    return {SETTING: Setting(default, kind, help, check, inherits, secret)}


def table(help: str, **key_help: str) -> dict[str, object]:
    """The metadata of a sub-table; ``key_help`` replaces the help of some of its keys."""
    return {TABLE: (help, key_help)}


def named(help: str, cls: type) -> dict[str, object]:
    """The metadata of a table of tables the user names (``[replication.offsite]``), each
    of the dataclass ``cls``; none by default."""
    return {NAMED: (help, cls)}
