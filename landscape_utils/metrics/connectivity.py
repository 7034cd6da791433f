"""Mode connectivity: Bezier curves between trained models, path evaluation with
BatchNorm recalibration, linear barriers and MLI; what the profiles along those paths say
(the paper's mc metric, bumps) is :mod:`landscape_utils.metrics.profiles`.

Defined in the Methods appendix (book/07_methods.py), sections "Mode connectivity"
(methods-mc), "Bezier curves" (methods-bezier), "BatchNorm recalibration" (methods-bn) and
"Monotonic linear interpolation" (methods-mli).
"""
from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm
from tqdm.auto import tqdm

from ..core.data import batches
from ..core.models import evaluate
from ..core.params import Params, matching_parameters
from ..core.utils import resolve_device
from .profiles import MLIResult, mli_from_profile, mode_connectivity
from .similarity import l2_distance, model_cka

# A path through weight space: t in [0, 1] -> {parameter name: tensor}.
PathFn = Callable[[float], Mapping[str, torch.Tensor]]
PROFILE_COLUMNS = ("t", "train_loss", "train_err", "test_loss", "test_err")


# --------------------------------------------------------------------------- curves
class BezierCurve:
    """A Bezier curve through weight space, φ(t) = Σ_k C(d, k) (1−t)^(d−k) t^k P_k.

    The control points are P_0 = w₁ (fixed), the ``num_bends`` trainable bends and
    P_d = w₂ (fixed), d = num_bends + 1. ``num_bends=1`` is the paper's quadratic curve
    φ(t) = (1−t)² w₁ + 2t(1−t) θ + t² w₂; ``num_bends=0`` is the straight line.
    Each control point is a {parameter name: tensor} dict over the trainable parameters.
    Bends start evenly spaced on the segment, so the single bend starts at (w₁ + w₂)/2.
    ``point(t)`` (or calling the curve) returns w₁ and w₂ themselves (copies) at t = 0, 1.
    """

    def __init__(self, w1: Mapping[str, torch.Tensor], w2: Mapping[str, torch.Tensor],
                 num_bends: int = 1, bends: Sequence[Mapping[str, torch.Tensor]] | None = None):
        if list(w1) != list(w2) or any(w1[k].shape != w2[k].shape for k in w1):
            raise ValueError("w1 and w2 must have the same parameter names and shapes")
        self.w1: Params = {k: v.detach().clone() for k, v in w1.items()}
        self.w2: Params = {k: v.detach().clone() for k, v in w2.items()}
        d = num_bends + 1
        if bends is None:
            bends = [{k: ((d - j) * self.w1[k] + j * self.w2[k]) / d for k in self.w1} for j in range(1, d)]
        if len(bends) != num_bends:
            raise ValueError(f"got {len(bends)} bends for num_bends={num_bends}")
        self.bends: list[Params] = [{k: b[k].detach().clone() for k in self.w1} for b in bends]
        self.history: list[dict[str, float]] = []  # per-epoch fitting record, filled by fit_bezier

    @classmethod
    def from_models(cls, model_a: nn.Module | Mapping[str, torch.Tensor],
                    model_b: nn.Module | Mapping[str, torch.Tensor], num_bends: int = 1,
                    device: str | torch.device | None = None) -> "BezierCurve":
        """A curve between the trainable parameters of two models (modules or state dicts)."""
        pa, pb = matching_parameters(model_a, model_b)
        if device is not None:
            device = resolve_device(device)
            pa = {k: v.to(device) for k, v in pa.items()}
            pb = {k: v.to(device) for k, v in pb.items()}
        return cls(pa, pb, num_bends)

    @property
    def names(self) -> list[str]:
        return list(self.w1)

    @property
    def num_bends(self) -> int:
        return len(self.bends)

    @property
    def theta(self) -> Params:
        """The middle control point of a quadratic curve."""
        if self.num_bends != 1:
            raise AttributeError(f"theta is defined for num_bends=1, this curve has {self.num_bends}")
        return self.bends[0]

    def parameters(self) -> list[torch.Tensor]:
        """The trainable tensors (the bends), for an optimizer."""
        return [v for b in self.bends for v in b.values()]

    def coefficients(self, t: float) -> list[float]:
        """Bernstein weights of the control points w₁, bends..., w₂ at t."""
        d = self.num_bends + 1
        return [math.comb(d, k) * (1.0 - t) ** (d - k) * t ** k for k in range(d + 1)]

    def point(self, t: float) -> Params:
        """φ(t) as {parameter name: tensor}; differentiable in the bends."""
        t = float(t)
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"t must be in [0, 1], got {t}")
        if t == 0.0:
            return {k: v.clone() for k, v in self.w1.items()}
        if t == 1.0:
            return {k: v.clone() for k, v in self.w2.items()}
        controls = [self.w1, *self.bends, self.w2]
        coeffs = self.coefficients(t)
        return {k: sum(c * p[k] for c, p in zip(coeffs, controls)) for k in self.w1}

    __call__ = point

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors and lists, for ``torch.save``; reload with :meth:`from_state_dict`."""
        return {"w1": self.w1, "w2": self.w2, "bends": self.bends, "history": self.history}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> "BezierCurve":
        curve = cls(state["w1"], state["w2"], len(state["bends"]), state["bends"])
        curve.history = list(state.get("history", []))
        return curve


def linear_path(model_a: nn.Module | Mapping[str, torch.Tensor],
                model_b: nn.Module | Mapping[str, torch.Tensor]) -> BezierCurve:
    """The straight line (1−t) w₁ + t w₂ over trainable parameters (a curve without bends)."""
    return BezierCurve.from_models(model_a, model_b, num_bends=0)


def bezier_lr_factor(frac: float) -> float:
    """Learning-rate factor at fraction ``frac`` of training (Garipov et al.'s schedule).

    1 up to 50%, then linear down to 0.01 at 90%, then 0.01.
    """
    if frac <= 0.5:
        return 1.0
    if frac <= 0.9:
        return 1.0 - (frac - 0.5) / 0.4 * (1.0 - 0.01)
    return 0.01


def draw_t(generator: torch.Generator) -> float:
    """One t ~ U(0, 1) from ``generator``: the point of a curve a fitting step trains."""
    return float(torch.rand((), generator=generator))


def fit_by_sgd(tensors: Sequence[torch.Tensor], objective: Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor]]],
               x_train: torch.Tensor, y_train: torch.Tensor, *, num_epochs: int, lr: float, batch_size: int,
               momentum: float = 0.9, seed: int = 0, device: str | torch.device = "cpu",
               draw: Callable[[torch.Generator], Any] | None = None,
               lr_factor: Callable[[float], float] | None = bezier_lr_factor,
               project: Callable[[], None] | None = None,
               end_epoch: Callable[[], dict[str, float]] | None = None,
               progress: str = "") -> list[dict[str, Any]]:
    """The one SGD loop of the curve, simplex and tunnel fits; trains ``tensors`` in place.

    Per epoch the training set is shuffled into minibatches (the last incomplete one
    dropped). Per minibatch: ``draw(generator)`` picks the step's random choice (t on a
    curve, a sub-simplex and its weights; None without ``draw``), the lr is set to
    ``lr * lr_factor(step / total_steps)`` (constant without ``lr_factor``), then
    ``objective(xb, yb, drawn) -> (objective, stats)`` is computed, its sum
    back-propagated, ``project()`` may change the gradients, and SGD with ``momentum``
    (optimizer weight decay 0: penalties belong in the objective) takes a step.

    One ``torch.Generator`` seeded with ``seed`` gives the data order and the draws; the
    global RNG (dropout) is forked, seeded with ``seed`` and restored afterwards.

    Returns one record per epoch: ``epoch``, the mean of every stat over the epoch's steps
    (a float for a scalar stat, a float64 tensor for a stat of shape (S,), e.g. S curves
    fitted together), ``lr`` (of the epoch's last step) and whatever ``end_epoch()`` returns.
    """
    device = resolve_device(device)
    steps_per_epoch = x_train.shape[0] // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size={batch_size} exceeds the {x_train.shape[0]} training examples")
    opt = torch.optim.SGD(list(tensors), lr=lr, momentum=momentum, weight_decay=0.0)
    gen = torch.Generator().manual_seed(int(seed))
    total_steps, step, step_lr = num_epochs * steps_per_epoch, 0, lr
    x_train, y_train = x_train.to(device), y_train.to(device)
    history: list[dict[str, Any]] = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(int(seed))
        for epoch in tqdm(range(num_epochs), desc=progress, disable=not progress):
            sums: dict[str, Any] = {}
            for xb, yb in batches(x_train, y_train, batch_size, generator=gen, drop_last=True):
                drawn = draw(gen) if draw is not None else None
                step_lr = lr * (lr_factor(step / total_steps) if lr_factor is not None else 1.0)
                for group in opt.param_groups:
                    group["lr"] = step_lr
                value, stats = objective(xb, yb, drawn)
                opt.zero_grad(set_to_none=True)
                value.sum().backward()
                if project is not None:
                    project()
                opt.step()
                for name, v in stats.items():
                    sums[name] = sums.get(name, 0.0) + v.detach().double()
                step += 1
            means = {name: v / steps_per_epoch for name, v in sums.items()}
            history.append({"epoch": epoch, **{name: float(v) if v.dim() == 0 else v for name, v in means.items()},
                            "lr": step_lr, **(end_epoch() if end_epoch is not None else {})})
    return history


def fit_bezier(model_a: nn.Module, model_b: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor,
               num_epochs: int = 50, lr: float = 0.01, batch_size: int = 128, weight_decay: float = 5e-4,
               momentum: float = 0.9, seed: int = 0, num_bends: int = 1,
               device: str | torch.device = "auto", progress: bool = False) -> BezierCurve:
    """Fit the bend(s) of a Bezier curve between two trained models (Methods appendix, methods-bezier).

    Each minibatch (shuffled, the last incomplete one dropped) draws one t ~ U(0, 1) and
    takes an SGD step on CE(f(x; φ(t))) + ½·weight_decay·‖φ(t)‖² with respect to the
    bends; the optimizer's own weight decay is 0. The lr factor follows
    :func:`bezier_lr_factor`, evaluated per step. The network is run with
    ``torch.func.functional_call`` on one copy of ``model_a`` (its non-trainable
    parameters and buffers are model_a's).

    BatchNorm: the template is in train mode, so BN normalizes with each minibatch's own
    statistics at φ(t); its running statistics are meaningless and are recomputed at every
    evaluated t by :func:`evaluate_path`. Dropout, if any, is active.

    ``seed`` fixes the data order, the t draws and (through a forked global RNG that is
    restored afterwards) dropout. ``model_a`` and ``model_b`` are not modified.

    Returns:
        The fitted :class:`BezierCurve` on ``device``, its ``history`` holding per epoch
        the mean training objective (``loss``: CE, ``objective``: CE + penalty) and ``lr``.
    """
    device = resolve_device(device)
    curve = BezierCurve.from_models(model_a, model_b, num_bends, device=device)
    if x_train.shape[0] // batch_size == 0:
        raise ValueError(f"batch_size={batch_size} exceeds the {x_train.shape[0]} training examples")
    if curve.num_bends == 0:
        return curve
    template = copy.deepcopy(model_a).to(device).train()
    bends = curve.parameters()
    for v in bends:
        v.requires_grad_(True)

    def objective(xb: torch.Tensor, yb: torch.Tensor, t: float):
        params = curve.point(t)
        ce = F.cross_entropy(functional_call(template, params, (xb,)), yb)
        penalty = sum(p.pow(2).sum() for p in params.values())
        value = ce + 0.5 * weight_decay * penalty
        return value, {"loss": ce, "objective": value}

    curve.history += fit_by_sgd(bends, objective, x_train, y_train, num_epochs=num_epochs, lr=lr,
                                batch_size=batch_size, momentum=momentum, seed=seed, device=device,
                                draw=draw_t,
                                progress="fit_bezier" if progress else "")
    for v in bends:
        v.requires_grad_(False)
    return curve


def continue_training(model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor, *, num_epochs: int,
                      lr: float, batch_size: int, weight_decay: float = 5e-4, momentum: float = 0.9,
                      seed: int = 0, device: str | torch.device = "auto") -> nn.Module:
    """A copy of ``model`` trained on with exactly the recipe and budget of a curve fit.

    The control for a positive mc: a curve fitted for ``num_epochs`` between two endpoints
    has had that many more steps than the endpoints themselves. This trains one endpoint
    for the same steps (``num_epochs`` × ⌊n / batch_size⌋), on the same objective
    CE + ½·weight_decay·‖θ‖², with the same lr schedule (:func:`bezier_lr_factor`),
    momentum, data order and seed as :func:`fit_bezier` (both run :func:`fit_by_sgd`), so
    a curve that still beats the continued endpoints beats them at an equal budget.

    x_train: (n, *in_shape), y_train: (n,). BatchNorm layers train in train mode; their
    running statistics are whatever the steps leave (evaluate with recalibration, as a
    path is). ``model`` is not modified.
    """
    device = resolve_device(device)
    out = copy.deepcopy(model).to(device).train()
    params = {k: p for k, p in out.named_parameters() if p.requires_grad}

    def objective(xb: torch.Tensor, yb: torch.Tensor, _drawn: Any):
        ce = F.cross_entropy(out(xb), yb)
        value = ce + 0.5 * weight_decay * sum(p.pow(2).sum() for p in params.values())
        return value, {"loss": ce, "objective": value}

    fit_by_sgd(list(params.values()), objective, x_train, y_train, num_epochs=num_epochs, lr=lr,
               batch_size=batch_size, momentum=momentum, seed=seed, device=device)
    return out.eval()


# --------------------------------------------------------------------------- evaluation
def _split_for_bn(x: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Batches of ``x``; a trailing single example joins the previous batch (BN needs > 1)."""
    chunks = list(torch.split(x, batch_size))
    if len(chunks) > 1 and chunks[-1].shape[0] == 1:
        chunks[-2:] = [torch.cat(chunks[-2:])]
    return chunks


#: Values (samples × channels × positions) of a BatchNorm input whose moments
#: :func:`recalibrate_bn` computes at once in float64 (2 MiB).
_MOMENT_CHUNK = 2**18


@torch.no_grad()
def recalibrate_bn(model: nn.Module, x: torch.Tensor, batch_size: int = 1024,
                   method: str = "exact") -> nn.Module:
    """Reset and recompute the running statistics of every BatchNorm layer over ``x``.

    One pass over ``x`` (n, ...) in batches of ``batch_size`` (in order) with the BN
    layers in train mode and every other module in eval mode (dropout off), so each BN
    layer sees the same inputs as in training and downstream layers see batch-normalized
    activations. Then:

    - ``method="exact"`` (default): ``running_mean`` and ``running_var`` become the exact
      per-channel mean and unbiased variance of each BN layer's inputs pooled over the
      whole pass (accumulated in float64 with Chan et al.'s pairwise update, over chunks of
      a few samples of each batch).
    - ``method="cumulative"``: ``momentum=None``, i.e. the cumulative average of the
      per-batch statistics, as ``torch.optim.swa_utils.update_bn`` computes (equal to
      "exact" for the mean when all batches have the same size; the variance then misses
      the spread between batch means).

    Momenta and train/eval modes are restored. Layers with ``track_running_stats=False``
    are left alone. Returns ``model``.
    """
    if method not in ("exact", "cumulative"):
        raise ValueError(f"unknown method {method!r}; choose 'exact' or 'cumulative'")
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not bns:
        return model
    modes = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for m in bns}
    stats: dict[nn.Module, list] = {m: [0, 0.0, 0.0] for m in bns}  # count, mean, M2

    def accumulate(module, inputs):
        h = inputs[0].detach()
        st = stats[module]
        # a few samples at a time: a whole batch as float64 is tens of MB, and allocating and
        # freeing it per layer and batch cost more than twice the forward pass itself
        for part in h.split(max(1, _MOMENT_CHUNK // max(1, h[0].numel()))):
            part = part.transpose(0, 1).reshape(h.shape[1], -1).to(torch.float64, copy=True)  # channels × values
            nb = part.shape[1]
            mean_b = part.mean(1)
            m2_b = part.sub_(mean_b[:, None]).pow_(2).sum(1)  # in place: part is our own copy
            count = st[0] + nb
            delta = mean_b - st[1]
            st[1] = st[1] + delta * (nb / count)
            st[2] = st[2] + m2_b + delta.pow(2) * (st[0] * nb / count)
            st[0] = count

    hooks = [m.register_forward_pre_hook(accumulate) for m in bns] if method == "exact" else []
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
        model.eval()
        for m in bns:
            m.train()
        for xb in _split_for_bn(x, batch_size):
            model(xb)
        if method == "exact":
            for m in bns:
                count, mean, m2 = stats[m]
                m.running_mean.copy_(mean)
                m.running_var.copy_(m2 / max(count - 1, 1))
    finally:
        for h in hooks:
            h.remove()
        for m, momentum in momenta.items():
            m.momentum = momentum
        for m, mode in modes.items():
            m.training = mode
    return model


@torch.no_grad()
def _load_point(model: nn.Module, point: Mapping[str, torch.Tensor]) -> None:
    """Copy a path point into ``model``'s parameters.

    Every trainable parameter must be given; entries naming buffers are ignored
    (BN statistics are recomputed), unknown names are an error.
    """
    params = dict(model.named_parameters())
    buffers = {k for k, _ in model.named_buffers()}
    unknown = [k for k in point if k not in params and k not in buffers]
    missing = [k for k, p in params.items() if p.requires_grad and k not in point]
    if unknown or missing:
        raise KeyError(f"path point does not match the template: unknown {unknown[:5]}, missing {missing[:5]}")
    for k, v in point.items():
        if k in params:
            params[k].copy_(v)


def evaluate_path(template_model: nn.Module, path: PathFn | BezierCurve, ts: Sequence[float] | int,
                  x_train: torch.Tensor, y_train: torch.Tensor,
                  x_test: torch.Tensor | None = None, y_test: torch.Tensor | None = None,
                  batch_size: int = 1024, recalibrate: bool = True, device: str | torch.device = "auto",
                  progress: bool = False) -> pd.DataFrame:
    """Loss and 0-1 error along a path through weight space.

    Args:
        template_model: the architecture; one copy of it is loaded with each point (its
            non-trainable parameters and non-BN buffers are used as they are).
        path: a :class:`BezierCurve` (also the straight line of :func:`linear_path`) or
            any callable t -> {parameter name: tensor} covering all trainable parameters.
        ts: the values of t, or an int m for m evenly spaced values in [0, 1].
        x_test, y_test: optional; the test columns are nan without them.

    At every t the BatchNorm running statistics are recomputed over the whole training
    set (:func:`recalibrate_bn`, exact pooled statistics) before evaluating in eval mode;
    ``recalibrate=False`` skips that (the template's statistics are then used as is).

    Returns:
        A DataFrame with columns t, train_loss, train_err, test_loss, test_err (mean
        cross-entropy; error in percent), one row per t.
    """
    device = resolve_device(device)
    if isinstance(ts, (int, np.integer)):
        ts = np.linspace(0.0, 1.0, int(ts))
    model = copy.deepcopy(template_model).to(device)
    has_bn = any(isinstance(m, _BatchNorm) and m.track_running_stats for m in model.modules())
    x_train, y_train = x_train.to(device), y_train.to(device)
    with_test = x_test is not None and y_test is not None
    if with_test:
        x_test, y_test = x_test.to(device), y_test.to(device)
    rows = []
    for t in tqdm(ts, desc="evaluate_path", disable=not progress):
        with torch.no_grad():
            _load_point(model, path(float(t)))
        if recalibrate and has_bn:
            recalibrate_bn(model, x_train, batch_size)
        train_loss, train_acc = evaluate(model, x_train, y_train, batch_size)
        test_loss, test_acc = evaluate(model, x_test, y_test, batch_size) if with_test else (np.nan, np.nan)
        rows.append((float(t), train_loss, 100.0 * (1.0 - train_acc), test_loss, 100.0 * (1.0 - test_acc)))
    return pd.DataFrame(rows, columns=list(PROFILE_COLUMNS))


@dataclass(frozen=True)
class PathResult:
    """The mc metric of one path, with the profile it was computed from."""

    mc: float                   # ½(L(0) + L(1)) − L(t*), L = train_err in percent
    t_star: float               # the t of the extreme point (the argmax may be an endpoint)
    profile: pd.DataFrame       # evaluate_path's columns
    curve: BezierCurve | None = None  # the fitted curve, for Bezier paths


def path_result(profile: pd.DataFrame, curve: BezierCurve | None = None) -> PathResult:
    """Apply :func:`~landscape_utils.metrics.profiles.mode_connectivity` to a profile's ``train_err`` column."""
    mc, idx = mode_connectivity(profile["train_err"].to_numpy())
    return PathResult(mc, float(profile["t"].iloc[idx]), profile, curve)


def linear_barrier(model_a: nn.Module, model_b: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor,
                   x_test: torch.Tensor | None = None, y_test: torch.Tensor | None = None,
                   num_points: int = 11, batch_size: int = 1024, device: str | torch.device = "auto",
                   progress: bool = False) -> PathResult:
    """mc on the straight line (1−α) w₁ + α w₂ (Frankle et al.), BN recalibrated at every α."""
    profile = evaluate_path(model_a, linear_path(model_a, model_b), num_points, x_train, y_train,
                            x_test, y_test, batch_size=batch_size, device=device, progress=progress)
    return path_result(profile)


def bezier_connectivity(model_a: nn.Module, model_b: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor,
                        x_test: torch.Tensor | None = None, y_test: torch.Tensor | None = None,
                        num_points: int = 11, batch_size: int = 1024,
                        fit_kwargs: Mapping[str, Any] | None = None,
                        device: str | torch.device = "auto", progress: bool = False) -> PathResult:
    """Fit a Bezier curve (:func:`fit_bezier` with ``fit_kwargs``) and return its mc.

    ``batch_size`` is the evaluation batch size; the fitting one goes in ``fit_kwargs``.
    """
    curve = fit_bezier(model_a, model_b, x_train, y_train, device=device, progress=progress,
                       **dict(fit_kwargs or {}))
    profile = evaluate_path(model_a, curve, num_points, x_train, y_train, x_test, y_test,
                            batch_size=batch_size, device=device, progress=progress)
    return path_result(profile, curve)


# --------------------------------------------------------------------------- MLI
def mli(model_init: nn.Module, model_final: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor,
        x_test: torch.Tensor | None = None, y_test: torch.Tensor | None = None, num_points: int = 21,
        eps: float = 1e-3, metric: str = "train_loss", batch_size: int = 1024,
        device: str | torch.device = "auto", progress: bool = False) -> MLIResult:
    """Evaluate the straight line from ``model_init`` to ``model_final`` (BN recalibrated at
    every α) and measure its largest bump in ``metric``; see :func:`~landscape_utils.metrics.profiles.mli_from_profile`."""
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    profile = evaluate_path(model_final, linear_path(model_init, model_final), num_points, x_train, y_train,
                            x_test, y_test, batch_size=batch_size, device=device, progress=progress)
    return mli_from_profile(profile, eps, metric)


# --------------------------------------------------------------------------- seed pairs
def select_pairs(num_models: int, max_pairs: int | None = None, seed: int = 0) -> list[tuple[int, int]]:
    """Pairs (i, j), i < j, of ``num_models`` models: all of them when they are at most
    ``max_pairs``, else a seeded random choice of ``max_pairs``; sorted either way."""
    pairs = list(itertools.combinations(range(num_models), 2))
    if max_pairs is None or max_pairs >= len(pairs):
        return pairs
    if max_pairs < 1:
        raise ValueError(f"max_pairs must be >= 1, got {max_pairs}")
    chosen = np.random.default_rng(seed).choice(len(pairs), size=max_pairs, replace=False)
    return [pairs[k] for k in sorted(chosen)]


@dataclass(frozen=True)
class PairMetrics:
    """Pairwise metrics over seed pairs, with their mean and spread."""

    per_pair: pd.DataFrame              # columns i, j and one per metric
    summary: dict[str, float]           # <metric> (mean), <metric>_std (ddof=1, nan for 1 pair), n_pairs
    paths: dict[tuple[int, int, str], PathResult]  # (i, j, "bezier" | "linear") -> its profile


def pair_metrics(models: Sequence[nn.Module], x_train: torch.Tensor, y_train: torch.Tensor,
                 x_test: torch.Tensor | None = None, y_test: torch.Tensor | None = None, *,
                 max_pairs: int | None = 10, pair_seed: int = 0, bezier: bool = True, linear: bool = False,
                 l2: bool = True, cka: bool = False, x_cka: torch.Tensor | None = None,
                 cka_kwargs: Mapping[str, Any] | None = None, fit_kwargs: Mapping[str, Any] | None = None,
                 num_points: int = 11, batch_size: int = 1024, device: str | torch.device = "auto",
                 progress: bool = False) -> PairMetrics:
    """Global metrics averaged over up to ``max_pairs`` pairs of models (different seeds).

    Per pair (chosen by :func:`select_pairs` with ``pair_seed``): ``mc``/``t_star`` from a
    fitted Bezier curve (``bezier``, with ``fit_kwargs``), ``mc_linear``/``t_star_linear``
    from the straight line (``linear``), ``l2`` (:func:`similarity.l2_distance`) and ``cka``
    (:func:`similarity.model_cka` on ``x_cka``, default ``x_train``, with ``cka_kwargs``).
    The summary holds the mean and the standard deviation over pairs of every metric
    except the t_star columns.
    """
    if len(models) < 2:
        raise ValueError("pair metrics need at least 2 models")
    rows, paths = [], {}
    for i, j in tqdm(select_pairs(len(models), max_pairs, pair_seed), desc="pairs", disable=not progress):
        a, b = models[i], models[j]
        row: dict[str, float] = {"i": i, "j": j}
        if bezier:
            res = bezier_connectivity(a, b, x_train, y_train, x_test, y_test, num_points=num_points,
                                      batch_size=batch_size, fit_kwargs=fit_kwargs, device=device)
            row.update(mc=res.mc, t_star=res.t_star)
            paths[(i, j, "bezier")] = res
        if linear:
            res = linear_barrier(a, b, x_train, y_train, x_test, y_test, num_points=num_points,
                                 batch_size=batch_size, device=device)
            row.update(mc_linear=res.mc, t_star_linear=res.t_star)
            paths[(i, j, "linear")] = res
        if l2:
            row["l2"] = l2_distance(a, b)
        if cka:
            row["cka"] = model_cka(a, b, x_train if x_cka is None else x_cka, device=device,
                                   **dict(cka_kwargs or {}))
        rows.append(row)
    per_pair = pd.DataFrame(rows)
    summary: dict[str, float] = {"n_pairs": len(rows)}
    for col in per_pair.columns:
        if col in ("i", "j") or col.startswith("t_star"):
            continue
        values = per_pair[col].to_numpy(dtype=np.float64)
        summary[col] = float(values.mean())
        summary[f"{col}_std"] = float(values.std(ddof=1)) if values.size > 1 else float("nan")
    return PairMetrics(per_pair, summary, paths)
