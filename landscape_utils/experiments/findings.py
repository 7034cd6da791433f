"""Findings: the claims a chapter tests, each with a verdict computed from the tables.

A :class:`Finding` holds a claim (the paper's or the chapter's, in words), a verdict
(``holds``, ``fails`` or ``inconclusive``), the evidence as numbers (with the seed spread
and n) and the sample it rests on. Each chapter ends with "What this grid shows": its
findings shown with :func:`show_findings` and written to ``{workdir}/tables/findings.csv``
with :func:`write_findings`.

The verdict helpers turn data into a :class:`Verdict` (verdict, evidence, n) with a rule
stated in their docstrings; ``Verdict.finding(key, claim)`` makes the :class:`Finding`:

* :func:`difference_verdict`: a difference of two means, by a one-sample or Welch t test
  (scipy.stats), with its p-value;
* :func:`spearman_verdict`: a rank correlation, inconclusive below a minimum n or when
  not distinguishable from 0;
* :func:`majority_verdict`: "in most cases", with undecided cases counted both ways.

**Three kinds of finding.** A *test* carries a p-value and can come out either way; a
*rule* can come out either way but has no p-value (exploratory); a *description* can only
come out one way (a check that cannot fail is not a test) and is shown as such.
:func:`write_findings` adds, beside each raw verdict, a verdict corrected for the number of
tests in the chapter (Holm's step-down, family-wise at :data:`ALPHA`): a test whose
adjusted p-value is not below it becomes ``inconclusive``; rules are marked
``exploratory`` and descriptions ``description``.

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
    "KINDS",
    "ALPHA",
    "FINDINGS_COLUMNS",
    "holm",
    "corrected_verdicts",
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
    "EXPECTED_SIGNS",
    "phase_sharpness",
]

#: The three verdicts.
VERDICTS: tuple[str, ...] = ("holds", "fails", "inconclusive")
#: Kinds of finding: a test (with a p-value), a rule (either way, no p-value: exploratory),
#: a description (can only come out one way).
KINDS: tuple[str, ...] = ("test", "rule", "description")
#: Level of the verdict rules and of the chapter-wise correction.
ALPHA = 0.05
#: Columns of ``{workdir}/tables/findings.csv``: the original seven, then the p-value, the
#: kind, Holm's adjusted p-value and the corrected verdict.
FINDINGS_COLUMNS: tuple[str, ...] = ("chapter", "key", "claim", "verdict", "evidence", "n", "grid",
                                     "kind", "p_value", "p_adjusted", "corrected_verdict")
_BASE_COLUMNS = FINDINGS_COLUMNS[:7]
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
    p_value: float | None = None  # two-sided p-value of the test behind the verdict, if any
    kind: str = "rule"  # "test" (has a p-value), "rule" (no p-value) or "description"

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"Finding {self.key!r}: verdict must be one of {VERDICTS}, "
                             f"got {self.verdict!r}")
        if self.kind not in KINDS:
            raise ValueError(f"Finding {self.key!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.p_value is not None and not np.isfinite(self.p_value):
            object.__setattr__(self, "p_value", None)
        if self.kind == "test" and self.p_value is None:
            object.__setattr__(self, "kind", "rule")  # a test without its p-value is exploratory
        for name in ("key", "claim", "grid"):
            if not str(getattr(self, name)).strip():
                raise ValueError(f"Finding {self.key!r}: {name} is empty")


@dataclass(frozen=True)
class Verdict:
    """What a verdict helper returns: the verdict, the evidence and the sample."""

    verdict: str      # "holds" | "fails" | "inconclusive"
    evidence: str     # numbers, short
    n: str            # the sample, e.g. "3 vs 3 seeds"
    p_value: float | None = None   # two-sided p-value of the test, None for a rule
    kind: str = "rule"             # "test" when p_value is set

    def finding(self, key: str, claim: str, grid: str = THIS_BUILD, kind: str | None = None) -> Finding:
        """This verdict as a :class:`Finding` of ``claim`` (``kind`` overrides, e.g.
        ``"description"`` for a check that cannot fail)."""
        return Finding(key, claim, self.verdict, self.evidence, self.n, grid, self.p_value,
                       kind or self.kind)

    def as_dict(self) -> dict[str, object]:
        """verdict, evidence, n, p_value, kind: keyword arguments of :class:`Finding`."""
        return {"verdict": self.verdict, "evidence": self.evidence, "n": self.n,
                "p_value": self.p_value, "kind": self.kind}


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values, shape (m,) -> (m,); NaN entries stay NaN and do
    not count in m. Sorted ascending, the k-th smallest (k = 1..m) becomes
    max over j <= k of min(1, (m − j + 1)·p₍ⱼ₎): rejecting where it is below α keeps the
    family-wise error at α under any dependence."""
    p = np.asarray(p_values, dtype=np.float64).ravel()
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size:
        order = ok[np.argsort(p[ok], kind="stable")]
        m = order.size
        adj = np.minimum(1.0, (m - np.arange(m)) * p[order])
        out[order] = np.maximum.accumulate(adj)
    return out


def corrected_verdicts(frame: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """``frame`` (one chapter's findings, columns of :func:`findings_frame`) with
    ``p_adjusted`` (Holm over the chapter's tests) and ``corrected_verdict``: a test keeps
    holds / fails only when its adjusted p-value is below ``alpha`` (else inconclusive);
    an inconclusive verdict stays inconclusive; a rule's holds / fails is ``exploratory``;
    a description is ``description``."""
    out = frame.copy()
    p = pd.to_numeric(out["p_value"], errors="coerce").to_numpy(dtype=np.float64)
    kind = out["kind"].astype(str).to_numpy()
    p = np.where(kind == "test", p, np.nan)
    adj = holm(p)
    corrected = []
    for v, k, a in zip(out["verdict"], kind, adj):
        if k == "description":
            corrected.append("description")
        elif v == "inconclusive":
            corrected.append(v)
        elif k != "test" or not np.isfinite(a):
            corrected.append("exploratory")
        else:
            corrected.append(v if (v == "inconclusive" or a < alpha) else "inconclusive")
    out["p_adjusted"] = adj
    out["corrected_verdict"] = corrected
    return out


def findings_frame(findings: Iterable[Finding]) -> pd.DataFrame:
    """The findings as a table: columns key, claim, verdict, evidence, n, grid, kind and
    p_value."""
    rows = [{"key": f.key, "claim": f.claim, "verdict": f.verdict, "evidence": f.evidence,
             "n": f.n, "grid": f.grid, "kind": f.kind,
             "p_value": np.nan if f.p_value is None else float(f.p_value)} for f in findings]
    return pd.DataFrame(rows, columns=list(FINDINGS_COLUMNS[1:9]))


def read_findings(workdir: str | os.PathLike) -> pd.DataFrame:
    """``{workdir}/tables/findings.csv`` (columns :data:`FINDINGS_COLUMNS`); empty if absent.
    A file written before the kind and correction columns existed reads with them empty."""
    path = Path(workdir) / "tables" / "findings.csv"
    if not path.exists():
        return pd.DataFrame(columns=list(FINDINGS_COLUMNS))
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in _BASE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    for c in FINDINGS_COLUMNS[7:]:
        if c not in df.columns:
            df[c] = ""
    return df[list(FINDINGS_COLUMNS)]


def write_findings(workdir: str | os.PathLike, chapter: str,
                   findings: Sequence[Finding]) -> pd.DataFrame:
    """Replace ``chapter``'s rows of ``{workdir}/tables/findings.csv`` with ``findings``.

    Other chapters' rows are kept; rows are ordered by chapter, a chapter's rows in the
    order given. The chapter's findings are one family for :func:`corrected_verdicts`
    (Holm), which fills ``p_adjusted`` and ``corrected_verdict``. The file is rewritten atomically (a temporary file, then a rename) under
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
    ours = corrected_verdicts(findings_frame(findings))
    for c in ("p_value", "p_adjusted"):
        ours[c] = [f"{v:.3g}" if np.isfinite(v) else "" for v in ours[c].astype(float)]
    ours.insert(0, "chapter", chapter)
    ours = ours[list(FINDINGS_COLUMNS)]
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


#: How the corrected verdict is introduced under the raw one.
_CORRECTED_TEXT = {"holds": "Holm-corrected: ", "fails": "Holm-corrected: ",
                   "inconclusive": "Holm-corrected: ", "exploratory": "", "description": ""}


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
            corrected = str(r.get("corrected_verdict", "") or "")
            if corrected:
                verdict += (f'<br><span style="{small}">{_CORRECTED_TEXT.get(corrected, "")}'
                            f'{html.escape(corrected)}</span>')
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
    verdict marked (✓ holds, ✗ fails, ? inconclusive) and coloured, under it the verdict
    corrected for the chapter's number of tests (or "exploratory", "description"), claim with its key,
    evidence and n wrapped in a fixed layout; a grid column when the findings span more
    than one grid. Accepts findings or a frame with the columns of :func:`findings_frame`
    (e.g. :func:`read_findings`)."""
    frame = findings.copy() if isinstance(findings, pd.DataFrame) else findings_frame(findings)
    if "corrected_verdict" not in frame.columns and {"kind", "p_value"} <= set(frame.columns):
        frame = corrected_verdicts(frame)   # the findings shown together are one family
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
                       *, expect: str = "greater", k: float | None = None, min_n: int = 2,
                       names: tuple[str, str] = ("a", "b"), alpha: float = ALPHA) -> Verdict:
    """Is mean(a) greater than (``expect="greater"``), less than (``"less"``) or different
    from (``"differ"``) mean(b), beyond the seed spread?

    Rule: d = mean(a) − mean(b), tested two-sided with a t test: one-sample
    (``scipy.stats.ttest_1samp``, n_a − 1 df) when ``b`` is a scalar, a fixed reference;
    Welch's (``scipy.stats.ttest_ind(equal_var=False)``, Welch–Satterthwaite df) otherwise.
    If p >= ``alpha`` the difference lies inside the seed spread: **inconclusive**.
    Otherwise **holds** when the sign of d is the one expected (any sign for ``"differ"``)
    and **fails** when it is the opposite. (A two-sided test at α that then reads the sign
    makes each one-sided error α/2.) With fewer than ``min_n`` finite values on a side whose
    spread is needed: **inconclusive**.

    ``k`` (legacy): when given, the former rule |d| <= k·SE ⇒ inconclusive, with a normal
    cut-off; its false-positive rate with 3 seeds is about 18% at k = 2, so it is not the
    default. The p-value is reported either way.

    Args:
        a, b: per-seed values (the seed is the unit of replication), shape (n_a,), (n_b,);
            NaNs are dropped.
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
    if se == 0.0:
        p = 0.0 if d != 0 else 1.0
    else:
        with warnings.catch_warnings():  # near-identical seeds: scipy warns of precision loss
            warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
            p = float(stats.ttest_1samp(xa, mb).pvalue if fixed_b
                      else stats.ttest_ind(xa, xb, equal_var=False).pvalue)
    evidence = (f"{names[0]} {_fmt(ma)} ± {_fmt(xa.std(ddof=1))} (sd), {names[1]} {_fmt(mb)}"
                + ("" if fixed_b else f" ± {_fmt(xb.std(ddof=1))}")
                + f"; difference {_fmt(d)}")
    evidence += (f", {k:g} SE = {_fmt(k * se)}, p = {p:.2g}" if k is not None else
                 f", {'one-sample' if fixed_b else 'Welch'} t test p = {p:.2g}")
    inside = abs(d) <= k * se if k is not None else p >= alpha
    if inside:
        return Verdict("inconclusive", evidence + ": inside the spread", n, p, "test")
    if expect == "differ" or (d > 0) == (expect == "greater"):
        return Verdict("holds", evidence, n, p, "test")
    return Verdict("fails", evidence + ": the opposite direction", n, p, "test")


def spearman_verdict(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, *,
                     expect: str = "positive", min_n: int = 5, alpha: float = ALPHA,
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
        return Verdict("inconclusive", evidence + f": not distinguishable from 0 (p >= {alpha:g})",
                       ns, p, "test")
    if expect == "nonzero" or (rho > 0) == (expect == "positive"):
        return Verdict("holds", evidence, ns, p, "test")
    return Verdict("fails", evidence + ": the opposite sign", ns, p, "test")


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
                        target: str = "test_acc", k: float | None = None,
                        iv_split: bool | None = None, grid: str = THIS_BUILD,
                        alpha: float = ALPHA) -> Finding:
    """``best_accuracy_phase``: the phase of the cell with the best mean ``target``.

    The cells tied with the best are those whose mean is not below it by a Welch t test at
    ``alpha`` (two-sided): gap <= t₁₋α/₂(ν)·SE, SE and the Welch–Satterthwaite ν from
    ``<target>_std`` and ``n_seeds``/``n_runs``; a cell without a spread ties only with an
    equal mean. ``k`` (legacy) replaces the t quantile by a fixed k. The best cell is picked
    after looking, so the rule is a description of the ties, not a test (kind ``rule``). Rule: **holds** when every tied cell (the best
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
    se2 = se[i_best] ** 2 + se ** 2
    if k is None:
        q = _welch_quantile(se, seeds, i_best, alpha)
    else:
        q = np.full(len(acc), float(k))
    tied = ok & (gap <= q * np.sqrt(se2))
    tied_phases = [ph[i] if ph[i] is not None else "missing" for i in np.flatnonzero(tied)]

    def where(i: int) -> str:
        return f"{load} {_plain(cells[load].iloc[i])}, {temperature} {_plain(cells[temperature].iloc[i])}"

    best_std = f" ± {std[i_best]:.3f} (sd)" if np.isfinite(std[i_best]) else ""
    evidence = (f"best cell {where(i_best)}: {target} {acc[i_best]:.3f}{best_std}, "
                f"phase {ph[i_best] or 'missing'}")
    others = int(tied.sum()) - 1
    if others:
        counts = pd.Series(tied_phases).value_counts()
        within = f"{k:g} SE" if k is not None else f"a Welch t test at {alpha:g}"
        evidence += (f"; {others} other cell(s) not below it by {within}, phases of all tied: "
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


def _welch_quantile(se: np.ndarray, seeds: np.ndarray, i_best: int, alpha: float) -> np.ndarray:
    """t₁₋α/₂ with the Welch–Satterthwaite df of each cell against cell ``i_best``, shape
    (cells,); the normal quantile where a df cannot be formed (one seed)."""
    n = np.where(np.isfinite(seeds), seeds, 0.0)
    v_b, v = se[i_best] ** 2, se ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        den = np.where(n[i_best] > 1, v_b ** 2 / (n[i_best] - 1), np.inf) + \
            np.where(n > 1, v ** 2 / np.maximum(n - 1, 1), np.inf)
        df = (v_b + v) ** 2 / den
    df = np.where(np.isfinite(df) & (df > 0), df, np.inf)
    return stats.t.ppf(1 - alpha / 2, df)


def _plain(v: object) -> object:
    return v.item() if isinstance(v, np.generic) else v


METRIC_RANKING_CLAIM = ("Among well-trained cells a global metric (mc or CKA) ranks test "
                        "accuracy better, in its expected direction (Spearman ρ times the "
                        "expected sign), than the train loss and the Hessian metrics.")
#: The direction in which each metric is expected to track test accuracy: +1 higher is
#: better (mc nearer 0 from below, a higher CKA), -1 lower is better (train loss, a flatter
#: Hessian). A metric without a stated direction (L2) is listed but not ranked.
EXPECTED_SIGNS: dict[str, int] = {"mc": +1, "cka": +1, "train_loss": -1, "lambda_max": -1,
                                  "trace": -1}
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
                   grid: str = THIS_BUILD, signs: dict[str, int] | None = None) -> Finding:
    """``metric_ranking``: which metric ranks ``target`` best in its expected direction,
    over all cells and over well-trained cells (``train_loss < train_loss_high``, or
    ``well_trained_mask``).

    Each metric's score is its Spearman ρ with ``target`` times its expected sign
    (``signs``, default :data:`EXPECTED_SIGNS`), so a metric that tracks accuracy the wrong
    way scores below 0 and counts against the claim (ranking by |ρ| would count it as
    support). Metrics without an expected sign are listed, not ranked.

    Rule (on the well-trained cells): D = max score over ``global_metrics`` − max score
    over ``local_metrics``, with a 95% bootstrap interval over cells (``n_boot`` resamples
    of the cells with replacement, the maxima recomputed in each) and a bootstrap p-value
    (twice the share of resamples on the far side of 0). **holds** when the interval lies
    above 0, **fails** when it lies below 0, **inconclusive** when it covers 0, when fewer
    than ``min_n`` well-trained cells have the target, or when a side has no metric. The
    evidence lists each metric's ρ over all cells and over well-trained cells, with n.
    """
    signs = dict(EXPECTED_SIGNS if signs is None else signs)
    y = numeric_column(cells, target)
    well = well_trained(cells, train_loss_high, well_trained_mask)
    present = [m for m in (*global_metrics, *local_metrics)
               if m in cells.columns and np.isfinite(numeric_column(cells, m)).any()]
    unsigned = [m for m in present if not signs.get(m)]
    g = [m for m in global_metrics if m in present and signs.get(m)]
    loc = [m for m in local_metrics if m in present and signs.get(m)]
    n_all = int(np.isfinite(y).sum())
    n_well = int((np.isfinite(y) & well).sum())
    n_desc = f"{n_all} cells, {n_well} well-trained"

    def ranking(mask: np.ndarray) -> list[tuple[str, float]]:
        rows = [(m, _rho(numeric_column(cells, m)[mask], y[mask])) for m in g + loc + unsigned]
        score = {m: r * signs.get(m, 0) for m, r in rows}
        return sorted(rows, key=lambda kv: -score[kv[0]] if np.isfinite(kv[1]) and signs.get(kv[0])
                      else np.inf)

    def fmt(rows: list[tuple[str, float]]) -> str:
        return ", ".join(f"{m} {r:+.3f}" for m, r in rows if np.isfinite(r)) or "none"

    all_rows, well_rows = ranking(np.ones(len(cells), bool)), ranking(well)
    evidence = (f"ρ with {target}, ranked by ρ × expected sign; well-trained (n={n_well}): "
                f"{fmt(well_rows)}; all cells (n={n_all}): {fmt(all_rows)}"
                + (f"; not ranked (no expected sign): {', '.join(unsigned)}" if unsigned else ""))
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
    sgn = np.array([signs[m] for m in g + loc], dtype=np.float64)
    d, lo, hi, p = _score_gap_bootstrap(xs[:, idx], y[idx], sgn, len(g), n_boot, seed)
    evidence += (f"; best global − best local score = {d:+.3f}, 95% bootstrap interval over the "
                 f"{idx.size} well-trained cells [{lo:+.3f}, {hi:+.3f}], p = {p:.2g}")
    if not np.isfinite(lo):
        verdict = "inconclusive"
    elif lo > 0:
        verdict = "holds"
    elif hi < 0:
        verdict = "fails"
    else:
        verdict = "inconclusive"
    return Finding("metric_ranking", METRIC_RANKING_CLAIM, verdict, evidence, n_desc, grid,
                   p, "test")


def _score_gap_bootstrap(xs: np.ndarray, y: np.ndarray, signs: np.ndarray, n_global: int, n_boot: int,
                         seed: int) -> tuple[float, float, float, float]:
    """:func:`metric_ranking`'s D = best global − best local score (Spearman ρ of each row of
    ``xs`` (metrics, cells; the first ``n_global`` global) with ``y``, times ``signs``), with
    its 95% bootstrap interval over ``n_boot`` resamples of the cells and its two-sided
    bootstrap p-value: ``(d, lo, hi, p)``."""
    m = y.size
    rng = np.random.default_rng(seed)
    sel = np.vstack([np.arange(m), rng.integers(0, m, (n_boot, m))])
    yb = y[sel]                                                    # (1 + n_boot, m)
    score = np.stack([_rho_rows(x[sel], yb) for x in xs]) * signs[:, None]  # (metrics, 1 + n_boot)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a draw where a side is all NaN
        gaps = np.nanmax(score[:n_global], axis=0) - np.nanmax(score[n_global:], axis=0)
    d, boots = gaps[0], gaps[1:][np.isfinite(gaps[1:])]
    lo, hi = (np.percentile(boots, [2.5, 97.5]) if boots.size else (np.nan, np.nan))
    # two-sided bootstrap p-value, never 0: (1 + resamples on the far side) / (1 + resamples)
    p = (float(min(1.0, 2 * (1 + min(np.sum(boots <= 0), np.sum(boots >= 0))) / (1 + boots.size)))
         if boots.size else float("nan"))
    return d, lo, hi, p


PHASE_SHARPNESS_CLAIM = ("Cells of the unfitted phases (I, II) are sharper (larger λmax) than cells "
                         "of the fitted phases (III, IV), per phase as the paper's table has it.")


def phase_sharpness(cells: pd.DataFrame, phases: Sequence[str] | pd.Series, *,
                    hessian: str = "lambda_max", grid: str = THIS_BUILD,
                    alpha: float = ALPHA) -> Finding:
    """``high_loss_is_sharp_per_phase``: the paper's table read per phase. The log of the
    cell means of ``hessian`` in cells labelled I or II against those labelled III or IV
    (IV-A, IV-B), by Welch's t test (:func:`difference_verdict`, cells as the units;
    undetermined and unlabelled cells left out). The evidence gives the median per phase.
    """
    ph = pd.Series(list(phases), index=cells.index, dtype=object).astype(str)
    lam = numeric_column(cells, hessian)
    ok = np.isfinite(lam) & (lam > 0)
    high = ok & ph.isin(["I", "II"]).to_numpy()
    low = ok & ph.isin(["III", "IV", "IV-A", "IV-B"]).to_numpy()
    v = difference_verdict(np.log(lam[high]), np.log(lam[low]), expect="greater",
                           names=(f"log {hessian} in I, II", "in III, IV"), alpha=alpha)
    med = ", ".join(f"{p} {np.median(lam[ok & (ph == p).to_numpy()]):.3g}"
                    for p in ("I", "II", "III", "IV", "IV-A", "IV-B") if (ok & (ph == p).to_numpy()).any())
    return Finding("high_loss_is_sharp_per_phase", PHASE_SHARPNESS_CLAIM, v.verdict,
                   f"median {hessian} per phase: {med or 'none'}; {v.evidence}",
                   f"{int(high.sum())} vs {int(low.sum())} cells", grid, v.p_value, v.kind)
