"""PyTorch programs: modules, parameters, buffers, optimizers, LR schedulers, ``GradScaler``.

Imported only once a torch object reaches ckptlab (so torch is already imported).  The mapping
(docs/frameworks.md):

* an ``nn.Module``'s children are its parameters, persistent buffers, ``_extra_state`` (when
  the module defines ``get_extra_state``) and submodules, named as in ``state_dict()``; a
  parameter reachable under two names (tied weights) is one object with two edges;
  ``torch.compile``'s ``OptimizedModule`` and ``DataParallel``/``DistributedDataParallel``
  stand for the module they wrap;
* a tensor owns its value; restoring copies into it in place (on its own device, under
  ``no_grad``), or reads straight into its memory when it lives on the CPU; a tensor on the
  ``meta`` device is replaced by a real one in every module that holds it;
* an optimizer's per-parameter state entries are slots of their parameter (non-tensor entries
  together in one Python-state slot ``__python__``), and ``param_groups/<i>`` hold each group's
  hyperparameters as Python state; schedulers and ``GradScaler`` are one Python-state value each
  (:mod:`ckptlab.engine._pystate`);
* modules attached (``model.head = nn.Linear(...)``), parameters and buffers registered after a
  restore are restored then, through torch's global registration hooks; a lazy module's
  parameters are restored when its first forward materialises them.
"""

from __future__ import annotations

import copy
import functools
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np
import torch
from torch import nn
from torch.nn.modules import module as torch_module
from torch.nn.parameter import UninitializedBuffer, UninitializedParameter
from torch.optim.lr_scheduler import LRScheduler

from ckptlab.core import ValueSpec
from ckptlab.engine import _pystate
from ckptlab.engine._adapter import Conversion
from ckptlab.engine._execute import (
    abandon,
    nothing,
    on_attach,
    on_build,
    waiting_names,
)
from ckptlab.engine._tables import ObjectTable
from ckptlab.errors import NotSaveableError

__all__ = ["ADAPTER", "TorchAdapter"]

EXTRA_STATE = "_extra_state"
PYTHON_SLOT = "__python__"
"""The slot holding a parameter's non-tensor optimizer state (Python state)."""
_STATE_SPEC = ValueSpec(shape=(None,), dtype="uint8")

_DTYPES: dict[torch.dtype, str] = {
    torch.bool: "bool",
    torch.int8: "int8",
    torch.int16: "int16",
    torch.int32: "int32",
    torch.int64: "int64",
    torch.uint8: "uint8",
    torch.uint16: "uint16",
    torch.uint32: "uint32",
    torch.uint64: "uint64",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
    torch.float32: "float32",
    torch.float64: "float64",
    torch.complex64: "complex64",
    torch.complex128: "complex128",
}


def _dtype_name(dtype: torch.dtype) -> str:
    return _DTYPES.get(dtype) or str(dtype).removeprefix("torch.")


_BIT_PATTERNS = {
    np.dtype(getattr(ml_dtypes, name)): getattr(torch, name)
    for name in (
        "bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz",
        "float8_e8m0fnu",
    )
    if hasattr(torch, name)
}  # fmt: skip
"""ml_dtypes dtypes torch has but cannot take from numpy: they cross as their bit patterns."""
_BIT_ARRAYS = {torch_dtype: array_dtype for array_dtype, torch_dtype in _BIT_PATTERNS.items()}


def to_numpy(tensor: torch.Tensor) -> np.ndarray[Any, Any]:
    """A host numpy array of ``tensor``'s value: a view for a CPU tensor, a copy otherwise.

    bfloat16 and float8 come as their ``ml_dtypes`` arrays (through their bits).
    """
    tensor = tensor.detach()
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    tensor = tensor.resolve_conj().resolve_neg()
    dtype = _BIT_ARRAYS.get(tensor.dtype)
    if dtype is not None:
        bits = torch.int16 if dtype.itemsize == 2 else torch.uint8
        return tensor.view(bits).numpy().view(dtype)
    return tensor.numpy()


def from_numpy(array: np.ndarray[Any, Any]) -> torch.Tensor:
    """A CPU tensor sharing ``array``'s memory (bfloat16 and float8 through their bits)."""
    if not array.flags.writeable:  # torch would warn; the tensor is only read from
        array = array.copy()
    dtype = _BIT_PATTERNS.get(array.dtype)
    if dtype is not None:
        bits = np.int16 if array.dtype.itemsize == 2 else np.uint8
        return torch.from_numpy(array.view(bits)).view(dtype)
    return torch.from_numpy(array)


class _PythonState:
    """A node whose value is Python state read and written through two callables."""

    def __init__(self, kind: str, owner: Any, get: Any, put: Any) -> None:
        self.kind = kind
        self.owner = owner
        self._get, self._put = get, put

    def state(self) -> Any:
        return self._get()

    def load(self, state: Any) -> None:
        self._put(state)

    def __repr__(self) -> str:
        return f"<{self.kind} of {type(self.owner).__name__}>"


_STATEFUL = (_PythonState, LRScheduler, torch.amp.GradScaler)
"""Objects saved as one Python-state value (``_STATE_SPEC``)."""


def _state(obj: _PythonState | LRScheduler | torch.amp.GradScaler) -> Any:
    return obj.state() if isinstance(obj, _PythonState) else obj.state_dict()


def _load(obj: _PythonState | LRScheduler | torch.amp.GradScaler, state: Any) -> None:
    if isinstance(obj, _PythonState):
        obj.load(state)
    else:
        obj.load_state_dict(state)


class _Groups:
    """An optimizer's ``param_groups`` as a container node (children ``0``, ``1``, ...)."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.groups: list[_PythonState] = []

    def children(self) -> list[tuple[str, Any]]:
        groups = self.optimizer.param_groups
        while len(self.groups) < len(groups):
            self.groups.append(_group_state(self.optimizer, len(self.groups)))
        return [(str(i), self.groups[i]) for i in range(len(groups))]

    def __repr__(self) -> str:
        return f"<param_groups of {type(self.optimizer).__name__}>"


_GROUP_OWN = ("params", "param_names")
"""Group keys a restore leaves as they are: they list the group's own parameters."""


def _group_state(optimizer: torch.optim.Optimizer, index: int) -> _PythonState:
    """Group ``index``'s hyperparameters.

    Its ``params`` and ``param_names`` (``Adam(model.named_parameters())``) are the group's
    own, by position: state is restored by parameter identity, so the saved names, in the
    saving program's order, would name other parameters once the order changed.
    """

    def get() -> dict[str, Any]:
        group = optimizer.param_groups[index]
        return {k: v for k, v in group.items() if k != "params"}

    def put(state: dict[str, Any]) -> None:
        group = optimizer.param_groups[index]
        group.update((k, v) for k, v in state.items() if k not in _GROUP_OWN)

    return _PythonState(f"param_groups[{index}]", optimizer, get, put)


_PROXIES = ObjectTable("torch", on_object=True)
"""Per module/optimizer: the proxies that stand for its Python state (stable identity)."""
_META_OWNERS = ObjectTable("torch_meta_owners", on_object=False)
"""A ``meta`` tensor -> the (module, name, is_parameter) places that hold it."""


def _proxies(owner: Any) -> dict[Any, Any]:
    found: dict[Any, Any] = _PROXIES.setdefault(owner, dict)
    return found


def _extra_state(module: nn.Module) -> _PythonState:
    table = _proxies(module)
    if EXTRA_STATE not in table:
        table[EXTRA_STATE] = _PythonState(
            EXTRA_STATE, module, module.get_extra_state, module.set_extra_state
        )
    state: _PythonState = table[EXTRA_STATE]
    return state


def _python_slot(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> _PythonState:
    table = _proxies(optimizer)
    key = ("slot", id(param))
    if key not in table:

        def get() -> dict[str, Any]:
            entries = optimizer.state.get(param, {})
            return {k: v for k, v in entries.items() if not isinstance(v, torch.Tensor)}

        def put(state: dict[str, Any]) -> None:
            optimizer.state[param].update(_on_device(state, param.device))

        table[key] = _PythonState(PYTHON_SLOT, optimizer, get, put)
    slot: _PythonState = table[key]
    return slot


def _on_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _on_device(v, device) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_on_device(v, device) for v in value)
    return value


def _has_extra_state(module: nn.Module) -> bool:
    return type(module).get_extra_state is not nn.Module.get_extra_state


def _is_pending(tensor: Any) -> bool:
    return isinstance(tensor, UninitializedParameter | UninitializedBuffer)


class _StateEntry:
    """One entry of ``optimizer.state[param]`` that a positional restore fills."""

    def __init__(self, optimizer: Any, param: torch.Tensor, name: str, spec: ValueSpec) -> None:
        self.optimizer, self.param, self.name, self.spec = optimizer, param, name, spec

    def __repr__(self) -> str:
        return f"<optimizer state {self.name!r} of a {tuple(self.param.shape)} parameter>"


@dataclass(frozen=True)
class PositionalState:
    """What a ``torch.save(optimizer.state_dict())`` layout holds for one live optimizer.

    torch keys optimizer state by the parameter's position in ``param_groups``; that is all
    such a file knows, so this is the one place ckptlab matches by position (docs/pytorch.md).
    """

    targets: dict[str, Any]
    """Stored key -> the state entry it fills."""
    problems: list[str]
    """Why the layout does not fit the optimizer (group or parameter counts)."""
    apply: Any
    """Writes the hyperparameters and the non-tensor state (after every value was written)."""
    groups: list[tuple[Any, str]]
    """(group proxy, the key prefix it was filled from)."""


class TorchAdapter:
    """How the engine sees PyTorch objects."""

    name = "torch"

    def separator(self, obj: Any) -> str:
        """How names join below ``obj``.

        Module and tensor names join with ``.`` (``encoder.0.weight``), optimizer state with
        ``/`` (the nesting of ``optimizer.state_dict()``).
        """
        return "." if isinstance(obj, nn.Module | torch.Tensor) else "/"

    def handles(self, obj: object) -> bool:
        """Modules, tensors, optimizers, schedulers, ``GradScaler`` and the proxies."""
        return isinstance(
            obj,
            nn.Module
            | torch.Tensor
            | torch.optim.Optimizer
            | LRScheduler
            | torch.amp.GradScaler
            | _PythonState
            | _Groups
            | _StateEntry,
        )

    def unwrap(self, obj: Any) -> Any:
        """The module a ``DataParallel``/DDP or ``torch.compile`` wrapper stands for."""
        while True:
            if isinstance(obj, nn.DataParallel | nn.parallel.DistributedDataParallel):
                obj = obj.module
            elif isinstance(obj, nn.Module) and type(obj).__name__ == "OptimizedModule":
                obj = obj._orig_mod
            else:
                return obj

    def children(self, obj: Any) -> Sequence[tuple[str, Any]]:
        """State-dict order: parameters, persistent buffers, extra state, then submodules."""
        if isinstance(obj, nn.Module):
            return self._module_children(obj)
        if isinstance(obj, torch.optim.Optimizer):
            table = _proxies(obj)
            if "groups" not in table:
                table["groups"] = _Groups(obj)
            return [("param_groups", table["groups"])]
        if isinstance(obj, _Groups):
            return obj.children()
        return []

    def _module_children(self, module: nn.Module) -> list[tuple[str, Any]]:
        found: list[tuple[str, Any]] = []
        for name, param in module._parameters.items():
            if param is not None and not _is_pending(param):
                found.append((name, param))
                if param.is_meta:
                    self._note_owner(param, module, name, True)
        skip = module._non_persistent_buffers_set
        for name, buffer in module._buffers.items():
            if buffer is not None and name not in skip and not _is_pending(buffer):
                found.append((name, buffer))
                if buffer.is_meta:
                    self._note_owner(buffer, module, name, False)
        if _has_extra_state(module):
            found.append((EXTRA_STATE, _extra_state(module)))
        found += [(n, m) for n, m in module._modules.items() if m is not None]
        return found

    @staticmethod
    def _note_owner(tensor: torch.Tensor, module: nn.Module, name: str, param: bool) -> None:
        owners: list[tuple[nn.Module, str, bool]] = _META_OWNERS.setdefault(tensor, list)
        if not any(m is module and n == name for m, n, _ in owners):
            owners.append((module, name, param))

    def child(self, obj: Any, name: str) -> Any | None:
        """The dependency called ``name``."""
        if isinstance(obj, nn.Module):
            for table in (obj._parameters, obj._buffers, obj._modules):
                found = table.get(name)
                if found is not None:
                    if _is_pending(found) or (
                        table is obj._buffers and name in obj._non_persistent_buffers_set
                    ):
                        return None
                    if isinstance(found, torch.Tensor) and found.is_meta:
                        self._note_owner(found, obj, name, table is obj._parameters)
                    return found
            return _extra_state(obj) if name == EXTRA_STATE and _has_extra_state(obj) else None
        return dict(self.children(obj)).get(name)

    def value_spec(self, obj: Any) -> ValueSpec | None:
        """A tensor's shape and dtype; Python state is a ``uint8`` byte string of any length."""
        if isinstance(obj, torch.Tensor):
            return ValueSpec(shape=tuple(obj.shape), dtype=_dtype_name(obj.dtype))
        if isinstance(obj, _StateEntry):
            return obj.spec
        if isinstance(obj, _STATEFUL):
            return _STATE_SPEC
        return None

    def slots(self, obj: Any) -> Sequence[tuple[Any, str, Any]]:
        """Per-parameter optimizer state: tensors as themselves, the rest as one slot."""
        if not isinstance(obj, torch.optim.Optimizer):
            return ()
        found: list[tuple[Any, str, Any]] = []
        for group in obj.param_groups:
            for param in group["params"]:
                entries = obj.state.get(param)
                if not entries:
                    continue
                python = False
                for name, value in entries.items():
                    if isinstance(value, torch.Tensor):
                        found.append((param, name, value))
                    else:
                        python = True
                if python:
                    found.append((param, PYTHON_SLOT, _python_slot(obj, param)))
        return found

    def optional_segments(self, obj: Any) -> tuple[str, ...]:
        """Local names files may have or lack above ``obj``'s values (name-based restores).

        A Hugging Face model's ``base_model_prefix``: ``BertForMaskedLM`` holds its
        ``BertModel`` as ``bert``, and ``from_pretrained`` loads the files of either into the
        other by adding or dropping ``bert.``.
        """
        prefix = getattr(obj, "base_model_prefix", None) if isinstance(obj, nn.Module) else None
        return (prefix,) if isinstance(prefix, str) and prefix else ()

    def file_names(self, obj: Any) -> Callable[[str], str] | None:
        """How ``obj`` names a value its files name ``key`` (name-based restores), if it differs.

        transformers 5 renames some weights between a model's files and its modules
        (``encoder.layer.0.attention.attention.query`` in a ViT file is the module's
        ``layers.0.attention.q_proj``) and applies the renames as ``from_pretrained`` loads;
        this asks transformers for the model's renames and applies them the same way.
        """
        if "transformers" not in sys.modules:  # a model of it implies it was imported
            return None
        from ckptlab.engine import _transformers

        return _transformers.renames(obj)

    def file_conversions(
        self, obj: Any
    ) -> Callable[[Mapping[str, ValueSpec]], list[Conversion]] | None:
        """The values ``obj`` builds from several stored ones (name-based restores), if any.

        transformers 5 fuses a Mixture-of-Experts model's per-expert weights into one tensor
        per layer as ``from_pretrained`` loads (its converters); this asks transformers for
        the model's converters and runs them the same way (:mod:`ckptlab.engine._transformers`).
        """
        if "transformers" not in sys.modules:
            return None
        from ckptlab.engine import _transformers

        return _transformers.conversions(obj)

    def positional_state(
        self, obj: Any, prefix: str, stored: Any, literals: Any, value_at: Any
    ) -> PositionalState | None:
        """An optimizer's state in torch's positional layout (:func:`positional_state`)."""
        return positional_state(obj, prefix, stored, literals, value_at)

    def nested_state(
        self, obj: Any, value: Callable[..., Any]
    ) -> np.ndarray[Any, Any] | str | None:
        """The Python state a name-based file keeps as the entries under ``obj``'s name.

        A scheduler's or ``GradScaler``'s ``state_dict()`` (a dict sharing a key with the
        object's own: ``root=scheduler`` against a training file, whose top level is no
        scheduler's, is not taken), or a module's extra state, as
        ``obj.load_state_dict(torch.load(f)[name])`` would load it; ``value(from_array, like)``
        rebuilds it (``value(None)``: its structure, nothing read), ``like`` the object's own
        state (what types the dict keys a DCP saved as text: a ``MultiStepLR``'s milestones,
        ``Counter({4: 1})``).  Encoded as :meth:`read`
        encodes it; ``None`` for other objects; what is wrong (a string) when it holds what
        Python state cannot (a set).  (No exception crosses modules: a doctest run may load
        ``_pystate`` twice.)
        """
        if isinstance(obj, LRScheduler | torch.amp.GradScaler):
            saved, own = value(None), obj.state_dict()
            if not isinstance(saved, dict) or (saved and own and not saved.keys() & own.keys()):
                return None
        elif isinstance(obj, _PythonState) and obj.kind == EXTRA_STATE:
            own = obj.state()
        else:
            return None
        try:
            data = _pystate.encode(value(from_numpy, own), _tensor_array)
        except _pystate.PythonStateError as error:
            return error.problem
        return np.frombuffer(data, dtype=np.uint8)

    def is_optimizer(self, obj: Any) -> bool:
        """``torch.optim.Optimizer`` instances."""
        return isinstance(obj, torch.optim.Optimizer)

    def describe(self, obj: Any) -> tuple[str, str]:
        """The type name; torch values have no names of their own (paths name them)."""
        if isinstance(obj, _PythonState):
            return obj.kind, ""
        return type(obj).__name__, ""

    def can_defer(self, obj: Any) -> bool:
        """Modules notice attachments (global registration hooks)."""
        return isinstance(obj, nn.Module)

    def watch(self, obj: Any, name: str) -> None:
        """Restore a lazy module's parameter at the forward that materialises it.

        A non-persistent buffer of that name is not part of the module's state (torch's
        ``state_dict()`` leaves it out), so nothing waits for it: the stored value is unused.
        """
        if not isinstance(obj, nn.Module):
            return
        if name in obj._buffers and name in obj._non_persistent_buffers_set:
            abandon(obj, [name], NON_PERSISTENT)
        elif _is_pending(_lazy_tensor(obj, name)):
            table = _proxies(obj)
            if "lazy_hooks" not in table:
                table["lazy_hooks"] = (
                    obj.register_forward_pre_hook(_after_materialise),
                    obj.register_load_state_dict_post_hook(_after_load),  # type: ignore[no-untyped-call]
                )

    def check_saveable(self, obj: Any) -> None:
        """Refuse what cannot be saved as it is, naming the object and the fix."""
        if isinstance(obj, nn.Module):
            if type(obj)._save_to_state_dict is not nn.Module._save_to_state_dict:
                raise NotSaveableError(
                    f"{type(obj).__name__} customises _save_to_state_dict, so its state_dict() "
                    "holds entries ckptlab cannot see as parameters or buffers. Save its "
                    "state_dict() with torch.save, or wrap its extra state in "
                    "get_extra_state()/set_extra_state()."
                )
            return
        if isinstance(obj, torch.Tensor):
            problem = (
                "is on the meta device (it holds no data). Materialise it "
                "(model.to_empty(device='cpu') then initialise it, or restore into it)"
                if obj.is_meta
                else f"is a {obj.layout} tensor, not a dense one. Save its .to_dense(), or keep "
                "it out of the saved state"
                if obj.layout != torch.strided
                else f"has dtype {obj.dtype}, which ckptlab does not store. Convert it (e.g. "
                ".float()) before saving"
                if obj.dtype not in _DTYPES
                else ""
            )
            if problem:
                raise NotSaveableError(f"A tensor of shape {tuple(obj.shape)} {problem}.")
            return
        if isinstance(obj, torch.optim.Optimizer):
            unkeyed = [k for k in obj.state if not isinstance(k, torch.Tensor)]
            if unkeyed:
                raise NotSaveableError(
                    f"{type(obj).__name__}.state holds entries keyed by {unkeyed[:5]!r}, not by a "
                    "parameter; ckptlab saves optimizer state as slots of the parameter it "
                    "belongs to. Keep such state in a parameter's entry or a param group, or "
                    "in an object of its own saved next to the optimizer."
                )
        if isinstance(obj, _STATEFUL):
            self.read(obj)  # refuses state it cannot encode, naming it

    def check_writes(
        self, targets: Sequence[Any], program: Callable[[], Sequence[tuple[str, Any]]]
    ) -> list[str]:
        """Refuse to replace ``meta`` parameters that an optimizer of the program holds.

        A restore gives a ``meta`` tensor a real one in every module that held it, but an
        optimizer keeps the tensors it was built with: it would go on optimizing the meta
        ones (training changes nothing) and its restored state would land on them.  Moving the
        optimizer to the new tensors is not safe in general (state, fused or foreach caches,
        schedulers), so the restore refuses, before anything is written.
        """
        meta = {id(t) for t in targets if isinstance(t, torch.Tensor) and t.is_meta}
        if not meta:
            return []
        found = program()
        names = {id(obj): path for path, obj in found}
        problems = []
        for path, obj in found:
            if not isinstance(obj, torch.optim.Optimizer):
                continue
            held = [p for g in obj.param_groups for p in g["params"] if id(p) in meta]
            if held:
                shown = ", ".join(names.get(id(p), f"a {tuple(p.shape)} parameter") for p in held)
                problems.append(
                    f"{path} ({type(obj).__name__}) holds {len(held)} parameter(s) on the meta "
                    f"device that this restore replaces with real tensors ({shown}); the "
                    "optimizer would keep the meta ones and training would not change the model. "
                    "Create the optimizer after restoring the model (ck.Checkpoint(model=m)"
                    ".restore(path); o = Adam(m.parameters()); then restore "
                    "ck.Checkpoint(model=m, optimizer=o) for its state)"
                )
        return problems

    def read(self, obj: Any) -> np.ndarray[Any, Any]:
        """A tensor's host array; Python state as its JSON bytes."""
        if isinstance(obj, torch.Tensor):
            array = to_numpy(obj)
            return array if array.flags.c_contiguous else array.copy(order="C")
        where = getattr(obj, "kind", type(obj).__name__)
        try:
            data = _pystate.encode(_state(obj), _tensor_array)
        except _pystate.PythonStateError as error:
            raise NotSaveableError(f"{where}: {error}") from None
        return np.frombuffer(data, dtype=np.uint8)

    def undo(self, obj: Any) -> Callable[[], None] | None:
        """How to put back Python state, whose load runs code that may refuse the saved state.

        A ``GradScaler`` saved disabled refuses to load into an enabled one; a module's
        ``set_extra_state`` may validate.  Tensors need no undo: their writes cannot fail once
        shapes and dtypes are checked, except into an expanded tensor (elements sharing memory),
        which torch refuses before writing anything.  State that cannot be copied is not
        guarded.
        """
        if isinstance(obj, torch.Tensor):
            shared = any(s == 0 and n > 1 for s, n in zip(obj.stride(), obj.shape, strict=True))
            return nothing if shared else None
        if not isinstance(obj, _STATEFUL):
            return None
        try:
            before = copy.deepcopy(_state(obj))
        except Exception:  # an object deepcopy refuses: written unguarded, as torch would
            return None
        return functools.partial(_load, obj, before)

    def buffer(self, obj: Any) -> np.ndarray[Any, Any] | None:
        """A contiguous CPU tensor's own memory."""
        if (
            isinstance(obj, torch.Tensor)
            and obj.device.type == "cpu"
            and obj.layout == torch.strided
            and obj.is_contiguous()
            and obj.dtype in _DTYPES
            and not obj.is_conj()
            and not obj.is_neg()
        ):
            return to_numpy(obj)
        return None

    def write(self, obj: Any, array: np.ndarray[Any, Any]) -> Any:
        """Copy into a tensor in place (a ``meta`` tensor is replaced); load Python state."""
        if isinstance(obj, torch.Tensor):
            source = from_numpy(array)
            if obj.is_meta:
                return _materialise(obj, source)
            with torch.no_grad():
                obj.copy_(source)
            return obj
        if isinstance(obj, _StateEntry):
            existing = self.find_slot(obj.optimizer, obj.param, obj.name)
            if existing is not None:
                return self.write(existing, array)
            return self.create_slot(obj.optimizer, obj.param, obj.name, array)
        _load(obj, _pystate.decode(array.tobytes(), from_numpy))
        return obj

    def find_slot(self, optimizer: Any, variable: Any, slot: str) -> Any | None:
        """The existing state entry (or Python-state slot) of ``variable``."""
        entries = optimizer.state.get(variable)
        if not entries:
            return None
        if slot == PYTHON_SLOT:
            has_python = any(not isinstance(v, torch.Tensor) for v in entries.values())
            return _python_slot(optimizer, variable) if has_python else None
        found = entries.get(slot)
        return found if isinstance(found, torch.Tensor) else None

    def slot_spec(
        self,
        optimizer: Any,
        variable: Any,
        slot: str,
        stored: ValueSpec,
        saved_variable: ValueSpec | None = None,
    ) -> ValueSpec | None:
        """Parameter-shaped state must fit the parameter; other state is taken as stored.

        ``None`` when no param group of ``optimizer`` holds ``variable``: torch keeps state only
        for the parameters it optimizes (``state_dict()`` fails on any other), so the stored
        slot stays unused, as TensorFlow leaves the slots of a variable its optimizer does not
        track.  A parameter added later (``add_param_group``) starts with fresh state.

        A state entry with as many dimensions as its parameter must have the parameter's size
        in every dimension the saved entry does not reduce to 1: ``exp_avg`` has the
        parameter's shape, Adafactor's factored ``row_var`` ``(rows, 1)`` and ``col_var``
        ``(1, columns)``.  Single numbers (``step``) and entries of another rank are taken as
        saved, and so are entries the checkpoint shows were not shaped like their parameter
        when saved (``saved_variable``: LBFGS's flat history kept on a 1-D first parameter, a
        Shampoo preconditioner ``(m, m)`` of an ``(m, n)`` weight).  The dtype is the saved one
        (a new optimizer has no dtype of its own to check against).
        """
        if not _group_of(optimizer, variable):
            return None
        if slot == PYTHON_SLOT:
            return _STATE_SPEC
        shape = tuple(variable.shape)
        if len(stored.shape) == len(shape) and math.prod(d or 0 for d in stored.shape) != 1:
            if saved_variable is not None and not _reduces(stored.shape, saved_variable.shape):
                return stored  # saved in a shape of its own
            fitted = tuple(1 if s == 1 else p for s, p in zip(stored.shape, shape, strict=True))
            return ValueSpec(shape=fitted, dtype=stored.dtype)
        return stored

    def create_slot(
        self, optimizer: Any, variable: Any, slot: str, array: np.ndarray[Any, Any]
    ) -> Any:
        """Put the entry into ``optimizer.state[variable]`` as torch's optimizers create it.

        On the parameter's device, and, when it has the parameter's shape, in the parameter's
        layout (torch's ``zeros_like(p, memory_format=torch.preserve_format)``): fused kernels
        pair state and parameter elements by memory position, so contiguous state for a
        ``channels_last`` parameter trains to other weights.  ``step`` stays on the CPU unless
        its group is ``capturable`` or ``fused``, as torch's own optimizers keep it.
        """
        if slot == PYTHON_SLOT:
            proxy = _python_slot(optimizer, variable)
            proxy.load(_pystate.decode(array.tobytes(), from_numpy))
            return proxy
        group = _group_of(optimizer, variable) if slot == "step" else {}
        on_cpu = slot == "step" and not (group.get("capturable") or group.get("fused"))
        tensor = from_numpy(array)
        if not on_cpu:  # a contiguous parameter's state is laid out as the array already is
            laid_out = tensor.shape == variable.shape and not variable.is_contiguous()
            device = variable.device
            tensor = _laid_out_like(variable, tensor, device) if laid_out else tensor.to(device)
        optimizer.state[variable][slot] = tensor
        return tensor


def _reduces(entry: tuple[int | None, ...], param: tuple[int | None, ...]) -> bool:
    """Whether ``entry`` is ``param``'s shape with some dimensions reduced to 1.

    Examples
    --------
    >>> _reduces((3, 1), (3, 4)), _reduces((4, 4), (3, 4))
    (True, False)
    """
    return len(entry) == len(param) and all(e in (p, 1) for e, p in zip(entry, param, strict=True))


def _group_of(optimizer: Any, param: torch.Tensor) -> dict[str, Any]:
    """The param group holding ``param`` (``{}``: none), found in constant time.

    An index of every parameter's place is kept with the optimizer and rebuilt when the place
    it gives no longer holds the parameter (groups added, lists changed): scanning the groups
    for every restored slot made restoring an optimizer of P parameters take P * P steps.
    """
    table, groups = _proxies(optimizer), optimizer.param_groups

    def holds(place: tuple[int, int] | None) -> bool:
        if place is None:
            return False
        g, i = place
        return g < len(groups) and i < len(groups[g]["params"]) and groups[g]["params"][i] is param

    index: dict[int, tuple[int, int]] = table.get("group_index", {})
    place = index.get(id(param))
    if not holds(place):
        index = table["group_index"] = {
            id(p): (g, i) for g, group in enumerate(groups) for i, p in enumerate(group["params"])
        }
        place = index.get(id(param))
    if place is None:
        return {}
    group: dict[str, Any] = groups[place[0]]
    return group


def positional_state(
    optimizer: Any, prefix: str, stored: Any, literals: Any, value_at: Any
) -> PositionalState | None:
    """Match ``<prefix>/state/<i>/<name>`` and ``<prefix>/param_groups/<g>/...`` to ``optimizer``.

    ``<i>`` is a parameter's position, or the name ``param_groups/<g>/params`` gives it in the
    same place (``torch.distributed.checkpoint.state_dict.get_state_dict`` keys state by name).
    An empty ``prefix`` is the restore's root: a file of the optimizer alone
    (``torch.save(optimizer.state_dict())``) holds ``state/<i>/<name>``.  ``stored`` maps keys
    to value specs, ``literals`` maps keys to the file's non-tensor values (the torch
    reader's), ``value_at(name, from_array)`` rebuilds a nested value (LBFGS' ``old_dirs``, a
    list of tensors) as ``torch.load`` gives it; ``None`` when the file holds nothing for this
    optimizer.
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        return None
    below = f"{prefix}/" if prefix else ""  # "": the restore's root (a bare optimizer.pt)
    state_at, groups_at = f"{below}state/", f"{below}param_groups/"

    def value_of(name: str) -> Any:
        return literals[name] if name in literals else value_at(name, from_numpy)

    saved = {
        int(index): {entry: value_of(name) for entry, name in entries.items() if entry}
        for index, entries in _entries([*literals, *stored], groups_at).items()
        if index.isdigit()
    }
    tensors = [k for k in stored if k.startswith(state_at)]
    others = [k for k in literals if k.startswith(state_at)]
    if not saved and not tensors and not others:
        return None
    live = optimizer.param_groups
    problems: list[str] = []
    if sorted(saved) != list(range(len(live))):
        problems.append(
            f"{prefix or '(root)'}: the file has {len(saved)} parameter group(s), the optimizer "
            f"has {len(live)}; torch's layout matches state by position, so the groups must agree"
        )
    by_id: dict[int | str, torch.Tensor] = {}  # positions, or names (DCP's get_state_dict)
    for index, group in enumerate(live):
        ids = list(saved.get(index, {}).get("params", []))
        if index in saved and len(ids) != len(group["params"]):
            problems.append(
                f"{groups_at}{index}: {len(ids)} parameter(s) in the file, "
                f"{len(group['params'])} in the optimizer"
            )
        by_id.update(zip(ids, group["params"], strict=False))
    adapter = ADAPTER
    targets: dict[str, Any] = {}
    python: list[tuple[torch.Tensor, str, Any]] = []
    unkeyed: list[tuple[str, str, Any]] = []
    for position, entries in _entries([*tensors, *others], state_at).items():
        param = by_id.get(int(position) if position.isdigit() else position)
        for entry, name in entries.items():
            if not entry:
                problems.append(f"{name}: the file holds no named state entries here")
            elif param is not None and name in stored:  # a tensor: a slot of the parameter
                existing = adapter.find_slot(optimizer, param, entry)
                spec = adapter.value_spec(existing) if existing is not None else None
                spec = spec or adapter.slot_spec(optimizer, param, entry, stored[name])
                assert spec is not None  # ``param`` came from a param group, so it has a spec
                targets[name] = _StateEntry(optimizer, param, entry, spec)
            elif param is not None:  # a number, or nested (lists of tensors: LBFGS' history)
                python.append((param, entry, value_of(name)))
            elif not position.isdigit() and not any(_within(k, name) for k in tensors):
                unkeyed.append((position, entry, value_of(name)))  # not keyed by a parameter
            else:
                problems.append(f"{name}: no parameter of the optimizer is at position {position}")

    def apply() -> None:
        for index, group in enumerate(live):
            group.update({k: v for k, v in saved.get(index, {}).items() if k != "params"})
        for param, name, value in python:
            optimizer.state[param][name] = _on_device(value, param.device)
        state: dict[Any, Any] = optimizer.state  # torch allows keys that are not parameters
        for owner, name, value in unkeyed:
            state[owner][name] = value

    table = _proxies(optimizer)
    groups = _Groups(optimizer) if "groups" not in table else table["groups"]
    table["groups"] = groups
    proxies = dict(groups.children())
    used = [(proxies[str(i)], f"{groups_at}{i}") for i in saved if str(i) in proxies]
    return PositionalState(targets=targets, problems=problems, apply=apply, groups=used)


def _entries(names: Sequence[str], at: str) -> dict[str, dict[str, str]]:
    """``{<i>: {<entry>: "<at><i>/<entry>"}}`` for the ``names`` below ``at``, in order.

    An entry may hold more than one name (``state/0/old_dirs/1``): it is one value, nested.

    Examples
    --------
    >>> _entries(["opt/state/0/step", "opt/state/0/al/1", "opt/state/0/al/0", "x"], "opt/state/")
    {'0': {'step': 'opt/state/0/step', 'al': 'opt/state/0/al'}}
    """
    found: dict[str, dict[str, str]] = {}
    for name in names:
        if name.startswith(at):
            owner, _, rest = name[len(at) :].partition("/")
            entry = rest.partition("/")[0]
            found.setdefault(owner, {})[entry] = f"{at}{owner}/{entry}" if entry else name
    return found


def _within(key: str, name: str) -> bool:
    return key == name or key.startswith(f"{name}/")


def _tensor_array(value: Any) -> np.ndarray[Any, Any] | None:
    return to_numpy(value).copy() if isinstance(value, torch.Tensor) else None


def _laid_out_like(
    tensor: torch.Tensor, source: torch.Tensor, device: torch.device | str
) -> torch.Tensor:
    """A copy of ``source`` on ``device`` in ``tensor``'s layout (``channels_last``, transposed)."""
    return torch.empty_like(tensor, dtype=source.dtype, device=device).copy_(source)


def _materialise(meta: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """A real CPU tensor for a ``meta`` one, in its layout, put in every module that held it.

    The layout is the one ``to_empty(device="cpu")`` would give (a model made ``channels_last``
    on ``meta`` stays so).
    """
    value = _laid_out_like(meta, source, "cpu")
    real: torch.Tensor = (
        nn.Parameter(value, requires_grad=meta.requires_grad)
        if isinstance(meta, nn.Parameter)
        else value
    )
    for module, name, is_parameter in _META_OWNERS.get(meta, []):
        table = module._parameters if is_parameter else module._buffers
        if table.get(name) is meta:
            table[name] = real
    return real


SUPERSEDED = (
    "load_state_dict materialised the lazy parameter with its own values before the forward "
    "that would have restored it; that later write wins"
)
NON_PERSISTENT = (
    "the program's object here is a non-persistent buffer (not in state_dict()), which no "
    "restore writes"
)


def _lazy_tensor(module: nn.Module, name: str) -> Any:
    return module._parameters.get(name, module._buffers.get(name))


def _materialised(module: nn.Module) -> list[str]:
    """Waiting names whose lazy tensor exists by now (materialised in place: no attach hook)."""
    return [
        name
        for name in waiting_names(module)
        if isinstance(tensor := _lazy_tensor(module, name), torch.Tensor)
        and not _is_pending(tensor)
    ]


def _after_load(module: nn.Module, incompatible_keys: Any) -> None:
    """``load_state_dict`` post-hook of a lazy module: give up on the parameters it made.

    torch's ``load_state_dict`` materialises a lazy module's parameters from the state dict
    and copies the user's values in: that later write wins, so the restore must not write over
    it at the first forward.  (Only here: ``torch.compile`` materialises parameters before the
    forward hooks run, so "materialised before the forward" does not mean "by someone else".)
    """
    abandon(module, _materialised(module), SUPERSEDED)
    _unhook_if_done(module)


def _after_materialise(module: nn.Module, args: Any) -> None:
    """Forward pre-hook after torch's shape inference: restore the parameters it just made.

    torch cannot take a materialisation back, so this is a build (``on_build``): all of the
    new parameters are restored, or, when one conflicts, none of them; the conflicting values
    stay bound (``shape_conflict`` in the report) and the forward raises the conflict.
    """
    made = [(name, _lazy_tensor(module, name)) for name in _materialised(module)]
    error = on_build(module, made, []) if made else None
    _unhook_if_done(module)
    if error is not None:
        raise error


def _unhook_if_done(module: nn.Module) -> None:
    """Remove the lazy hooks once no restore waits for an uninitialised tensor of ``module``."""
    if any(_is_pending(_lazy_tensor(module, name)) for name in waiting_names(module)):
        return
    for handle in _proxies(module).pop("lazy_hooks", ()):
        handle.remove()


def _on_registration(module: nn.Module, name: str, value: Any) -> None:
    """Called by torch before a submodule or parameter is set on any module."""
    if value is not None and not _is_pending(value):
        on_attach(module, name, value)


def _on_buffer_registration(module: nn.Module, name: str, value: Any) -> None:
    """Called by torch before a buffer is set on any module: restore it unless non-persistent."""
    if value is None or _is_pending(value):
        return
    if _registered_persistent(module, name):
        on_attach(module, name, value)
    else:
        abandon(module, [name], NON_PERSISTENT)


def _registered_persistent(module: nn.Module, name: str) -> bool:
    """Whether the buffer being registered on ``module`` is persistent (in ``state_dict()``).

    torch calls the buffer registration hooks before it records the buffer's persistence, so
    the set of non-persistent names still describes the buffer being replaced.  Every buffer
    registration (attribute assignment included) goes through ``register_buffer``, whose
    documented ``persistent`` argument says it; when the caller is not that function (a
    future torch), the recorded persistence of the name is the best answer.
    """
    caller = sys._getframe(2)  # this function <- the hook <- register_buffer
    if caller.f_code is nn.Module.register_buffer.__code__:
        return bool(caller.f_locals.get("persistent", True))
    return name not in module._non_persistent_buffers_set


torch_module.register_module_module_registration_hook(_on_registration)
torch_module.register_module_parameter_registration_hook(_on_registration)
torch_module.register_module_buffer_registration_hook(_on_buffer_registration)

ADAPTER = TorchAdapter()
