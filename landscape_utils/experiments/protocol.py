"""How far a grid reproduces the paper's phase table: the targets of a default protocol.

The paper's table (Yang et al. 2021, Table 1) says what each phase looks like: I and II
have a high train loss and a large Hessian, III and IV a small one; II has not converged
(mc > 0); the best test accuracy is in IV-B. A protocol that is meant to show the paper's
phenomena at small scale is checked against four targets, read from its phase table:

1. the best cell's mean test accuracy is at least :data:`BEST_ACC` (0.90);
2. phases I, II, III and IV are present, each with at least two cells (IV-A and IV-B
   count as IV unless the CKA separates them, in which case each counts on its own);
3. the per-phase medians follow the paper's table: train loss of I and II above that of
   III and IV, λmax of I and II above that of III and IV, and phase II *trained* (mean
   train accuracy of its cells at least :data:`TRAINED_ACC`), not failed;
4. the cell with the best mean test accuracy is in phase IV (IV-B when IV is split);

and, given the temperature axis, the paper's *placement* (:func:`placement`): phase II, if
present, in the hot half of the temperature axis (mean heat position at least
:data:`II_HOT_POS`; 0 is the coldest value, 1 the hottest) and III colder than II.

:func:`check_targets` reads them from one table; :func:`target_findings` words targets
1-3 as findings for chapter 4 (target 4 is ``findings.best_accuracy_phase``, which also
weighs ties within the seed spread). The protocol study (``benchmarks/protocol_study.py``)
uses the same functions on every candidate; :func:`read_study` and :func:`study_table`
show its committed table in the book.
"""
from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..core.axes import axis_info, axis_position, coldest, hottest, load_order
from ..runs.runner import train_size
from .findings import THIS_BUILD, Finding, difference_verdict, holm
from .taxonomy import classify, numeric_column

#: The protocol study's committed table, in the repository (relative paths start here).
REPO = Path(__file__).resolve().parents[2]
STUDY_CSV = "benchmarks/protocol_study.csv"

#: Phase groups reported per grid, in the paper's order.
GROUPS: tuple[str, ...] = ("I", "II", "III", "IV", "IV-A", "IV-B")
#: Per-phase medians recorded per grid.
MEDIAN_METRICS: tuple[str, ...] = ("train_loss", "train_acc", "lambda_max", "mc", "cka", "test_acc")
#: Target 3's bar for a *trained* phase II (mean train accuracy of a cell).
TRAINED_ACC = 0.8
#: Target 1's bar.
BEST_ACC = 0.90
#: The paper's recipe (Yang et al. 2021: ResNet18 on CIFAR-10), beside which a grid's
#: protocol is described.
PAPER_RECIPE = ("ResNet18 on CIFAR-10 (50 000 training samples), widths 1 to 128, lr 0.1 decayed "
                "×0.1 at 75% of 100 epochs")


def group_of(label: object, iv_split: bool) -> str | None:
    """The target group of a confidence label: I, II, III, IV (or IV-A / IV-B when the
    grid's IV is split); None for undetermined or missing labels."""
    if label is None or (isinstance(label, float) and math.isnan(label)):
        return None
    s = str(label)
    if s in ("I", "II", "III"):
        return s
    if s in ("IV", "IV-A", "IV-B"):
        return s if iv_split else "IV"
    return None


def phase_counts(labels: Iterable[object]) -> dict[str, int]:
    """Cells per label (missing and NaN labels left out), in the order of :data:`GROUPS`
    then any other label (e.g. ``undetermined``)."""
    s = pd.Series(list(labels), dtype=object).dropna().astype(str)
    counts = s.value_counts()
    order = [g for g in GROUPS if g in counts.index] + sorted(set(counts.index) - set(GROUPS))
    return {g: int(counts[g]) for g in order}


def phase_medians(cells: pd.DataFrame, labels: Sequence[object],
                  metrics: Sequence[str] = MEDIAN_METRICS) -> dict[str, dict[str, float]]:
    """Median over the cells of each label of each metric (NaN values ignored).

    ``labels`` aligns with the rows of ``cells``; returns ``{label: {metric: median}}``
    for every label with at least one cell (IV-A and IV-B cells also enter ``IV``).
    """
    lab = pd.Series(list(labels), index=cells.index, dtype=object)
    out: dict[str, dict[str, float]] = {}
    keys = {g: lab.astype(str).eq(g) for g in set(lab.dropna().astype(str))}
    if any(g in keys for g in ("IV-A", "IV-B")):
        keys["IV"] = lab.astype(str).isin(["IV", "IV-A", "IV-B"])
    for g, mask in keys.items():
        if not mask.any():
            continue
        sel = cells.loc[mask.to_numpy()]
        out[g] = {m: _median(numeric_column(sel, m)) for m in metrics}
    return out


def _median(v: np.ndarray) -> float:
    """Median of the finite values; NaN when there are none."""
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else float("nan")


def _gt(a: float, b: float) -> bool:
    return bool(np.isfinite(a) and np.isfinite(b) and a > b)


#: The placement target's bar: phase II's mean heat position (0 coldest, 1 hottest).
II_HOT_POS = 0.6

#: A confidence label this probable (over seed resamplings) counts as a confident one in the
#: held-out diagnostic (the study's ``heldout_confident_agree``, shown by :func:`chosen_text`).
CONFIDENT_P = 0.9


def heat_positions(cells: pd.DataFrame, labels: Sequence[object], temperature: str) -> dict[str, float]:
    """Mean heat position (0 = coldest temperature value, 1 = hottest) of each phase group
    (IV-A and IV-B as IV); a group without cells is absent."""
    pos = axis_position(pd.to_numeric(cells[temperature]), axis_info(temperature).hot_end).to_numpy()
    groups = np.array([group_of(x, False) for x in labels], dtype=object)  # IV-A and IV-B as IV
    return {g: float(pos[groups == g].mean()) for g in ("I", "II", "III", "IV") if (groups == g).any()}


def placement(heat: Mapping[str, float]) -> bool:
    """The paper's placement on :func:`heat_positions`: II (if present) at a heat position of
    at least :data:`II_HOT_POS`, and III (if both are present) colder than II."""
    if "II" not in heat:
        return True
    return heat["II"] >= II_HOT_POS and ("III" not in heat or heat["III"] < heat["II"])


def check_targets(cells: pd.DataFrame, labels: Sequence[object], iv_split: bool,
                  min_cells: int = 2, temperature: str | None = None) -> dict[str, Any]:
    """Which of targets 1-4 (module docstring) hold on one phase table.

    Args:
        cells: one row per cell with ``test_acc``, ``train_loss``, ``train_acc`` and
            ``lambda_max`` (cell means).
        labels: the confidence label of every row (``I``, ``II``, ``III``, ``IV``,
            ``IV-A``, ``IV-B``, ``undetermined`` or missing).
        iv_split: whether the grid's IV is split into IV-A and IV-B by the CKA.

    Returns:
        ``target1`` ... ``target4`` (bool), ``n_targets``, and what decided them:
        ``best_test_acc``, ``best_phase``, ``best_index`` (row label of the best cell),
        ``counts`` (cells per group), ``phases_ok`` (groups with at least ``min_cells``
        cells), ``phases_missing``, ``medians`` (``{metric: {group: median}}`` for train
        loss and λmax), ``loss_order`` / ``lambda_order`` (bool: the paper's order of the
        medians), ``loss_gap`` / ``lambda_gap`` (min of I, II minus max of III, IV; > 0
        when the order holds) and ``ii_train_acc`` (mean train acc of phase II's cells);
        with ``temperature`` (the column of the temperature axis) also ``heat`` (mean heat
        position per group, :func:`heat_positions`) and ``placement`` (:func:`placement`),
        else ``placement`` is None.
    """
    if len(labels) != len(cells):
        raise ValueError(f"labels has {len(labels)} entries for {len(cells)} cells")
    groups = [group_of(x, iv_split) for x in labels]
    counts = pd.Series([g for g in groups if g is not None], dtype=object).value_counts()
    # phase IV counts once unless split; then IV-A and IV-B must each reach min_cells
    needed = ["I", "II", "III"] + (["IV-A", "IV-B"] if iv_split else ["IV"])
    ok = [g for g in needed if counts.get(g, 0) >= min_cells]
    acc = numeric_column(cells, "test_acc")
    if np.isfinite(acc).any():
        ib = int(np.nanargmax(acc))
        best, best_phase, best_index = float(acc[ib]), groups[ib], cells.index[ib]
    else:
        best, best_phase, best_index = float("nan"), None, None
    lab4 = np.array([group_of(x, False) for x in labels], dtype=object)  # IV-A and IV-B as IV
    med = {}
    for m in ("train_loss", "lambda_max"):
        v = numeric_column(cells, m)
        med[m] = {g: _median(v[lab4 == g]) for g in ("I", "II", "III", "IV")}

    def gap(m: str) -> float:
        hi = [med[m]["I"], med[m]["II"]]
        lo = [med[m]["III"], med[m]["IV"]]
        if not all(np.isfinite(hi + lo)):
            return float("nan")
        return float(min(hi) - max(lo))

    loss_gap, lam_gap = gap("train_loss"), gap("lambda_max")
    tr = numeric_column(cells, "train_acc")[lab4 == "II"]
    ii_acc = float(np.nanmean(tr)) if np.isfinite(tr).any() else float("nan")
    t3 = _gt(loss_gap, 0) and _gt(lam_gap, 0) and bool(np.isfinite(ii_acc) and ii_acc >= TRAINED_ACC)
    t4_need = "IV-B" if iv_split else "IV"
    out = {
        "target1": bool(np.isfinite(best) and best >= BEST_ACC),
        "target2": len(ok) == len(needed),
        "target3": t3,
        "target4": best_phase == t4_need,
        "best_test_acc": best, "best_phase": best_phase, "best_index": best_index,
        "counts": {g: int(counts.get(g, 0)) for g in needed},
        "phases_ok": ",".join(ok), "phases_missing": ",".join(g for g in needed if g not in ok),
        "medians": med,
        "loss_order": _gt(loss_gap, 0), "lambda_order": _gt(lam_gap, 0),
        "loss_gap": loss_gap, "lambda_gap": lam_gap, "ii_train_acc": ii_acc,
    }
    out["n_targets"] = sum(out[f"target{i}"] for i in range(1, 5))
    out["heat"] = heat_positions(cells, labels, temperature) if temperature else {}
    out["placement"] = placement(out["heat"]) if temperature else None
    return out


def _medians_text(med: dict[str, float], fmt: str) -> str:
    return ", ".join(f"{g} {format(v, fmt) if np.isfinite(v) else '-'}" for g, v in med.items())


def seeds_text(seeds: Iterable[Any]) -> str:
    """The seeds a finding rests on, e.g. ``seeds 0-2`` or ``seeds 0, 3, 7``."""
    ids = sorted({int(s) for s in seeds if pd.notna(s)})
    if not ids:
        return "no seeds"
    if ids == list(range(ids[0], ids[-1] + 1)) and len(ids) > 1:
        return f"seeds {ids[0]}-{ids[-1]}"
    return ("seed " if len(ids) == 1 else "seeds ") + ", ".join(map(str, ids))


def target_findings(cells: pd.DataFrame, labels: Sequence[object], iv_split: bool, *,
                    load: str = "width", temperature: str = "batch_size",
                    grid: str = THIS_BUILD, seed_ids: Iterable[Any] | None = None) -> list[Finding]:
    """Targets 1-3 of :func:`check_targets` as findings (keys ``protocol_accuracy``,
    ``protocol_phases_present``, ``protocol_paper_table_order``).

    Each holds or fails by the target's rule; the evidence gives the numbers that decided
    it (best cell and its seed spread, cells per phase, the medians per phase). Target 4
    is the ``best_accuracy_phase`` finding. ``seed_ids`` (the seeds of the grid's runs)
    are named in each finding's sample.
    """
    t = check_targets(cells, labels, iv_split, temperature=temperature if temperature in cells else None)
    seeds = numeric_column(cells, "n_seeds")
    n = f"{len(cells)} cells" + (f" x {int(_median(seeds))} seeds" if np.isfinite(seeds).any() else "")
    n += f" ({seeds_text(seed_ids)})" if seed_ids is not None else ""
    if t["best_index"] is not None:
        r = cells.loc[t["best_index"]]
        sd = r.get("test_acc_std", float("nan"))
        spread = f" ± {sd:.3f} (sd over seeds)" if isinstance(sd, float) and np.isfinite(sd) else ""
        best = (f"best cell {load} {r[load]:g}, {temperature} {r[temperature]:g}: test acc "
                f"{t['best_test_acc']:.3f}{spread}, phase {t['best_phase'] or 'undetermined'}")
    else:
        best = "no cell has a test accuracy"
    found = [Finding("protocol_accuracy",
                     f"The best cell reaches a mean test accuracy of at least {BEST_ACC:.2f} "
                     "(the paper's grid reaches 0.90).",
                     "holds" if t["target1"] else "fails", best, n, grid)]
    counts = ", ".join(f"{g} {c}" for g, c in t["counts"].items())
    found.append(Finding(
        "protocol_phases_present",
        "Phases I, II, III and IV are all present, each with at least two cells"
        + (" (IV-A and IV-B each, as the CKA splits IV)." if iv_split else "."),
        "holds" if t["target2"] else "fails",
        f"cells per phase (confidence labels): {counts}"
        + (f"; missing or below two cells: {t['phases_missing']}" if t["phases_missing"] else ""),
        n, grid))
    med = t["medians"]
    ii = t["ii_train_acc"]
    found.append(Finding(
        "protocol_paper_table_order",
        "On medians per phase, train loss and λmax of I and II lie above those of III and "
        f"IV, and phase II is trained (mean train accuracy at least {TRAINED_ACC:.1f}).",
        "holds" if t["target3"] else "fails",
        f"train loss {_medians_text(med['train_loss'], '.3f')}; λmax "
        f"{_medians_text(med['lambda_max'], '.1f')}; phase II train acc "
        + (f"{ii:.3f}" if np.isfinite(ii) else "- (no II cell)"),
        n, grid))
    if t["placement"] is not None:
        heat = ", ".join(f"{g} {v:.2f}" for g, v in t["heat"].items())
        found.append(Finding(
            "protocol_phase_placement",
            f"Phases sit where the paper puts them along {temperature}: II (if present) in the hot "
            f"half (mean heat position at least {II_HOT_POS:g}, 0 coldest, 1 hottest) and III colder than II.",
            "holds" if t["placement"] else "fails",
            f"mean heat position per phase: {heat}" + ("" if "II" in t["heat"] else "; no II cell"),
            n, grid))
    return found


def recipe_text(r: pd.Series) -> str:
    """A study candidate's training recipe in under 50 characters (a row of the study's
    CSV), e.g. ``BN, data 0.5, lr 0.1 x0.3@90%, 48 ep, wd 0.0005``."""
    sched = "const" if str(r["schedule"]) == "constant" else str(r["schedule"])
    if sched == "step" and pd.notna(r.get("decay_factor", np.nan)):
        sched = f"x{r['decay_factor']:g}@{r['decay_at']:.0%}"
    wd = r.get("weight_decay", np.nan)
    axis = r.get("temperature_axis", "batch_size")
    axis = "batch_size" if not isinstance(axis, str) else axis
    lr = "lr" if axis == "lr" else f"lr {r['lr']:g}"
    batch = f"batch {int(r['batch_size'])}, " if axis != "batch_size" and pd.notna(r.get("batch_size")) else ""
    return (f"{'BN, ' if bool(r['batch_norm']) else ''}data {r['data_fraction']:g}, {batch}{lr} "
            f"{sched}, {int(r['num_epochs'])} ep" + (f", wd {wd:g}" if pd.notna(wd) and axis != "weight_decay" else ""))


def temperature_text(r: pd.Series) -> str:
    """A study row's temperature axis and its values, e.g. ``batch 8 16 128 512`` or
    ``lr 0.02 0.08 0.32 1``."""
    axis = r.get("temperature_axis", "batch_size")
    axis = "batch_size" if not isinstance(axis, str) else axis
    return f"{'batch' if axis == 'batch_size' else axis} {r['temperature_values']}"


def _knob(name: str, base: Mapping[str, Any], axes: Mapping[str, Sequence[Any]]) -> str:
    """A training knob as the grid sets it: one value, or the range of an axis."""
    if name in axes:
        vals = sorted(axes[name])
        return f"{vals[0]:g} to {vals[-1]:g}" if len(vals) > 1 else f"{vals[0]:g}"
    return f"{base[name]:g}"


def grid_protocol_text(base: Mapping[str, Any], axes: Mapping[str, Sequence[Any]]) -> str:
    """One paragraph (markdown) on the training protocol of a grid, computed from it.

    Args:
        base: the run-config fields all runs share (``tables.grid_base_config``).
        axes: the grid's two axes, ``{column: values}`` (e.g. ``{"width": [...],
            "batch_size": [...]}``).

    States the model, the training set (samples from ``runner.train_size``), each knob
    (an axis as its range), the schedule, the epochs and the SGD steps of a run at the
    largest batch size, then the paper's recipe (:data:`PAPER_RECIPE`).
    """
    n = train_size(str(base["dataset"]), float(base.get("data_fraction", 1.0)))
    model = f"`{base['model']}` network" + (" with BatchNorm" if base.get("batch_norm") else "")
    sched = str(base.get("schedule", "constant"))
    if sched == "step":
        sched = f"decayed ×{base['decay_factor']:g} at {base['decay_at']:.0%} of training"
    elif sched == "cosine":
        sched = "cosine-annealed"
    batches = sorted(axes["batch_size"]) if "batch_size" in axes else [int(base["batch_size"])]
    epochs = int(base["num_epochs"])
    steps = n // int(batches[-1])
    ranges = ", ".join(f"{axis_info(a).name} {_knob(a, base, axes)}" for a in axes)
    return (f"**This build's protocol** (chapter 1's grid): a {model} on {n} training "
            f"samples of {base['dataset']} (data fraction {float(base.get('data_fraction', 1.0)):g}); "
            f"{ranges}; SGD with momentum {base['momentum']:g}, weight decay "
            f"{_knob('weight_decay', base, axes)} and lr {_knob('lr', base, axes)} {sched}, {epochs} "
            f"epochs. A run at batch size {batches[-1]} takes {steps} steps per epoch (the last "
            f"partial minibatch is dropped), {steps * epochs} in all. The paper: {PAPER_RECIPE}.")


def read_study(path: str | os.PathLike = STUDY_CSV) -> pd.DataFrame:
    """The protocol study's committed table (default ``benchmarks/protocol_study.csv``; a
    relative path is read from the current directory, else from the repository root).

    Raises:
        FileNotFoundError: naming the file and the command that writes it.
    """
    p = Path(path)
    if not p.is_absolute() and not p.exists():
        p = REPO / p
    if not p.exists():
        raise FileNotFoundError(f"{p}: no protocol study table; `python -m benchmarks.protocol_study` "
                                "writes it")
    table = pd.read_csv(p)
    missing = [c for c in ("candidate", "phases", "best_test_acc", "target1") if c not in table]
    if missing:
        raise ValueError(f"{p}: missing column(s) {missing}")
    return table


def study_table(table: pd.DataFrame) -> pd.DataFrame:
    """The study's table for reading in a column of the book: one row per candidate
    (index), its recipe and grid, the phases with their cell counts, the best cell and
    which targets hold (✓/✗). Every entry stays under 50 characters (pandas shortens
    longer ones); the per-phase medians are in the CSV and ``PROTOCOL_STUDY.md``."""
    def best(r: pd.Series) -> str:
        where = " ".join(str(part.split("=")[-1]) for part in str(r["best_cell"]).split())
        phase = r["best_phase"] if isinstance(r["best_phase"], str) else "?"
        return f"{r['best_test_acc']:.3f} ({where}; {phase})"

    rows = [{"candidate": r["candidate"], "recipe": recipe_text(r),
             "widths x temperatures": f"{r['load_values']} x {temperature_text(r)}",
             "phases (cells)": r["phases"], "best test acc (cell; phase)": best(r),
             "targets 1 2 3 4": " ".join("✓" if bool(r[f"target{i}"]) else "✗" for i in range(1, 5)),
             "cold end / mc>0 control": f"{_verdict(r, 'cold_end')} / {_verdict(r, 'continuation')}"}
            for _, r in table.iterrows()]
    return pd.DataFrame(rows).set_index("candidate")


def chosen_row(table: pd.DataFrame, params_file: str = "params/default.yaml") -> pd.Series | None:
    """The study's row measured in the book's own workdir and settings of ``params_file``
    (column ``book_params``; the row with its seeds first when several), or None."""
    if "book_params" not in table:
        return None
    rows = table[table["book_params"].astype(str) == params_file]
    if "heldout_of" in rows:
        rows = rows[rows["heldout_of"].isna()]
    return rows.iloc[0] if len(rows) else None


def chosen_text(table: pd.DataFrame, params_file: str = "params/default.yaml") -> str:
    """Markdown: which study row ``params_file`` is, what it reached and how its held-out
    rebuild compares, computed from the study's table (:func:`read_study`)."""
    r = chosen_row(table, params_file)
    if r is None:
        return f"No row of the protocol study is measured with `{params_file}`."
    marks = ", ".join(f"{i} {'✓' if bool(r[f'target{i}']) else '✗'}" for i in range(1, 5))
    text = (f"`{params_file}` is the study's row `{r['candidate']}` ({recipe_text(r)}; widths "
            f"{r['load_values']} × {temperature_text(r)}; seeds {r.get('seeds', '0-2')}). Its runs take "
            f"{_count(r.get('endpoint_steps'))} SGD steps and each curve {_count(r.get('curve_steps'))}. Phases "
            f"(cells): {r['phases']}; best test accuracy {r['best_test_acc']:.3f} ({r['best_phase']}). "
            f"Targets: {marks}")
    if isinstance(r.get("placement"), (bool, np.bool_)) or pd.notna(r.get("placement", np.nan)):
        heat = "; ".join(f"{g} {r[f'{g}_heat_pos']:.2f}" for g in ("I", "II", "III", "IV")
                         if pd.notna(r.get(f"{g}_heat_pos", np.nan)))
        text += f"; placement {'✓' if bool(r['placement']) else '✗'} (heat position {heat})"
    cont = r.get("continuation_evidence")
    why = f" ({cont})" if isinstance(cont, str) and "nothing to test" in cont else ""
    text += (f". Cold end converges: {_verdict(r, 'cold_end')}; mc > 0 survives the endpoints' "
             f"continuation: {_verdict(r, 'continuation')}{why}.")
    held = (table[table["heldout_of"].astype(str) == str(r["candidate"])] if "heldout_of" in table
            else table.iloc[:0])
    for _, h in held.iterrows():
        flips = h.get("heldout_flips", "")
        n_sure = h.get("heldout_confident_n", np.nan)
        text += (f" Rebuilt on the held-out seeds {h.get('seeds', '?')} (`{h['candidate']}`): "
                 f"{h['heldout_agree']:.0%} of the cells keep their label"
                 + (f" (changed: {flips})" if isinstance(flips, str) and flips else "")
                 + (f"; of the {int(n_sure)} cells labelled with probability ≥ {CONFIDENT_P:g} on the "
                    f"chosen seeds, {h['heldout_confident_agree']:.0%} keep it" if pd.notna(n_sure) and n_sure > 0 else "")
                 + f"; phases {h['phases']}; targets "
                 + ", ".join(f"{i} {'✓' if bool(h[f'target{i}']) else '✗'}" for i in range(1, 5)) + ".")
    if held.empty:
        text += " No held-out rebuild of this row is in the table."
    return text


def phase_ii_text(table: pd.DataFrame) -> str:
    """Markdown: a sentence, then one bullet per study row with phase II cells (confidence
    labels): its recipe and whether their mc > 0 survived the endpoint-continuation control,
    computed from the study's table (:func:`read_study`); the evidence's first clause gives
    the cells that kept a gain over their continued endpoints."""
    if "phases" not in table:
        return "The protocol study's table has no phase counts."
    counts = table["phases"].astype(str).str.extract(r"(?:^|\s)II:(\d+)")[0]
    rows = table[counts.notna()]
    if rows.empty:
        return "No row of the protocol study has a phase II cell."
    parts = []
    for i, r in rows.iterrows():
        ev = r.get("continuation_evidence")
        verdict = (f"{_verdict(r, 'continuation')} ({ev.split(';')[0]})" if isinstance(ev, str)
                   else "not measured (the row predates the control)")
        n = int(counts[i])
        parts.append(f"- `{r['candidate']}` ({recipe_text(r)}; {temperature_text(r)}): {n} II "
                     f"{'cell' if n == 1 else 'cells'}; continuation {verdict}")
    verdicts = rows["continuation"] if "continuation" in rows else pd.Series(np.nan, index=rows.index)
    measured, survived = int(verdicts.isin(["holds", "fails"]).sum()), int((verdicts == "holds").sum())
    head = (f"{len(rows)} {'row' if len(rows) == 1 else 'rows'} of the study have phase II cells; the "
            f"continuation control was measured on {measured} of them and holds on {survived}:")
    return head + "\n\n" + "\n".join(parts)


def _count(v: object) -> str:
    """A step count from the study's CSV (an int, a float or a range such as ``144-12000``)."""
    if isinstance(v, (int, float, np.integer, np.floating)) and np.isfinite(v):
        return f"{int(v)}"
    return str(v) if isinstance(v, str) else "?"


def _verdict(r: pd.Series, name: str) -> str:
    v = r.get(name, np.nan)
    return v if isinstance(v, str) else "-"


def cold_end_converges(runs: pd.DataFrame, load: str, temperature: str, *,
                       alpha: float = 0.05, grid: str = THIS_BUILD) -> Finding:
    """The control that separates a cold cell from an under-trained one.

    In the paper's grids the train loss *falls* toward the cold end (a cold run converges;
    noise keeps a hot one from it). A cold column that trained for fewer steps (a large
    batch on a small training set) ends with a *higher* loss instead, and its cells then get
    phase labels (often II, with mc > 0 from a curve trained far longer than its endpoints)
    for a reason that is not the paper's.

    Rule: at each load, the per-seed train losses of the coldest and the hottest
    temperature are compared by Welch's t test (``findings.difference_verdict``); the p-values
    of the loads are corrected by Holm's method. **fails** when at some load the coldest
    temperature's mean train loss is above the hottest's with a corrected p below ``alpha``
    (the evidence names those loads: their cold cells are under-trained; a test, with that
    p-value); **holds** otherwise (no evidence of under-training: a rule, without a p-value);
    **inconclusive** with fewer than two seeds per end at every load.

    Args:
        runs: one row per run: ``load``, ``temperature``, ``seed``, ``train_loss``
            (``tables/grid.csv``); diverged runs (NaN loss) are dropped.
    """
    df = runs.dropna(subset=["train_loss"])
    temps = df[temperature].unique()
    claim = (f"The cold end converges: at every {load}, the mean train loss at the coldest "
             f"{temperature} is not above that at the hottest beyond the seed spread")
    if len(temps) < 2:
        return Finding("cold_end_converges", claim, "inconclusive", f"one {temperature} value only",
                       f"{df[load].nunique()} loads", grid)
    cold, hot = coldest(temperature, temps), hottest(temperature, temps)
    rows = []
    for value in load_order(load, df[load]):
        at = df[df[load] == value]
        c, h = at[at[temperature] == cold].train_loss.to_numpy(), at[at[temperature] == hot].train_loss.to_numpy()
        v = difference_verdict(c, h, expect="greater", names=(f"cold {cold:g}", f"hot {hot:g}"))
        rows.append((value, c, h, v))
    tested = [r for r in rows if r[3].p_value is not None]
    n = (f"{len(rows)} loads x (coldest {temperature} {cold:g} vs hottest {hot:g}), per-seed losses"
         + (f" ({seeds_text(df['seed'])})" if "seed" in df else ""))
    if not tested:
        return Finding("cold_end_converges", claim, "inconclusive", "fewer than two seeds at an end", n, grid)
    adjusted = holm([r[3].p_value for r in tested])
    above = [(r, p) for r, p in zip(tested, adjusted) if p < alpha and r[1].mean() > r[2].mean()]
    parts = "; ".join(f"{load} {r[0]:g}: cold {r[1].mean():.3g} ± {r[1].std(ddof=1):.2g} vs hot "
                      f"{r[2].mean():.3g} ± {r[2].std(ddof=1):.2g}" for r in rows if len(r[1]) > 1 and len(r[2]) > 1)
    p_min = float(np.nanmin(adjusted))
    if above:
        loads = ", ".join(f"{r[0]:g}" for r, _ in above)
        evidence = (f"under-trained cold cells at {load} {loads} (Holm-corrected p ≤ {max(p for _, p in above):.2g}): "
                    f"their phase labels do not mean what the paper's do; train loss mean ± sd over seeds: {parts}")
        return Finding("cold_end_converges", claim, "fails", evidence, n, grid, p_min, "test")
    return Finding("cold_end_converges", claim, "holds",
                   f"no load with the cold end above the hot beyond the spread (smallest corrected p "
                   f"{p_min:.2g}); train loss mean ± sd over seeds: {parts}", n, grid, None, "rule")


#: The share of cells that must keep their label under every threshold move for the map to
#: count as robust (the same bar as the held-out seeds' target of the protocol study).
STABLE_SHARE = 0.75


def threshold_stability(cells: pd.DataFrame, thresholds: Any, *, rel: float = 0.25,
                        load: str | None = None, temperature: str | None = None,
                        grid: str = THIS_BUILD) -> tuple[Finding, pd.DataFrame]:
    """Does the phase map survive its thresholds moving by ±``rel``?

    Every numeric threshold of ``thresholds`` (a ``taxonomy.PhaseThresholds``) is moved down
    and up by ``rel``, one at a time, the others fixed, and the rule (``taxonomy.classify``)
    is applied to the cell means again. A cell is *stable* when it keeps its label under
    every move. Rule: **holds** when at least :data:`STABLE_SHARE` of the labelled cells are
    stable, **fails** otherwise (exploratory: a rule, no p-value); **inconclusive** without
    labelled cells.

    Returns:
        The finding and one row per cell that flips under some move: the cell's ``load`` and
        ``temperature`` values (when given), ``rule_phase`` (the rule on the cell means, before
        any move; the confidence label may differ) and ``flips`` (e.g. ``"cka_high +25%: IV-B→IV-A"``).
    """
    base = classify(cells, thresholds).astype(object)
    labelled = base.notna()
    flips: dict[Any, list[str]] = {}
    for f in dataclasses.fields(thresholds):
        default = getattr(thresholds, f.name)
        if not isinstance(default, (int, float)) or isinstance(default, bool):
            continue
        for sign in (-1, 1):
            moved = classify(cells, thresholds.replace(**{f.name: default * (1 + sign * rel)})).astype(object)
            for i in base.index[labelled & (moved.astype(str) != base.astype(str))]:
                flips.setdefault(i, []).append(f"{f.name} {'-' if sign < 0 else '+'}{rel:.0%}: {base[i]}→{moved[i]}")
    keep = [c for c in (load, temperature) if c and c in cells.columns]
    table = pd.DataFrame([{**{c: cells.at[i, c] for c in keep}, "rule_phase": base[i], "flips": "; ".join(v)}
                          for i, v in flips.items()], columns=[*keep, "rule_phase", "flips"])
    n = int(labelled.sum())
    claim = (f"The phase map is robust: at least {STABLE_SHARE:.0%} of the cells keep their label when "
             f"any one threshold moves by ±{rel:.0%}")
    if n == 0:
        return Finding("labels_survive_threshold_moves", claim, "inconclusive", "no labelled cell",
                       "0 cells", grid), table
    share = 1 - len(flips) / n
    where = "; ".join(" ".join(f"{c} {r[c]:g}" for c in keep) + f" ({r['flips']})" for _, r in table.iterrows())
    evidence = f"{n - len(flips)} of {n} cells stable ({share:.0%})" + (f"; flipping: {where}" if where else "")
    verdict = "holds" if share >= STABLE_SHARE else "fails"
    return Finding("labels_survive_threshold_moves", claim, verdict, evidence, f"{n} cells, cell means",
                   grid), table
