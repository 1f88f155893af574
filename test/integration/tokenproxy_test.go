package integration

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/akv-csi/provider/pkg/auth"
	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/emulator"
	"github.com/akv-csi/provider/pkg/provider"
)

// podSubject is the service account of the pod mountRequest.build describes.
const podSubject = "system:serviceaccount:default:app-sa"

// startTokenProxy runs the emulator's AKS token proxy, letting default/app-sa use the
// user-assigned identity miUser (granted secrets), and writes its CA (the emulator's) to a file,
// as the service account CA is mounted for the provider.
func startTokenProxy(t *testing.T, bindings ...emulator.IdentityBinding) (*emulator.TokenProxy, string) {
	t.Helper()
	if bindings == nil {
		bindings = []emulator.IdentityBinding{{ClientID: miUser, Subject: podSubject}}
	}
	p, err := em.StartTokenProxy(emulator.TokenProxyOptions{ClusterID: "int-" + t.Name(), Bindings: bindings})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := em.WriteCA(ca); err != nil {
		t.Fatal(err)
	}
	return p, ca
}

// ibRequest is an identity binding mount of the secret "plain": useAzureTokenProxy, clientID and
// the pod's token for api://AKSIdentityBinding (plus one for api://AzureADTokenExchange, as a
// CSIDriver requesting both audiences sends).
func ibRequest(t *testing.T, clientID string, audiences ...string) mountRequest {
	t.Helper()
	if audiences == nil {
		audiences = []string{config.IdentityBindingAudience, config.WorkloadIdentityAudience}
	}
	tokens := map[string]map[string]string{}
	for _, aud := range audiences {
		tok, err := em.SignServiceAccountToken("default", "app-sa", aud, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		tokens[aud] = map[string]string{"token": tok, "expirationTimestamp": time.Now().Add(time.Hour).Format(time.RFC3339)}
	}
	b, _ := json.Marshal(tokens)
	return mountRequest{params: map[string]string{
		config.KeyVaultName: vault, config.TenantID: tenant, config.Objects: objects("objectName: plain\nobjectType: secret"),
		config.UseAzureTokenProxy: "true", config.ClientID: clientID, config.ServiceAccountTokens: string(b),
	}}
}

// TestIdentityBindingMounts mounts with identity binding: the provider exchanges the pod's
// api://AKSIdentityBinding token through the token proxy (with a configured TLS server name, and
// with one computed from the API server's certificate), and Key Vault accepts the identity's token.
func TestIdentityBindingMounts(t *testing.T) {
	p, ca := startTokenProxy(t)
	for _, tt := range []struct {
		name string
		sni  string
	}{{"configured server name", p.ServerName()}, {"computed server name", ""}} {
		t.Run(tt.name, func(t *testing.T) {
			c := startProvider(t, provider.Options{Auth: auth.Options{Retry: fastRetry, TokenProxyURL: p.URL(), TokenProxySNI: tt.sni, TokenProxyCAFile: ca}})
			before := len(p.Requests())
			resp := mustMount(t, c, ibRequest(t, miUser))
			if f := files(resp)["plain"]; f == nil || string(f.GetContents()) != plainValue {
				t.Errorf("files = %v", resp.GetFiles())
			}
			var token *emulator.ProxiedRequest
			for _, r := range p.Requests()[before:] {
				if r.Method == "POST" {
					token = &r
				}
			}
			switch {
			case token == nil:
				t.Fatal("no token request reached the token proxy")
			case token.ServerName != p.ServerName() || token.Status != 200 || token.Form.Get("client_id") != miUser:
				t.Errorf("token request: server name %q, status %d, client %q", token.ServerName, token.Status, token.Form.Get("client_id"))
			case !strings.Contains(token.Host, "login.microsoftonline.com"):
				t.Errorf("token request Host %q, want the authority host", token.Host)
			}
			iss, sub := auth.TokenSubject(token.Form.Get("client_assertion"))
			if iss != emulator.BuiltinIssuer || sub != podSubject {
				t.Errorf("the proxy got a token of %s %s", iss, sub)
			}
		})
	}
}

// TestIdentityBindingErrors: what a misconfigured identity binding mount says. A wrong server
// name or proxy URL names both and what to check; nothing is mounted.
func TestIdentityBindingErrors(t *testing.T) {
	p, ca := startTokenProxy(t)
	unbound, _ := startTokenProxy(t, emulator.IdentityBinding{ClientID: miUser, Subject: "system:serviceaccount:default:other"})
	closed := "https://127.0.0.1:1"
	tests := []struct {
		name  string
		auth  auth.Options
		req   func(t *testing.T) mountRequest
		codes []codes.Code
		want  []string
	}{
		{"wrong server name", auth.Options{TokenProxyURL: p.URL(), TokenProxySNI: "wrong.ests.aks", TokenProxyCAFile: ca},
			func(t *testing.T) mountRequest { return ibRequest(t, miUser) },
			// Internal until the provider classifies *auth.TokenProxyError as Unauthenticated.
			[]codes.Code{codes.Unauthenticated, codes.Unavailable, codes.Internal},
			[]string{"AKS token proxy " + p.URL(), `TLS server name "wrong.ests.aks"`, "check --sni-name"}},
		{"wrong proxy URL", auth.Options{TokenProxyURL: closed, TokenProxySNI: p.ServerName(), TokenProxyCAFile: ca},
			func(t *testing.T) mountRequest { return ibRequest(t, miUser) },
			[]codes.Code{codes.Unauthenticated, codes.Unavailable},
			[]string{"cannot reach the AKS token proxy " + closed, `TLS server name "` + p.ServerName() + `"`, "check --token-proxy-url"}},
		{"wrong proxy URL, server name to compute", auth.Options{TokenProxyURL: closed, TokenProxyCAFile: ca},
			func(t *testing.T) mountRequest { return ibRequest(t, miUser) },
			[]codes.Code{codes.Unauthenticated, codes.Unavailable, codes.Internal},
			[]string{"cannot compute the TLS server name of the AKS token proxy " + closed, "set --sni-name"}},
		{"service account not bound", auth.Options{TokenProxyURL: unbound.URL(), TokenProxySNI: unbound.ServerName(), TokenProxyCAFile: ca},
			func(t *testing.T) mountRequest { return ibRequest(t, miUser) },
			[]codes.Code{codes.Unauthenticated, codes.PermissionDenied},
			[]string{"may not use managed identity " + miUser}},
		{"no api://AKSIdentityBinding token", auth.Options{TokenProxyURL: p.URL(), TokenProxySNI: p.ServerName(), TokenProxyCAFile: ca},
			func(t *testing.T) mountRequest { return ibRequest(t, miUser, config.WorkloadIdentityAudience) },
			[]codes.Code{codes.InvalidArgument},
			[]string{`no service account token for audience "api://AKSIdentityBinding"`, "tokenRequests"}},
		{"no clientID", auth.Options{TokenProxyURL: p.URL(), TokenProxySNI: p.ServerName(), TokenProxyCAFile: ca},
			func(t *testing.T) mountRequest { return ibRequest(t, "") },
			[]codes.Code{codes.InvalidArgument},
			[]string{`clientID is required when useAzureTokenProxy is "true"`}},
		{"two identity modes", auth.Options{TokenProxyURL: p.URL(), TokenProxySNI: p.ServerName(), TokenProxyCAFile: ca},
			func(t *testing.T) mountRequest {
				r := ibRequest(t, miUser)
				r.params[config.UseVMManagedIdentity] = "true"
				return r
			},
			[]codes.Code{codes.InvalidArgument},
			[]string{"only one identity mode can be enabled at a time", "useVMManagedIdentity and useAzureTokenProxy"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.auth.Retry = fastRetry
			c := startProvider(t, provider.Options{Auth: tt.auth})
			start := time.Now()
			resp, err := mount(t, c, tt.req(t))
			if err == nil {
				t.Fatalf("Mount succeeded with %d files", len(resp.GetFiles()))
			}
			st, _ := status.FromError(err)
			t.Logf("%s (%s): %s", st.Code(), time.Since(start).Round(time.Millisecond), st.Message())
			if !containsCode(tt.codes, st.Code()) {
				t.Errorf("code %s, want one of %v", st.Code(), tt.codes)
			}
			for _, w := range tt.want {
				if !strings.Contains(st.Message(), w) {
					t.Errorf("message lacks %q", w)
				}
			}
			if strings.Contains(st.Message(), "eyJ") {
				t.Error("the message contains a JWT")
			}
		})
	}
}

func containsCode(list []codes.Code, c codes.Code) bool {
	for _, x := range list {
		if x == c {
			return true
		}
	}
	return false
}
