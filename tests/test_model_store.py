"""A broken or mismatched bundle never gets served, and the API process survives it."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import joblib
import pytest

import train
from service.bundle import sha256_file
from tests.processes import serve_api, until, wait_for
from tests.test_api import VALID


def publish_current(store: Path, version: str) -> None:
    """Replace CURRENT atomically, as train.py does: the reloader never reads half a file."""
    (store / "CURRENT.tmp").write_text(version + "\n")
    os.replace(store / "CURRENT.tmp", store / "CURRENT")


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


def edit_bundle(change: Callable[[dict], None]) -> Callable[[Path], None]:
    """bundle.json is not covered by the sha256: an edit must still be caught when it breaks the profile."""
    def apply(path: Path) -> None:
        metadata = json.loads(path.read_text())
        change(metadata)
        path.write_text(json.dumps(metadata))
    return apply


def other_sklearn(metadata: dict) -> None:
    metadata["versions"]["sklearn"] = "0.0.1"


def replace_model_with_a_dict(path: Path) -> None:
    """A different pickle whose sha256 is put into bundle.json: it loads, but cannot predict."""
    joblib.dump({}, path)
    bundle_json = path.parent / "bundle.json"
    metadata = json.loads(bundle_json.read_text())
    metadata["artifact"]["sha256"] = sha256_file(path)
    bundle_json.write_text(json.dumps(metadata))


def set_profile(feature: str, key: str, value: object) -> Callable[[dict], None]:
    return lambda metadata: metadata["reference"]["features"][feature].__setitem__(key, value)


BREAKAGES: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "missing-artifact": ("model.joblib", Path.unlink, "cannot read"),
    "truncated-artifact": ("model.joblib", truncate, "does not match"),
    "tampered-artifact": ("model.joblib", tamper, "does not match"),
    "other-sklearn-version": ("bundle.json", edit_bundle(other_sklearn), "scikit-learn 0.0.1"),
    "corrupt-bundle-json": ("bundle.json", lambda p: p.write_text("{not json"), "not valid JSON"),
    "model-that-cannot-predict": ("model.joblib", replace_model_with_a_dict, "warm-up"),
    "nan-edge": ("bundle.json", edit_bundle(set_profile("MedInc", "edges", [0.1, float("nan"), 3.0])), "finite"),
    "all-zero-counts": ("bundle.json", edit_bundle(set_profile("HouseAge", "counts", [0] * 12)), "not all zero"),
    "huge-count": ("bundle.json", edit_bundle(set_profile("Latitude", "counts", [10**30] * 12)), "not a histogram"),
    "features-not-a-mapping": ("bundle.json", edit_bundle(lambda m: m["reference"].__setitem__("features", [])),
                               "not a reference profile"),
    "feature-profile-missing": ("bundle.json", edit_bundle(lambda m: m["reference"]["features"].pop("MedInc")),
                                "profiles for"),
    "no-model-section": ("bundle.json", edit_bundle(lambda m: m.pop("model")), "no 'model' section"),
    "current-not-text": ("../CURRENT", lambda p: p.write_bytes(b"\xff\xfev1\n"), "not text"),
}


@pytest.mark.parametrize("breakage", BREAKAGES, ids=list(BREAKAGES))
def test_broken_bundle_is_refused_and_the_process_stays_up(
        breakage: str, model_store: Path, tmp_path: Path) -> None:
    file, damage, reason = BREAKAGES[breakage]
    store = copy_store(model_store, tmp_path)
    damage(store / "v-test" / file)
    url, server = serve_api(store, tmp_path)
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
    edit_bundle(other_sklearn)(store / "v-test" / "bundle.json")
    url, server = serve_api(store, tmp_path, API_ALLOW_SKLEARN_MISMATCH="true")
    with server:
        wait_for(f"{url}/health/ready", timeout=30)
        assert httpx.post(f"{url}/predict", json=VALID).status_code == 200
    assert "another scikit-learn version" in (tmp_path / "api.log").read_text()


def test_missing_store_then_published_model_is_picked_up(housing_path: Path, tmp_path: Path) -> None:
    store = tmp_path / "empty"
    url, server = serve_api(store, tmp_path)
    with server:
        assert httpx.get(f"{url}/health/ready").status_code == 503
        assert httpx.post(f"{url}/predict", json=VALID).status_code == 503
        assert train.main(["--data", str(housing_path), "--model-dir", str(store), "--version", "v-late"]) == 0
        wait_for(f"{url}/health/ready", timeout=30)
        assert httpx.post(f"{url}/predict", json=VALID).json()["model_version"] == "v-late"


def test_after_a_broken_version_the_next_good_one_is_loaded(model_store: Path, tmp_path: Path) -> None:
    """The reloader survives a bundle that fails in an unexpected way (a model that cannot predict)."""
    store = copy_store(model_store, tmp_path)
    url, server = serve_api(store, tmp_path)
    with server:
        wait_for(f"{url}/health/ready", timeout=30)
        for version in ("v-broken", "v-good"):
            shutil.copytree(store / "v-test", store / version)
            edit_bundle(lambda m, v=version: m.__setitem__("version", v))(store / version / "bundle.json")
        replace_model_with_a_dict(store / "v-broken" / "model.joblib")
        publish_current(store, "v-broken")
        log = tmp_path / "api.log"
        until(lambda: "warm-up" in log.read_text(), 30, "the failed load of v-broken")
        assert httpx.post(f"{url}/predict", json=VALID).json()["model_version"] == "v-test"
        assert 'model_version="v-test"' in httpx.get(f"{url}/metrics").text.split("# TYPE model_info gauge")[1]
        publish_current(store, "v-good")
        until(lambda: httpx.post(f"{url}/predict", json=VALID).json()["model_version"] == "v-good", 30, "v-good")


def test_a_tampered_new_version_keeps_the_old_one_serving(model_store: Path, tmp_path: Path) -> None:
    store = copy_store(model_store, tmp_path)
    url, server = serve_api(store, tmp_path)
    with server:
        wait_for(f"{url}/health/ready", timeout=30)
        shutil.copytree(store / "v-test", store / "v-bad")
        bundle = json.loads((store / "v-bad" / "bundle.json").read_text())
        (store / "v-bad" / "bundle.json").write_text(json.dumps({**bundle, "version": "v-bad"}))
        tamper(store / "v-bad" / "model.joblib")
        publish_current(store, "v-bad")
        log = tmp_path / "api.log"
        until(lambda: "v-bad" in log.read_text(), 30, "the attempt to load v-bad")
        assert "does not match" in log.read_text()
        assert httpx.get(f"{url}/health/ready").status_code == 200
        assert httpx.post(f"{url}/predict", json=VALID).json()["model_version"] == "v-test"
