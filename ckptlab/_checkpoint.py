"""``ck.Checkpoint``: save, write, restore and read object graphs (public class, re-exported)."""

from __future__ import annotations

import functools
import logging
import os
import posixpath
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal, overload

import numpy as np

from ckptlab._async import SaveHandle, settle, stage, start
from ckptlab._keymap import KeyMap, check_key_map
from ckptlab._module import Module, wrap
from ckptlab._variable import Variable
from ckptlab.core import ProgramGraph, gc_paused, interrupts_held
from ckptlab.engine import (
    CheckpointLoadStatus,
    InitializationOnlyStatus,
    NameBasedRestore,
    NameBasedSaverStatus,
    Program,
    RestoreCoordinator,
    RestoreStatus,
    is_trackable,
    on_attach,
    program_values,
)
from ckptlab.errors import InvalidArgumentError
from ckptlab.storage import (
    ByteStore,
    DirectoryLock,
    ReadOptions,
    WriteOptions,
    checked_options,
    open_checkpoint,
    path_text,
    record_latest,
    resolve,
    write_checkpoint,
    writer_info,
)

__all__ = ["Checkpoint"]

logger = logging.getLogger("ckptlab")
_RESERVED = frozenset({"save", "write", "restore", "read", "save_counter", "sync", "options"})
_KEYWORD_PREFIXES = ("_ck_", "__")


def takes_keyword(name: str) -> bool:
    """Whether ``ck.Checkpoint(**{name: obj})`` accepts ``name`` (not ``save_counter``)."""
    return name not in _RESERVED and not name.startswith(_KEYWORD_PREFIXES)


class Checkpoint(Module):
    """Groups trackable objects; saves and restores them as one object graph.

    Parameters
    ----------
    root
        Optional object to use as the root of the graph (its dependencies become top-level).
    **kwargs
        Trackable objects (or lists/tuples/dicts of them) to save, by name; each is also an
        attribute of the Checkpoint (``ckpt.step``), with or without ``root``.

    Examples
    --------
    >>> import ckptlab as ck, tempfile, os
    >>> model = ck.Module(); model.w = ck.Variable([1.0, 2.0])
    >>> path = ck.Checkpoint(model=model).save(os.path.join(tempfile.mkdtemp(), "ckpt"))
    >>> os.path.basename(path)
    'ckpt-1'
    >>> fresh = ck.Module(); fresh.w = ck.Variable([0.0, 0.0])
    >>> ck.Checkpoint(model=fresh).restore(path).assert_consumed().report().summary()
    '2 matched'
    """

    _ck_root: Any
    _ck_attached: dict[str, Any]
    _ck_counter: Variable | None

    def __init__(self, root: Any = None, **kwargs: Any) -> None:
        object.__setattr__(self, "_ck_root", None)
        object.__setattr__(self, "_ck_attached", {})
        object.__setattr__(self, "_ck_counter", None)
        root = wrap(root)
        if root is not None and not is_trackable(root):
            raise InvalidArgumentError(_not_trackable("root", root))
        children = {}
        for name in sorted(kwargs):
            _check_name(name, "keyword argument", _KEYWORD_PREFIXES)
            if name in _RESERVED:
                raise InvalidArgumentError(
                    f"Checkpoint keyword argument {name!r} would shadow Checkpoint.{name}; "
                    "choose another name (e.g. model_save or my_counter)."
                )
            value = wrap(kwargs[name])
            if not is_trackable(value):
                raise InvalidArgumentError(_not_trackable(name, value))
            if root is not None:
                _check_keyword(root, name, value, created=False)
            children[name] = value
        object.__setattr__(self, "_ck_root", root)
        for name, value in children.items():
            if root is None:
                setattr(self, name, value)
            else:  # a child of root in the graph, and an attribute here as in TensorFlow
                self._ck_attached[name] = value
                object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        _check_name(name, "attribute", ("_ck_",))
        if name in _RESERVED:
            raise ValueError(f"Cannot assign to Checkpoint.{name}; choose another attribute name.")
        super().__setattr__(name, value)

    # -- the graph --------------------------------------------------------------------------

    @property
    def _ck_graph_root(self) -> Any:
        return self if self._ck_root is None else self._ck_root

    def _ck_view(self, counter: Variable | None = None) -> Program:
        """The program saved and restored; refuses keyword arguments root's children hide.

        ``counter``: the ``save_counter`` a restore creates, a child of the graph's root
        before it is the Checkpoint's (:meth:`restore`).
        """
        self._ck_check_keywords()
        return self._ck_program(counter)

    def _ck_program(self, counter: Variable | None = None) -> Program:
        attached = self._ck_attached if self._ck_root is not None else None
        if counter is not None:
            attached = {**(attached or {}), "save_counter": counter}
        return Program(self._ck_graph_root, attached)

    def _ck_check_keywords(self) -> None:
        """Refuse a keyword argument that a child root got later under its name would hide.

        The constructor refuses such a clash (docs/semantics.md S8); a child added to root
        afterwards would otherwise silently win over the keyword argument's object in every
        save and restore.  The ``save_counter`` is exempt: root's own counter is meant to win
        (docs/semantics.md S20).
        """
        root = self._ck_root
        if root is None:
            return
        for name, value in self._ck_attached.items():
            if name != "save_counter":
                _check_keyword(root, name, value, created=True)

    @property
    def save_counter(self) -> Variable:
        """Number of ``save()`` calls (int64 scalar, saved); created on first access.

        With ``root=`` an object that has its own ``save_counter`` (another Checkpoint, or a
        module holding one), that counter is used: it is the one the graph saves (TF looks the
        counter up on the root the same way).
        """
        root_counter = self._ck_root_counter()
        if root_counter is not None:
            if self._ck_attached.get("save_counter") is self._ck_counter:
                self._ck_attached.pop("save_counter", None)
            object.__setattr__(self, "_ck_counter", None)
            return root_counter
        counter: Variable | None = self._ck_counter
        if counter is not None:
            return counter
        return self._ck_adopt(_new_counter())

    def _ck_adopt(self, counter: Variable) -> Variable:
        """Make ``counter`` this Checkpoint's ``save_counter``; restores waiting for it fire.

        A restore that fails on it leaves the Checkpoint without it, as it was.
        """
        if self._ck_root is None:
            self._ck_track_all([("save_counter", counter)], set_attribute=False)
        else:
            self._ck_attached["save_counter"] = counter
            try:
                on_attach(self._ck_root, "save_counter", counter)
            except BaseException:
                del self._ck_attached["save_counter"]
                raise
        object.__setattr__(self, "_ck_counter", counter)
        return counter

    def _ck_counter_to_create(self) -> tuple[Checkpoint, Variable] | None:
        """The ``save_counter`` that :attr:`save_counter` would create, and its owner.

        ``None`` when it exists: this Checkpoint's own, the root's own variable, or that of
        the Checkpoint this one is rooted at (the owner, followed down a chain of roots).
        """
        owner = self
        while isinstance(owner._ck_root, Checkpoint):
            owner = owner._ck_root
        if owner._ck_counter is not None or owner._ck_root_counter() is not None:
            return None
        return owner, _new_counter()

    def _ck_root_counter(self) -> Variable | None:
        """The root's own ``save_counter`` dependency, if it has one (created for a Checkpoint)."""
        root = self._ck_root
        if root is None:
            return None
        if isinstance(root, Checkpoint):
            return root.save_counter
        own = Program(root).child(root, "save_counter")
        return own if isinstance(own, Variable) else None

    # -- saving -----------------------------------------------------------------------------

    def write(
        self, file_prefix: str | os.PathLike[str], *, options: WriteOptions | None = None
    ) -> str:
        """Write a checkpoint exactly at ``file_prefix``; no numbering, no state file.

        Parameters
        ----------
        file_prefix
            Where the checkpoint goes (a path or URL); missing parent directories are created
            (and removed again if the write fails), and an existing ckptlab checkpoint there is
            replaced atomically.
        options
            Durability, progress bar, storage options for URLs (:class:`ck.WriteOptions`).

        Returns
        -------
        str
            ``file_prefix`` as a string.

        Examples
        --------
        >>> import tempfile
        >>> ckpt = ck.Checkpoint(w=ck.Variable([1.0, 2.0]))
        >>> path = ckpt.write(tempfile.mkdtemp() + "/weights")
        >>> path.endswith("/weights"), ck.list_variables(path)
        (True, [('w/.ATTRIBUTES/VARIABLE_VALUE', [2])])
        """
        path = path_text(file_prefix)
        options = checked_options(options, WriteOptions)
        settle(self)
        self._write(path, options, overrides=None)
        return path

    @overload
    def save(
        self,
        file_prefix: str | os.PathLike[str],
        *,
        options: WriteOptions | None = None,
        blocking: Literal[True] = True,
    ) -> str: ...
    @overload
    def save(
        self,
        file_prefix: str | os.PathLike[str],
        *,
        options: WriteOptions | None = None,
        blocking: Literal[False],
    ) -> SaveHandle: ...
    def save(
        self,
        file_prefix: str | os.PathLike[str],
        *,
        options: WriteOptions | None = None,
        blocking: bool = True,
    ) -> str | SaveHandle:
        """Increment ``save_counter``, write ``f"{file_prefix}-{n}"``, update the state file.

        Parameters
        ----------
        file_prefix
            The prefix of the numbered checkpoint (a path or URL); its directory's state file
            then names the new checkpoint as the latest.
        options
            Durability, progress bar, storage options for URLs (:class:`ck.WriteOptions`).
        blocking
            ``False`` copies the values now, writes them on a background thread and returns a
            :class:`ck.SaveHandle`; the state file moves once the checkpoint is committed.  The
            next save waits for it (and raises its error if nobody saw it).

        Returns
        -------
        str or SaveHandle
            The path of the new checkpoint, or (``blocking=False``) a handle whose
            ``result()`` is that path.

        Examples
        --------
        >>> import tempfile
        >>> directory = tempfile.mkdtemp()
        >>> ckpt = ck.Checkpoint(w=ck.Variable(1.0))
        >>> first = ckpt.save(directory + "/ckpt")
        >>> second = ckpt.save(directory + "/ckpt", blocking=False).result()
        >>> first.endswith("ckpt-1"), second.endswith("ckpt-2")
        (True, True)
        >>> ck.latest_checkpoint(directory) == second
        True
        """
        prefix = path_text(file_prefix)
        options = checked_options(options, WriteOptions)
        settle(self)
        self._ck_check_keywords()  # before the counter is created
        store, key = resolve(prefix, options.storage_options)
        DirectoryLock(store, posixpath.dirname(key)).check_plain_save()  # another's manager?
        counter = self.save_counter
        number = int(counter.numpy()) + 1
        path = f"{prefix}-{number}"
        store, key = resolve(path, options.storage_options)  # now: a later os.chdir moves nothing
        overrides = {id(counter): np.asarray(number, dtype=np.int64)}
        write = self._prepare(store, key, options, overrides, snapshot=not blocking)

        def finish() -> str:
            write()
            with interrupts_held():  # committed: recorded and counted before a Ctrl-C stops it
                record_latest(store, key, durable=options.durable)
                if blocking:
                    counter.assign(number)
            return path

        if not blocking:
            counter.assign(number)
            return start(self, path, finish)
        return finish()

    def _write(
        self, path: str, options: WriteOptions | None, overrides: dict[int, Any] | None
    ) -> None:
        store, key = resolve(path, (options or WriteOptions()).storage_options)  # a bad path?
        with gc_paused():  # a walk and a document of many small objects, no cycles among them
            self._prepare(store, key, options, overrides, snapshot=False)()

    def _prepare(
        self,
        store: ByteStore,
        key: str,
        options: WriteOptions | None,
        overrides: dict[int, Any] | None,
        *,
        snapshot: bool,
    ) -> Callable[[], object]:
        """Walk the program now; return the write to ``key``.  ``snapshot`` copies the values.

        The caller resolves the path once, when its call is made: a relative path names the
        same place however the working directory changes while a background save writes.
        """
        program = self._ck_view().walk()
        values = program_values(program, overrides)
        if program.unsaved_slots:
            _warn_unsaved_slots(program)
        values = stage(self, values, copy=snapshot)
        return functools.partial(
            write_checkpoint,
            store,
            key,
            values,
            kind="object",
            graph=program.graph,
            writer=writer_info(),
            options=options or WriteOptions(),
        )

    # -- restoring --------------------------------------------------------------------------

    def restore(
        self,
        save_path: str | os.PathLike[str] | None,
        *,
        lazy: bool = False,
        key_map: KeyMap | None = None,
        skip_slot_variables: bool = False,
        options: ReadOptions | None = None,
    ) -> RestoreStatus:
        """Restore from ``save_path`` (``None``: initialize only) and create ``save_counter``.

        Eagerly, values are written before this returns; objects created later are restored
        when they are attached or created (docs/semantics.md S36-S42).  Every shape and dtype
        is checked and every value read, the stored counter included, before anything is
        written; the counter is created once the rest is done (docs/semantics.md S33).

        Parameters
        ----------
        save_path
            A checkpoint (path or URL), e.g. ``ck.latest_checkpoint(directory)``; ``None``
            restores nothing.  Checkpoints of other frameworks are read too
            (docs/interop.md).
        lazy
            Match now, write nothing until ``status.run_restore_ops()`` (TensorFlow's graph
            mode, docs/semantics.md S99-S101); conflicts are then reported, not raised.
        key_map
            A :class:`ck.KeyMap` that renames or transposes what the checkpoint holds before
            matching, for checkpoints written by other frameworks.
        skip_slot_variables
            Leave optimizer slot variables out of restoration and of every check (TF's
            ``CheckpointOptions(experimental_skip_slot_variables=True)``).
        options
            Progress bar and storage options for URLs (:class:`ck.ReadOptions`).

        Returns
        -------
        CheckpointLoadStatus or NameBasedSaverStatus or InitializationOnlyStatus
            An object-based checkpoint, a name-based one (matched by ``Variable.name``), or
            ``save_path=None``.

        Raises
        ------
        NotFoundError
            Nothing is at ``save_path`` (the message hints at a missing ``-N`` suffix).
        RestoreConflictError
            Eagerly, a shape or dtype conflict; it lists every conflict and nothing was
            written.
        CorruptCheckpointError
            Eagerly, a damaged value; nothing was written and no counter created.

        Examples
        --------
        >>> import tempfile
        >>> path = ck.Checkpoint(w=ck.Variable([1.0, 2.0])).save(tempfile.mkdtemp() + "/ckpt")
        >>> w = ck.Variable([0.0, 0.0])
        >>> status = ck.Checkpoint(w=w).restore(path)
        >>> w.numpy(), status.assert_consumed().report().summary()
        (array([1., 2.]), '2 matched')
        """
        options = _checked_read(save_path, key_map, options)
        # A counter to create is a child of the graph's root while the read matches, checks
        # and reads it with every other value (all before anything is written; NNX and Keras
        # objects cannot restore a child attached later); it is the Checkpoint's once the read
        # succeeded, so a failed restore creates nothing (docs/semantics.md S33).
        new = self._ck_counter_to_create()
        status = self._ck_read(
            save_path, lazy, key_map, skip_slot_variables, options, None if new is None else new[1]
        )
        if new is not None:
            new[0]._ck_adopt(new[1])
        if isinstance(status, NameBasedSaverStatus):
            status._exempt.append(self.save_counter)
        return status

    def read(
        self,
        save_path: str | os.PathLike[str] | None,
        *,
        lazy: bool = False,
        key_map: KeyMap | None = None,
        skip_slot_variables: bool = False,
        options: ReadOptions | None = None,
    ) -> RestoreStatus:
        """Like :meth:`restore` but never creates ``save_counter``.

        Parameters
        ----------
        save_path, lazy, key_map, skip_slot_variables, options
            As for :meth:`restore`.

        Returns
        -------
        CheckpointLoadStatus or NameBasedSaverStatus or InitializationOnlyStatus
            As for :meth:`restore`.

        Examples
        --------
        >>> import tempfile
        >>> path = ck.Checkpoint(w=ck.Variable(1.0)).write(tempfile.mkdtemp() + "/c")
        >>> ckpt = ck.Checkpoint(w=ck.Variable(0.0))
        >>> ckpt.read(path).assert_consumed().report().summary()
        '1 matched'
        """
        options = _checked_read(save_path, key_map, options)
        return self._ck_read(save_path, lazy, key_map, skip_slot_variables, options, None)

    def _ck_read(
        self,
        save_path: str | os.PathLike[str] | None,
        lazy: bool,
        key_map: KeyMap | None,
        skip_slot_variables: bool,
        options: ReadOptions,
        counter: Variable | None,
    ) -> RestoreStatus:
        """:meth:`read`, matching ``counter`` too (a ``save_counter`` :meth:`restore` creates)."""
        view = self._ck_view(counter)
        if save_path is None:
            return InitializationOnlyStatus(view)
        with gc_paused():  # matching many values builds many small objects, no cycles among them
            return self._read(view, save_path, lazy, key_map, skip_slot_variables, options)

    def _read(
        self,
        view: Program,
        save_path: str | os.PathLike[str],
        lazy: bool,
        key_map: KeyMap | None,
        skip_slot_variables: bool,
        options: ReadOptions,
    ) -> RestoreStatus:
        store, key = resolve(save_path, options.storage_options)
        source = open_checkpoint(store, key, progress=options.progress)
        if key_map is not None:
            source = key_map.apply(source)
        if source.document.kind == "name":
            logger.warning(
                "Restoring a name-based checkpoint (%s): values are matched by name (a "
                "Variable's name, a module's state-dict name), not by object path.",
                source.display_path,
            )
            restore = NameBasedRestore(source, view, lazy=lazy)
            restore.restore()
            return NameBasedSaverStatus(restore, [])
        coordinator = RestoreCoordinator(source, view, lazy=lazy, skip_slots=skip_slot_variables)
        try:
            coordinator.restore([(0, view.root)])
        except BaseException:
            coordinator.expect_partial = True  # no status was returned: nothing to warn about
            raise
        return CheckpointLoadStatus(coordinator)

    def __repr__(self) -> str:
        names = [name for name, _ in self._ck_program().children(self._ck_graph_root)]
        return f"<ck.Checkpoint {', '.join(names) or '(empty)'}>"


def _new_counter() -> Variable:
    """A ``save_counter`` (int64 scalar 0, not trainable) before a Checkpoint adopts it."""
    return Variable(0, name="save_counter", dtype=np.int64, trainable=False)


def _checked_read(
    save_path: str | os.PathLike[str] | None, key_map: KeyMap | None, options: ReadOptions | None
) -> ReadOptions:
    """Refuse wrong ``restore``/``read`` arguments before anything is created or read."""
    if save_path is not None:
        path_text(save_path)
    check_key_map(key_map)
    return checked_options(options, ReadOptions)


def _warn_unsaved_slots(program: ProgramGraph[Any]) -> None:
    """Say which optimizer state is not saved because its variable is not.

    TensorFlow saves a slot only with its variable (docs/semantics.md S17); ckptlab does the
    same, but a save never drops values without a word.
    """
    paths = program.graph.paths()
    counts = Counter(program.unsaved_slots)
    shown = ", ".join(
        f"{path.pretty if (path := paths[node]) else '?'} {slot!r} x{count}"
        for (node, slot), count in list(counts.items())[:6]
    )
    logger.warning(
        "%d optimizer slot value(s) are not saved: their variables are not part of this "
        "checkpoint (%s). Add those variables to the Checkpoint (e.g. ck.Checkpoint(model=..., "
        "extra=parameter, optimizer=...)) to save their state too.",
        len(program.unsaved_slots),
        shown,
    )


def _check_name(name: str, what: str, reserved: tuple[str, ...]) -> None:
    """Refuse names that would overwrite ckptlab's internal state on a Checkpoint."""
    if name.startswith(reserved):
        raise InvalidArgumentError(
            f"Checkpoint {what} {name!r} uses a name reserved for ckptlab's internal state "
            f"(names starting with {' or '.join(repr(p) for p in reserved)}); choose another "
            "name (e.g. without the leading underscores)."
        )


def _check_keyword(root: Any, name: str, value: Any, *, created: bool) -> None:
    """Refuse keyword argument ``name`` when root has a different child of that name.

    ``created``: the Checkpoint exists already (root got the child afterwards).
    """
    existing = Program(root).child(root, name)
    if existing is None or existing is value:
        return
    if not created:
        raise InvalidArgumentError(
            f"Cannot create a Checkpoint with keyword argument {name} if root.{name} already "
            "exists (and is a different object). Rename the keyword argument."
        )
    raise InvalidArgumentError(
        f"(root).{name}: expected the Checkpoint's keyword argument {name} (a "
        f"{type(value).__name__}) there, found root.{name}, a different {type(existing).__name__} "
        "added to root after the Checkpoint was created. One of them would be silently left "
        "out, so nothing was saved or restored. Rename the keyword argument "
        f"(ck.Checkpoint(root=..., {name}_2=...)) or root's attribute {name}."
    )


def _not_trackable(name: str, value: Any) -> str:
    return (
        f"`Checkpoint` was expecting {name} to be a trackable object (an object derived from "
        f"`ck.Trackable`), got {value!r} of type {type(value).__name__}. Wrap plain arrays in "
        "ck.Variable(...), or register your class with ck.register_trackable."
    )
