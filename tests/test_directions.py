"""Tests of landscape_utils.metrics.directions: filter normalization slice by slice, cuts rebuilt by
hand (with and without BatchNorm), radial cuts, escape distances, the cone geometry of a
homogeneous network, and training in random subspaces."""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from landscape_utils.core.models import MLP, SmallCNN
from landscape_utils.core.models import evaluate
from landscape_utils.core.params import combine, flatten_params, norm, params_of, unflatten_params
from landscape_utils.metrics.connectivity import recalibrate_bn
from landscape_utils.metrics.directions import (escape_distance, escape_table, filter_normalized_direction,
                                                loss_along_direction, loss_surface_2d, radial_profile,
                                                random_projection, random_unit_direction, subspace_sweep, success_rate,
                                                train_in_subspace, wedge_profiles)


pytestmark = pytest.mark.usefixtures("one_thread")


def _data(n=300, dim=8, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = 2.5 * torch.randn(k, dim, generator=g)
    y = torch.randint(0, k, (n,), generator=g)
    return centers[y] + torch.randn(n, dim, generator=g), y


def _manual(model, point, x, y, bn=False):
    """Loss and error (%) at ``point`` the long way: copy, load, recalibrate, evaluate."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        for k, p in m.named_parameters():
            p.copy_(point[k])
    if bn:
        recalibrate_bn(m, x)
    loss, acc = evaluate(m, x, y)
    return loss, 100 * (1 - acc)


# --------------------------------------------------------------------------- directions
@pytest.mark.parametrize("model", [MLP(8, 6, 3, depth=2, batch_norm=True), SmallCNN((12,), 4, 3, batch_norm=True)],
                         ids=["mlp_bn", "cnn_bn"])
def test_filter_normalized_slices_match_the_solution(model):
    d = filter_normalized_direction(model, torch.Generator().manual_seed(0))
    params = {k: v.detach() for k, v in model.named_parameters()}
    assert d.keys() == params.keys()
    for k, v in params.items():
        assert d[k].shape == v.shape and d[k].dtype == v.dtype
        if v.dim() <= 1:  # biases and BN weights / biases
            assert torch.count_nonzero(d[k]) == 0, k
        else:
            for i in range(v.shape[0]):  # every output channel
                assert float(d[k][i].norm()) == pytest.approx(float(v[i].norm()), rel=1e-5), (k, i)
            assert not torch.allclose(d[k], v)  # a random direction, not θ itself
    again = filter_normalized_direction(model, torch.Generator().manual_seed(0))
    assert all(torch.equal(d[k], again[k]) for k in d)


def test_unit_direction_and_flattening():
    model = MLP(8, 5, 3)
    u = random_unit_direction(model, torch.Generator().manual_seed(1))
    assert norm(u) == pytest.approx(1.0, rel=1e-6)
    theta = params_of(model)
    flat = flatten_params(theta)
    assert flat.numel() == sum(p.numel() for p in model.parameters())
    back = unflatten_params(flat, theta)
    assert all(torch.equal(back[k], theta[k]) for k in theta)
    with pytest.raises(ValueError):
        unflatten_params(flat[:-1], theta)


# --------------------------------------------------------------------------- cuts
@pytest.mark.parametrize("bn", [False, True])
def test_cuts_match_manual_evaluation(bn):
    x, y = _data()
    torch.manual_seed(0)
    model = MLP(8, 10, 3, depth=2, batch_norm=bn)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(50):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    g = torch.Generator().manual_seed(3)
    d1, d2 = filter_normalized_direction(model, g), filter_normalized_direction(model, g)
    theta = params_of(model)
    prof = loss_along_direction(model, d1, [-0.5, 0.0, 0.7], x, y, device="cpu")
    assert list(prof.columns[:3]) == ["alpha", "train_loss", "train_err"]
    for _, row in prof.iterrows():
        loss, err = _manual(model, combine(theta, (row.alpha, d1)), x, y, bn)
        assert row.train_loss == pytest.approx(loss, rel=1e-5) and row.train_err == pytest.approx(err)
    surf = loss_surface_2d(model, d1, d2, [-0.3, 0.4], [0.0, 0.5], x, y, device="cpu")
    assert len(surf) == 4
    row = surf[(surf.alpha == 0.4) & (surf.beta == 0.5)].iloc[0]
    loss, _ = _manual(model, combine(theta, (0.4, d1), (0.5, d2)), x, y, bn)
    assert row.train_loss == pytest.approx(loss, rel=1e-5)
    rad = radial_profile(model, [-0.5, 0.0, 0.5], x, y, device="cpu")
    assert rad.norm.tolist() == pytest.approx([0.5 * norm(theta), norm(theta), 1.5 * norm(theta)], rel=1e-6)
    loss, _ = _manual(model, {k: 1.5 * v for k, v in theta.items()}, x, y, bn)
    assert rad.train_loss.iloc[2] == pytest.approx(loss, rel=1e-5)
    if not bn:  # at s = 0 and α = 0: the solution as trained
        assert rad.train_loss.iloc[1] == pytest.approx(evaluate(model, x, y)[0], rel=1e-5)


def test_escape_distance_cases():
    d = [0.0, 1.0, 2.0, 3.0]
    assert escape_distance(d, [0.1, 0.2, 0.6, 1.0], 0.4) == pytest.approx(1.5)
    assert escape_distance(d, [0.1, 0.2, 0.3, 0.35], 0.4) == float("inf")
    assert escape_distance(d, [0.5, 0.6, 0.7, 0.8], 0.4) == 0.0
    assert escape_distance(d, [0.1, 0.4, 0.9, 1.0], 0.4) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        escape_distance([0.0, 0.0], [1.0, 2.0], 1.5)
    prof = pd.DataFrame({"radius": [1.0] * 4 + [2.0] * 4, "direction": 0, "distance": d * 2,
                         "train_loss": [0.1, 0.2, 0.6, 1.0, 0.1, 0.1, 0.2, 0.6]})
    tab = escape_table(prof, 0.4)
    assert tab.escape.tolist() == pytest.approx([1.5, 2.5]) and not tab.censored.any()
    tab = escape_table(prof, {1.0: 0.4, 2.0: 1.0})
    assert tab.escape.iloc[1] == float("inf") and tab.censored.iloc[1]


def test_wedge_of_a_homogeneous_network_is_a_cone():
    """A bias-free ReLU network computes r^L f(x; θ) at r·θ, so its predictions at
    r·θ + δu equal those at θ + (δ/r)u: the error profile at radius r is the radius-1
    profile stretched by r. A brute-force check of the geometry wedge_profiles measures."""
    x, y = _data(seed=4)
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(8, 16, bias=False), nn.ReLU(), nn.Linear(16, 3, bias=False))
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(80):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    deltas = np.array([0.0, 0.5, 1.0, 2.0, 4.0])
    at1 = wedge_profiles(net, [1.0], deltas, x, y, num_directions=2, seed=7, device="cpu")
    at2 = wedge_profiles(net, [2.0], 2 * deltas, x, y, num_directions=2, seed=7, device="cpu")
    assert at2.radius_norm.iloc[0] == pytest.approx(2 * at1.radius_norm.iloc[0])
    np.testing.assert_allclose(at2.train_err.to_numpy(), at1.train_err.to_numpy(), atol=1e-9)
    assert at2.train_loss.iloc[0] < at1.train_loss.iloc[0]  # sharper softmax on a mostly fitted set
    loss1, err1 = _manual(net, params_of(net), x, y)
    assert at1.train_loss.iloc[0] == pytest.approx(loss1, rel=1e-5)


# --------------------------------------------------------------------------- subspaces
def test_random_projection_columns():
    P = random_projection(500, 20, torch.Generator().manual_seed(0))
    assert P.shape == (500, 20)
    np.testing.assert_allclose(P.norm(dim=0).numpy(), 1.0, rtol=1e-5)


def test_subspace_training_improves_with_dimension():
    x, y = _data(n=400, dim=10, k=4, seed=5)
    y = (y + (x[:, 0] > 0).long() * 4)  # 8 classes, not linearly trivial
    torch.manual_seed(2)
    model = MLP(10, 32, 8, depth=2)
    before = {k: v.clone() for k, v in params_of(model).items()}
    sweep = subspace_sweep(model, [2, 300], x, y, x, y, seeds=[0, 1], target_acc=0.8, num_epochs=30, lr=0.05,
                           batch_size=100, device="cpu")
    assert all(torch.equal(before[k], v) for k, v in params_of(model).items())  # θ₀ untouched
    assert set(sweep.columns) >= {"dim", "seed", "train_acc", "success", "num_params"}
    curve = success_rate(sweep)
    acc = curve.set_index("dim").train_acc
    assert acc[300] > acc[2] + 0.2
    assert curve.set_index("dim").success_rate[300] == 1.0 and curve.set_index("dim").success_rate[2] == 0.0
    # z = 0 in a subspace of any size is θ₀: zero epochs leave the initial loss.
    rec = train_in_subspace(model, 5, x, y, num_epochs=0, device="cpu")
    assert rec["train_loss"] == pytest.approx(evaluate(model, x, y)[0], rel=1e-5) and rec["z_norm"] == 0.0
