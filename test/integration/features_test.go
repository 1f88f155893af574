package integration

import (
	"bytes"
	"crypto"
	"crypto/sha1" //nolint:gosec // certificate thumbprints
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"
	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/emulator"
	"github.com/akv-csi/provider/pkg/provider"
)

// spMount is a service principal mount of kv-int with the given object entries.
func spMount(objs ...string) mountRequest {
	return spRequest(spOK, objs...)
}

// wantFiles compares a response's files (contents and modes) with want, and that there are no others.
func wantFiles(t *testing.T, resp *v1alpha1.MountResponse, want map[string]string, modes map[string]int32) {
	t.Helper()
	got := files(resp)
	for path, w := range want {
		f, ok := got[path]
		if !ok {
			t.Errorf("no file %q", path)
			continue
		}
		if !bytes.Equal(f.GetContents(), []byte(w)) {
			t.Errorf("file %q:\n got %q\nwant %q", path, f.GetContents(), w)
		}
		mode := int32(0o644)
		if m, ok := modes[path]; ok {
			mode = m
		}
		if f.GetMode() != mode {
			t.Errorf("file %q mode %o, want %o", path, f.GetMode(), mode)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d files, want %d: %s", len(got), len(want), cmp.Diff(keys(want), keys(got)))
	}
}

// versionsOf lists a response's ObjectVersion entries as "id=version".
func versionsOf(resp *v1alpha1.MountResponse) []string {
	var out []string
	for _, v := range resp.GetObjectVersion() {
		out = append(out, v.GetId()+"="+v.GetVersion())
	}
	return out
}

// wantMountError mounts and checks the gRPC code, that the message holds every want, and that it
// leaks no secret.
func wantMountError(t *testing.T, c v1alpha1.CSIDriverProviderClient, r mountRequest, code codes.Code, want ...string) string {
	t.Helper()
	resp, err := mount(t, c, r)
	if err == nil {
		t.Fatalf("Mount succeeded with %d files, want %s", len(resp.GetFiles()), code)
	}
	st := status.Convert(err)
	if st.Code() != code {
		t.Errorf("code = %s, want %s (%s)", st.Code(), code, st.Message())
	}
	for _, w := range want {
		if !strings.Contains(st.Message(), w) {
			t.Errorf("message lacks %q:\n%s", w, st.Message())
		}
	}
	if leaked := leakedSecrets(st.Message()); len(leaked) > 0 {
		t.Errorf("message leaks %q", leaked)
	}
	return st.Message()
}

func latestSecretVersion(t *testing.T, name string) string {
	t.Helper()
	vs := em.SecretVersions(vault, name)
	if len(vs) == 0 {
		t.Fatalf("no secret %q in the emulator", name)
	}
	return vs[len(vs)-1].Version
}

// TestJSONKey mounts several members of one JSON secret (an exact key that is no JMESPath
// identifier, JMESPath expressions, a member that is itself JSON, a base64 member decoded by
// objectEncoding) with their own aliases and modes, for one Key Vault GET.
func TestJSONKey(t *testing.T) {
	c := startProvider(t, provider.Options{Parallelism: 1}) // entries one after another: the mount shares the read, not timing
	r := spMount(
		"objectName: app-config\nobjectType: secret\nobjectJSONKey: db-password\nobjectAlias: db-password\nfilePermission: \"0400\"",
		"objectName: app-config\nobjectType: secret\nobjectJSONKey: api.token\nobjectAlias: api-token",
		"objectName: app-config\nobjectType: secret\nobjectJSONKey: api\nobjectAlias: api.json",
		"objectName: app-config\nobjectType: secret\nobjectJSONKey: list[-1]\nobjectAlias: list-last",
		"objectName: app-config\nobjectType: secret\nobjectJSONKey: '\"cert-b64\"'\nobjectEncoding: base64\nobjectAlias: bin",
		"objectName: app-config\nobjectType: secret\nobjectAlias: whole.json",
	)
	em.ResetCounters()
	resp := mustMount(t, c, r)
	wantFiles(t, resp, map[string]string{
		"db-password": jsonDBPass,
		"api-token":   jsonToken,
		"api.json":    `{"token":"` + jsonToken + `","port":5432}`, // stored order, compact
		"list-last":   "2",
		"bin":         "json-bin-Kx4",
		"whole.json":  appConfig,
	}, map[string]int32{"db-password": 0o400})
	if got := em.Counters().KeyVaultGets; !cmp.Equal(got, map[string]int64{"secret": 1}) {
		t.Errorf("6 entries of one secret made Key Vault GETs %v, want 1 secret GET", got)
	}
	v := latestSecretVersion(t, "app-config")
	want := strings.Repeat("secret/app-config="+v+" ", 6)
	if got := strings.Join(versionsOf(resp), " ") + " "; got != want {
		t.Errorf("object versions %q, want %q", got, want)
	}
}

func TestJSONKeyErrors(t *testing.T) {
	c := startProvider(t, provider.Options{})
	for _, tt := range []struct {
		name  string
		entry string
		code  codes.Code
		want  []string
	}{
		{"key absent", "objectName: app-config\nobjectType: secret\nobjectJSONKey: password", codes.InvalidArgument,
			[]string{`get secret "app-config" (version latest) in vault "kv-int": objectJSONKey "password": the secret's JSON has no such key`,
				`its top-level keys are "api", "cert-b64", "db-password", "list"`}},
		{"not JSON", "objectName: not-json\nobjectType: secret\nobjectJSONKey: a", codes.InvalidArgument,
			[]string{`get secret "not-json"`, "the secret's value is not JSON (syntax error at byte", "remove objectJSONKey"}},
		{"neither a key nor JMESPath", "objectName: app-config\nobjectType: secret\nobjectJSONKey: 'a..b'", codes.InvalidArgument,
			[]string{`objectJSONKey "a..b": an empty name between dots at byte 2 is not accepted`, "a JMESPath path"}},
		{"certificate's secret", "objectName: web-pfx\nobjectType: secret\nobjectJSONKey: a", codes.InvalidArgument,
			[]string{`get secret "web-pfx"`, "this secret holds a certificate (application/x-pkcs12), not JSON"}},
		{"on a key", "objectName: rsa\nobjectType: key\nobjectJSONKey: a", codes.InvalidArgument,
			[]string{`objects[0] ("rsa"): objectJSONKey is only allowed for objectType secret, not key`}},
		{"on a cert", "objectName: web-pfx\nobjectType: cert\nobjectJSONKey: a", codes.InvalidArgument,
			[]string{`objects[0] ("web-pfx"): objectJSONKey is only allowed for objectType secret, not cert`}},
		{"with pfx", "objectName: web-pfx\nobjectType: secret\nobjectFormat: pfx\nobjectJSONKey: a", codes.InvalidArgument,
			[]string{"objectJSONKey cannot be combined with objectFormat pfx"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wantMountError(t, c, spMount(tt.entry), tt.code, tt.want...)
		})
	}
}

// TestOptional: an optional object that is absent, disabled, or pinned to a version that does not
// exist is skipped (no file, no ObjectVersion); any other failure still fails the whole mount; an
// optional object that appears later is written by the next mount (the driver's rotation), and
// one that is deleted disappears again.
func TestOptional(t *testing.T) {
	c := startProvider(t, provider.Options{})
	r := spMount(
		"objectName: plain\nobjectType: secret",
		"objectName: later\nobjectType: secret\nobjectOptional: \"true\"",
		"objectName: off\nobjectType: secret\nobjectOptional: \"true\"",
		"objectName: plain\nobjectType: secret\nobjectVersion: abc123\nobjectAlias: pinned\nobjectOptional: \"true\"",
		"objectName: gone\nobjectType: secret\nobjectVersionHistory: 2\nobjectOptional: \"true\"",
		"objectName: nokey\nobjectType: key\nobjectOptional: \"true\"",
		"objectName: nocert\nobjectType: cert\nobjectOptional: \"true\"",
	)
	em.ResetCounters()
	resp := mustMount(t, c, r)
	wantFiles(t, resp, map[string]string{"plain": plainValue}, nil)
	if got, want := versionsOf(resp), []string{"secret/plain=" + latestSecretVersion(t, "plain")}; !cmp.Equal(got, want) {
		t.Errorf("object versions %v, want %v", got, want)
	}
	// plain, later (404), off (403 disabled), plain/abc123 (404); gone: one list page (empty); nokey, nocert (404).
	if diff := cmp.Diff(map[string]int64{"secret": 4, "key": 1, "certificate": 1}, em.Counters().KeyVaultGets); diff != "" {
		t.Errorf("Key Vault GETs (-want +got):\n%s", diff)
	}
	if !strings.Contains(logs.String(), `"optional object is absent, deleted or disabled: not written"`) ||
		!strings.Contains(logs.String(), `objectName="off"`) {
		t.Error("the skipped optional objects are not logged with their names")
	}

	if _, err := em.AddSecretVersion(vault, "later", laterValue); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = em.DeleteSecret(vault, "later") })
	resp, err := mount(t, c, r)
	if err != nil {
		t.Fatalf("Mount after the optional secret appeared: %v", err)
	}
	wantFiles(t, resp, map[string]string{"plain": plainValue, "later": laterValue}, nil)
	if got := versionsOf(resp); len(got) != 2 || got[1] != "secret/later="+latestSecretVersion(t, "later") {
		t.Errorf("object versions %v, want plain's then later's", got)
	}
	if err := em.DeleteSecret(vault, "later"); err != nil {
		t.Fatal(err)
	}
	resp, err = mount(t, c, r)
	if err != nil {
		t.Fatalf("Mount after the optional secret was deleted: %v", err)
	}
	wantFiles(t, resp, map[string]string{"plain": plainValue}, nil)

	// Any other failure of an optional object fails the mount: this identity may read secrets only.
	denied := mountRequest{params: map[string]string{config.KeyVaultName: vault, config.TenantID: tenant, config.UseVMManagedIdentity: "true",
		config.UserAssignedIdentityID: miUser, config.Objects: objects("objectName: plain\nobjectType: secret", "objectName: rsa\nobjectType: key\nobjectOptional: \"true\"")}}
	wantMountError(t, c, denied, codes.PermissionDenied, `1 of 2 objects failed`, `get key "rsa" (version latest) in vault "kv-int": 403`, `"Key Vault Crypto User"`)
	// A non-optional absent object fails as before.
	wantMountError(t, c, spMount("objectName: later\nobjectType: secret"), codes.NotFound, `get secret "later"`, "404")
	wantMountError(t, c, spMount("objectName: off\nobjectType: secret"), codes.PermissionDenied, `get secret "off"`, "this version is disabled")
}

// TestFormatKeyAndChain writes a certificate's private key alone and its chain alone, each with
// its own alias and mode, byte-identical to the parts of its pem output, for one GET per
// certificate; --write-cert-and-key-in-separate-files adds nothing to them.
func TestFormatKeyAndChain(t *testing.T) {
	c := startProvider(t, provider.Options{WriteCertAndKeyInSeparateFiles: true, Parallelism: 1})
	r := spMount(
		"objectName: web-pfx\nobjectType: secret\nobjectFormat: key\nobjectAlias: tls/tls.key\nfilePermission: \"0600\"",
		"objectName: web-pfx\nobjectType: secret\nobjectFormat: chain\nobjectAlias: tls/tls.crt",
		"objectName: web-pfx\nobjectType: secret\nobjectAlias: tls/full.pem",
		"objectName: web-pem\nobjectType: secret\nobjectFormat: key\nobjectAlias: pem/key",
		"objectName: web-pem\nobjectType: secret\nobjectFormat: chain\nobjectAlias: pem/chain",
		"objectName: web-partial\nobjectType: secret\nobjectFormat: chain",
	)
	em.ResetCounters()
	resp := mustMount(t, c, r)
	pfxKey, pfxCerts := chainPEM(t, certMaterial(t, "web-pfx"))
	pemMat := certMaterial(t, "web-pem")
	pemKey, pemCerts := splitPEM(t, pemMat.SecretValue)
	_, partialCerts := chainPEM(t, certMaterial(t, "web-partial"))
	full := string(pfxKey) + string(pfxCerts)
	wantFiles(t, resp, map[string]string{
		"tls/tls.key":      string(pfxKey),
		"tls/tls.crt":      string(pfxCerts),
		"tls/full.pem":     full,
		"tls/full.pem.key": string(pfxKey),
		"tls/full.pem.crt": string(pfxCerts),
		"pem/key":          string(pemKey),
		"pem/chain":        string(pemCerts),
		"web-partial":      string(partialCerts),
	}, map[string]int32{"tls/tls.key": 0o600})
	if diff := cmp.Diff(map[string]int64{"secret": 3}, em.Counters().KeyVaultGets); diff != "" {
		t.Errorf("Key Vault GETs for 3 certificates (-want +got):\n%s", diff)
	}
	got := map[string]int{}
	for _, v := range versionsOf(resp) {
		got[v]++
	}
	want := map[string]int{"secret/web-pfx=" + certMaterial(t, "web-pfx").Version: 5, "secret/web-pem=" + pemMat.Version: 2,
		"secret/web-partial=" + certMaterial(t, "web-partial").Version: 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("object versions (-want +got):\n%s", diff)
	}
}

func TestFormatKeyAndChainErrors(t *testing.T) {
	c := startProvider(t, provider.Options{})
	for _, tt := range []struct {
		name  string
		entry string
		code  codes.Code
		want  []string
	}{
		{"key of a plain secret", "objectName: plain\nobjectType: secret\nobjectFormat: key", codes.InvalidArgument,
			[]string{`get secret "plain" (version latest) in vault "kv-int": objectFormat key needs a certificate's secret, but this is a plain secret`}},
		{"chain of a plain secret", "objectName: plain\nobjectType: secret\nobjectFormat: chain", codes.InvalidArgument,
			[]string{"objectFormat chain needs a certificate's secret"}},
		{"key of a certificate whose key is not exportable", "objectName: locked\nobjectType: secret\nobjectFormat: key", codes.InvalidArgument,
			[]string{`get secret "locked"`, "holds no private key (the certificate's key is not exportable)", "objectType cert"}},
		{"key format on a key object", "objectName: rsa\nobjectType: key\nobjectFormat: key", codes.InvalidArgument,
			[]string{`objects[0] ("rsa"): objectFormat key is only allowed for objectType secret`}},
		{"chain with hex", "objectName: web-pfx\nobjectType: secret\nobjectFormat: chain\nobjectEncoding: hex", codes.InvalidArgument,
			[]string{"objectEncoding hex cannot be combined with objectFormat chain"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wantMountError(t, c, spMount(tt.entry), tt.code, tt.want...)
		})
	}
}

// TestMetadata writes the metadata document of a secret, a key and a certificate next to their
// values: the properties Key Vault returned, never a value or key byte, for one GET per object.
func TestMetadata(t *testing.T) {
	c := startProvider(t, provider.Options{Parallelism: 1})
	r := spMount(
		"objectName: tagged\nobjectType: secret",
		"objectName: tagged\nobjectType: secret\nobjectFormat: metadata\nobjectAlias: meta/tagged.json\nfilePermission: \"0640\"",
		"objectName: rsa\nobjectType: key\nobjectFormat: metadata\nobjectAlias: meta/rsa.json",
		"objectName: web-pfx\nobjectType: cert\nobjectFormat: metadata\nobjectAlias: meta/web.json",
		"objectName: web-pfx\nobjectType: secret\nobjectFormat: metadata\nobjectAlias: meta/web-secret.json",
	)
	em.ResetCounters()
	resp := mustMount(t, c, r)
	if diff := cmp.Diff(map[string]int64{"secret": 2, "key": 1, "certificate": 1}, em.Counters().KeyVaultGets); diff != "" {
		t.Errorf("Key Vault GETs (-want +got):\n%s", diff)
	}
	sv := em.SecretVersions(vault, "tagged")[0]
	rfc := func(t *time.Time) string { return t.UTC().Format(time.RFC3339) }
	_, rsaVersion := publicKeyPEM(t, "rsa")
	web := certMaterial(t, "web-pfx")
	s1, s256 := sha1.Sum(web.Leaf.Raw), sha256.Sum256(web.Leaf.Raw) //nolint:gosec // thumbprint
	// A certificate's secret describes the same certificate as the certificate does.
	webCert := `
  "certificate": {
    "subject": "` + web.Leaf.Subject.String() + `",
    "issuer": "` + web.Leaf.Issuer.String() + `",
    "serialNumber": "` + web.Leaf.SerialNumber.Text(16) + `",
    "sha1Thumbprint": "` + fmt.Sprintf("%X", s1[:]) + `",
    "sha256Thumbprint": "` + fmt.Sprintf("%X", s256[:]) + `",
    "notBefore": "` + rfc(&web.Leaf.NotBefore) + `",
    "notAfter": "` + rfc(&web.Leaf.NotAfter) + `"
  }
`
	// The emulator's key and certificate versions are created at its epoch plus i hours.
	wantFiles(t, resp, map[string]string{
		"tagged": taggedValue,
		"meta/tagged.json": `{
  "name": "tagged",
  "type": "secret",
  "vault": "kv-int",
  "version": "` + sv.Version + `",
  "contentType": "text/plain",
  "enabled": true,
  "created": "` + rfc(sv.Created) + `",
  "updated": "` + rfc(sv.Created) + `",
  "notBefore": "` + rfc(sv.NotBefore) + `",
  "expires": "` + rfc(sv.Expires) + `",
  "tags": {
    "env": "prod",
    "team": "payments"
  }
}
`,
		"meta/rsa.json": `{
  "name": "rsa",
  "type": "key",
  "vault": "kv-int",
  "version": "` + rsaVersion + `",
  "contentType": null,
  "enabled": true,
  "created": "2025-01-01T01:00:00Z",
  "updated": "2025-01-01T01:00:00Z",
  "notBefore": null,
  "expires": null,
  "tags": {}
}
`,
		"meta/web.json": `{
  "name": "web-pfx",
  "type": "cert",
  "vault": "kv-int",
  "version": "` + web.Version + `",
  "contentType": "application/x-pkcs12",
  "enabled": true,
  "created": "2025-01-01T01:00:00Z",
  "updated": "2025-01-01T01:00:00Z",
  "notBefore": "` + rfc(&web.Leaf.NotBefore) + `",
  "expires": "` + rfc(&web.Leaf.NotAfter) + `",
  "tags": {
    "team": "web"
  },` + webCert + `}
`,
		"meta/web-secret.json": `{
  "name": "web-pfx",
  "type": "secret",
  "vault": "kv-int",
  "version": "` + web.Version + `",
  "contentType": "application/x-pkcs12",
  "enabled": true,
  "created": "2025-01-01T01:00:00Z",
  "updated": "2025-01-01T01:00:00Z",
  "notBefore": "` + rfc(&web.Leaf.NotBefore) + `",
  "expires": "` + rfc(&web.Leaf.NotAfter) + `",
  "tags": {
    "team": "web"
  },` + webCert + `}
`,
	}, map[string]int32{"meta/tagged.json": 0o640})
	for _, f := range resp.GetFiles() {
		if strings.HasPrefix(f.GetPath(), "meta/") && (len(leakedSecrets(string(f.GetContents()))) > 0 || strings.Contains(string(f.GetContents()), "PRIVATE KEY") ||
			strings.Contains(string(f.GetContents()), web.SecretValue[:40])) {
			t.Errorf("%s holds secret material", f.GetPath())
		}
	}
	want := []string{"secret/tagged=" + sv.Version, "secret/tagged=" + sv.Version, "key/rsa=" + rsaVersion, "cert/web-pfx=" + web.Version, "secret/web-pfx=" + web.Version}
	if diff := cmp.Diff(want, versionsOf(resp)); diff != "" {
		t.Errorf("object versions (-want +got):\n%s", diff)
	}

	// A PEM certificate's secret describes its leaf as the certificate does.
	pemLeaf := certMaterial(t, "web-pem").Leaf
	pemResp := mustMount(t, c, spMount(
		"objectName: web-pem\nobjectType: cert\nobjectFormat: metadata\nobjectAlias: cert.json",
		"objectName: web-pem\nobjectType: secret\nobjectFormat: metadata\nobjectAlias: secret.json"))
	pemSum := sha256.Sum256(pemLeaf.Raw)
	for path, f := range files(pemResp) {
		var doc struct {
			Certificate *struct{ Subject, SHA256Thumbprint string }
		}
		if err := json.Unmarshal(f.GetContents(), &doc); err != nil || doc.Certificate == nil ||
			doc.Certificate.Subject != pemLeaf.Subject.String() || doc.Certificate.SHA256Thumbprint != fmt.Sprintf("%X", pemSum[:]) {
			t.Errorf("%s describes no certificate or another than the leaf %s: %s", path, pemLeaf.Subject, f.GetContents())
		}
	}

	// Unchanged properties: the same bytes on the next mount, so a rotation rewrites nothing.
	again, err := mount(t, c, r)
	if err != nil {
		t.Fatal(err)
	}
	for path, f := range files(resp) {
		if !bytes.Equal(files(again)[path].GetContents(), f.GetContents()) {
			t.Errorf("%s changed between two mounts of unchanged objects", path)
		}
	}
}

// TestObjectVault reads objects of one mount from two vaults of the same tenant with the mount's
// identity: one token request for both, one challenge per vault client, and errors that name the
// vault of the object that failed.
func TestObjectVault(t *testing.T) {
	c := startProvider(t, provider.Options{})
	r := spMount(
		"objectName: plain\nobjectType: secret",
		"objectName: plain\nobjectType: secret\nkeyvaultName: "+vaultB+"\nobjectAlias: b/plain",
		"objectName: plain\nobjectType: secret\nkeyvaultName: "+vaultB+"\nobjectAlias: b/plain.meta\nobjectFormat: metadata",
		"objectName: plain\nobjectType: secret\nkeyvaultName: "+vault+"\nobjectAlias: a/plain",
	)
	em.ResetCounters()
	resp := mustMount(t, c, r)
	got := files(resp)
	if string(got["plain"].GetContents()) != plainValue || string(got["a/plain"].GetContents()) != plainValue ||
		string(got["b/plain"].GetContents()) != plainValueB || !strings.Contains(string(got["b/plain.meta"].GetContents()), `"vault": "`+vaultB+`"`) {
		t.Errorf("files: %v", keys(got))
	}
	versionB := em.SecretVersions(vaultB, "plain")[0].Version
	want := []string{"secret/plain=" + latestSecretVersion(t, "plain"), "secret/plain=" + versionB, "secret/plain=" + versionB, "secret/plain=" + latestSecretVersion(t, "plain")}
	if diff := cmp.Diff(want, versionsOf(resp)); diff != "" {
		t.Errorf("object versions (-want +got):\n%s", diff)
	}
	n := em.Counters()
	if n.TokenRequests != 1 || n.Challenges != 2 || n.KeyVaultGets["secret"] != 2 {
		t.Errorf("two vaults cost %d token requests, %d challenges, %d secret GETs; want 1, 2 (one per vault), 2", n.TokenRequests, n.Challenges, n.KeyVaultGets["secret"])
	}

	// This identity may read secrets of kv-int only: the failure names kv-int-b and what to grant there.
	denied := mountRequest{params: map[string]string{config.KeyVaultName: vault, config.TenantID: tenant, config.UseVMManagedIdentity: "true",
		config.UserAssignedIdentityID: miUser, config.Objects: objects("objectName: plain\nobjectType: secret",
			"objectName: plain\nobjectType: secret\nkeyvaultName: "+vaultB+"\nobjectAlias: b")}}
	wantMountError(t, c, denied, codes.PermissionDenied, "1 of 2 objects failed",
		`get secret "plain" (version latest) in vault "kv-int-b": 403`, `"Key Vault Secrets User" role on vault "kv-int-b"`)
	wantMountError(t, c, spMount("objectName: db-pass\nobjectType: secret\nkeyvaultName: "+vaultB), codes.NotFound,
		`get secret "db-pass" (version latest) in vault "kv-int-b": 404`, `vault "kv-int-b" has no such secret`)
	wantMountError(t, c, spMount("objectName: plain\nobjectType: secret\nkeyvaultName: kv.evil.com"), codes.InvalidArgument,
		`objects[0] ("plain"): keyvaultName "kv.evil.com" must be 3-24 characters`)
}

// vaultBMount is a service principal mount of vault B.
func vaultBMount(objs ...string) mountRequest {
	r := spMount(objs...)
	r.params[config.KeyVaultName] = vaultB
	return r
}

// TestSelection mounts every enabled, current secret of a name prefix under a directory and every
// secret carrying two tags at the top level, and the certificates of a prefix: the vault's list
// pages (shared by the entries of the mount) plus one GET per match. A new tagged secret appears
// on the next mount, a deleted one disappears.
func TestSelection(t *testing.T) {
	c := startProvider(t, provider.Options{Parallelism: 1})
	r := vaultBMount(
		"objectNamePrefix: app-\nobjectType: secret\nobjectAlias: apps\nfilePermission: \"0400\"",
		"objectTags: team=payments, env=prod\nobjectType: secret",
		"objectNamePrefix: app-\nobjectTags: team=payments\nobjectType: cert\nobjectAlias: certs",
	)
	em.ResetCounters()
	resp := mustMount(t, c, r)
	cm, err := em.Certificate(vaultB, "app-cert", "")
	if err != nil {
		t.Fatal(err)
	}
	key, chain := chainPEM(t, cm)
	wantFiles(t, resp, map[string]string{
		"apps/app-api":   appAPI,
		"apps/app-cert":  string(key) + string(chain),
		"apps/app-db":    appDB,
		"app-db":         appDB,
		"other":          appOther,
		"certs/app-cert": string(pemBlock("CERTIFICATE", cm.Leaf.Raw)),
	}, map[string]int32{"apps/app-api": 0o400, "apps/app-cert": 0o400, "apps/app-db": 0o400})
	n := em.Counters()
	// Vault B lists 8 secrets (7 and the certificate's) in pages of 2, and 1 certificate.
	if diff := cmp.Diff(map[string]int64{"secret": 4, "certificate": 1}, n.KeyVaultLists); diff != "" {
		t.Errorf("list pages (-want +got):\n%s", diff)
	}
	// app-api, app-cert, app-db (shared by two entries), other; the certificate app-cert.
	if diff := cmp.Diff(map[string]int64{"secret": 4, "certificate": 1}, n.KeyVaultGets); diff != "" {
		t.Errorf("GETs (-want +got):\n%s", diff)
	}
	ver := func(name string) string { return em.SecretVersions(vaultB, name)[0].Version }
	want := []string{"secret/app-api=" + ver("app-api"), "secret/app-cert=" + cm.Version, "secret/app-db=" + ver("app-db"),
		"secret/app-db=" + ver("app-db"), "secret/other=" + ver("other"), "cert/app-cert=" + cm.Version}
	if diff := cmp.Diff(want, versionsOf(resp)); diff != "" {
		t.Errorf("object versions (-want +got):\n%s", diff)
	}

	// Rotation: a new match appears, a deleted one disappears.
	const newValue = "app-new-Qa7"
	if _, err := em.AddSecret(vaultB, "app-new", emulator.SecretVersion{Value: newValue, Tags: map[string]string{"team": "payments", "env": "prod"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = em.DeleteSecret(vaultB, "app-new") })
	resp, err = mount(t, c, r)
	if err != nil {
		t.Fatal(err)
	}
	if got := files(resp); string(got["apps/app-new"].GetContents()) != newValue || string(got["app-new"].GetContents()) != newValue {
		t.Errorf("the new tagged secret is not mounted: %v", keys(got))
	}
	if err := em.DeleteSecret(vaultB, "app-new"); err != nil {
		t.Fatal(err)
	}
	resp, err = mount(t, c, r)
	if err != nil {
		t.Fatal(err)
	}
	if got := files(resp); got["apps/app-new"] != nil || got["app-new"] != nil || len(got) != 6 {
		t.Errorf("the deleted secret is still mounted: %v", keys(got))
	}
	if strings.Contains(logs.String(), newValue) {
		t.Error("a selected value reached the log")
	}
}

func TestSelectionErrors(t *testing.T) {
	capped := startProvider(t, provider.Options{MaxSelectedObjects: 2})
	wantMountError(t, capped, vaultBMount("objectNamePrefix: app-\nobjectType: secret"), codes.InvalidArgument,
		`get secrets selected by objectNamePrefix "app-" in vault "kv-int-b": the selection matches more than the 2 objects allowed (--max-selected-objects)`)

	// With the node's managed identity, a selection lists the vault only if the operator allows it.
	denied := mountRequest{params: map[string]string{config.KeyVaultName: vault, config.TenantID: tenant, config.UseVMManagedIdentity: "true",
		config.UserAssignedIdentityID: miUser, config.Objects: objects("objectTags: team=web\nobjectType: cert")}}
	wantMountError(t, startProvider(t, provider.Options{}), denied, codes.PermissionDenied,
		`objectNamePrefix and objectTags list the vault, which this node's provider does not allow with the node's managed identity`, "--allow-managed-identity-selections")
	c := startProvider(t, provider.Options{ManagedIdentity: provider.ManagedIdentityPolicy{AllowSelections: true}})
	// This identity may read secrets only: listing certificates is refused, and the hint says list.
	wantMountError(t, c, denied, codes.PermissionDenied, `get certs selected by objectTags "team=web" in vault "kv-int": 403`,
		`"Key Vault Certificate User" role on vault "kv-int" (RBAC; the role includes list), or the certificates get and list permission`)
	for _, tt := range []struct {
		name, entry string
		want        string
	}{
		{"prefix and name", "objectName: a\nobjectNamePrefix: app-\nobjectType: secret", "objectName cannot be combined with objectNamePrefix or objectTags"},
		{"tags on keys", "objectTags: a=b\nobjectType: key", "objectNamePrefix and objectTags select secrets or certificates, not key"},
		{"selection with history", "objectNamePrefix: app-\nobjectType: secret\nobjectVersionHistory: 2", "objectVersion and objectVersionHistory cannot be combined"},
		{"optional selection", "objectNamePrefix: app-\nobjectType: secret\nobjectOptional: \"true\"", "objectOptional cannot be combined"},
		{"malformed tags", "objectTags: team\nobjectType: secret", `objectTags "team" must be name=value pairs`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wantMountError(t, c, vaultBMount(tt.entry), codes.InvalidArgument, tt.want)
		})
	}
	// A selection's directory where another object writes a file.
	wantMountError(t, c, vaultBMount("objectName: plain\nobjectType: secret\nobjectAlias: apps", "objectNamePrefix: app-\nobjectType: secret\nobjectAlias: apps"),
		codes.InvalidArgument, `"apps" is written as a file, but "apps/app-api" needs it to be a directory`)
}

// openssl is Debian's openssl command; the PFX test needs it as a second, independent reader.
func openssl(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("openssl is not installed: apt-get install -y openssl (the password PFX must be opened by a second, independent reader)")
	}
	return p
}

// TestPFXPassword writes certificates' PKCS#12 re-encrypted with the password held by a secret of
// the same vault, modern by default and legacy on request; go-pkcs12 and openssl open them with
// the password (and not without), with the certificate's key and chain. The password secret is
// read once for every entry that names it.
func TestPFXPassword(t *testing.T) {
	bin := openssl(t)
	c := startProvider(t, provider.Options{Parallelism: 1})
	r := spMount(
		"objectName: web-pfx\nobjectType: secret\nobjectFormat: pfx\nobjectPFXPasswordSecret: pfx-pass\nobjectEncoding: base64\nobjectAlias: web.p12\nfilePermission: \"0600\"",
		"objectName: web-pfx\nobjectType: secret\nobjectFormat: pfx\nobjectPFXPasswordSecret: pfx-pass\nobjectPFXEncryption: legacy\nobjectEncoding: base64\nobjectAlias: web-legacy.p12",
		"objectName: web-pem\nobjectType: secret\nobjectFormat: pfx\nobjectPFXPasswordSecret: pfx-pass\nobjectAlias: pem.p12.b64",
	)
	em.ResetCounters()
	resp := mustMount(t, c, r)
	if diff := cmp.Diff(map[string]int64{"secret": 3}, em.Counters().KeyVaultGets); diff != "" {
		t.Errorf("GETs for 2 certificates and their one password secret (-want +got):\n%s", diff)
	}
	got := files(resp)
	pemB64, err := base64.StdEncoding.DecodeString(string(got["pem.p12.b64"].GetContents()))
	if err != nil {
		t.Fatalf("pem.p12.b64 is not base64: %v", err)
	}
	web, pemCert := certMaterial(t, "web-pfx"), certMaterial(t, "web-pem")
	dir := t.TempDir()
	for _, tt := range []struct {
		file   string
		data   []byte
		cm     *emulator.CertMaterial
		cipher string // what openssl -info reports for the key bag
	}{
		{"web.p12", got["web.p12"].GetContents(), web, "PBES2, PBKDF2, AES-256-CBC, Iteration 2048, PRF hmacWithSHA256"},
		{"web-legacy.p12", got["web-legacy.p12"].GetContents(), web, "pbeWithSHA1And3-KeyTripleDES-CBC"},
		{"pem.p12", pemB64, pemCert, "PBES2, PBKDF2, AES-256-CBC"},
	} {
		t.Run(tt.file, func(t *testing.T) {
			key, leaf, cas, err := pkcs12.DecodeChain(tt.data, pfxPassword)
			if err != nil {
				t.Fatalf("go-pkcs12 cannot open it with the password: %v", err)
			}
			if !leaf.Equal(tt.cm.Leaf) || len(cas) != len(tt.cm.Chain)-1 {
				t.Errorf("leaf %s with %d CAs, want %s with %d", leaf.Subject, len(cas), tt.cm.Leaf.Subject, len(tt.cm.Chain)-1)
			}
			if pub, ok := key.(interface{ Public() crypto.PublicKey }); !ok || !reflect.DeepEqual(pub.Public(), tt.cm.Key.Public()) {
				t.Error("the private key is not the certificate's")
			}
			if _, _, _, err := pkcs12.DecodeChain(tt.data, ""); err == nil {
				t.Error("it opens without a password")
			}
			path := filepath.Join(dir, tt.file)
			if err := os.WriteFile(path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, "pkcs12", "-in", path, "-passin", "env:PFX_PASSWORD", "-nodes", "-info")
			cmd.Env = append(os.Environ(), "PFX_PASSWORD="+pfxPassword)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("openssl pkcs12 cannot open it with the password: %v\n%s", err, out)
			}
			der, _ := x509.MarshalPKCS8PrivateKey(tt.cm.Key)
			if !bytes.Contains(out, pemBlock("PRIVATE KEY", der)) || !bytes.Contains(out, pemBlock("CERTIFICATE", tt.cm.Leaf.Raw)) {
				t.Errorf("openssl's output lacks the certificate's key or leaf:\n%s", out)
			}
			if !strings.Contains(string(out), tt.cipher) {
				t.Errorf("openssl reports no %q:\n%s", tt.cipher, out)
			}
			wrong := exec.Command(bin, "pkcs12", "-in", path, "-passin", "pass:wrong", "-nodes")
			if out, err := wrong.CombinedOutput(); err == nil {
				t.Errorf("openssl opens it with a wrong password:\n%s", out)
			}
		})
	}
	if f := got["web.p12"]; f.GetMode() != 0o600 {
		t.Errorf("web.p12 mode %o", f.GetMode())
	}
	again, err := mount(t, c, r)
	if err != nil {
		t.Fatal(err)
	}
	for path, f := range got {
		if !bytes.Equal(files(again)[path].GetContents(), f.GetContents()) {
			t.Errorf("%s differs between two mounts of the same certificate and password", path)
		}
	}

	for _, tt := range []struct {
		name, entry string
		code        codes.Code
		want        []string
	}{
		{"password secret absent", "objectName: web-pfx\nobjectType: secret\nobjectFormat: pfx\nobjectPFXPasswordSecret: no-such-pass", codes.InvalidArgument,
			[]string{`get secret "web-pfx" (version latest) in vault "kv-int": objectPFXPasswordSecret "no-such-pass": 404 Not Found (SecretNotFound)`, "create that secret"}},
		{"password of a plain secret", "objectName: plain\nobjectType: secret\nobjectFormat: pfx\nobjectPFXPasswordSecret: pfx-pass", codes.InvalidArgument,
			[]string{"objectPFXPasswordSecret protects a certificate's PKCS#12, but this is a plain secret"}},
		{"password without pfx", "objectName: web-pfx\nobjectType: secret\nobjectPFXPasswordSecret: pfx-pass", codes.InvalidArgument,
			[]string{"objectPFXPasswordSecret needs objectType secret and objectFormat pfx"}},
		{"not exportable", "objectName: locked\nobjectType: secret\nobjectFormat: pfx\nobjectPFXPasswordSecret: pfx-pass", codes.InvalidArgument,
			[]string{"holds no private key"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wantMountError(t, c, spMount(tt.entry), tt.code, tt.want...)
		})
	}
}
