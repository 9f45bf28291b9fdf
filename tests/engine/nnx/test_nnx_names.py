"""Names a Flax NNX program's values have in Orbax checkpoints (for name-based restores)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

import ckptlab as ck
from ckptlab.engine import Program, value_names

jax = pytest.importorskip("jax")
nnx = pytest.importorskip("flax.nnx")
ocp = pytest.importorskip("orbax.checkpoint")
jnp = jax.numpy


def orbax_leaves(path):
    """Every leaf Orbax wrote, by its tree path joined with '/' (as ckptlab's reader names it)."""
    tree = json.loads((path / "_METADATA").read_text())["tree_metadata"]
    checkpointer = ocp.StandardCheckpointer()
    restored = checkpointer.restore(path)
    flat = dict(jax.tree_util.tree_flatten_with_path(restored)[0])
    by_path = {tuple(str(k.key) for k in p): v for p, v in flat.items()}
    names = ["/".join(str(k["key"]) for k in leaf["key_metadata"]) for leaf in tree.values()]
    return {name: by_path[tuple(name.split("/"))] for name in names}


def host(value):
    if jnp.issubdtype(value.dtype, jax.dtypes.prng_key):
        value = jax.random.key_data(value)
    return np.asarray(value)


@pytest.mark.parametrize("layout", ["model", "model_and_optimizer"])
def test_every_orbax_leaf_names_the_value_it_holds(tmp_path, jx, layout):
    model = jx.net()
    optimizer = jx.optimizer(model)
    jx.train(model, optimizer, steps=2)
    if layout == "model":
        tree, checkpoint = nnx.state(model), ck.Checkpoint(root=model)
    else:
        tree = {"model": nnx.state(model), "optimizer": nnx.state(optimizer)}
        checkpoint = ck.Checkpoint(model=model, optimizer=optimizer)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "orbax", tree)
    checkpointer.wait_until_finished()

    program = checkpoint._ck_view().walk()
    names = value_names(program)
    by_name = {name: node for node, found in names.items() for name in found}
    leaves = orbax_leaves(tmp_path / "orbax")
    assert len(leaves) == len(names)  # every value has exactly one Orbax leaf
    for name, stored in leaves.items():
        assert name in by_name, name
        obj = program.objects[by_name[name]]
        mine = ck.engine.require_adapter(obj).read(obj)
        assert mine.tobytes() == host(stored).tobytes(), name
    if layout == "model_and_optimizer":
        assert "optimizer/opt_state/0/mu/embed/kernel/value" in by_name
        assert "model/embed/kernel/value" in by_name


def test_program_names_are_the_state_paths(jx):
    model = jx.net()
    names = value_names(Program(model).walk())
    flat = {"/".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(model))}
    assert {found[0] for found in names.values()} == flat


def test_restore_by_name_from_an_orbax_checkpoint(tmp_path, jx):
    if importlib.util.find_spec("ckptlab.storage._foreign._orbax") is None:
        pytest.skip("ckptlab's reader of Orbax checkpoints is not part of this tree")
    model = jx.net()
    optimizer = jx.optimizer(model)
    jx.train(model, optimizer, steps=2)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "model", nnx.state(model))
    tree = {"model": nnx.state(model), "optimizer": nnx.state(optimizer)}
    checkpointer.save(tmp_path / "train", tree)
    checkpointer.wait_until_finished()

    fresh = jx.net(seed=4)
    ck.Checkpoint(root=fresh).restore(tmp_path / "model").assert_consumed()
    assert jx.state_bytes(fresh) == jx.state_bytes(model)

    fresh = jx.net(seed=5)
    fresh_optimizer = jx.optimizer(fresh)
    status = ck.Checkpoint(model=fresh, optimizer=fresh_optimizer).restore(tmp_path / "train")
    status.assert_consumed()
    assert jx.state_bytes(fresh) == jx.state_bytes(model)
    assert jx.state_bytes(fresh_optimizer) == jx.state_bytes(optimizer)

    wider = jx.net(sizes=(3, 9, 2), seed=6)
    before = jx.state_bytes(wider)
    with pytest.raises(ck.RestoreConflictError, match="'embed/kernel/value'"):
        ck.Checkpoint(root=wider).restore(tmp_path / "model")
    assert jx.state_bytes(wider) == before
