"""Fine-tuning jobs and model versions: request parameters, progress, results, listings."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

TrainLayers = Literal["head", "last_block", "all"]
LossName = Literal["arcface", "cosface", "triplet"]
JobState = Literal[
    "queued", "running", "cancelling", "succeeded", "failed", "cancelled", "interrupted"
]
PromotionRule = Literal[
    "forced",
    "validation_improved",
    "validation_not_improved",
    "validation_unmeasurable",
    "external_dropped",
    "weights_unchanged",
]


# Faces in a micro-batch the triplet loss can learn from: two subjects, two faces each.
MIN_TRIPLET_MICRO_BATCH = 4


class FinetuneParams(BaseModel):
    """Hyperparameters of one fine-tuning run; every field has a default."""

    # NaN fails every bound, so without it the refusal names a bound it does not break.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    epochs: int = Field(3, ge=1, le=1000, description="Passes over the training faces.")
    micro_batch_size: int = Field(
        32, ge=2, le=4096, description="Faces per forward/backward pass: what must fit in memory."
    )
    accumulation_steps: int = Field(
        4, ge=1, le=1024, description="Micro-batches whose gradients make one optimizer step."
    )
    learning_rate: float = Field(1e-4, gt=0, le=1, description="AdamW learning rate.")
    weight_decay: float = Field(5e-4, ge=0, le=1, description="AdamW weight decay.")
    train_layers: TrainLayers = Field("head", description="head, last_block or all.")
    loss: LossName = Field("arcface", description="arcface, cosface or triplet (batch-hard).")
    validation_fraction: float = Field(
        0.25,
        gt=0,
        lt=1,
        description="Share of faces held out for validation, each by a fixed hash of its id; "
        "at most what the serving model's lineage used.",
    )
    seed: int = Field(
        0, ge=0, le=2**32 - 1, description="Seeds batches and augmentation, not the split."
    )
    device: str = Field(
        "auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto, cpu, cuda or cuda:N."
    )
    amp: bool | None = Field(None, description="bf16 autocast; default: on for CUDA, off on CPU.")
    force: bool = Field(False, description="Promote even when the promotion rule says no.")

    @property
    def effective_batch_size(self) -> int:
        return self.micro_batch_size * self.accumulation_steps


class FinetuneRequest(FinetuneParams):
    """FinetuneParams as a new job asks for them: checked by rules that stored jobs, asked
    for before a rule existed, must still be readable without."""

    # Strict types: `"force": "yes"` was read as true and overrode the promotion rule, and
    # `"epochs": true` ran one epoch. An integer still counts as a float.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    @model_validator(mode="after")
    def _triplets_need_two_subjects_per_batch(self) -> Self:
        # Batches hold faces two per subject, and batch-hard mining looks only inside one
        # micro-batch: with 2 faces there is never a negative, and the job "succeeded"
        # with a loss of 0, having learnt nothing but weight decay.
        if self.loss == "triplet" and self.micro_batch_size < MIN_TRIPLET_MICRO_BATCH:
            raise ValueError(
                f"the triplet loss needs micro_batch_size >= {MIN_TRIPLET_MICRO_BATCH} "
                "(two subjects with two faces each), to find a negative in each micro-batch"
            )
        return self


class JobAccepted(BaseModel):
    job_id: str
    state: JobState
    effective_batch_size: int


class JobProgress(BaseModel):
    phase: str = Field("queued", examples=["training"])
    epoch: int = Field(0, description="1-based epoch being trained.")
    epochs: int = 0
    step: int = Field(0, description="Optimizer steps taken.")
    total_steps: int = 0
    loss: float | None = Field(None, description="Mean micro-batch loss of the epoch so far.")
    effective_batch_size: int = 0
    images_seen: int = 0
    reembedded: int = 0
    to_reembed: int = 0
    elapsed_s: float = 0.0
    eta_s: float | None = Field(None, description="Estimated seconds until the job ends.")


class PairMetrics(BaseModel):
    """Verification metrics of one model on one set of pairs."""

    pairs: int
    genuine: int
    impostor: int
    accuracy: float = Field(description="k-fold accuracy (threshold chosen on the other folds).")
    roc_auc: float
    far: float = 0.01
    tar_at_far: float
    tar_reliable: bool = Field(description="Whether there are enough impostors for this FAR.")
    excluded_pairs: int = Field(0, description="Pairs left out because a photo had no face.")


class BeforeAfter(BaseModel):
    before: PairMetrics
    after: PairMetrics | None = None


class PromotionDecision(BaseModel):
    promote: bool
    rule: PromotionRule
    reason: str
    metric: str = "tar_at_far"
    tolerance_points: float


class TrainSummary(BaseModel):
    steps: int
    micro_batches: int
    final_loss: float | None
    trainable_parameters: int


class JobResult(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    base_model: str
    validation: BeforeAfter
    external: BeforeAfter | None = None
    promotion: PromotionDecision
    model_id: str | None = None
    checkpoint: str | None = None
    dataset: dict[str, int]
    train: TrainSummary
    reembedded: int = 0
    faces_without_crops: int = 0
    durations_s: dict[str, float]


class JobPublic(BaseModel):
    id: str
    state: JobState
    params: FinetuneParams
    progress: JobProgress
    result: JobResult | None = None
    error: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class JobList(BaseModel):
    jobs: list[JobPublic]


class ModelPublic(BaseModel):
    id: str = Field(description="The embedder version, as in /v1/info model_version.")
    embedder: str
    base_version: str | None
    sha256: str
    weights_path: str | None = Field(description="Relative to the models folder; null: packaged.")
    metrics: dict[str, Any]
    job_id: str | None
    created_at: datetime
    activated_at: datetime | None
    active: bool = Field(description="Chosen to serve (the latest activated of its embedder).")
    serving: bool = Field(description="Serving now; lags `active` while a swap is prepared.")
    embeddings: int = Field(description="Faces with a vector under this version.")


class ModelList(BaseModel):
    models: list[ModelPublic]
