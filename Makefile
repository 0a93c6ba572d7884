# The two commands: `make demo` (the main job) and `make test` (the tests).
# Both create .venv and install what they need; nothing is installed by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Real datasets: BANDITOPS_DATA_DIR if set, else ../shared/data beside the checkout.
export BANDITOPS_DATA_DIR ?= $(abspath ../shared/data)

# The browser tests drive the distribution's Chromium (Debian's package), never a download.
CHROMIUM := /usr/bin/chromium
APT_GET := $(if $(filter 0,$(shell id -u)),,sudo) env DEBIAN_FRONTEND=noninteractive apt-get

.PHONY: demo demo-contextual live-demo test lint bench bench-ray install clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "banditops needs Python >= 3.11; run e.g. make PYTHON=python3.11 ..."; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,bench,ray,mlflow]"
	@touch $(STAMP)

install: $(STAMP)

# The main job: the replay experiment on both real datasets (results/ holds the report).
demo: $(STAMP)
	$(BIN)/banditops experiment --out results

# The same grid with the contextual strategies too (several times longer: tens of minutes).
demo-contextual: $(STAMP)
	$(BIN)/banditops experiment --contextual --out results-contextual

live-demo: $(STAMP)
	$(BIN)/banditops demo

# Installed only when missing; the package lists are refreshed only if the install fails.
$(CHROMIUM):
	$(APT_GET) install -y -q chromium \
		|| { $(APT_GET) update -q && $(APT_GET) install -y -q chromium; }

test: $(STAMP) $(CHROMIUM)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples

bench: $(STAMP) $(CHROMIUM)
	$(BIN)/python benchmarks/policies.py
	$(BIN)/python benchmarks/experiment.py
	$(BIN)/python benchmarks/server.py
	$(BIN)/python benchmarks/dashboard.py
	$(BIN)/python benchmarks/predict_batch.py

# About 8 minutes: the default experiment on the local engine and on Ray (1 and 2 CPUs).
bench-ray: $(STAMP)
	$(BIN)/python benchmarks/ray_engine.py

clean:
	rm -rf $(VENV) results .pytest_cache .ruff_cache
