from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import train
from tests.processes import REPO, api_command, free_port, running

DEFAULT_DATA = REPO.parent / "shared" / "data" / "cal_housing.data"


@pytest.fixture(scope="session")
def housing_path() -> Path:
    path = Path(os.environ.get("HOUSING_DATA") or DEFAULT_DATA)
    if not path.is_file():
        pytest.fail(f"the housing data file {path} is missing: set HOUSING_DATA to cal_housing.data")
    return path


@pytest.fixture(scope="session")
def housing(housing_path: Path) -> train.HousingData:
    return train.load_housing(housing_path)


@pytest.fixture(scope="session")
def split(housing: train.HousingData) -> train.Split:
    return train.split_holdout(housing)


@pytest.fixture(scope="session")
def model_store(tmp_path_factory: pytest.TempPathFactory, housing_path: Path) -> Path:
    """A model store with one real model trained on the real data, shared by the session."""
    store = tmp_path_factory.mktemp("models")
    assert train.main(["--data", str(housing_path), "--model-dir", str(store), "--version", "v-test"]) == 0
    return store


@pytest.fixture(scope="session")
def api_url(model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real API process serving the session's model on a free loopback port."""
    port = free_port()
    log = tmp_path_factory.mktemp("logs") / "api.log"
    env = {"API_MODEL_DIR": str(model_store), "API_HOST": "127.0.0.1", "API_PORT": str(port)}
    url = f"http://127.0.0.1:{port}"
    with running(api_command(), env=env, log=log, ready_url=f"{url}/health/ready"):
        yield url


@pytest.fixture(scope="session")
def holdout_replay(housing: train.HousingData):
    """Builds simulate.py's replays of held-out rows (normal or shifted)."""
    import simulate

    return lambda scenario, rows, seed=0: simulate.build_replay(housing, scenario, rows, seed)
