"""Numbers about values: statistics, histograms and how two values differ (internal, numpy).

Everything here takes arrays and returns JSON-ready data (the shapes in
:mod:`ckptlab.inspect._wire`): the explorer's details pane, its change colours and the
training-run timeline all read values through these functions.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ckptlab.inspect import Change, Histogram, Stats

HISTOGRAM_BINS = 20


def _numeric(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The array as numbers: complex by magnitude, booleans as 0/1, other dtypes as float64."""
    data = np.asarray(array)
    if data.dtype.kind == "c":
        data = np.abs(data)
    if data.dtype.kind == "b":
        data = data.astype(np.int8)
    if data.dtype.kind not in "iuf":  # bfloat16 and other extension dtypes
        data = data.astype(np.float64)
    return data.reshape(-1)


def _finite(flat: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    values = flat[np.isfinite(flat)] if flat.dtype.kind == "f" else flat
    return values.astype(np.float64)


def _histogram(values: np.ndarray[Any, Any], edges: np.ndarray[Any, Any]) -> Histogram:
    counts, _ = np.histogram(values, bins=edges)
    return {"counts": [int(c) for c in counts], "edges": [float(e) for e in edges]}


def value_stats(array: np.ndarray[Any, Any]) -> Stats:
    """min/max/mean/std of the finite elements, NaN/Inf counts and a small histogram.

    Complex values are summarised by magnitude, booleans as 0/1.

    Examples
    --------
    >>> s = value_stats(np.array([1.0, 2.0, np.nan, np.inf]))
    >>> s["min"], s["max"], s["nan"], s["inf"]
    (1.0, 2.0, 1, 1)
    """
    flat = _numeric(array)
    out: Stats = {"size": int(flat.size), "nan": 0, "inf": 0}
    if flat.dtype.kind == "f":
        out["nan"] = int(np.count_nonzero(np.isnan(flat)))
        out["inf"] = int(np.count_nonzero(np.isinf(flat)))
    values = _finite(flat)
    if values.size == 0:
        return out
    out["min"], out["max"] = float(values.min()), float(values.max())
    out["mean"], out["std"] = float(values.mean()), float(values.std())
    out["zeros"] = int(np.count_nonzero(values == 0))
    out["histogram"] = _histogram(values, np.histogram_bin_edges(values, bins=HISTOGRAM_BINS))
    return out


def squares(array: np.ndarray[Any, Any]) -> float:
    """Sum of squares of the finite elements (``||a||²``), in float64.

    Examples
    --------
    >>> squares(np.array([3.0, 4.0, np.nan]))
    25.0
    """
    values = _finite(_numeric(array))
    return float(np.dot(values, values))


def difference(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> tuple[int, float, float]:
    """(elements that differ, max |b - a|, ||b - a||²) of two arrays of one shape.

    NaNs at the same places are equal; a NaN or an infinity against anything else is an
    infinite distance (a run that diverged changed the most).  Integers compare exactly, and
    their distance is computed exactly before it becomes a float (as float64, 2**60 and
    2**60 + 1 are equal).  ``ck.diff``, ``ckptlab diff``, the explorer's comparisons and the
    timeline all use it.

    Examples
    --------
    >>> difference(np.array([1.0, 2.0]), np.array([1.0, 2.5]))
    (1, 0.5, 0.25)
    >>> difference(np.array([np.nan]), np.array([np.nan]))
    (0, 0.0, 0.0)
    >>> difference(np.array([1.0, 2.0]), np.array([1.0, np.nan]))
    (1, inf, inf)
    >>> difference(np.array([2**60], np.int64), np.array([2**60 + 1], np.int64))
    (1, 1.0, 1.0)
    """
    if a.dtype.kind in "iub" and b.dtype.kind in "iub":
        ne = np.asarray(a != b).reshape(-1)
        differing = int(np.count_nonzero(ne))
        if not differing:
            return 0, 0.0, 0.0
        delta = _integer_distance(a.reshape(-1)[ne], b.reshape(-1)[ne])
        return differing, float(delta.max()), float(np.dot(delta, delta))
    wide = np.complex128 if "c" in (a.dtype.kind, b.dtype.kind) else np.float64
    x, y = a.astype(wide).reshape(-1), b.astype(wide).reshape(-1)
    same = (x == y) | (np.isnan(x) & np.isnan(y))
    differing = int(same.size - np.count_nonzero(same))
    if not differing:
        return 0, 0.0, 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        delta = np.abs(np.where(same, 0, y - x))
    if not np.isfinite(delta).all():  # a NaN or an infinity against anything else
        return differing, math.inf, math.inf
    return differing, float(delta.max()), float(np.dot(delta, delta))


def _integer_distance(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """``|y - x|`` of integers (or booleans) as float64, computed exactly first."""
    if x.dtype == y.dtype:
        wide = np.uint64 if x.dtype.kind == "u" else np.int64  # booleans as 0 and 1
        hi = np.maximum(x, y).astype(wide).view(np.uint64)
        lo = np.minimum(x, y).astype(wide).view(np.uint64)
        distance: np.ndarray[Any, Any] = (hi - lo).astype(np.float64)  # mod 2**64: exact
        return distance
    return np.array(
        [abs(int(q) - int(p)) for p, q in zip(x.tolist(), y.tolist(), strict=True)], np.float64
    )


def relative(delta_squares: float, base_squares: float) -> float:
    """``sqrt(delta²) / sqrt(base²)``: 0 when nothing changed, ``inf`` from an all-zero base.

    Examples
    --------
    >>> relative(1.0, 4.0)
    0.5
    """
    if delta_squares == 0:
        return 0.0
    return math.inf if base_squares == 0 else math.sqrt(delta_squares / base_squares)


def change(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any], *, overlay: bool = True) -> Change:
    """How ``b`` differs from ``a``: max |b - a|, relative L2, and both histograms on one scale.

    Examples
    --------
    >>> c = change(np.array([1.0, 1.0]), np.array([1.0, 2.0]))
    >>> c["max_abs"], round(c["rel_l2"], 4), len(c["a"]["counts"]) == len(c["b"]["counts"])
    (1.0, 0.7071, True)
    """
    _, largest, delta = difference(a, b)
    out: Change = {"max_abs": largest, "rel_l2": relative(delta, squares(a))}
    if overlay:
        xa, xb = _finite(_numeric(a)), _finite(_numeric(b))
        both = np.concatenate([xa, xb])
        if both.size:
            edges = np.histogram_bin_edges(both, bins=HISTOGRAM_BINS)
            out["a"], out["b"] = _histogram(xa, edges), _histogram(xb, edges)
    return out
