"""The test servers' ports: one slice per xdist worker, a port in use skipped."""

from __future__ import annotations

import socket

import pytest

from benchmarks import ports


def test_each_worker_has_a_slice_of_its_own_below_the_ephemeral_range() -> None:
    assert [ports.worker_index(name) for name in ("gw0", "gw7", "gw15", "master", "")] == [
        0,
        7,
        15,
        0,
        0,
    ]
    slices = [set(ports.port_slice(worker)) for worker in range(ports.SLICES)]
    assert all(len(one) == ports.SLICE > 500 for one in slices)
    assert len(set().union(*slices)) == ports.SLICES * ports.SLICE, "the slices overlap"
    assert ports.port_slice(ports.SLICES) == ports.port_slice(0)
    assert min(min(one) for one in slices) >= ports.FIRST
    assert max(max(one) for one in slices) <= ports.LAST
    # Below Linux's default ephemeral range and Kubernetes' NodePorts.
    assert ports.LAST < 30000


def test_a_worker_draws_from_its_slice_and_skips_a_port_in_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    mine = ports.port_slice(3)
    # Point the next draw at a free port of the slice, then occupy it.
    index, port = next((i, p) for i, p in enumerate(mine) if ports._bindable(p))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        monkeypatch.setattr(ports, "_next", index)
        drawn = [ports.free_port() for _ in range(3)]
    assert port not in drawn
    assert all(one in mine for one in drawn)
    assert len(set(drawn)) == 3, "one process never draws a port twice"
