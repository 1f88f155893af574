package provider

import (
	"crypto/sha1" //nolint:gosec // thumbprint
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/keyvault"
)

// TestMetadataDocument pins the document's fields, their order and their spelling: rotations
// compare files byte for byte, and users parse them.
func TestMetadataDocument(t *testing.T) {
	t.Parallel()
	at := func(s string) *time.Time { v, _ := time.Parse(time.RFC3339, s); return &v }
	no := false
	got, err := formatMetadata(config.Object{Name: "db", Type: config.TypeSecret}, "kv-prod", "v1", "text/plain", keyvault.Attributes{
		Enabled: &no, Created: at("2025-01-01T00:00:00Z"), Updated: at("2025-01-02T00:00:00+02:00"), Expires: at("2026-01-01T00:00:00Z"),
		Tags: map[string]string{"team": "a", "env": "prod"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "name": "db",
  "type": "secret",
  "vault": "kv-prod",
  "version": "v1",
  "contentType": "text/plain",
  "enabled": false,
  "created": "2025-01-01T00:00:00Z",
  "updated": "2025-01-01T22:00:00Z",
  "notBefore": null,
  "expires": "2026-01-01T00:00:00Z",
  "tags": {
    "env": "prod",
    "team": "a"
  }
}
`
	if string(got) != want {
		t.Errorf("metadata:\n%s\nwant:\n%s", got, want)
	}

	empty, err := formatMetadata(config.Object{Name: "k", Type: config.TypeKey}, "kv", "v2", "", keyvault.Attributes{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(empty), `"contentType": null,`) || !strings.Contains(string(empty), `"enabled": true,`) ||
		!strings.Contains(string(empty), `"tags": {}`) || strings.Contains(string(empty), "certificate") {
		t.Errorf("no attributes:\n%s", empty)
	}

	c := newChain(t)
	cert, err := formatMetadata(config.Object{Name: "web", Type: config.TypeCert}, "kv", "v3", contentTypePKCS12, keyvault.Attributes{}, c.leaf.Raw)
	if err != nil {
		t.Fatal(err)
	}
	s1, s256 := sha1.Sum(c.leaf.Raw), sha256.Sum256(c.leaf.Raw) //nolint:gosec // thumbprint
	wantCert := fmt.Sprintf(`  "certificate": {
    "subject": "CN=leaf",
    "issuer": "CN=intermediate",
    "serialNumber": "3",
    "sha1Thumbprint": "%X",
    "sha256Thumbprint": "%X",
    "notBefore": "%s",
    "notAfter": "%s"
  }
}
`, s1[:], s256[:], c.leaf.NotBefore.UTC().Format(time.RFC3339), c.leaf.NotAfter.UTC().Format(time.RFC3339))
	if !strings.HasSuffix(string(cert), wantCert) {
		t.Errorf("certificate metadata:\n%s\nwant it to end with:\n%s", cert, wantCert)
	}
	for name, der := range map[string][]byte{"junk": []byte("junk-" + leakMarker), "a SAN x509 refuses": badURICert(t, c)} {
		_, err := formatMetadata(config.Object{Name: "web", Type: config.TypeCert}, "kv", "v3", "", keyvault.Attributes{}, der)
		want := fmt.Sprintf("objectFormat metadata: the certificate from Key Vault (%d bytes of DER) cannot be parsed as an X.509 certificate", len(der))
		if err == nil || keyvault.KindOf(err) != keyvault.KindInvalidArgument || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want InvalidArgument with %q", name, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "MARKER") { // x509's message quotes the SAN
			t.Errorf("%s: the error repeats the certificate: %v", name, err)
		}
	}
}
