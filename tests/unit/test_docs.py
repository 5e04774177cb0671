"""The README's promises that code can check: the config reference is current, the quick
start's commands exist, and CI runs the README's test command."""

from __future__ import annotations

from pathlib import Path

from stratum.config.render import render_markdown_reference

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_config_reference_in_readme_is_current() -> None:
    start = README.index("<!-- config-reference:start")
    start = README.index("\n", start) + 1
    end = README.index("<!-- config-reference:end")
    assert README[start:end].strip() == render_markdown_reference().strip(), (
        "README's configuration reference is stale: regenerate it with `stratum config reference`"
    )


def test_quick_start_commands_are_what_ci_runs() -> None:
    assert "./dev serve" in README and "./dev test" in README
    assert "./dev test" in (ROOT / ".ci" / "run").read_text()
