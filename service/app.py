"""The application factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from threadpoolctl import threadpool_limits

from service.metrics import ServiceMetrics
from service.middleware import RequestObserver
from service.model_store import ModelNotReady, ModelStore
from service.request_body import InputRejected
from service.routes import router
from service.schemas import ErrorBody
from service.settings import Settings

log = logging.getLogger(__name__)

UNMEASURED_PATHS = frozenset({"/metrics", "/health/live", "/health/ready"})


def _error(status: int, error: str, message: str, request: Request, details: list | None = None) -> JSONResponse:
    body = ErrorBody(error=error, message=message, details=details or [],
                     request_id=getattr(request.state, "request_id", None))
    return JSONResponse(status_code=status, content=body.model_dump())


def _install_error_handlers(app: FastAPI, metrics: ServiceMetrics) -> None:
    @app.exception_handler(InputRejected)
    async def rejected(request: Request, exc: InputRejected) -> JSONResponse:
        metrics.rejected.labels(exc.reason).inc()
        return _error(exc.status, exc.reason, exc.message, request, exc.details)

    @app.exception_handler(ModelNotReady)
    async def not_ready(request: Request, exc: ModelNotReady) -> JSONResponse:
        return _error(503, "model_not_ready", str(exc), request)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        error = str(exc.detail).lower().replace(" ", "_")
        response = _error(exc.status_code, error, str(exc.detail), request)
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"request_id": getattr(request.state, "request_id", None)})
        return _error(500, "internal_error", "internal error; see the server log for the request id", request)


def _route_table(app: FastAPI) -> list[tuple[str, str]]:
    """(path, method) of every measured route: the API's own and FastAPI's documentation pages."""
    api = [(route.path, method) for route in router.routes for method in sorted(route.methods)
           if route.path not in UNMEASURED_PATHS]
    return api + [(url, "GET") for url in (app.openapi_url, app.docs_url, app.redoc_url) if url]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        threadpool_limits(limits=settings.inference_threads)
        store.refresh()
        reloader = asyncio.create_task(_reload_forever(store, settings.reload_interval_seconds))
        try:
            yield
        finally:
            reloader.cancel()

    app = FastAPI(title="California house value API", version="1", lifespan=lifespan,
                  swagger_ui_oauth2_redirect_url=None,
                  description="Predicts median house values; every request is measured for drift monitoring.")
    app.include_router(router)
    routes = _route_table(app)
    prediction_errors = (400, 408, 413, 415, 422, 499, 503)
    metrics = ServiceMetrics(routes, {"/predict": prediction_errors, "/predict/batch": prediction_errors})
    store = ModelStore(settings, metrics)
    app.state.settings, app.state.metrics, app.state.store = settings, metrics, store
    _install_error_handlers(app, metrics)
    app.add_middleware(RequestObserver, metrics=metrics,
                       routes=frozenset(path for path, _ in routes) | UNMEASURED_PATHS, unmeasured=UNMEASURED_PATHS)
    return app


async def _reload_forever(store: ModelStore, interval: float) -> None:
    """Pick up a newly published CURRENT (or a model that was missing at start)."""
    while True:
        await asyncio.sleep(interval)
        await asyncio.to_thread(store.refresh)
