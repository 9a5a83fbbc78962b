# Two commands on a fresh machine: `make up` runs serveplane locally, `make test` runs every test.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up down test unit lint install host binaries crds bench bench-scale

# Two distributions, both editable: serveplane (the product, with the test and lint tools as its dev extra) and
# serveplane-dev (e2e/pyproject.toml: serveplane.localcluster, the local control plane and test kit).
$(STAMP): pyproject.toml e2e/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet -e '.[dev]' -e ./e2e
	touch $(STAMP)

install: $(STAMP)

# The Debian packages of the real node and of its image builds, when missing.
host:
	bash e2e/host-packages.sh

# The control plane, the node binary (kubelet, kube-proxy), CoreDNS and helm, built from Go modules once and cached
# by source hash (a cold build takes ~20 min on 2 cores; a cached one is found in a second). Built up front so no
# test's timeout has to cover it.
# The images of the real node (e2e/images, helm/Dockerfile.*), cached by a hash of their inputs, come last: the
# CoreDNS image packages the binary built before it.
binaries: $(STAMP) host
	$(BIN)/python -m serveplane.localcluster.build --all
	$(BIN)/python -m serveplane.localcluster.helm
	$(BIN)/python -m serveplane.localcluster.images

# The local trial: a real control plane and node (containerd, kubelet, kube-proxy, CoreDNS), the images built from
# helm/Dockerfile.*, the operator installed by its chart, real Ray and the examples.
up: binaries
	$(BIN)/serveplane dev up

down: $(STAMP)
	$(BIN)/serveplane dev down

# Lint first (seconds), then the three tiers, unit, integration (real API server, real Ray) and e2e (the real node),
# each a pytest process of its own: a tier's session fixtures (its Ray heads, its control plane) end with it, so none
# runs beside the next tier. Every tier runs even when an earlier one failed (a failed integration test must not hide
# what e2e says, as in one pytest run); make fails at the end, naming the failed tiers. Each tier prints its slowest
# tests, its skips and its closing line; CI=true (.ci/run) makes a skip of what needs Ray, the control plane or the
# node a failure (conftest.py). The binaries are built or reused first. `make test-unit` etc. run one tier.
PYTEST := $(BIN)/python -m pytest -q -p no:cacheprovider --durations=25 -ra
TIERS := unit:tests/unit integration:tests/integration e2e:e2e/tests
# The e2e tier also shows what each passing test printed: its request counts, failures and seconds without an
# endpoint are the figures a zero-failure claim needs.
E2E_REPORT := -raP
.PHONY: test-unit test-integration test-e2e

test: lint binaries
	@failed=""; for tier in $(TIERS); do \
		name=$${tier%%:*}; start=$$(date +%s); \
		echo "== make test: $$name tier ($${tier#*:})"; \
		extra=""; [ "$$name" = e2e ] && extra="$(E2E_REPORT)"; \
		$(PYTEST) $$extra $${tier#*:} || failed="$$failed $$name"; \
		echo "== make test: $$name tier took $$(( $$(date +%s) - start )) s"; \
	done; \
	if [ -n "$$failed" ]; then echo "== make test: FAILED tiers:$$failed" >&2; exit 1; fi; \
	echo "== make test: every tier passed"

test-unit: $(STAMP)
	$(PYTEST) tests/unit

test-integration: binaries
	$(PYTEST) tests/integration

test-e2e: binaries
	$(PYTEST) $(E2E_REPORT) e2e/tests

unit: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit

# ruff over the whole tree; mypy --strict on serveplane.operator and serveplane.runtime; the import contracts
# (pure layer, operator <-> runtime, no ray in the operator). All configured in pyproject.toml.
# mypy cannot see the folders' import names through the editable install, so they are linked under
# $(VENV)/mypy-path/serveplane/ (the `mypy_path` in pyproject.toml).
lint: $(STAMP)
	mkdir -p $(VENV)/mypy-path/serveplane
	ln -sfn ../../../operator $(VENV)/mypy-path/serveplane/operator
	ln -sfn ../../../runtime $(VENV)/mypy-path/serveplane/runtime
	ln -sfn ../../../e2e/localcluster $(VENV)/mypy-path/serveplane/localcluster
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

crds: $(STAMP)
	$(BIN)/serveplane crds

bench: $(STAMP)
	$(BIN)/python bench/compose_bench.py
	$(BIN)/python bench/journey_bench.py
	$(MAKE) bench-scale

# 50 ServeClusters x 10 ServeApplications + 50 ServeDeployments against the real control plane and operator, with a
# stand-in kubelet and a Serve dashboard simulator (no Ray); ~10 min. BENCH_SCALE_ARGS=--quick to iterate.
bench-scale: $(STAMP)
	$(BIN)/python bench/scale_bench.py $(BENCH_SCALE_ARGS)
