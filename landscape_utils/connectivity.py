"""Mode connectivity: Bezier curves between trained models, path evaluation with
BatchNorm recalibration, the paper's mc metric, linear barriers and MLI.

See ALGORITHMS.md §2 (mode connectivity) and §6 (MLI).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


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
