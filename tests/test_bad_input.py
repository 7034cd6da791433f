"""One test per row of the README's table "What happens on bad input".

Each bad input gives a message naming the bad key, value or file and a non-zero exit
from the driver (2: found before anything runs), and loses nothing already computed.
Store- and runner-level rows live in test_store.py and test_runner.py.
"""
from __future__ import annotations

import ast
import errno
import os
import socket
import sys
import time
from pathlib import Path

import pytest
import yaml

from landscape_utils.book import driver as book
from landscape_utils.book.driver import BOOK_DIR, chapter_parameters, chapters, load_params, preflight
from landscape_utils.runs.runner import CONFIG_KEYS, expand_grid, run_grid
from landscape_utils.runs.store import Store, load_results, run_id

REPO = Path(__file__).resolve().parents[1]
TINY = {"dataset": "digits", "model": "mlp", "load_values": [4], "temperature_values": [64], "num_seeds": 1,
        "num_epochs": 1}


def drive(tmp_path, capsys, chapter01: dict, shared: dict | None = None) -> tuple[int, str]:
    """Run the driver's main() on chapter 1 with these parameters; return (exit code, stderr)."""
    params = {"shared": {"workdir": str(tmp_path / "work"), "device": "cpu", **(shared or {})},
              "01_training_grid": {**TINY, **chapter01}}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    code = book.main(["--params", str(path), "--out", str(tmp_path / "out"), "--chapters", "01", "--no-html"])
    err = capsys.readouterr().err
    assert not (tmp_path / "out").exists(), "a chapter ran although the input was bad"
    return code, err


def closed_port() -> int:
    """A local TCP port that nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("chapter01,message", [
    ({"widht": 8}, "unknown key 'widht' for chapter 01_training_grid"),
    ({"num_seeds": "three"}, "key 'num_seeds' for chapter 01_training_grid should be int, got str 'three'"),
    ({"width": None}, "key 'width' for chapter 01_training_grid should be int, got NoneType None"),
    ({"dataset": "imagenet"}, "unknown dataset 'imagenet'; choose one of mnist1d"),
    ({"model": "vgg"}, "unknown model 'vgg'"),
    ({"optimizer": "adam"}, "unknown optimizer 'adam'; choose one of sgd"),
    ({"executor": "slurm"}, "unknown executor 'slurm'; choose one of serial, process, ray"),
    ({"load_values": [4, 0]}, "width must be a positive integer, got 0"),
    ({"label_noise": 1.5}, r"label_noise must be in \[0, 1\], got 1.5"),
    ({"load_axis": "data_fraction", "load_values": [0.5, 0.0]}, r"data_fraction must be in \(0, 1\], got 0.0"),
    ({"temperature_values": [64, 4096], "data_fraction": 1.0},
     r"batch_size=4096 is larger than the training set of 'digits' with data_fraction=1.0 \(1437 samples\)"),
    ({"num_seeds": 0}, "num_seeds must be a positive integer, got 0"),
    ({"load_axis": "widht"}, "load_axis='widht' is not a run config field"),
    ({"executor": "process", "workers": -1}, "workers must be a non-negative integer"),
    ({"executor": "ray", "ray_num_gpus": -0.5}, "ray_num_gpus must be a finite number >= 0, got -0.5"),
])
def test_bad_params_stop_the_driver_before_anything_runs(tmp_path, capsys, chapter01, message):
    import re

    code, err = drive(tmp_path, capsys, chapter01)
    assert code == 2 and re.search(message, err), err
    assert str(tmp_path / "params.yaml") in err  # names the params file


def test_missing_dataset_folder(tmp_path, capsys):
    code, err = drive(tmp_path, capsys, {"dataset": "cifar10", "model": "cnn", "temperature_values": [64],
                                         "data_root": str(tmp_path / "data"), "download": False})
    assert code == 2
    assert f"dataset 'cifar10' not found under data_root='{tmp_path / 'data'}'" in err
    assert "cifar-10-batches-py/data_batch_1" in err and "download=True" in err


def test_unreachable_ray_address_fails_fast(tmp_path, capsys):
    pytest.importorskip("ray", reason="Ray is not installed (optional extra landscape_utils[ray])")
    address = f"127.0.0.1:{closed_port()}"
    t0 = time.perf_counter()
    code, err = drive(tmp_path, capsys, {"executor": "ray", "ray_address": address})
    assert code == 2 and f"cannot reach the Ray cluster at ray_address='{address}'" in err
    assert time.perf_counter() - t0 < 30  # Ray itself would wait a minute or more


def test_ray_not_installed_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    code, err = drive(tmp_path, capsys, {"executor": "ray"})
    assert code == 2 and "pip install 'landscape_utils[ray]'" in err


def test_finished_grid_needs_no_cluster(tmp_path):
    """Rebuilding the book of a finished grid does not contact the Ray cluster."""
    params = load_params(_write(tmp_path, {"shared": {"workdir": str(tmp_path / "w")},
                                           "01_training_grid": {**TINY, "executor": "ray",
                                                                "ray_address": f"127.0.0.1:{closed_port()}"}}),
                         [BOOK_DIR / "01_training_grid.py"])
    with pytest.raises(book.ParamsError, match="cannot reach"):
        preflight(params)
    merged = {k: p.default for k, p in chapter_parameters(BOOK_DIR / "01_training_grid.py").items()}
    merged.update(params["01_training_grid"])
    from landscape_utils.runs.runner import grid_from_params

    run_grid(grid_from_params(merged), tmp_path / "w", device="cpu", progress=False)
    preflight(params)  # nothing left to train: no error


def _write(tmp_path, obj) -> Path:
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(obj))
    return p


def test_shipped_params_pass_the_preflight():
    for name in ("smoke.yaml", "default.yaml"):
        preflight(load_params(REPO / "params" / name, chapters()), name)


def test_preflight_builds_the_grid_chapter_1_builds():
    """Chapter 1 builds its configs with ``grid_from_params`` from its own parameters (its
    globals), the function the preflight calls on the same values, so the preflight checks
    exactly the configs the chapter trains."""
    src = (BOOK_DIR / "01_training_grid.py").read_text()
    calls = [n for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Name) and n.func.id == "grid_from_params"]
    assert len(calls) == 1
    assert [ast.unparse(a) for a in calls[0].args] == ["globals()"]
    declared = set(chapter_parameters(BOOK_DIR / "01_training_grid.py"))
    assert (declared & set(CONFIG_KEYS)) - {"seed"}, "chapter 1 declares no run config field"


class _FullDisk:
    """``os.fdopen`` whose files accept ``budget`` bytes in all, then fail with ENOSPC."""

    def __init__(self, budget: int):
        self.budget, self.real = budget, os.fdopen

    def __call__(self, fd, *args, **kwargs):
        fh, outer = self.real(fd, *args, **kwargs), self
        real_write = fh.write

        def write(data):
            if len(data) > outer.budget:
                real_write(data[:outer.budget])
                outer.budget = 0
                raise OSError(errno.ENOSPC, "No space left on device")
            outer.budget -= len(data)
            return real_write(data)

        fh.write = write
        return fh


def test_full_disk_during_the_grid(tmp_path, monkeypatch):
    grid = expand_grid({"dataset": "digits", "num_epochs": 1}, {"width": [4, 8]}, seeds=range(1))
    run_grid(grid[:1], tmp_path, device="cpu", progress=False)
    first = Store(tmp_path).run_dir(run_id(grid[0]))
    before = {p.name: p.read_bytes() for p in first.iterdir()}
    monkeypatch.setattr(os, "fdopen", _FullDisk(3000))  # the disk fills while the second run saves
    with pytest.raises(OSError, match=f"no space left on the device while saving run {run_id(grid[1])}"):
        run_grid(grid, tmp_path, device="cpu", progress=False)
    monkeypatch.undo()
    second = Store(tmp_path).run_dir(run_id(grid[1]))
    assert not list(second.glob(".*.tmp")) and not (second / "metrics.json").exists()
    assert {p.name: p.read_bytes() for p in first.iterdir()} == before  # earlier run untouched
    assert list(load_results(tmp_path, grid).run_id) == [run_id(grid[0])]  # not read as finished
    assert len(run_grid(grid, tmp_path, device="cpu", progress=False)) == 2  # space freed: resumes


# ---- every chapter's values and the device, checked before any chapter runs ----------
def drive_all(tmp_path, capsys, sections: dict) -> tuple[int, str]:
    """Run the driver's main() on every chapter with these sections (plus a tiny chapter 1);
    return (exit code, stderr). Nothing may run: chapters 00 and 01 come before the bad one."""
    params = {"shared": {"workdir": str(tmp_path / "work"), "device": "cpu"},
              "01_training_grid": {**TINY, "num_seeds": 2}}  # chapters 3 and 4 need two seeds
    for name, body in sections.items():
        params.setdefault(name, {}).update(body)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    code = book.main(["--params", str(path), "--out", str(tmp_path / "out"), "--no-html"])
    err = capsys.readouterr().err
    assert not (tmp_path / "out").exists(), "a chapter ran although the input was bad"
    return code, err


@pytest.mark.parametrize("sections,message", [
    ({"02_local_metrics": {"num_samples": 0}},
     "chapter 02_local_metrics: key 'num_samples' is a count and must be >= 1, got 0"),
    ({"02_local_metrics": {"tol": -1}}, r"chapter 02_local_metrics: key 'tol' must be in \(0, 1\), got -1"),
    ({"02_local_metrics": {"rel_tol": 1.5}}, r"key 'rel_tol' must be in \(0, 1\), got 1.5"),
    ({"03_global_connectivity": {"curve_epochs": 0}}, "key 'curve_epochs' is a count and must be >= 1, got 0"),
    ({"03_global_connectivity": {"cka_samples": 8}}, "key 'cka_samples' must be at least 4 x cka_batches=10, got 8"),
    ({"03_global_connectivity": {"num_points": 2}}, "key 'num_points' must be >= 3"),
    ({"04_taxonomy": {"noise_widths": []}}, "chapter 04_taxonomy: key 'noise_widths' must be a non-empty list, got"),
    ({"04_taxonomy": {"sweep_epochs": [10, -5]}}, r"key 'sweep_epochs' must hold positive int numbers only \(-5"),
    ({"05_rugged_convexity": {"num_runs": 0}}, "key 'num_runs' is a count and must be >= 1, got 0"),
    ({"06_large_scale_structure": {"radii": [0.5, -1.0]}}, "key 'radii' must hold positive numbers only"),
    ({"shared": {"num_threads": -1}}, "key 'num_threads' must be >= 0, got -1"),
    ({"shared": {"device": "gpu"}}, "key 'device' is not a torch device, got 'gpu'"),
])
def test_bad_values_of_any_chapter_stop_the_driver_before_anything_runs(tmp_path, capsys, sections, message):
    import re

    code, err = drive_all(tmp_path, capsys, sections)
    assert code == 2 and re.search(message, err), err
    assert str(tmp_path / "params.yaml") in err


def test_cuda_device_without_cuda_is_refused_at_once(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, err = drive_all(tmp_path, capsys, {"shared": {"device": "cuda"}})
    assert code == 2 and "key 'device' is 'cuda' but CUDA is not available on this machine" in err, err
    assert "chapter 00_introduction" in err  # refused before the first chapter


def test_cuda_index_beyond_the_device_count_is_refused(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    code, err = drive_all(tmp_path, capsys, {"shared": {"device": "cuda:3"}})
    assert code == 2 and "key 'device' is 'cuda:3' but this machine has 2 CUDA device(s) (cuda:0 to cuda:1)" in err, err
    book.check_device("cuda:1")  # within the count: accepted


def test_every_shipped_params_file_passes_the_value_checks():
    for name in ("smoke.yaml", "default.yaml", "paper_cifar10.yaml"):
        for stem, values in load_params(REPO / "params" / name, chapters()).items():
            book.check_values(stem, book.merged_values(stem, values))


@pytest.mark.parametrize("chapters", ["01,03", "04", "01,02,03,04"])
def test_one_seed_is_refused_for_the_chapters_that_compare_seeds(tmp_path, capsys, chapters):
    params = {"shared": {"workdir": str(tmp_path / "work"), "device": "cpu"}, "01_training_grid": TINY}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    code = book.main(["--params", str(path), "--out", str(tmp_path / "out"), "--chapters", chapters, "--no-html"])
    err = capsys.readouterr().err
    assert code == 2 and "num_seeds=1" in err and "at least two seeds" in err and str(path) in err, err
    assert not (tmp_path / "out").exists()


def test_one_seed_is_allowed_for_chapters_1_and_2():
    params = {"01_training_grid": dict(TINY), "02_local_metrics": {}}
    book.check_seeds(params, "p.yaml")  # no error
    with pytest.raises(book.ParamsError, match="04_taxonomy need at least two seeds"):
        book.check_seeds({**params, "04_taxonomy": {}}, "p.yaml")


def test_grid_from_params_takes_its_seeds_from_first_seed():
    from landscape_utils.runs.runner import grid_from_params

    base = {"load_axis": "width", "load_values": [4], "temperature_axis": "lr", "temperature_values": [0.1],
            "num_seeds": 3}
    assert [c.seed for c in grid_from_params(base)] == [0, 1, 2]
    assert [c.seed for c in grid_from_params({**base, "first_seed": 3})] == [3, 4, 5]
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="first_seed"):
            grid_from_params({**base, "first_seed": bad})
