"""The state file's text format (docs/semantics.md S26-S27)."""

import math

import pytest

from ckptlab.core import CheckpointState, format_state, parse_state
from ckptlab.errors import CorruptCheckpointError


def test_round_trip_with_manager_fields():
    state = CheckpointState(
        latest="ckpt-2", all_paths=("ckpt-1", "ckpt-2"), timestamps=(1.5, 2.25), last_preserved=0.5
    )
    assert parse_state(format_state(state), "dir/checkpoint") == state


def test_tensorflow_written_file_parses():
    text = (
        'model_checkpoint_path: "ckpt-4"\n'
        'all_model_checkpoint_paths: "ckpt-3"\n'
        'all_model_checkpoint_paths: "ckpt-4"\n'
        "all_model_checkpoint_timestamps: 1700000000.123\n"
        "all_model_checkpoint_timestamps: 1700000001\n"
        "last_preserved_timestamp: 1699999999.0\n"
    )
    state = parse_state(text, "x")
    assert state.all_paths == ("ckpt-3", "ckpt-4") and state.timestamps[1] == 1700000001.0


@pytest.mark.parametrize(
    ("written", "path"),
    [
        (r'"bob\'s run-1"', "bob's run-1"),  # what TensorFlow writes for prefix "bob's run"
        ("'ckpt-1'", "ckpt-1"),
        (r'"ck\x2d1"', "ck-1"),
        (r'"mod\303\250le-1"', "modèle-1"),  # TensorFlow: UTF-8 bytes as octal escapes
        (r'"mod\u00e8le-1"', "modèle-1"),  # ckptlab: a JSON string
        (r'"tab\there" "-1"', "tab\there-1"),
        ('"run😀-1"', "run😀-1"),  # TensorFlow 2.21 writes non-ASCII as it is (UTF-8)
    ],
)
def test_text_format_strings_as_tensorflow_writes_them(written, path):
    text = f"model_checkpoint_path: {written}\nall_model_checkpoint_paths: {written}\n"
    assert parse_state(text, "x") == CheckpointState(latest=path, all_paths=(path,))
    assert parse_state(format_state(CheckpointState(latest=path)), "x").latest == path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('model_checkpoint_path: "ckpt-1"  # resumed from here\n', ("ckpt-1", (), ())),
        # text_format.MessageToString(state, as_one_line=True)
        (
            'model_checkpoint_path: "ckpt-1" all_model_checkpoint_paths: "ckpt-1"',
            ("ckpt-1", ("ckpt-1",), ()),
        ),
        (
            'model_checkpoint_path: "ckpt-1";\nall_model_checkpoint_paths: "ckpt-1",\n',
            ("ckpt-1", ("ckpt-1",), ()),
        ),
        (
            'model_checkpoint_path:"ckpt-1"all_model_checkpoint_paths:"ckpt-1"',
            ("ckpt-1", ("ckpt-1",), ()),
        ),
        (
            'model_checkpoint_path: "b"\nall_model_checkpoint_paths: ["a", "b"]\n'
            "all_model_checkpoint_paths: 'c' all_model_checkpoint_paths: []",
            ("b", ("a", "b", "c"), ()),
        ),
        (
            'model_checkpoint_path: "a"\nall_model_checkpoint_paths: [ # first\n  "a" # kept\n]\n'
            "all_model_checkpoint_timestamps: [1700000000, 1.5e9, 2.5f, .5, 1.]",
            ("a", ("a",), (1700000000.0, 1.5e9, 2.5, 0.5, 1.0)),
        ),
        (
            'model_checkpoint_path: "nope-9"\r\nmodel_checkpoint_path: "ckpt-1"\r\n',
            ("ckpt-1", (), ()),
        ),
        ('\tmodel_checkpoint_path\f:\v"ckpt" # part\n "-1"', ("ckpt-1", (), ())),
        (
            'model_checkpoint_path: "a" all_model_checkpoint_timestamps: [-\n 2.0, -Inf, INFINITY]',
            ("a", (), (-2.0, -math.inf, math.inf)),
        ),
    ],
)
def test_valid_text_format_parses(text, expected):
    # tf.train.latest_checkpoint reads every one of these (protobuf's text_format.Merge)
    state = parse_state(text, "x")
    assert (state.latest, state.all_paths, state.timestamps) == expected


def test_nan_and_the_last_preserved_time():
    state = parse_state('model_checkpoint_path: "a"\nlast_preserved_timestamp: nan;', "x")
    assert math.isnan(state.last_preserved or 0.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Invalid checkpoint state loaded from dir/checkpoint"),
        ('model_checkpoint_path: "a\n', "does not parse at line 1"),
        ('model_checkpoint_path: "a" b\n', "does not parse at line 1"),
        ('model_checkpoint_path: "\\400"\n', "does not parse at line 1"),
        ('model_checkpoint_path: "\\q"\n', "does not parse at line 1"),
        ('model_checkpoint_path: "\\377"\n', "does not parse at line 1"),  # not UTF-8
        ('all_model_checkpoint_paths: "a"\n', "no model_checkpoint_path"),
        ("model_checkpoint_path: ckpt-1\n", "does not parse at line 1"),
        ("unknown_field: 1\n", "does not parse at line 1"),
        (
            'model_checkpoint_path: "a"\n  extra: 1\n',
            r"line 2, column 3 .*: expected a field of CheckpointState",
        ),
        ('model_checkpoint_path: ""\n', "no model_checkpoint_path"),  # proto3: "" is unset
        ('model_checkpoint_path: ["a"]\n', "expected a quoted string, found '\\['"),
        (
            'model_checkpoint_path: "a" all_model_checkpoint_paths: ["a",]',
            r"column 61 .*expected a quoted string, found '\]'",
        ),
        ('model_checkpoint_path: "a";;\n', "column 28"),
        ('model_checkpoint_path "a"\n', "expected ':'"),
        ('model_checkpoint_path: "a" last_preserved_timestamp: 0x10\n', "expected a number"),
        ('model_checkpoint_path: "a" last_preserved_timestamp: 010\n', "expected a number"),
        ('model_checkpoint_path: "a" last_preserved_timestamp: 10bar\n', "expected a number"),
        ('model_checkpoint_path: "a" last_preserved_timestamp: "1"\n', "expected a number"),
        ('model_checkpoint_path: "a" last_preserved_timestamp: [1]\n', "expected a number"),
        ('model_checkpoint_path: "a" [ext]: 1\n', "expected a field of CheckpointState"),
        ('model_checkpoint_path: "a"\nall_model_checkpoint_timestamps: soon\n', "line 2"),
        ('model_checkpoint_path: "' + "a" * 70_000 + '"\n', "does not parse at line 1"),
    ],
)
def test_bad_files_name_the_file_and_line(text, message):
    with pytest.raises(CorruptCheckpointError, match=message):
        parse_state(text, "dir/checkpoint")
