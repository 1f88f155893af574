package emulator

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// IdentityBindingAudience is the audience of the service account tokens the AKS token proxy
// exchanges.
const IdentityBindingAudience = "api://AKSIdentityBinding"

// DefaultClusterID names the emulated AKS cluster of a token proxy.
const DefaultClusterID = "kv-emulator"

// TokenProxyServerName is the token proxy's TLS server name for a cluster ID, computed as AKS and
// Azure's provider do: "a" + base32hex(sha256("identity-binding" + id)), lower case, no padding,
// + ".ests.aks".
func TokenProxyServerName(clusterID string) string {
	sum := sha256.Sum256([]byte("identity-binding" + clusterID))
	return strings.ToLower("a" + base32.HexEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:]) + ".ests.aks")
}

// IdentityBinding lets one service account use one managed identity through the token proxy. It
// stands for what AKS needs: an IdentityBinding resource for the identity and a ClusterRole with
// verb use-managed-identity on cid.wi.aks.azure.com/<client ID> bound to the service account.
// The single federated credential AKS adds to the identity is implied.
type IdentityBinding struct {
	// ClientID of a user-assigned managed identity of the seed.
	ClientID string `json:"clientID"`
	// Subject is the service account: system:serviceaccount:<namespace>:<name>.
	Subject string `json:"subject"`
}

// TokenProxyOptions configure StartTokenProxy.
type TokenProxyOptions struct {
	// Addr is the loopback listen address; default 127.0.0.1:0.
	Addr string
	// ClusterID is carried by the API server certificate served to other server names, as the
	// SAN hcp-kubernetes.<ClusterID>.svc.cluster.local; default DefaultClusterID.
	ClusterID string
	// ServerName is the TLS server name (SNI) of the proxy; default TokenProxyServerName(ClusterID).
	ServerName string
	// Bindings are the service accounts allowed to use each identity.
	Bindings []IdentityBinding
	// CA issues the proxy's certificates; default the emulator's CA. On AKS the proxy is trusted
	// through the cluster CA (LoadCA).
	CA *CA
}

// ProxiedRequest is what the token proxy received.
type ProxiedRequest struct {
	ServerName string // TLS SNI
	Method     string
	Host       string
	Path       string
	RawQuery   string
	Header     http.Header
	Form       url.Values // the body of a token request
	Status     int
}

// TokenProxy emulates the AKS token proxy of identity binding on its own loopback TLS port. A
// connection with the proxy's server name reaches the proxy: Entra ID requests are answered as
// the emulator's Entra ID answers them, and token requests are checked as AKS does (a pod's
// service account token for IdentityBindingAudience from a trusted issuer, and a binding of its
// service account to the identity) before the emulator's Entra ID issues the identity's token.
// Any other server name reaches an emulated API server that only presents its certificate (with
// the cluster ID) and refuses every request.
type TokenProxy struct {
	e          *Emulator
	ln         net.Listener
	srv        *http.Server
	serverName string
	clusterID  string
	bindings   map[string]map[string]bool // lower-case client ID -> subjects

	mu       sync.Mutex
	requests []ProxiedRequest

	closeOnce sync.Once
	done      chan struct{}
}

const maxProxiedRequests = 256

// StartTokenProxy starts a token proxy in front of e's Entra ID. Its certificates are issued by
// o.CA, else e's CA. Close it with Close (Emulator.Close does not).
func (e *Emulator) StartTokenProxy(o TokenProxyOptions) (*TokenProxy, error) {
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if err := checkLoopback(o.Addr); err != nil {
		return nil, err
	}
	if o.ClusterID == "" {
		o.ClusterID = DefaultClusterID
	}
	if o.ServerName == "" {
		o.ServerName = TokenProxyServerName(o.ClusterID)
	}
	p := &TokenProxy{e: e, serverName: strings.ToLower(o.ServerName), clusterID: o.ClusterID,
		bindings: map[string]map[string]bool{}, done: make(chan struct{})}
	for _, b := range o.Bindings {
		if b.ClientID == "" || b.Subject == "" {
			return nil, fmt.Errorf("identity binding %+v: clientID and subject are required", b)
		}
		id := strings.ToLower(b.ClientID)
		if p.bindings[id] == nil {
			p.bindings[id] = map[string]bool{}
		}
		p.bindings[id][b.Subject] = true
	}
	ca := o.CA
	if ca == nil {
		ca = e.ca
	}
	proxyCert, err := ca.serverCert([]string{p.serverName})
	if err != nil {
		return nil, err
	}
	apiCert, err := ca.serverCert([]string{"kubernetes", "kubernetes.default", "kubernetes.default.svc",
		"kubernetes.default.svc.cluster.local", "hcp-kubernetes." + o.ClusterID + ".svc.cluster.local",
		"127.0.0.1", "::1", "localhost"})
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"},
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if strings.EqualFold(h.ServerName, p.serverName) {
				return &proxyCert, nil
			}
			return &apiCert, nil
		}}
	tcp, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", o.Addr, err)
	}
	p.ln = tls.NewListener(tcp, cfg)
	p.srv = &http.Server{Handler: http.HandlerFunc(p.serve), ReadHeaderTimeout: 30 * time.Second, ErrorLog: discardLog()}
	go func() {
		defer close(p.done)
		if err := p.srv.Serve(p.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			e.logf("kv-emulator: token proxy: serve: %v", err)
		}
	}()
	e.logf("kv-emulator: token proxy on %s, server name %s", p.URL(), p.serverName)
	return p, nil
}

// URL is the proxy's address, https://127.0.0.1:PORT (--token-proxy-url).
func (p *TokenProxy) URL() string { return "https://" + p.ln.Addr().String() }

// ServerName is the TLS server name the proxy requires (--sni-name).
func (p *TokenProxy) ServerName() string { return p.serverName }

// ClusterID is the cluster ID in the API server certificate.
func (p *TokenProxy) ClusterID() string { return p.clusterID }

// Requests returns what the proxy received (the newest 256), oldest first.
func (p *TokenProxy) Requests() []ProxiedRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]ProxiedRequest(nil), p.requests...)
}

// Close stops the proxy.
func (p *TokenProxy) Close() error {
	var err error
	p.closeOnce.Do(func() {
		err = p.srv.Close()
		<-p.done
	})
	return err
}

func (p *TokenProxy) serve(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w}
	sni := ""
	if r.TLS != nil {
		sni = r.TLS.ServerName
	}
	pr := ProxiedRequest{ServerName: sni, Method: r.Method, Host: r.Host, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: r.Header.Clone()}
	defer func() {
		pr.Status = rec.code()
		p.mu.Lock()
		if len(p.requests) >= maxProxiedRequests {
			p.requests = p.requests[1:]
		}
		p.requests = append(p.requests, pr)
		p.mu.Unlock()
		p.e.logf("kv-emulator: token proxy %s https://%s%s (server name %q) -> %d", r.Method, r.Host, r.URL.Path, sni, rec.code())
	}()
	if !strings.EqualFold(sni, p.serverName) {
		// The API server behind the same address: it has nothing for Entra ID requests.
		writeJSON(rec, http.StatusForbidden, map[string]any{
			"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": http.StatusForbidden,
			"message": fmt.Sprintf("kv-emulator API server: this is not the token proxy (TLS server name %q; the token proxy's is %q)", sni, p.serverName),
		})
		return
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) == 4 && parts[1] == "oauth2" && parts[2] == "v2.0" && parts[3] == "token" {
		p.serveToken(rec, r, parts[0], &pr)
		return
	}
	// OIDC discovery and the rest, answered for the authority host the client asked for (Host).
	p.e.serveEntra(rec, r)
}

// serveToken checks a token request as AKS's proxy does, then issues the identity's token.
func (p *TokenProxy) serveToken(w http.ResponseWriter, r *http.Request, tenant string, pr *ProxiedRequest) {
	e := p.e
	f, ok := e.acceptTokenRequest(w, r)
	pr.Form = f
	if !ok {
		return
	}
	clientID := f.Get("client_id")
	switch {
	case f.Get("client_assertion") == "":
		aadError(w, http.StatusUnauthorized, "invalid_client", 7000218,
			"The request body must contain the following parameter: 'client_assertion'. The AKS token proxy exchanges service account tokens only.")
		return
	case f.Get("client_assertion_type") != jwtBearer:
		aadError(w, http.StatusBadRequest, "invalid_request", 7000216, "'client_assertion_type' must be "+jwtBearer+".")
		return
	}
	aud, ok := audienceOf(f.Get("scope"))
	if !ok {
		aadError(w, http.StatusBadRequest, "invalid_scope", 1002012, fmt.Sprintf(
			"The provided value for scope %s is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).", f.Get("scope")))
		return
	}
	sub, ae := e.verifyServiceAccountToken(f.Get("client_assertion"))
	if ae != nil {
		aadError(w, ae.status, ae.code, ae.aadsts, ae.msg)
		return
	}
	mi := e.miByID[strings.ToLower(clientID)]
	switch {
	case mi == nil || !strings.EqualFold(mi.ClientID, clientID):
		if e.sps[strings.ToLower(clientID)] != nil {
			proxyDenied(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf(
				"identity bindings are for user-assigned managed identities, and %s is an application: use workload identity for it", clientID))
			return
		}
		aadError(w, http.StatusBadRequest, "unauthorized_client", 700016, fmt.Sprintf(
			"Application with identifier '%s' was not found in the directory '%s'.", clientID, tenant))
		return
	case !strings.EqualFold(mi.TenantID, tenant):
		aadError(w, http.StatusBadRequest, "unauthorized_client", 700016, fmt.Sprintf(
			"Application with identifier '%s' was not found in the directory '%s'.", clientID, tenant))
		return
	case mi.SystemAssigned:
		proxyDenied(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf(
			"identity bindings are for user-assigned managed identities, and %s is system-assigned", clientID))
		return
	case !p.bindings[strings.ToLower(clientID)][sub]:
		proxyDenied(w, http.StatusForbidden, "unauthorized_client", fmt.Sprintf(
			"service account %s may not use managed identity %s: create an identity binding for the identity in this cluster "+
				"and bind a ClusterRole with verb use-managed-identity on cid.wi.aks.azure.com/%s to the service account", sub, clientID, clientID))
		return
	}
	e.writeAccessToken(w, mi.TenantID, mi.ClientID, aud)
}

// proxyDenied is a refusal of the token proxy itself, in Entra ID's error shape without an
// AADSTS code.
func proxyDenied(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]any{"error": code, "error_description": "AKS token proxy: " + desc})
}

// verifyServiceAccountToken checks a pod's token as the token proxy does: signed by a trusted
// issuer, within its lifetime, for IdentityBindingAudience. It returns the token's subject.
func (e *Emulator) verifyServiceAccountToken(raw string) (string, *assertionError) {
	iss, sub, aud, aerr := unverifiedClaims(raw)
	if aerr != nil {
		return "", aerr
	}
	if aerr := e.checkIssuerSignature(raw, iss); aerr != nil {
		return "", aerr
	}
	switch {
	case !containsExact(aud, IdentityBindingAudience):
		return "", &assertionError{400, "invalid_request", 700212, fmt.Sprintf(
			"No matching federated identity record found for presented assertion audience '%s'. The AKS token proxy accepts only tokens for %s.",
			strings.Join(aud, ","), IdentityBindingAudience)}
	case sub == "":
		return "", &assertionError{400, "invalid_request", 50027, "JWT token has no subject."}
	}
	return sub, nil
}

// WriteState writes {"url","serverName","clusterID"} of the proxy to path (mode 0644), for the
// scripts that start the provider with --token-proxy-url and --sni-name.
func (p *TokenProxy) WriteState(path string) error {
	b, err := json.MarshalIndent(map[string]string{"url": p.URL(), "serverName": p.ServerName(), "clusterID": p.ClusterID()}, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'), 0o644)
}
