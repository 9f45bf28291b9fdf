"""Auto-tracking modules and tracked containers (lists, dicts, tuples).

``Module`` tracks every trackable assigned to an attribute; lists, tuples and dicts are wrapped
so their elements are named ``name/0`` and ``name/key`` (docs/semantics.md S63).  Attaching a
child may restore it at once when a restore is waiting for that name (deferred restoration,
docs/semantics.md S37-S39); a restore that fails undoes the attach.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import (
    Callable,
    Iterable,
    MutableSequence,
    Sequence,
)
from typing import Any, SupportsIndex, overload

from ckptlab.engine import Trackable, is_trackable, on_attach, on_attach_all
from ckptlab.errors import NotSaveableError

__all__ = ["Module", "TrackedDict", "TrackedList", "TrackedTuple", "wrap"]

_ABSENT = object()
"""No dependency or attribute of that name (what ``Module._ck_track_all`` puts back)."""


class Module(Trackable):
    """Auto-tracking base class: trackable attributes become named dependencies.

    Assigning a trackable (or a list/tuple/dict) adds a dependency named after the attribute;
    plain values are not tracked; ``del`` removes the dependency; re-assigning a plain value to a
    tracked name drops the dependency (TensorFlow keeps saving the old object; ckptlab does not).

    Examples
    --------
    >>> import ckptlab as ck
    >>> m = ck.Module()
    >>> m.w = ck.Variable(1.0)
    >>> m.layers = [ck.Module()]
    >>> [name for name, _ in m._ck_children()]
    ['w', 'layers']
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith(("_ck_", "__")):
            object.__setattr__(self, name, value)
            return
        wrapped = wrap(value)
        if not is_trackable(wrapped):
            self._ck_deps.pop(name, None)
            object.__setattr__(self, name, value)
            return
        self._ck_track(name, wrapped, set_attribute=True)

    def _ck_track(self, name: str, child: Any, *, set_attribute: bool) -> None:
        """Make ``child`` the dependency ``name`` and fire waiting restores; undo on failure."""
        self._ck_track_all([(name, child)], set_attribute=set_attribute)

    def _ck_track_all(self, children: Sequence[tuple[str, Any]], *, set_attribute: bool) -> None:
        """Make each ``(name, child)`` a dependency and fire waiting restores, all or none.

        On failure every dependency and attribute is put back as it was.
        """
        deps, attributes = self._ck_deps, self.__dict__
        before = [
            (name, deps.get(name, _ABSENT), attributes.get(name, _ABSENT)) for name, _ in children
        ]
        for name, child in children:
            deps[name] = child
            if set_attribute:
                object.__setattr__(self, name, child)
        try:
            on_attach_all(self, children)
        except BaseException:
            for name, dep, attribute in reversed(before):
                if dep is _ABSENT:
                    del deps[name]
                else:
                    deps[name] = dep
                if set_attribute and attribute is _ABSENT:
                    object.__delattr__(self, name)
                elif set_attribute:
                    object.__setattr__(self, name, attribute)
            raise

    def __delattr__(self, name: str) -> None:
        self._ck_deps.pop(name, None)
        object.__delattr__(self, name)

    @property
    def _ck_deps(self) -> dict[str, Any]:
        deps: dict[str, Any] = self.__dict__.setdefault("_ck_dependencies", {})
        return deps

    def _ck_children(self) -> list[tuple[str, Any]]:
        return list(self._ck_deps.items())

    def _ck_child(self, name: str) -> Any | None:
        return self._ck_deps.get(name)


# --- containers --------------------------------------------------------------------------------


def wrap(value: Any) -> Any:
    """Wrap lists, dicts, tuples and namedtuples so their trackable elements are tracked.

    An ``OrderedDict`` is wrapped like a dict (its order kept), as TensorFlow does; other
    subclasses of list and dict (``defaultdict``) are left as they are, as in TensorFlow.
    """
    if isinstance(value, Trackable):
        return value
    if type(value) is list:
        return TrackedList(value)
    if type(value) is dict or type(value) is OrderedDict:
        return TrackedDict(value)
    if type(value) is tuple:
        return TrackedTuple(value)
    if isinstance(value, tuple) and isinstance(getattr(type(value), "_fields", None), tuple):
        return _tracked_namedtuple(type(value))._make(wrap(v) for v in value)
    return value


_NAMEDTUPLES: dict[type, type] = {}
"""A namedtuple class -> its tracked subclass."""


def _tracked_namedtuple(cls: Any) -> Any:
    """A subclass of namedtuple ``cls`` whose trackable fields are dependencies by field name.

    As TensorFlow does, a namedtuple's elements are named by their fields (``pair/x``), and the
    object stays an instance of the user's class (``_replace`` and ``_asdict`` work).
    """
    tracked = _NAMEDTUPLES.get(cls)
    if tracked is None:

        def _ck_children(self: Any) -> list[tuple[str, Any]]:
            pairs = zip(self._fields, self, strict=True)
            return [(field, item) for field, item in pairs if is_trackable(item)]

        def __reduce__(self: Any) -> tuple[Any, ...]:  # pickled as the user's class, wrapped again
            return wrap, (cls._make(self),)

        namespace = {
            "__slots__": (),
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
            "_ck_children": _ck_children,
            "__reduce__": __reduce__,
        }
        tracked = _NAMEDTUPLES[cls] = type(cls.__name__, (cls, Trackable), namespace)
    return tracked


class TrackedList(Trackable, MutableSequence[Any]):
    """A list whose trackable elements are dependencies named by index (``layers/0``).

    It wraps the list it was given (mutations go through to it).  Saving requires append-only
    use: replacing, deleting or moving a trackable element, or changing the wrapped list behind
    the wrapper's back, makes ``save`` raise :class:`NotSaveableError` (docs/semantics.md S64-S65).
    ``ck.Module`` wraps lists assigned to it; it is a mutable sequence, not a ``list`` subclass.

    Parameters
    ----------
    storage
        The list to wrap (its elements are wrapped too); ``None``: a new empty list.

    Examples
    --------
    >>> import tempfile
    >>> model = ck.Module()
    >>> model.layers = [ck.Variable(1.0)]
    >>> model.layers.append(ck.Variable(2.0))
    >>> path = ck.Checkpoint(model=model).write(tempfile.mkdtemp())
    >>> type(model.layers).__name__, [k.split("/.")[0] for k, _ in ck.list_variables(path)]
    ('TrackedList', ['model/layers/0', 'model/layers/1'])
    """

    def __init__(self, storage: list[Any] | None = None) -> None:
        self._ck_storage: list[Any] = [] if storage is None else storage
        for index, item in enumerate(self._ck_storage):
            self._ck_storage[index] = wrap(item)
        self._ck_seen = list(self._ck_storage)
        self._ck_broken: str | None = None

    def _ck_children(self) -> list[tuple[str, Any]]:
        return [(str(i), item) for i, item in enumerate(self._ck_storage) if is_trackable(item)]

    def _ck_child(self, name: str) -> Any | None:
        if not name.isdigit() or int(name) >= len(self._ck_storage):
            return None
        item = self._ck_storage[int(name)]
        return item if is_trackable(item) else None

    def _ck_check_saveable(self) -> None:
        storage, seen = self._ck_storage, self._ck_seen
        if len(storage) != len(seen) or any(a is not b for a, b in zip(storage, seen, strict=True)):
            raise NotSaveableError(
                f"Unable to save the object {self!r} (a list wrapper constructed to track "
                "trackable ckptlab objects). The wrapped list was modified outside the wrapper "
                f"(its final value was {storage!r}, its value when a checkpoint dependency was "
                f"added was {seen!r}), which breaks restoration on object creation. Modify the "
                "list through the attribute (module.layers.append(...)), not the original list."
            )
        if self._ck_broken:
            raise NotSaveableError(
                f"Unable to save the object {self!r} (a list wrapper constructed to track "
                f"trackable ckptlab objects). {self._ck_broken}. In order to support restoration "
                "on object creation, tracking is exclusively for append-only data structures. "
                "Build a new list (module.layers = [...]) instead of editing this one."
            )

    def _ck_change(self, change: Callable[[list[Any]], object], reason: str) -> None:
        """Apply ``change`` to the storage; moving or removing a trackable breaks saving.

        Trackables new to the list are attached under their index, which fires a restore
        waiting for that index (as an append does); if one fails, the change is undone.
        """
        storage = self._ck_storage
        before, broken = list(storage), self._ck_broken
        change(storage)
        moved = any(
            is_trackable(item) and (i >= len(storage) or storage[i] is not item)
            for i, item in enumerate(before)
        )
        if moved:
            self._ck_broken = reason
        self._ck_sync()
        known = {id(item) for item in before}
        try:
            for index, item in enumerate(storage):
                if is_trackable(item) and id(item) not in known:
                    on_attach(self, str(index), item)
        except BaseException:
            storage[:] = before
            self._ck_broken = broken
            self._ck_sync()
            raise

    def _ck_sync(self) -> None:
        self._ck_seen = list(self._ck_storage)

    @overload
    def __getitem__(self, index: SupportsIndex) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: SupportsIndex | slice) -> Any:
        return self._ck_storage[index]

    def __setitem__(self, index: Any, value: Any) -> None:
        new = [wrap(v) for v in value] if isinstance(index, slice) else wrap(value)

        def change(storage: list[Any]) -> None:
            storage[index] = new

        self._ck_change(change, "A list element was replaced (__setitem__, __setslice__)")

    def __delitem__(self, index: Any) -> None:
        def change(storage: list[Any]) -> None:
            del storage[index]

        self._ck_change(change, "A list element was deleted (__delitem__, __delslice__)")

    def __len__(self) -> int:
        return len(self._ck_storage)

    def insert(self, index: int, value: Any) -> None:
        """Insert ``value``; inserting before a trackable element moves it (not saveable).

        Parameters
        ----------
        index
            Position, as for ``list.insert``; at or past the end it appends.
        value
            Any value; lists, dicts and tuples are wrapped.

        Examples
        --------
        >>> import tempfile
        >>> items = ck.TrackedList([1, 2])
        >>> items.insert(1, ck.Variable(0.0))  # no trackable moved: still saveable
        >>> path = ck.Checkpoint(items=items).write(tempfile.mkdtemp())
        >>> len(items), [k.split("/.")[0] for k, _ in ck.list_variables(path)]
        (3, ['items/1'])
        """
        if index >= len(self._ck_storage):
            self.append(value)
            return
        item = wrap(value)
        self._ck_change(lambda s: s.insert(index, item), "A list element was moved (insert)")

    def append(self, value: Any) -> None:
        """Append ``value``; a trackable is tracked as ``str(index)`` (restored if awaited).

        Parameters
        ----------
        value
            Any value; lists, dicts and tuples are wrapped.

        Raises
        ------
        RestoreConflictError
            A restore waits for this index and its value conflicts; nothing was appended.

        Examples
        --------
        >>> import tempfile
        >>> items = ck.TrackedList()
        >>> items.append(ck.Variable(1.0))
        >>> path = ck.Checkpoint(items=items).write(tempfile.mkdtemp())
        >>> [k.split("/.")[0] for k, _ in ck.list_variables(path)]
        ['items/0']
        """
        item = wrap(value)
        self._ck_storage.append(item)
        self._ck_seen.append(item)  # not a copy of the list: appends in a loop stay linear
        if is_trackable(item):
            try:
                on_attach(self, str(len(self._ck_storage) - 1), item)
            except BaseException:
                self._ck_storage.pop()
                self._ck_seen.pop()
                raise

    def extend(self, values: Iterable[Any]) -> None:
        """Append each value, as :meth:`append` does.

        Parameters
        ----------
        values
            Any values.

        Examples
        --------
        >>> items = ck.TrackedList()
        >>> items.extend([ck.Variable(1.0), 2])
        >>> len(items)
        2
        """
        for value in values:
            self.append(value)

    def sort(self, *, key: Callable[[Any], Any] | None = None, reverse: bool = False) -> None:
        """Sort in place; moving trackable elements makes the list unsaveable.

        Parameters
        ----------
        key, reverse
            As for ``list.sort``.

        Examples
        --------
        >>> items = ck.TrackedList([3, 1, 2])
        >>> items.sort()
        >>> list(items)
        [1, 2, 3]
        """
        self._ck_change(
            lambda s: s.sort(key=key, reverse=reverse), "A list element was moved (sort)"
        )

    def reverse(self) -> None:
        """Reverse in place; moving trackable elements makes the list unsaveable.

        Examples
        --------
        >>> items = ck.TrackedList([1, 2])
        >>> items.reverse()
        >>> list(items)
        [2, 1]
        """
        self._ck_change(lambda s: s.reverse(), "A list element was moved (reverse)")

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TrackedList):
            other = other._ck_storage
        return self._ck_storage == other

    __hash__ = None  # type: ignore[assignment]

    def __add__(self, other: Iterable[Any]) -> list[Any]:
        return [*self._ck_storage, *other]

    def __radd__(self, other: Iterable[Any]) -> list[Any]:
        return [*other, *self._ck_storage]

    def __repr__(self) -> str:
        return f"TrackedList({self._ck_storage!r})"


class TrackedDict(Trackable, dict[Any, Any]):
    """A dict whose trackable values are dependencies named by key (``cfg/enc``).

    A ``dict`` subclass, so it passes wherever a dict is expected (``isinstance``,
    ``json.dumps``, ``**``, ``|``); ``copy()`` and ``|`` give plain dicts.  Every mutator
    (``[]=``, ``update``, ``setdefault``, ``|=``, ``del``, ``pop``, ``popitem``, ``clear``) keeps
    tracking: a trackable put in is a dependency (restored if a restore waits for its key), one
    taken out is no longer saved (docs/semantics.md S66b).  Changes made through it go through
    to the dict it wraps too; that dict changed behind its back makes ``save`` raise
    :class:`NotSaveableError`, as for lists (S65), and so does a non-string key mapping to a
    trackable (S66).  ``ck.Module`` wraps dicts (and ``OrderedDict``s) assigned to it.

    Parameters
    ----------
    storage
        The dict to wrap (its values are wrapped too, in it as well); ``None``: a new dict.

    Examples
    --------
    >>> import json, tempfile
    >>> model = ck.Module()
    >>> model.cfg = {"enc": ck.Variable(1.0), "lr": 0.1}
    >>> path = ck.Checkpoint(model=model).write(tempfile.mkdtemp())
    >>> type(model.cfg).__name__, ck.list_variables(path)
    ('TrackedDict', [('model/cfg/enc/.ATTRIBUTES/VARIABLE_VALUE', [])])
    >>> isinstance(model.cfg, dict), json.dumps(model.cfg | {"enc": "encoder"})
    (True, '{"enc": "encoder", "lr": 0.1}')
    """

    def __init__(self, storage: dict[Any, Any] | None = None) -> None:
        super().__init__()
        self._ck_source = storage
        for key, value in list(storage.items()) if storage is not None else ():
            self._ck_put(key, wrap(value))

    def _ck_children(self) -> list[tuple[str, Any]]:
        return [(k, v) for k, v in self.items() if isinstance(k, str) and is_trackable(v)]

    def _ck_child(self, name: str) -> Any | None:
        value = self.get(name)
        return value if is_trackable(value) else None

    def _ck_check_saveable(self) -> None:
        changed = _changed_keys(self._ck_source, self)
        if changed:
            raise NotSaveableError(
                "Unable to save the object (a dictionary wrapper constructed automatically on "
                "attribute assignment). The wrapped dictionary was modified outside the wrapper: "
                f"{len(changed)} key(s) differ from what the wrapper holds "
                f"({', '.join(repr(k) for k in changed[:10])}). The wrapper does not see such "
                "changes, so saving would leave them out. Modify the dict through the attribute "
                "(module.cfg[key] = ...), not the original dict."
            )
        bad = [k for k, v in self.items() if not isinstance(k, str) and is_trackable(v)]
        if bad:
            raise NotSaveableError(
                f"Unable to save the object {self!r} (a dictionary wrapper constructed "
                "automatically on attribute assignment). It contains a non-string key "
                f"({bad[0]!r}) "
                "which maps to a trackable object or mutable data structure. Use string keys for "
                "trackable values."
            )

    def __setitem__(self, key: Any, value: Any) -> None:
        self._ck_set_all([(key, value)])

    def _ck_set_all(self, entries: Iterable[tuple[Any, Any]]) -> None:
        """Put ``entries`` in (wrapped) and fire waiting restores for them: all or none.

        If a restore fails, every entry is put back as it was and the error propagates.
        """
        items = [(key, wrap(value)) for key, value in entries]
        before = [(key, self.get(key, _ABSENT)) for key, _ in items]
        for key, item in items:
            self._ck_put(key, item)
        tracked = [(k, item) for k, item in items if isinstance(k, str) and is_trackable(item)]
        try:
            on_attach_all(self, tracked)
        except BaseException:
            for key, old in reversed(before):
                if old is _ABSENT:
                    del self[key]
                else:
                    self._ck_put(key, old)
            raise

    def __delitem__(self, key: Any) -> None:
        super().__delitem__(key)
        if self._ck_source is not None:
            self._ck_source.pop(key, None)

    def _ck_put(self, key: Any, item: Any) -> None:
        super().__setitem__(key, item)
        if self._ck_source is not None:
            self._ck_source[key] = item

    def update(self, *others: Any, **entries: Any) -> None:
        """Set each entry as ``self[key] = value`` does (as ``dict.update``), all or none.

        Parameters
        ----------
        *others, **entries
            A mapping or an iterable of pairs, and keyword entries.

        Examples
        --------
        >>> table = ck.TrackedDict()
        >>> table.update({"a": [1]}, b=2)
        >>> type(table["a"]).__name__, table["b"]
        ('TrackedList', 2)
        """
        self._ck_set_all(dict(*others, **entries).items())

    def setdefault(self, key: Any, default: Any = None) -> Any:
        """``self[key]``, first set to ``default`` (tracked) when missing.

        Parameters
        ----------
        key, default
            As for ``dict.setdefault``.

        Returns
        -------
        object
            The value now under ``key``.

        Examples
        --------
        >>> ck.TrackedDict().setdefault("a", [1])
        TrackedList([1])
        """
        if key not in self:
            self[key] = default
        return self[key]

    def pop(self, key: Any, *default: Any) -> Any:
        """Remove ``key`` and return its value (no longer saved), as ``dict.pop``.

        Parameters
        ----------
        key, *default
            As for ``dict.pop``: without a default, a missing key raises ``KeyError``.

        Returns
        -------
        object
            The removed value, or the default.

        Examples
        --------
        >>> ck.TrackedDict({"a": 1}).pop("a"), ck.TrackedDict().pop("a", 0)
        (1, 0)
        """
        if key not in self and default:
            return default[0]
        value = self[key]
        del self[key]
        return value

    def popitem(self) -> tuple[Any, Any]:
        """Remove and return the last entry (no longer saved), as ``dict.popitem``.

        Returns
        -------
        tuple
            ``(key, value)``.

        Examples
        --------
        >>> ck.TrackedDict({"a": 1, "b": 2}).popitem()
        ('b', 2)
        """
        key, value = super().popitem()
        if self._ck_source is not None:
            self._ck_source.pop(key, None)
        return key, value

    def clear(self) -> None:
        """Remove every entry (none is saved any longer).

        Examples
        --------
        >>> table = ck.TrackedDict({"a": 1})
        >>> table.clear()
        >>> len(table)
        0
        """
        super().clear()
        if self._ck_source is not None:
            self._ck_source.clear()

    def __ior__(self, other: Any) -> TrackedDict:  # type: ignore[misc]
        self.update(other)
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled and copied as its entries, put into a new TrackedDict one by one (cycles
        # through it work); the dict it wrapped and any waiting restore stay behind
        return TrackedDict, (), None, None, iter(self.items())

    def __repr__(self) -> str:
        return f"TrackedDict({dict(self)!r})"


def _changed_keys(source: dict[Any, Any] | None, wrapper: TrackedDict) -> list[Any]:
    """Keys whose entry in the wrapped ``source`` is not the wrapper's (the same object)."""
    if source is None:
        return []
    changed = [key for key, value in wrapper.items() if source.get(key, _ABSENT) is not value]
    return changed + [key for key in source if key not in wrapper]


class TrackedTuple(tuple[Any, ...], Trackable):
    """A tuple whose trackable elements are dependencies named by index (``pair/1``).

    ``ck.Module`` wraps tuples assigned to it.

    Parameters
    ----------
    values
        The elements (lists, dicts and tuples among them are wrapped).

    Examples
    --------
    >>> import tempfile
    >>> pair = ck.TrackedTuple([ck.Variable(1.0), "label"])
    >>> path = ck.Checkpoint(pair=pair).write(tempfile.mkdtemp())
    >>> isinstance(pair, tuple), [k.split("/.")[0] for k, _ in ck.list_variables(path)]
    (True, ['pair/0'])
    """

    def __new__(cls, values: Iterable[Any] = ()) -> TrackedTuple:
        return super().__new__(cls, [wrap(v) for v in values])

    def _ck_children(self) -> list[tuple[str, Any]]:
        return [(str(i), item) for i, item in enumerate(self) if is_trackable(item)]
