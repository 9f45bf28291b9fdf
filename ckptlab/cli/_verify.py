"""``ckptlab verify``: read every value and check every checksum; exit 1 on any damage."""

from __future__ import annotations

import argparse
import os
import posixpath
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ckptlab.cli._common import EXIT_OK, EXIT_PROBLEMS, Output, open_target
from ckptlab.cli._style import human_bytes
from ckptlab.core import printable, total_nbytes
from ckptlab.errors import CkptlabError, NotFoundError, UnsupportedFormatError

if TYPE_CHECKING:
    from ckptlab.storage import StoredCheckpoint


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``verify`` on the ``commands`` subparsers object."""
    parser = commands.add_parser(
        "verify",
        parents=parents,
        help="check every value's checksum (exit 1 on damage)",
        description="Read every value of a checkpoint and check its crc32c checksums and sizes. "
        "Reports every damaged value, not only the first. Exit status 0 when intact, 1 when "
        "anything is damaged. A checkpoint directory resolves to its latest checkpoint.",
    )
    parser.add_argument(
        "path", help="a checkpoint, or a directory holding a 'checkpoint' state file"
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="for a checkpoint directory: verify every checkpoint it holds or its state file lists",
    )
    parser.set_defaults(run=run)


@dataclass(slots=True)
class Verification:
    """The outcome of verifying one checkpoint."""

    path: str
    checked: int = 0
    nbytes: int = 0
    seconds: float = 0.0
    damaged: list[tuple[str, str]] = field(default_factory=list)
    """(key, message) of every value that could not be read back intact."""
    problems: list[str] = field(default_factory=list)
    """Problems in the stored files (chunks, padding, array metadata), one line each."""
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    """(key, message) of values of a dtype numpy has no type for (listed, never read): not
    checked, and not damage."""
    checksums: bool = True
    """Whether the format carries checksums; without them only sizes and bounds are checked."""

    @property
    def ok(self) -> bool:
        """Whether nothing is wrong."""
        return not self.damaged and not self.problems

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {
            "path": self.path,
            "ok": self.ok,
            "values_checked": self.checked,
            "bytes_checked": self.nbytes,
            "seconds": round(self.seconds, 6),
            "checksums": self.checksums,
            "damaged": [{"key": k, "error": m} for k, m in self.damaged],
            "problems": list(self.problems),
            "unreadable": [{"key": k, "error": m} for k, m in self.unreadable],
        }


def verify_checkpoint(source: StoredCheckpoint) -> Verification:
    """Check every byte of ``source``; collect (do not raise) every problem.

    A ckptlab checkpoint goes through the storage layer's full verification (every chunk whole,
    padding included, and every array's ``zarr.json``); the values in any damaged array are
    then read one by one to name the damaged keys.  A foreign checkpoint (TensorFlow, torch,
    safetensors) is checked by reading every value through its reader's checksums.
    """
    from ckptlab.storage import verify_checkpoint as storage_verify

    result = Verification(source.display_path, checksums=getattr(source, "checksums", True))
    start = time.perf_counter()
    values = source.document.values
    suspects = sorted(values)
    if source.document.format_version > 0:
        result.problems = storage_verify(source.store, source.path)
        broken = {p.split(":", 1)[0] for p in result.problems}  # "data/float32" (its shards
        # missing), "data/float32/3" (one shard): the array itself, or something below it
        held = {k: values[k].array for k in suspects} if broken else {}
        hit = {
            a for a in set(held.values()) if any(b == a or b.startswith(f"{a}/") for b in broken)
        }
        suspects = [k for k, array in held.items() if array in hit]
    for key in suspects:
        try:
            source.read(key)
        except UnsupportedFormatError as error:  # a dtype numpy has no type for
            result.unreadable.append((key, str(error)))
        except CkptlabError as error:
            result.damaged.append((key, str(error)))
    result.checked = len(values) - len(result.unreadable)
    result.nbytes = total_nbytes(values)
    result.seconds = time.perf_counter() - start
    return result


def every_checkpoint(path: str) -> tuple[list[tuple[str, bool]], str | None]:
    """Every checkpoint of the directory ``path``, with whether its state file lists it.

    Those the state file lists (``all_model_checkpoint_paths`` and the latest), and every
    ckptlab checkpoint in the directory besides (one ``Checkpoint.save`` no longer lists, one
    ``keep_checkpoint_every_n_hours`` kept), in natural order (``ckpt-2`` before ``ckpt-10``).
    Empty when ``path`` is a checkpoint itself or holds none.  Also why the state file cannot
    be read (``None`` when it can, or there is none): such a state file lists nothing, and the
    checkpoints in the directory are found all the same.
    """
    from ckptlab.storage import is_committed, join_listed, read_state, resolve

    store, directory = resolve(os.fspath(path))
    if is_committed(store, directory):
        return [], None
    damage = None
    try:
        state = read_state(store, directory)
    except CkptlabError as error:  # damaged, or a directory where it belongs
        state, damage = None, str(error)
    listed = [join_listed(path, p) for p in (*state.all_paths, state.latest)] if state else []
    found = {
        join_listed(path, entry): False
        for entry in store.list_dir(directory)
        if not entry.startswith(".") and is_committed(store, posixpath.join(directory, entry))
    }
    every = {**found, **dict.fromkeys(listed, True)}  # in the state file: must be there
    return sorted(every.items(), key=lambda item: _natural(item[0])), damage


def _natural(path: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path)]


def _verify_every(path: str) -> tuple[list[Verification], list[str]]:
    """``verify --all``: each checkpoint of the directory, and the directory's own problems.

    Each checkpoint is reported on its own: a listed one that is gone, or one that cannot be
    opened (a damaged document), fails without stopping the others.  A state file that cannot
    be read is a problem of the directory; the checkpoints found in it are verified still.
    """
    checkpoints, damage = every_checkpoint(path)
    problems = (
        [] if damage is None else [f"state file not read, checkpoints found by listing: {damage}"]
    )
    results = []
    for target, listed in checkpoints:
        try:
            results.append(verify_checkpoint(open_target(target)[0]))
        except NotFoundError as error:
            if listed:
                results.append(Verification(target, problems=[f"listed but missing: {error}"]))
            # else: a Zarr group of someone else's, not a checkpoint
        except CkptlabError as error:  # its document is damaged, or its storage refuses
            results.append(Verification(_shown(target), problems=[str(error)]))
    return results, problems


def _shown(target: str) -> str:
    """``target`` as a verified checkpoint's path is shown (the store's display of its key)."""
    from ckptlab.storage import resolve

    store, key = resolve(target)
    return store.display(key)


def run(args: argparse.Namespace, out: Output) -> int:
    """Verify ``args.path`` (or every checkpoint of a directory with ``--all``)."""
    results, problems = _verify_every(args.path) if args.all else ([], [])
    if not results and not problems:
        results = [verify_checkpoint(open_target(args.path)[0])]
    failed = bool(problems) or not all(r.ok for r in results)
    if out.json:
        checked = [r.to_json() for r in results]
        out.emit_json({"ok": not failed, "problems": problems, "checkpoints": checked})
        return EXIT_PROBLEMS if failed else EXIT_OK
    for problem in problems:
        out.line(f"{out.style.red('PROBLEM')} {printable(problem)}")
    for result in results:
        _print_result(result, out)
    return EXIT_PROBLEMS if failed else EXIT_OK


def _print_result(result: Verification, out: Output) -> None:
    style = out.style
    path = printable(result.path)
    for key, message in result.damaged:
        out.line(f"{style.red('DAMAGED')} {printable(key)}")
        out.line(f"  {printable(message)}")
    for problem in result.problems:
        out.line(f"{style.red('PROBLEM')} {printable(problem)}")
    for key, message in result.unreadable:
        out.line(f"{style.yellow('UNREADABLE')} {printable(key)} (not checked)")
        out.line(f"  {printable(message)}")
    size = human_bytes(result.nbytes)
    counts = f"{result.checked} values, {size} checked in {result.seconds:.2f} s"
    if result.ok and not result.checksums:
        out.line(
            f"{style.yellow('UNVERIFIED')} {path}: no checksums in this format; {result.checked} "
            f"values, {size} read and their sizes checked in {result.seconds:.2f} s"
        )
        return
    if result.ok:
        out.line(f"{style.green('OK')} {path}: {counts}")
        return
    found = f"{len(result.damaged)} damaged values, {len(result.problems)} problems in files"
    out.line(style.red(f"FAILED {path}: {found}; {counts}"))
