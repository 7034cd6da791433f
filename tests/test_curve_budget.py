"""benchmarks.curve_budget's comparison of mc across curve budgets, on hand-made pairs."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmarks.curve_budget import compare_budgets, sign_class


def _pairs(epochs, steps, seconds, mcs):
    """Two cells x three seed pairs; ``mcs`` maps cell -> three per-pair mc values."""
    rows = []
    for (w, lr), values in mcs.items():
        for (a, b), mc in zip([(0, 1), (0, 2), (1, 2)], values):
            rows.append({"epochs": epochs, "steps": steps, "seconds": seconds, "width": w, "lr": lr,
                         "seed_a": a, "seed_b": b, "mc": mc})
    return rows


def test_compare_budgets_reads_each_cell_against_the_full_budget():
    full = _pairs(40, 1240, 100.0, {(8, 0.1): [-5.0, -6.0, -7.0], (64, 0.1): [-0.5, -0.4, -0.6]})
    short = _pairs(10, 310, 30.0, {(8, 0.1): [-5.5, -6.5, -7.5], (64, 0.1): [-3.0, -3.2, -2.8]})
    cells, summary = compare_budgets(pd.DataFrame(full + short), "width", "lr")
    s10 = summary.set_index("epochs").loc[10]
    assert s10.steps == 310 and s10.seconds == 30.0 and s10.cells == 2
    assert s10.max_abs_diff == pytest.approx(2.5) and s10.median_abs_diff == pytest.approx(1.5)
    # width 8 moves by 0.5, within 2 SE of its spread; width 64 by 2.5, far outside, and from
    # connected to barrier
    assert s10.outside_2se == 1 and s10.class_changes == 1
    s40 = summary.set_index("epochs").loc[40]
    assert s40.max_abs_diff == 0.0 and s40.outside_2se == 0 and s40.class_changes == 0
    c = cells[(cells.epochs == 10) & (cells.width == 64)].iloc[0]
    assert c.mc_full == pytest.approx(-0.5) and c["diff"] == pytest.approx(-2.5) and c.se_full > 0


def test_sign_class_uses_the_taxonomy_thresholds():
    assert [sign_class(v) for v in (-1.5, -1.0, 0.0, 1.0, 1.2)] == [
        "barrier", "connected", "connected", "connected", "beats ends"]
    assert sign_class(np.nan) == "?"
