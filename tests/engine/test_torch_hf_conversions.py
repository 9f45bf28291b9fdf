"""Hugging Face files whose values transformers 5 builds as it loads them (its converters).

A Mixture-of-Experts checkpoint as people download it holds a tensor per expert
(``model.layers.0.mlp.experts.0.gate_proj.weight``, ...); a transformers 5 model holds one
fused tensor per layer (``model.layers.0.mlp.experts.gate_up_proj``, ``[E, 2I, H]``).
``save_pretrained`` writes the per-expert layout (it reverses the conversion), and a restore
fuses the experts back as ``from_pretrained`` does.
"""

from __future__ import annotations

import pytest

import ckptlab as ck

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")
pytest.importorskip("transformers.core_model_loading")  # transformers 5


def mixtral(experts=4):
    config = transformers.MixtralConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, num_local_experts=experts,
        num_experts_per_tok=2,
    )  # fmt: skip
    return transformers.MixtralForCausalLM(config)


def qwen2_moe(experts=4):
    config = transformers.Qwen2MoeConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, moe_intermediate_size=8,
        shared_expert_intermediate_size=16, num_experts=experts, num_experts_per_tok=2,
        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
    )  # fmt: skip
    return transformers.Qwen2MoeForCausalLM(config)


def olmoe(experts=4):
    config = transformers.OlmoeConfig(
        vocab_size=64, hidden_size=16, intermediate_size=8, num_experts=experts,
        num_experts_per_tok=2, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, eos_token_id=2, pad_token_id=1,
    )  # fmt: skip
    return transformers.OlmoeForCausalLM(config)


def saved_model(directory, build=mixtral, sharded=True, **kwargs):
    """A model of ``build`` (seeded), saved with ``save_pretrained``; and the model."""
    torch.manual_seed(0)
    model = build(**kwargs)
    model.save_pretrained(directory, **({"max_shard_size": "8KB"} if sharded else {}))
    return model


def fresh_model(build=mixtral, **kwargs):
    torch.manual_seed(1)
    return build(**kwargs)


def fused_names(model):
    return sorted(n for n in model.state_dict() if n.endswith(("gate_up_proj", "down_proj")))


@pytest.mark.parametrize("build", [mixtral, qwen2_moe, olmoe])
@pytest.mark.parametrize("layout", ["sharded", "single", "file"])
def test_per_expert_files_fill_fused_experts_as_from_pretrained_does(tmp_path, tt, build, layout):
    saved = saved_model(tmp_path / "saved", build, sharded=layout == "sharded")
    stored = {k for k, _ in ck.list_variables(tmp_path / "saved")}
    assert any(".experts.0." in k for k in stored)  # the files hold a tensor per expert
    assert not any(k.endswith(".experts.gate_up_proj") for k in stored)
    assert (tmp_path / "saved" / "model.safetensors.index.json").exists() == (layout == "sharded")
    path = tmp_path / "saved" / "model.safetensors" if layout == "file" else tmp_path / "saved"
    fresh = fresh_model(build)
    status = ck.Checkpoint(root=fresh).restore(path)
    status.assert_consumed()
    expected = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    assert tt.state_bytes(fresh) == tt.state_bytes(expected) == tt.state_bytes(saved)
    report = status.report()
    assert not report.unused and {e.state for e in report.entries} == {"restored"}
    fused = {e.path.replace("/", "."): e for e in report.entries if "built from" in e.reason}
    assert sorted(fused) == fused_names(fresh)
    entry = fused["model.layers.0.mlp.experts.down_proj"]
    assert entry.stored == entry.program
    assert "model.layers.0." in entry.reason and "MergeModulelist" in entry.reason


def test_experts_are_stacked_in_numeric_order(tmp_path):
    """Twelve experts: ``experts.10`` comes after ``experts.9``, as transformers sorts them."""
    saved_model(tmp_path / "saved", experts=12)
    fresh = fresh_model(experts=12)
    ck.Checkpoint(root=fresh).restore(tmp_path / "saved").assert_consumed()
    stored = {}
    for file in (tmp_path / "saved").glob("*.safetensors"):
        stored.update(safetensors_torch.load_file(file))
    for layer in range(2):
        moe = f"model.layers.{layer}.block_sparse_moe.experts"
        gate_up = torch.stack(
            [
                torch.cat([stored[f"{moe}.{e}.w1.weight"], stored[f"{moe}.{e}.w3.weight"]])
                for e in range(12)
            ]
        )
        down = torch.stack([stored[f"{moe}.{e}.w2.weight"] for e in range(12)])
        experts = fresh.model.layers[layer].mlp.experts
        assert torch.equal(experts.gate_up_proj, gate_up)
        assert torch.equal(experts.down_proj, down)


def test_another_number_of_experts_is_one_conflict_and_nothing_is_written(tmp_path, tt):
    saved_model(tmp_path / "saved", experts=4)
    fresh = fresh_model(experts=3)
    before = tt.state_bytes(fresh)
    with pytest.raises(ck.RestoreConflictError) as raised:
        ck.Checkpoint(root=fresh).restore(tmp_path / "saved")
    message = str(raised.value)
    for name in fused_names(fresh):
        assert f"'{name}' (built from" in message
    assert "'model.layers.0.block_sparse_moe.experts.0.w1.weight'" in message
    assert "(4, 64, 16)" in message and "(3, 64, 16)" in message
    assert len(raised.value.conflicts) == len(fused_names(fresh)) + 2  # the routers' too
    assert tt.state_bytes(fresh) == before


def test_experts_of_another_dtype_are_a_conflict_not_a_cast(tmp_path, tt):
    torch.manual_seed(0)
    mixtral().to(torch.bfloat16).save_pretrained(tmp_path / "saved")
    fresh = fresh_model()
    before = tt.state_bytes(fresh)
    with pytest.raises(ck.RestoreConflictError, match="gate_up_proj' \\(built from"):
        ck.Checkpoint(root=fresh).restore(tmp_path / "saved")
    assert tt.state_bytes(fresh) == before
    same = fresh_model().to(torch.bfloat16)  # a bfloat16 model takes them, bit for bit
    ck.Checkpoint(root=same).restore(tmp_path / "saved").assert_consumed()
    expected = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path / "saved", dtype=torch.bfloat16
    )
    assert tt.state_bytes(same) == tt.state_bytes(expected)


def test_a_lazy_restore_shows_fused_experts_pending_and_writes_those_selected(tmp_path, tt):
    saved = saved_model(tmp_path / "saved")
    fresh = fresh_model()
    before = tt.state_bytes(fresh)
    status = ck.Checkpoint(root=fresh).restore(tmp_path / "saved", lazy=True)
    report = status.report()
    assert not report.unused and {e.state for e in report.entries} == {"bound"}
    first = "model.layers.0.mlp.experts.gate_up_proj"
    status.run_restore_ops(only=[first])
    by_source = "model.layers.1.block_sparse_moe.experts.2.w2.weight"  # one of its sources
    status.run_restore_ops(only=[by_source])
    done = {first, "model.layers.1.mlp.experts.down_proj"}
    now, want = tt.state_bytes(fresh), tt.state_bytes(saved)
    assert all(now[n] == (want[n] if n in done else before[n]) for n in now)
    states = {e.path.replace("/", "."): e.state for e in status.report().entries}
    assert {n for n, s in states.items() if s == "restored"} == done
    status.run_restore_ops()
    status.assert_consumed()
    assert tt.state_bytes(fresh) == want


def test_the_explorer_shows_fused_experts_and_restores_them(tmp_path, tt):
    pytest.importorskip("anywidget")
    saved = saved_model(tmp_path / "saved")
    fresh = fresh_model()
    status = ck.Checkpoint(root=fresh).restore(tmp_path / "saved", lazy=True)
    widget = ck.explore(status)
    path = ("model", "layers", "0", "mlp", "experts", "gate_up_proj")
    node = widget.view.find(path)
    assert widget.view.nodes[node].state == "bound"
    widget.focused = node
    assert "built from 8 stored values" in widget.details["reason"]
    widget.compare_values()  # a built value has no stored value of its own to compare
    widget.select(["model/layers/0/mlp/experts"])
    widget.restore_selected()
    experts = fresh.model.layers[0].mlp.experts
    assert torch.equal(experts.gate_up_proj, saved.model.layers[0].mlp.experts.gate_up_proj)
    assert torch.equal(experts.down_proj, saved.model.layers[0].mlp.experts.down_proj)
    assert not torch.equal(
        fresh.model.layers[1].mlp.experts.down_proj, saved.model.layers[1].mlp.experts.down_proj
    )


def test_the_base_model_takes_the_experts_of_the_causal_lm_files(tmp_path, tt):
    """``base_model_prefix``: ``MixtralModel`` takes ``model.layers...`` as ``layers...``."""
    saved = saved_model(tmp_path / "saved")
    torch.manual_seed(1)
    fresh = transformers.MixtralModel(saved.config)
    status = ck.Checkpoint(root=fresh).restore(tmp_path / "saved")
    assert {e.path for e in status.report().unused} == {"lm_head.weight"}
    want = tt.state_bytes(saved.model)
    assert tt.state_bytes(fresh) == want


def test_a_meta_model_gets_real_fused_experts(tmp_path):
    saved = saved_model(tmp_path / "saved")
    with torch.device("meta"):
        fresh = mixtral()
    ck.Checkpoint(root=fresh).restore(tmp_path / "saved").assert_consumed()
    for name, value in saved.named_parameters():
        assert torch.equal(fresh.get_parameter(name), value), name


def test_each_fused_value_is_built_once_from_its_own_experts(tmp_path, monkeypatch):
    """Besides one run on ``meta`` tensors (shapes and dtypes, nothing read), transformers'
    operations run once per fused value, on that value's stored tensors alone."""
    saved_model(tmp_path / "saved")
    merge = transformers.core_model_loading.MergeModulelist
    runs = []

    def counted(self, input_dict, *args, **kwargs):
        tensors = [t for ts in input_dict.values() for t in ts]
        runs.append((tensors[0].is_meta, len(tensors)))
        return original(self, input_dict, *args, **kwargs)

    original = merge.convert
    monkeypatch.setattr(merge, "convert", counted)
    fresh = fresh_model()
    ck.Checkpoint(root=fresh).restore(tmp_path / "saved").assert_consumed()
    real = sorted(n for meta, n in runs if not meta)
    assert real == [4, 4, 8, 8]  # per layer: down_proj's 4 experts, gate and up's 4 + 4
    assert len(runs) == 2 * len(real)  # and one run on meta tensors each
