"""``ck.KeyMap``: rename rules and transposes for cross-framework restores (public, re-exported).

A key map rewrites what a checkpoint *looks like* before restore matches it; it never changes
the file.  ``Checkpoint.restore(path, key_map=...)``, ``Checkpoint.read`` and
``ck.convert(..., key_map=...)`` accept one.

* Name-based checkpoints (TF1, PyTorch, safetensors, ``ck.Saver``): each rule is a regular
  expression substitution applied, in order, to every stored name; the result is the
  ``Variable.name`` it restores into.
* Object-based checkpoints (TF2, ckptlab): each rule applies to every edge name (local name)
  of the saved object graph, so ``("^_kernel$", "kernel")`` lets a Keras 3 checkpoint meet a
  program that calls the attribute ``kernel``.  A ``renames`` key that is a whole object path
  (``model/dense/weight``, as :meth:`KeyMap.from_near_misses` builds from an object-based
  restore's report) renames only the edge at that path, to its value's last name; the value
  must keep the parent (``model/dense/kernel``).  A ``renames`` key naming nothing in the
  checkpoint read is an ``UnknownPathError`` (a typo would otherwise rename nothing, silently).
* ``transpose``: regular expressions searched in the renamed name (name-based) or the renamed
  object path such as ``model/dense/kernel`` (object-based); matching 2-D values are transposed
  on read (PyTorch ``Linear.weight`` is ``[out, in]``, a Keras/ckptlab kernel ``[in, out]``),
  0-D and 1-D values are left as they are (their transpose is themselves), and a value of rank
  3 or more is refused: reversing all its axes is rarely what is meant (a PyTorch conv weight
  ``[out, in, h, w]`` would become ``[w, h, in, out]``, not Keras' ``[h, w, in, out]``).  For
  those, ``transpose`` maps each pattern to its axes (``{"conv.*kernel$": (2, 3, 1, 0)}``, as
  :func:`numpy.transpose` takes them); the value's rank must equal their number.  The first
  matching pattern applies.  ckptlab never transposes silently: a shape mismatch without a rule
  is a conflict.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from typing import Any

import numpy as np

from ckptlab.core import (
    OPTIMIZER_SLOT,
    Container,
    GraphNode,
    NearMiss,
    NodePath,
    ObjectGraph,
    StoredValue,
    argument_error,
    check_type,
    escape_local_name,
    unescape_local_name,
    value_key,
)
from ckptlab.errors import InvalidArgumentError, RestoreConflictError, UnknownPathError
from ckptlab.storage import StoredCheckpoint

__all__ = ["KeyMap", "check_key_map"]


class KeyMap:
    r"""Rename rules (regex, replacement) and transposes applied to a checkpoint before matching.

    Parameters
    ----------
    rules
        ``{pattern: replacement}`` or ``(pattern, replacement)`` pairs for :func:`re.sub`,
        applied in order.
    transpose
        Patterns (:func:`re.search`) selecting the values to transpose, by renamed name or path:
        2-D values are transposed, 0-D and 1-D ones kept, higher ranks refused; a single string
        is one pattern.  Or a mapping ``{pattern: axes}`` giving the permutation
        (:func:`numpy.transpose`) for any rank.
    renames
        ``{name: new name}`` for exact names, all at once and before ``rules``: a swap
        (``{"a": "b", "b": "a"}``) or a shift (``{"layers.0": "layers.1", "layers.1":
        "layers.2"}``) renames each name once, where rules applied in order would rename
        ``a`` to ``b`` and back.  :meth:`from_near_misses` makes one of these.  For
        object-based checkpoints a key is an edge name or a whole object path
        (``model/dense/weight``: that edge only, kept under its parent).  A key naming
        nothing in the checkpoint read (a typo) is an :class:`ck.UnknownPathError` naming
        it and the closest stored names, raised before anything is read or written.

    Examples
    --------
    >>> import ckptlab as ck
    >>> to_dense = ck.KeyMap({r"\.weight$": "/kernel", r"\.bias$": "/bias"}, transpose=["kernel$"])
    >>> to_dense.rename("fc1.weight"), to_dense.transposes("fc1/kernel")
    ('fc1/kernel', True)
    >>> to_keras = ck.KeyMap(transpose={r"conv\d/kernel$": (2, 3, 1, 0)})  # OIHW -> HWIO
    >>> to_keras.axes_for("conv1/kernel", (8, 3, 5, 5))
    (2, 3, 1, 0)
    """

    def __init__(
        self,
        rules: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        *,
        transpose: Iterable[str] | Mapping[str, Sequence[int]] = (),
        renames: Mapping[str, str] | None = None,
    ) -> None:
        self.rules = tuple((_compiled(p, r), r) for p, r in _rule_pairs(rules))
        self.renames: dict[str, str] = _renames(renames)
        chosen = _transposes(transpose)
        self.transpose = tuple(_compiled(p) for p, _ in chosen)
        self.axes = tuple(a for _, a in chosen)
        """Per ``transpose`` pattern: its axes, or ``None`` (2-D values transposed)."""

    @classmethod
    def from_near_misses(cls, misses: Iterable[NearMiss]) -> KeyMap:
        """A key map applying exactly the given :func:`ckptlab.near_misses` suggestions.

        Parameters
        ----------
        misses
            :class:`ck.NearMiss` suggestions (a stored and a wanted name each), as
            ``ck.near_misses`` returns them.

        Returns
        -------
        KeyMap
            The pairs as exact ``renames`` (each stored name renamed once, whatever the
            other pairs rename); one transpose pattern selecting the pairs that need one.
            Pairs of optimizer slot values (``.../.OPTIMIZER_SLOT/...``, in an object-based
            restore's report) rename nothing themselves: a slot value follows its variable,
            renamed by the variable's pair (and transposed with it when the pair says so).

        Examples
        --------
        >>> spec = ck.core.ValueSpec
        >>> misses = ck.near_misses(
        ...     {"fc.weight": spec(shape=(3, 4), dtype="float32")},
        ...     {"fc/kernel": spec(shape=(4, 3), dtype="float32")},
        ... )
        >>> key_map = ck.KeyMap.from_near_misses(misses)
        >>> key_map.rename("fc.weight"), key_map.transposes("fc/kernel")
        ('fc/kernel', True)
        """
        expected = "ck.NearMiss suggestions (what ck.near_misses returns)"
        example = "ck.KeyMap.from_near_misses(ck.near_misses(stored, wanted))"
        check_type(misses, Iterable, "misses", expected, example)
        misses = list(misses)
        for miss in misses:
            check_type(miss, NearMiss, "misses", expected, example)
        flipped = [re.escape(m.wanted) for m in misses if m.transpose]
        slot = f"/{OPTIMIZER_SLOT}/"  # a slot value follows its variable: no rename of its own
        return cls(
            renames={m.stored: m.wanted for m in misses if slot not in m.stored},
            transpose=[f"^(?:{'|'.join(flipped)})$"] if flipped else [],
        )

    def rename(self, name: str) -> str:
        r"""Apply every rule, in order, to one name.

        Parameters
        ----------
        name
            A stored key or object path.

        Returns
        -------
        str
            The renamed name (``name`` itself when no rule matches).

        Examples
        --------
        >>> ck.KeyMap({r"^module\.": ""}).rename("module.encoder.weight")
        'encoder.weight'
        """
        return self._ruled(self.renames.get(name, name))

    def _rename_edge(self, parent: str, name: str) -> str:
        """The new local name of one edge of an object graph (object-based checkpoints).

        A ``renames`` entry keyed by the edge's whole object path (as :meth:`from_near_misses`
        builds from an object-based restore's report) renames it to the last name of its
        value; otherwise ``renames`` and the rules apply to the local name, as :meth:`rename`.

        Parameters
        ----------
        parent
            The escaped object path of the edge's parent (``""`` for the root).
        name
            The edge's local name.

        Returns
        -------
        str
            The edge's new local name.

        Raises
        ------
        InvalidArgumentError
            A whole-path rename moves the edge to another parent.

        Examples
        --------
        >>> ck.KeyMap(renames={"model/dense/weight": "model/dense/kernel"})._rename_edge(
        ...     "model/dense", "weight"
        ... )
        'kernel'
        """
        path = f"{parent}/{escape_local_name(name)}" if parent else escape_local_name(name)
        if path == name or path not in self.renames:
            return self.rename(name)
        target = self.renames[path]
        head, _, edge = target.rpartition("/")
        if head != parent or not re.fullmatch(r"(?:[^.]|\.\.|\.S)+", edge):
            raise InvalidArgumentError(
                f"KeyMap renames {path!r} to {target!r}: in an object-based checkpoint a "
                f"whole-path rename renames the last edge only, so expected a path under "
                f"{parent or 'the root'!r} ending in one escaped local name, found "
                f"{target!r}. Rename the edges that differ one at a time instead, e.g. "
                "ck.KeyMap({'^enc$': 'encoder'})."
            )
        return self._ruled(unescape_local_name(edge))

    def _ruled(self, name: str) -> str:
        """``name`` with every rule applied, in order."""
        for pattern, replacement in self.rules:
            name = pattern.sub(replacement, name)
        return name

    def transposes(self, name: str) -> bool:
        """Whether a ``transpose`` pattern selects the value at (renamed) ``name``.

        Parameters
        ----------
        name
            A renamed key or object path.

        Returns
        -------
        bool

        Examples
        --------
        >>> ck.KeyMap(transpose=["kernel$"]).transposes("dense/kernel")
        True
        """
        return any(p.search(name) for p in self.transpose)

    def axes_for(
        self, name: str, shape: tuple[int, ...], where: str = ""
    ) -> tuple[int, ...] | None:
        """The axes the value at (renamed) ``name`` is permuted by on read (``None``: as is).

        Parameters
        ----------
        name
            A renamed key or object path.
        shape
            The stored value's shape.
        where
            Where the value comes from, for the error message.

        Returns
        -------
        tuple of int or None
            The permutation, as :func:`numpy.transpose` takes it, or ``None``.

        Raises
        ------
        RestoreConflictError
            A pattern selects a value of rank 3 or more without giving its axes, or gives axes
            for another rank.

        Examples
        --------
        >>> ck.KeyMap(transpose=["kernel$"]).axes_for("dense/kernel", (4, 3))
        (1, 0)
        """
        for pattern, axes in zip(self.transpose, self.axes, strict=True):
            if not pattern.search(name):
                continue
            if axes is None and len(shape) <= 2:
                return (1, 0) if len(shape) == 2 else None
            if axes is not None and len(axes) == len(shape):
                return axes
            raise RestoreConflictError(_rank_message(pattern.pattern, axes, name, shape, where))
        return None

    def apply(self, source: StoredCheckpoint) -> StoredCheckpoint:
        r"""A read-only view of ``source`` as this key map rewrites it.

        ``Checkpoint.restore(path, key_map=...)`` calls it; readers can too.

        Parameters
        ----------
        source
            An opened checkpoint (:func:`ckptlab.storage.open_path`).

        Returns
        -------
        StoredCheckpoint
            Renamed keys (and graph edges), values transposed as they are read.

        Raises
        ------
        UnknownPathError
            A ``renames`` key names nothing in ``source``: no stored name (name-based), no
            edge name, whole object path of an edge or stored key (object-based).

        Examples
        --------
        >>> import tempfile
        >>> path = ck.Saver({"fc.weight": ck.Variable(np.ones((3, 4)))}).save(tempfile.mkdtemp())
        >>> key_map = ck.KeyMap({r"\.weight$": "/kernel"}, transpose=["kernel$"])
        >>> mapped = key_map.apply(ck.storage.open_path(path))
        >>> mapped.read("fc/kernel").shape
        (4, 3)
        """
        return MappedCheckpoint(source, self)

    def __repr__(self) -> str:
        rules = ", ".join(f"{p.pattern!r}: {r!r}" for p, r in self.rules)
        renames = f", renames={self.renames}" if self.renames else ""
        if any(a is not None for a in self.axes):
            chosen = {p.pattern: a for p, a in zip(self.transpose, self.axes, strict=True)}
            return f"ck.KeyMap({{{rules}}}, transpose={chosen}{renames})"
        patterns = [p.pattern for p in self.transpose]
        return f"ck.KeyMap({{{rules}}}, transpose={patterns}{renames})"


def check_key_map(key_map: KeyMap | None) -> None:
    """Refuse a ``key_map=`` argument that is not a :class:`KeyMap` (a dict of rules, say)."""
    example = r"key_map=ck.KeyMap({r'^module\.': ''})"
    check_type(key_map, (KeyMap, type(None)), "key_map", "a ck.KeyMap or None", example)


def _rule_pairs(rules: object) -> list[tuple[str, str]]:
    """``rules`` (a mapping or pairs) as ``(pattern, replacement)`` pairs of strings."""
    pairs = list(rules.items()) if isinstance(rules, Mapping) else rules
    if isinstance(pairs, Iterable) and not isinstance(pairs, str):
        pairs = list(pairs)
        if all(
            isinstance(pair, tuple | list)
            and len(pair) == 2
            and all(isinstance(x, str) for x in pair)
            for pair in pairs
        ):
            return [(pattern, replacement) for pattern, replacement in pairs]
    raise argument_error(
        "rules",
        "a dict {pattern: replacement} or (pattern, replacement) pairs, all str",
        rules,
        r"ck.KeyMap({r'\.weight$': '/kernel'})",
    )


def _transposes(transpose: object) -> list[tuple[str, tuple[int, ...] | None]]:
    """``transpose`` as (pattern, axes or ``None``) pairs; a single string is one pattern.

    One pattern, as ``run_restore_ops(only="model")`` is one path: a string iterated per
    character gave the pattern ``$``, which selects every value.
    """
    if isinstance(transpose, str):
        transpose = [transpose]
    chosen: list[tuple[str, tuple[int, ...] | None]] = []
    if isinstance(transpose, Mapping):
        chosen = [(p, _permutation(p, a)) for p, a in transpose.items()]
    elif isinstance(transpose, Iterable):
        chosen = [(p, None) for p in transpose]
    if not isinstance(transpose, Iterable) or not all(isinstance(p, str) for p, _ in chosen):
        raise argument_error(
            "transpose",
            "a pattern, a list of patterns (str) or a dict {pattern: axes}",
            transpose,
            "transpose=['kernel$'] or transpose={'conv/kernel$': (2, 3, 1, 0)}",
        )
    return chosen


def _renames(renames: object) -> dict[str, str]:
    """``renames`` as a dict of strings (``None``: none)."""
    if renames is None:
        return {}
    if isinstance(renames, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in renames.items()
    ):
        return dict(renames)
    raise argument_error(
        "renames",
        "a dict {name: new name}, all str",
        renames,
        "renames={'encoder.0.weight': 'encoder.1.weight'}",
    )


def _compiled(pattern: str, replacement: str | None = None) -> re.Pattern[str]:
    """``pattern`` compiled, and ``replacement`` checked against it; errors name both."""
    try:
        compiled = re.compile(pattern)
        if replacement is not None:
            compiled.sub(replacement, "")  # checks group references such as \\1
    except re.error as error:
        shown = pattern if replacement is None else f"{pattern} -> {replacement}"
        raise InvalidArgumentError(
            f"KeyMap rule {shown!r} is not a valid regular expression ({error}); write it in "
            "Python's re syntax, e.g. r'^module\\.' -> '' or r'(.*)\\.weight$' -> r'\\1/kernel'."
        ) from None
    return compiled


def _permutation(pattern: str, axes: Sequence[int]) -> tuple[int, ...]:
    try:
        chosen = tuple(int(a) for a in axes)
    except (TypeError, ValueError):  # not a sequence of integers
        chosen = (-1,)
    if sorted(chosen) != list(range(len(chosen))):
        raise InvalidArgumentError(
            f"KeyMap transpose {{{pattern!r}: {axes!r}}}: axes must be a permutation of 0..n-1 "
            "(as numpy.transpose takes them), e.g. (2, 3, 1, 0) for [out, in, h, w] -> "
            "[h, w, in, out]."
        )
    return chosen


def _rank_message(
    pattern: str, axes: tuple[int, ...] | None, name: str, shape: tuple[int, ...], where: str
) -> str:
    found = f"KeyMap transpose pattern {pattern!r} selects {name!r}{where}, of shape {list(shape)}"
    if axes is not None:
        return (
            f"{found}; its axes {axes} are for {len(axes)}-D values. Give axes for "
            f"{len(shape)}-D values in another pattern, or make this one select fewer values."
        )
    return (
        f"{found}: a transpose pattern transposes 2-D values only, and reversing every axis of "
        f"a {len(shape)}-D value is rarely right (PyTorch's conv [out, in, h, w] would become "
        f"[w, h, in, out], not Keras' [h, w, in, out]). Give the axes, e.g. "
        f"ck.KeyMap(..., transpose={{{pattern!r}: (2, 3, 1, 0)}}), or make the pattern select "
        "2-D values only."
    )


class MappedCheckpoint(StoredCheckpoint):
    """A checkpoint seen through a :class:`KeyMap`: renamed keys or edges, transposed values.

    A name-based source's non-tensor values (a ``torch.save`` file's ``literals``: optimizer
    hyperparameters, ``step``) and the containers it flattened are renamed with its values, so
    the whole file is seen under the new names.
    """

    def __init__(self, source: StoredCheckpoint, key_map: KeyMap) -> None:
        self.source = source
        self.key_map = key_map
        self.origin: dict[str, str] = {}
        """Mapped key -> the key in ``source``."""
        self.permuted: dict[str, tuple[int, ...]] = {}
        """Mapped key -> the axes its value is permuted by on read."""
        document = source.document
        if key_map.renames:
            _check_renames(source, key_map.renames)
        if document.kind == "name":
            values = self._rename_values(document.values, key_map)
            graph = None
        else:
            assert document.graph is not None
            graph, keys = _rename_graph(document.graph, key_map, source.display_path)
            values = self._transpose_values(document.values, keys, graph, key_map)
        super().__init__(
            source.store, source.path, dataclasses.replace(document, values=values, graph=graph)
        )

    @cached_property
    def literals(self) -> dict[str, Any]:
        """The source's non-tensor values by renamed name (a name-based source's only)."""
        found: dict[str, Any] = getattr(self.source, "literals", {})
        if self.document.kind != "name":
            return found
        return self._renamed(found, dict(self.origin))

    @cached_property
    def containers(self) -> dict[str, Container]:
        """The containers the source flattened (a torch file's), by renamed name."""
        found: dict[str, Container] = getattr(self.source, "containers", {})
        if self.document.kind != "name":
            return found
        return self._renamed(found, {})

    def _renamed(self, named: Mapping[str, Any], taken: dict[str, str]) -> dict[str, Any]:
        """``named`` under the names the key map gives; ``taken``: new name -> old, so far."""
        renamed = {}
        for key, value in named.items():
            new = self.key_map.rename(key)
            if new in taken:
                raise InvalidArgumentError(
                    f"KeyMap renames both {taken[new]!r} and {key!r} to {new!r}; make the rules "
                    "more specific."
                )
            taken[new] = key
            renamed[new] = value
        return renamed

    def _rename_values(
        self, values: Mapping[str, StoredValue], key_map: KeyMap
    ) -> dict[str, StoredValue]:
        where = f" in {self.source.display_path}"
        renamed: dict[str, StoredValue] = {}
        for new, value in self._renamed(values, self.origin).items():
            axes = key_map.axes_for(new, value.shape, where)
            renamed[new] = self._permute(dataclasses.replace(value, key=new), axes)
        return renamed

    def _transpose_values(
        self,
        values: Mapping[str, StoredValue],
        keys: Mapping[str, str],
        graph: ObjectGraph,
        key_map: KeyMap,
    ) -> dict[str, StoredValue]:
        """``values`` under their ``keys`` after renaming, transposed where a rule says so."""
        self.origin = {keys.get(key, key): key for key in values}
        renamed = {
            new: dataclasses.replace(values[old], key=new) if new != old else values[old]
            for new, old in self.origin.items()
        }
        where = f" in {self.source.display_path}"
        axes: dict[str, tuple[int, ...] | None] = {}
        for node, path in zip(graph.nodes, graph.paths(), strict=True):
            key = node.value_key
            if path is None or key is None or key not in renamed:
                continue
            if key_map.transposes(path.prefix):
                axes[key] = key_map.axes_for(path.prefix, renamed[key].shape, where)
        return {key: self._permute(value, axes.get(key)) for key, value in renamed.items()}

    def _permute(self, value: StoredValue, axes: tuple[int, ...] | None) -> StoredValue:
        if axes is None:
            return value
        self.permuted[value.key] = axes
        return dataclasses.replace(value, shape=tuple(value.shape[a] for a in axes))

    def read_arrays(self, keys: Iterable[str]) -> dict[str, np.ndarray[Any, Any]]:
        """Values of ``keys``, verified, from the underlying checkpoint (transposed by the rules).

        Every read goes through here: the renamed document has no storage layout of its own,
        so :meth:`open_values` gives the generic reader, which calls this.
        """
        wanted = [self.stored(key).key for key in dict.fromkeys(keys)]  # unknown keys raise
        arrays = self.source.read_many([self.origin[key] for key in wanted])
        out = {}
        for key in wanted:
            array = arrays[self.origin[key]]
            if key in self.permuted:
                array = np.ascontiguousarray(array.transpose(self.permuted[key]))
            out[key] = array
        return out


def _rename_graph(
    graph: ObjectGraph, key_map: KeyMap, where: str
) -> tuple[ObjectGraph, dict[str, str]]:
    """``graph`` with its edges renamed, and each value's new key (old key -> new key).

    Keys name an object by its first path (FORMAT.md section 3), so a renamed edge renames the
    keys below it; a key that does not follow its old path is kept as it is.
    """
    nodes: list[GraphNode] = []
    for node_id, (node, path) in enumerate(zip(graph.nodes, graph.paths(), strict=True)):
        children: dict[str, int] = {}
        taken: dict[str, str] = {}
        # new edge name -> the edge renamed to it
        for name, child in node.children.items():
            new = key_map.rename(name) if path is None else key_map._rename_edge(path.prefix, name)
            if new in children and children[new] != child:
                raise InvalidArgumentError(
                    f"KeyMap renames both edges {taken[new]!r} and {name!r} of "
                    f"{_parent(path, node_id)} to {new!r} in {where}; expected one edge per "
                    "name. Rename only one of them, or the other too (a swap: "
                    f"renames={{{taken[new]!r}: {name!r}, {name!r}: {taken[new]!r}}})."
                )
            children[new] = child
            taken.setdefault(new, name)
        nodes.append(
            dataclasses.replace(node, children=children)
            if children != dict(node.children)
            else node
        )
    renamed = ObjectGraph(nodes=tuple(nodes), source=graph.source)
    keys: dict[str, str] = {}
    for node_id, (before, after) in enumerate(zip(graph.paths(), renamed.paths(), strict=True)):
        if before is None or after is None or before.prefix == after.prefix:
            continue
        attributes = []
        for attribute in nodes[node_id].attributes:
            if attribute.key == value_key(before.prefix, attribute.name):
                keys[attribute.key] = value_key(after.prefix, attribute.name)
                attribute = dataclasses.replace(attribute, key=keys[attribute.key])
            attributes.append(attribute)
        nodes[node_id] = dataclasses.replace(nodes[node_id], attributes=tuple(attributes))
    if not keys:
        return renamed, keys
    return ObjectGraph(nodes=tuple(nodes), source=graph.source), keys


def _check_renames(source: StoredCheckpoint, renames: Mapping[str, str]) -> None:
    """Refuse ``renames`` keys that name nothing ``source`` holds, before anything is read.

    A name-based checkpoint's keys are its stored names (values, and a torch file's non-tensor
    entries and containers); an object-based one's are its edge names, the whole object paths
    of its edges, and its stored keys.

    Raises
    ------
    UnknownPathError
        Some key names nothing; the message lists every such key and the closest names.
    """
    document = source.document
    names: set[str] = set(document.values)
    if document.kind == "name":
        names.update(getattr(source, "containers", {}))
    else:
        assert document.graph is not None
        for node, path in zip(document.graph.nodes, document.graph.paths(), strict=True):
            names.update(node.children)
            if path is not None:
                above = f"{path.prefix}/" if path.prefix else ""
                names.update(above + escape_local_name(name) for name in node.children)
    unknown = [key for key in renames if key not in names]
    if unknown and document.kind == "name":  # read on first use (a DCP's): only when needed
        literals = getattr(source, "literals", {})
        unknown = [key for key in unknown if key not in literals]
        names.update(literals)
    if not unknown:
        return
    closest = {key: difflib.get_close_matches(key, names, n=3) for key in unknown[:20]}
    kind = (
        "a stored name"
        if document.kind == "name"
        else "an edge name, a whole object path or a stored key"
    )
    raise UnknownPathError(
        f"KeyMap renames {unknown[:20]}{' ...' if len(unknown) > 20 else ''}, which name "
        f"nothing in {source.display_path}: expected each renames key to be {kind} of it; "
        f"closest stored names: {closest}. Correct those entries, or remove them from "
        "renames."
        + (
            " An optimizer slot value follows its variable: rename the variable's path."
            if any(f"/{OPTIMIZER_SLOT}/" in key for key in unknown)
            else ""
        )
    )


def _parent(path: NodePath | None, node_id: int) -> str:
    """The object path of a parent node, for messages (``'model/dense'``, ``the root``)."""
    if path is None:
        return f"node {node_id}"
    return repr(path.prefix) if path.prefix else "the root"
