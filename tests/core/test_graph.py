"""The object graph as nodes and as columns: the same graph either way (docs/architecture.md)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ckptlab.core import Attribute, GraphNode, ObjectGraph, SlotRef


@st.composite
def graphs(draw):
    """Random graphs: shared children, cycles, nodes with no value, slots, odd attributes."""
    count = draw(st.integers(1, 12))
    node_ids = st.integers(0, count - 1)
    nodes = []
    for node_id in range(count):
        names = draw(st.lists(st.sampled_from("abcdef"), unique=True, max_size=4))
        attributes = tuple(
            Attribute(name=name, key=f"k{node_id}/{name}", full_name=draw(st.sampled_from("xy")))
            for name in draw(
                st.lists(st.sampled_from(["VARIABLE_VALUE", "OTHER"]), unique=True, max_size=2)
            )
        )
        slots = tuple(
            SlotRef(original=draw(node_ids), slot=slot, node=draw(node_ids))
            for slot in draw(st.lists(st.sampled_from("mv"), unique=True, max_size=2))
        )
        nodes.append(
            GraphNode(
                children={name: draw(node_ids) for name in names},
                attributes=attributes,
                slot_variables=slots,
                type_name=draw(st.sampled_from(["", "Module", "Variable"])),
                is_optimizer=draw(st.booleans()),
            )
        )
    return tuple(nodes)


def _has_values_by_fixed_point(nodes):
    has = [bool(node.attributes) for node in nodes]
    changed = True
    while changed:
        changed = False
        for node_id, node in enumerate(nodes):
            if not has[node_id] and any(has[c] for c in node.children.values()):
                has[node_id] = changed = True
    return tuple(has)


def _optimizer_nodes_by_walking(nodes):
    """Optimizers and slot owners, everything reachable below them, and slot variables."""
    marked = {i for i, n in enumerate(nodes) if n.is_optimizer or n.slot_variables}
    stack = list(marked)
    while stack:
        for child in nodes[stack.pop()].children.values():
            if child not in marked:
                marked.add(child)
                stack.append(child)
    return frozenset(marked | {ref.node for n in nodes for ref in n.slot_variables})


def _paths_by_walking(nodes):
    """First breadth-first paths over the node objects, then slots by their owners' paths."""
    from collections import deque

    from ckptlab.core import NodePath

    found = [None] * len(nodes)
    if nodes:
        found[0] = NodePath(path=())
        queue = deque([0])
        while queue:
            node_id = queue.popleft()
            for name, child in nodes[node_id].children.items():
                if found[child] is None:
                    found[child] = NodePath(path=(*found[node_id].path, name))
                    queue.append(child)
        for node_id, node in enumerate(nodes):
            for ref in node.slot_variables:
                owner, variable = found[node_id], found[ref.original]
                if found[ref.node] is None and owner is not None and variable is not None:
                    found[ref.node] = NodePath(path=variable.path, slot=(owner.path, ref.slot))
    return found


@settings(max_examples=300, deadline=None)
@given(graphs())
def test_columns_and_nodes_describe_the_same_graph(nodes):
    from_nodes = ObjectGraph(nodes=nodes)
    from_columns = ObjectGraph(columns=from_nodes.columns)
    assert [
        (dict(n.children), n.attributes, n.slot_variables, n.type_name, n.is_optimizer)
        for n in from_columns.nodes
    ] == [
        (dict(n.children), n.attributes, n.slot_variables, n.type_name, n.is_optimizer)
        for n in nodes
    ]
    for graph in (from_nodes, from_columns):
        assert [list(c.items()) for c in graph.child_table()] == [
            list(n.children.items()) for n in nodes
        ]
        assert list(graph.value_keys()) == [n.value_key for n in nodes]
        assert dict(graph.slot_table()) == {
            i: n.slot_variables for i, n in enumerate(nodes) if n.slot_variables
        }
        assert graph.has_values_below() == _has_values_by_fixed_point(nodes)
        assert graph.paths() == from_nodes.paths()
        expected = _paths_by_walking(nodes)
        assert [(p.path, p.slot, p.prefix) if p else None for p in graph.paths()] == [
            (p.path, p.slot, p.prefix) if p else None for p in expected
        ]
        assert graph.optimizer_nodes() == _optimizer_nodes_by_walking(nodes)


def test_a_graph_is_made_from_nodes_or_columns():
    graph = ObjectGraph(nodes=(GraphNode(),))
    for wrong in ({}, {"nodes": graph.nodes, "columns": graph.columns}):
        with pytest.raises(TypeError, match="nodes or columns"):
            ObjectGraph(**wrong)
