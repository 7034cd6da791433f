"""One visual language for the whole book: an altair theme, one table of metric -> label /
scale / colour, phase diagrams, path and spectrum charts, and widths that fit the page.

Importing this module registers and enables the ``landscape`` theme. Under the book
driver (``LANDSCAPE_BOOK=1``) it also enables the ``landscape_offline`` renderer,
whose HTML calls a ``vegaEmbed`` loaded once per page from the book's own static
files, so the HTML book draws its charts with no network.

The rules every chart follows
-----------------------------
* **Worse is dark and warm.** Every sequential colour scale is :data:`SEQUENTIAL_SCHEME`
  (light yellow to dark red), oriented so that the worse end (higher loss, sharper, larger
  distance, lower accuracy or similarity) is dark red: :attr:`MetricStyle.higher_is_worse`
  says which end that is. Diverging metrics (mc, the linear barrier) use
  :data:`DIVERGING_SCHEME` with a barrier (mc < 0) red, 0 white, and a domain symmetric
  about 0 (:func:`symmetric_domain`), so equal magnitudes are equally loud.
* **Rounded numbers.** Legends and tooltips format numbers with :data:`NUMBER_FORMAT`.
* **A legend on every chart with more than one line**; one colour and one dash per path
  kind across the book (:data:`PATH_COLORS`, :data:`PATH_DASHES`, :func:`path_color`,
  :func:`path_dash`).
* **Load on x, least capacity on the left; temperature on y, hottest on top**, whatever
  the axis (:func:`landscape_utils.core.axes.hot_order`, :func:`~landscape_utils.core.axes.load_order`).
* **Charts fit the column.** The content column of the HTML book is :data:`COLUMN_WIDTH`
  pixels wide at a 1280 px window; :func:`fit_width` gives the width of each of n panels
  side by side, :func:`estimated_width` checks a composed chart's spec against it and
  :func:`rendered_width` measures the chart as Vega draws it.
"""
from __future__ import annotations

import json
import math
import os
import re
import uuid
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import altair as alt
import numpy as np
import pandas as pd

from .axes import axis_info, hot_order, load_order

# --------------------------------------------------------------------------------------
# Page geometry
# --------------------------------------------------------------------------------------
COLUMN_WIDTH = 676      # px: Jupyter Book's content column in a 1280 px wide window
AXIS_ALLOWANCE = 70     # px left of a panel: y tick labels and the y title
LEGEND_ALLOWANCE = 110  # px right of a panel for a legend on the right (default orient)
SPACING = 20            # px between concatenated panels (Vega-Lite's default spacing)
PADDING = 10            # px: the chart's padding (5 on each side)
MIN_PANEL_WIDTH = 130   # px: narrower panels wrap to the next row instead

NUMBER_FORMAT = ".3~g"  # legends, tooltips and labels: 3 significant digits, no trailing 0s


def fit_width(n_panels: int = 1, legend_right: bool = False, column: int = COLUMN_WIDTH,
              axis: int = AXIS_ALLOWANCE) -> int:
    """Plot width (px) of each of ``n_panels`` panels side by side, so that the row with
    its y axes, spacing and (if ``legend_right``) a legend right of each panel fits in
    ``column`` pixels. Raises ``ValueError`` if the panels would be narrower than
    :data:`MIN_PANEL_WIDTH` (wrap them with :func:`panel_columns` instead)."""
    n = int(n_panels)
    if n < 1:
        raise ValueError(f"n_panels must be >= 1, got {n_panels!r}")
    per = axis + (LEGEND_ALLOWANCE if legend_right else 0)
    w = (column - PADDING - SPACING * (n - 1) - per * n) // n
    if w < MIN_PANEL_WIDTH:
        raise ValueError(f"{n} panels do not fit in {column} px (each would be {w} px); "
                         f"use panel_columns() to wrap them")
    return int(w)


def panel_columns(n_panels: int, legend_right: bool = False, column: int = COLUMN_WIDTH,
                  min_width: int = 200) -> int:
    """How many of ``n_panels`` panels to put in a row so each is at least ``min_width``
    wide (at least 1)."""
    best = 1
    for c in range(1, max(1, int(n_panels)) + 1):
        try:
            if fit_width(c, legend_right, column) >= min_width:
                best = c
        except ValueError:
            break
    return best


def rendered_width(chart: Any) -> int:
    """The width (px) of ``chart`` as Vega renders it (via vl-convert, offline): the
    measure a test compares with :data:`COLUMN_WIDTH` (``rendered_width(c) <=
    COLUMN_WIDTH``). Browser fonts may differ from vl-convert's by a few pixels."""
    import vl_convert  # lazy: an optional dependency (the book extra), needed only to measure charts

    spec = chart.to_dict() if hasattr(chart, "to_dict") else chart
    svg = vl_convert.vegalite_to_svg(spec)
    m = re.search(r'<svg[^>]*\swidth="([0-9.]+)"', svg)
    if m is None:
        raise ValueError("vl-convert returned no SVG width")
    return int(float(m.group(1)))


def _legends_right(enc: dict) -> int:
    """Number of legends a unit spec places on the right (Vega-Lite's default orient)."""
    n = 0
    for ch in ("color", "fill", "stroke", "shape", "size", "opacity", "strokeDash"):
        e = enc.get(ch)
        if not isinstance(e, dict) or "field" not in e and "aggregate" not in e:
            continue
        leg = e.get("legend", {})
        if leg is None:
            continue
        if isinstance(leg, dict) and leg.get("orient", "right") not in ("right", "left"):
            continue
        n += 1
    return n


def estimated_width(chart: Any) -> float:
    """Estimated rendered width (px) of a chart or its ``to_dict()`` spec: each unit's
    width plus :data:`AXIS_ALLOWANCE` for a y axis and :data:`LEGEND_ALLOWANCE` once for
    right-side legends, concatenations summed with their spacing, facets multiplied by
    their number of columns (``n_facets``, when the data are inline).

    A static check for tests; the rendered width can be measured with vl-convert."""
    spec = chart.to_dict() if hasattr(chart, "to_dict") else chart
    return _width(spec, spec.get("datasets", {}), top=True)


def _unit_width(spec: dict) -> float:
    w = spec.get("width", 300)
    if not isinstance(w, (int, float)):
        w = 300  # "container" or a step: assume the theme's default
    return float(w)


def _width(spec: dict, datasets: dict, top: bool = False) -> float:
    pad = PADDING if top else 0.0
    sp = spec.get("spacing", SPACING)
    if "hconcat" in spec:
        parts = [_width(s, datasets) for s in spec["hconcat"]]
        return pad + sum(parts) + sp * (len(parts) - 1)
    if "vconcat" in spec:
        return pad + max(_width(s, datasets) for s in spec["vconcat"])
    if "concat" in spec:
        parts = [_width(s, datasets) for s in spec["concat"]]
        cols = spec.get("columns") or len(parts)
        rows = [parts[i:i + cols] for i in range(0, len(parts), cols)]
        return pad + max(sum(r) + sp * (len(r) - 1) for r in rows)
    if "facet" in spec or "repeat" in spec:
        inner = spec.get("spec", {})
        n = _facet_columns(spec, datasets)
        per = _width(inner, datasets)
        return pad + n * per + sp * (n - 1)
    if "layer" in spec:
        # the plot width: the layer's own, else the widest sized child (a layer's children
        # share one plot area; their axes and legends are counted once, below)
        sized = [_unit_width(s) for s in spec["layer"] if "width" in s]
        base = _unit_width(spec) if "width" in spec else max(sized, default=_unit_width(spec))
        legends = max([_legends_right(s.get("encoding", {})) for s in spec["layer"]]
                      + [_legends_right(spec.get("encoding", {}))])
        return pad + base + AXIS_ALLOWANCE + (LEGEND_ALLOWANCE if legends else 0)
    enc = spec.get("encoding", {})
    legends = _legends_right(enc)
    return pad + _unit_width(spec) + AXIS_ALLOWANCE + (LEGEND_ALLOWANCE if legends else 0)


def _facet_columns(spec: dict, datasets: dict) -> int:
    facet = spec.get("facet", {})
    col = facet.get("column") if isinstance(facet, dict) else None
    if col is None and isinstance(facet, dict) and "field" in facet:
        col = facet
        wrap = spec.get("columns")
    else:
        wrap = None
    if col is None:
        return 1
    data = spec.get("data", {})
    rows = datasets.get(data.get("name"), data.get("values", [])) if isinstance(data, dict) else []
    n = len({r.get(col["field"]) for r in rows}) if rows else 1
    return min(n, wrap) if wrap else n


# --------------------------------------------------------------------------------------
# Colour: one table of metric -> how to draw it
# --------------------------------------------------------------------------------------
SEQUENTIAL_SCHEME = "yelloworangered"  # light yellow (better) -> dark red (worse)
DIVERGING_SCHEME = "redblue"           # red (negative: a barrier) - white (0) - blue


@dataclass(frozen=True)
class MetricStyle:
    """How one metric is drawn. The colours follow from ``higher_is_worse`` and
    ``diverging``: the worse end of a sequential scale is dark red; a diverging scale is
    red below 0 and symmetric about it."""

    label: str                   # axis / legend title
    log: bool = False            # colour on a log scale
    higher_is_worse: bool = True  # sequential: which end is drawn dark red
    diverging: bool = False      # centre the colour scale on 0, symmetric domain
    fmt: str = NUMBER_FORMAT     # legend and tooltip number format
    domain: tuple[float, float] | None = None  # fixed colour domain, e.g. (0, 1) for a fraction

    @property
    def scheme(self) -> str:
        return DIVERGING_SCHEME if self.diverging else SEQUENTIAL_SCHEME

    @property
    def reverse(self) -> bool:
        """Whether the scheme runs high -> low: for a sequential scale, when higher values
        are better (so low values get the dark end); a diverging scale is never reversed
        (its red end is the negative one, a barrier)."""
        return False if self.diverging else not self.higher_is_worse


# Add a row here, not an if/elif.
METRICS: dict[str, MetricStyle] = {
    "test_acc": MetricStyle("test accuracy", higher_is_worse=False),
    "train_acc": MetricStyle("train accuracy", higher_is_worse=False),
    "test_loss": MetricStyle("test loss", log=True),
    "train_loss": MetricStyle("train loss", log=True),
    "train_err": MetricStyle("train error (%)"),
    "test_err": MetricStyle("test error (%)"),
    "lambda_max": MetricStyle("λmax (top Hessian eigenvalue)", log=True),
    "trace": MetricStyle("Hessian trace", log=True),
    "mc": MetricStyle("mode connectivity mc (% train error)", higher_is_worse=False,
                      diverging=True),
    "linear_mc": MetricStyle("linear barrier (% train error)", higher_is_worse=False,
                             diverging=True),
    "cka": MetricStyle("CKA similarity", higher_is_worse=False),
    "l2": MetricStyle("L2 distance between seeds", log=True),
    "p_phase": MetricStyle("confidence in the phase", higher_is_worse=False),
    "mli_max_bump": MetricStyle("MLI: largest rise of the train loss (nats)"),
    "mli_non_monotonic": MetricStyle("MLI: fraction of seeds with a bump", domain=(0.0, 1.0)),
}

PHASE_COLORS = {"I": "#d62728", "II": "#ff7f0e", "III": "#9467bd", "IV-A": "#1f77b4",
                "IV-B": "#2ca02c", "IV": "#8c564b", "undetermined": "#d9d9d9"}

#: One colour per path kind, the same in every chapter.
PATH_COLORS = {
    "bezier": "#1f77b4",    # the fitted Bezier curve
    "linear": "#7f7f7f",    # the straight line between two solutions
    "aligned": "#ff7f0e",   # the straight line after weight matching
    "tunnel": "#9467bd",    # a bent path through a trained midpoint (simplex edge)
    "simplex": "#2ca02c",   # a path inside a trained simplex
}
#: One dash pattern per path kind (solid: optimized paths; dashed: straight lines).
PATH_DASHES = {"bezier": [1, 0], "linear": [5, 3], "aligned": [2, 2], "tunnel": [1, 0],
               "simplex": [1, 0]}
#: Legend labels of the path kinds.
PATH_LABELS = {"bezier": "Bezier curve", "linear": "straight line",
               "aligned": "line after weight matching", "tunnel": "tunnel (bent path)",
               "simplex": "simplex path"}

AXIS_LABELS = {name: axis_info(name).title for name in
               ("width", "depth", "data_fraction", "label_noise", "batch_size", "lr",
                "weight_decay", "momentum", "load", "temperature")}


def style(metric: str) -> MetricStyle:
    """The style of ``metric`` (a neutral sequential one for an unknown metric)."""
    return METRICS.get(metric, MetricStyle(metric))


def symmetric_domain(values: Iterable[float] | pd.Series | np.ndarray,
                     quantile: float = 1.0) -> list[float]:
    """``[-m, m]`` with m the ``quantile`` of |values| (1.0: the largest; a smaller one,
    e.g. 0.95, is robust to an outlier, whose colour then saturates). Non-finite values
    are ignored; m is 1 when no value is finite and non-zero."""
    v = np.abs(np.asarray(pd.Series(values, dtype="float64").to_numpy(), dtype=np.float64))
    v = v[np.isfinite(v)]
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"quantile must be in (0, 1], got {quantile!r}")
    m = float(np.quantile(v, quantile)) if v.size else 0.0
    if not m > 0.0:
        m = 1.0
    return [-m, m]


def color_scale(metric: str, values: Iterable[float] | None = None, field: str | None = None,
                title: str | None = None, legend_orient: str | None = "bottom",
                quantile: float = 1.0) -> alt.Color:
    """The colour encoding of ``metric`` by the book's rules (see the module docstring).

    Args:
        values: the values drawn; a diverging metric needs them for its symmetric domain
            (without them the domain is left to Vega-Lite, centred by ``domainMid``).
        field: the column, when it differs from ``metric``.
        legend_orient: where the legend goes ("bottom" keeps panels narrow; None: right).
        quantile: of |values| for the diverging domain (:func:`symmetric_domain`).
    """
    st = style(metric)
    scale: dict[str, Any] = {"scheme": st.scheme, "reverse": st.reverse}
    if st.log:
        scale["type"] = "log"
    if st.domain is not None:
        scale["domain"] = list(st.domain)
    if st.diverging:
        scale["domainMid"] = 0
        if values is not None:
            scale["domain"] = symmetric_domain(values, quantile)
            scale["clamp"] = True
    legend: dict[str, Any] = {"format": st.fmt, "title": title or st.label}
    if legend_orient:
        legend.update(orient=legend_orient, direction="horizontal", gradientLength=120,
                      titleLimit=0)
    return alt.Color(f"{field or metric}:Q", scale=alt.Scale(**scale),
                     legend=alt.Legend(**legend))


def categorical_legend(title: str | None = None, orient: str = "bottom",
                       columns: int | None = None) -> alt.Legend:
    """A legend for the lines of a multi-line chart: below the plot (keeps it narrow),
    labels never cut."""
    kw: dict[str, Any] = {"orient": orient, "labelLimit": 0, "titleLimit": 0}
    if title is not None:
        kw["title"] = title
    if columns is not None:
        kw["columns"] = columns
    elif orient in ("bottom", "top"):
        kw["direction"] = "horizontal"
    return alt.Legend(**kw)


def line_color(field: str, title: str | None = None, sort: Sequence | None = None,
               scheme: str = "tableau10", columns: int | None = None) -> alt.Color:
    """The colour of a multi-line chart with its legend below (a legend on every chart
    with more than one line). ``field`` is a categorical (``:N``) or ordinal (``:O``)
    shorthand; a bare column name is taken as nominal."""
    shorthand = field if ":" in field else f"{field}:N"
    kw: dict[str, Any] = {"legend": categorical_legend(title, columns=columns),
                          "scale": alt.Scale(scheme=scheme)}
    if sort is not None:
        kw["sort"] = list(sort)
    if title is not None:
        kw["title"] = title
    return alt.Color(shorthand, **kw)


def _path_legend(kinds: Sequence[str], title: str) -> alt.Legend:
    labels = "{" + ", ".join(f"'{k}': '{PATH_LABELS[k]}'" for k in kinds) + "}"
    return alt.Legend(title=title, orient="bottom", direction="horizontal", labelLimit=0,
                      titleLimit=0, symbolType="stroke", symbolStrokeWidth=2,
                      labelExpr=f"{labels}[datum.value] || datum.value")


def _check_kinds(kinds: Sequence[str] | None) -> list[str]:
    kinds = list(kinds or ("bezier", "linear"))
    unknown = [k for k in kinds if k not in PATH_COLORS]
    if unknown:
        raise KeyError(f"no colour for path kind(s) {unknown}; known: {list(PATH_COLORS)}")
    return kinds


def path_color(field: str = "path", kinds: Sequence[str] | None = None,
               title: str = "path", legend: bool = True) -> alt.Color:
    """Colour by path kind with the book's fixed colours (:data:`PATH_COLORS`) and a legend
    of readable labels (:data:`PATH_LABELS`) below the plot. ``kinds`` restricts the
    domain to the kinds drawn (default: bezier and linear). Use with :func:`path_dash`
    (same ``field``, ``kinds`` and ``title``): the two legends merge into one of dashed,
    coloured lines."""
    kinds = _check_kinds(kinds)
    return alt.Color(f"{field}:N", title=title,
                     legend=_path_legend(kinds, title) if legend else None,
                     scale=alt.Scale(domain=kinds, range=[PATH_COLORS[k] for k in kinds]))


def path_dash(field: str = "path", kinds: Sequence[str] | None = None,
              title: str = "path", legend: bool = True) -> alt.StrokeDash:
    """Dash by path kind (:data:`PATH_DASHES`: optimized paths solid, straight lines
    dashed); its legend merges with :func:`path_color`'s."""
    kinds = _check_kinds(kinds)
    return alt.StrokeDash(f"{field}:N", title=title,
                          legend=_path_legend(kinds, title) if legend else None,
                          scale=alt.Scale(domain=kinds, range=[PATH_DASHES[k] for k in kinds]))


# --------------------------------------------------------------------------------------
# Theme and renderer
# --------------------------------------------------------------------------------------
def _theme() -> dict:
    return {"config": {
        "view": {"continuousWidth": 300, "continuousHeight": 220, "stroke": None},
        "axis": {"labelFontSize": 11, "titleFontSize": 12, "grid": False},
        "legend": {"labelFontSize": 11, "titleFontSize": 12},
        "title": {"fontSize": 13, "anchor": "start", "limit": COLUMN_WIDTH - 20},
        "range": {"category": list(PHASE_COLORS.values())[:5] + ["#8c564b", "#e377c2", "#7f7f7f"]},
    }}


alt.theme.register("landscape", enable=True)(_theme)


def _offline_renderer(spec: dict, **_meta) -> dict:
    """text/html that waits for a page-global ``vegaEmbed`` (no CDN)."""
    div = f"lsviz-{uuid.uuid4().hex}"
    html = (f'<div id="{div}" class="landscape-chart"></div>\n<script type="text/javascript">\n'
            f"(function(spec) {{\n  function draw() {{ vegaEmbed('#{div}', spec, "
            f"{{actions: false, renderer: 'svg'}}).catch(function(e) {{ console.error(e); }}); }}\n"
            f"  if (window.vegaEmbed) {{ draw(); }} else {{ window.addEventListener('load', draw); }}\n"
            f"}})({json.dumps(spec)});\n</script>")
    return {"text/html": html, "text/plain": "<altair chart>"}


alt.renderers.register("landscape_offline", _offline_renderer)
if os.environ.get("LANDSCAPE_BOOK") == "1":
    alt.renderers.enable("landscape_offline")
alt.data_transformers.disable_max_rows()


# --------------------------------------------------------------------------------------
# Phase diagrams
# --------------------------------------------------------------------------------------
def phase_axes(cells: pd.DataFrame, x: str, y: str, hot_on_top: bool = True
               ) -> tuple[alt.X, alt.Y]:
    """x: the load, least capacity left; y: the temperature, hottest on top (or at the
    bottom with ``hot_on_top=False``). Float axes get rounded labels."""
    xa, ya = axis_info(x), axis_info(y)
    xs = load_order(xa, cells[x])
    ys = hot_order(ya, cells[y])
    if not hot_on_top:
        ys = ys[::-1]
    kw_x: dict[str, Any] = {"sort": xs, "title": xa.title,
                            "axis": alt.Axis(labelAngle=0, labelOverlap=True)}
    kw_y: dict[str, Any] = {"sort": ys, "title": ya.title}
    if xa.dtype == "float":
        kw_x["axis"] = alt.Axis(labelExpr="format(datum.value, '.3~g')", labelAngle=0,
                                labelOverlap=True)
    if ya.dtype == "float":
        kw_y["axis"] = alt.Axis(labelExpr="format(datum.value, '.3~g')")
    return alt.X(f"{x}:O", **kw_x), alt.Y(f"{y}:O", **kw_y)


def phase_heatmap(cells: pd.DataFrame, metric: str, x: str = "width", y: str = "batch_size",
                  title: str | None = None, width: int | None = None, height: int = 160,
                  hot_on_top: bool = True, legend_orient: str | None = "bottom",
                  quantile: float = 1.0) -> alt.Chart:
    """A phase-diagram panel: one rect per grid cell coloured by ``metric``.

    ``cells`` has one row per cell with columns ``x``, ``y``, ``metric`` and optionally
    ``{metric}_std`` and ``n_seeds`` (shown in the tooltip). x is the load (least capacity
    on the left), y the temperature (hottest on top unless ``hot_on_top=False``), whatever
    the axes (their meaning comes from :data:`landscape_utils.core.axes.AXES`). ``width``
    defaults to two panels per column width.
    """
    df = cells.copy()
    st = style(metric)
    tips = [alt.Tooltip(f"{x}:O"), alt.Tooltip(f"{y}:O"),
            alt.Tooltip(f"{metric}:Q", title=st.label, format=st.fmt)]
    if f"{metric}_std" in df:
        tips.append(alt.Tooltip(f"{metric}_std:Q", title="std over seeds", format=NUMBER_FORMAT))
    if "n_seeds" in df:
        tips.append(alt.Tooltip("n_seeds:Q"))
    if st.log:  # a log colour scale cannot show values <= 0
        df = df[df[metric] > 0]
    ex, ey = phase_axes(cells, x, y, hot_on_top)
    values = df[metric] if metric in df else None
    return alt.Chart(df, title=title or st.label, width=width or fit_width(2),
                     height=height).mark_rect().encode(
        x=ex, y=ey, color=color_scale(metric, values, legend_orient=legend_orient,
                                      quantile=quantile),
        tooltip=tips)


def phase_panels(cells: pd.DataFrame, metrics: list[str], x: str = "width",
                 y: str = "batch_size", columns: int | None = None, height: int = 150,
                 hot_on_top: bool = True) -> alt.ConcatChart:
    """Several :func:`phase_heatmap` panels, each with its own colour scale, wrapped so
    that every row fits the column (``columns`` per row; default as many as fit)."""
    shown = [m for m in metrics if m in cells and cells[m].notna().any()]
    cols = columns or panel_columns(len(shown) or 1)
    w = fit_width(cols)
    panels = [phase_heatmap(cells, m, x, y, width=w, height=height, hot_on_top=hot_on_top)
              for m in shown]
    return alt.concat(*panels, columns=cols).resolve_scale(color="independent")


def phase_map(cells: pd.DataFrame, phase_col: str = "phase", x: str = "width",
              y: str = "batch_size", title: str = "phase", width: int | None = None,
              height: int = 160, hot_on_top: bool = True, confidence: str = "p_phase",
              legend_orient: str | None = "bottom") -> alt.Chart:
    """Categorical phase map in the book's fixed phase colours (:data:`PHASE_COLORS`).

    Cells whose phase is missing or ``"undetermined"`` are drawn light grey and labelled
    "undetermined". When ``cells`` has a ``confidence`` column (default ``p_phase``, in
    [0, 1]), a cell's opacity shows it (0.25 at 0, opaque at 1; the subtitle says so and
    the tooltip gives the value). Axes as in :func:`phase_heatmap`.
    """
    df = cells.copy()
    labels = df[phase_col].astype(object)  # a Categorical cannot take a new label
    df[phase_col] = labels.where(labels.notna(), "undetermined")
    present = [p for p in PHASE_COLORS if p in set(df[phase_col])]
    others = sorted(set(df[phase_col]) - set(PHASE_COLORS))
    # The full domain in every map, so maps drawn side by side (one shared scale) keep
    # each phase's colour; the legend lists the phases this map has.
    domain = list(PHASE_COLORS) + others
    ex, ey = phase_axes(df, x, y, hot_on_top)
    leg: dict[str, Any] = {"title": "phase", "values": present + others}
    if legend_orient:
        leg.update(orient=legend_orient, direction="horizontal")
    enc: dict[str, Any] = {
        "x": ex, "y": ey,
        "color": alt.Color(f"{phase_col}:N", legend=alt.Legend(**leg), scale=alt.Scale(
            domain=domain, range=[PHASE_COLORS.get(p, "#8c564b") for p in domain])),
    }
    tips = [alt.Tooltip(f"{x}:O"), alt.Tooltip(f"{y}:O"), alt.Tooltip(f"{phase_col}:N")]
    heading: Any = title
    if confidence in df and df[confidence].notna().any():
        # opacity without a legend of its own (it would double the legend row's width):
        # the subtitle says how to read it
        df[confidence] = df[confidence].astype(float).clip(0.0, 1.0)
        enc["opacity"] = alt.Opacity(f"{confidence}:Q", legend=None,
                                     scale=alt.Scale(domain=[0, 1], range=[0.25, 1.0]))
        tips.append(alt.Tooltip(f"{confidence}:Q", title="confidence", format=".2f"))
        heading = alt.TitleParams(title, subtitle="paler: less confident")
    enc["tooltip"] = tips
    # a thin white outline: neighbouring cells of one phase stay readable as cells
    return alt.Chart(df, title=heading, width=width or fit_width(2),
                     height=height).mark_rect(stroke="white", strokeWidth=1).encode(**enc)


# --------------------------------------------------------------------------------------
# Spectral density: a Gaussian kernel estimate on the axis it is drawn on
# --------------------------------------------------------------------------------------
SYMLOG_CONSTANT = 1.0   # Vega-Lite's default symlog constant: linear for |λ| << 1


def symlog(x: np.ndarray | float, constant: float = SYMLOG_CONSTANT) -> np.ndarray:
    """sign(x) · log(1 + |x| / c): Vega-Lite's symlog transform (natural log)."""
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.log1p(np.abs(x) / constant)


def symlog_inverse(u: np.ndarray | float, constant: float = SYMLOG_CONSTANT) -> np.ndarray:
    """The inverse of :func:`symlog`."""
    u = np.asarray(u, dtype=np.float64)
    return np.sign(u) * constant * np.expm1(np.abs(u))


def density_weights(lam: np.ndarray, density: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A density given on a grid (``lam``, ``density``, each (G,), as in ``density.csv``)
    as point masses: (nodes (G,), weights (G,) summing to 1), each grid point weighted by
    its density times the width of its cell (half the distance to each neighbour)."""
    lam = np.asarray(lam, dtype=np.float64)
    dens = np.clip(np.asarray(density, dtype=np.float64), 0.0, None)
    if lam.shape != dens.shape or lam.ndim != 1 or lam.size == 0:
        raise ValueError("lam and density must be 1-D arrays of the same, non-zero length")
    order = np.argsort(lam)
    lam, dens = lam[order], dens[order]
    if lam.size == 1:
        return lam, np.ones(1)
    edges = np.concatenate([[lam[0]], (lam[1:] + lam[:-1]) / 2, [lam[-1]]])
    w = dens * np.diff(edges)
    total = w.sum()
    if not total > 0:
        raise ValueError("the density has no mass")
    return lam, w / total


def smooth_density(nodes: np.ndarray, weights: np.ndarray, bandwidth: float | None = None,
                   points: int = 200, axis: str = "symlog",
                   constant: float = SYMLOG_CONSTANT, pad: float = 3.0,
                   u_range: tuple[float, float] | None = None) -> pd.DataFrame:
    """Gaussian kernel estimate of a spectral density from point masses, on the axis it is
    drawn on.

    The nodes (e.g. SLQ quadrature nodes, or :func:`density_weights` of a stored curve)
    are mapped to u = symlog(λ) (``axis="symlog"``) or u = λ (``"linear"``), and the
    density of u is ρ(u) = Σ_i w_i N(u; u_i, h²), evaluated on ``points`` points evenly
    spaced in u over [min u_i - pad·h, max u_i + pad·h]. It integrates to 1 over u, so on
    a symlog λ axis the area under the curve is the spectral mass.

    Args:
        nodes, weights: (n,) each; weights >= 0, normalized here to sum to 1.
        bandwidth: h in units of u; default 2% of the span of the u_i (at least 0.02).
        u_range: evaluate on [lo, hi] in u instead (several curves on one grid).

    Returns:
        ``points`` rows: ``lam`` (λ at each point), ``u`` and ``density`` (per unit u).
    """
    nodes = np.asarray(nodes, dtype=np.float64).ravel()
    weights = np.asarray(weights, dtype=np.float64).ravel()
    if nodes.shape != weights.shape or nodes.size == 0:
        raise ValueError("nodes and weights must be non-empty arrays of the same length")
    if np.any(weights < 0) or not np.all(np.isfinite(nodes)) or not weights.sum() > 0:
        raise ValueError("weights must be >= 0 with a positive sum, nodes finite")
    if axis == "symlog":
        u_nodes = symlog(nodes, constant)
    elif axis == "linear":
        u_nodes = nodes
    else:
        raise ValueError(f"axis must be 'symlog' or 'linear', got {axis!r}")
    w = weights / weights.sum()
    span = float(u_nodes.max() - u_nodes.min())
    h = float(bandwidth) if bandwidth is not None else max(0.02 * span, 0.02)
    if not h > 0:
        raise ValueError(f"bandwidth must be > 0, got {bandwidth!r}")
    lo, hi = u_range if u_range is not None else (u_nodes.min() - pad * h,
                                                  u_nodes.max() + pad * h)
    u = np.linspace(float(lo), float(hi), int(points))
    # (points, n) kernel matrix in chunks, so many nodes stay cheap in memory
    dens = np.zeros_like(u)
    for s in range(0, nodes.size, 4096):
        z = (u[:, None] - u_nodes[None, s:s + 4096]) / h
        dens += np.exp(-0.5 * z * z) @ w[s:s + 4096]
    dens /= h * math.sqrt(2.0 * math.pi)
    lam = symlog_inverse(u, constant) if axis == "symlog" else u
    return pd.DataFrame({"lam": lam, "u": u, "density": dens})


def smooth_density_table(density: pd.DataFrame, by: Sequence[str] = ("run_id",),
                         bandwidth: float | None = None, points: int = 200,
                         axis: str = "symlog", constant: float = SYMLOG_CONSTANT,
                         pad: float = 3.0) -> pd.DataFrame:
    """:func:`smooth_density` of every curve of a long table (``lam``, ``density`` and the
    ``by`` columns, like ``density.csv``), long form with the ``by`` columns first.

    All curves share one bandwidth (default 2% of the span in u of all of them, at least
    0.02) and one grid of ``points`` points, so that they compare point by point."""
    by = list(by)
    absent = [c for c in (*by, "lam", "density") if c not in density]
    if absent:
        raise KeyError(f"the density table lacks column(s) {absent}")
    cols = [*by, "lam", "u", "density"]
    if density.empty:
        return pd.DataFrame(columns=cols)
    lam_all = density["lam"].to_numpy(dtype=np.float64)
    u_all = symlog(lam_all, constant) if axis == "symlog" else lam_all
    span = float(u_all.max() - u_all.min())
    h = float(bandwidth) if bandwidth is not None else max(0.02 * span, 0.02)
    u_range = (float(u_all.min()) - pad * h, float(u_all.max()) + pad * h)
    frames = []
    for key, g in density.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        nodes, w = density_weights(g["lam"].to_numpy(), g["density"].to_numpy())
        sm = smooth_density(nodes, w, bandwidth=h, points=points, axis=axis,
                            constant=constant, u_range=u_range)
        for k, v in zip(by, key):
            sm.insert(0, k, v)
        frames.append(sm)
    return pd.concat(frames, ignore_index=True)[cols]


def spectrum_chart(smoothed: pd.DataFrame, color: str | None = None, title: str =
                   "Hessian spectral density", width: int | None = None, height: int = 180,
                   axis: str = "symlog", floor: float = 1e-4, y_log: bool = True,
                   legend_title: str | None = None, constant: float = SYMLOG_CONSTANT
                   ) -> alt.Chart:
    """A smoothed spectrum (:func:`smooth_density` / :func:`smooth_density_table`) as
    lines: λ on a symlog (or linear) axis, the density per unit of that axis on a log
    scale, floored at ``floor`` × each curve's peak so that gaps run along the floor
    instead of breaking the line. ``color``: a column with one value per curve (legend
    below)."""
    df = smoothed.copy()
    group = [color] if color else []
    peak = df.groupby(group)["density"].transform("max") if group else df["density"].max()
    if y_log:
        df["density"] = np.maximum(df["density"], floor * peak)
    xscale = alt.Scale(type="symlog", constant=constant) if axis == "symlog" else alt.Scale()
    enc: dict[str, Any] = {
        "x": alt.X("lam:Q", title="eigenvalue λ" + (" (symlog axis)" if axis == "symlog" else ""),
                   scale=xscale, axis=alt.Axis(labelOverlap=True, tickCount=8,
                                               format=NUMBER_FORMAT)),
        "y": alt.Y("density:Q", title="density", scale=alt.Scale(type="log") if y_log
                   else alt.Scale()),
        "tooltip": [alt.Tooltip("lam:Q", title="λ", format=NUMBER_FORMAT),
                    alt.Tooltip("density:Q", format=NUMBER_FORMAT)],
    }
    if color:
        enc["color"] = line_color(color, legend_title, columns=1)
        enc["tooltip"].append(alt.Tooltip(f"{color}:N"))
    return alt.Chart(df, title=title, width=width or fit_width(1),
                     height=height).mark_line(strokeWidth=1.5, interpolate="monotone"
                                              ).encode(**enc)
