"""``ckptlab convert SRC DST``: write any checkpoint ckptlab reads as a ckptlab checkpoint.

Sources: TensorFlow (TF2 object-based and TF1 ``Saver`` checkpoints), ``torch.save`` files
(read by a restricted unpickler that runs no code), safetensors files, and ckptlab checkpoints.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from ckptlab.cli._common import EXIT_OK, EXIT_USAGE, CommandError, Output, open_target
from ckptlab.cli._style import human_bytes

if TYPE_CHECKING:
    from ckptlab import KeyMap


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``convert`` on the ``commands`` subparsers object."""
    parser = commands.add_parser(
        "convert",
        parents=parents,
        help="convert a TensorFlow, PyTorch or safetensors checkpoint to ckptlab",
        description="Write SRC (a TensorFlow prefix or .index file, a torch.save file, a "
        "safetensors file, or a ckptlab checkpoint) as a ckptlab checkpoint at DST. Formats are "
        "detected by content. torch files are read by a restricted unpickler that runs no code.",
    )
    parser.add_argument("src", help="the checkpoint to read")
    parser.add_argument("dst", help="where to write the ckptlab checkpoint (exactly this path)")
    parser.add_argument(
        "--rename",
        action="append",
        default=[],
        metavar="PATTERN=REPLACEMENT",
        help="rename values while converting (regular expression substitution; repeatable)",
    )
    parser.add_argument(
        "--transpose",
        action="append",
        default=[],
        metavar="PATTERN",
        help="transpose 2-D values whose renamed name matches PATTERN (repeatable)",
    )
    parser.add_argument(
        "--skip-unsupported",
        action="store_true",
        help="leave out values ckptlab cannot store (strings, float8, int4) instead of failing",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    parser.set_defaults(run=run)


def key_map(renames: list[str], transposes: list[str]) -> KeyMap | None:
    """The :class:`ckptlab.KeyMap` described by ``--rename`` and ``--transpose`` options."""
    if not renames and not transposes:
        return None
    rules = []
    for rule in renames:
        pattern, sep, replacement = rule.partition("=")
        if not sep or not pattern:
            raise CommandError(f"--rename expects PATTERN=REPLACEMENT, got {rule!r}", EXIT_USAGE)
        rules.append((pattern, replacement))
    from ckptlab import KeyMap

    return KeyMap(rules, transpose=transposes)


def run(args: argparse.Namespace, out: Output) -> int:
    """Convert ``args.src`` to ``args.dst``."""
    from ckptlab import convert

    if os.path.lexists(args.dst) and not args.overwrite:
        raise CommandError(f"{args.dst} already exists; pass --overwrite to replace it", EXIT_USAGE)
    mapping = key_map(args.rename, args.transpose)
    written = convert(args.src, args.dst, key_map=mapping, skip_unsupported=args.skip_unsupported)
    result, _ = open_target(written)
    values = result.document.values
    total = sum(v.nbytes for v in values.values())
    if out.json:
        out.emit_json(
            {
                "src": os.fspath(args.src),
                "dst": result.display_path,
                "kind": result.document.kind,
                "num_values": len(values),
                "total_bytes": total,
            }
        )
        return EXIT_OK
    kind = "object-based" if result.document.kind == "object" else "name-based"
    out.line(
        f"{out.style.green('wrote')} {result.display_path}: {kind}, {len(values)} values, "
        f"{human_bytes(total)} (from {args.src})"
    )
    return EXIT_OK
