"""``ckptlab export``: the object graph as JSON, Graphviz DOT, or SVG (through Graphviz's ``dot``).

JSON and DOT are written by ckptlab itself and need nothing installed.  SVG runs the ``dot``
program from Graphviz and says clearly when it is not installed.  Every name in a checkpoint is
untrusted text: it is escaped in DOT, and Graphviz escapes it again in SVG.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from typing import TYPE_CHECKING, Any

from ckptlab.cli._common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CommandError,
    Output,
    open_target,
)
from ckptlab.cli._style import describe_shape
from ckptlab.cli._tree import TreeNode, build_tree, value_json
from ckptlab.core import CheckpointDocument, ObjectGraph
from ckptlab.inspect import dot_string

if TYPE_CHECKING:
    from ckptlab.storage import StoredCheckpoint

GRAPH_FORMAT = "ckptlab.graph"
GRAPH_VERSION = 1
FILL = {"object": "#eceff1", "value": "#e3f2fd", "optimizer": "#fff3e0"}


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``export`` on the ``commands`` subparsers object."""
    parser = commands.add_parser(
        "export",
        parents=parents,
        help="write the object graph as JSON, DOT or SVG",
        description="Write a checkpoint's object graph. json and dot need nothing installed; "
        "svg needs Graphviz's 'dot' program (apt-get install graphviz).",
    )
    parser.add_argument(
        "path", help="a checkpoint, or a directory holding a 'checkpoint' state file"
    )
    parser.add_argument(
        "--format", choices=("json", "dot", "svg"), default="json", help="default: json"
    )
    parser.add_argument("-o", "--output", help="write to this file instead of standard output")
    parser.set_defaults(run=run)


def graph_data(source: StoredCheckpoint) -> dict[str, Any]:
    """Nodes (with their values) and edges (children and optimizer slots) as plain data."""
    document = source.document
    if document.graph is not None:
        nodes, edges = _object_graph(document, document.graph)
    else:
        nodes, edges = _key_tree(build_tree(document))
    return {
        "format": GRAPH_FORMAT,
        "version": GRAPH_VERSION,
        "path": source.display_path,
        "kind": document.kind,
        "nodes": nodes,
        "edges": edges,
    }


def _object_graph(document: CheckpointDocument, graph: ObjectGraph) -> tuple[list[Any], list[Any]]:
    paths = graph.paths()
    optimizer = graph.optimizer_nodes()
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    for node_id, node in enumerate(graph.nodes):
        where = paths[node_id]
        values = [
            {"attribute": a.name, **value_json(document.values[a.key])}
            for a in node.attributes
            if a.key in document.values
        ]
        nodes.append(
            {
                "id": node_id,
                "path": where.pretty if where is not None else None,
                "name": _display_name(where.path, where.slot)
                if where is not None
                else f"node {node_id}",
                "type": node.type_name,
                "optimizer": node_id in optimizer,
                "values": values,
            }
        )
        for local, child in node.children.items():
            edges.append(
                {
                    "source": node_id,
                    "target": child,
                    "kind": "child",
                    "name": local,
                }
            )
        for ref in node.slot_variables:
            edges.append(
                {
                    "source": node_id,
                    "target": ref.node,
                    "kind": "slot",
                    "name": ref.slot,
                    "variable": ref.original,
                }
            )
    return nodes, edges


def _display_name(path: tuple[str, ...], slot: tuple[tuple[str, ...], str] | None) -> str:
    if slot is not None:  # named with its variable: "m of model/dense/kernel"
        return f"{slot[1]} of {'/'.join(path)}"
    return path[-1] if path else "(root)"


def _key_tree(root: TreeNode) -> tuple[list[Any], list[Any]]:
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []

    def visit(node: TreeNode, path: str) -> int:
        node_id = len(nodes)
        values = (
            [{"attribute": "VALUE", **value_json(node.value)}] if node.value is not None else []
        )
        nodes.append(
            {
                "id": node_id,
                "path": path,
                "name": node.name,
                "type": "",
                "optimizer": False,
                "values": values,
            }
        )
        for child in node.children:
            child_id = visit(child, f"{path}/{child.name}" if node_id else child.name)
            edges.append(
                {"source": node_id, "target": child_id, "kind": "child", "name": child.name}
            )
        return node_id

    visit(root, "(root)")
    return nodes, edges


def to_dot(data: dict[str, Any]) -> str:
    """Render the graph as Graphviz DOT source."""
    lines = [
        "digraph checkpoint {",
        "  graph [rankdir=LR, fontname=Helvetica];",
        '  node [shape=box, style="rounded,filled", fontname=Helvetica, fontsize=10];',
        '  edge [fontname=Helvetica, fontsize=9, color="#607d8b"];',
    ]
    for node in data["nodes"]:
        parts = [node["name"]]
        parts += [f"{describe_shape(tuple(v['shape']))} {v['dtype']}" for v in node["values"]]
        fill = (
            FILL["optimizer"]
            if node["optimizer"]
            else FILL["value" if node["values"] else "object"]
        )
        label = "\\n".join(dot_string(p)[1:-1] for p in parts)
        lines.append(f'  n{node["id"]} [label="{label}", fillcolor="{fill}"];')
    names = {n["id"]: n["name"] for n in data["nodes"]}
    for edge in data["edges"]:
        attributes = (
            ["style=dashed", f"label={dot_string(edge['name'])}"] if edge["kind"] == "slot" else []
        )
        if edge["kind"] == "child" and edge["name"] != names[edge["target"]]:
            attributes.append(f"label={dot_string(edge['name'])}")
        suffix = f" [{', '.join(attributes)}]" if attributes else ""
        lines.append(f"  n{edge['source']} -> n{edge['target']}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_svg(dot_source: str) -> str:
    """Lay the graph out with Graphviz's ``dot`` program; a clear error when it is missing."""
    program = shutil.which("dot")
    if program is None:
        raise CommandError(
            "--format svg needs Graphviz's 'dot' program, which is not installed "
            "(Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz). "
            "--format dot and --format json need nothing installed.",
            EXIT_UNAVAILABLE,
        )
    try:
        done = subprocess.run(
            [program, "-Tsvg"],
            input=dot_source,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        failure = " ".join(done.stderr.split()) or f"exit status {done.returncode}"
    except (OSError, subprocess.TimeoutExpired) as error:  # not executable, or hung
        done, failure = None, f"{type(error).__name__}: {error}"
    if done is None or done.returncode != 0:  # installed but failed: a problem, not missing
        raise CommandError(
            f"Graphviz's dot ({program}) failed to lay out the graph: {failure}. "
            "--format dot writes the source without Graphviz, to inspect or lay out yourself.",
            EXIT_PROBLEMS,
        )
    return done.stdout


def run(args: argparse.Namespace, out: Output) -> int:
    """Export ``args.path`` in ``args.format``."""
    source, _ = open_target(args.path)
    data = graph_data(source)
    if args.format == "json":
        text = json.dumps(data, indent=2) + "\n"
    else:
        text = to_dot(data)
        if args.format == "svg":
            text = to_svg(text)
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as error:
            raise CommandError(
                f"cannot write {args.output}: {error.strerror}; give -o a file in an existing, "
                "writable directory",
                EXIT_USAGE,
            ) from None
    else:
        out.stream.write(text)
    return EXIT_OK
