"""Name-based restores: values match stored keys by name, not by object path (internal).

A ``ck.Saver`` checkpoint, a ``torch.save(model.state_dict())`` file, a safetensors file or a
Hugging Face model directory stores values under flat names.  A program value's names are:

* for a ``ck.Variable``, its ``Variable.name`` (TF1's ``Saver`` semantics, docs/semantics.md
  S77);
* for a framework's value (a torch parameter), the path from the restore's root, with local
  names joined by ``/`` between ckptlab containers and by the framework's own separator inside
  the framework's object tree, so ``ck.Checkpoint(root=model)`` names ``encoder.0.weight`` and
  ``ck.Checkpoint(model=model)`` names ``model/encoder.0.weight`` (the key the torch reader
  gives ``torch.save({"model": model.state_dict()})``).  A value reachable under several names
  (tied weights) has them all, and any one stored key fills it.

Stored names written through ``DataParallel``/``DistributedDataParallel`` (``module.``) or
``torch.compile`` (``_orig_mod.``) match the bare names too.  Variables attached later below a
restored object are restored when attached, by name.
"""

from __future__ import annotations

import difflib
import functools
import itertools
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from ckptlab.core import (
    Assignment,
    MatchReport,
    MatchState,
    NestedValues,
    NodePath,
    ProgramGraph,
    ReportEntry,
    ValueSpec,
    gc_paused,
)
from ckptlab.engine import _execute
from ckptlab.engine._adapter import Conversion, by_hook, require_adapter
from ckptlab.engine._coordinator import Revision, conflict_error
from ckptlab.engine._load import Built, Fetch, Load, commit, fetch
from ckptlab.engine._program import Program
from ckptlab.errors import UnknownPathError
from ckptlab.storage import StoredCheckpoint

__all__ = ["NameBasedRestore", "layout_hint", "value_names"]

WRAPPER_SEGMENTS = frozenset({"module", "_orig_mod"})
"""Local names that DataParallel/DDP (``module``) and ``torch.compile`` (``_orig_mod``) add."""


def _separator(obj: Any) -> str:
    """How names join below ``obj``: an adapter's ``separator`` attribute or method, or ``/``."""
    separator = getattr(require_adapter(obj), "separator", "/")
    return str(separator(obj) if callable(separator) else separator)


def node_names(
    program: ProgramGraph[Any], base: Sequence[str] = ("",), dotted_root: bool = False
) -> tuple[dict[int, list[str]], dict[int, str]]:
    """Every name of every reachable node, and the separator its children join with.

    ``base`` are the names of the program's root and ``dotted_root`` whether its children
    join with the framework's separator (the root sits inside a framework's tree).
    """
    children = program.graph.child_table()  # the graph's tables: no node object per value
    names: dict[int, list[str]] = {0: list(base)}
    joins: dict[int, str] = {0: _separator(program.objects[0]) if dotted_root else "/"}
    positions: dict[str, tuple[int, ...]] = dict.fromkeys(base, ())
    """Name -> the child positions along its path: sorting by them is the framework's own
    depth-first order (torch's ``state_dict()``), which decides a shared value's first name."""
    order = [0]
    shared: list[int] = []
    for node_id in order:
        parent = program.objects[node_id]
        join = joins[node_id]
        for position, (local, child_id) in enumerate(children[node_id].items()):
            child = program.objects[child_id]
            here = []
            for p in names[node_id]:
                for name in local_names(parent, local, child):
                    full = f"{p}{join}{name}" if p else name
                    positions.setdefault(full, (*positions[p], position))
                    here.append(full)
            if child_id not in names:
                names[child_id] = here
                joins[child_id] = _join_below(parent, child)
                order.append(child_id)
            else:  # a shared object: one more name
                names[child_id] += [h for h in here if h not in names[child_id]]
                shared.append(child_id)
    for node_id in shared:
        names[node_id].sort(key=positions.__getitem__)
    for node_id in order:
        _name_slots(program, node_id, names, joins[node_id])
    return names, joins


def local_names(parent: Any, name: str, child: Any) -> list[str]:
    """``name``, then the names the parent's framework gives ``child`` in its own files.

    An adapter may define ``aliases(parent, name, child)``: Keras' weight files number a
    layer's variables (``vars/0``), Orbax files end an NNX variable's path in ``value``.
    """
    aliases = getattr(require_adapter(parent), "aliases", None)
    return [name, *(aliases(parent, name, child) if aliases is not None else ())]


def _name_slots(
    program: ProgramGraph[Any], node_id: int, names: dict[int, list[str]], join: str
) -> None:
    """Name an optimizer's slots below it, where its framework's files store them by name.

    An adapter may define ``slot_aliases(optimizer, variable, slot, slot_object)``: the local
    names of a slot below the optimizer (``opt_state/0/mu/dense/kernel`` for optax state in
    an Orbax file, ``vars/2`` in a Keras weights file).
    """
    refs = program.graph.slot_table().get(node_id, ())
    if not refs or node_id not in names:
        return
    optimizer = program.objects[node_id]
    aliases = getattr(require_adapter(optimizer), "slot_aliases", None)
    if aliases is None:
        return
    for ref in refs:
        objects = program.objects
        found = aliases(optimizer, objects[ref.original], ref.slot, objects[ref.node])
        here = [f"{p}{join}{name}" if p else name for p in names[node_id] for name in found]
        names.setdefault(ref.node, [])
        names[ref.node] += [h for h in here if h not in names[ref.node]]


def _join_below(parent: Any, child: Any) -> str:
    """Inside one framework's tree names join with its separator, elsewhere with ``/``."""
    separator = _separator(child)
    return separator if separator != "/" and _separator(parent) == separator else "/"


def value_names(
    program: ProgramGraph[Any], base: Sequence[str] = ("",), dotted_root: bool = False
) -> dict[int, list[str]]:
    """Every name of every value node of ``program`` (see the module docstring)."""
    names, _ = node_names(program, base, dotted_root)
    return _of_values(program, names)


def _of_values(program: ProgramGraph[Any], names: dict[int, list[str]]) -> dict[int, list[str]]:
    keys = program.graph.value_keys()
    return {
        node: found
        for node, found in names.items()
        if program.specs[node] is not None and keys[node] is not None
    }


def _spec(target: Any) -> ValueSpec:
    spec = require_adapter(target).value_spec(target)
    assert spec is not None  # positional targets always own a value
    return spec


def normalized(key: str, segments: frozenset[str] = WRAPPER_SEGMENTS) -> str:
    """``key`` without the segments wrappers add (``module.``, ``_orig_mod.``), or ``segments``.

    Examples
    --------
    >>> normalized("model/module._orig_mod.encoder.0.weight")
    'model/encoder.0.weight'
    """
    head, _, tail = key.rpartition("/")
    parts = [p for p in tail.split(".") if p not in segments] or [tail]
    return f"{head}/{'.'.join(parts)}" if head else ".".join(parts)


def optional_segments(program: ProgramGraph[Any]) -> frozenset[str]:
    """The local names a file may have or lack where the program has them, or the reverse.

    Those wrappers add, and those the program's adapters name (``optional_segments(obj)``: a
    Hugging Face model's ``base_model_prefix``).
    """
    found = set(WRAPPER_SEGMENTS)
    for hook, objects in by_hook(program.objects, "optional_segments").items():
        for obj in objects:
            found.update(hook(obj))
    return frozenset(found)


def _names_alike(view: Program, other: Program) -> bool:
    """Whether both programs give every object below their roots the same names.

    Names are paths from the root through objects that take children (values take none):
    roots of one type whose such children are the same objects under the same names (a
    fresh ``Checkpoint(model=model)`` per restore, each with its own ``save_counter``) name
    them alike; a restore rooted at a model and one rooted at its first layer do not.
    """

    def containers(program: Program) -> dict[str, int]:
        found = program.children(program.root)
        return {name: id(child) for name, child in found if program.can_defer(child)}

    return type(view.root) is type(other.root) and containers(view) == containers(other)


class NameBasedRestore:
    """A restore from a name-based checkpoint (docs/semantics.md S77, docs/frameworks.md)."""

    def __init__(self, source: StoredCheckpoint, view: Program, *, lazy: bool) -> None:
        self.uid = _execute.next_uid()
        self.source = source
        self.stored = source.specs()
        self.view = view
        self.lazy = lazy
        self.matched: dict[int, tuple[Any, str]] = {}
        """``id(variable)`` -> (variable, key) for every variable whose name matched."""
        self.used: set[str] = set()
        """Stored keys that filled a value (a tied weight's second name too)."""
        self.queued: dict[int, Assignment[Any]] = {}
        self.written: set[int] = set()
        self.differing: dict[str, str] = {}
        """Stored key -> the key restored into the value the program ties it to (differing)."""
        self.expect_partial = False
        self._nested: dict[str, str] = getattr(source, "nested_names", {})
        self._exact, self._bare = self._stored_names()
        unique = {name: keys[0] for name, keys in self._bare.items() if len(keys) == 1}
        self._aliases = {**unique, **self._exact}
        """Stored key by name, as spelled or without wrapper segments (positional state)."""
        self._finish: list[Callable[[], None]] = []
        """Lazy mode: positional state to apply once everything is written."""
        self.problems: list[str] = []
        """Lazy mode: why parts of the file do not fit (a restore raises them at once)."""
        self._troubled: set[int] = set()
        """Lazy mode: ``id(target)`` of the queued writes those problems hold back."""
        self._unapplied: set[int] = set()
        """Lazy mode: ``id(group)`` of optimizer param groups filled once everything is."""
        self._preloaded: dict[int, np.ndarray[Any, Any]] = {}
        """Lazy mode: ``id(target)`` -> the rebuilt Python state a queued write gives it."""
        self.built: dict[str, tuple[Built, Conversion]] = {}
        """Key -> how a value built from several stored ones is built (its key is its name)."""
        self.compared: dict[int, bool] = {}
        self.status: weakref.ref[Any] | None = None
        self._tree: NestedValues | None = None
        """The file's values as the nested containers they were saved in (built on first use)."""
        self.revision = Revision()

    def laid_out_like(self, older: Any) -> bool:
        """Whether ``older``'s file is laid out as this one's (see ``Restorer``).

        The same names with the same specs (the same non-tensor entries too), from roots that
        name every object alike (:func:`_names_alike`): every name the older would match
        below an attached object, this one matches to the same target.
        """
        return (
            _names_alike(self.view, older.view)
            and self.stored == older.stored
            and self._nested == older._nested
            and getattr(self.source, "literals", {}).keys()
            == getattr(older.source, "literals", {}).keys()
        )

    def _stored_names(
        self, segments: frozenset[str] = WRAPPER_SEGMENTS, renamed: dict[str, str] | None = None
    ) -> tuple[dict[str, str], dict[str, list[str]]]:
        """Stored key by the name it stands for, and the stored keys by name without ``segments``.

        A source that flattened nested dicts with another separator (PyTorch DCP's
        ``model.0.weight``) gives each key's nested path (``model/0.weight``) as a name too;
        ``renamed`` maps more names to stored keys (:meth:`_file_names`).
        """
        exact = {key: key for key in self.stored}
        bare: dict[str, list[str]] = {}
        named = [(self._nested.get(key, key), key) for key in self.stored]
        for name, key in [*named, *(renamed or {}).items()]:
            exact.setdefault(name, key)
            keys = bare.setdefault(normalized(name, segments), [])
            if key not in keys:
                keys.append(key)
        return exact, bare

    def prepare(self, starts: list[tuple[int, Any]]) -> _execute.Commit:
        """Name-based restores have no checkpoint nodes to wait on."""
        return _execute.nothing

    def restore(self) -> None:
        """Restore every value of the program whose name is a stored key (all or nothing)."""
        self.prepare_subtree(None, "", self.view.root)()

    def _names_below(
        self, parent: Any, name: str, obj: Any
    ) -> tuple[ProgramGraph[Any], dict[int, list[str]], dict[int, str]]:
        """The objects below ``obj``, their names, and how each one's children's names join.

        ``parent`` takes ``obj`` as ``name``; ``parent`` is ``None`` for the restore's root.
        Slot variables have no path names (a ``ck.Variable`` slot still matches by its own
        name).
        """
        if parent is None:
            program = self.view.walk()
            return program, *node_names(program)
        whole = self.view.walk()
        program = Program(obj).walk()
        parent_id = whole.node_of(parent)
        dotted = _join_below(parent, obj) != "/"
        if parent_id is None:  # the parent left the program: name from the parent down
            return program, *node_names(program, (name,), dotted)
        names, joins = node_names(whole)
        base = [
            f"{p}{joins[parent_id]}{local}" if p else local
            for p in names[parent_id]
            for local in local_names(parent, name, obj)
        ]
        return program, *node_names(program, base, dotted)

    def _below(
        self,
        program: ProgramGraph[Any],
        names: dict[int, list[str]],
        joins: dict[int, str],
        hook_name: str,
    ) -> Iterator[tuple[Any, str, dict[str, str]]]:
        """What an adapter's ``hook_name(obj)`` gives, and the stored keys below each name of obj.

        Yields (the hook's answer, the lead of the object's names, the stored keys under
        it by their names below the object) for each name of each object whose hook answers.
        """
        for hook, objects in by_hook(program.objects, hook_name).items():
            for obj in objects:
                answer, node = hook(obj), program.node_of(obj)
                if answer is None or node is None:
                    continue
                for prefix in names.get(node, []):
                    lead = f"{prefix}{joins[node]}" if prefix else ""
                    below: dict[str, str] = {}
                    for key in self.stored:
                        stored = self._nested.get(key, key)
                        if stored.startswith(lead):
                            below.setdefault(stored[len(lead) :], key)
                    yield answer, lead, below

    def _file_names(
        self, program: ProgramGraph[Any], names: dict[int, list[str]], joins: dict[int, str]
    ) -> dict[str, str]:
        """Stored key by the name the program gives it, where an adapter renames files' names.

        ``file_names(obj)``: transformers 5's renames of a model's weights.  Then the values
        built from several stored ones (``file_conversions(obj)``: transformers 5's converters,
        which fuse a Mixture-of-Experts model's per-expert weights), each by a key of its own,
        its name (:attr:`built`), unless the file stores a value under that name itself.
        """
        found: dict[str, str] = {}
        for rename, lead, below in self._below(program, names, joins, "file_names"):
            for name, key in below.items():
                found.setdefault(lead + rename(name), key)
        taken: set[str] = set()  # a model inside another (its base model) converts no key twice
        for convert, lead, below in self._below(program, names, joins, "file_conversions"):
            left = {name: self.stored[key] for name, key in below.items() if key not in taken}
            for conversion in convert(left) if left else ():
                sources = tuple(below[name] for name in conversion.sources)
                taken.update(sources)
                for name in conversion.outputs:
                    key = lead + name
                    if key not in self.stored:  # the first conversion naming it builds it
                        built = Built(sources, conversion.build, name)
                        self.built.setdefault(key, (built, conversion))
                        found.setdefault(key, key)
        return found

    def prepare_subtree(self, parent: Any, name: str, obj: Any) -> _execute.Commit:
        """Check and read the values below ``obj`` that match by name; return the effects."""
        program, every, joins = self._names_below(parent, name, obj)
        names = _of_values(program, every)
        key_of = self._key_lookup(
            names.values(), optional_segments(program), self._file_names(program, every, joins)
        )
        writes: list[Assignment[Any]] = []
        keys_of: dict[int, list[str]] = {}
        preloaded: dict[int, np.ndarray[Any, Any]] = {}
        problems: list[str] = []
        for node, target in enumerate(program.objects):
            spec, found = program.specs[node], names.get(node, [])
            if spec is None or id(target) in self.matched:
                continue
            rebuilt = self._python_state(node, target, spec, found, problems)
            if rebuilt is not None:  # a scheduler's state_dict(): the entries under its name
                write, preloaded[id(target)] = rebuilt
                keys_of[id(target)] = [write.key, *self._nested_values().array_keys(write.key)]
                writes.append(write)
                continue
            own = self.view.describe(target)[1]  # a ck.Variable matches by its name only
            keys = list(dict.fromkeys(k for k in map(key_of, [own] if own else found) if k))
            if not keys:
                continue
            if len(keys) > 1:  # a shared (tied) value the file may hold under each name
                keys = self._tied(keys)
            keys_of[id(target)] = [source for key in keys for source in self._sources(key)]
            writes.append(
                Assignment(
                    node=node,
                    key=keys[0],
                    target=target,
                    expected=spec,
                    stored=self._spec_of(keys[0]),
                )
            )
        no_state: tuple[list[Any], set[str]] = ([], set())
        positional, nested_keys = self._positional(program, every) if parent is None else no_state
        for state in positional:
            for name, target in state.targets.items():
                key = self._aliases[name]
                keys_of[id(target)] = [key]
                writes.append(
                    Assignment(
                        node=-1,
                        key=key,
                        target=target,
                        expected=_spec(target),
                        stored=self.stored[key],
                    )
                )
        conflicts = [w for w in writes if w.conflict is not None]
        problems += [p for state in positional for p in state.problems]
        if (conflicts or problems) and not self.lazy:
            shown = [self._shown(w.key) for w in conflicts]
            raise conflict_error(conflicts, self.source.display_path, shown, problems)
        load = Load() if self.lazy else self._fetch(writes, explicit=False, preloaded=preloaded)

        def commit() -> None:
            for write in writes:
                self.matched[id(write.target)] = (write.target, write.key)
                self.used.update(keys_of[id(write.target)])
                if self.lazy:
                    self.queued[id(write.target)] = write
            for state in positional:
                for proxy, key in state.groups:
                    self.matched[id(proxy)] = (proxy, key)
                    if self.lazy:
                        self._unapplied.add(id(proxy))
            self.used.update(nested_keys)
            if self.lazy:
                self._finish += [state.apply for state in positional]
                self._preloaded.update(preloaded)
                self.problems += problems
                self._troubled.update(
                    id(target)
                    for state in positional
                    if state.problems
                    for target in [*state.targets.values(), *(p for p, _ in state.groups)]
                )
            else:  # Python state loads first and may refuse: then nothing else happens
                self._write(writes, load, explicit=False)
                for state in positional:
                    state.apply()
            for candidate in program.objects:
                if self.view.can_defer(candidate):
                    _execute.arm_name_based(candidate, self)
            if writes or positional:
                self.revision.bump()

        return commit

    def _python_state(
        self, node: int, target: Any, spec: ValueSpec, names: list[str], problems: list[str]
    ) -> tuple[Assignment[Any], np.ndarray[Any, Any]] | None:
        """The write of Python state the file keeps under one of ``names``, and its value.

        A framework object saved as Python state (a torch scheduler, ``GradScaler``, extra
        state: the adapter's ``nested_state``) takes the file's entries under its name, as
        its ``load_state_dict(torch.load(f)[name])`` would; a value Python state cannot hold
        (a set: the hook says what) is a problem, named.
        """
        hook: Callable[..., np.ndarray[Any, Any] | str | None] | None = getattr(
            require_adapter(target), "nested_state", None
        )
        if hook is None:
            return None
        nested = self._nested_values()
        name = next((n for n in names if nested.holds(n)), None)
        if name is None:
            return None
        array = hook(target, functools.partial(self._nested_value, name))
        if isinstance(array, str):
            problems.append(
                f"{name or '(root)'} ({type(target).__name__}): {array}, so the file's value "
                "cannot be loaded into it. Restore without this object (leave it out of the "
                "Checkpoint) and load its entry with the framework's own load_state_dict"
            )
            return None
        if array is None:
            return None
        stored = ValueSpec(shape=array.shape, dtype="uint8")
        return Assignment(node=node, key=name, target=target, expected=spec, stored=stored), array

    def _nested_values(self) -> NestedValues:
        if self._tree is None:
            source = self.source
            self._tree = NestedValues(
                arrays={self._nested.get(k, k): k for k in self.stored},
                literals={
                    self._nested.get(k, k): v for k, v in getattr(source, "literals", {}).items()
                },
                # a DCP's (named as its nested_names names values), else a torch file's
                containers=getattr(source, "nested_containers", None)
                or getattr(source, "containers", {}),
            )
        return self._tree

    def _nested_value(
        self,
        name: str,
        from_array: Callable[[np.ndarray[Any, Any]], Any] | None,
        like: Any = None,
    ) -> Any:
        """The value under ``name``, as ``torch.load(f)[name]`` gives it.

        Its arrays are read (verified) and given to ``from_array``; without ``from_array``
        nothing is read and arrays are ``None`` (to look at the structure first).  ``like``:
        the program's value there, which types the keys a DCP saved as text
        (:meth:`NestedValues.value`).
        """
        nested = self._nested_values()
        if from_array is None:
            return nested.value(name, lambda key: None, like)
        keys = list(dict.fromkeys(nested.array_keys(name)))
        arrays = self.source.read_many(keys) if keys else {}
        return nested.value(name, lambda key: from_array(arrays[key]), like)

    def _tied(self, keys: list[str]) -> list[str]:
        """The keys that hold the same value as the first: the one value the program shares.

        A file of the untied program holds different values under the names the program ties;
        those stay unused (reported) rather than silently overwritten by the first.
        """
        if any(key in self.built for key in keys):  # built: the first name's value alone
            return keys[:1]
        first, *others = keys
        for key in others:
            if not self.source.same_value(first, key):
                self.differing[key] = first
        return [first, *(k for k in others if k not in self.differing)]

    def _spec_of(self, key: str) -> ValueSpec:
        """What the file holds under ``key``, or what the value built under ``key`` will be."""
        built = self.built.get(key)
        return self.stored[key] if built is None else built[1].outputs[built[0].name]

    def _sources(self, key: str) -> tuple[str, ...]:
        """The stored keys a write of ``key`` reads (a built value's sources)."""
        built = self.built.get(key)
        return (key,) if built is None else built[0].sources

    def _shown(self, key: str) -> str:
        """``key`` as errors name it: a built value with what it is built from, and how."""
        built = self.built.get(key)
        if built is None:
            return repr(key)
        return f"{key!r} ({self._built_from(key)})"

    def _built_from(self, key: str) -> str:
        how, conversion = self.built[key]
        sources = how.sources
        shown = ", ".join(map(repr, sources if len(sources) <= 3 else sources[:2]))
        if len(sources) > 3:
            shown += f", ..., {sources[-1]!r}"
        return f"built from {len(sources)} stored values ({shown}) by {conversion.how}"

    def _key_lookup(
        self, names: Iterable[list[str]], segments: frozenset[str], renamed: dict[str, str]
    ) -> Callable[[str], str | None]:
        """The stored key for a program name: the same name, or the same without ``segments``.

        ``renamed`` gives stored keys more names.  Without the segments wrappers add
        (``module.``, ``_orig_mod.``) and those the program names optional (a Hugging Face
        model's ``base_model_prefix``: ``bert.`` in the files of ``BertForMaskedLM``, absent
        in ``BertModel``'s, as ``from_pretrained`` matches them), a program name and a stored
        name match when no other name of either side reads the same: the program's own names
        may hold such segments too (``AveragedModel`` keeps its model as ``module``, whose
        file saved through ``DataParallel`` says ``module.module.0.weight``).
        """
        program = Counter(
            normalized(name, segments) for name in itertools.chain.from_iterable(names)
        )
        exact, bare = (
            (self._exact, self._bare)
            if segments == WRAPPER_SEGMENTS and not renamed
            else self._stored_names(segments, renamed)
        )

        def key_of(name: str) -> str | None:
            key = exact.get(name)
            if key is None:
                plain = normalized(name, segments)
                stored = bare.get(plain, ())
                if len(stored) == 1 and program[plain] == 1:
                    key = stored[0]
            return key

        return key_of

    def _positional(
        self, program: ProgramGraph[Any], names: dict[int, list[str]]
    ) -> tuple[list[Any], set[str]]:
        """Framework state the file keys by position (torch optimizers), by node name (``names``).

        Also the stored keys read for it beyond its targets (tensors in nested values: LBFGS'
        history lists), which it uses.
        """
        nested = self._nested_values()
        literals = nested.literals
        stored = {name: self.stored[key] for name, key in self._aliases.items()}
        read: set[str] = set()

        def value_at(name: str, from_array: Callable[[np.ndarray[Any, Any]], Any] | None) -> Any:
            if from_array is not None:
                read.update(nested.array_keys(name))
            return self._nested_value(name, from_array)

        found = []
        for node, obj in enumerate(program.objects):
            hook: Callable[..., Any] | None = getattr(
                require_adapter(obj), "positional_state", None
            )
            if hook is None:
                continue
            for name in names.get(node, []):
                state = hook(obj, name, stored, literals, value_at)
                if state is not None:
                    found.append(state)
                    break
        return found, read

    def _fetch(
        self,
        writes: Sequence[Assignment[Any]],
        *,
        explicit: bool,
        preloaded: dict[int, np.ndarray[Any, Any]],
    ) -> Load:
        items = [
            Fetch(ident=id(w.target), key=w.key, target=w.target, stored=w.stored) for w in writes
        ]
        built = {id(w.target): self.built[w.key][0] for w in writes if w.key in self.built}
        return fetch(
            self.source, items, uid=self.uid, explicit=explicit, preloaded=preloaded, built=built
        )

    def _write(self, writes: Sequence[Assignment[Any]], load: Load, *, explicit: bool) -> None:
        by_ident = {id(write.target): write for write in writes}
        done: list[Any] = []

        def one(ident: int, array: np.ndarray[Any, Any]) -> None:
            write = by_ident[ident]
            holder = _execute.write_value(write.target, array, self.uid, explicit=explicit)
            if holder is not write.target:  # the framework replaced the object
                del self.matched[ident]
                self.matched[id(holder)] = (holder, write.key)
                self.written.add(id(holder))
            done.append(holder)
            self.written.add(ident)

        def placed(idents: list[int]) -> None:  # read straight into the targets' memory
            done.extend(by_ident[ident].target for ident in idents)
            self.written.update(idents)

        commit(
            self.source,
            load,
            one,
            placed,
            lambda ident: repr(by_ident[ident].key),
            self.written.difference_update,
            uid=self.uid,
            explicit=explicit,
        )
        _execute.after_writes(done)

    def run_queued(self, only: Iterable[str] | None) -> None:
        """Lazy mode: write the queued values (``only`` selects stored names)."""
        wanted = None if only is None else {only} if isinstance(only, str) else set(only)
        names = self.stored.keys() | {w.key for w in self.queued.values()}
        unknown = sorted(wanted - names) if wanted is not None else []
        if unknown:
            below = sorted(n for n in self.stored if n.startswith(f"{unknown[0]}/"))
            close = below[:5] or difflib.get_close_matches(unknown[0], self.stored, n=5)
            raise UnknownPathError(
                f"run_restore_ops(only=...) got {unknown[:20]}, which name no stored value of "
                f"{self.source.display_path}. A name-based checkpoint selects by stored name "
                f"(the file's keys, as in report(), never a prefix of them); closest to "
                f"{unknown[0]!r}: {close}{' ...' if len(below) > 5 else ''}."
            )
        selected = [
            w
            for w in self.queued.values()
            if wanted is None or w.key in wanted or not wanted.isdisjoint(self._sources(w.key))
        ]  # a built value: by its name or any of its sources'
        conflicts = [w for w in selected if w.conflict is not None]
        troubled = self.problems and (  # everything (the layouts too), or a write held back
            wanted is None or any(id(w.target) in self._troubled for w in selected)
        )
        if conflicts or troubled:
            shown = [w.key if w.key not in self.built else self._shown(w.key) for w in conflicts]
            problems = self.problems if troubled else ()
            raise conflict_error(conflicts, self.source.display_path, shown, problems, lazy=True)
        idents = [id(w.target) for w in selected]
        rebuilt = {i: self._preloaded[i] for i in idents if i in self._preloaded}
        self._write(
            selected, self._fetch(selected, explicit=True, preloaded=rebuilt), explicit=True
        )
        for write in selected:
            del self.queued[id(write.target)]
            self._preloaded.pop(id(write.target), None)
        if wanted is None:
            for finish in self._finish:
                finish()
            self._finish.clear()
            self._unapplied.clear()
        if selected:
            self.revision.bump()

    def _state_of(self, obj: Any, match: tuple[Any, str] | None) -> tuple[MatchState, str]:
        if match is None:
            return "program_only", "no stored value has this name"
        if id(obj) in self._troubled:
            return "bound", "held back: the file's layout does not fit (assert_consumed() says why)"
        queued = self.queued.get(id(obj))
        if queued is None:
            return (
                ("bound", "run_restore_ops() writes it")
                if id(obj) in self._unapplied
                else (
                    "restored",
                    "",
                )
            )
        if queued.conflict == "shape":
            return "shape_conflict", (
                f"shape: program {queued.expected.describe()}, checkpoint "
                f"{queued.stored.describe()}"
            )
        if queued.conflict == "dtype":
            return "dtype_conflict", (
                f"dtype: program {queued.expected.describe_dtype()}, checkpoint "
                f"{queued.stored.dtype}"
            )
        return "bound", "run_restore_ops() writes it"

    @gc_paused()  # a walk and an entry per value: many small objects, no cycles among them
    def report(self, *, with_program: bool = True, exempt: Iterable[Any] = ()) -> MatchReport:
        """Every program value and every stored name, with its state."""
        entries: list[ReportEntry] = []
        skip = {id(o) for o in exempt}
        walked: set[int] = set()
        if with_program:
            program = self.view.walk()
            names = value_names(program)
            paths = _depth_first_paths(program)
            for node_id, found in names.items():
                obj, spec, path = program.objects[node_id], program.specs[node_id], paths[node_id]
                if spec is None or path is None or id(obj) in skip:
                    continue
                match = self.matched.get(id(obj))
                walked.add(id(obj))
                own = self.view.describe(obj)[1]  # a ck.Variable matches by its name only
                shown = own or found[0]
                state, reason = self._state_of(obj, match)
                stored = self.stored.get(match[1]) if match else None
                if match is not None and match[1] in self.built:
                    stored, built = self._spec_of(match[1]), self._built_from(match[1])
                    reason = f"{reason}; {built}" if reason else built
                entries.append(
                    ReportEntry(
                        path=path.prefix,
                        pretty=f"{path.pretty} (name {shown!r})",
                        key=match[1] if match else shown,
                        state=state,
                        program=spec,
                        stored=stored,
                        type_name=type(obj).__name__,
                        reason=reason,
                        names=(own,) if own else tuple(found),
                    )
                )
        for ident, write in self.queued.items():  # state a lazy run_restore_ops() creates
            if with_program and ident not in walked:
                state, reason = self._state_of(write.target, (write.target, write.key))
                entries.append(
                    ReportEntry(
                        path=write.key,
                        pretty=write.key,
                        key=write.key,
                        state=state,
                        program=write.expected,
                        stored=write.stored,
                        optimizer=True,
                        type_name=type(write.target).__name__,
                        reason=reason,
                    )
                )
        for key, spec in self.stored.items():
            if key not in self.used:
                entries.append(
                    ReportEntry(
                        path=key,
                        pretty=key,
                        key=key,
                        state="checkpoint_only",
                        stored=spec,
                        reason=(
                            f"the program ties it to {self.differing[key]!r}, whose value was "
                            "restored; the file holds a different one under this name"
                            if key in self.differing
                            else "no program value has this name"
                        ),
                    )
                )
        return MatchReport(
            checkpoint=self.source.display_path, entries=tuple(entries), lazy=self.lazy
        )


def layout_hint(report: MatchReport) -> str:
    """How to restore when the program's names and the file's differ by one leading segment.

    ``ck.Checkpoint(model=m)`` names ``m``'s values ``model/...``: a file of ``m`` alone
    (``torch.save(m.state_dict())``, ``m.save("m.keras")``) stores them at its top level, so
    ``root=m`` is the restore that matches; and a training checkpoint stores them below
    ``model/``, which ``root=m`` misses.  ``""`` when neither explains the missing values.

    Examples
    --------
    >>> from ckptlab.core import ReportEntry
    >>> entries = (
    ...     ReportEntry(path="w", pretty="w", key="model/0.weight", state="program_only",
    ...                 names=("model/0.weight",)),
    ...     ReportEntry(path="0.weight", pretty="0.weight", key="0.weight",
    ...                 state="checkpoint_only"),
    ... )
    >>> report = MatchReport(checkpoint="m.pt", entries=entries)
    >>> print(layout_hint(report))  # doctest: +NORMALIZE_WHITESPACE
    <BLANKLINE>
    1 of them are stored at the file's top level, without the leading 'model/': restore that
    object as the root, ck.Checkpoint(root=<your model>).restore(path).
    """
    unused = {normalized(e.key) for e in report.unused}
    if not unused:
        return ""
    top: Counter[str] = Counter()  # a missing name's first segment, where the rest is stored
    below: Counter[str] = Counter()  # an unused key's first segment, where the rest is wanted
    wanted: set[str] = set()
    for entry in report.missing:
        wanted.update(normalized(n) for n in entry.names)
        for name in entry.names:
            head, sep, rest = name.partition("/")
            if sep and normalized(rest) in unused:
                top[head] += 1
                break
    for key in unused:
        head, sep, rest = key.partition("/")
        if sep and rest in wanted:
            below[head] += 1
    if top and top.most_common(1)[0][1] >= sum(below.values()):
        head, count = top.most_common(1)[0]
        return (
            f"\n{count} of them are stored at the file's top level, without the leading "
            f"{head + '/'!r}: restore that object as the root, "
            f"ck.Checkpoint(root=<your {head}>).restore(path)."
        )
    if below:
        head, count = below.most_common(1)[0]
        return (
            f"\n{count} of them are stored below {head + '/'!r} (a training checkpoint's "
            f"layout, {{{head!r}: ..., ...}}): name each object as the file does, "
            f"ck.Checkpoint({head}=<your {head}>, ...).restore(path)."
        )
    return ""


def _depth_first_paths(program: ProgramGraph[Any]) -> list[NodePath | None]:
    """Each node's first path in depth-first order (torch's ``state_dict()`` order).

    A name-based report places a shared value (a tied weight) where the framework's own files
    name it first (``transformer.wte.weight``, not the shorter ``lm_head.weight``), so the
    subtree holding it keeps the file's structure (the explorer's rename suggestions compare
    subtrees).  Slots keep their graph paths.
    """
    children = program.graph.child_table()
    found = list(program.graph.paths())
    seen: set[int] = set()
    stack: list[tuple[int, tuple[str, ...]]] = [(0, ())]
    while stack:
        node_id, path = stack.pop()
        if node_id in seen:
            continue
        seen.add(node_id)
        graph_path = found[node_id]
        if graph_path is not None and graph_path.slot is None:
            found[node_id] = NodePath(path=path)
        below = list(children[node_id].items())
        stack.extend((child, (*path, name)) for name, child in reversed(below))
    return found
