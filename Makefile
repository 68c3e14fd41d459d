# imgclf: `make run` installs and serves (installing the shipped demo version if none exists); `make test` runs every test.
# Every install comes from uv.lock (docs/dependencies.md): `make lock` refreshes it.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
# uv itself, at the version uv.lock names, installed beside the project by scripts/bootstrap_uv.py
TOOLS ?= .tools
UV := $(TOOLS)/bin/uv
# uv uses the interpreter given here (never one it would download) and syncs into $(VENV)
UV_ENV := UV_PROJECT_ENVIRONMENT=$(VENV) UV_PYTHON=$(PYTHON) UV_PYTHON_DOWNLOADS=never
.PHONY: install install-dev run train test lint protos lock requirements bench system-deps clean

$(UV): uv.lock scripts/bootstrap_uv.py
	$(PYTHON) scripts/bootstrap_uv.py $(TOOLS)
	touch $@

# What serving and training need (the train extra; no test tools); --inexact keeps the test extras of an
# earlier `make test`.
$(VENV)/.installed: pyproject.toml uv.lock $(UV)
	$(UV_ENV) $(UV) sync --frozen --inexact --extra train
	touch $@

# The same plus the dev extra (test tools, linters, the standard inference clients), exactly as locked.
$(VENV)/.installed-dev: pyproject.toml uv.lock $(UV)
	$(UV_ENV) $(UV) sync --frozen --extra train --extra dev
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

# Locally the teach endpoints and the page's Teach tab are on (examples under ./data), on loopback.
run: install
	IMGCLF_TEACH=true IMGCLF_HOST=$${IMGCLF_HOST:-127.0.0.1} $(VENV)/bin/imgclf serve --bootstrap

train: install
	$(VENV)/bin/imgclf train

# Debian's Chromium for the browser tests and docker-compose for the compose-file check.
system-deps:
	bash scripts/setup-system.sh

test: install-dev system-deps
	bash scripts/test.sh

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy service training version_format hands scripts bench

protos: install-dev
	$(PY) scripts/gen_protos.py

# Resolve every dependency again at its newest allowed version, then re-export the pip files and
# regenerate the gRPC code with the new generator. Run `make test` after it, and commit all four.
lock: $(UV)
	$(UV_ENV) $(UV) lock --upgrade
	$(MAKE) requirements protos

# requirements*.txt: the lock for pip users and the images (hashes, every supported platform):
# requirements-serve.txt for imgclf:serve (no TensorFlow), requirements.txt for imgclf:full and `make install`.
requirements: $(UV)
	$(UV_ENV) $(UV) export --frozen --no-emit-project --quiet --group build --output-file requirements-serve.txt
	$(UV_ENV) $(UV) export --frozen --no-emit-project --quiet --group build --extra train --output-file requirements.txt
	$(UV_ENV) $(UV) export --frozen --no-emit-project --quiet --extra train --extra dev --output-file requirements-dev.txt

bench: install-dev
	BENCH=1 bash scripts/setup-system.sh
	$(PY) bench/runtimes.py

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache test-artifacts
