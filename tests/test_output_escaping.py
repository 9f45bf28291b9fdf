"""Names from checkpoints never reach a terminal raw (issue 17, item 7).

A key holding ``ESC ]0;title BEL`` retitles the terminal, ``ESC [2J`` clears it, an OSC-8
sequence plants a link, and a newline forges an output line.  Every text output of the CLI,
the explorer's ``text/plain``, assertion messages and the unused-value warning escape them.
"""

from __future__ import annotations

import gc
import logging

import numpy as np
import pytest
import torch

import ckptlab as ck
from ckptlab.cli import main

HOSTILE = {
    "title": "\x1b]0;pwned\x07",
    "clear": "\x1b[2J",
    "link": "\x1b]8;;https://example.invalid\x1b\\click\x1b]8;;\x1b\\",
    "forged": "a\nOK everything is fine",
    "bidi": "w\u202egnp.exe",
}
CONTROL = [chr(c) for c in range(32) if chr(c) != "\n"] + ["\x7f", "\u202e"]


def assert_escaped(text: str) -> None:
    assert not any(c in text for c in CONTROL), repr(text)
    assert not any(line.startswith("OK everything") for line in text.splitlines()), text


@pytest.fixture
def torch_files(tmp_path):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save({name: torch.ones(2) for name in HOSTILE.values()}, a)
    torch.save({name: torch.zeros(3) for name in HOSTILE.values()}, b)
    return a, b


@pytest.fixture
def own_checkpoint(tmp_path):
    checkpoint = ck.Checkpoint(**{name: ck.Variable(np.ones(2)) for name in HOSTILE.values()})
    return checkpoint.write(str(tmp_path / "own"))


@pytest.mark.parametrize(
    "args",
    [
        ["ls"],
        ["ls", "--keys"],
        ["ls", "--slots"],
        ["verify"],
        ["diff"],
        ["diff", "--structure-only"],
    ],
)
@pytest.mark.parametrize("color", ["never", "always"])
def test_the_cli_escapes_names(torch_files, own_checkpoint, capsys, args, color):
    for target in (str(torch_files[0]), own_checkpoint):
        paths = [target, str(torch_files[1])] if args[0] == "diff" else [target]
        main([*args, f"--color={color}", *paths])
        captured = capsys.readouterr()
        text = captured.out + captured.err
        if color == "always":  # ckptlab's own styles are the only escape sequences left
            import re

            text = re.sub(r"\x1b\[[0-9;]*m", "", text)
        assert_escaped(text)
        assert "\\x1b]0;pwned\\x07" in text or args == ["verify"]


def test_verify_escapes_damaged_keys(tmp_path, capsys):
    import struct
    import zipfile

    path = tmp_path / "damaged.pt"
    torch.save({HOSTILE["forged"]: torch.ones(4)}, path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith("data/0"))
    name_length, extra_length = struct.unpack_from("<HH", data, info.header_offset + 26)
    data[info.header_offset + 30 + name_length + extra_length] ^= 0x01
    path.write_bytes(bytes(data))
    assert main(["verify", str(path)]) == 1
    out = capsys.readouterr().out
    assert "DAMAGED a\\nOK everything is fine" in out
    assert_escaped(out)


def test_error_messages_are_escaped(tmp_path, capsys):
    missing = tmp_path / "\x1b]0;pwned\x07"
    assert main(["ls", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "\\x1b]0;pwned\\x07" in err
    assert_escaped(err)


def test_the_explorer_text_is_escaped(torch_files, own_checkpoint):
    pytest.importorskip("anywidget")
    for target in (torch_files[0], own_checkpoint):
        widget = ck.explore(target)
        assert_escaped(repr(widget))
        assert_escaped(widget._repr_mimebundle_()[0]["text/plain"])
    program = ck.Checkpoint(other=ck.Variable(np.ones(2)))
    widget = ck.explore(own_checkpoint, program=program)
    text = widget._repr_mimebundle_()[0]["text/plain"]
    assert "\\x1b[2J" in text
    assert_escaped(text)


def test_assertion_messages_and_reports_are_escaped(own_checkpoint):
    status = ck.Checkpoint(other=ck.Variable(np.ones(2))).read(own_checkpoint)
    with pytest.raises(AssertionError) as caught:
        status.assert_consumed()
    assert "\\x1b[2J" in str(caught.value)
    assert_escaped(str(caught.value))
    assert_escaped(str(status.report()))
    status.expect_partial()


def test_the_unused_value_warning_is_escaped(own_checkpoint, ck_log):
    status = ck.Checkpoint(other=ck.Variable(np.ones(2))).read(own_checkpoint)
    del status
    gc.collect()
    messages = [r.getMessage() for r in ck_log.records if r.levelno == logging.WARNING]
    assert any("\\x1b]0;pwned\\x07" in m for m in messages), messages
    for message in messages:
        assert_escaped(message)


def test_diff_of_readers_is_escaped(torch_files):
    assert_escaped(str(ck.diff(torch_files[0], torch_files[1])))
