"""Index sync on a shared database: its fingerprint query and full id read, by gallery size.

    .venv/bin/python -m benchmarks.index_sync                      # SQLite and PostgreSQL, 100k, 1M
    .venv/bin/python -m benchmarks.index_sync --sizes 20000 --backends sqlite

Every FACE_INDEX_SYNC_INTERVAL_S a service process compares `embeddings_repo.fingerprint`
(count, sum, largest and sum of squares of the serving model's face ids) with its index's,
and every tenth time, or when they differ, reads all the ids (`model_face_ids`). The gallery is
synthetic: faces with real-size (512-d float32) vectors, bulk-inserted. PostgreSQL is a
throwaway server started as the test suite starts one (initdb on PATH or Debian's), after
VACUUM ANALYZE, as autovacuum leaves a table at rest; or `--postgres-url` of an empty database.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import latency_summary, mark_start, write_result

MODEL = "bench@000000000000"
CHUNK = 20_000
PER_SUBJECT = 10


def seed(url: str, faces: int, start: int) -> None:
    """Add faces `start`+1 .. `faces`, with vectors, to the gallery at `url`."""
    from sqlalchemy import insert

    from app.gallery.db import make_engine, migrate
    from app.gallery.orm import Embedding, Face, Subject, utcnow

    engine = make_engine(url)
    migrate(engine)
    now = utcnow()
    rng = np.random.default_rng(start)
    face_row = {"box": [0.0, 0.0, 1.0, 1.0], "landmarks": [], "quality": {}, "created_at": now}
    with engine.begin() as db:
        for begin in range(start, faces, CHUNK):
            ids = range(begin + 1, min(faces, begin + CHUNK) + 1)
            # Each subject is made with its first face.
            subjects = [
                s
                for s in sorted({(i - 1) // PER_SUBJECT for i in ids})
                if s * PER_SUBJECT + 1 in ids
            ]
            db.execute(
                insert(Subject),
                [
                    {
                        "id": f"{s:036d}",
                        "name": f"s{s}",
                        "name_folded": f"s{s}",
                        "metadata_": {},
                        "created_at": now,
                        "updated_at": now,
                    }
                    for s in subjects
                ],
            )
            db.execute(
                insert(Face),
                [
                    {
                        **face_row,
                        "id": i,
                        "subject_id": f"{(i - 1) // PER_SUBJECT:036d}",
                        "image_sha256": f"{i:064x}",
                    }
                    for i in ids
                ],
            )
            vectors = rng.standard_normal((len(ids), 512), dtype=np.float32)
            db.execute(
                insert(Embedding),
                [
                    {"face_id": i, "model": MODEL, "vector": vector.astype("<f4").tobytes()}
                    for i, vector in zip(ids, vectors, strict=True)
                ],
            )
    engine.dispose()


def measure(url: str, repeats: int, vacuum: bool) -> dict[str, Any]:
    """The two queries' latencies (ms), each run `repeats` times after one untimed run."""
    from sqlalchemy import text

    from app.gallery import embeddings_repo
    from app.gallery.db import make_engine, make_session_factory

    engine = make_engine(url)
    if vacuum:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE embeddings"))
    sessions = make_session_factory(engine)
    row: dict[str, Any] = {}
    queries: dict[str, Callable[[Any], Any]] = {
        "fingerprint": lambda s: embeddings_repo.fingerprint(s, MODEL),
        "all_ids": lambda s: embeddings_repo.model_face_ids(s, MODEL),
    }
    for name, query in queries.items():
        with sessions() as session:
            found = query(session)
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                query(session)
                times.append(time.perf_counter() - started)
        row[name] = latency_summary(times)
        if name == "fingerprint":
            row["faces"] = int(found[0])
    engine.dispose()
    return row


@contextmanager
def postgres_database(url: str | None) -> Iterator[str]:
    """`url`, or an empty database on a throwaway server stopped afterwards."""
    if url:
        yield url
        return
    import os
    import pwd

    from tests.postgres.conftest import OS_USER, PostgresCluster, postgres_bin_dir

    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise SystemExit("PostgreSQL server binaries not found: pass --postgres-url")
    root = Path(tempfile.mkdtemp(prefix="face-bench-postgres-"))
    if os.geteuid() == 0:
        pwd.getpwnam(OS_USER)
        shutil.chown(root, OS_USER)
    cluster = PostgresCluster(bin_dir, root)
    try:
        cluster.start()
        yield cluster.url(cluster.create_database())
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    mark_start()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="gallery sizes, ascending")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs of each query")
    parser.add_argument("--postgres-url", default=None, help="an empty database to fill")
    parser.add_argument("--out", type=Path, default=None, help="JSON path")
    args = parser.parse_args(argv)
    sizes = sorted(int(size) for size in args.sizes.split(","))
    rows = []
    with tempfile.TemporaryDirectory(prefix="face-bench-sync-") as folder:
        for backend in args.backends.split(","):
            database: Any = (
                postgres_database(args.postgres_url)
                if backend == "postgresql"
                else _sqlite(Path(folder))
            )
            with database as url:
                done = 0
                for size in sizes:
                    started = time.perf_counter()
                    seed(url, size, done)
                    done = size
                    row = {"backend": backend, "size": size}
                    row["seed_s"] = round(time.perf_counter() - started, 1)
                    row |= measure(url, args.repeats, vacuum=backend == "postgresql")
                    rows.append(row)
                    print(
                        f"{backend:<10} {size:>8} faces: fingerprint "
                        f"{row['fingerprint']['p50_ms']:8.1f} ms, all ids "
                        f"{row['all_ids']['p50_ms']:8.1f} ms (p50)",
                        flush=True,
                    )
    config = {**vars(args), "out": None, "postgres_url": bool(args.postgres_url)}
    write_result("index_sync", {"config": config, "rows": rows}, args.out)
    return 0


@contextmanager
def _sqlite(folder: Path) -> Iterator[str]:
    yield f"sqlite:///{folder / 'faces.db'}"


if __name__ == "__main__":
    raise SystemExit(main())
