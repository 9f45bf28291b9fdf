"""``ck.diff``: how two checkpoints differ, structure and values (internal).

Values present in both with the same shape and dtype are read in batches (each value once) and
compared: equal or not, max |b - a|, ``||b - a||²`` and ``||a||²`` (relative L2 per value and per
module).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import TYPE_CHECKING, Any

from ckptlab.core import gc_paused
from ckptlab.explorer._sources import DiffSource, checkpoint_values
from ckptlab.explorer._values import difference, squares
from ckptlab.inspect import CheckpointDiff, DiffEntry, DiffState, diff_view
from ckptlab.storage import StoredCheckpoint, open_path

BATCH_BYTES = 64 * 1024 * 1024
"""Bytes read from each checkpoint at a time while comparing."""

if TYPE_CHECKING:  # the widget needs the widgets extra; imported when one is made
    from ckptlab.widgets import ExplorerWidget


class Diff(CheckpointDiff):
    """:class:`CheckpointDiff` that also displays as an explorer widget in notebooks."""

    __slots__ = ()

    def widget(self) -> ExplorerWidget:
        """The explorer widget of this diff.

        Returns
        -------
        ExplorerWidget
            The two checkpoints' union, values coloured by how they changed.

        Examples
        --------
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> a = ck.Checkpoint(w=ck.Variable([1.0])).write(d + "/a")
        >>> b = ck.Checkpoint(w=ck.Variable([2.0])).write(d + "/b")
        >>> ck.diff(a, b).widget().summary.startswith("1 changed")
        True
        """
        from ckptlab.widgets import ExplorerWidget

        with gc_paused():
            return ExplorerWidget(DiffSource(self, open_path(self.a), open_path(self.b)))

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        try:
            return self.widget()._repr_mimebundle_(**kwargs)
        except ImportError:
            from ckptlab.inspect import view_mimebundle

            return view_mimebundle(diff_view(self))


def compare_stored(left: StoredCheckpoint, right: StoredCheckpoint) -> Diff:
    """The diff of two opened checkpoints (see :func:`diff`)."""
    specs_a, specs_b = left.specs(), right.specs()
    placed = {v.key: v for side in (left, right) for v in checkpoint_values(side)}
    entries: dict[str, DiffEntry] = {}
    same: list[str] = []
    for key in [*specs_a, *(k for k in specs_b if k not in specs_a)]:
        sa, sb = specs_a.get(key), specs_b.get(key)
        value = placed.get(key)
        entry = functools.partial(
            DiffEntry,
            key=key,
            path=(key,) if value is None else value.path,
            optimizer=value is not None and value.optimizer,
            a=sa,
            b=sb,
        )
        if sa is None or sb is None:
            side: DiffState = "added" if sa is None else "removed"
            entries[key] = entry(state=side)
        elif sa != sb:
            why = "shape changed" if sa.shape != sb.shape else "dtype changed"
            reason = f"{why}: {sa.describe()} -> {sb.describe()}"
            entries[key] = entry(state="changed", reason=reason)
        else:
            entries[key] = entry(state="unchanged")
            same.append(key)
    for batch in left.batches(same, BATCH_BYTES):
        read_a, read_b = left.read_many(batch), right.read_many(batch)
        for key in batch:
            a = read_a[key]
            differing, largest, delta = difference(a, read_b[key])
            entries[key] = dataclasses.replace(
                entries[key],
                state="changed" if differing else "unchanged",
                differing=differing,
                max_abs_diff=largest if differing else None,
                reason=f"max |b - a| = {largest:.6g}" if differing else "",
                delta_squares=delta,
                base_squares=squares(a),
            )
    return Diff(a=left.display_path, b=right.display_path, entries=tuple(entries.values()))


def diff(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> Diff:
    """Compare two checkpoints (paths or directories): added, removed and changed values.

    Values present in both with the same shape and dtype are read and compared; "changed"
    entries carry the largest absolute difference, and every compared value its relative L2
    change (``rel_l2``); ``modules()`` sums them per module, most changed first.  Displays as
    an explorer widget coloured by change.

    Parameters
    ----------
    a, b
        Checkpoint paths, or checkpoint directories (their latest checkpoint).

    Returns
    -------
    Diff
        The differences as data (``to_dict()``, ``most_changed()``, ``modules()``).

    Examples
    --------
    >>> import ckptlab as ck, tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> a = ck.Checkpoint(w=ck.Variable([1.0, 2.0])).write(os.path.join(d, "a"))
    >>> b = ck.Checkpoint(w=ck.Variable([1.0, 2.5]), v=ck.Variable(0)).write(os.path.join(d, "b"))
    >>> result = ck.diff(a, b)
    >>> result.summary(), result.changed[0].max_abs_diff, round(result.changed[0].rel_l2, 3)
    ('1 changed, 1 added', 0.5, 0.224)
    """
    with gc_paused():
        return compare_stored(open_path(a), open_path(b))
