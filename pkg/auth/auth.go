// Package auth turns a mount's identity into an azidentity credential, and names identities for
// caches so that nothing one identity obtained is reachable by another.
package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	azcloud "github.com/akv-csi/provider/pkg/cloud"
	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/metrics"
)

// Options are the daemon-wide settings for credentials.
type Options struct {
	ApplicationID string
	Retry         policy.RetryOptions
	Transport     policy.Transporter
	// PerCallPolicies run once per token request, after the SDK's telemetry policy (e.g.
	// --custom-user-agent); identity binding's token proxy requests included.
	PerCallPolicies []policy.Policy
	// Metrics counts token requests (default: nothing).
	Metrics metrics.Recorder

	// TokenProxyURL is the AKS token proxy that identity binding (useAzureTokenProxy) sends its
	// token requests to (--token-proxy-url; default DefaultTokenProxyURL). Transport is not used
	// for them.
	TokenProxyURL string
	// TokenProxySNI is the proxy's TLS server name (--sni-name). Empty: computed from the cluster
	// ID in the certificate the proxy's address serves, as Azure's provider does.
	TokenProxySNI string
	// TokenProxyCAFile is the PEM bundle trusted for the proxy, read again on every token request.
	// Empty: DefaultTokenProxyCAFile when it exists, else the system roots.
	TokenProxyCAFile string
}

// Assertion holds the newest service account token the driver sent for a workload identity, so a
// credential kept across mounts refreshes with a current token.
type Assertion struct {
	mu    sync.Mutex
	token string
}

// Set replaces the token.
func (a *Assertion) Set(token string) {
	a.mu.Lock()
	a.token = token
	a.mu.Unlock()
}

// Get returns the newest token.
func (a *Assertion) Get(context.Context) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.token == "" {
		return "", fmt.Errorf("no service account token for audience %s", config.WorkloadIdentityAudience)
	}
	return a.token, nil
}

// NewCredential builds the credential for a mount's identity in a cloud. For workload identity the
// assertion is read from a (kept up to date by the caller).
func NewCredential(id config.Identity, tenantID string, env azcloud.Environment, a *Assertion, o Options) (azcore.TokenCredential, error) {
	if o.Metrics == nil {
		o.Metrics = metrics.Nop{}
	}
	client := azcore.ClientOptions{
		Cloud:            cloud.Configuration{ActiveDirectoryAuthorityHost: env.AuthorityHost},
		Retry:            o.Retry,
		Telemetry:        policy.TelemetryOptions{ApplicationID: o.ApplicationID},
		Transport:        o.Transport,
		PerCallPolicies:  o.PerCallPolicies,
		PerRetryPolicies: []policy.Policy{tokenPolicy{rec: o.Metrics, mode: id.Mode.String()}},
	}
	// MSAL would ask the public cloud's instance discovery about any authority it does not know.
	disableDiscovery := !env.KnownAuthority()
	switch id.Mode {
	case config.WorkloadIdentity:
		return azidentity.NewClientAssertionCredential(tenantID, id.ClientID, a.Get, &azidentity.ClientAssertionCredentialOptions{
			ClientOptions: client, DisableInstanceDiscovery: disableDiscovery,
		})
	case config.ManagedIdentity:
		opts := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: client}
		if id.ClientID != "" {
			opts.ID = azidentity.ClientID(id.ClientID)
		}
		return azidentity.NewManagedIdentityCredential(opts)
	case config.ServicePrincipal:
		return azidentity.NewClientSecretCredential(tenantID, id.ClientID, id.ClientSecret, &azidentity.ClientSecretCredentialOptions{
			ClientOptions: client, DisableInstanceDiscovery: disableDiscovery,
		})
	case config.IdentityBinding:
		// What azidentity's WorkloadIdentityCredential does with EnableAzureProxy, configured from
		// Options instead of AZURE_KUBERNETES_* variables and with the driver's token instead of a
		// token file. Instance discovery is off, as with Azure's provider.
		proxy, err := tokenProxyFor(o)
		if err != nil {
			return nil, err
		}
		tr := &proxyTransport{p: proxy}
		client.Transport = tr
		cred, err := azidentity.NewClientAssertionCredential(tenantID, id.ClientID, a.Get, &azidentity.ClientAssertionCredentialOptions{
			ClientOptions: client, DisableInstanceDiscovery: true,
		})
		if err != nil {
			return nil, err
		}
		return &identityBindingCredential{cred: cred, tr: tr}, nil
	}
	return nil, fmt.Errorf("unknown identity mode %d", id.Mode)
}

// tokenPolicy counts the credential's token requests (not its discovery requests).
type tokenPolicy struct {
	rec  metrics.Recorder
	mode string
}

func (p tokenPolicy) Do(req *policy.Request) (*http.Response, error) {
	resp, err := req.Next()
	path := req.Raw().URL.Path
	if strings.Contains(path, "/.well-known/") || strings.Contains(path, "/discovery/") {
		return resp, err
	}
	result := "success"
	if resp == nil || resp.StatusCode >= 300 {
		result = "error"
	}
	p.rec.ObserveTokenRequest(p.mode, result)
	return resp, err
}

// keySalt makes cache keys of service principals useless outside this process.
var keySalt = func() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand never fails on supported platforms
	return b
}()

// CacheKey names an identity in a cloud and tenant. Two mounts share credentials and clients only
// when they have the same key, which includes what proves the identity: the secret (as a salted
// HMAC) for a service principal, and the token's issuer and subject for workload identity. A
// workload identity key alone proves nothing (the claims are unverified): the caller must also
// hold a token that Entra ID accepted for it (see pkg/provider's client cache).
func CacheKey(id config.Identity, tenantID string, env azcloud.Environment) string {
	parts := []string{env.AuthorityHost, env.KeyVaultDNSSuffix, strings.ToLower(tenantID), id.Mode.String(), strings.ToLower(id.ClientID)}
	switch id.Mode {
	case config.ServicePrincipal:
		mac := hmac.New(sha256.New, keySalt)
		mac.Write([]byte(id.ClientSecret))
		parts = append(parts, hex.EncodeToString(mac.Sum(nil)))
	case config.WorkloadIdentity, config.IdentityBinding:
		iss, sub := TokenSubject(id.Token)
		if sub == "" {
			// Unreadable token: never share, so Entra ID judges this token itself.
			sum := sha256.Sum256([]byte(id.Token))
			sub = "token:" + hex.EncodeToString(sum[:])
		}
		parts = append(parts, iss, sub)
	}
	return strings.Join(parts, "\x00")
}
