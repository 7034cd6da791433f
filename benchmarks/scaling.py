"""How the cost of one Hessian-vector product and one training epoch grows with the
number of parameters P and of samples N (MNIST-1D MLPs 40→w→w→10)."""
from __future__ import annotations

import statistics
import time
from dataclasses import replace

import torch
from torch import nn

from landscape_utils.core.data import load_dataset
from landscape_utils.core.models import count_parameters
from landscape_utils.core.train import RunConfig, init_model, train_run
from landscape_utils.metrics import hessian

from . import Row


def _hvp_seconds(model, batch, products: int) -> float:
    with hessian.HessianOperator(model, nn.CrossEntropyLoss(), batch, device="cpu") as op:
        v = torch.randn(op.num_params, generator=torch.Generator().manual_seed(0))
        op(v)  # warm-up
        t0 = time.perf_counter()
        for _ in range(products):
            op(v)
        return (time.perf_counter() - t0) / products


def run(quick: bool = False, repeats: int = 3) -> list[Row]:
    data = load_dataset("mnist1d")
    widths, sizes = ((16, 64), (250,)) if quick else ((32, 128, 512), (250, 1000, 4000))
    products = 3 if quick else 10
    rows: list[Row] = []
    base = None
    for w in widths:
        cfg = RunConfig(width=w, seed=0)
        model = init_model(cfg, data).eval()
        P = count_parameters(model)
        for n in sizes:
            batch = (data.x_train[:n], data.y_train[:n])
            sec = min(_hvp_seconds(model, batch, products) for _ in range(1 if quick else repeats))
            base = base or (sec, P * n)
            rows.append(Row("scaling", f"hvp P={P} N={n}", sec / base[0],
                            "time per HVP vs the smallest case",
                            {"ms_per_hvp": 1e3 * sec, "work_ratio_PxN": P * n / base[1]}))
    base = None
    for w in widths:
        for n in sizes if not quick else (256,):
            sub = replace(data, x_train=data.x_train[:n], y_train=data.y_train[:n],
                          y_train_clean=data.y_train_clean[:n])
            cfg = RunConfig(width=w, batch_size=32, num_epochs=1, seed=0)
            P = count_parameters(init_model(cfg, sub))
            train_run(cfg, sub)  # warm-up
            # the trainer's own clock: training only, not the final evaluation
            sec = statistics.median(train_run(cfg, sub)["metrics"]["train_time_s"]
                                    for _ in range(1 if quick else repeats))
            base = base or (sec, P * n)
            rows.append(Row("scaling", f"epoch P={P} N={n}", sec / base[0],
                            "time per epoch (batch 32) vs the smallest case",
                            {"s_per_epoch": sec, "work_ratio_PxN": P * n / base[1]}))
    return rows
