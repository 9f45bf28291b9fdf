"""What transformers 5 does to a model's weights between its files and its modules (internal).

``from_pretrained`` renames some weights (a ViT's files say
``encoder.layer.0.attention.attention.query``, its module ``layers.0.attention.q_proj``) and
builds others from several stored ones: a Mixture-of-Experts model's files hold a tensor per
expert (``model.layers.0.mlp.experts.0.gate_proj.weight``, ...), its modules one fused tensor
(``model.layers.0.mlp.experts.gate_up_proj``, ``[experts, 2 * intermediate, hidden]``).  The
model's conversion mapping (``transformers.conversion_mapping``) says how: its
``WeightRenaming`` s rename, its ``WeightConverter`` s run operations (``MergeModulelist``,
``Concatenate``, ``Chunk``, ...) on the stored tensors.  The torch adapter's ``file_names`` and
``file_conversions`` ask here; transformers' own objects match the names and do the work, as
in ``from_pretrained``.

Imported by the torch adapter once a transformers model reaches a name-based restore (so
transformers is already imported).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from ckptlab.core import ValueSpec
from ckptlab.engine._adapter import Conversion
from ckptlab.engine._torch import _dtype_name, from_numpy, to_numpy

__all__ = ["conversions", "renames"]


def _transforms(obj: Any) -> list[Any]:
    """The weight transforms transformers applies loading ``obj``'s files (``[]``: none)."""
    try:
        from transformers import PreTrainedModel
        from transformers.conversion_mapping import get_model_conversion_mapping
    except ImportError:  # transformers 4: files and modules use the same names
        return []
    if not isinstance(obj, PreTrainedModel):
        return []
    return list(get_model_conversion_mapping(obj))


def renames(obj: Any) -> Callable[[str], str] | None:
    """How ``obj`` names a value its files name ``key``: the model's renames, in order."""
    transforms = _transforms(obj)
    if not transforms:
        return None
    from transformers.core_model_loading import WeightRenaming

    found = [t for t in transforms if type(t) is WeightRenaming]
    if not found:
        return None

    def rename(key: str) -> str:
        for transform in found:
            key, _ = transform.rename_source_key(key)
        return key

    return rename


def conversions(obj: Any) -> Callable[[Mapping[str, ValueSpec]], list[Conversion]] | None:
    """The values ``obj``'s converters build from stored ones, given the stored names and specs.

    The stored names are grouped as ``from_pretrained`` groups them (sorted as it sorts them,
    renamed by every renaming, then by at most one converter; ``base_model_prefix`` added or
    dropped where the model's names say so), and each group's converter runs once on ``meta``
    tensors of the stored shapes and dtypes: that gives the names, shapes and dtypes of what
    it builds without reading anything.  A group whose converter refuses those (experts of
    different shapes) or whose sources differ in dtype (transformers would cast them; ckptlab
    never casts) is left out: its values stay missing and its sources unused.
    """
    transforms = _transforms(obj)
    if not transforms:
        return None
    from transformers.core_model_loading import WeightConverter

    converters = [t for t in transforms if isinstance(t, WeightConverter)]
    if not converters:
        return None
    return functools.partial(_conversions, obj, transforms)


def _conversions(
    model: Any, transforms: list[Any], stored: Mapping[str, ValueSpec]
) -> list[Conversion]:
    from transformers.core_model_loading import (
        WeightConverter,
        WeightRenaming,
        dot_natural_key,
        rename_source_key,
    )

    renamings = [t for t in transforms if isinstance(t, WeightRenaming)]
    converters = [t for t in transforms if isinstance(t, WeightConverter)]
    by_pattern = {p: c for c in converters for p in c.source_patterns}
    own = model.state_dict(keep_vars=True)
    groups: dict[str, list[tuple[str, str]]] = {}
    """The first name a converter gives -> (source pattern, stored name) of its sources."""
    for key in sorted(stored, key=dot_natural_key):
        renamed, pattern = rename_source_key(
            key, renamings, converters, model.base_model_prefix, own
        )
        if pattern is not None and renamed in own:
            groups.setdefault(renamed, []).append((pattern, key))
    found = []
    for first, entries in groups.items():
        specs = [stored[key] for _, key in entries]
        dtypes = {spec.dtype for spec in specs}
        dtype = getattr(torch, next(iter(dtypes)), None)
        shapes = [spec.shape for spec in specs]
        if (
            len(dtypes) != 1
            or not isinstance(dtype, torch.dtype)
            or any(None in shape for shape in shapes)
        ):
            continue
        converter = by_pattern[entries[0][0]]
        empty = {
            key: torch.empty(shape, dtype=dtype, device="meta")  # type: ignore[arg-type]
            for (_, key), shape in zip(entries, shapes, strict=True)
        }
        try:
            built = _convert(model, converter, first, entries, empty.__getitem__)
        except Exception:  # the converter refuses these tensors: not the model's files
            continue
        found.append(
            Conversion(
                sources=tuple(key for _, key in entries),
                outputs={name: _spec(tensor) for name, tensor in built.items()},
                build=functools.partial(_build, model, converter, first, entries),
                how=f"transformers' {', '.join(map(repr, converter.operations))}",
            )
        )
    return found


def _spec(tensor: torch.Tensor) -> ValueSpec:
    return ValueSpec(shape=tuple(tensor.shape), dtype=_dtype_name(tensor.dtype))


def _convert(
    model: Any,
    converter: Any,
    first: str,
    entries: list[tuple[str, str]],
    tensor_of: Callable[[str], torch.Tensor],
) -> dict[str, torch.Tensor]:
    """What ``converter`` builds from the stored names ``entries``, as ``from_pretrained`` does.

    A copy of the converter per group collects each stored tensor under its source pattern
    (``tensor_of`` gives it when the converter asks), then runs its operations.
    """
    work = copy.deepcopy(converter)
    for pattern, key in entries:
        work.add_tensor(first, key, pattern, functools.partial(tensor_of, key))
    with torch.no_grad():
        built = work.convert(first, model=model, config=model.config)
    return {name: value[0] if isinstance(value, list) else value for name, value in built.items()}


def _build(
    model: Any,
    converter: Any,
    first: str,
    entries: list[tuple[str, str]],
    arrays: list[np.ndarray[Any, Any]],
) -> dict[str, np.ndarray[Any, Any]]:
    """The converted values from the sources' arrays (:class:`Conversion`'s ``build``).

    The list is emptied: the converter then holds the only references to the sources, and
    frees each as it is done with it (``MergeModulelist`` stacks one pattern's tensors at a
    time).
    """
    tensors = {key: from_numpy(array) for (_, key), array in zip(entries, arrays, strict=True)}
    arrays.clear()
    built = _convert(model, converter, first, entries, tensors.pop)
    return {name: to_numpy(tensor.contiguous()) for name, tensor in built.items()}
