"""The checkpoint document: one versioned JSON object describing a checkpoint (internal).

It holds the object graph, and for every stored value its key, shape, dtype, byte size, checksum
and where its bytes are.  ``parse_document`` validates untrusted JSON and names the offending
field; nothing from a document is trusted before it passes here.  See FORMAT.md.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ckptlab.core._columnar import (
    MAX_CHUNKS,
    MAX_ELEMENTS,
    MAX_NAME,
    ArrayInfo,
    ValueTable,
    Where,
    graph_json,
    parse_arrays,
    parse_graph,
    parse_values,
)
from ckptlab.core._graph import Attribute, GraphNode, ObjectGraph, SlotRef
from ckptlab.core._keys import ATTRIBUTES, OPTIMIZER_SLOT, VARIABLE_VALUE, parse_key
from ckptlab.errors import CorruptCheckpointError, UnsupportedFormatError

FORMAT_VERSION = 3
READABLE_VERSIONS = frozenset({1, 2, 3})
MIN_CRC_BLOCK = 4096
"""Version 3: the smallest ``crc_block`` a reader accepts (bounds the checksums per byte)."""
ITEMSIZE = {
    "bool": 1,
    "int8": 1,
    "int16": 2,
    "int32": 4,
    "int64": 8,
    "uint8": 1,
    "uint16": 2,
    "uint32": 4,
    "uint64": 8,
    "float16": 2,
    "bfloat16": 2,
    "float32": 4,
    "float64": 8,
    "complex64": 8,
    "complex128": 16,
}
FOREIGN_ITEMSIZE = {
    "float8_e4m3fn": 1,
    "float8_e5m2": 1,
    "float8_e4m3fnuz": 1,
    "float8_e4m3b11fnuz": 1,
    "float8_e5m2fnuz": 1,
    "float8_e8m0fnu": 1,
    "float4_e2m1fn": 1,
    "int4": 1,
    "uint4": 1,
    "int2": 1,
    "uint2": 1,
    "string": 0,
    "complex32": 4,
    "float4_e2m1fn_x2": 1,
    "bits1x8": 1,
    "bits2x4": 1,
    "bits4x2": 1,
    "bits8": 1,
    "bits16": 2,
    "F4": 0,
    "F6_E2M3": 0,
    "F6_E3M2": 0,
}
"""Dtypes that only foreign checkpoints hold: ckptlab reads them (``string`` values are arrays
of ``bytes`` of any length), except :data:`UNREADABLE_DTYPES`, but its own format does not
store them.  An itemsize of 0: the value's stored length is its size."""
UNREADABLE_DTYPES = frozenset(
    {"complex32", "float4_e2m1fn_x2", "bits1x8", "bits2x4", "bits4x2", "bits8", "bits16"}
    | {"F4", "F6_E2M3", "F6_E3M2"}
)
"""Foreign dtypes neither numpy nor ml_dtypes has a type for (torch's ``complex32``,
``float4_e2m1fn_x2`` and ``bits*``; safetensors' ``F4`` and ``F6_*``, packed below a byte):
listed under the framework's name, refused on read (``UnsupportedFormatError``)."""


def is_floating(dtype: str) -> bool:
    """Whether values of format dtype ``dtype`` are floating-point (weights, not counters).

    Comparisons measure how much these changed; integers and bytes (step counters, Python
    state) are compared exactly but not measured.

    Examples
    --------
    >>> [is_floating(d) for d in ("float32", "bfloat16", "float8_e5m2", "int64", "uint8")]
    [True, True, True, False, False]
    """
    return dtype.startswith(("float", "bfloat", "complex"))


_ARRAY_PATH = re.compile(r"^values/[0-9]{1,9}\Z")
_PACK_PATH = re.compile(r"^packed/[a-z0-9]{1,16}\Z")
_ATTR_MARK = f"/{ATTRIBUTES}/"
_SLOT_MARK = f"/{OPTIMIZER_SLOT}/"
_BAD_SLOT = re.compile(
    re.escape(_SLOT_MARK)
    + rf"(?:[^/\x00]*{re.escape(_ATTR_MARK)}|[^.\x00]*{re.escape(_SLOT_MARK)})"
)
"""In de-escaped keys: a slot marker followed by one segment only, or by a second marker."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ForeignLocation:
    """Where a value of a foreign checkpoint (TensorFlow, PyTorch, safetensors) is stored.

    Descriptive data for listings and the explorer; the foreign reader that produced it is the
    only code that interprets it.
    """

    format: str
    """``tf-bundle``, ``tf-v1``, ``torch-zip``, ``torch-legacy`` or ``safetensors``."""
    file: str
    """File (or zip member) holding the bytes; the first one for a value stored in slices."""
    offset: int
    """Byte offset of the value in that file."""
    length: int
    """Stored bytes (for strings: including the length header)."""
    detail: str = ""
    """Anything else worth showing: slices, strides, the kind of checksum."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredValue:
    """A stored value: its spec, its checksum and where its bytes are."""

    key: str
    shape: tuple[int, ...]
    dtype: str
    crc32c: tuple[int, ...] = ()
    """One checksum per chunk for own arrays, one for the value when packed."""
    array: str = ""
    """Path of the Zarr array holding the bytes (``values/3`` or ``packed/float32``)."""
    offset: int | None = None
    """Element offset inside a packed array; ``None`` for a value with its own array."""
    chunks: tuple[int, ...] | None = None
    """Chunk shape of an own array; ``None`` when packed."""
    foreign: ForeignLocation | None = None
    """Set (instead of ``array``) for a value read from a foreign checkpoint."""

    @property
    def nbytes(self) -> int:
        """Size of the value in bytes (strings, dtypes packed below a byte: the stored bytes)."""
        itemsize = ITEMSIZE.get(self.dtype) or FOREIGN_ITEMSIZE[self.dtype]
        if not itemsize:
            return self.foreign.length if self.foreign is not None else 0
        return math.prod(self.shape) * itemsize

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)


@dataclass(frozen=True, slots=True, kw_only=True)
class PackInfo:
    """A packed array: a flat 1-D array of one dtype holding many small values."""

    path: str
    dtype: str
    length: int
    chunk: int


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class CheckpointDocument:
    """Everything a reader needs to list and locate a checkpoint's contents."""

    format_version: int
    kind: Literal["object", "name"]
    """``object``: an object graph; ``name``: keys are variable names (``Saver``)."""
    graph: ObjectGraph | None
    values: Mapping[str, StoredValue]
    """Key -> value; a :class:`ValueTable` (columns) for version 3."""
    packs: Mapping[str, PackInfo] = field(default_factory=dict)
    """Versions 1-2: the packed arrays."""
    writer: Mapping[str, Any] = field(default_factory=dict)
    crc_block: int = 0
    """Version 3: bytes per checksum of a packed value."""

    @property
    def arrays(self) -> tuple[ArrayInfo, ...]:
        """Version 3: every array holding values (empty for older versions)."""
        return self.values.arrays if isinstance(self.values, ValueTable) else ()

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-ready data (see FORMAT.md)."""
        if self.format_version >= 3:
            return self._columns_json()
        out: dict[str, Any] = {"format_version": self.format_version, "kind": self.kind}
        if self.graph is not None:
            out["graph"] = {"nodes": [_node_to_json(n) for n in self.graph.nodes]}
        out["values"] = {k: _value_to_json(v) for k, v in self.values.items()}
        out["packs"] = {
            p.path: {"dtype": p.dtype, "length": p.length, "chunk": p.chunk}
            for p in self.packs.values()
        }
        out["writer"] = dict(self.writer)
        return out

    def _columns_json(self) -> dict[str, Any]:
        table = self.values
        if not isinstance(table, ValueTable):
            raise TypeError("a version-3 document holds its values in a ValueTable")
        out: dict[str, Any] = {
            "format_version": self.format_version,
            "kind": self.kind,
            "arrays": [a.to_json() for a in table.arrays],
            "crc_block": self.crc_block,
            "values": table.values_json(),
        }
        if self.graph is not None:
            rows = dict(zip(table.keys_, range(len(table)), strict=True))
            out["graph"] = graph_json(self.graph, rows)
        out["writer"] = dict(self.writer)
        return out


def _node_to_json(node: GraphNode) -> dict[str, Any]:
    out: dict[str, Any] = {"children": [[n, i] for n, i in node.children.items()]}
    if node.attributes:
        out["attributes"] = [
            {"name": a.name, "key": a.key, "full_name": a.full_name} for a in node.attributes
        ]
    if node.slot_variables:
        out["slot_variables"] = [[s.original, s.slot, s.node] for s in node.slot_variables]
    if node.type_name:
        out["type"] = node.type_name
    if node.is_optimizer:
        out["optimizer"] = True
    return out


def _value_to_json(value: StoredValue) -> dict[str, Any]:
    out: dict[str, Any] = {
        "shape": list(value.shape),
        "dtype": value.dtype,
        "crc32c": list(value.crc32c),
        "array": value.array,
    }
    if value.offset is not None:
        out["offset"] = value.offset
    if value.chunks is not None:
        out["chunks"] = list(value.chunks)
    return out


# --- parsing (untrusted input) -----------------------------------------------------------------


def _get(where: Where, data: Mapping[str, Any], name: str, path: str, kind: type) -> Any:
    if name not in data:
        raise where.fail(f"{path}.{name}", f"a {kind.__name__}", "nothing")
    value = data[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise where.fail(f"{path}.{name}", f"a {kind.__name__}", value)
    return value


def _optional_list(where: Where, data: Mapping[str, Any], name: str, path: str) -> list[Any]:
    return _get(where, data, name, path, list) if name in data else []


def _int(where: Where, value: object, path: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value < high:
        raise where.fail(path, f"an integer in [{low}, {high})", value)
    return value


def _name(where: Where, value: object, path: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_NAME:
        raise where.fail(path, f"a string of at most {MAX_NAME} characters", value)
    return value


def total_nbytes(values: Mapping[str, StoredValue]) -> int:
    """Bytes of all ``values``; a columnar table's without one record per value."""
    if isinstance(values, ValueTable):
        sizes = [ITEMSIZE.get(a.dtype) or FOREIGN_ITEMSIZE[a.dtype] for a in values.arrays]
        return sum(
            map(
                operator.mul,
                map(math.prod, values.shapes),
                map(sizes.__getitem__, values.array_ids),
            )
        )
    return sum(v.nbytes for v in values.values())


def parse_listing(data: object, source: str) -> list[tuple[str, tuple[int, ...], str]]:
    """Validate a document's values only; return ``(key, shape, dtype)`` of each, in order.

    For listings (``ck.list_variables``): the object graph is neither read nor validated, so a
    100,000-value checkpoint lists quickly.  Raises like :func:`parse_document`.

    Examples
    --------
    >>> doc = {"format_version": 2, "kind": "name", "packs": {}, "values": {}}
    >>> parse_listing(doc, "c")
    []
    """
    where, version = _parse_version(data, source)
    assert isinstance(data, Mapping)
    if version >= 3:
        table = _parse_table(where, data, checksums=False)  # a listing reads no values
        listing = table.listing()
        if data["kind"] == "object":
            _check_keys(where, table.keys_)
        return listing
    where, packs, values_data = _parse_head(data, source)
    fast = _fast_values(values_data, packs)
    if fast is not None:
        listing = [(raw[0], raw[1], raw[2]) for raw in fast]
    else:
        values = _parse_values(where, values_data, packs).values()
        listing = [(v.key, v.shape, v.dtype) for v in values]
    assert isinstance(data, Mapping)
    if data["kind"] == "object":
        _check_keys(where, [key for key, _, _ in listing])
    return listing


def _parse_version(data: object, source: str) -> tuple[Where, int]:
    """Check the fields every version shares: ``format_version`` and ``kind``."""
    where = Where(source)
    if not isinstance(data, Mapping):
        raise where.fail("(top level)", "a JSON object", data)
    version = _get(where, data, "format_version", "document", int)
    if version not in READABLE_VERSIONS:
        raise UnsupportedFormatError(
            f"{source} has format_version {version}; this ckptlab reads versions "
            f"{sorted(READABLE_VERSIONS)}. Upgrade ckptlab (pip install -U ckptlab)."
        )
    kind = _get(where, data, "kind", "document", str)
    if kind not in ("object", "name"):
        raise where.fail("document.kind", "'object' or 'name'", kind)
    return where, version


def _parse_head(data: object, source: str) -> tuple[Where, dict[str, PackInfo], dict[str, Any]]:
    where, _ = _parse_version(data, source)
    assert isinstance(data, Mapping)
    packs = _parse_packs(where, data.get("packs", {}))
    return where, packs, _get(where, data, "values", "document", dict)


def _parse_table(where: Where, data: Mapping[str, Any], *, checksums: bool = True) -> ValueTable:
    """Version 3: the ``arrays`` and ``values`` columns (``checksums=False``: for listings)."""
    block = _int(where, data.get("crc_block"), "document.crc_block", MIN_CRC_BLOCK, 2**40)
    arrays = parse_arrays(where, data.get("arrays"), ITEMSIZE)
    return parse_values(where, data.get("values"), arrays, block, ITEMSIZE, checksums=checksums)


def parse_document(data: object, source: str) -> CheckpointDocument:
    """Validate untrusted JSON and build a :class:`CheckpointDocument`.

    Parameters
    ----------
    data
        The parsed JSON (the ``ckptlab`` attribute of the root group).
    source
        Where it came from, for error messages (a path or URL).

    Raises
    ------
    CorruptCheckpointError
        The document is malformed; the message names the field.
    UnsupportedFormatError
        ``format_version`` is one this version of ckptlab cannot read.
    """
    where, version = _parse_version(data, source)
    assert isinstance(data, Mapping)
    if version >= 3:
        return _parse_columns(where, data)
    where, packs, values_data = _parse_head(data, source)
    kind = data["kind"]
    values = _parse_values(where, values_data, packs)
    graph = None
    if kind == "object":
        _check_keys(where, list(values))
        graph_data = _get(where, data, "graph", "document", dict)
        graph = _parse_graph(where, _get(where, graph_data, "nodes", "graph", list), values)
    writer = data.get("writer", {})
    if not isinstance(writer, Mapping):
        raise where.fail("document.writer", "a JSON object", writer)
    return CheckpointDocument(
        format_version=version,
        kind=kind,
        graph=graph,
        values=values,
        packs=packs,
        writer=dict(writer),
    )


def _parse_columns(where: Where, data: Mapping[str, Any]) -> CheckpointDocument:
    table = _parse_table(where, data)
    kind = data["kind"]
    graph = None
    if kind == "object":
        _check_keys(where, table.keys_)
        graph = parse_graph(where, data.get("graph"), table)
    writer = data.get("writer", {})
    if not isinstance(writer, Mapping):
        raise where.fail("document.writer", "a JSON object", writer)
    return CheckpointDocument(
        format_version=data["format_version"],
        kind=kind,
        graph=graph,
        values=table,
        writer=dict(writer),
        crc_block=data["crc_block"],
    )


def _check_keys(where: Where, keys: list[str]) -> None:
    """Every key of an object-based document must parse (FORMAT.md section 3).

    Whole-column string checks accept the keys ckptlab writes; anything else is parsed key by
    key, and the first key that does not parse is named.
    """
    if _keys_as_written(keys):
        return
    for key in keys:
        try:
            parse_key(key)
        except CorruptCheckpointError as error:
            raise where.fail(
                f"values[{_short(key)}]",
                f"a value key in the grammar of FORMAT.md section 3 ('<path>/{ATTRIBUTES}/"
                "<attribute>', '.' and '/' inside a name written '..' and '.S')",
                key,
            ) from error


def _keys_as_written(keys: list[str]) -> bool:
    """Whether every key is ``<path>[/.OPTIMIZER_SLOT/<path>/<slot>]/.ATTRIBUTES/VARIABLE_VALUE``.

    Checked on all keys at once with string counts: with the escapes ``..`` and ``.S`` replaced
    by a neutral character, the only dots left must be the markers, each key must end with
    exactly one attribute marker and at most one slot marker must precede it, followed by at
    least two names.  ``False`` only means "check each key" (see :func:`_check_keys`).
    """
    count = len(keys)
    joined = "\x00".join(keys) + "\x00"
    if joined.count("\x00") != count:
        return False
    if ".." in joined or ".S" in joined:
        joined = joined.replace("..", "\x01").replace(".S", "\x01")
    slots = joined.count(_SLOT_MARK)
    if (
        joined.count(_ATTR_MARK) != count
        or joined.count(f"{_ATTR_MARK}{VARIABLE_VALUE}\x00") != count
        or joined.count(".") != count + slots
    ):
        return False
    return slots == 0 or _BAD_SLOT.search(joined) is None


def _parse_packs(where: Where, data: object) -> dict[str, PackInfo]:
    if not isinstance(data, Mapping):
        raise where.fail("document.packs", "a JSON object", data)
    packs: dict[str, PackInfo] = {}
    for path, entry in data.items():
        at = f"packs[{path!r}]"
        if not isinstance(path, str) or not _PACK_PATH.match(path):
            raise where.fail(at, "a path like 'packed/float32'", path)
        if not isinstance(entry, Mapping):
            raise where.fail(at, "a JSON object", entry)
        dtype = _get(where, entry, "dtype", at, str)
        if dtype not in ITEMSIZE:
            raise where.fail(f"{at}.dtype", f"one of {sorted(ITEMSIZE)}", dtype)
        length = _int(where, entry.get("length"), f"{at}.length", 0, MAX_ELEMENTS)
        chunk = _int(where, entry.get("chunk"), f"{at}.chunk", 1, MAX_ELEMENTS)
        if -(-length // chunk) > MAX_CHUNKS:
            raise where.fail(f"{at}.chunk", f"at most {MAX_CHUNKS} chunks of the pack", chunk)
        packs[path] = PackInfo(path=path, dtype=dtype, length=length, chunk=chunk)
    return packs


_Raw = tuple[str, tuple[int, ...], str, tuple[int, ...], str, int | None, tuple[int, ...] | None]
"""A validated value entry: key, shape, dtype, crc32c, array, offset, chunks."""


def _all_of(kind: type, items: Iterable[Any]) -> bool:
    """Whether every item's type is exactly ``kind`` (subclasses such as bool for int are not)."""
    return set(map(type, items)) <= {kind}


def _ints(items: list[Any], low: int, high: int) -> bool:
    """Whether every item is an int (not a bool) in ``[low, high)``."""
    return _all_of(int, items) and (not items or (min(items) >= low and max(items) < high))


def _fast_values(data: Mapping[str, Any], packs: Mapping[str, PackInfo]) -> list[_Raw] | None:
    """Validate every value entry with whole-column checks; ``None`` when anything is unusual.

    A document written by ckptlab passes; anything else goes through the per-entry checks of
    :func:`_parse_value`, which name the offending field.  This keeps opening 100,000 values fast.
    """
    keys = list(data)
    entries = list(data.values())
    if not _all_of(str, keys) or (keys and max(map(len, keys)) > MAX_NAME):
        return None
    if not _all_of(dict, entries):
        return None
    shapes = [e.get("shape") for e in entries]
    crcs = [e.get("crc32c") for e in entries]
    dtypes = [e.get("dtype") for e in entries]
    arrays = [e.get("array") for e in entries]
    if not (
        _all_of(list, shapes)
        and (not shapes or max(map(len, shapes)) <= 32)
        and _all_of(list, crcs)
        and _all_of(str, arrays)
        and _all_of(str, dtypes)
        and set(dtypes) <= ITEMSIZE.keys()
        and _ints([d for s in shapes for d in s], 0, MAX_ELEMENTS)
        and _ints([c for cs in crcs for c in cs], 0, 2**32)
    ):
        return None
    sizes = [math.prod(s) for s in shapes]
    if sizes and max(sizes) >= MAX_ELEMENTS:
        return None
    empty = [s for n, s in zip(sizes, shapes, strict=True) if not n]
    if empty and max(map(shape_extent, empty)) >= MAX_ELEMENTS:
        return None
    out: list[_Raw] = []
    for key, entry, shape, dtype, crc, array, size in zip(
        keys, entries, shapes, dtypes, crcs, arrays, sizes, strict=True
    ):
        offset = entry.get("offset")
        if offset is not None:
            pack = packs.get(array)
            if (
                pack is None
                or pack.dtype != dtype
                or type(offset) is not int
                or offset < 0
                or offset + size > pack.length
                or len(crc) != 1
            ):
                return None
            out.append((key, tuple(shape), dtype, tuple(crc), array, offset, None))
            continue
        chunks = entry.get("chunks")
        if "offset" in entry or not _ARRAY_PATH.match(array) or type(chunks) is not list:
            return None
        if len(chunks) != len(shape) or not _ints(chunks, 1, MAX_ELEMENTS):
            return None
        count = math.prod(-(-d // c) for d, c in zip(shape, chunks, strict=True)) if size else 0
        if count > MAX_CHUNKS or len(crc) != count:
            return None
        out.append((key, tuple(shape), dtype, tuple(crc), array, None, tuple(chunks)))
    return out


def _parse_values(
    where: Where, data: Mapping[str, Any], packs: Mapping[str, PackInfo]
) -> dict[str, StoredValue]:
    fast = _fast_values(data, packs)
    if fast is not None:
        return {
            key: StoredValue(
                key=key,
                shape=shape,
                dtype=dtype,
                crc32c=crc,
                array=array,
                offset=offset,
                chunks=chunks,
            )
            for key, shape, dtype, crc, array, offset, chunks in fast
        }
    values: dict[str, StoredValue] = {}
    for key, entry in data.items():
        at = f"values[{_short(key)}]"
        _name(where, key, at)
        if not isinstance(entry, Mapping):
            raise where.fail(at, "a JSON object", entry)
        values[key] = _parse_value(where, key, entry, at, packs)
    return values


def _short(name: object) -> str:
    shown = repr(name)
    return shown if len(shown) <= 80 else f"{shown[:77]}..."


def shape_extent(shape: Sequence[int]) -> int:
    """The product of a shape's non-zero dims, bounded like the element count.

    numpy cannot create even an empty array of shape ``[0, 2**47, 2**47]``.

    Examples
    --------
    >>> shape_extent([0, 3, 4]), shape_extent([]), shape_extent([2, 5])
    (12, 1, 10)
    """
    return math.prod(d for d in shape if d)


def _parse_value(
    where: Where, key: str, entry: Mapping[str, Any], at: str, packs: Mapping[str, PackInfo]
) -> StoredValue:
    shape_data = _get(where, entry, "shape", at, list)
    shape = tuple(_int(where, d, f"{at}.shape", 0, MAX_ELEMENTS) for d in shape_data)
    if len(shape) > 32 or shape_extent(shape) >= MAX_ELEMENTS:
        raise where.fail(
            f"{at}.shape", "at most 32 dims whose non-zero ones multiply to less than 2**48", shape
        )
    dtype = _get(where, entry, "dtype", at, str)
    if dtype not in ITEMSIZE:
        raise where.fail(f"{at}.dtype", f"one of {sorted(ITEMSIZE)}", dtype)
    crcs = tuple(
        _int(where, c, f"{at}.crc32c", 0, 2**32) for c in _get(where, entry, "crc32c", at, list)
    )
    array = _get(where, entry, "array", at, str)
    size = math.prod(shape)
    if "offset" in entry:
        pack = packs.get(array)
        if pack is None:
            raise where.fail(f"{at}.array", f"one of the packs {sorted(packs)}", array)
        if pack.dtype != dtype:
            raise where.fail(f"{at}.dtype", f"{pack.dtype} (the dtype of {array})", dtype)
        offset = _int(where, entry["offset"], f"{at}.offset", 0, MAX_ELEMENTS)
        if offset + size > pack.length:
            raise where.fail(f"{at}.offset", f"a range inside {array} ({pack.length})", offset)
        if len(crcs) != 1:
            raise where.fail(f"{at}.crc32c", "one checksum for a packed value", list(crcs))
        return StoredValue(
            key=key, shape=shape, dtype=dtype, crc32c=crcs, array=array, offset=offset
        )
    if not _ARRAY_PATH.match(array):
        raise where.fail(f"{at}.array", "a path like 'values/12'", array)
    chunk_data = _get(where, entry, "chunks", at, list)
    chunks = tuple(_int(where, c, f"{at}.chunks", 1, MAX_ELEMENTS) for c in chunk_data)
    if len(chunks) != len(shape):
        raise where.fail(f"{at}.chunks", f"{len(shape)} chunk dims", list(chunks))
    expected = math.prod(-(-d // c) for d, c in zip(shape, chunks, strict=True)) if size else 0
    if expected > MAX_CHUNKS:
        raise where.fail(f"{at}.chunks", f"at most {MAX_CHUNKS} chunks", list(chunks))
    if len(crcs) != expected:
        raise where.fail(f"{at}.crc32c", f"{expected} checksums (one per chunk)", len(crcs))
    return StoredValue(key=key, shape=shape, dtype=dtype, crc32c=crcs, array=array, chunks=chunks)


def parse_graph_nodes(data: object, values: Mapping[str, StoredValue], source: str) -> ObjectGraph:
    """Validate a graph in version 2's node form (``{"nodes": [...]}``, values named by key).

    Multi-worker saves ship the graph this way; the coordinator numbers the values.
    """
    where = Where(source)
    if not isinstance(data, Mapping):
        raise where.fail("graph", "a JSON object", data)
    return _parse_graph(where, _get(where, data, "nodes", "graph", list), values)


def _parse_graph(
    where: Where, nodes_data: list[Any], values: Mapping[str, StoredValue]
) -> ObjectGraph:
    count = len(nodes_data)
    if count == 0:
        raise where.fail("graph.nodes", "at least the root node", nodes_data)
    nodes: list[GraphNode] = []
    for node_id, entry in enumerate(nodes_data):
        node = _fast_node(entry, count, values)
        if node is None:  # something unusual: the per-field checks name it (or accept it)
            at = f"graph.nodes[{node_id}]"
            if not isinstance(entry, Mapping):
                raise where.fail(at, "a JSON object", entry)
            node = _parse_node(where, entry, at, count, values)
        nodes.append(node)
    return ObjectGraph(nodes=tuple(nodes), source=where.source)


def _fast_node(entry: Any, count: int, values: Mapping[str, StoredValue]) -> GraphNode | None:
    """A node as ckptlab writes it, checked with few branches; ``None`` when anything is unusual."""
    if type(entry) is not dict:
        return None
    pairs = entry.get("children")
    if type(pairs) is not list:
        return None
    children: dict[str, int] = {}
    for pair in pairs:  # most nodes are variables: no children
        if type(pair) is not list or len(pair) != 2:
            return None
        name, child = pair
        if type(name) is not str or type(child) is not int or not 0 <= child < count:
            return None
        if len(name) > MAX_NAME or name in children:
            return None
        children[name] = child
    attributes: tuple[Attribute, ...] = ()
    items = entry.get("attributes", ())
    if type(items) is not list and items != ():  # absent is fine, null is not
        return None
    for item in items:
        if type(item) is not dict:
            return None
        name, key, full_name = item.get("name"), item.get("key"), item.get("full_name", "")
        if type(name) is not str or type(key) is not str or type(full_name) is not str:
            return None
        if key not in values or len(name) > MAX_NAME or len(full_name) > MAX_NAME:
            return None
        attributes += (Attribute(name=name, key=key, full_name=full_name),)
    slots: tuple[SlotRef, ...] = ()
    triples = entry.get("slot_variables", ())
    if type(triples) is not list and triples != ():  # absent is fine, null is not
        return None
    for triple in triples:
        if type(triple) is not list or len(triple) != 3:
            return None
        original, slot, node = triple
        if type(original) is not int or type(node) is not int or type(slot) is not str:
            return None
        if not (0 <= original < count and 0 <= node < count) or len(slot) > MAX_NAME:
            return None
        slots += (SlotRef(original=original, slot=slot, node=node),)
    type_name = entry.get("type", "")
    if type(type_name) is not str or len(type_name) > MAX_NAME:
        return None
    return GraphNode(
        children=children,
        attributes=attributes,
        slot_variables=slots,
        type_name=type_name,
        is_optimizer=bool(entry.get("optimizer", False)),
    )


def _parse_node(
    where: Where, entry: Mapping[str, Any], at: str, count: int, values: Mapping[str, StoredValue]
) -> GraphNode:
    children: dict[str, int] = {}
    for index, pair in enumerate(_get(where, entry, "children", at, list)):
        here = f"{at}.children[{index}]"
        if not isinstance(pair, list) or len(pair) != 2:
            raise where.fail(here, "a [name, node id] pair", pair)
        name = _name(where, pair[0], here)
        if name in children:
            raise where.fail(here, "unique child names", name)
        children[name] = _int(where, pair[1], here, 0, count)
    attributes = []
    for index, item in enumerate(_optional_list(where, entry, "attributes", at)):
        here = f"{at}.attributes[{index}]"
        if not isinstance(item, Mapping):
            raise where.fail(here, "a JSON object", item)
        key = _name(where, item.get("key"), f"{here}.key")
        if key not in values:
            raise where.fail(f"{here}.key", "a key listed in document.values", key)
        attributes.append(
            Attribute(
                name=_name(where, item.get("name"), f"{here}.name"),
                key=key,
                full_name=_name(where, item.get("full_name", ""), f"{here}.full_name"),
            )
        )
    slots = []
    for index, triple in enumerate(_optional_list(where, entry, "slot_variables", at)):
        here = f"{at}.slot_variables[{index}]"
        if not isinstance(triple, list) or len(triple) != 3:
            raise where.fail(here, "an [original, slot name, slot node] triple", triple)
        slots.append(
            SlotRef(
                original=_int(where, triple[0], here, 0, count),
                slot=_name(where, triple[1], here),
                node=_int(where, triple[2], here, 0, count),
            )
        )
    type_name = entry.get("type", "")
    return GraphNode(
        children=children,
        attributes=tuple(attributes),
        slot_variables=tuple(slots),
        type_name=_name(where, type_name, f"{at}.type"),
        is_optimizer=bool(entry.get("optimizer", False)),
    )
