"""Hostile TensorFlow, safetensors and ckptlab files (issue 17, items 4-6): typed and bounded."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import cramjam
import crc32c
import numpy as np
import pytest

import ckptlab as ck
from ckptlab.cli import main
from ckptlab.storage._foreign._bundle_writer import _Block, field, varint, write_bundle
from ckptlab.storage._foreign._table import MAGIC, Table, mask


def table_bytes(data_block: bytes, compression: int = 0) -> bytes:
    """A table file with one data block (stored as given, trailer type ``compression``)."""

    def framed(contents: bytes, kind: int) -> bytes:
        crc = mask(crc32c.crc32c(bytes([kind]), crc32c.crc32c(contents)))
        return contents + bytes([kind]) + struct.pack("<I", crc)

    out = bytearray(framed(data_block, compression))
    stored = len(data_block)
    meta_at = len(out)
    out += framed(_Block().finish(), 0)
    index = _Block(interval=1)
    index.add(b"\xff", varint(0) + varint(stored))
    index_block = index.finish()
    index_at = len(out)
    out += framed(index_block, 0)
    footer = b"".join(
        varint(v) for v in (meta_at, len(_Block().finish()), index_at, len(index_block))
    )
    return bytes(out + footer.ljust(40, b"\0") + MAGIC)


def growing_keys_block(count: int) -> bytes:
    """``count`` entries, each key the previous one plus a byte (prefix-compressed)."""
    header = field(1, 1) + field(3, field(1, 1))
    body = bytearray(varint(0) + varint(0) + varint(len(header)) + header)
    for index in range(1, count + 1):
        body += varint(index - 1) + varint(1) + varint(0) + b"k"
    return bytes(body) + struct.pack("<II", 0, 1)


# -- 4. TensorFlow tables -----------------------------------------------------------------------


def test_keys_that_grow_without_end_are_refused(tmp_path, bounded):
    prefix = tmp_path / "ckpt"
    Path(f"{prefix}.index").write_bytes(table_bytes(growing_keys_block(200_000)))
    Path(f"{prefix}.data-00000-of-00001").write_bytes(b"")
    assert 1_000_000 < Path(f"{prefix}.index").stat().st_size < 1_300_000
    outcome = bounded(lambda: ck.list_variables(str(prefix)), seconds=30, memory=2**30)
    assert outcome is not None and outcome[0], outcome
    assert "spell more than" in outcome[2]


def test_a_big_snappy_block_decodes_through_cramjam(bounded):
    block = _Block()
    values = {f"key{i:06d}".encode(): bytes([i % 251]) * 240 for i in range(100_000)}
    for key, value in values.items():
        block.add(key, value)
    raw = block.finish()
    assert len(raw) > 23 * 2**20  # the 24 MB block
    compressed = bytes(cramjam.snappy.compress_raw(raw))
    table = Table(table_bytes(compressed, compression=1), "t.index")

    def read_all():
        assert dict(table) == values

    assert bounded(read_all, seconds=60, memory=2**30) is None


@pytest.mark.parametrize(
    ("block", "match"),
    [
        (varint(2**30) + b"\x00", "claims"),  # a 2-byte block announcing 1 GiB
        (varint(100) + b"\x08abc", "does not decode"),
        (varint(3) + b"\x08abc\x0a\x09\x00", "does not decode"),
    ],
)
def test_bad_snappy_blocks_are_typed(block, match):
    with pytest.raises(ck.CorruptCheckpointError, match=match):
        list(Table(table_bytes(block, compression=1), "t.index"))


# -- 5. safetensors -----------------------------------------------------------------------------


def safetensors_file(path: Path, header: bytes, data: bytes = bytes(16)) -> Path:
    header += b" " * (-len(header) % 8)
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return path


ENTRY = b'{"dtype":"F32","shape":[2],"data_offsets":[%d,%d]}'


@pytest.mark.parametrize(
    ("header", "data", "match"),
    [
        (b'{"a":' + ENTRY % (0, 8) + b',"b":' + ENTRY % (0, 8) + b"}", 8, "overlaps"),
        (b'{"a":' + ENTRY % (0, 8) + b',"b":' + ENTRY % (4, 12) + b"}", 12, "overlaps"),
        (b'{"a":' + ENTRY % (0, 8) + b',"b":' + ENTRY % (12, 20) + b"}", 20, "gap"),
        (b'{"a":' + ENTRY % (0, 8) + b"}", 16, "cover 8 of its 16"),
        (b'{"a":' + ENTRY % (0, 8) + b',"a":' + ENTRY % (8, 16) + b"}", 16, "duplicate key"),
        (b'{"a\xff":' + ENTRY % (0, 8) + b"}", 8, "not UTF-8"),
        (b'{"a\xed\xa0\x80":' + ENTRY % (0, 8) + b"}", 8, "not UTF-8"),  # an encoded surrogate
        (b'{"a\\ud800":' + ENTRY % (0, 8) + b"}", 8, "lone surrogate"),
        (b'{"__metadata__":' + b"[" * 100_000 + b"]" * 100_000 + b"}", 0, "not JSON"),
        (b'{"__metadata__":{"x":' + b"[" * 500 + b"]" * 500 + b"}}", 0, "object of strings"),
        (b'{"a":{"dtype":"F32","shape":[0,140737488355328,140737488355328],'
         b'"data_offsets":[0,0]}}', 0, "2\\*\\*48"),
    ],
)  # fmt: skip
def test_safetensors_headers_the_library_refuses(tmp_path, bounded, header, data, match):
    target = safetensors_file(tmp_path / "m.safetensors", header, bytes(data))
    outcome = bounded(lambda: ck.list_variables(target))
    assert outcome is not None and outcome[0], outcome
    assert __import__("re").search(match, outcome[2]), outcome[2]


def test_a_valid_file_still_reads(tmp_path):
    target = safetensors_file(
        tmp_path / "m.safetensors",
        b'{"__metadata__":{"format":"pt"},"b":'
        + ENTRY % (8, 16)
        + b',"a":'
        + ENTRY % (0, 8)
        + b"}",
        np.arange(4, dtype=np.float32).tobytes(),
    )
    reader = ck.load_checkpoint(target)
    assert reader.get_tensor("b").tolist() == [2.0, 3.0]


def test_a_lone_surrogate_key_is_refused_before_convert_or_explore(tmp_path):
    target = safetensors_file(
        tmp_path / "m.safetensors", b'{"a\\udcff":' + ENTRY % (0, 8) + b"}", bytes(8)
    )
    with pytest.raises(ck.CorruptCheckpointError, match="lone surrogate"):
        ck.convert(target, tmp_path / "out")
    with pytest.raises(ck.CorruptCheckpointError, match="lone surrogate"):
        ck.explore(target)
    assert not (tmp_path / "out").exists()


# -- 5. ckptlab's own documents -------------------------------------------------------------------


@pytest.fixture
def empty_huge(tmp_path) -> str:
    """A ckptlab checkpoint whose empty value claims shape [0, 2**47, 2**47]."""
    path = ck.Checkpoint(w=ck.Variable(np.zeros((0, 2), np.float32))).write(str(tmp_path / "c"))
    root = json.loads(Path(path, "zarr.json").read_text())
    values = root["attributes"]["ckptlab"]["values"]  # format 3: one column per field
    values["shape"] = [[0, 2**47, 2**47] for _ in values["shape"]]
    Path(path, "zarr.json").write_text(json.dumps(root))
    return path


def test_an_empty_value_with_huge_dims_is_typed_everywhere(tmp_path, empty_huge, capsys):
    with pytest.raises(ck.CorruptCheckpointError, match="2\\*\\*48"):
        ck.load_checkpoint(empty_huge).get_tensor("w/.ATTRIBUTES/VARIABLE_VALUE")
    with pytest.raises(ck.CorruptCheckpointError, match="2\\*\\*48"):
        ck.convert(empty_huge, tmp_path / "out")
    assert main(["verify", empty_huge]) == 1
    assert main(["diff", empty_huge, empty_huge]) == 1
    assert "2**48" in capsys.readouterr().err


# -- 6. verify says what it checked --------------------------------------------------------------


def test_verify_catches_a_flipped_torch_byte(tmp_path, fixtures_dir, capsys):
    import zipfile

    source = fixtures_dir / "torch" / "state_dict.pt"
    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as archive:
        info = archive.getinfo("state_dict/data/0")
    name_length, extra_length = struct.unpack_from("<HH", data, info.header_offset + 26)
    data[info.header_offset + 30 + name_length + extra_length] ^= 0x01
    target = tmp_path / "flipped.pt"
    target.write_bytes(bytes(data))
    assert main(["verify", str(source)]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["verify", str(target)]) == 1
    out = capsys.readouterr().out
    assert "DAMAGED" in out and "crc32" in out


def test_verify_of_a_format_without_checksums_says_so(tmp_path, fixtures_dir, capsys):
    safetensors = fixtures_dir / "torch" / "model.safetensors"
    assert main(["verify", str(safetensors)]) == 0
    out = capsys.readouterr().out
    assert "no checksums in this format" in out
    assert "OK" not in out
    assert main(["verify", "--json", str(safetensors)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["checkpoints"][0]["checksums"] is False
    prefix = str(tmp_path / "tf")
    write_bundle(prefix, {"a": np.ones(3, np.float32)})
    assert main(["verify", prefix]) == 0
    assert "OK" in capsys.readouterr().out


def test_float8_e8m0_reads_and_packed_dtypes_are_listed_but_not_read(tmp_path):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    tensors = {
        "w": torch.arange(3.0),
        "scale": torch.tensor([1, 2, 127, 128, 255], dtype=torch.uint8).view(torch.float8_e8m0fnu),
        "fp4": torch.arange(4, dtype=torch.uint8).view(torch.float4_e2m1fn_x2),
    }
    path = tmp_path / "m.safetensors"
    safetensors_torch.save_file(tensors, path)
    header = json.loads(path.read_bytes()[8 : 8 + struct.unpack("<Q", path.read_bytes()[:8])[0]])
    assert (header["scale"]["dtype"], header["fp4"]["dtype"], header["fp4"]["shape"]) == (
        "F8_E8M0", "F4", [8],
    )  # fmt: skip
    loaded = safetensors_torch.load_file(path)
    reader = ck.load_checkpoint(path)
    assert ck.list_variables(path) == [("fp4", [8]), ("scale", [5]), ("w", [3])]
    scale = reader.get_tensor("scale")
    assert scale.dtype.name == "float8_e8m0fnu"
    assert scale.tobytes() == loaded["scale"].view(torch.uint8).numpy().tobytes()
    assert reader.get_tensor("w").tobytes() == loaded["w"].numpy().tobytes()
    with pytest.raises(ck.UnsupportedFormatError, match=r"'fp4' of .*m\.safetensors has dtype F4"):
        reader.get_tensor("fp4")
    ck.convert(path, tmp_path / "out", format="safetensors", skip_unsupported=True)
    exported = safetensors_torch.load_file(tmp_path / "out" / "model.safetensors")
    assert sorted(exported) == ["scale", "w"]
    assert torch.equal(exported["scale"].view(torch.uint8), loaded["scale"].view(torch.uint8))
    refused = r"'fp4' \(F4\), 'scale' \(float8_e8m0fnu\)"
    with pytest.raises(ck.UnsupportedFormatError, match=refused):
        ck.convert(path, tmp_path / "ckpt")
