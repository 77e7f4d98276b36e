"""Train the house-value model on the California housing data and publish a versioned bundle.

    python train.py --data ../shared/data/cal_housing.data --model-dir models

The data path comes from ``--data`` or ``HOUSING_DATA``; only when neither is given does it
fall back to ``sklearn.datasets.fetch_california_housing()`` (which needs the network).
A model whose holdout R² is below ``--min-r2`` is not published and the command exits 1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import train_test_split

from monitoring.profile import DEFAULT_QUANTILE_BINS, ReferenceProfile
from service import bundle
from service.schemas import FEATURE_NAMES

TARGET_NAME = "MedHouseVal"
TARGET_UNIT = "100,000 USD"
TEST_SIZE = 0.2
SPLIT_SEED = 42
RAW_COLUMNS = 9


class DataUnavailable(Exception):
    """No data file was given and the data set cannot be fetched."""


@dataclass(frozen=True)
class HousingData:
    features: np.ndarray  # (rows, 8) in FEATURE_NAMES order
    target: np.ndarray
    source: str
    sha256: str


@dataclass(frozen=True)
class Split:
    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray


def derive_features(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8 features and target from the 9 raw StatLib columns."""
    longitude, latitude, age, rooms, bedrooms, population, households, income, value = raw.T
    features = np.column_stack([
        income, age, rooms / households, bedrooms / households,
        population, population / households, latitude, longitude,
    ])
    return features, value / 100_000.0


def load_housing(path: str | Path | None) -> HousingData:
    """Load the data from the StatLib ``cal_housing.data`` file, or fetch it when no path is given."""
    if path is None:
        from sklearn.datasets import fetch_california_housing

        try:
            bunch = fetch_california_housing()
        except OSError as exc:
            raise DataUnavailable(f"cannot fetch the data set ({exc}); pass --data PATH to cal_housing.data "
                                  "or set HOUSING_DATA") from exc
        features, target = np.asarray(bunch.data, float), np.asarray(bunch.target, float)
        digest = hashlib.sha256(features.tobytes() + target.tobytes()).hexdigest()
        return HousingData(features, target, "sklearn.datasets.fetch_california_housing", digest)
    path = Path(path)
    content = path.read_bytes()
    raw = np.loadtxt(path, delimiter=",", dtype=float, ndmin=2)
    if raw.shape[1] != RAW_COLUMNS:
        raise ValueError(f"{path}: expected {RAW_COLUMNS} columns, found {raw.shape[1]}")
    features, target = derive_features(raw)
    return HousingData(features, target, str(path.resolve()), hashlib.sha256(content).hexdigest())


def split_holdout(data: HousingData) -> Split:
    """The fixed 80/20 split used for training, evaluation and traffic replay."""
    x_train, x_test, y_train, y_test = train_test_split(
        data.features, data.target, test_size=TEST_SIZE, random_state=SPLIT_SEED
    )
    return Split(x_train, x_test, y_train, y_test)


def build_model(kind: str) -> Any:
    if kind == "hgb":
        return HistGradientBoostingRegressor(random_state=SPLIT_SEED)
    if kind == "linear":
        return LinearRegression()
    raise ValueError(f"unknown model kind {kind!r}")


def evaluate(model: Any, features: np.ndarray, target: np.ndarray) -> dict[str, float]:
    predicted = model.predict(features)
    return {
        "r2": float(r2_score(target, predicted)),
        "mae": float(mean_absolute_error(target, predicted)),
        "rmse": float(np.sqrt(mean_squared_error(target, predicted))),
    }


def bundle_metadata(model: Any, data: HousingData, split: Split, metrics: dict[str, float],
                    profile: ReferenceProfile, n_bins: int) -> dict[str, Any]:
    return {
        "format": 1,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "features": list(FEATURE_NAMES),
        "target": {"name": TARGET_NAME, "unit": TARGET_UNIT},
        "model": {"type": type(model).__name__, "params": json.loads(json.dumps(model.get_params(), default=str))},
        "metrics": {"holdout": metrics},
        "data": {
            "source": data.source,
            "sha256": data.sha256,
            "rows": int(data.target.size),
            "train_rows": int(split.y_train.size),
            "test_rows": int(split.y_test.size),
            "split": {"test_size": TEST_SIZE, "random_state": SPLIT_SEED},
        },
        "versions": {
            "python": platform.python_version(),
            "sklearn": sklearn.__version__,
            "numpy": np.__version__,
            "joblib": joblib.__version__,
        },
        "reference": {"quantile_bins": n_bins, "source": "training split", **profile.to_dict()},
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("HOUSING_DATA") or None,
                        help="path to cal_housing.data (default: $HOUSING_DATA, else fetch)")
    parser.add_argument("--model-dir", type=Path, default=Path(os.environ.get("MODEL_DIR", "models")),
                        help="model store (default: $MODEL_DIR or ./models)")
    parser.add_argument("--model", choices=["hgb", "linear"], default="hgb",
                        help="hgb: HistGradientBoostingRegressor (default); linear: LinearRegression")
    parser.add_argument("--min-r2", type=float, default=float(os.environ.get("MIN_R2", "0.75")),
                        help="quality gate: holdout R² below this is not published (default 0.75)")
    parser.add_argument("--bins", type=int, default=DEFAULT_QUANTILE_BINS,
                        help="quantile bins of the reference profile (default 10)")
    parser.add_argument("--version", default=None, help="bundle version name (default: timestamp)")
    parser.add_argument("--if-missing", action="store_true",
                        help="do nothing when the model store already has a CURRENT model")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.if_missing and (args.model_dir / bundle.CURRENT_FILE).exists():
        try:
            print(f"model store {args.model_dir} already serves {bundle.current_version(args.model_dir)}; "
                  "not training")
        except bundle.BundleError as exc:
            print(f"--if-missing: {exc}; fix or remove it", file=sys.stderr)
            return 2
        return 0
    try:
        data = load_housing(args.data)
    except (DataUnavailable, OSError, ValueError) as exc:
        print(f"cannot load the data: {exc}", file=sys.stderr)
        return 2
    split = split_holdout(data)
    model = build_model(args.model).fit(split.x_train, split.y_train)
    metrics = evaluate(model, split.x_test, split.y_test)
    print(f"{type(model).__name__} on {data.source}: holdout R² {metrics['r2']:.4f}, "
          f"MAE {metrics['mae']:.4f}, RMSE {metrics['rmse']:.4f} ({split.y_test.size} rows)")
    if metrics["r2"] < args.min_r2:
        print(f"quality gate failed: holdout R² {metrics['r2']:.4f} is below the floor {args.min_r2}; "
              "model not published", file=sys.stderr)
        return 1
    profile = ReferenceProfile.from_training(list(FEATURE_NAMES), split.x_train, model.predict(split.x_train), args.bins)
    version = args.version or datetime.now(timezone.utc).strftime("v%Y%m%d-%H%M%S")
    try:
        path = bundle.publish(args.model_dir, version, model,
                              bundle_metadata(model, data, split, metrics, profile, args.bins))
    except (bundle.BundleError, OSError) as exc:
        print(f"model not published: {exc}", file=sys.stderr)
        return 1
    print(f"published {path} and set {args.model_dir / bundle.CURRENT_FILE} to {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
