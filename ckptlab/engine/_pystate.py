r"""Python state (a scheduler's ``state_dict()``) as a checksummed byte value (internal).

Frameworks keep some state in plain Python objects: an LR scheduler's ``last_epoch`` and
``base_lrs``, a ``GradScaler``'s scale, an optimizer's hyperparameters.  ckptlab stores such
state as one value: UTF-8 JSON in a ``uint8`` array (docs/frameworks.md), so it is checksummed
like every value and readable without ckptlab (``json.loads(bytes(array))``).  Types JSON
lacks are tagged so that the state round-trips exactly: tuples, dicts with non-string keys,
``collections.Counter`` (a ``MultiStepLR``'s milestones), non-finite floats (Python's
``Infinity``/``NaN`` literals), a framework's arrays (a ``torch`` tensor inside the state),
numpy arrays and numpy scalars (``np.float32(0.9)``), each stored with its dtype (and shape)
and its bytes in base64, and restored as the same type.  Anything else (a function, an
arbitrary object) is refused: ckptlab never pickles.

Tags are one-entry objects whose key starts with ``"\x00ckptlab:"``:

* ``tuple``: ``[items]``; ``items``: ``[[key, value], ...]`` (a dict with other keys);
  ``counter``: a ``collections.Counter``, as its dict;
* ``array``: ``[dtype, shape, base64]``, a framework's array (``from_array`` on decode);
* ``numpy``: ``[dtype, shape, base64]``, a numpy array; ``numpy_scalar``: ``[dtype, base64]``.

Checkpoints written before the numpy and counter tags stored numpy arrays as ``array``
(decoded by ``from_array``, as then), numpy scalars as plain numbers and Counters as dicts.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from ckptlab.errors import UnsupportedFormatError
from ckptlab.storage import dtype_name, numpy_dtype

__all__ = ["PythonStateError", "decode", "encode"]

_TAG = "\x00ckptlab:"
_TUPLE = _TAG + "tuple"
_ITEMS = _TAG + "items"
_COUNTER = _TAG + "counter"
_ARRAY = _TAG + "array"
_NUMPY = _TAG + "numpy"
_NUMPY_SCALAR = _TAG + "numpy_scalar"


class PythonStateError(TypeError):
    """A value in Python state that ckptlab cannot store (the message names where).

    ``problem`` is what is wrong, without the advice for a save (a restore gives its own).
    """

    def __init__(self, problem: str, fix: str = "") -> None:
        super().__init__(f"{problem}. {fix}" if fix else problem)
        self.problem = problem


def encode(state: Any, to_array: Callable[[Any], np.ndarray[Any, Any] | None]) -> bytes:
    """UTF-8 JSON bytes for ``state``; ``to_array`` turns framework arrays into numpy or None.

    Examples
    --------
    >>> decode(encode({"epoch": 3, "betas": (0.9, 0.999)}, lambda x: None), lambda a: a)
    {'epoch': 3, 'betas': (0.9, 0.999)}
    >>> decode(encode([np.float32(0.9), np.arange(2, dtype="int16")], lambda x: None), list)
    [np.float32(0.9), array([0, 1], dtype=int16)]
    """
    return json.dumps(_tagged(state, "state", to_array), separators=(",", ":")).encode()


def decode(data: bytes, from_array: Callable[[np.ndarray[Any, Any]], Any]) -> Any:
    r"""The state :func:`encode` wrote; a framework's arrays become ``from_array(numpy array)``.

    Examples
    --------
    A framework's array (and, in checkpoints written before numpy values were tagged, a numpy
    array):

    >>> decode(rb'{"\u0000ckptlab:array":["int16",[2],"AQACAA=="]}', lambda a: a.tolist())
    [1, 2]
    """
    return _untagged(json.loads(data.decode()), from_array)


def _tagged(value: Any, where: str, to_array: Callable[[Any], np.ndarray[Any, Any] | None]) -> Any:
    if isinstance(value, np.generic):  # before float and str: np.float64 and np.str_ are both
        dtype, _, data = _array_body(np.asarray(value), where)
        return {_NUMPY_SCALAR: [dtype, data]}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.ndarray):
        return {_NUMPY: _array_body(value, where)}
    if isinstance(value, list):
        return [_tagged(v, f"{where}[{i}]", to_array) for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return {_TUPLE: [_tagged(v, f"{where}[{i}]", to_array) for i, v in enumerate(value)]}
    if isinstance(value, Counter):  # before dict: a MultiStepLR's milestones stay a Counter
        return {_COUNTER: _tagged(dict(value), where, to_array)}
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith(_TAG) for k in value):
            return {k: _tagged(v, f"{where}[{k!r}]", to_array) for k, v in value.items()}
        return {
            _ITEMS: [
                [_tagged(k, f"{where} key", to_array), _tagged(v, f"{where}[{k!r}]", to_array)]
                for k, v in value.items()
            ]
        }
    array = to_array(value)
    if array is None:
        raise PythonStateError(
            f"{where} is a {type(value).__name__}, which ckptlab cannot store as Python state "
            "(it stores None, bools, numbers, strings, lists, tuples, dicts and arrays; it never "
            "pickles)",
            "Keep such objects out of state_dict(), or rebuild them after restoring.",
        )
    return {_ARRAY: _array_body(array, where)}


def _array_body(array: np.ndarray[Any, Any], where: str) -> list[Any]:
    """``[dtype, shape, base64 of the little-endian C-order bytes]``."""
    try:
        dtype = dtype_name(array.dtype, where)
    except UnsupportedFormatError as error:
        raise PythonStateError(str(error)) from None
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    array = array if array.flags.c_contiguous else array.copy(order="C")
    return [dtype, list(array.shape), base64.b64encode(array.tobytes()).decode()]


def _array(dtype: str, shape: list[int], data: str) -> np.ndarray[Any, Any]:
    """A fresh writable array from :func:`_array_body`'s parts."""
    flat = np.frombuffer(base64.b64decode(data), dtype=numpy_dtype(dtype))
    return flat.reshape(shape).copy()


def _untagged(value: Any, from_array: Callable[[np.ndarray[Any, Any]], Any]) -> Any:
    if isinstance(value, list):
        return [_untagged(v, from_array) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((tag, body),) = value.items()
        if tag == _TUPLE:
            return tuple(_untagged(v, from_array) for v in body)
        if tag == _COUNTER:
            return Counter(_untagged(body, from_array))
        if tag == _ITEMS:
            return {_untagged(k, from_array): _untagged(v, from_array) for k, v in body}
        if tag == _ARRAY:
            return from_array(_array(*body))
        if tag == _NUMPY:
            return _array(*body)
        if tag == _NUMPY_SCALAR:
            dtype, data = body
            return _array(dtype, [], data)[()]
    return {k: _untagged(v, from_array) for k, v in value.items()}
