"""Storage fixtures: a moto S3 server on 127.0.0.1 for the whole session, fresh prefixes."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

import ckptlab as ck
from ckptlab.testing import LocalS3Server


def training_checkpoint(units: int, inputs: int, big: np.ndarray) -> ck.Checkpoint:
    """A Dense layer after one Adam step (kernel, bias, their slots, iter) and a larger value."""
    model = ck.layers.Dense(units)
    model(np.ones((2, inputs), np.float32))
    optimizer = ck.optimizers.Adam(0.1)
    optimizer.apply_gradients([(np.ones_like(v.numpy()), v) for v in (model.kernel, model.bias)])
    checkpoint = ck.Checkpoint(model=model, optimizer=optimizer)
    checkpoint.big = ck.Variable(big)
    return checkpoint


@pytest.fixture(scope="session")
def s3_server():
    """A local S3 server (moto) with the bucket ``ckptlab-test``; its options are registered."""
    pytest.importorskip("moto")
    pytest.importorskip("s3fs")
    with LocalS3Server() as server:
        ck.storage.set_storage_options(f"s3://{server.bucket}", **server.storage_options)
        yield server
        ck.storage.set_storage_options(f"s3://{server.bucket}")


@pytest.fixture
def s3_prefix(s3_server):
    """A fresh ``s3://ckptlab-test/<uuid>`` URL (no trailing slash)."""
    return f"s3://{s3_server.bucket}/{uuid.uuid4().hex}"


@pytest.fixture
def memory_prefix():
    """A fresh ``memory://`` URL."""
    return f"memory://ckptlab-tests/{uuid.uuid4().hex}"
