"""Damaged and hostile foreign files: typed ckptlab errors, never a crash and never code."""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zipfile
from pathlib import Path

import crc32c
import numpy as np
import pytest

import ckptlab as ck
from ckptlab.storage._foreign._bundle_writer import encode_entry, field, write_bundle, write_table
from ckptlab.storage._foreign._table import mask
from ckptlab.storage._foreign._torch import TorchFile


class _Payload:
    """Pickles as a call of ``function(*args)``: what malicious checkpoints do."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def _marker_payloads(marker: Path) -> dict[str, object]:
    command = f"touch {marker}"
    return {
        "os.system": _Payload(os.system, command),
        "builtins.exec": _Payload(exec, f"open({str(marker)!r}, 'w').close()"),
        "builtins.eval": _Payload(eval, f"open({str(marker)!r}, 'w')"),
        "builtins.open": _Payload(open, str(marker), "w"),
    }


def _torch_zip(path: Path, payload: bytes) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("evil/data.pkl", payload)
        archive.writestr("evil/version", "3\n")
    return path


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("name", ["os.system", "builtins.exec", "builtins.eval", "builtins.open"])
@pytest.mark.parametrize("container", ["zip", "legacy", "nested"])
def test_pickled_code_is_refused_and_never_runs(tmp_path, name, protocol, container):
    marker = tmp_path / "pwned"
    payload = _marker_payloads(marker)[name]
    if container == "nested":
        payload = {"model": {"fc.weight": payload}}
    data = pickle.dumps(payload, protocol=protocol)
    target = tmp_path / "evil.pt"
    if container == "legacy":
        target.write_bytes(data)
    else:
        _torch_zip(target, data)
    with pytest.raises(ck.UnsafePickleError) as caught:
        ck.list_variables(target)
    function = name.partition(".")[2]
    assert caught.value.global_name.endswith(f".{function}")
    assert caught.value.global_name in str(caught.value)
    assert isinstance(caught.value, ck.CkptlabError)
    assert not marker.exists()


def test_a_real_state_dict_with_one_bad_global_is_refused(tmp_path, fixtures_dir):
    marker = tmp_path / "pwned"
    good = (fixtures_dir / "torch" / "state_dict.pt").read_bytes()
    evil = pickle.dumps({"extra": _Payload(os.system, f"touch {marker}")}, protocol=2)
    target = tmp_path / "mixed.pt"
    with zipfile.ZipFile(io.BytesIO(good)) as source, zipfile.ZipFile(target, "w") as archive:
        for info in source.infolist():
            data = evil if info.filename.endswith("data.pkl") else source.read(info)
            archive.writestr(info, data)
    with pytest.raises(ck.UnsafePickleError, match="system"):
        ck.load_checkpoint(target)
    assert not marker.exists()


def _patch_sizes(path: Path, member: str, size: int) -> None:
    """Make the zip headers of ``member`` claim ``size`` uncompressed bytes."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    local = data.find(b"PK\x03\x04" + data[4:4])
    while local >= 0:
        if data[local + 30 : local + 30 + len(name)] == name:
            struct.pack_into("<I", data, local + 22, size)
        local = data.find(b"PK\x03\x04", local + 4)
    central = data.find(b"PK\x01\x02")
    while central >= 0:
        if data[central + 46 : central + 46 + len(name)] == name:
            struct.pack_into("<I", data, central + 24, size)
        central = data.find(b"PK\x01\x02", central + 4)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("claimed", [0xFFFFFFF0, 100])
def test_zip_bombs_are_refused(tmp_path, claimed):
    target = tmp_path / "bomb.pt"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb/data.pkl", b"\x80\x02N." + bytes(50 * 2**20))
    _patch_sizes(target, "bomb/data.pkl", claimed)
    with pytest.raises(ck.CorruptCheckpointError, match="data.pkl"):
        ck.list_variables(target)


def test_a_compressed_storage_claiming_gigabytes_is_refused(tmp_path, fixtures_dir):
    target = tmp_path / "storage_bomb.pt"
    with zipfile.ZipFile(fixtures_dir / "torch" / "state_dict.pt") as source:
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            for info in source.infolist():
                archive.writestr(info.filename, source.read(info))
    _patch_sizes(target, "state_dict/data/1", 0xFFFFFFF0)
    with pytest.raises(ck.CorruptCheckpointError, match="data/1"):
        ck.list_variables(target)


def _deflated_copy(source: Path, target: Path, zeros: dict[str, int] | None = None) -> Path:
    """Copy a torch zip with every member deflated; members in ``zeros`` become that many zeros."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            if info.filename not in (zeros or {}):
                out.writestr(info.filename, src.read(info))
                continue
            with out.open(info.filename, "w") as handle:
                for _ in range(zeros[info.filename] // 2**20):
                    handle.write(bytes(2**20))
    return target


def test_a_deflated_storage_bigger_than_the_pickle_says_is_refused_on_open(
    tmp_path, fixtures_dir, peak_bytes
):
    source = fixtures_dir / "torch" / "state_dict.pt"
    target = _deflated_copy(source, tmp_path / "big.pt", {"state_dict/data/1": 64 * 2**20})
    assert target.stat().st_size < 2**20  # 64 MiB of zeros deflate to ~64 KiB

    def open_it():
        with pytest.raises(ck.CorruptCheckpointError, match="storage holds 48") as caught:
            ck.list_variables(target)
        assert "data/1 declares 67108864 bytes" in str(caught.value)

    assert peak_bytes(open_it) < 2**20


def test_a_deflated_storage_that_inflates_past_its_header_stops_there(
    tmp_path, fixtures_dir, peak_bytes
):
    source = fixtures_dir / "torch" / "state_dict.pt"
    target = _deflated_copy(source, tmp_path / "liar.pt", {"state_dict/data/1": 64 * 2**20})
    _patch_sizes(target, "state_dict/data/1", 48)  # header and pickle agree; the stream lies
    reader = ck.load_checkpoint(target)
    np.testing.assert_array_equal(
        reader.get_tensor("fc2.weight"), ck.load_checkpoint(source).get_tensor("fc2.weight")
    )

    def read_it():
        with pytest.raises(ck.CorruptCheckpointError, match="data/1' is damaged"):
            reader.get_tensor("fc1.weight")

    assert peak_bytes(read_it) < 2**20


def test_a_stored_member_must_match_the_pickles_storage_size(tmp_path, fixtures_dir):
    target = tmp_path / "short.pt"
    target.write_bytes((fixtures_dir / "torch" / "state_dict.pt").read_bytes())
    _patch_sizes(target, "state_dict/data/1", 44)
    with pytest.raises(ck.CorruptCheckpointError, match="declares 44 bytes; the pickle's storage"):
        ck.list_variables(target)


def test_a_deflated_storage_is_inflated_once_for_all_its_views(tmp_path, fixtures_dir, monkeypatch):
    source = fixtures_dir / "torch" / "extras.pt"
    target = _deflated_copy(source, tmp_path / "extras.pt")
    inflated: list[str] = []
    member = TorchFile._member

    def spy(self, archive, info, limit):
        inflated.append(info.filename)
        return member(self, archive, info, limit)

    monkeypatch.setattr(TorchFile, "_member", spy)
    expected, found = ck.load_checkpoint(source), ck.load_checkpoint(target)
    keys = list(expected.get_variable_to_shape_map())
    assert len(keys) > len({k for k in inflated if "/data/" in k})  # some storages are shared
    inflated.clear()
    for key in keys:
        np.testing.assert_array_equal(found.get_tensor(key), expected.get_tensor(key))
    assert sorted(inflated) == sorted(set(inflated))


# -- TensorFlow bundles ----------------------------------------------------------------------


@pytest.fixture
def bundle(tmp_path) -> str:
    prefix = str(tmp_path / "ckpt")
    write_bundle(
        prefix,
        {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.array([b"x"], dtype=object)},
    )
    return prefix


def test_written_bundle_reads_back(bundle):
    reader = ck.load_checkpoint(bundle)
    np.testing.assert_array_equal(reader.get_tensor("a"), np.arange(6).reshape(2, 3))
    assert reader.get_tensor("s").tolist() == [b"x"]


@pytest.mark.parametrize("key", ["a", "s"])
def test_a_flipped_data_byte_fails_its_checksum(bundle, key):
    path = Path(bundle + ".data-00000-of-00001")
    data = bytearray(path.read_bytes())
    data[0 if key == "a" else -1] ^= 0x01
    path.write_bytes(bytes(data))
    reader = ck.load_checkpoint(bundle)
    with pytest.raises(ck.CorruptCheckpointError, match="checksum mismatch"):
        reader.get_tensor(key)


@pytest.mark.parametrize("where", [0, 10, -48, -1])
def test_a_damaged_index_is_a_typed_error(bundle, where):
    path = Path(bundle + ".index")
    data = bytearray(path.read_bytes())
    data[where] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(ck.CorruptCheckpointError, match=r"ckpt\.index"):
        ck.list_variables(bundle)


def test_a_truncated_index_is_a_typed_error(bundle):
    path = Path(bundle + ".index")
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(ck.CkptlabError):
        ck.list_variables(bundle)


def _hostile_index(prefix: str, entry: bytes, data: bytes = bytes(16)) -> None:
    header = field(1, 1) + field(3, field(1, 1))
    write_table(f"{prefix}.index", [(b"", header), (b"w", entry)])
    Path(f"{prefix}.data-00000-of-00001").write_bytes(data)


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        (encode_entry(1, [4], 2**40, 16, mask(0)), "points at bytes"),
        (encode_entry(1, [4], 8, 16, mask(0)), "points at bytes"),
        (encode_entry(1, [2**40, 2**40], 0, 16, mask(0)), "less than 2\\*\\*48"),
        (encode_entry(1, [0, 2**47, 2**47], 0, 0, mask(0)), "less than 2\\*\\*48"),
        (encode_entry(1, [5], 0, 16, mask(0)), "needs 20"),
        (encode_entry(1, [4], 0, 16, mask(0), shard=7), "data shard 7"),
        (encode_entry(99, [4], 0, 16, mask(0)), "dtype 99"),
    ],
)
def test_absurd_sizes_and_offsets_are_refused_on_open(tmp_path, entry, match):
    prefix = str(tmp_path / "ckpt")
    _hostile_index(prefix, entry)
    with pytest.raises(ck.CkptlabError, match=match):
        ck.list_variables(prefix)


def test_a_wrong_entry_checksum_is_refused_on_read(tmp_path):
    prefix = str(tmp_path / "ckpt")
    _hostile_index(prefix, encode_entry(1, [4], 0, 16, 12345))
    with pytest.raises(ck.CorruptCheckpointError, match="checksum mismatch"):
        ck.load_checkpoint(prefix).get_tensor("w")


def test_a_missing_data_shard_names_the_file(bundle):
    os.unlink(bundle + ".data-00000-of-00001")
    with pytest.raises(ck.NotFoundError, match="data-00000-of-00001"):
        ck.list_variables(bundle)


# -- safetensors and unrecognised files --------------------------------------------------------


def _safetensors(path: Path, header: dict, data: bytes = bytes(16)) -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


@pytest.mark.parametrize(
    ("header", "match"),
    [
        ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 2**40]}}, "data_offsets"),
        ({"w": {"dtype": "F32", "shape": [5], "data_offsets": [0, 16]}}, "needs 20"),
        ({"w": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}, "non-negative"),
        ({"w": {"dtype": "F32", "shape": "x", "data_offsets": [0, 16]}}, "shape"),
        ({"w": {"dtype": "Q7", "shape": [4], "data_offsets": [0, 16]}}, "Q7"),
    ],
)
def test_hostile_safetensors_headers(tmp_path, header, match):
    target = _safetensors(tmp_path / "m.safetensors", header)
    with pytest.raises(ck.CkptlabError, match=match):
        ck.list_variables(target)


def test_a_safetensors_header_length_past_the_file(tmp_path):
    target = tmp_path / "m.safetensors"
    target.write_bytes(struct.pack("<Q", 2**60) + b"{}")
    with pytest.raises(ck.CkptlabError):
        ck.list_variables(target)


def test_an_unrecognised_file_says_what_ckptlab_opens(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("hello")
    with pytest.raises(ck.UnsupportedFormatError, match="safetensors"):
        ck.list_variables(target)


def test_an_empty_file_is_said_to_be_empty(tmp_path):
    """It was reported as '(first bytes )'."""
    target = tmp_path / "model.pt"
    target.write_bytes(b"")
    with pytest.raises(ck.NotACheckpointError, match=r"recognises \(the file is empty\)\. "):
        ck.list_variables(target)


def test_a_missing_path_keeps_the_not_found_hints(tmp_path):
    with pytest.raises(ck.NotFoundError, match="latest_checkpoint"):
        ck.list_variables(tmp_path / "ckpt")


def test_torch_views_past_their_storage_are_refused(tmp_path, fixtures_dir):
    good = (fixtures_dir / "torch" / "state_dict.pt").read_bytes()
    target = tmp_path / "view.pt"
    with zipfile.ZipFile(io.BytesIO(good)) as source, zipfile.ZipFile(target, "w") as archive:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith("data.pkl"):
                data = data.replace(b"K\x03K\x04\x86", b"K\x03M\x00\x04\x86", 1)
            archive.writestr(info, data)
    with pytest.raises(ck.CorruptCheckpointError, match="past its storage"):
        ck.list_variables(target)


def test_variant_values_are_left_out_and_named(tmp_path):
    prefix = str(tmp_path / "ckpt")
    header = field(1, 1) + field(3, field(1, 1))
    variant = encode_entry(21, [], 0, 4, mask(0))
    floats = encode_entry(1, [1], 4, 4, mask(crc32c.crc32c(bytes(4))))
    write_table(f"{prefix}.index", [(b"", header), (b"iterator", variant), (b"w", floats)])
    Path(f"{prefix}.data-00000-of-00001").write_bytes(bytes(8))
    assert ck.list_variables(prefix) == [("w", [1])]
    source = ck.storage.open_checkpoint(*ck.storage.resolve(prefix))
    assert source.opaque == {"iterator": "variant"}


def test_large_values_are_verified_piece_by_piece(tmp_path):
    prefix = str(tmp_path / "big")
    values = np.arange(5 * 2**20, dtype=np.float32)  # 20 MiB: more than one 16 MiB piece
    write_bundle(prefix, {"big": values})
    np.testing.assert_array_equal(ck.load_checkpoint(prefix).get_tensor("big"), values)
    path = Path(prefix + ".data-00000-of-00001")
    with open(path, "r+b") as handle:
        handle.seek(18 * 2**20)
        byte = handle.read(1)
        handle.seek(18 * 2**20)
        handle.write(bytes([byte[0] ^ 1]))
    with pytest.raises(ck.CorruptCheckpointError, match="checksum mismatch"):
        ck.load_checkpoint(prefix).get_tensor("big")


def _sliced_index(
    prefix: str, listed: list[tuple[int, int]], stored: list[tuple[int, int]]
) -> None:
    """A [4] float32 tensor 't' whose entry lists ``listed`` slices; ``stored`` ones exist."""
    from ckptlab.storage._foreign._bundle_writer import encode_slice_key

    def extent(start: int, length: int) -> bytes:
        return field(1, field(1, start) + field(2, length)) if start else field(1, field(2, length))

    full = field(1, 1) + field(2, field(2, field(1, 4)))
    full += b"".join(field(7, extent(s, n)) for s, n in listed)
    items = [(b"", field(1, 1) + field(3, field(1, 1))), (b"t", full)]
    data = bytearray()
    for start, length in stored:
        raw = np.arange(start, start + length, dtype=np.float32).tobytes()
        entry = encode_entry(1, [length], len(data), len(raw), mask(crc32c.crc32c(raw)))
        items.append((encode_slice_key("t", [(start, length)]), entry))
        data += raw
    write_table(f"{prefix}.index", sorted(items))
    Path(f"{prefix}.data-00000-of-00001").write_bytes(bytes(data))


def test_sliced_tensors_are_reassembled(tmp_path):
    prefix = str(tmp_path / "ckpt")
    _sliced_index(prefix, [(0, 1), (1, 3)], [(0, 1), (1, 3)])
    assert ck.load_checkpoint(prefix).get_tensor("t").tolist() == [0.0, 1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    ("listed", "stored", "match"),
    [
        ([(0, 1), (1, 3)], [(0, 1)], "not in the index"),
        ([(0, 1), (2, 2)], [(0, 1), (2, 2)], "hold 3 elements"),
        ([(0, 1), (3, 2)], [(0, 1), (3, 2)], "outside dimension"),
        ([(0, 2), (1, 2)], [(0, 2), (1, 2)], "overlaps another"),
    ],
)
def test_missing_or_partial_slices_are_refused(tmp_path, listed, stored, match):
    prefix = str(tmp_path / "ckpt")
    _sliced_index(prefix, listed, stored)
    with pytest.raises(ck.CorruptCheckpointError, match=match):
        ck.list_variables(prefix)


def test_a_recompressed_torch_file_still_reads(tmp_path, fixtures_dir):
    original = fixtures_dir / "torch" / "state_dict.pt"
    target = tmp_path / "deflated.pt"
    with zipfile.ZipFile(original) as source:
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            for info in source.infolist():
                archive.writestr(info.filename, source.read(info))
    expected, found = ck.load_checkpoint(original), ck.load_checkpoint(target)
    for key in expected.get_variable_to_shape_map():
        np.testing.assert_array_equal(found.get_tensor(key), expected.get_tensor(key))
