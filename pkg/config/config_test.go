package config

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// saToken is a well-formed (unsigned) service account token; config never verifies it.
//
//nolint:gosec // an unsigned test token
const saToken = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL2lzc3VlciIsInN1YiI6InN5c3RlbTpzZXJ2aWNlYWNjb3VudDpkZWZhdWx0OmFwcCJ9.c2ln"

func tokensJSON(audience, token string) string {
	b, _ := json.Marshal(map[string]map[string]string{audience: {"token": token, "expirationTimestamp": "2030-01-01T00:00:00Z"}})
	return string(b)
}

// attrs returns the attributes of a valid workload-identity mount of one secret, with overrides;
// an override of "<delete>" removes the key.
func attrs(overrides map[string]string) string {
	a := map[string]string{
		KeyVaultName:         "kv-demo",
		TenantID:             "tenant-1",
		ClientID:             "client-1",
		ServiceAccountTokens: tokensJSON(WorkloadIdentityAudience, saToken),
		PodName:              "app-0",
		PodNamespace:         "default",
		Objects:              objectsYAML("objectName: db-pass\nobjectType: secret"),
	}
	for k, v := range overrides {
		if v == "<delete>" {
			delete(a, k)
		} else {
			a[k] = v
		}
	}
	b, _ := json.Marshal(a)
	return string(b)
}

// objectsYAML writes the objects parameter the way SecretProviderClasses do.
func objectsYAML(entries ...string) string {
	var b strings.Builder
	b.WriteString("array:\n")
	for _, e := range entries {
		b.WriteString("  - |\n")
		for _, line := range strings.Split(e, "\n") {
			b.WriteString("    " + line + "\n")
		}
	}
	return b.String()
}

func TestParseValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		attrs   string
		secrets string
		perm    string
		d       Defaults
		want    MountConfig
	}{
		{
			name:  "workload identity with one secret",
			attrs: attrs(nil),
			perm:  "420",
			want: MountConfig{
				VaultName: "kv-demo", TenantID: "tenant-1", CloudName: AzurePublicCloud,
				Identity: Identity{Mode: WorkloadIdentity, ClientID: "client-1", Token: saToken},
				Pod:      Pod{Namespace: "default", Name: "app-0"},
				Objects:  []Object{{Name: "db-pass", Type: TypeSecret, Format: FormatPEM, Encoding: EncodingUTF8, Mode: 0o644}},
			},
		},
		{
			name: "legacy tenantId, system-assigned managed identity, cloud from defaults, whitespace trimmed",
			attrs: attrs(map[string]string{TenantID: "<delete>", TenantIDLegacy: " tenant-2 ", ClientID: "<delete>",
				UseVMManagedIdentity: "true", KeyVaultName: " kv-demo "}),
			perm: "256",
			d:    Defaults{CloudName: "azurechinacloud"},
			want: MountConfig{
				VaultName: "kv-demo", TenantID: "tenant-2", CloudName: AzureChinaCloud,
				Identity: Identity{Mode: ManagedIdentity},
				Pod:      Pod{Namespace: "default", Name: "app-0"},
				Objects:  []Object{{Name: "db-pass", Type: TypeSecret, Format: FormatPEM, Encoding: EncodingUTF8, Mode: 0o400}},
			},
		},
		{
			name: "user-assigned managed identity; cloudName overrides the default",
			attrs: attrs(map[string]string{ClientID: "<delete>", UseVMManagedIdentity: "True",
				UserAssignedIdentityID: "mi-1", CloudName: "AzureUSGovernmentCloud"}),
			perm: "420",
			d:    Defaults{CloudName: AzureChinaCloud},
			want: MountConfig{
				VaultName: "kv-demo", TenantID: "tenant-1", CloudName: AzureUSGovernmentCloud,
				Identity: Identity{Mode: ManagedIdentity, ClientID: "mi-1"},
				Pod:      Pod{Namespace: "default", Name: "app-0"},
				Objects:  []Object{{Name: "db-pass", Type: TypeSecret, Format: FormatPEM, Encoding: EncodingUTF8, Mode: 0o644}},
			},
		},
		{
			name:    "service principal with keys in any case; Azure Stack with its env file",
			attrs:   attrs(map[string]string{ClientID: "<delete>", CloudName: "AzureStackCloud", CloudEnvFileName: "/etc/kubernetes/azurestack.json"}),
			secrets: `{"ClientID":"sp-1","CLIENTSECRET":"s3cret"}`,
			perm:    "420",
			want: MountConfig{
				VaultName: "kv-demo", TenantID: "tenant-1", CloudName: AzureStackCloud, CloudEnvFile: "/etc/kubernetes/azurestack.json",
				Identity: Identity{Mode: ServicePrincipal, ClientID: "sp-1", ClientSecret: "s3cret"},
				Pod:      Pod{Namespace: "default", Name: "app-0"},
				Objects:  []Object{{Name: "db-pass", Type: TypeSecret, Format: FormatPEM, Encoding: EncodingUTF8, Mode: 0o644}},
			},
		},
		{
			name: "every object field",
			attrs: attrs(map[string]string{Objects: objectsYAML(
				"objectName: web\nobjectType: SECRET\nobjectAlias: tls/web.pfx\nobjectFormat: PFX\nobjectEncoding: Base64\nfilePermission: \"0600\"",
				"objectName: sign\nobjectType: key\nobjectVersion: 0123abcd\nobjectVersionHistory: 3",
				"objectName: ca\nobjectType: cert\nobjectVersion: latest\nfilePermission: '444'",
				"objectName: hexed\nobjectType: secret\nobjectEncoding: hex\nobjectVersionHistory: 1\nobjectVersion: 0001",
			)}),
			perm: "420",
			want: MountConfig{
				VaultName: "kv-demo", TenantID: "tenant-1", CloudName: AzurePublicCloud,
				Identity: Identity{Mode: WorkloadIdentity, ClientID: "client-1", Token: saToken},
				Pod:      Pod{Namespace: "default", Name: "app-0"},
				Objects: []Object{
					{Name: "web", Type: TypeSecret, Alias: "tls/web.pfx", Format: FormatPFX, Encoding: EncodingBase64, Mode: 0o600},
					{Name: "sign", Type: TypeKey, Version: "0123abcd", History: 3, Format: FormatPEM, Encoding: EncodingUTF8, Mode: 0o644},
					{Name: "ca", Type: TypeCert, Format: FormatPEM, Encoding: EncodingUTF8, Mode: 0o444},
					{Name: "hexed", Type: TypeSecret, Version: "0001", Format: FormatPEM, Encoding: EncodingHex, Mode: 0o644},
				},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(tt.attrs, tt.secrets, tt.perm, tt.d)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("MountConfig (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	obj := func(entries ...string) map[string]string { return map[string]string{Objects: objectsYAML(entries...)} }
	tests := []struct {
		name    string
		attrs   string
		secrets string
		perm    string
		want    []string // each must appear in the error
	}{
		{"attributes not JSON", "{", "", "420", []string{"attributes are not a JSON object"}},
		{"secrets not JSON", attrs(nil), "[1]", "420", []string{"nodePublishSecretRef secret is not a JSON object"}},
		{"permission not a mode", attrs(nil), "", `"rw"`, []string{`permission "\"rw\""`}},
		{"permission too large", attrs(nil), "", "4096", []string{"between 0 and 0777"}},
		{"missing vault", attrs(map[string]string{KeyVaultName: "<delete>"}), "", "420", []string{"keyvaultName is required"}},
		{"short vault", attrs(map[string]string{KeyVaultName: "kv"}), "", "420", []string{`keyvaultName "kv" must be 3-24`}},
		{"long vault", attrs(map[string]string{KeyVaultName: strings.Repeat("a", 25)}), "", "420", []string{"must be 3-24"}},
		{"vault with dot", attrs(map[string]string{KeyVaultName: "kv.evil.com"}), "", "420", []string{"must be 3-24 characters of letters, digits and '-'"}},
		{"missing tenant", attrs(map[string]string{TenantID: "<delete>"}), "", "420", []string{"tenantID is required"}},
		{"unknown cloud", attrs(map[string]string{CloudName: "AzureMoonCloud"}), "", "420", []string{`cloudName "AzureMoonCloud" is not one of AzurePublicCloud`}},
		{"retired cloud", attrs(map[string]string{CloudName: "azuregermancloud"}), "", "420", []string{"cloudName AzureGermanCloud was retired"}},
		{"stack without env file", attrs(map[string]string{CloudName: "azurestackcloud"}), "", "420", []string{"cloudEnvFileName is required when cloudName is AzureStackCloud"}},
		{"pod identity", attrs(map[string]string{UsePodIdentity: "true"}), "", "420", []string{"usePodIdentity is not supported", "use workload identity"}},
		{"token proxy", attrs(map[string]string{UseAzureTokenProxy: "true"}), "", "420", []string{`useAzureTokenProxy is "true" but the driver sent no service account token for audience "api://AKSIdentityBinding"`}},
		{"bad bool", attrs(map[string]string{ClientID: "<delete>", UseVMManagedIdentity: "yes"}), "", "420", []string{`useVMManagedIdentity "yes" must be "true" or "false"`}},
		{"workload identity without token", attrs(map[string]string{ServiceAccountTokens: "<delete>"}), "", "420",
			[]string{"no service account token for audience \"api://AzureADTokenExchange\"", "tokenRequests"}},
		{"workload identity with token for another audience", attrs(map[string]string{ServiceAccountTokens: tokensJSON("vault", saToken)}), "", "420",
			[]string{"add {audience: api://AzureADTokenExchange} to tokenRequests"}},
		{"tokens not JSON", attrs(map[string]string{ServiceAccountTokens: "{"}), "", "420", []string{"serviceAccount.tokens from the driver is not valid JSON"}},
		{"no identity", attrs(map[string]string{ClientID: "<delete>"}), "", "420", []string{"no identity configured", "nodePublishSecretRef"}},
		{"service principal without secret", attrs(map[string]string{ClientID: "<delete>"}), `{"clientid":"sp"}`, "420",
			[]string{"nodePublishSecretRef secret has no clientsecret"}},
		{"missing objects", attrs(map[string]string{Objects: "<delete>"}), "", "420", []string{"objects is required"}},
		{"objects not YAML", attrs(map[string]string{Objects: "array: [\"a\""}), "", "420", []string{"objects is not a YAML document"}},
		{"objects a list", attrs(map[string]string{Objects: "- a"}), "", "420", []string{"objects is not a YAML document"}},
		{"array not a list", attrs(map[string]string{Objects: "array: 3"}), "", "420", []string{"objects is not a YAML document"}},
		{"empty entry", attrs(obj("")), "", "420", []string{"objects[0] (\"\"): the entry is empty"}},
		{"field of the wrong type", attrs(obj("objectName: a\nobjectType: secret\nobjectVersionHistory: many")), "", "420", []string{`objects[0] ("")`, "cannot unmarshal"}},
		{"missing name", attrs(obj("objectType: secret")), "", "420", []string{`objects[0] (""): objectName is required`}},
		{"bad name", attrs(obj("objectName: a/b\nobjectType: secret")), "", "420", []string{`objectName "a/b" must be 1-127`}},
		{"missing type", attrs(obj("objectName: a")), "", "420", []string{`objects[0] ("a"): objectType is required`}},
		{"bad type", attrs(obj("objectName: a\nobjectType: certificate")), "", "420", []string{`objectType "certificate" is not one of secret, key, cert`}},
		{"format on key", attrs(obj("objectName: a\nobjectType: key\nobjectFormat: pfx")), "", "420", []string{"objectFormat pfx is only allowed for objectType secret"}},
		{"bad format", attrs(obj("objectName: a\nobjectType: secret\nobjectFormat: der")), "", "420", []string{`objectFormat "der" is not one of pem, pfx`}},
		{"encoding on cert", attrs(obj("objectName: a\nobjectType: cert\nobjectEncoding: hex")), "", "420", []string{"objectEncoding is only allowed for objectType secret"}},
		{"bad encoding", attrs(obj("objectName: a\nobjectType: secret\nobjectEncoding: utf-16")), "", "420", []string{`objectEncoding "utf-16" is not one of`}},
		{"bad version", attrs(obj("objectName: a\nobjectType: secret\nobjectVersion: ../x")), "", "420", []string{`objectVersion "../x" must be empty`}},
		{"symbolic permission", attrs(obj("objectName: a\nobjectType: secret\nfilePermission: rw-r--r--")), "", "420", []string{`filePermission "rw-r--r--" must be an octal mode`}},
		{"non-octal permission", attrs(obj("objectName: a\nobjectType: secret\nfilePermission: \"0800\"")), "", "420", []string{`filePermission "0800"`}},
		{"negative permission", attrs(obj("objectName: a\nobjectType: secret\nfilePermission: \"-644\"")), "", "420", []string{`filePermission "-644"`}},
		{"absolute alias", attrs(obj("objectName: a\nobjectType: secret\nobjectAlias: /etc/passwd")), "", "420", []string{`objectAlias "/etc/passwd" must be a relative path`}},
		{"dotdot alias", attrs(obj("objectName: a\nobjectType: secret\nobjectAlias: x/../../y")), "", "420", []string{`must not contain ".."`}},
		{"dotdot alias with backslashes", attrs(obj("objectName: a\nobjectType: secret\nobjectAlias: 'x\\..\\..\\y'")), "", "420", []string{`must not contain ".."`}},
		{"alias naming no file", attrs(obj("objectName: a\nobjectType: secret\nobjectAlias: ./")), "", "420", []string{"names no file"}},
		{"drive alias", attrs(obj("objectName: a\nobjectType: secret\nobjectAlias: 'C:\\x'")), "", "420", []string{"must be a relative path"}},
		{"cleaned aliases collide", attrs(obj("objectName: a\nobjectType: secret\nobjectAlias: ./f", "objectName: b\nobjectType: secret\nobjectAlias: f")), "", "420", []string{`"f"`}},
		{"duplicate path", attrs(obj("objectName: a\nobjectType: secret", "objectName: b\nobjectType: key\nobjectAlias: a")), "", "420",
			[]string{`objects[0] ("a") and objects[1] ("b") would both write "a"`}},
		{"history collides with alias", attrs(obj("objectName: a\nobjectType: secret\nobjectVersionHistory: 2", "objectName: b\nobjectType: secret\nobjectAlias: a/1")), "", "420",
			[]string{`would both write "a/1"`}},
		{"file where a directory is needed", attrs(obj("objectName: a\nobjectType: secret", "objectName: b\nobjectType: secret\nobjectAlias: a/b")), "", "420",
			[]string{`objects[1] ("b") writes "a/b" but objects[0] ("a") writes the file "a"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse(tt.attrs, tt.secrets, tt.perm, Defaults{})
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

func TestParseReportsEveryProblem(t *testing.T) {
	t.Parallel()
	a := attrs(map[string]string{
		KeyVaultName: "x", TenantID: "<delete>", CloudName: "Mars",
		Objects: objectsYAML("objectType: secret", "objectName: b\nobjectType: blob\nfilePermission: '9'"),
	})
	_, err := Parse(a, "", "420", Defaults{})
	if err == nil {
		t.Fatal("want an error")
	}
	for _, w := range []string{"keyvaultName", "tenantID is required", `cloudName "Mars"`,
		`objects[0] (""): objectName is required`, `objects[1] ("b"): objectType "blob"`, `objects[1] ("b"): filePermission "9"`} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not report %q:\n%v", w, err)
		}
	}
}

func TestIdentityNeverPrintsCredentials(t *testing.T) {
	t.Parallel()
	cfg, err := Parse(attrs(map[string]string{ClientID: "<delete>"}), `{"clientid":"sp-1","clientsecret":"hunter2-secret"}`, "420", Defaults{})
	if err != nil {
		t.Fatal(err)
	}
	wi, err := Parse(attrs(nil), "", "420", Defaults{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []MountConfig{cfg, wi} {
		for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
			out := fmt.Sprintf(format, c) + fmt.Sprintf(format, c.Identity)
			if strings.Contains(out, "hunter2-secret") || strings.Contains(out, saToken) {
				t.Errorf("%s of the config prints a credential: %s", format, out)
			}
		}
	}
	if got := fmt.Sprint(cfg.Identity); got != "service principal (client ID sp-1)" {
		t.Errorf("Identity.String() = %q", got)
	}
}

func TestObjectPaths(t *testing.T) {
	t.Parallel()
	o := Object{Name: "a", Alias: "dir/a", History: 3}
	if diff := cmp.Diff([]string{"dir/a/0", "dir/a/1", "dir/a/2"}, o.Paths()); diff != "" {
		t.Error(diff)
	}
	if got := (Object{Name: "a", Type: TypeKey}).ID(); got != "key/a" {
		t.Errorf("ID = %q", got)
	}
}

// FuzzParse checks that no input makes the parser panic, that whatever it accepts is safe to
// write (relative paths without "..", modes within 0777), and that no input costs more than the
// ceiling of checkParseCost in allocation or time. Among the seeds is, for each size bound of
// Parse, an input that the bound keeps cheap (see parseBombs).
func FuzzParse(f *testing.F) {
	seeds, _ := os.ReadFile("testdata/driver-mount-request.json")
	f.Add(string(seeds), "", "420", "objectName: a\nobjectType: secret")
	f.Add(attrs(nil), `{"clientid":"a","clientsecret":"b"}`, "420", "objectName: a\nobjectType: cert\nobjectAlias: x/y\nobjectVersionHistory: 2")
	f.Add("{}", "{}", "0", "objectName: a\nobjectType: key\nfilePermission: '0600'")
	f.Add(attrs(nil), "", "420", "objectNamePrefix: app-\nobjectTags: a=b,c=\nobjectType: secret\nobjectAlias: dir\nobjectJSONKey: a.b")
	f.Add(attrs(nil), "", "420", "objectName: w\nobjectType: secret\nobjectFormat: pfx\nobjectPFXPasswordSecret: p\nobjectPFXEncryption: legacy\nkeyvaultName: kv-b\nobjectOptional: 'true'")
	for _, s := range parseBombs() {
		f.Add(s.attributes, "", "420", s.object)
	}
	f.Fuzz(func(t *testing.T, attributes, secrets, permission, object string) {
		for _, a := range []string{attributes, attrs(map[string]string{Objects: objectsYAML(object)})} {
			cfg, err := checkParseCost(t, a, secrets, permission)
			if err != nil {
				continue
			}
			for _, o := range cfg.Objects {
				if o.Mode&^fs.ModePerm != 0 {
					t.Fatalf("mode %o beyond 0777", o.Mode)
				}
				for _, p := range o.Paths() {
					if strings.HasPrefix(p, "/") || strings.Contains("/"+p+"/", "/../") {
						t.Fatalf("unsafe path %q accepted", p)
					}
				}
			}
		}
	})
}

// The resource ceiling of one Parse call with n bytes of input (attributes, secrets and
// permission together): parseAllocPerByte*n + parseAllocFixed bytes allocated, and
// parseTimeFixed + n*parseTimePerByte.
//
// Parse is linear in its input, but with large constants that come from yaml.v3, measured (as
// heapAllocated) with every bound in place:
//   - about 800 bytes per YAML node per parse (tokens, events, the node); dense flow YAML such as
//     "[[[[" or "[a,a,a]" is one node per one or two bytes, and a document that may hold an
//     alias is parsed twice (once to count its expanded nodes, once by the strict decoder): up
//     to 1,700 bytes per input byte;
//   - 7 to 13 KiB per entry for the parsers themselves, at most MaxObjects times;
//   - a typical SecretProviderClass (500 bytes, one object): 35 KB.
//
// 2,048 bytes per input byte covers the densest YAML found, and the fixed part covers the
// per-entry cost of MaxObjects entries plus 1 MiB for the decoded JSON, the runtime and the
// testing package. Both are constants, not derived from the bounds, so that raising a bound
// cannot raise the ceiling. Time is at most about 3.5 µs per input byte on a loaded 2-core machine,
// without the fuzzer's instrumentation (which roughly doubles it): a second plus 8 µs per byte.
//
// The seeds of parseBombs stay far below this (at most 6 MB and 30 ms each, 0.4 s under -race);
// without their bound most exceed it, in memory or in time (see each seed).
const (
	parseAllocPerByte = 2048
	parseAllocFixed   = 5 << 20 // 256 entries (MaxObjects) of 16 KiB, and 1 MiB
	parseTimeFixed    = time.Second
	parseTimePerByte  = 8 * time.Microsecond
)

// checkParseCost runs Parse and fails t if it allocated or took more than the ceiling. The
// allocation counter is the process's, and the machine may stall the process, so a call over the
// ceiling is measured twice more and judged by its smallest cost: Parse is deterministic, and
// what another goroutine allocated or a stall cost does not repeat.
func checkParseCost(t *testing.T, attributes, secrets, permission string) (MountConfig, error) {
	t.Helper()
	n := len(attributes) + len(secrets) + len(permission)
	allocCeiling := uint64(n)*parseAllocPerByte + parseAllocFixed
	timeCeiling := parseTimeFixed + time.Duration(n)*parseTimePerByte
	var cfg MountConfig
	var err error
	allocated, elapsed := ^uint64(0), time.Duration(1<<63-1)
	for range 3 {
		before := heapAllocated(t)
		start := time.Now()
		cfg, err = Parse(attributes, secrets, permission, Defaults{})
		elapsed = min(elapsed, time.Since(start))
		allocated = min(allocated, heapAllocated(t)-before)
		if allocated <= allocCeiling && elapsed <= timeCeiling {
			break
		}
	}
	if testing.Verbose() && n > 4<<10 {
		t.Logf("Parse of %d bytes: %d bytes allocated (%.0f per input byte), %s", n, allocated, float64(allocated)/float64(n), elapsed)
	}
	if allocated > allocCeiling {
		t.Errorf("Parse of %d bytes of input allocated %d bytes, more than the %d allowed (%d per input byte + %d)",
			n, allocated, allocCeiling, parseAllocPerByte, parseAllocFixed)
	}
	if elapsed > timeCeiling {
		t.Errorf("Parse of %d bytes of input took %s, more than the %s allowed", n, elapsed, timeCeiling)
	}
	return cfg, err
}

// heapAllocated is the number of bytes allocated on the heap so far: runtime.MemStats.TotalAlloc,
// read through runtime/metrics, which does not stop the world (ReadMemStats takes about 0.2 ms,
// more than most Parse calls). It counts the whole process, and small objects by the span, so
// one reading can be off by up to about a megabyte: the fixed part of the ceiling absorbs that,
// and a call over the ceiling is measured again before it fails.
func heapAllocated(t *testing.T) uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		t.Fatalf("runtime/metrics has no %s", s[0].Name)
	}
	return s[0].Value.Uint64()
}

// parseBomb is a FuzzParse seed: attributes for the first Parse, an object entry for the second.
type parseBomb struct {
	attributes string
	object     string
}

// parseBombs are inputs that the size bounds of Parse keep cheap. What each costs with its bound
// raised was measured on a copy of the package.
func parseBombs() []parseBomb {
	entry := func(extra string) string { return "objectName: a\nobjectType: secret\n" + extra }
	withObjects := func(doc string) string { return attrs(map[string]string{Objects: doc}) }
	list := func(item string, n int) string {
		return "[" + strings.TrimSuffix(strings.Repeat(item+", ", n), ", ") + "]"
	}

	// Billion laughs, the classic shape: nine anchors, each a list of nine aliases of the one
	// before (9^9 scalars once expanded). Refused by MaxYAMLNodes; without it yaml.v3 does not
	// expand aliases decoded into a string or a []string of strings, and costs nothing either.
	var laughs strings.Builder
	laughs.WriteString("l0: &l0 " + list("lol", 9) + "\n")
	for i := 1; i <= 8; i++ {
		fmt.Fprintf(&laughs, "l%d: &l%d %s\n", i, i, list(fmt.Sprintf("*l%d", i-1), 9))
	}

	// The same with merge keys, which yaml.v3 does expand into a struct: each level merges ten
	// copies of the one before. yaml.v3 stops a document once more than 99% of what it decoded
	// came from aliases, so 4,000 plain entries buy about 400,000 merges. Refused by
	// MaxYAMLNodes; without it the merges cost about 6 MB and 0.4 s: yaml.v3's own limit keeps
	// this within the ceiling, so this seed does not depend on MaxYAMLNodes.
	var merges strings.Builder
	merges.WriteString("m0: &m0 {}\n")
	for i := 1; i <= 7; i++ {
		fmt.Fprintf(&merges, "m%d: &m%d {<<: %s}\n", i, i, list(fmt.Sprintf("*m%d", i-1), 10))
	}
	merges.WriteString("<<: *m7\n")

	return []parseBomb{
		// Billion laughs in an entry, and as the objects array.
		{attrs(nil), entry(laughs.String() + "objectAlias: *l8")},
		{withObjects(laughs.String() + "array: *l8\n"), entry("")},
		{withObjects("array: " + list("a", 4000) + "\n" + merges.String()), entry("")},
		// Refused by MaxVersionHistory, and by MaxFiles without it. Without both, Paths and
		// checkPaths build one path per version, twice: about 290 MB and 3 s for a million
		// versions, and for the largest int32 a []string of 2^31 (32 GiB) before the first path.
		{attrs(nil), entry("objectVersionHistory: 1000000")},
		{attrs(nil), entry("objectVersionHistory: 2147483647")},
		// 20,000 one-letter objects in flow style (40 KB). Refused by MaxObjects before any entry
		// is parsed; without it, parsing them costs about 150 MB, 1.7 times the ceiling (each
		// entry costs yaml.v3 a parser, about 7 KiB, for two bytes of input).
		{withObjects("array: [" + strings.TrimSuffix(strings.Repeat("a,", 20000), ",") + "]\n"), entry("")},
		// A 100,000-character alias of 50,000 path elements. Refused by MaxAliasLength; without
		// it, checkPaths walks up 50,000 parent directories with path.Dir, each a scan of the
		// whole path: 6 to 13 s.
		{attrs(nil), entry("objectAlias: " + strings.Repeat("a/", 49999) + "aa")},
		// The same length in one element: linear even without the bound (MaxAliasLength is
		// first a limit of the file system), and refused by it.
		{attrs(nil), entry("objectAlias: " + strings.Repeat("a", 100000))},
		// 1,000 repeated keys in one mapping (2.4 KB): yaml.v3 compares every pair of keys and
		// builds an error per repeat, 344 MB and 1-2 s. Refused by MaxYAMLKeys (and the repeat
		// check) before it is decoded.
		{withObjects("{" + strings.TrimSuffix(strings.Repeat("a,", 1000), ",") + "}"), entry("")},
		{attrs(nil), "{" + strings.TrimSuffix(strings.Repeat("a,", 1000), ",") + "}"},
	}
}

func TestParseDriverRequest(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/driver-mount-request.json")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(string(data), "", "420", Defaults{CloudName: AzurePublicCloud})
	if err != nil {
		t.Fatalf("Parse of a captured driver request: %v", err)
	}
	if cfg.Identity.Mode != WorkloadIdentity || cfg.Pod.ServiceAccount != "workload-identity-sa" || cfg.Pod.UID == "" || len(cfg.Objects) != 2 {
		t.Errorf("unexpected config: %+v", cfg)
	}
}
