"""MNIST-1D in a new process: generated from its templates vs read from the cache file.

Every process that trains or measures loads the data once: each chapter's kernel and each
worker of a process pool (two per chapter on this machine, four while two chapters run side
by side). ``landscape_utils.core.data`` keeps the generated arrays in a cache file; this compares
the two ways a new process gets them, each in a fresh interpreter (so that neither finds
the arrays already in memory), interleaved, median of the repeats.

    python -m benchmarks --only data_cache
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from . import Row

REPO = Path(__file__).resolve().parents[1]

# one process: import the package's data module, then get the arrays; prints the seconds
# of the load alone (the imports excluded)
_PROBE = """
import time
from landscape_utils.core import data
t0 = time.perf_counter()
x = data.generate_mnist1d()["x"] if {generate} else data._mnist1d()[0]
assert x.shape[1] == 40
print(time.perf_counter() - t0)
"""


def _load_seconds(generate: bool, cache: str) -> float:
    env = {**os.environ, "LANDSCAPE_CACHE": cache}
    out = subprocess.run([sys.executable, "-c", _PROBE.format(generate=generate)], cwd=REPO, env=env,
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def run(quick: bool, repeats: int = 3) -> list[Row]:
    repeats = 1 if quick else repeats
    with tempfile.TemporaryDirectory() as cache:
        _load_seconds(False, cache)  # fills the cache (a first, generating load)
        gen, hit = [], []
        for _ in range(repeats):
            gen.append(_load_seconds(True, cache))
            hit.append(_load_seconds(False, cache))
    g, h = statistics.median(gen), statistics.median(hit)
    return [Row("data_cache", "MNIST-1D, one load in a new process", g / h,
                "faster read from the cache file than generated",
                {"generate_s": g, "cached_s": h, "repeats": repeats})]
