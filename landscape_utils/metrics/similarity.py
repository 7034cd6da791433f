"""Representation similarity between trained models: CKA and L2 distance.

CKA (centred kernel alignment, Kornblith et al. 2019) in its linear and RBF forms,
biased or debiased (Song et al. 2012's unbiased HSIC estimator), a minibatch
accumulator (Nguyen et al. 2021), mixup inputs as in Yang et al. 2021, and the L2
distance between parameter vectors. See the Methods
appendix (book/07_methods.py): methods-cka, methods-mixup, methods-l2.

All CKA arithmetic is done in float64. Shapes: ``X`` is num_examples × num_features
(any trailing shape is flattened), a Gram matrix ``K`` is num_examples × num_examples.

Degenerate cases. A debiased HSIC needs ``n >= 4`` (a clear ``ValueError`` otherwise).
The debiased cross term HSIC(K, L) may be negative: debiased CKA of unrelated features
scatters around 0 on both sides. Self-HSIC is >= 0 in exact arithmetic but can come out
<= 0, or as pure rounding residue, for a constant (or, for RBF, mostly coincident)
representation; CKA then returns ``nan`` instead of dividing by the square root of
noise (the guard compares it with the size of the uncentred Gram matrix, ``_REL_TOL``).
"""
from __future__ import annotations

import copy
import math
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.params import matching_parameters
from ..core.utils import resolve_device

KERNELS = ("linear", "rbf")
REPRESENTATIONS = ("softmax", "logits")  # or the name of a submodule, read by a forward hook


# --------------------------------------------------------------------------- Gram matrices
def _features(X: torch.Tensor) -> torch.Tensor:
    """(n, ...) -> (n, p) float64."""
    X = torch.as_tensor(X)
    if X.ndim < 1:
        raise ValueError("X must have a leading example dimension")
    return X.detach().reshape(X.shape[0], -1).to(torch.float64)


def _check_n(n: int, debiased: bool) -> None:
    if debiased and n < 4:
        raise ValueError(f"debiased HSIC/CKA needs at least 4 examples, got n={n}")
    if n < 2:
        raise ValueError(f"HSIC/CKA needs at least 2 examples, got n={n}")


def linear_gram(X: torch.Tensor) -> torch.Tensor:
    """Linear kernel K = X Xᵀ. X: n × p (flattened). Returns n × n float64."""
    X = _features(X)
    return X @ X.T


def _median(v: torch.Tensor) -> torch.Tensor:
    """The usual median (mean of the two middle values for an even count)."""
    s = torch.sort(v.reshape(-1)).values
    m = s.numel()
    return s[m // 2] if m % 2 else 0.5 * (s[m // 2 - 1] + s[m // 2])


def _squared_distances(X: torch.Tensor) -> torch.Tensor:
    sq = (X * X).sum(1)
    return (sq[:, None] + sq[None, :] - 2.0 * (X @ X.T)).clamp_min_(0.0).fill_diagonal_(0.0)


def _median_sigma(d2: torch.Tensor, sigma_frac: float) -> float:
    """``sigma_frac`` × the median pairwise distance (i < j) from squared distances."""
    n = d2.shape[0]
    if n < 2:
        raise ValueError("the median heuristic needs at least 2 examples")
    iu = torch.triu_indices(n, n, offset=1, device=d2.device)
    return sigma_frac * math.sqrt(float(_median(d2[iu[0], iu[1]])))


def rbf_gram(X: torch.Tensor, sigma: float | None = None, sigma_frac: float = 0.5) -> torch.Tensor:
    """RBF kernel K_ij = exp(−‖x_i − x_j‖² / (2σ²)). X: n × p. Returns n × n float64.

    With ``sigma=None``, σ = ``sigma_frac`` × the median of the pairwise distances
    ‖x_i − x_j‖ over i < j (the diagonal zeros are not counted, unlike Kornblith et al.'s
    reference code, which takes the median of the full squared-distance matrix).
    A zero σ (more than half of the points coincide) is a ``ValueError``.
    """
    d2 = _squared_distances(_features(X))
    if sigma is None:
        sigma = _median_sigma(d2, sigma_frac)
    if not sigma > 0:
        raise ValueError(f"RBF bandwidth must be > 0, got sigma={sigma} (do most inputs coincide?)")
    return torch.exp(-d2 / (2.0 * float(sigma) ** 2))


def center_gram(K: torch.Tensor) -> torch.Tensor:
    """H K H with H = I − 11ᵀ/n."""
    K = torch.as_tensor(K, dtype=torch.float64)
    return K - K.mean(0, keepdim=True) - K.mean(1, keepdim=True) + K.mean()


# --------------------------------------------------------------------------- HSIC and CKA
def hsic(K: torch.Tensor, L: torch.Tensor, debiased: bool = False) -> float:
    """HSIC of two n × n Gram matrices.

    Biased: tr(K H L H) / (n − 1)². Debiased (Song et al.): with K̃, L̃ the Gram matrices
    with zeroed diagonals,
    [tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((n−1)(n−2)) − 2/(n−2)·1ᵀK̃L̃1] / (n(n−3)), needs n >= 4.
    """
    K = torch.as_tensor(K, dtype=torch.float64)
    L = torch.as_tensor(L, dtype=torch.float64)
    n = K.shape[0]
    if K.shape != (n, n) or L.shape != (n, n):
        raise ValueError(f"K and L must be square and of equal size, got {tuple(K.shape)} and {tuple(L.shape)}")
    _check_n(n, debiased)
    if not debiased:
        return float((center_gram(K) * center_gram(L)).sum()) / (n - 1) ** 2
    # The estimator is unchanged by K_ij -> K_ij + f(i) + f(j) + c, so double centring first
    # is exact and avoids cancelling large terms (a constant K then gives ~0, not rounding noise).
    Kt = center_gram(K).fill_diagonal_(0.0)
    Lt = center_gram(L).fill_diagonal_(0.0)
    k1, l1 = Kt.sum(1), Lt.sum(1)
    value = ((Kt * Lt).sum() + k1.sum() * l1.sum() / ((n - 1) * (n - 2))
             - 2.0 / (n - 2) * (k1 @ l1))
    return float(value) / (n * (n - 3))


# Self-HSIC at or below this fraction of the squared scale of the (uncentred) Gram matrix
# counts as zero: a constant representation leaves only rounding residue (~1e-32) there,
# and a real one sits far above (relative spread 1e-10, beyond float32 outputs anyway).
_REL_TOL = 1e-20


def _gram_scale(K: torch.Tensor) -> float:
    """‖K‖²_F / n²: the size self-HSIC is measured against."""
    return float(K.pow(2).sum()) / K.shape[0] ** 2


def _ratio(xy: float, xx: float, yy: float, scale_x: float, scale_y: float) -> float:
    """xy / √(xx·yy), guarded: nan when a self-HSIC is <= 0 or negligible (degenerate)."""
    if not (xx > _REL_TOL * scale_x and yy > _REL_TOL * scale_y and math.isfinite(xx * yy)):
        return float("nan")
    return xy / math.sqrt(xx * yy)


def cka_from_grams(K: torch.Tensor, L: torch.Tensor, debiased: bool = False) -> float:
    """CKA = HSIC(K, L) / √(HSIC(K, K)·HSIC(L, L)) of two n × n Gram matrices.

    nan when a self-HSIC is <= 0 or negligible against ‖K‖²_F / n² (a constant
    representation); see the module docstring.
    """
    K = torch.as_tensor(K, dtype=torch.float64)
    L = torch.as_tensor(L, dtype=torch.float64)
    return _ratio(hsic(K, L, debiased), hsic(K, K, debiased), hsic(L, L, debiased),
                  _gram_scale(K), _gram_scale(L))


def _linear_hsic_terms(X: torch.Tensor, Y: torch.Tensor, debiased: bool) -> float:
    """HSIC of linear kernels from features, without forming n × n Gram matrices.

    X: n × p, Y: n × q, both column-centred. Matches :func:`hsic` on ``X Xᵀ, Y Yᵀ``.
    """
    n = X.shape[0]
    xty = float((X.T @ Y).pow(2).sum())  # tr(K L) = ‖XᵀY‖²_F
    if not debiased:
        return xty / (n - 1) ** 2  # K, L are already centred by the column centring
    kd, ld = (X * X).sum(1), (Y * Y).sum(1)  # diagonals of K and L
    tr = xty - float(kd @ ld)  # tr(K̃ L̃)
    k1 = X @ X.sum(0) - kd  # K̃ 1
    l1 = Y @ Y.sum(0) - ld  # L̃ 1
    value = tr + float(k1.sum()) * float(l1.sum()) / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * float(k1 @ l1)
    return value / (n * (n - 3))


def _paired(X: torch.Tensor, Y: torch.Tensor, debiased: bool) -> tuple[torch.Tensor, torch.Tensor]:
    X, Y = _features(X), _features(Y)
    if Y.shape[0] != X.shape[0]:
        raise ValueError(f"X and Y must have the same number of examples, got {X.shape[0]} and {Y.shape[0]}")
    _check_n(X.shape[0], debiased)
    return X, Y


def linear_cka(X: torch.Tensor, Y: torch.Tensor, debiased: bool = False) -> float:
    """Linear CKA between X (n × p) and Y (n × q); trailing dims are flattened.

    Biased: ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F) on column-centred features. Uses the feature form
    when both widths are <= n and the Gram form otherwise; both give the same number.
    Returns nan for a degenerate (constant) representation; see the module docstring.
    """
    X, Y = _paired(X, Y, debiased)
    n = X.shape[0]
    # ‖X‖_F⁴ / n² bounds ‖X Xᵀ‖²_F / n² (equal for a constant X): the scale of the guard.
    scale_x, scale_y = float(X.pow(2).sum()) ** 2 / n ** 2, float(Y.pow(2).sum()) ** 2 / n ** 2
    X = X - X.mean(0, keepdim=True)
    Y = Y - Y.mean(0, keepdim=True)
    if max(X.shape[1], Y.shape[1]) > n:
        K, L = X @ X.T, Y @ Y.T
        return _ratio(hsic(K, L, debiased), hsic(K, K, debiased), hsic(L, L, debiased), scale_x, scale_y)
    return _ratio(_linear_hsic_terms(X, Y, debiased), _linear_hsic_terms(X, X, debiased),
                  _linear_hsic_terms(Y, Y, debiased), scale_x, scale_y)


def rbf_cka(X: torch.Tensor, Y: torch.Tensor, sigma_frac: float = 0.5, debiased: bool = False) -> float:
    """RBF-kernel CKA; each side's σ is ``sigma_frac`` × its median pairwise distance.

    nan when a side has no bandwidth (median distance 0: most points coincide, as with
    saturated softmax outputs) or is otherwise degenerate.
    """
    X, Y = _paired(X, Y, debiased)
    dx, dy = _squared_distances(X), _squared_distances(Y)
    sx, sy = _median_sigma(dx, sigma_frac), _median_sigma(dy, sigma_frac)
    if not (sx > 0 and sy > 0):
        return float("nan")
    return cka_from_grams(torch.exp(-dx / (2.0 * sx ** 2)), torch.exp(-dy / (2.0 * sy ** 2)), debiased)


def _gram(X: torch.Tensor, kernel: str, sigma_frac: float) -> torch.Tensor:
    if kernel == "linear":
        return linear_gram(X)
    if kernel == "rbf":
        return rbf_gram(X, sigma_frac=sigma_frac)
    raise ValueError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")


def cka(X: torch.Tensor, Y: torch.Tensor, kernel: str = "linear", debiased: bool = False,
        sigma_frac: float = 0.5) -> float:
    """Dispatch to :func:`linear_cka` or :func:`rbf_cka` by ``kernel`` name."""
    if kernel == "linear":
        return linear_cka(X, Y, debiased)
    if kernel == "rbf":
        return rbf_cka(X, Y, sigma_frac, debiased)
    raise ValueError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")


class MinibatchCKA:
    """Minibatch CKA (Nguyen et al. 2021): sum per-batch HSIC, normalize at the end.

    ``update(X, Y)`` adds one batch (n_b × p, n_b × q, n_b >= 4 when debiased);
    ``compute()`` returns Σ HSIC(K_b, L_b) / √(Σ HSIC(K_b, K_b) · Σ HSIC(L_b, L_b)),
    nan when that denominator is <= 0. With a single batch this equals the full
    :func:`cka` on that batch. RBF bandwidths come from each batch's own median.
    """

    def __init__(self, kernel: str = "linear", debiased: bool = True, sigma_frac: float = 0.5):
        if kernel not in KERNELS:
            raise ValueError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
        self.kernel = kernel
        self.debiased = debiased
        self.sigma_frac = sigma_frac
        self.reset()

    def reset(self) -> "MinibatchCKA":
        self.xy = self.xx = self.yy = 0.0
        self.scale_x = self.scale_y = 0.0  # summed Gram scales, for the degeneracy guard
        self.num_batches = 0
        return self

    def update(self, X: torch.Tensor, Y: torch.Tensor) -> "MinibatchCKA":
        X, Y = _paired(X, Y, self.debiased)
        K, L = _gram(X, self.kernel, self.sigma_frac), _gram(Y, self.kernel, self.sigma_frac)
        self.xy += hsic(K, L, self.debiased)
        self.xx += hsic(K, K, self.debiased)
        self.yy += hsic(L, L, self.debiased)
        self.scale_x += _gram_scale(K)
        self.scale_y += _gram_scale(L)
        self.num_batches += 1
        return self

    def compute(self) -> float:
        if self.num_batches == 0:
            raise ValueError("MinibatchCKA.compute() called before any update()")
        return _ratio(self.xy, self.xx, self.yy, self.scale_x, self.scale_y)


# --------------------------------------------------------------------------- inputs
def mixup_batches(x: torch.Tensor, batch_size: int, alpha: float = 16.0, seed: int = 0,
                  num_batches: int | None = None, shuffle: bool = True) -> list[torch.Tensor]:
    """Mixup inputs for CKA, as in Yang et al. 2021.

    The examples are (with ``shuffle``, seeded) split into consecutive batches of
    ``batch_size``; each batch ``b`` is mixed with a random permutation of itself,
    ``λ b + (1 − λ) b[perm]``, one λ ~ Beta(alpha, alpha) per batch.

    Args:
        x: (n, ...) inputs, on any device; the outputs stay there with x's dtype.
        num_batches: how many batches to return (None: all, the last one possibly
            smaller). Asking for more than exist is an error.

    Returns:
        A list of tensors, each with the shape of the input batch it was made from.
        The same ``seed`` gives the same batches.
    """
    n = x.shape[0]
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    available = -(-n // batch_size)
    if num_batches is None:
        num_batches = available
    if not 0 < num_batches <= available:
        raise ValueError(f"num_batches={num_batches} but {n} examples give {available} batches of {batch_size}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n) if shuffle else np.arange(n)
    out = []
    for b in range(num_batches):
        idx = order[b * batch_size:(b + 1) * batch_size]
        lam = float(rng.beta(alpha, alpha))
        perm = idx[rng.permutation(len(idx))]
        xb = x[torch.as_tensor(idx, device=x.device)]
        xp = x[torch.as_tensor(perm, device=x.device)]
        out.append(lam * xb + (1.0 - lam) * xp)
    return out


# --------------------------------------------------------------------------- models
def _on_device(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` itself if all its tensors already live on ``device``, else a moved copy."""
    tensors = list(model.parameters()) + list(model.buffers())
    if all(t.device == device for t in tensors):
        return model
    return copy.deepcopy(model).to(device)


@torch.no_grad()
def representations(model: nn.Module, batches: Sequence[torch.Tensor], representation: str = "softmax",
                    device: str | torch.device = "auto") -> list[torch.Tensor]:
    """The model's representation of each batch, in eval mode: a list of (n_b, features) float64.

    ``representation`` is "softmax", "logits" or the name of a submodule (as in
    ``model.named_modules()``) whose output is read with a forward hook and flattened.
    The modes of all submodules are restored afterwards.
    """
    device = resolve_device(device)
    model = _on_device(model, device)
    modes = {m: m.training for m in model.modules()}
    captured: list[torch.Tensor] = []
    handle = None
    if representation not in REPRESENTATIONS:
        modules = dict(model.named_modules())
        if representation not in modules:
            raise ValueError(f"unknown representation {representation!r}: use one of {REPRESENTATIONS} "
                             f"or a module name such as {[k for k in modules if k][:8]}")

        def hook(_module, _inputs, output):
            out = output[0] if isinstance(output, (tuple, list)) else output
            captured.append(out.detach().reshape(out.shape[0], -1).to(torch.float64))

        handle = modules[representation].register_forward_hook(hook)
    try:
        model.eval()
        for xb in batches:
            logits = model(xb.to(device))
            if representation == "softmax":
                captured.append(F.softmax(logits.to(torch.float64), dim=1))
            elif representation == "logits":
                captured.append(logits.detach().reshape(logits.shape[0], -1).to(torch.float64))
    finally:
        if handle is not None:
            handle.remove()
        for m, mode in modes.items():
            m.training = mode
    return captured


def model_cka(model_a: nn.Module, model_b: nn.Module, x: torch.Tensor, representation: str = "softmax",
              batch_size: int = 128, mixup: bool = True, alpha: float = 16.0, seed: int = 0,
              num_batches: int | None = None, debiased: bool = False, kernel: str = "linear",
              sigma_frac: float = 0.5, minibatch: bool = False, device: str | torch.device = "auto") -> float:
    """CKA between two models' representations of the same inputs (Yang et al. 2021).

    Args:
        x: (n, ...) inputs (training points). With ``mixup`` they are replaced by
            :func:`mixup_batches` (Beta(alpha, alpha), seeded by ``seed``); both models see
            exactly the same batches. ``num_batches`` limits how many are used.
        representation: "softmax" (the paper's choice), "logits" or a submodule name.
        minibatch: False concatenates all batches and computes one CKA over all examples;
            True accumulates per-batch HSIC with :class:`MinibatchCKA` (use ``debiased``).

    Both models run in eval mode (BatchNorm uses running statistics); their modes are
    restored afterwards. Returns a float in [0, 1] for the biased form (nan if degenerate).
    """
    if mixup:
        batches = mixup_batches(x, batch_size, alpha=alpha, seed=seed, num_batches=num_batches)
    else:
        batches = list(torch.split(x, batch_size))[:num_batches]
    ra = representations(model_a, batches, representation, device)
    rb = representations(model_b, batches, representation, device)
    if minibatch:
        acc = MinibatchCKA(kernel, debiased, sigma_frac)
        for a, b in zip(ra, rb):
            acc.update(a, b)
        return acc.compute()
    return cka(torch.cat(ra), torch.cat(rb), kernel, debiased, sigma_frac)


# --------------------------------------------------------------------------- L2
def l2_distance(model_a: nn.Module | Mapping[str, torch.Tensor],
                model_b: nn.Module | Mapping[str, torch.Tensor]) -> float:
    """‖θ_a − θ_b‖₂ over all trainable parameters (see :func:`matching_parameters`), in float64."""
    pa, pb = matching_parameters(model_a, model_b)
    total = 0.0
    for k, va in pa.items():
        total += float((va.detach().to(torch.float64) - pb[k].detach().to(va.device, torch.float64)).pow(2).sum())
    return math.sqrt(total)
