"""Reed-Solomon stripe coding (stratum.block.codec)."""

from __future__ import annotations

import itertools
import os
import random
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stratum.block.codec import Codec

PARAMS = [(1, 0), (1, 1), (2, 1), (4, 2), (3, 3), (6, 3), (10, 4)]


@st.composite
def stripes(draw: st.DrawFn) -> tuple[Codec, bytes]:
    k, m = draw(st.sampled_from(PARAMS))
    data = draw(st.binary(min_size=1, max_size=3000))
    return Codec(k, m), data


@settings(max_examples=200, deadline=None)
@given(stripes(), st.randoms(use_true_random=False))
def test_any_k_blocks_give_the_stripe_back(case: tuple[Codec, bytes], rnd: random.Random) -> None:
    codec, data = case
    blocks = [bytes(b) for b in codec.encode(data)]
    blen = codec.block_len(len(data))
    assert len(blocks) == codec.k + codec.m
    assert {len(b) for b in blocks} == {blen}
    # systematic: the data blocks are the stripe itself, zero-padded
    assert b"".join(blocks[: codec.k]) == data + bytes(blen * codec.k - len(data))
    subset = rnd.sample(range(codec.total), codec.k)
    decoded = codec.decode({i: blocks[i] for i in subset})
    assert b"".join(bytes(b) for b in decoded)[: len(data)] == data
    # and every block can be rebuilt from k others
    missing = [i for i in range(codec.total) if i not in subset]
    rebuilt = codec.reconstruct({i: blocks[i] for i in subset}, missing)
    assert {i: bytes(b) for i, b in rebuilt.items()} == {i: blocks[i] for i in missing}


def test_every_k_subset_of_4_plus_2() -> None:
    codec = Codec(4, 2)
    data = os.urandom(4 * 1000 - 3)
    blocks = [bytes(b) for b in codec.encode(data)]
    for subset in itertools.combinations(range(6), 4):
        got = b"".join(bytes(b) for b in codec.decode({i: blocks[i] for i in subset}))
        assert got[: len(data)] == data, subset


def test_more_than_k_blocks_prefers_data_blocks() -> None:
    codec = Codec(2, 2)
    blocks = [bytes(b) for b in codec.encode(b"abcdef")]
    # a wrong parity block must not matter when both data blocks are given
    given_blocks = {0: blocks[0], 1: blocks[1], 2: b"\xff" * 3, 3: blocks[3]}
    assert b"".join(bytes(b) for b in codec.decode(given_blocks)) == b"abcdef"


def test_block_len_and_padding() -> None:
    codec = Codec(4, 2)
    assert codec.block_len(1) == 1
    assert codec.block_len(4) == 1
    assert codec.block_len(5) == 2
    assert codec.block_len(1 << 20) == 1 << 18
    with pytest.raises(ValueError):
        codec.block_len(0)


def test_full_stripe_data_blocks_are_views_not_copies() -> None:
    codec = Codec(4, 2)
    stripe = bytearray(os.urandom(4096))
    blocks = codec.encode(stripe)
    assert all(isinstance(b, memoryview) for b in blocks[:4])
    assert all(isinstance(b, bytes) and len(b) == 1024 for b in blocks[4:])


@pytest.mark.parametrize(("k", "m"), [(0, 2), (-1, 1), (2, -1), (200, 57)])
def test_invalid_parameters(k: int, m: int) -> None:
    with pytest.raises(ValueError):
        Codec(k, m)


def test_decode_rejects_too_few_or_uneven_blocks() -> None:
    codec = Codec(3, 2)
    blocks = [bytes(b) for b in codec.encode(os.urandom(30))]
    with pytest.raises(ValueError):
        codec.decode({0: blocks[0], 4: blocks[4]})
    with pytest.raises(ValueError):
        codec.decode({0: blocks[0], 1: blocks[1], 4: blocks[4][:-1]})


def test_decode_does_not_disturb_callers_mapping() -> None:
    # zfec reorders the sequences it is given in place; the codec must shield callers.
    codec = Codec(3, 2)
    blocks = [bytes(b) for b in codec.encode(os.urandom(300))]
    given_blocks = {4: blocks[4], 0: blocks[0], 3: blocks[3]}
    snapshot = dict(given_blocks)
    codec.decode(given_blocks)
    assert given_blocks == snapshot


def test_one_codec_shared_by_threads() -> None:
    codec = Codec(4, 2)
    stripes_ = [os.urandom(1 << 16) for _ in range(16)]
    expected = [[bytes(b) for b in codec.encode(s)] for s in stripes_]

    def roundtrip(n: int) -> bool:
        blocks = [bytes(b) for b in codec.encode(stripes_[n])]
        decoded = codec.decode({i: blocks[i] for i in (1, 3, 4, 5)})
        return blocks == expected[n] and b"".join(bytes(b) for b in decoded) == stripes_[n]

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(roundtrip, list(range(16)) * 4))
