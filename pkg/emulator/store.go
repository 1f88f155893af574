package emulator

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"
)

// The store holds every vault. Names are case-insensitive as in Key Vault,
// so maps are keyed by the lower-case name and objects keep the seeded
// spelling for ids.
type vaultState struct {
	name     string
	tenant   string
	pageSize int // the vault's own page size (0: the seed's)
	secrets  map[string]*secretObj
	keys     map[string]*keyObj
	certs    map[string]*certObj
	ca       [2]*issuer // root, intermediate; shared by the vault's certificates

	// listed caches the sorted names of each collection list ("secret", "key", "certificate"),
	// so a page costs its own items, not a sort of the vault. It is dropped when the vault's
	// objects change (under Emulator.mu) and filled by lists (under Emulator.mu's read lock).
	namesMu sync.Mutex
	listed  map[string][]string
}

// changed drops the cached list names. Emulator.mu is held for writing.
func (vs *vaultState) changed() {
	vs.namesMu.Lock()
	defer vs.namesMu.Unlock()
	vs.listed = nil
}

// sortedNames are the lower-case names a collection list of typ holds, sorted: the certificates
// in every list, and the secrets or the keys in theirs. Emulator.mu is held for reading.
func (vs *vaultState) sortedNames(typ string) []string {
	vs.namesMu.Lock()
	defer vs.namesMu.Unlock()
	if names, ok := vs.listed[typ]; ok {
		return names
	}
	set := map[string]bool{}
	for n := range vs.certs {
		set[n] = true
	}
	switch typ {
	case "secret":
		for n := range vs.secrets {
			set[n] = true
		}
	case "key":
		for n := range vs.keys {
			set[n] = true
		}
	}
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	sort.Strings(names)
	if vs.listed == nil {
		vs.listed = map[string][]string{}
	}
	vs.listed[typ] = names
	return names
}

type secretObj struct {
	name     string
	versions []*secretVer // sorted by created, oldest first
}

type secretVer struct {
	version     string
	value       string
	contentType string
	created     time.Time
	enabled     bool
	tags        map[string]string
	nbf, exp    *time.Time
}

type keyObj struct {
	name     string
	kty      string
	tags     map[string]string
	versions []*keyVer
}

type keyVer struct {
	version string
	created time.Time
	pub     crypto.PublicKey // nil for oct keys
	size    int
}

type certObj struct {
	name     string
	spec     Certificate
	versions []*certVersion
}

func latest[T any](vs []T) (T, bool) {
	var zero T
	if len(vs) == 0 {
		return zero, false
	}
	return vs[len(vs)-1], true
}

// buildVaults generates all seeded material. Key generation dominates start
// time, so it runs on all CPUs.
func buildVaults(seed *Seed, src source) (map[string]*vaultState, error) {
	vaults := map[string]*vaultState{}
	var jobs []func() error
	for _, v := range seed.Vaults {
		vs := &vaultState{name: v.Name, tenant: v.TenantID, pageSize: v.PageSize, secrets: map[string]*secretObj{},
			keys: map[string]*keyObj{}, certs: map[string]*certObj{}}
		if vs.tenant == "" {
			vs.tenant = seed.tenant()
		}
		vaults[strings.ToLower(v.Name)] = vs
		for _, s := range v.Secrets {
			obj := &secretObj{name: s.Name}
			prev := seedEpoch.Add(-time.Hour)
			for i, sv := range s.Versions {
				ver := &secretVer{version: sv.Version, value: sv.Value, contentType: sv.ContentType,
					enabled: sv.Enabled == nil || *sv.Enabled, tags: sv.Tags, nbf: sv.NotBefore, exp: sv.Expires}
				if ver.version == "" {
					ver.version = src.version("secret", v.Name, s.Name, fmt.Sprint(i))
				}
				if sv.Created != nil {
					ver.created = sv.Created.UTC().Truncate(time.Second)
				} else {
					ver.created = prev.Add(time.Hour)
				}
				prev = ver.created
				obj.versions = append(obj.versions, ver)
			}
			sort.SliceStable(obj.versions, func(i, j int) bool { return obj.versions[i].created.Before(obj.versions[j].created) })
			vs.secrets[strings.ToLower(s.Name)] = obj
		}
		for _, k := range v.Keys {
			obj := &keyObj{name: k.Name, kty: k.Kty, tags: k.Tags}
			n := max(k.Versions, 1)
			for i := range n {
				kv := &keyVer{version: src.version("key", v.Name, k.Name, fmt.Sprint(i)), created: seedEpoch.Add(time.Duration(i) * time.Hour)}
				obj.versions = append(obj.versions, kv)
				jobs = append(jobs, func() error {
					label := []string{"key", v.Name, k.Name, kv.version}
					switch k.Kty {
					case "RSA", "RSA-HSM":
						bits := k.Size
						if bits == 0 {
							bits = 2048
						}
						key, err := src.rsaKey(bits, label...)
						if err != nil {
							return fmt.Errorf("vault %q key %q: %w", v.Name, k.Name, err)
						}
						kv.pub, kv.size = &key.PublicKey, bits
					case "EC", "EC-HSM":
						curve, err := curveByName(k.Curve)
						if err != nil {
							return err
						}
						key, err := src.ecKey(curve, label...)
						if err != nil {
							return fmt.Errorf("vault %q key %q: %w", v.Name, k.Name, err)
						}
						kv.pub = &key.PublicKey
					default: // oct: the bytes are never served, only the size
						kv.size = k.Size
						if kv.size == 0 {
							kv.size = 256
						}
						_, _ = io.ReadFull(src.stream(label...), make([]byte, kv.size/8))
					}
					return nil
				})
			}
			vs.keys[strings.ToLower(k.Name)] = obj
		}
		if len(v.Certificates) > 0 {
			t0 := seedEpoch.AddDate(-1, 0, 0)
			root, err := src.newIssuer(v.Name+" Root CA", nil, t0, t0.AddDate(30, 0, 0), "root", v.Name)
			if err != nil {
				return nil, fmt.Errorf("vault %q root CA: %w", v.Name, err)
			}
			inter, err := src.newIssuer(v.Name+" Intermediate CA", root, t0, t0.AddDate(20, 0, 0), "intermediate", v.Name)
			if err != nil {
				return nil, fmt.Errorf("vault %q intermediate CA: %w", v.Name, err)
			}
			vs.ca = [2]*issuer{root, inter}
		}
		for _, c := range v.Certificates {
			obj := &certObj{name: c.Name, spec: c}
			n := max(c.Versions, 1)
			obj.versions = make([]*certVersion, n)
			for i := range n {
				version := src.version("certificate", v.Name, c.Name, fmt.Sprint(i))
				created := seedEpoch.Add(time.Duration(i) * time.Hour)
				jobs = append(jobs, func() error {
					cv, err := src.newCertVersion(v.Name, vs.ca, c, version, created)
					if err != nil {
						return fmt.Errorf("vault %q: %w", v.Name, err)
					}
					obj.versions[i] = cv
					return nil
				})
			}
			vs.certs[strings.ToLower(c.Name)] = obj
		}
	}
	return vaults, runParallel(jobs)
}

func runParallel(jobs []func() error) error {
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, job := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = job()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (e *Emulator) vault(name string) *vaultState {
	e.vaultsMu.RLock()
	defer e.vaultsMu.RUnlock()
	return e.vaults[strings.ToLower(name)]
}

// AddSecretVersion adds a new newest version of a secret (creating the
// secret if needed) and returns its version id.
func (e *Emulator) AddSecretVersion(vault, name, value string) (string, error) {
	return e.AddSecret(vault, name, SecretVersion{Value: value})
}

// DeleteSecret removes a secret and all its versions (a read then answers 404 SecretNotFound).
func (e *Emulator) DeleteSecret(vault, name string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	vs := e.vault(vault)
	if vs == nil {
		return fmt.Errorf("vault %q not found", vault)
	}
	if _, ok := vs.secrets[strings.ToLower(name)]; !ok {
		return fmt.Errorf("secret %q not found in vault %q", name, vault)
	}
	delete(vs.secrets, strings.ToLower(name))
	vs.changed()
	return nil
}

// AddSecret adds v as the new newest version of a secret (creating the secret if needed) and
// returns its version id. v.Version and v.Created are ignored: the version is generated and
// created now.
func (e *Emulator) AddSecret(vault, name string, v SecretVersion) (string, error) {
	var problems []string
	checkTags("tags", v.Tags, func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) })
	if len(problems) > 0 {
		return "", errors.New(strings.Join(problems, "; "))
	}
	if !objectNameRE.MatchString(name) {
		return "", fmt.Errorf("secret name %q must match %s", name, objectNameRE)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	vs := e.vault(vault)
	if vs == nil {
		return "", fmt.Errorf("vault %q not found", vault)
	}
	if _, ok := vs.certs[strings.ToLower(name)]; ok {
		return "", fmt.Errorf("%q is a certificate; its secret cannot be set", name)
	}
	obj := vs.secrets[strings.ToLower(name)]
	if obj == nil {
		obj = &secretObj{name: name}
		vs.secrets[strings.ToLower(name)] = obj
		vs.changed()
	}
	created := time.Now().UTC().Truncate(time.Second)
	if last, ok := latest(obj.versions); ok && !created.After(last.created) {
		// Keep "latest = newest created" unambiguous with 1 s timestamps.
		created = last.created.Add(time.Second)
	}
	ver := &secretVer{version: e.src.version("secret", vs.name, obj.name, fmt.Sprint(len(obj.versions))),
		value: v.Value, contentType: v.ContentType, created: created, enabled: v.Enabled == nil || *v.Enabled,
		tags: v.Tags, nbf: v.NotBefore, exp: v.Expires}
	for _, old := range obj.versions {
		if old.version == ver.version { // only possible with seeded explicit versions
			ver.version = source{}.version()
		}
	}
	obj.versions = append(obj.versions, ver)
	return ver.version, nil
}

// CertMaterial is the expected material of one certificate version, for
// golden tests.
type CertMaterial struct {
	Version     string
	Leaf        *x509.Certificate
	Chain       []*x509.Certificate // stored order, leaf included
	Key         crypto.Signer       // nil if the certificate is not exportable
	SecretValue string              // exactly what GET /secrets returns as value
	ContentType string
}

func findVersion[T any](vs []T, version string, ver func(T) string) (T, bool) {
	if version == "" {
		return latest(vs)
	}
	for _, v := range vs {
		if strings.EqualFold(ver(v), version) {
			return v, true
		}
	}
	var zero T
	return zero, false
}

// Certificate returns a certificate version ("" = latest).
func (e *Emulator) Certificate(vault, name, version string) (*CertMaterial, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	vs := e.vault(vault)
	if vs == nil {
		return nil, fmt.Errorf("vault %q not found", vault)
	}
	obj := vs.certs[strings.ToLower(name)]
	if obj == nil {
		return nil, fmt.Errorf("certificate %q not found in vault %q", name, vault)
	}
	cv, ok := findVersion(obj.versions, version, func(c *certVersion) string { return c.version })
	if !ok {
		return nil, fmt.Errorf("certificate %q version %q not found in vault %q", name, version, vault)
	}
	m := &CertMaterial{Version: cv.version, Leaf: cv.leaf, Chain: append([]*x509.Certificate(nil), cv.chain...),
		SecretValue: cv.secretValue, ContentType: cv.contentType}
	if cv.exportable {
		m.Key = cv.key
	}
	return m, nil
}

// PublicKey returns the public key of a key or certificate version ("" =
// latest) and the resolved version. oct keys have no public key.
func (e *Emulator) PublicKey(vault, name, version string) (crypto.PublicKey, string, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	vs := e.vault(vault)
	if vs == nil {
		return nil, "", fmt.Errorf("vault %q not found", vault)
	}
	if obj := vs.keys[strings.ToLower(name)]; obj != nil {
		kv, ok := findVersion(obj.versions, version, func(k *keyVer) string { return k.version })
		if !ok {
			return nil, "", fmt.Errorf("key %q version %q not found in vault %q", name, version, vault)
		}
		if kv.pub == nil {
			return nil, kv.version, fmt.Errorf("key %q is symmetric (%s) and has no public key", name, obj.kty)
		}
		return kv.pub, kv.version, nil
	}
	if obj := vs.certs[strings.ToLower(name)]; obj != nil {
		cv, ok := findVersion(obj.versions, version, func(c *certVersion) string { return c.version })
		if !ok {
			return nil, "", fmt.Errorf("certificate %q version %q not found in vault %q", name, version, vault)
		}
		return cv.key.Public(), cv.version, nil
	}
	return nil, "", fmt.Errorf("key %q not found in vault %q", name, vault)
}

// SecretVersions returns a plain secret's versions, oldest first, with
// Version, Created and Enabled filled in. Nil if there is no such secret.
func (e *Emulator) SecretVersions(vault, name string) []SecretVersion {
	e.mu.RLock()
	defer e.mu.RUnlock()
	vs := e.vault(vault)
	if vs == nil {
		return nil
	}
	obj := vs.secrets[strings.ToLower(name)]
	if obj == nil {
		return nil
	}
	out := make([]SecretVersion, 0, len(obj.versions))
	for _, v := range obj.versions {
		created, enabled := v.created, v.enabled
		out = append(out, SecretVersion{Version: v.version, Value: v.value, ContentType: v.contentType,
			Created: &created, Enabled: &enabled, Tags: v.tags, NotBefore: v.nbf, Expires: v.exp})
	}
	return out
}
