"""Format 3's columnar document: round trip and validation of untrusted columns (FORMAT.md 2)."""

import copy
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ckptlab.core import (
    ArrayInfo,
    Attribute,
    CheckpointDocument,
    GraphNode,
    ObjectGraph,
    SlotRef,
    ValueTable,
    parse_document,
    parse_listing,
)
from ckptlab.core._columnar import crc_counts
from ckptlab.errors import CorruptCheckpointError

W = "w/.ATTRIBUTES/VARIABLE_VALUE"
M = "w/.OPTIMIZER_SLOT/opt/m/.ATTRIBUTES/VARIABLE_VALUE"
BIG = "big/.ATTRIBUTES/VARIABLE_VALUE"
VALID = {
    "format_version": 3,
    "kind": "object",
    "arrays": [
        {"path": "data/float32", "dtype": "float32", "length": 4, "chunk": 2, "shard": 4},
        {"path": "values/0", "dtype": "int8", "chunks": [3, 2]},
    ],
    "crc_block": 4096,
    "values": {
        "key": [W, M, BIG],
        "shape": [[2], [2], [5, 2]],
        "array": [0, 0, 1],
        "offset": [0, 2, 0],
        "crc32c": [[1], [2], [3, 4]],
    },
    "graph": {
        "types": ["Checkpoint", "Variable", "Adam"],
        "type": [0, 1, 2, 1, 1],
        "optimizer": [2],
        "edges": {"parent": [0, 0, 0], "name": ["w", "opt", "big"], "child": [1, 2, 3]},
        "attributes": {
            "node": [1, 3, 4],
            "name": ["VARIABLE_VALUE"] * 3,
            "value": [0, 2, 1],
            "full_name": ["w", "big", "w/m"],
        },
        "slots": {"node": [2], "original": [1], "name": ["m"], "slot": [4]},
    },
    "writer": {"library": "ckptlab"},
}


def test_round_trip():
    document = parse_document(VALID, "c")
    assert document.to_json() == VALID
    assert document.graph.nodes[2].is_optimizer
    assert document.graph.nodes[2].slot_variables == (SlotRef(original=1, slot="m", node=4),)
    assert document.graph.nodes[4].value_key == M
    w = document.values[W]
    assert (w.shape, w.dtype, w.array, w.offset, w.crc32c, w.nbytes) == (
        (2,),
        "float32",
        "data/float32",
        0,
        (1,),
        8,
    )
    big = document.values[BIG]
    assert (big.array, big.offset, big.chunks) == ("values/0", None, (3, 2))
    assert parse_listing(VALID, "c") == [
        (W, (2,), "float32"),
        (M, (2,), "float32"),
        (BIG, (5, 2), "int8"),
    ]


def mutated(path, value):
    data = copy.deepcopy(VALID)
    target = data
    for step in path[:-1]:
        target = target[step]
    if value is KeyError:
        del target[path[-1]]
    elif value is list.append:
        target[path[-1]].append(target[path[-1]][0])
    else:
        target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("kind",), "weird", "document.kind"),
        (("crc_block",), 16, r"document.crc_block: expected an integer in \[4096"),
        (("arrays",), {}, "document.arrays: expected a JSON list"),
        (("arrays", 0, "path"), "../x", r"arrays\[0\].path"),
        (("arrays", 0, "path"), "data/../x", r"arrays\[0\].path"),
        (("arrays", 1, "path"), "data/float32", "a path no other array has"),
        (("arrays", 0, "dtype"), "object", r"arrays\[0\].dtype"),
        (("arrays", 0, "shard"), 3, "a multiple of chunk"),
        (("arrays", 0, "chunk"), 0, r"arrays\[0\].chunk"),
        (("arrays", 1, "chunks"), [3], r"arrays\[1\].chunks: expected 2 dims"),
        (("values", "key", 1), W, r"values.key\[1\]: expected a key no other value has"),
        (("values", "key"), list.append, "columns of equal length"),
        (("values", "shape", 0), [-1], r"values.shape\[0\]"),
        (("values", "shape", 0), [2**30, 2**30], r"fewer than 2\*\*48"),
        (("values", "shape", 0), [True], r"values.shape\[0\]"),
        (("values", "offset", 1), 3, r"values.offset\[1\]: expected a range inside data/float32"),
        (("values", "offset", 2), 1, r"values.offset\[2\]: expected 0"),
        (("values", "array", 0), 2, r"values.array\[0\]: expected an integer in \[0, 2\)"),
        (("values", "crc32c", 2), [3], r"values.crc32c\[2\]: expected 2 checksums"),
        (("values", "crc32c", 0), [2**32], r"values.crc32c\[0\]"),
        (("values", "crc32c", 0), ["1"], r"values.crc32c\[0\]"),
        (("graph",), KeyError, "document.graph"),
        (("graph", "type"), [], "at least the root node"),
        (("graph", "edges", "child", 0), 9, r"graph.edges.child\[0\]"),
        (("graph", "edges", "name", 1), "w", "unique child names"),
        (("graph", "edges", "name", 0), "x" * 70000, "at most 65536 characters"),
        (("graph", "attributes", "value", 0), 3, r"graph.attributes.value\[0\]"),
        (("graph", "attributes", "node"), list.append, "columns of equal length"),
        (("graph", "slots", "slot", 0), -1, r"graph.slots.slot\[0\]"),
        (("graph", "optimizer"), None, "graph.optimizer: expected a JSON list"),
    ],
)
def test_invalid_documents_name_the_field(path, value, field):
    with pytest.raises(CorruptCheckpointError, match=field) as info:
        parse_document(mutated(path, value), "ckpt-7")
    assert "ckpt-7" in str(info.value)


def test_an_own_array_holds_one_value():
    data = copy.deepcopy(VALID)
    data["values"]["shape"][0] = [4, 2]
    data["values"]["array"][0] = 1
    with pytest.raises(CorruptCheckpointError, match=r"values.array\[2\]: expected an own array"):
        parse_document(data, "c")


def test_listing_checks_values_but_not_the_graph():
    assert len(parse_listing(mutated(("graph", "edges", "child", 0), 9), "c")) == 3
    with pytest.raises(CorruptCheckpointError, match="values.offset"):
        parse_listing(mutated(("values", "offset", 1), 3), "c")
    with pytest.raises(CorruptCheckpointError, match="grammar of FORMAT.md"):
        parse_listing(mutated(("values", "key", 0), "../../x"), "c")


def test_name_based_documents_take_any_key():
    data = mutated(("kind",), "name")
    del data["graph"]
    data["values"]["key"][0] = "../../not/a/path"
    assert next(iter(parse_document(data, "c").values)) == "../../not/a/path"


def test_checksum_counts():
    assert crc_counts([0, 4096, 4097, 3 * 4096], 4096) == [0, 1, 2, 3]


names = st.text(min_size=0, max_size=5)


@st.composite
def documents(draw):
    """A random version-3 document: packed values of two dtypes and a graph over them."""
    count = draw(st.integers(0, 6))
    keys = [f"v{i}/.ATTRIBUTES/VARIABLE_VALUE" for i in range(count)]
    shapes = [tuple(draw(st.lists(st.integers(0, 3), max_size=3))) for _ in keys]
    ids = [draw(st.integers(0, 1)) for _ in keys]
    lengths = [0, 0]
    offsets = []
    for shape, array in zip(shapes, ids, strict=True):
        offsets.append(lengths[array])
        size = 1
        for d in shape:
            size *= d
        lengths[array] += size
    arrays = tuple(
        ArrayInfo(path=f"data/{d}", dtype=d, length=n, chunk=max(n, 1), shard=max(n, 1))
        for d, n in zip(("float32", "int8"), lengths, strict=True)
    )
    itemsize = {"float32": 4, "int8": 1}
    nbytes = [
        itemsize[arrays[a].dtype] * (0 if 0 in s else max(1, _prod(s)))
        for s, a in zip(shapes, ids, strict=True)
    ]
    crcs = [
        tuple(draw(st.integers(0, 2**32 - 1)) for _ in range(c)) for c in crc_counts(nbytes, 4096)
    ]
    table = ValueTable(
        keys=keys, shapes=shapes, array_ids=ids, offsets=offsets, crcs=crcs, arrays=arrays
    )
    nodes = [GraphNode(children={f"v{i}": i + 1 for i in range(count)}, type_name="Root")]
    for _i, key in enumerate(keys):
        nodes.append(
            GraphNode(
                attributes=(Attribute(name="VARIABLE_VALUE", key=key, full_name=draw(names)),),
                type_name=draw(st.sampled_from(["", "Variable"])),
                is_optimizer=draw(st.booleans()),
            )
        )
    return CheckpointDocument(
        format_version=3,
        kind="object",
        graph=ObjectGraph(nodes=tuple(nodes)),
        values=table,
        crc_block=4096,
        writer={"x": draw(names)},
    )


def _prod(shape):
    size = 1
    for d in shape:
        size *= d
    return size


@settings(max_examples=200, deadline=None)
@given(documents())
def test_documents_round_trip(document):
    data = json.loads(json.dumps(document.to_json()))  # tuples become lists, as on disk
    parsed = parse_document(copy.deepcopy(data), "c")
    assert json.loads(json.dumps(parsed.to_json())) == data
    assert [parsed.values[k] for k in parsed.values] == [
        document.values[k] for k in document.values
    ]
    assert [dict(n.children) for n in parsed.graph.nodes] == [
        dict(n.children) for n in document.graph.nodes
    ]
    assert [n.attributes for n in parsed.graph.nodes] == [
        n.attributes for n in document.graph.nodes
    ]
