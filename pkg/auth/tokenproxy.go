package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base32"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// The AKS token proxy of identity binding, with Azure's provider's defaults
// (internal/identitybinding/identitybinding.go in Azure/secrets-store-csi-driver-provider-azure).
const (
	// DefaultTokenProxyURL is where the token proxy listens: the API server's in-cluster address,
	// reached with the proxy's own TLS server name.
	DefaultTokenProxyURL = "https://kubernetes.default.svc.cluster.local" //nolint:gosec // a URL, not a credential
	// DefaultTokenProxyCAFile is the service account CA; it is trusted for the proxy when it
	// exists, as Azure's provider does (otherwise the system roots are).
	DefaultTokenProxyCAFile = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt" //nolint:gosec // a path, not a credential
)

// TokenProxyServerName computes the token proxy's TLS server name from a cluster ID, as Azure's
// provider does when --sni-name is empty: "a" + base32hex(sha256("identity-binding" + id)),
// lower case without padding, + ".ests.aks".
func TokenProxyServerName(clusterID string) string {
	sum := sha256.Sum256([]byte("identity-binding" + clusterID))
	return strings.ToLower("a" + base32.HexEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:]) + ".ests.aks")
}

// The API server certificate's SAN that carries the cluster ID: hcp-kubernetes.<id>.svc.cluster.local.
const (
	clusterSANPrefix = "hcp-kubernetes."
	clusterSANSuffix = ".svc.cluster.local"
)

// tokenProxy sends Entra ID token requests to the AKS token proxy, as azidentity's
// WorkloadIdentityCredential does with EnableAzureProxy (internal/customtokenproxy): the request's
// path and query are kept and appended to the proxy URL, its Host header stays the authority's,
// TLS uses the proxy's server name and trusts the CA file, which is read again on every request so
// a rotated CA is picked up. Unlike the SDK it takes its settings from Options rather than from
// AZURE_KUBERNETES_* environment variables, so nothing process-wide changes, and one tokenProxy
// (one connection pool, one computed server name) serves every credential with the same settings.
type tokenProxy struct {
	url      *url.URL
	rawURL   string
	sni      string // configured server name; "" = computed from the proxy's certificate
	caFile   string // "" = the system roots
	caSource string // for messages

	mu        sync.Mutex
	computed  string
	caData    []byte
	transport *http.Transport
}

// tokenProxies keeps one tokenProxy per daemon setting (in practice one), so credentials share
// its connections and its computed server name. Keys come from daemon flags, never from a mount.
var tokenProxies = struct {
	sync.Mutex
	m map[[3]string]*tokenProxy
}{m: map[[3]string]*tokenProxy{}}

const maxTokenProxies = 16

// tokenProxyFor returns the token proxy of o's settings.
func tokenProxyFor(o Options) (*tokenProxy, error) {
	raw := strings.TrimSpace(o.TokenProxyURL)
	if raw == "" {
		raw = DefaultTokenProxyURL
	}
	caFile := o.TokenProxyCAFile
	if caFile == "" {
		if _, err := os.Stat(DefaultTokenProxyCAFile); err == nil {
			caFile = DefaultTokenProxyCAFile
		}
	}
	key := [3]string{raw, strings.TrimSpace(o.TokenProxySNI), caFile}
	tokenProxies.Lock()
	defer tokenProxies.Unlock()
	if p := tokenProxies.m[key]; p != nil {
		return p, nil
	}
	u, err := parseTokenProxyURL(raw)
	if err != nil {
		return nil, err
	}
	p := &tokenProxy{url: u, rawURL: raw, sni: key[1], caFile: caFile, caSource: "the system roots"}
	if caFile != "" {
		p.caSource = "CA file " + caFile
	}
	if len(tokenProxies.m) >= maxTokenProxies {
		for k := range tokenProxies.m {
			delete(tokenProxies.m, k)
			break
		}
	}
	tokenProxies.m[key] = p
	return p, nil
}

// parseTokenProxyURL applies the SDK's rules (customtokenproxy.parseAndValidate).
func parseTokenProxyURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	bad := func(why string) error {
		return fmt.Errorf("identity binding: token proxy URL %q (--token-proxy-url) %s", raw, why)
	}
	switch {
	case err != nil:
		return nil, bad("is not a URL")
	case u.Scheme != "https":
		return nil, bad("must use https")
	case u.Host == "":
		return nil, bad("has no host")
	case u.User != nil:
		return nil, bad("must not contain user info")
	case u.RawQuery != "":
		return nil, bad("must not contain a query")
	case u.Fragment != "":
		return nil, bad("must not contain a fragment")
	}
	if u.EscapedPath() == "" {
		u.Path = "/"
	}
	return u, nil
}

// proxyTransport is one credential's way to the token proxy. It remembers the last failure so the
// credential can report it: MSAL keeps only the text of a transport error, after a line break.
type proxyTransport struct {
	p *tokenProxy

	mu   sync.Mutex
	last error
	at   time.Time
}

// Do sends req to the token proxy.
func (t *proxyTransport) Do(req *http.Request) (*http.Response, error) {
	resp, err := t.p.do(req)
	if err != nil {
		t.mu.Lock()
		t.last, t.at = err, time.Now()
		t.mu.Unlock()
	}
	return resp, err
}

// failureSince returns the last failure if it happened at or after start.
func (t *proxyTransport) failureSince(start time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.last == nil || t.at.Before(start) {
		return nil
	}
	return t.last
}

// identityBindingCredential reports a token proxy failure as itself instead of as azidentity's
// multi-line message.
type identityBindingCredential struct {
	cred azcore.TokenCredential
	tr   *proxyTransport
}

func (c *identityBindingCredential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	start := time.Now()
	tok, err := c.cred.GetToken(ctx, opts)
	if err != nil {
		if perr := c.tr.failureSince(start); perr != nil {
			return tok, perr
		}
	}
	return tok, err
}

func (p *tokenProxy) do(req *http.Request) (*http.Response, error) {
	tr, sni, err := p.get(req.Context())
	if err != nil {
		return nil, err
	}
	out := req.Clone(req.Context()) // Host stays the authority host, as with the SDK
	out.URL = p.url.JoinPath(req.URL.EscapedPath())
	out.URL.RawQuery = req.URL.RawQuery
	resp, err := tr.RoundTrip(out)
	if err != nil {
		return nil, p.describe(err, sni)
	}
	if resp == nil {
		return nil, &TokenProxyError{msg: "identity binding: the transport to the AKS token proxy " + p.rawURL + " returned no response"}
	}
	return resp, nil
}

// get returns the transport for the current CA and the server name, computing it if needed.
func (p *tokenProxy) get(ctx context.Context) (*http.Transport, string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pool, err := p.poolLocked()
	if err != nil {
		return nil, "", err
	}
	sni := p.sni
	if sni == "" {
		if p.computed == "" {
			name, err := p.computeServerName(ctx, pool)
			if err != nil {
				return nil, "", err
			}
			p.computed = name
		}
		sni = p.computed
	}
	if p.transport == nil {
		p.transport = newProxyTransport(sni, pool)
	}
	return p.transport, sni, nil
}

// poolLocked reads the CA file and rebuilds the transport when it changed (nil pool: system roots).
func (p *tokenProxy) poolLocked() (*x509.CertPool, error) {
	if p.caFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(p.caFile)
	switch {
	case err != nil:
		return nil, fatalProxyErr(err, "identity binding: cannot read the CA file of the AKS token proxy %s: "+
			"mount the cluster's CA there (the service account CA, configMap kube-root-ca.crt)", p.rawURL)
	case len(b) == 0 && p.transport != nil:
		return p.transport.TLSClientConfig.RootCAs, nil // being rotated: keep the last one
	case len(b) == 0:
		return nil, proxyErr(nil, "identity binding: CA file %s of the AKS token proxy %s is empty", p.caFile, p.rawURL)
	}
	if p.transport != nil && bytes.Equal(b, p.caData) {
		return p.transport.TLSClientConfig.RootCAs, nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fatalProxyErr(nil, "identity binding: CA file %s of the AKS token proxy %s holds no PEM certificate", p.caFile, p.rawURL)
	}
	if p.transport != nil {
		p.transport.CloseIdleConnections()
		p.transport = nil
	}
	p.caData = b
	return pool, nil
}

func newProxyTransport(sni string, pool *x509.CertPool) *http.Transport {
	var t *http.Transport
	if dt, ok := http.DefaultTransport.(*http.Transport); ok {
		t = dt.Clone()
	} else {
		t = &http.Transport{Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true, MaxIdleConns: 100,
			IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 10 * time.Second}
	}
	t.TLSClientConfig = &tls.Config{ServerName: sni, RootCAs: pool, MinVersion: tls.VersionTLS12}
	return t
}

// computeServerName reads the cluster ID from the certificate the proxy's address serves without
// a server name (the API server's: SAN hcp-kubernetes.<id>.svc.cluster.local) and derives the
// proxy's server name from it, as Azure's provider does at startup when --sni-name is empty.
func (p *tokenProxy) computeServerName(ctx context.Context, pool *x509.CertPool) (string, error) {
	fail := func(err error) error {
		return fatalProxyErr(err, "identity binding: cannot compute the TLS server name of the AKS token proxy %s: "+
			"set --sni-name, or make its certificate (SAN %s<cluster ID>%s) readable and trusted through %s",
			p.rawURL, clusterSANPrefix, clusterSANSuffix, p.caSource)
	}
	host, port := p.url.Hostname(), p.url.Port()
	if port == "" {
		port = "443"
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	d := tls.Dialer{Config: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, port))
	if err != nil {
		return "", fail(err)
	}
	defer func() { _ = conn.Close() }()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return "", fail(errors.New("no certificate"))
	}
	for _, san := range certs[0].DNSNames {
		if id, ok := strings.CutPrefix(san, clusterSANPrefix); ok {
			if id, ok = strings.CutSuffix(id, clusterSANSuffix); ok && id != "" {
				return TokenProxyServerName(id), nil
			}
		}
	}
	return "", fail(fmt.Errorf("the certificate has no such SAN (it has %s)", strings.Join(certs[0].DNSNames, ", ")))
}

// describe turns a transport error into one that names the proxy and the server name and says
// what to check, first: callers keep only the start of a long message.
func (p *tokenProxy) describe(err error, sni string) error {
	var (
		hostErr   x509.HostnameError
		unknownCA x509.UnknownAuthorityError
		verifyErr *tls.CertificateVerificationError
		check     = "--sni-name"
	)
	if p.sni == "" {
		check = "--sni-name (empty: computed from the API server's certificate)"
	}
	switch {
	case errors.As(err, &hostErr):
		return fatalProxyErr(err, "identity binding: the certificate of the AKS token proxy %s is not valid for TLS server name %q: check %s",
			p.rawURL, sni, check)
	case errors.As(err, &unknownCA), errors.As(err, &verifyErr):
		return fatalProxyErr(err, "identity binding: the certificate of the AKS token proxy %s (TLS server name %q) is not signed by a CA in %s: "+
			"trust the cluster's CA (the service account CA)", p.rawURL, sni, p.caSource)
	case strings.Contains(err.Error(), "remote error: tls"):
		return fatalProxyErr(err, "identity binding: the AKS token proxy %s refused TLS server name %q: check %s", p.rawURL, sni, check)
	}
	return proxyErr(err, "identity binding: cannot reach the AKS token proxy %s (TLS server name %q): "+
		"check --token-proxy-url and that the node can reach it (the API server's address)", p.rawURL, sni)
}

// TokenProxyError is a failure to use the AKS token proxy of identity binding: unreachable,
// untrusted, a wrong server name, or a CA file that cannot be read. Its message names the proxy
// URL and the TLS server name and says what to check.
type TokenProxyError struct {
	msg string
	err error
}

func (e *TokenProxyError) Error() string {
	if e.err == nil {
		return e.msg
	}
	return e.msg + ": " + e.err.Error()
}

func (e *TokenProxyError) Unwrap() error { return e.err }

// proxyErr is a retriable TokenProxyError.
func proxyErr(err error, format string, args ...any) error {
	return &TokenProxyError{msg: fmt.Sprintf(format, args...), err: err}
}

// fatalProxyErr is a TokenProxyError that azcore does not retry.
func fatalProxyErr(err error, format string, args ...any) error {
	return nonRetriable{&TokenProxyError{msg: fmt.Sprintf(format, args...), err: err}}
}

// nonRetriable stops azcore's retries (it matches azcore's errorinfo.NonRetriable): a wrong
// server name or CA does not fix itself between tries.
type nonRetriable struct{ error }

func (e nonRetriable) Unwrap() error { return e.error }

// NonRetriable marks the error as not worth retrying.
func (nonRetriable) NonRetriable() {}
