"""Process set-up, machine description and JSON results shared by the benchmark scripts."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# When the run began and how busy the machine was then (mark_start); machine() describes
# the end, when the result is written, with the benchmark's own load in its load average.
_started: dict[str, Any] | None = None


def mark_start() -> None:
    """Note the time and load average at the start of a run, once per process."""
    global _started
    if _started is None:
        _started = {"date": _now(), "load_average": list(os.getloadavg())}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def prepare_process(threads: int | None) -> int:
    """Set the OpenMP wait policy and thread count before torch is imported; returns threads.
    Also marks the start of the run (mark_start)."""
    mark_start()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    count = threads or int(os.environ.get("FACE_TORCH_THREADS", "0")) or os.cpu_count() or 1
    os.environ["FACE_TORCH_THREADS"] = str(count)
    import torch

    torch.set_num_threads(count)
    return count


def machine() -> dict[str, Any]:
    """What the figures were measured on, and how busy it was: `date` and `load_average` now
    (when the result is written), `started` as mark_start saw it (None if not called)."""
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            ln.split(":", 1)[1].strip()
            for ln in cpuinfo.read_text().splitlines()
            if ln.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    info: dict[str, Any] = {
        "date": _now(),
        "started": _started,
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(_meminfo_kb("MemTotal") / 1024**2, 1),
        "load_average": list(os.getloadavg()),
        "python": platform.python_version(),
        "torch_threads": int(os.environ.get("FACE_TORCH_THREADS", "0")),
        # Which code ran: index_sync.json was found to have timed a query changed since.
        "commit": _git_commit(),
    }
    for module in ("torch", "faiss", "numpy"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:
            info[module] = None
    return info


def _git_commit() -> str | None:
    """HEAD's commit, with "+changes" when the working tree differs; None outside git."""
    repo = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10
        )
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+changes" if status.stdout.strip() else "")


def rss_mb() -> float:
    """Resident memory of this process, MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _meminfo_kb(field: str) -> int:
    path = Path("/proc/meminfo")
    if not path.exists():
        return 0
    for line in path.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def latency_summary(seconds: list[float]) -> dict[str, float]:
    """p50/p95/p99/mean/max in milliseconds."""
    if not seconds:
        return {
            "p50_ms": float("nan"),
            "p95_ms": float("nan"),
            "p99_ms": float("nan"),
            "mean_ms": float("nan"),
            "max_ms": float("nan"),
        }
    ms = np.asarray(seconds) * 1000
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {
        "p50_ms": round(float(p50), 2),
        "p95_ms": round(float(p95), 2),
        "p99_ms": round(float(p99), 2),
        "mean_ms": round(float(ms.mean()), 2),
        "max_ms": round(float(ms.max()), 2),
    }


def write_result(name: str, result: dict[str, Any], out: Path | None = None) -> Path:
    """Write `result` (with the machine) as JSON; default benchmarks/results/<name>.json."""
    path = out or RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "machine": machine(), **result}
    path.write_text(json.dumps(payload, indent=2, default=_jsonable))
    print(f"results written to {path}")
    return path


class Stopwatch:
    """Seconds since creation; `lap()` restarts it."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
