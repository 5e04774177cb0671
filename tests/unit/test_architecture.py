"""The package structure holds: layers as documented, no import cycle, no oversized module.

docs/architecture.md's layer list is the import contract: same packages, same order. The list
between ``<!-- layers:start -->`` and ``<!-- layers:end -->`` names, top down, one layer per
numbered item; packages sharing a layer are written ``stratum.a`` | ``stratum.b``.
pyproject.toml's import-linter "layers" contract must name exactly those layers, in that
order; every package named must exist, and every package that exists must be named there, in
the doc's picture and in the README's tree, so neither the pictures nor the contract can drift
from the code.

The layers contract only forbids imports upwards; two modules of one package may still import
each other, which import-linter allows. :func:`test_no_import_cycle` forbids that too,
counting imports inside functions (a cycle hidden in a function is still a cycle: each module
needs the other to work), but not those under ``if TYPE_CHECKING:``, which never run.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Set
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
README = ROOT / "README.md"
MAX_MODULE_LINES = 800
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


def real_packages() -> set[str]:
    """stratum's top-level packages, and its top-level modules other than its entry points."""
    found = {f"stratum.{path.parent.name}" for path in (ROOT / "stratum").glob("*/__init__.py")}
    found |= {
        f"stratum.{path.stem}"
        for path in (ROOT / "stratum").glob("*.py")
        if path.stem not in ("__init__", "__main__")
    }
    return found


def test_every_package_is_documented() -> None:
    documented = {name for layer in documented_layers(DOC.read_text()) for name in layer}
    missing = sorted(real_packages() - documented)
    assert not missing, (
        f"packages missing from docs/architecture.md's layer list (and so from the import "
        f"contract): {missing}"
    )


def fenced_block_after(text: str, marker: str) -> str:
    """The first fenced block after ``marker``."""
    start = text.index("```", text.index(marker))
    start = text.index("\n", start) + 1
    return text[start : text.index("```", start)]


def test_every_package_is_in_the_pictures() -> None:
    """The box drawing of docs/architecture.md and the README's Development tree show every
    package too: a reader learns the layout from them."""
    picture = fenced_block_after(DOC.read_text(), "<!-- layers:end -->")
    tree = fenced_block_after(README.read_text(), "## Development")
    for where, text, spelling in (
        ("docs/architecture.md's picture", picture, r"\b{}\b"),
        ("README.md's Development tree", tree, r"\b{}(/|\.py)"),
    ):
        missing = sorted(
            name
            for name in real_packages()
            if not re.search(spelling.format(re.escape(name.split(".", 1)[1])), text)
        )
        assert not missing, f"{where} does not show: {missing}"


def test_no_module_is_oversized() -> None:
    big = {
        str(path.relative_to(ROOT)): lines
        for path in (ROOT / "stratum").rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not big, f"modules over {MAX_MODULE_LINES} lines (split them along a seam): {big}"


def find_cycle(imports: Mapping[str, Set[str]]) -> list[str] | None:
    """A cycle of ``imports`` (module -> modules it imports) as [a, b, ..., a], or None."""
    done: set[str] = set()
    for root in sorted(imports):
        if root in done:
            continue
        # Depth first, without recursion: the path from root, and for each module on it an
        # iterator over the imports still to follow.
        path = [root]
        todo = [iter(sorted(imports[root]))]
        while path:
            following = next(todo[-1], None)
            if following is None:
                done.add(path.pop())
                todo.pop()
            elif following in path:
                return [*path[path.index(following) :], following]
            elif following not in done:
                path.append(following)
                todo.append(iter(sorted(imports.get(following, ()))))
    return None


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "d"}, "b": set(), "d": {"d"}}) == ["d", "d"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"b"}}) == ["b", "c", "b"]


def test_no_import_cycle() -> None:
    graph = grimp.build_graph("stratum", exclude_type_checking_imports=True, cache_dir=None)
    assert "stratum.tiering.learned" in graph.modules, "grimp did not find stratum's modules"
    imports = {module: graph.find_modules_directly_imported_by(module) for module in graph.modules}
    cycle = find_cycle(imports)
    assert cycle is None, (
        "import cycle (function-level imports count: move what both need into a module of "
        "its own): " + " -> ".join(cycle or [])
    )
