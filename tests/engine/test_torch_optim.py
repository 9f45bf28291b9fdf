"""Optimizer state as slots keyed to the parameter; schedulers and GradScaler exactly."""

from __future__ import annotations

import collections
import copy

import numpy as np
import pytest

import ckptlab as ck

torch = pytest.importorskip("torch")
nn = torch.nn

SLOT = "/.OPTIMIZER_SLOT/optimizer/"


def batches(n=4, width=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(3, width, generator=generator) for _ in range(n)]


@pytest.mark.parametrize(
    "make",
    [
        lambda p: torch.optim.Adam(p, lr=1e-2),
        lambda p: torch.optim.AdamW(p, lr=1e-2, amsgrad=True),
        lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9, nesterov=True),
        lambda p: torch.optim.RMSprop(p, lr=1e-2, centered=True),
        lambda p: torch.optim.Adagrad(p, lr=1e-2),
        lambda p: torch.optim.Adafactor(p, lr=1e-2),  # factored row_var (R, 1), col_var (1, C)
    ],
    ids=["Adam", "AdamW-amsgrad", "SGD-nesterov", "RMSprop", "Adagrad", "Adafactor"],
)
def test_optimizer_state_round_trips_and_the_next_step_is_identical(tmp_path, tt, make):
    data = batches()
    model = tt.mlp()
    optimizer = make(model.parameters())
    tt.train_steps(model, optimizer, data[:2])
    path = ck.Checkpoint(model=model, optimizer=optimizer).write(tmp_path / "c")
    keys = {k for k, _ in ck.list_variables(path)}
    first = next(iter(optimizer.state[model[0].weight]))
    assert f"model/0/weight{SLOT}{first}/.ATTRIBUTES/VARIABLE_VALUE" in keys

    fresh = tt.mlp(seed=9)
    fresh_opt = make(fresh.parameters())
    ck.Checkpoint(model=fresh, optimizer=fresh_opt).read(path).assert_consumed()
    assert tt.optimizer_bytes(fresh_opt) == tt.optimizer_bytes(optimizer)
    tt.train_steps(model, optimizer, data[2:])
    tt.train_steps(fresh, fresh_opt, data[2:])
    assert tt.state_bytes(fresh) == tt.state_bytes(model)
    assert tt.optimizer_bytes(fresh_opt) == tt.optimizer_bytes(optimizer)


def test_state_follows_the_parameter_not_its_position(tmp_path, tt):
    model = tt.mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    tt.train_steps(model, optimizer, batches(2))
    path = ck.Checkpoint(model=model, optimizer=optimizer).write(tmp_path / "c")

    fresh = tt.mlp(seed=3)
    later, earlier = list(fresh[2].parameters()), list(fresh[0].parameters())
    reordered = torch.optim.Adam(later + earlier, lr=1e-2)
    ck.Checkpoint(model=fresh, optimizer=reordered).read(path).assert_consumed()
    for old, new in zip(model.parameters(), fresh.parameters(), strict=True):
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(reordered.state[new][name], optimizer.state[old][name])
    # torch's own load_state_dict zips by position: the first layer's state lands on the
    # second layer's weight, whatever its shape
    by_position = torch.optim.Adam(later + earlier, lr=1e-2)
    by_position.load_state_dict(optimizer.state_dict())
    assert by_position.state[later[0]]["exp_avg"].shape != later[0].shape

    other = tt.mlp(seed=3)
    groups = [{"params": list(other[2].parameters())}, {"params": list(other[0].parameters())}]
    regrouped = torch.optim.Adam([groups[0], {**groups[1], "lr": 5e-3}], lr=1e-2)
    status = ck.Checkpoint(model=other, optimizer=regrouped).read(path)
    # one group was saved and two exist: the second group's hyperparameters are reported
    assert {e.pretty for e in status.report().missing} == {"(root).optimizer.param_groups.1"}
    assert regrouped.param_groups[1]["lr"] == 5e-3
    for old, new in zip(model.parameters(), other.parameters(), strict=True):
        assert torch.equal(regrouped.state[new]["exp_avg"], optimizer.state[old]["exp_avg"])
    status.expect_partial()


def test_hyperparameters_are_restored_by_group(tmp_path, tt):
    model = tt.mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.8, weight_decay=1e-4)
    path = ck.Checkpoint(optimizer=optimizer, model=model).write(tmp_path / "c")
    fresh = tt.mlp()
    fresh_opt = torch.optim.SGD(fresh.parameters(), lr=0.1)
    ck.Checkpoint(optimizer=fresh_opt, model=fresh).read(path).assert_consumed()
    group = fresh_opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.5, 0.8, 1e-4)
    assert group["params"] == list(fresh.parameters())


def test_param_names_keep_naming_the_groups_own_parameters(tmp_path):
    """State follows the parameter, not its position, so the saved ``param_names`` (which name
    the saving program's order) are not written over the group's: after a restore into a
    program whose parameters are in another order, ``param_names[i]`` still names
    ``params[i]``, and ``state_dict()`` pairs each name with that parameter's state."""

    def program(order):
        torch.manual_seed(0)
        model = nn.ModuleDict({name: nn.Linear(3, 3) for name in order})
        return model, torch.optim.Adam(model.named_parameters(), lr=1e-2)

    model, optimizer = program("ab")
    (model["a"](torch.randn(2, 3)) + model["b"](torch.randn(2, 3))).sum().backward()
    optimizer.step()
    path = ck.Checkpoint(model=model, optimizer=optimizer).write(tmp_path / "c")

    fresh, fresh_opt = program("ba")
    ck.Checkpoint(model=fresh, optimizer=fresh_opt).read(path).assert_consumed()
    (group,) = fresh_opt.param_groups
    names = {id(p): n for n, p in fresh.named_parameters()}
    assert group["param_names"] == [names[id(p)] for p in group["params"]] == [
        "b.weight", "b.bias", "a.weight", "a.bias"
    ]  # fmt: skip
    saved = fresh_opt.state_dict()
    for index, name in enumerate(saved["param_groups"][0]["param_names"]):
        expected = optimizer.state[model.get_parameter(name)]["exp_avg"]
        assert torch.equal(saved["state"][index]["exp_avg"], expected)

    unnamed = torch.optim.Adam(fresh.parameters(), lr=1e-2)  # torch keeps groups all unnamed
    ck.Checkpoint(model=fresh, optimizer=unnamed).read(path).assert_consumed()
    assert "param_names" not in unnamed.param_groups[0]
    unnamed.add_param_group({"params": [nn.Parameter(torch.zeros(1))]})


class CountingSGD(torch.optim.Optimizer):
    """A custom optimizer whose state mixes tensors, Python numbers and a list."""

    def __init__(self, params, lr=0.1):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                state["visits"] = state.get("visits", 0) + 1
                state["history"] = [*state.get("history", []), float(p.grad.norm())][-3:]
                state["trace"] = state.get("trace", torch.zeros_like(p)) * 0.5 + p.grad
                p.add_(state["trace"], alpha=-group["lr"])


def test_custom_optimizers_with_their_own_state_keys_round_trip(tmp_path, tt):
    data = batches()
    model = tt.mlp()
    optimizer = CountingSGD(model.parameters())
    tt.train_steps(model, optimizer, data[:2])
    path = ck.Checkpoint(model=model, optimizer=optimizer).write(tmp_path / "c")
    fresh = tt.mlp(seed=2)
    fresh_opt = CountingSGD(fresh.parameters())
    ck.Checkpoint(model=fresh, optimizer=fresh_opt).read(path).assert_consumed()
    for old, new in zip(model.parameters(), fresh.parameters(), strict=True):
        assert fresh_opt.state[new]["visits"] == 2 and type(fresh_opt.state[new]["visits"]) is int
        assert fresh_opt.state[new]["history"] == optimizer.state[old]["history"]
        assert torch.equal(fresh_opt.state[new]["trace"], optimizer.state[old]["trace"])
    tt.train_steps(model, optimizer, data[2:])
    tt.train_steps(fresh, fresh_opt, data[2:])
    assert tt.state_bytes(fresh) == tt.state_bytes(model)


class GlobalCountSGD(torch.optim.SGD):
    """Keeps a count in ``state`` under a key that is not a parameter (torch allows it)."""

    @torch.no_grad()
    def step(self, closure=None):
        super().step(closure)
        self.state.setdefault("global", {"steps": 0})["steps"] += 1


def test_optimizer_state_not_keyed_by_a_parameter(tmp_path, tt):
    """ckptlab saves optimizer state as slots of parameters: state under another key is
    refused by name, never dropped; a torch training file holding such state loads as torch
    loads it."""
    model = tt.mlp()
    optimizer = GlobalCountSGD(model.parameters(), lr=0.1)
    tt.train_steps(model, optimizer, batches()[:3])
    with pytest.raises(ck.NotSaveableError, match=r"\(root\)\.optimizer: .*\['global'\]"):
        ck.Checkpoint(model=model, optimizer=optimizer).write(tmp_path / "c")
    assert not (tmp_path / "c").exists()

    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, tmp_path / "t")
    fresh = tt.mlp(seed=3)
    fresh_opt = GlobalCountSGD(fresh.parameters(), lr=0.1)
    ck.Checkpoint(model=fresh, optimizer=fresh_opt).restore(tmp_path / "t").assert_consumed()
    assert fresh_opt.state["global"] == {"steps": 3}
    assert tt.optimizer_bytes(fresh_opt) == tt.optimizer_bytes(optimizer)


def test_state_of_parameters_outside_the_checkpoint_is_not_dropped_silently(tmp_path, tt, ck_log):
    """As in TensorFlow, a slot is saved only with its variable; the save says which
    optimizer state it leaves out, and saving the parameter too saves its state."""
    model = tt.mlp()
    temperature = nn.Parameter(torch.tensor(1.0))
    optimizer = torch.optim.Adam([*model.parameters(), temperature], lr=1e-2)
    optimizer.zero_grad()
    (model(batches()[0]).sum() * temperature).backward()
    optimizer.step()
    ck.Checkpoint(model=model, optimizer=optimizer).write(tmp_path / "a")
    (warning,) = [r.getMessage() for r in ck_log.records]
    assert warning.startswith("3 optimizer slot value(s) are not saved")
    assert "(root).optimizer 'exp_avg' x1" in warning

    ck_log.clear()
    path = ck.Checkpoint(model=model, t=temperature, optimizer=optimizer).write(tmp_path / "b")
    assert not ck_log.records
    assert f"t{SLOT}exp_avg/.ATTRIBUTES/VARIABLE_VALUE" in dict(ck.list_variables(path))


def test_rolling_back_keeps_state_the_checkpoint_lacks_and_says_so(tmp_path, tt):
    """A restore writes the saved slots and deletes none (TensorFlow's slots, for every
    optimizer): state a parameter gained after the checkpoint stays, ``program_only`` with
    the reason, and the assertions name it. Clearing the state first gives torch's rollback."""
    torch.manual_seed(0)
    model = nn.ModuleDict({"a": nn.Linear(4, 2), "b": nn.Linear(4, 2)})
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    data = batches(4)
    tt.train_steps(model["a"], optimizer, data[:2])  # b has no gradient yet: no state
    path = ck.Checkpoint(model=model, optimizer=optimizer).write(tmp_path / "c")
    rolled_back = torch.optim.Adam(model.parameters(), lr=1e-2)
    rolled_back.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # b has no state
    tt.train_steps(lambda x: model["a"](x) + model["b"](x), optimizer, data[2:])

    status = ck.Checkpoint(model=model, optimizer=optimizer).read(path)
    kept = status.report().missing
    assert {e.pretty for e in kept} == {
        f"(root).optimizer's state '{name}' for (root).model.b.{param}"
        for name in ("step", "exp_avg", "exp_avg_sq")
        for param in ("weight", "bias")
    }
    assert all(e.reason.startswith("not in the checkpoint, which holds its variable") for e in kept)
    assert optimizer.state[model["b"].weight]["step"] == 2
    with pytest.raises(AssertionError, match=r"state 'exp_avg' for \(root\)\.model\.b\.bias"):
        status.assert_existing_objects_matched()

    optimizer.state[model["a"].weight]["exp_avg"] = torch.zeros(2, 4)  # replaced, not kept
    (replaced,) = [e for e in status.report().missing if ".a.weight" in e.pretty]
    assert replaced.reason.startswith("replaced after the restore matched this path")

    optimizer.state.clear()  # the rollback torch's load_state_dict does
    ck.Checkpoint(model=model, optimizer=optimizer).read(path).assert_consumed()
    assert tt.optimizer_bytes(optimizer) == tt.optimizer_bytes(rolled_back)


def test_schedulers_and_grad_scaler_round_trip_their_state_dict_exactly(tmp_path, tt):
    model = tt.mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    plateau_opt = torch.optim.SGD(tt.mlp().parameters(), lr=0.1)
    schedulers = {
        "onecycle": torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1.0, total_steps=20),
        "plateau": torch.optim.lr_scheduler.ReduceLROnPlateau(plateau_opt, patience=0),
    }
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=3)
    tt.train_steps(model, optimizer, batches(3), schedulers["onecycle"], scaler)
    for loss in (3.0, 2.0, 5.0):
        schedulers["plateau"].step(loss)
    path = ck.Checkpoint(scaler=scaler, **schedulers).write(tmp_path / "c")

    fresh_opt = torch.optim.SGD(tt.mlp().parameters(), lr=0.1)
    fresh_plateau_opt = torch.optim.SGD(tt.mlp().parameters(), lr=0.1)
    fresh = {
        "onecycle": torch.optim.lr_scheduler.OneCycleLR(fresh_opt, max_lr=1.0, total_steps=20),
        "plateau": torch.optim.lr_scheduler.ReduceLROnPlateau(fresh_plateau_opt),
    }
    fresh_scaler = torch.amp.GradScaler("cpu")
    ck.Checkpoint(scaler=fresh_scaler, **fresh).read(path).assert_consumed()
    for name, scheduler in schedulers.items():
        assert fresh[name].state_dict() == scheduler.state_dict(), name
    assert fresh["plateau"].best == schedulers["plateau"].best
    assert fresh_scaler.state_dict() == scaler.state_dict()


class _Decay:
    """A ``LambdaLR`` callable object: the scheduler's ``state_dict()`` holds its ``__dict__``."""

    def __init__(self, gamma=0.5, milestones=(9,)):
        self.gamma = np.float32(gamma)
        self.milestones = np.array(milestones, dtype=np.int16)

    def __call__(self, epoch):
        return self.gamma ** (epoch - int((self.milestones <= epoch).sum()))


def test_numpy_values_in_python_state_come_back_as_themselves(tmp_path):
    """numpy scalars and arrays keep their type, dtype and value, so a schedule computed from
    them resumes bit-exactly (a float32 ``gamma`` restored as a Python float would not)."""

    def scheduler(decay):
        optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, decay)

    def run(optimizer, scheduler, steps):
        for _ in range(steps):
            optimizer.step()
            scheduler.step()
        return [repr(group["lr"]) for group in optimizer.param_groups]  # type and value

    optimizer, saved = scheduler(_Decay(0.9, [2, 5]))
    run(optimizer, saved, 3)
    path = ck.Checkpoint(scheduler=saved).write(tmp_path / "c")
    fresh_optimizer, fresh = scheduler(_Decay())
    ck.Checkpoint(scheduler=fresh).read(path).assert_consumed()
    restored, original = fresh.lr_lambdas[0], saved.lr_lambdas[0]
    assert type(restored.gamma) is np.float32 and restored.gamma == original.gamma
    assert type(restored.milestones) is np.ndarray
    assert restored.milestones.dtype == np.int16
    assert restored.milestones.tolist() == [2, 5]
    assert run(fresh_optimizer, fresh, 4) == run(optimizer, saved, 4)


def test_a_multistep_schedulers_milestones_stay_a_counter(tmp_path):
    """``MultiStepLR.milestones`` is a ``collections.Counter`` (its closed form calls
    ``elements()``): it round-trips as one, not as a plain dict."""

    def scheduler(milestones):
        optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones)

    saved = scheduler([2, 2, 5])
    path = ck.Checkpoint(scheduler=saved).write(tmp_path / "c")
    fresh = scheduler([9])
    ck.Checkpoint(scheduler=fresh).read(path).assert_consumed()
    assert type(fresh.milestones) is collections.Counter
    assert fresh.milestones == collections.Counter({2: 2, 5: 1})


def test_a_manager_saves_torch_programs_in_the_background(tmp_path, tt):
    data = batches(6)
    model = tt.mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    ckpt = ck.Checkpoint(model=model, optimizer=optimizer)
    manager = ck.CheckpointManager(ckpt, tmp_path / "runs", max_to_keep=2)
    for step in range(3):
        tt.train_steps(model, optimizer, data[step : step + 1])
        handle = manager.save(blocking=False)
        expected = (tt.state_bytes(model), tt.optimizer_bytes(optimizer))
    tt.train_steps(model, optimizer, data[3:4])  # training goes on while the save runs
    handle.result()
    assert [p.rsplit("-", 1)[1] for p in manager.checkpoints] == ["2", "3"]

    fresh = tt.mlp(seed=4)
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-2)
    restarted = ck.CheckpointManager(
        ck.Checkpoint(model=fresh, optimizer=fresh_opt), tmp_path / "runs", max_to_keep=2
    )
    assert restarted.restore_or_initialize().endswith("ckpt-3")
    assert (tt.state_bytes(fresh), tt.optimizer_bytes(fresh_opt)) == expected


def test_the_group_of_a_parameter_follows_the_groups_as_they_change():
    """Restored ``step`` slots are placed by their parameter's group (``capturable``/``fused``
    keep it on the parameter's device); the group is found through an index kept with the
    optimizer, rebuilt when it no longer points at the parameter."""
    from ckptlab.engine._torch import _group_of

    first, second, late = (torch.nn.Parameter(torch.zeros(2)) for _ in range(3))
    optimizer = torch.optim.Adam([{"params": [first]}, {"params": [second], "lr": 0.5}])
    assert _group_of(optimizer, second)["lr"] == 0.5
    optimizer.add_param_group({"params": [late], "lr": 0.25})  # after the index was built
    assert _group_of(optimizer, late)["lr"] == 0.25
    optimizer.param_groups[0]["params"], optimizer.param_groups[1]["params"] = [second], [first]
    assert _group_of(optimizer, first)["lr"] == 0.5 and _group_of(optimizer, second)["lr"] == 1e-3
    assert _group_of(optimizer, torch.nn.Parameter(torch.zeros(1))) == {}


def test_restoring_an_optimizer_indexes_its_groups_once(tmp_path, monkeypatch):
    """The 1800 slots of 300 layers (whether their parameter is optimized) and the 600 step
    slots (where to put them) find their groups through one index (scanning the groups for
    each slot made restoring P parameters take P * P steps)."""
    from ckptlab.engine import _torch

    def program():
        torch.manual_seed(0)
        model = torch.nn.ModuleList(torch.nn.Linear(1, 1) for _ in range(300))
        return model, torch.optim.Adam(model.parameters())

    model, optimizer = program()
    sum(p.sum() for p in model.parameters()).backward()
    optimizer.step()
    path = ck.Checkpoint(model=model, optimizer=optimizer).write(tmp_path / "c")
    fresh, fresh_optimizer = program()
    indexed = []
    original = _torch._group_of

    def counting(optimizer, param):
        indexed.append(_torch._proxies(optimizer).get("group_index") is None)
        return original(optimizer, param)

    monkeypatch.setattr(_torch, "_group_of", counting)
    ck.Checkpoint(model=fresh, optimizer=fresh_optimizer).read(path).assert_consumed()
    assert len(indexed) == 1800 + 600 and sum(indexed) == 1
    for param, saved in zip(fresh.parameters(), model.parameters(), strict=True):
        assert torch.equal(
            fresh_optimizer.state[param]["exp_avg"], optimizer.state[saved]["exp_avg"]
        )


def test_slots_of_parameters_the_optimizer_does_not_optimize_stay_unused(tmp_path, tt):
    """Fine-tuning with a frozen head: torch keeps no state for parameters outside the
    param_groups (state_dict() would fail), so their stored slots are unused and reported."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    optimizer = torch.optim.Adam(model.parameters())
    tt.train_steps(model, optimizer, [torch.randn(2, 4)])
    path = ck.Checkpoint(model=model, optimizer=optimizer).write(tmp_path / "c")
    fresh = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    body = torch.optim.Adam(fresh[0].parameters())
    status = ck.Checkpoint(model=fresh, optimizer=body).read(path)
    assert set(body.state) == {fresh[0].weight, fresh[0].bias}
    for name in ("weight", "bias"):
        mine, saved = getattr(fresh[0], name), getattr(model[0], name)
        assert torch.equal(body.state[mine]["exp_avg"], optimizer.state[saved]["exp_avg"])
    body.state_dict()  # torch's own view of the optimizer is intact
    unused = [e for e in status.report().entries if e.state == "checkpoint_only"]
    assert len(unused) == 6 and all("model.1." in e.pretty for e in unused)
    assert all("param_groups do not hold the parameter" in e.reason for e in unused)
    with pytest.raises(AssertionError, match=r"'exp_avg' for \(root\)\.model\.1\.weight"):
        status.assert_consumed()
    body.add_param_group({"params": list(fresh[1].parameters())})  # later: fresh state
    assert fresh[1].weight not in body.state
    status.expect_partial()


def test_slots_of_a_module_attached_later_outside_the_optimizer_stay_unused(tmp_path, tt):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    optimizer = torch.optim.Adam(model.parameters())
    tt.train_steps(model, optimizer, [torch.randn(2, 4)])
    path = ck.Checkpoint(model=model, optimizer=optimizer).write(tmp_path / "c")
    fresh = nn.Sequential(nn.Linear(4, 4))
    body = torch.optim.Adam(fresh.parameters())
    status = ck.Checkpoint(model=fresh, optimizer=body).read(path)
    fresh.append(nn.Linear(4, 2))
    assert torch.equal(fresh[1].weight, model[1].weight) and fresh[1].weight not in body.state
    counts = status.report().counts()
    assert counts["pending"] == 0 and counts["checkpoint_only"] == 6
    status.expect_partial()


@pytest.mark.parametrize("source", ["ckptlab", "torch.save"])
@pytest.mark.parametrize(
    "make",
    [
        lambda p: torch.optim.Adam(p, lr=1e-2, fused=True),
        lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9, fused=True),
    ],
    ids=["Adam-fused", "SGD-fused"],
)
def test_new_state_takes_its_parameters_layout_so_a_fused_resume_is_bit_exact(
    tmp_path, tt, make, source
):
    """torch creates state with ``zeros_like(p, memory_format=torch.preserve_format)``, and
    fused kernels pair state and parameter elements by memory position: state restored
    contiguous into a channels_last model trained to other weights, silently."""

    def program(seed):
        torch.manual_seed(seed)
        model = nn.Conv2d(3, 4, 3, padding=1).to(memory_format=torch.channels_last)
        return model, make(model.parameters())

    generator = torch.Generator().manual_seed(2)
    data = [
        torch.randn(2, 3, 5, 5, generator=generator).to(memory_format=torch.channels_last)
        for _ in range(4)
    ]
    uninterrupted, uninterrupted_opt = program(0)
    tt.train_steps(uninterrupted, uninterrupted_opt, data)
    model, optimizer = program(0)
    tt.train_steps(model, optimizer, data[:2])
    if source == "ckptlab":
        path = ck.Checkpoint(model=model, optimizer=optimizer).write(tmp_path / "c")
    else:
        path = tmp_path / "train.pt"
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, path)

    fresh, fresh_opt = program(1)
    ck.Checkpoint(model=fresh, optimizer=fresh_opt).read(path).assert_consumed()
    shaped = [v for v in fresh_opt.state[fresh.weight].values() if v.shape == fresh.weight.shape]
    assert shaped and all(v.stride() == fresh.weight.stride() for v in shaped)
    tt.train_steps(fresh, fresh_opt, data[2:])
    assert tt.state_bytes(fresh) == tt.state_bytes(uninterrupted)
    assert tt.optimizer_bytes(fresh_opt) == tt.optimizer_bytes(uninterrupted_opt)


class Preconditioned(torch.optim.Optimizer):
    """Keeps Shampoo-style state: a ``(rows, rows)`` and a ``(cols, cols)`` matrix per weight."""

    def __init__(self, params, lr=1e-2):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad.reshape(p.shape[0], -1)
                state = self.state[p]
                if not state:
                    state["left"] = torch.zeros(g.shape[0], g.shape[0])
                    state["right"] = torch.zeros(g.shape[1], g.shape[1])
                state["left"] += g @ g.T
                state["right"] += g.T @ g
                scale = 1 + state["left"].trace() + state["right"].trace()
                p.sub_(group["lr"] * p.grad / scale)


def _lbfgs_program(seed):
    torch.manual_seed(seed)
    model = nn.Module()
    model.scale = nn.Parameter(torch.randn(2))  # 1-D and first: LBFGS keeps its history on it
    model.linear = nn.Linear(4, 2)
    return model, torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=4, history_size=3)


def _lbfgs_train(model, optimizer, steps):
    inputs = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    targets = torch.ones(8, 2)

    def closure():
        optimizer.zero_grad()
        loss = (model.linear(inputs) * model.scale - targets).pow(2).mean()
        loss.backward()
        return loss

    for _ in range(steps):
        optimizer.step(closure)


@pytest.mark.parametrize("kind", ["LBFGS", "preconditioned"])
def test_state_of_its_own_shape_beside_its_parameter_round_trips(tmp_path, tt, kind):
    """State with the parameter's rank but not its shape (LBFGS's flat history kept on a 1-D
    first parameter, a preconditioner (m, m) of an (m, n) weight) was saved so: it comes back
    as saved, and training goes on identically."""
    if kind == "LBFGS":
        model, optimizer = _lbfgs_program(seed=0)
        _lbfgs_train(model, optimizer, 2)
        assert optimizer.state[model.scale]["d"].shape == (12,)  # the parameter is (2,)
        fresh, fresh_opt = _lbfgs_program(seed=5)
    else:
        model = tt.mlp((4, 3, 2))
        optimizer = Preconditioned(model.parameters())
        tt.train_steps(model, optimizer, batches(2))
        assert optimizer.state[model[0].weight]["right"].shape == (4, 4)  # the weight is (3, 4)
        fresh = tt.mlp((4, 3, 2), seed=5)
        fresh_opt = Preconditioned(fresh.parameters())
    path = ck.Checkpoint(model=model, optimizer=optimizer).write(tmp_path / "c")
    ck.Checkpoint(model=fresh, optimizer=fresh_opt).read(path).assert_consumed()
    assert tt.optimizer_bytes(fresh_opt) == tt.optimizer_bytes(optimizer)
    if kind == "LBFGS":
        _lbfgs_train(model, optimizer, 2)
        _lbfgs_train(fresh, fresh_opt, 2)
    else:
        tt.train_steps(model, optimizer, batches(2, seed=1))
        tt.train_steps(fresh, fresh_opt, batches(2, seed=1))
    assert tt.state_bytes(fresh) == tt.state_bytes(model)
    assert tt.optimizer_bytes(fresh_opt) == tt.optimizer_bytes(optimizer)


def test_parameter_shaped_state_for_a_resized_parameter_is_a_conflict(tmp_path, tt):
    """exp_avg saved for a (2, 4) weight cannot become the state of a (3, 4) one: Adam would
    fail at its next step. Nothing is written."""
    model = tt.mlp((4, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    tt.train_steps(model, optimizer, batches(1))
    path = ck.Checkpoint(model=model, optimizer=optimizer).write(tmp_path / "c")
    resized = tt.mlp((4, 3), seed=4)
    resized_opt = torch.optim.Adam(resized.parameters(), lr=1e-2)
    before = tt.state_bytes(resized)
    with pytest.raises(ck.RestoreConflictError, match="state 'exp_avg' for .*shape \\(2, 4\\)"):
        ck.Checkpoint(model=resized, optimizer=resized_opt).read(path)
    assert tt.state_bytes(resized) == before and not resized_opt.state
