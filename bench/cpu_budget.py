"""``python -m bench.cpu_budget``: what a Raspberry Pi 4 needs to move large objects at gigabit.

    python -m bench.cpu_budget [--put-ns NS] [--get-ns NS] [--out bench/results/pi4-budget.md]

A large PUT costs the server a fixed set of passes over every byte (MD5 for the ETag, SHA-256
when the client signs the payload, zfec's 4+2 parity, CRC-32C of every shard block, the copies
in and out of the kernel); a GET fewer (CRC-32C of the blocks read, the copies). This times
each pass on one core of this machine (the same Python calls the server makes, 1 MiB at a
time), and sets beside it the Pi 4's (Cortex-A72, no ARMv8 crypto extensions) from published
figures where there are any, or this machine's scaled by a published ratio where there are
not, each row saying which (:data:`PI4`). From the server's whole CPU per byte measured by
``python -m bench`` on this machine (``--put-ns``, ``--get-ns``; the defaults are the
latest run's) it then estimates the Pi's, and the cores gigabit Ethernet (117 MB/s of payload)
needs, against the four the Pi has and one stream's limit (the server hashes and encodes a
stripe's passes in parallel, one thread each: a stream goes as fast as its slowest pass).

Emulated aarch64 (qemu) is not a timing, so nothing here runs under it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.procstat import machine
from stratum.block.codec import Codec

MiB = 1 << 20
GIGABIT = 117e6  # bytes/s of payload through gigabit Ethernet (TCP/IP over 1500-byte frames)
PI4_CORES = 4
# Server CPU per byte, the latest `python -m bench` on this machine (bench/results/latest.md,
# "Large objects: server CPU per byte"): 64 MiB PUT (16 clients) and GET (4 clients).
LATEST_PUT_NS, LATEST_GET_NS = 4.48, 0.66


@dataclass(frozen=True)
class Published:
    mb_per_s: tuple[float, float]  # low, high
    how: str  # where the figure comes from


# Published single-core figures for a Raspberry Pi 4 (1.5-1.8 GHz Cortex-A72). MB = 10^6 B.
PI4: dict[str, Published] = {
    "sha256": Published(
        (100.5, 135.0),
        "published: OpenSSL 3.4.1 on a Pi 4, 64 MiB buffer (lelegard/shabench, "
        "results/arm-rpi4-cortex-a72-linux.txt); OpenZFS sha256-generic on a Pi 4, "
        "64 KiB-1 MiB (github.com/openzfs/zfs/pull/12918)",
    ),
    "md5": Published(
        (100.5 * 18.9 / 9.8, 135.0 * 18.9 / 9.8),
        "derived: the SHA-256 figures times the Pi 4's md5sum / sha256sum speed ratio "
        "(9.8 s against 18.9 s on one file, github.com/BLAKE3-team/BLAKE3/issues/310)",
    ),
    "copy": Published(
        (2241.5, 2821.5),
        "published: tinymembench's memcpy on Pi 4s at 1.8 GHz, six runs "
        "(ThomasKaiser/sbc-bench results 3FlD, 3EhG, 3F9C, 3Gia, 3InF, 3OBF)",
    ),
    "crc32c": Published(
        (2869.9, 2869.9),
        "published for a Cortex-A53 at 1.5 GHz with the ARMv8 CRC instructions, which the "
        "A72 has too (github.com/bitcoin/bitcoin/pull/12968); none found for an A72",
    ),
}
# No published zfec (or other Reed-Solomon library) figure for a Pi 4 or an A72 was found:
# its table lookups are scalar integer code like MD5's, so it is scaled by MD5's slowdown.
ZFEC_HOW = "estimated: this machine's figure divided by MD5's slowdown (no published figure)"


def _time(fn: Callable[[], object], nbytes: int, seconds: float = 1.0) -> float:
    """ns per byte of ``fn`` on one core (best of three runs of about ``seconds`` / 3)."""
    best = float("inf")
    for _ in range(3):
        runs, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds / 3:
            fn()
            runs += 1
        best = min(best, elapsed / (runs * nbytes) * 1e9)
    return best


def _copy_ns() -> float:
    """memcpy between two 64 MiB buffers (far beyond the caches, as tinymembench copies)."""
    size = 64 * MiB
    source, target = os.urandom(size), bytearray(size)
    view = memoryview(target)

    def copy() -> None:
        view[:] = source

    return _time(copy, size, seconds=2.0)


def measure_here() -> dict[str, float]:
    """ns/B on one core of this machine, for each pass a large PUT or GET makes."""
    data = os.urandom(MiB)
    codec = Codec(4, 2)
    blocks = [bytes(b) for b in codec.encode(data)]
    kept = {i: blocks[i] for i in (2, 3, 4, 5)}  # two data blocks lost
    here = {
        "md5": _time(lambda: hashlib.md5(data).digest(), MiB),
        "sha256": _time(lambda: hashlib.sha256(data).digest(), MiB),
        "zfec encode": _time(lambda: codec.encode(data), MiB),
        "zfec decode": _time(lambda: codec.decode(kept), MiB),
        "copy": _copy_ns(),
    }
    try:
        from crc32c import crc32c

        here["crc32c"] = _time(lambda: crc32c(data), MiB)
    except ImportError:  # the server then writes CRC-32 (shard format 1)
        pass
    return here


def _pi_ns(name: str, here: dict[str, float]) -> tuple[float, float, str]:
    """(low, high) ns/B on a Pi 4 for a pass, and how that was found."""
    if name in PI4:
        low_mb, high_mb = PI4[name].mb_per_s
        return 1e3 / high_mb, 1e3 / low_mb, PI4[name].how
    md5_low, md5_high, _ = _pi_ns("md5", here)
    return here[name] * md5_low / here["md5"], here[name] * md5_high / here["md5"], ZFEC_HOW


def report(here: dict[str, float], put_ns: float, get_ns: float) -> list[str]:
    m = machine()
    lines = [
        "# A Raspberry Pi 4's CPU budget for large objects at gigabit",
        "",
        f"`python -m bench.cpu_budget`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"on {m['cpu']}, "
        f"{m['cores']} cores (one used); the Pi 4's figures are published or derived, as each "
        "row says. ns/B: nanoseconds of one core per byte of object.",
        "",
        "| pass | this machine ns/B | Pi 4 ns/B | Pi 4 / this | Pi 4 from |",
        "|---|---:|---:|---:|---|",
    ]
    pi: dict[str, tuple[float, float]] = {}
    for name, ns in here.items():
        low, high, how = _pi_ns(name, here)
        pi[name] = (low, high)
        lines.append(
            f"| {name} | {ns:.2f} | {low:.1f}-{high:.1f} "
            f"| {low / ns:.0f}-{high / ns:.0f}x | {how} |"
        )
    # What the Pi's whole server would cost per byte: this machine's, with each pass the
    # table names scaled by its own slowdown and the rest (Python, the kernel's copies and
    # system calls, the event loop) by a slowdown between MD5's (scalar code) and memory
    # copies' (bandwidth), whichever is less to whichever is more.
    slowdowns = [pi[name][end] / here[name] for name in ("md5", "copy") for end in (0, 1)]
    copy_low, copy_high = min(slowdowns), max(slowdowns)
    # Passes over every byte of a 4+2 PUT: MD5, SHA-256 (signed payloads only), zfec encode,
    # CRC-32C of the 6 blocks (1.5 bytes per object byte); a GET: CRC-32C of the 4 data blocks.
    put_parts = {"md5": 1.0, "zfec encode": 1.0, "crc32c": 1.5}
    columns = [  # (parts, this machine's whole server CPU per byte, parts run in parallel)
        ({**put_parts, "sha256": 1.0}, put_ns, True),
        (put_parts, put_ns - here["sha256"], True),  # the bench's PUTs sign their payloads
        ({"crc32c": 1.0}, get_ns, False),  # a GET's work is one thread's: the event loop's
    ]
    out = ["", "| | PUT, signed payload | PUT, unsigned payload | GET |", "|---|---:|---:|---:|"]
    rows: dict[str, list[str]] = {k: [] for k in ("here", "pi", "cores", "fits", "stream")}
    for parts, total, parallel in columns:
        known_here = sum(here.get(p, 0.0) * n for p, n in parts.items())
        rest = max(0.0, total - known_here)
        low = sum(pi[p][0] * n for p, n in parts.items() if p in pi) + rest * copy_low
        high = sum(pi[p][1] * n for p, n in parts.items() if p in pi) + rest * copy_high
        cores = (GIGABIT * low / 1e9, GIGABIT * high / 1e9)
        # A PUT's passes run in parallel, one thread each: a stream goes as fast as the
        # slowest; a GET's all run on the event loop's thread.
        slowest = max(pi[p][1] for p in parts if p in pi) if parallel else high
        rows["here"].append(f"{total:.2f}")
        rows["pi"].append(f"{low:.1f}-{high:.1f}")
        rows["cores"].append(f"{cores[0]:.1f}-{cores[1]:.1f} of {PI4_CORES}")
        rows["fits"].append("yes" if cores[1] <= PI4_CORES else f"no ({cores[1]:.1f})")
        rows["stream"].append(f"{1e3 / slowest:.0f} MB/s")
    names = {
        "here": "server CPU, this machine (ns/B)",
        "pi": "server CPU, Pi 4 estimate (ns/B)",
        "cores": "Pi 4 cores at 117 MB/s",
        "fits": "fits in the Pi 4's cores",
        "stream": "one stream at most (PUT: its slowest pass; GET: all of it)",
    }
    out += [f"| {names[k]} | " + " | ".join(v) + " |" for k, v in rows.items()]
    return (
        lines
        + out
        + [
            "",
            f"This machine's server CPU per byte: `python -m bench`'s 64 MiB PUT (16 clients) "
            f"{put_ns:.2f} ns/B and GET (4 clients) {get_ns:.2f} ns/B, its PUTs with signed "
            "payloads (the unsigned column takes this machine's SHA-256 away). On the Pi each "
            "named pass costs its own row's figure and the rest of the server (Python, system "
            "calls, the kernel's copies) this machine's rest times a slowdown between MD5's and "
            "memory copies' (the lesser for the low end, the greater for the high).",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--put-ns", type=float, default=LATEST_PUT_NS)
    parser.add_argument("--get-ns", type=float, default=LATEST_GET_NS)
    parser.add_argument("--out", type=Path, default=Path("bench/results/pi4-budget.md"))
    args = parser.parse_args()
    lines = report(measure_here(), args.put_ns, args.get_ns)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
