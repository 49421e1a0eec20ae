"""The package's layering, checked over the source (``ast``; nothing is imported):

    cli, bench, docs   entry points
    stages             orchestration only
    methods            the blend methods and their registry
    store, parallel    reading artifacts back; the process pool
    rl                 PPO(-Lagrangian), AIRL, BC warm starts, snapshots
    evaluation         rollouts and metrics
    envs, config, artifacts, errors

A module imports only from its own layer or the layers below, never in a circle, and every
import of a safeknob module sits at the top of its file (not inside a function), so the
dependencies can be read off the first lines. ``make lint`` runs this file.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "safeknob"

LAYERS: list[tuple[str, ...]] = [
    ("cli", "bench", "docs", "__main__"),
    ("stages",),
    ("methods",),
    ("store", "schemas", "parallel", "data", "minari_io", "hdf5_io", "tracking"),
    ("rl",),
    ("evaluation",),
    ("envs", "config", "artifacts", "errors", "worker", "seeding"),
]
"""Top to bottom; a module's layer is that of its first name below ``safeknob.``."""


def _modules() -> dict[str, Path]:
    out = {}
    for p in PACKAGE.rglob("*.py"):
        name = ".".join(p.with_suffix("").relative_to(PACKAGE.parent).parts)
        out[name.removesuffix(".__init__")] = p
    return out


MODULES = _modules()


def _rank(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None  # the package itself
    for i, names in enumerate(LAYERS):
        if parts[1] in names:
            return i
    raise AssertionError(f"{module} belongs to no layer; add it to LAYERS in {__file__}")


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported safeknob module, line, at top level) of every import in ``path``."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("safeknob"):
            names = [node.module]
            names += [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("safeknob")]
        for n in names:
            if n in MODULES:
                out.append((n, node.lineno, id(node) in top))
    return out


GRAPH = {m: {n for n, _, _ in _imports(p)} - {m} for m, p in MODULES.items()}


def test_every_module_has_a_layer():
    for m in MODULES:
        _rank(m)


def test_no_module_imports_a_layer_above_it():
    up = [
        f"{m} imports {n} (layer {LAYERS[_rank(n)]} is above {LAYERS[_rank(m)]})"
        for m, deps in GRAPH.items()
        for n in deps
        if _rank(m) is not None and _rank(n) is not None and _rank(n) < _rank(m)
    ]
    assert not up, "\n".join(up)


def test_safeknob_imports_sit_at_the_top_of_files():
    inner = [
        f"{MODULES[m].relative_to(PACKAGE.parent)}:{line} imports {n} inside a function"
        for m, p in MODULES.items()
        for n, line, top in _imports(p)
        if not top
    ]
    assert not inner, "\n".join(inner)


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = itertools.count()

    def visit(v: str) -> None:
        index[v] = low[v] = next(counter)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    # a package re-exporting its own submodules is not a design circle
    return [
        c
        for c in found
        if not all(a.startswith(b) or b.startswith(a) for a, b in itertools.combinations(c, 2))
    ]


def test_no_import_circles():
    assert not _circles(GRAPH), _circles(GRAPH)


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": set()}, []),
        ({"p": {"p.x"}, "p.x": {"p"}}, []),
    ],
)
def test_the_circle_finder_finds_circles(graph, expected):
    assert _circles(graph) == expected
