"""GPU fine-tuning: micro-batch x accumulation against one large batch, with and without AMP.

    .venv/bin/python -m benchmarks.finetune_gpu                  # skips cleanly without CUDA
    .venv/bin/python -m benchmarks.finetune_gpu --device cpu --effective 8 --micro 4 \\
        --steps 2 --layers head --photos 16                      # dry run

For each effective batch size E it trains arcface-mbf (ArcFace head, AdamW) for --steps
optimizer steps twice from the same start, on the same faces in the same order: once as
one batch of E, once as E/micro micro-batches of --micro accumulated into each step. It
reports images/s, ms per step and peak GPU memory of each, and how far the two runs'
weights end apart (BatchNorm statistics are frozen in training, so they should match up to
rounding). Meant to finish in a couple of minutes on one H100.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.gpu_setup import device_sync, load_gpu_models
from benchmarks.report import mark_start, write_result

CLASSES = 64


def aligned_faces(models: Any, count: int, photos: int | None) -> list[Any]:
    """Aligned crops of the shared photos' faces, repeated to `count`; random if unavailable."""
    from app.pipeline.analyzer import FacePipeline
    from app.pipeline.image_io import decode_image
    from app.pipeline.types import QualityLimits
    from benchmarks.photos import NoPhotos, shared_photos

    size = models.embedder.template.size
    try:
        pipeline = FacePipeline(models.detector, models.embedder, QualityLimits(0, 0.0, 0.0))
        crops: list[Any] = []
        for photo in shared_photos(photos):
            faces = pipeline.analyze(decode_image(photo.data, 100_000_000))
            crops.extend(face.aligned for face in faces[:1])
    except (OSError, NoPhotos):
        crops = []
    if not crops:
        rng = np.random.default_rng(0)
        crops = list(rng.integers(0, 255, (64, size, size, 3), dtype=np.uint8))
    return [crops[i % len(crops)] for i in range(count)]


def run(
    models: Any,
    faces: list[Any],
    effective: int,
    micro: int,
    steps: int,
    layers: str,
    amp: bool,
) -> tuple[dict[str, Any], Any]:
    """Train a fresh copy; returns the figures and the trained weights."""
    import torch
    import torch.nn.functional as F

    from app.training.heads import ArcFaceHead
    from app.training.layers import select_trainable, train_mode
    from app.training.loop import LoopConfig, train

    embedder = models.embedder
    device = embedder.device
    module = copy.deepcopy(embedder.module)
    torch.manual_seed(0)
    head = ArcFaceHead(embedder.embedding_dim, CLASSES).to(device)
    params = select_trainable(module, layers) + list(head.parameters())  # type: ignore[arg-type]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    accumulation = effective // micro
    config = LoopConfig(epochs=1, accumulation_steps=accumulation, amp=amp)
    labels = torch.arange(len(faces), device=device) % CLASSES

    def batches(_: int) -> Iterator[tuple[Any, Any]]:
        # One micro-batch on the device at a time, as the job's trainer does: all 10,240
        # faces preprocessed at once held 1.44 GiB in every peak figure until 2026-11-29.
        for start in range(0, steps * effective, micro):
            yield embedder.preprocess(faces[start : start + micro]), labels[start : start + micro]

    def step(batch: tuple[Any, Any]) -> Any:
        x, y = batch
        return F.cross_entropy(head(module(x), y), y)

    train_mode(module)
    sync = device_sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync()
    start = time.perf_counter()
    try:
        result = train(step, batches, optimizer, config, device_type=device.type)
    except torch.cuda.OutOfMemoryError:
        return {"micro_batch": micro, "accumulation": accumulation, "oom": True}, None
    sync()
    seconds = time.perf_counter() - start
    row = {
        "micro_batch": micro,
        "accumulation": accumulation,
        "amp": "bf16" if amp else "fp32",
        "steps": result.steps,
        "images_per_s": round(steps * effective / seconds, 1),
        "ms_per_step": round(1e3 * seconds / steps, 2),
        "final_loss": result.final_loss,
    }
    if device.type == "cuda":
        row["peak_memory_gb"] = round(torch.cuda.max_memory_allocated(device) / 1024**3, 3)
    weights = torch.cat([p.detach().float().flatten() for p in params])
    return row, weights


def main(argv: Sequence[str] | None = None) -> int:
    mark_start()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu for a dry run")
    parser.add_argument("--effective", default="256,1024", help="effective batch sizes")
    parser.add_argument("--micro", type=int, default=64, help="micro-batch size")
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per run")
    parser.add_argument("--layers", default="all", choices=("head", "last_block", "all"))
    parser.add_argument("--photos", type=int, default=None, help="use only the first N photos")
    parser.add_argument("--out", type=Path, default=None, help="JSON path")
    args = parser.parse_args(argv)
    config = {**vars(args), "out": None}
    models = load_gpu_models("finetune_gpu", args, config)
    if models is None:
        return 0
    import torch

    sizes = [int(s) for s in args.effective.split(",")]
    faces = aligned_faces(models, max(sizes) * args.steps, args.photos)
    result: dict[str, Any] = {"config": config, "faces": len(faces), "runs": []}
    if models.embedder.device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(models.embedder.device)
    for effective in sizes:
        for amp in (True, False):
            # A batch shape's first steps plan its kernels (seconds on an H200): warm both.
            for micro in (effective, args.micro):
                run(models, faces, micro, micro, 1, args.layers, amp)
            whole, whole_weights = run(
                models, faces, effective, effective, args.steps, args.layers, amp
            )
            split, split_weights = run(
                models, faces, effective, args.micro, args.steps, args.layers, amp
            )
            gap = None
            if whole_weights is not None and split_weights is not None:
                gap = float((whole_weights - split_weights).abs().max())
            entry = {"effective_batch": effective, "one_batch": whole, "accumulated": split}
            result["runs"].append(entry | {"max_weight_difference": gap})
            print(
                f"E={effective} {whole.get('amp', '')}: one batch {whole.get('images_per_s')} "
                f"img/s, {whole.get('peak_memory_gb')} GB; {split['accumulation']}x{args.micro} "
                f"{split.get('images_per_s')} img/s, {split.get('peak_memory_gb')} GB; "
                f"max |dw| {gap}",
                flush=True,
            )
    write_result("finetune_gpu", result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
