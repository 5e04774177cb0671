"""The documentation's promises that code can check without a server.

The configuration reference in docs/configuration.md is current; the README says where the
server listens by default; the quick start's test command is what CI runs; every TOML example
loads; every relative link points at a file that exists. (The README's commands are run
against a real server by tests/server/test_readme.py.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from stratum.config import load_config
from stratum.config.render import render_markdown_reference

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
DOCS = sorted((ROOT / "docs").glob("*.md"))
CONFIG_DOC = ROOT / "docs" / "configuration.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")
# "issue 22", "issues 4 and 8", "#17": a tracker's numbering, meaningless to a reader of a release
ISSUE_NUMBER = re.compile(r"\bissues?\s+#?\d+|(?<![\w&/#])#\d+\b", re.I)
REPO_PATH = re.compile(r"`((?:stratum|tests|bench|systemd|image|zfs|packaging|\.ci)/[\w./-]+)`")


def test_config_reference_is_current() -> None:
    text = CONFIG_DOC.read_text()
    start = text.index("<!-- config-reference:start")
    start = text.index("\n", start) + 1
    end = text.index("<!-- config-reference:end")
    assert text[start:end].strip() == render_markdown_reference().strip(), (
        "docs/configuration.md's reference is stale: replace what stands between its "
        "config-reference markers with the output of `stratum config reference`"
    )


def test_readme_links_the_reference_instead_of_holding_it() -> None:
    assert "config-reference:start" not in README
    assert "docs/configuration.md" in README


def test_readme_says_where_the_server_listens() -> None:
    listen = load_config(None).server.listen
    host = listen.rpartition(":")[0]
    prose = " ".join(README.split())
    assert f"`{listen}`" in prose, f"README must give the default listen address {listen}"
    if host in ("0.0.0.0", "[::]"):
        assert "every network interface" in prose, (
            f"the default {listen} is reachable from the network: the README must say so"
        )


def test_peak_memory_is_the_benchmark_peak() -> None:
    """The README and docs/benchmarks.md give the highest peak the latest benchmark measured,
    not a lower figure from one of its workloads."""
    results = json.loads((ROOT / "bench" / "results" / "latest.json").read_text())["results"]
    peaks = {
        run["title"]: run["median"]["rss_peak"] / 2**20
        for run in results["Stratum"].values()
        if run["median"].get("rss_peak")
    }
    worst = max(peaks, key=peaks.__getitem__)
    figure = f"{peaks[worst]:,.0f} MiB"
    benchmarks = (ROOT / "docs" / "benchmarks.md").read_text()
    for name, text in (("README.md", README), ("docs/benchmarks.md", benchmarks)):
        assert figure in " ".join(text.split()) or f"{peaks[worst]:,.0f}**" in text, (
            f"{name} must state the benchmark's peak RSS, {figure} ({worst})"
        )


def test_quick_start_commands_are_what_ci_runs() -> None:
    assert "./dev serve" in README and "./dev test" in README
    assert "./dev test" in (ROOT / ".ci" / "run").read_text()


def test_readme_stays_a_guide() -> None:
    lines = README.count("\n")
    assert lines < 350, f"README.md has {lines} lines: move depth into docs/"


@pytest.mark.parametrize("doc", [ROOT / "README.md", *DOCS], ids=lambda p: p.name)
def test_toml_examples_load(doc: Path, tmp_path: Path) -> None:
    for number, (lang, body) in enumerate(FENCE.findall(doc.read_text())):
        if lang != "toml":
            continue
        path = tmp_path / f"example-{number}.toml"
        path.write_text(body)
        load_config(path)  # raises ConfigError naming the key


@pytest.mark.parametrize("doc", [ROOT / "README.md", *DOCS], ids=lambda p: p.name)
def test_relative_links_resolve(doc: Path) -> None:
    text = FENCE.sub("", doc.read_text())
    broken = [
        target
        for target, _anchor in LINK.findall(text)
        if "://" not in target
        and not target.startswith("mailto:")
        and not (doc.parent / target).exists()
    ]
    assert not broken, f"{doc.relative_to(ROOT)} links to missing files: {broken}"


@pytest.mark.parametrize("doc", [ROOT / "README.md", *DOCS], ids=lambda p: p.name)
def test_named_source_files_exist(doc: Path) -> None:
    """A file the docs send a reader to (`stratum/web/app.py`) is still there."""
    missing = sorted(
        {path for path in REPO_PATH.findall(doc.read_text()) if not (ROOT / path).exists()}
    )
    assert not missing, f"{doc.relative_to(ROOT)} names files that do not exist: {missing}"


@pytest.mark.parametrize(
    "doc", [ROOT / "README.md", ROOT / "bench" / "README.md", *DOCS], ids=lambda p: p.name
)
def test_no_issue_numbers(doc: Path) -> None:
    """Documents say what is meant ("the goal of 50 % of the bare rate"), not which tracker
    entry asked for it: the tracker is not shipped, and its numbers mean nothing to a user."""
    found = [
        f"line {text.count(chr(10), 0, match.start()) + 1}: {match.group(0)!r}"
        for text in [doc.read_text()]
        for match in ISSUE_NUMBER.finditer(text)
    ]
    assert not found, f"{doc.relative_to(ROOT)} refers to issues by number: {found}"


def test_console_figures_are_the_benchmarks() -> None:
    """docs/console.md's size-and-speed table is bench/results/console.md's, row for row
    (what `python -m bench.console` wrote), the what-if's verdict included."""

    def rows(text: str) -> list[str]:
        return [line for line in text.splitlines() if line.startswith("|")]

    measured = rows((ROOT / "bench" / "results" / "console.md").read_text())
    assert measured and rows((ROOT / "docs" / "console.md").read_text()) == measured
