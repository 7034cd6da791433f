"""Tests for landscape_utils.experiments.rugged: closed forms against brute force, the simulator's
reproducibility and limits, the metrics on hand-made cases, the phase diagram."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from landscape_utils.experiments import rugged
from landscape_utils.core.axes import axis_position
from landscape_utils.experiments.rugged import RuggedLandscape
from landscape_utils.metrics.profiles import mode_connectivity

LAND = RuggedLandscape(seed=3)


# --------------------------------------------------------------------------------------
# Closed forms
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("temperature", [0.01, 0.1, 0.5])
def test_effective_loss_matches_monte_carlo(temperature):
    """E[L(w + ξ)], ξ ~ N(0, T), by direct sampling, within 4 standard errors."""
    rng = np.random.default_rng(0)
    xi = rng.normal(0.0, np.sqrt(temperature), 100_000)
    load = 0.3
    for w in (-1.3, 0.0, 0.4, 2.1):
        samples = LAND.loss(w + xi, load)
        mc_mean = samples.mean()
        se = samples.std(ddof=1) / np.sqrt(samples.size)
        exact = LAND.loss(w, load, temperature)
        assert abs(exact - mc_mean) < 4 * se + 1e-12, (w, exact, mc_mean, se)


def test_effective_loss_at_zero_temperature_is_the_raw_formula():
    omega, coeff, phase = LAND.spectrum("train")
    w = np.linspace(-2, 2, 7)
    load = 2.0
    raw = 0.5 * w**2 + LAND.amplitude(load) * np.sum(
        coeff * np.cos(np.outer(w, omega) + phase), axis=1)
    np.testing.assert_allclose(LAND.loss(w, load), raw, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("temperature", [0.0, 0.05])
def test_grad_and_curvature_match_finite_differences(temperature):
    w = np.linspace(-2.5, 2.5, 41)
    h = 1e-4
    load = 0.2
    f = lambda x: LAND.loss(x, load, temperature)  # noqa: E731
    fd_grad = (f(w + h) - f(w - h)) / (2 * h)
    fd_curv = (f(w + h) - 2 * f(w) + f(w - h)) / h**2
    np.testing.assert_allclose(LAND.grad(w, load, temperature), fd_grad, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(LAND.curvature(w, load, temperature), fd_curv, rtol=1e-4,
                               atol=1e-3)


def test_train_and_test_realizations_differ_but_share_the_envelope():
    w = np.linspace(-3, 3, 101)
    tr, te = LAND.loss(w, 1.0, which="train"), LAND.loss(w, 1.0, which="test")
    assert np.max(np.abs(tr - te)) > 0.05
    # With no roughness both are the same envelope.
    smooth = LAND.replace(roughness=0.0)
    np.testing.assert_allclose(smooth.loss(w, which="train"), smooth.loss(w, which="test"))
    np.testing.assert_allclose(smooth.loss(w), 0.5 * w**2)


def test_amplitude_and_correlation_length():
    assert LAND.amplitude(1.0) == pytest.approx(LAND.roughness)
    assert LAND.amplitude(2.0) == pytest.approx(LAND.roughness / 2)
    with pytest.raises(ValueError):
        LAND.amplitude(0.0)
    # ℓ = 1/sqrt(E ω²): compare with a large sample of frequencies.
    om = np.random.default_rng(0).uniform(LAND.omega_min, LAND.omega_max, 1_000_000)
    assert LAND.correlation_length == pytest.approx(1 / np.sqrt(np.mean(om**2)), rel=1e-3)


def test_minimum_is_the_global_minimum():
    loads = np.array([0.1, 0.5, 5.0])
    w_min, l_min = LAND.minimum(loads)
    grid = np.linspace(-6, 6, 120_001)
    for i, load in enumerate(loads):
        vals = LAND.loss(grid, load)
        assert l_min[i] <= vals.min() + 1e-12
        assert abs(LAND.grad(w_min[i], load)) < 1e-9
        assert LAND.curvature(w_min[i], load) > 0


# --------------------------------------------------------------------------------------
# Simulator
# --------------------------------------------------------------------------------------
def test_simulator_is_reproducible_and_seeded():
    kw = dict(n_runs=16, n_steps=300, anneal_steps=100, record_every=50)
    a = rugged.simulate(LAND, [0.2, 2.0], 0.05, seed=5, **kw)
    b = rugged.simulate(LAND, [0.2, 2.0], 0.05, seed=5, **kw)
    c = rugged.simulate(LAND, [0.2, 2.0], 0.05, seed=6, **kw)
    assert a.endpoints.shape == (2, 16)
    assert a.trajectory.shape == (len(a.steps), 2, 16)
    np.testing.assert_array_equal(a.endpoints, b.endpoints)
    np.testing.assert_array_equal(a.trajectory, b.trajectory)
    assert not np.allclose(a.endpoints, c.endpoints)
    # Without annealing, the constant-T phase is the same run.
    d = rugged.simulate(LAND, [0.2, 2.0], 0.05, seed=5, n_runs=16, n_steps=300)
    np.testing.assert_array_equal(a.before_anneal, d.endpoints)


def test_simulator_matches_a_plain_loop():
    """The vectorized float64 simulator against a scalar Langevin loop with the same draws."""
    load, temp, lr, n_steps, n_runs = 0.4, 0.03, 0.01, 200, 4
    sim = rugged.simulate(LAND, load, temp, n_runs, n_steps=n_steps, lr=lr, seed=1,
                          dtype=np.float64)
    rng = np.random.default_rng(1)
    w = 0.0 + 2.0 * rng.standard_normal(n_runs)
    for _ in range(n_steps):
        xi = rng.standard_normal(n_runs)
        w = w - lr * LAND.grad(w, load) + np.sqrt(2 * lr * temp) * xi
    np.testing.assert_allclose(sim.endpoints, w, rtol=1e-10, atol=1e-12)


def test_batch_of_realizations_matches_single_runs():
    lands = [LAND.replace(seed=s) for s in (0, 1)]
    batch = rugged.simulate(lands, [0.3, 3.0], [[0.01], [0.1]], n_runs=8, n_steps=200, seed=2,
                            dtype=np.float64)
    assert batch.endpoints.shape == (2, 2, 2, 8)
    for r, land in enumerate(lands):
        single = rugged.simulate(land, [0.3, 3.0], [[0.01], [0.1]], n_runs=8, n_steps=200,
                                 seed=2, dtype=np.float64)
        np.testing.assert_allclose(batch.endpoints[r], single.endpoints, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError):
        rugged.simulate([LAND, LAND.replace(roughness=1.0)], 1.0, 0.0, n_runs=2, n_steps=1)


def test_annealing_schedule():
    s = rugged.temperature_schedule(10, 10, hold_zero=0.2)
    assert s.shape == (20,)
    assert np.all(s[:10] == 1) and np.all(np.diff(s[10:]) <= 0) and np.all(s[-2:] == 0)
    assert np.array_equal(rugged.temperature_schedule(5), np.ones(5))


def test_smooth_convex_cold_runs_converge_and_have_no_barrier():
    smooth = LAND.replace(roughness=0.0)
    sim = rugged.simulate(smooth, 1.0, 0.0, n_runs=32, n_steps=2500, dtype=np.float64)
    np.testing.assert_allclose(sim.endpoints, 0.0, atol=1e-9)
    m = rugged.cell_metrics(smooth, sim.endpoints, 1.0)
    assert m["train_loss"] < 1e-16 and abs(m["mc"]) < 1e-16
    assert m["distance"] < 1e-9 and m["cka"] == pytest.approx(1.0)
    mc = rugged.pair_barriers(smooth, sim.endpoints[0::2], sim.endpoints[1::2], 1.0)
    assert np.all(np.abs(mc) < 1e-16)


def test_rough_cold_runs_stop_in_different_local_minima_with_barriers():
    load = 0.1  # A = 0.5: many wells
    sim = rugged.simulate(LAND, load, 0.0, n_runs=64, n_steps=3000, dtype=np.float64)
    w = sim.endpoints
    assert np.max(np.abs(LAND.grad(w, load))) < 1e-6       # stationary points ...
    assert np.all(LAND.curvature(w, load) > 0)             # ... that are minima
    w_star, l_star = LAND.minimum(load)
    assert np.mean(LAND.loss(w, load) - l_star) > 0.1      # mostly not the global one
    wells = np.unique(np.round(w, 4))
    assert wells.size >= 5                                 # several distinct wells
    m = rugged.cell_metrics(LAND, w, load)
    assert m["mc"] < -0.05                                 # barriers on average
    mc = rugged.pair_barriers(LAND, w[0::2], w[1::2], load)
    distinct = np.abs(w[0::2] - w[1::2]) > 1e-3
    assert np.mean(mc[distinct] < 0) > 0.7


# --------------------------------------------------------------------------------------
# Metrics on hand-made cases
# --------------------------------------------------------------------------------------
def test_segment_profile_and_barrier_of_known_shapes():
    smooth = LAND.replace(roughness=0.0)  # L = ½ w²
    prof = rugged.segment_profile(smooth, -1.0, 1.0, n_points=5)
    np.testing.assert_allclose(prof, 0.5 * np.array([1, 0.25, 0, 0.25, 1]))
    # Convex path between two points at equal height: the path beats its endpoints by
    # a (w₂ - w₁)²/8, mc > 0 (II-like), exactly as mode_connectivity says.
    mc = rugged.pair_barriers(smooth, np.array([-1.0, 0.3]), np.array([1.0, 0.3]), n_points=33)
    assert mc[0] == pytest.approx(0.5) and mc[1] == 0.0
    assert mc[0] == pytest.approx(mode_connectivity(0.5 * np.linspace(-1, 1, 33) ** 2)[0])
    # Barrier between two wells of a single cosine: -A cos(ω w) wells at 0 and 2π/ω,
    # the segment crosses the top at π/ω: mc = -(A - (-A)) = -2A (plus the envelope).
    one = RuggedLandscape(envelope_curvature=0.0, roughness=1.0, n_terms=1, omega_min=2.0,
                          omega_max=2.0, seed=0)
    omega, coeff, phase = one.spectrum()
    w1 = (np.pi - phase[0]) / omega[0]         # a minimum of c cos(ω w + φ)
    w2 = w1 + 2 * np.pi / omega[0]             # the next one
    mc = rugged.pair_barriers(one, w1, w2, n_points=33)  # t = 1/2 is on the grid
    assert mc == pytest.approx(-2 * coeff[0], rel=1e-9)


def test_similarity_and_cell_metrics_by_hand():
    assert rugged.similarity(0.0, 0.2) == 1.0
    assert rugged.similarity(0.2, 0.2) == pytest.approx(np.exp(-0.5))
    smooth = LAND.replace(roughness=0.0)
    ends = np.array([[0.0, 0.2, -0.1, 0.3]])        # one cell, pairs (0, .2) and (-.1, .3)
    m = rugged.cell_metrics(smooth, ends, 1.0)
    assert m["distance"][0] == pytest.approx(0.3)
    assert m["train_loss"][0] == pytest.approx(np.mean(0.5 * ends**2))
    assert m["test_loss"][0] == pytest.approx(np.mean(0.5 * ends**2))
    assert m["curvature"][0] == pytest.approx(1.0)
    ell = smooth.correlation_length
    assert m["cka"][0] == pytest.approx(np.mean(rugged.similarity(np.array([0.2, 0.4]), ell)))
    # (0, .2): monotone profile, t* = 0 (first of two tied endpoints), mc = 0.01 - 0;
    # (-.1, .3): the valley at w = 0 wins, mc = (0.005 + 0.045)/2 - 0 = 0.025.
    assert m["mc"][0] == pytest.approx(np.mean([0.01, 0.025]), rel=1e-12)
    # Curvature on a rough landscape: the mean of L'' at the endpoints, checked by FD.
    h = 1e-4
    fd = (LAND.loss(ends + h, 0.3) - 2 * LAND.loss(ends, 0.3) + LAND.loss(ends - h, 0.3)) / h**2
    assert rugged.cell_metrics(LAND, ends, 0.3)["curvature"][0] == pytest.approx(fd.mean(),
                                                                                 rel=1e-5)
    with pytest.raises(ValueError):
        rugged.cell_metrics(smooth, ends[:, :3], 1.0)


def test_stationary_density_and_vega_expression():
    w = np.linspace(-4, 4, 4001)
    p = rugged.stationary_density(LAND.replace(roughness=0.0), w, temperature=0.25)
    np.testing.assert_allclose(p, np.exp(-w**2 / 0.5) / np.sqrt(np.pi * 0.5), atol=1e-6)
    expr = rugged.vega_loss_expression(LAND, w="x", amplitude="A", temperature="T")
    x, A, T = np.linspace(-2, 2, 9), 0.3, 0.07
    value = eval(expr, {"exp": np.exp, "cos": np.cos, "x": x, "A": A, "T": T})  # noqa: S307
    load = LAND.roughness / A  # A(load) = roughness / load
    np.testing.assert_allclose(value, LAND.loss(x, load, T), rtol=1e-12)


# --------------------------------------------------------------------------------------
# Phase diagram
# --------------------------------------------------------------------------------------
def test_phase_diagram_default_grid_shows_three_phases():
    pytest.importorskip("landscape_utils.experiments.taxonomy")
    table = rugged.phase_diagram(n_runs=64, n_steps=1000)
    assert len(table) == len(rugged.DEFAULT_LOADS) * len(rugged.DEFAULT_TEMPERATURES)
    for col in ("load", "temperature", "train_loss", "test_loss", "curvature", "mc",
                "distance", "cka", "phase"):
        assert col in table.columns
    phases = set(table["phase"].dropna())
    assert len(phases) >= 3, phases
    # The regions the chapter describes: rough and cold is I, hot is II, smooth and cold IV-B.
    cell = table.set_index(["load", "temperature"])["phase"]
    loads, temps = rugged.DEFAULT_LOADS, rugged.DEFAULT_TEMPERATURES
    assert cell[(loads[0], temps[0])] == "I"
    assert cell[(loads[-1], temps[-1])] == "II"
    assert cell[(loads[-1], temps[0])] == "IV-B"
    assert table["cka"].between(0, 1).all()
    assert (table["train_loss"] >= -1e-12).all() and (table["test_loss"] >= -1e-12).all()


def test_phase_diagram_with_annealing_has_a_row_per_state():
    pytest.importorskip("landscape_utils.experiments.taxonomy")
    table = rugged.phase_diagram([0.3, 3.0], [0.01, 1.0], n_runs=16, n_steps=300,
                                 anneal_steps=1000)
    assert len(table) == 8
    assert set(table["annealed"]) == {False, True}
    hot = table[(table.temperature == 1.0) & (table.load == 3.0)].set_index("annealed")
    # Annealing a hot, smooth cell brings it to the bottom.
    assert hot.loc[True, "train_loss"] < 0.01 < hot.loc[False, "train_loss"]


def test_phase_diagram_pools_realizations():
    pytest.importorskip("landscape_utils.experiments.taxonomy")
    kw = dict(n_runs=8, n_steps=200, seed=4)
    pooled = rugged.phase_diagram([0.2, 2.0], [0.01, 0.3], n_realizations=2, **kw)
    singles = [rugged.phase_diagram([0.2, 2.0], [0.01, 0.3], landscape=LAND.replace(seed=s), **kw)
               for s in (0, 1)]
    for col in ("train_loss", "test_loss", "mc", "cka", "curvature", "distance"):
        np.testing.assert_allclose(pooled[col], (singles[0][col] + singles[1][col]) / 2,
                                   rtol=1e-10)
    # mc_std: the standard deviation over all 2 realizations × 4 pairs, by brute force.
    sim = rugged.simulate([LAND.replace(seed=s) for s in (0, 1)], np.array([[0.2], [2.0]]),
                          np.array([[0.01, 0.3]]), 8, n_steps=200, seed=4)
    all_mc = np.concatenate([rugged.pair_barriers(LAND.replace(seed=s), sim.endpoints[s, ..., 0::2],
                                                  sim.endpoints[s, ..., 1::2],
                                                  np.array([0.2, 2.0])[:, None, None])
                             for s in (0, 1)], axis=-1)
    np.testing.assert_allclose(pooled["mc_std"], all_mc.std(-1, ddof=1).ravel(), rtol=1e-8)


def test_annealing_experiment_shapes():
    df = rugged.annealing_experiment([0.2, 3.0], [0.1], n_realizations=2, n_runs=8,
                                     n_steps=200, anneal_steps=200)
    assert len(df) == 2 * 2 * 1 * 2
    assert set(df["annealed"]) == {False, True}
    assert isinstance(df, pd.DataFrame) and df["realization"].nunique() == 2


# --------------------------------------------------------------------------------------
# Tables for the pictures, placement and annealing verdicts (hand-made cases)
# --------------------------------------------------------------------------------------
def test_landscape_and_effective_curves():
    w = np.linspace(-1, 1, 5)
    cur = rugged.landscape_curves(LAND, w, [0.5, 2.0])
    assert len(cur) == 2 * 2 * 5 and set(cur.landscape) == {"train", "test"}
    row = cur[(cur.load == 0.5) & (cur.landscape == "test")]
    np.testing.assert_allclose(row.loss, LAND.loss(w, 0.5, which="test"))
    curves, mins = rugged.effective_curves(LAND, w, 0.3, [0.0, 0.1])
    np.testing.assert_allclose(curves[curves["T"] == 0.1].loss, LAND.loss(w, 0.3, 0.1))
    w_min, l_min = LAND.minimum(0.3, np.array([0.0, 0.1]))
    np.testing.assert_allclose(mins.w, w_min) and np.testing.assert_allclose(mins.loss, l_min)


def test_endpoint_histogram_by_hand():
    h = rugged.endpoint_histogram([0.1, 0.2, 0.6, 5.0], [0.0, 0.5, 1.0])
    # two of four endpoints in [0, .5), one in [.5, 1), one outside: density = count / (4 · .5)
    np.testing.assert_allclose(h.density, [1.0, 0.5])
    assert np.sum(h.density * (h.w1 - h.w0)) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        rugged.endpoint_histogram([0.1], [1.0, 0.0])


def test_trajectory_table_and_explorer_points():
    sim = rugged.simulate(LAND, 0.3, 0.1, 3, n_steps=10, anneal_steps=10, record_every=5, seed=1)
    tr = rugged.trajectory_table(sim)
    assert len(tr) == len(sim.steps) * 3
    np.testing.assert_allclose(tr[tr.run == 2].w, sim.trajectory[:, 2])
    assert tr[tr.step == 0].multiplier.eq(1).all() and tr[tr.step == 20].multiplier.eq(0).all()
    with pytest.raises(ValueError):
        rugged.trajectory_table(rugged.simulate(LAND, 0.3, 0.1, 2, n_steps=3))
    ends = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4) / 10
    pts = rugged.explorer_points(LAND, {"a": ends}, [0.5, 2.0], n_show=2)
    assert len(pts) == 2 * 3 * 2
    row = pts[(pts.li == 1) & (pts.ti == 2)]
    np.testing.assert_allclose(row.w, ends[1, 2, :2])
    np.testing.assert_allclose(row.loss, LAND.loss(ends[1, 2, :2], 2.0))


def test_axis_position_orients_hot():
    assert axis_position([1, 10, 100, 10]).tolist() == [0.0, 0.5, 1.0, 0.5]
    # batch size: small is hot, so batch 16 is at 1 (hottest) and 256 at 0 (coldest)
    assert axis_position([16, 64, 256], "small").tolist() == [1.0, 0.5, 0.0]
    assert axis_position([3.0, 3.0]).tolist() == [0.5, 0.5]
    with pytest.raises(ValueError):
        axis_position([1], "cold")


def _grid(phases, hot="high"):
    """A 3 × 3 grid (load 1, 2, 3 × temperature 10, 20, 30) with the given 3 × 3 labels,
    rows = loads, columns = temperatures."""
    L, T = np.meshgrid([1.0, 2.0, 3.0], [10.0, 20.0, 30.0], indexing="ij")
    return pd.DataFrame({"load": L.ravel(), "temperature": T.ravel(),
                         "phase": np.asarray(phases, dtype=object).ravel()})


def test_phase_extent_and_placement_by_hand():
    cold_iii = _grid([["I", "I", "II"], ["III", "IV-B", "II"], ["III", "IV-B", "II"]])
    ext = rugged.phase_extent(cold_iii)
    assert list(ext.index) == ["I", "II", "III", "IV-B"]
    assert ext.loc["III", "n_cells"] == 2 and ext.loc["III", "heat_pos"] == 0.0
    assert ext.loc["III", "load_pos"] == pytest.approx(0.75)
    assert ext.loc["II", "temperature_min"] == 30.0 and ext.loc["II", "heat_pos"] == 1.0
    # the same layout on the batch size, where small is hot (III at large batches), and
    # on a data-fraction load axis, where small is the most capacity per sample
    flipped = cold_iii.rename(columns={"temperature": "batch_size", "load": "data_fraction"})
    flipped["batch_size"] = flipped.batch_size.map({10: 300, 20: 200, 30: 100})
    flipped["data_fraction"] = flipped.data_fraction.map({1.0: 1.0, 2.0: 0.5, 3.0: 0.25})
    fl = rugged.phase_extent(flipped, "data_fraction", "batch_size")
    assert fl.loc["III", "heat_pos"] == 0.0 and fl.loc["III", "load_pos"] == pytest.approx(0.75)
    assert fl.loc["III", "temperature_min"] == 300 and fl.loc["II", "temperature_max"] == 100
    with pytest.raises(ValueError):
        rugged.phase_extent(flipped, "batch_size", "data_fraction")
    hot_iii = rugged.phase_extent(_grid([["I", "I", "III"], ["I", "IV-B", "III"],
                                         ["IV-B", "IV-B", "IV-B"]]))
    none = rugged.phase_extent(_grid([["I"] * 3] * 3))
    v = rugged.placement_verdict({"stopped": none, "annealed": hot_iii}, ext)
    assert v["state"] == "annealed" and v["verdict"] == "fails" and v["delta"] == 1.0
    assert rugged.placement_verdict({"stopped": ext}, ext)["verdict"] == "holds"
    mid = rugged.phase_extent(_grid([["III", "I", "I"], ["I", "III", "I"], ["I", "I", "I"]]))
    assert mid.loc["III", "heat_pos"] == 0.25
    assert rugged.placement_verdict({"s": mid}, ext)["verdict"] == "holds"   # 0.25 <= tol
    mid2 = rugged.phase_extent(_grid([["I", "III", "I"]] * 3))                # heat_pos 0.5
    assert rugged.placement_verdict({"s": mid2}, ext)["verdict"] == "fails"   # 0.5 >= 2 tol
    mid3 = rugged.phase_extent(_grid([["III", "III", "I"]] + [["I", "III", "I"]] * 2))
    assert mid3.loc["III", "heat_pos"] == pytest.approx(0.375)
    assert rugged.placement_verdict({"s": mid3}, ext)["verdict"] == "inconclusive"  # tol < Δ < 2 tol
    v = rugged.placement_verdict({"s": none}, ext)
    assert v["verdict"] == "inconclusive" and "1D model" in v["evidence"]
    # a state fixed in advance is compared even when another has more III cells
    states = {"stopped": hot_iii, "annealed": mid}
    v = rugged.placement_verdict(states, ext, state="annealed")
    assert v["state"] == "annealed" and v["verdict"] == "holds" and "fixed in advance" in v["evidence"]
    v = rugged.placement_verdict(states, ext, state="stopped")
    assert v["verdict"] == "fails"
    assert "picked after looking" in rugged.placement_verdict(states, ext)["evidence"]
    with pytest.raises(KeyError, match="nope"):
        rugged.placement_verdict(states, ext, state="nope")


def _ann_runs(d_test_poor, d_test_well):
    """Hand-made annealing_experiment rows: load 0.2 (annealed mc -0.2) and load 3 (mc 0),
    one temperature, a realization per entry of the d_test lists; d_train = -1 and -0.5."""
    rows = []
    for load, mc, d_train, d_tests in ((0.2, -0.2, -1.0, d_test_poor), (3.0, 0.0, -0.5, d_test_well)):
        for r, d in enumerate(d_tests):
            rows.append(dict(realization=r, load=load, temperature=0.1, annealed=False,
                             train_loss=2.0, test_loss=2.0, mc=0.01))
            rows.append(dict(realization=r, load=load, temperature=0.1, annealed=True,
                             train_loss=2.0 + d_train, test_loss=2.0 + d, mc=mc))
    return pd.DataFrame(rows)


def test_annealing_deltas_summary_and_verdicts_by_hand():
    runs = _ann_runs([0.18, 0.22, 0.2], [-0.5, -0.5, -0.5])
    d = rugged.annealing_deltas(runs)
    assert len(d) == 6
    poor = d[d.load == 0.2]
    np.testing.assert_allclose(poor.d_test, [0.18, 0.22, 0.2]) and np.testing.assert_allclose(
        poor.d_train, -1.0)
    s = rugged.annealing_summary(d, mc_neg=0.05)
    assert s.loc[0.2, "connected"] == "poorly" and s.loc[3.0, "connected"] == "well"
    assert s.loc[0.2, "d_test"] == pytest.approx(0.2)
    assert s.loc[0.2, "d_test_sem"] == pytest.approx(np.std([0.18, 0.22, 0.2], ddof=1) / np.sqrt(3))
    assert s.loc[0.2, "frac_worse"] == 1.0 and s.loc[3.0, "frac_worse"] == 0.0
    assert s.loc[0.2, "ratio"] == pytest.approx(-0.2) and s.loc[3.0, "ratio"] == pytest.approx(1.0)
    v = rugged.annealing_verdicts(s)
    assert v["hurts"]["verdict"] == "holds" and v["gap"]["verdict"] == "holds"
    assert v["hurts"]["p_value"] == pytest.approx(stats.ttest_1samp([0.18, 0.22, 0.2], 0.0).pvalue)
    # t quantiles, not 2 sem: t = 3.46 on 2 df is inside the spread (the legacy z = 2 said holds)
    wide = rugged.annealing_summary(rugged.annealing_deltas(_ann_runs([0.1, 0.3, 0.2], [-0.5] * 3)),
                                    mc_neg=0.05)
    assert rugged.annealing_verdicts(wide)["hurts"]["verdict"] == "inconclusive"
    assert rugged.annealing_verdicts(wide, z=2.0)["hurts"]["verdict"] == "holds"
    # test loss falls at the poor load by more than the train loss: both claims fail
    s2 = rugged.annealing_summary(rugged.annealing_deltas(_ann_runs([-2.1, -1.9, -2.0],
                                                                    [-0.5, -0.5, -0.5])))
    v2 = rugged.annealing_verdicts(s2)
    assert v2["hurts"]["verdict"] == "fails" and v2["gap"]["verdict"] == "fails"
    # a change inside the spread is inconclusive
    s3 = rugged.annealing_summary(rugged.annealing_deltas(_ann_runs([-0.3, 0.3, 0.05], [-0.5] * 3)))
    assert rugged.annealing_verdicts(s3)["hurts"]["verdict"] == "inconclusive"
    # no poorly connected load at all
    s4 = s.assign(connected="well")
    assert rugged.annealing_verdicts(s4)["hurts"]["verdict"] == "inconclusive"
    assert rugged.annealing_verdicts(s4)["gap"]["verdict"] == "inconclusive"


def test_phase_ii_verdict_by_hand():
    t = pd.DataFrame({"annealed": [False, False, True, True], "phase": ["II", "I", "IV-B", "I"]})
    assert rugged.phase_ii_verdict(t)["verdict"] == "holds"
    t.loc[2, "phase"] = "II"
    assert rugged.phase_ii_verdict(t)["verdict"] == "fails"
    t.loc[0, "phase"] = "I"
    assert rugged.phase_ii_verdict(t)["verdict"] == "inconclusive"
    with pytest.raises(ValueError):
        rugged.phase_ii_verdict(t[t.annealed])


def test_charts_fit_the_column():
    """Every chart of chapter 5, built from a tiny diagram, fits the book's content column."""
    from landscape_utils.core import plotting

    table, sim = rugged.phase_diagram([0.2, 1.0, 3.0], [0.01, 0.3], n_runs=4, n_steps=50,
                                      anneal_steps=50, return_simulation=True)
    w = np.linspace(-3, 3, 41)
    curves, mins = rugged.effective_curves(LAND, w, 0.2, [0.0, 0.1])
    hist = rugged.endpoint_histogram(sim.endpoints, np.linspace(-1.5, 1.5, 7))
    tr = rugged.simulate(LAND, 0.2, 0.3, 3, n_steps=20, anneal_steps=20, record_every=10)
    ann = rugged.annealing_experiment([0.2, 3.0], [0.1], 2, 4, n_steps=30, anneal_steps=30)
    pts = rugged.explorer_points(LAND, {"stopped at T": sim.before_anneal}, [0.2, 1.0, 3.0], 2)
    charts = {
        "landscape": rugged.landscape_chart(rugged.landscape_curves(LAND, w, [0.1, 1.0, 10.0])),
        "effective": rugged.effective_chart(curves, mins, "t"),
        "histogram": rugged.histogram_chart(hist, pd.DataFrame({"w": w, "density": 1.0}), "t"),
        "trajectory": rugged.trajectory_chart(rugged.trajectory_table(tr), 20, 20, "t"),
        "phase maps": rugged.phase_maps({"a": table[~table.annealed], "b": table[table.annealed]}),
        "metrics": rugged.metric_panels(table[~table.annealed]),
        "annealing": rugged.annealing_chart(rugged.annealing_deltas(ann)),
        "static explorer": rugged.static_explorer(LAND, [0.2, 1.0, 3.0], [0.01, 0.3], pts, w),
        "live": rugged.live_chart(LAND, 0.2, 0.1, True, n_runs=4, n_steps=20, anneal_steps=20),
    }
    for name, chart in charts.items():
        assert plotting.estimated_width(chart) <= plotting.COLUMN_WIDTH, name
        chart.to_dict()  # a valid Vega-Lite spec
