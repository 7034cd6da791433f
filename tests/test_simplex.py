"""Tests of landscape_utils.metrics.simplex: Cayley–Menger volumes against known simplices and the
Gram-determinant formula, Dirichlet sampling, the barycentric subdivision and its map,
fitting a low-loss complex across a barrier, the tunnel, and ensemble metrics rebuilt by
hand."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from landscape_utils.core.params import flatten_params, params_of
from landscape_utils.metrics.connectivity import evaluate_path, linear_path
from landscape_utils.metrics.simplex import (SimplicialComplex, barycentric_grid, cayley_menger_volume_sq,
                                             complex_from_models, edge_profiles, ensemble_metrics, evaluate_grid,
                                             fit_complex, fit_tunnel, log_volume_sq, models_at, sample_dirichlet,
                                             triangle_xy)

from conftest import fit_adam, make_rings


pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- volumes
def _rotate(points, dim, seed=0):
    """Embed (m, k) points in R^dim with a random rotation and shift (volume-preserving)."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    pad = torch.zeros(points.shape[0], dim, dtype=torch.float64)
    pad[:, :points.shape[1]] = points
    return pad @ q.T + torch.randn(dim, generator=g, dtype=torch.float64)


def test_cayley_menger_unit_right_triangle():
    tri = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    assert float(cayley_menger_volume_sq(tri)) == pytest.approx(0.25, rel=1e-12)  # area 1/2
    assert float(cayley_menger_volume_sq(_rotate(tri, 30))) == pytest.approx(0.25, rel=1e-9)
    assert float(log_volume_sq(_rotate(tri, 30))) == pytest.approx(math.log(0.25), abs=1e-9)


@pytest.mark.parametrize("a", [1.0, 2.5])
def test_cayley_menger_regular_tetrahedron(a):
    tet = a / math.sqrt(8) * torch.tensor([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=torch.float64)
    assert float(torch.dist(tet[0], tet[1])) == pytest.approx(a)
    volume = a ** 3 / (6 * math.sqrt(2))
    assert math.sqrt(float(cayley_menger_volume_sq(_rotate(tet, 12, seed=1)))) == pytest.approx(volume, rel=1e-9)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_cayley_menger_matches_gram_determinant(k):
    g = torch.Generator().manual_seed(k)
    X = torch.randn(k + 1, 40, generator=g, dtype=torch.float64)
    E = X[1:] - X[0]
    gram = float(torch.linalg.det(E @ E.T)) / math.factorial(k) ** 2
    assert float(cayley_menger_volume_sq(X)) == pytest.approx(gram, rel=1e-8)
    assert float(log_volume_sq(X)) == pytest.approx(math.log(gram), abs=1e-8)


def test_degenerate_simplex_has_no_volume():
    X = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]], dtype=torch.float64)
    assert abs(float(cayley_menger_volume_sq(X))) < 1e-12
    assert float(log_volume_sq(X)) < -20


# --------------------------------------------------------------------------- sampling and grids
def test_dirichlet_samples_lie_on_the_simplex_and_are_uniform():
    g = torch.Generator().manual_seed(0)
    c = sample_dirichlet(3, 40_000, g)
    assert c.shape == (40_000, 3) and c.dtype == torch.float64
    assert bool((c >= 0).all()) and torch.allclose(c.sum(1), torch.ones(40_000, dtype=torch.float64))
    np.testing.assert_allclose(c.mean(0).numpy(), np.full(3, 1 / 3), atol=0.006)  # se ≈ 0.0012
    # Uniform on the triangle: P(c1 > 1/2) = (1/2)^2 and Var(c1) = 2/36.
    assert float((c[:, 0] > 0.5).double().mean()) == pytest.approx(0.25, abs=0.01)
    assert float(c[:, 0].var()) == pytest.approx(2 / 36, rel=0.05)


def test_barycentric_grid_and_triangle_coordinates():
    grid = barycentric_grid(4)
    assert grid.shape == (15, 3)
    np.testing.assert_allclose(grid.sum(1), 1.0)
    assert len({tuple(r) for r in np.round(grid * 4).astype(int)}) == 15
    xy = triangle_xy(np.eye(3))
    np.testing.assert_allclose(xy, [[0, 0], [1, 0], [0.5, math.sqrt(3) / 2]])
    assert barycentric_grid(3, k=4).shape == (20, 4)


def _points(n, dim=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{"w": torch.randn(dim, generator=g, dtype=torch.float64)} for _ in range(n)]


@pytest.mark.parametrize("n", [2, 3, 4])
def test_subdivision_structure_and_map(n):
    sols = _points(n)
    cx = SimplicialComplex.barycentric_subdivision(sols)
    assert len(cx.connectors) == 2 ** n - 1 - n and len(cx.simplices) == math.factorial(n)
    g = torch.Generator().manual_seed(1)
    for lam in sample_dirichlet(n, 20, g).numpy():
        expect = sum(float(l) * s["w"] for l, s in zip(lam, sols))
        torch.testing.assert_close(cx.point_at(lam)["w"], expect)  # untrained: the flat simplex
    for i in range(n):
        torch.testing.assert_close(cx.point_at(np.eye(n)[i])["w"], sols[i]["w"])
    # The sub-simplices tile the big simplex: n! pieces of equal volume summing to it.
    big = float(cayley_menger_volume_sq(torch.stack([s["w"] for s in sols]))) ** 0.5
    flats = [flatten_params(v) for v in cx.vertices]
    pieces = [float(cayley_menger_volume_sq(torch.stack([flats[i] for i in s]))) ** 0.5 for s in cx.simplices]
    np.testing.assert_allclose(pieces, big / math.factorial(n), rtol=1e-6)


def test_point_at_follows_moved_connectors():
    sols = _points(3, seed=2)
    cx = SimplicialComplex.barycentric_subdivision(sols)
    cx.connectors[cx.faces[(0, 1)] - 3]["w"] += 5.0
    mid = cx.edge_path(0, 1)(0.5)["w"]
    torch.testing.assert_close(mid, 0.5 * (sols[0]["w"] + sols[1]["w"]) + 5.0)
    quarter = cx.edge_path(0, 1)(0.25)["w"]  # half-way between w0 and the moved connector
    torch.testing.assert_close(quarter, 0.5 * sols[0]["w"] + 0.5 * (0.5 * (sols[0]["w"] + sols[1]["w"]) + 5.0))
    centroid = cx.point_at(np.full(3, 1 / 3))["w"]  # the central connector, not moved
    torch.testing.assert_close(centroid, sum(s["w"] for s in sols) / 3)


# --------------------------------------------------------------------------- fitting on a toy problem

def _mlp(seed, width=24):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 6))



@pytest.fixture(scope="module")
def rings_models():
    x, y = make_rings(768, 0)
    return x, y, [fit_adam(_mlp(s), x, y, steps=250) for s in (1, 2, 3)]


def test_fitted_complex_beats_the_linear_paths(rings_models):
    x, y, models = rings_models
    linear = [evaluate_path(models[0], linear_path(a, b), 9, x, y, device="cpu")
              for a, b in ((models[0], models[1]), (models[0], models[2]), (models[1], models[2]))]
    linear_mean = float(np.mean([p.train_loss.mean() for p in linear]))
    ends = float(np.mean([p.train_loss.iloc[[0, -1]].mean() for p in linear]))
    assert linear_mean > ends + 0.1  # there is a barrier to remove
    cx = complex_from_models(models)
    flat = evaluate_grid(models[0], cx, 6, x, y, device="cpu")
    fit_complex(models[0], cx, x, y, num_epochs=40, lr=0.05, batch_size=64, volume_weight=1e-3, seed=0,
                device="cpu")
    assert len(cx.history) == 40 and cx.history[-1]["loss"] < cx.history[0]["loss"]
    grid = evaluate_grid(models[0], cx, 6, x, y, device="cpu")
    assert list(grid.columns[:5]) == ["l1", "l2", "l3", "x", "y"] and len(grid) == 28
    assert grid.train_loss.mean() < linear_mean
    assert grid.train_loss.mean() < flat.train_loss.mean()
    # Corners are the fixed solutions, untouched by the fit.
    for i, m in enumerate(models):
        torch.testing.assert_close(cx.point_at(np.eye(3)[i])["0.weight"], m[0].weight)
    edges = edge_profiles(models[0], cx, 5, x, y, device="cpu")
    assert len(edges) == 15 and edges.train_loss.max() < max(p.train_loss.max() for p in linear)


def test_tunnel_stays_equidistant_and_lowers_the_loss(rings_models):
    x, y, models = rings_models
    a, b = models[0], models[1]
    theta, history = fit_tunnel(a, b, x, y, num_epochs=15, lr=0.05, batch_size=64, seed=0, device="cpu")
    ta, tb = flatten_params(params_of(a)), flatten_params(params_of(b))
    t = flatten_params(theta)
    assert float((t - ta).norm()) == pytest.approx(float((t - tb).norm()), rel=1e-4)
    assert history[-1]["distance_from_midpoint"] > 0
    path = SimplicialComplex.barycentric_subdivision([params_of(a), params_of(b)], {(0, 1): theta}).edge_path(0, 1)
    prof = evaluate_path(a, path, [0.0, 0.5, 1.0], x, y, device="cpu")
    mid = evaluate_path(a, linear_path(a, b), [0.5], x, y, device="cpu")
    assert prof.train_loss[1] < mid.train_loss[0]


# --------------------------------------------------------------------------- ensembles
def test_ensemble_metrics_by_hand(rings_models):
    x, y, models = rings_models
    xt, yt = make_rings(300, 9)
    res = ensemble_metrics(models, xt, yt, x_cka=x, cka_kwargs={"mixup": False})
    with torch.no_grad():
        probs = [F.softmax(m(xt).double(), 1) for m in models]
    preds = [p.argmax(1) for p in probs]
    accs = [float((p == yt).double().mean()) for p in preds]
    assert res["member_acc"] == pytest.approx(np.mean(accs))
    assert res["ensemble_acc"] == pytest.approx(float((sum(probs).argmax(1) == yt).double().mean()))
    dis = np.mean([float((preds[i] != preds[j]).double().mean()) for i, j in ((0, 1), (0, 2), (1, 2))])
    assert res["disagreement"] == pytest.approx(dis)
    assert 0 < res["cka"] < 1
    same = ensemble_metrics([models[0], models[0]], xt, yt, x_cka=x, cka_kwargs={"mixup": False})
    assert same["disagreement"] == 0.0 and same["cka"] == pytest.approx(1.0)


def test_models_at_loads_points_and_recalibrates_bn():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    x = torch.randn(100, 2) * 3 + 1
    point = {k: v.detach() + 0.1 for k, v in params_of(net).items()}
    (m,) = models_at(net, [point], x, device="cpu")
    torch.testing.assert_close(m[0].weight, point["0.weight"])
    h = x @ point["0.weight"].T + point["0.bias"]
    torch.testing.assert_close(m[1].running_mean, h.mean(0))
    torch.testing.assert_close(m[1].running_var, h.var(0))
