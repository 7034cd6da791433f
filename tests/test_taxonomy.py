"""Tests for landscape_utils.taxonomy on hand-made tables."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from landscape_utils.taxonomy import (
    PHASES,
    PhaseThresholds,
    cell_table,
    classify,
    contrast_loads,
    phase_summary,
    sensitivity,
    spearman_table,
)


# --------------------------------------------------------------------------------------
# cell_table
# --------------------------------------------------------------------------------------
def _runs() -> pd.DataFrame:
    return pd.DataFrame({
        "width":      [4, 4, 4, 8, 8, 8, 16],
        "batch_size": [32, 32, 32, 32, 32, 32, 64],
        "seed":       [0, 1, 2, 0, 1, 2, 0],
        "status":     ["ok", "ok", "diverged", "ok", "ok", "ok", "diverged"],
        "test_acc":   [0.5, 0.7, 0.1, 0.8, 0.9, 1.0, 0.2],
        "train_loss": [1.0, 3.0, 9.0, 0.1, 0.2, 0.3, 5.0],
        "mc":         [-2.0, -2.0, np.nan, 0.0, 0.0, 0.0, np.nan],
    })


def test_cell_table_means_stds_and_divergence():
    cells = cell_table(_runs(), "width", "batch_size")
    assert list(cells[["width", "batch_size"]].itertuples(index=False, name=None)) == [
        (4, 32), (8, 32), (16, 64)]
    c4, c8, c16 = (cells.iloc[i] for i in range(3))
    # width 4: the diverged seed is excluded
    assert c4.test_acc == pytest.approx(0.6)
    assert c4.test_acc_std == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert c4.train_loss == pytest.approx(2.0)
    assert c4.train_loss_std == pytest.approx(np.sqrt(2.0))
    assert (c4.n_seeds, c4.n_diverged) == (2, 1)
    # width 8: three seeds
    assert c8.test_acc == pytest.approx(0.9)
    assert c8.test_acc_std == pytest.approx(0.1)
    assert c8.train_loss_std == pytest.approx(0.1)
    assert (c8.n_seeds, c8.n_diverged) == (3, 0)
    # width 16: every run diverged -> kept, NaN metrics
    assert (c16.n_seeds, c16.n_diverged) == (0, 1)
    assert np.isnan(c16.test_acc)
    # metrics that are not in the table are skipped, not invented
    for absent in ("cka", "l2", "lambda_max", "trace", "cka_std"):
        assert absent not in cells.columns
    assert "mc" in cells.columns and cells.mc.iloc[0] == -2.0


def test_cell_table_without_status_and_extra_keys():
    df = _runs().drop(columns="status").assign(dataset=["a", "a", "b", "a", "a", "a", "a"])
    cells = cell_table(df, "width", "batch_size", metrics=("test_acc",), extra_keys=("dataset",))
    assert len(cells) == 4
    assert (cells.n_diverged == 0).all()
    row = cells[(cells.width == 4) & (cells.dataset == "a")].iloc[0]
    assert row.test_acc == pytest.approx(0.6) and row.n_seeds == 2
    single = cells[(cells.width == 4) & (cells.dataset == "b")].iloc[0]
    assert single.test_acc == pytest.approx(0.1) and np.isnan(single.test_acc_std)
    assert "train_loss" not in cells.columns


def test_cell_table_missing_key_raises():
    with pytest.raises(KeyError):
        cell_table(_runs(), "width", "lr")


# --------------------------------------------------------------------------------------
# classify
# --------------------------------------------------------------------------------------
def _one_per_phase() -> pd.DataFrame:
    return pd.DataFrame({
        "phase_true": ["I", "II", "III", "IV-A", "IV-B"],
        "mc":         [-8.0, 3.0, -5.0, 0.2, 0.0],
        "train_loss": [0.5, 0.1, 0.002, 0.002, 0.001],
        "cka":        [0.40, 0.50, 0.45, 0.55, 0.80],
        "lambda_max": [500.0, 60.0, 200.0, 10.0, 2.0],
        "test_acc":   [0.60, 0.80, 0.78, 0.85, 0.89],
    })


def test_classify_one_row_per_phase():
    cells = _one_per_phase()
    got = classify(cells)
    assert list(got) == list(cells.phase_true)
    assert tuple(got.cat.categories) == PHASES
    assert got.index.equals(cells.index)


def test_classify_boundaries_are_strict():
    t = PhaseThresholds()
    cells = pd.DataFrame({"mc": [-t.mc_neg, t.mc_pos, -t.mc_neg - 1e-9],
                          "train_loss": [0.0, 0.0, t.train_loss_high],
                          "cka": [t.cka_high, 0.0, 0.0]})
    # |mc| exactly at the threshold is "not clearly" non-zero; loss at threshold is not high
    assert list(classify(cells)) == ["IV-B", "IV-A", "III"]


@pytest.mark.parametrize("change, row, before, after", [
    ({"train_loss_high": 1.0}, 0, "I", "III"),     # loss 0.5 no longer "high"
    ({"mc_neg": 6.0}, 2, "III", "IV-A"),           # mc -5 no longer "clearly" negative
    ({"mc_pos": 4.0, "train_loss_high": 0.2}, 1, "II", "IV-A"),  # mc +3 not "clearly" positive, loss 0.1 fitted
    ({"cka_high": 0.9}, 4, "IV-B", "IV-A"),        # cka 0.8 no longer high
    ({"cka_high": 0.5}, 3, "IV-A", "IV-B"),
    ({"lambda_large": 100.0}, 2, "III", "I"),      # sharp and poorly connected
])
def test_thresholds_take_effect(change, row, before, after):
    cells = _one_per_phase()
    base = classify(cells)
    new = classify(cells, PhaseThresholds().replace(**change))
    assert base.iloc[row] == before and new.iloc[row] == after
    others = [i for i in range(len(cells)) if i != row]
    assert list(base.iloc[others]) == list(new.iloc[others])


def test_thresholds_frozen_and_documented():
    t = PhaseThresholds()
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.mc_neg = 2.0  # type: ignore[misc]
    names = [f.name for f in dataclasses.fields(t)]
    assert names[:4] == ["train_loss_high", "mc_neg", "mc_pos", "cka_high"]
    assert t.lambda_large is None
    assert (t.train_loss_high, t.mc_neg, t.mc_pos, t.cka_high) == (0.01, 1.0, 1.0, 0.7)


def test_unfitted_cells_never_reach_phase_iv():
    # mc near 0 but the training set is not fitted: the sign of mc decides between I and II
    t = PhaseThresholds()
    cells = pd.DataFrame({"mc": [-0.5, 0.0, 0.5, -0.5], "train_loss": [1.4, 1.4, 1.4, 0.001],
                          "cka": [0.9, 0.9, 0.9, 0.9]})
    assert list(classify(cells, t)) == ["I", "II", "II", "IV-B"]
    loose = t.replace(train_loss_high=2.0)
    assert list(classify(cells, loose)) == ["IV-B"] * 4


def test_classify_missing_values():
    cells = pd.DataFrame({"mc": [np.nan, -5.0, 0.0, 3.0], "train_loss": [0.5, np.nan, 0.0, np.nan],
                          "cka": [0.9, 0.9, np.nan, np.nan]})
    got = classify(cells)
    assert got.isna().tolist() == [True, True, True, False]
    assert got.iloc[3] == "II"
    # no cka column at all: IV cells are undecided, the others are still labelled
    got2 = classify(_one_per_phase().drop(columns="cka"))
    assert list(got2.iloc[:3]) == ["I", "II", "III"] and got2.iloc[3:].isna().all()


# --------------------------------------------------------------------------------------
# sensitivity
# --------------------------------------------------------------------------------------
def test_sensitivity_shape_and_counts():
    cells = pd.DataFrame({
        "mc": [-1.2, 0.0, 0.0, 5.0, -9.0],
        "train_loss": [0.001, 0.001, 0.001, 0.3, 0.5],
        "cka": [0.5, 0.8, 0.6, 0.5, 0.3],
    })
    out = sensitivity(cells, rel=0.25)
    assert out.shape == (8, 7)
    assert list(out.columns) == ["threshold", "direction", "default", "value", "n_changed",
                                 "frac_changed", "transitions"]
    assert list(out.threshold) == ["train_loss_high"] * 2 + ["mc_neg"] * 2 + ["mc_pos"] * 2 \
        + ["cka_high"] * 2
    assert list(out.direction) == ["-25%", "+25%"] * 4
    assert not out.duplicated(["threshold", "direction"]).any()
    r = out.set_index(["threshold", "direction"])
    # mc -1.2 is III at mc_neg 1.0, IV-A at 1.25
    assert r.loc[("mc_neg", "+25%"), "n_changed"] == 1
    assert r.loc[("mc_neg", "+25%"), "transitions"] == "III→IV-A: 1"
    assert r.loc[("mc_neg", "+25%"), "value"] == pytest.approx(1.25)
    assert r.loc[("mc_neg", "+25%"), "frac_changed"] == pytest.approx(0.2)
    # cka 0.6 becomes IV-B at 0.525; cka 0.8 becomes IV-A at 0.875
    assert r.loc[("cka_high", "-25%"), "n_changed"] == 1
    assert r.loc[("cka_high", "+25%"), "transitions"] == "IV-B→IV-A: 1"
    assert r.loc[("train_loss_high", "-25%"), "n_changed"] == 0
    # an optional threshold that is set is included too
    out2 = sensitivity(cells, PhaseThresholds(lambda_large=100.0), rel=0.1)
    assert out2.shape == (10, 7) and set(out2.direction) == {"-10%", "+10%"}


# --------------------------------------------------------------------------------------
# summaries
# --------------------------------------------------------------------------------------
def test_phase_summary():
    cells = pd.concat([_one_per_phase(), _one_per_phase().iloc[[4]].assign(test_acc=0.95)],
                      ignore_index=True)
    s = phase_summary(cells, classify(cells))
    assert list(s.index) == list(PHASES)
    assert s.loc["IV-B", "n_cells"] == 2
    assert s.loc["IV-B", "test_acc_mean"] == pytest.approx(0.92)
    assert s.loc["IV-B", "test_acc_best"] == pytest.approx(0.95)
    assert s.loc["I", "test_acc_best"] == pytest.approx(0.60)
    assert s.n_cells.sum() == len(cells)
    # a phase without cells still appears, with count 0
    s2 = phase_summary(cells.iloc[:2], classify(cells.iloc[:2]))
    assert s2.loc["IV-B", "n_cells"] == 0 and np.isnan(s2.loc["IV-B", "test_acc_mean"])


def test_spearman_table():
    rng = np.random.default_rng(0)
    n = 40
    acc = rng.uniform(0.5, 0.9, n)
    loss = np.r_[rng.uniform(0.0001, 0.009, n // 2), rng.uniform(0.02, 1.0, n // 2)]
    cells = pd.DataFrame({
        "test_acc": acc,
        "train_loss": loss,
        "cka": acc ** 2,                 # monotone in acc -> rho 1
        "lambda_max": -acc,              # rho -1
        "mc": rng.normal(size=n),
    })
    t = spearman_table(cells)
    assert list(t.index) == ["train_loss", "lambda_max", "mc", "cka"]  # trace, l2 absent
    assert t.loc["cka", "rho_all"] == pytest.approx(1.0)
    assert t.loc["lambda_max", "rho_well_trained"] == pytest.approx(-1.0)
    assert t.loc["mc", "n_all"] == n and t.loc["mc", "n_well_trained"] == n // 2
    well = loss < PhaseThresholds().train_loss_high
    ref = stats.spearmanr(cells.mc[well], acc[well])
    assert t.loc["mc", "rho_well_trained"] == pytest.approx(ref.statistic)
    assert t.loc["mc", "p_well_trained"] == pytest.approx(ref.pvalue)
    # explicit mask
    mask = np.zeros(n, bool)
    mask[:10] = True
    t2 = spearman_table(cells, well_trained_mask=mask)
    assert t2.loc["mc", "n_well_trained"] == 10
    assert t2.loc["mc", "rho_well_trained"] == pytest.approx(
        stats.spearmanr(cells.mc[:10], acc[:10]).statistic)
    # NaN pairs are dropped
    cells.loc[0, "mc"] = np.nan
    assert spearman_table(cells).loc["mc", "n_all"] == n - 1


# --------------------------------------------------------------------------------------
# contrast_loads
# --------------------------------------------------------------------------------------
def _row_at(at: float = 256) -> pd.DataFrame:
    # width: 4 -> I, 8 -> III (mc -5), 16 -> III (mc -3), 32 -> IV-A, 64 -> IV-B (best acc)
    return pd.DataFrame({
        "width": [4, 8, 16, 32, 64, 4],
        "batch_size": [at, at, at, at, at, 16],
        "train_loss": [1.0, 0.001, 0.002, 0.001, 0.001, 0.001],
        "mc": [-20.0, -5.0, -3.0, 0.0, 0.1, -50.0],
        "cka": [0.3, 0.5, 0.5, 0.6, 0.9, 0.2],
        "test_acc": [0.5, 0.7, 0.72, 0.8, 0.85, 0.1],
    })


def test_contrast_loads_picks_phase_iii_and_best_phase_iv():
    out = contrast_loads(_row_at(), "width", "batch_size", 256)
    assert (out["poor"], out["good"]) == (8, 64)
    assert isinstance(out["poor"], int) and "phase III" in out["reason"]
    # the other temperature is ignored (its width-4 cell has the lowest mc overall)
    assert contrast_loads(_row_at(), "width", "batch_size", 256.0)["poor"] == 8


def test_contrast_loads_fallbacks():
    df = _row_at()
    # no phase III: the best-fitted cell with a barrier (width 4 is the only one)
    no_iii = df[~df.width.isin([8, 16])]
    out = contrast_loads(no_iii, "width", "batch_size", 256)
    assert (out["poor"], out["good"]) == (4, 64)
    # no mc at all: smallest and largest load
    out = contrast_loads(df.drop(columns="mc"), "width", "batch_size", 256)
    assert (out["poor"], out["good"]) == (4, 64) and "no mc" in out["reason"]
    # no phase IV: the largest other load
    out = contrast_loads(df[df.width <= 16], "width", "batch_size", 256)
    assert (out["poor"], out["good"]) == (8, 16)
    with pytest.raises(ValueError, match="no cell at batch_size"):
        contrast_loads(df, "width", "batch_size", 99)
