"""Figure 4: seconds from process start to /v1/ready with a large gallery and a saved index.

    .venv/bin/python -m benchmarks.startup                     # 100k faces, flat and hnsw
    .venv/bin/python -m benchmarks.startup --faces 20000 --kinds flat

The gallery is synthetic: subjects, faces and arcface-mbf embeddings bulk-inserted into a
fresh SQLite file, plus the matching index saved where the service looks for it, so the
service should load it (/v1/info index_how == "loaded") rather than rebuild it.

Each gallery's first start finds no saved TorchScript copy of the embedder, so it converts
and traces it (and saves the copy); the later starts load the copy, as every restart of a
service does (app/pipeline/embedders/saved_traces.py). Rows say which ("trace").
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.gallery_scaling import synthetic_gallery
from benchmarks.report import mark_start, write_result

# app.services.loaded_models.TRACES_DIR: importing it would load torch here.
TRACES_DIR = "cache/torchscript"

CHUNK = 10_000


def model_version() -> str:
    """The version arcface-mbf will report, from the registry, without loading the model."""
    from app.config import Settings
    from app.pipeline.embedders import load_model_specs

    spec = load_model_specs(Settings().models_dir)["arcface-mbf"]
    return f"arcface-mbf@{spec.sha256[:12]}"


def seed_gallery(data_dir: Path, faces: int, per_subject: int, kinds: Sequence[str]) -> float:
    """Bulk-insert the synthetic gallery and save its indexes; returns the seconds it took."""
    from sqlalchemy import insert

    from app.gallery.db import make_engine, migrate
    from app.gallery.orm import Embedding, Face, Subject, new_subject_id, utcnow
    from app.index import FaceIndex, index_path

    start = time.perf_counter()
    version = model_version()
    vectors = synthetic_gallery(faces, per_subject)
    engine = make_engine(f"sqlite:///{data_dir / 'faces.db'}")
    migrate(engine)
    now = utcnow()
    subject_ids = [new_subject_id() for _ in range(-(-faces // per_subject))]
    face_row = {
        "box": [0.0, 0.0, 100.0, 100.0],
        "landmarks": [[0.0, 0.0]] * 5,
        "quality": {"passed": True},
        "crop": None,
        "crop_landmarks": None,
        "created_at": now,
    }
    with engine.begin() as db:
        db.execute(
            insert(Subject),
            [
                {
                    "id": s,
                    "name": f"subject {i}",
                    "name_folded": f"subject {i}",  # bulk inserts skip the ORM's validator
                    "metadata_": {},
                    "created_at": now,
                    "updated_at": now,
                }
                for i, s in enumerate(subject_ids)
            ],
        )
        for begin in range(0, faces, CHUNK):
            ids = range(begin + 1, min(faces, begin + CHUNK) + 1)  # face ids start at 1
            db.execute(
                insert(Face),
                [
                    {
                        **face_row,
                        "id": i,
                        "subject_id": subject_ids[(i - 1) // per_subject],
                        "image_sha256": f"{i:064x}",
                    }
                    for i in ids
                ],
            )
            db.execute(
                insert(Embedding),
                [
                    {
                        "face_id": i,
                        "model": version,
                        "vector": vectors[i - 1].astype("<f4").tobytes(),
                    }
                    for i in ids
                ],
            )
    engine.dispose()
    for kind in kinds:
        index = FaceIndex(vectors.shape[1], version, kind)  # type: ignore[arg-type]
        index.add(np.arange(1, faces + 1), vectors)
        index.save(index_path(data_dir / "index", version, kind))
    return time.perf_counter() - start


def time_startup(data_dir: Path, kind: str, faces: int) -> dict[str, Any]:
    from benchmarks.service import ServiceProcess

    env = {"FACE_INDEX_TYPE": kind, "FACE_LOG_LEVEL": "INFO"}
    service = ServiceProcess(data_dir, env)
    service.start()
    try:
        ready_s = service.wait_ready()
        info = httpx.get(f"{service.url}/v1/info", timeout=30).json()
    finally:
        service.stop()
    log = service.log_tail(200)
    index_s = re.search(r"(?:loaded|rebuilt) \w+ index \(\d+ faces\) in ([\d.]+)s", log)
    trace = re.search(r"(loaded|saved) \S+ TorchScript copy", log)
    row = {
        "kind": kind,
        "faces": faces,
        "trace": {"loaded": "loaded", "saved": "traced"}[trace.group(1)] if trace else None,
        "ready_s": round(ready_s, 2),
        "listening_s": round(service.listening_s or 0.0, 2),
        "index_how": info["index_how"],
        "index_size": info["index_size"],
        "open_index_s": float(index_s.group(1)) if index_s else None,
    }
    if faces and (info["index_how"] != "loaded" or info["index_size"] != faces):
        raise RuntimeError(f"index was not loaded as saved: {row}\n{log}")
    return row


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def main(argv: Sequence[str] | None = None) -> int:
    mark_start()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--faces-per-subject", type=int, default=5)
    parser.add_argument("--kinds", default="flat,hnsw")
    parser.add_argument(
        "--repeats", type=int, default=4, help="starts per gallery: the first traces, the rest load"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON path")
    args = parser.parse_args(argv)
    kinds = args.kinds.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "gallery"
        data_dir.mkdir()
        seed_s = seed_gallery(data_dir, args.faces, args.faces_per_subject, kinds)
        print(f"seeded {args.faces} faces and {len(kinds)} indexes in {seed_s:.1f}s")
        # The empty gallery shows what imports and model loading cost on their own.
        runs = [("empty", Path(tmp) / "empty", "flat", 0)]
        runs += [(kind, data_dir, kind, args.faces) for kind in kinds]
        for label, folder, kind, faces in runs:
            shutil.rmtree(folder / TRACES_DIR, ignore_errors=True)  # a first start, then restarts
            for _ in range(args.repeats):
                row = {"gallery": label, **time_startup(folder, kind, faces)}
                rows.append(row)
                print(
                    f"{label:<5} {faces:>7} faces: listening after {row['listening_s']:.2f}s, "
                    f"ready after {row['ready_s']:.2f}s (index {row['index_how']} in "
                    f"{row['open_index_s']}s, embedder {row['trace']})",
                    flush=True,
                )
    # Restarts, which load the saved copy: what a service meets every time but its first.
    summary = {
        label: _median([r["ready_s"] for r in rows if r["gallery"] == label][1:])
        for label, *_ in runs
    }
    first = {label: next(r["ready_s"] for r in rows if r["gallery"] == label) for label, *_ in runs}
    print("median ready_s of restarts:", summary, "first starts:", first)
    write_result(
        "startup",
        {
            "config": {**vars(args), "out": None},
            "seed_s": round(seed_s, 1),
            "median_ready_s": summary,
            "first_start_ready_s": first,
            "rows": rows,
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
