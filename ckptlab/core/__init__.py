"""Pure checkpoint semantics: object graph, key grammar, document, matching, status rules.

Standard library only: no numpy, no zarr, no UI, no file I/O.  Results are data; nothing here
raises on a mismatch.
"""

from ckptlab.core._document import (
    FOREIGN_ITEMSIZE,
    FORMAT_VERSION,
    ITEMSIZE,
    CheckpointDocument,
    ForeignLocation,
    PackInfo,
    StoredValue,
    parse_document,
    parse_listing,
)
from ckptlab.core._gc import gc_paused
from ckptlab.core._graph import Attribute, GraphNode, NodePath, ObjectGraph, SlotRef, ValueSpec
from ckptlab.core._keys import (
    OPTIMIZER_SLOT,
    ParsedKey,
    escape_local_name,
    object_prefix,
    parse_key,
    pretty_path,
    unescape_local_name,
    value_key,
)
from ckptlab.core._nearmiss import NearMiss, near_misses
from ckptlab.core._plan import (
    Assignment,
    Blocked,
    Deferral,
    Inconsistency,
    Merge,
    PendingSlot,
    RestorePlan,
    SlotRestore,
    conflict_kind,
    plan_restore,
)
from ckptlab.core._report import (
    STATES,
    MatchReport,
    MatchState,
    ReportEntry,
    RestoreState,
    build_report,
)
from ckptlab.core._retention import (
    Recovery,
    RetentionPolicy,
    RetentionState,
    Sweep,
    interval_allows,
    record_save,
    recover,
    sweep,
    validate_policy,
)
from ckptlab.core._statefile import CheckpointState, format_state, parse_state
from ckptlab.core._status import (
    consumed_failure,
    existing_objects_failure,
    nontrivial_failure,
    unused_warning,
)
from ckptlab.core._walk import ProgramGraph, ProgramView, build_graph

__all__ = [
    "FOREIGN_ITEMSIZE",
    "FORMAT_VERSION",
    "ITEMSIZE",
    "OPTIMIZER_SLOT",
    "STATES",
    "Assignment",
    "Attribute",
    "Blocked",
    "CheckpointDocument",
    "CheckpointState",
    "Deferral",
    "ForeignLocation",
    "GraphNode",
    "Inconsistency",
    "MatchReport",
    "MatchState",
    "Merge",
    "NearMiss",
    "NodePath",
    "ObjectGraph",
    "PackInfo",
    "ParsedKey",
    "PendingSlot",
    "ProgramGraph",
    "ProgramView",
    "ReportEntry",
    "Recovery",
    "RestorePlan",
    "RestoreState",
    "RetentionPolicy",
    "RetentionState",
    "SlotRef",
    "SlotRestore",
    "Sweep",
    "StoredValue",
    "ValueSpec",
    "build_graph",
    "build_report",
    "conflict_kind",
    "consumed_failure",
    "escape_local_name",
    "existing_objects_failure",
    "format_state",
    "gc_paused",
    "interval_allows",
    "nontrivial_failure",
    "near_misses",
    "object_prefix",
    "parse_document",
    "parse_listing",
    "parse_key",
    "parse_state",
    "plan_restore",
    "pretty_path",
    "record_save",
    "recover",
    "sweep",
    "unescape_local_name",
    "unused_warning",
    "validate_policy",
    "value_key",
]
