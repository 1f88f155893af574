# Shared by hack/e2e/run.sh (loopback e2e) and hack/e2e/node.sh (real node): phase timing and the
# cached builds of everything both need. Source it from the repository root after setting BIN.
# Builds are cached in $BIN: a tools module is rebuilt only when its go.mod/go.sum, sources, the
# Go version or the ldflags change (stamp files next to the binaries). E2E_SKIP_BUILD=1 uses
# whatever is in $BIN.
export PATH=/usr/local/go/bin:$PATH
GO=${GO:-go}
K8S_VERSION=v1.34.4
HELM_VERSION=${HELM_VERSION:-v3.22.0}
# Static (CGO_ENABLED=0) everywhere: the same binaries run on the host and in scratch images.
export CGO_ENABLED=0

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
	{ "$GO" version; echo "CGO_ENABLED=$CGO_ENABLED"; printf '%s\n' "$@"; find "$dir" -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) -print0 | sort -z | xargs -0 sha256sum; } | sha256sum | cut -d' ' -f1
}
# cached NAME STAMP BINARIES...: true if every binary exists and NAME's stamp matches.
cached() {
	local name=$1 want=$2; shift 2
	[ "${E2E_SKIP_BUILD:-}" = 1 ] && return 0
	for b in "$@"; do [ -x "$BIN/$b" ] || return 1; done
	[ "$(cat "$BIN/.$name.stamp" 2>/dev/null)" = "$want" ]
}

need_etcd() {
	if ! command -v etcd >/dev/null; then
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
	fi
	local v; v=$(etcd --version); echo "${v%%$'\n'*}"
}

# build_kube: every Kubernetes binary either e2e needs, in one go build (they share most packages).
build_kube() {
	# Stamp the version: unstamped, the apiserver reports v0.0.0-master and helm's semverCompare
	# in the driver chart drops tokenRequests.
	local minor s
	minor=$(echo "$K8S_VERSION" | cut -d. -f2)
	local LDF="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
	local cmds="kube-apiserver kubectl kubelet kube-controller-manager kube-scheduler"
	s=$(stamp hack/e2e/kube "$LDF" "$cmds")
	# shellcheck disable=SC2086
	if cached kube "$s" $cmds; then
		echo "cached"
	else
		(cd hack/e2e/kube && "$GO" build -ldflags "$LDF" -o "$BIN/" $(printf 'k8s.io/kubernetes/cmd/%s ' $cmds))
		echo "$s" >"$BIN/.kube.stamp"
	fi
	"$BIN/kube-apiserver" --version
}

# build_csi: the driver v1.5.6 (and its fake provider); v1.6.1 too unless NO_CSI16=1.
build_csi() {
	local s
	s=$(stamp hack/e2e/csi)
	if cached csi "$s" secrets-store-csi-driver fakeprovider; then
		echo "v1.5.6 cached"
	else
		(cd hack/e2e/csi && "$GO" build -o "$BIN/" sigs.k8s.io/secrets-store-csi-driver/cmd/secrets-store-csi-driver ./cmd/fakeprovider)
		echo "$s" >"$BIN/.csi.stamp"
	fi
	[ "${NO_CSI16:-}" = 1 ] && return 0
	# v1.6.x (rotation by kubelet re-publish) for TestRepublishRotationDriverV16.
	s=$(stamp hack/e2e/csi16 "$(cat hack/e2e/csi/third_party/mlog/* | sha256sum)")
	if cached csi16 "$s" secrets-store-csi-driver-v1.6.1; then
		echo "v1.6.1 cached"
	else
		(cd hack/e2e/csi16 && "$GO" build -o "$BIN/secrets-store-csi-driver-v1.6.1" sigs.k8s.io/secrets-store-csi-driver/cmd/secrets-store-csi-driver)
		echo "$s" >"$BIN/.csi16.stamp"
	fi
}

# driver_dir: the driver's module directory (its chart and CRDs).
driver_dir() { (cd hack/e2e/csi && "$GO" list -m -f '{{.Dir}}' sigs.k8s.io/secrets-store-csi-driver); }

# build_helm: sets HELM (the pinned one from make tools when present).
build_helm() {
	HELM=$ROOT/_output/tools/bin/helm
	if [ ! -x "$HELM" ]; then
		HELM=$BIN/helm
		if ! cached helm "$HELM_VERSION" helm; then
			GOBIN=$BIN "$GO" install -trimpath "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
			echo "$HELM_VERSION" >"$BIN/.helm.stamp"
		fi
	fi
	"$HELM" version --short
}
