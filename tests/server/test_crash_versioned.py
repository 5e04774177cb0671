"""Kill -9 storms in a versioned bucket: no acknowledged version lost, no version chain
broken, and the current version always the latest acknowledged write.

A concurrent load of PUTs (small, large, multipart), DELETEs (delete markers) and DELETEs of
a version runs against a server on six hot disks until a SIGKILL at a random moment; the
server restarts on the same disks and every key's versions are compared with what the
server acknowledged (``versionload``). ``STRATUM_FAULT_SEED`` replays a run.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.server.conftest import start_server
from tests.server.faultload import (
    client_config,
    fault_seed,
    kill_during,
    kill_hard,
    print_server_log,
    stop_cleanly,
    tmp_leftovers,
    write_config,
)
from tests.server.versionload import VersionLedger, VersionLoad, check_versions, every_version

CYCLES = 6
KEYS = 32
BUCKET = "crash-versions"


@pytest.mark.slow
def test_acknowledged_versions_survive_kill_9(tmp_path: Path) -> None:
    seed = fault_seed()
    rng = random.Random(seed)
    layout = write_config(tmp_path)
    ledger = VersionLedger([f"key-{i:03d}" for i in range(KEYS)])
    server = start_server(layout.data_dir, config=layout.config)
    s3 = server.client(**client_config())
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    summary = []
    try:
        for cycle in range(CYCLES):
            delay = rng.uniform(0.5, 3.0)
            load = VersionLoad(server, BUCKET, ledger, seed=seed + cycle)
            acked_before = ledger.acked
            exited = kill_during(server, load, delay)
            assert exited is None, f"seed {seed} cycle {cycle}: the server exited by itself"
            assert not ledger.errors, f"seed {seed} cycle {cycle}: {ledger.errors}"
            server = start_server(layout.data_dir, config=layout.config)
            assert not tmp_leftovers(layout.disks), f"seed {seed}: tmp files left after restart"
            client = server.client(**client_config())
            assert client.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"
            problems = check_versions(server, client, BUCKET, ledger, read_all=cycle == CYCLES - 1)
            assert not problems, (
                f"seed {seed} cycle {cycle} (kill at {delay:.2f} s):\n" + "\n".join(problems)
            )
            summary.append((round(delay, 2), ledger.acked - acked_before))
        # Every version listed once, and only the newest of each key is the latest.
        entries = every_version(server, BUCKET)
        assert len({(k, v) for k, v, *_ in entries}) == len(entries)
        assert [k for k, _v, latest, *_ in entries if latest] == sorted({k for k, *_ in entries})
        stop_cleanly(server)
    except BaseException:
        print_server_log(server)
        raise
    finally:
        if server.process.poll() is None:
            kill_hard(server)
    print(
        f"seed {seed}; operations acknowledged {ledger.acked} {ledger.counts}; in flight at "
        f"kills {ledger.unknown}; per cycle (kill at s, acked): {summary}"
    )
    assert ledger.acked > 15 * CYCLES, f"the load barely ran: {summary}"
