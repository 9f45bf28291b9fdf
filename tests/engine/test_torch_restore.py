"""Restoring into a live torch program: in place, atomic, every conflict at once, deferred."""

from __future__ import annotations

import signal

import pytest

import ckptlab as ck

torch = pytest.importorskip("torch")
nn = torch.nn

VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"


@pytest.fixture
def saved(tmp_path, tt):
    model = tt.mlp((4, 8, 8, 2))
    return model, ck.Checkpoint(model=model).write(tmp_path / "c")


def test_restore_writes_in_place_without_grad_and_keeps_identity(saved, tt):
    model, path = saved
    fresh = tt.mlp((4, 8, 8, 2), seed=7)
    before = [(p, p.data_ptr(), p.requires_grad) for p in fresh.parameters()]
    ck.Checkpoint(model=fresh).read(path).assert_consumed()
    after = list(fresh.parameters())
    assert [p for p, _, _ in before] == after
    assert [(p.data_ptr(), p.requires_grad) for p in after] == [(d, r) for _, d, r in before]
    assert all(p.grad is None and p.grad_fn is None for p in after)
    assert tt.state_bytes(fresh) == tt.state_bytes(model)


def test_every_conflict_is_reported_at_once_and_nothing_is_written(saved, tt):
    _, path = saved
    changed = nn.Sequential(
        nn.Linear(4, 9), nn.ReLU(), nn.Linear(9, 8).double(), nn.ReLU(), nn.Linear(8, 2)
    )
    before = tt.state_bytes(changed)
    with pytest.raises(ck.RestoreConflictError) as caught:
        ck.Checkpoint(model=changed).read(path)
    message = str(caught.value)
    assert "4 conflict(s); nothing was written" in message
    for where in ("(root).model.0.weight", "(root).model.0.bias", "(root).model.2.weight"):
        assert where in message
    assert "float64" in message and "float32" in message  # a dtype conflict, never a cast
    assert tt.state_bytes(changed) == before


def test_lazy_restore_reports_and_writes_only_the_selected_subtree(saved, tt):
    model, path = saved
    fresh = tt.mlp((4, 8, 8, 2), seed=7)
    untouched = tt.state_bytes(fresh)
    status = ck.Checkpoint(model=fresh).read(path, lazy=True)
    report = status.report()
    assert {e.state for e in report.entries} == {"bound"}
    assert tt.state_bytes(fresh) == untouched
    status.run_restore_ops(only=["model/0"])
    now = tt.state_bytes(fresh)
    expected = tt.state_bytes(model)
    assert now["0.weight"] == expected["0.weight"] and now["0.bias"] == expected["0.bias"]
    assert now["2.weight"] == untouched["2.weight"]
    status.initialize_or_restore()
    assert tt.state_bytes(fresh) == expected
    assert {e.state for e in status.report().entries} == {"restored"}


def test_lazy_restore_with_a_conflict_elsewhere_restores_a_clean_subtree(saved, tt):
    model, path = saved
    changed = tt.mlp((4, 8, 8, 2), seed=3)
    changed[4] = nn.Linear(8, 3)
    status = ck.Checkpoint(model=changed).read(path, lazy=True)
    kinds = {e.pretty: e.state for e in status.report().entries}
    assert kinds["(root).model.4.weight"] == "shape_conflict"
    with pytest.raises(ck.RestoreConflictError):
        status.run_restore_ops()
    status.run_restore_ops(only=["model/0", "model/2"])
    assert tt.state_bytes(changed)["2.weight"] == tt.state_bytes(model)["2.weight"]


def test_assertions_list_what_is_missing_and_unused(saved, tt):
    _, path = saved
    grown = tt.mlp((4, 8, 8), seed=3)  # the last layer is gone...
    grown.add_module("extra", nn.Linear(2, 2))  # ...and a new one is not in the checkpoint
    status = ck.Checkpoint(model=grown).read(path)
    with pytest.raises(AssertionError) as caught:
        status.assert_consumed()
    text = str(caught.value)
    assert "(root).model.extra.weight" in text and "(root).model.4.weight" in text
    status.assert_nontrivial_match()
    with pytest.raises(AssertionError, match="extra"):
        status.assert_existing_objects_matched()
    status.expect_partial()


def test_a_module_attached_after_restore_is_restored_on_attach(tmp_path, tt):
    model = tt.mlp()
    model.add_module("head", nn.Linear(2, 3))
    path = ck.Checkpoint(model=model).write(tmp_path / "c")
    fresh = tt.mlp(seed=4)
    status = ck.Checkpoint(model=fresh).read(path)
    assert [e.state for e in status.report().entries if "head" in e.path] == ["pending"] * 2
    fresh.head = nn.Linear(2, 3)
    assert torch.equal(fresh.head.weight, model.head.weight)
    status.assert_consumed()


def test_an_attach_that_conflicts_raises_and_is_undone(tmp_path, tt):
    model = tt.mlp()
    model.add_module("head", nn.Linear(2, 3))
    path = ck.Checkpoint(model=model).write(tmp_path / "c")
    fresh = tt.mlp(seed=4)
    ck.Checkpoint(model=fresh).read(path).expect_partial()
    with pytest.raises(ck.RestoreConflictError, match="head"):
        fresh.head = nn.Linear(2, 4)
    assert "head" not in dict(fresh.named_children())


def test_lazy_modules_take_the_saved_values_when_they_materialise(tmp_path, tt):
    torch.manual_seed(0)
    model = nn.Sequential(nn.LazyLinear(3), nn.ReLU(), nn.LazyLinear(2))
    model(torch.ones(1, 5))
    path = ck.Checkpoint(model=model).write(tmp_path / "c")

    fresh = nn.Sequential(nn.LazyLinear(3), nn.ReLU(), nn.LazyLinear(2))
    status = ck.Checkpoint(model=fresh).read(path)
    assert {e.state for e in status.report().entries} == {"pending"}
    fresh(torch.ones(1, 5))
    assert tt.state_bytes(fresh) == tt.state_bytes(model)
    status.assert_consumed()


def test_a_lazy_module_fed_the_wrong_size_refuses_with_the_conflict(tmp_path):
    model = nn.Sequential(nn.LazyLinear(3))
    model(torch.ones(1, 5))
    path = ck.Checkpoint(model=model).write(tmp_path / "c")
    fresh = nn.Sequential(nn.LazyLinear(3))
    ck.Checkpoint(model=fresh).read(path).expect_partial()
    with pytest.raises(ck.RestoreConflictError, match=r"\(3, 5\)"):
        fresh(torch.ones(1, 6))


def _lazy_checkpoint(tmp_path, out=3, width=2):
    torch.manual_seed(0)
    model = nn.Sequential(nn.LazyLinear(out))
    model(torch.randn(1, width))
    return model, ck.Checkpoint(model=model).write(tmp_path / "c")


def test_load_state_dict_after_the_restore_wins_over_the_waiting_lazy_values(tmp_path):
    """torch's load_state_dict materialises a lazy module's parameters and writes the user's
    values: that later write wins, the restore gives them up and says so."""
    _, path = _lazy_checkpoint(tmp_path)
    fresh = nn.Sequential(nn.LazyLinear(3))
    status = ck.Checkpoint(model=fresh).read(path)
    mine = {"0.weight": torch.full((3, 2), 5.0), "0.bias": torch.full((3,), 5.0)}
    fresh.load_state_dict(mine)
    fresh(torch.randn(1, 2))
    assert torch.equal(fresh[0].weight, mine["0.weight"])
    assert torch.equal(fresh[0].bias, mine["0.bias"])
    entries = status.report().entries
    assert sorted((e.path, e.state) for e in entries) == [
        ("model/0/bias", "checkpoint_only"),
        ("model/0/bias", "program_only"),
        ("model/0/weight", "checkpoint_only"),
        ("model/0/weight", "program_only"),
    ]
    assert all("load_state_dict materialised the lazy parameter" in e.reason for e in entries)
    assert not fresh[0]._forward_pre_hooks  # nothing of ckptlab's is left on the module
    with pytest.raises(AssertionError, match=r"\(root\)\.model\.0\.weight"):
        status.assert_consumed()
    status.expect_partial()


def test_a_lazy_module_fed_the_wrong_size_is_left_in_one_consistent_state(tmp_path):
    """torch cannot take a materialisation back: the forward raises, and the report lists
    each path once, the conflict bound and not written (as a Keras layer built wrong)."""
    model, path = _lazy_checkpoint(tmp_path, out=8, width=4)
    fresh = nn.Sequential(nn.LazyLinear(8))
    status = ck.Checkpoint(model=fresh).read(path)
    with pytest.raises(ck.RestoreConflictError, match=r"\(8, 4\)"):
        fresh(torch.randn(2, 5))
    states = {}
    for entry in status.report().entries:
        assert entry.path not in states  # one entry per path
        states[entry.path] = entry.state
    assert states == {"model/0/weight": "shape_conflict", "model/0/bias": "bound"}
    assert not torch.equal(fresh[0].bias, model[0].bias)  # nothing written
    status.run_restore_ops(only=["model/0/bias"])  # the conflict-free part, if wanted
    assert torch.equal(fresh[0].bias, model[0].bias)
    status.expect_partial()


def test_non_persistent_buffers_are_never_restored_nor_pending(tmp_path):
    """As torch's state_dict(): a non-persistent buffer takes no stored value, whether it
    exists at the restore, is registered after it, or is re-registered (rotary inv_freq)."""

    class Block(nn.Module):
        def __init__(self, buffer=True, persistent=True):
            super().__init__()
            self.a = nn.Parameter(torch.randn(3))
            if buffer:
                self.register_buffer("b", torch.randn(2), persistent=persistent)

    torch.manual_seed(0)
    saved = Block()
    path = ck.Checkpoint(model=saved).write(tmp_path / "c")
    mine = torch.tensor([7.0, 8.0])

    present = Block(persistent=False)
    status = ck.Checkpoint(model=present).read(path)
    present.register_buffer("b", mine.clone(), persistent=False)  # recomputed later
    later = Block(buffer=False)
    late_status = ck.Checkpoint(model=later).read(path)
    later.register_buffer("b", mine.clone(), persistent=False)

    for module, restore in ((present, status), (later, late_status)):
        assert torch.equal(module.b, mine)
        assert torch.equal(module.a, saved.a)
        states = {e.path: (e.state, e.reason) for e in restore.report().entries}
        assert states["model/b"][0] == "checkpoint_only"
        assert "non-persistent buffer" in states["model/b"][1]
        restore.expect_partial()
    persistent = Block(buffer=False)
    ck.Checkpoint(model=persistent).read(path)
    persistent.register_buffer("b", torch.zeros(2))  # persistent: restored on registration
    assert torch.equal(persistent.b, saved.b)


def test_a_replaced_parameter_is_reported_as_replaced(tmp_path, tt):
    model = tt.mlp()
    path = ck.Checkpoint(model=model).write(tmp_path / "c")
    fresh = tt.mlp(seed=3)
    status = ck.Checkpoint(model=fresh).read(path)
    fresh[0].weight = nn.Parameter(torch.zeros(8, 4))
    (replaced,) = status.report().missing
    assert replaced.pretty == "(root).model.0.weight"
    assert "went to the object this one replaced" in replaced.reason


def test_the_inconsistent_references_warning_is_short(tmp_path, ck_log):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(64, 32)
            self.out = nn.Linear(32, 64, bias=False)
            self.out.weight = self.emb.weight

    path = ck.Checkpoint(model=Tied()).write(tmp_path / "c")
    untied = Tied()
    untied.out.weight = nn.Parameter(untied.emb.weight.detach().clone())
    ck.Checkpoint(model=untied).read(path).expect_partial()
    (message,) = [r.getMessage() for r in ck_log.records if "Inconsistent" in r.getMessage()]
    assert "Parameter (64, 32) float32 on cpu at 0x" in message
    assert "tensor(" not in message and "\n" not in message and len(message) < 600


def test_meta_device_parameters_become_real_tensors_holding_the_saved_values(tmp_path, tt):
    model = tt.TinyLM()
    path = ck.Checkpoint(model=model).write(tmp_path / "c")
    with torch.device("meta"):
        fresh = tt.TinyLM()
    ck.Checkpoint(model=fresh).read(path).assert_consumed()
    assert not any(t.is_meta for t in fresh.state_dict().values())
    assert fresh.head.weight is fresh.embed.weight  # still tied after materialising
    assert tt.state_bytes(fresh) == tt.state_bytes(model)
    fresh(torch.zeros(1, 4, dtype=torch.long))  # usable


def test_meta_parameters_become_real_tensors_in_their_own_layout(tmp_path):
    """A model made channels_last on ``meta`` keeps that layout, as ``to_empty`` would."""
    torch.manual_seed(0)
    model = nn.Conv2d(3, 4, 3)
    path = ck.Checkpoint(model=model).write(tmp_path / "c")
    with torch.device("meta"):
        fresh = nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
        emptied = nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
    ck.Checkpoint(model=fresh).read(path).assert_consumed()
    assert fresh.weight.stride() == emptied.to_empty(device="cpu").weight.stride() == (27, 1, 9, 3)
    assert torch.equal(fresh.weight, model.weight) and isinstance(fresh.weight, nn.Parameter)


def test_meta_parameters_absent_from_the_checkpoint_are_reported(tmp_path, tt):
    path = ck.Checkpoint(model=tt.mlp()).write(tmp_path / "c")
    with torch.device("meta"):
        fresh = tt.mlp()
        fresh.add_module("extra", nn.Linear(2, 2))
    status = ck.Checkpoint(model=fresh).read(path)
    missing = {e.pretty for e in status.report().missing}
    assert missing == {"(root).model.extra.weight", "(root).model.extra.bias"}
    assert fresh.extra.weight.is_meta and not fresh[0].weight.is_meta
    with pytest.raises(AssertionError, match="extra"):
        status.assert_consumed()


def test_an_optimizer_built_around_meta_parameters_refuses_the_restore(tmp_path, tt):
    """Replacing the meta parameters would orphan the optimizer's: nothing is written."""
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    optimizer = torch.optim.Adam(model.parameters())
    tt.train_steps(model, optimizer, [torch.randn(1, 2)])
    path = ck.Checkpoint(model=model, optimizer=optimizer).write(tmp_path / "c")
    with torch.device("meta"):
        fresh = nn.Linear(2, 2)
    early = torch.optim.Adam(fresh.parameters())
    with pytest.raises(ck.RestoreConflictError) as caught:
        ck.Checkpoint(model=fresh, optimizer=early).read(path)
    message = str(caught.value)
    assert "(root).optimizer (Adam)" in message and "(root).model.weight" in message
    assert "nothing was written" in message and "Create the optimizer after" in message
    assert fresh.weight.is_meta and fresh.bias.is_meta and not early.state
    ck.Checkpoint(model=fresh).read(path).expect_partial()  # the fix the message gives
    later = torch.optim.Adam(fresh.parameters())
    ck.Checkpoint(model=fresh, optimizer=later).read(path).assert_consumed()
    assert tt.optimizer_bytes(later) == tt.optimizer_bytes(optimizer)


def test_restore_holds_a_few_mib_of_extra_memory_not_a_second_model(tmp_path, tt, peak_bytes):
    model = nn.Sequential(*[nn.Linear(1024, 1024) for _ in range(16)])  # 64 MiB of weights
    path = ck.Checkpoint(model=model).write(tmp_path / "c")
    fresh = nn.Sequential(*[nn.Linear(1024, 1024) for _ in range(16)])
    peak = peak_bytes(lambda: ck.Checkpoint(model=fresh).read(path).assert_consumed())
    assert peak < 24 << 20  # the reader's scratch buffers, never the 64 MiB model
    assert tt.state_bytes(fresh) == tt.state_bytes(model)


def test_a_damaged_value_fails_the_restore_before_anything_is_written(tmp_path, tt):
    model = tt.mlp((4, 64, 2))
    path = ck.Checkpoint(model=model).write(tmp_path / "c")
    data = [p for p in (tmp_path / "c").rglob("*") if p.is_file() and p.stat().st_size > 1000]
    blob = bytearray(data[0].read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # a value's byte (a shard's index sits at its end)
    data[0].write_bytes(bytes(blob))
    fresh = tt.mlp((4, 64, 2), seed=8)
    before = tt.state_bytes(fresh)
    with pytest.raises(ck.CorruptCheckpointError):
        ck.Checkpoint(model=fresh).read(path)
    assert tt.state_bytes(fresh) == before


@pytest.mark.parametrize("with_root", [False, True], ids=["kwargs", "root"])
def test_a_damaged_save_counter_fails_the_restore_with_nothing_written(tmp_path, tt, with_root):
    """restore() reads the stored save_counter with the module's values, before writing any:
    it wrote the module, then raised on the counter it created afterwards."""

    def checkpoint(model: nn.Module) -> ck.Checkpoint:
        return ck.Checkpoint(root=model) if with_root else ck.Checkpoint(model=model)

    path = checkpoint(tt.mlp()).save(tmp_path / "ckpt")
    shard = tmp_path / "ckpt-1" / "data" / "int64" / "0"  # its only int64 value: the counter
    blob = bytearray(shard.read_bytes())
    blob[0] ^= 0xFF
    shard.write_bytes(bytes(blob))
    fresh = tt.mlp(seed=8)
    before = tt.state_bytes(fresh)
    ckpt = checkpoint(fresh)
    with pytest.raises(ck.CorruptCheckpointError, match="save_counter"):
        ckpt.restore(path)
    assert tt.state_bytes(fresh) == before and ckpt._ck_counter is None


def test_a_scaler_that_refuses_its_saved_state_fails_the_restore_with_nothing_written(tmp_path, tt):
    """A GradScaler saved disabled refuses to load into an enabled one (torch raises
    RuntimeError): the restore raises before any tensor is written."""
    model = tt.mlp()
    path = ck.Checkpoint(model=model, scaler=torch.amp.GradScaler("cpu", enabled=False)).write(
        tmp_path / "c"
    )
    fresh, scaler = tt.mlp(seed=3), torch.amp.GradScaler("cpu")
    before, scale = tt.state_bytes(fresh), scaler.state_dict()
    with pytest.raises(ck.RestoreConflictError, match=r"\(root\)\.scaler refused") as caught:
        ck.Checkpoint(model=fresh, scaler=scaler).read(path)
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert "nothing was written" in str(caught.value)
    assert tt.state_bytes(fresh) == before and scaler.state_dict() == scale


def test_an_expanded_buffer_refuses_before_anything_is_written(tmp_path, tt):
    """torch cannot copy into a tensor whose elements share memory (``expand``): the restore
    says so before writing any other value."""

    def program(seed: int) -> nn.Module:
        model = tt.mlp(seed=seed)
        model.register_buffer("grid", torch.arange(3.0).expand(2, 3))
        return model

    path = ck.Checkpoint(model=program(0)).write(tmp_path / "c")
    fresh = program(5)
    before = tt.state_bytes(fresh)
    with pytest.raises(ck.RestoreConflictError, match=r"model\.grid refused"):
        ck.Checkpoint(model=fresh).read(path)
    assert tt.state_bytes(fresh) == before


class _Checked(nn.Linear):
    """A layer whose extra state validates what it is given."""

    version = 1

    def get_extra_state(self):
        return {"version": self.version}

    def set_extra_state(self, state):
        if state["version"] != self.version:
            raise ValueError(f"version {state['version']} cannot load into {self.version}")


class _Interrupted(nn.Linear):
    """A layer whose extra state loads as Ctrl-C arrives (SIGINT raised in its load)."""

    def get_extra_state(self):
        return {"version": 1}

    def set_extra_state(self, state):
        signal.raise_signal(signal.SIGINT)


def test_ctrl_c_during_the_writes_takes_effect_once_every_value_is_written(
    tmp_path, tt, sigint_raises
):
    """Python state loads first; an interrupt arriving then is held until the parameters are
    written too, so the model is never left half restored."""
    torch.manual_seed(0)
    model = nn.Sequential(_Interrupted(4, 2), nn.Linear(2, 3))
    path = ck.Checkpoint(model=model).write(tmp_path / "c")
    torch.manual_seed(1)
    fresh = nn.Sequential(_Interrupted(4, 2), nn.Linear(2, 3))
    with pytest.raises(KeyboardInterrupt):
        ck.Checkpoint(model=fresh).read(path)
    assert tt.state_bytes(fresh) == tt.state_bytes(model)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_state_loaded_before_a_refusal_is_put_back(tmp_path, tt):
    """Python state loads first, in order; when one refuses, those loaded before it are put
    back and no tensor is written.  A lazy restore stays queued, and loads once fixed."""

    def program(version: int, seed: int):
        torch.manual_seed(seed)
        model = nn.Sequential(_Checked(4, 2))
        model[0].version = version
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
        return model, optimizer, scheduler

    model, optimizer, scheduler = program(1, 0)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    # "a_scheduler" sorts before "model": its state loads before the layer's extra state
    path = ck.Checkpoint(a_scheduler=scheduler, model=model).write(tmp_path / "c")
    fresh, _, fresh_scheduler = program(2, 1)
    before, schedule = tt.state_bytes(fresh), fresh_scheduler.state_dict()
    checkpoint = ck.Checkpoint(a_scheduler=fresh_scheduler, model=fresh)
    with pytest.raises(ck.RestoreConflictError, match=r"model\.0\._extra_state refused"):
        checkpoint.read(path)
    assert tt.state_bytes(fresh) == before
    assert fresh_scheduler.state_dict() == schedule

    status = checkpoint.read(path, lazy=True)
    with pytest.raises(ck.RestoreConflictError, match="version 1 cannot load into 2"):
        status.run_restore_ops()
    assert tt.state_bytes(fresh) == before and fresh_scheduler.state_dict() == schedule
    assert "restored" not in {e.state for e in status.report().entries}
    fresh[0].version = 1
    status.run_restore_ops()
    status.assert_consumed()
    assert tt.state_bytes(fresh) == tt.state_bytes(model)
    assert fresh_scheduler.state_dict() == scheduler.state_dict()


def test_training_resumes_bit_exactly_after_restore(tmp_path, tt):
    torch.manual_seed(0)
    batches = [torch.randn(4, 4) for _ in range(4)]
    model = tt.mlp()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 10)
    tt.train_steps(model, optimizer, batches[:2], scheduler)
    ckpt = ck.Checkpoint(model=model, optimizer=optimizer, scheduler=scheduler)
    path = ckpt.save(tmp_path / "ckpt")

    resumed = tt.mlp(seed=11)
    resumed_opt = torch.optim.AdamW(resumed.parameters(), lr=1.0)
    resumed_sched = torch.optim.lr_scheduler.CosineAnnealingLR(resumed_opt, 10)
    ck.Checkpoint(model=resumed, optimizer=resumed_opt, scheduler=resumed_sched).restore(
        path
    ).assert_consumed()
    tt.train_steps(model, optimizer, batches[2:], scheduler)
    tt.train_steps(resumed, resumed_opt, batches[2:], resumed_sched)
    assert tt.state_bytes(resumed) == tt.state_bytes(model)
    assert tt.optimizer_bytes(resumed_opt) == tt.optimizer_bytes(optimizer)
    assert resumed_sched.state_dict() == scheduler.state_dict()
