"""One plot style for the whole book: an altair theme, one table of metric ->
label / scale / colours, phase-diagram heatmaps, and an offline renderer.

Importing this module registers and enables the ``landscape`` theme. Under the book
driver (``LANDSCAPE_BOOK=1``) it also enables the ``landscape_offline`` renderer,
whose HTML calls a ``vegaEmbed`` loaded once per page from the book's own static
files, so the HTML book draws its charts with no network.
"""
from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass

import altair as alt
import pandas as pd


@dataclass(frozen=True)
class MetricStyle:
    label: str          # axis / legend title
    log: bool = False   # colour on a log scale
    scheme: str = "viridis"
    diverging: bool = False  # centre the colour scale on 0
    reverse: bool = False    # high values drawn dark -> light


# The one table of metric -> how to draw it. Add a row here, not an if/elif.
METRICS: dict[str, MetricStyle] = {
    "test_acc": MetricStyle("test accuracy", scheme="viridis"),
    "train_acc": MetricStyle("train accuracy", scheme="viridis"),
    "test_loss": MetricStyle("test loss", log=True, scheme="magma", reverse=True),
    "train_loss": MetricStyle("train loss", log=True, scheme="magma", reverse=True),
    "lambda_max": MetricStyle("λmax (top Hessian eigenvalue)", log=True, scheme="inferno"),
    "trace": MetricStyle("Hessian trace", log=True, scheme="inferno"),
    "mc": MetricStyle("mode connectivity mc (% train error)", scheme="redblue", diverging=True),
    "linear_mc": MetricStyle("linear barrier (% train error)", scheme="redblue", diverging=True),
    "cka": MetricStyle("CKA similarity", scheme="greens"),
    "l2": MetricStyle("L2 distance between seeds", log=True, scheme="blues"),
}

PHASE_COLORS = {"I": "#d62728", "II": "#ff7f0e", "III": "#9467bd", "IV-A": "#1f77b4", "IV-B": "#2ca02c"}

AXIS_LABELS = {
    "width": "width (load)", "data_fraction": "data fraction (load)",
    "label_noise": "label noise (load, more noise = less load capacity)",
    "batch_size": "batch size (temperature; small = hot)", "lr": "learning rate (temperature)",
    "weight_decay": "weight decay (temperature)",
}


def _theme() -> dict:
    return {"config": {
        "view": {"continuousWidth": 320, "continuousHeight": 240, "stroke": None},
        "axis": {"labelFontSize": 11, "titleFontSize": 12, "grid": False},
        "legend": {"labelFontSize": 11, "titleFontSize": 12},
        "title": {"fontSize": 13, "anchor": "start"},
        "range": {"category": list(PHASE_COLORS.values()) + ["#8c564b", "#e377c2", "#7f7f7f"]},
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


def _color(metric: str, field: str | None = None) -> alt.Color:
    style = METRICS.get(metric, MetricStyle(metric))
    scale = {"scheme": style.scheme, "reverse": style.reverse}
    if style.log:
        scale["type"] = "log"
    if style.diverging:
        scale["domainMid"] = 0
    return alt.Color(f"{field or metric}:Q", title=style.label, scale=alt.Scale(**scale))


def phase_heatmap(cells: pd.DataFrame, metric: str, x: str = "width", y: str = "batch_size",
                  title: str | None = None, width: int = 260, height: int = 200) -> alt.Chart:
    """A phase-diagram panel: one rect per grid cell coloured by ``metric``.

    ``cells`` has one row per cell with columns ``x``, ``y``, ``metric`` and optionally
    ``{metric}_std`` and ``n_seeds`` (shown in the tooltip). x is the load (left to
    right), y the temperature with small (hot) values at the top.
    """
    df = cells.copy()
    tips = [alt.Tooltip(f"{x}:O"), alt.Tooltip(f"{y}:O"), alt.Tooltip(f"{metric}:Q", format=".4g")]
    if f"{metric}_std" in df:
        tips.append(alt.Tooltip(f"{metric}_std:Q", title="std over seeds", format=".3g"))
    if "n_seeds" in df:
        tips.append(alt.Tooltip("n_seeds:Q"))
    style = METRICS.get(metric, MetricStyle(metric))
    if style.log:  # a log colour scale cannot show values <= 0
        df = df[df[metric] > 0]
    xs = sorted(cells[x].unique())
    ys = sorted(cells[y].unique())
    return alt.Chart(df, title=title or style.label, width=width, height=height).mark_rect().encode(
        x=alt.X(f"{x}:O", sort=xs, title=AXIS_LABELS.get(x, x)),
        y=alt.Y(f"{y}:O", sort=ys, title=AXIS_LABELS.get(y, y)),
        color=_color(metric), tooltip=tips)


def phase_panels(cells: pd.DataFrame, metrics: list[str], x: str = "width", y: str = "batch_size",
                 columns: int = 3) -> alt.ConcatChart:
    """Several ``phase_heatmap`` panels side by side, each with its own colour scale."""
    panels = [phase_heatmap(cells, m, x, y) for m in metrics if m in cells and cells[m].notna().any()]
    return alt.concat(*panels, columns=columns).resolve_scale(color="independent")


def phase_map(cells: pd.DataFrame, phase_col: str = "phase", x: str = "width", y: str = "batch_size",
              title: str = "phase", width: int = 260, height: int = 200) -> alt.Chart:
    """Categorical heatmap of phase labels, in the book's fixed phase colours."""
    xs, ys = sorted(cells[x].unique()), sorted(cells[y].unique())
    return alt.Chart(cells, title=title, width=width, height=height).mark_rect().encode(
        x=alt.X(f"{x}:O", sort=xs, title=AXIS_LABELS.get(x, x)),
        y=alt.Y(f"{y}:O", sort=ys, title=AXIS_LABELS.get(y, y)),
        color=alt.Color(f"{phase_col}:N", title="phase",
                        scale=alt.Scale(domain=list(PHASE_COLORS), range=list(PHASE_COLORS.values()))),
        tooltip=[f"{x}:O", f"{y}:O", f"{phase_col}:N"])
