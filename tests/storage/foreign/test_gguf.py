"""GGUF files written by gguf's GGUFWriter, compared with GGUFReader + gguf.quants.dequantize."""

from __future__ import annotations

import struct
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import ckptlab as ck
from ckptlab.storage import open_path

from .contract import assert_reads_exactly, assert_same_array, assert_works_everywhere

gguf = pytest.importorskip("gguf")
Q = gguf.GGMLQuantizationType

QUANTIZED_FROM_FLOATS = [Q.Q8_0, Q.Q4_0, Q.Q5_1, Q.BF16]
"""Types gguf can quantize: written from float data."""
QUANTIZED_FROM_BLOCKS = [Q.Q4_K, Q.Q6_K, Q.Q2_K, Q.IQ4_NL, Q.TQ2_0]
"""Types gguf only dequantizes: written as random blocks (the reader must agree bit for bit)."""


def _write(path: Path) -> None:
    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_block_count(2)
    writer.add_string("general.name", "tiny")
    writer.add_float32("llama.rope.freq_base", 10000.0)
    writer.add_bool("general.flag", True)
    writer.add_array("tokenizer.ggml.tokens", ["<s>", "</s>", "héllo"])
    writer.add_array("tokenizer.ggml.scores", [0.0, -1.5, 2.25])
    writer.add_tensor("token_embd.weight", rng.standard_normal((8, 64), dtype=np.float32))
    writer.add_tensor("blk.0.attn_norm.weight", rng.standard_normal(64).astype(np.float16))
    writer.add_tensor("blk.0.f64", rng.standard_normal((2, 3)))
    for dtype in (np.int8, np.int16, np.int32, np.int64):
        writer.add_tensor(f"blk.0.{np.dtype(dtype).name}", np.arange(6, dtype=dtype).reshape(2, 3))
    writer.add_tensor("blk.0.scalar_like", np.array([3.5], np.float32))
    data = rng.standard_normal((4, 256), dtype=np.float32)
    for qtype in QUANTIZED_FROM_FLOATS:
        writer.add_tensor(f"blk.1.{qtype.name}", gguf.quants.quantize(data, qtype), raw_dtype=qtype)
    for qtype in QUANTIZED_FROM_BLOCKS:
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        raw = rng.integers(0, 256, (3, 512 // block * size), dtype=np.uint8)
        raw[:, 1::2] &= 0xBF  # no float16 scale (at even offsets) is inf or nan
        writer.add_tensor(f"blk.1.{qtype.name}", raw, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    _write(path)
    return path


def _expected(path: Path) -> dict[str, np.ndarray]:
    """What gguf's own reader gives: raw data for plain types, dequantized for the others."""
    expected = {}
    for tensor in gguf.GGUFReader(path).tensors:
        if tensor.tensor_type == Q.BF16:
            data = tensor.data.view(ml_dtypes.bfloat16)
        elif tensor.tensor_type in (Q.F32, Q.F16, Q.F64, Q.I8, Q.I16, Q.I32, Q.I64):
            data = tensor.data
        else:
            data = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        expected[tensor.name] = np.ascontiguousarray(data)
    return expected


def test_values_match_gguf_reader_and_dequantize(gguf_file):
    expected = _expected(gguf_file)
    assert expected["blk.1.Q4_K"].shape == (3, 512) and expected["blk.1.Q4_K"].dtype == np.float32
    assert expected["blk.1.BF16"].dtype == ml_dtypes.bfloat16
    assert_reads_exactly(gguf_file, expected)


def test_tensors_carry_their_ggml_type_and_raw_blocks(gguf_file):
    reader = open_path(gguf_file)
    types = reader.tensor_types
    assert types["blk.1.Q4_K"] == "Q4_K" and types["token_embd.weight"] == "F32"
    assert "GGML Q6_K; dequantized" in reader.stored("blk.1.Q6_K").foreign.detail
    for tensor in gguf.GGUFReader(gguf_file).tensors:
        if tensor.tensor_type not in (Q.F32, Q.F16, Q.F64, Q.I8, Q.I16, Q.I32, Q.I64):
            assert_same_array(reader.read_raw(tensor.name), np.asarray(tensor.data), tensor.name)


def test_metadata_key_values(gguf_file):
    metadata = open_path(gguf_file).metadata
    assert metadata["general.architecture"] == "llama"
    assert metadata["general.name"] == "tiny"
    assert metadata["llama.block_count"] == 2
    assert metadata["llama.rope.freq_base"] == 10000.0
    assert metadata["general.flag"] is True
    assert metadata["tokenizer.ggml.tokens"] == ["<s>", "</s>", "héllo"]
    assert metadata["tokenizer.ggml.scores"] == [0.0, -1.5, 2.25]


def test_a_gguf_file_works_with_every_entry_point(gguf_file, tmp_path):
    assert_works_everywhere(gguf_file, _expected(gguf_file), tmp_path)


def test_export_keeps_string_metadata(gguf_file, tmp_path):
    out = tmp_path / "m.safetensors"
    ck.convert(gguf_file, out, format="safetensors")
    metadata = open_path(out).metadata
    assert metadata["general.architecture"] == "llama" and metadata["format"] == "pt"
    assert "tokenizer.ggml.tokens" not in metadata  # lists are not strings


# -- hostile files ---------------------------------------------------------------------------------


def _string(text: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text


def _gguf(
    infos: list[tuple[bytes, tuple[int, ...], int, int]],
    *,
    count: int | None = None,
    kv: bytes = b"",
    kv_count: int = 0,
    data: bytes = b"\0" * 64,
    version: int = 3,
) -> bytes:
    body = b"".join(
        _string(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
        + struct.pack("<IQ", kind, offset)
        for name, dims, kind, offset in infos
    )  # fmt: skip
    head = b"GGUF" + struct.pack("<IQQ", version, len(infos) if count is None else count, kv_count)
    blob = head + kv + body
    return blob + b"\0" * (-len(blob) % 32) + data


def test_a_handmade_file_reads(tmp_path):
    path = tmp_path / "ok.gguf"
    path.write_bytes(_gguf([(b"w", (4,), 0, 0)], data=np.arange(4, dtype=np.float32).tobytes()))
    np.testing.assert_array_equal(ck.load_checkpoint(path).get_tensor("w"), [0, 1, 2, 3])


HOSTILE = {
    "absurd tensor count": {"infos": [(b"w", (4,), 0, 0)], "count": 2**60},
    "absurd metadata count": {"infos": [], "kv_count": 2**62},
    "offset past the end": {"infos": [(b"w", (4,), 0, 2**40)]},
    "offset 2**64-1": {"infos": [(b"w", (4,), 0, 2**64 - 1)]},
    "huge dims": {"infos": [(b"w", (2**40, 2**40), 0, 0)]},
    "dims past the data": {"infos": [(b"w", (1024, 1024), 0, 0)]},
    "five dims": {"infos": [(b"w", (1, 1, 1, 1, 1), 0, 0)]},
    "duplicate names": {"infos": [(b"w", (4,), 0, 0), (b"w", (4,), 0, 16)]},
    "not UTF-8": {"infos": [(b"\xff\xfe", (4,), 0, 0)]},
    "rows not whole blocks": {"infos": [(b"w", (33,), int(Q.Q8_0), 0)]},
    "absurd array length": {
        "infos": [],
        "kv_count": 1,
        "kv": _string(b"k") + struct.pack("<IIQ", 9, 6, 2**61),
    },
    "absurd string length": {
        "infos": [],
        "kv_count": 1,
        "kv": _string(b"k") + struct.pack("<IQ", 8, 2**62),
    },
    "absurd name length": {"infos": [], "count": 1, "kv": struct.pack("<Q", 2**63)},
    "bad value type": {"infos": [], "kv_count": 1, "kv": _string(b"k") + struct.pack("<I", 99)},
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_headers_are_corrupt_without_allocating(tmp_path, case, peak_bytes):
    path = tmp_path / "evil.gguf"
    path.write_bytes(_gguf(**HOSTILE[case]))
    size = path.stat().st_size

    def attempt():
        with pytest.raises(ck.CorruptCheckpointError, match="GGUF|Tensor"):
            ck.list_variables(path)

    assert peak_bytes(attempt) < size + 2**21


def test_truncated_infos_are_corrupt(tmp_path, gguf_file):
    data = gguf_file.read_bytes()
    for cut in (30, 200, len(data) // 3):
        path = tmp_path / f"cut{cut}.gguf"
        path.write_bytes(data[:cut])
        with pytest.raises(ck.CorruptCheckpointError):
            ck.list_variables(path)


@pytest.mark.parametrize(("version", "match"), [(1, "version 1"), (3 << 24, "big-endian")])
def test_other_versions_are_unsupported(tmp_path, version, match):
    path = tmp_path / "v.gguf"
    path.write_bytes(_gguf([(b"w", (4,), 0, 0)], version=version))
    with pytest.raises(ck.UnsupportedFormatError, match=match):
        ck.list_variables(path)


def test_unknown_ggml_types_are_unsupported(tmp_path):
    path = tmp_path / "t.gguf"
    path.write_bytes(_gguf([(b"w", (4,), 250, 0)]))
    with pytest.raises(ck.UnsupportedFormatError, match="250"):
        ck.list_variables(path)
