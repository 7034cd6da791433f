"""The reproducibility promise (README, "Reproducibility"), checked across the CPU kernels
this machine offers, each in its own interpreter."""
import itertools

import pytest

from landscape_utils.runs.reproducibility import (SHORT_RUN_RTOL, max_relative_deviation, offered_capabilities,
                                                  probe_in_process, seed_spread)


def test_max_relative_deviation_against_a_hand_computed_case():
    a = {"r1": {"train_loss": 2.0, "test_loss": 1.0}, "r2": {"train_loss": 0.0, "test_loss": 4.0}}
    b = {"r1": {"train_loss": 2.0, "test_loss": 1.1}, "r2": {"train_loss": 0.0, "test_loss": 3.0}}
    assert max_relative_deviation(a, b, ("train_loss", "test_loss")) == pytest.approx(0.25)
    assert max_relative_deviation(a, a, ("train_loss", "test_loss")) == 0.0
    with pytest.raises(ValueError, match="different runs"):
        max_relative_deviation(a, {"r1": a["r1"]})


def test_seed_spread_is_the_largest_relative_sd_within_a_cell():
    runs = {"width=4,seed=0": {"m": 1.0}, "width=4,seed=1": {"m": 3.0},
            "width=8,seed=0": {"m": 10.0}, "width=8,seed=1": {"m": 10.0}}
    assert seed_spread(runs, ("m",)) == pytest.approx(2 ** 0.5 / 2)  # sd 1.414 over mean 2


def test_offered_capabilities_start_at_default_and_ignore_a_forced_kernel(monkeypatch):
    caps = offered_capabilities()
    assert caps[0] == "default" and set(caps) <= {"default", "avx2", "avx512"}
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    assert offered_capabilities() == caps


@pytest.mark.slow  # a fresh interpreter per CPU kernel
def test_short_runs_agree_across_cpu_kernels_and_groupings_and_repeat_bit_for_bit():
    caps = offered_capabilities()
    runs = {cap: probe_in_process(cap, "short") for cap in caps}
    setups = {(cap, g): runs[cap][g] for cap in caps for g in ("grouped", "single")}
    assert len(setups[("default", "grouped")]) == 8  # 2 widths x 2 lrs x 2 seeds
    for (s1, r1), (s2, r2) in itertools.combinations(setups.items(), 2):
        assert max_relative_deviation(r1, r2) <= SHORT_RUN_RTOL, (s1, s2)
    # the same kernel and grouping in another process: identical to the last bit
    assert probe_in_process(caps[-1], "short") == runs[caps[-1]]
