"""The GIL: detection and embedding alone, and beside a Python thread that never blocks.

    .venv/bin/python -m benchmarks.contention
    .venv/bin/python -m benchmarks.contention --duration 2 --photos 8

In the service, request threads run Python (HTTP, decoding, the database) while the
networks run. Each way of running a network is timed alone, then beside one thread that
spins in pure Python, a stand-in for that work:
- embedding (arcface-mbf, batches of 8, the default precision): eager PyTorch, and the
  TorchScript copy embed() runs;
- detection (MTCNN on 250 px face crops, batches of 4): in this process with eager nets,
  with traced nets, and in the service's child process (`FACE_DETECTION_PROCESS`).
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import prepare_process, write_result

Work = Callable[[int], int]  # runs the i-th batch; returns the items it processed


def measure(work: Work, seconds: float, spinner: bool) -> dict[str, float]:
    """Items/s of `work` for `seconds`, alone or beside a spinning Python thread."""
    work(0)  # warm up
    stop = time.perf_counter() + seconds
    loops = [0]

    def spin() -> None:
        while time.perf_counter() < stop:
            for _ in range(1000):
                pass
            loops[0] += 1

    thread = threading.Thread(target=spin) if spinner else None
    if thread is not None:
        thread.start()
    start, done, i = time.perf_counter(), 0, 0
    while time.perf_counter() < stop:
        done += work(i)
        i += 1
    elapsed = time.perf_counter() - start
    if thread is not None:
        thread.join()
    return {"items_per_s": round(done / elapsed, 1), "spinner_kloops_per_s": loops[0] / elapsed}


def embedders(faces: list[np.ndarray]) -> dict[str, Work]:
    import torch

    from app.config import REPO_MODELS_DIR
    from app.pipeline.embedders import create_embedder

    works: dict[str, Work] = {}
    for name, torchscript in (("embed eager", False), ("embed torchscript", True)):
        embedder = create_embedder(
            "arcface-mbf",
            REPO_MODELS_DIR,
            torch.device("cpu"),
            precision="auto",
            torchscript=torchscript,
        )

        def work(i: int, embedder: Any = embedder) -> int:
            return len(embedder.embed(faces))

        works[f"{name} ({embedder.precision_name})"] = work
    return works


def detectors(images: list[np.ndarray], batch: int) -> dict[str, Work]:
    import torch

    from app.pipeline.detect import FaceDetector
    from app.pipeline.detect_process import DetectionProcess

    device = torch.device("cpu")
    eager = FaceDetector(device, 960, 32, torchscript=False)
    traced = FaceDetector(device, 960, 32, torchscript=True)
    child = FaceDetector(device, 960, 32, torchscript=True)
    process = DetectionProcess("cpu", 960, 32, True, threads=1)
    process.start()
    child.run_in(process)
    works: dict[str, Work] = {}
    for name, detector in (
        ("detect eager, in-process", eager),
        ("detect torchscript, in-process", traced),
        ("detect torchscript, child process", child),
    ):

        def work(i: int, detector: Any = detector) -> int:
            start = (i * batch) % len(images)
            chunk = images[start : start + batch] or images[:batch]
            detector.detect_batch(chunk)
            return len(chunk)

        works[name] = work
    return works


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--photos", type=int, default=40, help="shared photos to crop")
    parser.add_argument("--batch", type=int, default=4, help="images per detection batch")
    parser.add_argument("--out", type=Path, default=None, help="JSON path")
    args = parser.parse_args(argv)
    prepare_process(1)  # one torch thread, as the service runs on 2 cores

    import torch

    from app.pipeline.align import align_face
    from app.pipeline.detect import FaceDetector
    from app.pipeline.embedders.arcface import ArcfaceEmbedder
    from benchmarks.photos import decode, face_crops, shared_photos

    finder = FaceDetector(torch.device("cpu"), 960, 32, torchscript=False)
    images = [decode(c.data) for c in face_crops(shared_photos(args.photos), finder)]
    if not images:
        raise RuntimeError("no face crops")
    template = ArcfaceEmbedder.template
    faces = [align_face(img, finder.detect(img)[0].landmarks, template) for img in images[:8]]
    rows = []
    works = {**embedders(faces), **detectors(images, args.batch)}
    for name, work in works.items():
        alone = measure(work, args.duration, spinner=False)
        beside = measure(work, args.duration, spinner=True)
        row = {
            "name": name,
            "alone_per_s": alone["items_per_s"],
            "beside_spinner_per_s": beside["items_per_s"],
            "kept": round(beside["items_per_s"] / alone["items_per_s"], 3),
        }
        rows.append(row)
        print(
            f"{name:<36} alone {row['alone_per_s']:>7.1f}/s  beside a spinning thread "
            f"{row['beside_spinner_per_s']:>7.1f}/s  ({row['kept']:.0%})",
            flush=True,
        )
    config = {**vars(args), "crops": len(images), "switch_interval_s": 0.005, "out": None}
    write_result("contention", {"config": config, "rows": rows}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
