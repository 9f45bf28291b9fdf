"""The explorer's facade layer: ``ck.explore`` and ``ck.diff`` over facade objects.

Statuses, checkpoints, programs, comparisons and training runs become explorer sources.

The pure view model (placement rules, graph view, wire contract) is :mod:`ckptlab.inspect`; the
widget is :mod:`ckptlab.widgets`.  This package connects them to the facade: sources
(``_sources``), value numbers (``_values``), checkpoint comparison (``_compare``), training runs
(``_timeline``), and every call into the restore engine (``_engine``).

Examples
--------
>>> from ckptlab.explorer import explore
>>> explore.__name__
'explore'
"""

from ckptlab.explorer._api import explore, source_for
from ckptlab.explorer._compare import Diff, diff
from ckptlab.explorer._values import difference, value_stats

__all__ = ["Diff", "diff", "difference", "explore", "source_for", "value_stats"]
