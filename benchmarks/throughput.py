"""Figure 1: end-to-end images/s (decode, detect, align, embed), ours against a naive loop.

.venv/bin/python -m benchmarks.throughput                # the shared photos as they are
.venv/bin/python -m benchmarks.throughput --crop 250     # 250 x 250 face crops, plus HTTP
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.inprocess import rate, run_pipeline, settings_for
from benchmarks.photos import Photo, load_photos, repeat_to
from benchmarks.report import prepare_process, write_result


def naive_loop(inputs: list[Photo]) -> dict[str, Any]:
    """facenet-pytorch's README loop: MTCNN then InceptionResnetV1, one image at a time.

    InceptionResnetV1 has random weights (the pretrained ones cannot be downloaded here);
    its speed does not depend on them.
    """
    import torch
    from facenet_pytorch import MTCNN, InceptionResnetV1
    from PIL import Image

    mtcnn = MTCNN(device="cpu")
    resnet = InceptionResnetV1(pretrained=None).eval()

    def one(photo: Photo) -> bool:
        image = Image.open(io.BytesIO(photo.data)).convert("RGB")
        with torch.inference_mode():
            face = mtcnn(image)
            if face is None:
                return False
            resnet(face.unsqueeze(0))
        return True

    for photo in inputs[:2]:
        one(photo)
    start, cpu = time.perf_counter(), time.process_time()
    found = sum(one(photo) for photo in inputs)
    return rate(len(inputs), time.perf_counter() - start, time.process_time() - cpu, found)


MODES_HELP = (
    "naive and/or service configs of benchmarks/service.py, run in-process (configs that "
    "set a model setting, such as the precision, only over HTTP: --http)"
)
# Settings that shape the loaded models, not the pipeline: the in-process modes share one
# set of models, so a mode setting them would run without them (an audit found the modes
# batched-fp32, batched-eager and batched-in-process all ran the same models).
MODEL_SETTINGS = frozenset(
    {
        "FACE_EMBEDDER",
        "FACE_EMBED_PRECISION",
        "FACE_TORCHSCRIPT",
        "FACE_DETECTION_PROCESS",
        "FACE_DEVICE",
        "FACE_MIN_FACE_SIZE",
        "FACE_DETECT_MAX_SIDE",
    }
)


def in_process_modes(modes: str, configs: dict[str, dict[str, str]]) -> list[str]:
    """The --modes to run, refusing a config that sets a model setting (ValueError)."""
    chosen = [mode for mode in modes.split(",") if mode]
    for mode in chosen:
        if mode != "naive" and MODEL_SETTINGS & set(configs[mode]):
            found = ", ".join(sorted(MODEL_SETTINGS & set(configs[mode])))
            raise ValueError(f"{mode} sets {found}, which in-process modes share: use --http")
    return chosen


def http_run(inputs: list[Photo], config: str, clients: int, duration: float) -> dict[str, Any]:
    """Identify requests over HTTP to a real service process, `clients` at a time."""
    from benchmarks.load import run_load
    from benchmarks.service import CONFIGS, ServiceProcess, enrol_gallery

    env = {"FACE_TORCH_THREADS": os.environ["FACE_TORCH_THREADS"], **CONFIGS[config]}

    with tempfile.TemporaryDirectory() as tmp, ServiceProcess(Path(tmp), env) as svc:
        enrol_gallery(svc.url, inputs, subjects=10)

        def request(client: int, i: int) -> tuple[str, dict[str, Any], dict[str, str]]:
            photo = inputs[(client * 7919 + i) % len(inputs)]
            return "/v1/identify", {"image": ("probe.jpg", photo.data, "image/jpeg")}, {}

        run_load(svc.url, request, clients, min(2.0, duration))  # warm-up
        load = run_load(svc.url, request, clients, duration, svc.cpu_split).summary()
    load["images_per_s"] = load["throughput_rps"]
    return {"config": config, "settings": CONFIGS[config], **load}


def embedder_sweep(models: Any, photos: list[Photo], sizes: Sequence[int]) -> list[dict[str, Any]]:
    """Faces/s of arcface-mbf alone at each batch size, on real aligned faces."""
    from app.config import Settings
    from app.pipeline.analyzer import FacePipeline
    from app.pipeline.image_io import decode_image
    from app.services.runtime import quality_limits

    pipeline = FacePipeline(models.detector, models.embedder, quality_limits(Settings()))
    crops = []
    for photo in photos[:32]:
        faces = pipeline.analyze(decode_image(photo.data, 100_000_000))
        crops += [faces[0].aligned] if faces else []
    rows = []
    for size in sizes:
        batch = [crops[i % len(crops)] for i in range(size)]
        models.embedder.embed(batch)
        runs, start = 0, time.perf_counter()
        while runs < 3 or time.perf_counter() - start < 1.0:
            models.embedder.embed(batch)
            runs += 1
        seconds = (time.perf_counter() - start) / runs
        rows.append(
            {
                "batch": size,
                "ms_per_batch": round(seconds * 1000, 2),
                "faces_per_s": round(size / seconds, 1),
            }
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500, help="images per mode (photos repeat)")
    parser.add_argument("--crop", type=int, default=0, help="face crops of this size; 0: as is")
    parser.add_argument("--photos", type=int, default=None, help="use only the first N photos")
    parser.add_argument("--modes", default="naive,unbatched,threads,batched", help=MODES_HELP)
    parser.add_argument("--http", default="", help="service configs to load over HTTP too")
    parser.add_argument("--clients", type=int, default=4, help="HTTP clients")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per HTTP run")
    parser.add_argument("--http-repeats", type=int, default=1, help="HTTP runs per config")
    parser.add_argument("--sweep", default="1,2,4,8,16,32,64", help="embedder batch sizes")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (all cores)")
    parser.add_argument("--out", type=Path, default=None, help="JSON path")
    args = parser.parse_args(argv)
    threads = prepare_process(args.threads)

    from app.services.loaded_models import load_models
    from app.services.runtime import configure_threads
    from benchmarks.service import CONFIGS

    try:
        modes = in_process_modes(args.modes, CONFIGS)
    except (KeyError, ValueError) as error:
        parser.error(str(error))
    settings = settings_for({}, embedder="arcface-mbf", device="cpu", torch_threads=threads)
    configure_threads(settings)
    models = load_models(settings)
    # As the service runs it: traced now, and no walk over the weights at every call.
    models.embedder.freeze_for_serving()
    photos = load_photos(args.crop, args.photos, models.detector)
    inputs = repeat_to(photos, args.images)
    results: dict[str, Any] = {}
    for mode in modes:
        if mode == "naive":
            results[mode] = naive_loop(inputs)
        else:
            results[mode] = run_pipeline(models, inputs, settings_for(CONFIGS[mode]))
        print(f"{mode:<18} {results[mode]['images_per_s']:>7.2f} images/s", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {}
    for _ in range(args.http_repeats):  # interleaved, so a busy spell hits every config
        for config in filter(None, args.http.split(",")):
            runs.setdefault(config, []).append(
                http_run(inputs, config, args.clients, args.duration)
            )
    for config, done in runs.items():
        median = sorted(done, key=lambda r: r["images_per_s"])[len(done) // 2]
        results[f"http_{config}"] = {
            **median,
            "runs_images_per_s": [r["images_per_s"] for r in done],
        }
        print(f"http_{config:<13} {median['images_per_s']:>7.2f} images/s (median of {len(done)})")
    if "naive" in results:
        for mode, row in results.items():
            print(f"{mode}: {row['images_per_s'] / results['naive']['images_per_s']:.2f}x naive")
    sweep = [int(s) for s in args.sweep.split(",") if s]
    sweep_rows = embedder_sweep(models, photos, sweep) if sweep else []
    for row in sweep_rows:
        print(f"embed batch {row['batch']:>3}: {row['faces_per_s']:>7.1f} faces/s")
    label = f"{args.crop}px" if args.crop else "photos"
    config = {**vars(args), "threads": threads, "unique_photos": len(photos), "out": None}
    output = {"config": config, "service_configs": CONFIGS, "modes": results}
    write_result(f"throughput_{label}", {**output, "embedder_sweep": sweep_rows}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
