"""``ckptlab verify``: read every value and check every checksum; exit 1 on any damage."""

from __future__ import annotations

import argparse
import os
import posixpath
import time
from dataclasses import dataclass, field
from typing import Any

from ckptlab.cli._common import EXIT_OK, EXIT_PROBLEMS, Output, open_target
from ckptlab.cli._style import human_bytes
from ckptlab.errors import CkptlabError
from ckptlab.storage import STATE_FILENAME, StoredCheckpoint, read_state, resolve
from ckptlab.storage import verify_checkpoint as storage_verify


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
        help="for a checkpoint directory: verify every checkpoint its state file lists",
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
    checksum: str | None = "crc32c"
    """What the values were checked against; ``None``: the format has no checksums, so only
    sizes and offsets were checked (reported as such, never as "OK")."""
    source_format: str = ""

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
            "checksums": self.checksum,
            "damaged": [{"key": k, "error": m} for k, m in self.damaged],
            "problems": list(self.problems),
        }


def verify_checkpoint(source: StoredCheckpoint) -> Verification:
    """Check every byte of ``source``; collect (do not raise) every problem.

    A ckptlab checkpoint goes through the storage layer's full verification (every chunk whole,
    padding included, and every array's ``zarr.json``); the values in any damaged array are
    then read one by one to name the damaged keys.  A foreign checkpoint (TensorFlow, torch,
    safetensors) is checked by reading every value through its reader's checksums.
    """
    result = Verification(source.display_path, checksum=source.checksum)
    result.source_format = str(source.document.writer.get("format", ""))
    start = time.perf_counter()
    values = source.document.values
    suspects = sorted(values)
    if source.document.format_version > 0:
        result.problems = storage_verify(source.store, source.path)
        broken = {p.split(":", 1)[0] for p in result.problems}
        suspects = [k for k in suspects if any(b.startswith(f"{values[k].array}/") for b in broken)]
    for key in suspects:
        try:
            source.read(key)
        except CkptlabError as error:
            result.damaged.append((key, str(error)))
    result.checked = len(values)
    result.nbytes = sum(v.nbytes for v in values.values())
    result.seconds = time.perf_counter() - start
    return result


def _targets(path: str, every: bool) -> list[StoredCheckpoint]:
    if every:
        store, directory = resolve(os.fspath(path))
        state = (
            read_state(store, directory) if store.exists(f"{directory}/{STATE_FILENAME}") else None
        )
        if state is not None:
            return [open_target(_join(path, p))[0] for p in state.all_paths or (state.latest,)]
    return [open_target(path)[0]]


def _join(directory: str, relative: str) -> str:
    if posixpath.isabs(relative) or "://" in relative:
        return relative
    return posixpath.join(directory.rstrip("/"), relative)


def run(args: argparse.Namespace, out: Output) -> int:
    """Verify ``args.path`` (or every checkpoint of a directory with ``--all``)."""
    results = [verify_checkpoint(source) for source in _targets(args.path, args.all)]
    failed = not all(r.ok for r in results)
    if out.json:
        out.emit_json({"ok": not failed, "checkpoints": [r.to_json() for r in results]})
        return EXIT_PROBLEMS if failed else EXIT_OK
    for result in results:
        _print_result(result, out)
    return EXIT_PROBLEMS if failed else EXIT_OK


def _print_result(result: Verification, out: Output) -> None:
    style = out.style
    for key, message in result.damaged:
        out.line(f"{style.red('DAMAGED')} {key}")
        out.line(f"  {message}")
    for problem in result.problems:
        out.line(f"{style.red('PROBLEM')} {problem}")
    size = human_bytes(result.nbytes)
    counts = f"{result.checked} values, {size} checked in {result.seconds:.2f} s"
    if result.ok and result.checksum is None:
        out.line(
            f"{style.yellow('NO CHECKSUMS')} {result.path}: no checksums in this format "
            f"({result.source_format}); {result.checked} values, {size} read in "
            f"{result.seconds:.2f} s, but only their sizes and offsets could be checked"
        )
        return
    if result.ok:
        out.line(f"{style.green('OK')} {result.path}: {counts}")
        return
    found = f"{len(result.damaged)} damaged values, {len(result.problems)} problems in files"
    out.line(style.red(f"FAILED {result.path}: {found}; {counts}"))
