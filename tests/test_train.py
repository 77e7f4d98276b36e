"""train.py on the real data: loader, quality gate, bundle contents and atomic publication."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import train
from monitoring.profile import bin_counts
from service import bundle
from service.schemas import FEATURE_NAMES

PUBLISHED_MEANS = {"MedInc": 3.870671, "HouseAge": 28.639486, "AveRooms": 5.429000, "AveBedrms": 1.096675,
                   "Population": 1425.476744, "AveOccup": 3.070655, "Latitude": 35.631861,
                   "Longitude": -119.569704}


def test_loader_reproduces_the_published_statistics(housing: train.HousingData) -> None:
    assert housing.features.shape == (20640, 8)
    for j, name in enumerate(FEATURE_NAMES):
        assert housing.features[:, j].mean() == pytest.approx(PUBLISHED_MEANS[name], abs=5e-7)
    assert housing.target.mean() == pytest.approx(2.068558, abs=5e-7)


def test_loader_falls_back_to_fetch_only_without_a_path(monkeypatch, housing: train.HousingData) -> None:
    """The network fetch cannot run here; it is replaced by the same data to see which path is taken."""
    import sklearn.datasets
    from sklearn.utils import Bunch

    monkeypatch.setattr(sklearn.datasets, "fetch_california_housing",
                        lambda: Bunch(data=housing.features, target=housing.target))
    fetched = train.load_housing(None)
    assert fetched.source == "sklearn.datasets.fetch_california_housing"
    np.testing.assert_array_equal(fetched.features, housing.features)


def test_loader_refuses_a_file_with_the_wrong_columns(tmp_path: Path) -> None:
    path = tmp_path / "bad.data"
    path.write_text("1,2,3\n4,5,6\n")
    with pytest.raises(ValueError, match="expected 9 columns"):
        train.load_housing(path)


def test_published_bundle(model_store: Path, split: train.Split) -> None:
    assert bundle.current_version(model_store) == "v-test"
    meta = bundle.read_metadata(model_store, "v-test")
    assert meta["features"] == list(FEATURE_NAMES)
    assert meta["artifact"]["sha256"] == bundle.sha256_file(model_store / "v-test" / "model.joblib")
    assert meta["metrics"]["holdout"]["r2"] == pytest.approx(0.835, abs=0.01)
    assert meta["data"]["rows"] == 20640 and meta["data"]["train_rows"] == 16512
    for key in ("python", "sklearn", "numpy", "joblib"):
        assert meta["versions"][key]
    for j, name in enumerate(FEATURE_NAMES):
        profile = meta["reference"]["features"][name]
        edges, counts = np.array(profile["edges"]), np.array(profile["counts"])
        column = split.x_train[:, j]
        assert edges[0] == np.nextafter(column.min(), -np.inf) and edges[-1] == column.max()
        assert counts[0] == 0 and counts[-1] == 0
        assert counts.sum() == column.size
        np.testing.assert_array_equal(counts, bin_counts(edges, column))
    assert not [p for p in model_store.iterdir() if p.name.startswith(".")]


def test_house_age_ties_land_in_the_bucket_prometheus_would_use(model_store: Path, split: train.Split) -> None:
    """HouseAge is capped at 52 with over a thousand ties: they belong to the bucket le=52."""
    profile = bundle.read_metadata(model_store, "v-test")["reference"]["features"]["HouseAge"]
    ages = split.x_train[:, FEATURE_NAMES.index("HouseAge")]
    assert profile["edges"][-1] == 52.0
    last_interior = profile["counts"][-2]
    assert last_interior >= (ages == 52).sum() > 1000
    assert profile["counts"][-1] == 0


def test_quality_gate_refuses_a_weak_model(housing_path: Path, tmp_path: Path, capsys) -> None:
    store = tmp_path / "models"
    assert train.main(["--data", str(housing_path), "--model-dir", str(store), "--model", "linear"]) == 1
    assert "below the floor 0.75" in capsys.readouterr().err
    assert not (store / "CURRENT").exists()
    assert not store.exists() or not any(store.iterdir())


def test_floor_is_configurable_and_if_missing_keeps_the_current_model(housing_path: Path, tmp_path: Path) -> None:
    store = tmp_path / "models"
    args = ["--data", str(housing_path), "--model-dir", str(store), "--model", "linear", "--min-r2", "0.5"]
    assert train.main([*args, "--version", "v-linear"]) == 0
    meta = json.loads((store / "v-linear" / "bundle.json").read_text())
    assert meta["model"]["type"] == "LinearRegression"
    assert meta["metrics"]["holdout"]["r2"] == pytest.approx(0.576, abs=0.01)
    assert train.main([*args, "--version", "v-other", "--if-missing"]) == 0
    assert bundle.current_version(store) == "v-linear" and not (store / "v-other").exists()


def test_publishing_an_existing_version_is_refused(model_store: Path) -> None:
    with pytest.raises(bundle.BundleError, match="already exists"):
        bundle.publish(model_store, "v-test", object(), {})
