"""Shipping: the zipapp runs on a python3 with nothing installed, installs as a systemd service.

The pyz is built once for the module (``packaging/build-pyz.py``, from the wheel cache under
``.cache/wheels``), or taken from ``STRATUM_PYZ``. Each CPython it is built for that this
machine has runs it from a bare venv (``--without-pip``: the standard library only) with
``-I`` (no user site, no PYTHON* variables), and the core S3 flows go through it.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stratum.cli.install import UNIT
from stratum.config import load_config
from tests.server.conftest import RunningServer, start_server

ROOT = Path(__file__).resolve().parents[2]
UNIT_FILE = ROOT / "systemd" / "stratum.service"
PYTHONS = ("3.11", "3.12", "3.13")
THIS_PYTHON = "{}.{}".format(*sys.version_info[:2])
MiB = 1 << 20


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("STRATUM_PYZ")
    if given:
        return Path(given).resolve()
    out = tmp_path_factory.mktemp("pyz") / "stratum.pyz"
    started = time.monotonic()
    build = [sys.executable, str(ROOT / "packaging" / "build-pyz.py"), "--output", str(out)]
    result = subprocess.run(build, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    print(f"\nbuilt {out.stat().st_size / 1e6:.1f} MB in {time.monotonic() - started:.0f} s")
    return out


def interpreter(version: str) -> str | None:
    """The real executable of CPython ``version`` on this machine, if there is one."""
    if version == THIS_PYTHON:
        return str(getattr(sys, "_base_executable", sys.executable))
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = [shutil.which(f"python{version}")]
    candidates += [str(p) for p in sorted(pyenv.glob(f"{version}.*/bin/python{version}"))]
    for found in filter(None, candidates):
        probe = subprocess.run(
            [found, "-c", "import sys; print(sys.executable)"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0:  # (a pyenv shim refuses a version not selected)
            return probe.stdout.strip()
    return None


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Per CPython version found here: the python of a venv holding nothing but stdlib."""
    made: dict[str, Path] = {}
    base = tmp_path_factory.mktemp("bare")
    for version in PYTHONS:
        exe = interpreter(version)
        if exe is None:
            continue
        venv = base / f"py{version}"
        subprocess.run([exe, "-m", "venv", "--without-pip", str(venv)], check=True)
        made[version] = venv / "bin" / "python"
    yield made


def bare_python(bare: dict[str, Path], version: str) -> Path:
    if version not in bare:
        assert version != THIS_PYTHON
        pytest.skip(f"no CPython {version} on this machine")
    return bare[version]


def start_pyz(
    python: Path, pyz: Path, data: Path, shiv_root: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[RunningServer, float]:
    """Start ``python -I stratum.pyz serve``; returns it and the seconds until it served."""
    monkeypatch.setenv("STRATUM_TEST_COMMAND", shlex.join([str(python), "-I", str(pyz)]))
    started = time.monotonic()
    server = start_server(data, env={"SHIV_ROOT": str(shiv_root)}, timeout=120)
    return server, time.monotonic() - started


def loaded_files(pid: int) -> set[str]:
    with open(f"/proc/{pid}/maps") as maps:
        return {line.split(maxsplit=5)[5].strip() for line in maps if len(line.split()) == 6}


@pytest.mark.parametrize("version", PYTHONS)
def test_core_flows_on_a_bare_python(
    pyz: Path,
    bare: dict[str, Path],
    version: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    python = bare_python(bare, version)
    isolated = subprocess.run([python, "-I", "-c", "import aiohttp"], capture_output=True)
    assert isolated.returncode != 0, "the bare python must not find the project's packages"
    shiv_root = tmp_path / "shiv"
    data = tmp_path / "data"

    server, first = start_pyz(python, pyz, data, shiv_root, monkeypatch)
    try:
        files = loaded_files(server.process.pid)
        # Every package comes from the pyz's unpacked site-packages, none from a venv.
        foreign = [f for f in files if "-packages/" in f and not f.startswith(str(shiv_root))]
        assert not foreign and not [f for f in files if str(ROOT / ".venv") in f]
        assert [f for f in files if f.startswith(str(shiv_root)) and "/zfec/" in f]
        s3 = server.client()
        s3.create_bucket(Bucket="pyz")
        small, large = os.urandom(4096), os.urandom(3 * MiB + 17)  # segments; erasure coded
        s3.put_object(Bucket="pyz", Key="small", Body=small)
        s3.put_object(Bucket="pyz", Key="dir/large", Body=large)
        upload = s3.create_multipart_upload(Bucket="pyz", Key="multi")["UploadId"]
        parts = []
        for number, body in enumerate((os.urandom(5 * MiB), os.urandom(MiB)), start=1):
            etag = s3.upload_part(
                Bucket="pyz", Key="multi", UploadId=upload, PartNumber=number, Body=body
            )["ETag"]
            parts.append(({"PartNumber": number, "ETag": etag}, body))
        s3.complete_multipart_upload(
            Bucket="pyz",
            Key="multi",
            UploadId=upload,
            MultipartUpload={"Parts": [p for p, _ in parts]},
        )
        assert s3.get_object(Bucket="pyz", Key="small")["Body"].read() == small
        assert s3.get_object(Bucket="pyz", Key="dir/large")["Body"].read() == large
        multi = s3.get_object(Bucket="pyz", Key="multi")["Body"].read()
        assert hashlib.md5(multi).digest() == hashlib.md5(b"".join(b for _, b in parts)).digest()
        listed = s3.list_objects_v2(Bucket="pyz")
        assert [o["Key"] for o in listed["Contents"]] == ["dir/large", "multi", "small"]
        s3.delete_object(Bucket="pyz", Key="small")
    finally:
        assert server.stop() == 0, "".join(server.output[-30:])
    extracted = list(shiv_root.iterdir())

    server, second = start_pyz(python, pyz, data, shiv_root, monkeypatch)
    try:
        s3 = server.client()
        assert s3.get_object(Bucket="pyz", Key="dir/large")["Body"].read() == large
        assert [o["Key"] for o in s3.list_objects_v2(Bucket="pyz")["Contents"]] == [
            "dir/large",
            "multi",
        ]
    finally:
        assert server.stop() == 0, "".join(server.output[-30:])
    assert list(shiv_root.iterdir()) == extracted  # unpacked once, on the first start
    print(f"\nCPython {version}: first start {first:.2f} s, second {second:.2f} s")


MDWE_WRAPPER = """\
import ctypes, os, sys

libc = ctypes.CDLL(None, use_errno=True)
PR_SET_MDWE, PR_GET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 66, 1
if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
    sys.exit(f"no PR_SET_MDWE: {os.strerror(ctypes.get_errno())}")
os.execv(sys.argv[1], sys.argv[1:])
"""
# Under the wrapper: the flag is still set after exec, and W+X memory is refused.
MDWE_PROBE = """\
import ctypes, mmap

print(ctypes.CDLL(None).prctl(66, 0, 0, 0, 0))
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    print("allowed")
except OSError:
    print("refused")
"""


def test_serves_without_writable_executable_memory(
    pyz: Path, bare: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unit sets MemoryDenyWriteExecute=yes; Linux >= 6.3 refuses the same to a process
    (PR_SET_MDWE, kept across exec): the server, its event loop and codecs must not care."""
    python = bare[THIS_PYTHON]
    wrapper = tmp_path / "mdwe.py"
    wrapper.write_text(MDWE_WRAPPER)
    probe = subprocess.run(
        [python, "-I", wrapper, python, "-c", MDWE_PROBE],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0 or probe.stdout.split() != ["1", "refused"]:
        pytest.skip(f"this kernel cannot deny W+X memory to a process: {probe.stderr.strip()}")
    command = [str(python), "-I", str(wrapper), str(python), "-I", str(pyz)]
    monkeypatch.setenv("STRATUM_TEST_COMMAND", shlex.join(command))
    server = start_server(tmp_path / "data", env={"SHIV_ROOT": str(tmp_path / "shiv")})
    try:
        s3 = server.client()
        s3.create_bucket(Bucket="mdwe")
        large = os.urandom(3 * MiB)
        s3.put_object(Bucket="mdwe", Key="large", Body=large)
        s3.put_object(Bucket="mdwe", Key="small", Body=b"small")
        assert s3.get_object(Bucket="mdwe", Key="large")["Body"].read() == large
        assert s3.get_object(Bucket="mdwe", Key="small")["Body"].read() == b"small"
    finally:
        assert server.stop() == 0, "".join(server.output[-30:])


def test_a_python_it_was_not_built_for_is_told_so(pyz: Path) -> None:
    python = interpreter("3.10")
    if python is None:
        pytest.skip("no CPython 3.10 on this machine")
    result = subprocess.run(
        [python, "-I", str(pyz), "--version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "stratum.pyz was built for CPython 3.11" in result.stderr


def test_install_into_a_staging_root(pyz: Path, bare: dict[str, Path], tmp_path: Path) -> None:
    python = bare[THIS_PYTHON]
    root = tmp_path / "root"
    env = {**os.environ, "SHIV_ROOT": str(tmp_path / "shiv")}

    def install(*extra: str) -> str:
        cmd = [str(python), "-I", str(pyz), "install", "--root", str(root), *extra]
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    install("--no-start")
    installed = root / "usr/local/bin/stratum.pyz"
    assert installed.read_bytes() == pyz.read_bytes()
    assert stat.S_IMODE(installed.stat().st_mode) == 0o755
    config_file = root / "etc/stratum/stratum.toml"
    assert load_config(config_file).storage.data_dir == Path("/var/lib/stratum")
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o640
    assert stat.S_IMODE((root / "etc/stratum/stratum.env").stat().st_mode) == 0o600
    assert (root / "etc/systemd/system/stratum.service").read_text() == UNIT_FILE.read_text()
    assert "u stratum " in (root / "etc/sysusers.d/stratum.conf").read_text()
    assert (
        "d /var/lib/stratum 0700 stratum stratum"
        in (root / "etc/tmpfiles.d/stratum.conf").read_text()
    )
    data = root / "var/lib/stratum"
    assert data.is_dir() and stat.S_IMODE(data.stat().st_mode) == 0o700
    wants = root / "etc/systemd/system/multi-user.target.wants/stratum.service"
    assert not wants.exists() and not wants.is_symlink()

    # Again, enabling it: the operator's configuration is kept.
    config_file.write_text(config_file.read_text() + "# edited\n")
    out = install()
    assert config_file.read_text().endswith("# edited\n")
    assert f"kept       {config_file}" in out
    assert os.readlink(wants) == "/etc/systemd/system/stratum.service"


def test_install_needs_the_zipapp(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stratum", "install", "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and "--pyz" in result.stderr
    assert not list(tmp_path.iterdir())


def test_unit_file_is_the_one_install_writes() -> None:
    assert UNIT_FILE.read_text() == UNIT


def test_unit_file_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: install systemd (./dev setup does)"
    # verify wants ExecStart's program to exist: the same unit, pointing at a stand-in.
    binary = tmp_path / "stratum.pyz"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    unit = tmp_path / "stratum.service"
    text = UNIT_FILE.read_text()
    assert text.count("/usr/local/bin/stratum.pyz serve") == 1
    unit.write_text(text.replace("/usr/local/bin/stratum.pyz", str(binary)))
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # unknown keys are only warned about
