"""The protocol study's own pieces (its rows, table and candidates), on hand-made phase
tables (no training); the targets themselves are tested in test_protocol.py."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from benchmarks.protocol_study import CANDIDATES, RUN_DEFAULTS, candidate_row, fill_protocol_columns, grid_params
from landscape_utils.runs.runner import grid_from_params


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


def test_fill_protocol_columns_from_the_specs():
    table = pd.DataFrame({"candidate": ["cnn_lr05_step40", "probe_wd0", "mlp_quarter", "unknown"]})
    out = fill_protocol_columns(table)
    assert list(out["weight_decay"].fillna(-1)) == [5e-4, 0.0, 5e-4, -1]
    assert out["decay_factor"].iloc[0] == 0.1 and math.isnan(out["decay_factor"].iloc[2])


def test_book_settings_are_the_chapters_own():
    """The rows measured with the book's settings build the same HessianSettings and
    GlobalSettings (hence the same store keys) as chapters 2 and 3 do from the params file."""
    import yaml

    from benchmarks.protocol_study import REPO, book_settings
    from landscape_utils.book.chapters import merged_values
    from landscape_utils.experiments.global_metrics import GlobalSettings
    from landscape_utils.experiments.local import HessianSettings

    workdir, hessian, curve = book_settings("params/default.yaml")
    raw = yaml.safe_load((REPO / "params" / "default.yaml").read_text())
    assert workdir == REPO / raw["shared"]["workdir"]
    p2 = merged_values("02_local_metrics", raw["02_local_metrics"])
    p3 = merged_values("03_global_connectivity", raw["03_global_connectivity"])
    hs, gs = HessianSettings(**hessian), GlobalSettings(**curve)
    assert (hs.num_samples, hs.tol, hs.rel_tol, hs.max_probes, hs.sketch_size, hs.max_iter) == (
        p2["num_samples"], p2["tol"], p2["rel_tol"], p2["max_probes"], p2["sketch_size"], p2["max_iter"])
    assert (gs.curve_epochs, gs.curve_lr, gs.curve_batch_size, gs.cka_samples, gs.num_points) == (
        p3["curve_epochs"], p3["curve_lr"], p3["curve_batch_size"], p3["cka_samples"], p3["num_points"])
    # every row measured with a params file's settings is that file's chapter 1 grid
    booked = {name: spec for name, spec in CANDIDATES.items() if spec.get("book")}
    assert booked
    for name, spec in booked.items():
        if spec.get("book_workdir"):  # a variant of the file's grid in its own workdir
            continue
        ch1 = yaml.safe_load((REPO / spec["book"]).read_text())["01_training_grid"]
        grid = grid_params(spec)
        for k in ("load_values", "temperature_axis", "temperature_values", "decay_at", "decay_factor",
                  "data_fraction", "num_epochs", "batch_size"):
            assert grid.get(k, RUN_DEFAULTS.get(k)) == ch1.get(k, RUN_DEFAULTS.get(k)), (name, k)


def test_heldout_agreement_counts_cells_that_keep_their_label():
    from benchmarks.protocol_study import heldout_agreement

    spec = {"load_axis": "width", "temperature_axis": "lr"}
    chosen = pd.DataFrame({"width": [8, 8, 64, 64, 32], "lr": [0.1, 1.0, 0.1, 1.0, 0.1],
                           "phase": ["I", "II", "IV-B", "III", "undetermined"]})
    heldout = chosen.assign(phase=["I", "III", "IV-A", "III", "I"])
    out = heldout_agreement(chosen, heldout, spec, "cand")
    # IV-B -> IV-A counts as kept; 8/1.0 and the undetermined cell changed
    assert out["heldout_of"] == "cand"
    assert out["heldout_agree"] == pytest.approx(3 / 5)
    assert out["heldout_flips"] == "width 8, lr 1: II→III; width 32, lr 0.1: undetermined→I"
    # a cell without a label (no mc) in either build is left out
    unlabelled = heldout.assign(phase=["I", "III", "IV-A", "III", None])
    assert heldout_agreement(chosen, unlabelled, spec, "cand")["heldout_agree"] == pytest.approx(3 / 4)
    same = heldout_agreement(chosen, chosen, spec, "cand")
    assert same["heldout_agree"] == 1.0 and same["heldout_flips"] == ""
    assert np.isnan(out["heldout_confident_agree"]) and out["heldout_confident_n"] == 0  # no p_phase column
    # the diagnostic: only the cells labelled with p >= 0.9 on the chosen seeds (8/0.1 kept, 8/1.0 flipped)
    sure = heldout_agreement(chosen.assign(p_phase=[0.95, 0.9, 0.7, 0.99, 0.5]), heldout, spec, "cand")
    assert sure["heldout_confident_n"] == 3 and sure["heldout_confident_agree"] == pytest.approx(2 / 3)
    assert sure["heldout_agree"] == pytest.approx(3 / 5)
