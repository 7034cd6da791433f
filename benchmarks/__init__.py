"""Side-by-side speed comparisons for landscape_utils, reported as ratios.

    python -m benchmarks [--quick] [--book-log PATH] [--threads N] [--json PATH]

Every comparison runs both contenders in this one process, after a warm-up, with the
repeats interleaved (A, B, A, B, ...) so that a change in machine load hits both
alike, and reports the median of the repeats. Each result is printed as one line

    [bench] <group> <case>: <ratio>x <what the ratio is> (<details>)

Groups: ``population`` (vectorized seed population vs sequential ``train_run``),
``population_lr`` (one population across the lr axis, S = 12, vs one ``train_run`` at a
time and vs one seed population per lr),
``curves`` (chapter 3's Bezier curves on the default's model, S fitted as one stack vs one
at a time), ``bn_recalibration`` (BatchNorm statistics at a path point: float64 moments
over chunks of a batch vs over the whole batch), ``allocator`` (training, curve and path
steps in child processes under glibc's malloc defaults vs the book kernels' settings),
``headroom`` (the default's training step against this CPU's GEMM rate, and eager vs
``torch.compile``),
``lambda_max`` (our Lanczos vs PyHessian's power iteration at equal accuracy),
``trace`` (our Hutch++ vs PyHessian's Hutchinson at equal standard error),
``curvlinops`` (λmax and trace, ours vs curvlinops-for-pytorch at equal accuracy on the
default's model; a benchmark-only dependency, skipped with a message when absent),
``chapters`` (wall time of each book chapter, from a driver log), ``scaling``
(time per Hessian-vector product and per epoch as the model and data grow) ,
``end_to_end`` (one cell of three seeds, trained and measured, against the authors' recipe)
and ``book_executor`` (the default book built serially and with its default executor).
Results and the machine they ran on are recorded in ``benchmarks/RESULTS.md``.
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

GROUPS = ("population", "population_lr", "curves", "bn_recalibration", "allocator", "headroom", "lambda_max", "trace", "curvlinops", "chapters", "scaling",
          "end_to_end", "book_executor", "data_cache")


@dataclass
class Row:
    """One measured comparison: ``ratio`` with a phrase saying what it compares."""

    group: str
    case: str
    ratio: float
    meaning: str
    details: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        extra = ", ".join(f"{k}={_fmt(v)}" for k, v in self.details.items())
        return f"[bench] {self.group} {self.case}: {self.ratio:.2f}x {self.meaning}" + (
            f" ({extra})" if extra else "")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median wall time (s) of each function: ``warmup`` untimed rounds, then ``repeats``
    rounds in which every function runs once, in turn (side by side)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(max(1, repeats)):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def machine_info() -> dict[str, Any]:
    """CPU model, cores, load, torch version and threads, GPU presence."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
            "load_avg_1_5_15": tuple(round(x, 2) for x in load), "python": platform.python_version()}
