"""Pure view models for humans: the explorer's graph view, DOT, HTML and text (stdlib only)."""

from ckptlab.inspect._dot import COLOURS, dot_string, view_dot
from ckptlab.inspect._graphview import (
    MIME_TYPE,
    OPTIMIZER,
    PROBLEM_STATES,
    SCHEMA_NAME,
    SCHEMA_VERSION,
    SLOT,
    SYNTHETIC,
    VIEW_STATES,
    GraphView,
    Suggestion,
    ViewNode,
    ViewValue,
    build_view,
)
from ckptlab.inspect._html import report_html, view_html, view_text
from ckptlab.inspect._mime import graph_payload, view_mimebundle
from ckptlab.inspect._suggest import suggest_matches

__all__ = [
    "COLOURS",
    "MIME_TYPE",
    "OPTIMIZER",
    "PROBLEM_STATES",
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "SLOT",
    "SYNTHETIC",
    "VIEW_STATES",
    "GraphView",
    "Suggestion",
    "ViewNode",
    "ViewValue",
    "build_view",
    "dot_string",
    "graph_payload",
    "report_html",
    "suggest_matches",
    "view_dot",
    "view_html",
    "view_mimebundle",
    "view_text",
]
