"""How far a stored run's numbers depend on the CPU kernel and on the runs it was trained beside.

torch picks its CPU kernels by the processor's vector instructions (``default``: scalar,
``avx2``, ``avx512``; ``ATEN_CPU_CAPABILITY`` forces one), and the seeds of a grid cell are
trained as one stacked population (:mod:`landscape_utils.core.population`), whose batched
kernels sum in another order than a run trained alone. Both change float rounding, and
SGD amplifies a rounding difference like any other perturbation. What the package
promises (README, "Reproducibility"):

* **bit for bit** on one machine: the same config, trained in the same population (the
  runner always trains a cell's whole population, see ``runner.train_cell_task``), with
  the same CPU kernel and torch, gives the same numbers (a deleted run comes back
  unchanged);
* **to float rounding** across kernels and groupings at the start of training: a short run
  agrees within :data:`SHORT_RUN_RTOL` relative;
* **in distribution** after that: a long run on another kernel ends as far from its twin
  as a rounding-sized perturbation takes it, which on the default's CNN is of the order of
  the spread between seeds. That is why every conclusion of the book is drawn over seeds.

``python -m landscape_utils.runs.reproducibility`` trains a small probe grid under every kernel
this CPU offers, grouped and one run at a time, each in its own process, and prints the
worst relative deviation of every pair of setups; ``--long`` adds the default's CNN.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
from typing import Any, Mapping

import torch

from ..core.population import train_population
from .runner import expand_grid, populations

__all__ = ["SHORT_RUN_RTOL", "offered_capabilities", "probe", "probe_in_process",
           "max_relative_deviation", "seed_spread", "main"]

# The promised agreement of a short run's final metrics across CPU kernels and groupings
# (relative). Measured: at most 1.2e-7 for the probe's 2-epoch MLPs (see README).
SHORT_RUN_RTOL = 1e-6

METRICS = ("train_loss", "test_loss", "train_acc", "test_acc")

# torch's capability names, ordered: a CPU that offers one offers those before it.
_ORDER = ("default", "avx2", "avx512")

# The probe grids: (name, base config, axes, seeds). "short" is what the tests check.
PROBES: dict[str, tuple[dict[str, Any], dict[str, list], int]] = {
    "short": ({"dataset": "digits", "model": "mlp", "num_epochs": 2, "batch_size": 64},
              {"width": [4, 8], "lr": [0.01, 0.1]}, 2),
    "long": ({"dataset": "mnist1d", "model": "cnn", "batch_norm": True, "data_fraction": 0.5,
              "lr": 0.1, "schedule": "step", "decay_at": 0.9, "decay_factor": 0.3, "num_epochs": 10,
              "batch_size": 16}, {"width": [8]}, 3),
}


def offered_capabilities(env: Mapping[str, str] | None = None) -> list[str]:
    """The CPU kernels torch can use on this machine, from ``default`` up to its best.

    Asked of a fresh interpreter without ``ATEN_CPU_CAPABILITY`` (which would cap the answer).
    """
    env = {k: v for k, v in (env or os.environ).items() if k != "ATEN_CPU_CAPABILITY"}
    best = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                          env=env, capture_output=True, text=True, check=True).stdout.strip().lower()
    return list(_ORDER[: _ORDER.index(best) + 1]) if best in _ORDER else ["default"]


def probe(name: str = "short", grouped: bool = True) -> dict[str, dict[str, float]]:
    """Train probe grid ``name`` on the CPU (one torch thread) and return each run's final
    metrics, keyed by ``"width=..,lr=..,seed=.."``. ``grouped``: each cell's seeds as one
    population (as the runner does); otherwise each run alone."""
    torch.set_num_threads(1)
    base, axes, num_seeds = PROBES[name]
    out: dict[str, dict[str, float]] = {}
    for cell in populations(expand_grid(base, axes, seeds=range(num_seeds))):
        data = cell[0].load_data()
        for group in ([cell] if grouped else [[c] for c in cell]):
            for cfg, result in train_population(group, data, "cpu"):
                label = ",".join(f"{k}={getattr(cfg, k)}" for k in (*axes, "seed"))
                out[label] = {m: float(result["metrics"][m]) for m in METRICS}
    return out


def probe_in_process(capability: str, name: str = "short",
                     timeout: float = 1800) -> dict[str, dict[str, dict[str, float]]]:
    """:func:`probe`, grouped and one run at a time, in a new interpreter whose torch uses
    the CPU kernel ``capability``. Returns ``{"grouped": ..., "single": ...}``."""
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability}
    cmd = [sys.executable, "-m", "landscape_utils.runs.reproducibility", "--probe", name]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"probe under ATEN_CPU_CAPABILITY={capability} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def max_relative_deviation(a: Mapping[str, Mapping[str, float]], b: Mapping[str, Mapping[str, float]],
                           metrics: tuple[str, ...] = METRICS) -> float:
    """The largest ``|a - b| / |a|`` over the runs and metrics both hold (0 where both are 0).
    Raises ``ValueError`` when the two probes hold different runs."""
    if set(a) != set(b):
        raise ValueError(f"the probes hold different runs: {sorted(set(a) ^ set(b))[:3]}")
    worst = 0.0
    for run in a:
        for m in metrics:
            x, y = a[run][m], b[run][m]
            if x != y:
                worst = max(worst, abs(x - y) / max(abs(x), 1e-30))
    return worst


def seed_spread(runs: Mapping[str, Mapping[str, float]], metrics: tuple[str, ...] = METRICS) -> float:
    """The largest relative standard deviation over the seeds of one cell (runs whose labels
    agree but for ``seed=``), over the cells and metrics of a probe."""
    cells: dict[str, list[Mapping[str, float]]] = {}
    for label, m in runs.items():
        cells.setdefault(",".join(p for p in label.split(",") if not p.startswith("seed=")), []).append(m)
    worst = 0.0
    for members in cells.values():
        for metric in metrics:
            vals = [m[metric] for m in members]
            if len(vals) > 1 and statistics.fmean(vals) != 0:
                worst = max(worst, statistics.stdev(vals) / abs(statistics.fmean(vals)))
    return worst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m landscape_utils.runs.reproducibility", description=__doc__.split("\n")[0])
    ap.add_argument("--probe", choices=sorted(PROBES), default=None,
                    help="train this probe here, grouped and alone, and print its metrics as JSON")
    ap.add_argument("--long", action="store_true", help="also compare the 10-epoch CNN probe (a few minutes)")
    args = ap.parse_args(argv)
    if args.probe:
        print(json.dumps({g: probe(args.probe, g == "grouped") for g in ("grouped", "single")}))
        return 0
    caps = offered_capabilities()
    print(f"CPU kernels offered: {', '.join(caps)}")
    for name in ["short", *(["long"] if args.long else [])]:
        runs = {cap: probe_in_process(cap, name) for cap in caps}
        setups = {(cap, g): runs[cap][g] for cap in caps for g in ("grouped", "single")}
        print(f"\nprobe {name!r}: worst relative deviation of the final {', '.join(METRICS)}")
        for (s1, r1), (s2, r2) in itertools.combinations(setups.items(), 2):
            print(f"  {s1[0]:>7}/{s1[1]:<7} vs {s2[0]:>7}/{s2[1]:<7}  {max_relative_deviation(r1, r2):.1e}")
        spread = seed_spread(setups[(caps[-1], "grouped")])
        print(f"  for scale, the spread between seeds (largest relative sd over seeds in a cell): {spread:.1e}")
        again = probe_in_process(caps[-1], name)["grouped"]
        print(f"  {caps[-1]:>7}/grouped twice (same kernel and grouping): "
              f"{max_relative_deviation(setups[(caps[-1], 'grouped')], again):.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
