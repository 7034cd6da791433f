"""Chapter-3 support: global metrics (mode connectivity, linear barrier, CKA, L2) over
the seed pairs of every grid cell, cached per pair and per settings in the store.

The metrics themselves live in :mod:`landscape_utils.metrics.connectivity` and
:mod:`landscape_utils.metrics.similarity` (Methods appendix: methods-mc, methods-cka,
methods-l2; how pairs become cells: methods-pairs). This module adds what the
chapter needs around them:

- :class:`GlobalSettings`: every setting that changes a pair's numbers; with the two run
  ids it forms the cache key (:meth:`GlobalSettings.key`).
- :func:`pair_record`: one pair's Bezier mc, linear barrier, CKA on mixup inputs and L2,
  with both error profiles.
- :func:`fit_bezier_batch`: many curves fitted at once (``torch.func.vmap``), step for
  step the same as separate :func:`~landscape_utils.metrics.connectivity.fit_bezier` calls
  up to float rounding (:func:`stacks_curves` says where that is faster).
- :func:`measure_pairs`: the records of many pairs of stored runs, computed once (curves
  of runs that share architecture and data fitted together) and then read back from
  ``Store(workdir)`` under the metric name ``"connectivity"``.
- :func:`usable_runs`: the runs of each cell, diverged ones set aside.
- :func:`summarize_pairs`, :func:`paths_table`: the tidy tables the chapter writes
  (``global_cells.csv``, ``paths.csv``).
- :func:`example_cells`: the poorly and the well connected cell shown along their paths.
"""
from __future__ import annotations

import copy
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
from scipy import stats
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd

from ..core.axes import load_order
from ..core.population import step_activations
from ..core.settings import FromParams
from ..core.train import RunConfig, sgd_steps
from ..core.utils import resolve_device
from ..metrics.connectivity import (PROFILE_COLUMNS, BezierCurve, continue_training, draw_t, evaluate_path,
                                    fit_bezier, fit_by_sgd, linear_path, mli, path_result)
from ..metrics.similarity import l2_distance, model_cka
from ..runs.store import Store, algorithm_version, load_model, record_usage
from ..runs.tasks import Task, run_cost, run_tasks
from .findings import Finding, majority_verdict
from .taxonomy import seed_jackknife

#: Store metric name of the per-pair records.
METRIC_NAME = algorithm_version("connectivity", 1)  # curve, barrier, CKA and L2 of a pair
#: Per-pair metrics, in table order.
PAIR_METRICS: tuple[str, ...] = ("mc", "linear_mc", "cka", "l2")
#: Columns of the long-form path table, after the two axis columns.
PATH_COLUMNS: tuple[str, ...] = ("pair", "path", "t", "train_err", "train_loss", "test_err")


@dataclass(frozen=True)
class GlobalSettings(FromParams):
    """Every setting that changes a pair's global metrics (part of the cache key)."""

    curve_epochs: int = 20            # epochs of Bezier fitting (the paper: 50 at full data)
    curve_lr: float = 0.01            # SGD lr of the bend, Garipov schedule on top
    curve_batch_size: int = 128       # minibatch of the fit; one t ~ U(0, 1) per minibatch
    curve_weight_decay: float = 5e-4  # ½·wd·‖φ(t)‖² in the loss (optimizer wd is 0)
    curve_momentum: float = 0.9
    num_points: int = 11              # evenly spaced t in [0, 1], endpoints included
    cka_samples: int = 1280           # mixup inputs per pair (both models see the same)
    cka_batches: int = 10             # mixup batches; one λ ~ Beta(α, α) per batch
    cka_representation: str = "softmax"  # "softmax" (the paper), "logits" or a module name
    cka_kernel: str = "linear"        # linear | rbf
    mixup_alpha: float = 16.0         # α of Beta(α, α)
    eval_batch_size: int = 1024       # evaluation only; does not change the numbers
    seed: int = 0                     # data order and t draws of the fit, mixup draws

    def __post_init__(self):
        for name in ("curve_epochs", "curve_batch_size", "cka_samples", "cka_batches", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_points < 3:
            raise ValueError(f"num_points must be >= 3 (endpoints and one interior point), got {self.num_points}")
        if self.cka_samples < 4 * self.cka_batches:
            raise ValueError(f"cka_samples={self.cka_samples} leaves fewer than 4 points per batch "
                             f"for cka_batches={self.cka_batches}")

    @property
    def cka_batch_size(self) -> int:
        """Mixup batch size: ``cka_samples`` split into ``cka_batches`` batches."""
        return self.cka_samples // self.cka_batches

    def key(self, run_a: str, run_b: str) -> dict[str, Any]:
        """The store key of one pair: both run ids and every setting except eval_batch_size."""
        settings = {k: v for k, v in asdict(self).items() if k != "eval_batch_size"}
        return {"run_a": run_a, "run_b": run_b, **settings}


def _profile_dict(profile: pd.DataFrame) -> dict[str, list[float]]:
    return {c: [float(v) for v in profile[c]] for c in PROFILE_COLUMNS}


def pair_record(model_a: nn.Module, model_b: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor,
                x_test: torch.Tensor | None, y_test: torch.Tensor | None, settings: GlobalSettings,
                device: str | torch.device = "cpu", curve: BezierCurve | None = None,
                fit_seconds: float = 0.0) -> dict[str, Any]:
    """All global metrics of one pair of models (same architecture, same data).

    x_train: (n, *in_shape), y_train: (n,); likewise the optional test split.
    ``curve``: an already fitted curve between the two models (e.g. from
    :func:`fit_bezier_batch`, whose share of the fitting time is ``fit_seconds``); None
    fits it here with :func:`~landscape_utils.metrics.connectivity.fit_bezier`.

    Returns a JSON-ready dict:
        mc, t_star: the paper's mc on the fitted quadratic Bezier curve (train error in %,
            BatchNorm recalibrated at every t) and the t of its extreme point;
        linear_mc, linear_t_star: the same on the straight line;
        cka: linear CKA (float64) of the ``cka_representation`` of both models on
            ``cka_samples`` mixup training inputs, in eval mode;
        l2: ‖θ_a − θ_b‖₂ over the trainable parameters;
        curve_loss: the mean CE of the last fitting epoch;
        bezier, linear: the profiles, {column: list over t} with evaluate_path's columns;
        seconds: wall time of the computation (with ``fit_seconds``).
    """
    t0 = time.perf_counter() - fit_seconds
    s = settings
    if curve is None:
        curve = fit_bezier(model_a, model_b, x_train, y_train, num_epochs=s.curve_epochs, lr=s.curve_lr,
                           batch_size=s.curve_batch_size, weight_decay=s.curve_weight_decay,
                           momentum=s.curve_momentum, seed=s.seed, device=device)
    ts = np.linspace(0.0, 1.0, s.num_points)
    bezier = path_result(evaluate_path(model_a, curve, ts, x_train, y_train, x_test, y_test,
                                       batch_size=s.eval_batch_size, device=device), curve)
    linear = path_result(evaluate_path(model_a, linear_path(model_a, model_b), ts, x_train, y_train,
                                       x_test, y_test, batch_size=s.eval_batch_size, device=device))
    n_cka = min(s.cka_samples, x_train.shape[0])
    cka = model_cka(model_a, model_b, x_train, representation=s.cka_representation,
                    batch_size=n_cka // s.cka_batches, mixup=True, alpha=s.mixup_alpha, seed=s.seed,
                    num_batches=s.cka_batches, kernel=s.cka_kernel, device=device)
    return {
        "mc": bezier.mc, "t_star": bezier.t_star,
        "linear_mc": linear.mc, "linear_t_star": linear.t_star,
        "cka": float(cka), "l2": l2_distance(model_a, model_b),
        "curve_loss": float(curve.history[-1]["loss"]) if curve.history else float("nan"),
        "bezier": _profile_dict(bezier.profile), "linear": _profile_dict(linear.profile),
        "seconds": time.perf_counter() - t0,
    }


# --------------------------------------------------------------------------- many curves at once
def batchable(model: nn.Module) -> bool:
    """True when curves of this architecture can be fitted with :func:`fit_bezier_batch`: no
    dropout (its draws would differ from separate fits). BatchNorm is fine: a curve is fitted
    with each minibatch's own statistics, which the stacked fit computes per curve."""
    return not any(isinstance(m, _DropoutNd) for m in model.modules())


def _batch_statistics_only(model: nn.Module) -> nn.Module:
    """``model`` with every BatchNorm layer normalizing by the minibatch's statistics alone.

    In train mode a BatchNorm layer normalizes with the minibatch's mean and variance and
    also updates its running statistics in place, which ``vmap`` over stacked weights
    forbids. A curve fit never reads those running statistics (they are recomputed at every
    evaluated t), so dropping them changes no number of the fit. Modifies ``model``.
    """
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.track_running_stats = False
            m.running_mean = None
            m.running_var = None
            m.num_batches_tracked = None
    return model


def fit_bezier_batch(model_pairs: Sequence[tuple[nn.Module, nn.Module]], x_train: torch.Tensor,
                     y_train: torch.Tensor, num_epochs: int = 50, lr: float = 0.01, batch_size: int = 128,
                     weight_decay: float = 5e-4, momentum: float = 0.9, seed: int = 0,
                     device: str | torch.device = "auto") -> list[BezierCurve]:
    """Fit S quadratic Bezier curves together, one per pair of models.

    The same procedure as S calls of :func:`~landscape_utils.metrics.connectivity.fit_bezier` with
    the same ``seed`` (same minibatches, same t draws, same lr schedule, SGD with momentum
    on each bend, penalty ½·weight_decay·‖φ(t)‖², BatchNorm with each minibatch's own
    statistics at φ(t)), but one step updates all S bends: the S networks run in one
    ``vmap`` over stacked weights and the S objectives are summed, which leaves each bend's
    gradient its own. On a CPU the per-step overhead dominates for small models, so S
    curves of a narrow net cost little more than one; a wide net's steps are arithmetic-bound
    and gain little (``python -m benchmarks --only curves``).

    The S fits agree with separate ones up to float rounding, and SGD on a curve amplifies
    rounding like any training run: after a few dozen steps the bends differ at the 1e-3
    level, as two CPU kernels' fits do.

    Args:
        model_pairs: S pairs ``(model_a, model_b)``, all of one architecture (the same
            trainable parameter names and shapes), without dropout (:func:`batchable`).
            They are not modified.
        x_train: (n, *in_shape), y_train: (n,): the training set shared by all pairs.

    Returns:
        S fitted :class:`~landscape_utils.metrics.connectivity.BezierCurve` (one bend each) on
        ``device``, each with its own ``history`` (per epoch: loss, objective, lr).
    """
    device = resolve_device(device)
    if not model_pairs:
        return []
    template = _batch_statistics_only(copy.deepcopy(model_pairs[0][0]).to(device).train())
    if not batchable(template):
        raise ValueError("fit_bezier_batch needs a model without dropout; use fit_bezier")
    curves = [BezierCurve.from_models(a, b, 1, device=device) for a, b in model_pairs]
    names = curves[0].names
    if any(c.names != names or any(c.w1[k].shape != curves[0].w1[k].shape for k in names) for c in curves):
        raise ValueError("all pairs must share one architecture")
    w1 = {k: torch.stack([c.w1[k] for c in curves]) for k in names}
    w2 = {k: torch.stack([c.w2[k] for c in curves]) for k in names}
    bends = {k: torch.stack([c.bends[0][k] for c in curves]).requires_grad_(True) for k in names}

    def loss_one(params, xb, yb):
        return F.cross_entropy(functional_call(template, params, (xb,)), yb)

    loss_all = vmap(loss_one, in_dims=(0, None, None))

    def objective(xb: torch.Tensor, yb: torch.Tensor, t: float):
        c0, c1, c2 = curves[0].coefficients(t)
        # the same sum, in the same order, as BezierCurve.point
        params = {k: 0 + c0 * w1[k] + c1 * bends[k] + c2 * w2[k] for k in names}
        ce = loss_all(params, xb, yb)  # (S,)
        penalty = sum(p.pow(2).flatten(1).sum(1) for p in params.values())  # (S,)
        value = ce + 0.5 * weight_decay * penalty  # (S,); the loop steps on their sum
        return value, {"loss": ce, "objective": value}

    history = fit_by_sgd(list(bends.values()), objective, x_train, y_train, num_epochs=num_epochs, lr=lr,
                         batch_size=batch_size, momentum=momentum, seed=seed, device=device,
                         draw=draw_t)
    for i, curve in enumerate(curves):
        curve.history += [{"epoch": h["epoch"], "loss": float(h["loss"][i]), "objective": float(h["objective"][i]),
                           "lr": h["lr"]} for h in history]
    for i, curve in enumerate(curves):
        curve.bends = [{k: bends[k][i].detach().clone() for k in names}]
    return curves


def fit_curves(model_pairs: Sequence[tuple[nn.Module, nn.Module]], x_train: torch.Tensor, y_train: torch.Tensor,
               settings: GlobalSettings, device: str | torch.device = "auto",
               stack: bool = True) -> list[BezierCurve]:
    """One fitted curve per pair with ``settings``: all at once when ``stack`` and the
    architecture allows it (:func:`batchable`), else one
    :func:`~landscape_utils.metrics.connectivity.fit_bezier` each."""
    s = settings
    kwargs = dict(num_epochs=s.curve_epochs, lr=s.curve_lr, batch_size=s.curve_batch_size,
                  weight_decay=s.curve_weight_decay, momentum=s.curve_momentum, seed=s.seed, device=device)
    if stack and len(model_pairs) > 1 and batchable(model_pairs[0][0]):
        return fit_bezier_batch(model_pairs, x_train, y_train, **kwargs)
    return [fit_bezier(a, b, x_train, y_train, **kwargs) for a, b in model_pairs]


#: Layer outputs of one curve's step (bytes, :func:`population.step_activations` at the curve's
#: batch size) up to which its curves are fitted as one stack. Stacking saves per-step overhead,
#: which dominates only small steps: on the default's SmallCNN at batch 64 (0.5, 1, 2 and 4 MiB
#: per curve at widths 8, 16, 32, 64), 6 stacked curves ran 2.72x, 1.64x, 1.14x and 0.91x as
#: fast as one at a time (``python -m benchmarks --only curves``, benchmarks/RESULTS.md §10).
CURVE_STACK_MAX_BYTES = 3 * 2**20


def stacks_curves(config: RunConfig, settings: GlobalSettings, in_shape: tuple[int, ...], num_classes: int) -> bool:
    """Whether the curves between runs of ``config`` are fitted as one stack
    (:data:`CURVE_STACK_MAX_BYTES`)."""
    curve_step = replace(config, batch_size=settings.curve_batch_size)
    return step_activations(curve_step, in_shape, num_classes) <= CURVE_STACK_MAX_BYTES


def fit_group(config: RunConfig) -> tuple:
    """What runs whose curves are fitted together share: the training data and the architecture."""
    return (config.dataset, config.data_fraction, config.label_noise, config.data_seed, config.model,
            config.width, config.depth, config.batch_norm)


def _pairs_task(*, workdir: str, device: torch.device, pairs: list[tuple[str, str]], settings: dict[str, Any],
                data_root: str) -> Iterator[dict[str, Any]]:
    """Task function (see :mod:`landscape_utils.runs.tasks`): the :func:`pair_record` of pairs of one
    :func:`fit_group`, their curves fitted together, each record yielded (and so saved) when done."""
    s = GlobalSettings(**settings)
    store = Store(workdir)
    cfg = store.config(pairs[0][0])
    data = cfg.load_data(data_root=data_root, device=device)
    models = {rid: load_model(workdir, rid, device=device, data=data) for pair in pairs for rid in pair}
    model_pairs = [(models[a], models[b]) for a, b in pairs]
    t0 = time.perf_counter()
    curves = fit_curves(model_pairs, data.x_train, data.y_train, s, device,
                        stack=stacks_curves(cfg, s, data.in_shape, data.num_classes))
    fit_share = (time.perf_counter() - t0) / len(pairs)
    for (a, b), curve in zip(model_pairs, curves):
        yield pair_record(a, b, data.x_train, data.y_train, data.x_test, data.y_test, s,
                          device=device, curve=curve, fit_seconds=fit_share)


def measure_pairs(workdir: str, pairs: Sequence[tuple[str, str]], settings: GlobalSettings,
                  device: str | torch.device = "auto", curves_at_once: int = 16, data_root: str = "data",
                  progress: bool = True, *, executor: str | Any = "serial",
                  **executor_options: Any) -> tuple[list[dict[str, Any]], int]:
    """The :func:`pair_record` of every pair of stored runs, from the store or computed.

    Missing pairs are grouped by :func:`fit_group` and cut into tasks of at most
    ``curves_at_once`` pairs (:mod:`landscape_utils.runs.tasks`), submitted costliest first
    (largest model and training set); each task loads its dataset once, fits its curves (as
    one stack where that is faster: :func:`stacks_curves`), then evaluates each pair and saves
    its record under :meth:`GlobalSettings.key` as soon as it is done, so an interrupted call
    resumes with the pairs it had finished. ``executor`` (``serial``, ``process``, ``ray``,
    with the options of the training grid) runs the tasks.

    Returns:
        ``(records, num_computed)``: the records in the order of ``pairs``, and how many
        were computed rather than read from the store.
    """
    if curves_at_once < 1:
        raise ValueError(f"curves_at_once must be >= 1, got {curves_at_once}")
    store = Store(workdir)
    records: list[dict[str, Any] | None] = [store.load_metric(METRIC_NAME, settings.key(a, b)) for a, b in pairs]
    todo = [i for i, r in enumerate(records) if r is None]
    # the book's "what built it" footer: the pairs read here (dates read only where it is kept)
    record_usage("seed pairs (curve, CKA)", len(pairs) - len(todo), len(todo),
                 ((store.metric_provenance(METRIC_NAME, settings.key(*pairs[i])) or {}).get("date")
                  for i, r in enumerate(records) if r is not None))
    groups: dict[tuple, list[int]] = {}
    for i in todo:
        groups.setdefault(fit_group(store.config(pairs[i][0])), []).append(i)
    chunks = [members[start:start + curves_at_once] for members in groups.values()
              for start in range(0, len(members), curves_at_once)]
    args = {"settings": asdict(settings), "data_root": str(Path(data_root).resolve())}
    tasks = [Task(METRIC_NAME, tuple(settings.key(*pairs[i]) for i in chunk), _pairs_task,
                  {**args, "pairs": [tuple(pairs[i]) for i in chunk]}, label=f"{len(chunk)} pairs",
                  cost=len(chunk) * run_cost(store, pairs[chunk[0]][0]))
             for chunk in chunks]
    results = run_tasks(tasks, workdir, executor=executor, device=str(device),
                        desc=f"seed pairs ({len(todo)} in {len(tasks)} task(s))", progress=progress,
                        log_usage=False, **executor_options)
    for chunk, recs in zip(chunks, results):
        for i, rec in zip(chunk, recs):
            records[i] = rec
    return records, len(todo)  # type: ignore[return-value]


def usable_runs(grid: pd.DataFrame, load: str, temperature: str) -> tuple[dict[tuple, list[str]], pd.DataFrame]:
    """The runs of every cell that can enter pair metrics.

    Args:
        grid: one row per run (chapter 1's ``grid.csv``) with run_id, seed, status,
            train_loss and the two axis columns.

    Returns:
        ``(cells, skipped)``: ``cells`` maps every cell ``(load value, temperature value)``
        (sorted) to its usable run ids ordered by seed; ``skipped`` holds the rows left out
        (status "diverged" or a non-finite train loss).
    """
    status = grid["status"].astype("string").str.lower() if "status" in grid else pd.Series("ok", index=grid.index)
    loss = pd.to_numeric(grid.get("train_loss", pd.Series(0.0, index=grid.index)), errors="coerce")
    bad = status.eq("diverged").fillna(False).astype(bool) | ~np.isfinite(loss.to_numpy(dtype=float))
    good = grid.loc[~bad].sort_values("seed")
    cells = {}
    for cell, _ in grid.groupby([load, temperature], sort=True):
        rows = good[(good[load] == cell[0]) & (good[temperature] == cell[1])]
        cells[tuple(cell)] = list(rows["run_id"])
    return cells, grid.loc[bad]


def summarize_pairs(pairs: pd.DataFrame, cells: Sequence[tuple], load: str, temperature: str,
                    metrics: Sequence[str] = PAIR_METRICS) -> pd.DataFrame:
    """One row per cell: the mean and sample std (ddof=1) of each metric over its pairs.

    Args:
        pairs: one row per pair with the two axis columns and the ``metrics``.
        cells: every cell ``(load value, temperature value)``; cells without pairs get
            NaN metrics and ``n_pairs == 0``.

    Returns:
        Columns load, temperature, ``<m>``, ``<m>_std`` for each metric (std NaN for one
        pair), n_pairs; sorted by the axes.
    """
    rows = []
    for lv, tv in cells:
        sel = pairs[(pairs[load] == lv) & (pairs[temperature] == tv)] if len(pairs) else pairs
        row: dict[str, Any] = {load: lv, temperature: tv}
        for m in metrics:
            v = sel[m].to_numpy(dtype=np.float64) if len(sel) else np.array([])
            v = v[np.isfinite(v)]
            row[m] = float(v.mean()) if v.size else float("nan")
            row[f"{m}_std"] = float(v.std(ddof=1)) if v.size > 1 else float("nan")
        row["n_pairs"] = int(len(sel))
        rows.append(row)
    cols = [load, temperature, *[c for m in metrics for c in (m, f"{m}_std")], "n_pairs"]
    return pd.DataFrame(rows, columns=cols).sort_values([load, temperature]).reset_index(drop=True)


def paths_table(records: Sequence[tuple[dict[str, Any], dict[str, Any]]], load: str,
                temperature: str) -> pd.DataFrame:
    """Long-form error profiles of every pair, along both paths.

    Args:
        records: ``(ids, record)`` per pair, ``ids`` holding the two axis values and
            ``pair`` (the pair's index within its cell), ``record`` a :func:`pair_record`.

    Returns:
        Columns load, temperature, pair, path ("bezier" | "linear"), t, train_err,
        train_loss, test_err; one row per pair, path and t.
    """
    frames = []
    for ids, rec in records:
        for path in ("bezier", "linear"):
            prof = pd.DataFrame(rec[path])
            frames.append(pd.DataFrame({load: ids[load], temperature: ids[temperature], "pair": ids["pair"],
                                        "path": path, **{c: prof[c] for c in PATH_COLUMNS[2:]}}))
    cols = [load, temperature, *PATH_COLUMNS]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def example_cells(cells: pd.DataFrame, train_loss: pd.Series, low_loss_quantile: float = 0.5
                  ) -> tuple[int | None, int | None]:
    """Row labels of ``cells`` for a poorly and a well connected example.

    Args:
        cells: one row per cell with an ``mc`` column (NaN allowed).
        train_loss: the cells' mean train loss, aligned with ``cells``' index.
        low_loss_quantile: "low train loss" means at or below this quantile of the cells'
            train losses.

    Returns:
        ``(poor, well)``: ``poor`` is the cell with the most negative mc; ``well`` the cell
        with mc closest to 0 among the low-loss cells other than ``poor`` (falling back to
        all other cells, then to ``poor`` itself when it is the only cell). None when no
        cell has an mc.
    """
    ok = cells.index[np.isfinite(cells["mc"].to_numpy(dtype=float))]
    if len(ok) == 0:
        return None, None
    poor = cells.loc[ok, "mc"].idxmin()
    loss = train_loss.reindex(ok)
    low = ok[(loss <= loss.quantile(low_loss_quantile)).to_numpy()] if loss.notna().any() else ok
    for candidates in (low.drop(poor, errors="ignore"), ok.drop(poor), ok):
        if len(candidates):
            well = cells.loc[candidates, "mc"].abs().idxmin()
            return poor, well
    return poor, poor  # unreachable: ok is not empty



# --------------------------------------------------------------------------- MLI per run
MLI_METRIC = algorithm_version("mli", 1)  # Store metric name of the MLI records


@dataclass(frozen=True)
class MLISettings(FromParams):
    """How the straight line from initialization to the solution is measured (the cache key)."""

    num_points: int = 11              # evenly spaced α in [0, 1], endpoints included
    eps: float = 1e-3                 # a rise of the train loss above eps counts as a bump
    eval_batch_size: int = 1024       # evaluation only; does not change the numbers

    def __post_init__(self):
        if self.num_points < 3:
            raise ValueError(f"num_points must be >= 3, got {self.num_points}")
        if not self.eps > 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")

    def key(self, run_id: str) -> dict[str, Any]:
        return {"run_id": run_id, "num_points": self.num_points, "eps": self.eps}


def _mli_task(*, workdir: str, device: torch.device, run_id: str, settings: dict[str, Any],
              data_root: str) -> list[dict[str, Any]]:
    """Task function: the MLI record of one run (its initial and final checkpoints)."""
    s = MLISettings(**settings)
    cfg = Store(workdir).config(run_id)
    data = cfg.load_data(data_root=data_root, device=device)
    init = load_model(workdir, run_id, which="init", device=device, data=data)
    final = load_model(workdir, run_id, device=device, data=data)
    res = mli(init, final, data.x_train, data.y_train, num_points=s.num_points, eps=s.eps,
              batch_size=s.eval_batch_size, device=device)
    loss = res.profile["train_loss"].to_numpy(dtype=float)
    return [{"mli_monotonic": not res.non_monotonic, "mli_max_bump": float(res.delta),
             "mli_num_bumps": len(res.bumps), "mli_init_loss": float(loss[0]),
             "mli_final_loss": float(loss[-1]), "mli_alpha": res.profile["t"].astype(float).tolist(),
             "mli_train_loss": loss.tolist()}]


def mli_table(workdir: str | os.PathLike, run_ids: Sequence[str], settings: MLISettings = MLISettings(),
              device: str | torch.device = "auto", data_root: str | os.PathLike = "data", *,
              executor: str | Any = "serial", progress: bool = True, **executor_options: Any) -> pd.DataFrame:
    """Monotonic linear interpolation from initialization to solution, one row per run.

    Each run's train loss is evaluated along θ(α) = (1 − α)·θ_init + α·θ_final (BatchNorm
    recalibrated at every α); see :func:`~landscape_utils.metrics.connectivity.mli`. One task per
    run (:mod:`landscape_utils.runs.tasks`), cached under :meth:`MLISettings.key`.

    Returns:
        Columns run_id, mli_monotonic (no bump above ``eps``), mli_max_bump (the largest
        rise of the train loss along the line, nats), mli_num_bumps, mli_init_loss,
        mli_final_loss, in the order of ``run_ids``.
    """
    run_ids = list(dict.fromkeys(run_ids))
    args = {"settings": asdict(settings), "data_root": str(Path(data_root).resolve())}
    tasks = [Task(MLI_METRIC, (settings.key(rid),), _mli_task, {**args, "run_id": rid}, label=rid)
             for rid in run_ids]
    results = run_tasks(tasks, workdir, executor=executor, device=str(device), desc="MLI (init -> solution)",
                        progress=progress, **executor_options)
    cols = ["mli_monotonic", "mli_max_bump", "mli_num_bumps", "mli_init_loss", "mli_final_loss"]
    rows = [{"run_id": rid, **{c: recs[0][c] for c in cols}} for rid, recs in zip(run_ids, results)]
    return pd.DataFrame(rows, columns=["run_id", *cols])


# --------------------------------------------------------------------------- endpoint continuation
CONTINUATION_METRIC = algorithm_version("continuation", 1)  # Store metric name of the records
#: The fields of :class:`GlobalSettings` that define a curve fit's recipe and budget.
CURVE_RECIPE: tuple[str, ...] = ("curve_epochs", "curve_lr", "curve_batch_size", "curve_weight_decay",
                                 "curve_momentum", "seed")


def continuation_key(settings: GlobalSettings, run_id: str) -> dict[str, Any]:
    """The store key of one continued endpoint: the run and the curve recipe it copies."""
    return {"run_id": run_id, **{k: getattr(settings, k) for k in CURVE_RECIPE}}


def curve_steps(settings: GlobalSettings, num_train: int) -> int:
    """SGD steps of one curve fit (and of one continuation) on ``num_train`` examples."""
    return sgd_steps(settings.curve_epochs, num_train, settings.curve_batch_size)


def endpoint_steps(runs: pd.DataFrame) -> pd.Series:
    """SGD steps each run of a results table took (``epochs_run``, ``num_train`` and
    ``batch_size`` of chapter 1's ``grid.csv``): the endpoints' budget beside a curve's."""
    return sgd_steps(runs["epochs_run"], runs["num_train"], runs["batch_size"])


def _continuation_task(*, workdir: str, device: torch.device, run_id: str, settings: dict[str, Any],
                       data_root: str) -> list[dict[str, Any]]:
    """Task function: one run trained on for a curve's budget, measured before and after
    as a path's points are (BatchNorm recalibrated on the training set)."""
    s = GlobalSettings(**settings)
    cfg = Store(workdir).config(run_id)
    data = cfg.load_data(data_root=data_root, device=device)
    model = load_model(workdir, run_id, device=device, data=data)
    t0 = time.perf_counter()
    after = continue_training(model, data.x_train, data.y_train, num_epochs=s.curve_epochs, lr=s.curve_lr,
                              batch_size=s.curve_batch_size, weight_decay=s.curve_weight_decay,
                              momentum=s.curve_momentum, seed=s.seed, device=device)
    rec: dict[str, Any] = {"steps": curve_steps(s, int(data.x_train.shape[0]))}
    for when, m in (("before", model), ("after", after)):
        point = {k: p.detach() for k, p in m.named_parameters()}
        prof = evaluate_path(m, lambda _t, point=point: point, [0.0], data.x_train, data.y_train,
                             data.x_test, data.y_test, batch_size=s.eval_batch_size, device=device)
        for col in ("train_err", "train_loss", "test_err"):
            rec[f"{col}_{when}"] = float(prof[col].iloc[0])
    rec["seconds"] = time.perf_counter() - t0
    return [rec]


CONTINUATION_COLUMNS: tuple[str, ...] = ("steps", "train_err_before", "train_err_after", "train_loss_before",
                                         "train_loss_after", "test_err_before", "test_err_after")


def continuation_table(workdir: str | os.PathLike, run_ids: Sequence[str], settings: GlobalSettings,
                       device: str | torch.device = "auto", data_root: str | os.PathLike = "data", *,
                       executor: str | Any = "serial", progress: bool = True,
                       **executor_options: Any) -> pd.DataFrame:
    """Endpoint continuation: each run trained on with the curve's recipe and step budget.

    One task per run (:func:`~landscape_utils.connectivity.continue_training`), cached
    under :func:`continuation_key`. The errors are in percent and measured as the curve's
    points are (BatchNorm recalibrated), so ``train_err_before`` equals the curve's error at
    its endpoint.

    Returns:
        Columns run_id and :data:`CONTINUATION_COLUMNS`, in the order of ``run_ids``.
    """
    run_ids = list(dict.fromkeys(run_ids))
    args = {"settings": asdict(settings), "data_root": str(Path(data_root).resolve())}
    tasks = [Task(CONTINUATION_METRIC, (continuation_key(settings, rid),), _continuation_task,
                  {**args, "run_id": rid}, label=rid) for rid in run_ids]
    results = run_tasks(tasks, workdir, executor=executor, device=str(device),
                        desc="endpoints trained on for the curve's budget", progress=progress,
                        **executor_options)
    rows = [{"run_id": rid, **{c: recs[0][c] for c in CONTINUATION_COLUMNS}} for rid, recs in zip(run_ids, results)]
    return pd.DataFrame(rows, columns=["run_id", *CONTINUATION_COLUMNS])


def curve_gain_over_continued(pairs: pd.DataFrame, continued: pd.DataFrame) -> pd.Series:
    """Per pair: how far the curve's best point beats its endpoints trained on for its budget.

    ``(err_a' + err_b') / 2 − min_t err(φ(t))`` in points of train error, where ``err'`` is
    an endpoint's train error after :func:`continuation_table` and the minimum runs over the
    curve's interior points (column ``curve_min_err`` of ``pairs``). > 0: the curve still
    beats the continued endpoints; ≤ 0: training the endpoints on for the curve's budget
    does as well, so a positive mc measured the budget gap. NaN where a run has no record.

    Args:
        pairs: one row per pair with ``run_id_a``, ``run_id_b`` and ``curve_min_err``.
        continued: :func:`continuation_table`'s output (``run_id``, ``train_err_after``).
    """
    after = continued.set_index("run_id")["train_err_after"]
    mid = 0.5 * (pairs["run_id_a"].map(after) + pairs["run_id_b"].map(after))
    return (mid - pd.to_numeric(pairs["curve_min_err"], errors="coerce")).rename("gain_continued")


def positive_mc_cells(pairs: pd.DataFrame, load: str, temperature: str, mc_pos: float = 1.0) -> pd.Series:
    """The cells whose mean mc over their pairs exceeds ``mc_pos`` (phase II's sign): a
    Series of those means indexed by ``(load value, temperature value)``."""
    cell_mc = pd.to_numeric(pairs["mc"], errors="coerce").groupby([pairs[load], pairs[temperature]]).mean()
    return cell_mc[cell_mc > mc_pos]


def continuation_runs(pairs: pd.DataFrame, load: str, temperature: str, mc_pos: float = 1.0) -> list[str]:
    """The endpoints (``run_id_a``, ``run_id_b``) of every pair in a :func:`positive_mc_cells`
    cell, sorted: the runs the continuation control trains on."""
    cells = positive_mc_cells(pairs, load, temperature, mc_pos).index
    inside = pairs.set_index([load, temperature]).index.isin(cells)
    return sorted(set(pairs.loc[inside, "run_id_a"]) | set(pairs.loc[inside, "run_id_b"]))


def interior_min(profile: Sequence[float]) -> float:
    """The smallest value of a path profile at its interior points (endpoints excluded)."""
    v = np.asarray(profile, dtype=float)
    return float(np.min(v[1:-1])) if v.size >= 3 else float("nan")


def sign_beyond_spread(mean: float, se: float, df: float, alpha: float = 0.05,
                       k: float | None = None) -> int | None:
    """+1 when ``mean − q·se > 0``, −1 when ``mean + q·se < 0``, None otherwise (or when
    ``se`` is not finite), with q the two-sided ``alpha`` quantile of Student's t on ``df``
    degrees of freedom (``k``, when given, replaces it by a fixed multiple): how a cell's
    mean over seeds is decided in this chapter's findings."""
    if not np.isfinite(se):
        return None
    q = k if k is not None else (float(stats.t.ppf(1 - alpha / 2, df)) if df >= 1 else np.inf)
    return 1 if mean - q * se > 0 else -1 if mean + q * se < 0 else None


def mc_survives_continuation(pairs: pd.DataFrame, load: str, temperature: str, *, mc_pos: float = 1.0,
                             alpha: float = 0.05) -> Finding:
    """Finding ``mc_survives_continuation``: where mc > 0, the curve beats the endpoints
    trained on for its budget.

    The cells tested are those whose mean mc exceeds ``mc_pos`` (the sign that labels a
    cell II). Per cell, the per-pair ``gain_continued`` (:func:`curve_gain_over_continued`)
    is averaged with a jackknife over seeds (:func:`~landscape_utils.taxonomy.seed_jackknife`,
    pairs share seeds); the cell survives when mean − t·SE > 0, fails when mean + t·SE < 0,
    and is undecided otherwise (t the two-sided ``alpha`` quantile on S − 1 df). The
    verdict is :func:`~landscape_utils.findings.majority_verdict` over those cells; with no
    such cell it is inconclusive.

    Args:
        pairs: one row per seed pair with ``load``, ``temperature``, ``mc``, ``seed_a``,
            ``seed_b`` and ``gain_continued``.
    """
    claim = ("Where mc > 0 (phase II's sign), the curve still beats its endpoints once they are trained on "
             "for the curve's own step budget")
    cell_mc = positive_mc_cells(pairs, load, temperature, mc_pos)
    tested = list(cell_mc.index)
    if not tested:
        return Finding("mc_survives_continuation", claim, "inconclusive",
                       f"no cell has a mean mc above {mc_pos:g}: nothing to test", "0 cells")
    flags, parts = [], []
    for lv, tv in tested:
        g = pairs[(pairs[load] == lv) & (pairs[temperature] == tv)]
        v = pd.to_numeric(g["gain_continued"], errors="coerce").to_numpy(dtype=float)
        seeds = g[["seed_a", "seed_b"]].to_numpy(dtype=object)
        keep = np.isfinite(v)
        if keep.sum() < 2:
            flags.append(None)
            parts.append(f"{load}={lv:g} {temperature}={tv:g}: too few continued pairs")
            continue
        jk = seed_jackknife(v[keep], seeds[keep])
        sign = sign_beyond_spread(jk.mean, jk.se, jk.df, alpha)
        flag = None if sign is None else sign > 0
        flags.append(flag)
        word = "curve still better" if flag else "continued endpoints as good" if flag is False else "undecided"
        parts.append(f"{load}={lv:g} {temperature}={tv:g}: mc {cell_mc[(lv, tv)]:.3g}, curve minus continued "
                     f"endpoints {jk.mean:.3g} ± {jk.se:.2g} (SE over seeds, n={int(keep.sum())} pairs): {word}")
    v = majority_verdict(flags, what="cells with mc > 0", min_n=1)
    return Finding("mc_survives_continuation", claim, v.verdict, f"{v.evidence}; " + "; ".join(parts), v.n)


# --------------------------------------------------------------------------- findings
def small_load_poorly_connected(pairs: pd.DataFrame, load: str, temperature: str,
                                k: float | None = None, alpha: float = 0.05) -> Finding:
    """Finding ``small_load_poorly_connected``: at the smallest load, mc < 0 at most temperatures.

    Each temperature of the smallest load is decided from its per-pair mc values and the
    seeds they share: the mean's standard error is a jackknife over seeds
    (:func:`~landscape_utils.experiments.taxonomy.seed_jackknife`, leaving out a seed drops every pair
    that involves it; S − 1 degrees of freedom), and the temperature is poorly connected
    when mean + t·SE < 0, well connected when mean − t·SE > 0, undecided otherwise, with t
    the two-sided ``alpha`` quantile of Student's t (``k``, legacy, replaces it by a fixed
    multiple). A temperature whose seeds cannot give a spread (two seeds, one pair) is
    undecided. Pairs without ``seed_a``/``seed_b`` are treated as independent (per-pair SE
    on n − 1 df, which understates the spread; the evidence says so). The verdict is
    :func:`~landscape_utils.experiments.findings.majority_verdict` over the temperatures.

    Args:
        pairs: one row per seed pair with the columns ``load``, ``temperature``, ``mc`` and
            ``seed_a``, ``seed_b``.
    """

    claim = "At the smallest load (least capacity per sample), mc < 0 (poorly connected) at most temperatures"
    ok = pairs[np.isfinite(pd.to_numeric(pairs["mc"], errors="coerce"))]
    if ok.empty:
        return Finding("small_load_poorly_connected", claim, "inconclusive", "no finite mc", "0 pairs")
    seeded = {"seed_a", "seed_b"} <= set(ok.columns)
    smallest = load_order(load, ok[load])[0]  # the least capacity per sample
    flags, parts = [], []
    for tv, g in ok[ok[load] == smallest].groupby(temperature, sort=True):
        v = g["mc"].to_numpy(dtype=float)
        if seeded:
            jk = seed_jackknife(v, g[["seed_a", "seed_b"]].to_numpy(dtype=object))
            mean, se, df = jk.mean, jk.se, jk.df
        else:
            mean = float(v.mean())
            se = float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")
            df = v.size - 1
        sign = sign_beyond_spread(mean, se, df, alpha, k)
        flag = None if sign is None else sign < 0
        flags.append(flag)
        spread = f" ± {se:.2g} (SE over {'seeds' if seeded else 'pairs'})" if np.isfinite(se) else ""
        parts.append(f"{temperature}={tv:g}: {mean:.3g}{spread} (n={v.size} pairs, "
                     f"{'<0' if flag else '>0' if flag is False else 'undecided'})")
    v = majority_verdict(flags, what=f"temperatures at {load}={smallest:g}")
    note = "" if seeded else "; pairs without seed ids, treated as independent"
    return Finding("small_load_poorly_connected", claim, v.verdict,
                   f"{v.evidence}; mc per temperature: " + "; ".join(parts) + note, v.n)
