"""docs/architecture.md's layer list is the import contract: same packages, same order.

The list between ``<!-- layers:start -->`` and ``<!-- layers:end -->`` names, top down, one
layer per numbered item; packages sharing a layer are written ``stratum.a`` | ``stratum.b``.
pyproject.toml's import-linter "layers" contract must name exactly those layers, in that
order, and every package named must exist, so neither the picture nor the contract can drift
from the code.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
ITEM = re.compile(r"^\d+\.\s+(.*)$")
PACKAGE = re.compile(r"`(stratum(?:\.\w+)*)`")


def documented_layers(text: str) -> list[list[str]]:
    """The layers of the doc's list, top down, each a list of package names."""
    start = text.index("<!-- layers:start -->")
    end = text.index("<!-- layers:end -->", start)
    layers: list[list[str]] = []
    for line in text[start:end].splitlines():
        item = ITEM.match(line.strip())
        if item is None:
            continue  # a continuation line of the item's description
        head = item.group(1).split(":", 1)[0]  # the packages come before the description
        names = PACKAGE.findall(head)
        assert names, f"docs/architecture.md: layer item without a package: {line.strip()!r}"
        layers.append(names)
    return layers


def contract_layers() -> list[list[str]]:
    """The layers of pyproject.toml's import-linter layers contract, top down."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = [
        c for c in config["tool"]["importlinter"]["contracts"] if c.get("type") == "layers"
    ]
    assert len(contracts) == 1, "pyproject.toml: expected exactly one import-linter layers contract"
    return [[name.strip() for name in layer.split("|")] for layer in contracts[0]["layers"]]


def package_exists(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return (path / "__init__.py").is_file() or path.with_suffix(".py").is_file()


def test_doc_lists_layers() -> None:
    layers = documented_layers(DOC.read_text())
    assert len(layers) >= 3, layers
    names = [name for layer in layers for name in layer]
    assert len(names) == len(set(names)), f"a package is listed twice: {names}"


def test_every_documented_package_exists() -> None:
    missing = [
        name
        for layer in documented_layers(DOC.read_text())
        for name in layer
        if not package_exists(name)
    ]
    assert not missing, (
        f"docs/architecture.md names packages that do not exist: {missing} "
        "(create them, or correct the layer list)"
    )


def test_import_contract_matches_the_doc() -> None:
    documented = [" | ".join(layer) for layer in documented_layers(DOC.read_text())]
    contract = [" | ".join(layer) for layer in contract_layers()]
    assert contract == documented, (
        "pyproject.toml's import-linter layers contract and docs/architecture.md's layer list "
        "differ (top down):\n"
        f"  contract: {contract}\n"
        f"  doc:      {documented}\n"
        f"  only in the contract: {sorted(set(contract) - set(documented))}\n"
        f"  only in the doc:      {sorted(set(documented) - set(contract))}"
    )
