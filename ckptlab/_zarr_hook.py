"""Register ckptlab's Zarr data types with zarr-python without importing zarr early (internal).

Three routes, so ``zarr.open_group`` reads ckptlab's ``bfloat16`` arrays:

* the ``zarr.data_type`` entry point in ``pyproject.toml`` (zarr versions that load it);
* :func:`ckptlab.storage.register_zarr_dtypes`, which anyone may call;
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


def _register() -> None:
    from ckptlab.storage import register_zarr_dtypes  # zarr is imported by now: storage is cheap

    register_zarr_dtypes()


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
            _register()

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install() -> None:
    """Register now if zarr's data types are loaded, else once they are."""
    if _TARGET in sys.modules:
        _register()
    elif not any(isinstance(f, _AfterZarrDtypes) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterZarrDtypes())
