package emulator

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// AddVault adds a vault while the emulator runs, as if it were in the seed (its certificates'
// material is generated now). Its tenant must be one the emulator knows (default: the seed's).
// Grant identities access with AddGrants.
func (e *Emulator) AddVault(v Vault) error {
	if err := (&Seed{Vaults: []Vault{v}}).Validate(); err != nil {
		return err
	}
	if v.TenantID == "" {
		v.TenantID = e.seed.tenant()
	}
	if !e.knownTenant(v.TenantID) {
		return fmt.Errorf("vault %q: tenant %q is not one of the emulator's", v.Name, v.TenantID)
	}
	built, err := buildVaults(&Seed{TenantID: e.seed.tenant(), Deterministic: e.seed.Deterministic, Vaults: []Vault{v}}, e.src)
	if err != nil {
		return err
	}
	e.vaultsMu.Lock()
	defer e.vaultsMu.Unlock()
	key := strings.ToLower(v.Name)
	if e.vaults[key] != nil {
		return fmt.Errorf("vault %q already exists", v.Name)
	}
	e.vaults[key] = built[key]
	return nil
}

// BulkSecrets are many generated plain secrets of one version each, made at once (AddSecrets,
// POST /admin/vaults/{vault}/bulk-secrets): Count secrets named Prefix followed by their index,
// zero-padded (bulk-00000 ... bulk-24999), each with Tags tags. Every secret carries the same
// tags, held once: tag i is named "tag-<i>-" padded with 'n' to TagNameLength characters and
// valued "value-<i>-" padded with 'v' to TagValueLength. So 25,000 secrets with 15 tags of
// Key Vault's maximum size list as 300 MB of JSON but cost the emulator a few MB.
type BulkSecrets struct {
	Prefix string `json:"prefix,omitempty"` // default "bulk-"
	Count  int    `json:"count"`            // 1-100,000
	Value  string `json:"value,omitempty"`  // every secret's value; default "bulk-value"
	Tags   int    `json:"tags,omitempty"`   // 0-15
	// TagNameLength and TagValueLength default to Key Vault's maxima, 512 and 256.
	TagNameLength  int `json:"tagNameLength,omitempty"`
	TagValueLength int `json:"tagValueLength,omitempty"`
}

// maxBulkSecrets bounds one AddSecrets.
const maxBulkSecrets = 100000

// BulkTags are the tags every secret of b carries.
func (b BulkSecrets) BulkTags() map[string]string {
	b.defaults()
	tags := make(map[string]string, b.Tags)
	for i := range b.Tags {
		name, value := fmt.Sprintf("tag-%02d-", i), fmt.Sprintf("value-%02d-", i)
		tags[pad(name, 'n', b.TagNameLength)] = pad(value, 'v', b.TagValueLength)
	}
	return tags
}

// BulkName is the name of secret i of b.
func (b BulkSecrets) BulkName(i int) string {
	b.defaults()
	width := len(strconv.Itoa(b.Count - 1))
	return fmt.Sprintf("%s%0*d", b.Prefix, width, i)
}

func (b *BulkSecrets) defaults() {
	if b.Prefix == "" {
		b.Prefix = "bulk-"
	}
	if b.Value == "" {
		b.Value = "bulk-value"
	}
	if b.TagNameLength == 0 {
		b.TagNameLength = maxTagNameLen
	}
	if b.TagValueLength == 0 {
		b.TagValueLength = maxTagValueLen
	}
}

func pad(s string, c byte, n int) string {
	if len(s) >= n {
		return s[:n]
	}
	return s + strings.Repeat(string(c), n-len(s))
}

// AddSecrets adds the secrets b describes to vault, and returns how many it added. It refuses a
// name the vault already holds (as a secret or a certificate).
func (e *Emulator) AddSecrets(vault string, b BulkSecrets) (int, error) {
	b.defaults()
	var problems []string
	if b.Count < 1 || b.Count > maxBulkSecrets {
		problems = append(problems, fmt.Sprintf("count %d must be between 1 and %d", b.Count, maxBulkSecrets))
	}
	if b.Tags < 0 || b.Tags > maxTags {
		problems = append(problems, fmt.Sprintf("tags %d must be between 0 and %d", b.Tags, maxTags))
	}
	if b.TagNameLength < len("tag-00-") || b.TagNameLength > maxTagNameLen || b.TagValueLength < 0 || b.TagValueLength > maxTagValueLen {
		problems = append(problems, fmt.Sprintf("tag names are %d-%d characters and values at most %d", len("tag-00-"), maxTagNameLen, maxTagValueLen))
	}
	if len(problems) == 0 && !objectNameRE.MatchString(b.BulkName(b.Count-1)) {
		problems = append(problems, fmt.Sprintf("prefix %q does not make secret names that match %s", b.Prefix, objectNameRE))
	}
	if len(problems) > 0 {
		return 0, errors.New(strings.Join(problems, "; "))
	}
	tags := b.BulkTags()
	if len(tags) == 0 {
		tags = nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	vs := e.vault(vault)
	if vs == nil {
		return 0, fmt.Errorf("vault %q not found", vault)
	}
	names := make([]string, b.Count)
	for i := range names {
		names[i] = b.BulkName(i)
		lower := strings.ToLower(names[i])
		if vs.secrets[lower] != nil || vs.certs[lower] != nil {
			return 0, fmt.Errorf("vault %q already holds %q", vault, names[i])
		}
	}
	for _, name := range names {
		vs.secrets[strings.ToLower(name)] = &secretObj{name: name, versions: []*secretVer{{
			version: e.src.version("secret", vs.name, name, "0"), value: b.Value, created: seedEpoch, enabled: true, tags: tags,
		}}}
	}
	vs.changed()
	return b.Count, nil
}
