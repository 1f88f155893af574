package emulator

import (
	"crypto/x509"
	"encoding/pem"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestSampleSeedValid(t *testing.T) {
	t.Parallel()
	if err := SampleSeed().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestLoadSeed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(`
tenantID: t-1
pageSize: 1
vaults:
- name: kv-yaml
  secrets:
  - name: s
    versions:
    - value: one
      created: "2024-01-01T00:00:00Z"
    - value: two
      enabled: false
  keys: [{name: k, kty: EC, curve: P-384}]
  certificates: [{name: c, contentType: application/x-pem-file, chain: [leaf, root]}]
servicePrincipals:
- clientID: app
  secrets: [pw]
  federated: [{issuer: https://oidc.kv-emulator.test, subject: "system:serviceaccount:a:b"}]
grants: [{identity: app, vault: kv-yaml, types: [secret]}]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := LoadSeed(good)
	if err != nil {
		t.Fatal(err)
	}
	if s.Vaults[0].Secrets[0].Versions[1].Enabled == nil || *s.Vaults[0].Secrets[0].Versions[1].Enabled {
		t.Error("enabled: false not read")
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(`
vaults:
- name: x
  keys: [{name: k, kty: DSA}]
  certificates: [{name: c, chain: [root]}]
  secrets: [{name: c, versions: [{value: v}]}]
servicePrincipals: [{clientID: ""}]
managedIdentities: [{clientID: a, systemAssigned: true}, {clientID: b, systemAssigned: true}]
grants: [{identity: a, vault: x, types: [blob]}]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = LoadSeed(bad)
	if err == nil {
		t.Fatal("bad seed accepted")
	}
	for _, want := range []string{`vaults[0] ("x"): name`, `kty "DSA"`, "chain must contain leaf", "clashes with secret",
		"clientID is required", "at most one may be systemAssigned", `type "blob"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not report %q:\n%v", want, err)
		}
	}
	unknown := filepath.Join(dir, "unknown.yaml")
	_ = os.WriteFile(unknown, []byte("vaultz: []\n"), 0o600)
	if _, err := LoadSeed(unknown); err == nil {
		t.Error("unknown field accepted")
	}
}

func TestStartRefusesNonLoopback(t *testing.T) {
	t.Parallel()
	_, err := Start(Options{Seed: &Seed{}, Addr: "0.0.0.0:0"})
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("got %v", err)
	}
}

func TestSampleSeedStartsAndCloudEnv(t *testing.T) {
	t.Parallel()
	e := start(t, SampleSeed())
	if _, err := e.Certificate("kv-demo", "web-tls", ""); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cloud.json")
	if err := e.WriteCloudEnv(path); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	for _, want := range []string{`"activeDirectoryEndpoint": "` + e.URL() + `/"`, `"keyVaultDNSSuffix": "vault.azurestack.test"`,
		`"keyVaultEndpoint": "https://vault.azurestack.test/"`, `"resourceIdentifiers"`, `"keyVault": "https://vault.azurestack.test"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("cloud.json lacks %s", want)
		}
	}
}

// A seed issuer (PEM public key, path relative to the seed) signs
// assertions accepted for a matching federated credential.
func TestSeedIssuer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	k, err := (source{}).rsaKey(2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	_ = os.WriteFile(filepath.Join(dir, "issuer.pem"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
	seedPath := filepath.Join(dir, "seed.yaml")
	_ = os.WriteFile(seedPath, []byte(`
tenantID: `+tenant1+`
issuers: [{url: "https://issuer.example.test", publicKeyFile: issuer.pem}]
servicePrincipals: [{clientID: fed, federated: [{issuer: "https://issuer.example.test", subject: me}]}]
`), 0o600)
	s, err := LoadSeed(seedPath)
	if err != nil {
		t.Fatal(err)
	}
	e := start(t, s)
	hc := httpClient(t, e)
	assertion, _ := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": "https://issuer.example.test", "sub": "me",
		"aud": DefaultFederatedAudience, "exp": time.Now().Add(time.Hour).Unix()}).SignedString(k)
	form := url.Values{"client_id": {"fed"}, "grant_type": {"client_credentials"}, "scope": {"https://vault.azure.net/.default openid"},
		"client_assertion_type": {jwtBearer}, "client_assertion": {assertion}}
	r := do(t, hc, "POST", e.URL()+"/"+tenant1+"/oauth2/v2.0/token", "", map[string]string{"Content-Type": "application/x-www-form-urlencoded"},
		strings.NewReader(form.Encode()))
	if r.status != 200 || r.json(t)["access_token"] == nil {
		t.Fatalf("seed issuer assertion: %d %s", r.status, r.body)
	}
}
