# syntax=docker/dockerfile:1
#
# imgclf image: serves REST (8000) and gRPC (8500) by default and also runs
# training with the same image:
#
#   docker build -t imgclf:local .
#   docker run --rm -v imgclf-models:/models imgclf:local train --data synthetic --model-root /models
#   docker run --rm -p 8000:8000 -p 8500:8500 -v imgclf-models:/models:ro imgclf:local
#
# The two install steps, which also work outside Docker from the repo root
# (tests/deploy/test_static_config.py checks that the RUN lines below match these
# and re-runs them). requirements.txt is uv.lock exported with every wheel's hash
# (`make requirements`), so the image holds exactly the locked versions:
#   deps:    pip install --require-hashes --no-deps -r requirements.txt
#   package: pip install --no-deps --no-build-isolation .

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# Dependencies in their own layer, as locked: rebuilt only when the lock changes.
COPY requirements.txt ./
RUN pip install --require-hashes --no-deps -r requirements.txt

# The package itself (.dockerignore keeps the context to the sources), built with the
# locked setuptools already in the venv rather than an unpinned one fetched for it.
COPY . .
RUN pip install --no-deps --no-build-isolation .


FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="imgclf" \
      org.opencontainers.image.description="Rock/paper/scissors CNN: training and REST/gRPC serving"

RUN groupadd --system --gid 10001 imgclf \
    && useradd --system --no-log-init --uid 10001 --gid 10001 --create-home --home-dir /home/imgclf --shell /usr/sbin/nologin imgclf \
    && mkdir -p /models /data \
    && chown 10001:10001 /models /data

COPY --from=builder /opt/venv /opt/venv

# /models and /data are owned by the runtime user so that empty named volumes mounted
# there are writable by `imgclf train` and by the server's teach jobs.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    IMGCLF_MODEL_ROOT=/models \
    IMGCLF_MODEL_NAME=rps \
    IMGCLF_HOST=0.0.0.0 \
    IMGCLF_REST_PORT=8000 \
    IMGCLF_GRPC_PORT=8500 \
    IMGCLF_BACKEND=local \
    IMGCLF_LOG_LEVEL=info

USER 10001:10001
WORKDIR /home/imgclf
EXPOSE 8000 8500

# slim has no curl: probe readiness with the interpreter (HTTP errors exit non-zero).
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('IMGCLF_REST_PORT', '8000'), timeout=4)"]

ENTRYPOINT ["imgclf"]
CMD ["serve"]
