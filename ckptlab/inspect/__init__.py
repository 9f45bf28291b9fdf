"""Pure view models for humans: the explorer's graph view, DOT, HTML and text (stdlib only)."""

from ckptlab.inspect._diff import CheckpointDiff, DiffEntry, DiffState, diff_view
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
from ckptlab.inspect._source import ExplorerSource
from ckptlab.inspect._suggest import suggest_matches
from ckptlab.inspect._wire import (
    DTYPE_ITEMSIZE,
    OPTIMIZER,
    PROBLEM_STATES,
    SLOT,
    STATE_TABLE,
    SYNTHETIC,
    VIEW_STATES,
    Change,
    Histogram,
    ModuleSeries,
    NodeDetails,
    StateInfo,
    Stats,
    TimelineData,
    TimelinePoint,
)

__all__ = [
    "COLOURS",
    "DTYPE_ITEMSIZE",
    "MIME_TYPE",
    "OPTIMIZER",
    "PROBLEM_STATES",
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "SLOT",
    "STATE_TABLE",
    "SYNTHETIC",
    "VIEW_STATES",
    "Change",
    "CheckpointDiff",
    "DiffEntry",
    "DiffState",
    "ExplorerSource",
    "GraphView",
    "Histogram",
    "ModuleSeries",
    "NodeDetails",
    "StateInfo",
    "Stats",
    "Suggestion",
    "TimelineData",
    "TimelinePoint",
    "ViewNode",
    "ViewValue",
    "build_view",
    "covering_paths",
    "diff_view",
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
