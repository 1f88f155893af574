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

// Cloud names accepted in cloudName (case-insensitive, as go-autorest's EnvironmentFromName).
const (
	AzurePublicCloud       = "AzurePublicCloud"
	AzureChinaCloud        = "AzureChinaCloud"
	AzureUSGovernmentCloud = "AzureUSGovernmentCloud"
	AzureStackCloud        = "AzureStackCloud"
)

var cloudNames = []string{AzurePublicCloud, AzureChinaCloud, AzureUSGovernmentCloud, AzureStackCloud}

// CanonicalCloudName returns the canonical spelling of a cloud name, or "" if unknown.
func CanonicalCloudName(name string) string {
	for _, c := range cloudNames {
		if strings.EqualFold(c, strings.TrimSpace(name)) {
			return c
		}
	}
	return ""
}

// IdentityMode is how a mount authenticates to Entra ID.
type IdentityMode int

// The identity modes, chosen in this order of precedence (as Azure's provider does).
const (
	WorkloadIdentity IdentityMode = iota + 1
	ManagedIdentity
	ServicePrincipal
)

func (m IdentityMode) String() string {
	switch m {
	case WorkloadIdentity:
		return "workload identity"
	case ManagedIdentity:
		return "managed identity"
	case ServicePrincipal:
		return "service principal"
	}
	return "unknown"
}

// Identity is who a mount authenticates as. It holds credentials, so it never prints them.
type Identity struct {
	Mode IdentityMode
	// ClientID is the application (client) ID for workload identity and service principal, and
	// the user-assigned identity's client ID for managed identity ("" = system-assigned).
	ClientID string
	// ClientSecret is the service principal's secret.
	ClientSecret string
	// Token is the pod's service account token for WorkloadIdentityAudience.
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

	EncodingUTF8   = "utf-8"
	EncodingBase64 = "base64"
	EncodingHex    = "hex"
)

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
}

// Defaults are the daemon-wide settings a SecretProviderClass may override.
type Defaults struct {
	CloudName string
}

var vaultNameRE = regexp.MustCompile(`^[-A-Za-z0-9]{3,24}$`)

// Parse validates a mount request before any network call. It reports every problem at once.
// attributes and secrets are the JSON maps the driver sends; permission is the JSON-encoded
// default file mode (for example "420").
func Parse(attributes, secrets, permission string, d Defaults) (MountConfig, error) {
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
	return parseAttributes(attrs, secretMap, defaultMode, d)
}

func parsePermission(permission string) (fs.FileMode, error) {
	var mode uint32
	if err := json.Unmarshal([]byte(permission), &mode); err != nil || mode > 0o777 {
		return 0, fmt.Errorf("permission %q from the driver is not a file mode between 0 and 0777 in decimal", permission)
	}
	return fs.FileMode(mode), nil
}

func parseAttributes(attrs, secrets map[string]string, defaultMode fs.FileMode, d Defaults) (MountConfig, error) {
	get := func(k string) string { return strings.TrimSpace(attrs[k]) }
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

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
		bad("%s %q must be 3-24 characters of letters, digits and '-'", KeyVaultName, c.VaultName)
	}
	if c.TenantID == "" {
		bad("%s is required (the Entra ID tenant of the vault)", TenantID)
	}

	cloud := get(CloudName)
	if cloud == "" {
		cloud = d.CloudName
	}
	if cloud == "" {
		cloud = AzurePublicCloud
	}
	if c.CloudName = CanonicalCloudName(cloud); c.CloudName == "" {
		bad("%s %q is not one of %s", CloudName, cloud, strings.Join(cloudNames, ", "))
	}
	if c.CloudName == AzureStackCloud && c.CloudEnvFile == "" {
		bad("%s is required when %s is %s: the path of the Azure environment JSON file on the node", CloudEnvFileName, CloudName, AzureStackCloud)
	}

	identity, identityErrs := parseIdentity(attrs, secrets)
	c.Identity = identity
	errs = append(errs, identityErrs...)

	objects, objectErrs := parseObjects(attrs[Objects], defaultMode)
	c.Objects = objects
	errs = append(errs, objectErrs...)

	if len(errs) > 0 {
		return MountConfig{}, errors.Join(errs...)
	}
	return c, nil
}

func parseBool(attrs map[string]string, key string) (bool, error) {
	v := strings.TrimSpace(attrs[key])
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s %q must be \"true\" or \"false\"", key, v)
	}
	return b, nil
}

func parseIdentity(attrs, secrets map[string]string) (Identity, []error) {
	var errs []error
	flag := func(key string) bool {
		b, err := parseBool(attrs, key)
		if err != nil {
			errs = append(errs, err)
		}
		return b
	}
	podIdentity := flag(UsePodIdentity)
	tokenProxy := flag(UseAzureTokenProxy)
	useVMMI := flag(UseVMManagedIdentity)
	if podIdentity {
		errs = append(errs, fmt.Errorf("%s is not supported: aad-pod-identity is retired; use workload identity instead "+
			"(set %s to the client ID of an identity with a federated credential for the pod's service account, and remove %s)",
			UsePodIdentity, ClientID, UsePodIdentity))
	}
	if tokenProxy {
		errs = append(errs, fmt.Errorf("%s is not supported yet: remove it and use workload identity with %s", UseAzureTokenProxy, ClientID))
	}
	if len(errs) > 0 {
		return Identity{}, errs
	}

	clientID := strings.TrimSpace(attrs[ClientID])
	switch {
	case clientID != "":
		token, err := workloadIdentityToken(attrs[ServiceAccountTokens])
		if err != nil {
			return Identity{}, []error{err}
		}
		return Identity{Mode: WorkloadIdentity, ClientID: clientID, Token: token}, nil
	case useVMMI:
		return Identity{Mode: ManagedIdentity, ClientID: strings.TrimSpace(attrs[UserAssignedIdentityID])}, nil
	}

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
		errs = append(errs, fmt.Errorf("no identity configured: set %s for workload identity, %s: \"true\" for a VM managed identity, "+
			"or nodePublishSecretRef to a Secret with clientid and clientsecret for a service principal", ClientID, UseVMManagedIdentity))
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
	return Identity{Mode: ServicePrincipal, ClientID: id, ClientSecret: secret}, errs
}

// workloadIdentityToken picks the service account token for WorkloadIdentityAudience from the
// driver's serviceAccount.tokens attribute.
func workloadIdentityToken(tokensJSON string) (string, error) {
	missing := fmt.Errorf("%s is set but the driver sent no service account token for audience %q: "+
		"add {audience: %s} to tokenRequests of the secrets-store.csi.k8s.io CSIDriver "+
		"(Helm: tokenRequests in the driver chart values)", ClientID, WorkloadIdentityAudience, WorkloadIdentityAudience)
	if strings.TrimSpace(tokensJSON) == "" {
		return "", missing
	}
	var tokens map[string]struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(tokensJSON), &tokens); err != nil {
		return "", fmt.Errorf("%s from the driver is not valid JSON", ServiceAccountTokens)
	}
	t := tokens[WorkloadIdentityAudience].Token
	if t == "" {
		return "", missing
	}
	return t, nil
}

func parseObjects(raw string, defaultMode fs.FileMode) ([]Object, []error) {
	if strings.TrimSpace(raw) == "" {
		return nil, []error{fmt.Errorf("%s is required: a YAML document with an array of objects to mount", Objects)}
	}
	entries, err := decodeObjectsArray(raw)
	if err != nil {
		return nil, []error{err}
	}
	if len(entries) == 0 {
		return nil, []error{fmt.Errorf("%s has an empty array: list at least one object", Objects)}
	}
	var errs []error
	objects := make([]Object, 0, len(entries))
	for i, entry := range entries {
		o, objErrs := parseObject(entry, defaultMode)
		for _, e := range objErrs {
			errs = append(errs, fmt.Errorf("objects[%d] (%q): %w", i, o.Name, e))
		}
		objects = append(objects, o)
	}
	if len(errs) == 0 {
		errs = append(errs, checkPaths(objects)...)
	}
	return objects, errs
}

func parseObject(entry string, defaultMode fs.FileMode) (Object, []error) {
	var e objectEntry
	if err := unmarshalStrict(entry, &e); err != nil {
		return Object{}, []error{err}
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	o := Object{
		Name:     strings.TrimSpace(e.ObjectName),
		Type:     ObjectType(strings.ToLower(strings.TrimSpace(e.ObjectType))),
		Alias:    strings.TrimSpace(e.ObjectAlias),
		Version:  strings.TrimSpace(e.ObjectVersion),
		History:  int(e.ObjectVersionHistory),
		Format:   strings.ToLower(strings.TrimSpace(e.ObjectFormat)),
		Encoding: strings.ToLower(strings.TrimSpace(e.ObjectEncoding)),
		Mode:     defaultMode,
	}
	if strings.EqualFold(o.Version, "latest") {
		o.Version = ""
	}
	switch {
	case o.Name == "":
		bad("objectName is required")
	case !objectNameRE.MatchString(o.Name):
		bad("objectName %q must be 1-127 characters of letters, digits and '-'", o.Name)
	}
	if o.Version != "" && !versionRE.MatchString(o.Version) {
		bad("objectVersion %q must be empty, \"latest\" or a version id of letters and digits", o.Version)
	}
	switch o.Type {
	case TypeSecret, TypeKey, TypeCert:
	case "":
		bad("objectType is required: one of secret, key, cert")
	default:
		bad("objectType %q is not one of secret, key, cert", e.ObjectType)
	}
	switch o.Format {
	case "":
		o.Format = FormatPEM
	case FormatPEM, FormatPFX:
		if o.Type != TypeSecret && o.Type != "" {
			bad("objectFormat is only allowed for objectType secret (a certificate's secret), not %s", o.Type)
		}
	default:
		bad("objectFormat %q is not one of pem, pfx", e.ObjectFormat)
	}
	switch o.Encoding {
	case "":
		o.Encoding = EncodingUTF8
	case EncodingUTF8, EncodingBase64, EncodingHex:
		if o.Type != TypeSecret && o.Type != "" {
			bad("objectEncoding is only allowed for objectType secret, not %s", o.Type)
		}
	default:
		bad("objectEncoding %q is not one of utf-8, base64, hex", e.ObjectEncoding)
	}
	if o.History < 0 {
		bad("objectVersionHistory %d must not be negative", o.History)
	}
	if o.History == 1 {
		o.History = 0 // one version is the ordinary single file
	}
	if p := strings.TrimSpace(e.FilePermission); p != "" {
		m, err := parseFileMode(p)
		if err != nil {
			bad("%v", err)
		}
		o.Mode = m
	}
	if o.Alias != "" {
		if err := checkRelativePath("objectAlias", o.Alias); err != nil {
			errs = append(errs, err)
		}
	}
	return o, errs
}

var (
	objectNameRE = regexp.MustCompile(`^[0-9A-Za-z-]{1,127}$`)
	versionRE    = regexp.MustCompile(`^[0-9A-Za-z]{1,64}$`)
	fileModeRE   = regexp.MustCompile(`^0?[0-7]{3}$`)
)

func parseFileMode(p string) (fs.FileMode, error) {
	if !fileModeRE.MatchString(p) {
		return 0, fmt.Errorf("filePermission %q must be an octal mode such as \"0644\" or \"0400\"", p)
	}
	m, err := strconv.ParseUint(p, 8, 32)
	if err != nil {
		return 0, fmt.Errorf("filePermission %q must be an octal mode such as \"0644\" or \"0400\"", p)
	}
	return fs.FileMode(m), nil
}

func checkRelativePath(field, p string) error {
	switch {
	case strings.HasPrefix(p, "/") || strings.HasPrefix(p, `\`) || (len(p) > 1 && p[1] == ':'):
		return fmt.Errorf("%s %q must be a relative path", field, p)
	case strings.ContainsAny(p, "\\\x00"):
		return fmt.Errorf("%s %q must not contain a backslash or NUL", field, p)
	}
	for _, part := range strings.Split(p, "/") {
		switch part {
		case "..":
			return fmt.Errorf("%s %q must not contain \"..\"", field, p)
		case "", ".":
			return fmt.Errorf("%s %q must not contain empty or \".\" path elements", field, p)
		}
	}
	return nil
}

// Paths lists the files an object writes (before any optional .crt/.key files).
func (o Object) Paths() []string {
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
