package provider

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"

	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/keyvault"
)

// FuzzFormatCert feeds arbitrary bytes to the renderers that fetchVersion applies to what Key
// Vault returns: as a certificate's secret in PKCS#12 (base64, as Key Vault stores it, and not)
// and in PEM, to PEM and to a password-protected PKCS#12, as a plain secret in each
// objectEncoding, as a certificate's DER and its metadata, and as the
// components of an RSA or EC key; and, as fetchVersion does, reads the certificate expiry from
// what was rendered. It checks that nothing panics, that no call costs more than the ceiling of
// checkFormatCost, and that no error repeats the input: errors reach pod events and logs, and the
// input is secret material.
func FuzzFormatCert(f *testing.F) {
	c := newChain(f)
	modern, err := pkcs12.Modern.Encode(c.leafKey, c.leaf, []*x509.Certificate{c.intermediate, c.root}, "")
	if err != nil {
		f.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	ecPoint, err := ecKey.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range [][]byte{
		pfx(f, c.leafKey, c.leaf, c.intermediate, c.root), // as Key Vault exports it: no MAC, no encryption
		pfx(f, c.leafKey, c.leaf, c.root, c.intermediate),
		modern, // with a MAC and encrypted bags
		[]byte(c.keyPEM(f) + certsPEM(c.leaf, c.intermediate, c.root)),
		[]byte(certsPEM(c.root, c.leaf) + c.keyPEM(f)),
		c.leaf.Raw,
		c.root.Raw,
		c.leafKey.Public().(*rsa.PublicKey).N.Bytes(),
		ecPoint[1:], // X || Y of a P-256 point
		nil,
		[]byte("hunter2-secret-value"),
	} {
		f.Add(seed)
	}
	p := New(Options{})
	vocabulary := formatErrorVocabulary(p)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, call := range formatCalls(p, data) {
			err := checkFormatCost(t, call, len(data))
			if err == nil {
				continue
			}
			for _, secret := range secretForms(data, call.value) {
				if run, ok := echoed(err.Error(), secret, vocabulary); ok {
					t.Errorf("%s: the error repeats %d bytes of the input (%q): %q", call.name, len(run), run, err)
				}
			}
		}
	})
}

// formatCall is one renderer applied to the fuzz input. value is the secret as the renderer
// received it (data itself, or its base64), which its error must not repeat either.
type formatCall struct {
	name  string
	value string
	run   func() error
}

// formatCalls lists the renderers of fetchVersion applied to data.
func formatCalls(p *Provider, data []byte) []formatCall {
	b64 := base64.StdEncoding.EncodeToString(data)
	raw := string(data)
	half := len(data) / 2
	secret := func(name, value, contentType string, certificateBacked bool, o config.Object, constructChain bool) formatCall {
		s := keyvault.Secret{Value: value, ContentType: contentType, CertificateBacked: certificateBacked}
		return formatCall{name: name, value: value, run: func() error {
			out, err := formatSecret(s, o, constructChain)
			if err == nil {
				p.recordExpiry("kv", o, out.certPEM)
			}
			return err
		}}
	}
	pfxFormat := func(encoding string) config.Object {
		return secretObject(func(o *config.Object) { o.Format, o.Encoding = config.FormatPFX, encoding })
	}
	encoded := func(encoding string) config.Object {
		return secretObject(func(o *config.Object) { o.Encoding = encoding })
	}
	calls := []formatCall{
		secret("PKCS#12 secret to PEM, chain constructed", b64, contentTypePKCS12, true, secretObject(), true),
		secret("PKCS#12 secret to PEM, stored order", b64, contentTypePKCS12, true, secretObject(), false),
		secret("PKCS#12 secret as pfx, base64", b64, contentTypePKCS12, true, pfxFormat(config.EncodingBase64), true),
		secret("PKCS#12 secret not in base64", raw, contentTypePKCS12, true, secretObject(), true),
		secret("PEM secret", raw, contentTypePEM, true, secretObject(), true),
		secret("PKCS#12 secret, key only", b64, contentTypePKCS12, true, secretObject(func(o *config.Object) { o.Format = config.FormatKey }), true),
		secret("PKCS#12 secret, chain only", b64, contentTypePKCS12, true, secretObject(func(o *config.Object) { o.Format = config.FormatChain }), true),
		secret("PEM secret, key only", raw, contentTypePEM, true, secretObject(func(o *config.Object) { o.Format = config.FormatKey }), true),
		secret("PEM secret, chain only", raw, contentTypePEM, true, secretObject(func(o *config.Object) { o.Format = config.FormatChain }), true),
		secret("PEM secret as pfx", raw, contentTypePEM, true, pfxFormat(config.EncodingUTF8), true),
		secret("PEM secret, base64", raw, contentTypePEM, true, encoded(config.EncodingBase64), true),
		secret("PEM secret, hex", raw, contentTypePEM, true, encoded(config.EncodingHex), true),
		secret("secret, base64", raw, "", false, encoded(config.EncodingBase64), true),
		secret("secret, hex", raw, "", false, encoded(config.EncodingHex), true),
		secret("certificate's secret of another content type", raw, "application/octet-stream", true, secretObject(), true),
		secretCall("PKCS#12 secret as pfx with a password", b64, contentTypePKCS12, passwordObject()),
		secretCall("PEM secret as pfx with a password", raw, contentTypePEM, passwordObject()),
		{name: "certificate metadata", value: raw, run: func() error {
			_, err := formatMetadata(config.Object{Name: "c", Type: config.TypeCert}, "kv", "v1", "", keyvault.Attributes{}, data)
			return err
		}},
		{name: "certificate DER", value: raw, run: func() error {
			out, err := formatCert(keyvault.Certificate{DER: data})
			if err == nil {
				p.recordExpiry("kv", config.Object{Name: "c", Type: config.TypeCert}, out)
			}
			return err
		}},
		keyCall("RSA modulus", raw, keyvault.Key{Kty: "RSA", N: data, E: []byte{1, 0, 1}}),
		keyCall("RSA-HSM modulus and exponent", raw, keyvault.Key{Kty: "RSA-HSM", N: data[:half], E: data[half:]}),
		keyCall("oct key", raw, keyvault.Key{Kty: "oct", N: data}),
	}
	for _, kty := range []string{"EC", "EC-HSM"} {
		for _, crv := range []string{"P-256", "P-384", "P-521", "P-256K"} {
			calls = append(calls, keyCall(kty+" "+crv+" point", raw, keyvault.Key{Kty: kty, Crv: crv, X: data[:half], Y: data[half:]}))
		}
	}
	return calls
}

// fuzzPasswords holds the password objectPFXPasswordSecret names in the fuzz calls.
var fuzzPasswords = &fakeVault{secrets: map[string][]fakeVersion{"pw": {{version: "v1", value: "fuzz-password"}}}}

func passwordObject() config.Object {
	return secretObject(func(o *config.Object) {
		o.Format, o.PFXPasswordSecret, o.PFXEncryption = config.FormatPFX, "pw", config.PFXModern
	})
}

// secretCall renders a certificate's secret through passwordPFX, as fetchVersion does for an
// object with objectPFXPasswordSecret.
func secretCall(name, value, contentType string, o config.Object) formatCall {
	s := keyvault.Secret{Value: value, ContentType: contentType, CertificateBacked: true}
	return formatCall{name: name, value: value, run: func() error {
		_, err := passwordPFX(context.Background(), fuzzPasswords, s, o, true)
		return err
	}}
}

func keyCall(name, value string, k keyvault.Key) formatCall {
	return formatCall{name: name, value: value, run: func() error {
		_, err := formatKey(k)
		return err
	}}
}

// The resource ceiling of one renderer with n bytes of input: formatAllocPerByte*n +
// formatAllocFixed bytes allocated, and formatTimeCeiling.
//
// Rendering is linear: base64 or hex decoding, one ASN.1 parse of the PKCS#12 structure and of
// each certificate and key in it, and PEM encoding, each a small multiple of the input. Measured
// on the seeds: at most about 30 bytes per input byte, and 150 KB for the Modern PKCS#12 (its
// key derivations allocate the same whatever its size). 64 bytes per byte and 2 MiB leave room
// for both, and for what the runtime and the fuzzing engine allocate meanwhile.
//
// Time is dominated by the key derivations of a PKCS#12 with a MAC or encrypted bags: 2,048
// iterations each, about 3 ms for the Modern seed. A second is far beyond anything linear on
// inputs of the size the fuzzer builds; what it does catch is a key derivation whose iteration
// count (a field of the input) is out of proportion.
const (
	formatAllocPerByte = 64
	formatAllocFixed   = 2 << 20
	formatTimeCeiling  = time.Second
)

// checkFormatCost runs call and fails t if it allocated or took more than the ceiling. The
// allocation counter is the process's, and the machine may stall the process, so a call over the
// ceiling is measured twice more and judged by its smallest cost: a renderer is deterministic,
// and what another goroutine allocated or a stall cost does not repeat.
func checkFormatCost(t *testing.T, call formatCall, n int) error {
	t.Helper()
	allocCeiling := uint64(n)*formatAllocPerByte + formatAllocFixed //nolint:gosec // n is a length, never negative
	var err error
	allocated, elapsed := ^uint64(0), time.Duration(1<<63-1)
	for range 3 {
		before := heapAllocated(t)
		start := time.Now()
		err = call.run()
		elapsed = min(elapsed, time.Since(start))
		allocated = min(allocated, heapAllocated(t)-before)
		if allocated <= allocCeiling && elapsed <= formatTimeCeiling {
			return err
		}
	}
	if allocated > allocCeiling {
		t.Errorf("%s of %d bytes allocated %d bytes, more than the %d allowed (%d per input byte + %d)",
			call.name, n, allocated, allocCeiling, formatAllocPerByte, formatAllocFixed)
	}
	if elapsed > formatTimeCeiling {
		t.Errorf("%s of %d bytes took %s, more than %s", call.name, n, elapsed, formatTimeCeiling)
	}
	return err
}

// secretForms are the ways an error could repeat the input: as it is, as the renderer received
// it (base64), and quoted by %q.
func secretForms(data []byte, value string) []string {
	forms := []string{string(data)}
	for _, f := range []string{value, strings.Trim(strconv.Quote(string(data)), `"`)} {
		if f != forms[0] {
			forms = append(forms, f)
		}
	}
	return forms
}

// heapAllocated is the number of bytes allocated on the heap so far: runtime.MemStats.TotalAlloc,
// read through runtime/metrics, which does not stop the world (ReadMemStats takes about 0.2 ms,
// more than most renderers). It counts the whole process, and small objects by the span, so
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

// An error may not repeat an input of minEcho to echoWindow bytes whole, nor any echoWindow
// bytes of a longer one.
const (
	minEcho    = 8
	echoWindow = 16
)

// echoed returns a run of secret that msg repeats: the whole secret if it is minEcho to
// echoWindow bytes long, else any echoWindow bytes of it. A run that is also part of vocabulary,
// the text of the renderers' errors, is not an echo (an input may spell "certificate's secret").
func echoed(msg, secret, vocabulary string) (string, bool) {
	if len(secret) < minEcho || len(msg) < minEcho {
		return "", false
	}
	if len(secret) <= echoWindow {
		if strings.Contains(msg, secret) && !strings.Contains(vocabulary, secret) {
			return secret, true
		}
		return "", false
	}
	if len(msg) < echoWindow {
		return "", false
	}
	windows := make(map[string]bool, len(msg))
	for i := 0; i+echoWindow <= len(msg); i++ {
		windows[msg[i:i+echoWindow]] = true
	}
	for i := 0; i+echoWindow <= len(secret); i++ {
		if run := secret[i : i+echoWindow]; windows[run] && !strings.Contains(vocabulary, run) {
			return run, true
		}
	}
	return "", false
}

// formatErrorVocabulary collects the text of the renderers' errors for inputs that reach each of
// them, so that echoed can tell a message's own words from a repeated input.
func formatErrorVocabulary(p *Provider) string {
	var b strings.Builder
	for _, data := range []string{"", "x", "%%", "AAAA", "0\x03\x02\x01\x03", "-----BEGIN X-----\nAAAA\n-----END X-----\n"} {
		for _, call := range formatCalls(p, []byte(data)) {
			if err := call.run(); err != nil {
				b.WriteString(err.Error())
				b.WriteByte('\n')
			}
		}
	}
	return b.String()
}

// TestEchoed checks the detector FuzzFormatCert relies on.
func TestEchoed(t *testing.T) {
	t.Parallel()
	const vocabulary = "the certificate's secret is not base64 PKCS#12 as its content type says\n"
	for _, tt := range []struct {
		msg, secret string
		want        bool
	}{
		{`value "hunter2-secret-value" is not hex`, "hunter2-secret-value", true},
		{`value "hunter2-secret-value" is not hex`, "xx hunter2-secret-value yy", true}, // 16 bytes of it
		{`value "hunter2!" is not hex`, "hunter2!", true},                               // short, whole
		{`value "hunter2" is not hex`, "hunter2", false},                                // shorter than minEcho
		{`value "hunt" is not hex`, "hunter2-secret-value", false},                      // less than a window
		{"the certificate's secret is not base64 PKCS#12", "certificate's secret", false},
		{"the certificate's secret is not base64 PKCS#12", "xx certificate's secret is not", false},
	} {
		if _, got := echoed(tt.msg, tt.secret, vocabulary); got != tt.want {
			t.Errorf("echoed(%q, %q) = %v, want %v", tt.msg, tt.secret, got, tt.want)
		}
	}
	if got := secretForms([]byte("a\x00b"), "YQBi"); len(got) != 3 || got[2] != `a\x00b` {
		t.Errorf("secretForms = %q, want the input, its base64 and its quoted form", got)
	}
}
