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
build: ## Build the provider and the emulator into _output/bin
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/provider ./cmd/provider
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/kv-emulator ./cmd/kv-emulator

.PHONY: fmt
fmt: ## Format the Go code
	gofmt -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## go vet and a gofmt check
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e ./test/e2e/...

.PHONY: test
test: vet ## Unit, integration and conformance tests with -race, then the parser fuzz test
	$(GO) test -race -count=1 ./...
	$(MAKE) fuzz

FUZZTIME ?= 30s
.PHONY: fuzz
fuzz: ## Fuzz the SecretProviderClass parameter parser (FUZZTIME, default 30s)
	$(GO) test ./pkg/config -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)

.PHONY: demo
demo: build ## Start the emulator and the provider, mount the sample vault as the driver would, print the files
	$(GO) run ./hack/demo --bin $(BIN)

.PHONY: clean
clean: ## Remove build output (_output only)
	rm -rf $(OUT)

.PHONY: e2e
e2e: build ## End-to-end: etcd, kube-apiserver, the real CSI driver, our provider and the emulator, on loopback
	hack/e2e/run.sh
