"""Tiny real PyTorch programs built from code (no downloads)."""

from __future__ import annotations

import itertools
import types

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn


class TinyLM(nn.Module):
    """A two-layer transformer language model whose output layer shares the embedding."""

    def __init__(self, vocab: int = 50, width: int = 16, layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(width, nhead=2, dim_feedforward=32, batch_first=True),
            num_layers=layers,
            enable_nested_tensor=False,
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.embed.weight  # tied

    def forward(self, tokens):
        return self.head(self.norm(self.encoder(self.embed(tokens))))


def mlp(sizes=(4, 8, 2), seed=0):
    """A Sequential of Linear/ReLU layers with seeded weights."""
    torch.manual_seed(seed)
    layers = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def train_steps(model, optimizer, batches, scheduler=None, scaler=None):
    """Run ``batches`` (a list of input tensors) through a squared-output loss."""
    for batch in batches:
        optimizer.zero_grad()
        loss = model(batch).float().pow(2).mean()
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()


def state_bytes(module_or_dict):
    """Every state_dict entry as raw bytes (bit-exact comparisons, NaN payloads included)."""
    state = module_or_dict.state_dict() if hasattr(module_or_dict, "state_dict") else module_or_dict
    return {k: _tensor_bytes(v) for k, v in state.items()}


def _tensor_bytes(value):
    if isinstance(value, torch.Tensor):
        flat = value.detach().cpu().contiguous().reshape(-1)
        return (str(value.dtype), tuple(value.shape), flat.view(torch.uint8).numpy().tobytes())
    if isinstance(value, list | tuple):  # LBFGS keeps lists of tensors
        return type(value)(map(_tensor_bytes, value))
    return value


def optimizer_bytes(optimizer):
    """An optimizer's state_dict with every tensor as raw bytes."""
    state = optimizer.state_dict()
    return {
        "state": {
            i: {k: _tensor_bytes(v) for k, v in entry.items()}
            for i, entry in state["state"].items()
        },
        "param_groups": state["param_groups"],
    }


@pytest.fixture
def tt():
    """The helpers above, for tests that build their own torch programs."""
    return types.SimpleNamespace(
        TinyLM=TinyLM,
        mlp=mlp,
        train_steps=train_steps,
        state_bytes=state_bytes,
        optimizer_bytes=optimizer_bytes,
    )
