# imgclf: `make run` installs and serves (installing the shipped demo version if none exists); `make test` runs every test.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
# The standard inference clients the tests drive. Both pin protobuf<7, while grpcio-tools 1.85 (our
# generated code) needs protobuf>=7; their generated code runs on protobuf 7 (a newer runtime accepts
# older generated code), so they are installed without their pins; their other needs are dev extras.
STANDARD_CLIENTS := tritonclient==2.73.0 kserve==0.21.0

.PHONY: install run serve train test lint typecheck protos bench system-deps clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps $(STANDARD_CLIENTS)
	touch $@

install: $(VENV)/.installed

# Locally the teach endpoints and the page's Teach tab are on (examples under ./data).
run: install
	IMGCLF_TEACH=true $(VENV)/bin/imgclf serve --bootstrap

train: install
	$(VENV)/bin/imgclf train

# Debian's Chromium for the browser tests and docker-compose for the compose-file check.
system-deps:
	bash scripts/setup-system.sh

test: install system-deps
	bash scripts/test.sh

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy service training scripts bench

protos: install
	$(PY) scripts/gen_protos.py

bench: install
	BENCH=1 bash scripts/setup-system.sh
	$(PY) bench/runtimes.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test-artifacts
