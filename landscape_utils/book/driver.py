"""The book driver: execute the chapters with papermill and render the HTML book.

    python -m landscape_utils.book --params params/default.yaml --out build/default [--chapters 01,03]
    python -m landscape_utils.book --params params/default.yaml --plan
    python -m landscape_utils.book --params params/default.yaml --export-chapter 01 > chapter01.yaml

The params file is YAML with a ``shared`` section (keys given to every chapter that
declares them) and one section per chapter, named by the chapter's file stem
(e.g. ``01_training_grid``). Before anything runs, the driver rejects a missing
file, malformed YAML, unknown sections, unknown keys (naming key and chapter) and
values whose type does not match the chapter's annotation; then :func:`preflight`
checks every chapter's values (counts, tolerances, lists, the device), every run
config chapter 1 would build, the dataset files and the executor.
Any of these exits with code 2 and a message; a chapter that fails while running
exits with code 1 naming the chapter.

While a chapter runs, the progress bars of the package (``utils.progress_bar``) reach
the driver through the kernel's stderr and are relayed, throttled, as one line each:
``[book] 01_training_grid | training 48 runs: 12/48 (25%), elapsed 02:10, left ~06:30``.

Outputs under ``--out``: ``notebooks/<chapter>.ipynb`` (executed, also on failure,
with the traceback), ``book.log`` (what the driver printed) and ``html/index.html``
(Jupyter Book 1.x, execution off, charts and math rendered offline, code folded).
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from ..core.settings import EXECUTOR_OPTIONS
from .chapters import BOOK_DIR, RENAMED, REPO, book_path, chapter_key, chapter_parameters, chapters, merged_values

KERNEL = "landscape-book"


class ParamsError(ValueError):
    """A problem with the params file, found before anything runs."""


_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "list": (list,),
          "dict": (dict,)}


def _type_ok(value: Any, annotation: str | None) -> bool:
    if annotation is None:
        return True
    options = [a.strip() for a in annotation.split("|")]
    for a in options:
        base = a.split("[")[0]
        if base == "None" and value is None:
            return True
        if base not in _TYPES:
            return True  # an annotation we do not check
        if value is None:
            continue  # an empty YAML value (``key:``) where a value is needed
        if isinstance(value, bool) and base in ("int", "float"):
            continue
        if isinstance(value, _TYPES[base]):
            return True
    return False


def load_params(path: str | os.PathLike, selected: list[Path]) -> dict[str, dict[str, Any]]:
    """Read and validate a params file. Returns ``{chapter_stem: {key: value}}``."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ParamsError(f"malformed YAML in {path}: {err}") from err
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: the top level must be a mapping of sections")
    all_stems = {p.stem for p in chapters()}
    for section in raw:
        if section != "shared" and section not in all_stems:
            raise ParamsError(f"{path}: unknown section {section!r}; sections are 'shared' and the "
                              f"chapter stems: {', '.join(sorted(all_stems))}")
    for section, body in raw.items():
        if body is not None and not isinstance(body, dict):
            raise ParamsError(f"{path}: section {section!r} must be a mapping of key: value")
    declared = {p.stem: chapter_parameters(p) for p in chapters()}
    shared = raw.get("shared") or {}
    renamed = {old: new for names in RENAMED.values() for old, new in names.items()}
    for key in shared:
        if key in renamed and not any(key in d for d in declared.values()):
            raise ParamsError(f"{path}: key {key!r} in section 'shared' was renamed to {renamed[key]!r}")
        if not any(key in d for d in declared.values()):
            raise ParamsError(f"{path}: unknown key {key!r} in section 'shared': no chapter declares it")
    out = {}
    for chap in selected:
        decl = declared[chap.stem]
        section = raw.get(chap.stem) or {}
        for key, value in section.items():
            if key not in decl and key in RENAMED.get(chap.stem, {}):
                raise ParamsError(f"{path}: key {key!r} for chapter {chap.stem} was renamed to "
                                  f"{RENAMED[chap.stem][key]!r}")
            if key not in decl:
                raise ParamsError(f"{path}: unknown key {key!r} for chapter {chap.stem}; its parameters "
                                  f"are: {', '.join(decl)}")
        values = {k: v for k, v in shared.items() if k in decl}
        values.update(section)
        for key, value in values.items():
            if not _type_ok(value, decl[key].annotation):
                raise ParamsError(f"{path}: key {key!r} for chapter {chap.stem} should be "
                                  f"{decl[key].annotation}, got {type(value).__name__} {value!r}")
        if "workdir" in values:
            values["workdir"] = str(Path(values["workdir"]).resolve())
        out[chap.stem] = values
    return out


# ---- value checks of every chapter --------------------------------------------------
# Integer keys named like a count must be >= 1 (``num_*``, ``*_epochs``, ``*_seeds``, ...),
# except num_threads, where 0 keeps torch's default. The executor options are checked by
# ``runner.make_executor``.
_COUNT = re.compile(r"^(num|max|n)_|_(epochs|seeds|samples|steps|runs|points|batches|realizations|size|"
                    r"sweeps|resolution|pairs|probes|iter|solutions|directions|distances|at_once)$|^(k|points)$")
_ZERO_OK = {"num_threads"}
_POSITIVE = {"noise_width"}  # not named like a count, yet >= 1 (chapter 1 checks its own as run configs)
# (low, high, low_open, high_open) for float keys; None = unbounded.
_RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "tol": (0, 1, True, True), "rel_tol": (0, 1, True, True),
    "low_loss_quantile": (0, 1, False, False), "noise_level": (0, 1, False, False),
    "noise_data_fraction": (0, 1, True, False), "subspace_target_frac": (0, 1, True, False),
    "sensitivity_rel": (0, 1, False, True), "cka_high": (0, 1, False, False),
    "train_loss_high": (0, None, True, False), "mc_neg": (0, None, False, False),
    "mc_pos": (0, None, False, False), "curve_lr": (0, None, True, False),
    "simplex_lr": (0, None, True, False), "subspace_lr": (0, None, True, False),
    "curve_weight_decay": (0, None, False, False), "simplex_weight_decay": (0, None, False, False),
    "volume_weight": (0, None, False, False), "mixup_alpha": (0, None, True, False),
    "max_distance": (0, None, True, False), "err_rise": (0, None, True, False),
    "loss_rise": (0, None, True, False), "init_std": (0, None, True, False),
    "roughness": (0, None, False, False), "noise_temperature": (0, None, True, False),
    "sweep_temperature": (0, None, False, False), "failed_train_acc": (0, 1, False, False),
}
# Lists a chapter cannot do without, and the rule for their items.
_LISTS: dict[str, tuple[bool, str]] = {   # key: (must be non-empty, item rule)
    "sweep_epochs": (True, "positive int"), "noise_widths": (True, "positive int"),
    "noise_temperatures": (True, "positive"), "radii": (True, "positive"),
    "subspace_dims": (True, "positive int"), "knob_lrs": (True, "positive"),
    "knob_weight_decays": (False, "non-negative"), "anneal_loads": (True, "positive"),
    "anneal_temperatures": (True, "positive"), "sweep_loads": (False, "positive"),
}
# Chapter 5's axes are numbers of its 1D model; chapter 1's are checked as run configs.
_LISTS_BY_CHAPTER = {"05_rugged_convexity": {"load_values": (True, "positive"),
                                             "temperature_values": (True, "positive")}}


def _in_range(v: float, rule: tuple) -> bool:
    lo, hi, lo_open, hi_open = rule
    if lo is not None and (v <= lo if lo_open else v < lo):
        return False
    return not (hi is not None and (v >= hi if hi_open else v > hi))


def _range_text(rule: tuple) -> str:
    lo, hi, lo_open, hi_open = rule
    if hi is None:
        return "> 0" if lo_open else f">= {lo}"
    return f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"


def check_values(stem: str, values: dict[str, Any]) -> None:
    """Check the values of one chapter (its defaults merged with the params file).

    Counts (integer keys named like ``num_*``, ``*_epochs``, ``*_seeds``, ...) must be
    at least 1, tolerances and fractions must lie in their ranges, the lists a chapter
    needs must be non-empty with valid items, and ``cka_samples`` must give at least 4
    inputs per CKA batch. Raises ``ValueError`` naming the key and the value.
    """
    def bad(key: str, why: str) -> ValueError:
        return ValueError(f"key {key!r} {why}, got {values[key]!r}")

    own = set(EXECUTOR_OPTIONS)  # checked by make_executor in the preflight
    if stem == "01_training_grid":  # its run configs are checked as such (RunConfig.validate)
        from ..runs.runner import CONFIG_KEYS

        own |= set(CONFIG_KEYS) | {"num_seeds", "first_seed"}
    for key, v in values.items():
        if isinstance(v, bool) or key in own:
            continue
        if isinstance(v, int) and key not in _ZERO_OK and v < 1:
            if _COUNT.search(key):
                raise bad(key, "is a count and must be >= 1")
            if key in _POSITIVE:
                raise bad(key, "must be >= 1")
        if isinstance(v, int) and key in _ZERO_OK and v < 0:
            raise bad(key, "must be >= 0")
        if isinstance(v, (int, float)) and key in _RANGES and not _in_range(float(v), _RANGES[key]):
            raise bad(key, f"must be {_range_text(_RANGES[key])}")
        rules = {**_LISTS, **_LISTS_BY_CHAPTER.get(stem, {})}
        if isinstance(v, list) and key in rules:
            needed, item = rules[key]
            if needed and not v:
                raise bad(key, "must be a non-empty list")
            for x in v:
                ok = isinstance(x, (int, float)) and not isinstance(x, bool)
                if ok and "int" in item:
                    ok = isinstance(x, int) or float(x).is_integer()
                if ok and item.startswith("positive"):
                    ok = x > 0
                if ok and item == "non-negative":
                    ok = x >= 0
                if not ok:
                    raise bad(key, f"must hold {item} numbers only ({x!r} is not)")
    if stem == "04b_released_grids" and "explore" in values:
        from ..experiments.zoo import ZOOS  # no torch

        if values["explore"] not in ZOOS:
            raise bad("explore", f"must name a zoo ({', '.join(ZOOS)})")
    if stem == "03_global_connectivity" and {"cka_samples", "cka_batches", "num_points"} <= set(values):
        if values["num_points"] < 3:
            raise bad("num_points", "must be >= 3 (the endpoints and one point between)")
        if values["cka_samples"] < 4 * values["cka_batches"]:
            raise bad("cka_samples", f"must be at least 4 x cka_batches={values['cka_batches']}")


def check_device(value: Any) -> None:
    """Refuse a device this machine does not have: ``cuda`` without CUDA, ``cuda:3`` with
    fewer GPUs, ``mps`` without MPS, or a string torch cannot parse. ``auto`` always passes."""
    import torch

    if value == "auto":
        return
    try:
        dev = torch.device(value)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"key 'device' is not a torch device, got {value!r} ({err}); use auto, cpu, "
                         "cuda or cuda:N") from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"key 'device' is {value!r} but CUDA is not available on this machine "
                             f"(torch {torch.__version__}, torch.cuda.is_available() is False); "
                             "use device: auto or cpu")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"key 'device' is {value!r} but this machine has {count} CUDA device(s) "
                             f"(cuda:0 to cuda:{count - 1})")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"key 'device' is {value!r} but MPS is not available on this machine; use auto or cpu")


def preflight(params: dict[str, dict[str, Any]], path: str | os.PathLike = "params", data: bool = True) -> None:
    """Checks that need the package, run before any chapter (raise ``ParamsError``).

    Every chapter's device (:func:`check_device`) and values (:func:`check_values`). For chapter 1 every run config of its grid is built and checked (values, batch
    size against the training set, the dataset's files under ``data_root`` unless
    ``download``). For every chapter with an ``executor`` parameter the executor name
    and options are checked; when runs are still to train, a Ray executor also checks
    that Ray is installed and the cluster answers. Chapter defaults fill keys the
    params file does not set. ``data=False`` skips the dataset files (for ``--plan``,
    which needs no data).
    """
    from ..runs.runner import check_configs, grid_from_params, make_executor
    from ..runs.store import Store

    check_seeds(params, path)
    for stem, values in params.items():
        merged = merged_values(stem, values)
        where = f"{path}: chapter {stem}"
        try:
            if "device" in merged:
                check_device(merged["device"])
            check_values(stem, merged)
        except ValueError as err:
            raise ParamsError(f"{where}: {err}") from err
        configs = None
        if stem == "01_training_grid":
            try:
                configs = grid_from_params(merged)
                check_configs(configs, book_path(merged.get("data_root", "data")),
                              merged.get("download", False) or not data)
            except (ValueError, TypeError, KeyError, FileNotFoundError) as err:
                raise ParamsError(f"{where}: {err}") from err
        if "executor" in merged:
            opts = {k: merged[k] for k in EXECUTOR_OPTIONS if k in merged}
            try:
                ex = make_executor(merged["executor"], device=str(merged.get("device", "auto")), **opts)
                workdir = book_path(merged.get("workdir", "."))
                todo = configs is None or any(not Store(workdir).is_done(c, warn=False) for c in configs)
                if todo and hasattr(ex, "check"):
                    ex.check()
            except (ValueError, ImportError, ConnectionError) as err:
                raise ParamsError(f"{where}: {err}") from err


# Chapters that compare seeds of a cell with each other (mode connectivity, CKA, L2, and the
# phases built on them): they need at least two seeds per cell of chapter 1's grid.
NEEDS_TWO_SEEDS = ("03_global_connectivity", "04_taxonomy")
TRAINING_GRID = "01_training_grid"


def check_seeds(params: dict[str, dict[str, Any]], path: str | os.PathLike = "params") -> None:
    """``ParamsError`` when a chapter of :data:`NEEDS_TWO_SEEDS` is to run on a grid of fewer
    than two seeds per cell. Chapter 1's ``num_seeds`` is read from its section of the params
    file (or its default) also when chapter 1 itself is not selected."""
    wanted = [stem for stem in params if stem in NEEDS_TWO_SEEDS]
    if not wanted:
        return
    if TRAINING_GRID in params:
        grid = params[TRAINING_GRID]
    else:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError):
            raw = {}
        section = raw.get(TRAINING_GRID) if isinstance(raw, dict) else None
        grid = section if isinstance(section, dict) else {}
    num_seeds = merged_values(TRAINING_GRID, grid).get("num_seeds")
    if isinstance(num_seeds, int) and num_seeds < 2:
        raise ParamsError(
            f"{path}: chapter {TRAINING_GRID}: num_seeds={num_seeds}, but {' and '.join(wanted)} need at "
            "least two seeds per cell (mode connectivity, CKA and L2 are measured between seeds, and the "
            "phases rest on them); set num_seeds to 2 or more, or build only chapters 01 and 02 "
            "(--chapters 01,02)")


def _select(spec: str | None) -> list[Path]:
    allc = chapters()
    if not spec:
        return allc
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    keys = {chapter_key(c.stem) for c in allc}

    def picks(c: Path, w: str) -> bool:  # "04" is 04_taxonomy, not 04b_...; a longer prefix as before
        return chapter_key(c.stem) == w if w in keys else c.stem.startswith(w)

    chosen = [c for c in allc if any(picks(c, w) for w in wanted)]
    missing = [w for w in wanted if not any(picks(c, w) for c in allc)]
    if missing:
        raise ParamsError(f"unknown chapter(s) {', '.join(missing)}; chapters: {', '.join(c.stem for c in allc)}")
    return chosen


def _kernel_env(out: Path) -> dict[str, str]:
    """A kernelspec for this interpreter, found first through JUPYTER_PATH.

    The kernel starts through :func:`kernel_main`, which drops ipykernel's warning that
    it runs over TCP without encryption (papermill's kernel is local, on 127.0.0.1, and
    the warning would be printed once per chapter); every other message passes.

    Returns the environment the kernels (and their pool workers) start with: the
    kernelspec's path, the book's flags, and glibc's allocator settings
    (:data:`landscape_utils.core.utils.ALLOCATOR_ENV`, unless the user set their own).
    """
    from ..core.utils import allocator_env  # imports torch: not at the driver's import

    kdir = out / "jupyter" / "kernels" / KERNEL
    kdir.mkdir(parents=True, exist_ok=True)
    (kdir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-c", KERNEL_LAUNCHER, "-f", "{connection_file}"],
        "display_name": "landscape-book", "language": "python"}))
    env = {"JUPYTER_PATH": str(out / "jupyter"), "LANDSCAPE_BOOK": "1", "LANDSCAPE_PROGRESS": "text",
           "PYDEVD_DISABLE_FILE_VALIDATION": "1", **allocator_env()}
    return env


TCP_WARNING = "Kernel is running over TCP without encryption"


class _DropTcpWarning:
    """A logging filter that drops only ipykernel's TCP-without-encryption warning."""

    def filter(self, record) -> bool:
        return TCP_WARNING not in record.getMessage()


KERNEL_LAUNCHER = "from landscape_utils.book.driver import kernel_main; kernel_main()"


def kernel_main() -> None:
    """Start an IPython kernel (as ``python -m ipykernel_launcher`` does), with two changes.

    It drops ipykernel's warning that it runs over TCP without encryption (the driver's and
    JupyterLab's kernels are local), and its ``language_info`` leaves out the Python
    version: the chapters' headers store the rest of it, so JupyterLab finds nothing to
    update when the kernel starts and does not mark a chapter modified on opening, on any
    Python version.
    """
    if sys.path and sys.path[0] in ("", "."):
        del sys.path[0]  # as ipykernel_launcher does: the kernel's cwd is added back by IPython
    from ..core.utils import exit_with_parent

    # the kernel (and so its pool workers) ends with the process that started it
    exit_with_parent(int(os.environ["JPY_PARENT_PID"]) if os.environ.get("JPY_PARENT_PID", "").isdigit() else None)
    from ipykernel.ipkernel import IPythonKernel
    from ipykernel.kernelapp import IPKernelApp

    IPythonKernel.language_info = {k: v for k, v in IPythonKernel.language_info.items() if k != "version"}

    app = IPKernelApp.instance()
    app.log.addFilter(_DropTcpWarning())
    app.initialize(sys.argv[1:])
    app.log.addFilter(_DropTcpWarning())  # in case initialize() replaced the logger
    app.start()


def install_kernel(display_name: str = "landscape-book (.venv)") -> Path:
    """Register the kernel ``landscape-book`` (this interpreter, started by :func:`kernel_main`)
    in ``sys.prefix`` (the venv), as ``make kernel`` and ``make lab`` do. Returns its folder.

    The kernel starts with the book's allocator settings (the kernelspec's ``env``:
    :data:`landscape_utils.core.utils.ALLOCATOR_ENV`, unless this process has its own), so a
    chapter run in JupyterLab or with papermill computes as fast as in the driver."""
    from ipykernel.kernelspec import install

    from ..core.utils import allocator_env

    folder = Path(install(kernel_name=KERNEL, display_name=display_name, prefix=sys.prefix))
    spec = json.loads((folder / "kernel.json").read_text())
    spec["argv"] = [sys.executable, "-c", KERNEL_LAUNCHER, "-f", "{connection_file}"]
    spec["env"] = {**spec.get("env", {}), **allocator_env()}
    (folder / "kernel.json").write_text(json.dumps(spec, indent=1))
    return folder


# ---- progress ------------------------------------------------------------------------
# One tqdm text update: "desc:  25%|██▌       | 12/48 [02:10<06:30, 3.6s/run]"
_TQDM = re.compile(r"(?:^|[\r\n])(?P<desc>[^\r\n|]*?):?\s*(?P<pct>\d{1,3})%\|[^|\r\n]*\|\s*"
                   r"(?P<n>\d+)/(?P<total>\d+)\s*\[(?P<elapsed>[\d:]+)<(?P<left>[\d:?]+)(?=[,\]])")


class ProgressRelay(io.TextIOBase):
    """Receives a chapter's kernel stderr (papermill's ``stderr_file``) and relays the
    package's progress bars to the driver, one line per update and at most one per
    ``interval`` seconds per bar (a bar's first and last update always pass).

    Everything else the kernel writes to stderr stays in the executed notebook only.
    """

    def __init__(self, chapter: str, say: Callable[[str], None], interval: float = 10.0):
        self.chapter, self.say, self.interval = chapter, say, interval
        self._last: dict[str, tuple[float, int]] = {}  # desc -> (time shown, n shown)
        self._tail = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        data = self._tail + text
        # the last update may be cut in two by the stream: keep it for the next write (a
        # complete one read twice is dropped as "nothing new")
        cut = max(data.rfind("\r"), data.rfind("\n"))
        self._tail = data[cut:][-500:] if cut >= 0 else data[-500:]
        for m in _TQDM.finditer(data):
            self._update(m.group("desc").strip(), int(m.group("n")), int(m.group("total")),
                         m.group("elapsed"), m.group("left"))
        return len(text)

    def _update(self, desc: str, n: int, total: int, elapsed: str, left: str) -> None:
        now = time.monotonic()
        shown = self._last.get(desc)
        final = n >= total
        if shown is not None and (shown[1] == n or (not final and now - shown[0] < self.interval)):
            return  # nothing new, or too soon
        self._last[desc] = (now, n)
        pct = f"{100 * n / total:.0f}%" if total else "?"
        tail = "done" if final else f"left ~{left}"
        self.say(f"[book] {self.chapter} | {desc or 'progress'}: {n}/{total} ({pct}), elapsed {elapsed}, {tail}")


class _Log:
    """Prints to the terminal and appends the same line to ``{out}/book.log``."""

    def __init__(self, path: Path | None):
        self.path = path

    def __call__(self, line: str, err: bool = False) -> None:
        print(line, file=sys.stderr if err else sys.stdout, flush=True)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as fh:
                fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")


def execute(chapter: Path, params: dict[str, Any], out: Path,
            say: Callable[[str], None] | None = None) -> Path:
    """Execute one chapter; the output notebook is written even when it fails.

    The chapter's progress bars are relayed through ``say`` (default: print).
    """
    import jupytext
    import papermill as pm

    src = out / "src" / f"{chapter.stem}.ipynb"
    dst = out / "notebooks" / f"{chapter.stem}.ipynb"
    src.parent.mkdir(parents=True, exist_ok=True)
    dst.parent.mkdir(parents=True, exist_ok=True)
    nb = jupytext.read(chapter)
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "landscape-book", "language": "python"}
    jupytext.write(nb, src)
    relay = ProgressRelay(chapter.stem, say or (lambda line: print(line, flush=True)))
    usage = usage_log(out, chapter.stem)  # what the chapter reused from the store (its page's footer)
    usage.parent.mkdir(parents=True, exist_ok=True)
    usage.unlink(missing_ok=True)
    os.environ["LANDSCAPE_USAGE_LOG"] = str(usage)  # the kernel inherits it
    pm.execute_notebook(str(src), str(dst), parameters=params, kernel_name=KERNEL, cwd=str(BOOK_DIR),
                        progress_bar=False, log_output=False, stderr_file=relay)
    return dst


# Which chapters' tables each chapter reads (by number). A chapter starts once these are
# done, so independent chapters run side by side (``--jobs``); a chapter not listed here
# waits for every chapter before it.
PREREQUISITES: dict[str, tuple[str, ...]] = {
    "00": (), "01": (), "02": ("01",), "03": ("01",), "04": ("01", "02", "03"),
    "04b": ("04",), "05": ("04",), "06": ("01", "03"), "07": (),
}


def prerequisites(selected: list[Path]) -> dict[str, set[str]]:
    """Chapter stem -> the stems among ``selected`` that must finish before it starts."""
    stems = [c.stem for c in selected]
    out = {}
    for i, stem in enumerate(stems):
        needs = PREREQUISITES.get(chapter_key(stem))
        out[stem] = set(stems[:i]) if needs is None else {s for s in stems if chapter_key(s) in needs}
    return out


def _execute_checked(chapter: str, params: dict[str, Any], out: str,
                     say: Callable[[str], None] | None = None) -> tuple[bool, str]:
    """:func:`execute`, as ``(ok, message)``: the error's type and last line when it fails.
    Without ``say`` (in a worker process of :func:`run_chapters`) it logs to ``{out}/book.log``."""
    try:
        execute(Path(chapter), params, Path(out), say=say or _Log(Path(out) / "book.log"))
        return True, ""
    except Exception as err:  # papermill has written the notebook with the traceback
        last = str(err).strip().splitlines()[-1] if str(err).strip() else ""
        return False, f"{type(err).__name__}: {last}"


def default_jobs() -> int:
    """Chapters run side by side: 2 on a CPU with 2 or more cores, 1 with CUDA (two chapters'
    GPU workers on one device could exhaust its memory) or on one core."""
    import torch

    return 1 if torch.cuda.is_available() or (os.cpu_count() or 1) < 2 else 2


def _chapter_worker(driver: int) -> None:
    """Initializer of the driver's chapter processes: they end with the driver."""
    from ..core.utils import exit_with_parent

    exit_with_parent(driver)


@contextlib.contextmanager
def _terminated_on_exit(pool: Any):
    """On an error or a termination signal, stop the pool's processes at once (a chapter
    being run is lost; its kernel and workers follow it) instead of waiting for them."""
    try:
        yield
    except BaseException:
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def handle_termination() -> None:
    """SIGTERM and SIGHUP (a scheduler's time limit, ``kill``, a closed terminal) end the
    driver as Ctrl-C does: by an exception, so its chapter processes are stopped; every
    process the build started exits with its parent (:func:`landscape_utils.core.utils.exit_with_parent`)."""
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _exit_on_signal)


def run_chapters(selected: list[Path], params: dict[str, dict[str, Any]], out: Path, say: "_Log",
                 jobs: int = 1) -> tuple[list[Path], str | None]:
    """Execute the chapters, each as soon as its :data:`PREREQUISITES` are done, at most
    ``jobs`` at a time (each in its own process; 1: one after another in this process).

    Returns ``(notebooks, failed)``: the executed notebooks in chapter order (a failed
    chapter's included) and the first failed chapter's stem, or None. After a failure no
    new chapter starts; chapters already running finish.
    """
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from multiprocessing import get_context

    needs = prerequisites(selected)
    order = {c.stem: i for i, c in enumerate(selected)}
    finished: set[str] = set()
    failed: str | None = None
    started: dict[Any, tuple[Path, float]] = {}

    def report(chap: Path, t0: float, ok: bool, message: str) -> None:
        nonlocal failed
        if ok:
            finished.add(chap.stem)
            say(f"[book] {chap.stem}: done in {time.perf_counter() - t0:.0f} s")
            return
        failed = failed or chap.stem
        say(f"[book] {chap.stem}: FAILED after {time.perf_counter() - t0:.0f} s: {message}", err=True)
        say(f"[book] the executed notebook with the traceback is {out / 'notebooks' / (chap.stem + '.ipynb')}",
            err=True)

    waiting = list(selected)
    if jobs <= 1:
        for chap in waiting:
            t0 = time.perf_counter()
            say(f"[book] {chap.stem}: running")
            ok, message = _execute_checked(str(chap), params[chap.stem], str(out), say)
            report(chap, t0, ok, message)
            if not ok:
                break
    else:
        child = _execute_checked  # pickled by name: landscape_utils.book.driver (python -m runs book/__main__.py)
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_chapter_worker,
                                 initargs=(os.getpid(),)) as pool, \
                _terminated_on_exit(pool):
            while (waiting and failed is None) or started:
                for chap in [c for c in waiting if needs[c.stem] <= finished][:max(0, jobs - len(started))]:
                    if failed is not None:
                        break
                    waiting.remove(chap)
                    say(f"[book] {chap.stem}: running")
                    started[pool.submit(child, str(chap), params[chap.stem], str(out))] = (
                        chap, time.perf_counter())
                if not started:  # nothing can start: a prerequisite is missing
                    break
                done, _ = wait(list(started), return_when=FIRST_COMPLETED)
                for fut in done:
                    chap, t0 = started.pop(fut)
                    ok, message = fut.result()
                    report(chap, t0, ok, message)
    notebooks = sorted((p for p in (out / "notebooks" / f"{c.stem}.ipynb" for c in selected)
                        if p.stem in finished or p.stem == failed and p.exists()),
                       key=lambda p: order[p.stem])
    return notebooks, failed


def _static_assets(static: Path) -> None:
    """Copy the vega bundle and MathJax into the book's static folder, for offline reading."""
    import altair as alt
    import mathjax
    import vl_convert as vlc

    static.mkdir(parents=True, exist_ok=True)
    vl = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    versions = vlc.get_vegalite_versions()
    bundle = vlc.javascript_bundle(vl_version=vl if vl in versions else versions[-1])
    # Wrapped in a function so its top-level names do not collide with the page's
    # globals (a classic script shares one global scope; ES modules do not load
    # from file:// pages). The bundle sets window.vegaEmbed itself.
    (static / "vega-bundle.js").write_text(f"(function () {{\n{bundle}\n}})();\n")
    es5 = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    shutil.copytree(es5, static / "mathjax", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("sre", "*.map"))
    # Tables printed by the chapters (pandas frames) in a smaller type, so that most fit
    # the content column without a horizontal scrollbar.
    (static / "landscape.css").write_text(
        "div.cell_output table { font-size: 0.78rem; }\n"
        "div.cell_output table th, div.cell_output table td { padding: 0.15rem 0.35rem; }\n")


# ---- the HTML book ---------------------------------------------------------------------
BOOK_TITLE = "landscape-book"
YEAR = 2026
LANDING_TITLE = "Phases of learning in neural network loss landscapes"


def _param_comments(source: str) -> dict[str, str]:
    """The trailing ``# comment`` of each assignment in a parameters cell, by name."""
    import tokenize

    comments: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string.lstrip("#").strip()
    except (tokenize.TokenError, IndentationError):
        return {}
    out = {}
    for node in ast.parse(source).body:
        target = node.target if isinstance(node, ast.AnnAssign) else (
            node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None)
        if isinstance(target, ast.Name) and node.lineno in comments:
            out[target.id] = comments[node.lineno]
    return out


def _literal_values(source: str) -> dict[str, Any]:
    """Names and literal values assigned in a parameters cell (papermill's or the chapter's)."""
    out = {}
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return out
    for node in body:
        target = node.target if isinstance(node, ast.AnnAssign) else (
            node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None)
        if isinstance(target, ast.Name) and getattr(node, "value", None) is not None:
            try:
                out[target.id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return out


def _shown_value(value: Any) -> str:
    """A value as the reader should see it: paths inside the repository made relative to it."""
    if isinstance(value, str) and os.path.isabs(value):
        p = Path(value)
        try:
            return str(p.relative_to(REPO))
        except ValueError:
            return ".../" + "/".join(p.parts[-3:])
    if isinstance(value, str):
        return value if value else '""'
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def _shown_file(path: str | None) -> str | None:
    """A params file as the reader should see it: relative to the repository, else its name."""
    if not path:
        return None
    p = Path(path).resolve()
    try:
        return str(p.relative_to(REPO))
    except ValueError:
        return p.name


def parameters_markdown(defaults_src: str, effective: dict[str, Any], params_file: str | None) -> str:
    """The parameters of an executed chapter as a short markdown block: the values the params
    file set, in one line, and every effective value with its comment in a folded table."""
    comments = _param_comments(defaults_src)
    defaults = _literal_values(defaults_src)
    names = list(defaults) + [k for k in effective if k not in defaults]
    values = {k: effective.get(k, defaults.get(k)) for k in names}
    changed = [k for k in names if k in effective and effective[k] != defaults.get(k) and k != "workdir"]
    src = f"`{_shown_file(params_file)}`" if params_file else "the params file"
    if changed:
        head = (f"**Parameters.** Set by {src}: "
                + "; ".join(f"`{k}` = {_shown_value(values[k])}" for k in changed) + ".")
    elif any(k in effective for k in names if k != "workdir"):
        head = f"**Parameters.** This chapter ran with its defaults ({src} sets some of them, to the same values)."
    else:
        head = f"**Parameters.** This chapter ran with its defaults ({src} sets none of them)."
    esc = lambda t: str(t).replace("|", "\\|")  # noqa: E731
    rows = "\n".join(f"| `{k}` | `{esc(_shown_value(values[k]))}` | {esc(comments.get(k, ''))} |" for k in names)
    table = f"| parameter | value | meaning |\n|---|---|---|\n{rows}"
    return (f"{head}\n\n```{{admonition}} All {len(names)} parameters of this chapter\n:class: dropdown\n\n"
            f"{table}\n```\n")


def usage_log(out: Path, stem: str) -> Path:
    """The file where a chapter's tables log the stored records they reused and computed
    (``store.record_usage``, one JSON line per table)."""
    return out / "usage" / f"{stem}.jsonl"


def read_usage(out: Path, stem: str) -> dict[str, dict[str, Any]]:
    """A chapter's usage log summed per table: ``{what: {reused, computed, oldest}}``."""
    path = usage_log(out, stem)
    total: dict[str, dict[str, Any]] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        _add_usage(total, row["what"], row)
    return total


def _add_usage(total: dict[str, dict[str, Any]], what: str, usage: Mapping[str, Any]) -> None:
    """Add one table's ``usage`` (reused, computed, oldest) into ``total[what]``."""
    t = total.setdefault(what, {"reused": 0, "computed": 0, "oldest": None})
    t["reused"] += usage["reused"]
    t["computed"] += usage["computed"]
    if usage.get("oldest") and (t["oldest"] is None or usage["oldest"] < t["oldest"]):
        t["oldest"] = usage["oldest"]


def _device_text(device: Any) -> str:
    import torch

    from ..core.utils import resolve_device

    try:
        dev = resolve_device(device or "auto")
    except (RuntimeError, ValueError):
        return str(device)
    return f"{dev} ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else str(dev)


def provenance_markdown(usage: dict[str, dict[str, Any]], device: Any, built: str, heading: str) -> str:
    """The "what built it" block: versions, commit, device, build date, and how many stored
    records were reused (with the date of the oldest) or computed by this build."""
    from ..core.utils import build_info

    info = build_info()
    commit = f"commit `{info['commit']}`" if info["commit"] else "no git checkout"
    lines = [f"**{heading}** landscape_utils {info['package']} at {commit}; torch {info['torch']}"
             + (f", CUDA {info['cuda']}" if info["cuda"] else "") + f", CPU kernel {info['cpu_kernel']}, "
             f"Python {info['python']}; device {_device_text(device)}; built {built}."]
    if usage:
        rows = "\n".join(f"| {what} | {u['reused']} | {u['computed']} | {(u['oldest'] or '-').replace('T', ' ')} |"
                         for what, u in usage.items())
        lines.append("| stored results | reused from the store | computed by this build | oldest reused |\n"
                     f"|---|---|---|---|\n{rows}")
    else:
        lines.append("This page computed nothing that the store keeps.")
    return "\n\n".join(lines)


def prepare_for_html(nb: Any, params_file: str | None = None, book_title: str = BOOK_TITLE,
                     footer: str | None = None) -> Any:
    """Make an executed notebook read like an article (returns a new notebook).

    Every code cell gets Jupyter Book's ``hide-input`` tag (a "show code" toggle); the
    chapter's ``parameters`` cell becomes a markdown summary of the effective values
    (:func:`parameters_markdown`) and papermill's ``injected-parameters`` cell, which
    holds the build machine's paths, is dropped. A first heading equal to the book's
    title becomes the chapter's name, so no page is titled "landscape-book — landscape-book".
    The notebooks under ``notebooks/`` and the chapters are not touched.
    """
    import copy

    import nbformat

    nb = copy.deepcopy(nb)
    tags = lambda c: c.setdefault("metadata", {}).setdefault("tags", [])  # noqa: E731
    injected = [c for c in nb.cells if "injected-parameters" in tags(c)]
    effective = dict(nb.metadata.get("papermill", {}).get("parameters") or {})
    for c in injected:
        effective.update(_literal_values(c.source))
    cells = []
    for c in nb.cells:
        t = tags(c)
        if "injected-parameters" in t:
            continue
        if c.cell_type == "code" and "parameters" in t:
            cells.append(nbformat.v4.new_markdown_cell(parameters_markdown(c.source, effective, params_file)))
            continue
        if c.cell_type == "code" and not {"hide-input", "remove-input", "remove-cell", "hide-cell"} & set(t):
            t.append("hide-input")
        cells.append(c)
    if footer:
        cells.append(nbformat.v4.new_markdown_cell(footer))
    nb.cells = cells
    for c in nb.cells:
        if c.cell_type == "markdown":
            m = re.search(r"^#\s+(.+)$", c.source, flags=re.M)
            if m and m.group(1).strip() == book_title:
                c.source = c.source.replace(m.group(0), "# Introduction", 1)
            if m:
                break
    return nb


def readme_chapters(readme: Path = REPO / "README.md") -> dict[str, str]:
    """One-line summaries of the chapters, from the README's chapter table."""
    out = {}
    if readme.is_file():
        for line in readme.read_text().splitlines():
            m = re.match(r"\|\s*`(\d\d[a-z]?_\w+)`\s*\|\s*(.+?)\s*\|\s*$", line)
            if m:
                out[m.group(1)] = m.group(2)
    return out


def readme_intro(readme: Path = REPO / "README.md") -> str:
    """The README's opening paragraphs (between the title and the first section)."""
    if not readme.is_file():
        return ""
    text = readme.read_text().split("\n## ", 1)[0]
    return text.split("\n", 1)[1].strip() if text.startswith("# ") and "\n" in text else ""


def _chapter_title(nb: Any, stem: str) -> str:
    for c in nb.cells:
        m = re.search(r"^#\s+(.+)$", c.source, flags=re.M) if c.cell_type == "markdown" else None
        if m:
            return m.group(1).strip()
    return stem


def _first_sentence(nb: Any, limit: int = 160) -> str:
    """The first sentence of a chapter's first paragraph (after its heading), plain text."""
    for c in nb.cells:
        if c.cell_type != "markdown":
            continue
        body = "\n".join(line for line in c.source.splitlines()
                         if not line.lstrip().startswith("#") and not re.match(r"\s*\(.+\)=\s*$", line))
        paras = [p.strip() for p in re.split(r"\n\s*\n", body) if p.strip()]
        if paras:
            text = re.sub(r"[*`$]|(?<!\w)_|_(?!\w)", "", " ".join(paras[0].split()))
            text = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
            return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " …"
    return ""


def landing_page(chapters_nbs: dict[str, Any], params_file: str | None) -> str:
    """The book's index page (MyST markdown): what the book is and its chapters, each with
    its line of the README's chapter table (or the first sentence of the chapter)."""
    summaries = readme_chapters()
    rows = "\n".join(f"| [{_chapter_title(nb, stem)}]({stem}.ipynb) | "
                      f"{summaries.get(stem) or _first_sentence(nb).replace('|', '/')} |"
                      for stem, nb in chapters_nbs.items())
    built = f" It was built from `{_shown_file(params_file)}`" if params_file else ""
    return (f"# {LANDING_TITLE}\n\n{readme_intro()}\n\n"
            "Each chapter is one experiment: its figures and tables come first and its code is folded "
            "(\"Show code cell source\" opens it). The numbers in every page were computed when the "
            f"book was built, with the parameters listed at the top of each chapter.{built}.\n\n"
            f"| chapter | what it shows |\n|---|---|\n{rows}\n\n"
            "The same chapters open as notebooks in JupyterLab (`make lab`) and run one by one with "
            "papermill; the README says how.\n")


def phase_diagram_output(nb: Any) -> Any:
    """A copy of chapter 4's first chart under its "Our grid" heading, as a code cell whose
    input is removed (for the landing page), or None when the chapter has no such chart."""
    import copy

    if nb is None:
        return None
    in_section = False
    for c in nb.cells:
        if c.cell_type == "markdown":
            m = re.search(r"^#+\s+(.+)$", c.source, flags=re.M)
            if m:
                in_section = "our grid" in m.group(1).lower()
        elif in_section:
            charts = [o for o in c.get("outputs", []) if "landscape-chart" in o.get("data", {}).get("text/html", "")]
            if charts:
                cell = copy.deepcopy(c)
                cell.outputs = [copy.deepcopy(charts[0])]
                cell.source = "# a copy of chapter 4's output (myst-nb skips a cell without source)"
                cell.metadata = {"tags": ["remove-input"]}
                return cell
    return None


def _provenance_footers(out: Path, notebooks: list[Path], params: dict[str, dict[str, Any]]
                        ) -> tuple[dict[str, str], str]:
    """Each chapter's "What built this page" block, and the landing page's section that sums
    them (:func:`provenance_markdown`, from the chapters' usage logs)."""
    built = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    footers, devices, total = {}, set(), {}
    for path in notebooks:
        usage = read_usage(out, path.stem)
        device = params.get(path.stem, {}).get("device", "auto")
        devices.add(_device_text(device))
        for what, u in usage.items():
            _add_usage(total, what, u)
        footers[path.stem] = provenance_markdown(usage, device, built, "What built this page.")
    book = "## What built this book\n\n" + provenance_markdown(total, ", ".join(sorted(devices)) or "auto",
                                                               built, "Versions.")
    return footers, book


def build_html(out: Path, notebooks: list[Path], title: str = BOOK_TITLE,
               params_file: str | None = None, params: dict[str, dict[str, Any]] | None = None) -> Path:
    """Render executed notebooks into ``out/html`` with Jupyter Book 1.x (execution off).

    The book opens on a landing page (``index``); each chapter is rewritten for reading
    by :func:`prepare_for_html` (the executed notebooks themselves are not changed).
    """
    import nbformat

    jb = out / "jb"
    if jb.exists():
        shutil.rmtree(jb)
    jb.mkdir(parents=True)
    prepared = {}
    footers, book_footer = _provenance_footers(out, notebooks, params or {})
    for path in notebooks:
        nb = prepare_for_html(nbformat.read(path, as_version=4), params_file, title, footer=footers[path.stem])
        nbformat.write(nb, jb / path.name)
        prepared[path.stem] = nb
    index = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": KERNEL, "display_name": "landscape-book",
                                                              "language": "python"}})
    index.cells = [nbformat.v4.new_markdown_cell(landing_page(prepared, params_file))]
    phase = phase_diagram_output(prepared.get("04_taxonomy"))
    if phase is not None:
        index.cells += [nbformat.v4.new_markdown_cell(
                            "## The phase diagram of this build\n\nFrom chapter 4: every cell of the load × "
                            "temperature grid, with the metrics that place it (hover over a cell for its values)."),
                        phase]
    index.cells.append(nbformat.v4.new_markdown_cell(book_footer))
    nbformat.write(index, jb / "index.ipynb")
    _static_assets(jb / "_offline")
    stems = [nb.stem for nb in notebooks]
    toc = {"format": "jb-book", "root": "index", "chapters": [{"file": s} for s in stems]}
    (jb / "_toc.yml").write_text(yaml.safe_dump(toc))
    config = {
        "title": title, "author": f"the {title} authors", "copyright": str(YEAR), "only_build_toc_files": True,
        "execute": {"execute_notebooks": "off"},
        "html": {"use_repository_button": False, "use_issues_button": False, "use_edit_page_button": False,
                 "use_multitoc_numbering": False},
        "launch_buttons": {"thebe": False, "binderhub_url": "", "colab_url": "", "jupyterhub_url": ""},
        "sphinx": {"config": {
            "html_static_path": ["_offline"],  # not _static: Jupyter Book would add every .js there
            "html_js_files": ["vega-bundle.js"],
            "html_css_files": ["landscape.css"],
            "mathjax_path": "mathjax/tex-svg.js",
            "nb_output_stderr": "remove",
            "html_show_sourcelink": False,
            "html_context": {"default_mode": "light"},
        }},
    }
    (jb / "_config.yml").write_text(yaml.safe_dump(config))
    # `jupyter-book config sphinx` writes the Sphinx conf.py that `jupyter-book build`
    # would use; we drop sphinx-thebe (it declares THEBE_JS_URL twice, a JS error, and
    # points at a CDN; the book has no live kernels) and run Sphinx ourselves.
    exe = Path(sys.executable).parent / "jupyter-book"
    _run([str(exe) if exe.exists() else "jupyter-book", "config", "sphinx", str(jb)])
    with open(jb / "conf.py", "a") as fh:
        fh.write("\nextensions = [e for e in extensions if e != 'sphinx_thebe']\n")
    build = out / "_html"
    if build.exists():
        shutil.rmtree(build)
    _run([sys.executable, "-m", "sphinx", "-b", "html", "-q", str(jb), str(build)])
    html = out / "html"
    if html.exists():
        shutil.rmtree(html)
    shutil.move(str(build), str(html))
    return html / "index.html"


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def export_chapter(params_path: str | os.PathLike, spec: str) -> str:
    """A flat papermill parameters YAML for one chapter: the ``shared`` keys it declares and
    its own section, validated and pre-flighted like a driver run (``workdir`` absolute)."""
    selected = _select(spec)
    if len(selected) != 1:
        raise ParamsError(f"--export-chapter takes one chapter, got {spec!r} "
                          f"({', '.join(c.stem for c in selected)})")
    params = load_params(params_path, selected)
    preflight(params, params_path)
    stem = selected[0].stem
    head = (f"# papermill parameters of {stem}, from {params_path} (shared + {stem}),\n"
            f"# written by: python -m landscape_utils.book --params {params_path} --export-chapter {spec}\n")
    return head + yaml.safe_dump(params[stem], sort_keys=False, default_flow_style=None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m landscape_utils.book", description=__doc__.split("\n")[0])
    ap.add_argument("--params", required=True, help="params YAML, e.g. params/default.yaml")
    ap.add_argument("--out", default=None, help="output folder, e.g. build/default (needed to run the book)")
    ap.add_argument("--chapters", default=None, help="comma-separated chapter prefixes, e.g. 01,03")
    ap.add_argument("--no-html", action="store_true", help="execute only; skip the HTML book")
    ap.add_argument("--jobs", type=int, default=None,
                    help="chapters run side by side once the chapters they read are done "
                         "(default 2 on a CPU with 2+ cores, 1 with CUDA)")
    ap.add_argument("--plan", action="store_true",
                    help="print the tasks of every chapter, how many are stored, and an estimated cost; run nothing")
    ap.add_argument("--export-chapter", metavar="NN", default=None,
                    help="print one chapter's flat papermill parameters YAML (shared + its section)")
    args = ap.parse_args(argv)
    try:
        if args.export_chapter:
            sys.stdout.write(export_chapter(args.params, args.export_chapter))
            return 0
        selected = _select(args.chapters)
        params = load_params(args.params, selected)
        preflight(params, args.params, data=not args.plan)
    except ParamsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.plan:
        from .plan import print_plan

        print_plan(params, args.params)
        return 0
    if not args.out:
        print("error: --out is needed to run the book (or pass --plan or --export-chapter)", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    handle_termination()
    say = _Log(out / "book.log")
    os.environ.update(_kernel_env(out))
    jobs = args.jobs if args.jobs is not None else default_jobs()
    say(f"[book] {len(selected)} chapter(s) from {args.params} into {out}"
        + (f", up to {jobs} side by side" if jobs > 1 else ""))
    done, failed = run_chapters(selected, params, out, say, jobs)
    if done and not args.no_html:
        index = build_html(out, done, params_file=str(args.params), params=params)
        say(f"[book] HTML book: {index}")
    if failed:
        say(f"error: chapter {failed} failed", err=True)
        return 1
    return 0
