"""The cold sweep's filter of referenced keys (stratum.maintenance.coldsweep.KeyFilter)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stratum.maintenance.coldsweep import KeyFilter, cold_keys
from stratum.meta.records import VolumeRecord

keys = st.text(min_size=0, max_size=80)


@given(added=st.lists(keys, max_size=300), salt=st.binary(min_size=16, max_size=16))
def test_every_key_added_is_found(added: list[str], salt: bytes) -> None:
    found = KeyFilter(bits=1 << 12, salt=salt)
    for key in added:
        found.add(key)
    assert all(key in found for key in added)


def test_keys_not_added_are_rarely_found() -> None:
    found = KeyFilter(bits=1 << 16)
    for i in range(2000):
        found.add(f"stratum/{i:032x}")
    strangers = sum(f"stratum/{i:032x}" in found for i in range(2000, 12000))
    assert strangers < 20  # about 0.1 % at this fill (2,000 keys in 65,536 bits)
    assert 5 not in found


def test_the_size_is_a_power_of_two() -> None:
    with pytest.raises(ValueError):
        KeyFilter(bits=1000)


def test_cold_keys_of_a_record() -> None:
    def volume(layout: str, location: dict[str, object]) -> VolumeRecord:
        return VolumeRecord(
            volume_id="0" * 32,
            tier="cold",
            layout=layout,
            location=location,
            size=1,
            md5="",
            created=0.0,
        )

    assert list(cold_keys(volume("cold", {"key": "p/1"}))) == ["p/1"]
    assert list(cold_keys(volume("ec", {"volume_id": "1" * 32}))) == []
    parts = [{"layout": "cold", "location": {"key": "p/2"}}, {"layout": "seg", "location": {}}]
    assert list(cold_keys(volume("multi", {"parts": parts}))) == ["p/2"]
