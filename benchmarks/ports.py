"""Free TCP ports for the services the benchmarks and tests start, never the same one for
two pytest-xdist workers (which run the benchmarks' smoke tests too).

A port from bind(("127.0.0.1", 0)) is free only until the socket closes: two workers that
each ask the kernel at about the same moment may both be handed it, and the second server
then fails to bind, or its readiness poll reaches the first one. So each worker draws from
its own slice of 20000-29999: below Linux's default ephemeral range (32768 up, where the
kernel puts outgoing connections) and Kubernetes' NodePorts (30000-32767). It starts at a
random place in the slice (two test runs at once rarely meet) and goes on from there, so one
process never draws a port twice. A port in use by some other program is skipped: it must
bind. Outside pytest-xdist every process draws from the first slice.
"""

from __future__ import annotations

import errno
import os
import random
import socket

FIRST, LAST = 20000, 29999
# Slices for up to 16 workers; more share slices (gw16 takes gw0's), as do two runs at once.
SLICES = 16
SLICE = (LAST - FIRST + 1) // SLICES

_next: int | None = None


def worker_index(name: str | None = None) -> int:
    """0 for gw0 (or no xdist), 1 for gw1, ..."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "") if name is None else name
    digits = name.removeprefix("gw")
    return int(digits) if digits.isdigit() else 0


def port_slice(worker: int) -> range:
    start = FIRST + (worker % SLICES) * SLICE
    return range(start, start + SLICE)


def free_port() -> int:
    """A port of this worker's slice that nothing listens on now (the next after the last
    one handed out)."""
    global _next
    ports = port_slice(worker_index())
    if _next is None:
        _next = random.randrange(len(ports))
    for _ in range(len(ports)):
        port = ports[_next % len(ports)]
        _next += 1
        if _bindable(port):
            return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True
