"""The server's log lines, as text or JSON: one record, one line, whatever it quotes.

Log lines quote what clients send (a request's path, a key, a bucket name), and a key may hold
any character, a line feed included: written as it is, ``GET /x%0A<forged line>`` would add a
line of the client's making to the log. So:

- text: control characters (C0, DEL, C1, and the Unicode line and paragraph separators) in a
  record's message are escaped, ``\\n`` as the two characters ``\\`` ``n``, others as
  ``\\xNN``/``\\uNNNN``. A traceback keeps its line breaks, but every one of its lines is
  indented and the same characters are escaped within lines, so only a record's first line
  starts at the margin;
- JSON: one object per line; JSON's string escaping already keeps every control character
  inside its string (``ensure_ascii``: non-ASCII ones too).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
TRACEBACK_INDENT = "  "
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_BUT_LF = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """``text`` on one line: control characters written as escapes (see the module)."""
    if _CONTROL.search(text) is None:  # the common case: one search, no copy
        return text
    return _CONTROL.sub(_escape_one, text)


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT`` with the message escaped and tracebacks indented."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _indented(super().formatStack(stack_info))


def _indented(text: str) -> str:
    text = _CONTROL_BUT_LF.sub(_escape_one, text)
    return "\n".join(TRACEBACK_INDENT + line for line in text.split("\n"))


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, msg, the request fields, exc."""

    FIELDS = ("method", "endpoint", "status", "bytes_in", "bytes_out", "duration_ms", "request_id")

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in self.FIELDS:
            if hasattr(record, name):
                out[name] = getattr(record, name)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)
