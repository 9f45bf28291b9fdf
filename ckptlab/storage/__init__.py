"""Storage: the only code that touches checkpoint bytes (Zarr v3 layout, commit, state file).

Examples
--------
>>> import ckptlab as ck, tempfile, os
>>> path = ck.Checkpoint(w=ck.Variable([1.0])).write(os.path.join(tempfile.mkdtemp(), "c"))
>>> ck.storage.verify_checkpoint(path)
[]
"""

from ckptlab.storage._commit import (
    is_committed,
    publish,
    refuse_a_file_above,
    retract,
    retract_bundle,
)
from ckptlab.storage._directory import (
    DirectoryLock,
    clear_eviction,
    note_eviction,
    remove_leftovers,
)
from ckptlab.storage._faults import noting_failure
from ckptlab.storage._fsspec import (
    FsspecStore,
    path_text,
    resolve,
    set_storage_options,
    storage_options_for,
)
from ckptlab.storage._kv import Buffer, ByteStore, LocalStore, occupied
from ckptlab.storage._layout import (
    CHUNK_BYTES,
    choose_chunks,
    dtype_name,
    numpy_dtype,
)
from ckptlab.storage._parts import (
    ArraySpec,
    PartWriter,
    begin_staging,
    discard_staged,
    publish_staged,
    read_rows,
)
from ckptlab.storage._paths import open_path, resolve_path
from ckptlab.storage._provenance import writer_info
from ckptlab.storage._reader import (
    StoredCheckpoint,
    document_checksum,
    find_checkpoint,
    open_checkpoint,
    read_document,
    read_listing,
)
from ckptlab.storage._safetensors_writer import SAFETENSORS_DTYPES, parse_size, write_safetensors
from ckptlab.storage._state import (
    STATE_FILENAME,
    join_listed,
    latest_checkpoint,
    listed_or_removed,
    listed_path,
    read_state,
    record_latest,
    relative_to,
    write_state,
)
from ckptlab.storage._values import ValueReader
from ckptlab.storage._verify import verify_checkpoint
from ckptlab.storage._writer import (
    ReadOptions,
    WriteOptions,
    checked_options,
    little_endian,
    write_checkpoint,
)
from ckptlab.storage._zarr_register import register_zarr_dtypes

__all__ = [
    "CHUNK_BYTES",
    "SAFETENSORS_DTYPES",
    "STATE_FILENAME",
    "ArraySpec",
    "Buffer",
    "ByteStore",
    "DirectoryLock",
    "FsspecStore",
    "LocalStore",
    "PartWriter",
    "ReadOptions",
    "StoredCheckpoint",
    "ValueReader",
    "WriteOptions",
    "begin_staging",
    "checked_options",
    "choose_chunks",
    "clear_eviction",
    "discard_staged",
    "document_checksum",
    "dtype_name",
    "find_checkpoint",
    "is_committed",
    "join_listed",
    "latest_checkpoint",
    "listed_or_removed",
    "listed_path",
    "little_endian",
    "note_eviction",
    "noting_failure",
    "numpy_dtype",
    "occupied",
    "open_checkpoint",
    "open_path",
    "parse_size",
    "publish",
    "publish_staged",
    "read_document",
    "read_listing",
    "read_rows",
    "read_state",
    "record_latest",
    "register_zarr_dtypes",
    "refuse_a_file_above",
    "relative_to",
    "remove_leftovers",
    "path_text",
    "resolve",
    "resolve_path",
    "retract",
    "retract_bundle",
    "set_storage_options",
    "storage_options_for",
    "verify_checkpoint",
    "write_checkpoint",
    "write_safetensors",
    "write_state",
    "writer_info",
]
