"""The store conformance suite: the contract every :class:`~ckptlab.storage.ByteStore` passes.

Subclass :class:`StoreConformance` in a test module and override the ``root`` fixture to return
``(store, prefix)``: an empty prefix of the store the tests may fill.  ckptlab runs it against
the local file system, ``memory://`` and a moto S3 server (``tests/storage/test_stores.py``).

The first half pins the byte-level protocol; the second runs whole checkpoints through the
store: every dtype round-trips bit-exactly and reads back with plain ``zarr.open_group``,
overwrites publish atomically, an interrupted write is invisible and cleaned up by the next one.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Sequence
from typing import Any

import ml_dtypes
import numpy as np
import pytest

import ckptlab as ck
from ckptlab.storage import (
    Buffer,
    ByteStore,
    WriteOptions,
    is_committed,
    open_checkpoint,
    verify_checkpoint,
    write_checkpoint,
)

QUIET = WriteOptions(progress=False)


def sample_values() -> list[tuple[str, np.ndarray[Any, Any]]]:
    """One value of every storable dtype and shape class (0-d, empty, packed, own, chunked)."""
    rng = np.random.default_rng(7)
    values: list[tuple[str, np.ndarray[Any, Any]]] = []
    for name in sorted(ck.core.ITEMSIZE):
        dtype = np.dtype(ml_dtypes.bfloat16) if name == "bfloat16" else np.dtype(name)
        data = np.frombuffer(rng.bytes(15 * dtype.itemsize), dtype=dtype).reshape(3, 5)
        if name == "bool":
            data = rng.integers(0, 2, size=(3, 5)).astype(bool)
        values.append((f"{name}/.ATTRIBUTES/VARIABLE_VALUE", data))
    values.append(("scalar/.ATTRIBUTES/VARIABLE_VALUE", np.asarray(np.float32(-0.0))))
    values.append(("empty/.ATTRIBUTES/VARIABLE_VALUE", np.zeros((0, 4), np.float32)))
    values.append(
        ("big/.ATTRIBUTES/VARIABLE_VALUE", rng.standard_normal((300, 1100)).astype(np.float32))
    )
    return values


def _is_root_document(key: str) -> bool:
    """Whether ``key`` is the root ``zarr.json`` of checkpoint ``torn`` (staged or in place)."""
    parent = posixpath.basename(posixpath.dirname(key))
    return posixpath.basename(key) == "zarr.json" and parent.lstrip(".").startswith("torn")


class FailingStore:
    """Delegates to ``inner`` but raises ``OSError`` when writing any key ``fail_on`` accepts."""

    def __init__(self, inner: ByteStore, fail_on: Any) -> None:
        self.inner = inner
        self.fail_on = fail_on
        self.supports_rename = inner.supports_rename

    def _check(self, key: str) -> None:
        if self.fail_on(key):
            raise OSError(f"injected failure writing {key}")

    def write(self, key: str, parts: Sequence[Buffer], *, durable: bool) -> None:
        """Fail or delegate."""
        self._check(key)
        self.inner.write(key, parts, durable=durable)

    def write_many(self, items: Sequence[tuple[str, Sequence[Buffer]]], *, durable: bool) -> None:
        """Fail or delegate, one object at a time."""
        for key, parts in items:
            self.write(key, parts, durable=durable)

    def write_stream(self, key: str, batches: Iterable[Sequence[Buffer]], *, durable: bool) -> None:
        """Fail or delegate."""
        self._check(key)
        self.inner.write_stream(key, batches, durable=durable)

    def write_new(self, key: str, data: Buffer, *, durable: bool) -> bool:
        """Fail or delegate."""
        self._check(key)
        return self.inner.write_new(key, data, durable=durable)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class StoreConformance:
    """Tests every :class:`~ckptlab.storage.ByteStore` passes (override the ``root`` fixture)."""

    @pytest.fixture
    def root(self) -> tuple[ByteStore, str]:
        """``(store, prefix)``: an empty prefix to test under."""
        raise NotImplementedError

    def open_plain_zarr(self, store: ByteStore, path: str) -> Any:
        """Open ``path`` with zarr-python alone (override for stores needing options)."""
        import zarr

        return zarr.open_group(store.display(path), mode="r")

    # -- bytes --------------------------------------------------------------------------------

    def test_write_then_read(self, root: tuple[ByteStore, str]) -> None:
        """Parts are concatenated; a second write replaces the object."""
        store, prefix = root
        key = posixpath.join(prefix, "a", "b")
        store.write(
            key,
            [b"abc", memoryview(b"de"), bytearray(b""), np.arange(2, dtype=np.uint8).data],
            durable=True,
        )
        assert store.read(key) == b"abcde\x00\x01"
        store.write(key, [b"x"], durable=False)
        assert store.read(key) == b"x"

    def test_missing_objects(self, root: tuple[ByteStore, str]) -> None:
        """Absent keys: NotFoundError on reads, None/False/[] on queries, no error on delete."""
        store, prefix = root
        key = posixpath.join(prefix, "nothing")
        with pytest.raises(ck.NotFoundError):
            store.read(key)
        with pytest.raises(ck.NotFoundError):
            store.read_into(key, memoryview(bytearray(4)), 0)
        with pytest.raises(FileNotFoundError):
            store.read_ranges([(key, 0, [memoryview(bytearray(4))])])
        assert store.size(key) is None
        assert not store.exists(key)
        assert not store.is_dir(key)
        assert store.list_dir(key) == []
        store.delete_tree(key)  # no error

    def test_write_many(self, root: tuple[ByteStore, str]) -> None:
        """Many objects at once (concurrently on object stores) all land."""
        store, prefix = root
        items = [
            (posixpath.join(prefix, "m", str(i), "x"), [bytes([i]) * (i + 1)]) for i in range(40)
        ]
        store.write_many(items, durable=True)
        store.write_many([], durable=True)
        for key, parts in items:
            assert store.read(key) == parts[0]

    def test_write_new_is_create_only(self, root: tuple[ByteStore, str]) -> None:
        """A create-only write succeeds once and never overwrites."""
        store, prefix = root
        key = posixpath.join(prefix, "commit")
        assert store.write_new(key, b"first", durable=True)
        assert not store.write_new(key, b"second", durable=True)
        assert store.read(key) == b"first"

    def test_replace(self, root: tuple[ByteStore, str]) -> None:
        """Atomic replacement leaves no temporary objects behind."""
        store, prefix = root
        key = posixpath.join(prefix, "state")
        store.replace(key, b"one", durable=True)
        store.replace(key, b"two!", durable=True)
        assert store.read(key) == b"two!"
        assert store.list_dir(prefix) == ["state"]  # no temporary files left

    def test_ranged_and_scatter_reads(self, root: tuple[ByteStore, str]) -> None:
        """Ranged reads stop at the end; scatter reads fill buffers in turn."""
        store, prefix = root
        key = posixpath.join(prefix, "data")
        payload = bytes(range(256)) * 4
        store.write(key, [payload], durable=False)
        out = bytearray(10)
        assert store.read_into(key, memoryview(out), 100) == 10
        assert bytes(out) == payload[100:110]
        assert store.read_into(key, memoryview(out), len(payload) - 3) == 3
        assert store.read_into(key, memoryview(out), len(payload) + 5) == 0
        a, b, c = bytearray(3), bytearray(0), bytearray(5)
        counts = store.read_ranges(
            [(key, 7, [memoryview(a), memoryview(b), memoryview(c)]), (key, 0, [memoryview(out)])]
        )
        assert counts == [8, 10]
        assert bytes(a + c) == payload[7:15]
        assert bytes(out) == payload[:10]
        assert store.read_ranges([(key, len(payload) - 2, [memoryview(bytearray(4))])]) == [2]
        assert store.read_ranges([]) == []

    def test_sizes_and_listing(self, root: tuple[ByteStore, str]) -> None:
        """Sizes of objects (not prefixes); listings of names directly below a prefix."""
        store, prefix = root
        store.write(posixpath.join(prefix, "d", "x"), [b"12345"], durable=False)
        store.write(posixpath.join(prefix, "d", "sub", "y"), [b""], durable=False)
        store.write(posixpath.join(prefix, "dx"), [b"1"], durable=False)
        assert store.size(posixpath.join(prefix, "d", "x")) == 5
        assert store.size(posixpath.join(prefix, "d", "sub", "y")) == 0
        assert store.size(posixpath.join(prefix, "d")) is None
        assert store.exists(posixpath.join(prefix, "d", "x"))
        assert not store.exists(posixpath.join(prefix, "d"))
        assert store.is_dir(posixpath.join(prefix, "d"))
        assert not store.is_dir(posixpath.join(prefix, "d", "x"))
        assert store.list_dir(posixpath.join(prefix, "d")) == ["sub", "x"]
        assert store.list_dir(prefix) == ["d", "dx"]

    def test_delete_tree(self, root: tuple[ByteStore, str]) -> None:
        """Deleting a prefix leaves siblings sharing its leading characters alone."""
        store, prefix = root
        for name in ("t/a", "t/b/c", "tt/a", "t.x"):
            store.write(posixpath.join(prefix, name), [b"1"], durable=False)
        store.delete_tree(posixpath.join(prefix, "t"))
        assert store.list_dir(prefix) == ["t.x", "tt"]
        store.delete_tree(posixpath.join(prefix, "t.x"))
        assert store.list_dir(prefix) == ["tt"]

    def test_delete_tree_takes_names_literally(self, root: tuple[ByteStore, str]) -> None:
        """Glob characters in a name match only themselves (fsspec's ``rm`` globs)."""
        store, prefix = root
        names = ("run*", "runA", "exp[1]", "exp1", "r?n", "ran")
        for name in names:
            store.write(posixpath.join(prefix, name, "zarr.json"), [b"1"], durable=False)
        for doomed in ("run*", "exp[1]", "r?n"):
            store.delete_tree(posixpath.join(prefix, doomed, "zarr.json"))  # a file
            store.delete_tree(posixpath.join(prefix, doomed))  # and a tree
        assert store.list_dir(prefix) == ["exp1", "ran", "runA"]

    def test_rename_or_refuse(self, root: tuple[ByteStore, str]) -> None:
        """Rename-capable stores move trees; others refuse."""
        store, prefix = root
        source, target = posixpath.join(prefix, "src"), posixpath.join(prefix, "dst")
        store.write(posixpath.join(source, "f"), [b"1"], durable=False)
        if not store.supports_rename:
            with pytest.raises(NotImplementedError):
                store.rename(source, target, durable=True)
            return
        store.rename(source, target, durable=True)
        assert store.read(posixpath.join(target, "f")) == b"1"
        assert not store.is_dir(source)
        store.sync_tree(target)

    def test_display_names_the_key(self, root: tuple[ByteStore, str]) -> None:
        """Displayed paths name the key."""
        store, prefix = root
        assert posixpath.basename(prefix) in store.display(posixpath.join(prefix, "x"))

    # -- checkpoints --------------------------------------------------------------------------

    def test_checkpoint_round_trip_every_dtype(self, root: tuple[ByteStore, str]) -> None:
        """Every storable dtype round-trips bit-exactly and verifies clean."""
        store, prefix = root
        path = posixpath.join(prefix, "ckpt")
        values = sample_values()
        write_checkpoint(store, path, values, kind="name", graph=None, writer={}, options=QUIET)
        assert is_committed(store, path)
        source = open_checkpoint(store, path, progress=False)
        read = source.read_many(k for k, _ in values)
        for key, expected in values:
            assert read[key].dtype == expected.dtype, key
            assert read[key].tobytes() == expected.tobytes(), key
        assert verify_checkpoint(store, path) == []

    def test_plain_zarr_reads_every_array(self, root: tuple[ByteStore, str]) -> None:
        """zarr-python alone reads every value (packed ones through the offsets)."""
        store, prefix = root
        path = posixpath.join(prefix, "plain")
        values = sample_values()
        document = write_checkpoint(
            store, path, values, kind="name", graph=None, writer={}, options=QUIET
        )
        group = self.open_plain_zarr(store, path)
        for key, expected in values:
            stored = document.values[key]
            array = group[stored.array][...]
            if stored.offset is not None:
                array = array[stored.offset : stored.offset + expected.size].reshape(expected.shape)
            assert array.tobytes() == expected.tobytes(), key

    def test_overwrite_publishes_the_new_checkpoint(self, root: tuple[ByteStore, str]) -> None:
        """Overwriting publishes the new checkpoint and leaves nothing else."""
        store, prefix = root
        path = posixpath.join(prefix, "over")
        key = "w/.ATTRIBUTES/VARIABLE_VALUE"
        for round_ in range(3):
            value = np.full((50, 400), round_, np.float32) if round_ != 1 else np.arange(3.0)
            write_checkpoint(
                store, path, [(key, value)], kind="name", graph=None, writer={}, options=QUIET
            )
            assert np.array_equal(open_checkpoint(store, path).read(key), value)
        assert verify_checkpoint(store, path) == []
        siblings = [n for n in store.list_dir(prefix) if n != "over"]
        assert siblings == []  # no temporary or retracted leftovers

    def test_overwrite_at_a_path_with_glob_characters(self, root: tuple[ByteStore, str]) -> None:
        """Overwriting ``exp[1]/w`` replaces it and leaves ``exp1/w`` alone."""
        store, prefix = root
        key = "w/.ATTRIBUTES/VARIABLE_VALUE"
        other, path = posixpath.join(prefix, "exp1", "w"), posixpath.join(prefix, "exp[1]", "w")
        for where, value in ((other, 42.0), (path, 1.0), (path, 2.0)):
            write_checkpoint(
                store,
                where,
                [(key, np.full(4, value))],
                kind="name",
                graph=None,
                writer={},
                options=QUIET,
            )
        assert open_checkpoint(store, path).read(key).tolist() == [2.0] * 4
        assert open_checkpoint(store, other).read(key).tolist() == [42.0] * 4
        assert verify_checkpoint(store, path) == verify_checkpoint(store, other) == []

    def test_interrupted_write_is_invisible_then_cleaned(self, root: tuple[ByteStore, str]) -> None:
        """A write that dies midway is never visible; the next write cleans up."""
        store, prefix = root
        path = posixpath.join(prefix, "torn")
        key = "w/.ATTRIBUTES/VARIABLE_VALUE"
        old = np.arange(12.0)
        write_checkpoint(
            store, path, [(key, old)], kind="name", graph=None, writer={}, options=QUIET
        )
        for fail_on in (
            lambda k: "/data/" in k and k.endswith("/0"),  # dies while writing data
            _is_root_document,  # dies at the commit
        ):
            failing = FailingStore(store, fail_on)
            with pytest.raises(OSError, match="injected"):
                write_checkpoint(
                    failing,
                    path,
                    [(key, np.ones(2000))],
                    kind="name",
                    graph=None,
                    writer={},
                    options=QUIET,
                )
            if store.supports_rename:  # the old checkpoint still stands
                assert np.array_equal(open_checkpoint(store, path).read(key), old)
            else:  # the old one was retracted first; nothing half-written is visible
                assert not is_committed(store, path)
                with pytest.raises(ck.NotFoundError):
                    open_checkpoint(store, path)
        new = np.arange(5, dtype=np.int16)
        write_checkpoint(
            store, path, [(key, new)], kind="name", graph=None, writer={}, options=QUIET
        )
        assert np.array_equal(open_checkpoint(store, path).read(key), new)
        assert verify_checkpoint(store, path) == []
        assert [n for n in store.list_dir(prefix) if n != "torn"] == []

    def test_refuses_to_write_over_foreign_data(self, root: tuple[ByteStore, str]) -> None:
        """A prefix holding data ckptlab did not write is never deleted."""
        store, prefix = root
        path = posixpath.join(prefix, "theirs")
        store.write(posixpath.join(path, "notes.txt"), [b"mine"], durable=False)
        with pytest.raises(ck.CkptlabError, match="Refusing"):
            write_checkpoint(
                store, path, [("k", np.zeros(1))], kind="name", graph=None, writer={}, options=QUIET
            )
        assert store.read(posixpath.join(path, "notes.txt")) == b"mine"

    def test_checkpoint_api_and_state_file(self, root: tuple[ByteStore, str]) -> None:
        """Checkpoint.save/restore and latest_checkpoint through this store."""
        store, prefix = root
        directory = store.display(posixpath.join(prefix, "run"))
        model: Any = ck.Module()
        model.w = ck.Variable(np.arange(6.0).reshape(2, 3))
        checkpoint = ck.Checkpoint(model=model)
        first = checkpoint.save(f"{directory}/ckpt", options=QUIET)
        second = checkpoint.save(f"{directory}/ckpt", options=QUIET)
        assert ck.latest_checkpoint(directory) == second
        fresh: Any = ck.Module()
        fresh.w = ck.Variable(np.zeros((2, 3)))
        ck.Checkpoint(model=fresh).restore(first).assert_consumed()
        assert np.array_equal(fresh.w.numpy(), model.w.numpy())
        assert ("model/w/.ATTRIBUTES/VARIABLE_VALUE", [2, 3]) in ck.list_variables(directory)
