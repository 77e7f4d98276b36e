"""Replay real held-out rows of the California housing data against a running API.

    python simulate.py --rows 1000                      # normal traffic, as fast as it goes
    python simulate.py --scenario drift --rows 2000     # incomes inflated by 25 %
    python simulate.py --duration 60 --rate 50          # 50 rows/s for a minute (3,000 rows)
    python simulate.py --rows 5000 --batch-size 100     # through /predict/batch

Scenarios (each reproducible with --seed):
  normal        the held-out rows as they are
  drift         covariate shift: MedInc x 1.25 (income inflation); --region south keeps only
                rows south of latitude 35 (a geographic subset) on top of it
  out-of-range  MedInc and HouseAge beyond anything seen in training
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from sklearn.metrics import r2_score

import train
from service import bundle
from service.schemas import FEATURE_NAMES

SCENARIOS = ("normal", "drift", "out-of-range")
INCOME_INFLATION = 1.25
SOUTH_OF_LATITUDE = 35.0


def apply_scenario(features: np.ndarray, scenario: str, rng: np.random.Generator, *,
                   training_max: np.ndarray | None = None) -> np.ndarray:
    """A shifted copy of ``features`` (rows x 8). ``training_max`` is needed for out-of-range."""
    shifted = features.copy()
    column = {name: j for j, name in enumerate(FEATURE_NAMES)}
    if scenario == "normal":
        return shifted
    if scenario == "drift":
        shifted[:, column["MedInc"]] *= INCOME_INFLATION
        return shifted
    if scenario == "out-of-range":
        if training_max is None:
            raise ValueError("out-of-range needs the training maximum of every feature")
        for name in ("MedInc", "HouseAge"):
            j = column[name]
            shifted[:, j] = training_max[j] * rng.uniform(1.05, 1.5, size=len(shifted))
        return shifted
    raise ValueError(f"unknown scenario {scenario!r}; choose one of {SCENARIOS}")


@dataclass
class Replay:
    """Rows to send and, for normal traffic, the true target of each."""

    features: np.ndarray
    target: np.ndarray


def build_replay(data: train.HousingData, scenario: str, rows: int | None, seed: int,
                 region: str | None = None) -> Replay:
    """``rows`` held-out rows in a seeded order, cycled if more are asked (None: each once)."""
    split = train.split_holdout(data)
    rng = np.random.default_rng(seed)
    x_test, y_test = split.x_test, split.y_test
    if region == "south":
        keep = x_test[:, FEATURE_NAMES.index("Latitude")] < SOUTH_OF_LATITUDE
        x_test, y_test = x_test[keep], y_test[keep]
    rows = len(x_test) if rows is None else rows
    order = np.concatenate([rng.permutation(len(x_test)) for _ in range(-(-rows // len(x_test)))])[:rows]
    features = apply_scenario(x_test[order], scenario, rng, training_max=split.x_train.max(axis=0))
    return Replay(features, y_test[order])


@dataclass
class Summary:
    requests: int = 0
    rows_sent: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    predictions: np.ndarray = field(default_factory=lambda: np.empty(0))
    elapsed: float = 0.0

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies, q) * 1000) if self.latencies else float("nan")


def _payload(rows: np.ndarray, batched: bool) -> dict:
    records = [dict(zip(FEATURE_NAMES, map(float, row))) for row in rows]
    return {"instances": records} if batched else records[0]


async def replay(url: str, features: np.ndarray, *, rows: int | None = None, batch_size: int = 1,
                 rate: float = 0.0, duration: float | None = None, concurrency: int = 8,
                 timeout: float = 10.0) -> Summary:
    """Send ``rows`` rows of ``features``, cycling through them (default: each row once, or as
    many as fit in ``duration``), one per request or ``batch_size`` per /predict/batch request.

    ``rate`` caps rows per second (0: as fast as the API answers); ``duration`` stops sending
    after that many seconds. ``Summary.predictions[i]`` is the answer for ``features[i]``.
    """
    summary = Summary(predictions=np.full(len(features), np.nan))
    limit = rows if rows is not None else (None if duration is not None else len(features))
    batched = batch_size > 1
    endpoint = url.rstrip("/") + ("/predict/batch" if batched else "/predict")
    next_start = 0
    began = time.monotonic()

    async def sender(client: httpx.AsyncClient) -> None:
        nonlocal next_start
        while limit is None or next_start < limit:
            start = next_start
            size = batch_size if limit is None else min(batch_size, limit - start)
            next_start += size
            if rate > 0:
                await asyncio.sleep(max(0.0, began + start / rate - time.monotonic()))
            if duration is not None and time.monotonic() - began >= duration:
                return
            index = np.arange(start, start + size) % len(features)
            sent = time.monotonic()
            try:
                answer = await client.post(endpoint, json=_payload(features[index], batched))
                status = str(answer.status_code)
            except httpx.HTTPError as exc:
                answer, status = None, type(exc).__name__
            summary.latencies.append(time.monotonic() - sent)
            summary.requests += 1
            summary.rows_sent += size
            if answer is not None and answer.status_code == 200:
                summary.ok += 1
                body = answer.json()
                summary.predictions[index] = body["predictions"] if batched else [body["prediction"]]
            else:
                summary.errors[status] = summary.errors.get(status, 0) + 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        await asyncio.gather(*(sender(client) for _ in range(concurrency)))
    summary.elapsed = time.monotonic() - began
    return summary


def default_data_path(model_dir: Path) -> str | None:
    """$HOUSING_DATA, else the file the served model was trained on (so the held-out rows are
    the ones it never saw), else None: fetch with scikit-learn."""
    if os.environ.get("HOUSING_DATA"):
        return os.environ["HOUSING_DATA"]
    try:
        source = bundle.read_metadata(model_dir, bundle.current_version(model_dir))["data"]["source"]
    except (bundle.BundleError, KeyError, TypeError):
        return None
    return source if Path(source).is_file() else None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("API_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--data", default=None, help="path to cal_housing.data (default: $HOUSING_DATA, else "
                        "the file the model in --model-dir was trained on, else fetch)")
    parser.add_argument("--model-dir", type=Path, default=Path(os.environ.get("MODEL_DIR", "models")))
    parser.add_argument("--scenario", choices=SCENARIOS, default="normal")
    parser.add_argument("--region", choices=["south"], default=None, help="drift only: a geographic subset")
    parser.add_argument("--rows", type=int, default=None,
                        help="rows to send, held-out rows cycled if more (default 1000, or unlimited with --duration)")
    parser.add_argument("--duration", type=float, default=None, help="stop sending after this many seconds")
    parser.add_argument("--rate", type=float, default=0.0, help="rows per second (default: as fast as possible)")
    parser.add_argument("--batch-size", type=int, default=1, help=">1 sends batches to /predict/batch")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.rows is None and args.duration is None:
        args.rows = 1000
    if (args.rows is not None and args.rows < 1) or args.batch_size < 1 or args.concurrency < 1 or args.rate < 0 \
            or (args.duration is not None and args.duration <= 0):
        parser.error("--rows, --duration, --batch-size and --concurrency must be positive, --rate not negative")
    if args.region and args.scenario != "drift":
        parser.error("--region goes with --scenario drift")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        data = train.load_housing(args.data or default_data_path(args.model_dir))
    except (train.DataUnavailable, OSError, ValueError) as exc:
        print(f"cannot load the data: {exc}", file=sys.stderr)
        return 2
    plan = build_replay(data, args.scenario, args.rows, args.seed, args.region)
    summary = asyncio.run(replay(args.url, plan.features, rows=args.rows, batch_size=args.batch_size, rate=args.rate,
                                 duration=args.duration, concurrency=args.concurrency))
    answered = ~np.isnan(summary.predictions)
    print(f"scenario {args.scenario}: {summary.rows_sent} rows in {summary.requests} requests "
          f"over {summary.elapsed:.1f} s ({summary.rows_sent / max(summary.elapsed, 1e-9):.0f} rows/s)")
    print(f"ok {summary.ok}, errors {sum(summary.errors.values())} {summary.errors or ''}")
    print(f"latency ms: p50 {summary.percentile_ms(50):.2f}, p90 {summary.percentile_ms(90):.2f}, "
          f"p99 {summary.percentile_ms(99):.2f}")
    if answered.sum() >= 2 and args.scenario == "normal":
        print(f"R² of the served predictions on these rows: "
              f"{r2_score(plan.target[answered], summary.predictions[answered]):.6f}")
    return 0 if summary.ok == summary.requests else 1


if __name__ == "__main__":
    sys.exit(main())
