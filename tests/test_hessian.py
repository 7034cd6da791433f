"""Tests for landscape_utils.metrics.hessian against exact Hessians of tiny models.

The ground truth is built here, independently of the module: ``torch.func.hessian`` of
the loss over the flat vector of trainable parameters, in float64 and eval mode, then
``torch.linalg.eigvalsh``. The models have a few hundred parameters.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from landscape_utils.metrics import hessian as H

F64 = torch.float64


# ------------------------------------------------------------------ fixtures


pytestmark = pytest.mark.usefixtures("one_thread")


def make_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 12), nn.Tanh(),
                         nn.Linear(12, 3))  # 387 parameters


def make_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Conv1d(1, 4, 3), nn.BatchNorm1d(4), nn.ReLU(), nn.Flatten(),
                      nn.Linear(4 * 14, 3))  # 195 parameters
    with torch.no_grad():  # running statistics far from (0, 1), so eval mode matters
        m[1].running_mean.uniform_(-0.5, 0.5)
        m[1].running_var.uniform_(0.5, 2.0)
        m[1].weight.uniform_(0.5, 1.5)
        m[1].bias.uniform_(-0.2, 0.2)
    return m


class WithUnused(nn.Module):
    """An MLP plus a trainable parameter the forward never touches."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(6, 8)
        self.unused = nn.Parameter(torch.randn(5))
        self.b = nn.Linear(8, 3)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


class Quadratic(nn.Module):
    """loss = ½ θᵀ A θ through ``quadratic_loss``: a model with a known Hessian A."""

    def __init__(self, p: int) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.randn(p, dtype=F64))

    def forward(self, x):
        return self.theta.expand(x.shape[0], -1)


def batch(model_kind: str, n: int = 64, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    shape = {"mlp": (n, 8), "cnn": (n, 1, 16), "unused": (n, 6)}[model_kind]
    return torch.randn(shape, generator=g), torch.randint(0, 3, (n,), generator=g)


CE = nn.CrossEntropyLoss()


def exact_hessian(model: nn.Module, loss_fn, x, y) -> torch.Tensor:
    """(P, P) float64 Hessian over the trainable parameters, in eval mode (independent
    of the code under test)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    names = [n for n, _ in named]
    shapes = [p.shape for _, p in named]
    numels = [p.numel() for _, p in named]
    theta = torch.cat([p.detach().to(F64).reshape(-1) for _, p in named])
    bufs = {n: (b.to(F64) if b.is_floating_point() else b) for n, b in model.named_buffers()}
    xd = x.to(F64)
    yd = y.to(F64) if y.is_floating_point() else y

    def f(t):
        ps = {n: c.view(s) for n, c, s in zip(names, t.split(numels), shapes)}
        return loss_fn(torch.func.functional_call(model, (ps, bufs), (xd,)), yd)

    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        return torch.func.hessian(f)(theta).detach()
    finally:
        for m, mode in modes:
            m.training = mode


_CACHE: dict = {}


def case(kind: str):
    """(model, x, y, exact H, eigenvalues descending), cached per module run."""
    if kind not in _CACHE:
        model = {"mlp": make_mlp, "cnn": make_cnn}[kind]()
        x, y = batch(kind)
        Hm = exact_hessian(model, CE, x, y)
        ev = torch.linalg.eigvalsh(Hm).flip(0)
        _CACHE[kind] = (model, x, y, Hm, ev)
    return _CACHE[kind]


def snapshot_state(model):
    return ([m.training for m in model.modules()],
            [(p, p.grad, None if p.grad is None else p.grad.clone()) for p in model.parameters()],
            {n: b.clone() for n, b in model.named_buffers()},
            {n: p.detach().clone() for n, p in model.named_parameters()})


def assert_state_unchanged(model, snap):
    modes, grads, bufs, params = snap
    assert [m.training for m in model.modules()] == modes
    for (p, g, gval), q in zip(grads, model.parameters()):
        assert q is p
        assert q.grad is g
        if gval is not None:
            assert torch.equal(q.grad, gval)
    for n, b in model.named_buffers():
        assert torch.equal(b, bufs[n]), n
    for n, p in model.named_parameters():
        assert torch.equal(p, params[n]), n


# ------------------------------------------------------------------ products


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_products_match_exact_hessian_both_methods(kind):
    model, x, y, Hm, _ = case(kind)
    P = Hm.shape[0]
    V = torch.randn(3, P, dtype=F64, generator=torch.Generator().manual_seed(0))
    expected = V @ Hm
    out = {}
    for method in ("graph", "func"):
        with H.HessianOperator(model, CE, (x, y), hvp_method=method, device="cpu",
                               dtype=F64) as op:
            assert op.method == method and op.num_params == P
            single = torch.stack([op(v) for v in V])
            batched = op.matmat(V)  # vmap / is_grads_batched path
            assert not op.batched_fallback
            assert op.num_hvps == 6
            assert op.num_samples == x.shape[0]
        torch.testing.assert_close(single, expected, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(batched, single, rtol=1e-10, atol=1e-12)
        out[method] = single
    # forward-over-reverse and double backward agree tightly
    torch.testing.assert_close(out["func"], out["graph"], rtol=1e-12, atol=1e-13)


def test_auto_method_and_one_off_product():
    model, x, y, Hm, _ = case("mlp")
    with H.HessianOperator(model, CE, (x, y)) as op:
        assert op.method == "graph"
    with H.HessianOperator(model, CE, [(x, y)]) as op:
        assert op.method == "func"
    v = torch.ones(Hm.shape[0], dtype=F64)
    hv = H.hessian_vector_product(model, CE, (x, y), v, device="cpu", dtype=F64)
    torch.testing.assert_close(hv, Hm @ v, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError):
        H.HessianOperator(model, CE, (x, y), hvp_method="nope")
    with pytest.raises(RuntimeError):
        H.HessianOperator(model, CE, (x, y))(v)  # not entered


@pytest.mark.parametrize("method", ["auto", "graph", "func"])
def test_list_of_batches_is_full_data_average(method):
    model, x, y, _, _ = case("cnn")
    sizes = [7, 13, 20, 24]  # unequal, sum 64
    batches = list(zip(x.split(sizes), y.split(sizes)))
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=F64,
                    generator=torch.Generator().manual_seed(3))
    whole = H.hessian_vector_product(model, CE, (x, y), v, device="cpu", dtype=F64)
    parts = H.hessian_vector_product(model, CE, batches, v, hvp_method=method,
                                     device="cpu", dtype=F64)
    torch.testing.assert_close(parts, whole, rtol=1e-10, atol=1e-12)
    # an unweighted mean over batches would be a different operator: make sure we'd notice
    per = [H.hessian_vector_product(model, CE, b, v, device="cpu", dtype=F64) for b in batches]
    assert (torch.stack(per).mean(0) - whole).abs().max() > 1e-6
    # a one-shot iterator works too (it is listed once, then reused)
    it = H.hessian_vector_product(model, CE, iter(batches), v, device="cpu", dtype=F64)
    torch.testing.assert_close(it, whole, rtol=1e-10, atol=1e-12)


def test_batched_products_fall_back_to_a_loop(monkeypatch):
    model, x, y, Hm, _ = case("mlp")
    V = torch.randn(2, Hm.shape[0], dtype=F64)

    def broken_vmap(*args, **kwargs):
        raise RuntimeError("vmap unsupported here")

    monkeypatch.setattr(torch.func, "vmap", broken_vmap)
    with H.HessianOperator(model, CE, [(x, y)], device="cpu", dtype=F64) as op:
        with pytest.warns(RuntimeWarning, match="falling back"):
            out = op.matmat(V)
        assert op.batched_fallback and op.num_hvps == 2
    torch.testing.assert_close(out, V @ Hm, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------ eigenvalues


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_lanczos_top3_matches_exact(kind):
    model, x, y, _, ev = case(kind)
    model.train()  # must be measured in eval mode regardless
    res = H.top_eigenvalues(model, CE, (x, y), k=3, device="cpu", dtype=F64)
    assert model.training
    top = torch.tensor(res.eigenvalues, dtype=F64)
    assert res.method == "lanczos" and res.converged
    assert list(res.eigenvalues) == sorted(res.eigenvalues, reverse=True)
    assert ((top - ev[:3]).abs() / ev[:3].abs()).max() <= 1e-4
    assert res.num_hvps <= 100 and res.num_samples == x.shape[0]
    assert res.eigenvectors.shape == (3, ev.numel())
    # eigenvectors: unit norm, orthogonal, and H u ≈ λ u
    U = res.eigenvectors
    torch.testing.assert_close(U @ U.T, torch.eye(3, dtype=F64), atol=1e-8, rtol=0)
    Hm = case(kind)[3]
    resid = torch.linalg.vector_norm(U @ Hm - top[:, None] * U, dim=1)
    assert resid.max() <= 1e-2 * ev[0]


def test_lanczos_float32_and_model_dtype():
    model, x, y, _, ev = case("cnn")
    res = H.top_eigenvalues(model, CE, (x, y), k=2, device="cpu")  # float32 model
    assert res.eigenvectors.dtype == torch.float32
    top = torch.tensor(res.eigenvalues, dtype=F64)
    assert ((top - ev[:2]).abs() / ev[:2]).max() <= 1e-4


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_power_iteration_top1_matches_exact(kind):
    model, x, y, _, ev = case(kind)
    assert ev[0] > ev[-1].abs()  # the top eigenvalue is also the largest in magnitude
    res = H.top_eigenvalues(model, CE, (x, y), k=1, method="power", tol=1e-9,
                            max_iter=2000, device="cpu", dtype=F64)
    assert res.method == "power" and res.converged
    assert abs(res.eigenvalues[0] - ev[0].item()) / ev[0].item() <= 1e-4


def test_lanczos_is_algebraic_power_is_magnitude():
    """On ½θᵀAθ with A = diag(-5, 3, 1, 0.5, ...): Lanczos -> 3, power -> -5."""
    p = 12
    diag = torch.tensor([-5.0, 3.0, 1.0] + [0.5 / (i + 1) for i in range(p - 3)], dtype=F64)
    Q = torch.linalg.qr(torch.randn(p, p, dtype=F64, generator=torch.Generator().manual_seed(0)))[0]
    A = Q @ torch.diag(diag) @ Q.T

    def quad_loss(out, y):
        t = out[0]
        return 0.5 * t @ A @ t

    model = Quadratic(p)
    data = (torch.zeros(2, 1, dtype=F64), torch.zeros(2, dtype=F64))
    lz = H.top_eigenvalues(model, quad_loss, data, k=2, device="cpu")
    assert lz.eigenvalues == pytest.approx([3.0, 1.0], rel=1e-8)
    pw = H.top_eigenvalues(model, quad_loss, data, k=2, method="power", tol=1e-12,
                           max_iter=500, device="cpu")
    assert pw.eigenvalues == pytest.approx([3.0, -5.0], rel=1e-6)  # found -5 first, sorted
    # the full Krylov space: k = P works and is exact
    full = H.top_eigenvalues(model, quad_loss, data, k=p, device="cpu")
    assert full.eigenvalues == pytest.approx(sorted(diag.tolist(), reverse=True), rel=1e-8)
    with pytest.raises(ValueError):
        H.top_eigenvalues(model, quad_loss, data, k=p + 1, device="cpu")
    with pytest.raises(ValueError):
        H.top_eigenvalues(model, quad_loss, data, method="arnoldi", device="cpu")


def test_not_converged_is_reported():
    model, x, y, _, _ = case("mlp")
    res = H.top_eigenvalues(model, CE, (x, y), k=3, max_iter=4, device="cpu", dtype=F64)
    assert not res.converged and res.num_hvps == 4


# ------------------------------------------------------------------ trace


def test_hutchinson_within_3_stderr_and_stderr_shrinks():
    model, x, y, _, ev = case("cnn")
    exact = ev.sum().item()
    res = H.trace(model, CE, (x, y), rel_tol=0.05, max_probes=600, device="cpu", dtype=F64)
    assert res.method == "hutchinson" and res.converged
    assert res.num_hvps == res.num_probes == len(res.samples) >= 10
    assert res.stderr <= 0.05 * abs(res.estimate)
    assert abs(res.estimate - exact) <= 3 * res.stderr
    # stderr shrinks roughly like 1/sqrt(n): 20 vs 180 probes from the same seed
    few = H.trace(model, CE, (x, y), rel_tol=0.0, max_probes=20, device="cpu", dtype=F64)
    many = H.trace(model, CE, (x, y), rel_tol=0.0, max_probes=180, device="cpu", dtype=F64)
    assert not few.converged and few.num_probes == 20 and many.num_probes == 180
    np.testing.assert_allclose(many.samples[:20], few.samples)  # same probe stream
    assert 0.15 < many.stderr / few.stderr < 0.6
    assert abs(many.estimate - exact) <= 3 * many.stderr


def test_trace_blocked_probes_give_same_statistics():
    model, x, y, _, ev = case("mlp")
    res = H.trace(model, CE, (x, y), rel_tol=0.0, max_probes=40, block=8, device="cpu",
                  dtype=F64)
    assert res.num_probes == 40 and res.num_hvps == 40
    assert abs(res.estimate - ev.sum().item()) <= 4 * res.stderr


def test_hutchpp_within_3_stderr_and_cheaper():
    model, x, y, _, ev = case("cnn")
    exact = ev.sum().item()
    pp = H.trace(model, CE, (x, y), method="hutchpp", rel_tol=0.02, max_probes=400,
                 device="cpu", dtype=F64)
    assert pp.method == "hutchpp" and pp.converged and pp.sketch_size == 20
    assert pp.num_hvps == pp.num_probes + 2 * pp.sketch_size
    assert abs(pp.estimate - exact) <= 3 * pp.stderr
    # equal budget of 200 products: Hutch++ has a much smaller standard error here
    pp_b = H.trace(model, CE, (x, y), method="hutchpp", rel_tol=0.0, max_probes=160,
                   device="cpu", dtype=F64)
    hu_b = H.trace(model, CE, (x, y), rel_tol=0.0, max_probes=200, device="cpu", dtype=F64)
    assert pp_b.num_hvps == hu_b.num_hvps == 200
    assert pp_b.stderr < 0.5 * hu_b.stderr
    assert abs(pp_b.estimate - exact) <= 3 * pp_b.stderr
    # a sketch that spans R^P gives the exact trace with no probes
    full = H.trace(model, CE, (x, y), method="hutchpp", sketch_size=10_000, device="cpu",
                   dtype=F64)
    assert full.num_probes == 0 and full.converged and full.stderr == 0.0
    assert full.estimate == pytest.approx(exact, rel=1e-9)


# ------------------------------------------------------------------ density


def test_slq_moments_match_exact_spectrum():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 8), nn.Tanh(), nn.Linear(8, 4))  # 284 params
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(400, 30, generator=g), torch.randn(400, 4, generator=g)
    mse = nn.MSELoss()
    Hm = exact_hessian(model, mse, x, y)
    ev = torch.linalg.eigvalsh(Hm)
    P = ev.numel()
    d = H.spectral_density(model, mse, (x, y), num_runs=200, num_steps=6, device="cpu",
                           dtype=F64, seed=0)
    assert d.nodes.shape == d.weights.shape == (200, 6)
    np.testing.assert_allclose(d.weights.sum(axis=1), 1.0, atol=1e-10)
    assert d.num_hvps == 200 * 6
    for p in (1, 2):
        exact = (ev ** p).mean().item()  # tr(H^p) / P
        est = float(np.mean(np.sum(d.weights * d.nodes ** p, axis=1)))
        assert est == pytest.approx(d.moment(p))
        # the Hutchinson standard error of this estimator, from the exact H^p
        A = torch.linalg.matrix_power(Hm, p)
        se = ((2 * ((A ** 2).sum() - (A.diag() ** 2).sum()) / 200).sqrt() / P).item()
        assert abs(est - exact) <= 4 * se
        assert abs(est - exact) <= 0.05 * abs(exact)


def test_slq_extreme_nodes_and_smoothed_density():
    model, x, y, _, ev = case("cnn")
    d = H.spectral_density(model, CE, (x, y), num_runs=2, num_steps=60, grid_points=4000,
                           device="cpu", dtype=F64)
    assert d.nodes.shape == (2, 60)
    # extreme Ritz values converge first
    np.testing.assert_allclose(d.nodes.max(axis=1), ev[0].item(), rtol=1e-6)
    np.testing.assert_allclose(d.nodes.min(axis=1), ev[-1].item(), rtol=1e-3)
    assert d.sigma_sq == pytest.approx(1e-5 * max(1.0, d.nodes.max() - d.nodes.min()))
    assert d.grid.shape == d.density.shape == (4000,)
    assert np.all(d.density >= 0)
    assert np.trapezoid(d.density, d.grid) == pytest.approx(1.0, rel=1e-6)
    # the smoothed density has (almost) the quadrature's mean
    mean_grid = np.trapezoid(d.grid * d.density, d.grid)
    assert mean_grid == pytest.approx(d.moment(1), abs=1e-3 * (d.grid[-1] - d.grid[0]))


def test_slq_stops_on_breakdown_with_exact_quadrature():
    p = 5
    A = torch.diag(torch.tensor([4.0, 2.0, 1.0, -1.0, 0.5], dtype=F64))
    model = Quadratic(p)
    data = (torch.zeros(2, 1, dtype=F64), torch.zeros(2, dtype=F64))
    d = H.spectral_density(model, lambda o, y: 0.5 * o[0] @ A @ o[0], data, num_runs=3,
                           num_steps=50, device="cpu")
    assert d.nodes.shape == (3, 5) and d.num_steps == 5
    for r in range(3):
        np.testing.assert_allclose(np.sort(d.nodes[r]), [-1.0, 0.5, 1.0, 2.0, 4.0], atol=1e-10)
        np.testing.assert_allclose(d.weights[r], 0.2, atol=1e-10)  # Rademacher: |v_i|² = 1/P


# ------------------------------------------------------------------ hygiene


def test_mode_grads_buffers_restored():
    model, x, y, _, _ = case("cnn")
    model = make_cnn()  # private copy: we set grads
    model.train()
    model[1].eval()  # mixed modes must come back exactly
    params = list(model.parameters())
    params[0].grad = torch.randn_like(params[0])
    params[2].grad = torch.zeros_like(params[2])
    snap = snapshot_state(model)
    v = torch.randn(sum(p.numel() for p in params))
    for method in ("graph", "func"):
        H.hessian_vector_product(model, CE, (x, y), v, hvp_method=method, device="cpu")
        assert_state_unchanged(model, snap)
    H.top_eigenvalues(model, CE, (x, y), k=2, device="cpu")
    assert_state_unchanged(model, snap)
    H.top_eigenvalues(model, CE, [(x, y)], k=1, method="power", max_iter=5, device="cpu")
    assert_state_unchanged(model, snap)
    H.trace(model, CE, (x, y), max_probes=12, method="hutchpp", sketch_size=4, device="cpu")
    assert_state_unchanged(model, snap)
    H.spectral_density(model, CE, (x, y), num_runs=1, num_steps=5, grid_points=10,
                       device="cpu")
    assert_state_unchanged(model, snap)
    # and on an error inside the context
    with pytest.raises(ZeroDivisionError):
        with H.HessianOperator(model, CE, (x, y), device="cpu"):
            1 / 0
    assert_state_unchanged(model, snap)


def test_unused_parameter():
    torch.manual_seed(0)
    model = WithUnused()
    x, y = batch("unused")
    Hm = exact_hessian(model, CE, x, y)
    names = [n for n, _ in model.named_parameters()]
    assert "unused" in names
    before = names[: names.index("unused")]
    off = sum(p.numel() for n, p in model.named_parameters() if n in before)
    blk = slice(off, off + 5)
    assert torch.count_nonzero(Hm[blk]) == 0
    v = torch.randn(Hm.shape[0], dtype=F64, generator=torch.Generator().manual_seed(1))
    for method in ("graph", "func"):
        hv = H.hessian_vector_product(model, CE, (x, y), v, hvp_method=method, device="cpu",
                                      dtype=F64)
        torch.testing.assert_close(hv, Hm @ v, rtol=1e-10, atol=1e-12)
        assert torch.count_nonzero(hv[blk]) == 0
        hv2 = H.hessian_vector_product(model, CE, (x, y), torch.stack([v, 2 * v]),
                                       hvp_method=method, device="cpu", dtype=F64)
        torch.testing.assert_close(hv2[1], 2 * (Hm @ v), rtol=1e-10, atol=1e-12)
    ev = torch.linalg.eigvalsh(Hm).flip(0)
    res = H.top_eigenvalues(model, CE, (x, y), k=2, device="cpu", dtype=F64)
    assert res.converged
    np.testing.assert_allclose(res.eigenvalues, ev[:2].numpy(), rtol=1e-6)
    tr = H.trace(model, CE, (x, y), method="hutchpp", rel_tol=0.05, device="cpu", dtype=F64)
    assert abs(tr.estimate - ev.sum().item()) <= 3 * tr.stderr
    split = H.split_vector(model, v)
    assert set(split) == set(names) and split["unused"].shape == (5,)


def test_frozen_parameters_are_excluded():
    model = make_mlp()
    x, y = batch("mlp")
    model[0].weight.requires_grad_(False)
    try:
        full = exact_hessian(make_mlp(), CE, x, y)  # same weights (same seed)
        k = model[0].weight.numel()
        with H.HessianOperator(model, CE, (x, y), device="cpu", dtype=F64) as op:
            assert op.num_params == full.shape[0] - k
            v = torch.randn(op.num_params, dtype=F64)
            torch.testing.assert_close(op(v), full[k:, k:] @ v, rtol=1e-10, atol=1e-12)
    finally:
        model[0].weight.requires_grad_(True)


def test_make_fixed_batch_and_num_samples_recorded():
    x, y = torch.randn(500, 8), torch.randint(0, 3, (500,))
    xb, yb = H.make_fixed_batch(x, y, num_samples=50, seed=3)
    xb2, yb2 = H.make_fixed_batch(x, y, num_samples=50, seed=3)
    assert xb.shape == (50, 8) and yb.shape == (50,)
    assert torch.equal(xb, xb2) and torch.equal(yb, yb2)
    # the rows are real (x, y) pairs
    idx = [int((x == r).all(1).nonzero()) for r in xb]
    assert torch.equal(y[idx], yb) and len(set(idx)) == 50
    with pytest.raises(ValueError):
        H.make_fixed_batch(x, y, num_samples=501)
    res = H.top_eigenvalues(make_mlp(), CE, (xb, yb), device="cpu", max_iter=5)
    assert res.num_samples == 50
    tr = H.trace(make_mlp(), CE, [(xb[:20], yb[:20]), (xb[20:], yb[20:])], max_probes=10,
                 device="cpu")
    assert tr.num_samples == 50 and tr.hvp_method == "func"


# ------------------------------------------------------------------ PyHessian


def test_pyhessian_reference_side_by_side():
    pytest.importorskip("pyhessian")
    model, x, y, _, ev = case("mlp")
    model = make_mlp()
    model.train()
    g0 = torch.randn_like(model[0].weight)
    model[0].weight.grad = g0
    rng = torch.get_rng_state()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = H.pyhessian_reference(model, CE, x, y, tol=1e-7, max_iter=1000, trace_max_iter=50)
    assert ref.error is None, ref.error
    assert ref.eigenvalues[0] == pytest.approx(ev[0].item(), rel=1e-3)
    assert ref.eigen_hvps_counted and 2 <= ref.eigen_hvps <= 1000
    assert 1 <= ref.trace_hvps <= 50 and np.isfinite(ref.trace_estimate)
    assert model.training and model[0].weight.grad is g0
    assert all(p.grad is None for p in list(model.parameters())[1:])
    assert torch.equal(torch.get_rng_state(), rng)
    # PyHessian cannot handle an unused parameter: reported, not raised
    bad = WithUnused()
    xu, yu = batch("unused")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = H.pyhessian_reference(bad, CE, xu, yu, compute_trace=False)
    assert ref.error is not None and "pyhessian failed" in ref.error
    assert all(p.grad is None for p in bad.parameters())


# ------------------------------------------------------------------ GPU


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_gpu_matches_cpu():
    model, x, y, _, ev = case("cnn")
    res = H.top_eigenvalues(model, CE, (x, y), k=2, device="cuda", dtype=F64)
    np.testing.assert_allclose(res.eigenvalues, ev[:2].numpy(), rtol=1e-6)
    tr = H.trace(model, CE, [(x[:30], y[:30]), (x[30:], y[30:])], rel_tol=0.05, block=4,
                 device="cuda", dtype=F64)
    assert tr.samples.size > 0 and abs(tr.estimate - ev.sum().item()) <= 3 * tr.stderr
    assert next(model.parameters()).device.type == "cpu"  # the model was not moved
