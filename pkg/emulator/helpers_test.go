package emulator

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azcertificates"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"
)

const (
	tenant1  = "aaaaaaaa-0000-0000-0000-000000000001"
	tenant2  = "bbbbbbbb-0000-0000-0000-000000000002"
	vault1   = "kv-conf"
	spSec    = "c0000000-0000-0000-0000-00000000000a" // client secret, all types
	spFed    = "c0000000-0000-0000-0000-00000000000b" // federated, all types
	spNone   = "c0000000-0000-0000-0000-00000000000c" // no grants
	spOne    = "c0000000-0000-0000-0000-00000000000d" // only secret s1
	spT2     = "c0000000-0000-0000-0000-00000000000e" // in tenant2
	spSecret = "sp-secret-value"
)

func ptr[T any](v T) *T { return &v }

// testSeed is the shared conformance seed. PageSize 2 makes every list page.
func testSeed() *Seed {
	t0 := time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)
	at := func(h int) *time.Time { t := t0.Add(time.Duration(h) * time.Hour); return &t }
	all := []string{"secret", "key", "certificate"}
	return &Seed{
		TenantID: tenant1,
		PageSize: 2,
		Vaults: []Vault{
			{Name: vault1, Secrets: []Secret{
				{Name: "s1", Versions: []SecretVersion{
					{Value: "v1", Created: at(0)}, {Value: "v2", Created: at(1)}, {Value: "v3", Created: at(2), Enabled: ptr(false)},
					{Value: "v4", Created: at(3)}, {Value: "v5", ContentType: "text/plain", Created: at(4), Tags: map[string]string{"k": "v"}},
				}},
				{Name: "disabled-latest", Versions: []SecretVersion{{Value: "a"}, {Value: "b", Enabled: ptr(false)}}},
				{Name: "rotating", Versions: []SecretVersion{{Value: "r1"}}},
				{Name: "windowed", Versions: []SecretVersion{{Value: "w1", Tags: map[string]string{"team": "a", "env": "prod"},
					NotBefore: at(-24), Expires: at(24 * 365)}}},
			}, Keys: []Key{
				{Name: "rsa", Kty: "RSA", Versions: 2},
				{Name: "ec", Kty: "EC", Curve: "P-384", Tags: map[string]string{"use": "sign"}},
				{Name: "hsm", Kty: "RSA-HSM"},
				{Name: "ec-hsm", Kty: "EC-HSM"},
				{Name: "sym", Kty: "oct"},
			}, Certificates: []Certificate{
				{Name: "pfx", Subject: "pfx.example.test", Versions: 2},
				{Name: "pem", ContentType: ContentTypePEM, KeyType: "EC", Chain: []string{"root", "leaf", "intermediate"}},
				{Name: "noexport", Exportable: ptr(false)},
				{Name: "pem-noexport", ContentType: ContentTypePEM, Exportable: ptr(false), Chain: []string{"leaf", "root"}, Tags: map[string]string{"team": "a"}},
			}},
			{Name: "kv-t2", TenantID: tenant2, Secrets: []Secret{{Name: "x", Versions: []SecretVersion{{Value: "t2"}}}}},
		},
		ServicePrincipals: []ServicePrincipal{
			{ClientID: spSec, Secrets: []string{spSecret}},
			{ClientID: spFed, Federated: []FederatedCredential{{Issuer: BuiltinIssuer, Subject: "system:serviceaccount:ns1:sa1"}}},
			{ClientID: spNone, Secrets: []string{spSecret}},
			{ClientID: spOne, Secrets: []string{spSecret}},
			{ClientID: spT2, TenantID: tenant2, Secrets: []string{spSecret}},
		},
		ManagedIdentities: []ManagedIdentity{
			{ClientID: "mi-system", SystemAssigned: true},
			{ClientID: "mi-imds"}, {ClientID: "mi-appsvc"}, {ClientID: "mi-nogrant"},
		},
		Grants: []Grant{
			{Identity: spSec, Vault: vault1, Types: all},
			{Identity: spFed, Vault: vault1, Types: all},
			{Identity: spOne, Vault: vault1, Types: []string{"secret"}, Names: []string{"s1"}},
			{Identity: spT2, Vault: "kv-t2"},
			{Identity: "mi-system", Vault: vault1},
			{Identity: "mi-imds", Vault: vault1},
			{Identity: "mi-appsvc", Vault: vault1},
		},
	}
}

var (
	sharedOnce sync.Once
	sharedEm   *Emulator
	sharedErr  error
)

// shared returns the emulator used by the read-only tests.
func shared(t *testing.T) *Emulator {
	t.Helper()
	sharedOnce.Do(func() { sharedEm, sharedErr = Start(Options{Seed: testSeed()}) })
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return sharedEm
}

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedEm != nil {
		_ = sharedEm.Close()
	}
	os.Exit(code)
}

func start(t *testing.T, s *Seed) *Emulator {
	t.Helper()
	e, err := Start(Options{Seed: s, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// httpClient trusts the emulator CA and proxies like HTTPS_PROXY would:
// everything except loopback goes through the emulator's proxy.
func httpClient(t *testing.T, e *Emulator) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(e.CACertPEM()) {
		t.Fatal("bad CA PEM")
	}
	proxy, err := url.Parse(e.ProxyURL())
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{
		Proxy: func(r *http.Request) (*url.URL, error) {
			h := r.URL.Hostname()
			if ip := net.ParseIP(h); (ip != nil && ip.IsLoopback()) || h == "localhost" {
				return nil, nil
			}
			return proxy, nil
		},
		// Never resolve client-requested names: everything non-loopback
		// must go through the proxy.
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, _ := net.SplitHostPort(addr)
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				return nil, &net.OpError{Op: "dial", Net: network, Err: errRefused{addr}}
			}
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
		TLSClientConfig: &tls.Config{RootCAs: pool},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

type errRefused struct{ addr string }

func (e errRefused) Error() string { return "test transport refuses non-loopback dial to " + e.addr }

func fastRetry() policy.RetryOptions {
	return policy.RetryOptions{MaxRetries: 3, RetryDelay: 5 * time.Millisecond, MaxRetryDelay: 2 * time.Second}
}

func clientOpts(hc *http.Client) azcore.ClientOptions {
	return azcore.ClientOptions{Transport: hc, Retry: fastRetry()}
}

// customCloud is the AzureStackCloud route: Entra at e.URL() directly.
func customCloud(e *Emulator, hc *http.Client) azcore.ClientOptions {
	o := clientOpts(hc)
	o.Cloud = cloud.Configuration{ActiveDirectoryAuthorityHost: e.URL() + "/", Services: map[cloud.ServiceName]cloud.ServiceConfiguration{}}
	return o
}

func secretCred(t *testing.T, o azcore.ClientOptions, tenant, client, secret string, disableDiscovery bool) *azidentity.ClientSecretCredential {
	t.Helper()
	c, err := azidentity.NewClientSecretCredential(tenant, client, secret,
		&azidentity.ClientSecretCredentialOptions{ClientOptions: o, DisableInstanceDiscovery: disableDiscovery})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func publicVault(name string) string { return "https://" + name + ".vault.azure.net" }
func customVault(e *Emulator, name string) string {
	return "https://" + name + "." + e.KeyVaultDNSSuffix()
}

func secretsClient(t *testing.T, vaultURL string, cred azcore.TokenCredential, o azcore.ClientOptions) *azsecrets.Client {
	t.Helper()
	c, err := azsecrets.NewClient(vaultURL, cred, &azsecrets.ClientOptions{ClientOptions: o})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func keysClient(t *testing.T, vaultURL string, cred azcore.TokenCredential, o azcore.ClientOptions) *azkeys.Client {
	t.Helper()
	c, err := azkeys.NewClient(vaultURL, cred, &azkeys.ClientOptions{ClientOptions: o})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func certsClient(t *testing.T, vaultURL string, cred azcore.TokenCredential, o azcore.ClientOptions) *azcertificates.Client {
	t.Helper()
	c, err := azcertificates.NewClient(vaultURL, cred, &azcertificates.ClientOptions{ClientOptions: o})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func token(t *testing.T, cred azcore.TokenCredential, scope string) string {
	t.Helper()
	tok, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{scope}})
	if err != nil {
		t.Fatal(err)
	}
	return tok.Token
}

type rawResp struct {
	status int
	header http.Header
	body   []byte
}

func (r rawResp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return m
}

func do(t *testing.T, hc *http.Client, method, u, bearer string, hdr map[string]string, body io.Reader) rawResp {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return rawResp{resp.StatusCode, resp.Header, b}
}

// errorCode digs error.code and error.innererror.code out of a KV error body.
func errorCodes(t *testing.T, r rawResp) (string, string, string) {
	t.Helper()
	var body struct {
		Error struct {
			Code       string `json:"code"`
			Message    string `json:"message"`
			InnerError *struct {
				Code string `json:"code"`
			} `json:"innererror"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Fatalf("decode error body %q: %v", r.body, err)
	}
	inner := ""
	if body.Error.InnerError != nil {
		inner = body.Error.InnerError.Code
	}
	return body.Error.Code, inner, body.Error.Message
}

func mustContain(t *testing.T, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%q does not contain %q", s, sub)
		}
	}
}
