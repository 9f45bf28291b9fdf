"""Matching as data: plan_restore over a fake, dict-based program.

Behaviours S36-S42 and S57-S62 of docs/semantics.md.

The core is pure, so these tests need no numpy: objects are plain Python objects described by a
fake ProgramView.
"""

from ckptlab.core import (
    Attribute,
    GraphNode,
    ObjectGraph,
    ValueSpec,
    build_graph,
    plan_restore,
)

F32 = "float32"


class Obj:
    def __init__(self, name, spec=None, children=None, optimizer=False):
        self.name = name
        self.spec = spec
        self.deps = dict(children or {})
        self.slots = []
        self.optimizer = optimizer

    def __repr__(self):
        return f"Obj({self.name})"


class View:
    def children(self, obj):
        return list(obj.deps.items())

    def value_spec(self, obj):
        return obj.spec

    def slots(self, obj):
        return obj.slots

    def slot_spec(self, optimizer, variable, slot, stored, saved_variable=None):
        return variable.spec

    def can_defer(self, obj):
        return obj.spec is None

    def is_optimizer(self, obj):
        return obj.optimizer

    def describe(self, obj):
        return ("Obj", obj.name)

    def node_info(self, obj):
        return (self.value_spec(obj), *self.describe(obj), self.is_optimizer(obj))

    def visit(self, obj):
        return self.children(obj), self.slots(obj), self.node_info(obj)


def var(name, shape=(2,), dtype=F32):
    return Obj(name, ValueSpec(shape=shape, dtype=dtype))


def saved(root):
    program = build_graph(root, View())
    stored = {
        program.graph.nodes[i].value_key: spec
        for i, spec in enumerate(program.specs)
        if spec is not None
    }
    return program.graph, stored


def test_breadth_first_first_path_and_sharing():
    """S14, S57: a shared object is stored once under its first breadth-first path."""
    shared = var("v")
    root = Obj(
        "root",
        children={"a": Obj("a", children={"v": shared}), "b": Obj("b", children={"v": shared})},
    )
    graph, stored = saved(root)
    assert list(stored) == ["a/v/.ATTRIBUTES/VARIABLE_VALUE"]
    assert graph.nodes[1].children["v"] == graph.nodes[2].children["v"]


def test_cycles_terminate():
    """S62: cycles and self-loops save fine; shortest path wins."""
    a, b = Obj("a"), Obj("b")
    a.deps = {"partner": b, "v": var("va"), "self": a}
    b.deps = {"partner": a, "v": var("vb")}
    graph, stored = saved(Obj("root", children={"a": a}))
    assert sorted(stored) == [
        "a/partner/v/.ATTRIBUTES/VARIABLE_VALUE",
        "a/v/.ATTRIBUTES/VARIABLE_VALUE",
    ]
    assert len(graph.nodes) == 5


def test_structural_match_and_deferral():
    """S36-S37: children pair by local name; a missing one is deferred on its parent."""
    graph, stored = saved(
        Obj("root", children={"w": var("w"), "m": Obj("m", children={"v": var("v")})})
    )
    target = Obj("root2", children={"w": var("other-name")})
    plan = plan_restore(graph, stored, View(), [(0, target)], {}, {})
    assert [a.target for a in plan.assignments] == [target.deps["w"]]
    assert [(d.parent, d.name) for d in plan.deferrals] == [(target, "m")]
    assert plan.conflicts() == []


def test_each_object_is_asked_for_its_children_once_however_wide():
    """Matching a node's stored children asks the view once per object, not once per name
    (an adapter finding one child by listing all of them made wide restores quadratic)."""
    graph, stored = saved(Obj("root", children={str(i): var(f"v{i}") for i in range(500)}))
    asked = []

    class Counting(View):
        def children(self, obj):
            asked.append(obj.name)
            return super().children(obj)

    target = Obj("r", children={str(i): var(f"w{i}") for i in range(500)})
    plan = plan_restore(graph, stored, Counting(), [(0, target)], {}, {})
    assert [a.target for a in plan.assignments] == list(target.deps.values())
    assert asked == ["r"]  # the leaves hold values and have no stored children: not asked


def test_conflicts_are_data():
    """S72, S75: shape and dtype conflicts are reported, not raised."""
    graph, stored = saved(Obj("root", children={"a": var("a", (3,)), "b": var("b", (2,), "int32")}))
    target = Obj("r", children={"a": var("a", (2,)), "b": var("b", (2,), "int64")})
    plan = plan_restore(graph, stored, View(), [(0, target)], {}, {})
    assert sorted(a.conflict for a in plan.conflicts()) == ["dtype", "shape"]


def test_unknown_dims_accept_any_shape():
    """S74: a variable of unknown shape accepts any saved shape."""
    graph, stored = saved(Obj("root", children={"a": var("a", (3, 4))}))
    target = Obj("r", children={"a": var("a", (None, 4))})
    assert plan_restore(graph, stored, View(), [(0, target)], {}, {}).conflicts() == []


def test_inconsistent_shared_reference():
    """S59: saved shared, restored into two objects: the second is an inconsistency."""
    shared = var("v")
    graph, stored = saved(
        Obj(
            "root",
            children={"a": Obj("a", children={"v": shared}), "b": Obj("b", children={"v": shared})},
        )
    )
    first, second = var("v1"), var("v2")
    target = Obj(
        "r", children={"a": Obj("a", children={"v": first}), "b": Obj("b", children={"v": second})}
    )
    plan = plan_restore(graph, stored, View(), [(0, target)], {}, {})
    assert [a.target for a in plan.assignments] == [first]
    assert [(i.bound, i.other) for i in plan.inconsistencies] == [(first, second)]


def test_saved_distinct_restored_shared_first_wins():
    """S61: one object on two saved paths takes the value found first."""
    graph, stored = saved(Obj("root", children={"a": var("a"), "b": var("b")}))
    shared = var("s")
    plan = plan_restore(
        graph, stored, View(), [(0, Obj("r", children={"a": shared, "b": shared}))], {}, {}
    )
    assert [a.key for a in plan.assignments] == ["a/.ATTRIBUTES/VARIABLE_VALUE"]
    assert len(plan.bindings) == 3
    assert [(m.node, m.first) for m in plan.merges] == [(2, 1)]
    later = plan_restore(graph, stored, View(), [(2, shared)], {}, {}, taken={id(shared): 1})
    assert later.assignments == () and [(m.node, m.first) for m in later.merges] == [(2, 1)]


def test_children_below_an_object_without_children_are_blocked():
    """A saved child under a program object that cannot take dependencies is blocked, not
    deferred (nothing could ever restore it)."""
    graph, stored = saved(Obj("root", children={"x": Obj("x", children={"v": var("v")})}))
    holder = var("x")  # the View lets only objects without a value take children
    plan = plan_restore(graph, stored, View(), [(0, Obj("r", children={"x": holder}))], {}, {})
    assert plan.deferrals == ()
    assert [(b.node, b.parent) for b in plan.blocked] == [(2, holder)]


def test_value_into_container_is_unused_attribute():
    """S47c: a saved value where the program has a container is an unused attribute."""
    graph, stored = saved(Obj("root", children={"x": var("x")}))
    plan = plan_restore(graph, stored, View(), [(0, Obj("r", children={"x": Obj("x")}))], {}, {})
    assert plan.unused_attributes == (1,)
    assert plan.assignments == ()


def test_slots_wait_for_variable_then_restore():
    """S67-S68: slot restoration needs both the variable and the optimizer bound."""
    w = var("w")
    opt = Obj("opt", optimizer=True)
    slot = var("w/m")
    opt.slots = [(w, "m", slot)]
    graph, stored = saved(Obj("root", children={"model": Obj("m", children={"w": w}), "opt": opt}))
    assert "model/w/.OPTIMIZER_SLOT/opt/m/.ATTRIBUTES/VARIABLE_VALUE" in stored
    new_opt, new_model = Obj("opt2", optimizer=True), Obj("m2")
    root = Obj("r", children={"model": new_model, "opt": new_opt})
    plan = plan_restore(graph, stored, View(), [(0, root)], {}, {})
    assert [p.slot for p in plan.pending_slots] == ["m"]
    new_w = var("w2")
    new_model.deps["w"] = new_w
    bound = dict(plan.bindings)
    waiting = {p.variable_node: [p] for p in plan.pending_slots}
    later = plan_restore(
        graph, stored, View(), [(graph.nodes[1].children["w"], new_w)], bound, waiting
    )
    assert [(s.optimizer, s.variable, s.slot) for s in later.slot_restores] == [
        (new_opt, new_w, "m")
    ]


def test_graph_paths_of_slots():
    graph = ObjectGraph(
        nodes=(
            GraphNode(children={"w": 1, "opt": 2}),
            GraphNode(
                attributes=(Attribute(name="VARIABLE_VALUE", key="w/.ATTRIBUTES/VARIABLE_VALUE"),)
            ),
            GraphNode(slot_variables=()),
        )
    )
    assert [p.prefix for p in graph.paths() if p] == ["", "w", "opt"]
