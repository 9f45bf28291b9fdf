"""Cross-framework near misses: stored and wanted names that differ only by convention (pure).

``near_misses`` pairs names that are equal once each is split on ``/`` and ``.``, TensorFlow's
``.ATTRIBUTES/VARIABLE_VALUE`` and ``:0`` suffixes are dropped, leading underscores and case are
ignored, and framework synonyms are unified (``weight`` ~ ``kernel`` for matrices, ``weight`` ~
``gamma`` ~ ``scale`` for vectors, ``beta`` ~ ``bias``, ``running_mean`` ~ ``moving_mean``,
``running_var`` ~ ``moving_variance``).  Shapes must agree, or be the transpose of each other
for a 2-D ``weight`` ~ ``kernel`` pair (PyTorch ``Linear`` is ``[out, in]``, Keras ``[in, out]``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from ckptlab.core._args import argument_error
from ckptlab.core._graph import ValueSpec

_SYNONYMS = {
    "gamma": "scale",
    "beta": "bias",
    "runningmean": "mean",
    "movingmean": "mean",
    "runningvar": "variance",
    "movingvariance": "variance",
}
_SPLIT = re.compile(r"[/.]")
_TENSOR_SUFFIX = re.compile(r":\d+\Z")
"""TF 1 variable names end in the output index (``kernel:0``); a ``:`` elsewhere is a name."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NearMiss:
    """A stored name and a wanted name that probably mean the same value.

    Parameters
    ----------
    stored
        The checkpoint's name.
    wanted
        The program's name.
    reason
        Why they pair, e.g. ``'fc1.weight' ~ 'fc1/kernel', transposed``.
    transpose
        Whether the stored value must be transposed to fit.

    Examples
    --------
    >>> miss = NearMiss(stored="fc.bias", wanted="fc/bias", reason="'fc.bias' ~ 'fc/bias'")
    >>> miss.transpose
    False
    """

    stored: str
    wanted: str
    reason: str
    transpose: bool = False


def _canonical(name: str, rank: int) -> tuple[str, ...]:
    name = _TENSOR_SUFFIX.sub("", name).replace("/.ATTRIBUTES/VARIABLE_VALUE", "")
    parts = []
    for part in _SPLIT.split(name):
        word = part.strip("_").replace("_", "").lower()
        if word == "weight":
            word = "kernel" if rank >= 2 else "scale"
        if word:
            parts.append(_SYNONYMS.get(word, word))
    return tuple(parts)


def _fit(stored: ValueSpec, wanted: ValueSpec) -> bool | None:
    """``False``: fits as is; ``True``: fits transposed; ``None``: does not fit."""
    if not wanted.takes_dtype(stored.dtype):
        return None
    if wanted.shape_accepts(stored.shape):
        return False
    if len(stored.shape) == 2 and wanted.shape_accepts(stored.shape[::-1]):
        return True
    return None


def near_misses(stored: Mapping[str, ValueSpec], wanted: Mapping[str, ValueSpec]) -> list[NearMiss]:
    """Pairs of stored and wanted names that differ only by framework conventions.

    Names present on both sides are skipped; each name appears in at most one pair.  The
    conventions: ``.`` or ``/`` separators, leading underscores (Keras 3's ``_kernel``),
    ``weight`` for ``kernel`` (transposed when 2-D) or ``scale``, ``gamma``/``beta`` for
    ``scale``/``bias``, running or moving statistics; shapes and dtypes must fit.

    Parameters
    ----------
    stored
        Name -> shape and dtype of the checkpoint's values.
    wanted
        Name -> shape and dtype of the program's values.

    Returns
    -------
    list of NearMiss
        Sorted by stored name; ``ck.KeyMap.from_near_misses`` turns them into a key map.

    Examples
    --------
    >>> from ckptlab.core import ValueSpec  # the shape and dtype of a value
    >>> f32 = lambda *shape: ValueSpec(shape=shape, dtype="float32")
    >>> stored = {"fc1.weight": f32(3, 4), "fc1.bias": f32(3)}
    >>> wanted = {"fc1/kernel": f32(4, 3), "fc1/bias": f32(3)}
    >>> [(m.stored, m.wanted, m.transpose) for m in near_misses(stored, wanted)]
    [('fc1.bias', 'fc1/bias', False), ('fc1.weight', 'fc1/kernel', True)]
    """
    for side, specs in (("stored", stored), ("wanted", wanted)):
        _check_specs(side, specs)
    by_form: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for name, spec in wanted.items():
        if name not in stored:
            by_form[_canonical(name, len(spec.shape))].append(name)
    pairs = []
    used: set[str] = set()
    for name in sorted(stored):
        if name in wanted:
            continue
        spec = stored[name]
        for candidate in by_form.get(_canonical(name, len(spec.shape)), []):
            transpose = _fit(spec, wanted[candidate])
            if candidate in used or transpose is None:
                continue
            used.add(candidate)
            reason = f"{name!r} ~ {candidate!r}" + (", transposed" if transpose else "")
            pairs.append(
                NearMiss(stored=name, wanted=candidate, reason=reason, transpose=transpose)
            )
            break
    return pairs


def _check_specs(side: str, specs: object) -> None:
    """Refuse a side of :func:`near_misses` that is not a mapping name -> ValueSpec."""
    if isinstance(specs, Mapping):
        wrong = [
            (name, spec)
            for name, spec in specs.items()
            if not (isinstance(name, str) and isinstance(spec, ValueSpec))
        ]
        if not wrong:
            return
        specs = dict(wrong[:1])  # the first wrong entry is what the message shows
    raise argument_error(
        side,
        "a mapping name (str) -> ck.core.ValueSpec",
        specs,
        "{'fc.weight': ck.core.ValueSpec(shape=(3, 4), dtype='float32')}",
    )
