"""What an explorer widget needs from the rest of ckptlab (internal, pure protocol)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from ckptlab.inspect._graphview import GraphView
from ckptlab.inspect._wire import NodeDetails


class ExplorerSource(Protocol):
    """A view to draw, lazy details of one node, and (for lazy statuses) restoring a selection."""

    def view(self) -> GraphView:
        """The current view (rebuilt after a restore, so states are fresh)."""
        ...

    def details(self, view: GraphView, node_id: int) -> NodeDetails:
        """JSON-ready details of one node; reads at most that node's value."""
        ...

    def restore(self, view: GraphView, node_ids: Sequence[int]) -> str:
        """Restore the values under ``node_ids``; returns a one-line message (raises on error)."""
        ...

    def watch(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (held weakly) whenever what the view shows changed."""
        ...

    def recheck(self, view: GraphView) -> bool:
        """Whether to rebuild ``view`` after a notebook cell (the program may have changed)."""
        ...
