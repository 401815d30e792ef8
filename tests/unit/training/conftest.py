"""Tiny float64 models for exact gradient-accumulation checks, and a real SQLite gallery."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class RecordingSGD(torch.optim.SGD):
    """SGD that snapshots every gradient at the moment step() is called."""

    def __init__(self, params, lr: float) -> None:
        super().__init__(params, lr=lr)
        self.recorded: list[list[torch.Tensor]] = []
        self.zero_grad_calls = 0

    def step(self, closure=None):
        grads = [p.grad.detach().clone() for g in self.param_groups for p in g["params"]]
        self.recorded.append(grads)
        return super().step(closure)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.zero_grad_calls += 1
        super().zero_grad(set_to_none=set_to_none)


def _make_model(seed: int = 0) -> nn.Module:
    # No dropout or batchnorm: both make a micro-batch's gradient depend on its batch mates.
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()


@pytest.fixture
def make_model():
    return _make_model


@pytest.fixture
def recording_sgd() -> type[RecordingSGD]:
    return RecordingSGD


@pytest.fixture
def data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(20, 6, dtype=torch.float64, generator=generator)
    y = torch.randint(0, 3, (20,), generator=generator)
    return x, y
