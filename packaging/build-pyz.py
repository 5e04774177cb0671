#!/usr/bin/env python3
"""Build ``dist/stratum.pyz``: one file that runs Stratum with nothing but ``python3``.

    ./dev pyz [--python 3.11,3.12,3.13] [--output dist/stratum.pyz] [--from-source zfec]

The zipapp is made with shiv from binary wheels only (``pip download --only-binary=:all:``)
for one architecture (this machine's unless ``--arch``) and several CPython versions at once:
pure-Python files are shared, and each compiled module carries its ABI in its file name
(``_zfec.cpython-312-x86_64-linux-gnu.so``), so one pyz runs on every Python it was built for
(Debian 12 has 3.11, Ubuntu 24.04 3.12, Debian 13 3.13). Wheels are manylinux (glibc) up to
``--glibc`` (2.28 by default: Debian 10, Ubuntu 18.10 and every later release); musl (Alpine)
is not a target.

When a dependency has no binary wheel for a target (zfec on 32-bit ARM, for example) and this
machine has that Python (``python3.X`` on PATH, or under pyenv), its wheel is built from the
sdist with it (``pip wheel --no-binary``, needs a C compiler) and the build says so;
``--from-source zfec`` does that even where a wheel exists. A Python version that can be
neither downloaded nor built for is left out, with a warning.

Downloaded wheels are kept under ``.cache/wheels/<arch>``, wheels built here under
``.cache/wheels/<arch>/built`` (preferred to downloaded ones of the same version): the next
build resolves from there without the network, so it takes seconds and picks the same
versions (delete the folder to pick up new releases).

Compiled modules are stripped of their debug information (``strip --strip-debug``, when
building for this machine's architecture; ``--no-strip`` keeps it): it is most of their size.

The pyz extracts its packages once per build into ``~/.cache/shiv`` (``SHIV_ROOT`` overrides
it; the systemd unit points it at /var/cache/stratum), so only the first start pays for it.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PYTHONS = ("3.11", "3.12", "3.13")
# The function behind the ``stratum`` console script (``stratum.cli:main``), named by its own
# module: shiv first tries "stratum.cli.main" as a module name, and would call the module.
ENTRY_POINT = "stratum.cli.main:main"
SHEBANG = "/usr/bin/env python3"
# ``~`` is expanded when the pyz starts, for the user running it.
SHIV_DEFAULT_ROOT = "~/.cache/shiv"
# Imports that fail on a Python the pyz has no compiled modules for.
COMPILED_PROBES = ("zfec", "lmdb", "crc32c")
# botocore describes every AWS service (~28 MB); Stratum talks S3 (the cold tier), and the
# default credential chain may call STS, SSO and sign-in. The rest stays out of the pyz.
BOTOCORE_SERVICES = ("s3", "sts", "sso", "sso-oidc", "signin")
# The dependencies' own tests and test helpers (paths in site-packages): the pyz ships only what
# runs, and nothing Stratum runs imports these.
TEST_ONLY = (
    "*/test",
    "*/tests",
    "*/test_*.py",
    "*/conftest.py",
    "aiohttp/pytest_plugin.py",
    "multidict/_testcapi.*",
    "uvloop/_testbase.py",
)

PREAMBLE = '''\
"""Runs before Stratum: a clear message on a Python this pyz has no compiled modules for."""

import platform
import sys

BUILT_FOR = {pythons!r}
ARCH = {arch!r}

if sys.version_info[:2] < (3, 11) or "%d.%d" % sys.version_info[:2] not in BUILT_FOR:
    sys.exit(
        "stratum.pyz was built for CPython %s on %s; this is Python %d.%d on %s. "
        "Build one for it with ./dev pyz --python %d.%d"
        % (", ".join(BUILT_FOR), ARCH, *sys.version_info[:2], platform.machine(),
           *sys.version_info[:2])
    )
try:
    import importlib

    for _name in {probes!r}:
        importlib.import_module(_name)
except ImportError as exc:
    sys.exit(
        "stratum.pyz (CPython %s, %s) cannot load its compiled modules here (%s on %s): %s"
        % (", ".join(BUILT_FOR), ARCH, sys.version.split()[0], platform.machine(), exc)
    )
'''


def log(message: str) -> None:
    print(f"[pyz] {message}", file=sys.stderr, flush=True)


def run(cmd: list[str], *, quiet: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd,
        text=True,
        stdout=subprocess.PIPE if quiet else None,
        stderr=subprocess.STDOUT if quiet else None,
        check=False,
    )


def requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return list(project["dependencies"])


def platform_tags(arch: str, glibc: str) -> list[str]:
    """``linux_<arch>`` (wheels built here: preferred), then manylinux tags up to ``glibc``."""
    major, minor = (int(part) for part in glibc.split("."))
    tags = [f"manylinux_{major}_{m}_{arch}" for m in range(minor, 4, -1)]
    legacy = {"manylinux2014": 17, "manylinux2010": 12, "manylinux1": 5}
    tags += [f"{name}_{arch}" for name, m in legacy.items() if m <= minor]
    return [f"linux_{arch}", *tags]


def target_args(python: str, tags: list[str]) -> list[str]:
    args = ["--only-binary=:all:", "--implementation", "cp", "--python-version", python]
    for tag in tags:
        args += ["--platform", tag]
    return args


def local_python(version: str) -> str | None:
    """An interpreter of this version on this machine, for building wheels from source."""
    if "{}.{}".format(*sys.version_info[:2]) == version:
        return sys.executable
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = [shutil.which(f"python{version}")]
    candidates += [str(p) for p in sorted(pyenv.glob(f"{version}.*/bin/python{version}"))]
    for found in filter(None, candidates):
        if run([found, "-c", "pass"]).returncode == 0:  # a pyenv shim may refuse
            return found
    return None


class Build:
    def __init__(self, args: argparse.Namespace) -> None:
        self.arch: str = args.arch
        self.pythons: list[str] = args.python
        self.output: Path = args.output
        self.tags = platform_tags(self.arch, args.glibc)
        self.cache = ROOT / ".cache" / "wheels" / self.arch
        self.built = self.cache / "built"  # wheels built here from sdists
        self.work = Path()  # a temporary directory, while run() runs
        self.reqs = requirements()
        self.from_source: list[str] = []
        self.force_source: list[str] = args.from_source
        # Debug info is most of many wheels' compiled modules (uvloop: 14 MB of 16).
        self.strip = args.strip and self.arch == platform.machine() and bool(shutil.which("strip"))
        self.left_out: list[str] = []

    def pip(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args])

    def install(self, python: str, site: Path, constraints: Path | None) -> bool:
        """Install the requirements for one Python into ``site``, from the wheel cache only."""
        shutil.rmtree(site, ignore_errors=True)
        extra = ["-c", str(constraints)] if constraints else []
        result = self.pip(
            "install",
            "--target",
            str(site),
            "--no-compile",
            "--no-index",
            "--find-links",
            str(self.cache),
            "--find-links",
            str(self.built),
            *target_args(python, self.tags),
            *extra,
            *self.reqs,
        )
        return result.returncode == 0

    def fetch(self, python: str, constraints: Path | None) -> str:
        """Download the wheels one Python needs into the cache; pip's complaint if it can't."""
        extra = ["-c", str(constraints)] if constraints else []
        result = self.pip(
            "download",
            "-q",
            "-d",
            str(self.cache),
            "--find-links",
            str(self.built),
            *target_args(python, self.tags),
            *extra,
            *self.reqs,
        )
        return "" if result.returncode == 0 else result.stdout

    def build_from_source(self, python: str, spec: str, constraints: Path | None) -> bool:
        """Build one requirement's wheel from its sdist with a local CPython ``python``."""
        interpreter = local_python(python)
        if interpreter is None or self.arch != platform.machine():
            return False
        name = re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0]
        before = {p.name for p in self.built.glob("*.whl")}
        extra = ["-c", str(constraints)] if constraints else []
        log(f"CPython {python}: building {spec} from source with {interpreter}")
        # pip --python: the interpreter needs no pip of its own (Debian's python3 has none).
        wheel = [sys.executable, "-m", "pip", "--python", interpreter, "wheel", "-q", "--no-deps"]
        wheel += ["--no-binary", name, "-w", str(self.built), *extra, spec]
        result = run(wheel)
        if result.returncode != 0:
            log(result.stdout[-2000:])
            return False
        made = sorted(p.name for p in self.built.glob("*.whl") if p.name not in before)
        log(f"CPython {python}: built {', '.join(made)}")
        return True

    def site_for(self, python: str, constraints: Path | None) -> Path | None:
        site = self.work / f"site-cp{python.replace('.', '')}"
        for spec in self.force_source:
            if not self.build_from_source(python, spec, constraints):
                return None
        for _ in range(len(self.reqs) + 2):
            if self.install(python, site, constraints):
                return site
            log(f"CPython {python}: fetching wheels")
            complaint = self.fetch(python, constraints)
            if not complaint:
                continue
            # pip names the first requirement it found no binary wheel for: build that one.
            missing = re.search(r"No matching distribution found for (\S+)", complaint)
            if missing is None or not self.build_from_source(python, missing.group(1), constraints):
                log(f"CPython {python}: {complaint.strip()[-1500:]}")
                return None
        return None

    def run(self) -> None:
        with tempfile.TemporaryDirectory(prefix="stratum-pyz-") as work:
            self.work = Path(work)
            self.build()

    def build(self) -> None:
        started = time.monotonic()
        self.cache.mkdir(parents=True, exist_ok=True)
        self.built.mkdir(parents=True, exist_ok=True)
        merged = self.work / "site-packages"
        merged.mkdir()
        constraints: Path | None = None
        included: list[str] = []
        # oldest first: a stable-ABI module is kept from the oldest Python (see merge)
        for python in sorted(self.pythons, key=lambda v: tuple(int(n) for n in v.split("."))):
            site = self.site_for(python, constraints)
            if site is None:
                self.left_out.append(python)
                log(f"CPython {python} left out: its wheels can neither be downloaded nor built")
                continue
            shutil.rmtree(site / "bin", ignore_errors=True)
            self.from_source += [f"{name} (CPython {python})" for name in built_here(site)]
            merge(site, merged)
            included.append(python)
            if constraints is None:
                # Every Python gets the same versions, so shared pure-Python files agree.
                constraints = self.work / "constraints.txt"
                constraints.write_text("".join(f"{pin}\n" for pin in pins(site)))
        if not included:
            raise SystemExit("stratum.pyz: no Python version could be built for")
        prune_botocore(merged)
        prune_tests(merged)
        if self.strip:
            strip_debug_info(merged)
        copy_stratum(merged)
        preamble = self.work / "stratum_pyz_check.py"
        preamble.write_text(
            PREAMBLE.format(pythons=tuple(included), arch=self.arch, probes=COMPILED_PROBES)
        )
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self.output.unlink(missing_ok=True)
        shiv = [sys.executable, "-m", "shiv", "--site-packages", str(merged)]
        shiv += ["--entry-point", ENTRY_POINT, "--output-file", str(self.output)]
        shiv += ["--reproducible", "--compressed", "--python", SHEBANG]
        shiv += ["--root", SHIV_DEFAULT_ROOT, "--preamble", str(preamble)]
        result = run(shiv)
        if result.returncode != 0:
            raise SystemExit(f"shiv failed:\n{result.stdout}")
        size = self.output.stat().st_size
        log(
            f"{self.output.relative_to(ROOT) if self.output.is_relative_to(ROOT) else self.output}"
            f": {size / 1e6:.1f} MB, CPython {', '.join(included)} on {self.arch}, "
            f"built in {time.monotonic() - started:.0f} s"
        )
        for name in self.from_source:
            log(f"from a wheel built here from source: {name}")
        if self.left_out:
            log(f"left out: CPython {', '.join(self.left_out)}")


def built_here(site: Path) -> list[str]:
    """Distributions installed from a wheel built on this machine (tag ``linux_<arch>``)."""
    out = []
    for info in sorted(site.glob("*.dist-info")):
        wheel = info / "WHEEL"
        if wheel.exists() and "-linux_" in wheel.read_text():
            out.append(info.name[: -len(".dist-info")])
    return out


def pins(site: Path) -> list[str]:
    out = []
    for info in sorted(site.glob("*.dist-info")):
        name, _, version = info.name[: -len(".dist-info")].rpartition("-")
        out.append(f"{name}=={version}")
    return out


def merge(site: Path, merged: Path) -> None:
    """Copy one Python's site-packages over the shared one.

    Compiled modules differ by file name; metadata (``*.dist-info``) may differ in its wheel
    tags and is kept from the first Python; so is a stable-ABI module (``*.abi3.so``; awscrt's
    wheels for different Pythons hold different builds of one), since the oldest Python's
    build loads on every later one; any other file must be identical.
    """
    for path in sorted(site.rglob("*")):
        if path.is_dir():
            continue
        rel = path.relative_to(site)
        dest = merged / rel
        if dest.exists():
            if rel.parts[0].endswith(".dist-info") or ".abi3." in rel.name:
                continue
            if filecmp.cmp(path, dest, shallow=False):
                continue
            raise SystemExit(f"stratum.pyz: {rel} differs between Python versions")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)


def prune_botocore(merged: Path) -> None:
    data = merged / "botocore" / "data"
    for service in data.iterdir() if data.is_dir() else ():
        if service.is_dir() and service.name not in BOTOCORE_SERVICES:
            shutil.rmtree(service)


def prune_tests(merged: Path) -> None:
    for pattern in TEST_ONLY:
        for path in merged.glob(pattern):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()


def strip_debug_info(merged: Path) -> None:
    """``strip --strip-debug`` every compiled module: symbols stay, debug sections go."""
    modules = sorted(str(p) for p in merged.rglob("*.so*") if p.is_file())
    if modules:
        result = run(["strip", "--strip-debug", *modules])
        if result.returncode != 0:
            raise SystemExit(f"strip failed:\n{result.stdout}")


def copy_stratum(merged: Path) -> None:
    """Stratum itself is pure Python: its package, as it is in this tree."""
    source = ROOT / "stratum"
    for path in sorted(source.rglob("*")):
        if path.is_dir() or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        dest = merged / "stratum" / path.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--python",
        type=lambda text: [v.strip() for v in text.split(",") if v.strip()],
        default=os.environ.get("STRATUM_PYZ_PYTHONS", ",".join(DEFAULT_PYTHONS)),
        help="CPython versions to include, comma-separated (default: %(default)s)",
    )
    parser.add_argument("--arch", default=platform.machine(), help="default: this machine's")
    parser.add_argument("--glibc", default="2.28", help="newest manylinux glibc to accept")
    parser.add_argument("--output", type=Path, default=ROOT / "dist" / "stratum.pyz")
    parser.add_argument(
        "--from-source",
        type=lambda text: [v.strip() for v in text.split(",") if v.strip()],
        default=[],
        metavar="REQ[,REQ]",
        help="build these from their sdist even where a wheel exists (e.g. zfec)",
    )
    parser.add_argument(
        "--no-strip",
        dest="strip",
        action="store_false",
        help="keep the debug info of compiled modules (stripped when building for this machine)",
    )
    args = parser.parse_args(argv)
    args.output = args.output.absolute()
    bad = [v for v in args.python if tuple(int(p) for p in v.split(".")) < (3, 11)]
    if bad:
        parser.error(f"Stratum needs CPython >= 3.11, not {', '.join(bad)}")
    return args


if __name__ == "__main__":
    Build(parse_args()).run()
