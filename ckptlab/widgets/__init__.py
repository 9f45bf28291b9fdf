"""Notebook front ends over :mod:`ckptlab.inspect` (the only code importing anywidget).

Examples
--------
>>> from ckptlab.widgets import ExplorerWidget
>>> ExplorerWidget.__name__
'ExplorerWidget'
"""

from ckptlab.widgets._explorer import ExplorerWidget

__all__ = ["ExplorerWidget"]
