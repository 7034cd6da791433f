"""Per-cell tables and the phase classifier of Yang et al. (2021).

A *cell* is one point of a load × temperature grid (e.g. width × batch size); it holds
several runs (seeds). :func:`cell_table` averages per-run rows into cells,
:func:`classify` assigns each cell one of the phases of ALGORITHMS.md §3,
:func:`sensitivity` shows how much the phase map moves when each threshold moves, and
:func:`phase_summary` / :func:`spearman_table` summarize the result.

The rule (ALGORITHMS.md §3; the paper draws its boundaries by eye and states no numbers):

* mc clearly below 0 (``mc < -mc_neg``) and high train loss (``> train_loss_high``) → **I**
* mc clearly below 0 otherwise → **III**
* mc clearly above 0 (``mc > mc_pos``) → **II**
* mc ≈ 0 with a high train loss: by the sign of mc, **I** (mc < 0) or **II** (mc ≥ 0): a
  model that has not fitted the training set is not in phase IV, whatever its connectivity
* otherwise (mc ≈ 0, low train loss) → **IV**, split into **IV-B** when
  ``cka >= cka_high`` and **IV-A** otherwise.

``mc`` is the paper's mode-connectivity metric in percentage points of *train 0-1 error*
(:func:`mode_connectivity`; it lives here, away from torch, because it is the taxonomy's
global axis and only needs numpy; ``landscape_utils.connectivity`` re-exports it).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "mode_connectivity",
    "PHASES",
    "METRICS",
    "PhaseThresholds",
    "cell_table",
    "classify",
    "sensitivity",
    "phase_summary",
    "spearman_table",
    "contrast_loads",
]

#: Phase labels, in the paper's order.
PHASES: tuple[str, ...] = ("I", "II", "III", "IV-A", "IV-B")

#: Metric columns of the project's vocabulary (accuracies are fractions in [0, 1]).
METRICS: tuple[str, ...] = (
    "train_loss", "train_acc", "test_loss", "test_acc",
    "lambda_max", "trace", "mc", "cka", "l2",
)


# --------------------------------------------------------------------------------------
# The global axis: the paper's mode-connectivity metric
# --------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------
# Per-cell table
# --------------------------------------------------------------------------------------
def cell_table(df: pd.DataFrame, load: str, temperature: str,
               metrics: Sequence[str] = METRICS, extra_keys: Sequence[str] = ()) -> pd.DataFrame:
    """Average per-run rows into grid cells.

    Args:
        df: one row per run, with the key columns and any of ``metrics``. Per-pair metrics
            (mc, cka, l2) may be given per run or repeated per cell; both average the same way.
        load, temperature: the key columns of the grid (e.g. ``"width"``, ``"batch_size"``).
        metrics: metric columns to aggregate; those absent from ``df`` are skipped.
        extra_keys: more key columns (e.g. ``"dataset"``) that split cells further.

    Returns:
        One row per cell, sorted by the keys, with the keys, ``<m>`` (mean over seeds, NaN
        ignored) and ``<m>_std`` (sample std, ddof=1; NaN with one seed) for every present
        metric, ``n_seeds`` (runs used) and ``n_diverged``. Rows with ``status ==
        "diverged"`` are left out of the means and counted in ``n_diverged``; a cell whose
        runs all diverged is kept, with NaN metrics and ``n_seeds == 0``.
    """
    keys = [load, temperature, *extra_keys]
    missing = [k for k in keys if k not in df.columns]
    if missing:
        raise KeyError(f"cell_table: key columns {missing} not in the table")
    present = [m for m in metrics if m in df.columns]
    if "status" in df.columns:
        diverged = df["status"].astype("string").str.lower().eq("diverged").fillna(False)
    else:
        diverged = pd.Series(False, index=df.index)
    diverged = diverged.astype(bool)

    all_cells = df[keys].drop_duplicates().set_index(keys).index
    ok = df.loc[~diverged]
    g = ok.groupby(keys, dropna=False, sort=True)
    out = pd.DataFrame(index=all_cells)
    for m in present:
        vals = pd.to_numeric(ok[m], errors="coerce").groupby(
            [ok[k] for k in keys], dropna=False)
        out[m] = vals.mean()
        out[f"{m}_std"] = vals.std(ddof=1)
    out["n_seeds"] = g.size().reindex(all_cells).fillna(0).astype(int)
    out["n_diverged"] = (df.loc[diverged].groupby(keys, dropna=False).size()
                         .reindex(all_cells).fillna(0).astype(int))
    return out.sort_index().reset_index()


# --------------------------------------------------------------------------------------
# Thresholds and classifier
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PhaseThresholds:
    """Thresholds of the phase rule. The defaults are set on the authors' released
    ResNet18/CIFAR-10 grid (``landscape_utils.reference``) so that the rule reproduces the
    paper's layout, and each sits in a gap of that data (see :func:`sensitivity`: moving any
    of them by ±25% changes few cells).
    """

    #: Mean train loss (cross-entropy, nats) above which a cell is "not fitted" (phase I
    #: rather than III). On the release, fitted cells end at 0.001-0.006 (lr decayed to
    #: 0.01 for 25 epochs), unfitted ones at >= 0.013; 0.01 sits in that gap (so does the
    #: ±25% range 0.0075-0.0125). With it the I cells all have λmax >= 52 and the III
    #: cells λmax <= 35, matching the paper's "large / small Hessian" columns.
    train_loss_high: float = 0.01

    #: mc below ``-mc_neg`` (percentage points of train error) = a clear barrier. 1 point is
    #: 500 of 50 000 CIFAR-10 training images. On the release, large-width cells have
    #: |mc| <= 0.6 while widths <= 11 at batch >= 44 have mc <= -1.8; only the transition
    #: column (width 16) falls in between.
    mc_neg: float = 1.0

    #: mc above ``mc_pos`` (percentage points) = the curve clearly beats its endpoints, i.e.
    #: the endpoints are not converged (phase II). Symmetric with ``mc_neg``: at batch sizes
    #: 16-27 every cell of width >= 8 has mc >= 1.1, while well-converged cells (train loss
    #: < 0.01, width >= 23) stay <= 0.6.
    mc_pos: float = 1.0

    #: Softmax CKA (mixup inputs) at or above which a phase-IV cell is IV-B. On the release
    #: the largest CKA outside phase IV is 0.67, so 0.7 means "more similar than anything
    #: outside the well-connected phase"; the IV cells range 0.50-0.80. The IV-A/IV-B split
    #: is a continuum in CKA, so this is the most sensitive threshold (±25% moves 20-40
    #: cells between IV-A and IV-B, never across other phases).
    cka_high: float = 0.7

    #: Optional: if set, a poorly connected cell (mc < -mc_neg) with λmax >= lambda_large
    #: counts as phase I even when its train loss is low (sharp *and* poorly connected).
    #: Off by default: on the release the train-loss split already agrees with λmax.
    lambda_large: float | None = None

    def replace(self, **changes: float | None) -> "PhaseThresholds":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def _col(cells: pd.DataFrame, name: str) -> np.ndarray:
    if name not in cells.columns:
        return np.full(len(cells), np.nan)
    return pd.to_numeric(cells[name], errors="coerce").to_numpy(dtype=np.float64)


def classify(cells: pd.DataFrame, thresholds: PhaseThresholds = PhaseThresholds()) -> pd.Series:
    """Phase label of every cell (rule in the module docstring).

    Needs ``mc``; ``train_loss`` to split I from III; ``cka`` to split IV-A from IV-B;
    ``lambda_max`` only when ``thresholds.lambda_large`` is set. A cell whose deciding
    value is missing (NaN or absent column) gets a missing label.

    Returns:
        A categorical Series (categories :data:`PHASES`) aligned with ``cells.index``.
    """
    t = thresholds
    mc = _col(cells, "mc")
    loss = _col(cells, "train_loss")
    cka = _col(cells, "cka")
    lam = _col(cells, "lambda_max")

    with np.errstate(invalid="ignore"):
        neg = mc < -t.mc_neg
        pos = mc > t.mc_pos
        high_loss = loss > t.train_loss_high
        sharp = lam >= t.lambda_large if t.lambda_large is not None else np.zeros(len(mc), bool)
        high_cka = cka >= t.cka_high

    label = np.full(len(cells), None, dtype=object)
    known_mc = np.isfinite(mc)
    # I / III: need train loss (or a sharp Hessian when lambda_large is used).
    is_i = neg & (high_loss | sharp)
    decided = np.isfinite(loss) | sharp
    label[neg & is_i] = "I"
    label[neg & ~is_i & decided] = "III"
    label[pos] = "II"
    near_zero = known_mc & ~neg & ~pos
    # Phase IV needs a fitted training set: a cell with a high loss whose mc is near 0 goes by
    # the sign of its mc, to I (a small barrier) or II (none).
    unfit = near_zero & (high_loss | sharp)
    label[unfit & (mc < 0)] = "I"
    label[unfit & (mc >= 0)] = "II"
    iv = near_zero & ~unfit
    label[iv & high_cka] = "IV-B"
    label[iv & ~high_cka & np.isfinite(cka)] = "IV-A"
    return pd.Series(pd.Categorical(label, categories=list(PHASES)), index=cells.index,
                     name="phase")


# --------------------------------------------------------------------------------------
# Sensitivity and summaries
# --------------------------------------------------------------------------------------
def sensitivity(cells: pd.DataFrame, thresholds: PhaseThresholds = PhaseThresholds(),
                rel: float = 0.25) -> pd.DataFrame:
    """How many cells change phase when each threshold moves by ±``rel``.

    Returns:
        One row per (threshold, direction) — direction ``"-25%"`` then ``"+25%"`` for
        ``rel=0.25`` — for every numeric field of ``thresholds`` (fields set to None are
        skipped), with columns ``threshold``, ``direction``, ``default``, ``value``,
        ``n_changed``, ``frac_changed`` (over all cells) and ``transitions`` (e.g.
        ``"III→IV-A: 2, I→III: 1"``).
    """
    base = classify(cells, thresholds).astype(object).fillna("?")
    rows = []
    for f in dataclasses.fields(thresholds):
        default = getattr(thresholds, f.name)
        if default is None:
            continue
        for sign in (-1, +1):
            value = default * (1 + sign * rel)
            new = classify(cells, thresholds.replace(**{f.name: value})).astype(object).fillna("?")
            changed = base != new
            pairs = pd.Series([f"{a}→{b}" for a, b in zip(base[changed], new[changed])],
                              dtype=object)
            counts = pairs.value_counts()
            rows.append({
                "threshold": f.name,
                "direction": f"{'-' if sign < 0 else '+'}{rel:.0%}",
                "default": default,
                "value": value,
                "n_changed": int(changed.sum()),
                "frac_changed": float(changed.mean()) if len(cells) else np.nan,
                "transitions": ", ".join(f"{k}: {v}" for k, v in counts.items()),
            })
    return pd.DataFrame(rows, columns=["threshold", "direction", "default", "value",
                                       "n_changed", "frac_changed", "transitions"])


def phase_summary(cells: pd.DataFrame, phases: pd.Series | Iterable[str],
                  target: str = "test_acc") -> pd.DataFrame:
    """Per phase (all of :data:`PHASES`, in order): number of cells, mean and best (max)
    of ``target`` over the cells, and the mean of the taxonomy metrics present.

    Columns: ``n_cells``, ``<target>_mean``, ``<target>_best`` and ``<m>_mean`` for m in
    train_loss, lambda_max, mc, cka when present. Index: phase.
    """
    ph = pd.Series(pd.Categorical(list(phases), categories=list(PHASES)), index=cells.index)
    cols = [target] + [m for m in ("train_loss", "lambda_max", "mc", "cka")
                       if m in cells.columns and m != target]
    data = cells[[c for c in cols if c in cells.columns]].apply(pd.to_numeric, errors="coerce")
    g = data.groupby(ph, observed=False)
    out = pd.DataFrame({"n_cells": ph.value_counts(sort=False).reindex(list(PHASES))})
    if target in data.columns:
        out[f"{target}_mean"] = g[target].mean()
        out[f"{target}_best"] = g[target].max()
    for m in cols[1:]:
        if m in data.columns:
            out[f"{m}_mean"] = g[m].mean()
    out.index.name = "phase"
    return out


def spearman_table(cells: pd.DataFrame, target: str = "test_acc",
                   metrics: Sequence[str] = ("train_loss", "lambda_max", "trace", "mc",
                                             "cka", "l2"),
                   well_trained_mask: pd.Series | np.ndarray | None = None,
                   train_loss_high: float = PhaseThresholds.train_loss_high) -> pd.DataFrame:
    """Spearman rank correlation of each metric with ``target`` (scipy.stats.spearmanr).

    Computed over all cells and over well-trained cells only: ``well_trained_mask`` if
    given, else ``train_loss < train_loss_high``. Cells with NaN in either column are
    dropped pairwise. Metrics absent from ``cells`` are skipped.

    Returns:
        Index ``metric``; columns ``rho_all``, ``p_all``, ``n_all``, ``rho_well_trained``,
        ``p_well_trained``, ``n_well_trained``. rho is NaN with fewer than 3 cells.
    """
    if well_trained_mask is None:
        well = _col(cells, "train_loss") < train_loss_high
    else:
        well = np.asarray(well_trained_mask, dtype=bool)
        if well.shape != (len(cells),):
            raise ValueError("well_trained_mask must have one entry per cell")
    y = _col(cells, target)

    def rho(x: np.ndarray, yy: np.ndarray) -> tuple[float, float, int]:
        ok = np.isfinite(x) & np.isfinite(yy)
        n = int(ok.sum())
        if n < 3 or np.ptp(x[ok]) == 0 or np.ptp(yy[ok]) == 0:
            return np.nan, np.nan, n
        r = stats.spearmanr(x[ok], yy[ok])
        return float(r.statistic), float(r.pvalue), n

    rows = []
    for m in metrics:
        if m not in cells.columns or m == target:
            continue
        x = _col(cells, m)
        ra, pa, na = rho(x, y)
        rw, pw, nw = rho(x[well], y[well])
        rows.append({"metric": m, "rho_all": ra, "p_all": pa, "n_all": na,
                     "rho_well_trained": rw, "p_well_trained": pw, "n_well_trained": nw})
    return pd.DataFrame(rows, columns=["metric", "rho_all", "p_all", "n_all",
                                       "rho_well_trained", "p_well_trained",
                                       "n_well_trained"]).set_index("metric")


def contrast_loads(cells: pd.DataFrame, load: str, temperature: str, at: float,
                   thresholds: PhaseThresholds = PhaseThresholds()) -> dict[str, object]:
    """Two loads at temperature ``at`` to contrast "training longer" on: a poorly connected
    one and a well connected one (the paper: training to zero loss can hurt in phase III).

    poor: the phase-III cell with the lowest mc; else, among cells with a clear barrier
    (mc < -mc_neg), the one with the lowest train loss; else the smallest load.
    good: the phase-IV (A or B) cell with the best ``test_acc`` (the largest load if there
    is no test accuracy); else the largest load. ``good`` differs from ``poor`` whenever
    the row has two loads.

    Returns:
        ``{"poor": load value, "good": load value, "reason": one sentence per choice}``.

    Raises:
        ValueError: no cell at temperature ``at``.
    """
    row = cells[np.isclose(pd.to_numeric(cells[temperature], errors="coerce"), float(at))]
    if row.empty:
        raise ValueError(f"no cell at {temperature} = {at}; "
                         f"values are {sorted(cells[temperature].unique())}")
    row = row.sort_values(load).reset_index(drop=True)
    ph = classify(row, thresholds).astype(object)
    mc, loss = _col(row, "mc"), _col(row, "train_loss")
    loads = row[load].tolist()

    def first(order: np.ndarray, mask: np.ndarray) -> int | None:
        idx = [i for i in order if mask[i]]
        return int(idx[0]) if idx else None

    iii = (ph == "III").to_numpy()
    barrier = np.nan_to_num(mc, nan=np.inf) < -thresholds.mc_neg
    if iii.any():
        i_poor = first(np.argsort(np.nan_to_num(mc, nan=np.inf), kind="stable"), iii)
        why_poor = "phase III (fitted, with a barrier; the lowest mc)"
    elif barrier.any():
        i_poor = first(np.argsort(np.nan_to_num(loss, nan=np.inf), kind="stable"), barrier)
        why_poor = "no phase-III cell: the best-fitted cell with a barrier"
    else:
        i_poor = 0
        why_poor = ("no cell with a barrier (or no mc): the smallest load" if np.isfinite(mc).any()
                    else "no mc: the smallest load")
    iv = ph.isin(["IV-A", "IV-B"]).to_numpy() & (np.arange(len(row)) != i_poor)
    acc = _col(row, "test_acc")
    if iv.any():
        key = -np.nan_to_num(acc, nan=-np.inf) if np.isfinite(acc).any() else -np.arange(len(row))
        i_good = first(np.argsort(key, kind="stable"), iv)
        why_good = "phase IV with the best test accuracy"
    else:
        i_good = len(row) - 1 if len(row) - 1 != i_poor or len(row) == 1 else len(row) - 2
        why_good = "no phase-IV cell: the largest other load"
    return {"poor": _scalar(loads[i_poor]), "good": _scalar(loads[i_good]),
            "reason": f"poorly connected {load} {_scalar(loads[i_poor])}: {why_poor}; "
                      f"well connected {load} {_scalar(loads[i_good])}: {why_good}"}


def _scalar(v: object) -> object:
    return v.item() if isinstance(v, np.generic) else v
