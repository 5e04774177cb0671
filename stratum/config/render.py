"""The configuration schema as text: key docs, the commented default file, the Markdown reference.

Everything here is derived from the schema in :mod:`stratum.config.schema` (defaults and help
text live beside the fields), so the renderings cannot drift from what the loader accepts. The
default file loads back as exactly the default :class:`~stratum.config.Config` (tested).
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass

from stratum.config.schema import settings, table_help
from stratum.config.setting import NAME

_WIDTH = 98

_FILE_HEADER = """\
Stratum configuration file.

Every key is shown with its default value: this file configures exactly what running without a
file does. Keys that are commented out are absent by default. Unknown keys are an error.

Sizes are a whole number of bytes or a string: "4096", "128KiB", "64MiB", "10GB" (KiB, MiB, GiB,
TiB: powers of 1024; kB, MB, GB, TB: powers of 1000). Durations are a number of seconds or a
string: "500ms", "90s", "1m", "2h", "30d", "1w", "1h30m". Relative paths are relative to the
directory of this file.
"""

_MARKDOWN_HEADER = """\
Every key is optional; the defaults below are what Stratum uses without a configuration file.
Sizes are a whole number of bytes or a string such as `"4096"`, `"128KiB"`, `"64MiB"` or `"10GB"`
(KiB, MiB, GiB, TiB are powers of 1024; kB, MB, GB, TB powers of 1000). Durations are a number
of seconds or a string such as `"500ms"`, `"90s"`, `"1m"`, `"2h"`, `"30d"`, `"1w"` or `"1h30m"`.
Relative paths are relative to the directory of the configuration file.
"""


@dataclass(frozen=True)
class KeyDoc:
    """One documented key."""

    key: str  # dotted, e.g. "storage.data_shards"
    type: str  # as shown to users: "integer", "size", "duration", "path", ...
    default: str  # TOML literal of the default, e.g. '"7d"', '4', '[]'
    help: str
    inherits: str | None = None  # absent by default, taking this key's value (its default shown)

    @property
    def table(self) -> str:
        return self.key.rpartition(".")[0]

    @property
    def name(self) -> str:
        return self.key.rpartition(".")[2]


@dataclass(frozen=True)
class TableDoc:
    name: str  # dotted, e.g. "tiers.hot"
    help: str
    keys: tuple[KeyDoc, ...]


def iter_keys() -> Iterator[KeyDoc]:
    """Every key with its type, default and help, in file order."""
    schema = settings()
    for key, setting in schema.items():
        default, help = setting.default, setting.help
        if setting.inherits is not None:
            default = schema[setting.inherits].default
            help = f"{help} Absent: the value of {setting.inherits}."
        yield KeyDoc(key, setting.kind.name, toml_literal(default), help, setting.inherits)


def iter_tables() -> Iterator[TableDoc]:
    """Every table that holds keys (not ``tiers`` itself), in file order."""
    keys = list(iter_keys())
    for name, help in table_help().items():
        own = tuple(doc for doc in keys if doc.table == name)
        if own:
            yield TableDoc(name, help, own)


def toml_literal(value: object) -> str:
    """``value`` (str, bool, int, float or a list of them) written as a TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON strings are TOML basic strings
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_literal(item) for item in value) + "]"
    raise TypeError(f"no TOML literal for {value!r}")


def render_default_toml() -> str:
    """The fully commented default file: every key, its default and its help text."""
    lines = _comment(_FILE_HEADER)
    for table in iter_tables():
        # A table the user names exists only when written: shown commented out, as an example.
        example = NAME in table.name
        header = f"[{table.name.replace(NAME, 'offsite')}]"
        lines += ["", "", *_comment(table.help), f"# {header}" if example else header]
        for doc in table.keys:
            lines += ["", *_comment(doc.help)]
            assignment = f"{doc.name} = {doc.default}"
            lines.append(f"# {assignment}" if doc.inherits or example else assignment)
    return "\n".join(lines) + "\n"


def render_markdown_reference() -> str:
    """A Markdown table per section: key, type, default, meaning."""
    out = [_MARKDOWN_HEADER]
    for table in iter_tables():
        out += [f"### `[{table.name}]`", "", _escape(table.help), ""]
        out += ["| Key | Type | Default | Meaning |", "|---|---|---|---|"]
        for doc in table.keys:
            default = f"`{doc.default}`"
            if doc.inherits:
                default = f"same as `{doc.inherits}`"
            out.append(f"| `{doc.name}` | {doc.type} | {default} | {_escape(doc.help)} |")
        out.append("")
    return "\n".join(out)


def _comment(text: str) -> list[str]:
    lines: list[str] = []
    for paragraph in text.strip().split("\n\n"):
        if lines:
            lines.append("#")
        wrapped = textwrap.wrap(
            " ".join(paragraph.split()), _WIDTH - 2, break_long_words=False, break_on_hyphens=False
        )
        lines += [f"# {line}" for line in wrapped]
    return lines


def _escape(text: str) -> str:
    """Help text in a Markdown table cell: no pipes, and <data_dir> is not an HTML tag."""
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
