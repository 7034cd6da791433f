"""Interactive views of the book's tables, and one rule for showing them.

**Live in JupyterLab, static in the book.** :func:`live_or_static` is the one pattern every
widget cell uses: in JupyterLab (a live kernel) it builds and shows the ipywidgets app; in
the static HTML book it shows an altair equivalent and builds no ipywidget at all, so the
executed notebook holds no widget views or widget state, and the page loads no widget
JavaScript from anywhere. The book driver sets ``LANDSCAPE_BOOK=1`` while it executes the
chapters (``LANDSCAPE_BOOK_STATIC=1`` forces the static view too; ``=0`` forces live).

Three layers, each usable on its own:

* **Pure chart builders** (:func:`map_chart`, :func:`curves_chart`, :func:`path_chart`,
  :func:`density_chart`, :func:`info_chart`): a table in, an altair chart out, sized to
  the book's column and drawn in :mod:`landscape_utils.core.plotting`'s colours. Given an
  altair selection they filter by it, so the same builders serve both explorers.
* **Static explorers**: :func:`linked_explorer` is one altair chart where a click on the
  phase map (``alt.selection_point``) filters the detail charts; it needs no kernel and
  no network.
* **Live apps** (ipywidgets, JupyterLab only): :class:`PhaseExplorer` (pick a metric, the
  axes and a cell; see the cell's learning curves, its error along the Bezier curve and
  the line, and its smoothed Hessian spectral density) and :class:`LiveChart` (any chart
  function driven by sliders, checkboxes and dropdowns described by :class:`Control`).
  Their state lives in the widgets and every view is a pure method of that state, so they
  are testable headless.

IPython and ipywidgets are imported inside the functions that need them (lazily): the
static book never loads them.

The explorers read the chapters' tables with :func:`landscape_utils.runs.tables.load_book_tables`
and join them into one row per cell with :func:`assemble_cells`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import altair as alt
import numpy as np
import pandas as pd

from ..core import plotting
from ..core.plotting import METRICS as STYLES
from ..experiments.taxonomy import METRICS as TAXONOMY_METRICS
from ..experiments.taxonomy import cell_table
from ..runs.tables import BookTables

__all__ = [
    "assemble_cells",
    "map_chart",
    "curves_chart",
    "path_chart",
    "density_chart",
    "info_chart",
    "linked_explorer",
    "PhaseExplorer",
    "Control",
    "LiveChart",
    "display_mode",
    "live_or_static",
]

INFO_WIDTH = 110  # px: the text panel beside the map (its metric names sit left of it)

#: Metrics an explorer offers, in the order of the paper's figure.
EXPLORER_METRICS: tuple[str, ...] = (
    "test_acc", "train_loss", "lambda_max", "trace", "mc", "linear_mc", "cka", "l2",
    "train_acc", "test_loss",
)


# --------------------------------------------------------------------------------------
# One row per cell, every metric
# --------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------
# Live in JupyterLab, static in the book
# --------------------------------------------------------------------------------------
def display_mode(mode: str = "auto") -> str:
    """``"live"`` or ``"static"``: how a widget cell shows itself.

    ``mode="auto"`` is static when ``LANDSCAPE_BOOK_STATIC`` is ``"1"``, or when it is
    unset and ``LANDSCAPE_BOOK`` is ``"1"`` (the book driver executing a chapter), or when
    there is no IPython kernel (a script, a test); ``LANDSCAPE_BOOK_STATIC=0`` forces live
    in a kernel. Otherwise live. ``"live"`` / ``"static"`` are returned as given.
    """
    if mode in ("live", "static"):
        return mode
    if mode != "auto":
        raise ValueError(f"mode must be auto, live or static, got {mode!r}")
    forced = os.environ.get("LANDSCAPE_BOOK_STATIC")
    if forced == "1":
        return "static"
    if forced != "0" and os.environ.get("LANDSCAPE_BOOK") == "1":
        return "static"
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with the notebook stack
        return "static"
    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return "static"
    return "live"


def live_or_static(static: Any, live: Callable[[], Any] | None, mode: str = "auto") -> Any:
    """The object a widget cell ends with: ``live()`` (an ipywidgets app) in live mode,
    else ``static`` (an altair chart, or None) (:func:`display_mode`). ``live`` is only
    called in live mode, so the static book never creates a widget; with no ipywidgets
    installed, the static view is shown::

        live_or_static(linked_explorer(cells, x, y, ...),
                       lambda: PhaseExplorer.from_tables(tables, cells))
    """
    if live is None or display_mode(mode) == "static":
        return static
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return static
    return live()


# --------------------------------------------------------------------------------------
# Pure chart builders
# --------------------------------------------------------------------------------------
def _label(metric: str) -> str:
    return STYLES[metric].label if metric in STYLES else metric


def _filtered(chart: alt.Chart, selection: Any | None) -> alt.Chart:
    return chart.transform_filter(selection) if selection is not None else chart


def map_chart(cells: pd.DataFrame, color: str, x: str, y: str, width: int | None = None,
              height: int = 170, title: str | None = None) -> alt.Chart:
    """The phase-diagram panel of ``cells`` coloured by ``color``: a metric (plotting's
    scale and colours) or ``"phase"`` (plotting's phase colours, with ``p_phase`` as
    opacity when present). Load on x, hottest temperature on top."""
    if color == "phase":
        return plotting.phase_map(cells, "phase", x, y, title=title or "phase",
                                  width=width, height=height)
    return plotting.phase_heatmap(cells, color, x, y, title=title, width=width, height=height)


def curves_chart(history: pd.DataFrame, selection: Any | None = None, width: int | None = None,
                 height: int = 150, title: str = "learning curves") -> alt.Chart:
    """Train loss per epoch (running, train mode), one line per seed, with a legend.

    ``history``: long, with ``run_id``, ``epoch``, ``train_loss`` and optionally ``seed``.
    """
    tips = [alt.Tooltip("epoch:Q"), alt.Tooltip("train_loss:Q", format=plotting.NUMBER_FORMAT)]
    enc: dict[str, Any] = {"detail": "run_id:N"} if "run_id" in history else {}
    if "seed" in history:
        enc["color"] = plotting.line_color("seed:N", "seed", scheme="dark2")
        tips.append(alt.Tooltip("seed:N"))
    data = history[history["train_loss"] > 0]  # log scale
    chart = alt.Chart(data, title=title, width=width or plotting.fit_width(2), height=height)
    return _filtered(chart, selection).mark_line(strokeWidth=1.5).encode(
        x=alt.X("epoch:Q"),
        y=alt.Y("train_loss:Q", scale=alt.Scale(type="log"), title="train loss"),
        tooltip=tips, **enc)


def path_chart(paths: pd.DataFrame, selection: Any | None = None, width: int | None = None,
               height: int = 150, title: str = "error along the path") -> alt.Chart:
    """0-1 error (percent) against t along the Bezier curve and the line: colour and dash
    = path kind (the book's :data:`plotting.PATH_COLORS`, with a legend), train error
    drawn with points, test error without; one line per seed pair.

    ``paths``: long, with ``path``, ``t``, ``train_err`` and optionally ``test_err`` and
    ``pair``.
    """
    splits = [c for c in ("train_err", "test_err") if c in paths]
    heading = alt.TitleParams(title, subtitle="with dots: train; plain: test"
                              if len(splits) > 1 else "train")
    kinds = [k for k in plotting.PATH_COLORS if k in set(paths["path"])] or ["bezier", "linear"]
    detail = ["split:N"] + (["pair:N"] if "pair" in paths else [])
    base = alt.Chart().encode(
        x=alt.X("t:Q", title="t (0 and 1 are the two seeds)"),
        y=alt.Y("error:Q", title="0-1 error (%)"),
        color=plotting.path_color("path", kinds),
        strokeDash=plotting.path_dash("path", kinds),
        detail=detail,
        tooltip=[alt.Tooltip("path:N"), alt.Tooltip("split:N"), alt.Tooltip("t:Q", format=".2f"),
                 alt.Tooltip("error:Q", format=plotting.NUMBER_FORMAT)])
    dots = base.transform_filter("datum.split == 'train_err'").mark_point(filled=True, size=18)
    chart = alt.layer(base.mark_line(strokeWidth=1.5), dots, data=paths, title=heading,
                      width=width or plotting.fit_width(2), height=height)
    return _filtered(chart, selection).transform_fold(splits, as_=["split", "error"])


def density_chart(density: pd.DataFrame, selection: Any | None = None, width: int | None = None,
                  height: int = 150, title: str = "Hessian spectral density",
                  floor: float = 1e-4) -> alt.Chart:
    """A smoothed spectral density (:func:`plotting.smooth_density_table`): λ on a symlog
    axis, density per unit of that axis on a log scale, floored at ``floor`` × the peak
    so that empty stretches run along the floor rather than as straight jumps.

    ``density``: long, with ``lam`` and ``density`` (already smoothed; see
    :func:`smoothed_density`).
    """
    data = density
    chart = _filtered(alt.Chart(data, title=title, width=width or plotting.fit_width(2),
                                height=height), selection)
    return chart.mark_line(strokeWidth=1.5, color="#6a3d9a", interpolate="monotone").encode(
        x=alt.X("lam:Q", title="eigenvalue λ (symlog axis)",
                scale=alt.Scale(type="symlog", constant=plotting.SYMLOG_CONSTANT),
                axis=alt.Axis(labelOverlap=True, tickCount=6, format=plotting.NUMBER_FORMAT)),
        y=alt.Y("density:Q", scale=alt.Scale(type="log"), title="density"),
        tooltip=[alt.Tooltip("lam:Q", title="λ", format=plotting.NUMBER_FORMAT),
                 alt.Tooltip("density:Q", format=plotting.NUMBER_FORMAT)])


def smoothed_density(density: pd.DataFrame | None, by: Sequence[str], points: int = 80,
                     floor: float = 1e-4) -> pd.DataFrame | None:
    """One smoothed curve per group ``by`` (:func:`plotting.smooth_density_table` on a
    symlog axis, ``points`` points each), floored at ``floor`` × its peak: what the
    explorers draw. None when there is no density."""
    if density is None or density.empty:
        return None
    sm = plotting.smooth_density_table(density, by=by, points=points)
    peak = sm.groupby(list(by))["density"].transform("max")
    sm["density"] = np.maximum(sm["density"], floor * peak)
    return sm.drop(columns="u")


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
                              labelFontSize=12, labelLimit=150)),
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
                    max_points: int = 80, panel_width: int | None = None
                    ) -> alt.VConcatChart:
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
        max_points: at most about this many points per line (and per smoothed spectrum).
        panel_width: of each detail chart (two per row); default: two fill the column.

    Every row fits :data:`plotting.COLUMN_WIDTH`.
    """
    keys = [x, y]
    panel_width = panel_width or plotting.fit_width(2)
    present = [m for m in metrics if m in cells and cells[m].notna().any()]
    init = initial or default_cell(cells, keys)
    sel = alt.selection_point(name="cell", fields=keys, on="click", clear=False, toggle=False,
                              value=[{k: _py(v) for k, v in init.items()}])
    tips = [alt.Tooltip(f"{x}:O"), alt.Tooltip(f"{y}:O")]
    if "phase" in cells:
        tips.append(alt.Tooltip("phase:N"))
    tips += [alt.Tooltip(f"{m}:Q", title=_label(m), format=plotting.NUMBER_FORMAT)
             for m in present]
    cols = [*keys, *[c for c in ("phase", "p_phase") if c in cells], *present]
    cells = _slim(cells, cols)
    heat = map_chart(cells, color, x, y, width=plotting.fit_width(2) - 40, height=180,
                     title=f"{_label(color) if color != 'phase' else 'phase'} (click a cell)"
                     ).add_params(sel).encode(
        stroke=alt.value("black"),
        strokeWidth=alt.when(sel).then(alt.value(3)).otherwise(alt.value(0)),
        tooltip=tips)
    info = info_chart(cells, keys, present, selection=sel, width=INFO_WIDTH)
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
    dens = smoothed_density(_with_keys(density, runs, keys), keys, points=max_points)
    if dens is not None:
        details.append(density_chart(_slim(dens, [*keys, "lam", "density"]), sel,
                                     width=panel_width))
    rows = [alt.hconcat(heat, info)]
    for i in range(0, len(details), 2):  # two per row: the book's pages are narrow
        rows.append(alt.hconcat(*details[i:i + 2]).resolve_scale(color="independent",
                                                                  strokeDash="independent"))
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
        self.smoothed = smoothed_density(self.density, self.keys)  # what the panel draws
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
        ex, ey = plotting.phase_axes(view, x, y)
        outline = alt.Chart(mark).mark_rect(fill=None, stroke="black", strokeWidth=3).encode(
            x=ex, y=ey)
        return alt.layer(base, outline)

    def curves_chart(self) -> alt.Chart | None:
        d = self.cell_data(self.history)
        return curves_chart(d) if d is not None and len(d) else None

    def path_chart(self) -> alt.Chart | None:
        d = self.cell_data(self.paths)
        return path_chart(d) if d is not None and len(d) else None

    def density_chart(self) -> alt.Chart | None:
        d = self.cell_data(self.smoothed)
        return density_chart(d) if d is not None and len(d) else None

    def detail_chart(self) -> alt.ConcatChart | None:
        """The selected cell's details (those that have data), two per row so that they
        fit the column."""
        parts = [c for c in (self.curves_chart(), self.path_chart(), self.density_chart())
                 if c is not None]
        if not parts:
            return None
        return alt.concat(*parts, columns=2).resolve_scale(color="independent",
                                                           strokeDash="independent")

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


# --------------------------------------------------------------------------------------
# Any chart function, driven by controls (ipywidgets, JupyterLab only)
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Control:
    """One control of a :class:`LiveChart`, described as data (no widget is built until
    the chart is shown live)."""

    kind: str                       # slider | log_slider | int_slider | checkbox | dropdown
    value: Any                      # the initial value
    min: float | None = None        # sliders: lowest value (a log slider: the value, not its log)
    max: float | None = None        # sliders: highest value
    step: float | None = None       # sliders: step (a log slider: in log10 units)
    options: tuple = ()             # dropdown: the choices
    description: str = ""           # label shown left of the control

    KINDS = ("slider", "log_slider", "int_slider", "checkbox", "dropdown")

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ValueError(f"control kind must be one of {self.KINDS}, got {self.kind!r}")
        if self.kind.endswith("slider") and (self.min is None or self.max is None
                                             or not self.min < self.max):
            raise ValueError(f"a {self.kind} needs min < max, got {self.min!r}, {self.max!r}")
        if self.kind == "log_slider" and not self.min > 0:
            raise ValueError(f"a log_slider needs min > 0, got {self.min!r}")
        if self.kind == "dropdown" and self.value not in self.options:
            raise ValueError(f"dropdown value {self.value!r} is not among {self.options!r}")

    def widget(self, name: str) -> Any:
        """The ipywidgets control (created here, in live mode only)."""
        import ipywidgets as W

        desc = self.description or name
        common = dict(description=desc, continuous_update=False,
                      style={"description_width": "initial"})
        if self.kind == "log_slider":
            return W.FloatLogSlider(value=self.value, base=10, min=float(np.log10(self.min)),
                                    max=float(np.log10(self.max)), step=self.step or 0.05,
                                    **common)
        if self.kind == "slider":
            return W.FloatSlider(value=self.value, min=self.min, max=self.max,
                                 step=self.step or (self.max - self.min) / 100, **common)
        if self.kind == "int_slider":
            return W.IntSlider(value=int(self.value), min=int(self.min), max=int(self.max),
                               step=int(self.step or 1), **common)
        if self.kind == "checkbox":
            return W.Checkbox(value=bool(self.value), description=desc, indent=False)
        return W.Dropdown(options=list(self.options), value=self.value, description=desc,
                          style={"description_width": "initial"})


class LiveChart:
    """``make_chart(**values)`` redrawn whenever a control changes (JupyterLab).

    ``controls`` maps each keyword of ``make_chart`` to a :class:`Control`. The widgets
    are attributes of :attr:`controls_w` (by name); :meth:`values` is the current state,
    :meth:`chart` the chart of that state, and each redraw is recorded in
    :attr:`shown` ``["chart"]`` so a test can set a value and check the result headless::

        live = LiveChart(explorer_chart, {"load": Control("log_slider", 1.0, 0.1, 10),
                                          "anneal": Control("checkbox", False)})
        live.controls_w["anneal"].value = True
        live.shown["chart"]     # explorer_chart(load=1.0, anneal=True)

    Build it only in live mode (:func:`live_or_static`); make it the last expression of
    a cell.
    """

    def __init__(self, make_chart: Callable[..., Any], controls: Mapping[str, Control],
                 title: str = ""):
        import ipywidgets as W

        if not controls:
            raise ValueError("a LiveChart needs at least one control")
        self.make_chart = make_chart
        self.controls = dict(controls)
        self.controls_w = {name: c.widget(name) for name, c in self.controls.items()}
        self.out = W.Output()
        self.shown: dict[str, Any] = {}
        for w in self.controls_w.values():
            w.observe(lambda _: self._render(), names="value")
        rows = [W.HTML(f"<b>{title}</b>")] if title else []
        self.widget = W.VBox(rows + [W.HBox(list(self.controls_w.values()),
                                            layout=W.Layout(flex_flow="row wrap")), self.out])
        self._render()

    def values(self) -> dict[str, Any]:
        """The controls' current values, by keyword."""
        return {name: w.value for name, w in self.controls_w.items()}

    def chart(self) -> Any:
        return self.make_chart(**self.values())

    def _render(self) -> None:
        chart = self.chart()
        self.shown["chart"] = chart
        from IPython import get_ipython

        if get_ipython() is None:  # headless (tests): record only
            return
        from IPython.display import display

        with self.out:
            self.out.clear_output(wait=True)
            display(chart)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
