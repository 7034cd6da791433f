"""The authors' released metrics (Yang et al. 2021), read safely.

The authors of *Taxonomizing local versus global structure in neural network loss
landscapes* released, in nsfzyzz/loss_landscape_taxonomy at
``workspace/checkpoint/results.tar.gz``, the metrics of their ResNet18 width × batch-size
grid on CIFAR-10 (lr 0.1 decayed once at epoch 75, 100 epochs, 5 runs per cell). The layout is

    [<leading folder>/]different_knobs_subset_10/bs_{B}/lr_decay/ResNet18_w{W}/metrics/
        loss_acc.pkl              {run: {'loss', 'nll', 'accuracy'}}   train split
        loss_acc_test.pkl         the same for the test split
        hessian.pkl               {run: {'top_eigenvalue': [λ], 'trace': t}}
        CKA_mixup_alpha_16.0.pkl  {'representation_similarity': {i: {j: [logit CKA, softmax CKA]}}}
        model_dist.pkl            {'model_distance': {i: {j: {'dist': d}}}}
        curve_test.npz            arrays along the Bezier curve between runs 0 and 1:
                                  ts, tr_err (train error, %), tr_loss, te_err, ...

Units and conventions (checked on the released file):

* ``accuracy`` in the pickles is in **percent** (e.g. ``78.76``); we divide by 100 so that
  ``train_acc`` / ``test_acc`` are fractions in [0, 1] like everywhere else in the project.
* ``tr_err`` in ``curve_test.npz`` is in percent, which is what the paper's mc formula uses;
  ``mc`` is recomputed with :func:`landscape_utils.metrics.profiles.mode_connectivity` (one pair,
  runs 0 and 1, as the authors did), so it is in percentage points of train error.
* ``cka`` is the softmax CKA (last entry of each pair), averaged over the ordered pairs
  i ≠ j (the released matrix is not exactly symmetric: CKA was computed on fresh mixup
  batches for (i, j) and (j, i)). ``l2`` is averaged over ordered pairs i ≠ j as well.
* Batch sizes 19 and 27 are also present in the release, but without ``loss_acc_test.pkl``;
  their ``test_acc`` / ``test_loss`` are NaN. ``paper_grid_only=True`` keeps only the 13
  batch sizes of the paper's figure.

Nothing is unpacked onto disk: a ``.tar.gz`` is streamed member by member with
``TarFile.extractfile``. Pickles are read with :class:`RestrictedUnpickler`, which only
admits builtin containers/scalars and numpy scalars/arrays; ``.npz`` files are read with
``allow_pickle=False``.

**Shipped tables.** The release is small, so its metrics ship with the package as tidy CSV
tables in ``landscape_utils/reference_data`` (with a NOTICE naming the source and its MIT
license): :func:`load_shipped_results` (cells, or runs with ``long=True``),
:func:`load_shipped_pairs` (per unordered pair of runs) and :func:`load_shipped_paths`
(the Bezier-curve profiles). They are what the book reads by default, offline; the tarball
is needed only to regenerate them::

    python -m landscape_utils.experiments.derive reference PATH/TO/results.tar.gz [--out DIR]
"""
from __future__ import annotations

import builtins
import io
import os
import pickle
import re
import tarfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pandas as pd

from ..metrics.profiles import mode_connectivity

__all__ = [
    "PAPER_WIDTHS",
    "PAPER_BATCH_SIZES",
    "UnsafePickleError",
    "RestrictedUnpickler",
    "restricted_loads",
    "iter_metric_files",
    "load_released_results",
    "released_pairs",
    "released_paths_table",
    "PAIR_COLUMNS",
    "PATH_COLUMNS",
    "SHIPPED_FILES",
    "derive_tables",
    "write_csv_files",
    "write_tables",
    "read_table",
    "load_shipped_results",
    "load_shipped_pairs",
    "load_shipped_paths",
    "load_results",
]

#: Widths k of ResNet18 in the paper's grid.
PAPER_WIDTHS: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64, 91, 128)
#: Batch sizes in the paper's figure. The release also holds 19 and 27.
PAPER_BATCH_SIZES: tuple[int, ...] = (16, 24, 32, 44, 64, 92, 128, 180, 256, 364, 512, 724, 1024)

#: Largest member we are willing to read into memory (the real files are < 10 kB).
MAX_MEMBER_BYTES = 64 * 2**20

_CKA_FILE = "CKA_mixup_alpha_16.0.pkl"
_FILES = ("loss_acc.pkl", "loss_acc_test.pkl", "hessian.pkl", _CKA_FILE, "model_dist.pkl",
          "curve_test.npz")
# .../bs_{B}/{schedule}/ResNet18_w{W}/metrics/{file}, anywhere below a leading folder.
_PATH_RE = re.compile(
    r"(?:^|/)bs_(?P<bs>\d+)/(?P<sched>[^/]+)/ResNet18_w(?P<w>\d+)/metrics/(?P<file>[^/]+)$"
)


# --------------------------------------------------------------------------------------
# Restricted unpickling
# --------------------------------------------------------------------------------------
class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list."""


def _latin1_encode(obj: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` restricted to latin-1: protocols 0-2 store numpy array bytes as
    ``_codecs.encode(<str>, 'latin1')``. Any other codec is refused."""
    if not isinstance(obj, str) or encoding.replace("-", "").replace("_", "").lower() not in (
        "latin1", "iso88591"
    ):
        raise UnsafePickleError(f"_codecs.encode only allowed with latin-1, got {encoding!r}")
    return obj.encode("latin-1", errors)


def _numpy_globals() -> dict[tuple[str, str], Any]:
    # lazy and guarded: the module moved between numpy 1.x and 2.x
    try:  # numpy >= 2
        from numpy._core import multiarray as ma
        from numpy._core import numeric as nm
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray as ma  # type: ignore[no-redef]
        from numpy.core import numeric as nm  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    for mod in ("numpy.core", "numpy._core"):
        allowed[(f"{mod}.multiarray", "_reconstruct")] = ma._reconstruct
        allowed[(f"{mod}.multiarray", "scalar")] = ma.scalar
        if hasattr(nm, "_frombuffer"):  # protocol-5 arrays
            allowed[(f"{mod}.numeric", "_frombuffer")] = nm._frombuffer
    return allowed


_BUILTINS_OK = frozenset({
    "dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "bool", "str",
    "bytes", "bytearray",
})


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that admits only builtin containers/scalars and numpy scalars/arrays.

    Allowed globals: ``builtins.{dict, list, tuple, set, frozenset, int, float, complex,
    bool, str, bytes, bytearray}``; ``numpy.ndarray``, ``numpy.dtype``,
    ``numpy[._]core.multiarray.{_reconstruct, scalar}``, ``numpy[._]core.numeric._frombuffer``;
    ``_codecs.encode`` restricted to latin-1 (old protocols). Everything else raises
    :class:`UnsafePickleError` naming ``source`` and the refused ``module.name``. Globals are
    resolved from this table, never imported by name, so refusing happens before any code of
    the pickle can run.
    """

    _numpy_allowed: dict[tuple[str, str], Any] | None = None

    def __init__(self, file: io.BufferedIOBase, source: str = "<pickle>") -> None:
        super().__init__(file)
        self.source = source
        if RestrictedUnpickler._numpy_allowed is None:
            RestrictedUnpickler._numpy_allowed = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        if module in ("builtins", "__builtin__") and name in _BUILTINS_OK:
            return getattr(builtins, name)
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        obj = (self._numpy_allowed or {}).get((module, name))
        if obj is not None:
            return obj
        raise UnsafePickleError(
            f"{self.source}: refused to unpickle global '{module}.{name}' "
            "(only builtin containers/scalars and numpy scalars/arrays are allowed)"
        )

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102
        raise UnsafePickleError(f"{self.source}: persistent ids are not allowed")

    def load(self) -> Any:  # noqa: D102
        try:
            return super().load()
        except UnsafePickleError as e:
            if str(e).startswith(f"{self.source}:"):
                raise
            raise UnsafePickleError(f"{self.source}: {e}") from e


def restricted_loads(data: bytes, source: str = "<pickle>") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`; ``source`` names it in errors."""
    return RestrictedUnpickler(io.BytesIO(data), source=source).load()


# --------------------------------------------------------------------------------------
# Walking the release (tar.gz or folder) without unpacking
# --------------------------------------------------------------------------------------
def iter_metric_files(path: str | os.PathLike, schedule: str = "lr_decay"
                      ) -> Iterator[tuple[int, int, str, str, bytes]]:
    """Yield ``(width, batch_size, filename, source, raw_bytes)`` for every known metrics
    file under ``path`` (a ``.tar``/``.tar.gz`` or a folder), for the given schedule folder.

    ``source`` is ``"<archive>:<member>"`` or the file path, for error messages. Tar members
    that are not regular files (links, devices) are skipped, and nothing is written to disk.
    """
    path = Path(path)
    if path.is_dir():
        for f in sorted(path.rglob("*")):
            rel = f.relative_to(path).as_posix()
            m = _PATH_RE.search(rel)
            if m is None or m["sched"] != schedule or m["file"] not in _FILES:
                continue
            if not f.is_file() or f.is_symlink():
                continue
            if f.stat().st_size > MAX_MEMBER_BYTES:
                raise ValueError(f"{f}: file too large ({f.stat().st_size} bytes)")
            yield int(m["w"]), int(m["bs"]), m["file"], str(f), f.read_bytes()
        return
    if not path.is_file():
        raise FileNotFoundError(path)
    with tarfile.open(path, mode="r:*") as tar:
        for member in tar:  # streams: members are visited in archive order
            if not member.isfile():
                continue
            m = _PATH_RE.search(member.name)
            if m is None or m["sched"] != schedule or m["file"] not in _FILES:
                continue
            if member.size > MAX_MEMBER_BYTES:
                raise ValueError(f"{path}:{member.name}: member too large ({member.size} bytes)")
            fh = tar.extractfile(member)
            if fh is None:  # pragma: no cover - isfile() guarantees a file object
                continue
            yield int(m["w"]), int(m["bs"]), m["file"], f"{path}:{member.name}", fh.read()


# --------------------------------------------------------------------------------------
# Parsing the individual files
# --------------------------------------------------------------------------------------
def _runs(obj: Any, source: str) -> dict[int, Any]:
    if not isinstance(obj, dict):
        raise ValueError(f"{source}: expected a dict keyed by run, got {type(obj).__name__}")
    return {int(k): v for k, v in obj.items()}


def _parse_loss_acc(obj: Any, source: str, split: str) -> dict[int, dict[str, float]]:
    out = {}
    for run, d in _runs(obj, source).items():
        out[run] = {f"{split}_loss": float(d["loss"]),
                    f"{split}_acc": float(d["accuracy"]) / 100.0}  # percent -> fraction
    return out


def _parse_hessian(obj: Any, source: str) -> dict[int, dict[str, float]]:
    out = {}
    for run, d in _runs(obj, source).items():
        top = np.atleast_1d(np.asarray(d["top_eigenvalue"], dtype=np.float64))
        out[run] = {"lambda_max": float(top[0]) if top.size else np.nan,
                    "trace": float(np.asarray(d["trace"], dtype=np.float64))}
    return out


def _pair_matrix(nested: Any, source: str, leaf: Callable[[Any], float]) -> dict[tuple[int, int], float]:
    if not isinstance(nested, dict):
        raise ValueError(f"{source}: expected a nested dict of pairs")
    out = {}
    for i, row in nested.items():
        for j, v in row.items():
            out[(int(i), int(j))] = float(leaf(v))
    return out


def _parse_cka(obj: Any, source: str) -> dict[tuple[int, int], float]:
    # [logits CKA, softmax CKA]: the paper used the softmax one (last entry).
    return _pair_matrix(obj["representation_similarity"], source,
                        lambda v: np.asarray(v, dtype=np.float64).ravel()[-1])


def _parse_dist(obj: Any, source: str) -> dict[tuple[int, int], float]:
    return _pair_matrix(obj["model_distance"], source, lambda v: v["dist"])


#: Arrays of ``curve_test.npz`` kept in the path table, renamed to the columns of chapter 3's
#: ``paths.csv`` (errors in percent).
_CURVE_COLUMNS = {"ts": "t", "tr_err": "train_err", "tr_loss": "train_loss", "te_err": "test_err"}


def _parse_curve(raw: bytes, source: str) -> dict[str, Any]:
    """mc, t* and the profile arrays (shape (T,) each) of one ``curve_test.npz``."""
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            arrays = {new: np.asarray(z[old], dtype=np.float64).ravel()
                      for old, new in _CURVE_COLUMNS.items() if old in z.files}
    except ValueError as e:  # object arrays need pickle: refuse
        raise UnsafePickleError(f"{source}: {e}") from e
    if "train_err" not in arrays:
        raise ValueError(f"{source}: no 'tr_err' array")
    if len({a.size for a in arrays.values()}) != 1:
        raise ValueError(f"{source}: arrays of different lengths")
    tr_err = arrays["train_err"]
    out: dict[str, Any] = {"curve": arrays}
    if tr_err.size < 2 or not np.all(np.isfinite(tr_err)):
        out.update(mc=np.nan, mc_t_star=np.nan)
        return out
    mc, t_star = mode_connectivity(tr_err)
    out.update(mc=mc, mc_t_star=float(t_star) / (tr_err.size - 1))
    return out


def _offdiag_mean(pairs: dict[tuple[int, int], float]) -> float:
    vals = [v for (i, j), v in pairs.items() if i != j and np.isfinite(v)]
    return float(np.mean(vals)) if vals else np.nan


def _per_run_offdiag(pairs: dict[tuple[int, int], float], run: int) -> float:
    """Mean over j ≠ run of both ordered pairs (run, j) and (j, run). The mean of these
    per-run values over runs equals the mean over all ordered pairs i ≠ j."""
    vals = [v for (i, j), v in pairs.items()
            if i != j and run in (i, j) and np.isfinite(v)]
    return float(np.mean(vals)) if vals else np.nan


def _unordered(pairs: dict[tuple[int, int], float]) -> dict[tuple[int, int], float]:
    """{(i, j), i < j: mean of the finite values of (i, j) and (j, i)}."""
    out: dict[tuple[int, int], float] = {}
    for a, b in sorted({(min(i, j), max(i, j)) for i, j in pairs if i != j}):
        vals = [pairs[k] for k in ((a, b), (b, a)) if k in pairs and np.isfinite(pairs[k])]
        out[(a, b)] = float(np.mean(vals)) if vals else np.nan
    return out


def _spread(values: Iterable[float]) -> float:
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
    return float(v.std(ddof=1)) if v.size > 1 else np.nan


# --------------------------------------------------------------------------------------
# Reading a release into cells
# --------------------------------------------------------------------------------------
_RUN_METRICS = ("train_loss", "train_acc", "test_loss", "test_acc", "lambda_max", "trace")


def _read_release(path: str | os.PathLike, schedule: str) -> dict[tuple[int, int], dict[str, Any]]:
    """{(width, batch_size): {"runs": {run: {metric: value}}, "cka_pairs", "l2_pairs",
    "mc", "mc_t_star", "curve"}} for every cell of the release (one streaming pass)."""
    cells: dict[tuple[int, int], dict[str, Any]] = {}
    for width, bs, fname, source, raw in iter_metric_files(path, schedule=schedule):
        cell = cells.setdefault((width, bs), {"runs": {}})
        if fname == "curve_test.npz":
            cell.update(_parse_curve(raw, source))
            continue
        obj = restricted_loads(raw, source=source)
        if fname == "loss_acc.pkl":
            parsed = _parse_loss_acc(obj, source, "train")
        elif fname == "loss_acc_test.pkl":
            parsed = _parse_loss_acc(obj, source, "test")
        elif fname == "hessian.pkl":
            parsed = _parse_hessian(obj, source)
        elif fname == _CKA_FILE:
            cell["cka_pairs"] = _parse_cka(obj, source)
            continue
        elif fname == "model_dist.pkl":
            cell["l2_pairs"] = _parse_dist(obj, source)
            continue
        else:  # pragma: no cover - filtered by iter_metric_files
            continue
        for run, vals in parsed.items():
            cell["runs"].setdefault(run, {}).update(vals)
    if not cells:
        raise ValueError(f"{path}: no metrics files found for schedule {schedule!r}")
    return cells


def _cell_rows(cells: dict[tuple[int, int], dict[str, Any]], long: bool,
               paper_grid_only: bool) -> pd.DataFrame:
    rows = []
    for (width, bs), cell in sorted(cells.items()):
        if paper_grid_only and bs not in PAPER_BATCH_SIZES:
            continue
        runs = pd.DataFrame.from_dict(cell["runs"], orient="index")
        runs = runs.reindex(columns=list(_RUN_METRICS)).sort_index()
        cka_pairs = cell.get("cka_pairs", {})
        l2_pairs = cell.get("l2_pairs", {})
        base = {"width": width, "batch_size": bs}
        if long:
            for run, r in runs.iterrows():
                rows.append({**base, "run": int(run), **r.to_dict(),
                             "cka": _per_run_offdiag(cka_pairs, int(run)),
                             "l2": _per_run_offdiag(l2_pairs, int(run)),
                             "mc": cell.get("mc", np.nan)})
            continue
        row: dict[str, Any] = dict(base)
        for col in _RUN_METRICS:
            row[col] = float(runs[col].mean()) if len(runs) else np.nan
        row["cka"] = _offdiag_mean(cka_pairs)
        row["l2"] = _offdiag_mean(l2_pairs)
        row["mc"] = cell.get("mc", np.nan)
        row["mc_t_star"] = cell.get("mc_t_star", np.nan)
        for col in _RUN_METRICS:
            row[f"{col}_std"] = float(runs[col].std(ddof=1)) if len(runs) > 1 else np.nan
        row["n_runs"] = int(len(runs))
        cka_u, l2_u = _unordered(cka_pairs), _unordered(l2_pairs)
        row["cka_std"] = _spread(cka_u.values())
        row["l2_std"] = _spread(l2_u.values())
        row["n_pairs"] = int(sum(np.isfinite(v) for v in cka_u.values()))
        rows.append(row)
    df = pd.DataFrame(rows)
    if long:
        df = df.sort_values(["width", "batch_size", "run"])
    return df.reset_index(drop=True)


# --------------------------------------------------------------------------------------
# Public loaders of a release
# --------------------------------------------------------------------------------------
def load_released_results(path: str | os.PathLike, *, long: bool = False,
                          paper_grid_only: bool = False,
                          schedule: str = "lr_decay") -> pd.DataFrame:
    """Read the authors' released metrics into a table, without unpacking onto disk.

    Args:
        path: the released ``results.tar.gz`` (any tar compression) or its unpacked folder.
            A leading folder inside the archive is fine.
        long: if False (default), one row per (width, batch_size) cell; if True, one row per
            run (``run`` column) with per-run metrics, ``cka``/``l2`` averaged over the pairs
            that involve the run, and the cell's ``mc`` repeated on every run (it comes from
            the single pair of runs 0 and 1).
        paper_grid_only: keep only the 13 batch sizes of the paper's figure (drops 19, 27).
        schedule: the folder between ``bs_{B}`` and ``ResNet18_w{W}``.

    Returns:
        Cell rows sorted by (width, batch_size) with columns ``width``, ``batch_size``,
        ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``, ``lambda_max``, ``trace``
        (means over runs, plus ``*_std`` with ddof=1), ``cka`` (softmax CKA averaged over
        ordered pairs i ≠ j), ``l2`` (same averaging), ``mc`` (paper's formula on the train
        error in %, runs 0 and 1), ``mc_t_star`` (t at which mc is attained), ``n_runs``,
        then ``cka_std`` and ``l2_std`` (sample std over the unordered pairs i < j, each
        pair's value the mean of its two orders) and ``n_pairs`` (pairs with a CKA).
        ``mc`` has no spread column: it comes from one pair. Accuracies are fractions in
        [0, 1]. A missing file gives NaN in its columns.

    Raises:
        UnsafePickleError: a pickle holds anything but builtin/numpy data (the message names
            the file and the refused ``module.class``).
    """
    return _cell_rows(_read_release(path, schedule), long, paper_grid_only)


#: Columns of the per-pair table (:func:`released_pairs`, ``pairs.csv``).
PAIR_COLUMNS: tuple[str, ...] = ("width", "batch_size", "seed_a", "seed_b", "mc", "cka", "l2")
#: Columns of the path table (:func:`released_paths_table`, ``paths.csv``).
PATH_COLUMNS: tuple[str, ...] = ("width", "batch_size", "pair", "path", "t", "train_err",
                                 "train_loss", "test_err")


def _pair_rows(cells: dict[tuple[int, int], dict[str, Any]], paper_grid_only: bool) -> pd.DataFrame:
    rows = []
    for (width, bs), cell in sorted(cells.items()):
        if paper_grid_only and bs not in PAPER_BATCH_SIZES:
            continue
        cka, l2 = _unordered(cell.get("cka_pairs", {})), _unordered(cell.get("l2_pairs", {}))
        for a, b in sorted(set(cka) | set(l2) | {(0, 1)}):
            rows.append({"width": width, "batch_size": bs, "seed_a": a, "seed_b": b,
                         "mc": cell.get("mc", np.nan) if (a, b) == (0, 1) else np.nan,
                         "cka": cka.get((a, b), np.nan), "l2": l2.get((a, b), np.nan)})
    return pd.DataFrame(rows, columns=list(PAIR_COLUMNS))


def released_pairs(path: str | os.PathLike, *, paper_grid_only: bool = False,
                   schedule: str = "lr_decay") -> pd.DataFrame:
    """The per-pair global metrics of the release: one row per cell and unordered pair of
    runs ``seed_a < seed_b``.

    Returns:
        Columns :data:`PAIR_COLUMNS`: ``cka`` is the softmax CKA averaged over the two orders
        (a, b) and (b, a) (the release measured both, on different mixup batches), ``l2`` the
        same for the distance, and ``mc`` is set on the pair (0, 1) only, the one pair whose
        Bezier curve the authors fitted (NaN elsewhere). The mean of ``cka`` over a cell's
        pairs is the cell's ``cka`` of :func:`load_released_results`.
    """
    return _pair_rows(_read_release(path, schedule), paper_grid_only)


def _path_rows(cells: dict[tuple[int, int], dict[str, Any]], paper_grid_only: bool) -> pd.DataFrame:
    frames = []
    for (width, bs), cell in sorted(cells.items()):
        if paper_grid_only and bs not in PAPER_BATCH_SIZES:
            continue
        arrays = cell.get("curve")
        if not arrays or "t" not in arrays:
            continue
        n = arrays["t"].size
        frames.append(pd.DataFrame({"width": width, "batch_size": bs, "pair": "0-1",
                                    "path": "bezier",
                                    **{c: arrays.get(c, np.full(n, np.nan))
                                       for c in PATH_COLUMNS[4:]}}))
    if not frames:
        return pd.DataFrame(columns=list(PATH_COLUMNS))
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["width", "batch_size", "t"]).reset_index(drop=True)


def released_paths_table(path: str | os.PathLike, *, paper_grid_only: bool = False,
                         schedule: str = "lr_decay") -> pd.DataFrame:
    """The error along the Bezier curve between runs 0 and 1 of every cell, long form with
    the columns of chapter 3's ``paths.csv`` (:data:`PATH_COLUMNS`; errors in percent,
    ``pair`` is ``"0-1"``, ``path`` is ``"bezier"``)."""
    return _path_rows(_read_release(path, schedule), paper_grid_only)


# --------------------------------------------------------------------------------------
# The shipped tables (derived once from the release, installed with the package)
# --------------------------------------------------------------------------------------
#: Folder of the shipped tables inside the package (``landscape_utils/reference_data``).
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "reference_data"
#: Shipped table name -> file. ``cells``: :func:`load_released_results`; ``runs``: the same
#: with ``long=True``; ``pairs``: :func:`released_pairs`; ``paths``:
#: :func:`released_paths_table`. All over the whole release (batch sizes 19 and 27 too).
SHIPPED_FILES: dict[str, str] = {"cells": "cells.csv", "runs": "runs.csv",
                                 "pairs": "pairs.csv", "paths": "paths.csv"}
#: Integer columns (CSV does not keep dtypes; these are restored on reading).
_INT_COLUMNS = ("width", "batch_size", "run", "n_runs", "n_pairs", "seed_a", "seed_b")


def derive_tables(path: str | os.PathLike, schedule: str = "lr_decay") -> dict[str, pd.DataFrame]:
    """Every shipped table (keys of :data:`SHIPPED_FILES`) from a release, in one pass."""
    cells = _read_release(path, schedule)
    return {"cells": _cell_rows(cells, long=False, paper_grid_only=False),
            "runs": _cell_rows(cells, long=True, paper_grid_only=False),
            "pairs": _pair_rows(cells, paper_grid_only=False),
            "paths": _path_rows(cells, paper_grid_only=False)}


def write_csv_files(frames: dict[str, pd.DataFrame], out_dir: str | os.PathLike) -> list[Path]:
    """Write each frame as CSV to ``{out_dir}/{file name}`` (the keys), atomically (a temp
    file, then a rename); floats in their shortest round-trip form, so reading them back
    gives the same numbers. Returns the files written. The shipped tables of this module
    and of :mod:`landscape_utils.experiments.zoo` are written with it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, df in frames.items():
        dest = out_dir / file_name
        tmp = dest.with_name(dest.name + ".tmp")
        df.to_csv(tmp, index=False, lineterminator="\n")
        os.replace(tmp, dest)
        written.append(dest)
    return written


def write_tables(tables: dict[str, pd.DataFrame], out_dir: str | os.PathLike) -> list[Path]:
    """Write ``tables`` as CSV under ``out_dir`` (file names of :data:`SHIPPED_FILES`) with
    :func:`write_csv_files`: :func:`read_table` reads back the same numbers. Returns the
    files written."""
    unknown = [name for name in tables if name not in SHIPPED_FILES]
    if unknown:
        raise KeyError(f"unknown table {unknown[0]!r}; known: {sorted(SHIPPED_FILES)}")
    return write_csv_files({SHIPPED_FILES[name]: df for name, df in tables.items()}, out_dir)


def read_table(name: str, folder: str | os.PathLike | None = None) -> pd.DataFrame:
    """One shipped table by name (``cells``, ``runs``, ``pairs`` or ``paths``), from
    ``folder`` (default: the package's ``reference_data``), with integer keys restored."""
    if name not in SHIPPED_FILES:
        raise KeyError(f"unknown table {name!r}; known: {sorted(SHIPPED_FILES)}")
    path = Path(folder) if folder is not None else SHIPPED_DIR
    path = path / SHIPPED_FILES[name]
    if not path.is_file():
        raise FileNotFoundError(f"shipped table {name!r} not found at {path}; regenerate it with "
                                "`python -m landscape_utils.experiments.derive reference PATH`")
    df = pd.read_csv(path)
    for c in _INT_COLUMNS:
        if c in df.columns:
            df[c] = df[c].astype(np.int64)
    return df


def _grid_filter(df: pd.DataFrame, paper_grid_only: bool) -> pd.DataFrame:
    if not paper_grid_only:
        return df
    return df[df["batch_size"].isin(PAPER_BATCH_SIZES)].reset_index(drop=True)


def load_shipped_results(*, long: bool = False, paper_grid_only: bool = False) -> pd.DataFrame:
    """The authors' released metrics from the table shipped with the package: the same
    rows and columns as :func:`load_released_results` with the same arguments (derived
    from nsfzyzz/loss_landscape_taxonomy's ``results.tar.gz``, lr_decay schedule; see
    ``reference_data/NOTICE.md``). Needs nothing outside the package."""
    return _grid_filter(read_table("runs" if long else "cells"), paper_grid_only)


def load_shipped_pairs(*, paper_grid_only: bool = False) -> pd.DataFrame:
    """The shipped per-pair table (:func:`released_pairs`): columns :data:`PAIR_COLUMNS`."""
    return _grid_filter(read_table("pairs"), paper_grid_only)


def load_shipped_paths(*, paper_grid_only: bool = False) -> pd.DataFrame:
    """The shipped Bezier-curve profiles (:func:`released_paths_table`): :data:`PATH_COLUMNS`."""
    return _grid_filter(read_table("paths"), paper_grid_only)


def load_results(paper_results: str | os.PathLike | None = None, *, long: bool = False,
                 paper_grid_only: bool = False) -> pd.DataFrame:
    """The authors' cell (or run) table: read from the tarball ``paper_results`` when it is
    given (non-empty), else the shipped table. Raises FileNotFoundError naming a given path
    that does not exist (no silent fallback)."""
    if paper_results:
        p = Path(paper_results)
        if not p.exists():
            raise FileNotFoundError(f"paper_results: {p} not found")
        return load_released_results(p, long=long, paper_grid_only=paper_grid_only)
    return load_shipped_results(long=long, paper_grid_only=paper_grid_only)
