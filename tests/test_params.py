"""Tests of landscape_utils.core.params: the parameter-vector helpers against hand-built vectors."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from landscape_utils.core.models import MLP
from landscape_utils.core.params import (combine, dot, flatten_params, matching_parameters, norm, params_of,
                                         trainable_parameters, unflatten_params)


def _bn_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))


def test_module_and_state_dict_give_the_same_coordinates():
    net = _bn_net()
    from_module = trainable_parameters(net)
    from_state = trainable_parameters(net.state_dict())
    assert list(from_module) == list(from_state) == ["0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"]
    assert "1.running_mean" not in from_state
    with pytest.raises(KeyError, match="nope"):
        trainable_parameters(net, names=["nope"])


def test_frozen_parameters_are_not_coordinates():
    net = _bn_net()
    net[0].bias.requires_grad_(False)
    assert "0.bias" not in trainable_parameters(net)


def test_matching_parameters_names_the_mismatch():
    a, b = MLP(3, 4, 2), MLP(3, 5, 2)
    with pytest.raises(ValueError, match="shape mismatch"):
        matching_parameters(a, b)
    pa, pb = matching_parameters(a, MLP(3, 4, 2))
    assert list(pa) == list(pb)


def test_flatten_norm_dot_combine_against_one_long_vector():
    net = _bn_net()
    p = params_of(net)
    q = {k: torch.randn(v.shape, generator=torch.Generator().manual_seed(1)) for k, v in p.items()}
    vp, vq = flatten_params(p), flatten_params(q)
    assert vp.shape == (sum(v.numel() for v in p.values()),)
    assert norm(p) == pytest.approx(float(vp.double().norm()), rel=1e-12)
    assert dot(p, q) == pytest.approx(float(vp.double() @ vq.double()), rel=1e-10)
    c = combine(p, (0.5, q), (-2.0, p))
    assert torch.allclose(flatten_params(c), vp + 0.5 * vq - 2.0 * vp)
    back = unflatten_params(vp, p)
    assert all(torch.equal(back[k], p[k]) for k in p)
    with pytest.raises(ValueError, match="entries"):
        unflatten_params(vp[:-1], p)
    assert math.isclose(norm({}), 0.0)


def test_params_of_copies():
    net = _bn_net()
    p = params_of(net)
    with torch.no_grad():
        net[0].weight.add_(1.0)
    assert not torch.equal(p["0.weight"], net[0].weight)
