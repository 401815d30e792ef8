"""The benchmarks' named service configurations say what the docs say they are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.services.threads import CPU_BATCH, CPU_WORKERS, GPU_BATCH, GPU_WORKERS
from benchmarks.service import CONFIGS


def test_the_default_configurations_are_the_shipped_defaults() -> None:
    """gpu-batched inherited the CPU's 16 threads when those became the CPU default, so a
    rerun would have measured something other than the GPU's defaults it is documented as."""
    cpu, gpu = CONFIGS["batched"], CONFIGS["gpu-batched"]
    assert (cpu["FACE_INFERENCE_WORKERS"], cpu["FACE_BATCH_MAX_SIZE"]) == (
        str(CPU_WORKERS),
        str(CPU_BATCH),
    )
    assert (gpu["FACE_INFERENCE_WORKERS"], gpu["FACE_BATCH_MAX_SIZE"], gpu["FACE_DEVICE"]) == (
        str(GPU_WORKERS),
        str(GPU_BATCH),
        "cuda",
    )


def test_in_process_modes_refuse_configs_that_set_the_models() -> None:
    """The in-process modes share one set of models: an audit found batched-fp32,
    batched-eager and batched-in-process each ran the same fp32, TorchScript models with
    detection in the process, whatever their names said."""
    from benchmarks.throughput import in_process_modes

    assert in_process_modes("naive,unbatched,threads,batched", CONFIGS) == [
        "naive",
        "unbatched",
        "threads",
        "batched",
    ]
    for mode in ("batched-fp32", "batched-eager", "batched-in-process", "gpu-batched"):
        with pytest.raises(ValueError, match="use --http"):
            in_process_modes(f"naive,{mode}", CONFIGS)


def test_the_callers_face_settings_do_not_reach_a_benchmarked_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An audit: a developer's FACE_* variables leaked into every row, unrecorded."""
    from benchmarks.service import ServiceProcess

    monkeypatch.setenv("FACE_BATCH_MAX_WAIT_MS", "50")
    monkeypatch.setenv("FACE_INDEX_TYPE", "flat")
    env = ServiceProcess(tmp_path, {"FACE_INDEX_TYPE": "hnsw"}).env
    assert "FACE_BATCH_MAX_WAIT_MS" not in env
    assert env["FACE_INDEX_TYPE"] == "hnsw" and env["FACE_DATA_DIR"] == str(tmp_path)
    assert env["PATH"] == os.environ["PATH"]  # the rest of the environment passes
