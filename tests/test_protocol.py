"""landscape_utils.experiments.protocol: the targets of a default protocol, read from hand-made phase
tables (brute-force medians and gaps), their findings, and the study table."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from landscape_utils.experiments.protocol import (check_targets, group_of, phase_counts, phase_medians, read_study,
                                                  study_table, target_findings)
from tests.test_protocol_study import PAPER_LIKE, _table


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


def test_target_findings_word_targets_1_to_3():
    cells, labels = _table(PAPER_LIKE[:8])
    cells["test_acc_std"] = 0.01
    cells["n_seeds"] = 3
    found = {f.key: f for f in target_findings(cells, labels, False)}
    assert [found[k].verdict for k in ("protocol_accuracy", "protocol_phases_present",
                                       "protocol_paper_table_order")] == ["holds"] * 3
    assert "width 64, batch_size 64: test acc 0.950 ± 0.010" in found["protocol_accuracy"].evidence
    assert found["protocol_accuracy"].n == "8 cells x 3 seeds"
    assert "I 2, II 2, III 2, IV 2" in found["protocol_phases_present"].evidence
    # a failed phase II makes the order finding fail and says its train accuracy
    c = cells.copy()
    c.loc[[2, 3], "train_acc"] = 0.3
    f = {f.key: f for f in target_findings(c.assign(test_acc=c.test_acc * 0.9), labels, False)}
    assert f["protocol_paper_table_order"].verdict == "fails"
    assert "phase II train acc 0.300" in f["protocol_paper_table_order"].evidence
    assert f["protocol_accuracy"].verdict == "fails"
    # no phase II at all: named as missing
    lab = ["I", "I", "III", "III", "III", "III", "IV", "IV"]
    f = {f.key: f for f in target_findings(cells, lab, False)}
    assert f["protocol_phases_present"].verdict == "fails"
    assert "missing or below two cells: II" in f["protocol_phases_present"].evidence
    assert "no II cell" in f["protocol_paper_table_order"].evidence


def test_check_targets_rejects_misaligned_labels():
    cells, labels = _table(PAPER_LIKE[:4])
    with pytest.raises(ValueError, match="3 entries for 4 cells"):
        check_targets(cells, labels[:3], False)


def test_study_table_reads_the_committed_csv(tmp_path):
    from pathlib import Path
    table = read_study(Path(__file__).resolve().parents[1] / "benchmarks" / "protocol_study.csv")
    shown = study_table(table)
    assert list(shown.index) == list(table["candidate"])
    assert all(len(v.split()) == 4 for v in shown["targets 1 2 3 4"])
    with pytest.raises(FileNotFoundError, match="python -m benchmarks.protocol_study"):
        read_study(tmp_path / "nope.csv")
    (tmp_path / "bad.csv").write_text("candidate,phases\nx,I:1\n")
    with pytest.raises(ValueError, match="best_test_acc"):
        read_study(tmp_path / "bad.csv")


def _runs(cold_shift: float, seeds: int = 3, loads=(8, 16)) -> pd.DataFrame:
    """Per-seed train losses: hot batch 8 near 0.1, cold batch 512 near 0.1 + cold_shift."""
    rng = np.random.default_rng(0)
    rows = []
    for w in loads:
        for b, base in ((8, 0.1), (128, 0.08), (512, 0.1 + cold_shift)):
            for s in range(seeds):
                rows.append({"width": w, "batch_size": b, "seed": s, "train_loss": base + 0.005 * rng.standard_normal()})
    return pd.DataFrame(rows)


def test_cold_end_converges_can_fail_hold_and_be_inconclusive():
    from landscape_utils.experiments.protocol import cold_end_converges

    under = cold_end_converges(_runs(0.4), "width", "batch_size")
    assert under.verdict == "fails" and under.kind == "test" and under.p_value < 0.05
    assert "width 8, 16" in under.evidence and "do not mean what the paper's do" in under.evidence
    fine = cold_end_converges(_runs(-0.05), "width", "batch_size")
    assert fine.verdict == "holds" and fine.kind == "rule"
    one_seed = cold_end_converges(_runs(0.4, seeds=1), "width", "batch_size")
    assert one_seed.verdict == "inconclusive"
    # only one load under-trained: still fails, naming it
    mixed = pd.concat([_runs(0.4, loads=(8,)), _runs(-0.05, loads=(64,))])
    v = cold_end_converges(mixed, "width", "batch_size")
    assert v.verdict == "fails" and "width 8 " in v.evidence and "width 64 (" not in v.evidence


def test_threshold_stability_counts_the_cells_that_flip_and_can_go_both_ways():
    from landscape_utils.experiments.protocol import threshold_stability
    from landscape_utils.experiments.taxonomy import PhaseThresholds

    t = PhaseThresholds()
    far = {"mc": -20.0, "train_loss": 10 * t.train_loss_high, "cka": 0.2}  # phase I, far from every threshold
    near = {"mc": -20.0, "train_loss": 1.1 * t.train_loss_high, "cka": 0.2}  # I, but III with the threshold +25%
    cells = pd.DataFrame([{"width": w, "batch_size": 8, **far} for w in (1, 2, 3, 4)]
                         + [{"width": 5, "batch_size": 8, **near}])
    f, flips = threshold_stability(cells, t, load="width", temperature="batch_size")
    assert f.verdict == "holds" and "4 of 5 cells stable (80%)" in f.evidence
    assert flips.width.tolist() == [5] and "train_loss_high +25%: I→III" in flips.flips.iloc[0]
    cells.loc[:3, "train_loss"] = 1.1 * t.train_loss_high  # now 5 of 5 flip
    f, flips = threshold_stability(cells, t, load="width", temperature="batch_size")
    assert f.verdict == "fails" and len(flips) == 5


def test_placement_reads_the_heat_position_of_ii_and_iii():
    from landscape_utils.experiments.protocol import heat_positions, placement

    # lr axis: large is hot; II at the two hottest lrs, III at the coldest
    cells = pd.DataFrame({"width": [8, 8, 8, 8, 64, 64], "lr": [0.01, 0.1, 0.3, 1.0, 0.01, 1.0]})
    labels = ["III", "I", "II", "II", "IV-B", None]
    heat = heat_positions(cells, labels, "lr")
    assert heat == pytest.approx({"I": 1 / 3, "II": 5 / 6, "III": 0.0, "IV": 0.0})
    assert placement(heat)
    # batch axis: small is hot, so the same labels on batch sizes put II at the cold end
    batch = pd.DataFrame({"width": cells.width, "batch_size": [512, 128, 32, 8, 512, 8]})
    mirrored = heat_positions(batch, ["II", "I", "III", "III", "IV", None], "batch_size")
    assert mirrored["II"] == 0.0 and not placement(mirrored)
    assert placement({"I": 0.5, "III": 0.9})  # no II: nothing to place
    assert not placement({"II": 0.7, "III": 0.8})  # III hotter than II


def test_seeds_text_names_the_seeds_a_finding_rests_on():
    from landscape_utils.experiments.protocol import seeds_text

    assert seeds_text([0, 1, 2, 1]) == "seeds 0-2"
    assert seeds_text([3, 4, 5]) == "seeds 3-5"
    assert seeds_text([0, 3, 7]) == "seeds 0, 3, 7"
    assert seeds_text([4]) == "seed 4"
    assert seeds_text([]) == "no seeds"


def test_chosen_text_states_the_default_row_and_its_heldout_rebuild():
    from landscape_utils.experiments.protocol import chosen_row, chosen_text

    base = dict(model="cnn", batch_norm=True, data_fraction=0.5, lr=0.1, schedule="step", decay_at=0.75,
                decay_factor=0.1, num_epochs=40, weight_decay=5e-4, temperature_axis="lr", batch_size=32,
                load_values="8 16 32 64", temperature_values="0.02 0.08 0.32 1.0", phases="I:4 II:2 III:6 IV:4",
                best_test_acc=0.967, best_phase="IV", target1=True, target2=True, target3=False, target4=True,
                endpoint_steps="2480", curve_steps=1240, placement=True, cold_end="holds", continuation="fails",
                **{"I_heat_pos": 0.3, "II_heat_pos": 1.0, "III_heat_pos": 0.2, "IV_heat_pos": 0.4})
    table = pd.DataFrame([
        {**base, "candidate": "other", "book_params": "", "seeds": "0-2"},
        {**base, "candidate": "lr_half", "book_params": "params/default.yaml", "seeds": "0-2"},
        {**base, "candidate": "lr_half_seeds3", "book_params": "params/default.yaml", "seeds": "3-5",
         "heldout_of": "lr_half", "heldout_agree": 0.8125, "heldout_flips": "width 8, lr 1: II→I", "target2": False,
         "heldout_confident_agree": 0.9, "heldout_confident_n": 10},
    ])
    assert chosen_row(table)["candidate"] == "lr_half"
    text = chosen_text(table)
    assert "`lr_half`" in text and "2480 SGD steps and each curve 1240" in text
    assert "Targets: 1 ✓, 2 ✓, 3 ✗, 4 ✓" in text and "placement ✓ (heat position I 0.30; II 1.00" in text
    assert "Cold end converges: holds; mc > 0 survives the endpoints' continuation: fails." in text
    assert "seeds 0-2)" in text and "Rebuilt on the held-out seeds 3-5 (`lr_half_seeds3`)" in text
    assert "81% of the cells keep their label (changed: width 8, lr 1: II→I)" in text and "targets 1 ✓, 2 ✗" in text
    assert "; of the 10 cells labelled with probability ≥ 0.9 on the chosen seeds, 90% keep it; phases" in text
    assert "No row of the protocol study" in chosen_text(table, "params/other.yaml")
    alone = chosen_text(table.iloc[:2])
    assert "No held-out rebuild" in alone


def test_phase_ii_text_counts_the_rows_with_phase_ii_and_their_continuation_verdicts():
    from landscape_utils.experiments.protocol import phase_ii_text

    base = dict(model="cnn", batch_norm=True, data_fraction=0.5, lr=0.1, schedule="constant", decay_at=0.75,
                decay_factor=0.1, num_epochs=40, weight_decay=5e-4, temperature_axis="lr", batch_size=32,
                temperature_values="0.32 1.0")
    table = pd.DataFrame([
        {**base, "candidate": "no_ii", "phases": "I:2 III:2", "continuation": "nothing to test"},
        {**base, "candidate": "hot", "phases": "II:4", "continuation": "fails",
         "continuation_evidence": "0 of 4 cells with mc > 0; width=32 lr=1: ..."},
        {**base, "candidate": "cold", "phases": "I:5 II:12 III:6", "continuation": "holds",
         "continuation_evidence": "2 of 2 cells with mc > 0; ..."},
        {**base, "candidate": "old", "phases": "I:1 II:3", "continuation": float("nan")},
    ])
    text = phase_ii_text(table)
    assert text.startswith("3 rows of the study have phase II cells; the continuation control was measured on "
                           "2 of them and holds on 1:\n\n- `hot`")
    assert "- `hot` (BN, data 0.5, batch 32, lr const, 40 ep, wd 0.0005; lr 0.32 1.0): 4 II cells; continuation " \
           "fails (0 of 4 cells with mc > 0)\n" in text
    assert "- `cold`" in text and "12 II cells; continuation holds (2 of 2 cells with mc > 0)" in text
    assert text.endswith("- `old` (BN, data 0.5, batch 32, lr const, 40 ep, wd 0.0005; lr 0.32 1.0): 3 II cells; "
                         "continuation not measured (the row predates the control)") and "`no_ii`" not in text
    assert phase_ii_text(table.iloc[:1]) == "No row of the protocol study has a phase II cell."
