"""The Phase Transition Model Zoo: ten more released grids, read into the book's columns.

The *Phase Transition Model Zoo* (arXiv 2504.18072; github.com/ModelZoos/PhaseTransitionModelZoo,
dataset under CC BY 4.0) released, for ten width × batch-size grids with 3 seeds per cell, the
taxonomy's metrics at the last epoch in ``summary_metrics/{zoo}_summary.csv`` (one row per
model and epoch). This module

* derives one compact per-model table per zoo from those files
  (``python -m landscape_utils.experiments.derive zoo DIR``), shipped in
  ``landscape_utils/reference_data/zoo/`` (see its ``NOTICE.md``);
* reads a shipped (or user-given) table back with checks that name the file and the column
  (:func:`read_zoo_table`), and turns it into a :class:`ReleasedGrid`: per-run rows and
  per-cell means in the book's columns (``width``, ``batch_size``, ``seed``, ``train_loss``,
  ``test_acc``, ``lambda_max``, ``trace``, ``mc``, ``cka``; NaN where the release has none);
* classifies a released grid with :func:`landscape_utils.experiments.taxonomy.classify_with_confidence`
  and tests the paper's claims on it (:func:`grid_findings`).

How the released columns map to ours (read from the zoo's public code, ``src/ptmz/loss_landscape``
and ``scripts/*/evaluate_experiments.ipynb``):

* ``curve_mc_train_error`` → ``mc``: the paper's formula, mean of the endpoints minus the point
  of the Bezier curve farthest from it, on the *train error in percent*; mc < 0 is a barrier,
  as in :func:`landscape_utils.metrics.profiles.mode_connectivity`. The zoo fits a curve for every
  pair of the cell's three seeds (5 points on t, 10 epochs of curve training) and releases the
  mean over the three pairs: a cell value, the same on the three rows of the cell.
* ``representation_similarity`` → ``cka``: linear CKA of the *logits* of two seeds on 10
  batches of 128 test images, averaged over the three pairs (ours and the authors': CKA of the
  softmax outputs on mixup training inputs). A cell value; its scale is not the authors'.
* ``log_hessian_top_ev_val`` → ``lambda_max = exp(...)``: the natural log of the mean over the
  three seeds of PyHessian's top eigenvalue, computed on 10 batches of 64 *test* images (the
  ``val`` in the name is the split). A cell value.
* ``log_hessian_trace_train`` → ``trace = exp(...)``: the same for the Hutchinson trace, on 10
  batches of 64 *training* images. A cell value.
* ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``: per model (accuracies as
  fractions).
* **Which checkpoint.** The release puts the landscape values on the last epoch's row; the
  zoo's public scripts (commit 8cac8d3) compute them from the checkpoint of an epoch set per
  script (115 for ResNet-18 / CIFAR-10, 125 for ResNet-50 / CIFAR-100, 150 commented out), so
  they may describe an earlier checkpoint than the losses. We pair them as the release does.

Interpretations of the released files (each decided on the files, stated in the README):

* **The batch size of a rerun.** A few ResNet-50 trials were rerun with 8 gradient-accumulation
  steps; their ``batchsize`` column holds the micro-batch (the batch in the trial's name / 8)
  and their landscape values differ from those of the cell that micro-batch would name. The
  batch size is therefore read from the trial's name (``training_batchsize=B``); the column is
  checked against it (equal, or equal × 8).
* **A repeated seed.** cifar10_resnet50 holds two trials of width 256, batch 1024, seed 0 (a
  first rerun and a second one of all three seeds); the later trial (by the date in its name)
  is kept.
* **Two weight-decay sweeps.** cifar100_vit holds wd 0.05 and wd 0.0005; only wd 0.05 has
  landscape metrics, so the sweep with the most landscape values is kept.
* **Failed runs.** A run whose final train accuracy is below ``failed_train_acc`` (default 0.3)
  is treated as the book treats a diverged run (``status = "diverged"``): left out of the cell
  means and counted in ``n_failed``; a cell whose seeds all failed keeps no metrics, its
  landscape values included.

The rules of the claims are in the Methods appendix, ``methods-released``. This module
imports no torch.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Sequence

import altair as alt
import numpy as np
import pandas as pd

from ..core import plotting
from ..core.axes import hottest, load_order
from ..core.settings import REPO, resolve_repo_path  # noqa: F401  (REPO: where relative paths start)
from .findings import (AUTHORS_GRID, THIS_BUILD, Finding, best_accuracy_phase, difference_verdict,
                       findings_frame, majority_verdict, metric_ranking, spearman_verdict)
from .reference import write_csv_files
from .rugged import phase_extent
from .taxonomy import (UNDETERMINED, PhaseThresholds, cell_table, classify_with_confidence,
                       numeric_column)

__all__ = [
    "ZooInfo",
    "ZOOS",
    "ZOO_NAMES",
    "SOURCE_COLUMNS",
    "TABLE_COLUMNS",
    "RUN_METRICS",
    "CELL_METRICS",
    "RELEASED_CELL_COLUMNS",
    "ZOO_DIR",
    "derive_zoo_table",
    "derive_zoo_tables",
    "write_zoo_tables",
    "read_zoo_table",
    "ReleasedGrid",
    "zoo_grid",
    "cell_valued",
    "authors_released_grid",
    "classify_grid",
    "load_zoo",
    "load_zoos",
    "CLAIMS",
    "paper_table_order",
    "mc_tracks_accuracy",
    "small_load_barrier",
    "hot_end_unconverged",
    "grid_findings",
    "claims_table",
    "released_cells",
    "resolve_folder",
    "n_labelled",
    "overview_table",
    "phase_maps",
    "findings_rows",
    "style_claims",
    "contrast_text",
    "extent_table",
]


@dataclass(frozen=True)
class ZooInfo:
    """What one zoo is (from its files and the zoo's code)."""

    architecture: str   # "ResNet-18", "ResNet-50", "ViT"
    dataset: str        # "CIFAR-10", ...
    load_name: str      # the released name of the load column: "width" or "embedding_dim"
    epochs: int         # training length; the metrics are at this last epoch

    @property
    def label(self) -> str:
        """The grid's name in the book (the ``grid`` column of findings.csv)."""
        return f"{self.architecture} / {self.dataset} (zoo)"


#: The ten zoos, in the order the book shows them.
ZOOS: dict[str, ZooInfo] = {
    "cifar10_resnet18": ZooInfo("ResNet-18", "CIFAR-10", "width", 150),
    "cifar100_resnet18": ZooInfo("ResNet-18", "CIFAR-100", "width", 150),
    "svhn_resnet18": ZooInfo("ResNet-18", "SVHN", "width", 150),
    "tinyimagenet_resnet18": ZooInfo("ResNet-18", "TinyImageNet", "width", 100),
    "cifar10_resnet50": ZooInfo("ResNet-50", "CIFAR-10", "width", 150),
    "cifar100_resnet50": ZooInfo("ResNet-50", "CIFAR-100", "width", 150),
    "svhn_resnet50": ZooInfo("ResNet-50", "SVHN", "width", 150),
    "tinyimagenet_resnet50": ZooInfo("ResNet-50", "TinyImageNet", "width", 100),
    "cifar10_vit": ZooInfo("ViT", "CIFAR-10", "embedding_dim", 300),
    "cifar100_vit": ZooInfo("ViT", "CIFAR-100", "embedding_dim", 300),
}
ZOO_NAMES: tuple[str, ...] = tuple(ZOOS)

#: Columns every released file must have (``width`` is ``embedding_dim`` in the ViT files).
SOURCE_COLUMNS: tuple[str, ...] = (
    "model", "width", "seed", "wd", "batchsize", "epoch", "train_loss", "train_acc",
    "test_loss", "test_acc", "representation_similarity", "curve_mc_train_error",
    "log_hessian_trace_train", "log_hessian_top_ev_val",
)
#: Landscape columns of a release: cell values, the same on the rows of a cell.
_LANDSCAPE_SOURCE = ("representation_similarity", "curve_mc_train_error",
                     "log_hessian_trace_train", "log_hessian_top_ev_val")
#: Columns of a shipped zoo table, one row per model.
TABLE_COLUMNS: tuple[str, ...] = (
    "width", "batch_size", "seed", "train_loss", "train_acc", "test_loss", "test_acc",
    "mc", "cka", "lambda_max", "trace",
)
_KEYS = ("width", "batch_size", "seed")
#: Per-run metrics of a zoo table; the rest (:data:`CELL_METRICS`) are cell values.
RUN_METRICS: tuple[str, ...] = ("train_loss", "train_acc", "test_loss", "test_acc")
CELL_METRICS: tuple[str, ...] = ("mc", "cka", "lambda_max", "trace")

#: Folder of the shipped zoo tables inside the package (``landscape_utils/reference_data/zoo``).
ZOO_DIR = Path(__file__).resolve().parents[1] / "reference_data" / "zoo"
LOAD, TEMPERATURE = "width", "batch_size"   # the book's axes (a ViT's embedding dim is its width)

_NAME_RE = {
    "width": re.compile(r"model_(?:width|embedding_dim)=(\d+)"),
    "seed": re.compile(r"seed=(\d+)"),
    "batch": re.compile(r"training_batchsize=(\d+)"),
    "date": re.compile(r"_(\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d)$"),
}


# --------------------------------------------------------------------------------------
# Deriving the shipped tables from the released files
# --------------------------------------------------------------------------------------
def _read_release(path: Path) -> pd.DataFrame:
    """A released ``{zoo}_summary.csv`` with its load column named ``width``; raises naming
    the file and the column that is missing or not numeric."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: released zoo file not found")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable CSV ({err})") from err
    if "embedding_dim" in df.columns and "width" not in df.columns:
        df = df.rename(columns={"embedding_dim": "width"})
    absent = [c for c in SOURCE_COLUMNS if c not in df.columns]
    if absent:
        raise ValueError(f"{path}: missing column(s) {', '.join(absent)}")
    if df.empty:
        raise ValueError(f"{path}: no rows")
    for col in ("width", "seed", "batchsize", "epoch"):
        v = pd.to_numeric(df[col], errors="coerce")
        if v.isna().any():
            raise ValueError(f"{path}: column {col!r} has missing or non-numeric values in "
                             f"{int(v.isna().sum())} row(s) (a truncated file?)")
    return df


def _from_name(names: pd.Series, what: str, path: Path) -> pd.Series:
    got = names.astype(str).str.extract(_NAME_RE[what], expand=False)
    if got.isna().any():
        bad = names[got.isna()].iloc[0]
        raise ValueError(f"{path}: column 'model' does not name the {what} in {bad!r}")
    return got


def derive_zoo_table(raw: pd.DataFrame, path: str | os.PathLike = "<release>"
                     ) -> tuple[pd.DataFrame, list[str]]:
    """One zoo's shipped table from its released rows (module docstring for each rule).

    Args:
        raw: the released file's rows (every epoch or only the last), with the columns of
            :data:`SOURCE_COLUMNS` (``width`` may be ``embedding_dim``).
        path: the file, for messages.

    Returns:
        ``(table, notes)``: the table has the columns :data:`TABLE_COLUMNS`, one row per model
        of the last epoch, sorted by width, batch_size, seed; ``notes`` says what was dropped
        or reinterpreted, one sentence each.
    """
    path = Path(path)
    df = raw.rename(columns={"embedding_dim": "width"}).copy()
    notes: list[str] = []
    last = pd.to_numeric(df["epoch"]).max()
    df = df[pd.to_numeric(df["epoch"]) == last].copy()
    width = _from_name(df["model"], "width", path).astype(int)
    seed = _from_name(df["model"], "seed", path).astype(int)
    batch = _from_name(df["model"], "batch", path).astype(int)
    date = df["model"].astype(str).str.extract(_NAME_RE["date"], expand=False).fillna("")
    for col, named in (("width", width), ("seed", seed)):
        if (pd.to_numeric(df[col]).astype(int) != named).any():
            raise ValueError(f"{path}: column {col!r} disagrees with the trial name")
    col_bs = pd.to_numeric(df["batchsize"]).astype(int)
    ok = (col_bs == batch) | (col_bs * 8 == batch)
    if not ok.all():
        raise ValueError(f"{path}: column 'batchsize' is neither the trial name's batch nor "
                         f"an eighth of it in {int((~ok).sum())} row(s)")
    n_acc = int((col_bs != batch).sum())
    if n_acc:
        notes.append(f"{n_acc} rerun trial(s) whose batchsize column is the batch of their "
                     "name / 8 (8 accumulation steps): the batch of the name is used")
    df["width"], df["seed"], df["batch_size"], df["_date"] = width, seed, batch, date
    # one weight-decay sweep: the one with the landscape metrics
    sweeps = df.groupby("wd")[list(_LANDSCAPE_SOURCE)].count().sum(axis=1)
    if len(sweeps) > 1:
        keep = sweeps.idxmax()
        dropped = ", ".join(f"{w:g} ({int((df['wd'] == w).sum())} models, "
                            f"{int(sweeps[w])} landscape values)" for w in sweeps.index if w != keep)
        notes.append(f"two weight-decay sweeps: kept wd {keep:g}, dropped wd {dropped}")
        df = df[df["wd"] == keep]
    # a seed trained twice in one cell: the later trial
    df = df.sort_values(["width", "batch_size", "seed", "_date"])
    dup = df.duplicated(list(_KEYS), keep="last")
    if dup.any():
        notes.append(f"{int(dup.sum())} earlier trial(s) of a (width, batch, seed) that was "
                     "trained again: the later one is kept")
        df = df[~dup]
    out = pd.DataFrame({
        "width": df["width"].astype(int), "batch_size": df["batch_size"].astype(int),
        "seed": df["seed"].astype(int),
        **{c: pd.to_numeric(df[c], errors="coerce") for c in RUN_METRICS},
        "mc": pd.to_numeric(df["curve_mc_train_error"], errors="coerce"),
        "cka": pd.to_numeric(df["representation_similarity"], errors="coerce"),
        "lambda_max": np.exp(pd.to_numeric(df["log_hessian_top_ev_val"], errors="coerce")),
        "trace": np.exp(pd.to_numeric(df["log_hessian_trace_train"], errors="coerce")),
    })
    return out.reset_index(drop=True), notes


def _zoo_file(folder: Path, name: str) -> Path:
    return folder / f"{name}_summary.csv"


def derive_zoo_tables(folder: str | os.PathLike, names: Sequence[str] = ZOO_NAMES
                      ) -> tuple[dict[str, pd.DataFrame], dict[str, list[str]]]:
    """Every zoo's table from a folder of released ``{zoo}_summary.csv`` files.

    Returns ``(tables, notes)`` keyed by zoo name. Raises ``FileNotFoundError`` when the
    folder holds none of the files, and the errors of :func:`derive_zoo_table` (naming the
    file and the column) for a bad one; a zoo whose file is absent is left out (its note
    says so).
    """
    folder = Path(folder)
    tables, notes = {}, {}
    for name in names:
        path = _zoo_file(folder, name)
        if not path.is_file():
            notes[name] = [f"{path} not found"]
            continue
        tables[name], notes[name] = derive_zoo_table(_read_release(path), path)
    if not tables:
        raise FileNotFoundError(f"{folder}: none of the released files "
                                f"({', '.join(f'{n}_summary.csv' for n in names)})")
    return tables, notes


def write_zoo_tables(tables: dict[str, pd.DataFrame], out_dir: str | os.PathLike = ZOO_DIR
                     ) -> list[Path]:
    """Write each table as ``{out_dir}/{zoo}.csv`` (:func:`~landscape_utils.experiments.reference.write_csv_files`:
    atomically, floats in their shortest round-trip form). Returns the files written."""
    unknown = [name for name in tables if name not in ZOOS]
    if unknown:
        raise KeyError(f"unknown zoo {unknown[0]!r}; known: {', '.join(ZOOS)}")
    return write_csv_files({f"{name}.csv": df[list(TABLE_COLUMNS)] for name, df in tables.items()}, out_dir)


def read_zoo_table(name: str, folder: str | os.PathLike | None = None) -> pd.DataFrame:
    """One zoo's table (:data:`TABLE_COLUMNS`, one row per model) from ``folder`` (default:
    the package's ``reference_data/zoo``).

    Raises:
        KeyError: an unknown zoo name.
        FileNotFoundError: the file is missing (the message names it and the command that
            writes it).
        ValueError: the file is unreadable or empty, lacks a column, a key column
            (width, batch_size, seed) has a missing or non-integer value, or a per-run
            metric (losses, accuracies) is missing (a truncated file); the message names
            the file and the column.
    """
    if name not in ZOOS:
        raise KeyError(f"unknown zoo {name!r}; known: {', '.join(ZOOS)}")
    path = (Path(folder) if folder is not None else ZOO_DIR) / f"{name}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: zoo table not found; write it with "
                                "`python -m landscape_utils.experiments.derive zoo DIR`")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable CSV ({err})") from err
    absent = [c for c in TABLE_COLUMNS if c not in df.columns]
    if absent:
        raise ValueError(f"{path}: missing column(s) {', '.join(absent)}")
    if df.empty:
        raise ValueError(f"{path}: no rows")
    for col in _KEYS:
        v = pd.to_numeric(df[col], errors="coerce")
        if v.isna().any() or (v % 1 != 0).any():
            raise ValueError(f"{path}: column {col!r} has missing or non-integer values "
                             "(a truncated file?)")
        df[col] = v.astype(np.int64)
    for col in TABLE_COLUMNS[3:]:
        v = pd.to_numeric(df[col], errors="coerce")
        if (v.isna() & df[col].notna()).any():
            raise ValueError(f"{path}: column {col!r} has non-numeric values")
        if col in RUN_METRICS and v.isna().any():  # every released model has these
            raise ValueError(f"{path}: column {col!r} has missing values in "
                             f"{int(v.isna().sum())} row(s) (a truncated file?)")
        df[col] = v.astype(np.float64)
    if df.duplicated(list(_KEYS)).any():
        raise ValueError(f"{path}: a (width, batch_size, seed) appears twice")
    return df[list(TABLE_COLUMNS)]


# --------------------------------------------------------------------------------------
# A released grid in the book's columns
# --------------------------------------------------------------------------------------
@dataclass
class ReleasedGrid:
    """One released grid, in the book's columns.

    ``cells`` has one row per (width, batch_size) with the per-run means and ``*_std``
    (over the seeds that did not fail), ``n_seeds``, ``n_failed``, the cell values ``mc``,
    ``cka``, ``lambda_max``, ``trace`` and, once classified (:func:`classify_grid`), the
    columns of :func:`~landscape_utils.experiments.taxonomy.classify_with_confidence`. ``runs`` has one
    row per model with ``status`` ("ok" or "diverged": failed).
    """

    name: str                  # "cifar10_resnet18", or "authors" for the authors' grid
    label: str                 # the grid's name in the book
    cells: pd.DataFrame
    runs: pd.DataFrame
    load_name: str = "width"   # the load in the grid's own units ("width" or "embedding_dim")
    source: str = ""           # where it was read from
    notes: list[str] = field(default_factory=list)
    iv_split: bool = False
    iv_reason: str = ""
    cell_valued: list[str] = field(default_factory=list)  # per-run columns that are cell values

    @property
    def missing_metrics(self) -> list[str]:
        """The cell metrics the release does not have for any cell."""
        return [m for m in CELL_METRICS if not np.isfinite(numeric_column(self.cells, m)).any()]


def zoo_grid(name: str, table: pd.DataFrame, failed_train_acc: float = 0.3,
             source: str = "") -> ReleasedGrid:
    """A zoo's per-model table (:func:`read_zoo_table`) as a :class:`ReleasedGrid`
    (unclassified). Runs with train accuracy below ``failed_train_acc`` are failed."""
    info = ZOOS[name]
    runs = table.copy()
    failed = numeric_column(runs, "train_acc") < failed_train_acc
    runs["status"] = np.where(failed, "diverged", "ok")
    cells = cell_table(runs, LOAD, TEMPERATURE, metrics=RUN_METRICS)
    cells = cells.rename(columns={"n_diverged": "n_failed"})
    repeated = cell_valued(runs)
    for m in repeated:  # a cell value repeated on the seeds: its spread is unknown, not 0
        cells[f"{m}_std"] = np.nan
    # the landscape values are the cell's, the same on its rows: take them once
    values = runs.groupby([LOAD, TEMPERATURE], sort=True)[list(CELL_METRICS)].agg(
        lambda v: v.dropna().iloc[0] if v.notna().any() else np.nan)
    cells = cells.merge(values.reset_index(), on=[LOAD, TEMPERATURE], how="left")
    none_left = cells["n_seeds"] == 0
    cells.loc[none_left, list(CELL_METRICS)] = np.nan
    notes = []
    if repeated:
        notes.append(f"{', '.join(repeated)}: the same on the three seeds of every cell (cell "
                     "values): no seed spread")
    n_failed = int(failed.sum())
    if n_failed:
        notes.append(f"{n_failed} of {len(runs)} runs failed (train accuracy < "
                     f"{failed_train_acc:g}); {int(none_left.sum())} cell(s) have no seed left")
    return ReleasedGrid(name, info.label, cells, runs, info.load_name, source, notes,
                        cell_valued=repeated)


def cell_valued(runs: pd.DataFrame, metrics: Sequence[str] = RUN_METRICS) -> list[str]:
    """The per-run ``metrics`` that are in fact cell values: equal on all seeds of every
    cell that has two or more finite values (and such a cell exists)."""
    out = []
    for m in metrics:
        v = pd.to_numeric(runs[m], errors="coerce")
        g = v.groupby([runs[LOAD], runs[TEMPERATURE]])
        n, k = g.count(), g.nunique()
        many = n >= 2
        if many.any() and (k[many] == 1).all():
            out.append(m)
    return out


def classify_grid(grid: ReleasedGrid, thresholds: PhaseThresholds = PhaseThresholds(),
                  level: float = 0.7, n_resamples: int = 2000, seed: int = 0) -> ReleasedGrid:
    """The grid with its phases: :func:`~landscape_utils.experiments.taxonomy.classify_with_confidence`
    on the cells, the train loss resampled per seed from ``runs`` (failed runs left out),
    mc and CKA held at their cell values (the release has no per-pair values: no pairs
    table is given), and so is a train loss that the release repeats on the seeds. A cell without mc gets no phase, and its ``reason`` says why."""
    keep = [c for c in (LOAD, TEMPERATURE, "seed", "status", "train_loss")
            if c not in grid.cell_valued]  # a repeated cell value is held, not resampled
    runs = grid.runs[keep]
    conf = classify_with_confidence(grid.cells, None, runs, load=LOAD, temperature=TEMPERATURE,
                                    thresholds=thresholds, level=level,
                                    n_resamples=n_resamples, seed=seed)
    cells = grid.cells.drop(columns=[c for c in conf.columns if c in grid.cells.columns]).join(conf)
    why = []
    for _, r in cells.iterrows():
        extra = []
        if r["n_seeds"] == 0:
            extra.append("every seed failed")
        elif not np.isfinite(r["mc"]):
            extra.append("no mc in the release")
        elif r["n_failed"] > 0:
            extra.append(f"{int(r['n_failed'])} failed seed(s) left out of the means; the "
                         "landscape values include them")
        why.append("; ".join([s for s in [str(r["reason"] or "")] + extra if s]))
    cells["reason"] = why
    return replace(grid, cells=cells, iv_split=bool(conf.attrs["iv_split"]),
                   iv_reason=str(conf.attrs["iv_reason"]))


def load_zoo(name: str, folder: str | os.PathLike | None = None, *,
             failed_train_acc: float = 0.3, thresholds: PhaseThresholds | None = None,
             level: float = 0.7, n_resamples: int = 2000, seed: int = 0) -> ReleasedGrid:
    """A zoo from its shipped table (or ``folder``), classified unless ``thresholds`` is
    None."""
    grid = zoo_grid(name, read_zoo_table(name, folder), failed_train_acc,
                    "the shipped table" if folder is None else str(Path(folder) / f"{name}.csv"))
    if thresholds is None:
        return grid
    return classify_grid(grid, thresholds, level, n_resamples, seed)


def load_zoos(folder: str | os.PathLike | None = None, names: Sequence[str] = ZOO_NAMES,
              **kwargs) -> tuple[list[ReleasedGrid], dict[str, str]]:
    """Every zoo that reads: ``(grids, skipped)``, ``skipped`` mapping a zoo that could not
    be read to the reason (the error, naming the file and the column). ``kwargs`` go to
    :func:`load_zoo`."""
    grids, skipped = [], {}
    for name in names:
        try:
            grids.append(load_zoo(name, folder, **kwargs))
        except (FileNotFoundError, ValueError, KeyError) as err:
            skipped[name] = str(err)
    return grids, skipped


# --------------------------------------------------------------------------------------
# The paper's claims on one grid
# --------------------------------------------------------------------------------------
#: The claims of the grids × claims table: key -> short name.
CLAIMS: dict[str, str] = {
    "best_accuracy_phase": "best accuracy in IV-B (IV)",
    "paper_table_order": "train loss, λmax: I, II above III, IV",
    "metric_ranking": "a global metric ranks accuracy best",
    "mc_tracks_accuracy": "mc rises with test accuracy",
    "small_load_barrier": "smallest load behind a barrier",
    "hot_end_unconverged": "hottest row in phase II",
}
_HIGH, _LOW = ("I", "II"), ("III", "IV", "IV-A", "IV-B")


def _labels(cells: pd.DataFrame, phase_col: str = "phase") -> np.ndarray:
    lab = cells[phase_col].astype(object) if phase_col in cells else pd.Series(None, index=cells.index)
    return np.array([None if (v is None or (isinstance(v, float) and np.isnan(v))) else str(v)
                     for v in lab], dtype=object)


def paper_table_order(cells: pd.DataFrame, grid: str = THIS_BUILD) -> Finding:
    """``paper_table_order``: the train loss and λmax of the cells in I or II lie above those
    of the cells in III or IV (the local columns of the paper's table).

    Rule: for each of train loss and λmax, :func:`~landscape_utils.experiments.findings.difference_verdict`
    on the natural log of the cell values (both span orders of magnitude), cells of I and II
    against cells of III, IV, IV-A and IV-B (undetermined and unlabelled cells left out),
    ``expect="greater"``. **holds** when both hold, **fails** when either fails,
    **inconclusive** otherwise (a side without cells, a metric the release lacks, or a
    difference inside the spread over cells). The train loss splits I from III in the rule
    itself, so its half is partly built in; λmax is the independent half.
    """
    claim = ("The train loss and λmax of phases I and II lie above those of III and IV "
             "(the paper's table).")
    lab = _labels(cells)
    high, low = np.isin(lab, _HIGH), np.isin(lab, _LOW)
    parts, verdicts = [], []
    for m in ("train_loss", "lambda_max"):
        v = numeric_column(cells, m)
        with np.errstate(divide="ignore", invalid="ignore"):
            lv = np.where(v > 0, np.log(v), np.nan)
        a, b = lv[high & np.isfinite(lv)], lv[low & np.isfinite(lv)]
        if not np.isfinite(v).any():
            verdicts.append("inconclusive")
            parts.append(f"{m}: not in the release")
            continue
        r = difference_verdict(a, b, expect="greater", names=(f"ln {m} of I, II", "of III, IV"))
        verdicts.append(r.verdict)
        med = lambda x: f"{np.exp(np.median(x)):.3g}" if x.size else "-"  # noqa: E731
        parts.append(f"{m} median I, II {med(a)} (n={a.size}) vs III, IV {med(b)} (n={b.size}): "
                     f"{r.verdict} ({r.evidence})")
    verdict = ("fails" if "fails" in verdicts else
               "holds" if all(v == "holds" for v in verdicts) else "inconclusive")
    n = f"{int(high.sum())} cells in I, II; {int(low.sum())} in III, IV"
    return Finding("paper_table_order", claim, verdict, "; ".join(parts), n, grid)


def mc_tracks_accuracy(cells: pd.DataFrame, grid: str = THIS_BUILD) -> Finding:
    """``mc_tracks_accuracy``: across cells, the better connected (higher mc) the better the
    test accuracy: :func:`~landscape_utils.experiments.findings.spearman_verdict` of the cell mc with the
    cell test accuracy, ``expect="positive"`` (cells whose seeds all failed left out)."""
    claim = "Across the grid's cells, test accuracy rises with mc (better connected, better)."
    v = spearman_verdict(numeric_column(cells, "mc"), numeric_column(cells, "test_acc"),
                         names=("mc", "test acc"))
    return v.finding("mc_tracks_accuracy", claim, grid)


def _edge_flags(cells: pd.DataFrame, axis: str, value: object, true: tuple[str, ...],
                lab: np.ndarray) -> tuple[list[bool | None], str]:
    """One flag per labelled cell at ``axis == value``: True in a phase of ``true``, None
    (undecided) when undetermined, False otherwise; unlabelled cells (no mc, every seed
    failed) are left out. Also the phases of those cells, counted, as text."""
    sel = cells[axis].to_numpy() == value
    here = [p for p in lab[sel] if p is not None]
    flags = [None if p == UNDETERMINED else p in true for p in here]
    counts = pd.Series(here, dtype=object).value_counts()
    text = ", ".join(f"{p} {c}" for p, c in counts.items())
    n_out = int(sel.sum()) - len(here)
    return flags, text + (f"; {n_out} unlabelled cell(s) left out" if n_out else "")


def small_load_barrier(cells: pd.DataFrame, load: str = LOAD, temperature: str = TEMPERATURE,
                       grid: str = THIS_BUILD) -> Finding:
    """``small_load_barrier``: at the smallest load with a labelled cell, most temperatures
    are in phase I or III (poorly connected). Each labelled cell of that column counts true
    in I or III, undecided when undetermined, false otherwise (unlabelled cells are left out);
    :func:`~landscape_utils.experiments.findings.majority_verdict` over them."""

    claim = "At the smallest load, most temperatures sit behind a barrier (phase I or III)."
    lab = _labels(cells)
    known = cells[lab != None]  # noqa: E711  (an object array of labels and None)
    if known.empty:
        return Finding("small_load_barrier", claim, "inconclusive", "no cell has a label",
                       f"{len(cells)} cells", grid)
    smallest = load_order(load, known[load])[0]
    flags, phases = _edge_flags(cells, load, smallest, ("I", "III"), lab)
    v = majority_verdict(flags, what=f"temperatures at {load} {smallest:g}")
    return Finding("small_load_barrier", claim, v.verdict, f"{v.evidence}; phases: {phases}",
                   v.n, grid)


def hot_end_unconverged(cells: pd.DataFrame, load: str = LOAD, temperature: str = TEMPERATURE,
                        grid: str = THIS_BUILD) -> Finding:
    """``hot_end_unconverged``: at the hottest temperature with a labelled cell, most loads
    are in phase II (the path between seeds beats its unconverged endpoints, mc > 0). Each
    labelled cell of that row counts true in II, undecided when undetermined, false
    otherwise (unlabelled cells are left out);
    :func:`~landscape_utils.experiments.findings.majority_verdict` over them."""

    claim = "At the hottest temperature, most loads are in phase II (unconverged endpoints)."
    lab = _labels(cells)
    known = cells[lab != None]  # noqa: E711
    if known.empty:
        return Finding("hot_end_unconverged", claim, "inconclusive", "no cell has a label",
                       f"{len(cells)} cells", grid)
    hot = hottest(temperature, known[temperature])
    flags, phases = _edge_flags(cells, temperature, hot, ("II",), lab)
    v = majority_verdict(flags, what=f"loads at {temperature} {hot:g}")
    return Finding("hot_end_unconverged", claim, v.verdict, f"{v.evidence}; phases: {phases}",
                   v.n, grid)


def grid_findings(cells: pd.DataFrame, grid: str, iv_split: bool,
                  train_loss_high: float = PhaseThresholds.train_loss_high,
                  keys: Iterable[str] = tuple(CLAIMS)) -> list[Finding]:
    """The claims of :data:`CLAIMS` (those in ``keys``) on one classified grid (cells with
    ``width``, ``batch_size``, ``test_acc`` (+ ``test_acc_std``, ``n_seeds``), ``train_loss``,
    ``lambda_max``, ``trace``, ``mc``, ``cka`` and ``phase``), each labelled ``grid``.
    ``best_accuracy_phase`` and ``metric_ranking`` are chapter 4's functions."""
    make = {
        "best_accuracy_phase": lambda: best_accuracy_phase(
            cells, list(_labels(cells)), load=LOAD, temperature=TEMPERATURE,
            iv_split=iv_split, grid=grid),
        "paper_table_order": lambda: paper_table_order(cells, grid),
        "metric_ranking": lambda: metric_ranking(cells, train_loss_high=train_loss_high, grid=grid),
        "mc_tracks_accuracy": lambda: mc_tracks_accuracy(cells, grid),
        "small_load_barrier": lambda: small_load_barrier(cells, grid=grid),
        "hot_end_unconverged": lambda: hot_end_unconverged(cells, grid=grid),
    }
    return [make[k]() for k in keys]


_MARK = {"holds": "✓ holds", "fails": "✗ fails", "inconclusive": "? inconclusive"}


def claims_table(findings: pd.DataFrame | Iterable[Finding], grids: Sequence[str] | None = None
                 ) -> pd.DataFrame:
    """Grids × claims: one row per grid (in ``grids`` order, else first seen), one column
    per claim of :data:`CLAIMS` (short names), entries ``✓ holds`` / ``✗ fails`` /
    ``? inconclusive`` ("" where the claim was not tested on that grid)."""

    df = findings if isinstance(findings, pd.DataFrame) else findings_frame(findings)
    df = df[df["key"].isin(list(CLAIMS))]
    order = list(grids) if grids is not None else list(dict.fromkeys(df["grid"]))
    table = df.pivot_table(index="grid", columns="key", values="verdict", aggfunc="first")
    table = table.reindex(index=order, columns=list(CLAIMS)).map(
        lambda v: _MARK.get(v, "") if isinstance(v, str) else "")
    table.columns = [CLAIMS[k] for k in table.columns]
    table.index.name = "grid"
    return table


#: Columns of ``tables/released_cells.csv``.
RELEASED_CELL_COLUMNS: tuple[str, ...] = (
    "grid", "load_name", "load", "temperature_name", "temperature", "test_acc", "train_loss",
    "lambda_max", "trace", "mc", "cka", "n_seeds", "n_failed", "phase", "p_phase", "reason",
)


def released_cells(grids: Sequence[ReleasedGrid]) -> pd.DataFrame:
    """One row per cell of every grid (:data:`RELEASED_CELL_COLUMNS`): the load and
    temperature in the grid's own units (``load_name``: width or embedding_dim;
    ``temperature_name``: batch_size), the cell means (accuracies as fractions; NaN where the
    release has none), the phase and its probability, and the reason (why unlabelled,
    undetermined or flagged)."""
    frames = []
    for g in grids:
        c = g.cells
        frames.append(pd.DataFrame({
            "grid": g.label, "load_name": g.load_name, "load": c[LOAD],
            "temperature_name": TEMPERATURE, "temperature": c[TEMPERATURE],
            **{m: numeric_column(c, m) for m in ("test_acc", "train_loss", "lambda_max",
                                                 "trace", "mc", "cka")},
            "n_seeds": numeric_column(c, "n_seeds") if "n_seeds" in c else numeric_column(c, "n_runs"),
            "n_failed": numeric_column(c, "n_failed") if "n_failed" in c else 0.0,
            "phase": c["phase"].astype(object) if "phase" in c else None,
            "p_phase": numeric_column(c, "p_phase"),
            "reason": c["reason"].fillna("") if "reason" in c else "",
        }))
    if not frames:
        return pd.DataFrame(columns=list(RELEASED_CELL_COLUMNS))
    return pd.concat(frames, ignore_index=True)[list(RELEASED_CELL_COLUMNS)]


def authors_released_grid(authors) -> ReleasedGrid:
    """The authors' grid (:class:`landscape_utils.experiments.authors_grid.AuthorsGrid`) as a
    :class:`ReleasedGrid` labelled :data:`~landscape_utils.experiments.findings.AUTHORS_GRID`."""
    cells = authors.cells.copy()
    cells["n_seeds"] = cells.get("n_runs", np.nan)
    cells["n_failed"] = 0
    return ReleasedGrid("authors", AUTHORS_GRID, cells, pd.DataFrame(), "width", authors.source,
                        [], authors.iv_split, authors.iv_reason)


# --------------------------------------------------------------------------------------
# What the chapter shows
# --------------------------------------------------------------------------------------
def resolve_folder(value: str | os.PathLike | None, key: str = "zoo_tables") -> Path | None:
    """A folder given in a params file (``settings.resolve_repo_path``): None when empty; an
    absolute path as is; a relative one against the current directory when it exists there,
    else against the repository root. Raises ``FileNotFoundError`` naming ``key`` and the
    value when neither exists."""
    return resolve_repo_path(value, key, folder=True, empty="for the shipped tables")


def n_labelled(grid: ReleasedGrid) -> int:
    """Cells with a label (a phase, IV, or undetermined)."""
    return int(grid.cells["phase"].notna().sum()) if "phase" in grid.cells else 0


def _values(v: pd.Series) -> str:
    u = sorted(pd.unique(pd.to_numeric(v, errors="coerce").dropna()))
    if not u:
        return "-"
    fmt = (lambda x: f"{x:g}")
    return f"{fmt(u[0])}-{fmt(u[-1])} ({len(u)})"


def overview_table(grids: Sequence[ReleasedGrid]) -> pd.DataFrame:
    """One row per grid: architecture and data (zoo grids), loads and batch sizes (range and
    count), seeds, runs that failed, the cell metrics the release lacks, the cells with a
    label out of all, and whether the CKA splits IV. Index: the grid's label."""
    rows = []
    for g in grids:
        info = ZOOS.get(g.name)
        c = g.cells
        seeds = numeric_column(c, "n_seeds")
        failed = numeric_column(c, "n_failed")
        rows.append({
            "grid": g.label,
            "load": f"{(info.load_name if info else g.load_name).replace('_', ' ')} {_values(c[LOAD])}",
            "batch size": _values(c[TEMPERATURE]),
            "seeds per cell": (f"{int(pd.Series(seeds).max())}" if pd.Series(seeds).notna().any()
                               else "-"),
            "failed runs": int(pd.Series(failed).fillna(0).sum()),
            "metrics missing": ", ".join(g.missing_metrics) or "none",
            "labelled cells": f"{n_labelled(g)} of {len(c)}",
            "IV split": "yes" if g.iv_split else "no",
        })
    return pd.DataFrame(rows).set_index("grid")


def phase_maps(grids: Sequence[ReleasedGrid], width: int = 138, height: int = 105,
               columns: int = 3) -> alt.FacetChart:
    """Every grid's phase map as small multiples in the book's phase colours, with the
    confidence as opacity (:func:`landscape_utils.core.plotting.phase_map`, faceted by grid,
    each panel with its own axes). Unlabelled cells are left out; a grid without any
    labelled cell has no panel."""

    frames = []
    for g in grids:
        c = g.cells
        if "phase" not in c:
            continue
        c = c[c["phase"].notna()]
        if c.empty:
            continue
        frames.append(pd.DataFrame({"grid": g.label, LOAD: c[LOAD].to_numpy(),
                                    TEMPERATURE: c[TEMPERATURE].to_numpy(),
                                    "phase": c["phase"].astype(str).to_numpy(),
                                    "p_phase": numeric_column(c, "p_phase")}))
    df = pd.concat(frames, ignore_index=True)
    order = [g.label for g in grids if g.label in set(df["grid"])]
    base = plotting.phase_map(df, x=LOAD, y=TEMPERATURE, width=width, height=height,
                              title="", legend_orient="bottom")
    return base.facet(facet=alt.Facet("grid:N", sort=order, title=None,
                                      header=alt.Header(labelFontSize=11, labelAnchor="start",
                                                        labelLimit=width + 60)),
                      columns=columns, title=alt.TitleParams(
                          "phase of every released grid", subtitle="paler: less confident")
                      ).resolve_scale(x="independent", y="independent")


def findings_rows(found: Sequence[Finding]) -> pd.DataFrame:
    """Findings as the frame of :func:`~landscape_utils.experiments.findings.findings_frame`."""

    return findings_frame(found)


_STYLE = {"✓": "color:#1b5e20;background:#e3f1e1", "✗": "color:#8e1b1b;background:#f8e0de",
          "?": "color:#4d4d4d;background:#ececec"}


def style_claims(table: pd.DataFrame):
    """:func:`claims_table` coloured like the findings tables (✓ green, ✗ red, ? grey), in
    small type so that seven columns fit the page."""
    def colour(v: object) -> str:
        return _STYLE.get(str(v)[:1], "")

    styles = [{"selector": "th, td", "props": "font-size:80%;padding:3px 5px;text-align:left"},
              {"selector": "th.col_heading", "props": "vertical-align:bottom;font-weight:600"}]
    return table.style.map(colour).set_table_styles(styles)


def contrast_text(findings: pd.DataFrame, reference: str = AUTHORS_GRID) -> str:
    """Markdown, one bullet per claim: on which grids it holds, fails or cannot be decided,
    and, where it holds on ``reference`` and fails elsewhere, the evidence of each failure."""
    lines = []
    for key, short in CLAIMS.items():
        rows = findings[findings["key"] == key]
        if rows.empty:
            continue
        by = {v: list(rows.loc[rows["verdict"] == v, "grid"]) for v in ("holds", "fails", "inconclusive")}
        ref = rows.loc[rows["grid"] == reference, "verdict"]
        ref_v = ref.iloc[0] if len(ref) else "not tested"
        line = (f"- **{short}** (`{key}`): holds on {len(by['holds'])}, fails on {len(by['fails'])}, "
                f"inconclusive on {len(by['inconclusive'])} of {len(rows)} grids; on the "
                f"{reference}: {ref_v}.")
        if ref_v == "holds" and by["fails"]:
            line += " Fails on " + "; ".join(
                f"{r.grid}: {r.evidence}" for r in rows[rows["verdict"] == "fails"].itertuples()) + "."
        lines.append(line)
    return "\n".join(lines)


def extent_table(grids: Sequence[ReleasedGrid]) -> pd.DataFrame:
    """:func:`landscape_utils.experiments.rugged.phase_extent` of every grid with a labelled cell,
    undetermined cells left out: columns (``heat_pos`` | ``load_pos`` | ``n_cells``, phase),
    one row per grid."""

    out = {}
    for g in grids:
        c = g.cells
        if "phase" not in c:
            continue
        c = c[c["phase"].notna() & (c["phase"].astype(str) != UNDETERMINED)]
        if c.empty:
            continue
        c = c.assign(phase=c["phase"].astype(str))
        out[g.label] = phase_extent(c, LOAD, TEMPERATURE)
    if not out:
        return pd.DataFrame()
    ext = pd.concat(out, names=["grid", "phase"])
    return ext[["n_cells", "load_pos", "heat_pos"]].unstack("phase").reindex(list(out))
