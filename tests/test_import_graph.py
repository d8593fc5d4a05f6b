"""The packages import in one direction: no cycles, not even through imports inside
functions or under TYPE_CHECKING (the layout's map only reads true without them)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edge_sdk", "device_agent")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            parts = f.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every module of ours that ``name`` imports, wherever the import statement sits."""
    found: set[str] = set()
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(t for a in node.names if (t := _resolve(a.name, modules)))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            for a in node.names:
                if t := _resolve(f"{base}.{a.name}", modules) or _resolve(base, modules):
                    found.add(t)
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module → the modules of ours it imports."""
    modules = _modules()
    return defaultdict(set, {m: _imports(m, p, modules) for m, p in modules.items()})


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    assert found == [], "import cycles (each line a set of modules that import one another):\n" + "\n".join(
        " <-> ".join(c) for c in found)


def test_the_check_sees_cycles_through_function_imports(tmp_path: Path) -> None:
    graph = defaultdict(set, {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert cycles(graph) == [["a", "b", "c"]]
    modules = {"p.x": tmp_path / "x.py", "p.y": tmp_path / "y.py", "p.z": tmp_path / "z.py"}
    modules["p.x"].write_text("def f():\n    from p.y import g\n")
    modules["p.y"].write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from p import x\n")
    modules["p.z"].write_text("import p.y as y\n")
    graph = defaultdict(set, {m: _imports(m, f, modules) for m, f in modules.items()})
    assert graph == {"p.x": {"p.y"}, "p.y": {"p.x"}, "p.z": {"p.y"}}
    assert cycles(graph) == [["p.x", "p.y"]]
