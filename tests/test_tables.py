"""Tests for landscape_utils.runs.tables: the table contract between chapters (writing, reading, and the errors that name the missing file and
the chapter that writes it)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from landscape_utils.core.axes import AXES, Axis
from landscape_utils.runs import tables as T


def _runs(temperature: str = "batch_size", values=(16, 64, 256)) -> pd.DataFrame:
    rows = []
    for w in (4, 16):
        for t in values:
            for s in (0, 1):
                rows.append({"run_id": f"r{w}_{t}_{s}", "width": w, temperature: t, "seed": s,
                             "status": "diverged" if (w, s) == (4, 1) else "ok",
                             "train_loss": 1.0 / w, "test_acc": 0.5})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------
# The grid
# --------------------------------------------------------------------------------------
def test_write_and_read_grid_round_trip_with_types_and_meaning(tmp_path):
    runs = _runs("lr", (0.01, 0.1, 1.0)).assign(
        width=lambda d: d.width.astype(float))  # written as floats: read back as ints
    T.write_grid(tmp_path, runs, "width", "lr")
    raw = json.loads((tmp_path / "tables" / "grid_axes.json").read_text())
    assert raw["load_axis"] == "width" and raw["temperature_axis"] == "lr"
    assert raw["temperature"]["hot_end"] == "large"
    g = T.read_grid(tmp_path)
    assert g.keys == ["width", "lr"]
    assert g.runs["width"].dtype == np.int64 and g.runs["lr"].dtype == np.float64
    assert g.temperature_values == [1.0, 0.1, 0.01]  # hottest first
    assert g.load_values == [4, 16]
    assert g.coldest == 0.01 and g.hottest == 1.0
    assert len(g.ok_runs) == len(runs) - 3 and (g.ok_runs.status == "ok").all()


def test_old_axes_file_with_names_only_is_read_through_the_registry(tmp_path):
    tdir = tmp_path / "tables"
    tdir.mkdir()
    _runs().to_csv(tdir / "grid.csv", index=False)
    pd.Series({"load_axis": "width", "temperature_axis": "batch_size"}).to_json(
        tdir / "grid_axes.json")
    g = T.read_grid(tmp_path)
    assert g.temperature == AXES["batch_size"] and g.temperature_values == [16, 64, 256]


def test_write_grid_rejects_bad_axes_and_missing_columns(tmp_path):
    runs = _runs()
    with pytest.raises(ValueError, match="unknown load axis 'size'.*known axes"):
        T.write_grid(tmp_path, runs, "size", "batch_size")
    with pytest.raises(ValueError, match="is a temperature axis, not a load axis"):
        T.write_grid(tmp_path, runs, "lr", "batch_size")
    with pytest.raises(KeyError, match="needs column.*seed"):
        T.write_grid(tmp_path, runs.drop(columns="seed"), "width", "batch_size")
    # a new axis can be described
    custom = Axis("dropout", "temperature", "float", hot_end="large")
    T.write_grid(tmp_path, runs.assign(dropout=0.1), "width", custom)
    assert T.read_grid(tmp_path).temperature == custom
    assert not (tmp_path / "nothing").exists()


def test_missing_files_name_the_file_and_the_chapter(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"grid_axes.json not found: chapter 1"):
        T.read_grid(tmp_path)
    T.write_grid(tmp_path, _runs(), "width", "batch_size")
    with pytest.raises(FileNotFoundError, match=r"global_cells.csv not found: chapter 3"):
        T.read_table(tmp_path, "global_cells")
    with pytest.raises(FileNotFoundError, match=r"local.csv not found: chapter 2"):
        T.read_table(tmp_path, "local")
    with pytest.raises(FileNotFoundError, match=r"phase_cells.csv not found: chapter 4"):
        T.read_table(tmp_path, "phase_cells")
    with pytest.raises(KeyError, match="unknown table 'nope'"):
        T.table_path(tmp_path, "nope")


def test_write_table_checks_columns_and_read_table_casts_the_axes(tmp_path):
    T.write_grid(tmp_path, _runs(), "width", "batch_size")
    cells = pd.DataFrame({"width": [4.0, 16.0], "batch_size": [16, 16], "mc": [-3.0, 0.1]})
    with pytest.raises(KeyError, match="lacks column.*mc"):
        T.write_table(tmp_path, "global_cells", cells.drop(columns="mc"))
    with pytest.raises(KeyError, match="lacks column.*batch_size"):
        T.write_table(tmp_path, "global_cells", cells.drop(columns="batch_size"))
    path = T.write_table(tmp_path, "global_cells", cells)
    assert path == tmp_path / "tables" / "global_cells.csv"
    back = T.read_table(tmp_path, "global_cells")
    assert back["width"].dtype == np.int64 and back.mc.tolist() == [-3.0, 0.1]
    # a table written by hand without a required column, or empty: named, with its chapter
    pd.DataFrame({"width": [4], "batch_size": [16], "t": [0.0]}).to_csv(
        tmp_path / "tables" / "paths.csv", index=False)
    with pytest.raises(ValueError, match="lacks column.*path.*rerun chapter 3"):
        T.read_table(tmp_path, "paths")
    (tmp_path / "tables" / "local.csv").write_text("")
    with pytest.raises(ValueError, match="local.csv is unreadable"):
        T.read_table(tmp_path, "local")


def test_load_book_tables_takes_the_axes_of_write_grid(tmp_path):
    T.write_grid(tmp_path, _runs("lr", (0.01, 0.1)), "width", "lr")
    bt = T.load_book_tables(tmp_path, history=False)
    assert bt.keys == ["width", "lr"] and bt.temperature_axis.hot_end == "large"
    assert bt.grid is not None and bt.grid["lr"].dtype == np.float64
    assert any("local.csv not found; chapter 2" in m for m in bt.missing)
    assert T.grid_base_config(T.read_grid(tmp_path)) == {}  # nothing shared but varying axes
