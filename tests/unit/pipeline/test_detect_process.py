"""MTCNN in a child process: the same faces as in-process, and it survives its child dying."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import pytest
import torch

from app.errors import ModelError
from app.pipeline.detect import DetectionInput, FaceDetector
from app.pipeline.detect_process import DetectionProcess
from app.pipeline.types import ImageArray
from tests.processes import wait_exited

MIN_FACE = 20


@pytest.fixture(scope="module")
def process() -> Iterator[DetectionProcess]:
    child = DetectionProcess("cpu", 1280, MIN_FACE, torchscript=True, threads=1)
    child.start()
    yield child
    child.close()


@pytest.fixture(scope="module")
def remote_detector(process: DetectionProcess) -> FaceDetector:
    detector = FaceDetector(torch.device("cpu"), 1280, MIN_FACE)
    detector.run_in(process)
    return detector


@pytest.fixture(scope="module")
def players(package_images: Path, load_image: Callable[[Path], ImageArray]) -> ImageArray:
    return load_image(package_images / "players.jpg")


def _prepared(detector: FaceDetector, image: ImageArray) -> DetectionInput:
    item = detector.prepare(image)
    assert item is not None
    return item


def test_child_finds_the_same_faces(
    detector: FaceDetector, remote_detector: FaceDetector, players: ImageArray
) -> None:
    item = _prepared(detector, players)
    flipped = DetectionInput(
        np.ascontiguousarray(item.image[:, ::-1]), item.original_shape, item.pyramid_min_face
    )
    here, there = detector.run([item, flipped]), remote_detector.run([item, flipped])
    for (boxes, probs, points), (r_boxes, r_probs, r_points) in zip(here, there, strict=True):
        assert len(boxes) > 5
        # Equal up to float rounding: the child runs one torch thread, this process more.
        np.testing.assert_allclose(np.asarray(r_boxes), np.asarray(boxes), atol=1e-3)
        np.testing.assert_allclose(np.asarray(r_probs), np.asarray(probs), atol=1e-5)
        np.testing.assert_allclose(np.asarray(r_points), np.asarray(points), atol=1e-3)
    assert remote_detector.detect(players)  # and the whole path, second look included


def test_an_error_in_the_child_reaches_the_caller_and_it_keeps_serving(
    process: DetectionProcess, remote_detector: FaceDetector, yaoming: ImageArray
) -> None:
    pid = process.pid
    # Not uint8: the area resizer refuses it (prepare() never sends such images).
    tiny = DetectionInput(np.zeros((8, 8, 3), np.float32), (8, 8, 3), MIN_FACE)
    with pytest.raises(RuntimeError, match="face detection failed"):
        process.run([tiny])
    assert process.pid == pid
    assert len(remote_detector.detect(yaoming)) == 1


def test_a_killed_child_is_restarted(
    process: DetectionProcess, remote_detector: FaceDetector, yaoming: ImageArray
) -> None:
    pid, starts = process.pid, process.starts
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert wait_exited([pid]) == []
    assert len(remote_detector.detect(yaoming)) == 1
    assert process.starts == starts + 1 and process.pid != pid


class _DiesOnSend:
    """A connection whose child is killed just as a batch is sent to it."""

    def __init__(self, conn: Connection, pid: int, deaths: list[int]) -> None:
        self.conn, self.pid, self.deaths = conn, pid, deaths

    def send(self, inputs: object) -> None:
        os.kill(self.pid, signal.SIGKILL)
        assert wait_exited([self.pid]) == []
        self.deaths.append(self.pid)
        self.conn.send(inputs)  # BrokenPipeError, or lands in a pipe nobody reads

    def recv(self) -> object:
        return self.conn.recv()  # EOFError

    def close(self) -> None:
        self.conn.close()


class DyingProcess(DetectionProcess):
    """Its first `deaths_wanted` children die when handed a batch."""

    def __init__(self, deaths_wanted: int) -> None:
        super().__init__("cpu", 1280, MIN_FACE, torchscript=False, threads=1)
        self.deaths_wanted = deaths_wanted
        self.deaths: list[int] = []

    def _ensure_started(self) -> Connection:
        conn = super()._ensure_started()
        if len(self.deaths) >= self.deaths_wanted or isinstance(conn, _DiesOnSend):
            return conn
        assert self._process is not None and self._process.pid is not None
        wrapped = _DiesOnSend(conn, self._process.pid, self.deaths)
        self._conn = wrapped  # type: ignore[assignment]
        return wrapped  # type: ignore[return-value]


@pytest.mark.parametrize("deaths", [1, 2])
def test_a_child_dying_mid_call_is_replaced_and_the_call_tried_once_more(
    deaths: int, detector: FaceDetector, yaoming: ImageArray
) -> None:
    item = _prepared(detector, yaoming)
    process = DyingProcess(deaths)
    try:
        if deaths == 1:
            ((boxes, _, _),) = process.run([item])  # the retry, on a new child, succeeds
            assert len(boxes) == 1
        else:
            with pytest.raises(ModelError, match="stopped twice"):
                process.run([item])
            ((boxes, _, _),) = process.run([item])  # the next call gets a healthy child
            assert len(boxes) == 1
        assert len(process.deaths) == deaths and process.starts == deaths + 1
    finally:
        process.close()


def test_a_closed_process_refuses_work(yaoming: ImageArray, detector: FaceDetector) -> None:
    child = DetectionProcess("cpu", 1280, MIN_FACE, torchscript=False, threads=1)
    child.start()
    pid = child.pid
    assert pid is not None
    child.close()
    assert wait_exited([pid]) == []
    with pytest.raises(ModelError, match="closed"):
        child.run([_prepared(detector, yaoming)])


def test_a_child_that_cannot_start_says_why() -> None:
    child = DetectionProcess("no-such-device", 1280, MIN_FACE, torchscript=False, threads=1)
    with pytest.raises(ModelError, match="failed to start"):
        child.start()
    child.close()


def test_a_hung_child_is_killed_and_the_call_goes_to_a_new_one(
    detector: FaceDetector, yaoming: ImageArray
) -> None:
    item = _prepared(detector, yaoming)
    process = DetectionProcess(
        "cpu", 1280, MIN_FACE, torchscript=False, threads=1, call_timeout_s=2.0
    )
    try:
        process.start()
        hung = process.pid
        assert hung is not None
        os.kill(hung, signal.SIGSTOP)  # alive, but it will never answer
        ((boxes, _, _),) = process.run([item])
        assert len(boxes) == 1
        assert process.starts == 2 and process.pid != hung
        assert wait_exited([hung]) == []
    finally:
        process.close()


def test_the_child_ignores_ctrl_c_its_parent_handles_it(
    process: DetectionProcess, remote_detector: FaceDetector, yaoming: ImageArray
) -> None:
    pid, starts = process.pid, process.starts
    assert pid is not None
    os.kill(pid, signal.SIGINT)
    assert len(remote_detector.detect(yaoming)) == 1
    assert (process.pid, process.starts) == (pid, starts)


def test_a_child_whose_service_stops_while_it_starts_exits_quietly(
    capfd: pytest.CaptureFixture[str],
) -> None:
    child = DetectionProcess("cpu", 1280, MIN_FACE, torchscript=False, threads=1)
    child.launch()
    process, conn = child._process, child._conn
    assert process is not None and conn is not None
    conn.close()  # the service went away while the child was still loading torch
    process.join(60)
    assert process.exitcode == 0
    assert "Traceback" not in capfd.readouterr().err  # it used to print a BrokenPipeError
    child.close()


def test_ctrl_c_while_the_child_is_still_starting_leaves_it_running(
    yaoming: ImageArray, detector: FaceDetector, capfd: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C reaches the process group while `serve` starts. The child, still in Python's
    start-up or its imports before serve_detection ignores SIGINT, used to die with a
    KeyboardInterrupt traceback (and be restarted); it now holds the signal until then."""
    child = DetectionProcess("cpu", 1280, MIN_FACE, torchscript=False, threads=1)
    try:
        child.launch()
        assert child.pid is not None
        os.kill(child.pid, signal.SIGINT)  # microseconds after exec: long before the handler
        faces = child.run([_prepared(detector, yaoming)])
        assert len(faces[0][0]) == 1
        assert child.starts == 1
        assert "Traceback" not in capfd.readouterr().err
    finally:
        child.close()
