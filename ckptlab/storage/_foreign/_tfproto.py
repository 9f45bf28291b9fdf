"""TensorFlow's checkpoint messages, decoded from the wire format (internal).

``BundleHeaderProto``, ``BundleEntryProto`` (with ``TensorShapeProto`` and ``TensorSliceProto``),
``TrackableObjectGraph``, and for V1 files ``SavedTensorSlices`` and ``TensorProto``.  Field
numbers are TensorFlow 2.21's (docs/foreign-formats.md §3, §4, §6 and §7); proto3 defaults apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ckptlab.storage._foreign._wire import (
    I32,
    LEN,
    fields,
    message,
    packed_varints,
    signed,
    text,
)

DTYPES = {
    1: "float32",
    2: "float64",
    3: "int32",
    4: "uint8",
    5: "int16",
    6: "int8",
    7: "string",
    8: "complex64",
    9: "int64",
    10: "bool",
    11: "int8",
    12: "uint8",
    13: "int32",
    14: "bfloat16",
    15: "int16",
    16: "uint16",
    17: "uint16",
    18: "complex128",
    19: "float16",
    22: "uint32",
    23: "uint64",
    24: "float8_e5m2",
    25: "float8_e4m3fn",
    26: "float8_e4m3fnuz",
    27: "float8_e4m3b11fnuz",
    28: "float8_e5m2fnuz",
    29: "int4",
    30: "uint4",
    31: "int2",
    32: "uint2",
    33: "float4_e2m1fn",
}
"""TensorFlow ``DataType`` enum -> ckptlab dtype name (quantized types read as their storage)."""
UNSUPPORTED_DTYPES = {20: "resource", 21: "variant"}
Extent = tuple[int, int]
"""(start, length) along one dimension; length -1 means the whole dimension."""


@dataclass(frozen=True, slots=True)
class Header:
    """``BundleHeaderProto``."""

    num_shards: int = 1
    big_endian: bool = False
    min_consumer: int = 0
    bad_consumers: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """``BundleEntryProto``: where one tensor (or slice) is and its checksum."""

    dtype: int = 0
    shape: tuple[int, ...] = ()
    unknown_rank: bool = False
    shard_id: int = 0
    offset: int = 0
    size: int = 0
    crc32c: int = 0
    slices: tuple[tuple[Extent, ...], ...] = ()


def parse_header(data: bytes) -> Header:
    """Decode a ``BundleHeaderProto``."""
    values: dict[str, object] = {}
    bad: list[int] = []
    for number, _wire, value in fields(data):
        if number == 1:
            values["num_shards"] = signed(_int(value))
        elif number == 2:
            values["big_endian"] = _int(value) == 1
        elif number == 3:
            for inner, _, item in fields(message(value)):
                if inner == 2:
                    values["min_consumer"] = signed(_int(item))
                elif inner == 3:
                    bad.extend(packed_varints(item))
    return Header(**values, bad_consumers=tuple(bad))  # type: ignore[arg-type]


def parse_shape(data: bytes) -> tuple[tuple[int, ...], bool]:
    """Decode a ``TensorShapeProto``: (dims, unknown_rank)."""
    dims = []
    unknown = False
    for number, _wire, value in fields(data):
        if number == 2:
            size = 0
            for inner, _, item in fields(message(value)):
                if inner == 1:
                    size = signed(_int(item))
            dims.append(size)
        elif number == 3:
            unknown = bool(value)
    return tuple(dims), unknown


def parse_slice(data: bytes) -> tuple[Extent, ...]:
    """Decode a ``TensorSliceProto`` into (start, length) per dimension."""
    extents = []
    for number, _wire, value in fields(data):
        if number == 1:
            start, length = 0, -1
            for inner, _, item in fields(message(value)):
                if inner == 1:
                    start = signed(_int(item))
                elif inner == 2:
                    length = signed(_int(item))
            extents.append((start, length))
    return tuple(extents)


def parse_entry(data: bytes) -> Entry:
    """Decode a ``BundleEntryProto``."""
    values: dict[str, object] = {}
    slices = []
    for number, wire, value in fields(data):
        if number == 1:
            values["dtype"] = _int(value)
        elif number == 2:
            values["shape"], values["unknown_rank"] = parse_shape(message(value))
        elif number in (3, 4, 5):
            values[("shard_id", "offset", "size")[number - 3]] = signed(_int(value))
        elif number == 6 and wire == I32:
            values["crc32c"] = value
        elif number == 7:
            slices.append(parse_slice(message(value)))
    return Entry(**values, slices=tuple(slices))  # type: ignore[arg-type]


def _int(value: int | bytes) -> int:
    if isinstance(value, bytes):
        return packed_varints(value)[-1] if value else 0
    return value


# --- the object graph -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackableNode:
    """One ``TrackableObject``: children, attributes (name, full name, key) and slots."""

    children: tuple[tuple[str, int], ...] = ()
    attributes: tuple[tuple[str, str, str], ...] = ()
    slot_variables: tuple[tuple[int, str, int], ...] = ()
    has_checkpoint_values: bool | None = None
    registered_saver: str = ""


def parse_object_graph(data: bytes) -> list[TrackableNode]:
    """Decode a ``TrackableObjectGraph`` into its nodes (node id = position)."""
    return [_parse_node(message(value)) for number, _, value in fields(data) if number == 1]


def _parse_node(data: bytes) -> TrackableNode:
    children, attributes, slots = [], [], []
    parts: dict[str, object] = {}
    for number, wire, value in fields(data):
        if number == 1:
            item = _strings_and_ints(message(value))
            children.append((str(item.get(2, "")), int(item.get(1, 0))))
        elif number == 2:
            item = _strings_and_ints(message(value))
            attributes.append((str(item.get(1, "")), str(item.get(2, "")), str(item.get(3, ""))))
        elif number == 3:
            item = _strings_and_ints(message(value))
            slots.append((int(item.get(1, 0)), str(item.get(2, "")), int(item.get(3, 0))))
        elif number == 4 and wire == LEN:
            parts["registered_saver"] = str(_strings_and_ints(message(value)).get(1, ""))
        elif number == 5 and wire == LEN:
            parts["has_checkpoint_values"] = bool(_strings_and_ints(message(value)).get(1, 0))
    return TrackableNode(
        children=tuple(children),
        attributes=tuple(attributes),
        slot_variables=tuple(slots),
        **parts,  # type: ignore[arg-type]
    )


def _strings_and_ints(data: bytes) -> dict[int, str | int]:
    """Decode a flat message of strings and ints: field number -> value (strings decoded)."""
    out: dict[int, str | int] = {}
    for number, wire, value in fields(data):
        out[number] = text(value) if wire == LEN else signed(_int(value))
    return out


# --- V1 (SavedTensorSlices) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SliceMeta:
    """``SavedSliceMeta``: a tensor of a V1 file and the slices it was saved in."""

    name: str
    shape: tuple[int, ...]
    dtype: int
    slices: tuple[tuple[Extent, ...], ...]


@dataclass(slots=True, kw_only=True)
class TensorProto:
    """The parts of a ``TensorProto`` a checkpoint uses."""

    dtype: int = 0
    shape: tuple[int, ...] = ()
    content: bytes = b""
    repeated: dict[int, list[tuple[int, int | bytes]]] = field(default_factory=dict)
    """Typed repeated fields as stored, by field number (``float_val`` 5, ``int_val`` 7, ...):
    ``(wire type, value)`` per occurrence, packed (``bytes``) or not; decoded by the reader."""


def parse_v1_meta(data: bytes) -> list[SliceMeta]:
    """Decode the metadata entry (key ``""``) of a V1 checkpoint."""
    out = []
    for number, _, value in fields(data):
        if number != 1:
            continue
        for inner, _, meta in fields(message(value)):
            if inner == 1:
                out.append(_parse_slice_meta(message(meta)))
    return out


def _parse_slice_meta(data: bytes) -> SliceMeta:
    name, dtype = "", 0
    shape: tuple[int, ...] = ()
    slices: list[tuple[Extent, ...]] = []
    for number, _, value in fields(data):
        if number == 1:
            name = text(value)
        elif number == 2:
            shape = parse_shape(message(value))[0]
        elif number == 3:
            dtype = _int(value)
        elif number == 4:
            slices.append(parse_slice(message(value)))
    return SliceMeta(name=name, shape=shape, dtype=dtype, slices=tuple(slices))


def parse_v1_slice(data: bytes) -> tuple[str, tuple[Extent, ...], TensorProto]:
    """Decode a V1 data entry: (tensor name, slice, its ``TensorProto``)."""
    name, tensor = "", TensorProto()
    extents: tuple[Extent, ...] = ()
    for number, _, value in fields(data):
        if number != 2:
            continue
        for inner, _, item in fields(message(value)):
            if inner == 1:
                name = text(item)
            elif inner == 2:
                extents = parse_slice(message(item))
            elif inner == 3:
                tensor = parse_tensor(message(item))
    return name, extents, tensor


REPEATED_FIELDS = frozenset({5, 6, 7, 8, 9, 10, 11, 12, 13, 16, 17})
"""``float_val`` ... ``uint64_val``: the typed repeated fields of a ``TensorProto``."""


def parse_tensor(data: bytes) -> TensorProto:
    """Decode a ``TensorProto``: dtype, shape, raw content, typed repeated fields left encoded."""
    tensor = TensorProto()
    for number, wire, value in fields(data):
        if number == 1:
            tensor.dtype = _int(value)
        elif number == 2:
            tensor.shape = parse_shape(message(value))[0]
        elif number == 4:
            tensor.content = message(value)
        elif number in REPEATED_FIELDS:
            tensor.repeated.setdefault(number, []).append((wire, value))
    return tensor
