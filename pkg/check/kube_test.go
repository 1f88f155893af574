package check

import (
	"os"
	"strings"
	"testing"
)

const clusterSPCs = `{"apiVersion": "v1", "kind": "List", "items": [
 {"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass", "metadata": {"name": "app", "namespace": "shop"},
  "spec": {"provider": "azure", "parameters": {"keyvaultName": "kv-shop", "tenantId": "t-1", "clientID": "app-client",
   "objects": "array:\n  - |\n    objectName: db-password\n    objectType: secret\n"}}},
 {"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass", "metadata": {"name": "legacy", "namespace": "shop"},
  "spec": {"provider": "azure", "parameters": {"keyvaultName": "kv-shop", "tenantId": "t-1",
   "objects": "array:\n  - |\n    objectName: db-password\n    objectType: secret\n"}}},
 {"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass", "metadata": {"name": "unused", "namespace": "ops"},
  "spec": {"provider": "azure", "parameters": {"keyvaultName": "kv-ops", "tenantId": "t-1", "useVMManagedIdentity": "true",
   "objects": "array:\n  - |\n    objectName: token\n    objectType: secret\n"}}},
 {"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass", "metadata": {"name": "hashicorp", "namespace": "shop"},
  "spec": {"provider": "vault", "parameters": {"roleName": "app"}}}
]}`

const clusterPods = `{"apiVersion": "v1", "kind": "List", "items": [
 {"metadata": {"name": "app-7c9f-1", "namespace": "shop"}, "spec": {"serviceAccountName": "app-sa", "volumes": [
   {"name": "secrets", "csi": {"driver": "secrets-store.csi.k8s.io", "readOnly": true, "volumeAttributes": {"secretProviderClass": "app"}}},
   {"name": "data", "emptyDir": {}}]}},
 {"metadata": {"name": "app-7c9f-2", "namespace": "shop"}, "spec": {"serviceAccountName": "app-sa", "volumes": [
   {"name": "secrets", "csi": {"driver": "secrets-store.csi.k8s.io", "volumeAttributes": {"secretProviderClass": "app"}}}]}},
 {"metadata": {"name": "legacy-0", "namespace": "shop"}, "spec": {"volumes": [
   {"name": "secrets", "csi": {"driver": "secrets-store.csi.k8s.io", "volumeAttributes": {"secretProviderClass": "legacy"}}}]}},
 {"metadata": {"name": "legacy-ok", "namespace": "shop"}, "spec": {"volumes": [
   {"name": "secrets", "csi": {"driver": "secrets-store.csi.k8s.io", "volumeAttributes": {"secretProviderClass": "legacy"},
    "nodePublishSecretRef": {"name": "kv-creds"}}}]}},
 {"metadata": {"name": "ghost", "namespace": "shop"}, "spec": {"volumes": [
   {"name": "secrets", "csi": {"driver": "secrets-store.csi.k8s.io", "volumeAttributes": {"secretProviderClass": "gone"}}}]}},
 {"metadata": {"name": "vault-app", "namespace": "shop"}, "spec": {"volumes": [
   {"name": "secrets", "csi": {"driver": "secrets-store.csi.k8s.io", "volumeAttributes": {"secretProviderClass": "hashicorp"}}}]}}
]}`

// TestKube checks each way a pod of the cluster mounts a SecretProviderClass of this provider: its
// own service account in the federated credential, replicas once, a pod without the
// nodePublishSecretRef its SecretProviderClass needs, a pod whose SecretProviderClass is gone, and
// one that no pod mounts.
func TestKube(t *testing.T) {
	t.Parallel()
	o := offline()
	o.Kube = true
	o.Kubectl = fakeKubectl(t, map[string]string{
		"get secretproviderclasses.secrets-store.csi.x-k8s.io -o json --all-namespaces": clusterSPCs,
		"get pods -o json --all-namespaces":                                             clusterPods,
	})
	rep, text, _ := runCheck(t, o)
	if rep.OK {
		t.Fatalf("accepted:\n%s", text)
	}
	got := map[string]*Result{}
	for _, r := range rep.Classes {
		got[r.Namespace+"/"+r.Name+" "+r.Pod] = r
	}
	app := got["shop/app shop/app-7c9f-1 (and 1 more like it)"]
	if app == nil || !app.OK || app.Explain.FederatedCredential.Subject != "system:serviceaccount:shop:app-sa" {
		t.Errorf("the pods of app:\n%s", text)
	}
	if r := got["shop/legacy shop/legacy-0"]; r == nil || r.OK || !strings.Contains(r.Problems[0].Message, "no identity configured") {
		t.Errorf("a pod without nodePublishSecretRef:\n%s", text)
	}
	if r := got["shop/legacy shop/legacy-ok"]; r == nil || !r.OK || r.Explain.Identity.Mode != "service principal" {
		t.Errorf("a pod with nodePublishSecretRef:\n%s", text)
	}
	if r := got["ops/unused "]; r == nil || !r.OK || len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "no pod mounts it") {
		t.Errorf("a SecretProviderClass no pod mounts:\n%s", text)
	}
	if len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0].Message, `pod shop/ghost mounts SecretProviderClass "gone", which does not exist in namespace shop`) {
		t.Errorf("problems %v", rep.Problems)
	}
	if len(rep.Classes) != 4 {
		t.Errorf("%d checks, want 4:\n%s", len(rep.Classes), text)
	}
	if !strings.Contains(text, "== SecretProviderClass shop/app, mounted by pod shop/app-7c9f-1 (and 1 more like it): OK") {
		t.Errorf("no header for the app pods:\n%s", text)
	}
	if !strings.Contains(text, "skipped 1 SecretProviderClass of provider vault") {
		t.Errorf("other providers are not skipped:\n%s", text)
	}

	o.Kubectl = fakeKubectl(t, nil)
	if _, err := Run(t.Context(), o); err == nil || !strings.Contains(err.Error(), "kubectl get secretproviderclasses") {
		t.Errorf("a failing kubectl: %v", err)
	}
}

// TestKubeLive mounts, for real, the SecretProviderClass a pod of the cluster mounts, as that pod's
// workload identity.
func TestKubeLive(t *testing.T) {
	t.Parallel()
	manifest, err := os.ReadFile(liveSPC)
	if err != nil {
		t.Fatal(err)
	}
	file, _ := tokenFile(t, "default", "app-sa")
	o := liveOptions()
	o.Kube, o.AsWorkloadIdentity, o.TokenFile = true, true, file
	o.Kubectl = fakeKubectl(t, map[string]string{
		"get secretproviderclasses.secrets-store.csi.x-k8s.io -o json --all-namespaces": string(manifest),
		"get pods -o json --all-namespaces": `{"items": [{"metadata": {"name": "app-0", "namespace": "default"}, "spec": {"serviceAccountName": "app-sa",
			"volumes": [{"csi": {"driver": "secrets-store.csi.k8s.io", "volumeAttributes": {"secretProviderClass": "app"}}}]}}]}`,
	})
	rep, text, _ := runCheck(t, o)
	if len(rep.Classes) != 1 || rep.Classes[0].Live == nil || rep.Classes[0].Pod != "default/app-0" {
		t.Fatalf("want one live mount for pod default/app-0:\n%s", text)
	}
	live := rep.Classes[0].Live
	if got := statuses(live); got["secret/db-password"] != "OK" || got["key/signing-rsa"] != "DENIED" {
		t.Errorf("statuses %v\n%s", got, text)
	}
	if !strings.Contains(live.MountError, "for pod default/app-0 as workload identity") {
		t.Errorf("the error does not name the pod: %s", live.MountError)
	}
}
