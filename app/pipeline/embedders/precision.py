"""The number format embedders infer in: fp32, or bf16/fp16 autocast where it pays."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from app.errors import ModelError

_DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def native_bf16(device: torch.device) -> bool:
    """Whether the device computes bf16 in hardware, rather than emulating it slowly."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    # AVX512-BF16 or AMX: Cooper Lake, Sapphire Rapids and later, Zen 4 and later.
    # torch.cpu's probes are private, so treat their absence as "no".
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def inference_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `precision` on `device`; None means plain fp32.

    auto picks bf16 where the hardware has it: about 2x faster embedding on such CPUs, with
    embeddings within 0.001 cosine of fp32 (docs/accuracy.md), and fp32 elsewhere.
    """
    if precision == "auto":
        return torch.bfloat16 if native_bf16(device) else None
    if precision not in _DTYPES:
        raise ModelError(f"unknown precision {precision!r}; use auto, fp32, bf16 or fp16")
    return _DTYPES[precision]


def precision_name(dtype: torch.dtype | None) -> str:
    return next(name for name, value in _DTYPES.items() if value == dtype)


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """Autocast to `dtype` on `device`, or nothing at all for fp32."""
    if dtype is None:
        yield
        return
    with torch.autocast(device.type, dtype=dtype):
        yield
