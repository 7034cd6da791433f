"""Tests for landscape_utils.book.widgets: reading the chapters' tables, the chart builders, the
static linked explorer and the ipywidgets explorer (headless)."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from landscape_utils.book.widgets import PhaseExplorer, assemble_cells, linked_explorer, path_chart
from landscape_utils.experiments.reference import released_paths_table
from landscape_utils.experiments.taxonomy import classify
from landscape_utils.runs.runner import expand_grid
from landscape_utils.runs.tables import grid_base_config, load_book_tables

WIDTHS, BATCHES, SEEDS = (4, 16, 64), (16, 256), (0, 1)


# --------------------------------------------------------------------------------------
# A synthetic workdir with every table of the contract
# --------------------------------------------------------------------------------------
def _grid() -> pd.DataFrame:
    rows = []
    for w in WIDTHS:
        for b in BATCHES:
            for s in SEEDS:
                rows.append({"run_id": f"r{w}_{b}_{s}", "dataset": "mnist1d", "model": "mlp",
                             "width": w, "batch_size": b, "lr": 0.05, "num_epochs": 5,
                             "batch_norm": False, "seed": s, "status": "ok",
                             "train_loss": 1.0 / w + 0.01 * s, "train_acc": 1 - 1.0 / w,
                             "test_loss": 2.0 / w, "test_acc": 0.5 + w / 200 + 0.01 * s})
    return pd.DataFrame(rows)


def _write_workdir(root: Path, skip: tuple[str, ...] = ()) -> Path:
    tables = root / "tables"
    tables.mkdir(parents=True)
    grid = _grid()
    files: dict[str, pd.DataFrame] = {"grid.csv": grid}
    files["local.csv"] = pd.DataFrame({"run_id": grid.run_id, "lambda_max": 100.0 / grid.width
                                       + grid.seed, "trace": 1000.0 / grid.width,
                                       "trace_stderr": 1.0})
    lam = np.linspace(-1, 10, 200)
    files["density.csv"] = pd.concat([pd.DataFrame({"run_id": r, "lam": lam,
                                                    "density": np.exp(-lam ** 2 / w)})
                                      for r, w in zip(grid.run_id[grid.seed == 0],
                                                      grid.width[grid.seed == 0])])
    cells = grid[["width", "batch_size"]].drop_duplicates()
    files["global_cells.csv"] = cells.assign(
        width=cells.width.astype(float),  # a CSV round trip may turn ints into floats
        mc=np.where(cells.width == 4, -5.0, 0.1), mc_std=0.5, linear_mc=-10.0,
        linear_mc_std=1.0, cka=cells.width / 80, cka_std=0.01, l2=10.0, l2_std=1.0, n_pairs=1)
    t = np.linspace(0, 1, 5)
    files["paths.csv"] = pd.concat([
        pd.DataFrame({"width": w, "batch_size": b, "pair": "0-1", "path": p, "t": t,
                      "train_err": (w + b) * t * (1 - t) * (2 if p == "linear" else 1),
                      "train_loss": t, "test_err": 20 + t})
        for w in WIDTHS for b in BATCHES for p in ("bezier", "linear")])
    for name, df in files.items():
        if name not in skip:
            df.to_csv(tables / name, index=False)
    pd.Series({"load_axis": "width", "temperature_axis": "batch_size"}).to_json(
        tables / "grid_axes.json")
    for r in grid.run_id:
        d = root / "runs" / r
        d.mkdir(parents=True)
        (d / "history.json").write_text(json.dumps(
            [{"epoch": e, "lr": 0.05, "train_loss": 1.0 / e, "train_acc": 0.5} for e in range(1, 6)]))
    return root


@pytest.fixture
def workdir(tmp_path) -> Path:
    return _write_workdir(tmp_path / "w")


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------
def test_load_and_assemble_match_a_direct_groupby(workdir):
    tables = load_book_tables(workdir)
    assert tables.missing == ()
    assert tables.keys == ["width", "batch_size"]
    assert len(tables.history) == len(tables.grid) * 5
    assert {"width", "batch_size", "seed"} <= set(tables.history.columns)
    cells = assemble_cells(tables)
    assert len(cells) == len(WIDTHS) * len(BATCHES)
    # rebuild the per-cell means another way
    runs = tables.grid.merge(tables.local, on="run_id")
    direct = runs.groupby(["width", "batch_size"])[["test_acc", "lambda_max"]].mean()
    got = cells.set_index(["width", "batch_size"])
    np.testing.assert_allclose(got.loc[direct.index, "test_acc"], direct.test_acc)
    np.testing.assert_allclose(got.loc[direct.index, "lambda_max"], direct.lambda_max)
    np.testing.assert_allclose(got.lambda_max_std.loc[(16, 16)], np.std([100 / 16, 100 / 16 + 1],
                                                                        ddof=1))
    # chapter 3's per-cell metrics joined despite the float width column
    assert cells.mc.notna().all() and (cells.loc[cells.width == 4, "mc"] == -5.0).all()
    assert cells.cka.loc[cells.width == 64].iloc[0] == pytest.approx(0.8)
    assert classify(cells).notna().all()


def test_missing_tables_are_named_with_their_metrics_and_chapter(tmp_path):
    w = _write_workdir(tmp_path / "w", skip=("local.csv", "global_cells.csv", "paths.csv",
                                             "density.csv"))
    tables = load_book_tables(w)
    text = "\n".join(tables.missing)
    assert "missing lambda_max, trace" in text and "local.csv not found" in text
    assert "chapter 2" in text and "chapter 3" in text
    assert "missing mc, linear_mc, cka, l2" in text
    assert tables.local is None and tables.paths is None
    cells = assemble_cells(tables)
    assert "test_acc" in cells and "lambda_max" not in cells and "mc" not in cells
    assert classify(cells).isna().all()  # no mc: no phase, not a wrong one


def test_malformed_and_empty_tables(tmp_path):
    w = _write_workdir(tmp_path / "w")
    (w / "tables" / "local.csv").write_text("")
    pd.DataFrame({"width": [4], "t": [0.0]}).to_csv(w / "tables" / "paths.csv", index=False)
    tables = load_book_tables(w)
    text = "\n".join(tables.missing)
    assert "local.csv is unreadable" in text
    assert "paths.csv lacks column(s) path, train_err, batch_size" in text
    # nothing at all: an empty frame keyed by the assumed axes
    empty = load_book_tables(tmp_path / "nothing")
    assert len(empty.missing) == 5 and empty.keys == ["width", "batch_size"]
    assert list(assemble_cells(empty).columns) == ["width", "batch_size"]


def test_grid_base_config_is_the_shared_setup_in_plain_python():
    base = grid_base_config(_grid())
    assert base == {"dataset": "mnist1d", "model": "mlp", "lr": 0.05, "num_epochs": 5,
                    "batch_norm": False}
    assert all(type(v) in (str, int, float, bool) for v in base.values())
    configs = expand_grid(base, {"width": [8]}, seeds=[0])  # accepted as is
    assert configs[0].num_epochs == 5 and configs[0].width == 8


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_released_paths_from_a_synthetic_release(tmp_path):
    tar_path = tmp_path / "results.tar.gz"
    ts = np.linspace(0, 1, 5)
    members = {
        "x/different_knobs_subset_10/bs_16/lr_decay/ResNet18_w4/metrics/curve_test.npz":
            _npz(ts=ts, tr_err=np.array([1.0, 2, 9, 2, 1]), tr_loss=ts, te_err=ts + 20,
                 tr_err_avg=np.float64(3)),
        "x/different_knobs_subset_10/bs_19/lr_decay/ResNet18_w4/metrics/curve_test.npz":
            _npz(ts=ts, tr_err=ts),  # not in the paper's figure
    }
    with tarfile.open(tar_path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    df = released_paths_table(tar_path, paper_grid_only=True)
    assert list(df.columns) == ["width", "batch_size", "pair", "path", "t", "train_err",
                                "train_loss", "test_err"]
    assert len(df) == 5 and (df.batch_size == 16).all() and (df.path == "bezier").all()
    np.testing.assert_allclose(df.train_err, [1, 2, 9, 2, 1])
    assert len(released_paths_table(tar_path)) == 10


def test_released_paths_refuses_object_arrays(tmp_path):
    d = tmp_path / "rel/different_knobs_subset_10/bs_16/lr_decay/ResNet18_w4/metrics"
    d.mkdir(parents=True)
    np.savez(d / "curve_test.npz", ts=np.array([0.0, 1.0]),
             tr_err=np.array([{"a": 1}, None], dtype=object))
    from landscape_utils.experiments.reference import UnsafePickleError

    with pytest.raises(UnsafePickleError, match="allow_pickle"):
        released_paths_table(tmp_path / "rel")


def test_shipped_paths_match_the_shipped_mc():
    """The explorer's released paths (shipped with the package) give the released mc."""
    from landscape_utils.experiments.reference import load_shipped_paths, load_shipped_results
    from landscape_utils.metrics.profiles import mode_connectivity

    paths = load_shipped_paths(paper_grid_only=True)
    assert paths.groupby(["width", "batch_size"]).ngroups == 14 * 13
    cells = load_shipped_results(paper_grid_only=True).set_index(["width", "batch_size"])
    for (w, b), g in list(paths.groupby(["width", "batch_size"]))[::17]:
        assert mode_connectivity(g.sort_values("t").train_err.to_numpy())[0] == pytest.approx(cells.mc[(w, b)])


# --------------------------------------------------------------------------------------
# The static linked explorer
# --------------------------------------------------------------------------------------
def _cells_with_phase(workdir) -> tuple:
    tables = load_book_tables(workdir)
    cells = assemble_cells(tables)
    cells["phase"] = classify(cells)
    return tables, cells


def _all_filters(spec) -> list:
    out = []
    if isinstance(spec, dict):
        for k, v in spec.items():
            if k == "filter":
                out.append(v)
            out += _all_filters(v)
    elif isinstance(spec, list):
        for v in spec:
            out += _all_filters(v)
    return out


def test_linked_explorer_selection_drives_the_detail_charts(workdir):
    tables, cells = _cells_with_phase(workdir)
    chart = linked_explorer(cells, "width", "batch_size", history=tables.history,
                            paths=tables.paths, density=tables.density, runs=tables.grid,
                            max_points=20)
    spec = chart.to_dict()  # validates against the Vega-Lite schema
    params = [p for p in spec.get("params", []) if p["name"] == "cell"]
    assert len(params) == 1
    sel = params[0]["select"]
    assert sel["type"] == "point" and sel["fields"] == ["width", "batch_size"]
    # starts on the best test accuracy: width 64 (both batch sizes tie; the first is kept)
    assert params[0]["value"] == [{"width": 64, "batch_size": 16}]
    # info (header + metrics) + curves + paths + density are all filtered by the selection
    assert _all_filters(spec).count({"param": "cell"}) == 5
    # data stays small: 200 density points per cell thinned to about 20
    dens = [d for d in spec["datasets"].values() if d and "lam" in d[0]]
    assert len(dens) == 1 and len(dens[0]) <= 6 * 21
    # every row of the detail data carries the keys the selection filters on
    for rows in spec["datasets"].values():
        if rows and "train_loss" in rows[0] and "epoch" in rows[0]:
            assert all({"width", "batch_size"} <= set(r) for r in rows)


def test_linked_explorer_without_details_is_just_map_and_text(workdir):
    _, cells = _cells_with_phase(workdir)
    spec = linked_explorer(cells, "width", "batch_size", color="cka",
                           initial={"width": 4, "batch_size": 256}).to_dict()
    assert len(spec["vconcat"]) == 1
    heat = spec["vconcat"][0]["hconcat"][0]
    assert heat["encoding"]["color"]["field"] == "cka"
    assert spec["params"][0]["value"] == [{"width": 4, "batch_size": 256}]
    tips = {t["field"] for t in heat["encoding"]["tooltip"]}
    assert {"phase", "mc", "lambda_max", "cka", "test_acc"} <= tips


# --------------------------------------------------------------------------------------
# The ipywidgets explorer, headless
# --------------------------------------------------------------------------------------
def _color_field(chart) -> str:
    spec = chart.to_dict()
    return spec["layer"][0]["encoding"]["color"]["field"]


def test_explorer_metric_and_cell_changes_update_the_display(workdir):
    tables, cells = _cells_with_phase(workdir)
    ex = PhaseExplorer.from_tables(tables, cells)
    assert ex.metric.value == "phase" and _color_field(ex.shown["map"]) == "phase"
    assert ex.selected() == {"width": 64, "batch_size": 16}
    ex.metric.value = "cka"
    assert _color_field(ex.shown["map"]) == "cka"
    assert set(ex.metric.options) >= {"phase", "test_acc", "lambda_max", "mc", "cka", "l2"}

    ex.select(width=4, batch_size=256)
    assert ex.selected() == {"width": 4, "batch_size": 256}
    row = ex.selected_row()
    assert row.mc == -5.0 and row.phase == "I"
    # the displayed detail charts hold only that cell's data
    detail = ex.shown["detail"].to_dict()
    datasets = list(detail["datasets"].values())
    curves = [d for d in datasets if d and "epoch" in d[0]]
    paths = [d for d in datasets if d and "path" in d[0]]
    dens = [d for d in datasets if d and "lam" in d[0]]
    assert {(r["width"], r["batch_size"]) for r in curves[0]} == {(4, 256)}
    assert {r["seed"] for r in curves[0]} == set(SEEDS)
    assert {(r["width"], r["batch_size"]) for r in paths[0]} == {(4, 256)}
    assert max(r["train_err"] for r in paths[0]) == pytest.approx((4 + 256) * 0.25 * 2)
    assert 0 < len(dens[0]) < 200 and {r["width"] for r in dens[0]} == {4}
    peak = max(r["density"] for r in dens[0])
    assert min(r["density"] for r in dens[0]) >= 1e-4 * peak  # the empty tail is dropped
    # the outline on the map follows the selected cell
    outline = ex.shown["map"].to_dict()["layer"][1]
    assert outline["mark"]["type"] == "rect"
    summary = ex.shown["summary"]
    assert summary.loc["mode connectivity mc (% train error)", "value"] == -5.0
    assert summary.loc["test accuracy", "value"] == pytest.approx(row.test_acc)
    assert "width 4, batch_size 256" in ex.info.value and "phase <b>I</b>" in ex.info.value


def test_explorer_axes_swap_and_missing_details(tmp_path):
    w = _write_workdir(tmp_path / "w", skip=("density.csv", "paths.csv"))
    tables, cells = _cells_with_phase(w)
    ex = PhaseExplorer.from_tables(tables, cells)
    ex.x.value = "batch_size"  # the other axis takes the old value: no x == y
    assert (ex.x.value, ex.y.value) == ("batch_size", "width")
    enc = ex.shown["map"].to_dict()["layer"][0]["encoding"]
    assert (enc["x"]["field"], enc["y"]["field"]) == ("batch_size", "width")
    assert ex.path_chart() is None and ex.density_chart() is None
    assert ex.curves_chart() is not None
    assert "no path profiles for this grid" in ex.detail_notes()
    assert "missing" in " ".join(ex.notes)
    with pytest.raises(KeyError):
        ex.select(width=5, batch_size=16)


def test_explorer_with_more_keys_averages_the_others():
    cells = pd.DataFrame({"width": [4, 4, 8, 8], "batch_size": [16, 16, 16, 16],
                          "label_noise": [0.0, 0.2, 0.0, 0.2], "test_acc": [0.5, 0.3, 0.9, 0.7]})
    ex = PhaseExplorer(cells, ["width", "batch_size", "label_noise"])
    ex.y.value = "label_noise"
    assert len(ex.view_cells()) == 4
    ex.y.value = "batch_size"
    view = ex.view_cells()
    assert len(view) == 2 and view.set_index("width").test_acc.to_dict() == pytest.approx(
        {4: 0.4, 8: 0.8})
    with pytest.raises(ValueError, match="at least two"):
        PhaseExplorer(cells, ["width"])


# --------------------------------------------------------------------------------------
# Live in JupyterLab, static in the book
# --------------------------------------------------------------------------------------
def test_display_mode_follows_the_environment(monkeypatch):
    from landscape_utils.book.widgets import display_mode, live_or_static

    monkeypatch.delenv("LANDSCAPE_BOOK_STATIC", raising=False)
    monkeypatch.setenv("LANDSCAPE_BOOK", "1")
    assert display_mode() == "static"
    monkeypatch.setenv("LANDSCAPE_BOOK_STATIC", "1")
    monkeypatch.delenv("LANDSCAPE_BOOK")
    assert display_mode() == "static"
    monkeypatch.setenv("LANDSCAPE_BOOK_STATIC", "0")
    assert display_mode() == "static"  # no kernel here (pytest): nothing live to show
    assert display_mode("live") == "live"
    with pytest.raises(ValueError, match="mode must be"):
        display_mode("html")

    def boom():
        raise AssertionError("the live view must not be built in static mode")

    assert live_or_static("static chart", boom) == "static chart"
    assert live_or_static("static chart", lambda: "live app", mode="live") == "live app"


def _run_notebook(source: str, env: dict[str, str], monkeypatch) -> dict:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    nbclient.NotebookClient(nb, timeout=180, kernel_name="python3").execute()
    return nb


WIDGET_CELL = """
import altair as alt, pandas as pd
from landscape_utils.book.widgets import Control, LiveChart, live_or_static

def make(a):
    return alt.Chart(pd.DataFrame({"x": [a]})).mark_point().encode(x="x:Q")

live_or_static(make(1.0), lambda: LiveChart(make, {"a": Control("slider", 1.0, 0.0, 2.0)}))
"""


def test_static_book_notebook_holds_no_widget_but_jupyterlab_gets_one(monkeypatch):
    """Executed as the book driver does (LANDSCAPE_BOOK=1), the saved notebook has the
    altair chart and no widget view or widget state (so the page loads no widget
    JavaScript); forced live, the same cell makes a widget (the check can fail)."""
    widget_mime = "application/vnd.jupyter.widget-view+json"
    monkeypatch.delenv("LANDSCAPE_BOOK_STATIC", raising=False)
    static = _run_notebook(WIDGET_CELL, {"LANDSCAPE_BOOK": "1"}, monkeypatch)
    outputs = static.cells[0].outputs
    assert outputs and not any(widget_mime in o.get("data", {}) for o in outputs)
    assert any("text/html" in o.get("data", {}) or "application/vnd.vegalite.v5+json"
               in o.get("data", {}) or any(k.startswith("application/vnd.vegalite")
                                           for k in o.get("data", {})) for o in outputs)
    assert "widgets" not in static.metadata
    live = _run_notebook(WIDGET_CELL, {"LANDSCAPE_BOOK": "0", "LANDSCAPE_BOOK_STATIC": "0"},
                         monkeypatch)
    assert any(widget_mime in o.get("data", {}) for o in live.cells[0].outputs)


def test_live_chart_redraws_on_every_control_headless():
    from landscape_utils.book.widgets import Control, LiveChart

    calls = []

    def make(load, T, anneal):
        calls.append((load, T, anneal))
        return {"load": load, "T": T, "anneal": anneal}

    live = LiveChart(make, {"load": Control("log_slider", 1.0, 0.1, 10.0),
                            "T": Control("slider", 0.5, 0.0, 1.0),
                            "anneal": Control("checkbox", False, description="anneal")})
    assert live.shown["chart"] == {"load": 1.0, "T": 0.5, "anneal": False}
    live.controls_w["anneal"].value = True
    assert live.shown["chart"]["anneal"] is True
    live.controls_w["load"].value = 10.0
    assert live.shown["chart"]["load"] == pytest.approx(10.0) and len(calls) == 3
    with pytest.raises(ValueError, match="min < max"):
        Control("slider", 1.0, 2.0, 1.0)
    with pytest.raises(ValueError, match="min > 0"):
        Control("log_slider", 1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="not among"):
        Control("dropdown", "c", options=("a", "b"))
    with pytest.raises(ValueError, match="kind"):
        Control("knob", 1)


def _rendered_width(chart) -> int:
    import re

    vlc = pytest.importorskip("vl_convert")
    svg = vlc.vegalite_to_svg(chart.to_dict())
    return int(re.search(r'<svg[^>]*\swidth="(\d+)"', svg).group(1))


def test_explorers_fit_the_column_and_draw_a_smoothed_spectrum(workdir):
    from landscape_utils.core.plotting import COLUMN_WIDTH, symlog

    tables, cells = _cells_with_phase(workdir)
    cells["p_phase"] = 0.8
    linked = linked_explorer(cells, "width", "batch_size", history=tables.history,
                             paths=tables.paths, density=tables.density, runs=tables.grid)
    assert _rendered_width(linked) <= COLUMN_WIDTH
    ex = PhaseExplorer.from_tables(tables, cells)
    assert _rendered_width(ex.detail_chart()) <= COLUMN_WIDTH
    assert _rendered_width(ex.map_chart()) <= COLUMN_WIDTH
    # the spectrum: evenly spaced on the symlog axis, every point kept (floored, not dropped)
    spec = ex.density_chart().to_dict()
    rows = pd.DataFrame(list(spec["datasets"].values())[0])
    steps = np.diff(symlog(rows.lam.to_numpy()))
    np.testing.assert_allclose(steps, steps[0], rtol=1e-6)
    assert spec["encoding"]["x"]["scale"]["type"] == "symlog"


def test_path_legend_is_one_legend_of_dashed_coloured_lines(workdir):
    vlc = pytest.importorskip("vl_convert")
    tables, cells = _cells_with_phase(workdir)
    for chart in (linked_explorer(cells, "width", "batch_size", paths=tables.paths),
                  path_chart(tables.paths[tables.paths.width == 4])):
        svg = vlc.vegalite_to_svg(chart.to_dict())
        assert svg.count(">path</text>") == 1  # colour and dash merged into one legend
        assert ">straight line</text>" in svg and ">Bezier curve</text>" in svg
