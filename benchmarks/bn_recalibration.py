"""BatchNorm recalibration: float64 moments over chunks of a batch vs over the whole batch.

Every point a path, a cut or a surface evaluates first recomputes the BatchNorm statistics
over the training set (``connectivity.recalibrate_bn``, exact pooled moments in float64).
Converting a whole batch of a layer's inputs to float64 at once (tens of MB at batch 1024)
made the moments cost more than the forward pass; they are now computed over chunks of
``connectivity._MOMENT_CHUNK`` values and merged (Chan et al.'s update). This times both
side by side in one process on the default's model (SmallCNN with BatchNorm, half of
MNIST-1D, untrained weights, one torch thread): the recalibration alone, and one point of
``evaluate_path`` (recalibration, then train and test loss and error). The whole-batch
contender is the same function with the chunk set larger than any batch. Ratio = time
whole batch / time chunked.
"""
from __future__ import annotations

import torch

from landscape_utils.core.models import build_model
from landscape_utils.core.train import RunConfig
from landscape_utils.metrics import connectivity
from landscape_utils.metrics.connectivity import evaluate_path, linear_path, recalibrate_bn

from . import Row, interleaved

WHOLE_BATCH = 2**62


def run(quick: bool = False, repeats: int = 5) -> list[Row]:
    data = RunConfig(dataset="mnist1d", data_fraction=0.5, model="cnn", batch_norm=True).load_data()
    x, y, xt, yt = data.x_train, data.y_train, data.x_test, data.y_test
    widths = (4,) if quick else (8, 16, 32, 64)
    if quick:
        x, y, xt, yt, repeats = x[:256], y[:256], xt[:64], yt[:64], 1
    chunk = connectivity._MOMENT_CHUNK
    rows = []
    for width in widths:
        nets = []
        for seed in (0, 1):
            torch.manual_seed(seed)
            nets.append(build_model("cnn", width, data.in_shape, data.num_classes, batch_norm=True).eval())
        path = linear_path(*nets)

        def timed(fn, size):
            def go():
                connectivity._MOMENT_CHUNK = size
                try:
                    fn()
                finally:
                    connectivity._MOMENT_CHUNK = chunk
            return go

        for case, fn in (("recalibrate_bn", lambda: recalibrate_bn(nets[0], x, 1024)),
                         ("evaluate_path point", lambda: evaluate_path(nets[0], path, [0.5], x, y, xt, yt,
                                                                       device="cpu"))):
            t = interleaved({"whole": timed(fn, WHOLE_BATCH), "chunked": timed(fn, chunk)}, repeats, warmup=1)
            rows.append(Row("bn_recalibration", f"cnn+bn width={width} {case}", t["whole"] / t["chunked"],
                            "speed, moments over chunks vs over the whole batch",
                            {"chunked_ms": 1e3 * t["chunked"], "whole_ms": 1e3 * t["whole"],
                             "n_train": int(x.shape[0]), "chunk_values": chunk}))
    return rows
