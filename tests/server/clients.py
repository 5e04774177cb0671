"""Driving the real S3 command-line clients (awscli, rclone, s3cmd) against a test server.

Each client gets a private home directory and a config file written here, so nothing from the
user's ``~/.aws``, ``~/.config/rclone`` or ``~/.s3cfg`` (nor stray ``AWS_*``/``RCLONE_*``
variables) leaks into a test. Retries are turned off or down: a server error must show up as
a failed command, not be papered over by the client retrying.

A command that fails (or times out) fails the test with the command line, its output and the
server log lines written while it ran, which is what a bug report needs.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import RunningServer

TOOL_TIMEOUT = 60.0
MiB = 1024 * 1024

# Where CI gets each tool (see ./dev setup): a missing tool is a failure, never a skip.
_INSTALL_HINT = {
    "aws": "pip package awscli (the `test` extra in pyproject.toml; ./dev setup installs it)",
    "s3cmd": "pip package s3cmd (the `test` extra in pyproject.toml; ./dev setup installs it)",
    "rclone": "Debian package rclone (./dev setup installs it with apt-get)",
}

# Variables that would point a client at another endpoint, profile or config.
_LEAKY_PREFIXES = ("AWS_", "RCLONE_", "S3CMD_", "BOTO_")


def find_tool(name: str) -> str:
    """The executable ``name``: next to this Python (the venv's bin) first, then ``PATH``."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} is not installed (looked in {beside.parent} and PATH); "
            f"it comes from the {_INSTALL_HINT.get(name, name)}",
            pytrace=False,
        )
    return found


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    server: RunningServer | None = None
    log_mark: int = 0  # len(server.output) when the command started

    @property
    def server_log(self) -> list[str]:
        """Server log lines written since the command started (once the log has settled)."""
        if self.server is None:
            return []
        _settle(self.server.output)
        return self.server.output[self.log_mark :]

    def operations(self) -> list[str]:
        """S3 operation names from the server's access log lines written during the command."""
        marker = "stratum.access:"
        return [ln.split(marker, 1)[1].split()[1] for ln in self.server_log if marker in ln]

    def describe(self) -> str:
        log = "".join(self.server_log[-40:]) or "(nothing)\n"
        return (
            f"command: {' '.join(self.args)}\n"
            f"exit code: {self.returncode}\n"
            f"--- stdout ---\n{_tail(self.stdout)}\n"
            f"--- stderr ---\n{_tail(self.stderr)}\n"
            f"--- server log during the command ---\n{log}"
        )


def _settle(output: list[str], quiet: float = 0.1, limit: float = 1.0) -> None:
    """Wait until the drain thread has added no line for ``quiet`` seconds: the server may log a
    request after the client already has its response."""
    deadline = time.monotonic() + limit
    seen = len(output)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        if len(output) == seen:
            return
        seen = len(output)


def _tail(text: str, limit: int = 6000) -> str:
    return text if len(text) <= limit else "...\n" + text[-limit:]


def run(
    args: list[str],
    *,
    env: dict[str, str],
    server: RunningServer | None = None,
    check: bool = True,
    timeout: float = TOOL_TIMEOUT,
    cwd: Path | None = None,
) -> Result:
    """Run a client command; with ``check`` a non-zero exit fails the test with details."""
    mark = len(server.output) if server is not None else 0
    try:
        proc = subprocess.run(
            args,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        code, out, err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        code = -1
        out = _text(exc.stdout)
        err = _text(exc.stderr) + f"\n(timed out after {timeout:.0f} s)"
    result = Result(list(args), code, out, err, server, mark)
    if check and code != 0:
        pytest.fail(result.describe(), pytrace=False)
    return result


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode(errors="replace")


def isolated_env(server: RunningServer, home: Path) -> dict[str, str]:
    """The environment of ``server.env()`` minus anything that could redirect a client."""
    base = server.env()
    env = {k: v for k, v in base.items() if not k.startswith(_LEAKY_PREFIXES)}
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        env[key] = base[key]
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        AWS_EC2_METADATA_DISABLED="true",
        LC_ALL="C.UTF-8",
        LANG="C.UTF-8",
        PYTHONIOENCODING="utf-8",
    )
    return env


class AwsCli:
    """``aws`` with ``--endpoint-url`` at the server, env credentials and empty config files."""

    def __init__(self, server: RunningServer, home: Path) -> None:
        self.server = server
        self.exe = find_tool("aws")
        self.env = isolated_env(server, home)
        config = home / "aws-config"
        credentials = home / "aws-credentials"
        config.write_text("")
        credentials.write_text("")
        self.env.update(
            AWS_CONFIG_FILE=str(config),
            AWS_SHARED_CREDENTIALS_FILE=str(credentials),
            AWS_MAX_ATTEMPTS="1",
            AWS_RETRY_MODE="standard",
        )

    def __call__(self, *args: str | Path, check: bool = True, cwd: Path | None = None) -> Result:
        cmd = [self.exe, "--endpoint-url", self.server.endpoint, *map(str, args)]
        return run(cmd, env=self.env, server=self.server, check=check, cwd=cwd)

    def api(self, operation: str, *args: str | Path) -> Any:
        """``aws s3api OPERATION ARGS --output json``, parsed (``None`` for an empty output)."""
        result = self("s3api", operation, *args, "--output", "json")
        text = result.stdout.strip()
        return json.loads(text) if text else None


RCLONE_V1 = "stratum"
RCLONE_V2 = "stratumv2"
RCLONE_V2_URL = "stratumv2url"


class Rclone:
    """``rclone`` with a private config holding two remotes on the server.

    ``stratum:`` is what a user gets with ``provider = Other`` (ListObjects v1, rclone's default
    for generic S3, keys sent raw in the XML); ``stratumv2:`` is the same with
    ``list_version = 2``; ``stratumv2url:`` adds ``list_url_encode = true`` (``encoding-type=url``,
    what the AWS SDKs ask for).
    """

    def __init__(self, server: RunningServer, home: Path) -> None:
        self.server = server
        self.exe = find_tool("rclone")
        self.env = isolated_env(server, home)  # also drops AWS_CA_BUNDLE (rclone 1.60 chokes)
        self.config = home / "rclone.conf"
        common = (
            "type = s3\n"
            "provider = Other\n"
            "env_auth = false\n"
            f"access_key_id = {server.access_key}\n"
            f"secret_access_key = {server.secret_key}\n"
            f"endpoint = {server.endpoint}\n"
            "region = us-east-1\n"
        )
        self.config.write_text(
            f"[{RCLONE_V1}]\n{common}\n"
            f"[{RCLONE_V2}]\n{common}list_version = 2\n\n"
            f"[{RCLONE_V2_URL}]\n{common}list_version = 2\nlist_url_encode = true\n"
        )

    def __call__(self, *args: str | Path, check: bool = True) -> Result:
        cmd = [
            self.exe,
            "--config",
            str(self.config),
            "--retries",
            "1",
            "--low-level-retries",
            "1",
            "--contimeout",
            "10s",
            "--timeout",
            "30s",
            *map(str, args),
        ]
        return run(cmd, env=self.env, server=self.server, check=check)


class S3cmd:
    """``s3cmd -c CONFIG`` with path-style addressing on the server over plain HTTP, SigV4."""

    def __init__(self, server: RunningServer, home: Path) -> None:
        self.server = server
        self.exe = find_tool("s3cmd")
        self.env = isolated_env(server, home)
        hostport = server.endpoint.removeprefix("http://")
        self.config = home / "s3cfg"
        self.config.write_text(
            "[default]\n"
            f"access_key = {server.access_key}\n"
            f"secret_key = {server.secret_key}\n"
            f"host_base = {hostport}\n"
            f"host_bucket = {hostport}\n"
            "use_https = False\n"
            "signature_v2 = False\n"
            "bucket_location = us-east-1\n"
            "progress_meter = False\n"
            "max_retries = 0\n"
            "socket_timeout = 30\n"
        )

    def __call__(self, *args: str | Path, check: bool = True) -> Result:
        cmd = [self.exe, "-c", str(self.config), *map(str, args)]
        return run(cmd, env=self.env, server=self.server, check=check)


# ---- local file trees -------------------------------------------------------------------

# Nested directories, spaces, unicode (composed and not), characters that need escaping in a
# URL or a query string, an empty file and one big enough to need several reads.
TREE_NAMES = (
    "readme.txt",
    "empty.dat",
    "dir one/file with spaces.txt",
    "dir one/sub dir/deeper/deepest.bin",
    "ünïcödé/日本語のファイル.txt",
    "ünïcödé/emoji 🎉 party.txt",
    "symbols/plus+sign & amp=equals.txt",
    "symbols/100% sure (really)!.txt",
    "symbols/tilde~hash#semi;comma,.txt",
    "big/one-mebibyte.bin",
)


def tree_content(name: str, seed: str = "") -> bytes:
    """Deterministic content for ``name``: empty, 1 MiB pseudo-random, or a few lines."""
    if name.startswith("empty"):
        return b""
    digest = hashlib.sha256((seed + name).encode()).digest()
    if name.endswith("one-mebibyte.bin"):
        return (digest * (MiB // len(digest) + 1))[:MiB] + digest[:7]
    return f"{name}\n{seed}\n".encode() + digest * 3


def make_tree(root: Path, names: tuple[str, ...] = TREE_NAMES, seed: str = "") -> dict[str, bytes]:
    """Write files under ``root``; return their contents by relative (``/``-separated) path."""
    files: dict[str, bytes] = {}
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = tree_content(name, seed)
        path.write_bytes(data)
        files[name] = data
    return files


def read_tree(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` by relative (``/``-separated) path."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def assert_same_tree(actual: dict[str, bytes], expected: dict[str, bytes]) -> None:
    """Same names and byte-identical contents, with a readable difference when not."""
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    differ = sorted(k for k in set(actual) & set(expected) if actual[k] != expected[k])
    assert not (missing or extra or differ), (
        f"trees differ: missing={missing} extra={extra} different contents={differ}"
    )


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def write_random(path: Path, size: int, seed: int = 0) -> bytes:
    """``size`` reproducible pseudo-random bytes written to ``path``."""
    data = random.Random(seed).randbytes(size)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def unique_bucket(prefix: str) -> str:
    """A bucket name no other test (or earlier run on the same server) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
