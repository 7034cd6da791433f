"""The package's layers are its folders: a module imports only from its own folder or the
folders below it, lazy (function-level) imports included, and the import graph has no
cycle; the few lazy imports inside the package have a reason; the package docstring names
every folder and each folder's docstring names its modules."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import landscape_utils

PACKAGE = Path(landscape_utils.__file__).parent

# The layers, lowest first: a module's layer is its folder.
LAYERS: tuple[str, ...] = (
    "core",         # 0: the foundation, no book machinery; anything may import it
    "runs",         # 1: the run store, the executors and the tables the chapters exchange
    "metrics",      # 2: the metrics of one model, one pair or one set of models
    "experiments",  # 3: the experiments of the chapters: grids of measurements, phases, findings
    "book",         # 4: the book: driver, chapters, cost plan, self-check, explorers
)
LEVEL = {layer: i for i, layer in enumerate(LAYERS)}

# Package-internal imports inside functions, and why each stays lazy.
LAZY_ALLOWED: dict[tuple[str, str], str] = {
    ("book.driver", "runs.runner"): "the driver starts without torch: --help and a bad params file answer at once",
    ("book.driver", "runs.store"): "the driver starts without torch (preflight only)",
    ("book.driver", "book.plan"): "--plan only",
    ("book.driver", "experiments.zoo"): "the driver starts without pandas, scipy and altair (preflight's "
                                        "check of 'explore')",
    ("book.driver", "core.utils"): "the driver starts without torch: the parent watch of kernels and chapter "
                                   "processes, the provenance footer",
}


def _modules() -> dict[str, Path]:
    """Dotted name below the package (``core.utils``) -> file, of every module of the package."""
    return {".".join(p.relative_to(PACKAGE).with_suffix("").parts): p for p in sorted(PACKAGE.rglob("*.py"))
            if p.stem not in ("__init__", "__main__")}


def layer(module: str) -> str:
    return module.split(".")[0]


def imported_modules(node: ast.AST, module: str, mods: dict[str, Path]) -> set[str]:
    """The package modules an import statement of ``module`` (a dotted name below the
    package) imports: relative or absolute, ``from pkg import module`` included."""
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".")[:-node.level]
            prefix = ".".join([*base, *(node.module.split(".") if node.module else [])])
        elif node.module and (node.module + ".").startswith("landscape_utils."):
            prefix = node.module.partition(".")[2]
        else:
            return set()
        found = {prefix} & set(mods)
        found |= {f"{prefix}.{a.name}".lstrip(".") for a in node.names} & set(mods)
        return found
    if isinstance(node, ast.Import):
        return {a.name.partition(".")[2] for a in node.names} & set(mods)
    return set()


def _imports(lazy_only: bool = False) -> set[tuple[str, str]]:
    """(module, package module) of every import of the package (only those inside a function
    or class with ``lazy_only``)."""
    mods = _modules()
    out = set()
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and not (lazy_only and id(node) in top):
                out.update((name, t) for t in imported_modules(node, name, mods) if t != name)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its source (top level or lazily)."""
    graph: dict[str, set[str]] = {m: set() for m in _modules()}
    for m, t in _imports():
        graph[m].add(t)
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


def test_every_module_sits_in_a_layer_folder():
    flat = sorted(p.name for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    assert not flat, f"modules outside the layer folders: {flat}"
    assert sorted({layer(m) for m in _modules()}) == sorted(LAYERS), "a folder that is not a layer, or an empty layer"


def _names(doc: str, name: str) -> bool:
    return f"    {name} " in doc or doc.rstrip().endswith(f"    {name}")


def test_the_indexes_name_every_layer_and_module():
    doc = landscape_utils.__doc__ or ""
    assert not [f for f in LAYERS if not _names(doc, f)], "landscape_utils/__init__.py: name every layer folder"
    for folder in LAYERS:
        sub = importlib.import_module(f"landscape_utils.{folder}").__doc__ or ""
        missing = [m for m in _modules() if layer(m) == folder and not _names(sub, m.split(".", 1)[1])]
        assert not missing, f"modules missing from the index in landscape_utils/{folder}/__init__.py: {missing}"


def test_no_module_imports_from_a_higher_layer():
    up = [f"{m} imports {t}" for m, t in sorted(_imports()) if LEVEL[layer(t)] > LEVEL[layer(m)]]
    assert not up, "imports against the layers:\n" + "\n".join(up)


def test_lazy_imports_inside_the_package_are_the_declared_ones():
    assert _imports(lazy_only=True) == set(LAZY_ALLOWED), "a new lazy import: move it to the top or declare why"


def test_the_layer_check_sees_every_form_of_import():
    mods = _modules()

    def targets(src: str, module: str = "metrics.connectivity") -> set[str]:
        return imported_modules(ast.parse(src).body[0], module, mods)

    lazy = ast.parse("def f():\n    from ..experiments.taxonomy import classify\n").body[0].body[0]
    assert imported_modules(lazy, "metrics.connectivity", mods) == {"experiments.taxonomy"}
    assert LEVEL[layer("experiments.taxonomy")] > LEVEL[layer("metrics.connectivity")]
    assert targets("from .similarity import model_cka") == {"metrics.similarity"}
    assert targets("from ..core import plotting, train") == {"core.plotting", "core.train"}
    assert targets("from landscape_utils.runs.store import Store") == {"runs.store"}
    assert targets("from landscape_utils.core import utils") == {"core.utils"}
    assert targets("import landscape_utils.book.plan as plan") == {"book.plan"}
    assert targets("import numpy as np") == set() and targets("from . import profiles") == {"metrics.profiles"}
