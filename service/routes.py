"""The routes of the inference API."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from threadpoolctl import threadpool_info

from service.metrics import ServiceMetrics
from service.model_store import ModelStore
from service.request_body import parse_body, read_json_body
from service.schemas import (
    FEATURE_NAMES,
    BatchPredictResponse,
    BatchRequest,
    ErrorBody,
    HousingFeatures,
    PredictResponse,
)
from service.settings import Settings

USD_PER_TARGET_UNIT = 100_000.0

router = APIRouter()


# Async on purpose: FastAPI runs a plain `def` dependency in its thread pool, and two thread
# hand-offs per request cost more than the prediction itself (see scripts/benchmark.py).
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_store(request: Request) -> ModelStore:
    return request.app.state.store


async def get_metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[ModelStore, Depends(get_store)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]


def _json_body(schema: type) -> dict[str, Any]:
    """OpenAPI for a body the route reads itself (to bound its size and map every error)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema.model_json_schema(
        ref_template="#/components/schemas/{model}")}}}}


_ERRORS = {status: {"model": ErrorBody} for status in (400, 408, 413, 415, 422, 503)}


def _rows(records: list[HousingFeatures]) -> np.ndarray:
    return np.array([[getattr(r, name) for name in FEATURE_NAMES] for r in records], dtype=float)


@router.post("/predict", response_model=PredictResponse, responses=_ERRORS, openapi_extra=_json_body(HousingFeatures))
async def predict(request: Request, settings: SettingsDep, store: StoreDep) -> PredictResponse:
    record = parse_body(HousingFeatures, await read_json_body(request, settings.max_body_bytes,
                                                              settings.body_timeout_seconds))
    result = store.predict(_rows([record]))
    request.state.model_version = result.version
    value = float(result.values[0])
    return PredictResponse(prediction=value, predicted_price_usd=value * USD_PER_TARGET_UNIT,
                           model_version=result.version)


@router.post("/predict/batch", response_model=BatchPredictResponse, responses=_ERRORS,
             openapi_extra=_json_body(BatchRequest))
async def predict_batch(request: Request, settings: SettingsDep, store: StoreDep) -> BatchPredictResponse:
    batch = parse_body(BatchRequest, await read_json_body(request, settings.max_body_bytes,
                                                          settings.body_timeout_seconds),
                       max_items=settings.max_batch_rows)
    result = store.predict(_rows(batch.instances))
    request.state.model_version = result.version
    return BatchPredictResponse(predictions=result.values.tolist(), model_version=result.version)


@router.get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "alive"}


@router.get("/health/ready", responses={503: {"model": ErrorBody}})
async def ready(store: StoreDep) -> dict[str, str]:
    return {"status": "ready", "model_version": store.loaded().version}


@router.get("/model", responses={503: {"model": ErrorBody}})
async def model_metadata(store: StoreDep) -> dict[str, Any]:
    threads = [{"api": pool["internal_api"], "threads": pool["num_threads"]} for pool in threadpool_info()]
    return {**store.loaded().metadata, "runtime": {"threadpools": threads}}


@router.get("/metrics", include_in_schema=False)
async def metrics(service_metrics: MetricsDep) -> Response:
    return Response(generate_latest(service_metrics.registry), media_type=CONTENT_TYPE_LATEST)
