"""Which parameters a fine-tune trains: the embedding head, the last block, or everything."""

# arcface-mbf is an onnx2torch GraphModule whose submodules are named `<OnnxOp>_<n>` in graph
# order. Its graph ends: ... Add_90 (last residual add) -> Conv_91 + PRelu_92 (1x1, 128->512)
# -> Conv_93 + PRelu_94 (1x1, 512->64) -> Flatten_95 -> Gemm_96 (3136->512) ->
# BatchNormalization_97. "head" is what follows the last Flatten (the linear embedding layer
# and its BatchNorm, 1.6M of 3.4M parameters); "last_block" is what follows the last residual
# Add (adds the two 1x1 convolutions, 0.16M). PReLU slopes are graph constants (buffers) in
# the conversion, so they stay fixed in every mode.
# facenet-vggface2 (InceptionResnetV1): "head" is last_linear + last_bn; "last_block" adds
# block8 (the last Inception-ResNet-C block).

from __future__ import annotations

from typing import Literal

import torch
from torch import fx, nn

TrainLayers = Literal["head", "last_block", "all"]

_FACENET = {
    "head": ("last_linear", "last_bn"),
    "last_block": ("block8", "last_linear", "last_bn"),
}


def trainable_prefixes(module: nn.Module, layers: TrainLayers) -> tuple[str, ...]:
    """Names of the submodules whose parameters train; ("",) means all of them."""
    if layers == "all":
        return ("",)
    if isinstance(module, fx.GraphModule):
        return _graph_tail(module, "Flatten_" if layers == "head" else "Add_")
    if all(hasattr(module, name) for name in _FACENET[layers]):
        return _FACENET[layers]
    raise ValueError(f"no {layers!r} boundary is known for {type(module).__name__}")


def _graph_tail(module: fx.GraphModule, marker: str) -> tuple[str, ...]:
    """The call_module targets after the last node whose target starts with `marker`."""
    targets = [str(node.target) for node in module.graph.nodes if node.op == "call_module"]
    last = max((i for i, t in enumerate(targets) if t.startswith(marker)), default=None)
    if last is None:
        raise ValueError(f"the graph has no {marker.rstrip('_')} node to split at")
    return tuple(targets[last + 1 :])


def select_trainable(module: nn.Module, layers: TrainLayers) -> list[nn.Parameter]:
    """Freeze every parameter outside `layers`; returns the ones left trainable."""
    prefixes = trainable_prefixes(module, layers)
    chosen: list[nn.Parameter] = []
    for name, param in module.named_parameters():
        trains = any(name == p or name.startswith(f"{p}.") or p == "" for p in prefixes)
        param.requires_grad_(trains)
        if trains:
            chosen.append(param)
    if not chosen:
        raise ValueError(f"{layers!r} selects no parameters")
    return chosen


def train_mode(module: nn.Module) -> None:
    """Training mode with BatchNorm statistics frozen.

    Micro-batches are small, and batch statistics would make a micro-batch's gradient depend
    on its batch mates, breaking the equivalence of accumulation with one large batch.
    """
    module.train()
    for sub in module.modules():
        if isinstance(sub, nn.modules.batchnorm._BatchNorm):
            sub.eval()


def count(params: list[nn.Parameter]) -> int:
    return sum(int(torch.numel(p)) for p in params)
