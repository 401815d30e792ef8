"""Inference threads, torch threads and micro-batch sizes where the settings leave it open."""

# Light on purpose (torch loads only to ask whether CUDA is there): `python -m app serve`
# reads it before its heavy imports, to start the detection process early.

from __future__ import annotations

import os

from app.config import Settings

# Inference threads when FACE_INFERENCE_WORKERS is 0 (auto), by device type. On the CPU,
# 16 lets every request of 16 clients reach the batching lanes: on 2 cores, with detection
# in its own process, the bigger batches cost less CPU a request, and 16 served 7-11% more
# than 8 in three interleaved comparisons on 2026-11-28 (16-client p99 288 against 325 ms
# for verify; docs/benchmarks.md, section 2). The decoded images they hold are bounded by
# FACE_MAX_PIXELS_IN_FLIGHT, whatever the thread count. On an H200, with every CUDA pass on
# one device thread, 8 threads served 16 clients at 58-60 verifies/s against 39 for one
# thread, and 16 threads were no faster than 8 (section 5).
CPU_WORKERS = 16
GPU_WORKERS = 8

# Most items per micro-batch when FACE_BATCH_MAX_SIZE is 0 (auto). On 2 CPU cores, batches
# of up to 4 had the lower 16-client p99 than 8 in 7 of 8 interleaved comparisons (by
# 6-17%), at the same throughput: a request that arrives during a batch of 8 detections
# waits about 100 ms for it (docs/benchmarks.md, section 2). On an H200, 8 (measured) served 16
# clients 1.5x faster than one thread; 4 was not tried there.
CPU_BATCH = 4
GPU_BATCH = 8


def inference_workers(settings: Settings, gpu: bool | None = None) -> int:
    """The setting, else CPU_WORKERS or GPU_WORKERS for the device the models will use
    (`gpu`, or found from settings.device when None)."""
    return _by_device(settings.inference_workers, CPU_WORKERS, GPU_WORKERS, settings, gpu)


def batch_max_size(settings: Settings, gpu: bool | None = None) -> int:
    """The setting, else CPU_BATCH or GPU_BATCH, as for inference_workers."""
    return _by_device(settings.batch_max_size, CPU_BATCH, GPU_BATCH, settings, gpu)


def _by_device(value: int, cpu: int, gpu_value: int, settings: Settings, gpu: bool | None) -> int:
    """`value` where set (non-zero), else the CPU's or the GPU's default."""
    if value:
        return value
    if gpu is None:
        gpu = uses_gpu(settings.device)
    return gpu_value if gpu else cpu


def uses_gpu(device: str) -> bool:
    """Whether FACE_DEVICE names, or auto finds, a CUDA device."""
    if device.startswith("cuda"):
        return True
    if device != "auto":
        return False
    import torch

    return torch.cuda.is_available()


def torch_threads(settings: Settings, serving: bool, gpu: bool | None = None) -> int:
    """Intra-op threads: the setting, else one share of the cores per inference worker."""
    if settings.torch_threads:
        return settings.torch_threads
    cores = os.cpu_count() or 1
    if serving:
        # Each worker runs its own (micro-batched) passes; one pool per worker sized to its
        # share keeps the cores busy without the pools spinning against each other.
        return max(1, cores // inference_workers(settings, gpu))
    return cores
