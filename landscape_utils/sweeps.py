"""Chapter 4's two extra sweeps, their summaries, verdicts and charts.

* **Training longer** (the epochs sweep): at one temperature, a poorly and a well
  connected load are trained for an increasing number of epochs, each length a separate
  run. Yang et al. (2021) read phase III (fitted, poorly connected) as the regime where
  driving the train loss further down can lower the test accuracy; in the well connected
  phase IV it should not. :func:`epochs_summary` averages the runs over seeds and
  :func:`zero_loss_verdict` checks that reading against the seed spread.
* **Double descent with label noise**: a fraction of the training labels is replaced by a
  random other class, and the test error is followed along the width (at one temperature)
  and along the temperature (at one width). :func:`noise_curve` averages the runs and
  :func:`double_descent_verdict` asks whether the test error has an interior peak that
  stands out of the seed spread.

Verdicts are dicts ``{"verdict", "evidence", "n"}`` with verdict ``holds``, ``fails`` or
``inconclusive`` (:mod:`landscape_utils.findings` turns them into findings). The chart
builders import altair lazily and size every chart to the book's content column.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

__all__ = [
    "epochs_summary",
    "zero_loss_verdict",
    "noise_curve",
    "double_descent_verdict",
    "epochs_chart",
    "noise_chart",
]

#: Phases whose seeds are separated by a barrier (mc < 0): "poorly connected".
POORLY_CONNECTED: tuple[str, ...] = ("I", "III")


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


def _drop(summary: pd.DataFrame, load: str, value: Any) -> tuple[float, float, int, int]:
    """(best mean test acc − mean at the longest run, mean seed std over lengths, epochs of
    the best, epochs of the longest) of one load."""
    one = summary[summary[load] == value].sort_values("num_epochs")
    if one.empty:
        raise ValueError(f"no run of the epochs sweep at {load} = {value}")
    best = one.loc[one.test_acc.idxmax()]
    last = one.iloc[-1]
    return (float(best.test_acc - last.test_acc), float(one.test_acc_std.mean()),
            int(best.num_epochs), int(last.num_epochs))


def zero_loss_verdict(summary: pd.DataFrame, load: str, poor: Any, good: Any,
                      phases: Mapping[Any, Any]) -> dict[str, object]:
    """Does training longer hurt the test accuracy in the poorly connected cell, and not
    in the well connected one?

    For each load the *drop* is the best mean test accuracy over training lengths minus
    the mean at the longest run (0 when the longest run is the best), and the *spread* is
    the mean over lengths of the seed std of the test accuracy.

    * inconclusive: ``phases[poor]`` is not I or III (no poorly connected cell at this
      temperature), or the spread is unknown (one seed), or the poor cell's drop is inside
      its spread, or the well connected cell drops beyond its spread too;
    * holds: the poor cell drops by more than its spread, the good one does not;
    * fails: the poor cell's test accuracy is highest at the longest run (drop 0).

    Args:
        summary: :func:`epochs_summary`.
        phases: load value → phase of that cell at the sweep's temperature (chapter 4).
    """
    d_poor, s_poor, best_poor, last = _drop(summary, load, poor)
    d_good, s_good, _, _ = _drop(summary, load, good)
    n_seeds = int(summary[summary[load].isin([poor, good])].n.min())
    n = f"2 cells x {summary.num_epochs.nunique()} lengths x {n_seeds} seed(s)"
    where = (f"highest at the longest run ({last} epochs)" if best_poor == last else
             f"highest after {best_poor} epochs, {d_poor:.3f} lower after {last}")
    evidence = (f"{load} {poor} ({phases.get(poor)}): test accuracy {where} (seed spread "
                f"{s_poor:.3f}); {load} {good} ({phases.get(good)}): drop {d_good:.3f} "
                f"(spread {s_good:.3f})")
    if str(phases.get(poor)) not in POORLY_CONNECTED:
        return {"verdict": "inconclusive", "n": n,
                "evidence": f"no poorly connected cell at this temperature; {evidence}"}
    if d_poor <= 0:
        verdict = "fails"
    elif not np.isfinite(s_poor) or not np.isfinite(s_good):
        verdict, evidence = "inconclusive", f"one seed, no spread; {evidence}"
    elif d_poor > s_poor and d_good <= s_good:
        verdict = "holds"
    else:
        verdict = "inconclusive"
    return {"verdict": verdict, "evidence": evidence, "n": n}


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


def double_descent_verdict(curve: pd.DataFrame, x: str) -> dict[str, object]:
    """Is there a peak of the test error inside the sweep, outside the seed spread?

    The peak is the largest mean test error. It stands out when it exceeds the lowest mean
    on its left and the lowest on its right each by more than the largest seed std among
    those three points.

    * fails: the largest mean test error is at an end of the sweep (no interior peak);
    * holds: an interior peak that stands out;
    * inconclusive: fewer than 3 values, one seed (no spread), or an interior peak inside
      the spread.
    """
    c = curve.sort_values(x).reset_index(drop=True)
    n = f"{len(c)} values of {x} x {int(c.n.min()) if len(c) else 0} seed(s)"
    if len(c) < 3:
        return {"verdict": "inconclusive", "n": n, "evidence": f"only {len(c)} value(s) of {x}"}
    k = int(c.test_err.idxmax())
    peak = c.loc[k]
    if k in (0, len(c) - 1):
        end = "first" if k == 0 else "last"
        return {"verdict": "fails", "n": n,
                "evidence": f"test error highest at the {end} value, {x} {peak[x]:g} "
                            f"({peak.test_err:.3f}): no interior peak"}
    left, right = c.loc[: k - 1], c.loc[k + 1:]
    lo_l, lo_r = left.loc[left.test_err.idxmin()], right.loc[right.test_err.idxmin()]
    spread = float(np.max([peak.test_err_std, lo_l.test_err_std, lo_r.test_err_std]))
    rise, fall = float(peak.test_err - lo_l.test_err), float(peak.test_err - lo_r.test_err)
    evidence = (f"peak {peak.test_err:.3f} at {x} {peak[x]:g} (train error "
                f"{peak.train_err:.3f}); rise {rise:.3f} from {x} {lo_l[x]:g}, fall {fall:.3f} "
                f"to {x} {lo_r[x]:g}; seed spread {spread:.3f}")
    if not np.isfinite(spread):
        return {"verdict": "inconclusive", "n": n, "evidence": f"one seed, no spread; {evidence}"}
    verdict = "holds" if min(rise, fall) > spread else "inconclusive"
    return {"verdict": verdict, "evidence": evidence, "n": n}


# --------------------------------------------------------------------------------------
# Charts
# --------------------------------------------------------------------------------------
def epochs_chart(runs: pd.DataFrame, load: str, labels: Mapping[Any, str],
                 width: int | None = None, height: int = 200):
    """Two panels: mean test accuracy against the train loss (falling to the right), and
    test accuracy against the number of epochs (seeds as points, the mean as a line). One
    colour per load, named by ``labels`` (load value → legend text), legend below; the two
    panels fit the book's column (``width`` defaults to half of it)."""
    import altair as alt

    from .plotting import fit_width, line_color

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
    import altair as alt

    from .plotting import AXIS_LABELS, fit_width

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
