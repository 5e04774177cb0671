"""Volume ids: format, time order, and no shared random stream across forked workers."""

from __future__ import annotations

import os

from stratum.service.ids import new_volume_id


def test_ids_are_hex_time_ordered_and_distinct() -> None:
    ids = [new_volume_id(1_700_000_000.0 + i / 1000) for i in range(1000)]
    assert all(len(v) == 32 and int(v, 16) >= 0 for v in ids)
    assert ids == sorted(ids) and len(set(ids)) == 1000


def test_a_forked_worker_draws_other_ids_than_its_parent() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, "".join(new_volume_id(1.0) for _ in range(8)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 4096).decode()
    os.close(read)
    parent = "".join(new_volume_id(1.0) for _ in range(8))
    assert len(child) == len(parent) == 8 * 32
    assert {child[i : i + 32] for i in range(0, 256, 32)}.isdisjoint(
        {parent[i : i + 32] for i in range(0, 256, 32)}
    )
