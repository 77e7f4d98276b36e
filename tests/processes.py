"""Real processes for tests: free loopback ports, start with a bounded readiness wait, always stop."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, *, timeout: float = 60.0, status: int = 200, process: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers ``status``; fail after ``timeout`` s or if ``process`` exits."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered {status}")
        try:
            answer = httpx.get(url, timeout=2.0)
            if answer.status_code == status:
                return
            last = f"HTTP {answer.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer {status} within {timeout} s (last: {last})")


def until(check: Callable[[], T], timeout: float, what: str, pause: float = 0.2) -> T:
    """Poll ``check`` until it returns something truthy, which is returned; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(pause)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@contextlib.contextmanager
def running(args: list[str], *, env: dict[str, str], log: Path, ready_url: str | None = None,
            ready_status: int = 200, timeout: float = 60.0) -> Iterator[subprocess.Popen]:
    """Run ``args`` (a Python module or script, from the repo root) until the block ends."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    with open(log, "ab") as out:
        process = subprocess.Popen(args, cwd=REPO, env=full_env, stdout=out, stderr=subprocess.STDOUT)
    try:
        if ready_url:
            wait_for(ready_url, timeout=timeout, status=ready_status, process=process)
        yield process
    finally:
        stop(process)


def stop(process: subprocess.Popen, timeout: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


def api_command() -> list[str]:
    return [sys.executable, "-m", "service"]


def worker_command() -> list[str]:
    return [sys.executable, "-m", "monitoring.worker"]


def serve_api(store: Path, log_dir: Path, **env: str) -> tuple[str, contextlib.AbstractContextManager]:
    """An API process for ``store`` on a free port: its URL and the context that runs it
    (ready once it is live; readiness is left to the test)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = {"API_MODEL_DIR": str(store), "API_PORT": str(port), "API_RELOAD_INTERVAL_SECONDS": "0.2", **env}
    return url, running(api_command(), env=settings, log=log_dir / "api.log", ready_url=f"{url}/health/live")
