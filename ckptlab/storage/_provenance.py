"""Who wrote a checkpoint: the ``writer`` entry of the documents ckptlab writes (internal)."""

from __future__ import annotations

import datetime
import socket
from typing import Any

from ckptlab._version import __version__

__all__ = ["writer_info"]


def writer_info(**extra: Any) -> dict[str, Any]:
    """The ``writer`` entry of a checkpoint written now: library, version, time and host.

    Parameters
    ----------
    **extra
        More entries, e.g. the number of workers of a multi-worker save.

    Returns
    -------
    dict
        JSON-serialisable; stored in the checkpoint's document (FORMAT.md).

    Examples
    --------
    >>> info = writer_info(workers=2)
    >>> info["library"], info["workers"], sorted(info)
    ('ckptlab', 2, ['created', 'host', 'library', 'version', 'workers'])
    """
    return {
        "library": "ckptlab",
        "version": __version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        **extra,
    }
