"""A restricted unpickler for ``torch.save`` files that runs no code from the file (internal).

``find_class`` only returns ckptlab's own stand-ins from :data:`ALLOWED` (tensor rebuild
functions become lazy :class:`TensorRef` records, storage classes become dtype markers,
``OrderedDict`` a dict that accepts ``_metadata``); any other global raises
:class:`~ckptlab.errors.UnsafePickleError` naming it, before anything is called.  Persistent ids
become :class:`StorageRef` records; no storage byte is read here (docs/foreign-formats.md §11.3).
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ckptlab.errors import CorruptCheckpointError, UnsafePickleError

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


class StateDict(dict[Any, Any]):
    """Stand-in for ``OrderedDict``: keeps insertion order and accepts ``_metadata``."""


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
    shape, strides = tuple(size), tuple(stride)
    if not all(type(v) is int for v in (offset, *shape, *strides)) or len(shape) != len(strides):
        raise CorruptCheckpointError(
            f"a tensor has size {size!r}, stride {stride!r}, offset {offset!r}"
        )
    return TensorRef(storage, offset + storage.base, shape, strides, dtype)


def _parameter(tensor: Any, *_: Any) -> Any:
    if not isinstance(tensor, TensorRef):
        raise CorruptCheckpointError("_rebuild_parameter got something other than a tensor")
    return tensor


def _encode(text: Any, encoding: str = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise CorruptCheckpointError(
            f"_codecs.encode is only accepted for latin1 text, got {encoding!r}"
        )
    return text.encode("latin1")


def _numpy_dtype(name: Any, *_: Any) -> np.dtype[Any]:
    dtype = np.dtype(str(name))
    if dtype.kind in "OV":
        raise CorruptCheckpointError(f"numpy dtype {name!r} is not accepted in a checkpoint")
    return dtype


def _numpy_scalar(dtype: Any, data: Any = b"") -> Any:
    if (
        not isinstance(dtype, np.dtype)
        or not isinstance(data, bytes)
        or len(data) != dtype.itemsize
    ):
        raise CorruptCheckpointError("numpy scalar with an unexpected payload")
    return np.frombuffer(data, dtype=dtype)[0]


def _stand_ins() -> dict[tuple[str, str], Any]:
    table: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): StateDict,
        ("collections", "defaultdict"): lambda *_: StateDict(),
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_v2,
        ("torch._utils", "_rebuild_tensor_v3"): _rebuild_v3,
        ("torch._utils", "_rebuild_parameter"): _parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _parameter,
        ("torch.storage", "UntypedStorage"): StorageType(None),
        ("torch", "UntypedStorage"): StorageType(None),
        ("torch", "Size"): tuple,
        ("torch", "device"): lambda *args: ":".join(str(a) for a in args),
        ("_codecs", "encode"): _encode,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "slice"): slice,
        ("builtins", "complex"): complex,
        ("numpy", "dtype"): _numpy_dtype,
        ("numpy.core.multiarray", "scalar"): _numpy_scalar,
        ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    }
    table.update({("torch", name): StorageType(dtype) for name, dtype in STORAGE_DTYPES.items()})
    table.update({("torch", name): TorchDtype(name) for name in TORCH_DTYPES})
    return table


ALLOWED: dict[tuple[str, str], Any] = _stand_ins()
_PYTHON2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}
"""Protocol 0-2 pickles name Python 2 modules (the stdlib maps them the same way)."""
"""(module, name) -> the stand-in ckptlab uses for it; nothing else is ever looked up."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler over ``ALLOWED`` whose persistent ids become :class:`StorageRef` records."""

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
                f"{self.where} references the global {module}.{name}, which ckptlab does not load "
                "(it only rebuilds tensors, storages, dtypes, OrderedDict and plain values, and "
                "never imports or calls anything named in a file). If you trust the file, load it "
                "with torch and save its state_dict or convert it to safetensors.",
                f"{module}.{name}",
            )
        return found

    def persistent_load(self, pid: Any) -> Any:
        """Turn ``('storage', type, key, location, count, ...)`` into a :class:`StorageRef`."""
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise CorruptCheckpointError(
                f"{self.where} has an unexpected persistent id {pid!r:.80}"
            )
        return self._storage(pid)


_PICKLE_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    IndexError,
    RecursionError,
    MemoryError,
)


def load_pickle(
    data: io.BufferedIOBase, where: str, storage: Callable[[tuple[Any, ...]], StorageRef]
) -> Any:
    """Run the restricted unpickler; damaged pickles become :class:`CorruptCheckpointError`."""
    try:
        return RestrictedUnpickler(data, where, storage).load()
    except (UnsafePickleError, CorruptCheckpointError):
        raise
    except _PICKLE_ERRORS as error:
        raise CorruptCheckpointError(
            f"{where} does not unpickle ({type(error).__name__}: {error})."
        ) from None
