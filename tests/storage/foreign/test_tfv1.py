"""TF1 Saver V1 files: slices must tile the shape; values are counted before allocating."""

from __future__ import annotations

import struct
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import ckptlab as ck
from ckptlab.storage._foreign._bundle_writer import encode_slice_key, field, varint, write_table
from ckptlab.storage._foreign._tfv1 import MAX_BROADCAST_BYTES

Extents = list[tuple[int, int]]
FLOAT, INT32, INT64, BOOL, COMPLEX64, HALF, UINT64 = 1, 3, 9, 10, 8, 19, 23


def _shape(dims: tuple[int, ...]) -> bytes:
    return b"".join(field(2, field(1, d)) for d in dims)


def _slice(extents: Extents) -> bytes:
    return b"".join(field(1, field(1, s) + (field(2, n) if n != -1 else b"")) for s, n in extents)


def floats(*values: float) -> bytes:
    """A ``TensorProto`` holding ``values`` in a packed ``float_val``."""
    return field(1, FLOAT) + field(5, struct.pack(f"<{len(values)}f", *values))


def write_v1(
    path: Path, name: str, dims: tuple[int, ...], dtype: int, pieces: list[tuple[Extents, bytes]]
) -> str:
    """A V1 file holding one tensor saved as ``pieces``: (extents, ``TensorProto`` bytes)."""
    meta = field(1, name.encode()) + field(2, _shape(dims)) + field(3, dtype)
    meta += b"".join(field(4, _slice(extents)) for extents, _ in pieces)
    items = [(b"", field(1, field(1, meta)))]
    for extents, tensor in pieces:
        saved = field(1, name.encode()) + field(2, _slice(extents)) + field(3, tensor)
        items.append((encode_slice_key(name, extents), field(2, saved)))
    write_table(str(path), sorted(items))
    return str(path)


def test_slices_are_reassembled_in_two_dimensions(tmp_path):
    pieces = [
        ([(0, 1), (0, -1)], floats(0, 1, 2)),
        ([(1, 1), (0, 2)], floats(3, 4)),
        ([(1, 1), (2, 1)], floats(5)),
    ]
    path = write_v1(tmp_path / "model.ckpt", "w", (2, 3), FLOAT, pieces)
    assert ck.list_variables(path) == [("w", [2, 3])]
    expected = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(ck.load_checkpoint(path).get_tensor("w"), expected)


@pytest.mark.parametrize(
    ("dtype", "tensor", "expected"),
    [
        (INT32, field(7, b"".join(varint(v) for v in (-1, 300, -(2**31)))), [-1, 300, -(2**31)]),
        (INT64, field(10, varint(2**40)) + field(10, varint(-5)) + field(10, 0), [2**40, -5, 0]),
        (UINT64, field(17, b"".join(varint(v) for v in (2**64 - 1, 1, 0))), [2**64 - 1, 1, 0]),
        (BOOL, field(11, bytes([1, 0, 1])), [True, False, True]),
        (HALF, field(13, b"".join(varint(v) for v in (0x3C00, 0xC000, 0))), [1.0, -2.0, 0.0]),
        (COMPLEX64, field(9, struct.pack("<6f", 1, 2, 3, 4, 5, 6)), [1 + 2j, 3 + 4j, 5 + 6j]),
        (FLOAT, field(4, np.array([1, 2, 3], "<f4").tobytes()), [1.0, 2.0, 3.0]),
    ],
)
def test_typed_fields_decode_as_tensorflow_writes_them(tmp_path, dtype, tensor, expected):
    path = write_v1(tmp_path / "model.ckpt", "t", (3,), dtype, [([(0, 3)], tensor)])
    assert ck.load_checkpoint(path).get_tensor("t").tolist() == expected


def test_bfloat16_half_val_keeps_its_bits(tmp_path):
    bits = np.array([1.5, -3.0], ml_dtypes.bfloat16).view(np.uint16).tolist()
    tensor = field(13, b"".join(varint(b) for b in bits))
    path = write_v1(tmp_path / "model.ckpt", "t", (2,), 14, [([(0, 2)], tensor)])
    assert ck.load_checkpoint(path).get_tensor("t").astype(np.float32).tolist() == [1.5, -3.0]


def test_one_stored_value_fills_a_small_slice(tmp_path):
    path = write_v1(
        tmp_path / "model.ckpt", "t", (2, 2), FLOAT, [([(0, -1), (0, -1)], floats(2.5))]
    )
    assert ck.load_checkpoint(path).get_tensor("t").tolist() == [[2.5, 2.5], [2.5, 2.5]]


@pytest.mark.parametrize(
    ("dims", "pieces", "match"),
    [
        ((4,), [([(0, 2)], floats(0, 1))], "hold 2 elements; shape \\[4\\] has 4"),
        ((4,), [([(0, 2)], floats(0, 1)), ([(1, 2)], floats(1, 2))], "overlaps another"),
        (
            (2, 2),
            [([(0, 1), (0, 2)], floats(0, 1)), ([(0, 2), (1, 1)], floats(1, 3))],
            "overlaps another",
        ),
        ((4,), [([(0, 2)], floats(0, 1)), ([(3, 2)], floats(3, 4))], "outside dimension 4"),
        ((4,), [([(0, 4)], floats(0, 1, 2))], "stores 3 values; its 4 elements"),
        ((4,), [([(0, 4)], field(4, bytes(15)))], "15 content bytes"),
        ((4,), [([(0, 4)], field(1, FLOAT))], "stores 0 values"),
        ((4,), [([(0, 4)], b"\x2a\x10")], "does not decode"),
        ((4,), [([(0, 4)], field(5, bytes(6)))], "packed field of 6 bytes"),
    ],
)
def test_gaps_overlaps_and_wrong_counts_are_refused_on_open(tmp_path, dims, pieces, match):
    path = write_v1(tmp_path / "model.ckpt", "t", dims, FLOAT, pieces)
    with pytest.raises(ck.CorruptCheckpointError, match=match) as caught:
        ck.list_variables(path)
    assert "'t'" in str(caught.value)
    assert "model.ckpt" in str(caught.value)


def test_a_truncated_varint_is_refused_on_open_and_a_long_one_on_read(tmp_path):
    path = write_v1(tmp_path / "a.ckpt", "t", (1,), INT32, [([(0, 1)], field(7, b"\x80"))])
    with pytest.raises(ck.CorruptCheckpointError, match="runs past the end"):
        ck.list_variables(path)
    path = write_v1(
        tmp_path / "b.ckpt", "t", (1,), INT32, [([(0, 1)], field(7, b"\xff" * 11 + b"\x01"))]
    )
    reader = ck.load_checkpoint(path)
    with pytest.raises(ck.CorruptCheckpointError, match="longer than 10 bytes"):
        reader.get_tensor("t")


def test_a_listed_slice_that_is_not_stored_is_refused(tmp_path):
    path = write_v1(tmp_path / "model.ckpt", "t", (4,), FLOAT, [([(0, 4)], floats(0, 1, 2, 3))])
    meta = field(1, b"t") + field(2, _shape((4,))) + field(3, FLOAT)
    meta += field(4, _slice([(0, 2)])) + field(4, _slice([(2, 2)]))
    write_table(path, [(b"", field(1, field(1, meta)))])
    with pytest.raises(ck.CorruptCheckpointError, match="not stored"):
        ck.list_variables(path)


def test_one_value_claiming_2_to_the_47_elements_is_refused_without_allocating(
    tmp_path, peak_bytes
):
    dims = (2**24, 2**23)  # under the 2**48-element limit, 512 TiB of float32
    path = write_v1(tmp_path / "bomb.ckpt", "t", dims, FLOAT, [([(0, -1), (0, -1)], floats(1))])
    assert Path(path).stat().st_size < 1000

    def load_it():
        with pytest.raises(ck.CorruptCheckpointError, match="expand to") as caught:
            ck.load_checkpoint(path)
        assert str(MAX_BROADCAST_BYTES) in str(caught.value)

    assert peak_bytes(load_it) < 2**20


def test_single_value_slices_are_capped_per_file(tmp_path):
    count = MAX_BROADCAST_BYTES // 4 // 2 + 1  # two slices of this many floats exceed the cap
    pieces = [([(0, count)], floats(1)), ([(count, count)], floats(2))]
    path = write_v1(tmp_path / "model.ckpt", "t", (2 * count,), FLOAT, pieces)
    with pytest.raises(ck.CorruptCheckpointError, match="expand to"):
        ck.list_variables(path)
