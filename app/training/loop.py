"""Training loop with gradient accumulation, optional AMP and gradient clipping."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import torch

logger = logging.getLogger(__name__)

BatchT = TypeVar("BatchT")

_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class LoopConfig:
    epochs: int = 1
    accumulation_steps: int = 1
    amp: bool = False
    amp_dtype: Literal["bf16", "fp16"] = "bf16"
    max_grad_norm: float | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.accumulation_steps < 1:
            raise ValueError("epochs and accumulation_steps must be >= 1")
        if self.amp_dtype not in _AMP_DTYPES:
            raise ValueError(f"amp_dtype must be one of {sorted(_AMP_DTYPES)}")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise ValueError("max_grad_norm must be positive or None")


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite without a gradient scaler to skip the step."""


@dataclass(frozen=True)
class Progress:
    epoch: int
    step: int
    micro_batch: int
    loss: float
    images_seen: int
    effective_batch_size: int


@dataclass(frozen=True)
class TrainResult:
    steps: int
    micro_batches: int
    final_loss: float | None
    stopped: bool


def effective_batch_size(micro_batch_size: int, accumulation_steps: int) -> int:
    """Samples whose gradients are averaged into one optimizer step."""
    if micro_batch_size < 1 or accumulation_steps < 1:
        raise ValueError("micro_batch_size and accumulation_steps must be >= 1")
    return micro_batch_size * accumulation_steps


def default_batch_size(batch: object) -> int:
    """Leading dimension of a tensor batch, or of the first tensor in a tuple/list/dict batch."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0])
    items: Iterable[object] = ()
    if isinstance(batch, Mapping):
        items = batch.values()
    elif isinstance(batch, Sequence) and not isinstance(batch, str | bytes):
        items = batch
    for item in items:
        if isinstance(item, torch.Tensor) and item.ndim > 0:
            return int(item.shape[0])
    raise TypeError("cannot infer the batch size; pass batch_size_of to train()")


def _amp_context(
    config: LoopConfig, device_type: str
) -> tuple[contextlib.AbstractContextManager[object], bool]:
    """The autocast context for the forward pass and whether fp16 needs a GradScaler."""
    if not config.amp:
        return contextlib.nullcontext(), False
    dtype = _AMP_DTYPES[config.amp_dtype]
    if device_type == "cpu" and dtype is torch.float16:
        # CPU fp16 autocast is slow and has no loss scaling; bf16 has fp32's range instead.
        logger.warning("fp16 autocast requested on cpu; using bf16 instead")
        dtype = torch.bfloat16
    needs_scaler = device_type == "cuda" and dtype is torch.float16
    return torch.autocast(device_type=device_type, dtype=dtype), needs_scaler


class _RunningMean:
    """Mean of micro-batch losses, summed on their device so only reading it syncs a GPU."""

    def __init__(self) -> None:
        # A 0-d CPU tensor adds to a CUDA tensor without a copy.
        self._total = torch.zeros((), dtype=torch.float64)
        self._count = 0

    def add(self, loss: torch.Tensor) -> None:
        self._total = self._total + loss.detach().to(torch.float64)
        self._count += 1

    def value(self) -> float:
        return float(self._total.item()) / self._count


def _parameters(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]


def _optimizer_step(
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    config: LoopConfig,
    group_size: int,
) -> None:
    if group_size != config.accumulation_steps:
        # Every micro-batch loss was divided by N; a partial group of r micro-batches therefore
        # holds sum/N, and N/r turns it into the mean over those r, like a full group.
        factor = config.accumulation_steps / group_size
        with torch.no_grad():
            for param in _parameters(optimizer):
                assert param.grad is not None
                param.grad.mul_(factor)
    if scaler is not None:
        if config.max_grad_norm is not None:
            # Clip the true gradients, not the loss-scaled ones.
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(_parameters(optimizer), config.max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
    else:
        if config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(_parameters(optimizer), config.max_grad_norm)
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def train(
    model_step: Callable[[BatchT], torch.Tensor],
    batches: Callable[[int], Iterable[BatchT]],
    optimizer: torch.optim.Optimizer,
    config: LoopConfig,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    device_type: str = "cpu",
    scaler: torch.amp.GradScaler | None = None,
    *,
    batch_size_of: Callable[[BatchT], int] = default_batch_size,
) -> TrainResult:
    """Run config.epochs epochs, stepping the optimizer once per accumulation group.

    model_step computes the mean loss of one micro-batch (forward only; it runs under
    autocast when AMP is on). Each micro-batch counts equally in its group, so micro-batches
    should have equal sizes. A trailing partial group is stepped at the end of every epoch,
    weighted as the mean of its own micro-batches. should_stop is checked before every
    micro-batch; on stop the pending partial group is dropped (no step), so the model holds
    exactly `steps` complete updates. on_progress is called after every optimizer step.
    """
    n = config.accumulation_steps
    autocast, needs_scaler = _amp_context(config, device_type)
    if scaler is None and needs_scaler:
        scaler = torch.amp.GradScaler(device_type)
    steps = micro_batches = images_seen = pending = 0
    final_loss: float | None = None
    epoch_loss = _RunningMean()
    last_size = 0

    def finish_group(epoch: int) -> None:
        nonlocal steps, pending, final_loss
        # Read before stepping (it syncs a GPU once per step, not per micro-batch): a NaN or
        # infinite loss would write NaN into every weight. A GradScaler skips such a step on
        # its own (fp16 overflow is routine), so only the unscaled path stops here.
        final_loss = epoch_loss.value()
        if scaler is None and not math.isfinite(final_loss):
            raise NonFiniteLoss(
                f"the training loss became {final_loss} by optimizer step {steps + 1} "
                f"(epoch {epoch + 1}); the model is unchanged by that step. Try a lower "
                "learning rate."
            )
        _optimizer_step(optimizer, scaler, config, pending)
        # What this step averaged: a trailing partial group holds fewer micro-batches.
        size = effective_batch_size(last_size, pending)
        steps += 1
        pending = 0
        if on_progress is not None:
            on_progress(Progress(epoch, steps, micro_batches, final_loss, images_seen, size))

    optimizer.zero_grad(set_to_none=True)
    for epoch in range(config.epochs):
        epoch_loss = _RunningMean()
        for batch in batches(epoch):
            if should_stop is not None and should_stop():
                return TrainResult(steps, micro_batches, final_loss, stopped=True)
            with autocast:
                loss = model_step(batch)
            scaled = loss / n
            # torch.autograd.backward is typed; Tensor.backward is not (mypy strict).
            torch.autograd.backward(scaler.scale(scaled) if scaler is not None else scaled)
            epoch_loss.add(loss)
            last_size = batch_size_of(batch)
            pending += 1
            micro_batches += 1
            images_seen += last_size
            if pending == n:
                finish_group(epoch)
        if pending:
            finish_group(epoch)
    return TrainResult(steps, micro_batches, final_loss, stopped=False)
