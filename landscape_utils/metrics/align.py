"""Weight matching (Ainsworth et al. 2023, "git re-basin").

Hidden units can be permuted without changing the function a network computes. Before a
barrier between two seeds is measured, the units of model B are permuted to line up with
those of model A; a barrier that disappears was only a permutation.

Supported: the book's :class:`models.MLP` and :class:`models.SmallCNN` (with or without
BatchNorm) and plain ``nn.Sequential`` chains of Linear/Conv layers, where each layer's
output units feed the next layer's inputs through elementwise operations (BatchNorm,
ReLU, pooling, global average pooling). Each hidden layer ℓ gets one permutation Pℓ. It
permutes the layer's output rows, bias and BatchNorm parameters *and buffers*
(running_mean, running_var), and the next layer's input columns. ResNet18 (residual
streams that must share one permutation) is not supported.

The objective is Σℓ ⟨W_ℓ^A, Pℓ W_ℓ^B Pℓ₋₁ᵀ⟩ over all trainable tensors. It is maximized
by coordinate descent: one layer at a time (in a seeded random order), all others fixed,
a linear assignment problem (``scipy.optimize.linear_sum_assignment``, maximize) gives
the best Pℓ, until a full sweep no longer improves the objective.

A permutation is an index array p: unit i of the permuted model is unit p[i] of the
original.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..core.models import MLP, SmallCNN
from .connectivity import PathResult, bezier_connectivity, linear_barrier
from .similarity import l2_distance

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)
_BUFFERS = ("running_mean", "running_var")


@dataclass(frozen=True)
class PermutationSpec:
    """Which tensor axes each hidden-unit permutation acts on.

    ``axes[name]`` lists ``(axis, group)`` pairs for every state-dict entry touched by a
    permutation; ``sizes[g]`` is the number of units of group g (hidden layer g).
    ``trainable`` names the entries that enter the matching objective (parameters, not
    BN buffers).
    """

    axes: dict[str, list[tuple[int, int]]]
    sizes: list[int]
    trainable: frozenset[str] = field(default_factory=frozenset)

    @property
    def num_groups(self) -> int:
        return len(self.sizes)


def permutation_spec(model: nn.Module) -> PermutationSpec:
    """The permutation structure of an MLP, a SmallCNN or an ``nn.Sequential`` chain.

    Layers (Linear, Conv1d, Conv2d) are taken in module order; a BatchNorm layer belongs
    to the layer before it. Every layer but the last is a hidden layer with its own
    permutation group.
    """
    if not isinstance(model, (MLP, SmallCNN, nn.Sequential)):
        raise NotImplementedError(f"weight matching supports MLP, SmallCNN and nn.Sequential chains, not "
                                  f"{type(model).__name__} (residual streams need shared permutations)")
    layers: list[tuple[str, nn.Module]] = []
    norms: dict[int, tuple[str, nn.Module]] = {}
    for name, m in model.named_modules():
        if isinstance(m, _LAYERS):
            layers.append((name, m))
        elif isinstance(m, _BatchNorm):
            if not layers or len(layers) - 1 in norms:
                raise NotImplementedError(f"BatchNorm {name!r} does not follow a layer of its own")
            norms[len(layers) - 1] = (name, m)
        elif len(list(m.children())) == 0 and not isinstance(
                m, (nn.ReLU, nn.Identity, nn.Flatten, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d,
                    nn.Dropout, nn.Tanh, nn.GELU, nn.LeakyReLU)):
            raise NotImplementedError(f"module {name!r} ({type(m).__name__}) is not elementwise")
    if len(layers) < 2:
        raise ValueError("weight matching needs at least one hidden layer")
    axes: dict[str, list[tuple[int, int]]] = {}
    trainable: set[str] = set()
    sizes = []
    prefix = lambda name: f"{name}." if name else ""  # noqa: E731
    for g, (name, layer) in enumerate(layers[:-1]):
        width = layer.weight.shape[0]
        nxt_name, nxt = layers[g + 1]
        if nxt.weight.shape[1] != width:
            raise NotImplementedError(f"{nxt_name!r} has {nxt.weight.shape[1]} inputs, {name!r} {width} outputs")
        sizes.append(width)
        entries = [(f"{prefix(name)}weight", 0, True)]
        if layer.bias is not None:
            entries.append((f"{prefix(name)}bias", 0, True))
        if g in norms:
            bn_name, bn = norms[g]
            if bn.affine:
                entries += [(f"{prefix(bn_name)}weight", 0, True), (f"{prefix(bn_name)}bias", 0, True)]
            if bn.track_running_stats:
                entries += [(f"{prefix(bn_name)}{b}", 0, False) for b in _BUFFERS]
        entries.append((f"{prefix(nxt_name)}weight", 1, True))
        for key, axis, is_param in entries:
            axes.setdefault(key, []).append((axis, g))
            if is_param:
                trainable.add(key)
    return PermutationSpec(axes, sizes, frozenset(trainable))


def permute_state(state: Mapping[str, torch.Tensor], spec: PermutationSpec,
                  perms: Sequence[np.ndarray | torch.Tensor]) -> dict[str, torch.Tensor]:
    """A new state dict with every touched entry permuted (entries not in the spec copied)."""
    out = {}
    for key, value in state.items():
        v = value
        for axis, g in spec.axes.get(key, []):
            idx = torch.as_tensor(np.asarray(perms[g]), dtype=torch.long, device=value.device)
            v = v.index_select(axis, idx)
        out[key] = v.clone()
    return out


def permute_model(model: nn.Module, perms: Sequence[np.ndarray | torch.Tensor]) -> nn.Module:
    """A copy of ``model`` with its hidden units permuted; it computes the same function."""
    spec = permutation_spec(model)
    out = copy.deepcopy(model)
    out.load_state_dict(permute_state(model.state_dict(), spec, perms))
    return out


def random_permutations(model: nn.Module, seed: int = 0) -> list[np.ndarray]:
    """One seeded random permutation per hidden layer of ``model``."""
    rng = np.random.default_rng(seed)
    return [rng.permutation(n) for n in permutation_spec(model).sizes]


def _moved(t: np.ndarray, axis: int) -> np.ndarray:
    return np.moveaxis(t, axis, 0).reshape(t.shape[axis], -1)


def matching_objective(state_a: Mapping[str, torch.Tensor], state_b: Mapping[str, torch.Tensor],
                       spec: PermutationSpec, perms: Sequence[np.ndarray]) -> float:
    """Σ ⟨A, π(B)⟩ over the trainable entries touched by the spec (float64)."""
    pb = permute_state({k: state_b[k] for k in spec.trainable}, spec, perms)
    return float(sum((state_a[k].double() * pb[k].double()).sum() for k in spec.trainable))


def weight_matching(model_a: nn.Module, model_b: nn.Module, max_sweeps: int = 100, seed: int = 0,
                    return_sweeps: bool = False):
    """Permute the hidden units of ``model_b`` to match ``model_a`` (see the module docstring).

    Returns:
        ``(aligned, perms)``: a permuted copy of ``model_b`` (same function, BN buffers
        moved with their channels) and the list of index arrays, one per hidden layer;
        with ``return_sweeps`` also the number of sweeps run. ``model_b`` is unchanged.
    """
    spec = permutation_spec(model_a)
    spec_b = permutation_spec(model_b)
    if spec.sizes != spec_b.sizes or spec.axes.keys() != spec_b.axes.keys():
        raise ValueError("model_a and model_b have different architectures")
    sa = {k: v.detach().cpu().double().numpy() for k, v in model_a.state_dict().items() if k in spec.trainable}
    sb = {k: v.detach().cpu().double().numpy() for k, v in model_b.state_dict().items() if k in spec.trainable}
    perms = [np.arange(n) for n in spec.sizes]
    by_group: dict[int, list[tuple[str, int]]] = {g: [] for g in range(spec.num_groups)}
    for key in spec.trainable:
        for axis, g in spec.axes[key]:
            by_group[g].append((key, axis))
    rng = np.random.default_rng(seed)
    sweeps = 0
    for sweeps in range(1, max_sweeps + 1):
        improved = False
        for g in rng.permutation(spec.num_groups):
            n = spec.sizes[g]
            cost = np.zeros((n, n))
            for key, axis in by_group[g]:
                b = sb[key]
                for other_axis, other_g in spec.axes[key]:
                    if other_g != g:
                        b = np.take(b, perms[other_g], axis=other_axis)
                cost += _moved(sa[key], axis) @ _moved(b, axis).T
            rows, cols = linear_sum_assignment(cost, maximize=True)
            old = cost[np.arange(n), perms[g]].sum()
            new = cost[rows, cols].sum()
            if new > old + 1e-12 * max(1.0, abs(old)):
                perms[g] = cols
                improved = True
        if not improved:
            break
    aligned = permute_model(model_b, perms)
    return (aligned, perms, sweeps) if return_sweeps else (aligned, perms)


# --------------------------------------------------------------------------- barriers
def loss_barrier(profile: pd.DataFrame, column: str = "train_loss") -> float:
    """max over t of L(t) − ((1−t) L(0) + t L(1)) (Entezari et al.); > 0 is a barrier."""
    t = profile["t"].to_numpy(dtype=np.float64)
    v = profile[column].to_numpy(dtype=np.float64)
    return float(np.max(v - ((1.0 - t) * v[0] + t * v[-1])))


@dataclass(frozen=True)
class AlignedBarrier:
    """Barriers between two models before and after aligning the second to the first."""

    linear_before: PathResult
    linear_after: PathResult
    l2_before: float
    l2_after: float
    permutations: list[np.ndarray]
    aligned: nn.Module
    sweeps: int
    bezier_before: PathResult | None = None
    bezier_after: PathResult | None = None

    def record(self) -> dict[str, Any]:
        """The numbers as a flat JSON-ready dict (mc: % train error, < 0 a barrier;
        loss_barrier: nats, > 0 a barrier; worst_loss: highest train loss on the path)."""
        rec: dict[str, Any] = {"l2_before": self.l2_before, "l2_after": self.l2_after, "sweeps": self.sweeps,
                               "num_changed": int(sum((p != np.arange(len(p))).sum() for p in self.permutations))}
        for tag, res in (("linear_before", self.linear_before), ("linear_after", self.linear_after),
                         ("bezier_before", self.bezier_before), ("bezier_after", self.bezier_after)):
            if res is None:
                continue
            rec[f"{tag}_mc"] = res.mc
            rec[f"{tag}_loss_barrier"] = loss_barrier(res.profile)
            rec[f"{tag}_worst_loss"] = float(res.profile["train_loss"].max())
            rec[f"{tag}_profile"] = {c: [float(v) for v in res.profile[c]] for c in ("t", "train_loss", "train_err")}
        return rec


def aligned_barrier(model_a: nn.Module, model_b: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor,
                    num_points: int = 11, max_sweeps: int = 100, seed: int = 0,
                    bezier_kwargs: Mapping[str, Any] | None = None, batch_size: int = 1024,
                    device: str | torch.device = "auto") -> AlignedBarrier:
    """Linear barrier (and, with ``bezier_kwargs``, Bezier mc) before and after weight matching.

    The paths are evaluated by :func:`connectivity.linear_barrier` /
    :func:`connectivity.bezier_connectivity` (BN recalibrated at every point);
    ``bezier_kwargs`` are :func:`connectivity.fit_bezier`'s arguments (None: no curve).
    """
    aligned, perms, sweeps = weight_matching(model_a, model_b, max_sweeps=max_sweeps, seed=seed,
                                             return_sweeps=True)
    aligned = aligned.to(next(model_b.parameters()).device)
    kw = dict(num_points=num_points, batch_size=batch_size, device=device)
    before = linear_barrier(model_a, model_b, x_train, y_train, **kw)
    after = linear_barrier(model_a, aligned, x_train, y_train, **kw)
    bez_before = bez_after = None
    if bezier_kwargs is not None:
        bez_before = bezier_connectivity(model_a, model_b, x_train, y_train, fit_kwargs=bezier_kwargs, **kw)
        bez_after = bezier_connectivity(model_a, aligned, x_train, y_train, fit_kwargs=bezier_kwargs, **kw)
    return AlignedBarrier(before, after, l2_distance(model_a, model_b), l2_distance(model_a, aligned), perms,
                          aligned, sweeps, bez_before, bez_after)
