"""The shard file format (stratum.block.shardfile), on real files."""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stratum.block.errors import ShardFormatError
from stratum.block.shardfile import (
    FOOTER_LEN,
    HEADER_FIXED_LEN,
    Expected,
    Layout,
    ShardFileReader,
    ShardFileWriter,
    ShardFooter,
    ShardHeader,
    block_crc,
    is_volume_id,
    parse_footer,
    parse_header,
    read_shard_info,
    shard_relpath,
)

VID = "0123456789abcdef0123456789abcdef"
META = {"bucket": "b", "key": "photos/ä.jpg", "created": 1700000000.5}


def write_shard(
    path: Path, index: int, k: int, block_size: int, data: bytes, meta: Mapping[str, object]
) -> Expected:
    """A shard file holding, as block s, the bytes of stripe s of ``data`` cut for index."""
    layout = Layout(k, block_size, len(data))
    w = ShardFileWriter(path, ShardHeader(VID, index, k, 2, block_size, meta))
    for s in range(layout.stripe_count):
        blen = layout.block_len(s)
        w.append_block(bytes([s % 251]) * blen)
    md5 = hashlib.md5(data).digest()
    w.finish(ShardFooter(len(data), layout.stripe_count, md5))
    w.close()
    return Expected(VID, index, k, 2, block_size, len(data), md5)


def test_header_bytes_are_as_documented() -> None:
    raw = ShardHeader(VID, 3, 4, 2, 262144, {"a": 1}).encode()
    meta = b'{"a":1}'
    assert raw[0:8] == b"STRSHARD"
    assert struct.unpack_from("<HH", raw, 8) == (2, 0)
    assert raw[12:28] == bytes.fromhex(VID)
    assert struct.unpack_from("<HHHH", raw, 28) == (3, 4, 2, 0)
    assert struct.unpack_from("<II", raw, 36) == (262144, len(meta))
    assert raw[44 : 44 + len(meta)] == meta
    assert struct.unpack_from("<I", raw, 44 + len(meta))[0] == zlib.crc32(raw[: 44 + len(meta)])
    assert len(raw) == HEADER_FIXED_LEN + len(meta) == 48 + len(meta)


def block_offsets(path: Path, expected: Expected) -> list[int]:
    reader = ShardFileReader(path, expected)
    try:
        return [reader.block_offset(s) for s in range(reader.layout.stripe_count)]
    finally:
        reader.close()


@pytest.mark.parametrize("version", [1, 2])
def test_block_checksums_by_version_and_both_versions_read(tmp_path: Path, version: int) -> None:
    """Version 2 checksums blocks with CRC-32C, version 1 (older files) with CRC-32: each
    file says which, readers accept both and catch a damaged block in either."""
    data = os.urandom(12000)  # three full stripes of 4 x 1000 bytes; this shard's blocks:
    blocks = [os.urandom(1000) for _ in range(3)]
    layout = Layout(4, 1000, len(data))
    path = tmp_path / "s.shard"
    w = ShardFileWriter(path, ShardHeader(VID, 0, 4, 2, 1000, META, version))
    for block in blocks:
        w.append_block(block)
    md5 = hashlib.md5(data).digest()
    w.finish(ShardFooter(len(data), layout.stripe_count, md5))
    w.close()
    expected = Expected(VID, 0, 4, 2, 1000, len(data), md5)
    raw = path.read_bytes()
    assert struct.unpack_from("<H", raw, 8)[0] == version
    offsets = block_offsets(path, expected)
    crc = zlib.crc32 if version == 1 else block_crc(2)
    assert block_crc(version) is crc
    for s, off in enumerate(offsets):
        block = raw[off : off + 1000]
        assert struct.unpack_from("<I", raw, off + 1000)[0] == crc(block) != 0
        assert block == blocks[s]
    reader = ShardFileReader(path, expected)
    assert reader.header.version == version
    assert bytes(reader.read_block(1)) == blocks[1]
    reader.close()
    with path.open("r+b") as f:
        f.seek(offsets[1] + 10)
        f.write(b"\xff" if raw[offsets[1] + 10] != 0xFF else b"\x00")
    reader = ShardFileReader(path, expected)
    with pytest.raises(ShardFormatError, match="CRC mismatch in stripe 1"):
        reader.read_block(1)
    assert bytes(reader.read_block(2)) == blocks[2]
    reader.close()


def test_footer_bytes_are_as_documented() -> None:
    md5 = hashlib.md5(b"x").digest()
    raw = ShardFooter(12345, 7, md5).encode()
    assert len(raw) == FOOTER_LEN == 44
    assert raw[0:8] == b"STRSFOOT"
    assert struct.unpack_from("<QQ", raw, 8) == (12345, 7)
    assert raw[24:40] == md5
    assert struct.unpack_from("<I", raw, 40)[0] == zlib.crc32(raw[:40])


@settings(max_examples=100)
@given(
    vid=st.binary(min_size=16, max_size=16).map(bytes.hex),
    index=st.integers(0, 255),
    k=st.integers(1, 255),
    m=st.integers(0, 255),
    block_size=st.integers(1, 2**32 - 1),
    meta=st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=20), max_size=5),
)
def test_header_round_trip(
    vid: str, index: int, k: int, m: int, block_size: int, meta: dict[str, object]
) -> None:
    header = ShardHeader(vid, index, k, m, block_size, meta)
    raw = header.encode()
    parsed, length = parse_header(raw + b"trailing", "x")
    assert parsed == header
    assert length == len(raw)


@settings(max_examples=100)
@given(st.data())
def test_any_flipped_header_or_footer_byte_is_caught(data: st.DataObject) -> None:
    raw = ShardHeader(VID, 1, 4, 2, 4096, META).encode()
    pos = data.draw(st.integers(0, len(raw) - 1))
    bad = bytearray(raw)
    bad[pos] ^= data.draw(st.integers(1, 255))
    with pytest.raises(ShardFormatError):
        parse_header(bytes(bad), "x")
    foot = bytearray(ShardFooter(10, 1, bytes(16)).encode())
    foot[data.draw(st.integers(0, FOOTER_LEN - 1))] ^= 0x40
    with pytest.raises(ShardFormatError):
        parse_footer(bytes(foot), "x")


@settings(max_examples=200)
@given(k=st.integers(1, 8), block_size=st.integers(1, 64), size=st.integers(0, 2000))
def test_layout_matches_a_brute_force_cut(k: int, block_size: int, size: int) -> None:
    layout = Layout(k, block_size, size)
    stripe = k * block_size
    lens = [min(stripe, size - off) for off in range(0, size, stripe)]
    assert layout.stripe_count == len(lens)
    assert [layout.stripe_len(s) for s in range(len(lens))] == lens
    assert [layout.block_len(s) for s in range(len(lens))] == [-(-n // k) for n in lens]
    assert layout.body_len() == sum(-(-n // k) + 4 for n in lens)


def test_write_then_read_blocks(tmp_path: Path) -> None:
    path = tmp_path / "s.shard"
    data = os.urandom(10_000)
    exp = write_shard(path, 1, 4, 1024, data, META)
    r = ShardFileReader(path, exp)
    try:
        assert r.header.meta == META
        assert r.footer.size == 10_000
        layout = Layout(4, 1024, 10_000)
        assert os.path.getsize(path) == r.header_len + layout.body_len() + FOOTER_LEN
        for s in range(layout.stripe_count):
            assert bytes(r.read_block(s)) == bytes([s]) * layout.block_len(s)
        with pytest.raises(IndexError):
            r.read_block(layout.stripe_count)
    finally:
        r.close()
    header, footer = read_shard_info(path)
    assert (header.volume_id, header.shard_index, footer.size) == (VID, 1, 10_000)


def test_empty_volume_shard(tmp_path: Path) -> None:
    path = tmp_path / "e.shard"
    exp = write_shard(path, 0, 3, 100, b"", {})
    r = ShardFileReader(path, exp)
    assert r.footer.stripe_count == 0
    r.close()


@pytest.mark.parametrize(
    "change",
    [
        {"volume_id": "f" * 32},
        {"shard_index": 2},
        {"data_shards": 3},
        {"parity_shards": 1},
        {"block_size": 2048},
        {"size": 9_999},
        {"md5": bytes(16)},
    ],
)
def test_reader_rejects_a_shard_that_is_not_the_expected_one(
    tmp_path: Path, change: dict[str, object]
) -> None:
    path = tmp_path / "s.shard"
    exp = write_shard(path, 1, 4, 1024, os.urandom(10_000), META)
    wrong = Expected(**{**exp.__dict__, **change})
    with pytest.raises(ShardFormatError):
        ShardFileReader(path, wrong)


def test_md5_check_can_be_skipped(tmp_path: Path) -> None:
    path = tmp_path / "s.shard"
    exp = write_shard(path, 1, 4, 1024, b"abc", META)
    ShardFileReader(path, Expected(**{**exp.__dict__, "md5": None})).close()


@pytest.mark.parametrize("cut", [1, FOOTER_LEN, FOOTER_LEN + 3, 2000])
def test_truncated_file_is_rejected(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "s.shard"
    exp = write_shard(path, 1, 4, 1024, os.urandom(10_000), META)
    os.truncate(path, os.path.getsize(path) - cut)
    with pytest.raises(ShardFormatError):
        ShardFileReader(path, exp)
    with pytest.raises(ShardFormatError):
        read_shard_info(path)


def test_appended_garbage_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "s.shard"
    exp = write_shard(path, 1, 4, 1024, os.urandom(5000), META)
    with path.open("ab") as f:
        f.write(b"junk")
    with pytest.raises(ShardFormatError):
        ShardFileReader(path, exp)


def test_flipped_block_byte_fails_only_that_stripe(tmp_path: Path) -> None:
    path = tmp_path / "s.shard"
    exp = write_shard(path, 0, 2, 512, os.urandom(3000), META)
    r = ShardFileReader(path, exp)
    try:
        off = r.block_offset(1) + 17
        with path.open("r+b") as f:
            f.seek(off)
            byte = f.read(1)
            f.seek(off)
            f.write(bytes([byte[0] ^ 1]))
        r.read_block(0)
        r.read_block(2)
        with pytest.raises(ShardFormatError, match="CRC mismatch in stripe 1"):
            r.read_block(1)
    finally:
        r.close()


def test_large_meta_needs_a_second_header_read(tmp_path: Path) -> None:
    path = tmp_path / "s.shard"
    meta = {"big": "x" * 10_000}
    exp = write_shard(path, 0, 2, 512, b"hello", meta)
    r = ShardFileReader(path, exp)
    assert r.header.meta == meta
    r.close()


def test_meta_must_be_json(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        ShardHeader(VID, 0, 1, 0, 1, {"x": object()}).encode()
    with pytest.raises(ValueError):
        ShardHeader(VID, 0, 1, 0, 1, {"x": "y" * (1 << 20)}).encode()


def test_writer_refuses_to_overwrite(tmp_path: Path) -> None:
    from stratum.block.errors import DiskWriteError

    path = tmp_path / "s.shard"
    path.write_bytes(b"")
    with pytest.raises(DiskWriteError, match=str(path)):
        ShardFileWriter(path, ShardHeader(VID, 0, 1, 0, 1, {}))


def test_names() -> None:
    assert is_volume_id(VID)
    assert not is_volume_id(VID.upper())
    assert not is_volume_id(VID[:-1])
    # fan-out by the random end of the id, not its timestamp start
    assert shard_relpath(VID, 4) == f"ef/{VID}.4.shard"
