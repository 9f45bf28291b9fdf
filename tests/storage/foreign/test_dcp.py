"""PyTorch Distributed Checkpoints written by torch.distributed.checkpoint (1 and 2 ranks)."""

from __future__ import annotations

import collections
import os
import pickle
import shutil
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import ckptlab as ck
from ckptlab.core import Container
from ckptlab.storage import open_path

from .contract import (
    assert_reads_exactly,
    assert_reads_without,
    assert_same_array,
    assert_works_everywhere,
)

torch = pytest.importorskip("torch")
dcp = pytest.importorskip("torch.distributed.checkpoint")
WRITER = Path(__file__).parent / "writers" / "dcp_writer.py"


@pytest.fixture(scope="module")
def dcp_dirs(tmp_path_factory) -> Path:
    """``single`` (one process) and ``ranks`` (two gloo processes), written by real DCP."""
    root = tmp_path_factory.mktemp("dcp")
    result = subprocess.run(
        [sys.executable, str(WRITER), str(root)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return root


def _numpy(tensor) -> np.ndarray:
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return tensor.numpy()


def _dcp_load(directory: Path) -> dict[str, np.ndarray]:
    """Every tensor as DCP's own reader loads it (into a state dict of the saved shapes)."""
    metadata = dcp.FileSystemReader(str(directory)).read_metadata()
    state = {
        fqn: torch.empty(entry.size, dtype=entry.properties.dtype)
        for fqn, entry in metadata.state_dict_metadata.items()
        if isinstance(entry, dcp.metadata.TensorStorageMetadata)
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "torch.distributed is disabled ... single process"
        dcp.load(state, checkpoint_id=str(directory))
    return {fqn: _numpy(tensor) for fqn, tensor in state.items()}


@pytest.mark.parametrize("name", ["single", "ranks"])
def test_values_match_dcp_load(dcp_dirs, name):
    expected = _dcp_load(dcp_dirs / name)
    assert_reads_exactly(dcp_dirs / name, expected)
    assert_reads_exactly(dcp_dirs / name / ".metadata", expected)


def test_two_ranks_are_reassembled_from_both_files(dcp_dirs):
    reader = open_path(dcp_dirs / "ranks")
    assert sorted(os.listdir(dcp_dirs / "ranks")) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    chunks = reader._chunks
    assert {c.file for c in chunks["model.rows"]} == {"__0_0.distcp", "__1_0.distcp"}
    assert [c.region for c in chunks["model.cols"]] == [((0, 3), (0, 4)), ((0, 3), (4, 4))]
    assert [c.region for c in chunks["model.uneven"]] == [((0, 3), (0, 3)), ((3, 2), (0, 3))]
    assert "2 chunk(s)" in reader.stored("model.rows").foreign.detail


def test_regions_read_only_the_chunks_they_touch(dcp_dirs, tmp_path):
    directory = tmp_path / "ranks"
    shutil.copytree(dcp_dirs / "ranks", directory)
    full = _dcp_load(directory)
    reader = open_path(directory)
    for key, region in [
        ("model.rows", (slice(1, 5), slice(None))),
        ("model.cols", ((0, 3), (2, 7))),
        ("model.uneven", (slice(2, 4), slice(0, 3))),
        ("model.replicated", (slice(1, 3),)),
    ]:
        index = tuple(slice(*r) if isinstance(r, tuple) else r for r in region)
        assert_same_array(reader.read_region(key, region), full[key][index], key)
    (directory / "__1_0.distcp").unlink()  # rank 1's file is gone: its rows cannot be read
    assert_same_array(
        reader.read_region("model.rows", (slice(0, 3), slice(None))), full["model.rows"][:3], "rows"
    )
    with pytest.raises(ck.NotFoundError, match="__1_0.distcp"):
        reader.read("model.rows")
    with pytest.raises(ValueError, match="outside"):
        reader.read_region("model.rows", ((0, 9), (0, 4)))  # pairs are not clipped like slices


@pytest.mark.parametrize("guess", [0, 64, 10**9])
def test_a_wrong_guess_of_where_a_chunks_bytes_start_is_corrected(dcp_dirs, guess):
    expected = _dcp_load(dcp_dirs / "ranks")
    reader = open_path(dcp_dirs / "ranks")
    for key, want in expected.items():
        reader._data_start = guess  # as if the previous archive had another layout
        assert_same_array(reader.read(key), want, key)


def test_non_tensor_values_are_literals(dcp_dirs):
    reader = open_path(dcp_dirs / "single")
    assert reader.literals == {"optimizer.lr": 0.01, "step": 12, "name": "run-1"}
    assert "step" not in reader.document.values


def test_a_dcp_checkpoint_works_with_every_entry_point(dcp_dirs, tmp_path):
    assert_works_everywhere(
        dcp_dirs / "ranks", _dcp_load(dcp_dirs / "ranks"), tmp_path, checksums=True
    )


def test_a_flipped_byte_fails_the_chunks_crc32(dcp_dirs, tmp_path):
    from .contract import run_cli

    directory = tmp_path / "ranks"
    shutil.copytree(dcp_dirs / "ranks", directory)
    reader = open_path(directory)
    chunk = reader._chunks["model.rows"][1]
    expected = reader.read("model.rows")
    target = expected[3:].tobytes()
    data = bytearray((directory / chunk.file).read_bytes())
    at = data.find(target, chunk.offset)
    assert at > 0
    data[at + 5] ^= 0x01
    (directory / chunk.file).write_bytes(bytes(data))
    with pytest.raises(ck.CorruptCheckpointError, match="CRC-32"):
        ck.load_checkpoint(directory).get_tensor("model.rows")
    code, text = run_cli("verify", str(directory))
    assert code == 1 and "DAMAGED model.rows" in text


def test_large_bulk_reads_run_on_two_threads_exactly(dcp_dirs, tmp_path, monkeypatch):
    """Bulk reads of 4 MiB and more split the chunks between two threads; each value still
    comes back exactly, and a damaged chunk in either half is reported."""
    from ckptlab.storage._foreign import _dcp

    monkeypatch.setattr(_dcp, "SPLIT_BYTES", 0)
    expected = _dcp_load(dcp_dirs / "ranks")
    keys = list(expected)
    read = open_path(dcp_dirs / "ranks").read_arrays(keys)
    assert list(read) == keys
    for key in keys:
        assert_same_array(read[key], expected[key], key)

    for key in (keys[0], keys[-1]):  # a value of the first half, then one of the second
        directory = tmp_path / key
        shutil.copytree(dcp_dirs / "ranks", directory)
        reader = open_path(directory)
        chunk = reader._chunks[key][0]
        data = bytearray((directory / chunk.file).read_bytes())
        region = tuple(slice(start, start + size) for start, size in chunk.region)
        at = data.find(np.ascontiguousarray(expected[key][region]).tobytes(), chunk.offset)
        assert at > 0
        data[at] ^= 0x01
        (directory / chunk.file).write_bytes(bytes(data))
        with pytest.raises(ck.CorruptCheckpointError, match=f"{key}.*CRC-32"):
            open_path(directory).read_arrays(keys)


@pytest.mark.parametrize("damaged", [None, 0, -1])
def test_a_large_value_is_read_on_two_threads_exactly(dcp_dirs, tmp_path, monkeypatch, damaged):
    """A value of 4 MiB and more in several chunks has its chunks split between two threads;
    it comes back exactly, and a damaged chunk in either half is reported."""
    from ckptlab.storage._foreign import _dcp

    monkeypatch.setattr(_dcp, "SPLIT_BYTES", 0)
    key = "model.rows"
    directory = tmp_path / "ranks"
    shutil.copytree(dcp_dirs / "ranks", directory)
    expected = _dcp_load(directory)[key]
    reader = open_path(directory)
    chunks = reader._chunks[key]
    assert len(chunks) == 2
    threads = []
    read_pieces = reader._read_pieces
    monkeypatch.setattr(
        reader,
        "_read_pieces",
        lambda pieces: threads.append(threading.current_thread().name) or read_pieces(pieces),
    )
    if damaged is None:
        assert_same_array(reader.read(key), expected, key)
        assert sorted(threads) == ["MainThread", "ckptlab-helper"]
        return
    chunk = chunks[damaged]
    region = tuple(slice(start, start + size) for start, size in chunk.region)
    data = bytearray((directory / chunk.file).read_bytes())
    at = data.find(np.ascontiguousarray(expected[region]).tobytes(), chunk.offset)
    assert at > 0
    data[at] ^= 0x01
    (directory / chunk.file).write_bytes(bytes(data))
    with pytest.raises(ck.CorruptCheckpointError, match=f"{key}.*{chunk.file}.*CRC-32"):
        reader.read(key)


def test_reading_imports_no_torch(dcp_dirs):
    assert_reads_without([dcp_dirs / "ranks", dcp_dirs / "single"], ("torch",))


# -- damaged and hostile checkpoints ---------------------------------------------------------


class _Payload:
    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def _edit_metadata(source: Path, target: Path, edit) -> None:
    """Copy a checkpoint, unpickle its metadata with torch, change it, pickle it again."""
    shutil.copytree(source, target)
    with open(target / ".metadata", "rb") as handle:
        metadata = pickle.load(handle)
    edit(metadata)
    with open(target / ".metadata", "wb") as handle:
        pickle.dump(metadata, handle)


def _storage(metadata, fqn):
    return next(v for k, v in metadata.storage_data.items() if k.fqn == fqn)


@pytest.mark.parametrize("global_name", ["os.system", "builtins.exec", "builtins.eval"])
def test_disallowed_globals_in_metadata_are_refused_and_never_run(dcp_dirs, tmp_path, global_name):
    marker = tmp_path / "pwned"
    payloads = {
        "os.system": _Payload(os.system, f"touch {marker}"),
        "builtins.exec": _Payload(exec, f"open({str(marker)!r}, 'w').close()"),
        "builtins.eval": _Payload(eval, f"open({str(marker)!r}, 'w')"),
    }

    def edit(metadata):
        metadata.planner_data = payloads[global_name]

    _edit_metadata(dcp_dirs / "single", tmp_path / "evil", edit)
    with pytest.raises(ck.UnsafePickleError) as raised:
        ck.list_variables(tmp_path / "evil")
    assert raised.value.global_name.endswith(global_name.split(".")[1])
    assert not marker.exists()


def test_a_build_aimed_at_a_stand_in_class_fails_and_changes_nothing(tmp_path):
    from ckptlab.storage._foreign import _dcp_metadata

    directory = tmp_path / "d"
    directory.mkdir()
    # GLOBAL Metadata; (None, {"FIELDS": ("x",)}); BUILD: setattr on the class itself
    evil = (
        b"\x80\x02ctorch.distributed.checkpoint.metadata\nMetadata\n"
        b"N}X\x06\x00\x00\x00FIELDS(X\x01\x00\x00\x00xts\x86b."
    )
    (directory / ".metadata").write_bytes(evil)
    with pytest.raises(ck.CorruptCheckpointError):
        ck.list_variables(directory)
    assert _dcp_metadata.Metadata.FIELDS[0] == "state_dict_metadata"


def test_dcp_classes_are_allowed_in_metadata_files_only(tmp_path):
    metadata = dcp.metadata.Metadata(state_dict_metadata={})
    torch.save({"meta": metadata}, tmp_path / "model.pt")
    with pytest.raises(ck.UnsafePickleError, match="torch.distributed.checkpoint"):
        ck.list_variables(tmp_path / "model.pt")


def test_a_metadata_file_that_is_not_dcp_metadata_is_refused(tmp_path):
    directory = tmp_path / "d"
    directory.mkdir()
    (directory / ".metadata").write_bytes(
        b"\x80\x04\x95" + b"torch.distributed.checkpoint" * 3 + b"."
    )
    with pytest.raises(ck.CorruptCheckpointError):
        ck.list_variables(directory)


@pytest.mark.parametrize(
    ("case", "error", "match"),
    [
        ("dotdot", ck.CorruptCheckpointError, "inside the directory"),
        ("absolute", ck.CorruptCheckpointError, "inside the directory"),
        ("past the end", ck.CorruptCheckpointError, "which has"),
        ("missing file", ck.NotFoundError, "__9_0.distcp"),
        ("gap", ck.CorruptCheckpointError, "slices hold"),
        ("overlap", ck.CorruptCheckpointError, "overlaps"),
        ("chunk outside", ck.CorruptCheckpointError, "does not fit"),
        ("compressed", ck.UnsupportedFormatError, "zstd"),
    ],
)
def test_damaged_metadata_is_a_typed_error(dcp_dirs, tmp_path, case, error, match):
    def edit(metadata):
        rows = metadata.state_dict_metadata["model.rows"]
        info = _storage(metadata, "model.rows")
        if case == "dotdot":
            info.relative_path = "../__0_0.distcp"
        elif case == "absolute":
            info.relative_path = "/etc/passwd"
        elif case == "past the end":
            info.offset = 10**9
        elif case == "missing file":
            info.relative_path = "__9_0.distcp"
        elif case == "gap":
            rows.chunks = rows.chunks[:1]
        elif case == "overlap":
            first = rows.chunks[0]
            rows.chunks[1].offsets = first.offsets
            for key in list(metadata.storage_data):
                if key.fqn == "model.rows" and tuple(key.offset) == (3, 0):
                    metadata.storage_data[type(key)("model.rows", first.offsets)] = (
                        metadata.storage_data.pop(key)
                    )
        elif case == "chunk outside":
            rows.chunks[1].sizes = torch.Size([9, 4])
        elif case == "compressed":
            info.transform_descriptors = ["zstd/1"]

    _edit_metadata(dcp_dirs / "ranks", tmp_path / case, edit)
    with pytest.raises(error, match=match):
        ck.list_variables(tmp_path / case)


def test_a_chunk_that_is_not_the_tensor_the_metadata_says_is_corrupt(dcp_dirs, tmp_path):
    def edit(metadata):
        rows = _storage(metadata, "model.rows")
        cols = _storage(metadata, "model.cols")
        rows.offset, rows.length = cols.offset, cols.length  # points at a bfloat16 chunk

    _edit_metadata(dcp_dirs / "ranks", tmp_path / "swapped", edit)
    reader = ck.load_checkpoint(tmp_path / "swapped")
    with pytest.raises(ck.CorruptCheckpointError, match="metadata says"):
        reader.get_tensor("model.rows")


def test_truncated_metadata_and_chunks_are_corrupt(dcp_dirs, tmp_path):
    directory = tmp_path / "cut"
    shutil.copytree(dcp_dirs / "ranks", directory)
    data = (directory / ".metadata").read_bytes()
    (directory / ".metadata").write_bytes(data[: len(data) // 2])
    with pytest.raises(ck.CorruptCheckpointError):
        ck.list_variables(directory)
    (directory / ".metadata").write_bytes(data)
    rank = (directory / "__1_0.distcp").read_bytes()
    (directory / "__1_0.distcp").write_bytes(rank[:100])
    with pytest.raises(ck.CorruptCheckpointError):
        ck.list_variables(directory)


# -- restoring a training program by name ---------------------------------------------------------


def _training_program(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    return model, torch.optim.Adam(model.parameters(), lr=0.01)


@pytest.mark.parametrize("layout", ["state_dict", "get_state_dict"])
def test_a_training_checkpoint_restores_model_and_optimizer(tmp_path, layout):
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model, optimizer = _training_program(0)
    for _ in range(2):
        model(torch.randn(5, 4)).sum().backward()
        optimizer.step()
    optimizer.param_groups[0]["lr"] = 0.003
    if layout == "state_dict":  # state keyed by position: optimizer.state.0.exp_avg
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
    else:  # keyed by parameter name: optimizer.state.0.weight.exp_avg
        state = dict(zip(("model", "optimizer"), get_state_dict(model, optimizer), strict=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "torch.distributed is disabled ... single process"
        dcp.save(state, checkpoint_id=str(tmp_path / "step-2"))
    fresh, fresh_optimizer = _training_program(1)
    status = ck.Checkpoint(model=fresh, optimizer=fresh_optimizer).restore(tmp_path / "step-2")
    status.assert_consumed()
    for name, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], value), name
    for saved, restored in zip(model.parameters(), fresh.parameters(), strict=True):
        for slot, value in optimizer.state[saved].items():
            assert torch.equal(fresh_optimizer.state[restored][slot], value), slot
    assert fresh_optimizer.param_groups[0]["lr"] == 0.003


def test_a_dcp_checkpoint_of_another_model_conflicts_and_writes_nothing(tmp_path):
    model, _ = _training_program(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save({"model": model.state_dict()}, checkpoint_id=str(tmp_path / "c"))
    torch.manual_seed(1)
    other = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(ck.RestoreConflictError) as caught:
        ck.Checkpoint(model=other).restore(tmp_path / "c")
    for name in ("model.0.weight", "model.0.bias", "model.2.weight"):
        assert name in str(caught.value)
    assert all(torch.equal(other.state_dict()[k], v) for k, v in before.items())


def _dcp_save(state: dict, directory: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "torch.distributed is disabled ... single process"
        dcp.save(state, checkpoint_id=str(directory))


def test_lbfgs_history_lists_restore_and_training_goes_on_identically(tmp_path):
    """DCP records list positions as integers in ``planner_data``: LBFGS' ``old_dirs``,
    ``old_stps``, ``ro``, ``al`` come back lists of tensors (not dicts keyed '0', '1', ...), and
    the next step matches an uninterrupted run bit for bit."""
    inputs = torch.randn(4, 3, generator=torch.Generator().manual_seed(7))

    def program(seed):
        torch.manual_seed(seed)
        model = torch.nn.Linear(3, 2)
        return model, torch.optim.LBFGS(model.parameters(), history_size=3)

    def step(model, optimizer):
        def closure():
            optimizer.zero_grad()
            loss = model(inputs).pow(2).mean()
            loss.backward()
            return loss

        optimizer.step(closure)

    model, optimizer = program(0)
    step(model, optimizer)
    step(model, optimizer)
    _dcp_save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, tmp_path / "c")
    fresh, fresh_optimizer = program(3)
    ck.Checkpoint(model=fresh, optimizer=fresh_optimizer).restore(tmp_path / "c").assert_consumed()
    state = fresh_optimizer.state[fresh.weight]
    for name in ("old_dirs", "old_stps", "ro", "al"):
        saved = optimizer.state[model.weight][name]
        assert type(state[name]) is list and len(state[name]) == len(saved) == 3, name
        assert all(torch.equal(a, b) for a, b in zip(state[name], saved, strict=True)), name
    step(model, optimizer)
    step(fresh, fresh_optimizer)
    for saved, restored in zip(model.parameters(), fresh.parameters(), strict=True):
        assert saved.detach().numpy().tobytes() == restored.detach().numpy().tobytes()


@pytest.mark.parametrize("kind", ["multistep", "multistep_other_milestones", "onecycle"])
def test_a_scheduler_restores_as_torch_load_gives_it(tmp_path, kind):
    """DCP saves dict keys as text (MultiStepLR's ``Counter({4: 1})`` as ``milestones.4``): they
    come back typed as the program's scheduler keys them, a Counter of integers, also when the
    program was built with other milestones; OneCycleLR's list of phase dicts stays a list.
    The LR after the milestone is the uninterrupted run's."""

    def program(seed, milestones):
        torch.manual_seed(seed)
        model = torch.nn.Linear(3, 2)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        if kind == "onecycle":
            scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1.0, total_steps=9)
        else:
            scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones)
        return model, optimizer, scheduler

    def train(model, optimizer, scheduler, steps):
        for _ in range(steps):
            optimizer.zero_grad()
            model(torch.ones(1, 3)).sum().backward()
            optimizer.step()
            scheduler.step()

    saved = program(0, [4])
    train(*saved, 2)
    names = ("model", "optimizer", "scheduler")
    _dcp_save({n: obj.state_dict() for n, obj in zip(names, saved, strict=True)}, tmp_path / "c")
    fresh = program(1, [9] if kind == "multistep_other_milestones" else [4])
    status = ck.Checkpoint(**dict(zip(names, fresh, strict=True))).restore(tmp_path / "c")
    status.assert_consumed()
    assert fresh[2].state_dict() == saved[2].state_dict()
    if kind == "onecycle":
        assert type(fresh[2]._schedule_phases) is list
    else:
        assert type(fresh[2].milestones) is collections.Counter
        assert list(fresh[2].milestones.items()) == [(4, 1)]
    train(*saved, 3)  # past the milestone (epoch 4)
    train(*fresh, 3)
    assert fresh[1].param_groups[0]["lr"] == saved[1].param_groups[0]["lr"]
    if kind != "onecycle":
        assert saved[1].param_groups[0]["lr"] < 0.1


class _Tagged(torch.nn.Module):
    """A module with extra state: dicts keyed by text ("0") and by integers, a list of tensors."""

    def __init__(self, extra: dict) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(2, 2)
        self.extra = extra

    def get_extra_state(self) -> dict:
        return self.extra

    def set_extra_state(self, state: dict) -> None:
        self.extra = state


@pytest.mark.parametrize("fmt", ["dcp", "torch.save"])
def test_text_keys_stay_text_and_integer_keys_integers(tmp_path, fmt):
    """A dict's real string key "0" is never taken for an integer (no template says so: DCP
    records both as "0"); integer keys come back integers where the program's value is keyed
    by integers; a list of tensors stays a list -- as a torch.save file of the same dict."""
    extra = {"names": {"0": "zero", "1": "one"}, "ids": {3: "c", 5: "e"}}
    model = _Tagged({**extra, "w": [torch.ones(2), torch.zeros(1)]})
    if fmt == "dcp":
        _dcp_save({"model": model.state_dict()}, tmp_path / "c")
    else:
        torch.save({"model": model.state_dict()}, tmp_path / "c")
    fresh = _Tagged({"names": {}, "ids": {1: "a"}, "w": []})
    ck.Checkpoint(model=fresh).restore(tmp_path / "c").assert_consumed()
    assert {k: v for k, v in fresh.extra.items() if k != "w"} == extra
    assert [list(fresh.extra[k]) for k in ("names", "ids")] == [["0", "1"], [3, 5]]
    assert type(fresh.extra["w"]) is list
    assert [t.tolist() for t in fresh.extra["w"]] == [[1.0, 1.0], [0.0]]


def test_nested_containers_follow_planner_data_and_fall_back_without_it(tmp_path):
    """Lists from the integer positions DCP records, dicts (keys as text) from the rest; a
    list whose positions are not 0..n-1 and a checkpoint without paths record nothing."""
    _dcp_save({"h": {"xs": [torch.ones(1), torch.zeros(1)], "m": {"4": 1, "a": 2}}}, tmp_path / "c")
    containers = open_path(tmp_path / "c").nested_containers
    assert containers["h/xs"] == Container(kind="list", entries=((0, "0"), (1, "1")))
    assert containers["h/m"].entries == (("4", "4"), ("a", "a"))
    assert containers["h/m"].text_keys and containers["h"].text_keys

    def drop_first(metadata):
        del metadata.planner_data["h.xs.0"]

    _edit_metadata(tmp_path / "c", tmp_path / "gap", drop_first)
    assert "h/xs" not in open_path(tmp_path / "gap").nested_containers
    _edit_metadata(tmp_path / "c", tmp_path / "none", lambda m: setattr(m, "planner_data", None))
    reader = open_path(tmp_path / "none")
    assert reader.nested_containers == {} and reader.nested_names == {}
