// Package keyvault reads secrets, keys and certificates from one vault with the official Azure
// SDK clients, and classifies their failures.
package keyvault

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azcertificates"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"

	"github.com/akv-csi/provider/pkg/metrics"
)

// Attributes are the properties Key Vault keeps beside an object version's value. Times are nil
// when Key Vault did not send them; Enabled nil means enabled (as Azure's provider reads it).
type Attributes struct {
	Enabled                              *bool
	Created, Updated, NotBefore, Expires *time.Time
	Tags                                 map[string]string
}

// Secret is a secret version. A certificate's secret has CertificateBacked set.
type Secret struct {
	Version           string
	Value             string
	ContentType       string
	CertificateBacked bool
	Attributes        Attributes
}

// Key is the public part of a key version, as a JSON Web Key.
type Key struct {
	Version    string
	Kty        string
	N, E       []byte // RSA
	Crv        string // EC
	X, Y       []byte // EC
	Attributes Attributes
}

// Certificate is the public certificate of a certificate version.
type Certificate struct {
	Version     string
	DER         []byte
	ContentType string // of the certificate's secret
	Attributes  Attributes
}

// attributesOf copies the SDK's attributes (nil: none sent) and tags.
func attributesOf[A sdkAttributes](a *A, tags map[string]*string) Attributes {
	var out Attributes
	switch a := any(a).(type) {
	case *azsecrets.SecretAttributes:
		if a != nil {
			out = Attributes{Enabled: a.Enabled, Created: a.Created, Updated: a.Updated, NotBefore: a.NotBefore, Expires: a.Expires}
		}
	case *azkeys.KeyAttributes:
		if a != nil {
			out = Attributes{Enabled: a.Enabled, Created: a.Created, Updated: a.Updated, NotBefore: a.NotBefore, Expires: a.Expires}
		}
	case *azcertificates.CertificateAttributes:
		if a != nil {
			out = Attributes{Enabled: a.Enabled, Created: a.Created, Updated: a.Updated, NotBefore: a.NotBefore, Expires: a.Expires}
		}
	}
	if len(tags) > 0 {
		out.Tags = make(map[string]string, len(tags))
		for k, v := range tags {
			out.Tags[k] = deref(v)
		}
	}
	return out
}

// ObjectInfo is one item of a collection list (every secret, or every certificate, of a vault):
// the object's name and its current version's content type and properties. ListQuery.Filter
// takes them (the Client's lists keep only the matches).
type ObjectInfo struct {
	Name        string
	ContentType string
	Attributes  Attributes
}

// VersionInfo describes one version in a version list.
type VersionInfo struct {
	Version string
	Created time.Time
	Enabled bool
}

// Client reads one vault. Every error it returns is an *Error.
type Client interface {
	GetSecret(ctx context.Context, name, version string) (Secret, error)
	GetKey(ctx context.Context, name, version string) (Key, error)
	GetCertificate(ctx context.Context, name, version string) (Certificate, error)
	SecretVersions(ctx context.Context, name string) ([]VersionInfo, error)
	KeyVersions(ctx context.Context, name string) ([]VersionInfo, error)
	CertificateVersions(ctx context.Context, name string) ([]VersionInfo, error)
	// ListSecrets lists the secrets of the vault (certificates' secrets included) page by page,
	// and keeps those q matches: memory is the matches plus one page.
	ListSecrets(ctx context.Context, q ListQuery) ([]Match, error)
	// ListCertificates lists the certificates of the vault page by page, and keeps those q matches.
	ListCertificates(ctx context.Context, q ListQuery) ([]Match, error)
}

// Options configure the SDK clients.
type Options struct {
	// ApplicationID is sent in the User-Agent (at most 24 characters, no spaces).
	ApplicationID string
	Retry         policy.RetryOptions
	// Transport replaces the HTTP client shared by every Key Vault client of the process (azcore's
	// default, which honours HTTPS_PROXY and SSL_CERT_FILE, with a larger pool of idle
	// connections: see MaxConnsPerVault).
	Transport policy.Transporter
	// PerCallPolicies run once per call, after the SDK's telemetry policy (e.g. --custom-user-agent).
	PerCallPolicies []policy.Policy
	// Metrics records every HTTP request to Key Vault (default: nothing).
	Metrics metrics.Recorder
}

// retriedStatuses are azcore's defaults without 429: throttling is retried by the caller, which
// knows the driver's deadline and shares one rate limit per vault.
var retriedStatuses = []int{408, 500, 502, 503, 504}

// SDKClient implements Client with azsecrets, azkeys and azcertificates.
type SDKClient struct {
	secrets *azsecrets.Client
	keys    *azkeys.Client
	certs   *azcertificates.Client
}

// New creates the SDK clients for vaultURL. The credential's token cache and each client's
// challenge state live as long as the returned client, so callers should keep it.
func New(vaultURL string, cred azcore.TokenCredential, o Options) (*SDKClient, error) {
	cred = markedCredential{cred}
	if o.Retry.StatusCodes == nil {
		o.Retry.StatusCodes = retriedStatuses
	}
	if o.Metrics == nil {
		o.Metrics = metrics.Nop{}
	}
	if o.Transport == nil {
		o.Transport = sharedTransport
	}
	pin, err := newPinHostPolicy(vaultURL)
	if err != nil {
		return nil, err
	}
	core := azcore.ClientOptions{
		Retry:            o.Retry,
		Telemetry:        policy.TelemetryOptions{ApplicationID: o.ApplicationID},
		Transport:        boundedTransport{o.Transport},
		PerCallPolicies:  append([]policy.Policy{pin}, o.PerCallPolicies...),
		PerRetryPolicies: []policy.Policy{observePolicy{o.Metrics}},
	}
	s, err := azsecrets.NewClient(vaultURL, cred, &azsecrets.ClientOptions{ClientOptions: core})
	if err != nil {
		return nil, classify(err)
	}
	k, err := azkeys.NewClient(vaultURL, cred, &azkeys.ClientOptions{ClientOptions: core})
	if err != nil {
		return nil, classify(err)
	}
	c, err := azcertificates.NewClient(vaultURL, cred, &azcertificates.ClientOptions{ClientOptions: core})
	if err != nil {
		return nil, classify(err)
	}
	return &SDKClient{secrets: s, keys: k, certs: c}, nil
}

// GetSecret reads a secret version ("" = current).
func (c *SDKClient) GetSecret(ctx context.Context, name, version string) (Secret, error) {
	resp, err := c.secrets.GetSecret(ctx, name, version, nil)
	if err != nil {
		return Secret{}, classify(err)
	}
	return secretOf(resp.Secret)
}

// secretOf converts the SDK's secret. A response without a value is an error, as in Azure's
// provider (an empty file would hide it); an empty value is written as an empty file.
func secretOf(r azsecrets.Secret) (Secret, error) {
	s := Secret{ContentType: deref(r.ContentType), CertificateBacked: r.KID != nil}
	s.Attributes = attributesOf(r.Attributes, r.Tags)
	if r.ID != nil {
		s.Version = r.ID.Version()
	}
	if r.Value == nil {
		return Secret{}, &Error{Kind: KindInvalidArgument, Detail: fmt.Sprintf("Key Vault returned version %s of the secret without a value; set a value in the vault", orLatest(s.Version))}
	}
	s.Value = *r.Value
	return s, nil
}

func orLatest(v string) string {
	if v == "" {
		return "latest"
	}
	return v
}

// GetKey reads a key version ("" = current).
func (c *SDKClient) GetKey(ctx context.Context, name, version string) (Key, error) {
	resp, err := c.keys.GetKey(ctx, name, version, nil)
	if err != nil {
		return Key{}, classify(err)
	}
	jwk := resp.Key
	if jwk == nil {
		return Key{}, &Error{Kind: KindInternal, Detail: "Key Vault returned a key without a JSON web key"}
	}
	k := Key{N: jwk.N, E: jwk.E, X: jwk.X, Y: jwk.Y}
	if jwk.Kty != nil {
		k.Kty = string(*jwk.Kty)
	}
	if jwk.Crv != nil {
		k.Crv = string(*jwk.Crv)
	}
	if jwk.KID != nil {
		k.Version = jwk.KID.Version()
	}
	k.Attributes = attributesOf(resp.Attributes, resp.Tags)
	return k, nil
}

// GetCertificate reads a certificate version ("" = current).
func (c *SDKClient) GetCertificate(ctx context.Context, name, version string) (Certificate, error) {
	resp, err := c.certs.GetCertificate(ctx, name, version, nil)
	if err != nil {
		return Certificate{}, classify(err)
	}
	cert := Certificate{DER: resp.CER, ContentType: deref(resp.ContentType)}
	if resp.ID != nil {
		cert.Version = resp.ID.Version()
	}
	cert.Attributes = attributesOf(resp.Attributes, resp.Tags)
	return cert, nil
}

// SecretVersions lists every version of a secret.
func (c *SDKClient) SecretVersions(ctx context.Context, name string) ([]VersionInfo, error) {
	var out []VersionInfo
	err := listPages(ctx, c.secrets.NewListSecretPropertiesVersionsPager(name, nil),
		func(r azsecrets.ListSecretPropertiesVersionsResponse) []*azsecrets.SecretProperties { return r.Value },
		func(p *azsecrets.SecretProperties) error {
			if p.ID == nil {
				return nil
			}
			a := p.Attributes
			if a == nil {
				a = &azsecrets.SecretAttributes{}
			}
			out = append(out, versionInfo(p.ID.Version(), a.Enabled, a.Created))
			return nil
		})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// KeyVersions lists every version of a key.
func (c *SDKClient) KeyVersions(ctx context.Context, name string) ([]VersionInfo, error) {
	var out []VersionInfo
	err := listPages(ctx, c.keys.NewListKeyPropertiesVersionsPager(name, nil),
		func(r azkeys.ListKeyPropertiesVersionsResponse) []*azkeys.KeyProperties { return r.Value },
		func(p *azkeys.KeyProperties) error {
			if p.KID == nil {
				return nil
			}
			a := p.Attributes
			if a == nil {
				a = &azkeys.KeyAttributes{}
			}
			out = append(out, versionInfo(p.KID.Version(), a.Enabled, a.Created))
			return nil
		})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CertificateVersions lists every version of a certificate.
func (c *SDKClient) CertificateVersions(ctx context.Context, name string) ([]VersionInfo, error) {
	var out []VersionInfo
	err := listPages(ctx, c.certs.NewListCertificatePropertiesVersionsPager(name, nil),
		func(r azcertificates.ListCertificatePropertiesVersionsResponse) []*azcertificates.CertificateProperties {
			return r.Value
		},
		func(p *azcertificates.CertificateProperties) error {
			if p.ID == nil {
				return nil
			}
			a := p.Attributes
			if a == nil {
				a = &azcertificates.CertificateAttributes{}
			}
			out = append(out, versionInfo(p.ID.Version(), a.Enabled, a.Created))
			return nil
		})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ListSecrets lists the vault's secrets and keeps the current ones q matches. Each page is
// decoded, filtered and dropped; a selector past q.MaxPerSelector fails the list at once.
func (c *SDKClient) ListSecrets(ctx context.Context, q ListQuery) ([]Match, error) {
	m := newMatcher(q, time.Now())
	err := listPages(ctx, c.secrets.NewListSecretPropertiesPager(nil),
		func(r azsecrets.ListSecretPropertiesResponse) []*azsecrets.SecretProperties { return r.Value },
		func(p *azsecrets.SecretProperties) error {
			if p.ID == nil {
				return nil
			}
			return m.add(p.ID.Name(), attributesOf(p.Attributes, p.Tags))
		})
	if err != nil {
		return nil, err
	}
	return m.out, nil
}

// ListCertificates lists the vault's certificates and keeps the current ones q matches, as
// ListSecrets does.
func (c *SDKClient) ListCertificates(ctx context.Context, q ListQuery) ([]Match, error) {
	m := newMatcher(q, time.Now())
	err := listPages(ctx, c.certs.NewListCertificatePropertiesPager(nil),
		func(r azcertificates.ListCertificatePropertiesResponse) []*azcertificates.CertificateProperties {
			return r.Value
		},
		func(p *azcertificates.CertificateProperties) error {
			if p.ID == nil {
				return nil
			}
			return m.add(p.ID.Name(), attributesOf(p.Attributes, p.Tags))
		})
	if err != nil {
		return nil, err
	}
	return m.out, nil
}

// listPages pages through a list, handing each item to each (an error ends the list with it).
// It bounds the items (MaxListItems), the pages (MaxListPages), the empty pages in a row
// (MaxEmptyPages) and the response bytes (MaxListBytes, counted by boundedTransport), and calls
// the pacer of ctx (WithPacer) before every page after the first. A page's bytes are charged to
// the caller's ReadCharge while the page is read and handed back once its items are handled (on
// an error, the caller's mount fails and its budget goes with it).
func listPages[R, P any](ctx context.Context, pager *runtime.Pager[R], items func(R) []*P, each func(*P) error) error {
	ctx, budget := withListBudget(ctx)
	pace := pacer(ctx)
	charge, _ := ctx.Value(readChargeKey{}).(ReadCharge)
	seen, empty := 0, 0
	for page := 1; pager.More(); page++ {
		if page > MaxListPages {
			return &Error{Kind: KindInvalidArgument, Detail: fmt.Sprintf("Key Vault's list went on past %d pages (MaxListPages); the provider reads no more", MaxListPages)}
		}
		if empty >= MaxEmptyPages {
			return &Error{Kind: KindInvalidArgument, Detail: fmt.Sprintf("Key Vault answered %d empty list pages in a row, each pointing at another (MaxEmptyPages); the provider reads no more", empty)}
		}
		if page > 1 && pace != nil {
			if err := pace(ctx); err != nil {
				return AsError(err)
			}
		}
		before := budget.used.Load()
		resp, err := pager.NextPage(ctx)
		if err != nil {
			return classify(err)
		}
		pageBytes := budget.used.Load() - before
		n := 0
		for _, p := range items(resp) {
			if p == nil {
				continue
			}
			if n++; seen+n > MaxListItems {
				return &Error{Kind: KindInvalidArgument, Detail: fmt.Sprintf("Key Vault listed more than %d items (MaxListItems); the provider reads no more", MaxListItems)}
			}
			if err := each(p); err != nil {
				return AsError(err)
			}
		}
		if charge != nil {
			_ = charge(ctx, -pageBytes) // the page is dropped: only its matches are kept
		}
		seen += n
		if n == 0 {
			empty++
		} else {
			empty = 0
		}
	}
	return nil
}

func versionInfo(version string, enabled *bool, created *time.Time) VersionInfo {
	// An absent "enabled" attribute means enabled, as Azure's provider reads it.
	v := VersionInfo{Version: version, Enabled: enabled == nil || *enabled}
	if created != nil {
		v.Created = *created
	}
	return v
}

// observePolicy records each HTTP attempt, including challenges and retries.
type observePolicy struct{ rec metrics.Recorder }

func (p observePolicy) Do(req *policy.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := req.Next()
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	op, typ := requestKind(req.Raw().URL.Path)
	p.rec.ObserveKeyVaultRequest(op, typ, metrics.StatusClass(status), time.Since(start))
	if status == http.StatusTooManyRequests {
		p.rec.ObserveThrottled()
	}
	return resp, err
}

// requestKind names a Key Vault path: /{secrets|keys|certificates}/{name}[/{version}|/versions].
func requestKind(path string) (operation, objectType string) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch parts[0] {
	case "secrets":
		objectType = "secret"
	case "keys":
		objectType = "key"
	case "certificates":
		objectType = "certificate"
	default:
		objectType = "other"
	}
	operation = "get"
	if len(parts) == 1 || parts[len(parts)-1] == "versions" {
		operation = "list"
	}
	return operation, objectType
}

// markedCredential tags token failures so they are reported as identity problems.
type markedCredential struct{ azcore.TokenCredential }

func (m markedCredential) GetToken(ctx context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	tok, err := m.TokenCredential.GetToken(ctx, o)
	if err != nil {
		return tok, &tokenError{err}
	}
	return tok, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// sdkAttributes are the three SDK modules' attribute types, read alike.
type sdkAttributes interface {
	azsecrets.SecretAttributes | azkeys.KeyAttributes | azcertificates.CertificateAttributes
}
