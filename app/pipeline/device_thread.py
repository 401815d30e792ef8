"""One thread per CUDA device runs the networks' inference passes."""

# PyTorch keeps cuDNN's execution plans in a thread-local cache (`benchmark_cache` in
# aten/src/ATen/native/cudnn/Conv_v8.cpp: plans are not thread-safe across engines), and
# creates cuDNN and cuBLAS handles per thread. A micro-batch runs on whichever request thread
# leads it, so with 8 or 16 inference threads each thread planned every convolution again
# for every batch size and every MTCNN candidate count it met: on an H200 the micro-batched
# pipeline ran at 7.7 images/s against 39.6 on one thread (docs/benchmarks.md, section 5).
# Handing every pass to one thread per device plans each shape once. The CPU has no such
# cache, and its calls run where they are made.

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

import torch

P = ParamSpec("P")
T = TypeVar("T")

_executors: dict[str, ThreadPoolExecutor] = {}
_lock = threading.Lock()
_local = threading.local()


def on_device_thread(
    device: torch.device, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
) -> T:
    """`fn(*args, **kwargs)` on `device`'s own thread if it is a CUDA device; else here.

    Calls from that thread itself (a pass that calls another) run directly."""
    if device.type != "cuda" or getattr(_local, "device", None) == _key(device):
        return fn(*args, **kwargs)
    return _executor(device).submit(fn, *args, **kwargs).result()


def _key(device: torch.device) -> str:
    return f"cuda:{device.index or 0}"


def _executor(device: torch.device) -> ThreadPoolExecutor:
    key = _key(device)
    with _lock:
        executor = _executors.get(key)
        if executor is None:
            executor = ThreadPoolExecutor(
                1, thread_name_prefix=key, initializer=_mark, initargs=(key,)
            )
            _executors[key] = executor
        return executor


def _mark(key: str) -> None:
    _local.device = key
