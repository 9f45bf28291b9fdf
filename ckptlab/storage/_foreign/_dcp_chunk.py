"""A Distributed Checkpoint chunk as ``torch.save`` writes it, located without a zip library.

Every chunk of a DCP file is a small zip archive: ``<root>/data.pkl`` (a pickle rebuilding one
tensor), a few one-line records, ``<root>/data/0`` (the tensor's bytes, stored uncompressed),
then the zip directory.  Reading thousands of chunks through ``zipfile`` and the general torch
reader costs a quarter of a millisecond each in Python, more than reading their bytes, so this
module parses the two ends of an archive (already in memory) with ``struct``: the directory,
the pickle (through the restricted unpickler) and the data member's local header.  It answers
only when the archive holds exactly one contiguous tensor filling one stored member, which is
what DCP writes; anything else is left to the general torch reader.  The member's zip CRC-32
is returned so that the caller checks the bytes it reads.
"""

from __future__ import annotations

import functools
import io
import math
import struct
from dataclasses import dataclass
from typing import Any, NamedTuple

from ckptlab.errors import CkptlabError
from ckptlab.storage._foreign._unpickle import StorageRef, StorageType, TensorRef, load_pickle
from ckptlab.storage._layout import numpy_dtype

Bytes = bytes | bytearray
_END = struct.Struct("<IHHHHIIH")
"""End of central directory: signature, disks, entries, directory size and offset, comment."""
_ENTRY = struct.Struct("<IHHHHHHIIIHHHHHII")
"""Central directory entry (46 bytes, then name, extra field and comment)."""
_LOCAL = struct.Struct("<IHHHHHIIIHH")
"""Local file header (30 bytes, then name and extra field)."""
_END_MAGIC, _ENTRY_MAGIC, _LOCAL_MAGIC = 0x06054B50, 0x02014B50, 0x04034B50


@dataclass(frozen=True, slots=True)
class PlainChunk:
    """Where a chunk's tensor bytes are inside its archive, and what they must be."""

    start: int
    """Offset of the first byte of the tensor in the archive."""
    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    crc32: int
    """The zip CRC-32 of those bytes."""


class _Member(NamedTuple):
    """A zip directory entry: local header offset, method, flags, size, CRC-32."""

    header: int
    method: int
    flags: int
    size: int
    crc32: int


def locate(head: Bytes, tail: Bytes, length: int) -> PlainChunk | None:
    """The tensor of a ``torch.save`` archive from its first and last bytes, or ``None``.

    ``None`` means "not the plain layout" (zip64, compression, a view of a larger storage,
    pieces outside ``head``/``tail``, damage): the caller then uses the general torch reader,
    which reports damage with a typed error.
    """
    members = _directory(tail, length)
    if members is None:
        return None
    pickles = [name for name in members if name.endswith("data.pkl") and name.count("/") <= 1]
    if len(pickles) != 1:
        return None
    root = pickles[0][: -len("data.pkl")]
    data = _member_bytes(head, members[pickles[0]])
    if data is None:
        return None
    found = _plain_tensor(bytes(data))
    if found is None:
        return None
    tensor, ref, nbytes = found
    member = members.get(f"{root}data/{ref.key}")
    itemsize = numpy_dtype(tensor.dtype).itemsize
    if (
        member is None
        or member.method != 0
        or member.size != nbytes
        or tensor.offset != 0
        or math.prod(tensor.shape) * itemsize != nbytes
        or tensor.stride != _contiguous(tensor.shape)
    ):
        return None
    start = _data_start(head, member)
    if start is None or start + nbytes > length:
        return None
    return PlainChunk(start, tensor.shape, tensor.dtype, nbytes, member.crc32)


class _NotPlain(Exception):
    """A pickle that is not one plain tensor (internal signal)."""


@functools.lru_cache(maxsize=1024)
def _plain_tensor(data: bytes) -> tuple[TensorRef, StorageRef, int] | None:
    """The tensor a ``data.pkl`` rebuilds, its storage and the storage's bytes; or ``None``.

    Through the restricted unpickler.  Cached by the pickle's bytes, which are the same for
    every chunk of one shape and dtype (a DCP file holds many), so most chunks skip unpickling.
    """
    storages: dict[str, tuple[StorageRef, int]] = {}

    def storage(pid: tuple[Any, ...]) -> StorageRef:
        _, kind, key, _location, count = pid[:5]
        if not isinstance(kind, StorageType) or type(count) is not int or count < 0:
            raise _NotPlain
        itemsize = numpy_dtype(kind.dtype).itemsize if kind.dtype else 1
        ref = StorageRef(str(key), kind.dtype, count)
        storages[str(key)] = (ref, count * itemsize)
        return ref

    try:
        tensor = load_pickle(io.BytesIO(data), "a DCP chunk", storage)
    except (CkptlabError, _NotPlain):
        return None
    if not isinstance(tensor, TensorRef) or len(storages) != 1:
        return None
    ref, nbytes = storages[tensor.storage.key]
    return tensor, ref, nbytes


def _directory(tail: Bytes, length: int) -> dict[str, _Member] | None:
    """The zip directory, when it lies inside ``tail`` (the archive's last bytes)."""
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + _END.size > len(tail):
        return None
    magic, _, _, _, count, size, offset, _ = _END.unpack_from(tail, at)
    tail_start = length - len(tail)
    if magic != _END_MAGIC or count == 0xFFFF or offset == 0xFFFFFFFF or offset < tail_start:
        return None  # zip64, or a directory outside what was read
    position, end = offset - tail_start, offset - tail_start + size
    if end > at:
        return None
    members = {}
    for _ in range(count):
        if position + _ENTRY.size > end:
            return None
        entry = _ENTRY.unpack_from(tail, position)
        magic, flags, method, crc, size_c, size_u = entry[0], entry[3], entry[4], *entry[7:10]
        name_length, extra_length, comment_length, header = (
            entry[10],
            entry[11],
            entry[12],
            entry[16],
        )
        if magic != _ENTRY_MAGIC or size_c != size_u:
            return None
        name = tail[position + _ENTRY.size : position + _ENTRY.size + name_length]
        members[name.decode("utf-8", "replace")] = _Member(header, method, flags, size_u, crc)
        position += _ENTRY.size + name_length + extra_length + comment_length
    return members


def _data_start(head: Bytes, member: _Member) -> int | None:
    """Where a member's data begins: after its local header (in ``head``)."""
    if member.flags & 0x1 or member.header + _LOCAL.size > len(head):
        return None  # encrypted, or a header not read
    local = _LOCAL.unpack_from(head, member.header)
    if local[0] != _LOCAL_MAGIC:
        return None
    start: int = member.header + _LOCAL.size + local[9] + local[10]
    return start


def _member_bytes(head: Bytes, member: _Member) -> Bytes | None:
    start = _data_start(head, member)
    if start is None or member.method != 0 or start + member.size > len(head):
        return None
    return head[start : start + member.size]


def _contiguous(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for dim in reversed(shape):
        strides.append(step)
        step *= dim
    return tuple(reversed(strides))
