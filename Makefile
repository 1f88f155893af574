# Build, test and ship the Azure Key Vault provider for the Secrets Store CSI Driver.
# Tools are installed at pinned versions into _output/tools by this Makefile itself.

SHELL := /bin/bash
GO ?= go
OUT := _output
BIN := $(OUT)/bin
TOOLS := $(abspath $(OUT)/tools)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GIT_COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BUILD_DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS := -X github.com/akv-csi/provider/pkg/version.BuildVersion=$(VERSION) \
           -X github.com/akv-csi/provider/pkg/version.GitCommit=$(GIT_COMMIT) \
           -X github.com/akv-csi/provider/pkg/version.BuildDate=$(BUILD_DATE)

GOLANGCI_VERSION := v2.15.0
HELM_VERSION := v3.22.0
KUBECONFORM_VERSION := v0.8.0

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  %-14s %s\n", $$1, $$2}'

.PHONY: build
build: ## Build the provider, the emulator and akv-check into _output/bin
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/provider ./cmd/provider
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/kv-emulator ./cmd/kv-emulator
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/akv-check ./cmd/akv-check

.PHONY: fmt
fmt: ## Format the Go code
	gofmt -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## go vet and a gofmt check
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	$(GO) vet -tags e2e,chart ./...

.PHONY: test-deps
test-deps: ## Install what the tests run besides Go (openssl, to open PKCS#12 files as a reader would)
	@command -v openssl >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssl >/dev/null; }

.PHONY: test
test: vet test-deps ## Unit, integration and conformance tests with -race, then the fuzz tests
	$(GO) test -race -count=1 ./...
	$(MAKE) fuzz

# go test -fuzz takes one target per run, so the targets run one after the other. Each runs a
# number of inputs, not a duration: with a duration, go1.26's fuzz coordinator can fail a clean run
# with "context deadline exceeded" as the time runs out (golang/go#75804, fixed in go1.27). The
# counts are about 30 s each on a 2-core machine here (FuzzParse ~11,000 inputs/s, FuzzFormatCert
# ~900/s, FuzzJSONKey ~2,000/s: its documents reach 25 KiB). -fuzzminimizetime 0: go would
# otherwise spend up to a minute minimizing every input that finds new coverage; a failing input
# is still saved under testdata/fuzz, unminimized.
FUZZ_PARSE_INPUTS ?= 300000
FUZZ_CERT_INPUTS ?= 25000
FUZZ_JSONKEY_INPUTS ?= 60000
.PHONY: fuzz
fuzz: ## Fuzz the parameter parser, the certificate/key rendering and objectJSONKey (about 30 s each)
	$(GO) test ./pkg/config -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZ_PARSE_INPUTS)x -fuzzminimizetime 0
	$(GO) test ./pkg/provider -run '^$$' -fuzz '^FuzzFormatCert$$' -fuzztime $(FUZZ_CERT_INPUTS)x -fuzzminimizetime 0
	$(GO) test ./pkg/provider -run '^$$' -fuzz '^FuzzJSONKey$$' -fuzztime $(FUZZ_JSONKEY_INPUTS)x -fuzzminimizetime 0

.PHONY: demo
demo: build ## Start the emulator and the provider, mount the sample vault as the driver would, print the files
	$(GO) run ./hack/demo --bin $(BIN)

.PHONY: clean
clean: ## Remove build output (_output only)
	rm -rf $(OUT)

.PHONY: e2e
e2e: build ## End-to-end: etcd, kube-apiserver, the real CSI driver, our provider and the emulator, on loopback
	hack/e2e/run.sh

.PHONY: e2e-node
e2e-node: tools ## End-to-end on a real node: kubelet, containerd, runc; helm install of the chart; real pods
	hack/e2e/node.sh

# ---------------------------------------------------------------------------
# Ship it: tools, lint, chart, manifests, image.
# Tool versions live in hack/tools/go.mod; the *_VERSION variables above must agree.

TOOLS_BIN := $(TOOLS)/bin
HELM := $(TOOLS_BIN)/helm
KUBECONFORM := $(TOOLS_BIN)/kubeconform
GOLANGCI_LINT := $(TOOLS_BIN)/golangci-lint
CHART := deploy/helm/akv-provider
MANIFESTS := deploy/manifests
IMAGE ?= ghcr.io/akv-csi/provider
IMAGE_TAG ?= $(VERSION)

.PHONY: tools
tools: ## Install pinned golangci-lint, helm and kubeconform into _output/tools/bin (skips ones at the right version)
	GO=$(GO) hack/tools/install.sh $(TOOLS_BIN) golangci-lint=$(GOLANGCI_VERSION) helm=$(HELM_VERSION) kubeconform=$(KUBECONFORM_VERSION)

.PHONY: lint
lint: tools ## Run golangci-lint (v2 config in .golangci.yml) on the root module
	$(GOLANGCI_LINT) run --config .golangci.yml ./...

.PHONY: chart-deps
chart-deps: ## Package the secrets-store-csi-driver chart from its Go module into the chart's gitignored charts/
	@[ -x $(HELM) ] || $(MAKE) tools
	hack/chart/package-driver-chart.sh $(HELM) $(CHART)/charts

.PHONY: helm-lint
helm-lint: chart-deps ## helm lint --strict the chart (defaults, Windows on, driver dependency on)
	$(HELM) lint --strict $(CHART)
	$(HELM) lint --strict $(CHART) --set windows.enabled=true
	$(HELM) lint --strict $(CHART) --set secrets-store-csi-driver.install=true

.PHONY: manifests
manifests: chart-deps ## Render deploy/manifests from the chart (fixed release name and namespace)
	hack/chart/render-manifests.sh $(HELM) $(CHART) $(MANIFESTS)

.PHONY: chart-test
chart-test: tools ## Chart tests: lint, kubeconform, rendered values, schema, manifests drift, Dockerfile build (tag chart)
	HELM=$(HELM) KUBECONFORM=$(KUBECONFORM) $(GO) test -tags chart -count=1 ./deploy/...

.PHONY: image
image: ## Build the Linux container image with docker (needs a running Docker engine)
	@docker info >/dev/null 2>&1 || { echo "image: no Docker engine reachable (docker info failed); build the image where a daemon runs" >&2; exit 1; }
	docker build --build-arg VERSION=$(VERSION) --build-arg GIT_COMMIT=$(GIT_COMMIT) --build-arg BUILD_DATE=$(BUILD_DATE) -t $(IMAGE):$(IMAGE_TAG) .

.PHONY: manifests-check
manifests-check: chart-deps ## Fail if deploy/manifests differs from what the chart renders (drift check)
	@tmp=$$(mktemp -d); hack/chart/render-manifests.sh $(HELM) $(CHART) $$tmp; \
	diff -ru $(MANIFESTS) $$tmp; rc=$$?; rm -rf $$tmp; \
	if [ $$rc -ne 0 ]; then echo "deploy/manifests is stale: run make manifests" >&2; fi; exit $$rc

.PHONY: bench
bench: build ## Mount latency and request counts against the emulator with added latency; writes _output/bench.md
	$(GO) run ./hack/bench --bin $(BIN) --out $(OUT)/bench.md

.PHONY: sim
sim: build ## Cluster model (hack/sim): checks it against the binary on one node, prints the sizing tables, draws docs/sim/*.png
	$(GO) run ./hack/sim --out docs/sim --validate $(BIN)
