"""The phase explorer of chapter 4, and the tables behind it.

Three layers, each usable on its own:

* **Reading.** :func:`load_book_tables` reads what chapters 1-3 leave under
  ``{workdir}/tables`` and says, per missing file, which metrics are lost and which chapter
  writes them; :func:`assemble_cells` joins the tables into one row per grid cell;
  :func:`grid_base_config` recovers chapter 1's training setup from its table, so that new
  sweeps train the same models; :func:`released_paths` reads the Bezier-curve profiles of
  the authors' release (``curve_test.npz``), safely (no pickles).
* **Pure chart builders** (:func:`map_chart`, :func:`curves_chart`, :func:`path_chart`,
  :func:`density_chart`, :func:`info_chart`): a table in, an altair chart out. Given an
  altair selection they filter by it, so the same builders serve both explorers.
* **Two explorers.** :class:`PhaseExplorer` is an ipywidgets app for JupyterLab (pick a
  metric, the axes and a cell; see the cell's learning curves, its error along the Bezier
  curve and the line, and its Hessian spectral density). Its state lives in the widgets and
  every view is a pure method of that state, so it is testable headless.
  :func:`linked_explorer` is the static-HTML counterpart: one altair chart where a click on
  the phase map (``alt.selection_point``) filters the detail charts; it needs no kernel
  and no network.

Table contract (``{workdir}/tables``; chapter 4 reads, the others write):

=====================  =========  ========================================================
file                   chapter    columns
=====================  =========  ========================================================
``grid.csv``           1          run_id, every RunConfig field, status, train/test loss/acc
``grid_axes.json``     1          load_axis, temperature_axis
``local.csv``          2          run_id, lambda_max, trace, trace_stderr, ...
``density.csv``        2          run_id, lam, density (one seed per cell)
``global_cells.csv``   3          the two axis columns, mc, linear_mc, cka, l2 (+ ``_std``)
``paths.csv``          3          the two axis columns, pair, path (bezier | linear), t,
                                  train_err, train_loss, test_err (errors in percent)
=====================  =========  ========================================================
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import altair as alt
import numpy as np
import pandas as pd

from . import plotting
from .plotting import METRICS as STYLES
from .taxonomy import METRICS as TAXONOMY_METRICS

__all__ = [
    "TABLES",
    "TableSpec",
    "BookTables",
    "load_book_tables",
    "assemble_cells",
    "grid_base_config",
    "released_paths",
    "map_chart",
    "curves_chart",
    "path_chart",
    "density_chart",
    "info_chart",
    "linked_explorer",
    "PhaseExplorer",
]

#: Metrics an explorer offers, in the order of the paper's figure.
EXPLORER_METRICS: tuple[str, ...] = (
    "test_acc", "train_loss", "lambda_max", "trace", "mc", "linear_mc", "cka", "l2",
    "train_acc", "test_loss",
)


# --------------------------------------------------------------------------------------
# Reading the chapters' tables
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TableSpec:
    """One table of the contract between chapters."""

    file: str                   # file name under {workdir}/tables
    chapter: str                # who writes it, for the "missing" message
    provides: tuple[str, ...]   # what is lost without it (metric names or a phrase)
    columns: tuple[str, ...]    # columns it must have (besides the axes, see ``axes``)
    axes: bool = False          # keyed by the two axis columns (else by run_id)


TABLES: dict[str, TableSpec] = {
    "grid": TableSpec("grid.csv", "chapter 1 (01_training_grid)",
                      ("train_loss", "train_acc", "test_loss", "test_acc"), ("run_id",)),
    "local": TableSpec("local.csv", "chapter 2 (local metrics)", ("lambda_max", "trace"),
                       ("run_id",)),
    "density": TableSpec("density.csv", "chapter 2 (local metrics)",
                         ("the Hessian spectral density",), ("run_id", "lam", "density")),
    "global_cells": TableSpec("global_cells.csv", "chapter 3 (global metrics)",
                              ("mc", "linear_mc", "cka", "l2"), (), axes=True),
    "paths": TableSpec("paths.csv", "chapter 3 (global metrics)",
                       ("the error along the Bezier curve and the line",),
                       ("path", "t", "train_err"), axes=True),
}


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


def _read_csv(path: Path, spec: TableSpec, axes: Sequence[str]) -> tuple[pd.DataFrame | None, str]:
    what = ", ".join(spec.provides)
    if not path.exists():
        return None, f"missing {what}: {path} not found; {spec.chapter} writes it"
    try:
        df = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        return None, f"missing {what}: {path} is unreadable ({type(err).__name__}); rerun {spec.chapter}"
    need = list(spec.columns) + (list(axes) if spec.axes else [])
    absent = [c for c in need if c not in df.columns]
    if absent:
        return None, (f"missing {what}: {path} lacks column(s) {', '.join(absent)} "
                      f"(it has {', '.join(map(str, df.columns))}); rerun {spec.chapter}")
    if df.empty:
        return None, f"missing {what}: {path} has no rows; rerun {spec.chapter}"
    return df, ""


def load_book_tables(workdir: str | os.PathLike, load: str | None = None,
                     temperature: str | None = None, history: bool = True) -> BookTables:
    """Read every table of the contract (module docstring) that exists under ``workdir``.

    The axes come from ``grid_axes.json`` when present, else from ``load``/``temperature``,
    else ``("width", "batch_size")``. Nothing raises for a missing or malformed table: it is
    left as None and :attr:`BookTables.missing` gets a line naming the metrics lost, the
    file and the chapter that writes it. ``history`` also reads the per-epoch learning
    curves of chapter 1's runs from the run store.
    """
    workdir = Path(workdir)
    tdir = workdir / "tables"
    notes: list[str] = []
    axes_file = tdir / "grid_axes.json"
    if axes_file.exists():
        try:
            ax = pd.read_json(axes_file, typ="series")
            load = load or str(ax["load_axis"])
            temperature = temperature or str(ax["temperature_axis"])
        except (ValueError, KeyError) as err:
            notes.append(f"{axes_file} is unreadable ({err}); assuming the axes")
    load = load or "width"
    temperature = temperature or "batch_size"
    frames: dict[str, pd.DataFrame | None] = {}
    for name, spec in TABLES.items():
        frames[name], note = _read_csv(tdir / spec.file, spec, (load, temperature))
        if note:
            notes.append(note)
    grid = frames["grid"]
    if grid is not None and not {load, temperature} <= set(grid.columns):
        notes.append(f"{tdir / 'grid.csv'} has no columns {load!r} and {temperature!r}; "
                     "rerun chapter 1")
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


def assemble_cells(tables: BookTables,
                   metrics: Sequence[str] = TAXONOMY_METRICS) -> pd.DataFrame:
    """One row per grid cell with every metric available: chapter 1's losses and accuracies
    and chapter 2's Hessian metrics averaged over seeds (:func:`taxonomy.cell_table`, with
    ``_std`` columns), joined with chapter 3's per-cell global metrics.

    Cells come from chapter 1's grid (or chapter 3's table when the grid is missing);
    a metric whose table is missing is absent, and a cell the other tables do not cover
    gets NaN. Returns an empty frame with the key columns when nothing is there.
    """
    from .taxonomy import cell_table

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


def grid_base_config(grid: pd.DataFrame) -> dict[str, Any]:
    """The RunConfig fields that all of ``grid``'s runs share (the training setup), as
    plain Python values ready for :func:`runner.expand_grid`. Fields that vary (the axes,
    the seed) are left out."""
    from .runner import CONFIG_KEYS

    base: dict[str, Any] = {}
    for k in CONFIG_KEYS:
        if k == "seed" or k not in grid.columns:
            continue
        vals = grid[k].dropna().unique()
        if len(vals) == 1:
            v = vals[0]
            base[k] = v.item() if isinstance(v, np.generic) else v
    return base


def released_paths(path: str | os.PathLike, paper_grid_only: bool = True,
                   schedule: str = "lr_decay") -> pd.DataFrame:
    """The error along the Bezier curve between runs 0 and 1 of every cell of the authors'
    release (``curve_test.npz``), long form with the columns of chapter 3's ``paths.csv``:
    ``width``, ``batch_size``, ``pair`` ("0-1"), ``path`` ("bezier"), ``t``,
    ``train_err``, ``train_loss``, ``test_err`` (errors in percent).

    The archive is streamed (nothing unpacked); ``np.load`` runs with
    ``allow_pickle=False``, so an object array is refused, never executed.
    """
    from .reference import PAPER_BATCH_SIZES, iter_metric_files

    cols = {"ts": "t", "tr_err": "train_err", "tr_loss": "train_loss", "te_err": "test_err"}
    frames = []
    for width, bs, fname, source, raw in iter_metric_files(path, schedule=schedule):
        if fname != "curve_test.npz" or (paper_grid_only and bs not in PAPER_BATCH_SIZES):
            continue
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            arrays = {new: np.asarray(z[old], dtype=np.float64).ravel()
                      for old, new in cols.items() if old in z.files}
        if "t" not in arrays or "train_err" not in arrays:
            continue
        n = len(arrays["t"])
        if any(len(a) != n for a in arrays.values()):
            raise ValueError(f"{source}: arrays of different lengths")
        frames.append(pd.DataFrame({"width": width, "batch_size": bs, "pair": "0-1",
                                    "path": "bezier", **arrays}))
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["width", "batch_size", "pair", "path", *cols.values()])
    return out.sort_values(["width", "batch_size", "t"]).reset_index(drop=True)


# --------------------------------------------------------------------------------------
# Pure chart builders
# --------------------------------------------------------------------------------------
def _label(metric: str) -> str:
    return STYLES[metric].label if metric in STYLES else metric


def _filtered(chart: alt.Chart, selection: Any | None) -> alt.Chart:
    return chart.transform_filter(selection) if selection is not None else chart


def map_chart(cells: pd.DataFrame, color: str, x: str, y: str, width: int = 260,
              height: int = 200, title: str | None = None) -> alt.Chart:
    """The phase-diagram panel of ``cells`` coloured by ``color``: a metric (plotting's
    scale and scheme) or ``"phase"`` (plotting's phase colours)."""
    if color == "phase":
        return plotting.phase_map(cells, "phase", x, y, title=title or "phase",
                                  width=width, height=height)
    return plotting.phase_heatmap(cells, color, x, y, title=title, width=width, height=height)


def curves_chart(history: pd.DataFrame, selection: Any | None = None, width: int = 230,
                 height: int = 160, title: str = "learning curves") -> alt.Chart:
    """Train loss per epoch (running, train mode), one line per seed.

    ``history``: long, with ``run_id``, ``epoch``, ``train_loss`` and optionally ``seed``.
    """
    tips = [alt.Tooltip("epoch:Q"), alt.Tooltip("train_loss:Q", format=".3g")]
    enc: dict[str, Any] = {"detail": "run_id:N"} if "run_id" in history else {}
    if "seed" in history:
        enc["color"] = alt.Color("seed:N", title="seed", scale=alt.Scale(scheme="dark2"))
        tips.append(alt.Tooltip("seed:N"))
    data = history[history["train_loss"] > 0]  # log scale
    chart = alt.Chart(data, title=title, width=width, height=height)
    return _filtered(chart, selection).mark_line(strokeWidth=1.5).encode(
        x=alt.X("epoch:Q"),
        y=alt.Y("train_loss:Q", scale=alt.Scale(type="log"), title="train loss"),
        tooltip=tips, **enc)


def path_chart(paths: pd.DataFrame, selection: Any | None = None, width: int = 230,
               height: int = 160, title: str = "error along the path") -> alt.Chart:
    """0-1 error (percent) against t along the Bezier curve and the line: colour = path,
    solid = train, dashed = test, one line per seed pair.

    ``paths``: long, with ``path``, ``t``, ``train_err`` and optionally ``test_err`` and
    ``pair``.
    """
    splits = [c for c in ("train_err", "test_err") if c in paths]
    heading = alt.TitleParams(title, subtitle="solid: train, dashed: test" if len(splits) > 1
                              else "train")
    chart = _filtered(alt.Chart(paths, title=heading, width=width, height=height), selection)
    enc: dict[str, Any] = {}
    if "pair" in paths:
        enc["detail"] = "pair:N"
    return chart.transform_fold(splits, as_=["split", "error"]).mark_line(
        point=True, strokeWidth=1.5).encode(
        x=alt.X("t:Q", title="t (0 and 1 are the two seeds)"),
        y=alt.Y("error:Q", title="0-1 error (%)"),
        color=alt.Color("path:N", title="path",
                        scale=alt.Scale(domain=["bezier", "linear"], range=["#2ca02c", "#7f7f7f"])),
        strokeDash=alt.StrokeDash("split:N", sort=["train_err", "test_err"], legend=None),
        tooltip=[alt.Tooltip("path:N"), alt.Tooltip("split:N"), alt.Tooltip("t:Q"),
                 alt.Tooltip("error:Q", format=".3g")],
        **enc)


def density_chart(density: pd.DataFrame, selection: Any | None = None, width: int = 230,
                  height: int = 160, title: str = "Hessian spectral density") -> alt.Chart:
    """Smoothed spectral density (log scale) against the eigenvalue λ.

    ``density``: long, with ``lam`` and ``density``; non-positive densities are dropped.
    """
    data = density[density["density"] > 0]
    chart = _filtered(alt.Chart(data, title=title, width=width, height=height), selection)
    return chart.mark_line(strokeWidth=1.5, color="#9467bd").encode(
        x=alt.X("lam:Q", title="eigenvalue λ"),
        y=alt.Y("density:Q", scale=alt.Scale(type="log"), title="density"),
        tooltip=[alt.Tooltip("lam:Q", format=".3g"), alt.Tooltip("density:Q", format=".3g")])


def info_chart(cells: pd.DataFrame, keys: Sequence[str], metrics: Sequence[str],
               selection: Any | None = None, width: int = 150, height: int | None = None,
               title: str = "selected cell") -> alt.VConcatChart:
    """The selected cell's keys and phase (a header line) above its metrics (one line each:
    the metric's label, its value). Built from ``cells`` itself, folded in Vega, so in a
    linked chart it shares the heatmap's data; a selection filters it to one cell."""
    keys, metrics = list(keys), [m for m in metrics if m in cells]
    header_expr = " + ', ' + ".join(f"'{k} ' + datum['{k}']" for k in keys)
    if "phase" in cells:
        header_expr += " + ', phase ' + (datum.phase || '?')"
    header = _filtered(alt.Chart(cells, title=title, width=width, height=14), selection)
    header = header.transform_calculate(header=header_expr).mark_text(
        align="left", fontWeight="bold", fontSize=12).encode(
        x=alt.value(0), y=alt.value(7), text="header:N")
    short = {m: _label(m).split(" (")[0].replace("\\", "").replace("'", "\\'") for m in metrics}
    labels = "{" + ", ".join(f"'{m}': '{v}'" for m, v in short.items()) + "}"
    body = _filtered(alt.Chart(cells, width=width, height=height or 18 * len(metrics)),
                     selection)
    body = body.transform_fold(metrics, as_=["metric", "value"]).mark_text(
        align="left", fontSize=12).encode(
        x=alt.value(4),
        y=alt.Y("metric:N", sort=metrics, title=None,
                axis=alt.Axis(labelExpr=f"{labels}[datum.value]", ticks=False, domain=False,
                              labelFontSize=12)),
        text=alt.Text("value:Q", format=".4g"))
    return alt.vconcat(header, body, spacing=4)


def _py(v: Any) -> Any:
    """A JSON-friendly Python scalar (selection values end up in the chart's JSON)."""
    return v.item() if isinstance(v, np.generic) else v


def _thin(df: pd.DataFrame | None, by: Sequence[str], order: str, max_points: int
          ) -> pd.DataFrame | None:
    """Keep at most about ``max_points`` evenly spaced rows (in ``order``) per group."""
    if df is None or df.empty:
        return df
    df = df.sort_values([*by, order])
    pos = df.groupby(list(by), sort=False).cumcount()
    size = df.groupby(list(by), sort=False)[order].transform("size")
    step = np.maximum(1, np.ceil(size / max_points)).astype(int)
    keep = (pos % step == 0) | (pos == size - 1)
    return df[keep]


def _floor(density: pd.DataFrame | None, by: Sequence[str], rel: float = 1e-4
           ) -> pd.DataFrame | None:
    """Drop the points of each density below ``rel`` × its peak: a log axis cannot show
    the empty stretches between the spectrum's peaks, and they would squash the rest."""
    if density is None or density.empty:
        return density
    peak = density.groupby(list(by))["density"].transform("max")
    return density[density["density"] >= rel * peak]


def _slim(df: pd.DataFrame | None, cols: Sequence[str], digits: int = 4
          ) -> pd.DataFrame | None:
    """Only ``cols`` (those present), floats rounded to ``digits`` significant digits:
    what a chart inlines into the page, kept small."""
    if df is None:
        return None
    out = df[[c for c in dict.fromkeys(cols) if c in df.columns]].copy()
    for c in out.columns:
        if pd.api.types.is_float_dtype(out[c]):
            v = out[c].to_numpy(dtype=np.float64)
            ok = np.isfinite(v) & (v != 0)
            mag = np.floor(np.log10(np.abs(np.where(ok, v, 1.0))))
            scale = 10.0 ** np.clip(digits - 1 - mag, -300, 300)
            with np.errstate(over="ignore", invalid="ignore"):
                rounded = np.round(v * scale) / scale
            out[c] = np.where(ok & np.isfinite(rounded), rounded, v)
    return out


# --------------------------------------------------------------------------------------
# The static explorer (altair selection, no kernel)
# --------------------------------------------------------------------------------------
def _with_keys(table: pd.DataFrame | None, runs: pd.DataFrame | None, keys: Sequence[str]
               ) -> pd.DataFrame | None:
    """``table`` with the cell keys attached (via run_id when it lacks them)."""
    if table is None or table.empty:
        return None
    if all(k in table for k in keys):
        return table
    if runs is None or "run_id" not in table:
        return None
    cols = ["run_id", *keys, *(["seed"] if "seed" in runs and "seed" not in table else [])]
    return table.merge(runs[cols], on="run_id", how="inner")


def default_cell(cells: pd.DataFrame, keys: Sequence[str]) -> dict[str, Any]:
    """The cell shown first: the best mean test accuracy, else the first cell."""
    if "test_acc" in cells and cells["test_acc"].notna().any():
        row = cells.loc[cells["test_acc"].idxmax()]
    else:
        row = cells.iloc[0]
    return {k: _py(row[k]) for k in keys}


def linked_explorer(cells: pd.DataFrame, x: str, y: str, color: str = "phase",
                    history: pd.DataFrame | None = None, paths: pd.DataFrame | None = None,
                    density: pd.DataFrame | None = None, runs: pd.DataFrame | None = None,
                    metrics: Sequence[str] = EXPLORER_METRICS, initial: dict | None = None,
                    max_points: int = 80, panel_width: int = 230) -> alt.VConcatChart:
    """A click-to-explore chart for the static book: the phase map (or a metric) with a
    point selection on its cells, a text panel with the selected cell's metrics, and the
    detail charts that exist (learning curves, path profiles, spectral density) filtered
    to the selected cell. Tooltips show every metric. Works offline: it is one Vega-Lite
    spec with its (thinned) data inline.

    Args:
        cells: one row per cell with ``x``, ``y``, metrics and (for ``color="phase"``)
            ``phase``.
        history / paths / density: long tables keyed by the axes, or by ``run_id`` with
            ``runs`` (e.g. chapter 1's grid) giving each run's axes.
        initial: the cell selected at first (default :func:`default_cell`).
        max_points: at most about this many points per line.
    """
    keys = [x, y]
    present = [m for m in metrics if m in cells and cells[m].notna().any()]
    init = initial or default_cell(cells, keys)
    sel = alt.selection_point(name="cell", fields=keys, on="click", clear=False, toggle=False,
                              value=[{k: _py(v) for k, v in init.items()}])
    tips = [alt.Tooltip(f"{x}:O"), alt.Tooltip(f"{y}:O")]
    if "phase" in cells:
        tips.append(alt.Tooltip("phase:N"))
    tips += [alt.Tooltip(f"{m}:Q", title=_label(m), format=".4g") for m in present]
    cols = [*keys, *(["phase"] if "phase" in cells else []), *present]
    cells = _slim(cells, cols)
    heat = map_chart(cells, color, x, y, width=220, height=180,
                     title=f"{_label(color) if color != 'phase' else 'phase'} (click a cell)"
                     ).add_params(sel).encode(
        stroke=alt.value("black"),
        strokeWidth=alt.when(sel).then(alt.value(3)).otherwise(alt.value(0)),
        tooltip=tips)
    info = info_chart(cells, keys, present, selection=sel, width=120)
    details = []
    hist = _thin(_with_keys(history, runs, keys), ["run_id"], "epoch", max_points)
    if hist is not None:
        # one line per seed once filtered to a cell: the run ids need not be shipped
        hist = _slim(hist, [*keys, "seed" if "seed" in hist else "run_id", "epoch",
                            "train_loss"])
        details.append(curves_chart(hist, sel, width=panel_width))
    if paths is not None and not paths.empty:
        by = [*keys, *[c for c in ("pair", "path") if c in paths]]
        slim = _slim(_thin(paths, by, "t", max_points), [*by, "t", "train_err", "test_err"])
        details.append(path_chart(slim, sel, width=panel_width))
    dens = _thin(_floor(_with_keys(density, runs, keys), keys), [*keys], "lam", max_points)
    if dens is not None:
        details.append(density_chart(_slim(dens, [*keys, "lam", "density"]), sel,
                                     width=panel_width))
    rows = [alt.hconcat(heat, info)]
    for i in range(0, len(details), 2):  # two per row: the book's pages are narrow
        rows.append(alt.hconcat(*details[i:i + 2]).resolve_scale(color="independent"))
    return alt.vconcat(*rows).resolve_scale(color="independent", strokeDash="independent")


# --------------------------------------------------------------------------------------
# The JupyterLab explorer (ipywidgets)
# --------------------------------------------------------------------------------------
class PhaseExplorer:
    """Pick a metric, the axes and a cell; see the phase diagram and the cell's details.

    The state is held by four ``ipywidgets.Dropdown`` attributes — ``metric``, ``x``,
    ``y`` and ``cell`` (whose value is the tuple of the cell's key values, in ``keys``
    order) — and every view is a pure method of that state (:meth:`map_chart`,
    :meth:`summary`, :meth:`curves_chart`, :meth:`path_chart`, :meth:`density_chart`,
    :meth:`detail_chart`). Changing a widget re-renders the views into
    ``ipywidgets.Output`` areas and records what was shown in :attr:`shown`, so a test can
    change a value and check the display without a browser::

        ex = PhaseExplorer(cells, ["width", "batch_size"], history=hist)
        ex.metric.value = "cka"
        ex.select(width=64, batch_size=16)
        ex.shown["map"]        # the chart now on screen, coloured by cka

    In a notebook, make it the last expression of a cell (or ``display(ex)``).
    """

    def __init__(self, cells: pd.DataFrame, keys: Sequence[str],
                 history: pd.DataFrame | None = None, paths: pd.DataFrame | None = None,
                 density: pd.DataFrame | None = None, runs: pd.DataFrame | None = None,
                 metrics: Sequence[str] = EXPLORER_METRICS, notes: Iterable[str] = (),
                 title: str = "phase explorer"):
        import ipywidgets as W

        self.keys = list(keys)
        if len(self.keys) < 2:
            raise ValueError(f"need at least two key columns, got {self.keys}")
        absent = [k for k in self.keys if k not in cells]
        if absent:
            raise KeyError(f"key column(s) {absent} not in the cells table")
        if cells.empty:
            raise ValueError("the cells table is empty: nothing to explore")
        self.cells = cells.sort_values(self.keys).reset_index(drop=True)
        self.history = _with_keys(history, runs, self.keys)
        self.paths = paths if paths is not None and not paths.empty else None
        self.density = _with_keys(density, runs, self.keys)
        self.notes = list(notes)
        self.title = title
        self.metrics = [m for m in metrics if m in self.cells and self.cells[m].notna().any()]
        options = (["phase"] if "phase" in self.cells and self.cells["phase"].notna().any()
                   else []) + self.metrics
        if not options:
            raise ValueError("the cells table has no metric to show")
        self.shown: dict[str, Any] = {}
        self._busy = False

        style = {"description_width": "initial"}
        self.metric = W.Dropdown(options=options, value=options[0], description="colour by",
                                 style=style)
        self.x = W.Dropdown(options=self.keys, value=self.keys[0], description="x (load)",
                            style=style)
        self.y = W.Dropdown(options=self.keys, value=self.keys[1], description="y (temperature)",
                            style=style)
        init = default_cell(self.cells, self.keys)
        self.cell = W.Dropdown(options=self.cell_options(),
                               value=tuple(init[k] for k in self.keys), description="cell",
                               style=style, layout=W.Layout(width="420px"))
        self.map_out, self.detail_out = W.Output(), W.Output()
        self.info = W.HTML()
        self.metric.observe(lambda _: self._render_map(), names="value")
        self.x.observe(self._on_axis, names="value")
        self.y.observe(self._on_axis, names="value")
        self.cell.observe(lambda _: self._render_all(), names="value")
        self.widget = W.VBox([
            W.HTML(f"<b>{title}</b>"),
            W.HBox([self.metric, self.x, self.y]),
            self.cell,
            W.HBox([self.map_out, self.info]),
            self.detail_out,
        ])
        self._render_all()

    # ---- construction from the book's tables ---------------------------------------
    @classmethod
    def from_tables(cls, tables: BookTables, cells: pd.DataFrame, **kwargs) -> "PhaseExplorer":
        """An explorer of our grid: ``cells`` (with ``phase``) and the long tables of
        ``tables`` (learning curves, paths, densities)."""
        return cls(cells, tables.keys, history=tables.history, paths=tables.paths,
                   density=tables.density, runs=tables.grid, notes=tables.missing, **kwargs)

    # ---- state -> data -------------------------------------------------------------
    def cell_options(self) -> list[tuple[str, tuple]]:
        """(label, key tuple) for every cell, e.g. ``("width 16, batch_size 64 · IV-A",
        (16, 64))``."""
        out = []
        for _, r in self.cells.iterrows():
            label = ", ".join(f"{k} {_py(r[k])}" for k in self.keys)
            if "phase" in r and pd.notna(r["phase"]):
                label += f" · {r['phase']}"
            out.append((label, tuple(_py(r[k]) for k in self.keys)))
        return out

    def selected(self) -> dict[str, Any]:
        """The selected cell's key values, e.g. ``{"width": 16, "batch_size": 64}``."""
        return dict(zip(self.keys, self.cell.value))

    def select(self, **values: Any) -> None:
        """Select the cell with these key values (all keys must be given)."""
        want = tuple(values[k] for k in self.keys)
        for _, v in self.cell.options:
            if v == want:
                self.cell.value = v
                return
        raise KeyError(f"no cell with {values}")

    def _match(self, table: pd.DataFrame) -> pd.Series:
        mask = np.ones(len(table), dtype=bool)
        for k, v in self.selected().items():
            if k not in table:
                continue
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                col = pd.to_numeric(table[k], errors="coerce").to_numpy(dtype=np.float64)
                mask &= np.isclose(col, float(v), rtol=1e-9, atol=0.0)
            else:
                mask &= table[k].eq(v).to_numpy()
        return pd.Series(mask, index=table.index)

    def selected_row(self) -> pd.Series:
        """The selected cell's row of ``cells``."""
        return self.cells[self._match(self.cells)].iloc[0]

    def cell_data(self, table: pd.DataFrame | None) -> pd.DataFrame | None:
        """The rows of a long table that belong to the selected cell (None if no table)."""
        if table is None:
            return None
        return table[self._match(table)]

    def summary(self) -> pd.DataFrame:
        """The selected cell's metrics: index metric label; columns value, std."""
        r = self.selected_row()
        rows = {_label(m): {"value": r[m], "std": r.get(f"{m}_std", np.nan)}
                for m in self.metrics}
        out = pd.DataFrame.from_dict(rows, orient="index")
        out.index.name = "metric"
        return out

    def view_cells(self) -> pd.DataFrame:
        """The cells over the chosen (x, y), averaging any other key columns away."""
        x, y = self.x.value, self.y.value
        if len(self.keys) == 2:
            return self.cells
        num = [c for c in self.cells.columns if c not in self.keys
               and pd.api.types.is_numeric_dtype(self.cells[c])]
        return self.cells.groupby([x, y], as_index=False)[num].mean()

    # ---- state -> figures ----------------------------------------------------------
    def map_chart(self) -> alt.LayerChart:
        """The phase diagram coloured by the chosen metric, the selected cell outlined."""
        x, y, view = self.x.value, self.y.value, self.view_cells()
        base = map_chart(view, self.metric.value, x, y)
        s = self.selected()
        mark = pd.DataFrame([{x: s[x], y: s[y]}])
        outline = alt.Chart(mark).mark_rect(fill=None, stroke="black", strokeWidth=3).encode(
            x=alt.X(f"{x}:O", sort=sorted(view[x].unique())),
            y=alt.Y(f"{y}:O", sort=sorted(view[y].unique())))
        return alt.layer(base, outline)

    def curves_chart(self) -> alt.Chart | None:
        d = self.cell_data(self.history)
        return curves_chart(d) if d is not None and len(d) else None

    def path_chart(self) -> alt.Chart | None:
        d = self.cell_data(self.paths)
        return path_chart(d) if d is not None and len(d) else None

    def density_chart(self) -> alt.Chart | None:
        d = _floor(self.cell_data(self.density), self.keys)
        return density_chart(d) if d is not None and len(d) else None

    def detail_chart(self) -> alt.HConcatChart | None:
        """The selected cell's details side by side (those that have data)."""
        parts = [c for c in (self.curves_chart(), self.path_chart(), self.density_chart())
                 if c is not None]
        return alt.hconcat(*parts).resolve_scale(color="independent") if parts else None

    def detail_notes(self) -> list[str]:
        """Why a detail panel is absent, one line each."""
        out = []
        for name, table in (("learning curves", self.history), ("path profiles", self.paths),
                            ("spectral density", self.density)):
            if table is None:
                out.append(f"no {name} for this grid")
            elif not self._match(table).any():
                out.append(f"no {name} for this cell")
        return out

    # ---- rendering -----------------------------------------------------------------
    def _on_axis(self, change: dict) -> None:
        if self._busy:
            return
        self._busy = True
        try:  # x and y must differ: picking the other's axis swaps them
            other = self.y if change["owner"] is self.x else self.x
            if other.value == change["new"]:
                other.value = change["old"]
        finally:
            self._busy = False
        self._render_map()

    def _show(self, out: Any, name: str, obj: Any) -> None:
        self.shown[name] = obj
        from IPython import get_ipython

        if get_ipython() is None:  # headless (tests): record only
            return
        from IPython.display import display

        with out:
            out.clear_output(wait=True)
            if obj is not None:
                display(obj)

    def _render_map(self) -> None:
        self._show(self.map_out, "map", self.map_chart())

    def _render_all(self) -> None:
        self._render_map()
        summary = self.summary()
        self.shown["summary"] = summary
        notes = "".join(f"<br><i>{n}</i>" for n in self.detail_notes())
        self.info.value = (f"<b>{', '.join(f'{k} {v}' for k, v in self.selected().items())}</b>"
                           + (f" · phase <b>{self.selected_row()['phase']}</b>"
                              if "phase" in self.cells else "")
                           + summary.to_html(float_format=lambda v: f"{v:.4g}", na_rep="")
                           + notes)
        self._show(self.detail_out, "detail", self.detail_chart())

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
