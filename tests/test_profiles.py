"""Tests of landscape_utils.metrics.profiles: the mc metric and MLI bumps on hand-made profiles,
against a brute-force reference."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from landscape_utils.metrics.profiles import (find_bumps, max_bump_height, mli_from_profile, mode_connectivity,
                                              non_monotonic_fraction)


def test_mode_connectivity_hand_made_profiles():
    mc, i = mode_connectivity([1.0, 12.0, 30.0, 10.0, 2.0])  # a barrier
    assert (mc, i) == (pytest.approx(1.5 - 30.0), 2)
    mc, i = mode_connectivity([2.0, 2.1, 1.95, 2.0])  # well connected
    assert mc == pytest.approx(-0.1) and i == 1
    mc, i = mode_connectivity([10.0, 4.0, 2.0, 10.0])  # the path beats its endpoints
    assert (mc, i) == (pytest.approx(8.0), 2)
    mc, i = mode_connectivity([0.0, 4.0, 6.0, 20.0])  # the extreme deviation is at an endpoint
    assert (mc, i) == (pytest.approx(10.0), 0)
    with pytest.raises(ValueError):
        mode_connectivity([1.0])
    with pytest.raises(ValueError, match="NaN"):
        mode_connectivity([1.0, float("nan"), 2.0])


def _max_rise_reference(v):
    return max([0.0] + [v[j] - v[i] for i, j in itertools.combinations(range(len(v)), 2)])


def test_find_bumps_hand_made_profiles():
    assert find_bumps([3.0, 2.0, 1.0]) == [] and max_bump_height([3.0, 2.0, 1.0]) == 0.0
    assert find_bumps([1.0, 1.0, 1.0]) == []
    (bump,) = find_bumps([1.0, 2.0, 0.5])
    assert (bump.start, bump.peak, bump.end, bump.height) == (0, 1, 2, 1.0)
    # a dip that stays above the start does not close the bump; a second, smaller bump follows
    bumps = find_bumps([1.0, 1.5, 1.2, 1.8, 0.9, 1.0, 0.2])
    assert [(b.start, b.peak, b.end) for b in bumps] == [(0, 3, 4), (4, 5, 6)]
    assert [b.height for b in bumps] == pytest.approx([0.8, 0.1])
    # falling back to exactly the start does not close it either; a profile can end inside one
    (bump,) = find_bumps([2.0, 3.0, 2.0, 2.5])
    assert (bump.start, bump.peak, bump.end) == (0, 1, None)
    rng = np.random.default_rng(0)
    for _ in range(200):
        v = rng.normal(size=rng.integers(2, 12)).tolist()
        assert max_bump_height(v) == pytest.approx(_max_rise_reference(v))


def test_mli_flag_and_fraction():
    prof = pd.DataFrame({"t": [0, 0.5, 1], "train_loss": [2.0, 2.1, 0.1]})
    assert mli_from_profile(prof, eps=0.05).non_monotonic
    res = mli_from_profile(prof, eps=0.2)
    assert not res.non_monotonic and res.delta == pytest.approx(0.1) and len(res.bumps) == 1
    with pytest.raises(ValueError):
        mli_from_profile(prof, eps=0.0)
    assert non_monotonic_fraction([0.0, 0.5, 0.002], eps=1e-3) == pytest.approx(2 / 3)
