"""Every command in README.md runs as written, against a real server.

The convention for README authors:

- Every fenced block names its language. Blocks in ``sh``, ``console``, ``python`` and ``ini``
  are run here, in the order they appear, against one ``stratum serve`` started as the quick
  start starts it (a fresh ``./stratum-data``, generated keys), on a free port of the
  loopback address, as the default does. Other languages (``text`` for output and layouts,
  ``toml`` for configuration, which tests/unit/test_docs.py loads) are not run.
- A runnable block that cannot run here is marked on the line right above its fence with
  ``<!-- not-tested: REASON -->``, REASON one of :data:`REASONS`.
- An ``ini`` block is a file: the line above its fence says where it goes,
  ``<!-- file: ~/.s3cfg -->``; it is written there before the blocks after it run.
- Write the endpoint as ``127.0.0.1:9000`` and keys as ``...`` (``AWS_ACCESS_KEY_ID=...``,
  ``access_key = ...``, ``aws_secret_access_key="..."``): they are replaced with the server's
  address and keys. ``stratum`` is the command under test (this checkout, or
  ``STRATUM_TEST_COMMAND``).
- Each ``sh`` block runs in a fresh ``bash -eu -o pipefail`` in the directory the server was
  started from, with a private ``HOME`` holding ``~/Pictures`` and ``~/Documents``, and
  nothing from the machine's ``AWS_*``, ``RCLONE_*``, ``S3CMD_*``, ``RESTIC_*`` or
  ``STRATUM_*`` variables; a ``console`` block runs its ``$ `` lines the same way.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.server.clients import run
from tests.server.conftest import RunningServer, start_server, stratum_command

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
RUNNABLE = frozenset({"sh", "console", "python", "ini"})
NOT_RUN = frozenset({"text", "toml"})
REASONS = {
    "hardware": "needs a machine of its own: root, systemd, real disks, a Raspberry Pi",
    "network": "needs the internet or another machine on the network",
    "test-command": "runs or builds what this suite itself runs (./dev test, ./dev serve, "
    "./dev pyz, .ci/run)",
}
MARK = re.compile(r"^<!--\s*(not-tested|file):\s*(.*?)\s*-->$")
FENCE = re.compile(r"^```(\S*)\s*$")
SAMPLE_ENDPOINT = "127.0.0.1:9000"
BLOCK_TIMEOUT = 180.0
_LEAKY = ("AWS_", "RCLONE_", "S3CMD_", "BOTO_", "RESTIC_", "STRATUM_")
_ACCESS = re.compile(r"((?<!secret_)access_key(?:_id)?\s*=\s*\"?)\.\.\.", re.I)
_SECRET = re.compile(r"(secret(?:_access)?_key\s*=\s*\"?)\.\.\.", re.I)


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    skip: str | None = None  # the not-tested reason
    file: str | None = None  # where an ini block goes

    def where(self) -> str:
        return f"README.md:{self.line} ({self.lang})"


def parse_blocks(markdown: str) -> list[Block]:
    lines = markdown.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        marks: dict[str, str] = {}
        j = i - 1
        while j >= 0 and (found := MARK.match(lines[j].strip())):
            marks.setdefault(found.group(1), found.group(2))
            j -= 1
        end = i + 1
        while end < len(lines) and lines[end].rstrip() != "```":
            end += 1
        text = "\n".join(lines[i + 1 : end]) + "\n"
        blocks.append(
            Block(i + 1, fence.group(1), text, marks.get("not-tested"), marks.get("file"))
        )
        i = end + 1
    return blocks


def readme_blocks() -> list[Block]:
    return parse_blocks(README.read_text())


def substitute(text: str, hostport: str, access_key: str, secret_key: str) -> str:
    text = text.replace(SAMPLE_ENDPOINT, hostport)
    text = _ACCESS.sub(lambda m: m.group(1) + access_key, text)
    return _SECRET.sub(lambda m: m.group(1) + secret_key, text)


# ---- the convention (no server needed) ------------------------------------------------------


def test_every_readme_block_follows_the_convention() -> None:
    problems = []
    for block in readme_blocks():
        if block.lang not in RUNNABLE | NOT_RUN:
            problems.append(
                f"{block.where()}: language must be one of {sorted(RUNNABLE | NOT_RUN)}"
            )
            continue
        if block.skip is not None and block.skip not in REASONS:
            problems.append(f"{block.where()}: not-tested reason must be one of {sorted(REASONS)}")
        if block.skip is not None and block.lang not in RUNNABLE:
            problems.append(f"{block.where()}: a {block.lang} block is never run; drop the mark")
        if block.lang == "ini" and block.skip is None and not block.file:
            problems.append(f"{block.where()}: an ini block needs <!-- file: PATH --> above it")
        if block.lang in RUNNABLE and block.skip is None:
            left = substitute(block.text, "HOST:PORT", "AK", "SK")
            if "..." in left:
                problems.append(f"{block.where()}: a '...' that is not a key placeholder")
    assert not problems, "\n".join(problems)


def test_readme_runs_something() -> None:
    runnable = [b for b in readme_blocks() if b.lang in RUNNABLE and b.skip is None]
    assert {b.lang for b in runnable} >= {"sh", "python", "ini"}, runnable


# ---- running the README ---------------------------------------------------------------------


def _user_files(home: Path, work: Path) -> None:
    """What the README's examples assume a user has: pictures, documents, a cat photo."""
    pictures, documents = home / "Pictures", home / "Documents"
    for folder in (pictures / "2024", documents / "letters"):
        folder.mkdir(parents=True)
    (pictures / "beach.jpg").write_bytes(os.urandom(300 * 1024))
    (pictures / "2024" / "snow.jpg").write_bytes(os.urandom(20 * 1024))
    (documents / "notes.txt").write_text("call the plumber\n")
    (documents / "letters" / "bank.txt").write_text("Dear bank,\n" * 50)
    (documents / "taxes.pdf").write_bytes(os.urandom(2 * 1024 * 1024 + 17))
    (work / "cat.jpg").write_bytes(os.urandom(64 * 1024))


def _shim(bin_dir: Path) -> None:
    """``stratum`` on PATH: the command under test, from this checkout."""
    bin_dir.mkdir()
    shim = bin_dir / "stratum"
    command = " ".join(shlex.quote(part) for part in stratum_command())
    shim.write_text(
        f"#!/bin/sh\nPYTHONPATH={shlex.quote(str(ROOT))}${{PYTHONPATH:+:$PYTHONPATH}} "
        f'exec {command} "$@"\n'
    )
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _client_env(home: Path, bin_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LEAKY)}
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(
        PATH=path,
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        LC_ALL="C.UTF-8",
        LANG="C.UTF-8",
        AWS_EC2_METADATA_DISABLED="true",  # no metadata-service probe from a laptop
    )
    return env


def _banner(server: RunningServer) -> tuple[str, str, str]:
    """(the two banner lines, access key, secret key) as the first start printed them."""
    first = next(line for line in server.output if "serving S3 at" in line)
    deadline = time.monotonic() + 10  # the second line may still be on its way
    while not (second := next((ln for ln in server.output if "new root secret key" in ln), "")):
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    access = re.search(r"access key (\S+)", first)
    secret = re.search(r"\): (\S+)\s*$", second)
    assert access and secret, "the first start must print the keys:\n" + "".join(server.output)
    return first + second, access.group(1), secret.group(1)


def _check_banner(banner: str, access: str, secret: str, server: RunningServer) -> None:
    """The README's sample banner is what a first start prints (port, keys, paths aside)."""
    sample = next(b.text for b in readme_blocks() if b.lang == "text" and "serving S3" in b.text)
    port = server.endpoint.rsplit(":", 1)[1]
    data_parent = str(server.data_dir.parent)
    sample_parent = re.search(r"kept in (\S*?)/?stratum-data/", sample)
    assert sample_parent is not None, sample
    shown = (
        banner.replace(f"127.0.0.1:{port} ", f"{SAMPLE_ENDPOINT} ")
        .replace(access, "3X7J...")
        .replace(secret, "...")
        .replace(data_parent + "/", sample_parent.group(1) + "/" if sample_parent.group(1) else "")
    )

    def shape(text: str) -> list[str]:  # the version and the process count vary
        text = re.sub(r"^Stratum \S+ ", "Stratum VERSION ", text.strip())
        return re.sub(r"\(\d+ processes\)", "", text).split()

    assert shape(shown) == shape(sample), (
        f"README shows:\n{sample}\na first start prints:\n{banner}"
    )


def _run(
    block: Block, text: str, work: Path, home: Path, env: dict[str, str], server: RunningServer
) -> str:
    if block.lang == "ini":
        assert block.file is not None
        target = Path(block.file.replace("~", str(home), 1))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        return f"wrote {target}"
    if block.lang == "python":
        args = [sys.executable, "-c", text]
    else:
        if block.lang == "console":
            text = "\n".join(ln[2:] for ln in text.splitlines() if ln.startswith("$ ")) + "\n"
        args = ["bash", "-eu", "-o", "pipefail", "-c", text]
    result = run(args, env=env, server=server, check=False, timeout=BLOCK_TIMEOUT, cwd=work)
    if result.returncode != 0:
        pytest.fail(f"{block.where()} failed:\n{result.describe()}", pytrace=False)
    return result.stdout


def _keys(s3: Any, bucket: str) -> set[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {obj["Key"] for page in pages for obj in page.get("Contents", [])}


def test_readme_commands_run_as_written(tmp_path: Path) -> None:
    work, home = tmp_path / "stratum", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    _user_files(home, work)
    bin_dir = tmp_path / "bin"
    _shim(bin_dir)
    # As ./dev serve starts it: keys generated on the first start, the default listen host.
    server = start_server(
        work / "stratum-data",
        "--listen",
        "127.0.0.1:0",
        env={"STRATUM_ACCESS_KEY": "", "STRATUM_SECRET_KEY": ""},
    )
    try:
        banner, access, secret = _banner(server)
        _check_banner(banner, access, secret, server)
        hostport = server.endpoint.removeprefix("http://")
        env = _client_env(home, bin_dir)
        outputs = {}
        for block in readme_blocks():
            if block.lang not in RUNNABLE or block.skip is not None:
                continue
            text = substitute(block.text, hostport, access, secret)
            outputs[block.line] = _run(block, text, work, home, env, server)
        s3 = boto3.client(
            "s3",
            endpoint_url=server.endpoint,
            region_name="us-east-1",
            aws_access_key_id=access,
            aws_secret_access_key=secret,
        )
        # The commands did what the README says they do.
        assert _keys(s3, "photos") >= {"beach.jpg", "2024/snow.jpg", "cat.jpg"}
        assert _keys(s3, "documents") == {"notes.txt", "letters/bank.txt", "taxes.pdf"}
        assert "notes.txt" in _keys(s3, "music")
        assert any(key.startswith("snapshots/") for key in _keys(s3, "restic"))
        assert any("stratum_ready 1" in out for out in outputs.values()), outputs
    finally:
        code = server.stop()
    assert code == 0, "".join(server.output[-50:])
