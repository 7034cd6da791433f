"""The book driver: execute the chapters with papermill and render the HTML book.

    python -m landscape_utils.book --params params/default.yaml --out build/default [--chapters 01,03]

The params file is YAML with a ``shared`` section (keys given to every chapter that
declares them) and one section per chapter, named by the chapter's file stem
(e.g. ``01_training_grid``). Before anything runs, the driver rejects a missing
file, malformed YAML, unknown sections, unknown keys (naming key and chapter) and
values whose type does not match the chapter's annotation; then :func:`preflight`
checks every run config chapter 1 would build, the dataset files and the executor.
Any of these exits with code 2 and a message; a chapter that fails while running
exits with code 1 naming the chapter.

Outputs under ``--out``: ``notebooks/<chapter>.ipynb`` (executed, also on failure,
with the traceback) and ``html/index.html`` (Jupyter Book 1.x, execution off,
charts and math rendered offline).
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
BOOK_DIR = REPO / "book"
KERNEL = "landscape-book"


class ParamsError(ValueError):
    """A problem with the params file, found before anything runs."""


@dataclass(frozen=True)
class Parameter:
    name: str
    annotation: str | None  # e.g. "int", "list", "str"
    default: Any


def chapters(book_dir: Path = BOOK_DIR) -> list[Path]:
    """The chapter files, in order (``NN_name.py``)."""
    return sorted(p for p in book_dir.glob("[0-9][0-9]_*.py"))


def chapter_parameters(path: Path) -> dict[str, Parameter]:
    """The names, annotations and defaults of a chapter's ``parameters`` cell."""
    import jupytext

    nb = jupytext.read(path)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        return {}
    out = {}
    for node in ast.parse(cells[0].source).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            name, ann, value = node.target.id, ast.unparse(node.annotation), node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, ann, value = node.targets[0].id, None, node.value
        else:
            continue
        try:
            default = ast.literal_eval(value) if value is not None else None
        except ValueError:
            default = None
        out[name] = Parameter(name, ann, default)
    return out


_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "list": (list,),
          "dict": (dict,)}


def _type_ok(value: Any, annotation: str | None) -> bool:
    if annotation is None:
        return True
    options = [a.strip() for a in annotation.split("|")]
    for a in options:
        base = a.split("[")[0]
        if base == "None" and value is None:
            return True
        if base not in _TYPES:
            return True  # an annotation we do not check
        if value is None:
            continue  # an empty YAML value (``key:``) where a value is needed
        if isinstance(value, bool) and base in ("int", "float"):
            continue
        if isinstance(value, _TYPES[base]):
            return True
    return False


def load_params(path: str | os.PathLike, selected: list[Path]) -> dict[str, dict[str, Any]]:
    """Read and validate a params file. Returns ``{chapter_stem: {key: value}}``."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ParamsError(f"malformed YAML in {path}: {err}") from err
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: the top level must be a mapping of sections")
    all_stems = {p.stem for p in chapters()}
    for section in raw:
        if section != "shared" and section not in all_stems:
            raise ParamsError(f"{path}: unknown section {section!r}; sections are 'shared' and the "
                              f"chapter stems: {', '.join(sorted(all_stems))}")
    for section, body in raw.items():
        if body is not None and not isinstance(body, dict):
            raise ParamsError(f"{path}: section {section!r} must be a mapping of key: value")
    declared = {p.stem: chapter_parameters(p) for p in chapters()}
    shared = raw.get("shared") or {}
    for key in shared:
        if not any(key in d for d in declared.values()):
            raise ParamsError(f"{path}: unknown key {key!r} in section 'shared': no chapter declares it")
    out = {}
    for chap in selected:
        decl = declared[chap.stem]
        section = raw.get(chap.stem) or {}
        for key, value in section.items():
            if key not in decl:
                raise ParamsError(f"{path}: unknown key {key!r} for chapter {chap.stem}; its parameters "
                                  f"are: {', '.join(decl)}")
        values = {k: v for k, v in shared.items() if k in decl}
        values.update(section)
        for key, value in values.items():
            if not _type_ok(value, decl[key].annotation):
                raise ParamsError(f"{path}: key {key!r} for chapter {chap.stem} should be "
                                  f"{decl[key].annotation}, got {type(value).__name__} {value!r}")
        if "workdir" in values:
            values["workdir"] = str(Path(values["workdir"]).resolve())
        out[chap.stem] = values
    return out


EXECUTOR_KEYS = ("workers", "workers_per_gpu", "ray_address", "ray_num_gpus", "ray_num_cpus", "max_retries")


def _book_path(value: str) -> Path:
    """A path from a chapter parameter: relative ones are relative to book/, the chapters' cwd."""
    p = Path(value)
    return p if p.is_absolute() else (BOOK_DIR / p).resolve()


def preflight(params: dict[str, dict[str, Any]], path: str | os.PathLike = "params") -> None:
    """Checks that need the package, run before any chapter (raise ``ParamsError``).

    For chapter 1 every run config of its grid is built and checked (values, batch
    size against the training set, the dataset's files under ``data_root`` unless
    ``download``). For every chapter with an ``executor`` parameter the executor name
    and options are checked; when runs are still to train, a Ray executor also checks
    that Ray is installed and the cluster answers. Chapter defaults fill keys the
    params file does not set.
    """
    from .runner import check_configs, grid_from_params, make_executor
    from .store import Store

    for stem, values in params.items():
        declared = chapter_parameters(BOOK_DIR / f"{stem}.py")
        merged = {k: p.default for k, p in declared.items()}
        merged.update(values)
        where = f"{path}: chapter {stem}"
        configs = None
        if stem == "01_training_grid":
            try:
                configs = grid_from_params(merged)
                check_configs(configs, _book_path(merged.get("data_root", "data")), merged.get("download", False))
            except (ValueError, TypeError, KeyError, FileNotFoundError) as err:
                raise ParamsError(f"{where}: {err}") from err
        if "executor" in merged:
            opts = {k: merged[k] for k in EXECUTOR_KEYS if k in merged}
            try:
                ex = make_executor(merged["executor"], device=str(merged.get("device", "auto")), **opts)
                workdir = _book_path(merged.get("workdir", "."))
                todo = configs is None or any(not Store(workdir).is_done(c, warn=False) for c in configs)
                if todo and hasattr(ex, "check"):
                    ex.check()
            except (ValueError, ImportError, ConnectionError) as err:
                raise ParamsError(f"{where}: {err}") from err


def _select(spec: str | None) -> list[Path]:
    allc = chapters()
    if not spec:
        return allc
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    chosen = [c for c in allc if any(c.stem.startswith(w) for w in wanted)]
    missing = [w for w in wanted if not any(c.stem.startswith(w) for c in allc)]
    if missing:
        raise ParamsError(f"unknown chapter(s) {', '.join(missing)}; chapters: {', '.join(c.stem for c in allc)}")
    return chosen


def _kernel_env(out: Path) -> dict[str, str]:
    """A kernelspec for this interpreter, found first through JUPYTER_PATH."""
    kdir = out / "jupyter" / "kernels" / KERNEL
    kdir.mkdir(parents=True, exist_ok=True)
    (kdir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "landscape-book", "language": "python"}))
    env = {"JUPYTER_PATH": str(out / "jupyter"), "LANDSCAPE_BOOK": "1", "LANDSCAPE_PROGRESS": "text",
           "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    return env


def execute(chapter: Path, params: dict[str, Any], out: Path) -> Path:
    """Execute one chapter; the output notebook is written even when it fails."""
    import jupytext
    import papermill as pm

    src = out / "src" / f"{chapter.stem}.ipynb"
    dst = out / "notebooks" / f"{chapter.stem}.ipynb"
    src.parent.mkdir(parents=True, exist_ok=True)
    dst.parent.mkdir(parents=True, exist_ok=True)
    nb = jupytext.read(chapter)
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "landscape-book", "language": "python"}
    jupytext.write(nb, src)
    pm.execute_notebook(str(src), str(dst), parameters=params, kernel_name=KERNEL, cwd=str(BOOK_DIR),
                        progress_bar=False, log_output=False)
    return dst


def _static_assets(static: Path) -> None:
    """Copy the vega bundle and MathJax into the book's static folder, for offline reading."""
    import altair as alt
    import mathjax
    import vl_convert as vlc

    static.mkdir(parents=True, exist_ok=True)
    vl = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    versions = vlc.get_vegalite_versions()
    bundle = vlc.javascript_bundle(vl_version=vl if vl in versions else versions[-1])
    # Wrapped in a function so its top-level names do not collide with the page's
    # globals (a classic script shares one global scope; ES modules do not load
    # from file:// pages). The bundle sets window.vegaEmbed itself.
    (static / "vega-bundle.js").write_text(f"(function () {{\n{bundle}\n}})();\n")
    es5 = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    shutil.copytree(es5, static / "mathjax", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("sre", "*.map"))


def build_html(out: Path, notebooks: list[Path], title: str = "landscape-book") -> Path:
    """Render executed notebooks into ``out/html`` with Jupyter Book 1.x (execution off)."""
    jb = out / "jb"
    if jb.exists():
        shutil.rmtree(jb)
    jb.mkdir(parents=True)
    for nb in notebooks:
        shutil.copy(nb, jb / nb.name)
    _static_assets(jb / "_offline")
    stems = [nb.stem for nb in notebooks]
    toc = {"format": "jb-book", "root": stems[0]}
    if len(stems) > 1:
        toc["chapters"] = [{"file": s} for s in stems[1:]]
    (jb / "_toc.yml").write_text(yaml.safe_dump(toc))
    config = {
        "title": title, "author": "landscape-book", "only_build_toc_files": True,
        "execute": {"execute_notebooks": "off"},
        "html": {"use_repository_button": False, "use_issues_button": False, "use_edit_page_button": False,
                 "use_multitoc_numbering": False},
        "launch_buttons": {"thebe": False, "binderhub_url": "", "colab_url": "", "jupyterhub_url": ""},
        "sphinx": {"config": {
            "html_static_path": ["_offline"],  # not _static: Jupyter Book would add every .js there
            "html_js_files": ["vega-bundle.js"],
            "mathjax_path": "mathjax/tex-svg.js",
            "nb_output_stderr": "remove",
            "html_show_sourcelink": False,
            "html_context": {"default_mode": "light"},
        }},
    }
    (jb / "_config.yml").write_text(yaml.safe_dump(config))
    # `jupyter-book config sphinx` writes the Sphinx conf.py that `jupyter-book build`
    # would use; we drop sphinx-thebe (it declares THEBE_JS_URL twice, a JS error, and
    # points at a CDN; the book has no live kernels) and run Sphinx ourselves.
    exe = Path(sys.executable).parent / "jupyter-book"
    _run([str(exe) if exe.exists() else "jupyter-book", "config", "sphinx", str(jb)])
    with open(jb / "conf.py", "a") as fh:
        fh.write("\nextensions = [e for e in extensions if e != 'sphinx_thebe']\n")
    build = out / "_html"
    if build.exists():
        shutil.rmtree(build)
    _run([sys.executable, "-m", "sphinx", "-b", "html", "-q", str(jb), str(build)])
    html = out / "html"
    if html.exists():
        shutil.rmtree(html)
    shutil.move(str(build), str(html))
    return html / "index.html"


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m landscape_utils.book", description=__doc__.split("\n")[0])
    ap.add_argument("--params", required=True, help="params YAML, e.g. params/default.yaml")
    ap.add_argument("--out", required=True, help="output folder, e.g. build/default")
    ap.add_argument("--chapters", default=None, help="comma-separated chapter prefixes, e.g. 01,03")
    ap.add_argument("--no-html", action="store_true", help="execute only; skip the HTML book")
    args = ap.parse_args(argv)
    try:
        selected = _select(args.chapters)
        params = load_params(args.params, selected)
        preflight(params, args.params)
    except ParamsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    os.environ.update(_kernel_env(out))
    done, failed = [], None
    for chap in selected:
        t0 = time.perf_counter()
        print(f"[book] {chap.stem}: running", flush=True)
        try:
            done.append(execute(chap, params[chap.stem], out))
        except Exception as err:  # papermill has written the notebook with the traceback
            failed = chap.stem
            print(f"[book] {chap.stem}: FAILED after {time.perf_counter() - t0:.0f} s: "
                  f"{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}",
                  file=sys.stderr, flush=True)
            print(f"[book] the executed notebook with the traceback is {out / 'notebooks' / (chap.stem + '.ipynb')}",
                  file=sys.stderr)
            if (out / "notebooks" / f"{chap.stem}.ipynb").exists():
                done.append(out / "notebooks" / f"{chap.stem}.ipynb")
            break
        print(f"[book] {chap.stem}: done in {time.perf_counter() - t0:.0f} s", flush=True)
    if done and not args.no_html:
        index = build_html(out, done)
        print(f"[book] HTML book: {index}")
    if failed:
        print(f"error: chapter {failed} failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
