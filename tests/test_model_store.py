"""A broken or mismatched bundle never gets served, and the API process survives it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

import train
from tests.processes import api_command, free_port, running, wait_for
from tests.test_api import VALID


def copy_store(model_store: Path, tmp_path: Path) -> Path:
    store = tmp_path / "models"
    shutil.copytree(model_store, store)
    return store


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


def tamper(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def other_sklearn(path: Path) -> None:
    bundle = json.loads(path.read_text())
    bundle["versions"]["sklearn"] = "0.0.1"
    path.write_text(json.dumps(bundle))


BREAKAGES: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "missing-artifact": ("model.joblib", Path.unlink, "cannot read"),
    "truncated-artifact": ("model.joblib", truncate, "does not match"),
    "tampered-artifact": ("model.joblib", tamper, "does not match"),
    "other-sklearn-version": ("bundle.json", other_sklearn, "scikit-learn 0.0.1"),
    "corrupt-bundle-json": ("bundle.json", lambda p: p.write_text("{not json"), "not valid JSON"),
}


def serve(store: Path, tmp_path: Path, **env: str):
    port = free_port()
    settings = {"API_MODEL_DIR": str(store), "API_PORT": str(port), "API_RELOAD_INTERVAL_SECONDS": "0.2", **env}
    return f"http://127.0.0.1:{port}", running(api_command(), env=settings, log=tmp_path / "api.log",
                                              ready_url=f"http://127.0.0.1:{port}/health/live")


@pytest.mark.parametrize("breakage", BREAKAGES, ids=list(BREAKAGES))
def test_broken_bundle_is_refused_and_the_process_stays_up(
        breakage: str, model_store: Path, tmp_path: Path) -> None:
    file, damage, reason = BREAKAGES[breakage]
    store = copy_store(model_store, tmp_path)
    damage(store / "v-test" / file)
    url, server = serve(store, tmp_path)
    with server as process:
        ready = httpx.get(f"{url}/health/ready")
        assert ready.status_code == 503
        assert ready.json()["error"] == "model_not_ready"
        assert reason in ready.json()["message"]
        answer = httpx.post(f"{url}/predict", json=VALID)
        assert answer.status_code == 503
        assert answer.json()["error"] == "model_not_ready"
        assert "model_info" not in httpx.get(f"{url}/metrics").text.split("# TYPE model_info gauge")[1]
        assert process.poll() is None
    assert reason in (tmp_path / "api.log").read_text()


def test_sklearn_mismatch_loads_only_when_overridden(model_store: Path, tmp_path: Path) -> None:
    store = copy_store(model_store, tmp_path)
    other_sklearn(store / "v-test" / "bundle.json")
    url, server = serve(store, tmp_path, API_ALLOW_SKLEARN_MISMATCH="true")
    with server:
        wait_for(f"{url}/health/ready", timeout=30)
        assert httpx.post(f"{url}/predict", json=VALID).status_code == 200
    assert "another scikit-learn version" in (tmp_path / "api.log").read_text()


def test_missing_store_then_published_model_is_picked_up(housing_path: Path, tmp_path: Path) -> None:
    store = tmp_path / "empty"
    url, server = serve(store, tmp_path)
    with server:
        assert httpx.get(f"{url}/health/ready").status_code == 503
        assert httpx.post(f"{url}/predict", json=VALID).status_code == 503
        assert train.main(["--data", str(housing_path), "--model-dir", str(store), "--version", "v-late"]) == 0
        wait_for(f"{url}/health/ready", timeout=30)
        assert httpx.post(f"{url}/predict", json=VALID).json()["model_version"] == "v-late"


def test_a_tampered_new_version_keeps_the_old_one_serving(model_store: Path, tmp_path: Path) -> None:
    store = copy_store(model_store, tmp_path)
    url, server = serve(store, tmp_path)
    with server:
        wait_for(f"{url}/health/ready", timeout=30)
        shutil.copytree(store / "v-test", store / "v-bad")
        bundle = json.loads((store / "v-bad" / "bundle.json").read_text())
        (store / "v-bad" / "bundle.json").write_text(json.dumps({**bundle, "version": "v-bad"}))
        tamper(store / "v-bad" / "model.joblib")
        (store / "CURRENT").write_text("v-bad\n")
        log = tmp_path / "api.log"
        for _ in range(100):
            if "v-bad" in log.read_text():
                break
            httpx.get(f"{url}/health/live")
        assert "does not match" in log.read_text()
        assert httpx.get(f"{url}/health/ready").status_code == 200
        assert httpx.post(f"{url}/predict", json=VALID).json()["model_version"] == "v-test"
