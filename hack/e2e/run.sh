#!/usr/bin/env bash
# End-to-end tests: etcd + kube-apiserver + the real secrets-store-csi-driver + our provider and
# the Key Vault emulator, all on loopback; the test plays the kubelet. See test/e2e/README.md.
#
#   hack/e2e/run.sh [go test flags...]        e.g. hack/e2e/run.sh -run 'TestMount|TestRotation'
#
# Builds are cached in _output/e2e/bin: a tools module is rebuilt only when its go.mod/go.sum,
# sources, the Go version or the ldflags change (stamp files next to the binaries).
# Needs: Go, root (tmpfs mounts), apt (only if etcd is missing). Variables:
#   E2E_TIMEOUT (40m)  E2E_ARTIFACTS_DIR (component logs per test, optional)
#   E2E_SKIP_BUILD=1   use whatever is in the bin dir   E2E_BIN_DIR (_output/e2e/bin)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=${E2E_BIN_DIR:-$ROOT/_output/e2e/bin}
mkdir -p "$BIN"
export PATH=/usr/local/go/bin:$PATH
GO=${GO:-go}
K8S_VERSION=v1.34.4
HELM_VERSION=${HELM_VERSION:-v3.22.0}

t0=$(date +%s)
phase_start=$t0
phase() { # phase NAME: prints the duration of the previous phase and starts a new one
	local now; now=$(date +%s)
	[ -n "${PHASE:-}" ] && printf '== %-28s %4ss\n' "$PHASE" "$((now - phase_start))"
	PHASE=${1:-}; phase_start=$now
	[ -n "$PHASE" ] && echo "== $PHASE ..."
	return 0
}

# stamp DIR EXTRA...: a hash of a tools module's inputs, the Go version and EXTRA.
stamp() {
	local dir=$1; shift
	{ "$GO" version; printf '%s\n' "$@"; find "$dir" -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) -print0 | sort -z | xargs -0 sha256sum; } | sha256sum | cut -d' ' -f1
}
# cached NAME STAMP BINARIES...: true if every binary exists and NAME's stamp matches.
cached() {
	local name=$1 want=$2; shift 2
	[ "${E2E_SKIP_BUILD:-}" = 1 ] && return 0
	for b in "$@"; do [ -x "$BIN/$b" ] || return 1; done
	[ "$(cat "$BIN/.$name.stamp" 2>/dev/null)" = "$want" ]
}

phase "etcd"
if ! command -v etcd >/dev/null; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
fi
etcd_version=$(etcd --version); echo "${etcd_version%%$'\n'*}"

phase "kube-apiserver + kubectl"
# Stamp the version: unstamped, the apiserver reports v0.0.0-master and helm's semverCompare
# in the driver chart drops tokenRequests.
minor=$(echo "$K8S_VERSION" | cut -d. -f2)
LDF="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
s=$(stamp hack/e2e/kube "$LDF")
if cached kube "$s" kube-apiserver kubectl; then
	echo "cached"
else
	(cd hack/e2e/kube && "$GO" build -ldflags "$LDF" -o "$BIN/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl)
	echo "$s" >"$BIN/.kube.stamp"
fi
"$BIN/kube-apiserver" --version

phase "secrets-store-csi-driver x2"
s=$(stamp hack/e2e/csi)
if cached csi "$s" secrets-store-csi-driver fakeprovider; then
	echo "v1.5.6 cached"
else
	(cd hack/e2e/csi && "$GO" build -o "$BIN/" sigs.k8s.io/secrets-store-csi-driver/cmd/secrets-store-csi-driver ./cmd/fakeprovider)
	echo "$s" >"$BIN/.csi.stamp"
fi
# v1.6.x (rotation by kubelet re-publish) for TestRepublishRotationDriverV16.
s=$(stamp hack/e2e/csi16 "$(cat hack/e2e/csi/third_party/mlog/* | sha256sum)")
if cached csi16 "$s" secrets-store-csi-driver-v1.6.1; then
	echo "v1.6.1 cached"
else
	(cd hack/e2e/csi16 && "$GO" build -o "$BIN/secrets-store-csi-driver-v1.6.1" sigs.k8s.io/secrets-store-csi-driver/cmd/secrets-store-csi-driver)
	echo "$s" >"$BIN/.csi16.stamp"
fi
DRIVER_DIR=$(cd hack/e2e/csi && "$GO" list -m -f '{{.Dir}}' sigs.k8s.io/secrets-store-csi-driver)
echo "driver module: $DRIVER_DIR"

phase "helm"
HELM=$ROOT/_output/tools/bin/helm
if [ ! -x "$HELM" ]; then
	HELM=$BIN/helm
	if ! cached helm "$HELM_VERSION" helm; then
		GOBIN=$BIN "$GO" install -trimpath "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
		echo "$HELM_VERSION" >"$BIN/.helm.stamp"
	fi
fi
"$HELM" version --short

phase "provider"
if [ ! -x _output/bin/provider ] || [ "${E2E_BUILD_PROVIDER:-}" = 1 ]; then
	make --no-print-directory build
fi
ls -l _output/bin/provider

phase "go test"
export E2E_BIN_DIR=$BIN
export E2E_DRIVER_CRDS=$DRIVER_DIR/charts/secrets-store-csi-driver/crds
export E2E_DRIVER_CHART=$DRIVER_DIR/charts/secrets-store-csi-driver
export E2E_PROVIDER_BIN=$ROOT/_output/bin/provider
export E2E_HELM=$HELM
export E2E_ETCD
E2E_ETCD=$(command -v etcd)
rc=0
"$GO" test -tags e2e -count=1 -v -timeout "${E2E_TIMEOUT:-40m}" ./test/e2e/... "$@" || rc=$?
phase ""
echo "== total $(($(date +%s) - t0))s, go test exit code $rc"
exit $rc
