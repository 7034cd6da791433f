"""Chapter 2 support: local (Hessian) metrics for every run of a grid, cached in the store.

The numerics live in :mod:`landscape_utils.metrics.hessian`; this module only decides *what* is
measured on *which* data, and caches it:

* every run is measured in eval mode on the cross-entropy loss of one fixed batch of
  its own training set (:func:`~landscape_utils.metrics.hessian.make_fixed_batch` with a fixed
  seed, so every run of a grid that shares a training set sees the same batch);
* results go through ``Store.save_metric`` keyed by the run id **and every setting**
  (:meth:`HessianSettings.key`, :meth:`DensitySettings.key`), so a rerun loads what is
  there and computes only what is missing, and a change of setting never reuses a
  stale number.

Tables (one row per run, or long form for densities) come back as pandas DataFrames.
"""
from __future__ import annotations

import dataclasses
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..core.settings import FromParams
from ..core.utils import resolve_device
from ..metrics.hessian import make_fixed_batch, pyhessian_reference, spectral_density, top_eigenvalues, trace
from ..runs.store import Store, algorithm_version, load_model
from ..runs.tasks import Task, run_tasks
from .findings import Finding, difference_verdict, majority_verdict

__all__ = [
    "HessianSettings",
    "DensitySettings",
    "measure_hessian",
    "measure_density",
    "bin_density",
    "one_seed_per_cell",
    "hessian_table",
    "density_table",
    "model_and_batch",
    "pyhessian_comparison",
]

HESSIAN_METRIC = algorithm_version("hessian", 1)  # Store metric name of λmax + trace records
DENSITY_METRIC = algorithm_version("hessian_density", 1)  # Store metric name of spectral-density records
FINE_PER_BIN = 50                     # fine SLQ grid points averaged into one stored point


def _loss() -> nn.Module:
    return nn.CrossEntropyLoss()  # mean over the batch, as the Hessian code expects


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class HessianSettings(FromParams):
    """How λmax and the trace are measured. Every field is part of the cache key."""

    num_samples: int = 200        # fixed training batch size (authors: 200; PyHessian's: ~4096)
    k: int = 1                    # top eigenvalues by Lanczos; lambda_max is the first
    tol: float = 1e-4             # Lanczos: relative Ritz residual / change of the top k
    max_iter: int = 100           # Lanczos: most Hessian-vector products
    trace_method: str = "hutchpp"  # "hutchpp" | "hutchinson"
    rel_tol: float = 0.02         # trace: stop when stderr <= rel_tol * |estimate|
    max_probes: int = 200         # trace: most Hutchinson probes (Hutch++: on the remainder)
    min_probes: int = 10          # trace: fewest probes before the stopping rule applies
    sketch_size: int = 20         # Hutch++ sketch (ignored by plain Hutchinson)
    seed: int = 0                 # seeds the fixed batch and the random vectors

    def __post_init__(self) -> None:
        if self.trace_method not in ("hutchpp", "hutchinson"):
            raise ValueError("trace_method must be 'hutchpp' or 'hutchinson', "
                             f"got {self.trace_method!r}")
        for name in ("num_samples", "k", "max_iter", "max_probes", "sketch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not (self.tol > 0 and self.rel_tol > 0):
            raise ValueError("tol and rel_tol must be > 0")

    def key(self, run_id: str) -> dict[str, Any]:
        """The store key: the run id plus every setting."""
        return {"run_id": run_id, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class DensitySettings(FromParams):
    """How the spectral density (stochastic Lanczos quadrature) is measured and stored."""

    num_samples: int = 200        # fixed training batch size (same batch rule as HessianSettings)
    num_runs: int = 3             # SLQ start vectors averaged
    num_steps: int = 40           # Lanczos steps per run (quadrature nodes per run)
    points: int = 200             # stored points per curve (bin averages of a fine grid)
    seed: int = 0                 # seeds the fixed batch and the start vectors

    def __post_init__(self) -> None:
        for name in ("num_samples", "num_runs", "num_steps", "points"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")

    def key(self, run_id: str) -> dict[str, Any]:
        return {"run_id": run_id, **dataclasses.asdict(self)}


# ------------------------------------------------------------------------ measuring


def measure_hessian(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor],
                    settings: HessianSettings,
                    device: str | torch.device = "auto") -> dict[str, Any]:
    """λmax (Lanczos) and trace (Hutchinson / Hutch++) of the cross-entropy Hessian on ``batch``.

    Args:
        batch: ``(x, y)`` with shapes (n, ...) and (n,).

    Returns:
        A JSON-able record: ``lambda_max``, ``eigenvalues`` (k, descending),
        ``eig_converged``, ``num_hvps_eig``, ``seconds_eig``, ``trace``, ``trace_stderr``,
        ``trace_converged``, ``num_probes``, ``num_hvps_trace``, ``seconds_trace``,
        ``num_samples`` (rows of the batch actually used), ``num_params``.
    """
    loss_fn = _loss()
    eig = top_eigenvalues(model, loss_fn, batch, k=int(settings.k), method="lanczos",
                          tol=float(settings.tol), max_iter=int(settings.max_iter),
                          device=device, seed=int(settings.seed))
    tr = trace(model, loss_fn, batch, rel_tol=float(settings.rel_tol),
               max_probes=int(settings.max_probes),
               min_probes=min(int(settings.min_probes), int(settings.max_probes)),
               method=settings.trace_method, seed=int(settings.seed), device=device,
               sketch_size=int(settings.sketch_size))
    return {
        "lambda_max": float(eig.eigenvalues[0]),
        "eigenvalues": [float(v) for v in eig.eigenvalues],
        "eig_converged": bool(eig.converged),
        "num_hvps_eig": int(eig.num_hvps),
        "seconds_eig": float(eig.seconds),
        "trace": float(tr.estimate),
        "trace_stderr": float(tr.stderr),
        "trace_converged": bool(tr.converged),
        "num_probes": int(tr.num_probes),
        "num_hvps_trace": int(tr.num_hvps),
        "seconds_trace": float(tr.seconds),
        "num_samples": int(eig.num_samples),
        "num_params": int(eig.num_params),
    }


def bin_density(grid: np.ndarray, density: np.ndarray,
                points: int) -> tuple[np.ndarray, np.ndarray]:
    """Average a density given on a fine, evenly spaced ``grid`` (G,) into ``points`` bins.

    Bin averages keep the mass of narrow peaks that plain subsampling would miss.
    G must be a multiple of ``points``. Returns (bin centres, bin-mean densities), each
    of shape (points,).
    """
    grid, density = np.asarray(grid, float), np.asarray(density, float)
    if grid.shape != density.shape or grid.ndim != 1:
        raise ValueError("grid and density must be 1-D arrays of the same length")
    if points < 1 or len(grid) % points:
        raise ValueError(f"the grid length {len(grid)} is not a multiple of points={points}")
    per = len(grid) // points
    return grid.reshape(points, per).mean(axis=1), density.reshape(points, per).mean(axis=1)


def measure_density(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor],
                    settings: DensitySettings,
                    device: str | torch.device = "auto") -> dict[str, Any]:
    """Spectral density of the cross-entropy Hessian on ``batch`` by SLQ, as a short curve.

    Returns:
        A JSON-able record: ``lam`` and ``density`` (lists of ``settings.points`` floats;
        the density integrates to about 1), ``ritz_min`` / ``ritz_max`` (the extreme
        quadrature nodes), ``sigma_sq``, ``num_hvps``, ``seconds``, ``num_samples``.
    """
    res = spectral_density(model, _loss(), batch, num_runs=int(settings.num_runs),
                           num_steps=int(settings.num_steps),
                           grid_points=int(settings.points) * FINE_PER_BIN,
                           seed=int(settings.seed), device=device)
    lam, dens = bin_density(res.grid, res.density, int(settings.points))
    return {
        "lam": lam.tolist(),
        "density": dens.tolist(),
        "ritz_min": float(res.nodes.min()),
        "ritz_max": float(res.nodes.max()),
        "sigma_sq": float(res.sigma_sq),
        "num_hvps": int(res.num_hvps),
        "seconds": float(res.seconds),
        "num_samples": int(res.num_samples),
    }


# ------------------------------------------------------------------- grid + cache


def model_and_batch(workdir: str | os.PathLike, run_id: str, num_samples: int, seed: int,
                    data_root: str | os.PathLike = "data", device: str | torch.device = "cpu",
                    ) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    """A stored run's final model and its fixed Hessian batch, both on ``device``.

    The batch is ``num_samples`` rows (at most the whole training set) of the run's own
    training set (its dataset, data fraction, label noise and data seed), chosen by
    ``seed``: the same batch :func:`hessian_table` uses. Returns ``(model, (x, y))``.
    """
    cfg = Store(workdir).config(run_id)
    data = cfg.load_data(data_root=data_root)
    x, y = make_fixed_batch(data.x_train, data.y_train, min(int(num_samples), data.num_train),
                            seed=int(seed))
    dev = resolve_device(device)
    return load_model(workdir, run_id, device=dev, data=data), (x.to(dev), y.to(dev))


def _measure_task(*, workdir: str, device: torch.device, run_id: str, kind: str,
                  settings: dict[str, Any], data_root: str) -> list[dict[str, Any]]:
    """Task function (see :mod:`landscape_utils.runs.tasks`): one run's Hessian or density record."""
    if kind == "hessian":
        s, measure = HessianSettings(**settings), measure_hessian
    else:
        s, measure = DensitySettings(**settings), measure_density
    cfg = Store(workdir).config(run_id)
    data = cfg.load_data(data_root=data_root)
    n = min(int(s.num_samples), data.num_train)
    if n < s.num_samples:
        warnings.warn(f"{cfg.dataset} with data_fraction={cfg.data_fraction} has only "
                      f"{data.num_train} training samples; the Hessian batch uses all of them")
    x, y = make_fixed_batch(data.x_train, data.y_train, n, seed=int(s.seed))
    model = load_model(workdir, run_id, device=device, data=data)
    return [measure(model, (x.to(device), y.to(device)), s, device)]


def _cached_records(workdir: str | os.PathLike, run_ids: Iterable[str], name: str,
                    settings: HessianSettings | DensitySettings, device: str | torch.device,
                    data_root: str | os.PathLike, desc: str, executor: str | Any,
                    progress: bool, executor_options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{run_id: record}``: read from the store, or measured (one task per run) and saved."""
    run_ids = list(dict.fromkeys(run_ids))
    kind = "hessian" if isinstance(settings, HessianSettings) else "density"
    args = {"kind": kind, "settings": dataclasses.asdict(settings),
            "data_root": str(Path(data_root).resolve())}
    tasks = [Task(name, (settings.key(rid),), _measure_task, {**args, "run_id": rid}, label=rid)
             for rid in run_ids]
    results = run_tasks(tasks, workdir, executor=executor, device=str(device), desc=desc,
                        progress=progress, **executor_options)
    return {rid: recs[0] for rid, recs in zip(run_ids, results)}


def hessian_table(workdir: str | os.PathLike, run_ids: Iterable[str], settings: HessianSettings,
                  device: str | torch.device = "auto", data_root: str | os.PathLike = "data", *,
                  executor: str | Any = "serial", progress: bool = True,
                  **executor_options: Any) -> pd.DataFrame:
    """λmax and trace of every run, one row per run (in the order given).

    Columns: ``run_id``, ``lambda_max``, ``trace``, ``trace_stderr``, ``num_hvps_eig``,
    ``num_hvps_trace``, ``num_samples``, ``num_params``, ``num_probes``, ``eig_converged``,
    ``trace_converged``, ``seconds_eig``, ``seconds_trace``, ``lambda_2`` ... ``lambda_k``
    when k > 1, and the settings (``k``, ``tol``, ``max_iter``, ``trace_method``,
    ``rel_tol``, ``max_probes``, ``hessian_seed``).

    Each missing run is one task of :mod:`landscape_utils.runs.tasks`, computed by ``executor``
    (``serial``, ``process``, ``ray``; options as for the training grid) and saved in the
    store the moment it is done, so an interrupted table resumes where it stopped.
    """
    records = _cached_records(workdir, run_ids, HESSIAN_METRIC, settings, device, data_root,
                              "Hessian (λmax, trace)", executor, progress, executor_options)
    rows = []
    for rid, rec in records.items():
        row = {"run_id": rid, **{k: v for k, v in rec.items() if k != "eigenvalues"}}
        for i, v in enumerate(rec["eigenvalues"][1:], start=2):
            row[f"lambda_{i}"] = v
        rows.append(row)
    cols = ["run_id", "lambda_max", "trace", "trace_stderr", "num_hvps_eig", "num_hvps_trace",
            "num_samples", "num_params", "num_probes", "eig_converged", "trace_converged",
            "seconds_eig", "seconds_trace"]
    df = pd.DataFrame(rows)
    if rows:
        df = df[[*cols, *[c for c in df.columns if c not in cols]]]
    else:
        df = pd.DataFrame(columns=cols)
    s = settings
    for name, value in (("k", s.k), ("tol", s.tol), ("max_iter", s.max_iter),
                        ("trace_method", s.trace_method), ("rel_tol", s.rel_tol),
                        ("max_probes", s.max_probes), ("hessian_seed", s.seed)):
        df[name] = value
    return df


def density_table(workdir: str | os.PathLike, run_ids: Iterable[str], settings: DensitySettings,
                  device: str | torch.device = "auto", data_root: str | os.PathLike = "data", *,
                  executor: str | Any = "serial", progress: bool = True,
                  **executor_options: Any) -> pd.DataFrame:
    """Spectral densities of the given runs, long form: ``run_id``, ``lam``, ``density``
    (``settings.points`` rows per run). Executor arguments as in :func:`hessian_table`."""
    records = _cached_records(workdir, run_ids, DENSITY_METRIC, settings, device, data_root,
                              "spectral density (SLQ)", executor, progress, executor_options)
    frames = [pd.DataFrame({"run_id": rid, "lam": rec["lam"], "density": rec["density"]})
              for rid, rec in records.items()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["run_id", "lam", "density"])


def one_seed_per_cell(runs: pd.DataFrame, keys: Iterable[str],
                      seed_col: str = "seed") -> pd.DataFrame:
    """The row with the lowest ``seed_col`` of every cell (group of ``keys``)."""
    keys = list(keys)
    if runs.empty:
        return runs.copy()
    idx = runs.groupby(keys, dropna=False)[seed_col].idxmin()
    return runs.loc[idx.to_numpy()].sort_values(keys).reset_index(drop=True)


def hot_is_flatter(runs: pd.DataFrame, load: str, temperature: str, hot_high: bool,
                   metric: str = "lambda_max") -> Finding:
    """Finding ``hot_is_flatter``: the hypothesis the taxonomy builds on (Keskar et al. 2017;
    Jastrzebski et al. 2017), that the noise of hot SGD finds flatter minima, read along the
    temperature axis at fixed load.

    At every load value, the per-seed ``metric`` of the hottest temperature is compared with
    that of the coldest by :func:`~landscape_utils.experiments.findings.difference_verdict` (Welch's t):
    flatter when hot (True), sharper when hot (False), or inside the seed spread
    (undecided). The verdict is :func:`~landscape_utils.experiments.findings.majority_verdict` over the
    loads: it holds when the hot end is flatter at most loads, fails when it is sharper at
    most (a grid whose hot cells have not converged, like the authors' phase II, can make
    it fail).

    Args:
        runs: one row per run with the columns ``load``, ``temperature`` and ``metric``.
        hot_high: True when larger values of ``temperature`` are hotter (lr, say), False
            when smaller values are (batch size).
    """
    claim = (f"At fixed {load}, {metric} is smaller at the hot end of {temperature} than at the "
             "cold end (hot SGD noise finds flatter minima)")
    ok = runs[np.isfinite(pd.to_numeric(runs[metric], errors="coerce"))]
    temps = sorted(ok[temperature].unique())
    if len(temps) < 2:
        return Finding("hot_is_flatter", claim, "inconclusive",
                       f"fewer than two {temperature} values with a finite {metric}", f"{len(ok)} runs")
    flags, parts = [], []
    for lv, g in ok.groupby(load, sort=True):
        ts = sorted(g[temperature].unique())
        if len(ts) < 2:
            continue
        hot, cold = (ts[-1], ts[0]) if hot_high else (ts[0], ts[-1])
        v = difference_verdict(g.loc[g[temperature] == hot, metric], g.loc[g[temperature] == cold, metric],
                               expect="less", names=(f"hot {temperature}={hot:g}", f"cold {cold:g}"))
        flags.append({"holds": True, "fails": False}.get(v.verdict))
        parts.append(f"{load}={lv:g}: {v.evidence}")
    v = majority_verdict(flags, what=f"{load} values")
    return Finding("hot_is_flatter", claim, v.verdict, f"flatter when hot at {v.evidence}. " + "; ".join(parts),
                   f"{v.n}, seeds per end as listed")


# ----------------------------------------------------------------- PyHessian side by side


def pyhessian_comparison(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor],
                         settings: HessianSettings, device: str | torch.device = "auto",
                         pyhessian_tol: float = 1e-3, pyhessian_max_iter: int = 100,
                         pyhessian_trace_max_iter: int = 100, pyhessian_trace_tol: float = 1e-3,
                         tight_tol: float = 1e-10, tight_max_iter: int = 300,
                         spread_probes: int = 30) -> pd.DataFrame:
    """Our λmax and trace next to PyHessian's on the same model and batch.

    Ours: :func:`measure_hessian` with ``settings``. PyHessian: power iteration and
    Hutchinson with its own stopping rules at ``pyhessian_*`` (its defaults). A tight
    Lanczos run (``tight_tol``) serves as the reference for the λmax error of both.
    PyHessian reports no error bar for its trace: its standard error is estimated as
    s/sqrt(n), with n its number of probes and s the spread of single Hutchinson probes
    measured on ``spread_probes`` probes of our own. PyHessian's wall times exclude its
    one-off gradient setup; ours include ours.

    Returns:
        Index: quantity (λmax, its HVPs, seconds and relative error; trace, its standard
        error, HVPs and seconds, and the HVPs PyHessian's plain Hutchinson would need to
        reach our standard error); columns ``ours``, ``PyHessian``, ``PyHessian / ours``.
        ``attrs``: ``lambda_max_tight``, ``num_samples``, ``num_params``.

    Raises:
        RuntimeError: with PyHessian's message, when PyHessian failed.
    """
    dev = resolve_device(device)
    x, y = batch
    ours = measure_hessian(model, (x, y), settings, dev)
    tight = top_eigenvalues(model, _loss(), (x, y), k=1, method="lanczos", tol=tight_tol,
                            max_iter=tight_max_iter, device=dev, seed=int(settings.seed) + 1)
    probes = trace(model, _loss(), (x, y), method="hutchinson", rel_tol=1e-12,
                   min_probes=int(spread_probes), max_probes=int(spread_probes),
                   seed=int(settings.seed) + 2, device=dev)
    probe_std = float(np.std(probes.samples, ddof=1))
    with warnings.catch_warnings():  # its backward(create_graph=True) warns of a .grad cycle
        warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph=True")
        ref = pyhessian_reference(model, _loss(), x, y, top_n=1, tol=pyhessian_tol,
                                  max_iter=pyhessian_max_iter,
                                  trace_max_iter=pyhessian_trace_max_iter,
                                  trace_tol=pyhessian_trace_tol, seed=int(settings.seed),
                                  cuda=dev.type == "cuda")
    if ref.error:
        raise RuntimeError(ref.error)
    lam_true = float(tight.eigenvalues[0])
    rel = lambda v: abs(v - lam_true) / abs(lam_true) if lam_true else math.nan  # noqa: E731
    rows = {
        "λmax": (ours["lambda_max"], ref.eigenvalues[0]),
        "λmax: Hessian-vector products": (ours["num_hvps_eig"], ref.eigen_hvps),
        "λmax: seconds": (ours["seconds_eig"], ref.eigen_seconds),
        "λmax: relative error vs tight Lanczos": (rel(ours["lambda_max"]),
                                                  rel(ref.eigenvalues[0])),
        "trace": (ours["trace"], ref.trace_estimate),
        "trace: standard error": (ours["trace_stderr"],
                                  probe_std / math.sqrt(ref.trace_hvps) if ref.trace_hvps
                                  else math.nan),
        "trace: Hessian-vector products": (ours["num_hvps_trace"], ref.trace_hvps),
        "trace: seconds": (ours["seconds_trace"], ref.trace_seconds),
        # plain Hutchinson needs (s / se)^2 probes to reach a standard error se
        "trace: Hessian-vector products at our standard error": (
            ours["num_hvps_trace"],
            math.ceil((probe_std / ours["trace_stderr"]) ** 2) if ours["trace_stderr"] > 0
            else math.nan),
    }
    out = pd.DataFrame.from_dict(rows, orient="index", columns=["ours", "PyHessian"], dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["PyHessian / ours"] = out["PyHessian"] / out["ours"]
    out.index.name = "quantity"
    out.attrs["lambda_max_tight"] = lam_true
    out.attrs["num_samples"] = ours["num_samples"]
    out.attrs["num_params"] = ours["num_params"]
    return out
