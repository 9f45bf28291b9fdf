"""Format version 3's columnar document: values and the object graph as columns (internal).

A version-3 document stores one list per field (keys, shapes, array numbers, offsets,
checksums; edges, attributes and slots of the graph) instead of one JSON object per value or
node.  It is a third the size of version 2's, parses in a fraction of the time, and is checked
column by column with whole-list operations, so opening and listing 100,000 values does almost
no per-value Python work.  :class:`ValueTable` keeps the columns and builds a
:class:`StoredValue` only when one is asked for.  See FORMAT.md sections 2-3.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Any

from ckptlab.core._graph import GraphColumns, ObjectGraph
from ckptlab.errors import CorruptCheckpointError

MAX_NAME = 65536
MAX_ELEMENTS = 2**48
MAX_CHUNKS = 2**20
MAX_DIMS = 32
CRC_BLOCK = 16 * 2**20
"""Bytes per checksum of a packed value: a value of 40 MiB has three (16, 16 and 8 MiB)."""
_DATA_PATH = re.compile(r"^data/[a-z0-9_]{1,32}\Z")
_OWN_PATH = re.compile(r"^values/[0-9]{1,9}\Z")


@dataclass(frozen=True, slots=True, kw_only=True)
class ArrayInfo:
    """A Zarr array of a version-3 checkpoint: a packed data array or a value's own array."""

    path: str
    """``data/<name>`` (packed values, sharded) or ``values/<n>`` (one value, chunked)."""
    dtype: str
    length: int = 0
    """Packed arrays: the element count."""
    chunk: int = 0
    """Packed arrays: elements per inner chunk (the unit plain Zarr readers fetch)."""
    shard: int = 0
    """Packed arrays: elements per shard (a multiple of ``chunk``; one stored object each)."""
    chunks: tuple[int, ...] | None = None
    """Own arrays: the chunk shape (chunked along axis 0)."""

    @property
    def packed(self) -> bool:
        """Whether values are packed into this array at offsets."""
        return self.chunks is None

    def to_json(self) -> dict[str, Any]:
        """The array's entry in the document's ``arrays`` list."""
        if self.chunks is not None:
            return {"path": self.path, "dtype": self.dtype, "chunks": list(self.chunks)}
        return {
            "path": self.path,
            "dtype": self.dtype,
            "length": self.length,
            "chunk": self.chunk,
            "shard": self.shard,
        }


class ValueTable(Mapping[str, Any]):
    """Every stored value of a version-3 checkpoint as columns; a mapping key -> StoredValue.

    Lookups build one :class:`StoredValue` at a time; readers that work on many values use the
    columns (:attr:`keys`, :attr:`shapes`, :attr:`array_ids`, :attr:`offsets`, :attr:`crcs`)
    and :meth:`position` directly.

    Examples
    --------
    >>> table = ValueTable(
    ...     keys=["a"], shapes=[(2,)], array_ids=[0], offsets=[0], crcs=[(7,)],
    ...     arrays=(ArrayInfo(path="data/float32", dtype="float32", length=2, chunk=2, shard=2),))
    >>> table["a"].shape, table["a"].array, table["a"].offset
    ((2,), 'data/float32', 0)
    """

    __slots__ = ("_extents", "_index", "array_ids", "arrays", "crcs", "keys_", "offsets", "shapes")

    def __init__(
        self,
        *,
        keys: list[str],
        shapes: Sequence[Sequence[int]],
        array_ids: list[int],
        offsets: list[int],
        crcs: Sequence[Sequence[int]],
        arrays: tuple[ArrayInfo, ...],
    ) -> None:
        self.keys_ = keys
        self.shapes = shapes
        """One shape per value (lists or tuples of ints)."""
        self.array_ids = array_ids
        """Index into :attr:`arrays` of the array holding each value."""
        self.offsets = offsets
        """Element offset of each value in its packed array (0 for own arrays)."""
        self.crcs = crcs
        """Checksums of each value (FORMAT.md section 2.1)."""
        self.arrays = arrays
        self._index: dict[str, int] | None = None
        self._extents: tuple[list[int], list[int]] | None = None

    def position(self, key: str) -> int | None:
        """The row of ``key`` (``None`` when absent)."""
        return self.index().get(key)

    def index(self) -> Mapping[str, int]:
        """Key -> row of every value (built on first use)."""
        if self._index is None:
            self._index = dict(zip(self.keys_, range(len(self.keys_)), strict=True))
        return self._index

    def byte_extents(self) -> tuple[list[int], list[int]]:
        """Byte offset in its array and byte size of every row (computed on first use).

        Kept with the table, which every reader of the checkpoint shares: a reader opened per
        value (restore-on-create fetches each new variable's value) must not redo every row.
        """
        if self._extents is None:
            from ckptlab.core._document import ITEMSIZE

            itemsizes = [ITEMSIZE[info.dtype] for info in self.arrays]
            per_row = list(map(itemsizes.__getitem__, self.array_ids))
            self._extents = (
                list(map(operator.mul, self.offsets, per_row)),
                list(map(operator.mul, map(math.prod, self.shapes), per_row)),
            )
        return self._extents

    def dtype(self, row: int) -> str:
        """The dtype of the value in ``row``."""
        return self.arrays[self.array_ids[row]].dtype

    def row(self, row: int) -> Any:
        """The :class:`StoredValue` of ``row``."""
        from ckptlab.core._document import StoredValue

        info = self.arrays[self.array_ids[row]]
        return StoredValue(
            key=self.keys_[row],
            shape=tuple(self.shapes[row]),
            dtype=info.dtype,
            crc32c=tuple(self.crcs[row]),
            array=info.path,
            offset=None if info.chunks is not None else self.offsets[row],
            chunks=info.chunks,
        )

    def listing(self) -> list[tuple[str, tuple[int, ...], str]]:
        """``(key, shape, dtype)`` of every value, in order."""
        dtypes = [a.dtype for a in self.arrays]
        return list(
            zip(
                self.keys_,
                map(tuple, self.shapes),
                map(dtypes.__getitem__, self.array_ids),
                strict=True,
            )
        )

    def __getitem__(self, key: str) -> Any:
        row = self.position(key)
        if row is None:
            raise KeyError(key)
        return self.row(row)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.position(key) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys_)

    def __len__(self) -> int:
        return len(self.keys_)

    def values_json(self) -> dict[str, Any]:
        """The document's ``values`` object: the columns themselves, not copies.

        Shapes and checksums may be tuples, which JSON encoders write as lists.
        """
        return {
            "key": self.keys_,
            "shape": self.shapes,
            "array": self.array_ids,
            "offset": self.offsets,
            "crc32c": self.crcs,
        }


def crc_counts(nbytes: list[int], block: int) -> list[int]:
    """Checksums of packed values of ``nbytes`` bytes: one per ``block`` bytes (none if empty).

    Examples
    --------
    >>> crc_counts([0, 1, 16, 17], 16)
    [0, 1, 1, 2]
    """
    return list(map(operator.neg, map(operator.floordiv, map(operator.neg, nbytes), repeat(block))))


# --- writing -------------------------------------------------------------------------------------


def graph_json(graph: ObjectGraph, rows: Mapping[str, int]) -> dict[str, Any]:
    """The version-3 ``graph`` object; attributes name values by row (``rows``: key -> row)."""
    columns = graph.columns
    types: dict[str, int] = {}
    type_column = [types.setdefault(t, len(types)) if t else -1 for t in columns.type_names]
    return {
        "types": list(types),
        "type": type_column,
        "optimizer": columns.optimizers,
        "edges": {"parent": columns.parents, "name": columns.names, "child": columns.children},
        "attributes": {
            "node": columns.owners,
            "name": columns.attribute_names,
            "value": list(map(rows.__getitem__, columns.keys)),
            "full_name": columns.full_names,
        },
        "slots": {
            "node": columns.slot_owners,
            "original": columns.originals,
            "name": columns.slot_names,
            "slot": columns.slot_nodes,
        },
    }


# --- parsing (untrusted input) -------------------------------------------------------------------


class Where:
    """Builds error messages naming the document and the JSON field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, field_path: str, expected: str, found: object) -> CorruptCheckpointError:
        """The error for ``field_path`` holding ``found`` instead of ``expected``."""
        shown = repr(found)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        return CorruptCheckpointError(
            f"Checkpoint document of {self.source} is invalid at {field_path}: expected "
            f"{expected}, found {shown}. The checkpoint is damaged or was not written by "
            "ckptlab; restore from another checkpoint or re-save it."
        )


def _is_int(value: object) -> bool:
    return type(value) is int


def _all_of(kind: type, items: Sequence[Any]) -> bool:
    """Whether every item's type is exactly ``kind`` (bool is not an int here)."""
    return set(map(type, items)) <= {kind}


def _first_bad(items: Sequence[Any], good: Any) -> int:
    return next(i for i, item in enumerate(items) if not good(item))


def _member(where: Where, data: Mapping[str, Any], name: str, path: str, kind: type) -> Any:
    value = data.get(name)
    if type(value) is not kind:
        raise where.fail(f"{path}.{name}", f"a JSON {kind.__name__}", value)
    return value


def int_column(
    where: Where, data: Mapping[str, Any], name: str, path: str, low: int, high: int
) -> list[int]:
    """A list of ints in ``[low, high)``, checked in bulk; the first bad item is named."""
    items: list[int] = _member(where, data, name, path, list)
    if _all_of(int, items) and (not items or (min(items) >= low and max(items) < high)):
        return items
    index = _first_bad(items, lambda v: _is_int(v) and low <= v < high)
    raise where.fail(f"{path}.{name}[{index}]", f"an integer in [{low}, {high})", items[index])


def str_column(where: Where, data: Mapping[str, Any], name: str, path: str) -> list[str]:
    """A list of strings of at most :data:`MAX_NAME` characters."""
    items: list[str] = _member(where, data, name, path, list)
    if _all_of(str, items) and (not items or max(map(len, items)) <= MAX_NAME):
        return items
    index = _first_bad(items, lambda v: type(v) is str and len(v) <= MAX_NAME)
    raise where.fail(
        f"{path}.{name}[{index}]", f"a string of at most {MAX_NAME} characters", items[index]
    )


def _same_length(where: Where, path: str, columns: Mapping[str, list[Any]]) -> int:
    lengths = {name: len(column) for name, column in columns.items()}
    if len(set(lengths.values())) > 1:
        raise where.fail(path, "columns of equal length", lengths)
    return next(iter(lengths.values()), 0)


def parse_arrays(where: Where, data: object, itemsize: Mapping[str, int]) -> tuple[ArrayInfo, ...]:
    """Validate the document's ``arrays`` list."""
    if type(data) is not list:
        raise where.fail("document.arrays", "a JSON list", data)
    if len(data) > MAX_CHUNKS:
        raise where.fail("document.arrays", f"at most {MAX_CHUNKS} arrays", len(data))
    arrays = []
    seen: set[str] = set()
    for number, entry in enumerate(data):
        at = f"arrays[{number}]"
        if type(entry) is not dict:
            raise where.fail(at, "a JSON object", entry)
        path = entry.get("path")
        if type(path) is not str or not (_DATA_PATH.match(path) or _OWN_PATH.match(path)):
            raise where.fail(f"{at}.path", "a path like 'data/float32' or 'values/3'", path)
        if path in seen:
            raise where.fail(f"{at}.path", "a path no other array has", path)
        seen.add(path)
        dtype = entry.get("dtype")
        if type(dtype) is not str or dtype not in itemsize:
            raise where.fail(f"{at}.dtype", f"one of {sorted(itemsize)}", dtype)
        if path.startswith("values/"):
            chunks = int_column(where, entry, "chunks", at, 1, MAX_ELEMENTS)
            if len(chunks) > MAX_DIMS:
                raise where.fail(f"{at}.chunks", f"at most {MAX_DIMS} dims", chunks)
            arrays.append(ArrayInfo(path=path, dtype=dtype, chunks=tuple(chunks)))
            continue
        length = _bounded(where, entry.get("length"), f"{at}.length", 0, MAX_ELEMENTS)
        chunk = _bounded(where, entry.get("chunk"), f"{at}.chunk", 1, MAX_ELEMENTS)
        shard = _bounded(where, entry.get("shard"), f"{at}.shard", chunk, MAX_ELEMENTS)
        if shard % chunk or shard // chunk > MAX_CHUNKS:
            raise where.fail(
                f"{at}.shard", f"a multiple of chunk ({chunk}), at most {MAX_CHUNKS} chunks", shard
            )
        if -(-length // shard) > MAX_CHUNKS:
            raise where.fail(f"{at}.shard", f"at most {MAX_CHUNKS} shards", shard)
        arrays.append(ArrayInfo(path=path, dtype=dtype, length=length, chunk=chunk, shard=shard))
    return tuple(arrays)


def _bounded(where: Where, value: object, path: str, low: int, high: int) -> int:
    if not _is_int(value) or not low <= value < high:  # type: ignore[operator]
        raise where.fail(path, f"an integer in [{low}, {high})", value)
    assert isinstance(value, int)
    return value


def parse_values(
    where: Where,
    data: object,
    arrays: tuple[ArrayInfo, ...],
    block: int,
    itemsize: Mapping[str, int],
    *,
    checksums: bool = True,
) -> ValueTable:
    """Validate the ``values`` columns against ``arrays``; return them as a :class:`ValueTable`.

    ``checksums=False`` (listings, which read no values) leaves the ``crc32c`` column unchecked
    beyond its length: the table must then not be used to read values.
    """
    if type(data) is not dict:
        raise where.fail("document.values", "a JSON object of columns", data)
    at = "values"
    keys = str_column(where, data, "key", at)
    shapes = _member(where, data, "shape", at, list)
    array_ids = int_column(where, data, "array", at, 0, len(arrays))
    offsets = int_column(where, data, "offset", at, 0, MAX_ELEMENTS)
    crcs = _member(where, data, "crc32c", at, list)
    count = _same_length(
        where,
        at,
        {"key": keys, "shape": shapes, "array": array_ids, "offset": offsets, "crc32c": crcs},
    )
    if len(set(keys)) != count:
        seen: set[str] = set()
        index = _first_bad(keys, lambda k: not (k in seen or seen.add(k)))  # type: ignore[func-returns-value]
        raise where.fail(f"{at}.key[{index}]", "a key no other value has", keys[index])
    sizes = _check_shapes(where, shapes)
    if checksums:
        _check_crc_lists(where, crcs)
    sizes_in_bytes = list(
        map(operator.mul, sizes, map([itemsize[a.dtype] for a in arrays].__getitem__, array_ids))
    )
    owned = [i for i, a in enumerate(arrays) if not a.packed]
    if not owned:
        expected = crc_counts(sizes_in_bytes, block) if checksums else []
    else:
        expected = [0] * count
        _check_own(where, shapes, sizes, array_ids, offsets, arrays, expected, owned)
        packed = [i for i in range(count) if arrays[array_ids[i]].packed]
        for i, c in zip(
            packed, crc_counts([sizes_in_bytes[i] for i in packed], block), strict=True
        ):
            expected[i] = c
    found = list(map(len, crcs)) if checksums else expected
    if found != expected:
        index = next(i for i, (f, e) in enumerate(zip(found, expected, strict=True)) if f != e)
        raise where.fail(f"{at}.crc32c[{index}]", f"{expected[index]} checksums", crcs[index])
    _check_extents(where, sizes, array_ids, offsets, arrays)
    return ValueTable(
        keys=keys, shapes=shapes, array_ids=array_ids, offsets=offsets, crcs=crcs, arrays=arrays
    )


def _extent(shape: Sequence[int]) -> int:
    """The product of the non-zero dims (an empty value's dims must still be sane)."""
    return math.prod(d for d in shape if d)


def _check_shapes(where: Where, shapes: list[Any]) -> list[int]:
    """Every shape is a list of at most 32 ints in [0, 2**48), its elements fewer than 2**48.

    The non-zero dims of an empty value must multiply to fewer than 2**48 too (FORMAT.md §2.1:
    ``[0, 2**47, 2**47]`` is invalid).
    """
    if _all_of(list, shapes) and (not shapes or max(map(len, shapes)) <= MAX_DIMS):
        dims = list(chain.from_iterable(shapes))
        if _all_of(int, dims) and (not dims or (min(dims) >= 0 and max(dims) < MAX_ELEMENTS)):
            sizes = list(map(math.prod, shapes))
            if not sizes or max(sizes) < MAX_ELEMENTS:
                empty = [s for s, n in zip(shapes, sizes, strict=True) if not n]
                if not empty or max(map(_extent, empty)) < MAX_ELEMENTS:
                    return sizes
    for index, shape in enumerate(shapes):
        if (
            type(shape) is not list
            or len(shape) > MAX_DIMS
            or not all(_is_int(d) and 0 <= d < MAX_ELEMENTS for d in shape)
            or _extent(shape) >= MAX_ELEMENTS
        ):
            raise where.fail(
                f"values.shape[{index}]",
                f"at most {MAX_DIMS} sizes and fewer than 2**48 elements (non-zero sizes counted)",
                shape,
            )
    raise AssertionError("unreachable")  # pragma: no cover


def _check_crc_lists(where: Where, crcs: list[Any]) -> None:
    if _all_of(list, crcs):
        flat = list(chain.from_iterable(crcs))
        if _all_of(int, flat) and (not flat or (min(flat) >= 0 and max(flat) < 2**32)):
            return
    for index, entry in enumerate(crcs):
        if type(entry) is not list or not all(_is_int(c) and 0 <= c < 2**32 for c in entry):
            raise where.fail(f"values.crc32c[{index}]", "a list of integers in [0, 2**32)", entry)


def _check_own(
    where: Where,
    shapes: list[list[int]],
    sizes: list[int],
    array_ids: list[int],
    offsets: list[int],
    arrays: tuple[ArrayInfo, ...],
    expected: list[int],
    owned: list[int],
) -> None:
    """Own arrays: each holds exactly one value at offset 0, chunked to fit its shape."""
    holder: dict[int, int] = {}
    for row, array_id in enumerate(array_ids):
        info = arrays[array_id]
        if info.chunks is None:
            continue
        if array_id in holder:
            raise where.fail(f"values.array[{row}]", "an own array no other value uses", array_id)
        holder[array_id] = row
        shape = shapes[row]
        if offsets[row] != 0:
            raise where.fail(
                f"values.offset[{row}]", "0 (the value has its own array)", offsets[row]
            )
        if len(info.chunks) != len(shape):
            raise where.fail(f"arrays[{array_id}].chunks", f"{len(shape)} dims", list(info.chunks))
        grid = math.prod(-(-d // c) for d, c in zip(shape, info.chunks, strict=True))
        if grid > MAX_CHUNKS:
            raise where.fail(f"arrays[{array_id}].chunks", f"at most {MAX_CHUNKS} chunks", grid)
        expected[row] = grid if sizes[row] else 0
    unused = sorted(set(owned) - set(holder))
    if unused:
        raise where.fail(f"arrays[{unused[0]}]", "an own array some value uses", "no value")


def _check_extents(
    where: Where,
    sizes: list[int],
    array_ids: list[int],
    offsets: list[int],
    arrays: tuple[ArrayInfo, ...],
) -> None:
    """Every packed value lies inside its array."""
    lengths = [a.length if a.packed else MAX_ELEMENTS for a in arrays]
    ends = list(map(operator.add, offsets, sizes))
    limits = list(map(lengths.__getitem__, array_ids))
    if all(map(operator.le, ends, limits)):
        return
    index = next(i for i, (e, lim) in enumerate(zip(ends, limits, strict=True)) if e > lim)
    raise where.fail(
        f"values.offset[{index}]",
        f"a range inside {arrays[array_ids[index]].path} ({limits[index]} elements)",
        offsets[index],
    )


def parse_graph(where: Where, data: object, values: ValueTable) -> ObjectGraph:
    """Validate the version-3 ``graph`` columns and build the :class:`ObjectGraph`."""
    if type(data) is not dict:
        raise where.fail("document.graph", "a JSON object", data)
    types = str_column(where, data, "types", "graph")
    type_ids = int_column(where, data, "type", "graph", -1, len(types))
    count = len(type_ids)
    if count == 0:
        raise where.fail("graph.type", "at least the root node", type_ids)
    optimizers = set(int_column(where, data, "optimizer", "graph", 0, count))
    edges = _member(where, data, "edges", "graph", dict)
    parents = int_column(where, edges, "parent", "graph.edges", 0, count)
    names = str_column(where, edges, "name", "graph.edges")
    children = int_column(where, edges, "child", "graph.edges", 0, count)
    _same_length(where, "graph.edges", {"parent": parents, "name": names, "child": children})
    if len(set(zip(parents, names, strict=True))) != len(parents):
        seen: set[tuple[int, str]] = set()
        for number, edge in enumerate(zip(parents, names, strict=True)):
            if edge in seen:
                raise where.fail(f"graph.edges.name[{number}]", "unique child names", edge[1])
            seen.add(edge)
    attributes = _member(where, data, "attributes", "graph", dict)
    owners = int_column(where, attributes, "node", "graph.attributes", 0, count)
    attribute_names = str_column(where, attributes, "name", "graph.attributes")
    rows = int_column(where, attributes, "value", "graph.attributes", 0, len(values))
    full_names = str_column(where, attributes, "full_name", "graph.attributes")
    _same_length(
        where,
        "graph.attributes",
        {"node": owners, "name": attribute_names, "value": rows, "full_name": full_names},
    )
    slots = _member(where, data, "slots", "graph", dict)
    slot_owners = int_column(where, slots, "node", "graph.slots", 0, count)
    originals = int_column(where, slots, "original", "graph.slots", 0, count)
    slot_names = str_column(where, slots, "name", "graph.slots")
    slot_nodes = int_column(where, slots, "slot", "graph.slots", 0, count)
    _same_length(
        where,
        "graph.slots",
        {"node": slot_owners, "original": originals, "name": slot_names, "slot": slot_nodes},
    )
    type_names = [*types, ""]  # index -1: no type
    columns = GraphColumns(
        type_names=list(map(type_names.__getitem__, type_ids)),
        optimizers=sorted(optimizers),
        parents=parents,
        names=names,
        children=children,
        owners=owners,
        attribute_names=attribute_names,
        keys=list(map(values.keys_.__getitem__, rows)),
        full_names=full_names,
        slot_owners=slot_owners,
        originals=originals,
        slot_names=slot_names,
        slot_nodes=slot_nodes,
    )
    return ObjectGraph(columns=columns, source=where.source)
