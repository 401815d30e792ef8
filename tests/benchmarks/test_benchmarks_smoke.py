"""Each benchmark script runs end to end at a tiny size and writes valid JSON (not speed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def run(tmp_path: Path, shared_faces: Path) -> Any:
    """Run `python -m benchmarks.<name> ARGS` as a user would; its JSON result, parsed."""

    def runner(name: str, args: str = "") -> dict[str, Any]:
        out = tmp_path / f"{name}.json"
        env = {**os.environ, "FACE_SHARED_FACES": str(shared_faces), "OMP_WAIT_POLICY": "PASSIVE"}
        command = [sys.executable, "-m", f"benchmarks.{name}", *args.split(), "--out", str(out)]
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        result: dict[str, Any] = json.loads(out.read_text())
        assert result["benchmark"] == name or result["benchmark"].startswith(name)
        assert result["machine"]["cores"] >= 1
        # The load average is recorded at the start as well as when the result is written.
        started = result["machine"]["started"]
        assert started["date"] <= result["machine"]["date"]
        assert len(started["load_average"]) == 3
        return result

    return runner


@pytest.mark.slow
def test_throughput(run: Any) -> None:
    result = run(
        "throughput",
        "--images 4 --photos 4 --crop 250 --http batched --duration 1 --clients 2 --sweep 1,2",
    )
    modes = result["modes"]
    assert set(modes) == {"naive", "unbatched", "threads", "batched", "http_batched"}
    assert all(mode["images_per_s"] > 0 for mode in modes.values())
    assert modes["http_batched"]["errors"] == 0
    assert [row["batch"] for row in result["embedder_sweep"]] == [1, 2]


@pytest.mark.slow
def test_latency(run: Any) -> None:
    result = run(
        "latency",
        "--configs batched,unbatched --clients 1,2 --duration 1 --rounds 2 --warmup 0.2 "
        "--photos 6 --subjects 2",
    )
    rows = result["rows"]
    assert {(r["config"], r["endpoint"], r["clients"]) for r in rows} == {
        (config, endpoint, clients)
        for config in ("batched", "unbatched")
        for endpoint in ("verify", "identify")
        for clients in (1, 2)
    }
    assert all(r["errors"] == 0 and r["requests"] > 0 and r["p99_ms"] > 0 for r in rows)
    assert all(r["rounds"] == 2 and r["elapsed_s"] >= 0.9 for r in rows)
    assert all(r["service_ready_s"] > 0 for r in rows)
    # Server CPU by process: the service and its detection child both did work.
    for r in rows:
        parts = r["server_cpu_ms_per_request_by_process"]
        assert set(parts) == {"service", "children"} and parts["service"] > 0
        assert sum(parts.values()) == pytest.approx(r["server_cpu_ms_per_request"], abs=0.02)
    assert any(r["server_cpu_ms_per_request_by_process"]["children"] > 0 for r in rows)


def test_contention(run: Any) -> None:
    result = run("contention", "--duration 0.3 --photos 4 --batch 2")
    names = [row["name"] for row in result["rows"]]
    assert [n.split(" (")[0] for n in names] == [
        "embed eager",
        "embed torchscript",
        "detect eager, in-process",
        "detect torchscript, in-process",
        "detect torchscript, child process",
    ]
    assert all(row["alone_per_s"] > 0 and row["beside_spinner_per_s"] > 0 for row in result["rows"])


def test_gallery_scaling(run: Any) -> None:
    result = run("gallery_scaling", "--sizes 2000 --queries 20")
    rows = {row["kind"]: row for row in result["rows"]}
    assert set(rows) == {"flat", "hnsw"}
    assert rows["flat"]["recall_at_1"] == 1.0
    assert 0 <= rows["hnsw"]["recall_at_1"] <= 1 and rows["hnsw"]["index_mb"] >= 0


def test_index_sync(run: Any) -> None:
    from tests.postgres.conftest import postgres_bin_dir

    backends = "sqlite,postgresql" if postgres_bin_dir() is not None else "sqlite"
    result = run("index_sync", f"--sizes 300,700 --repeats 2 --backends {backends}")
    rows = result["rows"]
    assert [(row["backend"], row["size"]) for row in rows] == [
        (backend, size) for backend in backends.split(",") for size in (300, 700)
    ]
    assert all(row["faces"] == row["size"] for row in rows)  # each size adds to the last
    assert all(row["fingerprint"]["p50_ms"] > 0 and row["all_ids"]["p50_ms"] > 0 for row in rows)


@pytest.mark.slow
def test_startup(run: Any) -> None:
    from app.services.loaded_models import TRACES_DIR
    from benchmarks import startup

    assert startup.TRACES_DIR == TRACES_DIR
    result = run("startup", "--faces 500 --repeats 2")
    rows = result["rows"]
    assert [row["gallery"] for row in rows] == ["empty"] * 2 + ["flat"] * 2 + ["hnsw"] * 2
    # Each gallery's first start traces the embedder and saves it; its restart loads that.
    assert [row["trace"] for row in rows] == ["traced", "loaded"] * 3
    seeded = rows[2:]
    assert all(row["index_how"] == "loaded" and row["index_size"] == 500 for row in seeded)
    assert all(0 < row["listening_s"] <= row["ready_s"] for row in rows)
    galleries = {"empty", "flat", "hnsw"}
    assert set(result["median_ready_s"]) == set(result["first_start_ready_s"]) == galleries


@pytest.mark.parametrize("name", ["gpu", "finetune_gpu"])
def test_gpu_benchmarks_skip_without_cuda(run: Any, name: str) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present; the full GPU run is not a smoke test")
    assert run(name)["skipped"] == "no CUDA device"


@pytest.mark.slow
def test_gpu_dry_run_on_cpu(run: Any) -> None:
    result = run(
        "gpu",
        "--device cpu --sizes 1,2 --dtypes fp32,bf16 --detect-batches 1,2 --images 3 --photos 3 "
        "--min-seconds 0.01 --workers 2 --cold-sizes 3",
    )
    [cold] = result["embedder_new_shapes"]
    assert cold["batch"] == 3 and cold["first_ms"] > 0 and cold["warm_ms"] > 0
    assert result["embedder_trace_s"] > 0  # built before the new-shape rows, not in them
    assert result["warmup_s"] >= 0  # the service's warm-up ran (a no-op on the CPU)
    assert {(row["dtype"], row["batch"]) for row in result["embedder"]} == {
        ("fp32", 1),
        ("fp32", 2),
        ("bf16", 1),
        ("bf16", 2),
    }
    assert set(result["end_to_end"]) == {
        "250px_sequential",
        "250px_batched_2",
        "photos_sequential",
        "photos_batched_2",
    }


@pytest.mark.slow
def test_finetune_gpu_dry_run_on_cpu(run: Any) -> None:
    result = run(
        "finetune_gpu", "--device cpu --effective 8 --micro 4 --steps 2 --layers head --photos 4"
    )
    by_amp = {entry["one_batch"]["amp"]: entry for entry in result["runs"]}
    assert set(by_amp) == {"bf16", "fp32"}
    fp32 = by_amp["fp32"]
    assert fp32["one_batch"]["micro_batch"] == 8 and fp32["accumulated"]["accumulation"] == 2
    assert fp32["one_batch"]["steps"] == fp32["accumulated"]["steps"] == 2
    # Two micro-batches accumulated into each step train the same weights as one batch.
    assert fp32["max_weight_difference"] < 1e-4


def test_latency_baseline_runs_every_config_from_the_other_checkout(tmp_path: Path) -> None:
    from benchmarks.latency import main, service_trees
    from benchmarks.service import ServiceProcess

    base = tmp_path / "base"
    (base / "app").mkdir(parents=True)
    (base / "app" / "__main__.py").write_text("")
    assert service_trees(["batched", "unbatched"], base) == {
        "batched": ("batched", REPO),
        "unbatched": ("unbatched", REPO),
        "batched@baseline": ("batched", base),
        "unbatched@baseline": ("unbatched", base),
    }
    assert service_trees(["batched"], None) == {"batched": ("batched", REPO)}
    with pytest.raises(ValueError, match="unknown configurations"):
        service_trees(["nosuch"], None)
    with pytest.raises(ValueError, match="not a checkout"):
        ServiceProcess(tmp_path / "data", tree=tmp_path)
    with pytest.raises(SystemExit):
        main(["--baseline", str(tmp_path)])
