"""The static display bundle of an explorer: graph JSON, HTML fallback, plain text (internal).

Every explorer display carries ``application/vnd.ckptlab.graph+json`` (drawn without a kernel by
the JupyterLab extension), ``text/html`` (nbconvert, GitHub) and ``text/plain``.  Graphs whose
JSON is larger than :data:`INLINE_LIMIT` are stored gzip-compressed and base64-encoded
(``"encoding": "gzip+base64"``), so saved notebooks stay small.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from ckptlab.inspect._graphview import MIME_TYPE, SCHEMA_NAME, SCHEMA_VERSION, GraphView
from ckptlab.inspect._html import view_html, view_text

INLINE_LIMIT = 256 * 1024


def graph_payload(view: GraphView) -> dict[str, Any]:
    """The JSON stored under :data:`MIME_TYPE`: the graph, or its compressed envelope."""
    if len(view.json_text) <= INLINE_LIMIT:
        result: dict[str, Any] = json.loads(view.json_text)
        return result
    return {
        "format": SCHEMA_NAME,
        "version": SCHEMA_VERSION,
        "encoding": "gzip+base64",
        "data": base64.b64encode(view.to_bytes()).decode("ascii"),
    }


def view_mimebundle(view: GraphView) -> dict[str, Any]:
    """``{mime: data}`` with the graph, the HTML fallback and plain text.

    Examples
    --------
    >>> from ckptlab.inspect._graphview import ViewValue, build_view
    >>> view = build_view([ViewValue(path=("w",), state="stored")], title="t", source="s",
    ...                   kind="checkpoint", summary="1 value")
    >>> sorted(view_mimebundle(view))
    ['application/vnd.ckptlab.graph+json', 'text/html', 'text/plain']
    """
    return {
        MIME_TYPE: graph_payload(view),
        "text/html": view_html(view),
        "text/plain": view_text(view),
    }
