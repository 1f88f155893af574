package provider

import (
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"math/big"
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

// TestPFXIterationCountIsNotSpelled: an "iteration count" longer than 32 bits is any bytes at
// all (here leakMarker's), and its decimal digits would spell them: the error gives its length.
func TestPFXIterationCountIsNotSpelled(t *testing.T) {
	t.Parallel()
	n := new(big.Int).SetBytes([]byte("\x01" + leakMarker))
	iterations, err := asn1.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	der, err := asn1.Marshal(pfxPDU{
		Version:  3,
		AuthSafe: pfxContentInfo{ContentType: asn1.ObjectIdentifier{1, 2, 3}},
		MacData:  pfxMacData{Mac: asn1.NullRawValue, MacSalt: []byte{1}, Iterations: asn1.RawValue{FullBytes: iterations}},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = pkcs12ToPEM(base64.StdEncoding.EncodeToString(der), true)
	const want = "the certificate's PKCS#12: its MAC asks for an iteration count of 12 bytes, more than the 100000 iterations allowed"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error = %v, want %q", err, want)
	}
	if strings.Contains(err.Error(), n.String()[:12]) {
		t.Errorf("the error spells the integer: %v", err)
	}
}
