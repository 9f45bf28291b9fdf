"""Multi-worker saves: each worker writes its own values, one coordinator commits once.

Examples
--------
>>> from ckptlab import distributed as ckd
>>> ckd.row_partition(8, 2)
(0, 4, 8)
"""

from ckptlab.distributed._api import DEFAULT_TIMEOUT, plan, read_region, save, write
from ckptlab.distributed._coordinator import SaveStats, WorkerError
from ckptlab.distributed._engines import DaskEngine, Engine, LocalEngine
from ckptlab.distributed._plan import Placement, Region, SavePlan
from ckptlab.distributed._sharded import Placeholder, ShardedVariable, row_partition
from ckptlab.distributed._torch import TorchEngine
from ckptlab.distributed._worker import WorkerFailure

__all__ = [
    "DEFAULT_TIMEOUT",
    "DaskEngine",
    "Engine",
    "LocalEngine",
    "Placeholder",
    "Placement",
    "Region",
    "SavePlan",
    "SaveStats",
    "ShardedVariable",
    "TorchEngine",
    "WorkerError",
    "WorkerFailure",
    "plan",
    "read_region",
    "row_partition",
    "save",
    "write",
]
