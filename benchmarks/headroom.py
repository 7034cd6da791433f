"""How far the default's training step is from this CPU's arithmetic peak, and what a compiler buys.

The default book's time goes into steps of one small model: SmallCNN with BatchNorm on
MNIST-1D (chapter 1 trains it at batch 32, chapter 3 fits its curves at batch 64). This
measures, on one torch thread:

- the machine's float32 GEMM rate (a 512 × 512 matmul, GFLOP/s), the most this CPU does
  per second in the convolutions' and linear layers' arithmetic;
- one step of the model (forward, cross-entropy, backward) as the book runs it (eager),
  its FLOPs counted by ``torch.utils.flop_counter`` (convolutions and matmuls, forward and
  backward; the elementwise work of BatchNorm, ReLU and pooling is not counted), hence its
  GFLOP/s and how far below the GEMM rate it runs;
- the same step under ``torch.compile`` (inductor's default mode: C++ kernels that fuse the
  elementwise work), eager and compiled side by side, repeats interleaved, and the compile
  time of the first call. The book does not compile; this row is the headroom a compiler
  would give. Skipped, saying why, where inductor cannot build (no C++ compiler).

Ratios: "below peak" = GEMM rate / the eager step's rate; "compiled" = eager time / compiled
time.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from . import Row, interleaved


def gemm_gflops(n: int = 512, seconds: float = 1.0) -> float:
    """float32 GFLOP/s of an n × n matmul, repeated for ``seconds`` after a warm-up."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    k, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        k += 1
    return 2 * n**3 * k / (time.perf_counter() - t0) / 1e9


def step_flops(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """FLOPs of one forward + cross-entropy + backward of ``model`` on (x, y)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def cases(quick: bool) -> list[tuple[int, int]]:
    """(width, batch) pairs: the curves' batch 64 at every width, the training batch 32 at 64."""
    if quick:
        return [(4, 16)]
    return [(8, 64), (16, 64), (32, 64), (64, 64), (64, 32)]


def run(quick: bool = False, repeats: int = 5, steps: int = 50) -> list[Row]:
    from landscape_utils.core.models import build_model
    from landscape_utils.core.train import RunConfig

    data = RunConfig(dataset="mnist1d", data_fraction=0.5, model="cnn", batch_norm=True).load_data()
    if quick:
        repeats, steps = 1, 3
    peak = gemm_gflops(seconds=0.2 if quick else 1.0)
    rows = []
    for width, batch in cases(quick):
        torch.manual_seed(0)
        model = build_model("cnn", width, data.in_shape, data.num_classes, batch_norm=True).train()
        x, y = data.x_train[:batch], data.y_train[:batch]
        flops = step_flops(model, x, y)

        def steps_of(net):
            def go():
                for _ in range(steps):
                    F.cross_entropy(net(x), y).backward()
            return go

        eager = interleaved({"eager": steps_of(model)}, repeats)["eager"] / steps
        rate = flops / eager / 1e9
        case = f"cnn+bn width={width} batch={batch}"
        rows.append(Row("headroom", f"{case} eager step vs GEMM", peak / rate,
                        "below this CPU's float32 GEMM rate",
                        {"gflop_per_step": flops / 1e9, "eager_ms": 1e3 * eager, "step_gflops": rate,
                         "gemm_gflops": peak}))
        try:
            compiled = torch.compile(model)
            t0 = time.perf_counter()
            F.cross_entropy(compiled(x), y).backward()
            compile_s = time.perf_counter() - t0
        except Exception as err:  # inductor needs a working C++ compiler
            print(f"[bench] headroom {case} compiled: skipped ({type(err).__name__}: {str(err)[:200]})", flush=True)
            continue
        t = interleaved({"eager": steps_of(model), "compiled": steps_of(compiled)}, repeats)
        rows.append(Row("headroom", f"{case} compiled step", t["eager"] / t["compiled"],
                        "speed, torch.compile vs eager (the book runs eager)",
                        {"eager_ms": 1e3 * t["eager"] / steps, "compiled_ms": 1e3 * t["compiled"] / steps,
                         "first_call_s": compile_s}))
    return rows
