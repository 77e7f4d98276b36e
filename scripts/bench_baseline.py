"""The benchmark's baseline: the smallest FastAPI app that serves the same model.

One endpoint, ``POST /predict``, parses the 8-feature JSON body with a plain pydantic model and
calls the model's ``predict`` on a 1x8 numpy array: no middleware, metrics, logging or body
checks. ``scripts/benchmark.py`` starts it in its own process:

    python scripts/bench_baseline.py --model-dir models --port 8100              # baseline A
    python scripts/bench_baseline.py --model-dir models --port 8101 --threads 1  # baseline B

Without ``--threads`` scikit-learn keeps its default OpenMP threads (all cores); with it the
pools are limited with threadpoolctl at startup, as the real API does. ``GET /threads`` shows
the thread pools the endpoint's thread sees.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from threadpoolctl import threadpool_info, threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service import bundle  # noqa: E402


class Features(BaseModel):
    MedInc: float
    HouseAge: float
    AveRooms: float
    AveBedrms: float
    Population: float
    AveOccup: float
    Latitude: float
    Longitude: float


def create_app(model_dir: Path, threads: int | None) -> FastAPI:
    """The app serving the model that ``model_dir/CURRENT`` names (loaded without verification)."""
    version = bundle.current_version(model_dir)
    model = joblib.load(model_dir / version / bundle.ARTIFACT_FILE)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # In the event loop's thread, where predict runs (OpenMP limits are per thread).
        if threads is not None:
            threadpool_limits(limits=threads)
        yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/predict")
    async def predict(features: Features) -> dict[str, Any]:
        row = np.array([[features.MedInc, features.HouseAge, features.AveRooms, features.AveBedrms,
                         features.Population, features.AveOccup, features.Latitude, features.Longitude]])
        return {"prediction": float(model.predict(row)[0]), "model_version": version}

    @app.get("/threads")
    async def threads_in_use() -> list[dict[str, Any]]:
        return [{"api": pool["internal_api"], "threads": pool["num_threads"]} for pool in threadpool_info()]

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=None, help="limit OpenMP/BLAS threads (default: no limit)")
    args = parser.parse_args()
    uvicorn.run(create_app(args.model_dir, args.threads), host="127.0.0.1", port=args.port, workers=1,
                access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
