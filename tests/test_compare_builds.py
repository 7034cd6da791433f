"""benchmarks.compare_builds: what moved between two builds of the book."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.compare_builds import finding_changes, main, mc_shift, phase_changes, tables_dir  # noqa: E402


def _findings(verdicts):
    # two rows share chapter and key (a claim judged per grid): they are matched by position
    return pd.DataFrame({"chapter": ["01", "04", "04"], "key": ["a", "b", "b"], "verdict": verdicts,
                         "corrected_verdict": ["exploratory"] * 3, "evidence": ["e1", "e2", "e3"]})


def test_finding_changes_match_repeated_keys_by_position():
    before = _findings(["holds", "fails", "holds"])
    assert finding_changes(before, before).empty
    ch = finding_changes(before, _findings(["holds", "fails", "inconclusive"]))
    assert ch[["chapter", "key", "i", "verdict_before", "verdict_after"]].values.tolist() == [
        ["04", "b", 1, "holds", "inconclusive"]]
    # a finding present in one build only is a change too
    assert len(finding_changes(before, before.iloc[:2])) == 1


def test_phase_changes_and_mc_shift_in_seed_se():
    cells = pd.DataFrame({"width": [8, 8], "lr": [0.1, 1.0], "phase": ["I", "IV"]})
    moved = cells.assign(phase=["I", "undetermined"])
    assert phase_changes(cells, moved, ["width", "lr"]).values.tolist() == [[8, 1.0, "IV", "undetermined"]]
    before = pd.DataFrame({"width": 8, "lr": [0.1] * 3 + [1.0] * 3, "mc": [-1.0, -2.0, -3.0, 0.5, 0.5, 0.5]})
    after = before.assign(mc=before.mc + [1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    s = mc_shift(before, after, ["width", "lr"]).set_index("lr")
    assert s.loc[0.1, "shift"] == pytest.approx(1.0)
    assert s.loc[0.1, "shift_in_se"] == pytest.approx(1.0 / (1.0 / np.sqrt(3)))
    assert s.loc[1.0, "shift"] == 0.0 and np.isnan(s.loc[1.0, "shift_in_se"])  # 0/0: no spread


def test_report_reads_workdirs_and_names_a_missing_table(tmp_path, capsys):
    for name, verdicts in (("before", ["holds", "fails", "holds"]), ("after", ["fails", "fails", "holds"])):
        tables = tmp_path / name / "tables"
        tables.mkdir(parents=True)
        _findings(verdicts).to_csv(tables / "findings.csv", index=False)
    assert main([str(tmp_path / "before"), str(tmp_path / "after" / "tables")]) == 0
    out = capsys.readouterr().out
    assert "## Findings: 1 of 3 changed" in out and "01 `a` [0]: holds (exploratory) → fails" in out
    with pytest.raises(FileNotFoundError, match="findings.csv"):
        tables_dir(tmp_path / "nowhere")
