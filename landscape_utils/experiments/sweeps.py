"""Chapter 4's two extra sweeps, their summaries, verdicts and charts.

* **Training longer** (the epochs sweep): at one temperature, a poorly and a well
  connected load are trained for an increasing number of epochs, each length a separate
  run. Yang et al. (2021) read phase III (fitted, poorly connected) as the regime where
  driving the train loss further down can lower the test accuracy; in the well connected
  phase IV it should not. :func:`epochs_summary` averages the runs over seeds and
  :func:`zero_loss_verdict` tests that reading at lengths fixed in advance (Welch's t on the
  difference of the two cells' drops).
* **Double descent with label noise**: a fraction of the training labels is replaced by a
  random other class, and the test error is followed along the width (at one temperature)
  and along the temperature (at one width). :func:`noise_curve` averages the runs and
  :func:`double_descent_verdict` asks whether the test error has an interior peak that
  stands out of the seed spread, against flat curves whose peak is picked the same way.

Verdicts are dicts ``{"verdict", "evidence", "n", "p_value", "kind"}`` (keyword arguments
of :class:`landscape_utils.experiments.findings.Finding`) with verdict ``holds``, ``fails`` or
``inconclusive`` (:mod:`landscape_utils.experiments.findings` turns them into findings). The chart
builders import altair lazily and size every chart to the book's content column.
"""
from __future__ import annotations

from typing import Any, Mapping

import altair as alt
import numpy as np
import pandas as pd
from scipy import stats

from ..core.plotting import AXIS_LABELS, fit_width, line_color

__all__ = [
    "epochs_summary",
    "zero_loss_verdict",
    "reference_length",
    "noise_curve",
    "double_descent_verdict",
    "epochs_chart",
    "noise_chart",
]

#: Phases whose seeds are separated by a barrier (mc < 0): "poorly connected".
POORLY_CONNECTED: tuple[str, ...] = ("I", "III")
#: Phases whose seeds are joined by a low-loss path: "well connected".
WELL_CONNECTED: tuple[str, ...] = ("IV", "IV-A", "IV-B")


def _ok(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"] == "ok"] if "status" in runs else runs


# --------------------------------------------------------------------------------------
# Training longer
# --------------------------------------------------------------------------------------
def epochs_summary(runs: pd.DataFrame, load: str) -> pd.DataFrame:
    """Per (load value, num_epochs) over the finished seeds of the epochs sweep: ``n``
    (seeds), mean ``train_loss``, mean ``test_acc`` and ``test_acc_std`` (sample std over
    seeds, ddof=1; NaN with one seed). Diverged runs (``status`` other than ``ok``) are
    left out. Sorted by load and epochs."""
    need = [load, "num_epochs", "train_loss", "test_acc"]
    missing = [c for c in need if c not in runs.columns]
    if missing:
        raise KeyError(f"epochs_summary: columns {missing} not in the runs table")
    g = _ok(runs).groupby([load, "num_epochs"])
    out = pd.DataFrame({"n": g.size(), "train_loss": g.train_loss.mean(),
                        "test_acc": g.test_acc.mean(), "test_acc_std": g.test_acc.std(ddof=1)})
    return out.reset_index().sort_values([load, "num_epochs"]).reset_index(drop=True)


def _welch(means: np.ndarray, sds: np.ndarray, ns: np.ndarray, weights: np.ndarray
           ) -> tuple[float, float, float, float]:
    """A contrast Σ wᵢ·meanᵢ of independent group means, its SE, Welch–Satterthwaite df and
    two-sided p-value (t distribution). NaN SE, df and p when a group has fewer than 2
    seeds."""
    est = float(np.sum(weights * means))
    if np.any(ns < 2) or not np.all(np.isfinite(sds)):
        return est, float("nan"), float("nan"), float("nan")
    v = weights ** 2 * sds ** 2 / ns
    se = float(np.sqrt(v.sum()))
    if se == 0.0:
        return est, 0.0, float("inf"), (0.0 if est != 0 else 1.0)
    df = float(v.sum() ** 2 / np.sum(v ** 2 / (ns - 1)))
    return est, se, df, float(2 * stats.t.sf(abs(est) / se, df))


def reference_length(lengths: list[int] | np.ndarray) -> int:
    """The training length the longest run is compared with, fixed before looking at the
    accuracies: the median of the sweep's lengths (the lower one of an even count)."""
    ls = sorted(int(e) for e in set(lengths))
    return ls[(len(ls) - 1) // 2]


def _at(summary: pd.DataFrame, load: str, value: Any, epochs: int) -> pd.Series:
    row = summary[(summary[load] == value) & (summary.num_epochs == epochs)]
    if row.empty:
        raise ValueError(f"no run of the epochs sweep at {load} = {value}, {epochs} epochs")
    return row.iloc[0]


def zero_loss_verdict(summary: pd.DataFrame, load: str, poor: Any, good: Any,
                      phases: Mapping[Any, Any], *, reference: int | None = None,
                      alpha: float = 0.05) -> dict[str, object]:
    """Does training longer lower the test accuracy more in the poorly connected cell than
    in the well connected one?

    The compared lengths are fixed in advance, not picked from the accuracies (picking the
    best length and testing it against the seed spread says "holds" about a quarter of the
    time on a flat curve): the longest run against ``reference`` (default
    :func:`reference_length`, the median length). For each load the *drop* is the mean test
    accuracy at the reference minus that at the longest run; the test is Welch's t on the
    difference of the two drops, D = drop(poor) − drop(good), from the four groups' means,
    seed sds and seed counts (Welch–Satterthwaite df), two-sided at ``alpha``.

    * inconclusive: ``phases[poor]`` is not I or III, or ``phases[good]`` is not IV (IV-A,
      IV-B): the contrast needs one poorly and one well connected cell at this temperature;
      fewer than two lengths; one seed (no spread); or p >= alpha;
    * holds: D > 0 with p < alpha (the poor cell loses more by training longer);
    * fails: D < 0 with p < alpha (the well connected cell loses more).

    Args:
        summary: :func:`epochs_summary`.
        phases: load value → phase of that cell at the sweep's temperature (chapter 4).

    Returns:
        ``{"verdict", "evidence", "n", "p_value", "kind"}``.
    """
    lengths = sorted(int(e) for e in summary.num_epochs.unique())
    n_seeds = int(summary[summary[load].isin([poor, good])].n.min())
    n = f"2 cells x {len(lengths)} lengths x {n_seeds} seed(s)"
    out = {"n": n, "p_value": None, "kind": "test"}
    if len(lengths) < 2:
        return {**out, "verdict": "inconclusive", "evidence": "fewer than two training lengths"}
    longest = lengths[-1]
    ref = int(reference) if reference is not None else reference_length(lengths)
    if ref == longest or ref not in lengths:
        raise ValueError(f"reference must be one of the shorter lengths {lengths[:-1]}, got {ref}")
    rows = [_at(summary, load, v, e) for v in (poor, good) for e in (ref, longest)]
    means = np.array([r.test_acc for r in rows], dtype=float)
    sds = np.array([r.test_acc_std for r in rows], dtype=float)
    ns = np.array([r.n for r in rows], dtype=float)
    d, se, df, p = _welch(means, sds, ns, np.array([1.0, -1.0, -1.0, 1.0]))
    drop_p, drop_g = means[0] - means[1], means[2] - means[3]
    evidence = (f"test accuracy from {ref} to {longest} epochs (lengths fixed in advance): "
                f"{load} {poor} ({phases.get(poor)}) {means[0]:.3f} → {means[1]:.3f} (drop "
                f"{drop_p:+.3f}); {load} {good} ({phases.get(good)}) {means[2]:.3f} → "
                f"{means[3]:.3f} (drop {drop_g:+.3f}); difference of drops {d:+.3f}")
    if str(phases.get(poor)) not in POORLY_CONNECTED or str(phases.get(good)) not in WELL_CONNECTED:
        return {**out, "verdict": "inconclusive",
                "evidence": f"needs a poorly (I, III) and a well connected (IV) cell at this "
                            f"temperature; {evidence}"}
    if not np.isfinite(p):
        return {**out, "verdict": "inconclusive", "evidence": f"one seed, no spread; {evidence}"}
    evidence += f" ± {se:.3f} (SE), Welch t on {df:.1f} df, p = {p:.2g}"
    verdict = "inconclusive" if p >= alpha else ("holds" if d > 0 else "fails")
    return {**out, "verdict": verdict, "evidence": evidence, "p_value": p}


# --------------------------------------------------------------------------------------
# Double descent
# --------------------------------------------------------------------------------------
def noise_curve(runs: pd.DataFrame, x: str) -> pd.DataFrame:
    """Per value of ``x`` over finished seeds: ``n``, mean and sample std (ddof=1) of the
    test error (1 − test_acc), and the mean train error on the noisy labels
    (1 − train_acc). Sorted by ``x``."""
    need = [x, "test_acc", "train_acc"]
    missing = [c for c in need if c not in runs.columns]
    if missing:
        raise KeyError(f"noise_curve: columns {missing} not in the runs table")
    ok = _ok(runs).assign(test_err=lambda d: 1 - d.test_acc, train_err=lambda d: 1 - d.train_acc)
    g = ok.groupby(x)
    return pd.DataFrame({"n": g.size(), "test_err": g.test_err.mean(),
                         "test_err_std": g.test_err.std(ddof=1),
                         "train_err": g.train_err.mean()}).reset_index().sort_values(x)


def _peak_statistic(means: np.ndarray) -> np.ndarray:
    """Rows of means (..., k) → how far the largest mean stands above the lowest mean on
    each side of it: min(peak − min left, peak − min right); −inf when the largest is at an
    end (no interior peak)."""
    k = means.shape[-1]
    top = np.argmax(means, axis=-1)
    out = np.full(means.shape[:-1], -np.inf)
    for j in range(1, k - 1):
        sel = top == j
        if sel.any():
            m = means[sel]
            out[sel] = np.minimum(m[:, j] - m[:, :j].min(axis=1), m[:, j] - m[:, j + 1:].min(axis=1))
    return out


def double_descent_verdict(curve: pd.DataFrame, x: str, *, n_null: int = 4000, seed: int = 0,
                           alpha: float = 0.05) -> dict[str, object]:
    """Is there a peak of the test error inside the sweep, beyond the seed spread?

    The peak is the largest mean test error, so it is picked after looking; its height is
    therefore tested against the same pick made on flat curves (a parametric bootstrap
    null). Statistic: T = min(peak − lowest mean on its left, peak − lowest on its right),
    divided by the pooled seed sd s (ddof=1 per point, pooled over points). Null: every
    point has the same mean; the n_i seed values per point are normal with one sd, so
    (means, s) are redrawn as N(0, 1/n_i) and √(χ²_ν/ν) with ν = Σ(n_i − 1), and T/s is
    recomputed ``n_null`` times; p = (1 + #{T*/s* >= T/s}) / (1 + n_null).

    * fails: the largest mean test error is at an end of the sweep (no interior peak);
    * holds: an interior peak with p < alpha;
    * inconclusive: fewer than 3 values, one seed everywhere (no spread), or p >= alpha.

    Returns:
        ``{"verdict", "evidence", "n", "p_value", "kind"}``.
    """
    c = curve.sort_values(x).reset_index(drop=True)
    n = f"{len(c)} values of {x} x {int(c.n.min()) if len(c) else 0} seed(s)"
    out = {"n": n, "p_value": None, "kind": "test"}
    if len(c) < 3:
        return {**out, "verdict": "inconclusive", "evidence": f"only {len(c)} value(s) of {x}"}
    means = c.test_err.to_numpy(dtype=float)
    k = int(np.argmax(means))
    peak = c.loc[k]
    if k in (0, len(c) - 1):
        end = "first" if k == 0 else "last"
        return {**out, "verdict": "fails",
                "evidence": f"test error highest at the {end} value, {x} {peak[x]:g} "
                            f"({peak.test_err:.3f}): no interior peak"}
    left, right = c.loc[: k - 1], c.loc[k + 1:]
    lo_l, lo_r = left.loc[left.test_err.idxmin()], right.loc[right.test_err.idxmin()]
    rise, fall = float(peak.test_err - lo_l.test_err), float(peak.test_err - lo_r.test_err)
    ns = c.n.to_numpy(dtype=float)
    sds = c.test_err_std.to_numpy(dtype=float)
    dof = float(np.sum(np.where(np.isfinite(sds), ns - 1, 0)))
    evidence = (f"peak {peak.test_err:.3f} at {x} {peak[x]:g} (train error "
                f"{peak.train_err:.3f}); rise {rise:.3f} from {x} {lo_l[x]:g}, fall {fall:.3f} "
                f"to {x} {lo_r[x]:g}")
    if dof < 1:
        return {**out, "verdict": "inconclusive", "evidence": f"one seed, no spread; {evidence}"}
    pooled = float(np.sqrt(np.nansum(np.where(np.isfinite(sds), (ns - 1) * sds ** 2, 0)) / dof))
    rng = np.random.default_rng(seed)
    null_means = rng.standard_normal((n_null, len(c))) / np.sqrt(ns)
    null_sd = np.sqrt(rng.chisquare(dof, n_null) / dof)
    t_obs = min(rise, fall) / pooled if pooled > 0 else np.inf
    t_null = _peak_statistic(null_means) / null_sd
    p = float((1 + np.sum(t_null >= t_obs)) / (1 + n_null))
    evidence += (f"; pooled seed sd {pooled:.3f}; p = {p:.2g} against flat curves with the "
                 f"peak picked the same way")
    verdict = "holds" if p < alpha else "inconclusive"
    return {**out, "verdict": verdict, "evidence": evidence, "p_value": p}


# --------------------------------------------------------------------------------------
# Charts
# --------------------------------------------------------------------------------------
def epochs_chart(runs: pd.DataFrame, load: str, labels: Mapping[Any, str],
                 width: int | None = None, height: int = 200):
    """Two panels: mean test accuracy against the train loss (falling to the right), and
    test accuracy against the number of epochs (seeds as points, the mean as a line). One
    colour per load, named by ``labels`` (load value → legend text), legend below; the two
    panels fit the book's column (``width`` defaults to half of it)."""
    width = width or fit_width(2)
    ok = _ok(runs).assign(cell=lambda d: d[load].map(labels))
    mean = epochs_summary(ok, load).assign(cell=lambda d: d[load].map(labels))
    colour = line_color("cell:N", title="cell", sort=list(labels.values()), columns=1)
    tips = ["cell:N", "num_epochs:Q", alt.Tooltip("train_loss:Q", format=".3g"),
            alt.Tooltip("test_acc:Q", format=".3f")]
    y = alt.Y("test_acc:Q", scale=alt.Scale(zero=False), title="test accuracy")
    by_loss = alt.Chart(mean, width=width, height=height,
                        title="test accuracy as the train loss falls").mark_line(point=True).encode(
        x=alt.X("train_loss:Q", scale=alt.Scale(type="log", reverse=True, nice=False, padding=8),
                title="train loss (falls to the right)"),
        y=y, color=colour, order="num_epochs:Q", tooltip=tips)
    xs = alt.X("num_epochs:Q", scale=alt.Scale(type="log", nice=False, padding=8), title="epochs")
    seeds = alt.Chart(ok, width=width, height=height).mark_point(opacity=0.4).encode(
        x=xs, y=y, color=colour, tooltip=tips + ["seed:N"])
    line = alt.Chart(mean, width=width, height=height).mark_line().encode(
        x=xs, y="test_acc:Q", color=colour)
    by_epochs = (seeds + line).properties(width=width, height=height,
                                          title="test accuracy against training length")
    return alt.hconcat(by_loss, by_epochs)


def noise_chart(runs: pd.DataFrame, x: str, title: str, width: int | None = None):
    """Test error (top) and train error on the noisy labels (bottom) against ``x`` on a log
    axis: each seed a point, the mean a line; a legend names the two errors. ``width``
    defaults to two such charts side by side in the book's column."""

    width = width or fit_width(2)
    ok = _ok(runs).assign(**{"test error": lambda d: 1 - d.test_acc,
                             "train error (noisy labels)": lambda d: 1 - d.train_acc})
    long = ok.melt(id_vars=[x, "seed"], value_vars=["test error", "train error (noisy labels)"],
                   var_name="error", value_name="value")
    colour = alt.Color("error:N", title=None, legend=alt.Legend(orient="bottom"),
                       scale=alt.Scale(domain=["test error", "train error (noisy labels)"],
                                       range=["#d62728", "#7f7f7f"]))
    xs = alt.X(f"{x}:Q", scale=alt.Scale(type="log", nice=False, padding=8),
               title=AXIS_LABELS.get(x, x))

    def panel(which: str, height: int, zero: bool):
        base = alt.Chart(long[long.error == which], width=width, height=height).encode(
            x=xs, y=alt.Y("value:Q", title=which, scale=alt.Scale(zero=zero)), color=colour)
        pts = base.mark_point(opacity=0.5).encode(
            tooltip=[f"{x}:Q", "seed:N", alt.Tooltip("value:Q", format=".3f")])
        return (pts + base.mark_line().encode(y="mean(value):Q")).properties(
            width=width, height=height)

    return alt.vconcat(panel("test error", 140, False), panel("train error (noisy labels)", 80,
                                                                True),
                       spacing=5).properties(title=title)
