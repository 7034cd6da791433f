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
(:func:`landscape_utils.metrics.profiles.mode_connectivity`).

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

from ..core.settings import FromParams
from ..metrics.profiles import mode_connectivity

__all__ = [
    "PAPER_POINTS",
    "mc_on_points",
    "PHASES",
    "METRICS",
    "PhaseThresholds",
    "CONFIDENCE_PHASES",
    "UNDETERMINED",
    "cell_table",
    "classify",
    "classify_with_confidence",
    "METHODS",
    "SeedJackknife",
    "seed_jackknife",
    "neighbour_spread",
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
# Mode connectivity on the paper's points
# --------------------------------------------------------------------------------------
#: The points along the curve where the paper evaluated mc (t = 0, 1/4, 1/2, 3/4, 1); the
#: default thresholds were read off mc on these five points.
PAPER_POINTS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)


def mc_on_points(paths: pd.DataFrame, keys: Sequence[str], points: Sequence[float] = PAPER_POINTS,
                 path: str = "bezier", atol: float = 1e-6) -> pd.DataFrame:
    """mc of every pair recomputed on a subset of the evaluated points of its path.

    mc is a maximum over the points of the path, so on more points |mc| can only grow: mc
    on the book's grid of points is not the quantity the paper's thresholds were read off
    (its five points, :data:`PAPER_POINTS`). This recomputes :func:`mode_connectivity` on
    ``points`` where the path was evaluated at all of them.

    Args:
        paths: long-form profiles (``paths.csv``): ``keys`` (the cell's axes and the pair
            id, e.g. ``[load, temperature, "pair"]``), ``path``, ``t`` and ``train_err``
            (percent).
        points: the values of t to keep.

    Returns:
        One row per (``keys``) of ``path``: the keys, ``mc_all`` (on every evaluated point),
        ``n_points``, and ``mc_points`` (on ``points``; NaN when one of them was not
        evaluated).
    """
    keys = list(keys)
    need = keys + ["path", "t", "train_err"]
    missing = [c for c in need if c not in paths.columns]
    if missing:
        raise KeyError(f"mc_on_points: columns {missing} not in the paths table")
    want = np.asarray(points, dtype=np.float64)
    rows = []
    for k, g in paths[paths["path"] == path].groupby(keys, sort=True):
        g = g.sort_values("t")
        t = g["t"].to_numpy(np.float64)
        err = g["train_err"].to_numpy(np.float64)
        hit = [np.flatnonzero(np.isclose(t, p, atol=atol)) for p in want]
        sub = (mode_connectivity(err[[h[0] for h in hit]])[0]
               if all(h.size for h in hit) and np.all(np.isfinite(err)) else np.nan)
        mc_all = mode_connectivity(err)[0] if np.all(np.isfinite(err)) and err.size >= 2 else np.nan
        rows.append({**dict(zip(keys, k if isinstance(k, tuple) else (k,))),
                     "mc_all": mc_all, "n_points": int(t.size), "mc_points": sub})
    return pd.DataFrame(rows, columns=keys + ["mc_all", "n_points", "mc_points"])


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
    ResNet18/CIFAR-10 grid (``landscape_utils.experiments.reference``) so that the rule reproduces the
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
#: Resampling methods of :func:`classify_with_confidence`: ``"jackknife"`` resamples the
#: seeds (the unit of replication); ``"t"`` and ``"bootstrap"`` are the former per-value
#: rules, kept to compare with (they treat the pairs of a cell as independent).
METHODS: tuple[str, ...] = ("jackknife", "t", "bootstrap")
#: Per-pair metrics (from ``pairs``) and per-run metrics (from ``runs``) the rule reads.
_PAIR_METRICS = ("mc", "cka")
_RUN_METRICS = ("train_loss", "lambda_max")
_HIGH_LOCAL = ("I", "II")                      # the table's "high loss, large Hessian" rows
_LOW_LOCAL = ("III", "IV", "IV-A", "IV-B")     # "small loss, small Hessian"
#: Columns naming the seed of a run, and the two seeds of a pair, first match wins.
RUN_SEED_COLUMNS: tuple[str, ...] = ("seed", "run")
PAIR_SEED_COLUMNS: tuple[tuple[str, str], ...] = (("seed_a", "seed_b"), ("run_a", "run_b"))


# --------------------------------------------------------------------------------------
# The seed jackknife
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SeedJackknife:
    """A cell mean and its spread over seeds (:func:`seed_jackknife`)."""

    mean: float            # mean of the values (runs or pairs)
    se: float              # jackknife standard error over seeds; NaN when it cannot be formed
    df: int                # degrees of freedom for t quantiles: seeds - 1
    n_seeds: int           # seeds that enter the values
    n_values: int          # runs or pairs
    loo: np.ndarray        # shape (n_seeds,): the mean with each seed left out


def seed_jackknife(values: Sequence[float] | np.ndarray, seeds: Sequence | np.ndarray) -> SeedJackknife:
    """The mean of per-run or per-pair values and its jackknife standard error over seeds.

    The seed is the unit of replication: the C(S, 2) pairs of a cell share seeds, so their
    spread understates the spread of their mean (by 1.2-2.4x at S = 3 under additive seed
    effects). Leaving out seed i drops every value that involves it; with θ₍ᵢ₎ those
    leave-one-out means and θ̄ their mean, SE² = (S − 1)/S · Σᵢ (θ₍ᵢ₎ − θ̄)², with S − 1
    degrees of freedom. For per-run values it equals the usual s/√S; for pairs it is exact
    under additive seed effects and conservative when pairs also carry noise of their own.

    Args:
        values: shape (n,), one value per run or per pair; NaN values are dropped.
        seeds: shape (n,) (the seed of each run) or (n, 2) (the two seeds of each pair).

    Returns:
        :class:`SeedJackknife`; ``se`` is NaN with fewer than two seeds or when leaving a
        seed out leaves no value (two seeds, one pair).
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    ids = np.asarray(seeds, dtype=object)
    ids = ids.reshape(-1, 1) if ids.ndim == 1 else ids
    if ids.ndim != 2 or ids.shape[0] != v.size:
        raise ValueError(f"seeds must have one row per value, got {ids.shape[0]} for {v.size}")
    ok = np.isfinite(v)
    v, ids = v[ok], ids[ok]
    uniq = list(dict.fromkeys(ids.ravel().tolist()))
    mean = float(v.mean()) if v.size else float("nan")
    loo = np.array([v[~(ids == s).any(axis=1)].mean() if (~(ids == s).any(axis=1)).any()
                    else np.nan for s in uniq])
    s = len(uniq)
    if s < 2 or not np.all(np.isfinite(loo)):
        return SeedJackknife(mean, float("nan"), max(s - 1, 0), s, int(v.size), loo)
    se = float(np.sqrt((s - 1) / s * np.sum((loo - loo.mean()) ** 2)))
    return SeedJackknife(mean, se, s - 1, s, int(v.size), loo)


def neighbour_spread(cells: pd.DataFrame, metric: str = "mc", load: str = "width",
                     temperature: str = "batch_size") -> float:
    """The spread (sd) of one value of ``metric`` around its cell's trend, read off the grid.

    For grids that hold one value per cell (the authors' mc comes from one seed pair), the
    spread cannot come from the cell. Neighbouring cells of a grid measure nearly the same
    thing, so the second differences along each axis, r = x₋ − 2x + x₊, are mostly noise:
    with independent noise of sd σ and a locally linear trend, r has sd √6·σ. The estimate
    is robust, σ = median |r| / (0.6745·√6), so that the few steep steps at phase boundaries
    do not dominate; curvature can only inflate it (a conservative borrow).

    Args:
        cells: one row per cell with ``load``, ``temperature`` and ``metric``.

    Returns:
        σ, or NaN when the grid has no three cells in a row along either axis.
    """
    x = cells.pivot_table(index=load, columns=temperature, values=metric, aggfunc="mean")
    x = x.sort_index().sort_index(axis=1).to_numpy(dtype=np.float64)
    r = np.concatenate([np.diff(x, n=2, axis=0).ravel() if x.shape[0] >= 3 else np.array([]),
                        np.diff(x, n=2, axis=1).ravel() if x.shape[1] >= 3 else np.array([])])
    r = r[np.isfinite(r)]
    if not r.size:
        return float("nan")
    return float(np.median(np.abs(r)) / (stats.norm.ppf(0.75) * np.sqrt(6.0)))


# --------------------------------------------------------------------------------------
# Phases with a confidence: the stages
# --------------------------------------------------------------------------------------
def _ok_rows(t: pd.DataFrame) -> pd.DataFrame:
    if "status" not in t.columns:
        return t
    return t[~t["status"].astype("string").str.lower().eq("diverged").fillna(False).astype(bool)]


def _seed_columns(table: pd.DataFrame, pair: bool) -> list[str] | None:
    for cols in (PAIR_SEED_COLUMNS if pair else [(c,) for c in RUN_SEED_COLUMNS]):
        if all(c in table.columns for c in cols):
            return list(cols)
    return None


def _seeded_values(table: pd.DataFrame | None, keys: list[str], metric: str,
                   cell_keys: list[tuple], pair: bool) -> list[tuple[np.ndarray, np.ndarray | None]] | None:
    """Per cell (in ``cell_keys`` order): the finite values of ``metric``, shape (n,), and
    their seed ids, shape (n, 1) for runs or (n, 2) for pairs (None when the table names no
    seeds). None when the table lacks the column. Diverged rows are left out."""
    if table is None or metric not in table.columns:
        return None
    missing = [k for k in keys if k not in table.columns]
    if missing:
        raise KeyError(f"classify_with_confidence: key columns {missing} not in the table "
                       f"that holds {metric!r}")
    t = _ok_rows(table)
    scols = _seed_columns(t, pair)
    t = t.assign(_v=pd.to_numeric(t[metric], errors="coerce"))
    t = t[np.isfinite(t["_v"].to_numpy(dtype=np.float64))]
    groups = {k if isinstance(k, tuple) else (k,): g for k, g in t.groupby(keys, sort=False)}
    out = []
    for ck in cell_keys:
        g = groups.get(ck)
        if g is None:
            out.append((np.array([]), None if scols is None else np.empty((0, 1), dtype=object)))
            continue
        ids = None if scols is None else g[scols].to_numpy(dtype=object)
        out.append((g["_v"].to_numpy(np.float64), ids))
    return out


def _values_by_cell(table: pd.DataFrame | None, keys: list[str], metric: str,
                    cell_keys: list[tuple]) -> list[np.ndarray] | None:
    """Finite values of ``metric`` per cell, or None when the table lacks the column."""
    seeded = _seeded_values(table, keys, metric, cell_keys, pair=False)
    return None if seeded is None else [v for v, _ in seeded]


def _draw_means(center: np.ndarray, values: list[np.ndarray] | None, n_resamples: int,
                method: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The former per-value draws (``method`` "t" or "bootstrap"), one metric at a time:
    shape (cells, n_resamples), and the number of values per cell. A cell with fewer than
    2 values is held at its centre."""
    draws = np.repeat(center[:, None], n_resamples, axis=1)
    if values is None:
        return draws, np.zeros(len(center), dtype=int)
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


def _jackknife_cell(center: dict[str, float], vals: dict[str, tuple[np.ndarray, np.ndarray | None]],
                    n_resamples: int, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Joint draws of one cell's metrics from a jackknife over its seeds.

    Every metric with seed ids gets its leave-one-seed-out means θ₍ᵢ₎; one draw is
    θ̂ + √((S−1)/S)·Σᵢ gᵢ(θ₍ᵢ₎ − θ̄)·√(ν/χ²_ν) with the same g ~ N(0, I_S) and χ² for every
    metric, so the metrics stay jointly drawn (a multivariate t with ν = S − 1 whose
    marginals are θ̂ + SE_jack·T_ν). Returns the draws (metric → (n_resamples,)) of the
    metrics whose spread is known, and the status of the others ("unknown", "no seed ids").
    """
    seeds = list(dict.fromkeys(s for v, ids in vals.values() if ids is not None for s in ids.ravel()))
    pos = {s: i for i, s in enumerate(seeds)}
    devs, status, dfs = {}, {}, []
    for m, (v, ids) in vals.items():
        if ids is None:
            status[m] = "no seed ids"
            continue
        jk = seed_jackknife(v, ids)
        if not np.isfinite(jk.se) or not np.isfinite(center[m]):
            status[m] = "unknown"
            continue
        cols = [pos[s] for s in dict.fromkeys(ids.ravel().tolist())]
        devs[m] = (cols, np.sqrt((jk.n_seeds - 1) / jk.n_seeds) * (jk.loo - jk.loo.mean()))
        dfs.append(jk.df)
    if not devs:
        return {}, status
    df = min(dfs)
    g = rng.standard_normal((n_resamples, len(seeds)))
    tfac = np.sqrt(df / rng.chisquare(df, size=n_resamples))
    draws = {m: center[m] + tfac * (g[:, cols] @ d) for m, (cols, d) in devs.items()}
    return draws, status


def _draw_cells(cells: pd.DataFrame, pairs: pd.DataFrame | None, runs: pd.DataFrame | None,
                keys: list[str], needed: list[str], method: str, n_resamples: int,
                spread: dict[str, float], rng: np.random.Generator
                ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[dict[str, str]]]:
    """Draws of every needed metric, shape (cells, n_resamples); the number of values per
    cell; and per cell how each metric whose spread the cell cannot give was handled
    (metric → "held" | "borrowed" | "independent")."""
    cell_keys = list(cells[keys].itertuples(index=False, name=None))
    n_cells = len(cells)
    seeded = {m: _seeded_values(pairs if m in _PAIR_METRICS else runs, keys, m, cell_keys,
                                pair=m in _PAIR_METRICS) for m in needed}
    centers, counts = {}, {}
    for m in needed:
        c = numeric_column(cells, m)
        if seeded[m] is not None and m not in cells.columns:
            c = np.array([v.mean() if v.size else np.nan for v, _ in seeded[m]])
        centers[m] = c
        counts[m] = (np.zeros(n_cells, dtype=int) if seeded[m] is None
                     else np.array([v.size for v, _ in seeded[m]]))
    draws = {m: np.repeat(centers[m][:, None], n_resamples, axis=1) for m in needed}
    handled: list[dict[str, str]] = [{} for _ in range(n_cells)]
    if method != "jackknife":
        for m in needed:
            vals = None if seeded[m] is None else [v for v, _ in seeded[m]]
            draws[m], _ = _draw_means(centers[m], vals, n_resamples, method, rng)
            for i in np.flatnonzero(counts[m] < 2):
                handled[i][m] = "held"
        return draws, counts, handled
    for i in range(n_cells):
        vals = {m: seeded[m][i] for m in needed if seeded[m] is not None}
        got, status = _jackknife_cell({m: centers[m][i] for m in needed}, vals, n_resamples, rng)
        for m, d in got.items():
            draws[m][i] = d
        for m in needed:
            if m in got or not np.isfinite(centers[m][i]):
                continue
            st = status.get(m, "unknown")
            if st == "no seed ids" and counts[m][i] >= 2:
                draws[m][i], _ = _draw_means(centers[m][i:i + 1], [vals[m][0]], n_resamples, "t", rng)
                handled[i][m] = "independent"
            elif np.isfinite(spread.get(m, np.nan)):
                n = max(int(counts[m][i]), 1)
                draws[m][i] = centers[m][i] + spread[m] / np.sqrt(n) * rng.standard_normal(n_resamples)
                handled[i][m] = "borrowed"
            else:
                handled[i][m] = "held"
    return draws, counts, handled


def _phase_probabilities(draws: dict[str, np.ndarray], thresholds: PhaseThresholds
                         ) -> dict[str, np.ndarray]:
    """p_<phase> per cell (shape (cells,)) from classifying every draw, plus ``p_IV``."""
    n_cells, n_resamples = next(iter(draws.values())).shape
    # row r * n_cells + i is draw r of cell i
    flat = pd.DataFrame({m: d.T.ravel() for m, d in draws.items()})
    labels = np.asarray(classify(flat, thresholds).astype(object)).reshape(n_resamples, n_cells)
    n_lab = (~pd.isna(labels)).sum(axis=0)
    probs = {}
    for ph in PHASES:
        probs[ph] = np.where(n_lab > 0, (labels == ph).sum(axis=0) / np.maximum(n_lab, 1), np.nan)
    probs["IV"] = probs["IV-A"] + probs["IV-B"]
    return probs


def _iv_split(probs: dict[str, np.ndarray], known: np.ndarray, level: float,
              thresholds: PhaseThresholds) -> tuple[bool, str]:
    """Whether CKA splits IV over the grid (a sure IV-A and a sure IV-B cell), and why."""
    sure_b = int(np.sum(known & (probs["IV-B"] >= level)))
    sure_a = int(np.sum(known & (probs["IV-A"] >= level)))
    n_iv = int(np.sum(known & (probs["IV"] >= level)))
    if sure_a > 0 and sure_b > 0:
        return True, (f"IV split by CKA (cka_high = {thresholds.cka_high:g}): {sure_b} cell(s) "
                      f"IV-B and {sure_a} IV-A with p >= {level:g}")
    if n_iv == 0:
        return False, f"IV not split: no cell is well connected with p >= {level:g}"
    return False, (f"IV not split: CKA does not separate the {n_iv} well connected cell(s) "
                   f"beyond the seed spread ({sure_b} IV-B and {sure_a} IV-A with p >= "
                   f"{level:g}; both are needed)")


_HANDLED_TEXT = {
    "held": "spread unknown, held fixed: the label is conditional on it",
    "borrowed": "spread borrowed from the grid's neighbouring cells",
    "independent": "no seed ids: its values treated as independent (understates the spread)",
}


def _labels(probs: dict[str, np.ndarray], known: np.ndarray, level: float, iv_split: bool,
            iv_reason: str, counts: dict[str, np.ndarray], handled: list[dict[str, str]],
            spread: dict[str, float]) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    """Each cell's label (most likely phase if ``>= level``, else IV or undetermined), its
    probability and the reasons."""
    n_cells = len(known)
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
        for m, how in handled[i].items():
            sd = f" (sd {spread[m]:.3g})" if how == "borrowed" else ""
            reasons[i].append(f"{m} from {counts[m][i]} value(s): {_HANDLED_TEXT[how]}{sd}")
    return phase, p_phase, reasons


def _local_flags(cells: pd.DataFrame, runs: pd.DataFrame | None, keys: list[str],
                 phase: np.ndarray, hessian: str, hessian_high: float | None,
                 train_loss_high: float, reasons: list[list[str]]) -> dict[str, object]:
    """The local axis (flags only): which labelled cells have a Hessian or a train loss on
    the other side of their phase's row; appends the reasons."""
    hess = numeric_column(cells, hessian)
    if not np.isfinite(hess).any() and runs is not None and hessian in runs.columns:
        cell_keys = list(cells[keys].itertuples(index=False, name=None))
        vals = _values_by_cell(runs, keys, hessian, cell_keys)
        hess = np.array([v.mean() if v.size else np.nan for v in vals])
    ph_arr = np.array([p if p is not None else "" for p in phase], dtype=object)
    high_side, low_side = np.isin(ph_arr, _HIGH_LOCAL), np.isin(ph_arr, _LOW_LOCAL)
    if hessian_high is not None:
        h_thr = float(hessian_high)
    else:
        a, b = hess[high_side & (hess > 0)], hess[low_side & (hess > 0)]
        h_thr = float(np.sqrt(np.median(a) * np.median(b))) if a.size and b.size else np.nan
    with np.errstate(invalid="ignore"):
        large = hess > h_thr
        loss = numeric_column(cells, "train_loss")
        high_loss = loss > train_loss_high
    h_known = np.isfinite(hess) & np.isfinite(h_thr)
    hessian_flag = h_known & ((high_side & ~large) | (low_side & large))
    loss_flag = np.isfinite(loss) & ((high_side & ~high_loss) | (low_side & high_loss))
    for i in range(len(cells)):
        if hessian_flag[i]:
            reasons[i].append(f"Hessian {'small' if high_side[i] else 'large'} for {phase[i]} "
                              f"({hessian} {hess[i]:.3g} vs {h_thr:.3g})")
        if loss_flag[i]:
            reasons[i].append(f"train loss {'low' if high_side[i] else 'high'} for {phase[i]} "
                              f"({loss[i]:.3g} vs {train_loss_high:g})")
    return {"hessian_large": pd.array(np.where(h_known, large, None), dtype="boolean"),
            "hessian_flag": hessian_flag, "loss_flag": loss_flag, "threshold": h_thr}


def classify_with_confidence(cells: pd.DataFrame, pairs: pd.DataFrame | None = None,
                             runs: pd.DataFrame | None = None, *, load: str = "width",
                             temperature: str = "batch_size",
                             thresholds: PhaseThresholds = PhaseThresholds(),
                             level: float = 0.7, n_resamples: int = 2000,
                             method: str = "jackknife",
                             hessian: str = "lambda_max", hessian_high: float | None = None,
                             seed: int = 0, spread: dict[str, float] | None = None) -> pd.DataFrame:
    """Phases with a probability: :func:`classify`'s rule applied to resampled cell values.

    **Resampling the seeds** (``method="jackknife"``, the default). The seed is the unit of
    replication: a cell's runs are its seeds, and its pairs (mc, cka per pair from
    ``pairs``) share them. Each metric the rule reads (mc, cka; train_loss, and lambda_max
    when ``thresholds.lambda_large`` is set, per run from ``runs``) gets its
    leave-one-seed-out means (:func:`seed_jackknife`: leaving out a seed drops its run and
    every pair that involves it), and the cell is redrawn ``n_resamples`` times as the
    multivariate t with S − 1 degrees of freedom these give (:func:`_jackknife_cell`):
    the same normal weights for every metric, so mc, cka and the train loss move together
    as they do when a seed is swapped. Draws are centred on the cell's value in ``cells``
    (or the mean of its values when ``cells`` lacks the column). Seeds are read from
    ``seed_a``/``seed_b`` (pairs) and ``seed`` or ``run`` (runs).

    A metric whose spread the cell cannot give (one pair, as in the authors' mc; two seeds
    of a pair metric; no per-seed table) is held at its cell value, so the label is
    *conditional* on it (the reason says so), unless ``spread`` gives a borrowed sd of one
    value (e.g. :func:`neighbour_spread`): then the cell mean of n values is drawn as
    value + sd/√n · Z. Pairs without seed ids are treated as independent (t on n − 1 df;
    this understates the spread; the reason says so).

    ``method="t"`` and ``"bootstrap"`` are the former per-value rules (each metric drawn on
    its own, its pairs treated as independent), kept to compare with.

    Every draw is classified with :func:`classify` and ``thresholds``; ``p_<phase>`` is the
    fraction of draws in that phase.

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
        pairs: one row per seed pair (``load``, ``temperature``, ``seed_a``, ``seed_b``,
            ``mc``, ``cka``), e.g. chapter 3's ``global_pairs.csv`` or
            :func:`reference.load_shipped_pairs`.
        runs: one row per run (``load``, ``temperature``, ``seed`` or ``run``,
            ``train_loss``, ``lambda_max``; rows with ``status == "diverged"`` are ignored),
            e.g. chapter 1's ``grid.csv`` joined with chapter 2's ``local.csv``, or
            ``load_shipped_results(long=True)``.
        level: probability at or above which a label is given, in (0.5, 1].
        n_resamples: draws per cell (the Monte Carlo error of a p near 0.7 is ~0.01 at 2000).
        method: one of :data:`METHODS`.
        seed: seed of the resampling; the result is deterministic for a given seed.
        spread: metric → borrowed sd of one value, for cells that cannot give their own.

    Returns:
        A frame aligned with ``cells.index``: ``phase`` (categorical over
        :data:`CONFIDENCE_PHASES`; missing where :func:`classify` gives no label),
        ``p_phase``, ``p_I``, ``p_II``, ``p_III``, ``p_IV-A``, ``p_IV-B``, ``p_IV``,
        ``phase_of_means`` (:func:`classify` on the cell values), ``hessian_large``,
        ``hessian_flag``, ``loss_flag``, ``n_mc`` and ``n_cka`` (pairs), ``n_train_loss``
        (runs), ``conditional_on`` (the metrics held fixed in this cell, comma-separated;
        empty when none) and ``reason`` (why undetermined, IV, flagged or conditional;
        empty otherwise). ``.attrs`` holds ``iv_split`` (bool), ``iv_reason``,
        ``hessian_threshold``, ``level``, ``method`` and ``spread``.
    """
    if not 0.5 < level <= 1.0:
        raise ValueError(f"level must be in (0.5, 1], got {level}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    keys = [load, temperature]
    missing = [k for k in keys if k not in cells.columns]
    if missing:
        raise KeyError(f"classify_with_confidence: key columns {missing} not in cells")
    spread = dict(spread or {})
    needed = list(_PAIR_METRICS) + ["train_loss"]
    if thresholds.lambda_large is not None:
        needed.append("lambda_max")
    rng = np.random.default_rng(seed)
    draws, counts, handled = _draw_cells(cells, pairs, runs, keys, needed, method,
                                         n_resamples, spread, rng)
    probs = _phase_probabilities(draws, thresholds)
    of_means = classify(cells, thresholds)
    known = of_means.notna().to_numpy()
    iv_split, iv_reason = _iv_split(probs, known, level, thresholds)
    phase, p_phase, reasons = _labels(probs, known, level, iv_split, iv_reason, counts,
                                      handled, spread)
    local = _local_flags(cells, runs, keys, phase, hessian, hessian_high,
                         thresholds.train_loss_high, reasons)

    out = pd.DataFrame(index=cells.index)
    out["phase"] = pd.Categorical(phase, categories=list(CONFIDENCE_PHASES))
    out["p_phase"] = p_phase
    for ph in ("I", "II", "III", "IV-A", "IV-B", "IV"):
        out[f"p_{ph}"] = np.where(known, probs[ph], np.nan)
    out["phase_of_means"] = of_means.to_numpy()
    for col in ("hessian_large", "hessian_flag", "loss_flag"):
        out[col] = local[col]
    out["n_mc"] = counts["mc"]
    out["n_cka"] = counts["cka"]
    out["n_train_loss"] = counts["train_loss"]
    out["conditional_on"] = [",".join(m for m, how in h.items() if how == "held") for h in handled]
    out["reason"] = ["; ".join(r) for r in reasons]
    out.attrs.update(iv_split=iv_split, iv_reason=iv_reason, hessian_threshold=local["threshold"],
                     level=level, method=method, spread=spread)
    return out
