// Package auth turns a mount's identity into an azidentity credential, and names identities for
// caches so that nothing one identity obtained is reachable by another.
package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
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
	// Metrics counts token requests (default: nothing).
	Metrics metrics.Recorder
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
// HMAC) for a service principal, and the token's issuer and subject for workload identity.
func CacheKey(id config.Identity, tenantID string, env azcloud.Environment) string {
	parts := []string{env.AuthorityHost, env.KeyVaultDNSSuffix, strings.ToLower(tenantID), id.Mode.String(), strings.ToLower(id.ClientID)}
	switch id.Mode {
	case config.ServicePrincipal:
		mac := hmac.New(sha256.New, keySalt)
		mac.Write([]byte(id.ClientSecret))
		parts = append(parts, hex.EncodeToString(mac.Sum(nil)))
	case config.WorkloadIdentity:
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

// TokenSubject reads the issuer and subject of a service account token without verifying it (Entra
// ID verifies it). The subject is system:serviceaccount:<namespace>:<name>.
func TokenSubject(token string) (issuer, subject string) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", ""
	}
	var claims struct {
		Iss string `json:"iss"`
		Sub string `json:"sub"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return "", ""
	}
	return claims.Iss, claims.Sub
}
