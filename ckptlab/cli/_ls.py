"""``ckptlab ls``: a checkpoint's objects and values as a tree (or flat keys, or JSON)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ckptlab.cli._common import Output, open_target
from ckptlab.cli._style import Style, describe_shape, human_bytes
from ckptlab.cli._tree import TreeNode, build_tree, value_json
from ckptlab.core import printable, total_nbytes

if TYPE_CHECKING:
    from ckptlab.storage import StoredCheckpoint


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``ls`` on the ``commands`` subparsers object."""
    parser = commands.add_parser(
        "ls",
        parents=parents,
        help="list a checkpoint's objects and values",
        description="List a checkpoint as a tree of objects with the shape, dtype and size of "
        "every value. A checkpoint directory resolves to its latest checkpoint.",
    )
    parser.add_argument(
        "path", help="a checkpoint, or a directory holding a 'checkpoint' state file"
    )
    parser.add_argument(
        "--keys", action="store_true", help="print flat value keys instead of a tree"
    )
    parser.add_argument(
        "--slots", action="store_true", help="list optimizer slot variables one by one"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, out: Output) -> int:
    """List ``args.path``."""
    source, resolved_from = open_target(args.path)
    tree = build_tree(source.document)
    if out.json:
        out.emit_json(_json(source, tree, resolved_from))
        return 0
    _header(source, tree, resolved_from, out)
    if args.keys:
        for key, value in sorted(source.document.values.items()):
            shape = out.style.cyan(f"{describe_shape(value.shape)} {value.dtype}")
            out.line(f"{printable(key)}  {shape}  {out.style.dim(human_bytes(value.nbytes))}")
        return 0
    for line in render_tree(tree, out.style, expand_slots=args.slots):
        out.line(line)
    return 0


def _header(
    source: StoredCheckpoint, tree: TreeNode, resolved_from: str | None, out: Output
) -> None:
    values = source.document.values
    total = total_nbytes(values)
    kind = "object-based" if source.document.kind == "object" else "name-based"
    version = source.document.format_version
    fmt = (
        f"format {version}"
        if version
        else printable(str(source.document.writer.get("format", "foreign")))
    )
    out.line(out.style.bold(printable(source.display_path)))
    if resolved_from is not None:
        out.line(out.style.dim(f"  latest checkpoint of {printable(resolved_from)}"))
    out.line(out.style.dim(f"  {kind}, {fmt}, {len(values)} values, {human_bytes(total)}"))


def _json(source: StoredCheckpoint, tree: TreeNode, resolved_from: str | None) -> dict[str, Any]:
    values = source.document.values
    return {
        "path": source.display_path,
        "resolved_from": resolved_from,
        "kind": source.document.kind,
        "format_version": source.document.format_version,
        "source_format": source.document.writer.get("format"),
        "num_values": len(values),
        "total_bytes": total_nbytes(values),
        "values": [value_json(values[k]) for k in sorted(values)],
        "tree": tree.to_json(),
    }


def render_tree(root: TreeNode, style: Style, *, expand_slots: bool) -> list[str]:
    """Render the tree as text lines with box-drawing branches."""
    lines = [style.bold(root.name)]
    _render_children(root, "", style, expand_slots, lines)
    return lines


def _render_children(
    node: TreeNode, prefix: str, style: Style, expand_slots: bool, lines: list[str]
) -> None:
    width = max((len(printable(c.name)) for c in node.children), default=0)
    for index, child in enumerate(node.children):
        last = index == len(node.children) - 1
        branch, extend = ("└── ", "    ") if last else ("├── ", "│   ")
        lines.append(prefix + branch + _label(child, width, style, expand_slots))
        if child.kind == "object" or (child.kind == "slots" and expand_slots):
            _render_children(child, prefix + extend, style, expand_slots, lines)


def _label(node: TreeNode, width: int, style: Style, expand_slots: bool) -> str:
    name = printable(node.name).ljust(width)
    if node.kind == "alias":
        shown = printable(node.alias_of or "?")
        return f"{name}  {style.dim('-> ' + shown + ' (shared object)')}"
    if node.kind == "value":
        if node.value is None:
            return f"{name}  {style.red('(value missing from the document)')}"
        spec = style.cyan(f"{describe_shape(node.value.shape)} {node.value.dtype}")
        return f"{name}  {spec}  {style.dim(human_bytes(node.value.nbytes))}"
    values = list(node.values())
    summary = f"{len(values)} values, {human_bytes(sum(v.nbytes for v in values))}"
    if node.kind == "slots":
        hint = "" if expand_slots else " (--slots lists them)"
        return f"{style.bold(name)}  {style.dim('optimizer slot, ' + summary + hint)}"
    kind = f"{printable(node.type_name)}, " if node.type_name else ""
    return f"{style.bold(name)}  {style.dim(kind + summary)}"
