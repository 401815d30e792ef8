"""The benchmarks' named service configurations say what the docs say they are."""

from __future__ import annotations

from app.services.threads import CPU_BATCH, CPU_WORKERS, GPU_BATCH, GPU_WORKERS
from benchmarks.service import CONFIGS


def test_the_default_configurations_are_the_shipped_defaults() -> None:
    """gpu-batched inherited the CPU's 16 threads when those became the CPU default, so a
    rerun would have measured something other than the GPU's defaults it is documented as."""
    cpu, gpu = CONFIGS["batched"], CONFIGS["gpu-batched"]
    assert (cpu["FACE_INFERENCE_WORKERS"], cpu["FACE_BATCH_MAX_SIZE"]) == (
        str(CPU_WORKERS),
        str(CPU_BATCH),
    )
    assert (gpu["FACE_INFERENCE_WORKERS"], gpu["FACE_BATCH_MAX_SIZE"], gpu["FACE_DEVICE"]) == (
        str(GPU_WORKERS),
        str(GPU_BATCH),
        "cuda",
    )
