# One image for the API, the drift worker and training; the command picks the role:
#   API      python -m service                                   (default CMD, port 8000)
#   worker   python -m monitoring.worker                         (port 8001)
#   trainer  python -m train --if-missing --model-dir /models    (one-shot)
# Build:  docker build -t housing-monitor:local .
# A private package index or a local wheelhouse reaches pip through build args only, e.g.
#   --build-arg PIP_INDEX_URL=https://mirror.example/simple  or
#   --build-arg PIP_FIND_LINKS=/wheels --build-arg PIP_NO_INDEX=1
# They live in the builder stage, never in the final image. Nothing is trained at build time.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# ---- builder: a virtualenv with the locked dependencies and the project -------------------
FROM ${PYTHON_IMAGE} AS builder

ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_TRUSTED_HOST
ARG PIP_NO_INDEX
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
RUN python -m venv /opt/venv

# Dependencies first (pinned by the lock), so code changes reuse this layer.
COPY pyproject.toml requirements.lock ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > runtime-requirements.txt \
 && /opt/venv/bin/pip install -c requirements.lock -r runtime-requirements.txt

# The project itself (its dependencies are already there; pip fetches the build backend,
# setuptools, from the same index or wheelhouse).
COPY train.py simulate.py ./
COPY service ./service
COPY monitoring ./monitoring
RUN /opt/venv/bin/pip install --no-deps . \
 && /opt/venv/bin/python -c "import service, monitoring, train, simulate"

# ---- runtime: the venv only, no compilers, no sources, no pip configuration --------------
FROM ${PYTHON_IMAGE}

ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OMP_NUM_THREADS=1 \
    API_HOST=0.0.0.0 \
    API_PORT=8000 \
    API_MODEL_DIR=/models \
    DRIFT_HOST=0.0.0.0 \
    DRIFT_PORT=8001 \
    DRIFT_MODEL_DIR=/models \
    HEALTHCHECK_URL=http://127.0.0.1:8000/health/ready

RUN groupadd --system --gid 10001 app \
 && useradd --no-log-init --uid 10001 --gid app --home-dir /home/app --create-home --shell /usr/sbin/nologin app \
 && mkdir -p /models \
 && chown app:app /models

COPY --from=builder /opt/venv /opt/venv

WORKDIR /home/app
USER 10001:10001
EXPOSE 8000 8001

# The API's readiness (set HEALTHCHECK_URL for another role); slim has no curl, Python has urllib.
# No spaces inside the arguments: Podman's Docker-compatible API splits healthcheck arguments on them.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "__import__('urllib.request').request.urlopen(__import__('os').environ['HEALTHCHECK_URL'],timeout=4)"]

CMD ["python", "-m", "service"]
