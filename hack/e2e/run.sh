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
# shellcheck source=hack/e2e/lib.sh
. hack/e2e/lib.sh

phase "etcd"
need_etcd
phase "kubernetes binaries"
build_kube
phase "secrets-store-csi-driver x2"
build_csi
DRIVER_DIR=$(driver_dir)
echo "driver module: $DRIVER_DIR"
phase "helm"
build_helm

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
