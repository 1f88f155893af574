package provider

import (
	"crypto/x509"
	"encoding/base64"
	"strings"
	"testing"

	"software.sslmate.com/src/go-pkcs12"
)

// TestPFXIterationsAreBounded: a PKCS#12 whose MAC or encryption asks for more key-derivation
// rounds than the bound is refused before it is decoded (decoding would spend them); the counts
// Key Vault and OpenSSL write pass.
func TestPFXIterationsAreBounded(t *testing.T) {
	t.Parallel()
	c := newChain(t)
	for _, tc := range []struct {
		name string
		enc  *pkcs12.Encoder
		want string // "" = accepted
	}{
		{"Key Vault's legacy encoding", pkcs12.LegacyDES, ""},
		{"modern, 10000 rounds", pkcs12.Modern.WithIterations(10000), ""},
		{"modern, at the bound", pkcs12.Modern.WithIterations(maxPFXIterations), ""},
		{"modern, over the bound", pkcs12.Modern.WithIterations(maxPFXIterations + 1), "asks for 100001 key-derivation iterations"},
		{"legacy, over the bound", pkcs12.LegacyDES.WithIterations(300000), "asks for 300000 key-derivation iterations"},
	} {
		der, err := tc.enc.Encode(c.leafKey, c.leaf, []*x509.Certificate{c.intermediate, c.root}, "")
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = pkcs12ToPEM(base64.StdEncoding.EncodeToString(der), true)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}
