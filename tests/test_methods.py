"""The Methods appendix (book/07_methods.py): a chapter of markdown that defines every metric
and procedure, with stable MyST labels that code, docstrings and chapters point at.

These checks are static (no kernel, no HTML build): the chapter parses, holds only markdown
plus the parameters cell every chapter needs and one table of the settings' defaults, carries each required label exactly once right
before a heading, every ``methods-…`` label used anywhere in the repository exists, and its
math delimiters are balanced and placed where MyST renders them. The smoke book
(tests/test_book.py) builds it into HTML.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import jupytext
import pytest

from landscape_utils.book.driver import chapter_parameters, chapters

REPO = Path(__file__).resolve().parents[1]
CHAPTER = REPO / "book" / "07_methods.py"

#: Every section the appendix must have (issue 13: "Code and docstrings point to its sections").
REQUIRED_LABELS = (
    "methods-appendix", "methods-notation", "methods-training", "methods-paper-grid", "methods-axes",
    "methods-hessian", "methods-lanczos", "methods-trace", "methods-slq",
    "methods-mc", "methods-linear-barrier", "methods-bezier", "methods-bn",
    "methods-cka", "methods-mixup", "methods-l2", "methods-pairs", "methods-mli",
    "methods-phases", "methods-sensitivity", "methods-phase-confidence", "methods-spearman",
    "methods-released",
    "methods-rugged", "methods-large-scale", "methods-simplex", "methods-tunnel", "methods-ensembles",
    "methods-wedges", "methods-subspace", "methods-weight-matching", "methods-filter-norm",
    "methods-references",
)

LABEL_RE = re.compile(r"^\((methods-[a-z0-9][a-z0-9-]*)\)=\s*$")
# a reference in prose, code or docstrings: methods-xxx (not "methods-…" or "methods-{...}")
USE_RE = re.compile(r"(?<![\w-])(methods-[a-z0-9][a-z0-9-]*[a-z0-9])")
REF_RE = re.compile(r"\{ref\}`(?:[^`<]*<)?(methods-[a-z0-9-]+)>?`")


@pytest.fixture(scope="module")
def notebook():
    return jupytext.read(CHAPTER)


@pytest.fixture(scope="module")
def markdown(notebook) -> list[str]:
    return [c.source for c in notebook.cells if c.cell_type == "markdown"]


def _labels(markdown: list[str]) -> list[tuple[str, str]]:
    """(label, the line after it) for every label line of the chapter."""
    out = []
    for src in markdown:
        lines = src.splitlines()
        for i, line in enumerate(lines):
            m = LABEL_RE.match(line)
            if m:
                out.append((m.group(1), lines[i + 1] if i + 1 < len(lines) else ""))
    return out


def test_methods_is_the_last_chapter_and_declares_the_shared_parameters():
    assert chapters()[-1] == CHAPTER
    params = chapter_parameters(CHAPTER)
    assert set(params) == {"device", "workdir"}
    assert all(p.annotation == "str" for p in params.values())


def test_only_markdown_a_parameters_cell_and_the_table_of_defaults(notebook):
    code = [c for c in notebook.cells if c.cell_type != "markdown"]
    assert len(code) == 2, [c.source[:60] for c in code]
    params, table = code
    assert "parameters" in params.metadata.get("tags", [])
    # nothing but annotated assignments of literals: no import, no call, no function
    body = ast.parse(params.source).body
    assert body and all(isinstance(n, ast.AnnAssign) and isinstance(n.value, ast.Constant) for n in body)
    # the table of settings reads defaults from the code and measures nothing: it imports
    # only the settings dataclasses, the chapters' parameters cells and pandas
    imported = {n.module or "" for n in ast.walk(ast.parse(table.source)) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(ast.parse(table.source)) if isinstance(n, ast.Import) for a in n.names}
    assert imported <= {"dataclasses", "pandas", "landscape_utils.book.chapters", "landscape_utils.experiments.global_metrics",
                        "landscape_utils.experiments.large_scale", "landscape_utils.experiments.local", "landscape_utils.experiments.taxonomy",
                        "landscape_utils.core.train"}, imported
    assert len([c for c in notebook.cells if c.cell_type == "markdown"]) >= 10


def test_every_required_label_exists_once_before_a_heading(markdown):
    found = _labels(markdown)
    names = [name for name, _ in found]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    missing = [label for label in REQUIRED_LABELS if label not in names]
    assert not missing, missing
    not_headings = [name for name, nxt in found if not re.match(r"#{1,4} \S", nxt)]
    assert not not_headings, f"a label must sit right before its heading: {not_headings}"


def test_every_ref_inside_the_chapter_resolves(markdown):
    names = {name for name, _ in _labels(markdown)}
    refs = {r for src in markdown for r in REF_RE.findall(src)}
    assert refs, "the chapter cross-references its own sections"
    assert refs <= names, sorted(refs - names)


def test_every_methods_label_used_in_the_repository_exists(markdown):
    names = {name for name, _ in _labels(markdown)}
    sources = [*REPO.glob("landscape_utils/**/*.py"), *REPO.glob("book/*.py"), *REPO.glob("benchmarks/**/*.py"),
               *REPO.glob("params/*.yaml"), *REPO.glob("*.md")]
    unknown = {}
    for path in sources:
        if path == CHAPTER:
            continue
        for used in USE_RE.findall(path.read_text(encoding="utf-8", errors="replace")):
            if used not in names:
                unknown.setdefault(used, []).append(str(path.relative_to(REPO)))
    assert not unknown, f"labels used but not defined in {CHAPTER.name}: {unknown}"


def test_math_delimiters_are_balanced_and_display_math_starts_a_block(markdown):
    for src in markdown:
        displays = src.count("$$")
        assert displays % 2 == 0, src[:80]
        inline = re.sub(r"\$\$.*?\$\$", "", src, flags=re.S).replace(r"\$", "")
        assert inline.count("$") % 2 == 0, src[:80]
        lines = src.splitlines()
        inside = False
        for i, line in enumerate(lines):
            if line.strip().startswith("$$") and not inside:
                # MyST renders $$ as display math only at the start of a block
                assert i == 0 or not lines[i - 1].strip(), f"no blank line before display math: {line[:60]}"
            inside ^= line.count("$$") % 2 == 1


def test_no_reference_to_files_outside_the_repository():
    text = CHAPTER.read_text(encoding="utf-8")
    # spelled in two parts so that this file itself stays out of the issue's `git grep`
    for outside in ("ALGORITHMS" + ".md", "../" + "shared"):
        assert outside not in text
