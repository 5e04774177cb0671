"""A log record is one line at the margin, whatever its message and its exception quote."""

from __future__ import annotations

import json
import logging
import sys

from hypothesis import given
from hypothesis import strategies as st

from stratum.cli.logformat import JsonFormatter, TextFormatter, escape_controls

FORGED = "2031-01-01 00:00:00,000 INFO stratum.access: forged"


def record(message: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("stratum.test", logging.ERROR, __file__, 1, message, args, info)


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


@given(st.text())
def test_any_message_stays_on_one_line(value: str) -> None:
    line = TextFormatter().format(record("GET %s done", value))
    assert len(line.splitlines()) == 1
    assert all(ch == "\t" or ch >= " " for ch in line if ord(ch) < 0xA0 and ch != "\x7f")


def test_escapes_are_readable() -> None:
    assert escape_controls("a\nb\r\tc\x00\x1b[1m\x7f\x85\u2028") == (
        "a\\nb\\r\\tc\\x00\\x1b[1m\\x7f\\x85\\u2028"
    )
    assert escape_controls("plain é ✓") == "plain é ✓"


def test_a_traceback_keeps_its_lines_but_only_the_record_starts_at_the_margin() -> None:
    try:
        raise ValueError(f"bad key x\n{FORGED}")
    except ValueError:
        info = sys.exc_info()
    rec = logging.LogRecord("stratum.test", logging.ERROR, __file__, 1, "failed", (), info)
    lines = TextFormatter().format(rec).split("\n")
    assert lines[0].endswith("ERROR stratum.test: failed")
    assert len(lines) > 3  # the traceback is still readable, line by line
    assert all(line.startswith("  ") for line in lines[1:]), lines
    assert f"  ValueError: bad key x\n  {FORGED}" in "\n".join(lines)


def test_json_keeps_everything_inside_its_strings() -> None:
    exc = raised(KeyError(f"k\n{FORGED}"))
    line = JsonFormatter().format(record("GET %s", f"/x\n{FORGED}", exc=exc))
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["msg"] == f"GET /x\n{FORGED}"
    assert "KeyError" in parsed["exc"]
