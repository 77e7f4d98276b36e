"""Settings of the API process, read from ``API_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="API_")

    model_dir: Path = Field(Path("models"), description="model store holding CURRENT and the bundles")
    host: str = Field("127.0.0.1", description="listen address (0.0.0.0 inside a container)")
    port: int = Field(8000, ge=1, le=65535)
    max_body_bytes: int = Field(1 << 20, ge=1024, description="larger request bodies get 413")
    body_timeout_seconds: float = Field(10.0, gt=0, description="a body still arriving after this gets 408")
    max_batch_rows: int = Field(1000, ge=1, description="larger batches get 422")
    allow_sklearn_mismatch: bool = Field(
        False, description="load a bundle trained with another scikit-learn version (logged loudly)")
    inference_threads: int = Field(
        1, ge=1, description="OpenMP/BLAS threads for predict; 1 is fastest under concurrent requests")
    reload_interval_seconds: float = Field(
        10.0, gt=0, description="how often CURRENT is checked for a newly published model")
    log_level: str = Field("INFO")
