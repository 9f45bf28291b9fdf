"""The checkpoint document: round trip and validation of untrusted JSON (FORMAT.md)."""

import copy

import pytest

from ckptlab.core import parse_document, parse_listing
from ckptlab.errors import CorruptCheckpointError, UnsupportedFormatError

VALID = {
    "format_version": 2,
    "kind": "object",
    "graph": {
        "nodes": [
            {"children": [["w", 1], ["opt", 2]]},
            {
                "children": [],
                "attributes": [
                    {
                        "name": "VARIABLE_VALUE",
                        "key": "w/.ATTRIBUTES/VARIABLE_VALUE",
                        "full_name": "w",
                    }
                ],
            },
            {"children": [], "optimizer": True, "type": "Adam"},
        ]
    },
    "values": {
        "w/.ATTRIBUTES/VARIABLE_VALUE": {
            "shape": [2],
            "dtype": "float32",
            "crc32c": [1],
            "array": "packed/float32",
            "offset": 0,
        }
    },
    "packs": {"packed/float32": {"dtype": "float32", "length": 2, "chunk": 1024}},
    "writer": {"library": "ckptlab"},
}


def test_round_trip():
    document = parse_document(VALID, "c")
    assert document.to_json() == VALID
    assert document.graph.nodes[2].is_optimizer
    assert document.values["w/.ATTRIBUTES/VARIABLE_VALUE"].nbytes == 8


def mutated(path, value):
    data = copy.deepcopy(VALID)
    target = data
    for step in path[:-1]:
        target = target[step]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("kind",), "weird", "document.kind"),
        (("graph", "nodes", 0, "children", 0), ["w", 7], r"graph.nodes\[0\].children\[0\]"),
        (("graph", "nodes", 0, "children", 1), ["w", 2], "unique child names"),
        (("graph", "nodes", 1, "attributes", 0, "key"), "nope", "a key listed in document.values"),
        (("values", "w/.ATTRIBUTES/VARIABLE_VALUE", "shape"), [-1], "shape"),
        (
            ("values", "w/.ATTRIBUTES/VARIABLE_VALUE", "shape"),
            [2**30, 2**30],
            "less than 2\\*\\*48",
        ),
        (("values", "w/.ATTRIBUTES/VARIABLE_VALUE", "offset"), 5, "a range inside packed/float32"),
        (("values", "w/.ATTRIBUTES/VARIABLE_VALUE", "dtype"), "object", "dtype"),
        (("values", "w/.ATTRIBUTES/VARIABLE_VALUE", "array"), "../../etc", "one of the packs"),
        (("graph",), KeyError, "document.graph"),
        (("graph", "nodes", 0, "children", 0), ["x" * 70000, 1], "at most 65536 characters"),
        (
            ("graph", "nodes", 1, "attributes"),
            None,
            r"graph.nodes\[1\].attributes: expected a list",
        ),
        (("graph", "nodes", 0, "slot_variables"), 3, r"nodes\[0\].slot_variables: expected a list"),
    ],
)
def test_invalid_documents_name_the_field(path, value, field):
    with pytest.raises(CorruptCheckpointError, match=field) as info:
        parse_document(mutated(path, value), "ckpt-7")
    assert "ckpt-7" in str(info.value)


def test_unknown_version_is_unsupported():
    with pytest.raises(UnsupportedFormatError, match="format_version 99.*Upgrade ckptlab"):
        parse_document(mutated(("format_version",), 99), "c")


def test_own_array_paths_are_restricted():
    data = mutated(
        ("values", "w/.ATTRIBUTES/VARIABLE_VALUE"),
        {"shape": [2], "dtype": "float32", "crc32c": [1], "array": "/abs/path", "chunks": [2]},
    )
    with pytest.raises(CorruptCheckpointError, match="a path like 'values/12'"):
        parse_document(data, "c")


def with_key(key, kind="object"):
    """VALID with its one value (and the attribute pointing at it) stored under ``key``."""
    data = copy.deepcopy(VALID)
    data["kind"] = kind
    data["values"] = {key: data["values"]["w/.ATTRIBUTES/VARIABLE_VALUE"]}
    data["graph"]["nodes"][1]["attributes"][0]["key"] = key
    return data


@pytest.mark.parametrize(
    "key",
    [
        "garbage",
        "../../x",
        "/abs",
        "",
        "w/.ATTRIBUTES",
        "w/.hidden/.ATTRIBUTES/VARIABLE_VALUE",
        "w/.S.ATTRIBUTES/VARIABLE_VALUE",
        "w/.OPTIMIZER_SLOT/m/.ATTRIBUTES/VARIABLE_VALUE",
        "w/.ATTRIBUTES/a.b",
    ],
)
def test_object_keys_must_follow_the_grammar(key):
    """FORMAT.md 2.1, 3: an object-based document's keys are parsed; the first bad one is named
    (in parse_document and in the listing)."""
    for parse in (parse_document, parse_listing):
        with pytest.raises(CorruptCheckpointError, match=r"values\[.*grammar of FORMAT.md") as info:
            parse(with_key(key), "ckpt-7")
        assert repr(key) in str(info.value) and "ckpt-7" in str(info.value)


@pytest.mark.parametrize(
    "key",
    [
        "/.ATTRIBUTES/VARIABLE_VALUE",
        "weird//.ATTRIBUTES/VARIABLE_VALUE",
        "../../x/.ATTRIBUTES/VARIABLE_VALUE",  # '..' is an escaped '.', never a parent directory
        "a..b.Sc/.ATTRIBUTES/VARIABLE_VALUE",
        "m/w/.OPTIMIZER_SLOT/opt/m/.ATTRIBUTES/VARIABLE_VALUE",
        "m/w/.OPTIMIZER_SLOT//m/.ATTRIBUTES/VARIABLE_VALUE",
        "table/.ATTRIBUTES/table-keys",
    ],
)
def test_grammatical_object_keys_load(key):
    assert list(parse_document(with_key(key), "c").values) == [key]


@pytest.mark.parametrize("key", ["garbage", "../../x", "/abs", "dense/kernel", "a.b"])
def test_name_based_keys_are_variable_names(key):
    """FORMAT.md 3: kind "name" keys are variable names, not in the object key grammar."""
    data = with_key(key, kind="name")
    del data["graph"]
    assert list(parse_document(data, "c").values) == [key]
