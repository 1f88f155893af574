package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// parseObjects parses a workload identity mount of the given object entries.
func parseEntries(t *testing.T, entries ...string) ([]Object, error) {
	t.Helper()
	cfg, err := Parse(attrs(map[string]string{Objects: objectsYAML(entries...)}), "", "420", Defaults{})
	return cfg.Objects, err
}

// TestParseFeatureFields covers the object fields that are this provider's own (upstream rejects
// or ignores them): each valid form, normalized.
func TestParseFeatureFields(t *testing.T) {
	t.Parallel()
	base := Object{Type: TypeSecret, Format: FormatPEM, Encoding: EncodingUTF8, Mode: 0o644}
	with := func(name string, f func(*Object)) Object {
		o := base
		o.Name = name
		f(&o)
		return o
	}
	tests := []struct {
		name  string
		entry string
		want  Object
	}{
		{"JSON key", "objectName: cfg\nobjectType: secret\nobjectJSONKey: db-password",
			with("cfg", func(o *Object) { o.JSONKey = "db-password" })},
		{"JSON key as JMESPath, with alias, encoding and mode", "objectName: cfg\nobjectType: secret\nobjectJSONKey: 'a.b[0]'\nobjectAlias: b\nobjectEncoding: base64\nfilePermission: \"0400\"",
			with("cfg", func(o *Object) { o.JSONKey, o.Alias, o.Encoding, o.Mode = "a.b[0]", "b", EncodingBase64, 0o400 })},
		{"JSON key with spaces kept", "objectName: cfg\nobjectType: secret\nobjectJSONKey: ' my key '",
			with("cfg", func(o *Object) { o.JSONKey = " my key " })},
		{"JSON key with objectFormat pem", "objectName: cfg\nobjectType: secret\nobjectJSONKey: a\nobjectFormat: pem",
			with("cfg", func(o *Object) { o.JSONKey = "a" })},
		{"optional", "objectName: cfg\nobjectType: secret\nobjectOptional: \"true\"",
			with("cfg", func(o *Object) { o.Optional = true })},
		{"optional false", "objectName: cfg\nobjectType: secret\nobjectOptional: \"False\"", with("cfg", func(*Object) {})},
		{"optional key with history", "objectName: k\nobjectType: key\nobjectOptional: 'true'\nobjectVersionHistory: 2",
			with("k", func(o *Object) { o.Type, o.Optional, o.History = TypeKey, true, 2 })},
		{"format key", "objectName: web\nobjectType: secret\nobjectFormat: KEY\nobjectAlias: tls.key\nfilePermission: \"0600\"",
			with("web", func(o *Object) { o.Format, o.Alias, o.Mode = FormatKey, "tls.key", 0o600 })},
		{"format chain with utf-8", "objectName: web\nobjectType: secret\nobjectFormat: chain\nobjectEncoding: utf-8",
			with("web", func(o *Object) { o.Format = FormatChain })},
		{"metadata of a secret", "objectName: db\nobjectType: secret\nobjectFormat: metadata\nobjectAlias: db.meta.json",
			with("db", func(o *Object) { o.Format, o.Alias = FormatMetadata, "db.meta.json" })},
		{"metadata of a key", "objectName: k\nobjectType: key\nobjectFormat: Metadata",
			with("k", func(o *Object) { o.Type, o.Format = TypeKey, FormatMetadata })},
		{"metadata of a cert with history", "objectName: c\nobjectType: cert\nobjectFormat: metadata\nobjectVersionHistory: 3",
			with("c", func(o *Object) { o.Type, o.Format, o.History = TypeCert, FormatMetadata, 3 })},
		{"object in another vault", "objectName: db\nobjectType: secret\nkeyvaultName: ' kv-other '",
			with("db", func(o *Object) { o.VaultName = "kv-other" })},
		{"selection by prefix", "objectNamePrefix: app-\nobjectType: secret\nobjectAlias: apps",
			with("", func(o *Object) { o.NamePrefix, o.Alias = "app-", "apps" })},
		{"selection by tags, spaces trimmed, empty value", "objectTags: ' env = prod ,team=payments, note= '\nobjectType: cert",
			with("", func(o *Object) {
				o.Type, o.Tags = TypeCert, map[string]string{"env": "prod", "team": "payments", "note": ""}
			})},
		{"selection by both with a JSON key", "objectNamePrefix: cfg-\nobjectTags: env=prod\nobjectType: secret\nobjectJSONKey: password",
			with("", func(o *Object) {
				o.NamePrefix, o.Tags, o.JSONKey = "cfg-", map[string]string{"env": "prod"}, "password"
			})},
		{"PFX with a password, modern by default", "objectName: web\nobjectType: secret\nobjectFormat: pfx\nobjectPFXPasswordSecret: web-pass\nobjectEncoding: base64",
			with("web", func(o *Object) {
				o.Format, o.PFXPasswordSecret, o.PFXEncryption, o.Encoding = FormatPFX, "web-pass", PFXModern, EncodingBase64
			})},
		{"PFX with a password, legacy", "objectName: web\nobjectType: secret\nobjectFormat: pfx\nobjectPFXPasswordSecret: web-pass\nobjectPFXEncryption: Legacy",
			with("web", func(o *Object) { o.Format, o.PFXPasswordSecret, o.PFXEncryption = FormatPFX, "web-pass", PFXLegacy })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseEntries(t, tt.entry)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff([]Object{tt.want}, got); diff != "" {
				t.Errorf("objects (-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseFeatureMisuse checks that every combination of the new fields that makes no sense is
// refused before any network call, naming the field.
func TestParseFeatureMisuse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		entries []string
		want    []string
	}{
		{"JSON key on a key", []string{"objectName: k\nobjectType: key\nobjectJSONKey: a"},
			[]string{`objects[0] ("k"): objectJSONKey is only allowed for objectType secret, not key`}},
		{"JSON key on a cert", []string{"objectName: c\nobjectType: cert\nobjectJSONKey: a"},
			[]string{`objects[0] ("c"): objectJSONKey is only allowed for objectType secret, not cert`}},
		{"JSON key with pfx", []string{"objectName: c\nobjectType: secret\nobjectFormat: pfx\nobjectJSONKey: a"},
			[]string{"objectJSONKey cannot be combined with objectFormat pfx"}},
		{"JSON key too long", []string{"objectName: c\nobjectType: secret\nobjectJSONKey: " + strings.Repeat("a", MaxJSONKeyLength+1)},
			[]string{"objectJSONKey of 513 characters is longer than the 512 allowed"}},
		{"JSON key with a control character", []string{"objectName: c\nobjectType: secret\nobjectJSONKey: \"a\\tb\""},
			[]string{"objectJSONKey must not contain control characters"}},
		{"optional not a bool", []string{"objectName: c\nobjectType: secret\nobjectOptional: maybe"},
			[]string{`objects[0] ("c"): objectOptional "maybe" must be "true" or "false"`}},
		{"format key on a key", []string{"objectName: k\nobjectType: key\nobjectFormat: key"},
			[]string{`objects[0] ("k"): objectFormat key is only allowed for objectType secret (a certificate's secret), not key`}},
		{"format chain on a cert", []string{"objectName: c\nobjectType: cert\nobjectFormat: chain"},
			[]string{"objectFormat chain is only allowed for objectType secret (a certificate's secret), not cert"}},
		{"format key with base64", []string{"objectName: c\nobjectType: secret\nobjectFormat: key\nobjectEncoding: base64"},
			[]string{"objectEncoding base64 cannot be combined with objectFormat key: the file is text"}},
		{"JSON key with format chain", []string{"objectName: c\nobjectType: secret\nobjectFormat: chain\nobjectJSONKey: a"},
			[]string{"objectJSONKey cannot be combined with objectFormat chain"}},
		{"unknown format lists them all", []string{"objectName: c\nobjectType: secret\nobjectFormat: der"},
			[]string{`objectFormat "der" is not one of pem, pfx, key, chain, metadata`}},
		{"object vault not a vault name", []string{"objectName: c\nobjectType: secret\nkeyvaultName: kv.evil.com"},
			[]string{`objects[0] ("c"): keyvaultName "kv.evil.com" must be 3-24 characters of letters, digits and '-'`}},
		{"prefix and name together", []string{"objectName: a\nobjectNamePrefix: app-\nobjectType: secret"},
			[]string{`objects[0] ("a"): objectName cannot be combined with objectNamePrefix or objectTags`}},
		{"selection of keys", []string{"objectTags: a=b\nobjectType: key"},
			[]string{"objectNamePrefix and objectTags select secrets or certificates, not key"}},
		{"selection with a version", []string{"objectNamePrefix: a\nobjectType: secret\nobjectVersion: abc"},
			[]string{"objectVersion and objectVersionHistory cannot be combined with objectNamePrefix or objectTags"}},
		{"selection with history", []string{"objectNamePrefix: a\nobjectType: secret\nobjectVersionHistory: 3"},
			[]string{"objectVersion and objectVersionHistory cannot be combined"}},
		{"optional selection", []string{"objectTags: a=b\nobjectType: secret\nobjectOptional: 'true'"},
			[]string{"objectOptional cannot be combined with objectNamePrefix or objectTags"}},
		{"tag without a value", []string{"objectTags: a\nobjectType: secret"},
			[]string{`objectTags "a" must be name=value pairs separated by commas`}},
		{"tag without a name", []string{"objectTags: =b\nobjectType: secret"}, []string{"must be name=value pairs"}},
		{"tag twice", []string{"objectTags: a=b,a=c\nobjectType: secret"}, []string{`objectTags names tag "a" twice`}},
		{"too many tags", []string{"objectTags: " + strings.Repeat("a=b,", 15) + "z=y\nobjectType: secret"},
			[]string{"objectTags has 16 tags, more than the 15"}},
		{"prefix not a name", []string{"objectNamePrefix: app_\nobjectType: secret"},
			[]string{`objectNamePrefix "app_" must be 1-127 characters`}},
		{"neither name nor selection", []string{"objectType: secret"},
			[]string{"objectName is required (or objectNamePrefix or objectTags, to select objects)"}},
		{"password without pfx", []string{"objectName: web\nobjectType: secret\nobjectPFXPasswordSecret: pw"},
			[]string{"objectPFXPasswordSecret needs objectType secret and objectFormat pfx"}},
		{"password on a cert", []string{"objectName: web\nobjectType: cert\nobjectPFXPasswordSecret: pw"},
			[]string{"objectPFXPasswordSecret needs objectType secret and objectFormat pfx"}},
		{"encryption without password", []string{"objectName: web\nobjectType: secret\nobjectFormat: pfx\nobjectPFXEncryption: legacy"},
			[]string{"objectPFXEncryption needs objectPFXPasswordSecret"}},
		{"unknown encryption", []string{"objectName: web\nobjectType: secret\nobjectFormat: pfx\nobjectPFXPasswordSecret: pw\nobjectPFXEncryption: rc2"},
			[]string{`objectPFXEncryption "rc2" is not one of modern, legacy`}},
		{"password secret not a name", []string{"objectName: web\nobjectType: secret\nobjectFormat: pfx\nobjectPFXPasswordSecret: 'a/b'"},
			[]string{`objectPFXPasswordSecret "a/b" must be a secret name`}},
		{"metadata with base64", []string{"objectName: c\nobjectType: secret\nobjectFormat: metadata\nobjectEncoding: base64"},
			[]string{"objectEncoding base64 cannot be combined with objectFormat metadata"}},
		{"metadata with a JSON key", []string{"objectName: c\nobjectType: secret\nobjectFormat: metadata\nobjectJSONKey: a"},
			[]string{"objectJSONKey cannot be combined with objectFormat metadata"}},
		{"metadata of a key with an encoding", []string{"objectName: k\nobjectType: key\nobjectFormat: metadata\nobjectEncoding: hex"},
			[]string{"objectEncoding is only allowed for objectType secret, not key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseEntries(t, tt.entries...)
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestMountConfigVault(t *testing.T) {
	t.Parallel()
	c := MountConfig{VaultName: "kv-main"}
	if got := c.Vault(Object{Name: "a"}); got != "kv-main" {
		t.Errorf("Vault of an object without keyvaultName = %q", got)
	}
	if got := c.Vault(Object{Name: "a", VaultName: "kv-other"}); got != "kv-other" {
		t.Errorf("Vault of an object with keyvaultName = %q", got)
	}
}

func TestSelectionMatches(t *testing.T) {
	t.Parallel()
	o := Object{Type: TypeSecret, NamePrefix: "app-", Tags: map[string]string{"env": "prod", "note": ""}, Alias: "apps", Mode: 0o400}
	for _, tt := range []struct {
		name string
		tags map[string]string
		want bool
	}{
		{"app-db", map[string]string{"env": "prod", "note": "", "extra": "x"}, true},
		{"app-db", map[string]string{"env": "Prod", "note": ""}, false}, // values compare exactly
		{"app-db", map[string]string{"env": "prod"}, false},             // a tag with an empty value must be there
		{"db", map[string]string{"env": "prod", "note": ""}, false},
		{"App-db", map[string]string{"env": "prod", "note": ""}, false},
	} {
		if got := o.Matches(tt.name, tt.tags); got != tt.want {
			t.Errorf("Matches(%q, %v) = %v", tt.name, tt.tags, got)
		}
	}
	m := o.Match("app-db")
	if m.Selection() || m.Name != "app-db" || m.FileName() != "apps/app-db" || m.ID() != "secret/app-db" || m.Mode != 0o400 {
		t.Errorf("Match = %+v", m)
	}
	if top := (Object{Type: TypeCert, Tags: map[string]string{"a": "b"}}).Match("c"); top.FileName() != "c" || top.ID() != "cert/c" {
		t.Errorf("Match without alias = %+v", top)
	}
	if got := o.Describe(); got != `secrets selected by objectNamePrefix "app-" and objectTags "env=prod,note="` {
		t.Errorf("Describe = %q", got)
	}
}
