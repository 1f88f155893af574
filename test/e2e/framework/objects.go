//go:build e2e

package framework

import (
	"context"
	"encoding/base64"
	"fmt"
	"testing"
)

// Pod identifies a created pod.
type Pod struct {
	Namespace, Name, UID, ServiceAccount string
}

// CreateNamespace creates a namespace.
func CreateNamespace(ctx context.Context, t testing.TB, k *Kube, name string) {
	t.Helper()
	obj := Object{"apiVersion": "v1", "kind": "Namespace", "metadata": Object{"name": name}}
	if err := k.Create(ctx, "/api/v1/namespaces", obj, nil); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
}

// CreateServiceAccount creates a service account with optional annotations (e.g.
// azure.workload.identity/client-id). There is no controller-manager, so there is no "default"
// service account: every pod names one created here.
func CreateServiceAccount(ctx context.Context, t testing.TB, k *Kube, ns, name string, annotations map[string]string) {
	t.Helper()
	meta := Object{"name": name, "namespace": ns}
	if len(annotations) > 0 {
		meta["annotations"] = annotations
	}
	obj := Object{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}
	if err := k.Create(ctx, "/api/v1/namespaces/"+ns+"/serviceaccounts", obj, nil); err != nil {
		t.Fatalf("create service account %s/%s: %v", ns, name, err)
	}
}

// CreateSecret creates an Opaque secret from string data.
func CreateSecret(ctx context.Context, t testing.TB, k *Kube, ns, name string, data map[string]string, labels map[string]string) {
	t.Helper()
	meta := Object{"name": name, "namespace": ns}
	if len(labels) > 0 {
		meta["labels"] = labels
	}
	obj := Object{"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque", "stringData": data}
	if err := k.Create(ctx, "/api/v1/namespaces/"+ns+"/secrets", obj, nil); err != nil {
		t.Fatalf("create secret %s/%s: %v", ns, name, err)
	}
}

// SPCInput describes a SecretProviderClass.
type SPCInput struct {
	Namespace, Name string
	Provider        string            // default "azure"
	Parameters      map[string]string // e.g. keyvaultName, tenantId, clientID, objects
	SecretObjects   []Object          // spec.secretObjects, for sync to Kubernetes Secrets
}

// CreateSecretProviderClass creates a SecretProviderClass.
func CreateSecretProviderClass(ctx context.Context, t testing.TB, k *Kube, in SPCInput) {
	t.Helper()
	if in.Provider == "" {
		in.Provider = "azure"
	}
	spec := Object{"provider": in.Provider, "parameters": in.Parameters}
	if len(in.SecretObjects) > 0 {
		spec["secretObjects"] = in.SecretObjects
	}
	obj := Object{
		"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
		"metadata": Object{"name": in.Name, "namespace": in.Namespace}, "spec": spec,
	}
	if err := k.Create(ctx, "/apis/secrets-store.csi.x-k8s.io/v1/namespaces/"+in.Namespace+"/secretproviderclasses", obj, nil); err != nil {
		t.Fatalf("create SecretProviderClass %s/%s: %v", in.Namespace, in.Name, err)
	}
}

// PodInput describes a pod with one inline secrets-store CSI volume.
type PodInput struct {
	Namespace, Name string
	NodeName        string // the driver's --nodeid; the driver only watches pods on its node
	ServiceAccount  string
	SPC             string
	VolumeName      string // default "secrets-store-inline"
	// NodePublishSecretRef names a Secret in the pod's namespace (service principal credentials).
	NodePublishSecretRef string
	Labels               map[string]string
	OwnerReferences      []Object
}

// DefaultVolume is the volume name used when PodInput.VolumeName is empty.
const DefaultVolume = "secrets-store-inline"

// CreatePod creates a pod already bound to NodeName (no scheduler); it stays Pending since
// there is no kubelet, which is all the driver needs.
func CreatePod(ctx context.Context, t testing.TB, k *Kube, in PodInput) Pod {
	t.Helper()
	p, err := createPod(ctx, k, in)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func createPod(ctx context.Context, k *Kube, in PodInput) (Pod, error) {
	if in.VolumeName == "" {
		in.VolumeName = DefaultVolume
	}
	csi := Object{"driver": DriverName, "readOnly": true, "volumeAttributes": map[string]string{"secretProviderClass": in.SPC}}
	if in.NodePublishSecretRef != "" {
		csi["nodePublishSecretRef"] = Object{"name": in.NodePublishSecretRef}
	}
	meta := Object{"name": in.Name, "namespace": in.Namespace}
	if len(in.Labels) > 0 {
		meta["labels"] = in.Labels
	}
	if len(in.OwnerReferences) > 0 {
		meta["ownerReferences"] = in.OwnerReferences
	}
	obj := Object{
		"apiVersion": "v1", "kind": "Pod", "metadata": meta,
		"spec": Object{
			"nodeName":           in.NodeName,
			"serviceAccountName": in.ServiceAccount,
			"containers": []Object{{
				"name": "app", "image": "registry.k8s.io/pause:3.10",
				"volumeMounts": []Object{{"name": in.VolumeName, "mountPath": "/mnt/secrets-store", "readOnly": true}},
			}},
			"volumes": []Object{{"name": in.VolumeName, "csi": csi}},
		},
	}
	var out struct {
		Metadata struct{ UID string }
	}
	if err := k.Create(ctx, "/api/v1/namespaces/"+in.Namespace+"/pods", obj, &out); err != nil {
		return Pod{}, fmt.Errorf("create pod %s/%s: %w", in.Namespace, in.Name, err)
	}
	return Pod{Namespace: in.Namespace, Name: in.Name, UID: out.Metadata.UID, ServiceAccount: in.ServiceAccount}, nil
}

// Secret is the part of a Secret the tests read.
type Secret struct {
	Metadata struct {
		Labels          map[string]string
		OwnerReferences []struct{ Kind, Name string }
	}
	Type string
	Data map[string]string // base64
}

// Value returns the decoded value of key.
func (s Secret) Value(key string) (string, error) {
	v, ok := s.Data[key]
	if !ok {
		return "", fmt.Errorf("secret has no key %q", key)
	}
	b, err := base64.StdEncoding.DecodeString(v)
	return string(b), err
}

// GetSecret reads a secret.
func GetSecret(ctx context.Context, k *Kube, ns, name string) (Secret, error) {
	var s Secret
	err := k.Get(ctx, "/api/v1/namespaces/"+ns+"/secrets/"+name, &s)
	return s, err
}

// PodStatus is a SecretProviderClassPodStatus.
type PodStatus struct {
	Status struct {
		PodName                 string
		SecretProviderClassName string
		Mounted                 bool
		TargetPath              string
		Objects                 []struct{ ID, Version string }
	}
}

// GetPodStatus reads the SecretProviderClassPodStatus <pod>-<ns>-<spc>.
func GetPodStatus(ctx context.Context, k *Kube, ns, pod, spc string) (PodStatus, error) {
	var s PodStatus
	err := k.Get(ctx, "/apis/secrets-store.csi.x-k8s.io/v1/namespaces/"+ns+"/secretproviderclasspodstatuses/"+pod+"-"+ns+"-"+spc, &s)
	return s, err
}

// Event is the part of an Event the tests read.
type Event struct {
	Reason, Message, Type string
	InvolvedObject        struct{ Kind, Name string }
}

// ListEvents lists events in a namespace.
func ListEvents(ctx context.Context, k *Kube, ns string) ([]Event, error) {
	var l struct{ Items []Event }
	err := k.Get(ctx, "/api/v1/namespaces/"+ns+"/events", &l)
	return l.Items, err
}
