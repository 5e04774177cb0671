"""Rendering cost of a full ListObjectsV2 page (1,000 keys), the hottest XML response.

Run with ``.venv/bin/pytest bench/ --benchmark-only``.
"""

from __future__ import annotations

from typing import Any

import pytest

from stratum.s3 import xml

T0 = 1_700_000_000.0


def page(encoding_type: str | None) -> xml.ListObjectsV2Result:
    contents = [
        xml.ObjectEntry(
            key=f"photos/2024/{i // 100:03d}/IMG {i:05d} & co.jpg",
            last_modified=T0 + i * 1.5,
            etag=f"{i:032x}",
            size=i * 4096,
        )
        for i in range(1000)
    ]
    return xml.ListObjectsV2Result(
        bucket="bench",
        prefix="photos/",
        max_keys=1000,
        is_truncated=True,
        contents=contents,
        next_continuation_token="dG9rZW4",
        encoding_type=encoding_type,
    )


@pytest.mark.parametrize("encoding_type", [None, "url"])
def test_list_objects_v2_1000_keys(benchmark: Any, encoding_type: str | None) -> None:
    result = page(encoding_type)
    body = benchmark(xml.list_objects_v2, result)
    assert body.count(b"<Contents>") == 1000
