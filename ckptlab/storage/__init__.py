"""Storage: the only code that touches checkpoint bytes (Zarr v3 layout, commit, state file)."""

from ckptlab.storage._commit import is_committed, publish, retract
from ckptlab.storage._kv import ByteStore, FsspecStore, LocalStore, resolve
from ckptlab.storage._layout import CHUNK_BYTES, PACK_THRESHOLD, dtype_name, numpy_dtype
from ckptlab.storage._reader import StoredCheckpoint, open_checkpoint
from ckptlab.storage._state import (
    STATE_FILENAME,
    latest_checkpoint,
    read_state,
    relative_to,
    write_state,
)
from ckptlab.storage._writer import WriteOptions, little_endian, write_checkpoint

__all__ = [
    "CHUNK_BYTES",
    "PACK_THRESHOLD",
    "STATE_FILENAME",
    "ByteStore",
    "FsspecStore",
    "LocalStore",
    "StoredCheckpoint",
    "WriteOptions",
    "dtype_name",
    "is_committed",
    "latest_checkpoint",
    "little_endian",
    "numpy_dtype",
    "open_checkpoint",
    "publish",
    "read_state",
    "relative_to",
    "resolve",
    "retract",
    "write_checkpoint",
    "write_state",
]
