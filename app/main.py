"""create_app(settings): routers, error handlers, and the lifespan that builds AppState."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from app.api.access_log import drop_query_strings
from app.api.early_checks import find_route_roles
from app.api.form_guard import FormGuard
from app.api.handlers import install_error_handlers
from app.api.middleware import GuardAndMeasure
from app.api.openapi_schema import tighten_openapi
from app.api.query_guard import QueryGuard
from app.api.routes import admin, faces, health, jobs, recognition, subjects
from app.api.routes import models as model_routes
from app.api.upload_routes import find_upload_routes
from app.config import Settings, get_settings
from app.gallery import repository
from app.gallery.db import make_engine, make_session_factory, migrate
from app.metrics import Metrics
from app.security import MIN_KEY_LENGTH, KeyRing
from app.services.heap import settle_heap
from app.services.index_upkeep import flush_index, rebuild_when_needed, save_periodically
from app.services.inference_pool import InferencePool
from app.services.loaded_models import Models
from app.services.pixel_budget import PixelBudget, heap_trimmer
from app.services.promotion import unloaded_active_model, watch_models
from app.services.rate_limit import limiter_for
from app.services.runtime import build_runtime
from app.services.threads import inference_workers
from app.state import AppState

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, models: Models | None = None) -> FastAPI:
    """Build the app; `models` lets tests share loaded models between apps."""
    settings = settings or get_settings()

    metrics = Metrics()
    keys = KeyRing.parse(settings.api_keys)  # read by the guard middleware and the routes

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        drop_query_strings()  # here: uvicorn has configured its loggers by now
        state = open_state(settings, metrics, keys)
        app.state.face = state
        tasks = [
            asyncio.create_task(_load_runtime(state, models)),
            asyncio.create_task(save_periodically(state)),
            *(
                [asyncio.create_task(rebuild_when_needed(state))]
                if settings.index_auto_rebuild
                else []
            ),
            asyncio.create_task(watch_models(state)),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            close_state(state)

    app = FastAPI(
        title="Face service",
        version="0.1.0",
        description="Self-hosted face detection, verification (1:1) and identification (1:N).",
        lifespan=lifespan,
        # Starlette's redirect to the path without its slash takes its host from the Host
        # header, which a client (or whoever sits in front) chooses: answer 404 instead.
        redirect_slashes=False,
        # The OpenAPI pages need no key; FACE_API_DOCS=false keeps the API's shape private.
        openapi_url="/openapi.json" if settings.api_docs else None,
    )
    # Refuses query parameters the matched route does not read; every router runs it after
    # its key check (app/api/deps.py), so an unauthorised caller learns nothing of them.
    app.state.query_guard = QueryGuard()
    app.state.form_guard = FormGuard()
    install_error_handlers(app)
    tighten_openapi(app)

    for router in (health.router, subjects.router, faces.router, recognition.router, admin.router):
        app.include_router(router)
    app.include_router(jobs.router)
    app.include_router(model_routes.router)

    # Each upload route's body may hold the files it takes, plus room for the form fields:
    # uploads and roles are read from the routes included above, so added here, after them.
    app.add_middleware(
        GuardAndMeasure,
        metrics=metrics,
        max_upload_bytes=settings.max_upload_bytes,
        keys=keys,
        max_files=settings.max_files_per_request,
        uploads=find_upload_routes(app.routes),
        roles=find_route_roles(app.routes),
    )
    return app


def open_state(settings: Settings, metrics: Metrics, keys: KeyRing) -> AppState:
    if not keys.enabled:
        log.warning("FACE_API_KEYS is empty: every endpoint is open; serve on loopback only")
    if keys.short_keys:
        log.warning(
            "%d API key(s) shorter than %d characters; use long random keys",
            keys.short_keys,
            MIN_KEY_LENGTH,
        )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    sessions = make_session_factory(engine)
    state = AppState(
        settings=settings,
        keys=keys,
        metrics=metrics,
        engine=engine,
        sessions=sessions,
        pool=InferencePool(inference_workers(settings)),
        limiter=limiter_for(settings.rate_limit, settings.rate_limit_burst),
        pixels=PixelBudget(
            settings.pixels_in_flight,
            trim=heap_trimmer(),
            on_change=metrics.pixels_in_flight.set,
            on_wait=metrics.pixel_waits.inc,
        ),
    )
    state.jobs.recover(sessions, settings.models_dir)
    with sessions() as session:
        state.metrics.subjects.set(repository.count_subjects(session))
        state.metrics.faces_enrolled.set(repository.count_faces(session))
    return state


async def _load_runtime(state: AppState, models: Models | None) -> None:
    try:
        runtime = await asyncio.to_thread(
            build_runtime,
            state.settings,
            state.sessions,
            models,
            state.metrics,
            state.pool.running,
            pause_on_bad_calibration=True,
        )
    except Exception as error:  # reported by /v1/ready; the process stays up to say why
        log.exception("start-up failed")
        state.startup_error = str(error)
        return
    if models is None:  # this process's own models, not ones shared by tests
        await asyncio.to_thread(settle_heap)
    # Before the runtime is visible: /v1/ready would answer 200 in between.
    state.model_error = await asyncio.to_thread(unloaded_active_model, state, runtime)
    state.runtime = runtime
    state.metrics.index_size.set(len(runtime.index))
    log.info("ready: %s, %d faces indexed", runtime.model_version, len(runtime.index))


def close_state(state: AppState) -> None:
    state.jobs.shutdown(state.sessions)
    state.pool.shutdown()
    flush_index(state)
    state.engine.dispose()
