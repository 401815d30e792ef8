"""TorchScript copies of networks for inference, checked against the eager module."""

# A traced module runs its whole forward pass in C++ with the GIL released. Eager PyTorch
# comes back to Python after every operator and must take the GIL again each time; on a busy
# service, where request threads run Python (HTTP, decoding, the database), an eager model
# waits behind them, up to Python's 5 ms switch interval per operator. On 2 cores,
# embed() with arcface-mbf ran 109 faces/s eager and 129 traced alone; beside one Python
# thread that never blocks, 8 eager and 54 traced (benchmarks/contention.py).

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import torch
from torch.jit._trace import TracerWarning  # torch.jit.TracerWarning, not re-exported

log = logging.getLogger(__name__)

# Largest difference from the eager module, relative to its largest output, that a trace
# may show on the check inputs: float32 reorders sums; half formats round more.
_TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 2e-2, torch.float16: 5e-3}


def trace_module(
    module: torch.nn.Module, examples: Sequence[torch.Tensor], freeze: bool = True
) -> torch.jit.ScriptModule | None:
    """A traced (and, with `freeze`, frozen) copy of an eval-mode `module`, or None when it
    cannot be traced or its outputs differ from the eager module's on `examples`.

    Freezing inlines the weights as constants (so the copy no longer follows changes to
    `module`) and folds batch norms into convolutions.
    """
    if not examples:
        raise ValueError("tracing needs at least one example input")
    quiet_torch_jit()
    try:
        with torch.no_grad():
            traced: torch.jit.ScriptModule = torch.jit.trace(  # type: ignore[no-untyped-call]
                module, examples[0], check_trace=False
            )
            if freeze:
                traced = torch.jit.freeze(traced)
            for example in examples:
                check_outputs(module(example), traced(example))
    except Exception as error:  # any failure: the caller keeps the eager module
        log.warning("running %s eagerly: %s", type(module).__name__, error)
        return None
    return traced


def quiet_torch_jit() -> None:
    """Ignore, from now on, the warnings tracing (and loading a trace) raises: torch.jit is
    deprecated in favour of torch.compile (which needs a compiler at run time) and
    torch.export, and the TracerWarnings are about Python constants in onnx2torch's
    PReLU, which are constants indeed.

    Added for good (an identical filter replaces itself), not swapped in and out with
    warnings.catch_warnings: that swaps the process's whole filter list, so traces beside
    each other, or beside image_io.decode_image's own swap on a request thread, restored
    each other's lists. TracerWarnings then reached the log (a model swap traces while
    requests come in), and a stale list could leave the process ignoring every warning."""
    warnings.filterwarnings("ignore", category=TracerWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit")


def check_outputs(expected: object, actual: object) -> None:
    """Raise ValueError unless `actual` matches `expected` in shape, dtype, and values
    within the dtype's tolerance (a trace's, against the module it copies)."""
    want = _tensors(expected)
    got = _tensors(actual)
    if len(want) != len(got):
        raise ValueError(f"the trace returns {len(got)} outputs, not {len(want)}")
    for a, b in zip(want, got, strict=True):
        if a.shape != b.shape or a.dtype != b.dtype:
            found, wanted = f"{b.dtype} {tuple(b.shape)}", f"{a.dtype} {tuple(a.shape)}"
            raise ValueError(f"the trace returns {found}, not {wanted}")
        scale = a.float().abs().max().clamp_min(1e-6)
        error = float((a.float() - b.float()).abs().max() / scale)
        if error > _TOLERANCE.get(a.dtype, 1e-4):
            raise ValueError(f"the trace differs from the module by {error:.2e} of its range")


def _tensors(output: object) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in output):
        return list(output)
    raise TypeError(f"cannot compare outputs of type {type(output).__name__}")
