# syntax=docker/dockerfile:1
#
# Two images from one Dockerfile (docs/containers.md):
#   serve: REST (8000) and gRPC (8500) with the LiteRT runtimes and the hand stage, no TensorFlow
#   full:  the same plus training, the tensorflow runtime and the TF Serving backend (the last stage:
#          what a build without --target makes)
#
#   docker build --target serve -t imgclf:serve .
#   docker build --target full -t imgclf:full .
#   docker run --rm -v imgclf-models:/models imgclf:full train --data synthetic --model-root /models
#   docker run --rm -p 8000:8000 -p 8500:8500 -v imgclf-models:/models:ro imgclf:serve
#
# The install steps, which also work outside Docker from the repo root
# (tests/deploy/test_static_config.py checks that the RUN lines below match these
# and re-runs them). requirements-serve.txt and requirements.txt are uv.lock exported
# with every wheel's hash (`make requirements`), so each image holds exactly the locked
# versions; the full image's file is the serve one's plus the train extra:
#   serve:   pip install --require-hashes --no-deps -r requirements-serve.txt
#   full:    pip install --require-hashes --no-deps -r requirements.txt
#   package: pip install --no-deps --no-build-isolation .

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS deps-serve

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# Dependencies in their own layers, as locked: rebuilt only when the lock changes. The full
# image's layer adds to the serve one's (pip keeps what is already installed at the locked version).
COPY requirements-serve.txt ./
RUN pip install --require-hashes --no-deps -r requirements-serve.txt

# What neither image uses stays out (docs/containers.md): the debug sections of
# ml_dtypes' and uvloop's modules (nine tenths of their files; the libraries auditwheel patched, in
# *.libs, must not be stripped: they no longer load), LiteRT's WebGPU accelerator (the runtimes run
# on the CPU), and numpy's test suites.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils=2.40-2 \
    && strip --strip-debug /opt/venv/lib/python3.11/site-packages/ml_dtypes/*.so \
                           /opt/venv/lib/python3.11/site-packages/uvloop/*.so \
    && rm -rf /opt/venv/lib/python3.11/site-packages/ai_edge_litert/libLiteRtWebGpuAccelerator.so \
              /opt/venv/lib/python3.11/site-packages/numpy/*/tests


FROM deps-serve AS deps-full

COPY requirements.txt ./
RUN pip install --require-hashes --no-deps -r requirements.txt


# The package itself (.dockerignore keeps the context to the sources), built with the
# locked setuptools already in the venv rather than an unpinned one fetched for it.
FROM deps-serve AS builder-serve

COPY . .
RUN pip install --no-deps --no-build-isolation .

# pip and setuptools only install and build: the serve image leaves them out.
# hadolint ignore=DL3059
RUN pip uninstall --yes pip setuptools


FROM deps-full AS builder-full

COPY . .
RUN pip install --no-deps --no-build-isolation .


# What both images share: the non-root user, the settings, the ports, the health check and the command.
FROM ${PYTHON_IMAGE} AS runtime

# /models and /data are owned by the runtime user so that empty named volumes mounted
# there are writable by `imgclf train` and by the server's teach jobs.
RUN groupadd --system --gid 10001 imgclf \
    && useradd --system --no-log-init --uid 10001 --gid 10001 --create-home --home-dir /home/imgclf --shell /usr/sbin/nologin imgclf \
    && mkdir -p /models /data \
    && chown 10001:10001 /models /data

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


FROM runtime AS serve

LABEL org.opencontainers.image.title="imgclf" \
      org.opencontainers.image.description="Rock/paper/scissors CNN: REST/gRPC serving on LiteRT, no TensorFlow"

# auto: the int8 model where its measured accuracy allows it, else the float LiteRT model; the
# tensorflow runtime and the TF Serving backend are refused at start (they need imgclf:full)
ENV IMGCLF_RUNTIME=auto
COPY --from=builder-serve /opt/venv /opt/venv


FROM runtime AS full

LABEL org.opencontainers.image.title="imgclf" \
      org.opencontainers.image.description="Rock/paper/scissors CNN: training and REST/gRPC serving"

COPY --from=builder-full /opt/venv /opt/venv
