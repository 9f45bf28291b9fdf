"""Verified reads of stored values: check everything first, then copy (internal).

:class:`ValueReader` is what restores use.  ``verify(keys)`` checks values (keeping the checked
bytes of a small verification for the copy that follows, :data:`KEEP_BYTES`, and nothing of a
large one); ``read(keys)`` returns fresh arrays, verified; ``read_into(outs)`` fills the caller's
existing buffers only once every one of them has been verified, so a damaged checkpoint
leaves the program as it was.  The reader holds the stored files open until :meth:`close`:
on a local file system, keys verified through it are not checked again when copied (the open
files are the bytes that were verified, even if the checkpoint is replaced meanwhile).

Version 3 checkpoints go through :class:`PackedValues`: values are located by their columns
(no per-value objects), bytes move with scatter reads in batches of a few MiB straight into
the destination arrays, and each batch is checksummed while it is still in the cache; a large
local verification checksums the files' pages where they lie, mapped (no copy).  Older
versions and foreign formats use the generic reader over ``StoredCheckpoint.read_arrays``.
"""

from __future__ import annotations

import functools
import itertools
import math
import mmap
import os
import posixpath
import stat
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import crc32c
import numpy as np

from ckptlab.core import ITEMSIZE, ArrayInfo, ValueTable
from ckptlab.errors import CkptlabError, CorruptCheckpointError, NotFoundError
from ckptlab.storage import _stream
from ckptlab.storage._kv import LocalStore, preadv_all
from ckptlab.storage._layout import numpy_dtype, shard_key, shard_size
from ckptlab.storage._progress import Progress
from ckptlab.storage._stream import MAX_PARTS, pieces, raw_bytes

if TYPE_CHECKING:
    from ckptlab.storage._reader import StoredCheckpoint

LOCAL_GAP = 64 * 2**10
REMOTE_GAP = 4 * 2**20
"""Values closer than this are fetched with one request (the gap is read and dropped)."""
REMOTE_BATCH = 64 * 2**20
"""Bytes requested at once from an object store (concurrently)."""
READ_AHEAD = 2
"""Rounds read (into scratch, when verifying) while older ones wait for the checksum helper."""
MAP_BYTES = 8 * 2**20
"""Most bytes of a local file mapped at once per thread to verify them (``_check_pages``):
fewer, larger maps than reads' 4 MiB cost less to set up and tear down (about a tenth less
time verifying GPT-2 than with 4 MiB), and the process's resident size grows by at most this
much per thread while they are checked."""
KEEP_BYTES = 32 * 2**20
"""Verifying at most this many bytes keeps the verified bytes of whole values for the fill that
follows (restores verify everything, then fill): the fill copies them instead of reading the
files again, and writes exactly the bytes that were checked."""

Array = np.ndarray[Any, Any]
_Piece = tuple[int, int, int, int, bool]
"""Bytes of one value in one shard: (offset in the shard, length, row, offset in the value,
whether they end the value)."""


def check_out(key: str, out: Array, shape: tuple[int, ...], dtype: str) -> None:
    """Refuse a destination that is not a writable C-contiguous array of the stored spec."""
    if (
        out.shape != shape
        or out.dtype != numpy_dtype(dtype)
        or not out.flags.c_contiguous
        or not out.flags.writeable
    ):
        raise ValueError(
            f"out for {key!r} must be a writable C-contiguous {shape} {dtype} array; "
            f"got {out.shape} {out.dtype}"
            + ("" if out.flags.writeable else " (read-only)")
            + ("" if out.flags.c_contiguous else " (not C-contiguous)")
            + "."
        )


class ValueReader:
    """Verified reads of one checkpoint's values; use as a context manager.

    Examples
    --------
    >>> import ckptlab as ck, numpy as np, tempfile, os
    >>> path = ck.Checkpoint(w=ck.Variable([1.0, 2.0])).write(os.path.join(tempfile.mkdtemp(), "c"))
    >>> key = "w/.ATTRIBUTES/VARIABLE_VALUE"
    >>> out = np.zeros(2)
    >>> with ck.storage.open_checkpoint(*ck.storage.resolve(path)).open_values() as values:
    ...     values.verify([key])          # nothing kept, nothing written
    ...     values.read_into({key: out})  # copied only after every value verified
    >>> out
    array([1., 2.])
    """

    def __init__(self, checkpoint: StoredCheckpoint) -> None:
        self.checkpoint = checkpoint

    def __enter__(self) -> ValueReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the stored files (nothing to release here)."""

    def verify(self, keys: Iterable[str]) -> None:
        """Check the stored bytes of ``keys`` against their checksums.

        A version-3 reader keeps the checked bytes of a small verification (at most
        :data:`KEEP_BYTES`) for the ``read``/``read_into`` that follows; a large one keeps nothing.

        Raises
        ------
        NotFoundError
            A key is not in the checkpoint.
        CorruptCheckpointError
            A stored object is missing, has the wrong size, or fails its checksum.
        """
        batch: list[str] = []
        size = 0
        for key in dict.fromkeys(keys):  # bounded memory: a batch of values at a time
            batch.append(key)
            size += self.checkpoint.stored(key).nbytes
            if size >= REMOTE_BATCH:
                self.checkpoint.read_arrays(batch)
                batch, size = [], 0
        self.checkpoint.read_arrays(batch)

    def read(self, keys: Iterable[str]) -> dict[str, Array]:
        """Fresh arrays holding ``keys``, every one verified."""
        return self.checkpoint.read_arrays(keys)

    def read_into(self, outs: Mapping[str, Array]) -> None:
        """Fill ``outs`` (key -> writable C-contiguous array of the stored shape and dtype).

        Every value is verified before the first destination is written: on any error the
        destinations are as they were.
        """
        for key, out in outs.items():
            value = self.checkpoint.stored(key)
            check_out(key, out, value.shape, value.dtype)
        arrays = self.read(outs)
        for key, out in outs.items():
            np.copyto(out, arrays[key])

    def read_many(
        self, keys: Iterable[str], outs: Mapping[str, Array] | None = None
    ) -> dict[str, Array]:
        """Values of ``keys``: the ``outs`` arrays where given (filled), fresh arrays elsewhere.

        Atomic: on any error no ``outs`` array has been written.
        """
        wanted = list(dict.fromkeys(keys))
        given = {k: outs[k] for k in wanted if outs is not None and k in outs}
        fresh = self.read([k for k in wanted if k not in given])  # may fail: outs untouched
        if given:
            self.read_into(given)
        return {k: given[k] if k in given else fresh[k] for k in wanted}


class PackedValues(ValueReader):
    """A :class:`ValueReader` over a version-3 document's columns."""

    def __init__(self, checkpoint: StoredCheckpoint, table: ValueTable, block: int) -> None:
        super().__init__(checkpoint)
        self.table = table
        self.block = block
        self.store = checkpoint.store
        self.local = isinstance(self.store, LocalStore)
        self._files: dict[str, int] = {}
        """Shard key -> open file descriptor (local stores), size already checked."""
        self._sizes: set[str] = set()
        """Shard keys whose size was checked (other stores)."""
        self._verified: set[int] = set()
        """Rows verified through the open files (local stores only)."""
        """Byte offset in its array and byte size of every row (built on first use)."""
        self._kept: dict[int, memoryview] = {}
        """Row -> its verified bytes (small verifications only, see :data:`KEEP_BYTES`)."""

    def close(self) -> None:
        """Close the stored files; later reads check again."""
        files, self._files = self._files, {}
        for fd in files.values():
            os.close(fd)
        self._verified.clear()
        self._kept.clear()

    def __del__(self) -> None:
        self.close()

    # -- the public operations --------------------------------------------------------------

    def verify(self, keys: Iterable[str]) -> None:
        rows, own = self._rows(keys)
        if own:
            super().verify(own)
        self._verify_rows(rows)

    def _verify_rows(self, rows: list[int]) -> None:
        verified = self._verified
        if verified:
            rows = [r for r in rows if r not in verified]
        total = sum(self._extents(rows)[1])
        keep = self.local and total <= KEEP_BYTES
        groups = self._groups(rows)
        if keep:
            groups = self._keep_spans(groups, total)
        if groups:
            self._transfer(groups, None, keep=keep)
        if self.local:
            verified.update(rows)

    def _keep_spans(self, groups: dict[int, list[int]], total: int) -> dict[int, list[int]]:
        """Verify and keep small values a shard at a time; return the rows left to the pieces.

        The values of one shard are read in one go (the span from the first to the last, into
        memory the kept values then share) and checked with one checksum call each: a
        10,000-value restore verifies in a quarter of the time the pieces, runs and rounds of
        :meth:`_transfer` take.  Left for those: values of more than one checksum block or
        across a shard boundary, and shards where the span would read a fifth more than the
        values (a few values picked out of many).  ``total``: the bytes of the values.
        """
        rest: dict[int, list[int]] = {}
        name = posixpath.basename(self.checkpoint.path)
        with Progress(total, f"verifying {name}", enabled=self.checkpoint.progress) as bar:
            for array_id, members in groups.items():
                left = self._keep_array(array_id, members, bar)
                if left:
                    rest[array_id] = sorted(left, key=self.table.offsets.__getitem__)
        return rest

    def _keep_array(self, array_id: int, members: list[int], bar: Progress) -> list[int]:
        """:meth:`_keep_spans` for the values of one array; return the rows left."""
        table, block, crcs = self.table, self.block, self.table.crcs
        info = table.arrays[array_id]
        shard_bytes = info.shard * ITEMSIZE[info.dtype]
        extents = self._extents(members)
        starts, sizes = np.array(extents[0], np.int64), np.array(extents[1], np.int64)
        ends = starts + sizes
        shards = starts // shard_bytes
        whole = (sizes > 0) & (sizes <= block) & ((ends - 1) // shard_bytes == shards)
        left = [members[i] for i in np.flatnonzero(~whole).tolist()]
        in_shards = np.unique(shards[whole]).tolist()
        everything = not left and len(in_shards) == 1  # the common case: no indexing
        for shard in in_shards:
            chosen: Any = slice(None) if everything else np.flatnonzero(whole & (shards == shard))
            rows = members if everything else [members[i] for i in chosen.tolist()]
            low, high = int(starts[chosen].min()), int(ends[chosen].max())
            wanted = int(sizes[chosen].sum())
            if high - low > wanted + wanted // 5 + LOCAL_GAP:
                left += rows
                continue
            fd = self._open(info, shard, rows)
            assert fd is not None  # local stores keep their shards open
            within = low % shard_bytes
            span = np.empty(high - low, np.uint8).data  # (a bytearray is zeroed first)
            count = preadv_all(fd, [span], within, high - low)
            if count != high - low:
                short = f"object {shard_key(info.path, shard)} ended after {within + count} bytes"
                raise self._damaged(info, shard, rows, short)
            firsts, lasts = (starts[chosen] - low).tolist(), (ends[chosen] - low).tolist()
            views = [span[start:end] for start, end in zip(firsts, lasts, strict=True)]
            found = list(map(crc32c.crc32c, views))
            if found != [crcs[row][0] for row in rows]:
                bad = next(r for r, c in zip(rows, found, strict=True) if c != crcs[r][0])
                raise self._corrupt(table.keys_[bad], info.path, shard_key(info.path, shard))
            self._kept.update(zip(rows, views, strict=True))
            bar.update(wanted)
        return left

    def read(self, keys: Iterable[str]) -> dict[str, Array]:
        rows, own = self._rows(keys)
        arrays = super().read(own) if own else {}
        table = self.table
        groups = self._groups(rows)
        self._check_shards(groups)  # before anything is allocated
        dtypes = [numpy_dtype(a.dtype) for a in table.arrays]
        shapes, ids = table.shapes, table.array_ids
        fresh = [np.empty(shapes[r], dtypes[ids[r]]) for r in rows]
        targets = dict(zip(rows, fresh, strict=True))
        rest = self._fill_kept(rows, targets)
        self._transfer(groups if rest is rows else self._groups(rest), targets)
        arrays.update(zip(map(table.keys_.__getitem__, rows), fresh, strict=True))
        return arrays

    def read_into(self, outs: Mapping[str, Array]) -> None:
        rows, own = self._rows(outs)
        table = self.table
        keys = table.keys_
        targets = {row: outs[keys[row]] for row in rows}
        self._check_outs(targets)
        if own:
            arrays = super().read(own)
        if not self.local:  # nothing pins the stored bytes: read fresh (verified), then copy
            fresh = self.read(keys[r] for r in rows)
            for key, array in fresh.items():
                np.copyto(outs[key], array)
        else:
            self._verify_rows(rows)
            rest = self._fill_kept(rows, targets)
            self._transfer(self._groups(rest), targets, check=False)
        for key in own:
            np.copyto(outs[key], arrays[key])

    def read_rows(self, key: str, start: int, stop: int) -> Array:
        """Rows ``[start, stop)`` of a packed value; only the checksum blocks holding them are read.

        ``0 <= start <= stop <= rows`` is the caller's to check.
        """
        row = self.table.position(key)
        if row is None:
            self.checkpoint.stored(key)  # raises NotFoundError naming the key
            raise AssertionError("unreachable")  # pragma: no cover
        table, block = self.table, self.block
        info = table.arrays[table.array_ids[row]]
        shape = tuple(table.shapes[row])
        dtype = numpy_dtype(info.dtype)
        row_bytes = math.prod(shape[1:]) * dtype.itemsize
        nbytes = shape[0] * row_bytes
        low, high = start * row_bytes, stop * row_bytes
        first, last = low // block * block, min(nbytes, -(-high // block) * block)
        scratch = memoryview(bytearray(last - first))
        base = table.offsets[row] * dtype.itemsize
        done = 0
        for shard, within, count in pieces(info, base + first, base + last):
            fd = self._open(info, shard, [row])
            piece = scratch[done : done + count]
            if self._read(fd, shard_key(info.path, shard), [(within, [piece], count)]) != [count]:
                raise self._damaged(
                    info, shard, [row], f"object {shard_key(info.path, shard)} is short"
                )
            done += count
        for number, at in enumerate(range(first, last, block)):
            data = scratch[at - first : min(at + block, last) - first]
            if crc32c.crc32c(data) != table.crcs[row][first // block + number]:
                shard = (base + at) // (info.shard * dtype.itemsize)
                raise self._corrupt(key, info.path, shard_key(info.path, shard))
        region = scratch[low - first : high - first]
        return np.frombuffer(region, dtype=dtype).reshape((stop - start, *shape[1:])).copy()

    def _fill_kept(self, rows: list[int], targets: Mapping[int, Array]) -> list[int]:
        """Copy the kept verified bytes of ``rows`` into their targets; return the other rows."""
        kept = self._kept
        if not kept:
            return rows
        rest = []
        for row in rows:
            data = kept.pop(row, None)
            if data is None:
                rest.append(row)
            else:
                target = targets[row]
                # a memoryview is the cheapest byte view, for dtypes that have a buffer format
                view = target.data if target.dtype.isbuiltin == 1 else raw_bytes(target)
                view.cast("B")[:] = data
        return rest

    # -- locating ---------------------------------------------------------------------------

    def _rows(self, keys: Iterable[str]) -> tuple[list[int], list[str]]:
        """Rows of packed values (deduplicated) and the keys of values with own arrays."""
        table = self.table
        index = table.index()
        wanted = list(dict.fromkeys(keys))
        try:
            rows = list(map(index.__getitem__, wanted))
        except KeyError as missing:
            self.checkpoint.stored(missing.args[0])  # raises NotFoundError naming the key
            raise AssertionError("unreachable") from None  # pragma: no cover
        if all(info.packed for info in table.arrays):  # the common case: one pass in C
            return rows, []
        ids, packed = table.array_ids, [info.packed for info in table.arrays]
        own = [key for key, row in zip(wanted, rows, strict=True) if not packed[ids[row]]]
        return [row for row in rows if packed[ids[row]]], own

    def _check_outs(self, targets: Mapping[int, Array]) -> None:
        """:func:`check_out` for each row's destination (one comparison a value when right)."""
        table = self.table
        shapes, ids = table.shapes, table.array_ids
        dtypes = [numpy_dtype(info.dtype) for info in table.arrays]
        for row, out in targets.items():
            flags = out.flags
            if not (
                out.shape == tuple(shapes[row])
                and out.dtype == dtypes[ids[row]]
                and flags.c_contiguous
                and flags.writeable
            ):
                check_out(table.keys_[row], out, tuple(shapes[row]), table.dtype(row))

    def _groups(self, rows: Sequence[int]) -> dict[int, list[int]]:
        """Rows by array, each list in the order of the values in their array."""
        ids, offsets = self.table.array_ids, self.table.offsets
        groups: dict[int, list[int]] = defaultdict(list)
        for row in rows:
            groups[ids[row]].append(row)
        for members in groups.values():
            members.sort(key=offsets.__getitem__)  # usually sorted already: linear time
        return groups

    def _extents(self, members: list[int]) -> tuple[list[int], list[int]]:
        """Byte offset in its array and byte size of each of ``members``.

        Every row's are computed once per checkpoint (:meth:`ValueTable.byte_extents`): a
        restore locates its rows four times (sizes checked, then pieces planned, for verifying
        and again for filling).
        """
        starts, sizes = self.table.byte_extents()
        return list(map(starts.__getitem__, members)), list(map(sizes.__getitem__, members))

    def _check_shards(self, groups: Mapping[int, list[int]]) -> None:
        """Check the size of every shard the rows' values lie in (opening it, locally)."""
        table = self.table
        for array_id, members in sorted(groups.items()):
            info = table.arrays[array_id]
            starts, sizes = self._extents(members)
            ends = [s + n for s, n in zip(starts, sizes, strict=True) if n]
            if not ends:
                continue
            shard_bytes = info.shard * ITEMSIZE[info.dtype]
            first = min(s for s, n in zip(starts, sizes, strict=True) if n) // shard_bytes
            for shard in range(first, (max(ends) - 1) // shard_bytes + 1):
                self._open(info, shard, members)

    def _pieces(self, groups: Mapping[int, list[int]]) -> dict[tuple[int, int], list[_Piece]]:
        """Where the bytes of the rows are: (array, shard) -> pieces in file order.

        Values are cut at every checksum block boundary and every :data:`STEP` bytes, so a
        batch of pieces stays cache-sized and every checksum ends on a piece.  Call it only
        after the shards' sizes were checked (a value's pieces are then bounded by real bytes).
        """
        table, block, step = self.table, self.block, _stream.STEP
        out: dict[tuple[int, int], list[_Piece]] = defaultdict(list)
        for array_id, members in sorted(groups.items()):
            info = table.arrays[array_id]
            shard_bytes = info.shard * ITEMSIZE[info.dtype]
            small = min(step, block)
            starts, sizes = self._extents(members)
            current, shard_end = -1, -1
            pieces_of: list[_Piece] = []
            for row, start, nbytes in zip(members, starts, sizes, strict=True):
                if not nbytes:
                    continue
                if nbytes <= small and start + nbytes <= shard_end:  # the common case
                    pieces_of.append((start - shard_end + shard_bytes, nbytes, row, 0, True))
                    continue
                if nbytes <= small and start // shard_bytes == (start + nbytes - 1) // shard_bytes:
                    current = start // shard_bytes
                    shard_end = (current + 1) * shard_bytes
                    pieces_of = out[array_id, current]
                    pieces_of.append((start - current * shard_bytes, nbytes, row, 0, True))
                    continue
                cuts = sorted({*range(0, nbytes, step), *range(0, nbytes, block), nbytes})
                for done, stop in itertools.pairwise(cuts):
                    for shard, within, count in pieces(info, start + done, start + stop):
                        at = shard * shard_bytes + within - start
                        out[array_id, shard].append((within, count, row, at, at + count == nbytes))
                current, shard_end = -1, -1
        return out

    def _open(self, info: ArrayInfo, shard: int, rows: Sequence[int]) -> int | None:
        """Check a shard's size (once); locally, open it and keep it open."""
        key = shard_key(info.path, shard)
        if key in self._files or key in self._sizes:
            return self._files.get(key)
        expected = shard_size(info, shard)
        full = posixpath.join(self.checkpoint.path, key)
        if self.local:
            try:  # non-blocking: opening a FIFO to read waits for a writer (forever)
                fd = os.open(full, os.O_RDONLY | os.O_NONBLOCK)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                raise self._damaged(info, shard, rows, f"object {key} is missing") from None
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode):
                os.close(fd)
                raise self._damaged(info, shard, rows, f"object {key} is not a regular file")
            found: int | None = status.st_size
            if found == expected:
                self._files[key] = fd
                return fd
            os.close(fd)
        else:
            found = self.store.size(full)
            if found == expected:
                self._sizes.add(key)
                return None
        what = "is missing" if found is None else f"holds {found} bytes, expected {expected}"
        raise self._damaged(info, shard, rows, f"object {key} {what}")

    def damaged(self, keys: Iterable[str]) -> list[tuple[str, str]]:
        """``(key, shard)`` of every value of ``keys`` whose checksum fails.

        Missing or wrongly sized shards still raise (``verify_checkpoint`` checks those first).
        """
        rows, _ = self._rows(keys)
        found: list[tuple[str, str]] = []
        self._transfer(self._groups(rows), None, report=found)
        return found

    def _transfer(
        self,
        groups: Mapping[int, list[int]],
        targets: Mapping[int, Array] | None,
        *,
        check: bool = True,
        report: list[tuple[str, str]] | None = None,
        keep: bool = False,
    ) -> None:
        """Read the rows of ``groups`` into ``targets`` (``None``: scratch buffers) and check them.

        ``keep`` (verifying): keep the verified bytes of whole values for the fill.

        Rows already verified through the open files are not checked again.  A progress bar
        appears when this takes more than about a second (unless the checkpoint was opened with
        ``progress=False``).
        """
        self._check_shards(groups)  # before anything is planned, allocated or read
        found = self._pieces(groups)
        total = sum(piece[1] for run in found.values() for piece in run)
        name = posixpath.basename(self.checkpoint.path)
        action = "verifying" if targets is None else "reading"
        parallel = (
            self.local and report is None and _stream.two_threads(total, _stream.PARALLEL_BYTES)
        )
        # a restore's large check reads the pages where they lie; ``damaged`` (ckptlab verify,
        # the tool for files of unknown origin) always reads (see :meth:`_check_pages`)
        mapped = self.local and targets is None and not keep and report is None
        helped = self.local and not parallel and not mapped  # one thread reads, a helper checks
        checksums = _stream.Checksums(total if helped else 0, ahead=READ_AHEAD)
        try:
            with Progress(total, f"{action} {name}", enabled=self.checkpoint.progress) as bar:
                self._move(
                    found,
                    targets,
                    check,
                    bar,
                    report,
                    checksums,
                    parallel=parallel,
                    keep=keep,
                    mapped=mapped,
                )
        except BaseException:
            checksums.abandon()
            raise
        checksums.wait()  # raises the first mismatch found on the helper

    def _move(
        self,
        found: dict[tuple[int, int], list[_Piece]],
        targets: Mapping[int, Array] | None,
        check: bool,
        bar: Progress,
        report: list[tuple[str, str]] | None,
        checksums: _stream.Checksums,
        *,
        parallel: bool,
        keep: bool,
        mapped: bool,
    ) -> None:
        """Read round after round, checking each round (on ``checksums``) as the next is read.

        ``keep``: keep the verified bytes of whole values (where scratch is not reused).
        ``mapped``: verify local files through memory maps (see :meth:`_check_pages`).

        ``parallel`` (large local transfers): two threads each read and check one half of the
        rounds, the halves cut where no checksum block is half read.  Each thread checks a
        round before reading the next, so verification reuses one scratch buffer per thread
        (fresh scratch for every round, as the helper needs, costs the zeroing and page faults
        of new memory).  Measured here: verifying 1000 MiB 54 -> 42 ms, filling it 63 -> 55 ms.
        """
        gap, run_limit, round_limit, most = (
            (LOCAL_GAP, MAP_BYTES, MAP_BYTES, MAX_PARTS // 2)  # one map a run
            if mapped
            else (LOCAL_GAP, _stream.STEP, _stream.STEP, MAX_PARTS // 2)  # one system call a run
            if self.local
            else (REMOTE_GAP, _stream.STEP * 4, REMOTE_BATCH, 2**31)
        )
        rounds: list[_Round] = []
        for (array_id, shard), run in sorted(found.items()):
            info = self.table.arrays[array_id]
            fd = self._open(info, shard, [p[2] for p in run])
            batches = _rounds(_runs(run, gap, run_limit, most), round_limit)
            rounds += [_Round(info, shard, fd, batch) for batch in batches]
        split = _halfway(rounds, self.block if check else None) if parallel else len(rounds)
        if split == len(rounds):
            self._segment(
                rounds, targets, check, report, checksums, bar.update, keep=keep, mapped=mapped
            )
            return
        helper_done = [0]  # bytes the helper moved (written by the helper only)

        def count(nbytes: int) -> None:
            helper_done[0] += nbytes

        shown = 0

        def update(nbytes: int) -> None:  # the bar is drawn from this thread only
            nonlocal shown
            done = helper_done[0]
            bar.update(nbytes + done - shown)
            shown = done

        segment = functools.partial(self._segment, keep=keep, mapped=mapped)
        _stream.in_two_halves(
            functools.partial(segment, rounds[:split], targets, check, None, None, update),
            functools.partial(segment, rounds[split:], targets, check, None, None, count),
        )
        update(0)

    def _segment(
        self,
        rounds: list[_Round],
        targets: Mapping[int, Array] | None,
        check: bool,
        report: list[tuple[str, str]] | None,
        checksums: _stream.Checksums | None,
        progress: Callable[[int], None],
        *,
        keep: bool,
        mapped: bool,
    ) -> None:
        """Read ``rounds`` in order into their holders; check them (``checksums`` or inline).

        ``mapped`` (verifying local files): the holders are the files' mapped pages, not read.
        """
        running: dict[int, tuple[int, int]] = {}
        """Row -> (checksum so far, shard its block began in) of blocks read in part."""
        views: dict[int, memoryview] = {}
        reuse = targets is None and checksums is None  # checked before the next round: one scratch
        keep = keep and not reuse  # bytes kept must stay: only fresh scratch can be kept
        space = memoryview(bytearray(0))
        for info, shard, fd, batch in rounds:
            if mapped and fd is not None:
                self._check_pages(fd, info, shard, batch, running, progress)
                continue
            key = shard_key(info.path, shard)
            if reuse:  # the runs of the round side by side in one growing scratch buffer
                spans = [run[-1][0] + run[-1][1] - run[0][0] for run in batch]
                if sum(spans) > len(space):
                    space = memoryview(bytearray(sum(spans)))
                starts = itertools.accumulate(spans, initial=0)  # one more than runs
                requests = [
                    _request(run, None, views, space[at:])
                    for run, at in zip(batch, starts, strict=False)
                ]
            else:
                requests = [_request(pieces_, targets, views) for pieces_ in batch]
            counts = self._read(fd, key, [(r.offset, r.buffers, r.nbytes) for r in requests])
            for request, count in zip(requests, counts, strict=True):
                if count != request.nbytes:
                    short = f"object {key} ended after {request.offset + count} bytes"
                    raise self._damaged(info, shard, [request.pieces[0][2]], short)
            progress(sum(p[1] for r in requests for p in r.pieces))
            if check:
                job = functools.partial(self._check, requests, info, shard, running, report, keep)
                if checksums is None:
                    job()
                else:
                    checksums.run(job)

    def _check_pages(
        self,
        fd: int,
        info: ArrayInfo,
        shard: int,
        runs: list[list[_Piece]],
        running: dict[int, tuple[int, int]],
        progress: Callable[[int], None],
    ) -> None:
        """Check ``runs`` of a local file where its pages lie: mapped, never copied.

        Checksumming the page cache in place saves the copy into scratch memory a read makes:
        verifying GPT-2's 475 MiB on two threads took 65 ms with reads, 31 ms mapped (filling
        buffers reads: it is as fast, and reports a file cut short as a short read).  The size
        is checked first, since a mapped page past the end of the file would be a ``SIGBUS``,
        and the maps are gone when this returns, raising or not.  A file another program cuts
        short *while* its pages are checked still ends the process with ``SIGBUS``, as it does
        for safetensors and ``torch.load(mmap=True)``: restores accept that for the speed
        (FORMAT.md section 8); ``ckptlab verify`` never maps.
        """
        size, end = os.fstat(fd).st_size, max(run[-1][0] + run[-1][1] for run in runs)
        if size < end:  # cut short since it was opened
            short = f"object {shard_key(info.path, shard)} ended after {size} bytes"
            raise self._damaged(info, shard, [runs[0][0][2]], short)
        requests = [_mapped(fd, run) for run in runs]
        try:
            progress(sum(r.nbytes for r in requests))
            self._check(requests, info, shard, running, None, False)
        finally:  # views outliving the call (in a traceback) would keep the maps
            for request in requests:
                for view in (*request.holders, *request.buffers):
                    view.release()

    def _check(
        self,
        requests: list[_Request],
        info: ArrayInfo,
        shard: int,
        running: dict[int, tuple[int, int]],
        report: list[tuple[str, str]] | None,
        keep: bool,
    ) -> None:
        """Checksum what ``requests`` read (blocks read in part carry over in ``running``).

        ``keep``: keep the bytes of each whole value that checks out (see :data:`KEEP_BYTES`).
        """
        table, block = self.table, self.block
        crcs, keys = table.crcs, table.keys_
        key = shard_key(info.path, shard)
        for request in requests:
            for (_, length, row, start, last), data in zip(
                request.pieces, request.holders, strict=True
            ):
                if row in self._verified:
                    continue
                crc, began = running.pop(row) if start % block else (0, shard)
                crc = crc32c.crc32c(data, crc)
                end = start + length
                if end % block and not last:
                    running[row] = (crc, began)
                elif crc != crcs[row][(end - 1) // block]:
                    where = shard_key(info.path, began)
                    if began != shard:
                        where += f" to {key}"
                    if report is None:
                        raise self._corrupt(keys[row], info.path, where)
                    if not report or report[-1][0] != keys[row]:
                        report.append((keys[row], where))
                elif keep and last and not start:  # a whole value, verified
                    self._kept[row] = data

    def _read(
        self, fd: int | None, key: str, requests: list[tuple[int, list[Any], int]]
    ) -> list[int]:
        """Scatter reads ``(offset, buffers, their total size)`` of one stored object."""
        if fd is not None:
            return [preadv_all(fd, buffers, offset, n) for offset, buffers, n in requests]
        full = posixpath.join(self.checkpoint.path, key)
        try:
            return self.store.read_ranges([(full, o, b) for o, b, _ in requests])
        except NotFoundError:
            raise CorruptCheckpointError(
                f"Checkpoint {self.checkpoint.display_path} is damaged: object {key} is missing. "
                "Restore from another checkpoint."
            ) from None

    # -- errors -----------------------------------------------------------------------------

    def _corrupt(self, key: str, array: str, shard: str) -> CkptlabError:
        return self.checkpoint.unreadable(key, f"checksum mismatch in {shard}", array)

    def _damaged(self, info: ArrayInfo, shard: int, rows: Sequence[int], what: str) -> CkptlabError:
        key = self.table.keys_[rows[0]] if rows else "?"
        return self.checkpoint.unreadable(key, what, info.path)


def _halfway(rounds: list[_Round], block: int | None) -> int:
    """The round boundary nearest the middle that splits no checksum block (``None``: any).

    Every checksum block is then read and checked by one thread: a boundary is clean when the
    last piece before it ends its value or a block.
    """

    def clean(boundary: int) -> bool:
        _, length, _, start, last = rounds[boundary - 1].runs[-1][-1]
        return block is None or last or (start + length) % block == 0

    middle = len(rounds) // 2
    for distance in range(len(rounds)):
        for boundary in (middle - distance, middle + distance):
            if 0 < boundary < len(rounds) and clean(boundary):
                return boundary
    return len(rounds)


def _runs(found: list[_Piece], gap: int, limit: int, most: int) -> list[list[_Piece]]:
    """Pieces one request fetches: neighbours closer than ``gap``, at most ``limit`` bytes.

    A run holds at most ``most`` pieces (locally: what one ``preadv`` takes, gaps included).
    """
    runs: list[list[_Piece]] = []
    current: list[_Piece] = []
    size, end = 0, 0
    for piece in found:
        if current and (
            size + piece[1] > limit
            or piece[0] - end > gap
            or piece[0] < end
            or len(current) >= most
        ):
            runs.append(current)
            current, size = [], 0
        current.append(piece)
        size += piece[1]
        end = piece[0] + piece[1]
    if current:
        runs.append(current)
    return runs


def _rounds(runs: list[list[_Piece]], limit: int) -> list[list[list[_Piece]]]:
    """Runs read together (concurrently on object stores), about ``limit`` bytes at a time."""
    rounds: list[list[list[_Piece]]] = []
    size = limit
    for run in runs:
        run_bytes = run[-1][0] + run[-1][1] - run[0][0]
        if size + run_bytes > limit:
            rounds.append([])
            size = 0
        rounds[-1].append(run)
        size += run_bytes
    return rounds


class _Round(NamedTuple):
    """Runs of one stored object read together: ``(info, shard, open file or None, runs)``."""

    info: ArrayInfo
    shard: int
    fd: int | None
    runs: list[list[_Piece]]


@dataclass(slots=True)
class _Request:
    """One scatter read: a run of pieces into their holders, gaps into scratch."""

    offset: int
    buffers: list[Any]
    nbytes: int
    pieces: list[_Piece]
    holders: list[Any]


def _mapped(fd: int, run: list[_Piece]) -> _Request:
    """A run of a local file as views of its mapped pages (see ``PackedValues._check_pages``).

    The request's one buffer is the whole mapping; the map ends once it and the holders are
    released.  A file system that cannot map files (FUSE with direct I/O: ``ENODEV``) gets
    the run read into scratch memory instead (bytes missing from a short read stay zero and
    fail their checksums).
    """
    base = run[0][0]
    end = run[-1][0] + run[-1][1]
    start = base - base % mmap.ALLOCATIONGRANULARITY
    flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)  # one fault for the whole run
    try:
        pages = memoryview(mmap.mmap(fd, end - start, flags, mmap.PROT_READ, offset=start))
    except OSError:
        pages = memoryview(bytearray(end - start))
        preadv_all(fd, [pages], start, end - start)
    holders = [pages[offset - start : offset - start + length] for offset, length, *_ in run]
    return _Request(base, [pages], end - base, run, holders)


def _request(
    run: list[_Piece],
    targets: Mapping[int, Array] | None,
    views: dict[int, memoryview],
    space: memoryview | None = None,
) -> _Request:
    base = run[0][0]
    span = run[-1][0] + run[-1][1] - base
    if targets is None:  # verification: one scratch buffer for the whole run
        scratch = memoryview(bytearray(span)) if space is None else space[:span]
        holders: list[Any] = [scratch[o - base : o - base + n] for o, n, *_ in run]
        return _Request(base, [scratch], span, run, holders)
    buffers: list[Any] = []
    holders = []
    end = base
    for offset, length, row, start, _ in run:
        if offset > end:
            buffers.append(bytearray(offset - end))
        target = targets[row]
        if start == 0 and length == target.nbytes:
            holder: Any = target  # the whole value: its own array is the buffer
        else:
            view = views.get(row)
            if view is None:
                view = views[row] = raw_bytes(target)
            holder = view[start : start + length]
        buffers.append(holder)
        holders.append(holder)
        end = offset + length
    return _Request(base, buffers, span, run, holders)
