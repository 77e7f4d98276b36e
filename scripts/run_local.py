"""``make run``: the API and the drift worker as local processes until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

API_PORT = 8000
WORKER_PORT = 8001


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=Path("models"))
    parser.add_argument("--host", default="127.0.0.1")
    return parser.parse_args()


def start(name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
    print(f"starting {name}: {' '.join(args)}", flush=True)
    return subprocess.Popen(args, env={**os.environ, **env})


def main() -> int:
    args = parse_args()
    api_url = f"http://{args.host}:{API_PORT}"
    worker_url = f"http://{args.host}:{WORKER_PORT}"
    processes = {
        "api": start("api", [sys.executable, "-m", "service"], {
            "API_MODEL_DIR": str(args.model_dir), "API_HOST": args.host, "API_PORT": str(API_PORT)}),
        "drift worker": start("drift worker", [sys.executable, "-m", "monitoring.worker"], {
            "DRIFT_MODEL_DIR": str(args.model_dir), "DRIFT_HOST": args.host, "DRIFT_PORT": str(WORKER_PORT),
            "DRIFT_SOURCE": "scrape", "DRIFT_SCRAPE_URL": f"{api_url}/metrics"}),
    }
    print(f"""
API          {api_url}/docs   (predict: POST {api_url}/predict)
API metrics  {api_url}/metrics
drift        {worker_url}/drift   (worker metrics: {worker_url}/metrics)
Send traffic from another shell:  .venv/bin/python simulate.py --scenario drift --rows 2000
Ctrl-C stops everything.
""", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while all(p.poll() is None for p in processes.values()):
            time.sleep(0.5)
        failed = [name for name, p in processes.items() if p.poll() is not None]
        print(f"stopped: {', '.join(failed)} exited", file=sys.stderr)
        return 1
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


if __name__ == "__main__":
    sys.exit(main())
