#!/usr/bin/env bash
# Install the pinned developer tools into $1 (default _output/tools/bin).
#
# hack/tools/go.mod is the single source of truth for the versions. Each tool
# is installed with `go install pkg@version`, i.e. with the tool's OWN
# dependency graph exactly as upstream tested it (the tool directives in
# go.mod would merge the three graphs), and is skipped when the binary already
# present was built from that exact version (read back with `go version -m`).
#
# Optional: check that the versions passed as NAME=VERSION arguments after the
# directory agree with go.mod (the Makefile passes its *_VERSION variables).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="$(mkdir -p "${1:-_output/tools/bin}" && cd "${1:-_output/tools/bin}" && pwd)"
shift || true
GO="${GO:-go}"

# name|module|package|extra ldflags (%V = version; %KMAJ/%KMIN = the Kubernetes
# version helm assumes without a cluster, as helm's own Makefile stamps it)
tools=(
  "golangci-lint|github.com/golangci/golangci-lint/v2|github.com/golangci/golangci-lint/v2/cmd/golangci-lint|-X main.version=%V"
  "helm|helm.sh/helm/v3|helm.sh/helm/v3/cmd/helm|-X helm.sh/helm/v3/internal/version.version=%V -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=%KMAJ -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=%KMIN -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=%KMAJ -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=%KMIN"
  "kubeconform|github.com/yannh/kubeconform|github.com/yannh/kubeconform/cmd/kubeconform|-X main.version=%V"
)

# The Kubernetes minor helm's client-go corresponds to (v0.X.Y -> 1.X).
KMAJ=1
KMIN=37   # helm v3.22.0 builds against k8s.io/client-go v0.37.0

pinned() { (cd "$here" && GOFLAGS=-mod=mod "$GO" list -m -f '{{.Version}}' "$1"); }

for want in "$@"; do
  name="${want%%=*}" ver="${want#*=}"
  for t in "${tools[@]}"; do
    IFS='|' read -r tname mod _ _ <<<"$t"
    if [[ "$tname" == "$name" ]]; then
      got="$(pinned "$mod")"
      if [[ "$got" != "$ver" ]]; then
        echo "tools: $name is $ver in the Makefile but $got in hack/tools/go.mod; make them agree" >&2
        exit 1
      fi
    fi
  done
done

for t in "${tools[@]}"; do
  IFS='|' read -r name mod pkg ldflags <<<"$t"
  ver="$(pinned "$mod")"
  ldflags="-s -w ${ldflags//%V/$ver}"
  ldflags="${ldflags//%KMAJ/$KMAJ}"
  ldflags="${ldflags//%KMIN/$KMIN}"
  # Up to date = the binary says it was built from this module version
  # (`go version -m`), and the stamp written next to it records the same
  # ldflags (-trimpath keeps them out of the binary's build info).
  stamp="$bin/.$name.stamp"
  have="$("$GO" version -m "$bin/$name" 2>/dev/null | awk -v m="$mod" '$1=="mod" && $2==m {print $3}' || true)"
  if [[ "$have" == "$ver" && -f "$stamp" && "$(cat "$stamp")" == "$ver $ldflags" ]]; then
    echo "tools: $name $ver already installed"
    continue
  fi
  echo "tools: installing $name $ver"
  start=$SECONDS
  GOBIN="$bin" CGO_ENABLED=0 "$GO" install -trimpath -ldflags "$ldflags" "$pkg@$ver"
  echo "$ver $ldflags" >"$stamp"
  echo "tools: $name $ver installed in $((SECONDS - start))s"
done
