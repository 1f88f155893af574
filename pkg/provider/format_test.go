package provider

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/keyvault"
)

// chain is a generated root → intermediate → leaf chain with the leaf's key.
type chain struct {
	root, intermediate, leaf *x509.Certificate
	leafKey                  crypto.Signer
}

func newChain(t testing.TB) chain {
	t.Helper()
	mk := func(cn string, isCA bool, parent *x509.Certificate, parentKey crypto.Signer, key crypto.Signer, serial int64) *x509.Certificate {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			IsCA: isCA, BasicConstraintsValid: true,
		}
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	intKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	root := mk("root", true, nil, nil, rootKey, 1)
	intermediate := mk("intermediate", true, root, rootKey, intKey, 2)
	leaf := mk("leaf", false, intermediate, intKey, leafKey, 3)
	return chain{root: root, intermediate: intermediate, leaf: leaf, leafKey: leafKey}
}

func pemOf(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func certsPEM(certs ...*x509.Certificate) string {
	var s string
	for _, c := range certs {
		s += pemOf("CERTIFICATE", c.Raw)
	}
	return s
}

func (c chain) keyPEM(t testing.TB) string {
	der, err := x509.MarshalPKCS8PrivateKey(c.leafKey)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf("PRIVATE KEY", der)
}

// pfx encodes the key with certs in the given stored order (the first is the leaf bag).
func pfx(t testing.TB, key crypto.Signer, certs ...*x509.Certificate) []byte {
	t.Helper()
	b, err := pkcs12.Passwordless.Encode(key, certs[0], certs[1:], "")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func secretObject(mods ...func(*config.Object)) config.Object {
	o := config.Object{Name: "web", Type: config.TypeSecret, Format: config.FormatPEM, Encoding: config.EncodingUTF8, Mode: 0o644}
	for _, m := range mods {
		m(&o)
	}
	return o
}

func TestFormatCertificateSecret(t *testing.T) {
	t.Parallel()
	c := newChain(t)
	keyPEM := c.keyPEM(t)
	storedPFX := func(certs ...*x509.Certificate) keyvault.Secret {
		return keyvault.Secret{Value: base64.StdEncoding.EncodeToString(pfx(t, c.leafKey, certs...)), ContentType: contentTypePKCS12, CertificateBacked: true}
	}
	leafFirst := storedPFX(c.leaf, c.intermediate, c.root)
	shuffled := storedPFX(c.leaf, c.root, c.intermediate)
	incomplete := storedPFX(c.leaf, c.root)
	pemStored := keyPEM + certsPEM(c.root, c.leaf)

	tests := []struct {
		name      string
		secret    keyvault.Secret
		obj       config.Object
		construct bool
		want      string
	}{
		{"pkcs12 to PEM, chain constructed", shuffled, secretObject(), true, keyPEM + certsPEM(c.leaf, c.intermediate, c.root)},
		{"pkcs12 to PEM, stored order kept without construct", shuffled, secretObject(), false, keyPEM + certsPEM(c.leaf, c.root, c.intermediate)},
		{"pkcs12 in order stays in order", leafFirst, secretObject(), true, keyPEM + certsPEM(c.leaf, c.intermediate, c.root)},
		{"incomplete chain keeps stored order", incomplete, secretObject(), true, keyPEM + certsPEM(c.leaf, c.root)},
		{"pfx format returns the stored base64", shuffled, secretObject(func(o *config.Object) { o.Format = config.FormatPFX }), true, shuffled.Value},
		{"pem-file secret is returned as stored", keyvault.Secret{Value: pemStored, ContentType: contentTypePEM, CertificateBacked: true}, secretObject(), true, pemStored},
		{"plain secret", keyvault.Secret{Value: "p@ss\n"}, secretObject(), true, "p@ss\n"},
		{"pfx format of a plain secret is the value", keyvault.Secret{Value: "p@ss"}, secretObject(func(o *config.Object) { o.Format = config.FormatPFX }), true, "p@ss"},
		{"pfx format of a pem-file certificate is the PEM", keyvault.Secret{Value: pemStored, ContentType: contentTypePEM, CertificateBacked: true},
			secretObject(func(o *config.Object) { o.Format = config.FormatPFX }), true, pemStored},
		{"key format: the PKCS#8 key of the PEM output", shuffled, secretObject(func(o *config.Object) { o.Format = config.FormatKey }), true, keyPEM},
		{"chain format: the certificates of the PEM output", shuffled, secretObject(func(o *config.Object) { o.Format = config.FormatChain }), true,
			certsPEM(c.leaf, c.intermediate, c.root)},
		{"chain format without construct: stored order", shuffled, secretObject(func(o *config.Object) { o.Format = config.FormatChain }), false,
			certsPEM(c.leaf, c.root, c.intermediate)},
		{"key format of a pem-file certificate", keyvault.Secret{Value: pemStored, ContentType: contentTypePEM, CertificateBacked: true},
			secretObject(func(o *config.Object) { o.Format = config.FormatKey }), true, keyPEM},
		{"chain format of a pem-file certificate: as stored", keyvault.Secret{Value: pemStored, ContentType: contentTypePEM, CertificateBacked: true},
			secretObject(func(o *config.Object) { o.Format = config.FormatChain }), true, certsPEM(c.root, c.leaf)},
		{"base64 secret decoded", keyvault.Secret{Value: base64.StdEncoding.EncodeToString([]byte{0, 1, 2, 255})},
			secretObject(func(o *config.Object) { o.Encoding = config.EncodingBase64 }), true, string([]byte{0, 1, 2, 255})},
		{"hex secret decoded", keyvault.Secret{Value: hex.EncodeToString([]byte("hi\x00"))},
			secretObject(func(o *config.Object) { o.Encoding = config.EncodingHex }), true, "hi\x00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := formatSecret(tt.secret, tt.obj, tt.construct)
			if err != nil {
				t.Fatal(err)
			}
			if string(got.contents) != tt.want {
				t.Errorf("contents:\n%s\nwant:\n%s", got.contents, tt.want)
			}
		})
	}

	t.Run("pfx with base64 encoding is the binary PFX", func(t *testing.T) {
		t.Parallel()
		o := secretObject(func(o *config.Object) { o.Format, o.Encoding = config.FormatPFX, config.EncodingBase64 })
		got, err := formatSecret(shuffled, o, true)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := base64.StdEncoding.DecodeString(shuffled.Value)
		if !bytes.Equal(got.contents, raw) {
			t.Error("contents are not the stored PFX bytes")
		}
		if _, _, _, err := pkcs12.DecodeChain(got.contents, ""); err != nil {
			t.Errorf("written PFX does not decode: %v", err)
		}
	})
	t.Run("key and certificate parts", func(t *testing.T) {
		t.Parallel()
		got, err := formatSecret(shuffled, secretObject(), true)
		if err != nil {
			t.Fatal(err)
		}
		if string(got.keyPEM) != keyPEM || string(got.certPEM) != certsPEM(c.leaf, c.intermediate, c.root) || !got.splitable {
			t.Errorf("parts: key %q cert %q", got.keyPEM, got.certPEM)
		}
		pf, err := formatSecret(keyvault.Secret{Value: pemStored, ContentType: contentTypePEM, CertificateBacked: true}, secretObject(), true)
		if err != nil {
			t.Fatal(err)
		}
		if string(pf.keyPEM) != keyPEM || string(pf.certPEM) != certsPEM(c.root, c.leaf) {
			t.Errorf("pem-file parts: key %q cert %q", pf.keyPEM, pf.certPEM)
		}
	})
}

func TestFormatSecretErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		secret keyvault.Secret
		obj    config.Object
		want   string
	}{
		{"certificate with another content type", keyvault.Secret{Value: "x", ContentType: "text/plain", CertificateBacked: true}, secretObject(), `content type "text/plain"`},
		{"bad base64", keyvault.Secret{Value: "not base64!"}, secretObject(func(o *config.Object) { o.Encoding = config.EncodingBase64 }), "not standard base64"},
		{"bad hex", keyvault.Secret{Value: "zz"}, secretObject(func(o *config.Object) { o.Encoding = config.EncodingHex }), "not hexadecimal"},
		{"pkcs12 not base64", keyvault.Secret{Value: "%%", ContentType: contentTypePKCS12, CertificateBacked: true}, secretObject(), "not base64 PKCS#12"},
		{"pkcs12 garbage", keyvault.Secret{Value: "AAAA", ContentType: contentTypePKCS12, CertificateBacked: true}, secretObject(), "could not be decoded"},
		{"key format of a plain secret", keyvault.Secret{Value: "x"}, secretObject(func(o *config.Object) { o.Format = config.FormatKey }),
			"objectFormat key needs a certificate's secret, but this is a plain secret"},
		{"chain format of a plain secret", keyvault.Secret{Value: "x"}, secretObject(func(o *config.Object) { o.Format = config.FormatChain }),
			"objectFormat chain needs a certificate's secret"},
		{"key format of a certificate without its key", keyvault.Secret{Value: certsPEM(newChain(t).leaf), ContentType: contentTypePEM, CertificateBacked: true},
			secretObject(func(o *config.Object) { o.Format = config.FormatKey }), "holds no private key (it is not exportable)"},
		{"JSON key of a certificate's secret", keyvault.Secret{Value: "x", ContentType: contentTypePEM, CertificateBacked: true},
			secretObject(func(o *config.Object) { o.JSONKey = "a" }), "this secret holds a certificate (application/x-pem-file), not JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := formatSecret(tt.secret, tt.obj, true)
			if err == nil || !strings.Contains(err.Error(), tt.want) || keyvault.KindOf(err) != keyvault.KindInvalidArgument {
				t.Errorf("error = %v, want InvalidArgument containing %q", err, tt.want)
			}
		})
	}
}

func TestFormatKey(t *testing.T) {
	t.Parallel()
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	type tc struct {
		name string
		key  keyvault.Key
		want crypto.PublicKey
	}
	tests := []tc{{"RSA", keyvault.Key{Kty: "RSA", N: rsaKey.N.Bytes(), E: big.NewInt(int64(rsaKey.E)).Bytes()}, &rsaKey.PublicKey},
		{"RSA-HSM", keyvault.Key{Kty: "RSA-HSM", N: rsaKey.N.Bytes(), E: big.NewInt(int64(rsaKey.E)).Bytes()}, &rsaKey.PublicKey}}
	for _, curve := range []struct {
		name string
		c    elliptic.Curve
	}{{"P-256", elliptic.P256()}, {"P-384", elliptic.P384()}, {"P-521", elliptic.P521()}} {
		k, _ := ecdsa.GenerateKey(curve.c, rand.Reader)
		size := (curve.c.Params().BitSize + 7) / 8
		raw, _ := k.PublicKey.Bytes() // 0x04 || X || Y, fixed size
		x, y := raw[1:1+size], raw[1+size:]
		tests = append(tests, tc{"EC " + curve.name, keyvault.Key{Kty: "EC", Crv: curve.name, X: x, Y: y}, &k.PublicKey},
			tc{"EC-HSM " + curve.name, keyvault.Key{Kty: "EC-HSM", Crv: curve.name, X: bytes.TrimLeft(x, "\x00"), Y: y}, &k.PublicKey})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			der, err := x509.MarshalPKIXPublicKey(tt.want)
			if err != nil {
				t.Fatal(err)
			}
			got, err := formatKey(tt.key)
			if err != nil {
				t.Fatal(err)
			}
			if want := pemOf("PUBLIC KEY", der); string(got) != want {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
		})
	}

	for _, bad := range []struct {
		name string
		key  keyvault.Key
		want string
	}{
		{"oct", keyvault.Key{Kty: "oct"}, `key type "oct" has no public key`},
		{"secp256k1", keyvault.Key{Kty: "EC", Crv: "P-256K", X: []byte{1}, Y: []byte{1}}, `curve "P-256K" is not supported`},
		{"off-curve point", keyvault.Key{Kty: "EC", Crv: "P-256", X: []byte{1}, Y: []byte{2}}, "not a point on curve P-256"},
		{"oversized coordinate", keyvault.Key{Kty: "EC", Crv: "P-256", X: make([]byte, 33), Y: []byte{2}}, "do not fit"},
		{"RSA without modulus", keyvault.Key{Kty: "RSA"}, "without a valid modulus"},
	} {
		t.Run(bad.name, func(t *testing.T) {
			t.Parallel()
			if _, err := formatKey(bad.key); err == nil || !strings.Contains(err.Error(), bad.want) {
				t.Errorf("error = %v, want %q", err, bad.want)
			}
		})
	}
}

func TestFormatCert(t *testing.T) {
	t.Parallel()
	c := newChain(t)
	got, err := formatCert(keyvault.Certificate{DER: c.leaf.Raw})
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != certsPEM(c.leaf) {
		t.Errorf("got %s", got)
	}
	if _, err := formatCert(keyvault.Certificate{}); err == nil {
		t.Error("empty cer accepted")
	}
}

func TestOrderChainCycleKeepsStoredOrder(t *testing.T) {
	t.Parallel()
	a := &x509.Certificate{SubjectKeyId: []byte("a"), AuthorityKeyId: []byte("b")}
	b := &x509.Certificate{SubjectKeyId: []byte("b"), AuthorityKeyId: []byte("a")}
	got := orderChain([]*x509.Certificate{a, b})
	if got[0] != a || got[1] != b {
		t.Error("a cycle was reordered")
	}
}

// leakMarker is in every input of the tests below that an error must not repeat.
const leakMarker = "MARKER-9d1c"

// badURICert is a certificate that x509.ParseCertificate refuses with a message quoting its
// subject alternative name, which holds leakMarker: x509: cannot parse URI "http://%zz/MARKER...".
func badURICert(t testing.TB, c chain) []byte {
	t.Helper()
	san, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte("http://%zz/" + leakMarker)}})
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "bad"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: san}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, c.leafKey.Public(), c.leafKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x509.ParseCertificate(der); err == nil || !strings.Contains(err.Error(), leakMarker) {
		t.Fatalf("the x509 parser no longer quotes the SAN (%v): this test needs another certificate", err)
	}
	return der
}

// TestRenderingErrorsNeverRepeatTheValue: every error of rendering a secret, a certificate's
// PKCS#12 or PEM, or an objectEncoding names the field and what is wrong (by byte offset or by
// part), never a byte of the value: each input holds leakMarker, and the libraries' own messages
// (encoding/hex, x509, go-pkcs12) would repeat it.
func TestRenderingErrorsNeverRepeatTheValue(t *testing.T) {
	t.Parallel()
	c := newChain(t)
	bad := badURICert(t, c)
	withPassword, err := pkcs12.Modern.Encode(c.leafKey, c.leaf, nil, "pw-"+leakMarker)
	if err != nil {
		t.Fatal(err)
	}
	badPFX, err := pkcs12.Passwordless.Encode(c.leafKey, &x509.Certificate{Raw: bad}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.StdEncoding.EncodeToString
	hexed := func(o *config.Object) { o.Encoding = config.EncodingHex }
	based := func(o *config.Object) { o.Encoding = config.EncodingBase64 }
	for _, tt := range []struct {
		name   string
		secret keyvault.Secret
		obj    config.Object
		want   string
	}{
		{"hex, a character", keyvault.Secret{Value: "00ff" + leakMarker}, secretObject(hexed),
			"objectEncoding is hex but the value is not hexadecimal (a character that is not a hexadecimal digit at byte 4 of the secret's value)"},
		{"hex, odd", keyvault.Secret{Value: "abc"}, secretObject(hexed), "(the secret's value has an odd number of digits, 3)"},
		{"hex of a JSON member", keyvault.Secret{Value: `{"k": "0` + leakMarker + `"}`}, secretObject(hexed, func(o *config.Object) { o.JSONKey = "k" }),
			"at byte 1 of the member objectJSONKey selects"},
		{"base64, a character", keyvault.Secret{Value: "QUJD" + leakMarker}, secretObject(based),
			"objectEncoding is base64 but the value is not standard base64 (a character that is not base64 at byte 10 of the secret's value)"},
		{"base64, cut", keyvault.Secret{Value: b64([]byte(leakMarker))[:10]}, secretObject(based),
			"(the secret's value of 10 bytes ends within a group of 4 characters, or its = padding is misplaced (from byte 8))"},
		{"PKCS#12 not base64", keyvault.Secret{Value: leakMarker + "!", ContentType: contentTypePKCS12, CertificateBacked: true}, secretObject(),
			"the certificate's secret is not base64 PKCS#12 as its content type says (a character that is not base64"},
		{"PKCS#12 with a password", keyvault.Secret{Value: b64(withPassword), ContentType: contentTypePKCS12, CertificateBacked: true}, secretObject(),
			"the certificate's PKCS#12 could not be decoded: it is protected by a password"},
		{"PKCS#12 with a certificate x509 refuses", keyvault.Secret{Value: b64(badPFX), ContentType: contentTypePKCS12, CertificateBacked: true}, secretObject(),
			"the certificate's PKCS#12 could not be decoded: a certificate in it cannot be parsed; re-import"},
		{"PKCS#12 garbage", keyvault.Secret{Value: b64([]byte("0\x03" + leakMarker)), ContentType: contentTypePKCS12, CertificateBacked: true}, secretObject(),
			"the certificate's PKCS#12 could not be decoded: it is not a PKCS#12 file this provider can read"},
		{"PKCS#12 as pfx with a certificate x509 refuses, key format", keyvault.Secret{Value: b64(badPFX), ContentType: contentTypePKCS12, CertificateBacked: true},
			secretObject(func(o *config.Object) { o.Format = config.FormatKey }), "a certificate in it cannot be parsed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := formatSecret(tt.secret, tt.obj, true)
			if err == nil || keyvault.KindOf(err) != keyvault.KindInvalidArgument || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want InvalidArgument containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), leakMarker) || strings.Contains(err.Error(), "MARKER") {
				t.Errorf("the error repeats the value: %v", err)
			}
		})
	}
}
