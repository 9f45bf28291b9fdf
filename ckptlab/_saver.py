"""``ck.Saver``: name-based checkpoints keyed by ``Variable.name`` (TF1 ``Saver`` analogue)."""

from __future__ import annotations

import collections
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ckptlab._variable import Variable
from ckptlab.core import Assignment, check_type
from ckptlab.engine import conflict_error, next_uid, write_value
from ckptlab.errors import InvalidArgumentError, NotFoundError
from ckptlab.storage import (
    WriteOptions,
    checked_options,
    open_checkpoint,
    path_text,
    resolve,
    write_checkpoint,
    writer_info,
)

__all__ = ["Saver"]


class Saver:
    """Saves and restores variables by name; its files restore by name into any program.

    Parameters
    ----------
    var_list
        Variables (keyed by their ``.name``) or a mapping ``name -> Variable``.

    Examples
    --------
    >>> import ckptlab as ck, tempfile, os
    >>> w = ck.Variable([1.0], name="dense/kernel")
    >>> path = ck.Saver([w]).save(os.path.join(tempfile.mkdtemp(), "model.ckpt"))
    >>> ck.list_variables(path)
    [('dense/kernel', [1])]
    """

    def __init__(self, var_list: Sequence[Variable] | Mapping[str, Variable]) -> None:
        named = isinstance(var_list, Mapping)
        entries: list[tuple[Any, Any]]
        if isinstance(var_list, Mapping):
            entries = list(var_list.items())
        else:
            expected = "a list of ck.Variable or a dict {name: ck.Variable}"
            check_type(var_list, Iterable, "var_list", expected, "ck.Saver([kernel, bias])")
            entries = list(enumerate(var_list))
        wrong = [
            f"[{key!r}] ({type(value).__name__})"
            for key, value in entries
            if not isinstance(value, Variable) or (named and not isinstance(key, str))
        ]
        if wrong:
            raise InvalidArgumentError(
                f"Saver expects ck.Variable values (under str names in a dict); {', '.join(wrong)} "
                "are not. Wrap arrays in ck.Variable(value, name=...) and pass "
                "ck.Saver([kernel, bias]) or ck.Saver({'dense/kernel': kernel})."
            )
        items = entries if named else [(v.name, v) for _, v in entries]
        names = [name for name, _ in items]
        duplicates = sorted(n for n, count in collections.Counter(names).items() if count > 1)
        if duplicates:
            raise InvalidArgumentError(
                f"Saver got several variables named {duplicates}; names are the keys of a "
                "name-based checkpoint. Pass a dict {name: variable} with unique names."
            )
        self._variables: dict[str, Variable] = dict(items)

    def save(
        self, save_path: str | os.PathLike[str], *, options: WriteOptions | None = None
    ) -> str:
        """Write a name-based checkpoint at ``save_path``; return the path.

        Parameters
        ----------
        save_path
            Where the checkpoint goes (a path or URL); an existing checkpoint there is replaced.
        options
            Durability, progress bar, storage options (:class:`ck.WriteOptions`).

        Returns
        -------
        str
            ``save_path`` as a string.

        Examples
        --------
        >>> import tempfile
        >>> path = ck.Saver({"step": ck.Variable(3)}).save(tempfile.mkdtemp() + "/c")
        >>> ck.load_checkpoint(path).get_tensor("step")
        array(3)
        """
        path = path_text(save_path)
        options = checked_options(options, WriteOptions)
        store, key = resolve(path, options.storage_options)
        values = [(name, v._ck_value()) for name, v in self._variables.items()]
        write_checkpoint(
            store,
            key,
            values,
            kind="name",
            graph=None,
            writer=writer_info(),
            options=options,
        )
        return path

    def restore(self, save_path: str | os.PathLike[str]) -> None:
        """Assign every variable the stored value of its name (all validated first).

        Parameters
        ----------
        save_path
            A name-based checkpoint (or any checkpoint whose keys are the variables' names).

        Raises
        ------
        NotFoundError
            The checkpoint lacks some variable's name; nothing was written.
        RestoreConflictError
            A shape or dtype conflicts; nothing was written.

        Examples
        --------
        >>> import tempfile
        >>> path = ck.Saver({"step": ck.Variable(3)}).save(tempfile.mkdtemp() + "/c")
        >>> step = ck.Variable(0)
        >>> ck.Saver({"step": step}).restore(path)
        >>> int(step.numpy())
        3
        """
        store, key = resolve(save_path)
        source = open_checkpoint(store, key)
        specs = source.specs()
        missing = sorted(n for n in self._variables if n not in specs)
        if missing:
            raise NotFoundError(
                f"Key {missing[0]!r} not found in checkpoint {source.display_path} "
                f"({len(missing)} missing: {missing[:10]}). ck.list_variables(path) lists its keys."
            )
        writes = [
            Assignment(node=i, key=n, target=v, expected=v._ck_value_spec(), stored=specs[n])
            for i, (n, v) in enumerate(self._variables.items())
        ]
        conflicts = [w for w in writes if w.conflict is not None]
        if conflicts:
            raise conflict_error(conflicts, source.display_path, [w.key for w in conflicts])
        arrays: dict[str, Any] = {w.key: source.read(w.key) for w in writes}
        uid = next_uid()
        for w in writes:
            write_value(w.target, arrays[w.key], uid)
