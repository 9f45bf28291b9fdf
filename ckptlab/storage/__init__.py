"""Storage: the only code that touches checkpoint bytes (Zarr v3 layout, commit, state file).

Examples
--------
>>> import ckptlab as ck, tempfile, os
>>> path = ck.Checkpoint(w=ck.Variable([1.0])).write(os.path.join(tempfile.mkdtemp(), "c"))
>>> ck.storage.verify_checkpoint(path)
[]
"""

from ckptlab.storage._commit import is_committed, publish, retract
from ckptlab.storage._fsspec import FsspecStore, resolve, set_storage_options, storage_options_for
from ckptlab.storage._kv import ByteStore, LocalStore
from ckptlab.storage._layout import CHUNK_BYTES, dtype_name, numpy_dtype
from ckptlab.storage._reader import (
    StoredCheckpoint,
    open_checkpoint,
    read_document,
    read_listing,
)
from ckptlab.storage._state import (
    STATE_FILENAME,
    latest_checkpoint,
    read_state,
    relative_to,
    write_state,
)
from ckptlab.storage._values import ValueReader
from ckptlab.storage._verify import verify_checkpoint
from ckptlab.storage._writer import ReadOptions, WriteOptions, little_endian, write_checkpoint
from ckptlab.storage._zarr_hook import install as _install_zarr_dtypes
from ckptlab.storage._zarr_hook import register_zarr_dtypes

_install_zarr_dtypes()

__all__ = [
    "CHUNK_BYTES",
    "STATE_FILENAME",
    "ByteStore",
    "FsspecStore",
    "LocalStore",
    "ReadOptions",
    "StoredCheckpoint",
    "ValueReader",
    "WriteOptions",
    "dtype_name",
    "is_committed",
    "latest_checkpoint",
    "little_endian",
    "numpy_dtype",
    "open_checkpoint",
    "publish",
    "read_document",
    "read_listing",
    "read_state",
    "register_zarr_dtypes",
    "relative_to",
    "resolve",
    "retract",
    "set_storage_options",
    "storage_options_for",
    "verify_checkpoint",
    "write_checkpoint",
    "write_state",
]
