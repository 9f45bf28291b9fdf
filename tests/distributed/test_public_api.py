"""The public surface of ckptlab.distributed is pinned (its examples run as doctests)."""

from __future__ import annotations

import ckptlab.distributed


def test_public_surface():
    assert sorted(ckptlab.distributed.__all__) == [
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
