"""Settings of the drift worker, read from ``DRIFT_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from monitoring.decision import DriftRule
from monitoring.divergence import DEFAULT_SMOOTHING

_DEFAULT_RULE = DriftRule()


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DRIFT_")

    model_dir: Path = Field(Path("models"), description="model store with one bundle per served version")
    source: Literal["prometheus", "scrape"] = Field(
        "prometheus", description="prometheus: PromQL over every replica; scrape: one API's /metrics")
    prometheus_url: str = "http://127.0.0.1:9090"
    scrape_url: str = "http://127.0.0.1:8000/metrics"
    host: str = "127.0.0.1"
    port: int = Field(8001, ge=1, le=65535)
    interval_seconds: float = Field(30.0, gt=0, description="time between evaluations")
    window_seconds: float = Field(900.0, ge=1, description="live window evaluated (whole seconds for PromQL)")
    max_backoff_seconds: float = Field(120.0, gt=0, description="longest wait between retries after errors")
    request_timeout_seconds: float = Field(10.0, gt=0)
    min_samples: int = Field(_DEFAULT_RULE.min_samples, ge=1)
    kl_threshold: float = Field(_DEFAULT_RULE.kl_threshold, ge=0)
    severe_kl_threshold: float = Field(_DEFAULT_RULE.severe_kl_threshold, ge=0)
    alpha: float = Field(_DEFAULT_RULE.alpha, gt=0, le=1)
    smoothing: float = Field(DEFAULT_SMOOTHING, gt=0)
    log_level: str = "INFO"

    def rule(self) -> DriftRule:
        return DriftRule(kl_threshold=self.kl_threshold, severe_kl_threshold=self.severe_kl_threshold,
                         alpha=self.alpha, min_samples=self.min_samples)
