"""One config path: a chapter's parameters become its settings through ``from_params``, and the
chapter, the cost plan and the protocol study build equal settings, hence equal store keys.

The store keys of every params file are compared with hashes recorded from the code before
parameters were renamed to the fields they fill (``top_k`` -> ``k`` ...): cached results of
an earlier build are found again."""
from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from landscape_utils.book import plan
from landscape_utils.book.chapters import BOOK_DIR, RENAMED, REPO, chapter_parameters, chapters, merged_values
from landscape_utils.book.driver import ParamsError, load_params
from landscape_utils.experiments.global_metrics import GlobalSettings, MLISettings
from landscape_utils.experiments.large_scale import WedgeSettings
from landscape_utils.experiments.local import DensitySettings, HessianSettings
from landscape_utils.experiments.taxonomy import PhaseThresholds
from landscape_utils.runs.store import stable_hash

SETTINGS = {c.__name__: c for c in (HessianSettings, DensitySettings, GlobalSettings, MLISettings,
                                     WedgeSettings, PhaseThresholds)}
PARAMS_FILES = ("default", "cnn_batch", "smoke", "mlp_quarter", "paper_cifar10")

# stable_hash of each settings' store key (run id "R", pair "A", "B"; the thresholds and the
# wedge settings as dicts), computed by the hand mapping the chapters used before
# from_params (e.g. HessianSettings(k=top_k, rel_tol=trace_rel_tol, seed=hessian_seed, ...)).
KEYS_BEFORE = {
    # the batch-size default before the lr protocol; its file moved, its keys did not
    "cnn_batch": {"hessian": "f8e6ac638fab901c", "density": "7184f7656d1adaea", "global": "ad93301ba6bf3eef",
                  "mli": "19d934df4fe17449", "thresholds": "ab2b0f37ff4682e1", "wedge": "a76bd348bc2d7215"},
    # the lr-temperature default (recorded when it was made the default: curves of 120 epochs)
    "default": {"hessian": "f8e6ac638fab901c", "density": "7184f7656d1adaea", "global": "849938048f383491",
                "mli": "19d934df4fe17449", "thresholds": "ab2b0f37ff4682e1", "wedge": "a76bd348bc2d7215"},
    "smoke": {"hessian": "9399db2b104a22b9", "density": "fe55f97faa63cb1d", "global": "81e70830ebd93b6c",
              "mli": "19d934df4fe17449", "thresholds": "fde0db12bf0a5747", "wedge": "825c72113115a1d3"},
    "mlp_quarter": {"hessian": "918661cde1dfa7bf", "density": "8081a99c9074f567", "global": "81e70830ebd93b6c",
                    "mli": "19d934df4fe17449", "thresholds": "ab2b0f37ff4682e1", "wedge": "a211e1c8a115f45a"},
    "paper_cifar10": {"hessian": "f19a8fa1c57ce862", "density": "8081a99c9074f567",
                      "global": "ee83174dd01c74d0", "mli": "19d934df4fe17449",
                      "thresholds": "fde0db12bf0a5747", "wedge": "a211e1c8a115f45a"},
}


def chapter_builds(path: Path) -> dict[str, tuple[str, str]]:
    """``{variable: (settings class, prefix)}`` of every ``x = Cls.from_params(globals()...)``
    in a chapter's source."""
    out = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)):
            continue
        call = node.value
        if not (isinstance(call.func, ast.Attribute) and call.func.attr == "from_params"):
            continue
        assert isinstance(call.args[0], ast.Call) and ast.unparse(call.args[0]) == "globals()", \
            f"{path.name}: settings must be built from the chapter's own parameters"
        cls = ast.unparse(call.func.value).split(".")[-1]
        prefix = next((ast.literal_eval(k.value) for k in call.keywords if k.arg == "prefix"), "")
        out[node.targets[0].id] = (cls, prefix)
    return out


def chapter_settings(stem: str, values: dict) -> dict:
    """The settings a chapter builds from ``values`` (its parameters, merged with a file)."""
    merged = merged_values(stem, values)
    return {var: SETTINGS[cls].from_params(merged, prefix=prefix)
            for var, (cls, prefix) in chapter_builds(BOOK_DIR / f"{stem}.py").items()}


def _keys(settings: dict) -> dict:
    def h(s):
        return stable_hash(dataclasses.asdict(s))
    return {"hessian": stable_hash(settings["02_local_metrics"]["settings"].key("R")),
            "density": stable_hash(settings["02_local_metrics"]["density_settings"].key("R")),
            "global": stable_hash(settings["03_global_connectivity"]["settings"].key("A", "B")),
            "mli": stable_hash(settings["03_global_connectivity"]["mli_settings"].key("R")),
            "thresholds": h(settings["04_taxonomy"]["thresholds"]),
            "wedge": h(settings["06_large_scale_structure"]["settings"])}


def test_every_chapter_builds_its_settings_through_from_params():
    built = {p.stem: chapter_builds(p) for p in chapters()}
    assert built["02_local_metrics"] == {"settings": ("HessianSettings", ""),
                                         "density_settings": ("DensitySettings", "")}
    assert built["03_global_connectivity"] == {"settings": ("GlobalSettings", ""),
                                               "mli_settings": ("MLISettings", "mli_")}
    assert built["04_taxonomy"]["thresholds"] == ("PhaseThresholds", "")
    assert built["06_large_scale_structure"] == {"settings": ("WedgeSettings", "")}
    # a parameter a chapter declares under a field's name fills that field; no field of a
    # chapter's settings is declared under another name (the old top_k, trace_rel_tol, ...)
    for stem, builds in built.items():
        declared = chapter_parameters(BOOK_DIR / f"{stem}.py")
        for cls, prefix in builds.values():
            assert not set(RENAMED.get(stem, {})) & set(declared), stem
            read = set(SETTINGS[cls].param_names(prefix)) & set(declared)
            assert read, f"{stem}: {cls} reads none of the chapter's parameters"


@pytest.mark.parametrize("name", PARAMS_FILES)
def test_store_keys_are_those_of_before_the_renames(name):
    params = load_params(REPO / "params" / f"{name}.yaml", chapters())
    settings = {stem: chapter_settings(stem, params[stem]) for stem in
                ("02_local_metrics", "03_global_connectivity", "04_taxonomy", "06_large_scale_structure")}
    assert _keys(settings) == KEYS_BEFORE[name]


@pytest.mark.parametrize("name", PARAMS_FILES)
def test_the_plan_builds_the_chapters_settings(name):
    params = load_params(REPO / "params" / f"{name}.yaml", chapters())
    planned = plan.chapter_settings(params)
    for stem, by_var in planned.items():
        assert by_var == chapter_settings(stem, params[stem]), stem


def test_the_protocol_study_builds_the_chapters_settings():
    from benchmarks.protocol_study import book_settings

    params = load_params(REPO / "params" / "default.yaml", chapters())
    _, hessian, curve = book_settings("params/default.yaml")
    ch2 = chapter_settings("02_local_metrics", params["02_local_metrics"])
    ch3 = chapter_settings("03_global_connectivity", params["03_global_connectivity"])
    assert HessianSettings.from_params(hessian) == ch2["settings"]
    assert GlobalSettings.from_params(curve) == ch3["settings"]


def test_from_params_reads_fields_by_name_with_a_prefix():
    s = MLISettings.from_params({"num_points": 99, "mli_num_points": 5, "mli_eps": 0.5, "eps": 9.0},
                                prefix="mli_")
    assert (s.num_points, s.eps) == (5, 0.5)
    assert HessianSettings.from_params({"unrelated": 1}) == HessianSettings()
    w = WedgeSettings.from_params({"radii": [1.0, 2.0]})
    assert w.radii == (1.0, 2.0)
    with pytest.raises(ValueError, match="radii"):
        WedgeSettings.from_params({"radii": []})  # validate() runs
    with pytest.raises(ValueError, match="num_samples"):
        HessianSettings.from_params({"num_samples": 0})
    assert MLISettings.param_names("mli_") == ("mli_num_points", "mli_eps", "mli_eval_batch_size")


@pytest.mark.parametrize("stem,old,new", [(s, o, n) for s, names in RENAMED.items() for o, n in names.items()])
def test_an_old_parameter_name_names_the_new_one(tmp_path, stem, old, new):
    f = tmp_path / "p.yaml"
    f.write_text(f"{stem}:\n  {old}: 1\n")
    with pytest.raises(ParamsError, match=f"key '{old}' for chapter {stem} was renamed to '{new}'"):
        load_params(f, chapters())
    f.write_text(f"shared:\n  {old}: 1\n")
    with pytest.raises(ParamsError, match=f"key '{old}' in section 'shared' was renamed to '{new}'"):
        load_params(f, chapters())


def test_every_chapter_with_an_executor_declares_the_same_executor_options():
    from landscape_utils.core.settings import EXECUTOR_OPTIONS, executor_options

    with_executor = {p.stem: chapter_parameters(p) for p in chapters() if "executor" in chapter_parameters(p)}
    assert len(with_executor) == 5
    defaults = {stem: {k: decl[k].default for k in ("executor", *EXECUTOR_OPTIONS)}
                for stem, decl in with_executor.items()}
    first = next(iter(defaults.values()))
    assert all(d == first for d in defaults.values()), defaults
    assert first["executor"] == "process" and first["workers"] == 0
    values = merged_values("02_local_metrics", {"executor": "serial", "workers": 3})
    assert executor_options(values) == {**first, "executor": "serial", "workers": 3}
    # the chapters pass it on; none spells the options out by hand
    for stem in with_executor:
        src = (BOOK_DIR / f"{stem}.py").read_text()
        assert "executor_options(globals())" in src and "workers=workers" not in src, stem
