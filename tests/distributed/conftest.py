"""Fixtures for multi-worker saves: a local S3 server (moto) and a 2-process Dask cluster."""

from __future__ import annotations

import socket
import sys
import uuid

import pytest

from ckptlab.storage import set_storage_options

BUCKET = "ckptlab-distributed"


def pickle_by_value(module_name):
    """Let cloudpickle ship a test module's functions by value (pytest imports by importlib)."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[module_name])


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def s3_url():
    """``s3://bucket/<unique>`` on a moto server bound to 127.0.0.1; workers get its options."""
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    ).create_bucket(Bucket=BUCKET)
    set_storage_options(f"s3://{BUCKET}", endpoint_url=endpoint, key="testing", secret="testing")
    yield f"s3://{BUCKET}/{uuid.uuid4().hex[:8]}"
    set_storage_options(f"s3://{BUCKET}")
    server.stop()


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
