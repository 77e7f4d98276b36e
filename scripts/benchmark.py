"""Throughput and latency of the inference API, as ratios against baselines run in the same run.

    make bench                                              # = the line below
    .venv/bin/python scripts/benchmark.py --model-dir models
    .venv/bin/python scripts/benchmark.py --model-dir models --duration 20 --out bench.json

One after the other, each in its own process on a free 127.0.0.1 port, stopped before the next:

  A    scripts/bench_baseline.py: a bare FastAPI endpoint (plain pydantic body, model.predict on a
       1x8 array) with scikit-learn's default OpenMP threads (no limit);
  B    the same with OpenMP limited to 1 thread (threadpoolctl), as the API does by default;
  API  ``python -m service`` (one process, its default settings): POST /predict, then
       POST /predict/batch with BATCH_ROWS held-out rows per request.

Each gets a warm-up, then ``wrk --latency`` (needs /usr/bin/wrk: apt-get install wrk) POSTing
real held-out rows as JSON from a second process.

Reading the result: absolute numbers depend on the machine and on whatever else runs on it, so
compare only the ratio columns. ``rows/s ÷B`` is what our code path (validation, middleware,
metrics, logging) costs on top of the same model call under the same thread setting: 1.0 means
free, 0.5 means the API serves half as many rows per second. ``÷A`` also includes the effect of
the thread limit (A vs B shows it alone). For the batch line, rows/s are compared with the
baselines' single-row rows/s. ``CPU ms`` is the server process's CPU time per request (all its
threads, from /proc) during the load; ``CPU/row ÷B`` compares it per row with B and is steadier
than throughput when other programs share the CPU (1.7 means our path burns 70 % more CPU per
row than the bare endpoint). Run it twice; throughput differences under ~10 % between runs are
noise, and ``--rounds 3`` interleaves A, B, API three times and reports medians. Exit status 1
when the API answered any request with an error during the load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import simulate  # noqa: E402
import train  # noqa: E402
from service import bundle  # noqa: E402
from service.schemas import FEATURE_NAMES  # noqa: E402
from tests.processes import api_command, free_port, running  # noqa: E402

BATCH_ROWS = 100
_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
_DURATION = r"([\d.]+)(us|ms|s|m)\b"


@dataclass
class Endpoint:
    label: str
    path: str
    body: dict[str, Any]
    rows: int = 1


@dataclass
class Target:
    key: str
    description: str
    command: list[str]
    env: dict[str, str]
    ready_path: str
    threads_path: str
    endpoints: list[Endpoint]


@dataclass
class Result:
    target: str
    label: str
    openmp_threads: int | None
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_request: float
    requests: int
    errors: int
    rows_per_request: int
    prediction: float
    ratios: dict[str, float] = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        return self.requests_per_s * self.rows_per_request


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=Path(os.environ.get("MODEL_DIR", "models")))
    parser.add_argument("--data", default=None, help="cal_housing.data (default: $HOUSING_DATA, else the file "
                        "the model was trained on, else fetch)")
    parser.add_argument("--duration", type=int, default=10, help="seconds of measured load per endpoint")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load before each")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--rounds", type=int, default=1, help="repeat A, B, API this many times and report "
                        "each figure's median (steadier on a busy machine)")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    return parser.parse_args()


def holdout_rows(data_path: str | None, count: int) -> np.ndarray:
    return train.split_holdout(train.load_housing(data_path)).x_test[:count]


def record(row: np.ndarray) -> dict[str, float]:
    return dict(zip(FEATURE_NAMES, map(float, row)))


def write_lua(path: Path, body: dict[str, Any]) -> Path:
    text = json.dumps(body)
    path.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                    f"wrk.body = [==[{text}]==]\n")
    return path


def run_wrk(wrk: str, url: str, lua: Path, seconds: int, args: argparse.Namespace) -> dict[str, float]:
    command = [wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds}s", "--timeout", "5s",
               "--latency", "-s", str(lua), url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


def parse_wrk(output: str) -> dict[str, float]:
    """Requests/s, p50/p99 (ms), request count and errors (non-2xx/3xx answers + socket errors)."""
    def duration_ms(percent: str) -> float:
        found = re.search(rf"^\s*{percent}%\s+{_DURATION}", output, re.M)
        if not found:
            raise ValueError(f"no {percent}% latency in wrk output:\n{output}")
        return float(found[1]) * _UNITS_MS[found[2]]

    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    total = re.search(r"^\s*(\d+) requests in", output, re.M)
    if not rate or not total:
        raise ValueError(f"unexpected wrk output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    errors = (int(non_2xx[1]) if non_2xx else 0) + (sum(map(int, sockets.groups())) if sockets else 0)
    return {"requests_per_s": float(rate[1]), "p50_ms": duration_ms("50"), "p99_ms": duration_ms("99"),
            "requests": int(total[1]), "errors": errors}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` and all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def openmp_threads(pools: list[dict[str, Any]]) -> int | None:
    return next((pool["threads"] for pool in pools if pool["api"] == "openmp"), None)


def measure(target: Target, wrk: str, workdir: Path, args: argparse.Namespace) -> list[Result]:
    """Start ``target``, check one answer, then warm up and measure each endpoint with wrk; always stop it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {key: value.replace("{port}", str(port)) for key, value in target.env.items()}
    command = [part.replace("{port}", str(port)) for part in target.command]
    log = workdir / f"{target.key}.log"
    print(f"{target.key}: {target.description} on {base}", file=sys.stderr, flush=True)
    results = []
    try:
        with running(command, env=env, log=log, ready_url=base + target.ready_path, timeout=60.0) as process:
            answer = httpx.get(base + target.threads_path, timeout=10.0)
            answer.raise_for_status()
            pools = answer.json()
            threads = openmp_threads(pools["runtime"]["threadpools"] if isinstance(pools, dict) else pools)
            for endpoint in target.endpoints:
                check = httpx.post(base + endpoint.path, json=endpoint.body, timeout=10.0)
                check.raise_for_status()
                reply = check.json()
                first = reply["predictions"][0] if "predictions" in reply else reply["prediction"]
                lua = write_lua(workdir / f"{target.key}-{endpoint.rows}.lua", endpoint.body)
                run_wrk(wrk, base + endpoint.path, lua, args.warmup, args)
                cpu_before = cpu_seconds(process.pid)
                stats = run_wrk(wrk, base + endpoint.path, lua, args.duration, args)
                cpu_ms = (cpu_seconds(process.pid) - cpu_before) * 1000 / max(stats["requests"], 1)
                results.append(Result(target=target.key, label=endpoint.label, openmp_threads=threads,
                                      cpu_ms_per_request=cpu_ms, rows_per_request=endpoint.rows,
                                      prediction=first, **stats))
    except Exception:
        if log.exists():
            tail = log.read_text(errors="replace").splitlines()[-20:]
            print(f"--- last lines of {target.key}'s log ---\n" + "\n".join(tail), file=sys.stderr)
        raise
    return results


def median_result(same: list[Result]) -> Result:
    """One endpoint's rounds as one result: median rate and latencies, total requests and errors."""
    first = same[0]
    return Result(target=first.target, label=first.label, openmp_threads=first.openmp_threads,
                  requests_per_s=float(np.median([r.requests_per_s for r in same])),
                  p50_ms=float(np.median([r.p50_ms for r in same])),
                  p99_ms=float(np.median([r.p99_ms for r in same])),
                  cpu_ms_per_request=float(np.median([r.cpu_ms_per_request for r in same])),
                  requests=sum(r.requests for r in same), errors=sum(r.errors for r in same),
                  rows_per_request=first.rows_per_request, prediction=first.prediction)


def add_ratios(results: list[Result]) -> None:
    baselines = {r.target: r for r in results if r.target in ("A", "B")}
    for result in results:
        for key, base in baselines.items():
            result.ratios[f"rows_per_s_vs_{key}"] = result.rows_per_s / base.rows_per_s
            result.ratios[f"p50_vs_{key}"] = result.p50_ms / base.p50_ms
            result.ratios[f"cpu_per_row_vs_{key}"] = (result.cpu_ms_per_request / result.rows_per_request
                                                      / base.cpu_ms_per_request)


def print_table(results: list[Result]) -> None:
    header = (f"{'target':<30}{'OpenMP':>7}{'req/s':>8}{'rows/s':>8}{'p50 ms':>8}{'p99 ms':>9}{'CPU ms':>8}"
              f"{'errors':>7}{'rows/s ÷A':>10}{'rows/s ÷B':>10}{'CPU/row ÷B':>11}")
    print(header)
    print("-" * len(header))
    for r in results:
        threads = "-" if r.openmp_threads is None else str(r.openmp_threads)
        print(f"{r.label:<30}{threads:>7}{r.requests_per_s:>8.0f}{r.rows_per_s:>8.0f}{r.p50_ms:>8.1f}"
              f"{r.p99_ms:>9.1f}{r.cpu_ms_per_request:>8.2f}{r.errors:>7}{r.ratios['rows_per_s_vs_A']:>10.2f}"
              f"{r.ratios['rows_per_s_vs_B']:>10.2f}{r.ratios['cpu_per_row_vs_B']:>11.2f}")


def main() -> int:
    args = parse_args()
    wrk = shutil.which("wrk")
    if wrk is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    # Ctrl-C and SIGTERM unwind through the finally blocks that stop the servers (even when the
    # shell started us with SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    model_dir = args.model_dir.resolve()
    try:
        bundle.current_version(model_dir)
    except bundle.BundleError as exc:
        print(f"{exc} (train one: make model)", file=sys.stderr)
        return 2
    rows = holdout_rows(args.data or simulate.default_data_path(model_dir), BATCH_ROWS)
    single, batch = record(rows[0]), {"instances": [record(row) for row in rows]}
    baseline = [sys.executable, str(REPO / "scripts" / "bench_baseline.py"), "--model-dir", str(model_dir),
                "--port", "{port}"]
    targets = [
        Target("A", "baseline, default OpenMP threads", baseline, {}, "/threads", "/threads",
               [Endpoint("A  baseline, default OpenMP", "/predict", single)]),
        Target("B", "baseline, OpenMP limited to 1", [*baseline, "--threads", "1"], {}, "/threads", "/threads",
               [Endpoint("B  baseline, 1 OpenMP thread", "/predict", single)]),
        Target("API", "python -m service", api_command(),
               {"API_MODEL_DIR": str(model_dir), "API_HOST": "127.0.0.1", "API_PORT": "{port}"},
               "/health/ready", "/model",
               [Endpoint("API /predict", "/predict", single),
                Endpoint(f"API /predict/batch ({BATCH_ROWS} rows)", "/predict/batch", batch, BATCH_ROWS)]),
    ]
    rounds: list[list[Result]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
            for _ in range(args.rounds):
                rounds.append([result for target in targets for result in measure(target, wrk, Path(workdir), args)])
    except KeyboardInterrupt:
        print("interrupted; every server started was stopped", file=sys.stderr)
        return 130
    results = [median_result(list(same)) for same in zip(*rounds)]
    add_ratios(results)
    print(f"\nwrk -t{args.threads} -c{args.connections} -d{args.duration}s (warm-up {args.warmup}s), "
          f"{args.rounds} round(s), {os.cpu_count()} CPUs, model {model_dir}")
    print_table(results)
    if len({round(r.prediction, 9) for r in results}) > 1:
        print("WARNING: the targets predicted different values for the same row", file=sys.stderr)
    if any(r.errors for r in results):
        print("WARNING: some requests failed or timed out (errors column); those rows' numbers are rough",
              file=sys.stderr)
    if args.out:
        args.out.write_text(json.dumps({
            "config": {"rounds": args.rounds, "duration_s": args.duration, "warmup_s": args.warmup,
                       "wrk_threads": args.threads, "connections": args.connections, "batch_rows": BATCH_ROWS,
                       "cpus": os.cpu_count(), "python": platform.python_version(), "model_dir": str(model_dir)},
            "results": [{**asdict(r), "rows_per_s": r.rows_per_s} for r in results],
        }, indent=2) + "\n")
    return 1 if any(r.errors for r in results if r.target == "API") else 0


if __name__ == "__main__":
    sys.exit(main())
