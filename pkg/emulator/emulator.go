// Package emulator is a loopback emulator of the Azure Key Vault data plane,
// Entra ID (OIDC discovery and the v2.0 token endpoint) and the managed
// identity endpoints (IMDS and App Service), good enough for the official
// Go SDK clients to run unmodified against it.
//
// It listens on two loopback ports: a TLS port (URL) serving Entra ID and,
// selected by Host header, the vaults; and a plain-HTTP port (ProxyURL) that
// is an HTTPS_PROXY/HTTP_PROXY for the emulated hosts only, the IMDS and App
// Service managed identity endpoints, and the /admin API. It never dials out.
package emulator

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Options configure Start.
type Options struct {
	Seed      *Seed  // nil = SampleSeed()
	CA        *CA    // nil = a new CA
	Addr      string // TLS listener; default 127.0.0.1:0
	ProxyAddr string // proxy/MI/admin listener; default 127.0.0.1:0
	Logf      func(format string, args ...any)
}

// Emulator is a running emulator. All methods are safe for concurrent use.
type Emulator struct {
	seed   *Seed
	ca     *CA
	src    source
	suffix string
	logf   func(string, ...any)

	tokenKey  *rsa.PrivateKey // signs access tokens
	tokenKid  string
	issuerKey *rsa.PrivateKey // BuiltinIssuer's service-account signing key
	issuerKid string
	issuers   map[string][]crypto.PublicKey // trusted assertion issuers, by URL
	sps       map[string]*ServicePrincipal  // by lower-case client ID
	tenants   map[string]bool               // lower-case tenants that exist

	mu       sync.RWMutex // guards the vaults' content and grants
	vaultsMu sync.RWMutex // guards the vaults map itself (AddVault adds to it while requests read it)
	vaults   map[string]*vaultState
	grants   []Grant
	miByID   map[string]*ManagedIdentity // client, object and resource IDs, lower case
	systemMI *ManagedIdentity

	stats    stats
	requests requestLog // what each client sent, for GET /admin/requests

	tlsLn, proxyLn net.Listener
	connectLn      *chanListener
	tlsSrv         *http.Server
	proxySrv       *http.Server
	tlsConfig      *tls.Config
	decoy          *decoy
	closeOnce      sync.Once
	wg             sync.WaitGroup
}

// Start validates the seed, generates all material and starts listening.
func Start(opts Options) (*Emulator, error) {
	seed := opts.Seed
	if seed == nil {
		seed = SampleSeed()
	}
	if err := seed.Validate(); err != nil {
		return nil, fmt.Errorf("invalid seed: %w", err)
	}
	for _, a := range []string{opts.Addr, opts.ProxyAddr} {
		if a == "" {
			continue
		}
		if err := checkLoopback(a); err != nil { // before the costly key generation
			return nil, err
		}
	}
	e := &Emulator{seed: seed, ca: opts.CA, src: source{deterministic: seed.Deterministic},
		suffix: seed.suffix(), logf: opts.Logf, tenants: map[string]bool{}}
	if e.logf == nil {
		e.logf = func(string, ...any) {}
	}
	if e.ca == nil {
		ca, err := NewCA()
		if err != nil {
			return nil, err
		}
		e.ca = ca
	}
	if err := e.loadIdentities(); err != nil {
		return nil, err
	}
	vaults, err := buildVaults(seed, e.src)
	if err != nil {
		return nil, err
	}
	e.vaults = vaults
	e.tenants[strings.ToLower(seed.tenant())] = true
	for _, v := range vaults {
		e.tenants[strings.ToLower(v.tenant)] = true
	}
	e.grants = append([]Grant(nil), seed.Grants...)

	cert, err := e.ca.serverCert(e.serverNames())
	if err != nil {
		return nil, err
	}
	// HTTP/1.1 only: the Drop fault hijacks connections, which HTTP/2 cannot.
	e.tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	if err := e.listen(opts); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *Emulator) loadIdentities() error {
	var errs []error
	var err error
	// Token and issuer keys are random even in deterministic mode: tokens
	// carry times anyway, and nothing compares them across runs.
	if e.tokenKey, err = (source{}).rsaKey(2048); err != nil {
		return err
	}
	if e.issuerKey, err = (source{}).rsaKey(2048); err != nil {
		return err
	}
	e.tokenKid, e.issuerKid = keyID(&e.tokenKey.PublicKey), keyID(&e.issuerKey.PublicKey)
	e.issuers = map[string][]crypto.PublicKey{BuiltinIssuer: {&e.issuerKey.PublicKey}}
	for _, is := range e.seed.Issuers {
		keys, err := loadIssuerKeys(is)
		if err != nil {
			errs = append(errs, fmt.Errorf("issuer %q: %w", is.URL, err))
			continue
		}
		e.issuers[is.URL] = append(e.issuers[is.URL], keys...)
	}
	e.sps = map[string]*ServicePrincipal{}
	for i := range e.seed.ServicePrincipals {
		sp := e.seed.ServicePrincipals[i]
		if sp.TenantID == "" {
			sp.TenantID = e.seed.tenant()
		}
		e.tenants[strings.ToLower(sp.TenantID)] = true
		e.sps[strings.ToLower(sp.ClientID)] = &sp
	}
	e.miByID = map[string]*ManagedIdentity{}
	for i := range e.seed.ManagedIdentities {
		mi := e.seed.ManagedIdentities[i]
		if mi.TenantID == "" {
			mi.TenantID = e.seed.tenant()
		}
		for _, id := range []string{mi.ClientID, mi.ObjectID, mi.ResourceID} {
			if id != "" {
				e.miByID[strings.ToLower(id)] = &mi
			}
		}
		if mi.SystemAssigned {
			e.systemMI = &mi
		}
	}
	return errors.Join(errs...)
}

func keyID(pub *rsa.PublicKey) string {
	sum := sha256.Sum256(pub.N.Bytes())
	return b64url(sum[:12])
}

// Public, China and US Government clouds, plus the seed's custom cloud.
var (
	publicClouds = []cloudInfo{
		{suffix: "vault.azure.net", authority: "https://login.microsoftonline.com", login: "login.microsoftonline.com"},
		{suffix: "vault.azure.cn", authority: "https://login.chinacloudapi.cn", login: "login.chinacloudapi.cn"},
		{suffix: "vault.usgovcloudapi.net", authority: "https://login.microsoftonline.us", login: "login.microsoftonline.us"},
	}
	// otherHosts are emulated too, so the proxy accepts them.
	otherHosts = []string{"management.azure.com", "login.microsoft.com", "login.windows.net", "sts.windows.net"}
)

type cloudInfo struct {
	suffix    string // Key Vault DNS suffix
	authority string // authority in the challenge; "" = the emulator's URL
	login     string
}

func (e *Emulator) serverNames() []string {
	names := []string{"127.0.0.1", "::1", "localhost", "*." + e.suffix}
	for _, c := range publicClouds {
		names = append(names, "*."+c.suffix, c.login)
	}
	return append(names, otherHosts...)
}

// vaultHost splits a Host (port ignored) into vault name and cloud when the
// rest is a known Key Vault suffix.
func (e *Emulator) vaultHost(host string) (string, cloudInfo, bool) {
	h := strings.ToLower(hostOnly(host))
	name, rest, ok := strings.Cut(h, ".")
	if !ok || name == "" {
		return "", cloudInfo{}, false
	}
	if rest == e.suffix {
		return name, cloudInfo{suffix: e.suffix}, true
	}
	for _, c := range publicClouds {
		if rest == c.suffix {
			return name, c, true
		}
	}
	return "", cloudInfo{}, false
}

// emulatedHost reports whether the proxy may tunnel to host.
func (e *Emulator) emulatedHost(host string) bool {
	h := strings.ToLower(hostOnly(host))
	if _, _, ok := e.vaultHost(h); ok {
		return true
	}
	for _, c := range publicClouds {
		if h == c.login {
			return true
		}
	}
	for _, o := range otherHosts {
		if h == o {
			return true
		}
	}
	return false
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.Trim(hostport, "[]")
}

func (e *Emulator) listen(opts Options) error {
	addr, proxyAddr := opts.Addr, opts.ProxyAddr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if proxyAddr == "" {
		proxyAddr = "127.0.0.1:0"
	}
	for _, a := range []string{addr, proxyAddr} {
		if err := checkLoopback(a); err != nil {
			return err
		}
	}
	tcp, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	proxy, err := net.Listen("tcp", proxyAddr)
	if err != nil {
		_ = tcp.Close()
		return fmt.Errorf("listen %s: %w", proxyAddr, err)
	}
	e.tlsLn = tls.NewListener(tcp, e.tlsConfig)
	e.proxyLn = proxy
	e.connectLn = newChanListener(tcp.Addr())
	e.tlsSrv = &http.Server{Handler: http.HandlerFunc(e.serveTLS), ReadHeaderTimeout: 30 * time.Second,
		ErrorLog: discardLog()}
	e.proxySrv = &http.Server{Handler: http.HandlerFunc(e.serveProxy), ReadHeaderTimeout: 30 * time.Second,
		ErrorLog: discardLog()}
	for _, run := range []func() error{
		func() error { return e.tlsSrv.Serve(e.tlsLn) },
		func() error { return e.tlsSrv.Serve(e.connectLn) },
		func() error { return e.proxySrv.Serve(e.proxyLn) },
	} {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			if err := run(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				e.logf("kv-emulator: serve: %v", err)
			}
		}()
	}
	if err := e.startDecoy(); err != nil {
		_ = errors.Join(e.tlsSrv.Close(), e.proxySrv.Close(), e.connectLn.Close())
		return err
	}
	e.logf("kv-emulator: listening on %s (TLS) and %s (proxy, managed identity, admin)", e.URL(), e.ProxyURL())
	return nil
}

// testNet1 is TEST-NET-1 (RFC 5737): documentation addresses, never routed. make e2e-node puts
// one on a link of its own so that pods, which cannot reach the host's loopback, reach the
// emulator without it listening on a real interface.
var testNet1 = &net.IPNet{IP: net.IPv4(192, 0, 2, 0), Mask: net.CIDRMask(24, 32)}

// checkLoopback refuses listen addresses other than loopback and TEST-NET-1: the emulator
// issues tokens to anyone who asks.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || (!ip.IsLoopback() && !testNet1.Contains(ip)) {
		return fmt.Errorf("listen address %q: only loopback and TEST-NET-1 (192.0.2.0/24) addresses are allowed", addr)
	}
	return nil
}

// Close stops both listeners and waits for the servers to exit.
func (e *Emulator) Close() error {
	var err error
	e.closeOnce.Do(func() {
		err = errors.Join(e.tlsSrv.Close(), e.proxySrv.Close(), e.connectLn.Close(), e.decoy.srv.Close())
		e.wg.Wait()
	})
	return err
}

// URL is the TLS endpoint, https://127.0.0.1:PORT (Entra ID authority host).
func (e *Emulator) URL() string { return "https://" + e.tlsLn.Addr().String() }

// ProxyURL is the plain-HTTP proxy, managed identity and admin endpoint.
func (e *Emulator) ProxyURL() string { return "http://" + e.proxyLn.Addr().String() }

// CACertPEM is the PEM of the CA that issued the TLS certificate.
func (e *Emulator) CACertPEM() []byte { return e.ca.CertPEM() }

// CA returns the emulator's CA.
func (e *Emulator) CA() *CA { return e.ca }

// TenantID is the seed's default tenant.
func (e *Emulator) TenantID() string { return e.seed.tenant() }

// KeyVaultDNSSuffix is the custom cloud's Key Vault suffix.
func (e *Emulator) KeyVaultDNSSuffix() string { return e.suffix }

// WriteCA writes the CA certificate PEM to path (mode 0644), atomically.
func (e *Emulator) WriteCA(path string) error { return writeFileAtomic(path, e.ca.CertPEM(), 0o644) }

// PointProcessAt makes this process reach the emulator as an operator points the provider's
// container at a proxy: it writes the CA to dir/ca.pem and sets SSL_CERT_FILE to it, HTTPS_PROXY
// and HTTP_PROXY to ProxyURL() and NO_PROXY to nothing. Call it before the process makes its first
// HTTPS request: Go reads these once.
func (e *Emulator) PointProcessAt(dir string) error {
	caFile := filepath.Join(dir, "ca.pem")
	if err := e.WriteCA(caFile); err != nil {
		return err
	}
	for k, v := range map[string]string{"SSL_CERT_FILE": caFile, "HTTPS_PROXY": e.ProxyURL(), "HTTP_PROXY": e.ProxyURL(), "NO_PROXY": ""} {
		if err := os.Setenv(k, v); err != nil {
			return err
		}
	}
	return nil
}

// WriteCloudEnv writes an AzureStackCloud environment file (go-autorest
// Environment field names) whose Entra endpoint is URL() and whose Key
// Vault suffix is the seed's custom suffix.
func (e *Emulator) WriteCloudEnv(path string) error {
	b, err := json.MarshalIndent(e.cloudEnv(), "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'), 0o644)
}

func (e *Emulator) cloudEnv() map[string]any {
	base := "https://management.azurestack.test/"
	kv := "https://" + e.suffix
	return map[string]any{
		"name":                         "AzureStackCloud",
		"managementPortalURL":          "https://portal.azurestack.test/",
		"publishSettingsURL":           "https://portal.azurestack.test/publishsettings/index",
		"serviceManagementEndpoint":    "https://management.core.azurestack.test/",
		"resourceManagerEndpoint":      base,
		"activeDirectoryEndpoint":      e.URL() + "/",
		"galleryEndpoint":              "https://gallery.azurestack.test/",
		"keyVaultEndpoint":             kv + "/",
		"managedHSMEndpoint":           "https://managedhsm.azurestack.test/",
		"graphEndpoint":                "https://graph.azurestack.test/",
		"serviceBusEndpoint":           "https://servicebus.azurestack.test/",
		"batchManagementEndpoint":      "https://batch.azurestack.test/",
		"storageEndpointSuffix":        "azurestack.test",
		"sqlDatabaseDNSSuffix":         "database.azurestack.test",
		"trafficManagerDNSSuffix":      "trafficmanager.azurestack.test",
		"keyVaultDNSSuffix":            e.suffix,
		"managedHSMDNSSuffix":          "managedhsm.azurestack.test",
		"serviceBusEndpointSuffix":     "servicebus.azurestack.test",
		"serviceManagementVMDNSSuffix": "cloudapp.azurestack.test",
		"resourceManagerVMDNSSuffix":   "cloudapp.azurestack.test",
		"containerRegistryDNSSuffix":   "azurecr.azurestack.test",
		"tokenAudience":                base,
		"resourceIdentifiers": map[string]string{
			"graph":               "https://graph.azurestack.test/",
			"keyVault":            kv,
			"datalake":            "https://datalake.azurestack.test/",
			"batch":               "https://batch.azurestack.test/",
			"operationalInsights": "https://api.loganalytics.azurestack.test",
			"storage":             "https://storage.azurestack.test/",
		},
	}
}

// WriteEndpoints writes {"url","proxyURL","tenantID"} to path atomically.
func (e *Emulator) WriteEndpoints(path string) error {
	b, err := json.MarshalIndent(map[string]string{"url": e.URL(), "proxyURL": e.ProxyURL(), "tenantID": e.TenantID()}, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'), 0o644)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr, os.Chmod(tmp, mode)); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

// AddGrants adds grants to those in force (SetGrants replaces them all).
func (e *Emulator) AddGrants(grants ...Grant) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.grants = append(e.grants, grants...)
}

// SetGrants replaces all grants.
func (e *Emulator) SetGrants(grants []Grant) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.grants = append([]Grant(nil), grants...)
}

// allowed reports whether clientID may read object name of typ in vault.
func (e *Emulator) allowed(clientID, vault, typ, name string) bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	for _, g := range e.grants {
		if !strings.EqualFold(g.Identity, clientID) || (g.Vault != "*" && !strings.EqualFold(g.Vault, vault)) {
			continue
		}
		if len(g.Types) > 0 && !containsFold(g.Types, typ) {
			continue
		}
		if name != "" && len(g.Names) > 0 && !containsFold(g.Names, name) {
			continue
		}
		return true
	}
	return false
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}
