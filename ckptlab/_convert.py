"""``ck.convert``: write any checkpoint ckptlab reads as ckptlab or safetensors (public).

TF2 object-based checkpoints keep their object graph (keys as in the file); flat name spaces
(TF1, PyTorch, safetensors, Hugging Face, DCP, Keras, Orbax, GGUF) become name-based
checkpoints that ``Checkpoint.restore`` matches by ``Variable.name``.  Non-tensor values
(epochs, hyper-parameters) are not values and are not converted.  ``format="safetensors"``
writes the values as safetensors under their keys, sharded with a Hugging Face index JSON
above ``max_shard_size``; with ``root="model"`` an object-based checkpoint's values under that
object are named by their object paths instead (``encoder.0.weight``: the names of a PyTorch
``state_dict()``, docs/formats.md "Exporting safetensors").
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from typing import Any, Literal

from ckptlab._keymap import KeyMap, check_key_map
from ckptlab._reader import open_path
from ckptlab._version import __version__
from ckptlab.core import ITEMSIZE, VARIABLE_VALUE, ObjectGraph, argument_error, check_type
from ckptlab.errors import InvalidArgumentError, UnknownPathError, UnsupportedFormatError
from ckptlab.storage import (
    SAFETENSORS_DTYPES,
    StoredCheckpoint,
    WriteOptions,
    checked_options,
    parse_size,
    resolve,
    write_checkpoint,
    write_safetensors,
)

__all__ = ["convert"]


def convert(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    key_map: KeyMap | None = None,
    skip_unsupported: bool = False,
    options: WriteOptions | None = None,
    format: Literal["ckptlab", "safetensors"] = "ckptlab",
    max_shard_size: int | str | None = None,
    root: str | None = None,
) -> str:
    """Write the checkpoint at ``src`` (any format ckptlab reads) as ckptlab or safetensors.

    Parameters
    ----------
    src
        Any checkpoint ckptlab opens: a TensorFlow prefix, ``.index`` or data file, a TF1 V1
        file, a ``torch.save`` or safetensors file, a Hugging Face model directory, a PyTorch
        Distributed Checkpoint, a Keras 3 ``.weights.h5``/``.keras`` file, an Orbax checkpoint,
        a GGUF file, or a ckptlab checkpoint (a directory resolves to its latest one).
    dst
        Where to write.  For ``format="ckptlab"`` exactly this path, like ``Checkpoint.write``.
        For ``"safetensors"`` a directory that gets ``model.safetensors`` (or shards and
        ``model.safetensors.index.json``), or a path ending in ``.safetensors`` for one file;
        it must not exist.
    key_map
        Renames (and transposes) applied while converting.
    skip_unsupported
        Leave out values whose dtype the target format cannot store (strings, float8, int4 for
        ckptlab; strings, int4, complex128 for safetensors) instead of raising.
    options
        Write options (durability, progress).
    format
        ``"ckptlab"`` (default) or ``"safetensors"``: keys are the source's names, the source's
        string metadata is kept in ``__metadata__`` (``"format": "pt"`` is added when absent,
        which ``transformers`` requires).
    max_shard_size
        For ``"safetensors"``: bytes per shard (an int, or ``"5GB"``, ``"500MiB"``); above it
        the values are split into shards with an HF-style index.  ``None``: one file.
    root
        For ``"safetensors"`` from an object-based checkpoint (ckptlab, TF2): export only the
        values of the object at this dotted path (``"model"``, ``"model.encoder"``; ``""`` is
        the root), each named by its dotted object path below it, e.g.
        ``transformer.h.0.attn.c_attn.weight``: the names ``model.state_dict()`` has, so
        ``safetensors.torch.load_model`` and ``transformers``' ``from_pretrained`` read the
        export.  A tensor reachable under several names (tied weights) is written once, under
        its first name in ``state_dict()`` order.  Optimizer slots and Python state are left
        out.

    Returns
    -------
    str
        ``dst``.

    Raises
    ------
    InvalidArgumentError
        An argument is not what it must be (checked before anything is read or written).
    UnsupportedFormatError
        A value has a dtype the target format cannot store and ``skip_unsupported`` is false.
    StorageExistsError
        ``format="safetensors"`` and something is at ``dst`` already.

    Examples
    --------
    >>> import ckptlab as ck, tempfile, os
    >>> directory = tempfile.mkdtemp()
    >>> src = ck.Checkpoint(w=ck.Variable([1.0])).write(os.path.join(directory, "a"))
    >>> ck.list_variables(ck.convert(src, os.path.join(directory, "b")))
    [('w/.ATTRIBUTES/VARIABLE_VALUE', [1])]
    """
    options = checked_options(options, WriteOptions)
    check_key_map(key_map)
    if format not in ("ckptlab", "safetensors"):
        raise argument_error("format", "'ckptlab' or 'safetensors'", format, "format='safetensors'")
    if format != "safetensors" and (max_shard_size is not None or root is not None):
        raise InvalidArgumentError(
            "max_shard_size and root apply to format='safetensors' only; pass "
            "format='safetensors' with them, or leave them out to write a ckptlab checkpoint."
        )
    check_type(root, (str, type(None)), "root", "a dotted path (str) or None", "root='model'")
    if max_shard_size is not None:
        parse_size(max_shard_size)  # a size that is not one is refused before anything is read
    original = open_path(src)
    source = key_map.apply(original) if key_map is not None else original
    document = source.document
    storable = SAFETENSORS_DTYPES if format == "safetensors" else ITEMSIZE
    refused = {k for k, v in document.values.items() if v.dtype not in storable}
    if refused and not skip_unsupported:
        shown = ", ".join(f"{k!r} ({document.values[k].dtype})" for k in sorted(refused)[:10])
        raise UnsupportedFormatError(
            f"{source.display_path} holds {len(refused)} value(s) whose dtype {format} "
            f"cannot store: {shown}. Pass skip_unsupported=True to leave them out."
        )
    if format == "safetensors":
        names = (
            {k: k for k in document.values}
            if root is None
            else _names_under(document.graph, root, source.display_path)
        )
        store, path = resolve(dst)
        write_safetensors(
            store,
            path,
            source,
            {name: key for name, key in names.items() if key not in refused},
            max_shard_size=max_shard_size,
            metadata=_string_metadata(original),
            index_metadata=_index_metadata(original),
            durable=options.durable,
        )
        return os.fspath(dst)
    graph = document.graph
    if graph is not None and refused:
        graph = _without(graph, refused)
    keys = [k for k in document.values if k not in refused]
    arrays = source.read_many(keys)  # one reader for all (write_checkpoint holds them all)
    values = [(key, arrays[key]) for key in keys]
    store, path = resolve(dst)
    write_checkpoint(
        store,
        path,
        values,
        kind=document.kind,
        graph=graph,
        writer=_writer(source.display_path, document.writer),
        options=options,
    )
    return os.fspath(dst)


def _names_under(graph: ObjectGraph | None, root: str, where: str) -> dict[str, str]:
    """Dotted object paths below the object at ``root`` -> the keys of their values.

    Depth first in the graph's child order, each object's own children before deeper ones:
    the order of ``torch.nn.Module.state_dict()``, so a tied tensor gets the name PyTorch and
    Hugging Face keep (``transformer.wte.weight``, not ``lm_head.weight``).
    """
    if graph is None:
        raise InvalidArgumentError(
            f"root={root!r} names values by their object paths, but {where} is name-based: its "
            "keys are names already. Leave root out (rename with key_map if needed)."
        )
    node = 0
    steps = root.split(".") if root else []
    for depth, step in enumerate(steps):
        child = graph.nodes[node].children.get(step)
        if child is None:
            here = ".".join(["(root)", *steps[:depth]])
            known = ", ".join(repr(c) for c in sorted(graph.nodes[node].children)[:20])
            raise UnknownPathError(
                f"{where} has no object {root!r}: {here} has no child {step!r} (its children: "
                f"{known or 'none'}). Pass root as a dotted path of local names, e.g. 'model'."
            )
        node = child
    names: dict[str, str] = {}
    seen = {node}
    stack: list[tuple[int, str]] = [(node, "")]
    while stack:
        node_id, name = stack.pop()
        values = [a.key for a in graph.nodes[node_id].attributes if a.name == VARIABLE_VALUE]
        if name and values:
            names[name] = values[0]
        below = []
        for local, child in graph.nodes[node_id].children.items():
            if child not in seen:
                seen.add(child)
                below.append((child, f"{name}.{local}" if name else local))
        stack.extend(reversed(below))
    return names


def _without(graph: ObjectGraph, keys: Iterable[str]) -> ObjectGraph:
    dropped = set(keys)
    return ObjectGraph(
        nodes=tuple(
            dataclasses.replace(
                node, attributes=tuple(a for a in node.attributes if a.key not in dropped)
            )
            for node in graph.nodes
        )
    )


def _string_metadata(source: StoredCheckpoint) -> dict[str, str]:
    """The source's string metadata for ``__metadata__`` (safetensors headers, GGUF strings)."""
    shards = getattr(source, "shard_metadata", None)
    found = getattr(source, "metadata", None)
    if isinstance(shards, dict) and shards:
        found = next(iter(shards.values()))
    kept = {}
    if isinstance(found, dict):
        kept = {k: v for k, v in found.items() if isinstance(k, str) and isinstance(v, str)}
    return {"format": "pt", **kept}


def _index_metadata(source: StoredCheckpoint) -> dict[str, Any]:
    """The metadata of a Hugging Face index being re-sharded (its ``total_size`` is rewritten)."""
    if getattr(source, "shard_metadata", None) is None:
        return {}
    found = getattr(source, "metadata", {})
    return {k: v for k, v in found.items() if k != "total_size"} if isinstance(found, dict) else {}


def _writer(source: str, original: Any) -> dict[str, Any]:
    info = {"library": "ckptlab", "version": __version__, "converted_from": source}
    if isinstance(original, dict) and "format" in original:
        info["source_format"] = original["format"]
    return info
