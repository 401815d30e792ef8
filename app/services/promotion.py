"""Serving a newly promoted or activated model: embed, build its index aside, swap at once."""

from __future__ import annotations

import asyncio
import logging
import time

from app.errors import FaceServiceError
from app.gallery import embeddings_repo, models_repo
from app.index import reconcile
from app.services.active_model import desired_version, load_version
from app.services.heap import resettle_heap
from app.services.index_sync import IndexFollower
from app.services.loaded_models import Models, saved_traces
from app.services.model_index import save_index
from app.services.reembed import embed_missing
from app.services.runtime import build_runtime
from app.services.thresholds import calibration_stamp, count_gallery, refresh_thresholds
from app.state import AppState, Runtime

log = logging.getLogger(__name__)

# How often identify's stated FAR is brought up to the gallery's size (two COUNT queries).
GALLERY_RECOUNT_S = 30.0
# How long a model that failed to load waits before it is tried again unchanged.
RETRY_FAILED_S = 60.0


async def watch_models(state: AppState) -> None:
    """Lifespan task: every poll interval, serve whatever model the database says is active,
    with the thresholds stored for it."""
    watcher = ModelWatcher(state)
    failing = False
    while True:
        await asyncio.sleep(state.settings.finetune_poll_interval_s)
        try:
            await asyncio.to_thread(watcher.tick)
        except Exception as error:  # the old model keeps serving; the next tick retries
            # A traceback the first time; then one line a tick, not one per second of an
            # outage (a database restart, say).
            if failing:
                log.warning("model watcher still failing: %s", error)
            else:
                # Following the active model or its calibration; both stay as served.
                log.exception("model watcher failed; the serving model and thresholds stay")
            failing = True
        else:
            failing = False


def unloaded_active_model(state: AppState, runtime: Runtime) -> str | None:
    """At start-up: why `runtime` serves another version than the active one (its weights
    could not be loaded here, as the log says), or None when it serves that one. Until the
    watcher's first tick the process would otherwise enrol under the old one."""
    with state.sessions.begin() as session:
        row = desired_version(session, state.settings, runtime.pipeline.embedder.name)
    if row.id == runtime.model_version:
        return None
    return f"cannot load {row.id}; the service log says why"


class ModelWatcher:
    """Reaps the training process and swaps the runtime when the active model changes."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self._failed: tuple[object, object] | None = None  # (wanted, its calibration stamp)
        self._failed_at = 0.0
        self._settle = False
        self._counted = time.monotonic()
        self._index = IndexFollower(state)

    def tick(self) -> None:
        state = self.state
        state.jobs.reap(state.sessions)
        runtime = state.runtime
        if runtime is None:
            return
        self._follow_calibration(runtime)
        self._follow_gallery(runtime.model_version)
        self._index.tick()  # what other processes sharing the database wrote
        with state.sessions.begin() as session:
            row = desired_version(session, state.settings, runtime.pipeline.embedder.name)
            wanted = (row.id, row.activated_at)
        if row.id == runtime.model_version:
            state.model_error = None
            if self._settle:
                self._settle = False
                with state.write_lock:
                    self._complete(runtime)
            return
        # A failure is tried again once the active model, or the wanted model's calibration
        # (which a swap reads), has changed: each try embeds and builds an index anew. A
        # model this host cannot load is also tried again RETRY_FAILED_S later (its weights
        # copied to this FACE_MODELS_DIR, say); loading fails before any of that work.
        attempt = (wanted, calibration_stamp(state.settings, state.sessions, row.id))
        if attempt == self._failed and (
            state.model_error is None or time.monotonic() - self._failed_at < RETRY_FAILED_S
        ):
            return
        try:
            device = runtime.pipeline.embedder.device
            embedder = load_version(state.settings, row, device, saved_traces(state.settings))
        except (FaceServiceError, OSError, RuntimeError, ValueError) as error:
            # This host's problem (the weights are in another host's models folder, say):
            # the others serve the model, so this process takes no faces until it can.
            self._failed, self._failed_at = attempt, time.monotonic()
            state.model_error = f"cannot load {row.id}: {error}"
            log.error("cannot load %s: %s; embedding nothing until it can", row.id, error)
            return
        state.model_error = None
        try:
            self.swap(Models(detector=runtime.pipeline.detector, embedder=embedder))
        except FaceServiceError as error:  # an unreadable calibration, say: every process
            # meets it, so this one keeps serving what it serves, as the others do.
            self._failed = attempt
            log.error("cannot serve %s: %s; still serving %s", row.id, error, runtime.model_version)

    def _follow_calibration(self, serving: Runtime) -> None:
        """Serve thresholds that another process (`python -m app calibrate`, or another
        service process's admin endpoint) stored, from the next tick on, as this one's
        admin endpoint's serve from the next request. An older release's calibration.json,
        fixed or removed by hand, counts as a change too."""
        state = self.state
        stamp = calibration_stamp(state.settings, state.sessions, serving.model_version)
        if stamp == serving.calibration_stamp:
            return
        try:
            with state.write_lock:
                runtime = refresh_thresholds(state, serving.model_version)
        except FaceServiceError as error:  # broken by hand: what serves stays (README)
            log.warning("calibration changed but cannot be read: %s", error)
            return
        if runtime is not None:
            log.info("calibration changed; serving %s", runtime.thresholds)

    def _follow_gallery(self, version: str, every_s: float = GALLERY_RECOUNT_S) -> None:
        """State identify's FAR for the gallery as it has grown (or shrunk) meanwhile."""
        if time.monotonic() - self._counted < every_s:
            return
        self._counted = time.monotonic()
        counts = count_gallery(self.state.sessions)  # outside the lock: writes go on
        try:
            with self.state.write_lock:
                refresh_thresholds(self.state, version, counts)
        except FaceServiceError as error:  # e.g. a calibration broken by hand
            # The thresholds serving stay; the rest of the tick (model swaps) goes on.
            log.warning("cannot re-state identify's FAR: %s", error)

    def swap(self, models: Models) -> None:
        """Build the new runtime beside the old one, then replace it in one assignment."""
        state = self.state
        previous = state.require_runtime()
        previous_version = previous.model_version
        # Embeds crops that lack this version's vectors, then loads or rebuilds its index.
        fresh = build_runtime(
            state.settings, state.sessions, models, state.metrics, state.pool.running
        )
        with state.write_lock:
            if not self._still_wanted(fresh.model_version, models.embedder.name):
                return
            if state.index_dirty:
                save_index(state.settings, previous.index)
                state.index_dirty = False
            # Writes wait from here: catch up faces enrolled or deleted since the build.
            self._complete(fresh)
            state.runtime = fresh
        # Requests that read the old runtime just before the swap may still write to it;
        # one more pass after they finish brings their faces over.
        self._settle = True
        del previous  # so that the collector can free the old runtime
        resettle_heap()
        state.metrics.index_size.set(len(fresh.index))
        log.info(
            "now serving %s (was %s): %d faces indexed",
            fresh.model_version,
            previous_version,
            len(fresh.index),
        )

    def _still_wanted(self, version: str, name: str) -> bool:
        """Under the write lock, after a build of minutes: whether `version` is still the
        one to serve. An admin may have activated another and deleted this one meanwhile
        (DELETE /v1/admin/models holds the same lock); then the vectors the build wrote
        for it go too."""
        with self.state.sessions.begin() as session:
            if desired_version(session, self.state.settings, name).id == version:
                return True
            if models_repo.discard_unregistered(session, version):
                log.warning(
                    "model %s was deleted while it was being built; not serving it", version
                )
            else:
                log.info("model %s is no longer the active one; not swapping to it", version)
        return False

    def _complete(self, runtime: Runtime) -> None:
        """Under the write lock: embed new faces' crops and make the index match the DB."""
        state, version = self.state, runtime.model_version
        embed_missing(state.sessions, runtime.pipeline.embedder)
        with state.sessions() as session:
            report = reconcile(
                runtime.index,
                embeddings_repo.model_face_ids(session, version),
                lambda ids: embeddings_repo.vectors_for(session, version, ids),
            )
        if report.added or report.removed:
            state.index_dirty = True
