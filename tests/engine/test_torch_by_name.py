"""Restoring the files torch users already have into a live model, by state-dict name."""

from __future__ import annotations

import collections
import gc

import pytest

import ckptlab as ck

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")
nn = torch.nn


def test_a_state_dict_file_restores_into_the_model_by_name(tmp_path, tt):
    model = tt.TinyLM()
    torch.save(model.state_dict(), tmp_path / "model.pt")
    fresh = tt.TinyLM()
    status = ck.Checkpoint(root=fresh).restore(tmp_path / "model.pt")
    assert isinstance(status, ck.NameBasedSaverStatus)
    status.assert_consumed()
    assert tt.state_bytes(fresh) == tt.state_bytes(model)
    assert {e.state for e in status.report().entries} == {"restored"}


@pytest.mark.parametrize("wrap", ["module.", "_orig_mod.", "_orig_mod.module."])
def test_wrapper_prefixes_in_the_file_are_recognised(tmp_path, tt, wrap):
    model = tt.mlp()
    torch.save({wrap + k: v for k, v in model.state_dict().items()}, tmp_path / "w.pt")
    fresh = tt.mlp(seed=4)
    ck.Checkpoint(root=fresh).restore(tmp_path / "w.pt").assert_consumed()
    assert tt.state_bytes(fresh) == tt.state_bytes(model)


@pytest.mark.parametrize("saved_through", ["DataParallel", "bare"])
def test_a_model_with_its_own_module_child_takes_wrapped_and_bare_files(
    tmp_path, tt, saved_through
):
    """``AveragedModel`` keeps its model as ``module``: saved through DataParallel its keys are
    ``module.module.0.weight``, and only the wrapper's ``module.`` is not the program's."""
    averaged_model = torch.optim.swa_utils.AveragedModel
    saved = averaged_model(tt.mlp())
    wrapped = nn.DataParallel(saved) if saved_through == "DataParallel" else saved
    torch.save(wrapped.state_dict(), tmp_path / "swa.pt")
    fresh = averaged_model(tt.mlp(seed=4))
    ck.Checkpoint(root=fresh).restore(tmp_path / "swa.pt").assert_consumed()
    assert tt.state_bytes(fresh) == tt.state_bytes(saved)


@pytest.mark.parametrize(
    ("stored", "filled"), [("module.module.module.w", set()), ("module.w", {"module.w"})]
)
def test_a_bare_name_two_program_names_share_is_not_guessed(tmp_path, stored, filled):
    """``module.w`` and ``w`` of the program both read ``w`` without wrappers: a stored name
    fills the program name it spells exactly, never one it only resembles."""
    program = nn.Module()
    program.w = nn.Parameter(torch.zeros(2))
    program.module = nn.Module()
    program.module.w = nn.Parameter(torch.zeros(2))
    torch.save({stored: torch.ones(2)}, tmp_path / "f.pt")
    report = ck.Checkpoint(root=program).restore(tmp_path / "f.pt", lazy=True).report()
    assert {e.key for e in report.missing} == {"w", "module.w"} - filled
    assert {e.key for e in report.unused} == {stored} - filled


def test_tied_weights_stored_once_fill_every_name(tmp_path, tt):
    model = tt.TinyLM()
    safetensors_torch.save_model(model, str(tmp_path / "lm.safetensors"))  # drops the duplicate
    fresh = tt.TinyLM()
    status = ck.Checkpoint(root=fresh).restore(tmp_path / "lm.safetensors")
    status.assert_consumed()
    assert fresh.head.weight is fresh.embed.weight
    assert tt.state_bytes(fresh) == tt.state_bytes(model)


@pytest.mark.parametrize("file", ["torch tied", "safetensors equal", "untied different"])
def test_a_tied_weight_the_file_holds_under_both_names(tmp_path, tt, file):
    """Both names of a tied weight in the file: one shared tensor (torch.save of the tied
    model) or equal copies restore it; different values (a file of the untied model) restore
    the first and report the second, and assert_consumed fails naming it."""
    model = tt.TinyLM()
    state = model.state_dict()
    if file == "torch tied":
        torch.save(state, tmp_path / "f")
    elif file == "safetensors equal":
        copies = {k: v.clone() for k, v in state.items()}
        safetensors_torch.save_file(copies, str(tmp_path / "f"))
    else:
        state["head.weight"] = torch.randn_like(state["head.weight"])
        torch.save(state, tmp_path / "f")
    fresh = tt.TinyLM()
    status = ck.Checkpoint(root=fresh).restore(tmp_path / "f")
    assert torch.equal(fresh.embed.weight, model.embed.weight)
    assert fresh.head.weight is fresh.embed.weight
    if file != "untied different":
        status.assert_consumed()
        assert not status.report().unused
        return
    (unused,) = status.report().unused
    assert unused.key == "head.weight" and "ties it to 'embed.weight'" in unused.reason
    with pytest.raises(AssertionError, match=r"'head\.weight' \(restored: 'embed\.weight'\)"):
        status.assert_consumed()


def test_a_tied_weight_keeps_its_first_state_dict_name_not_its_shortest(tmp_path):
    """The first name is the state_dict() one (depth-first), as from_pretrained keeps the
    embedding's value: here the deeper enc.emb.weight comes before head.weight."""

    def program(tied: bool) -> nn.Module:
        model = nn.Module()
        model.enc = nn.Module()
        model.enc.emb = nn.Embedding(5, 3)
        model.head = nn.Linear(3, 5, bias=False)
        if tied:
            model.head.weight = model.enc.emb.weight
        return model

    untied = program(tied=False)
    torch.save(untied.state_dict(), tmp_path / "f")
    tied = program(tied=True)
    assert list(tied.state_dict()) == ["enc.emb.weight", "head.weight"]
    status = ck.Checkpoint(root=tied).restore(tmp_path / "f")
    assert torch.equal(tied.head.weight, untied.enc.emb.weight)
    assert [e.key for e in status.report().unused] == ["head.weight"]


def test_mismatches_are_all_reported_and_nothing_is_written(tmp_path, tt):
    saved = tt.mlp((4, 8, 2))
    torch.save(saved.state_dict(), tmp_path / "m.pt")
    changed = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    changed.add_module("extra", nn.Linear(2, 2))
    before = tt.state_bytes(changed)
    with pytest.raises(ck.RestoreConflictError) as caught:
        ck.Checkpoint(root=changed).restore(tmp_path / "m.pt")
    message = str(caught.value)
    assert "3 conflict(s); nothing was written" in message
    assert "'0.weight'" in message and "'0.bias'" in message and "'2.weight'" in message
    assert tt.state_bytes(changed) == before

    status = ck.Checkpoint(root=changed).restore(tmp_path / "m.pt", lazy=True)
    report = status.report()
    assert {e.key for e in report.missing} >= {"extra.weight", "extra.bias"}
    assert {e.key for e in report.conflicts} == {"0.weight", "0.bias", "2.weight"}
    with pytest.raises(ck.UnknownPathError, match=r"\['2.bais'\].*closest to '2.bais': \['2.bias'"):
        status.run_restore_ops(only=["2.bais"])  # a typo restores nothing, and says so
    assert not torch.equal(changed[2].bias, saved[2].bias)
    status.run_restore_ops(only=["2.bias"])
    assert torch.equal(changed[2].bias, saved[2].bias)


def test_a_training_checkpoint_restores_model_and_optimizer_by_position(tmp_path, tt):
    data = [torch.randn(3, 4, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    model = tt.mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    tt.train_steps(model, optimizer, data[:2])
    torch.save(
        {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 2},
        tmp_path / "train.pt",
    )
    fresh = tt.mlp(seed=5)
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1.0)
    status = ck.Checkpoint(model=fresh, optimizer=fresh_opt).restore(tmp_path / "train.pt")
    status.assert_existing_objects_matched()
    assert tt.state_bytes(fresh) == tt.state_bytes(model)
    assert tt.optimizer_bytes(fresh_opt) == tt.optimizer_bytes(optimizer)
    tt.train_steps(model, optimizer, data[2:])
    tt.train_steps(fresh, fresh_opt, data[2:])
    assert tt.state_bytes(fresh) == tt.state_bytes(model)


def test_only_names_stored_names_and_a_prefix_hints_at_those_below_it(tmp_path, tt):
    model = tt.mlp()
    optimizer = torch.optim.Adam(model.parameters())
    path = tmp_path / "t.pt"
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, path)
    fresh = tt.mlp(seed=5)
    status = ck.Checkpoint(model=fresh, optimizer=torch.optim.Adam(fresh.parameters())).restore(
        path, lazy=True
    )
    before = tt.state_bytes(fresh)
    with pytest.raises(ck.UnknownPathError, match=r"never a prefix.*\['model/0\.bias', "):
        status.run_restore_ops(only=["model"])
    assert tt.state_bytes(fresh) == before


def _trained_adamw(tt):
    data = [torch.randn(3, 4, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    model = tt.mlp()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    tt.train_steps(model, optimizer, data)
    return optimizer


def test_a_bare_optimizer_state_dict_file_restores_into_the_root_optimizer(tmp_path, tt):
    """``torch.save(optimizer.state_dict())`` (the HF Trainer's ``optimizer.pt``, accelerate's
    ``optimizer.bin``) restores as ``optimizer.load_state_dict(torch.load(f))`` does."""
    torch.save(_trained_adamw(tt).state_dict(), tmp_path / "optimizer.pt")
    by_torch = torch.optim.AdamW(tt.mlp(seed=5).parameters(), lr=1.0)
    by_torch.load_state_dict(torch.load(tmp_path / "optimizer.pt"))
    fresh = torch.optim.AdamW(tt.mlp(seed=5).parameters(), lr=1.0)
    status = ck.Checkpoint(root=fresh).restore(tmp_path / "optimizer.pt")
    status.assert_consumed()
    assert tt.optimizer_bytes(fresh) == tt.optimizer_bytes(by_torch)


def test_a_lightning_checkpoint_restores_through_a_key_map(tmp_path, tt):
    """Lightning's ``.ckpt`` keeps the LightningModule's ``state_dict()`` (``model.0.weight``
    for its ``self.model``) and a list of optimizer state dicts: a key map names them as a
    training file does, non-tensor entries (param groups, ``step``) included."""
    data = [torch.randn(3, 4, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    model = tt.mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    tt.train_steps(model, optimizer, data)
    lightning = {
        "epoch": 1,
        "global_step": 2,
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "optimizer_states": [optimizer.state_dict()],
        "lr_schedulers": [],
    }
    torch.save(lightning, tmp_path / "last.ckpt")
    fresh = tt.mlp(seed=5)
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1.0)
    key_map = ck.KeyMap({r"^state_dict/model\.": "model/", r"^optimizer_states/0/": "optimizer/"})
    status = ck.Checkpoint(model=fresh, optimizer=fresh_opt).restore(
        tmp_path / "last.ckpt", key_map=key_map
    )
    status.assert_existing_objects_matched()
    assert tt.state_bytes(fresh) == tt.state_bytes(model)
    assert tt.optimizer_bytes(fresh_opt) == tt.optimizer_bytes(optimizer)


@pytest.mark.parametrize("lightning", [False, True], ids=["training_file", "lightning_ckpt"])
def test_lbfgs_history_lists_restore_from_a_training_file(tmp_path, tt, lightning):
    """LBFGS keeps lists of tensors (``old_dirs``, ``ro``, ...) and numbers in its state: they
    restore as torch's ``load_state_dict`` restores them, and training goes on identically
    (through a key map too, which renames the lists with the rest)."""
    inputs, targets = torch.randn(8, 4), torch.randn(8, 2)

    def program(seed):
        model = tt.mlp((4, 2), seed=seed)
        return model, torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=4, history_size=3)

    def train(model, optimizer, steps):
        def closure():
            optimizer.zero_grad()
            loss = (model(inputs) - targets).pow(2).mean()
            loss.backward()
            return loss

        for _ in range(steps):
            optimizer.step(closure)

    model, optimizer = program(seed=0)
    train(model, optimizer, 2)
    saved = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
    key_map = None
    if lightning:
        saved = {"state_dict": saved["model"], "optimizer_states": [saved["optimizer"]]}
        key_map = ck.KeyMap({r"^state_dict/": "model/", r"^optimizer_states/0/": "optimizer/"})
    torch.save(saved, tmp_path / "f")
    fresh, fresh_opt = program(seed=3)
    status = ck.Checkpoint(model=fresh, optimizer=fresh_opt).restore(
        tmp_path / "f", key_map=key_map
    )
    status.assert_consumed()
    history = fresh_opt.state[fresh[0].weight]["old_dirs"]
    assert type(history) is list and all(isinstance(t, torch.Tensor) for t in history)
    assert tt.optimizer_bytes(fresh_opt) == tt.optimizer_bytes(optimizer)
    train(model, optimizer, 2)
    train(fresh, fresh_opt, 2)
    assert tt.state_bytes(fresh) == tt.state_bytes(model)


def _training_run(tt, seed=0, enabled=True):
    model = tt.mlp(seed=seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1.0, total_steps=20)
    scaler = torch.amp.GradScaler("cpu", init_scale=256.0, growth_interval=1, enabled=enabled)
    return model, optimizer, scheduler, scaler


@pytest.mark.parametrize("lazy", [False, True])
def test_schedulers_and_grad_scaler_restore_from_a_training_file(tmp_path, tt, lazy):
    """The file's ``scheduler`` and ``scaler`` entries load into the objects of those names, as
    their ``load_state_dict(torch.load(f)[name])`` would (OneCycleLR's list of phase dicts
    stays a list), and training resumes bit-exactly."""
    data = [torch.randn(3, 4, generator=torch.Generator().manual_seed(i)) for i in range(6)]
    saved = _training_run(tt)
    model, optimizer, scheduler, scaler = saved
    tt.train_steps(model, optimizer, data[:3], scheduler, scaler)
    names = ("model", "optimizer", "scheduler", "scaler")
    state = {name: obj.state_dict() for name, obj in zip(names, saved, strict=True)}
    torch.save({**state, "epoch": 3}, tmp_path / "train.pt")
    fresh = _training_run(tt, seed=4)
    status = ck.Checkpoint(**dict(zip(names, fresh, strict=True))).restore(
        tmp_path / "train.pt", lazy=lazy
    )
    if lazy:
        assert {e.key: e.state for e in status.report().entries}["scheduler"] == "bound"
        status.run_restore_ops()
    status.assert_consumed()
    assert fresh[2].state_dict() == scheduler.state_dict()
    assert fresh[3].state_dict() == scaler.state_dict()
    tt.train_steps(model, optimizer, data[3:], scheduler, scaler)
    tt.train_steps(fresh[0], fresh[1], data[3:], fresh[2], fresh[3])
    assert tt.state_bytes(fresh[0]) == tt.state_bytes(model)
    assert fresh[2].state_dict() == scheduler.state_dict()


@pytest.mark.parametrize("which", [2, 3], ids=["scheduler", "scaler"])
def test_a_file_of_a_scheduler_or_scaler_alone_restores_into_the_root(tmp_path, tt, which):
    """The HF Trainer's ``scheduler.pt`` is ``torch.save(scheduler.state_dict())``; a root
    scheduler does not take a training file's top level, which is no scheduler's state."""
    run = _training_run(tt)
    tt.train_steps(*run[:2], [torch.ones(3, 4)] * 2, *run[2:])
    torch.save(run[which].state_dict(), tmp_path / "alone.pt")
    fresh = _training_run(tt)[which]
    ck.Checkpoint(root=fresh).restore(tmp_path / "alone.pt").assert_consumed()
    assert fresh.state_dict() == run[which].state_dict()

    torch.save({"model": run[0].state_dict(), "state": run[which].state_dict()}, tmp_path / "t")
    fresh = _training_run(tt)[which]
    before = fresh.state_dict()
    status = ck.Checkpoint(root=fresh).restore(tmp_path / "t")
    assert fresh.state_dict() == before
    assert [e.state for e in status.report().entries if not e.key.startswith("model/")] == [
        "program_only"
    ]


def test_python_state_a_training_file_holds_loads_first_and_all_or_nothing(tmp_path, tt):
    """A GradScaler saved disabled (its state_dict() is {}) refuses to load into an enabled
    one: the restore raises naming it and nothing is written, the scheduler included."""
    saved = _training_run(tt, enabled=False)
    tt.train_steps(saved[0], saved[1], [torch.ones(3, 4)] * 2, saved[2])
    names = ("model", "optimizer", "scheduler", "scaler")
    state = {name: obj.state_dict() for name, obj in zip(names, saved, strict=True)}
    torch.save(state, tmp_path / "train.pt")
    fresh = _training_run(tt, seed=4)
    before = [tt.state_bytes(fresh[0]), fresh[2].state_dict(), fresh[3].state_dict()]
    with pytest.raises(ck.RestoreConflictError, match="'scaler' refused the saved state"):
        ck.Checkpoint(**dict(zip(names, fresh, strict=True))).restore(tmp_path / "train.pt")
    assert [tt.state_bytes(fresh[0]), fresh[2].state_dict(), fresh[3].state_dict()] == before
    assert not fresh[1].state


def test_a_multistep_scheduler_restores_from_a_training_file(tmp_path, tt):
    """``MultiStepLR`` keeps its milestones in a ``collections.Counter``, which
    ``torch.load(weights_only=True)`` reads: the file opens, and they come back a Counter."""

    def program(seed, milestones):
        model = tt.mlp(seed=seed)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.5)
        return model, optimizer, scheduler

    saved = program(0, [2, 5])
    tt.train_steps(*saved[:2], [torch.ones(3, 4)] * 3, saved[2])
    names = ("model", "optimizer", "scheduler")
    state = {name: obj.state_dict() for name, obj in zip(names, saved, strict=True)}
    torch.save(state, tmp_path / "train.pt")
    fresh = program(4, [9])
    status = ck.Checkpoint(**dict(zip(names, fresh, strict=True))).restore(tmp_path / "train.pt")
    status.assert_consumed()
    assert type(fresh[2].milestones) is collections.Counter
    assert fresh[2].state_dict() == saved[2].state_dict()


def test_an_entry_python_state_cannot_hold_is_a_conflict_named(tmp_path, tt):
    model, _, scheduler, _ = _training_run(tt)
    entry = {**scheduler.state_dict(), "tags": {1, 2}}
    torch.save({"model": model.state_dict(), "scheduler": entry}, tmp_path / "f")
    fresh = _training_run(tt, seed=4)
    before = tt.state_bytes(fresh[0])
    with pytest.raises(ck.RestoreConflictError, match=r"scheduler \(OneCycleLR\): .* is a set"):
        ck.Checkpoint(model=fresh[0], scheduler=fresh[2]).restore(tmp_path / "f")
    assert tt.state_bytes(fresh[0]) == before


def test_a_lazy_restore_holds_back_what_does_not_fit_and_says_why(tmp_path, tt):
    """A file whose optimizer has two param groups against a live one with one: an eager
    restore raises; a lazy one writes none of that state (by ``run_restore_ops()`` or by a
    selection that includes it), and its assertions name the problem. A selection without it
    is written."""
    model = tt.mlp()
    groups = [{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.5}]
    optimizer = torch.optim.Adam(groups, lr=1e-2)
    tt.train_steps(model, optimizer, [torch.randn(3, 4)])
    path = tmp_path / "train.pt"
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, path)
    fresh = tt.mlp(seed=5)
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-2)
    with pytest.raises(ck.RestoreConflictError, match="2 parameter group"):
        ck.Checkpoint(model=fresh, optimizer=fresh_opt).restore(path)

    status = ck.Checkpoint(model=fresh, optimizer=fresh_opt).restore(path, lazy=True)
    with pytest.raises(AssertionError, match=r"do not fit .*\n.*2 parameter group"):
        status.assert_consumed()
    held = {e.key for e in status.report().entries if e.reason.startswith("held back")}
    state = {f"optimizer/state/{i}/{n}" for i in (0, 1) for n in ("step", "exp_avg", "exp_avg_sq")}
    assert held == {"optimizer/param_groups/0", *state}
    for only in (None, ["optimizer/state/0/exp_avg"]):
        with pytest.raises(ck.RestoreConflictError, match="2 parameter group"):
            status.run_restore_ops(only=only)
    assert not fresh_opt.state and fresh_opt.param_groups[0]["lr"] == 1e-2
    status.run_restore_ops(only=["model/0.weight"])
    assert torch.equal(fresh[0].weight, model[0].weight)
    assert not fresh_opt.state


@pytest.mark.parametrize(
    "extra",
    [
        {"count": 3, "history": [torch.ones(2), torch.arange(2.0)]},
        torch.arange(4, dtype=torch.uint8),  # TransformerEngine keeps serialised bytes
    ],
    ids=["dict_with_tensors", "tensor"],
)
def test_extra_state_restores_from_a_state_dict_file(tmp_path, extra):
    """A module's ``get_extra_state()`` is in its ``state_dict()``: torch's ``load_state_dict``
    gives it back to ``set_extra_state``, and so does the restore."""

    class Counted(nn.Linear):
        def __init__(self):
            super().__init__(2, 2)
            self.seen = None

        def get_extra_state(self):
            return self.seen

        def set_extra_state(self, state):
            self.seen = state

    saved = nn.Sequential(Counted())
    saved[0].seen = extra
    torch.save(saved.state_dict(), tmp_path / "model.pt")
    fresh = nn.Sequential(Counted())
    fresh[0].seen = {"count": 0, "history": []}
    ck.Checkpoint(root=fresh).restore(tmp_path / "model.pt").assert_consumed()
    restored = torch.load(tmp_path / "model.pt")["0._extra_state"]
    assert repr(fresh[0].seen) == repr(restored)


@pytest.mark.parametrize("layout", ["state_dict_file", "training_checkpoint"])
def test_a_root_naming_the_model_differently_from_the_file_says_which_restore_fits(
    tmp_path, tt, layout
):
    """``model=m`` against a file of ``m`` alone, or ``root=m`` against a training
    checkpoint: nothing matches, and the assertion names the restore that would."""
    model = tt.mlp()
    saved = model.state_dict() if layout == "state_dict_file" else {"model": model.state_dict()}
    torch.save(saved, tmp_path / "f.pt")
    fresh = tt.mlp(seed=4)
    before = tt.state_bytes(fresh)
    if layout == "state_dict_file":
        status, fix = ck.Checkpoint(model=fresh).restore(tmp_path / "f.pt"), "root=<your model>"
    else:
        status, fix = ck.Checkpoint(root=fresh).restore(tmp_path / "f.pt"), "model=<your model>"
    assert tt.state_bytes(fresh) == before
    with pytest.raises(AssertionError, match="not restored") as raised:
        status.assert_consumed()
    assert "4 of them are stored" in str(raised.value)
    assert f"ck.Checkpoint({fix}" in str(raised.value)


def test_a_safetensors_file_with_a_renamed_layer_reports_both_sides(tmp_path, tt):
    model = tt.mlp()
    renamed = {
        k.replace("0.", "first.") if k.startswith("0.") else k: v
        for k, v in model.state_dict().items()
    }
    safetensors_torch.save_file(renamed, str(tmp_path / "renamed.safetensors"))
    fresh = tt.mlp(seed=1)
    status = ck.Checkpoint(root=fresh).restore(tmp_path / "renamed.safetensors", lazy=True)
    report = status.report()
    assert {e.key for e in report.missing} == {"0.weight", "0.bias"}
    assert {e.key for e in report.unused} == {"first.weight", "first.bias"}
    status.run_restore_ops()
    assert torch.equal(fresh[2].weight, model[2].weight)


@pytest.mark.parametrize(
    "name",
    ["float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu"],
)
def test_float8_buffers_restore_from_a_torch_file(tmp_path, name):
    dtype = getattr(torch, name)

    def model():
        module = nn.Module()
        module.register_buffer("scale", torch.zeros(3, dtype=dtype))
        return module

    source = model()
    source.scale = torch.tensor([1.0, 2.0, 0.5]).to(dtype)
    torch.save(source.state_dict(), tmp_path / "model.pt")
    fresh = model()
    ck.Checkpoint(root=fresh).restore(tmp_path / "model.pt").assert_consumed()
    want = torch.load(tmp_path / "model.pt", weights_only=True)["scale"]
    assert fresh.scale.dtype == dtype
    assert torch.equal(fresh.scale.view(torch.uint8), want.view(torch.uint8))


@pytest.mark.parametrize(
    ("saved", "restored"),
    [("BertForMaskedLM", "BertModel"), ("BertModel", "BertForSequenceClassification")],
)
def test_a_model_with_a_head_and_its_base_model_load_each_others_files(tmp_path, saved, restored):
    """``base_model_prefix``: the files of ``BertForMaskedLM`` say ``bert.embeddings...``,
    those of ``BertModel`` ``embeddings...``; each restores into the other as
    ``from_pretrained`` loads it (the head stays missing, or unused)."""
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=16,
    )  # fmt: skip
    torch.manual_seed(0)
    getattr(transformers, saved)(config).save_pretrained(tmp_path / "saved")
    expected = getattr(transformers, restored).from_pretrained(tmp_path / "saved")
    torch.manual_seed(1)
    fresh = getattr(transformers, restored)(config)
    report = ck.Checkpoint(root=fresh).restore(tmp_path / "saved").report()
    loaded = {e.path for e in report.entries if e.state == "restored"}
    assert len(loaded) >= 20
    state, want = fresh.state_dict(), expected.state_dict()
    for name in loaded:
        assert torch.equal(state[name.replace("/", ".")], want[name.replace("/", ".")]), name
    missing = {e.path.replace("/", ".") for e in report.missing}
    assert missing == {n for n in state if n.startswith(("pooler.", "classifier."))}


@pytest.mark.parametrize("restored", ["ViTForImageClassification", "ViTModel"])
def test_weights_transformers_renames_between_files_and_modules_restore(tmp_path, restored):
    """transformers 5 saves a ViT's weights under its Hub names
    (``vit.encoder.layer.0.attention.attention.query``) and renames them on load
    (``vit.layers.0.attention.q_proj``): a restore applies the model's own renames."""
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24,
        image_size=8, patch_size=4, num_labels=3,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.ViTForImageClassification(config).save_pretrained(tmp_path / "saved")
    stored = {k for k, _ in ck.list_variables(tmp_path / "saved")}
    assert any(".attention.attention.query." in k for k in stored)  # the files' names differ
    expected = getattr(transformers, restored).from_pretrained(tmp_path / "saved")
    torch.manual_seed(1)
    fresh = getattr(transformers, restored)(config)
    status = ck.Checkpoint(root=fresh).restore(tmp_path / "saved")
    want = expected.state_dict()
    assert _equal_but_the_pooler(fresh.state_dict(), want)
    if restored == "ViTModel":  # the classifier is the file's alone; the pooler the model's
        status.expect_partial()
        assert {e.path for e in status.report().unused} == {
            "classifier.weight",
            "classifier.bias",
        }
    else:
        status.assert_consumed()


def _equal_but_the_pooler(state, want):
    """Every tensor the restore could fill equals from_pretrained's (the pooler is random)."""
    return all(torch.equal(v, want[k]) for k, v in state.items() if not k.startswith("pooler."))


def test_a_newer_name_based_restore_rooted_elsewhere_does_not_drop_an_older_one(tmp_path):
    """S41 Bounded: two files with the same names and specs, restored from different roots,
    name a module attached later differently (``0.1.weight`` from the model, ``1.weight``
    from its first child): the older restore, whose status is gone, still fills it."""
    names = ["0.0.weight", "0.0.bias", "0.weight", "0.bias", "0.1.weight", "0.1.bias"]
    for value in (1.0, 2.0):
        torch.save(
            {n: torch.full((2, 2) if n.endswith("weight") else (2,), value) for n in names},
            tmp_path / f"{value}.pt",
        )
    model = nn.Sequential(nn.Sequential(nn.Linear(2, 2)))
    ck.Checkpoint(root=model).restore(tmp_path / "1.0.pt")
    gc.collect()
    ck.Checkpoint(root=model[0]).restore(tmp_path / "2.0.pt")
    model[0].append(nn.Linear(2, 2))
    assert model[0][1].weight.flatten().tolist() == [1.0] * 4
