"""How the console writes numbers, sizes and times (Jinja2 filters), and small helpers."""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from typing import Any

UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def size(n: float | None) -> str:
    """Bytes, in binary units: ``1.5 GiB``."""
    if n is None:
        return "-"
    value = float(n)
    for unit in UNITS:
        if abs(value) < 1024 or unit == UNITS[-1]:
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)


def count(n: float | None) -> str:
    """A count with thousands separators: ``100,000``."""
    return "-" if n is None else f"{int(n):,}"


def percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{fraction * 100:.1f} %"


def duration(seconds: float | None) -> str:
    """A span of time, coarsely: ``3.2 d``, ``5 h``, ``40 s``."""
    if seconds is None:
        return "-"
    for unit, length in (("d", 86400), ("h", 3600), ("min", 60)):
        if abs(seconds) >= length:
            return f"{seconds / length:.1f} {unit}"
    return f"{seconds:.0f} s"


def when(epoch: float | None) -> str:
    """A moment in UTC: ``2026-12-07 04:05``."""
    if not epoch:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch))


def money(value: float | None, currency: str = "EUR") -> str:
    return "-" if value is None else f"{value:,.2f} {currency}"


def random_token() -> str:
    return secrets.token_urlsafe(24)


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


FILTERS: dict[str, Callable[..., Any]] = {
    "size": size,
    "count": count,
    "percent": percent,
    "duration": duration,
    "when": when,
    "money": money,
}
