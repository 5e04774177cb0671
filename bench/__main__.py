"""``python -m bench``: Stratum against peer S3 servers, same workloads, same run.

    python -m bench [--quick] [--peers moto,radosgw] [--out bench/results] [--repeats N]
                    [--profile] [--work-dir DIR]

Stratum (4+2 over six hot disk directories) and then each peer are started on loopback one
at a time, each gets every workload (see ``bench.workloads``) ``--repeats`` times, and is
stopped before the next starts. Then Stratum alone runs the scaling workload (4 KiB PUT and
GET, 16 clients) with ``server.workers`` = 1, 2 and the number of cores. Prints the table
of medians with the issue's targets, and writes ``latest.json``, ``latest.md`` and
``latest.png`` to ``--out``. A peer that is not installed is skipped with a note.
``--quick`` is a smoke run of a few minutes.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import report
from bench.procstat import machine, others_busy_fraction
from bench.profile import PROFILED, Profiler, py_spy, summary
from bench.servers import PEERS, Server, StartError, peer_unavailable, start_stratum
from bench.signer import selftest
from bench.workloads import Hook, Sizes, Suite, Workload, scaling_ids

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument(
        "--peers",
        default="moto,radosgw",
        help="comma-separated peers to compare with: moto, radosgw ('' or none: Stratum only)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory for results")
    parser.add_argument(
        "--repeats", type=int, help="runs per workload, the median is shown (3; --quick: 1)"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="SECONDS",
        help="before each server, wait up to this long for other processes to go quiet",
    )
    parser.add_argument(
        "--profile",
        nargs="?",
        const=PROFILED,
        metavar="WORKLOADS",
        help="sample Stratum with py-spy during these workloads (comma-separated ids, default "
        f"{PROFILED}); profiling slows it, so the run's numbers are skewed",
    )
    parser.add_argument(
        "--work-dir", type=Path, help="where servers keep their data (default: a temp dir)"
    )
    args = parser.parse_args(argv)
    names = [p.strip() for p in args.peers.split(",") if p.strip() and p.strip() != "none"]
    unknown = [p for p in names if p not in PEERS]
    if unknown:
        parser.error(f"unknown peer(s) {', '.join(unknown)}; known: {', '.join(PEERS)}")
    args.peer_names = names
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    return args


def say(message: str) -> None:
    print(message, flush=True)


def _data_fs(path: Path) -> str:
    """``/dev/vda (ext4) at /tmp/...``: which device the servers' data went to."""
    best = ("?", "?", "")
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount, fstype, *_ = line.split()
            inside = str(path).startswith(mount.rstrip("/") + "/") or str(path) == mount
            if inside and len(mount) >= len(best[2]):
                best = (device, fstype, mount)
    except OSError:
        pass
    return f"{best[0]} ({best[1]}) under {path}"


def _versions(extra: dict[str, str]) -> dict[str, str]:
    import stratum

    versions = {"python": platform.python_version(), "stratum": stratum.__version__}
    for dist in ("moto", "boto3", "botocore"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    versions.update(extra)
    return versions


def wait_quiet(limit: float, busy: list[float], threshold: float = 0.1) -> None:
    """Wait (up to ``limit`` s) until other processes use under ``threshold`` of the CPU;
    append the share they used at the end to ``busy``."""
    deadline = time.monotonic() + limit
    while True:
        others = min(1.0, others_busy_fraction(2.0))
        if others < threshold:
            busy.append(others)
            return
        if time.monotonic() >= deadline:
            say(f"   warning: other processes use {others:.0%} of the CPU; measuring anyway")
            busy.append(others)
            return
        say(f"   other processes use {others:.0%} of the CPU; waiting for quiet")
        time.sleep(8)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # unwinds through the finally blocks that stop the servers


def worker_counts() -> list[int]:
    """``server.workers`` values the scaling workload tries: 1, 2 and the cores if more."""
    return sorted({1, 2, os.cpu_count() or 1})


def scaling(
    base: Path,
    sizes: Sizes,
    repeats: int,
    results: dict[str, Workload],
    hook: Hook,
    notes: list[str],
) -> None:
    """Stratum alone, 4 KiB PUT then GET at 16 clients, once per ``server.workers`` value
    per repeat (a fresh server each time). A value the server refuses (it exits when it
    starts) is skipped with a note, so this runs before and after multi-process serving."""
    refused: dict[int, str] = {}
    for number in range(repeats):
        for workers in worker_counts():
            if workers in refused:
                continue
            say(f"\n== Stratum, scaling: server.workers = {workers}, run {number + 1} of {repeats}")
            workdir = base / f"stratum-w{workers}"
            server: Server | None = None
            t0 = time.monotonic()
            try:
                server = start_stratum(workdir, workers=workers)
                say(f"   Stratum at {server.endpoint} (pids {server.pids()}): {server.setup}")
                suite = Suite(server, sizes, say, results, hook)
                try:
                    suite.scaling(number, workers)
                finally:
                    suite.close()
            except StartError as exc:
                lines = str(exc).splitlines()
                said = next((x for x in lines if "workers" in x), lines[-1] if lines else "")
                refused[workers] = f"stratum serve refused server.workers = {workers}: {said}"
                say(f"note: {refused[workers]}; skipped")
                for wid, title in scaling_ids(workers):
                    skipped = results.setdefault(wid, Workload(wid, title, "ops"))
                    skipped.note = f"skipped: {refused[workers]}"
            finally:
                if server is not None:
                    server.stop()
                    say(f"   Stratum stopped ({time.monotonic() - t0:.0f} s with it)")
                shutil.rmtree(workdir, ignore_errors=True)
    notes.extend(f"scaling: {why}; skipped" for why in refused.values())


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    selftest()  # the load generator's SigV4 signer agrees with botocore's
    sizes = Sizes.quick() if args.quick else Sizes()
    started = time.monotonic()
    notes: list[str] = []
    profiler = None
    hook: Hook | None = None
    if args.profile:
        if py_spy() is None:
            say("note: py-spy is not installed (pip install py-spy); not profiling")
        else:
            profiler = Profiler(args.out, args.profile)
            hook = profiler.hook
            notes.append(f"PROFILED RUN: py-spy sampled Stratum during {args.profile}")

    starters: list[tuple[str, Any]] = [("Stratum", start_stratum)]
    for name in args.peer_names:
        why = peer_unavailable(name)
        if why:
            say(f"note: {name}: {why}")
            notes.append(f"{name} not run: {why}")
        else:
            starters.append((name, PEERS[name]))

    base = args.work_dir or Path(tempfile.mkdtemp(prefix="stratum-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "repeats": args.repeats,
        "sizes": sizes.__dict__,
        "machine": machine(),
        "data_fs": _data_fs(base),
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        "notes": notes,
        "setups": {},
    }
    m = info["machine"]
    say(
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_bytes'] / 2**30:.1f} GiB RAM, "
        f"Linux {m['kernel']}; work dir {base}"
    )
    # Every server gets round 1 of the workloads, then every server round 2, ...: when
    # something else on the machine comes and goes, it hits all of them alike. Each round
    # starts a fresh server and stops it before the next server starts. The LIST bucket,
    # slow to fill, is filled once per server in a last phase.
    collected: dict[str, dict[str, Workload]] = {name: {} for name, _ in starters}
    failed: set[str] = set()
    busy_at_start: list[float] = []  # CPU share other processes used as each server started
    extra_versions: dict[str, str] = {}
    phases = [f"round {n + 1} of {args.repeats}" for n in range(args.repeats)] + ["LIST"]
    try:
        for number, phase in enumerate(phases):
            if phase == "LIST" and "Stratum" not in failed:
                scaling(base, sizes, args.repeats, collected["Stratum"], hook or _no_hook, notes)
            for name, start in starters:
                if name in failed:
                    continue
                workdir = base / name.lower()
                say(f"\n== {name}, {phase}")
                wait_quiet(args.wait_quiet, busy_at_start)
                server: Server | None = None
                t0 = time.monotonic()
                try:
                    server = start(workdir)
                    say(
                        f"   {name} {server.version} at {server.endpoint} (pids {server.pids()},"
                        f" up in {time.monotonic() - t0:.1f} s): {server.setup}"
                    )
                    info["setups"][name] = f"{server.version}, {server.setup}"
                    if name == "radosgw":
                        extra_versions["radosgw"] = server.version
                    suite = Suite(server, sizes, say, collected[name], hook or _no_hook)
                    try:
                        if phase == "LIST":
                            suite.listing(args.repeats)
                        else:
                            suite.round(number)
                    finally:
                        suite.close()
                except StartError as exc:
                    say(f"note: {name} did not start: {exc}")
                    notes.append(f"{name} did not start: {str(exc).splitlines()[0]}")
                    failed.add(name)
                except Exception as exc:  # keep the other servers' results
                    say(f"ERROR: {name}: {exc!r}")
                    notes.append(f"{name} stopped early ({phase}): {exc!r}")
                    failed.add(name)
                finally:
                    if server is not None:
                        server.stop()
                        say(f"   {name} stopped ({time.monotonic() - t0:.0f} s with it)")
                    shutil.rmtree(workdir, ignore_errors=True)
    finally:
        if args.work_dir is None:
            shutil.rmtree(base, ignore_errors=True)
    results: report.Results = {
        name: {wid: w.as_dict() for wid, w in per.items()} for name, per in collected.items() if per
    }
    ran = list(results)

    info["versions"] = _versions(extra_versions)
    info["elapsed_s"] = round(time.monotonic() - started)
    if busy_at_start and max(busy_at_start) >= 0.1:
        notes.append(
            f"DISTURBED: other processes used {min(busy_at_start):.0%}-{max(busy_at_start):.0%} "
            "of the CPU when the servers started (see the others' CPU column)"
        )
    notes += [
        f"LIST bucket: up to {sizes.list_keys:,} empty objects PUT through S3 by 16 clients "
        f"within {sizes.list_fill_seconds:.0f} s per server (the issue's 1,000,000 would take "
        "far longer through moto); the row's label gives what each server got",
        "Runs interleave: every server does run 1 of every workload (on a fresh start), then "
        "every server run 2, and so on; the LIST phase comes last",
        "Load: bench.loadgen, one asyncio (uvloop) event loop, one HTTP/1.1 keep-alive "
        "connection per client (moto closes it after every response, so there every request "
        "connects anew); LIST and untimed set-up through boto3",
        "Throughput is per client (bytes or ops / time inside requests), summed over "
        "clients; a GET run reads every object of the PUT run before it "
        f"{sizes.get_passes} times, shuffled; every GET body is compared byte for byte with what "
        "was PUT as it arrives; "
        "latency is request start to last body byte (LIST: request sent to reply received, "
        "before boto3 parses it). Peak RSS: VmRSS summed over the server's process tree every "
        "50 ms, max over the runs; PSS the same with shared pages divided among the processes "
        "sharing them (what a tree of forked processes costs; RSS counts shared pages in each "
        "process). CPU ms/op: the server tree's utime+stime over the run / "
        "operations; client CPU ms/op: the load generator thread's over the run / operations.",
        "Every request is signed with SigV4 (Authorization header) and carries the payload's "
        "SHA-256 (computed when the body is made, before the clock starts); Stratum and "
        "radosgw verify the signature, Stratum also the payload hash; moto checks neither.",
    ]
    say("")
    say(report.machine_line(info))
    say(report.versions_line(info))
    say("")
    for line in report.table(results, ran):
        say(line)
    scaled = report.scaling_table(results)
    if scaled:
        say("\nStratum, ops/s by server.workers (16 clients):")
        for line in scaled:
            say(line)
    say("\nTargets (issue 8):")
    for line in report.targets(results):
        say(f"  {line}")
    for line in report.errors(results):
        say(f"  error: {line}")
    if profiler is not None:
        for wid, files in profiler.files.items():
            say(f"\nprofile of Stratum during {wid} ({', '.join(f.name for f in files)}):")
            for line in summary(files):
                say(f"  {line}")
    # A profiled run's numbers are skewed: keep them apart from latest.*
    stem = "profiled" if profiler is not None else "latest"
    written = report.save(args.out, info, results, ran, stem)
    for note in notes:
        if note.startswith("no plot"):
            say(f"note: {note}")
    say(f"\nwrote {', '.join(str(p) for p in written)} ({info['elapsed_s']} s in all)")
    return 0 if ran else 1


def _no_hook(workload: str, server: Server) -> Any:
    return lambda: None


if __name__ == "__main__":
    sys.exit(main())
