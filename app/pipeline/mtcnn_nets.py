"""facenet-pytorch's MTCNN, built for a device: channels-last, traced, padded on a GPU."""

from __future__ import annotations

import torch
from facenet_pytorch import MTCNN

from app.pipeline.shape_buckets import PaddedBatches
from app.pipeline.torchscript import trace_module

# On a GPU, MTCNN's nets run padded batches (app/pipeline/shape_buckets.py). R- and O-net
# get one row per candidate face, which facenet-pytorch sends 512 at most at a time: 6
# shapes each from 16 rows. P-net gets whole images of one size: 1, 2, 4, 8, ... of them.
# Sizes of the input image are left alone, so each new image size still costs its first
# pass per pyramid level.
_GPU_BUCKETS = {"pnet": (1, 8), "rnet": (16, 512), "onet": (16, 512)}
CROP_INPUTS = {"rnet": (3, 24, 24), "onet": (3, 48, 48)}

# Input shapes the three nets are traced and checked with: P-net takes whole pyramid levels.
_NET_EXAMPLES = {
    "pnet": ((1, 3, 31, 40), (2, 3, 17, 23)),
    "rnet": ((3, 3, 24, 24), (1, 3, 24, 24)),
    "onet": ((3, 3, 48, 48), (1, 3, 48, 48)),
}


def build_mtcnn(
    device: torch.device, min_face_size: int, torchscript: bool, pad_batches: bool | None
) -> MTCNN:
    """MTCNN keeping every face, with its nets made fast for `device`."""
    # MTCNN's P/R/O-net weights ship inside the wheel, so this never downloads.
    mtcnn = MTCNN(keep_all=True, select_largest=False, min_face_size=min_face_size, device=device)
    mtcnn.eval()
    if device.type == "cpu":
        # Its max-pooling is several times faster on NHWC tensors on the CPU: about
        # 2x for the whole detector at 250 px. Outputs are unchanged.
        for net in (mtcnn.pnet, mtcnn.rnet, mtcnn.onet):
            net.to(memory_format=torch.channels_last)
    if torchscript:
        _trace_nets(mtcnn, device)
    # None: pad on a GPU only, where padding rows cost next to nothing.
    if device.type == "cuda" if pad_batches is None else pad_batches:
        for name, (smallest, largest) in _GPU_BUCKETS.items():
            net = getattr(mtcnn, name)
            setattr(mtcnn, name, PaddedBatches(net, smallest, largest))
    return mtcnn


def _trace_nets(mtcnn: MTCNN, device: torch.device) -> None:
    """Swap MTCNN's P/R/O-nets for TorchScript traces of themselves (app/pipeline/torchscript.py).

    Not frozen: facenet-pytorch reads the dtype from P-net's parameters, which a trace
    shares with the net; a net that fails to trace stays as it is.
    """
    generator = torch.Generator().manual_seed(0)
    for name, shapes in _NET_EXAMPLES.items():
        net = getattr(mtcnn, name)
        examples = [torch.rand(shape, generator=generator).to(device) * 2 - 1 for shape in shapes]
        traced = trace_module(net, examples, freeze=False)
        if traced is not None:
            setattr(mtcnn, name, traced)
