"""A byte range of one stored object, seen as an object of its own (internal).

PyTorch Distributed Checkpoint files hold one ``torch.save`` archive per chunk, back to back,
and a ``.keras`` file holds an HDF5 file as a zip member.  Presenting such a range as a
read-only object lets the existing readers (``TorchFile``) and libraries that take a file object
(``h5py``) read it unchanged, with every read bounded by the range.
"""

from __future__ import annotations

from typing import cast

from ckptlab.storage._kv import ByteStore


class ByteRange:
    """Bytes ``[offset, offset + length)`` of ``key`` in ``store``, as every key of a store.

    Only the read side of :class:`~ckptlab.storage.ByteStore` is implemented; readers never
    write.  :meth:`as_store` gives it the store type for the readers that take one.

    Examples
    --------
    >>> import os, tempfile
    >>> from ckptlab.storage import LocalStore
    >>> path = os.path.join(tempfile.mkdtemp(), "f")
    >>> with open(path, "wb") as f:
    ...     _ = f.write(b"0123456789")
    >>> window = ByteRange(LocalStore(), path, 2, 5)
    >>> window.read("any"), window.size("any")
    (b'23456', 5)
    >>> out = bytearray(2)  # the whole range in one read: 2 bytes before, 2 into out, 1 after
    >>> window.around(2, memoryview(out)), out
    ((bytearray(b'23'), bytearray(b'6')), bytearray(b'45'))
    >>> ByteRange(LocalStore(), path, 2, 9).around(2, memoryview(out)) is None  # past the end
    True
    """

    supports_rename = False

    def __init__(self, store: ByteStore, key: str, offset: int, length: int) -> None:
        self.store, self.key, self.offset, self.length = store, key, offset, length
        self._cached: list[tuple[int, bytearray]] = []

    def as_store(self) -> ByteStore:
        """Return the range typed as a store (read methods only)."""
        return cast("ByteStore", self)

    def display(self, key: str) -> str:
        """The underlying object and the range, e.g. ``d/__0_0.distcp[128:4096]``."""
        end = self.offset + self.length
        return f"{self.store.display(self.key)}[{self.offset}:{end}]"

    def size(self, key: str) -> int | None:
        """The range's length."""
        return self.length

    def exists(self, key: str) -> bool:
        """Always true: the range is the only object."""
        return True

    def is_dir(self, key: str) -> bool:
        """Never a directory."""
        return False

    def list_dir(self, key: str) -> list[str]:
        """Nothing below the range."""
        return []

    def read_into(self, key: str, out: memoryview, offset: int) -> int:
        """Read up to ``len(out)`` bytes from ``offset`` within the range (never past its end)."""
        count = max(0, min(len(out), self.length - offset))
        done = 0
        for start, data in self._cached:  # the part that starts in a prefetched piece
            if start <= offset < start + len(data):
                done = min(count, start + len(data) - offset)
                out[:done] = data[offset - start : offset - start + done]
                break
        if done == count:
            return count
        rest = out[done:count]
        return done + self.store.read_into(self.key, rest, self.offset + offset + done)

    def prefetch(
        self, head: int, tail: int, also: tuple[int, memoryview] | None = None
    ) -> tuple[bytearray, bytearray, int]:
        """Keep the first ``head`` and last ``tail`` bytes in memory (one request for both).

        A zip archive's readers touch only its start (small members) and its end (the central
        directory) before the large data, so parsing a small archive then costs no I/O.
        ``also`` (an offset in the range and a buffer) is filled by the same request; the
        third result is how many bytes it got.
        """
        head, tail = min(head, self.length), min(tail, self.length)
        buffers = [bytearray(head), bytearray(tail)]
        requests = [
            (self.key, self.offset, [memoryview(buffers[0])]),
            (self.key, self.offset + self.length - tail, [memoryview(buffers[1])]),
        ]
        if also is not None:
            start, out = also
            requests.append((self.key, self.offset + start, [out[: max(0, self.length - start)]]))
        counts = self.store.read_ranges(requests)
        self._cached = [(0, buffers[0]), (self.length - tail, buffers[1])]
        return buffers[0], buffers[1], counts[2] if also is not None else 0

    def around(self, start: int, out: memoryview) -> tuple[bytearray, bytearray] | None:
        """Read the whole range in one request: ``out`` from ``start``, the rest kept.

        Returns the bytes before ``start`` and after ``out`` (kept as :meth:`prefetch` keeps
        its head and tail), or ``None`` when the range ended early (``out`` then holds
        whatever arrived).  See the class's example.
        """
        head = bytearray(start)
        tail = bytearray(self.length - start - len(out))
        buffers = [memoryview(head), out, memoryview(tail)]
        if self.store.read_ranges([(self.key, self.offset, buffers)]) != [self.length]:
            return None
        self._cached = [(0, head), (start + len(out), tail)]
        return head, tail

    def read(self, key: str) -> bytes:
        """The whole range."""
        data = bytearray(self.length)
        count = self.read_into(key, memoryview(data), 0)
        return bytes(data[:count])
