"""Tests of landscape_utils.metrics.connectivity: Bezier curves and their fitting, the shared SGD
loop, BatchNorm recalibration against a manual computation, path evaluation, MLI and
seed-pair averaging."""
from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.optim.swa_utils import update_bn

from landscape_utils.metrics.connectivity import (PROFILE_COLUMNS, BezierCurve, bezier_lr_factor, evaluate_path,
                                                  fit_bezier, linear_barrier, linear_path, mli, pair_metrics,
                                                  recalibrate_bn, select_pairs)
from landscape_utils.metrics.profiles import max_bump_height, mode_connectivity
from landscape_utils.metrics.similarity import l2_distance, model_cka

from conftest import fit_adam, make_rings

CPU = "cpu"


pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- toy problem

def _mlp(seed, width=32, bn=False):
    torch.manual_seed(seed)
    norm = (lambda: nn.BatchNorm1d(width)) if bn else nn.Identity
    return nn.Sequential(nn.Linear(2, width), norm(), nn.ReLU(), nn.Linear(width, width), norm(), nn.ReLU(),
                         nn.Linear(width, 6))



@pytest.fixture(scope="module")
def toy():
    """Three MLPs trained from different seeds on the same data, plus test data."""
    x, y = make_rings(512, 0)
    xt, yt = make_rings(256, 1)
    models = [fit_adam(_mlp(s), x, y, steps=300) for s in (1, 2, 3)]
    return x, y, xt, yt, models


# --------------------------------------------------------------------------- curves
def _random_params(seed):
    g = torch.Generator().manual_seed(seed)
    return {"a.weight": torch.randn(4, 3, generator=g), "a.bias": torch.randn(4, generator=g)}


def test_bezier_curve_points():
    w1, w2, theta = _random_params(0), _random_params(1), _random_params(2)
    curve = BezierCurve(w1, w2)
    for k in w1:  # the bend starts at the midpoint; endpoints are exact
        assert torch.equal(curve.theta[k], (w1[k] + w2[k]) / 2)
        assert torch.equal(curve.point(0.0)[k], w1[k])
        assert torch.equal(curve.point(1.0)[k], w2[k])
    curve = BezierCurve(w1, w2, bends=[theta])
    for t in (0.1, 0.5, 0.83):
        for k in w1:
            ref = (1 - t) ** 2 * w1[k] + 2 * t * (1 - t) * theta[k] + t ** 2 * w2[k]
            torch.testing.assert_close(curve(t)[k], ref)
    cubic = BezierCurve(w1, w2, num_bends=2, bends=[theta, w1])
    t = 0.3
    ref = (1 - t) ** 3 * w1["a.bias"] + 3 * (1 - t) ** 2 * t * theta["a.bias"] + 3 * (1 - t) * t ** 2 * w1["a.bias"] \
        + t ** 3 * w2["a.bias"]
    torch.testing.assert_close(cubic(t)["a.bias"], ref)
    line = BezierCurve(w1, w2, num_bends=0)
    torch.testing.assert_close(line(0.3)["a.weight"], 0.7 * w1["a.weight"] + 0.3 * w2["a.weight"])
    with pytest.raises(AttributeError):
        line.theta
    with pytest.raises(ValueError):
        curve.point(1.5)
    loaded = BezierCurve.from_state_dict(curve.state_dict())
    assert torch.equal(loaded(0.4)["a.weight"], curve(0.4)["a.weight"])


def test_bezier_lr_factor():
    assert [bezier_lr_factor(f) for f in (0.0, 0.3, 0.5)] == [1.0, 1.0, 1.0]
    assert bezier_lr_factor(0.7) == pytest.approx(1.0 - 0.5 * 0.99)
    assert bezier_lr_factor(0.9) == pytest.approx(0.01)
    assert bezier_lr_factor(0.95) == bezier_lr_factor(1.0) == 0.01


def test_fit_bezier_lowers_the_barrier(toy):
    x, y, xt, yt, (a, b, _) = toy
    state_a = copy.deepcopy(a.state_dict())
    line = evaluate_path(a, linear_path(a, b), 5, x, y, device=CPU)
    assert line["train_err"].iloc[2] > 30.0  # a real barrier on the straight line
    curve = fit_bezier(a, b, x, y, num_epochs=10, lr=0.05, batch_size=64, device=CPU)
    assert len(curve.history) == 10 and curve.history[-1]["loss"] < curve.history[0]["loss"]
    assert curve.history[-1]["lr"] == pytest.approx(0.05 * 0.01)
    on_curve = evaluate_path(a, curve, 5, x, y, xt, yt, device=CPU)
    assert on_curve["train_err"].iloc[2] < line["train_err"].iloc[2] - 15.0
    # endpoints stay fixed and exact, and the models are untouched
    for (k, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(curve.point(0.0)[k], p) and torch.equal(curve.point(1.0)[k], q)
        assert torch.equal(state_a[k], p)
        assert not curve.theta[k].requires_grad
    with torch.no_grad():
        assert torch.equal(functional_call(a, curve.point(0.0), (x,)), a(x))
    # seeded: the same call gives the same curve
    again = fit_bezier(a, b, x, y, num_epochs=1, lr=0.05, batch_size=64, device=CPU)
    once = fit_bezier(a, b, x, y, num_epochs=1, lr=0.05, batch_size=64, device=CPU)
    assert all(torch.equal(again.theta[k], once.theta[k]) for k in once.names)
    assert not torch.equal(once.theta["0.weight"], BezierCurve.from_models(a, b).theta["0.weight"])
    # the barrier sign on each path
    lb = linear_barrier(a, b, x, y, num_points=5, device=CPU)
    assert lb.mc < -20 and lb.t_star == 0.5
    assert mode_connectivity(on_curve["train_err"])[0] > lb.mc + 15


def test_fit_bezier_penalty_and_step_match_a_manual_sgd_step(toy):
    """One epoch of one step: the update equals SGD on CE + ½·wd·‖φ(t)‖² at the drawn t."""
    x, y, _, _, (a, b, _) = toy
    n = 64
    curve = fit_bezier(a, b, x[:n], y[:n], num_epochs=1, lr=0.1, batch_size=n, momentum=0.9,
                       weight_decay=0.3, seed=7, device=CPU)
    gen = torch.Generator().manual_seed(7)
    order = torch.randperm(n, generator=gen)
    t = float(torch.rand((), generator=gen))
    ref = BezierCurve.from_models(a, b)
    for v in ref.parameters():
        v.requires_grad_(True)
    params = ref.point(t)
    loss = F.cross_entropy(functional_call(a, params, (x[:n][order],)), y[:n][order]) \
        + 0.15 * sum(p.pow(2).sum() for p in params.values())
    grads = torch.autograd.grad(loss, ref.parameters())
    for (k, v), g in zip(ref.theta.items(), grads):
        torch.testing.assert_close(curve.theta[k], v.detach() - 0.1 * g, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- BatchNorm recalibration
class _TwoBN(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.l1, self.bn1 = nn.Linear(3, 8), nn.BatchNorm1d(8)
        self.l2, self.bn2 = nn.Linear(8, 5), nn.BatchNorm1d(5)
        self.head = nn.Linear(5, 2)
        with torch.no_grad():
            for bn in (self.bn1, self.bn2):
                bn.weight.uniform_(0.5, 2.0)
                bn.bias.normal_()
                bn.running_mean.fill_(123.0)  # garbage that must be reset
                bn.running_var.fill_(456.0)

    def forward(self, x):
        return self.head(torch.relu(self.bn2(self.l2(torch.relu(self.bn1(self.l1(x)))))))


def _manual_pre_bn(model, x, batch_size):
    """The inputs of bn1 and bn2 over a pass in batches, with bn1 normalizing by batch stats."""
    h1s, h2s = [], []
    with torch.no_grad():
        for xb in x.split(batch_size):
            h1 = model.l1(xb)
            z1 = (h1 - h1.mean(0)) / torch.sqrt(h1.var(0, unbiased=False) + model.bn1.eps)
            h2 = model.l2(torch.relu(z1 * model.bn1.weight + model.bn1.bias))
            h1s.append(h1)
            h2s.append(h2)
    return torch.cat(h1s).double(), torch.cat(h2s).double()


def test_recalibrate_bn_equals_full_pass_statistics():
    x = torch.randn(103, 3, generator=torch.Generator().manual_seed(1)) * 2 + 1
    model = _TwoBN().train()
    recalibrate_bn(model, x, batch_size=25)  # batches of 25, 25, 25, 25, 3
    h1, h2 = _manual_pre_bn(model, x, 25)
    for bn, h in ((model.bn1, h1), (model.bn2, h2)):
        torch.testing.assert_close(bn.running_mean.double(), h.mean(0), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(bn.running_var.double(), h.var(0, unbiased=True), rtol=1e-5, atol=1e-6)
        assert bn.momentum == 0.1
    assert model.training and model.bn1.training
    # a trailing batch of one joins the previous one instead of crashing BatchNorm
    model.eval()
    recalibrate_bn(model, x[:101], batch_size=25)
    assert not model.training and not model.bn1.training
    h1, _ = _manual_pre_bn(model, x[:101], 101)
    torch.testing.assert_close(model.bn1.running_var.double(), h1.var(0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("chunk", [1, 7, 2**18])
def test_recalibrate_bn_is_exact_whatever_the_chunks(monkeypatch, chunk):
    # the moments of a batch are merged over chunks of a few samples (one sample, a few, the
    # whole batch): the pooled statistics are the same as one pass over all values in float64
    import landscape_utils.metrics.connectivity as connectivity
    monkeypatch.setattr(connectivity, "_MOMENT_CHUNK", chunk)
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv1d(2, 3, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 6, 2))
    x = torch.randn(45, 2, 8, generator=torch.Generator().manual_seed(5)) * 3 + 10  # mean >> spread
    recalibrate_bn(conv, x, batch_size=16)
    with torch.no_grad():
        h = conv[0](x).transpose(0, 1).reshape(3, -1).double()
    torch.testing.assert_close(conv[1].running_mean.double(), h.mean(1), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(conv[1].running_var.double(), h.var(1), rtol=1e-5, atol=1e-7)


def test_recalibrate_bn_turns_dropout_off():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.5), nn.BatchNorm1d(8), nn.Linear(8, 2)).train()
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(4))
    recalibrate_bn(model, x, batch_size=16)
    with torch.no_grad():
        h = model[0](x).double()
    torch.testing.assert_close(model[2].running_mean.double(), h.mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model[2].running_var.double(), h.var(0), rtol=1e-5, atol=1e-6)
    assert model[1].training


def test_recalibrate_bn_exact_for_conv_and_cumulative_matches_update_bn():
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    x = torch.randn(50, 2, 6, 6, generator=torch.Generator().manual_seed(2)) + 0.5
    recalibrate_bn(conv, x, batch_size=16)
    with torch.no_grad():
        h = conv[0](x).transpose(0, 1).reshape(4, -1).double()
    torch.testing.assert_close(conv[1].running_mean.double(), h.mean(1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(conv[1].running_var.double(), h.var(1), rtol=1e-5, atol=1e-6)
    # "cumulative" is torch's update_bn (average of per-batch statistics), which differs
    ref = copy.deepcopy(_TwoBN())
    ours = copy.deepcopy(ref)
    xs = torch.randn(100, 3, generator=torch.Generator().manual_seed(3))
    update_bn(list(xs.split(20)), ref)
    recalibrate_bn(ours, xs, batch_size=20, method="cumulative")
    for name in ("bn1", "bn2"):
        for buf in ("running_mean", "running_var"):
            torch.testing.assert_close(getattr(getattr(ours, name), buf), getattr(getattr(ref, name), buf))
    exact = recalibrate_bn(copy.deepcopy(ours), xs, batch_size=20)
    assert not torch.allclose(exact.bn1.running_var, ours.bn1.running_var, rtol=1e-3)


# --------------------------------------------------------------------------- path evaluation
def _loss_err(model, x, y):
    with torch.no_grad():
        out = model(x)
    return F.cross_entropy(out, y).item(), 100.0 * (out.argmax(1) != y).double().mean().item()


def test_evaluate_path_endpoints_and_callables(toy):
    x, y, xt, yt, (a, b, _) = toy
    prof = evaluate_path(a, linear_path(a, b), 3, x, y, xt, yt, batch_size=100, device=CPU)
    assert list(prof.columns) == list(PROFILE_COLUMNS) and prof["t"].tolist() == [0.0, 0.5, 1.0]
    for row, model in ((0, a), (2, b)):
        for split, (xx, yy) in (("train", (x, y)), ("test", (xt, yt))):
            loss, err = _loss_err(model, xx, yy)
            assert prof[f"{split}_loss"].iloc[row] == pytest.approx(loss, rel=1e-5)
            assert prof[f"{split}_err"].iloc[row] == pytest.approx(err, abs=1e-9)
    # any callable t -> params works; and it is used, not ignored
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    swapped = evaluate_path(a, lambda t: {k: (1 - t) * pb[k] + t * pa[k] for k in pa}, [0.0, 1.0], x, y,
                            device=CPU)
    assert swapped["train_loss"].tolist() == pytest.approx(prof["train_loss"].iloc[[2, 0]].tolist(), rel=1e-5)
    assert swapped["test_err"].isna().all()
    with pytest.raises(KeyError):
        evaluate_path(a, lambda t: {"0.weight": pa["0.weight"]}, [0.5], x, y, device=CPU)


def test_evaluate_path_recalibrates_batchnorm_at_every_t():
    x, y = make_rings(200, 3)
    a, b = _mlp(4, width=8, bn=True), _mlp(5, width=8, bn=True)
    a.train()
    a(x)  # non-trivial running statistics in the template, which must not leak into the results
    snapshot = copy.deepcopy(a.state_dict())
    path = linear_path(a, b)
    prof = evaluate_path(a, path, [0.0, 0.4], x, y, batch_size=64, device=CPU)
    assert all(torch.equal(v, snapshot[k]) for k, v in a.state_dict().items())  # template untouched
    for row, t in enumerate((0.0, 0.4)):
        m = copy.deepcopy(a)
        with torch.no_grad():
            for k, p in m.named_parameters():
                p.copy_(path(t)[k])
        recalibrate_bn(m, x, batch_size=64).eval()
        loss, err = _loss_err(m, x, y)
        assert prof["train_loss"].iloc[row] == pytest.approx(loss, rel=1e-5)
        assert prof["train_err"].iloc[row] == pytest.approx(err, abs=1e-9)
    stale = evaluate_path(a, path, [0.0], x, y, recalibrate=False, device=CPU)
    assert stale["train_loss"].iloc[0] == pytest.approx(_loss_err(a.eval(), x, y)[0], rel=1e-5)
    assert stale["train_loss"].iloc[0] != pytest.approx(prof["train_loss"].iloc[0], rel=1e-3)


# --------------------------------------------------------------------------- MLI
def test_mli_on_models(toy):
    x, y, _, _, (a, _, _) = toy
    init = _mlp(1)  # the initialization a was trained from
    res = mli(init, a, x, y, num_points=6, eps=1e-3, device=CPU)
    assert res.profile["t"].tolist() == pytest.approx(np.linspace(0, 1, 6).tolist())
    assert res.profile["train_loss"].iloc[0] == pytest.approx(_loss_err(init, x, y)[0], rel=1e-5)
    assert res.profile["train_loss"].iloc[-1] == pytest.approx(_loss_err(a, x, y)[0], rel=1e-5)
    assert res.delta == pytest.approx(max_bump_height(res.profile["train_loss"]))
    assert res.non_monotonic == (res.delta > 1e-3)


# --------------------------------------------------------------------------- seed pairs
def test_select_pairs():
    assert select_pairs(3) == [(0, 1), (0, 2), (1, 2)]
    assert select_pairs(4, max_pairs=10) == list(itertools.combinations(range(4), 2))
    chosen = select_pairs(6, max_pairs=4, seed=0)
    assert chosen == select_pairs(6, max_pairs=4, seed=0) and len(set(chosen)) == 4
    assert chosen == sorted(chosen) and all(0 <= i < j < 6 for i, j in chosen)
    assert chosen != select_pairs(6, max_pairs=4, seed=1)


def test_pair_metrics(toy):
    x, y, xt, yt, models = toy
    res = pair_metrics(models, x, y, xt, yt, max_pairs=2, bezier=True, linear=True, cka=True,
                       cka_kwargs={"batch_size": 64, "num_batches": 2}, fit_kwargs={"num_epochs": 1},
                       num_points=3, device=CPU)
    pairs = select_pairs(3, 2)
    df = res.per_pair
    assert list(zip(df["i"], df["j"])) == pairs
    for (i, j), l2, cka in zip(pairs, df["l2"], df["cka"]):
        assert l2 == pytest.approx(l2_distance(models[i], models[j]))
        assert cka == pytest.approx(model_cka(models[i], models[j], x, batch_size=64, num_batches=2, device=CPU))
        assert res.paths[(i, j, "linear")].mc == pytest.approx(df.set_index(["i", "j"]).loc[(i, j), "mc_linear"])
    for col in ("mc", "mc_linear", "l2", "cka"):
        assert res.summary[col] == pytest.approx(df[col].mean())
        assert res.summary[f"{col}_std"] == pytest.approx(np.std(df[col], ddof=1))
    assert res.summary["n_pairs"] == 2 and "t_star" not in res.summary
    assert math.isnan(pair_metrics(models[:2], x, y, bezier=False, device=CPU).summary["l2_std"])


# --------------------------------------------------------------------------- the shared SGD loop
def test_fit_by_sgd_is_momentum_sgd_with_the_schedule_the_draws_and_the_hooks():
    """Three epochs of two steps on ½·t·‖w − mean(x_b)‖², against the momentum recurrence
    written out by hand with the same generator (data order, then one t per step)."""
    from landscape_utils.metrics.connectivity import bezier_lr_factor, draw_t, fit_by_sgd

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(9, 3, generator=g, dtype=torch.float64), torch.zeros(9, dtype=torch.long)
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    projected, ends = [], []

    def objective(xb, yb, t):
        value = 0.5 * t * (w - xb.mean(0)).pow(2).sum()
        return value, {"loss": value, "pair": torch.stack([value, 2 * value])}

    def project():
        projected.append(w.grad.clone())
        w.grad[2] = 0.0  # the third coordinate never moves

    hist = fit_by_sgd([w], objective, x, y, num_epochs=3, lr=0.3, batch_size=4, momentum=0.5, seed=5,
                      device=CPU, draw=draw_t, project=project, end_epoch=lambda: ends.append(1) or {"end": 1.0})
    gen = torch.Generator().manual_seed(5)
    ref, buf, step = torch.zeros(3, dtype=torch.float64), None, 0
    losses = []
    for epoch in range(3):
        order = torch.randperm(9, generator=gen)
        epoch_losses = []
        for i in (0, 4):
            t = float(torch.rand((), generator=gen))
            mean = x[order[i:i + 4]].mean(0)
            epoch_losses.append(float(0.5 * t * (ref - mean).pow(2).sum()))
            grad = t * (ref - mean)
            grad[2] = 0.0
            buf = grad if buf is None else 0.5 * buf + grad
            ref = ref - 0.3 * bezier_lr_factor(step / 6) * buf
            step += 1
        losses.append(epoch_losses)
    torch.testing.assert_close(w.detach(), ref)
    assert len(projected) == 6 and ends == [1, 1, 1] and float(w.detach()[2]) == 0.0
    assert [h["epoch"] for h in hist] == [0, 1, 2] and all(h["end"] == 1.0 for h in hist)
    for h, ls in zip(hist, losses):
        assert h["loss"] == pytest.approx(sum(ls) / 2, rel=1e-12)
        assert h["pair"].shape == (2,) and float(h["pair"][1]) == pytest.approx(2 * h["loss"], rel=1e-12)
    assert hist[-1]["lr"] == pytest.approx(0.3 * bezier_lr_factor(5 / 6))
    with pytest.raises(ValueError, match="exceeds the 9 training examples"):
        fit_by_sgd([w], objective, x, y, num_epochs=1, lr=0.1, batch_size=10, device=CPU)
    # constant lr without a schedule
    flat = fit_by_sgd([w], objective, x, y, num_epochs=2, lr=0.1, batch_size=4, device=CPU, draw=draw_t,
                      lr_factor=None)
    assert [h["lr"] for h in flat] == [0.1, 0.1]


def test_continue_training_is_the_curve_recipe_on_one_endpoint():
    """Four epochs of CE + ½·wd·‖θ‖² on a float64 linear model, against momentum SGD written
    out by hand with the fit's generator and lr schedule; the input model is unchanged."""
    from landscape_utils.metrics.connectivity import continue_training

    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(10, 3, generator=g, dtype=torch.float64), torch.randint(0, 4, (10,), generator=g)
    model = nn.Linear(3, 4).double()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = continue_training(model, x, y, num_epochs=4, lr=0.2, batch_size=3, weight_decay=0.01, momentum=0.7,
                            seed=3, device=CPU)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert not out.training
    gen = torch.Generator().manual_seed(3)
    w, b = before["weight"].clone(), before["bias"].clone()
    bufs, step, total = [None, None], 0, 4 * 3
    for _ in range(4):
        order = torch.randperm(10, generator=gen)
        for i in (0, 3, 6):  # 3 full batches of 3; the last example is dropped
            idx = order[i:i + 3]
            wv, bv = w.clone().requires_grad_(True), b.clone().requires_grad_(True)
            obj = F.cross_entropy(x[idx] @ wv.T + bv, y[idx]) + 0.005 * (wv.pow(2).sum() + bv.pow(2).sum())
            gw, gb = torch.autograd.grad(obj, (wv, bv))
            lr = 0.2 * bezier_lr_factor(step / total)
            for j, grad in enumerate((gw, gb)):
                bufs[j] = grad if bufs[j] is None else 0.7 * bufs[j] + grad
            w, b = w - lr * bufs[0], b - lr * bufs[1]
            step += 1
    torch.testing.assert_close(out.weight.detach(), w, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out.bias.detach(), b, rtol=1e-10, atol=1e-12)
    # no epochs: the endpoint as it was
    same = continue_training(model, x, y, num_epochs=0, lr=0.2, batch_size=3, device=CPU)
    torch.testing.assert_close(same.weight.detach(), before["weight"])
