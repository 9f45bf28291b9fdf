"""Tiny real Flax NNX programs built from code (no downloads), and bit-exact comparisons."""

from __future__ import annotations

import types

import numpy as np
import pytest

jax = pytest.importorskip("jax")
nnx = pytest.importorskip("flax.nnx")
optax = pytest.importorskip("optax")
jnp = jax.numpy


class Counter(nnx.Variable):
    """A user-defined Variable type (counts forward passes)."""


class Block(nnx.Module):
    def __init__(self, width, rngs):
        self.dense = nnx.Linear(width, width, rngs=rngs)
        self.norm = nnx.LayerNorm(width, rngs=rngs)

    def __call__(self, x):
        return nnx.relu(self.norm(self.dense(x)))


class Net(nnx.Module):
    """Every kind of state: Param, BatchStat, RNG keys and counts, a custom Variable, lists,
    dicts, an array held as a plain attribute, and a tuple of arrays."""

    def __init__(self, sizes=(3, 8, 2), *, rngs, dtype=jnp.float32, marked=False):
        first, width, out = sizes
        self.embed = nnx.Linear(first, width, rngs=rngs, param_dtype=dtype)
        self.bn = nnx.BatchNorm(width, rngs=rngs, param_dtype=dtype)
        self.drop = nnx.Dropout(0.25, rngs=rngs)
        self.blocks = nnx.List([Block(width, rngs) for _ in range(2)])
        self.heads = nnx.Dict({"main": nnx.Linear(width, out, rngs=rngs)})
        self.calls = Counter(jnp.zeros((), jnp.int32))
        scale = jnp.full((out,), 0.5)
        self.scale = nnx.data(scale) if marked else scale  # marked: data even under eval_shape
        self.offsets = nnx.data((jnp.zeros(out), jnp.ones(())))

    def __call__(self, x):
        self.calls[...] += 1
        x = self.drop(self.bn(self.embed(x)))
        for block in self.blocks:
            x = block(x)
        return self.heads["main"](x) * self.scale + self.offsets[0]


def net(seed=0, **kwargs):
    return Net(rngs=nnx.Rngs(seed, dropout=seed + 100), **kwargs)


def optimizer(model, tx=None):
    return nnx.Optimizer(model, tx or optax.adamw(1e-2), wrt=nnx.Param)


@nnx.jit(donate_argnums=(0, 1))
def _step(model, opt, x):
    def loss(m):
        return (m(x) ** 2).mean()

    grads = nnx.grad(loss)(model)
    opt.update(model, grads)


def train(model, opt, steps=2, seed=0):
    """``steps`` jitted Adam steps (buffers donated, as real training loops do)."""
    model.train()
    for i in range(steps):
        x = jax.random.normal(jax.random.key(seed * 1000 + i), (5, model.embed.in_features))
        _step(model, opt, x)


def host(value):
    """``(dtype, shape, bytes)`` of an array (a key array as its key data)."""
    if jnp.issubdtype(value.dtype, jax.dtypes.prng_key):
        value = jax.random.key_data(value)
    array = np.asarray(value)
    return (str(array.dtype), array.shape, array.tobytes())


def state_bytes(node):
    """Every leaf of ``nnx.state(node)`` as raw bytes, by path (keys as their key data)."""
    flat = jax.tree_util.tree_flatten_with_path(nnx.state(node))[0]
    return {jax.tree_util.keystr(path): host(leaf) for path, leaf in flat}


@pytest.fixture
def jx():
    """The helpers above, for tests that build their own NNX programs."""
    return types.SimpleNamespace(
        Net=Net,
        Block=Block,
        Counter=Counter,
        net=net,
        optimizer=optimizer,
        train=train,
        state_bytes=state_bytes,
        host=host,
    )
