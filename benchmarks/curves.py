"""Chapter 3's curves: S Bezier curves fitted as one stack against one at a time.

The default book's chapter 3 fits a quadratic Bezier curve between every seed pair of its
grid (48 curves of 3720 steps at batch 64). ``global_metrics.fit_curves`` now fits the
pairs of a task together (``fit_bezier_batch``, a ``vmap`` over stacked weights) where it
used to fit a BatchNorm model's curves one :func:`fit_bezier` at a time. This measures what
that buys on the default's model: SmallCNN with BatchNorm on half of MNIST-1D (2000
samples), batch 64, lr 0.05, the book's task size S = 6 and a whole width's 12 pairs, both
contenders side by side in this process, repeats interleaved, median taken. The endpoints
are untrained networks of the default's architecture (a step costs the same whatever the
weights). Ratio: time one at a time / time stacked.
"""
from __future__ import annotations

import torch

from landscape_utils.core.models import build_model
from landscape_utils.core.train import RunConfig
from landscape_utils.experiments.global_metrics import fit_bezier_batch
from landscape_utils.metrics.connectivity import fit_bezier

from . import Row, interleaved


def cases(quick: bool) -> list[tuple[int, int]]:
    """(width, S) pairs to measure."""
    if quick:
        return [(4, 3)]
    return [(w, s) for w in (8, 16, 32, 64) for s in (6, 12)]


def run(quick: bool = False, repeats: int = 3, epochs: int = 2) -> list[Row]:
    data = RunConfig(dataset="mnist1d", data_fraction=0.5, model="cnn", batch_norm=True).load_data()
    x, y = data.x_train, data.y_train
    if quick:
        x, y, repeats, epochs = x[:256], y[:256], 1, 1
    kwargs = dict(num_epochs=epochs, lr=0.05, batch_size=64, weight_decay=5e-4, momentum=0.9, seed=0,
                  device="cpu")
    rows = []
    for width, S in cases(quick):
        nets = []
        for seed in range(S + 1):
            torch.manual_seed(seed)
            nets.append(build_model("cnn", width, data.in_shape, data.num_classes, batch_norm=True).eval())
        pairs = [(nets[i], nets[i + 1]) for i in range(S)]
        t = interleaved({"one_at_a_time": lambda: [fit_bezier(a, b, x, y, **kwargs) for a, b in pairs],
                         "stacked": lambda: fit_bezier_batch(pairs, x, y, **kwargs)},
                        repeats, warmup=1)
        steps = epochs * (x.shape[0] // 64)
        rows.append(Row("curves", f"cnn+bn width={width} S={S}", t["one_at_a_time"] / t["stacked"],
                        "curves/s, S curves fitted as one stack vs one fit_bezier at a time",
                        {"stacked_s": t["stacked"], "one_at_a_time_s": t["one_at_a_time"],
                         "ms_per_curve_step_stacked": 1e3 * t["stacked"] / (S * steps),
                         "ms_per_curve_step_alone": 1e3 * t["one_at_a_time"] / (S * steps),
                         "steps_per_curve": steps}))
    return rows
