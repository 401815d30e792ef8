"""Closed-loop HTTP load: N asyncio clients send requests back to back for a fixed time.

The clients share the service's machine, so their own CPU time is taken from it: aiohttp
spends about 0.6 ms of CPU a request here, where httpx's AsyncClient spent 2.0 ms, and
the service answered 5% more requests a second with it (docs/benchmarks.md, section 2).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from benchmarks.report import latency_summary

# (path, multipart files, form fields) for the i-th request of client c.
RequestFactory = Callable[[int, int], tuple[str, dict[str, Any], dict[str, str]]]


@dataclass
class LoadResult:
    clients: int
    elapsed_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    server_cpu_s: float | None = None
    server_cpu_parts_s: dict[str, float] = field(default_factory=dict)  # by process
    client_cpu_s: float = 0.0

    def add(self, other: LoadResult) -> None:
        """Fold in another run of the same load (a later round of an interleaved cell)."""
        self.elapsed_s += other.elapsed_s
        self.latencies_s.extend(other.latencies_s)
        self.errors += other.errors
        self.error_samples.extend(other.error_samples)
        if other.server_cpu_s is not None:
            self.server_cpu_s = (self.server_cpu_s or 0.0) + other.server_cpu_s
        for part, seconds in other.server_cpu_parts_s.items():
            self.server_cpu_parts_s[part] = self.server_cpu_parts_s.get(part, 0.0) + seconds
        self.client_cpu_s += other.client_cpu_s

    def summary(self) -> dict[str, Any]:
        done = len(self.latencies_s)
        return {
            "clients": self.clients,
            "requests": done,
            "errors": self.errors,
            "error_samples": self.error_samples[:5],
            "elapsed_s": round(self.elapsed_s, 2),
            "throughput_rps": round(done / self.elapsed_s, 2) if self.elapsed_s else 0.0,
            **latency_summary(self.latencies_s),
            # CPU per request is steadier than wall-clock figures on a shared machine.
            "server_cpu_ms_per_request": _per_request(self.server_cpu_s, done),
            "server_cpu_ms_per_request_by_process": {
                part: _per_request(seconds, done)
                for part, seconds in self.server_cpu_parts_s.items()
            },
            "client_cpu_ms_per_request": _per_request(self.client_cpu_s, done),
        }


def _per_request(seconds: float | None, requests: int) -> float | None:
    return None if seconds is None or not requests else round(seconds * 1000 / requests, 2)


def run_load(
    url: str,
    make_request: RequestFactory,
    clients: int,
    duration_s: float,
    server_cpu: Callable[[], dict[str, float]] | None = None,
) -> LoadResult:
    """Every client loops until `duration_s` has passed; requests in flight then finish.

    `server_cpu` reads the server's CPU seconds by process (ServiceProcess.cpu_split), to
    report its CPU time per request, in all and by process.
    """
    # The client's own full garbage collections (100-200 ms with torch loaded) would stall
    # every request in flight and show as server latency: exempt what is already loaded.
    gc.collect()
    gc.freeze()
    server_before = server_cpu() if server_cpu else {}
    client_before = time.process_time()
    result = asyncio.run(_run(url, make_request, clients, duration_s))
    result.client_cpu_s = time.process_time() - client_before
    if server_cpu is not None:
        after = server_cpu()
        result.server_cpu_parts_s = {k: v - server_before.get(k, 0.0) for k, v in after.items()}
        result.server_cpu_s = sum(result.server_cpu_parts_s.values())
    return result


async def _run(url: str, make_request: RequestFactory, clients: int, duration: float) -> LoadResult:
    result = LoadResult(clients=clients)
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=120.0)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as http:
        start = time.perf_counter()
        stop_at = start + duration
        await asyncio.gather(
            *(_client(http, make_request, c, stop_at, result) for c in range(clients))
        )
        result.elapsed_s = time.perf_counter() - start
    return result


def _form(files: dict[str, Any], data: dict[str, str]) -> aiohttp.FormData:
    """A multipart body from httpx-style `files` ({field: (name, bytes, type)}) and `data`."""
    form = aiohttp.FormData()
    for name, value in data.items():
        form.add_field(name, value)
    for name, (filename, content, content_type) in files.items():
        form.add_field(name, content, filename=filename, content_type=content_type)
    return form


async def _client(
    http: aiohttp.ClientSession,
    make_request: RequestFactory,
    client: int,
    stop_at: float,
    result: LoadResult,
) -> None:
    i = 0
    while time.perf_counter() < stop_at:
        path, files, data = make_request(client, i)
        i += 1
        sent = time.perf_counter()
        try:
            async with http.post(path, data=_form(files, data)) as response:
                body = await response.read()
            failure = (
                None
                if response.status == 200
                else f"{response.status}: {body[:200].decode(errors='replace')}"
            )
        except (aiohttp.ClientError, TimeoutError) as error:
            failure = f"{type(error).__name__}: {error}"
        if failure is None:
            result.latencies_s.append(time.perf_counter() - sent)
        else:
            result.errors += 1
            result.error_samples.append(failure)
