"""The meaning of a grid's two axes: which is the load, which the temperature, and which
end of each is hot.

A grid has a **load-like** axis (x of every phase diagram) and a **temperature-like**
axis (y). Yang et al. (2021) call temperature-like the knobs that set the noise of SGD:
the temperature rises with the learning rate and falls with the batch size (the noise
scale of SGD goes as lr / batch size). Weight decay is the third temperature-like knob of
their sweeps, hotter when larger (stronger regularization, like more noise). Load-like
knobs set how much the model must fit relative to what it can: the model's size on one
side, the quantity and quality of the data on the other. The paper finds poorly connected
landscapes where models are small or the data are of low quality, so noisy labels act like
*less capacity per sample*, as does more data for the same model. We order a load axis by
**capacity per sample**, the end where a model fits its training set most easily being
the right of a phase diagram (phase I on the left, as in the paper's figure). The 1D model
of chapter 5 has its own two axes, ``load`` and ``temperature``.

=================  ===========  =====  ========  ============  ===================================
axis               kind         dtype  hot end   capacity end  why
=================  ===========  =====  ========  ============  ===================================
``batch_size``     temperature  int    small     --            SGD noise ~ lr / batch size
``lr``             temperature  float  large     --            SGD noise ~ lr / batch size
``weight_decay``   temperature  float  large     --            stronger regularization is hotter
``momentum``       temperature  float  large     --            effective step lr / (1 - momentum)
``temperature``    temperature  float  large     --            the 1D model's T (chapter 5)
``width``          load         int    --        large         more parameters per sample
``depth``          load         int    --        large         more parameters per sample
``data_fraction``  load         float  --        small         fewer samples to fit
``label_noise``    load         float  --        small         noisy labels are more to memorize
``load``           load         float  --        large         the 1D model: larger load, smoother
=================  ===========  =====  ========  ============  ===================================

:func:`hot_order` sorts a temperature axis's values hottest first (the top row of a phase
diagram); :func:`load_order` sorts a load axis's values from the least to the most capacity
(left to right); :func:`coldest` / :func:`hottest` pick one value; :func:`axis_position`
places values on [0, 1] with the hot (or high-capacity) end at 1.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable

import numpy as np
import pandas as pd

__all__ = ["Axis", "AXES", "axis_info", "hot_order", "load_order", "coldest", "hottest"]


@dataclass(frozen=True)
class Axis:
    """One axis of a grid and what its values mean."""

    name: str                       # the column, e.g. "batch_size"
    kind: str                       # "load" | "temperature" | "other"
    dtype: str                      # "int" | "float": the column's type after a CSV round trip
    hot_end: str | None = None      # temperature axes: "small" | "large", the noisiest end
    capacity_end: str | None = None  # load axes: "small" | "large", most capacity per sample
    label: str = ""                 # axis title of a chart
    log: bool = True                # values spaced by factors (log axes on quantitative charts)

    def __post_init__(self) -> None:
        if self.kind not in ("load", "temperature", "other"):
            raise ValueError(f"axis {self.name!r}: kind must be load, temperature or other, "
                             f"got {self.kind!r}")
        if self.dtype not in ("int", "float"):
            raise ValueError(f"axis {self.name!r}: dtype must be int or float, got {self.dtype!r}")
        for attr in ("hot_end", "capacity_end"):
            v = getattr(self, attr)
            if v not in (None, "small", "large"):
                raise ValueError(f"axis {self.name!r}: {attr} must be small, large or None, "
                                 f"got {v!r}")
        if self.kind == "temperature" and self.hot_end is None:
            raise ValueError(f"temperature axis {self.name!r} needs hot_end")
        if self.kind == "load" and self.capacity_end is None:
            raise ValueError(f"load axis {self.name!r} needs capacity_end")

    @property
    def title(self) -> str:
        return self.label or self.name

    def cast(self, values: Any) -> Any:
        """``values`` (a scalar, list, array or Series) as this axis's Python/numpy type."""
        typ = int if self.dtype == "int" else float
        if isinstance(values, pd.Series):
            return values.astype("int64" if typ is int else "float64")
        if isinstance(values, (list, tuple, np.ndarray)):
            return [typ(v) for v in values]
        return typ(values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


AXES: dict[str, Axis] = {a.name: a for a in (
    Axis("batch_size", "temperature", "int", hot_end="small",
         label="batch size (temperature; small = hot)"),
    Axis("lr", "temperature", "float", hot_end="large",
         label="learning rate (temperature; large = hot)"),
    Axis("weight_decay", "temperature", "float", hot_end="large",
         label="weight decay (temperature; large = hot)"),
    Axis("momentum", "temperature", "float", hot_end="large", log=False,
         label="momentum (temperature; large = hot)"),
    Axis("temperature", "temperature", "float", hot_end="large", label="temperature T"),
    Axis("width", "load", "int", capacity_end="large", label="width (load)"),
    Axis("depth", "load", "int", capacity_end="large", log=False, label="depth (load)"),
    Axis("data_fraction", "load", "float", capacity_end="small",
         label="data fraction (load; less data = more capacity per sample)"),
    Axis("label_noise", "load", "float", capacity_end="small", log=False,
         label="label noise (load; more noise = less capacity per sample)"),
    Axis("load", "load", "float", capacity_end="large", label="load (1D model)"),
)}


def axis_info(name: str | Axis) -> Axis:
    """The :class:`Axis` of a column name (an :class:`Axis` is returned as is). A name
    outside :data:`AXES` gets kind ``"other"``: drawn in ascending order, no hot end."""
    if isinstance(name, Axis):
        return name
    if name in AXES:
        return AXES[name]
    return Axis(str(name), "other", "float", label=str(name))


def _sorted_unique(values: Iterable[Any]) -> list[Any]:
    vals = pd.unique(pd.Series(list(values)).dropna())
    return sorted(v.item() if isinstance(v, np.generic) else v for v in vals)


def hot_order(axis: str | Axis, values: Iterable[Any]) -> list[Any]:
    """The distinct ``values`` of a temperature axis, hottest first (the top row of a phase
    diagram). An axis of another kind comes back in ascending order."""
    a = axis_info(axis)
    vals = _sorted_unique(values)
    return vals[::-1] if a.hot_end == "large" else vals


def load_order(axis: str | Axis, values: Iterable[Any]) -> list[Any]:
    """The distinct ``values`` of a load axis from the least to the most capacity per sample
    (left to right on a phase diagram). An axis of another kind comes back ascending."""
    a = axis_info(axis)
    vals = _sorted_unique(values)
    return vals[::-1] if a.capacity_end == "small" else vals


def _hot_to_cold(axis: str | Axis, values: Iterable[Any]) -> list[Any]:
    a = axis_info(axis)
    if a.kind != "temperature":
        raise ValueError(f"{a.name!r} is not a temperature axis (kind {a.kind!r})")
    order = hot_order(a, values)
    if not order:
        raise ValueError(f"no values of {a.name!r} to choose from")
    return order


def hottest(axis: str | Axis, values: Iterable[Any]) -> Any:
    """The hottest of ``values`` on a temperature axis."""
    return _hot_to_cold(axis, values)[0]


def coldest(axis: str | Axis, values: Iterable[Any]) -> Any:
    """The coldest of ``values`` on a temperature axis (e.g. the largest batch size)."""
    return _hot_to_cold(axis, values)[-1]


def axis_position(values, end: str | None = None) -> pd.Series:
    """Position of each value on its grid axis in [0, 1]: the rank of the value among the
    axis's distinct values, divided by (number of values − 1); 0.5 for a one-value axis.

    ``end``: which end of the axis is 1: ``"large"`` (or None) keeps increasing order,
    ``"small"`` reverses it. With a temperature axis's ``hot_end`` (e.g. ``"small"`` for the
    batch size, see :mod:`landscape_utils.runs.tables`) 0 is the coldest value and 1 the hottest.
    """
    if end not in (None, "small", "large"):
        raise ValueError(f"end must be None, 'small' or 'large', got {end!r}")
    s = pd.Series(values)
    levels = np.sort(pd.unique(s.dropna()))
    if levels.size <= 1:
        pos = pd.Series(np.where(s.notna(), 0.5, np.nan), index=s.index)
    else:
        rank = pd.Series(np.searchsorted(levels, s.to_numpy()), index=s.index, dtype=float)
        pos = rank.where(s.notna()) / (levels.size - 1)
    return 1.0 - pos if end == "small" else pos
