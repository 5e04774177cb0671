"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stratum.meta.store import MetaStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MetaStore]:
    """A real, empty LMDB metadata store in ``tmp_path / "meta"``."""
    store = MetaStore(tmp_path / "meta")
    store.open()
    yield store
    store.close()
