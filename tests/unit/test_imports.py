"""The package layout: each layer imports only from the layers below it, and no module imports in a circle."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import candlewick

PACKAGE = Path(candlewick.__file__).parent

LAYERS: list[set[str]] = [
    {"candlewick"},                                          # the version
    {"candlewick.errors"},                                   # the exception tree
    {"candlewick.config", "candlewick.logs", "candlewick.aio"},
    {"candlewick.schema"},                                   # wire models, the request decoder, migrations
    {"candlewick.domain"},                                   # sans-IO: candles, SMA, rollups, the book, events
    {"candlewick.storage", "candlewick.bus"},                # Store protocol, memory, Postgres; Redis
    {"candlewick.runtime"},                                  # supervisor, router, actors, flusher, fan-out
    {"candlewick.engine"},                                   # the composition root
    {"candlewick.http"},                                     # app, routes, SSE, server
    {"candlewick.cli"},                                      # the command line: flags, commands, exit codes
    {"candlewick.__main__"},                                 # ``python -m candlewick``
]
"""Lowest first. A unit is a top-level module or subpackage of ``candlewick``; a unit may import
itself and any unit of a lower layer, never one of its own layer or above."""

RANK = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def unit_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def imports_of(path: Path, module: str) -> set[str]:
    """Every candlewick module ``path`` imports, at any depth (functions, TYPE_CHECKING blocks too)."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)  # ``from pkg import submodule``
    return {m for m in found if m == "candlewick" or m.startswith("candlewick.")}


def layering_faults(root: Path) -> list[str]:
    """Upward, sideways and circular imports in the package at ``root``, as readable lines."""
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    faults = []
    for module, path in sorted(modules.items()):
        unit = unit_of(module)
        if unit not in RANK:
            faults.append(f"{module}: not in any layer; add its unit to LAYERS")
            continue
        edges = graph[module] = set()
        for target in sorted(imports_of(path, module)):
            if target not in modules:
                continue  # ``from pkg import name`` also yields pkg.name, which need not be a module
            edges.add(target)
            other = unit_of(target)
            if other != unit and RANK.get(other, -1) >= RANK[unit]:
                where = "its own layer" if RANK.get(other) == RANK[unit] else "a higher layer"
                faults.append(f"{module} imports {target}, which is in {where}")
            elif other != unit and any(part.startswith("_") for part in target.split(".")[2:]):
                faults.append(f"{module} imports {target}, a private module of {other}: use {other}'s public face")
    faults.extend(f"import cycle: {' -> '.join(cycle)}" for cycle in _cycles(graph))
    return faults


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                out.append(sorted(component) + [min(component)])

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_layers_import_only_downward_and_without_cycles():
    """No module imports from its own layer's other units or a higher layer, or another unit's private
    modules, and no import cycle exists."""
    assert layering_faults(PACKAGE) == []


def test_the_check_catches_a_planted_upward_import_and_cycle(tmp_path):
    """A domain module importing the HTTP layer, and two runtime modules importing each other, are reported."""
    copy = tmp_path / "candlewick"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "static", "migrations"))
    book = copy / "domain" / "_candles.py"
    book.write_text(book.read_text() + "\nfrom candlewick.http import create_app  # planted\n")
    flusher = copy / "runtime" / "_flusher.py"
    flusher.write_text(flusher.read_text() + "\ndef _planted():\n    from candlewick.runtime import _router\n")
    router = copy / "runtime" / "_router.py"
    router.write_text(router.read_text() + "\nfrom candlewick.runtime._flusher import Flusher  # planted\n")
    faults = layering_faults(copy)
    assert "candlewick.domain._candles imports candlewick.http, which is in a higher layer" in faults
    assert any(f.startswith("import cycle:") and "candlewick.runtime._flusher" in f and "candlewick.runtime._router" in f
               for f in faults), faults
    reads = copy / "http" / "_read.py"
    reads.write_text(reads.read_text() + "\nfrom candlewick.storage._memory import MemoryStore  # planted\n")
    assert ("candlewick.http._read imports candlewick.storage._memory, a private module of candlewick.storage: "
            "use candlewick.storage's public face") in layering_faults(copy)
    storage = copy / "storage" / "_memory.py"
    storage.write_text(storage.read_text() + "\nimport candlewick.bus  # planted\n")
    assert "candlewick.storage._memory imports candlewick.bus, which is in its own layer" in layering_faults(copy)


def test_every_package_imports_on_its_own():
    """Each package can be the first one imported: nothing relies on an import order."""
    for module in sorted(unit for layer in LAYERS for unit in layer):
        proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
        assert proc.returncode == 0, f"{module}: {proc.stderr[-500:]}"
