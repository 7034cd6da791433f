"""Tests for landscape_utils.core.axes: which axis is the load, which the temperature, and which
end of each is hot."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from landscape_utils.core import axes as A


def test_hot_end_follows_the_paper_temperature_rises_with_lr_and_falls_with_batch():
    assert A.hot_order("batch_size", [256, 16, 64, 16]) == [16, 64, 256]
    assert A.hot_order("lr", [0.01, 1.0, 0.1]) == [1.0, 0.1, 0.01]
    assert A.hot_order("weight_decay", [5e-4, 1e-3, 0.0]) == [1e-3, 5e-4, 0.0]
    assert A.hot_order("temperature", [0.1, 1.0]) == [1.0, 0.1]
    assert A.coldest("batch_size", [16, 256, 64]) == 256
    assert A.coldest("lr", np.array([0.05, 0.2])) == 0.05
    assert A.hottest("lr", pd.Series([0.05, 0.2])) == 0.2
    with pytest.raises(ValueError, match="not a temperature axis"):
        A.coldest("width", [4, 8])


def test_load_order_puts_the_least_capacity_per_sample_first():
    assert A.load_order("width", [64, 4, 16]) == [4, 16, 64]
    assert A.load_order("data_fraction", [0.1, 1.0, 0.5]) == [1.0, 0.5, 0.1]
    assert A.load_order("label_noise", [0.0, 0.2, 0.1]) == [0.2, 0.1, 0.0]
    # an unknown column is "other": ascending, no hot end
    assert A.axis_info("dropout").kind == "other"
    assert A.hot_order("dropout", [0.3, 0.1]) == [0.1, 0.3]


def test_every_registered_axis_states_its_direction():
    for a in A.AXES.values():
        assert a.kind in ("load", "temperature")
        assert (a.hot_end is not None) == (a.kind == "temperature")
        assert (a.capacity_end is not None) == (a.kind == "load")
    with pytest.raises(ValueError, match="needs hot_end"):
        A.Axis("beta", "temperature", "float")
    with pytest.raises(ValueError, match="dtype"):
        A.Axis("beta", "load", "str", capacity_end="large")
