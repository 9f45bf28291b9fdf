"""Trackables: Variable, Module auto-tracking, tracked containers (docs/semantics.md S63-S66)."""

import copy
import json
import pickle
import re

import numpy as np
import pytest

import ckptlab as ck

KEY = "/.ATTRIBUTES/VARIABLE_VALUE"


def test_variable_contract():
    v = ck.Variable(1.0)
    assert v.dtype == np.float64 and v.name == "Variable" and v.shape == () and v.trainable
    copy = v.numpy()
    copy += 1
    assert v.numpy() == 1.0
    view = np.asarray(v)
    assert not view.flags.writeable
    v.assign(np.float32(2))  # same_kind cast
    assert v.numpy() == 2.0
    with pytest.raises(ck.AssignmentError, match="not 'same_kind'"):
        ck.Variable(1).assign(1.5)
    with pytest.raises(ck.AssignmentError, match=r"shape \(2,\)"):
        v.assign([1.0, 2.0])


def test_integers_a_variable_cannot_hold_are_refused_not_wrapped():
    """numpy's same_kind cast wraps 300 into an int8 as 44; numpy's own ``a[...] = 300``, torch
    and TensorFlow refuse it, and so do ``assign`` and the constructor (nothing written)."""
    small = ck.Variable(np.int8(1))
    with pytest.raises(ck.AssignmentError, match=r"int8.*-128\.\.127.*300"):
        small.assign(300)
    wide = ck.Variable(np.array([0, 0], np.int32))
    with pytest.raises(ck.AssignmentError, match="2147483648"):
        wide.assign([2**31, 2**32 + 7])
    with pytest.raises(ck.AssignmentError, match="-2147483649"):
        wide.assign(np.array([-(2**31) - 1, 0]))  # an int64 array
    with pytest.raises(ck.AssignmentError, match="200"):
        ck.Variable(np.int8(0)).assign(np.array([200], np.uint8))  # same_kind, but -56
    assert small.numpy() == 1 and not wide.numpy().any()
    small.assign(-128).assign(np.int64(127))  # the bounds themselves fit
    wide.assign(np.array([2**31 - 1, -(2**31)]))
    assert small.numpy() == 127 and wide.numpy().tolist() == [2**31 - 1, -(2**31)]
    with pytest.raises(ck.AssignmentError, match="300"):
        ck.Variable(300, dtype=np.int8)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ck.Variable(1.0, dtype="nope"), "Expected a numpy dtype for `dtype`, got 'nope'"),
        (lambda: ck.Variable([[1], [2, 3]]), "(list) does not convert to a numpy array"),
        (lambda: ck.Variable("abc", dtype="float32"), "could not convert string to float"),
    ],
)
def test_initial_values_numpy_cannot_take_are_typed_errors(make, message):
    """``dtype='nope'`` was numpy's bare TypeError, a ragged list its ValueError."""
    with pytest.raises(ck.InvalidArgumentError, match=re.escape(message)):
        make()


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # torch's
def test_a_torch_tensor_that_requires_grad_says_to_detach_it():
    """It was torch's bare RuntimeError from inside the constructor."""
    torch = pytest.importorskip("torch")
    parameter = torch.ones(2, requires_grad=True)
    with pytest.raises(ck.InvalidArgumentError, match=r"\(Tensor\).*tensor\.detach\(\)\.numpy"):
        ck.Variable(parameter)
    assert ck.Variable(parameter.detach().numpy()).numpy().tolist() == [1.0, 1.0]


def test_variable_unknown_dims():
    v = ck.Variable(np.zeros((1, 3)), shape=(None, 3))
    v.assign(np.ones((4, 3)))
    assert v.shape == (4, 3) and v.declared_shape == (None, 3)
    with pytest.raises(ck.AssignmentError, match="declare the variable with None dims"):
        v.assign(np.ones((4, 2)))
    with pytest.raises(ck.AssignmentError, match="does not fit the declared shape"):
        ck.Variable(np.zeros(3), shape=(4,))


def test_variable_refuses_unstorable_dtypes():
    with pytest.raises(ck.UnsupportedFormatError, match="cannot store"):
        ck.Variable(np.array(["a"], dtype=object))
    with pytest.raises(ck.UnsupportedFormatError):
        ck.Variable(np.zeros(2, dtype=[("a", "f4")]))


def test_module_tracking_rules():
    m = ck.Module()
    m.v = ck.Variable(1.0)
    m.plain = 3
    m.items = [ck.Variable(1.0), 2]
    m.table = {"k": ck.Variable(1.0)}
    m.pair = (ck.Variable(1.0), 2)
    assert [n for n, _ in m._ck_children()] == ["v", "items", "table", "pair"]
    assert isinstance(m.items, ck.TrackedList) and m.items == [m.items[0], 2]
    assert isinstance(m.pair, tuple)
    m.v = 5  # re-assigning a plain value drops the dependency (unlike TF)
    del m.table
    assert [n for n, _ in m._ck_children()] == ["items", "pair"]
    assert isinstance(m, ck.Trackable) and isinstance(m.items, ck.Trackable)


def test_container_element_names(ckpt_dir):
    """S63: lists/tuples by index, dicts by key, nesting composes."""
    m = ck.Module()
    m.cfg = {"enc": ck.Variable(1.0), "dec": [ck.Variable(2.0), {"deep": ck.Variable(3.0)}]}
    m.pair = (ck.Variable(4.0), ck.Variable(5.0))
    keys = [k for k, _ in ck.list_variables(ck.Checkpoint(m=m).write(ckpt_dir / "c"))]
    assert [k.split("/.ATTRIBUTES")[0] for k in keys] == [
        "m/cfg/dec/0",
        "m/cfg/dec/1/deep",
        "m/cfg/enc",
        "m/pair/0",
        "m/pair/1",
    ]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda lst: lst.__setitem__(0, ck.Variable(9.0)), "replaced"),
        (lambda lst: lst.__delitem__(0), "deleted"),
        (lambda lst: lst.pop(), "deleted"),
        (lambda lst: lst.sort(key=lambda v: -v.numpy()), "moved"),
        (lambda lst: lst.reverse(), "moved"),
        (lambda lst: lst.insert(0, ck.Variable(0.0)), "moved"),
    ],
)
def test_list_is_append_only_for_saving(ckpt_dir, mutate, reason):
    """S64: replacing/deleting/moving a trackable element blocks saving."""
    m = ck.Module()
    m.items = [ck.Variable(1.0), ck.Variable(2.0)]
    mutate(m.items)
    with pytest.raises(ck.NotSaveableError, match=f"{reason}.*append-only"):
        ck.Checkpoint(m=m).write(ckpt_dir / "c")


def test_list_changes_that_stay_saveable(ckpt_dir):
    """S64: appends and changes to plain elements are fine."""
    m = ck.Module()
    m.items = [ck.Variable(1.0), 2]
    m.items.append(ck.Variable(3.0))
    m.items[1] = 7
    reader = ck.load_checkpoint(ck.Checkpoint(m=m).write(ckpt_dir / "c"))
    saved = {k: float(reader.get_tensor(k)) for k in reader.get_variable_to_shape_map()}
    assert saved == {
        "m/items/0/.ATTRIBUTES/VARIABLE_VALUE": 1.0,
        "m/items/2/.ATTRIBUTES/VARIABLE_VALUE": 3.0,
    }


def test_sort_that_moves_no_trackable_stays_saveable(ckpt_dir):
    """S64: only a change of a trackable's index (its saved name) blocks saving."""
    m = ck.Module()
    m.items = [ck.Variable(1.0), ck.Variable(2.0)]
    m.items.sort(key=lambda v: v.numpy())
    reader = ck.load_checkpoint(ck.Checkpoint(m=m).write(ckpt_dir / "c"))
    assert float(reader.get_tensor("m/items/0/.ATTRIBUTES/VARIABLE_VALUE")) == 1.0
    assert float(reader.get_tensor("m/items/1/.ATTRIBUTES/VARIABLE_VALUE")) == 2.0


def test_removing_a_plain_element_in_front_of_a_trackable_moves_it(ckpt_dir):
    """S64: the trackable's index (its saved name) changed, so saving refuses."""
    m = ck.Module()
    m.items = [2, ck.Variable(1.0)]
    del m.items[0]
    with pytest.raises(ck.NotSaveableError, match="deleted.*append-only"):
        ck.Checkpoint(m=m).write(ckpt_dir / "c")


def test_list_modified_outside_wrapper(ckpt_dir):
    """S65: the wrapped list changed behind the wrapper's back."""
    raw = [ck.Variable(1.0)]
    m = ck.Module()
    m.items = raw
    raw.append(ck.Variable(2.0))
    with pytest.raises(ck.NotSaveableError, match="modified outside the wrapper"):
        ck.Checkpoint(m=m).write(ckpt_dir / "c")


def test_dict_non_string_key(ckpt_dir):
    """S66: a non-string key mapping to a trackable blocks saving; plain values are fine."""
    m = ck.Module()
    m.table = {1: "plain", "k": ck.Variable(1.0)}
    del m.table["k"]
    m.table["k"] = ck.Variable(2.0)
    ck.Checkpoint(m=m).write(ckpt_dir / "c")
    m.table[2] = ck.Variable(1.0)
    with pytest.raises(ck.NotSaveableError, match="non-string key"):
        ck.Checkpoint(m=m).write(ckpt_dir / "c")


def test_tracked_dict_is_a_dict(ckpt_dir):
    """A dict held by a module is a dict (as TF's wrapper passes for one): isinstance, json,
    `|`, copy, `**` and pickling work; a copy or `|` is a plain dict; a pickled or copied
    module keeps its dict tracked."""
    m = ck.Module()
    m.config = {"lr": 0.1, "units": 64}
    plain = {"lr": 0.1, "units": 64}
    assert isinstance(m.config, dict) and json.loads(json.dumps(m.config)) == plain
    assert m.config | {"x": 1} == {**plain, "x": 1} and type(m.config | {}) is dict
    assert {"x": 1} | m.config == {"x": 1, **plain}
    assert type(m.config.copy()) is dict and m.config.copy() == plain
    assert (lambda **kw: kw)(**m.config) == plain
    m.config["w"] = ck.Variable(1.0)
    for copied in (pickle.loads(pickle.dumps(m)), copy.deepcopy(m)):
        assert type(copied.config) is ck.TrackedDict and copied.config["lr"] == 0.1
        assert copied.config is copied._ck_child("config")
        path = ck.Checkpoint(m=copied).write(ckpt_dir / "copy")
        assert [k for k, _ in ck.list_variables(path)] == ["m/config/w" + KEY]


def test_every_dict_mutator_keeps_tracking(ckpt_dir):
    """S38, S63: update, setdefault and |= track (and restore) what they put in, as []= does;
    an update whose restore fails puts nothing in."""
    m = ck.Module()
    m.heads = {}
    m.heads.update(a=ck.Variable(1.0))
    m.heads.setdefault("b", ck.Variable(2.0))
    m.heads |= {"c": ck.Variable(3.0), "d": [ck.Variable(4.0)]}
    m.heads["e"] = ck.Variable(5.0)
    m.heads.pop("e")
    assert isinstance(m.heads["d"], ck.TrackedList)
    path = ck.Checkpoint(m=m).write(ckpt_dir / "c")
    assert [k.split("/.")[0] for k, _ in ck.list_variables(path)] == [
        "m/heads/a",
        "m/heads/b",
        "m/heads/c",
        "m/heads/d/0",
    ]
    fresh = ck.Module()
    fresh.heads = {}
    ck.Checkpoint(m=fresh).read(path).expect_partial()
    with pytest.raises(ck.RestoreConflictError, match=r"\(root\)\.m\.heads\.b"):
        fresh.heads.update(a=ck.Variable(0.0), b=ck.Variable([0.0, 0.0]))
    assert fresh.heads == {}  # all or nothing
    fresh.heads.update(a=ck.Variable(0.0))
    fresh.heads.setdefault("b", ck.Variable(0.0))
    fresh.heads |= {"c": ck.Variable(0.0)}
    assert [fresh.heads[k].numpy() for k in "abc"] == [1.0, 2.0, 3.0]


def test_dict_modified_outside_wrapper(ckpt_dir):
    """S65 for dicts: changes through the wrapper reach the wrapped dict; changing the wrapped
    dict behind the wrapper's back makes saving refuse (as TF) rather than leave out silently
    what was put there."""
    raw = {"a": ck.Variable(1.0)}
    m = ck.Module()
    m.table = raw
    m.table["b"] = ck.Variable(2.0)
    del m.table["a"]
    assert list(raw) == ["b"]
    ck.Checkpoint(m=m).write(ckpt_dir / "ok")
    raw["c"] = ck.Variable(3.0)
    with pytest.raises(ck.NotSaveableError, match="modified outside the wrapper"):
        ck.Checkpoint(m=m).write(ckpt_dir / "c")


def test_register_trackable(ckpt_dir):
    """Third-party classes opt in without subclassing."""

    class Pair:
        def __init__(self, a, b):
            self.a, self.b = ck.Variable(a), ck.Variable(b)

    ck.register_trackable(Pair, lambda p: {"a": p.a, "b": p.b})
    path = ck.Checkpoint(pair=Pair(1.0, 2.0)).write(ckpt_dir / "c")
    target = Pair(0.0, 0.0)
    ck.Checkpoint(pair=target).read(path).assert_consumed()
    assert (target.a.numpy(), target.b.numpy()) == (1.0, 2.0)


def test_register_trackable_hook_returning_non_trackables_raises(ckpt_dir):
    """Issue 17 #14: a children hook returning plain values (a float, an array) would save
    nothing for them; the save raises instead, naming the class, the name and the type."""

    class Pair:
        def __init__(self):
            self.a, self.b = ck.Variable(1.0), np.zeros(3)

    ck.register_trackable(Pair, lambda p: {"a": p.a, "b": p.b})
    with pytest.raises(ValueError, match=r"hook registered for Pair returned 'b': a ndarray"):
        ck.Checkpoint(pair=Pair()).write(ckpt_dir / "c")
    assert not (ckpt_dir / "c").exists()
    assert list(ckpt_dir.iterdir()) == []
