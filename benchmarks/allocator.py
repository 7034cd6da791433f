"""glibc's allocator: its defaults against the settings the book's kernels start with.

The book driver starts every chapter's kernel, and so its pool workers, with
``landscape_utils.core.utils.ALLOCATOR_ENV`` (blocks up to 32 MiB from the heap, freed heap
memory kept). glibc reads those variables once, when a process starts, so the two
contenders cannot share one process: this runs the same work in child processes, one per
setting, started alternately from this process (A, B, A, B, ...), and takes the median of
each. Every child does the work of the default book on its model (SmallCNN with BatchNorm,
half of MNIST-1D, one torch thread) after an untimed warm-up of each kind:

- ``train_run``: one epoch at batch 32 (chapter 1's runs; 62 steps), final evaluation
  included;
- ``fit_bezier``: one epoch at batch 64 (chapter 3's curves; 31 steps);
- ``evaluate_path``: five points of a path, each recalibrating BatchNorm over the training
  set and then evaluating train and test loss (chapters 3 and 6);

and reports its wall time per kind and its own user and system CPU seconds. Ratio: time
with glibc's defaults / time with the book's settings.
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import replace

from . import Row

KINDS = ("train_run epoch", "fit_bezier epoch", "evaluate_path point")


def child(width: int, quick: bool) -> dict[str, float]:
    """The measured work, in this process: seconds per kind, then user and system CPU."""
    import numpy as np
    import torch

    from landscape_utils.core.models import build_model
    from landscape_utils.core.train import RunConfig, train_run
    from landscape_utils.metrics.connectivity import evaluate_path, fit_bezier

    torch.set_num_threads(1)
    cfg = RunConfig(dataset="mnist1d", data_fraction=0.5, model="cnn", batch_norm=True, width=width,
                    batch_size=32, num_epochs=1, lr=0.05, momentum=0.9, weight_decay=5e-4)
    data = cfg.load_data()
    if quick:
        from .population import _subset

        data = _subset(data, 256)
    nets = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        nets.append(build_model("cnn", width, data.in_shape, data.num_classes, batch_norm=True))
    work = {
        "train_run epoch": lambda: train_run(replace(cfg, seed=0), data, device="cpu"),
        "fit_bezier epoch": lambda: fit_bezier(nets[0], nets[1], data.x_train, data.y_train, num_epochs=1,
                                               lr=0.05, batch_size=64, device="cpu"),
    }
    curve = fit_bezier(nets[0], nets[1], data.x_train, data.y_train, num_epochs=1, lr=0.05, batch_size=64,
                       device="cpu")
    points = np.linspace(0, 1, 5)
    work["evaluate_path point"] = lambda: evaluate_path(nets[0].eval(), curve, points, data.x_train, data.y_train,
                                                        data.x_test, data.y_test, device="cpu")
    for fn in work.values():  # warm-up: oneDNN's first-call set-up, first touches
        fn()
    out = {}
    for kind, fn in work.items():
        t0 = time.perf_counter()
        fn()
        out[kind] = (time.perf_counter() - t0) / (len(points) if kind == "evaluate_path point" else 1)
    use = resource.getrusage(resource.RUSAGE_SELF)
    out.update(user_s=use.ru_utime, sys_s=use.ru_stime)
    return out


def _run_child(width: int, quick: bool, env: dict[str, str]) -> dict[str, float]:
    cmd = [sys.executable, "-m", "benchmarks.allocator", str(width)] + (["--quick"] if quick else [])
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"allocator benchmark child failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(quick: bool = False, repeats: int = 3) -> list[Row]:
    from landscape_utils.core.utils import ALLOCATOR_ENV

    plain = {k: v for k, v in os.environ.items() if k not in ALLOCATOR_ENV}
    envs = {"glibc defaults": plain, "book settings": {**plain, **ALLOCATOR_ENV}}
    widths = (4,) if quick else (32, 64)
    repeats = 1 if quick else repeats
    rows = []
    for width in widths:
        got: dict[str, list[dict[str, float]]] = {k: [] for k in envs}
        for _ in range(repeats):
            for name, env in envs.items():
                got[name].append(_run_child(width, quick, env))
        med = {name: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for name, runs in got.items()}
        base, book = med["glibc defaults"], med["book settings"]
        for kind in KINDS:
            rows.append(Row("allocator", f"cnn+bn width={width} {kind}", base[kind] / book[kind],
                            "speed, the book's malloc settings vs glibc's defaults",
                            {"book_ms": 1e3 * book[kind], "defaults_ms": 1e3 * base[kind]}))
        rows.append(Row("allocator", f"cnn+bn width={width} system CPU of one child",
                        base["sys_s"] / max(book["sys_s"], 1e-9),
                        "less system time with the book's malloc settings",
                        {"book_sys_s": book["sys_s"], "defaults_sys_s": base["sys_s"],
                         "book_user_s": book["user_s"], "defaults_user_s": base["user_s"]}))
    return rows


if __name__ == "__main__":
    args = sys.argv[1:]
    print(json.dumps(child(int(args[0]), "--quick" in args)))
