"""Tests for landscape_utils.experiments.findings: the Finding record and its table, the verdict rules
(checked against hand computations), and chapter 4's findings on hand-made cells and on the
authors' shipped grid."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from landscape_utils.experiments.findings import (EXPECTED_SIGNS, FINDINGS_COLUMNS, Finding, Verdict, _rho_rows,
                                                  best_accuracy_phase, difference_verdict, findings_frame,
                                                  majority_verdict, metric_ranking, read_findings, show_findings,
                                                  spearman_verdict, write_findings)


# --------------------------------------------------------------------------------------
# Finding and findings.csv
# --------------------------------------------------------------------------------------
def _f(key: str, verdict: str = "holds", grid: str = "this build") -> Finding:
    return Finding(key, f"claim {key}", verdict, f"evidence {key}", "3 cells", grid)


def test_finding_validates():
    with pytest.raises(ValueError, match="verdict"):
        Finding("k", "c", "maybe", "e", "n")
    with pytest.raises(ValueError, match="claim"):
        Finding("k", " ", "holds", "e", "n")
    f = _f("a")
    assert f.grid == "this build"
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.verdict = "fails"  # type: ignore[misc]
    assert Verdict("fails", "e", "n").finding("k", "c", grid="authors' grid") == Finding(
        "k", "c", "fails", "e", "n", "authors' grid")


def test_write_findings_replaces_a_chapter(tmp_path):
    out = write_findings(tmp_path, "04_taxonomy", [_f("a"), _f("a", grid="authors' grid")])
    assert list(out.columns) == list(FINDINGS_COLUMNS) and len(out) == 2
    write_findings(tmp_path, "02_local_metrics", [_f("b", "fails")])
    write_findings(tmp_path, "04_taxonomy", [_f("c", "inconclusive")])   # replaces a, a
    df = read_findings(tmp_path)
    assert list(df.columns) == list(FINDINGS_COLUMNS)
    assert list(zip(df.chapter, df.key, df.verdict)) == [
        ("02_local_metrics", "b", "fails"), ("04_taxonomy", "c", "inconclusive")]
    raw = pd.read_csv(tmp_path / "tables" / "findings.csv")
    assert list(raw.columns) == list(FINDINGS_COLUMNS)
    # nothing but the table and its lock is left behind
    assert {p.name for p in (tmp_path / "tables").iterdir()} <= {"findings.csv", "findings.csv.lock"}
    write_findings(tmp_path, "04_taxonomy", [])
    assert list(read_findings(tmp_path).chapter) == ["02_local_metrics"]
    with pytest.raises(ValueError, match="duplicate finding 'a'"):
        write_findings(tmp_path, "01", [_f("a"), _f("a")])
    with pytest.raises(ValueError, match="chapter"):
        write_findings(tmp_path, "", [_f("a")])
    assert read_findings(tmp_path / "nowhere").empty


def test_show_findings_html():
    fs = [Finding("k1", "a < b & c", "holds", "ρ = 0.9", "5 cells"),
          Finding("k2", "claim two", "fails", "x", "n"),
          Finding("k3", "claim three", "inconclusive", "y", "n", grid="authors' grid")]
    t = show_findings(fs)
    html = t._repr_html_()
    assert "a &lt; b &amp; c" in html and "a < b" not in html
    assert "✓ holds" in html and "✗ fails" in html and "? inconclusive" in html
    assert "table-layout:fixed" in html and "authors&#x27; grid" in html and "n: 5 cells" in html
    one_grid = show_findings(fs[:2])._repr_html_()
    assert "this build" not in one_grid and "n: 5 cells" in one_grid
    pd.testing.assert_frame_equal(show_findings(findings_frame(fs)).frame, t.frame)
    assert list(findings_frame(fs).columns) == list(FINDINGS_COLUMNS[1:9])


# --------------------------------------------------------------------------------------
# Verdict rules
# --------------------------------------------------------------------------------------
def test_difference_verdict_against_hand_values():
    a, b = [1.0, 2.0, 3.0], [4.0, 5.0, 6.0]         # d = -3, SE = sqrt(1/3 + 1/3) = 0.816
    welch = stats.ttest_ind(a, b, equal_var=False).pvalue   # t = -3.67 on 4 df
    assert welch < 0.05
    v = difference_verdict(a, b, expect="less")
    assert v.verdict == "holds" and v.p_value == pytest.approx(welch) and v.kind == "test"
    v = difference_verdict(a, b, expect="greater")
    assert v.verdict == "fails" and f"p = {welch:.2g}" in v.evidence and v.n == "3 vs 3 values"
    assert difference_verdict(a, b, expect="differ").verdict == "holds"
    # legacy k: d = -3 with k = 4: 4 SE = 3.27 > 3 -> inside the spread
    assert difference_verdict(a, b, expect="less", k=4.0).verdict == "inconclusive"
    assert difference_verdict(a, [1.5, 2.5, 3.5], expect="less").verdict == "inconclusive"
    assert difference_verdict([1.0], b, expect="less").verdict == "inconclusive"
    assert difference_verdict([np.nan, np.nan], b).verdict == "inconclusive"
    # a fixed reference: d = 2, SE = 0.577, t = 3.46 on 2 df: p = 0.074. Mean ± 2 SE called
    # it a difference; the t quantile (4.30) does not
    v = difference_verdict(a, 0.0, expect="greater")
    assert v.verdict == "inconclusive" and v.p_value == pytest.approx(stats.ttest_1samp(a, 0.0).pvalue)
    assert difference_verdict(a, 0.0, expect="greater", k=2.0).verdict == "holds"
    assert difference_verdict([1.0, 1.1, 1.2], 0.0, expect="greater").verdict == "holds"
    assert difference_verdict([1.0, 1.1, 1.2], 0.0, expect="less").verdict == "fails"
    with pytest.raises(ValueError, match="expect"):
        difference_verdict(a, b, expect="bigger")


@pytest.mark.parametrize("fixed", [True, False])
def test_difference_verdict_false_positive_rate(fixed):
    """No difference, 3 seeds: the t rule calls one 5% of the time (1200 draws: sd 0.006),
    the former mean ± 2 SE rule 18% (one sample vs a fixed value) or 11% (3 vs 3)."""
    rng = np.random.default_rng(1)
    draws = rng.normal(size=(1200, 2, 3))
    def rate(**kw):
        return np.mean([difference_verdict(x, 0.0 if fixed else y, expect="differ", **kw).verdict
                        != "inconclusive" for x, y in draws])
    new, old = rate(), rate(k=2.0)
    assert abs(new - 0.05) < 0.02
    assert old > (0.15 if fixed else 0.09)


def test_holm_against_brute_force():
    from landscape_utils.experiments.findings import corrected_verdicts, holm

    p = np.array([0.01, 0.04, np.nan, 0.03, 0.2])
    # by hand: sorted 0.01, 0.03, 0.04, 0.2 (m = 4) -> 0.04, 0.09, 0.09 (max with 0.08), 0.2
    np.testing.assert_allclose(holm(p), [0.04, 0.09, np.nan, 0.09, 0.2])
    frame = findings_frame([
        Finding("a", "c", "holds", "e", "n", p_value=0.01, kind="test"),
        Finding("b", "c", "fails", "e", "n", p_value=0.04, kind="test"),
        Finding("c", "c", "holds", "e", "n"),                        # a rule, no p-value
        Finding("d", "c", "holds", "e", "n", kind="description"),
        Finding("e", "c", "inconclusive", "e", "n", p_value=0.5, kind="test")])
    out = corrected_verdicts(frame)
    assert list(out.corrected_verdict) == ["holds", "inconclusive", "exploratory",
                                           "description", "inconclusive"]
    np.testing.assert_allclose(out.p_adjusted, [0.03, 0.08, np.nan, np.nan, 0.5])
    # a "test" without a p-value is a rule
    assert Finding("x", "c", "holds", "e", "n", kind="test").kind == "rule"


def test_spearman_verdict():
    x = np.arange(6.0)
    y = x ** 2
    assert spearman_verdict(x, y).verdict == "holds"
    v = spearman_verdict(x, y, expect="negative")
    assert v.verdict == "fails" and "n = 6" in v.evidence and v.n == "6 pairs"
    assert spearman_verdict(x[:4], y[:4]).verdict == "inconclusive"          # n < 5
    y2 = np.array([3.0, 4.0, 1.0, 6.0, 2.0, 5.0])
    r = stats.spearmanr(x, y2)
    assert r.pvalue > 0.05
    v2 = spearman_verdict(x, y2, expect="nonzero")
    assert v2.verdict == "inconclusive" and f"{r.statistic:.3f}" in v2.evidence
    xn = np.r_[x, np.nan]
    assert spearman_verdict(xn, np.r_[y, 1.0]).n == "6 pairs"
    assert spearman_verdict(x, np.ones(6)).verdict == "inconclusive"
    with pytest.raises(ValueError, match="same length"):
        spearman_verdict(x, y[:3])


def test_majority_verdict():
    assert majority_verdict([True, True, False]).verdict == "holds"
    assert majority_verdict([True, False, False]).verdict == "fails"
    v = majority_verdict([True, None, False], what="temperatures")
    assert v.verdict == "inconclusive" and "1 undecided" in v.evidence and v.n == "3 temperatures"
    assert majority_verdict([True, True, np.nan]).verdict == "holds"
    assert majority_verdict([False, False, None]).verdict == "fails"
    assert majority_verdict([True, False, None, None]).verdict == "inconclusive"
    assert majority_verdict([True, True]).verdict == "inconclusive"           # n < 3


def test_rho_rows_equals_scipy_with_ties():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 4, size=(20, 9)).astype(float)
    y = rng.normal(size=(20, 9))
    y[3] = 1.0
    got = _rho_rows(x, y)
    for i in range(20):
        if np.ptp(x[i]) == 0 or np.ptp(y[i]) == 0:
            assert np.isnan(got[i])
        else:
            assert got[i] == pytest.approx(stats.spearmanr(x[i], y[i]).statistic)


# --------------------------------------------------------------------------------------
# Chapter 4 findings
# --------------------------------------------------------------------------------------
def _cells(acc, std, phases):
    n = len(acc)
    return pd.DataFrame({"width": 2 ** np.arange(n), "batch_size": 64, "test_acc": acc,
                         "test_acc_std": std, "n_seeds": 3}), phases


def test_best_accuracy_phase_rules():
    cells, ph = _cells([0.9, 0.7, 0.6], [0.01, 0.01, 0.01], ["IV-B", "IV-A", "III"])
    f = best_accuracy_phase(cells, ph)
    assert f.key == "best_accuracy_phase" and f.verdict == "holds"
    assert "width 1, batch_size 64" in f.evidence and f.n == "3 cells x 3 seeds"
    # the best cell is IV-A, nothing tied with it: fails
    assert best_accuracy_phase(cells, ["IV-A", "IV-B", "III"]).verdict == "fails"
    # a III cell within 2 SE of the best IV-B cell: inconclusive
    # (SE = 0.05/sqrt(3) = 0.029 each, 2 SE of the difference = 0.082 > 0.9 - 0.85)
    c2, _ = _cells([0.9, 0.85, 0.6], [0.05, 0.05, 0.05], None)
    f2 = best_accuracy_phase(c2, ["IV-B", "III", "I"])
    assert f2.verdict == "inconclusive" and "1 other cell" in f2.evidence
    # IV not split
    assert best_accuracy_phase(cells, ["IV", "IV", "III"]).verdict == "holds"
    # split grid but the best cell is an unresolved IV: inconclusive; undetermined too
    assert best_accuracy_phase(cells, ["IV", "IV-A", "III"], iv_split=True).verdict == "inconclusive"
    assert best_accuracy_phase(cells, ["undetermined", "IV-B", "I"]).verdict == "inconclusive"
    assert best_accuracy_phase(cells.assign(test_acc=np.nan), ph).verdict == "inconclusive"
    with pytest.raises(ValueError, match="entries"):
        best_accuracy_phase(cells, ph[:2])


def test_metric_ranking_rules():
    rng = np.random.default_rng(0)
    n = 30
    acc = np.sort(rng.uniform(0.5, 0.9, n))
    cells = pd.DataFrame({
        "test_acc": acc,
        "train_loss": np.full(n, 0.001),
        "cka": acc + rng.normal(0, 0.005, n),               # almost monotone in acc
        "lambda_max": rng.uniform(1, 10, n),                 # unrelated
        "mc": rng.normal(size=n),
    })
    f = metric_ranking(cells, n_boot=300)
    assert f.key == "metric_ranking" and f.verdict == "holds"
    rho_cka = stats.spearmanr(cells.cka, acc).statistic
    assert f"cka {rho_cka:+.3f}" in f.evidence and "n=30" in f.evidence
    assert f.n == "30 cells, 30 well-trained"
    swapped = cells.rename(columns={"cka": "lambda_max", "lambda_max": "cka"})
    swapped["lambda_max"] = -swapped["lambda_max"]            # flatter is better, as expected
    f_swapped = metric_ranking(swapped, n_boot=300)
    assert f_swapped.verdict == "fails" and f_swapped.kind == "test" and f_swapped.p_value < 0.05
    # a global metric with the wrong sign is no support (ranking by |rho| would hold)
    wrong = cells.assign(cka=-cells.cka)
    assert metric_ranking(wrong, n_boot=300).verdict in ("fails", "inconclusive")
    assert metric_ranking(wrong, n_boot=300, signs={**EXPECTED_SIGNS, "cka": -1}).verdict == "holds"
    both = cells.assign(lambda_max=-cells.cka)               # tie: interval covers 0
    assert metric_ranking(both, n_boot=300).verdict == "inconclusive"
    few = cells.assign(train_loss=np.r_[np.full(5, 0.001), np.full(n - 5, 1.0)])
    f_few = metric_ranking(few, n_boot=300)
    assert f_few.verdict == "inconclusive" and "fewer than 8" in f_few.evidence
    assert metric_ranking(cells.drop(columns=["lambda_max", "train_loss"]),
                          n_boot=50).verdict == "inconclusive"


def test_chapter4_findings_on_the_authors_grid():
    from landscape_utils.experiments.reference import load_shipped_pairs, load_shipped_results
    from landscape_utils.experiments.taxonomy import classify_with_confidence

    cells = load_shipped_results(paper_grid_only=True)
    conf = classify_with_confidence(cells, load_shipped_pairs(paper_grid_only=True),
                                    load_shipped_results(long=True, paper_grid_only=True))
    f = best_accuracy_phase(cells, conf.phase, iv_split=conf.attrs["iv_split"],
                            grid="authors' grid")
    assert f.verdict == "holds" and "width 128, batch_size 44" in f.evidence
    assert f.n == "182 cells x 5 seeds"
    m = metric_ranking(cells, grid="authors' grid", n_boot=500)
    assert "n=89" in m.evidence and m.n == "182 cells, 89 well-trained"
    assert m.evidence.index("well-trained (n=89): cka") >= 0


def test_findings_csv_carries_the_corrected_verdict(tmp_path):
    found = [Finding("a", "c", "holds", "e", "n", p_value=0.01, kind="test"),
             Finding("b", "c", "fails", "e", "n", p_value=0.03, kind="test"),
             Finding("b2", "c", "holds", "e", "n", p_value=0.04, kind="test"),
             Finding("d", "c", "holds", "e", "n", kind="description")]
    rows = write_findings(tmp_path, "02_x", found)
    assert list(rows.columns) == list(FINDINGS_COLUMNS)
    back = read_findings(tmp_path)
    # Holm over 3 tests: 3 x 0.01 = 0.03, 2 x 0.03 = 0.06, max(0.06, 1 x 0.04) = 0.06
    assert list(back.corrected_verdict) == ["holds", "inconclusive", "inconclusive", "description"]
    assert list(back.p_adjusted) == ["0.03", "0.06", "0.06", ""]
    html = show_findings(back).html
    assert "Holm-corrected: inconclusive" in html and "description" in html
    # a file written before the new columns existed still reads, with them empty
    legacy = tmp_path / "old"
    (legacy / "tables").mkdir(parents=True)
    back[list(FINDINGS_COLUMNS[:7])].to_csv(legacy / "tables" / "findings.csv", index=False)
    old = read_findings(legacy)
    assert list(old.columns) == list(FINDINGS_COLUMNS) and (old.corrected_verdict == "").all()


def test_phase_sharpness_goes_both_ways():
    from landscape_utils.experiments.findings import phase_sharpness

    cells = pd.DataFrame({"lambda_max": [80.0, 90.0, 100.0, 60.0, 5.0, 6.0, 4.0, 7.0, 50.0]})
    ph = ["I", "I", "II", "II", "III", "IV-A", "IV-B", "IV", "undetermined"]
    f = phase_sharpness(cells, ph)
    assert f.verdict == "holds" and f.kind == "test" and f.n == "4 vs 4 cells"
    assert f.p_value == pytest.approx(stats.ttest_ind(np.log([80, 90, 100, 60]), np.log([5, 6, 4, 7]),
                                                      equal_var=False).pvalue)
    assert "I 85" in f.evidence
    flipped = ["III", "IV", "IV-A", "IV-B", "I", "II", "I", "II", "undetermined"]
    assert phase_sharpness(cells, flipped).verdict == "fails"
    assert phase_sharpness(cells, ["I"] * 9).verdict == "inconclusive"
