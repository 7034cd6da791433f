"""A self-check of this machine for the book: ``python -m landscape_utils.book.doctor [--params P]``.

Prints, in a few seconds and without training anything:

* Python, torch, torchvision and the CUDA version torch was built for, the NVIDIA
  driver (when ``nvidia-smi`` is present) and the GPU architectures of the build;
* each visible GPU with its memory, compute capability and bfloat16 support (or that
  none is visible);
* what ``device: auto`` resolves to, and what ``executor: process`` with ``workers: 0``
  would start (worker processes, their GPU or CPU threads);
* whether the project's Jupyter kernel ``landscape-book`` is registered;
* with ``--params``: the params file checked as the book driver would before a run
  (keys, values, the grid of chapter 1, executors), each dataset the chapters name
  and whether its files are under ``data_root``, and the training precision against
  the device.

Exits 1 naming each problem when something would stop a run here (a params file that
could not run, a missing dataset, a GPU or driver the installed torch cannot use);
exits 0 otherwise. Notes that do not stop a run (e.g. no kernel registered) are
printed but do not fail.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torchvision

from ..core.train import check_precision
from ..core.utils import resolve_device
from ..runs.runner import (DATASET_FILES, available_cores, check_dataset_files, gpu_assignment, visible_gpus)
from .chapters import chapter_parameters, chapters
from .driver import ParamsError, book_path, load_params, preflight

KERNEL = "landscape-book"
# Oldest NVIDIA driver branch of each CUDA major version (CUDA's minor-version compatibility).
MIN_DRIVER = {11: 450, 12: 525, 13: 580}


@dataclass
class Report:
    """What the doctor found: printed lines, and the problems that make it fail."""

    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def say(self, text: str) -> None:
        self.lines.append(text)

    def problem(self, text: str) -> None:
        self.problems.append(text)
        self.lines.append(f"  PROBLEM: {text}")


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def nvidia_driver() -> str | None:
    """The NVIDIA driver version from ``nvidia-smi``, or None where it is absent."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = out.stdout.strip().splitlines()
    return first[0].strip() if out.returncode == 0 and first else None


def check_versions(rep: Report) -> None:
    """Python, torch, torchvision, CUDA build and driver."""
    rep.say(f"python       {platform.python_version()} ({sys.executable})")
    cuda = torch.version.cuda
    archs = torch.cuda.get_arch_list() if cuda else []
    rep.say(f"torch        {torch.__version__} (built for CUDA {cuda or 'none: CPU only'}"
            + (f"; GPU architectures {archs[0]}..{archs[-1]}" if archs else "") + ")")
    rep.say(f"torchvision  {torchvision.__version__}")
    driver = nvidia_driver()
    if cuda:
        need = MIN_DRIVER.get(int(cuda.split(".")[0]))
        rep.say(f"driver       {driver or 'no nvidia-smi on PATH'}"
                + (f" (this torch needs >= {need})" if need else ""))
        if driver and need and int(driver.split(".")[0]) < need:
            rep.problem(f"NVIDIA driver {driver} is older than {need}, the oldest that runs torch "
                        f"built for CUDA {cuda}: update the driver, or install a torch built for an "
                        f"older CUDA")


def check_gpus(rep: Report) -> list[str]:
    """Each visible GPU; returns the ids the executors would use."""
    if not torch.cuda.is_available():
        rep.say("GPUs         none visible (torch.cuda.is_available() is False)")
        if nvidia_driver() is not None:
            rep.problem("nvidia-smi sees a GPU but torch does not: check the driver version above "
                        "and CUDA_VISIBLE_DEVICES")
        return []
    archs = [a for a in torch.cuda.get_arch_list() if a.startswith("sm_")]
    oldest = min((int(a[3:]) for a in archs), default=0)
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    rep.say(f"GPUs         {torch.cuda.device_count()} visible"
            + (f" (CUDA_VISIBLE_DEVICES={env})" if env is not None else ""))
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        cap = p.major * 10 + p.minor
        bf16 = "yes" if (p.major >= 8) else "no"
        rep.say(f"  cuda:{i}  {p.name}, {_gib(p.total_memory)}, compute capability "
                f"{p.major}.{p.minor}, bf16 {bf16}")
        if oldest and cap < oldest:
            rep.problem(f"cuda:{i} ({p.name}, compute capability {p.major}.{p.minor}) is older than "
                        f"the oldest architecture this torch build runs on (sm_{oldest})")
    return visible_gpus()


def describe_executor(device: str, workers: int = 0, workers_per_gpu: int = 1) -> str:
    """What ``executor: process`` with these options would start here, in words."""
    dev = str(device)
    on_gpu = dev in ("auto", "cuda") and resolve_device(dev).type == "cuda"
    gpus = visible_gpus() if on_gpu else []
    assignment = gpu_assignment(workers, list(gpus), workers_per_gpu)
    n = len(assignment)
    threads = max(1, available_cores() // n)
    if gpus:
        per = {g: assignment.count(g) for g in gpus if g in assignment}
        spread = ", ".join(f"GPU {g}: {k}" for g, k in per.items())
        return (f"{n} worker process(es), each pinned to one GPU ({spread}), "
                f"{threads} CPU thread(s) each")
    return f"{n} worker process(es) on the CPU, {threads} torch thread(s) each"


def check_devices(rep: Report) -> None:

    rep.say(f"device: auto -> {resolve_device('auto')}")
    rep.say(f"CPU cores    {available_cores()} available to this process")
    rep.say(f"executor: process, workers: 0 -> {describe_executor('auto')}")


def check_kernel(rep: Report) -> None:
    """Whether Jupyter (papermill, JupyterLab) finds the project's kernel."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager
    except ImportError:
        rep.say(f"kernel       jupyter_client not installed: the {KERNEL!r} kernel cannot be looked up")
        return
    specs = KernelSpecManager().find_kernel_specs()
    if KERNEL not in specs:
        rep.say(f"kernel       {KERNEL!r} not registered: `make lab` registers it for JupyterLab; "
                f"the book driver registers its own for each build")
        return
    try:
        argv = KernelSpecManager().get_kernel_spec(KERNEL).argv
    except Exception as err:  # a broken kernel.json
        rep.problem(f"kernel {KERNEL!r} at {specs[KERNEL]} cannot be read: {err}")
        return
    python = argv[0] if argv else "?"
    rep.say(f"kernel       {KERNEL!r} registered at {specs[KERNEL]} (runs {python})")
    if python != sys.executable and Path(python).resolve() != Path(sys.executable).resolve():
        rep.say(f"  note: that kernel runs {python}, not this interpreter ({sys.executable}); "
                f"`make lab` re-registers it")


def _chapter_values(params: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each chapter's values as it would run: its parameter defaults, then the params file."""
    out = {}
    for chap in chapters():
        if chap.stem not in params:
            continue
        values = {name: p.default for name, p in chapter_parameters(chap).items()}
        values.update(params[chap.stem])
        out[chap.stem] = values
    return out


def check_params(rep: Report, path: str | os.PathLike) -> None:
    """The params file as the book driver checks it, plus each chapter's dataset files and
    training precision on the device it would use."""

    rep.say(f"params       {path}")
    try:
        params = load_params(path, chapters())
    except ParamsError as err:
        rep.problem(str(err))
        return
    values = _chapter_values(params)
    found: list[str] = []  # the errors already named, so the preflight does not repeat them
    seen = set()
    for stem, v in values.items():
        if "dataset" not in v:
            continue
        name, root = v["dataset"], book_path(str(v.get("data_root", "data")))
        if (name, root) in seen:
            continue
        seen.add((name, root))
        if name not in DATASET_FILES:
            rep.say(f"  dataset {name} ({stem}): made or shipped by a package, no files needed")
            continue
        try:
            check_dataset_files(name, root, bool(v.get("download", False)))
        except FileNotFoundError as err:
            found.append(str(err))
            rep.problem(f"{stem}: {err}")
            continue
        how = "download allowed" if v.get("download") else f"present under {root}"
        rep.say(f"  dataset {name} ({stem}): {how}")
    for stem, v in values.items():
        if "precision" in v:
            device = str(v.get("device", "auto"))
            try:
                check_precision(str(v["precision"]), device)
                rep.say(f"  precision {v['precision']} ({stem}) on {resolve_device(device)}: ok")
            except ValueError as err:
                found.append(str(err))
                rep.problem(f"{stem}: {err}")
        if v.get("executor") == "process":
            try:
                what = describe_executor(str(v.get("device", "auto")), int(v.get("workers", 0)),
                                         int(v.get("workers_per_gpu", 1)))
                rep.say(f"  executor process ({stem}): {what}")
            except (ValueError, TypeError):
                pass  # the preflight below names the bad option
    try:
        preflight(params, path)
    except ParamsError as err:
        msg = str(err)
        if not any(m in msg for m in found):
            rep.problem(msg)
    else:
        rep.say("  preflight: ok (the book driver's checks pass)")


def run(params: str | None = None) -> Report:
    """Everything the command prints, as a :class:`Report`."""
    rep = Report()
    check_versions(rep)
    check_gpus(rep)
    check_devices(rep)
    check_kernel(rep)
    if params is not None:
        check_params(rep, params)
    return rep


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m landscape_utils.book.doctor",
                                 description="Check this machine (and a params file) before a run.")
    ap.add_argument("--params", default=None, help="a params file to check, e.g. params/paper_cifar10.yaml")
    args = ap.parse_args(argv)
    rep = run(args.params)
    print("\n".join(f"[doctor] {line}" for line in rep.lines), flush=True)
    if rep.problems:
        print(f"[doctor] {len(rep.problems)} problem(s):", file=sys.stderr)
        for p in rep.problems:
            print(f"[doctor]   - {p}", file=sys.stderr)
        return 1
    print("[doctor] ok: nothing found that would stop a run here")
    return 0


if __name__ == "__main__":
    sys.exit(main())
