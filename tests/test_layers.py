"""The layers of docs/ARCHITECTURE.md hold: imports run downward only, no module imports in a
circle, and no module outside lab/venues/ names a venue (as a string or a name: docstrings and
comments may). The shared house check says the same; this keeps it true in CI."""
from __future__ import annotations

import ast
import os
from graphlib import CycleError, TopologicalSorter

import lab
from lab.venues import registry

PKG = os.path.dirname(lab.__file__)
# lower number = lower layer; a module may import its own layer or lower ones
LAYERS = {"core": 0, "datasets": 1, "net": 2, "sync": 2, "venues": 3, "recorder": 4, "replay": 4, "backtest": 4}
VENUE_FREE_EXEMPT = ("venues/", "demo.py", "benchmarks/")


def _modules() -> dict[str, str]:
    out = {}
    for d, _, files in os.walk(PKG):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(d, f), PKG)
                out["lab." + rel[:-3].replace(os.sep, ".").removesuffix(".__init__").removesuffix("__init__")] = rel
    return {k.rstrip("."): v for k, v in out.items()}


def _imports(name: str, rel: str, known: set[str]) -> set[str]:
    tree = ast.parse(open(os.path.join(PKG, rel)).read())
    package = name if rel.endswith("__init__.py") else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        out |= {t for t in targets if t in known and t != name}
    return out


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 2 else None


def test_no_import_cycles_and_no_upward_imports():
    mods = _modules()
    graph = {m: _imports(m, rel, set(mods)) for m, rel in mods.items()}
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise AssertionError(f"import cycle: {exc.args[1]}") from None
    upward = [f"{a} -> {b}" for a, deps in graph.items() for b in deps
              if _layer(a) is not None and _layer(b) is not None and _layer(b) > _layer(a)]
    assert upward == []


def test_no_venue_named_outside_its_folder():
    names = {n.lower() for n in registry.connectors()}
    leaks = []
    for mod, rel in _modules().items():
        if rel.startswith(VENUE_FREE_EXEMPT):
            continue
        tree = ast.parse(open(os.path.join(PKG, rel)).read())
        docs = {id(n.body[0].value) for n in ast.walk(tree)
                if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs \
                    and node.value.lower() in names:
                leaks.append(f"{rel}:{node.lineno} {node.value!r}")
            elif isinstance(node, ast.Name) and node.id.lower() in names:
                leaks.append(f"{rel}:{node.lineno} {node.id}")
    assert leaks == []


def test_core_imports_nothing_of_lab():
    mods = _modules()
    for m, rel in mods.items():
        if m.startswith("lab.core"):
            assert {d for d in _imports(m, rel, set(mods)) if not d.startswith("lab.core")} == set(), m
