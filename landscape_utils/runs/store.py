"""The results store: one folder per run, keyed by a stable hash of its config.

Layout under a workdir::

    runs/<run_id>/config.json     the full RunConfig
    runs/<run_id>/init.pt         state_dict at initialization
    runs/<run_id>/final.pt        state_dict at the end of training
    runs/<run_id>/history.json    per-epoch train loss / accuracy
    runs/<run_id>/metrics.json    final metrics; written LAST, so its presence (and
                                  valid content) marks a finished run
    metrics/<name>/<key_id>.json  metrics that later chapters compute (Hessian, CKA, ...),
                                  keyed by run id(s) and the metric's own settings

Every file is written atomically (temp file, then rename): a killed writer leaves
either nothing or a complete file, never a half-written one that looks finished.
A run being trained holds ``runs/<run_id>.lock`` (an OS file lock, so it is freed
when its holder dies): two drivers on one workdir never train the same run twice.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import pickle
import warnings
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import torch
from filelock import FileLock, Timeout

from ..core import train as _train
from ..core.models import build_model
from ..core.train import RunConfig, identity_dict
from ..core.utils import atomic_torch_save, atomic_write_json, resolve_device

CHECKPOINTS = ("init", "final")


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hex digest of the canonical JSON of ``obj`` (sorted keys, no whitespace)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def run_id(config: RunConfig | dict, version: int | None = None) -> str:
    """Stable id of a run: the hash of its full configuration and of the training
    algorithm's version (``train.identity_dict``: fields added later are left out while
    they hold their default, and the version while it is 1, so old ids stay). ``version``:
    default ``train.TRAINING_VERSION``."""
    d = config.to_dict() if isinstance(config, RunConfig) else dict(config)
    return stable_hash(identity_dict(d, version))


# The version of the algorithm behind each metric of the store, by metric name. It is part
# of the key of every record of that metric (left out while 1, so records stored before
# versions existed keep their keys). Bump a metric's version where it is declared (each
# module declares its metric names with :func:`algorithm_version`) when a change of its
# code changes its numbers: exactly its records are computed again.
ALGORITHM_VERSIONS: dict[str, int] = {}


def algorithm_version(name: str, version: int = 1) -> str:
    """Declare the algorithm version of metric ``name``; returns ``name``."""
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"algorithm version of {name!r} must be an integer >= 1, got {version!r}")
    ALGORITHM_VERSIONS[name] = version
    return name


def versioned_key(name: str, key: dict[str, Any], version: int | None = None) -> dict[str, Any]:
    """``key`` as stored: with ``algorithm_version`` when the metric's version (or
    ``version``) is not 1."""
    version = ALGORITHM_VERSIONS.get(name, 1) if version is None else version
    return dict(key) if version == 1 else {**key, "algorithm_version": version}


class Store:
    """Access to one workdir. Cheap to create; holds no open files."""

    def __init__(self, workdir: str | os.PathLike):
        self.root = Path(workdir)

    # ---- runs --------------------------------------------------------------
    def run_dir(self, rid: str) -> Path:
        return self.root / "runs" / rid

    def is_done(self, config: RunConfig | str, warn: bool = True) -> bool:
        """True when the run finished and its files are intact.

        A run whose ``metrics.json`` or ``config.json`` is unreadable, whose config does
        not hash to its folder name, or whose other files are missing or of another size
        than recorded when it was saved (truncated) is reported with a warning naming
        the file (unless ``warn=False``) and counts as not done, so it is trained again.
        """
        rid = config if isinstance(config, str) else run_id(config)
        d = self.run_dir(rid)
        mfile = d / "metrics.json"
        if not mfile.exists():
            return False

        def bad(msg: str) -> bool:
            if warn:
                warnings.warn(f"{msg}; the run will be redone", stacklevel=3)
            return False

        try:
            sizes = json.loads(mfile.read_text())["_files"]
            if not isinstance(sizes, dict):
                raise TypeError(f"_files is a {type(sizes).__name__}")
        except (ValueError, KeyError, TypeError, OSError) as err:
            return bad(f"corrupt result file {mfile} ({type(err).__name__}: {err})")
        for name, size in sizes.items():
            f = d / name
            if not f.exists() or f.stat().st_size != size:
                what = "checkpoint" if name.endswith(".pt") else "file"
                return bad(f"missing or truncated {what} {f} (expected {size} bytes)")
        cfile = d / "config.json"
        try:
            version = (json.loads(mfile.read_text()).get("_provenance") or {}).get("training_version", 1)
            stored = run_id(json.loads(cfile.read_text()), version)
        except (ValueError, OSError) as err:
            return bad(f"corrupt config file {cfile} ({type(err).__name__}: {err})")
        if stored != rid:
            return bad(f"config file {cfile} belongs to run {stored}, not to its folder {rid}")
        return True

    def save_run(self, config: RunConfig, result: dict[str, Any], provenance: dict[str, Any] | None = None) -> str:
        """Write a finished run (as returned by ``train.train_run``), with what trained it
        (``utils.provenance``; read back by :meth:`run_provenance`). Returns its id.

        Each file is written atomically; ``metrics.json`` comes last and records every
        other file's size, so a run killed (or out of disk space) part way is never
        taken for a finished one. A full disk raises ``OSError`` naming the run folder.
        """
        rid = run_id(config)
        d = self.run_dir(rid)
        files = {}
        try:
            for which in CHECKPOINTS:
                path = d / f"{which}.pt"
                atomic_torch_save(path, result[f"{which}_state"])
                files[path.name] = path.stat().st_size
            for name, obj in (("config.json", config.to_dict()), ("history.json", result["history"])):
                atomic_write_json(d / name, obj)
                files[name] = (d / name).stat().st_size
            atomic_write_json(d / "metrics.json", {**result["metrics"], "run_id": rid, "_files": files,
                                                   "_provenance": {**(provenance or {}),
                                                                   "training_version": _train.TRAINING_VERSION}})
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise OSError(err.errno, f"no space left on the device while saving run {rid} to {d}: "
                              "the run is not marked finished and earlier runs are intact; free some "
                              "space and rerun to resume") from err
            raise
        return rid

    @contextlib.contextmanager
    def lock(self, rid: str, timeout: float = 0, folder: str | os.PathLike = "runs"):
        """Hold the run's lock; yields True if acquired, False if another process has it.

        ``timeout=-1`` waits for it. The lock is an OS lock: a holder killed by SIGKILL
        releases it at once, so a stale lock never blocks a rerun.
        """
        (self.root / folder).mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.root / folder / f"{rid}.lock"), timeout=timeout)
        try:
            lock.acquire()
        except Timeout:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()

    def clean_partial(self, rid: str) -> None:
        """Remove temp files that a killed writer left in the run folder."""
        d = self.run_dir(rid)
        for tmp in d.glob(".*.tmp") if d.exists() else []:
            tmp.unlink(missing_ok=True)

    def run_ids(self) -> list[str]:
        """Ids of finished runs, sorted."""
        runs = self.root / "runs"
        if not runs.exists():
            return []
        return sorted(p.name for p in runs.iterdir() if p.is_dir() and self.is_done(p.name))

    def unfinished(self) -> list[str]:
        """Run folders without a valid finished result (killed, corrupt or in progress)."""
        runs = self.root / "runs"
        if not runs.exists():
            return []
        return sorted(p.name for p in runs.iterdir() if p.is_dir() and not self.is_done(p.name, warn=False))

    def config(self, rid: str) -> RunConfig:
        return RunConfig.from_dict(json.loads((self.run_dir(rid) / "config.json").read_text()))

    def metrics(self, rid: str) -> dict[str, Any]:
        m = json.loads((self.run_dir(rid) / "metrics.json").read_text())
        m.pop("_files", None)
        m.pop("_provenance", None)
        return m

    def run_provenance(self, rid: str) -> dict[str, Any]:
        """What trained the run (package, commit, torch, device, precision, wall time, date);
        empty for runs stored before provenance was recorded."""
        return json.loads((self.run_dir(rid) / "metrics.json").read_text()).get("_provenance") or {}

    def history(self, rid: str) -> list[dict[str, Any]]:
        return json.loads((self.run_dir(rid) / "history.json").read_text())

    def state_dict(self, rid: str, which: str = "final") -> dict[str, torch.Tensor]:
        if which not in CHECKPOINTS:
            raise ValueError(f"unknown checkpoint {which!r}; choose one of {CHECKPOINTS}")
        path = self.run_dir(rid) / f"{which}.pt"
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as err:
            # Same size as recorded but unreadable: damaged after it was written.
            raise RuntimeError(f"cannot read checkpoint {path} ({type(err).__name__}: {err}); delete the "
                               f"folder {path.parent} and rerun chapter 1 to train the run again") from err

    # ---- metrics computed later, per run or per pair of runs ----------------
    def metric_path(self, name: str, key: dict[str, Any], version: int | None = None) -> Path:
        """The file of the record of ``key``, at the metric's current algorithm version (or ``version``)."""
        return self.root / "metrics" / name / f"{stable_hash(versioned_key(name, key, version))}.json"

    def stale_metric(self, name: str, key: dict[str, Any]) -> bool:
        """True when ``key`` has no record at the metric's current version but one made by
        an earlier version of its algorithm (it will be computed again)."""
        current = ALGORITHM_VERSIONS.get(name, 1)
        return (not self.metric_path(name, key).exists()
                and any(self.metric_path(name, key, v).exists() for v in range(1, current)))

    def stale_run(self, config: RunConfig) -> bool:
        """True when ``config`` has no finished run at the current training version but one
        trained by an earlier version (it will be trained again)."""
        return (not self.is_done(config, warn=False)
                and any(self.is_done(run_id(config, v), warn=False) for v in range(1, _train.TRAINING_VERSION)))

    def stale_records(self) -> dict[str, int]:
        """Stored records and runs made by an earlier version of their algorithm that have no
        counterpart at the current version (a build will compute them again), counted per
        metric name (``"runs"`` for training)."""
        out: dict[str, int] = {}
        for folder in sorted((self.root / "metrics").iterdir()) if (self.root / "metrics").exists() else []:
            current = ALGORITHM_VERSIONS.get(folder.name, 1)
            if current == 1 or not folder.is_dir():
                continue
            for path in folder.glob("*.json"):
                try:
                    key = json.loads(path.read_text())["key"]
                except (OSError, ValueError, KeyError):
                    continue
                base = {k: v for k, v in key.items() if k != "algorithm_version"}
                if key.get("algorithm_version", 1) < current and not self.metric_path(folder.name, base).exists():
                    out[folder.name] = out.get(folder.name, 0) + 1
        if _train.TRAINING_VERSION > 1:
            n = sum(self.stale_run(self.config(rid)) for rid in self.run_ids()
                    if self.run_provenance(rid).get("training_version", 1) < _train.TRAINING_VERSION)
            if n:
                out["runs"] = n
        return out

    def metric_lock(self, name: str, key: dict[str, Any], timeout: float = 0):
        """:meth:`lock` for the record of ``key`` (a task's first key): two drivers never
        compute the same record twice."""
        return self.lock(stable_hash(versioned_key(name, key)), timeout, folder=Path("metrics") / name)

    def load_metric(self, name: str, key: dict[str, Any]) -> dict[str, Any] | None:
        """The cached record for ``key`` (run ids + settings), or None if absent/corrupt."""
        path = self.metric_path(name, key)
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())["record"]
        except (json.JSONDecodeError, KeyError) as err:
            warnings.warn(f"corrupt metric file {path} ({err}); it will be recomputed")
            return None

    def save_metric(self, name: str, key: dict[str, Any], record: dict[str, Any],
                    provenance: dict[str, Any] | None = None) -> None:
        """Write one record under its key, with what computed it (``utils.provenance``)."""
        body = {"key": versioned_key(name, key), "record": record}
        if provenance is not None:
            body["provenance"] = provenance
        atomic_write_json(self.metric_path(name, key), body)

    def metric_provenance(self, name: str, key: dict[str, Any]) -> dict[str, Any] | None:
        """What computed the record stored for ``key`` (None if absent, or stored without it)."""
        try:
            return json.loads(self.metric_path(name, key).read_text()).get("provenance")
        except (OSError, ValueError):
            return None

    def metric_table(self, name: str) -> pd.DataFrame:
        """All cached records of one metric as a tidy table: key columns + record columns."""
        rows = []
        folder = self.root / "metrics" / name
        for path in sorted(folder.glob("*.json")) if folder.exists() else []:
            try:
                d = json.loads(path.read_text())
                rows.append({**d["key"], **d["record"]})
            except (json.JSONDecodeError, KeyError) as err:
                warnings.warn(f"corrupt metric file {path} ({err}); skipped")
        return pd.DataFrame(rows)


def record_usage(what: str, reused: int, computed: int, dates: Iterable[str | None] = ()) -> None:
    """Append one line to the file ``LANDSCAPE_USAGE_LOG`` names (the book driver sets it per
    chapter): how many stored records a table reused, how many it computed, and the oldest
    of the reused records' ``dates`` (their provenance; None for records stored without
    one). Without the variable, nothing is written."""
    path = os.environ.get("LANDSCAPE_USAGE_LOG")
    if not path:
        return
    oldest = min((d for d in dates if d), default=None)
    line = {"what": what, "reused": int(reused), "computed": int(computed), "oldest": oldest}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(line) + "\n")


def load_results(workdir: str | os.PathLike, configs: Iterable[RunConfig] | None = None) -> pd.DataFrame:
    """One row per finished run: ``run_id``, every config field, every final metric.

    With ``configs``, only those runs (finished ones) are returned.
    """
    store = Store(workdir)
    ids = store.run_ids() if configs is None else [
        r for r in (run_id(c) for c in configs) if store.is_done(r)]
    rows = [{"run_id": r, **store.config(r).to_dict(), **store.metrics(r)} for r in ids]
    cols = ["run_id", *RunConfig.__dataclass_fields__]
    return pd.DataFrame(rows, columns=None if rows else cols)


def load_history(workdir: str | os.PathLike, run_ids: Iterable[str]) -> pd.DataFrame:
    """Per-epoch learning curves of the given runs, long form (run_id, epoch, ...)."""
    store = Store(workdir)
    rows = [{"run_id": r, **h} for r in run_ids for h in store.history(r)]
    return pd.DataFrame(rows)


def load_model(workdir: str | os.PathLike, rid: str, which: str = "final",
               device: str | torch.device = "cpu", data=None) -> torch.nn.Module:
    """Rebuild a stored run's model and load its checkpoint onto ``device``.

    ``data`` (a ``data.Dataset``) gives the input shape and classes; without it the
    dataset is loaded from its config.
    """
    store = Store(workdir)
    cfg = store.config(rid)
    if data is None:
        data = cfg.load_data()
    model = build_model(cfg.model, cfg.width, data.in_shape, data.num_classes,
                        batch_norm=cfg.batch_norm, depth=cfg.depth)
    model.load_state_dict(store.state_dict(rid, which))
    return model.to(resolve_device(device))
