"""Tests of landscape_utils.metrics.align: permutations keep the function, weight matching undoes a
known permutation exactly (MLP with and without BatchNorm, CNN with BatchNorm), matches a
brute-force search over all permutations of a small layer, and removes the barrier
between a model and its permuted copy."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from landscape_utils.core.models import MLP, ResNet18, SmallCNN
from landscape_utils.metrics.align import (aligned_barrier, loss_barrier, matching_objective, permutation_spec,
                                           permute_model, random_permutations, weight_matching)
from landscape_utils.metrics.similarity import l2_distance



def make_blobs(n_train=256, n_test=128, dim=16, k=4, seed=0):
    """Gaussian blobs: (x_train, y_train, x_test, y_test) in a namespace."""
    from types import SimpleNamespace
    g = torch.Generator().manual_seed(seed)
    centers = 3 * torch.randn(k, dim, generator=g)

    def draw(n):
        y = torch.randint(0, k, (n,), generator=g)
        return centers[y] + torch.randn(n, dim, generator=g), y

    (x_tr, y_tr), (x_te, y_te) = draw(n_train), draw(n_test)
    return SimpleNamespace(x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)


pytestmark = pytest.mark.usefixtures("one_thread")


def _train(model, x, y, steps=60, seed=0):
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (64,))
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _state_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("kind", ["mlp", "mlp_bn", "cnn_bn"])
def test_permute_then_align_recovers_the_model(kind):
    data = make_blobs(n_train=256, dim=16, k=4, seed=1)
    torch.manual_seed(0)
    if kind == "cnn_bn":
        model = SmallCNN((16,), width=6, num_classes=4, batch_norm=True)
    else:
        model = MLP(16, 12, 4, depth=3, batch_norm=kind == "mlp_bn")
    model = _train(model, data.x_train, data.y_train)
    perms = random_permutations(model, seed=3)
    assert all((p != np.arange(len(p))).any() for p in perms)
    scrambled = permute_model(model, perms).eval()
    # Same function (eval mode: BN buffers must have moved with their channels) ...
    torch.testing.assert_close(scrambled(data.x_test), model(data.x_test), rtol=1e-5, atol=1e-5)
    # ... but different weights.
    assert l2_distance(model, scrambled) > 1.0
    aligned, found = weight_matching(model, scrambled)
    # Aligning back gives the original model exactly, buffers included.
    assert l2_distance(model, aligned) == 0.0
    assert _state_equal(model, aligned)
    torch.testing.assert_close(aligned.eval()(data.x_test), model(data.x_test), rtol=1e-5, atol=1e-5)
    # found[g] undoes perms[g]: unit i of the aligned model is unit found[i] of the scrambled one.
    for p, q in zip(perms, found):
        np.testing.assert_array_equal(p[q], np.arange(len(p)))


def test_spec_covers_bn_buffers_and_next_layer():
    spec = permutation_spec(MLP(5, 7, 3, depth=2, batch_norm=True))
    assert spec.sizes == [7, 7]
    assert spec.axes["net.2.running_mean"] == [(0, 0)] and spec.axes["net.2.running_var"] == [(0, 0)]
    assert sorted(spec.axes["net.4.weight"]) == [(0, 1), (1, 0)]
    assert spec.axes["net.7.weight"] == [(1, 1)]
    assert "net.2.running_mean" not in spec.trainable and "net.2.weight" in spec.trainable
    cnn = permutation_spec(SmallCNN((20,), 4, 3, batch_norm=True))
    assert cnn.sizes == [4, 8] and cnn.axes["head.weight"] == [(1, 1)]


def test_single_hidden_layer_matches_brute_force():
    """With one hidden layer, weight matching is one assignment problem: its optimum must
    equal the best of all 5! permutations, found by enumeration."""
    torch.manual_seed(0)
    a, b = MLP(6, 5, 3, depth=1), MLP(6, 5, 3, depth=1)
    spec = permutation_spec(a)
    best = max(matching_objective(a.state_dict(), b.state_dict(), spec, [np.array(p)])
               for p in itertools.permutations(range(5)))
    _, perms = weight_matching(a, b)
    assert matching_objective(a.state_dict(), b.state_dict(), spec, perms) == pytest.approx(best, rel=1e-12)


def test_matching_improves_objective_and_distance():
    data = make_blobs(n_train=256, dim=16, k=4, seed=2)
    torch.manual_seed(1)
    a = _train(MLP(16, 16, 4, depth=2), data.x_train, data.y_train, seed=1)
    torch.manual_seed(2)
    b = _train(MLP(16, 16, 4, depth=2), data.x_train, data.y_train, seed=2)
    spec = permutation_spec(a)
    ident = [np.arange(n) for n in spec.sizes]
    aligned, perms = weight_matching(a, b)
    assert matching_objective(a.state_dict(), b.state_dict(), spec, perms) >= \
        matching_objective(a.state_dict(), b.state_dict(), spec, ident)
    assert l2_distance(a, aligned) < l2_distance(a, b)
    torch.testing.assert_close(aligned(data.x_test), b(data.x_test), rtol=1e-5, atol=1e-5)


def test_aligned_barrier_removes_a_pure_permutation_barrier():
    data = make_blobs(n_train=256, dim=16, k=4, seed=3)
    torch.manual_seed(4)
    model = _train(MLP(16, 16, 4, depth=2, batch_norm=True), data.x_train, data.y_train, steps=120)
    scrambled = permute_model(model, random_permutations(model, seed=5))
    res = aligned_barrier(model, scrambled, data.x_train, data.y_train, num_points=5, device="cpu")
    rec = res.record()
    assert rec["linear_before_loss_barrier"] > 0.05
    assert rec["linear_after_loss_barrier"] == pytest.approx(0.0, abs=1e-5)
    assert rec["linear_after_mc"] == pytest.approx(0.0, abs=1e-9)
    assert rec["l2_after"] == 0.0 and rec["l2_before"] > 0


def test_loss_barrier_definition():
    import pandas as pd
    prof = pd.DataFrame({"t": [0.0, 0.5, 1.0], "train_loss": [1.0, 4.0, 3.0]})
    assert loss_barrier(prof) == pytest.approx(2.0)  # 4 - (1 + 3)/2
    flat = pd.DataFrame({"t": [0.0, 0.5, 1.0], "train_loss": [1.0, 1.5, 2.0]})
    assert loss_barrier(flat) == pytest.approx(0.0)


def test_resnet_is_rejected():
    with pytest.raises(NotImplementedError):
        permutation_spec(ResNet18(3, 2, 10))
