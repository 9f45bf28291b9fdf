"""ValueReader: verify, then read into the program's existing buffers.

This is the storage API restores use (FORMAT.md section 8): every value a restore writes is
verified before the first one is written.  A small verification keeps the verified bytes of
whole values and the fill copies those (``KEEP_BYTES``); a large one keeps nothing.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import ckptlab as ck
from ckptlab.storage import LocalStore, WriteOptions, open_checkpoint, resolve, write_checkpoint

QUIET = WriteOptions(progress=False, durable=False)


def values(seed: int = 0) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        ("a", rng.standard_normal((64, 32)).astype(np.float32)),
        ("b", rng.integers(0, 9, 100).astype(np.int16)),
        ("c", rng.standard_normal(300_000).astype(np.float32)),  # several inner chunks
        ("scalar", np.asarray(np.float64(seed))),
        ("empty", np.zeros((0, 4), np.float32)),
    ]


def write(store, path, seed=0):
    write_checkpoint(store, path, values(seed), kind="name", graph=None, writer={}, options=QUIET)
    return open_checkpoint(store, path, progress=False)


def buffers() -> dict[str, np.ndarray]:
    return {k: np.full(v.shape, 7, v.dtype) for k, v in values()}


@pytest.mark.parametrize("where", ["local", "memory"])
def test_verify_then_read_into_existing_buffers(tmp_path, memory_prefix, where):
    store, path = (
        (LocalStore(), str(tmp_path / "c")) if where == "local" else resolve(memory_prefix)
    )
    source = write(store, path)
    outs = buffers()
    before = {k: id(v) for k, v in outs.items()}
    with source.open_values() as reader:
        reader.verify(outs)
        reader.read_into(outs)
    for key, expected in values():
        assert outs[key].tobytes() == expected.tobytes(), key
        assert id(outs[key]) == before[key]  # the same buffers, filled


def test_verified_values_are_the_ones_copied_even_if_the_checkpoint_is_replaced(tmp_path):
    """Locally the reader keeps the files it verified open: a save over the same path between
    verify and copy does not change what is copied (nor require checking again)."""
    path = str(tmp_path / "c")
    source = write(LocalStore(), path, seed=0)
    outs = buffers()
    with source.open_values() as reader:
        reader.verify(outs)
        write(LocalStore(), path, seed=1)  # replaced (renamed over) meanwhile
        reader.read_into(outs)
    for key, expected in values(seed=0):
        assert outs[key].tobytes() == expected.tobytes(), key


def test_a_small_fill_writes_the_bytes_that_were_verified(tmp_path):
    """Bytes changed in the file after verify (in place, not a new save) never reach the
    buffers of a small restore: the fill copies what verify checked."""
    path = tmp_path / "c"
    source = write(LocalStore(), str(path))
    outs = buffers()
    with source.open_values() as reader:
        reader.verify(outs)
        for shard in (path / "data").rglob("[0-9]*"):
            shard.write_bytes(bytes(len(shard.read_bytes())))  # zeroed in place
        reader.read_into(outs)
    for key, expected in values():
        assert outs[key].tobytes() == expected.tobytes(), key


def test_a_bad_buffer_is_refused_before_anything_is_written(tmp_path):
    source = write(LocalStore(), str(tmp_path / "c"))
    outs = buffers()
    outs["b"] = np.zeros(100, np.int32)  # wrong dtype
    with pytest.raises(ValueError, match="out for 'b'.*int16"):
        source.read_many(outs, outs)
    assert (outs["a"] == 7).all()
    outs = buffers()
    outs["a"] = np.zeros((32, 64), np.float32).T  # right shape, not C-contiguous
    with pytest.raises(ValueError, match="not C-contiguous"):
        source.read_many(outs, outs)


def test_verify_keeps_nothing_and_names_missing_keys(tmp_path, peak_bytes):
    big = [("big", np.arange(8 * 2**20, dtype=np.float32))]  # 32 MiB
    path = str(tmp_path / "big")
    write_checkpoint(LocalStore(), path, big, kind="name", graph=None, writer={}, options=QUIET)
    source = open_checkpoint(LocalStore(), path, progress=False)

    def verify() -> None:
        with source.open_values() as reader:
            reader.verify(["big"])

    assert peak_bytes(verify) < 12 * 2**20  # two rounds of 4 MiB scratch, not the 32 MiB value
    with pytest.raises(ck.NotFoundError, match="'nope'"), source.open_values() as reader:
        reader.verify(["big", "nope"])


def test_fresh_and_given_buffers_mix(tmp_path):
    source = write(LocalStore(), str(tmp_path / "c"))
    outs = {"a": np.zeros((64, 32), np.float32)}
    read = source.read_many(["a", "b", "c"], outs)
    assert read["a"] is outs["a"]
    expected = dict(values())
    for key in ("a", "b", "c"):
        assert read[key].tobytes() == expected[key].tobytes()


def test_rows_of_a_packed_value_read_only_their_checksum_blocks(tmp_path, monkeypatch):
    from ckptlab.storage import _parts, _stream, _writer

    monkeypatch.setattr(_stream, "STEP", 4096)
    monkeypatch.setattr(_writer, "CRC_BLOCK", 4096)
    table = np.arange(1000 * 16, dtype=np.float32).reshape(1000, 16)  # 64 KiB: 16 blocks
    path = str(tmp_path / "c")
    write_checkpoint(
        LocalStore(), path, [("t", table)], kind="name", graph=None, writer={}, options=QUIET
    )
    source = open_checkpoint(LocalStore(), path)
    assert np.array_equal(_parts.read_rows(source, "t", 100, 130), table[100:130])
    shard = tmp_path / "c" / "data" / "float32" / "0"
    data = bytearray(shard.read_bytes())
    data[900 * 64] ^= 1  # row 900: another checksum block
    shard.write_bytes(data)
    assert np.array_equal(_parts.read_rows(source, "t", 100, 130), table[100:130])
    with pytest.raises(ck.CorruptCheckpointError, match="'t'.*checksum mismatch"):
        _parts.read_rows(source, "t", 890, 910)


def two_thread_values(monkeypatch, seed: int) -> list[tuple[str, np.ndarray]]:
    """40 values of a few KiB whose transfers take the two-thread path in many rounds."""
    from ckptlab.storage import _stream, _writer

    monkeypatch.setattr(_stream, "PARALLEL_BYTES", 0)  # every transfer takes the two-thread path
    monkeypatch.setattr(_stream, "STEP", 4096)  # many rounds, values split across them
    monkeypatch.setattr(_writer, "CRC_BLOCK", 4096)
    rng = np.random.default_rng(seed)
    return [
        (f"v{i}", rng.standard_normal(int(rng.integers(1, 5000))).astype(np.float32))
        for i in range(40)
    ]


def test_large_transfers_run_on_two_threads_exactly(tmp_path, monkeypatch):
    """Large local transfers read (and check) their second half on a helper thread: every byte
    lands, a damaged byte in either half names its value, and a file cut short under the open
    reader is reported from either half."""
    saved = two_thread_values(monkeypatch, seed=3)
    path = str(tmp_path / "c")
    write_checkpoint(LocalStore(), path, saved, kind="name", graph=None, writer={}, options=QUIET)
    source = open_checkpoint(LocalStore(), path, progress=False)
    outs = {key: np.zeros_like(value) for key, value in saved}
    with source.open_values() as reader:
        reader.verify(outs)
        reader.read_into(outs)
    for key, value in saved:
        assert outs[key].tobytes() == value.tobytes(), key

    shard = tmp_path / "c" / "data" / "float32" / "0"
    for keep in (shard.stat().st_size // 4, shard.stat().st_size * 3 // 4):  # either half
        write_checkpoint(
            LocalStore(), path, saved, kind="name", graph=None, writer={}, options=QUIET
        )
        source = open_checkpoint(LocalStore(), path, progress=False)
        with source.open_values() as reader:
            reader.verify(outs)
            with open(shard, "r+b") as cut:  # the same file the reader holds open
                cut.truncate(keep)
            with pytest.raises(ck.CorruptCheckpointError, match=r"ended after \d+ bytes"):
                reader.read_into(outs)

    ends = np.cumsum([value.nbytes for _, value in saved])  # the values lie back to back
    for where in (int(ends[-1]) // 4, int(ends[-1]) * 3 // 4):
        write_checkpoint(
            LocalStore(), path, saved, kind="name", graph=None, writer={}, options=QUIET
        )
        data = bytearray(shard.read_bytes())
        data[where] ^= 1
        shard.write_bytes(data)
        damaged = saved[int(np.searchsorted(ends, where, side="right"))][0]
        source = open_checkpoint(LocalStore(), path, progress=False)
        with pytest.raises(ck.CorruptCheckpointError, match=f"'{damaged}'"):
            source.open_values().verify(outs)


@pytest.mark.parametrize("mappable", [True, False])
def test_large_verifications_check_the_pages_where_they_lie(tmp_path, monkeypatch, mappable):
    """A verification too large to keep its bytes checksums the files' pages through memory
    maps (no copy): a damaged byte in either half names its value, a file cut short under the
    open reader is a typed error (a mapped page past the end would end the process with
    SIGBUS), and no mapping outlives the call.  Where files cannot be mapped (FUSE with direct
    I/O), the same holds, read."""
    import errno

    from ckptlab.storage import _values

    monkeypatch.setattr(_values, "KEEP_BYTES", 0)  # keep nothing: verify through the maps
    if not mappable:

        def refused(*args, **kwargs):
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))

        monkeypatch.setattr(_values.mmap, "mmap", refused)
    saved = two_thread_values(monkeypatch, seed=5)
    path = str(tmp_path / "c")
    shard = tmp_path / "c" / "data" / "float32" / "0"

    def mapped() -> list[str]:
        with open("/proc/self/maps") as maps:
            return [line for line in maps if str(shard) in line]

    write_checkpoint(LocalStore(), path, saved, kind="name", graph=None, writer={}, options=QUIET)
    source = open_checkpoint(LocalStore(), path, progress=False)
    outs = {key: np.zeros_like(value) for key, value in saved}
    with source.open_values() as reader:
        reader.verify(outs)
        assert mapped() == []
        reader.read_into(outs)
    for key, value in saved:
        assert outs[key].tobytes() == value.tobytes(), key

    ends = np.cumsum([value.nbytes for _, value in saved])  # the values lie back to back
    for where in (int(ends[-1]) // 4, int(ends[-1]) * 3 // 4):
        data = bytearray(shard.read_bytes())
        data[where] ^= 1
        shard.write_bytes(data)
        damaged = saved[int(np.searchsorted(ends, where, side="right"))][0]
        with pytest.raises(ck.CorruptCheckpointError, match=f"'{damaged}'"):
            source.open_values().verify(outs)
        data[where] ^= 1
        shard.write_bytes(data)
    assert mapped() == []

    with source.open_values() as reader:
        reader.verify(["v0"])  # the shard is open, its size checked
        with open(shard, "r+b") as cut:
            cut.truncate(shard.stat().st_size // 2)
        with pytest.raises(ck.CorruptCheckpointError, match=r"float32/0 ended after \d+ bytes"):
            reader.verify(outs)


def test_verify_checkpoint_reads_and_never_maps(tmp_path, monkeypatch):
    """``ckptlab verify`` is the tool for files of unknown origin: a file another program cuts
    short while it is checked must be a reported problem, never a SIGBUS, so it reads."""
    from ckptlab.storage import _values, verify_checkpoint

    def refused(*args, **kwargs):
        raise AssertionError("verify_checkpoint mapped a file")

    saved = two_thread_values(monkeypatch, seed=7)
    path = str(tmp_path / "c")
    write_checkpoint(LocalStore(), path, saved, kind="name", graph=None, writer={}, options=QUIET)
    shard = tmp_path / "c" / "data" / "float32" / "0"
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 1
    shard.write_bytes(data)
    monkeypatch.setattr(_values.mmap, "mmap", refused)
    problems = verify_checkpoint(path)
    assert len(problems) == 1 and "checksum mismatch" in problems[0], problems


def test_a_small_verification_reads_each_shard_once_and_names_a_damaged_value(
    tmp_path, monkeypatch
):
    """Many small values: one read of the span they fill, one checksum each; a flipped byte
    still names its value, and values picked out of many are read on their own."""
    from ckptlab.storage import _values

    path = tmp_path / "c"
    many = [(f"v{i}", np.full(64, i, np.float32)) for i in range(2000)]
    write_checkpoint(
        LocalStore(), str(path), many, kind="name", graph=None, writer={}, options=QUIET
    )
    reads = []
    real = _values.preadv_all
    monkeypatch.setattr(
        _values, "preadv_all", lambda fd, bufs, at, n: reads.append(n) or real(fd, bufs, at, n)
    )
    source = open_checkpoint(LocalStore(), str(path), progress=False)
    outs = {key: np.zeros(64, np.float32) for key, _ in many}
    with source.open_values() as reader:
        reader.verify(outs)
        assert reads == [2000 * 256]
        reader.read_into(outs)
    assert all((outs[f"v{i}"] == i).all() for i in range(2000))
    reads.clear()
    picked = {"v3": np.zeros(64, np.float32), "v1900": np.zeros(64, np.float32)}
    with source.open_values() as reader:
        reader.verify(picked)
        reader.read_into(picked)
    assert sum(reads) < 4 * 256  # the two values, not the span between them
    assert (picked["v1900"] == 1900).all()
    (shard,) = (path / "data").rglob("[0-9]*")
    data = bytearray(shard.read_bytes())
    data[1234 * 256 + 5] ^= 1
    shard.write_bytes(bytes(data))
    outs = {key: np.zeros(64, np.float32) for key, _ in many}
    with pytest.raises(ck.errors.CorruptCheckpointError, match="'v1234'.*checksum mismatch"):
        open_checkpoint(LocalStore(), str(path), progress=False).read_many(outs, outs)
    assert not any(out.any() for out in outs.values())  # nothing written
