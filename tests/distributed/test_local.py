"""Multi-worker saves on the local process engine: end to end, resharding, faults, traffic."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import pickle
import re
import shutil
import socket
import subprocess
import sys
import time

import ml_dtypes
import numpy as np
import psutil
import pytest
import zarr

import ckptlab as ck
from ckptlab import distributed as ckd
from ckptlab.distributed._coordinator import begin, finish
from ckptlab.distributed._worker import write_part
from ckptlab.storage import open_checkpoint, resolve

from .conftest import pickle_by_value

pickle_by_value(__name__)

ROWS, COLS = 1200, 1024  # a 4.7 MiB float32 value sharded over the workers
BOUNDS = ckd.row_partition(ROWS, 2, multiple=200)


def full_embedding():
    return np.arange(ROWS * COLS, dtype=np.float32).reshape(ROWS, COLS)


def build(rank, fail=None):
    """Every worker builds the same graph; the embedding is sharded, the rest is whole."""
    if fail == ("raise", rank):
        raise ValueError(f"boom on rank {rank}")
    if fail == ("die", rank):
        os._exit(7)
    if fail == ("hang", rank):
        time.sleep(120)
    rng = np.random.default_rng(0)
    model = ck.Module()
    model.dense = [ck.Variable(rng.standard_normal((512, 512)).astype("float32")) for _ in range(4)]
    model.bias = ck.Variable(np.arange(7, dtype="float64"))
    model.step = ck.Variable(np.int64(42))
    start, stop = BOUNDS[rank], BOUNDS[rank + 1]
    model.embedding = ckd.ShardedVariable(
        full_embedding()[start:stop], shape=(ROWS, COLS), partition=BOUNDS, rank=rank
    )
    return ck.Checkpoint(model=model)


def failing(kind, rank):
    return lambda r: build(r, fail=(kind, rank))


def stored_values(path):
    return open_checkpoint(*resolve(path)).document.values


def single_process_program():
    model = ck.Module()
    model.dense = [ck.Variable(np.zeros((512, 512), "float32")) for _ in range(4)]
    model.bias = ck.Variable(np.zeros(7))
    model.step = ck.Variable(np.int64(0))
    model.embedding = ck.Variable(np.zeros((ROWS, COLS), "float32"))
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    engine = ckd.LocalEngine(2)
    path = ckd.save(tmp_path_factory.mktemp("run") / "ckpt", build, engine=engine)
    return path, engine


def test_restores_whole_into_a_single_process(saved):
    path, _ = saved
    model = single_process_program()
    ck.Checkpoint(model=model).restore(path).assert_consumed()
    expected = build(0).model
    np.testing.assert_array_equal(model.embedding.numpy(), full_embedding())
    for got, want in zip(model.dense, expected.dense, strict=True):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    assert int(model.step.numpy()) == 42


def test_is_an_ordinary_checkpoint(saved):
    path, _ = saved
    assert ck.latest_checkpoint(os.path.dirname(path)) == path
    shapes = dict(ck.list_variables(path))
    assert shapes["model/embedding/.ATTRIBUTES/VARIABLE_VALUE"] == [ROWS, COLS]
    assert shapes["save_counter/.ATTRIBUTES/VARIABLE_VALUE"] == []
    reader = ck.load_checkpoint(path)
    assert int(reader.get_tensor("save_counter/.ATTRIBUTES/VARIABLE_VALUE")) == 1
    group = zarr.open_group(path, mode="r")
    stored = stored_values(path)["model/embedding/.ATTRIBUTES/VARIABLE_VALUE"]
    np.testing.assert_array_equal(group[stored.array][...], full_embedding())
    assert ck.storage.verify_checkpoint(path) == []  # every chunk's checksum
    assert ck.explore(path).summary.startswith(f"{len(shapes)} values")


def test_each_worker_wrote_its_share(saved):
    _, engine = saved
    stats = engine.last_stats
    assert stats.world_size == 2 and len(set(stats.workers)) == 2
    low, high = sorted(stats.bytes_per_worker)
    assert high < 1.3 * low, stats.bytes_per_worker


def test_no_array_bytes_cross_the_engine(saved):
    path, engine = saved
    stored = sum(v.nbytes for v in stored_values(path).values())
    assert stored > 8 * 2**20
    moved = engine.sent_bytes + engine.received_bytes
    assert moved < 64 * 1024, (engine.sent_bytes, engine.received_bytes)
    assert engine.last_stats.sent_bytes + engine.last_stats.received_bytes == moved


@pytest.mark.parametrize("workers", [1, 3])
def test_reshards_into_another_number_of_workers(saved, workers):
    path, _ = saved
    bounds = ckd.row_partition(ROWS, workers)
    parts = [
        ckd.read_region(path, "model/embedding", (bounds[r], bounds[r + 1])) for r in range(workers)
    ]
    np.testing.assert_array_equal(np.concatenate(parts), full_embedding())


def test_sharded_variables_load_from_a_checkpoint_saved_by_other_workers(saved):
    path, _ = saved
    bounds = ckd.row_partition(ROWS, 3)
    parts = [
        ckd.ShardedVariable.from_checkpoint(path, "model/embedding", partition=bounds, rank=r)
        for r in range(3)
    ]
    assert {p.shape for p in parts} == {(ROWS, COLS)}
    np.testing.assert_array_equal(np.concatenate([p.local for p in parts]), full_embedding())


@pytest.mark.parametrize(
    ("partition", "rank", "match"),
    [
        ((0, 3, ROWS), 2, "regions for ranks 0 to 1; got rank 2"),
        ((0, 3, ROWS), -1, "got rank -1"),
        ((0, 3, ROWS + 2), 0, f"row boundaries from 0 to {ROWS}"),
        ((0, 5, 3, ROWS), 0, "must not decrease"),
    ],
)
def test_a_region_outside_the_partition_is_refused_by_name(saved, partition, rank, match):
    path, _ = saved
    with pytest.raises(ck.InvalidArgumentError, match=match) as refused:
        ckd.ShardedVariable.from_checkpoint(path, "model/embedding", partition=partition, rank=rank)
    assert "model/embedding" in str(refused.value)


def test_sharded_variable_restores_its_rows(saved):
    path, _ = saved
    bounds = ckd.row_partition(ROWS, 3)
    part = ckd.ShardedVariable(
        np.zeros((bounds[2] - bounds[1], COLS), "float32"),
        shape=(ROWS, COLS),
        partition=bounds,
        rank=1,
    )
    holder = ck.Module()
    holder.embedding = part
    ck.Checkpoint(model=holder).restore(path).expect_partial()
    np.testing.assert_array_equal(part.local, full_embedding()[bounds[1] : bounds[2]])


def test_single_process_save_refuses_a_sharded_variable(tmp_path):
    with pytest.raises(ck.NotSaveableError, match="ckptlab.distributed.save"):
        build(0).write(tmp_path / "c")


@pytest.mark.parametrize("entry", [ckd.write, ckd.save])
def test_options_of_the_wrong_type_are_refused_before_any_worker_starts(tmp_path, entry):
    with pytest.raises(ck.InvalidArgumentError, match="ck.WriteOptions or None for `options`"):
        entry(tmp_path / "c", build, engine=ckd.LocalEngine(2), options={"durable": False})
    assert os.listdir(tmp_path) == []


def test_state_objects_are_refused_by_shipping_engines(tmp_path):
    with pytest.raises(TypeError, match="state\\(rank\\)"):
        ckd.write(tmp_path / "c", build(0), engine=ckd.LocalEngine(2))


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("raise", "raised: ValueError: boom on rank 1"),
        ("die", "died: the process exited with code 7"),
    ],
)
def test_a_failed_worker_commits_nothing(saved, tmp_path, kind, expected):
    path, _ = saved
    directory = os.path.dirname(path)
    with pytest.raises(ckd.WorkerError, match="worker 1") as caught:
        ckd.save(os.path.join(directory, "ckpt"), failing(kind, 1), engine=ckd.LocalEngine(2))
    assert expected in str(caught.value)
    assert [f.rank for f in caught.value.failures] == [1]
    assert ck.latest_checkpoint(directory) == path
    assert sorted(os.listdir(directory)) == ["checkpoint", "ckpt-1"]


def small(rank):
    return ck.Checkpoint(v=ck.Variable(np.arange(3.0)), w=ck.Variable(np.ones(2)))


def test_a_save_into_a_directory_another_process_manages_is_refused(
    tmp_path, manager_in_another_process
):
    """ckd.save used to replace the state file of another process's manager (which then
    overwrote the multi-worker checkpoint at its next save); Checkpoint.save is refused
    (docs/manager.md), and so is ckd.save now, on the coordinator before any worker writes."""
    with manager_in_another_process(tmp_path) as child:
        before = (tmp_path / "checkpoint").read_bytes()
        pattern = (
            rf"{tmp_path} is locked by pid {child.pid} on host {socket.gethostname()} .*"
            r"ckptlab.distributed.save would replace the state file .* Save into another"
        )
        with pytest.raises(ck.LockedError, match=pattern):
            ckd.save(tmp_path / "ckpt", small, engine=ckd.LocalEngine(2), timeout=60)
        assert (tmp_path / "checkpoint").read_bytes() == before
        assert sorted(os.listdir(tmp_path)) == [".ckptlab.lock", "checkpoint", "ckpt-1"]
    path = ckd.save(tmp_path / "ckpt", small, engine=ckd.LocalEngine(2), timeout=60)
    assert path == str(tmp_path / "ckpt-2")  # the holder is gone (kill -9): it goes ahead
    assert ck.latest_checkpoint(tmp_path) == path


def test_a_save_that_cannot_be_recorded_deletes_its_checkpoint(tmp_path, no_space):
    """As Checkpoint.save (docs/manager.md): a full disk at the state file used to leave the
    committed checkpoint on disk, listed nowhere."""
    no_space(lambda name: name.startswith(".checkpoint.tmp-"))
    with pytest.raises(
        ck.StorageError,
        match=rf"{tmp_path / 'ckpt-1'} was written, but recording it in "
        rf"{tmp_path / 'checkpoint'} failed, so it was deleted",
    ):
        ckd.save(tmp_path / "ckpt", small, engine=ckd.LocalEngine(2), timeout=60)
    assert os.listdir(tmp_path) == []


def test_a_run_directory_removed_while_a_save_writes_publishes_nothing(tmp_path, monkeypatch):
    """``rm -rf`` of the run directory (another job's clean-up) after the workers wrote their
    parts: the coordinator's writes re-created the hidden staging directory (local writes
    create their parents) holding only the documents, published that as ckpt-1 and named it
    latest, and restoring it failed.  The save now raises NotFoundError naming ckpt-1 and
    publishes nothing, as a single-process save does (FORMAT.md section 6)."""
    from ckptlab.storage import LocalStore

    run = tmp_path / "runs"
    write, removed = LocalStore.write, []

    def removed_first(store, key, parts, *, durable):  # the coordinator's first write
        if ".tmp-" in key and not removed:
            removed.append(key)
            shutil.rmtree(run)
        write(store, key, parts, durable=durable)

    monkeypatch.setattr(LocalStore, "write", removed_first)  # in this process only
    with pytest.raises(ck.NotFoundError) as caught:
        ckd.save(run / "ckpt", small, engine=ckd.LocalEngine(2), timeout=60)
    message = str(caught.value)
    assert removed and message.startswith(f"Could not write {run / 'ckpt-1'}: "), message
    assert "No such file or directory. Something removed the directory" in message
    assert "nothing was published" in message and ".tmp-" not in message
    assert ck.latest_checkpoint(run) is None and not (run / "ckpt-1").exists()
    assert not run.exists() or os.listdir(run) == []


def test_a_silent_worker_times_out(tmp_path):
    """The hung worker is reported at the timeout and killed, not waited for."""
    with pytest.raises(
        ckd.WorkerError, match=r"worker 1 .* timeout: did not report within 3 s"
    ) as caught:
        ckd.write(tmp_path / "c", failing("hang", 1), engine=ckd.LocalEngine(2), timeout=3)
    failures = {f.rank: f for f in caught.value.failures}  # a slow start may time out rank 0 too
    assert failures[1].reason == "timeout"
    assert "(killed)" in failures[1].error
    for failure in failures.values():
        assert not psutil.pid_exists(int(failure.worker.removeprefix("local pid ")))
    assert os.listdir(tmp_path) == []


def test_rerunning_a_part_is_idempotent(tmp_path):
    job = begin(str(tmp_path / "c"), 2, assign=None, counter=None, options=ck.WriteOptions())
    first = write_part(job, build, 0)
    again = write_part(job, build, 0)
    assert pickle.dumps(first.chunks) == pickle.dumps(again.chunks)
    finish(job, [again, write_part(job, build, 1)], {})
    restored = ck.load_checkpoint(tmp_path / "c").get_tensor(
        "model/embedding/.ATTRIBUTES/VARIABLE_VALUE"
    )
    np.testing.assert_array_equal(restored, full_embedding())


def test_explicit_assignment_is_followed(tmp_path):
    assign = {f"model/dense/{i}": 1 for i in range(4)}
    engine = ckd.LocalEngine(2)
    ckd.write(tmp_path / "c", build, engine=engine, assign=assign)
    plan = ckd.plan(build(0), 2, assign=assign)
    assert engine.last_stats.bytes_per_worker == plan.bytes_per_worker()
    assert plan.bytes_per_worker()[1] > 4 * 512 * 512 * 4


def test_saves_to_an_object_store(s3_url):
    url = f"{s3_url}/local/ckpt"
    path = ckd.save(url, build, engine=ckd.LocalEngine(2))
    assert ck.latest_checkpoint(f"{s3_url}/local") == path
    model = single_process_program()
    ck.Checkpoint(model=model).restore(path).assert_consumed()
    np.testing.assert_array_equal(model.embedding.numpy(), full_embedding())
    np.testing.assert_array_equal(
        ckd.read_region(path, "model/embedding", (100, 700)), full_embedding()[100:700]
    )


def test_an_aborted_save_on_an_object_store_keeps_its_number(s3_url):
    """Parts go in place on object stores, and a timed-out worker may still be writing (a Dask
    task cannot be stopped): its late chunks must never land in the next save."""
    first = ckd.save(f"{s3_url}/aborted/ckpt", build, engine=ckd.LocalEngine(2))
    with pytest.raises(ckd.WorkerError):
        ckd.save(f"{s3_url}/aborted/ckpt", failing("raise", 1), engine=ckd.LocalEngine(2))
    store, aborted = resolve(f"{s3_url}/aborted/ckpt-2")
    assert store.list_dir(aborted) == ["aborted"]
    assert ck.latest_checkpoint(f"{s3_url}/aborted") == first
    store.write(f"{aborted}/values/0/c/0/0", [b"a straggler's late chunk"], durable=False)
    third = ckd.save(f"{s3_url}/aborted/ckpt", build, engine=ckd.LocalEngine(2))
    assert third == f"{s3_url}/aborted/ckpt-3"
    model = single_process_program()
    ck.Checkpoint(model=model).restore(third).assert_consumed()
    np.testing.assert_array_equal(model.embedding.numpy(), full_embedding())
    ckd.write(f"{s3_url}/aborted/ckpt-2", build, engine=ckd.LocalEngine(2))  # explicit reuse
    assert "aborted" not in store.list_dir(aborted)


def test_an_unpicklable_state_function_leaves_nothing_behind(tmp_path):
    import threading

    lock = threading.Lock()
    with pytest.raises(TypeError, match="pickle"):
        ckd.write(tmp_path / "c", lambda rank: (lock, build(rank))[1], engine=ckd.LocalEngine(2))
    assert os.listdir(tmp_path) == []


def test_one_state_function_per_worker(tmp_path):
    path = ckd.write(tmp_path / "c", [build, build], engine=ckd.LocalEngine(2))
    np.testing.assert_array_equal(
        ckd.read_region(path, "model/embedding", (0, ROWS)), full_embedding()
    )
    with pytest.raises(ValueError, match="Got 3 states for 2 workers"):
        ckd.write(tmp_path / "d", [build] * 3, engine=ckd.LocalEngine(2))


def model_parallel(rank):
    """Worker 0 holds ``a``, worker 1 holds ``b``; each has a placeholder for the other."""
    model = ck.Module()
    a, b = np.full((300, 1024), 1.0, "float32"), np.full((200, 1024), 2.0, "float32")
    model.a = ck.Variable(a) if rank == 0 else ckd.Placeholder(a.shape, a.dtype)
    model.b = ck.Variable(b) if rank == 1 else ckd.Placeholder(b.shape, b.dtype)
    return ck.Checkpoint(model=model)


def test_model_parallel_with_placeholders(tmp_path):
    path = ckd.write(tmp_path / "c", model_parallel, assign={"model/a": 0, "model/b": 1})
    reader = ck.load_checkpoint(path)
    assert float(reader.get_tensor("model/a/.ATTRIBUTES/VARIABLE_VALUE")[0, 0]) == 1.0
    assert float(reader.get_tensor("model/b/.ATTRIBUTES/VARIABLE_VALUE")[0, 0]) == 2.0
    with pytest.raises(ckd.WorkerError, match="holds only a placeholder of it"):
        ckd.write(tmp_path / "d", model_parallel, assign={"model/a": 1, "model/b": 1})
    with pytest.raises(ck.NotSaveableError, match="Placeholder"):
        model_parallel(0).write(tmp_path / "e")


def test_unsupported_dtypes_are_refused_at_construction():
    with pytest.raises(ck.UnsupportedFormatError, match="ShardedVariable"):
        ckd.ShardedVariable(np.array(["a", "b"]), shape=(2,), partition=(0, 2), rank=0)
    with pytest.raises(ck.UnsupportedFormatError, match="Placeholder"):
        ckd.Placeholder((2,), object)


@pytest.mark.parametrize("rows", [(2.5, 4), (0, 99), (3, 1), ("0", "2"), (1,)])
def test_read_region_refuses_rows_that_are_no_range_of_the_value(tmp_path, rows):
    """Rows are a (start, stop) pair of integers inside the value (2.5 was truncated to 2)."""
    path = ck.Checkpoint(w=ck.Variable(np.arange(12).reshape(6, 2))).write(tmp_path / "c")
    with pytest.raises(ck.InvalidArgumentError, match="rows|Rows"):
        ckd.read_region(path, "w", rows)


PADDED = ckd.row_partition(10, 2, multiple=4)  # (0, 8, 10): 8-row chunks, the last one padded
EVEN = ckd.row_partition(6, 2)  # (0, 3, 6): 3-row chunks, none padded
FORMAT = pathlib.Path(__file__).resolve().parents[2] / "FORMAT.md"
RECIPE_RUNNER = """
import hashlib, json, sys
sys.modules["ckptlab"] = None  # as if ckptlab were not installed: importing it fails
recipe, path, keys = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
found = {}
for key in keys:
    scope = {"path": path, "key": key}
    try:
        exec(recipe, scope)
    except AssertionError as error:
        found[key] = f"damaged: {error}"
        continue
    value = scope["value"]
    found[key] = [value.dtype.name, hashlib.sha256(value.tobytes()).hexdigest()]
print(json.dumps(found))
"""


def bfloat16_bits():
    """Bit patterns of bfloat16 values a cast would change: NaN payloads, -0.0, inf, subnormals."""
    return np.array([0x7FC1, 0xFF81, 0x8000, 0x7F80, 0x0001, 0x3F80] * 2, "uint16").reshape(6, 2)


def recipe_program(rank):
    """Own arrays (one with a padded edge chunk) next to packed values."""
    model = ck.Module()
    full = np.arange(30, dtype="float32").reshape(10, 3) + 0.5
    rows = slice(PADDED[rank], PADDED[rank + 1])
    model.padded = ckd.ShardedVariable(full[rows], shape=(10, 3), partition=PADDED, rank=rank)
    ids = np.arange(12, dtype="int64").reshape(6, 2) - 5
    rows = slice(EVEN[rank], EVEN[rank + 1])
    model.ids = ckd.ShardedVariable(ids[rows], shape=(6, 2), partition=EVEN, rank=rank)
    half = bfloat16_bits().view(ml_dtypes.bfloat16)
    model.half = ckd.ShardedVariable(half[rows], shape=(6, 2), partition=EVEN, rank=rank)
    model.dense = ck.Variable(np.eye(3))
    model.step = ck.Variable(np.int64(7))
    return ck.Checkpoint(model=model)


def run_recipe(path):
    """FORMAT.md section 10's recipe, as written, on every value of ``path``, without ckptlab."""
    section = FORMAT.read_text().split("## 10. ")[1].split("\n## ")[0]
    (recipe,) = re.findall(r"```python\n(.*?)```", section, re.S)
    setting = 'path, key = "run/ckpt-3", "model/dense/kernel/.ATTRIBUTES/VARIABLE_VALUE"\n'
    assert recipe.count(setting) == 1
    keys = [key for key, _ in ck.list_variables(path)]
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            RECIPE_RUNNER,
            recipe.replace(setting, ""),
            str(path),
            json.dumps(keys),
        ],
        capture_output=True,
        text=True,
        cwd=path.parent,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def read_with_ckptlab(path):
    reader = ck.load_checkpoint(path)
    found = {}
    for key, _ in ck.list_variables(path):
        value = np.asarray(reader.get_tensor(key))
        found[key] = [value.dtype.name, hashlib.sha256(value.tobytes()).hexdigest()]
    return found


def test_format_section_10_recipe_reads_and_checks_every_value(tmp_path):
    """FORMAT.md 2.1: an own array has one checksum per chunk (padding included), a packed
    value one per crc_block bytes; the recipe checks both as the format says."""
    workers = pathlib.Path(ckd.write(tmp_path / "w", recipe_program, engine=ckd.LocalEngine(2)))
    stored = stored_values(workers)
    own = {k for k, v in stored.items() if v.chunks is not None}
    assert own == {f"model/{n}/.ATTRIBUTES/VARIABLE_VALUE" for n in ("padded", "ids", "half")}
    assert stored["model/padded/.ATTRIBUTES/VARIABLE_VALUE"].chunks == (8, 3)
    assert run_recipe(workers) == read_with_ckptlab(workers)

    model = ck.Module()
    model.w = ck.Variable(np.linspace(0, 1, 12, dtype="float32").reshape(3, 4))
    model.half = ck.Variable(np.array([1, -2.5, np.inf], ml_dtypes.bfloat16))
    model.flags = ck.Variable(np.array([True, False]))
    model.empty = ck.Variable(np.zeros((0, 4), "float32"))
    packed = pathlib.Path(ck.Checkpoint(model=model).write(tmp_path / "p"))
    assert not {k for k, v in stored_values(packed).items() if v.chunks is not None}
    expected = read_with_ckptlab(packed)
    assert run_recipe(packed) == expected

    w = stored_values(packed)["model/w/.ATTRIBUTES/VARIABLE_VALUE"]
    shard = packed / w.array / "0"
    data = bytearray(shard.read_bytes())
    data[w.offset * 4] ^= 1  # the first byte of w: zarr reads it, the checksum tells
    shard.write_bytes(bytes(data))
    found = run_recipe(packed)
    assert found.pop("model/w/.ATTRIBUTES/VARIABLE_VALUE").startswith("damaged")
    assert found == {k: v for k, v in expected.items() if k != w.key}


LIST_AND_READ = """
import json, sys
sys.modules["ckptlab"] = None  # as if ckptlab were not installed: importing it fails
import zarr
group = zarr.open_group(sys.argv[1], mode="r")
members = {
    name: [str(node.dtype), dict(node.attrs)]
    for name, node in group.members(max_depth=None)
    if isinstance(node, zarr.Array)
}
own = group[sys.argv[2]]
print(json.dumps({"members": members, "bits": own[...].view("uint16").tolist()}))
"""


def test_plain_zarr_lists_and_reads_a_bfloat16_sharded_variable(tmp_path):
    """FORMAT.md 1 and 5: a multi-worker checkpoint holding a bfloat16 own array lists and reads
    with zarr alone (the array is its uint16 bit patterns, labelled), and restores bit-exactly."""
    path = pathlib.Path(ckd.write(tmp_path / "w", recipe_program, engine=ckd.LocalEngine(2)))
    half = stored_values(path)["model/half/.ATTRIBUTES/VARIABLE_VALUE"]
    assert half.dtype == "bfloat16" and half.chunks == (3, 2)
    done = subprocess.run(
        [sys.executable, "-c", LIST_AND_READ, str(path), half.array],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout)
    assert found["members"][half.array] == [
        "uint16",
        {"ckptlab_key": half.key, "ckptlab_dtype": "bfloat16"},
    ]
    assert found["bits"] == bfloat16_bits().tolist()
    assert ck.storage.verify_checkpoint(path) == []

    model = ck.Module()
    model.half = ck.Variable(np.zeros((6, 2), ml_dtypes.bfloat16))
    ck.Checkpoint(model=model).restore(path).expect_partial()
    restored = model.half.numpy()
    assert restored.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(restored.view("uint16"), bfloat16_bits())

    metadata = path / half.array / "zarr.json"  # unlabelled, plain zarr would read uint16
    metadata.write_text(metadata.read_text().replace('"ckptlab_dtype"', '"other"'))
    assert ck.storage.verify_checkpoint(path) == [
        f"{half.array}/zarr.json: attributes.ckptlab_dtype is None, the document says 'bfloat16'"
    ]
