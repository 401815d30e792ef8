"""Figure 2: verify and identify latency with 1, 4 and 16 concurrent clients over HTTP.

    .venv/bin/python -m benchmarks.latency
    .venv/bin/python -m benchmarks.latency --configs unbatched,batched --duration 15

Each configuration (service settings in benchmarks/service.py) gets a fresh service process
on a temporary data folder with a small enrolled gallery; probes are 250 px face crops.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from benchmarks.photos import Photo, load_photos
from benchmarks.report import prepare_process, write_result

Request = tuple[str, dict[str, Any], dict[str, str]]


def requests_for(endpoint: str, probes: list[Photo], gallery: dict[str, str]) -> Any:
    """A request factory: each client walks the probes from its own starting point."""
    subject_ids = list(gallery.values())

    def make(client: int, i: int) -> Request:
        n = client * 7919 + i
        probe = probes[n % len(probes)]
        files = {"image": ("probe.jpg", probe.data, "image/jpeg")}
        if endpoint == "identify":
            return "/v1/identify", files, {}
        # A genuine pair when the probe's identity is enrolled, else an impostor pair.
        subject_id = gallery.get(probe.identity, subject_ids[n % len(subject_ids)])
        return "/v1/verify", files, {"subject_id": subject_id}

    return make


def measure_config(
    config: str, photos: list[Photo], args: argparse.Namespace, threads: int
) -> list[dict[str, Any]]:
    from benchmarks.load import run_load
    from benchmarks.service import CONFIGS, ServiceProcess, enrol_gallery

    env = {"FACE_TORCH_THREADS": str(threads), **CONFIGS[config]}
    rows = []
    with tempfile.TemporaryDirectory() as tmp, ServiceProcess(Path(tmp), env) as service:
        precision = httpx.get(f"{service.url}/v1/info").json()["precision"]
        gallery = enrol_gallery(service.url, photos, args.subjects)
        if not gallery:
            raise RuntimeError("no face could be enrolled")
        for endpoint in args.endpoints.split(","):
            make = requests_for(endpoint, photos, gallery)
            for clients in (int(c) for c in args.clients.split(",")):
                run_load(service.url, make, clients, args.warmup)
                load = run_load(
                    service.url, make, clients, args.duration, service.cpu_seconds
                ).summary()
                row = {"config": config, "precision": precision, "endpoint": endpoint, **load}
                rows.append(row)
                print(_line(row), flush=True)
    return rows


def _line(row: dict[str, Any]) -> str:
    return (
        f"{row['config']:<10} {row['endpoint']:<9} {row['clients']:>3} clients: "
        f"{row['throughput_rps']:>6.1f} req/s  p50 {row['p50_ms']:>7.1f}  "
        f"p95 {row['p95_ms']:>7.1f}  p99 {row['p99_ms']:>7.1f} ms  errors {row['errors']}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="unbatched,threads,batched")
    parser.add_argument("--endpoints", default="verify,identify")
    parser.add_argument("--clients", default="1,4,16", help="concurrent clients, comma-separated")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before each one")
    parser.add_argument("--crop", type=int, default=250, help="probe size; 0: photos as they are")
    parser.add_argument("--photos", type=int, default=None, help="use only the first N photos")
    parser.add_argument("--subjects", type=int, default=20, help="gallery size")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (all cores)")
    parser.add_argument("--out", type=Path, default=None, help="JSON path")
    args = parser.parse_args(argv)
    threads = prepare_process(args.threads)

    import torch

    from app.pipeline.detect import FaceDetector

    photos = load_photos(args.crop, args.photos, FaceDetector(torch.device("cpu"), 960))
    rows = [
        row for c in args.configs.split(",") for row in measure_config(c, photos, args, threads)
    ]
    errors = sum(row["errors"] for row in rows)
    print(f"{len(rows)} measurements, {errors} errors")
    config = {**vars(args), "threads": threads, "probes": len(photos), "out": None}
    write_result("latency", {"config": config, "rows": rows}, args.out)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
