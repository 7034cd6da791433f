"""The package's import graph has no cycle and no import from a higher layer, lazy
(function-level) imports included; the few lazy imports inside the package have a reason;
the module index of the package docstring names every module."""
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
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[name] |= import_graph_of(node, mods)
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


# --------------------------------------------------------------------------------------
# Layers: a module imports only from its own layer or the layers below it
# --------------------------------------------------------------------------------------
LAYERS: dict[str, tuple[str, ...]] = {
    # 0: no torch-heavy machinery of the book; anything may import these
    "foundation": ("utils", "settings", "params", "axes", "data", "models", "train", "population",
                   "plotting"),
    # 1: the run store, the executors and the tables the chapters exchange
    "runs": ("store", "runner", "tasks", "tables", "reproducibility"),
    # 2: the metrics of one model, one pair or one set of models
    "metrics": ("profiles", "hessian", "similarity", "connectivity", "directions", "simplex", "align"),
    # 3: the experiments of the chapters: grids of measurements, phases, findings
    "experiments": ("taxonomy", "findings", "local", "global_metrics", "sweeps", "protocol", "reference",
                    "authors_grid", "zoo", "rugged", "large_scale"),
    # 4: the book: driver, chapters, cost plan, self-check, explorers
    "book": ("chapters", "book", "plan", "doctor", "widgets"),
}
LEVEL = {m: i for i, mods in enumerate(LAYERS.values()) for m in mods}

# Package-internal imports inside functions, and why each stays lazy.
LAZY_ALLOWED: dict[tuple[str, str], str] = {
    ("book", "runner"): "the driver starts without torch: --help and a bad params file answer at once",
    ("book", "store"): "the driver starts without torch (preflight only)",
    ("book", "plan"): "--plan only",
    ("book", "zoo"): "the driver starts without pandas, scipy and altair (preflight's check of 'explore')",
    ("reference", "zoo"): "the derive-zoo command only: reading the authors' tarball needs no zoo",
    ("book", "utils"): "the driver starts without torch: the parent watch of kernels and chapter processes, "
                       "the provenance footer",
}


def lazy_imports() -> set[tuple[str, str]]:
    """(module, package module) of every import inside a function or class of the package."""
    mods = _modules()
    out = set()
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top:
                sub = import_graph_of(node, mods)
                out.update((name, t) for t in sub)
    return out


def import_graph_of(node: ast.AST, mods: dict[str, Path]) -> set[str]:
    targets: list[str] = []
    if isinstance(node, ast.ImportFrom):
        if node.level == 1:
            targets = [node.module] if node.module else [a.name for a in node.names]
        elif node.module and node.module.startswith("landscape_utils"):
            rest = node.module.split(".")[1:]
            targets = rest[:1] if rest else [a.name for a in node.names]
    elif isinstance(node, ast.Import):
        targets = [a.name.split(".")[1] for a in node.names if a.name.startswith("landscape_utils.")]
    return {t.split(".")[0] for t in targets if t and t.split(".")[0] in mods}


def test_every_module_has_a_layer():
    assert sorted(LEVEL) == sorted(_modules()), "declare each module's layer in LAYERS"


def test_no_module_imports_from_a_higher_layer():
    up = [f"{m} ({_layer(m)}) imports {t} ({_layer(t)})"
          for m, targets in import_graph().items() for t in sorted(targets) if LEVEL[t] > LEVEL[m]]
    assert not up, "imports against the layers:\n" + "\n".join(up)


def _layer(m: str) -> str:
    return list(LAYERS)[LEVEL[m]]


def test_lazy_imports_inside_the_package_are_the_declared_ones():
    assert lazy_imports() == set(LAZY_ALLOWED), "a new lazy import: move it to the top or declare why"


def test_the_layer_check_catches_an_upward_import(tmp_path):
    tree = ast.parse("def f():\n    from .taxonomy import classify\n")
    node = tree.body[0].body[0]
    assert import_graph_of(node, _modules()) == {"taxonomy"}
    assert LEVEL["taxonomy"] > LEVEL["connectivity"]

