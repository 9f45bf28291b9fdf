"""A torch program's object graph: state-dict names as edges, one object per tied weight."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import ckptlab as ck

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
nn = torch.nn

VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"


def keys_of(path, prefix="model/"):
    return {k for k, _ in ck.list_variables(path) if k.startswith(prefix) and "OPTIMIZER" not in k}


def state_keys(module, prefix="model/"):
    return {prefix + name.replace(".", "/") + VALUE for name in module.state_dict()}


def test_import_ckptlab_imports_no_framework():
    script = textwrap.dedent(
        """
        import sys
        import ckptlab as ck
        ck.Checkpoint(w=ck.Variable(1.0))
        frameworks = ("torch", "jax", "flax", "keras", "tensorflow")
        print(sorted(m for m in frameworks if m in sys.modules))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_resnet18_keys_are_its_state_dict_and_values_round_trip_bit_exactly(tmp_path, tt):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10)
    model.train()
    model(torch.randn(2, 3, 32, 32))  # BatchNorm running stats and num_batches_tracked move
    path = ck.Checkpoint(model=model).write(tmp_path / "resnet")
    assert keys_of(path) == state_keys(model)
    assert any(k.endswith("num_batches_tracked" + VALUE) for k in keys_of(path))

    fresh = torchvision.models.resnet18(weights=None, num_classes=10)
    status = ck.Checkpoint(model=fresh).read(path)
    status.assert_consumed()
    assert tt.state_bytes(fresh) == tt.state_bytes(model)


def test_non_persistent_buffers_are_not_saved_and_extra_state_is(tmp_path):
    class WithExtra(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)
            self.register_buffer("cache", torch.zeros(3), persistent=False)
            self.register_buffer("count", torch.tensor(7))
            self.meta = {"epoch": 3, "betas": (0.9, 0.99), "ids": {1: "a"}}

        def get_extra_state(self):
            return self.meta

        def set_extra_state(self, state):
            self.meta = state

    model = WithExtra()
    path = ck.Checkpoint(model=model).write(tmp_path / "c")
    keys = keys_of(path)
    assert "model/cache" + VALUE not in keys
    assert {"model/count" + VALUE, "model/_extra_state" + VALUE} <= keys
    fresh = WithExtra()
    fresh.meta = None
    fresh.count.fill_(0)
    ck.Checkpoint(model=fresh).read(path).assert_consumed()
    assert fresh.meta == {"epoch": 3, "betas": (0.9, 0.99), "ids": {1: "a"}}
    assert int(fresh.count) == 7


def test_tied_weights_are_one_object_saved_once_and_stay_tied(tmp_path, tt):
    model = tt.TinyLM()
    path = ck.Checkpoint(model=model).write(tmp_path / "lm")
    keys = keys_of(path)
    assert "model/embed/weight" + VALUE in keys
    assert "model/head/weight" + VALUE not in keys  # one object, saved under its first path
    graph = ck.load_checkpoint(path).object_graph
    embed = graph.nodes[graph.nodes[graph.nodes[0].children["model"]].children["embed"]]
    head = graph.nodes[graph.nodes[graph.nodes[0].children["model"]].children["head"]]
    assert embed.children["weight"] == head.children["weight"]

    torch.manual_seed(1)
    fresh = tt.TinyLM()
    ck.Checkpoint(model=fresh).read(path).assert_consumed()
    assert fresh.head.weight is fresh.embed.weight
    assert tt.state_bytes(fresh) == tt.state_bytes(model)


@pytest.mark.parametrize("wrap", ["compile", "data_parallel", "both"])
def test_compile_and_data_parallel_wrappers_are_transparent(tmp_path, tt, wrap):
    bare = tt.mlp()
    wrapped = {
        "compile": lambda m: torch.compile(m),
        "data_parallel": lambda m: nn.DataParallel(m),
        "both": lambda m: torch.compile(nn.DataParallel(m)),
    }[wrap](bare)
    from_wrapped = ck.Checkpoint(model=wrapped).write(tmp_path / "wrapped")
    from_bare = ck.Checkpoint(model=bare).write(tmp_path / "bare")
    assert keys_of(from_wrapped) == keys_of(from_bare) == state_keys(bare)

    target = tt.mlp(seed=5)
    ck.Checkpoint(model=nn.DataParallel(target)).read(from_wrapped).assert_consumed()
    assert tt.state_bytes(target) == tt.state_bytes(bare)
    root_status = ck.Checkpoint(root=torch.compile(tt.mlp(seed=6))).read(
        ck.Checkpoint(root=wrapped).write(tmp_path / "root")
    )
    root_status.assert_consumed()


def test_root_module_and_a_mixed_program(tmp_path, tt):
    model = tt.mlp()
    step = ck.Variable(5, dtype="int64")
    path = ck.Checkpoint(root=model, step=step).write(tmp_path / "c")
    assert {k for k, _ in ck.list_variables(path)} == {
        "0/weight" + VALUE,
        "0/bias" + VALUE,
        "2/weight" + VALUE,
        "2/bias" + VALUE,
        "step" + VALUE,
    }
    other = ck.Variable(0, dtype="int64")
    fresh = tt.mlp(seed=3)
    ck.Checkpoint(root=fresh, step=other).read(path).assert_consumed()
    assert int(other.numpy()) == 5 and tt.state_bytes(fresh) == tt.state_bytes(model)


def test_bfloat16_and_half_models_round_trip_bit_exactly(tmp_path, tt):
    model = tt.mlp().to(torch.bfloat16)
    model[0].weight.data[0, 0] = float("nan")
    half = tt.mlp(seed=2).half()
    path = ck.Checkpoint(model=model, half=half).write(tmp_path / "c")
    dtypes = dict(ck.load_checkpoint(path).get_variable_to_dtype_map())
    assert dtypes["model/0/weight" + VALUE] == "bfloat16"
    assert dtypes["half/0/weight" + VALUE] == "float16"
    fresh, fresh_half = tt.mlp(seed=9).to(torch.bfloat16), tt.mlp(seed=9).half()
    ck.Checkpoint(model=fresh, half=fresh_half).read(path).assert_consumed()
    assert tt.state_bytes(fresh) == tt.state_bytes(model)
    assert tt.state_bytes(fresh_half) == tt.state_bytes(half)


def test_values_are_readable_as_numpy_without_torch(tmp_path, tt):
    model = tt.mlp()
    path = ck.Checkpoint(model=model).write(tmp_path / "c")
    stored = ck.load_checkpoint(path).get_tensor("model/0/weight" + VALUE)
    np.testing.assert_array_equal(stored, model[0].weight.detach().numpy())


def test_what_cannot_be_saved_is_refused_by_name(tmp_path, tt):
    model = tt.mlp()
    model.register_buffer("scale", torch.zeros(2, dtype=torch.float8_e4m3fn))
    with pytest.raises(ck.NotSaveableError, match=r"^\(root\)\.model\.scale: .*float8_e4m3fn"):
        ck.Checkpoint(model=model).write(tmp_path / "a")
    assert not (tmp_path / "a").exists()

    class Custom(nn.Linear):
        def _save_to_state_dict(self, destination, prefix, keep_vars):
            super()._save_to_state_dict(destination, prefix, keep_vars)
            destination[prefix + "calibration"] = torch.ones(1)

    with pytest.raises(ck.NotSaveableError, match="_save_to_state_dict"):
        ck.Checkpoint(model=Custom(2, 2)).write(tmp_path / "b")

    with torch.device("meta"):
        on_meta = tt.mlp()
    with pytest.raises(ck.NotSaveableError, match=r"^\(root\)\.model\.0\.weight: .*meta device"):
        ck.Checkpoint(model=on_meta).write(tmp_path / "c")

    model = tt.mlp()
    model.register_buffer("mask", torch.eye(2).to_sparse())
    with pytest.raises(ck.NotSaveableError, match=r"model\.mask: .*sparse.*\.to_dense\(\)"):
        ck.Checkpoint(model=model).write(tmp_path / "d")


def test_scheduler_state_that_is_not_json_is_refused_by_name(tmp_path, tt):
    model = tt.mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    class Holder:  # an arbitrary object inside a state_dict
        pass

    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
    scheduler.extra = Holder()
    with pytest.raises(ck.NotSaveableError, match="Holder"):
        ck.Checkpoint(scheduler=scheduler).write(tmp_path / "c")


def test_the_explorer_finds_a_bare_model_under_its_checkpoint_name(tmp_path, tt):
    model = tt.mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    path = ck.Checkpoint(model=model, optimizer=optimizer).save(tmp_path / "c")  # save_counter too
    changed = tt.mlp((4, 8, 3), seed=2)
    widget = ck.explore(path, program=changed)  # the bare model, not a ck.Checkpoint
    assert widget.summary.startswith("2 matched but not yet written")
    assert "2 shape conflicts" in widget.summary
    torch.save(model.state_dict(), tmp_path / "m.pt")
    by_name = ck.explore(tmp_path / "m.pt", program=changed).summary
    assert by_name.startswith("2 matched but not yet written") and "2 shape conflicts" in by_name


def test_the_explorer_suggests_a_renamed_body_that_holds_a_tied_embedding(tmp_path):
    """The tied weight sits where state_dict() names it first (body.embed.weight), so the
    renamed body keeps the file's structure and the rename is suggested (placed at the shorter
    head.weight, the body lacked it and nothing was suggested)."""

    def program(body_name: str) -> nn.Module:
        torch.manual_seed(0)
        model = nn.Module()
        body = nn.Module()
        body.embed = nn.Embedding(10, 4)
        body.mix = nn.Linear(4, 4)
        setattr(model, body_name, body)
        model.head = nn.Linear(4, 10, bias=False)
        model.head.weight = body.embed.weight
        return model

    pytest.importorskip("safetensors.torch").save_model(
        program("body"), str(tmp_path / "m.safetensors")
    )
    widget = ck.explore(tmp_path / "m.safetensors", program=program("backbone"))
    view = widget.view
    pairs = [(view.path_of(s.program), view.path_of(s.checkpoint)) for s in view.suggestions]
    assert pairs[0] == (("backbone",), ("body",))
