"""Checkpoint construction, save/write, save_counter, state file, entry points.

Behaviour numbers (S1-S35) refer to docs/semantics.md, sections A-E.
"""

import collections
import errno
import os
import pathlib
import pickle
import shutil
import signal

import numpy as np
import pytest

import ckptlab as ck

KEY = "/.ATTRIBUTES/VARIABLE_VALUE"


# --- A. constructor ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [1, "s", None, np.zeros(2), object()])
def test_non_trackable_kwarg_raises_naming_it(bad):
    """S1: non-trackable kwargs raise ValueError naming the kwarg and the type."""
    with pytest.raises(ValueError, match="was expecting x to be a trackable object"):
        ck.Checkpoint(x=bad)


def test_non_trackable_root_raises():
    """S2: a non-trackable positional root raises, naming `root`."""
    with pytest.raises(ValueError, match="was expecting root to be a trackable"):
        ck.Checkpoint(3)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ck.Checkpoint(model=None),
        lambda: ck.Checkpoint(3),
        lambda: ck.Checkpoint(save=ck.Variable(1.0)),
        lambda: ck.Checkpoint(**{"_ck_x": ck.Variable(1.0)}),
    ],
    ids=["kwarg", "root", "method name", "internal name"],
)
def test_constructor_misuse_is_an_invalid_argument_error(make):
    """The ckptlab error for a wrong argument, as CheckpointManager's; still the ValueError TF
    raises (it was a bare ValueError)."""
    with pytest.raises(ck.InvalidArgumentError) as caught:
        make()
    assert isinstance(caught.value, ValueError)


def test_nested_structures_are_wrapped(ckpt_dir):
    """S4: lists/dicts/tuples are wrapped and accepted, even with only plain values."""
    ckpt = ck.Checkpoint(
        lst=[ck.Variable(1.0), 2], dct={"k": ck.Variable(2.0)}, empty=[], plain={"lr": 1}
    )
    path = ckpt.write(ckpt_dir / "c")
    assert [k for k, _ in ck.list_variables(path)] == ["dct/k" + KEY, "lst/0" + KEY]


def test_ordered_dicts_are_wrapped_like_dicts(ckpt_dir):
    """S4: as TensorFlow, an OrderedDict (an attribute or a keyword argument) is wrapped like a
    dict, its order kept, and its trackable values are saved and restored by key."""
    model = ck.Module()
    model.heads = collections.OrderedDict(cls=ck.Variable(3.0), box=ck.Variable(4.0))
    extra = collections.OrderedDict(b=ck.Variable(5.0))
    path = ck.Checkpoint(model=model, extra=extra).write(ckpt_dir / "c")
    assert [k for k, _ in ck.list_variables(path)] == [
        "extra/b" + KEY,
        "model/heads/box" + KEY,
        "model/heads/cls" + KEY,
    ]
    assert isinstance(model.heads, ck.TrackedDict) and list(model.heads) == ["cls", "box"]
    fresh = ck.Module()
    fresh.heads = collections.OrderedDict(cls=ck.Variable(0.0), box=ck.Variable(0.0))
    fresh_extra = collections.OrderedDict(b=ck.Variable(0.0))
    ck.Checkpoint(model=fresh, extra=fresh_extra).read(path).assert_consumed()
    assert (fresh.heads["cls"].numpy(), fresh.heads["box"].numpy()) == (3.0, 4.0)
    assert fresh_extra["b"].numpy() == 5.0


Pair = collections.namedtuple("Pair", "x y")


def test_namedtuples_are_tracked_by_field_name(ckpt_dir):
    """S4, S63: as TensorFlow, a namedtuple's trackable fields are saved under their names,
    and the object stays an instance of the user's class."""
    model = ck.Module()
    model.pair = Pair(ck.Variable(1.0), "label")
    path = ck.Checkpoint(model=model, top=Pair(x=[ck.Variable(2.0)], y=None)).write(ckpt_dir / "c")
    assert [k for k, _ in ck.list_variables(path)] == ["model/pair/x" + KEY, "top/x/0" + KEY]
    assert isinstance(model.pair, Pair) and model.pair._replace(y="z").y == "z"
    assert pickle.loads(pickle.dumps(model.pair)).x.numpy() == 1.0
    fresh = ck.Module()
    fresh.pair = Pair(ck.Variable(0.0), "label")
    ck.Checkpoint(model=fresh).read(path).expect_partial()
    assert fresh.pair.x.numpy() == 1.0


@pytest.mark.parametrize("remove", ["del", "pop", "popitem", "clear", "plain"])
def test_a_removed_dict_entry_is_no_longer_saved(ckpt_dir, remove):
    """S66b (different from TF, documented): removing or replacing a dict entry removes it
    from what is saved, and the save goes on."""
    model = ck.Module()
    model.d = {"a": ck.Variable(1.0)}
    {
        "del": lambda d: d.__delitem__("a"),
        "pop": lambda d: d.pop("a"),
        "popitem": lambda d: d.popitem(),
        "clear": lambda d: d.clear(),
        "plain": lambda d: d.__setitem__("a", 3),
    }[remove](model.d)
    model.d["b"] = ck.Variable(2.0)
    path = ck.Checkpoint(model=model).write(ckpt_dir / "c")
    assert [k for k, _ in ck.list_variables(path)] == ["model/d/b" + KEY]


@pytest.mark.parametrize("name", ["save", "write", "restore", "read", "save_counter", "sync"])
def test_method_names_are_refused(name):
    """S5-S6 (stricter): kwargs that would shadow a method raise ValueError."""
    with pytest.raises(ValueError, match=f"would shadow Checkpoint.{name}"):
        ck.Checkpoint(**{name: ck.Variable(1.0)})


def test_root_variable_saves_under_empty_path(ckpt_dir):
    """S7: root= is the graph root; a root variable's key is /.ATTRIBUTES/VARIABLE_VALUE."""
    path = ck.Checkpoint(root=ck.Variable(3.0)).write(ckpt_dir / "c")
    assert ck.list_variables(path) == [(KEY, [])]


def test_root_plus_kwargs_and_conflict(ckpt_dir):
    """S8, S20: kwargs sit next to root's children; a clash with a different child raises."""
    root = ck.Module()
    root.a = ck.Variable(1.0)
    ckpt = ck.Checkpoint(root, extra=ck.Variable(2.0), a=root.a)  # the identical object is fine
    path = ckpt.save(ckpt_dir / "c")
    assert [k for k, _ in ck.list_variables(path)] == [
        "a" + KEY,
        "extra" + KEY,
        "save_counter" + KEY,
    ]
    with pytest.raises(
        ValueError, match="Cannot create a Checkpoint with keyword argument a if root.a"
    ):
        ck.Checkpoint(root, a=ck.Variable(5.0))


def test_root_kwargs_are_attributes(ckpt_dir):
    """S8: as TF, every keyword argument is an attribute of the Checkpoint, also with root=
    (and is saved once, next to the root's children)."""
    model = ck.Module()
    model.w = ck.Variable(1.0)
    step = ck.Variable(np.int64(0))
    ckpt = ck.Checkpoint(root=model, step=step, history=[ck.Variable(2.0)])
    assert ckpt.step is step and isinstance(ckpt.history, ck.TrackedList)
    ckpt.step.assign(3)
    path = ckpt.write(ckpt_dir / "c")
    assert [k for k, _ in ck.list_variables(path)] == ["history/0" + KEY, "step" + KEY, "w" + KEY]
    assert ck.load_checkpoint(path).get_tensor("step" + KEY) == 3


def test_a_root_child_named_like_a_kwarg_later_fails_save_and_restore(ckpt_dir):
    """S8: root gets its own child named like a keyword argument after the Checkpoint was made:
    save and restore refuse, as the constructor does (TF's save raises KeyError), instead of
    silently leaving the keyword argument's value out; nothing is written or changed."""
    root = ck.Module()
    root.w = ck.Variable(1.0)
    extra = ck.Variable(2.0)
    ckpt = ck.Checkpoint(root=root, extra=extra)
    path = ckpt.write(ckpt_dir / "before")
    root.extra = ck.Variable(3.0)
    calls = {
        "write": lambda: ckpt.write(ckpt_dir / "c"),
        "save": lambda: ckpt.save(ckpt_dir / "s"),
        "restore": lambda: ckpt.restore(path),
        "read": lambda: ckpt.read(path),
    }
    for call in calls.values():
        with pytest.raises(ck.InvalidArgumentError, match=r"keyword argument extra .*root\.extra"):
            call()
    assert sorted(os.listdir(ckpt_dir)) == ["before"]
    assert (extra.numpy(), root.extra.numpy()) == (2.0, 3.0)
    del root.extra  # the clash is gone: nothing above created the save counter
    after = ckpt.write(ckpt_dir / "after")
    assert [k for k, _ in ck.list_variables(after)] == ["extra" + KEY, "w" + KEY]


def test_attribute_assignment_after_construction(ckpt_dir):
    """S10: a Checkpoint auto-tracks; plain values are untracked; del removes
    (stricter: re-assigning a plain value drops the dependency, unlike TF)."""
    ckpt = ck.Checkpoint()
    ckpt.v = ck.Variable(3.0)
    ckpt.n = 7
    ckpt.w = ck.Variable(1.0)
    ckpt.w = 7
    ckpt.gone = ck.Variable(1.0)
    del ckpt.gone
    assert [k for k, _ in ck.list_variables(ckpt.write(ckpt_dir / "c"))] == ["v" + KEY]


# --- B. keys ----------------------------------------------------------------------------------


def test_keys_escape_and_nest(ckpt_dir):
    """S12, S15, S63: '/'-joined local names, escaping, nested containers compose."""
    inner = ck.Module()
    inner.deep = ck.Variable(1.0)
    ckpt = ck.Checkpoint(model=ck.Module())
    ckpt.model.cfg = {
        "dec": [ck.Variable(0.0), inner],
        "a.b/c": ck.Variable(2.0),
        "": ck.Variable(3.0),
    }
    keys = [k for k, _ in ck.list_variables(ckpt.write(ckpt_dir / "c"))]
    assert keys == [
        "model/cfg/" + KEY,
        "model/cfg/a..b.Sc" + KEY,
        "model/cfg/dec/0" + KEY,
        "model/cfg/dec/1/deep" + KEY,
    ]


def test_full_names_recorded_but_not_matched(ckpt_dir):
    """S13: Variable.name is recorded but object-based matching ignores it."""
    path = ck.Checkpoint(w=ck.Variable(1.0, name="first")).write(ckpt_dir / "c")
    reader = ck.load_checkpoint(path)
    assert reader.object_graph is not None
    target = ck.Variable(0.0, name="completely-different")
    ck.Checkpoint(w=target).read(path).assert_consumed()
    assert target.numpy() == 1.0


def test_objects_without_values_are_nodes_without_keys(ckpt_dir):
    """S16: empty modules and lists are graph nodes but produce no keys."""
    path = ck.Checkpoint(m=ck.Module(), lst=[]).write(ckpt_dir / "c")
    graph = ck.load_checkpoint(path).object_graph
    assert ck.list_variables(path) == []
    assert set(graph.children(0)) == {"lst", "m"}


# --- C. save vs write -------------------------------------------------------------------------


def test_write_exact_path_no_counter_no_state(ckpt_dir):
    """S18, S21: write() returns the prefix as str, creates parents, no numbering/state/counter."""
    ckpt = ck.Checkpoint(v=ck.Variable(1.0))
    path = ckpt.write(pathlib.Path(ckpt_dir) / "sub" / "dir" / "w")
    assert path == str(ckpt_dir / "sub" / "dir" / "w")
    assert ck.latest_checkpoint(ckpt_dir / "sub" / "dir") is None
    assert "_ck_counter" in vars(ckpt) and vars(ckpt)["_ck_counter"] is None
    ckpt.v.assign(2.0)
    ckpt.write(path)  # overwrites silently
    assert ck.load_checkpoint(path).get_tensor("v" + KEY) == 2.0


def test_save_numbers_and_updates_state(ckpt_dir):
    """S19-S20, S26: save increments save_counter, writes prefix-N, the state file lists only it."""
    ckpt = ck.Checkpoint(v=ck.Variable(1.0))
    first = ckpt.save(ckpt_dir / "ckpt")
    second = ckpt.save(os.fspath(ckpt_dir / "ckpt"))
    assert (first, second) == (str(ckpt_dir / "ckpt-1"), str(ckpt_dir / "ckpt-2"))
    assert ckpt.save_counter.dtype == np.int64 and int(ckpt.save_counter.numpy()) == 2
    assert ck.load_checkpoint(second).get_tensor("save_counter" + KEY) == 2
    assert ck.latest_checkpoint(ckpt_dir) == second
    state = (ckpt_dir / "checkpoint").read_text()
    assert state == 'model_checkpoint_path: "ckpt-2"\nall_model_checkpoint_paths: "ckpt-2"\n'


def test_save_counter_lazy_creation(ckpt_dir):
    """S21: accessing save_counter creates it (0); write() then includes it."""
    ckpt = ck.Checkpoint(v=ck.Variable(1.0))
    assert int(ckpt.save_counter.numpy()) == 0
    keys = [k for k, _ in ck.list_variables(ckpt.write(ckpt_dir / "c"))]
    assert keys == ["save_counter" + KEY, "v" + KEY]


def test_counter_belongs_to_checkpoint_not_prefix(ckpt_dir):
    """S22: saving to a second prefix continues the numbering."""
    ckpt = ck.Checkpoint(v=ck.Variable(1.0))
    ckpt.save(ckpt_dir / "model.ckpt")
    assert ckpt.save(ckpt_dir / "pl") == str(ckpt_dir / "pl-2")


def test_numbering_continues_after_restore_and_fresh_overwrites(ckpt_dir):
    """S23: after restore numbering continues; a fresh Checkpoint starts at 1 again."""
    ckpt = ck.Checkpoint(v=ck.Variable(1.0))
    for _ in range(3):
        path = ckpt.save(ckpt_dir / "ckpt")
    restored = ck.Checkpoint(v=ck.Variable(0.0))
    restored.restore(path).assert_consumed()
    assert int(restored.save_counter.numpy()) == 3
    assert restored.save(ckpt_dir / "ckpt").endswith("ckpt-4")
    assert ck.Checkpoint(v=ck.Variable(9.0)).save(ckpt_dir / "ckpt").endswith("ckpt-1")
    assert ck.latest_checkpoint(ckpt_dir).endswith("ckpt-1")


def test_trailing_slash_prefix(ckpt_dir):
    """S25: save('dir/') writes dir/-N and the state file inside dir."""
    ckpt = ck.Checkpoint(v=ck.Variable(1.0))
    path = ckpt.save(f"{ckpt_dir}/d/")
    assert path == f"{ckpt_dir}/d/-1"
    assert ck.latest_checkpoint(ckpt_dir / "d") == path


def test_failed_save_leaves_counter_and_files(ckpt_dir):
    """A failed save leaves the user's objects and files as they were."""
    ckpt = ck.Checkpoint(v=ck.Variable(1.0))
    ckpt.save(ckpt_dir / "ckpt")
    ckpt.lst = [ck.Variable(1.0)]
    ckpt.lst[0] = ck.Variable(2.0)  # replacing a trackable element breaks saving (J64)
    with pytest.raises(ck.NotSaveableError, match="append-only"):
        ckpt.save(ckpt_dir / "ckpt")
    assert int(ckpt.save_counter.numpy()) == 1
    assert sorted(os.listdir(ckpt_dir)) == ["checkpoint", "ckpt-1"]


# --- D. state file ----------------------------------------------------------------------------


def test_latest_checkpoint_none_cases(ckpt_dir):
    """S27: None for a missing directory, no state file, or an incomplete checkpoint."""
    assert ck.latest_checkpoint(ckpt_dir / "missing") is None
    assert ck.latest_checkpoint(ckpt_dir) is None
    (ckpt_dir / "checkpoint").write_text('model_checkpoint_path: "ckpt-9"\n')
    assert ck.latest_checkpoint(ckpt_dir) is None


@pytest.mark.parametrize("text", ["", "garbage here\n", "model_checkpoint_path: 3\n"])
def test_bad_state_file_raises(ckpt_dir, text):
    """S27 (stricter): an empty or unparsable state file raises CorruptCheckpointError."""
    (ckpt_dir / "checkpoint").write_text(text)
    with pytest.raises(ck.CorruptCheckpointError, match="checkpoint"):
        ck.latest_checkpoint(ckpt_dir)


def test_hand_written_state_file_and_latest_filename(ckpt_dir):
    """S28: a hand-written state file is honoured; latest_filename selects another name."""
    path = ck.Checkpoint(v=ck.Variable(1.0)).write(ckpt_dir / "mine")
    (ckpt_dir / "other").write_text('model_checkpoint_path: "mine"\n')
    assert ck.latest_checkpoint(ckpt_dir, latest_filename="other") == path
    assert ck.latest_checkpoint(ckpt_dir) is None
    with pytest.raises(ck.InvalidArgumentError, match="for `latest_filename`, got 1 \\(int\\)"):
        ck.latest_checkpoint(ckpt_dir, latest_filename=1)  # was os.path.join's TypeError


def test_latest_checkpoint_keeps_the_directory_as_given(tmp_path, monkeypatch):
    """S26: TF joins the directory it is given and the state file's path: a relative
    directory gives a relative path, equal to what save() returned."""
    monkeypatch.chdir(tmp_path)
    saved = ck.Checkpoint(v=ck.Variable(1.0)).save("runs/ckpt")
    assert saved == "runs/ckpt-1" == ck.latest_checkpoint("runs")
    assert ck.latest_checkpoint("runs/") == "runs/ckpt-1"
    assert ck.latest_checkpoint(tmp_path / "runs") == str(tmp_path / "runs" / "ckpt-1")
    monkeypatch.chdir(tmp_path / "runs")
    assert ck.latest_checkpoint(".") == "./ckpt-1"
    elsewhere = ck.Checkpoint(v=ck.Variable(1.0)).write(tmp_path / "elsewhere")
    (tmp_path / "runs" / "checkpoint").write_text(f'model_checkpoint_path: "{elsewhere}"\n')
    assert ck.latest_checkpoint(".") == elsewhere  # an absolute path is kept as it is


# --- E. entry points --------------------------------------------------------------------------


def test_restore_none_is_initialization_only():
    """S29: restore(None) gives InitializationOnlyStatus; assertions and run_restore_ops raise."""
    ckpt = ck.Checkpoint(v=ck.Variable(4.0))
    status = ckpt.restore(None)
    assert isinstance(status, ck.InitializationOnlyStatus)
    for method in (
        status.assert_consumed,
        status.assert_existing_objects_matched,
        status.assert_nontrivial_match,
    ):
        with pytest.raises(AssertionError, match=r"No checkpoint specified \(save_path=None\)"):
            method()
    with pytest.raises(AssertionError, match="no restore ops are available"):
        status.run_restore_ops()
    assert status.initialize_or_restore() is None
    assert status.expect_partial() is status
    assert int(ckpt.save_counter.numpy()) == 0 and ckpt.v.numpy() == 4.0


def test_missing_path_hints_at_suffix(ckpt_dir):
    """S30: a missing prefix raises NotFoundError with the '-1' suffix hint."""
    ckpt = ck.Checkpoint(v=ck.Variable(1.0))
    ckpt.save(ckpt_dir / "ckpt")
    with pytest.raises(ck.NotFoundError, match=r"missing the checkpoint suffix.*ckpt-1") as info:
        ck.Checkpoint(v=ck.Variable(0.0)).restore(ckpt_dir / "ckpt")
    assert isinstance(info.value, FileNotFoundError)
    assert str(ckpt_dir / "ckpt") in str(info.value)


def test_directory_paths_get_clear_errors(ckpt_dir):
    """S31 (clearer than TF): a checkpoint directory suggests latest_checkpoint; a plain one says
    it is not a checkpoint."""
    ck.Checkpoint(v=ck.Variable(1.0)).save(ckpt_dir / "ckpt")
    with pytest.raises(ck.NotFoundError, match="latest_checkpoint"):
        ck.Checkpoint(v=ck.Variable(0.0)).restore(ckpt_dir)
    (ckpt_dir / "plain").mkdir()
    with pytest.raises(ck.NotFoundError, match="not a ckptlab checkpoint"):
        ck.Checkpoint(v=ck.Variable(0.0)).read(ckpt_dir / "plain")


def test_a_directory_of_checkpoint_folders_names_them(ckpt_dir):
    """A trainer's output/ (checkpoint-N folders), accelerate's checkpoints/ (checkpoint_N): the
    error names the folders and the newest to pass, not 'pass what save() returned'."""
    for step in (2, 10, 4):
        ck.Checkpoint(v=ck.Variable(float(step))).write(ckpt_dir / "out" / f"checkpoint-{step}")
    (ckpt_dir / "out" / "logs_7").mkdir()  # numbered, but no checkpoint in it
    with pytest.raises(ck.NotFoundError) as info:
        ck.Checkpoint(v=ck.Variable(0.0)).restore(ckpt_dir / "out")
    message = str(info.value)
    assert "holds 3 checkpoints in folders: checkpoint-2, checkpoint-4, checkpoint-10" in message
    assert f"the newest, {ckpt_dir / 'out' / 'checkpoint-10'}" in message, message
    assert "logs_7" not in message and "save() or write()" not in message, message
    ck.Checkpoint(v=ck.Variable(0.0)).write(ckpt_dir / "one" / "checkpoint_500")
    with pytest.raises(ck.NotFoundError, match="holds one checkpoint, in checkpoint_500: pass "):
        ck.list_variables(ckpt_dir / "one")


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda c, d: c.save(d / "ckpt", options={"durable": False}), "`options`"),
        (lambda c, d: c.save(d / "ckpt", options=ck.ReadOptions()), "ck.WriteOptions or None"),
        (lambda c, d: c.write(d / "w", options={"progress": False}), "`options`"),
        (lambda c, d: c.restore(d / "ckpt-1", options={"progress": False}), "ck.ReadOptions"),
        (lambda c, d: c.read(d / "ckpt-1", options=ck.WriteOptions()), "ck.ReadOptions"),
        (lambda c, d: c.restore(d / "ckpt-1", key_map={"a": "b"}), "`key_map`"),
        (lambda c, d: c.read(d / "ckpt-1", key_map=[("a", "b")]), "ck.KeyMap or None"),
        (lambda c, d: c.restore(None, key_map={"a": "b"}), "`key_map`"),
        (lambda c, d: c.restore(1), "Expected a path"),
    ],
)
def test_wrong_arguments_are_refused_before_anything_changes(ckpt_dir, call, argument):
    """A dict (or the other options class) given as ``options``/``key_map`` is one typed error
    naming the argument, raised before anything is written, read or created (it was an
    AttributeError from inside the save or restore, after the counter was created)."""
    model = ck.Module()
    model.v = ck.Variable(1.0)
    ck.Checkpoint(model=model).save(ckpt_dir / "ckpt")
    before = sorted(os.listdir(ckpt_dir))
    for ckpt in (ck.Checkpoint(model=model), ck.Checkpoint(root=model)):
        with pytest.raises(ck.InvalidArgumentError, match=argument) as caught:
            call(ckpt, ckpt_dir)
        assert isinstance(caught.value, ValueError) and isinstance(caught.value, TypeError)
        assert "Pass " in str(caught.value)
        assert ckpt._ck_counter is None  # not even the save counter was created
    assert sorted(os.listdir(ckpt_dir)) == before


@pytest.mark.parametrize(
    "state", ["", 'model_checkpoint_path: "ckpt-9"\n'], ids=["empty", "dangling"]
)
def test_restoring_a_directory_whose_state_file_names_no_checkpoint_says_so(ckpt_dir, state):
    """restore(dir) suggested ck.latest_checkpoint(dir), which would fail or return None here;
    it gives the precise error list_variables(dir) gives."""
    ck.Checkpoint(v=ck.Variable(1.0)).save(ckpt_dir / "ckpt")
    (ckpt_dir / "checkpoint").write_text(state)
    with pytest.raises(ck.CkptlabError) as listed:
        ck.list_variables(ckpt_dir)
    with pytest.raises(type(listed.value)) as restored:
        ck.Checkpoint(v=ck.Variable(0.0)).restore(ckpt_dir)
    assert str(restored.value) == str(listed.value)
    assert "latest_checkpoint" not in str(restored.value)


def test_restore_vs_read_save_counter(ckpt_dir):
    """S33: restore creates save_counter afterwards, read does not (the four combinations)."""
    saved = ck.Checkpoint(v=ck.Variable(1.0)).save(ckpt_dir / "s")
    written = ck.Checkpoint(v=ck.Variable(1.0)).write(ckpt_dir / "w")
    status = ck.Checkpoint(v=ck.Variable(0.0)).restore(written)
    with pytest.raises(AssertionError, match=r"Found 1 Python objects.*\n.*save_counter"):
        status.assert_existing_objects_matched()
    ck.Checkpoint(v=ck.Variable(0.0)).restore(saved).assert_consumed()
    ck.Checkpoint(v=ck.Variable(0.0)).read(written).assert_consumed()
    status = ck.Checkpoint(v=ck.Variable(0.0)).read(saved).expect_partial()
    status.assert_existing_objects_matched()
    with pytest.raises(
        AssertionError, match=r"Unresolved object in checkpoint \(root\).save_counter"
    ):
        status.assert_consumed()


def test_eager_restore_assigns_copies(ckpt_dir):
    """S34: values are assigned before restore returns; later changes do not touch the file."""
    v = ck.Variable([1.0, 2.0])
    path = ck.Checkpoint(v=v).write(ckpt_dir / "c")
    target = ck.Variable([0.0, 0.0])
    ck.Checkpoint(v=target).read(path)
    np.testing.assert_array_equal(target.numpy(), [1.0, 2.0])
    target.assign([5.0, 5.0])
    np.testing.assert_array_equal(ck.load_checkpoint(path).get_tensor("v" + KEY), [1.0, 2.0])


def test_root_checkpoint_restores_save_counter(ckpt_dir):
    """S20, S23: with a positional root, save_counter is a top-level child and is restored."""
    root = ck.Module()
    root.w = ck.Variable(1.0)
    ckpt = ck.Checkpoint(root)
    ckpt.save(ckpt_dir / "c")
    path = ckpt.save(ckpt_dir / "c")
    other = ck.Module()
    other.w = ck.Variable(0.0)
    restored = ck.Checkpoint(other)
    restored.restore(path).assert_consumed()
    assert int(restored.save_counter.numpy()) == 2 and other.w.numpy() == 1.0
    assert restored.save(ckpt_dir / "c").endswith("c-3")


def test_root_with_its_own_save_counter_shares_it(ckpt_dir):
    """S20-S22: a root that already has a save_counter child (another Checkpoint) lends it: one
    counter, the one the graph saves (TF looks it up on the root)."""
    inner = ck.Checkpoint(w=ck.Variable(1.0))
    inner.save(ckpt_dir / "inner")
    outer = ck.Checkpoint(root=inner)
    assert outer.save_counter is inner.save_counter
    path = outer.save(ckpt_dir / "outer")
    assert path.endswith("outer-2") and int(inner.save_counter.numpy()) == 2
    assert ck.load_checkpoint(path).get_tensor("save_counter" + KEY) == 2
    assert [k for k, _ in ck.list_variables(path)] == ["save_counter" + KEY, "w" + KEY]
    fresh = ck.Checkpoint(w=ck.Variable(0.0))
    ck.Checkpoint(root=fresh).restore(path).assert_consumed()  # created on the inner, restored
    assert int(fresh.save_counter.numpy()) == 2
    holder = ck.Module()
    holder.save_counter = ck.Variable(5, dtype=np.int64)
    assert ck.Checkpoint(root=holder).save(ckpt_dir / "h").endswith("h-6")


@pytest.mark.parametrize("name", ["_ck_counter", "_ck_root", "_ck_attached", "__dict__"])
def test_internal_names_are_refused(name):
    """S5-S6 (stricter): kwargs and attributes must not overwrite ckptlab's internal state."""
    with pytest.raises(ValueError, match=f"{name!r} uses a name reserved for ckptlab"):
        ck.Checkpoint(**{name: ck.Variable(3)})
    ckpt = ck.Checkpoint()
    if name.startswith("_ck_"):
        with pytest.raises(ValueError, match=f"attribute {name!r} uses a name reserved"):
            setattr(ckpt, name, ck.Variable(3))
    assert int(ckpt.save_counter.numpy()) == 0 and ckpt._ck_root is None


def test_kwargs_attach_in_alphabetical_order(ckpt_dir):
    """S14: Checkpoint kwargs are attached in alphabetical order (node ids follow)."""
    path = ck.Checkpoint(zeta=ck.Variable(1.0), alpha=ck.Variable(2.0), mid=ck.Module()).write(
        ckpt_dir / "c"
    )
    assert ck.load_checkpoint(path).object_graph.children(0) == {"alpha": 1, "mid": 2, "zeta": 3}


def test_a_full_disk_names_the_checkpoint_being_saved(tmp_path, no_space):
    """The error named the hidden staging copy (.ckpt-2.tmp-<uuid>/data/float32/0), deleted by
    the time the user reads it; it names ckpt-2 and keeps the errno."""
    ckpt = ck.Checkpoint(v=ck.Variable(np.ones(1000, np.float32)))
    first = ckpt.save(tmp_path / "ckpt", options=ck.WriteOptions(progress=False))
    no_space(lambda name: name == "0")  # the data shard
    with pytest.raises(ck.StorageError) as caught:
        ckpt.save(tmp_path / "ckpt", options=ck.WriteOptions(progress=False))
    assert str(caught.value).startswith(
        f"Could not write {tmp_path / 'ckpt-2'}: No space left on device. Free some space"
    )
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(tmp_path / "ckpt-2")
    assert isinstance(caught.value.__cause__, OSError) and ".tmp-" not in str(caught.value)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "ckpt-1"]
    assert ck.latest_checkpoint(tmp_path) == first and int(ckpt.save_counter.numpy()) == 1


def test_a_run_directory_removed_during_a_save_names_the_checkpoint(tmp_path, monkeypatch):
    """``rm -rf`` of the run directory (another job's clean-up) as a save publishes: the
    missing-file error named the deleted staging copy (``.ckpt-2.tmp-<uuid>``), since only
    storage errors of other kinds were retold; it names ckpt-2, as a full disk's does."""
    from ckptlab.storage import LocalStore

    run = tmp_path / "runs"
    ckpt = ck.Checkpoint(v=ck.Variable(np.ones(1000, np.float32)))
    ckpt.save(run / "ckpt", options=ck.WriteOptions(progress=False))
    rename = LocalStore.rename

    def removed_first(store, source, target, *, durable):
        shutil.rmtree(run)
        rename(store, source, target, durable=durable)

    monkeypatch.setattr(LocalStore, "rename", removed_first)
    with pytest.raises(ck.NotFoundError) as caught:
        ckpt.save(run / "ckpt", options=ck.WriteOptions(progress=False))
    assert str(caught.value).startswith(
        f"Could not write {run / 'ckpt-2'}: No such file or directory. Something removed the "
    )
    assert ".tmp-" not in str(caught.value)
    assert isinstance(caught.value.__cause__, FileNotFoundError)  # names the staging copy
    assert not run.exists() and int(ckpt.save_counter.numpy()) == 1


def test_a_run_directory_removed_while_a_save_writes_publishes_nothing(tmp_path, monkeypatch):
    """``rm -rf`` of the run directory while a save writes its data: the next write created
    the staging directory again (local writes create their parents) holding only the root
    document, the save renamed that to ckpt-2, named it latest and returned, and restoring it
    raised CorruptCheckpointError.  The save now fails with NotFoundError naming ckpt-2 and
    publishes nothing."""
    from ckptlab.storage import LocalStore

    run = tmp_path / "runs"
    ckpt = ck.Checkpoint(v=ck.Variable(np.ones(1000, np.float32)))
    ckpt.save(run / "ckpt", options=ck.WriteOptions(progress=False))
    write_stream = LocalStore.write_stream

    def removed_after(store, key, batches, *, durable):  # the data shard, written locally
        write_stream(store, key, batches, durable=durable)
        shutil.rmtree(run)

    monkeypatch.setattr(LocalStore, "write_stream", removed_after)
    with pytest.raises(ck.NotFoundError) as caught:
        ckpt.save(run / "ckpt", options=ck.WriteOptions(progress=False))
    message = str(caught.value)
    assert message.startswith(f"Could not write {run / 'ckpt-2'}: "), message
    assert "No such file or directory. Something removed the directory" in message
    assert "nothing was published" in message and ".tmp-" not in message
    assert ck.latest_checkpoint(run) is None and not (run / "ckpt-2").exists()
    assert not run.exists() or os.listdir(run) == []
    assert int(ckpt.save_counter.numpy()) == 1


def test_a_plain_save_that_cannot_be_recorded_deletes_its_checkpoint(tmp_path, no_space):
    """Issue 17 #10 for Checkpoint.save: a full disk while replacing the state file after
    ckpt-2 was committed deletes ckpt-2 (nothing would ever list or delete it) and says so."""
    ckpt = ck.Checkpoint(v=ck.Variable(1.0))
    first = ckpt.save(tmp_path / "ckpt", options=ck.WriteOptions(progress=False))
    no_space(lambda name: name.startswith(".checkpoint.tmp-"))
    with pytest.raises(ck.StorageError) as caught:
        ckpt.save(tmp_path / "ckpt", options=ck.WriteOptions(progress=False))
    assert isinstance(caught.value, OSError)
    assert str(caught.value).startswith(
        f"{tmp_path / 'ckpt-2'} was written, but recording it in {tmp_path / 'checkpoint'} "
        "failed, so it was deleted"
    )
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "ckpt-1"]
    assert ck.latest_checkpoint(tmp_path) == first
    assert int(ckpt.save_counter.numpy()) == 1


def test_ctrl_c_after_a_saves_commit_takes_effect_once_it_is_recorded(
    tmp_path, monkeypatch, sigint_raises
):
    """Ctrl-C arriving as the committed checkpoint is being recorded: the state file names it
    and the counter counts it before the KeyboardInterrupt (the next save rewrote ckpt-1)."""
    import ckptlab._checkpoint as checkpoint_module

    record = checkpoint_module.record_latest

    def interrupted(*args, **kwargs):  # the signal arrives as the record begins
        signal.raise_signal(signal.SIGINT)
        return record(*args, **kwargs)

    monkeypatch.setattr(checkpoint_module, "record_latest", interrupted)
    ckpt = ck.Checkpoint(v=ck.Variable(1.0))
    with pytest.raises(KeyboardInterrupt):
        ckpt.save(tmp_path / "ckpt")
    assert int(ckpt.save_counter.numpy()) == 1
    assert ck.latest_checkpoint(tmp_path) == str(tmp_path / "ckpt-1")
