"""Tests for landscape_utils.experiments.taxonomy on hand-made tables."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from landscape_utils.experiments.taxonomy import (PHASES, PhaseThresholds, cell_table, classify, contrast_loads,
                                                  phase_summary, sensitivity, spearman_table)


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


# --------------------------------------------------------------------------------------
# classify_with_confidence on hand-made cells
# --------------------------------------------------------------------------------------
from landscape_utils.experiments.taxonomy import (CONFIDENCE_PHASES, UNDETERMINED,  # noqa: E402
                                      classify_with_confidence)

# (width, batch_size): (mc per pair, train loss per seed, cka per pair, lambda_max per seed)
HAND = {
    (4, 16): ((-3.4, 4.25, -3.75), (1.2, 1.3, 1.25), (0.3, 0.32, 0.31), (100., 110., 90.)),  # noise
    (4, 64): ((-5.0, -6.0, -4.5), (1.2, 1.3, 1.25), (0.3, 0.32, 0.31), (100., 110., 90.)),   # I
    (64, 16): ((3.0, 4.0, 2.5), (0.005, 0.006, 0.004), (0.5, 0.52, 0.5), (100., 90., 95.)),  # II, low loss
    (16, 256): ((-3.0, -4.0, -3.5), (0.002, 0.003, 0.002), (0.5, 0.5, 0.52), (100., 95., 105.)),  # III, sharp
    (64, 64): ((0.1, -0.2, 0.05), (0.001, 0.0012, 0.0011), (0.85, 0.86, 0.84), (5., 4., 6.)),  # IV-B
    (64, 256): ((0.0, 0.1, -0.1), (0.001, 0.0012, 0.0011), (0.5, 0.52, 0.48), (5., 5.5, 4.5)),  # IV-A
}


def _hand_tables(hand=HAND):
    seeds_of_pair = [(0, 1), (0, 2), (1, 2)]
    pairs = pd.DataFrame([{"width": w, "batch_size": b, "pair": k, "seed_a": seeds_of_pair[k][0],
                           "seed_b": seeds_of_pair[k][1], "mc": mc[k], "cka": cka[k]}
                          for (w, b), (mc, _, cka, _) in hand.items() for k in range(3)])
    runs = pd.DataFrame([{"width": w, "batch_size": b, "seed": s, "train_loss": tl[s],
                          "lambda_max": lam[s], "status": "ok"}
                         for (w, b), (_, tl, _, lam) in hand.items() for s in range(3)])
    # a diverged run must be ignored
    runs.loc[len(runs)] = {"width": 4, "batch_size": 64, "seed": 3, "train_loss": 1e6,
                           "lambda_max": 1e9, "status": "diverged"}
    cells = cell_table(runs, "width", "batch_size", metrics=("train_loss", "lambda_max"))
    pc = pairs.groupby(["width", "batch_size"])[["mc", "cka"]].mean().reset_index()
    return cells.merge(pc, on=["width", "batch_size"]), pairs, runs


def test_confidence_hand_made_cells():
    cells, pairs, runs = _hand_tables()
    out = classify_with_confidence(cells, pairs, runs, n_resamples=4000)
    assert out.index.equals(cells.index)
    got = dict(zip(zip(cells.width, cells.batch_size), out.phase.astype(object)))
    assert got == {(4, 16): UNDETERMINED, (4, 64): "I", (64, 16): "II", (16, 256): "III",
                   (64, 64): "IV-B", (64, 256): "IV-A"}
    assert tuple(out.phase.cat.categories) == CONFIDENCE_PHASES
    assert out.attrs["iv_split"] and "IV split" in out.attrs["iv_reason"]
    r = out.set_index(pd.MultiIndex.from_frame(cells[["width", "batch_size"]]))
    # brute force for the noisy cell: train loss is always high, so p_I = P(mc draw < 0)
    # with mc draw = mean + SE_jack * T_2; leaving a seed out leaves the one pair without
    # it, so SE_jack^2 = (2/3) * sum((pair - mean)^2) = (4/3) s^2: twice the per-pair SE
    mc = np.array(HAND[(4, 16)][0])
    se_jack = np.sqrt(2 / 3 * np.sum((mc - mc.mean()) ** 2))
    assert se_jack == pytest.approx(2 * mc.std(ddof=1) / np.sqrt(3))
    exact = stats.t.cdf(-mc.mean() / se_jack, df=2)
    assert 0.5 < exact < 0.7
    assert r.loc[(4, 16), "p_I"] == pytest.approx(exact, abs=0.03)
    assert r.loc[(4, 16), "p_phase"] == pytest.approx(r.loc[(4, 16), "p_I"])
    # (t with 2 df has heavy tails: a few draws of the train loss fall below the threshold)
    assert r.loc[(4, 16), "p_I"] + r.loc[(4, 16), "p_II"] == pytest.approx(1.0, abs=2e-3)
    assert "undetermined" in r.loc[(4, 16), "reason"]
    for cell in [(4, 64), (64, 16), (16, 256), (64, 64), (64, 256)]:
        assert r.loc[cell, "p_phase"] >= 0.9, cell
    # probabilities of the phases sum to one
    np.testing.assert_allclose(out[["p_I", "p_II", "p_III", "p_IV-A", "p_IV-B"]].sum(axis=1), 1.0)
    np.testing.assert_allclose(out["p_IV"], out["p_IV-A"] + out["p_IV-B"])
    # the local axis: threshold sqrt(median(I, II) * median(III, IV)) = sqrt(100 * 5)
    assert out.attrs["hessian_threshold"] == pytest.approx(np.sqrt(97.5 * 5.0))
    assert r.hessian_flag[r.hessian_flag].index.tolist() == [(16, 256)]   # sharp phase III
    assert r.loss_flag[r.loss_flag].index.tolist() == [(64, 16)]          # II with a low loss
    assert "Hessian large for III" in r.loc[(16, 256), "reason"]
    assert "train loss low for II" in r.loc[(64, 16), "reason"]
    assert not r.loc[(4, 16), "hessian_flag"]          # undetermined cells are not flagged
    assert list(out.n_mc) == [3] * 6 and list(out.n_train_loss) == [3] * 6
    # deterministic for a seed
    again = classify_with_confidence(cells, pairs, runs, n_resamples=4000)
    pd.testing.assert_frame_equal(out, again)
    # a stated hessian_high replaces the ranking rule
    fixed = classify_with_confidence(cells, pairs, runs, hessian_high=200.0)
    assert fixed.attrs["hessian_threshold"] == 200.0
    assert fixed.hessian_flag.sum() == 2                # I and II are "small" at 200


def test_confidence_bootstrap_matches_enumeration():
    cells, pairs, runs = _hand_tables()
    out = classify_with_confidence(cells, pairs, runs, method="bootstrap", n_resamples=6000)
    p_i = out.p_I[(cells.width == 4) & (cells.batch_size == 16)].item()
    # 27 equally likely resamples of 3 pairs: mc mean < 0 unless +4.25 is drawn twice or more
    assert p_i == pytest.approx(20 / 27, abs=0.03)
    # with the ordinary bootstrap the noisy cell would pass a 0.7 level, with the t draws not
    assert out.phase[(cells.width == 4) & (cells.batch_size == 16)].item() == "I"


def test_confidence_iv_not_split_and_ambiguous_cells():
    hand = {k: v for k, v in HAND.items() if k != (64, 256)}   # no IV-A cell left
    cells, pairs, runs = _hand_tables(hand)
    out = classify_with_confidence(cells, pairs, runs)
    assert not out.attrs["iv_split"] and "IV not split" in out.attrs["iv_reason"]
    iv = out[(cells.width == 64) & (cells.batch_size == 64)].iloc[0]
    assert iv.phase == "IV" and iv.p_phase == pytest.approx(1.0, abs=0.05)
    assert "IV not split" in iv.reason
    # split grid, one cell whose CKA straddles cka_high: IV, not IV-A or IV-B
    hand2 = dict(HAND)
    hand2[(128, 64)] = ((0.0, 0.1, -0.1), (0.001, 0.001, 0.001), (0.62, 0.78, 0.70), (5., 5., 5.))
    cells, pairs, runs = _hand_tables(hand2)
    out = classify_with_confidence(cells, pairs, runs)
    amb = out[(cells.width == 128)].iloc[0]
    assert out.attrs["iv_split"] and amb.phase == "IV" and "IV-A/IV-B within" in amb.reason
    assert 0.3 < amb["p_IV-B"] < 0.7


def test_confidence_from_cells_only_holds_values():
    cells = _one_per_phase().assign(width=[1, 2, 3, 4, 5], batch_size=16)
    out = classify_with_confidence(cells)
    assert list(out.phase.astype(object)) == list(classify(cells).astype(object))
    assert (out.p_phase == 1.0).all()
    assert out.reason.str.contains("spread unknown").all()
    # a cell without mc gets no label
    out2 = classify_with_confidence(cells.assign(mc=[np.nan, 3.0, -5.0, 0.2, 0.0]))
    assert pd.isna(out2.phase.iloc[0]) and np.isnan(out2.p_phase.iloc[0])


def test_confidence_bad_arguments():
    cells, pairs, runs = _hand_tables()
    with pytest.raises(ValueError, match="level"):
        classify_with_confidence(cells, pairs, runs, level=0.4)
    with pytest.raises(ValueError, match="method"):
        classify_with_confidence(cells, pairs, runs, method="pairs")
    with pytest.raises(KeyError, match="lr"):
        classify_with_confidence(cells, pairs, runs, temperature="lr")
    with pytest.raises(KeyError, match="width"):
        classify_with_confidence(cells, pairs.drop(columns="width"), runs)


def test_confidence_on_the_authors_grid():
    from landscape_utils.experiments.reference import (load_shipped_pairs, load_shipped_results)

    cells = load_shipped_results(paper_grid_only=True)
    out = classify_with_confidence(cells, load_shipped_pairs(paper_grid_only=True),
                                   load_shipped_results(long=True, paper_grid_only=True))
    ph = out.phase.astype(object)
    best = (cells.width == 128) & (cells.batch_size == 44)
    assert ph[best].item() == "IV-B"
    assert ph[cells.test_acc.idxmax()] == "IV-B"
    assert (ph[cells.width <= 2] == "I").all()
    assert out.attrs["iv_split"]
    # mc comes from one pair: it is held, and the cells say so
    assert (out.n_mc == 1).all() and out.reason.str.contains("mc from 1 value").all()
    # the confident map agrees with the rule on the means wherever it gives a phase
    sure = ~ph.isin([UNDETERMINED, "IV"])
    assert (ph[sure] == out.phase_of_means[sure].astype(object)).all()
    assert sure.mean() > 0.95


# --------------------------------------------------------------------------------------
# Resampling the seeds: the jackknife against brute force, and its coverage
# --------------------------------------------------------------------------------------
from itertools import combinations  # noqa: E402

from landscape_utils.experiments.taxonomy import neighbour_spread, seed_jackknife  # noqa: E402


def test_seed_jackknife_brute_force():
    # per run: the jackknife SE of a mean is s / sqrt(n)
    v = np.array([1.0, 3.0, 2.5, 7.0])
    jk = seed_jackknife(v, [10, 11, 12, 13])
    assert jk.se == pytest.approx(v.std(ddof=1) / 2) and jk.df == 3 and jk.n_seeds == 4
    # per pair: leave each seed out by hand
    seeds = [0, 1, 2, 3]
    pairs = list(combinations(seeds, 2))
    x = np.array([0.3, -1.0, 2.0, 0.7, 1.1, -0.4])
    loo = [np.mean([xv for (a, b), xv in zip(pairs, x) if s not in (a, b)]) for s in seeds]
    jk = seed_jackknife(x, pairs)
    np.testing.assert_allclose(jk.loo, loo)
    assert jk.se == pytest.approx(np.sqrt(3 / 4 * np.sum((np.array(loo) - np.mean(loo)) ** 2)))
    assert jk.mean == pytest.approx(x.mean()) and jk.df == 3 and jk.n_values == 6
    # two seeds, one pair: no seed left after leaving one out
    assert np.isnan(seed_jackknife([1.0], [(0, 1)]).se)
    with pytest.raises(ValueError, match="one row per value"):
        seed_jackknife([1.0, 2.0], [0, 1, 2])


def test_neighbour_spread_recovers_the_noise():
    rng = np.random.default_rng(3)
    w, b = np.meshgrid(np.arange(14), np.arange(13), indexing="ij")
    cells = pd.DataFrame({"width": w.ravel(), "batch_size": b.ravel(),
                          "mc": 0.3 * w.ravel() - 0.2 * b.ravel() + rng.normal(0, 0.5, w.size)})
    assert neighbour_spread(cells) == pytest.approx(0.5, rel=0.15)
    assert np.isnan(neighbour_spread(cells[cells.width < 2].loc[lambda d: d.batch_size < 2]))


def _seed_effect_cells(n_cells, n_seeds, sd_seed, sd_pair, seed=0, mu=-1.0):
    """Cells whose pair mc is mu + a_i + a_j + e_ij (a seed effect a per seed, shared by its
    pairs), with a fitted train loss and a fixed CKA: the expected cell mean of mc is mu."""
    rng = np.random.default_rng(seed)
    pairs, runs = [], []
    for c in range(n_cells):
        a = rng.normal(0.0, sd_seed, n_seeds)
        for i, j in combinations(range(n_seeds), 2):
            pairs.append({"width": c, "batch_size": 1, "seed_a": i, "seed_b": j,
                          "mc": mu + a[i] + a[j] + rng.normal(0.0, sd_pair), "cka": 0.5})
        runs += [{"width": c, "batch_size": 1, "seed": i, "train_loss": 0.001}
                 for i in range(n_seeds)]
    pairs, runs = pd.DataFrame(pairs), pd.DataFrame(runs)
    cells = pairs.groupby(["width", "batch_size"])[["mc", "cka"]].mean().reset_index()
    return cells.assign(train_loss=0.001), pairs, runs


def _coverage(n_seeds, method, sd_pair=0.0, n_cells=800, nominal=0.9):
    """Fraction of cells whose central `nominal` interval of the mc draws covers the true mean
    mu = -mc_neg: P(draw < mu) is p_III here (fitted cells), so covered iff p_III is within
    [(1 - nominal) / 2, (1 + nominal) / 2]."""
    cells, pairs, runs = _seed_effect_cells(n_cells, n_seeds, 1.0, sd_pair, seed=n_seeds)
    out = classify_with_confidence(cells, pairs, runs, n_resamples=1000, method=method,
                                   level=0.99)
    tail = (1 - nominal) / 2
    return float(out.p_III.between(tail, 1 - tail).mean())


@pytest.mark.parametrize("n_seeds", [3, 5])
def test_seed_jackknife_covers_at_the_nominal_rate(n_seeds):
    """Additive seed effects: the seed jackknife's 90% intervals cover the true cell mean at
    90% (800 cells: Monte Carlo sd 0.011; 3 sd allowed), the former per-pair t does not.
    Measured: python -m pytest -q tests/test_taxonomy.py -k covers -s"""
    new = _coverage(n_seeds, "jackknife")
    old = _coverage(n_seeds, "t")
    print(f"\n{n_seeds} seeds, 90% nominal: seed jackknife {new:.3f}, per-pair t {old:.3f}")
    assert abs(new - 0.9) < 0.035
    assert old < 0.85
    # with noise of the pairs' own on top the jackknife is conservative, never below nominal
    assert _coverage(n_seeds, "jackknife", sd_pair=1.0) > 0.9 - 0.035


def test_mc_on_points_by_hand():
    from landscape_utils.experiments.taxonomy import PAPER_POINTS, mc_on_points
    from landscape_utils.metrics.profiles import mode_connectivity

    t9 = np.linspace(0, 1, 9)                       # holds the paper's five points
    err9 = np.array([1.0, 9.0, 2.0, 3.0, 4.0, 3.0, 2.5, 2.0, 1.0])  # a spike at t = 1/8 only
    t11 = np.linspace(0, 1, 11)                     # 0.25 and 0.75 not evaluated
    rows = [{"width": 4, "batch_size": 8, "pair": 0, "path": "bezier", "t": t, "train_err": e}
            for t, e in zip(t9, err9)]
    rows += [{"width": 4, "batch_size": 8, "pair": 0, "path": "linear", "t": t, "train_err": 50.0}
             for t in t9]
    rows += [{"width": 8, "batch_size": 8, "pair": 0, "path": "bezier", "t": t, "train_err": 1.0}
             for t in t11]
    out = mc_on_points(pd.DataFrame(rows), ["width", "batch_size", "pair"]).set_index("width")
    assert out.loc[4, "mc_all"] == pytest.approx(1.0 - 9.0)            # the spike counts
    five = err9[[0, 2, 4, 6, 8]]
    assert out.loc[4, "mc_points"] == pytest.approx(mode_connectivity(five)[0]) == 1.0 - 4.0
    assert abs(out.loc[4, "mc_points"]) <= abs(out.loc[4, "mc_all"])   # fewer points, smaller |mc|
    assert out.loc[4, "n_points"] == 9 and np.isnan(out.loc[8, "mc_points"])
    assert PAPER_POINTS == (0.0, 0.25, 0.5, 0.75, 1.0)
    with pytest.raises(KeyError, match="train_err"):
        mc_on_points(pd.DataFrame(rows).drop(columns="train_err"), ["width", "batch_size", "pair"])
