//go:build e2e

package e2e

import (
	"strings"
	"testing"

	"google.golang.org/grpc/status"

	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/emulator"
	"github.com/akv-csi/provider/test/e2e/framework"
)

// TestIdentityBinding mounts with an AKS identity binding (useAzureTokenProxy): the CSIDriver
// requests tokens for api://AzureADTokenExchange and api://AKSIdentityBinding, as the driver chart
// does when identity binding is on; the kubelet gets the pod's api://AKSIdentityBinding token from
// the apiserver; the provider, started with --token-proxy-url (and --sni-name, then without it so
// it computes the name from the API server certificate), exchanges it through the emulator's token
// proxy. A pod whose service account is not bound to the identity gets the proxy's refusal as a
// FailedMount event.
func TestIdentityBinding(t *testing.T) {
	const ns, sa, spc = "ib", "app", "kv-ib"
	e := framework.NewEnv(t, framework.EnvInput{Issuer: issuer, Seed: baseSeed(), SkipCSIDriver: true})
	ctx := e.Ctx
	if err := e.Kube.Create(ctx, "/apis/storage.k8s.io/v1/csidrivers", framework.Object{
		"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
		"metadata": framework.Object{"name": framework.DriverName},
		"spec": framework.Object{
			"attachRequired": false, "podInfoOnMount": true, "volumeLifecycleModes": []string{"Ephemeral"},
			"tokenRequests": []framework.Object{{"audience": framework.Audience}, {"audience": config.IdentityBindingAudience}},
		},
	}, nil); err != nil {
		t.Fatalf("create CSIDriver: %v", err)
	}
	proxy, err := e.Emulator.StartTokenProxy(emulator.TokenProxyOptions{
		Bindings: []emulator.IdentityBinding{{ClientID: miClientID, Subject: subject(ns, sa)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	e.Namespace(ns, sa, nil)
	framework.CreateServiceAccount(ctx, t, e.Kube, ns, "intruder", nil) // no binding
	framework.CreateSecretProviderClass(ctx, t, e.Kube, framework.SPCInput{Namespace: ns, Name: spc, Parameters: map[string]string{
		"keyvaultName": vault, "tenantId": tenantID, "useAzureTokenProxy": "true", "clientID": miClientID,
		"objects": objectsParam(obj{Name: "db-password", Type: "secret"}),
	}})

	for i, args := range [][]string{
		{"--token-proxy-url=" + proxy.URL(), "--sni-name=" + proxy.ServerName()},
		{"--token-proxy-url=" + proxy.URL()}, // the server name computed from the API server certificate
	} {
		// The provider as the chart runs it with identity binding on (the emulator's CA is trusted
		// through SSL_CERT_FILE, as the service account CA is in a cluster).
		e.Provider.Process.Stop()
		e.Provider = framework.StartProvider(t, framework.ProviderInput{Config: e.Config, ProvidersDir: e.ProvidersDir,
			ProxyURL: e.Emulator.ProxyURL(), CAFile: e.EmulatorCA, LogDir: e.LogDir, ExtraArgs: args})
		before := len(proxy.Requests())
		e.Emulator.ResetCounters()
		pod := e.Pod(framework.PodInput{Namespace: ns, Name: "app-" + string(rune('a'+i)), ServiceAccount: sa, SPC: spc})
		m, err := e.Kubelet.Publish(ctx, pod, "")
		if err != nil {
			t.Fatalf("NodePublishVolume with %v: %v", args, err)
		}
		if got := readFile(t, m, "db-password"); got != dbPasswordV1 {
			t.Errorf("db-password = %q, want %q", got, dbPasswordV1)
		}
		var tokenRequests int
		for _, r := range proxy.Requests()[before:] {
			if r.Method == "POST" && r.Status == 200 && r.ServerName == proxy.ServerName() && r.Form.Get("client_id") == miClientID {
				tokenRequests++
			}
		}
		if tokenRequests == 0 {
			t.Errorf("with %v no token request went through the token proxy: %+v", args, proxy.Requests()[before:])
		}
		if c := e.Emulator.Counters(); c.TokenRequestsByClient[miClientID] < 1 || c.KeyVaultGets["secret"] < 1 {
			t.Errorf("counters %+v: want a token for %s and a secret GET", c, miClientID)
		}
		if err := e.Kubelet.Unpublish(ctx, m); err != nil {
			t.Fatal(err)
		}
	}

	// A service account without a binding: the proxy refuses, and the pod's event says so.
	pod := e.Pod(framework.PodInput{Namespace: ns, Name: "intruder", ServiceAccount: "intruder", SPC: spc})
	_, err = e.Kubelet.Publish(ctx, pod, "")
	if err == nil {
		t.Fatal("NodePublishVolume succeeded for a service account without an identity binding")
	}
	st, _ := status.FromError(err)
	t.Logf("NodePublishVolume error (code %s): %s", st.Code(), st.Message())
	if !strings.Contains(st.Message(), "may not use managed identity "+miClientID) {
		t.Errorf("error lacks the proxy's refusal: %s", st.Message())
	}
	if mounted, _ := framework.IsMountPoint(e.Kubelet.TargetPath(pod.UID, framework.DefaultVolume)); mounted {
		t.Error("the unbound pod's volume is mounted")
	}
}
