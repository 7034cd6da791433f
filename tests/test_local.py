"""Tests for landscape_utils.experiments.local: the numbers against an exact Hessian, the cache
(resume, per-setting keys), the tables' shapes and the PyHessian side-by-side."""
from __future__ import annotations

import copy
import functools

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from conftest import train_tiny_digits_grid
from landscape_utils.experiments import local
from landscape_utils.experiments.local import (DensitySettings, HessianSettings, bin_density, density_table,
                                               hessian_table, measure_density, measure_hessian, model_and_batch,
                                               one_seed_per_cell, pyhessian_comparison)
from landscape_utils.runs.store import Store

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_problem(seed: int = 0):
    """An MLP with 183 parameters and a batch of 64 points in 3 classes."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 6), nn.Tanh(), nn.Linear(6, 3))
    x = torch.randn(64, 6)
    y = torch.randint(0, 3, (64,))
    return model, (x, y)


@functools.lru_cache(maxsize=None)
def exact_spectrum(seed: int) -> np.ndarray:
    """Eigenvalues of ``tiny_problem(seed)``'s Hessian (cached: ~seconds on a busy CPU)."""
    return exact_eigenvalues(*tiny_problem(seed))


def exact_eigenvalues(model: nn.Module, batch) -> np.ndarray:
    """Eigenvalues of the full cross-entropy Hessian, built independently in float64."""
    x, y = batch
    m = copy.deepcopy(model).double().eval()
    names = [n for n, _ in m.named_parameters()]
    shapes = [p.shape for _, p in m.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for _, p in m.named_parameters()])

    def loss(theta):
        parts, i = {}, 0
        for n, s in zip(names, shapes):
            k = int(np.prod(s))
            parts[n] = theta[i: i + k].view(s)
            i += k
        out = torch.func.functional_call(m, parts, (x.double(),))
        return nn.functional.cross_entropy(out, y)

    H = torch.autograd.functional.hessian(loss, flat)  # cold torch.func.hessian: ~10 s
    return torch.linalg.eigvalsh(H).numpy()


# ------------------------------------------------------------------------- settings


def test_settings_key_holds_the_run_and_every_setting():
    s = HessianSettings(num_samples=300, k=2, tol=1e-5, trace_method="hutchinson",
                        rel_tol=0.05, max_probes=30, seed=3)
    key = s.key("abc")
    assert key["run_id"] == "abc"
    for name in ("num_samples", "k", "tol", "trace_method", "rel_tol", "max_probes", "seed"):
        assert key[name] == getattr(s, name)
    assert s.key("abc") != HessianSettings(num_samples=301).key("abc")
    assert DensitySettings(num_runs=2).key("r")["num_runs"] == 2


@pytest.mark.parametrize("kwargs,match", [
    ({"trace_method": "exact"}, "trace_method"),
    ({"num_samples": 0}, "num_samples"),
    ({"rel_tol": 0}, "rel_tol"),
])
def test_bad_settings_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HessianSettings(**kwargs)


# ------------------------------------------------------------------------ numerics


def test_measure_hessian_matches_the_exact_hessian():
    model, batch = tiny_problem()
    eig = exact_spectrum(0)
    rec = measure_hessian(model, batch, HessianSettings(num_samples=64, k=2, tol=1e-6,
                                                        rel_tol=0.05, max_probes=100),
                          device="cpu")
    assert rec["lambda_max"] == pytest.approx(eig[-1], rel=1e-4)
    assert rec["eigenvalues"][1] == pytest.approx(eig[-2], rel=1e-3)
    # Hutch++ within a few of its own standard errors (and the error bar is honest)
    assert abs(rec["trace"] - eig.sum()) <= 4 * rec["trace_stderr"] + 1e-4 * abs(eig.sum())
    assert rec["num_samples"] == 64 and rec["num_params"] == 183
    assert rec["num_hvps_eig"] > 0 and rec["num_hvps_trace"] > 0
    assert model.training  # the model's own mode is left alone


def test_plain_hutchinson_is_unbiased_within_its_error_bar():
    model, batch = tiny_problem(1)
    eig = exact_spectrum(1)
    rec = measure_hessian(model, batch, HessianSettings(trace_method="hutchinson", rel_tol=0.05,
                                                        max_probes=300), device="cpu")
    assert abs(rec["trace"] - eig.sum()) <= 4 * rec["trace_stderr"]


def test_bin_density_keeps_mass_and_peak_position():
    grid = np.linspace(-1, 3, 10_000)
    dens = np.exp(-0.5 * ((grid - 2.0) / 1e-3) ** 2) / (1e-3 * np.sqrt(2 * np.pi))  # a spike
    lam, d = bin_density(grid, dens, 200)
    assert lam.shape == d.shape == (200,)
    assert np.trapezoid(d, lam) == pytest.approx(np.trapezoid(dens, grid), rel=1e-2)
    assert lam[np.argmax(d)] == pytest.approx(2.0, abs=4 / 200)
    with pytest.raises(ValueError, match="multiple"):
        bin_density(grid, dens, 300)


def test_measure_density_is_a_probability_density_over_the_spectrum():
    model, batch = tiny_problem()
    eig = exact_spectrum(0)
    rec = measure_density(model, batch, DensitySettings(num_runs=2, num_steps=30, points=100),
                          device="cpu")
    lam, d = np.asarray(rec["lam"]), np.asarray(rec["density"])
    assert lam.shape == d.shape == (100,)
    assert np.all(d >= 0) and np.trapezoid(d, lam) == pytest.approx(1.0, rel=0.02)
    assert rec["ritz_max"] == pytest.approx(eig[-1], rel=1e-3)  # Lanczos finds the top
    assert rec["ritz_min"] >= eig[0] - 1e-4


def test_one_seed_per_cell_keeps_the_lowest_seed():
    runs = pd.DataFrame({"width": [4, 4, 8, 8, 8], "batch_size": [16] * 5,
                         "seed": [1, 0, 2, 1, 3], "run_id": list("abcde")})
    out = one_seed_per_cell(runs, ["width", "batch_size"])
    assert out.run_id.tolist() == ["b", "d"]


# -------------------------------------------------------------- store, cache, tables


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    """A finished 2 x 1 x 2-seed grid of tiny MLPs on the digits data."""
    workdir = tmp_path_factory.mktemp("work")
    return workdir, train_tiny_digits_grid(workdir)


SMALL = HessianSettings(num_samples=100, tol=1e-3, rel_tol=0.1, max_probes=20, sketch_size=5)


def test_hessian_table_caches_per_run_and_per_setting(store_dir, monkeypatch):
    workdir, grid = store_dir
    first = hessian_table(workdir, grid.run_id, SMALL, device="cpu")
    assert first.run_id.tolist() == grid.run_id.tolist()
    for col in ("lambda_max", "trace", "trace_stderr", "num_hvps_eig", "num_hvps_trace",
                "num_samples"):
        assert first[col].notna().all(), col
    assert (first.num_samples == 100).all()
    # every record sits in the store under its full key
    stored = Store(workdir).metric_table("hessian")
    assert len(stored) >= len(grid) and {"run_id", "tol", "rel_tol", "seed"} <= set(stored.columns)

    calls = []
    real = local.measure_hessian
    monkeypatch.setattr(local, "measure_hessian", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = hessian_table(workdir, grid.run_id, SMALL, device="cpu")
    assert calls == []  # all cached
    pd.testing.assert_frame_equal(first, again)
    # a lost record is recomputed alone; a new setting recomputes everything
    Store(workdir).metric_path("hessian", SMALL.key(grid.run_id[0])).unlink()
    hessian_table(workdir, grid.run_id, SMALL, device="cpu")
    assert len(calls) == 1
    hessian_table(workdir, grid.run_id[:2], HessianSettings(**{**SMALL.__dict__, "seed": 1}),
                  device="cpu")
    assert len(calls) == 3


def test_model_and_batch_is_the_batch_the_table_used(store_dir):
    workdir, grid = store_dir
    rid = grid.run_id[0]
    model, batch = model_and_batch(workdir, rid, SMALL.num_samples, SMALL.seed, device="cpu")
    rec = measure_hessian(model, batch, SMALL, device="cpu")
    table = hessian_table(workdir, [rid], SMALL, device="cpu")
    assert rec["lambda_max"] == pytest.approx(table.lambda_max[0], rel=1e-5)


def test_density_table_is_long_form(store_dir):
    workdir, grid = store_dir
    s = DensitySettings(num_samples=100, num_runs=1, num_steps=10, points=50)
    d = density_table(workdir, grid.run_id[:2], s, device="cpu")
    assert list(d.columns) == ["run_id", "lam", "density"]
    assert d.groupby("run_id").size().tolist() == [50, 50]


# ---------------------------------------------------------------- PyHessian reference


def test_pyhessian_comparison_side_by_side():
    pytest.importorskip("pyhessian")
    model, batch = tiny_problem()
    eig = exact_spectrum(0)
    side = pyhessian_comparison(model, batch, HessianSettings(num_samples=64, tol=1e-6),
                                device="cpu")
    assert list(side.columns) == ["ours", "PyHessian", "PyHessian / ours"]
    assert side.loc["λmax", "ours"] == pytest.approx(eig[-1], rel=1e-4)
    assert side.loc["λmax", "PyHessian"] == pytest.approx(eig[-1], rel=0.05)
    assert side.loc["λmax: Hessian-vector products", "PyHessian"] >= 2
    assert side.attrs["lambda_max_tight"] == pytest.approx(eig[-1], rel=1e-6)
    # PyHessian's trace within a few of its estimated standard errors of the exact one
    se = side.loc["trace: standard error", "PyHessian"]
    assert 0 < se and abs(side.loc["trace", "PyHessian"] - eig.sum()) <= 5 * se
    ratio = side["PyHessian / ours"]
    np.testing.assert_allclose(ratio, side["PyHessian"] / side["ours"])


def test_pyhessian_failure_raises_its_message(monkeypatch):
    from landscape_utils.metrics.hessian import PyHessianReference

    failed = PyHessianReference(error="pyhessian failed during trace: boom")
    monkeypatch.setattr(local, "pyhessian_reference", lambda *a, **k: failed)
    model, batch = tiny_problem()
    with pytest.raises(RuntimeError, match="boom"):
        pyhessian_comparison(model, batch, HessianSettings(), device="cpu")


# ------------------------------------------------------------------------- findings
def _runs(values: dict[tuple[float, float], list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"width": w, "batch_size": b, "lambda_max": v}
                         for (w, b), vs in values.items() for v in vs])


def test_hot_is_flatter_reads_the_direction_per_load():
    from landscape_utils.experiments.local import hot_is_flatter

    # Small batches are hot: sharper at the hot end at every width, well outside the spread:
    # the paper's picture (hot is flatter) fails.
    sharp_hot = _runs({(4, 16): [5.0, 5.1, 4.9], (4, 256): [1.0, 1.1, 0.9],
                       (8, 16): [6.0, 6.2, 5.8], (8, 256): [2.0, 2.1, 1.9],
                       (16, 16): [7.0, 7.2, 6.8], (16, 64): [5.0, 5.0, 5.1], (16, 256): [3.0, 3.1, 2.9]})
    f = hot_is_flatter(sharp_hot, "width", "batch_size", hot_high=False)
    assert f.key == "hot_is_flatter" and f.verdict == "fails"
    # The same numbers with the axis read the other way round: hot is flatter, it holds.
    assert hot_is_flatter(sharp_hot, "width", "batch_size", hot_high=True).verdict == "holds"
    # Differences inside the seed spread decide nothing.
    noisy = _runs({(4, 16): [1.0, 3.0, 2.0], (4, 256): [2.0, 1.0, 3.0],
                   (8, 16): [1.0, 3.0, 2.0], (8, 256): [2.5, 1.5, 2.0],
                   (16, 16): [1.0, 3.0, 2.0], (16, 256): [2.5, 1.5, 2.0]})
    assert hot_is_flatter(noisy, "width", "batch_size", hot_high=False).verdict == "inconclusive"
    one_temp = _runs({(4, 16): [1.0, 2.0], (8, 16): [1.0, 2.0]})
    assert hot_is_flatter(one_temp, "width", "batch_size", hot_high=False).verdict == "inconclusive"
