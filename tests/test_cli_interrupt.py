"""Ctrl-C ends `python -m app` with one line and status 130, not a traceback: while its
modules load, and during evaluate and calibrate."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Photos to embed, far more than the seconds the test waits for: the Ctrl-C lands first.
COPIES = 400


# `python -m app` as runpy runs it, behind an import hook that stops in the import of one
# module, says so, and waits there: the Ctrl-C lands in the import phase however fast or
# slow the machine is.
PAUSE_IN_IMPORT = """
import runpy, sys, time

class PauseIn:
    def find_spec(self, name, path=None, target=None):
        if name == %r:
            sys.stderr.write(f"importing {name}\\n")
            sys.stderr.flush()
            time.sleep(120)  # until the SIGINT
        return None

sys.meta_path.insert(0, PauseIn())
runpy.run_module("app", run_name="__main__", alter_sys=True)
"""


def interrupt_when(
    command: list[str],
    marker: str,
    env: dict[str, str],
    launcher: Sequence[str] = ("-m", "app"),
) -> tuple[int, str]:
    """Start `python <launcher> <command>` in a session of its own, send its process group
    SIGINT (what Ctrl-C in a terminal does) once the regular expression `marker` matches its
    stderr, and return its status and stderr."""
    process = subprocess.Popen(
        [sys.executable, *launcher, *command],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert process.stderr is not None
    err = b""
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(process.stderr, selectors.EVENT_READ)
            deadline = time.monotonic() + 120
            while re.search(marker.encode(), err) is None:
                assert time.monotonic() < deadline, f"no {marker!r} in {err.decode()!r}"
                if selector.select(timeout=1):
                    chunk = os.read(process.stderr.fileno(), 65536)
                    assert chunk, f"exited before {marker!r}: {err.decode()!r}"
                    err += chunk
        os.killpg(process.pid, signal.SIGINT)
        rest = process.communicate(timeout=60)[1]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode, (err + rest).decode()


@pytest.fixture
def many_pairs(shared_faces: Path, tmp_path: Path) -> tuple[Path, Path]:
    """COPIES links to one real photo under a root, and a pairs file over them."""
    root = tmp_path / "photos"
    root.mkdir()
    for n in range(COPIES):
        (root / f"{n}.jpg").symlink_to(shared_faces / "deepface" / "img1.jpg")
    rows = [f"{n}.jpg,{n + 1}.jpg,{n // 2 % 2}" for n in range(0, COPIES, 2)]
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("path_a,path_b,same\n" + "\n".join(rows) + "\n")
    return pairs, root


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "FACE_DATA_DIR": str(tmp_path / "data"),
        "FACE_EMBEDDER": "arcface-mbf",
        "FACE_DEVICE": "cpu",
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "marker"),
    [
        # The progress bar, once the first photo is embedded.
        ("evaluate", f"embedding: .* [1-9][0-9]*/{COPIES}"),
        ("calibrate", f"embedding: .* [1-9][0-9]*/{COPIES}"),
        # Logged as the embedder starts to load (the detector has just loaded).
        ("evaluate", "loading embedder"),
    ],
)
def test_ctrl_c_is_one_line_and_status_130(
    many_pairs: tuple[Path, Path],
    env: dict[str, str],
    tmp_path: Path,
    command: str,
    marker: str,
) -> None:
    pairs, root = many_pairs
    argv = [command, "--pairs", str(pairs), "--root", str(root)]
    if command == "evaluate":
        argv += ["--out", str(tmp_path / "out")]
    code, err = interrupt_when(argv, marker, {**env, "FACE_LOG_LEVEL": "INFO"})
    assert code == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert err.splitlines()[-1] == f"python -m app {command}: interrupted"
    assert not (tmp_path / "out" / "verification.json").exists()


@pytest.mark.parametrize(
    ("command", "module", "detection_process"),
    [
        ("evaluate", "app.cli", "true"),
        # serve starts the detection process first, then imports the command line.
        ("serve", "app.services.early_start", "true"),
        # Off, so that no child is starting when the process group gets the SIGINT.
        ("serve", "app.cli", "false"),
    ],
)
def test_ctrl_c_while_modules_load_is_one_line_and_status_130(
    env: dict[str, str], tmp_path: Path, command: str, module: str, detection_process: str
) -> None:
    argv = [command, "--root", str(tmp_path)] if command == "evaluate" else [command]
    code, err = interrupt_when(
        argv,
        f"importing {re.escape(module)}\n",
        {**env, "FACE_DETECTION_PROCESS": detection_process},
        launcher=("-c", PAUSE_IN_IMPORT % module),
    )
    assert code == 130, err
    assert err.splitlines() == [f"importing {module}", f"python -m app {command}: interrupted"]
