"""MTCNN in a child process of its own, out of reach of the service's GIL."""

# facenet-pytorch's MTCNN runs dozens of small tensor operations and NumPy steps per image,
# and takes Python's GIL back after each one. In the service other threads want the GIL
# too (HTTP, decoding, the database), and each time detection waits for it, up to Python's
# 5 ms switch interval. On 2 cores, MTCNN ran 70 images/s alone and 1.6 beside one busy
# Python thread, and 68 and 62.5 in a child process (benchmarks/contention.py). In a
# 16-client load its batches took 18 ms of wall time per image against 10-12 on an idle
# machine, with the detection lane busy 97% of the time: the service's bottleneck. A child
# process has a GIL of its own.
#
# Images go to the child and MTCNN's raw output comes back over a pipe; the cost is a copy
# of each image. The child exits when the service does: `recv` sees the pipe close, even
# after a kill -9 of the service.

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING

from app.errors import ModelError
from app.pipeline.detect_child import serve_detection
from app.pipeline.watchdog import Watchdog

if TYPE_CHECKING:
    from app.pipeline.detect import DetectionInput
    from app.pipeline.mtcnn_output import RawDetection

log = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0
# The longest one batch may take before the child counts as hung and is killed (the batch
# then goes to a new child, once). A batch of 8 downscaled photos, or one 960 px image
# tiled with hundreds of faces, takes seconds on 2 cores; a stopped child takes forever.
CALL_TIMEOUT_S = 60.0


class DetectionProcess:
    """Runs `FaceDetector.run` in a spawned child; restarts it after it dies."""

    def __init__(
        self,
        device: str,
        max_side: int,
        min_face_size: int,
        torchscript: bool,
        threads: int,
        call_timeout_s: float = CALL_TIMEOUT_S,
    ) -> None:
        self.args = (device, max_side, min_face_size, torchscript, threads)
        self.call_timeout_s = call_timeout_s
        # Spawn, not fork: a forked child inherits torch's OpenMP pool in a broken state.
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._starting = False  # launched, "ready" not yet read
        self._closed = False
        self._watchdog = Watchdog(call_timeout_s, self._kill_hung)
        self.starts = 0

    def launch(self) -> None:
        """Start the child without waiting for it: it loads while the service does."""
        with self._lock:
            if self._process is None:
                self._launch()

    def start(self) -> None:
        """Start the child, if needed, and wait until it is ready."""
        with self._lock:
            self._ensure_started()

    def run(self, inputs: list[DetectionInput]) -> list[RawDetection]:
        """MTCNN's output for inputs that share a batch_key, computed in the child.

        A child found dead (killed, out of memory) is restarted and the batch sent again,
        once: detection has no side effects. A batch that kills two children fails. A child
        that gives no answer within `call_timeout_s` (stopped, hung) is killed, and counts
        as dead.
        """
        with self._lock:
            for attempt in (1, 2):
                conn = self._ensure_started()
                assert self._process is not None
                self._watchdog.watch(self._process)
                try:
                    conn.send(inputs)
                    status, payload = conn.recv()
                    break
                except (EOFError, OSError) as error:
                    self._stop()
                    if attempt == 2:
                        raise ModelError(
                            "the face detection process stopped twice on this request; "
                            "it restarts with the next one"
                        ) from error
                    log.warning("face detection process stopped (%r); restarting it", error)
                finally:
                    self._watchdog.clear()
        if status != "ok":
            raise RuntimeError(f"face detection failed: {payload}")
        result: list[RawDetection] = payload
        return result

    def close(self, wait_s: float = 5.0) -> None:
        """Stop the child: it may take `wait_s` to finish its batch and exit, then it is
        killed. A start-up that failed passes 0: the child has no work to finish, and the
        error it reports should not wait for it."""
        self._watchdog.stop()
        with self._lock:
            self._closed = True
            self._stop(wait_s)

    def _kill_hung(self, process: BaseProcess) -> None:
        # Runs on the watchdog's thread while run() waits on the pipe; the kill closes the
        # child's end, so that send() or recv() fails at once.
        if process.is_alive():
            log.error(
                "face detection process %s gave no answer in %.0f s; killing it",
                process.pid,
                self.call_timeout_s,
            )
            process.kill()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _ensure_started(self) -> Connection:
        if self._closed:
            raise ModelError("the face detection process is closed")
        if self._process is None or not self._process.is_alive():
            self._stop()
            self._launch()
        assert self._conn is not None and self._process is not None
        if self._starting:
            self._await_ready(self._conn, self._process)
        return self._conn

    def _launch(self) -> None:
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=serve_detection, args=(child, *self.args), name="face-detection", daemon=True
        )
        # Ctrl-C reaches the whole process group. Before serve_detection ignores it, the
        # child is still in Python's start-up and imports, where it would die with a
        # traceback. Started from the main thread, as `serve` starts it early, the child
        # inherits SIGINT ignored (a blocked signal is not inherited by a spawned child).
        with sigint_ignored():
            process.start()
        child.close()
        self._process, self._conn, self._starting = process, parent, True
        self.starts += 1

    def _await_ready(self, conn: Connection, process: BaseProcess) -> None:
        try:
            if not conn.poll(START_TIMEOUT_S):
                raise ModelError("the face detection process did not start in time")
            status, payload = conn.recv()
        except (EOFError, OSError) as error:
            self._stop()
            raise ModelError("the face detection process exited while starting") from error
        except ModelError:
            self._stop()
            raise
        if status != "ready":
            self._stop()
            raise ModelError(f"the face detection process failed to start: {payload}")
        self._starting = False
        log.info("face detection process %s ready", process.pid)

    def _stop(self, wait_s: float = 5.0) -> None:
        conn, process = self._conn, self._process
        self._conn = self._process = None
        self._starting = False
        if conn is not None:
            conn.close()  # the child's recv ends, and it exits
        if process is not None:
            process.join(timeout=wait_s)
            if process.is_alive():
                process.kill()
                process.join()


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
    """SIGINT ignored for the duration, where this is the main thread (only it may set
    handlers): a process started meanwhile inherits the ignore, which an exec keeps and
    Python respects. A Ctrl-C within the few milliseconds of the start itself is lost."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
