"""One grid cell of three seeds measured end to end: our pipeline against the authors' recipe.

Both contenders train the three seeds of one cell and measure λmax and the trace of every
run and mc, the linear barrier and CKA of every seed pair, from the same pieces of this
package, so the ratio isolates the method:

* ours: the seeds trained as one stacked population (``population.train_population``),
  λmax by Lanczos and the trace by Hutch++ with their stopping rules
  (``local.measure_hessian``), the three curves fitted together in one ``vmap``
  (``global_metrics.fit_curves``), then ``pair_record``;
* the authors' recipe: each seed trained alone (``train.train_run``), λmax by PyHessian's
  power iteration and the trace by its Hutchinson loop at their default tolerances
  (``hessian.pyhessian_reference``), and one curve fitted per pair
  (``connectivity.fit_bezier`` inside ``pair_record``).

The cell is the default book's kind of model: an MLP on a quarter of MNIST-1D. The two
trainings end at slightly different points (float rounding of the stacked and the single
model grows over the epochs), so the measured values differ by the run-to-run spread of
nearby solutions; the printed differences say how much.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from torch import nn

from landscape_utils.core.population import train_population
from landscape_utils.core.train import RunConfig, init_model, train_run
from landscape_utils.experiments.global_metrics import GlobalSettings, fit_curves, pair_record
from landscape_utils.experiments.local import HessianSettings, measure_hessian
from landscape_utils.metrics.hessian import make_fixed_batch, pyhessian_reference

from . import Row, interleaved

SEEDS = (0, 1, 2)


def _models(cfg: RunConfig, data, results: dict[int, dict]) -> list[nn.Module]:
    models = []
    for seed in SEEDS:
        m = init_model(replace(cfg, seed=seed), data)
        m.load_state_dict(results[seed]["final_state"])
        models.append(m.eval())
    return models


def _pairs(models: list[nn.Module], data, settings: GlobalSettings, curves: list | None) -> list[dict]:
    idx = [(0, 1), (0, 2), (1, 2)]
    return [pair_record(models[i], models[j], data.x_train, data.y_train, data.x_test, data.y_test, settings,
                        device="cpu", curve=None if curves is None else curves[k]) for k, (i, j) in enumerate(idx)]


def ours(cfg: RunConfig, data, hs: HessianSettings, gs: GlobalSettings) -> dict:
    configs = [replace(cfg, seed=s) for s in SEEDS]
    results = {c.seed: r for c, r in train_population(configs, data, "cpu")}
    models = _models(cfg, data, results)
    batch = make_fixed_batch(data.x_train, data.y_train, hs.num_samples, seed=hs.seed)
    hess = [measure_hessian(m, batch, hs, "cpu") for m in models]
    pairs = [(models[i], models[j]) for i, j in ((0, 1), (0, 2), (1, 2))]
    curves = fit_curves(pairs, data.x_train, data.y_train, gs, "cpu")
    recs = _pairs(models, data, gs, curves)
    return {"lambda_max": [h["lambda_max"] for h in hess], "trace": [h["trace"] for h in hess],
            "mc": [r["mc"] for r in recs], "cka": [r["cka"] for r in recs]}


def authors(cfg: RunConfig, data, hs: HessianSettings, gs: GlobalSettings) -> dict:
    results = {s: train_run(replace(cfg, seed=s), data, "cpu") for s in SEEDS}
    models = _models(cfg, data, results)
    x, y = make_fixed_batch(data.x_train, data.y_train, hs.num_samples, seed=hs.seed)
    refs = [pyhessian_reference(m, nn.CrossEntropyLoss(), x, y) for m in models]
    recs = _pairs(models, data, gs, None)
    return {"lambda_max": [r.eigenvalues[0] if r.eigenvalues else float("nan") for r in refs],
            "trace": [r.trace_estimate for r in refs], "mc": [r["mc"] for r in recs], "cka": [r["cka"] for r in recs]}


def run(quick: bool) -> list[Row]:
    if quick:
        cfg = RunConfig(dataset="mnist1d", model="mlp", width=16, depth=2, batch_size=64, num_epochs=2,
                        data_fraction=0.125, lr=0.1)
        gs = GlobalSettings(curve_epochs=2, num_points=5, cka_samples=128, cka_batches=4)
        hs = HessianSettings(num_samples=100)
    else:
        cfg = RunConfig(dataset="mnist1d", model="mlp", width=64, depth=2, batch_size=32, num_epochs=30,
                        data_fraction=0.25, lr=0.1)
        gs = GlobalSettings(curve_epochs=20)
        hs = HessianSettings(num_samples=200)
    data = cfg.load_data()
    out: dict[str, dict] = {}

    def contender(name, fn):
        return lambda: out.__setitem__(name, fn(cfg, data, hs, gs))

    times = interleaved({"authors": contender("authors", authors), "ours": contender("ours", ours)},
                        repeats=1 if quick else 3, warmup=0 if quick else 1)
    agree = {k: float(np.nanmax(np.abs(np.subtract(out["ours"][k], out["authors"][k]))))
             for k in ("lambda_max", "mc", "cka")}
    return [Row("end_to_end", f"cell of 3 seeds (width {cfg.width}, batch {cfg.batch_size}, {cfg.num_epochs} epochs)",
                times["authors"] / times["ours"], "faster than the authors' recipe",
                {"ours_s": times["ours"], "authors_s": times["authors"],
                 "max_abs_diff_lambda_max": agree["lambda_max"], "max_abs_diff_mc": agree["mc"],
                 "max_abs_diff_cka": agree["cka"]})]
