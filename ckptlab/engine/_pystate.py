"""Python state (a scheduler's ``state_dict()``) as a checksummed byte value (internal).

Frameworks keep some state in plain Python objects: an LR scheduler's ``last_epoch`` and
``base_lrs``, a ``GradScaler``'s scale, an optimizer's hyperparameters.  ckptlab stores such
state as one value: UTF-8 JSON in a ``uint8`` array (docs/frameworks.md), so it is checksummed
like every value and readable without ckptlab (``json.loads(bytes(array))``).  Types JSON
lacks are tagged so that the state round-trips exactly: tuples, dicts with non-string keys,
non-finite floats (Python's ``Infinity``/``NaN`` literals), and arrays (a ``torch`` tensor or a
numpy array inside the state, stored with dtype, shape and base64 bytes).  Anything else (a
function, an arbitrary object) is refused: ckptlab never pickles.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import numpy as np

from ckptlab.storage import dtype_name, numpy_dtype

__all__ = ["PythonStateError", "decode", "encode"]

_TAG = "\x00ckptlab:"
_TUPLE = _TAG + "tuple"
_ITEMS = _TAG + "items"
_ARRAY = _TAG + "array"


class PythonStateError(TypeError):
    """A value in Python state that ckptlab cannot store (the message names where)."""


def encode(state: Any, to_array: Callable[[Any], np.ndarray[Any, Any] | None]) -> bytes:
    """UTF-8 JSON bytes for ``state``; ``to_array`` turns framework arrays into numpy or None.

    Examples
    --------
    >>> decode(encode({"epoch": 3, "betas": (0.9, 0.999)}, lambda x: None), lambda a: a)
    {'epoch': 3, 'betas': (0.9, 0.999)}
    """
    return json.dumps(_tagged(state, "state", to_array), separators=(",", ":")).encode()


def decode(data: bytes, from_array: Callable[[np.ndarray[Any, Any]], Any]) -> Any:
    """The state :func:`encode` wrote; arrays become ``from_array(numpy array)``."""
    return _untagged(json.loads(data.decode()), from_array)


def _tagged(value: Any, where: str, to_array: Callable[[Any], np.ndarray[Any, Any] | None]) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list):
        return [_tagged(v, f"{where}[{i}]", to_array) for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return {_TUPLE: [_tagged(v, f"{where}[{i}]", to_array) for i, v in enumerate(value)]}
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith(_TAG) for k in value):
            return {k: _tagged(v, f"{where}[{k!r}]", to_array) for k, v in value.items()}
        return {
            _ITEMS: [
                [_tagged(k, f"{where} key", to_array), _tagged(v, f"{where}[{k!r}]", to_array)]
                for k, v in value.items()
            ]
        }
    array = value if isinstance(value, np.ndarray) else to_array(value)
    if array is None:
        raise PythonStateError(
            f"{where} is a {type(value).__name__}, which ckptlab cannot store as Python state "
            "(it stores None, bools, numbers, strings, lists, tuples, dicts and arrays; it never "
            "pickles). Keep such objects out of state_dict(), or rebuild them after restoring."
        )
    array = array if array.flags.c_contiguous else array.copy(order="C")
    return {
        _ARRAY: [
            dtype_name(array.dtype, where),
            list(array.shape),
            base64.b64encode(array.tobytes()).decode(),
        ]
    }


def _untagged(value: Any, from_array: Callable[[np.ndarray[Any, Any]], Any]) -> Any:
    if isinstance(value, list):
        return [_untagged(v, from_array) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((tag, body),) = value.items()
        if tag == _TUPLE:
            return tuple(_untagged(v, from_array) for v in body)
        if tag == _ITEMS:
            return {_untagged(k, from_array): _untagged(v, from_array) for k, v in body}
        if tag == _ARRAY:
            dtype, shape, data = body
            flat = np.frombuffer(base64.b64decode(data), dtype=numpy_dtype(dtype))
            return from_array(flat.reshape(shape).copy())
    return {k: _untagged(v, from_array) for k, v in value.items()}
