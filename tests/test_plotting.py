"""Tests for landscape_utils.core.plotting: the colour rule (checked on rendered colours), the
symmetric diverging domains, rounded legends, hot-on-top phase maps, the width budget of
composed charts (from their specs and rendered), and the smoothed spectral density against
a brute-force sum of Gaussians."""
from __future__ import annotations

import math
import re

import altair as alt
import numpy as np
import pandas as pd
import pytest

from landscape_utils.core import plotting as P

vlc = pytest.importorskip("vl_convert")


def _fills(chart) -> list[tuple[int, int, int]]:
    """The rect fills of a rendered chart, in data order."""
    svg = vlc.vegalite_to_svg(chart.to_dict())
    return [tuple(int(v) for v in m) for m in
            re.findall(r'fill="rgb\((\d+), (\d+), (\d+)\)"', svg)]


def _rendered_width(chart) -> int:
    svg = vlc.vegalite_to_svg(chart.to_dict())
    width = int(re.search(r'<svg[^>]*\swidth="(\d+)"', svg).group(1))
    assert P.rendered_width(chart) == width
    return width


def _lum(rgb) -> float:
    r, g, b = rgb
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _cells(**metrics) -> pd.DataFrame:
    n = len(next(iter(metrics.values())))
    return pd.DataFrame({"width": [4 * 2 ** i for i in range(n)], "batch_size": 16, **metrics})


# --------------------------------------------------------------------------------------
# Colour
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("metric, better, worse", [
    ("test_acc", 0.9, 0.5), ("train_acc", 1.0, 0.6), ("cka", 0.9, 0.2),
    ("train_loss", 0.01, 1.0), ("test_loss", 0.1, 2.0), ("lambda_max", 1.0, 100.0),
    ("trace", 10.0, 1000.0), ("l2", 1.0, 30.0),
])
def test_worse_is_the_dark_end_on_every_panel(metric, better, worse):
    mid = math.sqrt(better * worse) if P.METRICS[metric].log else (better + worse) / 2
    fills = _fills(P.phase_heatmap(_cells(**{metric: [better, mid, worse]}), metric))
    assert len(fills) == 3
    assert _lum(fills[2]) < _lum(fills[1]) < _lum(fills[0])  # darker as it gets worse
    r, g, b = fills[2]
    assert r > g and r > b  # and warm


def test_diverging_scale_is_symmetric_so_a_small_value_stays_pale():
    cells = _cells(linear_mc=[-72.0, 0.0, 1.8, 12.0])
    enc = P.phase_heatmap(cells, "linear_mc").to_dict()["encoding"]["color"]
    assert enc["scale"]["domain"] == [-72.0, 72.0] and enc["scale"]["domainMid"] == 0
    barrier, zero, small, mid = _fills(P.phase_heatmap(cells, "linear_mc"))
    assert barrier[0] > barrier[2] and mid[2] > mid[0]  # red below 0, blue above
    assert _lum(small) > 0.9 * _lum(zero)  # +1.8 is nearly as pale as 0
    assert _lum(mid) > _lum(barrier) + 80  # +12 is far paler than -72, not as loud
    full = _fills(P.phase_heatmap(_cells(linear_mc=[-72.0, 72.0]), "linear_mc"))
    assert abs(_lum(full[0]) - _lum(full[1])) < 40  # equal magnitudes, equally loud


def test_symmetric_domain():
    assert P.symmetric_domain([-72, 1.8]) == [-72.0, 72.0]
    assert P.symmetric_domain(pd.Series([0.5, -2.0, np.nan, np.inf])) == [-2.0, 2.0]
    assert P.symmetric_domain([np.nan]) == [-1.0, 1.0] and P.symmetric_domain([0, 0]) == [-1, 1]
    lo, hi = P.symmetric_domain(np.r_[np.linspace(-1, 1, 99), 100.0], quantile=0.95)
    assert lo == -hi and hi < 2
    with pytest.raises(ValueError):
        P.symmetric_domain([1.0], quantile=0.0)


def test_legends_and_tooltips_are_rounded():
    cells = _cells(test_loss=[3.32782747396, 1.0, 0.5], test_loss_std=[0.1, 0.1, 0.1])
    spec = P.phase_heatmap(cells, "test_loss").to_dict()
    assert spec["encoding"]["color"]["legend"]["format"] == P.NUMBER_FORMAT == ".3~g"
    fmt = {t["field"]: t.get("format") for t in spec["encoding"]["tooltip"]}
    assert fmt["test_loss"] == ".3~g" and fmt["test_loss_std"] == ".3~g"
    svg = vlc.vegalite_to_svg(spec)
    assert "3.32782747396" not in svg
    assert not re.search(r">\d\.\d{4,}<", svg)  # no long decimals anywhere in the legend


# --------------------------------------------------------------------------------------
# Phase maps: hot on top, undetermined cells, confidence
# --------------------------------------------------------------------------------------
def test_hot_end_on_top_for_every_temperature_axis():
    lr = pd.DataFrame({"width": [4, 4, 8, 8], "lr": [0.01, 1.0, 0.01, 1.0], "mc": [1, 2, 3, 4.0]})
    y = P.phase_heatmap(lr, "mc", "width", "lr").to_dict()["encoding"]["y"]
    assert y["sort"] == [1.0, 0.01]  # Vega-Lite lists an ordinal y from the top
    bs = _cells(mc=[1.0, 2.0]).assign(batch_size=[256, 16])
    assert P.phase_heatmap(bs, "mc").to_dict()["encoding"]["y"]["sort"] == [16, 256]
    assert P.phase_heatmap(bs, "mc", hot_on_top=False).to_dict()["encoding"]["y"]["sort"] == \
        [256, 16]
    df = pd.DataFrame({"data_fraction": [0.1, 1.0], "batch_size": 16, "phase": ["I", "IV-B"]})
    x = P.phase_map(df, x="data_fraction").to_dict()["encoding"]["x"]
    assert x["sort"] == [1.0, 0.1]  # least capacity per sample on the left


def test_phase_map_shows_undetermined_cells_and_confidence():
    cells = pd.DataFrame({"width": [4, 8, 16], "batch_size": 16,
                          "phase": pd.Categorical(["I", None, "undetermined"]),
                          "p_phase": [0.9, np.nan, 0.4]})
    spec = P.phase_map(cells).to_dict()
    color = spec["encoding"]["color"]["scale"]
    # every phase keeps its colour (maps side by side share one scale); the legend lists
    # only the phases this map has
    assert dict(zip(color["domain"], color["range"])) == P.PHASE_COLORS
    assert spec["encoding"]["color"]["legend"]["values"] == ["I", "undetermined"]
    assert spec["encoding"]["opacity"]["field"] == "p_phase"
    assert spec["encoding"]["opacity"]["scale"] == {"domain": [0, 1], "range": [0.25, 1.0]}
    rows = list(spec["datasets"].values())[0]
    assert [r["phase"] for r in rows] == ["I", "undetermined", "undetermined"]
    assert "p_phase" not in P.phase_map(cells.drop(columns="p_phase")).to_dict()["encoding"].get(
        "opacity", {}).get("field", "")


def test_one_colour_per_path_kind():
    c = P.path_color("path", ["bezier", "linear", "aligned"]).to_dict()
    assert c["scale"]["range"] == [P.PATH_COLORS[k] for k in ("bezier", "linear", "aligned")]
    assert "straight line" in c["legend"]["labelExpr"]
    d = P.path_dash("path", ["bezier", "linear"]).to_dict()
    assert d["scale"]["range"] == [[1, 0], [5, 3]] and d["title"] == c["title"]
    with pytest.raises(KeyError, match="no colour for path kind"):
        P.path_color("path", ["spline"])
    assert len(set(P.PATH_COLORS.values())) == len(P.PATH_COLORS)


# --------------------------------------------------------------------------------------
# Widths
# --------------------------------------------------------------------------------------
def test_fit_width_budget():
    for n in (1, 2, 3):
        w = P.fit_width(n)
        total = P.PADDING + n * (w + P.AXIS_ALLOWANCE) + (n - 1) * P.SPACING
        assert total <= P.COLUMN_WIDTH < total + n  # fills the column to within rounding
    assert P.fit_width(2, legend_right=True) < P.fit_width(2)
    with pytest.raises(ValueError, match="do not fit"):
        P.fit_width(8)
    assert P.panel_columns(4) == 2 and P.panel_columns(1) == 1


def test_composed_charts_fit_the_column():
    cells = _cells(test_acc=[0.5, 0.7, 0.9, 0.8], train_loss=[1.0, 0.1, 0.01, 0.02],
                   lambda_max=[50.0, 10.0, 2.0, 3.0], trace=[500.0, 100.0, 30.0, 40.0],
                   mc=[-5.0, -1.0, 0.1, 0.0], cka=[0.2, 0.5, 0.9, 0.8])
    cells = pd.concat([cells, cells.assign(batch_size=256)], ignore_index=True)
    cells["phase"] = ["I", "III", "IV-B", "IV-A"] * 2
    panels = P.phase_panels(cells, ["test_acc", "train_loss", "lambda_max", "trace", "mc", "cka"])
    pair = alt.hconcat(P.phase_map(cells, width=P.fit_width(2)),
                       P.phase_heatmap(cells, "mc", width=P.fit_width(2)))
    for chart in (panels, pair):
        assert P.estimated_width(chart) <= P.COLUMN_WIDTH
        assert _rendered_width(chart) <= P.COLUMN_WIDTH
    # the estimate flags what would not fit
    wide = alt.hconcat(*[P.phase_heatmap(cells, m, width=300) for m in ("mc", "cka")])
    assert P.estimated_width(wide) > P.COLUMN_WIDTH and _rendered_width(wide) > P.COLUMN_WIDTH


# --------------------------------------------------------------------------------------
# Smoothed spectral density
# --------------------------------------------------------------------------------------
def _brute(u_grid, u_nodes, w, h):
    out = []
    for u in u_grid:
        s = 0.0
        for ui, wi in zip(u_nodes, w):
            s += wi * math.exp(-0.5 * ((u - ui) / h) ** 2) / (h * math.sqrt(2 * math.pi))
        out.append(s)
    return np.array(out)


@pytest.mark.parametrize("axis", ["linear", "symlog"])
def test_smooth_density_matches_a_sum_of_gaussians_and_integrates_to_one(axis):
    nodes = np.array([-0.7, 0.0, 0.02, 3.0, 40.0])
    weights = np.array([1.0, 5.0, 2.0, 1.0, 1.0])
    out = P.smooth_density(nodes, weights, bandwidth=0.15, points=400, axis=axis)
    u_nodes = nodes if axis == "linear" else np.sign(nodes) * np.log1p(np.abs(nodes))
    ref = _brute(out.u.to_numpy(), u_nodes, weights / weights.sum(), 0.15)
    np.testing.assert_allclose(out.density, ref, rtol=1e-12, atol=1e-15)
    assert np.trapezoid(out.density, out.u) == pytest.approx(1.0, abs=1e-3)
    np.testing.assert_allclose(P.symlog(out.lam), out.u, atol=1e-12) if axis == "symlog" else \
        np.testing.assert_allclose(out.lam, out.u)
    assert np.all(np.diff(out.u) > 0) and np.allclose(np.diff(out.u), np.diff(out.u)[0])


def test_density_weights_of_a_stored_curve():
    lam = np.linspace(0.0, 4.0, 5)
    nodes, w = P.density_weights(lam, np.ones(5))
    np.testing.assert_allclose(w, [0.125, 0.25, 0.25, 0.25, 0.125])
    with pytest.raises(ValueError, match="no mass"):
        P.density_weights(lam, np.zeros(5))
    with pytest.raises(ValueError, match="same"):
        P.density_weights(lam, np.ones(4))


def test_smooth_density_table_shares_grid_and_bandwidth_and_floors_without_gaps():
    lam = np.linspace(-1, 50, 200)
    spiky = np.where((np.abs(lam) < 0.3) | (np.abs(lam - 45) < 0.3), 1.0, 0.0)
    table = pd.concat([pd.DataFrame({"run_id": "a", "lam": lam, "density": spiky}),
                       pd.DataFrame({"run_id": "b", "lam": lam, "density": np.exp(-lam)})])
    sm = P.smooth_density_table(table, points=120)
    a, b = (sm[sm.run_id == r] for r in ("a", "b"))
    np.testing.assert_allclose(a.lam.to_numpy(), b.lam.to_numpy())
    for g in (a, b):
        assert np.trapezoid(g.density, g.u) == pytest.approx(1.0, abs=1e-3)
    spec = P.spectrum_chart(sm, color="run_id").to_dict()
    rows = pd.DataFrame(list(spec["datasets"].values())[0])
    for _, g in rows.groupby("run_id"):
        # one point per grid step (no dropped stretch a line would jump across), floored
        assert len(g) == 120 and g.density.min() >= 1e-4 * g.density.max() * (1 - 1e-9)
    assert spec["encoding"]["x"]["scale"]["type"] == "symlog"
    assert spec["encoding"]["color"]["legend"]["orient"] == "bottom"
    with pytest.raises(KeyError, match="lacks column"):
        P.smooth_density_table(table.drop(columns="density"))


def test_maps_side_by_side_keep_each_phase_colour():
    """Two maps in one figure share the colour scale; a phase present in only one of them
    must not take another phase's colour (rendered, the cells' fills are read back)."""
    import json

    import vl_convert as vlc

    a = pd.DataFrame({"width": [1, 2], "batch_size": [8, 8], "phase": ["I", "II"]})
    b = pd.DataFrame({"width": [1, 2], "batch_size": [8, 8], "phase": ["undetermined", "IV"]})
    chart = alt.hconcat(P.phase_map(a, title="a"), P.phase_map(b, title="b"))
    svg = vlc.vegalite_to_svg(json.loads(chart.to_json()))
    for phase in ("I", "II", "IV", "undetermined"):
        assert P.PHASE_COLORS[phase] in svg, phase
