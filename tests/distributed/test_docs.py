"""The docstring examples of the distributed modules run."""

from __future__ import annotations

import doctest

import pytest

import ckptlab.distributed
from ckptlab.distributed import _api, _engines, _plan, _sharded, _torch, _worker
from ckptlab.storage import _parts


@pytest.mark.parametrize(
    "module", [ckptlab.distributed, _api, _engines, _plan, _sharded, _torch, _worker, _parts]
)
def test_docstring_examples_run(module):
    assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0


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
