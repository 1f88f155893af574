#!/usr/bin/env bash
# Real-node end-to-end tests (make e2e-node): a one-node cluster on this machine, every binary from
# the Go module proxy or Debian (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubelet, containerd + runc, CNI bridge), RBAC + Node authorization, the service-account issuer,
# images built without a registry, then `go test -tags node ./test/e2enode`, which helm-installs
# the chart with the driver and runs real pods. See test/e2enode/README.md.
#
#   hack/e2e/node.sh [go test flags...]        e.g. hack/e2e/node.sh -run TestRotation
#   hack/e2e/node.sh down                      tear down what an interrupted run left
#
# Teardown always runs (trap), also after a failed or interrupted test, and puts the host back:
# processes, mounts, network (our veth, bridge, netns, iptables), cgroups, sysctls, and the
# paths the kubelet and containerd use outside our state directory. Variables:
#   E2E_NODE_DIR (_output/e2e-node)  E2E_TIMEOUT (30m)  E2E_KEEP=1 (leave the cluster up)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=${E2E_BIN_DIR:-$ROOT/_output/e2e/bin}
D=${E2E_NODE_DIR:-$ROOT/_output/e2e-node}
mkdir -p "$BIN"
# shellcheck source=hack/e2e/lib.sh
. hack/e2e/lib.sh

NODE=e2e-node
NODE_IP=192.0.2.2        # TEST-NET-1, on a link of our own: pods reach the host here
LINK=akve2e0
API_PORT=16443
SERVICE_CIDR=10.96.0.0/16
KUBE_SVC_IP=10.96.0.1    # the `kubernetes` Service; one DNAT rule stands in for kube-proxy
POD_CIDR=10.244.0.0/24
CHAIN=AKV-E2E-NODE
# AKS's API server certificate carries the cluster's ID as hcp-kubernetes.<id>.svc.cluster.local;
# identity binding derives the token proxy's TLS server name from it (TestIdentityBinding).
CLUSTER_ID=e2e-node
ISSUER=https://kubernetes.default.svc
KUBELET_ROOT=/var/lib/kubelet   # the charts' default kubeletRootDir
PROVIDERS_DIR=/var/run/secrets-store-csi-providers
export KUBECONFIG=$D/admin.kubeconfig

start() { # start NAME CMD...: background, own session, logs in $D/logs/NAME.log
	local n=$1; shift
	setsid "$@" >"$D/logs/$n.log" 2>&1 </dev/null &
	echo $! >"$D/run/$n.pid"
}
wait_for() { # wait_for SECONDS WHAT CMD...: retry CMD once a second
	local s=$1 what=$2; shift 2
	for _ in $(seq "$s"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
	echo "timed out after ${s}s waiting for $what" >&2
	return 1
}
stop_pid() { # stop_pid NAME [SECONDS]: SIGTERM, then SIGKILL
	local f=$D/run/$1.pid p
	[ -f "$f" ] || return 0
	p=$(cat "$f")
	kill "$p" 2>/dev/null || true
	for _ in $(seq "${2:-30}"); do kill -0 "$p" 2>/dev/null || break; sleep 1; done
	kill -9 "$p" 2>/dev/null || true
	rm -f "$f"
}

down() {
	set +e
	echo "== teardown"
	local sock=$D/containerd/containerd.sock
	stop_pid kube-scheduler 10; stop_pid kube-controller-manager 10
	stop_pid kubelet 30
	if [ -S "$sock" ]; then
		for id in $(ctr -a "$sock" -n k8s.io tasks ls -q 2>/dev/null); do ctr -a "$sock" -n k8s.io tasks kill -s SIGKILL "$id" >/dev/null 2>&1; done
		sleep 2
		for id in $(ctr -a "$sock" -n k8s.io tasks ls -q 2>/dev/null); do ctr -a "$sock" -n k8s.io tasks delete -f "$id" >/dev/null 2>&1; done
	fi
	stop_pid containerd 20; stop_pid kube-apiserver 20; stop_pid etcd 20
	# Mounts: pod volumes (the driver's tmpfs), containerd's rootfs and netns bind mounts.
	findmnt -rn -o TARGET | grep -E "^($D|$KUBELET_ROOT|/run/containerd|/run/netns)(/|$)" | sort -r |
		while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
	for ns in $(ip netns list 2>/dev/null | awk '/^cni-/{print $1}'); do ip netns del "$ns"; done
	ip link del cni0 2>/dev/null; ip link del "$LINK" 2>/dev/null
	for t in nat filter; do
		iptables -t "$t" -D PREROUTING -j "$CHAIN" 2>/dev/null; iptables -t "$t" -D OUTPUT -j "$CHAIN" 2>/dev/null
		iptables -t "$t" -F "$CHAIN" 2>/dev/null; iptables -t "$t" -X "$CHAIN" 2>/dev/null
	done
	# What the kubelet and the CNI plugins add to iptables on their own.
	for ipt in iptables ip6tables; do
		$ipt -D INPUT -j KUBE-FIREWALL 2>/dev/null; $ipt -D OUTPUT -j KUBE-FIREWALL 2>/dev/null
		$ipt -F KUBE-FIREWALL 2>/dev/null; $ipt -X KUBE-FIREWALL 2>/dev/null
		for t in filter nat mangle; do $ipt -t $t -X KUBE-KUBELET-CANARY 2>/dev/null; done
		$ipt -t mangle -X KUBE-IPTABLES-HINT 2>/dev/null
	done
	iptables-save -t nat 2>/dev/null | awk '/^-A POSTROUTING .*CNI-/{sub(/^-A/,"-D"); print}' | while read -r r; do eval "iptables -t nat $r"; done
	for c in $(iptables-save -t nat 2>/dev/null | awk '/^:CNI-/{print substr($1,2)}'); do iptables -t nat -F "$c"; iptables -t nat -X "$c"; done
	for c in $(iptables-save -t filter 2>/dev/null | awk '/^:CNI-/{print substr($1,2)}'); do
		iptables -D FORWARD -j "$c" 2>/dev/null; iptables -F "$c"; iptables -X "$c"; done
	for d in $(find /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/k8s.io /sys/fs/cgroup/kubepods /sys/fs/cgroup/k8s.io -depth -type d 2>/dev/null); do rmdir "$d" 2>/dev/null; done
	if [ -f "$D/run/sysctl.orig" ]; then
		while IFS='=' read -r k v; do echo "$v" >"/proc/sys/$k"; done <"$D/run/sysctl.orig"
		rm -f "$D/run/sysctl.orig"
	fi
	rm -rf "$KUBELET_ROOT" /var/lib/cni /run/containerd "$PROVIDERS_DIR" /var/run/secrets-store-csi-providers
	find /var/log/containers -maxdepth 1 -type l -delete 2>/dev/null
	rmdir /run/netns /var/log/containers /var/log/pods 2>/dev/null
	rm -rf "$D/containerd" "$D/etcd" "$D/run/ours"
	echo "== teardown done"
	set -e
}

if [ "${1:-}" = down ]; then
	down
	exit 0
fi

phase "packages"
missing=()
for c in containerd:containerd runc:runc ctr:containerd iptables:iptables ip:iproute2 openssl:openssl etcd:etcd-server; do
	command -v "${c%%:*}" >/dev/null || missing+=("${c#*:}")
done
[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
# The images need a static busybox (Debian's busybox package is dynamically linked).
dpkg-query -W -f '${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || missing+=(busybox-static)
if [ ${#missing[@]} -gt 0 ]; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
containerd --version; runc --version | sed -n 1p; need_etcd
BUSYBOX=/bin/busybox

phase "kubernetes binaries"
build_kube
phase "secrets-store-csi-driver"
NO_CSI16=1 build_csi
DRIVER_DIR=$(driver_dir)
phase "node stand-ins, mkimages"
(cd hack/e2e/node && "$GO" test ./...) # mkimages knows every instruction of the Dockerfile
s=$(stamp hack/e2e/node)
if cached node "$s" registrar livenessprobe pause mkimages; then
	echo "cached"
else
	(cd hack/e2e/node && "$GO" build -o "$BIN/" ./cmd/registrar ./cmd/livenessprobe ./cmd/pause ./cmd/mkimages)
	echo "$s" >"$BIN/.node.stamp"
fi
phase "helm, chart dependency"
build_helm
make --no-print-directory chart-deps HELM="$HELM" >/dev/null
phase "Azure's provider v1.8.2 (the rehearsed switch)"
# Its binary and its chart from its module (hack/e2e/upstream pins it); the chart's driver
# dependency is the driver chart this chart bundles (the same version, 1.5.6).
UPSTREAM_MOD=github.com/Azure/secrets-store-csi-driver-provider-azure
s=$(stamp hack/e2e/upstream)
if cached upstream "$s" secrets-store-csi-driver-provider-azure; then
	echo "cached"
else
	(cd hack/e2e/upstream && "$GO" build -trimpath -o "$BIN/secrets-store-csi-driver-provider-azure" "$UPSTREAM_MOD/cmd")
	echo "$s" >"$BIN/.upstream.stamp"
fi
(cd hack/e2e/upstream && "$GO" mod download "$UPSTREAM_MOD")
UPSTREAM_SRC=$(cd hack/e2e/upstream && "$GO" list -m -f '{{.Dir}}' "$UPSTREAM_MOD")
[ -d "$UPSTREAM_SRC/charts/csi-secrets-store-provider-azure" ] || { echo "no chart in $UPSTREAM_SRC" >&2; exit 1; }

# Refuse to run over a host that has a kubelet of its own: teardown would remove its state.
if [ -e "$KUBELET_ROOT" ] && [ ! -f "$D/run/ours" ]; then
	echo "$KUBELET_ROOT exists and was not made by this script: refusing to run on a real node" >&2
	exit 1
fi
trap 'rc=$?; [ "${E2E_KEEP:-}" = 1 ] || down; exit $rc' EXIT
trap 'exit 130' INT TERM
down >/dev/null 2>&1 # what an interrupted run left
mkdir -p "$D"/{run,logs,pki,cni/net.d,cni/bin,containerd,manifests} "$KUBELET_ROOT"
touch "$D/run/ours"

phase "images"
UPSTREAM_CHART=$D/upstream-chart
rm -rf "$UPSTREAM_CHART"
cp -r "$UPSTREAM_SRC/charts/csi-secrets-store-provider-azure" "$UPSTREAM_CHART"
chmod -R u+w "$UPSTREAM_CHART"
mkdir -p "$UPSTREAM_CHART/charts"
cp deploy/helm/akv-provider/charts/secrets-store-csi-driver-*.tgz "$UPSTREAM_CHART/charts/"
# The exact references the charts render with the values the tests install (tags, not digests),
# plus the sandbox image containerd uses.
{
	"$HELM" template akv deploy/helm/akv-provider -n kube-system -f test/e2enode/testdata/values.yaml
	"$HELM" template csi "$UPSTREAM_CHART" -n kube-system -f test/e2enode/testdata/azure-values.yaml
} | awk '$1 == "image:" || $1 == "-" && $2 == "image:" {print $NF}' | tr -d '"' | sort -u >"$D/images.txt"
echo "registry.k8s.io/pause:3.10" >>"$D/images.txt"
"$BIN/mkimages" --images "$D/images.txt" --out "$D/images.tar" --dockerfile Dockerfile --context "$ROOT" \
	--bins "$BIN" --busybox "$BUSYBOX" --crds "$DRIVER_DIR/charts/secrets-store-csi-driver/crds"

phase "certificates, tokens"
P=$D/pki
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=e2e-node-ca -keyout "$P/ca.key" -out "$P/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver -keyout "$P/apiserver.key" -out "$P/apiserver.csr" 2>/dev/null
printf 'subjectAltName=IP:%s,IP:%s,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:hcp-kubernetes.%s.svc.cluster.local\n' "$NODE_IP" "$KUBE_SVC_IP" "$CLUSTER_ID" >"$P/san.ext"
openssl x509 -req -in "$P/apiserver.csr" -CA "$P/ca.crt" -CAkey "$P/ca.key" -CAcreateserial -days 2 -extfile "$P/san.ext" -out "$P/apiserver.crt" 2>/dev/null
openssl genrsa -out "$P/sa.key" 2048 2>/dev/null
openssl rsa -in "$P/sa.key" -pubout -out "$P/sa.pub" 2>/dev/null
tok() { openssl rand -hex 16; }
ADMIN_TOKEN=$(tok)
{
	echo "$ADMIN_TOKEN,e2e-admin,e2e-admin,system:masters"
	echo "$(tok),system:node:$NODE,system:node:$NODE,system:nodes"
	echo "$(tok),system:kube-controller-manager,system:kube-controller-manager"
	echo "$(tok),system:kube-scheduler,system:kube-scheduler"
} >"$P/tokens.csv"
chmod 600 "$P"/*.key "$P/tokens.csv"
kubeconfig() { # kubeconfig FILE USER
	local t; t=$(awk -F, -v u="$2" '$2 == u {print $1}' "$P/tokens.csv")
	cat >"$1" <<-EOF
	apiVersion: v1
	kind: Config
	clusters: [{name: e2e, cluster: {server: "https://$NODE_IP:$API_PORT", certificate-authority: "$P/ca.crt"}}]
	users: [{name: u, user: {token: "$t"}}]
	contexts: [{name: e2e, context: {cluster: e2e, user: u}}]
	current-context: e2e
	EOF
	chmod 600 "$1"
}
kubeconfig "$D/admin.kubeconfig" e2e-admin
kubeconfig "$D/kubelet.kubeconfig" "system:node:$NODE"
kubeconfig "$D/kcm.kubeconfig" system:kube-controller-manager
kubeconfig "$D/scheduler.kubeconfig" system:kube-scheduler

phase "network"
for s in vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes net/ipv4/ip_forward; do
	echo "$s=$(cat "/proc/sys/$s")"
done >"$D/run/sysctl.orig"
# A veth pair of our own (this kernel has no dummy links); only its address matters.
ip link add "$LINK" type veth peer name "${LINK}p"
ip addr add "$NODE_IP/32" dev "$LINK"
ip link set "$LINK" up
ip link set "${LINK}p" up
echo 1 >/proc/sys/net/ipv4/ip_forward
# The `kubernetes` Service: pods (PREROUTING) and host-network pods (OUTPUT) to the apiserver.
iptables -t nat -N "$CHAIN"
iptables -t nat -A "$CHAIN" -d "$KUBE_SVC_IP/32" -p tcp --dport 443 -j DNAT --to-destination "$NODE_IP:$API_PORT"
iptables -t nat -I PREROUTING -j "$CHAIN"
iptables -t nat -I OUTPUT -j "$CHAIN"
for p in bridge host-local loopback portmap; do ln -sf "/usr/lib/cni/$p" "$D/cni/bin/$p"; done
cat >"$D/cni/net.d/10-bridge.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "e2e", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
EOF

phase "containerd"
sed "s#@D@#$D#g" test/e2enode/testdata/containerd.toml >"$D/containerd/config.toml"
start containerd containerd --config "$D/containerd/config.toml"
wait_for 30 containerd ctr -a "$D/containerd/containerd.sock" version
ctr -a "$D/containerd/containerd.sock" -n k8s.io images import "$D/images.tar" | sed 's/^/  /'

phase "etcd, kube-apiserver"
start etcd etcd --name e2e-node --data-dir "$D/etcd" \
	--listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 \
	--listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 \
	--initial-cluster e2e-node=http://127.0.0.1:23800
start kube-apiserver "$BIN/kube-apiserver" --etcd-servers=http://127.0.0.1:23790 \
	--bind-address="$NODE_IP" --secure-port=$API_PORT --advertise-address="$NODE_IP" \
	--tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" --client-ca-file="$P/ca.crt" \
	--token-auth-file="$P/tokens.csv" --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
	--allow-privileged=true --kubelet-preferred-address-types=InternalIP \
	--service-account-issuer=$ISSUER --service-account-key-file="$P/sa.pub" \
	--service-account-signing-key-file="$P/sa.key" --service-cluster-ip-range=$SERVICE_CIDR
wait_for 60 kube-apiserver "$BIN/kubectl" get --raw /readyz

phase "controllers, scheduler, kubelet"
start kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig="$D/kcm.kubeconfig" \
	--leader-elect=false --use-service-account-credentials=true \
	--service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" \
	--service-cluster-ip-range=$SERVICE_CIDR --controllers='*,-nodeipam' --bind-address=127.0.0.1 --secure-port=0
start kube-scheduler "$BIN/kube-scheduler" --kubeconfig="$D/scheduler.kubeconfig" --leader-elect=false \
	--bind-address=127.0.0.1 --secure-port=0
sed -e "s#@D@#$D#g" -e "s#@NODE_IP@#$NODE_IP#g" test/e2enode/testdata/kubelet.yaml >"$D/kubelet.yaml"
start kubelet "$BIN/kubelet" --config="$D/kubelet.yaml" --kubeconfig="$D/kubelet.kubeconfig" \
	--root-dir="$KUBELET_ROOT" --cert-dir="$D/kubelet-pki" --hostname-override=$NODE --node-ip="$NODE_IP" --v=2
node_ready() { "$BIN/kubectl" get node $NODE -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' | grep -qx True; }
wait_for 90 "node $NODE Ready" node_ready
wait_for 60 "the default ServiceAccount and kube-root-ca.crt" "$BIN/kubectl" -n default get sa/default cm/kube-root-ca.crt
"$BIN/kubectl" get nodes -o wide

phase "go test"
export E2E_NODE_DIR=$D E2E_BIN_DIR=$BIN E2E_HELM=$HELM E2E_NODE_IP=$NODE_IP E2E_ISSUER=$ISSUER
export E2E_SA_PUB=$P/sa.pub E2E_UPSTREAM_CHART=$UPSTREAM_CHART
export E2E_PKI=$P E2E_CLUSTER_ID=$CLUSTER_ID E2E_NAT_CHAIN=$CHAIN E2E_KUBE_SVC_IP=$KUBE_SVC_IP E2E_API_ADDR=$NODE_IP:$API_PORT
rc=0
"$GO" test -tags node -count=1 -v -timeout "${E2E_TIMEOUT:-30m}" ./test/e2enode/... "$@" || rc=$?
phase ""
echo "== total $(($(date +%s) - t0))s, go test exit code $rc"
exit $rc
