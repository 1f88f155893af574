package check

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/akv-csi/provider/pkg/auth"
	"github.com/akv-csi/provider/pkg/cloud"
	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/keyvault"
	"github.com/akv-csi/provider/pkg/provider"
)

// Live is the outcome of a live mount of one SecretProviderClass.
type Live struct {
	// As says who read the vault.
	As string `json:"as"`
	OK bool   `json:"ok"`
	// Objects are the objects of the SecretProviderClass, in its order.
	Objects []LiveObject `json:"objects"`
	// MountError is the error a pod would get, word for word as the provider gives it.
	MountError string `json:"mountError,omitempty"`
	// Wrote is the folder the files were written to (WriteDir).
	Wrote string `json:"wrote,omitempty"`
	// Warnings are about what was read: certificates expired or expiring within 30 days.
	Warnings []string `json:"warnings,omitempty"`
}

// LiveObject is what one object gave.
type LiveObject struct {
	Object string `json:"object"`
	// Status is OK, or what kind of failure: DENIED, NOT FOUND, UNAUTHENTICATED, UNAVAILABLE,
	// TIMEOUT, INVALID, FAILED; NOT READ when the mount failed before reading any object.
	Status string     `json:"status"`
	Files  []LiveFile `json:"files,omitempty"`
	// Error is the object's part of the provider's error: what failed and what to do.
	Error string `json:"error,omitempty"`
}

// LiveFile is one file as the driver would write it, described without its value.
type LiveFile struct {
	Path    string `json:"path"`
	Mode    string `json:"mode"`
	Size    int    `json:"size"`
	Version string `json:"version"`
	// ContentType is the secret's content type, or the key's type.
	ContentType string `json:"contentType,omitempty"`
	// Content describes the file: certificates (subject, issuer, expiry), public keys, and for
	// anything else only that it is a value.
	Content string `json:"content"`
	// Expires is the expiry of the first certificate in the file, if any (RFC 3339).
	Expires string `json:"expires,omitempty"`
}

// liveRun mounts with one Provider, so that every SecretProviderClass of a run shares its
// credentials and reads as pods on one node do.
type liveRun struct {
	opts Options
	prov *provider.Provider
	meta *metaStore

	// With AsWorkloadIdentity: the service account token, and what it says.
	token        string
	tokenIssuer  string
	tokenSubject string

	// Otherwise: the operator's own Azure login.
	login *operatorLogin
}

func newLiveRun(o Options) (*liveRun, error) {
	l := &liveRun{opts: o, meta: &metaStore{m: map[string]objectMeta{}}}
	if o.AsWorkloadIdentity {
		var err error
		if l.token, err = readToken(o.TokenFile); err != nil {
			return nil, err
		}
		claims, _ := auth.ReadClaims(l.token)
		l.tokenIssuer, l.tokenSubject = claims.Issuer, claims.Subject
	} else {
		l.login = newOperatorLogin()
	}
	kv := keyvault.Options{ApplicationID: "akv-check"}
	l.prov = provider.New(provider.Options{
		ConstructPEMChain:              o.ConstructPEMChain,
		WriteCertAndKeyInSeparateFiles: o.WriteCertAndKeyInSeparateFiles,
		Auth:                           auth.Options{ApplicationID: "akv-check"},
		KeyVault:                       kv,
		// Reads are kept for the run: the objects of a mount that failed are mounted again
		// alone, from what was read, to show their files.
		Sharing: provider.SharingOptions{ResultTTL: o.Timeout + 5*time.Minute},
		// With the operator's login, the identity the provider proves (one token request) and reads
		// with is that login, not the pod's.
		NewCredential: func(id config.Identity, tenantID string, env cloud.Environment, a *auth.Assertion, ao auth.Options) (azcore.TokenCredential, error) {
			if l.login != nil {
				return l.login, nil
			}
			return auth.NewCredential(id, tenantID, env, a, ao)
		},
		NewClient: func(vaultURL string, cred azcore.TokenCredential) (keyvault.Client, error) {
			if l.login != nil {
				cred = l.login
			}
			c, err := keyvault.New(vaultURL, cred, kv)
			if err != nil {
				return nil, err
			}
			return &recordingClient{Client: c, vault: vaultURL, meta: l.meta}, nil
		},
	})
	return l, nil
}

// maxTokenFileBytes bounds the token file (a Kubernetes token is about 1 KiB).
const maxTokenFileBytes = 16 << 10

func readToken(file string) (string, error) {
	info, err := os.Stat(file)
	if err != nil {
		return "", fmt.Errorf("cannot read --token-file %s: %w", file, unwrapPath(err))
	}
	if !info.Mode().IsRegular() || info.Size() > maxTokenFileBytes {
		return "", fmt.Errorf("--token-file %s is not a service account token (a file of at most %d bytes)", file, maxTokenFileBytes)
	}
	b, err := os.ReadFile(file) //nolint:gosec // the operator's own file
	if err != nil {
		return "", fmt.Errorf("cannot read --token-file %s: %w", file, unwrapPath(err))
	}
	token := strings.TrimSpace(string(b))
	if _, ok := auth.ReadClaims(token); !ok {
		return "", fmt.Errorf("--token-file %s does not hold a service account token (a JWT): "+
			"kubectl create token SERVICE_ACCOUNT -n NAMESPACE --audience %s", file, config.WorkloadIdentityAudience)
	}
	return token, nil
}

// mount performs the mount of t as the pod would, with the provider's pipeline.
func (l *liveRun) mount(ctx context.Context, c *checker, t target) *Live {
	live := &Live{}
	req := c.request(t, l.token)
	spcIdentity := ""
	if cfg, err := req.parse(l.opts.Defaults); err == nil {
		spcIdentity = cfg.Identity.String()
	}
	if l.opts.TenantID != "" {
		req.attributes[config.TenantID] = l.opts.TenantID
		delete(req.attributes, config.TenantIDLegacy)
	}
	if l.opts.AsWorkloadIdentity {
		for _, k := range []string{config.UsePodIdentity, config.UseVMManagedIdentity, config.UseAzureTokenProxy} {
			delete(req.attributes, k)
		}
		if l.opts.ClientID != "" {
			req.attributes[config.ClientID] = l.opts.ClientID
		}
		if strings.TrimSpace(req.attributes[config.ClientID]) == "" {
			live.MountError = "--as-workload-identity: the SecretProviderClass sets no clientID: pass --client-id, the client ID of the application or identity to read as"
			return live
		}
		req.secrets = nil
	}
	cfg, err := req.parse(l.opts.Defaults)
	if err != nil {
		live.MountError = "invalid SecretProviderClass parameters: " + strings.Join(messages(err), "; ")
		return live
	}

	if l.opts.AsWorkloadIdentity {
		live.As = fmt.Sprintf("%s, with the token in %s (%s)", cfg.Identity, l.opts.TokenFile, l.tokenSubject)
		if spcIdentity != "" && spcIdentity != cfg.Identity.String() {
			live.As += "; the pod reads as " + spcIdentity
		}
	} else {
		// The operator's login reads; the pod's identity is only named in the messages.
		cfg.Identity.Token = ""
		env, err := cloud.Resolve(cfg.CloudName, cfg.CloudEnvFile)
		if err != nil {
			live.MountError = err.Error()
			return live
		}
		name, err := l.login.use(ctx, env, cfg.TenantID)
		if err != nil {
			live.MountError = err.Error()
			live.As = "your Azure login"
			return live
		}
		live.As = fmt.Sprintf("your %s, not the pod's %s: a refusal means that your login may not read the object; "+
			"the hints name the pod's identity", name, cfg.Identity)
	}

	mctx, cancel := context.WithTimeout(ctx, l.opts.Timeout)
	defer cancel()
	result, err := l.prov.Mount(mctx, cfg)
	failed := map[int]provider.ObjectError{}
	if err != nil {
		live.MountError = err.Error()
		var me *provider.MountError
		if !errors.As(err, &me) || me.Err != nil || len(me.Objects) == 0 {
			for _, o := range cfg.Objects {
				live.Objects = append(live.Objects, LiveObject{Object: objectLabel(o), Status: "NOT READ"})
			}
			return live
		}
		// The failures are in the order of the objects.
		j := 0
		for i, o := range cfg.Objects {
			if j < len(me.Objects) && me.Objects[j].Object.ID() == o.ID() && me.Objects[j].Object.FileName() == o.FileName() {
				failed[i] = me.Objects[j]
				j++
			}
		}
		// The others were read: mount them alone (from the reads kept) to show their files.
		var ok []config.Object
		for i, o := range cfg.Objects {
			if _, bad := failed[i]; !bad {
				ok = append(ok, o)
			}
		}
		result = provider.Result{}
		if len(ok) > 0 {
			rest := cfg
			rest.Objects = ok
			if result, err = l.prov.Mount(mctx, rest); err != nil {
				result = provider.Result{}
			}
		}
	}
	live.Objects = l.rows(cfg, result, failed)
	live.Warnings = expiryWarnings(live.Objects, time.Now())
	live.OK = err == nil && len(failed) == 0
	if live.OK && l.opts.WriteDir != "" {
		dir := filepath.Join(l.opts.WriteDir, req.pod.Namespace, t.spc.Name)
		if werr := writeFiles(dir, result.Files); werr != nil {
			live.OK = false
			live.MountError = werr.Error()
		} else {
			live.Wrote = dir
		}
	}
	return live
}

// rows describes each object: its files, or its failure.
func (l *liveRun) rows(cfg config.MountConfig, result provider.Result, failed map[int]provider.ObjectError) []LiveObject {
	rows := make([]LiveObject, len(cfg.Objects))
	owner := map[string]int{}
	for i, o := range cfg.Objects {
		rows[i] = LiveObject{Object: objectLabel(o), Status: "OK"}
		if oe, bad := failed[i]; bad {
			rows[i].Status = status(oe.Err.Kind)
			rows[i].Error = oe.Message(cfg)
			continue
		}
		for _, p := range o.Paths() {
			owner[p] = i
		}
	}
	for k, f := range result.Files {
		i, ok := ownerOf(owner, f.Path, cfg.Objects)
		if !ok {
			continue
		}
		if _, bad := failed[i]; bad {
			continue
		}
		version := ""
		if len(result.Versions) == len(result.Files) {
			version = result.Versions[k].Version
		}
		o := cfg.Objects[i]
		lf := LiveFile{Path: f.Path, Mode: fmt.Sprintf("%04o", f.Mode), Size: len(f.Contents), Version: version}
		m := l.meta.get(cfg, o, version)
		switch o.Type {
		case config.TypeSecret:
			lf.ContentType = m.contentType
		case config.TypeKey:
			lf.ContentType = m.kty
		}
		lf.Content, lf.Expires = describe(f.Contents, o)
		rows[i].Files = append(rows[i].Files, lf)
	}
	return rows
}

// ownerOf finds the object that wrote a file: by its path, by the path of the file it adds
// .crt/.key to, or by the folder it writes into.
func ownerOf(owner map[string]int, p string, objects []config.Object) (int, bool) {
	if i, ok := owner[p]; ok {
		return i, true
	}
	for _, ext := range []string{".crt", ".key"} {
		if i, ok := owner[strings.TrimSuffix(p, ext)]; ok && strings.HasSuffix(p, ext) {
			return i, true
		}
	}
	for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
		for i, o := range objects {
			if o.FileName() == dir {
				return i, true
			}
		}
	}
	for i, o := range objects { // a selection, whose files are named by what the vault lists
		if len(o.Paths()) == 0 {
			return i, true
		}
	}
	return 0, false
}

// expiryWarnings names the files whose first certificate has expired or expires within 30 days.
func expiryWarnings(rows []LiveObject, now time.Time) []string {
	var out []string
	for _, o := range rows {
		for _, f := range o.Files {
			exp, err := time.Parse(time.RFC3339, f.Expires)
			switch {
			case err != nil:
			case exp.Before(now):
				out = append(out, fmt.Sprintf("%s: the certificate expired on %s", f.Path, exp.Format(time.DateOnly)))
			case exp.Before(now.Add(30 * 24 * time.Hour)):
				out = append(out, fmt.Sprintf("%s: the certificate expires in %d days, on %s", f.Path, int(exp.Sub(now).Hours()/24), exp.Format(time.DateOnly)))
			}
		}
	}
	return out
}

func status(k keyvault.Kind) string {
	switch k {
	case keyvault.KindPermissionDenied:
		return "DENIED"
	case keyvault.KindNotFound:
		return "NOT FOUND"
	case keyvault.KindUnauthenticated:
		return "UNAUTHENTICATED"
	case keyvault.KindUnavailable:
		return "UNAVAILABLE"
	case keyvault.KindDeadlineExceeded:
		return "TIMEOUT"
	case keyvault.KindInvalidArgument:
		return "INVALID"
	}
	return "FAILED"
}

// writeFiles writes the files of a mount under dir, with their modes, as the driver does.
func writeFiles(dir string, files []provider.File) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("--write-dir: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("--write-dir: %w", err)
	}
	defer func() { _ = root.Close() }()
	for _, f := range files {
		if d := path.Dir(f.Path); d != "." {
			if err := root.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("--write-dir: %w", err)
			}
		}
		if err := root.WriteFile(f.Path, f.Contents, f.Mode); err != nil {
			return fmt.Errorf("--write-dir: %w", err)
		}
		if err := root.Chmod(f.Path, f.Mode); err != nil { // not narrowed by the umask
			return fmt.Errorf("--write-dir: %w", err)
		}
	}
	return nil
}

// objectMeta is what a read says about an object besides its value.
type objectMeta struct {
	contentType string
	kty         string
}

// metaStore keeps the metadata of every read, by vault, type, name and version.
type metaStore struct {
	mu sync.Mutex
	m  map[string]objectMeta
}

func metaKey(vaultURL string, typ config.ObjectType, name, version string) string {
	return strings.Join([]string{vaultURL, string(typ), strings.ToLower(name), version}, "\x00")
}

func (s *metaStore) put(key string, m objectMeta) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[key] = m
}

func (s *metaStore) get(cfg config.MountConfig, o config.Object, version string) objectMeta {
	env, err := cloud.Resolve(cfg.CloudName, cfg.CloudEnvFile)
	if err != nil {
		return objectMeta{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[metaKey(env.VaultURL(cfg.VaultName), o.Type, o.Name, version)]
}

// recordingClient is the Key Vault client of the pipeline, noting what each read says besides
// the value (never the value).
type recordingClient struct {
	keyvault.Client
	vault string
	meta  *metaStore
}

func (c *recordingClient) GetSecret(ctx context.Context, name, version string) (keyvault.Secret, error) {
	s, err := c.Client.GetSecret(ctx, name, version)
	if err == nil {
		c.meta.put(metaKey(c.vault, config.TypeSecret, name, s.Version), objectMeta{contentType: s.ContentType})
	}
	return s, err
}

func (c *recordingClient) GetKey(ctx context.Context, name, version string) (keyvault.Key, error) {
	k, err := c.Client.GetKey(ctx, name, version)
	if err == nil {
		c.meta.put(metaKey(c.vault, config.TypeKey, name, k.Version), objectMeta{kty: k.Kty})
	}
	return k, err
}

// operatorLogin is the operator's own Azure login: the Azure CLI's, else the Azure Developer
// CLI's, else a service principal in the AZURE_* environment variables (as azidentity reads them).
// Tokens are kept until they near expiry: each CLI call takes a second.
type operatorLogin struct {
	candidates []namedCredential

	mu     sync.Mutex
	chosen *namedCredential
	tokens map[string]azcore.AccessToken
}

type namedCredential struct {
	name string
	cred azcore.TokenCredential
}

// use picks the first login that gets a Key Vault token for the tenant, and names it.
func (l *operatorLogin) use(ctx context.Context, env cloud.Environment, tenantID string) (string, error) {
	opts := policy.TokenRequestOptions{Scopes: []string{auth.KeyVaultScope(env)}, TenantID: tenantID}
	l.mu.Lock()
	chosen := l.chosen
	l.mu.Unlock()
	if chosen != nil {
		if _, err := l.GetToken(ctx, opts); err != nil {
			return "", fmt.Errorf("your %s could not get a Key Vault token in tenant %s: %s", chosen.name, tenantID, oneLine(err))
		}
		return chosen.name, nil
	}
	var why []string
	for i := range l.candidates {
		cand := &l.candidates[i]
		if _, err := cand.cred.GetToken(ctx, opts); err != nil {
			why = append(why, cand.name+": "+oneLine(err))
			continue
		}
		l.mu.Lock()
		l.chosen = cand
		l.mu.Unlock()
		return cand.name, nil
	}
	return "", fmt.Errorf("no Azure login of yours could get a Key Vault token in tenant %s (%s): run az login --tenant %s, or use --as-workload-identity",
		tenantID, strings.Join(why, "; "), tenantID)
}

// GetToken is the chosen login's token, kept until five minutes before it expires.
func (l *operatorLogin) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	l.mu.Lock()
	chosen := l.chosen
	key := opts.TenantID + "\x00" + strings.Join(opts.Scopes, " ")
	tok, ok := l.tokens[key]
	l.mu.Unlock()
	if chosen == nil {
		return azcore.AccessToken{}, errors.New("no Azure login was chosen")
	}
	if ok && opts.Claims == "" && tok.ExpiresOn.After(time.Now().Add(5*time.Minute)) {
		return tok, nil
	}
	tok, err := chosen.cred.GetToken(ctx, opts)
	if err != nil {
		return tok, err
	}
	l.mu.Lock()
	l.tokens[key] = tok
	l.mu.Unlock()
	return tok, nil
}

func oneLine(err error) string {
	s := strings.TrimSpace(err.Error())
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	return s
}
