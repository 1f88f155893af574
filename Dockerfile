# syntax=docker/dockerfile:1
# Linux image of the Azure Key Vault provider (make image).
#
# Base images are pinned by TAG only: no digest for golang:1.26.8-bookworm or
# distroless static-debian12:nonroot could be verified offline when this file
# was written. Pin them by digest at the first build that can reach a registry,
#   docker buildx imagetools inspect golang:1.26.8-bookworm
# and pass e.g. --build-arg GO_IMAGE=golang:1.26.8-bookworm@sha256:<digest>.
ARG GO_IMAGE=golang:1.26.8-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS builder
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION=dev
ARG GIT_COMMIT=unknown
ARG BUILD_DATE=unknown
ARG OUT=/out
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The build command. deploy/chart_test.go (make chart-test) extracts this RUN
# line verbatim and runs it on the host, so keep it a single shell command.
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -buildvcs=false -ldflags "-s -w -X github.com/akv-csi/provider/pkg/version.BuildVersion=${VERSION} -X github.com/akv-csi/provider/pkg/version.GitCommit=${GIT_COMMIT} -X github.com/akv-csi/provider/pkg/version.BuildDate=${BUILD_DATE}" -o ${OUT}/provider ./cmd/provider
# Licenses of every module linked into the binary (distroless has no shell).
RUN set -eu; mkdir -p ${OUT}/licenses; \
    go list -deps -f '{{with .Module}}{{.Path}}|{{.Dir}}{{end}}' ./cmd/provider | sort -u | \
    while IFS='|' read -r mod dir; do \
      [ -n "$dir" ] || continue; \
      for f in "$dir"/LICENSE* "$dir"/COPYING* "$dir"/NOTICE*; do \
        if [ -f "$f" ]; then install -D -m 0444 "$f" "${OUT}/licenses/$mod/$(basename "$f")"; fi; \
      done; \
    done; \
    test -n "$(ls -A ${OUT}/licenses)"

FROM ${RUNTIME_IMAGE}
ARG VERSION=dev
ARG OUT=/out
LABEL org.opencontainers.image.title="akv-provider" \
      org.opencontainers.image.description="Azure Key Vault provider for the Secrets Store CSI Driver" \
      org.opencontainers.image.source="https://github.com/akv-csi/provider" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=builder ${OUT}/licenses /licenses
# The binary lives in /bin, like upstream's (/bin/secrets-store-csi-driver-provider-azure):
# the chart mounts the driver's providers directory at /provider (upstream's
# path; the socket is unix:///provider/azure.sock), so nothing may be installed
# at or under /provider. deploy/chart_test.go checks this against the chart.
COPY --from=builder ${OUT}/provider /bin/akv-provider
# The image runs as the distroless "nonroot" user (65532), the safe default for
# anyone running it by hand. The chart deliberately overrides this with
# runAsUser/runAsGroup 0 and drops every capability, because the driver's
# providers directory on the host (/var/run/secrets-store-csi-providers) is
# root-owned and the provider must create its socket there.
USER 65532:65532
ENTRYPOINT ["/bin/akv-provider"]
