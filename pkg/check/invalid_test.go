package check

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/akv-csi/provider/pkg/config"
)

// invalidCase is a SecretProviderClass the provider refuses: a valid workload-identity one with
// parameters replaced ("<delete>" removes one) or other objects, and the parser's words for it.
type invalidCase struct {
	name    string
	params  map[string]string
	objects []string // entries of the objects parameter, when set
	pod     *podUse  // the pod that mounts it (Kube), when it matters
	opts    func(*Options)
	want    string
}

// objectsParam writes the objects parameter: a YAML document whose array holds one YAML document
// per entry.
func objectsParam(entries ...string) string {
	b, err := yaml.Marshal(map[string][]string{"array": entries})
	if err != nil {
		panic(err)
	}
	return string(b)
}

// invalidCases are every problem the parser reports about what a SecretProviderClass (or the
// pod mounting it, or the driver's CSIDriver) can get wrong. TestEveryParserError checks that
// together they produce every error message pkg/config has.
func invalidCases() []invalidCase {
	secret := "objectName: a\nobjectType: secret"
	huge := map[string]string{}
	for i := range 300 {
		huge[fmt.Sprintf("note-%03d", i)] = strings.Repeat("x", 15<<10)
	}
	many := make([]string, config.MaxObjects+1)
	for i := range many {
		many[i] = fmt.Sprintf("objectName: s%d\nobjectType: secret", i)
	}
	var histories []string
	for i := range 11 {
		histories = append(histories, fmt.Sprintf("objectName: s%d\nobjectType: secret\nobjectVersionHistory: 100", i))
	}
	var vaults []string
	for i := range config.MaxVaults + 1 {
		vaults = append(vaults, fmt.Sprintf("objectName: s%d\nobjectType: secret\nkeyvaultName: kv-other-%d", i, i))
	}
	var wide []string
	for i := range config.MaxYAMLKeys + 1 {
		wide = append(wide, fmt.Sprintf("k%d: v", i))
	}
	var laughs strings.Builder
	laughs.WriteString("l0: &l0 [a, a, a, a, a, a, a, a, a]\n")
	for i := 1; i <= 4; i++ {
		fmt.Fprintf(&laughs, "l%d: &l%d [*l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	noTokens := func(o *Options) { o.TokenAudiences = []string{} }
	return []invalidCase{
		// Sizes.
		{name: "parameters larger than gRPC's message", params: huge, want: "the mount request's parameters are"},
		{name: "one parameter too large", params: map[string]string{"note": strings.Repeat("x", 17<<10)}, want: `parameter "note" is 17408 bytes, more than the 16384 allowed`},
		// The vault, tenant and cloud.
		{name: "no vault", params: map[string]string{config.KeyVaultName: "<delete>"}, want: "keyvaultName is required"},
		{name: "vault name", params: map[string]string{config.KeyVaultName: "kv.evil.com"}, want: `keyvaultName "kv.evil.com" must be 3-24 characters`},
		{name: "too many vaults", objects: vaults, want: "objects name 10 vaults (the mount's keyvaultName and each object's), more than the 8 allowed in one mount"},
		{name: "no tenant", params: map[string]string{config.TenantIDLegacy: "<delete>"}, want: "tenantID is required"},
		{name: "unknown cloud", params: map[string]string{config.CloudName: "AzureMoonCloud"}, want: `cloudName "AzureMoonCloud" is not one of`},
		{name: "retired cloud", params: map[string]string{config.CloudName: "AzureGermanCloud"}, want: "cloudName AzureGermanCloud was retired"},
		{name: "Azure Stack without its file", params: map[string]string{config.CloudName: "azurestackcloud"}, want: "cloudEnvFileName is required when cloudName is AzureStackCloud"},
		// The identity.
		{name: "not a boolean", params: map[string]string{config.UseVMManagedIdentity: "yes"}, want: `useVMManagedIdentity "yes" must be "true" or "false"`},
		{name: "pod identity", params: map[string]string{config.ClientID: "<delete>", config.UsePodIdentity: "true"}, want: "usePodIdentity is not supported: aad-pod-identity is retired"},
		{name: "two identity modes", params: map[string]string{config.UseVMManagedIdentity: "true", config.UseAzureTokenProxy: "true"}, want: "only one identity mode can be enabled at a time"},
		{name: "identity binding without clientID", params: map[string]string{config.ClientID: "<delete>", config.UseAzureTokenProxy: "true"}, want: `clientID is required when useAzureTokenProxy is "true"`},
		{name: "no identity, and a pod without nodePublishSecretRef", params: map[string]string{config.ClientID: "<delete>"},
			pod: &podUse{Namespace: "default", Name: "app-0", ServiceAccount: "default"}, want: "no identity configured"},
		{name: "workload identity, and a CSIDriver without tokenRequests", opts: noTokens, want: `clientID is set but the driver sent no service account token for audience "api://AzureADTokenExchange"`},
		{name: "identity binding, and a CSIDriver without its audience", params: map[string]string{config.UseAzureTokenProxy: "true"},
			opts: func(o *Options) { o.TokenAudiences = []string{config.WorkloadIdentityAudience} }, want: `no service account token for audience "api://AKSIdentityBinding"`},
		{name: "tokens in the SecretProviderClass, not JSON", params: map[string]string{config.ServiceAccountTokens: "{"}, opts: noTokens, want: "serviceAccount.tokens from the driver is not valid JSON"},
		// The objects parameter.
		{name: "no objects", params: map[string]string{config.Objects: "<delete>"}, want: "objects is required"},
		{name: "objects not YAML", params: map[string]string{config.Objects: `array: ["a"`}, want: "objects is not a YAML document"},
		{name: "array not a list", params: map[string]string{config.Objects: "array: 3"}, want: "objects is not a YAML document"},
		{name: "too many objects", objects: many, want: "objects has 257 entries, more than the 256 allowed"},
		{name: "too many files", objects: histories, want: "objects would write 1100 files"},
		{name: "empty entry", objects: []string{""}, want: `objects[0] (""): the entry is empty`},
		{name: "entry of a comment", objects: []string{"# nothing"}, want: "the document is empty"},
		{name: "field of the wrong type", objects: []string{secret + "\nobjectVersionHistory: many"}, want: "not a valid object (fields: objectName, objectType"},
		{name: "YAML syntax in an entry", objects: []string{"objectName: [a"}, want: `objects[0] (""): not a valid object`},
		{name: "mapping of too many keys", objects: []string{strings.Join(wide, "\n")}, want: "a mapping has 65 keys, more than the 64 allowed"},
		{name: "repeated key", objects: []string{"objectName: a\nobjectName: b\nobjectType: secret"}, want: `the key "objectName" appears twice in one mapping`},
		{name: "alias bomb", objects: []string{laughs.String() + "objectName: *l4"}, want: "the document expands (through its aliases) to more than 10000 YAML nodes"},
		// One object.
		{name: "no name", objects: []string{"objectType: secret"}, want: "objectName is required"},
		{name: "name", objects: []string{"objectName: a/b\nobjectType: secret"}, want: `objectName "a/b" must be 1-127 characters`},
		{name: "version", objects: []string{secret + "\nobjectVersion: ../x"}, want: `objectVersion "../x" must be empty, "latest" or a version id`},
		{name: "no type", objects: []string{"objectName: a"}, want: "objectType is required: one of secret, key, cert"},
		{name: "type", objects: []string{"objectName: a\nobjectType: certificate"}, want: `objectType "certificate" is not one of secret, key, cert`},
		{name: "format", objects: []string{secret + "\nobjectFormat: der"}, want: `objectFormat "der" is not one of`},
		{name: "format of a key", objects: []string{"objectName: a\nobjectType: key\nobjectFormat: pfx"}, want: "objectFormat pfx is only allowed for objectType secret"},
		{name: "encoding of a text format", objects: []string{secret + "\nobjectFormat: key\nobjectEncoding: base64"}, want: "objectEncoding base64 cannot be combined with objectFormat key"},
		{name: "encoding of a certificate", objects: []string{"objectName: a\nobjectType: cert\nobjectEncoding: hex"}, want: "objectEncoding is only allowed for objectType secret, not cert"},
		{name: "encoding", objects: []string{secret + "\nobjectEncoding: utf-16"}, want: `objectEncoding "utf-16" is not one of utf-8, base64, hex`},
		{name: "history too long", objects: []string{secret + "\nobjectVersionHistory: 101"}, want: "objectVersionHistory 101 is more than the 100 allowed"},
		{name: "optional", objects: []string{secret + "\nobjectOptional: maybe"}, want: `objectOptional "maybe" must be "true" or "false"`},
		{name: "permission", objects: []string{secret + "\nfilePermission: rw-r--r--"}, want: `filePermission "rw-r--r--" must be an octal mode`},
		{name: "negative permission", objects: []string{secret + "\nfilePermission: \"-0644\""}, want: `filePermission "-0644" must be an octal mode`},
		{name: "JSON key too long", objects: []string{secret + "\nobjectJSONKey: " + strings.Repeat("k", 513)}, want: "objectJSONKey of 513 characters is longer than the 512 allowed"},
		{name: "JSON key with a control character", objects: []string{secret + "\nobjectJSONKey: \"a\\tb\""}, want: "objectJSONKey must not contain control characters"},
		{name: "JSON key of a key", objects: []string{"objectName: a\nobjectType: key\nobjectJSONKey: k"}, want: "objectJSONKey is only allowed for objectType secret, not key"},
		{name: "JSON key of a PFX", objects: []string{secret + "\nobjectFormat: pfx\nobjectJSONKey: k"}, want: "objectJSONKey cannot be combined with objectFormat pfx"},
		// A PFX with a password.
		{name: "PFX encryption without a password", objects: []string{secret + "\nobjectFormat: pfx\nobjectPFXEncryption: legacy"}, want: "objectPFXEncryption needs objectPFXPasswordSecret"},
		{name: "PFX password secret name", objects: []string{secret + "\nobjectFormat: pfx\nobjectPFXPasswordSecret: pfx_password"}, want: `objectPFXPasswordSecret "pfx_password" must be a secret name`},
		{name: "PFX password of a PEM", objects: []string{secret + "\nobjectPFXPasswordSecret: pfx-password"}, want: "objectPFXPasswordSecret needs objectType secret and objectFormat pfx"},
		{name: "PFX encryption", objects: []string{secret + "\nobjectFormat: pfx\nobjectPFXPasswordSecret: pfx-password\nobjectPFXEncryption: des"}, want: `objectPFXEncryption "des" is not one of`},
		// Selections.
		{name: "name prefix", objects: []string{"objectNamePrefix: db_\nobjectType: secret"}, want: `objectNamePrefix "db_" must be 1-127 characters`},
		{name: "too many tags", objects: []string{"objectTags: " + strings.Repeat("a=b,", 15) + "a=b\nobjectType: secret"}, want: "objectTags has 16 tags, more than the 15 Key Vault keeps per object"},
		{name: "tags syntax", objects: []string{"objectTags: env\nobjectType: secret"}, want: `objectTags "env" must be name=value pairs`},
		{name: "tag too long", objects: []string{"objectTags: env=" + strings.Repeat("v", 257) + "\nobjectType: secret"}, want: `objectTags: tag "env" is longer than Key Vault allows`},
		{name: "tag twice", objects: []string{"objectTags: env=a,env=b\nobjectType: secret"}, want: `objectTags names tag "env" twice`},
		{name: "name and selection", objects: []string{secret + "\nobjectNamePrefix: db-"}, want: "objectName cannot be combined with objectNamePrefix or objectTags"},
		{name: "selection of keys", objects: []string{"objectNamePrefix: db-\nobjectType: key"}, want: "objectNamePrefix and objectTags select secrets or certificates, not key"},
		{name: "selection of a version", objects: []string{"objectNamePrefix: db-\nobjectType: secret\nobjectVersionHistory: 2"}, want: "objectVersion and objectVersionHistory cannot be combined with objectNamePrefix or objectTags"},
		{name: "optional selection", objects: []string{"objectNamePrefix: db-\nobjectType: secret\nobjectOptional: \"true\""}, want: "objectOptional cannot be combined with objectNamePrefix or objectTags"},
		// Files.
		{name: "alias too long", objects: []string{secret + "\nobjectAlias: " + strings.Repeat("a", 256)}, want: "objectAlias of 256 characters is longer than the 255 allowed"},
		{name: "absolute alias", objects: []string{secret + "\nobjectAlias: /etc/passwd"}, want: `objectAlias "/etc/passwd" must be a relative path`},
		{name: "alias with a NUL", objects: []string{secret + "\nobjectAlias: \"x\\0y\""}, want: "must not contain NUL"},
		{name: "alias out of the mount", objects: []string{secret + "\nobjectAlias: x/../../y"}, want: `must not contain ".."`},
		{name: "alias out of the mount, Windows separators", objects: []string{secret + "\nobjectAlias: 'x\\..\\..\\y'"}, want: `must not contain ".."`},
		{name: "alias naming no file", objects: []string{secret + "\nobjectAlias: ./"}, want: "names no file"},
		{name: "two objects, one file", objects: []string{secret, "objectName: b\nobjectType: key\nobjectAlias: a"}, want: `objects[0] ("a") and objects[1] ("b") would both write "a"`},
		{name: "a file where a folder must be", objects: []string{secret, "objectName: b\nobjectType: secret\nobjectAlias: a/b"}, want: `objects[1] ("b") writes "a/b" but objects[0] ("a") writes the file "a"`},
	}
}

// notFromASecretProviderClass are the parser's messages that no SecretProviderClass can cause in a
// check, and why.
var notFromASecretProviderClass = map[string]string{
	"attributes are not a JSON object of strings: %w":                                                           "the check encodes the parameters as JSON itself",
	"nodePublishSecretRef secret is not a JSON object of strings":                                               "the check encodes the Secret itself",
	"the nodePublishSecretRef secret is %d bytes, more than the %d allowed":                                     "the check never reads the Secret",
	"nodePublishSecretRef secret has no %s: it needs the keys clientid and clientsecret of a service principal": "the check never reads the Secret; it says which keys it needs",
	"permission %q from the driver is not a file mode between 0 and 0777 in decimal":                            "the check sends the driver's default mode",
}

// TestEveryParserError runs every invalid case through the check: each is refused with the
// parser's words, in one problem per line. Then every error message in pkg/config's source must
// have come out of some case, so that a new parser error gets a case here.
func TestEveryParserError(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []string
	t.Run("cases", func(t *testing.T) {
		for _, tc := range invalidCases() {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				params := map[string]string{
					config.KeyVaultName: vault, config.TenantIDLegacy: tenant, config.ClientID: wiApp,
					config.Objects: objectsParam("objectName: db-password\nobjectType: secret"),
				}
				if tc.objects != nil {
					params[config.Objects] = objectsParam(tc.objects...)
				}
				for k, v := range tc.params {
					if v == "<delete>" {
						delete(params, k)
					} else {
						params[k] = v
					}
				}
				o := offline()
				if tc.opts != nil {
					tc.opts(&o)
				}
				if err := o.validate(); err != nil && !strings.Contains(err.Error(), "no SecretProviderClass") {
					t.Fatal(err)
				}
				c := &checker{opts: o}
				res := c.check(context.Background(), target{spc: &spc{File: "case.yaml", Name: "case", Namespace: "default", Parameters: params}, pod: tc.pod})
				if res.OK || res.Explain != nil {
					t.Fatalf("the check accepts it:\n%+v", res)
				}
				var msgs []string
				for _, p := range res.Problems {
					if strings.Contains(p.Message, "\n") {
						t.Errorf("a problem of several lines: %q", p.Message)
					}
					msgs = append(msgs, p.Message)
				}
				all := strings.Join(msgs, "\n")
				if !strings.Contains(all, tc.want) {
					t.Errorf("problems do not say %q:\n%s", tc.want, all)
				}
				mu.Lock()
				seen = append(seen, msgs...)
				mu.Unlock()
			})
		}
	})
	if t.Failed() {
		return
	}
	known := parserMessages(t)
	for _, m := range known {
		if _, ok := notFromASecretProviderClass[m.format]; ok {
			continue
		}
		found := false
		for _, s := range seen {
			if m.re.MatchString(s) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("%s: no case of invalidCases gives the parser's message %q: add one", m.where, m.format)
		}
	}
	for format := range notFromASecretProviderClass {
		listed := false
		for _, m := range known {
			listed = listed || m.format == format
		}
		if !listed {
			t.Errorf("notFromASecretProviderClass lists %q, which pkg/config no longer has", format)
		}
	}
}
