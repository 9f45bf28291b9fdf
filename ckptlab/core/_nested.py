"""Nested values a name-based checkpoint flattened into ``/``-joined names, rebuilt (pure).

A ``torch.save`` file holds nested containers, ``{"scheduler": {"last_epoch": 3,
"_schedule_phases": [{...}, {...}]}, "optimizer": {"state": {0: {"old_dirs": [t0, t1]}}}}``.
Its reader lists the arrays and the other values under ``/``-joined names
(``scheduler/_schedule_phases/0/end_step``, ``optimizer/state/0/old_dirs/1``) and records every
container it flattened (:class:`Container`: its type and its keys), so that the value under a
name can be rebuilt as ``torch.load(f)[name]`` gives it: lists stay lists, integer keys stay
integers, an empty dict is still there, a ``Counter`` is one.

PyTorch DCP records less: its metadata gives each flattened value's path, list positions as
integers but dict keys as ``str(key)`` (``{4: 1}`` and ``{"4": 1}`` are saved alike).  Its
containers are recorded with :attr:`Container.text_keys`, and a dict of them takes its keys'
types from the value the program holds there now (``like``), as DCP's own loading into the
program's state dict does.  A source that records no containers (a DCP directory whose
planner recorded no paths) is rebuilt as dicts of the names found below.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Container", "NestedValues"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Container:
    """A container a reader flattened: its type and its entries.

    Examples
    --------
    >>> Container(kind="list", entries=((0, "0"), (1, "1"))).kind
    'list'
    """

    kind: Literal["dict", "counter", "list", "tuple"]
    """``counter``: a ``collections.Counter`` (a ``MultiStepLR``'s milestones)."""
    entries: tuple[tuple[Any, str], ...]
    """Each entry's key as stored (a dict key, a position) and its name in the flattened
    names (``<container's name>/<name>``)."""
    text_keys: bool = False
    """A dict whose keys were saved as their ``str()`` (PyTorch DCP): which were integers is
    not recorded, and :meth:`NestedValues.value` takes that from the program's value."""


class NestedValues:
    """The values of a name-based checkpoint, as the nested containers they were saved in.

    Parameters
    ----------
    arrays
        Name -> the stored key of the array under that name.
    literals
        Name -> a value that is not an array (a number, a string, a list of them).
    containers
        Name -> the container flattened under that name (``""``: the file's top level).

    Examples
    --------
    >>> nested = NestedValues(
    ...     arrays={"sched/w": "key-of-w"},
    ...     literals={"sched/epoch": 3, "sched/phases/0/end": 2.0},
    ...     containers={"sched/phases": Container(kind="list", entries=((0, "0"),))},
    ... )
    >>> nested.holds("sched"), nested.holds("sched/missing"), nested.array_keys("sched")
    (True, False, ['key-of-w'])
    >>> nested.value("sched", lambda key: f"<{key}>")
    {'w': '<key-of-w>', 'epoch': 3, 'phases': [{'end': 2.0}]}
    """

    def __init__(
        self,
        arrays: Mapping[str, str],
        literals: Mapping[str, Any],
        containers: Mapping[str, Container],
    ) -> None:
        self.arrays, self.literals, self.containers = arrays, literals, containers
        self._children: dict[str, dict[str, None]] | None = None

    def holds(self, name: str) -> bool:
        """Whether anything is stored under ``name`` (a value, a container, names below it)."""
        return (
            name in self.arrays
            or name in self.literals
            or name in self.containers
            or name in self._below()
        )

    def array_keys(self, name: str) -> list[str]:
        """The stored keys of the arrays the value under ``name`` holds (to read them first)."""
        keys: list[str] = []
        self.value(name, keys.append)
        return keys

    def value(self, name: str, leaf: Callable[[str], Any], like: Any = None) -> Any:
        """The value under ``name``; each array is ``leaf(its stored key)``.

        ``like`` is the value the program holds under ``name`` now (``None``: none).  A dict
        whose keys were saved as text (:attr:`Container.text_keys`) takes from it the keys
        that read alike (``like``'s ``4`` for a saved ``"4"``), every key as an integer when
        ``like`` is keyed by integers alone (a ``MultiStepLR`` given other milestones), and
        the ``Counter`` type; other text keys stay text.

        Examples
        --------
        >>> nested = NestedValues(
        ...     arrays={},
        ...     literals={"m/4": 1, "d/0": "a"},
        ...     containers={
        ...         "m": Container(kind="dict", entries=(("4", "4"),), text_keys=True),
        ...         "d": Container(kind="dict", entries=(("0", "0"),), text_keys=True),
        ...     },
        ... )
        >>> nested.value("m", str, Counter({6: 1})), nested.value("d", str, {"0": "b"})
        (Counter({4: 1}), {'0': 'a'})
        """
        if name in self.arrays:
            return leaf(self.arrays[name])
        if name in self.literals:
            return self.literals[name]
        container = self.containers.get(name)
        if container is not None and all(self.holds(_join(name, n)) for _, n in container.entries):
            keys = _keys_like(container, like)
            items = [
                (key, self.value(_join(name, n), leaf, _entry(like, key)))
                for key, (_, n) in zip(keys, container.entries, strict=True)
            ]
            if container.kind in ("list", "tuple"):
                values = [value for _, value in items]
                return values if container.kind == "list" else tuple(values)
            counter = container.kind == "counter" or (
                container.text_keys and isinstance(like, Counter)
            )
            return Counter(dict(items)) if counter else dict(items)
        # No record (or one a key map broke): a dict of the names found below.
        return {n: self.value(_join(name, n), leaf) for n in self._below().get(name, {})}

    def _below(self) -> dict[str, dict[str, None]]:
        """Name -> the local names stored below it (in order), built on first use."""
        if self._children is None:
            self._children = {}
            for full in (*self.arrays, *self.literals, *self.containers):
                while full:
                    parent, _, local = full.rpartition("/")
                    siblings = self._children.setdefault(parent, {})
                    if local in siblings:  # its ancestors are listed already
                        break
                    siblings[local] = None
                    full = parent
        return self._children


_INTEGER = re.compile(r"-?(0|[1-9][0-9]{0,18})")
"""The text of an integer as ``str()`` writes it (and no longer than a 64-bit one)."""


def _keys_like(container: Container, like: Any) -> list[Any]:
    """The container's keys; text keys (DCP's) as the program's dict ``like`` types them."""
    keys = [key for key, _ in container.entries]
    if not container.text_keys or not isinstance(like, Mapping) or not like:
        return keys
    spelled = {str(key): key for key in like if type(key) is not str}
    spelled.update((key, key) for key in like if type(key) is str)
    numbered = all(type(key) is int for key in like)
    return [
        spelled.get(key, int(key) if numbered and _INTEGER.fullmatch(key) else key) for key in keys
    ]


def _entry(like: Any, key: Any) -> Any:
    """What the program's value ``like`` holds under ``key`` (``None``: nothing)."""
    if isinstance(like, Mapping):
        return like.get(key)
    if isinstance(like, list | tuple) and type(key) is int and 0 <= key < len(like):
        return like[key]
    return None


def _join(name: str, local: str) -> str:
    return f"{name}/{local}" if name else local
