"""The protocol study's pure pieces, on hand-made phase tables (no training)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from benchmarks.protocol_study import (CANDIDATES, candidate_row, check_targets, grid_params, group_of,
                                       phase_counts, phase_medians)
from landscape_utils.runner import grid_from_params


def _table(rows):
    """rows: (width, batch, phase, train_loss, train_acc, test_acc, lambda_max)."""
    cols = ["width", "batch_size", "label", "train_loss", "train_acc", "test_acc", "lambda_max"]
    df = pd.DataFrame(rows, columns=cols)
    df["mc"] = 0.0
    df["cka"] = 0.8
    return df.drop(columns="label"), list(df["label"])


# A table in the paper's layout: I and II high loss and sharp, II trained, best cell in IV.
PAPER_LIKE = [
    (4, 16, "I", 0.30, 0.90, 0.80, 20.0), (4, 256, "I", 0.50, 0.85, 0.78, 30.0),
    (32, 16, "II", 0.20, 0.93, 0.85, 25.0), (64, 16, "II", 0.15, 0.95, 0.86, 22.0),
    (8, 256, "III", 0.005, 1.0, 0.83, 5.0), (16, 256, "III", 0.004, 1.0, 0.84, 4.0),
    (32, 64, "IV", 0.002, 1.0, 0.93, 3.0), (64, 64, "IV", 0.001, 1.0, 0.95, 2.0),
    (16, 64, "undetermined", 0.01, 1.0, 0.97, 100.0), (8, 16, None, np.nan, 0.5, 0.4, np.nan),
]


def test_group_of_merges_iv_unless_split():
    assert [group_of(x, False) for x in ("I", "II", "III", "IV-A", "IV-B", "IV")] == \
        ["I", "II", "III", "IV", "IV", "IV"]
    assert [group_of(x, True) for x in ("IV-A", "IV-B", "IV")] == ["IV-A", "IV-B", "IV"]
    assert group_of("undetermined", False) is None
    assert group_of(None, True) is None and group_of(float("nan"), False) is None


def test_phase_counts_in_paper_order():
    counts = phase_counts(["IV-B", "I", "undetermined", None, "I", "II", float("nan")])
    assert counts == {"I": 2, "II": 1, "IV-B": 1, "undetermined": 1}
    assert list(counts) == ["I", "II", "IV-B", "undetermined"]


def test_phase_medians_match_numpy_and_pool_iv():
    cells, labels = _table([(4, 16, "IV-A", 0.1, 0.9, 0.7, 1.0), (8, 16, "IV-B", 0.3, 0.8, 0.9, 3.0),
                            (16, 16, "IV-B", 0.5, 1.0, 0.95, 7.0), (32, 16, "I", 1.0, 0.4, 0.3, 9.0)])
    med = phase_medians(cells, labels)
    assert med["IV-B"]["train_loss"] == pytest.approx(np.median([0.3, 0.5]))
    assert med["IV"]["lambda_max"] == pytest.approx(np.median([1.0, 3.0, 7.0]))
    assert med["I"]["test_acc"] == pytest.approx(0.3)
    assert set(med) == {"IV-A", "IV-B", "IV", "I"}


def test_targets_all_hold_on_a_paper_like_table():
    cells, labels = _table(PAPER_LIKE)
    t = check_targets(cells, labels, iv_split=False)
    # the best cell overall (0.97) is undetermined: target 4 reads its label, so it fails ...
    assert t["best_test_acc"] == pytest.approx(0.97) and t["best_phase"] is None
    assert (t["target1"], t["target2"], t["target3"], t["target4"]) == (True, True, True, False)
    # ... and holds once that cell is gone
    keep = [i for i, lab in enumerate(labels) if lab != "undetermined"]
    t = check_targets(cells.iloc[keep], [labels[i] for i in keep], iv_split=False)
    assert (t["target1"], t["target2"], t["target3"], t["target4"]) == (True, True, True, True)
    assert t["n_targets"] == 4 and t["best_phase"] == "IV"
    # brute force: min of the I and II medians minus max of the III and IV medians
    assert t["loss_gap"] == pytest.approx(min(0.4, 0.175) - max(0.0045, 0.0015))
    assert t["lambda_gap"] == pytest.approx(min(25.0, 23.5) - max(4.5, 2.5))
    assert t["ii_train_acc"] == pytest.approx(0.94)


def test_each_target_can_fail():
    cells, labels = _table(PAPER_LIKE[:8])
    # 1: best accuracy below 0.90
    c = cells.assign(test_acc=cells.test_acc * 0.9)
    assert not check_targets(c, labels, False)["target1"]
    # 2: one phase with a single cell
    lab = list(labels)
    lab[3] = "IV"
    t = check_targets(cells, lab, False)
    assert not t["target2"] and t["phases_missing"] == "II"
    # 3: phase II failed (train acc 0.3) although the medians are in order
    c = cells.copy()
    c.loc[[2, 3], "train_acc"] = 0.3
    t = check_targets(c, labels, False)
    assert not t["target3"] and t["loss_order"] and t["lambda_order"]
    # 3: λmax of II below that of III
    c = cells.copy()
    c.loc[[2, 3], "lambda_max"] = 1.0
    t = check_targets(c, labels, False)
    assert not t["target3"] and not t["lambda_order"] and t["lambda_gap"] < 0
    # 4 with IV split: the best cell must be IV-B; both IV-A and IV-B need two cells for 2
    lab = labels[:6] + ["IV-A", "IV-A"]
    t = check_targets(cells, lab, True)
    assert not t["target4"] and not t["target2"] and t["phases_missing"] == "IV-B"
    lab = labels[:4] + ["IV-B", "IV-B", "IV-A", "IV-A"]
    t = check_targets(cells, lab, True)
    assert t["target4"] is False and t["best_phase"] == "IV-A" and t["phases_missing"] == "III"


def test_missing_phase_makes_the_gap_nan():
    cells, labels = _table(PAPER_LIKE[:6])  # no phase IV
    t = check_targets(cells, labels, False)
    assert math.isnan(t["loss_gap"]) and not t["target3"] and not t["target2"]


def test_candidate_row_and_grids():
    cells, labels = _table(PAPER_LIKE[:8])
    row = candidate_row("x", CANDIDATES["cnn_lr05_step40"], cells, labels, labels, False,
                        "width", "batch_size", {"train": 2.0, "pairs": 1.5})
    assert row["phases"] == "I:2 II:2 III:2 IV:2" and row["n_targets"] == 4
    assert row["best_cell"] == "width=64 batch_size=64" and row["seconds_total"] == 3.5
    assert row["II_train_loss"] == pytest.approx(0.175)
    # every candidate's grid is a valid chapter 1 grid
    for name, spec in CANDIDATES.items():
        configs = grid_from_params(grid_params(spec))
        assert len(configs) == len(spec["load_values"]) * len(spec["temperature_values"]) * spec["num_seeds"]


def test_markdown_table_one_line_per_candidate():
    from benchmarks.protocol_study import markdown_table
    cells, labels = _table(PAPER_LIKE[:6])  # no IV
    rows = [candidate_row(n, CANDIDATES[n], cells, labels, labels, False, "width", "batch_size",
                          {"train": 1.0}) for n in ("cnn_lr05_step40", "mlp_quarter")]
    md = markdown_table(pd.DataFrame(rows)).splitlines()
    assert len(md) == 4 and md[2].startswith("| cnn_lr05_step40 |") and "mlp, data 0.25" in md[3]
    # best 0.86 < 0.90 and no IV: no target holds; medians are I / II / III / IV
    assert "✗ ✗ ✗ ✗" in md[2] and "25.0 / 23.5 / 4.5 / -" in md[2] and "0.860 (" in md[2]
