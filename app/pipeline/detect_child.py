"""The face detection child process: builds a FaceDetector and answers batches."""

from __future__ import annotations

import gc
import os
import signal
from multiprocessing.connection import Connection
from typing import Any


def serve_detection(
    conn: Connection,
    device: str,
    max_side: int,
    min_face_size: int,
    torchscript: bool,
    threads: int,
) -> None:
    """The child: build a FaceDetector, then answer batches until the pipe closes."""
    # Ctrl-C in a terminal reaches the whole process group; the parent shuts down and
    # closes the pipe, which ends this loop. Without this, the child died mid-batch and the
    # parent restarted it while shutting down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Set before torch loads: OpenMP reads it once.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch

        from app.pipeline.detect import FaceDetector

        torch.set_num_threads(threads)
        detector = FaceDetector(torch.device(device), max_side, min_face_size, torchscript)
        # As the service does (services/heap.settle_heap): full collections skip start-up objects.
        gc.collect()
        gc.freeze()
    except Exception as error:  # report it; the parent raises
        _tell_parent(conn, ("error", f"{type(error).__name__}: {error}"))
        return
    if not _tell_parent(conn, ("ready", None)):
        return
    while True:
        try:
            inputs = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        reply: tuple[str, Any]
        try:
            reply = ("ok", detector.run(inputs))
        except Exception as error:
            reply = ("error", f"{type(error).__name__}: {error}")
        if not _tell_parent(conn, reply):
            return


def _tell_parent(conn: Connection, message: tuple[str, Any]) -> bool:
    """Send `message`; False when the parent has gone (it stopped while this child was
    starting or working), which ends the child quietly."""
    try:
        conn.send(message)
    except (OSError, ValueError):
        return False
    return True
