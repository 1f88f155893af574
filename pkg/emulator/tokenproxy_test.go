package emulator

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/akv-csi/provider/pkg/auth"
	azcloud "github.com/akv-csi/provider/pkg/cloud"
	"github.com/akv-csi/provider/pkg/config"
)

const (
	ibUAMI    = "mi-imds" // user-assigned, granted on vault1
	ibSubject = "system:serviceaccount:ns1:ib-sa"
	vaultRes  = "https://vault.azure.net"
)

func startTokenProxy(t *testing.T, e *Emulator, o TokenProxyOptions) *TokenProxy {
	t.Helper()
	p, err := e.StartTokenProxy(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// proxyClient talks to the token proxy with a TLS server name, trusting the emulator's CA.
func proxyClient(t *testing.T, e *Emulator, serverName string) *http.Client {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.CA().Pool(), ServerName: serverName}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// tokenForm is the body MSAL Go sends for a client assertion (wire §6.4).
func tokenForm(clientID, assertion string) url.Values {
	return url.Values{
		"client_assertion":      {assertion},
		"client_assertion_type": {jwtBearer},
		"client_id":             {clientID},
		"client_info":           {"1"},
		"grant_type":            {"client_credentials"},
		"scope":                 {vaultRes + "/.default openid offline_access profile"},
	}
}

func postForm(t *testing.T, hc *http.Client, u, host string, form url.Values) rawResp {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
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

// signSA signs a service account token for BuiltinIssuer (or with key, for an unknown issuer).
func signSA(t *testing.T, e *Emulator, key *rsa.PrivateKey, sub string, aud []string, exp time.Time) string {
	t.Helper()
	if key == nil {
		key = e.issuerKey
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": BuiltinIssuer, "sub": sub, "aud": aud, "iat": time.Now().Unix(), "nbf": time.Now().Add(-time.Minute).Unix(), "exp": exp.Unix(),
	})
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestTokenProxyServerNameAndCertificates: the proxy's certificate only for its server name; any
// other name (or none) gets the API server's certificate, whose cluster ID gives the proxy's
// server name as Azure's provider computes it; the API server refuses Entra ID requests.
func TestTokenProxyServerNameAndCertificates(t *testing.T) {
	t.Parallel()
	e := shared(t)
	p := startTokenProxy(t, e, TokenProxyOptions{ClusterID: "cluster-42"})
	if got, want := p.ServerName(), auth.TokenProxyServerName("cluster-42"); got != want {
		t.Errorf("ServerName = %q, want the provider's computation %q", got, want)
	}
	if !strings.HasPrefix(p.ServerName(), "a") || !strings.HasSuffix(p.ServerName(), ".ests.aks") || len(p.ServerName()) != 1+52+9 {
		t.Errorf("ServerName %q is not a<52 base32hex>.ests.aks", p.ServerName())
	}
	for _, id := range []string{"", "x", DefaultClusterID, "0123456789abcdef"} {
		if TokenProxyServerName(id) != auth.TokenProxyServerName(id) {
			t.Errorf("server name of %q differs between the emulator and the provider", id)
		}
	}
	addr := strings.TrimPrefix(p.URL(), "https://")
	leaf := func(serverName string) *x509.Certificate {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: e.CA().Pool(), ServerName: serverName})
		if err != nil {
			t.Fatalf("TLS with server name %q: %v", serverName, err)
		}
		defer func() { _ = conn.Close() }()
		return conn.ConnectionState().PeerCertificates[0]
	}
	if c := leaf(p.ServerName()); !cmp.Equal(c.DNSNames, []string{p.ServerName()}) {
		t.Errorf("proxy certificate names %v", c.DNSNames)
	}
	// No server name (an IP address is never sent): the API server's certificate.
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: e.CA().Pool()})
	if err != nil {
		t.Fatal(err)
	}
	api := conn.ConnectionState().PeerCertificates[0]
	_ = conn.Close()
	if !containsExact(api.DNSNames, "hcp-kubernetes.cluster-42.svc.cluster.local") || !containsExact(api.DNSNames, "kubernetes.default.svc.cluster.local") {
		t.Errorf("API server certificate names %v", api.DNSNames)
	}
	// A wrong server name fails certificate verification on the client, as with AKS.
	if _, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: e.CA().Pool(), ServerName: "wrong.ests.aks"}); err == nil ||
		!strings.Contains(err.Error(), "not wrong.ests.aks") {
		t.Errorf("TLS with a wrong server name: %v, want a certificate name mismatch", err)
	}
	// A name the API server's certificate covers reaches the API server, which refuses.
	r := postForm(t, proxyClient(t, e, "kubernetes.default.svc"), p.URL()+"/"+tenant1+"/oauth2/v2.0/token", "login.microsoftonline.com",
		tokenForm(ibUAMI, "x"))
	if r.status != http.StatusForbidden {
		t.Errorf("API server answered %d %s", r.status, r.body)
	}
	mustContain(t, string(r.body), `"kind":"Status"`, `TLS server name \"kubernetes.default.svc\"`, p.ServerName())
}

// TestTokenProxyChecks drives the proxy's token endpoint the way MSAL does and checks every
// refusal, then that Key Vault accepts the token it issues.
func TestTokenProxyChecks(t *testing.T) {
	t.Parallel()
	e := start(t, testSeed())
	p := startTokenProxy(t, e, TokenProxyOptions{Bindings: []IdentityBinding{{ClientID: ibUAMI, Subject: ibSubject}}})
	hc := proxyClient(t, e, p.ServerName())
	tokenURL := p.URL() + "/" + tenant1 + "/oauth2/v2.0/token"
	good := signSA(t, e, nil, ibSubject, []string{IdentityBindingAudience}, time.Now().Add(time.Hour))
	stranger, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	secretForm := url.Values{"client_id": {ibUAMI}, "client_secret": {"x"}, "grant_type": {"client_credentials"}, "scope": {vaultRes + "/.default"}}
	tests := []struct {
		name   string
		url    string
		form   url.Values
		status int
		want   []string
	}{
		{"bound service account", tokenURL, tokenForm(ibUAMI, good), 200, []string{`"token_type":"Bearer"`, `"expires_in":3599`}},
		{"workload identity audience", tokenURL,
			tokenForm(ibUAMI, signSA(t, e, nil, ibSubject, []string{DefaultFederatedAudience}, time.Now().Add(time.Hour))), 400,
			[]string{"AADSTS700212", "audience 'api://AzureADTokenExchange'"}},
		{"unbound service account", tokenURL,
			tokenForm(ibUAMI, signSA(t, e, nil, "system:serviceaccount:ns1:other", []string{IdentityBindingAudience}, time.Now().Add(time.Hour))), 403,
			[]string{"AKS token proxy: service account system:serviceaccount:ns1:other may not use managed identity " + ibUAMI, "use-managed-identity"}},
		{"expired token", tokenURL,
			tokenForm(ibUAMI, signSA(t, e, nil, ibSubject, []string{IdentityBindingAudience}, time.Now().Add(-time.Hour))), 400, []string{"AADSTS700024"}},
		{"untrusted signer", tokenURL,
			tokenForm(ibUAMI, signSA(t, e, stranger, ibSubject, []string{IdentityBindingAudience}, time.Now().Add(time.Hour))), 401, []string{"AADSTS700027"}},
		{"not a JWT", tokenURL, tokenForm(ibUAMI, "nope"), 400, []string{"AADSTS50027"}},
		{"application, not a managed identity", tokenURL, tokenForm(spFed, good), 400, []string{"is an application"}},
		{"system-assigned identity", tokenURL, tokenForm("mi-system", good), 400, []string{"is system-assigned"}},
		{"unknown identity", tokenURL, tokenForm("mi-unknown", good), 400, []string{"AADSTS700016"}},
		{"identity in another tenant", p.URL() + "/" + tenant2 + "/oauth2/v2.0/token", tokenForm(ibUAMI, good), 400, []string{"AADSTS700016"}},
		{"client secret", tokenURL, secretForm, 401, []string{"AADSTS7000218"}},
		{"no .default scope", tokenURL, func() url.Values { f := tokenForm(ibUAMI, good); f.Set("scope", "openid"); return f }(), 400, []string{"AADSTS1002012"}},
	}
	for _, tt := range tests {
		r := postForm(t, hc, tt.url, "login.microsoftonline.com", tt.form)
		if r.status != tt.status {
			t.Errorf("%s: status %d %s, want %d", tt.name, r.status, r.body, tt.status)
			continue
		}
		mustContain(t, string(r.body), tt.want...)
		if strings.Contains(string(r.body), good) {
			t.Errorf("%s: the response echoes the service account token", tt.name)
		}
	}
	if c := e.Counters(); c.TokenRequestsByClient[ibUAMI] < 6 {
		t.Errorf("counters %+v: want the proxy's token requests counted for %s", c, ibUAMI)
	}

	// The issued token is the identity's: Key Vault serves it.
	r := postForm(t, hc, tokenURL, "login.microsoftonline.com", tokenForm(ibUAMI, good))
	access, _ := r.json(t)["access_token"].(string)
	kv := do(t, httpClient(t, e), http.MethodGet, publicVault(vault1)+"/secrets/s1?api-version=7.4", access, nil, nil)
	if kv.status != http.StatusOK {
		t.Errorf("Key Vault with the proxy's token: %d %s", kv.status, kv.body)
	}
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(access, claims); err != nil || claims["appid"] != ibUAMI || claims["aud"] != vaultRes || claims["tid"] != tenant1 {
		t.Errorf("access token claims %v (%v)", claims, err)
	}

	// Discovery through the proxy is answered for the authority host the client names.
	req, _ := http.NewRequest(http.MethodGet, p.URL()+"/"+tenant1+"/v2.0/.well-known/openid-configuration", nil)
	req.Host = "login.microsoftonline.com"
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var oidc struct {
		Issuer        string `json:"issuer"`
		TokenEndpoint string `json:"token_endpoint"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&oidc); err != nil || oidc.Issuer != "https://login.microsoftonline.com/"+tenant1+"/v2.0" ||
		oidc.TokenEndpoint != "https://login.microsoftonline.com/"+tenant1+"/oauth2/v2.0/token" {
		t.Errorf("openid-configuration through the proxy: %+v (%v)", oidc, err)
	}
	if _, err := e.StartTokenProxy(TokenProxyOptions{Addr: "0.0.0.0:0"}); err == nil {
		t.Error("the token proxy listened on a non-loopback address")
	}
	if _, err := e.StartTokenProxy(TokenProxyOptions{Bindings: []IdentityBinding{{ClientID: ibUAMI}}}); err == nil {
		t.Error("a binding without a subject was accepted")
	}
}

// TestTokenProxyConformance runs azidentity's own identity binding support
// (WorkloadIdentityCredential with EnableAzureProxy, configured by the AZURE_KUBERNETES_*
// variables as the AKS webhook sets them) against the proxy, records what it sends, and checks
// that the provider's credential for identity binding sends the same requests.
func TestTokenProxyConformance(t *testing.T) {
	e := start(t, testSeed())
	p := startTokenProxy(t, e, TokenProxyOptions{Bindings: []IdentityBinding{{ClientID: ibUAMI, Subject: ibSubject}}})
	sa := signSA(t, e, nil, ibSubject, []string{IdentityBindingAudience}, time.Now().Add(time.Hour))
	dir := t.TempDir()
	tokenFile, caFile := filepath.Join(dir, "token"), filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(tokenFile, []byte(sa), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.WriteCA(caFile); err != nil {
		t.Fatal(err)
	}
	// Only the SDK's proxy transport may carry these requests: a direct dial anywhere fails.
	noDirect := azcore.ClientOptions{Transport: &http.Client{Transport: &http.Transport{
		DialContext: func(_ context.Context, network, addr string) (net.Conn, error) {
			return nil, &net.OpError{Op: "dial", Net: network, Err: errRefused{addr}}
		}}}}

	// 1. The SDK, as an application pod on AKS would run it.
	t.Setenv("AZURE_KUBERNETES_TOKEN_PROXY", p.URL())
	t.Setenv("AZURE_KUBERNETES_SNI_NAME", p.ServerName())
	t.Setenv("AZURE_KUBERNETES_CA_FILE", caFile)
	sdk, err := azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
		ClientOptions: noDirect, ClientID: ibUAMI, TenantID: tenant1, TokenFilePath: tokenFile,
		EnableAzureProxy: true, DisableInstanceDiscovery: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	opts := policy.TokenRequestOptions{Scopes: []string{vaultRes + "/.default"}}
	if _, err := sdk.GetToken(ctx, opts); err != nil {
		t.Fatalf("azidentity with EnableAzureProxy: %v", err)
	}
	sdkReqs := p.Requests()

	// 2. The provider's credential, configured by its flags.
	a := &auth.Assertion{}
	a.Set(sa)
	env := azcloud.Environment{Name: config.AzurePublicCloud, AuthorityHost: "https://login.microsoftonline.com/", KeyVaultDNSSuffix: "vault.azure.net"}
	ours, err := auth.NewCredential(config.Identity{Mode: config.IdentityBinding, ClientID: ibUAMI, Token: sa}, tenant1, env, a,
		auth.Options{TokenProxyURL: p.URL(), TokenProxySNI: p.ServerName(), TokenProxyCAFile: caFile, Transport: noDirect.Transport})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ours.GetToken(ctx, opts); err != nil {
		t.Fatalf("provider credential: %v", err)
	}
	ourReqs := p.Requests()[len(sdkReqs):]

	// What the proxy receives from the SDK: MSAL's discovery GET and token POST, on the proxy's
	// server name, with the authority host as Host and the authority's paths (wire §6.1, §6.4).
	if len(sdkReqs) != 2 {
		t.Fatalf("the SDK sent %d requests, want discovery and token: %+v", len(sdkReqs), sdkReqs)
	}
	disc, tok := sdkReqs[0], sdkReqs[1]
	if disc.Method != http.MethodGet || disc.Path != "/"+tenant1+"/v2.0/.well-known/openid-configuration" || disc.Host != "login.microsoftonline.com" ||
		disc.ServerName != p.ServerName() || disc.Status != http.StatusOK {
		t.Errorf("discovery request %+v", disc)
	}
	if tok.Method != http.MethodPost || tok.Path != "/"+tenant1+"/oauth2/v2.0/token" || tok.Host != "login.microsoftonline.com" ||
		tok.ServerName != p.ServerName() || tok.RawQuery != "" || tok.Status != http.StatusOK {
		t.Errorf("token request %+v", tok)
	}
	if ct := tok.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded; charset=utf-8" {
		t.Errorf("token request Content-Type %q", ct)
	}
	if tok.Header.Get("X-Client-Sku") != "MSAL.Go" || tok.Header.Get("Authorization") != "" {
		t.Errorf("token request headers %v", tok.Header)
	}
	wantForm := tokenForm(ibUAMI, sa)
	if diff := cmp.Diff(wantForm, tok.Form); diff != "" {
		t.Errorf("token request body (-want +SDK):\n%s", diff)
	}

	// The provider sends the same requests.
	if len(ourReqs) != len(sdkReqs) {
		t.Fatalf("the provider sent %d requests, the SDK %d: %+v", len(ourReqs), len(sdkReqs), ourReqs)
	}
	for i := range sdkReqs {
		s, o := sdkReqs[i], ourReqs[i]
		if s.Method != o.Method || s.Path != o.Path || s.Host != o.Host || s.RawQuery != o.RawQuery || s.ServerName != o.ServerName || s.Status != o.Status {
			t.Errorf("request %d: SDK %s %s%s?%s (%q, %d), provider %s %s%s?%s (%q, %d)", i,
				s.Method, s.Host, s.Path, s.RawQuery, s.ServerName, s.Status, o.Method, o.Host, o.Path, o.RawQuery, o.ServerName, o.Status)
		}
		if diff := cmp.Diff(s.Form, o.Form); diff != "" {
			t.Errorf("request %d body (-SDK +provider):\n%s", i, diff)
		}
		if diff := cmp.Diff(headerNames(s.Header), headerNames(o.Header)); diff != "" {
			t.Errorf("request %d header names (-SDK +provider):\n%s", i, diff)
		}
		for _, h := range []string{"Content-Type", "X-Client-Sku", "Return-Client-Request-Id"} {
			if s.Header.Get(h) != o.Header.Get(h) {
				t.Errorf("request %d %s: SDK %q, provider %q", i, h, s.Header.Get(h), o.Header.Get(h))
			}
		}
	}
}

func headerNames(h http.Header) []string {
	var names []string
	for k := range h {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// TestTokenProxyWithLoadedCA: with a CA of the caller's (an RSA key in PKCS#1, as openssl
// writes a cluster CA), the proxy's certificate chains to that CA and not to the emulator's.
func TestTokenProxyWithLoadedCA(t *testing.T) {
	t.Parallel()
	e := shared(t)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "cluster-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	ca, err := LoadCA(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	p := startTokenProxy(t, e, TokenProxyOptions{ClusterID: "loaded", CA: ca})
	addr := strings.TrimPrefix(p.URL(), "https://")
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: p.ServerName()})
	if err != nil {
		t.Fatalf("TLS trusting only the loaded CA: %v", err)
	}
	_ = conn.Close()
	if _, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: e.CA().Pool(), ServerName: p.ServerName()}); err == nil {
		t.Error("the proxy's certificate verifies against the emulator's CA; want only the loaded CA")
	}
	// A leaf is not a CA.
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(8), Subject: pkix.Name{CommonName: "leaf"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, leafTmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}), keyPEM); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Errorf("LoadCA of a leaf: %v, want not a CA", err)
	}
}
