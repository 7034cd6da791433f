"""Small shared helpers: device resolution, full-precision scope, seeding, atomic writes and
the allocator settings of the book's processes."""
from __future__ import annotations

import contextlib
import io
import json
import os
import random
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from tqdm import tqdm as text_tqdm


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"`` into CUDA when present, else CPU; pass anything else through."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextlib.contextmanager
def cuda_tf32(enabled: bool) -> Iterator[None]:
    """TensorFloat-32 in CUDA matmuls and cuDNN convolutions on (``enabled``) or off inside
    the block; the previous settings, which are process-wide, come back on exit."""
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    if hasattr(matmul, "fp32_precision") and hasattr(conv, "fp32_precision"):
        before = (matmul.fp32_precision, conv.fp32_precision)
        matmul.fp32_precision = conv.fp32_precision = "tf32" if enabled else "ieee"
        try:
            yield
        finally:
            matmul.fp32_precision, conv.fp32_precision = before
    else:  # torch before the fp32_precision settings
        before = (matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
        try:
            yield
        finally:
            matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@contextlib.contextmanager
def full_precision() -> Iterator[None]:
    """IEEE float32 inside the block, whatever the caller set: autocast off (CPU and CUDA),
    and no TensorFloat-32 in CUDA matmuls or cuDNN convolutions (torch's default lets cuDNN
    use TF32 on Ampere and newer GPUs). The previous settings come back on exit.

    For measurements that must not depend on how a model was trained or on process-wide
    settings (Hessians, curves, CKA, evaluations).
    """
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.autocast("cpu", enabled=False))
        if torch.cuda.is_available():
            stack.enter_context(torch.autocast("cuda", enabled=False))
        stack.enter_context(cuda_tf32(False))
        yield


def seed_everything(seed: int) -> torch.Generator:
    """Seed python's ``random``, numpy and torch (CPU and CUDA) with one integer.

    Returns a CPU ``torch.Generator`` seeded the same way, for code that wants
    its own stream (data order, probes) without touching the global one.
    """
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder, then rename.

    A reader never sees a half-written file: either the old content or the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as pretty, key-sorted JSON."""
    text = json.dumps(obj, indent=1, sort_keys=True, default=_json_default, allow_nan=True)
    atomic_write_bytes(path, text.encode())


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> None:
    """Atomically ``torch.save`` an object (a state_dict, usually)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def progress_bar(iterable=None, **kwargs):
    """A tqdm progress bar that suits where we run.

    Interactive notebooks get the widget bar (``tqdm.auto``). Batch runs (papermill
    under the book driver, CI, logs) set ``LANDSCAPE_PROGRESS=text`` and get a plain
    text bar that updates at most every 10 s, so logs and executed notebooks stay short.
    """
    mode = os.environ.get("LANDSCAPE_PROGRESS", "auto")
    if mode == "off":
        kwargs["disable"] = True
    if mode in ("text", "off"):
        kwargs.setdefault("mininterval", 10.0)
        kwargs.setdefault("file", sys.stderr)
        return text_tqdm(iterable, **kwargs)
    # lazy: tqdm.auto probes for Jupyter and ipywidgets when imported; batch runs never need it
    from tqdm.auto import tqdm as auto_tqdm

    return auto_tqdm(iterable, **kwargs)


# glibc malloc for the processes that do a book's numerics (its kernels and their pool
# workers; set through their environment, which glibc reads once, when a process starts).
# By default glibc serves every allocation above an adaptive threshold with its own mmap
# and returns freed memory at the top of the heap to the kernel, so the same activation
# buffers of each step are mapped and faulted in again and again (system time, and slow
# first touches). Here blocks up to 32 MiB (the ceiling of glibc's own adaptive threshold)
# come from the heap, and the heap keeps up to 1 GiB of freed memory for reuse. Setting the
# trim threshold alone would be worse than nothing: it also freezes the mmap threshold at
# 128 KiB. Measured: ``python -m benchmarks --only allocator`` (benchmarks/RESULTS.md).
ALLOCATOR_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(2**30)}


def allocator_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """:data:`ALLOCATOR_ENV`, or nothing when ``environ`` (default ``os.environ``) sets
    either variable already: a user's own malloc settings are kept as they are."""
    environ = os.environ if environ is None else environ
    return {} if any(k in environ for k in ALLOCATOR_ENV) else dict(ALLOCATOR_ENV)


_PARENT_WATCH: dict[str, Any] = {}


def exit_with_parent(parent: int | None = None, interval: float = 0.5) -> None:
    """Make this process exit (``os._exit(1)``) within ``interval`` seconds of its parent's death.

    A worker process (a process-pool worker, a chapter's kernel, the driver's chapter
    workers) is otherwise orphaned when its parent is killed (``SIGTERM`` from a batch
    scheduler's time limit, ``kill``): it finishes its task and then waits forever, holding
    its memory (and, on a GPU, a CUDA context). Before it exits it stops what it started
    (:func:`_stop_descendants`: a local Ray, pool workers). Everything a task writes is
    written atomically, so exiting mid-task loses only that task.

    ``parent``: the pid the parent had when it started this process (pass it: a process
    that starts slowly may find itself orphaned already; default: the current parent).
    Watches from a daemon thread; calling it again in the same process does nothing.
    """
    import threading
    import time

    if _PARENT_WATCH.get("pid") == os.getpid():
        return
    parent = os.getppid() if parent is None else parent
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        _stop_descendants()
        os._exit(1)

    _PARENT_WATCH["pid"] = os.getpid()
    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _stop_descendants(timeout: float = 10.0) -> None:
    """Stop what this process started before it exits: the local Ray it started, if any
    (``ray.shutdown``, given ``timeout`` seconds), then every process still below it (Ray's
    agents, pool workers), with SIGKILL. Listing them needs psutil (which Jupyter's kernel
    brings); without it, pool workers still leave on their own (they watch their parent)."""
    import signal
    import sys
    import threading

    try:
        import psutil

        below = psutil.Process().children(recursive=True)
    except Exception:  # psutil missing, or the process table unreadable
        below = []
    ray = sys.modules.get("ray")
    if ray is not None and getattr(ray, "is_initialized", lambda: False)():
        stop = threading.Thread(target=ray.shutdown, daemon=True)
        stop.start()
        stop.join(timeout)
    for proc in below:
        try:
            proc.send_signal(signal.SIGKILL)
        except Exception:  # gone already
            pass


_BUILD_INFO: dict[str, Any] = {}


def build_info() -> dict[str, Any]:
    """What computed a result, the same for every record of this process: package version,
    git commit of the checkout (with ``+dirty`` when it has uncommitted changes; None outside a
    checkout), torch and CUDA versions, Python, and torch's CPU kernel."""
    if not _BUILD_INFO:
        import platform
        import subprocess
        from importlib.metadata import PackageNotFoundError, version

        try:
            pkg = version("landscape_utils")
        except PackageNotFoundError:
            pkg = None
        repo = Path(__file__).resolve().parents[2]
        commit = None
        if (repo / ".git").exists():
            try:
                run = lambda *a: subprocess.run(["git", "-C", str(repo), *a], capture_output=True,  # noqa: E731
                                                text=True, timeout=10).stdout.strip()
                commit = run("rev-parse", "--short=12", "HEAD") or None
                if commit and run("status", "--porcelain", "--untracked-files=no"):
                    commit += "+dirty"
            except (OSError, subprocess.SubprocessError):
                commit = None
        _BUILD_INFO.update({
            "package": pkg, "commit": commit, "torch": torch.__version__, "cuda": torch.version.cuda,
            "python": platform.python_version(), "cpu_kernel": torch.backends.cpu.get_cpu_capability()})
    return dict(_BUILD_INFO)


def provenance(device: str | torch.device, precision: str, wall_s: float) -> dict[str, Any]:
    """:func:`build_info` plus what is particular to one record: the device it was computed
    on (with the GPU's name), its precision, its wall time and the UTC time it was made."""
    import datetime

    dev = torch.device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" and torch.cuda.is_available() else None
    return {**build_info(), "device": str(dev) + (f" ({name})" if name else ""), "precision": precision,
            "wall_s": round(float(wall_s), 3),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
