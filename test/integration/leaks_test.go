package integration

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"k8s.io/klog/v2"
	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/akv-csi/provider/pkg/emulator"
	"github.com/akv-csi/provider/pkg/keyvault"
	"github.com/akv-csi/provider/pkg/provider"
)

// leakMarker is in every value the cases below store; no error message and no log line may hold
// it. Each case's marker adds its number, so a failure says which value leaked.
const leakMarker = "Zq9LEAKMARK"

func marker(n int) string { return leakMarker + "-" + strconv.Itoa(n) }

// leakTransport is the Key Vault transport of the provider under test: the emulator's answers,
// bent where the emulator cannot say what a hostile or broken vault could. A secret named
// leak-cert-* is answered as a certificate's secret (a kid), whatever its value; a secret named
// leak-body-* gets a body the SDK cannot decode; the key ec256 an x that is not base64; the
// certificate web-partial a cer that is not base64, and locked a cer x509 refuses.
type leakTransport struct {
	next    *http.Client
	badCert []byte
}

func (l leakTransport) Do(req *http.Request) (*http.Response, error) {
	resp, err := l.next.Do(req) //nolint:gosec // the provider's own Key Vault request, sent on to the emulator
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	if len(parts) < 2 {
		return resp, nil
	}
	typ, name := parts[0], parts[1]
	bend := func(f func(m map[string]any)) (*http.Response, error) {
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			return nil, err
		}
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			return nil, err
		}
		f(m)
		out, err := json.Marshal(m)
		if err != nil {
			return nil, err
		}
		return replaceBody(resp, out), nil
	}
	switch {
	case typ == "secrets" && strings.HasPrefix(name, "leak-cert-"):
		return bend(func(m map[string]any) {
			m["kid"] = "https://" + req.URL.Host + "/keys/" + name + "/0123456789abcdef0123456789abcdef"
		})
	case typ == "secrets" && strings.HasPrefix(name, "leak-body-"):
		_ = resp.Body.Close()
		// A value with an escape JSON does not have: the decoder's message quotes the character.
		return replaceBody(resp, []byte(`{"value": "`+marker(90)+`\q`+marker(91)+`", "id": "https://`+req.URL.Host+`/secrets/`+name+`/0123456789abcdef0123456789abcdef"}`)), nil
	case typ == "keys" && name == "ec256":
		return bend(func(m map[string]any) {
			if k, ok := m["key"].(map[string]any); ok {
				k["x"] = marker(92) + "!!"
			}
		})
	case typ == "certificates" && name == "web-partial":
		return bend(func(m map[string]any) { m["cer"] = marker(93) + "!!" })
	case typ == "certificates" && name == "locked":
		return bend(func(m map[string]any) { m["cer"] = base64.StdEncoding.EncodeToString(l.badCert) })
	}
	return resp, nil
}

func replaceBody(resp *http.Response, body []byte) *http.Response {
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return resp
}

// leakMaterial is what the certificate cases store: a certificate x509 refuses with a message
// that quotes its subject alternative name (which holds a marker), PKCS#12 and PEM files made of
// it and of a key, and a PKCS#12 protected by a password.
type leakMaterial struct {
	badCertDER, goodCertDER []byte
	keyPEM                  string
	badCertPFX, lockedPFX   []byte
}

func newLeakMaterial(t *testing.T) leakMaterial {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	san, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte("http://%zz/" + marker(80))}})
	if err != nil {
		t.Fatal(err)
	}
	cert := func(extra []pkix.Extension) []byte {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "leak.example.test"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtraExtensions: extra}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	m := leakMaterial{badCertDER: cert([]pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: san}}), goodCertDER: cert(nil)}
	if _, err := x509.ParseCertificate(m.badCertDER); err == nil || !strings.Contains(err.Error(), marker(80)) {
		t.Fatalf("x509 no longer quotes the SAN (%v): the certificate cases need another certificate", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	m.keyPEM = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if m.badCertPFX, err = pkcs12.Passwordless.Encode(key, &x509.Certificate{Raw: m.badCertDER}, nil, ""); err != nil {
		t.Fatal(err)
	}
	good, err := x509.ParseCertificate(m.goodCertDER)
	if err != nil {
		t.Fatal(err)
	}
	if m.lockedPFX, err = pkcs12.Modern.Encode(key, good, nil, "pw-"+marker(81)); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestErrorsNeverRepeatAValue drives every error path of every object field that renders a
// value (objectJSONKey, objectEncoding, objectFormat, objectPFXPasswordSecret, and the SDK
// reading a response it cannot decode) with values that hold a marker, through the real gRPC
// server: each case must fail with its code and a message naming the object and the field, and
// neither the message (a pod event, readable by whoever cannot read Secrets) nor any log line may
// hold the marker.
func TestErrorsNeverRepeatAValue(t *testing.T) {
	m := newLeakMaterial(t)
	b64 := base64.StdEncoding.EncodeToString
	pemOf := func(typ string, der []byte) string {
		return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
	}
	for name, v := range map[string]emulator.SecretVersion{
		"leak-json-bad":         {Value: `{"user": "` + marker(1) + `", oops}`, ContentType: "application/json"},
		"leak-json":             {Value: `{"db": {"password": "` + marker(2) + `"}, "list": ["` + marker(3) + `"]}`, ContentType: "application/json"},
		"leak-json-big":         {Value: `{"a": "` + marker(4) + `", "b": 1e999}`},
		"leak-b64":              {Value: marker(5) + "!"},
		"leak-hex":              {Value: "00ff" + marker(6)},
		"leak-p12-plain":        {Value: marker(7), ContentType: "application/x-pkcs12"},
		"leak-pem-plain":        {Value: marker(8) + "\n" + pemOf("PRIVATE KEY", []byte(marker(8))), ContentType: "application/x-pem-file"},
		"leak-cert-notb64":      {Value: marker(9) + "!", ContentType: "application/x-pkcs12"},
		"leak-cert-garbage":     {Value: b64([]byte(marker(10))), ContentType: "application/x-pkcs12"},
		"leak-cert-badx509":     {Value: b64(m.badCertPFX), ContentType: "application/x-pkcs12"},
		"leak-cert-locked":      {Value: b64(m.lockedPFX), ContentType: "application/x-pkcs12"},
		"leak-cert-pem-badcert": {Value: m.keyPEM + pemOf("CERTIFICATE", m.badCertDER), ContentType: "application/x-pem-file"},
		"leak-cert-pem-badkey":  {Value: pemOf("CERTIFICATE", m.goodCertDER) + pemOf("PRIVATE KEY", []byte("0\x10"+marker(11))), ContentType: "application/x-pem-file"},
		"leak-cert-pem-nokey":   {Value: pemOf("CERTIFICATE", m.goodCertDER), ContentType: "application/x-pem-file"},
		"leak-pw-empty":         {Value: ""},
		"leak-pw-emoji":         {Value: "\U0001F511-" + marker(12)},
		"leak-body-secret":      {Value: marker(13)},
		"leak-body-pw":          {Value: marker(14)},
	} {
		if _, err := em.AddSecret(vault, name, v); err != nil {
			t.Fatal(err)
		}
	}
	c := startProvider(t, provider.Options{KeyVault: keyvault.Options{Transport: leakTransport{
		next: &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}, badCert: m.badCertDER}}})

	stage := "[@,@,@,@,@,@,@,@,@,@]"
	bomb := strings.Repeat(stage+"|", 5) + stage
	obj := func(name string, fields ...string) string {
		return "objectName: " + name + "\nobjectType: secret\n" + strings.Join(fields, "\n")
	}
	get := func(name string) string { return `get secret "` + name + `" (version latest) in vault "kv-int": ` }
	const accepted = `objectJSONKey is a top-level key of the secret's JSON or a JMESPath path (names, "quoted names", .name, [N], [*], []), such as db.hosts[0].name`
	for _, tt := range []struct {
		name, entry string
		code        codes.Code
		want        []string
	}{
		// objectJSONKey
		{"JSON key of a value that is not JSON", obj("leak-json-bad", "objectJSONKey: user"), codes.InvalidArgument,
			[]string{get("leak-json-bad") + `objectJSONKey "user": the secret's value is not JSON (syntax error at byte 27)`}},
		{"JSON key that is a function", obj("leak-json", "objectJSONKey: abs(@)"), codes.InvalidArgument,
			[]string{get("leak-json") + `objectJSONKey "abs(@)": a function call at byte 3 is not accepted: ` + accepted + `; its top-level keys are "db", "list"`}},
		{"JSON key that is a function with a string", obj("leak-json", `objectJSONKey: "starts_with(@, 'x')"`), codes.InvalidArgument,
			[]string{get("leak-json") + `objectJSONKey "starts_with(@, 'x')": a function call at byte 11 is not accepted`}},
		{"JSON key that is the 6-stage bomb", obj("leak-json", "objectJSONKey: '"+bomb+"'"), codes.InvalidArgument,
			[]string{get("leak-json") + `objectJSONKey ` + strconv.Quote(bomb[:64]) + `...: a multi-select list ([a, b]) at byte 0 is not accepted`}},
		{"JSON key with a filter", obj("leak-json", "objectJSONKey: 'list[?@ != `x`]'"), codes.InvalidArgument,
			[]string{get("leak-json") + `objectJSONKey "list[?@ != ` + "`x`" + `]": a filter ([?...]) at byte 4 is not accepted`}},
		{"JSON key with a missing path", obj("leak-json", "objectJSONKey: db.nope"), codes.InvalidArgument,
			[]string{get("leak-json") + `objectJSONKey "db.nope": the secret's JSON has no such key (its top-level keys are "db", "list")`}},
		{"JSON key of a number out of range", obj("leak-json-big", "objectJSONKey: a"), codes.InvalidArgument,
			[]string{get("leak-json-big") + `objectJSONKey "a": the secret's value is not JSON (a number out of range before byte`}},
		{"JSON key of a certificate's secret", obj("leak-cert-notb64", "objectJSONKey: a"), codes.InvalidArgument,
			[]string{get("leak-cert-notb64") + "objectJSONKey is set but this secret holds a certificate (application/x-pkcs12), not JSON"}},
		// objectEncoding
		{"hex of a JSON member", obj("leak-json", "objectJSONKey: db.password", "objectEncoding: hex"), codes.InvalidArgument,
			[]string{get("leak-json") + "objectEncoding is hex but the value is not hexadecimal (a character that is not a hexadecimal digit at byte 0 of the member objectJSONKey selects)"}},
		{"base64 of a value that is not", obj("leak-b64", "objectEncoding: base64"), codes.InvalidArgument,
			[]string{get("leak-b64") + "objectEncoding is base64 but the value is not standard base64 (a character that is not base64 at byte 11 of the secret's value)"}},
		{"hex of a value that is not", obj("leak-hex", "objectEncoding: hex"), codes.InvalidArgument,
			[]string{get("leak-hex") + "objectEncoding is hex but the value is not hexadecimal (a character that is not a hexadecimal digit at byte 4 of the secret's value)"}},
		// objectFormat of a plain secret whose content type says certificate
		{"key of a plain PKCS#12 secret", obj("leak-p12-plain", "objectFormat: key"), codes.InvalidArgument,
			[]string{get("leak-p12-plain") + "objectFormat key needs a certificate's secret, but this is a plain secret"}},
		{"chain of a plain PEM secret", obj("leak-pem-plain", "objectFormat: chain"), codes.InvalidArgument,
			[]string{get("leak-pem-plain") + "objectFormat chain needs a certificate's secret, but this is a plain secret"}},
		{"pfx with a password of a plain secret", obj("leak-p12-plain", "objectFormat: pfx", "objectPFXPasswordSecret: pfx-pass"), codes.InvalidArgument,
			[]string{get("leak-p12-plain") + "objectPFXPasswordSecret protects a certificate's PKCS#12, but this is a plain secret"}},
		// objectFormat of a certificate's secret that holds garbage
		{"pem of a PKCS#12 that is not base64", obj("leak-cert-notb64"), codes.InvalidArgument,
			[]string{get("leak-cert-notb64") + "the certificate's secret is not base64 PKCS#12 as its content type says (a character that is not base64 at byte 11 of the secret's value)"}},
		{"key of a PKCS#12 that is garbage", obj("leak-cert-garbage", "objectFormat: key"), codes.InvalidArgument,
			[]string{get("leak-cert-garbage") + "the certificate's PKCS#12 could not be decoded: it is not a PKCS#12 file this provider can read"}},
		{"chain of a PKCS#12 whose certificate x509 refuses", obj("leak-cert-badx509", "objectFormat: chain"), codes.InvalidArgument,
			[]string{get("leak-cert-badx509") + "the certificate's PKCS#12 could not be decoded: a certificate in it cannot be parsed"}},
		{"pem of a PKCS#12 with a password", obj("leak-cert-locked"), codes.InvalidArgument,
			[]string{get("leak-cert-locked") + "the certificate's PKCS#12 could not be decoded: it is protected by a password"}},
		{"pfx of a PEM whose certificate x509 refuses", obj("leak-cert-pem-badcert", "objectFormat: pfx", "objectPFXPasswordSecret: pfx-pass"), codes.InvalidArgument,
			[]string{get("leak-cert-pem-badcert") + "PEM block 2 of the secret (a CERTIFICATE) cannot be parsed as an X.509 certificate"}},
		{"pfx of a PEM whose key is garbage", obj("leak-cert-pem-badkey", "objectFormat: pfx", "objectPFXPasswordSecret: pfx-pass"), codes.InvalidArgument,
			[]string{get("leak-cert-pem-badkey") + "PEM block 2 of the secret (a PRIVATE KEY) cannot be parsed as a private key"}},
		{"key of a PEM without one", obj("leak-cert-pem-nokey", "objectFormat: key"), codes.InvalidArgument,
			[]string{get("leak-cert-pem-nokey") + "objectFormat key: the certificate's secret holds no private key"}},
		// objectPFXPasswordSecret whose password secret is odd
		{"password secret that is a certificate's", obj("web-pfx", "objectFormat: pfx", "objectPFXPasswordSecret: web-pem"), codes.InvalidArgument,
			[]string{get("web-pfx") + `objectPFXPasswordSecret "web-pem" is a certificate's secret, not a password`}},
		{"password secret that is empty", obj("web-pfx", "objectFormat: pfx", "objectPFXPasswordSecret: leak-pw-empty"), codes.InvalidArgument,
			[]string{get("web-pfx") + `objectPFXPasswordSecret "leak-pw-empty" is empty`}},
		{"password PKCS#12 cannot hold", obj("web-pfx", "objectFormat: pfx", "objectPFXPasswordSecret: leak-pw-emoji"), codes.InvalidArgument,
			[]string{get("web-pfx") + `the PKCS#12 cannot be encrypted with the password of objectPFXPasswordSecret "leak-pw-emoji": the password has characters outside Unicode's Basic Multilingual Plane`}},
		{"password secret absent", obj("web-pfx", "objectFormat: pfx", "objectPFXPasswordSecret: leak-pw-none"), codes.InvalidArgument,
			[]string{get("web-pfx") + `objectPFXPasswordSecret "leak-pw-none": 404 Not Found (SecretNotFound)`}},
		{"password secret the SDK cannot decode", obj("web-pfx", "objectFormat: pfx", "objectPFXPasswordSecret: leak-body-pw"), codes.Internal,
			[]string{get("web-pfx") + `objectPFXPasswordSecret "leak-body-pw": Key Vault's response could not be decoded as azsecrets.Secret; the decoder's message is not repeated`}},
		// responses the SDK cannot decode
		{"secret the SDK cannot decode", obj("leak-body-secret"), codes.Internal,
			[]string{get("leak-body-secret") + "Key Vault's response could not be decoded as azsecrets.Secret; the decoder's message is not repeated"}},
		{"key the SDK cannot decode", "objectName: ec256\nobjectType: key", codes.Internal,
			[]string{`get key "ec256" (version latest) in vault "kv-int": Key Vault's response could not be decoded as azkeys.KeyBundle (field Key)`}},
		{"certificate the SDK cannot decode", "objectName: web-partial\nobjectType: cert", codes.Internal,
			[]string{`get cert "web-partial" (version latest) in vault "kv-int": Key Vault's response could not be decoded as azcertificates.Certificate; the decoder's message is not repeated`}},
		{"metadata of a certificate x509 refuses", "objectName: locked\nobjectType: cert\nobjectFormat: metadata", codes.InvalidArgument,
			[]string{`get cert "locked" (version latest) in vault "kv-int": objectFormat metadata: the certificate from Key Vault (`, "bytes of DER) cannot be parsed as an X.509 certificate"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			msg := wantMountError(t, c, spMount(tt.entry), tt.code, tt.want...)
			if elapsed := time.Since(start); elapsed > 10*time.Second {
				t.Errorf("the mount took %s", elapsed)
			}
			// The marker, as stored or in base64 (values stored as base64 start with it), and the
			// libraries' messages that quote what they read.
			for _, leak := range []string{leakMarker, b64([]byte(leakMarker[:9])), "invalid character", "x509:", "pkcs12:", "encoding/hex", "illegal base64"} {
				if strings.Contains(msg, leak) {
					t.Errorf("the message holds %q, from a value or a library's message about it:\n%s", leak, msg)
				}
			}
		})
	}
	klog.Flush()
	all := logs.String()
	if i := strings.Index(all, leakMarker); i >= 0 {
		t.Errorf("the provider's logs hold a value: ...%s...", all[max(0, i-200):min(len(all), i+40)])
	}
	// The log scan checked something: the failures above were logged with their messages.
	for _, w := range []string{`objectJSONKey \"abs(@)\": a function call at byte 3`, "a certificate in it cannot be parsed", `leak-body-secret`} {
		if !strings.Contains(all, w) {
			t.Errorf("the provider's logs lack %q: the log scan did not see the failures", w)
		}
	}
}
