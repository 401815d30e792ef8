"""A few fixed batch sizes for the networks' passes on a GPU."""

# On an H200 (torch 2.11, cuDNN 9), the first embedder pass at a batch size not seen before
# took about 1 s, eager or TorchScript alike, and later ones 3-4 ms (docs/benchmarks.md,
# section 5). Micro-batching makes a new batch size whenever a batch of a new size forms,
# and MTCNN's second and third stages see a new one with every new number of candidates.
# Padding each batch with zero rows up to a bucket (a power of two, from a floor) bounds the
# sizes a process ever sees, and `warm_up` can meet them all before serving. On the GPU a
# pass costs about the same up to 16 rows, so the padding is nearly free; on the CPU it is
# not, and nothing is padded there.

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def bucket(rows: int, smallest: int) -> int:
    """The smallest power of two that holds `rows`, and at least `smallest`."""
    size = max(1, smallest)
    while size < rows:
        size *= 2
    return size


def buckets(smallest: int, largest: int) -> list[int]:
    """Every bucket from `smallest` up to the one that holds `largest`."""
    sizes = [bucket(1, smallest)]
    while sizes[-1] < largest:
        sizes.append(sizes[-1] * 2)
    return sizes


def pad_rows(batch: torch.Tensor, rows: int) -> torch.Tensor:
    """`batch` with zero rows added at the end to make `rows` rows."""
    missing = rows - batch.shape[0]
    if missing <= 0:
        return batch
    filler = batch.new_zeros((missing, *batch.shape[1:]))
    return torch.cat([batch, filler.contiguous(memory_format=_memory_format(batch))])


def _memory_format(batch: torch.Tensor) -> torch.memory_format:
    if batch.dim() == 4 and batch.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def run_padded(run: Callable[[torch.Tensor], Any], batch: torch.Tensor, smallest: int) -> Any:
    """`run(batch)`, run on the batch padded to its bucket, with the padding rows cut off
    every output (a tensor, or a tuple of tensors)."""
    rows = batch.shape[0]
    output = run(pad_rows(batch, bucket(rows, smallest)))
    if isinstance(output, torch.Tensor):
        return output[:rows]
    return tuple(part[:rows] for part in output)


class PaddedBatches(torch.nn.Module):
    """Wraps a network so that every call runs at a bucketed batch size.

    Rows are independent in inference (no batch statistics), so the real rows' outputs are
    the same as unpadded, to floating-point rounding.
    """

    def __init__(self, net: torch.nn.Module, smallest: int, largest: int) -> None:
        super().__init__()
        self.net = net
        self.smallest = smallest
        # The largest batch the caller sends (facenet-pytorch cuts R/O-net input at 512).
        self.largest = largest
        self.train(net.training)  # a wrapper built around an eval-mode net stays in eval mode

    def forward(self, batch: torch.Tensor) -> Any:
        return run_padded(self.net, batch, self.smallest)

    def warm_up(self, shape: tuple[int, ...]) -> list[int]:
        """One pass at every bucket up to `largest`, for inputs of `shape` (less the batch)
        on the net's own device and dtype; the batch sizes run."""
        weight = next(self.net.parameters())
        sizes = buckets(self.smallest, self.largest)
        with torch.inference_mode():
            for rows in sizes:
                self.net(weight.new_zeros((rows, *shape)))
        return sizes
