"""Tests for landscape_utils.experiments.reference: synthetic release trees, the restricted unpickler,
the tables shipped with the package, and (only when the tarball is at hand) a fresh
derivation of those tables from the authors' release."""
from __future__ import annotations

import collections
import os
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from landscape_utils.experiments.derive import main
from landscape_utils.experiments.reference import (PAIR_COLUMNS, PAPER_BATCH_SIZES, PAPER_WIDTHS, PATH_COLUMNS,
                                                   SHIPPED_FILES, UnsafePickleError, derive_tables,
                                                   load_released_results, load_results, load_shipped_pairs,
                                                   load_shipped_paths, load_shipped_results, read_table,
                                                   released_pairs, released_paths_table, restricted_loads)
from landscape_utils.experiments.taxonomy import PHASES, classify, phase_summary

# The authors' tarball on the project's own machine, beside the repository. Only the
# re-derivation test uses it (skipped when absent); everything else runs on shipped data.
REAL = Path(__file__).resolve().parents[1] / ".." / "shared/reference/paper_lr_decay_results.tar.gz"
KNOBS = "different_knobs_subset_10"


# --------------------------------------------------------------------------------------
# A tiny synthetic release, same layout, plain pickle.dump of builtin/numpy data
# --------------------------------------------------------------------------------------
def _cell_files(k: float) -> dict[str, object]:
    """Metric files of one cell with 3 runs; every value is scaled by k so cells differ."""
    n = 3
    softmax = {(0, 1): .1, (0, 2): .2, (1, 0): .3, (1, 2): .4, (2, 0): .5, (2, 1): .6}
    dist = {(0, 1): 3., (1, 0): 3., (0, 2): 6., (2, 0): 6., (1, 2): 9., (2, 1): 9.}
    return {
        "loss_acc.pkl": {r: {"nll": k * (r + 1), "loss": k * (r + 1), "accuracy": 50.0 + 10 * r}
                         for r in range(n)},
        "loss_acc_test.pkl": {r: {"nll": 0.5 + r, "loss": k * (r + 1.5), "accuracy": 40.0 + 10 * r}
                              for r in range(n)},
        "hessian.pkl": {r: {"top_eigenvalue": [float(k * 10 * (r + 1))],
                            "trace": np.float64(k * [100, 200, 600][r])} for r in range(n)},
        "CKA_mixup_alpha_16.0.pkl": {
            "representation_similarity": {
                i: {j: [np.float32(0.9), np.float32(1.0 if i == j else k * softmax[(i, j)])]
                    for j in range(n)} for i in range(n)},
            "classification_similarity": {i: {} for i in range(n)},
            "test_accuracy": {},
        },
        "model_dist.pkl": {"model_distance": {
            i: {j: {"dist": 0.0 if i == j else k * dist[(i, j)]} for j in range(n)}
            for i in range(n)}},
    }


TR_ERR = np.array([2.0, 5.0, 8.0, 3.0, 4.0])  # mid 3, t* = 0.5, mc = 3 - 8 = -5


def _write_cell(metrics: Path, k: float, skip: tuple[str, ...] = ()) -> None:
    metrics.mkdir(parents=True)
    for name, obj in _cell_files(k).items():
        if name not in skip:
            with open(metrics / name, "wb") as f:
                pickle.dump(obj, f)
    np.savez(metrics / "curve_test.npz", ts=np.linspace(0, 1, 5), tr_err=TR_ERR * k,
             te_err=TR_ERR + 10)


@pytest.fixture()
def release(tmp_path: Path) -> Path:
    """results/different_knobs_subset_10/bs_{16,64}/lr_decay/ResNet18_w{1,8}/metrics, with
    k = 1 except (8, 64) where k = 2; (1, 64) has no test file; plus distractors."""
    root = tmp_path / "tree" / "results"
    for w in (1, 8):
        for bs in (16, 64):
            k = 2.0 if (w, bs) == (8, 64) else 1.0
            skip = ("loss_acc_test.pkl",) if (w, bs) == (1, 64) else ()
            _write_cell(root / KNOBS / f"bs_{bs}" / "lr_decay" / f"ResNet18_w{w}" / "metrics",
                        k, skip)
    # another schedule folder and an unrelated file: ignored
    _write_cell(root / KNOBS / "bs_16" / "const_lr" / "ResNet18_w1" / "metrics", 100.0)
    (root / "README.txt").write_text("not a metric")
    return root


def _tar(folder: Path, dest: Path) -> Path:
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return dest


def _check_synthetic(df: pd.DataFrame) -> None:
    assert list(df.columns[:2]) == ["width", "batch_size"]
    assert list(df[["width", "batch_size"]].itertuples(index=False, name=None)) == [
        (1, 16), (1, 64), (8, 16), (8, 64)]
    assert (df.n_runs == 3).all()
    for _, row in df.iterrows():
        k = 2.0 if (row.width, row.batch_size) == (8, 64) else 1.0
        assert row.train_loss == pytest.approx(2.0 * k)            # mean k*(1, 2, 3)
        assert row.train_acc == pytest.approx(0.60)                 # (50+60+70)/3 %, as fraction
        assert row.train_acc_std == pytest.approx(0.10)
        assert row.lambda_max == pytest.approx(20.0 * k)
        assert row.trace == pytest.approx(300.0 * k)
        assert row.cka == pytest.approx(0.35 * k)                   # softmax, ordered pairs i != j
        assert row.l2 == pytest.approx(6.0 * k)
        assert row.mc == pytest.approx(-5.0 * k)
        assert row.mc_t_star == pytest.approx(0.5)
        if (row.width, row.batch_size) == (1, 64):
            assert np.isnan(row.test_acc) and np.isnan(row.test_loss)
        else:
            assert row.test_acc == pytest.approx(0.50)
            assert row.test_loss == pytest.approx(2.5 * k)


def test_synthetic_folder(release: Path):
    _check_synthetic(load_released_results(release))
    # the folder above a leading folder works as well
    _check_synthetic(load_released_results(release.parent))


def test_synthetic_targz_streams_without_extracting(release: Path, tmp_path: Path, monkeypatch):
    archive = _tar(release, tmp_path / "results.tar.gz")

    def forbidden(*a, **k):
        raise AssertionError("must not unpack onto disk")

    monkeypatch.setattr(tarfile.TarFile, "extractall", forbidden)
    monkeypatch.setattr(tarfile.TarFile, "extract", forbidden)
    before = sorted(p.name for p in tmp_path.iterdir())
    df = load_released_results(archive)
    _check_synthetic(df)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    pd.testing.assert_frame_equal(df, load_released_results(release))


def test_synthetic_long_and_grid_filter(release: Path):
    long = load_released_results(release, long=True)
    assert len(long) == 12 and list(long.run.unique()) == [0, 1, 2]
    c = long[(long.width == 1) & (long.batch_size == 16)].set_index("run")
    assert list(c.test_acc) == pytest.approx([0.4, 0.5, 0.6])
    assert list(c.lambda_max) == pytest.approx([10.0, 20.0, 30.0])
    # run 0 takes part in pairs (0,1), (0,2), (1,0), (2,0): (.1 + .2 + .3 + .5) / 4
    assert c.loc[0, "cka"] == pytest.approx(0.275)
    assert c.loc[0, "l2"] == pytest.approx(4.5)
    assert (c.mc == -5.0).all()
    # the mean of per-run values is the cell value
    cells = load_released_results(release)
    agg = long.groupby(["width", "batch_size"])[["cka", "l2", "trace"]].mean().reset_index()
    np.testing.assert_allclose(agg[["cka", "l2", "trace"]], cells[["cka", "l2", "trace"]])
    # 16 and 64 are paper batch sizes; nothing dropped here
    assert len(load_released_results(release, paper_grid_only=True)) == 4


def test_empty_tree_raises(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no metrics files"):
        load_released_results(tmp_path / "empty")


# --------------------------------------------------------------------------------------
# Restricted unpickling
# --------------------------------------------------------------------------------------
class _Evil:
    """Would run a shell command when unpickled by plain pickle.load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_refused_folder_and_tar(release: Path, tmp_path: Path):
    marker = tmp_path / "pwned"
    target = release / KNOBS / "bs_64" / "lr_decay" / "ResNet18_w8" / "metrics" / "hessian.pkl"
    with open(target, "wb") as f:
        pickle.dump({0: _Evil(marker)}, f)
    refused = f"{os.system.__module__}.system"  # 'posix.system' on Linux
    with pytest.raises(UnsafePickleError) as e:
        load_released_results(release)
    msg = str(e.value)
    assert str(target) in msg and refused in msg
    archive = _tar(release, tmp_path / "evil.tar.gz")
    with pytest.raises(UnsafePickleError) as e:
        load_released_results(archive)
    msg = str(e.value)
    assert "bs_64/lr_decay/ResNet18_w8/metrics/hessian.pkl" in msg and refused in msg
    assert str(archive) in msg
    assert not marker.exists()  # the payload never ran


def test_unknown_class_refused_by_name():
    data = pickle.dumps(collections.OrderedDict(a=1))
    with pytest.raises(UnsafePickleError, match=r"x\.pkl: .*'collections\.OrderedDict'"):
        restricted_loads(data, source="x.pkl")
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        restricted_loads(pickle.dumps(eval), source="y.pkl")


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_numpy_and_builtins_allowed(protocol: int):
    obj = {"a": np.arange(6.0).reshape(2, 3), "b": [np.float64(1.5), np.float32(2.5)],
           "c": (1, "x", None, True), "d": {1, 2}, "e": np.int64(7), "f": b"raw",
           "g": np.array([1, 2], dtype=np.int32)}
    got = restricted_loads(pickle.dumps(obj, protocol=protocol))
    np.testing.assert_array_equal(got["a"], obj["a"])
    assert got["g"].dtype == np.int32
    assert got["b"] == [1.5, 2.5] and isinstance(got["b"][1], np.float32)
    assert got["c"] == obj["c"] and got["d"] == {1, 2} and got["e"] == 7 and got["f"] == b"raw"


def test_npz_object_array_refused(release: Path):
    npz = release / KNOBS / "bs_16" / "lr_decay" / "ResNet18_w1" / "metrics" / "curve_test.npz"
    np.savez(npz, tr_err=np.array([object(), 1], dtype=object))
    with pytest.raises(UnsafePickleError, match="curve_test.npz"):
        load_released_results(release)


# --------------------------------------------------------------------------------------
# The authors' release, as shipped with the package
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real() -> pd.DataFrame:
    """The authors' cells, from the table shipped with the package."""
    return load_shipped_results()


def test_real_grid_and_ranges(real: pd.DataFrame):
    paper = real[real.batch_size.isin(PAPER_BATCH_SIZES)]
    assert sorted(paper.width.unique()) == list(PAPER_WIDTHS)
    assert sorted(paper.batch_size.unique()) == list(PAPER_BATCH_SIZES)
    assert len(paper) == 14 * 13 and not paper.duplicated(["width", "batch_size"]).any()
    assert set(real.batch_size) - set(PAPER_BATCH_SIZES) <= {19, 27}
    assert (real.n_runs == 5).all()
    assert paper.test_acc.between(0.35, 0.95).all()          # fractions, not percent
    assert paper.test_acc.max() > 0.88
    assert real.train_acc.between(0.3, 1.0).all()
    assert real.train_loss.between(0, 2).all() and (real.train_loss > 0).all()
    assert (real.lambda_max > 0).all() and (real.trace > 0).all()
    assert real.cka.between(0.2, 1.0).all()
    assert real.mc.between(-35, 15).all() and (real.l2 > 0).all()
    # extra batch sizes have no test file
    assert real[~real.batch_size.isin(PAPER_BATCH_SIZES)].test_acc.isna().all()
    assert len(load_shipped_results(paper_grid_only=True)) == 182
    # one cell checked by hand: accuracies 78.76, 79.97, 79.46, 78.99, 79.66 %;
    # tr_err along the curve 0, .05, 5.044, .056, 0 -> mc = -5.044 at t = 0.5
    c = real[(real.width == 11) & (real.batch_size == 1024)].iloc[0]
    assert c.test_acc == pytest.approx(0.79368)
    assert c.mc == pytest.approx(-5.044) and c.mc_t_star == 0.5
    assert c.train_acc == pytest.approx(1.0)


def test_real_phase_layout(real: pd.DataFrame):
    cells = real[real.batch_size.isin(PAPER_BATCH_SIZES)].reset_index(drop=True)
    ph = classify(cells)
    assert not ph.isna().any() and set(ph) == set(PHASES)
    w, bs = cells.width, cells.batch_size
    # I and III at small widths; the narrowest nets are all phase I
    assert (w[ph.isin(["I", "III"])] <= 16).all()
    assert (ph[w <= 2] == "I").all()
    assert (w[ph == "III"] >= 6).all() and (bs[ph == "III"] >= 92).all()
    # II at the smallest batch sizes (one unfitted cell, width 23 at batch 44, borders it)
    assert (bs[ph == "II"] <= 44).all() and (bs[ph == "II"] <= 32).mean() > 0.95
    assert (ph[(bs == 16) & (w >= 3)] == "II").all()
    # IV at large widths (below the II band)
    assert ph[(w >= 23) & (bs >= 64)].isin(["IV-A", "IV-B"]).all()
    assert (w[ph.isin(["IV-A", "IV-B"])] >= 16).all()
    # IV-B holds the best accuracy
    s = phase_summary(cells, ph)
    assert s.test_acc_mean.idxmax() == "IV-B"
    assert ph[cells.test_acc.idxmax()] == "IV-B"


def test_codecs_encode_only_latin1():
    # protocol-2 pickle of _codecs.encode('x', 'rot13'): an old-protocol global we admit
    # only for latin-1 (numpy array bytes)
    data = b"\x80\x02c_codecs\nencode\nq\x00X\x01\x00\x00\x00xX\x05\x00\x00\x00rot13\x86R."
    with pytest.raises(UnsafePickleError, match="z.pkl: .*latin-1"):
        restricted_loads(data, source="z.pkl")
    ok = data.replace(b"X\x05\x00\x00\x00rot13", b"X\x06\x00\x00\x00latin1")
    assert restricted_loads(ok) == b"x"


# --------------------------------------------------------------------------------------
# Pairs, paths, derivation and the shipped tables
# --------------------------------------------------------------------------------------
def test_cell_spread_over_pairs(release: Path):
    df = load_released_results(release).set_index(["width", "batch_size"])
    for (w, bs), row in df.iterrows():
        k = 2.0 if (w, bs) == (8, 64) else 1.0
        # unordered pairs: cka (0,1) (.1+.3)/2, (0,2) (.2+.5)/2, (1,2) (.4+.6)/2
        assert row.cka_std == pytest.approx(np.std([.2 * k, .35 * k, .5 * k], ddof=1))
        assert row.l2_std == pytest.approx(np.std([3 * k, 6 * k, 9 * k], ddof=1))
        assert row.n_pairs == 3


def test_released_pairs(release: Path):
    pairs = released_pairs(release)
    assert list(pairs.columns) == list(PAIR_COLUMNS)
    assert len(pairs) == 4 * 3
    c = pairs[(pairs.width == 8) & (pairs.batch_size == 64)].set_index(["seed_a", "seed_b"])
    assert list(c.index) == [(0, 1), (0, 2), (1, 2)]
    assert list(c.cka) == pytest.approx([0.4, 0.7, 1.0])       # k = 2, both orders averaged
    assert list(c.l2) == pytest.approx([6.0, 12.0, 18.0])
    assert c.loc[(0, 1), "mc"] == pytest.approx(-10.0)          # the one pair with a curve
    assert c.mc.isna().sum() == 2
    # the mean over a cell's pairs is the cell's value
    cells = load_released_results(release)
    agg = pairs.groupby(["width", "batch_size"])[["cka", "l2", "mc"]].mean().reset_index()
    np.testing.assert_allclose(agg[["cka", "l2", "mc"]], cells[["cka", "l2", "mc"]])


def test_released_paths_table(release: Path):
    paths = released_paths_table(release)
    assert list(paths.columns) == list(PATH_COLUMNS)
    assert len(paths) == 4 * 5 and (paths.pair == "0-1").all()
    c = paths[(paths.width == 8) & (paths.batch_size == 64)]
    assert list(c.train_err) == pytest.approx(list(TR_ERR * 2))
    assert list(c.t) == pytest.approx(list(np.linspace(0, 1, 5)))
    assert list(c.test_err) == pytest.approx(list(TR_ERR + 10))
    assert paths.train_loss.isna().all()  # the synthetic curves have no tr_loss


def test_derive_cli_round_trip(release: Path, tmp_path: Path, capsys):
    archive = _tar(release, tmp_path / "results.tar.gz")
    out = tmp_path / "shipped"
    assert main(["reference", str(archive), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(SHIPPED_FILES.values())
    assert "cells.csv" in capsys.readouterr().out
    fresh = derive_tables(release)
    for name, df in fresh.items():
        back = read_table(name, out)
        pd.testing.assert_frame_equal(back, df, check_exact=True, check_dtype=False)
        assert list(back.columns) == list(df.columns)
    pd.testing.assert_frame_equal(fresh["cells"], load_released_results(release))
    pd.testing.assert_frame_equal(fresh["runs"], load_released_results(release, long=True))
    with pytest.raises(SystemExit):
        main(["reference", str(tmp_path / "nope.tar.gz")])
    with pytest.raises(KeyError, match="unknown table 'cell'"):
        read_table("cell", out)
    with pytest.raises(FileNotFoundError, match="derive"):
        read_table("cells", tmp_path)


def test_shipped_tables_have_the_loader_columns(release: Path):
    synthetic = load_released_results(release)
    shipped = load_shipped_results()
    assert list(shipped.columns) == list(synthetic.columns)
    assert list(load_shipped_results(long=True).columns) == list(
        load_released_results(release, long=True).columns)
    assert list(load_shipped_pairs().columns) == list(PAIR_COLUMNS)
    assert list(load_shipped_paths().columns) == list(PATH_COLUMNS)
    assert shipped.width.dtype == np.int64 and shipped.n_runs.dtype == np.int64
    assert len(shipped) == 210 and len(load_shipped_results(paper_grid_only=True)) == 182
    assert len(load_shipped_results(long=True)) == 5 * 210
    assert set(load_shipped_paths(paper_grid_only=True).batch_size) == set(PAPER_BATCH_SIZES)
    # the default of load_results is the shipped table; a given path must exist
    pd.testing.assert_frame_equal(load_results(""), shipped)
    pd.testing.assert_frame_equal(load_results(release), synthetic)
    with pytest.raises(FileNotFoundError, match="paper_results: .*nope"):
        load_results("nope/results.tar.gz")


def test_shipped_pairs_agree_with_shipped_cells():
    cells = load_shipped_results().set_index(["width", "batch_size"])
    pairs = load_shipped_pairs()
    g = pairs.groupby(["width", "batch_size"])
    np.testing.assert_allclose(g.cka.mean().reindex(cells.index), cells.cka, rtol=1e-12)
    np.testing.assert_allclose(g.cka.std().reindex(cells.index), cells.cka_std, rtol=1e-12)
    np.testing.assert_allclose(g.mc.mean().reindex(cells.index), cells.mc, rtol=1e-12)
    assert (g.mc.count() == 1).all()
    # mc recomputed from the shipped curve of every cell
    from landscape_utils.metrics.profiles import mode_connectivity

    paths = load_shipped_paths()
    for (w, bs), prof in paths.groupby(["width", "batch_size"]):
        assert mode_connectivity(prof.sort_values("t").train_err.to_numpy())[0] == pytest.approx(
            cells.loc[(w, bs), "mc"], abs=1e-12)


def test_reference_does_not_import_torch():
    code = ("import sys, landscape_utils.experiments.reference, landscape_utils.experiments.findings; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.skipif(not REAL.exists(), reason="the authors' results.tar.gz is not beside the repo")
def test_shipped_tables_equal_a_fresh_derivation():
    fresh = derive_tables(REAL)
    assert sorted(fresh) == sorted(SHIPPED_FILES)
    for name, df in fresh.items():
        pd.testing.assert_frame_equal(read_table(name), df, check_exact=True, check_dtype=False)
