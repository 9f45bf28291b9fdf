"""A restricted unpickler for ``torch.save`` files that runs no code from the file (internal).

``find_class`` only returns ckptlab's own stand-ins from :data:`ALLOWED` (tensor rebuild
functions become lazy :class:`TensorRef` records, storage classes become dtype markers,
``OrderedDict`` a dict that accepts ``_metadata``, ``Counter`` a ``Counter`` of a dict the
load made); any other global raises
:class:`~ckptlab.errors.UnsafePickleError` naming it, before anything is called.  Persistent ids
become :class:`StorageRef` records; no storage byte is read here (docs/foreign-formats.md §11.3).

The pickle machine is the standard library's pure-Python one, with the opcodes that call,
mutate or hash replaced (see :class:`RestrictedUnpickler`), because the C unpickler can be made
to hash a tuple of 2**60 elements (a hang) or recurse a million levels in C (a crash) by a
file of a few hundred bytes.  The rules, which new stand-ins keep by construction:

* only stand-ins are called (``REDUCE``, ``NEWOBJ``, ``INST``, ``OBJ``); classes among them
  are wrapped, so a file never gets hold of a class or function object it could alter;
* ``SETITEM(S)``/``DICT`` only fill dicts, ``APPEND(S)`` only lists and ``ADDITEMS`` only sets
  made by this same load, and ``BUILD`` only reaches instances of stand-in classes that
  define ``__setstate__`` (which validates the state): nothing shared is ever mutated;
* dict keys and set members are scalars or flat tuples of scalars (bounded hashing);
* extension codes (``EXT1/2/4``, which write to ``copyreg``'s global cache) are refused.
"""

from __future__ import annotations

import io
import pickle
import reprlib
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ckptlab.errors import CkptlabError, CorruptCheckpointError, UnsafePickleError

STORAGE_DTYPES = {
    "FloatStorage": "float32",
    "DoubleStorage": "float64",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
}
TORCH_DTYPES = {
    "float32": "float32", "float": "float32", "float64": "float64", "double": "float64",
    "float16": "float16", "half": "float16", "bfloat16": "bfloat16", "int64": "int64",
    "long": "int64", "int32": "int32", "int": "int32", "int16": "int16", "short": "int16",
    "int8": "int8", "uint8": "uint8", "uint16": "uint16", "uint32": "uint32", "uint64": "uint64",
    "bool": "bool", "complex64": "complex64", "cfloat": "complex64", "complex128": "complex128",
    "cdouble": "complex128", "float8_e4m3fn": "float8_e4m3fn", "float8_e5m2": "float8_e5m2",
    "float8_e4m3fnuz": "float8_e4m3fnuz", "float8_e5m2fnuz": "float8_e5m2fnuz",
    "float8_e8m0fnu": "float8_e8m0fnu",
    # no numpy type: listed, refused on read (ckptlab.core.UNREADABLE_DTYPES)
    "complex32": "complex32", "chalf": "complex32", "float4_e2m1fn_x2": "float4_e2m1fn_x2",
    "bits1x8": "bits1x8", "bits2x4": "bits2x4", "bits4x2": "bits4x2", "bits8": "bits8",
    "bits16": "bits16",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class StorageType:
    """A storage class global (``torch.FloatStorage``); ``dtype`` is ``None`` for untyped."""

    dtype: str | None


@dataclass(frozen=True, slots=True)
class TorchDtype:
    """A dtype object stored as a value (``torch.float16``)."""

    name: str

    def __repr__(self) -> str:
        return f"torch.{self.name}"


@dataclass(frozen=True, slots=True)
class StorageRef:
    """A storage: its record name, dtype, and element offset of a legacy view."""

    key: str
    dtype: str | None
    count: int
    """Elements of ``dtype``, or bytes for an untyped storage."""
    base: int = 0


@dataclass(frozen=True, slots=True)
class TensorRef:
    """A tensor as ``torch.save`` describes it: a strided view of a storage (no bytes)."""

    storage: StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: str


_KEY_SCALARS = (str, int, float, bool, type(None), bytes, complex)
MAX_NAME_CHARS = 256
"""Longest name accepted where a file names a dtype or a device."""


_SAFE_REPR: tuple[type, ...] = ()
"""Types whose own ``repr`` is bounded (set once the records below are defined)."""


def brief(value: Any) -> str:
    """A short, bounded ``repr`` of a value from a file, for error messages.

    Examples
    --------
    >>> brief(list(range(100)))
    '[0, 1, 2, 3, 4, 5, ...]'
    >>> brief(10**5000)
    '<int of 16610 bits>'
    """
    return _BRIEF.repr(value)


class _Brief(reprlib.Repr):
    """``reprlib``'s limits, and no full ``repr`` of a type it does not know.

    (A dict subclass nested in itself, an int of 10,000 digits.)
    """

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 2
        self.maxstring = self.maxother = 60

    def repr_int(self, x: int, level: int) -> str:
        return repr(x) if x.bit_length() <= 256 else f"<int of {x.bit_length()} bits>"

    def repr_instance(self, x: Any, level: int) -> str:
        if isinstance(x, dict):
            return self.repr_dict(x, level)
        if isinstance(x, _SAFE_REPR):
            return super().repr_instance(x, level)
        return f"<{type(x).__name__}>"


_BRIEF = _Brief()


def check_key(key: Any) -> Any:
    """Return ``key`` if it may be hashed safely: a scalar, or a flat tuple of scalars."""
    if isinstance(key, _KEY_SCALARS) or (
        type(key) is tuple and len(key) <= 64 and all(isinstance(k, _KEY_SCALARS) for k in key)
    ):
        return key
    raise CorruptCheckpointError(
        f"a dict key or set member is a {type(key).__name__}; ckptlab accepts str, numbers, "
        "bytes, None and flat tuples of them"
    )


class StateDict(dict[Any, Any]):
    """Stand-in for ``OrderedDict``: keeps insertion order and accepts ``_metadata``."""

    __slots__ = ("_metadata",)

    def __setstate__(self, state: Any) -> None:
        """``BUILD``: torch stores the ``_metadata`` attribute of a state_dict; nothing else."""
        if not isinstance(state, dict) or any(type(k) is not str for k in state):
            raise CorruptCheckpointError(
                f"an OrderedDict is given the state {brief(state)}; expected an attribute dict"
            )
        metadata = state.get("_metadata")
        if metadata is not None:
            if not isinstance(metadata, dict):
                raise CorruptCheckpointError(
                    f"a state_dict's _metadata is a {type(metadata).__name__}, not a dict"
                )
            self._metadata = metadata


def _ordered_dict(items: Any = ()) -> StateDict:
    out = StateDict()
    for pair in items if isinstance(items, list | tuple) else ():
        if type(pair) is not tuple or len(pair) != 2:
            raise CorruptCheckpointError(f"OrderedDict item {brief(pair)} is not a pair")
        out[check_key(pair[0])] = pair[1]
    if not isinstance(items, list | tuple):
        raise CorruptCheckpointError(f"OrderedDict of {type(items).__name__}")
    return out


def _rebuild_v2(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> TensorRef:
    if not isinstance(storage, StorageRef) or storage.dtype is None:
        raise CorruptCheckpointError("_rebuild_tensor_v2 got something other than a typed storage")
    return _tensor(storage, offset, size, stride, storage.dtype)


def _rebuild_v3(
    storage: Any, offset: Any, size: Any, stride: Any, _rg: Any, _hooks: Any, dtype: Any
) -> TensorRef:
    if not isinstance(storage, StorageRef) or not isinstance(dtype, TorchDtype):
        raise CorruptCheckpointError(
            "_rebuild_tensor_v3 got something other than a storage and a dtype"
        )
    return _tensor(storage, offset, size, stride, TORCH_DTYPES[dtype.name])


def _tensor(storage: StorageRef, offset: Any, size: Any, stride: Any, dtype: str) -> TensorRef:
    if not (type(size) is tuple and type(stride) is tuple and len(size) == len(stride) <= 64):
        raise CorruptCheckpointError(f"a tensor has size {brief(size)}, stride {brief(stride)}")
    shape, strides = size, stride
    if not all(type(v) is int and -(2**63) <= v < 2**63 for v in (offset, *shape, *strides)):
        raise CorruptCheckpointError(
            f"a tensor has size {brief(size)}, stride {brief(stride)}, offset {brief(offset)}"
        )
    return TensorRef(storage, offset + storage.base, shape, strides, dtype)


def _parameter(tensor: Any, *_: Any) -> Any:
    if not isinstance(tensor, TensorRef):
        raise CorruptCheckpointError("_rebuild_parameter got something other than a tensor")
    return tensor


def _encode(text: Any, encoding: str = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise CorruptCheckpointError(
            f"_codecs.encode is only accepted for latin1 text, got {brief(encoding)}"
        )
    return text.encode("latin1")


class NumpyDtype:
    """A numpy dtype stored as a value: a plain name, made final by ``BUILD`` (validated)."""

    __slots__ = ("dtype",)

    def __init__(self, name: Any, *_: Any) -> None:
        if type(name) is not str or len(name) > MAX_NAME_CHARS:
            raise CorruptCheckpointError(f"numpy dtype named by {brief(name)}")
        try:
            dtype = np.dtype(name)
        except (TypeError, ValueError) as error:
            raise CorruptCheckpointError(f"numpy dtype {name!r} ({error})") from None
        if dtype.kind in "OV" or dtype.subdtype is not None or dtype.byteorder == ">":
            raise CorruptCheckpointError(f"numpy dtype {name!r} is not accepted in a checkpoint")
        self.dtype = dtype

    def __setstate__(self, state: Any) -> None:
        """``BUILD``: numpy's ``(version, byteorder, ...)``; only plain little-endian dtypes."""
        if not (
            type(state) is tuple
            and len(state) >= 5
            and state[1] in ("<", "|", "=")
            and state[2:5] == (None, None, None)
        ):
            raise CorruptCheckpointError(
                f"numpy dtype {self.dtype.name} is given the state {brief(state)}; ckptlab "
                "accepts plain little-endian dtypes"
            )

    def __repr__(self) -> str:
        return repr(self.dtype)


def _numpy_scalar(dtype: Any, data: Any = b"") -> Any:
    if not isinstance(dtype, NumpyDtype) or type(data) is not bytes:
        raise CorruptCheckpointError("numpy scalar with an unexpected payload")
    if len(data) != dtype.dtype.itemsize:
        raise CorruptCheckpointError("numpy scalar with an unexpected payload")
    return np.frombuffer(data, dtype=dtype.dtype)[0]


def _counter(counts: Any = None) -> Counter[Any]:
    """``collections.Counter`` (a ``MultiStepLR``'s milestones): it pickles as its dict."""
    if counts is None:
        return Counter()
    if type(counts) is not dict:  # keys checked when the dict was built
        raise CorruptCheckpointError(f"Counter of {type(counts).__name__}")
    return Counter(counts)


def _set(items: Any = ()) -> set[Any]:
    return set(map(check_key, _sequence(items, "set")))


def _frozenset(items: Any = ()) -> frozenset[Any]:
    return frozenset(map(check_key, _sequence(items, "frozenset")))


def _size(items: Any = ()) -> tuple[Any, ...]:
    return tuple(_sequence(items, "torch.Size"))


def _sequence(items: Any, what: str) -> list[Any] | tuple[Any, ...]:
    if not isinstance(items, list | tuple):
        raise CorruptCheckpointError(f"{what} of {type(items).__name__}")
    return items


def _slice(*args: Any) -> slice:
    if len(args) > 3 or not all(a is None or type(a) is int for a in args):
        raise CorruptCheckpointError(f"slice{brief(args)}")
    return slice(*args)


def _complex(*args: Any) -> complex:
    if len(args) > 2 or not all(type(a) in (int, float) for a in args):
        raise CorruptCheckpointError(f"complex{brief(args)}")
    return complex(*args)


def _device(*args: Any) -> str:
    if not 1 <= len(args) <= 2 or not all(
        (type(a) is str and len(a) <= MAX_NAME_CHARS) or type(a) is int for a in args
    ):
        raise CorruptCheckpointError(f"torch.device{brief(args)}")
    return ":".join(map(str, args))


@dataclass(frozen=True, slots=True)
class StandIn:
    """What :meth:`RestrictedUnpickler.find_class` returns for a callable global (immutable)."""

    name: str
    make: Callable[..., Any]


def _stand_ins() -> dict[tuple[str, str], Any]:
    table: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): _ordered_dict,
        ("collections", "defaultdict"): lambda *_: StateDict(),
        ("collections", "Counter"): _counter,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_v2,
        ("torch._utils", "_rebuild_tensor_v3"): _rebuild_v3,
        ("torch._utils", "_rebuild_parameter"): _parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _parameter,
        ("torch.storage", "UntypedStorage"): StorageType(None),
        ("torch", "UntypedStorage"): StorageType(None),
        ("torch", "Size"): _size,
        ("torch", "device"): _device,
        ("_codecs", "encode"): _encode,
        ("builtins", "set"): _set,
        ("builtins", "frozenset"): _frozenset,
        ("builtins", "slice"): _slice,
        ("builtins", "complex"): _complex,
        ("numpy", "dtype"): NumpyDtype,
        ("numpy.core.multiarray", "scalar"): _numpy_scalar,
        ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    }
    table.update({("torch", name): StorageType(dtype) for name, dtype in STORAGE_DTYPES.items()})
    table.update({("torch", name): TorchDtype(name) for name in TORCH_DTYPES})
    return {
        key: StandIn(".".join(key), value) if callable(value) else value
        for key, value in table.items()
    }


_SAFE_REPR = (
    bool, float, complex, type(None), slice, np.generic,
    StandIn, StorageType, TorchDtype, StorageRef, TensorRef, NumpyDtype,
)  # fmt: skip
ALLOWED: dict[tuple[str, str], Any] = _stand_ins()
"""(module, name) -> the stand-in ckptlab uses for it; nothing else is ever looked up.

Plain functions and classes are wrapped in :class:`StandIn`; a class whose instances may
receive ``BUILD`` defines ``__setstate__``, which must validate the state it is given."""
_BUILDABLE = frozenset(
    s.make
    for s in ALLOWED.values()
    if isinstance(s, StandIn) and isinstance(s.make, type) and "__setstate__" in vars(s.make)
) | {StateDict}
"""Types whose instances accept ``BUILD`` (through their own validating ``__setstate__``)."""
_PYTHON2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}
"""Protocol 0-2 pickles name Python 2 modules (the stdlib maps them the same way)."""

_OPCODES = {name: getattr(pickle, name)[0] for name in (
    "REDUCE", "NEWOBJ", "NEWOBJ_EX", "BUILD", "SETITEM", "SETITEMS", "DICT", "APPEND", "APPENDS",
    "ADDITEMS", "FROZENSET", "EXT1", "EXT2", "EXT4",
)}  # fmt: skip


class RestrictedUnpickler(pickle._Unpickler):
    """An unpickler over ``ALLOWED`` whose persistent ids become :class:`StorageRef` records."""

    stack: list[Any]
    append: Callable[[Any], None]
    pop_mark: Callable[[], list[Any]]
    dispatch: ClassVar[dict[int, Callable[..., None]]] = dict(pickle._Unpickler.dispatch)

    def __init__(
        self, file: io.BufferedIOBase, where: str, storage: Callable[[tuple[Any, ...]], StorageRef]
    ) -> None:
        super().__init__(file)
        self.where = where
        self._storage = storage

    def find_class(self, module: str, name: str) -> Any:
        """Return the stand-in for an allow-listed global; refuse every other global."""
        found = ALLOWED.get((_PYTHON2_MODULES.get(module, module), name))
        if found is None:
            raise UnsafePickleError(
                f"{self.where} references the global {brief(module)[1:-1]}.{brief(name)[1:-1]}, "
                "which ckptlab does not load (it only rebuilds tensors, storages, dtypes, "
                "OrderedDict and plain values, and never imports or calls anything named in a "
                "file). If you trust the file, load it with torch and save its state_dict or "
                "convert it to safetensors.",
                f"{module}.{name}",
            )
        return found

    def persistent_load(self, pid: Any) -> Any:
        """Turn ``('storage', type, key, location, count, ...)`` into a :class:`StorageRef`."""
        if type(pid) is not tuple or len(pid) < 5 or pid[0] != "storage":
            raise CorruptCheckpointError(
                f"{self.where} has an unexpected persistent id {brief(pid)}"
            )
        return self._storage(pid)

    # -- the opcodes that call, mutate or hash ------------------------------------------------

    def _call(self, function: Any, args: Any) -> Any:
        if not isinstance(function, StandIn):
            raise CorruptCheckpointError(f"the pickle calls {brief(function)}, not a stand-in")
        if type(args) is not tuple:
            raise CorruptCheckpointError(f"the pickle calls {function.name} with {brief(args)}")
        return function.make(*args)

    def _load_reduce(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args)

    def _load_newobj(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args)

    def _load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        if kwargs:
            raise CorruptCheckpointError(f"the pickle passes keyword arguments {brief(kwargs)}")
        self.stack[-1] = self._call(self.stack[-1], args)

    def _instantiate(self, klass: Any, args: Any) -> None:  # INST and OBJ
        self.append(self._call(klass, tuple(args)))

    def _may_build(self, target: Any) -> bool:
        """Whether BUILD may set the state of ``target`` (subclasses widen this)."""
        return type(target) in _BUILDABLE

    def _key(self, key: Any) -> Any:
        """``key`` if it may be a dict key (subclasses widen this), else raise."""
        return check_key(key)

    def _load_build(self) -> None:
        state = self.stack.pop()
        target = self.stack[-1]
        if not self._may_build(target):
            raise CorruptCheckpointError(
                f"the pickle sets the state of a {type(target).__name__} (BUILD), which ckptlab "
                "only allows on the dicts and dtypes it rebuilds"
            )
        target.__setstate__(state)

    def _dict(self) -> dict[Any, Any]:
        target = self.stack[-1]
        if type(target) not in (dict, StateDict):
            raise CorruptCheckpointError(f"the pickle sets an item of a {type(target).__name__}")
        return target  # type: ignore[no-any-return]

    def _load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._dict()[self._key(key)] = value

    def _load_setitems(self) -> None:
        items = self.pop_mark()
        target = self._dict()
        if len(items) % 2:
            raise CorruptCheckpointError("SETITEMS with an odd number of items")
        for index in range(0, len(items), 2):
            target[self._key(items[index])] = items[index + 1]

    def _load_dict(self) -> None:
        items = self.pop_mark()
        if len(items) % 2:
            raise CorruptCheckpointError("DICT with an odd number of items")
        self.append({self._key(items[i]): items[i + 1] for i in range(0, len(items), 2)})

    def _load_append(self) -> None:
        value = self.stack.pop()
        self._list().append(value)

    def _load_appends(self) -> None:
        items = self.pop_mark()
        self._list().extend(items)

    def _list(self) -> list[Any]:
        target = self.stack[-1]
        if type(target) is not list:
            raise CorruptCheckpointError(f"the pickle appends to a {type(target).__name__}")
        return target

    def _load_additems(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        if type(target) is not set:
            raise CorruptCheckpointError(f"the pickle adds items to a {type(target).__name__}")
        target.update(map(check_key, items))

    def _load_frozenset(self) -> None:
        self.append(frozenset(map(check_key, self.pop_mark())))

    def _load_ext(self) -> None:
        raise CorruptCheckpointError("the pickle uses an extension code (EXT1/2/4)")

    dispatch[_OPCODES["REDUCE"]] = _load_reduce
    dispatch[_OPCODES["NEWOBJ"]] = _load_newobj
    dispatch[_OPCODES["NEWOBJ_EX"]] = _load_newobj_ex
    dispatch[_OPCODES["BUILD"]] = _load_build
    dispatch[_OPCODES["SETITEM"]] = _load_setitem
    dispatch[_OPCODES["SETITEMS"]] = _load_setitems
    dispatch[_OPCODES["DICT"]] = _load_dict
    dispatch[_OPCODES["APPEND"]] = _load_append
    dispatch[_OPCODES["APPENDS"]] = _load_appends
    dispatch[_OPCODES["ADDITEMS"]] = _load_additems
    dispatch[_OPCODES["FROZENSET"]] = _load_frozenset
    for _code in ("EXT1", "EXT2", "EXT4"):
        dispatch[_OPCODES[_code]] = _load_ext


_PICKLE_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    LookupError,
    AttributeError,
    OverflowError,
    RecursionError,
    MemoryError,
    struct.error,
)


def load_pickle(
    data: io.BufferedIOBase,
    where: str,
    storage: Callable[[tuple[Any, ...]], StorageRef],
    unpickler: type[RestrictedUnpickler] | None = None,
) -> Any:
    """Run the restricted unpickler; damaged pickles become :class:`CorruptCheckpointError`.

    ``unpickler`` is a subclass of :class:`RestrictedUnpickler` to run instead (DCP metadata).
    """
    try:
        return (unpickler or RestrictedUnpickler)(data, where, storage).load()
    except CkptlabError as error:
        if isinstance(error, CorruptCheckpointError) and where not in str(error):
            raise CorruptCheckpointError(f"{where} does not unpickle: {error}.") from None
        raise
    except _PICKLE_ERRORS as error:
        raise CorruptCheckpointError(
            f"{where} does not unpickle ({type(error).__name__}: {brief(str(error))[1:-1]})."
        ) from None
