"""Write real Keras 3 weights for the tests: ``KERAS_BACKEND=jax python keras_writer.py OUT``.

Writes ``model.weights.h5``, ``model.keras`` and sharded ``sharded.weights.json`` (+ shards) of
one trained model (Dense, Embedding, BatchNormalization, a bfloat16 layer, Adam state), and
``expected.pickle``: every dataset as Keras's own reader (``H5IOStore``) returns it, as
``{key: (dtype name, shape, bytes)}``.
"""

from __future__ import annotations

import pickle
import posixpath
import sys
import zipfile

import keras
import numpy as np
from keras.src.saving.saving_lib import H5IOStore


def build() -> keras.Model:
    tokens = keras.Input((4,), dtype="int32")
    x = keras.layers.Embedding(50, 16, name="embed")(tokens)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64, activation="relu", name="hidden")(x)
    x = keras.layers.BatchNormalization(name="norm")(x)
    x = keras.layers.Dense(3, dtype="bfloat16", name="head")(x)
    model = keras.Model(tokens, x)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    rng = np.random.default_rng(0)
    model.fit(rng.integers(0, 50, (8, 4)), rng.standard_normal((8, 3)), verbose=0, epochs=2)
    return model


def dump(store: H5IOStore) -> dict[str, tuple[str, tuple[int, ...], bytes]]:
    groups: list[str] = []
    store.h5_file.visit(
        lambda name: (
            groups.append(posixpath.dirname(name)) if posixpath.basename(name) == "vars" else None
        )
    )
    found = {}
    for group in groups:
        entry = store.get(group)
        for key in entry.keys():  # noqa: SIM118 (an H5IOStore, not a dict)
            value = np.asarray(entry[key])
            path = f"{group}/vars/{key}" if group else f"vars/{key}"
            found[path] = (value.dtype.name, value.shape, value.tobytes())
    store.close()
    return found


def main() -> None:
    out = sys.argv[1]
    model = build()
    model.save_weights(f"{out}/model.weights.h5")
    model.save(f"{out}/model.keras")
    model.save_weights(f"{out}/sharded.weights.json", max_shard_size=0.00002)
    expected = {
        "weights": dump(H5IOStore(f"{out}/model.weights.h5", mode="r")),
        "keras": dump(
            H5IOStore("model.weights.h5", archive=zipfile.ZipFile(f"{out}/model.keras"), mode="r")
        ),
    }
    with open(f"{out}/expected.pickle", "wb") as handle:
        pickle.dump(expected, handle)


if __name__ == "__main__":
    main()
