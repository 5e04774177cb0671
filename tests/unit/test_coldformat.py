"""The cold object format (stratum.block.coldformat): round trips, ranges, tampering, keys."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stratum.block.cold import ColdKeyError, ColdLocation, load_or_create_key
from stratum.block.coldformat import (
    HEADER_LEN,
    TAG_LEN,
    ChunkOpener,
    ColdEncryptor,
    ColdFormatError,
    ColdHeader,
    WrongColdKey,
    decrypt_meta,
    decrypt_object,
    decrypt_stream,
    encrypt_object,
    key_id,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
META = {"bucket": "photos", "key": "2024/cat.jpg", "content_type": "image/jpeg", "md5": "ab" * 16}


def data_of(size: int) -> bytes:
    return bytes((i * 7 + i // 251) % 256 for i in range(size))


@settings(max_examples=200, deadline=None)
@given(
    chunk_size=st.integers(1, 40),
    extra=st.integers(0, 3 * 40 + 1),
    pieces=st.lists(st.integers(1, 50), min_size=1, max_size=5),
)
def test_round_trip_any_size_and_feeding(chunk_size: int, extra: int, pieces: list[int]) -> None:
    size = extra % (3 * chunk_size + 2)  # 0 .. 3 chunks + 1 byte
    data = data_of(size)
    enc = ColdEncryptor(KEY, size, META, chunk_size)
    out = [enc.prefix]
    offset, turn = 0, 0
    while offset < size:  # feed in uneven pieces
        step = pieces[turn % len(pieces)]
        out.append(enc.feed(data[offset : offset + step]))
        offset += step
        turn += 1
    out.append(enc.finish())
    blob = b"".join(out)
    header = enc.header
    assert (
        len(blob)
        == header.stored_size
        == HEADER_LEN + header.meta_len + size + TAG_LEN * max(1, -(-size // chunk_size))
    )
    assert blob == encrypt_object(KEY, data, META, chunk_size, header.file_id)
    meta, plain = decrypt_object(KEY, blob)
    assert meta == META and plain == data
    streamed = io.BytesIO()
    assert decrypt_stream(KEY, io.BytesIO(blob), streamed)[1] == META
    assert streamed.getvalue() == data


@settings(max_examples=60, deadline=None)
@given(chunk_size=st.integers(1, 9), size=st.integers(0, 30))
def test_every_range(chunk_size: int, size: int) -> None:
    data = data_of(size)
    blob = encrypt_object(KEY, data, META, chunk_size)
    for start in range(size + 2):
        for end in range(start, size + 3):
            assert decrypt_object(KEY, blob, start, end)[1] == data[start:end]


def test_ranges_touch_only_their_chunks() -> None:
    header = ColdHeader(chunk_size=10, size=35, file_id=bytes(16), key_id=bytes(8), meta_len=20)
    assert header.chunk_count == 4
    assert list(header.chunks_for(0, 35)) == [0, 1, 2, 3]
    assert list(header.chunks_for(9, 11)) == [0, 1]
    assert list(header.chunks_for(10, 20)) == [1]
    assert list(header.chunks_for(34, 100)) == [3]
    assert list(header.chunks_for(35, 40)) == []
    assert list(header.chunks_for(5, 5)) == []
    assert header.span(range(1, 3)) == (52 + 20 + 26, 52)
    assert header.span(range(3, 4)) == (52 + 20 + 78, 5 + 16)
    assert header.stored_size == 52 + 20 + 35 + 4 * 16


def test_tampering_with_any_byte_fails() -> None:
    data = data_of(50)
    blob = encrypt_object(KEY, data, META, chunk_size=16)
    for position in range(len(blob)):
        damaged = bytearray(blob)
        damaged[position] ^= 0x01
        with pytest.raises(ColdFormatError):
            decrypt_object(KEY, bytes(damaged))
        with pytest.raises(ColdFormatError):
            decrypt_stream(KEY, io.BytesIO(bytes(damaged)), io.BytesIO())


def test_header_tampering_fails_even_for_range_reads_from_a_record() -> None:
    """A reader using the header kept in metadata rejects chunks of a remote object whose
    header was rewritten (here: a bigger size, the classic extension attack)."""
    blob = encrypt_object(KEY, data_of(40), META, chunk_size=16)
    header = ColdHeader.unpack(blob)
    forged = ColdHeader(16, 48, header.file_id, header.key_id, header.meta_len)
    opener = ChunkOpener.create(KEY, forged)
    offset = header.chunk_offset(1)
    with pytest.raises(ColdFormatError, match="authentication"):
        opener.open(1, blob[offset : offset + header.sealed_len(1)])


def chunks_of(blob: bytes) -> tuple[bytes, list[bytes]]:
    header = ColdHeader.unpack(blob)
    sealed = [
        blob[header.chunk_offset(i) : header.chunk_offset(i) + header.sealed_len(i)]
        for i in range(header.chunk_count)
    ]
    return blob[: header.data_offset], sealed


def test_swapped_repeated_dropped_or_appended_chunks_fail() -> None:
    blob = encrypt_object(KEY, data_of(64), META, chunk_size=16)  # 4 full chunks
    prefix, sealed = chunks_of(blob)
    assert len(sealed) == 4
    variants = {
        "swapped": [sealed[1], sealed[0], sealed[2], sealed[3]],
        "repeated": [sealed[0], sealed[0], sealed[2], sealed[3]],
        "last chunk first": [sealed[3], sealed[1], sealed[2], sealed[0]],
        "truncated": sealed[:3],
        "extended": [*sealed, sealed[3]],
    }
    for name, chunks in variants.items():
        with pytest.raises(ColdFormatError):
            decrypt_stream(KEY, io.BytesIO(prefix + b"".join(chunks)), io.BytesIO())
        if name == "swapped":
            with pytest.raises(ColdFormatError):
                decrypt_object(KEY, prefix + b"".join(chunks))


def test_truncation_with_a_matching_header_fails() -> None:
    """Cutting the object and rewriting its size to match is caught by the AAD."""
    blob = encrypt_object(KEY, data_of(64), META, chunk_size=16)
    header = ColdHeader.unpack(blob)
    prefix, sealed = chunks_of(blob)
    short = ColdHeader(16, 48, header.file_id, header.key_id, header.meta_len)
    forged = short.pack() + prefix[HEADER_LEN:] + b"".join(sealed[:3])
    with pytest.raises(ColdFormatError):
        decrypt_object(KEY, forged)


def test_empty_object_still_has_an_authenticated_last_chunk() -> None:
    blob = encrypt_object(KEY, b"", META, chunk_size=16)
    assert ColdHeader.unpack(blob).chunk_count == 1
    assert decrypt_object(KEY, blob) == (META, b"")
    with pytest.raises(ColdFormatError):
        decrypt_object(KEY, blob[:-TAG_LEN])
    other = encrypt_object(KEY, data_of(16), META, chunk_size=16)  # one full, last chunk
    assert decrypt_object(KEY, other)[1] == data_of(16)


def test_wrong_key_is_named() -> None:
    blob = encrypt_object(KEY, data_of(20), META, chunk_size=8)
    assert ColdHeader.unpack(blob).key_id == key_id(KEY) != key_id(OTHER_KEY)
    with pytest.raises(WrongColdKey, match="wrong key"):
        decrypt_object(OTHER_KEY, blob)
    with pytest.raises(WrongColdKey):
        decrypt_meta(OTHER_KEY, blob)


def test_plaintext_and_names_never_appear() -> None:
    marker = b"SECRET-MARKER-0123456789"
    blob = encrypt_object(KEY, marker * 100, META, chunk_size=64)
    assert marker not in blob and b"cat.jpg" not in blob and b"photos" not in blob
    header, meta = decrypt_meta(KEY, blob)
    assert meta == META and header.size == len(marker) * 100


def test_each_object_gets_its_own_data_key() -> None:
    a = encrypt_object(KEY, data_of(100), META, chunk_size=32)
    b = encrypt_object(KEY, data_of(100), META, chunk_size=32)
    assert a[24:40] != b[24:40]  # file ids
    assert a[HEADER_LEN:] != b[HEADER_LEN:]


def test_header_is_refused_when_unknown() -> None:
    blob = bytearray(encrypt_object(KEY, b"x", META))
    with pytest.raises(ColdFormatError, match="magic"):
        ColdHeader.unpack(b"NOTCOLD!" + bytes(blob[8:]))
    blob[8] = 2
    with pytest.raises(ColdFormatError, match="version 2"):
        ColdHeader.unpack(bytes(blob))
    with pytest.raises(ColdFormatError, match="cut short"):
        ColdHeader.unpack(b"STRCOLDF")


def test_encryptor_refuses_a_body_of_the_wrong_length() -> None:
    enc = ColdEncryptor(KEY, 10, META, chunk_size=4)
    enc.feed(b"12345")
    with pytest.raises(ValueError, match="declared"):
        enc.finish()
    with pytest.raises(ValueError, match="longer"):
        enc.feed(b"123456")


def test_location_record_round_trip() -> None:
    enc = ColdEncryptor(KEY, 3_000_000, META)
    record = ColdLocation("stratum/0123", enc.header).to_dict()
    assert json.loads(json.dumps(record)) == record
    assert record["chunk_size"] == 1 << 20 and record["size"] == 3_000_000
    assert record["stored_size"] == enc.header.stored_size
    assert ColdLocation.from_dict(record) == ColdLocation("stratum/0123", enc.header)
    with pytest.raises(ColdFormatError):
        ColdLocation.from_dict({**record, "v": 2})


def test_key_file_created_once_private_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "cold.key"
    key = load_or_create_key(path)
    assert len(key) == 32 and path.read_bytes() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path) == key
    assert [p.name for p in tmp_path.iterdir()] == ["cold.key"]
    path.write_bytes(key + b"\n")
    with pytest.raises(ColdKeyError, match="exactly 32 bytes"):
        load_or_create_key(path)
    path.write_bytes(b"")
    with pytest.raises(ColdKeyError):
        load_or_create_key(path)


def test_recovery_command_line(tmp_path: Path) -> None:
    """The documented recovery: python -m stratum.block.coldformat decrypt --key ... < obj."""
    key_path = tmp_path / "cold.key"
    key = load_or_create_key(key_path)
    data = os.urandom(3 * 1024 + 5)
    stored = tmp_path / "object"
    stored.write_bytes(encrypt_object(key, data, META, chunk_size=1024))
    command = [sys.executable, "-m", "stratum.block.coldformat", "decrypt", "--key", str(key_path)]
    with stored.open("rb") as source:
        done = subprocess.run(command, stdin=source, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == data
    with stored.open("rb") as source:
        done = subprocess.run([*command, "--info"], stdin=source, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["meta"] == META and info["size"] == len(data) and info["chunks"] == 4
    damaged = bytearray(stored.read_bytes())
    damaged[-1] ^= 1
    stored.write_bytes(bytes(damaged))
    out = tmp_path / "plain"
    done = subprocess.run(
        [*command, "-i", str(stored), "-o", str(out)], capture_output=True, check=False
    )
    assert done.returncode == 1 and b"chunk 3 fails authentication" in done.stderr
    assert out.read_bytes() == data[:3072]  # the authentic chunks before the damage
    key_path.write_bytes(os.urandom(32))
    done = subprocess.run([*command, "-i", str(stored)], capture_output=True, check=False)
    assert done.returncode == 1 and b"wrong key" in done.stderr
