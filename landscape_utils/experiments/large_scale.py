"""Chapter 6: the wedge picture of Fort & Jastrzebski (2019), measured on stored runs.

The chapter picks two cells of the training grid (a poorly and a well connected one) and
runs seven experiments on their solutions. Each experiment is a :class:`~landscape_utils.runs.tasks.Task`
whose function (``*_task`` below) loads its runs from the store by id, so any executor
(serial, process, Ray) can run it and the store caches its record under the full key:

==============  ==========================================================================
``alignment``   linear barrier between two seeds before and after weight matching
``simplex``     a trained low-loss simplicial complex through three solutions, its loss on
                a barycentric grid (flat and trained), its bent edges, and ensembles of
                independent seeds against points sampled from it
``tunnel``      a low-loss point on the hyperplane half-way between two seeds
``wedge``       the radial cut θ(1+s) and cuts along random directions from centres r·θ
``reach``       escape distances from one solution, along isotropic and filter-normalized
                directions (the knob runs: load, temperature, lr, weight decay)
``subspace``    training in random affine subspaces θ₀ + P z of several dimensions
``surface``     the loss on the plane through a solution, its seed partner and one
                filter-normalized direction
==============  ==========================================================================

The rest of the module turns the records into the chapter's tables and its findings
(``What this grid shows``); small chart builders for the two maps close it.
"""
from __future__ import annotations

import functools
import itertools
import math
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import altair as alt
import numpy as np
import pandas as pd
import torch
from torch import nn

from ..core.data import Dataset
from ..core.params import dot, matching_parameters, norm, params_of
from ..core.plotting import categorical_legend, color_scale
from ..core.settings import FromParams
from ..core.train import RunConfig
from ..metrics.align import aligned_barrier
from ..metrics.directions import (escape_table, filter_normalized_direction, loss_along_direction, loss_surface_2d,
                                  radial_profile, subspace_sweep, success_rate, wedge_profiles)
from ..metrics.simplex import (SimplicialComplex, complex_from_models, edge_profiles, ensemble_metrics, evaluate_grid,
                               fit_complex, fit_tunnel, models_at)
from ..runs.runner import expand_grid
from ..runs.store import Store, algorithm_version, load_model, run_id
from ..runs.tables import read_grid, read_table, table_path
from ..runs.tasks import Task, run_cost
from .findings import Finding, difference_verdict
from .global_metrics import example_cells, usable_runs
from .taxonomy import cell_table

LABELS = ("poorly connected", "well connected")  # the two cells, in display order
KINDS = ("alignment", "simplex", "tunnel", "wedge", "reach", "subspace", "surface")
# Store metric of each kind, with the version of its algorithm (bump one to recompute its records).
METRICS = {kind: algorithm_version(f"large_scale_{kind}", 1) for kind in KINDS}


# --------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class WedgeSettings(FromParams):
    """Every setting of the chapter's experiments; each task's key holds its own share."""

    seed: int = 0                     # directions, projections, Dirichlet draws and data order of every fit
    num_points: int = 11              # points on every straight path, endpoints included
    align_sweeps: int = 100           # cap on the coordinate-descent sweeps of weight matching
    simplex_epochs: int = 30          # epochs of connector training
    simplex_lr: float = 0.1           # SGD lr of the connectors (and of the tunnel)
    simplex_batch_size: int = 128     # one sub-simplex and one Dirichlet draw per minibatch
    simplex_weight_decay: float = 5e-4  # L2 penalty on the sampled point
    volume_weight: float = 1e-3       # weight of the log-volume bonus that keeps sub-simplices open
    grid_resolution: int = 8          # barycentric grid: steps along each edge of the triangle
    tunnel_epochs: int = 5            # epochs of tunnel training
    ensemble_size: int = 3            # points sampled from the simplex for its ensemble
    cka_batches: int = 5              # mixup batches of 128 training inputs for the ensemble CKA
    radii: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5)  # centres r·θ of the random cuts
    num_directions: int = 3           # random unit directions per centre
    max_distance: float = 1.5         # cuts reach out to this multiple of the solution norm
    num_distances: int = 16           # points per cut, the centre included
    err_rise: float = 5.0             # escape: train error this many points above the centre
    loss_rise: float = 0.5            # escape: train loss this many nats above the centre
    subspace_dims: tuple[int, ...] = (16, 64, 256, 1024)  # dimensions d of the random subspaces
    subspace_seeds: int = 2           # random projections per dimension
    subspace_epochs: int = 10         # Adam epochs on z
    subspace_lr: float = 0.05         # Adam lr on z
    subspace_target_frac: float = 0.5  # success: train accuracy >= this fraction of the full-space run's
    surface_resolution: int = 11      # points per axis of the 2D loss surface
    surface_margin: float = 0.25      # α runs from −margin to 1 + margin (0: the solution, 1: its partner)
    surface_span: float = 1.0         # β runs from −span to +span along the filter-normalized direction

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting."""
        for name in ("num_points", "align_sweeps", "simplex_batch_size", "grid_resolution", "ensemble_size",
                     "cka_batches", "num_directions", "num_distances", "subspace_seeds", "surface_resolution"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        for name in ("num_points", "num_distances", "surface_resolution"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be at least 2, got {getattr(self, name)!r}")
        for name in ("simplex_lr", "max_distance", "subspace_lr", "err_rise", "loss_rise", "surface_span"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        if not 0 < self.subspace_target_frac <= 1:
            raise ValueError(f"subspace_target_frac must be in (0, 1], got {self.subspace_target_frac!r}")
        if not self.radii or any(r <= 0 for r in self.radii):
            raise ValueError(f"radii must be a non-empty list of numbers > 0, got {list(self.radii)!r}")
        if not self.subspace_dims or any(int(d) < 1 for d in self.subspace_dims):
            raise ValueError(f"subspace_dims must be a non-empty list of integers >= 1, got {list(self.subspace_dims)!r}")

    def distances(self) -> np.ndarray:
        """The distances of a cut as fractions of the solution norm, shape (num_distances,)."""
        return np.linspace(0.0, self.max_distance, self.num_distances)


# --------------------------------------------------------------------------- runs and data
@functools.lru_cache(maxsize=8)
def _dataset(data_cfg: RunConfig, device: str) -> Dataset:
    return data_cfg.load_data(device=device)


def run_data(cfg: RunConfig, device: str | torch.device) -> Dataset:
    """The training and test data of a run (:meth:`RunConfig.load_data`), cached in this
    process per dataset knobs and device (runs of one cell share one copy)."""
    same_data = RunConfig(dataset=cfg.dataset, data_fraction=cfg.data_fraction, label_noise=cfg.label_noise,
                          data_seed=cfg.data_seed)
    return _dataset(same_data, str(device))


def run_model(workdir: str | Path, rid: str, device: str | torch.device, which: str = "final") -> nn.Module:
    """A stored run's model on ``device`` in eval mode (``which``: "final" or "init")."""
    cfg = Store(workdir).config(rid)
    return load_model(workdir, rid, which=which, device=device, data=run_data(cfg, device)).eval()


def _frame_dict(df: pd.DataFrame) -> dict[str, list]:
    """A DataFrame as a JSON-ready {column: list} dict (numpy scalars made plain)."""
    return {c: df[c].tolist() for c in df.columns}


# --------------------------------------------------------------------------- the two cells
@dataclass(frozen=True)
class Study:
    """What chapter 1 (and chapter 3, when it ran) left for chapter 6."""

    grid: pd.DataFrame                  # one row per run (grid.csv)
    load_axis: str
    temperature_axis: str
    runs_by_cell: dict[tuple, list[str]]  # (load, temperature) -> usable run ids, by seed
    train_loss: pd.Series               # mean train loss per cell, index (load, temperature)
    cells: dict[str, tuple]             # LABELS -> (load, temperature)
    source: str                         # how the cells were chosen


def choose_cells(train_loss: pd.Series, global_cells: pd.DataFrame | None = None,
                 low_loss_quantile: float = 0.5) -> tuple[dict[str, tuple], str]:
    """The poorly and the well connected cell.

    Args:
        train_loss: mean train loss per cell, index (load value, temperature value).
        global_cells: chapter 3's per-cell table indexed the same way, with ``mc``; None
            when chapter 3 did not run.
        low_loss_quantile: the well connected cell is picked among cells this low in loss.

    Returns:
        ``({label: cell}, source)``. With mc: :func:`global_metrics.example_cells`.
        Without (or when it gives one cell): the smallest load value at its highest train
        loss, and the largest load value at its lowest.
    """
    poor = well = None
    if global_cells is not None and "mc" in global_cells:
        poor, well = example_cells(global_cells, train_loss.reindex(global_cells.index), low_loss_quantile)
        source = "chapter 3's mc"
    if poor is None or well is None or poor == well:
        loads = sorted(train_loss.index.get_level_values(0).unique())
        poor = (loads[0], train_loss.xs(loads[0], level=0).idxmax())
        well = (loads[-1], train_loss.xs(loads[-1], level=0).idxmin())
        source = "smallest and largest load (chapter 3's table is absent or has one cell)"
    return {LABELS[0]: tuple(poor), LABELS[1]: tuple(well)}, source


def load_study(workdir: str | Path, low_loss_quantile: float = 0.5) -> Study:
    """Chapter 1's grid (:func:`tables.read_grid`) and, when chapter 3 ran, its ``global_cells``."""
    g = read_grid(workdir)
    grid, load, temp = g.runs, g.load.name, g.temperature.name
    runs_by_cell, _ = usable_runs(grid, load, temp)
    train_loss = cell_table(grid, load, temp, metrics=("train_loss",)).set_index([load, temp])["train_loss"]
    has_gc = table_path(workdir, "global_cells").exists()
    gc = read_table(workdir, "global_cells").set_index([load, temp]) if has_gc else None
    cells, source = choose_cells(train_loss, gc, low_loss_quantile)
    return Study(grid, load, temp, runs_by_cell, train_loss, cells, source)


def _ok_run(store: Store, cfg: RunConfig) -> str | None:
    rid = run_id(cfg)
    return rid if store.is_done(rid, warn=False) and store.metrics(rid).get("status") == "ok" else None


def extra_seed_configs(workdir: str | Path, study: Study, need: int) -> list[RunConfig]:
    """Configs of seeds 0..need−1 of every chosen cell that has fewer than ``need`` usable runs."""
    store, out = Store(workdir), []
    for cell in study.cells.values():
        ids = study.runs_by_cell.get(cell, [])
        if ids and len(ids) < need:
            base = store.config(ids[0]).to_dict()
            base.pop("seed")
            out += expand_grid(base, {}, seeds=range(need))
    return list(dict.fromkeys(out))


def cell_members(workdir: str | Path, study: Study, need: int) -> dict[str, list[str]]:
    """Up to ``need`` finished, not diverged run ids per chosen cell, by seed (extra seeds included)."""
    store, out = Store(workdir), {}
    for label, cell in study.cells.items():
        ids = list(study.runs_by_cell.get(cell, []))
        if ids and len(ids) < need:
            base = store.config(ids[0])
            extra = [_ok_run(store, replace(base, seed=s)) for s in range(need)]
            ids = list(dict.fromkeys(ids + [r for r in extra if r]))
        out[label] = ids[:need]
    return out


def config_with(cfg: RunConfig, knob: str, value: Any) -> RunConfig:
    """``cfg`` with one field changed, cast to the field's type (0 and 0.0 name one run), validated."""
    names = {f.name: f for f in fields(RunConfig)}
    if knob not in names:
        raise ValueError(f"unknown knob {knob!r}; knobs are RunConfig fields: {', '.join(names)}")
    kind = type(getattr(cfg, knob))
    new = replace(cfg, **{knob: kind(value)})
    new.validate()
    return new


def knob_configs(workdir: str | Path, study: Study, base_rid: str,
                 extra: Mapping[str, Sequence]) -> list[tuple[str, float, RunConfig]]:
    """``(knob, value, config)`` of the extra one-seed runs around ``base_rid`` (grid axes skipped)."""
    base = Store(workdir).config(base_rid)
    return [(knob, float(v), config_with(base, knob, v)) for knob, values in extra.items()
            if knob not in (study.load_axis, study.temperature_axis) for v in values]


def knob_runs(workdir: str | Path, study: Study, base_rid: str,
              extra: Mapping[str, Sequence]) -> list[tuple[str, float, str]]:
    """``(knob, value, run id)`` of every run whose reach the chapter compares.

    Seed-0 runs along the load axis (at the base cell's temperature) and along the
    temperature axis (at its load), then for each extra knob the base run at its own
    value and the finished extra runs (:func:`knob_configs`).
    """
    store = Store(workdir)
    cfg = store.config(base_rid)
    lv, tv = getattr(cfg, study.load_axis), getattr(cfg, study.temperature_axis)
    out = []
    for axis, fixed in ((study.load_axis, (study.temperature_axis, tv)), (study.temperature_axis, (study.load_axis, lv))):
        for (a, b), ids in sorted(study.runs_by_cell.items()):
            cell = {study.load_axis: a, study.temperature_axis: b}
            if ids and np.isclose(float(cell[fixed[0]]), float(fixed[1])):
                out.append((axis, float(cell[axis]), ids[0]))
    by_knob: dict[str, list] = {}
    for knob, value, c in knob_configs(workdir, study, base_rid, extra):
        by_knob.setdefault(knob, [])
        rid = _ok_run(store, c)
        if rid:
            by_knob[knob].append((knob, value, rid))
    for knob, rows in by_knob.items():
        own = (knob, float(getattr(cfg, knob)), base_rid)
        out += [own, *[r for r in rows if r[2] != base_rid]]  # an extra value equal to the base's is the base run
    return out


def cells_table(study: Study, members: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """The two chosen cells: cell, the two axis values, mean train loss and the seeds used
    (how they were chosen is ``study.source``)."""
    return pd.DataFrame([{"cell": label, study.load_axis: c[0], study.temperature_axis: c[1],
                          "train loss": float(study.train_loss[c]), "seeds": len(members.get(label, []))}
                         for label, c in study.cells.items()])


def run_metric(workdir: str | Path, study: Study, rid: str, name: str) -> float:
    """A final metric of a run, from grid.csv or (for an extra run) from the store."""
    row = study.grid[study.grid.run_id == rid]
    return float(row[name].iloc[0]) if len(row) else float(Store(workdir).metrics(rid)[name])


# --------------------------------------------------------------------------- tasks
def alignment_task(*, workdir: str, device: torch.device, run_a: str, run_b: str, num_points: int,
                   max_sweeps: int, seed: int) -> list[dict[str, Any]]:
    """[:meth:`align.AlignedBarrier.record`] of the straight line between two stored runs,
    before and after weight matching (train loss and error at ``num_points`` points)."""
    a, b = run_model(workdir, run_a, device), run_model(workdir, run_b, device)
    d = run_data(Store(workdir).config(run_a), device)
    rec = aligned_barrier(a, b, d.x_train, d.y_train, num_points=num_points, max_sweeps=max_sweeps, seed=seed,
                          device=device).record()
    return [rec]


def simplex_task(*, workdir: str, device: torch.device, runs: list[str], epochs: int, lr: float, batch_size: int,
                 weight_decay: float, volume_weight: float, resolution: int, num_points: int, ensemble_size: int,
                 cka_batches: int, seed: int) -> list[dict[str, Any]]:
    """[record] of a complex through the solutions ``runs`` (3 of them for the triangle).

    The record holds ``flat`` and ``trained`` (:func:`simplex.evaluate_grid` before and
    after :func:`simplex.fit_complex`, one row per barycentric grid point), ``edges``
    (:func:`simplex.edge_profiles`), ``history``, ``ensemble_independent`` and
    ``ensemble_simplex`` (:func:`simplex.ensemble_metrics` of the seeds and of
    ``ensemble_size`` points sampled from the complex) and ``fit_seconds``.
    """
    ms = [run_model(workdir, r, device) for r in runs]
    d = run_data(Store(workdir).config(runs[0]), device)
    cx = complex_from_models(ms, device=device)
    flat = evaluate_grid(ms[0], cx, resolution, d.x_train, d.y_train, d.x_test, d.y_test, device=device)
    t0 = time.perf_counter()
    fit_complex(ms[0], cx, d.x_train, d.y_train, num_epochs=epochs, lr=lr, batch_size=batch_size,
                weight_decay=weight_decay, volume_weight=volume_weight, seed=seed, device=device)
    seconds = time.perf_counter() - t0
    trained = evaluate_grid(ms[0], cx, resolution, d.x_train, d.y_train, d.x_test, d.y_test, device=device)
    edges = edge_profiles(ms[0], cx, num_points, d.x_train, d.y_train, device=device)
    cka_kw = {"num_batches": cka_batches, "batch_size": 128, "seed": seed}
    independent = ensemble_metrics(ms, d.x_test, d.y_test, x_cka=d.x_train, cka_kwargs=cka_kw)
    points = cx.sample_points(ensemble_size, torch.Generator().manual_seed(seed))
    sampled = ensemble_metrics(models_at(ms[0], points, d.x_train, device=device), d.x_test, d.y_test,
                               x_cka=d.x_train, cka_kwargs=cka_kw)
    return [{"flat": _frame_dict(flat), "trained": _frame_dict(trained), "edges": _frame_dict(edges),
             "history": cx.history, "ensemble_independent": independent, "ensemble_simplex": sampled,
             "fit_seconds": seconds}]


def tunnel_task(*, workdir: str, device: torch.device, run_a: str, run_b: str, epochs: int, lr: float,
                batch_size: int, weight_decay: float, num_points: int, seed: int) -> list[dict[str, Any]]:
    """[record] of :func:`simplex.fit_tunnel` between two runs: the train loss at the midpoint
    and at the tunnel point, the worst point of the straight line and of w₁ → θ → w₂, and
    how far θ moved from the midpoint."""
    a, b = run_model(workdir, run_a, device), run_model(workdir, run_b, device)
    d = run_data(Store(workdir).config(run_a), device)
    theta, history = fit_tunnel(a, b, d.x_train, d.y_train, num_epochs=epochs, lr=lr, batch_size=batch_size,
                                weight_decay=weight_decay, seed=seed, device=device)
    ends = [params_of(a), params_of(b)]
    path = edge_profiles(a, SimplicialComplex.barycentric_subdivision(ends, {(0, 1): theta}), num_points,
                         d.x_train, d.y_train, device=device)
    line = edge_profiles(a, SimplicialComplex.barycentric_subdivision(ends), num_points, d.x_train, d.y_train,
                         device=device)
    mid = num_points // 2
    return [{"midpoint_loss": float(line.train_loss.iloc[mid]), "tunnel_loss": float(path.train_loss.iloc[mid]),
             "line_worst": float(line.train_loss.max()), "tunnel_path_worst": float(path.train_loss.max()),
             "moved": history[-1]["distance_from_midpoint"] if history else 0.0}]


def wedge_task(*, workdir: str, device: torch.device, run: str, radii: list[float], num_directions: int,
               max_distance: float, num_distances: int, seed: int) -> list[dict[str, Any]]:
    """[record] of the cuts around one solution θ (norm ‖θ‖ in ``norm``).

    ``profiles``: :func:`directions.wedge_profiles` at centres r·θ for r in ``radii``, out to
    ``max_distance``·‖θ‖ in ``num_distances`` steps; ``radial``: :func:`directions.radial_profile`
    for s in [−1, 1] (21 points).
    """
    m = run_model(workdir, run, device)
    d = run_data(Store(workdir).config(run), device)
    base = norm(params_of(m))
    distances = np.linspace(0.0, max_distance, num_distances) * base
    prof = wedge_profiles(m, radii, distances, d.x_train, d.y_train, num_directions=num_directions, seed=seed,
                          device=device)
    radial = radial_profile(m, np.linspace(-1.0, 1.0, 21), d.x_train, d.y_train, device=device)
    return [{"profiles": _frame_dict(prof), "radial": _frame_dict(radial), "norm": base}]


def reach_task(*, workdir: str, device: torch.device, run: str, num_directions: int, max_distance: float,
               num_distances: int, err_rise: float, seed: int) -> list[dict[str, Any]]:
    """[record] of how far one can move from a solution before the train error rises ``err_rise`` points.

    ``escape_isotropic``: mean escape distance along ``num_directions`` isotropic unit
    directions (in parameter units, cuts out to ``max_distance``·‖θ‖); ``escape_filter``:
    the same along filter-normalized directions (in units of the filters' own norms, cuts
    out to ``max_distance``). Also ``norm`` (‖θ‖), ``train_loss``, ``train_err`` at θ.
    """
    m = run_model(workdir, run, device)
    d = run_data(Store(workdir).config(run), device)
    base = norm(params_of(m))
    frac = np.linspace(0.0, max_distance, num_distances)
    iso = wedge_profiles(m, [1.0], frac * base, d.x_train, d.y_train, num_directions=num_directions, seed=seed,
                         device=device)
    gen = torch.Generator().manual_seed(seed)
    fn = pd.concat([loss_along_direction(m, filter_normalized_direction(m, gen), frac, d.x_train, d.y_train,
                                         device=device).rename(columns={"alpha": "distance"})
                    .assign(radius=1.0, direction=j) for j in range(num_directions)], ignore_index=True)
    out = {"norm": base, "train_loss": float(iso.train_loss.iloc[0]), "train_err": float(iso.train_err.iloc[0])}
    for name, p in (("isotropic", iso), ("filter", fn)):
        e = escape_table(p, float(p.train_err.iloc[0]) + err_rise, metric="train_err")
        out[f"escape_{name}"] = float(e.escape.mean())
    return [out]


def subspace_task(*, workdir: str, device: torch.device, run: str, dims: list[int], seeds: list[int],
                  epochs: int, lr: float, target: float) -> list[dict[str, Any]]:
    """[{"sweep": ...}]: :func:`directions.subspace_sweep` from the run's initialization, one
    row per (dim, seed), success when the train accuracy reaches ``target``."""
    d = run_data(Store(workdir).config(run), device)
    sweep = subspace_sweep(run_model(workdir, run, device, "init"), dims, d.x_train, d.y_train, d.x_test,
                           d.y_test, seeds=seeds, target_acc=target, num_epochs=epochs, lr=lr, batch_size=128,
                           device=device)
    return [{"sweep": _frame_dict(sweep)}]


def surface_plane(model_a: nn.Module, model_b: nn.Module, seed: int = 0) -> tuple[dict, dict]:
    """The two directions of the plane through solution a, its partner b and one random direction.

    Returns ``(d1, d2)`` as parameter dicts: d1 = θ_b − θ_a (so α = 1 is the partner), d2
    a filter-normalized direction at θ_a (:func:`directions.filter_normalized_direction`,
    drawn from ``seed``) with its component along d1 removed, so the axes are orthogonal.
    """
    pa, pb = matching_parameters(model_a, model_b)
    d1 = {k: (pb[k] - v).detach() for k, v in pa.items()}
    raw = filter_normalized_direction(model_a, torch.Generator().manual_seed(int(seed)))
    along = dot(raw, d1) / dot(d1, d1)
    d2 = {k: raw[k] - along * d1[k] for k in d1}
    return d1, d2


def surface_task(*, workdir: str, device: torch.device, run: str, partner: str, resolution: int, margin: float,
                 span: float, seed: int) -> list[dict[str, Any]]:
    """[record] of the train loss on the plane θ_a + α d1 + β d2 of :func:`surface_plane`.

    α in [−margin, 1 + margin] and β in [−span, span], ``resolution`` points each;
    ``surface`` has columns alpha, beta, train_loss, train_err (resolution² rows, BN
    recalibrated at every point). Also ``distance`` (‖d1‖) and ``d2_norm``.
    """
    a, b = run_model(workdir, run, device), run_model(workdir, partner, device)
    d = run_data(Store(workdir).config(run), device)
    d1, d2 = surface_plane(a, b, seed)
    alphas = np.linspace(-margin, 1.0 + margin, resolution)
    betas = np.linspace(-span, span, resolution)
    surf = loss_surface_2d(a, d1, d2, alphas, betas, d.x_train, d.y_train, device=device)
    return [{"surface": _frame_dict(surf), "distance": norm(d1), "d2_norm": norm(d2)}]


@dataclass(frozen=True)
class Planned:
    """One experiment: its kind, what the chapter files it under, and the task."""

    kind: str                                         # one of KINDS
    meta: dict[str, Any] = field(default_factory=dict)  # cell label, pair, knob runs ...
    task: Task | None = None


def _planned(kind: str, fn, args: dict[str, Any], meta: dict[str, Any], label: str) -> Planned:
    return Planned(kind, meta, Task(METRICS[kind], (args,), fn, args, label=label))


def plan_tasks(members: Mapping[str, Sequence[str]], reach_runs: Sequence[tuple[str, float, str]],
               subspace_run: str | None, target_acc: float, s: WedgeSettings) -> list[Planned]:
    """Every experiment of the chapter as a task (key = its arguments: run ids and settings).

    Args:
        members: cell label -> run ids (by seed). Pairs are aligned, the first two tunnelled
            and mapped (surface), the first ``num_solutions`` (>= 3) joined by a simplex,
            the first one cut (wedge).
        reach_runs: ``(knob, value, run id)``; one reach task per distinct run.
        subspace_run: the run whose initialization the subspaces start from (None: skip).
        target_acc: the subspace runs' success threshold (train accuracy).
    """
    out: list[Planned] = []
    for label, ids in members.items():
        for i, j in itertools.combinations(range(len(ids)), 2):
            args = {"run_a": ids[i], "run_b": ids[j], "num_points": s.num_points, "max_sweeps": s.align_sweeps,
                    "seed": s.seed}
            out.append(_planned("alignment", alignment_task, args, {"cell": label, "pair": f"{i}-{j}"},
                                f"align {label} {i}-{j}"))
        if len(ids) >= 3:
            args = {"runs": list(ids), "epochs": s.simplex_epochs, "lr": s.simplex_lr,
                    "batch_size": s.simplex_batch_size, "weight_decay": s.simplex_weight_decay,
                    "volume_weight": s.volume_weight, "resolution": s.grid_resolution, "num_points": s.num_points,
                    "ensemble_size": s.ensemble_size, "cka_batches": s.cka_batches, "seed": s.seed}
            out.append(_planned("simplex", simplex_task, args, {"cell": label}, f"simplex {label}"))
        if len(ids) >= 2:
            args = {"run_a": ids[0], "run_b": ids[1], "epochs": s.tunnel_epochs, "lr": s.simplex_lr,
                    "batch_size": s.simplex_batch_size, "weight_decay": s.simplex_weight_decay,
                    "num_points": s.num_points, "seed": s.seed}
            out.append(_planned("tunnel", tunnel_task, args, {"cell": label}, f"tunnel {label}"))
            args = {"run": ids[0], "partner": ids[1], "resolution": s.surface_resolution,
                    "margin": s.surface_margin, "span": s.surface_span, "seed": s.seed}
            out.append(_planned("surface", surface_task, args, {"cell": label}, f"surface {label}"))
        if ids:
            args = {"run": ids[0], "radii": [float(r) for r in s.radii], "num_directions": s.num_directions,
                    "max_distance": s.max_distance, "num_distances": s.num_distances, "seed": s.seed}
            out.append(_planned("wedge", wedge_task, args, {"cell": label}, f"wedge {label}"))
    uses: dict[str, list[tuple[str, float]]] = {}
    for knob, value, rid in reach_runs:
        uses.setdefault(rid, []).append((knob, float(value)))
    for rid, used in uses.items():
        args = {"run": rid, "num_directions": s.num_directions, "max_distance": s.max_distance,
                "num_distances": s.num_distances, "err_rise": s.err_rise, "seed": s.seed}
        out.append(_planned("reach", reach_task, args, {"run_id": rid, "uses": used}, f"reach {rid[:8]}"))
    if subspace_run is not None:
        args = {"run": subspace_run, "dims": [int(d) for d in s.subspace_dims],
                "seeds": [s.seed + k for k in range(s.subspace_seeds)], "epochs": s.subspace_epochs,
                "lr": s.subspace_lr, "target": float(target_acc)}
        out.append(_planned("subspace", subspace_task, args, {"run_id": subspace_run}, "subspaces"))
    return out


#: Relative cost of each kind of experiment on one model: seconds of each task on the default's
#: width-64 cell in a fresh build (benchmarks/RESULTS.md §10). Only the order matters.
KIND_COST = {"wedge": 126.0, "simplex": 126.0, "surface": 91.0, "subspace": 38.0, "reach": 37.0,
             "tunnel": 24.0, "alignment": 20.0}


def with_costs(planned: Sequence[Planned], workdir: str | Path) -> list[Planned]:
    """``planned`` in the same order, each task given its estimated cost (``Task.cost``:
    :func:`~landscape_utils.runs.tasks.run_tasks` submits the costliest first, so that a pool
    ends on short tasks): :data:`KIND_COST` times the size of the task's first run (its
    parameters times its training samples, from the store)."""
    store = Store(workdir)

    def cost(p: Planned) -> float:
        args = p.task.args
        return KIND_COST.get(p.kind, 1.0) * run_cost(store, args.get("run_a") or args.get("run") or args["runs"][0])

    return [replace(p, task=replace(p.task, cost=cost(p))) for p in planned]


def collect(planned: Sequence[Planned], results: Sequence[Sequence[dict[str, Any]]]
            ) -> dict[str, list[tuple[dict[str, Any], dict[str, Any]]]]:
    """``run_tasks``' results filed by kind: {kind: [(meta, record), ...]} (every kind present)."""
    out: dict[str, list] = {k: [] for k in KINDS}
    for p, recs in zip(planned, results):
        out[p.kind].append((p.meta, recs[0]))
    return out


# --------------------------------------------------------------------------- tables
ALIGNMENT_COLUMNS = ("linear_before_mc", "linear_after_mc", "linear_before_loss_barrier",
                     "linear_after_loss_barrier", "linear_before_worst_loss", "linear_after_worst_loss",
                     "l2_before", "l2_after", "sweeps")


#: Short column headings for the chapter's displayed tables (the tables keep the long names).
SHORT_NAMES = {"linear_before_mc": "mc before", "linear_after_mc": "mc after",
               "linear_before_loss_barrier": "barrier before", "linear_after_loss_barrier": "barrier after",
               "l2_before": "L2 before", "l2_after": "L2 after", "member_acc": "member acc",
               "ensemble_acc": "ensemble acc", "ensemble_gain": "gain", "midpoint_loss": "midpoint",
               "tunnel_loss": "tunnel point", "line_worst": "line worst", "tunnel_path_worst": "tunnel path worst",
               "escape_isotropic": "escape iso", "escape_filter": "escape filter", "train_loss": "train loss",
               "train_err": "train err %", "success_rate": "success rate", "train_acc": "train acc",
               "train_acc_std": "acc sd"}


def alignment_table(items: Sequence[tuple[dict, dict]]) -> pd.DataFrame:
    """One row per aligned pair: cell, pair and :data:`ALIGNMENT_COLUMNS`."""
    rows = [{"cell": m["cell"], "pair": m["pair"], **{c: rec[c] for c in ALIGNMENT_COLUMNS}} for m, rec in items]
    return pd.DataFrame(rows, columns=["cell", "pair", *ALIGNMENT_COLUMNS])


def alignment_profiles(items: Sequence[tuple[dict, dict]]) -> pd.DataFrame:
    """Long form of the straight-line profiles: cell, pair, path ("linear" before weight
    matching, "aligned" after: the path kinds of :data:`plotting.PATH_COLORS`), t,
    train_loss, train_err."""
    frames = [pd.DataFrame(rec[f"linear_{when}_profile"]).assign(cell=m["cell"], pair=m["pair"], path=kind)
              for m, rec in items for when, kind in (("before", "linear"), ("after", "aligned"))]
    cols = ["cell", "pair", "path", "t", "train_loss", "train_err"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def simplex_grids(items: Sequence[tuple[dict, dict]]) -> pd.DataFrame:
    """The barycentric grids of every complex, long form: cell, stage (flat | trained) and
    :func:`simplex.evaluate_grid`'s columns."""
    frames = [pd.DataFrame(rec[stage]).assign(cell=m["cell"], stage=stage)
              for m, rec in items for stage in ("flat", "trained")]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def simplex_summary(items: Sequence[tuple[dict, dict]], alignment: pd.DataFrame) -> pd.DataFrame:
    """One row per complex: the mean train loss at its corners (the solutions), the worst
    train loss of the straight lines between them before and after weight matching (and
    their spread over pairs), of the flat triangle, of the complex's bent edges and of the
    trained complex, and the fit time."""
    rows = []
    for m, rec in items:
        trained, flat, edges = pd.DataFrame(rec["trained"]), pd.DataFrame(rec["flat"]), pd.DataFrame(rec["edges"])
        lam = trained[[c for c in trained.columns if c.startswith("l") and c[1:].isdigit()]]
        corners = trained[(lam == 1.0).any(axis=1)]
        lines = alignment[alignment.cell == m["cell"]]
        rows.append({"cell": m["cell"], "solutions (mean loss)": float(corners.train_loss.mean()),
                     "straight lines (worst)": float(lines.linear_before_worst_loss.max()),
                     "straight lines (spread)": float(lines.linear_before_worst_loss.std(ddof=1)),
                     "aligned lines (worst)": float(lines.linear_after_worst_loss.max()),
                     "aligned lines (spread)": float(lines.linear_after_worst_loss.std(ddof=1)),
                     "flat triangle (worst)": float(flat.train_loss.max()),
                     "complex edges (worst)": float(edges.train_loss.max()),
                     "complex (worst)": float(trained.train_loss.max()),
                     "complex (mean)": float(trained.train_loss.mean()),
                     "fit seconds": float(rec["fit_seconds"])})
    return pd.DataFrame(rows)


def ensemble_table(items: Sequence[tuple[dict, dict]]) -> pd.DataFrame:
    """Per complex, :func:`simplex.ensemble_metrics` of the independent seeds and of the
    points sampled from the complex: cell, members, and the metrics."""
    rows = [{"cell": m["cell"], "members": name, **rec[key]} for m, rec in items
            for name, key in (("independent seeds", "ensemble_independent"), ("simplex samples", "ensemble_simplex"))]
    return pd.DataFrame(rows)


def tunnel_table(items: Sequence[tuple[dict, dict]]) -> pd.DataFrame:
    """One row per tunnel: cell and :func:`tunnel_task`'s numbers."""
    return pd.DataFrame([{"cell": m["cell"], **rec} for m, rec in items])


def escape_directions(profiles: pd.DataFrame, err_rise: float, loss_rise: float) -> pd.DataFrame:
    """Escape distance of every cut of a :func:`directions.wedge_profiles` table.

    The threshold of a cut is its centre's value (distance 0, same radius and direction)
    plus ``err_rise`` (train error, points) or ``loss_rise`` (train loss, nats). Returns
    radius, direction, criterion (train_err | train_loss), escape (inf when never reached),
    censored.
    """
    frames = []
    for metric, rise in (("train_err", err_rise), ("train_loss", loss_rise)):
        for (r, j), g in profiles.groupby(["radius", "direction"], sort=True):
            centre = float(g.sort_values("distance")[metric].iloc[0])
            e = escape_table(g, centre + rise, metric=metric)
            frames.append(e.assign(criterion=metric))
    cols = ["radius", "direction", "criterion", "escape", "censored"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


@dataclass(frozen=True)
class WedgeTables:
    """The wedge experiment of every cell, as tidy tables (each with a ``cell`` column)."""

    radial: pd.DataFrame      # s, norm, train_loss, train_err, test_loss, test_err
    cuts: pd.DataFrame        # radius, distance, train_loss, train_err (mean over directions)
    escapes: pd.DataFrame     # per cut: radius, direction, criterion, escape, censored
    summary: pd.DataFrame     # per radius and criterion: escape (mean of finite), censored (share), radius_norm


def wedge_tables(items: Sequence[tuple[dict, dict]], err_rise: float, loss_rise: float) -> WedgeTables:
    """:class:`WedgeTables` from the wedge records."""
    radial, cuts, escapes, summary = [], [], [], []
    for m, rec in items:
        prof = pd.DataFrame(rec["profiles"])
        radial.append(pd.DataFrame(rec["radial"]).assign(cell=m["cell"]))
        cuts.append(prof.groupby(["radius", "distance"], as_index=False)[["train_loss", "train_err"]].mean()
                    .assign(cell=m["cell"]))
        e = escape_directions(prof, err_rise, loss_rise).assign(cell=m["cell"])
        escapes.append(e)
        finite = e.assign(escape=e.escape.where(np.isfinite(e.escape)))
        g = finite.groupby(["criterion", "radius"], as_index=False)
        summary.append(g.agg(escape=("escape", "mean"), censored=("censored", "mean"))
                       .assign(cell=m["cell"], radius_norm=lambda df: df.radius * rec["norm"]))
    cat = lambda fs: pd.concat(fs, ignore_index=True) if fs else pd.DataFrame()  # noqa: E731
    return WedgeTables(cat(radial), cat(cuts), cat(escapes), cat(summary))


def knob_table(items: Sequence[tuple[dict, dict]]) -> pd.DataFrame:
    """One row per (knob, value): run_id and :func:`reach_task`'s numbers."""
    rows = [{"knob": k, "value": v, "run_id": m["run_id"], **rec} for m, rec in items for k, v in m["uses"]]
    return pd.DataFrame(rows)


def subspace_tables(items: Sequence[tuple[dict, dict]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(sweep, curve)``: one row per (dim, seed), and :func:`directions.success_rate`."""
    if not items:
        return pd.DataFrame(), pd.DataFrame()
    sweep = pd.DataFrame(items[0][1]["sweep"])
    return sweep, success_rate(sweep)


def surface_table(items: Sequence[tuple[dict, dict]]) -> pd.DataFrame:
    """The 2D loss surfaces, long form: cell, alpha, beta, train_loss, train_err, distance."""
    frames = [pd.DataFrame(rec["surface"]).assign(cell=m["cell"], distance=rec["distance"]) for m, rec in items]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# --------------------------------------------------------------------------- findings
def spread_verdict(diff: float, spread: float) -> str:
    """``holds`` when diff > spread, ``fails`` when diff < −spread, else ``inconclusive``
    (also when either is not finite, e.g. the spread of a single pair)."""
    if not (np.isfinite(diff) and np.isfinite(spread)):
        return "inconclusive"
    return "holds" if diff > spread else "fails" if diff < -spread else "inconclusive"


def combine_verdicts(verdicts: Sequence[str]) -> str:
    """``holds`` / ``fails`` when every part agrees, else (or with no parts) ``inconclusive``."""
    s = set(verdicts)
    return s.pop() if len(s) == 1 and s <= {"holds", "fails"} else "inconclusive"


def alignment_finding(alignment: pd.DataFrame) -> Finding:
    """``weight_matching_lowers_barrier``: the straight-line loss barrier minus the one
    after weight matching, over all aligned pairs, is above 0 by a one-sample t test
    (:func:`findings.difference_verdict` against 0; the p-value enters the chapter's Holm
    correction)."""
    diffs = (alignment.linear_before_loss_barrier - alignment.linear_after_loss_barrier).to_numpy(dtype=float)
    v = difference_verdict(diffs, 0.0, expect="greater", names=("barrier removed by matching (nats)", "zero"))
    per_cell = "; ".join(f"{c}: {g.linear_before_loss_barrier.mean():.3g} → {g.linear_after_loss_barrier.mean():.3g}"
                         for c, g in alignment.groupby("cell", sort=False))
    return Finding(key="weight_matching_lowers_barrier",
                   claim="Many barriers between seeds are permutations of hidden units: weight matching lowers "
                         "the straight-line loss barrier",
                   verdict=v.verdict, evidence=f"mean barrier before → after (nats): {per_cell or 'no pairs'}; "
                                               f"{v.evidence}",
                   n=f"{len(diffs)} seed pairs in {alignment.cell.nunique()} cell(s)",
                   p_value=v.p_value, kind=v.kind)


def simplex_findings(summary: pd.DataFrame) -> list[Finding]:
    """``simplex_below_straight_lines`` and ``simplex_below_aligned_lines``: per cell, the
    worst straight line's train loss (before / after weight matching) minus the trained
    complex's worst point, against the spread of the lines' worst losses over seed pairs
    (:func:`spread_verdict`); the cells combined by :func:`combine_verdicts`."""
    out = []
    for key, col, what in (("simplex_below_straight_lines", "straight lines", "the straight lines"),
                           ("simplex_below_aligned_lines", "aligned lines", "the weight-matched lines")):
        parts, verdicts = [], []
        for _, r in summary.iterrows():
            verdicts.append(spread_verdict(r[f"{col} (worst)"] - r["complex (worst)"], r[f"{col} (spread)"]))
            parts.append(f"{r['cell']}: complex {r['complex (worst)']:.3g} vs lines {r[f'{col} (worst)']:.3g} "
                         f"(spread over pairs {r[f'{col} (spread)']:.2g}: {verdicts[-1]})")
        verdict = combine_verdicts(verdicts)
        if not parts:
            parts = ["no simplex was trained (a cell needs 3 seeds)"]
        elif verdict == "inconclusive":
            parts.append("the cells disagree, or a difference lies within the spread")
        out.append(Finding(key=key, claim=f"Three solutions lie in one low-loss structure: the worst point of a "
                                          f"trained simplex through them is below the worst point of {what}",
                           verdict=verdict, evidence="; ".join(parts), n=f"{len(verdicts)} cell(s)"))
    return out


def escape_findings(escapes: pd.DataFrame, cut_length: Mapping[str, float] | None = None) -> list[Finding]:
    """``escape_error_grows_with_radius`` and ``escape_loss_grows_with_radius``.

    Per random direction, the escape distance from the centre at the largest radius minus
    the one at the smallest radius >= 1 (beyond the solution), paired over directions and
    cells, tested against 0 (:func:`findings.difference_verdict`). A censored escape (the
    cut never rose enough) counts as the cut's length ``cut_length[cell]``, a lower bound;
    a direction censored at both radii carries no information and is dropped.
    """
    out = []
    for key, criterion, unit in (("escape_error_grows_with_radius", "train_err", "train error"),
                                 ("escape_loss_grows_with_radius", "train_loss", "train loss")):
        diffs, parts, censored = [], [], 0
        for cell, g in escapes[escapes.criterion == criterion].groupby("cell", sort=False):
            outer = sorted(r for r in g.radius.unique() if r >= 1.0)
            if len(outer) < 2:
                continue
            lo, hi = (g[g.radius == r].set_index("direction").escape for r in (outer[0], outer[-1]))
            cap = (cut_length or {}).get(cell, np.inf)
            for j in lo.index.intersection(hi.index):
                censored += int(not np.isfinite(lo[j])) + int(not np.isfinite(hi[j]))
                if np.isfinite(lo[j]) or np.isfinite(hi[j]):
                    diffs.append(min(hi[j], cap) - min(lo[j], cap))
            finite = lambda e: e[np.isfinite(e)].mean() if np.isfinite(e).any() else np.nan  # noqa: E731
            parts.append(f"{cell}: mean escape at r {outer[0]:g} → {outer[-1]:g}: {finite(lo):.3g} → {finite(hi):.3g}")
        v = difference_verdict(np.asarray(diffs, dtype=float), 0.0, expect="greater",
                               names=("escape at the outer radius minus at the solution", "zero"))
        if not parts:
            parts = ["fewer than two radii >= 1 were measured"]
        out.append(Finding(key=key, claim=f"Wedges widen with the radius: beyond the solution, the distance one can "
                                          f"move along a random direction before the {unit} rises grows with it",
                           verdict=v.verdict, evidence="; ".join(parts + [v.evidence, f"{censored} censored cut(s)"]),
                           n=f"{len(diffs)} random directions"))
    return out


def cut_lengths(wedge_items: Sequence[tuple[dict, dict]], max_distance: float) -> dict[str, float]:
    """Per cell, the length of its random cuts in parameter units (max_distance·‖θ‖)."""
    return {m["cell"]: max_distance * rec["norm"] for m, rec in wedge_items}


def chapter_findings(alignment: pd.DataFrame, summary: pd.DataFrame, wedges: WedgeTables,
                     lengths: Mapping[str, float]) -> list[Finding]:
    """The chapter's findings on the wedge picture, in display order."""
    out = [alignment_finding(alignment), *simplex_findings(summary)]
    if len(wedges.escapes):
        out += escape_findings(wedges.escapes, lengths)
    return out


# --------------------------------------------------------------------------- charts
HEX = "M0,-1L0.866,-0.5L0.866,0.5L0,1L-0.866,0.5L-0.866,-0.5Z"  # a hexagon tiles a triangular lattice


def triangle_chart(grids: pd.DataFrame, resolution: int, side: int = 200):
    """The train loss over each complex's barycentric grid, one hexagon per grid point:
    rows = cells, columns = flat triangle | trained complex, one log colour scale per row
    (legend below, so a row is two panels wide)."""
    size = (2.0 / math.sqrt(3.0) * side / resolution * 1.08) ** 2
    rows = []
    for cell, df in grids.groupby("cell", sort=False):
        panels = [alt.Chart(d, title=f"{cell}: {stage}", width=side, height=side * math.sqrt(3) / 2).mark_point(
            shape=HEX, filled=True, size=size, opacity=1.0).encode(
            x=alt.X("x:Q", axis=None, scale=alt.Scale(domain=[0, 1], nice=False)),
            y=alt.Y("y:Q", axis=None, scale=alt.Scale(domain=[0, math.sqrt(3) / 2], nice=False)),
            color=color_scale("train_loss"),
            tooltip=[alt.Tooltip(c, format=".2f") for c in ("l1", "l2", "l3")]
            + [alt.Tooltip("train_loss", format=".3f"), alt.Tooltip("train_err", format=".1f")])
            for stage, d in df.groupby("stage", sort=False)]
        rows.append(alt.hconcat(*panels))
    return alt.vconcat(*rows).resolve_scale(color="independent") if rows else None


def surface_chart(surface: pd.DataFrame, width: int = 240):
    """Each cell's 2D loss surface as a heat map (one log colour scale, legend below), with
    the solution at (0, 0) and its seed partner at (1, 0) marked; cells side by side."""
    df = surface.copy()
    for col in ("alpha", "beta"):  # each rectangle spans half a grid step either side of its point
        half = 0.5 * float(np.diff(np.sort(df[col].unique()))[0])
        df[f"{col}0"], df[f"{col}1"] = df[col] - half, df[col] + half
    marks = pd.DataFrame([{"cell": c, "alpha": a, "beta": 0.0, "point": p} for c in df.cell.unique()
                          for a, p in ((0.0, "solution"), (1.0, "seed partner"))])
    panels = []
    for c in df.cell.unique():
        heat = alt.Chart(df[df.cell == c]).mark_rect().encode(
            x=alt.X("alpha0:Q", title="α (toward the seed partner)", scale=alt.Scale(nice=False)), x2="alpha1:Q",
            y=alt.Y("beta0:Q", title="β (filter-normalized)", scale=alt.Scale(nice=False)), y2="beta1:Q",
            color=color_scale("train_loss"),
            tooltip=[alt.Tooltip("alpha:Q", format=".2f"), alt.Tooltip("beta:Q", format=".2f"),
                     alt.Tooltip("train_loss:Q", format=".3f"), alt.Tooltip("train_err:Q", format=".1f")])
        points = alt.Chart(marks[marks.cell == c]).mark_point(filled=True, size=90, fill="white", stroke="black",
                                                               opacity=1.0).encode(
            x="alpha:Q", y="beta:Q", tooltip=["point:N"],
            shape=alt.Shape("point:N", sort=["solution", "seed partner"], legend=categorical_legend("marked")))
        panels.append(alt.layer(heat, points).properties(width=width, height=width, title=c))
    return alt.hconcat(*panels) if panels else None
