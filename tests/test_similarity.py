"""Tests of landscape_utils.metrics.similarity: CKA against brute-force references and its
invariances, minibatch CKA, mixup, model CKA and the L2 distance."""
from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist
from torch import nn

from landscape_utils.core.params import trainable_parameters
from landscape_utils.metrics.similarity import (MinibatchCKA, cka_from_grams, hsic, l2_distance, linear_cka,
                                                linear_gram, mixup_batches, model_cka, rbf_cka, rbf_gram,
                                                representations)


pytestmark = pytest.mark.usefixtures("one_thread")


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _orthogonal(p, seed=0):
    q, _ = torch.linalg.qr(_randn(p, p, seed=seed))
    return q


# --------------------------------------------------------------------------- brute-force references
def _hsic_biased_reference(K, L):
    """tr(K H L H) / (n − 1)² with an explicit centring matrix."""
    K, L = np.asarray(K), np.asarray(L)
    n = K.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    return np.trace(K @ H @ L @ H) / (n - 1) ** 2


def _hsic_unbiased_reference(K, L):
    """The HSIC U-statistic over all ordered 4-tuples of distinct indices (O(n⁴))."""
    K, L = np.asarray(K), np.asarray(L)
    n = K.shape[0]
    total, count = 0.0, 0
    for i, j, q, r in itertools.permutations(range(n), 4):
        total += K[i, j] * L[i, j] + K[i, j] * L[q, r] - 2.0 * K[i, j] * L[i, q]
        count += 1
    return total / count


def test_hsic_matches_brute_force():
    X, Y = _randn(7, 3, seed=1), _randn(7, 5, seed=2)
    K, L = linear_gram(X), rbf_gram(Y)
    assert hsic(K, L) == pytest.approx(_hsic_biased_reference(K, L), rel=1e-12)
    assert hsic(K, L, debiased=True) == pytest.approx(_hsic_unbiased_reference(K, L), rel=1e-10)
    # the two estimators differ on a small sample, so the comparison above can tell them apart
    assert abs(hsic(K, L) - hsic(K, L, debiased=True)) > 1e-3 * abs(hsic(K, L))


def test_linear_cka_feature_and_gram_forms_agree():
    X, Y = _randn(50, 8, seed=3), _randn(50, 6, seed=4) + 0.3 * _randn(50, 1, seed=5)
    for debiased in (False, True):
        assert linear_cka(X, Y, debiased) == pytest.approx(
            cka_from_grams(linear_gram(X), linear_gram(Y), debiased), rel=1e-10)
    # the biased value equals the textbook formula on centred features
    Xc, Yc = (X - X.mean(0)).numpy(), (Y - Y.mean(0)).numpy()
    ref = np.linalg.norm(Yc.T @ Xc) ** 2 / (np.linalg.norm(Xc.T @ Xc) * np.linalg.norm(Yc.T @ Yc))
    assert linear_cka(X, Y) == pytest.approx(ref, rel=1e-12)
    # wider than n takes the Gram branch internally; same number as the explicit Gram form
    W, Z = _randn(20, 60, seed=6), _randn(20, 3, seed=7)
    for debiased in (False, True):
        K, L = linear_gram(W), linear_gram(Z)
        ref = hsic(K, L, debiased) / math.sqrt(hsic(K, K, debiased) * hsic(L, L, debiased))
        assert linear_cka(W, Z, debiased) == pytest.approx(ref, rel=1e-10)


@pytest.mark.parametrize("debiased", [False, True])
def test_linear_cka_invariances(debiased):
    X, Y = _randn(60, 10, seed=8), _randn(60, 7, seed=9) + _randn(60, 10, seed=8)[:, :7]
    Q = _orthogonal(10, seed=10)
    assert linear_cka(X, X @ Q, debiased) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(X, 3.7 * X, debiased) == pytest.approx(1.0, abs=1e-12)
    base = linear_cka(X, Y, debiased)
    assert 0.05 < base < 0.95
    assert linear_cka(-2.5 * X @ Q + 4.0, Y, debiased) == pytest.approx(base, rel=1e-10)
    # not invariant to a general invertible map: the checks above can fail
    A = _randn(10, 10, seed=11) + 0.1 * torch.eye(10, dtype=torch.float64)
    assert linear_cka(X, X @ A @ torch.diag(torch.logspace(0, 2, 10, dtype=torch.float64)), debiased) < 0.99


@pytest.mark.parametrize("debiased", [False, True])
def test_rbf_cka_invariances(debiased):
    X, Y = _randn(60, 10, seed=12), _randn(60, 4, seed=13) + _randn(60, 10, seed=12)[:, :4]
    Q = _orthogonal(10, seed=14)
    moved = 3.0 * X @ Q - 1.5  # rotation, isotropic scaling (σ follows the median) and translation
    assert rbf_cka(X, moved, debiased=debiased) == pytest.approx(1.0, abs=1e-12)
    base = rbf_cka(X, Y, debiased=debiased)
    assert 0.05 < base < 0.95
    assert rbf_cka(moved, Y, debiased=debiased) == pytest.approx(base, rel=1e-10)
    assert rbf_cka(X, X ** 3, debiased=debiased) < 0.99  # a non-isometric map changes it


def test_rbf_gram_uses_median_pairwise_distance():
    X = _randn(31, 5, seed=15)
    d = pdist(X.numpy())
    sigma = 0.5 * np.median(d)
    from scipy.spatial.distance import squareform
    ref = np.exp(-squareform(d) ** 2 / (2 * sigma ** 2))
    np.testing.assert_allclose(rbf_gram(X, sigma_frac=0.5).numpy(), ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rbf_gram(X, sigma=1.3).numpy(), np.exp(-squareform(d) ** 2 / (2 * 1.3 ** 2)),
                               rtol=1e-10, atol=1e-12)


def test_debiased_cka_of_independent_features_is_near_zero():
    X, Y = _randn(400, 100, seed=16), _randn(400, 100, seed=17)
    assert linear_cka(X, Y) > 0.1  # the biased estimator is far from 0 here
    assert abs(linear_cka(X, Y, debiased=True)) < 0.02
    assert abs(rbf_cka(X, Y, debiased=True)) < 0.02


def test_guards():
    X = _randn(3, 2)
    with pytest.raises(ValueError, match="at least 4"):
        linear_cka(X, X, debiased=True)
    with pytest.raises(ValueError, match="at least 4"):
        hsic(linear_gram(X), linear_gram(X), debiased=True)
    with pytest.raises(ValueError, match="at least 4"):
        MinibatchCKA().update(X, X)
    assert linear_cka(X, X) == pytest.approx(1.0)  # biased is fine with 3 points
    # a constant representation has zero self-HSIC: nan, not a ratio of rounding residue
    Y = _randn(9, 3, seed=18)
    for value in (0.1, 0.3, 7.7):
        const = torch.full((9, 3), value, dtype=torch.float64)
        for debiased in (False, True):
            assert math.isnan(linear_cka(const, Y, debiased))
            assert math.isnan(cka_from_grams(linear_gram(const), linear_gram(Y), debiased))
            assert math.isnan(rbf_cka(const, Y, debiased=debiased))
    with pytest.raises(ValueError, match="same number"):
        linear_cka(_randn(5, 2), _randn(6, 2))


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_minibatch_cka(kernel):
    X, Y = _randn(40, 6, seed=19), _randn(40, 5, seed=20) + _randn(40, 6, seed=19)[:, :5]
    full = linear_cka if kernel == "linear" else rbf_cka
    one = MinibatchCKA(kernel).update(X, Y).compute()
    assert one == pytest.approx(full(X, Y, debiased=True), rel=1e-10)
    # several batches: sum of per-batch debiased HSIC, normalized at the end
    acc = MinibatchCKA(kernel)
    gram = linear_gram if kernel == "linear" else rbf_gram
    sums = np.zeros(3)
    for xb, yb in zip(X.split(10), Y.split(10)):
        acc.update(xb, yb)
        K, L = gram(xb), gram(yb)
        sums += [_hsic_unbiased_reference(K, L), _hsic_unbiased_reference(K, K), _hsic_unbiased_reference(L, L)]
    assert acc.num_batches == 4
    assert acc.compute() == pytest.approx(sums[0] / math.sqrt(sums[1] * sums[2]), rel=1e-9)
    assert acc.compute() != pytest.approx(one, rel=1e-3)
    with pytest.raises(ValueError):
        MinibatchCKA(kernel).compute()


# --------------------------------------------------------------------------- mixup
def test_mixup_batches_shapes_and_seed():
    x = torch.randn(70, 3, 4)
    out = mixup_batches(x, 16, seed=0)
    assert [b.shape for b in out] == [(16, 3, 4)] * 4 + [(6, 3, 4)]
    assert all(b.dtype == x.dtype for b in out)
    again = mixup_batches(x, 16, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(out, again))
    other = mixup_batches(x, 16, seed=1)
    assert not torch.equal(out[0], other[0])
    assert len(mixup_batches(x, 16, num_batches=2)) == 2
    with pytest.raises(ValueError):
        mixup_batches(x, 16, num_batches=6)


def test_mixup_mixes_each_batch_with_a_permutation_of_itself():
    n, bs = 48, 16
    eye = torch.eye(n, dtype=torch.float64)  # row i is example i, so a mix shows its weights
    ones = torch.ones(bs, dtype=torch.float64)
    out = mixup_batches(eye, bs, alpha=16.0, seed=3)
    lams, seen = [], torch.zeros(n, dtype=torch.float64)
    for b in out:
        assert torch.allclose(b.sum(1), ones)  # convex combinations
        members = (b > 0).any(0)
        assert members.sum() == bs  # the mixing partners come from the same batch
        assert torch.allclose(b.sum(0)[members], ones)  # ... through a permutation of it
        top = torch.sort(b, 1, descending=True).values[:, :2]
        moved = top[:, 1] > 0
        assert moved.sum() >= bs - 3  # a random permutation has few fixed points
        w = top[moved, 0]
        assert torch.allclose(w, w[0].expand_as(w))  # one λ per batch
        lams.append(float(w[0]))
        seen += members.double()
    assert torch.equal(seen, torch.ones(n, dtype=torch.float64))  # the batches partition the data
    assert len(set(lams)) == len(lams)  # a fresh λ per batch
    assert all(0.5 <= v < 0.9 for v in lams)  # max(λ, 1 − λ) with λ ~ Beta(16, 16), near 1/2


# --------------------------------------------------------------------------- models
def _net(seed, bn=True):
    torch.manual_seed(seed)
    layers = [nn.Linear(5, 12), nn.BatchNorm1d(12) if bn else nn.Identity(), nn.ReLU(), nn.Linear(12, 4)]
    net = nn.Sequential(*layers)
    if bn:  # non-trivial running statistics, so eval mode differs from train mode
        net[1].running_mean.normal_()
        net[1].running_var.uniform_(0.5, 2.0)
    return net


def test_model_cka_matches_manual_computation_in_eval_mode():
    a, b = _net(0), _net(1)
    x = torch.randn(100, 5, generator=torch.Generator().manual_seed(0))
    a.train()
    a[3].eval()  # a mixed mode that must survive
    stats = a[1].running_mean.clone()
    value = model_cka(a, b, x, batch_size=32, seed=5, device="cpu")
    assert a.training and a[1].training and not a[3].training and b.training
    assert torch.equal(a[1].running_mean, stats)
    with torch.no_grad():
        batches = mixup_batches(x, 32, seed=5)
        ea, eb = copy.deepcopy(a).eval(), copy.deepcopy(b).eval()
        ra = torch.cat([torch.softmax(ea(xb).double(), 1) for xb in batches])
        rb = torch.cat([torch.softmax(eb(xb).double(), 1) for xb in batches])
        ha = torch.cat([ea[2](ea[1](ea[0](xb))).double() for xb in batches])
        hb = torch.cat([eb[2](eb[1](eb[0](xb))).double() for xb in batches])
    assert value == pytest.approx(linear_cka(ra, rb), rel=1e-10)
    assert 0.0 < value < 0.999
    assert model_cka(a, b, x, representation="2", batch_size=32, seed=5, device="cpu") == \
        pytest.approx(linear_cka(ha, hb), rel=1e-10)
    assert model_cka(a, b, x, representation="logits", kernel="rbf", batch_size=32, seed=5, device="cpu") == \
        pytest.approx(rbf_cka(torch.cat([ea(xb) for xb in batches]), torch.cat([eb(xb) for xb in batches])),
                      rel=1e-6)
    mb = model_cka(a, b, x, batch_size=32, seed=5, debiased=True, minibatch=True, device="cpu")
    ref = MinibatchCKA()
    for r1, r2 in zip(ra.split(32), rb.split(32)):
        ref.update(r1, r2)
    assert mb == pytest.approx(ref.compute(), rel=1e-10)
    # plain (un-mixed) inputs in order
    plain = model_cka(a, b, x, mixup=False, batch_size=32, device="cpu")
    with torch.no_grad():
        assert plain == pytest.approx(linear_cka(torch.softmax(ea(x).double(), 1),
                                                 torch.softmax(eb(x).double(), 1)), rel=1e-6)


def test_model_cka_of_a_model_with_itself_is_one():
    a = _net(2)
    x = torch.randn(64, 5)
    assert model_cka(a, a, x, batch_size=16, device="cpu") == pytest.approx(1.0, abs=1e-12)
    assert model_cka(a, copy.deepcopy(a), x, batch_size=16, device="cpu") == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="unknown representation"):
        model_cka(a, a, x, representation="nope", device="cpu")
    reps = representations(a, [x[:10], x[10:]], "softmax", device="cpu")
    assert [r.shape for r in reps] == [(10, 4), (54, 4)] and reps[0].dtype == torch.float64


# --------------------------------------------------------------------------- L2 distance
def test_l2_distance_matches_manual_norm():
    a, b = _net(3), _net(4)
    a[3].bias.requires_grad_(False)  # frozen: not part of the trainable parameter vector
    b[3].bias.requires_grad_(False)
    manual = torch.cat([(pa.double() - pb.double()).flatten() for pa, pb in zip(a.parameters(), b.parameters())
                        if pa.requires_grad]).norm().item()
    assert l2_distance(a, b) == pytest.approx(manual, rel=1e-12)
    assert l2_distance(a, b.state_dict()) == pytest.approx(manual, rel=1e-12)  # names from the module
    # two state dicts: every float entry but BN running statistics (the frozen bias counts)
    sd_manual = math.sqrt(manual ** 2 + float((a[3].bias.double() - b[3].bias.double()).pow(2).sum()))
    assert l2_distance(a.state_dict(), b.state_dict()) == pytest.approx(sd_manual, rel=1e-12)
    assert l2_distance(a, a) == 0.0
    assert "1.running_mean" not in trainable_parameters(a.state_dict())
    with pytest.raises((ValueError, KeyError)):
        l2_distance(a, _net(5, bn=False))
