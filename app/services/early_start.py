"""Start the detection process before `python -m app serve` loads everything else."""

# The child needs about 3 s to import torch and facenet-pytorch and load MTCNN; the service
# process needs about 5 s for its own imports. Started first, the child loads meanwhile, on
# the other core, instead of after them. `load_models` then takes this process over if it
# was started with the arguments it would use itself, and closes it otherwise (a GPU found
# after all, other settings). Light on purpose: nothing here imports torch.

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import ValidationError

from app.config import Settings
from app.pipeline.detect_process import DetectionProcess
from app.services.threads import torch_threads

log = logging.getLogger(__name__)

DetectionArgs = tuple[str, int, int, bool, int]

# Where a GPU driver is loaded; without it "auto" will resolve to the CPU.
NVIDIA_CONTROL_DEVICE = Path("/dev/nvidiactl")

_early: DetectionProcess | None = None


def detection_args(settings: Settings) -> DetectionArgs:
    """What DetectionProcess is started with: it only ever runs on the CPU."""
    threads = torch_threads(settings, serving=True, gpu=False)
    return ("cpu", settings.detect_max_side, settings.min_face_size, settings.torchscript, threads)


def start_detection_early() -> None:
    """Launch the detection process now, where the service will want one on the CPU."""
    global _early
    try:
        settings = Settings()
    except ValidationError:
        return  # the command line reports bad settings itself
    gpu_possible = settings.device != "cpu" and (
        settings.device != "auto" or NVIDIA_CONTROL_DEVICE.exists()
    )
    if not settings.detection_process or gpu_possible or _early is not None:
        return
    _early = DetectionProcess(*detection_args(settings))
    _early.launch()


def take_early(args: DetectionArgs | None) -> DetectionProcess | None:
    """The early process if it was started with `args`; one that was not is closed."""
    global _early
    process, _early = _early, None
    if process is None:
        return None
    if args is not None and process.args == args:
        return process
    log.info("closing the early detection process: the service wants another")
    process.close()
    return None
