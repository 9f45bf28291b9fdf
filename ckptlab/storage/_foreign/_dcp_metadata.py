"""The ``.metadata`` file of a PyTorch Distributed Checkpoint, read without torch (internal).

``.metadata`` is a pickle of ``torch.distributed.checkpoint.metadata.Metadata``.  It goes
through ckptlab's restricted unpickler with the allow-list extended, for this file only, by
stand-ins for DCP's metadata classes.  Each stand-in was reviewed against torch's source
(``torch/distributed/checkpoint/metadata.py`` and ``filesystem.py``):

* ``Metadata``, ``TensorStorageMetadata``, ``BytesStorageMetadata``, ``ChunkStorageMetadata``,
  ``StorageMeta``, ``MetadataIndex`` and ``filesystem._StorageInfo`` are dataclasses pickled as
  "new object, then BUILD with the field dict": their stand-ins are slotted records that accept
  exactly their fields (anything else is damage) and never run code.
* ``TensorProperties`` (also its torch 2.0 home ``torch.distributed._shard.sharded_tensor``)
  pickles a 5-tuple ``(dtype, layout, requires_grad, memory_format_code, pin_memory)``.
* ``_MEM_FORMAT_ENCODING`` (an ``Enum``) and ``torch.serialization._get_layout`` are called with
  an int and a layout name: the stand-ins return them after checking their type.
* ``pathlib.PosixPath``/``WindowsPath`` (``StorageMeta.checkpoint_id``) become strings.

BUILD on a stand-in goes through its ``__setstate__``, so state can only land in a fresh
record's own slots (a BUILD aimed at a class fails), and no stand-in touches shared state.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, ClassVar

from ckptlab.errors import CorruptCheckpointError
from ckptlab.storage._foreign._unpickle import (
    TORCH_DTYPES,
    RestrictedUnpickler,
    StandIn,
    StorageRef,
    TorchDtype,
    check_key,
    load_pickle,
)

MODULE = "torch.distributed.checkpoint"
MAX_METADATA = 256 * 2**20


class Record:
    """A DCP dataclass stand-in: slots for its fields, filled only by a validated BUILD."""

    __slots__ = ()
    FIELDS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *args: Any) -> None:
        """Positional construction (REDUCE) fills the fields in order."""
        if len(args) > len(self.FIELDS):
            raise CorruptCheckpointError(f"{type(self).__name__} got {len(args)} arguments")
        for name, value in zip(self.FIELDS, args, strict=False):
            object.__setattr__(self, name, value)

    def __setstate__(self, state: Any) -> None:
        """Accept ``{field: value}`` (or ``(None, {field: value})``) naming known fields only."""
        if isinstance(state, tuple) and len(state) == 2 and state[0] is None:
            state = state[1]
        if not isinstance(state, dict) or not set(state) <= set(self.FIELDS):
            raise CorruptCheckpointError(
                f"{type(self).__name__} got the state {state!r:.120}; expected fields of "
                f"{', '.join(self.FIELDS)}"
            )
        for name, value in state.items():
            object.__setattr__(self, name, value)

    def get(self, name: str, default: Any = None) -> Any:
        """A field's value, or ``default`` when the pickle did not set it."""
        return getattr(self, name, default)


class Metadata(Record):
    """``torch.distributed.checkpoint.metadata.Metadata``."""

    FIELDS = ("state_dict_metadata", "planner_data", "storage_data", "storage_meta", "version")
    __slots__ = FIELDS


class TensorStorageMetadata(Record):
    """A tensor: its properties (dtype), full size, and the chunks it was saved in."""

    FIELDS = ("properties", "size", "chunks")
    __slots__ = FIELDS


class BytesStorageMetadata(Record):
    """A non-tensor value, saved as a ``torch.save`` blob."""

    FIELDS = ()
    __slots__ = FIELDS


class ChunkStorageMetadata(Record):
    """One saved chunk of a tensor: ``offsets`` and ``sizes`` per dimension."""

    FIELDS = ("offsets", "sizes")
    __slots__ = FIELDS


class StorageMeta(Record):
    """Where and when the checkpoint was written (informative)."""

    FIELDS = ("checkpoint_id", "save_id", "load_id", "modules")
    __slots__ = FIELDS


class MetadataIndex(Record):
    """The key of ``storage_data``: a value's name and, for a tensor chunk, its offsets."""

    FIELDS = ("fqn", "offset", "index")
    __slots__ = FIELDS


class StorageInfo(Record):
    """``filesystem._StorageInfo``: the file, byte offset and length of one saved item."""

    FIELDS = ("relative_path", "offset", "length", "transform_descriptors")
    __slots__ = FIELDS


class TensorProperties(Record):
    """``TensorProperties``: pickled as a 5-tuple whose first item is the dtype."""

    FIELDS = ("dtype", "layout", "requires_grad", "memory_format", "pin_memory")
    __slots__ = FIELDS

    def __setstate__(self, state: Any) -> None:
        """Accept the 5-tuple ``TensorProperties.__getstate__`` returns."""
        if not isinstance(state, tuple) or len(state) != 5:
            raise CorruptCheckpointError(f"TensorProperties got the state {state!r:.120}")
        for name, value in zip(self.FIELDS, state, strict=True):
            object.__setattr__(self, name, value)


def _memory_format(code: Any) -> int:
    if type(code) is not int or code not in (0, 1, 2):
        raise CorruptCheckpointError(f"_MEM_FORMAT_ENCODING got {code!r}")
    return code


def _layout(name: Any) -> str:
    if not isinstance(name, str) or len(name) > 64:
        raise CorruptCheckpointError(f"_get_layout got {name!r:.80}")
    return name


def _path(*parts: Any) -> str:
    if not all(isinstance(p, str) for p in parts):
        raise CorruptCheckpointError(f"a path made of {parts!r:.80}")
    return "/".join(parts)


_METADATA = f"{MODULE}.metadata"
_SHARD = "torch.distributed._shard.sharded_tensor.metadata"
_TABLE: dict[tuple[str, str], Callable[..., Any]] = {
    (_METADATA, "Metadata"): Metadata,
    (_METADATA, "TensorStorageMetadata"): TensorStorageMetadata,
    (_METADATA, "BytesStorageMetadata"): BytesStorageMetadata,
    (_METADATA, "ChunkStorageMetadata"): ChunkStorageMetadata,
    (_METADATA, "StorageMeta"): StorageMeta,
    (_METADATA, "MetadataIndex"): MetadataIndex,
    (_METADATA, "TensorProperties"): TensorProperties,
    (_METADATA, "_MEM_FORMAT_ENCODING"): _memory_format,
    (_SHARD, "TensorProperties"): TensorProperties,
    (_SHARD, "MEM_FORMAT_ENCODING"): _memory_format,
    (f"{MODULE}.filesystem", "_StorageInfo"): StorageInfo,
    ("torch.serialization", "_get_layout"): _layout,
    ("pathlib", "PosixPath"): _path,
    ("pathlib", "PurePosixPath"): _path,
    ("pathlib", "WindowsPath"): _path,
    ("pathlib", "PureWindowsPath"): _path,
}
ALLOWED: dict[tuple[str, str], StandIn] = {
    key: StandIn(".".join(key), make) for key, make in _TABLE.items()
}
"""DCP's metadata classes (module, name) -> stand-in; accepted in ``.metadata`` files only."""


class MetadataUnpickler(RestrictedUnpickler):
    """The restricted unpickler, plus :data:`ALLOWED`; persistent ids are refused.

    Two rules of the torch unpickler are widened for DCP's records, and only for them: BUILD
    may set the state of a fresh :class:`Record` (through its validating ``__setstate__``), and
    a :class:`MetadataIndex` record may be a dict key (``storage_data``).
    """

    def find_class(self, module: str, name: str) -> Any:
        """Return the stand-in for a DCP metadata class or a global the torch reader allows."""
        found = ALLOWED.get((module, name))
        return found if found is not None else super().find_class(module, name)

    def _may_build(self, target: Any) -> bool:
        return isinstance(target, Record) or super()._may_build(target)

    def _key(self, key: Any) -> Any:
        return key if type(key) is MetadataIndex else check_key(key)


def looks_like_metadata(head: bytes) -> bool:
    """Whether a file starts like a pickled DCP ``Metadata`` (its first global names DCP)."""
    return head[:1] == b"\x80" and MODULE.encode() in head[:96]


def _no_storage(pid: tuple[Any, ...]) -> StorageRef:
    raise CorruptCheckpointError("a DCP .metadata file holds a storage reference")


def read_metadata(data: bytes, where: str) -> Metadata:
    """Unpickle ``.metadata`` with the restricted unpickler; return its :class:`Metadata`."""
    found = load_pickle(io.BytesIO(data), where, _no_storage, MetadataUnpickler)
    if not isinstance(found, Metadata):
        raise CorruptCheckpointError(
            f"{where} holds a {type(found).__name__}, not a DCP Metadata object."
        )
    return found


def dtype_of(properties: Any, where: str) -> str:
    """The dtype name of a ``TensorProperties`` stand-in."""
    dtype = properties.get("dtype") if isinstance(properties, TensorProperties) else None
    if not isinstance(dtype, TorchDtype) or dtype.name not in TORCH_DTYPES:
        raise CorruptCheckpointError(f"{where} has tensor properties {properties!r:.80}")
    return TORCH_DTYPES[dtype.name]
