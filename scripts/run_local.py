"""``make run``: the API, the drift worker and, when a ``prometheus`` binary is on the PATH,
Prometheus with the shipped alert rules, as local processes until Ctrl-C.

With Prometheus the worker uses the ``prometheus`` source (as in the compose stack); without
it the worker reads the API's /metrics directly (the ``scrape`` source).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from monitoring.prometheus_config import write_local_config  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=Path("models"))
    parser.add_argument("--run-dir", type=Path, default=REPO / ".run", help="Prometheus config and data")
    parser.add_argument("--api-port", type=int, default=8000)
    parser.add_argument("--worker-port", type=int, default=8001)
    parser.add_argument("--prometheus-port", type=int, default=9090)
    parser.add_argument("--no-prometheus", action="store_true", help="even when a prometheus binary is there")
    return parser.parse_args()


def start(name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    print(f"starting {name}: {' '.join(args)}", flush=True)
    return subprocess.Popen(args, cwd=REPO, env={**os.environ, **(env or {})})


def start_prometheus(binary: str, args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    config = write_local_config(args.run_dir / "prometheus", {
        "api": [f"127.0.0.1:{args.api_port}"],
        "drift-worker": [f"127.0.0.1:{args.worker_port}"],
        "prometheus": [f"127.0.0.1:{args.prometheus_port}"],
    })
    process = start("prometheus", [binary, f"--config.file={config}",
                                   f"--storage.tsdb.path={args.run_dir / 'prometheus' / 'data'}",
                                   f"--web.listen-address=127.0.0.1:{args.prometheus_port}"])
    return process, f"http://127.0.0.1:{args.prometheus_port}"


def answers(url: str, expect: str = "") -> bool:
    try:
        answer = httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return False
    return answer.status_code == 200 and expect in answer.text


def wait_until(check: Callable[[], bool], processes: dict[str, subprocess.Popen], timeout: float = 120.0) -> bool:
    """Poll ``check`` while every process still runs, for at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and all(p.poll() is None for p in processes.values()):
        if check():
            return True
        time.sleep(0.3)
    return False


def prometheus_alerts_page(prometheus_url: str) -> str:
    """Debian's Prometheus build ships only the classic web UI (/alerts is a 404 there)."""
    try:
        modern = httpx.get(f"{prometheus_url}/alerts", timeout=2).status_code == 200
    except httpx.HTTPError:
        modern = False
    return f"{prometheus_url}/alerts" if modern else f"{prometheus_url}/classic/alerts"


def main() -> int:
    args = parse_args()
    api_url = f"http://127.0.0.1:{args.api_port}"
    worker_url = f"http://127.0.0.1:{args.worker_port}"
    processes = {"api": start("api", [sys.executable, "-m", "service"], {
        "API_MODEL_DIR": str(args.model_dir), "API_HOST": "127.0.0.1", "API_PORT": str(args.api_port)})}
    worker_env = {"DRIFT_MODEL_DIR": str(args.model_dir), "DRIFT_HOST": "127.0.0.1",
                  "DRIFT_PORT": str(args.worker_port),
                  "DRIFT_INTERVAL_SECONDS": os.environ.get("DRIFT_INTERVAL_SECONDS", "10")}
    binary = None if args.no_prometheus else shutil.which("prometheus")
    prometheus_url = None
    if binary:
        processes["prometheus"], prometheus_url = start_prometheus(binary, args)
        worker_env.update(DRIFT_SOURCE="prometheus", DRIFT_PROMETHEUS_URL=prometheus_url)
    else:
        worker_env.update(DRIFT_SOURCE="scrape", DRIFT_SCRAPE_URL=f"{api_url}/metrics")
    processes["drift worker"] = start("drift worker", [sys.executable, "-m", "monitoring.worker"], worker_env)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        return supervise(processes, api_url, worker_url, prometheus_url)
    except KeyboardInterrupt:
        return 0
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def supervise(processes: dict[str, subprocess.Popen], api_url: str, worker_url: str, prometheus_url: str | None) -> int:
    """Print where to look once everything answers, then wait until Ctrl-C or a process exits."""
    # The scrape source's first snapshot is its baseline: wait for the worker's first evaluation.
    checks = [lambda: answers(f"{api_url}/health/ready"), lambda: answers(f"{worker_url}/drift", '"outcome":"')]
    if prometheus_url:
        # increase() counts only growth between two scrapes: until Prometheus has scraped the
        # API's zero counts once, the first requests would be invisible to the drift worker.
        checks.append(lambda: answers(f"{prometheus_url}/api/v1/query?query=model_info", '"model_version"'))
    ready = all(wait_until(check, processes) for check in checks)
    if prometheus_url:
        where_prometheus = f"Prometheus   {prometheus_alerts_page(prometheus_url)}   (drift source: prometheus)"
    else:
        where_prometheus = "Prometheus   not started (no prometheus binary: apt-get install prometheus); drift source: scrape"
    if not ready:
        print("not everything became ready: see the log lines above", file=sys.stderr, flush=True)
    print(f"""
API          {api_url}/docs   (POST {api_url}/predict)
API metrics  {api_url}/metrics
drift        {worker_url}/drift   (worker metrics: {worker_url}/metrics)
{where_prometheus}
Send traffic from another shell:  .venv/bin/python simulate.py --scenario drift --rows 2000
Ctrl-C stops everything.
""", flush=True)
    while all(p.poll() is None for p in processes.values()):
        time.sleep(0.5)
    exited = [name for name, p in processes.items() if p.poll() is not None]
    print(f"stopping: {', '.join(exited)} exited", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
