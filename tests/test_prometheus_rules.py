"""Prometheus configuration and alert rules: promtool checks, rule unit tests, and consistency.

* ``promtool check config`` / ``check rules`` / ``test rules`` must pass.
* Every alert carries ``severity`` and ``summary`` / ``description`` / ``runbook_url``, and is
  exercised by the promtool tests both firing and not firing.
* Every range window in the rules spans at least 4 scrape intervals.
* The drift thresholds in the rules are the drift worker's own decision rule
  (``monitoring.decision.DriftRule()``), checked both textually and by evaluating the real
  expressions with promtool on inputs placed exactly on, and just beside, each threshold.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PROM_DIR = REPO / "prometheus"
CONFIG = PROM_DIR / "prometheus.yml"
ALERTS = PROM_DIR / "alerts.yml"
RULE_TESTS = sorted((PROM_DIR / "tests").glob("*.yml"))

SEVERITIES = {"warning", "critical"}
REQUIRED_ANNOTATIONS = ("summary", "description", "runbook_url")
# Functions over a range vector whose window must hold several scrapes.
_RANGE = re.compile(r"\[\s*([0-9a-z]+)\s*(?::\s*[0-9a-z]*\s*)?\]")
_DURATION = re.compile(r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?")
_DURATION_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration such as ``10s``, ``5m`` or ``1h30m``."""
    match = _DURATION.fullmatch(text.strip())
    if not text.strip() or match is None or not any(match.groups()):
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(g) * unit for g, unit in zip(match.groups(), _DURATION_UNITS) if g)


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)


def explain(proc: subprocess.CompletedProcess) -> str:
    return f"$ {' '.join(map(str, proc.args))}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not on PATH: install Prometheus' promtool (Debian: apt-get install prometheus)")
    return path


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(CONFIG.read_text())


@pytest.fixture(scope="module")
def alerts() -> dict[str, dict]:
    """alert name -> rule, over all groups of alerts.yml."""
    doc = yaml.safe_load(ALERTS.read_text())
    rules: dict[str, dict] = {}
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                assert rule["alert"] not in rules, f"alert {rule['alert']} is defined twice"
                rules[rule["alert"]] = rule
    return rules


@pytest.fixture(scope="module")
def rule_tests() -> list[tuple[Path, dict]]:
    return [(path, yaml.safe_load(path.read_text())) for path in RULE_TESTS]


# --- promtool ------------------------------------------------------------------------------


def test_promtool_check_config(promtool: str) -> None:
    proc = run([promtool, "check", "config", str(CONFIG)])
    assert proc.returncode == 0, explain(proc)
    # check config also checks the rule files it references (relative to the config file).
    assert "1 rule files found" in proc.stdout + proc.stderr, explain(proc)


def test_promtool_check_rules(promtool: str, alerts: dict[str, dict]) -> None:
    proc = run([promtool, "check", "rules", str(ALERTS)])
    assert proc.returncode == 0, explain(proc)
    assert f"SUCCESS: {len(alerts)} rules found" in proc.stdout, explain(proc)


def test_promtool_rule_unit_tests(promtool: str) -> None:
    assert RULE_TESTS, "no promtool rule test files in prometheus/tests/"
    proc = run([promtool, "test", "rules", *map(str, RULE_TESTS)])
    assert proc.returncode == 0, explain(proc)
    assert (proc.stdout + proc.stderr).count("SUCCESS") == len(RULE_TESTS), explain(proc)


# --- scrape configuration ------------------------------------------------------------------


def scrape_intervals(config: dict) -> dict[str, float]:
    default = parse_duration(config.get("global", {}).get("scrape_interval", "1m"))
    return {job["job_name"]: parse_duration(job.get("scrape_interval", "")) if job.get("scrape_interval")
            else default for job in config["scrape_configs"]}


def test_scrape_configuration(config: dict) -> None:
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"api", "drift-worker", "prometheus"}
    assert all(interval <= 15 for interval in scrape_intervals(config).values()), scrape_intervals(config)
    # Every replica of the compose service `api`, found through DNS A records on port 8000.
    assert "static_configs" not in jobs["api"]
    assert jobs["api"]["dns_sd_configs"] == [
        {"names": ["api"], "type": "A", "port": 8000, "refresh_interval": "30s"}]
    assert jobs["drift-worker"]["static_configs"] == [{"targets": ["drift-worker:8001"]}]
    assert jobs["prometheus"]["static_configs"] == [{"targets": ["localhost:9090"]}]
    assert config["rule_files"] == ["alerts.yml"]


def test_rate_windows_span_at_least_four_scrape_intervals(config: dict, alerts: dict[str, dict]) -> None:
    scrape = max(scrape_intervals(config).values())
    windows = {name: [m.group(1) for m in _RANGE.finditer(rule["expr"])] for name, rule in alerts.items()}
    found = [w for ws in windows.values() for w in ws]
    assert found, "no range windows found in alerts.yml: the window check would be vacuous"
    short = {name: ws for name, ws in windows.items() if any(parse_duration(w) < 4 * scrape for w in ws)}
    assert not short, f"windows shorter than 4 x {scrape:g} s scrape interval: {short}"


def test_parse_duration() -> None:
    assert parse_duration("10s") == 10
    assert parse_duration("5m") == 300
    assert parse_duration("1h30m") == 5400
    assert parse_duration("500ms") == 0.5
    with pytest.raises(ValueError):
        parse_duration("5 minutes")


# --- alert metadata and test coverage ------------------------------------------------------


def test_every_alert_has_severity_and_annotations(alerts: dict[str, dict]) -> None:
    assert len(alerts) >= 10
    for name, rule in alerts.items():
        assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{name}: severity label"
        annotations = rule.get("annotations", {})
        for key in REQUIRED_ANNOTATIONS:
            assert str(annotations.get(key, "")).strip(), f"{name}: missing or empty annotation {key}"
        assert annotations["runbook_url"] == f"README.md#runbook-{name.lower()}", name


def test_critical_and_warning_split(alerts: dict[str, dict]) -> None:
    severity = {name: rule["labels"]["severity"] for name, rule in alerts.items()}
    assert severity["FeatureDrift"] == "warning"
    assert severity["FeatureDriftSevere"] == "critical"
    assert severity["APIDown"] == "critical"


def test_every_alert_is_tested_firing_and_not_firing(alerts: dict[str, dict],
                                                     rule_tests: list[tuple[Path, dict]]) -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    tested: set[str] = set()
    for path, doc in rule_tests:
        assert doc.get("rule_files") == ["../alerts.yml"], f"{path.name} must test prometheus/alerts.yml"
        for case in doc["tests"]:
            for check in case.get("alert_rule_test", []):
                name = check["alertname"]
                tested.add(name)
                (firing if check.get("exp_alerts") else silent).add(name)
    # A test of a misspelled alert name would pass vacuously with exp_alerts: [].
    assert tested <= set(alerts), f"tests name unknown alerts: {sorted(tested - set(alerts))}"
    assert set(alerts) - firing == set(), f"alerts never expected to fire: {sorted(set(alerts) - firing)}"
    assert set(alerts) - silent == set(), f"alerts never expected silent: {sorted(set(alerts) - silent)}"


# --- the drift thresholds are the worker's -------------------------------------------------


@pytest.fixture(scope="module")
def drift_rule():
    try:
        from monitoring.decision import DriftRule
    except ImportError as exc:  # a failure with a message, never a skip
        pytest.fail(f"monitoring.decision.DriftRule is not importable: {exc}")
    return DriftRule()


def thresholds(expr: str, metric: str) -> list[tuple[str, float]]:
    """(operator, number) of every ``metric <op> number`` comparison in ``expr``."""
    pattern = re.compile(rf"\b{re.escape(metric)}\b(?:\{{[^}}]*\}})?\s*(>=|<=|==|!=|>|<)\s*([0-9.eE+-]+)")
    return [(op, float(number)) for op, number in pattern.findall(expr)]


def test_drift_thresholds_in_rules_equal_worker_defaults(alerts: dict[str, dict], drift_rule) -> None:
    kl, severe, alpha, min_n = (drift_rule.kl_threshold, drift_rule.severe_kl_threshold,
                                drift_rule.alpha, drift_rule.min_samples)
    feature = alerts["FeatureDrift"]["expr"]
    assert thresholds(feature, "drift_kl_divergence") == [(">=", kl)]
    assert thresholds(feature, "drift_p_value") == [("<", alpha)]
    assert thresholds(feature, "drift_window_samples") == [(">=", min_n)]
    severe_expr = alerts["FeatureDriftSevere"]["expr"]
    assert thresholds(severe_expr, "drift_kl_divergence") == [(">=", severe)]
    assert thresholds(severe_expr, "drift_p_value") == [("<", alpha)]
    assert thresholds(severe_expr, "drift_window_samples") == [(">=", min_n)]
    prediction = alerts["PredictionDrift"]["expr"]
    assert thresholds(prediction, "drift_prediction_kl_divergence") == [(">=", kl)]
    assert thresholds(prediction, "drift_prediction_p_value") == [("<", alpha)]
    assert thresholds(prediction, "drift_window_samples") == [(">=", min_n)]
    # "Traffic but no drift data" only counts traffic that could fill the worker's window.
    assert re.search(rf"model_predictions_total\[\w+\]\)\)\s*>=\s*{min_n}\b", alerts["DriftDataMissing"]["expr"])


def _series(name: str, labels: dict[str, str], value: float) -> dict:
    label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{label_text}}}", "values": " ".join([repr(float(value))] * 7)}


def test_drift_expressions_match_worker_rule_on_the_boundaries(tmp_path: Path, promtool: str,
                                                               alerts: dict[str, dict], drift_rule) -> None:
    """Evaluate the real alert expressions on values exactly at and just beside each threshold.

    The worker calls a feature drifting when KL >= kl_threshold AND p < alpha AND
    samples >= min_samples (severe: KL >= severe_kl_threshold); the alert expressions must
    draw the same line, including which side of each boundary is inclusive.
    """
    from monitoring.divergence import BinComparison

    kl, severe, alpha, min_n = (drift_rule.kl_threshold, drift_rule.severe_kl_threshold,
                                drift_rule.alpha, drift_rule.min_samples)
    below = lambda x: math.nextafter(x, -math.inf)  # noqa: E731
    worker = {"job": "drift-worker", "instance": "drift-worker:8001"}
    p_sig = below(alpha)
    # feature -> (model_version, KL, p-value)
    features = {
        "at_threshold": ("v1", kl, p_sig),
        "kl_below": ("v1", below(kl), p_sig),
        "p_at_alpha": ("v1", kl, alpha),
        "severe_at": ("v1", severe, p_sig),
        "severe_below": ("v1", below(severe), p_sig),
        "few_rows": ("v2", severe, p_sig),
    }
    samples = {"v1": min_n, "v2": min_n - 1, "v3": min_n, "v4": min_n}
    # model_version -> (prediction KL, prediction p-value)
    predictions = {"v1": (kl, p_sig), "v2": (severe, p_sig), "v3": (below(kl), p_sig), "v4": (kl, alpha)}
    series = []
    for feature, (version, kl_value, p_value) in features.items():
        labels = {**worker, "feature": feature, "model_version": version}
        series += [_series("drift_kl_divergence", labels, kl_value), _series("drift_p_value", labels, p_value)]
    for version, (kl_value, p_value) in predictions.items():
        labels = {**worker, "model_version": version}
        series += [_series("drift_prediction_kl_divergence", labels, kl_value),
                   _series("drift_prediction_p_value", labels, p_value),
                   _series("drift_window_samples", labels, samples[version])]

    # The worker's own verdicts on the same numbers (its public severity(): none/warning/severe).
    def verdict(kl_value: float, p_value: float, n: int) -> str:
        return drift_rule.severity(BinComparison(
            kl=kl_value, psi=2 * kl_value, g_statistic=0.0, p_value=p_value, out_of_range_ratio=0.0,
            live_total=float(n), live_proportions=np.zeros(3), reference_proportions=np.full(3, 1 / 3)))

    feature_verdict = {f: verdict(k, p, samples[v]) for f, (v, k, p) in features.items()}
    prediction_verdict = {v: verdict(k, p, samples[v]) for v, (k, p) in predictions.items()}
    assert feature_verdict == {"at_threshold": "warning", "kl_below": "none", "p_at_alpha": "none",
                               "severe_at": "severe", "severe_below": "warning", "few_rows": "none"}
    assert prediction_verdict == {"v1": "warning", "v2": "none", "v3": "none", "v4": "none"}

    def expect(alert: str, by: str, keys: list[str]) -> dict:
        assert keys, alert
        return {"expr": f"count by ({by}) ({alerts[alert]['expr']})", "eval_time": "1m",
                "exp_samples": [{"labels": "{" + f'{by}="{k}"' + "}", "value": 1} for k in sorted(keys)]}

    doc = {
        "rule_files": [],
        "evaluation_interval": "10s",
        "tests": [{
            "interval": "10s",
            "input_series": series,
            "promql_expr_test": [
                expect("FeatureDrift", "feature", [f for f, v in feature_verdict.items() if v != "none"]),
                expect("FeatureDriftSevere", "feature", [f for f, v in feature_verdict.items() if v == "severe"]),
                expect("PredictionDrift", "model_version",
                       [m for m, v in prediction_verdict.items() if v != "none"]),
            ],
        }],
    }
    test_file = tmp_path / "boundaries.yml"
    test_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    proc = run([promtool, "test", "rules", str(test_file)])
    assert proc.returncode == 0, explain(proc) + "\n--- generated test ---\n" + test_file.read_text()
