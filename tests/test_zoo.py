"""Tests for landscape_utils.experiments.zoo: the Phase Transition Model Zoo's shipped tables (shape of
every grid, cells against the released rows, a re-derive from ../shared when it is there),
the rules that read the release, bad input naming the file and the column, the grid in the
book's columns, its classification and the claims."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from landscape_utils.experiments import zoo
from landscape_utils.experiments.findings import AUTHORS_GRID
from landscape_utils.experiments.taxonomy import PhaseThresholds

SHARED = Path(__file__).resolve().parents[2] / "shared" / "reference" / "model_zoo"
if not SHARED.is_dir():  # a worktree sits one level deeper than the main checkout
    SHARED = Path("/work/shared/reference/model_zoo")

RESNET_WIDTHS = [2, 4, 8, 16, 32, 64, 128, 256]
RESNET_BATCHES = [8, 16, 32, 64, 128, 256, 512, 1024]
VIT_DIMS = [6, 12, 24, 48, 60, 96, 192]
VIT_BATCHES = [8, 16, 32, 64, 128, 256, 512]


# --------------------------------------------------------------------------------------
# The shipped tables
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", zoo.ZOO_NAMES)
def test_every_zoo_loads_from_its_shipped_table_with_its_grid(name):
    t = zoo.read_zoo_table(name)
    vit = name.endswith("_vit")
    widths, batches = (VIT_DIMS, VIT_BATCHES) if vit else (RESNET_WIDTHS, RESNET_BATCHES)
    assert list(t.columns) == list(zoo.TABLE_COLUMNS)
    assert len(t) == len(widths) * len(batches) * 3  # 147 ViTs, 192 ResNets
    assert sorted(t.width.unique()) == widths and sorted(t.batch_size.unique()) == batches
    assert sorted(t.seed.unique()) == [0, 1, 2]
    assert (t.groupby(["width", "batch_size"]).seed.nunique() == 3).all()
    assert t.test_acc.between(0, 1).all() and t.train_acc.between(0, 1).all()
    # the landscape values are cell values: the same on the three seeds of a cell
    for m in zoo.CELL_METRICS:
        assert (t.groupby(["width", "batch_size"])[m].nunique(dropna=True) <= 1).all(), m
    g = zoo.load_zoo(name)
    assert len(g.cells) == len(widths) * len(batches)
    assert set(g.cells.columns) >= {"width", "batch_size", "train_loss", "test_acc", "test_acc_std",
                                    "n_seeds", "n_failed", "mc", "cka", "lambda_max", "trace"}
    assert g.label == zoo.ZOOS[name].label and g.load_name == zoo.ZOOS[name].load_name


def test_which_metrics_each_release_lacks():
    lacks = {n: zoo.load_zoo(n).missing_metrics for n in zoo.ZOO_NAMES}
    assert lacks["cifar10_resnet50"] == lacks["tinyimagenet_resnet18"] == list(zoo.CELL_METRICS)
    assert lacks["svhn_resnet18"] == ["mc", "lambda_max", "trace"]
    assert lacks["cifar100_resnet18"] == ["lambda_max", "trace"]
    for n in ("cifar10_resnet18", "cifar100_resnet50", "svhn_resnet50", "tinyimagenet_resnet50",
              "cifar10_vit", "cifar100_vit"):
        assert lacks[n] == [], n
    # no mc at width 256 of tinyimagenet_resnet50, none at batch 8 of cifar100_resnet18
    ti = zoo.read_zoo_table("tinyimagenet_resnet50")
    assert ti.loc[ti.width == 256, "mc"].isna().all() and ti.loc[ti.width < 256, "mc"].notna().all()
    c100 = zoo.read_zoo_table("cifar100_resnet18")
    assert c100.loc[c100.batch_size == 8, "mc"].isna().all()


def _released(name: str) -> pd.DataFrame:
    return pd.read_csv(SHARED / f"{name}_summary.csv")


needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/reference/model_zoo absent")


# A few cells, by hand from the released rows (width, batch, seed; the released values).
HAND = [
    ("cifar10_resnet18", 2, 1024, 0, dict(train_loss=0.5811131684494019, test_acc=0.6575,
                                          cka=0.7646962226249965, mc=-17.676666666666666,
                                          log_trace=8.866623519685959, log_lam=7.350833749869633)),
    ("svhn_resnet50", 2, 1024, 0, dict(train_loss=0.21193834498799471, test_acc=0.9488322065150584,
                                       cka=0.9305974318687383, mc=-6.815048391280018,
                                       log_trace=8.955765942145973, log_lam=8.143382262595171)),
    ("cifar10_vit", 6, 512, 0, dict(train_loss=1.3463614276123046, test_acc=0.4889,
                                    cka=0.7990757534837579, mc=-10.637333333333332,
                                    log_trace=5.884391243232904, log_lam=2.9466478575701283)),
]


@pytest.mark.parametrize("name,w,b,s,want", HAND)
def test_shipped_cells_hold_the_released_numbers(name, w, b, s, want):
    t = zoo.read_zoo_table(name)
    row = t[(t.width == w) & (t.batch_size == b) & (t.seed == s)]
    assert len(row) == 1
    r = row.iloc[0]
    assert r.train_loss == want["train_loss"] and r.test_acc == want["test_acc"]
    assert r.cka == want["cka"] and r.mc == want["mc"]
    # the release holds natural logs of the Hessian metrics; we ship the values
    assert np.log(r.trace) == pytest.approx(want["log_trace"], rel=1e-12)
    assert np.log(r.lambda_max) == pytest.approx(want["log_lam"], rel=1e-12)


@needs_shared
@pytest.mark.parametrize("name", ["cifar100_resnet50", "tinyimagenet_resnet50"])
def test_rerun_trials_are_keyed_by_the_batch_of_their_name(name):
    """A rerun's batchsize column is its name's batch / 8; its landscape values are not
    those of the cell that micro-batch would name, so the name's batch is the cell."""
    raw = _released(name)
    rerun = raw[~raw.trial_id.str.contains("_")]
    assert len(rerun) > 0
    t = zoo.read_zoo_table(name)
    for _, r in rerun.iterrows():
        named = int(r.model.split("training_batchsize=")[1].split("_")[0])
        assert named == 8 * r.batchsize
        ours = t[(t.width == r.width) & (t.batch_size == named) & (t.seed == r.seed)].iloc[0]
        assert ours.train_loss == r.train_loss and ours.cka == pytest.approx(r.representation_similarity)
        micro = t[(t.width == r.width) & (t.batch_size == r.batchsize)]
        assert not np.isclose(micro.cka.iloc[0], r.representation_similarity)


@needs_shared
def test_a_seed_trained_twice_keeps_the_later_trial_and_cifar100_vit_keeps_the_measured_sweep():
    raw = _released("cifar10_resnet50")
    twice = raw[(raw.width == 256) & raw.model.str.contains("training_batchsize=1024") & (raw.seed == 0)]
    assert len(twice) == 2
    later = twice.loc[twice.model.str[-19:].idxmax()]
    t = zoo.read_zoo_table("cifar10_resnet50")
    kept = t[(t.width == 256) & (t.batch_size == 1024) & (t.seed == 0)]
    assert len(kept) == 1 and kept.train_loss.iloc[0] == later.train_loss
    vit = _released("cifar100_vit")
    assert sorted(vit.wd.unique()) == [0.0005, 0.05]
    assert vit[vit.wd == 0.0005].curve_mc_train_error.isna().all()
    shipped = zoo.read_zoo_table("cifar100_vit")
    measured = vit[vit.wd == 0.05]
    assert sorted(shipped.train_loss) == sorted(measured.train_loss)


@needs_shared
def test_rederive_from_the_release_gives_the_shipped_tables(tmp_path):
    tables, notes = zoo.derive_zoo_tables(SHARED)
    assert set(tables) == set(zoo.ZOO_NAMES)
    zoo.write_zoo_tables(tables, tmp_path)
    for name in zoo.ZOO_NAMES:
        again = zoo.read_zoo_table(name, tmp_path)
        pd.testing.assert_frame_equal(again, zoo.read_zoo_table(name), check_exact=False, rtol=1e-12)
    assert any("two weight-decay sweeps" in n for n in notes["cifar100_vit"])
    assert any("trained again" in n for n in notes["cifar10_resnet50"])


@needs_shared
def test_derive_command_line(tmp_path, capsys):
    from landscape_utils.experiments.derive import main

    assert main(["zoo", str(SHARED), "--out", str(tmp_path)]) == 0
    for name in zoo.ZOO_NAMES:
        pd.testing.assert_frame_equal(zoo.read_zoo_table(name, tmp_path), zoo.read_zoo_table(name),
                                      check_exact=False, rtol=1e-12)
    assert "wrote" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["zoo", str(tmp_path / "nope")])


def test_the_derived_table_follows_the_rules_on_a_tiny_release():
    """Every epoch in, the last kept; batch from the name (checked against the column);
    a repeated seed keeps the later trial; logs exponentiated."""
    def model(w, b, s, date="2024-05-21_13-07-20"):
        return f"NN_tune_trainable_x_0_model_width={w},optim_lr=0.1000,seed={s},training_batchsize={b}_{date}"
    rows = []
    for epoch in (1, 2):
        for s in (0, 1):
            rows.append(dict(model=model(4, 64, s), width=4, seed=s, wd=5e-4, batchsize=64, epoch=epoch,
                             train_loss=0.1 * epoch + s, train_acc=0.9, test_loss=1.0, test_acc=0.8,
                             representation_similarity=0.7, curve_mc_train_error=-3.0,
                             log_hessian_trace_train=np.log(50.0), log_hessian_top_ev_val=np.log(5.0)))
    rows.append(dict(rows[-1], model=model(4, 1024, 0), seed=0, batchsize=128, train_loss=9.0,
                     representation_similarity=0.5))
    rows.append(dict(rows[-1], model=model(4, 1024, 0, "2024-05-30_00-00-00"), train_loss=7.0))
    t, notes = zoo.derive_zoo_table(pd.DataFrame(rows))
    assert len(t) == 3 and set(t.batch_size) == {64, 1024}
    assert t[(t.batch_size == 64) & (t.seed == 1)].train_loss.iloc[0] == pytest.approx(1.2)  # epoch 2
    assert t[t.batch_size == 1024].train_loss.iloc[0] == 7.0  # the later trial
    assert t.trace.iloc[0] == pytest.approx(50.0) and t.lambda_max.iloc[0] == pytest.approx(5.0)
    assert any("/ 8" in n for n in notes) and any("trained again" in n for n in notes)
    bad = pd.DataFrame([dict(rows[0], batchsize=100)])
    with pytest.raises(ValueError, match="batchsize"):
        zoo.derive_zoo_table(bad)


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------
def test_a_missing_truncated_or_incomplete_table_is_named_with_its_column(tmp_path):
    src = zoo.ZOO_DIR / "cifar10_resnet18.csv"
    with pytest.raises(FileNotFoundError, match=r"cifar10_resnet18\.csv"):
        zoo.read_zoo_table("cifar10_resnet18", tmp_path)
    lines = src.read_text().splitlines()
    for cut, column in ((6, "seed"), (len(lines[40].split(",")[0]) + 20, "train_acc")):
        (tmp_path / "cifar10_resnet18.csv").write_text("\n".join(lines[:40]) + "\n" + lines[40][:cut] + "\n")
        with pytest.raises(ValueError, match=rf"cifar10_resnet18\.csv: column '{column}'"):
            zoo.read_zoo_table("cifar10_resnet18", tmp_path)
    df = pd.read_csv(src).drop(columns="mc")
    df.to_csv(tmp_path / "cifar10_resnet18.csv", index=False)
    with pytest.raises(ValueError, match=r"cifar10_resnet18\.csv: missing column\(s\) mc"):
        zoo.read_zoo_table("cifar10_resnet18", tmp_path)
    (tmp_path / "cifar10_resnet18.csv").write_text("")
    with pytest.raises(ValueError, match="cifar10_resnet18.csv"):
        zoo.read_zoo_table("cifar10_resnet18", tmp_path)
    with pytest.raises(KeyError, match="unknown zoo"):
        zoo.read_zoo_table("mnist_mlp")
    # the chapter's loader reads what it can and says which it skipped and why
    for name in zoo.ZOO_NAMES[1:]:
        (tmp_path / f"{name}.csv").write_bytes((zoo.ZOO_DIR / f"{name}.csv").read_bytes())
    grids, skipped = zoo.load_zoos(tmp_path)
    assert [g.name for g in grids] == list(zoo.ZOO_NAMES[1:])
    assert list(skipped) == ["cifar10_resnet18"] and "cifar10_resnet18.csv" in skipped["cifar10_resnet18"]


def test_a_released_file_without_a_column_or_cut_short_is_named(tmp_path):
    raw = pd.read_csv(zoo.ZOO_DIR / "cifar10_resnet18.csv")  # any table without the source columns
    raw.to_csv(tmp_path / "cifar10_resnet18_summary.csv", index=False)
    with pytest.raises(ValueError, match=r"cifar10_resnet18_summary\.csv: missing column\(s\) model"):
        zoo.derive_zoo_tables(tmp_path)
    with pytest.raises(FileNotFoundError, match="none of the released files"):
        zoo.derive_zoo_tables(tmp_path / "empty")
    if SHARED.is_dir():
        text = (SHARED / "cifar10_vit_summary.csv").read_text().splitlines()
        (tmp_path / "cifar10_resnet18_summary.csv").unlink()
        for cut, match in ((60, "not a readable CSV"),  # inside the quoted trial name
                           (text[20].index('",') + 16, "column 'seed'")):  # after "...",trial_id,width
            (tmp_path / "cifar10_vit_summary.csv").write_text("\n".join(text[:20]) + "\n" + text[20][:cut] + "\n")
            with pytest.raises(ValueError, match=rf"cifar10_vit_summary\.csv: {match}"):
                zoo.derive_zoo_tables(tmp_path)


def test_resolve_folder(tmp_path, monkeypatch):
    assert zoo.resolve_folder("") is None
    assert zoo.resolve_folder(str(tmp_path)) == tmp_path.resolve()
    monkeypatch.chdir(tmp_path)
    assert zoo.resolve_folder("landscape_utils") == (zoo.REPO / "landscape_utils").resolve()
    with pytest.raises(FileNotFoundError, match="zoo_tables: folder nowhere"):
        zoo.resolve_folder("nowhere")


# --------------------------------------------------------------------------------------
# The grid in the book's columns, classified
# --------------------------------------------------------------------------------------
def test_failed_runs_leave_the_means_and_a_cell_with_none_left_has_no_metrics():
    t = zoo.read_zoo_table("svhn_resnet50")
    g = zoo.zoo_grid("svhn_resnet50", t, failed_train_acc=0.3)
    failed = t[t.train_acc < 0.3]
    assert (g.runs.status == "diverged").sum() == len(failed) == 14
    cell = g.cells.set_index(["width", "batch_size"])
    all_gone = failed.groupby(["width", "batch_size"]).size()
    all_gone = all_gone[all_gone == 3].index
    assert len(all_gone) >= 1
    for key in all_gone:
        assert cell.loc[key, "n_seeds"] == 0 and np.isnan(cell.loc[key, "mc"])
        assert np.isnan(cell.loc[key, "test_acc"])
    ok = t[(t.width == 256) & (t.batch_size == 64)]
    assert cell.loc[(256, 64), "test_acc"] == pytest.approx(ok.test_acc.mean())
    assert cell.loc[(256, 64), "test_acc_std"] == pytest.approx(ok.test_acc.std(ddof=1))
    assert cell.loc[(256, 64), "mc"] == ok.mc.iloc[0]
    # a lower bar fails nobody
    assert (zoo.zoo_grid("svhn_resnet50", t, failed_train_acc=0.0).runs.status == "ok").all()


def test_a_metric_repeated_on_every_seed_is_a_cell_value_without_spread():
    g = zoo.load_zoo("cifar100_resnet50")
    assert g.cell_valued == ["train_loss", "test_acc"]
    assert g.cells.test_acc_std.isna().all() and g.cells.train_loss_std.isna().all()
    assert zoo.load_zoo("cifar10_resnet18").cell_valued == []


def test_classification_holds_the_cell_values_and_labels_what_has_mc():
    g = zoo.load_zoo("cifar10_resnet18", thresholds=PhaseThresholds(), n_resamples=300)
    c = g.cells
    labelled = c.phase.notna()
    assert (labelled == c.mc.notna()).all()
    assert c.loc[labelled, "p_phase"].between(0.7, 1).all()
    assert (c.n_mc == 0).all()  # no per-pair values: mc held at the cell value
    # the rule on the cell values: a clear barrier with a high train loss is I
    sure = c[(c.mc < -3) & (c.train_loss > 0.05)]
    assert len(sure) > 0 and (sure.phase == "I").all()
    empty = zoo.load_zoo("cifar10_resnet50", thresholds=PhaseThresholds(), n_resamples=50)
    assert empty.cells.phase.isna().all() and empty.cells.reason.str.contains("no mc").all()


def test_released_cells_has_one_row_per_cell_in_the_grids_own_units():
    g = [zoo.load_zoo(n, thresholds=PhaseThresholds(), n_resamples=50)
         for n in ("cifar10_resnet18", "cifar10_vit")]
    out = zoo.released_cells(g)
    assert list(out.columns) == list(zoo.RELEASED_CELL_COLUMNS)
    assert len(out) == 64 + 49
    assert set(out.load_name) == {"width", "embedding_dim"}
    vit = out[out.grid == zoo.ZOOS["cifar10_vit"].label]
    assert sorted(vit.load.unique()) == VIT_DIMS and (vit.temperature_name == "batch_size").all()
    assert out.test_acc.dropna().between(0, 1).all()
    assert (out.test_acc.isna() == (out.n_seeds == 0)).all()  # only where every seed failed


# --------------------------------------------------------------------------------------
# The claims
# --------------------------------------------------------------------------------------
def _cells(phases, train_loss, lam, mc=None, acc=None, widths=None, batches=None):
    n = len(phases)
    widths = widths or list(range(1, n + 1))
    batches = batches or [64] * n
    return pd.DataFrame({"width": widths, "batch_size": batches, "phase": phases,
                         "train_loss": train_loss, "lambda_max": lam,
                         "mc": mc if mc is not None else [0.0] * n,
                         "test_acc": acc if acc is not None else [0.5] * n})


def test_paper_table_order_by_hand():
    hi, lo = [1.0, 0.8, 1.2, 0.9], [0.001, 0.002, 0.0015, 0.001]
    ok = _cells(["I", "II", "I", "II", "III", "IV", "IV", "III"], hi + lo, [100, 90, 120, 80, 5, 6, 4, 5])
    assert zoo.paper_table_order(ok).verdict == "holds"
    flipped = ok.assign(lambda_max=[5, 6, 4, 5, 100, 90, 120, 80])
    f = zoo.paper_table_order(flipped)
    assert f.verdict == "fails" and "lambda_max" in f.evidence
    no_lam = ok.assign(lambda_max=np.nan)
    assert zoo.paper_table_order(no_lam).verdict == "inconclusive"
    one_side = ok.assign(phase=["I"] * 8)
    assert zoo.paper_table_order(one_side).verdict == "inconclusive"


def test_edge_claims_count_labelled_cells_and_leave_unlabelled_out():
    # smallest width: I, I, undetermined, unlabelled -> 2 of 3 labelled are behind a barrier
    c = _cells(["I", "I", "undetermined", None, "IV", "IV", "IV", "IV"], [0.1] * 8, [1.0] * 8,
               widths=[2, 2, 2, 2, 8, 8, 8, 8], batches=[8, 16, 32, 64] * 2)
    f = zoo.small_load_barrier(c)
    assert f.verdict == "holds" and "1 unlabelled" in f.evidence
    c2 = c.assign(phase=["I", "III", "IV", "IV", "IV", "IV", "IV", "IV"])  # 2 of 4: not most
    assert zoo.small_load_barrier(c2).verdict == "fails"
    # the hottest batch (8): II at 2 of 3 widths -> holds; at none -> fails
    hot = _cells(["II", "II", "I", "IV", "IV", "IV"], [0.1] * 6, [1.0] * 6,
                 widths=[2, 4, 8] * 2, batches=[8] * 3 + [64] * 3)
    assert zoo.hot_end_unconverged(hot).verdict == "holds"
    cold = hot.assign(phase=["I", "III", "I", "II", "II", "II"])
    assert zoo.hot_end_unconverged(cold).verdict == "fails"
    none = c.assign(phase=[None] * 8)
    assert zoo.hot_end_unconverged(none).verdict == "inconclusive"
    assert zoo.small_load_barrier(none).verdict == "inconclusive"


def test_mc_tracks_accuracy_both_ways():
    up = _cells(["I"] * 8, [0.1] * 8, [1.0] * 8, mc=list(np.linspace(-10, 0, 8)),
                acc=list(np.linspace(0.5, 0.9, 8)))
    assert zoo.mc_tracks_accuracy(up).verdict == "holds"
    down = up.assign(test_acc=up.test_acc[::-1].to_numpy())
    assert zoo.mc_tracks_accuracy(down).verdict == "fails"


def test_the_claims_on_the_authors_grid_and_a_vit_zoo():
    """The authors' grid meets the paper's layout; the CIFAR-10 ViT zoo's test accuracy
    falls as mc rises (ρ ≈ −0.79 without the failed runs, as the zoo's files show)."""
    from landscape_utils.experiments.authors_grid import load_authors_grid

    authors = zoo.authors_released_grid(load_authors_grid(n_resamples=300))
    found = {f.key: f for f in zoo.grid_findings(authors.cells, authors.label, authors.iv_split)}
    assert set(found) == set(zoo.CLAIMS)
    for key in ("best_accuracy_phase", "paper_table_order", "mc_tracks_accuracy",
                "small_load_barrier", "hot_end_unconverged"):
        assert found[key].verdict == "holds", (key, found[key].evidence)
    vit = zoo.load_zoo("cifar10_vit", thresholds=PhaseThresholds(), n_resamples=300)
    f = zoo.mc_tracks_accuracy(vit.cells, vit.label)
    assert f.verdict == "fails" and "-0.7" in f.evidence
    table = zoo.claims_table(zoo.grid_findings(authors.cells, AUTHORS_GRID, authors.iv_split)
                             + zoo.grid_findings(vit.cells, vit.label, vit.iv_split),
                             [AUTHORS_GRID, vit.label])
    assert list(table.index) == [AUTHORS_GRID, vit.label] and table.shape == (2, len(zoo.CLAIMS))
    assert table.loc[vit.label, zoo.CLAIMS["mc_tracks_accuracy"]] == "✗ fails"
    text = zoo.contrast_text(zoo.findings_rows(
        zoo.grid_findings(authors.cells, AUTHORS_GRID, authors.iv_split)
        + zoo.grid_findings(vit.cells, vit.label, vit.iv_split)))
    assert f"Fails on {vit.label}" in text


def test_the_driver_orders_the_chapter_after_chapter_4():
    from landscape_utils.book.chapters import chapter_key, chapters
    from landscape_utils.book.driver import PREREQUISITES, _select, prerequisites

    stems = [c.stem for c in chapters()]
    assert stems.index("04b_released_grids") == stems.index("04_taxonomy") + 1
    assert chapter_key("04b_released_grids") == "04b" and PREREQUISITES["04b"] == ("04",)
    needs = prerequisites(chapters())
    assert needs["04b_released_grids"] == {"04_taxonomy"}
    assert [c.stem for c in _select("04")] == ["04_taxonomy"]
    assert [c.stem for c in _select("04b")] == ["04b_released_grids"]


def test_a_bad_explore_value_is_refused_before_anything_runs(tmp_path):
    from landscape_utils.book.chapters import BOOK_DIR
    from landscape_utils.book.driver import ParamsError, load_params, preflight

    f = tmp_path / "p.yaml"
    f.write_text("04b_released_grids: {explore: mnist_mlp, failed_train_acc: 0.3}\n")
    chap = [BOOK_DIR / "04b_released_grids.py"]
    with pytest.raises(ParamsError, match="key 'explore' must name a zoo"):
        preflight(load_params(f, chap), f)
    f.write_text("04b_released_grids: {failed_train_acc: 1.5}\n")
    with pytest.raises(ParamsError, match="key 'failed_train_acc' must be in"):
        preflight(load_params(f, chap), f)
    f.write_text("04b_released_grids: {explore: cifar10_vit}\n")
    preflight(load_params(f, chap), f)
