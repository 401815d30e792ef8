"""Our request path (decode, detect, align, embed) run in-process from a pool of threads."""

from __future__ import annotations

import time
from typing import Any

from benchmarks.photos import Photo


def settings_for(env: dict[str, str], **fields: Any) -> Any:
    """Settings from FACE_* overrides such as benchmarks.service.CONFIGS entries."""
    from app.config import Settings

    overrides = {key.removeprefix("FACE_").lower(): value for key, value in env.items()}
    return Settings(**{**overrides, **fields})


def run_pipeline(models: Any, inputs: list[Photo], settings: Any) -> dict[str, Any]:
    """embed_probes over every input from the service's inference threads, with the
    pipeline and torch threads the service would build from `settings`."""
    import torch

    from app.errors import FaceServiceError
    from app.services.inference_pool import InferencePool
    from app.services.probes import Upload, embed_probes
    from app.services.runtime import build_pipeline
    from app.services.threads import inference_workers

    stages: dict[str, float] = {}

    class StageTotals:
        def stage_seconds(self, stage: str, seconds: float) -> None:
            stages[stage] = stages.get(stage, 0.0) + seconds

        def batch_items(self, lane: str, items: int) -> None:
            pass  # the batchers' own stats give the mean batch below

    # The service's pool: it counts running calls, and a batch stops waiting for company
    # once every running call is in it.
    pool = InferencePool(inference_workers(settings))
    pipeline = build_pipeline(settings, models, StageTotals(), pool.running)

    def one(photo: Photo) -> bool:
        try:
            embed_probes(pipeline, settings, [Upload(photo.path, photo.data)], "prominent")
        except FaceServiceError:
            return False
        return True

    threads = torch.get_num_threads()
    torch.set_num_threads(settings.torch_threads or threads)
    try:
        for photo in inputs[:2]:
            one(photo)
        stages.clear()
        start, cpu = time.perf_counter(), time.process_time()
        found = sum(future.result() for future in [pool.submit(one, p) for p in inputs])
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        pool.shutdown()
        torch.set_num_threads(threads)
    result = rate(len(inputs), seconds, cpu, found)
    result["stage_ms_per_image"] = {k: round(v * 1000 / len(inputs), 2) for k, v in stages.items()}
    batchers = {name: getattr(pipeline, f"{name}_batcher", None) for name in ("detect", "embed")}
    result["mean_batch"] = {
        name: round(b.stats.items / max(1, b.stats.batches), 2)
        for name, b in batchers.items()
        if b is not None
    }
    return result


def rate(images: int, seconds: float, cpu_seconds: float, faces: int) -> dict[str, Any]:
    return {
        "images": images,
        "faces_found": faces,
        "seconds": round(seconds, 2),
        "images_per_s": round(images / seconds, 2),
        # CPU per image is steadier than wall-clock figures on a shared machine.
        "cpu_ms_per_image": round(cpu_seconds * 1000 / images, 2),
    }
