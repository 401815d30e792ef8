"""Figure 5: GPU figures: embedder faces/s by batch size and precision, MTCNN and end to end.

    .venv/bin/python -m benchmarks.gpu                  # skips cleanly without CUDA
    .venv/bin/python -m benchmarks.gpu --device cpu --sizes 1,4 --images 8   # dry run

Meant to finish in a few minutes on one H100.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.gpu_setup import device_sync, load_gpu_models
from benchmarks.photos import load_photos, repeat_to
from benchmarks.report import mark_start, write_result


def timed_rate(work: Callable[[], object], sync: Callable[[], None], min_s: float) -> float:
    """Seconds per call of `work`, after one warm-up, over at least `min_s` and 3 calls."""
    work()
    sync()
    runs, start = 0, time.perf_counter()
    while runs < 3 or time.perf_counter() - start < min_s:
        work()
        runs += 1
    sync()
    return (time.perf_counter() - start) / runs


def random_crops(models: Any, count: int, seed: int) -> list[Any]:
    """`count` random uint8 crops of the embedder's input size."""
    size = models.embedder.template.size
    return list(np.random.default_rng(seed).integers(0, 255, (count, size, size, 3), np.uint8))


def embedder_rows(
    models: Any, sizes: Sequence[int], dtypes: Sequence[str], min_s: float, sync: Callable[[], None]
) -> list[dict[str, Any]]:
    from app.config import Settings
    from app.pipeline.embedders import create_embedder

    served = models.embedder
    crops = random_crops(models, max(sizes), seed=0)
    rows = []
    outputs: dict[str, Any] = {}
    for dtype in dtypes:
        # An embedder of its own per precision, frozen as the service's is (no walk over the
        # weights at every call). Setting `precision` on one embedder between rows ran the
        # first row's trace in every row until 2026-11-29.
        embedder = create_embedder(
            served.name, Settings().models_dir, served.device, precision=dtype
        )
        embedder.freeze_for_serving()
        for batch in sizes:

            def work(batch: int = batch, embedder: Any = embedder) -> None:
                embedder.embed(crops[:batch])

            seconds = timed_rate(work, sync, min_s)
            rows.append(
                {
                    "dtype": dtype,
                    "batch": batch,
                    "ms_per_batch": round(seconds * 1e3, 3),
                    "faces_per_s": round(batch / seconds, 1),
                }
            )
            print(f"embed {dtype} batch {batch:>3}: {batch / seconds:>9.1f} faces/s", flush=True)
        outputs[dtype] = embedder.embed(crops[:2])
    # Each precision rounds differently: rows that agree to the bit ran one precision.
    same = [(a, b) for a in outputs for b in outputs if a < b and (outputs[a] == outputs[b]).all()]
    if same:
        raise RuntimeError(f"these precisions gave identical embeddings: {same}")
    return rows


def cold_shape_rows(
    models: Any, sizes: Sequence[int], sync: Callable[[], None]
) -> list[dict[str, Any]]:
    """embed() at batch sizes not run before: the first call against the next three.

    A GPU library may plan or compile kernels per input shape; micro-batching makes a new
    shape whenever a batch of a new size forms."""
    crops = random_crops(models, max(sizes), seed=1)
    rows = []
    for batch in sizes:
        times = []
        for _ in range(4):
            sync()
            start = time.perf_counter()
            models.embedder.embed(crops[:batch])
            sync()
            times.append(time.perf_counter() - start)
        first, warm = times[0] * 1e3, float(np.median(times[1:])) * 1e3
        rows.append({"batch": batch, "first_ms": round(first, 2), "warm_ms": round(warm, 2)})
        print(f"embed new batch {batch:>3}: first {first:>8.1f} ms, then {warm:.1f} ms", flush=True)
    return rows


def detector_rows(
    models: Any, photos: list[Any], batches: Sequence[int], min_s: float, sync: Callable[[], None]
) -> list[dict[str, Any]]:
    """MTCNN images/s on equal-size images, one call per batch (as the micro-batcher does)."""
    from app.pipeline.image_io import decode_image

    item = models.detector.prepare(decode_image(photos[0].data, 100_000_000))
    image = item.image
    rows = []
    for batch in batches:
        seconds = timed_rate(partial(models.detector.run, [item] * batch), sync, min_s)
        rows.append(
            {
                "image": list(image.shape[:2]),
                "batch": batch,
                "images_per_s": round(batch / seconds, 1),
            }
        )
        print(
            f"mtcnn {image.shape[1]}x{image.shape[0]} batch {batch:>3}: "
            f"{batch / seconds:>8.1f} images/s",
            flush=True,
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    mark_start()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu for a dry run")
    parser.add_argument("--sizes", default="1,2,4,8,16,32,64,128,256", help="embedder batches")
    parser.add_argument("--dtypes", default="fp32,bf16,fp16")
    parser.add_argument("--detect-batches", default="1,4,16,32")
    parser.add_argument("--images", type=int, default=1000, help="images per end-to-end run")
    parser.add_argument(
        "--workers", default="4,16", help="thread counts of the batched end-to-end runs"
    )
    parser.add_argument(
        "--cold-sizes", default="3,5,7,12,24,48", help="embedder batches not in --sizes"
    )
    parser.add_argument(
        "--no-warmup",
        action="store_true",
        help="skip the service's GPU warm-up (FACE_GPU_WARMUP) before the timed figures",
    )
    parser.add_argument("--min-seconds", type=float, default=0.5, help="per timed figure")
    parser.add_argument("--photos", type=int, default=None, help="use only the first N photos")
    parser.add_argument("--out", type=Path, default=None, help="JSON path")
    args = parser.parse_args(argv)
    config = {**vars(args), "out": None}
    models = load_gpu_models("gpu", args, config)
    if models is None:
        return 0
    import torch

    from benchmarks.inprocess import run_pipeline, settings_for

    device = torch.device(args.device)
    sync = device_sync(device)
    result: dict[str, Any] = {"config": config}
    if device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(device)
    result["end_to_end_precision"] = models.embedder.precision_name
    # Before any figure: without photos the run stops here, not after minutes of device time.
    photo_sets = {crop: load_photos(crop, args.photos, models.detector) for crop in (250, 0)}
    sizes = [int(s) for s in args.sizes.split(",")]
    cold = [int(s) for s in args.cold_sizes.split(",") if s]
    # The trace first, timed on its own: otherwise the first new-shape row carried it (an
    # audit: 2.5-3.3 s there against about 1 s a new shape).
    started = time.perf_counter()
    models.embedder.inference_runner()
    sync()
    result["embedder_trace_s"] = round(time.perf_counter() - started, 2)
    result["embedder_new_shapes"] = cold_shape_rows(models, cold, sync)
    # As the service runs it from here on: no walk over the weights at every call (about
    # 0.3 ms, a tenth of a small GPU batch).
    models.embedder.freeze_for_serving()
    if not args.no_warmup:
        # As the service does before it serves: every padded batch size met once, so the
        # figures below time warm passes (app/pipeline/shape_buckets.py).
        from app.services.loaded_models import warm_up

        started = time.perf_counter()
        warm_up(models)
        result["warmup_s"] = round(time.perf_counter() - started, 2)
        print(f"warm-up: {result['warmup_s']} s", flush=True)
    result["embedder"] = embedder_rows(
        models, sizes, args.dtypes.split(","), args.min_seconds, sync
    )
    modes = [("sequential", 1, 1)]
    modes += [(f"batched_{w}", int(w), 64) for w in args.workers.split(",") if w]
    end_to_end = {}
    for crop, photos in photo_sets.items():
        label = f"{crop}px" if crop else "photos"
        batches = [int(b) for b in args.detect_batches.split(",")]
        result[f"mtcnn_{label}"] = detector_rows(models, photos, batches, args.min_seconds, sync)
        inputs = repeat_to(photos, args.images)
        for mode, workers, batch in modes:
            settings = settings_for({}, inference_workers=workers, batch_max_size=batch)
            row = run_pipeline(models, inputs, settings)
            end_to_end[f"{label}_{mode}"] = row
            print(f"end to end {label} {mode}: {row['images_per_s']:.1f} images/s", flush=True)
    result["end_to_end"] = end_to_end
    write_result("gpu", result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
