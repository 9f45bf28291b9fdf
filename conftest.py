"""Names every docstring example may use without importing them: ``ck`` and ``np``.

``import ckptlab as ck`` and ``import numpy as np`` are the conventions of the docs; the examples
run as doctests (``--doctest-modules`` in pyproject.toml).
"""

import numpy as np
import pytest

import ckptlab as ck


@pytest.fixture(autouse=True)
def _conventional_names(doctest_namespace):
    doctest_namespace["ck"] = ck
    doctest_namespace["np"] = np

# Keras fixes its backend when first imported, so its adapter and the Keras cases are imported
# only in the processes tests/engine/keras/test_keras.py starts with KERAS_BACKEND set.
collect_ignore = ["ckptlab/engine/_keras.py", "tests/engine/keras/keras_cases.py"]
