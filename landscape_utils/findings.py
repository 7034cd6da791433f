"""Findings: the claims a chapter tests, each with a verdict computed from the tables.

A :class:`Finding` holds a claim (the paper's or the chapter's, in words), a verdict
(``holds``, ``fails`` or ``inconclusive``), the evidence as numbers (with the seed spread
and n) and the sample it rests on. Each chapter ends with "What this grid shows": its
findings shown with :func:`show_findings` and written to ``{workdir}/tables/findings.csv``
with :func:`write_findings`.

The verdict helpers turn data into a :class:`Verdict` (verdict, evidence, n) with a rule
stated in their docstrings; ``Verdict.finding(key, claim)`` makes the :class:`Finding`:

* :func:`difference_verdict`: a difference of two means against its standard error;
* :func:`spearman_verdict`: a rank correlation, inconclusive below a minimum n or when
  not distinguishable from 0;
* :func:`majority_verdict`: "in most cases", with undecided cases counted both ways.

Chapter 4's findings, computed from cell tables (the authors' or ours):
:func:`best_accuracy_phase` and :func:`metric_ranking`.

This module imports no torch.
"""
from __future__ import annotations

import html
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .taxonomy import UNDETERMINED, PhaseThresholds, numeric_column, well_trained

__all__ = [
    "VERDICTS",
    "FINDINGS_COLUMNS",
    "THIS_BUILD",
    "AUTHORS_GRID",
    "GLOBAL_METRICS",
    "LOCAL_METRICS",
    "Finding",
    "FindingsTable",
    "Verdict",
    "findings_frame",
    "write_findings",
    "read_findings",
    "show_findings",
    "difference_verdict",
    "spearman_verdict",
    "majority_verdict",
    "best_accuracy_phase",
    "metric_ranking",
]

#: The three verdicts.
VERDICTS: tuple[str, ...] = ("holds", "fails", "inconclusive")
#: Columns of ``{workdir}/tables/findings.csv``.
FINDINGS_COLUMNS: tuple[str, ...] = ("chapter", "key", "claim", "verdict", "evidence", "n", "grid")
#: Grid labels used by the book.
THIS_BUILD = "this build"
AUTHORS_GRID = "authors' grid"


# --------------------------------------------------------------------------------------
# Findings and their table
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    """One tested claim."""

    key: str          # stable id, e.g. "best_accuracy_phase"
    claim: str        # the claim tested, in words (the paper's or the chapter's)
    verdict: str      # "holds" | "fails" | "inconclusive"
    evidence: str     # the numbers behind the verdict, short, with seed spread and n
    n: str            # the sample it rests on, e.g. "16 cells x 3 seeds"
    grid: str = THIS_BUILD  # which grid: "this build" or "authors' grid"

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"Finding {self.key!r}: verdict must be one of {VERDICTS}, "
                             f"got {self.verdict!r}")
        for name in ("key", "claim", "grid"):
            if not str(getattr(self, name)).strip():
                raise ValueError(f"Finding {self.key!r}: {name} is empty")


@dataclass(frozen=True)
class Verdict:
    """What a verdict helper returns: the verdict, the evidence and the sample."""

    verdict: str      # "holds" | "fails" | "inconclusive"
    evidence: str     # numbers, short
    n: str            # the sample, e.g. "3 vs 3 seeds"

    def finding(self, key: str, claim: str, grid: str = THIS_BUILD) -> Finding:
        """This verdict as a :class:`Finding` of ``claim``."""
        return Finding(key, claim, self.verdict, self.evidence, self.n, grid)


def findings_frame(findings: Iterable[Finding]) -> pd.DataFrame:
    """The findings as a table: columns key, claim, verdict, evidence, n, grid."""
    rows = [{"key": f.key, "claim": f.claim, "verdict": f.verdict, "evidence": f.evidence,
             "n": f.n, "grid": f.grid} for f in findings]
    return pd.DataFrame(rows, columns=list(FINDINGS_COLUMNS[1:]))


def read_findings(workdir: str | os.PathLike) -> pd.DataFrame:
    """``{workdir}/tables/findings.csv`` (columns :data:`FINDINGS_COLUMNS`); empty if absent."""
    path = Path(workdir) / "tables" / "findings.csv"
    if not path.exists():
        return pd.DataFrame(columns=list(FINDINGS_COLUMNS))
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in FINDINGS_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    return df[list(FINDINGS_COLUMNS)]


def write_findings(workdir: str | os.PathLike, chapter: str,
                   findings: Sequence[Finding]) -> pd.DataFrame:
    """Replace ``chapter``'s rows of ``{workdir}/tables/findings.csv`` with ``findings``.

    Other chapters' rows are kept; rows are ordered by chapter, a chapter's rows in the
    order given. The file is rewritten atomically (a temporary file, then a rename) under
    a file lock, so chapters running at the same time do not lose each other's rows.

    Returns:
        This chapter's rows (columns :data:`FINDINGS_COLUMNS`).

    Raises:
        ValueError: an empty chapter, or two findings with the same (key, grid).
    """
    from filelock import FileLock

    chapter = str(chapter).strip()
    if not chapter:
        raise ValueError("write_findings: chapter is empty")
    findings = list(findings)
    seen: set[tuple[str, str]] = set()
    for f in findings:
        if not isinstance(f, Finding):
            raise TypeError(f"write_findings: expected Finding, got {type(f).__name__}")
        if (f.key, f.grid) in seen:
            raise ValueError(f"write_findings: duplicate finding {f.key!r} for grid {f.grid!r}")
        seen.add((f.key, f.grid))
    ours = findings_frame(findings)
    ours.insert(0, "chapter", chapter)
    tables = Path(workdir) / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    path = tables / "findings.csv"
    with FileLock(str(path) + ".lock"):
        old = read_findings(workdir)
        kept = old[old["chapter"] != chapter]
        out = pd.concat([kept, ours], ignore_index=True)
        out = out.sort_values("chapter", kind="stable").reset_index(drop=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        out.to_csv(tmp, index=False, lineterminator="\n")
        os.replace(tmp, path)
    return ours.reset_index(drop=True)


# --------------------------------------------------------------------------------------
# Display
# --------------------------------------------------------------------------------------
#: Verdict -> (mark, text colour, background). The mark carries the verdict without colour.
_VERDICT_STYLE = {
    "holds": ("✓", "#1b5e20", "#e3f1e1"),
    "fails": ("✗", "#8e1b1b", "#f8e0de"),
    "inconclusive": ("?", "#4d4d4d", "#ececec"),
}


class FindingsTable:
    """A findings table that renders as compact HTML in a notebook (``_repr_html_``)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    def _repr_html_(self) -> str:
        return self.html

    @property
    def html(self) -> str:
        """The table as one HTML fragment: fixed layout, wrapped text, fits 1280 px."""
        df = self.frame
        show_grid = "grid" in df.columns and df["grid"].nunique() > 1
        cell = "padding:4px 6px;vertical-align:top;border-top:1px solid #ddd;text-align:left"
        # three columns, so that the evidence gets the width it needs in a 676 px column:
        # the grid sits under the verdict, the sample (n) under the evidence
        small = "font-size:85%;color:#666"
        cols = [("verdict", "9.5em"), ("claim", "34%"), ("evidence", "auto")]
        head = "".join(f'<th style="{cell};width:{w}">{name}</th>' for name, w in cols)
        rows = []
        for _, r in df.iterrows():
            mark, fg, bg = _VERDICT_STYLE.get(str(r["verdict"]), ("", "#000", "#fff"))
            verdict = (f'<span style="color:{fg};background:{bg};padding:1px 6px;'
                       f'border-radius:3px;font-weight:600;white-space:nowrap">'
                       f'{mark} {html.escape(str(r["verdict"]))}</span>')
            if show_grid:
                verdict += f'<br><span style="{small}">{html.escape(str(r["grid"]))}</span>'
            claim = (f'{html.escape(str(r["claim"]))}<br><code style="{small}">'
                     f'{html.escape(str(r["key"]))}</code>')
            evidence = (f'{html.escape(str(r["evidence"]))}<br><span style="{small}">n: '
                        f'{html.escape(str(r["n"]))}</span>')
            tds = [verdict, claim, evidence]
            rows.append("<tr>" + "".join(f'<td style="{cell}">{t}</td>' for t in tds) + "</tr>")
        return ('<table class="findings" style="table-layout:fixed;width:100%;max-width:100%;'
                'border-collapse:collapse;font-size:90%;overflow-wrap:anywhere;'
                'word-break:normal">'
                f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")

    def __repr__(self) -> str:
        return self.frame.to_string(index=False)


def show_findings(findings: Iterable[Finding] | pd.DataFrame) -> FindingsTable:
    """A compact HTML table of findings for a chapter's "What this grid shows" section:
    verdict marked (✓ holds, ✗ fails, ? inconclusive) and coloured, claim with its key,
    evidence and n wrapped in a fixed layout; a grid column when the findings span more
    than one grid. Accepts findings or a frame with the columns of :func:`findings_frame`
    (e.g. :func:`read_findings`)."""
    frame = findings.copy() if isinstance(findings, pd.DataFrame) else findings_frame(findings)
    return FindingsTable(frame.reset_index(drop=True))


# --------------------------------------------------------------------------------------
# Generic verdict rules
# --------------------------------------------------------------------------------------
def _finite(x: Sequence[float] | np.ndarray | float) -> np.ndarray:
    a = np.atleast_1d(np.asarray(x, dtype=np.float64)).ravel()
    return a[np.isfinite(a)]


def _fmt(v: float) -> str:
    return "nan" if not np.isfinite(v) else f"{v:.3g}"


def difference_verdict(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray | float,
                       *, expect: str = "greater", k: float = 2.0, min_n: int = 2,
                       names: tuple[str, str] = ("a", "b")) -> Verdict:
    """Is mean(a) greater than (``expect="greater"``), less than (``"less"``) or different
    from (``"differ"``) mean(b), beyond the seed spread?

    Rule: d = mean(a) − mean(b) and SE = √(s²_a/n_a + s²_b/n_b) (sample variances,
    ddof=1). If |d| <= k·SE (default k = 2, "mean ± 2 SE"), the difference lies inside the
    seed spread: **inconclusive**. Otherwise **holds** when the sign of d is the one
    expected (any sign for ``"differ"``) and **fails** when it is the opposite. With fewer
    than ``min_n`` finite values on a side whose spread is needed the spread is unknown:
    **inconclusive**. A scalar ``b`` is a fixed reference (no spread of its own).

    Args:
        a, b: per-seed (or per-pair) values, shape (n_a,), (n_b,); NaNs are dropped.
        names: how the evidence names a and b.
    """
    if expect not in ("greater", "less", "differ"):
        raise ValueError(f"expect must be 'greater', 'less' or 'differ', got {expect!r}")
    fixed_b = np.ndim(b) == 0
    xa, xb = _finite(a), _finite(b)
    na, nb = xa.size, xb.size
    n = f"{na} vs {'a fixed value' if fixed_b else f'{nb} values'}"
    if na == 0 or nb == 0:
        return Verdict("inconclusive", f"no values for {names[0] if na == 0 else names[1]}", n)
    ma, mb = float(xa.mean()), float(xb.mean())
    if na < min_n or (not fixed_b and nb < min_n):
        return Verdict("inconclusive", f"{names[0]} {_fmt(ma)}, {names[1]} {_fmt(mb)}: fewer than "
                       f"{min_n} values on a side, the spread is unknown", n)
    var_b = 0.0 if fixed_b else xb.var(ddof=1) / nb
    se = float(np.sqrt(xa.var(ddof=1) / na + var_b))
    d = ma - mb
    evidence = (f"{names[0]} {_fmt(ma)} ± {_fmt(xa.std(ddof=1))} (sd), {names[1]} {_fmt(mb)}"
                + ("" if fixed_b else f" ± {_fmt(xb.std(ddof=1))}")
                + f"; difference {_fmt(d)}, {k:g} SE = {_fmt(k * se)}")
    if abs(d) <= k * se:
        return Verdict("inconclusive", evidence + ": inside the spread", n)
    if expect == "differ" or (d > 0) == (expect == "greater"):
        return Verdict("holds", evidence, n)
    return Verdict("fails", evidence + ": the opposite direction", n)


def spearman_verdict(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, *,
                     expect: str = "positive", min_n: int = 5, alpha: float = 0.05,
                     names: tuple[str, str] = ("x", "y")) -> Verdict:
    """Does y rise (``expect="positive"``) or fall (``"negative"``) with x, by rank, or do
    they move together at all (``"nonzero"``)?

    Rule: over the n pairs with both values finite, Spearman's ρ and its two-sided p-value
    (``scipy.stats.spearmanr``). With n < ``min_n`` (default 5), or a constant side:
    **inconclusive**. If p >= ``alpha`` (default 0.05) ρ is not distinguishable from 0:
    **inconclusive**. Otherwise **holds** when the sign of ρ is the one expected (either sign
    for ``"nonzero"``) and **fails** when it is the opposite.

    Args:
        x, y: shape (n,) each, paired (e.g. one value per cell).
    """
    if expect not in ("positive", "negative", "nonzero"):
        raise ValueError(f"expect must be 'positive', 'negative' or 'nonzero', got {expect!r}")
    xx = np.asarray(x, dtype=np.float64).ravel()
    yy = np.asarray(y, dtype=np.float64).ravel()
    if xx.shape != yy.shape:
        raise ValueError(f"x and y must have the same length, got {xx.size} and {yy.size}")
    ok = np.isfinite(xx) & np.isfinite(yy)
    n = int(ok.sum())
    ns = f"{n} pairs"
    if n < min_n:
        return Verdict("inconclusive", f"only {n} pairs of {names[0]} and {names[1]} "
                       f"(at least {min_n} needed)", ns)
    if np.ptp(xx[ok]) == 0 or np.ptp(yy[ok]) == 0:
        return Verdict("inconclusive", f"{names[0] if np.ptp(xx[ok]) == 0 else names[1]} is "
                       "constant", ns)
    r = stats.spearmanr(xx[ok], yy[ok])
    rho, p = float(r.statistic), float(r.pvalue)
    evidence = f"Spearman ρ({names[0]}, {names[1]}) = {rho:.3f}, p = {p:.2g}, n = {n}"
    if p >= alpha:
        return Verdict("inconclusive", evidence + f": not distinguishable from 0 (p >= {alpha:g})", ns)
    if expect == "nonzero" or (rho > 0) == (expect == "positive"):
        return Verdict("holds", evidence, ns)
    return Verdict("fails", evidence + ": the opposite sign", ns)


def majority_verdict(flags: Sequence[bool | None] | np.ndarray, *, threshold: float = 0.5,
                     min_n: int = 3, what: str = "cases") -> Verdict:
    """Does a statement hold in most cases (more than ``threshold`` of them)?

    ``flags`` has one entry per case: True (the statement holds there), False, or None /
    NaN (undecided, e.g. an undetermined cell). With t true, f false and u undecided of
    N = t + f + u cases: **holds** when t > threshold·N (even if every undecided case were
    false), **fails** when t + u <= threshold·N (even if every undecided case were true),
    else **inconclusive**; also inconclusive with N < ``min_n``.
    """
    vals = list(np.asarray(flags, dtype=object).ravel())
    undecided = [v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA
                 for v in vals]
    t = sum(bool(v) for v, u in zip(vals, undecided) if not u)
    u = sum(undecided)
    big_n = len(vals)
    ns = f"{big_n} {what}"
    evidence = f"{t} of {big_n} {what}" + (f" ({u} undecided)" if u else "")
    if big_n < min_n:
        return Verdict("inconclusive", evidence + f": fewer than {min_n} {what}", ns)
    if t > threshold * big_n:
        return Verdict("holds", evidence, ns)
    if t + u <= threshold * big_n:
        return Verdict("fails", evidence, ns)
    return Verdict("inconclusive", evidence + ": the undecided cases could tip it", ns)


# --------------------------------------------------------------------------------------
# Chapter 4: findings from cell tables
# --------------------------------------------------------------------------------------
def _seed_count(cells: pd.DataFrame) -> np.ndarray:
    for col in ("n_seeds", "n_runs"):
        if col in cells.columns:
            return numeric_column(cells, col)
    return np.full(len(cells), np.nan)


BEST_ACCURACY_CLAIM = "The best test accuracy is in phase IV-B (IV where IV is not split)."


def best_accuracy_phase(cells: pd.DataFrame, phases: Sequence[str] | pd.Series, *,
                        load: str = "width", temperature: str = "batch_size",
                        target: str = "test_acc", k: float = 2.0,
                        iv_split: bool | None = None, grid: str = THIS_BUILD) -> Finding:
    """``best_accuracy_phase``: the phase of the cell with the best mean ``target``.

    The cells tied with the best are those whose mean lies within k standard errors of
    the difference (SE from ``<target>_std`` and ``n_seeds``/``n_runs``; a cell without a
    spread ties only with an equal mean). Rule: **holds** when every tied cell (the best
    included) is IV-B, or IV where IV is not split; **fails** when none of them is, nor
    could be (undetermined, missing, or IV in a grid where IV is split); **inconclusive**
    otherwise.

    Args:
        cells: one row per cell with ``load``, ``temperature``, ``target`` (mean over
            seeds), optionally ``<target>_std`` and ``n_seeds`` or ``n_runs``.
        phases: one label per cell, aligned with ``cells`` (from ``classify`` or
            ``classify_with_confidence``).
        iv_split: whether IV is split into IV-A/IV-B (``classify_with_confidence``'s
            ``.attrs["iv_split"]``); None infers it: split when any label is IV-A or IV-B.
    """
    ph = np.asarray(pd.Series(list(phases), dtype=object).where(
        pd.notna(pd.Series(list(phases), dtype=object)), None))
    if len(ph) != len(cells):
        raise ValueError(f"phases has {len(ph)} entries for {len(cells)} cells")
    acc = numeric_column(cells, target)
    ok = np.isfinite(acc)
    n_cells = int(ok.sum())
    seeds = _seed_count(cells)
    n_desc = f"{n_cells} cells" + (f" x {int(np.nanmedian(seeds))} seeds"
                                   if np.isfinite(seeds).any() else "")
    if n_cells == 0:
        return Finding("best_accuracy_phase", BEST_ACCURACY_CLAIM, "inconclusive",
                       f"no cell has {target}", n_desc, grid)
    if iv_split is None:
        iv_split = any(p in ("IV-A", "IV-B") for p in ph)
    good = {"IV-B"} if iv_split else {"IV"}
    unsure = {"IV", UNDETERMINED, "missing"} if iv_split else {UNDETERMINED, "missing"}
    i_best = int(np.nanargmax(np.where(ok, acc, -np.inf)))
    std = numeric_column(cells, f"{target}_std")
    se = np.where(np.isfinite(std) & (seeds > 0), std / np.sqrt(np.where(seeds > 0, seeds, 1)), 0.0)
    gap = acc[i_best] - acc
    tied = ok & (gap <= k * np.sqrt(se[i_best] ** 2 + se ** 2))
    tied_phases = [ph[i] if ph[i] is not None else "missing" for i in np.flatnonzero(tied)]

    def where(i: int) -> str:
        return f"{load} {_plain(cells[load].iloc[i])}, {temperature} {_plain(cells[temperature].iloc[i])}"

    best_std = f" ± {std[i_best]:.3f} (sd)" if np.isfinite(std[i_best]) else ""
    evidence = (f"best cell {where(i_best)}: {target} {acc[i_best]:.3f}{best_std}, "
                f"phase {ph[i_best] or 'missing'}")
    others = int(tied.sum()) - 1
    if others:
        counts = pd.Series(tied_phases).value_counts()
        evidence += (f"; {others} other cell(s) within {k:g} SE of it, phases of all tied: "
                     + ", ".join(f"{p} {c}" for p, c in counts.items()))
    if not iv_split:
        evidence += "; IV not split"
    if all(p in good for p in tied_phases):
        verdict = "holds"
    elif not any(p in good or p in unsure for p in tied_phases):
        verdict = "fails"
    else:
        verdict = "inconclusive"
    return Finding("best_accuracy_phase", BEST_ACCURACY_CLAIM, verdict, evidence, n_desc, grid)


def _plain(v: object) -> object:
    return v.item() if isinstance(v, np.generic) else v


METRIC_RANKING_CLAIM = ("Among well-trained cells a global metric (mc, CKA or L2) ranks test "
                        "accuracy better (larger |Spearman ρ|) than the train loss and the "
                        "Hessian metrics.")
#: Metrics compared by :func:`metric_ranking`, global ones and the others.
GLOBAL_METRICS: tuple[str, ...] = ("mc", "cka", "l2")
LOCAL_METRICS: tuple[str, ...] = ("train_loss", "lambda_max", "trace")


def _rho(x: np.ndarray, y: np.ndarray) -> float:
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return np.nan
    return float(stats.spearmanr(x[ok], y[ok]).statistic)


def _rho_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman ρ of each row of x with the same row of y, shape (rows, n) -> (rows,):
    Pearson's r of the average ranks; NaN for a row that is constant on either side."""
    rx = stats.rankdata(x, axis=1)
    ry = stats.rankdata(y, axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    den = np.sqrt((rx ** 2).sum(axis=1) * (ry ** 2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(axis=1) / np.where(den > 0, den, 1.0), np.nan)


def metric_ranking(cells: pd.DataFrame, *, target: str = "test_acc",
                   global_metrics: Sequence[str] = GLOBAL_METRICS,
                   local_metrics: Sequence[str] = LOCAL_METRICS,
                   well_trained_mask: Sequence[bool] | np.ndarray | None = None,
                   train_loss_high: float = PhaseThresholds.train_loss_high,
                   min_n: int = 8, n_boot: int = 2000, seed: int = 0,
                   grid: str = THIS_BUILD) -> Finding:
    """``metric_ranking``: which metric ranks ``target`` best by |Spearman ρ|, over all
    cells and over well-trained cells (``train_loss < train_loss_high``, or
    ``well_trained_mask``).

    Rule (on the well-trained cells): D = max |ρ| over ``global_metrics`` − max |ρ| over
    ``local_metrics``, with a 95% bootstrap interval over cells (``n_boot`` resamples of
    the cells with replacement, the maxima recomputed in each). **holds** when the interval
    lies above 0, **fails** when it lies below 0, **inconclusive** when it covers 0, when
    fewer than ``min_n`` well-trained cells have the target, or when a side has no metric.
    The evidence lists each metric's ρ over all cells and over well-trained cells, with n.
    """
    y = numeric_column(cells, target)
    well = well_trained(cells, train_loss_high, well_trained_mask)
    g = [m for m in global_metrics if m in cells.columns and np.isfinite(numeric_column(cells, m)).any()]
    loc = [m for m in local_metrics if m in cells.columns and np.isfinite(numeric_column(cells, m)).any()]
    n_all = int(np.isfinite(y).sum())
    n_well = int((np.isfinite(y) & well).sum())
    n_desc = f"{n_all} cells, {n_well} well-trained"

    def ranking(mask: np.ndarray) -> list[tuple[str, float]]:
        rows = [(m, _rho(numeric_column(cells, m)[mask], y[mask])) for m in g + loc]
        return sorted(rows, key=lambda kv: -abs(kv[1]) if np.isfinite(kv[1]) else np.inf)

    def fmt(rows: list[tuple[str, float]]) -> str:
        return ", ".join(f"{m} {r:+.3f}" for m, r in rows if np.isfinite(r)) or "none"

    all_rows, well_rows = ranking(np.ones(len(cells), bool)), ranking(well)
    evidence = (f"well-trained (n={n_well}): {fmt(well_rows)}; all cells (n={n_all}): "
                f"{fmt(all_rows)}")
    if not g or not loc:
        return Finding("metric_ranking", METRIC_RANKING_CLAIM, "inconclusive",
                       evidence + "; no " + ("global" if not g else "local") + " metric",
                       n_desc, grid)
    if n_well < min_n:
        return Finding("metric_ranking", METRIC_RANKING_CLAIM, "inconclusive",
                       evidence + f"; fewer than {min_n} well-trained cells", n_desc, grid)
    xs = np.stack([numeric_column(cells, m) for m in g + loc])              # (metrics, cells)
    idx = np.flatnonzero(well & np.isfinite(y) & np.isfinite(xs).all(axis=0))
    if idx.size < min_n:
        return Finding("metric_ranking", METRIC_RANKING_CLAIM, "inconclusive",
                       evidence + f"; fewer than {min_n} well-trained cells with every metric",
                       n_desc, grid)
    rng = np.random.default_rng(seed)
    sel = np.vstack([np.arange(idx.size), rng.integers(0, idx.size, (n_boot, idx.size))])
    yb = y[idx][sel]                                               # (1 + n_boot, m)
    absrho = np.stack([np.abs(_rho_rows(x[idx][sel], yb)) for x in xs])  # (metrics, 1 + n_boot)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a draw where a side is all NaN
        gaps = np.nanmax(absrho[:len(g)], axis=0) - np.nanmax(absrho[len(g):], axis=0)
    d, boots = gaps[0], gaps[1:][np.isfinite(gaps[1:])]
    lo, hi = (np.percentile(boots, [2.5, 97.5]) if boots.size else (np.nan, np.nan))
    evidence += (f"; best global − best local |ρ| = {d:+.3f}, 95% bootstrap interval over the "
                 f"{idx.size} well-trained cells [{lo:+.3f}, {hi:+.3f}]")
    if not np.isfinite(lo):
        verdict = "inconclusive"
    elif lo > 0:
        verdict = "holds"
    elif hi < 0:
        verdict = "fails"
    else:
        verdict = "inconclusive"
    return Finding("metric_ranking", METRIC_RANKING_CLAIM, verdict, evidence, n_desc, grid)
