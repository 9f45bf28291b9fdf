"""``ckptlab convert SRC DST``: write any checkpoint ckptlab reads as ckptlab or safetensors.

Sources: TensorFlow (TF2 object-based and TF1 ``Saver`` checkpoints), ``torch.save`` files
(read by a restricted unpickler that runs no code), safetensors files, Hugging Face model
directories, PyTorch Distributed Checkpoints, Keras 3 weights, Orbax checkpoints, GGUF files and
ckptlab checkpoints.  ``--to safetensors`` writes safetensors (``--max-shard-size`` shards it).
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from ckptlab.cli._common import EXIT_OK, EXIT_USAGE, CommandError, Output, open_target
from ckptlab.cli._style import human_bytes
from ckptlab.core import printable, total_nbytes
from ckptlab.errors import CkptlabError, StorageExistsError

if TYPE_CHECKING:
    from ckptlab import KeyMap


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``convert`` on the ``commands`` subparsers object."""
    parser = commands.add_parser(
        "convert",
        parents=parents,
        help="convert any checkpoint ckptlab reads to ckptlab or safetensors",
        description="Write SRC (a TensorFlow prefix or .index file, a torch.save or safetensors "
        "file, a Hugging Face model directory, a PyTorch Distributed Checkpoint, a Keras 3 "
        ".weights.h5/.keras file, an Orbax checkpoint, a GGUF file, or a ckptlab checkpoint) as "
        "a ckptlab checkpoint at DST, or with --to safetensors as safetensors (DST a directory, "
        "or a file ending in .safetensors). Formats are detected by content. torch files are "
        "read by a restricted unpickler that runs no code.",
    )
    parser.add_argument("src", help="the checkpoint to read")
    parser.add_argument("dst", help="where to write (exactly this path)")
    parser.add_argument(
        "--to",
        choices=("ckptlab", "safetensors"),
        default="ckptlab",
        help="the format to write (default: ckptlab)",
    )
    parser.add_argument(
        "--max-shard-size",
        metavar="SIZE",
        help="with --to safetensors: shard above SIZE bytes (e.g. 5GB, 500MiB) with an index",
    )
    parser.add_argument(
        "--root",
        metavar="PATH",
        help="with --to safetensors: export the values under this object (e.g. model), named "
        "by their dotted paths below it as in a PyTorch state_dict (encoder.0.weight)",
    )
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

    try:
        return KeyMap(rules, transpose=transposes)
    except ValueError as error:  # a pattern that is not a regular expression
        raise CommandError(str(error), EXIT_USAGE) from None


def run(args: argparse.Namespace, out: Output) -> int:
    """Convert ``args.src`` to ``args.dst``."""
    from ckptlab import convert
    from ckptlab.storage import occupied, resolve

    exists = occupied(*resolve(os.fspath(args.dst)))  # a local path or an object-store URL
    if exists and args.to == "safetensors":  # never deletes a user's folder
        raise CommandError(
            f"{args.dst} already exists; --to safetensors writes to a new path only "
            "(--overwrite replaces ckptlab checkpoints, never a folder that may hold a model's "
            "other files): remove it first or choose another DST",
            EXIT_USAGE,
        )
    if exists and not args.overwrite:
        raise CommandError(f"{args.dst} already exists; pass --overwrite to replace it", EXIT_USAGE)
    for given, flag in ((args.max_shard_size, "--max-shard-size"), (args.root, "--root")):
        if given is not None and args.to != "safetensors":
            raise CommandError(f"{flag} needs --to safetensors", EXIT_USAGE)
    mapping = key_map(args.rename, args.transpose)
    try:
        written = convert(
            args.src,
            args.dst,
            key_map=mapping,
            skip_unsupported=args.skip_unsupported,
            format=args.to,
            max_shard_size=args.max_shard_size,
            root=args.root,
        )
    except StorageExistsError as error:  # not a checkpoint at DST (--overwrite replaces those)
        raise CommandError(str(error), EXIT_USAGE) from None
    except ValueError as error:
        if isinstance(error, CkptlabError):
            raise
        raise CommandError(str(error), EXIT_USAGE) from None
    result, _ = open_target(written)
    values = result.document.values
    total = total_nbytes(values)
    if out.json:
        out.emit_json(
            {
                "src": os.fspath(args.src),
                "dst": result.display_path,
                "format": args.to,
                "kind": result.document.kind,
                "num_values": len(values),
                "total_bytes": total,
            }
        )
        return EXIT_OK
    kind = "object-based" if result.document.kind == "object" else "name-based"
    if args.to == "safetensors":
        kind = "safetensors"
    out.line(
        f"{out.style.green('wrote')} {printable(result.display_path)}: {kind}, {len(values)} "
        f"values, {human_bytes(total)} (from {printable(os.fspath(args.src))})"
    )
    return EXIT_OK
