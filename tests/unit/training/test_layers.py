"""Train-layer boundaries in the arcface-mbf graph and what stays frozen."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from app.training.layers import select_trainable, train_mode, trainable_prefixes


@pytest.fixture
def network(models: Any) -> torch.nn.Module:
    module: torch.nn.Module = copy.deepcopy(models.embedder.module)
    return module


def test_head_is_the_embedding_layers_after_the_last_flatten(network: torch.nn.Module) -> None:
    assert trainable_prefixes(network, "head") == ("Gemm_96", "BatchNormalization_97")
    last_block = trainable_prefixes(network, "last_block")
    assert last_block[:4] == ("Conv_91", "PRelu_92", "Conv_93", "PRelu_94")
    assert last_block[-2:] == ("Gemm_96", "BatchNormalization_97")


@pytest.mark.parametrize(
    ("layers", "expected"), [("head", 1_607_168), ("last_block", 1_771_584), ("all", None)]
)
def test_select_trainable_freezes_everything_else(
    network: torch.nn.Module, layers: Any, expected: int | None
) -> None:
    chosen = select_trainable(network, layers)
    trainable = sum(p.numel() for p in network.parameters() if p.requires_grad)
    total = sum(p.numel() for p in network.parameters())
    assert trainable == sum(p.numel() for p in chosen) == (expected or total)


def test_train_mode_freezes_batchnorm_statistics(network: torch.nn.Module) -> None:
    train_mode(network)
    norms = [m for m in network.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert norms and not any(m.training for m in norms) and network.training
    running_mean = norms[0].running_mean
    assert running_mean is not None
    before = running_mean.clone()
    network(torch.randn(4, 3, 112, 112))
    assert torch.equal(before, running_mean)


def test_an_unknown_network_has_no_boundary() -> None:
    with pytest.raises(ValueError, match="no 'head' boundary"):
        trainable_prefixes(torch.nn.Linear(2, 2), "head")
