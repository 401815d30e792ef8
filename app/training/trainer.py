"""Fine-tune an embedder's network on gallery faces with a margin head or a triplet loss."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from app.pipeline.embedders import Embedder
from app.pipeline.types import FloatArray
from app.schemas.finetune import FinetuneParams, TrainSummary
from app.training.dataset import GalleryFaces, augment, epoch_batches
from app.training.heads import ArcFaceHead, CosFaceHead, batch_hard_triplet_loss
from app.training.layers import count, select_trainable, train_mode
from app.training.loop import LoopConfig, Progress, train
from app.training.split import Split
from app.training.tracker import JobCancelled

Batch = tuple[torch.Tensor, torch.Tensor]


class InjectedFailure(RuntimeError):
    """Raised on purpose by FACE_FINETUNE_FAIL_AFTER_STEPS, to test failure handling."""


def make_head(
    loss: str, vectors: FloatArray, labels: np.ndarray, device: torch.device
) -> nn.Module | None:
    """The margin head, its class centres started at each subject's mean embedding.

    Random centres would send large, meaningless gradients into a pretrained network for
    the first many steps; the means make the very first step already meaningful.
    """
    if loss == "triplet":
        return None
    classes = int(labels.max()) + 1
    dim = vectors.shape[1]
    head: ArcFaceHead | CosFaceHead = (
        ArcFaceHead(dim, classes) if loss == "arcface" else CosFaceHead(dim, classes)
    )
    centres = np.stack([vectors[labels == c].mean(axis=0) for c in range(classes)])
    with torch.no_grad():
        head.weight.copy_(F.normalize(torch.from_numpy(centres).float(), dim=1))
    return head.to(device)


def train_network(
    embedder: Embedder,
    faces: GalleryFaces,
    split: Split,
    vectors: FloatArray,
    params: FinetuneParams,
    on_step: Callable[[Progress, int], None],
    should_stop: Callable[[], bool],
    fail_after_steps: int | None = None,
) -> TrainSummary:
    """Train embedder.module in place; `vectors` are the starting embeddings of `faces`."""
    module, device = embedder.module, embedder.device
    torch.manual_seed(params.seed)
    rng = np.random.default_rng(params.seed)
    trainable = select_trainable(module, params.train_layers)
    train_labels = faces.labels[split.train]
    head = make_head(params.loss, vectors[split.train], train_labels, device)
    optimizer = torch.optim.AdamW(
        trainable + ([] if head is None else list(head.parameters())),
        lr=params.learning_rate,
        weight_decay=params.weight_decay,
    )
    amp = params.amp if params.amp is not None else device.type == "cuda"
    config = LoopConfig(epochs=params.epochs, accumulation_steps=params.accumulation_steps, amp=amp)
    micro_batches = math.ceil(len(split.train) / params.micro_batch_size)
    total_steps = params.epochs * math.ceil(micro_batches / params.accumulation_steps)
    labels = torch.from_numpy(faces.labels).to(device)

    def batches(epoch: int) -> Iterator[Batch]:
        for indices in epoch_batches(split.train, faces.labels, params.micro_batch_size, rng):
            images = augment([faces.images[i] for i in indices], rng)
            yield embedder.preprocess(images), labels[torch.from_numpy(indices).to(device)]

    def model_step(batch: Batch) -> torch.Tensor:
        x, y = batch
        embeddings = module(x)
        if head is None:
            return batch_hard_triplet_loss(embeddings, y)
        return F.cross_entropy(head(embeddings, y), y)

    def on_progress(progress: Progress) -> None:
        on_step(progress, total_steps)
        if fail_after_steps is not None and progress.step >= fail_after_steps:
            raise InjectedFailure(f"injected failure after {progress.step} steps (testing)")

    train_mode(module)
    try:
        result = train(
            model_step, batches, optimizer, config, on_progress, should_stop, device.type
        )
    finally:
        module.eval()
        module.requires_grad_(False)
    if result.stopped:
        raise JobCancelled("cancelled during training")
    return TrainSummary(
        steps=result.steps,
        micro_batches=result.micro_batches,
        # JSON (and PostgreSQL's json type) has no NaN or infinity.
        final_loss=(
            round(result.final_loss, 6)
            if result.final_loss is not None and math.isfinite(result.final_loss)
            else None
        ),
        trainable_parameters=count(trainable),
    )
