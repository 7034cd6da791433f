"""The package's import graph has no cycle, lazy (function-level) imports included, and the
module index of the package docstring names every module."""
from __future__ import annotations

import ast
from pathlib import Path

import landscape_utils

PACKAGE = Path(landscape_utils.__file__).parent


def _modules() -> dict[str, Path]:
    return {p.stem: p for p in sorted(PACKAGE.glob("*.py")) if p.stem not in ("__init__", "__main__")}


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its source (top level or lazily)."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                if node.level == 1:  # from .x import y / from . import x
                    targets = [node.module] if node.module else [a.name for a in node.names]
                elif node.module and node.module.startswith("landscape_utils"):
                    rest = node.module.split(".")[1:]
                    targets = rest[:1] if rest else [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name.split(".")[1] for a in node.names
                           if a.name.startswith("landscape_utils.")]
            graph[name].update(t.split(".")[0] for t in targets if t and t.split(".")[0] in mods)
        graph[name].discard(name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycle_inside_the_package():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_module_index_names_every_module():
    doc = landscape_utils.__doc__ or ""
    missing = [m for m in _modules() if f"    {m} " not in doc and not doc.rstrip().endswith(f"    {m}")]
    assert not missing, f"modules missing from the index in landscape_utils/__init__.py: {missing}"
