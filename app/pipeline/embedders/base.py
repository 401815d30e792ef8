"""Embedder base class: aligned face crops in, L2-normalised embeddings out."""

from __future__ import annotations

import copy
import functools
import itertools
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from app.pipeline.device_thread import on_device_thread
from app.pipeline.embedders.precision import autocast, precision_name
from app.pipeline.shape_buckets import buckets, run_padded
from app.pipeline.torchscript import trace_module
from app.pipeline.types import AlignTemplate, FloatArray, ImageArray

if TYPE_CHECKING:
    from app.pipeline.embedders.registry import ModelSpec, Thresholds
    from app.pipeline.embedders.saved_traces import SavedTraces


def make_template(size: int, points: Sequence[Sequence[float]]) -> AlignTemplate:
    """An AlignTemplate whose points cannot be changed by accident (it is shared by class)."""
    array = np.asarray(points, dtype=np.float32).reshape(5, 2)
    array.setflags(write=False)
    return AlignTemplate(size=size, points=array)


Runner = Callable[[torch.Tensor], torch.Tensor]

# On a GPU, embed() runs batches padded to a power of two from 16 rows, in chunks of at
# most 256 faces: 5 batch shapes in all (app/pipeline/shape_buckets.py).
GPU_SMALLEST_BATCH = 16
GPU_LARGEST_BATCH = 256


def _weights_version(module: torch.nn.Module) -> tuple[tuple[int, int], ...]:
    """Changes whenever a parameter or buffer is replaced or modified in place."""
    tensors = itertools.chain(module.parameters(), module.buffers())
    return tuple((id(t), t._version) for t in tensors)


def _run_eager(
    module: torch.nn.Module,
    device: torch.device,
    precision: torch.dtype | None,
    batch: torch.Tensor,
) -> torch.Tensor:
    with autocast(device, precision):
        output: torch.Tensor = module(batch)
    return output


class Embedder(ABC):
    """One face-recognition network; subclasses say how to build it and scale its input."""

    name: ClassVar[str]
    template: ClassVar[AlignTemplate]
    embedding_dim: ClassVar[int] = 512
    # Input scaling: pixel -> (pixel - input_mean) / input_std, as each model was trained.
    input_mean: ClassVar[float] = 127.5
    input_std: ClassVar[float]

    def __init__(
        self,
        module: torch.nn.Module | Callable[[], torch.nn.Module],
        device: torch.device,
        weights_sha256: str,
        default_thresholds: Thresholds,
        precision: torch.dtype | None = None,
        torchscript: bool = True,
        licence: str = "",
    ) -> None:
        self.device = device
        # A callable builds the network on first use of `module`: a service that loads its
        # saved TorchScript copy (freeze_for_serving) never converts or imports it at all.
        self._module: torch.nn.Module | None = None
        self._build_module: Callable[[], torch.nn.Module] | None = None
        if isinstance(module, torch.nn.Module):
            self._module = self._placed(module)
        else:
            self._build_module = module
        self._module_lock = threading.Lock()
        # The autocast dtype of embed(); None is fp32. forward() (fine-tuning) ignores it.
        self.precision = precision
        # embed() runs a TorchScript copy of the module, which releases the GIL (see
        # app/pipeline/torchscript.py); False, or a module that will not trace, runs eagerly.
        self.torchscript = torchscript
        # (what it was built for, the runner): see inference_runner.
        self._runner: tuple[object, Runner] | None = None
        self._unsaved_trace: torch.jit.ScriptModule | None = None  # the runner's, if traced
        self._runner_lock = threading.Lock()
        self._weights_fixed = False  # freeze_for_serving() was called
        self.weights_sha256 = weights_sha256
        # The version keys the FAISS index and stored embeddings, so new weights never mix.
        self.version = f"{self.name}@{weights_sha256[:12]}"
        self.default_thresholds = default_thresholds
        # The pretrained weights' terms (models/registry.json); fine-tuned weights inherit them.
        self.licence = licence
        # Pad embed()'s batches to a few fixed sizes: on a GPU, each new size costs about
        # a second the first time. Not on the CPU, where padding rows cost their share.
        self.pad_batches = device.type == "cuda"

    @property
    def module(self) -> torch.nn.Module:
        """The network, in eval mode on the device: built now if it was given as a callable."""
        return self._module if self._module is not None else self.build_module()

    def build_module(self) -> torch.nn.Module:
        """`module`, built now if it was not yet."""
        with self._module_lock:
            if self._module is None:
                assert self._build_module is not None
                self._module = self._placed(self._build_module())
                self._build_module = None
            return self._module

    def _placed(self, module: torch.nn.Module) -> torch.nn.Module:
        module = module.to(self.device).eval()
        if self.device.type == "cpu":
            # Convolutions run 10-30% faster on NHWC tensors on the CPU; outputs are the same.
            module.to(memory_format=torch.channels_last)
        return module

    @classmethod
    @abstractmethod
    def load_pretrained(cls, path: Path) -> torch.nn.Module:
        """Build the network from the registry's weights file (already checksummed)."""

    @classmethod
    @abstractmethod
    def architecture(cls, spec: ModelSpec, models_dir: Path) -> torch.nn.Module:
        """Build the network whose state_dict keys match a fine-tuned checkpoint."""

    def preprocess(self, faces: Sequence[ImageArray]) -> torch.Tensor:
        """Aligned uint8 RGB crops -> float NCHW batch on the device, scaled for the model."""
        size = self.template.size
        for face in faces:
            if face.shape != (size, size, 3) or face.dtype != np.uint8:
                raise ValueError(
                    f"{self.name} expects uint8 RGB crops of shape ({size}, {size}, 3), "
                    f"got {face.dtype} {face.shape}"
                )
        if not faces:
            return torch.empty((0, 3, size, size), device=self.device)
        # Ship uint8 to the device and convert there: a quarter of the bytes over PCIe.
        batch = torch.from_numpy(np.stack(faces)).to(self.device, non_blocking=True)
        batch = batch.permute(0, 3, 1, 2).float()
        batch = (batch - self.input_mean) / self.input_std
        if self.device.type == "cpu":
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch

    @property
    def precision_name(self) -> str:
        return precision_name(self.precision)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Raw embeddings for a preprocessed batch; differentiable, for fine-tuning."""
        output: torch.Tensor = self.module(batch)
        return output

    def freeze_for_serving(self, saved: SavedTraces | None = None) -> None:
        """Build embed()'s network now, and stop looking for changed weights at every call
        (a walk over every tensor of the module: about 0.3 ms of Python per batch). For a
        model whose weights nothing changes any more: the service's, where a new model is a
        new Embedder. Fine-tuning, which changes them, never calls this.

        The TorchScript copy it runs, traced now or by an earlier embed() (a GPU warm-up,
        re-embedding stored crops), is stored in `saved` for the next start to load
        (serve_saved); a copy that came from there is not stored again."""
        self.inference_runner()
        self._weights_fixed = True
        traced, self._unsaved_trace = self._unsaved_trace, None
        if saved is not None and traced is not None:
            saved.store(self, traced)

    def serve_saved(self, saved: SavedTraces) -> bool:
        """Run embed() on `saved`'s TorchScript copy of these weights, if it holds one that
        fits (app/pipeline/embedders/saved_traces.py), without building the network; the
        weights count as fixed, as after freeze_for_serving. False: no such copy, and
        nothing changed."""
        traced = saved.load(self) if self.torchscript else None
        if traced is None:
            return False
        with self._runner_lock:
            self._runner = ((), self._traced_runner(traced))
            self._unsaved_trace = None
            self._weights_fixed = True
        return True

    def inference_runner(self) -> Runner:
        """The network embed() runs, built on first use and again whenever the module's
        weights (a fine-tuning step, a loaded state dict) or `precision` change: a frozen
        TorchScript copy in the inference precision, or the module itself under autocast."""
        built = self._runner
        if self._weights_fixed and built is not None:
            return built[1]
        # The precision too: benchmarks/gpu.py sets it between figures, and each of its
        # fp32, bf16 and fp16 rows ran the first one's trace while only the weights counted.
        version = (_weights_version(self.module), self.precision)
        with self._runner_lock:
            if self._runner is None or self._runner[0] != version:
                self._runner = (version, self._build_runner())
            return self._runner[1]

    def _build_runner(self) -> Runner:
        traced = self._trace() if self.torchscript else None
        self._unsaved_trace = traced  # for freeze_for_serving to save
        if traced is None:
            # Not a bound method: the runner is stored on self, and a reference cycle would
            # outlive a swapped-out model once the service has frozen its heap (gc.freeze).
            return functools.partial(_run_eager, self.module, self.device, self.precision)
        return self._traced_runner(traced)

    def _traced_runner(self, traced: torch.jit.ScriptModule) -> Runner:
        dtype = self.precision

        def run(batch: torch.Tensor) -> torch.Tensor:
            output: torch.Tensor = traced(batch if dtype is None else batch.to(dtype))
            return output

        return run

    def _trace(self) -> torch.jit.ScriptModule | None:
        module = copy.deepcopy(self.module).eval()
        if self.precision is not None:
            module = module.to(self.precision)
        return trace_module(module, self.trace_examples())

    def trace_examples(self) -> list[torch.Tensor]:
        """The inputs a trace is made and checked with: random, but the same every time."""
        size = self.template.size
        memory = torch.channels_last if self.device.type == "cpu" else torch.contiguous_format
        generator = torch.Generator().manual_seed(0)
        return [
            torch.randn((n, 3, size, size), generator=generator)
            .to(self.device, self.precision or torch.float32)
            .contiguous(memory_format=memory)
            for n in (2, 3)
        ]

    def embed(self, faces: Sequence[ImageArray]) -> FloatArray:
        """(n, embedding_dim) float32 unit vectors for aligned crops, in one forward pass."""
        if not faces:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        # On a GPU, on the device's own thread (app/pipeline/device_thread.py).
        return on_device_thread(self.device, self._embed, faces)

    def _embed(self, faces: Sequence[ImageArray]) -> FloatArray:
        run = self.inference_runner()
        pad = self.pad_batches
        chunk = GPU_LARGEST_BATCH if pad else len(faces)
        parts = []
        with torch.inference_mode():
            for start in range(0, len(faces), chunk):
                batch = self.preprocess(faces[start : start + chunk])
                raw = run_padded(run, batch, GPU_SMALLEST_BATCH) if pad else run(batch)
                parts.append(F.normalize(raw.float(), dim=1))
            vectors = parts[0] if len(parts) == 1 else torch.cat(parts)
            result: FloatArray = vectors.cpu().numpy().astype(np.float32, copy=False)
        return result

    def warm_up(self) -> list[int]:
        """Runs embed() once at each padded batch size, so that no request pays for a
        size's first pass; the sizes run ([] where batches are not padded)."""
        if not self.pad_batches:
            return []
        size = self.template.size
        sizes = buckets(GPU_SMALLEST_BATCH, GPU_LARGEST_BATCH)
        for rows in sizes:
            self.embed([np.zeros((size, size, 3), np.uint8)] * rows)
        return sizes
