"""The ``ckptlab`` command line, run as a real subprocess on real checkpoints."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ckptlab as ck
from ckptlab.storage import open_checkpoint, resolve

ANSI = "\x1b["
SCRIPT = Path(sys.executable).with_name("ckptlab")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "ckptlab.cli"]


def cli(*args, env=None):
    """Run ``ckptlab`` with ``args``; output is piped (not a terminal)."""
    full_env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    full_env.update(env or {})
    return subprocess.run(
        [*COMMAND, *map(str, args)], capture_output=True, text=True, env=full_env, timeout=120
    )


def model_checkpoint(directory, saves=1):
    """A model (two Dense layers) and an Adam optimizer saved ``saves`` times with ``save()``."""
    rng = np.random.default_rng(0)
    model = ck.Module()
    model.encoder = ck.layers.Dense(4)
    model.head = ck.layers.Dense(2)
    x = rng.standard_normal((3, 5)).astype("float32")
    model.head(model.encoder(x))
    optimizer = ck.optimizers.Adam(0.1)
    params = [model.encoder.kernel, model.encoder.bias, model.head.kernel, model.head.bias]
    optimizer.apply_gradients([(np.ones(p.shape, "float32"), p) for p in params])
    ckpt = ck.Checkpoint(model=model, optimizer=optimizer)
    paths = [ckpt.save(directory / "ckpt") for _ in range(saves)]
    return ckpt, paths


@pytest.fixture
def saved(tmp_path):
    return model_checkpoint(tmp_path / "run", saves=2)


def stored_document(path):
    return open_checkpoint(*resolve(str(path))).document


# --- ls --------------------------------------------------------------------------------------


def test_ls_prints_the_tree_with_shapes_dtypes_and_sizes(saved):
    _, paths = saved
    done = cli("ls", paths[0])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == paths[0]
    assert "object-based, format" in lines[1]
    assert "(root)" in lines
    assert any("encoder" in line and "Dense" in line for line in lines)
    assert any("kernel" in line and "(5, 4) float32" in line and "80 B" in line for line in lines)
    assert any("save_counter" in line and "() int64" in line for line in lines)
    assert ANSI not in done.stdout  # piped: plain text


def test_ls_of_a_directory_resolves_to_the_latest_checkpoint(saved, tmp_path):
    _, paths = saved
    done = cli("ls", tmp_path / "run")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == paths[1]
    assert f"latest checkpoint of {tmp_path / 'run'}" in done.stdout


def test_ls_json_lists_every_value_like_list_variables(saved):
    _, paths = saved
    done = cli("ls", "--json", paths[1])
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["path"] == paths[1]
    assert data["kind"] == "object"
    listed = [(v["key"], v["shape"]) for v in data["values"]]
    assert listed == [(k, s) for k, s in ck.list_variables(paths[1])]
    assert data["total_bytes"] == sum(v["nbytes"] for v in data["values"])
    names = [c["name"] for c in data["tree"]["children"]]
    assert names == ["model", "optimizer", "save_counter"]


def test_ls_slots_and_keys_modes(saved):
    _, paths = saved
    collapsed = cli("ls", paths[0]).stdout
    assert "model.encoder.kernel" not in collapsed
    assert "optimizer slot, 4 values" in collapsed
    expanded = cli("ls", "--slots", paths[0]).stdout
    assert any(
        "(root).model.encoder.kernel" in line and "(5, 4) float32" in line
        for line in expanded.splitlines()
    )
    keys = cli("ls", "--keys", paths[0]).stdout
    assert "model/encoder/kernel/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE" in keys


def test_ls_marks_shared_objects_and_lists_name_based_checkpoints(tmp_path):
    shared = ck.Variable([1.0, 2.0])
    holder = ck.Module()
    holder.first = shared
    path = ck.Checkpoint(a=holder, b=ck.Module(), z=shared).write(tmp_path / "shared")
    done = cli("ls", path)
    assert done.returncode == 0, done.stderr
    assert (
        "-> (root).a.first (shared object)" in done.stdout
        or "-> (root).z (shared object)" in done.stdout
    )
    name_based = ck.Saver({"layer/w": ck.Variable(np.zeros((2, 3), "float32"))}).save(
        str(tmp_path / "tf1")
    )
    done = cli("ls", name_based)
    assert done.returncode == 0, done.stderr
    assert "name-based" in done.stdout
    assert any("w" in line and "(2, 3) float32" in line for line in done.stdout.splitlines())


# --- colour ----------------------------------------------------------------------------------


def run_in_terminal(args, env_extra=None, status=0):
    """Run ``ckptlab`` with stdout and stderr on a real pseudo-terminal; return the output."""
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env.update({"TERM": "xterm-256color", **(env_extra or {})})
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [*COMMAND, *map(str, args)], stdout=follower, stderr=follower, env=env
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert process.wait(timeout=60) == status
    return b"".join(chunks).decode()


def test_colour_on_a_terminal_plain_with_no_color_or_when_piped(saved):
    _, paths = saved
    assert ANSI in run_in_terminal(["ls", paths[0]])
    assert ANSI not in run_in_terminal(["ls", paths[0]], {"NO_COLOR": "1"})
    assert ANSI not in run_in_terminal(["ls", "--color", "never", paths[0]])
    assert ANSI in cli("ls", "--color", "always", paths[0]).stdout
    assert ANSI not in cli("ls", paths[0]).stdout


def test_color_choice_applies_to_the_error_line(tmp_path):
    missing = tmp_path / "nothing"
    assert cli("ls", "--color", "always", missing).stderr.startswith(f"{ANSI}31mckptlab: error:")
    assert cli("ls", missing).stderr.startswith("ckptlab: error:")  # auto, piped
    on_terminal = run_in_terminal(["ls", missing], status=2)
    assert on_terminal.startswith(f"{ANSI}31mckptlab: error:")  # auto, on a terminal
    plain = run_in_terminal(["ls", "--color", "never", missing], status=2)
    assert plain.startswith("ckptlab: error:")
    assert ANSI not in plain


# --- diff ------------------------------------------------------------------------------------


def test_diff_of_identical_checkpoints_exits_zero(saved):
    _, paths = saved
    done = cli("diff", paths[0], paths[1])
    # save() numbers the counter, so the two saves differ exactly in save_counter
    data = json.loads(cli("diff", "--json", paths[0], paths[1]).stdout)
    assert [d["key"] for d in data["differences"]] == ["save_counter/.ATTRIBUTES/VARIABLE_VALUE"]
    assert done.returncode == 1
    same = cli("diff", paths[0], paths[0])
    assert same.returncode == 0, same.stderr
    assert "identical" in same.stdout


def test_diff_structure_only_never_says_identical(saved, tmp_path):
    """Issue 17 #14: without reading values, equal structure is "same structure"."""
    _, paths = saved  # they differ in save_counter's value only
    done = cli("diff", "--structure-only", paths[0], paths[1])
    assert done.returncode == 0, done.stderr
    last = done.stdout.splitlines()[-1]
    assert last.startswith("same structure: 14 with the same shape and dtype, 0 reshaped")
    assert last.endswith("(values not compared)")
    assert "identical" not in done.stdout
    data = json.loads(cli("diff", "--structure-only", "--json", paths[0], paths[1]).stdout)
    assert (data["equal"], data["values_compared"]) == (True, False)
    other = ck.Checkpoint(v=ck.Variable(1.0)).write(tmp_path / "other")
    differs = cli("diff", "--structure-only", paths[0], other)
    assert differs.returncode == 1
    assert differs.stdout.splitlines()[-1].startswith("structure differs: 0 with the same shape")


def test_diff_reports_added_removed_reshaped_and_changed_values(tmp_path):
    w = np.arange(6.0).reshape(2, 3)
    a = ck.Checkpoint(w=ck.Variable(w), gone=ck.Variable(1), s=ck.Variable(np.zeros(3, "float32")))
    path_a = a.write(tmp_path / "a")
    changed = w.copy()
    changed[1, 2] += 0.25
    b = ck.Checkpoint(
        w=ck.Variable(changed), new=ck.Variable(2.0), s=ck.Variable(np.zeros(4, "float32"))
    )
    path_b = b.write(tmp_path / "b")
    done = cli("diff", "--json", path_a, path_b)
    assert done.returncode == 1
    data = json.loads(done.stdout)
    kinds = {d["key"].split("/")[0]: d for d in data["differences"]}
    assert kinds["gone"]["kind"] == "removed"
    assert kinds["new"]["kind"] == "added"
    assert kinds["s"]["kind"] == "spec"
    assert kinds["s"]["a"]["shape"] == [3]
    assert kinds["s"]["b"]["shape"] == [4]
    assert kinds["w"]["kind"] == "changed"
    assert kinds["w"]["max_abs_diff"] == 0.25
    assert kinds["w"]["differing_elements"] == 1
    text = cli("diff", path_a, path_b).stdout
    assert "max |a-b| = 0.25 (1 of 6 elements differ)" in text
    assert "- gone/.ATTRIBUTES/VARIABLE_VALUE" in text
    assert "+ new/.ATTRIBUTES/VARIABLE_VALUE" in text
    assert "! s/.ATTRIBUTES/VARIABLE_VALUE  (3,) float32 -> (4,) float32" in text
    tolerant = json.loads(cli("diff", "--json", "--atol", "0.5", path_a, path_b).stdout)
    assert "w" not in {d["key"].split("/")[0] for d in tolerant["differences"]}
    structure = json.loads(cli("diff", "--json", "--structure-only", path_a, path_b).stdout)
    assert {d["kind"] for d in structure["differences"]} == {"removed", "added", "spec"}


def test_diff_compares_integers_exactly_and_agrees_with_ck_diff(tmp_path):
    """2**60 and 2**60 + 1 are one float64: the CLI said "identical" (exit 0) where ck.diff
    said changed; both compare through one function now, integers exactly, in batches."""
    big = np.array([2**60, 7, -(2**62)], np.int64)
    path_a = ck.Checkpoint(v=ck.Variable(big), w=ck.Variable(np.arange(3.0))).write(tmp_path / "a")
    moved = big.copy()
    moved[0] += 1
    moved[2] = 2**62
    path_b = ck.Checkpoint(v=ck.Variable(moved), w=ck.Variable(np.arange(3.0))).write(
        tmp_path / "b"
    )
    done = cli("diff", "--json", path_a, path_b)
    assert done.returncode == 1
    (found,) = json.loads(done.stdout)["differences"]
    assert found["key"].startswith("v/") and found["differing_elements"] == 2
    assert found["max_abs_diff"] == float(2**63)
    (entry,) = ck.diff(path_a, path_b).changed
    assert (entry.differing, entry.max_abs_diff) == (2, float(2**63))


def test_diff_treats_matching_nans_as_equal(tmp_path):
    values = np.array([np.nan, 1.0, -0.0])
    path_a = ck.Checkpoint(v=ck.Variable(values)).write(tmp_path / "a")
    path_b = ck.Checkpoint(v=ck.Variable(values.copy())).write(tmp_path / "b")
    assert cli("diff", path_a, path_b).returncode == 0


# --- verify ----------------------------------------------------------------------------------


def flip_byte(path, offset=0):
    data = bytearray(Path(path).read_bytes())
    data[offset] ^= 0xFF
    Path(path).write_bytes(bytes(data))


def test_verify_an_intact_checkpoint(saved):
    _, paths = saved
    done = cli("verify", paths[1])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"OK {paths[1]}: ")
    data = json.loads(cli("verify", "--json", paths[1]).stdout)
    assert data["ok"] is True
    assert data["checkpoints"][0]["values_checked"] == len(ck.list_variables(paths[1]))


def test_verify_finds_every_corrupted_value(tmp_path):
    big = np.arange(400_000, dtype="float32")  # 1.6 MB, in data/float32
    small = np.arange(10, dtype="float64")  # in data/float64
    path = ck.Checkpoint(
        big=ck.Variable(big), small=ck.Variable(small), ok=ck.Variable(np.ones(3, "int32"))
    ).write(tmp_path / "c")
    document = stored_document(path)
    big_value = document.values["big/.ATTRIBUTES/VARIABLE_VALUE"]
    small_value = document.values["small/.ATTRIBUTES/VARIABLE_VALUE"]
    flip_byte(Path(path) / big_value.array / "0", offset=big_value.offset * 4 + 1000)
    flip_byte(Path(path) / small_value.array / "0", offset=small_value.offset * 8 + 3)
    done = cli("verify", path)
    assert done.returncode == 1
    assert "DAMAGED big/.ATTRIBUTES/VARIABLE_VALUE" in done.stdout
    assert "DAMAGED small/.ATTRIBUTES/VARIABLE_VALUE" in done.stdout
    assert "ok/.ATTRIBUTES" not in done.stdout
    assert "FAILED" in done.stdout
    assert "2 damaged values" in done.stdout
    assert "PROBLEM data/float32/0: checksum mismatch" in done.stdout  # the file, too
    data = json.loads(cli("verify", "--json", path).stdout)
    assert data["ok"] is False
    assert sorted(d["key"] for d in data["checkpoints"][0]["damaged"]) == [
        "big/.ATTRIBUTES/VARIABLE_VALUE",
        "small/.ATTRIBUTES/VARIABLE_VALUE",
    ]


def test_verify_truncated_chunk_and_all_checkpoints_of_a_directory(saved, tmp_path):
    _, paths = saved
    chunk = next(p for p in sorted(Path(paths[0]).rglob("*")) if p.is_file() and p.name == "0")
    chunk.write_bytes(chunk.read_bytes()[:-7])
    # save() lists only the newest checkpoint in the state file; a manager lists every kept one
    (tmp_path / "run" / "checkpoint").write_text(
        'model_checkpoint_path: "ckpt-2"\nall_model_checkpoint_paths: "ckpt-1"\n'
        'all_model_checkpoint_paths: "ckpt-2"\n'
    )
    assert cli("verify", tmp_path / "run").returncode == 0  # the latest (ckpt-2) is intact
    done = cli("verify", "--all", "--json", tmp_path / "run")
    assert done.returncode == 1
    results = {c["path"]: c["ok"] for c in json.loads(done.stdout)["checkpoints"]}
    assert results == {paths[0]: False, paths[1]: True}


def test_verify_all_checks_every_checkpoint_the_directory_holds(saved, tmp_path):
    """Issue 17 #14: save() lists only its newest checkpoint, yet ``--all`` checks them all;
    a checkpoint the state file lists that is gone fails the run."""
    _, paths = saved
    assert ck.latest_checkpoint(tmp_path / "run") == paths[1]
    done = cli("verify", "--all", tmp_path / "run")
    assert done.returncode == 0, done.stderr
    assert [line.split(":")[0] for line in done.stdout.splitlines()] == [
        f"OK {paths[0]}",
        f"OK {paths[1]}",
    ]
    (tmp_path / "run" / "checkpoint").write_text(
        'model_checkpoint_path: "ckpt-2"\nall_model_checkpoint_paths: "ckpt-10"\n'
        'all_model_checkpoint_paths: "ckpt-2"\n'
    )
    done = cli("verify", "--all", "--json", tmp_path / "run")
    assert done.returncode == 1
    checked = json.loads(done.stdout)["checkpoints"]
    assert [(c["path"], c["ok"]) for c in checked] == [
        (paths[0], True),
        (paths[1], True),
        (str(tmp_path / "run" / "ckpt-10"), False),
    ]
    assert checked[2]["problems"][0].startswith("listed but missing: ")


def test_verify_all_reports_a_damaged_document_or_state_file_and_checks_the_others(saved, tmp_path):
    """A checkpoint whose document is damaged stopped ``--all`` with one error line: the intact
    ones got no report, and ``--json`` printed nothing.  A damaged state file stopped it too."""
    _, paths = saved
    (Path(paths[0]) / "zarr.json").write_bytes(b"")
    done = cli("verify", "--all", tmp_path / "run")
    assert done.returncode == 1 and done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"PROBLEM {paths[0]}/zarr.json is not valid JSON")
    assert lines[1].startswith(f"FAILED {paths[0]}: 0 damaged values, 1 problems in files")
    assert lines[2].startswith(f"OK {paths[1]}: ")
    (tmp_path / "run" / "checkpoint").write_text("garbage\n")
    done = cli("verify", "--all", "--json", tmp_path / "run")
    assert done.returncode == 1
    data = json.loads(done.stdout)
    assert data["ok"] is False
    (problem,) = data["problems"]
    assert problem.startswith("state file not read, checkpoints found by listing: ")
    assert str(tmp_path / "run" / "checkpoint") in problem
    assert [(c["path"], c["ok"]) for c in data["checkpoints"]] == [
        (paths[0], False),
        (paths[1], True),
    ]
    assert "is not valid JSON" in data["checkpoints"][0]["problems"][0]


def test_verify_all_reads_listed_names_inside_the_directory_as_given(
    saved, tmp_path, monkeypatch, capsys
):
    """A relative name the state file lists is read inside the directory as the user gave it
    (a missing one is reported as ``run/ckpt-10``), an absolute one where it is."""
    from ckptlab.cli import main

    _, paths = saved
    elsewhere = ck.Checkpoint(v=ck.Variable(1.0)).write(tmp_path / "elsewhere" / "c")
    (tmp_path / "run" / "checkpoint").write_text(
        f'model_checkpoint_path: "ckpt-2"\nall_model_checkpoint_paths: "{elsewhere}"\n'
        'all_model_checkpoint_paths: "ckpt-10"\nall_model_checkpoint_paths: "ckpt-2"\n'
    )
    monkeypatch.chdir(tmp_path)
    assert main(["verify", "--all", "--json", "run/"]) == 1
    checked = json.loads(capsys.readouterr().out)["checkpoints"]
    assert [(c["path"], c["ok"]) for c in checked] == [
        (elsewhere, True),
        (paths[0], True),
        (paths[1], True),
        ("run/ckpt-10", False),
    ]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_verify_names_the_values_of_a_missing_shard(where, tmp_path, request, monkeypatch, capsys):
    """The problem "data/float32: 1 of 5 shards missing" named no value ("0 damaged values",
    an empty --json list): the array's own path did not match the prefix "data/float32/".
    Every value stored (even in part) in the missing shard is named, and only those."""
    from ckptlab.cli import main
    from ckptlab.storage import _layout

    monkeypatch.setattr(_layout, "INNER_BYTES", 400)  # 880 floats: 5 shards of 2 inner chunks
    monkeypatch.setattr(_layout, "LOCAL_SHARD_BYTES", 800)
    monkeypatch.setattr(_layout, "REMOTE_SHARD_BYTES", 800)
    variables = {f"v{i}": ck.Variable(np.arange(110, dtype="float32") + i) for i in range(8)}
    base = str(tmp_path) if where == "local" else request.getfixturevalue("s3_prefix")
    path = ck.Checkpoint(**variables, other=ck.Variable(np.arange(3))).write(
        f"{base}/c", options=ck.WriteOptions(progress=False, durable=False)
    )
    table = stored_document(path).values
    number = [info.path for info in table.arrays].index("data/float32")
    shard = table.arrays[number].shard * 4
    starts, sizes = table.byte_extents()
    expected = sorted(
        table.keys_[row]
        for row, array in enumerate(table.array_ids)
        if array == number and starts[row] < 2 * shard and starts[row] + sizes[row] > shard
    )
    assert len(expected) == 3  # two of them only in part
    store, key = resolve(path)
    store.delete_tree(f"{key}/data/float32/1")
    assert main(["verify", "--json", path]) == 1
    report = json.loads(capsys.readouterr().out)["checkpoints"][0]
    assert report["problems"] == ["data/float32: 1 of 5 shards missing (data/float32/1, ...)"]
    assert sorted(d["key"] for d in report["damaged"]) == expected
    assert all("data/float32/1 is missing" in d["error"] for d in report["damaged"])
    assert main(["verify", path, "--color", "never"]) == 1
    text = capsys.readouterr().out
    assert f"{len(expected)} damaged values, 1 problems in files" in text
    assert [line for line in text.splitlines() if line.startswith("DAMAGED")] == [
        f"DAMAGED {k}" for k in expected
    ]


def test_verify_checks_what_plain_zarr_readers_need(tmp_path):
    path = ck.Checkpoint(v=ck.Variable(np.arange(4.0))).write(tmp_path / "c")
    (Path(path) / "data" / "float64" / "zarr.json").unlink()
    assert ck.load_checkpoint(path).get_tensor("v/.ATTRIBUTES/VARIABLE_VALUE")[3] == 3.0
    done = cli("verify", "--json", path)
    assert done.returncode == 1
    result = json.loads(done.stdout)["checkpoints"][0]
    assert result["damaged"] == []
    assert any(p.startswith("data/float64/zarr.json: missing") for p in result["problems"])


def assert_one_error_line(done, *fragments):
    assert done.stdout == ""
    assert done.stderr.startswith("ckptlab: error: ")
    assert done.stderr.count("\n") == 1, done.stderr  # one line, no traceback
    for fragment in fragments:
        assert fragment in done.stderr


@pytest.mark.parametrize(
    "command", [["ls"], ["diff", "{ok}"], ["diff", "{damaged}", "{ok}"], ["export"], ["verify"]]
)
def test_a_damaged_document_exits_one_with_one_error_line(saved, command):
    """docs/cli.md: a checkpoint that cannot be read (a damaged document) exits 1."""
    _, paths = saved
    damaged = Path(paths[0]) / "zarr.json"
    damaged.write_text('{"zarr_format": 3, "node_type": "gr')
    args = [a.format(ok=paths[1], damaged=paths[0]) for a in command]
    done = cli(*args, paths[0]) if "{damaged}" not in command else cli(*args)
    assert done.returncode == 1
    assert_one_error_line(done, str(damaged), "not valid JSON", "restore from another checkpoint")


def test_diff_of_a_checkpoint_with_a_flipped_chunk_exits_one(tmp_path):
    big = np.arange(400_000, dtype="float32")  # in data/float32/0
    a = ck.Checkpoint(big=ck.Variable(big)).write(tmp_path / "a")
    b = ck.Checkpoint(big=ck.Variable(big)).write(tmp_path / "b")
    assert cli("diff", a, b).returncode == 0
    flip_byte(Path(b) / "data" / "float32" / "0", offset=1000)
    for args in ([a, b], [b, a]):
        done = cli("diff", *args)
        assert done.returncode == 1
        assert_one_error_line(
            done, "big/.ATTRIBUTES/VARIABLE_VALUE", b, "checksum mismatch in data/float32/0"
        )
    assert cli("diff", "--structure-only", a, b).returncode == 0  # reads no values


# --- missing paths and usage ----------------------------------------------------------------


@pytest.mark.parametrize("command", [["ls"], ["verify"], ["export"], ["diff", "{ok}"]])
def test_missing_path_exits_two_with_a_hint(saved, tmp_path, command):
    _, paths = saved
    missing = tmp_path / "run" / "ckpt"  # forgot the -N suffix
    args = [a.format(ok=paths[0]) for a in command]
    done = cli(*args, missing)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("ckptlab: error: ")
    assert str(missing) in done.stderr
    assert "ckpt-1" in done.stderr  # the hint names the numbered checkpoints next to it


def test_verify_all_on_a_trainer_output_names_its_checkpoint_folders(tmp_path):
    """output/checkpoint-N/model.safetensors: --all finds no ckptlab checkpoint; the error says
    which folders hold checkpoints instead of 'pass the path that save() returned'."""
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    for step in (2, 4, 6):
        (tmp_path / "output" / f"checkpoint-{step}").mkdir(parents=True)
        weights = {"w": np.full(2, float(step), "float32")}
        safetensors_numpy.save_file(
            weights, str(tmp_path / "output" / f"checkpoint-{step}" / "model.safetensors")
        )
    done = cli("verify", "--all", tmp_path / "output")
    assert done.returncode == 2
    assert "holds 3 checkpoints in folders: checkpoint-2, checkpoint-4, checkpoint-6" in done.stderr
    assert str(tmp_path / "output" / "checkpoint-6") in done.stderr


def test_a_directory_whose_latest_is_missing_gives_just_the_error_line(tmp_path):
    """The state file names a deleted checkpoint: one error line naming it (it used to be
    preceded by the log line "Couldn't match files for checkpoint ...")."""
    path = ck.Checkpoint(v=ck.Variable(1.0)).save(tmp_path / "ckpt")
    shutil.rmtree(path)
    done = cli("ls", tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        f"ckptlab: error: {tmp_path} is a checkpoint directory whose state file names {path} "
        "as the latest checkpoint, but it is missing or incomplete (deleted, or its save was "
        "interrupted). Pass a checkpoint path (one the state file lists, or another one), or "
        "save one first.\n"
    )


def test_usage_errors_and_help():
    assert cli().returncode == 2
    assert cli("ls").returncode == 2
    assert cli("frobnicate", "x").returncode == 2
    helped = cli("--help")
    assert helped.returncode == 0
    assert "exit status:" in helped.stdout
    assert "NO_COLOR" in helped.stdout
    for command in ("ls", "diff", "verify", "export"):
        assert cli(command, "--help").returncode == 0
    assert cli("--version").stdout.startswith("ckptlab ")


@pytest.mark.parametrize("command", [["ls"], ["verify"], ["export"], ["diff", "{ok}"]])
def test_a_file_that_is_not_a_checkpoint_exits_two(saved, tmp_path, command):
    """Issue 17 #14: docs/cli.md says 2 for "a path that ... is not a checkpoint"."""
    _, paths = saved
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    done = cli(*[a.format(ok=paths[0]) for a in command], notes)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith(f"ckptlab: error: {notes} is a file, but not a checkpoint")


HEAVY = ("numpy", "zarr", "ml_dtypes", "fsspec", "crc32c", "orjson", "tqdm", "ckptlab.storage")


@pytest.mark.parametrize(
    "program",
    [["-m", "ckptlab.cli", "--version"], ["-m", "ckptlab", "--version"], ["-c", "import ckptlab"]],
)
def test_version_and_import_load_no_heavy_module(program):
    """Issue 17 #14: ``ckptlab --version`` took 1.5 s importing ml_dtypes, zarr and numpy."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *program],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert "ckptlab" in imported
    heavy = sorted(m for m in imported if m.split(".")[0] in HEAVY or m in HEAVY)
    assert heavy == []
    if "--version" in program:
        assert done.stdout == f"ckptlab {ck.__version__}\n"


# --- export ----------------------------------------------------------------------------------


def test_export_json_holds_nodes_and_edges(saved):
    _, paths = saved
    done = cli("export", paths[0], "--format", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["format"] == "ckptlab.graph"
    graph = ck.load_checkpoint(paths[0]).object_graph
    assert len(data["nodes"]) == len(graph.nodes)
    child_edges = {
        (e["source"], e["name"], e["target"]) for e in data["edges"] if e["kind"] == "child"
    }
    assert (0, "model", graph.nodes[0].children["model"]) in child_edges
    slots = [e for e in data["edges"] if e["kind"] == "slot"]
    assert len(slots) == 8  # m and v for four variables
    kernel = next(n for n in data["nodes"] if n["path"] == "(root).model.encoder.kernel")
    assert kernel["values"][0]["shape"] == [5, 4]


def hostile_checkpoint(tmp_path):
    module = ck.Module()
    setattr(module, 'a"b\\c', ck.Variable([1.0]))
    setattr(module, "<img src=x onerror=alert(1)>", ck.Variable([2.0]))
    setattr(module, 'new\nline"]; n0 -> n0 [label="injected', ck.Variable([3.0]))
    return ck.Checkpoint(evil=module).write(tmp_path / "hostile")


def test_export_dot_escapes_names(tmp_path):
    path = hostile_checkpoint(tmp_path)
    output = tmp_path / "graph.dot"
    done = cli("export", path, "--format", "dot", "-o", output)
    assert done.returncode == 0, done.stderr
    dot = output.read_text()
    assert dot.startswith("digraph checkpoint {")
    assert 'label="a\\"b\\\\c\\n(1,) float64"' in dot
    assert 'label="injected' not in dot  # a name cannot close the label and add edges
    assert "new line" in dot
    if shutil.which("dot"):
        svg = subprocess.run(
            ["dot", "-Tsvg"], input=dot, capture_output=True, text=True, check=True
        )
        assert ">a&quot;b\\c</text>" in svg.stdout


def test_export_svg_without_graphviz_says_what_to_install(saved, tmp_path):
    _, paths = saved
    bare = tmp_path / "bin"
    bare.mkdir()
    done = cli("export", paths[0], "--format", "svg", env={"PATH": str(bare)})
    assert done.returncode == 3
    assert "Graphviz's 'dot' program, which is not installed" in done.stderr
    assert "apt-get install graphviz" in done.stderr


def test_export_svg_when_dot_fails_exits_one(saved, tmp_path):
    _, paths = saved
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "dot").write_text(
        '#!/bin/sh\necho "Error: <stdin>: syntax error in line 1" >&2\nexit 1\n'
    )
    (fake / "dot").chmod(0o755)
    done = cli("export", paths[0], "--format", "svg", env={"PATH": str(fake)})
    assert done.returncode == 1  # installed but failing: not "install Graphviz" (3)
    assert_one_error_line(done, "Graphviz's dot", "syntax error in line 1", "--format dot")
    assert "not installed" not in done.stderr


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_export_svg_with_graphviz(tmp_path):
    path = hostile_checkpoint(tmp_path)
    done = cli("export", path, "--format", "svg")
    assert done.returncode == 0, done.stderr
    assert "<svg" in done.stdout
    assert "<img" not in done.stdout  # the hostile name is escaped text, not markup
    assert "&lt;img src=x onerror=alert(1)&gt;" in done.stdout


# --- convert ---------------------------------------------------------------------------------

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "foreign"


def test_convert_with_renames_and_transposes(tmp_path):
    kernel = np.arange(6.0).reshape(2, 3)
    source = ck.Saver(
        {"fc1.weight": ck.Variable(kernel), "fc1.bias": ck.Variable(np.ones(2))}
    ).save(str(tmp_path / "named"))
    target = tmp_path / "converted"
    done = cli(
        "convert",
        source,
        target,
        "--rename",
        r"\.weight$=/kernel",
        "--rename",
        r"\.bias$=/bias",
        "--transpose",
        "kernel$",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["num_values"] == 2
    reader = ck.load_checkpoint(target)
    np.testing.assert_array_equal(reader.get_tensor("fc1/kernel"), kernel.T)
    again = cli("convert", source, target)
    assert again.returncode == 2
    assert "--overwrite" in again.stderr
    assert cli("convert", source, target, "--overwrite").returncode == 0
    assert cli("convert", source, tmp_path / "x", "--rename", "no-equals-sign").returncode == 2


def test_convert_a_torch_state_dict_and_read_tensorflow_directly(tmp_path):
    target = tmp_path / "from_torch"
    done = cli("convert", FIXTURES / "torch" / "state_dict.pt", target)
    assert done.returncode == 0, done.stderr
    assert "name-based, 10 values" in done.stdout
    assert cli("verify", target).returncode == 0
    listed = cli("ls", FIXTURES / "tf2_keras_adam" / "ckpt")
    assert listed.returncode == 0, listed.stderr
    assert "TensorFlow 2 object-based checkpoint" in listed.stdout
    assert "-> (root).model.layer_with_weights-0 (shared object)" in listed.stdout


def test_a_closed_pipe_ends_quietly(tmp_path):
    many = ck.Module()
    many.values = [ck.Variable(np.full(2, i, "float32")) for i in range(3000)]
    path = ck.Checkpoint(m=many).write(tmp_path / "many")
    process = subprocess.Popen(
        [*COMMAND, "ls", "--keys", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    first = process.stdout.readline()
    process.stdout.close()  # like `| head -1`
    _, errors = process.communicate(timeout=60)
    assert first.strip() == path.encode()
    assert process.returncode == 0
    assert b"Traceback" not in errors
    assert b"BrokenPipeError" not in errors


@pytest.mark.parametrize(
    "options",
    [["--rename", "(=x"], ["--rename", r"v=\9"], ["--transpose", "["]],
    ids=["pattern", "group reference", "transpose"],
)
def test_convert_refuses_a_rule_that_is_not_a_regular_expression(tmp_path, options):
    source = ck.Saver({"v": ck.Variable(np.ones(2))}).save(str(tmp_path / "named"))
    done = cli("convert", source, tmp_path / "out", *options)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("ckptlab: error: KeyMap rule") and "regular expression" in line
    assert not (tmp_path / "out").exists()


def test_convert_to_safetensors_onto_an_existing_destination_never_suggests_overwrite(tmp_path):
    """It said "pass --overwrite to replace it", and with --overwrite "remove it first": a
    safetensors destination must be new, and both messages now say so."""
    source = ck.Saver({"v": ck.Variable(np.ones(2))}).save(str(tmp_path / "named"))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "config.json").write_text("{}")
    lines = []
    for extra in ([], ["--overwrite"]):
        done = cli("convert", source, tmp_path / "out", "--to", "safetensors", *extra)
        assert done.returncode == 2
        (line,) = done.stderr.strip().splitlines()
        lines.append(line)
    assert lines[0] == lines[1]
    assert "remove it first or choose another DST" in lines[0]
    assert "pass --overwrite" not in lines[0]
    assert os.listdir(tmp_path / "out") == ["config.json"]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_convert_refuses_an_existing_destination_on_every_store(where, tmp_path, request, capsys):
    """The check used os.path.lexists, False for every URL: an S3 checkpoint was replaced
    without --overwrite (exit 0), and --to safetensors onto it exited 1.  Whatever is at DST
    and not a ckptlab checkpoint, --overwrite included, is a usage error (exit 2): that was 1."""
    from ckptlab.cli import main

    a = ck.Checkpoint(a=ck.Variable(np.arange(5.0))).write(tmp_path / "a")
    b = ck.Checkpoint(b=ck.Variable(np.arange(7))).write(tmp_path / "b")
    base = str(tmp_path) if where == "local" else request.getfixturevalue("s3_prefix")
    dst, other = f"{base}/ck", f"{base}/other"

    def run(*args):
        code = main(["convert", *args, "--color", "never"])
        return code, capsys.readouterr().err

    assert run(a, dst)[0] == 0
    code, err = run(b, dst)
    assert (code, err) == (
        2,
        f"ckptlab: error: {dst} already exists; pass --overwrite to replace it\n",
    )
    code, err = run(b, dst, "--to", "safetensors")
    assert code == 2 and "remove it first or choose another DST" in err
    assert [k for k, _ in ck.list_variables(dst)] == ["a/.ATTRIBUTES/VARIABLE_VALUE"]
    assert run(b, dst, "--overwrite")[0] == 0
    assert [k for k, _ in ck.list_variables(dst)] == ["b/.ATTRIBUTES/VARIABLE_VALUE"]
    store, key = resolve(other)
    store.write(f"{key}/config.json", [b"{}"], durable=False)  # a folder ckptlab did not write
    code, err = run(b, other, "--overwrite")
    assert code == 2 and "which ckptlab did not write" in err
    assert store.list_dir(key) == ["config.json"]


def test_ctrl_c_during_convert_is_one_line_and_exit_130(tmp_path, monkeypatch, capsys):
    """It printed a KeyboardInterrupt traceback. Interrupted while writing (here: in-process,
    the interrupt raised where the values are written), the output is not published."""
    from ckptlab.cli import main
    from ckptlab.storage import _writer

    source = ck.Saver({"v": ck.Variable(np.ones(2))}).save(str(tmp_path / "named"))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_writer, "_write_data", interrupted)
    assert main(["convert", source, str(tmp_path / "out"), "--color", "never"]) == 130
    assert capsys.readouterr().err == "ckptlab: error: interrupted\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["named"]


def test_a_wrong_argument_is_a_usage_error(tmp_path):
    """ck.InvalidArgumentError (here from ck.convert's check of the size) exits 2, as argparse's
    own usage errors do, with one error line."""
    source = ck.Saver({"v": ck.Variable(np.ones(2))}).save(str(tmp_path / "named"))
    done = cli("convert", source, tmp_path / "out", "--to", "safetensors", "--max-shard-size", "x")
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line == (
        "ckptlab: error: max_shard_size must be at least one byte, as an int or a string such "
        "as '5GB' or '500MiB'; got 'x'."
    )
    assert not (tmp_path / "out").exists()


def test_export_to_a_place_it_cannot_write_is_a_usage_error(tmp_path):
    _, (path,) = model_checkpoint(tmp_path)
    for target in (tmp_path, tmp_path / "no" / "such" / "g.json"):
        done = cli("export", "--format", "json", "-o", target, path)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith(f"ckptlab: error: cannot write {target}")


def test_a_path_that_is_neither_file_nor_directory_says_so(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for path in (fifo, "/dev/null"):
        done = cli("ls", path)
        assert done.returncode == 2
        (line,) = done.stderr.strip().splitlines()
        assert line == (
            f"ckptlab: error: {path} is neither a file nor a directory (a device, a pipe or a "
            "socket). Pass a checkpoint: the path that save() or write() returned, or a "
            "checkpoint file."
        )
