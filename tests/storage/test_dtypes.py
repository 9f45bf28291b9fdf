"""Every storable dtype round-trips bit-exactly (NaN payloads, -0.0, subnormals, big-endian,
non-contiguous, 0-d, empty); everything else is refused with UnsupportedFormatError."""

from __future__ import annotations

import itertools

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ckptlab as ck
from ckptlab.core import ITEMSIZE
from ckptlab.storage import (
    LocalStore,
    WriteOptions,
    open_checkpoint,
    verify_checkpoint,
    write_checkpoint,
)

FAST = WriteOptions(progress=False, durable=False)
DTYPES = [
    np.dtype(ml_dtypes.bfloat16) if n == "bfloat16" else np.dtype(n) for n in sorted(ITEMSIZE)
]
SPECIAL_FLOATS = {
    "float16": [0x0000, 0x8000, 0x0001, 0x7C01, 0xFE01, 0x7C00, 0xFC00, 0x03FF],
    "bfloat16": [0x0000, 0x8000, 0x0001, 0x7F81, 0xFFC1, 0x7F80, 0xFF80, 0x007F],
    "float32": [0x00000000, 0x80000000, 0x00000001, 0x7F800001, 0xFFC00123, 0x7F800000, 0x007FFFFF],
    "float64": [0, 1 << 63, 1, 0x7FF0000000000001, 0xFFF8000000000123, 0x7FF0000000000000],
}


def round_trip(tmp_path, values, *, options=FAST, into=False):
    """Write ``values``; read them back as fresh arrays, or (``into``) into existing ones."""
    path = str(tmp_path / f"c{next(_COUNTER)}")
    store = LocalStore()
    write_checkpoint(store, path, values, kind="name", graph=None, writer={}, options=options)
    source = open_checkpoint(store, path, progress=False)
    if not into:
        return source.read_many(k for k, _ in values), path
    outs = {k: np.full(v.shape, 7, dtype=np.dtype(v.dtype).newbyteorder("<")) for k, v in values}
    assert source.read_many(outs, outs) == outs
    return outs, path


_COUNTER = itertools.count()


def same_bits(a, b):
    expected = np.ascontiguousarray(b).astype(b.dtype.newbyteorder("<"))
    return a.dtype == expected.dtype and a.shape == b.shape and a.tobytes() == expected.tobytes()


@pytest.mark.parametrize("name", sorted(SPECIAL_FLOATS))
@pytest.mark.parametrize("into", [False, True])
def test_special_float_bit_patterns(tmp_path, name, into):
    dtype = np.dtype(ml_dtypes.bfloat16) if name == "bfloat16" else np.dtype(name)
    bits = np.array(SPECIAL_FLOATS[name], dtype=f"u{dtype.itemsize}")
    value = bits.view(dtype)  # NaN payloads, both zeros, subnormals, infinities
    read, path = round_trip(tmp_path, [("v", value)], into=into)
    assert read["v"].view(bits.dtype).tolist() == bits.tolist()
    assert verify_checkpoint(path) == []


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_shapes_layouts_and_byte_orders(tmp_path, dtype):
    rng = np.random.default_rng(1)
    base = np.frombuffer(rng.bytes(6 * 8 * dtype.itemsize), dtype=dtype).reshape(6, 8)
    if dtype == np.bool_:
        base = rng.integers(0, 2, (6, 8)).astype(bool)
    values = [
        ("scalar", base[0, 0].copy().reshape(())),
        ("empty", base[:0]),
        ("empty2", np.zeros((3, 0, 2), dtype)),
        ("strided", base[::2, 1::3]),
        ("transposed", base.T),
        ("fortran", np.asfortranarray(base)),
        ("big", rng.integers(0, 2, (600_000,)).astype(dtype)),  # more than one inner chunk
    ]
    if dtype.itemsize > 1 and dtype != np.dtype(ml_dtypes.bfloat16):
        values.append(("big_endian", base.astype(dtype.newbyteorder(">"))))
        values.append(("big_endian_strided", base.astype(dtype.newbyteorder(">"))[:, ::2]))
    for into in (False, True):
        read, path = round_trip(tmp_path, values, into=into)
        for key, value in values:
            assert same_bits(read[key], value), key
    assert verify_checkpoint(path) == []


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_arbitrary_bytes_round_trip(tmp_path, data):
    """Any bit pattern of any dtype and shape, packed or not, comes back identical."""
    count = data.draw(st.integers(1, 6))
    values = []
    for index in range(count):
        dtype = data.draw(st.sampled_from(DTYPES))
        shape = tuple(data.draw(st.lists(st.integers(0, 7), max_size=3)))
        size = int(np.prod(shape)) if shape else 1
        raw = data.draw(st.binary(min_size=size * dtype.itemsize, max_size=size * dtype.itemsize))
        value = np.frombuffer(raw, dtype=np.uint8).view(np.uint8).copy()
        value = value.astype(bool) if dtype == np.bool_ else value.view(dtype)
        value = value.reshape(shape)
        if (
            data.draw(st.booleans())
            and dtype.itemsize > 1
            and dtype.kind != "V"
            and dtype.name != "bfloat16"
        ):
            value = value.astype(dtype.newbyteorder(">"))
        values.append((f"v{index}", value))
    read, _ = round_trip(tmp_path, values, into=data.draw(st.booleans()))
    for key, value in values:
        assert same_bits(read[key], value), key


@pytest.mark.parametrize(
    "value",
    [
        np.array(["a", "bc"]),
        np.array([b"a", b"bc"]),
        np.array([{"a": 1}, None], dtype=object),
        np.zeros(2, dtype=[("x", "f4"), ("y", "i4")]),
        np.zeros(2, dtype="V4"),
        np.array(["2020-01-01"], dtype="datetime64[D]"),
        np.zeros(2, dtype=ml_dtypes.float8_e4m3fn),
    ],
    ids=["str", "bytes", "object", "structured", "void", "datetime", "float8"],
)
def test_unstorable_dtypes_are_refused(tmp_path, value):
    with pytest.raises(ck.UnsupportedFormatError, match="cannot store"):
        write_checkpoint(
            LocalStore(),
            str(tmp_path / "c"),
            [("v", value)],
            kind="name",
            graph=None,
            writer={},
            options=FAST,
        )
    assert list(tmp_path.iterdir()) == []  # nothing was written


def test_whole_api_path_bit_exact(tmp_path):
    bits = np.array(SPECIAL_FLOATS["float32"], dtype=np.uint32)
    model = ck.Module()
    model.f = ck.Variable(bits.view(np.float32))
    model.b = ck.Variable(np.array(SPECIAL_FLOATS["bfloat16"], np.uint16).view(ml_dtypes.bfloat16))
    model.c = ck.Variable(np.array([complex(-0.0, np.nan)], np.complex128))
    path = ck.Checkpoint(model=model).write(str(tmp_path / "c"))
    fresh = ck.Module()
    fresh.f = ck.Variable(np.zeros(len(bits), np.float32))
    fresh.b = ck.Variable(np.zeros(8, ml_dtypes.bfloat16))
    fresh.c = ck.Variable(np.zeros(1, np.complex128))
    ck.Checkpoint(model=fresh).read(path).assert_consumed()
    for name in ("f", "b", "c"):
        assert getattr(fresh, name).numpy().tobytes() == getattr(model, name).numpy().tobytes()


@pytest.mark.parametrize(("inner", "shard"), [(8, 8), (64, 128), (1000, 3000), (1 << 20, None)])
@pytest.mark.parametrize("into", [False, True])
@pytest.mark.parametrize("helper", [False, True], ids=["inline", "helper-thread"])
def test_values_spanning_shards_and_checksum_blocks(
    tmp_path, monkeypatch, inner, shard, into, helper
):
    """Values larger than a shard, straddling shards, and of several checksum blocks; the
    checksums computed inline or on the helper thread (a second core) alike."""
    from ckptlab.storage import _layout, _stream, _writer

    if helper:
        monkeypatch.setattr(_stream, "OFFLOAD_BYTES", 0)
        monkeypatch.setattr(_stream, "OFFLOAD_VALUE", 0)

    monkeypatch.setattr(_layout, "INNER_BYTES", inner)
    monkeypatch.setattr(_layout, "LOCAL_SHARD_BYTES", shard)
    monkeypatch.setattr(_stream, "STEP", 1024)  # pieces of 1 KiB, checksums every 4 KiB
    monkeypatch.setattr(_writer, "CRC_BLOCK", 4096)
    rng = np.random.default_rng(3)
    values = [
        (f"v{i}", rng.standard_normal(n).astype(np.float32))
        for i, n in enumerate([0, 1, 70, 3, 2500, 0, 17, 1024, 1025])
    ]
    read, path = round_trip(tmp_path, values, into=into)
    for key, value in values:
        assert same_bits(read[key], value), key
    assert verify_checkpoint(path) == []
    document = open_checkpoint(LocalStore(), path).document
    assert [len(document.values[k].crc32c) for k, _ in values] == [0, 1, 1, 1, 3, 0, 1, 1, 2]
