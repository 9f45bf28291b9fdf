"""Hostile torch.save files (issue 17, items 1-3, 5, 6): typed errors, bounded time and memory.

Each file is generated here, a few hundred bytes to a few KB, and opened in a forked child with
a memory and time limit (``bounded``), so that a regression fails the test instead of taking
the machine down.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import struct
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

import ckptlab as ck
from ckptlab.cli._common import open_target
from ckptlab.cli._verify import verify_checkpoint
from ckptlab.storage._foreign import _unpickle


class _Call:
    """Pickles as ``function(*args)``: the global is written by name, nothing is called."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def torch_zip(path: Path, data_pkl: bytes, storages: dict[str, bytes] | None = None) -> Path:
    """A torch.save-like zip around a hand-made ``data.pkl``."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/byteorder", "little")
        for key, raw in (storages or {}).items():
            archive.writestr(f"archive/data/{key}", raw)
        archive.writestr("archive/version", "3\n")
    return path


def tensor_pickle(size: tuple, stride: tuple, offset: int = 0, count: int = 4) -> bytes:
    """``{"w": _rebuild_tensor_v2(<FloatStorage '0' of count elements>, offset, size, stride)}``."""

    class Storage:
        pass

    storage = Storage()

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if obj is storage:
                return ("storage", torch.FloatStorage, "0", "cpu", count)
            return None

    value = _Call(
        torch._utils._rebuild_tensor_v2, storage, offset, size, stride, False, OrderedDict()
    )
    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump({"w": value})
    return buffer.getvalue()


def shared_dag(depth: int = 40):
    """``d = {"a": d, "b": d}``, ``depth`` levels: 2**depth paths through a few hundred bytes."""
    d: dict = {}
    for _ in range(depth):
        d = {"a": d, "b": d}
    return d


def nested_lists(count: int) -> bytes:
    """A pickle of ``count`` lists nested in each other (the pickler itself would recurse)."""
    return b"\x80\x02" + b"]" * count + b"a" * (count - 1) + b"."


def expect_typed(outcome, match: str | None = None) -> str:
    assert outcome is not None, "the file was accepted"
    typed, name, message = outcome
    assert typed, f"{name}: {message}"
    if match is not None:
        assert match in message, message
    return message


# -- 1. work bounded by the file's size ---------------------------------------------------------


def dag_payloads() -> dict[str, bytes]:
    lists: list = []
    for _ in range(40):
        lists = [lists, lists]
    frozen: frozenset = frozenset()
    for _ in range(40):
        frozen = frozenset([frozen, (frozen,)])
    tuples = b"N" + b"q\x00h\x00\x86" * 60  # t = (t, t) through the memo; Python can't hash it
    return {
        "shared dicts": pickle.dumps(shared_dag(), protocol=2),
        "shared dicts, protocol 4": pickle.dumps(shared_dag(), protocol=4),
        "str() of torch.device": pickle.dumps({"d": _Call(torch.device, lists)}, protocol=2),
        "str() of numpy.dtype": pickle.dumps({"d": _Call(np.dtype, lists)}, protocol=2),
        "frozenset keys": pickle.dumps({frozen: 1}, protocol=2),
        "frozenset keys, protocol 4": pickle.dumps({frozen: 1}, protocol=4),
        "tuple keys (hashing 2**60 elements)": b"\x80\x02}" + tuples + b"K\x01s.",
        "a deep tuple key (C recursion)": b"\x80\x02}N" + b"\x85" * 1_000_000 + b"K\x01s.",
        "an error message naming shared dicts": pickle.dumps(shared_dag(), 2)[:-1] + b")R.",
    }


@pytest.mark.parametrize("name", list(dag_payloads()))
def test_small_files_that_expand_are_refused_quickly(tmp_path, bounded, name):
    data = dag_payloads()[name]
    assert len(data) < 1_100_000
    target = torch_zip(tmp_path / "dag.pt", data)
    if name.startswith("shared dicts"):
        assert target.stat().st_size < 2000
    expect_typed(bounded(lambda: ck.list_variables(target), seconds=20, memory=2**30))


def test_shared_containers_are_still_listed_under_each_path(tmp_path):
    layer = {"w": torch.arange(3.0)}
    path = tmp_path / "shared.pt"
    torch.save({"model": layer, "ema": layer}, path)
    assert dict(ck.list_variables(path)) == {"ema/w": [3], "model/w": [3]}


def test_a_cycle_is_refused(tmp_path, bounded):
    cycle: dict = {}
    cycle["a"] = cycle
    target = torch_zip(tmp_path / "cycle.pt", pickle.dumps(cycle, protocol=2))
    expect_typed(bounded(lambda: ck.list_variables(target)), "deep")


def test_two_hundred_thousand_nested_lists_are_refused(tmp_path, bounded):
    target = torch_zip(tmp_path / "deep.pt", nested_lists(200_000))
    expect_typed(bounded(lambda: ck.list_variables(target)), "deep")


# -- 2. nothing shared is mutated ----------------------------------------------------------------

ITEMS_ON_THE_CLASS = (
    b"\x80\x02ccollections\nOrderedDict\nN}X\x05\x00\x00\x00itemscbuiltins\nfrozenset\ns\x86b."
)


def _state_dict_keys(path) -> list[str]:
    return sorted(k for k, _ in ck.list_variables(path))


@pytest.mark.parametrize(
    "data",
    [
        ITEMS_ON_THE_CLASS,
        # BUILD on a rebuild function: its __defaults__ would change for the whole process
        b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nN}X\x0c\x00\x00\x00__defaults__)s\x86b.",
        # an instance attribute shadowing dict.items on a fresh OrderedDict
        b"\x80\x02ccollections\nOrderedDict\n)R}X\x05\x00\x00\x00itemsK\x01sb.",
        # a Counter's state (it is built from a dict, never BUILT), or one counting a string
        b"\x80\x02ccollections\nCounter\n)R}X\x05\x00\x00\x00itemsK\x01sb.",
        b"\x80\x02ccollections\nCounter\nX\x03\x00\x00\x00abc\x85R.",
        # a big-endian state for numpy's cached float64 dtype
        b"\x80\x02cnumpy\ndtype\nX\x02\x00\x00\x00f8\x89\x88\x87R(K\x03X\x01\x00\x00\x00>NNNJ"
        b"\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb.",
    ],
    ids=[
        "OrderedDict.items",
        "function defaults",
        "instance items",
        "Counter items",
        "Counter of a string",
        "numpy dtype",
    ],
)
def test_a_file_never_changes_what_later_files_read(tmp_path, fixtures_dir, data):
    good = fixtures_dir / "torch" / "state_dict.pt"
    before = _state_dict_keys(good)
    assert len(before) > 5
    target = torch_zip(tmp_path / "evil.pt", data)
    with contextlib.suppress(ck.CkptlabError):  # refused, or (instance items) ignored
        assert ck.list_variables(target) == []
    assert _state_dict_keys(good) == before
    assert np.dtype("f8").str == "<f8"
    assert _unpickle.StateDict.items is dict.items
    assert _unpickle.ALLOWED[("collections", "OrderedDict")].make() == {}


def test_the_issue_file_in_a_fresh_process(tmp_path, fixtures_dir):
    """The reproduction as the issue gives it: open the hostile file, then a real state_dict."""
    target = torch_zip(tmp_path / "evil.pt", ITEMS_ON_THE_CLASS)
    script = (
        "import sys, ckptlab as ck\n"
        "try:\n    ck.list_variables(sys.argv[1])\nexcept ck.CorruptCheckpointError:\n    pass\n"
        "print(len(ck.list_variables(sys.argv[2])))\n"
    )
    good = fixtures_dir / "torch" / "state_dict.pt"
    done = subprocess.run(
        [sys.executable, "-c", script, str(target), str(good)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert int(done.stdout) == len(ck.list_variables(good)) > 5


def test_numpy_scalars_and_dtypes_still_load(tmp_path):
    path = tmp_path / "scalars.pt"
    torch.save({"w": torch.ones(2), "best": np.float64(0.5), "kind": np.dtype("int32")}, path)
    source = ck.storage.open_checkpoint(*ck.storage.resolve(str(path)))
    assert source.literals["best"] == 0.5
    assert repr(source.literals["kind"]) == "dtype('int32')"


# -- 3. expanded views ---------------------------------------------------------------------------


def test_an_expanded_tensor_is_not_materialised_into_gigabytes(tmp_path, bounded):
    path = tmp_path / "expand.pt"
    torch.save({"w": torch.zeros(1).expand(2**30), "small": torch.arange(3.0).expand(4, 3)}, path)
    assert path.stat().st_size < 2000
    reader = ck.load_checkpoint(path)
    assert reader.get_variable_to_shape_map()["w"] == [2**30]
    np.testing.assert_array_equal(reader.get_tensor("small"), np.tile(np.arange(3.0), (4, 1)))
    message = expect_typed(bounded(lambda: reader.get_tensor("w"), memory=2**29), "stride 0")
    assert "expand" in message


def test_an_expanded_tensor_of_2_40_elements(tmp_path, bounded):
    target = torch_zip(
        tmp_path / "huge.pt", tensor_pickle((2**40,), (0,), count=1), {"0": bytes(4)}
    )
    expect_typed(bounded(lambda: ck.load_checkpoint(target).get_tensor("w"), memory=2**29))


# -- 5. untyped exceptions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"\x80\x04\x95" + struct.pack("<Q", 2**63) + b"N.",  # FRAME length >= 2**63
        b"\x80\x04\x8e" + struct.pack("<Q", 2**63 + 5) + b"abc.",  # BINBYTES8
        b"\x80\x04\x8d" + struct.pack("<Q", 2**64 - 1) + b"abc.",  # BINUNICODE8
        b"\x80\x02\x8a\x01",  # LONG1 cut short
        b"\x80\x02K",  # truncated
        b"\x80\x02\x82\x01.",  # EXT1
        b"\x80\x02(K\x01K\x02d.",  # DICT with an odd item count? (1: 2) is fine; next one
        b"\x80\x02}(K\x01s.",  # SETITEMS with an odd number of items
        b"\x80\x02)K\x01a.",  # APPEND to a tuple
    ],
)
def test_damaged_pickles_are_typed(tmp_path, bounded, data):
    target = torch_zip(tmp_path / "bad.pt", data)
    outcome = bounded(lambda: ck.load_checkpoint(target).get_variable_to_shape_map())
    if outcome is not None:  # a valid (empty or literal-only) pickle may also just load
        expect_typed(outcome)


@pytest.mark.parametrize(
    ("size", "stride", "match"),
    [
        ((4,), (2**63,), "stride"),
        ((2, 2), (2**64, 1), "stride"),
        ((0, 2**47, 2**47), (1, 1, 1), "2**48"),
        ((2**40, 2**40), (0, 0), "2**48"),
        ((4,), (-1,), "past its storage"),
        ((4,), (10**5000,), "bits"),
    ],
)
def test_absurd_strides_and_shapes(tmp_path, bounded, size, stride, match):
    target = torch_zip(tmp_path / "t.pt", tensor_pickle(size, stride), {"0": bytes(16)})

    def everything():
        reader = ck.load_checkpoint(target)
        for key in reader.get_variable_to_shape_map():
            reader.get_tensor(key)

    expect_typed(bounded(everything), match)


@pytest.mark.parametrize("flag", [0x1, 0x20, 0x40])
@pytest.mark.parametrize("member", ["data.pkl", "data/0"])
def test_zip_flag_bits_are_refused(tmp_path, fixtures_dir, flag, member):
    source = fixtures_dir / "torch" / "state_dict.pt"
    data = bytearray(source.read_bytes())
    name = f"state_dict/{member}".encode()
    for signature, flags_at, name_at in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        at = data.find(signature)
        while at >= 0:
            if data[at + name_at : at + name_at + len(name)] == name:
                struct.pack_into("<H", data, at + flags_at, flag)
            at = data.find(signature, at + 4)
    target = tmp_path / "flags.pt"
    target.write_bytes(bytes(data))

    def everything():
        reader = ck.load_checkpoint(target)
        for key in reader.get_variable_to_shape_map():
            reader.get_tensor(key)

    with pytest.raises(ck.UnsupportedFormatError, match="encrypted or patched"):
        everything()


def test_a_zip_needing_an_unknown_version_is_typed(tmp_path, fixtures_dir):
    data = bytearray((fixtures_dir / "torch" / "state_dict.pt").read_bytes())
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        data[at + 6] = 250  # "version needed to extract": 25.0, which zipfile refuses
        at = data.find(b"PK\x01\x02", at + 4)
    target = tmp_path / "version.pt"
    target.write_bytes(bytes(data))
    for action in (ck.list_variables, ck.load_checkpoint):
        with pytest.raises(ck.CorruptCheckpointError, match=r"zip file version 25\.0") as info:
            action(target)
        assert str(target) in str(info.value)


def test_odd_storage_ids_are_typed(tmp_path):
    class Storage:
        pass

    storage = Storage()
    lists: list = []
    for _ in range(30):
        lists = [lists, lists]

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, lists, "cpu", 1) if obj is storage else None

    buffer = io.BytesIO()
    value = _Call(torch._utils._rebuild_tensor_v2, storage, 0, (1,), (1,), False, OrderedDict())
    Pickler(buffer, protocol=2).dump({"w": value})
    target = torch_zip(tmp_path / "pid.pt", buffer.getvalue())
    with pytest.raises(ck.CorruptCheckpointError, match="storage id"):
        ck.list_variables(target)


def test_keys_that_collide_once_joined_are_refused(tmp_path):
    path = tmp_path / "collide.pt"
    torch.save({"a/b": torch.ones(1), "a": {"b": torch.zeros(1)}}, path)
    with pytest.raises(ck.UnsupportedFormatError, match="both named 'a/b'"):
        ck.list_variables(path)


def test_a_lone_surrogate_key_is_refused(tmp_path):
    path = tmp_path / "surrogate.pt"
    torch.save({"bad\udcff": torch.ones(1)}, path)
    with pytest.raises(ck.UnsupportedFormatError, match="lone surrogate"):
        ck.list_variables(path)


# -- 6. crc32 of zip members ----------------------------------------------------------------------


def _flip_in_member(source: Path, target: Path, member: str) -> None:
    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as archive:
        info = archive.getinfo(member)
    name_length, extra_length = struct.unpack_from("<HH", data, info.header_offset + 26)
    data[info.header_offset + 30 + name_length + extra_length] ^= 0x01
    target.write_bytes(bytes(data))


def test_a_flipped_storage_byte_is_caught_on_read(tmp_path, fixtures_dir):
    source = fixtures_dir / "torch" / "state_dict.pt"
    target = tmp_path / "flipped.pt"
    _flip_in_member(source, target, "state_dict/data/0")
    reader, good = ck.load_checkpoint(target), ck.load_checkpoint(source)
    tensors = ck.storage.open_checkpoint(*ck.storage.resolve(str(target))).tensors
    on_data_0 = [k for k, t in tensors.items() if t.storage.key == "0"]
    assert on_data_0
    for key in good.get_variable_to_shape_map():
        if key in on_data_0:
            with pytest.raises(ck.CorruptCheckpointError, match="crc32"):
                reader.get_tensor(key)
        else:
            np.testing.assert_array_equal(reader.get_tensor(key), good.get_tensor(key))


@pytest.mark.parametrize("damaged", [False, True])
def test_a_storage_of_many_pieces_is_checked_on_any_thread(tmp_path, monkeypatch, damaged):
    """A storage larger than one read piece has its pieces checksummed on the process's helper
    thread; read from a job already running on that helper (a DCP chunk's half), the pieces are
    checksummed inline instead of waiting for the helper itself.  Both ways the bytes are exact
    and a flipped byte in the last piece is caught."""
    from ckptlab.storage import _stream
    from ckptlab.storage._foreign import _base

    monkeypatch.setattr(_base, "OVERLAP_PIECE", 4096)
    path = tmp_path / "big.pt"
    weight = torch.arange(10_000, dtype=torch.float32)
    torch.save({"weight": weight}, path)
    if damaged:
        data = bytearray(path.read_bytes())
        data[data.find(weight.numpy().tobytes()) + weight.numpy().nbytes - 1] ^= 0x01
        path.write_bytes(bytes(data))

    def read() -> np.ndarray:
        return ck.load_checkpoint(path).get_tensor("weight")

    for run in (read, lambda: _stream.shared_helper().submit(read).result(timeout=60)):
        if damaged:
            with pytest.raises(ck.CorruptCheckpointError, match="crc32"):
                run()
        else:
            np.testing.assert_array_equal(run(), weight.numpy())


# -- dtypes and byte orders: read as torch.load reads them -----------------------------------------


def _bits(tensor) -> bytes:
    """A tensor's bytes in C order, whatever its dtype (torch cannot hand float8 to numpy)."""
    return tensor.contiguous().view(torch.uint8).numpy().tobytes()


@pytest.mark.parametrize(
    "name",
    ["float8_e5m2", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu",
     "bfloat16"],
)  # fmt: skip
def test_float8_and_bfloat16_tensors_and_views_read_as_torch_loads_them(tmp_path, name):
    dtype = getattr(torch, name)
    base = torch.tensor([[1.0, -2.0, 0.5], [4.0, 0.25, 8.0]]).abs().to(dtype)
    path = tmp_path / "f8.pt"
    torch.save({"w": base, "t": base.t(), "every_other": base.reshape(-1)[::2]}, path)
    loaded = torch.load(path, weights_only=True)
    reader = ck.load_checkpoint(path)
    for key, want in loaded.items():
        got = reader.get_tensor(key)
        assert got.dtype.name == name and got.shape == tuple(want.shape), key
        assert got.tobytes() == _bits(want), key


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
@pytest.mark.parametrize("name", ["complex32", "float4_e2m1fn_x2", "bits8", "bits16"])
def test_dtypes_numpy_has_no_type_for_are_listed_and_refused_only_on_read(tmp_path, name):
    dtype = getattr(torch, name)
    exotic = torch.arange(6 * dtype.itemsize, dtype=torch.uint8).view(dtype).reshape(2, 3)
    path = tmp_path / "exotic.pt"
    torch.save({"w": torch.arange(3.0), "x": exotic}, path)
    reader = ck.load_checkpoint(path)
    assert ck.list_variables(path) == [("w", [3]), ("x", [2, 3])]
    assert reader.get_tensor("w").tobytes() == torch.load(path)["w"].numpy().tobytes()
    refused = rf"'x' of .*exotic\.pt has dtype {name}.*t\.to\(torch\.float32\)"
    with pytest.raises(ck.UnsupportedFormatError, match=refused):
        reader.get_tensor("x")
    with pytest.raises(ck.UnsupportedFormatError, match=rf"'x' \({name}\)"):
        ck.convert(path, tmp_path / "converted")
    verified = verify_checkpoint(open_target(str(path))[0])  # `ckptlab verify`: not damage
    assert verified.ok and verified.damaged == []
    assert [key for key, _ in verified.unreadable] == ["x"]


def test_an_unknown_torch_global_is_still_refused(tmp_path):
    path = torch_zip(tmp_path / "m.pt", b"\x80\x02ctorch\nnot_a_dtype\nq\x00.")
    with pytest.raises(ck.UnsafePickleError, match="torch.not_a_dtype"):
        ck.list_variables(path)


def _big_endian_copy(source: Path, target: Path, widths: dict[str, int]) -> None:
    """``source`` as torch.save writes it on a big-endian machine: each storage's elements
    (``widths``: storage key -> bytes per swapped unit) reversed, ``byteorder`` set to big."""
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(target, "w") as out:
        for info in archive.infolist():
            data = archive.read(info)
            folder, _, key = info.filename.rpartition("/")
            if info.filename.endswith("/byteorder"):
                data = b"big"
            elif folder.endswith("/data") and key in widths:
                units = np.frombuffer(data, np.uint8).reshape(-1, widths[key])
                data = units[:, ::-1].tobytes()
            out.writestr(info, data)


def test_a_big_endian_file_reads_as_torch_loads_it(tmp_path):
    weights = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 7
    tensors = {
        "w": weights,
        "w_t": weights.t(),  # a view sharing storage 0
        "i": torch.tensor([1, 256, -(2**40)], dtype=torch.int64),
        "h": torch.tensor([1.5, -3.25], dtype=torch.bfloat16),
        "c": torch.tensor([1 + 2j, -3.5j], dtype=torch.complex64),
        "f8": torch.tensor([1.0, -2.0]).to(torch.float8_e5m2),
        "b": torch.tensor([True, False]),
        "u16": torch.tensor([1, 65535], dtype=torch.uint16),
    }
    # storage keys follow first appearance; complex numbers swap each part (torch's byteswap)
    widths = dict(enumerate([4, 8, 2, 4, 1, 1, 2]))
    little, big = tmp_path / "little.pt", tmp_path / "big.pt"
    torch.save(tensors, little)
    _big_endian_copy(little, big, {str(k): v for k, v in widths.items()})
    # torch.load swaps typed storages only: a uint16 storage (untyped, _rebuild_tensor_v3) is
    # left big-endian (torch 2.14 reads 1 as 256); ckptlab swaps every tensor by its dtype.
    loaded = {**torch.load(big, weights_only=True), "u16": tensors["u16"]}
    assert {k: _bits(v) for k, v in loaded.items()} == {k: _bits(v) for k, v in tensors.items()}
    reader = ck.load_checkpoint(big)
    for key, want in loaded.items():
        assert reader.get_tensor(key).tobytes() == _bits(want), key
