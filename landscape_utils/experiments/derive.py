"""The shipped tables, derived from the released files (one command line for both)::

    python -m landscape_utils.experiments.derive reference PATH/TO/results.tar.gz [--out DIR] [--schedule S]
    python -m landscape_utils.experiments.derive zoo PATH/TO/summary_metrics [--out DIR]

``reference`` derives ``cells.csv``, ``runs.csv``, ``pairs.csv`` and ``paths.csv`` from the
authors' ``results.tar.gz`` (or its unpacked folder) (:mod:`landscape_utils.experiments.reference`);
``zoo`` derives ``{zoo}.csv`` from the Phase Transition Model Zoo's ``summary_metrics/``
folder (:mod:`landscape_utils.experiments.zoo`). By default both write into the package's
``reference_data``, where the book reads them.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from . import reference, zoo


def derive_reference(path: str | os.PathLike, out: str | os.PathLike = reference.SHIPPED_DIR,
                     schedule: str = "lr_decay") -> int:
    """Derive and write the authors' tables; print what was written."""
    for f in reference.write_tables(reference.derive_tables(Path(path), schedule=schedule), out):
        print(f"wrote {f} ({f.stat().st_size} bytes)")
    return 0


def derive_zoo(folder: str | os.PathLike, out: str | os.PathLike = zoo.ZOO_DIR) -> int:
    """Derive and write every zoo's table; print what was written and the notes."""
    tables, notes = zoo.derive_zoo_tables(folder)
    for f in zoo.write_zoo_tables(tables, out):
        print(f"wrote {f} ({f.stat().st_size} bytes, {len(tables[f.stem])} models)")
    for name, lines in notes.items():
        for line in lines:
            print(f"  {name}: {line}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m landscape_utils.experiments.derive",
                                     description="Derive the shipped tables from the released files.")
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("reference", help="the authors' tables, from results.tar.gz")
    r.add_argument("path", help="the released results.tar.gz or its unpacked folder")
    r.add_argument("--out", default=str(reference.SHIPPED_DIR),
                   help="folder to write cells.csv, runs.csv, pairs.csv, paths.csv into")
    r.add_argument("--schedule", default="lr_decay", help="schedule folder of the release")
    z = sub.add_parser("zoo", help="the Model Zoo's tables, from the released summary_metrics/ folder")
    z.add_argument("path", help="folder of the released {zoo}_summary.csv files")
    z.add_argument("--out", default=str(zoo.ZOO_DIR), help="folder to write {zoo}.csv into")
    args = parser.parse_args(argv)
    path = Path(args.path)
    if args.command == "zoo":
        if not path.is_dir():
            parser.error(f"{path} is not a folder")
        return derive_zoo(path, args.out)
    if not path.exists():
        parser.error(f"{path} not found")
    return derive_reference(path, args.out, args.schedule)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
