"""The store conformance suite against every store: local files, memory://, S3 (moto)."""

from __future__ import annotations

import numpy as np
import pytest

import ckptlab as ck
from ckptlab.storage import LocalStore, resolve
from ckptlab.testing.store_tests import StoreConformance


class TestLocalStore(StoreConformance):
    @pytest.fixture
    def root(self, tmp_path):
        return LocalStore(), str(tmp_path)


class TestMemoryStore(StoreConformance):
    @pytest.fixture
    def root(self, memory_prefix):
        return resolve(memory_prefix)


class TestS3Store(StoreConformance):
    @pytest.fixture
    def root(self, s3_prefix):
        return resolve(s3_prefix)

    def open_plain_zarr(self, store, path):
        import zarr

        options = ck.storage.storage_options_for(store.display(path))
        zarr_store = zarr.storage.FsspecStore.from_url(
            store.display(path), storage_options=options, read_only=True
        )
        return zarr.open_group(zarr_store, mode="r")


def small_module(count=10_000):
    model = ck.Module()
    rng = np.random.default_rng(0)
    model.values = [ck.Variable(rng.standard_normal(256).astype(np.float32)) for _ in range(count)]
    return model


def test_small_workload_costs_few_s3_requests(s3_server, s3_prefix):
    """10,000 values of 1 KiB: save, latest_checkpoint and restore in a handful of requests."""
    model = small_module()
    checkpoint = ck.Checkpoint(model=model)
    quiet = ck.WriteOptions(progress=False)
    s3_server.reset()
    path = checkpoint.save(f"{s3_prefix}/ckpt", options=quiet)
    save_requests = s3_server.total
    assert save_requests <= 30, s3_server.log
    s3_server.reset()
    assert ck.latest_checkpoint(s3_prefix) == path
    fresh = small_module()
    for variable in fresh.values:
        variable.assign(np.zeros(256, np.float32))
    ck.Checkpoint(model=fresh).restore(path).assert_consumed()
    assert s3_server.total <= 30, s3_server.log
    assert all(
        np.array_equal(a.numpy(), b.numpy())
        for a, b in zip(model.values, fresh.values, strict=True)
    )


def test_racing_writers_commit_once(s3_prefix):
    store, key = resolve(s3_prefix)
    commits = [store.write_new(f"{key}/zarr.json", str(i).encode(), durable=True) for i in range(3)]
    assert commits == [True, False, False]


def test_storage_options_by_prefix_and_explicit(s3_server, s3_prefix):
    assert ck.storage.storage_options_for(s3_prefix)["endpoint_url"] == s3_server.endpoint
    store, key = resolve(s3_prefix, {"endpoint_url": s3_server.endpoint})
    store.write(f"{key}/x", [b"1"], durable=True)
    assert resolve(s3_prefix)[0].read(f"{key}/x") == b"1"
    with pytest.raises(ValueError, match="URL prefix"):
        ck.storage.set_storage_options("/local/path", anon=True)


def test_options_passed_per_call(s3_server, s3_prefix):
    """WriteOptions/ReadOptions(storage_options=...) reach S3 without any registration."""
    bucket = f"s3://{s3_server.bucket}"
    ck.storage.set_storage_options(bucket)  # forget the fixture's registration
    try:
        model = ck.Module()
        model.w = ck.Variable(np.arange(4.0))
        write = ck.WriteOptions(storage_options=s3_server.storage_options, progress=False)
        path = ck.Checkpoint(model=model).save(f"{s3_prefix}/ckpt", options=write)
        fresh = ck.Module()
        fresh.w = ck.Variable(np.zeros(4))
        read = ck.storage.ReadOptions(storage_options=s3_server.storage_options, progress=False)
        ck.Checkpoint(model=fresh).restore(path, options=read).assert_consumed()
        assert np.array_equal(fresh.w.numpy(), model.w.numpy())
    finally:
        ck.storage.set_storage_options(bucket, **s3_server.storage_options)


@pytest.mark.parametrize("max_shard_size", [None, 3000])
def test_a_safetensors_export_to_s3_reads_back_exactly(tmp_path, s3_prefix, max_shard_size):
    """Object stores get one upload per safetensors shard, every value read once for it."""
    model = small_module(count=20)
    path = ck.Checkpoint(model=model).write(tmp_path / "c")
    target = f"{s3_prefix}/export.safetensors" if max_shard_size is None else f"{s3_prefix}/hf"
    ck.convert(path, target, format="safetensors", max_shard_size=max_shard_size)
    exported = ck.load_checkpoint(target)
    source = ck.load_checkpoint(path)
    names = sorted(exported.get_variable_to_shape_map())
    assert len(names) == 20
    for name, key in zip(names, sorted(source.get_variable_to_shape_map()), strict=True):
        assert name == key
        assert exported.get_tensor(name).tobytes() == source.get_tensor(key).tobytes()
