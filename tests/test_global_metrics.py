"""Tests of landscape_utils.experiments.global_metrics: the cache key, one pair's record rebuilt from
the underlying metrics (and the straight line's midpoint rebuilt by hand), the store
cache, diverged-run handling, the per-cell summary, the path table and the example
cells."""
from __future__ import annotations

import copy
from dataclasses import replace
import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from landscape_utils.core.models import build_model
from landscape_utils.core.models import evaluate
from landscape_utils.core.train import RunConfig
from landscape_utils.experiments.global_metrics import (METRIC_NAME, PAIR_METRICS, PATH_COLUMNS, GlobalSettings,
                                                        batchable, example_cells, stacks_curves, fit_bezier_batch, measure_pairs, pair_record,
                                                        paths_table, summarize_pairs, usable_runs)
from landscape_utils.metrics.connectivity import fit_bezier
from landscape_utils.metrics.profiles import mode_connectivity
from landscape_utils.metrics.similarity import l2_distance, model_cka
from landscape_utils.runs.runner import expand_grid, run_grid
from landscape_utils.runs.store import Store

from conftest import make_blobs

CPU = "cpu"
TINY = GlobalSettings(curve_epochs=3, curve_batch_size=32, curve_lr=0.05, num_points=5, cka_samples=64,
                      cka_batches=4, eval_batch_size=100)


pytestmark = pytest.mark.usefixtures("one_thread")


def _train(seed, data, bn=False, steps=150):
    torch.manual_seed(seed)
    model = build_model("mlp", 16, data.in_shape, data.num_classes, batch_norm=bn, depth=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(steps):
        loss = F.cross_entropy(model(data.x_train), data.y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def pair():
    data = make_blobs(n_train=256, n_test=128, dim=10, k=3, seed=0)
    return data, _train(1, data), _train(2, data)


# --------------------------------------------------------------------------- settings and key
def test_key_holds_both_runs_and_every_setting_but_the_eval_batch():
    s = GlobalSettings()
    key = s.key("a", "b")
    assert key["run_a"] == "a" and key["run_b"] == "b"
    for name in ("curve_epochs", "curve_lr", "curve_batch_size", "curve_weight_decay", "num_points",
                 "cka_samples", "cka_batches", "cka_representation", "mixup_alpha", "seed"):
        assert key[name] == getattr(s, name)
    assert "eval_batch_size" not in key
    json.dumps(key)  # storable
    assert GlobalSettings(eval_batch_size=7).key("a", "b") == key
    assert GlobalSettings(curve_epochs=s.curve_epochs + 1).key("a", "b") != key
    assert s.key("b", "a") != key


@pytest.mark.parametrize("kwargs,match", [
    ({"num_points": 2}, "num_points"), ({"curve_epochs": 0}, "curve_epochs"),
    ({"cka_samples": 10, "cka_batches": 4}, "cka_samples")])
def test_bad_settings_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GlobalSettings(**kwargs)


# --------------------------------------------------------------------------- one pair
def test_pair_record_agrees_with_the_metrics_computed_directly(pair):
    data, a, b = pair
    rec = pair_record(a, b, data.x_train, data.y_train, data.x_test, data.y_test, TINY, device=CPU)
    rec = json.loads(json.dumps(rec))  # what the store keeps
    for path in ("bezier", "linear"):
        prof = pd.DataFrame(rec[path])
        assert np.allclose(prof.t, np.linspace(0, 1, TINY.num_points))
        mc, i = mode_connectivity(prof.train_err)
        key = "mc" if path == "bezier" else "linear_mc"
        assert rec[key] == pytest.approx(mc)
        assert rec["t_star" if path == "bezier" else "linear_t_star"] == pytest.approx(prof.t[i])
    bez, lin = pd.DataFrame(rec["bezier"]), pd.DataFrame(rec["linear"])
    # Both paths end at the two trained models themselves.
    for idx, model in ((0, a), (-1, b)):
        loss, acc = evaluate(model, data.x_train, data.y_train)
        for prof in (bez, lin):
            assert prof.train_loss.iloc[idx] == pytest.approx(loss, rel=1e-5)
            assert prof.train_err.iloc[idx] == pytest.approx(100 * (1 - acc))
        test_loss, test_acc = evaluate(model, data.x_test, data.y_test)
        assert lin.test_err.iloc[idx] == pytest.approx(100 * (1 - test_acc))
    assert rec["l2"] == pytest.approx(l2_distance(a, b))
    assert rec["cka"] == pytest.approx(model_cka(a, b, data.x_train, batch_size=16, num_batches=4, alpha=16.0,
                                                 seed=0, device=CPU))
    assert 0.0 < rec["cka"] <= 1.0 + 1e-12
    assert np.isfinite(rec["curve_loss"]) and rec["seconds"] >= 0


def test_linear_midpoint_matches_a_hand_averaged_model(pair):
    data, a, b = pair
    rec = pair_record(a, b, data.x_train, data.y_train, data.x_test, data.y_test, TINY, device=CPU)
    mid = copy.deepcopy(a)
    with torch.no_grad():
        for (_, pm), pa, pb in zip(mid.named_parameters(), a.parameters(), b.parameters()):
            pm.copy_(0.5 * (pa + pb))
    loss, acc = evaluate(mid, data.x_train, data.y_train)
    lin = pd.DataFrame(rec["linear"]).set_index("t")
    assert lin.loc[0.5, "train_loss"] == pytest.approx(loss, rel=1e-5)
    assert lin.loc[0.5, "train_err"] == pytest.approx(100 * (1 - acc))


def test_pair_record_recalibrates_batchnorm_along_the_path():
    data = make_blobs(n_train=256, n_test=64, dim=10, k=3, seed=1)
    a, b = _train(1, data, bn=True, steps=60), _train(2, data, bn=True, steps=60)
    one_batch = GlobalSettings(**{**TINY.__dict__, "eval_batch_size": 1024})  # BN pass in one batch
    rec = pair_record(a, b, data.x_train, data.y_train, None, None, one_batch, device=CPU)
    lin = pd.DataFrame(rec["linear"])
    assert lin.test_err.isna().all()  # no test split given
    # The midpoint with BN statistics recomputed over the training set, by hand.
    mid = copy.deepcopy(a).train()
    with torch.no_grad():
        for (_, pm), pa, pb in zip(mid.named_parameters(), a.parameters(), b.parameters()):
            pm.copy_(0.5 * (pa + pb))
        for m in mid.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.reset_running_stats()
                m.momentum = None
        mid(data.x_train)  # one batch: the cumulative average is the exact statistic
    loss, _ = evaluate(mid, data.x_train, data.y_train)
    assert lin.set_index("t").loc[0.5, "train_loss"] == pytest.approx(loss, rel=1e-4)


def test_stacks_curves_of_small_steps_only():
    # the default's SmallCNN at the curve batch 64: widths 8-32 stack, width 64 does not
    cfg = RunConfig(dataset="mnist1d", model="cnn", batch_norm=True, batch_size=32)
    settings = GlobalSettings(curve_batch_size=64)
    stacked = {w: stacks_curves(replace(cfg, width=w), settings, (40,), 10) for w in (8, 16, 32, 64)}
    assert stacked == {8: True, 16: True, 32: True, 64: False}
    # the curve's batch decides, not the runs'
    assert not stacks_curves(replace(cfg, width=32), GlobalSettings(curve_batch_size=128), (40,), 10)


def test_measure_pairs_costs_its_tasks_by_model_size(tmp_path, monkeypatch):
    configs = expand_grid({"dataset": "digits", "data_fraction": 0.3, "num_epochs": 1, "batch_size": 64},
                          {"width": [4, 16, 8]}, seeds=range(2))
    grid = run_grid(configs, tmp_path, device=CPU, progress=False)
    pairs = [tuple(g.sort_values("seed").run_id) for _, g in grid.groupby("width", sort=False)]
    widths = grid.set_index("run_id").width
    import landscape_utils.experiments.global_metrics as gm
    seen = {}

    def fake_run_tasks(tasks, workdir, **kw):
        seen.update({int(widths[t.args["pairs"][0][0]]): t.cost for t in tasks})
        return [[{"task": t.args["pairs"][0][0]}] for t in tasks]

    monkeypatch.setattr(gm, "run_tasks", fake_run_tasks)
    records, computed = measure_pairs(str(tmp_path), pairs, TINY, device=CPU, progress=False)
    assert seen[16] > seen[8] > seen[4] > 0 and computed == 3
    assert [r["task"] for r in records] == [a for a, _ in pairs]


# --------------------------------------------------------------------------- cache
def test_measure_pairs_computes_once_per_key_and_resumes(tmp_path, monkeypatch):
    configs = expand_grid({"dataset": "digits", "data_fraction": 0.3, "width": 8, "num_epochs": 2,
                           "batch_size": 32}, {}, seeds=range(3))
    grid = run_grid(configs, tmp_path, device=CPU, progress=False)
    ids = list(grid.sort_values("seed").run_id)
    pairs = [(ids[0], ids[1]), (ids[0], ids[2])]
    import landscape_utils.experiments.global_metrics as gm
    calls = []
    real = gm.pair_record
    monkeypatch.setattr(gm, "pair_record", lambda *a, **k: calls.append(1) or real(*a, **k))
    # the first pair finishes, then the session dies: the second run restarts with it stored
    first, computed = measure_pairs(str(tmp_path), pairs[:1], TINY, device=CPU, progress=False)
    assert computed == 1 and len(calls) == 1
    records, computed = measure_pairs(str(tmp_path), pairs, TINY, device=CPU, progress=False)
    assert computed == 1 and len(calls) == 2
    assert records[0] == first[0]
    for rec in records:
        assert set(PAIR_METRICS) <= set(rec) and np.isfinite(rec["l2"]) and rec["l2"] > 0
    again, computed = measure_pairs(str(tmp_path), pairs, TINY, device=CPU, progress=False)
    assert computed == 0 and again == records and len(calls) == 2
    other = GlobalSettings(**{**TINY.__dict__, "curve_epochs": TINY.curve_epochs + 1})
    _, computed = measure_pairs(str(tmp_path), pairs[:1], other, device=CPU, progress=False)
    assert computed == 1
    table = Store(tmp_path).metric_table(METRIC_NAME)
    assert len(table) == 3 and set(table.curve_epochs) == {3, 4} and set(table.run_a) == {ids[0]}


def _assert_stack_matches_separate_fits(pairs, data, atol):
    """Curves fitted as one stack equal each pair's own fit_bezier within ``atol``."""
    kwargs = dict(num_epochs=2, lr=0.05, batch_size=32, weight_decay=5e-4, momentum=0.9, seed=4, device=CPU)
    together = fit_bezier_batch(pairs, data.x_train, data.y_train, **kwargs)
    for (m1, m2), curve in zip(pairs, together):
        alone = fit_bezier(m1, m2, data.x_train, data.y_train, **kwargs)
        for k in alone.names:
            assert torch.allclose(curve.bends[0][k], alone.bends[0][k], atol=atol, rtol=1e-4), k
        assert curve.history[-1]["loss"] == pytest.approx(alone.history[-1]["loss"], rel=1e-4)
        # the bend moved away from the midpoint it started from
        mid = {k: 0.5 * (alone.w1[k] + alone.w2[k]) for k in alone.names}
        assert max(float((curve.bends[0][k] - mid[k]).abs().max()) for k in alone.names) > 1e-4


def test_fit_bezier_batch_matches_separate_fits(pair):
    data, a, b = pair
    c = _train(3, data)
    _assert_stack_matches_separate_fits([(a, b), (a, c), (b, c)], data, atol=1e-5)


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_fit_bezier_batch_matches_separate_fits_with_batchnorm(model):
    # the default's SmallCNN has BatchNorm: stacked, each curve still normalizes by its own
    # minibatch statistics at phi(t), as fit_bezier's train-mode template does
    data = make_blobs(n_train=128, n_test=32, dim=12, k=3, seed=1)
    nets = []
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        net = build_model(model, 8, data.in_shape, data.num_classes, batch_norm=True)
        with torch.no_grad():  # running statistics unlike the batch's: a fit must not read them
            for m in net.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.running_mean.add_(3.0)
                    m.running_var.mul_(5.0)
        nets.append(net.eval())
    _assert_stack_matches_separate_fits([(nets[0], nets[1]), (nets[0], nets[2]), (nets[1], nets[2])], data,
                                        atol=1e-4)
    # the models themselves are untouched, running statistics included
    assert all(float(m.running_var.min()) >= 5.0 * 0.99 for net in nets for m in net.modules()
               if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))


def test_fit_bezier_batch_refuses_dropout(pair):
    data, _, _ = pair
    nets = [torch.nn.Sequential(torch.nn.Linear(10, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 3))
            for _ in range(2)]
    assert not batchable(nets[0]) and batchable(pair[1])
    with pytest.raises(ValueError, match="dropout"):
        fit_bezier_batch([(nets[0], nets[1])], data.x_train, data.y_train, num_epochs=1, device=CPU)


# --------------------------------------------------------------------------- grid handling
def _grid():
    rows = []
    for w in (4, 8):
        for bs in (16, 64):
            for seed in (2, 0, 1):
                rows.append({"run_id": f"w{w}b{bs}s{seed}", "width": w, "batch_size": bs, "seed": seed,
                             "status": "ok", "train_loss": 0.1})
    g = pd.DataFrame(rows)
    g.loc[g.run_id == "w4b16s1", "status"] = "diverged"
    g.loc[g.run_id == "w8b64s0", "train_loss"] = np.nan
    g.loc[g.run_id.isin(["w8b16s0", "w8b16s2"]), "status"] = "diverged"
    return g


def test_usable_runs_sets_aside_diverged_runs_and_orders_by_seed():
    cells, skipped = usable_runs(_grid(), "width", "batch_size")
    assert list(cells) == [(4, 16), (4, 64), (8, 16), (8, 64)]
    assert cells[(4, 16)] == ["w4b16s0", "w4b16s2"]
    assert cells[(4, 64)] == ["w4b64s0", "w4b64s1", "w4b64s2"]
    assert cells[(8, 16)] == ["w8b16s1"]  # fewer than 2: no pairs
    assert cells[(8, 64)] == ["w8b64s1", "w8b64s2"]
    assert set(skipped.run_id) == {"w4b16s1", "w8b64s0", "w8b16s0", "w8b16s2"}


def test_summarize_pairs_mean_std_and_empty_cells():
    pairs = pd.DataFrame({"width": [4, 4, 4, 8], "batch_size": [16, 16, 16, 64],
                          "mc": [-1.0, -2.0, -6.0, 0.5], "linear_mc": [-2.0, -4.0, -9.0, 0.0],
                          "cka": [0.9, 0.8, 0.7, 0.95], "l2": [1.0, 2.0, 3.0, 4.0]})
    cells = summarize_pairs(pairs, [(8, 64), (4, 16), (8, 16)], "width", "batch_size")
    assert list(cells.columns) == ["width", "batch_size", "mc", "mc_std", "linear_mc", "linear_mc_std",
                                   "cka", "cka_std", "l2", "l2_std", "n_pairs"]
    c = cells.set_index(["width", "batch_size"])
    assert list(c.index) == [(4, 16), (8, 16), (8, 64)]
    assert c.loc[(4, 16), "mc"] == pytest.approx(-3.0)
    assert c.loc[(4, 16), "mc_std"] == pytest.approx(np.std([-1, -2, -6], ddof=1))
    assert c.loc[(4, 16), "n_pairs"] == 3
    assert c.loc[(8, 64), "l2"] == 4.0 and np.isnan(c.loc[(8, 64), "l2_std"])
    assert c.loc[(8, 16), "n_pairs"] == 0 and c.loc[(8, 16), list(PAIR_METRICS)].isna().all()
    empty = summarize_pairs(pairs.iloc[:0], [(4, 16)], "width", "batch_size")
    assert empty.n_pairs.tolist() == [0] and np.isnan(empty.mc[0])


def test_paths_table_is_long_form():
    prof = {"t": [0.0, 0.5, 1.0], "train_loss": [0.1, 0.9, 0.2], "train_err": [1.0, 20.0, 2.0],
            "test_loss": [0.3, 1.0, 0.3], "test_err": [5.0, 30.0, 6.0]}
    recs = [({"width": 4, "batch_size": 16, "pair": k}, {"bezier": prof, "linear": prof}) for k in range(2)]
    table = paths_table(recs, "width", "batch_size")
    assert list(table.columns) == ["width", "batch_size", *PATH_COLUMNS]
    assert len(table) == 2 * 2 * 3
    assert set(table.path) == {"bezier", "linear"} and set(table.pair) == {0, 1}
    assert table.query("pair == 1 and path == 'linear' and t == 0.5").train_err.item() == 20.0
    assert list(paths_table([], "width", "batch_size").columns) == list(table.columns)


def test_example_cells_pick_the_barrier_and_the_best_connected_low_loss_cell():
    cells = pd.DataFrame({"mc": [-10.0, -0.01, 0.05, np.nan, -3.0]}, index=list("abcde"))
    loss = pd.Series([1.0, 2.0, 0.01, 0.0, 0.02], index=cells.index)
    # b has mc closest to 0 but a high loss; c is the low-loss cell closest to 0.
    assert example_cells(cells, loss) == ("a", "c")
    assert example_cells(cells, loss, low_loss_quantile=1.0) == ("a", "b")
    one = pd.DataFrame({"mc": [-2.0]}, index=["x"])
    assert example_cells(one, pd.Series([0.1], index=["x"])) == ("x", "x")
    assert example_cells(pd.DataFrame({"mc": [np.nan]}), pd.Series([0.1])) == (None, None)


# --------------------------------------------------------------------------- MLI and findings
def test_mli_table_is_the_mli_of_each_stored_run(tmp_path):
    from landscape_utils.experiments.global_metrics import MLISettings, mli_table
    from landscape_utils.metrics.connectivity import mli
    from landscape_utils.runs.store import load_model

    configs = expand_grid({"dataset": "digits", "model": "mlp", "num_epochs": 2, "batch_size": 64},
                          {"width": [8]}, seeds=range(2))
    runs = run_grid(configs, tmp_path, device=CPU, progress=False)
    s = MLISettings(num_points=5)
    table = mli_table(tmp_path, runs.run_id, s, device=CPU, progress=False)
    assert table.run_id.tolist() == runs.run_id.tolist()
    cfg = Store(tmp_path).config(runs.run_id[0])
    data = cfg.load_data()
    ref = mli(load_model(tmp_path, runs.run_id[0], "init", data=data), load_model(tmp_path, runs.run_id[0], data=data),
              data.x_train, data.y_train, num_points=5, eps=s.eps, device=CPU)
    row = table.iloc[0]
    assert row.mli_max_bump == pytest.approx(ref.delta, abs=1e-6)
    assert bool(row.mli_monotonic) == (not ref.non_monotonic)
    assert row.mli_init_loss == pytest.approx(float(ref.profile.train_loss.iloc[0]), rel=1e-6)
    assert row.mli_final_loss == pytest.approx(runs.train_loss[0], rel=1e-3)  # the stored final loss


def test_small_load_poorly_connected_decides_each_temperature_from_its_pairs():
    from scipy import stats

    from landscape_utils.experiments.global_metrics import small_load_poorly_connected

    seeds = [(0, 1), (0, 2), (1, 2)]

    def pairs(values, seeded=True):
        return pd.DataFrame([{"width": w, "batch_size": b, "mc": v,
                              **({"seed_a": seeds[k][0], "seed_b": seeds[k][1]} if seeded else {})}
                             for (w, b), vs in values.items() for k, v in enumerate(vs)])

    clear = {(4, 16): [-3.0, -2.5, -3.2], (4, 64): [-1.0, -1.2, -0.9], (4, 256): [0.5, 0.45, 0.55],
             (16, 16): [5.0, 5.0, 5.0]}
    f = small_load_poorly_connected(pairs(clear), "width", "batch_size")
    assert f.verdict == "holds" and "2 of 3" in f.evidence and "SE over seeds" in f.evidence
    # by hand for batch 64: leaving a seed out leaves one pair; SE^2 = (2/3) sum (pair - mean)^2
    v = np.array(clear[(4, 64)])
    se = np.sqrt(2 / 3 * np.sum((v - v.mean()) ** 2))
    assert f"{v.mean():.3g} ± {se:.2g}" in f.evidence
    assert v.mean() + stats.t.ppf(0.975, 2) * se < 0
    # mc values whose signs flip between pairs (the noise of issue 15) decide nothing.
    noise = {(4, 16): [-3.4, 4.25, -3.75], (4, 64): [-4.8, -3.1, 5.8], (4, 256): [0.5, 0.4, 0.6]}
    assert small_load_poorly_connected(pairs(noise), "width", "batch_size").verdict == "inconclusive"
    well = {(4, 16): [1.0, 1.1, 0.9], (4, 64): [1.0, 1.1, 0.9], (4, 256): [0.5, 0.45, 0.55]}
    assert small_load_poorly_connected(pairs(well), "width", "batch_size").verdict == "fails"
    # the seed jackknife is twice as wide as the per-pair SE at 3 seeds: a cell the pairs
    # would decide stays undecided
    edge = {(4, 16): [-1.0, -0.7, -1.3], (4, 64): [-1.0, -0.7, -1.3], (4, 256): [-1.0, -0.7, -1.3]}
    assert small_load_poorly_connected(pairs(edge), "width", "batch_size").verdict == "inconclusive"
    f_old = small_load_poorly_connected(pairs(edge, seeded=False), "width", "batch_size")
    assert f_old.verdict == "holds" and "treated as independent" in f_old.evidence


def test_continuation_table_trains_each_run_on_for_the_curve_budget(tmp_path):
    from landscape_utils.metrics.connectivity import continue_training, evaluate_path
    from landscape_utils.experiments.global_metrics import (CONTINUATION_METRIC, GlobalSettings, continuation_key,
                                                continuation_table, curve_steps, measure_pairs)
    from landscape_utils.runs.store import load_model

    configs = expand_grid({"dataset": "digits", "model": "mlp", "num_epochs": 2, "batch_size": 64,
                           "batch_norm": True}, {"width": [8]}, seeds=range(2))
    runs = run_grid(configs, tmp_path, device=CPU, progress=False)
    s = GlobalSettings(curve_epochs=2, curve_batch_size=128, curve_lr=0.05, num_points=3, cka_samples=80,
                       cka_batches=2)
    table = continuation_table(tmp_path, runs.run_id, s, device=CPU, progress=False)
    assert table.run_id.tolist() == runs.run_id.tolist()
    data = Store(tmp_path).config(runs.run_id[0]).load_data()
    assert (table.steps == curve_steps(s, data.x_train.shape[0])).all()
    assert table.steps[0] == 2 * (data.x_train.shape[0] // 128)
    # "before" is the endpoint measured as the curve measures it (BN recalibrated)
    (rec,), _ = measure_pairs(str(tmp_path), [tuple(runs.run_id)], s, device=CPU, progress=False)
    assert table.train_err_before[0] == pytest.approx(rec["bezier"]["train_err"][0], abs=1e-9)
    assert table.train_err_before[1] == pytest.approx(rec["bezier"]["train_err"][-1], abs=1e-9)
    # "after" is continue_training with the curve's recipe, measured the same way
    model = load_model(tmp_path, runs.run_id[0], data=data)
    after = continue_training(model, data.x_train, data.y_train, num_epochs=2, lr=0.05, batch_size=128,
                              weight_decay=s.curve_weight_decay, momentum=s.curve_momentum, seed=s.seed, device=CPU)
    point = {k: p.detach() for k, p in after.named_parameters()}
    prof = evaluate_path(after, lambda _t: point, [0.0], data.x_train, data.y_train, device=CPU)
    assert table.train_err_after[0] == pytest.approx(float(prof.train_err.iloc[0]), abs=1e-9)
    assert table.train_loss_after[0] < table.train_loss_before[0]  # 2 more epochs of training help
    # cached under the run and the curve recipe: a second call computes nothing
    assert Store(tmp_path).load_metric(CONTINUATION_METRIC, continuation_key(s, runs.run_id[0])) is not None
    again = continuation_table(tmp_path, runs.run_id, s, device=CPU, progress=False)
    pd.testing.assert_frame_equal(again, table)
    # the CKA settings are not part of the recipe: the same records
    other = GlobalSettings(**{**s.__dict__, "cka_samples": 160})
    assert continuation_key(other, "r") == continuation_key(s, "r")
    assert continuation_key(GlobalSettings(curve_epochs=3), "r") != continuation_key(GlobalSettings(), "r")


def test_curve_gain_over_continued_and_the_finding_go_both_ways():
    from landscape_utils.experiments.global_metrics import curve_gain_over_continued, interior_min, mc_survives_continuation

    assert interior_min([5.0, 1.0, 2.0, 0.5]) == 1.0
    assert np.isnan(interior_min([1.0, 2.0]))
    cont = pd.DataFrame({"run_id": ["a", "b", "c"], "train_err_after": [4.0, 6.0, 2.0]})
    pairs = pd.DataFrame({"run_id_a": ["a", "a", "b"], "run_id_b": ["b", "c", "x"], "curve_min_err": [3.0, 3.5, 1.0]})
    gain = curve_gain_over_continued(pairs, cont)
    assert gain.iloc[0] == pytest.approx(2.0) and gain.iloc[1] == pytest.approx(-0.5) and np.isnan(gain.iloc[2])

    def cell(lv, mc, gains):
        seeds = [(0, 1), (0, 2), (1, 2)]
        return [{"w": lv, "T": 1.0, "mc": m, "seed_a": a, "seed_b": b, "gain_continued": g}
                for m, (a, b), g in zip(mc, seeds, gains)]

    # one II cell whose curve keeps beating the continued endpoints, one whose gain is gone
    survives = pd.DataFrame(cell(8, [5.0, 6.0, 5.5], [3.0, 3.2, 2.9]))
    f = mc_survives_continuation(survives, "w", "T")
    assert f.verdict == "holds" and "curve still better" in f.evidence
    gone = pd.DataFrame(cell(8, [5.0, 6.0, 5.5], [-2.0, -2.2, -1.9]))
    assert mc_survives_continuation(gone, "w", "T").verdict == "fails"
    # cells with mc <= mc_pos are not tested
    none = pd.DataFrame(cell(8, [-3.0, -2.0, -2.5], [1.0, 1.0, 1.0]))
    f = mc_survives_continuation(none, "w", "T")
    assert f.verdict == "inconclusive" and "nothing to test" in f.evidence


def test_sign_beyond_spread_uses_the_t_quantile_or_a_fixed_multiple():
    from scipy import stats

    from landscape_utils.experiments.global_metrics import sign_beyond_spread

    q = stats.t.ppf(0.975, 2)  # 4.30
    assert sign_beyond_spread(q * 1.0 + 0.01, 1.0, 2) == 1
    assert sign_beyond_spread(q * 1.0 - 0.01, 1.0, 2) is None
    assert sign_beyond_spread(-(q + 0.01), 1.0, 2) == -1
    assert sign_beyond_spread(2.5, 1.0, 2, k=2.0) == 1  # a fixed multiple replaces t
    assert sign_beyond_spread(5.0, float("nan"), 2) is None
    assert sign_beyond_spread(5.0, 1.0, 0) is None  # no degrees of freedom: infinite quantile


def test_continuation_runs_are_the_endpoints_of_cells_with_positive_mean_mc():
    from landscape_utils.experiments.global_metrics import continuation_runs, positive_mc_cells

    pairs = pd.DataFrame({"w": [8, 8, 8, 64, 64], "T": [1, 1, 2, 1, 1], "mc": [3.0, 0.5, 5.0, -2.0, 0.0],
                          "run_id_a": ["a", "a", "c", "e", "e"], "run_id_b": ["b", "d", "f", "g", "h"]})
    cells = positive_mc_cells(pairs, "w", "T")
    assert cells.to_dict() == {(8, 1): 1.75, (8, 2): 5.0}  # (8, 1): mean of 3.0 and 0.5
    assert continuation_runs(pairs, "w", "T") == ["a", "b", "c", "d", "f"]
    assert continuation_runs(pairs, "w", "T", mc_pos=2.0) == ["c", "f"]
    assert continuation_runs(pairs[pairs.w == 64], "w", "T") == []
