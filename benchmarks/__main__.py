"""``python -m benchmarks [--quick]``: run the comparisons and print one line each."""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import time

import torch

from . import GROUPS, machine_info


# groups whose entry point is ``fn(quick, repeats=...)`` (repeats passed only when given):
# group -> (module of this package, function)
_QUICK_AND_REPEATS = {"population": ("population", "run"), "population_lr": ("population", "lr_axis"),
                      "curves": ("curves", "run"), "bn_recalibration": ("bn_recalibration", "run"),
                      "allocator": ("allocator", "run"), "headroom": ("headroom", "run")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("--quick", action="store_true",
                    help="tiny sizes, one repeat: checks that every comparison still runs")
    ap.add_argument("--only", default=",".join(GROUPS),
                    help=f"comma-separated groups to run (default all: {','.join(GROUPS)})")
    ap.add_argument("--book-log", default=None,
                    help="a book driver log to read chapter times from ('[book] X: done in N s')")
    ap.add_argument("--chapters", default=None,
                    help="full mode without --book-log: chapters to build, e.g. 01,02")
    ap.add_argument("--params", default="params/default.yaml",
                    help="full mode without --book-log: the params file of the build")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads for both contenders (default 1: on a shared, "
                         "loaded CPU more threads make small ops wait on each other)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats (median taken)")
    ap.add_argument("--json", default=None, help="also write all rows to this JSON file")
    args = ap.parse_args(argv)

    groups = [g.strip() for g in args.only.split(",") if g.strip()]
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        ap.error(f"unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    torch.set_num_threads(max(1, args.threads))
    info = machine_info()
    print(f"[bench] machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, "
          f"{info['threads']} thread(s), CUDA {'yes' if info['cuda'] else 'no'}, "
          f"load {info['load_avg_1_5_15']}, mode {'quick' if args.quick else 'full'}", flush=True)

    rows = []
    t_start = time.perf_counter()
    for group in groups:
        t0 = time.perf_counter()
        if group in _QUICK_AND_REPEATS:
            module, fn = _QUICK_AND_REPEATS[group]
            run = getattr(importlib.import_module(f".{module}", __package__), fn)
            new = run(args.quick, **({} if args.repeats is None else {"repeats": args.repeats}))
        elif group == "lambda_max":
            from . import hessian_bench
            new = hessian_bench.lambda_max(args.quick, args.repeats or (1 if args.quick else 5))
        elif group == "trace":
            from . import hessian_bench
            new = hessian_bench.trace(args.quick, args.repeats or (1 if args.quick else 3))
        elif group == "curvlinops":
            from . import hessian_bench
            new = hessian_bench.curvlinops_peer(args.quick, args.repeats or (1 if args.quick else 3))
            if not new:
                print(f"[bench] curvlinops: skipped ({hessian_bench.CURVLINOPS_MISSING})", flush=True)
        elif group == "chapters":
            from . import chapters
            new = chapters.run(args.quick, args.book_log, args.chapters, args.params)
            if not new:
                print("[bench] chapters: skipped (quick mode never builds the book; "
                      "pass --book-log PATH)", flush=True)
        elif group == "book_executor":
            from . import book_executor
            new = book_executor.run(args.quick, args.params, args.chapters)
        elif group == "data_cache":
            from . import data_cache
            new = data_cache.run(args.quick, args.repeats or 3)
        elif group == "end_to_end":
            from . import end_to_end
            new = end_to_end.run(args.quick)
        else:
            from . import scaling
            new = scaling.run(args.quick, args.repeats or (1 if args.quick else 3))
        for row in new:
            print(row.line(), flush=True)
        print(f"[bench] ({group} took {time.perf_counter() - t0:.1f} s)", flush=True)
        rows.extend(new)
    print(f"[bench] done in {time.perf_counter() - t_start:.1f} s", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": info, "quick": args.quick,
                       "rows": [r.__dict__ for r in rows]}, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
