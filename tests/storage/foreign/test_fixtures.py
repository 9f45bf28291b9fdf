"""Every framework fixture reads through ckptlab's public readers and matches manifest.json."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ckptlab as ck
from ckptlab.explorer._sources import CheckpointSource
from ckptlab.storage import open_checkpoint, resolve
from ckptlab.storage._foreign._tfproto import parse_object_graph

TF = [
    "tf1_saver",
    "tf1_saver_v1",
    "tf2_dtypes",
    "tf2_keras3",
    "tf2_keras3_model_only",
    "tf2_keras_adam",
    "tf2_keras_legacy_adam",
    "tf2_module",
    "tf2_sharded",
]
TORCH = {
    "torch_state_dict": "torch/state_dict.pt",
    "torch_state_dict_legacy": "torch/state_dict_legacy.pt",
    "torch_checkpoint": "torch/checkpoint.pt",
    "torch_extras": "torch/extras.pt",
    "torch_model_safetensors": "torch/model.safetensors",
}
GRAPH = "_CHECKPOINTABLE_OBJECT_GRAPH"


def _path(fixtures_dir: Path, manifest: dict[str, Any], name: str) -> str:
    return str(fixtures_dir / (manifest[name]["prefix"] if name in TF else TORCH[name]))


def _check_tensor(array: np.ndarray[Any, Any], expected: dict[str, Any]) -> None:
    assert list(array.shape) == expected["shape"]
    if expected["dtype"] == "string":
        assert [bytes(v).hex() for v in array.reshape(-1)] == expected["values_hex"]
        return
    assert array.dtype.name == expected["dtype"]
    assert hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest() == expected["sha256"]


@pytest.mark.parametrize("name", TF + list(TORCH))
def test_every_tensor_matches_the_manifest(fixtures_dir, manifest, name):
    expected = {k: v for k, v in manifest[name]["tensors"].items() if k != GRAPH}
    reader = ck.load_checkpoint(_path(fixtures_dir, manifest, name))
    shapes = reader.get_variable_to_shape_map()
    assert sorted(shapes) == sorted(expected)
    dtypes = reader.get_variable_to_dtype_map()
    for key, spec in expected.items():
        assert shapes[key] == spec["shape"]
        assert dtypes[key].name == ("object" if spec["dtype"] == "string" else spec["dtype"])
        _check_tensor(reader.get_tensor(key), spec)


def test_the_5400_key_index_with_two_data_blocks(fixtures_dir, manifest):
    summary = manifest["tf1_many_keys"]["tensor_summary"]
    path = str(fixtures_dir / manifest["tf1_many_keys"]["prefix"])
    listed = ck.list_variables(path)
    assert len(listed) == summary["count"] == 5400
    reader = ck.load_checkpoint(path)
    digest = hashlib.sha256()
    for key in sorted(k.encode() for k, _ in listed):
        array = reader.get_tensor(key.decode())
        digest.update(key + b"\x00" + hashlib.sha256(array.tobytes()).digest())
    assert digest.hexdigest() == summary["aggregate_sha256"]
    assert (
        sorted({d.name for d in reader.get_variable_to_dtype_map().values()}) == summary["dtypes"]
    )
    shapes = {str(s) for s in reader.get_variable_to_shape_map().values()}
    assert sorted(shapes) == summary["shapes"]
    for key, spec in summary["samples"].items():
        _check_tensor(reader.get_tensor(key), spec)


@pytest.mark.parametrize("name", [n for n in TF if n.startswith("tf2")])
def test_object_graph_matches_the_manifest(fixtures_dir, manifest, name):
    graph = ck.load_checkpoint(_path(fixtures_dir, manifest, name)).object_graph
    assert graph is not None
    nodes = manifest[name]["object_graph"]
    assert len(graph.nodes) == len(nodes)
    for node, expected in zip(graph.nodes, nodes, strict=True):
        assert list(node.children.items()) == [tuple(c) for c in expected["children"]]
        assert dict(node.attributes) == {
            a["name"]: a["checkpoint_key"] for a in expected["attributes"]
        }
        slots = [
            (s["original_variable_node_id"], s["slot_name"], s["slot_variable_node_id"])
            for s in expected.get("slot_variables", [])
        ]
        assert list(node.slot_variables) == slots


def test_legacy_adam_slot_variables_are_in_the_graph(fixtures_dir):
    graph = ck.load_checkpoint(str(fixtures_dir / "tf2_keras_legacy_adam" / "ckpt")).object_graph
    slots = [s for node in graph.nodes for s in node.slot_variables]
    assert len(slots) == 8
    assert {name for _, name, _ in slots} == {"m", "v"}
    slot_keys = {graph.nodes[node].attributes["VARIABLE_VALUE"] for _, _, node in slots}
    assert all("/.OPTIMIZER_SLOT/optimizer/" in key for key in slot_keys)


@pytest.mark.parametrize("name", TF)
def test_raw_object_graph_and_kind(fixtures_dir, manifest, name):
    source = open_checkpoint(*resolve(_path(fixtures_dir, manifest, name)))
    expected = manifest[name]["tensors"].get(GRAPH)
    assert source.document.kind == ("object" if expected else "name")
    if expected:
        assert hashlib.sha256(source.raw_object_graph()).hexdigest() == expected["sha256"]


@pytest.mark.parametrize(
    "name", ["torch_checkpoint", "torch_extras", "torch_state_dict", "torch_state_dict_legacy"]
)
def test_torch_literals_and_metadata(fixtures_dir, manifest, name):
    source = open_checkpoint(*resolve(_path(fixtures_dir, manifest, name)))
    literals = manifest[name].get("literals", {})
    assert sorted(source.literals) == sorted(literals)
    for key, spec in literals.items():
        value = source.literals[key]
        if spec["type"] == "bytes":
            assert value.hex() == spec["value_hex"]
        elif spec["type"] == "dtype":
            assert repr(value) == spec["value"]
        elif spec["type"] in ("tuple", "Size"):
            assert list(value) == spec["value"]
        else:
            assert value == spec["value"]
    if "state_dict_metadata" in manifest[name]:
        where = "model" if name == "torch_checkpoint" else ""
        assert source.metadata[where] == manifest[name]["state_dict_metadata"]


@pytest.mark.parametrize("suffix", ["", ".index", ".data-00000-of-00003", ".data-00002-of-00003"])
def test_every_path_spelling_opens_the_same_bundle(fixtures_dir, suffix):
    path = str(fixtures_dir / "tf2_sharded" / "ckpt") + suffix
    assert len(ck.list_variables(path)) == 5


def test_safetensors_metadata_header_and_offsets(fixtures_dir, manifest):
    expected = manifest["torch_model_safetensors"]
    source = open_checkpoint(*resolve(str(fixtures_dir / "torch" / "model.safetensors")))
    assert source.metadata == expected["metadata"]
    data_start = 8 + expected["header_bytes"]
    for key, spec in expected["tensors"].items():
        begin, end = spec["data_offsets"]
        location = source.stored(key).foreign
        assert (location.offset, location.length) == (data_start + begin, end - begin)


@pytest.mark.parametrize("name", [n for n in TF if n.startswith("tf2")])
def test_has_checkpoint_values_as_parsed(fixtures_dir, manifest, name):
    """Not on the public ObjectGraph (core's GraphNode has no such field): the parser only."""
    source = open_checkpoint(*resolve(_path(fixtures_dir, manifest, name)))
    nodes = parse_object_graph(source.raw_object_graph())
    expected = [n.get("has_checkpoint_values") for n in manifest[name]["object_graph"]]
    assert [n.has_checkpoint_values for n in nodes] == expected


@pytest.mark.parametrize(
    ("directory", "expected"),
    [
        ("tf2_module", "ckpt-1"),
        ("tf1_saver", "model.ckpt-1"),
        ("tf1_saver_v1", "model.ckpt-7"),
        ("tf1_many_keys", "model.ckpt"),
    ],
)
def test_tensorflow_state_files_name_the_latest_checkpoint(fixtures_dir, directory, expected):
    assert ck.latest_checkpoint(fixtures_dir / directory) == str(
        fixtures_dir / directory / expected
    )
    assert ck.list_variables(fixtures_dir / directory) == ck.list_variables(
        fixtures_dir / directory / expected
    )


def test_the_explorer_shows_legacy_adam_slot_variables(fixtures_dir):
    source = open_checkpoint(*resolve(str(fixtures_dir / "tf2_keras_legacy_adam" / "ckpt")))
    view = CheckpointSource(source).view()
    slots = [edge for edge in view.edges if edge[2] == "slot"]
    assert len(slots) == 8
    keys = {view.nodes[s].value.key for s, _, _ in slots}
    assert all("/.OPTIMIZER_SLOT/optimizer/" in key for key in keys)


def test_the_explorer_splits_flat_names_into_a_tree(fixtures_dir):
    source = open_checkpoint(*resolve(str(fixtures_dir / "torch" / "checkpoint.pt")))
    view = CheckpointSource(source).view()
    names = {node.name for node in view.nodes}
    assert {"model", "fc1", "weight", "optimizer", "state", "exp_avg"} <= names


def test_reading_every_fixture_imports_no_framework(fixtures_dir):
    script = f"""
import sys, pathlib
import ckptlab as ck
root = pathlib.Path({str(fixtures_dir)!r})
paths = [root / "torch" / name for name in ("state_dict.pt", "state_dict_legacy.pt",
         "checkpoint.pt", "extras.pt", "model.safetensors")]
paths += [p.parent / p.stem for p in root.glob("*/*.index")]
paths.append(root / "tf1_saver_v1" / "model.ckpt-7")
for path in paths:
    reader = ck.load_checkpoint(path)
    for key in reader.get_variable_to_shape_map():
        reader.get_tensor(key)
frameworks = ("torch", "tensorflow", "google", "safetensors")
loaded = sorted(m for m in sys.modules if m.split(".")[0] in frameworks)
assert not loaded, loaded
print(len(paths))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == 15


MISNAMED = [
    ("torch/model.safetensors", "weights.pt", "SafetensorsFile"),
    ("torch/model.safetensors", "ckpt.data-00000-of-00001", "SafetensorsFile"),
    ("torch/state_dict.pt", "state_dict.safetensors", "TorchFile"),
    ("torch/state_dict_legacy.pt", "model.safetensors", "TorchFile"),
    ("torch/state_dict.pt", "ckpt.index", "TorchFile"),
    ("tf1_saver_v1/model.ckpt-7", "model.pt", "SavedTensorSlicesFile"),
    ("tf1_saver_v1/model.ckpt-7", "model.ckpt.index", "SavedTensorSlicesFile"),
]


@pytest.mark.parametrize(("source", "name", "kind"), MISNAMED)
def test_files_are_recognised_by_content_not_by_name(fixtures_dir, tmp_path, source, name, kind):
    target = tmp_path / name
    target.write_bytes((fixtures_dir / source).read_bytes())
    opened = open_checkpoint(*resolve(str(target)))
    assert type(opened).__name__ == kind
    assert ck.list_variables(target) == ck.list_variables(fixtures_dir / source)


@pytest.mark.parametrize("suffix", ["", ".index", ".data-00001-of-00003"])
def test_a_bundle_under_a_misleading_prefix_is_still_a_bundle(fixtures_dir, tmp_path, suffix):
    for path in (fixtures_dir / "tf2_sharded").glob("ckpt.*"):
        (tmp_path / path.name.replace("ckpt", "weights.safetensors", 1)).write_bytes(
            path.read_bytes()
        )
    path = str(tmp_path / "weights.safetensors") + suffix
    assert type(open_checkpoint(*resolve(path))).__name__ == "TensorBundle"
    assert ck.list_variables(path) == ck.list_variables(fixtures_dir / "tf2_sharded" / "ckpt")


def test_a_prefix_whose_index_is_a_v1_file_says_to_open_the_file(fixtures_dir, tmp_path):
    (tmp_path / "model.index").write_bytes(
        (fixtures_dir / "tf1_saver_v1/model.ckpt-7").read_bytes()
    )
    with pytest.raises(ck.UnsupportedFormatError, match="V1 checkpoint file, not the index"):
        ck.list_variables(tmp_path / "model")


def test_a_bundle_index_under_another_name_is_explained(fixtures_dir, tmp_path):
    index = fixtures_dir / "tf1_saver" / "model.ckpt-1.index"
    (tmp_path / "model.idx").write_bytes(index.read_bytes())
    with pytest.raises(ck.UnsupportedFormatError, match="not named '<prefix>.index'"):
        ck.list_variables(tmp_path / "model.idx")


def test_a_data_file_whose_index_is_damaged_names_the_index(fixtures_dir, tmp_path):
    for path in (fixtures_dir / "tf1_saver").glob("model.ckpt-1.*"):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    index = tmp_path / "model.ckpt-1.index"
    index.write_bytes(index.read_bytes()[:-1] + b"\x00")  # the table magic is gone
    with pytest.raises(ck.CorruptCheckpointError, match=r"model\.ckpt-1\.index"):
        ck.list_variables(tmp_path / "model.ckpt-1.data-00000-of-00001")
