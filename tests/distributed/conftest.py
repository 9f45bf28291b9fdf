"""Fixtures for multi-worker saves: fresh prefixes on the local S3 server, a Dask cluster."""

from __future__ import annotations

import sys
import uuid

import pytest


def pickle_by_value(module_name):
    """Let cloudpickle ship a test module's functions by value (pytest imports by importlib)."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[module_name])


@pytest.fixture
def s3_url(s3_server):
    """A fresh ``s3://<bucket>/<uuid>`` prefix on the local S3 server."""
    return f"s3://{s3_server.bucket}/{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def dask_client():
    """A Dask client on a LocalCluster of 2 worker processes bound to 127.0.0.1."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    )
    client = distributed.Client(cluster)
    client.wait_for_workers(2)
    yield client
    client.close()
    cluster.close()
