"""The chapters of the book as files: where they are and what their ``parameters`` cell declares.

Read by the driver (:mod:`landscape_utils.book`), the cost plan (:mod:`landscape_utils.book.plan`)
and the self-check; nothing here imports the rest of the package.
"""
from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BOOK_DIR = REPO / "book"


@dataclass(frozen=True)
class Parameter:
    name: str
    annotation: str | None  # e.g. "int", "list", "str"
    default: Any


def chapters(book_dir: Path = BOOK_DIR) -> list[Path]:
    """The chapter files, in order (``NN_name.py``, or ``NNx_name.py`` for a chapter that
    sits between NN and the next number, e.g. ``04b_released_grids`` after ``04_taxonomy``)."""
    return sorted(p for p in book_dir.glob("[0-9][0-9]*_*.py") if _KEY.match(p.stem))


_KEY = re.compile(r"^(\d\d[a-z]?)_\w+$")


def chapter_key(stem: str) -> str:
    """A chapter's number as the driver names it: ``"04"`` for ``04_taxonomy``, ``"04b"``
    for ``04b_released_grids``."""
    m = _KEY.match(stem)
    return m.group(1) if m else stem.split("_", 1)[0]


def chapter_parameters(path: Path) -> dict[str, Parameter]:
    """The names, annotations and defaults of a chapter's ``parameters`` cell."""
    path = Path(path)
    return dict(_chapter_parameters(path, path.stat().st_mtime_ns))


@functools.lru_cache(maxsize=64)
def _chapter_parameters(path: Path, _mtime: int) -> dict[str, Parameter]:
    import jupytext

    nb = jupytext.read(path)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        return {}
    out = {}
    for node in ast.parse(cells[0].source).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            name, ann, value = node.target.id, ast.unparse(node.annotation), node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, ann, value = node.targets[0].id, None, node.value
        else:
            continue
        try:
            default = ast.literal_eval(value) if value is not None else None
        except ValueError:
            default = None
        out[name] = Parameter(name, ann, default)
    return out


# Chapter parameters that were renamed (old name -> new name), so that a params file with an
# old name fails with a message naming the new one. A parameter carries the name of the
# settings field it fills (``FromParams.from_params``); counts are ``num_*``.
RENAMED: dict[str, dict[str, str]] = {
    "02_local_metrics": {"top_k": "k", "trace_rel_tol": "rel_tol", "hessian_seed": "seed",
                         "density_runs": "num_runs", "density_steps": "num_steps",
                         "density_points": "points"},
    "03_global_connectivity": {"mli_points": "mli_num_points"},
    "05_rugged_convexity": {"n_runs": "num_runs", "n_steps": "num_steps"},
}


def book_path(value: str) -> Path:
    """A path from a chapter parameter: relative ones are relative to book/, the chapters' cwd."""
    p = Path(value)
    return p if p.is_absolute() else (BOOK_DIR / p).resolve()


def merged_values(stem: str, values: dict[str, Any]) -> dict[str, Any]:
    """A chapter's defaults (its parameters cell) overridden by the params file's values."""
    merged = {k: p.default for k, p in chapter_parameters(BOOK_DIR / f"{stem}.py").items()}
    merged.update(values)
    return merged
