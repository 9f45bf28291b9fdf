"""Registering ckptlab's Zarr data types with zarr-python (internal; see ckptlab._zarr_hook)."""

from __future__ import annotations

__all__ = ["register_zarr_dtypes"]


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
