"""TensorFlow TensorBundle checkpoints (``P.index`` + ``P.data-KKKKK-of-NNNNN``) (internal).

TF2 object-based checkpoints (kind ``object``: the ``_CHECKPOINTABLE_OBJECT_GRAPH`` proto
becomes the :class:`~ckptlab.core.ObjectGraph`) and TF1 ``Saver`` V2 checkpoints (kind ``name``).
Every entry is checked against the data files when the checkpoint is opened; values are read
on demand and verified against their masked crc32c (docs/foreign-formats.md §2-§6).
"""

from __future__ import annotations

import math
import posixpath
from typing import Any

import numpy as np

from ckptlab.core import (
    Attribute,
    CheckpointDocument,
    ForeignLocation,
    GraphNode,
    ObjectGraph,
    SlotRef,
    StoredValue,
)
from ckptlab.errors import CorruptCheckpointError, NotFoundError, UnsupportedFormatError
from ckptlab.storage._foreign._base import ForeignCheckpoint, check_shape
from ckptlab.storage._foreign._members import check_inside
from ckptlab.storage._foreign._slicekey import decode_slice_key
from ckptlab.storage._foreign._slices import (
    Region,
    check_coverage,
    region_slices,
    resolve_region,
    show_region,
)
from ckptlab.storage._foreign._strings import read_string_tensor
from ckptlab.storage._foreign._table import Table, mask
from ckptlab.storage._foreign._tfproto import (
    DTYPES,
    UNSUPPORTED_DTYPES,
    Entry,
    Extent,
    Header,
    parse_entry,
    parse_header,
    parse_object_graph,
)
from ckptlab.storage._foreign._tfv1 import looks_like_v1
from ckptlab.storage._foreign._wire import WireError
from ckptlab.storage._kv import ByteStore
from ckptlab.storage._layout import numpy_dtype
from ckptlab.storage._stream import raw_bytes

GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
MAX_INDEX_BYTES = 1 << 31


def data_file(prefix: str, shard: int, shards: int) -> str:
    """``ckpt.data-00000-of-00001``: the basename of one data shard."""
    return f"{posixpath.basename(prefix)}.data-{shard:05d}-of-{shards:05d}"


class TensorBundle(ForeignCheckpoint):
    """An open TensorBundle: TF2 object-based (with its graph) or TF1 ``Saver`` V2."""

    checksums = True

    def __init__(self, store: ByteStore, prefix: str, table: Table | None = None) -> None:
        self.store = store
        self.path = prefix
        index = f"{prefix}.index"
        where = store.display(index)
        table = table if table is not None else read_index(store, index)
        if looks_like_v1(table):
            raise UnsupportedFormatError(
                f"{where} is a TensorFlow 1 Saver V1 checkpoint file, not the index of a bundle "
                f"prefix; open it by its own path ({where!r})."
            )
        header, entries, slices = _read_index(table)
        self.header = header
        self.entries = entries
        self.slices = slices
        self.format_name = "TensorFlow checkpoint"
        self._check_header(where)
        self._data_files = [
            data_file(prefix, k, header.num_shards) for k in range(header.num_shards)
        ]
        self._shard_sizes = [self._shard_size(k) for k in range(header.num_shards)]
        self.opaque = {
            k: UNSUPPORTED_DTYPES[e.dtype]
            for k, e in entries.items()
            if e.dtype in UNSUPPORTED_DTYPES
        }
        """Keys of values ckptlab cannot represent (``variant``, ``resource``): not listed."""
        values = {
            k: self._describe(k, e)
            for k, e in entries.items()
            if k != GRAPH_KEY and k not in self.opaque
        }
        graph = self._object_graph(values) if GRAPH_KEY in entries else None
        self.format_name = (
            "TensorFlow 2 object-based checkpoint"
            if graph is not None
            else "TensorFlow 1 Saver checkpoint"
        )
        document = CheckpointDocument(
            format_version=0,
            kind="object" if graph is not None else "name",
            graph=graph,
            values=values,
            writer={
                "format": self.format_name,
                "num_shards": header.num_shards,
                "opaque": self.opaque,
            },
        )
        super().__init__(store, prefix, document)

    # -- opening -------------------------------------------------------------------------------

    def _check_header(self, where: str) -> None:
        header = self.header
        if header.big_endian:
            raise UnsupportedFormatError(
                f"{where} was written on a big-endian machine; ckptlab reads little-endian bundles."
            )
        if header.min_consumer > 1 or 1 in header.bad_consumers:
            raise UnsupportedFormatError(
                f"{where} needs a newer bundle reader (min_consumer {header.min_consumer}, "
                f"bad consumers {list(header.bad_consumers)}); upgrade ckptlab."
            )
        if not 1 <= header.num_shards <= 1 << 20:
            raise CorruptCheckpointError(f"{where} declares {header.num_shards} data shards.")

    def _shard_size(self, shard: int) -> int:
        name = self.file(self._data_files[shard])
        check_inside(self.store, posixpath.dirname(self.path), name)
        size = self.store.size(name)
        if size is None:
            raise NotFoundError(
                f"{self.store.display(name)} is missing: {self.store.display(self.path)}.index "
                f"lists {self.header.num_shards} data file(s). Copy every file of the checkpoint."
            )
        return size

    def _describe(self, key: str, entry: Entry) -> StoredValue:
        where = f"Entry {key!r} of {self.store.display(self.path)}.index"
        dtype = DTYPES.get(entry.dtype)
        if dtype is None:
            raise UnsupportedFormatError(
                f"{where} has TensorFlow dtype {entry.dtype}, which ckptlab cannot represent."
            )
        shape = check_shape(entry.shape, where)
        if entry.slices:
            return self._describe_sliced(key, entry, dtype, shape, where)
        self._check_entry(entry, dtype, shape, where)
        return StoredValue(key=key, shape=shape, dtype=dtype, foreign=self._location(entry))

    def _describe_sliced(
        self, key: str, entry: Entry, dtype: str, shape: tuple[int, ...], where: str
    ) -> StoredValue:
        regions = [resolve_region(e, shape, where) for e in entry.slices]
        pieces = [self._check_slice(key, entry, region, where) for region in regions]
        check_coverage(regions, shape, where)
        first = min(pieces, key=lambda p: (p.shard_id, p.offset))
        files = len({p.shard_id for p in pieces})
        location = ForeignLocation(
            format="tf-bundle",
            file=self._data_files[first.shard_id],
            offset=first.offset,
            length=sum(p.size for p in pieces),
            detail=f"saved in {len(pieces)} slices across {files} data file(s); masked crc32c each",
        )
        return StoredValue(key=key, shape=shape, dtype=dtype, foreign=location)

    def _location(self, entry: Entry) -> ForeignLocation:
        shards = self.header.num_shards
        return ForeignLocation(
            format="tf-bundle",
            file=self._data_files[entry.shard_id],
            offset=entry.offset,
            length=entry.size,
            detail=f"masked crc32c {entry.crc32c:#010x}; shard {entry.shard_id + 1} of {shards}",
        )

    def _check_entry(self, entry: Entry, dtype: str, shape: tuple[int, ...], where: str) -> None:
        if not 0 <= entry.shard_id < self.header.num_shards:
            raise CorruptCheckpointError(
                f"{where} names data shard {entry.shard_id}; there are {self.header.num_shards}."
            )
        limit = self._shard_sizes[entry.shard_id]
        if entry.offset < 0 or entry.size < 0 or entry.offset + entry.size > limit:
            raise CorruptCheckpointError(
                f"{where} points at bytes [{entry.offset}, {entry.offset + entry.size}) of "
                f"{self._data_files[entry.shard_id]}, which has "
                f"{limit}."
            )
        count = math.prod(shape)
        itemsize = numpy_dtype(dtype).itemsize
        if dtype != "string" and entry.size != count * itemsize:
            raise CorruptCheckpointError(
                f"{where} holds {entry.size} bytes; shape {list(shape)} of {dtype} needs "
                f"{count * itemsize}."
            )
        if dtype == "string" and count and entry.size < count + 4:
            raise CorruptCheckpointError(
                f"{where} holds {entry.size} bytes, too few for {count} strings."
            )

    def _check_slice(self, key: str, full: Entry, region: Region, where: str) -> Entry:
        entry = self.slices.get((key, region))
        if entry is None:
            raise CorruptCheckpointError(
                f"{where} lists slice {show_region(region)}, which is not in the index."
            )
        dtype = DTYPES.get(full.dtype, "")
        if entry.dtype != full.dtype or tuple(n for _, n in region) != entry.shape:
            raise CorruptCheckpointError(
                f"{where}: slice {show_region(region)} has another dtype or shape."
            )
        self._check_entry(entry, dtype, entry.shape, f"{where} (slice {show_region(region)})")
        return entry

    def _object_graph(self, values: dict[str, StoredValue]) -> ObjectGraph:
        entry = self.entries[GRAPH_KEY]
        where = f"{self.store.display(self.path)}.index: {GRAPH_KEY}"
        self._check_entry(entry, "string", entry.shape, where)
        raw = self.raw_object_graph()
        try:
            nodes = parse_object_graph(raw)
        except WireError as error:
            raise CorruptCheckpointError(f"{where} does not parse ({error}).") from None
        return build_object_graph(nodes, values, where, skip=set(self.opaque))

    def raw_object_graph(self) -> bytes:
        """Return the serialized ``TrackableObjectGraph`` (verified) as TensorFlow stored it."""
        entry = self.entries[GRAPH_KEY]
        array = self._read_entry(GRAPH_KEY, entry, "string", ())
        return bytes(array.reshape(-1)[0])

    # -- reading -------------------------------------------------------------------------------

    def _load(self, value: StoredValue, out: np.ndarray[Any, Any] | None) -> np.ndarray[Any, Any]:
        entry = self.entries[value.key]
        if not entry.slices:
            return self._read_entry(value.key, entry, value.dtype, value.shape, out)
        target = out if out is not None else self.allocate(value)
        for extents in entry.slices:
            region = resolve_region(extents, value.shape, value.key)
            piece = self.slices[(value.key, region)]
            target[region_slices(region)] = self._read_entry(
                value.key, piece, value.dtype, piece.shape
            )
        return target

    def _read_entry(
        self,
        key: str,
        entry: Entry,
        dtype: str,
        shape: tuple[int, ...],
        out: np.ndarray[Any, Any] | None = None,
    ) -> np.ndarray[Any, Any]:
        name = self._data_files[entry.shard_id]
        if dtype == "string":
            raw = bytearray(entry.size)
            self.read_bytes(name, entry.offset, memoryview(raw), key)
            try:
                array, crc = read_string_tensor(bytes(raw), math.prod(shape))
            except WireError as error:
                raise self.damaged(key, f"string tensor does not parse ({error})") from None
            self._check_crc(key, crc, entry)
            return array.reshape(shape)
        target = out if out is not None else np.empty(shape, numpy_dtype(dtype))
        raw_out = raw_bytes(target)
        self._check_crc(key, self.read_crc32c(name, entry.offset, raw_out, key), entry)
        return target

    def _check_crc(self, key: str, crc: int, entry: Entry) -> None:
        if mask(crc) != entry.crc32c:
            raise self.damaged(
                key,
                f"checksum mismatch (stored {entry.crc32c:#010x}, computed {mask(crc):#010x}) in "
                f"{self._data_files[entry.shard_id]}",
            )


def read_index(store: ByteStore, index: str) -> Table:
    """Read and check a bundle's ``.index`` table (at most 2 GiB)."""
    where = store.display(index)
    size = store.size(index) or 0
    if size > MAX_INDEX_BYTES:
        raise CorruptCheckpointError(
            f"{where} is {size} bytes; ckptlab refuses indexes over 2 GiB."
        )
    return Table(store.read(index), where)


def _read_index(table: Table) -> tuple[Header, dict[str, Entry], dict[tuple[str, Region], Entry]]:
    header: Header | None = None
    entries: dict[str, Entry] = {}
    pieces: list[tuple[str, tuple[Extent, ...], Entry]] = []
    try:
        for raw_key, value in table:
            if raw_key == b"":
                header = parse_header(value)
            elif raw_key.startswith(b"\x00"):
                name, extents = decode_slice_key(raw_key)
                pieces.append((name, extents, parse_entry(value)))
            else:
                entries[raw_key.decode("utf-8", errors="replace")] = parse_entry(value)
    except WireError as error:
        raise table.fail(f"an entry does not parse ({error})") from None
    if header is None:
        raise table.fail("there is no header entry (key '')")
    slices = {}
    for name, extents, entry in pieces:
        full = entries.get(name)
        if full is None:
            raise table.fail(f"slice of {name!r} without an entry for the whole tensor")
        slices[(name, resolve_region(extents, full.shape, name))] = entry
    return header, entries, slices


def build_object_graph(
    nodes: list[Any], values: dict[str, StoredValue], where: str, skip: set[str]
) -> ObjectGraph:
    """Build an :class:`ObjectGraph` from decoded ``TrackableObject`` nodes, ids checked.

    Attributes whose keys are in ``skip`` (values ckptlab cannot represent) are left out.
    """
    count = len(nodes)
    if not count:
        raise CorruptCheckpointError(f"{where} has no nodes.")
    built = []
    for node_id, node in enumerate(nodes):
        ids = [c for _, c in node.children] + [i for s in node.slot_variables for i in (s[0], s[2])]
        if any(not 0 <= i < count for i in ids):
            raise CorruptCheckpointError(
                f"{where}: node {node_id} references a node outside 0..{count - 1}."
            )
        kept = [a for a in node.attributes if a[2] not in skip]
        missing = [a[2] for a in kept if a[2] not in values]
        if missing:
            raise CorruptCheckpointError(
                f"{where}: node {node_id} names keys not in the index: {missing}."
            )
        children: dict[str, int] = {}
        for name, child in node.children:
            children.setdefault(name, child)
        built.append(
            GraphNode(
                children=children,
                attributes=tuple(Attribute(name=n, key=k, full_name=f) for n, f, k in kept),
                slot_variables=tuple(
                    SlotRef(original=o, slot=s, node=n) for o, s, n in node.slot_variables
                ),
                is_optimizer=bool(node.slot_variables),
            )
        )
    return ObjectGraph(nodes=tuple(built), source=where)
