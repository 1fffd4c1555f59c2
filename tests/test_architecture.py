"""The map stays true: imports run one way (adapters never import probe; no cycle between modules), the
layers of docs/architecture.md hold, and every module the doc names exists."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"latentfield.adapters": ROOT / "adapters", "latentfield.probe": ROOT / "probe"}
# Layers from the bottom up; a module may import its own layer and the ones below, never one above.
LAYERS = ["adapters", "engine", "data", "rundir", "index", "analyses", "workflows", "report", "commands"]


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            mods[".".join([pkg, *parts])] = path
    return mods


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``name`` imports at run time (anywhere in the file, lazy imports included)."""
    is_pkg = path.name == "__init__.py"
    out = set()
    tree = ast.parse(path.read_text())
    # imports only a type checker runs (``if TYPE_CHECKING:``) are no runtime dependency
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and getattr(block.test, "id", getattr(block.test, "attr", None)) == "TYPE_CHECKING"
                   for n in ast.walk(block)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[:len(base) - node.level + (1 if is_pkg else 0)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        out |= {t for t in targets if t in known}
    out.discard(name)
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, set(mods)) for name, path in mods.items()}


def test_adapters_never_import_probe(graph):
    bad = sorted(f"{a} -> {b}" for a, deps in graph.items() if a.startswith("latentfield.adapters")
                 for b in deps if b.startswith("latentfield.probe"))
    assert not bad, bad


def test_no_import_cycle(graph):
    # Imports of a package by its own modules (``from . import x``) are the package's, not a cycle.
    edges = {a: {b for b in deps if not a.startswith(b + ".")} for a, deps in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


def _layer(module: str) -> str | None:
    if module.startswith("latentfield.adapters"):
        return "adapters"
    parts = module.split(".")
    if len(parts) < 3:
        return None  # latentfield.probe itself: the lazy public names
    head = parts[2]
    return {"cli": "commands", "data": "data", "image_files": "data", "display": "data", "index": "index"}.get(head, head if head in LAYERS else None)


def test_layers_import_downwards_only(graph):
    bad = []
    for a, deps in graph.items():
        la = _layer(a)
        for b in deps:
            lb = _layer(b)
            if la and lb and LAYERS.index(lb) > LAYERS.index(la):
                bad.append(f"{a} ({la}) -> {b} ({lb})")
    assert not bad, bad


def test_every_module_has_a_layer():
    unplaced = sorted(m for m in _modules() if m != "latentfield.probe" and _layer(m) is None)
    assert not unplaced, unplaced


def test_architecture_doc_names_only_modules_that_exist():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`((?:probe|adapters)/[\w/]+\.py)`", doc))
    assert len(named) > 20, "docs/architecture.md should name the modules"
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert not missing, missing
    listed = {f"{folder.name}/{p.relative_to(folder)}" for folder in PACKAGES.values() for p in folder.rglob("*.py")
              if p.name != "__init__.py"}
    assert not sorted(listed - named), f"modules missing from docs/architecture.md: {sorted(listed - named)}"
