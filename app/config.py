"""Service settings, read from FACE_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"

FacePolicy = Literal["prominent", "largest", "center", "best"]
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Settings(BaseSettings):
    """Every tunable of the service; one instance is built per app."""

    model_config = SettingsConfigDict(env_prefix="FACE_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("data"), description="Folder for the SQLite file and indexes.")
    models_dir: Path = Field(REPO_MODELS_DIR, description="Folder holding model weights.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default is SQLite in the data folder."
    )
    embedder: str = Field(
        "auto",
        description="facenet-vggface2, arcface-mbf, or auto (facenet when its weights exist).",
    )
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    embed_precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="Number format of embedding inference: auto is bf16 where the CPU or GPU "
        "computes it natively (about 2x faster on the CPU), else fp32. fp16 is for GPUs: "
        "most CPUs emulate it, many times slower.",
    )
    torchscript: bool = Field(
        True,
        description="Run detection and embedding networks as TorchScript, which holds the "
        "GIL only between calls: several times the throughput of eager PyTorch beside busy "
        "Python request threads. A network that fails to trace runs eagerly.",
    )
    gpu_warmup: bool = Field(
        True,
        description="On a GPU, run the networks once at each padded batch size before "
        "serving, and a swapped-in model's embedder before it serves: a size's first pass "
        "took about 1 s on an H200. Adds seconds to start-up; nothing happens on the CPU.",
    )
    detection_process: bool = Field(
        True,
        description="On the CPU, run face detection (MTCNN) in a child process of its own, "
        "so that the service's Python threads do not stall it on the GIL; it restarts if "
        "it dies. GPUs detect in the service process.",
    )
    api_keys: str = Field(
        "", description="Comma-separated role:key entries (admin/client); keys are printable ASCII."
    )
    api_docs: bool = Field(
        True,
        description="Serve the OpenAPI description (/openapi.json) and its pages (/docs, /redoc) "
        "without a key. false: they answer 404, and the API's shape stays private.",
    )
    rate_limit: float = Field(
        0.0,
        ge=0,
        allow_inf_nan=False,
        description="Requests a second each API key may make to the keyed endpoints (by client "
        "address when there are no keys); more get 429 rate_limited with Retry-After. Counted "
        "per service process. 0: no limit.",
    )
    rate_limit_burst: int = Field(
        0, ge=0, description="Requests a key may make at once above the rate. 0: one second's."
    )
    auth_failure_limit: float = Field(
        1.0,
        ge=0,
        allow_inf_nan=False,
        description="Requests a second with a missing or wrong API key each client address may "
        "make; more get 429 rate_limited with Retry-After, as does a valid key the address has "
        "not used before. Counted per service process, apart from FACE_RATE_LIMIT. 0: no limit.",
    )
    auth_failure_burst: int = Field(
        10, ge=0, description="Failed key attempts an address may make at once. 0: one second's."
    )
    host: str = Field("127.0.0.1", description="Bind address for `python -m app serve`.")
    port: int = Field(8000, ge=1, le=65535, description="Bind port for `python -m app serve`.")
    http_max_header_bytes: int = Field(
        131_072,
        ge=16_384,
        description="Most bytes of a request's line and headers; more get 431 "
        "headers_too_large, before they are parsed (`python -m app serve`).",
    )
    http_header_timeout_s: float = Field(
        10.0,
        gt=0,
        allow_inf_nan=False,
        description="Seconds a connection has to send a request's line and headers, from its "
        "opening or the request's first byte; then 408 request_timeout and it is closed.",
    )
    http_body_timeout_s: float = Field(
        30.0,
        gt=0,
        allow_inf_nan=False,
        description="Longest pause in a request's body (not counting while the service is "
        "not reading it); then the connection is closed, or answered 408 if no answer began.",
    )
    http_max_connections: int = Field(
        0,
        ge=0,
        description="Most open client connections; more are answered 503 "
        "too_many_connections and closed at once. 0: half the process's open-file limit, "
        "at most 4096.",
    )

    verify_threshold: float | None = Field(
        None, ge=-1, le=1, description="Cosine threshold for 1:1 verify; default per embedder."
    )
    identify_threshold: float | None = Field(
        None, ge=-1, le=1, description="Cosine threshold for 1:N identify; default per embedder."
    )

    max_upload_bytes: int = Field(
        10 * 1024 * 1024, ge=1, description="Largest accepted file, bytes."
    )
    max_files_per_request: int = Field(
        20, ge=1, le=1000, description="Most files in one enrolment request (at most 1000)."
    )
    max_image_pixels: int = Field(40_000_000, ge=1, description="Largest decoded image, pixels.")
    max_pixels_in_flight: int = Field(
        0,
        ge=0,
        description="Most image pixels that running requests hold decoded at once; later "
        "requests wait their turn. 0: twice max_image_pixels.",
    )
    detect_max_side: int = Field(
        960,
        ge=64,
        le=4096,
        description="Images are downscaled to this longest side for detection (64 to 4096). "
        "MTCNN's work grows with its square, 18 times 960's at 4096; there it already finds "
        "faces of 36 px, about the quality gate's minimum, in a 4:3 photo of the default "
        "40 megapixels.",
    )
    max_faces: int = Field(20, ge=1, description="Most faces identify analyses in one image.")
    max_detect_faces: int = Field(
        100, ge=1, description="Most faces detect reports for one image, the largest first."
    )

    min_face_size: int = Field(32, ge=0, description="Smallest accepted face box side, pixels.")
    min_detection_probability: float = Field(
        0.90, ge=0, le=1, description="Smallest accepted MTCNN probability."
    )
    min_blur_variance: float = Field(
        25.0,
        ge=0,
        description="Least sharpness (contrast-normalised LoG variance) of the aligned face.",
    )

    probe_quality: Literal["report", "refuse"] = Field(
        "report",
        description="A verify or identify face that fails the quality gate: report decides "
        "anyway (its quality says it failed); refuse answers verify with 422 low_quality and "
        "matches no one to it in identify.",
    )

    store_crops: bool = Field(
        True, description="Keep an aligned face crop per face (needed for re-embedding)."
    )
    index_type: Literal["flat", "hnsw"] = Field(
        "hnsw",
        description="FAISS index kind: hnsw (approximate, fast at 1M faces) or flat (exact).",
    )
    index_ef_search: int = Field(
        0,
        ge=0,
        description="HNSW candidates per search (recall against speed); 0 scales with the "
        "gallery: 1 per 1,000 faces, from 128 to 4,096.",
    )
    index_auto_rebuild: bool = Field(
        True,
        description="Rebuild an hnsw index in the background once deletes leave over 10% "
        "tombstones (checked every index_save_interval_s).",
    )
    index_save_interval_s: float = Field(
        30.0, ge=0.1, description="How often a changed index is written to disk."
    )
    inference_workers: int = Field(
        0,
        ge=0,
        description="Threads running detection and embedding; their batches share passes. "
        "0: 16 on the CPU, 8 on a GPU (docs/benchmarks.md, sections 2 and 5).",
    )
    torch_threads: int = Field(
        0,
        ge=0,
        description="Torch intra-op threads. 0: cores / inference_workers (at least 1) in the "
        "service, all cores in commands and fine-tuning.",
    )
    batch_max_size: int = Field(
        0,
        ge=0,
        description="Most faces (or same-size images) concurrent requests share in one forward "
        "pass; 1 turns micro-batching off. 0: 4 on the CPU, 8 on a GPU. Batches form only with "
        "inference_workers > 1.",
    )
    batch_max_wait_ms: float = Field(
        2.0, ge=0, description="Longest a batch waits for more concurrent requests to join it."
    )
    batch_detect: bool = Field(
        True, description="Also batch MTCNN detection of concurrent images of equal size."
    )
    log_level: str = Field(
        "INFO", description="Python logging level: DEBUG, INFO, WARNING, ERROR or CRITICAL."
    )
    finetune_external_pairs: Path | None = Field(
        None, description="Pairs CSV (path_a,path_b,same) checked before promoting a fine-tune."
    )
    finetune_external_root: Path | None = Field(
        None, description="Folder the external pair paths are under; default the CSV's folder."
    )
    finetune_external_tolerance: float = Field(
        0.5, ge=0, description="Most the external TAR@FAR=1e-2 may drop (points) to promote."
    )
    index_sync_interval_s: float = Field(
        30.0,
        ge=0,
        description="How often the index takes in faces that other processes sharing the "
        "database enrolled or deleted; 0: never.",
    )
    finetune_poll_interval_s: float = Field(
        1.0, gt=0, description="How often the service looks for a newly promoted model."
    )
    finetune_stall_timeout_s: float = Field(
        900.0,
        ge=0,
        description="A fine-tuning job that finishes no training step, evaluation or "
        "embedding batch for this long is hung: it ends failed and its process is ended, "
        "freeing the training slot. 0: never.",
    )

    finetune_fail_after_steps: int | None = Field(
        None, ge=1, description="Testing only: fine-tuning jobs fail after this many steps."
    )

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return level

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'faces.db').resolve()}"

    @property
    def pixels_in_flight(self) -> int:
        return self.max_pixels_in_flight or 2 * self.max_image_pixels

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"


def get_settings() -> Settings:
    return Settings()
