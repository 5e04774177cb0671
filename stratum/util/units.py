"""Human-friendly durations and sizes, as written in the configuration file.

Durations: one or more ``<number><unit>`` parts, largest unit first, each unit at most once:
``"500ms"``, ``"90s"``, ``"1m"``, ``"2h"``, ``"30d"``, ``"1w"``, ``"1h30m"``, ``"1.5h"``.
Units are ``w`` (7 days), ``d``, ``h``, ``m`` (minutes), ``s`` and ``ms``. A bare string
number (``"30"``) is rejected because it is ambiguous; a real number (``30``, ``0.5``) means
seconds. Parsed to float seconds.

Sizes: ``<number>[unit]`` with an optional space: ``"4096"``, ``"128KiB"``, ``"1.5GiB"``,
``"10GB"``. ``KiB MiB GiB TiB PiB EiB`` are powers of 1024, ``kB MB GB TB PB EB`` powers of
1000, ``B`` (or no unit) bytes; units are case-insensitive. Single letters (``"1M"``) are
rejected as ambiguous. The result must be a whole number of bytes. Parsed to int bytes.

The format functions write the shortest exact spelling, and parsing it gives back the same
value (property-tested).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction

# Largest first: the parser requires this order, the formatter tries units in it.
_DURATION_UNITS: dict[str, Fraction] = {
    "w": Fraction(7 * 86400),
    "d": Fraction(86400),
    "h": Fraction(3600),
    "m": Fraction(60),
    "s": Fraction(1),
    "ms": Fraction(1, 1000),
}
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|w|d|h|m|s)(?![a-z])", re.ASCII)

_BINARY_UNITS = {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "pib": 2**50, "eib": 2**60}
_DECIMAL_UNITS = {"kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "pb": 10**15, "eb": 10**18}
_SIZE_UNITS = {"": 1, "b": 1, **_BINARY_UNITS, **_DECIMAL_UNITS}
_SIZE_SPELLING = {"kib": "KiB", "mib": "MiB", "gib": "GiB", "tib": "TiB", "pib": "PiB"}
_SIZE_SPELLING |= {"eib": "EiB", "kb": "kB", "mb": "MB", "gb": "GB", "tb": "TB", "pb": "PB"}
_SIZE_SPELLING |= {"eb": "EB"}
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*", re.ASCII | re.IGNORECASE)


def parse_duration(value: str | int | float) -> float:
    """Seconds in ``value``; raises ValueError (or TypeError for a non-str, non-number)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise TypeError(f'a duration is a string like "30d" or a number of seconds, not {value!r}')
    if not isinstance(value, str):
        if value < 0 or not math.isfinite(_to_float(value)):
            raise ValueError(f"a duration must be a finite number >= 0, got {value!r}")
        return float(value)
    text = value.strip()
    if not text:
        raise ValueError("empty duration")
    if _looks_like_number(text):
        raise ValueError(f'duration "{value}" needs a unit (ms, s, m, h, d or w), e.g. "{text}s"')
    total = Fraction(0)
    pos = 0
    seen: list[str] = []
    order = list(_DURATION_UNITS)
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if match is None:
            raise ValueError(
                f'bad duration "{value}": expected parts like "30d", "2h", "90s", "500ms", "1h30m"'
            )
        number, unit = match.groups()
        if seen and order.index(unit) <= order.index(seen[-1]):
            raise ValueError(f'bad duration "{value}": write units largest first, each once')
        seen.append(unit)
        total += Fraction(number) * _DURATION_UNITS[unit]
        pos = match.end()
    return _to_float(total)


def format_duration(seconds: float) -> str:
    """Shortest exact spelling of ``seconds``, e.g. 604800.0 -> ``"7d"``, 0.5 -> ``"500ms"``.

    Days are preferred to weeks (``"14d"`` reads better than ``"2w"``).
    """
    if isinstance(seconds, bool) or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot format duration {seconds!r}")
    if seconds == 0:
        return "0s"
    # The shortest decimal that reads back as the same float, then exact arithmetic on it.
    shortest = Decimal(repr(float(seconds)))
    exact = Fraction(shortest)
    for unit, length in _DURATION_UNITS.items():
        if unit == "w":
            continue
        count = exact / length
        if count.denominator == 1:
            return f"{count.numerator}{unit}"
    return f"{shortest:f}s"


def parse_size(value: str | int) -> int:
    """Bytes in ``value``; raises ValueError (or TypeError for a non-str, non-int)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError(
            f'a size is a string like "128KiB" or a whole number of bytes, not {value!r}'
        )
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size must be >= 0, got {value}")
        return value
    match = _SIZE_RE.fullmatch(value)
    if match is None:
        raise ValueError(f'bad size "{value}": expected e.g. "4096", "128KiB", "64MiB", "10GB"')
    number, unit = match.group(1), match.group(2).lower()
    if unit not in _SIZE_UNITS:
        if unit in ("k", "m", "g", "t", "p", "e"):
            hint = f"{unit.upper()}iB (powers of 1024) or {unit.upper()}B (powers of 1000)"
            raise ValueError(f'ambiguous size unit in "{value}": write {hint}')
        raise ValueError(f'unknown size unit "{match.group(2)}" in "{value}"')
    size = Fraction(number) * _SIZE_UNITS[unit]
    if size.denominator != 1:
        raise ValueError(f'size "{value}" is not a whole number of bytes')
    return size.numerator


def format_size(size: int) -> str:
    """Shortest exact spelling of ``size`` bytes, e.g. 262144 -> ``"256KiB"``, 10**10 -> ``"10GB"``.

    Binary units win ties.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError(f"cannot format size {size!r}")
    best = f"{size}B"
    for units in (_BINARY_UNITS, _DECIMAL_UNITS):
        for unit, length in reversed(units.items()):
            if size and size % length == 0:
                candidate = f"{size // length}{_SIZE_SPELLING[unit]}"
                if len(candidate) < len(best):
                    best = candidate
                break
    return best


def _to_float(value: Fraction | int | float) -> float:
    try:
        return float(value)
    except OverflowError:
        raise ValueError("duration too long") from None


def _looks_like_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
