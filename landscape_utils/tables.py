"""The tables the chapters write and read, and the meaning of the grid's two axes.

Every chapter leaves tidy CSV tables under ``{workdir}/tables``; later chapters, the
explorers and the tests read them back through this module only, so there is one contract
(:data:`TABLES`) and one place that knows which axis is the load, which the temperature,
and which end of each is hot.

The axes
--------
A grid has a **load-like** axis (x of every phase diagram) and a **temperature-like**
axis (y). Yang et al. (2021) call temperature-like the knobs that set the noise of SGD:
the temperature rises with the learning rate and falls with the batch size (the noise
scale of SGD goes as lr / batch size). Weight decay is the third temperature-like knob of
their sweeps, hotter when larger (stronger regularization, like more noise). Load-like
knobs set how much the model must fit relative to what it can: the model's size on one
side, the quantity and quality of the data on the other. The paper finds poorly connected
landscapes where models are small or the data are of low quality, so noisy labels act like
*less capacity per sample*, as does more data for the same model. We order a load axis by
**capacity per sample**, the end where a model fits its training set most easily being
the right of a phase diagram (phase I on the left, as in the paper's figure). The 1D model
of chapter 5 has its own two axes, ``load`` and ``temperature``.

=================  ===========  =====  ========  ============  ===================================
axis               kind         dtype  hot end   capacity end  why
=================  ===========  =====  ========  ============  ===================================
``batch_size``     temperature  int    small     --            SGD noise ~ lr / batch size
``lr``             temperature  float  large     --            SGD noise ~ lr / batch size
``weight_decay``   temperature  float  large     --            stronger regularization is hotter
``momentum``       temperature  float  large     --            effective step lr / (1 - momentum)
``temperature``    temperature  float  large     --            the 1D model's T (chapter 5)
``width``          load         int    --        large         more parameters per sample
``depth``          load         int    --        large         more parameters per sample
``data_fraction``  load         float  --        small         fewer samples to fit
``label_noise``    load         float  --        small         noisy labels are more to memorize
``load``           load         float  --        large         the 1D model: larger load, smoother
=================  ===========  =====  ========  ============  ===================================

:func:`hot_order` sorts a temperature axis's values hottest first (the top row of a phase
diagram); :func:`load_order` sorts a load axis's values from the least to the most capacity
(left to right); :func:`coldest` / :func:`hottest` pick one value.

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
``phase_cells.csv``         4        axes; every metric of the cells, phase (+ p_phase if given)
``rugged_phase_cells.csv``  5        load, temperature (the 1D model's own axes), annealed,
                                     the 1D metrics, phase
``findings.csv``            any      chapter, key, claim, verdict, evidence, n, grid, kind,
                                     p_value, p_adjusted, corrected_verdict (written and read
                                     by ``landscape_utils.findings``)
==========================  =======  ==============================================================

:func:`write_table` checks a table's required columns before writing it;
:func:`read_table` reads one and, when it is missing, raises a ``FileNotFoundError`` that
names the file and the chapter that writes it. :func:`load_book_tables` reads everything at
once and never raises (the explorers show what exists and list what is missing).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "Axis",
    "AXES",
    "axis_info",
    "hot_order",
    "load_order",
    "coldest",
    "hottest",
    "Grid",
    "write_grid",
    "read_grid",
    "read_axes",
    "TableSpec",
    "TABLES",
    "table_path",
    "write_table",
    "read_table",
    "read_findings",
    "BookTables",
    "load_book_tables",
    "assemble_cells",
    "grid_base_config",
]

TABLES_DIR = "tables"          # under the workdir
AXES_FILE = "grid_axes.json"   # chapter 1's description of the grid's axes


# --------------------------------------------------------------------------------------
# Axes
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Axis:
    """One axis of a grid and what its values mean."""

    name: str                       # the column, e.g. "batch_size"
    kind: str                       # "load" | "temperature" | "other"
    dtype: str                      # "int" | "float": the column's type after a CSV round trip
    hot_end: str | None = None      # temperature axes: "small" | "large", the noisiest end
    capacity_end: str | None = None  # load axes: "small" | "large", most capacity per sample
    label: str = ""                 # axis title of a chart
    log: bool = True                # values spaced by factors (log axes on quantitative charts)

    def __post_init__(self) -> None:
        if self.kind not in ("load", "temperature", "other"):
            raise ValueError(f"axis {self.name!r}: kind must be load, temperature or other, "
                             f"got {self.kind!r}")
        if self.dtype not in ("int", "float"):
            raise ValueError(f"axis {self.name!r}: dtype must be int or float, got {self.dtype!r}")
        for attr in ("hot_end", "capacity_end"):
            v = getattr(self, attr)
            if v not in (None, "small", "large"):
                raise ValueError(f"axis {self.name!r}: {attr} must be small, large or None, "
                                 f"got {v!r}")
        if self.kind == "temperature" and self.hot_end is None:
            raise ValueError(f"temperature axis {self.name!r} needs hot_end")
        if self.kind == "load" and self.capacity_end is None:
            raise ValueError(f"load axis {self.name!r} needs capacity_end")

    @property
    def title(self) -> str:
        return self.label or self.name

    def cast(self, values: Any) -> Any:
        """``values`` (a scalar, list, array or Series) as this axis's Python/numpy type."""
        typ = int if self.dtype == "int" else float
        if isinstance(values, pd.Series):
            return values.astype("int64" if typ is int else "float64")
        if isinstance(values, (list, tuple, np.ndarray)):
            return [typ(v) for v in values]
        return typ(values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


AXES: dict[str, Axis] = {a.name: a for a in (
    Axis("batch_size", "temperature", "int", hot_end="small",
         label="batch size (temperature; small = hot)"),
    Axis("lr", "temperature", "float", hot_end="large",
         label="learning rate (temperature; large = hot)"),
    Axis("weight_decay", "temperature", "float", hot_end="large",
         label="weight decay (temperature; large = hot)"),
    Axis("momentum", "temperature", "float", hot_end="large", log=False,
         label="momentum (temperature; large = hot)"),
    Axis("temperature", "temperature", "float", hot_end="large", label="temperature T"),
    Axis("width", "load", "int", capacity_end="large", label="width (load)"),
    Axis("depth", "load", "int", capacity_end="large", log=False, label="depth (load)"),
    Axis("data_fraction", "load", "float", capacity_end="small",
         label="data fraction (load; less data = more capacity per sample)"),
    Axis("label_noise", "load", "float", capacity_end="small", log=False,
         label="label noise (load; more noise = less capacity per sample)"),
    Axis("load", "load", "float", capacity_end="large", label="load (1D model)"),
)}


def axis_info(name: str | Axis) -> Axis:
    """The :class:`Axis` of a column name (an :class:`Axis` is returned as is). A name
    outside :data:`AXES` gets kind ``"other"``: drawn in ascending order, no hot end."""
    if isinstance(name, Axis):
        return name
    if name in AXES:
        return AXES[name]
    return Axis(str(name), "other", "float", label=str(name))


def _sorted_unique(values: Iterable[Any]) -> list[Any]:
    vals = pd.unique(pd.Series(list(values)).dropna())
    return sorted(v.item() if isinstance(v, np.generic) else v for v in vals)


def hot_order(axis: str | Axis, values: Iterable[Any]) -> list[Any]:
    """The distinct ``values`` of a temperature axis, hottest first (the top row of a phase
    diagram). An axis of another kind comes back in ascending order."""
    a = axis_info(axis)
    vals = _sorted_unique(values)
    return vals[::-1] if a.hot_end == "large" else vals


def load_order(axis: str | Axis, values: Iterable[Any]) -> list[Any]:
    """The distinct ``values`` of a load axis from the least to the most capacity per sample
    (left to right on a phase diagram). An axis of another kind comes back ascending."""
    a = axis_info(axis)
    vals = _sorted_unique(values)
    return vals[::-1] if a.capacity_end == "small" else vals


def _hot_to_cold(axis: str | Axis, values: Iterable[Any]) -> list[Any]:
    a = axis_info(axis)
    if a.kind != "temperature":
        raise ValueError(f"{a.name!r} is not a temperature axis (kind {a.kind!r})")
    order = hot_order(a, values)
    if not order:
        raise ValueError(f"no values of {a.name!r} to choose from")
    return order


def hottest(axis: str | Axis, values: Iterable[Any]) -> Any:
    """The hottest of ``values`` on a temperature axis."""
    return _hot_to_cold(axis, values)[0]


def coldest(axis: str | Axis, values: Iterable[Any]) -> Any:
    """The coldest of ``values`` on a temperature axis (e.g. the largest batch size)."""
    return _hot_to_cold(axis, values)[-1]


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


def read_findings(workdir: str | os.PathLike) -> pd.DataFrame:
    """``findings.csv`` as :func:`landscape_utils.findings.read_findings` reads it (columns
    ``findings.FINDINGS_COLUMNS``; empty when no chapter wrote findings yet)."""
    from .findings import read_findings as _read

    return _read(workdir)


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
    column names of :data:`AXES` or :class:`Axis` descriptions. Returns the tables folder."""
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
    :data:`AXES`."""
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
    from .store import load_history

    ids = [r for r in grid.run_id if (workdir / "runs" / str(r) / "history.json").exists()]
    if not ids:
        return None
    hist = load_history(workdir, ids)
    cols = ["run_id", *keys, *(["seed"] if "seed" in grid else [])]
    return hist.merge(grid[cols], on="run_id", how="left")


def _align_keys(df: pd.DataFrame, like: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Cast ``df``'s key columns to the dtypes of ``like`` (CSV round trips may differ)."""
    df = df.copy()
    for k in keys:
        if k in df and k in like and df[k].dtype != like[k].dtype:
            try:
                df[k] = df[k].astype(like[k].dtype)
            except (TypeError, ValueError):
                pass
    return df


def assemble_cells(tables: BookTables, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per grid cell with every metric available: chapter 1's losses and accuracies
    and chapter 2's Hessian metrics averaged over seeds (:func:`taxonomy.cell_table`, with
    ``_std`` columns), joined with chapter 3's per-cell global metrics.

    Cells come from chapter 1's grid (or chapter 3's table when the grid is missing);
    a metric whose table is missing is absent, and a cell the other tables do not cover
    gets NaN. Returns an empty frame with the key columns when nothing is there.
    """
    from .taxonomy import METRICS as TAXONOMY_METRICS
    from .taxonomy import cell_table

    metrics = TAXONOMY_METRICS if metrics is None else metrics
    keys = tables.keys
    cells = None
    if tables.grid is not None:
        runs = tables.grid
        if tables.local is not None:
            extra = [c for c in tables.local.columns if c == "run_id" or c not in runs.columns]
            runs = runs.merge(tables.local[extra], on="run_id", how="left")
        cells = cell_table(runs, *keys, metrics=metrics)
    gc = tables.global_cells
    if gc is not None:
        gc = gc.drop(columns=[c for c in ("n_seeds", "n_diverged") if c in gc.columns])
        if cells is None:
            cells = gc.sort_values(keys).reset_index(drop=True)
        else:
            gc = _align_keys(gc, cells, keys)
            gc = gc[[c for c in gc.columns if c in keys or c not in cells.columns]]
            cells = cells.merge(gc, on=keys, how="left")
    if cells is None:
        return pd.DataFrame(columns=keys)
    return cells


def grid_base_config(grid: pd.DataFrame | Grid) -> dict[str, Any]:
    """The RunConfig fields that all of ``grid``'s runs share (the training setup), as
    plain Python values ready for :func:`runner.expand_grid`. Fields that vary (the axes,
    the seed) are left out."""
    from .runner import CONFIG_KEYS

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
