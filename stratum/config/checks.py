"""Checks on converted values, each raising ValueError with the end of a message.

They run after a kind's conversion (:mod:`stratum.config.kinds`), one key at a time; the rules
between keys are the loader's (:mod:`stratum.config.load`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit


def between(low: int, high: int) -> Callable[[Any], None]:
    def check(value: int) -> None:
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}, got {value}")

    return check


def positive(value: float) -> None:
    if value <= 0:
        raise ValueError(f"must be greater than 0, got {value}")


def not_negative(value: float) -> None:
    if value < 0:
        raise ValueError(f"must be 0 or more, got {value}")


_CURRENCY = re.compile(r"[A-Za-z$\u00a3\u20ac\u00a5]{1,8}")


def currency(value: str) -> None:
    if not _CURRENCY.fullmatch(value):
        raise ValueError(f'must be a currency code or sign like "EUR" or "$", got "{value}"')


def fraction(value: float) -> None:
    if not 0 < value <= 1:
        raise ValueError(f"must be a fraction greater than 0 and at most 1, got {value}")


def one_of(*choices: str) -> Callable[[Any], None]:
    def check(value: str) -> None:
        if value not in choices:
            allowed = " or ".join(f'"{choice}"' for choice in choices)
            raise ValueError(f'must be {allowed}, got "{value}"')

    return check


def block_size(value: int) -> None:
    if value <= 0 or value % 4096:
        raise ValueError(f"must be a positive multiple of 4096 bytes (4KiB), got {value} bytes")


# compression values Stratum can set through libzfs_core (stratum.pool.zfs.COMPRESSION)
ZFS_COMPRESSION: tuple[str, ...] = (
    *("lz4", "zstd", "gzip"),
    *(f"gzip-{n}" for n in range(1, 10)),
    *("zle", "lzjb", "on", "off"),
)
_DATASET = re.compile(r"[A-Za-z][A-Za-z0-9_.:-]*(?:/[A-Za-z0-9_.:-]+)*", re.A)
DATASET_COMPONENT = re.compile(r"[A-Za-z0-9_.:-]+", re.A)


def dataset(value: str) -> None:
    if value and not _DATASET.fullmatch(value):
        raise ValueError(
            f'must be empty or a ZFS dataset name like "tank/stratum/hot" (pool first,'
            f' no leading or trailing "/"), got "{value}"'
        )


def recordsize(value: int) -> None:
    if value and (value & (value - 1) or not 4096 <= value <= 1 << 20):
        raise ValueError(f"must be empty or a power of two from 4KiB to 1MiB, got {value} bytes")


_HOSTNAME = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)(?:\.(?!-)[a-z0-9-]{1,63}(?<!-))*", re.I | re.A)
_REGION = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*", re.A)
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", re.A)
_PRINTABLE = re.compile(r"[\x21-\x7e]*", re.A)


def split_listen(listen: str) -> tuple[str, int]:
    """(host, port) of a ``HOST:PORT`` listen address; an IPv6 host comes back unbracketed."""
    usage = f'must be HOST:PORT, e.g. "0.0.0.0:9000" or "[::1]:9000", got "{listen}"'
    if listen.startswith("["):
        host, sep, port = listen[1:].partition("]:")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(usage) from None
    else:
        host, sep, port = listen.rpartition(":")
        if ":" in host:
            raise ValueError(f'{usage} (an IPv6 host goes in brackets: "[{host}]:{port}")')
        valid = _HOSTNAME.fullmatch(host) is not None
        if valid and re.fullmatch(r"[0-9.]+", host):
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                valid = False
        if not valid:
            raise ValueError(usage)
    if not sep or not re.fullmatch(r"[0-9]{1,5}", port) or int(port) > 65535:
        raise ValueError(f"{usage} (port 0-65535)" if sep else usage)
    return host, int(port)


def listen(value: str) -> None:
    split_listen(value)


def optional_listen(value: str) -> None:
    if value:
        split_listen(value)


def region(value: str) -> None:
    if not _REGION.fullmatch(value):
        raise ValueError(
            f'must look like "us-east-1" (lowercase letters, digits, dashes), got "{value}"'
        )


def domain(value: str) -> None:
    if value and (not _HOSTNAME.fullmatch(value) or value != value.lower()):
        raise ValueError(
            f'must be empty or a lowercase DNS name like "s3.home.lan" (no port), got "{value}"'
        )


def access_key(value: str) -> None:
    if not _PRINTABLE.fullmatch(value) or "/" in value:
        raise ValueError(f'must be printable ASCII without spaces or "/", got "{value}"')


def secret_key(value: str) -> None:
    if not _PRINTABLE.fullmatch(value):
        raise ValueError("must be printable ASCII without spaces")


def endpoint(value: str) -> None:
    if not value:
        return
    try:
        url = urlsplit(value)
        valid = url.scheme in ("http", "https") and bool(url.hostname) and url.port != -1
    except ValueError:
        valid = False
    if not valid or url.query or url.fragment:
        raise ValueError(f'must be empty or a URL like "https://s3.example.com", got "{value}"')


def bucket(value: str) -> None:
    if value and not _BUCKET.fullmatch(value):
        raise ValueError(f'must be an S3 bucket name (3-63 of a-z 0-9 . -), got "{value}"')


def prefix(value: str) -> None:
    if value.startswith("/"):
        raise ValueError(f'must not start with "/", got "{value}"')


TARGET_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}", re.A)


def replication_buckets(value: tuple[str, ...]) -> None:
    for name in value:
        if name != "*" and not _BUCKET.fullmatch(name):
            raise ValueError(f'must hold bucket names or "*", got "{name}"')


def target_bucket(value: str) -> None:
    """A target bucket name in which ``{bucket}`` stands for the source bucket's name."""
    bucket(value.replace("{bucket}", "bucket"))
    if not value:
        raise ValueError('must not be empty ("{bucket}": the source bucket\'s name)')


def access_keys(value: tuple[str, ...]) -> None:
    for key in value:
        access_key(key)
