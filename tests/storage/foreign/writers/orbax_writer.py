"""Write real Orbax checkpoints for the tests: ``python orbax_writer.py OUT``.

Variants (one tree of float32, bfloat16, float16, int32, uint8, bool arrays, a list and Python
scalars): ``ocdbt`` (StandardCheckpointer: OCDBT + Zarr v2), ``ocdbt_zarr3``, ``plain`` (per-array
Zarr v2 directories, plus a string leaf), ``plain_zarr3``, ``manager`` (a CheckpointManager with
two steps of two items) and ``prefixed`` (a CheckpointManager with ``step_prefix="ckpt"`` and
``step_format_fixed_length=5``: steps ``ckpt_00003`` and ``ckpt_00012``).  ``expected.pickle``
holds, per variant, every leaf as Orbax's own restore returns it: ``{key: (dtype name, shape,
bytes)}`` for arrays, the value otherwise.
"""

from __future__ import annotations

import os
import pickle
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

warnings.filterwarnings("ignore")


def tree(scale: float) -> dict:
    rng = np.random.default_rng(int(scale))
    return {
        "params": {
            "dense": {
                "kernel": jnp.asarray(rng.standard_normal((3, 4)) * scale, jnp.float32),
                "bias": jnp.asarray(rng.standard_normal(4), jnp.bfloat16),
            },
            "embed": np.asarray(rng.standard_normal((5, 2)), np.float16),
            "layers": [jnp.arange(3, dtype=jnp.int32), np.array([True, False])],
            "counts": np.arange(4, dtype=np.uint8),
        },
        "step": 7,
        "lr": 0.25,
    }


def flatten(restored) -> dict:
    flat = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(restored)[0]:
        key = "/".join(str(getattr(p, "key", getattr(p, "idx", p))) for p in path)
        if isinstance(leaf, (np.ndarray, jax.Array, np.generic, int, float)) and not isinstance(
            leaf, bool
        ):
            array = np.asarray(leaf)
            flat[key] = (array.dtype.name, array.shape, array.tobytes())
        else:
            flat[key] = leaf
    return flat


def main() -> None:
    out = sys.argv[1]
    expected = {}
    standard = ocp.StandardCheckpointer()
    standard.save(os.path.join(out, "ocdbt"), tree(1.0))
    standard.wait_until_finished()
    for name, ocdbt, zarr3 in [
        ("ocdbt_zarr3", True, True),
        ("plain", False, False),
        ("plain_zarr3", False, True),
    ]:
        handler = ocp.PyTreeCheckpointHandler(use_ocdbt=ocdbt, use_zarr3=zarr3)
        state = dict(tree(2.0), name="run-7") if name == "plain" else tree(2.0)
        ocp.Checkpointer(handler).save(os.path.join(out, name), state)
    restorer = ocp.PyTreeCheckpointer()
    for name in ("ocdbt", "ocdbt_zarr3", "plain", "plain_zarr3"):
        expected[name] = flatten(restorer.restore(os.path.join(out, name)))
    manager = ocp.CheckpointManager(os.path.join(out, "manager"))
    for step in (1, 2):
        manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(tree(float(step))),
                extra=ocp.args.StandardSave({"seen": np.full(3, step, np.int64)}),
            ),
        )
    manager.wait_until_finished()
    manager.close()
    latest = os.path.join(out, "manager", "2")
    expected["manager"] = {
        f"{item}/{key}": value
        for item in ("state", "extra")
        for key, value in flatten(restorer.restore(os.path.join(latest, item))).items()
    }
    options = ocp.CheckpointManagerOptions(step_prefix="ckpt", step_format_fixed_length=5)
    prefixed = ocp.CheckpointManager(os.path.join(out, "prefixed"), options=options)
    for step in (3, 12):
        prefixed.save(step, args=ocp.args.StandardSave({"seen": np.full(3, step, np.int64)}))
    prefixed.wait_until_finished()
    latest = prefixed.latest_step()
    expected["prefixed"] = flatten(prefixed.restore(latest, args=ocp.args.StandardRestore()))
    prefixed.close()
    with open(os.path.join(out, "expected.pickle"), "wb") as handle:
        pickle.dump(expected, handle)


if __name__ == "__main__":
    main()
