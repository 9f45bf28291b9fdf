"""``ck.convert``: write any checkpoint ckptlab reads as a ckptlab checkpoint (public, re-exported).

TF2 object-based checkpoints keep their object graph (keys as in the file); flat name spaces
(TF1, PyTorch, safetensors) become name-based checkpoints that ``Checkpoint.restore`` matches
by ``Variable.name``.  PyTorch non-tensor values (epochs, hyper-parameters) are not values and
are not converted.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from typing import Any

from ckptlab._keymap import KeyMap
from ckptlab._reader import open_path
from ckptlab._version import __version__
from ckptlab.core import ITEMSIZE, ObjectGraph
from ckptlab.errors import UnsupportedFormatError
from ckptlab.storage import WriteOptions, resolve, write_checkpoint

__all__ = ["convert"]


def convert(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    key_map: KeyMap | None = None,
    skip_unsupported: bool = False,
    options: WriteOptions | None = None,
) -> str:
    """Write the checkpoint at ``src`` (any format ckptlab reads) as a ckptlab checkpoint.

    Parameters
    ----------
    src
        A TensorFlow prefix, ``.index`` or data file, a TF1 V1 file, a ``torch.save`` file, a
        safetensors file, or a ckptlab checkpoint (a directory resolves to its latest one).
    dst
        Where to write (exactly this path, like ``Checkpoint.write``).
    key_map
        Renames (and transposes) applied while converting.
    skip_unsupported
        Leave out values whose dtype ckptlab's format cannot store (strings, float8, int4)
        instead of raising.
    options
        Write options (durability, progress).

    Returns
    -------
    str
        ``dst``.

    Raises
    ------
    UnsupportedFormatError
        A value has a dtype ckptlab cannot store and ``skip_unsupported`` is false.

    Examples
    --------
    >>> import ckptlab as ck, tempfile, os
    >>> directory = tempfile.mkdtemp()
    >>> src = ck.Checkpoint(w=ck.Variable([1.0])).write(os.path.join(directory, "a"))
    >>> ck.list_variables(ck.convert(src, os.path.join(directory, "b")))
    [('w/.ATTRIBUTES/VARIABLE_VALUE', [1])]
    """
    source = open_path(src)
    if key_map is not None:
        source = key_map.apply(source)
    document = source.document
    refused = [k for k, v in document.values.items() if v.dtype not in ITEMSIZE]
    if refused and not skip_unsupported:
        shown = ", ".join(f"{k!r} ({document.values[k].dtype})" for k in refused[:10])
        raise UnsupportedFormatError(
            f"{source.display_path} holds {len(refused)} value(s) whose dtype ckptlab's format "
            f"cannot store: {shown}. Pass skip_unsupported=True to leave them out."
        )
    graph = document.graph
    if graph is not None and refused:
        graph = _without(graph, set(refused))
    keys = [k for k in document.values if k not in set(refused)]
    values = [(key, source.read(key)) for key in keys]
    store, path = resolve(dst)
    write_checkpoint(
        store,
        path,
        values,
        kind=document.kind,
        graph=graph,
        writer=_writer(source.display_path, document.writer),
        options=options or WriteOptions(),
    )
    return os.fspath(dst)


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


def _writer(source: str, original: Any) -> dict[str, Any]:
    info = {"library": "ckptlab", "version": __version__, "converted_from": source}
    if isinstance(original, dict) and "format" in original:
        info["source_format"] = original["format"]
    return info
