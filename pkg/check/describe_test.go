package check

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/akv-csi/provider/pkg/config"
)

// TestDescribeShowsNoValue: a file is described by its certificates and public keys; a private
// key or any other value is only named.
func TestDescribeShowsNoValue(t *testing.T) {
	t.Parallel()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	notAfter := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "app.example.test"}, NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	priv, _ := x509.MarshalPKCS8PrivateKey(key)
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	block := func(typ string, b []byte) string { return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b})) }
	secret := config.Object{Type: config.TypeSecret, Format: config.FormatPEM}
	for _, tt := range []struct {
		contents string
		o        config.Object
		want     string
		expires  string
	}{
		{block("PRIVATE KEY", priv) + block("CERTIFICATE", der) + block("CERTIFICATE", der), secret,
			"private key + certificate CN=app.example.test (issuer CN=app.example.test), expires 2031-05-06 + 1 CA certificate", "2031-05-06T07:08:09Z"},
		{block("PUBLIC KEY", pub), config.Object{Type: config.TypeKey}, "EC P-256 public key", ""},
		{"hunter2", secret, "value (hidden)", ""},
		{"MIIK...", config.Object{Type: config.TypeSecret, Format: config.FormatPFX}, "PKCS#12 (base64, hidden)", ""},
		{"\x30\x82", config.Object{Type: config.TypeSecret, Format: config.FormatPFX, Encoding: config.EncodingBase64}, "PKCS#12 (binary, hidden)", ""},
	} {
		got, expires := describe([]byte(tt.contents), tt.o)
		if got != tt.want || expires != tt.expires {
			t.Errorf("describe = %q, %q; want %q, %q", got, expires, tt.want, tt.expires)
		}
		if strings.Contains(got, "hunter2") || strings.Contains(got, "MII") {
			t.Errorf("describe shows the value: %q", got)
		}
	}
}

func TestExpiryWarnings(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	rows := []LiveObject{{Files: []LiveFile{
		{Path: "old.crt", Expires: "2029-12-01T00:00:00Z"},
		{Path: "soon.crt", Expires: "2030-01-11T12:00:00Z"},
		{Path: "fine.crt", Expires: "2031-01-01T00:00:00Z"},
		{Path: "value"},
	}}}
	got := strings.Join(expiryWarnings(rows, now), "\n")
	want := "old.crt: the certificate expired on 2029-12-01\nsoon.crt: the certificate expires in 10 days, on 2030-01-11"
	if got != want {
		t.Errorf("warnings:\n%s\nwant:\n%s", got, want)
	}
}
