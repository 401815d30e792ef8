"""Face detection with facenet-pytorch's MTCNN, in original-image coordinates."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from app.pipeline.detect_process import DetectionProcess
from app.pipeline.device_thread import on_device_thread
from app.pipeline.image_io import downscale
from app.pipeline.mtcnn_output import RawDetection, to_original_faces
from app.pipeline.shape_buckets import PaddedBatches
from app.pipeline.types import DetectedFace, ImageArray

if TYPE_CHECKING:
    from facenet_pytorch import MTCNN

# facenet-pytorch (app/pipeline/mtcnn_nets.py, mtcnn_stages.py) is imported where MTCNN is
# built, not here: it imports torchvision, which imports torch._dynamo, 2-3 s of start-up
# that a service whose detection runs in a child process (app/pipeline/detect_process.py)
# never needs.

# MTCNN's P-net looks through a 12 px window; below about 20 px in the detection image its
# pyramid gets deep and slow, and the faces it finds are too small to recognise anyway.
MTCNN_SMALLEST_FACE = 20

# Padding, as a fraction of each side, for the second look at an image with no face found.
PAD_RETRY_FRACTION = 0.25


@dataclass(frozen=True)
class DetectionInput:
    """An image as MTCNN sees it: downscaled, with the smallest face its pyramid looks for."""

    image: ImageArray
    original_shape: tuple[int, ...]
    pyramid_min_face: int

    @property
    def batch_key(self) -> tuple[tuple[int, ...], int]:
        """Inputs with equal keys can share one MTCNN pass."""
        return self.image.shape, self.pyramid_min_face


class FaceDetector:
    """Finds every face in an RGB image, with 5 landmarks each.

    `min_face_size` is the smallest face side, in original pixels, worth looking for: the
    quality gate's minimum. Not searching for smaller faces keeps MTCNN's image pyramid
    short, which is most of its cost on small photos.
    """

    def __init__(
        self,
        device: torch.device,
        max_side: int = 1280,
        min_face_size: int = MTCNN_SMALLEST_FACE,
        torchscript: bool = True,
        pad_batches: bool | None = None,
        process: DetectionProcess | None = None,
    ) -> None:
        self.device = device
        self.max_side = max_side
        self.min_face_size = min_face_size
        self._nets_args = (device, min_face_size, torchscript, pad_batches)
        # MTCNN is built here, unless detection runs in `process`: then only if it is ever
        # run in this process after all (run_in(None)).
        self._mtcnn: MTCNN | None = None if process is not None else self._build()
        # The nets are shared modules; serialise calls rather than rely on torch
        # re-entrancy from the inference thread pool.
        self._lock = threading.Lock()
        self.process = process

    def _build(self) -> MTCNN:
        from app.pipeline.mtcnn_nets import build_mtcnn

        return build_mtcnn(*self._nets_args)

    def warm_up(self) -> list[tuple[str, int]]:
        """On a GPU, one R- and O-net pass at each padded batch size, so that no request
        pays for a size's first pass: the (net, rows) run; [] elsewhere. P-net's shapes
        follow the images' sizes, which are not known in advance."""
        done: list[tuple[str, int]] = []
        if self.process is not None:
            return done  # the child's nets: a CPU's, which pad nothing
        from app.pipeline.mtcnn_nets import CROP_INPUTS

        for name, shape in CROP_INPUTS.items():
            net = getattr(self._nets(), name)
            if isinstance(net, PaddedBatches):
                done += [(name, rows) for rows in on_device_thread(self.device, net.warm_up, shape)]
        return done

    def wait_ready(self) -> None:
        """Wait for the detection process, if detection runs in one, to finish loading;
        ModelError if it cannot start."""
        if self.process is not None:
            self.process.start()

    def close(self, wait_s: float = 5.0) -> None:
        """Stop the detection process, if detection runs in one (DetectionProcess.close)."""
        if self.process is not None:
            self.process.close(wait_s)

    def run_in(self, process: DetectionProcess | None) -> None:
        """Run MTCNN in `process` from now on (app/pipeline/detect_process.py); None: here."""
        self.process = process

    def prepare(self, image: ImageArray) -> DetectionInput | None:
        """Downscale for detection; None when the image is smaller than the smallest face."""
        small, scale = downscale(image, self.max_side)
        pyramid_min_face = self._pyramid_min_face(scale)
        # MTCNN's image pyramid is empty (and it crashes) below one minimum face.
        if min(small.shape[:2]) < pyramid_min_face:
            return None
        return DetectionInput(small, image.shape, pyramid_min_face)

    def smallest_face(self, shape: tuple[int, ...]) -> int:
        """The smallest face side, in the image's own pixels, searched for in an image of
        `shape`: the minimum face, unless downscaling for detection pushes it higher."""
        scale = min(1.0, self.max_side / max(shape[:2]))
        return max(self.min_face_size, math.ceil(self._pyramid_min_face(scale) / scale))

    def _pyramid_min_face(self, scale: float) -> int:
        return max(MTCNN_SMALLEST_FACE, round(self.min_face_size * scale))

    def run(self, inputs: list[DetectionInput]) -> list[RawDetection]:
        """One MTCNN pass over inputs that share a batch_key."""
        if not inputs:
            return []
        if len({item.batch_key for item in inputs}) != 1:
            raise ValueError("MTCNN batches only images of one size and minimum face")
        if self.process is not None:
            return self.process.run(inputs)
        batch = np.stack([item.image for item in inputs]) if len(inputs) > 1 else inputs[0].image
        min_face = inputs[0].pyramid_min_face
        return on_device_thread(self.device, self._detect, batch, min_face)

    def _detect(self, images: Any, pyramid_min_face: int) -> list[RawDetection]:
        from app.pipeline.mtcnn_stages import detect_faces

        with self._lock:
            mtcnn = self._nets()
            mtcnn.min_face_size = pyramid_min_face
            return detect_faces(mtcnn, images)

    def _nets(self) -> MTCNN:
        """This process's MTCNN, built on first use where it was not built at once; called
        on the device's thread, under the lock or before the detector is shared."""
        if self._mtcnn is None:
            self._mtcnn = self._build()
        return self._mtcnn

    def to_faces(self, item: DetectionInput, raw: RawDetection) -> list[DetectedFace]:
        """MTCNN's output for one input as faces in original-image coordinates."""
        boxes, probs, points = raw
        if boxes is None:
            return []
        return to_original_faces(boxes, probs, points, item.original_shape, item.image.shape)

    def faces(self, item: DetectionInput, raw: RawDetection) -> list[DetectedFace]:
        """`to_faces`, with the padded second look when MTCNN found nothing."""
        return self.to_faces(item, raw) or self.detect_padded(item)

    def detect(self, image: ImageArray) -> list[DetectedFace]:
        """Faces sorted by detection probability, highest first; [] when there are none."""
        item = self.prepare(image)
        if item is None:
            return []
        return self.faces(item, self.run([item])[0])

    def detect_padded(self, item: DetectionInput) -> list[DetectedFace]:
        """The second look when nothing was found. MTCNN misses a face that fills the whole
        frame, as in tightly cropped face datasets; with a quarter of the image's size of
        edge pixels added on each side it finds them."""
        small = item.image
        pad_y, pad_x = (round(side * PAD_RETRY_FRACTION) for side in small.shape[:2])
        padded = np.pad(small, ((pad_y, pad_y), (pad_x, pad_x), (0, 0)), mode="edge")
        boxes, probs, points = self.run(
            [DetectionInput(padded, padded.shape, item.pyramid_min_face)]
        )[0]
        if boxes is None:
            return []
        shift = np.array([pad_x, pad_y], dtype=np.float32)
        boxes = (np.asarray(boxes, dtype=np.float32).reshape(-1, 2, 2) - shift).reshape(-1, 4)
        points = np.asarray(points, dtype=np.float32).reshape(-1, 5, 2) - shift
        return to_original_faces(boxes, probs, points, item.original_shape, small.shape)

    def detect_batch(self, images: list[ImageArray]) -> list[list[DetectedFace]]:
        """`detect` for each image, sharing MTCNN passes between images of one batch_key."""
        results: list[list[DetectedFace]] = [[] for _ in images]
        groups: dict[tuple[tuple[int, ...], int], list[tuple[int, DetectionInput]]] = {}
        for i, image in enumerate(images):
            item = self.prepare(image)
            if item is not None:
                groups.setdefault(item.batch_key, []).append((i, item))
        for members in groups.values():
            raws = self.run([item for _, item in members])
            for (i, item), raw in zip(members, raws, strict=True):
                results[i] = self.faces(item, raw)
        return results
