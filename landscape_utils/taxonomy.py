"""Per-cell tables and the phase classifier of Yang et al. (2021).

A *cell* is one point of a load × temperature grid (e.g. width × batch size); it holds
several runs (seeds). :func:`cell_table` averages per-run rows into cells,
:func:`classify` assigns each cell one of the paper's phases,
:func:`sensitivity` shows how much the phase map moves when each threshold moves, and
:func:`phase_summary` / :func:`spearman_table` summarize the result.

The rule (Methods appendix, ``methods-phases``; the paper draws its boundaries by eye
and states no numbers):

* mc clearly below 0 (``mc < -mc_neg``) and high train loss (``> train_loss_high``) → **I**
* mc clearly below 0 otherwise → **III**
* mc clearly above 0 (``mc > mc_pos``) → **II**
* mc ≈ 0 with a high train loss: by the sign of mc, **I** (mc < 0) or **II** (mc ≥ 0): a
  model that has not fitted the training set is not in phase IV, whatever its connectivity
* otherwise (mc ≈ 0, low train loss) → **IV**, split into **IV-B** when
  ``cka >= cka_high`` and **IV-A** otherwise.

``mc`` is the paper's mode-connectivity metric in percentage points of *train 0-1 error*
(:func:`landscape_utils.profiles.mode_connectivity`).

:func:`classify_with_confidence` applies the same rule to resampled per-pair and per-seed
values and gives each cell a probability per phase, ``undetermined`` below a level, the
IV-A/IV-B split only where CKA separates the cells beyond the seed spread, and flags from
the local axis (Hessian, train loss); Methods appendix, ``methods-phase-confidence``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .settings import FromParams

__all__ = [
    "PHASES",
    "METRICS",
    "PhaseThresholds",
    "CONFIDENCE_PHASES",
    "UNDETERMINED",
    "cell_table",
    "classify",
    "classify_with_confidence",
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
class PhaseThresholds(FromParams):
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


def numeric_column(cells: pd.DataFrame, name: str) -> np.ndarray:
    """Column ``name`` as float64, shape (len(cells),); NaN where missing or not a number."""
    if name not in cells.columns:
        return np.full(len(cells), np.nan)
    return pd.to_numeric(cells[name], errors="coerce").to_numpy(dtype=np.float64)


def well_trained(cells: pd.DataFrame, train_loss_high: float,
                 mask: Sequence[bool] | np.ndarray | None = None) -> np.ndarray:
    """The well-trained cells, shape (len(cells),) bool: ``mask`` if given (checked to have
    one entry per cell), else train loss below ``train_loss_high``."""
    if mask is None:
        return numeric_column(cells, "train_loss") < train_loss_high
    well = np.asarray(mask, dtype=bool)
    if well.shape != (len(cells),):
        raise ValueError("well_trained_mask must have one entry per cell")
    return well


def classify(cells: pd.DataFrame, thresholds: PhaseThresholds = PhaseThresholds()) -> pd.Series:
    """Phase label of every cell (rule in the module docstring).

    Needs ``mc``; ``train_loss`` to split I from III; ``cka`` to split IV-A from IV-B;
    ``lambda_max`` only when ``thresholds.lambda_large`` is set. A cell whose deciding
    value is missing (NaN or absent column) gets a missing label.

    Returns:
        A categorical Series (categories :data:`PHASES`) aligned with ``cells.index``.
    """
    t = thresholds
    mc = numeric_column(cells, "mc")
    loss = numeric_column(cells, "train_loss")
    cka = numeric_column(cells, "cka")
    lam = numeric_column(cells, "lambda_max")

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
                  target: str = "test_acc", labels: Sequence[str] = PHASES,
                  drop_empty: bool = False) -> pd.DataFrame:
    """Per phase (all of ``labels``, in order; e.g. :data:`CONFIDENCE_PHASES` for the labels
    of :func:`classify_with_confidence`): number of cells, mean and best (max) of
    ``target`` over the cells, and the mean of the taxonomy metrics present. Cells whose
    label is not in ``labels`` are left out; ``drop_empty`` drops the rows without cells.

    Columns: ``n_cells``, ``<target>_mean``, ``<target>_best`` and ``<m>_mean`` for m in
    train_loss, lambda_max, mc, cka when present. Index: phase.
    """
    order = list(labels)
    ph = pd.Series(pd.Categorical(list(phases), categories=order), index=cells.index)
    cols = [target] + [m for m in ("train_loss", "lambda_max", "mc", "cka")
                       if m in cells.columns and m != target]
    data = cells[[c for c in cols if c in cells.columns]].apply(pd.to_numeric, errors="coerce")
    g = data.groupby(ph, observed=False)
    out = pd.DataFrame({"n_cells": ph.value_counts(sort=False).reindex(order)})
    if target in data.columns:
        out[f"{target}_mean"] = g[target].mean()
        out[f"{target}_best"] = g[target].max()
    for m in cols[1:]:
        if m in data.columns:
            out[f"{m}_mean"] = g[m].mean()
    out.index.name = "phase"
    return out[out.n_cells > 0] if drop_empty else out


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
    well = well_trained(cells, train_loss_high, well_trained_mask)
    y = numeric_column(cells, target)

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
        x = numeric_column(cells, m)
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
    mc, loss = numeric_column(row, "mc"), numeric_column(row, "train_loss")
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
    acc = numeric_column(row, "test_acc")
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


# --------------------------------------------------------------------------------------
# Phases with a confidence
# --------------------------------------------------------------------------------------
#: Labels of :func:`classify_with_confidence`: the phases, ``"IV"`` (well connected, the
#: IV-A/IV-B split not made or not resolved) and ``"undetermined"``.
CONFIDENCE_PHASES: tuple[str, ...] = ("I", "II", "III", "IV", "IV-A", "IV-B", "undetermined")
#: The label of a cell whose most likely phase is less likely than the level.
UNDETERMINED = "undetermined"
#: Per-pair metrics (from ``pairs``) and per-run metrics (from ``runs``) the rule reads.
_PAIR_METRICS = ("mc", "cka")
_RUN_METRICS = ("train_loss", "lambda_max")
_HIGH_LOCAL = ("I", "II")                      # the table's "high loss, large Hessian" rows
_LOW_LOCAL = ("III", "IV", "IV-A", "IV-B")     # "small loss, small Hessian"


def _values_by_cell(table: pd.DataFrame | None, keys: list[str], metric: str,
                    cell_keys: list[tuple]) -> list[np.ndarray] | None:
    """Finite values of ``metric`` per cell (in ``cell_keys`` order), or None when the
    table lacks the column. Rows with ``status == "diverged"`` are left out."""
    if table is None or metric not in table.columns:
        return None
    missing = [k for k in keys if k not in table.columns]
    if missing:
        raise KeyError(f"classify_with_confidence: key columns {missing} not in the table "
                       f"that holds {metric!r}")
    t = table
    if "status" in t.columns:
        t = t[~t["status"].astype("string").str.lower().eq("diverged").fillna(False).astype(bool)]
    vals = pd.to_numeric(t[metric], errors="coerce")
    groups = {k if isinstance(k, tuple) else (k,): v.to_numpy(np.float64)
              for k, v in vals.groupby([t[k] for k in keys], sort=False)}
    out = []
    for ck in cell_keys:
        v = groups.get(ck, np.array([]))
        out.append(v[np.isfinite(v)])
    return out


def _draw_means(center: np.ndarray, values: list[np.ndarray] | None, n_resamples: int,
                method: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Resampled cell means, shape (cells, n_resamples), and the number of values per cell.

    ``center`` (shape (cells,)) is the cell value the draws are centred on. A cell with
    fewer than 2 values (or no per-seed values at all) is held at its centre.
    """
    n_cells = len(center)
    draws = np.repeat(center[:, None], n_resamples, axis=1)
    if values is None:
        return draws, np.zeros(n_cells, dtype=int)
    n = np.array([v.size for v in values])
    for i, v in enumerate(values):
        if v.size < 2 or not np.isfinite(center[i]):
            continue
        if method == "t":
            se = v.std(ddof=1) / np.sqrt(v.size)
            draws[i] = center[i] + se * rng.standard_t(v.size - 1, size=n_resamples)
        else:  # bootstrap: resample the values with replacement
            idx = rng.integers(0, v.size, size=(n_resamples, v.size))
            draws[i] = center[i] + (v[idx].mean(axis=1) - v.mean())
    return draws, n


def classify_with_confidence(cells: pd.DataFrame, pairs: pd.DataFrame | None = None,
                             runs: pd.DataFrame | None = None, *, load: str = "width",
                             temperature: str = "batch_size",
                             thresholds: PhaseThresholds = PhaseThresholds(),
                             level: float = 0.7, n_resamples: int = 2000, method: str = "t",
                             hessian: str = "lambda_max", hessian_high: float | None = None,
                             seed: int = 0) -> pd.DataFrame:
    """Phases with a probability: :func:`classify`'s rule applied to resampled cell values.

    **Resampling.** Each metric the rule reads (mc and cka per seed pair from ``pairs``;
    train_loss, and lambda_max when ``thresholds.lambda_large`` is set, per seed from
    ``runs``) is redrawn ``n_resamples`` times per cell, centred on the cell's value in
    ``cells`` (or the mean of its values when ``cells`` lacks the column):

    * ``method="t"`` (default): the cell mean of n values is drawn as
      ``mean + SE · T``, SE = sample std / √n, T ~ Student t with n − 1 degrees of freedom
      (the sampling distribution of a mean of n normal values whose spread is estimated
      from the same n values: a parametric bootstrap). With the 2-5 seeds of a grid this
      is the honest choice: the ordinary bootstrap of 3 values can only take 10 distinct
      means and understates the spread by a factor (n − 1)/n, so it would call the pairs
      (−3.4, +4.25, −3.75) phase I with probability 20/27 = 0.74 although one pair of three
      says II.
    * ``method="bootstrap"``: the values are resampled with replacement (fine with many
      seeds or pairs).

    Metrics are drawn independently of each other. A metric with fewer than 2 values in a
    cell (the authors' mc comes from one pair), or with no per-seed table, is held at its
    cell value, and the cell's ``reason`` says so. Every draw is classified with
    :func:`classify` and ``thresholds``; ``p_<phase>`` is the fraction of draws in that
    phase.

    **The IV-A/IV-B split.** Made only where the CKA separates the well connected cells
    beyond the seed spread: when at least one cell is IV-B and at least one IV-A, each with
    probability ``>= level``. Otherwise every well connected cell is reported as ``"IV"``
    (``p_IV = p_IV-A + p_IV-B``) and the reason is in ``reason`` and ``.attrs["iv_reason"]``.
    When the split is made, a cell that is IV with probability ``>= level`` but neither IV-A
    nor IV-B with that probability is also reported as ``"IV"``.

    **Undetermined.** A cell whose most likely label has probability below ``level`` is
    ``"undetermined"``; ``p_phase`` is then that largest probability.

    **The local axis (flags only; the label is :func:`classify`'s rule).** The paper's table
    has the Hessian large in I and II, small in III and IV. ``hessian`` (column, default
    ``lambda_max``) is called *large* above ``hessian_high``; when that is None the threshold
    is the ranking rule: the geometric mean of the median Hessian of the cells labelled I or
    II and that of the cells labelled III or IV (any split), so it needs a cell on each side.
    ``hessian_flag`` marks a labelled cell whose Hessian is on the other side of its phase's
    row; ``loss_flag`` one whose train loss is (high: ``> thresholds.train_loss_high``; I and
    II have a high train loss, III and IV a small one). Undetermined cells are not flagged.

    Args:
        cells: one row per cell with ``load``, ``temperature`` and the cell values (``mc``,
            ``train_loss``, ``cka``, ``hessian``), as for :func:`classify`.
        pairs: one row per seed pair (``load``, ``temperature``, ``mc``, ``cka``), e.g.
            chapter 3's ``global_pairs.csv`` or :func:`reference.load_shipped_pairs`.
        runs: one row per run (``load``, ``temperature``, ``train_loss``, ``lambda_max``;
            rows with ``status == "diverged"`` are ignored), e.g. chapter 1's ``grid.csv``
            joined with chapter 2's ``local.csv``, or ``load_shipped_results(long=True)``.
        level: probability at or above which a label is given, in (0.5, 1].
        n_resamples: draws per cell (the Monte Carlo error of a p near 0.7 is ~0.01 at 2000).
        seed: seed of the resampling; the result is deterministic for a given seed.

    Returns:
        A frame aligned with ``cells.index``: ``phase`` (categorical over
        :data:`CONFIDENCE_PHASES`; missing where :func:`classify` gives no label),
        ``p_phase``, ``p_I``, ``p_II``, ``p_III``, ``p_IV-A``, ``p_IV-B``, ``p_IV``,
        ``phase_of_means`` (:func:`classify` on the cell values), ``hessian_large``,
        ``hessian_flag``, ``loss_flag``, ``n_mc`` and ``n_cka`` (pairs), ``n_train_loss``
        (runs), and ``reason`` (why undetermined, IV or flagged; empty otherwise).
        ``.attrs`` holds ``iv_split`` (bool), ``iv_reason``, ``hessian_threshold``,
        ``level`` and ``method``.
    """
    if not 0.5 < level <= 1.0:
        raise ValueError(f"level must be in (0.5, 1], got {level}")
    if method not in ("t", "bootstrap"):
        raise ValueError(f"method must be 't' or 'bootstrap', got {method!r}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    keys = [load, temperature]
    missing = [k for k in keys if k not in cells.columns]
    if missing:
        raise KeyError(f"classify_with_confidence: key columns {missing} not in cells")
    cell_keys = list(cells[keys].itertuples(index=False, name=None))
    n_cells = len(cells)
    rng = np.random.default_rng(seed)

    needed = list(_PAIR_METRICS) + ["train_loss"]
    if thresholds.lambda_large is not None:
        needed.append("lambda_max")
    draws: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    for m in needed:
        source = pairs if m in _PAIR_METRICS else runs
        values = _values_by_cell(source, keys, m, cell_keys)
        center = numeric_column(cells, m)
        if values is not None and m not in cells.columns:
            center = np.array([v.mean() if v.size else np.nan for v in values])
        draws[m], counts[m] = _draw_means(center, values, n_resamples, method, rng)

    # classify every draw at once: row r * n_cells + i is draw r of cell i
    flat = pd.DataFrame({m: d.T.ravel() for m, d in draws.items()})
    labels = np.asarray(classify(flat, thresholds).astype(object)).reshape(n_resamples, n_cells)
    of_means = classify(cells, thresholds)
    probs = {}
    n_lab = (~pd.isna(labels)).sum(axis=0)
    for ph in PHASES:
        with np.errstate(invalid="ignore", divide="ignore"):
            probs[ph] = np.where(n_lab > 0, (labels == ph).sum(axis=0) / np.maximum(n_lab, 1),
                                 np.nan)
    probs["IV"] = probs["IV-A"] + probs["IV-B"]
    known = of_means.notna().to_numpy()

    # the IV-A/IV-B split, decided over the grid
    sure_b = int(np.sum(known & (probs["IV-B"] >= level)))
    sure_a = int(np.sum(known & (probs["IV-A"] >= level)))
    n_iv = int(np.sum(known & (probs["IV"] >= level)))
    iv_split = sure_a > 0 and sure_b > 0
    if iv_split:
        iv_reason = (f"IV split by CKA (cka_high = {thresholds.cka_high:g}): {sure_b} cell(s) "
                     f"IV-B and {sure_a} IV-A with p >= {level:g}")
    elif n_iv == 0:
        iv_reason = "IV not split: no cell is well connected with p >= " f"{level:g}"
    else:
        iv_reason = (f"IV not split: CKA does not separate the {n_iv} well connected cell(s) "
                     f"beyond the seed spread ({sure_b} IV-B and {sure_a} IV-A with p >= "
                     f"{level:g}; both are needed)")

    phase = np.full(n_cells, None, dtype=object)
    p_phase = np.full(n_cells, np.nan)
    reasons: list[list[str]] = [[] for _ in range(n_cells)]
    options = ("I", "II", "III", "IV-A", "IV-B") if iv_split else ("I", "II", "III", "IV")
    for i in range(n_cells):
        if not known[i]:
            reasons[i].append("no label: a value the rule needs is missing")
            continue
        p = {ph: probs[ph][i] for ph in options}
        best = max(p, key=p.get)
        if p[best] >= level:
            phase[i], p_phase[i] = best, p[best]
        elif iv_split and probs["IV"][i] >= level:
            phase[i], p_phase[i] = "IV", probs["IV"][i]
            reasons[i].append(f"IV-A/IV-B within the seed spread (p_IV-A {probs['IV-A'][i]:.2f}, "
                              f"p_IV-B {probs['IV-B'][i]:.2f})")
        else:
            phase[i], p_phase[i] = UNDETERMINED, p[best]
            top = sorted(p.items(), key=lambda kv: -kv[1])[:2]
            reasons[i].append("undetermined: " + ", ".join(f"p_{k} {v:.2f}" for k, v in top)
                              + f" < {level:g}")
        if not iv_split and phase[i] == "IV":
            reasons[i].append(iv_reason)
        held = [m for m in needed if counts[m][i] < 2 and np.isfinite(draws[m][i, 0])]
        if held and phase[i] is not None:
            reasons[i].append(", ".join(f"{m} from {counts[m][i]} value(s)" for m in held)
                              + ": spread unknown, held fixed")

    # the local axis
    hess = numeric_column(cells, hessian)
    if not np.isfinite(hess).any() and runs is not None and hessian in runs.columns:
        vals = _values_by_cell(runs, keys, hessian, cell_keys)
        hess = np.array([v.mean() if v.size else np.nan for v in vals])
    ph_arr = np.array([p if p is not None else "" for p in phase], dtype=object)
    high_side = np.isin(ph_arr, _HIGH_LOCAL)
    low_side = np.isin(ph_arr, _LOW_LOCAL)
    if hessian_high is not None:
        h_thr = float(hessian_high)
    else:
        a, b = hess[high_side & (hess > 0)], hess[low_side & (hess > 0)]
        h_thr = float(np.sqrt(np.median(a) * np.median(b))) if a.size and b.size else np.nan
    with np.errstate(invalid="ignore"):
        large = hess > h_thr
    h_known = np.isfinite(hess) & np.isfinite(h_thr)
    hessian_flag = h_known & ((high_side & ~large) | (low_side & large))
    loss = numeric_column(cells, "train_loss")
    with np.errstate(invalid="ignore"):
        high_loss = loss > thresholds.train_loss_high
    loss_flag = np.isfinite(loss) & ((high_side & ~high_loss) | (low_side & high_loss))
    for i in range(n_cells):
        if hessian_flag[i]:
            reasons[i].append(f"Hessian {'small' if high_side[i] else 'large'} for {phase[i]} "
                              f"({hessian} {hess[i]:.3g} vs {h_thr:.3g})")
        if loss_flag[i]:
            reasons[i].append(f"train loss {'low' if high_side[i] else 'high'} for {phase[i]} "
                              f"({loss[i]:.3g} vs {thresholds.train_loss_high:g})")

    out = pd.DataFrame(index=cells.index)
    out["phase"] = pd.Categorical(phase, categories=list(CONFIDENCE_PHASES))
    out["p_phase"] = p_phase
    for ph in ("I", "II", "III", "IV-A", "IV-B", "IV"):
        out[f"p_{ph}"] = np.where(known, probs[ph], np.nan)
    out["phase_of_means"] = of_means.to_numpy()
    out["hessian_large"] = pd.array(np.where(h_known, large, None), dtype="boolean")
    out["hessian_flag"] = hessian_flag
    out["loss_flag"] = loss_flag
    out["n_mc"] = counts["mc"]
    out["n_cka"] = counts["cka"]
    out["n_train_loss"] = counts["train_loss"]
    out["reason"] = ["; ".join(r) for r in reasons]
    out.attrs.update(iv_split=iv_split, iv_reason=iv_reason, hessian_threshold=h_thr,
                     level=level, method=method)
    return out
