"""Reading a checkpoint without program objects (docs/semantics.md S91-S93)."""

import numpy as np
import pytest

import ckptlab as ck


def test_list_variables_and_directory(ckpt_dir):
    """S91: sorted (key, shape); a directory resolves to its latest checkpoint."""
    ckpt = ck.Checkpoint(b=ck.Variable(np.zeros((2, 3))), a=ck.Variable(1))
    ckpt.save(ckpt_dir / "ckpt")
    path = ckpt.save(ckpt_dir / "ckpt")
    listed = ck.list_variables(path)
    assert listed == [
        ("a/.ATTRIBUTES/VARIABLE_VALUE", []),
        ("b/.ATTRIBUTES/VARIABLE_VALUE", [2, 3]),
        ("save_counter/.ATTRIBUTES/VARIABLE_VALUE", []),
    ]
    assert ck.list_variables(ckpt_dir) == listed
    assert ck.load_checkpoint(ckpt_dir).path == path


def test_reader_methods(ckpt_dir):
    """S92: shape/dtype maps, has_tensor, get_tensor; a partial key is not found."""
    path = ck.Checkpoint(model=ck.Checkpoint(w=ck.Variable(np.arange(3, dtype="int16")))).write(
        ckpt_dir / "c"
    )
    reader = ck.load_checkpoint(path)
    key = "model/w/.ATTRIBUTES/VARIABLE_VALUE"
    assert reader.get_variable_to_shape_map() == {key: [3]}
    assert reader.get_variable_to_dtype_map() == {key: np.dtype("int16")}
    assert reader.has_tensor(key) and not reader.has_tensor("model/w")
    np.testing.assert_array_equal(reader.get_tensor(key), [0, 1, 2])
    with pytest.raises(ck.NotFoundError, match="Key 'model/w' not found"):
        reader.get_tensor("model/w")


def test_a_reader_made_from_a_path_opens_it(ckpt_dir):
    """``ck.CheckpointReader(path)`` (TF's CheckpointReader takes a path) was accepted and failed
    on first use with an AttributeError; it opens the path as ``ck.load_checkpoint`` does."""
    path = ck.Checkpoint(w=ck.Variable([1.0, 2.0])).save(ckpt_dir / "ckpt")
    assert ck.CheckpointReader(path).get_variable_to_shape_map() == {
        "w/.ATTRIBUTES/VARIABLE_VALUE": [2],
        "save_counter/.ATTRIBUTES/VARIABLE_VALUE": [],
    }
    assert ck.CheckpointReader(ckpt_dir).path == path
    with pytest.raises(ck.InvalidArgumentError, match="Expected a path"):
        ck.CheckpointReader(1)


def test_object_graph_view(ckpt_dir):
    """S93: node 0 is the root; children map local names to ids in BFS order."""
    shared = ck.Variable(1.0)
    path = ck.Checkpoint(
        a=ck.Checkpoint(v=shared), b=ck.Checkpoint(v=shared, u=ck.Variable(2.0))
    ).write(ckpt_dir / "c")
    graph = ck.load_checkpoint(path).object_graph
    assert graph.children(0) == {"a": 1, "b": 2}
    assert graph.children(1) == {"v": 3} and graph.children(2) == {"v": 3, "u": 4}
    assert graph.nodes[3].attributes == {"VARIABLE_VALUE": "a/v/.ATTRIBUTES/VARIABLE_VALUE"}
    assert graph.descendants() == [0, 1, 2, 3, 4]


def test_missing_paths(ckpt_dir):
    with pytest.raises(ck.NotFoundError):
        ck.list_variables(ckpt_dir / "nope")
    with pytest.raises(ck.NotFoundError):
        ck.load_checkpoint(ckpt_dir / "nope")
