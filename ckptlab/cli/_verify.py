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
    """(key, message) of every value that failed."""

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {
            "path": self.path,
            "ok": not self.damaged,
            "values_checked": self.checked,
            "bytes_checked": self.nbytes,
            "seconds": round(self.seconds, 6),
            "damaged": [{"key": k, "error": m} for k, m in self.damaged],
        }


def verify_checkpoint(source: StoredCheckpoint) -> Verification:
    """Read every value of ``source``; collect (do not raise) every damaged one."""
    result = Verification(source.display_path)
    start = time.perf_counter()
    for key, value in sorted(source.document.values.items()):
        try:
            source.read(key)
        except CkptlabError as error:
            result.damaged.append((key, str(error)))
        else:
            result.checked += 1
            result.nbytes += value.nbytes
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
    failed = any(r.damaged for r in results)
    if out.json:
        out.emit_json({"ok": not failed, "checkpoints": [r.to_json() for r in results]})
        return EXIT_PROBLEMS if failed else EXIT_OK
    style = out.style
    for result in results:
        for key, message in result.damaged:
            out.line(f"{style.red('DAMAGED')} {key}")
            out.line(f"  {message}")
        size = human_bytes(result.nbytes)
        counts = f"{result.checked} values, {size} verified in {result.seconds:.2f} s"
        if result.damaged:
            out.line(style.red(f"FAILED {result.path}: {len(result.damaged)} damaged, {counts}"))
        else:
            out.line(f"{style.green('OK')} {result.path}: {counts}")
    return EXIT_PROBLEMS if failed else EXIT_OK
