"""Durations and sizes as written in the configuration file."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stratum.util.units import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30d", 30 * 86400.0),
        ("2h", 7200.0),
        ("90s", 90.0),
        ("500ms", 0.5),
        ("1w", 604800.0),
        ("1m", 60.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("1d2h3m4s5ms", 93784.005),
        ("1.5h", 5400.0),
        (".5s", 0.5),
        ("  2h ", 7200.0),
        ("0s", 0.0),
        (30, 30.0),
        (0.25, 0.25),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert isinstance(parse_duration(text), float)


@pytest.mark.parametrize(
    "text",
    ["", "  ", "10", "0", "1x", "-1s", "1s1h", "1h1h", "h", "1hm", "1e3s", "1.2.3s", "1 2h", "2H"],
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_parse_duration_explains() -> None:
    with pytest.raises(ValueError, match="needs a unit"):
        parse_duration("10")
    with pytest.raises(ValueError, match="largest first"):
        parse_duration("30m1h")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1, -0.5, 10**400, "9" * 400 + "w"])
def test_parse_duration_rejects_bad_numbers(value: float | str) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


@pytest.mark.parametrize("value", [True, None, [1], b"1s"])
def test_parse_duration_rejects_other_types(value: object) -> None:
    with pytest.raises(TypeError):
        parse_duration(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0s"),
        (604800.0, "7d"),
        (30 * 86400.0, "30d"),
        (60.0, "1m"),
        (5400.0, "90m"),
        (90.0, "90s"),
        (0.5, "500ms"),
        (1.5, "1500ms"),
        (0.0005, "0.0005s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.floats(min_value=0, allow_nan=False, allow_infinity=False))
def test_duration_round_trip(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


_DURATION_UNITS: dict[str, Fraction] = {
    "w": Fraction(604800),
    "d": Fraction(86400),
    "h": Fraction(3600),
    "m": Fraction(60),
    "s": Fraction(1),
    "ms": Fraction(1, 1000),
}


@given(st.dictionaries(st.sampled_from(list(_DURATION_UNITS)), st.integers(0, 10**6), min_size=1))
def test_duration_parts_add_up(parts: dict[str, int]) -> None:
    text = "".join(f"{parts[unit]}{unit}" for unit in _DURATION_UNITS if unit in parts)
    expected = sum(Fraction(count) * _DURATION_UNITS[unit] for unit, count in parts.items())
    assert parse_duration(text) == float(expected)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("128KiB", 128 * 1024),
        ("1MiB", 2**20),
        ("5GiB", 5 * 2**30),
        ("10GB", 10 * 10**9),
        ("1kB", 1000),
        ("1KB", 1000),
        ("128kib", 128 * 1024),
        ("1 MiB", 2**20),
        ("1.5GiB", 3 * 2**29),
        ("4096", 4096),
        ("0", 0),
        ("0B", 0),
        ("12B", 12),
        (4096, 4096),
        (0, 0),
    ],
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text", ["", "KiB", "-1", "1.5B", "0.3KiB", "12XB", "1e3", "1,000", "1 2KiB", "1KiB1B"]
)
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_parse_size_explains_ambiguous_units() -> None:
    with pytest.raises(ValueError, match=r"MiB .* or MB"):
        parse_size("10M")


def test_parse_size_rejects_bad_values() -> None:
    with pytest.raises(ValueError):
        parse_size(-1)
    for value in (True, 1.5, None, [1]):
        with pytest.raises(TypeError):
            parse_size(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0B"),
        (1, "1B"),
        (4096, "4KiB"),
        (4097, "4097B"),
        (262144, "256KiB"),
        (64 * 2**20, "64MiB"),
        (5 * 2**30, "5GiB"),
        (10**10, "10GB"),
        (1000, "1kB"),
    ],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


@given(st.integers(min_value=0, max_value=2**70))
def test_size_round_trip(size: int) -> None:
    assert parse_size(format_size(size)) == size


@given(
    st.integers(min_value=0, max_value=10**6),
    st.sampled_from(["", "B", "KiB", "MiB", "GiB", "TiB", "kB", "MB", "GB", "TB"]),
)
def test_size_units(count: int, unit: str) -> None:
    factor = {"": 1, "B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}
    factor |= {"kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
    assert parse_size(f"{count}{unit}") == count * factor[unit]


def test_format_rejects_negative() -> None:
    with pytest.raises(ValueError):
        format_size(-1)
    with pytest.raises(ValueError):
        format_duration(-1.0)
