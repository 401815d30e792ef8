"""Figure 3: identify search latency, memory and recall@1 of flat and hnsw indexes by size.

    .venv/bin/python -m benchmarks.gallery_scaling
    .venv/bin/python -m benchmarks.gallery_scaling --sizes 10000,100000 --kinds flat,hnsw

Synthetic but clustered gallery: each subject has a random unit centre and
`--faces-per-subject` faces at cosine ~0.8 from it; a query is a fresh perturbation of a
stored face (cosine ~0.8 to it), like a new photo of an enrolled person. Searches run one
query at a time on one FAISS thread, as the service does, and include picking the top-k
distinct subjects from the hits (the database lookup of names is not included).
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import latency_summary, mark_start, rss_mb, write_result

DIM = 512
CHUNK = 50_000


def unit(matrix: np.ndarray) -> np.ndarray:
    normed: np.ndarray = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    return normed.astype(np.float32)


def synthetic_gallery(n: int, per_subject: int, seed: int = 0) -> np.ndarray:
    """(n, 512) unit vectors; face i belongs to subject i // per_subject."""
    rng = np.random.default_rng(seed)
    vectors = np.empty((n, DIM), dtype=np.float32)
    step = per_subject * max(1, CHUNK // per_subject)  # chunks hold whole subjects
    for start in range(0, n, step):
        count = min(n, start + step) - start
        centres = unit(rng.standard_normal((-(-count // per_subject), DIM), dtype=np.float32))
        noise = rng.standard_normal((count, DIM), dtype=np.float32) * (0.75 / DIM**0.5)
        vectors[start : start + count] = unit(centres[np.arange(count) // per_subject] + noise)
    return vectors


def perturbed_queries(
    gallery: np.ndarray, count: int, seed: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sources = rng.choice(len(gallery), size=count, replace=False)
    noise = rng.standard_normal((count, DIM)).astype(np.float32) * (0.75 / DIM**0.5)
    return unit(gallery[sources] + noise), sources


def top_subjects(index: Any, query: np.ndarray, top_k: int, per_subject: int, ef: int) -> list[int]:
    """The service's identify search: widen k until top_k distinct subjects appear."""
    total = len(index)
    k = min(total, top_k * 4)
    while True:
        _, ids = index.search(query, k, ef)
        subjects = ids[0][ids[0] >= 0] // per_subject
        _, first = np.unique(subjects, return_index=True)
        ranked = [int(s) for s in subjects[np.sort(first)][:top_k]]
        if len(ranked) >= top_k or k >= total:
            return ranked
        k = min(total, k * 4)


def build(kind: str, gallery: np.ndarray, budget_s: float) -> tuple[Any, dict[str, Any]]:
    """Add the gallery in chunks; stops early (and says so) once `budget_s` has passed."""
    from app.index import FaceIndex

    before = rss_mb()
    index = FaceIndex(DIM, "benchmark", kind)  # type: ignore[arg-type]
    start = time.perf_counter()
    built = 0
    for begin in range(0, len(gallery), CHUNK):
        chunk = gallery[begin : begin + CHUNK]
        index.add(np.arange(begin, begin + len(chunk)), chunk)
        built += len(chunk)
        if time.perf_counter() - start > budget_s and built < len(gallery):
            break
    seconds = time.perf_counter() - start
    info = {"built": built, "build_s": round(seconds, 1), "rss_growth_mb": round(rss_mb() - before)}
    info.update(save_and_load(index, kind))
    if built < len(gallery):
        # Insertion cost grows roughly with log(n), so linear scaling is a lower bound.
        info["build_s_extrapolated_linear"] = round(seconds * len(gallery) / built, 1)
        info["index_mb_extrapolated_linear"] = round(info["index_mb"] * len(gallery) / built)
    return index, info


def save_and_load(index: Any, kind: str) -> dict[str, Any]:
    """Save and reload times; the file's size is the index's memory, bar hnsw's id map."""
    from app.index import FaceIndex

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"bench.{kind}.faiss"
        start = time.perf_counter()
        index.save(path)
        saved = time.perf_counter() - start
        size = path.stat().st_size
        start = time.perf_counter()
        loaded = FaceIndex.load(path, "benchmark", kind)  # type: ignore[arg-type]
        seconds = time.perf_counter() - start
        assert loaded is not None and len(loaded) == len(index)
        del loaded
    return {"index_mb": round(size / 2**20), "save_s": round(saved, 2), "load_s": round(seconds, 2)}


def exact_top1(gallery: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Brute-force nearest stored vector per query, in chunks to bound memory."""
    best = np.full(len(queries), -np.inf, dtype=np.float32)
    ids = np.zeros(len(queries), dtype=np.int64)
    for start in range(0, len(gallery), 100_000):
        scores = queries @ gallery[start : start + 100_000].T
        top = scores.argmax(axis=1)
        better = scores[np.arange(len(queries)), top] > best
        best[better] = scores[np.arange(len(queries)), top][better]
        ids[better] = top[better] + start
    return ids


def search_row(
    index: Any, queries: np.ndarray, exact: np.ndarray, per: int, k: int, ef: int
) -> dict[str, Any]:
    """Latency of the identify search one query at a time, and recall@1 against exact;
    `ef` is HNSW's efSearch, 0 for the service's size-scaled default."""
    latencies, top1, subjects = [], [], []
    for query in queries:
        start = time.perf_counter()
        ranked = top_subjects(index, query[None], k, per, ef)
        latencies.append(time.perf_counter() - start)
        top1.append(int(index.search(query[None], 1, ef)[1][0, 0]))
        subjects.append(ranked[0] if ranked else -1)
    return {
        **latency_summary(latencies),
        "recall_at_1": round(float(np.mean(np.array(top1) == exact)), 4),
        "subject_recall_at_1": round(float(np.mean(np.array(subjects) == exact // per)), 4),
    }


def measure(n: int, kinds: Sequence[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    import faiss

    from app.index.hnsw import auto_ef_search

    gallery = synthetic_gallery(n, args.faces_per_subject)
    rows = []
    for kind in kinds:
        faiss.omp_set_num_threads(args.build_threads)
        index, info = build(kind, gallery, args.build_budget)
        faiss.omp_set_num_threads(1)  # searches run like the service's
        # New photos of enrolled people: recall@1 is about finding them.
        stored = gallery[: info["built"]]
        queries, _ = perturbed_queries(stored, min(args.queries, len(stored)))
        exact = exact_top1(stored, queries)
        efs = [0 if e == "auto" else int(e) for e in args.ef.split(",")]
        for ef in efs if kind == "hnsw" else [0]:
            found = search_row(index, queries, exact, args.faces_per_subject, args.top_k, ef)
            # The service's default: an hnsw index searched with the size-scaled efSearch.
            default = kind == "hnsw" and ef == 0
            used = (ef or auto_ef_search(len(index))) if kind == "hnsw" else None
            row = {"faces": n, "kind": kind, "ef_search": used, "service_default": default}
            rows.append({**row, **info, **found})
            print(
                f"{n:>8} {kind:<5} ef {used or '-':>4} built {info['built']:>8} in "
                f"{info['build_s']:>6.1f}s {info['index_mb']:>6} MB  p50 {found['p50_ms']:>6.2f} "
                f"p99 {found['p99_ms']:>6.2f} ms  recall@1 {found['recall_at_1']:.4f}",
                flush=True,
            )
        del index
        gc.collect()
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    mark_start()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="gallery sizes")
    parser.add_argument("--kinds", default="flat,hnsw")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--faces-per-subject", type=int, default=5)
    parser.add_argument("--build-threads", type=int, default=2, help="FAISS threads for adds")
    parser.add_argument("--build-budget", type=float, default=600.0, help="seconds per build")
    parser.add_argument(
        "--ef", default="auto,128,512,1024", help="HNSW efSearch to try; auto: the service's"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON path")
    args = parser.parse_args(argv)
    kinds = args.kinds.split(",")
    rows = [row for n in (int(s) for s in args.sizes.split(",")) for row in measure(n, kinds, args)]
    write_result("gallery_scaling", {"config": {**vars(args), "out": None}, "rows": rows}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
