# Run `make help` for the list of targets. Every target creates what it needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BASE ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
# Caches shared by every checkout of a machine (jars, Helm, Go-built binaries, image bases).
CACHE_DIR   ?= $(HOME)/.cache/mnist-serving
# Per-checkout state (Cassandra data, the SQLite store, local models).
STATE_DIR   ?= .cache
# The offline MNIST copy beside the repo, when there is one; otherwise training downloads.
MNIST_DATA_DIR ?= $(if $(wildcard ../shared/data/mnist/SHA256SUMS),$(abspath ../shared/data/mnist),)
HELM_VERSION ?= v3.19.0
HELM        := $(CACHE_DIR)/helm-$(HELM_VERSION)/helm
HELM_DOCS_VERSION ?= v1.14.2
HELM_DOCS   := $(CACHE_DIR)/helm-docs-$(HELM_DOCS_VERSION)/helm-docs
# The local cluster (make cluster-up): Kubernetes from scripts/cluster/tools/go.mod, kwok nodes.
KUBE_VERSION ?= v1.32.13
KWOK_VERSION ?= v0.8.0
KUBE_DIR    := $(CACHE_DIR)/kube-$(KUBE_VERSION)
KWOK_DIR    := $(CACHE_DIR)/kwok-$(KWOK_VERSION)
KUBECTL     := $(KUBE_DIR)/kubectl
# NODE=real: one real node (containerd, kubelet, kube-proxy, CoreDNS) instead of kwok's.
NODE        ?= kwok
COREDNS_VERSION ?= v1.12.1
COREDNS_DIR := $(CACHE_DIR)/coredns-$(COREDNS_VERSION)

# TensorFlow: keep its C++ start-up chatter (CUDA probing on a CPU machine) out of the output.
TF_CPP_MIN_LOG_LEVEL ?= 2
export MNIST_DATA_DIR CACHE_DIR STATE_DIR HELM TF_CPP_MIN_LOG_LEVEL
export HELM_DOCS KUBE_VERSION KWOK_VERSION KUBE_DIR KWOK_DIR KUBECTL NODE COREDNS_VERSION COREDNS_DIR
# Images (make images): localhost/mnist-gateway and localhost/mnist-train, tagged
# <project version>-<git commit>; the image tests find them by this tag.
# Expanded once, so a commit made while make runs cannot give the tests another tag.
ifeq ($(origin IMAGE_TAG),undefined)
IMAGE_TAG   := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)-$(shell git rev-parse --short HEAD)
endif
export IMAGE_TAG

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# The venv is the lock: rebuilt from scratch whenever the lock (or pyproject.toml) changes,
# every package at its locked version and hash, then the project itself on top (editable).
$(VENV)/.installed: pyproject.toml requirements/dev.txt requirements/build.txt
	rm -rf $(VENV)
	$(PYTHON_BASE) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes --no-deps -r requirements/dev.txt -r requirements/build.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

.PHONY: venv
venv: $(VENV)/.installed ## Create .venv from the lock (requirements/dev.txt: every extra)

.PHONY: lock
lock: | $(VENV)/.installed ## Re-resolve requirements/*.txt from pyproject.toml with uv (exact versions with hashes)
	scripts/lock.sh $(VENV)/bin/uv

.PHONY: run
run: venv ## Serve the gateway locally (in-process model, SQLite); trains a quick model first if none
	$(PY) scripts/run_local.py

.PHONY: lint
lint: venv ## ruff check and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

.PHONY: format
format: venv ## Apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Four suites have targets of their own: the images (make test-images) and the chart on the
# local control plane (make test-cluster), which CI runs after this one (docs/ci.md), the
# stack on a real node (make test-cluster NODE=real) and the fault scenarios (make test-faults).
.PHONY: test
test: venv lint cassandra-up helm helm-docs browser-tools ## Lint, start Cassandra, build Helm and helm-docs, run the pytest suite
	$(PY) -m pytest --ignore=tests/faults --ignore=tests/cluster --ignore=tests/images --ignore=tests/node

# Nodes of the local Cassandra: 1 on 127.0.0.1, or a cluster on 127.0.0.11, .12, ...
NODES ?= 1

.PHONY: browser-tools
browser-tools: ## Chromium and chromedriver (Debian packages) and axe-core (npm ci) for the browser tests
	scripts/install_browser_tools.sh

.PHONY: test-browser
test-browser: venv browser-tools ## The page in headless Chromium and the API's schemathesis run; screenshots in .cache/screenshots/
	$(PY) -m pytest tests/browser tests/integration/test_api_conformance.py

.PHONY: cassandra-up
cassandra-up: venv ## Start local Cassandra 5.0 (NODES=1: 127.0.0.1:9042; NODES=3: a 3-node cluster) (idempotent)
	$(PY) scripts/cassandra_node.py up --nodes $(NODES)

.PHONY: cassandra-down
cassandra-down: venv ## Stop the local Cassandra node(s) (same NODES as cassandra-up)
	$(PY) scripts/cassandra_node.py down --nodes $(NODES)

.PHONY: helm
helm: $(HELM) ## Build the pinned Helm CLI from the Go module proxy into the cache

$(HELM):
	scripts/install_helm.sh $(HELM_VERSION) $(HELM)

.PHONY: helm-docs
helm-docs: $(HELM_DOCS) ## Build the pinned helm-docs from the Go module proxy into the cache

$(HELM_DOCS):
	scripts/install_helm_docs.sh $(HELM_DOCS_VERSION) $(HELM_DOCS)

# podman (vfs storage, runc, the ulimits this kind of machine needs), installed with apt when
# missing. Base: the Dockerfiles' pinned python image when it can be pulled, else a stand-in
# built once with debootstrap and cached as a tar under $(CACHE_DIR)/images. pip inside the
# build reaches the index through the build machine's own pip configuration: build.sh reads it
# with `pip config list`, writes it to a temporary pip.conf and mounts that and the CA bundle
# it names into the build as secrets ("pip.conf", "pip-ca.crt"); no layer keeps them.
.PHONY: images
images: ## Build localhost/mnist-gateway and localhost/mnist-train:$(IMAGE_TAG) with podman
	scripts/images/build.sh $(IMAGE_TAG)

.PHONY: image-secrets
image-secrets: ## Write the build secrets skaffold mounts (the build machine's pip.conf and CA bundle) to $(STATE_DIR)/images/secrets
	$(PYTHON_BASE) scripts/images/pip_secrets.py $(STATE_DIR)/images/secrets

.PHONY: manifests
manifests: helm helm-docs ## Render k8s/ manifests and helm/mnist/README.md from the Helm chart
	$(PY) scripts/render_manifests.py
	$(HELM_DOCS) --chart-search-root helm --log-level warning

.PHONY: cluster-binaries
cluster-binaries: ## Build etcd, the Kubernetes binaries and kwok (NODE=real: CoreDNS too) into the cache (cold: about 16 min)
	scripts/cluster/build.sh $(KUBE_DIR) $(KWOK_DIR) $(if $(filter real,$(NODE)),$(COREDNS_DIR))

.PHONY: cluster-up
cluster-up: cluster-binaries ## Start a local Kubernetes control plane with kwok nodes (NODE=real: one real node) (KUBECONFIG=.cache/cluster/kubeconfig)
	$(PYTHON_BASE) scripts/cluster/cluster.py up

.PHONY: cluster-down
cluster-down: ## Stop the local cluster and remove its state
	$(PYTHON_BASE) scripts/cluster/cluster.py down

# The images the chart runs on the real node: ours, and the two stand-ins for the official
# images no registry here serves (TF Serving's REST API; Cassandra from Maven Central jars).
NODE_IMAGES := gateway train serving-standin cassandra-standin

.PHONY: standin-images
standin-images: ## Build the STAND-IN images for tensorflow/serving and cassandra (the real node runs them)
	scripts/images/build.sh $(IMAGE_TAG) serving-standin cassandra-standin

.PHONY: cluster-images
cluster-images: images standin-images ## Import the images (tag $(IMAGE_TAG)) into the real node's containerd (NODE=real)
	$(PYTHON_BASE) scripts/cluster/cluster.py images $(foreach i,$(NODE_IMAGES),localhost/mnist-$(i):$(IMAGE_TAG))

.PHONY: test-cluster
test-cluster: venv helm cluster-up $(if $(filter real,$(NODE)),cluster-images) ## The chart's life on the local cluster (kwok); NODE=real: the whole stack end to end on a real node
	$(PY) -m pytest $(if $(filter real,$(NODE)),tests/node,tests/cluster)

.PHONY: test-images
test-images: venv helm cassandra-up images standin-images ## Build the images and the two stand-ins, then run them as the chart does (tests/images)
	$(PY) -m pytest tests/images

.PHONY: test-faults
test-faults: venv ## Fault scenarios under load: a 3-node Cassandra (started and stopped here), node loss, restarts; prints the figures
	$(PY) -m pytest tests/faults

.PHONY: bench
bench: bench-train bench-preprocess bench-model bench-gateway bench-probes ## Run every benchmark

.PHONY: bench-train
bench-train: venv ## Train default and seed architectures on full MNIST; print accuracy and time; export the default
	$(PY) -m bench.train_bench

.PHONY: bench-preprocess
bench-preprocess: venv ## Accuracy of real-world-style uploads through HTTP, ours vs naive resize (trains the shipped model first if none)
	$(PY) -m bench.preprocess_bench

.PHONY: bench-model
bench-model: venv ## CPU per model call by batch size: the in-process predictor vs the eager signature
	$(PY) -m bench.model_call_bench

.PHONY: bench-gateway
bench-gateway: venv cassandra-up ## Gateway throughput/latency with Cassandra vs the 2019 per-request path
	$(PY) -m bench.gateway_bench

.PHONY: bench-probes
bench-probes: venv ## /healthz latency beside 8 clients uploading the largest images, against idle probes
	$(PY) -m bench.probe_bench

.PHONY: bench-feedback
bench-feedback: venv ## Printed digits through the API, labelled, retrained on: accuracy before/after (trains the shipped model first if none)
	$(PY) -m bench.feedback_bench

# The one-machine retraining: MNIST plus what users labelled in the gateway's store (SQLITE_PATH,
# or Cassandra when CASSANDRA_HOSTS is set), into the model dir `make run` serves.
RETRAIN_MIN_ACCURACY ?= 0.99

.PHONY: retrain
retrain: venv ## Retrain on MNIST + labelled predictions from the local store; exports only if the gate passes
	$(PY) -m training --export-dir "$${MODEL_DIR:-.cache/models/mnist}" --feedback --min-accuracy $(RETRAIN_MIN_ACCURACY)

.PHONY: clean
clean: cluster-down ## Remove per-checkout state (.cache) but keep the venv
	rm -rf $(STATE_DIR) .pytest_cache .ruff_cache
