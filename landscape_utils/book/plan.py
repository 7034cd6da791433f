"""A cost plan for a params file: the tasks of every chapter, how many the store already
holds, and what the rest should cost on this machine, without running any chapter.

    python -m landscape_utils.book --params params/paper_cifar10.yaml --plan

Tasks are counted from the parameters alone (chapter 1's grid, chapter 4's sweeps, one
Hessian per run for chapter 2, the seed pairs of chapter 3, chapter 6's experiments), and
looked up in the store with the same keys the chapters use (``Store.is_done`` for runs,
``Store.load_metric`` with ``HessianSettings.key`` / ``GlobalSettings.key`` for
measurements). Costs come from a few timed steps on random tensors of the dataset's shape
(no data is read): :func:`runner.time_epoch` for training, one Hessian-vector product and
one Bezier-curve step, on one torch thread on a CPU. Wide models are not timed on a slow
device: widths are timed from the smallest up within a time budget, and wider ones are
scaled as width^p from the widest timed one, with p the log-log slope over the widest
timed widths kept in [1, 2] (the work of a convolution or hidden layer grows at most as
the square of its width). Every estimate is a sum of device-seconds for one worker; with
``W`` workers or GPUs divide by about ``W``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch.func import functional_call

from ..core.models import build_model
from ..core.train import RunConfig
from ..core.utils import resolve_device
from ..experiments.global_metrics import METRIC_NAME, GlobalSettings, MLISettings
from ..experiments.large_scale import WedgeSettings
from ..experiments.local import DENSITY_METRIC, HESSIAN_METRIC, DensitySettings, HessianSettings
from ..metrics.connectivity import BezierCurve, select_pairs
from ..metrics.hessian import hessian_vector_product
from ..runs.runner import CONFIG_KEYS, INPUT_SHAPES, expand_grid, grid_from_params, time_epoch, train_size
from ..runs.store import Store, run_id
from .chapters import book_path, merged_values

__all__ = ["ChapterPlan", "plan", "print_plan", "WidthTimer", "chapter_settings"]

TRAIN_TIMING_BATCH = 32  # SGD steps are timed at this batch size and scaled per sample


@dataclass
class ChapterPlan:
    """One line of the plan: ``total`` tasks of a kind, ``done`` of them in the store, and the
    estimated device-seconds of the rest (None: not estimated)."""

    chapter: str
    kind: str
    total: int
    done: int | None
    seconds: float | None
    note: str = ""


@dataclass
class WidthTimer:
    """Seconds of one operation as a function of the width, timed at a few widths.

    ``measure(width) -> seconds`` times the operation (it may warm up first). Widths are
    timed from the smallest up while the time spent stays under ``budget`` seconds; a
    width between two timed ones is interpolated, and a wider one is scaled as
    width^p from the widest timed one (:meth:`exponent`).
    """

    measure: Callable[[int], float]
    budget: float = 8.0
    timed: dict[int, float] = field(default_factory=dict)
    spent: float = 0.0
    _wall: float = 0.0

    def prepare(self, widths: list[int]) -> None:
        widths = sorted(set(int(x) for x in widths))
        if not self.timed and widths:
            self.measure(widths[0])  # warm-up: first-call costs (allocations, kernels) are not timed
        for w in widths:
            if w in self.timed:
                continue
            if self.timed and self.spent >= self.budget:
                break
            # timing the next width takes about (w / widest)² of the time the widest took
            if self.timed:
                widest = max(self.timed)
                if self.spent + self._wall * (w / widest) ** 2 > self.budget:
                    break
            t0 = time.perf_counter()
            self.timed[w] = self.measure(w)
            self._wall = time.perf_counter() - t0
            self.spent += self._wall

    def __call__(self, width: int) -> float:
        if width in self.timed:
            return self.timed[width]
        if not self.timed:
            self.prepare([width])
            return self.timed[width]
        ws = sorted(self.timed)
        if width < ws[0]:
            return self.timed[ws[0]]
        if width < ws[-1]:  # between two timed widths: linear interpolation
            hi = next(w for w in ws if w > width)
            lo = max(w for w in ws if w < width)
            return self.timed[lo] + (self.timed[hi] - self.timed[lo]) * (width - lo) / (hi - lo)
        p = self.exponent()
        return self.timed[ws[-1]] * (width / ws[-1]) ** p

    def exponent(self) -> float:
        """How the time grows past the widest timed width: t ∝ width^p, with p the log-log
        slope over the (up to) four widest timed widths, kept within [1, 2] (per-call overheads make small widths grow
        slower than their work; the work of a layer grows at most as width²). With one timed
        width, p = 2."""
        ws = [w for w in sorted(self.timed) if self.timed[w] > 0][-4:]
        if len(ws) < 2:
            return 2.0
        # least-squares slope of log t against log width over the (up to) four widest
        xs, ys = [math.log(w) for w in ws], [math.log(self.timed[w]) for w in ws]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        return min(2.0, max(1.0, slope))

    def how(self) -> str:
        ws = sorted(self.timed)
        return (f"timed at width {', '.join(map(str, ws))}; wider widths scaled as width^{self.exponent():.2f} "
                f"from width {ws[-1]}")


def _model_and_data(config: RunConfig, batch: int, device: torch.device):
    shape, k = INPUT_SHAPES[config.dataset]
    model = build_model(config.model, config.width, shape, k, batch_norm=config.batch_norm,
                        depth=config.depth).to(device)
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, k, (batch,), device=device)
    return model, x, y


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_hvp(config: RunConfig, num_samples: int, device: torch.device) -> float:
    """Seconds of one Hessian-vector product of ``config``'s model on ``num_samples`` random
    inputs of its dataset's shape (the package's ``hessian_vector_product``)."""
    model, x, y = _model_and_data(config, num_samples, device)
    v = torch.randn(sum(p.numel() for p in model.parameters() if p.requires_grad), device=device)
    hessian_vector_product(model, F.cross_entropy, (x, y), v, device=device)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    hessian_vector_product(model, F.cross_entropy, (x, y), v, device=device)
    _sync(device)
    return time.perf_counter() - t0


def time_curve_step(config: RunConfig, batch_size: int, device: torch.device, steps: int = 2) -> float:
    """Seconds of one SGD step of a quadratic Bezier curve between two models of ``config``
    (the loss at one t on one minibatch of random inputs, the bend updated)."""
    model, x, y = _model_and_data(config, batch_size, device)
    other, _, _ = _model_and_data(config, 1, device)
    curve = BezierCurve.from_models(model, other, device=device)
    for bend in curve.parameters():
        bend.requires_grad_(True)
    opt = torch.optim.SGD(curve.parameters(), lr=0.01, momentum=0.9)

    def step(t: float) -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(functional_call(model, curve.point(t), (x,)), y).backward()
        opt.step()

    step(0.5)
    _sync(device)
    t0 = time.perf_counter()
    for i in range(steps):
        step((i + 0.5) / steps)
    _sync(device)
    return (time.perf_counter() - t0) / steps


def _merged(stem: str, params: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return merged_values(stem, dict(params.get(stem, {})))


def _grid(params: Mapping[str, Mapping[str, Any]]) -> list[RunConfig]:
    return grid_from_params(_merged("01_training_grid", params))


def _workdir(values: Mapping[str, Any]) -> Path:
    return book_path(values.get("workdir", "."))


def _hms(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:,.1f} h"


class _Costs:
    """The timers of one plan, shared by the chapters (one per operation and model family)."""

    def __init__(self, device: torch.device, budget: float):
        self.device, self.budget = device, budget
        self.timers: dict[tuple, WidthTimer] = {}

    def _timer(self, kind: str, config: RunConfig, batch: int,
               fn: Callable[[RunConfig, int], float]) -> WidthTimer:
        family = (kind, config.model, config.dataset, config.depth, config.batch_norm, batch)
        if family not in self.timers:
            base = config

            def measure(width: int) -> float:
                return fn(RunConfig.from_dict({**base.to_dict(), "width": int(width)}), batch)

            self.timers[family] = WidthTimer(measure, budget=self.budget)
        return self.timers[family]

    def per_sample_step(self, config: RunConfig) -> float:
        """Seconds per training sample of an SGD step of ``config`` (timed at batch 32)."""
        batch = TRAIN_TIMING_BATCH

        def fn(c: RunConfig, b: int) -> float:
            c = RunConfig.from_dict({**c.to_dict(), "batch_size": b, "data_fraction": 1.0})
            return time_epoch(c, device=str(self.device), num_batches=2) / (train_size(c.dataset) // b) / b

        return self._timer("train", config, batch, fn)(config.width)

    def epoch(self, config: RunConfig) -> float:
        n = train_size(config.dataset, config.data_fraction)
        return self.per_sample_step(config) * (n // config.batch_size) * config.batch_size

    def hvp(self, config: RunConfig, num_samples: int) -> float:
        batch = min(num_samples, 64)
        t = self._timer("hvp", config, batch, lambda c, b: time_hvp(c, b, self.device))(config.width)
        return t * num_samples / batch

    def curve_step(self, config: RunConfig, batch_size: int) -> float:
        batch = min(batch_size, 64)
        t = self._timer("curve", config, batch, lambda c, b: time_curve_step(c, b, self.device))(config.width)
        return t * batch_size / batch

    def prepare(self, configs: list[RunConfig], kinds: dict[str, int]) -> None:
        """Time the representative widths of every model family in ``configs``, cheapest first."""
        by_family: dict[tuple, list[RunConfig]] = {}
        for c in configs:
            by_family.setdefault((c.model, c.dataset, c.depth, c.batch_norm), []).append(c)
        for cs in by_family.values():
            widths = sorted({c.width for c in cs})
            c0 = min(cs, key=lambda c: c.width)
            self.per_sample_step(c0)
            self._timer("train", c0, TRAIN_TIMING_BATCH, None).prepare(widths)  # type: ignore[arg-type]
            if "hvp" in kinds:
                self.hvp(c0, kinds["hvp"])
                self._timer("hvp", c0, min(kinds["hvp"], 64), None).prepare(widths)  # type: ignore[arg-type]
            if "curve" in kinds:
                self.curve_step(c0, kinds["curve"])
                self._timer("curve", c0, min(kinds["curve"], 64), None).prepare(widths)  # type: ignore[arg-type]


def plan(params: Mapping[str, Mapping[str, Any]], device: str = "auto", budget: float = 8.0) -> tuple[
        list[ChapterPlan], list[str]]:
    """The plan of the chapters in ``params`` (as returned by ``book.load_params``).

    Returns ``(rows, notes)``: one :class:`ChapterPlan` per kind of task and the notes on how
    the costs were estimated. ``budget`` is the most seconds spent timing one operation of
    one model family.
    """
    shared_device = next((v.get("device") for v in params.values() if "device" in v), device)
    dev = resolve_device(shared_device or device)
    threads = torch.get_num_threads()
    try:
        return _plan(params, dev, budget)
    finally:
        torch.set_num_threads(threads)


def chapter_settings(params: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The settings chapters 2, 3 and 6 build from ``params``, by chapter and by the name of
    the chapter's variable (``settings``, ``density_settings``, ``mli_settings``): each is
    built as the chapter builds it (``from_params`` on the chapter's merged values), so the
    plan looks records up under the chapter's store keys."""
    out: dict[str, dict[str, Any]] = {}
    if "02_local_metrics" in params:
        p2 = _merged("02_local_metrics", params)
        out["02_local_metrics"] = {"settings": HessianSettings.from_params(p2),
                                   "density_settings": DensitySettings.from_params(p2)}
    if "03_global_connectivity" in params:
        p3 = _merged("03_global_connectivity", params)
        out["03_global_connectivity"] = {"settings": GlobalSettings.from_params(p3),
                                         "mli_settings": MLISettings.from_params(p3, prefix="mli_")}
    if "06_large_scale_structure" in params:
        out["06_large_scale_structure"] = {
            "settings": WedgeSettings.from_params(_merged("06_large_scale_structure", params))}
    return out


def _plan(params: Mapping[str, Mapping[str, Any]], dev: torch.device, budget: float) -> tuple[
        list[ChapterPlan], list[str]]:
    """The stages of :func:`plan`: time the model families, then count and cost each chapter."""
    ch1 = _merged("01_training_grid", params)
    if dev.type == "cpu":  # one thread: steady timings on a shared machine; scale by cores yourself
        torch.set_num_threads(1)
    costs = _Costs(dev, budget)
    grid = _grid(params)
    store = Store(_workdir(ch1))
    settings = chapter_settings(params)
    kinds = {}
    if "02_local_metrics" in settings:
        kinds["hvp"] = settings["02_local_metrics"]["settings"].num_samples
    if "03_global_connectivity" in settings:
        kinds["curve"] = settings["03_global_connectivity"]["settings"].curve_batch_size
    costs.prepare(grid, kinds)

    rows: list[ChapterPlan] = []
    if "01_training_grid" in params:
        rows.append(_plan_training(ch1, grid, store, costs))
    if "02_local_metrics" in settings:
        rows += _plan_local(settings["02_local_metrics"], grid, store, costs)
    if "03_global_connectivity" in settings:
        rows.append(_plan_global(settings["03_global_connectivity"]["settings"],
                                 _merged("03_global_connectivity", params), grid, store, costs))
    if "04_taxonomy" in params:
        rows += _plan_taxonomy(params, grid, store, costs)
    if "05_rugged_convexity" in params:
        p5 = _merged("05_rugged_convexity", params)
        n = len(p5["load_values"]) * len(p5["temperature_values"]) * p5["diagram_realizations"] * p5["num_runs"]
        rows.append(ChapterPlan("05_rugged_convexity", "1D Langevin runs", n, None, None,
                                "a one-weight model: seconds on any device, not timed"))
    if "06_large_scale_structure" in params:
        rows += _plan_large_scale(params, grid, costs)
    return rows, _notes(dev, costs)


def _plan_training(ch1: Mapping[str, Any], grid: list[RunConfig], store: Store, costs: _Costs) -> ChapterPlan:
    """Chapter 1: every run of the grid that the store does not hold."""
    done = [store.is_done(c, warn=False) for c in grid]
    secs = sum(costs.epoch(c) * c.num_epochs for c, d in zip(grid, done) if not d)
    cells = len({c.cell() for c in grid})
    return ChapterPlan("01_training_grid", "training runs", len(grid), sum(done), secs,
                       f"{cells} cells x {ch1['num_seeds']} seeds, {ch1['num_epochs']} epochs")


def _plan_local(settings: Mapping[str, Any], grid: list[RunConfig], store: Store,
                costs: _Costs) -> list[ChapterPlan]:
    """Chapter 2: one Hessian per run and one spectral density per cell (its lowest seed)."""
    s, ds = settings["settings"], settings["density_settings"]
    ids = [run_id(c) for c in grid]
    have = [store.load_metric(HESSIAN_METRIC, s.key(r)) is not None for r in ids]
    hvps = s.max_iter + 2 * s.sketch_size + s.max_probes  # at most: Lanczos, Hutch++ sketch, probes
    secs = sum(hvps * costs.hvp(c, s.num_samples) for c, h in zip(grid, have) if not h)
    rows = [ChapterPlan("02_local_metrics", "Hessians (λmax, trace)", len(ids), sum(have), secs,
                        f"at most {hvps} HVPs each on {s.num_samples} samples")]
    reps: dict[RunConfig, RunConfig] = {}
    for c in grid:
        if c.cell() not in reps or c.seed < reps[c.cell()].seed:
            reps[c.cell()] = c
    have_d = [store.load_metric(DENSITY_METRIC, ds.key(run_id(c))) is not None for c in reps.values()]
    hv = ds.num_runs * ds.num_steps
    secs = sum(hv * costs.hvp(c, ds.num_samples) for c, h in zip(reps.values(), have_d) if not h)
    rows.append(ChapterPlan("02_local_metrics", "spectral densities", len(reps), sum(have_d), secs,
                            f"one seed per cell, {hv} HVPs each"))
    return rows


def _plan_global(gs: GlobalSettings, p3: Mapping[str, Any], grid: list[RunConfig], store: Store,
                 costs: _Costs) -> ChapterPlan:
    """Chapter 3: the seed pairs of every cell (a Bezier fit and the path evaluations each)."""
    by_cell: dict[RunConfig, list[RunConfig]] = {}
    for c in grid:
        by_cell.setdefault(c.cell(), []).append(c)
    pairs = []
    for cs in by_cell.values():
        cs = sorted(cs, key=lambda c: c.seed)
        pairs += [(cs[i], cs[j]) for i, j in select_pairs(len(cs), p3["max_pairs"], p3["seed"])]
    have = [store.load_metric(METRIC_NAME, gs.key(run_id(a), run_id(b))) is not None for a, b in pairs]

    def pair_seconds(c: RunConfig) -> float:
        n = train_size(c.dataset, c.data_fraction)
        fit = gs.curve_epochs * (n // gs.curve_batch_size) * costs.curve_step(c, gs.curve_batch_size)
        # evaluation: 2 paths x num_points passes over the training set, a forward pass
        # taken as a third of a step (BatchNorm recalibration doubles it)
        passes = 2 * gs.num_points * (2 if c.batch_norm else 1)
        return fit + passes * n * costs.per_sample_step(c) / 3

    secs = sum(pair_seconds(a) for (a, _), h in zip(pairs, have) if not h)
    return ChapterPlan("03_global_connectivity", "seed pairs (curve, CKA)", len(pairs), sum(have), secs,
                       f"{gs.curve_epochs} curve epochs of batch {gs.curve_batch_size} each")


def _notes(dev: torch.device, costs: _Costs) -> list[str]:
    """How the costs were estimated: the device, each timer's widths, the rules of thumb."""
    notes = [f"device {dev}" + (f" ({torch.get_num_threads()} torch thread(s))" if dev.type == "cpu" else "")
             + "; costs are device-seconds of one worker, summed over the tasks not in the store."]
    for (kind, model, dataset, *_rest), timer in costs.timers.items():
        if timer.timed:
            notes.append(f"{kind} of {model} on {dataset}-shaped random inputs: {timer.how()}.")
    notes.append("training: one epoch = (seconds per sample of an SGD step, timed at batch 32) x the "
                 "training set; stacked seeds (populations) and workers make the real run faster.")
    notes.append("Hessians: at most max_iter + 2 x sketch + max_probes HVPs per run (most runs stop earlier); "
                 "an HVP is timed on <= 64 samples and scaled linearly to num_samples.")
    return notes


def _plan_taxonomy(params, grid: list[RunConfig], store: Store, costs: _Costs) -> list[ChapterPlan]:
    """Chapter 4's extra training runs: the epochs sweep and the two label-noise sweeps."""
    p4 = _merged("04_taxonomy", params)
    ch1 = _merged("01_training_grid", params)
    base = {k: ch1[k] for k in CONFIG_KEYS if k in ch1 and k != "seed"}
    load_axis, temp_axis = ch1["load_axis"], ch1["temperature_axis"]
    temps = sorted(ch1["temperature_values"])
    coldest = temps[-1] if temp_axis == "batch_size" else temps[0]
    at = p4["sweep_temperature"] or coldest
    at = int(at) if temp_axis == "batch_size" else float(at)
    known = bool(p4["sweep_loads"])
    candidates = list(p4["sweep_loads"]) if known else list(ch1["load_values"])
    ep = expand_grid({**base, temp_axis: at}, {load_axis: candidates,
                                               "num_epochs": [int(e) for e in p4["sweep_epochs"]]},
                     seeds=range(p4["sweep_seeds"]))
    count = (len(candidates) if known else 2) * len(p4["sweep_epochs"]) * p4["sweep_seeds"]
    stored = [store.is_done(c, warn=False) for c in ep]
    # unknown loads (picked from the phase map): costed at the two largest loads, an upper bound
    costed = ep if known else [c for c in ep if getattr(c, load_axis) in sorted(candidates)[-2:]]
    secs = sum(costs.epoch(c) * c.num_epochs for c in costed if not store.is_done(c, warn=False))
    rows = [ChapterPlan("04_taxonomy", "epochs-sweep runs", count, min(count, sum(stored)), secs,
                        "loads from sweep_loads" if known else
                        "loads picked after chapter 3; costed at the two largest loads")]
    nbase = dict(base, label_noise=float(p4["noise_level"]), num_epochs=int(p4["noise_epochs"]),
                 data_fraction=float(p4["noise_data_fraction"]))
    tv = (lambda v: int(v)) if temp_axis == "batch_size" else (lambda v: float(v))
    noise = expand_grid({**nbase, temp_axis: tv(p4["noise_temperature"])},
                        {"width": [int(w) for w in p4["noise_widths"]]}, seeds=range(p4["noise_seeds"]))
    noise += expand_grid({**nbase, "width": int(p4["noise_width"])},
                         {temp_axis: [tv(v) for v in p4["noise_temperatures"]]}, seeds=range(p4["noise_seeds"]))
    have = [store.is_done(c, warn=False) for c in noise]
    costs.prepare(noise, {})
    secs = sum(costs.epoch(c) * c.num_epochs for c, h in zip(noise, have) if not h)
    rows.append(ChapterPlan("04_taxonomy", "label-noise runs", len(noise), sum(have), secs,
                            f"label noise {p4['noise_level']}, {p4['noise_epochs']} epochs"))
    return rows


def _plan_large_scale(params, grid: list[RunConfig], costs: _Costs) -> list[ChapterPlan]:
    """Chapter 6's experiments on its two cells (a poorly and a well connected one, picked
    after chapter 3), counted from the parameters and costed in training epochs of the
    grid's widest model: a rough figure."""
    p6 = _merged("06_large_scale_structure", params)
    ch1 = _merged("01_training_grid", params)
    cells = 2
    extra_seeds = max(0, p6["num_solutions"] - ch1["num_seeds"]) * cells
    knobs = (len(p6["knob_lrs"]) + len(p6["knob_weight_decays"]))
    subspace = len(p6["subspace_dims"]) * p6["subspace_seeds"] * cells
    wedges = len(p6["radii"]) * p6["num_directions"] * cells
    count = extra_seeds + cells * 2 + knobs + subspace + wedges  # + simplex and tunnel per cell
    widest = max(grid, key=lambda c: (c.width, -c.batch_size))
    epoch = costs.epoch(widest)
    epochs = (extra_seeds * widest.num_epochs + knobs * widest.num_epochs
              + cells * (p6["simplex_epochs"] * p6["num_solutions"] + p6["tunnel_epochs"] * 2)
              + subspace * p6["subspace_epochs"])
    return [ChapterPlan("06_large_scale_structure", "experiments", count, None, epoch * epochs,
                        f"{extra_seeds} extra seeds, {knobs} knob runs, {cells} simplices and tunnels, "
                        f"{wedges} wedge profiles, {subspace} subspace fits; ~{epochs:,} epochs of the widest "
                        "model (rough)")]


def format_plan(rows: list[ChapterPlan], notes: list[str], params_file: str = "") -> str:
    """The plan as a fixed-width table with a total and the notes."""
    head = f"{'chapter':<26} {'tasks':<26} {'total':>7} {'stored':>7} {'to do':>7} {'est. cost':>10}  note"
    lines = [f"plan for {params_file}" if params_file else "plan", head, "-" * len(head)]
    for r in rows:
        todo = "-" if r.done is None else str(r.total - r.done)
        lines.append(f"{r.chapter:<26} {r.kind:<26} {r.total:>7} {'-' if r.done is None else r.done:>7} "
                     f"{todo:>7} {_hms(r.seconds):>10}  {r.note}")
    total = sum(r.seconds for r in rows if r.seconds is not None)
    lines.append("-" * len(head))
    lines.append(f"{'total':<26} {'':<26} {'':>7} {'':>7} {'':>7} {_hms(total):>10}  "
                 f"= {total / 3600:,.1f} device-hours")
    lines += [f"  {n}" for n in notes]
    return "\n".join(lines)


def stale_note(params: Mapping[str, Mapping[str, Any]]) -> str:
    """How many stored records of the workdir an earlier version of their algorithm made
    (``Store.stale_records``): they count as "to do" above and are computed again."""
    stale = Store(_workdir(_merged("01_training_grid", params))).stale_records()
    if not stale:
        return "stale records: none (every stored record was made by the current version of its algorithm)"
    return ("stale records (made by an earlier version of their algorithm; computed again): "
            + ", ".join(f"{name} {n}" for name, n in sorted(stale.items())))


def print_plan(params: Mapping[str, Mapping[str, Any]], params_file: str = "", budget: float = 8.0) -> None:
    t0 = time.perf_counter()
    rows, notes = plan(params, budget=budget)
    notes.append(stale_note(params))
    print(format_plan(rows, notes, str(params_file)))
    print(f"  (planned in {time.perf_counter() - t0:.0f} s; nothing was run or written)")
