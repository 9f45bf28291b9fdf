"""Training runs as a timeline: a manager directory, or a directory of torch/HF checkpoints."""

from __future__ import annotations

import contextlib
import math
import os
import shutil

import numpy as np
import pytest

import ckptlab as ck
from ckptlab.explorer import _timeline


@pytest.fixture
def run(tmp_path):
    """A CheckpointManager directory of 4 checkpoints; the encoder doubles each step."""
    model = ck.Module()
    model.encoder = ck.Module()
    model.encoder.w = ck.Variable(np.ones(4, "float32"))
    model.head = ck.Variable(np.ones(2, "float32"))
    manager = ck.CheckpointManager(ck.Checkpoint(model=model), tmp_path / "runs", max_to_keep=None)
    for step in range(4):
        model.encoder.w.assign(model.encoder.w.numpy() * 2)
        manager.save(checkpoint_number=step * 10)
    manager.close()
    _timeline._CACHE.clear()
    return tmp_path / "runs"


def test_a_manager_directory_opens_as_a_timeline(run):
    widget = ck.explore(run)
    assert widget.is_run
    data = widget.load_timeline()
    points = data["points"]
    assert [p["step"] for p in points] == [0, 10, 20, 30]
    assert points[0]["update_ratio"] is None
    expected = math.sqrt(16) / math.sqrt(16 + 2)  # ||w|| doubles: delta = w; head unchanged
    assert points[1]["update_ratio"] == pytest.approx(expected, rel=1e-5)
    encoder = next(m for m in data["modules"] if m["module"] == "model/encoder")
    assert encoder["update_ratio"][1:] == pytest.approx([1.0, 1.0, 1.0])
    assert encoder["weight_norm"] == pytest.approx([4.0, 8.0, 16.0, 32.0])
    assert data["modules"][0]["module"] == "model/encoder"  # most updated first
    assert widget.view.kind == "diff"  # first vs last compared
    widget.pick(2, 3)
    assert widget.timeline["a"] == 2 and widget.timeline["b"] == 3
    w = widget.view.find(("model", "encoder", "w"))
    assert widget.view.nodes[w].value.change[0] == pytest.approx(8.0)  # 8 -> 16


@pytest.mark.parametrize("where", ["s3_prefix", "memory_prefix"])
def test_a_manager_directory_on_an_object_store_opens_as_a_timeline(request, where):
    """ck.explore("s3://bucket/runs") of a manager's directory: the run's checkpoints are its
    URLs (they were the store's keys, "bucket/runs/ckpt-1", opened as local paths)."""
    runs = request.getfixturevalue(where) + "/runs"
    ckpt = ck.Checkpoint(w=ck.Variable(np.ones(3, "float32")))
    with ck.CheckpointManager(ckpt, runs, max_to_keep=3) as manager:
        for _ in range(3):
            ckpt.w.assign(ckpt.w.numpy() * 2)
            manager.save(options=ck.WriteOptions(progress=False))
    widget = ck.explore(runs)
    assert widget.is_run
    points = widget.load_timeline()["points"]
    assert [p["path"] for p in points] == [f"{runs}/ckpt-{n}" for n in (1, 2, 3)]
    assert [p["error"] for p in points] == [None, None, None]
    assert points[2]["update_ratio"] == pytest.approx(1.0)  # w doubled: delta = w
    widget.pick("ckpt-1", f"{runs}/ckpt-3")
    assert widget.view.nodes[widget.view.find(("w",))].value.change[0] == pytest.approx(6.0)


def test_pick_takes_indices_from_either_end_or_paths_and_refuses_anything_else(run, monkeypatch):
    """docs/explorer.md: an index (negative from the newest, as Python counts) or a path as
    the timeline shows it (or its last part); anything else is refused, changing nothing."""
    widget = ck.explore(run)
    paths = [p["path"] for p in widget.load_timeline()["points"]]

    def picked():
        source = widget._source
        return source.a_index, source.b_index, widget.timeline["a"], widget.timeline["b"]

    widget.pick(-3, -1)
    assert picked() == (1, 3, 1, 3)
    widget.pick(paths[2], "ckpt-10")  # a path as shown, and a name in the run
    assert picked() == (2, 1, 2, 1)
    monkeypatch.chdir(run.parent)
    widget.pick(run / "ckpt-0", "runs/ckpt-30/")  # os.PathLike, relative to the cwd
    assert picked() == (0, 3, 0, 3)
    view = widget.view
    refused = [
        (
            (0, 4),
            r"b=4 is not a checkpoint of this run of 4: .* 0 \(the oldest\) to 3, or from "
            r"-4 to -1",
        ),
        ((-5, 0), "a=-5 is not"),
        ((0, "ckpt-40"), "b='ckpt-40' is not"),
        ((0, str(run / "ckpt-0" / "zarr.json")), "b=.*zarr.json' is not"),
        ((1.0, 2), "a=1.0 is not"),
        ((True, 2), "a=True is not"),
        ((0, None), "b=None is not"),
    ]
    for (a, b), match in refused:
        with pytest.raises(ck.InvalidArgumentError, match=match) as caught:
            widget.pick(a, b)
        assert paths[0] in str(caught.value) and "timeline_table()" in str(caught.value)
        assert picked() == (0, 3, 0, 3) and widget.view is view
    trainer = ["/r/checkpoint-2/model.safetensors", "/r/checkpoint-4/model.safetensors"]
    with pytest.raises(ck.InvalidArgumentError, match=r"'model.safetensors' \(it names 2"):
        _timeline.run_index(trainer, "model.safetensors", "a")
    assert _timeline.run_index(trainer, "checkpoint-4/model.safetensors", "a") == 1


def test_statistics_are_cached_per_checkpoint_and_read_each_value_once(run, monkeypatch):
    from ckptlab.storage import StoredCheckpoint

    reads: list[str] = []
    original = StoredCheckpoint.read_many

    def counting(self, keys, outs=None):
        keys = list(keys)
        reads.extend(f"{self.display_path}:{k}" for k in keys)
        return original(self, keys, outs)

    monkeypatch.setattr(StoredCheckpoint, "read_many", counting)
    timeline = _timeline.Timeline(_timeline.find_run(run))
    progress: list[float] = []
    timeline.compute(lambda fraction, text: progress.append(fraction))
    assert len(reads) == len(set(reads)) == 4 * 3  # save_counter, encoder/w, head: once each
    assert progress[-1] == 1.0 and progress == sorted(progress)
    reads.clear()
    again = _timeline.Timeline(_timeline.find_run(run))
    assert again.complete
    again.compute()
    assert reads == []


@pytest.mark.parametrize("where", ["tmp_path", "s3_prefix", "memory_prefix"])
def test_checkpoints_written_again_at_their_paths_are_measured_again(request, where):
    """A new run in the same directory writes new checkpoints at the old paths, and a path is
    written again: the timeline shows what they hold now, not what the first run's held.  The
    cache was keyed by path and modification time, which object stores never gave (always 0.0)
    and a file system gives per tick (here the new files get the old times, as on a file
    system whose clock ticks coarsely).  An update is measured again when either of its two
    checkpoints changed (it was cached by the later one's path alone)."""
    runs = f"{request.getfixturevalue(where)}/runs"
    store, key = ck.storage.resolve(runs)
    documents = [f"{key}/ckpt-{n}/zarr.json" for n in (1, 2, 3)]

    def measured():
        points = ck.explore(runs).load_timeline()["points"]
        norms = [p["weight_norm"] / math.sqrt(3) for p in points]
        return pytest.approx(norms), [p["update_ratio"] for p in points]

    @contextlib.contextmanager
    def old_times():
        """On disk, the documents written in the block get the old ones' times."""
        if where != "tmp_path":
            yield
            return
        times = [os.stat(d).st_mtime_ns for d in documents]
        yield
        for document, time in zip(documents, times, strict=True):
            os.utime(document, ns=(time, time))

    def train(weights):
        ckpt = ck.Checkpoint(w=ck.Variable(np.ones(3, "float32")))
        with ck.CheckpointManager(ckpt, runs, max_to_keep=None) as manager:
            for w in weights:
                ckpt.w.assign(np.full(3, w, "float32"))
                manager.save(options=ck.WriteOptions(progress=False))

    train([1.0, 2.0, 4.0])
    assert measured() == ([1.0, 2.0, 4.0], [None, pytest.approx(1.0), pytest.approx(1.0)])
    with old_times():
        store.delete_tree(key)  # the run starts over
        train([1.0, 4.0, 5.0])
    assert measured() == ([1.0, 4.0, 5.0], [None, pytest.approx(3.0), pytest.approx(0.25)])
    with old_times():
        ck.Checkpoint(w=ck.Variable(np.full(3, 10.0, "float32"))).write(f"{runs}/ckpt-2")
    assert measured() == ([1.0, 10.0, 5.0], [None, pytest.approx(9.0), pytest.approx(0.5)])
    assert _timeline.Timeline(_timeline.find_run(runs)).complete  # and cached again


@pytest.mark.parametrize("cached", [False, True], ids=["uncached", "statistics-cached"])
def test_a_checkpoint_replaced_while_the_timeline_is_open_is_cached_under_its_new_bytes(
    run, cached
):
    """The timeline took each checkpoint's document checksum when it opened, and cached what
    it computed later under it: a checkpoint replaced in between was measured from its new
    bytes and cached under the old checksum (so the old checkpoint, back at its path, showed
    the replacement's statistics), or, its statistics cached already, those were cached again
    under the new one's checksum.  Statistics and updates are now cached under the checksum of
    the document bytes they were computed from."""
    if cached:  # every checkpoint's statistics known, no update
        _timeline.Timeline(_timeline.find_run(run)).compute()
        _timeline._UPDATES.clear()
    path = _timeline.find_run(run)[1].path
    original = run.parent / "original"
    shutil.copytree(path, original)
    timeline = _timeline.Timeline(_timeline.find_run(run))
    model = ck.Module()
    model.encoder = ck.Module()
    model.encoder.w = ck.Variable(np.full(4, 100.0, "float32"))
    model.head = ck.Variable(np.ones(2, "float32"))
    ck.Checkpoint(model=model).write(path, options=ck.WriteOptions(progress=False))
    timeline.compute()

    def points():
        return _timeline.Timeline(_timeline.find_run(run)).data(0, 3)["points"]

    assert points()[1]["weight_norm"] == pytest.approx(math.sqrt(4 * 100.0**2 + 2))
    shutil.rmtree(path)
    shutil.copytree(original, path)  # the first checkpoint is back
    assert points()[1]["weight_norm"] == pytest.approx(math.sqrt(4 * 4.0**2 + 2))
    assert points()[2]["update_ratio"] == pytest.approx(math.sqrt(4 * 4.0**2) / math.sqrt(66))


def test_the_timeline_as_a_table(run):
    widget = ck.explore(run)
    table = widget.timeline_table()
    assert list(table["step"]) == [0, 10, 20, 30]
    per_module = widget.timeline_table(modules=True)
    assert set(per_module["module"]) == {"model", "model/encoder"}  # save_counter is no weight


def test_a_directory_of_torch_checkpoints_is_a_run(tmp_path):
    torch = pytest.importorskip("torch")
    for step in (100, 200, 300):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        torch.save({"layer.weight": torch.full((2, 2), float(step))}, folder / "pytorch_model.bin")
    run = _timeline.find_run(tmp_path)
    assert [c.step for c in run] == [100, 200, 300]
    data = _timeline.Timeline(run).data(0, 2)
    ratios = [p["update_ratio"] for p in data["points"]]
    assert ratios == [None, pytest.approx(1.0), pytest.approx(0.5)]  # 100 -> 200 -> 300


def test_one_checkpoint_is_not_a_run(tmp_path):
    ck.Checkpoint(w=ck.Variable(1.0)).save(tmp_path / "ckpt")
    assert _timeline.find_run(tmp_path) is None
    assert not ck.explore(tmp_path).is_run


def _tiny_gpt2():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(
        n_layer=1, n_embd=32, n_head=2, vocab_size=100, n_positions=16, bos_token_id=0,
        eos_token_id=0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config)


def test_a_sharded_hugging_face_directory_is_one_checkpoint(tmp_path):
    """Its shards are numbered files: the directory opens as the model, as ckptlab ls does."""
    model = _tiny_gpt2()
    model.save_pretrained(tmp_path / "gpt2", max_shard_size="50KB")
    shards = sorted(p.name for p in (tmp_path / "gpt2").glob("model-*.safetensors"))
    assert len(shards) >= 2
    assert _timeline.find_run(tmp_path / "gpt2") is None
    widget = ck.explore(tmp_path / "gpt2")
    assert not widget.is_run
    assert widget.view.kind == "checkpoint"
    stored = {"/".join(v.value.path) for v in widget.view.values()}
    assert stored == {k.replace(".", "/") for k, _ in ck.list_variables(tmp_path / "gpt2")}


def _sharded_gpt2(directory):
    """A tiny GPT-2 saved as shards with their index; the shard files, in order."""
    _tiny_gpt2().save_pretrained(directory, max_shard_size="20KB")
    shards = sorted(directory.glob("model-*.safetensors"))
    assert len(shards) >= 3 and (directory / "model.safetensors.index.json").exists()
    return shards


def test_a_sharded_directory_missing_a_shard_raises_what_list_variables_raises(tmp_path):
    """An interrupted download is one broken checkpoint, not a run of its remaining shards."""
    shards = _sharded_gpt2(tmp_path / "gpt2")
    shards[0].unlink()
    with pytest.raises(ck.NotFoundError, match=shards[0].name) as listed:
        ck.list_variables(tmp_path / "gpt2")
    with pytest.raises(ck.NotFoundError) as explored:
        ck.explore(tmp_path / "gpt2")
    assert str(explored.value) == str(listed.value)


def test_a_trainer_checkpoint_missing_a_shard_is_marked_in_its_run(tmp_path):
    """The newest checkpoint-N still being written (a shard not there yet) is a point of the
    run that says why it cannot be read, not a step left out."""
    for step in (100, 200, 300):
        shards = _sharded_gpt2(tmp_path / f"checkpoint-{step}")
    shards[0].unlink()
    _timeline._CACHE.clear()
    widget = ck.explore(tmp_path)
    assert widget.is_run
    points = widget.load_timeline()["points"]
    assert [p["step"] for p in points] == [100, 200, 300]
    assert points[0]["error"] is None and points[1]["error"] is None
    assert f"names the shard {shards[0].name!r}, which is missing" in points[2]["error"]


def test_a_shard_linked_out_of_the_directory_is_refused_by_the_explorer(tmp_path):
    """docs/foreign-formats.md section 12.1: the explorer refuses the link as the readers do,
    instead of opening the file it points to as a step of a run."""
    from safetensors.numpy import save_file

    shards = _sharded_gpt2(tmp_path / "gpt2")
    outside = tmp_path / "private" / "secret.safetensors"
    outside.parent.mkdir()
    save_file({"secret": np.arange(4, dtype="float32")}, str(outside))
    shards[-1].unlink()
    shards[-1].symlink_to(outside)
    for call in (ck.list_variables, ck.explore):
        with pytest.raises(ck.UnsupportedFormatError, match="symbolic link") as error:
            call(tmp_path / "gpt2")
        assert str(shards[-1]) in str(error.value) and str(outside) in str(error.value)


def test_a_sharded_safetensors_export_is_one_checkpoint(tmp_path):
    """ck.convert and ckptlab convert write shards and an index: one checkpoint, not a run."""
    from ckptlab.cli import main

    model = ck.Module()
    model.layers = [ck.layers.Dense(64) for _ in range(3)]
    x = np.ones((1, 64), "float32")
    for layer in model.layers:
        x = layer(x)
    path = ck.Checkpoint(model=model).save(tmp_path / "ckpt")
    ck.convert(path, tmp_path / "api", format="safetensors", max_shard_size="20KB")
    assert main(["convert", path, str(tmp_path / "cli"), "--to", "safetensors",
                 "--max-shard-size", "20KB"]) == 0  # fmt: skip
    for name in ("api", "cli"):
        assert len(list((tmp_path / name).glob("*.safetensors"))) >= 2
        widget = ck.explore(tmp_path / name)
        assert not widget.is_run
        assert widget.summary.startswith(f"{len(ck.list_variables(path))} values")


def test_a_directory_of_torch_files_is_a_run(tmp_path):
    """Numbered weights files with no index joining them are separate checkpoints."""
    torch = pytest.importorskip("torch")
    for step in (10, 20, 30):
        torch.save({"layer.weight": torch.full((2, 2), float(step))}, tmp_path / f"step_{step}.pt")
    with pytest.raises(ck.NotACheckpointError, match="several torch weights files"):
        ck.list_variables(tmp_path)  # no one checkpoint: pass one of them
    widget = ck.explore(tmp_path)
    assert widget.is_run
    assert list(widget.timeline_table()["step"]) == [10, 20, 30]


def test_trainer_checkpoints_beside_the_final_model_are_a_run(tmp_path):
    """An HF trainer's output: the final model.safetensors, and checkpoint-<step> folders."""
    pytest.importorskip("safetensors")
    from safetensors.numpy import save_file

    save_file({"w": np.full(2, 3.0, "float32")}, str(tmp_path / "model.safetensors"))
    for step in (100, 200):
        (tmp_path / f"checkpoint-{step}").mkdir()
        weights = {"w": np.full(2, step, "float32")}
        save_file(weights, str(tmp_path / f"checkpoint-{step}" / "model.safetensors"))
    assert [c.step for c in _timeline.find_run(tmp_path)] == [100, 200]


def test_trainer_checkpoints_of_a_sharded_model_are_a_run(tmp_path):
    """``checkpoint-<step>`` folders holding shards and their index (no model.safetensors)."""
    model = _tiny_gpt2()
    for step in (100, 200):
        model.save_pretrained(tmp_path / f"checkpoint-{step}", max_shard_size="50KB")
    assert len(list((tmp_path / "checkpoint-100").glob("model-*.safetensors"))) >= 2
    run = _timeline.find_run(tmp_path)
    assert [(c.step, c.path) for c in run] == [
        (step, str(tmp_path / f"checkpoint-{step}")) for step in (100, 200)
    ]


def test_optimizer_state_is_no_weight(tmp_path):
    """A manager run with an optimizer: its moments are neither read nor counted."""
    model = ck.Module()
    model.dense = ck.layers.Dense(2)
    model.dense(np.ones((1, 3), "float32"))
    optimizer = ck.optimizers.Adam(0.1)
    manager = ck.CheckpointManager(
        ck.Checkpoint(model=model, optimizer=optimizer), tmp_path / "runs", max_to_keep=None
    )
    for _ in range(3):
        grads = [(np.ones(v.shape, "float32"), v) for v in (model.dense.kernel, model.dense.bias)]
        optimizer.apply_gradients(grads)
        manager.save()
    manager.close()
    _timeline._CACHE.clear()
    data = ck.explore(tmp_path / "runs").load_timeline()
    assert {m["module"] for m in data["modules"]} == {"model/dense"}
    kernel, bias = model.dense.kernel.numpy(), model.dense.bias.numpy()
    norm = math.sqrt(float((kernel**2).sum() + (bias**2).sum()))
    assert data["points"][-1]["weight_norm"] == pytest.approx(norm, rel=1e-5)


@pytest.mark.parametrize(
    ("name", "step"),
    [("epoch_3.weights.h5", 3), ("step_20.pt", 20), ("checkpoint-500", 500), ("run.h5", None)],
)
def test_a_step_number_is_not_read_from_a_file_extension(name, step):
    assert _timeline._step(name) == step


def _trainer_run(directory, steps):
    """``checkpoint-<step>/model.safetensors`` folders; ``w`` is the step."""
    from safetensors.numpy import save_file

    for step in steps:
        (directory / f"checkpoint-{step}").mkdir(parents=True)
        weights = {"w": np.full(4, float(step), "float32")}
        save_file(weights, str(directory / f"checkpoint-{step}" / "model.safetensors"))
    _timeline._CACHE.clear()
    return directory


def test_a_checkpoint_still_being_written_is_marked_and_the_run_still_shows(tmp_path):
    """The newest checkpoint-N's weights file is half written: the run shows what it can."""
    pytest.importorskip("safetensors")
    run = _trainer_run(tmp_path, (2, 4, 6, 8))
    newest = run / "checkpoint-8" / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[:-8])
    widget = ck.explore(run)
    assert widget.is_run
    assert (widget._source.a_index, widget._source.b_index) == (0, 2)  # the newest readable
    points = widget.load_timeline()["points"]
    assert [p["error"] is None for p in points] == [True, True, True, False]
    assert f"{newest} is not a readable safetensors file" in points[3]["error"]
    assert points[3]["weight_norm"] is None and points[3]["update_ratio"] is None
    assert points[3]["nbytes"] is None and points[3]["values"] is None
    assert points[2]["update_ratio"] == pytest.approx(2 / 4)
    table = widget.timeline_table()
    assert list(table["step"]) == [2, 4, 6, 8]
    assert table["error"].isna().tolist() == [True, True, True, False]
    (series,) = widget.timeline_table(modules=True).groupby("module")
    assert series[1]["weight_norm"].isna().tolist() == [False, False, False, True]
    with pytest.raises(ck.CorruptCheckpointError, match="checkpoint-8"):
        widget.pick(0, 3)
    assert (widget._source.a_index, widget._source.b_index) == (0, 2)
    assert (widget.timeline["a"], widget.timeline["b"]) == (0, 2)


def _damage_values(checkpoint):
    """Flip a byte of the float32 values: the checkpoint opens, its values fail their checksum."""
    (chunk,) = (checkpoint / "data" / "float32").glob("[0-9]*")
    data = bytearray(chunk.read_bytes())
    data[0] ^= 0xFF
    chunk.write_bytes(bytes(data))


def test_a_damaged_checkpoint_in_the_middle_is_marked_and_the_others_work(run):
    """Damage found only when values are read (a checksum): that point says why, the next
    has no update ratio (its predecessor is unreadable), the others are measured."""
    _damage_values(run / "ckpt-10")
    widget = ck.explore(run)
    data = widget.load_timeline()
    points = data["points"]
    assert [p["step"] for p in points] == [0, 10, 20, 30]
    assert points[1]["error"] is not None and "checksum mismatch" in points[1]["error"]
    assert points[1]["weight_norm"] is None
    assert points[2]["update_ratio"] is None  # measured against an unreadable checkpoint
    assert points[3]["update_ratio"] is not None and points[3]["error"] is None
    encoder = next(m for m in data["modules"] if m["module"] == "model/encoder")
    assert encoder["weight_norm"] == pytest.approx([4.0, None, 16.0, 32.0])
    assert encoder["update_ratio"] == [None, None, None, pytest.approx(1.0)]
    widget.pick(2, 3)  # the others still compare
    assert widget.view.kind == "diff"


def test_a_newest_checkpoint_whose_values_are_damaged_is_not_compared(run):
    """It opens, but comparing it fails: the explorer compares the newest readable one."""
    _damage_values(run / "ckpt-30")
    widget = ck.explore(run)
    assert (widget._source.a_index, widget._source.b_index) == (0, 2)
    points = widget.load_timeline()["points"]
    assert "checksum mismatch" in points[3]["error"]
    assert [p["error"] is None for p in points[:3]] == [True, True, True]
