"""What a profile along a path says: the paper's mode-connectivity metric mc and the bumps
of monotonic linear interpolation (MLI).

A *profile* is a metric (train error, train loss) at points t of a path, ordered by t.
These functions need only numpy and pandas (no torch), so the tables of the authors'
released metrics (:mod:`landscape_utils.experiments.reference`) and the 1D model
(:mod:`landscape_utils.experiments.rugged`) use them without the deep-learning stack.
Defined in the Methods appendix (book/07_methods.py), sections "Mode connectivity"
(methods-mc) and "Monotonic linear interpolation" (methods-mli).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["mode_connectivity", "Bump", "find_bumps", "max_bump_height", "MLIResult", "mli_from_profile",
           "non_monotonic_fraction"]


def mode_connectivity(errors: Sequence[float]) -> tuple[float, int]:
    """The paper's mode-connectivity metric on a profile along a path.

    Args:
        errors: shape (T,), the training 0-1 error in percent at T points along the
            path, ordered by t, with ``errors[0]`` at t = 0 and ``errors[-1]`` at t = 1.

    Returns:
        ``(mc, t_star)``: ``t_star`` is the index maximizing
        ``|(L(0) + L(1)) / 2 - L(t)|`` over all points, endpoints included, and
        ``mc = (L(0) + L(1)) / 2 - L(t_star)``. mc < 0 means a barrier, mc ≈ 0 a
        well-connected pair, mc > 0 a path that beats its (unconverged) endpoints.
    """
    err = np.asarray(errors, dtype=np.float64)
    if err.ndim != 1 or err.size < 2:
        raise ValueError(f"errors must be a 1-D profile with >= 2 points, got shape {err.shape}")
    if not np.all(np.isfinite(err)):
        raise ValueError("errors contain NaN or inf")
    mid = 0.5 * (err[0] + err[-1])
    t_star = int(np.argmax(np.abs(mid - err)))
    return float(mid - err[t_star]), t_star


@dataclass(frozen=True)
class Bump:
    """A rise of a profile above a starting value, until it falls below that value."""

    start: int          # index where the rise begins (the bump's base value is values[start])
    peak: int           # index of the highest value inside the bump
    end: int | None     # first index below the base, None if the profile ends inside the bump
    height: float       # values[peak] − values[start] > 0


def find_bumps(values: Sequence[float]) -> list[Bump]:
    """All bumps of a profile: one opens where the value rises, closes when it falls below its start."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or not np.all(np.isfinite(v)):
        raise ValueError("values must be a finite 1-D profile")
    bumps, i = [], 0
    while i < v.size - 1:
        if v[i + 1] <= v[i]:
            i += 1
            continue
        j, peak = i + 1, i + 1
        while j < v.size and v[j] >= v[i]:
            if v[j] > v[peak]:
                peak = j
            j += 1
        end = j if j < v.size else None
        bumps.append(Bump(i, peak, end, float(v[peak] - v[i])))
        i = j
    return bumps


def max_bump_height(values: Sequence[float]) -> float:
    """Δ: the height of the largest bump, 0 for a non-increasing profile."""
    return max((b.height for b in find_bumps(values)), default=0.0)


@dataclass(frozen=True)
class MLIResult:
    """Monotonic linear interpolation from initialization to solution (Lucas et al. 2021)."""

    profile: pd.DataFrame   # evaluate_path's columns along (1−α) θ₀ + α θ_T
    delta: float            # the largest bump height Δ of profile[metric]
    non_monotonic: bool     # Δ > eps
    eps: float              # the tolerance (> 0) for evaluation noise
    metric: str             # the profile column analysed
    bumps: tuple[Bump, ...] = field(default_factory=tuple)


def mli_from_profile(profile: pd.DataFrame, eps: float = 1e-3, metric: str = "train_loss") -> MLIResult:
    """Bumps, Δ and the non-monotonic flag of one column of a profile (ordered by t)."""
    if not eps > 0:
        raise ValueError(f"eps must be > 0 (evaluation noise makes every run non-monotonic), got {eps}")
    bumps = tuple(find_bumps(profile[metric].to_numpy()))
    delta = max((b.height for b in bumps), default=0.0)
    return MLIResult(profile, delta, delta > eps, eps, metric, bumps)


def non_monotonic_fraction(deltas: Sequence[float], eps: float = 1e-3) -> float:
    """The fraction of runs whose largest bump Δ exceeds ``eps``."""
    d = np.asarray(deltas, dtype=np.float64)
    if d.size == 0:
        raise ValueError("no runs given")
    return float(np.mean(d > eps))
