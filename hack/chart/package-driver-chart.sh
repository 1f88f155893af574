#!/usr/bin/env bash
# Package the secrets-store-csi-driver chart from the driver's Go module into
# the given charts/ directory (gitignored). The web chart repository is not
# reachable from CI, but the chart ships inside the module zip at the same tag.
# Usage: package-driver-chart.sh HELM CHARTS_DIR
set -euo pipefail
helm="$1" out="$2"
version="1.5.6"   # keep in step with deploy/helm/akv-provider/Chart.yaml
want="$out/secrets-store-csi-driver-$version.tgz"
if [[ -s "$want" ]]; then
  exit 0
fi
dir="$(go mod download -json "sigs.k8s.io/secrets-store-csi-driver@v$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [[ -z "$dir" || ! -f "$dir/charts/secrets-store-csi-driver/Chart.yaml" ]]; then
  echo "package-driver-chart: no chart in sigs.k8s.io/secrets-store-csi-driver@v$version (dir: '$dir')" >&2
  exit 1
fi
mkdir -p "$out"
rm -f "$out"/secrets-store-csi-driver-*.tgz
"$helm" package "$dir/charts/secrets-store-csi-driver" --destination "$out" >/dev/null
test -s "$want"
