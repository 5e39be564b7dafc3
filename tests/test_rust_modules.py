"""The Rust crate's module layering (rust_book/src): no module imports in a circle, and venue
names only in the venues' own modules (and the crate root, which registers them)."""

from __future__ import annotations

import pathlib
import re

SRC = pathlib.Path(__file__).resolve().parent.parent / "rust_book" / "src"
VENUES = sorted(p.name for p in (SRC.parent.parent / "lab" / "venues").iterdir() if (p / "adapter.py").exists())


def _code(path: pathlib.Path) -> str:
    """The file without `//` comments (doc comments included)."""
    return "\n".join(line.split("//", 1)[0] for line in path.read_text().splitlines())


def _graph() -> dict[str, set[str]]:
    mods = {p.stem for p in SRC.glob("*.rs")} - {"lib"}
    # `crate::X` and `use crate::{X, ...}`: X is a module, or an item of the crate root
    graph = {}
    for m in mods:
        code = _code(SRC / f"{m}.rs")
        deps = set(re.findall(r"\bcrate::(\w+)", code))
        for group in re.findall(r"\bcrate::\{([^}]*)\}", code):
            deps |= {name.strip().split("::")[0] for name in group.split(",") if name.strip()}
        graph[m] = deps - {m}
    return graph


def test_every_crate_path_is_a_module() -> None:
    g = _graph()
    for m, deps in g.items():
        assert deps <= set(g), (m, deps - set(g))  # nothing reaches into the crate root


def test_no_import_cycles() -> None:
    g = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(g[m]):
            if state.get(d) == 1:
                cycles.append(path[path.index(d):] + [d])
            elif d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_venue_names_only_in_venue_modules() -> None:
    assert {"mock", "kraken"} <= set(VENUES)
    word = re.compile(r"(?i)(" + "|".join(VENUES) + r")")
    found = []
    for p in sorted(SRC.glob("*.rs")):
        if p.stem in VENUES or p.stem == "lib":
            continue
        for n, line in enumerate(_code(p).splitlines(), 1):
            if word.search(line):
                found.append(f"{p.name}:{n}: {line.strip()}")
    assert found == []
