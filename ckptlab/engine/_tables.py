"""What the engine remembers about user objects, without changing or retaining them (internal).

Waiting restores, the restore that last wrote a value, and the small proxies an adapter keeps
for state without an object of its own all live in :class:`ObjectTable` entries keyed by object
identity, so copying, pickling or dropping a model never drags a restore along.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["ObjectTable"]


class _Holder(dict[str, Any]):
    """The engine's data kept on a user object: copies and pickles of the object get none."""

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return dict, ()

    def __copy__(self) -> dict[str, Any]:
        return {}

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return {}


class ObjectTable:
    """Data about user objects, keyed by identity, never keeping an object alive.

    ``on_object`` tables keep their entry in the object's ``__dict__`` (in a holder that
    copies and pickles as nothing), so an entry that refers back to the object (a waiting
    restore refers to its program) is collected with it.  Other tables keep entries beside
    the objects, dropped by a weak-reference callback when the object is collected: right for
    small entries on objects that must not change (a torch tensor pickles its ``__dict__``).
    """

    def __init__(self, name: str, *, on_object: bool) -> None:
        self._name = name
        self._on_object = on_object
        self._entries: dict[int, Any] = {}

    def _holder(self, obj: object, create: bool) -> dict[str, Any] | None:
        if not self._on_object:
            return None
        namespace = getattr(obj, "__dict__", None)
        if not isinstance(namespace, dict):
            return None
        holder = namespace.get("_ck_engine")
        if holder is None and create:
            holder = namespace["_ck_engine"] = _Holder()
        return holder if holder is not None else {}

    def get(self, obj: object, default: Any = None) -> Any:
        """The entry of ``obj``, or ``default``."""
        holder = self._holder(obj, create=False)
        if holder is not None:
            return holder.get(self._name, default)
        return self._entries.get(id(obj), default)

    def setdefault(self, obj: object, factory: Callable[[], Any]) -> Any:
        """The entry of ``obj``, created by ``factory`` when there is none."""
        holder = self._holder(obj, create=True)
        if holder is not None:
            if self._name not in holder:
                holder[self._name] = factory()
            return holder[self._name]
        key = id(obj)
        if key not in self._entries:
            self._entries[key] = factory()
            with contextlib.suppress(TypeError):  # not weakly referenceable: kept with the table
                weakref.finalize(obj, self._entries.pop, key, None)
        return self._entries[key]

    def set(self, obj: object, value: Any) -> None:
        """Set the entry of ``obj``."""
        holder = self._holder(obj, create=True)
        if holder is not None:
            holder[self._name] = value
        elif id(obj) in self._entries:
            self._entries[id(obj)] = value
        else:
            self.setdefault(obj, lambda: value)

    def discard(self, obj: object) -> None:
        """Forget ``obj``."""
        holder = self._holder(obj, create=False)
        if holder is not None:
            holder.pop(self._name, None)
        else:
            self._entries.pop(id(obj), None)
