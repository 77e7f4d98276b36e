"""``make run``'s launcher as a new user meets it: start, send drifted traffic, see MedInc flagged, Ctrl-C."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.processes import REPO, free_port, stop, until

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("with_prometheus", [True, False], ids=["prometheus-source", "scrape-source"])
def test_make_run_then_simulate_drift_flags_medinc(with_prometheus: bool, model_store: Path, tmp_path: Path,
                                                   housing_path: Path) -> None:
    if with_prometheus and shutil.which("prometheus") is None:
        pytest.fail("the prometheus binary is not on PATH: apt-get install prometheus (see .ci/run)")
    api, worker, prom = free_port(), free_port(), free_port()
    args = [sys.executable, "scripts/run_local.py", "--model-dir", str(model_store), "--run-dir", str(tmp_path),
            "--api-port", str(api), "--worker-port", str(worker), "--prometheus-port", str(prom)]
    if not with_prometheus:
        args.append("--no-prometheus")
    env = {"DRIFT_INTERVAL_SECONDS": "1", "PATH": "/usr/bin:/bin:" + str(Path(sys.executable).parent)}
    with open(tmp_path / "run.log", "wb") as log:
        launcher = subprocess.Popen(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                    env={**os.environ, **env})
    try:
        # The launcher prints where to look once every part can see the traffic, as a user sees it.
        until(lambda: "Ctrl-C stops everything" in (tmp_path / "run.log").read_text(), 120, "the banner")
        assert launcher.poll() is None
        simulate = subprocess.run(
            [sys.executable, "simulate.py", "--url", f"http://127.0.0.1:{api}", "--scenario", "drift",
             "--rows", "2000", "--model-dir", str(model_store)],
            cwd=REPO, capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})
        assert simulate.returncode == 0, simulate.stdout + simulate.stderr
        assert "ok 2000, errors 0" in simulate.stdout
        deadline = time.monotonic() + 60
        flagged: list[str] = []
        while time.monotonic() < deadline and not flagged:
            report = httpx.get(f"http://127.0.0.1:{worker}/drift").json()
            flagged = report["versions"].get("v-test", {}).get("drifting_features", [])
            time.sleep(0.5)
        assert flagged == ["MedInc"]
        assert f"http://127.0.0.1:{worker}/drift" in (tmp_path / "run.log").read_text()
        assert report["source"] == ("prometheus" if with_prometheus else "scrape")
    finally:
        launcher.send_signal(signal.SIGINT)
        try:
            launcher.wait(timeout=20)
        finally:
            stop(launcher)
    for port in (api, worker, prom):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
