"""Liveness, readiness, service info and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from app.api.deps import StateDep
from app.api.query_guard import check_query
from app.schemas.common import QUERY_REFUSED
from app.schemas.info import Health, Info, Readiness
from app.services.info import service_info

router = APIRouter(tags=["health"], dependencies=[Depends(check_query)], responses=QUERY_REFUSED)


# HEAD as a route of its own, out of the schema: one route for both gave two operations of
# one operationId in /openapi.json (FastAPI warned at every schema build).
@router.get("/v1/health")
@router.head("/v1/health", include_in_schema=False)
def health() -> Health:
    """The process is up and serving HTTP."""
    return Health(status="ok")


@router.get("/v1/ready", responses={503: {"model": Readiness}})
@router.head("/v1/ready", include_in_schema=False)
def ready(state: StateDep) -> JSONResponse:
    """200 once the model is loaded and the index reconciled with the database, and while
    the database answers; else 503 with the reason."""
    if state.runtime is None:
        reason = state.startup_error or "models are still loading"
        if state.startup_error and state.keys.enabled:
            # Anyone may ask this; the error can name files and their content.
            reason = "start-up failed; the service log says why"
        return JSONResponse(Readiness(ready=False, reason=reason).model_dump(), status_code=503)
    if state.model_error is not None:  # other processes serve the active model: send there
        reason = f"this process cannot serve the active model ({state.model_error})"
        if state.keys.enabled:  # anyone may ask this; the error names files
            reason = "this process cannot serve the active model; the service log says why"
        return JSONResponse(Readiness(ready=False, reason=reason).model_dump(), status_code=503)
    # Paused decisions still answer 200: enrolment and the admin routes that repair the
    # calibration must stay reachable behind a load balancer that follows this route.
    paused = None
    if state.runtime.calibration_error is not None:
        paused = (
            "verify and identify answer 503: the calibration cannot be read (the stored one, "
            "or this process's calibration.json of an older release; the log says which)"
        )
    try:  # an orchestrator should stop sending traffic while the database is away
        with state.sessions() as session:
            session.execute(text("SELECT 1"))
    except OperationalError:
        reason = "the database cannot be reached"
        return JSONResponse(Readiness(ready=False, reason=reason).model_dump(), status_code=503)
    return JSONResponse(Readiness(ready=True, paused=paused).model_dump())


@router.get("/v1/info")
def info(state: StateDep) -> Info:
    """Active embedder and model version, thresholds, index and gallery sizes."""
    return service_info(state)


@router.get("/metrics", include_in_schema=False)
def metrics(state: StateDep) -> Response:
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
