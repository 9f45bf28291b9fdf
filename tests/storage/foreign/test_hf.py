"""Hugging Face model directories written by transformers (and torch bins as HF wrote them)."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

import ckptlab as ck

from .contract import (
    assert_reads_exactly,
    assert_same_array,
    assert_works_everywhere,
    read_everything,
)

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_numpy = pytest.importorskip("safetensors.numpy")
huggingface_hub = pytest.importorskip("huggingface_hub")


def _tiny_gpt2():
    config = transformers.GPT2Config(
        n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=16, bos_token_id=0,
        eos_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(config)


def _save_torch_bins(model, directory: Path, max_shard_size: str | None) -> None:
    """What transformers 4 wrote with safe_serialization=False: torch.save shards + index."""
    state = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}  # tied
    directory.mkdir()
    model.config.save_pretrained(directory)
    if max_shard_size is None:
        torch.save(state, directory / "pytorch_model.bin")
        return
    split = huggingface_hub.split_torch_state_dict_into_shards(
        state, filename_pattern="pytorch_model{suffix}.bin", max_shard_size=max_shard_size
    )
    for file, names in split.filename_to_tensors.items():
        torch.save({n: state[n].contiguous() for n in names}, directory / file)
    index = {"metadata": split.metadata, "weight_map": split.tensor_to_filename}
    (directory / "pytorch_model.bin.index.json").write_text(json.dumps(index, indent=2))


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    model = _tiny_gpt2()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(root / "sharded", max_shard_size="20KB")
        model.save_pretrained(root / "single")
    _save_torch_bins(model, root / "bins", "20KB")
    _save_torch_bins(model, root / "bin", None)
    return root, model


def _safetensors_expected(directory: Path) -> dict[str, np.ndarray]:
    expected = {}
    for file in sorted(directory.glob("*.safetensors")):
        expected.update(safetensors_numpy.load_file(file))
    return expected


def _torch_expected(directory: Path) -> dict[str, np.ndarray]:
    expected = {}
    for file in sorted(directory.glob("*.bin")):
        expected.update({k: v.numpy() for k, v in torch.load(file, weights_only=True).items()})
    return expected


def test_sharded_safetensors_read_as_safetensors_does(hf_dirs):
    root, _ = hf_dirs
    directory = root / "sharded"
    assert len(list(directory.glob("model-*.safetensors"))) > 2
    expected = _safetensors_expected(directory)
    assert "transformer.h.0.attn.c_attn.weight" in expected
    assert_reads_exactly(directory, expected)
    assert_reads_exactly(directory / "model.safetensors.index.json", expected)
    reader = ck.storage.open_checkpoint(*ck.storage.resolve(str(directory)))
    shards = len(list(directory.glob("model-*.safetensors")))
    assert reader.format_name == f"Hugging Face model directory ({shards} shards: safetensors file)"
    assert reader.shard_metadata and all(
        m == {"format": "pt"} for m in reader.shard_metadata.values()
    )
    assert reader.metadata["total_size"] == sum(v.nbytes for v in expected.values())


def test_sharded_torch_bins_read_as_torch_does(hf_dirs):
    root, _ = hf_dirs
    directory = root / "bins"
    assert len(list(directory.glob("pytorch_model-*.bin"))) > 2
    assert_reads_exactly(directory, _torch_expected(directory))


@pytest.mark.parametrize(
    ("name", "expected"), [("single", _safetensors_expected), ("bin", _torch_expected)]
)
def test_single_file_directories(hf_dirs, name, expected):
    root, _ = hf_dirs
    assert_reads_exactly(root / name, expected(root / name))


def test_a_directory_works_with_every_entry_point(hf_dirs, tmp_path):
    root, _ = hf_dirs
    assert_works_everywhere(root / "sharded", _safetensors_expected(root / "sharded"), tmp_path)


def test_shards_the_index_does_not_name_are_ignored(hf_dirs, tmp_path):
    directory = tmp_path / "model"
    shutil.copytree(hf_dirs[0] / "sharded", directory)
    expected = _safetensors_expected(directory)
    safetensors_numpy.save_file(
        {"stray": np.ones(3, np.float32)}, directory / "model-00099-of-00099.safetensors"
    )
    (directory / "pytorch_model.bin").write_bytes(b"PK\x03\x04 not even a zip")
    assert_reads_exactly(directory, expected)


def test_a_safetensors_index_is_preferred_over_a_torch_one(hf_dirs, tmp_path):
    directory = tmp_path / "both"
    shutil.copytree(hf_dirs[0] / "sharded", directory)
    for file in (hf_dirs[0] / "bins").iterdir():
        shutil.copy(file, directory / file.name)
    assert (
        "safetensors" in ck.storage.open_checkpoint(*ck.storage.resolve(str(directory))).format_name
    )


@pytest.mark.parametrize(
    ("sources", "opened"),
    [
        # save_pretrained again without sharding: a stale index beside model.safetensors,
        # its shards deleted (transformers 5) or left behind
        ({"single": ["model.safetensors"], "sharded": ["*.json"]}, "model.safetensors"),
        ({"single": ["model.safetensors"], "sharded": ["*"]}, "model.safetensors"),
        # a Hub repo converted to safetensors, downloaded with allow_patterns=["*.json",
        # "*.safetensors"]: the .bin index without its shards
        ({"single": ["model.safetensors"], "bins": ["*.json"]}, "model.safetensors"),
        ({"sharded": ["*"], "bin": ["pytorch_model.bin"]}, "model.safetensors.index.json"),
        ({"bin": ["pytorch_model.bin"], "bins": ["*"]}, "pytorch_model.bin"),
    ],
)
def test_the_weights_transformers_loads_are_opened(hf_dirs, tmp_path, sources, opened):
    """transformers' order (modeling_utils): model.safetensors, model.safetensors.index.json,
    pytorch_model.bin, pytorch_model.bin.index.json; the first present is what loads."""
    directory = tmp_path / "model"
    directory.mkdir()
    for source, patterns in sources.items():
        for pattern in patterns:
            for file in (hf_dirs[0] / source).glob(pattern):
                shutil.copy(file, directory / file.name)
    reader = ck.storage.open_path(directory)
    if opened.endswith(".index.json"):
        assert reader.index_file == opened
    else:
        assert reader.path == str(directory / opened)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = transformers.GPT2LMHeadModel.from_pretrained(directory, local_files_only=True)
    state = loaded.state_dict()
    for key, _ in ck.list_variables(directory):
        assert torch.equal(torch.from_numpy(reader.read(key)), state[key]), key


def test_a_damaged_model_safetensors_is_the_error_not_a_reason_to_read_the_index(hf_dirs, tmp_path):
    """It is what from_pretrained loads: the error names it (no silent fall back to shards)."""
    directory = tmp_path / "model"
    shutil.copytree(hf_dirs[0] / "sharded", directory)
    data = (hf_dirs[0] / "single" / "model.safetensors").read_bytes()
    (directory / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ck.CorruptCheckpointError, match="model.safetensors is not a readable"):
        ck.list_variables(directory)


# -- damaged and hostile directories ------------------------------------------------------------


def _copy(hf_dirs, tmp_path, name="sharded") -> tuple[Path, dict]:
    directory = tmp_path / name
    shutil.copytree(hf_dirs[0] / name, directory)
    index_file = next(directory.glob("*.index.json"))
    return directory, json.loads(index_file.read_text())


def _write_index(directory: Path, index) -> None:
    next(directory.glob("*.index.json")).write_text(
        index if isinstance(index, str) else json.dumps(index)
    )


def test_bad_index_json_is_a_corrupt_checkpoint(hf_dirs, tmp_path):
    directory, _ = _copy(hf_dirs, tmp_path)
    _write_index(directory, '{"weight_map": {"a": "model-00001')
    with pytest.raises(ck.CorruptCheckpointError, match="not valid JSON"):
        ck.list_variables(directory)


@pytest.mark.parametrize("shard", ["../outside.safetensors", "/etc/passwd", "a/../../b", "", 7])
def test_shard_paths_that_leave_the_directory_are_refused(hf_dirs, tmp_path, shard):
    directory, index = _copy(hf_dirs, tmp_path)
    safetensors_numpy.save_file({"x": np.ones(1, np.float32)}, tmp_path / "outside.safetensors")
    first = next(iter(index["weight_map"]))
    index["weight_map"][first] = shard
    _write_index(directory, index)
    with pytest.raises(ck.CorruptCheckpointError, match="inside the directory|maps a tensor to 7"):
        ck.list_variables(directory)


def test_an_index_naming_a_missing_shard_is_not_found(hf_dirs, tmp_path):
    directory, index = _copy(hf_dirs, tmp_path)
    missing = sorted(set(index["weight_map"].values()))[1]
    (directory / missing).unlink()
    with pytest.raises(ck.NotFoundError, match=missing):
        ck.list_variables(directory)


def test_an_index_naming_a_tensor_its_shard_lacks_is_corrupt(hf_dirs, tmp_path):
    directory, index = _copy(hf_dirs, tmp_path)
    index["weight_map"]["transformer.extra.weight"] = next(iter(index["weight_map"].values()))
    _write_index(directory, index)
    with pytest.raises(ck.CorruptCheckpointError, match="transformer.extra.weight"):
        ck.list_variables(directory)


@pytest.mark.parametrize("name", ["sharded", "bins"])
def test_truncated_shards_are_corrupt(hf_dirs, tmp_path, name):
    directory, index = _copy(hf_dirs, tmp_path, name)
    shard = directory / sorted(set(index["weight_map"].values()))[0]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) - 100])
    with pytest.raises(ck.CorruptCheckpointError):
        read_everything(directory)


def test_a_shard_that_is_not_weights_is_corrupt(hf_dirs, tmp_path):
    directory, index = _copy(hf_dirs, tmp_path)
    (directory / sorted(set(index["weight_map"].values()))[0]).write_text("hello")
    with pytest.raises(ck.CorruptCheckpointError, match="neither a safetensors nor"):
        ck.list_variables(directory)


@pytest.mark.parametrize(
    ("shard", "found"),
    [
        ("model.safetensors.index.json", "a JSON file"),  # the index names itself
        ("config.json", "a JSON file"),
        ("tokenizer", "a directory"),
        ("model.weights.h5", "a file whose first bytes are 89 48 44 46 0d 0a 1a 0a"),  # HDF5
    ],
)
def test_a_shard_that_is_an_index_json_or_another_file_is_corrupt(hf_dirs, tmp_path, shard, found):
    """A shard is a safetensors or torch.save file by content; anything else is not opened as
    what it is (an index naming itself recursed until Python's recursion limit)."""
    directory, index = _copy(hf_dirs, tmp_path)
    (directory / "tokenizer").mkdir()
    (directory / "model.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    index["weight_map"]["lm_head.extra"] = shard
    _write_index(directory, index)
    before = {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}
    with pytest.raises(ck.CorruptCheckpointError) as error:
        ck.list_variables(directory)
    message = str(error.value)
    assert f"{directory / 'model.safetensors.index.json'} names {shard!r} as a shard" in message
    assert f"{directory / shard} is {found}, neither a safetensors nor a torch.save" in message
    assert {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()} == before


# -- export to safetensors, loaded by transformers ------------------------------------------------


def _from_pretrained(directory: Path, config_from: Path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    shutil.copy(config_from / "config.json", directory / "config.json")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transformers.GPT2LMHeadModel.from_pretrained(directory, local_files_only=True)


def _assert_same_model(loaded, model) -> None:
    want, got = model.state_dict(), loaded.state_dict()
    assert set(got) == set(want)
    for key, value in want.items():
        assert torch.equal(got[key], value), key


def test_torch_bins_exported_to_sharded_safetensors_load_in_transformers(
    hf_dirs, tmp_path, monkeypatch
):
    root, model = hf_dirs
    out = tmp_path / "exported"
    assert ck.convert(root / "bins", out, format="safetensors", max_shard_size="30KB") == str(out)
    files = sorted(p.name for p in out.iterdir())
    assert "model.safetensors.index.json" in files and len(files) > 3
    for file in out.glob("*.safetensors"):
        with open(file, "rb") as handle:
            header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
        assert header["__metadata__"] == {"format": "pt"}
        sizes = sum(
            v["data_offsets"][1] - v["data_offsets"][0]
            for k, v in header.items()
            if k != "__metadata__"
        )
        assert sizes <= 30_000 or len(header) == 2  # one value larger than a shard gets its own
    _assert_same_model(_from_pretrained(out, root / "bins", monkeypatch), model)


def test_a_ckptlab_checkpoint_exported_to_safetensors_loads_in_transformers(
    hf_dirs, tmp_path, monkeypatch
):
    root, model = hf_dirs
    converted = ck.convert(root / "sharded", tmp_path / "ckpt")
    out = tmp_path / "exported"
    ck.convert(converted, out, format="safetensors")
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors"]
    _assert_same_model(_from_pretrained(out, root / "sharded", monkeypatch), model)


def test_export_keeps_keys_values_and_string_metadata(tmp_path):
    source = tmp_path / "in.safetensors"
    tensors = {
        "b.weight": np.arange(6, dtype=np.float16).reshape(2, 3),
        "a.bias": np.array([1, -2], np.int64),
        "c.flag": np.array(True),
    }
    safetensors_numpy.save_file(tensors, source, metadata={"format": "pt", "note": "kept"})
    out = tmp_path / "out.safetensors"
    ck.convert(source, out, format="safetensors")
    with open(out, "rb") as handle:
        header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
    assert header["__metadata__"] == {"format": "pt", "note": "kept"}
    loaded = safetensors_numpy.load_file(out)
    for key, value in tensors.items():
        assert_same_array(loaded[key], value, key)


def test_shard_sizes_accept_bytes_and_units(tmp_path):
    source = tmp_path / "in.safetensors"
    safetensors_numpy.save_file({f"w{i}": np.zeros(250, np.float32) for i in range(8)}, source)
    ck.convert(source, tmp_path / "ints", format="safetensors", max_shard_size=2000)
    ck.convert(source, tmp_path / "units", format="safetensors", max_shard_size="2KB")
    ck.convert(source, tmp_path / "big", format="safetensors", max_shard_size="5GB")
    assert len(list((tmp_path / "ints").glob("*.safetensors"))) == 4
    assert len(list((tmp_path / "units").glob("*.safetensors"))) == 4
    assert [p.name for p in (tmp_path / "big").iterdir()] == ["model.safetensors"]
    for bad in ("5XB", "-1", 0, "GB", "0.5B"):
        with pytest.raises(ValueError, match="max_shard_size"):
            ck.convert(source, tmp_path / f"bad{bad}", format="safetensors", max_shard_size=bad)


def test_export_refuses_an_existing_destination_and_leaves_nothing_on_failure(hf_dirs, tmp_path):
    root, _ = hf_dirs
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    with pytest.raises(ck.CkptlabError, match="exists"):
        ck.convert(root / "sharded", existing, format="safetensors")
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]
    (tmp_path / "empty").mkdir()  # as the CLI: a destination must not exist
    with pytest.raises(ck.CkptlabError, match="exists"):
        ck.convert(root / "sharded", tmp_path / "empty", format="safetensors")
    directory, index = _copy(hf_dirs, tmp_path)
    shard = directory / sorted(set(index["weight_map"].values()))[-1]
    reader_path = directory
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) - 64])  # the last values are cut: the export fails late
    before = set(tmp_path.iterdir())
    with pytest.raises(ck.CorruptCheckpointError):
        ck.convert(reader_path, tmp_path / "out", format="safetensors", max_shard_size="20KB")
    assert set(tmp_path.iterdir()) == before  # no output, no temporary directory


def test_export_refuses_a_value_named_like_the_metadata_entry(tmp_path):
    """safetensors reserves ``__metadata__``: a tensor of that name would make a corrupt file."""
    source = tmp_path / "weights.pt"
    torch.save({"__metadata__": torch.ones(2), "w": torch.zeros(3)}, source)
    with pytest.raises(ck.CkptlabError, match="'__metadata__', which safetensors reserves"):
        ck.convert(source, tmp_path / "out", format="safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.pt"]


def test_export_under_a_file_is_a_typed_error(tmp_path):
    source = tmp_path / "in.safetensors"
    safetensors_numpy.save_file({"w": np.zeros(3, np.float32)}, source)
    (tmp_path / "afile").write_text("")
    with pytest.raises(ck.StorageNotADirectoryError, match="afile is a file"):
        ck.convert(source, tmp_path / "afile" / "out", format="safetensors")


def test_cli_converts_to_safetensors(hf_dirs, tmp_path):
    from .contract import run_cli

    root, _ = hf_dirs
    code, text = run_cli(
        "convert",
        str(root / "bins"),
        str(tmp_path / "out"),
        "--to",
        "safetensors",
        "--max-shard-size",
        "30KB",
        "--json",
    )
    assert code == 0, text
    assert json.loads(text)["format"] == "safetensors"
    assert (tmp_path / "out" / "model.safetensors.index.json").exists()
    code, _ = run_cli("convert", str(root / "bins"), str(tmp_path / "x"), "--max-shard-size", "1KB")
    assert code == 2


def test_a_torch_programs_checkpoint_exports_its_model_under_state_dict_names(
    hf_dirs, tmp_path, monkeypatch
):
    root, _ = hf_dirs
    model = _tiny_gpt2()  # trained one step here: the fixture's model stays as saved
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.zeros((1, 4), dtype=torch.long)).logits.sum().backward()
    optimizer.step()  # slots exist: they are not part of the export
    model.zero_grad()
    saved = ck.Checkpoint(model=model, optimizer=optimizer).write(str(tmp_path / "train"))
    out = tmp_path / "exported"
    ck.convert(saved, out, format="safetensors", root="model", max_shard_size="30KB")
    index = json.loads((out / "model.safetensors.index.json").read_text())
    # the tied embedding once, under the name transformers keeps; every other state-dict name
    assert set(index["weight_map"]) == set(model.state_dict()) - {"lm_head.weight"}
    _assert_same_model(_from_pretrained(out, root / "sharded", monkeypatch), model)
    single = tmp_path / "model.safetensors"
    ck.convert(saved, single, format="safetensors", root="model")
    fresh = _tiny_gpt2()
    torch.nn.init.zeros_(fresh.transformer.wte.weight)
    pytest.importorskip("safetensors.torch").load_model(fresh, single)  # strict
    _assert_same_model(fresh, model)
    block = tmp_path / "block.safetensors"
    ck.convert(saved, block, format="safetensors", root="model.transformer.h.0")
    assert set(safetensors_numpy.load_file(block)) == set(model.transformer.h[0].state_dict())


def test_export_root_errors_name_the_path(hf_dirs, tmp_path):
    root, model = hf_dirs
    saved = ck.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    with pytest.raises(ck.UnknownPathError, match=r"no child 'encoder'.*'lm_head', 'transformer'"):
        ck.convert(saved, tmp_path / "a", format="safetensors", root="model.encoder")
    with pytest.raises(ValueError, match="name-based: its keys are names already"):
        ck.convert(root / "single", tmp_path / "b", format="safetensors", root="model")
    with pytest.raises(ValueError, match="format='safetensors' only"):
        ck.convert(saved, tmp_path / "c", root="model")
    assert not any((tmp_path / n).exists() for n in "abc")
    from .contract import run_cli

    code, text = run_cli(
        "convert", saved, str(tmp_path / "d"), "--to", "safetensors", "--root", "model"
    )
    assert code == 0, text
    assert "transformer.wte.weight" in safetensors_numpy.load_file(
        tmp_path / "d" / "model.safetensors"
    )


@pytest.mark.parametrize("name", ["sharded", "single", "bins", "bin"])
def test_a_directory_restores_into_a_torch_model_by_name(hf_dirs, name):
    root, model = hf_dirs
    fresh = _tiny_gpt2()
    with torch.no_grad():
        for parameter in fresh.parameters():
            parameter.zero_()
    status = ck.Checkpoint(root=fresh).restore(root / name)
    status.assert_consumed()  # lm_head.weight, stored once as transformer.wte.weight, is filled
    assert fresh.lm_head.weight is fresh.transformer.wte.weight
    _assert_same_model(fresh, model)
