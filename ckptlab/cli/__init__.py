"""The ``ckptlab`` command line: inspect, compare, verify and export checkpoints.

``ckptlab ls PATH``, ``ckptlab diff A B``, ``ckptlab verify PATH``, ``ckptlab export PATH
--format json|dot|svg`` (and ``ckptlab convert SRC DST`` when the converters are installed).
Every command takes ``--color auto|always|never``; ``ls``, ``diff`` and ``verify`` take
``--json`` for scripts.  Exit status: 0 success (equal, intact), 1 problems found (differences,
damaged or unreadable checkpoint, a failing Graphviz ``dot``), 2 usage error or missing path,
3 a required program is not installed, 130 interrupted (Ctrl-C).  See docs/cli.md.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import IO

from ckptlab import __version__
from ckptlab.cli import _diff, _export, _ls, _verify
from ckptlab.cli._common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CommandError,
    Output,
)
from ckptlab.cli._style import Style, wants_color
from ckptlab.core import printable
from ckptlab.errors import CkptlabError, InvalidArgumentError, NotACheckpointError, NotFoundError

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PROBLEMS",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "build_parser",
    "main",
]

EPILOG = """exit status:
  0  success (for diff: equal; for verify: every value intact)
  1  problems found: differences (diff), damaged values (verify), an unreadable checkpoint,
     or Graphviz's dot failed (export --format svg)
  2  usage error, or a path that does not exist or is not a checkpoint
  3  a required program is not installed (export --format svg needs Graphviz's dot)
  130  interrupted (Ctrl-C)

colour: on a terminal only; NO_COLOR=1 or --color never turns it off."""


def _common_parents() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    color = argparse.ArgumentParser(add_help=False)
    color.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour: auto (default; only on a terminal, off with NO_COLOR), always, never",
    )
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument(
        "--json", action="store_true", help="print one JSON document (for scripts)"
    )
    return color, as_json


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of ``ckptlab`` with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="ckptlab",
        description="Inspect, compare, verify and export ckptlab checkpoints.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ckptlab {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    color, as_json = _common_parents()
    _ls.add_parser(commands, [color, as_json])
    _diff.add_parser(commands, [color, as_json])
    _verify.add_parser(commands, [color, as_json])
    _export.add_parser(commands, [color])
    _add_convert(commands, [color, as_json])
    return parser


def _add_convert(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    try:
        convert = importlib.import_module("ckptlab.cli._convert")
    except ImportError:  # the converters are not part of this installation
        return
    convert.add_parser(commands, parents)


def main(argv: Sequence[str] | None = None, stdout: IO[str] | None = None) -> int:
    """Run ``ckptlab`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    stream = stdout if stdout is not None else sys.stdout
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and usage errors
        return int(exit_.code or 0)
    style = Style(wants_color(args.color, stream))
    out = Output(stream, style, json_mode=getattr(args, "json", False))
    errors = Style(wants_color(args.color, sys.stderr))  # --color applies to errors too
    try:
        return int(args.run(args, out))
    except CommandError as error:
        return _fail(errors, str(error), error.code)
    except (NotFoundError, NotACheckpointError, InvalidArgumentError) as error:  # no checkpoint
        return _fail(errors, str(error), EXIT_USAGE)  # there, or an argument is wrong: usage
    except CkptlabError as error:
        return _fail(errors, str(error), EXIT_PROBLEMS)
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback (convert publishes atomically)
        return _fail(errors, "interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:  # e.g. `ckptlab ls big | head`: the reader left, stop quietly
        if stream is sys.stdout:  # no second EPIPE when Python flushes stdout at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _fail(style: Style, message: str, code: int) -> int:
    print(f"{style.red('ckptlab: error:')} {printable(message)}", file=sys.stderr)
    return code
