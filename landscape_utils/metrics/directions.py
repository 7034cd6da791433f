"""Directions through weight space and what the loss does along them.

- Parameter vectors are {name: tensor} dicts (:mod:`landscape_utils.core.params`; re-exported
  here: ``params_of``, ``flatten_params``, ``unflatten_params``, ``norm``, ``combine``).
- Filter-normalized random directions (Li et al. 2018) and the loss
  along 1D and 2D cuts around a solution.
- Radial cuts θ·(1 + s), and cuts along random directions from points at several radii
  r·θ: how far one can move before the loss rises, against the radius (the wedge model of
  Fort & Jastrzebski 2019).
- Training in a random affine subspace θ = θ₀ + P z, and the success rate against the
  subspace dimension d.

BatchNorm. Every evaluation goes through :func:`connectivity.evaluate_path`: a model with
BatchNorm gets its running statistics recomputed over the training inputs at every point
(exact pooled statistics) before it is evaluated in eval mode; a model without BatchNorm
is evaluated as it is. Directions only move the trainable parameters.
"""
from __future__ import annotations

import copy
import math
import time
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..core.data import batches
from ..core.params import Params, combine, flatten_params, norm, params_of, trainable_parameters, unflatten_params
from ..core.utils import resolve_device
from .connectivity import evaluate_path

# --------------------------------------------------------------------------- directions
def filter_normalized_direction(obj: nn.Module | Mapping[str, torch.Tensor],
                                generator: torch.Generator | None = None, eps: float = 1e-10) -> Params:
    """A Gaussian direction rescaled filter by filter to the solution (Li et al. 2018).

    For every trainable tensor θ_k of dimension > 1, each output-channel slice d_k[i]
    (index along dim 0: a row of a Linear weight, a filter of a convolution) of a
    standard Gaussian tensor is rescaled to ‖d_k[i]‖ = ‖θ_k[i]‖. Tensors of dimension
    <= 1 (biases, BatchNorm weights and biases) get a zero direction.

    Args:
        obj: a module (its parameters with ``requires_grad``) or a parameter dict.
        generator: a CPU generator for reproducible draws (the global RNG otherwise).
    Returns:
        {name: tensor} with the shapes, dtypes and devices of the parameters.
    """
    out = {}
    for k, theta in trainable_parameters(obj).items():
        theta = theta.detach()
        if theta.dim() <= 1:
            out[k] = torch.zeros_like(theta)
            continue
        d = torch.randn(theta.shape, generator=generator, dtype=torch.float64)
        t = theta.to(torch.float64).cpu().reshape(theta.shape[0], -1)
        d2 = d.reshape(theta.shape[0], -1)
        d2 = d2 * (t.norm(dim=1, keepdim=True) / (d2.norm(dim=1, keepdim=True) + eps))
        out[k] = d2.reshape(theta.shape).to(theta.device, theta.dtype)
    return out


def random_unit_direction(obj: nn.Module | Mapping[str, torch.Tensor],
                          generator: torch.Generator | None = None) -> Params:
    """An isotropic Gaussian direction over all trainable parameters, of unit total norm."""
    params = trainable_parameters(obj)
    raw = {k: torch.randn(v.shape, generator=generator, dtype=torch.float64) for k, v in params.items()}
    scale = 1.0 / norm(raw)
    return {k: (raw[k] * scale).to(v.device, v.dtype) for k, v in params.items()}


# --------------------------------------------------------------------------- cuts
def evaluate_points(template: nn.Module, points: Sequence[Mapping[str, torch.Tensor]],
                    x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor | None = None,
                    y_test: torch.Tensor | None = None, batch_size: int = 1024,
                    device: str | torch.device = "auto") -> pd.DataFrame:
    """Loss and error at a list of parameter points (BN recalibrated at each one).

    Returns evaluate_path's columns without ``t``, plus ``index`` (position in ``points``):
    train_loss, train_err (%), test_loss, test_err (nan without a test split).
    """
    if len(points) == 0:
        return pd.DataFrame(columns=["index", "train_loss", "train_err", "test_loss", "test_err"])
    profile = evaluate_path(template, lambda t: points[int(round(t))], list(range(len(points))), x_train,
                            y_train, x_test, y_test, batch_size=batch_size, device=device)
    return profile.rename(columns={"t": "index"}).astype({"index": int})


def loss_along_direction(model: nn.Module, direction: Mapping[str, torch.Tensor], alphas: Sequence[float],
                         x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor | None = None,
                         y_test: torch.Tensor | None = None, batch_size: int = 1024,
                         device: str | torch.device = "auto") -> pd.DataFrame:
    """A 1D cut θ + α d through the trained ``model`` (BN recalibrated at every α).

    Returns columns alpha, train_loss, train_err, test_loss, test_err; one row per α.
    """
    theta = params_of(model)
    profile = evaluate_path(model, lambda a: combine(theta, (a, direction)), [float(a) for a in alphas],
                            x_train, y_train, x_test, y_test, batch_size=batch_size, device=device)
    return profile.rename(columns={"t": "alpha"})


def loss_surface_2d(model: nn.Module, d1: Mapping[str, torch.Tensor], d2: Mapping[str, torch.Tensor],
                    alphas: Sequence[float], betas: Sequence[float], x_train: torch.Tensor,
                    y_train: torch.Tensor, batch_size: int = 1024,
                    device: str | torch.device = "auto") -> pd.DataFrame:
    """A 2D cut θ + α d1 + β d2 (BN recalibrated at every point).

    Returns a tidy table with columns alpha, beta, train_loss, train_err; len(alphas) ×
    len(betas) rows.
    """
    theta = params_of(model)
    frames = []
    for b in betas:
        prof = evaluate_path(model, lambda a, b=float(b): combine(theta, (a, d1), (b, d2)),
                             [float(a) for a in alphas], x_train, y_train, batch_size=batch_size, device=device)
        frames.append(pd.DataFrame({"alpha": prof["t"], "beta": float(b), "train_loss": prof["train_loss"],
                                    "train_err": prof["train_err"]}))
    return pd.concat(frames, ignore_index=True)


def radial_profile(model: nn.Module, scales: Sequence[float], x_train: torch.Tensor, y_train: torch.Tensor,
                   x_test: torch.Tensor | None = None, y_test: torch.Tensor | None = None,
                   batch_size: int = 1024, device: str | torch.device = "auto") -> pd.DataFrame:
    """The radial cut θ·(1 + s): s = −1 is the origin, s = 0 the solution.

    All trainable parameters (biases and BN affine parameters too) are scaled. Returns
    columns s, norm (‖θ·(1+s)‖), train_loss, train_err, test_loss, test_err.
    """
    theta = params_of(model)
    base = norm(theta)
    profile = evaluate_path(model, lambda s: {k: v * (1.0 + s) for k, v in theta.items()},
                            [float(s) for s in scales], x_train, y_train, x_test, y_test,
                            batch_size=batch_size, device=device)
    profile = profile.rename(columns={"t": "s"})
    profile.insert(1, "norm", (1.0 + profile["s"]).abs() * base)
    return profile


def wedge_profiles(model: nn.Module, radii: Sequence[float], distances: Sequence[float], x_train: torch.Tensor,
                   y_train: torch.Tensor, num_directions: int = 3, seed: int = 0, batch_size: int = 1024,
                   device: str | torch.device = "auto") -> pd.DataFrame:
    """Loss along random directions from points at several radii (the wedge model).

    For each radius factor r the centre is c_r = r·θ (on the ray from the origin through
    the solution), and the loss is measured at c_r + δ·u for every distance δ along
    ``num_directions`` isotropic unit directions u over all trainable parameters. The same
    directions are used at every radius (drawn from ``seed``). BN is recalibrated at
    every point.

    Returns:
        A tidy table with columns radius (r), radius_norm (r·‖θ‖), direction, distance
        (δ, in parameter-space units), train_loss, train_err.
    """
    theta = params_of(model)
    base = norm(theta)
    gen = torch.Generator().manual_seed(int(seed))
    dirs = [random_unit_direction(theta, gen) for _ in range(num_directions)]
    frames = []
    for r in radii:
        centre = {k: v * float(r) for k, v in theta.items()}
        for j, u in enumerate(dirs):
            prof = evaluate_path(model, lambda dlt, c=centre, u=u: combine(c, (dlt, u)),
                                 [float(d) for d in distances], x_train, y_train, batch_size=batch_size,
                                 device=device)
            frames.append(pd.DataFrame({"radius": float(r), "radius_norm": float(r) * base, "direction": j,
                                        "distance": prof["t"], "train_loss": prof["train_loss"],
                                        "train_err": prof["train_err"]}))
    return pd.concat(frames, ignore_index=True)


def escape_distance(distances: Sequence[float], values: Sequence[float], threshold: float) -> float:
    """How far along a cut the value stays below ``threshold``.

    Args:
        distances: increasing distances, shape (m,), usually starting at 0.
        values: the loss (or error) at those distances, shape (m,).
    Returns:
        The first distance at which ``values`` reaches ``threshold``, linearly
        interpolated between the two grid points around the crossing; 0 when the first
        value is already at or above it; ``inf`` when the cut never reaches it.
    """
    d = np.asarray(distances, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if d.shape != v.shape or d.ndim != 1 or d.size == 0:
        raise ValueError("distances and values must be 1-D of equal length")
    if np.any(np.diff(d) <= 0):
        raise ValueError("distances must be strictly increasing")
    above = np.flatnonzero(v >= threshold)
    if above.size == 0:
        return float("inf")
    i = int(above[0])
    if i == 0:
        return float(d[0]) if d[0] > 0 else 0.0
    frac = (threshold - v[i - 1]) / (v[i] - v[i - 1])
    return float(d[i - 1] + frac * (d[i] - d[i - 1]))


def escape_table(profiles: pd.DataFrame, threshold: float | Mapping[float, float], metric: str = "train_loss",
                 by: Sequence[str] = ("radius", "direction")) -> pd.DataFrame:
    """:func:`escape_distance` for every cut of a tidy profile table (e.g. wedge_profiles).

    ``threshold`` is one number, or a mapping from the first ``by`` column's value to its
    own threshold. Returns the ``by`` columns, ``escape`` (inf when never reached) and
    ``censored`` (True when never reached within the measured distances).
    """
    rows = []
    for keys, g in profiles.groupby(list(by), sort=True):
        keys = keys if isinstance(keys, tuple) else (keys,)
        thr = threshold[keys[0]] if isinstance(threshold, Mapping) else float(threshold)
        g = g.sort_values("distance")
        e = escape_distance(g["distance"].to_numpy(), g[metric].to_numpy(), thr)
        rows.append({**dict(zip(by, keys)), "escape": e, "censored": not math.isfinite(e)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- random subspaces
def random_projection(num_params: int, dim: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A fixed random D × d matrix P with Gaussian entries and unit-norm columns."""
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    P = torch.randn(num_params, dim, generator=generator)
    return P / P.norm(dim=0, keepdim=True)


def train_in_subspace(model: nn.Module, dim: int, x_train: torch.Tensor, y_train: torch.Tensor,
                      x_test: torch.Tensor | None = None, y_test: torch.Tensor | None = None,
                      num_epochs: int = 10, lr: float = 0.01, batch_size: int = 128, seed: int = 0,
                      batch_size_eval: int = 1024, device: str | torch.device = "auto") -> dict[str, float]:
    """Train only z in θ = θ₀ + P z, a random d-dimensional affine subspace (Li et al. 2018).

    θ₀ are ``model``'s current trainable parameters (pass a model at initialization), P is
    :func:`random_projection` (D × ``dim``, drawn from ``seed``) and z starts at 0. Adam
    with ``lr`` minimizes the minibatch cross-entropy of
    ``functional_call(model, θ₀ + P z, x)`` (the model in train mode; its buffers, e.g.
    BN statistics, come from ``model``'s copy and are recomputed before evaluation).
    ``seed`` also fixes the data order. ``model`` is not modified.

    Returns:
        dim, num_params (D), train_loss, train_acc, test_loss, test_acc (nan without a test
        split; eval mode, BN recalibrated), z_norm, seconds.
    """
    t0 = time.perf_counter()
    device = resolve_device(device)
    template = copy.deepcopy(model).to(device).train()
    theta0 = params_of(template)
    flat0 = flatten_params(theta0)
    gen = torch.Generator().manual_seed(int(seed))
    P = random_projection(flat0.numel(), int(dim), gen).to(device, flat0.dtype)
    z = torch.zeros(int(dim), device=device, dtype=flat0.dtype, requires_grad=True)
    opt = torch.optim.Adam([z], lr=lr)
    x_train, y_train = x_train.to(device), y_train.to(device)
    data_gen = torch.Generator().manual_seed(int(seed) + 1)
    for _ in range(num_epochs):
        for xb, yb in batches(x_train, y_train, batch_size, generator=data_gen, drop_last=True):
            params = unflatten_params(flat0 + P @ z, theta0)
            loss = F.cross_entropy(functional_call(template, params, (xb,)), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        final = unflatten_params(flat0 + P @ z, theta0)
    prof = evaluate_points(template, [final], x_train, y_train, x_test, y_test, batch_size=batch_size_eval,
                           device=device).iloc[0]
    return {"dim": int(dim), "num_params": int(flat0.numel()), "train_loss": float(prof.train_loss),
            "train_acc": 1.0 - float(prof.train_err) / 100.0, "test_loss": float(prof.test_loss),
            "test_acc": 1.0 - float(prof.test_err) / 100.0, "z_norm": float(z.detach().norm()),
            "seconds": time.perf_counter() - t0}


def subspace_sweep(model: nn.Module, dims: Sequence[int], x_train: torch.Tensor, y_train: torch.Tensor,
                   x_test: torch.Tensor | None = None, y_test: torch.Tensor | None = None,
                   seeds: Sequence[int] = (0,), target_acc: float = 0.9, **train_kwargs) -> pd.DataFrame:
    """:func:`train_in_subspace` for every dimension and seed (a new P per seed).

    Returns one row per (dim, seed) with train_in_subspace's numbers and ``success``
    (train_acc >= target_acc). Use :func:`success_rate` for the curve.
    """
    rows = []
    for d in dims:
        for s in seeds:
            rec = train_in_subspace(model, int(d), x_train, y_train, x_test, y_test, seed=int(s), **train_kwargs)
            rows.append({"seed": int(s), **rec, "success": rec["train_acc"] >= target_acc})
    return pd.DataFrame(rows)


def success_rate(sweep: pd.DataFrame) -> pd.DataFrame:
    """Per dimension: success rate, mean and spread of train_acc, number of seeds."""
    g = sweep.groupby("dim")
    return pd.DataFrame({"success_rate": g["success"].mean(), "train_acc": g["train_acc"].mean(),
                         "train_acc_std": g["train_acc"].std(ddof=1), "n": g.size()}).reset_index()
