"""The tables the chapters write and read.

Every chapter leaves tidy CSV tables under ``{workdir}/tables``; later chapters, the
explorers and the tests read them back through this module only, so there is one contract
(:data:`TABLES`). What the grid's two axes mean (which is the load, which the temperature,
which end of each is hot) is :mod:`landscape_utils.core.axes`.

The tables
----------
==========================  =======  ==============================================================
file                        chapter  columns (besides the axis columns where "axes" is marked)
==========================  =======  ==============================================================
``grid.csv``                1        run_id, every RunConfig field, seed, status, losses, accuracies
``grid_axes.json``          1        load_axis, temperature_axis, and each axis's description
``grid_cells.csv``          1        axes; train/test loss/acc means and ``_std``, n_seeds
``local.csv``               2        run_id, lambda_max, trace, trace_stderr, ...
``density.csv``             2        run_id, lam, density (one seed per cell)
``global_pairs.csv``        3        axes; pair, run_id_a, run_id_b, mc, linear_mc, cka, l2, ...
``global_cells.csv``        3        axes; mc, linear_mc, cka, l2 (+ ``_std``), n_pairs
``paths.csv``               3        axes; pair, path (bezier | linear), t, train_err, train_loss,
                                     test_err (errors in percent)
``continuation.csv``        3        run_id, steps, train_err_before/after, ... (the endpoints of
                                     cells with mc > 0, trained on for the curve's budget)
``phase_cells.csv``         4        axes; every metric of the cells, phase (+ p_phase if given)
``rugged_phase_cells.csv``  5        load, temperature (the 1D model's own axes), annealed,
                                     the 1D metrics, phase
``findings.csv``            any      chapter, key, claim, verdict, evidence, n, grid, kind,
                                     p_value, p_adjusted, corrected_verdict (written and read
                                     by ``landscape_utils.experiments.findings``)
==========================  =======  ==============================================================

:func:`write_table` checks a table's required columns before writing it;
:func:`read_table` reads one and, when it is missing, raises a ``FileNotFoundError`` that
names the file and the chapter that writes it. :func:`load_book_tables` reads everything at
once and never raises (the explorers show what exists and list what is missing).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..core.axes import AXES, Axis, axis_info, coldest, hot_order, hottest, load_order
from .runner import CONFIG_KEYS
from .store import load_history

__all__ = [
    "Grid",
    "write_grid",
    "read_grid",
    "read_axes",
    "TableSpec",
    "TABLES",
    "table_path",
    "write_table",
    "read_table",
    "BookTables",
    "load_book_tables",
    "grid_base_config",
]

TABLES_DIR = "tables"          # under the workdir
AXES_FILE = "grid_axes.json"   # chapter 1's description of the grid's axes


# --------------------------------------------------------------------------------------
# The table contract
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TableSpec:
    """One table of the contract between chapters."""

    file: str                   # file name under {workdir}/tables
    chapter: str                # who writes it, for the "missing" message
    provides: tuple[str, ...]   # what is lost without it (metric names or a phrase)
    columns: tuple[str, ...]    # columns it must have (besides the axes, see ``axes``)
    axes: bool = False          # keyed by the two axis columns (else by run_id)


CH1, CH2, CH3, CH4 = ("chapter 1 (01_training_grid)", "chapter 2 (02_local_metrics)",
                      "chapter 3 (03_global_connectivity)", "chapter 4 (04_taxonomy)")

TABLES: dict[str, TableSpec] = {
    "grid": TableSpec("grid.csv", CH1, ("train_loss", "train_acc", "test_loss", "test_acc"),
                      ("run_id", "seed", "status")),
    "grid_cells": TableSpec("grid_cells.csv", CH1, ("the per-cell losses and accuracies",),
                            ("n_seeds",), axes=True),
    "local": TableSpec("local.csv", CH2, ("lambda_max", "trace"),
                       ("run_id", "lambda_max", "trace")),
    "density": TableSpec("density.csv", CH2, ("the Hessian spectral density",),
                         ("run_id", "lam", "density")),
    "global_pairs": TableSpec("global_pairs.csv", CH3, ("the per-pair global metrics",),
                              ("pair", "mc", "linear_mc", "cka", "l2"), axes=True),
    "global_cells": TableSpec("global_cells.csv", CH3, ("mc", "linear_mc", "cka", "l2"),
                              ("mc",), axes=True),
    "paths": TableSpec("paths.csv", CH3, ("the error along the Bezier curve and the line",),
                       ("path", "t", "train_err"), axes=True),
    "continuation": TableSpec("continuation.csv", CH3, ("the endpoint-continuation control of mc > 0",),
                              ("run_id", "steps", "train_err_before", "train_err_after")),
    "phase_cells": TableSpec("phase_cells.csv", CH4, ("the phase of every cell",),
                             ("phase",), axes=True),
    "rugged_phase_cells": TableSpec("rugged_phase_cells.csv", "chapter 5 (05_rugged_convexity)",
                                    ("the 1D model's phase diagram",),
                                    ("load", "temperature", "annealed", "phase")),
    "released_cells": TableSpec("released_cells.csv", "chapter 4b (04b_released_grids)",
                                ("the phase of every cell of the released grids",),
                                ("grid", "load_name", "load", "temperature", "phase", "p_phase")),
    "findings": TableSpec("findings.csv", "every chapter's findings cell",
                          ("the findings of the chapters",), ("chapter", "claim", "verdict")),
}

#: What :func:`load_book_tables` reads (the explorers' inputs), in this order.
BOOK_TABLES: tuple[str, ...] = ("grid", "local", "density", "global_cells", "paths")


def table_path(workdir: str | os.PathLike, name: str) -> Path:
    """``{workdir}/tables/<file>`` of the table ``name`` (a key of :data:`TABLES`)."""
    if name not in TABLES:
        raise KeyError(f"unknown table {name!r}; the contract has {', '.join(TABLES)}")
    return Path(workdir) / TABLES_DIR / TABLES[name].file


def _check_columns(df: pd.DataFrame, name: str, axes: Sequence[str], where: str) -> None:
    spec = TABLES[name]
    need = list(spec.columns) + (list(axes) if spec.axes else [])
    absent = [c for c in need if c not in df.columns]
    if absent:
        raise KeyError(f"table {name!r} ({where}) lacks column(s) {', '.join(absent)}; "
                       f"it has {', '.join(map(str, df.columns))}")


def write_table(workdir: str | os.PathLike, name: str, df: pd.DataFrame,
                axes: Sequence[str] | None = None) -> Path:
    """Write ``df`` as the table ``name`` after checking its required columns (and, for a
    table keyed by the axes, the axis columns; by default those of :func:`read_grid`).
    Returns the path written."""
    path = table_path(workdir, name)
    if TABLES[name].axes and axes is None:
        g = read_axes(workdir)
        axes = [g[0].name, g[1].name]
    _check_columns(df, name, axes or (), f"to be written to {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return path


def _missing_message(path: Path, spec: TableSpec) -> str:
    return (f"{path} not found: {spec.chapter} writes it (it holds {', '.join(spec.provides)}); "
            "run that chapter first with the same workdir")


def read_table(workdir: str | os.PathLike, name: str) -> pd.DataFrame:
    """The table ``name`` of the contract. Raises ``FileNotFoundError`` naming the file and
    the chapter that writes it when it is missing, and ``ValueError`` when it is empty,
    unreadable or lacks a required column. Axis columns are cast to their axis's type."""
    path = table_path(workdir, name)
    spec = TABLES[name]
    if not path.exists():
        raise FileNotFoundError(_missing_message(path, spec))
    try:
        df = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is unreadable ({type(err).__name__}); rerun {spec.chapter}"
                         ) from err
    axes: list[str] = []
    if spec.axes or name == "grid":
        try:
            load, temp = read_axes(workdir)
            axes = [load.name, temp.name]
            for a in (load, temp):
                if a.name in df:
                    df[a.name] = _cast_column(df[a.name], a)
        except FileNotFoundError:
            if spec.axes:
                raise
    try:
        _check_columns(df, name, axes if spec.axes else (), str(path))
    except KeyError as err:
        raise ValueError(f"{err.args[0]}; rerun {spec.chapter}") from None
    return df


# --------------------------------------------------------------------------------------
# The grid
# --------------------------------------------------------------------------------------
def _cast_column(col: pd.Series, axis: Axis) -> pd.Series:
    if axis.dtype == "int":
        num = pd.to_numeric(col, errors="coerce")
        if num.notna().all() and np.allclose(num, np.round(num)):
            return num.round().astype("int64")
        return num
    return pd.to_numeric(col, errors="coerce").astype("float64")


@dataclass(frozen=True)
class Grid:
    """Chapter 1's grid: one row per run, and its two axes."""

    runs: pd.DataFrame      # grid.csv: run_id, every RunConfig field, seed, status, metrics
    load: Axis              # x of the phase diagrams
    temperature: Axis       # y of the phase diagrams
    workdir: Path = Path(".")

    @property
    def keys(self) -> list[str]:
        """The two axis columns, load first (the key of a cell)."""
        return [self.load.name, self.temperature.name]

    @property
    def load_values(self) -> list[Any]:
        """Load values, least capacity first (left to right)."""
        return load_order(self.load, self.runs[self.load.name])

    @property
    def temperature_values(self) -> list[Any]:
        """Temperature values, hottest first (top to bottom)."""
        return hot_order(self.temperature, self.runs[self.temperature.name])

    @property
    def ok_runs(self) -> pd.DataFrame:
        """The runs that did not diverge."""
        if "status" not in self.runs:
            return self.runs
        return self.runs[self.runs["status"] != "diverged"].reset_index(drop=True)

    @property
    def coldest(self) -> Any:
        return coldest(self.temperature, self.runs[self.temperature.name])

    @property
    def hottest(self) -> Any:
        return hottest(self.temperature, self.runs[self.temperature.name])


def _as_axis(a: str | Axis, kind: str) -> Axis:
    if isinstance(a, Axis):
        axis = a
    elif a in AXES:
        axis = AXES[a]
    else:
        raise ValueError(f"unknown {kind} axis {a!r}: known axes are {', '.join(AXES)}; pass "
                         f"an Axis(...) to describe a new one")
    if axis.kind != kind:
        raise ValueError(f"{axis.name!r} is a {axis.kind} axis, not a {kind} axis")
    return axis


def write_grid(workdir: str | os.PathLike, runs: pd.DataFrame, load: str | Axis,
               temperature: str | Axis) -> Path:
    """Write chapter 1's ``grid.csv`` (one row per run) and ``grid_axes.json`` (the two
    axes and their meaning, see the module docstring). ``load`` and ``temperature`` are
    column names of :data:`~landscape_utils.core.axes.AXES` or :class:`Axis` descriptions. Returns the tables folder."""
    la, ta = _as_axis(load, "load"), _as_axis(temperature, "temperature")
    if la.name == ta.name:
        raise ValueError(f"the load and temperature axes are both {la.name!r}")
    absent = [c for c in ("run_id", "seed", "status", la.name, ta.name) if c not in runs]
    if absent:
        raise KeyError(f"grid.csv needs column(s) {', '.join(absent)}; "
                       f"the runs table has {', '.join(map(str, runs.columns))}")
    tdir = Path(workdir) / TABLES_DIR
    tdir.mkdir(parents=True, exist_ok=True)
    runs.to_csv(tdir / TABLES["grid"].file, index=False)
    (tdir / AXES_FILE).write_text(json.dumps({
        "load_axis": la.name, "temperature_axis": ta.name,
        "load": la.to_dict(), "temperature": ta.to_dict()}, indent=1))
    return tdir


def read_axes(workdir: str | os.PathLike) -> tuple[Axis, Axis]:
    """(load, temperature) :class:`Axis` of the grid in ``workdir`` (``grid_axes.json``).
    Files written before the axes were described (names only) are read through
    :data:`~landscape_utils.core.axes.AXES`."""
    path = Path(workdir) / TABLES_DIR / AXES_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: {CH1} writes it (the grid's load and "
                                "temperature axes); run that chapter first with the same workdir")
    try:
        raw = json.loads(path.read_text())
        names = raw["load_axis"], raw["temperature_axis"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is unreadable ({type(err).__name__}: {err}); rerun {CH1}"
                         ) from None
    out = []
    for kind, name in zip(("load", "temperature"), names):
        desc = raw.get(kind)
        if isinstance(desc, dict):
            try:
                out.append(Axis(**desc))
            except TypeError as err:
                raise ValueError(f"{path}: bad description of the {kind} axis: {err}") from None
        else:
            out.append(_as_axis(str(name), kind))
    return out[0], out[1]


def read_grid(workdir: str | os.PathLike) -> Grid:
    """Chapter 1's grid: ``grid.csv`` with its axis columns cast to their types, and the
    two axes from ``grid_axes.json``. Raises ``FileNotFoundError`` naming the missing file
    and chapter 1."""
    load, temp = read_axes(workdir)
    runs = read_table(workdir, "grid")
    absent = [a.name for a in (load, temp) if a.name not in runs]
    if absent:
        raise ValueError(f"{table_path(workdir, 'grid')} has no column(s) {', '.join(absent)} "
                         f"named by {AXES_FILE}; rerun {CH1}")
    return Grid(runs, load, temp, Path(workdir))


# --------------------------------------------------------------------------------------
# Everything at once (the explorers), never raising
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BookTables:
    """The chapters' tables for one workdir; a table is None when it is not there yet."""

    workdir: Path
    load: str                           # load axis column, e.g. "width"
    temperature: str                    # temperature axis column, e.g. "batch_size"
    grid: pd.DataFrame | None = None    # one row per run (chapter 1)
    local: pd.DataFrame | None = None   # one row per run (chapter 2)
    density: pd.DataFrame | None = None  # long: run_id, lam, density (chapter 2)
    global_cells: pd.DataFrame | None = None  # one row per cell (chapter 3)
    paths: pd.DataFrame | None = None   # long: axes, pair, path, t, errors (chapter 3)
    history: pd.DataFrame | None = None  # long: run_id, epoch, train_loss, ..., axes, seed
    missing: tuple[str, ...] = field(default_factory=tuple)  # one line per missing piece

    @property
    def keys(self) -> list[str]:
        return [self.load, self.temperature]

    @property
    def load_axis(self) -> Axis:
        return axis_info(self.load)

    @property
    def temperature_axis(self) -> Axis:
        return axis_info(self.temperature)


def _read_lenient(path: Path, spec: TableSpec, axes: Sequence[str]
                  ) -> tuple[pd.DataFrame | None, str]:
    what = ", ".join(spec.provides)
    if not path.exists():
        return None, f"missing {what}: {path} not found; {spec.chapter} writes it"
    try:
        df = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        return None, (f"missing {what}: {path} is unreadable ({type(err).__name__}); "
                      f"rerun {spec.chapter}")
    need = list(spec.columns) + (list(axes) if spec.axes else [])
    absent = [c for c in need if c not in df.columns]
    if absent:
        return None, (f"missing {what}: {path} lacks column(s) {', '.join(absent)} "
                      f"(it has {', '.join(map(str, df.columns))}); rerun {spec.chapter}")
    if df.empty:
        return None, f"missing {what}: {path} has no rows; rerun {spec.chapter}"
    for a in axes:
        if a in df:
            df[a] = _cast_column(df[a], axis_info(a))
    return df, ""


def load_book_tables(workdir: str | os.PathLike, load: str | None = None,
                     temperature: str | None = None, history: bool = True) -> BookTables:
    """Read every table the explorers use (grid, local, density, global_cells, paths) that
    exists under ``workdir``.

    The axes come from ``grid_axes.json`` when present, else from ``load``/``temperature``,
    else ``("width", "batch_size")``. Nothing raises for a missing or malformed table: it is
    left as None and :attr:`BookTables.missing` gets a line naming the metrics lost, the
    file and the chapter that writes it. ``history`` also reads the per-epoch learning
    curves of chapter 1's runs from the run store.
    """
    workdir = Path(workdir)
    tdir = workdir / TABLES_DIR
    notes: list[str] = []
    if (tdir / AXES_FILE).exists():
        try:
            la, ta = read_axes(workdir)
            load, temperature = load or la.name, temperature or ta.name
        except ValueError as err:
            notes.append(f"{err}; assuming the axes")
    load = load or "width"
    temperature = temperature or "batch_size"
    frames: dict[str, pd.DataFrame | None] = {}
    for name in BOOK_TABLES:
        spec = TABLES[name]
        # the explorers need less of grid.csv than the contract asks of a new one
        spec = TableSpec(spec.file, spec.chapter, spec.provides, ("run_id",)) \
            if name == "grid" else spec
        frames[name], note = _read_lenient(tdir / spec.file, spec, (load, temperature))
        if note:
            notes.append(note)
    grid = frames["grid"]
    if grid is not None and not {load, temperature} <= set(grid.columns):
        notes.append(f"{tdir / 'grid.csv'} has no columns {load!r} and {temperature!r}; "
                     f"rerun {CH1}")
        grid = frames["grid"] = None
    hist = None
    if history and grid is not None:
        hist = _history(workdir, grid, [load, temperature])
        if hist is None:
            notes.append(f"missing learning curves: no history.json under {workdir / 'runs'} "
                         "for chapter 1's runs")
    return BookTables(workdir, load, temperature, history=hist, missing=tuple(notes), **frames)


def _history(workdir: Path, grid: pd.DataFrame, keys: list[str]) -> pd.DataFrame | None:
    ids = [r for r in grid.run_id if (workdir / "runs" / str(r) / "history.json").exists()]
    if not ids:
        return None
    hist = load_history(workdir, ids)
    cols = ["run_id", *keys, *(["seed"] if "seed" in grid else [])]
    return hist.merge(grid[cols], on="run_id", how="left")


def grid_base_config(grid: pd.DataFrame | Grid) -> dict[str, Any]:
    """The RunConfig fields that all of ``grid``'s runs share (the training setup), as
    plain Python values ready for :func:`runner.expand_grid`. Fields that vary (the axes,
    the seed) are left out."""
    runs = grid.runs if isinstance(grid, Grid) else grid
    base: dict[str, Any] = {}
    for k in CONFIG_KEYS:
        if k == "seed" or k not in runs.columns:
            continue
        vals = runs[k].dropna().unique()
        if len(vals) == 1:
            v = vals[0]
            base[k] = v.item() if isinstance(v, np.generic) else v
    return base
