"""Tests for landscape_utils.authors_grid: the shipped authors' grid, classified, keeps the
paper's layout; paths resolve as the params files mean them."""
from __future__ import annotations

import pytest

from landscape_utils import authors_grid
from landscape_utils.reference import PAPER_BATCH_SIZES


@pytest.fixture(scope="module")
def grid():
    return authors_grid.load_authors_grid(n_resamples=400)


def test_the_shipped_grid_is_classified_with_the_papers_layout(grid):
    cells = grid.cells
    assert grid.source == "the shipped table"
    assert set(cells.batch_size) <= set(PAPER_BATCH_SIZES)
    assert {"phase", "p_phase", "reason", "hessian_flag"} <= set(cells.columns)
    best = cells.loc[cells.test_acc.idxmax()]
    assert (best.width, best.batch_size) == (128, 44)
    assert best.phase == "IV-B" and grid.iv_split
    narrow = cells[cells.width == cells.width.min()]
    assert (narrow.phase == "I").all()
    assert cells.p_phase.between(0, 1).all()
    # the Bezier profiles of the same cells come along
    assert {"width", "batch_size", "t", "train_err"} <= set(grid.paths.columns)
    assert set(map(tuple, grid.paths[["width", "batch_size"]].drop_duplicates().to_numpy())) \
        <= set(map(tuple, cells[["width", "batch_size"]].to_numpy()))


def test_resolve_results_path(tmp_path, monkeypatch):
    assert authors_grid.resolve_results_path("") is None
    assert authors_grid.resolve_results_path(None) is None
    f = tmp_path / "results.tar.gz"
    f.write_bytes(b"")
    assert authors_grid.resolve_results_path(str(f)) == f.resolve()
    monkeypatch.chdir(tmp_path)
    assert authors_grid.resolve_results_path("results.tar.gz") == f.resolve()
    # relative to the repository root when not found from the current directory
    assert authors_grid.resolve_results_path("pyproject.toml") == \
        (authors_grid.REPO / "pyproject.toml").resolve()
    with pytest.raises(FileNotFoundError, match="nowhere.tar.gz"):
        authors_grid.resolve_results_path("nowhere.tar.gz")
    with pytest.raises(FileNotFoundError):
        authors_grid.load_authors_grid("nowhere.tar.gz")
