"""Key grammar and escaping (docs/semantics.md S12, S15, S17, S50)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ckptlab.core import escape_local_name, parse_key, pretty_path, unescape_local_name, value_key
from ckptlab.core._keys import pretty_slot, slot_prefix, split_key
from ckptlab.errors import CorruptCheckpointError

names = st.text(alphabet=st.sampled_from("ab./S_-0"), max_size=8)


@given(names)
def test_escape_round_trip(name):
    """S15: '.' -> '..', '/' -> '.S', and the escaping is invertible."""
    escaped = escape_local_name(name)
    assert "/" not in escaped
    assert unescape_local_name(escaped) == name


@given(st.lists(names, max_size=4))
def test_value_key_round_trip(path):
    """A key built from any path parses back to that path (docs/semantics.md S12)."""
    key = value_key("/".join(escape_local_name(n) for n in path))
    parsed = parse_key(key)
    assert parsed.attribute == "VARIABLE_VALUE"
    assert parsed.path == (tuple(path) if path != [""] else ())


def test_escaping_examples():
    """S15: an empty dict key gives an empty segment."""
    assert value_key("weird/" + escape_local_name("")) == "weird//.ATTRIBUTES/VARIABLE_VALUE"
    assert escape_local_name("a.b/c") == "a..b.Sc"
    assert value_key("") == "/.ATTRIBUTES/VARIABLE_VALUE"


def test_slot_key():
    """S17: <var path>/.OPTIMIZER_SLOT/<optimizer path>/<slot>/.ATTRIBUTES/..."""
    key = value_key(slot_prefix("model/w", "train/opt", "m"))
    assert key == "model/w/.OPTIMIZER_SLOT/train/opt/m/.ATTRIBUTES/VARIABLE_VALUE"
    parsed = parse_key(key)
    assert parsed.path == ("model", "w")
    assert parsed.optimizer_path == ("train", "opt")
    assert parsed.slot == "m"


def test_pretty_paths():
    """S50: (root).a.b and the slot form."""
    assert pretty_path(["model", "layers", "0"]) == "(root).model.layers.0"
    assert pretty_slot(["model", "w"], ["optimizer"], "m") == (
        "(root).optimizer's state 'm' for (root).model.w"
    )


@pytest.mark.parametrize("bad", ["a/b", "a/.ATTRIBUTE/x", "a.x/.ATTRIBUTES/V"])
def test_bad_keys_raise_typed_errors(bad):
    """Keys that do not parse give a CorruptCheckpointError naming the key."""
    with pytest.raises(CorruptCheckpointError, match="a"):
        parse_key(bad)


def test_split_key():
    assert split_key("a/b/.ATTRIBUTES/VARIABLE_VALUE") == ("a/b", "VARIABLE_VALUE")
