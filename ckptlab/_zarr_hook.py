"""Register ckptlab's Zarr data types with zarr-python without importing zarr early (internal).

Three routes, so ``zarr.open_group`` reads ckptlab's ``bfloat16`` arrays:

* the ``zarr.data_type`` entry point in ``pyproject.toml`` (zarr versions that load it);
* :func:`register_zarr_dtypes`, which anyone may call;
* on ``import ckptlab``: at once if zarr is already imported, otherwise a one-shot import hook
  registers the types right after ``zarr.core.dtype`` finishes importing.  Importing zarr
  eagerly would double ckptlab's import time.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Sequence

_TARGET = "zarr.core.dtype"


def register_zarr_dtypes() -> bool:
    """Teach zarr-python the ``bfloat16`` data type; return False when that is not possible.

    Examples
    --------
    >>> register_zarr_dtypes()
    True
    >>> import zarr, numpy as np, ml_dtypes
    >>> zarr.create_array({}, shape=(2,), dtype=ml_dtypes.bfloat16).metadata.data_type.to_json(3)
    'bfloat16'
    """
    try:
        from ckptlab.storage._zarr_dtype import register
    except ImportError:  # zarr's private dtype classes moved: readers see the raw uint16 bytes
        return False
    register()
    return True


class _AfterZarrDtypes(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the loader of ``zarr.core.dtype`` to register afterwards."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _TARGET:
            return None
        sys.meta_path[:] = [f for f in sys.meta_path if f is not self]
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module: types.ModuleType) -> None:
            run(module)
            register_zarr_dtypes()

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install() -> None:
    """Register now if zarr's data types are loaded, else once they are."""
    if _TARGET in sys.modules:
        register_zarr_dtypes()
    elif not any(isinstance(f, _AfterZarrDtypes) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterZarrDtypes())
