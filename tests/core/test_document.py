"""The checkpoint document: round trip and validation of untrusted JSON (FORMAT.md)."""

import copy

import pytest

from ckptlab.core import parse_document
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
            "fewer than 2\\*\\*48",
        ),
        (("values", "w/.ATTRIBUTES/VARIABLE_VALUE", "offset"), 5, "a range inside packed/float32"),
        (("values", "w/.ATTRIBUTES/VARIABLE_VALUE", "dtype"), "object", "dtype"),
        (("values", "w/.ATTRIBUTES/VARIABLE_VALUE", "array"), "../../etc", "one of the packs"),
        (("graph",), KeyError, "document.graph"),
        (("graph", "nodes", 0, "children", 0), ["x" * 70000, 1], "at most 65536 characters"),
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
