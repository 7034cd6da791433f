"""The one-dimensional rugged-convexity model (the Methods appendix, "The 1D model").

This is **our own construction** in the spirit of the 1D model of Yang et al. (2021,
first arXiv version), whose exact formula is not available. One weight ``w``, and

    L(w) = ½ a w²  +  A(load) · Σ_k c_k cos(ω_k w + φ_k)

* a **convex envelope** ½ a w² (the "signal": where every data set agrees);
* a **rugged term**, K cosines with seeded random frequencies ω_k ~ U(ω_min, ω_max) and
  phases φ_k ~ U(0, 2π), and c_k = sqrt(2/K) so that the rugged term has unit standard
  deviation at fixed w. Its amplitude A(load) = roughness · load^(−load_exponent) is set by
  a **load-like** parameter: less data or a smaller model (small load) means a rougher
  landscape relative to the envelope;
* a **test landscape**: the same envelope plus a second, independent realization of the
  rugged term, so that fitting the rugged structure of the training realization has a 1D
  meaning (it does not transfer).

A **temperature-like** parameter T drives Langevin dynamics, the 1D stand-in for SGD noise:

    w ← w − η L'(w) + sqrt(2 η T) ξ,   ξ ~ N(0, 1),

whose stationary density is ∝ exp(−L/T). Noise acts as smoothing: the **effective
landscape** E[L(w + ξ)] with ξ ~ N(0, T) has a closed form (the quadratic gains ½ a T and
each cosine is damped by exp(−ω_k² T / 2)). With a = 1, the smoothing variance T equals the
thermal variance T/a of a walker in the envelope.

The 1D analogues of the paper's metrics, per pair of runs (disjoint pairs (0,1), (2,3), …)
and averaged per (load, temperature) cell: excess train loss L − min L, curvature L″ (the
Hessian), mode connectivity mc of the train loss along the straight segment between the two
endpoints (:func:`landscape_utils.metrics.profiles.mode_connectivity`, mc < 0 = barrier),
distance |w₁ − w₂|, a similarity in [0, 1] (the column ``cka``) and the excess test loss.

Everything is vectorized: the grid of cells (and optionally a batch of landscape
realizations) and the runs are array axes, never Python loops over cells.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Sequence

import altair as alt
import numpy as np
import pandas as pd
from scipy import stats

from landscape_utils.core import plotting
from landscape_utils.core.axes import axis_info, axis_position
from landscape_utils.metrics.profiles import mode_connectivity
from landscape_utils.experiments.taxonomy import PHASES, PhaseThresholds, classify

__all__ = [
    "DEFAULT_LOADS",
    "DEFAULT_TEMPERATURES",
    "RUGGED_THRESHOLDS",
    "RuggedLandscape",
    "Simulation",
    "simulate",
    "temperature_schedule",
    "segment_profile",
    "pair_barriers",
    "similarity",
    "cell_metrics",
    "rescaled_thresholds",
    "phase_diagram",
    "annealing_experiment",
    "stationary_density",
    "vega_loss_expression",
]

#: The default grid of the phase diagram: load 0.1 … 10 (roughness A = 0.5 … 0.005) and
#: temperature 1e-3 … 1, both log-spaced (quarter and half decades).
DEFAULT_LOADS: tuple[float, ...] = tuple(float(x) for x in np.logspace(-1, 1, 9))
DEFAULT_TEMPERATURES: tuple[float, ...] = tuple(float(x) for x in np.logspace(-3, 0, 7))


# --------------------------------------------------------------------------------------
# The landscape
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RuggedLandscape:
    """Parameters of one realization pair (train, test) of the 1D rugged landscape.

    The train and test realizations share the envelope and the *distribution* of the rugged
    term; their frequencies and phases are drawn from two independent streams of ``seed``.
    """

    #: a, curvature of the convex envelope ½ a w² (its minimum is at w = 0).
    envelope_curvature: float = 1.0
    #: A at load 1: standard deviation of the rugged term relative to the envelope.
    roughness: float = 0.05
    #: A(load) = roughness · load^(−load_exponent); 1 means "twice the load, half as rough".
    load_exponent: float = 1.0
    #: K, the number of cosines in the rugged term.
    n_terms: int = 16
    #: Frequencies are drawn uniformly in [omega_min, omega_max]: the wells are 2π/ω wide,
    #: i.e. 0.7 to 2.1 here, narrower than the thermal width of the envelope at T ~ 0.1.
    omega_min: float = 3.0
    omega_max: float = 9.0
    #: Seeds both realizations: train = stream (seed, 0), test = stream (seed, 1).
    seed: int = 0

    def replace(self, **changes) -> "RuggedLandscape":
        """A copy with some fields changed (e.g. another ``seed`` = another realization)."""
        return dataclasses.replace(self, **changes)

    # ---- parameters of the rugged term ------------------------------------------------
    def spectrum(self, which: str = "train") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(omega, coeff, phase)``, each of shape (K,), of the ``"train"`` or ``"test"``
        realization."""
        stream = {"train": 0, "test": 1}[which]
        rng = np.random.default_rng([int(self.seed), stream])
        omega = rng.uniform(self.omega_min, self.omega_max, self.n_terms)
        phase = rng.uniform(0.0, 2.0 * np.pi, self.n_terms)
        coeff = np.full(self.n_terms, np.sqrt(2.0 / self.n_terms))
        return omega, coeff, phase

    def amplitude(self, load) -> np.ndarray:
        """A(load) = roughness · load^(−load_exponent), elementwise."""
        load = np.asarray(load, dtype=np.float64)
        if np.any(load <= 0):
            raise ValueError("load must be > 0")
        return self.roughness * load ** (-self.load_exponent)

    @property
    def correlation_length(self) -> float:
        """ℓ = 1/sqrt(E[ω²]) for ω ~ U(ω_min, ω_max): the rugged term's autocorrelation is
        ≈ exp(−δ²/(2ℓ²)) at small lag δ. Two runs closer than ℓ sit in the same well."""
        lo, hi = self.omega_min, self.omega_max
        mean_sq = (hi**3 - lo**3) / (3 * (hi - lo)) if hi > lo else lo**2
        return float(1.0 / np.sqrt(mean_sq))

    @property
    def max_rugged(self) -> float:
        """Σ_k |c_k|: the rugged term is bounded by A times this."""
        return float(np.sqrt(2.0 * self.n_terms))

    # ---- closed forms ---------------------------------------------------------------
    def loss(self, w, load=1.0, temperature=0.0, which: str = "train") -> np.ndarray:
        """The effective loss E[L(w + ξ)], ξ ~ N(0, temperature); temperature 0 gives L.

        ``w``, ``load`` and ``temperature`` broadcast together; returns their broadcast shape.
        """
        return _evaluate(self, w, load, temperature, which, order=0)

    def grad(self, w, load=1.0, temperature=0.0, which: str = "train") -> np.ndarray:
        """d/dw of :meth:`loss` (closed form)."""
        return _evaluate(self, w, load, temperature, which, order=1)

    def curvature(self, w, load=1.0, temperature=0.0, which: str = "train") -> np.ndarray:
        """d²/dw² of :meth:`loss` (closed form): the 1D Hessian."""
        return _evaluate(self, w, load, temperature, which, order=2)

    def minimum(self, load=1.0, temperature=0.0, which: str = "train"
                ) -> tuple[np.ndarray, np.ndarray]:
        """Global minimum ``(w_min, L_min)`` of :meth:`loss`, for each ``load`` (and
        ``temperature``), broadcast shape of the two.

        Exhaustive: the global minimizer obeys ½ a w² ≤ 2 A Σ|c_k| (compare with L(0)), so
        a grid of that interval at 1/100 of the shortest period finds its well; three
        Newton steps then polish it to machine precision.
        """
        load, temperature = np.broadcast_arrays(np.asarray(load, np.float64),
                                                np.asarray(temperature, np.float64))
        amp = self.amplitude(load)
        bound = np.sqrt(4.0 * float(np.max(amp, initial=0.0)) * self.max_rugged
                        / self.envelope_curvature)
        bound = max(bound, 1.0) + 0.5
        step = 2.0 * np.pi / self.omega_max / 100.0
        grid = np.linspace(-bound, bound, int(np.ceil(2 * bound / step)) + 1)
        vals = self.loss(grid, load[..., None], temperature[..., None], which)  # (..., G)
        w = grid[np.argmin(vals, axis=-1)]
        for _ in range(3):
            h = self.curvature(w, load, temperature, which)
            g = self.grad(w, load, temperature, which)
            w = np.where(h > 0, w - g / np.where(h > 0, h, 1.0), w)
        return w, self.loss(w, load, temperature, which)


def _evaluate(land: RuggedLandscape, w, load, temperature, which: str, order: int) -> np.ndarray:
    """L, L' or L'' of the effective landscape (see :meth:`RuggedLandscape.loss`)."""
    w = np.asarray(w, dtype=np.float64)
    temperature = np.asarray(temperature, dtype=np.float64)
    if np.any(temperature < 0):
        raise ValueError("temperature must be >= 0")
    amp = land.amplitude(load)
    omega, coeff, phase = land.spectrum(which)
    arg = w[..., None] * omega + phase                      # (..., K)
    damp = np.exp(-0.5 * omega**2 * temperature[..., None])  # (..., K)
    a = land.envelope_curvature
    if order == 0:
        env = 0.5 * a * (w**2 + temperature)
        rug = np.sum(coeff * damp * np.cos(arg), axis=-1)
    elif order == 1:
        env = a * w
        rug = -np.sum(coeff * omega * damp * np.sin(arg), axis=-1)
    elif order == 2:
        env = a * np.ones_like(w)
        rug = -np.sum(coeff * omega**2 * damp * np.cos(arg), axis=-1)
    else:
        raise ValueError(order)
    return env + amp * rug


def _as_batch(landscape) -> tuple[list[RuggedLandscape], bool]:
    """A list of realizations, and whether the caller passed a batch."""
    if isinstance(landscape, RuggedLandscape):
        return [landscape], False
    lands = list(landscape)
    if not lands:
        raise ValueError("empty batch of landscapes")
    ref = lands[0].replace(seed=0)
    if any(l.replace(seed=0) != ref for l in lands):
        raise ValueError("a batch of landscapes may differ only in seed")
    return lands, True


def _stacked_spectrum(lands: list[RuggedLandscape], which: str, grid_ndim: int):
    """Spectra of a batch, shaped (R, 1, …, 1, K) to broadcast against (R, *grid, runs, K)."""
    arrs = [np.stack([l.spectrum(which)[j] for l in lands]) for j in range(3)]
    shape = (len(lands),) + (1,) * (grid_ndim + 1) + (lands[0].n_terms,)
    return [x.reshape(shape) for x in arrs]


# --------------------------------------------------------------------------------------
# Dynamics
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Simulation:
    """The result of :func:`simulate`. Shapes: ``batch = (R,) + grid`` for a batch of R
    landscapes, else ``grid`` = broadcast shape of ``load`` and ``temperature``."""

    #: Final weights, (*batch, n_runs): after annealing when ``anneal_steps > 0``.
    endpoints: np.ndarray
    #: Weights at the end of the constant-temperature phase, (*batch, n_runs). The same
    #: runs (same noise) as ``endpoints``, stopped before annealing; equal to ``endpoints``
    #: when ``anneal_steps == 0``.
    before_anneal: np.ndarray
    #: Recorded weights, (n_records, *batch, n_runs), or None (``record_every == 0``).
    trajectory: np.ndarray | None
    #: Step index of each record, (n_records,), or None.
    steps: np.ndarray | None
    #: Temperature multiplier of every step, (n_steps + anneal_steps,): 1, then the ramp.
    schedule: np.ndarray


def temperature_schedule(n_steps: int, anneal_steps: int = 0, hold_zero: float = 0.2
                         ) -> np.ndarray:
    """Multiplier of T at every step: 1 for ``n_steps`` steps, then (annealing) a linear ramp
    to 0 over the first ``1 - hold_zero`` of ``anneal_steps`` and 0 for the rest, so that
    annealed runs end in a minimum: the 1D analogue of training on to zero loss."""
    hot = np.ones(int(n_steps))
    if anneal_steps <= 0:
        return hot
    ramp_len = max(1, int(round((1.0 - hold_zero) * anneal_steps)))
    ramp = np.clip(1.0 - (np.arange(anneal_steps) + 1) / ramp_len, 0.0, 1.0)
    return np.concatenate([hot, ramp])


def simulate(landscape, load, temperature, n_runs: int = 128, *, n_steps: int = 1500,
             lr: float = 0.01, anneal_steps: int = 0, init_mean: float = 0.0,
             init_std: float = 2.0, seed: int = 0, record_every: int = 0,
             dtype=np.float32) -> Simulation:
    """Langevin dynamics w ← w − lr L'(w) + sqrt(2 lr T) ξ on the train landscape, for every
    cell of a grid and ``n_runs`` independent runs per cell, all at once.

    Args:
        landscape: one :class:`RuggedLandscape`, or a sequence of realizations differing only
            in ``seed`` (adds a leading axis R).
        load, temperature: array-likes broadcast together into the grid (e.g. shapes (L, 1)
            and (1, T) for an L × T grid). temperature >= 0.
        n_runs: independent runs per cell (different init and noise).
        n_steps: steps at constant temperature.
        lr: step size η. Keep η · max L″ < 2 (max L″ ≈ a + A·Σ c_k ω_k²).
        anneal_steps: extra steps that cool T to 0 (:func:`temperature_schedule`); 0 = none.
            The constant-T phase is identical with or without annealing.
        init_mean, init_std: the init is w₀ ~ N(init_mean, init_std²).
        seed: seeds one ``numpy.random.Generator`` for init and noise. Runs r of every cell
            share their random numbers ("common random numbers"): cells differ only by
            their parameters, which keeps the phase diagram smooth. Runs within a cell are
            independent.
        record_every: record the weights every this many steps (0 = no trajectory).
        dtype: float32 (default, ~5x faster on a CPU) or float64 for the dynamics; outputs
            are float64.

    Returns:
        A :class:`Simulation`.
    """
    lands, batched = _as_batch(landscape)
    load = np.asarray(load, dtype=np.float64)
    temperature = np.asarray(temperature, dtype=np.float64)
    if np.any(temperature < 0):
        raise ValueError("temperature must be >= 0")
    ops = _langevin_operands(lands, batched, load, temperature, lr, np.dtype(dtype))
    rng = np.random.default_rng(seed)
    w = init_mean + init_std * rng.standard_normal(n_runs)
    w = np.broadcast_to(w.astype(ops.dtype), ops.batch + (n_runs,)).copy()
    sched = temperature_schedule(n_steps, anneal_steps)
    end, before, records, rec_steps = _langevin_loop(w, ops, sched, n_steps, rng, record_every)
    return Simulation(
        endpoints=end, before_anneal=before,
        trajectory=np.stack(records) if record_every else None,
        steps=np.asarray(rec_steps) if record_every else None,
        schedule=sched)


@dataclass(frozen=True)
class _LangevinOperands:
    """What every Langevin step of :func:`simulate` multiplies by, precomputed once."""

    batch: tuple[int, ...]     # (R?, *grid): the cells (and realizations) stepped together
    dtype: np.dtype            # the dynamics' float type
    co: np.ndarray             # (R, K, 1): c_k ω_k per realization
    omega: np.ndarray          # (R?, 1.., 1, K): the cosine frequencies
    phase: np.ndarray          # like omega: the phases φ_k
    shrink: np.floating        # 1 − lr · a: the envelope part of a step
    lr_amp: np.ndarray         # (*batch, 1): lr · A(load)
    noise_scale: np.ndarray    # (*batch, 1): sqrt(2 lr T)


def _langevin_operands(lands: Sequence[RuggedLandscape], batched: bool, load: np.ndarray,
                       temperature: np.ndarray, lr: float, np_dtype: np.dtype) -> _LangevinOperands:
    """The step operands of :func:`simulate` for a grid of ``load`` × ``temperature``."""
    grid = np.broadcast_shapes(load.shape, temperature.shape)
    batch = ((len(lands),) if batched else ()) + grid
    omega, coeff, phase = _stacked_spectrum(lands, "train", len(grid))  # (R, 1.., 1, K)
    if not batched:
        omega, coeff, phase = omega[0], coeff[0], phase[0]
    # L'(w) = a w - A · sin(w ω + φ) @ (c ω): one matrix product over the K terms per
    # realization, on the flattened (cells × runs) axis.
    n_real, n_terms = (len(lands) if batched else 1), lands[0].n_terms
    amp = np.broadcast_to(np.broadcast_to(lands[0].amplitude(load), grid), batch)[..., None]
    temp = np.broadcast_to(np.broadcast_to(temperature, grid), batch)[..., None]
    return _LangevinOperands(
        batch=batch, dtype=np_dtype, co=(coeff * omega).astype(np_dtype).reshape(n_real, n_terms, 1),
        omega=omega.astype(np_dtype), phase=phase.astype(np_dtype),
        shrink=np_dtype.type(1.0 - lr * lands[0].envelope_curvature),
        lr_amp=(lr * amp).astype(np_dtype), noise_scale=np.sqrt(2.0 * lr * temp).astype(np_dtype))


def _langevin_loop(w: np.ndarray, ops: _LangevinOperands, sched: np.ndarray, n_steps: int,
                   rng: np.random.Generator, record_every: int) -> tuple[np.ndarray, np.ndarray, list, list]:
    """Step ``w`` (shape (*batch, n_runs), in place) through the temperature multipliers
    ``sched``; returns the endpoints, the weights before annealing (step ``n_steps``), and
    the recorded weights with their steps (every ``record_every``, 0 = none)."""
    n_real, n_terms = ops.co.shape[0], ops.co.shape[1]
    buf = np.empty(w.shape + (n_terms,), ops.dtype)            # sin arguments, reused
    flat = buf.reshape(n_real, -1, n_terms)                    # a view of buf
    kick = np.empty_like(w)
    n_runs = w.shape[-1]
    records, rec_steps = [], []
    before = None
    for t, mult in enumerate(sched):
        if record_every and t % record_every == 0:
            records.append(w.astype(np.float64))
            rec_steps.append(t)
        if t == n_steps:
            before = w.astype(np.float64)
        np.multiply(w[..., None], ops.omega, out=buf)
        buf += ops.phase
        np.sin(buf, out=buf)
        force = np.matmul(flat, ops.co).reshape(w.shape)       # Σ c ω sin(ω w + φ)
        xi = rng.standard_normal(n_runs).astype(ops.dtype)
        # w ← w − lr (a w − A force) + sqrt(2 lr T mult) ξ
        w *= ops.shrink
        force *= ops.lr_amp
        w += force
        if mult > 0:
            np.multiply(ops.noise_scale, ops.dtype.type(np.sqrt(mult)) * xi, out=kick)
            w += kick
    if record_every:
        records.append(w.astype(np.float64))
        rec_steps.append(len(sched))
    end = w.astype(np.float64)
    return end, (end if before is None else before), records, rec_steps


# --------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------
def segment_profile(landscape: RuggedLandscape, w1, w2, load=1.0, n_points: int = 33,
                    which: str = "train") -> np.ndarray:
    """L along the straight segment (1 − t) w₁ + t w₂, t = linspace(0, 1, n_points).

    ``w1``, ``w2`` and ``load`` broadcast together (shape S); returns (*S, n_points).
    """
    w1, w2 = np.broadcast_arrays(np.asarray(w1, np.float64), np.asarray(w2, np.float64))
    t = np.linspace(0.0, 1.0, n_points)
    path = (1.0 - t) * w1[..., None] + t * w2[..., None]
    return landscape.loss(path, np.asarray(load, np.float64)[..., None], 0.0, which)


def pair_barriers(landscape: RuggedLandscape, w1, w2, load=1.0, n_points: int = 33
                  ) -> np.ndarray:
    """The paper's mc for every pair: :func:`~landscape_utils.metrics.profiles.mode_connectivity`
    applied to the train-loss profile of the segment between w₁ and w₂ (mc < 0: barrier).
    Shape: broadcast shape of the inputs."""
    prof = segment_profile(landscape, w1, w2, load, n_points)
    flat = prof.reshape(-1, n_points)
    mc = np.array([mode_connectivity(p)[0] for p in flat])
    return mc.reshape(prof.shape[:-1])


def similarity(distance, length: float) -> np.ndarray:
    """exp(−d² / (2 ℓ²)) ∈ (0, 1]: 1 for two runs at the same point, ≈ 0 beyond a few ℓ.
    With ℓ the correlation length of the rugged term, it is (to second order) the
    correlation of the rugged term at the two endpoints: the 1D stand-in for CKA."""
    d = np.asarray(distance, dtype=np.float64)
    return np.exp(-0.5 * (d / length) ** 2)


def cell_metrics(landscape, endpoints: np.ndarray, load, n_points: int = 33
                 ) -> dict[str, np.ndarray]:
    """Per-cell means of the 1D metrics, for endpoints of shape (*batch, n_runs).

    Runs are paired as (0, 1), (2, 3), … (n_runs must be even). ``load`` broadcasts to the
    grid part of ``batch``; ``landscape`` is one realization or the batch used in
    :func:`simulate` (leading axis R).

    Returns, each of shape ``batch``:
        ``train_loss``, ``test_loss``: mean of L − min L over runs (excess loss, ≥ 0);
        ``curvature``: mean L″ (train) at the endpoints;
        ``mc``, ``mc_std``: mean and std over pairs of :func:`pair_barriers`;
        ``distance``: mean |w₁ − w₂| over pairs;
        ``cka``: mean :func:`similarity` over pairs, with ℓ = ``correlation_length``.
    """
    lands, batched = _as_batch(landscape)
    endpoints = np.asarray(endpoints, dtype=np.float64)
    n_runs = endpoints.shape[-1]
    if n_runs % 2:
        raise ValueError("n_runs must be even to form pairs")
    grid_shape = endpoints.shape[1:-1] if batched else endpoints.shape[:-1]
    load = np.broadcast_to(np.asarray(load, np.float64), grid_shape)
    parts: dict[str, list[np.ndarray]] = {}
    for r, land in enumerate(lands):
        ends = endpoints[r] if batched else endpoints
        ld = load[..., None]
        out = {}
        for which in ("train", "test"):
            _, lmin = land.minimum(load, 0.0, which)
            out[f"{which}_loss"] = (land.loss(ends, ld, 0.0, which) - lmin[..., None]).mean(-1)
        out["curvature"] = land.curvature(ends, ld).mean(-1)
        w1, w2 = ends[..., 0::2], ends[..., 1::2]
        mc = pair_barriers(land, w1, w2, ld, n_points)
        out["mc"] = mc.mean(-1)
        out["mc_std"] = mc.std(-1, ddof=1) if mc.shape[-1] > 1 else np.full(mc.shape[:-1], np.nan)
        dist = np.abs(w1 - w2)
        out["distance"] = dist.mean(-1)
        out["cka"] = similarity(dist, land.correlation_length).mean(-1)
        for k, v in out.items():
            parts.setdefault(k, []).append(v)
    return {k: (np.stack(v) if batched else v[0]) for k, v in parts.items()}


# --------------------------------------------------------------------------------------
# Phase diagram
# --------------------------------------------------------------------------------------
#: Phase thresholds rescaled to the 1D model's units: excess loss of a landscape whose
#: envelope is ½ w² (a = 1) and whose rugged term has std A = 0.005 … 0.5. Thermal
#: reference points (a walker in the envelope at temperature T): excess loss ≈ T/2, mc of
#: a pair ≈ a·E[(w₁ − w₂)²]/8 = T/4, similarity ≈ 1/sqrt(1 + 2T/(a ℓ²)).
RUGGED_THRESHOLDS: dict[str, float] = {
    # "Has not fitted": the thermal excess loss at T = 0.2, or a run stopped |w| ≈ 0.45
    # (about 3 correlation lengths) from the bottom; 1/20 of the loss at init (½·2² = 2).
    "train_loss_high": 0.1,
    # A clear barrier: as high as the rugged term's std at load 1 (A = 0.05).
    "mc_neg": 0.05,
    # The path clearly beats its endpoints: mc = T/4 of a thermal pair at T = 0.2, the same
    # temperature at which the thermal loss crosses train_loss_high.
    "mc_pos": 0.05,
    # IV-B: a thermal pair at T ≈ 0.018, i.e. runs typically within ~1.3 ℓ (the same well).
    "cka_high": 0.65,
}


def rescaled_thresholds(**overrides: float):
    """:class:`landscape_utils.experiments.taxonomy.PhaseThresholds` in the 1D model's units
    (:data:`RUGGED_THRESHOLDS`, with ``overrides``)."""
    values = {**RUGGED_THRESHOLDS, **overrides}
    return PhaseThresholds(**values)


def phase_diagram(loads: Sequence[float] = DEFAULT_LOADS,
                  temperatures: Sequence[float] = DEFAULT_TEMPERATURES, n_runs: int = 128,
                  seed: int = 0, *, landscape: RuggedLandscape = RuggedLandscape(),
                  n_realizations: int = 1, n_steps: int = 1500, anneal_steps: int = 0,
                  lr: float = 0.01, init_std: float = 2.0, thresholds=None, n_points: int = 33,
                  return_simulation: bool = False):
    """The 1D model's phase diagram over ``loads`` × ``temperatures``, in one simulation.

    Args:
        loads, temperatures: the grid axes (1-D).
        n_runs: runs per cell *and* landscape realization (pairs: n_runs / 2).
        seed: seeds the dynamics (init and noise).
        landscape: the landscape; with ``n_realizations > 1`` the realizations are
            ``landscape.seed + 0, 1, …`` and every cell's metrics are pooled over them, so
            the diagram does not hinge on one random draw of the rugged term.
        n_steps, anneal_steps, lr, init_std: as in :func:`simulate`.
        thresholds: a ``PhaseThresholds``; default :func:`rescaled_thresholds`.
        n_points: points on each segment for mc.
        return_simulation: also return the :class:`Simulation` (a leading realization axis
            when ``n_realizations > 1``).

    Returns:
        A tidy DataFrame, one row per cell: ``load``, ``temperature``, ``annealed`` (False
        for the state after the constant-temperature phase; and, when ``anneal_steps > 0``,
        True for the same runs annealed to T = 0), ``amplitude`` A(load), the metrics of
        :func:`cell_metrics` (means over all pairs; ``mc_std`` pooled over realizations),
        ``phase`` from :func:`landscape_utils.experiments.taxonomy.classify`, and ``seed``,
        ``landscape_seed``, ``n_realizations``, ``n_runs``. With ``return_simulation``,
        ``(table, Simulation)``.
    """
    loads = np.asarray(loads, dtype=np.float64)
    temperatures = np.asarray(temperatures, dtype=np.float64)
    lands = ([landscape.replace(seed=landscape.seed + i) for i in range(n_realizations)]
             if n_realizations > 1 else landscape)
    sim = simulate(lands, loads[:, None], temperatures[None, :], n_runs, n_steps=n_steps,
                   lr=lr, anneal_steps=anneal_steps, init_std=init_std, seed=seed)
    states = [(False, sim.before_anneal)] + ([(True, sim.endpoints)] if anneal_steps > 0 else [])
    frames = []
    L, T = np.meshgrid(loads, temperatures, indexing="ij")
    for annealed, ends in states:
        m = cell_metrics(lands, ends, loads[:, None], n_points)
        if n_realizations > 1:
            m = _pool_realizations(m, n_pairs=n_runs // 2)
        frame = pd.DataFrame({
            "load": L.ravel(), "temperature": T.ravel(), "annealed": annealed,
            "amplitude": landscape.amplitude(L).ravel(),
            **{k: v.ravel() for k, v in m.items()}})
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    table["phase"] = classify(table, thresholds if thresholds is not None
                              else rescaled_thresholds()).astype(object)
    table["seed"] = seed
    table["landscape_seed"] = landscape.seed
    table["n_realizations"] = n_realizations
    table["n_runs"] = n_runs
    return (table, sim) if return_simulation else table


def _pool_realizations(m: dict[str, np.ndarray], n_pairs: int) -> dict[str, np.ndarray]:
    """Pool per-realization cell metrics (leading axis R, equal pair counts): means of
    means, and the pooled standard deviation of mc over all R · n_pairs pairs."""
    out = {k: v.mean(axis=0) for k, v in m.items() if k != "mc_std"}
    R, n = m["mc"].shape[0], n_pairs
    within = (n - 1) * np.nansum(m["mc_std"] ** 2, axis=0)
    between = n * np.sum((m["mc"] - out["mc"]) ** 2, axis=0)
    out["mc_std"] = np.sqrt((within + between) / (R * n - 1))
    return out


def annealing_experiment(loads: Sequence[float], temperatures: Sequence[float],
                         n_realizations: int = 16, n_runs: int = 64, seed: int = 0, *,
                         landscape: RuggedLandscape = RuggedLandscape(), n_steps: int = 1500,
                         anneal_steps: int = 1500, lr: float = 0.01, init_std: float = 2.0,
                         n_points: int = 33) -> pd.DataFrame:
    """Does training on to zero loss (annealing T → 0) help the test loss?

    Runs the same dynamics with and without the annealing phase (the runs are identical up
    to the end of the constant-T phase) on ``n_realizations`` landscapes (seeds
    ``landscape.seed + 0, 1, …``), all at once.

    Returns:
        One row per (realization, load, temperature, annealed) with the metrics of
        :func:`cell_metrics` and ``realization``.
    """
    lands = [landscape.replace(seed=landscape.seed + i) for i in range(n_realizations)]
    loads = np.asarray(loads, dtype=np.float64)
    temperatures = np.asarray(temperatures, dtype=np.float64)
    sim = simulate(lands, loads[:, None], temperatures[None, :], n_runs, n_steps=n_steps,
                   lr=lr, anneal_steps=anneal_steps, init_std=init_std, seed=seed)
    R, L, T = np.meshgrid(np.arange(n_realizations), loads, temperatures, indexing="ij")
    frames = []
    for annealed, ends in ((False, sim.before_anneal), (True, sim.endpoints)):
        m = cell_metrics(lands, ends, loads[:, None], n_points)
        frames.append(pd.DataFrame({
            "realization": R.ravel(), "load": L.ravel(), "temperature": T.ravel(),
            "annealed": annealed, **{k: v.ravel() for k, v in m.items()}}))
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------------------
# Helpers for pictures
# --------------------------------------------------------------------------------------
def stationary_density(landscape: RuggedLandscape, w, load=1.0, temperature=0.1) -> np.ndarray:
    """The Langevin dynamics' stationary density ∝ exp(−L(w)/T) of the train landscape,
    normalized on the (uniform, increasing) grid ``w`` (shape (G,)); temperature > 0."""
    w = np.asarray(w, dtype=np.float64)
    if temperature <= 0:
        raise ValueError("temperature must be > 0")
    e = -landscape.loss(w, load) / temperature
    p = np.exp(e - e.max())
    return p / np.sum(0.5 * (p[1:] + p[:-1]) * np.diff(w))  # trapezoid rule


def vega_loss_expression(landscape: RuggedLandscape, which: str = "train", w: str = "datum.w",
                         amplitude: str = "A", temperature: str = "T") -> str:
    """The effective loss as a Vega expression (for an altair ``transform_calculate``), in
    terms of the expressions ``w``, ``amplitude`` (A) and ``temperature`` (T), so that a
    static chart can redraw L_eff for any slider value in the browser."""
    omega, coeff, phase = landscape.spectrum(which)
    a = landscape.envelope_curvature
    terms = " + ".join(
        f"{c:.17g}*exp({-0.5 * o * o:.17g}*({temperature}))*cos({o:.17g}*({w}) + {p:.17g})"
        for o, c, p in zip(omega, coeff, phase))
    return (f"{0.5 * a:.17g}*(({w})*({w}) + ({temperature})) + ({amplitude})*("
            f"{terms or '0'})")


# --------------------------------------------------------------------------------------
# Tables for the chapter's pictures
# --------------------------------------------------------------------------------------
def landscape_curves(landscape: RuggedLandscape, w, loads: Sequence[float]) -> pd.DataFrame:
    """L of the train and the test realization at each load, long form.

    ``w``: the grid, shape (G,). Returns 2 · len(loads) · G rows with columns ``w``,
    ``loss``, ``landscape`` ("train" | "test"), ``load`` and ``amplitude`` A(load).
    """
    w = np.asarray(w, dtype=np.float64)
    frames = [pd.DataFrame({"w": w, "loss": landscape.loss(w, ld, 0.0, which),
                            "landscape": which, "load": float(ld),
                            "amplitude": float(landscape.amplitude(ld))})
              for ld in loads for which in ("train", "test")]
    return pd.concat(frames, ignore_index=True)


def effective_curves(landscape: RuggedLandscape, w, load: float,
                     temperatures: Sequence[float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The effective landscape L_T at one load for several temperatures, and its minima.

    Returns ``(curves, minima)``: ``curves`` has len(temperatures) · G rows (``w``, ``loss``,
    ``T``); ``minima`` one row per temperature (``w``, ``loss``, ``T``), the global minimum
    of each curve (:meth:`RuggedLandscape.minimum`).
    """
    w = np.asarray(w, dtype=np.float64)
    temps = np.asarray(temperatures, dtype=np.float64)
    curves = pd.concat([pd.DataFrame({"w": w, "loss": landscape.loss(w, load, T), "T": float(T)})
                        for T in temps], ignore_index=True)
    w_min, l_min = landscape.minimum(load, temps)
    return curves, pd.DataFrame({"w": w_min, "loss": l_min, "T": temps})


def endpoint_histogram(endpoints, edges) -> pd.DataFrame:
    """A density histogram of endpoints: one row per bin with ``w0``, ``w1`` (its edges) and
    ``density`` = count / (number of endpoints · bin width), so that the bars integrate to
    the fraction of endpoints inside ``edges``. ``endpoints``: any shape; ``edges``: (B+1,),
    increasing."""
    ends = np.asarray(endpoints, dtype=np.float64).ravel()
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError("edges must be a 1-D increasing array of >= 2 values")
    if ends.size == 0:
        raise ValueError("no endpoints")
    counts, _ = np.histogram(ends, bins=edges)
    return pd.DataFrame({"w0": edges[:-1], "w1": edges[1:],
                         "density": counts / (ends.size * np.diff(edges))})


def trajectory_table(sim: Simulation) -> pd.DataFrame:
    """The recorded trajectory of a one-cell simulation (``trajectory`` of shape
    (n_records, n_runs)) in long form: ``step``, ``run`` (int), ``w`` and ``multiplier``,
    the temperature multiplier at that step (1 before annealing, 0 at the end)."""
    if sim.trajectory is None:
        raise ValueError("the simulation recorded no trajectory (record_every=0)")
    traj = np.asarray(sim.trajectory)
    if traj.ndim != 2:
        raise ValueError(f"expected a one-cell trajectory (n_records, n_runs), got {traj.shape}")
    n_rec, n_runs = traj.shape
    sched = np.append(sim.schedule, 0.0 if sim.schedule[-1] == 0 else sim.schedule[-1])
    steps = np.asarray(sim.steps)
    return pd.DataFrame({"step": np.repeat(steps, n_runs), "run": np.tile(np.arange(n_runs), n_rec),
                         "w": traj.ravel(), "multiplier": np.repeat(sched[steps], n_runs)})


def explorer_points(landscape: RuggedLandscape, states: dict[str, np.ndarray], loads,
                    n_show: int) -> pd.DataFrame:
    """Endpoints of every cell for the static explorer, drawn at their train loss.

    Args:
        states: name → endpoints of shape (L, T, n_runs) on one landscape (e.g. "stopped at
            T" and "annealed").
        loads: (L,), the load of each row of the grid.
        n_show: the first ``n_show`` runs of each cell are kept.

    Returns:
        Columns ``li``, ``ti`` (grid indices), ``w``, ``loss`` and ``state``.
    """
    loads = np.asarray(loads, dtype=np.float64)
    frames = []
    for state, ends in states.items():
        e = np.asarray(ends, dtype=np.float64)[..., :n_show]
        if e.ndim != 3 or e.shape[0] != loads.size:
            raise ValueError(f"{state}: endpoints must be (L, T, runs) with L = {loads.size}, "
                             f"got {e.shape}")
        li, ti, _ = np.meshgrid(np.arange(e.shape[0]), np.arange(e.shape[1]),
                                np.arange(e.shape[2]), indexing="ij")
        frames.append(pd.DataFrame({"li": li.ravel(), "ti": ti.ravel(), "w": e.ravel(),
                                    "loss": landscape.loss(e, loads[:, None, None]).ravel(),
                                    "state": state}))
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------------------
# Where the phases lie, and what annealing does
# --------------------------------------------------------------------------------------
def phase_extent(cells: pd.DataFrame, load: str = "load", temperature: str = "temperature",
                 phase_col: str = "phase") -> pd.DataFrame:
    """Where each phase lies on a load × temperature grid.

    Positions come from :func:`axis_position` over all cells of ``cells`` (so a grid's
    corners are 0 and 1), oriented by the axes' meaning in :mod:`landscape_utils.runs.tables`:
    ``load_pos`` 0 = least capacity per sample (the left of a phase diagram), ``heat_pos``
    0 = coldest, 1 = hottest.

    Returns:
        One row per phase present (index ``phase``, in the order of
        :data:`landscape_utils.experiments.taxonomy.PHASES`, then others), with ``n_cells``,
        ``load_min``, ``load_max``, ``temperature_min``, ``temperature_max`` and the mean
        ``load_pos`` and ``heat_pos`` of its cells.
    """
    for col in (load, temperature, phase_col):
        if col not in cells.columns:
            raise KeyError(f"phase_extent: column {col!r} not in the table "
                           f"(it has {', '.join(map(str, cells.columns))})")
    la, ta = axis_info(load), axis_info(temperature)
    if ta.kind != "temperature":
        raise ValueError(f"phase_extent: {temperature!r} is not a temperature axis")
    lv, tv = pd.to_numeric(cells[load]), pd.to_numeric(cells[temperature])
    df = pd.DataFrame({"phase": cells[phase_col].astype(object), "load": lv, "temperature": tv,
                       "load_pos": axis_position(lv, la.capacity_end).to_numpy(),
                       "heat_pos": axis_position(tv, ta.hot_end).to_numpy()})
    df = df[df.phase.notna()]
    g = df.groupby("phase")
    out = pd.DataFrame({"n_cells": g.size(), "load_min": g.load.min(), "load_max": g.load.max(),
                        "temperature_min": g.temperature.min(),
                        "temperature_max": g.temperature.max(),
                        "load_pos": g.load_pos.mean(), "heat_pos": g.heat_pos.mean()})
    order = [p for p in PHASES if p in out.index] + [p for p in out.index if p not in PHASES]
    out = out.reindex(order)
    out.index.name = "phase"
    return out


def placement_verdict(one_d: dict[str, pd.DataFrame], network: pd.DataFrame,
                      phase: str = "III", tol: float = 0.25, *,
                      state: str | None = None) -> dict[str, object]:
    """Does the 1D model put ``phase`` at the same place on the temperature axis as a grid
    of networks?

    Args:
        one_d: state name → :func:`phase_extent` of the 1D model in that state (e.g.
            "stopped at T", "annealed to T = 0").
        state: the state compared, fixed before looking (pre-registered). When None (legacy)
            the state with the most ``phase`` cells is compared (ties: the first given), a
            pick made after looking, which the evidence says.
        network: :func:`phase_extent` of the networks' grid.
        tol: ``heat_pos`` difference up to which the placements agree (holds); from
            ``2 · tol`` on they disagree (fails); in between, inconclusive.

    Returns:
        ``{"verdict", "evidence", "n", "state", "delta"}``: verdict ``holds`` | ``fails`` |
        ``inconclusive``; evidence a short sentence with the positions; ``n`` the phase's
        cells ("1D a, networks b"); ``delta`` the heat-position difference (NaN when
        undecided).
    """
    counts = {s: int(ext.n_cells.get(phase, 0)) for s, ext in one_d.items()}
    heats = {s: float(ext.heat_pos[phase]) for s, ext in one_d.items() if phase in ext.index}
    if not counts:
        raise ValueError("one_d is empty")
    picked = state is None
    if picked:
        state = max(counts, key=lambda s: (counts[s], -list(counts).index(s)))
    elif state not in one_d:
        raise KeyError(f"placement_verdict: state {state!r} not in {list(one_d)}")
    n_net = int(network.n_cells.get(phase, 0))
    where = ", ".join(f"{s}: {c}" for s, c in counts.items())
    n = f"1D {counts[state]} cells ({state}), networks {n_net} cells"
    if counts[state] == 0 or n_net == 0:
        who = "the 1D model" if counts[state] == 0 else "the networks' grid"
        return {"verdict": "inconclusive", "state": state, "delta": np.nan, "n": n,
                "evidence": f"no phase-{phase} cell in {who} (1D cells per state: {where})"}
    h1, hn = float(one_d[state].heat_pos[phase]), float(network.heat_pos[phase])
    delta = abs(h1 - hn)
    verdict = "holds" if delta <= tol else ("fails" if delta >= 2 * tol else "inconclusive")
    evidence = (f"heat position of {phase} (0 coldest, 1 hottest): networks {hn:.2f}; 1D "
                + ", ".join(f"{s} {h:.2f} ({counts[s]} cells)" for s, h in heats.items())
                + f"; compared: {state} ({'the most III cells, picked after looking' if picked else 'fixed in advance'}), "
                f"difference {delta:.2f} (agree <= {tol:g}, disagree >= {2 * tol:g})")
    return {"verdict": verdict, "evidence": evidence, "n": n, "state": state, "delta": delta}


def annealing_deltas(runs: pd.DataFrame) -> pd.DataFrame:
    """What annealing changed, per (realization, load, temperature) of
    :func:`annealing_experiment`: ``d_train`` and ``d_test`` (annealed − stopped at T; < 0 =
    lower after annealing), ``mc_annealed`` (mc of the annealed runs) and ``mc_stopped``.
    """
    keys = ["realization", "load", "temperature"]
    need = keys + ["annealed", "train_loss", "test_loss", "mc"]
    missing = [c for c in need if c not in runs.columns]
    if missing:
        raise KeyError(f"annealing_deltas: columns {missing} missing")
    wide = runs.pivot_table(index=keys, columns="annealed",
                            values=["train_loss", "test_loss", "mc"])
    if True not in wide["mc"].columns or False not in wide["mc"].columns:
        raise ValueError("annealing_deltas needs rows with annealed True and False")
    return pd.DataFrame({
        "d_train": wide["train_loss"][True] - wide["train_loss"][False],
        "d_test": wide["test_loss"][True] - wide["test_loss"][False],
        "mc_annealed": wide["mc"][True], "mc_stopped": wide["mc"][False],
    }).reset_index()


def annealing_summary(deltas: pd.DataFrame, mc_neg: float = RUGGED_THRESHOLDS["mc_neg"]
                      ) -> pd.DataFrame:
    """Per load (over realizations and temperatures) from :func:`annealing_deltas`:
    ``n`` (landscape × temperature points), mean ``mc_annealed``, ``connected`` ("poorly" when
    that mean is below ``-mc_neg``, else "well"), mean ``d_train`` and ``d_test``,
    ``d_test_sem`` (standard error of d_test over the points, ddof=1), ``frac_worse`` (share
    of points whose test loss rose) and ``ratio`` = mean d_test / mean d_train (1: the test
    loss fell as much as the train loss)."""
    g = deltas.groupby("load")
    out = pd.DataFrame({"n": g.size(), "mc_annealed": g.mc_annealed.mean(),
                        "d_train": g.d_train.mean(), "d_test": g.d_test.mean(),
                        "d_test_sem": g.d_test.sem(ddof=1),
                        "frac_worse": g.d_test.apply(lambda s: float(np.mean(s > 0)))})
    out.insert(2, "connected", np.where(out.mc_annealed < -mc_neg, "poorly", "well"))
    with np.errstate(divide="ignore", invalid="ignore"):
        out["ratio"] = out.d_test / out.d_train
    return out


def annealing_verdicts(summary: pd.DataFrame, z: float | None = None,
                       alpha: float = 0.05) -> dict[str, dict[str, object]]:
    """Two verdicts on :func:`annealing_summary`, each ``{"verdict", "evidence", "n"}``
    (``"hurts"`` also ``"p_value"`` and ``"kind"``):

    * ``"hurts"``: annealing raises the test loss at the poorly connected loads (the paper's
      claim, in 1D). Each such load is a one-sample t test of mean d_test against 0 (n − 1
      df over its landscape × temperature points); holds when every poorly connected load
      has mean d_test > q · sem, fails when every one has mean d_test < −q · sem, with q the
      two-sided ``alpha`` quantile of t (``z``, legacy: a fixed multiple); inconclusive
      otherwise or with no such load. The p-value is the largest over the loads (all must
      agree: an intersection-union test).
    * ``"gap"``: annealing lowers the test loss less, relative to the train loss, at poorly
      connected loads: holds when the largest ``ratio`` among them is below the smallest
      among the well connected loads; fails when the smallest is above the largest;
      inconclusive otherwise or when a kind of load is missing.
    """
    poor, well = summary[summary.connected == "poorly"], summary[summary.connected == "well"]
    fmt = lambda d: ", ".join(f"load {k:g}: {v:+.3g}" for k, v in d.items())  # noqa: E731
    n = f"{len(poor)} poorly and {len(well)} well connected loads, {int(summary.n.sum())} points"
    if poor.empty:
        hurts = {"verdict": "inconclusive", "n": n, "p_value": None, "kind": "test",
                 "evidence": "no poorly connected load (mean annealed mc below -mc_neg)"}
    else:
        df = np.maximum(poor.n.to_numpy(dtype=float) - 1, 1)
        q = np.full(len(poor), float(z)) if z is not None else stats.t.ppf(1 - alpha / 2, df)
        up, down = poor.d_test > q * poor.d_test_sem, poor.d_test < -q * poor.d_test_sem
        with np.errstate(divide="ignore", invalid="ignore"):
            tstat = poor.d_test.to_numpy(dtype=float) / poor.d_test_sem.to_numpy(dtype=float)
        p_each = 2 * stats.t.sf(np.abs(tstat), df)
        p = float(np.max(p_each)) if np.all(np.isfinite(p_each)) else None
        verdict = "holds" if up.all() else ("fails" if down.all() else "inconclusive")
        what = f"{z:g} sem" if z is not None else f"t quantile at {alpha:g} x sem"
        hurts = {"verdict": verdict, "n": n, "p_value": p, "kind": "test",
                 "evidence": f"mean change of the test loss ± {what}: "
                             + "; ".join(f"load {k:g}: {d:+.3g} ± {qq * s:.2g}" for k, d, s, qq in
                                         zip(poor.index, poor.d_test, poor.d_test_sem, q))
                             + (f"; p = {p:.2g} (largest over the loads)" if p is not None else "")}
    if poor.empty or well.empty:
        gap = {"verdict": "inconclusive", "n": n,
               "evidence": "needs both a poorly and a well connected load"}
    else:
        verdict = ("holds" if poor.ratio.max() < well.ratio.min()
                   else "fails" if poor.ratio.min() > well.ratio.max() else "inconclusive")
        gap = {"verdict": verdict, "n": n,
               "evidence": f"test/train ratio: poorly {fmt(poor.ratio)}; well {fmt(well.ratio)}"}
    return {"hurts": hurts, "gap": gap}


# --------------------------------------------------------------------------------------
# Charts of chapter 5 (altair and the book's plotting rules, imported when drawn)
# --------------------------------------------------------------------------------------
#: The 1D metric columns drawn as phase-diagram panels: column -> (the network metric whose
#: colour rule it follows, its title in 1D units).
PANELS_1D: dict[str, tuple[str, str]] = {
    "train_loss": ("train_loss", "excess train loss"),
    "test_loss": ("test_loss", "excess test loss"),
    "mc": ("mc", "mc (loss units)"),
    "cka": ("cka", "similarity exp(−d²/2ℓ²)"),
    "curvature": ("lambda_max", "curvature L″ at the endpoint"),
    "distance": ("l2", "distance |w₁ − w₂|"),
}

#: Colours of the explorers' curves and endpoint states.
CURVE_COLORS = {"L": "#7f7f7f", "L_T": "#ff7f0e"}
STATE_COLORS = {"stopped at T": "#1f77b4", "annealed": "#9467bd"}


def landscape_chart(curves: pd.DataFrame):
    """:func:`landscape_curves` as one panel per load (train solid, test dashed)."""
    df = curves.assign(panel=[f"load {ld:.3g} (A = {a:.3g})"
                              for ld, a in zip(curves.load, curves.amplitude)])
    order = list(dict.fromkeys(df.sort_values("load").panel))
    n = len(order)
    return alt.Chart(df, width=plotting.fit_width(n), height=170).mark_line(
        strokeWidth=1.4).encode(
        x=alt.X("w:Q", title="w"), y=alt.Y("loss:Q", title="L(w)"),
        color=plotting.line_color("landscape", title="realization", sort=["train", "test"]),
        strokeDash=alt.StrokeDash("landscape:N", legend=None, sort=["train", "test"]),
    ).facet(column=alt.Column("panel:N", title=None, sort=order))


def effective_chart(curves: pd.DataFrame, minima: pd.DataFrame, title: str):
    """:func:`effective_curves`: one line per temperature, its minimum as a dot."""
    colour = alt.Color("T:O", title="temperature T", scale=alt.Scale(scheme="plasma"),
                       legend=plotting.categorical_legend("temperature T"))
    lines = alt.Chart(curves, width=plotting.fit_width(1), height=240, title=title).mark_line(
        strokeWidth=1.3).encode(x=alt.X("w:Q"), y=alt.Y("loss:Q", title="L_T(w)"), color=colour)
    return lines + alt.Chart(minima).mark_point(filled=True, size=50).encode(
        x="w:Q", y="loss:Q", color=colour)


def histogram_chart(hist: pd.DataFrame, density: pd.DataFrame, title: str):
    """:func:`endpoint_histogram` as bars, the stationary density as a line, with a legend."""
    names = ["endpoints (histogram)", "exp(−L/T)/Z"]
    colour = alt.Color("what:N", title=None, legend=plotting.categorical_legend(),
                       scale=alt.Scale(domain=names, range=["#9ecae1", "#000000"]))
    bars = alt.Chart(hist.assign(what=names[0]), width=plotting.fit_width(1), height=190,
                     title=title).mark_rect(opacity=0.8).encode(
        x=alt.X("w0:Q", title="w"), x2="w1:Q", y=alt.Y("density:Q"), color=colour)
    return bars + alt.Chart(density.assign(what=names[1])).mark_line().encode(
        x="w:Q", y="density:Q", color=colour)


def trajectory_chart(traj: pd.DataFrame, n_steps: int, anneal_steps: int, title: str):
    """:func:`trajectory_table`: one line per run; the annealing steps shaded."""
    shade = pd.DataFrame({"start": [n_steps], "end": [n_steps + anneal_steps]})
    band = alt.Chart(shade, width=plotting.fit_width(1), height=200, title=title).mark_rect(
        color="#eeeeee").encode(x=alt.X("start:Q", title="step"), x2="end:Q")
    lines = alt.Chart(traj).mark_line(strokeWidth=1).encode(
        x=alt.X("step:Q", title="step"), y=alt.Y("w:Q"),
        color=plotting.line_color("run:N", title="run"))
    return band + lines


def phase_maps(states: dict[str, pd.DataFrame], height: int = 150):
    """One :func:`landscape_utils.core.plotting.phase_map` per state of the 1D model, side by
    side (load to the right, hottest on top), one shared legend below."""
    w = plotting.fit_width(len(states))
    return alt.hconcat(*[plotting.phase_map(_short_loads(df), x="load", y="temperature",
                                            title=name, width=w, height=height)
                         for name, df in states.items()])


def _short_loads(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its loads rounded to 2 significant digits, for axis labels that fit."""
    return df.assign(load=[float(f"{v:.2g}") for v in df["load"]])


def metric_panels(table: pd.DataFrame, columns: int = 2, height: int = 130):
    """The 1D metrics of :data:`PANELS_1D` as phase-diagram panels, each with its own colour
    scale by the rule of the network metric it stands for, titled in 1D units."""
    w = plotting.fit_width(columns)
    panels = []
    for col, (like, label) in PANELS_1D.items():
        if col not in table:
            continue
        df = _short_loads(table[["load", "temperature", col]])
        if plotting.style(like).log:  # a log colour scale cannot show 0: floor it
            df[col] = df[col].clip(lower=1e-6)
        ex, ey = plotting.phase_axes(df, "load", "temperature")
        panels.append(alt.Chart(df, title=label, width=w, height=height).mark_rect().encode(
            x=ex, y=ey, color=plotting.color_scale(like, df[col], field=col, title=label),
            tooltip=[alt.Tooltip("load:Q", format=".3g"),
                     alt.Tooltip("temperature:Q", format=".3g"),
                     alt.Tooltip(f"{col}:Q", title=label, format=".3g")]))
    return alt.concat(*panels, columns=columns).resolve_scale(color="independent")


def annealing_chart(deltas: pd.DataFrame):
    """:func:`annealing_deltas`: Δ test against Δ train loss per landscape and temperature,
    with the diagonal (test fell as much as train) and the zero line (test unchanged)."""
    df = deltas.assign(load=[f"load {v:g}" for v in deltas.load])
    lim = float(min(df.d_train.min(), df.d_test.min(), 0.0)) * 1.05
    guide = pd.DataFrame({"x": [lim, 0.0], "y": [lim, 0.0]})
    points = alt.Chart(df, width=plotting.fit_width(1), height=300,
                       title="annealing to T = 0: change in train and test loss").mark_point(
        filled=True).encode(
        x=alt.X("d_train:Q", title="Δ train loss (annealed − stopped at T)"),
        y=alt.Y("d_test:Q", title="Δ test loss"),
        color=plotting.line_color("load:N", title="load"),
        shape=alt.Shape("temperature:O", title="T", legend=plotting.categorical_legend("T")),
        tooltip=["load:N", "temperature:Q", "realization:Q",
                 alt.Tooltip("d_train:Q", format=".3f"), alt.Tooltip("d_test:Q", format=".3f"),
                 alt.Tooltip("mc_annealed:Q", format=".3f")])
    diag = alt.Chart(guide).mark_line(color="gray").encode(x="x:Q", y="y:Q")
    zero = alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(strokeDash=[3, 3],
                                                             color="gray").encode(y="y:Q")
    return points + diag + zero



def static_explorer(landscape: RuggedLandscape, loads, temperatures, points: pd.DataFrame,
                    w, start: tuple[int, int] = (0, 0)):
    """The explorer of the static book: two sliders pick a cell of the grid (by index), the
    browser redraws L and the effective landscape L_T of that load and temperature from the
    closed form (:func:`vega_loss_expression`) and overlays that cell's endpoints
    (:func:`explorer_points`) at their train loss. No kernel, no network."""
    loads = [float(v) for v in loads]
    temps = [float(v) for v in temperatures]
    li = alt.param(name="li", value=int(start[0]), bind=alt.binding_range(
        min=0, max=len(loads) - 1, step=1, name="load index "))
    ti = alt.param(name="ti", value=int(start[1]), bind=alt.binding_range(
        min=0, max=len(temps) - 1, step=1, name="temperature index "))
    loads_js, temps_js = json.dumps(loads), json.dumps(temps)
    amp = f"{landscape.roughness!r} * pow({loads_js}[li], {-landscape.load_exponent!r})"
    width = plotting.fit_width(1, legend_right=True)
    curve = (alt.Chart(pd.DataFrame({"w": np.asarray(w, dtype=np.float64)}), width=width,
                       height=280)
             .transform_calculate(A=amp, T=f"{temps_js}[ti]")
             .transform_calculate(
                 L=vega_loss_expression(landscape, amplitude="datum.A", temperature="0"),
                 L_T=vega_loss_expression(landscape, amplitude="datum.A", temperature="datum.T"))
             .transform_fold(["L", "L_T"], as_=["curve", "loss"]))
    y = alt.Y("loss:Q", scale=alt.Scale(domain=[-1.5, 4.5], clamp=True), title="loss")
    lines = curve.mark_line(strokeWidth=1.5, clip=True).encode(
        x=alt.X("w:Q", scale=alt.Scale(domain=[float(np.min(w)), float(np.max(w))])), y=y,
        color=alt.Color("curve:N", title="curve", scale=alt.Scale(
            domain=list(CURVE_COLORS), range=list(CURVE_COLORS.values()))))
    dots = alt.Chart(points).transform_filter("datum.li == li && datum.ti == ti").mark_point(
        filled=True, size=45, opacity=0.7, clip=True).encode(
        x="w:Q", y=y, color=alt.Color("state:N", title="endpoints", scale=alt.Scale(
            domain=list(STATE_COLORS), range=list(STATE_COLORS.values()))))
    label = (alt.Chart(pd.DataFrame({"x": [0]}))
             .transform_calculate(text=f"'load ' + format({loads_js}[li], '.3g') + ',  T = ' + "
                                       f"format({temps_js}[ti], '.3g')")
             .mark_text(align="left", baseline="top", fontSize=13, x=5, y=5)
             .encode(text="text:N"))
    return alt.layer(lines, dots, label).add_params(li, ti).resolve_scale(color="independent")


def live_chart(landscape: RuggedLandscape, load: float, temperature: float, anneal: bool,
               *, n_runs: int = 64, n_steps: int = 1500, anneal_steps: int = 1500,
               lr: float = 0.01, init_std: float = 2.0, seed: int = 0, w=None):
    """The JupyterLab explorer's view: a fresh simulation of ``n_runs`` runs at (load,
    temperature), annealed or not, drawn on L and L_T (for
    :class:`landscape_utils.book.widgets.LiveChart`)."""
    w = np.linspace(-3.0, 3.0, 241) if w is None else np.asarray(w, dtype=np.float64)
    run = simulate(landscape, load, temperature, n_runs, n_steps=n_steps,
                   anneal_steps=anneal_steps if anneal else 0, lr=lr, init_std=init_std,
                   seed=seed)
    state = "annealed" if anneal else "stopped at T"
    cur = pd.concat([pd.DataFrame({"w": w, "loss": landscape.loss(w, load, t), "curve": c})
                     for c, t in (("L", 0.0), ("L_T", temperature))])
    dot = pd.DataFrame({"w": run.endpoints, "loss": landscape.loss(run.endpoints, load),
                        "state": state})
    title = (f"load {load:.3g} (A = {float(landscape.amplitude(load)):.3g}), "
             f"T = {temperature:.3g}" + (", annealed" if anneal else ""))
    y = alt.Y("loss:Q", scale=alt.Scale(domain=[-1.5, 4.5], clamp=True))
    lines = alt.Chart(cur, width=plotting.fit_width(1, legend_right=True), height=260,
                      title=title).mark_line(clip=True).encode(
        x="w:Q", y=y, color=alt.Color("curve:N", title="curve", scale=alt.Scale(
            domain=list(CURVE_COLORS), range=list(CURVE_COLORS.values()))))
    dots = alt.Chart(dot).mark_point(filled=True, size=45, clip=True).encode(
        x="w:Q", y=y, color=alt.Color("state:N", title="endpoints", scale=alt.Scale(
            domain=list(STATE_COLORS), range=list(STATE_COLORS.values()))))
    return (lines + dots).resolve_scale(color="independent")


def phase_ii_verdict(table: pd.DataFrame) -> dict[str, object]:
    """Does annealing remove phase II (hot, unconverged endpoints) from the 1D diagram?

    ``table``: :func:`phase_diagram` with ``anneal_steps > 0`` (rows with ``annealed``
    False and True). holds: some cells are II when stopped at T and none once annealed;
    fails: some annealed cells are still II; inconclusive: no II cell to begin with.
    """
    if "annealed" not in table or set(table.annealed) != {False, True}:
        raise ValueError("phase_ii_verdict needs the stopped and the annealed state")
    before = int((table[~table.annealed].phase == "II").sum())
    after = int((table[table.annealed].phase == "II").sum())
    n = f"{int((~table.annealed).sum())} cells per state"
    evidence = f"phase-II cells: {before} stopped at T, {after} annealed"
    verdict = "inconclusive" if before == 0 else ("holds" if after == 0 else "fails")
    return {"verdict": verdict, "evidence": evidence, "n": n}


def placement_table(extents: dict[str, pd.DataFrame], phase: str = "III") -> pd.DataFrame:
    """Where ``phase`` lies in several grids, one row per grid (index: the keys of
    ``extents``, each a :func:`phase_extent`): ``n_cells`` (0 when absent), ``load_pos`` and
    ``heat_pos`` (NaN when absent)."""
    rows = {}
    for name, ext in extents.items():
        if phase in ext.index:
            rows[name] = {"n_cells": int(ext.n_cells[phase]),
                          "load_pos": float(ext.load_pos[phase]),
                          "heat_pos": float(ext.heat_pos[phase])}
        else:
            rows[name] = {"n_cells": 0, "load_pos": np.nan, "heat_pos": np.nan}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "grid"
    return out
