"""AppState: everything the lifespan builds, reached by routes through api/deps.py."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.errors import ModelError, NotReady
from app.index import FaceIndex
from app.metrics import Metrics
from app.pipeline.analyzer import FacePipeline
from app.security import KeyRing
from app.services.inference_pool import InferencePool
from app.services.key_guesses import KeyGuessThrottle, throttle_for
from app.services.pixel_budget import PixelBudget, pixels_held
from app.services.rate_limit import RateLimiter
from app.training.supervisor import JobSupervisor

T = TypeVar("T")


@dataclass(frozen=True)
class Thresholds:
    """Active cosine thresholds; FAR figures are known only once calibrated."""

    verify: float
    identify: float
    verify_far: float | None = None
    identify_far: float | None = None
    source: str = "embedder default"
    # The gallery size identify_far is stated for: the live one, in what the calibration's
    # N counts (faces, or subjects with faces), so that the FAR grows with the gallery.
    identify_far_gallery_size: int | None = None
    # How identify_far was estimated (Calibration.method); None when it is not stated.
    identify_far_method: str | None = None


@dataclass
class Runtime:
    """The parts that exist only once models are loaded and the index is reconciled."""

    pipeline: FacePipeline
    index: FaceIndex
    thresholds: Thresholds
    index_how: str = "loaded"
    # Set when the stored calibration could not be read at start-up: the thresholds held
    # are the defaults, not the calibrated ones, so verify and identify decide nothing until
    # it is readable again, deleted, or replaced by a new calibration.
    calibration_error: str | None = None
    # services/thresholds.calibration_stamp when the thresholds were read: the model
    # watcher re-reads them when it changes.
    calibration_stamp: object = None

    @property
    def model_version(self) -> str:
        return self.pipeline.embedder.version

    def decision_thresholds(self) -> Thresholds:
        """The thresholds verify and identify decide with; ModelError (503) while the
        stored calibration is unreadable."""
        if self.calibration_error is not None:
            raise ModelError(
                "Verify and identify are paused: the calibration cannot be read. Fix "
                "it, DELETE /v1/admin/calibration, or POST /v1/admin/calibrate; the service "
                "log says what is wrong."
            )
        return self.thresholds


@dataclass
class AppState:
    settings: Settings
    keys: KeyRing
    metrics: Metrics
    engine: Engine
    sessions: sessionmaker[Session]
    pool: InferencePool
    pixels: PixelBudget
    # Serialises "DB commit then index update" so the index never diverges from the DB.
    write_lock: threading.Lock = field(default_factory=threading.Lock)
    # One index rebuild at a time (admin or automatic); it builds outside write_lock.
    rebuild_lock: threading.Lock = field(default_factory=threading.Lock)
    runtime: Runtime | None = None
    startup_error: str | None = None
    # Set while the active model (another process promoted or activated it) cannot be
    # loaded here: this process would embed enrolments and probes in a version the others
    # no longer serve, so it takes none (503) and /v1/ready says why.
    model_error: str | None = None
    index_dirty: bool = False
    jobs: JobSupervisor = field(default_factory=JobSupervisor)
    limiter: RateLimiter | None = None  # FACE_RATE_LIMIT; None: off
    # FACE_AUTH_FAILURE_LIMIT, from the settings; None: off.
    key_guesses: KeyGuessThrottle | None = field(init=False)

    def __post_init__(self) -> None:
        limit = self.settings.auth_failure_limit
        self.key_guesses = throttle_for(limit, self.settings.auth_failure_burst)

    def require_runtime(self) -> Runtime:
        if self.runtime is None:
            reason = self.startup_error or "models are still loading"
            if self.startup_error and self.keys.enabled:
                # Any client key sees this; the error can name files and their content.
                reason = "start-up failed; the service log says why"
            raise NotReady(f"The service is not ready: {reason}.")
        return self.runtime

    def serving_runtime(self) -> Runtime:
        """require_runtime, for what embeds faces: ModelError (503) while this process
        cannot serve the active model."""
        runtime = self.require_runtime()
        if self.model_error is not None:
            # Any client key sees this; the error can name files.
            said = "" if self.keys.enabled else f" ({self.model_error})"
            raise ModelError(
                f"This process cannot serve the active model{said}; another process may. "
                "The service log says why."
            )
        return runtime

    async def infer(
        self,
        fn: Callable[..., T],
        *args: object,
        images: Sequence[bytes] = (),
        one_at_a_time: bool = False,
    ) -> T:
        """Run blocking inference on the bounded inference pool, off the event loop, once
        the uploaded `images` it decodes fit in the pixel budget: all of them, or only the
        largest where `fn` lets each go before decoding the next."""
        pixels = pixels_held(images, self.settings.max_image_pixels, one_at_a_time)
        if not pixels:
            return await self.pool.run(fn, *args)
        await self.pixels.acquire(pixels)
        try:
            work = self.pool.submit(fn, *args)
        except BaseException:  # the pool has shut down
            self.pixels.release(pixels)
            raise
        self.pixels.release_when_done(work, pixels)
        return await asyncio.wrap_future(work)
