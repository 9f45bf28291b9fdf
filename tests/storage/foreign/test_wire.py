"""Round-trip properties of the hand-written codecs: varints, slice keys, tables, strings."""

from __future__ import annotations

from unittest import mock

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import ckptlab as ck
from ckptlab.storage._foreign import _bundle_writer, _table
from ckptlab.storage._foreign._slicekey import decode_slice_key
from ckptlab.storage._foreign._snappy import decompress
from ckptlab.storage._foreign._wire import read_varint, signed


@given(st.integers(min_value=-(2**63), max_value=2**64 - 1))
def test_varints_round_trip(value):
    encoded = _bundle_writer.varint(value)
    decoded, end = read_varint(encoded, 0)
    assert end == len(encoded) <= 10
    assert (signed(decoded) if value < 0 else decoded) == value


extents = st.tuples(st.integers(-(2**62), 2**62), st.integers(-1, 2**62))


@given(st.text(max_size=20), st.lists(extents, max_size=5))
def test_slice_keys_round_trip(name, slices):
    assert decode_slice_key(_bundle_writer.encode_slice_key(name, slices)) == (name, tuple(slices))


@given(st.lists(st.integers(-(2**62), 2**62), min_size=2, max_size=2, unique=True))
def test_slice_keys_sort_like_their_numbers(pair):
    low, high = sorted(pair)
    assert _bundle_writer.encode_slice_key("t", [(low, 1)]) < _bundle_writer.encode_slice_key(
        "t", [(high, 1)]
    )


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(st.binary(max_size=40), st.binary(max_size=300), max_size=60))
def test_tables_round_trip_across_many_blocks(tmp_path_factory, items):
    path = str(tmp_path_factory.mktemp("table") / "t.index")
    with mock.patch.object(_bundle_writer, "BLOCK_BYTES", 128):
        _bundle_writer.write_table(path, sorted(items.items()))
    with open(path, "rb") as handle:
        assert list(_table.Table(handle.read(), path)) == sorted(items.items())


@settings(max_examples=30, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=8))
def test_string_tensors_round_trip_with_their_checksums(tmp_path_factory, strings):
    prefix = str(tmp_path_factory.mktemp("bundle") / "ckpt")
    array = np.empty(len(strings), dtype=object)
    array[:] = strings
    _bundle_writer.write_bundle(prefix, {"s": array, "n": np.arange(3, dtype=np.int16)})
    reader = ck.load_checkpoint(prefix)
    assert reader.get_tensor("s").tolist() == strings
    assert reader.get_tensor("n").tolist() == [0, 1, 2]


@given(st.binary(max_size=500))
def test_snappy_literals_decode(data):
    encoded = bytearray(_bundle_writer.varint(len(data)))
    for start in range(0, len(data), 60):
        chunk = data[start : start + 60]
        encoded += bytes([(len(chunk) - 1) << 2]) + chunk
    assert decompress(bytes(encoded)) == data
