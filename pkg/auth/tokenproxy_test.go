package auth

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	azcloud "github.com/akv-csi/provider/pkg/cloud"
	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/emulator"
)

const (
	ibTenant  = "aaaaaaaa-0000-4000-8000-00000000000a"
	ibUAMI    = "1b000000-0000-4000-8000-0000000000a1"
	ibSubject = "system:serviceaccount:apps:web"
)

var publicCloud = azcloud.Environment{Name: config.AzurePublicCloud, AuthorityHost: "https://login.microsoftonline.com/", KeyVaultDNSSuffix: "vault.azure.net"}

// proxyEnv is an emulator with a token proxy that lets apps/web use ibUAMI, a CA file trusting
// it, and a service account token for api://AKSIdentityBinding.
type proxyEnv struct {
	em     *emulator.Emulator
	proxy  *emulator.TokenProxy
	caFile string
	token  string
}

func newProxyEnv(t *testing.T) proxyEnv {
	t.Helper()
	em, err := emulator.Start(emulator.Options{Seed: &emulator.Seed{TenantID: ibTenant, ManagedIdentities: []emulator.ManagedIdentity{{ClientID: ibUAMI}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = em.Close() })
	p, err := em.StartTokenProxy(emulator.TokenProxyOptions{ClusterID: "c-" + t.Name(), Bindings: []emulator.IdentityBinding{{ClientID: ibUAMI, Subject: ibSubject}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := em.WriteCA(ca); err != nil {
		t.Fatal(err)
	}
	tok, err := em.SignServiceAccountToken("apps", "web", config.IdentityBindingAudience, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return proxyEnv{em: em, proxy: p, caFile: ca, token: tok}
}

// getToken builds the identity binding credential with o and asks it for a Key Vault token.
func (pe proxyEnv) getToken(t *testing.T, o Options) error {
	t.Helper()
	if o.Retry.MaxRetries == 0 {
		o.Retry = policy.RetryOptions{MaxRetries: 2, RetryDelay: time.Millisecond, MaxRetryDelay: 10 * time.Millisecond}
	}
	a := &Assertion{}
	a.Set(pe.token)
	cred, err := NewCredential(config.Identity{Mode: config.IdentityBinding, ClientID: ibUAMI, Token: pe.token}, ibTenant, publicCloud, a, o)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{"https://vault.azure.net/.default"}})
	return err
}

func TestTokenProxyServerName(t *testing.T) {
	t.Parallel()
	// The computation Azure's provider does (resolveServerName), for a cluster ID from an AKS
	// API server certificate SAN hcp-kubernetes.<id>.svc.cluster.local.
	got := TokenProxyServerName("65f3a1b2c3d4e5f60718293a")
	if !strings.HasPrefix(got, "a") || !strings.HasSuffix(got, ".ests.aks") || len(got) != 62 || strings.ToLower(got) != got {
		t.Errorf("TokenProxyServerName = %q", got)
	}
	if TokenProxyServerName("x") == TokenProxyServerName("y") {
		t.Error("different clusters get the same server name")
	}
}

func TestTokenProxyMounts(t *testing.T) {
	t.Parallel()
	pe := newProxyEnv(t)
	t.Run("configured server name", func(t *testing.T) {
		if err := pe.getToken(t, Options{TokenProxyURL: pe.proxy.URL(), TokenProxySNI: pe.proxy.ServerName(), TokenProxyCAFile: pe.caFile}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("server name computed from the API server certificate", func(t *testing.T) {
		if err := pe.getToken(t, Options{TokenProxyURL: pe.proxy.URL() + "/", TokenProxyCAFile: pe.caFile}); err != nil {
			t.Fatal(err)
		}
		if r := pe.proxy.Requests(); r[len(r)-1].ServerName != pe.proxy.ServerName() {
			t.Errorf("computed server name %q, want %q", r[len(r)-1].ServerName, pe.proxy.ServerName())
		}
	})
}

// TestTokenProxyErrors: each misconfiguration names the proxy URL, the server name and what to
// check; configuration errors are not retried.
func TestTokenProxyErrors(t *testing.T) {
	t.Parallel()
	pe := newProxyEnv(t)
	otherCA, err := emulator.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	wrongCA := filepath.Join(t.TempDir(), "other.crt")
	if err := os.WriteFile(wrongCA, otherCA.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	closed := "https://127.0.0.1:1"
	tests := []struct {
		name     string
		o        Options
		want     []string
		requests int // requests the proxy may see
	}{
		{"wrong server name", Options{TokenProxyURL: pe.proxy.URL(), TokenProxySNI: "wrong.ests.aks", TokenProxyCAFile: pe.caFile},
			[]string{"identity binding: the certificate of the AKS token proxy " + pe.proxy.URL() + ` is not valid for TLS server name "wrong.ests.aks": check --sni-name`}, 0},
		{"untrusted proxy", Options{TokenProxyURL: pe.proxy.URL(), TokenProxySNI: pe.proxy.ServerName(), TokenProxyCAFile: wrongCA},
			[]string{"the certificate of the AKS token proxy " + pe.proxy.URL(), pe.proxy.ServerName(), "is not signed by a CA in CA file " + wrongCA}, 0},
		{"unreachable proxy", Options{TokenProxyURL: closed, TokenProxySNI: pe.proxy.ServerName(), TokenProxyCAFile: pe.caFile},
			[]string{"cannot reach the AKS token proxy " + closed, pe.proxy.ServerName(), "check --token-proxy-url"}, 0},
		{"missing CA file", Options{TokenProxyURL: pe.proxy.URL(), TokenProxySNI: pe.proxy.ServerName(), TokenProxyCAFile: "/nonexistent/ca.crt"},
			[]string{"cannot read the CA file of the AKS token proxy " + pe.proxy.URL(), "/nonexistent/ca.crt"}, 0},
		{"server name not computable", Options{TokenProxyURL: pe.em.URL(), TokenProxyCAFile: pe.caFile},
			[]string{"cannot compute the TLS server name of the AKS token proxy " + pe.em.URL(), "set --sni-name", "hcp-kubernetes."}, 0},
		{"wrong server name, computed", Options{TokenProxyURL: pe.proxy.URL(), TokenProxyCAFile: wrongCA},
			[]string{"cannot compute the TLS server name of the AKS token proxy " + pe.proxy.URL(), "CA file " + wrongCA}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(pe.proxy.Requests())
			start := time.Now()
			err := pe.getToken(t, tt.o)
			if err == nil {
				t.Fatal("GetToken succeeded")
			}
			t.Logf("%v", err)
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			var pe2 *TokenProxyError
			if !errors.As(err, &pe2) {
				t.Errorf("error is not a *TokenProxyError: %T", err)
			}
			if strings.Contains(err.Error(), pe.token) {
				t.Error("the error contains the service account token")
			}
			if n := len(pe.proxy.Requests()) - before; n > tt.requests {
				t.Errorf("the proxy saw %d requests", n)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %s", d)
			}
		})
	}
	for _, raw := range []string{"http://127.0.0.1:1", "https://u:p@127.0.0.1:1", "https://127.0.0.1:1/?q=1", "https://127.0.0.1:1/#f", "https://"} {
		a := &Assertion{}
		_, err := NewCredential(config.Identity{Mode: config.IdentityBinding, ClientID: ibUAMI, Token: pe.token}, ibTenant, publicCloud, a, Options{TokenProxyURL: raw})
		if err == nil || !strings.Contains(err.Error(), "--token-proxy-url") {
			t.Errorf("token proxy URL %q: %v", raw, err)
		}
	}
}

// TestTokenProxyCARotation: the CA file is read again on each token request.
func TestTokenProxyCARotation(t *testing.T) {
	t.Parallel()
	pe := newProxyEnv(t)
	other, err := emulator.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, other.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	o := Options{TokenProxyURL: pe.proxy.URL(), TokenProxySNI: pe.proxy.ServerName(), TokenProxyCAFile: ca}
	if err := pe.getToken(t, o); err == nil || !strings.Contains(err.Error(), "not signed by a CA") {
		t.Fatalf("with another CA: %v", err)
	}
	if err := os.WriteFile(ca, pe.em.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := pe.getToken(t, o); err != nil {
		t.Fatalf("after the CA file changed: %v", err)
	}
}
