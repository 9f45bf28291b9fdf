"""Tensors saved in slices (TF1 partitioned variables, TF2 ``MaxShardSizePolicy``) (internal).

A sliced tensor lists rectangular regions; before anything is allocated, each region is checked
to lie inside the shape, and together they must tile it exactly: no gap (an uncovered region
would be returned as uninitialised memory) and no overlap (docs/foreign-formats.md §5.3).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

import numpy as np

from ckptlab.errors import CorruptCheckpointError
from ckptlab.storage._foreign._tfproto import Extent

Region = tuple[tuple[int, int], ...]
"""(start, length) per dimension, with "whole dimension" resolved."""
MAX_GRID_CELLS = 1 << 24
"""Slices are checked on the grid their boundaries draw; a grid larger than this is refused."""


def resolve_region(extents: tuple[Extent, ...], shape: tuple[int, ...], where: str) -> Region:
    """(start, length) per dimension with "whole dimension" (-1) resolved and bounds checked.

    Examples
    --------
    >>> resolve_region(((2, 3), (0, -1)), (5, 4), "t")
    ((2, 3), (0, 4))
    """
    if len(extents) != len(shape):
        raise CorruptCheckpointError(
            f"{where}: a slice of rank {len(extents)} for shape {list(shape)}."
        )
    region = []
    for (start, length), dim in zip(extents, shape, strict=True):
        if length == -1:
            start, length = 0, dim
        if start < 0 or length < 0 or start + length > dim:
            raise CorruptCheckpointError(
                f"{where}: slice {start}+{length} outside dimension {dim}."
            )
        region.append((start, length))
    return tuple(region)


def show_region(region: Region) -> str:
    """TensorFlow's ``start,length:...`` spelling of a region."""
    return ":".join(f"{s},{n}" for s, n in region)


def region_slices(region: Region) -> tuple[slice, ...]:
    """The numpy index of a region."""
    return tuple(slice(s, s + n) for s, n in region)


def check_coverage(regions: Sequence[Region], shape: tuple[int, ...], where: str) -> None:
    """Refuse slices that leave part of ``shape`` uncovered or cover a part twice.

    Examples
    --------
    >>> check_coverage([((0, 2),), ((2, 2),)], (4,), "t")
    >>> check_coverage([((0, 2),), ((0, 2),)], (4,), "t")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ckptlab.errors.CorruptCheckpointError: t: slice 0,2 overlaps another slice. ...
    """
    total = math.prod(shape)
    covered = sum(math.prod(n for _, n in r) for r in regions)
    if covered != total:
        raise CorruptCheckpointError(
            f"{where}: its {len(regions)} slices hold {covered} elements; shape {list(shape)} "
            f"has {total}. Every element must be saved exactly once; the file is damaged."
        )
    if len(regions) < 2 or not total:
        return
    bounds = [
        sorted({0, dim, *(s for s, _ in axis), *(s + n for s, n in axis)})
        for dim, axis in zip(shape, zip(*regions, strict=True), strict=True)
    ]
    cells = math.prod(len(b) - 1 for b in bounds)
    if cells > MAX_GRID_CELLS:
        raise CorruptCheckpointError(
            f"{where}: {len(regions)} slices cut shape {list(shape)} into {cells} grid cells; "
            f"ckptlab checks at most {MAX_GRID_CELLS}. The slicing is not one TensorFlow writes."
        )
    seen = np.zeros([len(b) - 1 for b in bounds], dtype=np.bool_)
    for region in regions:
        index = tuple(
            slice(bisect.bisect_left(b, s), bisect.bisect_left(b, s + n))
            for b, (s, n) in zip(bounds, region, strict=True)
        )
        if seen[index].any():
            raise CorruptCheckpointError(
                f"{where}: slice {show_region(region)} overlaps another slice. Every element "
                "must be saved exactly once; the file is damaged."
            )
        seen[index] = True
