//go:build e2e

package e2e

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"google.golang.org/grpc/status"

	"github.com/akv-csi/provider/test/e2e/framework"
)

// TestManagedIdentity mounts with a user-assigned managed identity: the provider asks IMDS
// (169.254.169.254, reached through HTTP_PROXY = the emulator) for a token.
func TestManagedIdentity(t *testing.T) {
	const ns, sa, spc = "mi", "app", "kv-mi"
	e := framework.NewEnv(t, framework.EnvInput{Issuer: issuer, Seed: baseSeed()})
	ctx := e.Ctx
	e.Namespace(ns, sa, nil)
	framework.CreateSecretProviderClass(ctx, t, e.Kube, framework.SPCInput{Namespace: ns, Name: spc, Parameters: map[string]string{
		"keyvaultName": vault, "tenantId": tenantID,
		"useVMManagedIdentity": "true", "userAssignedIdentityID": miClientID,
		"objects": objectsParam(obj{Name: "db-password", Type: "secret"}),
	}})
	pod := e.Pod(framework.PodInput{Namespace: ns, Name: "app", ServiceAccount: sa, SPC: spc})
	e.Emulator.ResetCounters()
	m, err := e.Kubelet.Publish(ctx, pod, "")
	if err != nil {
		t.Fatalf("NodePublishVolume: %v", err)
	}
	if got := readFile(t, m, "db-password"); got != dbPasswordV1 {
		t.Errorf("db-password = %q, want %q", got, dbPasswordV1)
	}
	c := e.Emulator.Counters()
	if c.TokenRequestsByClient[miClientID] < 1 || c.KeyVaultGets["secret"] < 1 {
		t.Errorf("counters %+v: want a managed identity token for %s and a secret GET", c, miClientID)
	}
}

// TestServicePrincipal mounts with client credentials from the pod's nodePublishSecretRef
// Secret (keys clientid and clientsecret), which kubelet passes in NodePublishVolume.
func TestServicePrincipal(t *testing.T) {
	const ns, sa, spc = "sp", "app", "kv-sp"
	e := framework.NewEnv(t, framework.EnvInput{Issuer: issuer, Seed: baseSeed()})
	ctx := e.Ctx
	e.Namespace(ns, sa, nil)
	framework.CreateSecret(ctx, t, e.Kube, ns, "sp-creds", map[string]string{"clientid": spClientID, "clientsecret": spSecret},
		map[string]string{"secrets-store.csi.k8s.io/used": "true"})
	framework.CreateSecretProviderClass(ctx, t, e.Kube, framework.SPCInput{Namespace: ns, Name: spc, Parameters: map[string]string{
		"keyvaultName": vault, "tenantId": tenantID,
		"objects": objectsParam(obj{Name: "db-password", Type: "secret"}),
	}})
	pod := e.Pod(framework.PodInput{Namespace: ns, Name: "app", ServiceAccount: sa, SPC: spc, NodePublishSecretRef: "sp-creds"})
	e.Emulator.ResetCounters()
	m, err := e.Kubelet.Publish(ctx, pod, "")
	if err != nil {
		t.Fatalf("NodePublishVolume: %v", err)
	}
	if got := readFile(t, m, "db-password"); got != dbPasswordV1 {
		t.Errorf("db-password = %q, want %q", got, dbPasswordV1)
	}
	c := e.Emulator.Counters()
	if c.TokenRequestsByClient[spClientID] < 1 {
		t.Errorf("counters %+v: want a client-credentials token for %s", c, spClientID)
	}
	// The client secret must not show up in the provider's log.
	if b, err := os.ReadFile(e.Provider.Process.LogPath); err == nil && strings.Contains(string(b), spSecret) {
		t.Errorf("provider log contains the client secret")
	}
}

// TestDeniedIdentity: an identity without a grant on secrets fails NodePublishVolume with our
// actionable message (object, vault, missing role), and nothing is mounted.
func TestDeniedIdentity(t *testing.T) {
	const ns, sa, spc = "denied", "workload", "kv-denied"
	e := framework.NewEnv(t, framework.EnvInput{Issuer: issuer, Seed: baseSeed(subject(ns, sa))})
	ctx := e.Ctx
	e.Namespace(ns, sa, nil)
	framework.CreateSecretProviderClass(ctx, t, e.Kube, framework.SPCInput{Namespace: ns, Name: spc,
		Parameters: wiParams(deniedClientID, obj{Name: "db-password", Type: "secret"})})
	pod := e.Pod(framework.PodInput{Namespace: ns, Name: "app", ServiceAccount: sa, SPC: spc})
	_, err := e.Kubelet.Publish(ctx, pod, "")
	if err == nil {
		t.Fatal("NodePublishVolume succeeded for an identity without a grant on secrets")
	}
	st, _ := status.FromError(err)
	msg := st.Message()
	t.Logf("NodePublishVolume error (code %s): %s", st.Code(), msg)
	for _, want := range []string{"db-password", vault, "Key Vault Secrets User", deniedClientID} {
		if !strings.Contains(msg, want) {
			t.Errorf("error message lacks %q: %s", want, msg)
		}
	}
	if strings.Contains(msg, "eyJ") {
		t.Errorf("error message seems to contain a JWT: %s", msg)
	}
	target := e.Kubelet.TargetPath(pod.UID, framework.DefaultVolume)
	if mounted, _ := framework.IsMountPoint(target); mounted {
		t.Errorf("%s is mounted after a failed NodePublishVolume", target)
	}
	if _, err := framework.GetPodStatus(context.Background(), e.Kube, ns, pod.Name, spc); !framework.IsNotFound(err) {
		t.Errorf("SecretProviderClassPodStatus exists after a failed mount (err=%v)", err)
	}
	// What `kubectl describe pod` shows: kubelet's FailedMount event carries the hint unchanged.
	evs, err2 := framework.ListEvents(ctx, e.Kube, ns)
	if err2 != nil {
		t.Fatal(err2)
	}
	found := false
	for _, ev := range evs {
		if ev.Reason == "FailedMount" && ev.InvolvedObject.Name == pod.Name && strings.Contains(ev.Message, "Key Vault Secrets User") {
			found = true
		}
	}
	if !found {
		t.Errorf("no FailedMount event on pod %s carrying the hint; events: %+v", pod.Name, evs)
	}
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &se) {
		t.Errorf("error is not a gRPC status: %v", err)
	}
}
