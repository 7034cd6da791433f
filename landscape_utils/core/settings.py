"""Settings from parameters: the one way a chapter's parameters become a settings dataclass.

Every settings dataclass of the package (``HessianSettings``, ``GlobalSettings``,
``PhaseThresholds``, ...) derives from :class:`FromParams`; a chapter builds its settings
with ``Settings.from_params(globals())``, and the cost plan and the benchmarks call the same
method on the same values, so all of them compute the same store keys. Likewise every
chapter passes its executor on with :func:`executor_options`, and a path a params file gives
is found with :func:`resolve_repo_path`. This module needs only the standard library, so
every other module may import it.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping, TypeVar

__all__ = ["FromParams", "EXECUTOR_OPTIONS", "executor_options", "REPO", "resolve_repo_path"]

#: The repository root: relative paths in params files start here.
REPO = Path(__file__).resolve().parents[2]

# The options of an executor, as every chapter with an ``executor`` parameter names them
# (``runner.make_executor`` checks their values).
EXECUTOR_OPTIONS = ("workers", "workers_per_gpu", "ray_address", "ray_num_gpus", "ray_num_cpus", "max_retries")

_S = TypeVar("_S", bound="FromParams")


class FromParams:
    """Mixin of the settings dataclasses: build one from a chapter's parameters.

    A chapter parameter fills the field of the same name, so the chapter, the cost plan
    and the benchmarks build equal settings (and equal store keys) from equal parameters.
    """

    @classmethod
    def from_params(cls: type[_S], params: Mapping[str, Any], prefix: str = "") -> _S:
        """The settings named in ``params`` (e.g. a chapter's ``globals()``); the rest keep
        their defaults. Field ``f`` is read from key ``prefix + f`` (a prefix tells apart two
        settings of one chapter that share a field name, e.g. ``mli_num_points``). A list
        given for a tuple-valued field becomes a tuple; ``validate()`` runs when defined."""
        kw = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if prefix + f.name not in params:
                continue
            value = params[prefix + f.name]
            if isinstance(f.default, tuple) and isinstance(value, list):
                value = tuple(value)
            kw[f.name] = value
        settings = cls(**kw)
        validate = getattr(settings, "validate", None)
        if callable(validate):
            validate()
        return settings

    @classmethod
    def param_names(cls, prefix: str = "") -> tuple[str, ...]:
        """The parameter names :meth:`from_params` reads, in field order."""
        return tuple(prefix + f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]


def executor_options(params: Mapping[str, Any]) -> dict[str, Any]:
    """``executor`` and its :data:`EXECUTOR_OPTIONS` from a chapter's parameters (e.g. its
    ``globals()``), to pass on to ``runner.run_grid`` and ``tasks.run_tasks``."""
    return {k: params[k] for k in ("executor", *EXECUTOR_OPTIONS) if k in params}


def resolve_repo_path(value: str | os.PathLike | None, key: str, *, folder: bool = False,
                      empty: str = "") -> Path | None:
    """A path given in a params file under ``key``: None when empty; an absolute path as is;
    a relative one against the current directory when it exists there, else against
    :data:`REPO` (params files give paths relative to the root, the chapters run in
    ``book/``). ``folder``: it must be a directory. Raises ``FileNotFoundError`` naming
    ``key`` and the value when neither exists; ``empty`` says what an empty value gives."""
    if not value:
        return None
    p = Path(value)
    for candidate in ([p] if p.is_absolute() else [p, REPO / p]):
        if candidate.is_dir() if folder else candidate.exists():
            return candidate.resolve()
    raise FileNotFoundError(f"{key}: {'folder ' if folder else ''}{value} not found (relative paths are "
                            f"read from the current directory or {REPO}); leave it empty {empty}")
