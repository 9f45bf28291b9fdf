"""Byte-mutation fuzzing of one foreign format, run by ``test_fuzz_foreign.py`` in a subprocess.

``python fuzz_driver.py FORMAT SECONDS WORKDIR``: mutates committed framework files (under a
memory limit, each case under a time limit, for about SECONDS in all), opens each variant,
lists it, reads every value and verifies it.  Every step must succeed or raise a ckptlab
error.  Formats with checksums are also mutated *inside* them (the pickle of a torch zip, the
entries of a TensorFlow table), then re-framed with valid checksums, so that the parsers behind
the checksums are reached; safetensors headers are also edited as JSON.  Prints one JSON line
of outcome counts; a failing case is saved in WORKDIR/failure.* and fails the run.
"""

from __future__ import annotations

import collections
import io
import json
import os
import resource
import shutil
import signal
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

import ckptlab as ck
from ckptlab.cli._common import open_target
from ckptlab.cli._verify import verify_checkpoint
from ckptlab.storage._foreign._bundle_writer import write_table
from ckptlab.storage._foreign._table import Table

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "foreign"
SOURCES = {
    "torch-zip": ["torch/checkpoint.pt", "torch/extras.pt"],
    "torch-legacy": ["torch/state_dict_legacy.pt"],
    "tf-bundle": ["tf2_keras_adam/ckpt", "tf2_sharded/ckpt", "tf1_saver/model.ckpt-1"],
    "tf-v1": ["tf1_saver_v1/model.ckpt-7"],
    "safetensors": ["torch/model.safetensors"],
}
CASE_SECONDS = 10
ROUND = 20
"""Examples per seeded round; rounds run until the time is up (each round is reproducible)."""
MEMORY = 2 * 2**30
"""Address space a case may use beyond what the driver holds when it starts."""
INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 2**31 - 1, 2**31, 2**32 - 1, 2**63 - 1, 2**64 - 1]
PICKLE_TOKENS = [
    b"\x95" + (2**63).to_bytes(8, "little"),  # FRAME of 2**63 bytes
    b"\x8e" + (2**63 + 5).to_bytes(8, "little"),  # BINBYTES8
    b"N" + b"\x85" * 5000,  # tuples nested 5,000 deep
    b"N" + b"q\x00h\x00\x86" * 40,  # t = (t, t)
    b"}q\x00h\x00h\x00s",  # a dict inside itself
    b"]" * 3000 + b"a" * 2999,  # lists nested 3,000 deep
    b"\x8a\x09" + b"\xff" * 9,  # LONG1
    b"J\xff\xff\xff\x7f",  # BININT 2**31 - 1
    b"\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80",  # LONG1 -2**63
    b"ccollections\nOrderedDict\n",
    b"ctorch\ndevice\n",
    b"cbuiltins\nfrozenset\n",
    b"}", b"]", b")", b"(", b"b", b"R", b"s", b"u", b"a", b"e", b"\x81", b"\x85", b"\x86",
]  # fmt: skip
"""Pickle fragments inserted into torch pickles: hostile lengths, nesting, sharing, opcodes."""
JSON_TOKENS = [
    b"[" * 5000, b"{" * 50, b'"\\ud800"', b"18446744073709551616", b"-1", b"1e999", b'"a":',
    b",", b"]", b"}", b'"data_offsets":[0,0]', b'"shape":[0,140737488355328,140737488355328]',
]  # fmt: skip
VARINT_TOKENS = [b"\xff" * 9 + b"\x01", b"\x80" * 10, b"\xff\xff\xff\xff\x0f", b"\x00", b"\x01"]
TOKENS = {
    "torch-zip": PICKLE_TOKENS,
    "torch-legacy": PICKLE_TOKENS,
    "safetensors": JSON_TOKENS,
    "tf-bundle": VARINT_TOKENS,
    "tf-v1": VARINT_TOKENS,
}


class Hang(BaseException):
    """A case ran past CASE_SECONDS."""


def _alarm(*_: Any) -> None:
    raise Hang(f"a case ran longer than {CASE_SECONDS} s")


def mutate(data: st.DataObject, raw: bytes) -> bytes:
    """Apply one to three byte-level edits (``token``: a fragment of the format's grammar)."""
    out = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        action = data.draw(
            st.sampled_from(
                ["flip", "byte", "int", "truncate", "insert", "delete", "repeat", "token", "token"]
            )
        )
        at = data.draw(st.integers(0, max(len(out) - 1, 0)), label="at")
        if action == "token":
            token = data.draw(st.sampled_from(TOKENS[os.environ["FUZZ_FORMAT"]]), label="token")
            end = at + (len(token) if data.draw(st.booleans(), label="overwrite") else 0)
            out[at:end] = token
        elif action == "flip" and out:
            out[at] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "byte" and out:
            out[at] = data.draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]))
        elif action == "int" and out:
            width = data.draw(st.sampled_from([1, 2, 4, 8]))
            value = data.draw(st.sampled_from(INTERESTING)) % 256**width
            order = data.draw(st.sampled_from(["little", "big"]))
            out[at : at + width] = value.to_bytes(width, order)
        elif action == "truncate":
            del out[at:]
        elif action == "insert":
            out[at:at] = data.draw(st.binary(min_size=1, max_size=16))
        elif action == "delete":
            del out[at : at + data.draw(st.integers(1, 64))]
        elif out:
            piece = out[at : at + data.draw(st.integers(1, 64))]
            out[at:at] = piece * data.draw(st.integers(1, 8))
    return bytes(out)


def rezip(data: st.DataObject, raw: bytes) -> bytes:
    """Mutate one member of a zip (usually the pickle) and write a zip with valid crc32s."""
    with zipfile.ZipFile(io.BytesIO(raw)) as source:
        infos = source.infolist()
        pickles = [i for i in infos if i.filename.endswith("data.pkl")]
        target = data.draw(st.sampled_from(pickles + pickles + infos), label="member")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as out:
            for info in infos:
                content = source.read(info)
                out.writestr(info, mutate(data, content) if info is target else content)
    return buffer.getvalue()


def retable(data: st.DataObject, raw: bytes) -> bytes:
    """Mutate the entries of a TensorFlow table and write it again with valid checksums."""
    items = list(Table(raw, "fuzz"))
    for _ in range(data.draw(st.integers(1, 3), label="entry edits")):
        index = data.draw(st.integers(0, len(items) - 1), label="entry")
        key, value = items[index]
        action = data.draw(st.sampled_from(["value", "value", "key", "drop", "copy"]))
        if action == "value":
            items[index] = (key, mutate(data, value))
        elif action == "key":
            items[index] = (mutate(data, key), value)
        elif action == "drop" and len(items) > 1:
            del items[index]
        else:
            items.append((mutate(data, key), value))
    path = Path(os.environ["FUZZ_WORK"]) / "table.tmp"
    write_table(str(path), sorted(dict(items).items()))
    return path.read_bytes()


HOSTILE_JSON = [
    -1, 0, 1, 7, 2**31, 2**32, 2**47, 2**48, 2**63, 2**64, 10**30, 1.5, None, True, "", "F32",
    "BF16", "Q7", "\ud800", "\x1b]0;pwned\x07", [], {}, [0], [0, 2**47, 2**47], [[1]],
]  # fmt: skip


def rejson(data: st.DataObject, raw: bytes) -> bytes:
    """Mutate the parsed header of a safetensors file and write it back (lengths consistent)."""
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + length])
    names = sorted(header)
    for _ in range(data.draw(st.integers(1, 3), label="header edits")):
        name = data.draw(st.sampled_from(names), label="tensor")
        entry = header[name]
        field = data.draw(st.sampled_from(["dtype", "shape", "data_offsets", "new"]))
        value = data.draw(st.sampled_from(HOSTILE_JSON), label="value")
        if field == "new":
            header[data.draw(st.sampled_from(["__metadata__", "x", "\udcff", name + "!"]))] = value
        elif isinstance(entry, dict) and isinstance(entry.get(field), list) and type(value) is int:
            old = entry[field]
            if field == "data_offsets" and len(old) == 2:
                entry[field] = [value, old[1]] if data.draw(st.booleans()) else [old[0], value]
            else:
                entry[field] = [*old[:-1], value]
        elif isinstance(entry, dict):
            entry[field] = value
    encoded = json.dumps(header).encode("utf-8", "surrogatepass")
    return len(encoded).to_bytes(8, "little") + encoded + raw[8 + length :]


def variant(fmt: str, data: st.DataObject, work: Path) -> str:
    """Copy one source into ``work`` with one mutation; return the path to open."""
    source = data.draw(st.sampled_from(SOURCES[fmt]), label="source")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    origin = FIXTURES / source
    files = sorted(origin.parent.glob(origin.name + "*")) if fmt == "tf-bundle" else [origin]
    files = [f for f in files if not f.name.endswith(".meta")]
    for file in files:
        shutil.copy(file, work / file.name)
    target = work / data.draw(st.sampled_from([f.name for f in files]), label="file")
    raw = target.read_bytes()
    layer = data.draw(st.sampled_from(["inside", "inside", "raw"]), label="layer")
    if layer == "inside" and fmt == "torch-zip":
        raw = rezip(data, raw)
    elif layer == "inside" and fmt in ("tf-bundle", "tf-v1") and not target.name.count(".data-"):
        raw = retable(data, raw)
    elif layer == "inside" and fmt == "safetensors":
        raw = rejson(data, raw)
    else:
        raw = mutate(data, raw)
    target.write_bytes(raw)
    return str(work / (origin.name + ".index" if fmt == "tf-bundle" else origin.name))


def exercise(path: str, outcomes: collections.Counter[str]) -> None:
    """Open, list, read every value, verify: each succeeds or raises a ckptlab error."""
    try:
        reader = ck.load_checkpoint(path)
        shapes = reader.get_variable_to_shape_map()
        for key in shapes:
            reader.get_tensor(key)
        outcomes["read: ok"] += 1
    except ck.CkptlabError as error:
        outcomes[f"read: {type(error).__name__}"] += 1
        return
    try:
        source, _ = open_target(path)
        result = verify_checkpoint(source)
        outcomes[f"verify: {'ok' if result.ok else 'damaged'}"] += 1
    except ck.CkptlabError as error:
        outcomes[f"verify: {type(error).__name__}"] += 1


def main() -> int:
    fmt, seconds, work_dir = sys.argv[1], float(sys.argv[2]), Path(sys.argv[3])
    os.environ["FUZZ_WORK"] = str(work_dir)
    os.environ["FUZZ_FORMAT"] = fmt
    pages = int(Path("/proc/self/statm").read_text().split()[0])
    limit = pages * os.sysconf("SC_PAGE_SIZE") + MEMORY
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    signal.signal(signal.SIGALRM, _alarm)
    outcomes: collections.Counter[str] = collections.Counter()
    deadline = time.monotonic() + seconds
    work = work_dir / "case"

    def fuzz(data: st.DataObject) -> None:
        path = variant(fmt, data, work)
        signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
        try:
            exercise(path, outcomes)
        except BaseException:
            for file in work.iterdir():
                shutil.copy(file, work_dir / f"failure.{file.name}")
            raise
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        outcomes["cases"] += 1

    rounds = 0
    while time.monotonic() < deadline:  # rounds of seeded examples until the time is up
        run = settings(
            max_examples=ROUND,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )(seed(rounds)(given(data=st.data())(fuzz)))
        run()
        rounds += 1
    outcomes["rounds"] = rounds
    print(json.dumps(dict(outcomes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
