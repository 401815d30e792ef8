"""Start-up shared by the GPU benchmarks: skip cleanly without CUDA, load models, sync."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial
from typing import Any

from benchmarks.report import prepare_process, write_result


def load_gpu_models(name: str, args: argparse.Namespace, config: dict[str, Any]) -> Any | None:
    """arcface-mbf and MTCNN on --device; None, with a skipped result written, without CUDA."""
    prepare_process(None)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("skipped: no CUDA device")
        write_result(name, {"config": config, "skipped": "no CUDA device"}, args.out)
        return None

    from app.config import Settings
    from app.services.loaded_models import load_models

    return load_models(Settings(embedder="arcface-mbf", device=args.device))


def device_sync(device: Any) -> Callable[[], None]:
    """Waits for the work queued on a CUDA device, so timings include it; no-op elsewhere."""
    import torch

    if device.type == "cuda":
        return partial(torch.cuda.synchronize, device)
    return lambda: None
