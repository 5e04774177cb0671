"""Reed-Solomon coding of one stripe into ``k`` data + ``m`` parity blocks (wraps zfec).

This is the only module that imports zfec. A stripe of ``n`` bytes (``0 < n <= k * block_size``)
becomes ``k + m`` blocks of ``ceil(n / k)`` bytes each: blocks ``0..k-1`` are the stripe itself,
cut in order and zero-padded at the end (a systematic code, so a healthy read needs no
decoding), blocks ``k..k+m-1`` are parity. Any ``k`` of the ``k + m`` blocks give back the data.

Threads: zfec's ``encode``/``decode`` release the GIL around the Galois-field arithmetic (see
``Py_BEGIN_ALLOW_THREADS`` in zfec's ``_fecmodule.c``), and an ``Encoder``/``Decoder`` only
reads its matrix, so one :class:`Codec` is shared by every thread. The calls still take about
a millisecond per MiB, so callers run them in an executor, never on the event loop.

zfec quirks handled here: ``Encoder``/``Decoder`` need ``1 <= k <= k + m <= 256``; ``encode``
returns the caller's own objects for the data blocks; ``decode`` *reorders the sequences it is
given in place* (even a tuple), so each call gets fresh lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import zfec

from stratum.config import MAX_SHARDS

Block = bytes | bytearray | memoryview


class Codec:
    """Encode/decode stripes for fixed ``data_shards`` (k) and ``parity_shards`` (m)."""

    def __init__(self, data_shards: int, parity_shards: int) -> None:
        if data_shards < 1 or parity_shards < 0 or data_shards + parity_shards > MAX_SHARDS:
            raise ValueError(
                f"need 1 <= data_shards and 0 <= parity_shards with a total <= {MAX_SHARDS}, "
                f"got k={data_shards} m={parity_shards}"
            )
        self.k = data_shards
        self.m = parity_shards
        self.total = data_shards + parity_shards
        # With m == 0 there is nothing to compute: no zfec objects at all.
        self._encoder = zfec.Encoder(self.k, self.total) if self.m else None
        self._decoder = zfec.Decoder(self.k, self.total) if self.m else None
        self._parity_ids = tuple(range(self.k, self.total))

    def block_len(self, stripe_len: int) -> int:
        """Length of each of the ``k + m`` blocks of a stripe of ``stripe_len`` bytes."""
        if stripe_len <= 0:
            raise ValueError("a stripe holds at least one byte")
        return -(-stripe_len // self.k)

    def encode(self, stripe: Block) -> list[Block]:
        """Cut ``stripe`` into ``k`` equal (zero-padded) data blocks and compute ``m`` parity.

        Returns ``k + m`` blocks; data blocks may be memoryviews into ``stripe`` (no copy when
        the stripe length is a multiple of ``k``), so keep ``stripe`` unchanged while they live.
        """
        view = memoryview(stripe).cast("B")
        blen = self.block_len(len(view))
        if len(view) != blen * self.k:
            padded = bytearray(blen * self.k)
            padded[: len(view)] = view
            view = memoryview(padded)
        data: list[Block] = [view[i * blen : (i + 1) * blen] for i in range(self.k)]
        if self._encoder is None:
            return data
        parity: list[Block] = self._encoder.encode(tuple(data), self._parity_ids)
        return data + parity

    def decode(self, blocks: Mapping[int, Block]) -> list[Block]:
        """The ``k`` data blocks of a stripe, from any ``k`` or more of its blocks by index.

        Data blocks present are used in preference to parity (no arithmetic when all ``k`` are
        there). Raises ``ValueError`` with fewer than ``k`` blocks or blocks of unequal length.
        """
        if len(blocks) < self.k:
            raise ValueError(f"need {self.k} blocks to decode, got {len(blocks)}")
        chosen = sorted(blocks)[: self.k]  # data indices sort first
        lengths = {len(memoryview(blocks[i])) for i in chosen}
        if len(lengths) != 1:
            raise ValueError(f"blocks of one stripe differ in length: {sorted(lengths)}")
        if chosen[-1] < self.k:
            return [blocks[i] for i in chosen]
        assert self._decoder is not None  # a parity index exists, so m > 0
        out: list[Block] = self._decoder.decode([blocks[i] for i in chosen], list(chosen))
        return out

    def parity(self, data: Sequence[Block], wanted: Iterable[int]) -> dict[int, Block]:
        """Parity blocks numbered ``wanted`` (each in ``k..k+m-1``) of the ``k`` data blocks."""
        ids = tuple(sorted(set(wanted)))
        if not ids:
            return {}
        if ids[0] < self.k or ids[-1] >= self.total:
            raise ValueError(f"parity block numbers are {self.k}..{self.total - 1}: {ids}")
        assert self._encoder is not None  # a parity number exists, so m > 0
        made = self._encoder.encode(tuple(data), ids)
        return dict(zip(ids, made, strict=True))

    def reconstruct(self, blocks: Mapping[int, Block], wanted: Iterable[int]) -> dict[int, Block]:
        """Recompute the blocks numbered ``wanted`` (data or parity) from ``k`` or more others."""
        wanted = sorted(set(wanted))
        if any(not 0 <= w < self.total for w in wanted):
            raise ValueError(f"block numbers must be in 0..{self.total - 1}: {wanted}")
        data = self.decode(blocks)
        out: dict[int, Block] = {w: data[w] for w in wanted if w < self.k}
        out.update(self.parity(data, (w for w in wanted if w >= self.k)))
        return out
