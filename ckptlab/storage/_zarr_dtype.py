"""The ``bfloat16`` Zarr data type, so plain zarr-python reads ckptlab's bfloat16 arrays (internal).

zarr-python 3 has no bfloat16 (zarr-developers/zarr-python#2656).  This registers one named
``bfloat16``, the name TensorStore and Orbax write, backed by ``ml_dtypes.bfloat16``.  It
subclasses zarr's float data-type base class (``zarr.core.dtype.npy.float.BaseFloat``, not a
public API: ``tests/storage/test_zarr_dtype.py`` pins it against the installed zarr).

Importing this module imports zarr; :mod:`ckptlab._zarr_hook` decides when.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import ml_dtypes
import numpy as np
from zarr.core.dtype import data_type_registry
from zarr.core.dtype.npy.float import BaseFloat

_BFLOAT16: np.dtype[Any] = np.dtype(ml_dtypes.bfloat16)


@dataclass(frozen=True, kw_only=True)
class BFloat16(BaseFloat):  # type: ignore[type-arg]
    """``bfloat16`` (2 bytes, stored little endian), scalars are ``ml_dtypes.bfloat16``."""

    dtype_cls = type(_BFLOAT16)
    _zarr_v3_name: ClassVar[Literal["bfloat16"]] = "bfloat16"
    _zarr_v2_names: ClassVar[tuple[str, ...]] = ()
    endianness: Literal["little", "big"] = "little"

    @classmethod
    def from_native_dtype(cls, dtype: Any) -> BFloat16:
        """The zarr data type of ``np.dtype(ml_dtypes.bfloat16)``."""
        if dtype == _BFLOAT16:
            return cls()
        return super().from_native_dtype(dtype)

    def to_native_dtype(self) -> Any:
        """Always ``np.dtype(ml_dtypes.bfloat16)`` (ml_dtypes has no byte-swapped variant)."""
        return _BFLOAT16

    @property
    def item_size(self) -> int:
        """Two bytes."""
        return 2


def register() -> None:
    """Add ``bfloat16`` to zarr's data type registry (idempotent)."""
    data_type_registry.register(BFloat16._zarr_v3_name, BFloat16)
