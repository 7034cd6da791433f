"""Parameter vectors: the one home of the helpers that treat a network's weights as a point.

A point of weight space is a ``{parameter name: tensor}`` dict (:data:`Params`) over the
*trainable* parameters of a model, in the model's order. BatchNorm running statistics
are buffers, not coordinates: they never enter a vector and are recomputed wherever a
point is evaluated.

- :func:`trainable_parameters`, :func:`matching_parameters`: the dict of a module or a
  state dict (not copied), and the dicts of two models checked to line up.
- :func:`params_of`: a detached copy.
- :func:`flatten_params`, :func:`unflatten_params`: a dict as one (D,) vector and back.
- :func:`norm`, :func:`combine`, :func:`dot`: the Euclidean geometry of such points.

This module depends on torch only, so every other module may import it.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from torch import nn

__all__ = ["Params", "trainable_parameters", "matching_parameters", "params_of", "flatten_params",
           "unflatten_params", "norm", "dot", "combine"]

#: A point of weight space: trainable parameter name -> tensor.
Params = dict[str, torch.Tensor]

# State-dict entries of BatchNorm layers that are statistics, not coordinates.
_BN_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


def trainable_parameters(obj: nn.Module | Mapping[str, torch.Tensor], names: Sequence[str] | None = None) -> Params:
    """The trainable parameters of a module, or the coordinates of a state dict (not copied).

    A module contributes its parameters with ``requires_grad``, in registration order.
    A state dict contributes its floating-point entries except BatchNorm running
    statistics. ``names`` selects (and orders) the entries; a missing name is a
    ``KeyError`` naming it.
    """
    if isinstance(obj, nn.Module):
        params = {k: p for k, p in obj.named_parameters() if p.requires_grad}
    else:
        params = {k: v for k, v in obj.items()
                  if torch.is_tensor(v) and v.is_floating_point() and not k.endswith(_BN_BUFFER_SUFFIXES)}
    if names is not None:
        missing = [k for k in names if k not in params]
        if missing:
            raise KeyError(f"parameters missing: {missing[:5]}")
        params = {k: params[k] for k in names}
    return params


def matching_parameters(a: nn.Module | Mapping[str, torch.Tensor], b: nn.Module | Mapping[str, torch.Tensor]
                        ) -> tuple[Params, Params]:
    """:func:`trainable_parameters` of two models, checked to have equal names and shapes.

    When one side is a module, its trainable parameter names select the other side's
    entries. Raises ``ValueError`` naming the first parameter that differs.
    """
    names = next((list(trainable_parameters(o)) for o in (a, b) if isinstance(o, nn.Module)), None)
    pa, pb = trainable_parameters(a, names), trainable_parameters(b, names)
    if pa.keys() != pb.keys():
        raise ValueError(f"parameter names differ: {sorted(set(pa) ^ set(pb))[:5]}")
    for k, va in pa.items():
        if va.shape != pb[k].shape:
            raise ValueError(f"shape mismatch for {k}: {tuple(va.shape)} vs {tuple(pb[k].shape)}")
    return pa, pb


def params_of(obj: nn.Module | Mapping[str, torch.Tensor]) -> Params:
    """Detached copies of the trainable parameters of a module (or of a parameter dict)."""
    return {k: v.detach().clone() for k, v in trainable_parameters(obj).items()}


def flatten_params(params: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Concatenate a parameter dict into one vector (dict order), shape (D,)."""
    return torch.cat([v.reshape(-1) for v in params.values()])


def unflatten_params(vec: torch.Tensor, like: Mapping[str, torch.Tensor]) -> Params:
    """Split a (D,) vector into tensors shaped like ``like`` (same names and order)."""
    total = sum(v.numel() for v in like.values())
    if vec.numel() != total:
        raise ValueError(f"vector has {vec.numel()} entries, the parameters {total}")
    out, i = {}, 0
    for k, v in like.items():
        out[k] = vec[i:i + v.numel()].reshape(v.shape)
        i += v.numel()
    return out


def norm(params: Mapping[str, torch.Tensor]) -> float:
    """Euclidean norm of a parameter dict, in float64."""
    return math.sqrt(sum(float(v.detach().double().pow(2).sum()) for v in params.values()))


def dot(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    """Euclidean inner product ⟨a, b⟩ of two parameter dicts over ``a``'s names, in float64."""
    return float(sum(float((v.detach().double() * b[k].detach().to(v.device).double()).sum()) for k, v in a.items()))


def combine(base: Mapping[str, torch.Tensor], *terms: tuple[float, Mapping[str, torch.Tensor]]) -> Params:
    """base + Σ a·d for (a, d) in terms, over the names of ``base``."""
    return {k: v + sum(a * d[k] for a, d in terms) for k, v in base.items()}
