// Package config turns the strings of a driver MountRequest (the SecretProviderClass
// parameters, the nodePublishSecretRef secret and the file permission) into one validated
// MountConfig. It is pure: no I/O, no logging, no environment.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// SecretProviderClass parameter keys, as Azure's provider reads them.
const (
	KeyVaultName           = "keyvaultName"
	TenantID               = "tenantID"
	TenantIDLegacy         = "tenantId"
	Objects                = "objects"
	CloudName              = "cloudName"
	CloudEnvFileName       = "cloudEnvFileName"
	UseVMManagedIdentity   = "useVMManagedIdentity"
	UserAssignedIdentityID = "userAssignedIdentityID"
	ClientID               = "clientID"
	UsePodIdentity         = "usePodIdentity"
	UseAzureTokenProxy     = "useAzureTokenProxy"

	PodName              = "csi.storage.k8s.io/pod.name"
	PodNamespace         = "csi.storage.k8s.io/pod.namespace"
	PodUID               = "csi.storage.k8s.io/pod.uid"
	ServiceAccountName   = "csi.storage.k8s.io/serviceAccount.name"
	ServiceAccountTokens = "csi.storage.k8s.io/serviceAccount.tokens" //nolint:gosec // a parameter name, not a credential
)

// WorkloadIdentityAudience is the audience of the service account token that Entra ID
// accepts as a client assertion.
const WorkloadIdentityAudience = "api://AzureADTokenExchange"

// Cloud names, in their canonical spelling.
const (
	AzurePublicCloud       = "AzurePublicCloud"
	AzureChinaCloud        = "AzureChinaCloud"
	AzureUSGovernmentCloud = "AzureUSGovernmentCloud"
	AzureStackCloud        = "AzureStackCloud"
)

// cloudNames maps every name go-autorest's EnvironmentFromName accepts (Azure's provider reads
// cloudName and --cloud-name with it), upper-cased since it ignores case, to the canonical name;
// cloudNamesInErrors is what an error offers.
var (
	cloudNames = map[string]string{
		"AZUREPUBLICCLOUD":       AzurePublicCloud,
		"AZURECLOUD":             AzurePublicCloud,
		"AZURECHINACLOUD":        AzureChinaCloud,
		"AZUREUSGOVERNMENTCLOUD": AzureUSGovernmentCloud,
		"AZUREUSGOVERNMENT":      AzureUSGovernmentCloud,
		"AZURESTACKCLOUD":        AzureStackCloud,
	}
	cloudNamesInErrors = strings.Join([]string{AzurePublicCloud, AzureChinaCloud, AzureUSGovernmentCloud, AzureStackCloud}, ", ")
)

// ParseCloudName returns the canonical spelling of a cloud name that go-autorest accepts (in any
// letter case, with AzureCloud and AzureUSGovernment as aliases), or an error that says which names
// exist; the retired Azure Germany cloud gets an error that says so.
func ParseCloudName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if c, ok := cloudNames[strings.ToUpper(name)]; ok {
		return c, nil
	}
	if strings.EqualFold(name, "AzureGermanCloud") {
		return "", errors.New("AzureGermanCloud was retired (Microsoft Cloud Deutschland closed in October 2021): move the vault to a region of AzurePublicCloud and set that cloud")
	}
	return "", fmt.Errorf("%q is not one of %s (case-insensitive; AzureCloud and AzureUSGovernment are accepted too)", truncate(name, 64), cloudNamesInErrors)
}

// IdentityBindingAudience is the audience of the service account token that the AKS token proxy
// exchanges for an identity binding (useAzureTokenProxy).
const IdentityBindingAudience = "api://AKSIdentityBinding"

// IdentityMode is how a mount authenticates to Entra ID. IdentityPrecedence says how Parse picks it.
type IdentityMode int

// The identity modes. The values are stable; the order of precedence is IdentityPrecedence's.
const (
	WorkloadIdentity IdentityMode = iota + 1
	ManagedIdentity
	ServicePrincipal
	// IdentityBinding is an AKS identity binding: the pod's service account token for
	// IdentityBindingAudience, exchanged through the AKS token proxy (useAzureTokenProxy).
	IdentityBinding
)

func (m IdentityMode) String() string {
	switch m {
	case WorkloadIdentity:
		return "workload identity"
	case ManagedIdentity:
		return "managed identity"
	case ServicePrincipal:
		return "service principal"
	case IdentityBinding:
		return "identity binding"
	}
	return "unknown"
}

// TokenAudience is the audience of the service account token the mode exchanges (Identity.Token),
// or "" for the modes that use none.
func (m IdentityMode) TokenAudience() string {
	switch m {
	case WorkloadIdentity:
		return WorkloadIdentityAudience
	case IdentityBinding:
		return IdentityBindingAudience
	}
	return ""
}

// IdentityRule is one step of the order in which Parse picks a mount's identity.
type IdentityRule struct {
	// When is the condition, in SecretProviderClass terms.
	When string
	// Then is the identity used, or why the mount is refused.
	Then string
}

// IdentityPrecedence describes, in order, how Parse picks a mount's identity: the first rule whose
// condition holds decides. It is upstream v1.8.2's order (pod identity is refused instead of used);
// identity_test.go checks Parse against it for every combination of the inputs, and README.md's
// table is rendered from it (IdentityPrecedenceMarkdown).
func IdentityPrecedence() []IdentityRule {
	return []IdentityRule{
		{
			When: "more than one of `usePodIdentity`, `useVMManagedIdentity`, `useAzureTokenProxy` is `\"true\"`",
			Then: "refused: only one identity mode may be enabled",
		},
		{
			When: "`useAzureTokenProxy: \"true\"`",
			Then: "identity binding: `clientID` (the user-assigned identity) and a service account token for `" + IdentityBindingAudience +
				"` are required; the token is exchanged through the AKS token proxy",
		},
		{
			When: "`clientID` is set and the driver sent no service account token for `" + WorkloadIdentityAudience + "`",
			Then: "refused: the token is required whenever `clientID` is set, even with `usePodIdentity` or `useVMManagedIdentity`",
		},
		{
			When: "`usePodIdentity: \"true\"`",
			Then: "refused: aad-pod-identity is retired (upstream uses it)",
		},
		{
			When: "`useVMManagedIdentity: \"true\"`",
			Then: "managed identity of the node: `userAssignedIdentityID`, or system-assigned when empty; `clientID` is ignored",
		},
		{
			When: "`clientID` is set",
			Then: "workload identity: the service account token for `" + WorkloadIdentityAudience + "` exchanged with Entra ID",
		},
		{
			When: "otherwise",
			Then: "service principal from the `nodePublishSecretRef` Secret (`clientid`, `clientsecret`); refused when it is missing or lacks a key",
		},
	}
}

// IdentityPrecedenceMarkdown renders IdentityPrecedence as the rows of a Markdown table with the
// columns "#", "When" and "Identity".
func IdentityPrecedenceMarkdown() string {
	var b strings.Builder
	b.WriteString("| # | When | Identity |\n|---|---|---|\n")
	for i, r := range IdentityPrecedence() {
		fmt.Fprintf(&b, "| %d | %s | %s |\n", i+1, r.When, r.Then)
	}
	return b.String()
}

// Identity is who a mount authenticates as. It holds credentials, so it never prints them.
type Identity struct {
	Mode IdentityMode
	// ClientID is the application (client) ID for workload identity and service principal, the
	// user-assigned identity's client ID for identity binding, and for managed identity the
	// user-assigned identity's client ID ("" = system-assigned).
	ClientID string
	// ClientSecret is the service principal's secret.
	ClientSecret string
	// Token is the pod's service account token for Mode.TokenAudience(): WorkloadIdentityAudience
	// for workload identity, IdentityBindingAudience for identity binding; "" for the other modes.
	Token string
}

// String describes the identity without any credential.
func (i Identity) String() string {
	switch {
	case i.Mode == ManagedIdentity && i.ClientID == "":
		return "managed identity (system-assigned)"
	case i.Mode == ManagedIdentity:
		return fmt.Sprintf("managed identity (client ID %s)", i.ClientID)
	}
	return fmt.Sprintf("%s (client ID %s)", i.Mode, i.ClientID)
}

// MarshalLog keeps credentials out of structured logs.
func (i Identity) MarshalLog() any { return i.String() }

// GoString keeps credentials out of %#v.
func (i Identity) GoString() string { return i.String() }

// ObjectType is the kind of Key Vault object to read.
type ObjectType string

// Object types, spelled as in the SecretProviderClass.
const (
	TypeSecret ObjectType = "secret"
	TypeKey    ObjectType = "key"
	TypeCert   ObjectType = "cert"
)

// Object formats and encodings.
const (
	FormatPEM = "pem"
	FormatPFX = "pfx"
	// FormatKey and FormatChain write a certificate's private key alone (PKCS#8 PEM) or its
	// certificate chain alone (PEM, leaf first): the two parts of its pem output.
	FormatKey   = "key"
	FormatChain = "chain"
	// FormatMetadata writes a JSON document of the object version's properties instead of its
	// value; it applies to every object type.
	FormatMetadata = "metadata"

	EncodingUTF8   = "utf-8"
	EncodingBase64 = "base64"
	EncodingHex    = "hex"
)

// formats are the objectFormat values, in the order errors list them.
var formats = []string{FormatPEM, FormatPFX, FormatKey, FormatChain, FormatMetadata}

func knownFormat(f string) bool { return slices.Contains(formats, f) }

// Object is one entry of the objects array, validated and normalized.
type Object struct {
	Name    string
	Type    ObjectType
	Alias   string
	Version string // "" means the current version
	// History is the number of versions to write (objectVersionHistory); 0 means one file.
	History  int
	Format   string // FormatPEM or FormatPFX
	Encoding string // EncodingUTF8, EncodingBase64 or EncodingHex
	Mode     fs.FileMode
	// JSONKey (objectJSONKey) writes one member of a secret whose value is JSON: an exact
	// top-level key, else a JMESPath expression. "" writes the whole value.
	JSONKey string
	// Optional (objectOptional) skips the object when Key Vault says it is absent, deleted or
	// disabled, instead of failing the mount.
	Optional bool
	// VaultName (keyvaultName on the object) reads the object from another vault of the same cloud
	// and tenant, with the mount's identity; "" is the mount's vault (MountConfig.Vault).
	VaultName string
	// NamePrefix (objectNamePrefix) and Tags (objectTags) make the entry a selection instead of
	// one named object: every enabled, current object of Type whose name starts with NamePrefix
	// and that carries every tag in Tags (compared exactly), one file each, named by its name under
	// Alias as a directory. The other fields apply to each match.
	NamePrefix string
	Tags       map[string]string
	// PFXPasswordSecret (objectPFXPasswordSecret), with objectFormat pfx, names a secret of the
	// same vault whose value is the password the PKCS#12 is re-encrypted with, by PFXEncryption.
	PFXPasswordSecret string
	PFXEncryption     string // PFXModern (the default) or PFXLegacy; "" without a password secret
}

// PKCS#12 encryptions (objectPFXEncryption).
const (
	// PFXModern is AES-256-CBC with PBKDF2-HMAC-SHA-256 and an HMAC-SHA-256 MAC (OpenSSL 1.1.1+,
	// Java 12+, Windows Server 2019+).
	PFXModern = "modern"
	// PFXLegacy is 3DES with SHA-1, for old Java and Windows readers.
	PFXLegacy = "legacy"
)

// ValidObjectName reports whether name is a Key Vault object name (1-127 letters, digits and
// '-'), and so safe as a file name.
func ValidObjectName(name string) bool { return objectNameRE.MatchString(name) }

// Selection reports whether the entry selects objects by name prefix or tags.
func (o Object) Selection() bool { return o.NamePrefix != "" || len(o.Tags) > 0 }

// Matches reports whether an object named name with tags is selected by o.
func (o Object) Matches(name string, tags map[string]string) bool {
	if !strings.HasPrefix(name, o.NamePrefix) {
		return false
	}
	for k, v := range o.Tags {
		if got, ok := tags[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Match is the object that a selection's match name is mounted as: the entry's fields for that
// one object, its file named by the name under the entry's objectAlias directory.
func (o Object) Match(name string) Object {
	m := o
	m.Name, m.NamePrefix, m.Tags = name, "", nil
	if o.Alias != "" {
		m.Alias = path.Join(o.Alias, name)
	}
	return m
}

// selector describes a selection: its prefix and tags, in objectTags' own syntax.
func (o Object) selector() string {
	var parts []string
	if o.NamePrefix != "" {
		parts = append(parts, fmt.Sprintf("objectNamePrefix %q", o.NamePrefix))
	}
	if len(o.Tags) > 0 {
		pairs := make([]string, 0, len(o.Tags))
		for _, k := range sortedKeys(o.Tags) {
			pairs = append(pairs, k+"="+o.Tags[k])
		}
		parts = append(parts, fmt.Sprintf("objectTags %q", strings.Join(pairs, ",")))
	}
	return strings.Join(parts, " and ")
}

// FileName is the path the object is written to, relative to the mount.
func (o Object) FileName() string {
	if o.Alias != "" {
		return o.Alias
	}
	return o.Name
}

// ID is how the object is reported in MountResponse.ObjectVersion.
func (o Object) ID() string { return string(o.Type) + "/" + o.Name }

// Describe names the object in errors: type, name and version.
func (o Object) Describe() string {
	if o.Selection() {
		return fmt.Sprintf("%ss selected by %s", o.Type, o.selector())
	}
	v := o.Version
	if v == "" {
		v = "latest"
	}
	return fmt.Sprintf("%s %q (version %s)", o.Type, o.Name, v)
}

// Pod is the pod a mount is for, as the driver reports it.
type Pod struct {
	Namespace, Name, UID, ServiceAccount string
}

func (p Pod) String() string { return p.Namespace + "/" + p.Name }

// MountConfig is everything a mount needs, validated.
type MountConfig struct {
	VaultName    string
	TenantID     string
	CloudName    string
	CloudEnvFile string
	Identity     Identity
	Pod          Pod
	Objects      []Object
	// Rotation marks a mount that carries the versions already written (the driver's rotation
	// reconciler sends them): it must read fresh values, never kept ones.
	Rotation bool
	// Warnings are what Parse accepted as Azure's provider does but that is likely a mistake
	// (fields no provider reads, mode bits that are not written); the provider logs them once per
	// mount. At most MaxWarnings, the last one saying how many more there were.
	Warnings []string
}

// Vault is the name of the vault o is read from: its own keyvaultName, else the mount's.
func (c MountConfig) Vault(o Object) string {
	if o.VaultName != "" {
		return o.VaultName
	}
	return c.VaultName
}

// Vaults lists the distinct vaults the mount reads, the mount's own first.
func (c MountConfig) Vaults() []string {
	vaults := []string{c.VaultName}
	for _, o := range c.Objects {
		if v := c.Vault(o); !slices.Contains(vaults, v) {
			vaults = append(vaults, v)
		}
	}
	return vaults
}

// CanonicalVaultName is the one spelling of a vault name: Key Vault names are case-insensitive
// (Kv-Int and kv-int are one vault), so everything keyed by a vault (its URL, the rate limiter,
// proof of access, kept results) uses the lower-case name.
func CanonicalVaultName(name string) string { return strings.ToLower(name) }

// Defaults are the daemon-wide settings a SecretProviderClass may override.
type Defaults struct {
	CloudName string
	// CloudEnvFile is the Azure Stack environment file of a mount that names AzureStackCloud
	// (or gets it from CloudName) without cloudEnvFileName. Azure's provider takes it from the
	// environment variable AzureEnvironmentFileVar, which go-autorest reads.
	CloudEnvFile string
}

// AzureEnvironmentFileVar is go-autorest's variable for the Azure Stack environment file.
const AzureEnvironmentFileVar = "AZURE_ENVIRONMENT_FILEPATH"

var vaultNameRE = regexp.MustCompile(`^[-A-Za-z0-9]{3,24}$`)

// Bounds on what one mount request may ask for. They are checked before anything is allocated per
// requested item, so no SecretProviderClass can make the provider's memory or time grow past them.
const (
	// MaxAttributesBytes bounds the whole attributes JSON (every SecretProviderClass parameter
	// plus what the driver adds) and MaxSecretsBytes the nodePublishSecretRef JSON. A
	// SecretProviderClass is a Kubernetes object, which etcd keeps under 1.5 MiB; 1 MiB of
	// parameters is far more than any needs, and bounds what each of the concurrent mounts holds.
	MaxAttributesBytes = 1 << 20
	MaxSecretsBytes    = 64 << 10
	// MaxObjectsBytes bounds the objects parameter; MaxParameterBytes every other parameter
	// (the driver's service account tokens included).
	MaxObjectsBytes   = 64 << 10
	MaxParameterBytes = 16 << 10
	// MaxObjects bounds the entries of the objects array.
	MaxObjects = 256
	// MaxVersionHistory bounds objectVersionHistory; MaxFiles the files of one mount (every
	// object counts max(1, objectVersionHistory)).
	MaxVersionHistory = 100
	MaxFiles          = 1000
	// MaxVaults bounds the distinct vaults of one mount (keyvaultName on objects): each is a Key
	// Vault client of the mount's identity, with its own challenge, token and connections (about
	// 15 KiB kept per vault and identity, 30 KiB per open connection).
	MaxVaults = 8
	// MaxAliasLength bounds objectAlias (Linux allows 255 bytes per path element).
	MaxAliasLength = 255
	// MaxJSONKeyLength bounds objectJSONKey (a key name or a JMESPath expression).
	MaxJSONKeyLength = 512
)

// Parse validates a mount request before any network call. It reports every problem at once.
// attributes and secrets are the JSON maps the driver sends; permission is the JSON-encoded
// default file mode (for example "420").
//
// On a validation error the returned MountConfig carries only what identifies the request in a log
// (the pod and the vault name) and the warnings; it must not be mounted.
func Parse(attributes, secrets, permission string, d Defaults) (MountConfig, error) {
	return parse(attributes, secrets, permission, d, nil)
}

// parse is Parse, with the objects parameter parsed through memo (nil: parsed every time).
func parse(attributes, secrets, permission string, d Defaults, memo *Memo) (MountConfig, error) {
	if len(attributes) > MaxAttributesBytes {
		return MountConfig{}, fmt.Errorf("the mount request's parameters are %d bytes, more than the %d allowed", len(attributes), MaxAttributesBytes)
	}
	if len(secrets) > MaxSecretsBytes {
		return MountConfig{}, fmt.Errorf("the nodePublishSecretRef secret is %d bytes, more than the %d allowed", len(secrets), MaxSecretsBytes)
	}
	var attrs map[string]string
	if err := json.Unmarshal([]byte(attributes), &attrs); err != nil {
		return MountConfig{}, fmt.Errorf("attributes are not a JSON object of strings: %w", err)
	}
	var secretMap map[string]string
	if strings.TrimSpace(secrets) != "" {
		if err := json.Unmarshal([]byte(secrets), &secretMap); err != nil {
			return MountConfig{}, errors.New("nodePublishSecretRef secret is not a JSON object of strings")
		}
	}
	defaultMode, err := parsePermission(permission)
	if err != nil {
		return MountConfig{}, err
	}
	return parseAttributes(attrs, secretMap, defaultMode, d, memo)
}

func parsePermission(permission string) (fs.FileMode, error) {
	var mode uint32
	if err := json.Unmarshal([]byte(permission), &mode); err != nil || mode > 0o777 {
		return 0, fmt.Errorf("permission %q from the driver is not a file mode between 0 and 0777 in decimal", truncate(permission, 32))
	}
	return fs.FileMode(mode), nil
}

func parseAttributes(attrs, secrets map[string]string, defaultMode fs.FileMode, d Defaults, memo *Memo) (MountConfig, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for _, k := range sortedKeys(attrs) {
		limit := MaxParameterBytes
		if k == Objects {
			limit = MaxObjectsBytes
		}
		if len(attrs[k]) > limit {
			bad("parameter %q is %d bytes, more than the %d allowed", truncate(k, 64), len(attrs[k]), limit)
			delete(attrs, k) // judged: nothing below reads it
		}
	}
	get := func(k string) string { return strings.TrimSpace(attrs[k]) }

	c := MountConfig{
		VaultName:    get(KeyVaultName),
		TenantID:     get(TenantID),
		CloudEnvFile: get(CloudEnvFileName),
		Pod: Pod{
			Namespace:      get(PodNamespace),
			Name:           get(PodName),
			UID:            get(PodUID),
			ServiceAccount: get(ServiceAccountName),
		},
	}
	if c.TenantID == "" {
		c.TenantID = get(TenantIDLegacy)
	}

	switch {
	case c.VaultName == "":
		bad("%s is required", KeyVaultName)
	case !vaultNameRE.MatchString(c.VaultName):
		bad("%s %q must be 3-24 characters of letters, digits and '-'", KeyVaultName, truncate(c.VaultName, 64))
	default:
		c.VaultName = CanonicalVaultName(c.VaultName)
	}
	if c.TenantID == "" {
		bad("%s is required (the Entra ID tenant of the vault)", TenantID)
	}

	var err error
	cloud := get(CloudName)
	if cloud == "" {
		cloud = d.CloudName
	}
	if cloud == "" {
		cloud = AzurePublicCloud
	}
	if c.CloudName, err = ParseCloudName(cloud); err != nil {
		bad("%s %w", CloudName, err)
	}
	if c.CloudName == AzureStackCloud && c.CloudEnvFile == "" {
		c.CloudEnvFile = d.CloudEnvFile
	}
	if c.CloudName == AzureStackCloud && c.CloudEnvFile == "" {
		bad("%s is required when %s is %s: the path of the Azure environment JSON file on the node (or set %s in the provider's environment)",
			CloudEnvFileName, CloudName, AzureStackCloud, AzureEnvironmentFileVar)
	}

	identity, identityErrs := parseIdentity(attrs, secrets)
	c.Identity = identity
	errs = append(errs, identityErrs...)

	objects, warnings, objectErrs := memo.objects(attrs[Objects], defaultMode)
	c.Objects, c.Warnings = objects, warnings
	errs = append(errs, objectErrs...)
	if len(objectErrs) == 0 {
		if n := len(c.Vaults()); n > MaxVaults {
			bad("%s name %d vaults (the mount's %s and each object's), more than the %d allowed in one mount: split the SecretProviderClass", Objects, n, KeyVaultName, MaxVaults)
		}
	}

	if len(errs) > 0 {
		return MountConfig{VaultName: truncate(c.VaultName, 64), Pod: Pod{
			Namespace: truncate(c.Pod.Namespace, 253), Name: truncate(c.Pod.Name, 253)}, Warnings: c.Warnings}, errors.Join(errs...)
	}
	return c, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// truncate shortens s to at most n bytes for a message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func parseBool(attrs map[string]string, key string) (bool, error) {
	v := strings.TrimSpace(attrs[key])
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s %q must be \"true\" or \"false\"", key, truncate(v, 32))
	}
	return b, nil
}

func parseIdentity(attrs, secrets map[string]string) (Identity, []error) {
	id, _, errs := decideIdentity(attrs, secrets)
	return id, errs
}

// IdentityRuleFor returns the number (1-based) of the rule of IdentityPrecedence that decides the
// identity of a mount with these attributes and nodePublishSecretRef secret, as Parse applies it,
// whether the rule picks an identity or refuses the mount; 0 when an identity flag is not "true"
// or "false".
func IdentityRuleFor(attributes, secrets map[string]string) int {
	_, rule, _ := decideIdentity(attributes, secrets)
	return rule
}

// decideIdentity is parseIdentity that also returns the deciding rule (see IdentityRuleFor).
func decideIdentity(attrs, secrets map[string]string) (Identity, int, []error) {
	var errs []error
	flag := func(key string) bool {
		b, err := parseBool(attrs, key)
		if err != nil {
			errs = append(errs, err)
		}
		return b
	}
	podIdentity := flag(UsePodIdentity)
	useVMMI := flag(UseVMManagedIdentity)
	tokenProxy := flag(UseAzureTokenProxy)
	if len(errs) > 0 {
		return Identity{}, 0, errs
	}
	clientID := strings.TrimSpace(attrs[ClientID])
	podIdentityErr := fmt.Errorf("%s is not supported: aad-pod-identity is retired; use workload identity instead "+
		"(set %s to the client ID of an identity with a federated credential for the pod's service account, and remove %s)",
		UsePodIdentity, ClientID, UsePodIdentity)

	// The steps of IdentityPrecedence, in its order.
	// 1. At most one identity mode.
	var enabled []string
	for _, f := range []struct {
		on  bool
		key string
	}{{podIdentity, UsePodIdentity}, {useVMMI, UseVMManagedIdentity}, {tokenProxy, UseAzureTokenProxy}} {
		if f.on {
			enabled = append(enabled, f.key)
		}
	}
	if len(enabled) > 1 {
		both := "both"
		if len(enabled) > 2 {
			both = "all"
		}
		errs = append(errs, fmt.Errorf("only one identity mode can be enabled at a time, but %s and %s are %s \"true\": keep one of %s, %s, %s",
			strings.Join(enabled[:len(enabled)-1], ", "), enabled[len(enabled)-1], both, UsePodIdentity, UseVMManagedIdentity, UseAzureTokenProxy))
		if podIdentity {
			errs = append(errs, podIdentityErr)
		}
		return Identity{}, 1, errs
	}

	// 2. Identity binding: clientID and the token for IdentityBindingAudience.
	if tokenProxy {
		if clientID == "" {
			errs = append(errs, fmt.Errorf("%s is required when %s is \"true\": set it to the client ID of the user-assigned managed identity of the AKS identity binding",
				ClientID, UseAzureTokenProxy))
		}
		token, err := workloadIdentityToken(attrs[ServiceAccountTokens], IdentityBinding)
		if err != nil {
			errs = append(errs, err)
		}
		if len(errs) > 0 {
			return Identity{}, 2, errs
		}
		return Identity{Mode: IdentityBinding, ClientID: clientID, Token: token}, 2, nil
	}

	// 3. With clientID, the token for WorkloadIdentityAudience is required, whatever the mode.
	var token string
	rule := 4 // below, only pod identity refuses the mount, unless the token is missing
	if clientID != "" {
		var err error
		if token, err = workloadIdentityToken(attrs[ServiceAccountTokens], WorkloadIdentity); err != nil {
			errs = append(errs, err)
			rule = 3
		}
	}
	// 4. Pod identity: refused.
	if podIdentity {
		errs = append(errs, podIdentityErr)
	}
	if len(errs) > 0 {
		return Identity{}, rule, errs
	}
	switch {
	case useVMMI: // 5. Managed identity; clientID is ignored.
		return Identity{Mode: ManagedIdentity, ClientID: strings.TrimSpace(attrs[UserAssignedIdentityID])}, 5, nil
	case clientID != "": // 6. Workload identity.
		return Identity{Mode: WorkloadIdentity, ClientID: clientID, Token: token}, 6, nil
	}

	// 7. Service principal.
	var id, secret string
	for k, v := range secrets {
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "clientid":
			id = strings.TrimSpace(v)
		case "clientsecret":
			secret = v
		}
	}
	switch {
	case len(secrets) == 0:
		errs = append(errs, fmt.Errorf("no identity configured: set %s for workload identity (with %s: \"true\" for an AKS identity binding), "+
			"%s: \"true\" for a VM managed identity, or nodePublishSecretRef to a Secret with clientid and clientsecret for a service principal",
			ClientID, UseAzureTokenProxy, UseVMManagedIdentity))
	case id == "" || secret == "":
		var missing []string
		if id == "" {
			missing = append(missing, "clientid")
		}
		if secret == "" {
			missing = append(missing, "clientsecret")
		}
		errs = append(errs, fmt.Errorf("nodePublishSecretRef secret has no %s: it needs the keys clientid and clientsecret of a service principal",
			strings.Join(missing, " and ")))
	}
	return Identity{Mode: ServicePrincipal, ClientID: id, ClientSecret: secret}, 7, errs
}

// workloadIdentityToken picks the service account token for mode's audience (WorkloadIdentity or
// IdentityBinding) from the driver's serviceAccount.tokens attribute.
func workloadIdentityToken(tokensJSON string, mode IdentityMode) (string, error) {
	audience := mode.TokenAudience()
	why := ClientID + " is set"
	if mode == IdentityBinding {
		why = UseAzureTokenProxy + ` is "true"`
	}
	missing := fmt.Errorf("%s but the driver sent no service account token for audience %q: "+
		"add {audience: %s} to tokenRequests of the secrets-store.csi.k8s.io CSIDriver "+
		"(Helm: tokenRequests in the driver chart values)", why, audience, audience)
	if strings.TrimSpace(tokensJSON) == "" {
		return "", missing
	}
	var tokens map[string]struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(tokensJSON), &tokens); err != nil {
		return "", fmt.Errorf("%s from the driver is not valid JSON", ServiceAccountTokens)
	}
	t := tokens[audience].Token
	if t == "" {
		return "", missing
	}
	return t, nil
}

// MaxWarnings bounds the warnings of one mount.
const MaxWarnings = 10

// warnings collects a mount's warnings, keeping the first MaxWarnings-1 and counting the rest.
type warnings struct {
	list    []string
	dropped int
}

func (w *warnings) add(format string, args ...any) {
	if len(w.list) < MaxWarnings-1 {
		w.list = append(w.list, fmt.Sprintf(format, args...))
		return
	}
	w.dropped++
}

func (w *warnings) result() []string {
	if w.dropped > 0 {
		return append(w.list, fmt.Sprintf("and %d more warnings like these", w.dropped))
	}
	return w.list
}

// unknownField warns of a field no provider reads, naming the known field closest to it.
func (w *warnings) unknownField(where, field string, known []string) {
	w.add("%s: field %q is not read by this provider or Azure's and is ignored (closest known field: %s)",
		where, truncate(field, 64), closest(field, known))
}

func parseObjects(raw string, defaultMode fs.FileMode) ([]Object, []string, []error) {
	if strings.TrimSpace(raw) == "" {
		return nil, nil, []error{fmt.Errorf("%s is required: a YAML document with an array of objects to mount", Objects)}
	}
	entries, unknown, missingArray, err := decodeObjectsArray(raw)
	if err != nil {
		return nil, nil, []error{err}
	}
	var warn warnings
	for _, k := range unknown {
		warn.unknownField(Objects, k, []string{"array"})
	}
	if missingArray {
		warn.add("%s has no \"array:\" key, so nothing is mounted: write objects: | array: - | objectName: <name>", Objects)
	}
	if len(entries) > MaxObjects {
		return nil, nil, []error{fmt.Errorf("%s has %d entries, more than the %d allowed in one SecretProviderClass: split it", Objects, len(entries), MaxObjects)}
	}
	var errs []error
	objects := make([]Object, 0, len(entries))
	for i, entry := range entries {
		o, objErrs := parseObject(entry, defaultMode, &warn, i)
		for _, e := range objErrs {
			errs = append(errs, fmt.Errorf("objects[%d] (%q): %w", i, truncate(o.Name, 127), e))
		}
		objects = append(objects, o)
	}
	if len(errs) == 0 {
		files := 0
		for _, o := range objects {
			files += max(1, o.History)
		}
		if files > MaxFiles {
			errs = append(errs, fmt.Errorf("%s would write %d files (objectVersionHistory counts each version), more than the %d allowed in one mount", Objects, files, MaxFiles))
		}
	}
	if len(errs) == 0 {
		errs = append(errs, checkPaths(objects)...)
	}
	return objects, warn.result(), errs
}

// closest returns the name of known nearest to name (edit distance, ignoring case).
func closest(name string, known []string) string {
	best, bestDistance := "", -1
	for _, k := range known {
		if d := editDistance(strings.ToLower(truncate(name, 64)), strings.ToLower(k)); bestDistance < 0 || d < bestDistance {
			best, bestDistance = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func parseObject(entry string, defaultMode fs.FileMode, warn *warnings, index int) (Object, []error) {
	var e objectEntry
	unknown, err := unmarshalEntry(entry, &e)
	if err != nil {
		return Object{}, []error{err}
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	o := Object{
		Name:      strings.TrimSpace(e.ObjectName),
		Type:      ObjectType(strings.ToLower(strings.TrimSpace(e.ObjectType))),
		Alias:     strings.TrimSpace(e.ObjectAlias),
		Version:   strings.TrimSpace(e.ObjectVersion),
		History:   int(e.ObjectVersionHistory),
		Format:    strings.ToLower(strings.TrimSpace(e.ObjectFormat)),
		Encoding:  strings.ToLower(strings.TrimSpace(e.ObjectEncoding)),
		Mode:      defaultMode,
		JSONKey:   e.ObjectJSONKey, // a key may hold spaces at its ends
		VaultName: strings.TrimSpace(e.KeyvaultName),
	}
	if strings.EqualFold(o.Version, "latest") {
		o.Version = ""
	}
	where := fmt.Sprintf("objects[%d] (%q)", index, truncate(o.Name, 127))
	for _, k := range unknown {
		warn.unknownField(where, k, objectFields())
	}
	errs = append(errs, parseSelection(&o, e)...)
	switch {
	case o.Selection():
	case o.Name == "":
		bad("objectName is required (or objectNamePrefix or objectTags, to select objects)")
	case !objectNameRE.MatchString(o.Name):
		bad("objectName %q must be 1-127 characters of letters, digits and '-'", truncate(o.Name, 127))
	}
	if o.Version != "" && !versionRE.MatchString(o.Version) {
		bad("objectVersion %q must be empty, \"latest\" or a version id of letters and digits", truncate(o.Version, 64))
	}
	switch o.Type {
	case TypeSecret, TypeKey, TypeCert:
	case "":
		bad("objectType is required: one of secret, key, cert")
	default:
		bad("objectType %q is not one of secret, key, cert", truncate(e.ObjectType, 32))
	}
	switch {
	case o.Format == "":
		o.Format = FormatPEM
	case !knownFormat(o.Format):
		bad("objectFormat %q is not one of %s", truncate(e.ObjectFormat, 32), strings.Join(formats, ", "))
	case o.Type != TypeSecret && o.Type != "" && o.Format != FormatMetadata && o.Format != FormatPEM:
		bad("objectFormat %s is only allowed for objectType secret (a certificate's secret), not %s", o.Format, o.Type)
	}
	if (o.Format == FormatKey || o.Format == FormatChain || o.Format == FormatMetadata) && o.Encoding != "" && o.Encoding != EncodingUTF8 {
		bad("objectEncoding %s cannot be combined with objectFormat %s: the file is text", o.Encoding, o.Format)
	}
	switch o.Encoding {
	case "":
		o.Encoding = EncodingUTF8
	case EncodingUTF8, EncodingBase64, EncodingHex:
		if o.Type != TypeSecret && o.Type != "" {
			bad("objectEncoding is only allowed for objectType secret, not %s", o.Type)
		}
	default:
		bad("objectEncoding %q is not one of utf-8, base64, hex", truncate(e.ObjectEncoding, 32))
	}
	switch {
	case o.History < 0:
		warn.add("%s: objectVersionHistory %d is negative: one version is mounted, as Azure's provider does", where, o.History)
		o.History = 0
	case o.History > MaxVersionHistory:
		bad("objectVersionHistory %d is more than the %d allowed", o.History, MaxVersionHistory)
		o.History = 0 // nothing below may allocate per requested version
	}
	if o.History == 1 {
		o.History = 0 // one version is the ordinary single file
	}
	errs = append(errs, checkJSONKey(o)...)
	errs = append(errs, parsePFXPassword(&o, e)...)
	if o.VaultName != "" {
		if vaultNameRE.MatchString(o.VaultName) {
			o.VaultName = CanonicalVaultName(o.VaultName)
		} else {
			bad("%s %q must be 3-24 characters of letters, digits and '-'", KeyVaultName, truncate(o.VaultName, 64))
		}
	}
	if v := strings.TrimSpace(e.ObjectOptional); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad("objectOptional %q must be \"true\" or \"false\"", truncate(v, 32))
		}
		o.Optional = b
	}
	if p := strings.TrimSpace(e.FilePermission); p != "" {
		m, err := parseFileMode(p)
		if err != nil {
			bad("%v", err)
		}
		if m&^fs.ModePerm != 0 {
			warn.add("%s: filePermission %q has bits beyond 0777, which are not written (the driver writes a file's permission bits only): the file's mode is %04o",
				where, p, m&fs.ModePerm)
		}
		o.Mode = m & fs.ModePerm
	}
	if len(o.Alias) > MaxAliasLength {
		bad("objectAlias of %d characters is longer than the %d allowed", len(o.Alias), MaxAliasLength)
		o.Alias = truncate(o.Alias, 32)
	} else if o.Alias != "" {
		clean, err := cleanRelativePath("objectAlias", o.Alias)
		if err != nil {
			errs = append(errs, err)
		}
		o.Alias = clean
	}
	return o, errs
}

// MaxTags bounds objectTags: Key Vault keeps at most 15 tags per object.
const MaxTags = 15

// parseSelection reads objectNamePrefix and objectTags into o and refuses what a selection cannot
// be combined with.
func parseSelection(o *Object, e objectEntry) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	o.NamePrefix = strings.TrimSpace(e.ObjectNamePrefix)
	if o.NamePrefix != "" && !objectNameRE.MatchString(o.NamePrefix) {
		bad("objectNamePrefix %q must be 1-127 characters of letters, digits and '-'", truncate(o.NamePrefix, 127))
	}
	if raw := strings.TrimSpace(e.ObjectTags); raw != "" {
		pairs := strings.Split(raw, ",")
		if len(pairs) > MaxTags {
			bad("objectTags has %d tags, more than the %d Key Vault keeps per object", len(pairs), MaxTags)
			pairs = nil
		}
		o.Tags = make(map[string]string, len(pairs))
		for _, pair := range pairs {
			k, v, ok := strings.Cut(pair, "=")
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			_, dup := o.Tags[k]
			switch {
			case !ok || k == "":
				bad("objectTags %q must be name=value pairs separated by commas, such as \"env=prod,team=payments\"", truncate(raw, 64))
			case len(k) > 512 || len(v) > 256:
				bad("objectTags: tag %q is longer than Key Vault allows (names 512, values 256 characters)", truncate(k, 64))
			case dup:
				bad("objectTags names tag %q twice", truncate(k, 64))
			default:
				o.Tags[k] = v
			}
		}
	}
	if !o.Selection() {
		o.Tags = nil
		return errs
	}
	if o.Name != "" {
		bad("objectName cannot be combined with objectNamePrefix or objectTags: name one object, or select objects by prefix and tags")
	}
	if o.Type != TypeSecret && o.Type != TypeCert && o.Type != "" {
		bad("objectNamePrefix and objectTags select secrets or certificates, not %s", o.Type)
	}
	if o.Version != "" || e.ObjectVersionHistory > 1 {
		bad("objectVersion and objectVersionHistory cannot be combined with objectNamePrefix or objectTags: a selection mounts each match's current version")
	}
	if strings.TrimSpace(e.ObjectOptional) != "" {
		bad("objectOptional cannot be combined with objectNamePrefix or objectTags: a selection that matches nothing writes nothing")
	}
	return errs
}

// parsePFXPassword reads objectPFXPasswordSecret and objectPFXEncryption into o.
func parsePFXPassword(o *Object, e objectEntry) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	o.PFXPasswordSecret = strings.TrimSpace(e.ObjectPFXPassword)
	enc := strings.ToLower(strings.TrimSpace(e.ObjectPFXEncryption))
	if o.PFXPasswordSecret == "" {
		if enc != "" {
			bad("objectPFXEncryption needs objectPFXPasswordSecret: name the secret that holds the password")
		}
		return errs
	}
	if !objectNameRE.MatchString(o.PFXPasswordSecret) {
		bad("objectPFXPasswordSecret %q must be a secret name of 1-127 letters, digits and '-'", truncate(o.PFXPasswordSecret, 127))
	}
	if o.Format != FormatPFX || o.Type != TypeSecret {
		bad("objectPFXPasswordSecret needs objectType secret and objectFormat pfx: it protects a certificate's PKCS#12")
	}
	switch enc {
	case "":
		o.PFXEncryption = PFXModern
	case PFXModern, PFXLegacy:
		o.PFXEncryption = enc
	default:
		bad("objectPFXEncryption %q is not one of %s, %s", truncate(enc, 32), PFXModern, PFXLegacy)
	}
	return errs
}

// checkJSONKey refuses an objectJSONKey that is too long, holds control characters, or is set on
// anything but a secret's value.
func checkJSONKey(o Object) []error {
	if o.JSONKey == "" {
		return nil
	}
	var errs []error
	switch {
	case len(o.JSONKey) > MaxJSONKeyLength:
		errs = append(errs, fmt.Errorf("objectJSONKey of %d characters is longer than the %d allowed", len(o.JSONKey), MaxJSONKeyLength))
	case strings.ContainsFunc(o.JSONKey, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		errs = append(errs, errors.New("objectJSONKey must not contain control characters"))
	}
	if o.Type == TypeKey || o.Type == TypeCert {
		errs = append(errs, fmt.Errorf("objectJSONKey is only allowed for objectType secret, not %s: keys and certificates are not JSON", o.Type))
	}
	if o.Format != FormatPEM && knownFormat(o.Format) {
		errs = append(errs, fmt.Errorf("objectJSONKey cannot be combined with objectFormat %s: a JSON member has no certificate format", o.Format))
	}
	return errs
}

var (
	objectNameRE = regexp.MustCompile(`^[0-9A-Za-z-]{1,127}$`)
	versionRE    = regexp.MustCompile(`^[0-9A-Za-z]{1,64}$`)
	// fileModeRE is what Azure's provider accepts (strconv.ParseInt(p, 8, 32)) but a sign: a
	// negative mode becomes, through the driver's int32, every mode bit Go knows, setuid included.
	fileModeRE = regexp.MustCompile(`^\+?[0-7]+$`)
)

// parseFileMode reads filePermission as Azure's provider does: octal digits, any number of leading
// zeros, at most 0o17777777777. The caller keeps the permission bits only.
func parseFileMode(p string) (fs.FileMode, error) {
	m, err := strconv.ParseInt(p, 8, 32)
	if !fileModeRE.MatchString(p) || err != nil {
		return 0, fmt.Errorf("filePermission %q must be an octal mode such as \"0644\" or \"0400\"", truncate(p, 32))
	}
	return fs.FileMode(m), nil //nolint:gosec // m is in [0, 2^31): ParseInt with bitSize 32, and the regexp allows no minus sign
}

// cleanRelativePath refuses a path that could leave the mount: absolute, with a drive, with a ".."
// element (with / or \ as the separator, as the driver on Windows reads it) or a NUL. Other forms
// that Azure's provider passes and the driver cleans are cleaned here the same way (path.Clean:
// "./f" is "f", "a//b" is "a/b", "dir/" is "dir"), so paths are compared as they are written.
func cleanRelativePath(field, p string) (string, error) {
	switch {
	case strings.HasPrefix(p, "/") || strings.HasPrefix(p, `\`) || (len(p) > 1 && p[1] == ':'):
		return p, fmt.Errorf("%s %q must be a relative path", field, p)
	case strings.ContainsRune(p, 0):
		return p, fmt.Errorf("%s %q must not contain NUL", field, p)
	}
	for _, part := range strings.FieldsFunc(p, func(r rune) bool { return r == '/' || r == '\\' }) {
		if part == ".." {
			return p, fmt.Errorf("%s %q must not contain \"..\"", field, p)
		}
	}
	clean := path.Clean(p)
	if clean == "." {
		return p, fmt.Errorf("%s %q names no file", field, p)
	}
	return clean, nil
}

// Paths lists the files an object writes (before any optional .crt/.key files).
func (o Object) Paths() []string {
	if o.Selection() {
		return nil // known once the vault is listed: the mount checks them then
	}
	if o.History == 0 {
		return []string{o.FileName()}
	}
	paths := make([]string, o.History)
	for i := range paths {
		paths[i] = path.Join(o.FileName(), strconv.Itoa(i))
	}
	return paths
}

// checkPaths rejects objects that would write the same file, or a file where another needs a
// directory.
func checkPaths(objects []Object) []error {
	owner := map[string]int{}
	for i, o := range objects {
		for _, p := range o.Paths() {
			owner[p] = i
		}
	}
	var errs []error
	seen := map[string]int{}
	for i, o := range objects {
		for _, p := range o.Paths() {
			if j, ok := seen[p]; ok {
				errs = append(errs, fmt.Errorf("objects[%d] (%q) and objects[%d] (%q) would both write %q: set a distinct objectAlias",
					j, objects[j].Name, i, o.Name, p))
				continue
			}
			seen[p] = i
			for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
				if j, ok := owner[dir]; ok {
					errs = append(errs, fmt.Errorf("objects[%d] (%q) writes %q but objects[%d] (%q) writes the file %q: set a distinct objectAlias",
						i, o.Name, p, j, objects[j].Name, dir))
				}
			}
		}
	}
	sort.SliceStable(errs, func(a, b int) bool { return errs[a].Error() < errs[b].Error() })
	return errs
}
