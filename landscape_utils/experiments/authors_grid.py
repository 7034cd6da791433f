"""The authors' released grid (Yang et al. 2021: ResNet18 / CIFAR-10), classified with a
confidence like ours, for chapters 4 and 5.

:func:`load_authors_grid` reads the per-cell, per-run and per-pair tables shipped with the
package (:mod:`landscape_utils.experiments.reference`), or the authors' ``results.tar.gz`` when a path
is given, restricted to the paper's 13 batch sizes, and applies
:func:`landscape_utils.experiments.taxonomy.classify_with_confidence` with the default thresholds
(which were set on this grid). Nothing outside the package is needed by default.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.settings import REPO, resolve_repo_path  # noqa: F401  (REPO: where relative paths start)
from . import reference
from .taxonomy import PhaseThresholds, classify_with_confidence, neighbour_spread

__all__ = ["AuthorsGrid", "resolve_results_path", "load_authors_grid"]

LOAD, TEMPERATURE = "width", "batch_size"   # the authors' axes


@dataclass(frozen=True)
class AuthorsGrid:
    """The authors' grid, one row per cell, with its phases."""

    cells: pd.DataFrame   # width, batch_size, the metrics (+ _std, n_runs) and the columns of
    #                       classify_with_confidence (phase, p_phase, p_I, ..., reason)
    paths: pd.DataFrame   # the error along the authors' Bezier curve (paths.csv columns)
    iv_split: bool        # whether the CKA separates IV-A from IV-B beyond the seed spread
    iv_reason: str        # why (not), in words
    source: str           # "the shipped table" or the tarball's path
    mc_spread: float = float("nan")  # borrowed sd of one pair's mc (NaN: mc held, labels conditional on it)

    @property
    def keys(self) -> list[str]:
        return [LOAD, TEMPERATURE]


def resolve_results_path(paper_results: str | os.PathLike | None) -> Path | None:
    """``paper_results`` as a path (``settings.resolve_repo_path``): None when empty; an
    absolute path as is; a relative one against the current directory when it exists there,
    else against the repository root. Raises ``FileNotFoundError`` naming the value when
    neither exists."""
    return resolve_repo_path(paper_results, "paper_results", empty="to use the table shipped with the package")


def load_authors_grid(paper_results: str | os.PathLike | None = None,
                      thresholds: PhaseThresholds = PhaseThresholds(), level: float = 0.7,
                      n_resamples: int = 2000, seed: int = 0,
                      mc_spread: str | float | None = "neighbours") -> AuthorsGrid:
    """The authors' grid with phases and their confidence.

    The authors' mc comes from one pair of runs per cell, so no cell can give its spread.
    ``mc_spread`` says what to do: ``"neighbours"`` (default) borrows the sd of one pair's
    mc from the grid itself (:func:`~landscape_utils.experiments.taxonomy.neighbour_spread`, second
    differences between neighbouring cells), so that a cell whose mc sits near a threshold
    is undetermined; a number gives that sd; None holds mc fixed, and every label is then
    *conditional on mc*.

    Args:
        paper_results: empty/None reads the shipped tables; else the authors'
            ``results.tar.gz`` (or its unpacked folder), see :func:`resolve_results_path`.
        thresholds, level, n_resamples, seed: as in
            :func:`~landscape_utils.experiments.taxonomy.classify_with_confidence` (the seeds resampled:
            CKA per pair and the train loss per run, jointly).
    """
    path = resolve_results_path(paper_results)
    if path is None:
        cells = reference.load_shipped_results(paper_grid_only=True)
        runs = reference.load_shipped_results(long=True, paper_grid_only=True)
        pairs = reference.load_shipped_pairs(paper_grid_only=True)
        paths = reference.load_shipped_paths(paper_grid_only=True)
    else:
        cells = reference.load_released_results(path, paper_grid_only=True)
        runs = reference.load_released_results(path, long=True, paper_grid_only=True)
        pairs = reference.released_pairs(path, paper_grid_only=True)
        paths = reference.released_paths_table(path, paper_grid_only=True)
    if isinstance(mc_spread, str):
        if mc_spread != "neighbours":
            raise ValueError(f"mc_spread must be 'neighbours', a number or None, got {mc_spread!r}")
        sd = neighbour_spread(cells, "mc", LOAD, TEMPERATURE)
    else:
        sd = float("nan") if mc_spread is None else float(mc_spread)
    conf = classify_with_confidence(cells, pairs, runs, load=LOAD, temperature=TEMPERATURE,
                                    thresholds=thresholds, level=level,
                                    n_resamples=n_resamples, seed=seed,
                                    spread={"mc": sd} if np.isfinite(sd) else None)
    return AuthorsGrid(cells.join(conf), paths, bool(conf.attrs["iv_split"]),
                       str(conf.attrs["iv_reason"]),
                       "the shipped table" if path is None else str(path), sd)
