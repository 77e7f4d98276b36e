"""The drift worker: ``python -m monitoring.worker``.

Every interval it reads the live bin counts of the window from its source, compares each
served version with that version's training reference, exports the result on ``/metrics``
and answers it as JSON on ``/drift``. A failed evaluation (source down or answering garbage,
a bundle it cannot read) is logged and counted, removes the divergence series, and is
retried with exponential backoff until the source is back.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from monitoring.evaluation import SOURCE, Evaluation, ReferenceStore, evaluate
from monitoring.metrics import WorkerMetrics
from monitoring.settings import WorkerSettings
from monitoring.sources import Source, SourceError, build_source
from service.logs import configure_json_logging

log = logging.getLogger(__name__)


class DriftWorker:
    def __init__(self, settings: WorkerSettings, source: Source, metrics: WorkerMetrics) -> None:
        self.settings = settings
        self.source = source
        self.metrics = metrics
        self.rule = settings.rule()
        self.references = ReferenceStore(settings.model_dir)
        self.consecutive_errors = 0

    @property
    def latest(self) -> Evaluation | None:
        return self.metrics.drift.latest

    def evaluate_once(self) -> Evaluation:
        started = time.perf_counter()
        now = time.time()
        try:
            result = evaluate(self.source.fetch(now), self.references, self.rule, self.settings.smoothing, now)
        except SourceError as exc:
            result = Evaluation(now, "error", {}, {SOURCE: str(exc)})
        except Exception as exc:  # the loop must outlive anything a source or a bundle can throw
            log.exception("unexpected error in a drift evaluation")
            result = Evaluation(now, "error", {}, {SOURCE: f"unexpected {type(exc).__name__}: {exc}"})
        self.consecutive_errors = self.consecutive_errors + 1 if SOURCE in result.errors else 0
        self.metrics.record(result, time.perf_counter() - started)
        drifting = {v: d.to_dict()["drifting_features"] for v, d in result.versions.items()}
        samples = {v: d.window_samples for v, d in result.versions.items()}
        if result.errors:
            log.error("drift evaluation failed: %s", "; ".join(f"{k}: {v}" for k, v in result.errors.items()),
                      extra={"source": self.source.name, "consecutive_errors": self.consecutive_errors,
                             "drifting": drifting, "samples": samples})
        else:
            log.info("drift evaluated", extra={"outcome": result.outcome, "drifting": drifting, "samples": samples})
        return result

    def next_delay(self) -> float:
        """The interval, or after source errors an exponential backoff (a version-level error,
        such as a missing bundle, does not slow down the other versions)."""
        if self.consecutive_errors == 0:
            return self.settings.interval_seconds
        backoff = self.settings.interval_seconds * 2 ** (self.consecutive_errors - 1)
        return min(backoff, max(self.settings.max_backoff_seconds, self.settings.interval_seconds))

    async def run_forever(self) -> None:
        while True:
            await asyncio.to_thread(self.evaluate_once)
            await asyncio.sleep(self.next_delay())

    def report(self) -> dict[str, Any]:
        s = self.settings
        return {
            "source": self.source.name,
            "window_seconds": s.window_seconds,
            "interval_seconds": s.interval_seconds,
            "rule": {"kl_threshold": self.rule.kl_threshold, "severe_kl_threshold": self.rule.severe_kl_threshold,
                     "alpha": self.rule.alpha, "min_samples": self.rule.min_samples, "smoothing": s.smoothing},
            **(self.latest.to_dict() if self.latest else
               {"evaluated_at": None, "outcome": None, "errors": {}, "versions": {}}),
        }


def create_app(settings: WorkerSettings | None = None) -> FastAPI:
    settings = settings or WorkerSettings()
    metrics = WorkerMetrics()
    source = build_source(settings.source, prometheus_url=settings.prometheus_url, scrape_url=settings.scrape_url,
                          window_seconds=settings.window_seconds, timeout=settings.request_timeout_seconds)
    worker = DriftWorker(settings, source, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(worker.run_forever())
        try:
            yield
        finally:
            task.cancel()

    app = FastAPI(title="Drift worker", lifespan=lifespan,
                  description="KL divergence, PSI and G-test of live features against the training reference.")

    @app.get("/drift")
    async def drift() -> dict[str, Any]:
        return worker.report()

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def parse_args(argv: list[str] | None = None) -> dict[str, Any]:
    """Flags for the common settings; each overrides its DRIFT_* environment variable."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=["prometheus", "scrape"])
    parser.add_argument("--prometheus-url")
    parser.add_argument("--scrape-url")
    parser.add_argument("--model-dir")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--interval", type=float, dest="interval_seconds")
    parser.add_argument("--window", type=float, dest="window_seconds")
    return {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}


def main(argv: list[str] | None = None) -> None:
    settings = WorkerSettings(**parse_args(argv))
    configure_json_logging(settings.log_level)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, workers=1,
                access_log=False, log_config=None, timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()
