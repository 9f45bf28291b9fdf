"""Pure view models for humans: the explorer's graph view, DOT, HTML and text (stdlib only)."""

from ckptlab.inspect._dot import COLOURS, dot_string, view_dot
from ckptlab.inspect._graphview import (
    MIME_TYPE,
    SCHEMA_NAME,
    SCHEMA_VERSION,
    GraphView,
    Suggestion,
    ViewNode,
    ViewValue,
    build_view,
)
from ckptlab.inspect._html import report_html, view_html, view_text
from ckptlab.inspect._mime import graph_payload, view_mimebundle
from ckptlab.inspect._placement import covering_paths, name_value, object_value, path_value
from ckptlab.inspect._suggest import suggest_matches
from ckptlab.inspect._wire import (
    OPTIMIZER,
    PROBLEM_STATES,
    SLOT,
    STATE_TABLE,
    SYNTHETIC,
    VIEW_STATES,
    NodeDetails,
    StateInfo,
)

__all__ = [
    "COLOURS",
    "MIME_TYPE",
    "OPTIMIZER",
    "PROBLEM_STATES",
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "SLOT",
    "STATE_TABLE",
    "SYNTHETIC",
    "VIEW_STATES",
    "GraphView",
    "NodeDetails",
    "StateInfo",
    "Suggestion",
    "ViewNode",
    "ViewValue",
    "build_view",
    "covering_paths",
    "dot_string",
    "graph_payload",
    "name_value",
    "object_value",
    "path_value",
    "report_html",
    "suggest_matches",
    "view_dot",
    "view_html",
    "view_mimebundle",
    "view_text",
]
