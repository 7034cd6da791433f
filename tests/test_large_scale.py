"""Tests of landscape_utils.experiments.large_scale (chapter 6): the cells, the extra runs, the tasks
rebuilt by hand on tiny stored runs, the tables, the verdict rules, and the same records
under the process executor as under the serial one."""
from __future__ import annotations

import math
import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from landscape_utils.core.params import combine, dot, norm, params_of
from landscape_utils.experiments import large_scale as ls
from landscape_utils.runs.runner import expand_grid, run_grid
from landscape_utils.runs.store import Store, run_id
from landscape_utils.runs.tasks import run_tasks

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(dataset="digits", model="mlp", depth=1, data_fraction=0.2, num_epochs=3, lr=0.1, batch_size=32)


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    """A tiny grid in a fresh store: width 4 and 16 at batch 32, 3 seeds, with chapter 1's tables."""
    workdir = tmp_path_factory.mktemp("ls") / "work"
    configs = expand_grid(TINY, {"width": [4, 16]}, seeds=range(3))
    grid = run_grid(configs, workdir, device="cpu", progress=False)
    tables = workdir / "tables"
    tables.mkdir(parents=True)
    grid.to_csv(tables / "grid.csv", index=False)
    pd.Series({"load_axis": "width", "temperature_axis": "batch_size"}).to_json(tables / "grid_axes.json")
    return workdir


def _loss(model, x, y):
    with torch.no_grad():
        return float(F.cross_entropy(model(x), y))


# --------------------------------------------------------------------------- settings and cells
def test_settings_from_params_and_bad_values():
    s = ls.WedgeSettings.from_params({"radii": [1.0, 2.0], "seed": 3, "unrelated": 1})
    assert s.radii == (1.0, 2.0) and s.seed == 3 and s.num_points == ls.WedgeSettings().num_points
    assert np.allclose(s.distances(), np.linspace(0, s.max_distance, s.num_distances))
    with pytest.raises(ValueError, match="num_directions"):
        ls.WedgeSettings.from_params({"num_directions": 0})
    with pytest.raises(ValueError, match="radii"):
        ls.WedgeSettings.from_params({"radii": []})
    with pytest.raises(ValueError, match="subspace_target_frac"):
        ls.WedgeSettings.from_params({"subspace_target_frac": 1.5})


def test_choose_cells_by_mc_and_fallback():
    idx = pd.MultiIndex.from_tuples([(4, 16), (4, 256), (64, 16), (64, 256)], names=["width", "batch_size"])
    loss = pd.Series([2.0, 1.5, 0.1, 0.3], index=idx)
    gc = pd.DataFrame({"mc": [-3.0, -10.0, -0.5, -1.0]}, index=idx)
    cells, source = ls.choose_cells(loss, gc, 0.5)
    assert cells == {"poorly connected": (4, 256), "well connected": (64, 16)} and "mc" in source
    cells, source = ls.choose_cells(loss, None)
    assert cells == {"poorly connected": (4, 16), "well connected": (64, 16)} and "largest load" in source


def test_config_with_casts_to_the_field_type():
    cfg = expand_grid(TINY, {}, seeds=[0])[0]
    new = ls.config_with(cfg, "weight_decay", 0)
    assert isinstance(new.weight_decay, float)
    assert run_id(new) == run_id(replace(cfg, weight_decay=0.0))
    with pytest.raises(ValueError, match="unknown knob 'momentun'"):
        ls.config_with(cfg, "momentun", 0.5)
    with pytest.raises(ValueError, match="lr"):
        ls.config_with(cfg, "lr", -1)


def test_study_members_and_knob_runs(store_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="grid_axes.json"):
        ls.load_study(tmp_path)
    study = ls.load_study(store_dir)
    assert set(study.cells) == set(ls.LABELS) and study.cells["poorly connected"][0] == 4
    members = ls.cell_members(store_dir, study, 3)
    assert all(len(ids) == 3 for ids in members.values())
    seeds = [Store(store_dir).config(r).seed for r in members["well connected"]]
    assert seeds == [0, 1, 2]
    extra = ls.extra_seed_configs(store_dir, study, 4)
    assert sorted((c.width, c.seed) for c in extra) == [(w, s) for w in (4, 16) for s in range(4)]
    base = members["well connected"][0]
    planned = ls.knob_configs(store_dir, study, base, {"lr": [0.05], "width": [99]})
    assert [(k, v) for k, v, _ in planned] == [("lr", 0.05)]  # grid axes are not knobs here
    runs = ls.knob_runs(store_dir, study, base, {"lr": [0.05]})
    assert [(k, v) for k, v, _ in runs] == [("width", 4.0), ("width", 16.0), ("batch_size", 32.0), ("lr", 0.1)]
    assert runs[-1][2] == base  # the extra run is not trained: only the base run stands for lr


# --------------------------------------------------------------------------- tasks by hand
def test_surface_task_against_brute_force(store_dir):
    study = ls.load_study(store_dir)
    a_id, b_id = ls.cell_members(store_dir, study, 2)["well connected"]
    dev = torch.device("cpu")
    rec = ls.surface_task(workdir=str(store_dir), device=dev, run=a_id, partner=b_id, resolution=3, margin=0.0,
                          span=0.5, seed=0)[0]
    surf = pd.DataFrame(rec["surface"]).set_index(["alpha", "beta"])
    assert len(surf) == 9
    a, b = ls.run_model(store_dir, a_id, dev), ls.run_model(store_dir, b_id, dev)
    d = ls.run_data(Store(store_dir).config(a_id), dev)
    assert surf.loc[(0.0, 0.0), "train_loss"] == pytest.approx(_loss(a, d.x_train, d.y_train), rel=1e-5)
    assert surf.loc[(1.0, 0.0), "train_loss"] == pytest.approx(_loss(b, d.x_train, d.y_train), rel=1e-5)
    d1, d2 = ls.surface_plane(a, b, 0)
    assert abs(dot(d1, d2)) < 1e-6 * norm(d1) * norm(d2)
    assert rec["distance"] == pytest.approx(norm(d1))
    point = combine(params_of(a), (0.5, d1), (0.5, d2))
    with torch.no_grad():
        for k, p in a.named_parameters():
            p.copy_(point[k])
    assert surf.loc[(0.5, 0.5), "train_loss"] == pytest.approx(_loss(a, d.x_train, d.y_train), rel=1e-5)


def test_alignment_and_wedge_tasks_start_at_the_solutions(store_dir):
    study = ls.load_study(store_dir)
    a_id, b_id = ls.cell_members(store_dir, study, 2)["poorly connected"]
    dev = torch.device("cpu")
    a, b = ls.run_model(store_dir, a_id, dev), ls.run_model(store_dir, b_id, dev)
    d = ls.run_data(Store(store_dir).config(a_id), dev)
    rec = ls.alignment_task(workdir=str(store_dir), device=dev, run_a=a_id, run_b=b_id, num_points=3,
                            max_sweeps=5, seed=0)[0]
    prof = rec["linear_before_profile"]
    assert prof["train_loss"][0] == pytest.approx(_loss(a, d.x_train, d.y_train), rel=1e-5)
    assert prof["train_loss"][-1] == pytest.approx(_loss(b, d.x_train, d.y_train), rel=1e-5)
    table = ls.alignment_table([({"cell": "c", "pair": "0-1"}, rec)])
    assert list(table.columns) == ["cell", "pair", *ls.ALIGNMENT_COLUMNS] and len(table) == 1
    w = ls.wedge_task(workdir=str(store_dir), device=dev, run=a_id, radii=[1.0, 2.0], num_directions=2,
                      max_distance=0.5, num_distances=3, seed=0)[0]
    prof = pd.DataFrame(w["profiles"])
    assert w["norm"] == pytest.approx(norm(params_of(a)))
    centre = prof[(prof.radius == 1.0) & (prof.distance == 0.0)]
    assert np.allclose(centre.train_loss, _loss(a, d.x_train, d.y_train), rtol=1e-5)
    assert prof.distance.max() == pytest.approx(0.5 * w["norm"])


# --------------------------------------------------------------------------- tables
def test_escape_directions_by_hand():
    rows = []
    for j, errs in enumerate(([10.0, 12.0, 20.0], [10.0, 11.0, 12.0])):  # direction 1 never rises 5 points
        rows += [{"radius": 1.0, "direction": j, "distance": dist, "train_err": e, "train_loss": 0.1 * e}
                 for dist, e in zip((0.0, 1.0, 2.0), errs)]
    e = ls.escape_directions(pd.DataFrame(rows), err_rise=5.0, loss_rise=0.5).set_index(["criterion", "direction"])
    # direction 0: 15 is crossed between 12 (at 1) and 20 (at 2): 1 + 3/8
    assert e.loc[("train_err", 0), "escape"] == pytest.approx(1.375)
    assert e.loc[("train_loss", 0), "escape"] == pytest.approx(1.375)
    assert math.isinf(e.loc[("train_err", 1), "escape"]) and e.loc[("train_err", 1), "censored"]


def test_wedge_tables_summarize_escapes():
    prof = []
    for r, rise_at in ((1.0, 1.0), (2.0, 2.0)):
        for j in range(2):
            prof += [{"radius": r, "radius_norm": r * 3, "direction": j, "distance": dist,
                      "train_err": 10.0 + (20.0 if dist >= rise_at else 0.0), "train_loss": 1.0}
                     for dist in (0.0, 1.0, 2.0, 3.0)]
    radial = {"s": [0.0], "norm": [3.0], "train_loss": [1.0], "train_err": [10.0]}
    rec = {"profiles": pd.DataFrame(prof).to_dict(orient="list"), "radial": radial, "norm": 3.0}
    wt = ls.wedge_tables([({"cell": "c"}, rec)], err_rise=5.0, loss_rise=0.5)
    s = wt.summary.set_index(["criterion", "radius"])
    # the error jumps by 20 between the grid points around the step: 5/20 of the way
    assert s.loc[("train_err", 1.0), "escape"] == pytest.approx(0.25)
    assert s.loc[("train_err", 2.0), "escape"] == pytest.approx(1.25)
    assert s.loc[("train_err", 2.0), "radius_norm"] == pytest.approx(6.0)
    assert s.loc[("train_loss", 1.0), "censored"] == 1.0 and np.isnan(s.loc[("train_loss", 1.0), "escape"])
    assert len(wt.cuts) == 8 and set(wt.radial.cell) == {"c"}


def test_simplex_summary_and_ensembles_from_records():
    trained = {"l1": [1.0, 0.0, 0.0, 0.5], "l2": [0.0, 1.0, 0.0, 0.5], "l3": [0.0, 0.0, 1.0, 0.0],
               "train_loss": [0.1, 0.2, 0.3, 0.9], "train_err": [1.0, 2.0, 3.0, 9.0]}
    flat = {**trained, "train_loss": [0.1, 0.2, 0.3, 2.0]}
    ens = {"member_acc": 0.8, "ensemble_acc": 0.85, "disagreement": 0.1, "cka": 0.9}
    rec = {"trained": trained, "flat": flat, "edges": {"train_loss": [0.1, 0.5]}, "fit_seconds": 1.0,
           "ensemble_independent": ens, "ensemble_simplex": {**ens, "disagreement": 0.05}}
    alignment = pd.DataFrame({"cell": ["c"] * 3, "linear_before_worst_loss": [1.0, 2.0, 3.0],
                              "linear_after_worst_loss": [0.5, 0.6, 0.7]})
    s = ls.simplex_summary([({"cell": "c"}, rec)], alignment).iloc[0]
    assert s["solutions (mean loss)"] == pytest.approx(0.2)
    assert s["straight lines (worst)"] == 3.0 and s["straight lines (spread)"] == pytest.approx(1.0)
    assert s["complex (worst)"] == 0.9 and s["flat triangle (worst)"] == 2.0
    e = ls.ensemble_table([({"cell": "c"}, rec)])
    assert list(e.members) == ["independent seeds", "simplex samples"] and list(e.disagreement) == [0.1, 0.05]


# --------------------------------------------------------------------------- verdicts
def test_spread_and_combined_verdicts():
    assert ls.spread_verdict(1.0, 0.5) == "holds"
    assert ls.spread_verdict(-1.0, 0.5) == "fails"
    assert ls.spread_verdict(0.2, 0.5) == "inconclusive"
    assert ls.spread_verdict(1.0, float("nan")) == "inconclusive"
    assert ls.combine_verdicts(["holds", "holds"]) == "holds"
    assert ls.combine_verdicts(["fails"]) == "fails"
    assert ls.combine_verdicts(["holds", "fails"]) == "inconclusive"
    assert ls.combine_verdicts([]) == "inconclusive"


def test_findings_follow_the_tables():
    alignment = pd.DataFrame({"cell": ["a"] * 3 + ["b"] * 3,
                              "linear_before_loss_barrier": [1.0, 1.2, 0.9, 0.5, 0.6, 0.4],
                              "linear_after_loss_barrier": [0.1, 0.2, 0.1, 0.1, 0.0, 0.1]})
    f = ls.alignment_finding(alignment)
    assert f.key == "weight_matching_lowers_barrier" and f.verdict == "holds" and f.n.startswith("6 ")
    summary = pd.DataFrame([{"cell": "a", "complex (worst)": 0.5, "straight lines (worst)": 2.0,
                             "straight lines (spread)": 0.3, "aligned lines (worst)": 0.45,
                             "aligned lines (spread)": 0.2}])
    inconclusive = ls.alignment_finding(alignment.assign(linear_after_loss_barrier=[2.0, 0.0, 1.0, 0.5, 0.6, 0.4]))
    assert inconclusive.verdict == "inconclusive"
    worse = ls.alignment_finding(alignment.assign(linear_after_loss_barrier=alignment.linear_before_loss_barrier + 1))
    assert worse.verdict == "fails"
    below_lines, below_aligned = ls.simplex_findings(summary)
    assert below_lines.verdict == "holds" and below_aligned.verdict == "inconclusive"
    esc = pd.DataFrame([{"cell": "a", "criterion": c, "radius": r, "direction": j,
                         "escape": (r if c == "train_err" else 2.0 / r) + 0.01 * j, "censored": False}
                        for c in ("train_err", "train_loss") for r in (0.5, 1.0, 1.5) for j in range(3)])
    grows_err, grows_loss = ls.escape_findings(esc)
    assert (grows_err.verdict, grows_loss.verdict) == ("holds", "fails") and grows_err.n.startswith("3 ")
    # a censored escape counts as the cut's length: here it decides the direction
    cens = esc[esc.criterion == "train_err"].assign(escape=lambda d: np.where(d.radius == 1.5, np.inf, d.escape))
    assert ls.escape_findings(cens, {"a": 1.2})[0].verdict == "holds"
    assert ls.escape_findings(cens, {"a": 0.9})[0].verdict == "inconclusive"  # capped at 0.9 on both sides
    assert ls.simplex_findings(summary.iloc[:0])[0].verdict == "inconclusive"


# --------------------------------------------------------------------------- executors
def _close(a, b, path="record"):
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            if k not in ("fit_seconds", "seconds"):  # wall time differs by nature
                _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-4, abs=1e-6), path
    else:
        assert a == b, path


def _small_plan(store_dir):
    """Every kind of chapter-6 task, at the smallest settings, on the well connected cell."""
    study = ls.load_study(store_dir)
    members = ls.cell_members(store_dir, study, 3)
    members = {"well connected": members["well connected"]}
    s = ls.WedgeSettings(num_points=3, align_sweeps=3, simplex_epochs=1, simplex_batch_size=64, grid_resolution=2,
                         tunnel_epochs=1, ensemble_size=2, cka_batches=1, radii=(1.0, 1.5), num_directions=1,
                         num_distances=3, subspace_dims=(4,), subspace_seeds=1, subspace_epochs=1,
                         surface_resolution=3)
    base = members["well connected"][0]
    return ls.plan_tasks(members, [("width", 16.0, base)], base, 0.5, s)


def test_with_costs_ranks_the_wide_cell_and_the_long_kinds_first(store_dir):
    study = ls.load_study(store_dir)
    members = ls.cell_members(store_dir, study, 3)
    base = members["well connected"][0]
    planned = ls.plan_tasks(members, [("width", 16.0, base)], base, 0.5, ls.WedgeSettings())
    costed = ls.with_costs(planned, store_dir)
    # the same tasks in the same order (the chapter files results by it), only costed
    assert [(p.kind, p.meta, p.task.keys) for p in costed] == [(p.kind, p.meta, p.task.keys) for p in planned]
    assert all(p.task.cost == 0.0 for p in planned) and all(p.task.cost > 0 for p in costed)
    store = Store(store_dir)

    def width(p):
        args = p.task.args
        return store.config(args.get("run_a") or args.get("run") or args["runs"][0]).width

    assert {width(p) for p in costed} == {4, 16}
    for kind in ls.KINDS:  # the width-16 cell's task of a kind costs more than width 4's
        by_width = {width(p): p.task.cost for p in costed if p.kind == kind}
        if len(by_width) == 2:
            assert by_width[16] > by_width[4], kind
    wide = {p.kind: p.task.cost for p in costed if width(p) == 16}
    assert wide["simplex"] > wide["tunnel"] > wide["alignment"]


def test_process_executor_gives_the_serial_records(store_dir, tmp_path):
    planned = _small_plan(store_dir)
    assert sorted({p.kind for p in planned}) == sorted(ls.KINDS)
    tasks = [p.task for p in planned]
    other = tmp_path / "copy"
    shutil.copytree(store_dir, other)
    serial = run_tasks(tasks, store_dir, executor="serial", device="cpu", progress=False)
    process = run_tasks(tasks, other, executor="process", device="cpu", progress=False, workers=1)
    _close(serial, process)
    # the second call reads every record back from the store
    again = run_tasks(tasks, other, executor="serial", device="cpu", progress=False)
    _close(process, again)
    got = ls.collect(planned, serial)
    assert len(got["alignment"]) == 3 and ls.knob_table(got["reach"]).knob.tolist() == ["width"]
    sweep, curve = ls.subspace_tables(got["subspace"])
    assert list(curve.dim) == [4] and len(sweep) == 1


@pytest.mark.slow  # starts a local Ray
def test_ray_executor_gives_the_serial_records(store_dir, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is not installed (optional extra)")
    tasks = [p.task for p in _small_plan(store_dir)]
    serial, other = tmp_path / "serial", tmp_path / "ray"
    for folder in (serial, other):  # trained runs only: every record is computed afresh
        shutil.copytree(store_dir, folder)
        shutil.rmtree(folder / "metrics", ignore_errors=True)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = run_tasks(tasks, other, executor="ray", device="cpu", progress=False)
    finally:
        if started:
            ray.shutdown()
    _close(run_tasks(tasks, serial, executor="serial", device="cpu", progress=False), on_ray)
