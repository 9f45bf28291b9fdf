"""What an explorer widget needs from the rest of ckptlab (internal, pure protocol)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from ckptlab.inspect._graphview import GraphView


class ExplorerSource(Protocol):
    """A view to draw, lazy details of one node, and (for lazy statuses) restoring a selection."""

    def view(self) -> GraphView:
        """The current view (rebuilt after a restore, so states are fresh)."""
        ...

    def details(self, view: GraphView, node_id: int) -> dict[str, Any]:
        """JSON-ready details of one node; reads at most that node's value."""
        ...

    def restore(self, view: GraphView, node_ids: Sequence[int]) -> str:
        """Restore the values under ``node_ids``; returns a one-line message (raises on error)."""
        ...
