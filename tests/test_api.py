"""The real API process: predictions, validation of every kind of bad input, metrics."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from urllib.parse import urlparse

import httpx
import joblib
import numpy as np
import pytest

from service.metrics import REJECTION_REASONS
from service.schemas import FEATURE_NAMES
from tests.metrics_text import scrape, series, value
from tests.processes import serve_api, until

VALID = {"MedInc": 8.3252, "HouseAge": 41.0, "AveRooms": 6.984, "AveBedrms": 1.024, "Population": 322.0,
         "AveOccup": 2.556, "Latitude": 37.88, "Longitude": -122.23}
VALID_JSON = json.dumps(VALID)
JSON = {"content-type": "application/json"}


def with_token(feature: str, token: str) -> str:
    """VALID as JSON text with one feature's value replaced by a raw token (NaN, 1e999, true...)."""
    return VALID_JSON.replace(json.dumps(VALID[feature]), token, 1)


def offline_model(model_store: Path):
    version = (model_store / "CURRENT").read_text().strip()
    return joblib.load(model_store / version / "model.joblib")


def test_prediction_equals_the_offline_model(api_url: str, model_store: Path) -> None:
    answer = httpx.post(f"{api_url}/predict", json=VALID)
    assert answer.status_code == 200
    expected = offline_model(model_store).predict(np.array([[VALID[f] for f in FEATURE_NAMES]]))[0]
    body = answer.json()
    assert body["prediction"] == expected
    assert body["predicted_price_usd"] == pytest.approx(expected * 100_000, rel=1e-12)
    assert body["model_version"] == "v-test"


def test_batch_predictions_equal_the_offline_model(api_url: str, model_store: Path, split) -> None:
    rows = split.x_test[:50]
    answer = httpx.post(f"{api_url}/predict/batch",
                        json={"instances": [dict(zip(FEATURE_NAMES, map(float, r))) for r in rows]})
    assert answer.status_code == 200
    assert answer.json()["predictions"] == offline_model(model_store).predict(rows).tolist()


BAD_INPUTS = [
    # (id, path, raw body, content type, status, reason)
    *[(f"{token}-in-{feature}", "/predict", with_token(feature, token), "application/json", 422, "non_finite")
      for token in ("NaN", "Infinity", "-Infinity", "1e999") for feature in FEATURE_NAMES],
    ("missing-feature", "/predict", json.dumps({k: v for k, v in VALID.items() if k != "AveOccup"}),
     "application/json", 422, "missing_field"),
    ("unknown-field", "/predict", json.dumps({**VALID, "Color": 1.0}), "application/json", 422, "unknown_field"),
    ("true-for-number", "/predict", with_token("HouseAge", "true"), "application/json", 422, "wrong_type"),
    ("string-for-number", "/predict", with_token("MedInc", '"1.5"'), "application/json", 422, "wrong_type"),
    ("null-for-number", "/predict", with_token("MedInc", "null"), "application/json", 422, "wrong_type"),
    ("empty-body", "/predict", "", "application/json", 400, "empty_body"),
    ("truncated-json", "/predict", VALID_JSON[:40], "application/json", 400, "invalid_json"),
    ("top-level-array", "/predict", json.dumps([VALID]), "application/json", 422, "not_an_object"),
    ("top-level-string", "/predict", '"MedInc"', "application/json", 422, "not_an_object"),
    ("form-encoded", "/predict", "MedInc=1&HouseAge=2", "application/x-www-form-urlencoded", 415,
     "unsupported_media_type"),
    ("text-plain", "/predict", VALID_JSON, "text/plain", 415, "unsupported_media_type"),
    ("no-content-type", "/predict", VALID_JSON, None, 415, "unsupported_media_type"),
    ("empty-batch", "/predict/batch", json.dumps({"instances": []}), "application/json", 422, "batch_size"),
    ("batch-over-limit", "/predict/batch", json.dumps({"instances": [VALID] * 1001}), "application/json", 422,
     "batch_size"),
    ("nan-in-batch", "/predict/batch", '{"instances": [' + VALID_JSON + "," + with_token("Latitude", "NaN") + "]}",
     "application/json", 422, "non_finite"),
    ("batch-not-a-list", "/predict/batch", json.dumps({"instances": VALID}), "application/json", 422, "wrong_type"),
    ("huge-batch-of-empty-objects", "/predict/batch", '{"instances": [' + ",".join(["{}"] * 300_000) + "]}",
     "application/json", 422, "batch_size"),
    ("latin-1-charset", "/predict", VALID_JSON, "application/json; charset=latin-1", 415, "unsupported_media_type"),
]


@pytest.mark.parametrize(("path", "body", "content_type", "status", "reason"),
                         [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_refused_counted_and_never_reaches_the_model(
        api_url: str, path: str, body: str, content_type: str | None, status: int, reason: str) -> None:
    before = scrape(api_url)
    headers = {"content-type": content_type} if content_type else {}
    answer = httpx.post(f"{api_url}{path}", content=body.encode(), headers=headers)
    after = scrape(api_url)

    assert answer.status_code == status, answer.text
    error = answer.json()
    assert error["error"] == reason
    assert error["message"]
    assert error["request_id"] == answer.headers["x-request-id"]
    assert value(after, "model_input_rejected_total", reason=reason) == \
        value(before, "model_input_rejected_total", reason=reason) + 1
    assert value(after, "model_predictions_total", model_version="v-test") == \
        value(before, "model_predictions_total", model_version="v-test")
    assert value(after, "model_inference_duration_seconds_count") == value(before, "model_inference_duration_seconds_count")
    assert value(after, "http_requests_total", handler=path, method="POST", status=str(status)) == \
        value(before, "http_requests_total", handler=path, method="POST", status=str(status)) + 1


def _raw_exchange(api_url: str, request: bytes, read_timeout: float = 10.0) -> bytes:
    address = urlparse(api_url)
    with socket.create_connection((address.hostname, address.port), timeout=read_timeout) as sock:
        sock.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def test_declared_oversized_body_gets_413_before_the_body_is_sent(api_url: str) -> None:
    """Only the headers go out: an answer proves the server did not wait to read 2 MiB."""
    before = scrape(api_url)
    head = (b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2097152\r\n\r\n")
    answer = _raw_exchange(api_url, head)
    assert answer.startswith(b"HTTP/1.1 413")
    assert value(scrape(api_url), "model_input_rejected_total", reason="body_too_large") == \
        value(before, "model_input_rejected_total", reason="body_too_large") + 1


def test_chunked_body_over_the_limit_gets_413(api_url: str) -> None:
    def chunks():
        piece = b" " * 65536
        for _ in range(20):  # 1.25 MiB of whitespace, no Content-Length
            yield piece
    answer = httpx.post(f"{api_url}/predict", content=chunks(), headers=JSON)
    assert answer.status_code == 413
    assert answer.json()["error"] == "body_too_large"


def test_body_just_under_the_limit_is_parsed(api_url: str) -> None:
    body = VALID_JSON + " " * ((1 << 20) - len(VALID_JSON))
    answer = httpx.post(f"{api_url}/predict", content=body.encode(), headers=JSON)
    assert answer.status_code == 200


def test_compressed_body_is_refused(api_url: str) -> None:
    import gzip

    answer = httpx.post(f"{api_url}/predict", content=gzip.compress(VALID_JSON.encode()),
                        headers={**JSON, "content-encoding": "gzip"})
    assert answer.status_code == 415
    assert answer.json()["error"] == "unsupported_media_type"


def test_error_details_do_not_echo_long_keys(api_url: str) -> None:
    body = json.dumps({**VALID, "x" * 10_000: 1.0})
    answer = httpx.post(f"{api_url}/predict", content=body.encode(), headers=JSON)
    assert answer.status_code == 422
    assert answer.json()["details"][0]["loc"] == ["x" * 64]
    assert len(answer.content) < 1000


def test_client_leaving_mid_body_is_not_a_server_error(api_url: str) -> None:
    before = scrape(api_url)
    address = urlparse(api_url)
    with socket.create_connection((address.hostname, address.port), timeout=5) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"MedInc\":")
    until(lambda: value(scrape(api_url), "model_input_rejected_total", reason="client_disconnected") ==
          value(before, "model_input_rejected_total", reason="client_disconnected") + 1, 10, "the disconnect")
    after = scrape(api_url)
    assert value(after, "http_requests_total", handler="/predict", method="POST", status="500") == \
        value(before, "http_requests_total", handler="/predict", method="POST", status="500")


def test_slow_body_gets_408(model_store: Path, tmp_path: Path) -> None:
    url, server = serve_api(model_store, tmp_path, API_BODY_TIMEOUT_SECONDS="0.5")
    with server:
        address = urlparse(url)
        with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 200\r\n\r\n{")
            answer = b""
            while b"body_timeout" not in answer and (chunk := sock.recv(65536)):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 408")
        assert b'"error":"body_timeout"' in answer


def test_wrong_method_is_405_with_allow(api_url: str) -> None:
    answer = httpx.get(f"{api_url}/predict")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"
    assert answer.json()["error"] == "method_not_allowed"


def test_unknown_paths_are_404_counted_as_handler_none(api_url: str) -> None:
    before = scrape(api_url)
    for path in ("/wp-admin", "/.env", "/predict/../../etc/passwd", "/x" * 50):
        answer = httpx.get(f"{api_url}{path}")
        assert answer.status_code == 404
        assert answer.json()["error"] == "not_found"
    after = scrape(api_url)
    assert value(after, "http_requests_total", handler="none", method="GET", status="404") == \
        value(before, "http_requests_total", handler="none", method="GET", status="404") + 4
    handlers = {dict(labels)["handler"] for labels in series(after, "http_requests_total")}
    assert handlers == {"/predict", "/predict/batch", "/model", "/openapi.json", "/docs", "/redoc", "none"}


def test_request_id_is_taken_from_the_request_or_generated(api_url: str) -> None:
    assert httpx.get(f"{api_url}/model", headers={"x-request-id": "abc-123"}).headers["x-request-id"] == "abc-123"
    generated = httpx.get(f"{api_url}/model").headers["x-request-id"]
    assert len(generated) == 32 and generated != "abc-123"
    unsafe = httpx.get(f"{api_url}/model", headers={"x-request-id": "a b\tc"}).headers["x-request-id"]
    assert unsafe != "a b\tc" and len(unsafe) == 32


def test_model_metadata_and_single_inference_thread(api_url: str) -> None:
    meta = httpx.get(f"{api_url}/model").json()
    assert meta["version"] == "v-test"
    assert meta["features"] == list(FEATURE_NAMES)
    assert meta["metrics"]["holdout"]["r2"] > 0.8
    pools = meta["runtime"]["threadpools"]
    assert any(pool["api"] == "openmp" for pool in pools)
    assert all(pool["threads"] == 1 for pool in pools)


def test_health_and_metrics_routes_are_not_counted(api_url: str) -> None:
    httpx.get(f"{api_url}/health/live")
    httpx.get(f"{api_url}/health/ready")
    samples = scrape(api_url)
    handlers = {dict(labels)["handler"] for labels in series(samples, "http_requests_total")}
    assert not handlers & {"/metrics", "/health/live", "/health/ready"}


def test_fresh_api_exports_every_label_set_in_use_at_zero(model_store: Path, tmp_path: Path) -> None:
    """So that the first error shows up in rate(), and increase() sees the first requests."""
    url, server = serve_api(model_store, tmp_path)
    with server:
        until(lambda: httpx.get(f"{url}/health/ready").status_code == 200, 30, "readiness")
        samples = scrape(url)
    for reason in REJECTION_REASONS:
        assert samples[("model_input_rejected_total", frozenset({"reason": reason}.items()))] == 0
    for handler in ("/predict", "/predict/batch"):
        for status in ("200", "400", "413", "415", "422", "500", "503"):
            key = ("http_requests_total", frozenset({"handler": handler, "method": "POST", "status": status}.items()))
            assert samples[key] == 0
    assert samples[("http_requests_total", frozenset({"handler": "none", "method": "GET", "status": "404"}.items()))] == 0
    assert samples[("model_predictions_total", frozenset({"model_version": "v-test"}.items()))] == 0
    reference = json.loads((model_store / "v-test" / "bundle.json").read_text())["reference"]
    for feature in FEATURE_NAMES:
        buckets = series(samples, "model_feature_value_bucket", feature=feature, model_version="v-test")
        assert len(buckets) == len(reference["features"][feature]["edges"]) + 1
        assert set(buckets.values()) == {0.0}
    assert len(series(samples, "model_prediction_value_bucket")) == len(reference["prediction"]["edges"]) + 1


def test_one_json_log_line_per_request(model_store: Path, tmp_path: Path) -> None:
    url, server = serve_api(model_store, tmp_path)
    with server:
        until(lambda: httpx.get(f"{url}/health/ready").status_code == 200, 30, "readiness")
        answers = [httpx.post(f"{url}/predict", json=VALID, headers={"x-request-id": "req-ok"}),
                   httpx.post(f"{url}/predict", content=b"[]", headers={**JSON, "x-request-id": "req-bad"}),
                   httpx.get(f"{url}/nowhere", headers={"x-request-id": "req-404"})]
    assert [a.status_code for a in answers] == [200, 422, 404]
    lines = [json.loads(line) for line in (tmp_path / "api.log").read_text().splitlines() if line.startswith("{")]
    requests = {entry["request_id"]: entry for entry in lines if entry.get("logger") == "service.access"}
    assert sorted(requests) == ["req-404", "req-bad", "req-ok"]
    assert requests["req-ok"]["route"] == "/predict" and requests["req-ok"]["status"] == 200
    assert requests["req-ok"]["model_version"] == "v-test" and requests["req-ok"]["duration_ms"] > 0
    assert (requests["req-bad"]["status"], requests["req-bad"]["model_version"]) == (422, None)
    assert (requests["req-404"]["route"], requests["req-404"]["status"]) == ("none", 404)
