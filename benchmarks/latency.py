"""Figure 2: verify and identify latency with 1, 4 and 16 concurrent clients over HTTP.

    .venv/bin/python -m benchmarks.latency
    .venv/bin/python -m benchmarks.latency --configs unbatched,batched --duration 50 --rounds 5
    git worktree add /tmp/base <commit>   # then, the same settings from two versions:
    .venv/bin/python -m benchmarks.latency --configs batched --baseline /tmp/base --rounds 6

Each configuration (service settings in benchmarks/service.py) gets a fresh service process
on a temporary data folder with a small enrolled gallery; probes are 250 px face crops. The
services run side by side, and with --rounds each measurement alternates between them.
"""

from __future__ import annotations

import argparse
import contextlib
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


def service_trees(configs: list[str], baseline: Path | None) -> dict[str, tuple[str, Path]]:
    """Each service to start: its label -> (configuration, checkout). With a baseline,
    every configuration also runs from that checkout, labelled "<config>@baseline"."""
    from benchmarks.photos import REPO
    from benchmarks.service import CONFIGS

    unknown = [config for config in configs if config not in CONFIGS]
    if unknown:
        raise ValueError(f"unknown configurations {unknown}; known: {sorted(CONFIGS)}")
    trees = {config: (config, REPO) for config in configs}
    if baseline is not None:
        trees.update({f"{config}@baseline": (config, baseline) for config in configs})
    return trees


def measure(photos: list[Photo], args: argparse.Namespace, threads: int) -> list[dict[str, Any]]:
    """Every configuration's service runs side by side; each cell (endpoint, clients) is
    measured in `args.rounds` rounds that alternate between the configurations, so a
    machine whose speed drifts (shared VMs do, by up to 20% within minutes) favours none.
    """
    from benchmarks.load import LoadResult, run_load
    from benchmarks.service import CONFIGS, ServiceProcess, enrol_gallery

    trees = service_trees(args.configs.split(","), args.baseline)
    configs = list(trees)
    rows = []
    with contextlib.ExitStack() as stack:
        services, precisions, galleries = {}, {}, {}
        for config, (name, tree) in trees.items():
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            env = {"FACE_TORCH_THREADS": str(threads), **CONFIGS[name]}
            service = stack.enter_context(ServiceProcess(data_dir, env, tree))
            services[config] = service
            precisions[config] = httpx.get(f"{service.url}/v1/info").json()["precision"]
            galleries[config] = enrol_gallery(service.url, photos, args.subjects)
            if not galleries[config]:
                raise RuntimeError("no face could be enrolled")
        for endpoint in args.endpoints.split(","):
            for clients in (int(c) for c in args.clients.split(",")):
                totals = {config: LoadResult(clients=clients) for config in configs}
                for round_ in range(args.rounds):
                    for config in configs if round_ % 2 == 0 else configs[::-1]:
                        service = services[config]
                        make = requests_for(endpoint, photos, galleries[config])
                        run_load(service.url, make, clients, args.warmup)
                        seconds = args.duration / args.rounds
                        load = run_load(service.url, make, clients, seconds, service.cpu_split)
                        totals[config].add(load)
                for config in configs:
                    row = {
                        "config": config,
                        "precision": precisions[config],
                        "endpoint": endpoint,
                        "rounds": args.rounds,
                        "service_ready_s": services[config].ready_s,
                        **totals[config].summary(),
                    }
                    rows.append(row)
                    print(_line(row), flush=True)
    return rows


def _line(row: dict[str, Any]) -> str:
    return (
        f"{row['config']:<18} {row['endpoint']:<9} {row['clients']:>3} clients: "
        f"{row['throughput_rps']:>6.1f} req/s  p50 {row['p50_ms']:>7.1f}  "
        f"p95 {row['p95_ms']:>7.1f}  p99 {row['p99_ms']:>7.1f} ms  errors {row['errors']}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="unbatched,threads,batched")
    parser.add_argument("--endpoints", default="verify,identify")
    parser.add_argument("--clients", default="1,4,16", help="concurrent clients, comma-separated")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before each round")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="split each measurement into this many rounds, alternating between configs",
    )
    parser.add_argument("--crop", type=int, default=250, help="probe size; 0: photos as they are")
    parser.add_argument("--photos", type=int, default=None, help="use only the first N photos")
    parser.add_argument("--subjects", type=int, default=20, help="gallery size")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (all cores)")
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="also run every config from this checkout (e.g. `git worktree add /tmp/base "
        "<commit>`), interleaved with this one: an A/B of two versions of the code",
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON path")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.baseline is not None and not (args.baseline / "app" / "__main__.py").is_file():
        parser.error(f"--baseline {args.baseline} is not a checkout of this service")
    threads = prepare_process(args.threads)

    import torch

    from app.pipeline.detect import FaceDetector

    photos = load_photos(args.crop, args.photos, FaceDetector(torch.device("cpu"), 960))
    rows = measure(photos, args, threads)
    errors = sum(row["errors"] for row in rows)
    print(f"{len(rows)} measurements, {errors} errors")
    baseline = None if args.baseline is None else str(args.baseline)
    config = {
        **vars(args),
        "baseline": baseline,
        "threads": threads,
        "probes": len(photos),
        "out": None,
    }
    write_result("latency", {"config": config, "rows": rows}, args.out)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
