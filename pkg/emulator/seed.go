package emulator

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Defaults used when a Seed leaves a field empty.
const (
	DefaultTenantID          = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	DefaultKeyVaultDNSSuffix = "vault.azurestack.test"
	DefaultIdentityHeader    = "kv-emulator"
	DefaultFederatedAudience = "api://AzureADTokenExchange"

	// BuiltinIssuer is the OIDC issuer the emulator owns; SignServiceAccountToken
	// signs with its key, and it is always trusted for federated credentials.
	BuiltinIssuer = "https://oidc.kv-emulator.test"
)

// Seed is the emulator's initial state. It is read from YAML through
// sigs.k8s.io/yaml, so the field names are the json tags.
type Seed struct {
	TenantID          string `json:"tenantID,omitempty"`
	KeyVaultDNSSuffix string `json:"keyVaultDNSSuffix,omitempty"`
	IdentityHeader    string `json:"identityHeader,omitempty"`
	// PageSize, when > 0, overrides maxresults for every list so tests can
	// force paging with a few versions.
	PageSize int `json:"pageSize,omitempty"`
	// Deterministic derives versions, keys, certificates and PKCS#12 bytes from
	// names, so the same seed always yields the same material.
	Deterministic bool `json:"deterministic,omitempty"`

	Vaults            []Vault            `json:"vaults,omitempty"`
	ServicePrincipals []ServicePrincipal `json:"servicePrincipals,omitempty"`
	ManagedIdentities []ManagedIdentity  `json:"managedIdentities,omitempty"`
	Issuers           []Issuer           `json:"issuers,omitempty"`
	Grants            []Grant            `json:"grants,omitempty"`
}

// Vault is one key vault; TenantID defaults to Seed.TenantID.
type Vault struct {
	Name     string `json:"name"`
	TenantID string `json:"tenantID,omitempty"`
	// PageSize, when > 0, is the size of this vault's list pages (1-25), whatever the seed's
	// pageSize and the request's maxresults say.
	PageSize     int           `json:"pageSize,omitempty"`
	Secrets      []Secret      `json:"secrets,omitempty"`
	Keys         []Key         `json:"keys,omitempty"`
	Certificates []Certificate `json:"certificates,omitempty"`
}

// Secret is a plain secret; Versions are oldest first.
type Secret struct {
	Name     string          `json:"name"`
	Versions []SecretVersion `json:"versions"`
}

// SecretVersion is one secret version. Version defaults to 32 lowercase hex
// characters, Created to increasing times, Enabled to true.
type SecretVersion struct {
	Version     string            `json:"version,omitempty"`
	Value       string            `json:"value"`
	ContentType string            `json:"contentType,omitempty"`
	Created     *time.Time        `json:"created,omitempty"`
	Enabled     *bool             `json:"enabled,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
	// NotBefore and Expires are the nbf and exp attributes (default none). As in Key Vault they are
	// informational: a GET outside them still answers.
	NotBefore *time.Time `json:"notBefore,omitempty"`
	Expires   *time.Time `json:"expires,omitempty"`
}

// Key is a key with Versions generated versions.
type Key struct {
	Name     string `json:"name"`
	Kty      string `json:"kty"`            // RSA, RSA-HSM, EC, EC-HSM, oct, oct-HSM
	Size     int    `json:"size,omitempty"` // RSA bits (default 2048) or oct bits (default 256)
	Curve    string `json:"curve,omitempty"`
	Versions int    `json:"versions,omitempty"`
	// Tags are the tags of every version (default none).
	Tags map[string]string `json:"tags,omitempty"`
}

// Certificate is a certificate with Versions generated versions, each a new
// leaf issued by the vault's intermediate, which the vault's root issued.
type Certificate struct {
	Name        string `json:"name"`
	ContentType string `json:"contentType,omitempty"` // application/x-pkcs12 (default) or application/x-pem-file
	KeyType     string `json:"keyType,omitempty"`     // RSA (default) or EC
	Subject     string `json:"subject,omitempty"`     // CN of the leaf; default the certificate name
	Versions    int    `json:"versions,omitempty"`
	Exportable  *bool  `json:"exportable,omitempty"` // default true
	// Chain is the stored order of "leaf", "intermediate", "root" in the
	// secret value; default leaf, intermediate, root. Omitting an element
	// stores an incomplete chain.
	Chain []string `json:"chain,omitempty"`
	// Tags are the tags of every version, on the certificate and on its secret and key faces
	// (default none).
	Tags map[string]string `json:"tags,omitempty"`
}

// ServicePrincipal is an app registration that may use client secrets or
// federated credentials.
type ServicePrincipal struct {
	ClientID  string                `json:"clientID"`
	TenantID  string                `json:"tenantID,omitempty"`
	Secrets   []string              `json:"secrets,omitempty"`
	Federated []FederatedCredential `json:"federated,omitempty"`
}

// FederatedCredential is matched exactly against a client assertion.
type FederatedCredential struct {
	Issuer   string `json:"issuer"`
	Subject  string `json:"subject"`
	Audience string `json:"audience,omitempty"`
}

// ManagedIdentity is reachable through IMDS and the App Service endpoint.
// ObjectID and ResourceID are optional extra selectors.
type ManagedIdentity struct {
	ClientID       string `json:"clientID"`
	SystemAssigned bool   `json:"systemAssigned,omitempty"`
	ObjectID       string `json:"objectID,omitempty"`
	ResourceID     string `json:"resourceID,omitempty"`
	TenantID       string `json:"tenantID,omitempty"`
}

// Issuer is a trusted OIDC issuer for client assertions. Give PublicKeyFile
// (PEM: PKIX or PKCS#1 public key, or a certificate) or JWKSFile.
type Issuer struct {
	URL           string `json:"url"`
	PublicKeyFile string `json:"publicKeyFile,omitempty"`
	JWKSFile      string `json:"jwksFile,omitempty"`
}

// Grant lets Identity (a client ID) read objects of Types (secret, key,
// certificate; empty = all) in Vault ("*" = any). Names, if set, limits
// the grant to those object names.
type Grant struct {
	Identity string   `json:"identity"`
	Vault    string   `json:"vault"`
	Types    []string `json:"types,omitempty"`
	Names    []string `json:"names,omitempty"`
}

// LoadSeed reads and validates a YAML or JSON seed file.
func LoadSeed(path string) (*Seed, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read seed: %w", err)
	}
	var s Seed
	if err := yaml.UnmarshalStrict(b, &s); err != nil {
		return nil, fmt.Errorf("parse seed %s: %w", path, err)
	}
	// Issuer key files are relative to the seed file.
	for i := range s.Issuers {
		for _, f := range []*string{&s.Issuers[i].PublicKeyFile, &s.Issuers[i].JWKSFile} {
			if *f != "" && !filepath.IsAbs(*f) {
				*f = filepath.Join(filepath.Dir(path), *f)
			}
		}
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("seed %s: %w", path, err)
	}
	return &s, nil
}

var (
	vaultNameRE  = regexp.MustCompile(`^[a-zA-Z0-9-]{3,24}$`)
	objectNameRE = regexp.MustCompile(`^[0-9a-zA-Z-]{1,127}$`)
	versionRE    = regexp.MustCompile(`^[0-9a-zA-Z]{1,64}$`)
	tenantRE     = regexp.MustCompile(`^[A-Za-z0-9.-]+$`)
	dnsSuffixRE  = regexp.MustCompile(`^[a-z0-9-]+(\.[a-z0-9-]+)+$`)
)

// Key Vault's limits on tags: at most 15 per object, names of at most 512 characters, values of
// at most 256.
const (
	maxTags        = 15
	maxTagNameLen  = 512
	maxTagValueLen = 256
)

func checkTags(where string, tags map[string]string, bad func(string, ...any)) {
	if len(tags) > maxTags {
		bad("%s: %d tags, more than Key Vault's %d", where, len(tags), maxTags)
	}
	for k, v := range tags {
		if k == "" || len(k) > maxTagNameLen || len(v) > maxTagValueLen {
			bad("%s: tag %q: names are 1-%d characters, values at most %d", where, k, maxTagNameLen, maxTagValueLen)
		}
	}
}

// Validate reports every problem in the seed at once.
func (s *Seed) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if s.TenantID != "" && !tenantRE.MatchString(s.TenantID) {
		bad("tenantID %q: only letters, digits, '.' and '-' are allowed", s.TenantID)
	}
	if s.KeyVaultDNSSuffix != "" && !dnsSuffixRE.MatchString(s.KeyVaultDNSSuffix) {
		bad("keyVaultDNSSuffix %q: want a lower-case DNS name such as vault.azurestack.test", s.KeyVaultDNSSuffix)
	}
	if s.PageSize < 0 {
		bad("pageSize %d: must not be negative", s.PageSize)
	}
	vaults := map[string]bool{}
	for i, v := range s.Vaults {
		p := fmt.Sprintf("vaults[%d] (%q)", i, v.Name)
		if !vaultNameRE.MatchString(v.Name) {
			bad("%s: name must match %s", p, vaultNameRE)
		}
		if vaults[strings.ToLower(v.Name)] {
			bad("%s: duplicate vault name", p)
		}
		vaults[strings.ToLower(v.Name)] = true
		if v.TenantID != "" && !tenantRE.MatchString(v.TenantID) {
			bad("%s: tenantID %q is invalid", p, v.TenantID)
		}
		if v.PageSize < 0 || v.PageSize > 25 {
			bad("%s: pageSize %d must be between 1 and 25 (0: the seed's)", p, v.PageSize)
		}
		// A certificate owns a secret and a key of the same name.
		secretNames, keyNames := map[string]string{}, map[string]string{}
		claim := func(m map[string]string, name, what string) {
			if prev, ok := m[strings.ToLower(name)]; ok {
				bad("%s: %s %q clashes with %s of the same name", p, what, name, prev)
			}
			m[strings.ToLower(name)] = what
		}
		for j, sec := range v.Secrets {
			q := fmt.Sprintf("%s.secrets[%d] (%q)", p, j, sec.Name)
			if !objectNameRE.MatchString(sec.Name) {
				bad("%s: name must match %s", q, objectNameRE)
			}
			claim(secretNames, sec.Name, "secret")
			if len(sec.Versions) == 0 {
				bad("%s: needs at least one version", q)
			}
			seen := map[string]bool{}
			for k, ver := range sec.Versions {
				checkTags(fmt.Sprintf("%s.versions[%d]", q, k), ver.Tags, bad)
				if ver.NotBefore != nil && ver.Expires != nil && !ver.NotBefore.Before(*ver.Expires) {
					bad("%s.versions[%d]: notBefore must be before expires", q, k)
				}
				if ver.Version == "" {
					continue
				}
				if !versionRE.MatchString(ver.Version) {
					bad("%s.versions[%d]: version %q must be letters and digits", q, k, ver.Version)
				}
				if seen[ver.Version] {
					bad("%s.versions[%d]: duplicate version %q", q, k, ver.Version)
				}
				seen[ver.Version] = true
			}
		}
		for j, k := range v.Keys {
			q := fmt.Sprintf("%s.keys[%d] (%q)", p, j, k.Name)
			if !objectNameRE.MatchString(k.Name) {
				bad("%s: name must match %s", q, objectNameRE)
			}
			claim(keyNames, k.Name, "key")
			checkTags(q, k.Tags, bad)
			switch k.Kty {
			case "RSA", "RSA-HSM":
				if k.Size != 0 && (k.Size < 1024 || k.Size > 4096 || k.Size%8 != 0) {
					bad("%s: RSA size %d must be a multiple of 8 between 1024 and 4096", q, k.Size)
				}
			case "EC", "EC-HSM":
				if _, err := curveByName(k.Curve); err != nil {
					bad("%s: %v", q, err)
				}
			case "oct", "oct-HSM":
				if k.Size != 0 && k.Size != 128 && k.Size != 192 && k.Size != 256 {
					bad("%s: oct size %d must be 128, 192 or 256", q, k.Size)
				}
			default:
				bad("%s: kty %q must be one of RSA, RSA-HSM, EC, EC-HSM, oct, oct-HSM", q, k.Kty)
			}
			if k.Versions < 0 || k.Versions > 100 {
				bad("%s: versions %d must be between 0 and 100", q, k.Versions)
			}
		}
		for j, c := range v.Certificates {
			q := fmt.Sprintf("%s.certificates[%d] (%q)", p, j, c.Name)
			if !objectNameRE.MatchString(c.Name) {
				bad("%s: name must match %s", q, objectNameRE)
			}
			claim(secretNames, c.Name, "certificate")
			claim(keyNames, c.Name, "certificate")
			checkTags(q, c.Tags, bad)
			switch c.ContentType {
			case "", ContentTypePKCS12, ContentTypePEM:
			default:
				bad("%s: contentType %q must be %s or %s", q, c.ContentType, ContentTypePKCS12, ContentTypePEM)
			}
			switch c.KeyType {
			case "", "RSA", "EC":
			default:
				bad("%s: keyType %q must be RSA or EC", q, c.KeyType)
			}
			if c.Versions < 0 || c.Versions > 100 {
				bad("%s: versions %d must be between 0 and 100", q, c.Versions)
			}
			seen := map[string]bool{}
			for _, part := range c.Chain {
				switch part {
				case "leaf", "intermediate", "root":
				default:
					bad("%s: chain element %q must be leaf, intermediate or root", q, part)
				}
				if seen[part] {
					bad("%s: chain element %q repeated", q, part)
				}
				seen[part] = true
			}
			if len(c.Chain) > 0 && !seen["leaf"] {
				bad("%s: chain must contain leaf", q)
			}
		}
	}
	clients := map[string]string{}
	claimClient := func(id, what string) {
		if prev, ok := clients[strings.ToLower(id)]; ok {
			bad("%s: client ID %q already used by %s", what, id, prev)
		}
		clients[strings.ToLower(id)] = what
	}
	for i, sp := range s.ServicePrincipals {
		p := fmt.Sprintf("servicePrincipals[%d] (%q)", i, sp.ClientID)
		if sp.ClientID == "" {
			bad("%s: clientID is required", p)
		} else {
			claimClient(sp.ClientID, p)
		}
		if sp.TenantID != "" && !tenantRE.MatchString(sp.TenantID) {
			bad("%s: tenantID %q is invalid", p, sp.TenantID)
		}
		if len(sp.Secrets) == 0 && len(sp.Federated) == 0 {
			bad("%s: needs secrets or federated credentials", p)
		}
		for j, f := range sp.Federated {
			if f.Issuer == "" || f.Subject == "" {
				bad("%s.federated[%d]: issuer and subject are required", p, j)
			}
		}
	}
	systemAssigned := 0
	for i, mi := range s.ManagedIdentities {
		p := fmt.Sprintf("managedIdentities[%d] (%q)", i, mi.ClientID)
		if mi.ClientID == "" {
			bad("%s: clientID is required", p)
		} else {
			claimClient(mi.ClientID, p)
		}
		if mi.SystemAssigned {
			systemAssigned++
		}
	}
	if systemAssigned > 1 {
		bad("managedIdentities: at most one may be systemAssigned, found %d", systemAssigned)
	}
	for i, is := range s.Issuers {
		p := fmt.Sprintf("issuers[%d] (%q)", i, is.URL)
		if is.URL == "" {
			bad("%s: url is required", p)
		}
		if (is.PublicKeyFile == "") == (is.JWKSFile == "") {
			bad("%s: exactly one of publicKeyFile and jwksFile is required", p)
		}
		if is.URL == BuiltinIssuer {
			bad("%s: %s is built in and cannot be redefined", p, BuiltinIssuer)
		}
	}
	for i, g := range s.Grants {
		p := fmt.Sprintf("grants[%d]", i)
		if g.Identity == "" || g.Vault == "" {
			bad("%s: identity and vault are required", p)
		}
		for _, t := range g.Types {
			if t != "secret" && t != "key" && t != "certificate" {
				bad("%s: type %q must be secret, key or certificate", p, t)
			}
		}
	}
	return errors.Join(errs...)
}

func (s *Seed) tenant() string {
	if s.TenantID != "" {
		return s.TenantID
	}
	return DefaultTenantID
}

func (s *Seed) suffix() string {
	if s.KeyVaultDNSSuffix != "" {
		return s.KeyVaultDNSSuffix
	}
	return DefaultKeyVaultDNSSuffix
}

func (s *Seed) identityHeader() string {
	if s.IdentityHeader != "" {
		return s.IdentityHeader
	}
	return DefaultIdentityHeader
}

// SampleSeed is the built-in demo state: vault kv-demo with versioned
// secrets (one version disabled), RSA/EC/HSM keys, a PFX and a PEM
// certificate with chains, two service principals, two managed identities
// and grants for all of them.
func SampleSeed() *Seed {
	no := false
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(h int) *time.Time { t := t0.Add(time.Duration(h) * time.Hour); return &t }
	all := []string{"secret", "key", "certificate"}
	return &Seed{
		TenantID:      DefaultTenantID,
		Deterministic: true,
		Vaults: []Vault{{
			Name: "kv-demo",
			Secrets: []Secret{
				{Name: "db-password", Versions: []SecretVersion{
					{Value: "hunter1", ContentType: "text/plain", Created: at(0)},
					{Value: "hunter2", ContentType: "text/plain", Created: at(1)},
					{Value: "correct horse battery staple", ContentType: "text/plain", Created: at(2)},
				}},
				{Name: "api-key", Versions: []SecretVersion{
					{Value: "ak-0001", Created: at(0)},
					{Value: "ak-0002-revoked", Created: at(1), Enabled: &no},
					{Value: "ak-0003", Created: at(2)},
				}},
				{Name: "app-config", Versions: []SecretVersion{
					{Value: `{"featureX":true,"endpoint":"https://example.invalid"}`, ContentType: "application/json", Created: at(0),
						Tags: map[string]string{"owner": "demo"}},
				}},
			},
			Keys: []Key{
				{Name: "signing-rsa", Kty: "RSA", Size: 2048, Versions: 2},
				{Name: "signing-ec", Kty: "EC", Curve: "P-256"},
				{Name: "hsm-rsa", Kty: "RSA-HSM", Size: 2048},
				{Name: "hsm-ec", Kty: "EC-HSM", Curve: "P-384"},
			},
			Certificates: []Certificate{
				{Name: "web-tls", ContentType: ContentTypePKCS12, KeyType: "RSA", Subject: "web.kv-demo.test", Versions: 2},
				{Name: "web-tls-pem", ContentType: ContentTypePEM, KeyType: "EC", Subject: "pem.kv-demo.test"},
			},
		}},
		ServicePrincipals: []ServicePrincipal{
			{ClientID: "11111111-1111-1111-1111-111111111111", Secrets: []string{"demo-client-secret"}},
			{ClientID: "22222222-2222-2222-2222-222222222222", Federated: []FederatedCredential{
				{Issuer: BuiltinIssuer, Subject: "system:serviceaccount:default:demo-sa"},
			}},
		},
		ManagedIdentities: []ManagedIdentity{
			{ClientID: "33333333-3333-3333-3333-333333333333", SystemAssigned: true},
			{ClientID: "44444444-4444-4444-4444-444444444444"},
		},
		Grants: []Grant{
			{Identity: "11111111-1111-1111-1111-111111111111", Vault: "kv-demo", Types: all},
			{Identity: "22222222-2222-2222-2222-222222222222", Vault: "kv-demo", Types: all},
			{Identity: "33333333-3333-3333-3333-333333333333", Vault: "kv-demo", Types: []string{"secret"}},
			{Identity: "44444444-4444-4444-4444-444444444444", Vault: "kv-demo", Types: all},
		},
	}
}
